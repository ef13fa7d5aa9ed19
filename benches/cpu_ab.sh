#!/usr/bin/env bash
# A/B of two builds' fast CPU path by the minimum time of many calls (benches/cpu_min.rs), the figure
# least moved by a shared machine: `benches/cpu_ab.sh OLD_CPU_MIN NEW_CPU_MIN [ROUNDS]`, each argument
# a `cpu_min` bench executable (`cargo bench --bench cpu_min --no-run` prints its path; for an older
# commit, build it in a worktree of that commit with this file copied in). Rounds alternate A B, B A;
# prints per op and shape the best GB/s of each over all rounds and the ratio new/old.
# THREADS (default 2), ITERS (default 60), OPS and SHAPES narrow it.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
ops=${OPS:-copy softmax ce softmax_bwd}
shapes=${SHAPES:-4096x1000 1024x32000 256x128256 65536x10}
dir=$(mktemp -d)
for r in $(seq "$rounds"); do
  for op in $ops; do
    for s in $shapes; do
      run() { "$1" --threads "${THREADS:-2}" --iters "${ITERS:-60}" "$op" "$s" >> "$dir/$2"; }
      if [ $((r % 2)) = 1 ]; then run "$old" a; run "$new" b; else run "$new" b; run "$old" a; fi
    done
  done
done
python3 - "$dir" "$rounds" <<'PY'
import sys, collections
d, rounds = sys.argv[1], sys.argv[2]
best = {t: collections.OrderedDict() for t in "ab"}
for t in "ab":
    for line in open(f"{d}/{t}"):
        op, shape, ms, gbps = line.split()
        best[t][(op, shape)] = max(best[t].get((op, shape), 0.0), float(gbps))
print(f"{'op':<12} {'shape':<12} {'old GB/s':>9} {'new GB/s':>9} {'new/old':>8}   (best of {rounds} rounds × min of the calls)")
for key, a in best["a"].items():
    b = best["b"].get(key, float("nan"))
    print(f"{key[0]:<12} {key[1]:<12} {a:9.2f} {b:9.2f} {b / a:8.3f}")
PY
