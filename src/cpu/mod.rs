//! The fast CPU path: the softmax family and softmax cross-entropy on host slices, with the semantics
//! of [`crate::reference`] (PyTorch's) but built for speed. It is the fair CPU baseline of the
//! benchmarks and the path to take when no GPU adapter exists.
//!
//! How it is fast:
//! - rows are split into blocks that rayon runs in parallel; problems too small to pay for a thread
//!   hand-off run on the calling thread;
//! - each row is walked in up to three passes while it sits in cache: its maximum; `exp(z − max)`,
//!   written to the output and summed; then one multiply-add per element (cross-entropy's gradient,
//!   softmax's normalisation);
//! - `exp` (and `tanh` for soft-capping) are branch-free f32 polynomials. Element-wise passes are
//!   plain loops over slices, which LLVM's loop vectoriser turns into SIMD whole; reductions (max,
//!   sums, dot products) go over blocks of 1024 elements held in L1 into 64 accumulators (for the
//!   max, four 16-lane locals kept in registers), then pairwise, because the compiler may not reorder a strict f32 sum itself: the
//!   order is written out, the same for every vector width (AVX2+FMA and AVX-512 give the same
//!   bits; the portable build, without FMA, differs by rounding), and the rounding error stays small (16 terms an accumulator, log₂ 64, then the number of
//!   blocks) without f64 in the hot loops;
//! - rows of at most 16 elements (where a per-row vector loop would be mostly its scalar tail) go a
//!   block of 64 rows at a time: each row's maximum, then `exp(z − max)` for the whole block in one
//!   vectorised map, then the per-row sums (the same folds, so the same bits, as the row path); with
//!   AVX-512, cross-entropy with labels (no smoothing or soft-capping) takes them 16 rows at once,
//!   one row per lane (`narrow_x86.rs`, the same bits again);
//! - on x86 CPUs the same loops run from copies compiled for AVX-512 (F/BW/VL/DQ) or for AVX2 + FMA,
//!   the best the CPU has, chosen once at run time ([`isa`]; [`ISA_ENV`] caps it); elsewhere from the
//!   portable build (SSE2 on x86-64).
//!
//! Every function validates its input and returns [`XentError`] rather than panicking. Results match
//! the f64 reference to about 1e-5 relative (the tests use the GPU kernels' tolerances).

use rayon::prelude::*;

use crate::error::{Result, XentError};
use crate::options::{CrossEntropyOptions, Reduction};

/// Elements of a row reduced at once in L1 (64 accumulators, then pairwise); block results are then
/// combined in order.
const BLOCK: usize = 1024;

/// Elements compared at once by the argmax scan.
const LANES: usize = 16;

/// Below this much work (elements, plus [`ROW_COST`] per row) a call runs on the calling thread.
const PAR_MIN_WORK: usize = 1 << 15;
/// Smallest work given to one rayon task.
const TASK_MIN_WORK: usize = 1 << 14;
/// Tasks per thread, for load balance.
const TASKS_PER_THREAD: usize = 4;
/// The fixed cost of a row, counted in elements (the log, the argmax, the loop set-up).
const ROW_COST: usize = 32;

mod ce_row;
mod dispatch;
mod linear_ce;
mod matmul;
#[cfg(target_arch = "x86_64")]
mod narrow_x86;
mod passes;
mod rows;
mod scalar;
mod storage;

use ce_row::*;
use dispatch::*;
pub use dispatch::{ISA_ENV, Isa, PORTABLE_ENV, isa, uses_avx2_fma};
pub use linear_ce::{CpuLinear, CpuLinearGrads, linear_cross_entropy};
pub use matmul::{bias_grad, linear, weight_grad};
use passes::*;
use rows::*;
use scalar::*;
pub use storage::{
    Storage, cross_entropy_as, log_softmax_as, log_softmax_backward_as, logsumexp_as, narrow,
    softmax_as, softmax_backward_as, widen,
};

// ---------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------

/// `Err` unless `cols > 0` and `len` is a whole number of rows; returns the number of rows.
fn check_rows(what: &'static str, len: usize, cols: usize) -> Result<usize> {
    if cols == 0 {
        return Err(XentError::InvalidShape(
            "N = 0 classes: every row needs at least one element".into(),
        ));
    }
    if !len.is_multiple_of(cols) {
        return Err(XentError::LengthMismatch {
            what,
            expected: len.next_multiple_of(cols),
            got: len,
        });
    }
    Ok(len / cols)
}

/// `Err` unless `got == expected`.
fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if got != expected {
        return Err(XentError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Every label must be a class in `[0, classes)` or `ignore_index` (the one rule of every backend,
/// [`crate::options::check_labels`]).
pub fn check_labels(labels: &[i64], n: usize, classes: usize, ignore_index: i64) -> Result<()> {
    crate::options::check_labels(labels, n, classes, ignore_index)
}

// ---------------------------------------------------------------------------------------------
// Public API.
// ---------------------------------------------------------------------------------------------

/// Row-wise softmax of the row-major `x` (`x.len() / cols` rows of `cols`), as `torch.softmax`: a
/// row that holds a NaN, or whose maximum is ±inf (an all −inf row too), comes out all NaN; `−inf`
/// logits in an otherwise finite row give 0.
///
/// Errors: [`XentError::InvalidShape`] for `cols == 0`, [`XentError::LengthMismatch`] when
/// `x.len()` is not a multiple of `cols`.
pub fn softmax(x: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut out = output(x.len());
    softmax_into(x, cols, &mut out)?;
    Ok(out)
}

/// A zeroed output of `len` floats for the allocating forms. A fresh output of many MiB costs a page
/// fault per 4 KiB page on first write, which dominated a wide softmax that allocates (50 ms of page
/// faults for 1024×32000 on this project's machines); on Linux the buffer's 2 MiB-aligned interior is
/// offered to transparent huge pages (`madvise(MADV_HUGEPAGE)`, where the system allows it), one fault
/// per 2 MiB instead. Elsewhere, or if the kernel declines, it is an ordinary zeroed `Vec`.
pub fn output(len: usize) -> Vec<f32> {
    let v = vec![0f32; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = len * 4;
        if bytes >= 2 * HUGE {
            let start = v.as_ptr() as usize;
            let first = start.next_multiple_of(HUGE);
            let end = (start + bytes) / HUGE * HUGE;
            if end > first {
                // SAFETY: [first, end) lies inside the vector's allocation, which is ours and live;
                // madvise only changes how the kernel backs those pages (their contents stay zero).
                unsafe {
                    libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    v
}

/// The CPU's bandwidth roofline: `x` copied into `out` (same length), split into the same row blocks
/// and threads as the row kernels, so each CPU figure can carry a % of what the memory system moves
/// on this machine (read + write: the bytes a softmax moves at least). Errors as [`softmax_into`].
pub fn copy_into(x: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    let n = check_rows("input (rows of cols elements)", x.len(), cols)?;
    check_len("output", x.len(), out.len())?;
    for_row_blocks(n, cols, out, cols, |r0, o| {
        o.copy_from_slice(&x[r0 * cols..r0 * cols + o.len()]);
    });
    Ok(())
}

/// [`softmax`] into a caller's buffer of `x.len()` elements (no allocation).
pub fn softmax_into(x: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    let n = check_rows("x (rows of cols elements)", x.len(), cols)?;
    check_len("output", x.len(), out.len())?;
    for_row_blocks(n, cols, out, cols, |r0, o| {
        softmax_block(&x[r0 * cols..r0 * cols + o.len()], o, cols);
    });
    Ok(())
}

/// Row-wise log-softmax `z − logsumexp(z)`, with [`softmax`]'s edge cases (NaN rows); a `−inf`
/// logit in an otherwise finite row gives `−inf`. Same errors as [`softmax`].
pub fn log_softmax(x: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut out = output(x.len());
    log_softmax_into(x, cols, &mut out)?;
    Ok(out)
}

/// [`log_softmax`] into a caller's buffer of `x.len()` elements.
pub fn log_softmax_into(x: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    let n = check_rows("x (rows of cols elements)", x.len(), cols)?;
    check_len("output", x.len(), out.len())?;
    for_row_blocks(n, cols, out, cols, |r0, o| {
        log_softmax_block(&x[r0 * cols..r0 * cols + o.len()], o, cols);
    });
    Ok(())
}

/// Row-wise log-sum-exp (one value per row), as `torch.logsumexp`: `−inf` for an all −inf row,
/// `+inf` when the row holds `+inf`, NaN when it holds a NaN. Same errors as [`softmax`].
pub fn logsumexp(x: &[f32], cols: usize) -> Result<Vec<f32>> {
    let n = check_rows("x (rows of cols elements)", x.len(), cols)?;
    let mut out = vec![0.0; n];
    for_row_blocks(n, cols, &mut out, 1, |r0, o| {
        logsumexp_block(&x[r0 * cols..(r0 + o.len()) * cols], o, cols);
    });
    Ok(out)
}

/// Softmax backward from the forward output `probs = softmax(z)` and the upstream gradient `g`:
/// `probs ⊙ (g − ⟨g, probs⟩)` per row.
///
/// Errors: as [`softmax`] for `probs`, and [`XentError::LengthMismatch`] when `g` is not as long as
/// `probs`.
pub fn softmax_backward(probs: &[f32], g: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut out = output(probs.len());
    softmax_backward_into(probs, g, cols, &mut out)?;
    Ok(out)
}

/// [`softmax_backward`] into a caller's buffer of `probs.len()` elements (no allocation).
pub fn softmax_backward_into(probs: &[f32], g: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    let n = check_rows("probs (rows of cols elements)", probs.len(), cols)?;
    check_len("upstream gradient", probs.len(), g.len())?;
    check_len("output", probs.len(), out.len())?;
    for_row_blocks(n, cols, out, cols, |r0, o| {
        let rows = r0 * cols..r0 * cols + o.len();
        softmax_backward_block(&probs[rows.clone()], &g[rows], o, cols);
    });
    Ok(())
}

/// Log-softmax backward from the forward output `log_probs = log_softmax(z)` and the upstream
/// gradient `g`: `g − exp(log_probs) · Σ g` per row. Same errors as [`softmax_backward`].
pub fn log_softmax_backward(log_probs: &[f32], g: &[f32], cols: usize) -> Result<Vec<f32>> {
    let n = check_rows("log_probs (rows of cols elements)", log_probs.len(), cols)?;
    check_len("upstream gradient", log_probs.len(), g.len())?;
    let mut out = output(log_probs.len());
    for_row_blocks(n, cols, &mut out, cols, |r0, o| {
        let rows = r0 * cols..r0 * cols + o.len();
        log_softmax_backward_block(&log_probs[rows.clone()], &g[rows], o, cols);
    });
    Ok(out)
}

/// The targets of [`cross_entropy`].
#[derive(Clone, Copy, Debug)]
pub enum CpuTargets<'a> {
    /// One class index per row, in `[0, N)` or equal to `ignore_index`.
    Labels(&'a [i64]),
    /// One probability row per row (`n × N`, row-major); rows need not be one-hot nor sum to 1.
    Probs(&'a [f32]),
}

/// What [`cross_entropy`] computes.
#[derive(Clone, Debug)]
pub struct CpuCrossEntropy {
    /// Per-row loss (weighted, smoothed, with z-loss); 0 for an ignored row.
    pub row_loss: Vec<f32>,
    /// The reduced loss: the mean (over Σ w\[y\] of the rows not ignored for labels, over n for
    /// probabilities; NaN when that is 0/0) or the sum; the sum of row losses for
    /// [`Reduction::None`].
    pub loss: f32,
    /// The mean's denominator (Σ w\[y\] over rows not ignored, or n), whatever the reduction.
    pub denominator: f32,
    /// Per-row log-sum-exp of the (soft-capped) logits, ignored rows included.
    pub lse: Vec<f32>,
    /// Per-row first maximal class of the (soft-capped) logits (NaN skipped; 0 for an all-NaN row).
    pub argmax: Vec<u32>,
    /// Fraction of labelled rows not ignored whose argmax is the label; NaN when there are none (and
    /// for probability targets).
    pub accuracy: f32,
}

/// Softmax cross-entropy, as `torch.nn.functional.cross_entropy` with every option of
/// [`CrossEntropyOptions`] (class weights, `ignore_index`, reduction, label smoothing) plus logit
/// soft-capping `c·tanh(z/c)` (applied first) and z-loss (`z_loss · lse²` added to each row not
/// ignored). `logits` is row-major with `cols` classes per row.
///
/// With `grad` (`logits.len()` elements), also writes ∂L/∂logits of the reduced loss times
/// `opts.grad_output` (of `loss.sum()` for [`Reduction::None`]), in the same pass over the data.
/// Ignored rows get loss 0 and a gradient of exactly 0; target terms with a zero target or a zero
/// weight contribute 0. A row holding a NaN, or whose maximum is ±inf, has a NaN loss and gradient.
/// With `n = 0` rows the mean is NaN and the sum 0.
///
/// Errors, all raised before anything is written: [`XentError::InvalidShape`] for `cols == 0`;
/// [`XentError::LengthMismatch`] when `logits` is not whole rows or the labels, probabilities or
/// `grad` do not fit it; [`XentError::LabelOutOfRange`]; the errors of
/// [`CrossEntropyOptions::validate`]; and [`XentError::InvalidArgument`] for a non-negative
/// `ignore_index` with probability targets (as PyTorch).
pub fn cross_entropy(
    logits: &[f32],
    cols: usize,
    targets: CpuTargets<'_>,
    opts: &CrossEntropyOptions,
    grad: Option<&mut [f32]>,
) -> Result<CpuCrossEntropy> {
    ce_impl(CeData::Separate(logits, grad), cols, targets, opts)
}

/// [`cross_entropy`] with its gradient written over the logits (no second n × N buffer): `logits`
/// comes back holding ∂L/∂logits. The same results, bit for bit, as the separate form (each row is
/// copied aside before its gradient overwrites it). Same errors, raised before anything is written.
pub fn cross_entropy_in_place(
    logits: &mut [f32],
    cols: usize,
    targets: CpuTargets<'_>,
    opts: &CrossEntropyOptions,
) -> Result<CpuCrossEntropy> {
    ce_impl(CeData::InPlace(logits), cols, targets, opts)
}

/// The logits of a cross-entropy call, and where its gradient goes.
enum CeData<'a> {
    /// Read-only logits, and the gradient (if any) in its own buffer.
    Separate(&'a [f32], Option<&'a mut [f32]>),
    /// The gradient over the logits.
    InPlace(&'a mut [f32]),
}

fn ce_impl(
    data: CeData<'_>,
    cols: usize,
    targets: CpuTargets<'_>,
    opts: &CrossEntropyOptions,
) -> Result<CpuCrossEntropy> {
    let len = match &data {
        CeData::Separate(z, _) => z.len(),
        CeData::InPlace(z) => z.len(),
    };
    let n = check_rows("logits (rows of cols elements)", len, cols)?;
    opts.validate(cols)?;
    let (labels, probs) = match targets {
        CpuTargets::Labels(l) => {
            check_labels(l, n, cols, opts.ignore_index)?;
            (Some(l), None)
        }
        CpuTargets::Probs(p) => {
            check_len("probability targets", len, p.len())?;
            opts.validate_for_probs()?;
            (None, Some(p))
        }
    };
    if let CeData::Separate(_, Some(g)) = &data {
        check_len("gradient", len, g.len())?;
    }

    let weight = opts.weight.as_deref();
    let ones;
    let w_or_ones = match weight {
        Some(w) => w,
        None => {
            let general = probs.is_some() || opts.label_smoothing > 0.0 || opts.softcap.is_some();
            ones = if general { vec![1.0; cols] } else { Vec::new() };
            &ones[..]
        }
    };
    let w_of = |j: usize| weight.map_or(1.0, |w| f64::from(w[j]));
    let denominator = match labels {
        Some(l) => crate::exact_sum::mean_denominator(l, weight, opts.ignore_index),
        None => n as f32,
    };
    let scale = match opts.reduction {
        Reduction::Mean => crate::exact_sum::mean_scale(opts.grad_output, denominator),
        Reduction::Sum | Reduction::None => opts.grad_output,
    };
    let cfg = CeCfg {
        cols,
        labels,
        probs,
        weight,
        w_or_ones,
        ignore_index: opts.ignore_index,
        eps: opts.label_smoothing,
        eps_n: opts.label_smoothing / cols as f32,
        w_sum: (0..cols).map(w_of).sum::<f64>() as f32,
        z_loss: opts.z_loss,
        softcap: opts.softcap,
        scale,
    };

    let mut rows = vec![RowOut::default(); n];
    match (data, rows_per_task(n, cols)) {
        (CeData::Separate(logits, grad), None) => ce_block(&cfg, 0, logits, &mut rows, grad),
        (CeData::Separate(logits, None), Some(per)) => {
            rows.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
                let r0 = t * per;
                ce_block(&cfg, r0, &logits[r0 * cols..(r0 + o.len()) * cols], o, None);
            })
        }
        (CeData::Separate(logits, Some(grad)), Some(per)) => rows
            .par_chunks_mut(per)
            .zip(grad.par_chunks_mut(per * cols))
            .enumerate()
            .for_each(|(t, (o, g))| {
                let r0 = t * per;
                ce_block(
                    &cfg,
                    r0,
                    &logits[r0 * cols..(r0 + o.len()) * cols],
                    o,
                    Some(g),
                );
            }),
        (CeData::InPlace(zg), None) => ce_block_in_place(&cfg, 0, zg, &mut rows),
        (CeData::InPlace(zg), Some(per)) => rows
            .par_chunks_mut(per)
            .zip(zg.par_chunks_mut(per * cols))
            .enumerate()
            .for_each(|(t, (o, zg))| ce_block_in_place(&cfg, t * per, zg, o)),
    }

    let total = rows.iter().fold(0.0, |a, r| a + f64::from(r.loss));
    let loss = match opts.reduction {
        Reduction::Mean => total / f64::from(denominator),
        Reduction::Sum | Reduction::None => total,
    };
    let accuracy = match labels {
        Some(l) => {
            let (mut hit, mut count) = (0usize, 0usize);
            for (r, &y) in rows.iter().zip(l) {
                if y != opts.ignore_index {
                    count += 1;
                    hit += usize::from(i64::from(r.argmax) == y);
                }
            }
            if count == 0 {
                f32::NAN
            } else {
                (hit as f64 / count as f64) as f32
            }
        }
        None => f32::NAN,
    };
    Ok(CpuCrossEntropy {
        row_loss: rows.iter().map(|r| r.loss).collect(),
        loss: loss as f32,
        denominator,
        lse: rows.iter().map(|r| r.lse).collect(),
        argmax: rows.iter().map(|r| r.argmax).collect(),
        accuracy,
    })
}
