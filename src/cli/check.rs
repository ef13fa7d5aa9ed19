//! `xent check`: every kernel on a realistic batch against the CPU reference, as a table; on a GPU
//! backend, or on the fast CPU path with `--backend cpu`.

use std::process::ExitCode;

use clap::Args;
use xent::cpu;
use xent::reference::{self, RefTargets};
use xent::{Context, CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Targets, XentError};

use super::{DeviceArgs, parse_shape, print_table, progress, timed};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Shapes ROWSxCOLS, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape, default_value = "4096x32000,65536x10")]
    pub shapes: Vec<(usize, usize)>,
    /// Seed of the random logits (uniform in ±8) and labels.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Storage type of the GPU's matrices (f32, f16, bf16): the inputs are rounded to it, the
    /// reference runs on those values, and the tolerance adds one unit in the last place of the type
    /// (its relative spacing, 2^-10 or 2^-7) for the n×N outputs it rounds.
    #[arg(long, value_parser = super::bench::parse_dtype, default_value = "f32")]
    pub dtype: Elem,
}

/// Tolerance of `check`: |gpu − ref| ≤ ABS + REL·|ref| (as the test suite's PROB / log tolerances).
const ABS: f64 = 1e-5;
const REL: f64 = 1e-4;

struct Row {
    kernel: &'static str,
    shape: (usize, usize),
    max_abs: f64,
    max_rel: f64,
    worst_ratio: f64,
    gpu_ms: f64,
    cpu_ms: f64,
}

/// Relative spacing of a storage type: one unit in the last place at 1 (0 for f32, whose rounding the
/// base tolerance covers).
fn type_rel(elem: Elem) -> f64 {
    match elem {
        Elem::F32 => 0.0,
        Elem::F16 => 2f64.powi(-10),
        Elem::Bf16 => 2f64.powi(-7),
    }
}

/// Max abs error, max relative error (over |ref| ≥ 1e-6), and the worst error ÷ tolerance (the
/// relative part widened by `extra_rel`, the storage type's spacing).
fn compare(got: &[f32], want: &[f64], extra_rel: f64) -> (f64, f64, f64) {
    let (mut abs, mut rel, mut ratio) = (0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let g = g as f64;
        if w.is_nan() || w.is_infinite() {
            if !(g.is_nan() && w.is_nan() || g == w) {
                ratio = f64::INFINITY;
            }
            continue;
        }
        let e = (g - w).abs();
        abs = abs.max(e);
        if w.abs() >= 1e-6 {
            rel = rel.max(e / w.abs());
        }
        ratio = ratio.max(e / (ABS + (REL + extra_rel) * w.abs()));
        if e.is_nan() {
            ratio = f64::INFINITY;
        }
    }
    (abs, rel, ratio)
}

/// What one kernel check gives: the GPU's values, the reference's, and their times.
struct Outcome {
    got: Vec<f32>,
    want: Vec<f64>,
    gpu_ms: f64,
    cpu_ms: f64,
}

/// Times `gpu` (one untimed warm-up launch builds the pipeline; then one launch, waited for; upload and
/// readback excluded), reads its result with `read`, and times the reference `cpu`.
fn measure<T>(
    ctx: &Context,
    gpu: impl Fn() -> Result<T, XentError>,
    read: impl FnOnce(T) -> Result<Vec<f32>, XentError>,
    cpu: impl FnOnce() -> Vec<f64>,
) -> Result<Outcome, XentError> {
    drop(gpu()?);
    ctx.wait_idle()?;
    let (r, gpu_ms) = timed(|| -> Result<T, XentError> {
        let r = gpu()?;
        ctx.wait_idle()?;
        Ok(r)
    });
    let got = read(r?)?;
    let (want, cpu_ms) = timed(cpu);
    Ok(Outcome {
        got,
        want,
        gpu_ms,
        cpu_ms,
    })
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Upstream gradient for the backward checks: a fixed pattern in [−1, 1].
fn upstream(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 1000.0)
        .collect()
}

/// The kernels `check` runs, by name.
const KERNELS: &[&str] = &[
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy fwd+bwd",
    "entropy",
];

/// One kernel on `x` (n × c) against its reference. The backward kernels take the reference's
/// forward output; cross-entropy (mean, label smoothing 0.1) compares the loss and the gradient
/// concatenated; entropy is per row.
fn check_kernel(
    name: &str,
    ctx: &Context,
    x: &[f32],
    labels: &[i64],
    (n, c): (usize, usize),
    elem: Elem,
) -> Result<Outcome, XentError> {
    let xm = GpuMatrix::from_slice_as(ctx, x, n, c, elem)?;
    let round = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| elem.round(x)).collect() };
    let read = |m: GpuMatrix| m.read_blocking(ctx);
    match name {
        "softmax" => measure(
            ctx,
            || ctx.softmax(&xm),
            read,
            || f64s(&reference::softmax(x, c)),
        ),
        "log_softmax" => measure(
            ctx,
            || ctx.log_softmax(&xm),
            read,
            || f64s(&reference::log_softmax(x, c)),
        ),
        "logsumexp" => measure(
            ctx,
            || ctx.logsumexp(&xm),
            read,
            || x.chunks_exact(c).map(reference::row_logsumexp).collect(),
        ),
        "softmax_backward" | "log_softmax_backward" => {
            let log = name == "log_softmax_backward";
            let y = round(if log {
                reference::log_softmax(x, c)
            } else {
                reference::softmax(x, c)
            });
            let g = round(upstream(x.len()));
            let (ym, gm) = (
                GpuMatrix::from_slice_as(ctx, &y, n, c, elem)?,
                GpuMatrix::from_slice_as(ctx, &g, n, c, elem)?,
            );
            measure(
                ctx,
                || {
                    if log {
                        ctx.log_softmax_backward(&ym, &gm)
                    } else {
                        ctx.softmax_backward(&ym, &gm)
                    }
                },
                read,
                || {
                    f64s(&if log {
                        reference::log_softmax_backward(&y, &g, c)
                    } else {
                        reference::softmax_backward(&y, &g, c)
                    })
                },
            )
        }
        "cross_entropy fwd+bwd" => {
            let opts = CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            };
            let l = GpuLabels::from_slice(ctx, labels)?;
            measure(
                ctx,
                || ctx.cross_entropy_fwd_bwd(&xm, Targets::Labels(&l), &opts),
                |out| {
                    let mut got = out.read_loss(ctx)?;
                    got.extend(
                        out.grad
                            .as_ref()
                            .map_or(Ok(Vec::new()), |g| g.read_blocking(ctx))?,
                    );
                    Ok(got)
                },
                || {
                    let r = reference::cross_entropy(x, c, RefTargets::Labels(labels), &opts);
                    std::iter::once(r.loss).chain(r.grad).collect()
                },
            )
        }
        "entropy" => measure(
            ctx,
            || ctx.info_rows(&xm, None, false),
            |m| {
                Ok(m.read_blocking(ctx)?
                    .chunks_exact(4)
                    .map(|r| r[0])
                    .collect())
            },
            || {
                reference::info_rows(x, None, c)
                    .iter()
                    .map(|v| v[0])
                    .collect()
            },
        ),
        other => Err(XentError::InvalidArgument(format!(
            "unknown kernel `{other}`"
        ))),
    }
}

/// The same checks of the fast CPU path (`--backend cpu`; it has no per-row entropy kernel).
fn check_host(
    name: &str,
    x: &[f32],
    labels: &[i64],
    (_, c): (usize, usize),
) -> Result<Option<Outcome>, XentError> {
    let run = |f: &dyn Fn() -> Result<Vec<f32>, XentError>, want: &dyn Fn() -> Vec<f64>| {
        drop(f()?);
        let (got, gpu_ms) = timed(f);
        let (want, cpu_ms) = timed(want);
        Ok::<_, XentError>(Some(Outcome {
            got: got?,
            want,
            gpu_ms,
            cpu_ms,
        }))
    };
    let backward = |log: bool| {
        let y = if log {
            reference::log_softmax(x, c)
        } else {
            reference::softmax(x, c)
        };
        (y, upstream(x.len()))
    };
    match name {
        "softmax" => run(&|| cpu::softmax(x, c), &|| f64s(&reference::softmax(x, c))),
        "log_softmax" => run(&|| cpu::log_softmax(x, c), &|| {
            f64s(&reference::log_softmax(x, c))
        }),
        "logsumexp" => run(&|| cpu::logsumexp(x, c), &|| {
            x.chunks_exact(c).map(reference::row_logsumexp).collect()
        }),
        "softmax_backward" => {
            let (y, g) = backward(false);
            run(&|| cpu::softmax_backward(&y, &g, c), &|| {
                f64s(&reference::softmax_backward(&y, &g, c))
            })
        }
        "log_softmax_backward" => {
            let (y, g) = backward(true);
            run(&|| cpu::log_softmax_backward(&y, &g, c), &|| {
                f64s(&reference::log_softmax_backward(&y, &g, c))
            })
        }
        "cross_entropy fwd+bwd" => {
            let opts = CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            };
            run(
                &|| {
                    let mut grad = vec![0f32; x.len()];
                    let r = cpu::cross_entropy(
                        x,
                        c,
                        cpu::CpuTargets::Labels(labels),
                        &opts,
                        Some(&mut grad),
                    )?;
                    Ok(std::iter::once(r.loss).chain(grad).collect())
                },
                &|| {
                    let r = reference::cross_entropy(x, c, RefTargets::Labels(labels), &opts);
                    std::iter::once(r.loss).chain(r.grad).collect()
                },
            )
        }
        _ => Ok(None),
    }
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, XentError> {
    let ctx = match args.device.host() {
        None => Some(args.device.context()?),
        Some(xent::train::CpuPath::Fast) if args.dtype != Elem::F32 => {
            return Err(XentError::InvalidArgument(
                "check --dtype f16/bf16 checks a GPU backend's 16-bit storage; the CPU path's twins (xent::cpu::*_as) are f32 arithmetic on widened values, tested by cargo test".into(),
            ));
        }
        Some(xent::train::CpuPath::Fast) => None,
        Some(xent::train::CpuPath::Reference) => {
            return Err(XentError::InvalidArgument(
                "check compares a backend with the f64 reference: --backend reference would compare it with itself; use cpu or a GPU backend".into(),
            ));
        }
    };
    match &ctx {
        Some(ctx) => println!(
            "adapter: {} ({:?}, {:?}), reduction path {:?}, loop cap {:?}",
            ctx.adapter().name,
            ctx.adapter().backend,
            ctx.adapter().device_type,
            ctx.reduce_path(),
            ctx.loop_cap()
        ),
        None => println!(
            "backend: the fast CPU path ({}, {} threads)",
            cpu::isa(),
            rayon::current_num_threads()
        ),
    }
    let bar = progress((args.shapes.len() * KERNELS.len()) as u64, "check");
    let mut rows = Vec::new();
    for &(n, c) in &args.shapes {
        let mut rng = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let x: Vec<f32> = (0..n * c)
            .map(|_| {
                args.dtype
                    .round((next() >> 40) as f32 / (1u64 << 24) as f32 * 16.0 - 8.0)
            })
            .collect();
        let labels: Vec<i64> = (0..n).map(|_| (next() % c as u64) as i64).collect();
        for &name in KERNELS {
            bar.set_message(format!("{name} {n}x{c}"));
            let outcome = match &ctx {
                Some(ctx) => Some(check_kernel(name, ctx, &x, &labels, (n, c), args.dtype)?),
                None => check_host(name, &x, &labels, (n, c))?,
            };
            bar.inc(1);
            let Some(Outcome {
                got,
                want,
                gpu_ms,
                cpu_ms,
            }) = outcome
            else {
                continue;
            };
            let (max_abs, max_rel, worst_ratio) = compare(&got, &want, type_rel(args.dtype));
            rows.push(Row {
                kernel: name,
                shape: (n, c),
                max_abs,
                max_rel,
                worst_ratio,
                gpu_ms,
                cpu_ms,
            });
        }
    }
    bar.finish_and_clear();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kernel.to_string(),
                format!("{}x{}", r.shape.0, r.shape.1),
                format!("{:.2e}", r.max_abs),
                format!("{:.2e}", r.max_rel),
                if r.worst_ratio <= 1.0 {
                    "ok".into()
                } else {
                    "FAIL".into()
                },
                format!("{:.2}", r.gpu_ms),
                format!("{:.1}", r.cpu_ms),
            ]
        })
        .collect();
    print_table(
        &[
            "kernel",
            "shape",
            "max abs err",
            "max rel err",
            "within tol",
            if ctx.is_some() { "GPU ms" } else { "CPU ms" },
            "CPU ref ms",
        ],
        &table,
    );
    if args.dtype != Elem::F32 {
        println!(
            "storage: {} (inputs rounded to it; the reference on those values; + {:e}*|ref| for its rounding)",
            args.dtype,
            type_rel(args.dtype)
        );
    }
    println!(
        "tolerance: |got - ref| <= {ABS:e} + {REL:e}*|ref|; rel err over |ref| >= 1e-6; GPU ms = launch + wait; CPU ms = the fast CPU path; CPU ref = f64 reference, 1 thread"
    );
    let failed = rows.iter().filter(|r| r.worst_ratio > 1.0).count();
    if failed > 0 {
        eprintln!("xent check: {failed} kernel(s) outside tolerance");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
