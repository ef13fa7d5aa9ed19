//! `xent bench`: throughput of the kernels on the GPU adapter, the fast CPU path and (optionally) the
//! CPU reference, with the copy roofline measured on the same adapter in the same run.
//!
//! Bytes counted (docs/MATH.md's cost model): softmax and cross-entropy forward+backward read the logits
//! and write n·N values (n·N·8 bytes); the softmax backward reads p̂ and g and writes dz (n·N·12);
//! the copy reads and writes (n·N·8). With `--dtype f16,bf16` the GPU rows are repeated in each
//! storage type (backend `gpu bf16`, …), bytes counted at the storage width (half the f32 bytes),
//! each against the copy in its own type, with its speed over the f32 kernel's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use xent::{
    Context, CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Targets, XentError, cpu, reference,
};

use super::bench_plot::Measurement;
use super::{DeviceArgs, parse_shape, progress, timed};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Shapes ROWSxCOLS, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape,
          default_value = "4096x1000,1024x32000,256x128256,65536x10")]
    pub shapes: Vec<(usize, usize)>,
    /// Operations: softmax, ce (cross-entropy forward+backward, labels, mean), softmax_bwd, copy;
    /// linear_ce (fused linear cross-entropy against the materialised chain, on `--linear-shapes`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "copy,softmax,ce,softmax_bwd"
    )]
    pub ops: Vec<String>,
    /// Storage types of the GPU rows, comma-separated: f32, f16, bf16 (the CPU paths run f32).
    #[arg(long, value_delimiter = ',', value_parser = parse_dtype, default_value = "f32")]
    pub dtype: Vec<Elem>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 7, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub reps: usize,
    /// Also time the f64 CPU reference (slow).
    #[arg(long)]
    pub with_reference: bool,
    /// Skip the CPU paths (GPU only).
    #[arg(long)]
    pub gpu_only: bool,
    /// The CPU paths allocate a fresh output every call (as PyTorch's autograd and JAX do) instead of
    /// writing into a reused one (the default, as the GPU's outputs).
    #[arg(long)]
    pub cpu_alloc: bool,
    /// Skip the GPU (the CPU paths only; no adapter needed).
    #[arg(long, conflicts_with = "gpu_only")]
    pub cpu_only: bool,
    /// Print one JSON object per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Shapes NxDxC of the weight-gradient matmul Xᵀ G (X N×D, G N×C), comma-separated; reported
    /// in GFLOP/s (2·N·D·C operations). `none` to skip.
    #[arg(long, value_delimiter = ',', value_parser = parse_mm_shape, default_value = "4096x784x10,2048x2048x2048")]
    pub matmul_shapes: Vec<Option<(usize, usize, usize)>>,
    /// Shapes NxDxV of `linear_ce` (X N×D, W V×D), comma-separated. Software adapters' matmuls are
    /// slow: pass smaller shapes there (e.g. 512x64x4096).
    #[arg(long, value_delimiter = ',', value_parser = parse_linear_shape, default_value = "4096x512x32000,1024x1024x128256")]
    pub linear_shapes: Vec<(usize, usize, usize)>,
    /// `linear_ce`'s paths: fused (xent's linear cross-entropy) and chain (the materialised
    /// `linear` → cross-entropy → `G W`, `Gᵀ X`), on the CPU path and, in each `--dtype`, the GPU.
    #[arg(long, value_delimiter = ',', default_value = "fused,chain")]
    pub linear_paths: Vec<String>,
    /// `linear_ce`'s memory budget for one chunk's logits, bytes (default: about the size of X).
    #[arg(long)]
    pub linear_budget: Option<u64>,
    /// `linear_ce`: the percentage of rows whose label is ignore_index (spread through the batch).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub linear_ignored: u8,
    /// `linear_ce` on the GPU: int64 labels in a buffer of their own, with no host copy (the device
    /// lists the rows that count), instead of host labels.
    #[arg(long)]
    pub linear_device_labels: bool,
    /// Draw GB/s against shape (memory-bound ops), as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub(crate) fn parse_dtype(s: &str) -> Result<Elem, String> {
    Elem::parse(s).ok_or_else(|| format!("dtype `{s}`: expected f32, f16 or bf16"))
}

/// The backend name of a GPU measurement in `dtype` (`gpu` for f32, `gpu bf16`, …).
pub(crate) fn gpu_backend(dtype: Elem) -> String {
    match dtype {
        Elem::F32 => "gpu".into(),
        e => format!("gpu {e}"),
    }
}

fn parse_mm_shape(s: &str) -> Result<Option<(usize, usize, usize)>, String> {
    if s == "none" {
        return Ok(None);
    }
    let v: Vec<usize> = s
        .split(['x', 'X', '×'])
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|e| format!("matmul shape `{s}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [_, d, c] if d == 0 || c == 0 => {
            Err(format!("matmul shape `{s}`: D and C must be at least 1"))
        }
        [n, d, c] => Ok(Some((n, d, c))),
        _ => Err(format!(
            "matmul shape `{s}`: expected NxDxC, e.g. 4096x784x10"
        )),
    }
}

fn parse_linear_shape(s: &str) -> Result<(usize, usize, usize), String> {
    parse_mm_shape(s)?.ok_or_else(|| format!("linear shape `{s}`: expected NxDxV"))
}

/// Xᵀ G on the GPU, on the fast CPU path and (with `--with-reference`, small shapes) the reference.
fn measure_matmul(
    args: &BenchArgs,
    ctx: &Context,
    timer: bool,
    out: &mut Vec<Measurement>,
) -> Result<(), XentError> {
    for &(n, d, c) in args.matmul_shapes.iter().flatten() {
        let x = data(n, d).g;
        let g = data(n, c).g;
        let flops = Some(2.0 * (n * d * c) as f64);
        let bytes = ((n * d + n * c + d * c) * 4) as f64;
        let row = |backend: &str, median_ms: f64, gpu_ms: Option<f64>| Measurement {
            op: "xtg".into(),
            n,
            k: c,
            backend: backend.into(),
            median_ms,
            gpu_ms,
            bytes,
            flops,
            d: Some(d),
        };
        let xm = GpuMatrix::from_slice(ctx, &x, n, d)?;
        let gm = GpuMatrix::from_slice(ctx, &g, n, c)?;
        let dw = GpuMatrix::zeros(ctx, d, c)?;
        let (wall, gpu) = time_gpu(ctx, args.reps, &|| ctx.weight_grad_into(&xm, &gm, &dw))?;
        out.push(row("gpu", wall, gpu.filter(|_| timer)));
        if !args.gpu_only {
            let ms = time_cpu(args.reps, &mut || drop(cpu::weight_grad(&x, &g, n, d, c)));
            out.push(row("cpu", ms, None));
        }
        if args.with_reference && n * d * c <= 100_000_000 {
            let ms = time_cpu(1, &mut || drop(reference::weight_grad(&x, &g, d, c)));
            out.push(row("reference", ms, None));
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes an op moves at least, per docs/MATH.md, at `dtype`'s width.
fn bytes_of(op: &str, n: usize, k: usize, dtype: Elem) -> f64 {
    let e = (n * k) as f64 * dtype.size() as f64;
    match op {
        "softmax_bwd" => 3.0 * e,
        _ => 2.0 * e,
    }
}

/// Times `launch` on the GPU: one warm-up, then `reps` launches each waited for; returns the median
/// wall milliseconds and the median GPU-timestamp milliseconds (when the adapter has timestamps).
fn time_gpu(
    ctx: &Context,
    reps: usize,
    launch: &dyn Fn() -> Result<(), XentError>,
) -> Result<(f64, Option<f64>), XentError> {
    launch()?;
    ctx.wait_idle()?;
    ctx.take_gpu_time_ms()?;
    let (mut wall, mut gpu) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (r, ms) = timed(|| -> Result<(), XentError> {
            launch()?;
            ctx.wait_idle()
        });
        r?;
        wall.push(ms);
        if let Some(g) = ctx.take_gpu_time_ms()? {
            gpu.push(g);
        }
    }
    Ok((median(wall), (gpu.len() == reps).then(|| median(gpu))))
}

fn time_cpu(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    median((0..reps).map(|_| timed(&mut *f).1).collect())
}

struct Data {
    x: Vec<f32>,
    labels: Vec<i64>,
    g: Vec<f32>,
}

fn data(n: usize, k: usize) -> Data {
    let mut s = 0x2545_F491_4F6C_DD1Du64 ^ (n * 31 + k) as u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let x = (0..n * k)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 16.0 - 8.0)
        .collect();
    let labels = (0..n).map(|_| (next() % k as u64) as i64).collect();
    let g = (0..n * k)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    Data { x, labels, g }
}

fn gpu_measure(
    ctx: &Context,
    op: &str,
    n: usize,
    k: usize,
    d: &Data,
    reps: usize,
    dtype: Elem,
) -> Result<(f64, Option<f64>), XentError> {
    let x = GpuMatrix::from_slice_as(ctx, &d.x, n, k, dtype)?;
    let out = GpuMatrix::zeros_as(ctx, n, k, dtype)?;
    match op {
        "copy" => time_gpu(ctx, reps, &|| ctx.copy_rows_into(&x, &out)),
        "softmax" => time_gpu(ctx, reps, &|| ctx.softmax_into(&x, &out)),
        "softmax_bwd" => {
            let g = GpuMatrix::from_slice_as(ctx, &d.g, n, k, dtype)?;
            time_gpu(ctx, reps, &|| ctx.softmax_backward_into(&x, &g, &out))
        }
        "ce" => {
            let labels = GpuLabels::from_slice(ctx, &d.labels)?;
            let opts = CrossEntropyOptions::default();
            time_gpu(ctx, reps, &|| {
                ctx.cross_entropy_fwd_bwd_into(&x, Targets::Labels(&labels), &opts, &out)
                    .map(drop)
            })
        }
        other => Err(XentError::InvalidArgument(format!("unknown op `{other}`"))),
    }
}

fn cpu_measure(
    op: &str,
    k: usize,
    d: &Data,
    reps: usize,
    reference_path: bool,
    alloc: bool,
) -> Result<Option<f64>, XentError> {
    let opts = CrossEntropyOptions::default();
    let mut reused = vec![0f32; d.x.len()];
    // Into a reused buffer by default, as the GPU's outputs (a fresh 100+ MiB output costs its page
    // faults, most of the time of a wide softmax here); with `alloc`, a fresh one per call.
    let mut out = |f: &mut dyn FnMut(&mut [f32])| {
        if alloc {
            f(&mut cpu::output(d.x.len()));
        } else {
            f(&mut reused);
        }
    };
    let labels = cpu::CpuTargets::Labels(&d.labels);
    let ms = match (op, reference_path) {
        // The CPU's roofline: the same bytes, copied by the same row blocks and threads.
        ("copy", false) => time_cpu(reps, &mut || out(&mut |o| drop(cpu::copy_into(&d.x, k, o)))),
        ("softmax", false) => time_cpu(reps, &mut || {
            out(&mut |o| drop(cpu::softmax_into(&d.x, k, o)))
        }),
        ("softmax_bwd", false) => time_cpu(reps, &mut || {
            out(&mut |o| drop(cpu::softmax_backward_into(&d.x, &d.g, k, o)))
        }),
        ("ce", false) => time_cpu(reps, &mut || {
            out(&mut |o| drop(cpu::cross_entropy(&d.x, k, labels, &opts, Some(o))))
        }),
        ("copy", true) => return Ok(None),
        ("softmax", true) => time_cpu(reps, &mut || drop(reference::softmax(&d.x, k))),
        ("softmax_bwd", true) => time_cpu(reps, &mut || {
            drop(reference::softmax_backward(&d.x, &d.g, k))
        }),
        ("ce", true) => time_cpu(reps, &mut || {
            drop(reference::cross_entropy(
                &d.x,
                k,
                reference::RefTargets::Labels(&d.labels),
                &opts,
            ))
        }),
        (other, _) => return Err(XentError::InvalidArgument(format!("unknown op `{other}`"))),
    };
    Ok(Some(ms))
}

/// Runs the sweep; the measurements in order (op-major within each shape).
pub fn measure(args: &BenchArgs, ctx: Option<&Context>) -> Result<Vec<Measurement>, XentError> {
    let timer = ctx.is_some_and(Context::enable_gpu_timer);
    let per_shape = args.ops.len()
        * (ctx.map_or(0, |_| args.dtype.len())
            + usize::from(!args.gpu_only)
            + usize::from(args.with_reference));
    let bar = progress((args.shapes.len() * per_shape) as u64, "bench");
    let mut out = Vec::new();
    for &(n, k) in &args.shapes {
        let d = data(n, k);
        for op in args.ops.iter().filter(|op| *op != "linear_ce") {
            let bytes = bytes_of(op, n, k, Elem::F32);
            for (ctx, &dtype) in ctx
                .iter()
                .flat_map(|c| args.dtype.iter().map(move |d| (c, d)))
            {
                let backend = gpu_backend(dtype);
                bar.set_message(format!("{op} {n}x{k} {backend}"));
                let (wall, gpu) = gpu_measure(ctx, op, n, k, &d, args.reps, dtype)?;
                out.push(Measurement {
                    op: op.clone(),
                    n,
                    k,
                    backend,
                    median_ms: wall,
                    gpu_ms: gpu.filter(|_| timer),
                    bytes: bytes_of(op, n, k, dtype),
                    flops: None,
                    d: None,
                });
                bar.inc(1);
            }
            let mut cpu_paths = Vec::new();
            if !args.gpu_only {
                cpu_paths.push(("cpu", false));
            }
            if args.with_reference {
                cpu_paths.push(("reference", true));
            }
            for (name, is_ref) in cpu_paths {
                bar.set_message(format!("{op} {n}x{k} {name}"));
                if let Some(ms) = cpu_measure(
                    op,
                    k,
                    &d,
                    if is_ref {
                        1.max(args.reps / 3)
                    } else {
                        args.reps
                    },
                    is_ref,
                    args.cpu_alloc,
                )? {
                    out.push(Measurement {
                        op: op.clone(),
                        n,
                        k,
                        backend: name.into(),
                        median_ms: ms,
                        gpu_ms: None,
                        bytes,
                        flops: None,
                        d: None,
                    });
                }
                bar.inc(1);
            }
        }
    }
    if let Some(ctx) = ctx {
        bar.set_message("matmul");
        measure_matmul(args, ctx, timer, &mut out)?;
    }
    bar.finish_and_clear();
    Ok(out)
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, XentError> {
    let ctx = (!args.cpu_only)
        .then(|| args.device.context())
        .transpose()?;
    let linear_only = args.ops.iter().all(|op| op == "linear_ce");
    let results = if linear_only {
        Vec::new()
    } else {
        measure(args, ctx.as_ref())?
    };
    let linear = if args.ops.iter().any(|op| op == "linear_ce") {
        super::bench_linear::measure(args, ctx.as_ref())?
    } else {
        Vec::new()
    };
    let adapter = ctx.as_ref().map_or("none (--cpu-only)".into(), |ctx| {
        format!("{} ({:?})", ctx.adapter().name, ctx.adapter().backend)
    });
    super::bench_report::print(&results, &adapter, args.json);
    if !linear.is_empty() {
        super::bench_linear::print(&linear, args.json);
    }
    if let Some(path) = &args.plot {
        let memory_bound: Vec<Measurement> = results
            .iter()
            .filter(|m| m.flops.is_none())
            .cloned()
            .collect();
        super::bench_plot::plot(path, &memory_bound, &adapter)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
