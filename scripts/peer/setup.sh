#!/usr/bin/env bash
# Creates the PyTorch peer's throwaway venv (default /tmp/peer; override with PEER_VENV).
# Only PyPI is used. On Linux x86_64, PyPI's torch wheel is the CUDA build: it pulls ~3 GB of
# nvidia-* wheels that stay unused here (CPU only) but work; the CPU-only wheel lives on
# download.pytorch.org, which may be unreachable.
# Versions verified together on 2026-11-28 (Python 3.11.7): they load the GGUF via
# transformers' gguf support, and peft wraps the model for the LoRA workload.
set -euo pipefail
VENV=${PEER_VENV:-/tmp/peer}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install torch==2.15.0 transformers==5.24.0 gguf==0.19.0 peft==0.21.2 numpy==2.4.6
"$VENV/bin/python" -c 'import torch, transformers, gguf, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
