#!/usr/bin/env python3
"""The precision table of 16-bit storage: xent against the f64 oracle and PyTorch's own f16/bf16.

    python3 benches/precision.py XENT_BINARY [--backends vulkan,gl,cpu,reference] [--out DIR]

For each storage type (f16, bf16) and case, the logits are rounded to the type once; then
- the oracle is PyTorch in float64 on exactly those values (softmax, log_softmax, the mean
  cross-entropy and its gradient by autograd);
- xent is `xent eval --dtype T` on each backend (f32 arithmetic, one rounding of every n×N output);
- PyTorch is the same ops on CPU tensors of that dtype (its own internal precision: PyTorch's CPU
  kernels accumulate half types in f32 and round the output).
Errors of n×N outputs are in units in the last place of the storage type at the oracle's value
(`ulp`), worst over the matrix, with the worst absolute error; the loss is compared as a relative
error. The bound column is xent's written contract (README, "Precision of 16-bit storage").
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

MANT = {"f16": (10, -14), "bf16": (7, -126)}
TORCH = {"f16": torch.float16, "bf16": torch.bfloat16}


def ulp(t, x):
    mant, emin = MANT[t]
    a = np.abs(x)
    e = np.where(a > 0, np.floor(np.log2(np.where(a > 0, a, 1.0))), emin)
    return np.exp2(np.maximum(e, emin) - mant)


def worst(t, got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    fin = np.isfinite(want)
    bad_special = np.sum(~fin & ~((got == want) | (np.isnan(got) & np.isnan(want))))
    if not fin.any():
        return 0.0, 0.0, int(bad_special)
    d = np.abs(got[fin] - want[fin])
    return float(np.max(d / ulp(t, want[fin]))), float(np.max(d)), int(bad_special)


def npy_write(path, a):
    np.save(path, a)


def cases(rng):
    # (name, n, N, logits f32)
    yield "uniform ±8, 256×1000", 256, 1000, rng.uniform(-8, 8, (256, 1000)).astype(np.float32)
    yield "normal σ=3, 64×32000", 64, 32000, (3 * rng.standard_normal((64, 32000))).astype(np.float32)
    z = rng.uniform(-5, 5, (512, 257)).astype(np.float32)
    yield "uniform ±5, 512×257 (odd N)", 512, 257, z
    z = rng.uniform(-2, 2, (128, 1000)).astype(np.float32)
    z[:, :500] = -np.inf
    yield "half −inf masked, 128×1000", 128, 1000, z


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("xent")
    ap.add_argument("--backends", default="vulkan,gl,cpu,reference")
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = np.random.default_rng(20261201)
    backends = a.backends.split(",")
    rows = []
    work = a.out or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    for name, n, c, z32 in cases(rng):
        y = rng.integers(0, c, n)
        if np.isneginf(z32).any():
            y = 500 + rng.integers(0, c - 500, n)
        for t in ("f16", "bf16"):
            zt = torch.from_numpy(z32).to(TORCH[t])
            zv = zt.to(torch.float64)  # the values the 16-bit logits hold, exactly
            yt = torch.from_numpy(y)
            # Oracle: float64 on the same values.
            zo = zv.clone().requires_grad_(True)
            lo = F.cross_entropy(zo, yt)
            lo.backward()
            oracle = {
                "softmax": F.softmax(zv, 1).numpy(),
                "log_softmax": F.log_softmax(zv, 1).numpy(),
                "grad": zo.grad.numpy(),
                "loss": lo.item(),
            }
            # PyTorch in the storage type.
            zp = zt.clone().requires_grad_(True)
            lp = F.cross_entropy(zp, yt)
            lp.backward()
            torch_out = {
                "softmax": F.softmax(zt, 1).to(torch.float64).numpy(),
                "log_softmax": F.log_softmax(zt, 1).to(torch.float64).numpy(),
                "grad": zp.grad.to(torch.float64).numpy(),
                "loss": lp.to(torch.float64).item(),
            }
            d = os.path.join(work, f"{abs(hash(name)) % 10**6}_{t}")
            os.makedirs(d, exist_ok=True)
            npy_write(f"{d}/z.npy", zv.numpy().astype(np.float32))
            npy_write(f"{d}/y.npy", y.astype(np.int64))
            outs = {"PyTorch " + t: torch_out}
            for b in backends:
                od = f"{d}/out_{b}"
                r = subprocess.run(
                    [a.xent, "eval", "--logits", f"{d}/z.npy", "--labels", f"{d}/y.npy",
                     "--dtype", t, "--backend", b, "--out", od],
                    capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"xent eval --backend {b} failed: {r.stderr}", file=sys.stderr)
                    continue
                outs["xent " + b] = {
                    k: np.load(f"{od}/{k}.npy").astype(np.float64)
                    for k in ("softmax", "log_softmax", "grad")
                } | {"loss": float(np.load(f"{od}/loss.npy"))}
            for who, o in outs.items():
                row = [name, t, who]
                for k in ("softmax", "log_softmax", "grad"):
                    u, ab, sp = worst(t, o[k], oracle[k])
                    row.append(f"{u:.2f} ({ab:.1e})" + (f" [{sp} specials differ]" if sp else ""))
                rel = abs(o["loss"] - oracle["loss"]) / max(abs(oracle["loss"]), 1e-300)
                row.append(f"{rel:.1e}")
                rows.append(row)
    head = ["case", "type", "who", "softmax ulp (abs)", "log_softmax ulp (abs)", "grad ulp (abs)", "loss rel err"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
