#!/usr/bin/env bash
# Prepares a CUDA 13.0 toolchain from PyPI wheels for building candle's `cuda` feature on a
# machine without a GPU or a system CUDA install. Idempotent; run from the project root.
#
#   eval "$(scripts/cuda-env.sh [DIR])"
#
# DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/thinkjudge/cuda-13.0. Prints export lines for
# CUDA_HOME, PATH, CUDA_COMPUTE_CAP (90 = H100/H200), CUDARC_CUDA_VERSION and CUDAFORGE_THREADS.
#
# The stubs under DIR/cuda/lib/stubs exist for LINKING ONLY (one dummy symbol per function
# cudarc declares): never ship them or put them on LD_LIBRARY_PATH at run time.
#
# Adapted from ../shared/scripts/cuda-env.sh (the team's verified recipe, described in
# ../shared/notes/cuda-build.md): same pinned wheels and stub generation; this copy reads the
# cudarc sources of *this* workspace (`--features cuda`) and checks the wheels' nvcc version.
set -euo pipefail
DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkjudge/cuda-13.0}
CUDA=$DIR/cuda
log() { echo "cuda-env: $*" >&2; }
mkdir -p "$DIR"

# nvcc 13.0.x only: the GPU machine's driver (580, CUDA 13.0) cannot JIT the newer PTX ISA a
# newer nvcc emits, and cudarc 0.19.10 panics on toolkits it does not know.
if [ ! -x "$CUDA/bin/nvcc" ]; then
  log "downloading the CUDA 13.0 wheels (about 100 MB) into $DIR/wheels"
  python3 -m pip download -q --no-deps -d "$DIR/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
  rm -rf "$DIR/x" "$CUDA"
  for w in "$DIR"/wheels/*.whl; do python3 -m zipfile -e "$w" "$DIR/x"; done
  mv "$DIR/x/nvidia/cu13" "$CUDA"
  rm -rf "$DIR/x"
  chmod +x "$CUDA"/bin/* "$CUDA"/nvvm/bin/* 2>/dev/null || true
  ln -sfn lib "$CUDA/lib64"
  ln -sf libcudart.so.13 "$CUDA/lib/libcudart.so"
fi

if [ ! -f "$CUDA/lib/stubs/libcuda.so.1" ]; then
  # cudarc declares every CUDA function it links against; make one dummy symbol for each.
  src=""
  if cargo metadata --format-version 1 --features cuda >/dev/null 2>&1; then
    src=$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, os, sys
pk = [p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
print(os.path.join(os.path.dirname(pk[0]), "src") if pk else "")')
  fi
  [ -n "$src" ] || src=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.*/src 2>/dev/null | sort -V | tail -1)
  if [ -z "$src" ] || [ ! -d "$src" ]; then
    log "cudarc sources not found: run 'cargo fetch' in the project root first"
    exit 1
  fi
  log "generating link stubs from $src"
  mkdir -p "$CUDA/lib/stubs"
  stub() {
    grep -hoE '^pub unsafe fn [A-Za-z0-9_]+' "$src/$3" | awk '{print "int "$4"(void){return 1;}"}' \
      | sort -u >"$DIR/stub_$1.c"
    gcc -shared -fPIC -Wl,-soname,"$2" -o "$CUDA/lib/stubs/lib$1.so" "$DIR/stub_$1.c"
    ln -sf "lib$1.so" "$CUDA/lib/stubs/$2"
  }
  stub cuda     libcuda.so.1      driver/sys/mod.rs
  stub cublas   libcublas.so.13   cublas/sys/mod.rs
  stub cublasLt libcublasLt.so.13 cublaslt/sys/mod.rs
  stub curand   libcurand.so.10   curand/sys/mod.rs
  stub nvrtc    libnvrtc.so.13    nvrtc/sys/mod.rs
  # Only for a build with the `nccl` feature (not forwarded yet; docs/gpu.md).
  if [ -f "$src/nccl/sys/mod.rs" ]; then stub nccl libnccl.so.2 nccl/sys/mod.rs; fi
fi

version=$("$CUDA/bin/nvcc" --version | grep -oE 'release [0-9.]+' | awk '{print $2}')
if [ "$version" != "13.0" ]; then
  log "nvcc in $CUDA is release $version, expected 13.0: delete $DIR and run again"
  exit 1
fi
log "nvcc release $version in $CUDA"
cat <<OUT
export CUDA_HOME="$CUDA"
export PATH="$CUDA/bin:\$PATH"
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
export CUDAFORGE_THREADS=\${CUDAFORGE_THREADS:-2}
OUT
