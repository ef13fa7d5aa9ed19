#!/usr/bin/env python3
"""Times the peers xent is compared with, on the same shapes and the same cost model as `xent bench`:
PyTorch and JAX on the CPU (and PyTorch CUDA where a GPU is present: wall time with a synchronize, and
device time from CUDA events, beside a device-to-device copy of the same shape as its roofline).

    python3 benches/peers.py [--reps 7] [--shapes 4096x1000,1024x32000,256x128256,65536x10] [--json] [--no-cpu]

Ops: softmax forward (bytes = n·N·8), the softmax backward from the probabilities and an upstream
gradient (bytes = n·N·12: read both, write one), and cross-entropy forward+backward with class labels
and mean reduction (bytes = n·N·8: read the logits, write the gradient). Every op allocates its output
per call (PyTorch's functional ops and autograd, XLA's buffers): compare with `xent bench --cpu-alloc`.
Median of `reps` timed runs after one warm-up. Needs numpy and torch and/or jax; a missing framework
is skipped with a note.
"""
import argparse
import json
import statistics
import time

import numpy as np


def shapes_arg(s):
    return [tuple(int(v) for v in p.split("x")) for p in s.split(",")]


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def cuda_event_ms(fn, reps):
    """Median device time of `fn` (which must not synchronize) from CUDA events recorded on the stream
    around it: the op's kernels and the gaps between them, like xent's timestamp queries."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def torch_rows(shapes, reps, device, dtype="float32"):
    import torch

    dt = getattr(torch, dtype)
    esize = torch.tensor([], dtype=dt).element_size()
    suffix = "" if dtype == "float32" else "-" + {"bfloat16": "bf16", "float16": "f16"}[dtype]
    rows = []
    for n, k in shapes:
        rng = np.random.default_rng(n * 31 + k)
        x = torch.tensor(rng.uniform(-8, 8, (n, k)).astype(np.float32), device=device).to(dt)
        y = torch.tensor(rng.integers(0, k, n), device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def softmax(wait=True):
            torch.softmax(x, dim=1)
            if wait:
                sync()

        def ce(wait=True):
            z = x.detach().requires_grad_(True)
            torch.nn.functional.cross_entropy(z, y).backward()
            if wait:
                sync()

        out = torch.empty_like(x)
        p = torch.softmax(x, dim=1)
        g = torch.tensor(rng.uniform(-0.5, 0.5, (n, k)).astype(np.float32), device=device).to(dt)

        def softmax_bwd(wait=True):
            torch._softmax_backward_data(g, p, 1, dt)
            if wait:
                sync()

        def copy(wait=True):
            out.copy_(x)
            if wait:
                sync()

        ops = [("softmax", softmax), ("ce", ce), ("softmax_bwd", softmax_bwd)]
        if device == "cuda":
            ops.insert(0, ("copy", copy))
        for op, fn in ops:
            ms = median_ms(fn, reps)
            nbytes = n * k * esize * (3 if op == "softmax_bwd" else 2)
            row = dict(op=op, n=n, k=k, backend=f"torch-{device}{suffix}", median_ms=ms,
                       gbps=nbytes / ms / 1e6)
            if device == "cuda":
                # Device time: events on the stream around the launches, no host synchronisation
                # inside the window (runs before 2026-11-22's last had one: +10–20 µs a call).
                g = cuda_event_ms(lambda: fn(wait=False), reps)
                row.update(gpu_ms=g, gpu_gbps=nbytes / g / 1e6)
            rows.append(row)
    return rows


def jax_rows(shapes, reps):
    import jax
    import jax.numpy as jnp

    def loss(z, y):
        lse = jax.nn.logsumexp(z, axis=1)
        return jnp.mean(lse - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])

    grad = jax.jit(jax.value_and_grad(loss))
    softmax = jax.jit(lambda z: jax.nn.softmax(z, axis=1))
    # The softmax's vector-Jacobian product, as JAX's autodiff of softmax computes it.
    softmax_bwd = jax.jit(lambda p, g: p * (g - jnp.sum(g * p, axis=1, keepdims=True)))
    backend = f"jax-{jax.default_backend()}"
    rows = []
    for n, k in shapes:
        rng = np.random.default_rng(n * 31 + k)
        x = jnp.asarray(rng.uniform(-8, 8, (n, k)).astype(np.float32))
        y = jnp.asarray(rng.integers(0, k, n).astype(np.int32))
        p = softmax(x)
        g = jnp.asarray(rng.uniform(-0.5, 0.5, (n, k)).astype(np.float32))
        for op, fn in (("softmax", lambda: softmax(x).block_until_ready()),
                       ("ce", lambda: grad(x, y)[1].block_until_ready()),
                       ("softmax_bwd", lambda: softmax_bwd(p, g).block_until_ready())):
            ms = median_ms(fn, reps)
            nbytes = n * k * (12 if op == "softmax_bwd" else 8)
            rows.append(dict(op=op, n=n, k=k, backend=backend, median_ms=ms, gbps=nbytes / ms / 1e6))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=shapes_arg, default=shapes_arg("4096x1000,1024x32000,256x128256,65536x10"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-cpu", action="store_true", help="skip PyTorch's CPU timings")
    ap.add_argument("--dtypes", default="float32",
                    help="PyTorch's storage types, comma-separated: float32, bfloat16, float16 "
                         "(bytes at the storage width; JAX runs float32)")
    args = ap.parse_args()
    rows = []
    try:
        import torch

        for dtype in args.dtypes.split(","):
            if not args.no_cpu:
                rows += torch_rows(args.shapes, args.reps, "cpu", dtype)
            if torch.cuda.is_available():
                rows += torch_rows(args.shapes, args.reps, "cuda", dtype)
    except ImportError:
        print("# torch not installed: skipped")
    try:
        rows += jax_rows(args.shapes, args.reps)
    except ImportError:
        print("# jax not installed: skipped")
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            gpu = f"  GPU {r['gpu_ms']:8.4f} ms {r['gpu_gbps']:8.1f} GB/s" if "gpu_ms" in r else ""
            print(f"{r['op']:<8} {r['n']}x{r['k']:<8} {r['backend']:<12} {r['median_ms']:9.3f} ms {r['gbps']:7.2f} GB/s{gpu}")


if __name__ == "__main__":
    main()
