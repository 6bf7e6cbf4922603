#!/usr/bin/env bash
# Builds the CUDA binaries (`--features cuda`) on a machine WITHOUT a GPU or a system CUDA, and
# packages them for the GPU machine. See docs/gpu.md.
#
#   scripts/build-cuda.sh                 # the `thinkjudge` binary and every root example
#   JOBS=1 scripts/build-cuda.sh          # cargo -j (default: all cores)
#   DIST_BINS="cuda_parity gpu_bench" scripts/build-cuda.sh   # package only these
#
# 1. Prepares a CUDA 13.0 toolchain from PyPI wheels plus link-time stubs (scripts/cuda-env.sh;
#    cached in ${XDG_CACHE_HOME:-~/.cache}/thinkjudge/cuda-13.0, about 270 MB).
# 2. `cargo build --release --features cuda --bins --examples` into target-cuda/ (its own
#    target dir, so the CPU build in target/ is not invalidated). PTX for sm_90a (H100/H200);
#    set CUDA_COMPUTE_CAP=80 for A100 (sm_80), etc.
# 3. Strips and gzips the binaries into dist/ (gitignored), copies scripts/gpu-check.sh next to
#    them, writes dist/SHA256SUMS, and prints each binary's NEEDED libraries and the newest
#    glibc symbol version it needs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { echo "build-cuda: $*" >&2; }

cargo fetch --quiet # cudarc's sources, for the stubs
eval "$(scripts/cuda-env.sh "${THINKJUDGE_CUDA_DIR:-}")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-cuda}
JOBS=${JOBS:-$(nproc)}

log "cargo build --release --features cuda --bins --examples (target: $CARGO_TARGET_DIR, -j$JOBS)"
start=$(date +%s)
cargo build --release -j "$JOBS" --features cuda --bins --examples
elapsed=$(($(date +%s) - start))
log "build took ${elapsed}s"

# The binaries of the root package: `thinkjudge` (src/main.rs) and examples/*.rs.
names=${DIST_BINS:-"thinkjudge $(cd examples && ls -- *.rs 2>/dev/null | sed 's/\.rs$//' | tr '\n' ' ')"}
mkdir -p dist
rm -f dist/*.gz dist/SHA256SUMS
for name in $names; do
  bin=$CARGO_TARGET_DIR/release/$name
  [ -x "$bin" ] || bin=$CARGO_TARGET_DIR/release/examples/$name
  if [ ! -x "$bin" ]; then
    log "no binary named $name; skipped"
    continue
  fi
  strip --strip-all -o "dist/$name" "$bin"
  gzip -9 -f "dist/$name"
  printf '%-16s %6s MB built, %6s MB stripped+gzipped\n' "$name" \
    "$(($(stat -c %s "$bin") / 1000000))" "$(($(stat -c %s "dist/$name.gz") / 1000000))"
done
cp scripts/gpu-check.sh dist/
(cd dist && sha256sum -- *.gz gpu-check.sh >SHA256SUMS)
git rev-parse HEAD >dist/COMMIT 2>/dev/null || true

first=$(find dist -name '*.gz' | sort | head -1)
if [ -n "$first" ]; then
  gunzip -c "$first" >"$CARGO_TARGET_DIR/needed-probe"
  echo "NEEDED ($(basename "$first" .gz); the others are the same):"
  readelf -d "$CARGO_TARGET_DIR/needed-probe" | awk '/NEEDED/ {print "  " $5}' | tr -d '[]'
  echo "newest glibc symbol version: $(objdump -T "$CARGO_TARGET_DIR/needed-probe" \
    | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1) (check 'ldd --version' on the GPU machine)"
  rm -f "$CARGO_TARGET_DIR/needed-probe"
fi

cat <<'HOWTO'

On the GPU machine (no Rust needed; dist/ travels as a carried path, or copy it over):
  cd dist && gunzip -kf *.gz && chmod +x $(ls *.gz | sed 's/\.gz$//')
  ./gpu-check.sh ldd                  # finds libcublas/libcurand/libcudart (PyTorch's cu13
                                      # wheels, or /usr/local/cuda) and checks every NEEDED lib
  ./gpu-check.sh parity               # CPU-vs-CUDA parity of a tiny random model
  ./gpu-check.sh all                  # parity + benchmarks (docs/gpu.md)
By hand: libcuda.so.1 comes from the driver; the rest from PyPI's nvidia-* cu13 wheels:
  export LD_LIBRARY_PATH=$(python3 -c "import os,nvidia; print(os.path.join(list(nvidia.__path__)[0],'cu13','lib'))"):$LD_LIBRARY_PATH
Never put the build machine's link stubs (.../cuda-13.0/cuda/lib/stubs) on LD_LIBRARY_PATH.
HOWTO
