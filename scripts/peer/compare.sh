#!/usr/bin/env bash
# Side-by-side run for the README's "Throughput next to PyTorch" table: for each workload,
# the PyTorch peer and then thinkjudge's `cargo bench --bench throughput`, back to back, so
# both see similar load on a shared machine. Every line of the output file is JSON:
# {"impl": "torch"|"thinkjudge", ...} from the benchmarks, plus {"uptime": ...} markers;
# stderr goes to OUT.stderr. Needs scripts/peer/setup.sh first.
#
#   scripts/peer/compare.sh [OUT.jsonl] [ROUNDS]     # default /tmp/compare.jsonl, 1 round
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-/tmp/compare.jsonl}
rounds=${2:-1}
: > "$out"; : > "$out.stderr"
mark() { printf '{"uptime": "%s", "date": "%s"}\n' "$(uptime)" "$(date -Is)" >> "$out"; }
cd "$root"
cargo bench --bench throughput --no-run 2>&1 | tail -1
for r in $(seq "$rounds"); do
  for w in forward train_full train_lora sample; do
    mark
    "$here/run.sh" split-one "$w" 2>>"$out.stderr" | sed 's/^{/{"impl": "torch", /' >> "$out"
    mark
    case $w in
      sample) ours="sample_b1 sample_b8 sample_b32" ;;
      *) ours=$w ;;
    esac
    # shellcheck disable=SC2086
    cargo bench -q --bench throughput -- $ours 2>>"$out.stderr" | grep '"bench"' \
      | sed 's/^{/{"impl": "thinkjudge", /' >> "$out"
  done
done
mark
echo "wrote $out"
