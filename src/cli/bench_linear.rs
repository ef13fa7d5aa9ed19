//! `xent bench --ops linear_ce`: fused linear cross-entropy (forward + every gradient) against the
//! materialised chain on the same backend, in GFLOP/s (6·n·d·V: the logits, dX and dW) with the
//! memory each allocates beyond its inputs and outputs.

use xent::cpu::{self, CpuLinear, CpuLinearGrads, CpuTargets};
use xent::linear_ce::{LinearCeOptions, LinearShape};
use xent::{Context, CrossEntropyOptions, GpuLabels, GpuMatrix, XentError};

use super::bench::BenchArgs;
use super::{print_table, timed};

/// One linear cross-entropy measurement.
pub struct LinearRow {
    pub shape: LinearShape,
    pub backend: String,
    pub path: &'static str,
    pub median_ms: f64,
    /// Bytes the call allocates beyond inputs and outputs (counted).
    pub transient: u64,
    /// Growth of the process's peak resident memory during the timed calls (Linux), bytes.
    pub peak_rss: Option<u64>,
    /// Percent of rows ignored, and whether the GPU's labels were device-only.
    pub ignored: u8,
    pub device_labels: bool,
}

impl LinearRow {
    fn gflops(&self) -> f64 {
        let LinearShape { n, d, classes } = self.shape;
        6.0 * (n * d * classes) as f64 / (self.median_ms * 1e-3) / 1e9
    }
}

/// The process's resident set and its peak since the last reset, in bytes (Linux; `None` elsewhere).
fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |k: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(k))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak-RSS mark to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The median of `reps` timed calls after one warm-up, and the peak RSS growth over them.
fn time_peak(
    reps: usize,
    f: &mut dyn FnMut() -> Result<(), XentError>,
) -> Result<(f64, Option<u64>), XentError> {
    f()?;
    reset_peak();
    let base = rss();
    let mut ms = Vec::new();
    for _ in 0..reps {
        let (r, t) = timed(&mut *f);
        r?;
        ms.push(t);
    }
    ms.sort_by(f64::total_cmp);
    let peak = match (base, rss()) {
        (Some((rss0, _)), Some((_, hwm))) => Some(hwm.saturating_sub(rss0)),
        _ => None,
    };
    Ok((ms[ms.len() / 2], peak))
}

struct Problem {
    x: Vec<f32>,
    w: Vec<f32>,
    w_t: Vec<f32>,
    labels: Vec<i64>,
}

fn problem(s: LinearShape, ignored: usize) -> Problem {
    let LinearShape { n, d, classes } = s;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (n * 131 + d * 7 + classes) as u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..n * d).map(|_| 2.0 * next()).collect();
    let w: Vec<f32> = (0..classes * d).map(|_| 0.1 * next()).collect();
    let w_t = (0..d * classes)
        .map(|e| w[(e % classes) * d + e / classes])
        .collect();
    // `ignored` percent of the rows (spread through the batch) take ignore_index (-100).
    let labels = (0..n)
        .map(|i| {
            if (i * 37) % 100 < ignored {
                -100
            } else {
                ((i * 7919) % classes) as i64
            }
        })
        .collect();
    Problem { x, w, w_t, labels }
}

/// int64 labels in a buffer of their own (no host copy: the device lists the kept rows).
fn device_labels(ctx: &Context, labels: &[i64]) -> Result<GpuLabels, XentError> {
    let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("xent bench: device-only labels"),
        size: (labels.len() as u64 * 8).max(8),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue()
        .write_buffer(&buf, 0, bytemuck::cast_slice(labels));
    GpuLabels::from_buffer(ctx, buf, 0, labels.len(), xent::LabelType::I64)
}

/// Every linear shape on the CPU path (fused and chain) and, when given, the GPU (fused and chain).
pub fn measure(args: &BenchArgs, ctx: Option<&Context>) -> Result<Vec<LinearRow>, XentError> {
    if let Some(p) = args
        .linear_paths
        .iter()
        .find(|p| !["fused", "chain"].contains(&p.as_str()))
    {
        return Err(XentError::InvalidArgument(format!(
            "--linear-paths `{p}`: expected fused or chain"
        )));
    }
    let mut out = Vec::new();
    for &(n, d, classes) in &args.linear_shapes {
        let shape = LinearShape { n, d, classes };
        let p = problem(shape, args.linear_ignored as usize);
        let opts = LinearCeOptions {
            budget_bytes: args.linear_budget,
            ..Default::default()
        };
        let (mut dx, mut dw) = (vec![0f32; n * d], vec![0f32; classes * d]);
        let row = |backend: &str, path, median_ms, transient, peak_rss| LinearRow {
            shape,
            backend: backend.into(),
            path,
            median_ms,
            transient,
            peak_rss,
            ignored: args.linear_ignored,
            device_labels: false,
        };
        let wants = |path: &str| args.linear_paths.iter().any(|p| p == path);
        if !args.gpu_only && wants("fused") {
            let mut transient = 0;
            let (ms, peak) = time_peak(args.reps, &mut || {
                let r = cpu::linear_cross_entropy(
                    CpuLinear {
                        x: &p.x,
                        weight: &p.w,
                        bias: None,
                        shape,
                    },
                    CpuTargets::Labels(&p.labels),
                    &opts,
                    CpuLinearGrads {
                        input: Some(&mut dx),
                        weight: Some(&mut dw),
                        bias: None,
                    },
                )?;
                transient = r.transient_bytes;
                Ok(())
            })?;
            out.push(row("cpu", "fused", ms, transient, peak));
        }
        if !args.gpu_only && wants("chain") {
            // The chain: logits, the fused cross-entropy with its gradient over them, G W, Xᵀ G.
            let ce = CrossEntropyOptions::default();
            let (ms, peak) = time_peak(args.reps, &mut || {
                let mut z = cpu::linear(&p.x, &p.w_t, None, n, d, classes)?;
                cpu::cross_entropy_in_place(&mut z, classes, CpuTargets::Labels(&p.labels), &ce)?;
                let _dx = cpu::linear(&z, &p.w, None, n, classes, d)?;
                let _dw = cpu::weight_grad(&z, &p.x, n, classes, d)?;
                Ok(())
            })?;
            out.push(row("cpu", "chain", ms, (n * classes * 4) as u64, peak));
        }
        // On the GPU, in each storage type of X and W (`--dtype`; the gradients are f32): the fused
        // call, with host labels or (`--linear-device-labels`) int64 labels in a buffer of their own,
        // and the chain (`linear` → cross-entropy in place → `G W`, `Xᵀ G`, W as d × V there).
        for (ctx, &dtype) in ctx
            .iter()
            .flat_map(|c| args.dtype.iter().map(move |e| (*c, e)))
        {
            let backend = super::bench::gpu_backend(dtype);
            let xm = GpuMatrix::from_slice_as(ctx, &p.x, n, d, dtype)?;
            let dxm = GpuMatrix::zeros(ctx, n, d)?;
            if wants("fused") {
                let wm = GpuMatrix::from_slice_as(ctx, &p.w, classes, d, dtype)?;
                let labels = if args.linear_device_labels {
                    device_labels(ctx, &p.labels)?
                } else {
                    GpuLabels::from_slice(ctx, &p.labels)?
                };
                let dwm = GpuMatrix::zeros(ctx, classes, d)?;
                let mut transient = 0;
                let (ms, _) = time_peak(args.reps, &mut || {
                    let r = ctx.linear_cross_entropy(
                        &xm,
                        &wm,
                        None,
                        xent::linear_ce::GpuTargets::Labels(&labels),
                        &opts,
                        xent::linear_ce::GpuLinearGrads {
                            input: Some(&dxm),
                            weight: Some(&dwm),
                            bias: None,
                        },
                    )?;
                    transient = r.transient_bytes;
                    ctx.wait_idle()
                })?;
                out.push(LinearRow {
                    device_labels: args.linear_device_labels,
                    ..row(&backend, "fused", ms, transient, None)
                });
            }
            if wants("chain") {
                let wt = GpuMatrix::from_slice_as(ctx, &p.w_t, d, classes, dtype)?;
                let labels = GpuLabels::from_slice(ctx, &p.labels)?;
                let ce = CrossEntropyOptions::default();
                let (ms, _) = time_peak(args.reps, &mut || {
                    let z = ctx.linear(&xm, &wt, None)?;
                    let g = ctx
                        .cross_entropy_fwd_bwd_in_place(z, xent::Targets::Labels(&labels), &ce)?
                        .grad
                        .expect("the gradient");
                    ctx.input_grad_into(&g, &wt, &dxm)?;
                    let _dw = ctx.weight_grad(&xm, &g)?;
                    ctx.wait_idle()
                })?;
                out.push(row(&backend, "chain", ms, (n * classes * 4) as u64, None));
            }
        }
    }
    Ok(out)
}

pub fn print(rows: &[LinearRow], json: bool) {
    let mib = |b: u64| format!("{:.1}", b as f64 / (1 << 20) as f64);
    if json {
        for r in rows {
            let s = r.shape;
            println!(
                "{}",
                serde_json::json!({
                    "op": "linear_ce", "n": s.n, "d": s.d, "v": s.classes, "backend": r.backend,
                    "path": r.path, "median_ms": r.median_ms, "gflops": r.gflops(),
                    "transient_bytes": r.transient, "peak_rss_growth_bytes": r.peak_rss,
                    "ignored_percent": r.ignored, "device_labels": r.device_labels,
                })
            );
        }
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = r.shape;
            vec![
                format!("{}x{}x{}", s.n, s.d, s.classes),
                r.backend.clone(),
                match (r.ignored, r.device_labels) {
                    (0, false) => r.path.to_string(),
                    (i, dev) => format!(
                        "{} ({i}% ignored{})",
                        r.path,
                        if dev { ", device labels" } else { "" }
                    ),
                },
                format!("{:.1}", r.median_ms),
                format!("{:.1}", r.gflops()),
                mib(r.transient),
                r.peak_rss.map_or("-".into(), mib),
            ]
        })
        .collect();
    print_table(
        &[
            "linear_ce NxDxV",
            "backend",
            "path",
            "median ms",
            "GFLOP/s",
            "transient MiB",
            "peak RSS +MiB",
        ],
        &table,
    );
    println!(
        "linear_ce: loss, dX and dW of softmax(X Wᵀ) with labels (mean); GFLOP/s over 6·N·D·V; transient = bytes allocated beyond inputs and outputs (counted); peak RSS = growth of the process's high-water mark over the timed calls"
    );
}
