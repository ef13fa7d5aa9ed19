#!/usr/bin/env bash
# A/B of two xent binaries on the same adapter, alternating A B B A … so that the shared machine's drift
# hits both: `benches/ab.sh OLD_XENT NEW_XENT [ROUNDS]`. Each round runs `xent bench --gpu-only --json`
# (copy, softmax, ce, softmax_bwd at the four standard shapes, and Xᵀ G 4096×784×10) once per binary;
# prints, per op and shape, the median over rounds of each binary's wall-time GB/s (GFLOP/s for the
# matmul) and the ratio new/old.
set -euo pipefail
old=$1 new=$2 rounds=${3:-5}
dir=$(mktemp -d)
# With CPU=1, the fast CPU path instead (`--cpu-only`, the outputs reused, no matmul).
if [ -n "${CPU:-}" ]; then
  args=(bench --cpu-only --json --reps 7)
else
  args=(bench --gpu-only --json --reps 7 --backend "${BACKEND:-vulkan}" --matmul-shapes "${MATMUL:-4096x784x10}")
fi
args+=(--ops "${OPS:-copy,softmax,ce,softmax_bwd}" --shapes "${SHAPES:-4096x1000,1024x32000,256x128256,65536x10}")
# A B, then B A, and so on: whichever runs second in a pair was seen to lose ~5% here (the copy,
# the same code in both, read 0.90-0.98 with a fixed order), so the order alternates too.
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    "$old" "${args[@]}" > "$dir/a$r.json" 2>/dev/null
    "$new" "${args[@]}" > "$dir/b$r.json" 2>/dev/null
  else
    "$new" "${args[@]}" > "$dir/b$r.json" 2>/dev/null
    "$old" "${args[@]}" > "$dir/a$r.json" 2>/dev/null
  fi
done
python3 - "$dir" "$rounds" <<'PY'
import json, sys, statistics, glob
d, rounds = sys.argv[1], int(sys.argv[2])
def load(tag):
    out = {}
    for f in sorted(glob.glob(f"{d}/{tag}*.json")):
        for line in open(f):
            m = json.loads(line)
            key = (m["op"], m["n"], m["k"], m.get("d"))
            out.setdefault(key, []).append(m["gflops"] if m.get("gflops") else m["gbps"])
    return out
a, b = load("a"), load("b")
print(f"{'op':<12} {'shape':<16} {'old':>8} {'new':>8} {'new/old':>8}   (median of {rounds} alternating runs)")
for key in a:
    op, n, k, dd = key
    shape = f"{n}x{dd}x{k}" if dd else f"{n}x{k}"
    ma, mb = statistics.median(a[key]), statistics.median(b.get(key, [float('nan')]))
    print(f"{op:<12} {shape:<16} {ma:8.2f} {mb:8.2f} {mb/ma:8.3f}")
PY
