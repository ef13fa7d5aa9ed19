//! The fast CPU path's kernels timed as the minimum of many calls in one process: the figure least
//! moved by a shared machine's interference, for A/B of two builds (`benches/cpu_ab.sh`).
//!
//! `cargo bench --bench cpu_min -- [--threads T] [--iters N] [OP NxK...]` (no OP: all four at the
//! standard shapes) with OP one of `softmax`,
//! `ce` (forward + backward, labels, mean, into a reused gradient), `softmax_bwd`, `copy`; prints one
//! line per shape: `OP NxK min_ms GB/s` (n·N·8 bytes; n·N·12 for the softmax backward).

use std::time::Instant;

use xent::{CrossEntropyOptions, cpu};

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut take = |flag: &str, default: usize| -> usize {
        match args.iter().position(|a| a == flag) {
            Some(i) => {
                let v = args[i + 1].parse().expect("a number");
                args.drain(i..i + 2);
                v
            }
            None => default,
        }
    };
    let threads = take("--threads", 0);
    let iters = take("--iters", 60);
    if threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .expect("the global pool, once");
    }
    // Without arguments (as `cargo bench` runs it): every op at the four standard shapes.
    let default_shapes = ["4096x1000", "1024x32000", "256x128256", "65536x10"].map(String::from);
    let (ops, shapes): (Vec<String>, &[String]) = match args.split_first() {
        Some((op, shapes)) => (vec![op.clone()], shapes),
        None => (
            ["copy", "softmax", "ce", "softmax_bwd"]
                .map(String::from)
                .to_vec(),
            &default_shapes,
        ),
    };
    for op in &ops {
        run(op, shapes, iters);
    }
}

/// Times `op` at each shape: the minimum over `iters` calls.
fn run(op: &str, shapes: &[String], iters: usize) {
    for shape in shapes {
        let (n, k) = shape.split_once('x').expect("NxK");
        let (n, k): (usize, usize) = (n.parse().expect("N"), k.parse().expect("K"));
        let x: Vec<f32> = (0..n * k)
            .map(|i| ((i.wrapping_mul(2_654_435_761)) % 1000) as f32 * 0.01 - 5.0)
            .collect();
        let labels: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
        let opts = CrossEntropyOptions::default();
        let mut out = vec![0f32; n * k];
        let mut best = f64::INFINITY;
        for _ in 0..iters {
            let t = Instant::now();
            match op {
                "softmax" => cpu::softmax_into(&x, k, &mut out).expect("softmax"),
                "softmax_bwd" => cpu::softmax_backward_into(&x, &x, k, &mut out).expect("bwd"),
                "copy" => cpu::copy_into(&x, k, &mut out).expect("copy"),
                "ce" => drop(
                    cpu::cross_entropy(
                        &x,
                        k,
                        cpu::CpuTargets::Labels(&labels),
                        &opts,
                        Some(&mut out),
                    )
                    .expect("ce"),
                ),
                other => panic!("unknown op {other}"),
            }
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(&out);
        }
        let bytes = (n * k * if op == "softmax_bwd" { 12 } else { 8 }) as f64;
        println!("{op} {n}x{k} {:.4} {:.2}", best * 1e3, bytes / best / 1e9);
    }
}
