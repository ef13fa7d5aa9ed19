//! Fused linear cross-entropy on the GPU path with a share of the rows ignored, host labels against
//! device-only labels: the cost of ignored rows, for A/B of two builds (the same file builds against
//! any version with `linear_cross_entropy`).
//!
//! `cargo bench --bench lce_ignored -- [--reps R] [--budget BYTES] [NxDxV [PERCENT...]]` (default 512x64x2048 at 0, 50
//! and 90% ignored) on the first adapter `XENT_BACKEND` / `ContextOptions::from_env` gives; prints
//! one line per case: `NxDxV ignored% labels min_ms` (the minimum of R timed calls after a warm-up,
//! each call submitted and waited for), forward and every gradient.

use std::time::Instant;

use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
use xent::{Context, ContextOptions, GpuLabels, GpuMatrix, LabelType};

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut take = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        let v: u64 = args[i + 1].parse().expect("a number");
        args.drain(i..i + 2);
        Some(v)
    };
    let reps = take("--reps").unwrap_or(5);
    let opts = LinearCeOptions {
        budget_bytes: take("--budget"),
        ..Default::default()
    };
    let shape = args.first().cloned().unwrap_or("512x64x2048".into());
    let dims: Vec<usize> = shape
        .split('x')
        .map(|v| v.parse().expect("NxDxV"))
        .collect();
    let (n, d, classes) = (dims[0], dims[1], dims[2]);
    let percents: Vec<usize> = match args.get(1..) {
        Some(p) if !p.is_empty() => p.iter().map(|v| v.parse().expect("a percent")).collect(),
        _ => vec![0, 50, 90],
    };
    let ctx = Context::new_blocking(ContextOptions::from_env()).expect("an adapter");
    eprintln!("lce_ignored on {}", ctx.adapter().name);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..n * d).map(|_| 2.0 * next()).collect();
    let w: Vec<f32> = (0..classes * d).map(|_| 0.1 * next()).collect();
    let xm = GpuMatrix::from_slice(&ctx, &x, n, d).unwrap();
    let wm = GpuMatrix::from_slice(&ctx, &w, classes, d).unwrap();
    let dx = GpuMatrix::zeros(&ctx, n, d).unwrap();
    let dw = GpuMatrix::zeros(&ctx, classes, d).unwrap();
    for &pct in &percents {
        // Ignored rows spread through the batch (padding and prompt tokens are not all at the end).
        let labels: Vec<i64> = (0..n)
            .map(|i| {
                if (i * 37) % 100 < pct {
                    -100
                } else {
                    ((i * 7919) % classes) as i64
                }
            })
            .collect();
        let host = GpuLabels::from_slice(&ctx, &labels).unwrap();
        let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("device-only labels"),
            size: (n as u64 * 8).max(8),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue()
            .write_buffer(&buf, 0, bytemuck::cast_slice(&labels));
        let device = GpuLabels::from_buffer(&ctx, buf, 0, n, LabelType::I64).unwrap();
        for (name, l) in [("host", &host), ("device", &device)] {
            let call = || {
                ctx.linear_cross_entropy(
                    &xm,
                    &wm,
                    None,
                    GpuTargets::Labels(l),
                    &opts,
                    GpuLinearGrads {
                        input: Some(&dx),
                        weight: Some(&dw),
                        bias: None,
                    },
                )
                .expect("linear cross-entropy")
            };
            call();
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t = Instant::now();
                std::hint::black_box(call());
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            println!("{shape} {pct}% {name} {best:.2}");
        }
    }
}
