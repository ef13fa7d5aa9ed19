//! The CPU twins of the GPU's 16-bit storage: the same operations on `half::f16` / `half::bf16`
//! slices, with the GPU's precision contract — every value widened to f32 (exactly), the f32 path
//! run on those values, each n×N output rounded once to nearest even. Per-row and batch numbers
//! (losses, log-sum-exp, statistics) stay f32. The f64 oracle takes the same values through
//! [`widen`] (`reference::softmax(&widen(x), cols)`): every 16-bit value is an f32 value.
//!
//! The row-wise twins (softmax, log-softmax, the backwards) run in the f32 path's row blocks and
//! threads, each block widened into a small f32 scratch, computed and rounded into the output, so no
//! n×N f32 copy is made; cross-entropy widens the logits once (its batch sums span every row). The
//! conversions are branch-free integer code for bf16 (the compiler vectorises it) and the same
//! integer rules as `shaders/half.wgsl` for f16, bit for bit the `half` crate's results (tested on
//! every 16-bit pattern). AVX-512 BF16's `vcvtneps2bf16` is not used: it treats subnormal inputs
//! as zero, which the precision contract does not allow.

use rayon::prelude::*;

use super::dispatch::for_row_blocks;
use super::{CpuCrossEntropy, CpuTargets, check_len, check_rows};
use crate::error::{Result, XentError};
use crate::options::CrossEntropyOptions;
use crate::shaders::Elem;

/// bf16 bits → f32 (exact; a NaN comes out quiet, as the `half` crate's).
#[inline(always)]
fn bf16_f32(h: u16) -> f32 {
    let b = u32::from(h) << 16;
    let quiet = if b & 0x7fff_ffff > 0x7f80_0000 {
        0x40_0000
    } else {
        0
    };
    f32::from_bits(b | quiet)
}

/// f32 → bf16 bits: nearest, ties to even; NaN quiet with its sign and top payload bits.
#[inline(always)]
fn f32_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) | 0x40) as u16;
    if b & 0x7fff_ffff > 0x7f80_0000 {
        nan
    } else {
        rounded
    }
}

/// f16 bits → f32 (exact).
#[inline(always)]
fn f16_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let (e, m) = ((h >> 10) & 0x1f, h & 0x3ff);
    let bits = match e {
        0 => (m as f32 * 5.960_464_5e-8).to_bits(),
        // A NaN comes out quiet, as the `half` crate's.
        31 if m != 0 => 0x7fc0_0000 | (m << 13),
        31 => 0x7f80_0000,
        _ => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | bits)
}

/// f32 → f16 bits: nearest, ties to even; overflow ±inf; NaN quiet with its sign and payload's top.
#[inline(always)]
fn f32_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    let mag = if a > 0x7f80_0000 {
        0x7e00 | ((a >> 13) & 0x3ff)
    } else if a >= 0x477f_f000 {
        0x7c00
    } else if a >= 0x3880_0000 {
        (a + 0xfff + ((a >> 13) & 1) - 0x3800_0000) >> 13
    } else if a < 0x3300_0000 {
        0
    } else {
        let mant = (a & 0x7f_ffff) | 0x80_0000;
        let s = 126 - (a >> 23);
        let r = mant >> s;
        let rem = mant & ((1 << s) - 1);
        let mid = 1 << (s - 1);
        r + u32::from(rem > mid || (rem == mid && r & 1 == 1))
    };
    sign | mag as u16
}

/// A storage element type of the CPU path: `f32`, `half::f16` or `half::bf16`.
pub trait Storage: Copy + Send + Sync + bytemuck::Zeroable + 'static {
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
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16_f32(self.to_bits())
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::f16::from_bits(f32_f16(v))
    }
}

impl Storage for half::bf16 {
    const ELEM: Elem = Elem::Bf16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16_f32(self.to_bits())
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::bf16::from_bits(f32_bf16(v))
    }
}

/// Elements converted per parallel task.
const CONVERT_CHUNK: usize = 1 << 16;

/// `x` widened to f32 (exact).
pub fn widen<T: Storage>(x: &[T]) -> Vec<f32> {
    let mut out = super::output(x.len());
    widen_into(x, &mut out);
    out
}

/// `x` rounded to `T`, element by element.
pub fn narrow<T: Storage>(x: &[f32]) -> Vec<T> {
    let mut out = bytemuck::zeroed_vec(x.len());
    narrow_into(x, &mut out);
    out
}

fn widen_into<T: Storage>(x: &[T], out: &mut [f32]) {
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(x.par_chunks(CONVERT_CHUNK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, v)| *o = v.to_f32()));
}

fn narrow_into<T: Storage>(x: &[f32], out: &mut [T]) {
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(x.par_chunks(CONVERT_CHUNK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &v)| *o = T::from_f32(v)));
}

/// Rows a row twin computes at once in its f32 scratch (about 64 KiB of each operand, one row at
/// least).
fn scratch_rows(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

/// A row-wise f32 kernel `f(inputs, out, cols)` over `T` matrices: in the f32 path's row blocks and
/// threads, each block's rows widened into scratch, computed, and rounded into `out`.
fn rows_as<T: Storage, const K: usize>(
    inputs: [&[T]; K],
    cols: usize,
    out: &mut [T],
    f: impl Fn([&[f32]; K], &mut [f32], usize) + Sync,
) -> Result<()> {
    let n = check_rows("input (rows of cols elements)", inputs[0].len(), cols)?;
    for x in &inputs[1..] {
        check_len("second input", inputs[0].len(), x.len())?;
    }
    check_len("output", inputs[0].len(), out.len())?;
    for_row_blocks(n, cols, out, cols, |r0, o| {
        let step = scratch_rows(cols) * cols;
        let mut wide: Vec<Vec<f32>> = (0..K).map(|_| vec![0.0; step.min(o.len())]).collect();
        let mut res = vec![0.0; step.min(o.len())];
        for (k, ob) in o.chunks_mut(step).enumerate() {
            let at = r0 * cols + k * step;
            for (w, x) in wide.iter_mut().zip(&inputs) {
                for (d, v) in w.iter_mut().zip(&x[at..at + ob.len()]) {
                    *d = v.to_f32();
                }
            }
            let ins: [&[f32]; K] = std::array::from_fn(|i| &wide[i][..ob.len()]);
            f(ins, &mut res[..ob.len()], cols);
            for (d, &v) in ob.iter_mut().zip(&res) {
                *d = T::from_f32(v);
            }
        }
    });
    Ok(())
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
    let mut out = bytemuck::zeroed_vec(x.len());
    rows_as([x], cols, &mut out, |[x], o, c| {
        super::softmax_block(x, o, c)
    })?;
    Ok(out)
}

/// [`super::log_softmax`] of a `T` matrix, in `T`.
pub fn log_softmax_as<T: Storage>(x: &[T], cols: usize) -> Result<Vec<T>> {
    let mut out = bytemuck::zeroed_vec(x.len());
    rows_as([x], cols, &mut out, |[x], o, c| {
        super::log_softmax_block(x, o, c)
    })?;
    Ok(out)
}

/// [`super::logsumexp`] of a `T` matrix (f32 per row).
pub fn logsumexp_as<T: Storage>(x: &[T], cols: usize) -> Result<Vec<f32>> {
    super::logsumexp(&widen(x), cols)
}

/// [`super::softmax_backward`] of `T` matrices, in `T`.
pub fn softmax_backward_as<T: Storage>(probs: &[T], g: &[T], cols: usize) -> Result<Vec<T>> {
    let mut out = bytemuck::zeroed_vec(probs.len());
    rows_as([probs, g], cols, &mut out, |[y, g], o, c| {
        super::softmax_backward_block(y, g, o, c)
    })?;
    Ok(out)
}

/// [`super::log_softmax_backward`] of `T` matrices, in `T`.
pub fn log_softmax_backward_as<T: Storage>(
    log_probs: &[T],
    g: &[T],
    cols: usize,
) -> Result<Vec<T>> {
    let mut out = bytemuck::zeroed_vec(log_probs.len());
    rows_as([log_probs, g], cols, &mut out, |[y, g], o, c| {
        super::log_softmax_backward_block(y, g, o, c)
    })?;
    Ok(out)
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
            narrow_into(&g, out);
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_the_half_crates_bit_for_bit() {
        for b in 0..=u16::MAX {
            let (h, bf) = (half::f16::from_bits(b), half::bf16::from_bits(b));
            assert_eq!(f16_f32(b).to_bits(), h.to_f32().to_bits(), "f16 {b:#06x}");
            assert_eq!(
                bf16_f32(b).to_bits(),
                bf.to_f32().to_bits(),
                "bf16 {b:#06x}"
            );
        }
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut vals = vec![
            0.0f32, -0.0, 65504.0, 65520.0, 65519.996, 1e-39, 2.98e-8, 5.96e-8,
        ];
        vals.extend((0..200_000).map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            f32::from_bits(s as u32)
        }));
        for v in vals {
            assert_eq!(f32_f16(v), half::f16::from_f32(v).to_bits(), "f16 of {v:e}");
            assert_eq!(
                f32_bf16(v),
                half::bf16::from_f32(v).to_bits(),
                "bf16 of {v:e}"
            );
        }
    }

    #[test]
    fn row_twins_are_the_f32_path_rounded_once() {
        let (n, cols) = (300, 257);
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 7919 % 4001) as f32 - 2000.0) / 250.0)
            .collect();
        let xb: Vec<half::bf16> = narrow(&x);
        let xw = widen(&xb);
        let want: Vec<half::bf16> = narrow(&super::super::softmax(&xw, cols).unwrap());
        assert_eq!(softmax_as(&xb, cols).unwrap(), want);
        let g: Vec<half::bf16> = narrow(&xw.iter().map(|v| v * 0.01).collect::<Vec<_>>());
        let want: Vec<half::bf16> =
            narrow(&super::super::softmax_backward(&xw, &widen(&g), cols).unwrap());
        assert_eq!(softmax_backward_as(&xb, &g, cols).unwrap(), want);
    }
}
