//! criterion benches: each op on the GPU adapter, on the fast CPU path and on the f64 reference, with
//! throughput in bytes (docs/MATH.md's cost model) or in FLOPs (reported as "elements" = floating-point
//! operations) for the matmul. The GPU is waited for before the clock stops; the backend is in the
//! benchmark's name. `cargo bench` runs them; `xent bench` gives the table with the copy roofline.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use xent::reference::{self, RefTargets};
use xent::{
    Context, ContextOptions, CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Targets, cpu, data,
    train,
};

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 16.0 - 8.0
        })
        .collect()
}

fn context() -> Option<Context> {
    match Context::new_blocking(ContextOptions::from_env()) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("xent bench: no GPU adapter ({e}); GPU benchmarks skipped");
            None
        }
    }
}

fn gpu_name(ctx: &Context) -> String {
    format!("gpu-{:?}", ctx.adapter().backend).to_lowercase()
}

const SHAPES: &[(usize, usize)] = &[(4096, 1000), (1024, 32000), (65536, 10)];

fn softmax_and_ce(c: &mut Criterion) {
    let ctx = context();
    for &(n, k) in SHAPES {
        let x = values(n * k, 1);
        let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % k) as i64).collect();
        let g = values(n * k, 2);
        let bytes = (n * k * 8) as u64;
        let opts = CrossEntropyOptions::default();

        let mut group = c.benchmark_group("softmax");
        group
            .throughput(Throughput::Bytes(bytes))
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let id = format!("{n}x{k}");
        if let Some(ctx) = &ctx {
            let xm = GpuMatrix::from_slice(ctx, &x, n, k).unwrap();
            let out = GpuMatrix::zeros(ctx, n, k).unwrap();
            group.bench_function(BenchmarkId::new(gpu_name(ctx), &id), |b| {
                b.iter(|| {
                    ctx.softmax_into(&xm, &out).unwrap();
                    ctx.wait_idle().unwrap();
                })
            });
        }
        // Into a reused buffer, as the GPU's output (a fresh output costs its page faults).
        let mut y = vec![0f32; n * k];
        group.bench_function(BenchmarkId::new("cpu-fast", &id), |b| {
            b.iter(|| cpu::softmax_into(black_box(&x), k, &mut y).unwrap())
        });
        if n * k <= 4_096_000 {
            group.bench_function(BenchmarkId::new("cpu-reference", &id), |b| {
                b.iter(|| black_box(reference::softmax(&x, k)))
            });
        }
        group.finish();

        let mut group = c.benchmark_group("cross_entropy_fwd_bwd");
        group
            .throughput(Throughput::Bytes(bytes))
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        if let Some(ctx) = &ctx {
            let xm = GpuMatrix::from_slice(ctx, &x, n, k).unwrap();
            let lm = GpuLabels::from_slice(ctx, &labels).unwrap();
            let out = GpuMatrix::zeros(ctx, n, k).unwrap();
            group.bench_function(BenchmarkId::new(gpu_name(ctx), &id), |b| {
                b.iter(|| {
                    ctx.cross_entropy_fwd_bwd_into(&xm, Targets::Labels(&lm), &opts, &out)
                        .unwrap();
                    ctx.wait_idle().unwrap();
                })
            });
        }
        let mut grad = vec![0f32; n * k];
        group.bench_function(BenchmarkId::new("cpu-fast", &id), |b| {
            b.iter(|| {
                black_box(
                    cpu::cross_entropy(
                        &x,
                        k,
                        cpu::CpuTargets::Labels(&labels),
                        &opts,
                        Some(&mut grad),
                    )
                    .unwrap(),
                )
            })
        });
        if n * k <= 4_096_000 {
            group.bench_function(BenchmarkId::new("cpu-reference", &id), |b| {
                b.iter(|| {
                    black_box(reference::cross_entropy(
                        &x,
                        k,
                        RefTargets::Labels(&labels),
                        &opts,
                    ))
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group("softmax_backward");
        group
            .throughput(Throughput::Bytes(bytes * 3 / 2))
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        if let Some(ctx) = &ctx {
            let pm = GpuMatrix::from_slice(ctx, &x, n, k).unwrap();
            let gm = GpuMatrix::from_slice(ctx, &g, n, k).unwrap();
            let out = GpuMatrix::zeros(ctx, n, k).unwrap();
            group.bench_function(BenchmarkId::new(gpu_name(ctx), &id), |b| {
                b.iter(|| {
                    ctx.softmax_backward_into(&pm, &gm, &out).unwrap();
                    ctx.wait_idle().unwrap();
                })
            });
        }
        group.bench_function(BenchmarkId::new("cpu-fast", &id), |b| {
            b.iter(|| cpu::softmax_backward_into(black_box(&x), &g, k, &mut y).unwrap())
        });
        group.finish();
    }
}

fn matmul_and_training(c: &mut Criterion) {
    let ctx = context();
    for &(n, d, k) in &[(4096usize, 784usize, 10usize), (2048, 2048, 2048)] {
        let x = values(n * d, 3);
        let g = values(n * k, 4);
        let mut group = c.benchmark_group("weight_grad_xt_g");
        // Elements = floating-point operations (2·n·d·N), so criterion's rate reads as FLOP/s.
        group
            .throughput(Throughput::Elements((2 * n * d * k) as u64))
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let id = format!("n{n}_d{d}_N{k}");
        if let Some(ctx) = &ctx {
            let xm = GpuMatrix::from_slice(ctx, &x, n, d).unwrap();
            let gm = GpuMatrix::from_slice(ctx, &g, n, k).unwrap();
            let out = GpuMatrix::zeros(ctx, d, k).unwrap();
            group.bench_function(BenchmarkId::new(gpu_name(ctx), &id), |b| {
                b.iter(|| {
                    ctx.weight_grad_into(&xm, &gm, &out).unwrap();
                    ctx.wait_idle().unwrap();
                })
            });
        }
        group.bench_function(BenchmarkId::new("cpu-fast", &id), |b| {
            b.iter(|| black_box(cpu::weight_grad(&x, &g, n, d, k).unwrap()))
        });
        if n * d * k <= 40_000_000 {
            group.bench_function(BenchmarkId::new("cpu-reference", &id), |b| {
                b.iter(|| black_box(reference::weight_grad(&x, &g, d, k)))
            });
        }
        group.finish();
    }

    // One training step (gather, logits, fused cross-entropy, dW, db, SGD) on a 64-row digits batch.
    let (train_set, _) = data::digits_split().unwrap();
    let cfg = train::TrainConfig::default();
    let idx: Vec<u32> = (0..cfg.batch_size as u32).collect();
    let mut group = c.benchmark_group("train_step_digits_b64");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    if let Some(ctx) = &ctx {
        let mut t = train::GpuTrainer::new(ctx, &train_set, None).unwrap();
        group.bench_function(gpu_name(ctx), |b| {
            b.iter(|| {
                t.step(&idx, &cfg).unwrap();
                ctx.wait_idle().unwrap();
            })
        });
    }
    let mut t = train::CpuTrainer::new(&train_set).unwrap();
    group.bench_function("cpu-reference", |b| {
        b.iter(|| black_box(t.step(&idx, &cfg).unwrap()))
    });
    let mut t = train::CpuTrainer::with_path(&train_set, train::CpuPath::Fast).unwrap();
    group.bench_function("cpu-fast", |b| {
        b.iter(|| black_box(t.step(&idx, &cfg).unwrap()))
    });
    group.finish();
}

/// Each storage type side by side (f32, f16, bf16), in elements per second so the types compare
/// directly: softmax and cross-entropy forward+backward on the GPU, and the CPU path's 16-bit twins.
fn storage_types(c: &mut Criterion) {
    let ctx = context();
    let (n, k) = (1024, 32000);
    let x = values(n * k, 3);
    let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % k) as i64).collect();
    let opts = CrossEntropyOptions::default();
    for op in ["softmax", "cross_entropy_fwd_bwd"] {
        let mut group = c.benchmark_group(format!("{op}_by_type"));
        group
            .throughput(Throughput::Elements((n * k) as u64))
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        for elem in Elem::ALL {
            let id = format!("{n}x{k}-{elem}");
            if let Some(ctx) = &ctx {
                let xm = GpuMatrix::from_slice_as(ctx, &x, n, k, elem).unwrap();
                let lm = GpuLabels::from_slice(ctx, &labels).unwrap();
                let out = GpuMatrix::zeros_as(ctx, n, k, elem).unwrap();
                group.bench_function(BenchmarkId::new(gpu_name(ctx), &id), |b| {
                    b.iter(|| {
                        if op == "softmax" {
                            ctx.softmax_into(&xm, &out).unwrap();
                        } else {
                            ctx.cross_entropy_fwd_bwd_into(&xm, Targets::Labels(&lm), &opts, &out)
                                .unwrap();
                        }
                        ctx.wait_idle().unwrap();
                    })
                });
            }
            if elem == Elem::Bf16 {
                let xb: Vec<xent::half::bf16> = cpu::narrow(&x);
                let mut grad = xb.clone();
                group.bench_function(BenchmarkId::new("cpu-fast", &id), |b| {
                    b.iter(|| {
                        if op == "softmax" {
                            drop(black_box(cpu::softmax_as(&xb, k).unwrap()));
                        } else {
                            let t = cpu::CpuTargets::Labels(&labels);
                            let g = Some(&mut grad[..]);
                            black_box(cpu::cross_entropy_as(&xb, k, t, &opts, g).unwrap());
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, softmax_and_ce, matmul_and_training, storage_types);
criterion_main!(benches);
