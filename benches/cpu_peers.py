#!/usr/bin/env python3
"""xent's fast CPU path beside PyTorch and JAX on the CPU, in one run, with the CPU copy roofline.

    python3 benches/cpu_peers.py [--xent target/release/xent] [--rounds 3] [--reps 7] [--out DIR]

Each round runs `xent bench --cpu-only --json` twice (outputs reused, the default; and `--cpu-alloc`,
a fresh output per call, as PyTorch's functional ops, autograd and XLA do) and `benches/peers.py
--json`, alternating, so the shared machine's drift hits all; every figure is the median over rounds
of each run's median. Prints, per op and shape, GB/s (the cost model of docs/MATH.md: n·N·8 bytes,
n·N·12 for the softmax backward), the ratio of xent (fresh outputs, the like-for-like figure) to the
faster peer, and each xent figure's % of the CPU copy roofline (xent's multithreaded copy of the same
bytes, into a reused output) and, for the fresh-output figure, of the copy into a fresh output (the
roofline of a call that allocates: it pays the same page faults). Raw JSON lines go to DIR when given;
`--from DIR` prints the table of such a run again without running anything.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = "4096x1000,1024x32000,256x128256,65536x10"


def run_lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xent", default=os.path.join(HERE, "..", "target", "release", "xent"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--out")
    ap.add_argument("--from", dest="from_dir", help="print the table of an earlier run's --out DIR (runs nothing)")
    args = ap.parse_args()
    bench = [args.xent, "bench", "--cpu-only", "--json", "--reps", str(args.reps), "--shapes", args.shapes,
             "--ops", "copy,softmax,ce,softmax_bwd"]
    runs = {"xent (reused)": [], "xent": [], "peers": []}
    isa = "?"
    fname = lambda name: name.replace(" ", "_").replace("(", "").replace(")", "") + ".jsonl"
    if args.from_dir:
        for name in runs:
            with open(os.path.join(args.from_dir, fname(name))) as f:
                runs[name] = [json.loads(l) for l in f if l.strip()]
        isa = next((m.get("cpu_isa") for m in runs["xent (reused)"] if m.get("cpu_isa")), isa)
    for _ in range(0 if args.from_dir else args.rounds):
        reused = run_lines(bench)
        runs["xent (reused)"] += reused
        runs["xent"] += run_lines(bench + ["--cpu-alloc"])
        runs["peers"] += run_lines([sys.executable, os.path.join(HERE, "peers.py"), "--json",
                                    "--reps", str(args.reps), "--shapes", args.shapes])
        isa = next((m.get("cpu_isa") for m in reused if m.get("cpu_isa")), isa)
    if args.out and not args.from_dir:
        os.makedirs(args.out, exist_ok=True)
        for name, rows in runs.items():
            with open(os.path.join(args.out, fname(name)), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    def med(rows, backend, op, n, k):
        v = [r["gbps"] for r in rows if r["backend"] == backend and r["op"] == op and (r["n"], r["k"]) == (n, k)]
        return statistics.median(v) if v else float("nan")

    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(f"CPU path: {isa}; {args.rounds} rounds of median-of-{args.reps}; GB/s")
    head = ["op", "shape", "xent", "xent (reused)", "PyTorch", "JAX", "xent / best peer", "xent % of copy",
            "reused % of copy", "copy", "xent % of fresh copy", "fresh copy"]
    rows = []
    for op in ("softmax", "ce", "softmax_bwd"):
        for n, k in shapes:
            x = med(runs["xent"], "cpu", op, n, k)
            xr = med(runs["xent (reused)"], "cpu", op, n, k)
            copy = med(runs["xent (reused)"], "cpu", "copy", n, k)
            fresh = med(runs["xent"], "cpu", "copy", n, k)
            t = med(runs["peers"], "torch-cpu", op, n, k)
            j = med(runs["peers"], "jax-cpu", op, n, k)
            best = max(v for v in (t, j, 0.0) if v == v)
            rows.append([op, f"{n}x{k}", f"{x:.2f}", f"{xr:.2f}", f"{t:.2f}", f"{j:.2f}",
                         f"{x / best:.2f}x" if best else "-", f"{100 * x / copy:.0f}%", f"{100 * xr / copy:.0f}%",
                         f"{copy:.1f}", f"{100 * x / fresh:.0f}%", f"{fresh:.1f}"])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    for r in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    main()
