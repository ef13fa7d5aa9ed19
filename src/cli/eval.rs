//! `xent eval`: cross-entropy and friends of NumPy inputs, written as NumPy outputs, on a GPU
//! backend, the fast CPU path or the f64 reference. All outputs are written into a temporary folder beside `--out` and renamed into
//! place at the end, so a failed run leaves no output file at all (see `write_all`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use xent::cpu;
use xent::reference::{self, RefTargets};
use xent::{
    Context, CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Reduction, Targets, XentError, npy,
};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Logits, float32 or float16 [n, N] (or, with --linear-weight, none: the logits are X Wᵀ + b).
    #[arg(
        long,
        required_unless_present = "linear_weight",
        conflicts_with = "linear_weight"
    )]
    pub logits: Option<PathBuf>,
    /// Class labels, int64 or int32 [n].
    #[arg(long, conflicts_with = "targets")]
    pub labels: Option<PathBuf>,
    /// Probability targets, float32 [n, N].
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Class weights, float32 [N].
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// Rows with this label are ignored.
    #[arg(long, default_value_t = -100, allow_hyphen_values = true)]
    pub ignore_index: i64,
    /// Label smoothing ε in [0, 1].
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f32,
    /// mean, sum or none.
    #[arg(long, default_value = "mean")]
    pub reduction: String,
    /// Features X, float32 [n, d]: with --logits, also writes grad_weight = Xᵀ·grad and grad_bias;
    /// with --linear-weight, the input of the fused linear cross-entropy.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Fused linear cross-entropy: the linear layer's weight W, float32 [V, d] (PyTorch's
    /// `linear_weight`); the logits X Wᵀ + b are never materialised. Writes loss.npy,
    /// grad_input.npy [n, d], grad_linear_weight.npy [V, d] (and grad_linear_bias.npy [V]).
    #[arg(long, requires = "features")]
    pub linear_weight: Option<PathBuf>,
    /// The linear layer's bias b, float32 [V] (with --linear-weight).
    #[arg(long, requires = "linear_weight")]
    pub linear_bias: Option<PathBuf>,
    /// Storage type of the run: f32, f16 or bf16 (default: the logits file's, f16 for `<f2`). The
    /// logits and probability targets are rounded to it on load (NumPy has no bfloat16: give f32
    /// and `--dtype bf16`); every backend computes in f32 (the reference in f64) on those values and
    /// rounds grad, softmax and log_softmax to it once.
    #[arg(long, value_parser = super::bench::parse_dtype)]
    pub dtype: Option<Elem>,
    /// Write grad, softmax and log_softmax as float16 (`<f2`) in an f16 run (bf16 runs and the
    /// default write float32, which holds every f16 and bf16 value exactly).
    #[arg(long)]
    pub write_dtype: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output folder (created once every output is written; existing files of the same names are
    /// replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// Everything eval writes, as (file name, shape, data).
pub(super) type Outputs = Vec<(&'static str, Vec<usize>, Vec<f32>)>;

struct Inputs {
    logits: Vec<f32>,
    n: usize,
    cols: usize,
    labels: Option<Vec<i64>>,
    targets: Option<Vec<f32>>,
    features: Option<(usize, Vec<f32>)>,
    opts: CrossEntropyOptions,
    /// The run's storage type (logits and targets already rounded to it).
    dtype: Elem,
}

fn load(args: &EvalArgs) -> Result<Inputs, XentError> {
    let path = args
        .logits
        .as_ref()
        .expect("clap: --logits or --linear-weight");
    let (shape, logits, file_elem) = npy::read_floats(path)?;
    let dtype = args.dtype.unwrap_or(file_elem);
    let round = |v: Vec<f32>| v.into_iter().map(|x| dtype.round(x)).collect::<Vec<f32>>();
    let logits = round(logits);
    let shape = npy::expect_rank(path, &shape, 2)?;
    let (n, cols) = (shape[0], shape[1]);
    if cols == 0 {
        return Err(XentError::InvalidShape(format!(
            "{}: rows of 0 classes (shape [{n}, 0])",
            path.display()
        )));
    }
    let (labels, targets, opts) = load_targets(args, n, cols, "the logits")?;
    let targets = targets.map(round);
    let features = match &args.features {
        Some(p) => {
            let (s, x) = npy::read_f32(p)?;
            if s.len() != 2 || s[0] != n {
                return Err(mismatch(
                    p,
                    "the logits",
                    vec![n, s.get(1).copied().unwrap_or(0)],
                    &s,
                ));
            }
            Some((s[1], x))
        }
        None => None,
    };
    Ok(Inputs {
        logits,
        n,
        cols,
        labels,
        targets,
        features,
        opts,
        dtype,
    })
}

/// A file whose shape does not fit the rest.
pub(super) fn mismatch(path: &Path, other: &str, expected: Vec<usize>, got: &[usize]) -> XentError {
    XentError::Io {
        path: path.display().to_string(),
        reason: format!("shape {got:?} does not match {other}: expected {expected:?}"),
    }
}

/// Labels or probability targets, and the options.
pub(super) type Loaded = (Option<Vec<i64>>, Option<Vec<f32>>, CrossEntropyOptions);

/// The labels or probability targets, the class weights and the options of `n` rows of `cols`
/// classes, validated as every backend validates them. `other` names what set the shape.
pub(super) fn load_targets(
    args: &EvalArgs,
    n: usize,
    cols: usize,
    other: &str,
) -> Result<Loaded, XentError> {
    let labels = match &args.labels {
        Some(p) => {
            let (s, l) = npy::read_labels(p)?;
            if s != [n] {
                return Err(mismatch(p, other, vec![n], &s));
            }
            Some(l)
        }
        None => None,
    };
    let targets = match &args.targets {
        Some(p) => {
            let (s, t) = npy::read_f32(p)?;
            if s != [n, cols] {
                return Err(mismatch(p, other, vec![n, cols], &s));
            }
            Some(t)
        }
        None => None,
    };
    if labels.is_none() && targets.is_none() {
        return Err(XentError::InvalidArgument(
            "give --labels or --targets".into(),
        ));
    }
    let weight = match &args.weight {
        Some(p) => {
            let (s, w) = npy::read_f32(p)?;
            if s != [cols] {
                return Err(mismatch(p, other, vec![cols], &s));
            }
            Some(w)
        }
        None => None,
    };
    let opts = CrossEntropyOptions {
        weight,
        ignore_index: args.ignore_index,
        reduction: args.reduction.parse()?,
        label_smoothing: args.label_smoothing,
        ..Default::default()
    };
    // The one validation of every backend (the reference computes without checking).
    opts.validate(cols)?;
    match &labels {
        Some(l) => xent::options::check_labels(l, n, cols, opts.ignore_index)?,
        None => opts.validate_for_probs()?,
    }
    Ok((labels, targets, opts))
}

pub(super) fn loss_shape(red: Reduction, n: usize) -> Vec<usize> {
    match red {
        Reduction::None => vec![n],
        _ => vec![],
    }
}

/// What every backend computes, before it is named and shaped into files (one layout for all).
struct Results {
    /// The loss as PyTorch shapes it.
    loss: Vec<f32>,
    grad: Vec<f32>,
    softmax: Vec<f32>,
    log_softmax: Vec<f32>,
    /// Per row: H(Q), and KL(P‖Q) with probability targets.
    entropy: Vec<f32>,
    kl: Option<Vec<f32>>,
    /// (grad_weight d × N, grad_bias) with `--features`.
    weight_bias: Option<(Vec<f32>, Vec<f32>)>,
}

impl Results {
    fn into_outputs(self, inp: &Inputs) -> Outputs {
        let (n, c) = (inp.n, inp.cols);
        // n×N outputs in the run's type, rounded once (a GPU's are already: rounding is idempotent).
        let round = |v: Vec<f32>| v.into_iter().map(|x| inp.dtype.round(x)).collect();
        let mut out: Outputs = vec![
            ("loss.npy", loss_shape(inp.opts.reduction, n), self.loss),
            ("grad.npy", vec![n, c], round(self.grad)),
            ("softmax.npy", vec![n, c], round(self.softmax)),
            ("log_softmax.npy", vec![n, c], round(self.log_softmax)),
            ("entropy.npy", vec![n], self.entropy),
        ];
        if let Some(kl) = self.kl {
            out.push(("kl.npy", vec![n], kl));
        }
        if let (Some((dw, db)), Some((d, _))) = (self.weight_bias, &inp.features) {
            out.push(("grad_weight.npy", vec![*d, c], dw));
            out.push(("grad_bias.npy", vec![c], db));
        }
        out
    }
}

/// The reference's per-row information, as (entropy, KL when there are targets).
fn reference_info(inp: &Inputs) -> (Vec<f32>, Option<Vec<f32>>) {
    let info = reference::info_rows(&inp.logits, inp.targets.as_deref(), inp.cols);
    let col = |k: usize| info.iter().map(|v| v[k] as f32).collect();
    (col(0), inp.targets.is_some().then(|| col(2)))
}

/// `--backend reference`: the f64 oracle, rounded to f32 once at the end.
fn eval_reference(inp: &Inputs) -> Results {
    let c = inp.cols;
    let t = match (&inp.labels, &inp.targets) {
        (Some(l), _) => RefTargets::Labels(l),
        (_, Some(p)) => RefTargets::Probs(p),
        _ => unreachable!("checked in load"),
    };
    let r = reference::cross_entropy(&inp.logits, c, t, &inp.opts);
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let grad = to32(&r.grad);
    let (entropy, kl) = reference_info(inp);
    Results {
        loss: match inp.opts.reduction {
            Reduction::None => to32(&r.row_loss),
            _ => vec![r.loss as f32],
        },
        weight_bias: inp.features.as_ref().map(|(d, x)| {
            (
                to32(&reference::weight_grad(x, &grad, *d, c)),
                to32(&reference::bias_grad(&grad, c)),
            )
        }),
        grad,
        softmax: reference::softmax(&inp.logits, c),
        log_softmax: reference::log_softmax(&inp.logits, c),
        entropy,
        kl,
    }
}

/// `--backend cpu`: the fast CPU path (`xent::cpu`). It has no per-row information kernel, so the
/// entropy and KL rows come from the reference (rounded to f32), as they are no hot path.
fn eval_cpu(inp: &Inputs) -> Result<Results, XentError> {
    let (n, c) = (inp.n, inp.cols);
    let t = match (&inp.labels, &inp.targets) {
        (Some(l), _) => cpu::CpuTargets::Labels(l),
        (_, Some(p)) => cpu::CpuTargets::Probs(p),
        _ => unreachable!("checked in load"),
    };
    let mut grad = vec![0f32; inp.logits.len()];
    let r = cpu::cross_entropy(&inp.logits, c, t, &inp.opts, Some(&mut grad))?;
    let (entropy, kl) = reference_info(inp);
    let weight_bias = match &inp.features {
        Some((d, x)) => Some((
            cpu::weight_grad(x, &grad, n, *d, c)?,
            cpu::bias_grad(&grad, c)?,
        )),
        None => None,
    };
    Ok(Results {
        loss: match inp.opts.reduction {
            Reduction::None => r.row_loss,
            _ => vec![r.loss],
        },
        grad,
        softmax: cpu::softmax(&inp.logits, c)?,
        log_softmax: cpu::log_softmax(&inp.logits, c)?,
        entropy,
        kl,
        weight_bias,
    })
}

fn eval_gpu(ctx: &Context, inp: &Inputs) -> Result<Results, XentError> {
    let (n, c) = (inp.n, inp.cols);
    let z = GpuMatrix::from_slice_as(ctx, &inp.logits, n, c, inp.dtype)?;
    let labels = inp
        .labels
        .as_ref()
        .map(|l| GpuLabels::from_slice(ctx, l))
        .transpose()?;
    let probs = inp
        .targets
        .as_ref()
        .map(|t| GpuMatrix::from_slice_as(ctx, t, n, c, inp.dtype))
        .transpose()?;
    let targets = match (&labels, &probs) {
        (Some(l), _) => Targets::Labels(l),
        (_, Some(p)) => Targets::Probs(p),
        _ => unreachable!("checked in load"),
    };
    let ce = ctx.cross_entropy_fwd_bwd(&z, targets, &inp.opts)?;
    let g = ce.grad.as_ref().expect("gradient");
    let info = ctx
        .info_rows(&z, probs.as_ref(), false)?
        .read_blocking(ctx)?;
    let col = |k: usize| info.chunks_exact(4).map(|r| r[k]).collect::<Vec<f32>>();
    let weight_bias = match &inp.features {
        // The matmul kernels, on the gradient still on the device.
        Some((d, x)) => {
            let xm = GpuMatrix::from_slice(ctx, x, n, *d)?;
            // The matmuls take f32: a 16-bit gradient is widened on the device (exactly).
            let wide = GpuMatrix::zeros(ctx, n, c)?;
            let g = if g.elem() == Elem::F32 {
                g
            } else {
                ctx.copy_rows_into(g, &wide)?;
                &wide
            };
            Some((
                ctx.weight_grad(&xm, g)?.read_blocking(ctx)?,
                ctx.bias_grad(g)?.read_blocking(ctx)?,
            ))
        }
        None => None,
    };
    Ok(Results {
        loss: ce.read_loss(ctx)?,
        grad: g.read_blocking(ctx)?,
        softmax: ctx.softmax(&z)?.read_blocking(ctx)?,
        log_softmax: ctx.log_softmax(&z)?.read_blocking(ctx)?,
        entropy: col(0),
        kl: probs.is_some().then(|| col(2)),
        weight_bias,
    })
}

pub fn run(args: &EvalArgs) -> Result<ExitCode, XentError> {
    let (outputs, dtype) = if args.linear_weight.is_some() {
        (super::eval_linear::outputs(args)?, Elem::F32)
    } else {
        let inp = load(args)?;
        let results = match args.device.host() {
            Some(xent::train::CpuPath::Reference) => eval_reference(&inp),
            Some(xent::train::CpuPath::Fast) => eval_cpu(&inp)?,
            None => eval_gpu(&args.device.context()?, &inp)?,
        };
        (results.into_outputs(&inp), inp.dtype)
    };
    write_all(&args.out, &outputs, args.write_dtype && dtype == Elem::F16)?;
    for (name, shape, _) in &outputs {
        println!("wrote {} {shape:?}", args.out.join(name).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every output into a temporary folder (inside `out` when it exists, else in its nearest
/// existing ancestor, so the renames stay on one file system), then moves them into place: the whole folder in one rename
/// when `out` does not exist yet, else file by file after checking that no target is a folder. On any
/// failure the temporary folder and whatever was already moved are removed, and `out` (and any
/// missing parent) is created only once every file is written.
pub(super) fn write_all(
    out: &Path,
    outputs: &Outputs,
    f16_matrices: bool,
) -> Result<(), XentError> {
    let io = |p: &Path, e: std::io::Error| XentError::Io {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut base = parent.as_path();
    while !base.exists() {
        base = base.parent().unwrap_or(Path::new("."));
        if base.as_os_str().is_empty() {
            base = Path::new(".");
        }
    }
    let leaf = out
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    // An existing output folder holds the temporary one itself, so the renames stay inside one file
    // system (a mount point or a bind mount as DIR) and need no write access to its parent.
    let tmp = if out.is_dir() {
        out.join(format!(".xent-tmp-{}", std::process::id()))
    } else {
        base.join(format!(".{leaf}.xent-tmp-{}", std::process::id()))
    };
    let cleanup = |moved: &[PathBuf]| {
        for p in moved {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&tmp);
    };
    let staged = std::fs::create_dir(&tmp)
        .map_err(|e| io(&tmp, e))
        .and_then(|()| {
            outputs.iter().try_for_each(|(name, shape, data)| {
                let path = tmp.join(name);
                // With `f16_matrices`, the n×N outputs (grad, softmax, log_softmax) as float16.
                if f16_matrices && shape.len() == 2 && !name.starts_with("grad_") {
                    npy::write_f16(&path, shape, data)
                } else {
                    npy::write_f32(&path, shape, data)
                }
            })
        })
        .and_then(|()| std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e)));
    if let Err(e) = staged {
        cleanup(&[]);
        return Err(e);
    }
    if !out.exists() {
        return std::fs::rename(&tmp, out).map_err(|e| {
            cleanup(&[]);
            io(out, e)
        });
    }
    if !out.is_dir() {
        cleanup(&[]);
        return Err(io(out, std::io::Error::other("exists and is not a folder")));
    }
    if let Some((name, ..)) = outputs.iter().find(|(name, ..)| out.join(name).is_dir()) {
        cleanup(&[]);
        let target = out.join(name);
        return Err(io(
            &target,
            std::io::Error::other("is a folder; no output was written"),
        ));
    }
    let mut moved = Vec::with_capacity(outputs.len());
    for (name, _, _) in outputs {
        let target = out.join(name);
        if let Err(e) = std::fs::rename(tmp.join(name), &target) {
            cleanup(&moved);
            return Err(io(&target, e));
        }
        moved.push(target);
    }
    std::fs::remove_dir(&tmp).map_err(|e| io(&tmp, e))
}
