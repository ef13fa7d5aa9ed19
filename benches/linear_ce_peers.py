#!/usr/bin/env python3
"""Fused linear cross-entropy: xent's CPU path beside PyTorch's `F.linear_cross_entropy` on the CPU,
in one run, with the memory each needs; with `--device cuda` (a lent GPU, `benches/gpu_run.sh
linear`), xent's GPU path through Vulkan beside PyTorch CUDA, in each of `--dtypes`.

    python3 benches/linear_ce_peers.py [--xent target/release/xent] [--rounds 2] [--reps 3]
        [--shapes 4096x512x32000,1024x1024x128256] [--budget-rows 256] [--out DIR]
        [--device cpu|cuda] [--dtypes float32,bfloat16]

On CUDA: xent runs `xent bench --gpu-only --backend vulkan --dtype f32,bf16` (X and W stored in the
type, f32 arithmetic and gradients; fused at both budgets, and its materialised chain) and PyTorch the
same paths as on the CPU in each dtype (its arithmetic in that dtype), timed between
`torch.cuda.synchronize()` calls. Memory there: PyTorch's peak allocated bytes over the timed calls
beyond what was allocated before them (`torch.cuda.max_memory_allocated`), and xent's counted
transient bytes (its buffers beyond inputs and outputs).

Forward + backward (loss, dX, dW; labels, mean; no bias) on X N×D, W V×D. Each round runs, alternating
so that the shared machine's drift hits all: `xent bench --cpu-only --ops linear_ce --json` at its
default budget (about the size of X) and at a budget of `--budget-rows` rows of logits, then PyTorch
with `options=None` (its reference path: the materialised chain) and its chunked path with
`chunking_method="auto"` and with `batch_chunk_size` 128, 256 and 512. Every figure is the median over
rounds of each run's median. Peak memory: the growth of the process's resident high-water mark
(VmHWM, reset through /proc/self/clear_refs) over the timed calls, beyond the inputs and the
gradients' own buffers (PyTorch's .grad tensors are allocated before the timed calls, as xent's
outputs are). Raw JSON lines go to DIR when given.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v
    kb = lambda k: int(fields[k].split()[0]) * 1024
    return kb("VmRSS"), kb("VmHWM")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def torch_runs(shapes, reps, device="cpu", dtypes=("float32",)):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    cuda = device == "cuda"
    out = []
    for (n, d, v), dtype in [(s, t) for s in shapes for t in dtypes]:
        dt = getattr(torch, dtype)
        x = (torch.rand(n, d, device=device) * 2 - 1).to(dt).requires_grad_()
        w = ((torch.rand(v, d, device=device) - 0.5) * 0.2).to(dt).requires_grad_()
        y = torch.randint(0, v, (n,), device=device)
        paths = [("torch reference (options=None)", None),
                 ("torch chunked auto", torch.nn.LinearCrossEntropyOptions())]
        for rows in ((1024, 2048, 4096) if cuda else (128, 256, 512)):
            paths.append((f"torch chunked {rows} rows",
                          torch.nn.LinearCrossEntropyOptions(batch_chunk_size=rows, chunking_method=None)))
        for name, opt in paths:
            def call():
                loss = F.linear_cross_entropy(x, w, y, options=opt)
                loss.backward()
            call()  # warm-up; allocates .grad
            reset_peak()
            base = rss()[0]
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base_cuda = torch.cuda.memory_allocated()
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                call()
                if cuda:
                    torch.cuda.synchronize()
                ts.append((time.perf_counter() - t) * 1e3)
            peak = rss()[1] - base
            r = {"n": n, "d": d, "v": v, "path": f"{name} {dtype}" if cuda or dtype != "float32" else name,
                 "median_ms": statistics.median(ts), "peak_rss_growth_bytes": peak,
                 "threads": torch.get_num_threads(), "torch": torch.__version__, "device": device}
            if cuda:
                r["peak_cuda_bytes"] = torch.cuda.max_memory_allocated() - base_cuda
                r["gpu"] = torch.cuda.get_device_name()
            out.append(r)
    return out


XENT_DTYPE = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def xent_runs(binary, shapes, reps, budget_rows, device="cpu", dtypes=("float32",)):
    rows = []
    spec = ",".join(f"{n}x{d}x{v}" for n, d, v in shapes)
    where = (["--gpu-only", "--backend", "vulkan", "--dtype", ",".join(XENT_DTYPE[t] for t in dtypes)]
             if device == "cuda" else ["--cpu-only"])
    base = [binary, "bench", *where, "--json", "--ops", "linear_ce", "--reps", str(reps),
            "--linear-shapes", spec]
    lines = subprocess.run(base, check=True, capture_output=True, text=True).stdout.splitlines()

    def name(r, budget):
        kind = f"fused ({budget})" if r["path"] == "fused" else r["path"]
        return f"xent {kind}" + (f" {r['backend']}" if device == "cuda" else "")

    for l in lines:
        if l.startswith("{"):
            r = json.loads(l)
            r["path"] = name(r, "default budget")
            rows.append(r)
    for n, d, v in shapes:
        cmd = base[:-1] + [f"{n}x{d}x{v}", "--linear-budget", str(budget_rows * v * 4),
                           "--linear-paths", "fused"]
        for l in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
            if l.startswith("{"):
                r = json.loads(l)
                if r["path"] == "fused":
                    r["path"] = name(r, f"{budget_rows}-row budget")
                    rows.append(r)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xent", default=os.path.join(HERE, "..", "target", "release", "xent"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shapes", default="4096x512x32000,1024x1024x128256")
    ap.add_argument("--budget-rows", type=int, default=256)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out")
    args = ap.parse_args()
    shapes = [tuple(int(p) for p in s.split("x")) for s in args.shapes.split(",")]
    dtypes = args.dtypes.split(",")
    if args.torch_only:
        for r in torch_runs(shapes, args.reps, args.device, dtypes):
            print(json.dumps(r))
        return
    me = [sys.executable, os.path.abspath(__file__), "--torch-only", "--shapes", args.shapes,
          "--reps", str(args.reps), "--device", args.device, "--dtypes", args.dtypes]
    runs = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: xent", file=sys.stderr)
        runs += [dict(x, round=r) for x in
                 xent_runs(args.xent, shapes, args.reps, args.budget_rows, args.device, dtypes)]
        print(f"round {r + 1}/{args.rounds}: torch", file=sys.stderr)
        out = subprocess.run(me, check=True, capture_output=True, text=True).stdout
        runs += [dict(json.loads(l), round=r) for l in out.splitlines() if l.startswith("{")]
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "linear_ce_peers.jsonl"), "w") as f:
            for r in runs:
                f.write(json.dumps(r) + "\n")
    for n, d, v in shapes:
        print(f"\n{n}x{d}x{v} (6·N·D·V = {6 * n * d * v / 1e9:.0f} GFLOP)")
        paths = []
        for r in runs:
            if (r["n"], r["d"], r["v"]) == (n, d, v) and r["path"] not in paths:
                paths.append(r["path"])
        best_torch = None
        table = []
        for p in paths:
            sel = [r for r in runs if (r["n"], r["d"], r["v"], r["path"]) == (n, d, v, p)]
            ms = statistics.median(r["median_ms"] for r in sel)
            # Device memory on CUDA (PyTorch's peak allocated; xent's counted transient bytes).
            key = (lambda r: r.get("peak_cuda_bytes", r.get("transient_bytes", 0))) if args.device == "cuda" \
                else (lambda r: r.get("peak_rss_growth_bytes") or 0)
            peak = statistics.median(key(r) or 0 for r in sel)
            table.append((p, ms, peak))
            if p.startswith("torch"):
                best_torch = ms if best_torch is None else min(best_torch, ms)
        mem = "peak device MiB" if args.device == "cuda" else "peak RSS +MiB"
        print(f"  {'path':46} {'median ms':>10} {'GFLOP/s':>8} {mem:>15} {'vs best torch':>14}")
        for p, ms, peak in table:
            ratio = f"{best_torch / ms:.2f}x" if best_torch else "-"
            print(f"  {p:46} {ms:10.1f} {6 * n * d * v / ms / 1e6:8.1f} {peak / 2**20:15.1f} {ratio:>14}")


if __name__ == "__main__":
    main()
