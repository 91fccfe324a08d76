#!/usr/bin/env bash
# The main job: set up, start Neo4j and vLLM, build every artifact, and print explained
# recommendations for a real MovieLens user (RAG_REC_DEMO_USER, default 42).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
extra="${RAG_REC_EXTRA:-cpu}"
rr() { uv run --extra "$extra" rag-rec "$@"; }
rr graph start
# vLLM needs a minute or two to start on a CPU and only `recommend` asks it anything, so it
# starts beside the build (a fresh clone here: 21:39 -> 20:26).
llm_log="$(mktemp)"
rr llm serve >"$llm_log" 2>&1 &
llm_pid=$!
rr build
if ! wait "$llm_pid"; then
  cat "$llm_log" >&2
  exit 1
fi
cat "$llm_log"
rr recommend --user "${RAG_REC_DEMO_USER:-42}"
echo "Servers keep running for more queries; stop them with: uv run --extra $extra rag-rec llm stop && uv run --extra $extra rag-rec graph stop"
