#!/usr/bin/env python3
"""Times the peers xent is compared with, on the same shapes and the same cost model as `xent bench`:
PyTorch and JAX on the CPU (and PyTorch CUDA where a GPU is present).

    python3 benches/peers.py [--reps 7] [--shapes 4096x1000,1024x32000,256x128256,65536x10] [--json]

Ops: softmax forward (bytes = n·N·8) and cross-entropy forward+backward with class labels and mean
reduction (bytes = n·N·8: read the logits, write the gradient). Median of `reps` timed runs after one
warm-up. Needs numpy and torch and/or jax; a missing framework is skipped with a note.
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


def torch_rows(shapes, reps, device):
    import torch

    rows = []
    for n, k in shapes:
        rng = np.random.default_rng(n * 31 + k)
        x = torch.tensor(rng.uniform(-8, 8, (n, k)).astype(np.float32), device=device)
        y = torch.tensor(rng.integers(0, k, n), device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def softmax():
            torch.softmax(x, dim=1)
            sync()

        def ce():
            z = x.detach().requires_grad_(True)
            torch.nn.functional.cross_entropy(z, y).backward()
            sync()

        for op, fn in (("softmax", softmax), ("ce", ce)):
            ms = median_ms(fn, reps)
            rows.append(dict(op=op, n=n, k=k, backend=f"torch-{device}", median_ms=ms, gbps=n * k * 8 / ms / 1e6))
    return rows


def jax_rows(shapes, reps):
    import jax
    import jax.numpy as jnp

    def loss(z, y):
        lse = jax.nn.logsumexp(z, axis=1)
        return jnp.mean(lse - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])

    grad = jax.jit(jax.value_and_grad(loss))
    softmax = jax.jit(lambda z: jax.nn.softmax(z, axis=1))
    rows = []
    for n, k in shapes:
        rng = np.random.default_rng(n * 31 + k)
        x = jnp.asarray(rng.uniform(-8, 8, (n, k)).astype(np.float32))
        y = jnp.asarray(rng.integers(0, k, n).astype(np.int32))
        for op, fn in (("softmax", lambda: softmax(x).block_until_ready()),
                       ("ce", lambda: grad(x, y)[1].block_until_ready())):
            ms = median_ms(fn, reps)
            rows.append(dict(op=op, n=n, k=k, backend="jax-cpu", median_ms=ms, gbps=n * k * 8 / ms / 1e6))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=shapes_arg, default=shapes_arg("4096x1000,1024x32000,256x128256,65536x10"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    try:
        import torch

        rows += torch_rows(args.shapes, args.reps, "cpu")
        if torch.cuda.is_available():
            rows += torch_rows(args.shapes, args.reps, "cuda")
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
            print(f"{r['op']:<8} {r['n']}x{r['k']:<8} {r['backend']:<12} {r['median_ms']:9.3f} ms {r['gbps']:7.2f} GB/s")


if __name__ == "__main__":
    main()
