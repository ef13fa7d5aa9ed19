#!/usr/bin/env bash
# Runs on a lent GPU machine (the device tool; see benches/README.md, "Real GPU"): the integration
# tests, `xent bench` through Vulkan, and PyTorch CUDA / JAX on the same shapes, in one command.
#
# Built here first (the GPU machine has no Rust toolchain):
#   cargo build --release --bin xent && cargo test --release --no-run
#   mkdir -p .dev && cp target/release/xent .dev/xent
#   cp target/release/deps/xent-<hash> .dev/xent-tests     # the tests/xent.rs binary
# and carried with the Vulkan loader: carry = [".gl", ".dev"]. Other builds to compare may sit beside
# them as .dev/xent-<variant> (the `variants` step times each on the large shapes, GPU only).
# Usage there: bash benches/gpu_run.sh [tests|bench|json|peers|variants|half|linear]...
# (tests bench json peers by default; json: the same sweep as JSON lines and an SVG plot; half: f32,
# f16 and bf16 side by side at the language-model shapes, xent beside PyTorch CUDA in each type;
# linear: fused linear cross-entropy, xent's GPU path and its chain beside PyTorch CUDA's
# F.linear_cross_entropy, f32 and bf16, with each one's device memory)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
# The test binary names files by the path it was built at.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
mkdir -p target/release && cp .dev/xent target/release/xent
export RUST_LIB_BACKTRACE=0 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
steps=${*:-tests bench json peers}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv | tee "$OUT/gpu.txt"
SHAPES=${SHAPES:-4096x1000,1024x32000,256x128256,65536x10,8192x32000,4096x128256}
REPS=${REPS:-30}
for step in $steps; do
    case $step in
    tests)
        # The whole suite on NVIDIA through Vulkan. Vulkan only: wgpu's GL backend could not open NVIDIA's EGL device there ("Parent device is lost").
        WGPU_BACKEND=vulkan XENT_REQUIRE_GPU=1 timeout 300 .dev/xent-tests --test-threads 8 2>&1 |
            tee "$OUT/tests.log" | grep -E "running on|test result|FAILED|panicked|failed" | head -60
        ;;
    bench)
        target/release/xent bench --backend vulkan --shapes "$SHAPES" --reps "$REPS" 2>&1 |
            tee "$OUT/bench.txt"
        ;;
    json)
        target/release/xent bench --backend vulkan --shapes "$SHAPES" --reps "$REPS" --json \
            --plot "$OUT/gpu_throughput.svg" >"$OUT/bench.jsonl" 2>/dev/null
        ;;
    variants)
        for bin in .dev/xent .dev/xent-*; do
            [ "$bin" = .dev/xent-tests ] && continue
            echo "== $bin"
            "$bin" bench --backend vulkan --gpu-only --shapes "${VSHAPES:-$SHAPES}" --reps "$REPS" \
                --matmul-shapes none 2>&1 | tee "$OUT/variant-${bin#.dev/}.txt" | grep -E "^(copy|softmax|ce) " | cut -c1-80
        done
        ;;
    peers)
        python3 benches/peers.py --no-cpu --shapes "$SHAPES" --reps "$REPS" 2>&1 | tee "$OUT/peers.txt"
        ;;
    half)
        HSHAPES=${HSHAPES:-4096x128256,8192x32000,4096x50257}
        target/release/xent bench --backend vulkan --gpu-only --dtype f32,f16,bf16 \
            --shapes "$HSHAPES" --reps "$REPS" --matmul-shapes none 2>&1 | tee "$OUT/bench-half.txt"
        python3 benches/peers.py --no-cpu --dtypes float32,float16,bfloat16 --shapes "$HSHAPES" \
            --reps "$REPS" 2>&1 | grep -v jax | tee "$OUT/peers-half.txt"
        ;;
    linear)
        LSHAPES=${LSHAPES:-4096x2048x32000,8192x4096x128256}
        python3 benches/linear_ce_peers.py --device cuda --dtypes float32,bfloat16 --rounds 1 \
            --reps 3 --budget-rows 2048 --shapes "$LSHAPES" --out "$OUT/linear" 2>&1 |
            tee "$OUT/linear.txt"
        ;;
    esac
done
