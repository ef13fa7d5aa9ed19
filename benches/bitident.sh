#!/usr/bin/env bash
# Bit-identity of two xent binaries' outputs: `benches/bitident.sh OLD_XENT NEW_XENT`. Runs `xent eval`
# of both on the PyTorch fixtures (labels with weights, smoothing and ignore_index; probability
# targets; features for grad_weight/grad_bias), on a 333×1000 random batch with ±1e4 logits and on a
# 4096×10 batch whose grad_weight/grad_bias run split-K, on each
# backend (vulkan, gl, and the fast CPU path; `BACKENDS` narrows them), and compares every output
# file byte for byte.
set -uo pipefail
old=$1 new=$2
root=$(cd "$(dirname "$0")/.." && pwd)
fx=$root/tests/fixtures/torch
dir=$(mktemp -d)
python3 - "$dir" <<'PY'
import struct, sys, random
d = sys.argv[1]
def npy(path, shape, data, fmt):
    descr = {'f': '<f4', 'q': '<i8'}[fmt]
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ''.join(f'{s},' for s in shape))
    h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack(f'<{len(data)}{fmt}', *data))
r = random.Random(7)
n, c, dd = 333, 1000, 17
npy(f'{d}/z.npy', (n, c), [r.uniform(-1e4, 1e4) for _ in range(n * c)], 'f')
npy(f'{d}/y.npy', (n,), [r.randrange(c) for _ in range(n)], 'q')
npy(f'{d}/x.npy', (n, dd), [r.uniform(-1, 1) for _ in range(n * dd)], 'f')
# A tall batch of few classes: its Xᵀ G and 1ᵀ G run split-K (slices summed in order).
n, c, dd = 4096, 10, 16
npy(f'{d}/tz.npy', (n, c), [r.uniform(-5, 5) for _ in range(n * c)], 'f')
npy(f'{d}/ty.npy', (n,), [r.randrange(c) for _ in range(n)], 'q')
npy(f'{d}/tx.npy', (n, dd), [r.uniform(-1, 1) for _ in range(n * dd)], 'f')
PY
cases=(
  "tall:--logits $dir/tz.npy --labels $dir/ty.npy --features $dir/tx.npy"
  "big:--logits $dir/z.npy --labels $dir/y.npy --features $dir/x.npy --label-smoothing 0.1"
  "weights:--logits $fx/29_weight_smooth_ignore_8x6_none/logits.npy --labels $fx/29_weight_smooth_ignore_8x6_none/labels.npy --weight $fx/29_weight_smooth_ignore_8x6_none/weight.npy --ignore-index 3 --label-smoothing 0.2 --reduction none --features $fx/29_weight_smooth_ignore_8x6_none/logits.npy"
)
for p in "$fx"/*/targets.npy; do
  c=$(dirname "$p"); cases+=("$(basename "$c"):--logits $c/logits.npy --targets $p"); break
done
same=0 differ=0
for backend in ${BACKENDS:-vulkan gl cpu}; do
  for case in "${cases[@]}"; do
    name=${case%%:*} args=${case#*:}
    # shellcheck disable=SC2086
    "$old" eval $args --backend $backend --out "$dir/old-$backend-$name" >/dev/null 2>&1 || echo "old failed: $backend $name"
    # shellcheck disable=SC2086
    "$new" eval $args --backend $backend --out "$dir/new-$backend-$name" >/dev/null 2>&1 || echo "new failed: $backend $name"
    for f in "$dir/old-$backend-$name"/*.npy; do
      g="$dir/new-$backend-$name/$(basename "$f")"
      if cmp -s "$f" "$g"; then same=$((same + 1)); else differ=$((differ + 1)); echo "DIFFERS: $backend $name $(basename "$f")"; fi
    done
  done
done
echo "bit-identical: $same files; differing: $differ"
