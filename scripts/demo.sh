#!/usr/bin/env bash
# The main job: set up, start the servers, build the graph and print explained
# recommendations for a real MovieLens user (RAG_REC_DEMO_USER, default 42).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
extra="${RAG_REC_EXTRA:-cpu}"
run() { uv run --extra "$extra" rag-rec "$@"; }
run graph start
run build
run graph status
