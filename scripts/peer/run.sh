#!/usr/bin/env bash
# Runs the PyTorch peer (peer_torch.py, next to this script) on the cached default model,
# 2 threads, with LoRA. Prints one JSON line per measurement on stdout (and `uptime` on
# stderr before and after); transformers' progress bars and warnings go to stderr.
#
#   scripts/peer/run.sh            # as specified: --gguf <cached gguf> --threads 2 --lora
#   scripts/peer/run.sh split      # one process per workload (forward, sample, train_full,
#                                  # train_lora): each peak_rss_mib is that workload's own
#   scripts/peer/run.sh split-one W  # one workload W (forward|sample|train_full|train_lora)
#   scripts/peer/run.sh all --reps 5   # extra arguments go to peer_torch.py
#
# The GGUF comes from `thinkjudge_model::default_model::ensure` (e.g. run
# `cargo test --release -p thinkjudge-model --test golden_real` once); set GGUF to override.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VENV=${PEER_VENV:-/tmp/peer}
cache=${THINKJUDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkjudge}
GGUF=${GGUF:-$cache/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$GGUF" ]; then
  echo "run.sh: no GGUF at $GGUF (fetch it with default_model::ensure, or set GGUF)" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || { echo "run.sh: no venv at $VENV; run scripts/peer/setup.sh" >&2; exit 1; }
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mode=${1:-all}
[ $# -gt 0 ] && shift
uptime >&2
case "$mode" in
  all) "$VENV/bin/python" "$here/peer_torch.py" --gguf "$GGUF" --threads 2 --lora "$@" ;;
  split)
    for w in forward sample train_full train_lora; do
      "$VENV/bin/python" "$here/peer_torch.py" --gguf "$GGUF" --threads 2 --only "$w" "$@"
    done ;;
  split-one)
    w=$1; shift
    "$VENV/bin/python" "$here/peer_torch.py" --gguf "$GGUF" --threads 2 --only "$w" "$@" ;;
  *) echo "run.sh: unknown mode $mode (all | split | split-one W)" >&2; exit 2 ;;
esac
uptime >&2
