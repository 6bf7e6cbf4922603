#!/usr/bin/env bash
# Pre-flight check for the GPU machine, run next to the binaries that scripts/build-cuda.sh put
# in dist/ (it copies this script there). No Rust, network or GPU tools beyond the driver's
# nvidia-smi are needed. See docs/gpu.md.
#
#   ./gpu-check.sh [MODE] [--device cuda:N]
#
# MODE:
#   check   (default) the pre-flight below, then ./cuda_parity when that binary is present
#   ldd     only the binaries' libraries and glibc (works without a GPU)
#   parity  the pre-flight, then ./cuda_parity (required)
#   bench   the pre-flight, then ./gpu_bench (required), sampling nvidia-smi's memory.used
#   all     the pre-flight, ./cuda_parity, then ./gpu_bench
#
# The pre-flight: nvidia-smi is there (its output is shown and saved); the driver's CUDA
# version is at least the one the binaries' PTX needs; the device's compute capability can run
# the PTX arch the binaries were built for (sm_90a: exactly 9.0, H100/H200; sm_XY: >= X.Y);
# enough free device memory; glibc is new enough; every binary's libraries resolve (ldd), with
# LD_LIBRARY_PATH completed from PyPI's nvidia cu13 wheels or a CUDA install when needed, and
# never from the build machine's link stubs.
#
# Environment:
#   BIN_DIR            where the binaries are [the script's folder; ../dist from scripts/]
#   GPU_CHECK_DEVICE   the device [cuda:0]; --device overrides it
#   MIN_FREE_MIB       fail below this much free device memory [2048]
#   GPU_CHECK_OUT      where logs go [$OUT when set, else ./gpu-check-out]
#   PARITY_TIMEOUT_S   limit for cuda_parity in seconds [300; 0 = none]
#   BENCH_TIMEOUT_S    limit for gpu_bench in seconds [0 = none]
#   BENCH_ARGS         extra arguments for gpu_bench, e.g. "--models smollm2-135m --steps 2"
#
# Exit status: 0 every check passed; 1 a check failed (each failure is listed at the end);
# 2 bad usage.
set -uo pipefail

usage() { sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'; }

MODE=check
DEVICE=${GPU_CHECK_DEVICE:-cuda:0}
while [ $# -gt 0 ]; do
  case $1 in
    check | ldd | parity | bench | all) MODE=$1 ;;
    --device) DEVICE=${2:-}; shift ;;
    --device=*) DEVICE=${1#--device=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case $DEVICE in
  cuda:[0-9]*) INDEX=${DEVICE#cuda:} ;;
  cuda) INDEX=0; DEVICE=cuda:0 ;;
  *) echo "gpu-check: --device must be cuda:N, got '$DEVICE'" >&2; exit 2 ;;
esac
case $INDEX in *[!0-9]*) echo "gpu-check: bad device index in '$DEVICE'" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${BIN_DIR:-}" ]; then
  BIN_DIR=$HERE
  if ! ls "$HERE"/*.gz "$HERE/cuda_parity" >/dev/null 2>&1 && [ -d "$HERE/../dist" ]; then
    BIN_DIR=$(cd "$HERE/../dist" && pwd) # run as scripts/gpu-check.sh from the source tree
  fi
fi
MIN_FREE_MIB=${MIN_FREE_MIB:-2048}

LOG=${GPU_CHECK_OUT:-${OUT:-$PWD/gpu-check-out}}
if ! mkdir -p "$LOG" 2>/dev/null || [ ! -w "$LOG" ]; then LOG=$(mktemp -d); fi

FAILED=()
ok() { printf '  ok    %s\n' "$*"; }
warn() { printf '  WARN  %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; FAILED+=("$*"); }
section() { printf '\n== %s\n' "$*"; }
# ver_ge A B: whether version A >= version B (dotted numbers).
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

finish() {
  section "summary ($MODE, $DEVICE; logs in $LOG)"
  if [ ${#FAILED[@]} -eq 0 ]; then
    echo "gpu-check: all checks passed"
    exit 0
  fi
  echo "gpu-check: ${#FAILED[@]} check(s) FAILED:"
  printf '  - %s\n' "${FAILED[@]}"
  exit 1
}

echo "gpu-check: mode $MODE, device $DEVICE, binaries in $BIN_DIR, logs in $LOG"
[ -f "$BIN_DIR/COMMIT" ] && echo "gpu-check: built from commit $(cat "$BIN_DIR/COMMIT")"

# ---------------------------------------------------------------------------- the binaries
section "binaries"
if [ -f "$BIN_DIR/SHA256SUMS" ] && command -v sha256sum >/dev/null; then
  # Only the .gz files: this script itself may be a newer copy than the one packaged.
  if (cd "$BIN_DIR" && grep '\.gz$' SHA256SUMS | sha256sum -c --quiet - >/dev/null 2>&1); then
    ok "SHA256SUMS match the .gz files"
  else
    fail "SHA256SUMS do not match the .gz files in $BIN_DIR (incomplete copy?)"
  fi
fi
for gz in "$BIN_DIR"/*.gz; do
  [ -e "$gz" ] || continue
  bin=${gz%.gz}
  if [ ! -e "$bin" ] || [ "$gz" -nt "$bin" ]; then
    if gunzip -c "$gz" >"$bin.tmp" 2>/dev/null && mv "$bin.tmp" "$bin"; then
      echo "  unpacked $(basename "$gz")"
    else
      rm -f "$bin.tmp"
      fail "cannot unpack $gz (read-only folder? set BIN_DIR to a writable copy)"
    fi
  fi
  [ -e "$bin" ] && { chmod +x "$bin" 2>/dev/null || true; }
done
BINS=()
for f in "$BIN_DIR"/*; do
  if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
  case $f in *.gz | *.sh | *.tmp) continue ;; esac
  head -c 4 "$f" 2>/dev/null | grep -q 'ELF' || continue
  BINS+=("$f")
done
if [ ${#BINS[@]} -eq 0 ]; then
  fail "no binaries in $BIN_DIR (run scripts/build-cuda.sh on the build machine and copy dist/)"
else
  ok "${#BINS[@]} binaries: $(for b in "${BINS[@]}"; do printf '%s ' "$(basename "$b")"; done)"
fi
# The binary whose PTX and glibc needs are read (they are the same for all of them).
PROBE=""
for name in cuda_parity thinkjudge gpu_bench; do
  [ -x "$BIN_DIR/$name" ] && { PROBE=$BIN_DIR/$name; break; }
done
[ -z "$PROBE" ] && [ ${#BINS[@]} -gt 0 ] && PROBE=${BINS[0]}

# ------------------------------------------------------------------------------- glibc
section "glibc"
if [ -n "$PROBE" ]; then
  need=$(grep -aoE 'GLIBC_2\.[0-9]+' "$PROBE" | sort -uV | tail -1 | sed 's/GLIBC_//')
  have=$(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$')
  if [ -z "$have" ]; then
    warn "cannot read the glibc version (ldd --version); the binaries need $need"
  elif ver_ge "$have" "$need"; then
    ok "glibc $have (the binaries need >= $need)"
  else
    fail "glibc $have is older than $need, which the binaries need: build on an older distribution"
  fi
fi

# ----------------------------------------------------------------------------- libraries
section "libraries (ldd)"
case ":${LD_LIBRARY_PATH:-}:" in
  */stubs:* | */stubs/:*)
    fail "LD_LIBRARY_PATH contains a stubs folder: the build machine's link stubs must never be used at run time ($LD_LIBRARY_PATH)"
    ;;
esac
# Whether $1 (a soname) resolves without help: the loader cache or LD_LIBRARY_PATH.
resolvable() {
  ldconfig -p 2>/dev/null | grep -q " $1 " && return 0
  local d
  IFS=: read -ra dirs <<<"${LD_LIBRARY_PATH:-}"
  for d in "${dirs[@]}"; do [ -n "$d" ] && [ -e "$d/$1" ] && return 0; done
  return 1
}
candidate_dirs() {
  local py p
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" - <<'PY' 2>/dev/null
import os
try:
    import nvidia
except Exception:
    raise SystemExit
for p in list(nvidia.__path__):
    for sub in ("cu13/lib", "cublas/lib", "curand/lib", "cuda_runtime/lib"):
        d = os.path.join(p, sub)
        if os.path.isdir(d):
            print(d)
PY
  done
  for p in /usr/local/nvidia/lib64 /usr/local/nvidia/lib "${CUDA_HOME:-/nonexistent}/lib64" \
    "${CUDA_HOME:-/nonexistent}/lib" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
    [ -d "$p" ] && echo "$p"
  done
}
NEEDED_LIBS="libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10"
added=""
for lib in $NEEDED_LIBS; do
  resolvable "$lib" && continue
  found=""
  while read -r d; do
    case $d in */stubs | */stubs/*) continue ;; esac
    if [ -e "$d/$lib" ]; then found=$d; break; fi
  done < <(candidate_dirs | awk '!seen[$0]++')
  if [ -n "$found" ]; then
    export LD_LIBRARY_PATH="$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    added="$added $found"
    echo "  $lib: found in $found (added to LD_LIBRARY_PATH)"
  fi
done
if [ -n "$added" ]; then
  echo "  to run the binaries by hand:  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
for bin in "${BINS[@]}"; do
  out=$(ldd "$bin" 2>&1)
  name=$(basename "$bin")
  missing=$(echo "$out" | awk '/not found/ {print $1}' | tr '\n' ' ')
  stubbed=$(echo "$out" | awk '/=>/ && $3 ~ /\/stubs\// {print $1 " => " $3}' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    fail "$name: libraries not found: $missing(libcuda.so.1 comes with the NVIDIA driver; the others from PyPI's nvidia-cublas, nvidia-curand and nvidia-cuda-runtime cu13 wheels or a CUDA 13 install)"
  elif [ -n "$stubbed" ]; then
    fail "$name: resolves to link stubs: $stubbed"
  elif ! echo "$out" | grep -q 'libcuda\.so\.1'; then
    warn "$name: no libcuda.so.1 among its libraries: was it built without --features cuda?"
  else
    ok "$name: every library resolves (libcuda.so.1 => $(echo "$out" | awk '/libcuda\.so\.1/ {print $3}'))"
  fi
done
[ "$MODE" = ldd ] && finish

# ---------------------------------------------------------------------------- the driver
section "nvidia-smi"
if ! command -v nvidia-smi >/dev/null 2>&1 && [ -x /usr/local/nvidia/bin/nvidia-smi ]; then
  export PATH="/usr/local/nvidia/bin:$PATH"
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  fail "nvidia-smi not found: no NVIDIA driver on this machine (or not on PATH)"
  finish
fi
if ! nvidia-smi >"$LOG/nvidia-smi.txt" 2>&1; then
  cat "$LOG/nvidia-smi.txt"
  fail "nvidia-smi failed (driver not loaded, or no GPU visible to this container)"
  finish
fi
cat "$LOG/nvidia-smi.txt"
nvidia-smi -L 2>/dev/null

section "device $DEVICE"
fields=name,driver_version,compute_cap,memory.total,memory.used,memory.free
if ! row=$(nvidia-smi -i "$INDEX" --query-gpu="$fields" --format=csv,noheader,nounits 2>&1) \
  || [ -z "$row" ] || echo "$row" | grep -qiE 'invalid|not found|error'; then
  fail "no device with index $INDEX ($row); nvidia-smi -L lists the devices"
  finish
fi
IFS=, read -r gpu_name driver cc mem_total mem_used mem_free <<<"$row"
trim() { echo "$1" | sed 's/^ *//; s/ *$//'; }
gpu_name=$(trim "$gpu_name"); driver=$(trim "$driver"); cc=$(trim "$cc")
mem_total=$(trim "$mem_total"); mem_used=$(trim "$mem_used"); mem_free=$(trim "$mem_free")
cuda_driver=$(sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' "$LOG/nvidia-smi.txt" | head -1)
echo "  $gpu_name, driver $driver (CUDA ${cuda_driver:-?}), compute capability $cc," \
  "memory $mem_total MiB total, $mem_used MiB used, $mem_free MiB free"

# The PTX embedded in the binaries (candle-kernels): its ISA version and target arch.
ptx_isa="" ptx_arch=""
if [ -n "$PROBE" ]; then
  ptx_isa=$(grep -aoE '^\.version [0-9]+\.[0-9]+' "$PROBE" | awk '{print $2}' | sort -uV | tail -1)
  ptx_arch=$(grep -aoE '^\.target sm_[0-9]+[af]?' "$PROBE" | awk '{print $2}' | sort -u | tr '\n' ' ')
  ptx_arch=$(trim "$ptx_arch")
fi
# The oldest CUDA (driver) that JIT-compiles PTX of a given ISA version.
case $ptx_isa in
  9.0) ptx_cuda=13.0 ;; 8.8) ptx_cuda=12.9 ;; 8.7) ptx_cuda=12.8 ;; 8.6) ptx_cuda=12.7 ;;
  8.5) ptx_cuda=12.5 ;; 8.4) ptx_cuda=12.4 ;; 8.3) ptx_cuda=12.3 ;; 8.2) ptx_cuda=12.2 ;;
  8.1) ptx_cuda=12.1 ;; 8.0) ptx_cuda=12.0 ;; *) ptx_cuda="" ;;
esac
# libcudart.so.13 and libcublas.so.13 need a CUDA 13 driver anyway.
need_cuda=${ptx_cuda:-13.0}
ver_ge "$need_cuda" 13.0 || need_cuda=13.0
if [ -z "$cuda_driver" ]; then
  warn "cannot read the driver's CUDA version from nvidia-smi; the binaries need >= $need_cuda"
elif ver_ge "$cuda_driver" "$need_cuda"; then
  ok "driver CUDA $cuda_driver >= $need_cuda (PTX ISA ${ptx_isa:-?}, CUDA 13 runtime libraries)"
else
  fail "driver CUDA $cuda_driver < $need_cuda: the driver cannot load PTX ISA ${ptx_isa:-?} or the CUDA 13 libraries (libcudart.so.13, libcublas.so.13); a driver >= 580 (CUDA 13.0) is needed"
fi

dev_cc=${cc//./}
if [ -z "$ptx_arch" ]; then
  warn "no PTX target found in $(basename "${PROBE:-none}"): cannot compare it with compute capability $cc"
elif ! [[ $dev_cc =~ ^[0-9]+$ ]]; then
  warn "cannot read the compute capability ('$cc'); the binaries' PTX is for $ptx_arch"
else
  for arch in $ptx_arch; do
    num=${arch#sm_}; suffix=${num//[0-9]/}; num=${num//[!0-9]/}
    if [ -n "$suffix" ]; then
      # sm_90a / sm_100f: arch-specific PTX, loadable on that exact compute capability only.
      if [ "$dev_cc" = "$num" ]; then
        ok "PTX $arch runs on compute capability $cc"
      else
        fail "PTX $arch needs compute capability exactly ${num:0:${#num}-1}.${num: -1}, the device has $cc: rebuild with CUDA_COMPUTE_CAP=$dev_cc scripts/build-cuda.sh"
      fi
    elif [ "$dev_cc" -ge "$num" ]; then
      ok "PTX $arch runs on compute capability $cc (JIT-compiled at first load)"
    else
      fail "PTX $arch needs compute capability >= ${num:0:${#num}-1}.${num: -1}, the device has $cc: rebuild with CUDA_COMPUTE_CAP=$dev_cc scripts/build-cuda.sh"
    fi
  done
fi
if [[ $dev_cc =~ ^[0-9]+$ ]] && [ "$dev_cc" -lt 80 ]; then
  warn "compute capability $cc < 8.0: no bf16 tensor cores; use --compute-dtype f32"
fi

if ! [[ $mem_free =~ ^[0-9]+$ ]]; then
  warn "cannot read free memory ('$mem_free')"
elif [ "$mem_free" -ge "$MIN_FREE_MIB" ]; then
  ok "$mem_free MiB free (>= MIN_FREE_MIB=$MIN_FREE_MIB)"
else
  fail "only $mem_free MiB free on $DEVICE (< MIN_FREE_MIB=$MIN_FREE_MIB); other processes:"
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>/dev/null | sed 's/^/        /'
fi

# ------------------------------------------------------------------------------- programs
# run_logged NAME TIMEOUT_S LOGFILE ARGS...: runs $BIN_DIR/NAME, tees its output to LOGFILE.
run_logged() {
  local name=$1 limit=$2 logfile=$3
  shift 3
  local cmd=("$BIN_DIR/$name" "$@")
  if [ "$limit" != 0 ] && command -v timeout >/dev/null; then cmd=(timeout "$limit" "${cmd[@]}"); fi
  echo "  \$ ${cmd[*]}"
  "${cmd[@]}" 2>&1 | tee "$logfile"
  return "${PIPESTATUS[0]}"
}

if [ ${#FAILED[@]} -gt 0 ] && [ "$MODE" != check ]; then
  echo
  echo "gpu-check: the pre-flight failed; not running the programs"
  finish
fi

if [ "$MODE" != bench ]; then
  section "cuda_parity"
  if [ ! -x "$BIN_DIR/cuda_parity" ]; then
    if [ "$MODE" = check ]; then
      warn "no cuda_parity binary in $BIN_DIR: skipped"
    else
      fail "no cuda_parity binary in $BIN_DIR (DIST_BINS must include it)"
    fi
  elif [ ${#FAILED[@]} -gt 0 ]; then
    warn "skipped: the pre-flight failed"
  else
    run_logged cuda_parity "${PARITY_TIMEOUT_S:-300}" "$LOG/cuda_parity.log" --device "$DEVICE"
    rc=$?
    case $rc in
      0) ok "cuda_parity: all checks passed" ;;
      1) fail "cuda_parity: parity checks failed (lines marked FAIL above; $LOG/cuda_parity.log)" ;;
      2) fail "cuda_parity could not run (the error above; $LOG/cuda_parity.log)" ;;
      124) fail "cuda_parity timed out after ${PARITY_TIMEOUT_S:-300}s" ;;
      *) fail "cuda_parity exited with status $rc (crashed? $LOG/cuda_parity.log)" ;;
    esac
  fi
fi

if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  section "gpu_bench"
  if [ ! -x "$BIN_DIR/gpu_bench" ]; then
    fail "no gpu_bench binary in $BIN_DIR (DIST_BINS must include it)"
  else
    # Device-wide memory.used every 500 ms, as a cross-check of gpu_bench's own peak_mib.
    nvidia-smi -i "$INDEX" --query-gpu=timestamp,memory.used,utilization.gpu \
      --format=csv,noheader,nounits -lms 500 >"$LOG/nvidia-smi-samples.csv" 2>/dev/null &
    sampler=$!
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of words
    run_logged gpu_bench "${BENCH_TIMEOUT_S:-0}" "$LOG/gpu_bench.log" --device "$DEVICE" ${BENCH_ARGS:-}
    rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    grep '^{' "$LOG/gpu_bench.log" >"$LOG/gpu_bench.jsonl" 2>/dev/null
    peak=$(awk -F, '{gsub(/ /, "", $2); if ($2 + 0 > p) p = $2 + 0} END {print p + 0}' \
      "$LOG/nvidia-smi-samples.csv" 2>/dev/null)
    echo "  nvidia-smi: peak memory.used ${peak:-?} MiB while gpu_bench ran"
    if [ "$rc" -eq 0 ]; then
      ok "gpu_bench finished ($(wc -l <"$LOG/gpu_bench.jsonl") result lines in $LOG/gpu_bench.jsonl)"
    elif [ "$rc" -eq 124 ]; then
      fail "gpu_bench timed out after ${BENCH_TIMEOUT_S}s (partial results in $LOG/gpu_bench.jsonl)"
    else
      fail "gpu_bench exited with status $rc ($LOG/gpu_bench.log)"
    fi
  fi
fi

finish
