//! The CPU twins of the GPU's 16-bit storage: the same operations on `half::f16` / `half::bf16`
//! slices, with the GPU's precision contract — every value widened to f32 (exactly), the f32 path
//! run on those values, each n×N output rounded once to nearest even. Per-row and batch numbers
//! (losses, log-sum-exp, statistics) stay f32. The f64 oracle takes the same values through
//! [`widen`] (`reference::softmax(&widen(x), cols)`): every 16-bit value is an f32 value.

use super::{CpuCrossEntropy, CpuTargets};
use crate::error::{Result, XentError};
use crate::options::CrossEntropyOptions;
use crate::shaders::Elem;

/// A storage element type of the CPU path: `f32`, `half::f16` or `half::bf16`.
pub trait Storage: Copy + Send + Sync + 'static {
    /// The matching [`Elem`].
    const ELEM: Elem;
    /// The value, widened (exact).
    fn to_f32(self) -> f32;
    /// `v` rounded to this type (nearest, ties to even; NaN stays NaN; f16 overflow is ±inf).
    fn from_f32(v: f32) -> Self;
}

impl Storage for f32 {
    const ELEM: Elem = Elem::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Storage for half::f16 {
    const ELEM: Elem = Elem::F16;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

impl Storage for half::bf16 {
    const ELEM: Elem = Elem::Bf16;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

/// `x` widened to f32 (exact).
pub fn widen<T: Storage>(x: &[T]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

/// `x` rounded to `T`, element by element.
pub fn narrow<T: Storage>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}

/// [`super::softmax`] of a `T` matrix, in `T`.
///
/// ```
/// use xent::half::bf16;
/// let z: Vec<bf16> = [1.0f32, 2.0, 3.0].iter().map(|&v| bf16::from_f32(v)).collect();
/// let p = xent::cpu::softmax_as(&z, 3)?;
/// assert_eq!(p[2], bf16::from_f32(0.66524096)); // the f32 softmax, rounded once
/// # Ok::<(), xent::XentError>(())
/// ```
pub fn softmax_as<T: Storage>(x: &[T], cols: usize) -> Result<Vec<T>> {
    Ok(narrow(&super::softmax(&widen(x), cols)?))
}

/// [`super::log_softmax`] of a `T` matrix, in `T`.
pub fn log_softmax_as<T: Storage>(x: &[T], cols: usize) -> Result<Vec<T>> {
    Ok(narrow(&super::log_softmax(&widen(x), cols)?))
}

/// [`super::logsumexp`] of a `T` matrix (f32 per row).
pub fn logsumexp_as<T: Storage>(x: &[T], cols: usize) -> Result<Vec<f32>> {
    super::logsumexp(&widen(x), cols)
}

/// [`super::softmax_backward`] of `T` matrices, in `T`.
pub fn softmax_backward_as<T: Storage>(probs: &[T], g: &[T], cols: usize) -> Result<Vec<T>> {
    Ok(narrow(&super::softmax_backward(
        &widen(probs),
        &widen(g),
        cols,
    )?))
}

/// [`super::log_softmax_backward`] of `T` matrices, in `T`.
pub fn log_softmax_backward_as<T: Storage>(
    log_probs: &[T],
    g: &[T],
    cols: usize,
) -> Result<Vec<T>> {
    Ok(narrow(&super::log_softmax_backward(
        &widen(log_probs),
        &widen(g),
        cols,
    )?))
}

/// [`super::cross_entropy`] of `T` logits: the gradient (when asked) in `T`, everything else f32.
/// Probability targets are given as f32 values (widen 16-bit ones with [`widen`]). Same errors,
/// before anything is written.
pub fn cross_entropy_as<T: Storage>(
    logits: &[T],
    cols: usize,
    targets: CpuTargets<'_>,
    opts: &CrossEntropyOptions,
    grad: Option<&mut [T]>,
) -> Result<CpuCrossEntropy> {
    if let Some(g) = &grad
        && g.len() != logits.len()
    {
        return Err(XentError::LengthMismatch {
            what: "gradient output",
            expected: logits.len(),
            got: g.len(),
        });
    }
    let z = widen(logits);
    match grad {
        None => super::cross_entropy(&z, cols, targets, opts, None),
        Some(out) => {
            let mut g = super::output(z.len());
            let r = super::cross_entropy(&z, cols, targets, opts, Some(&mut g))?;
            for (o, &v) in out.iter_mut().zip(&g) {
                *o = T::from_f32(v);
            }
            Ok(r)
        }
    }
}
