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
//!   sums, dot products) are written as a pairwise tree of such loops over blocks of 1024 elements
//!   held in L1, because the compiler may not reorder a strict f32 sum itself. The tree also keeps
//!   the rounding error small (log₂ of the block, then the number of blocks) without f64 in the hot
//!   loops;
//! - rows of at most 16 elements (where a per-row vector loop would be mostly its scalar tail) go a
//!   block of 64 rows at a time: each row's maximum, then `exp(z − max)` for the whole block in one
//!   vectorised map, then the per-row sums (the same folds, so the same bits, as the row path);
//! - on x86 CPUs with AVX2 and FMA (detected at run time, see [`uses_avx2_fma`]) the same loops run
//!   from copies compiled for those features; elsewhere from the portable build (SSE2 on x86-64).
//!
//! Every function validates its input and returns [`XentError`] rather than panicking. Results match
//! the f64 reference to about 1e-5 relative (the tests use the GPU kernels' tolerances).

use rayon::prelude::*;

use crate::error::{Result, XentError};
use crate::options::{CrossEntropyOptions, Reduction};

/// Elements of a row reduced at once by a pairwise tree in L1; block results are then combined in
/// order.
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

// ---------------------------------------------------------------------------------------------
// Scalar building blocks. All `#[inline(always)]`: they are instantiated inside the AVX2 copies.
// ---------------------------------------------------------------------------------------------

/// `a · b + c`, fused when the instantiation has FMA (an unfused `mul_add` is a libm call).
#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Branch-free select (a blend in vector code).
#[inline(always)]
fn sel(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// `exp(x)` in f32 for `x ≤ 0` (or NaN): Cody–Waite range reduction `x = n ln 2 + r`, a degree-6
/// polynomial for `e^r` (Chebyshev fit, 1e-8 relative, below f32 rounding) and `2ⁿ` built in the
/// exponent bits; within 2 ulp. `−inf` and anything below −87 give 0, NaN gives NaN; `x > 0` gives
/// garbage (the row passes only call it on `z − max`, and on a row whose maximum is unreliable
/// because it holds a NaN, whose results are NaN anyway).
#[inline(always)]
fn exp_le0<const F: bool>(x: f32) -> f32 {
    let (y, n_bits) = exp_parts::<F>(x);
    // 2ⁿ for n ∈ [−126, 0]: the exponent field n + 127.
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    sel(x < -87.0, 0.0, y * scale)
}

/// `exp(x)` in f32 for any `x`: as [`exp_le0`], plus `+inf` above ln(f32::MAX).
#[inline(always)]
fn exp<const F: bool>(x: f32) -> f32 {
    let (y, n_bits) = exp_parts::<F>(x);
    // 2ⁿ⁻¹ · 2, valid for n ∈ [−125, 128], that is x ∈ [−87, 88.73].
    let scale = f32::from_bits(n_bits.wrapping_add(126) << 23);
    sel(
        x < -87.0,
        0.0,
        sel(x > 88.722_83, f32::INFINITY, y * scale * 2.0),
    )
}

/// `(e^r, n)` with `x = n ln 2 + r`, |r| ≤ ln 2 / 2; `n` as the low bits of a `u32`.
#[inline(always)]
fn exp_parts<const F: bool>(x: f32) -> (f32, u32) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4; // exact in 9 bits: n · LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    let t = madd::<F>(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = madd::<F>(n, -LN2_HI, x);
    let r = madd::<F>(n, -LN2_LO, r);
    // e^r = 1 + r · q(r), q the degree-5 Chebyshev fit of (e^r − 1)/r on [−ln 2/2, ln 2/2].
    let mut q = 1.393_364_2e-3;
    q = madd::<F>(q, r, 8.369_149e-3);
    q = madd::<F>(q, r, 4.166_646_7e-2);
    q = madd::<F>(q, r, 1.666_650_5e-1);
    q = madd::<F>(q, r, 0.5);
    q = madd::<F>(q, r, 1.0);
    (
        madd::<F>(q, r, 1.0),
        t.to_bits().wrapping_sub(MAGIC.to_bits()),
    )
}

/// `tanh(x)` in f32: Cephes' odd polynomial below |x| = 0.625, `1 − 2/(e^{2|x|} + 1)` above (with
/// |x| clamped to 15, where tanh is 1 in f32); a few ulp. NaN gives NaN.
#[inline(always)]
fn tanh<const F: bool>(x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = madd::<F>(p, z, 2.063_908_8e-2);
    p = madd::<F>(p, z, -5.373_971_6e-2);
    p = madd::<F>(p, z, 1.333_144_2e-1);
    p = madd::<F>(p, z, -3.333_328e-1);
    let small = madd::<F>(p * z, x, x);
    let a = sel(ax > 15.0, 15.0, ax); // NaN stays NaN
    let big = 1.0 - 2.0 / (exp::<F>(a + a) + 1.0);
    sel(ax < 0.625, small, big.copysign(x))
}

// ---------------------------------------------------------------------------------------------
// Vectorisable passes. Maps are plain loops over slices, which LLVM's loop vectoriser takes whole;
// reductions go through a pairwise tree of such maps over a block in L1 (strict f32 sums cannot be
// reordered by the compiler, so the reordering is written out), which is also accurate: the error
// grows with log₂ of the block, then with the number of blocks.
// ---------------------------------------------------------------------------------------------

/// One thread's buffers for the reductions: a block of mapped values and half a block for the tree.
struct Scratch {
    buf: [f32; BLOCK],
    tree: [f32; BLOCK / 2],
}

impl Scratch {
    fn new() -> Self {
        Self {
            buf: [0.0; BLOCK],
            tree: [0.0; BLOCK / 2],
        }
    }
}

/// Reductions of at most this many elements are a plain fold.
const FOLD_MAX: usize = 16;

/// `op`-reduction of `x` (at most [`BLOCK`] elements) as a pairwise tree: each level is a
/// vectorised map `t_i = op(t_i, t_{i+h})`. `op` must be commutative and associative up to
/// rounding, with identity `id`.
#[inline(always)]
fn pairwise(x: &[f32], tree: &mut [f32; BLOCK / 2], id: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let n = x.len();
    if n <= FOLD_MAX {
        return x.iter().fold(id, |a, &b| op(a, b));
    }
    let h = n / 2;
    let (lo, hi) = x.split_at(h);
    let tree = &mut tree[..h];
    for ((t, &a), &b) in tree.iter_mut().zip(lo).zip(hi) {
        *t = op(a, b);
    }
    let mut acc = if n % 2 == 1 { hi[h] } else { id };
    let mut len = h;
    while len > FOLD_MAX {
        let half = len / 2;
        if len % 2 == 1 {
            acc = op(acc, tree[len - 1]);
        }
        let (a, b) = tree[..2 * half].split_at_mut(half);
        for (t, &u) in a.iter_mut().zip(b.iter()) {
            *t = op(*t, u);
        }
        len = half;
    }
    tree[..len].iter().fold(acc, |a, &b| op(a, b))
}

/// Pairwise sum of a block.
#[inline(always)]
fn block_sum(x: &[f32], tree: &mut [f32; BLOCK / 2]) -> f32 {
    pairwise(x, tree, 0.0, |a, b| a + b)
}

/// The largest element when the row holds no NaN. With NaNs the result is NaN or the maximum of
/// some of the elements (the tree's `a > b ? a : b`, one `maxps`, is not NaN-symmetric): callers
/// only use it when the row turns out NaN-free, and otherwise produce NaN results (and take the
/// argmax from [`exact_argmax`]).
#[inline(always)]
fn row_max(x: &[f32], s: &mut Scratch) -> f32 {
    let max = |a: f32, b: f32| sel(a > b, a, b);
    let mut m = f32::NEG_INFINITY;
    for b in x.chunks(BLOCK) {
        m = max(pairwise(b, &mut s.tree, f32::NEG_INFINITY, max), m);
    }
    m
}

/// The reference's first argmax: the first maximal element with NaN skipped (0 for an all-NaN
/// row). Scalar: only for rows holding a NaN or an infinite maximum.
fn exact_argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in x.iter().enumerate() {
        if v > x[best] || (x[best].is_nan() && !v.is_nan()) {
            best = j;
        }
    }
    best
}

/// Σ_j f(a_j, b_j) over slices of equal length: each block mapped into the buffer, then summed.
#[inline(always)]
fn sum_map2(a: &[f32], b: &[f32], s: &mut Scratch, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut total = 0.0;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let buf = &mut s.buf[..ab.len()];
        map2(buf, ab, bb, &f);
        total += block_sum(buf, &mut s.tree);
    }
    total
}

/// Σ_j f(x_j).
#[inline(always)]
fn sum_map(x: &[f32], s: &mut Scratch, f: impl Fn(f32) -> f32) -> f32 {
    let mut total = 0.0;
    for xb in x.chunks(BLOCK) {
        let buf = &mut s.buf[..xb.len()];
        map_in_place2(buf, xb, |_, v| f(v));
        total += block_sum(buf, &mut s.tree);
    }
    total
}

/// Σ_j f(a_j, b_j, c_j) over slices of equal length.
#[inline(always)]
fn sum_map3(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    s: &mut Scratch,
    f: impl Fn(f32, f32, f32) -> f32,
) -> f32 {
    let mut total = 0.0;
    for ((ab, bb), cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).zip(c.chunks(BLOCK)) {
        let buf = &mut s.buf[..ab.len()];
        for (o, (&x, (&y, &z))) in buf.iter_mut().zip(ab.iter().zip(bb.iter().zip(cb))) {
            *o = f(x, y, z);
        }
        total += block_sum(buf, &mut s.tree);
    }
    total
}

/// Writes `e_j = exp(v_j − m)` into `out` and returns Σ e_j (each block summed while in L1).
#[inline(always)]
fn exp_sum_store<const F: bool>(v: &[f32], m: f32, out: &mut [f32], s: &mut Scratch) -> f32 {
    let mut total = 0.0;
    for (vb, ob) in v.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        map_in_place2(ob, vb, |_, x| exp_le0::<F>(x - m));
        total += block_sum(ob, &mut s.tree);
    }
    total
}

/// Σ exp(v_j − m).
#[inline(always)]
fn exp_sum<const F: bool>(v: &[f32], m: f32, s: &mut Scratch) -> f32 {
    sum_map(v, s, |x| exp_le0::<F>(x - m))
}

/// Rows of at most this many elements (whose reductions are all plain folds, see [`pairwise`]) take
/// the narrow path: a block of rows at a time, with `exp` vectorised across the whole block instead of
/// over a handful of elements per row (mostly the scalar tail of a vector loop).
const NARROW: usize = FOLD_MAX;

/// Rows per block of the narrow path (at most [`BLOCK`] elements).
const NARROW_ROWS: usize = BLOCK / NARROW;

/// [`row_max`] of a row of at most [`FOLD_MAX`] elements, without the block machinery.
#[inline(always)]
fn fold_max(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| sel(a > b, a, b);
    max(
        x.iter().fold(f32::NEG_INFINITY, |a, &b| max(a, b)),
        f32::NEG_INFINITY,
    )
}

/// [`block_sum`] of at most [`FOLD_MAX`] elements.
#[inline(always)]
fn fold_sum(x: &[f32]) -> f32 {
    x.iter().fold(0.0, |a, &b| a + b)
}

/// The narrow path's first two passes over a block of at most [`NARROW_ROWS`] rows of `cols ≤
/// NARROW` elements: each row's maximum into `ms`, then `e = exp(v − max)` into `e` in one
/// vectorised map. Bit for bit what the row path computes row by row.
#[inline(always)]
fn narrow_max_exp<const F: bool>(x: &[f32], cols: usize, ms: &mut [f32], e: &mut [f32]) {
    let rows = x.chunks_exact(cols).zip(e.chunks_exact_mut(cols));
    for ((xr, er), m) in rows.zip(ms.iter_mut()) {
        let mx = fold_max(xr);
        *m = mx;
        map_in_place2(er, xr, |_, v| v - mx);
    }
    map_in_place(e, exp_le0::<F>);
}

/// Runs `f(rows, out_rows, maxima, exps)` over the narrow path's blocks of [`NARROW_ROWS`] rows of
/// `x` and the matching blocks of `out` (`per_row` values per row), with each row's maximum and
/// `exp(z − max)` computed.
#[inline(always)]
fn for_narrow_blocks<const F: bool>(
    x: &[f32],
    cols: usize,
    out: &mut [f32],
    per_row: usize,
    mut f: impl FnMut(&[f32], &mut [f32], &[f32], &[f32]),
) {
    let (ms, e) = (&mut [0.0; NARROW_ROWS], &mut [0.0; BLOCK]);
    let blocks = x.chunks(NARROW_ROWS * cols);
    for (xb, ob) in blocks.zip(out.chunks_mut(NARROW_ROWS * per_row)) {
        let e = &mut e[..xb.len()];
        narrow_max_exp::<F>(xb, cols, ms, e);
        f(xb, ob, ms, e);
    }
}

/// `out_j = f(a_j, b_j)`.
#[inline(always)]
fn map2(out: &mut [f32], a: &[f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = f(x, y);
    }
}

/// `out_j = f(out_j)`.
#[inline(always)]
fn map_in_place(out: &mut [f32], f: impl Fn(f32) -> f32) {
    for o in out.iter_mut() {
        *o = f(*o);
    }
}

/// `out_j = f(out_j, a_j)`.
#[inline(always)]
fn map_in_place2(out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(*o, x);
    }
}

/// `out_j = f(out_j, a_j, b_j)`.
#[inline(always)]
fn map_in_place3(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = f(*o, x, y);
    }
}

/// Index of the first element equal to `m` (0 if none): with `m` the maximum of a NaN-free row, the
/// reference's first argmax. Whole chunks of [`LANES`] are tested at once.
#[inline(always)]
fn first_index(x: &[f32], m: f32) -> usize {
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for (i, c) in chunks.enumerate() {
        let c: &[f32; LANES] = c.try_into().expect("a chunk of LANES elements");
        let mut hits = 0u32;
        for (k, &v) in c.iter().enumerate() {
            hits |= u32::from(v == m) << k;
        }
        if hits != 0 {
            return i * LANES + hits.trailing_zeros() as usize;
        }
    }
    // The tail (all of a narrow row) without branches: the position of the first hit is random, so a
    // search loop would mispredict once per row.
    let at = rest
        .iter()
        .enumerate()
        .rev()
        .fold(None, |found, (j, &v)| if v == m { Some(j) } else { found });
    at.map_or(0, |j| x.len() - rest.len() + j)
}

/// log Σ exp of a row whose [`row_max`] `m` is not finite: NaN with any NaN, else `m` (±inf).
fn degenerate_lse(x: &[f32], m: f32) -> f32 {
    if x.iter().any(|v| v.is_nan()) {
        f32::NAN
    } else {
        m
    }
}

// ---------------------------------------------------------------------------------------------
// Row kernels of the softmax family (generic over FMA; instantiated twice by `dispatched!`).
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn softmax_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
    if cols <= NARROW {
        let ms = &mut [0.0; NARROW_ROWS];
        let block = NARROW_ROWS * cols;
        for (xb, ob) in x.chunks(block).zip(out.chunks_mut(block)) {
            narrow_max_exp::<F>(xb, cols, ms, ob);
            for (or, &m) in ob.chunks_exact_mut(cols).zip(ms.iter()) {
                if !m.is_finite() {
                    or.fill(f32::NAN);
                    continue;
                }
                let inv = 1.0 / fold_sum(or);
                map_in_place(or, |e| e * inv);
            }
        }
        return;
    }
    let s = &mut Scratch::new();
    for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(x, s);
        if !m.is_finite() {
            out.fill(f32::NAN);
            continue;
        }
        let inv = 1.0 / exp_sum_store::<F>(x, m, out, s);
        map_in_place(out, |e| e * inv);
    }
}

#[inline(always)]
fn log_softmax_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
    if cols <= NARROW {
        for_narrow_blocks::<F>(x, cols, out, cols, |xb, ob, ms, e| {
            let rows = xb.chunks_exact(cols).zip(ob.chunks_exact_mut(cols));
            for (((xr, or), er), &m) in rows.zip(e.chunks_exact(cols)).zip(ms) {
                if !m.is_finite() {
                    or.fill(f32::NAN);
                    continue;
                }
                let ln_s = fold_sum(er).ln();
                map_in_place2(or, xr, |_, v| (v - m) - ln_s);
            }
        });
        return;
    }
    let s = &mut Scratch::new();
    for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(x, s);
        if !m.is_finite() {
            out.fill(f32::NAN);
            continue;
        }
        let ln_s = exp_sum::<F>(x, m, s).ln();
        map_in_place2(out, x, |_, v| (v - m) - ln_s);
    }
}

#[inline(always)]
fn logsumexp_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
    if cols <= NARROW {
        for_narrow_blocks::<F>(x, cols, out, 1, |xb, ob, ms, e| {
            let rows = xb.chunks_exact(cols).zip(e.chunks_exact(cols));
            for (((xr, er), o), &m) in rows.zip(ob.iter_mut()).zip(ms) {
                *o = if m.is_finite() {
                    m + fold_sum(er).ln()
                } else {
                    degenerate_lse(xr, m)
                };
            }
        });
        return;
    }
    let s = &mut Scratch::new();
    for (x, out) in x.chunks_exact(cols).zip(out.iter_mut()) {
        let m = row_max(x, s);
        *out = if m.is_finite() {
            m + exp_sum::<F>(x, m, s).ln()
        } else {
            degenerate_lse(x, m)
        };
    }
}

#[inline(always)]
fn softmax_backward_rows<const F: bool>(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) {
    let s = &mut Scratch::new();
    let rows = y.chunks_exact(cols).zip(g.chunks_exact(cols));
    for ((y, g), out) in rows.zip(out.chunks_exact_mut(cols)) {
        let dot = sum_map2(y, g, s, |a, b| a * b);
        map2(out, y, g, &|a, b| a * (b - dot));
    }
}

#[inline(always)]
fn log_softmax_backward_rows<const F: bool>(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) {
    let s = &mut Scratch::new();
    let rows = y.chunks_exact(cols).zip(g.chunks_exact(cols));
    for ((y, g), out) in rows.zip(out.chunks_exact_mut(cols)) {
        let sum = sum_map(g, s, |b| b);
        map2(out, y, g, &|a, b| madd::<F>(-exp::<F>(a), sum, b));
    }
}

// ---------------------------------------------------------------------------------------------
// The cross-entropy row kernel.
// ---------------------------------------------------------------------------------------------

/// Everything a cross-entropy row needs besides its data, checked and precomputed once per call.
struct CeCfg<'a> {
    cols: usize,
    labels: Option<&'a [i64]>,
    probs: Option<&'a [f32]>,
    /// The class weights (`None`: all ones).
    weight: Option<&'a [f32]>,
    /// The class weights, or ones: for the general loops.
    w_or_ones: &'a [f32],
    ignore_index: i64,
    eps: f32,
    eps_n: f32,
    /// Σ_j w_j.
    w_sum: f32,
    z_loss: f32,
    softcap: Option<f32>,
    /// The reduction's factor times `grad_output`.
    scale: f32,
}

/// What one cross-entropy row reports.
#[derive(Clone, Copy, Debug, Default)]
struct RowOut {
    loss: f32,
    lse: f32,
    argmax: u32,
}

/// A block of rows starting at global row `row0`; `grad` (if any) holds the block's rows.
#[inline(always)]
fn ce_rows<const F: bool>(
    cfg: &CeCfg<'_>,
    row0: usize,
    z: &[f32],
    out: &mut [RowOut],
    mut grad: Option<&mut [f32]>,
) {
    let cols = cfg.cols;
    let s = &mut Scratch::new();
    let mut capped = if cfg.softcap.is_some() {
        vec![0f32; cols]
    } else {
        Vec::new()
    };
    if cols <= NARROW && cfg.softcap.is_none() {
        // The narrow path: maxima and exponentials a block of rows at a time, straight into the
        // gradient rows when there are some; then the rest of each row as below.
        let (ms, e) = (&mut [0.0; NARROW_ROWS], &mut [0.0; BLOCK]);
        let block = NARROW_ROWS * cols;
        for (b, (zb, ob)) in z.chunks(block).zip(out.chunks_mut(NARROW_ROWS)).enumerate() {
            let at = b * block;
            let mut gb = grad.as_deref_mut().map(|g| &mut g[at..at + zb.len()]);
            let eb = match gb.as_deref_mut() {
                Some(g) => g,
                None => &mut e[..zb.len()],
            };
            narrow_max_exp::<F>(zb, cols, ms, eb);
            for (r, (zr, o)) in zb.chunks_exact(cols).zip(ob.iter_mut()).enumerate() {
                let span = r * cols..(r + 1) * cols;
                let (g, exps) = match gb.as_deref_mut() {
                    Some(g) => (Some(&mut g[span]), Exps::InGrad(ms[r])),
                    None => (None, Exps::Given(ms[r], &e[span])),
                };
                *o = ce_row::<F>(cfg, row0 + b * NARROW_ROWS + r, zr, g, exps, &mut capped, s);
            }
        }
        return;
    }
    for (r, (z, o)) in z.chunks_exact(cols).zip(out.iter_mut()).enumerate() {
        let g = grad
            .as_deref_mut()
            .map(|g| &mut g[r * cols..(r + 1) * cols]);
        *o = ce_row::<F>(cfg, row0 + r, z, g, Exps::Compute, &mut capped, s);
    }
}

/// Where a cross-entropy row's maximum and `e_j = exp(v_j − max)` come from.
#[derive(Clone, Copy)]
enum Exps<'e> {
    /// Computed by [`ce_row`] itself.
    Compute,
    /// The narrow path's: the maximum, and `e` already in the gradient row.
    InGrad(f32),
    /// The narrow path's: the maximum and `e` (no gradient row).
    Given(f32, &'e [f32]),
}

/// One row: loss, log-sum-exp, argmax, and the gradient row when `grad` is given.
#[inline(always)]
fn ce_row<const F: bool>(
    cfg: &CeCfg<'_>,
    i: usize,
    z: &[f32],
    mut grad: Option<&mut [f32]>,
    exps: Exps<'_>,
    capped: &mut [f32],
    s: &mut Scratch,
) -> RowOut {
    let cols = cfg.cols;
    let label = cfg.labels.map(|l| l[i]);
    let ignored = label == Some(cfg.ignore_index);
    let probs = cfg.probs.map(|p| &p[i * cols..(i + 1) * cols]);
    let (eps, eps_n, zl, scale) = (cfg.eps, cfg.eps_n, cfg.z_loss, cfg.scale);
    let keep = 1.0 - eps;

    // Pass 1: the (soft-capped) values v and their maximum.
    let v: &[f32] = match cfg.softcap {
        Some(c) => {
            let inv = 1.0 / c;
            map_in_place2(capped, z, |_, x| c * tanh::<F>(x * inv));
            capped
        }
        None => z,
    };
    let m = match exps {
        Exps::Compute => row_max(v, s),
        Exps::InGrad(m) | Exps::Given(m, _) => m,
    };

    if !m.is_finite() {
        let argmax = exact_argmax(v) as u32;
        // No softmax: log p̂ is NaN everywhere (as in the reference), so are the loss terms and the
        // gradient.
        let lse = degenerate_lse(v, m);
        let loss = if ignored {
            0.0
        } else {
            let terms = match probs {
                // Σ over the non-zero target terms of NaN: 0 when there are none.
                Some(p) => {
                    let d = |(&p, &w): (&f32, &f32)| w * (keep * p + eps_n);
                    if p.iter().zip(cfg.w_or_ones).any(|t| d(t) != 0.0) {
                        f32::NAN
                    } else {
                        0.0
                    }
                }
                None => f32::NAN,
            };
            terms + zl * lse * lse
        };
        if let Some(g) = grad {
            g.fill(if ignored { 0.0 } else { f32::NAN });
        }
        return RowOut { loss, lse, argmax };
    }

    // Pass 2: e_j = exp(v_j − m) (stored in the gradient row when there is one) and Σ e_j.
    let sum = match (exps, grad.as_deref_mut()) {
        (Exps::Compute, Some(g)) if !ignored => exp_sum_store::<F>(v, m, g, s),
        (Exps::Compute, _) => exp_sum::<F>(v, m, s),
        (Exps::InGrad(_), g) => fold_sum(g.expect("the narrow path's gradient row")),
        (Exps::Given(_, e), _) => fold_sum(e),
    };
    let ln_s = sum.ln();
    let lse = m + ln_s;
    // Σe is NaN exactly when the row holds a NaN (m is then unreliable: see `row_max`).
    let argmax = if sum.is_nan() {
        exact_argmax(v)
    } else {
        first_index(v, m)
    } as u32;
    if ignored {
        if let Some(g) = grad {
            g.fill(0.0);
        }
        return RowOut {
            loss: 0.0,
            lse,
            argmax,
        };
    }

    // The loss, and the coefficient of ∂loss/∂v_j = coef · p̂_j − direct_j.
    let (loss, coef) = match (label, probs) {
        (Some(y), _) => {
            let y = y as usize;
            let wy = cfg.weight.map_or(1.0, |w| w[y]);
            let mut loss = keep * wy * ((m - v[y]) + ln_s);
            if eps > 0.0 {
                // Σ_{w_j ≠ 0} w_j · (−log p̂_j) as Σ w_j (m − v_j) + W · ln s: no cancellation.
                let shifted = match cfg.weight {
                    None => sum_map(v, s, |x| m - x),
                    Some(w) => sum_map2(w, v, s, |w, x| sel(w != 0.0, w * (m - x), 0.0)),
                };
                loss += eps_n * (shifted + cfg.w_sum * ln_s);
            }
            (loss, keep * wy + eps_n * cfg.w_sum)
        }
        (None, Some(p)) => {
            // d_j = w_j ((1 − ε) p_j + ε/N); the loss is Σ_{d_j ≠ 0} d_j (m − v_j) + (Σ d_j) ln s.
            let w = cfg.w_or_ones;
            let d_sum = sum_map2(p, w, s, |p, w| w * madd::<F>(keep, p, eps_n));
            let shifted = sum_map3(p, w, v, s, |p, w, x| {
                let d = w * madd::<F>(keep, p, eps_n);
                sel(d != 0.0, d * (m - x), 0.0)
            });
            (shifted + d_sum * ln_s, d_sum)
        }
        (None, None) => unreachable!("targets are labels or probabilities"),
    };
    let loss = loss + zl * lse * lse;

    // Pass 3: the gradient from the stored e_j: (coef · e_j / Σe − direct_j), times 1 − tanh² when
    // soft-capped, times the scale last (as the reference: with a 0/0 mean the scale is infinite).
    if let Some(g) = grad {
        let a = (coef + 2.0 * zl * lse) / sum;
        let inv_c = cfg.softcap.map_or(0.0, |c| 1.0 / c);
        let cap_factor = |x: f32| {
            let t = x * inv_c;
            madd::<F>(-t, t, 1.0)
        };
        match (label, probs) {
            (Some(y), _) => {
                let y = y as usize;
                let e_y = g[y];
                match (cfg.weight, cfg.softcap) {
                    (None, None) => map_in_place(g, |e| madd::<F>(a, e, -eps_n) * scale),
                    (Some(w), None) => {
                        map_in_place2(g, w, |e, w| madd::<F>(a, e, -eps_n * w) * scale)
                    }
                    (_, Some(_)) => map_in_place3(g, cfg.w_or_ones, v, |e, w, x| {
                        madd::<F>(a, e, -eps_n * w) * cap_factor(x) * scale
                    }),
                }
                // The target class also carries (1 − ε) w_y.
                let wy = cfg.weight.map_or(1.0, |w| w[y]);
                let mut gy = madd::<F>(a, e_y, -(eps_n * wy + keep * wy));
                if cfg.softcap.is_some() {
                    gy *= cap_factor(v[y]);
                }
                g[y] = gy * scale;
            }
            (None, Some(p)) => {
                let w = cfg.w_or_ones;
                let direct = |p: f32, w: f32| w * madd::<F>(keep, p, eps_n);
                match cfg.softcap {
                    None => {
                        map_in_place3(g, p, w, |e, p, w| madd::<F>(a, e, -direct(p, w)) * scale)
                    }
                    Some(_) => {
                        map_in_place3(g, p, w, |e, p, w| madd::<F>(a, e, -direct(p, w)));
                        map_in_place2(g, v, |gj, x| gj * cap_factor(x) * scale);
                    }
                }
            }
            (None, None) => unreachable!("targets are labels or probabilities"),
        }
    }
    RowOut { loss, lse, argmax }
}

// ---------------------------------------------------------------------------------------------
// Run-time dispatch to the AVX2 + FMA copies, and the parallel driver.
// ---------------------------------------------------------------------------------------------

/// Environment variable that, set to `1`, keeps the hot loops on the portable build even where
/// AVX2 and FMA exist (to compare the two, and to test the portable build on such machines). Read
/// once, at the first call.
pub const PORTABLE_ENV: &str = "XENT_CPU_PORTABLE";

/// Whether the AVX2 + FMA copies run: the CPU has both and [`PORTABLE_ENV`] is not `1`. Checked
/// once.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::env::var_os(PORTABLE_ENV).is_none_or(|v| v != "1")
    })
}

/// Whether the hot loops run from copies compiled for AVX2 and FMA (x86 CPUs that have both,
/// unless [`PORTABLE_ENV`] is `1`); otherwise they run from the portable build (SSE2 on x86-64).
pub fn uses_avx2_fma() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        has_avx2_fma()
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// Defines `fn $name(args)` that runs `$generic::<true>` compiled with AVX2 + FMA when the CPU has
/// them, else `$generic::<false>` (the portable build).
macro_rules! dispatched {
    ($(#[$meta:meta])* fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$meta])*
        fn $name$(<$lt>)?($($arg: $ty),*) {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2$(<$lt>)?($($arg: $ty),*) {
                    $generic::<true>($($arg),*)
                }
                if has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}

dispatched!(
    /// Softmax of whole rows.
    fn softmax_block(x: &[f32], out: &mut [f32], cols: usize) => softmax_rows
);
dispatched!(
    /// Log-softmax of whole rows.
    fn log_softmax_block(x: &[f32], out: &mut [f32], cols: usize) => log_softmax_rows
);
dispatched!(
    /// Log-sum-exp of whole rows.
    fn logsumexp_block(x: &[f32], out: &mut [f32], cols: usize) => logsumexp_rows
);
dispatched!(
    /// Softmax backward of whole rows.
    fn softmax_backward_block(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) => softmax_backward_rows
);
dispatched!(
    /// Log-softmax backward of whole rows.
    fn log_softmax_backward_block(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) => log_softmax_backward_rows
);
dispatched!(
    /// Cross-entropy of whole rows.
    fn ce_block<'a>(cfg: &CeCfg<'a>, row0: usize, z: &[f32], out: &mut [RowOut], grad: Option<&mut [f32]>) => ce_rows
);

/// Rows per rayon task, or `None` to run on the calling thread (small problems, one thread).
fn rows_per_task(n: usize, cols: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    let work = n.saturating_mul(cols.saturating_add(ROW_COST));
    if threads < 2 || n < 2 || work < PAR_MIN_WORK {
        return None;
    }
    let tasks = (work / TASK_MIN_WORK)
        .clamp(2, threads * TASKS_PER_THREAD)
        .min(n);
    Some(n.div_ceil(tasks))
}

/// Runs `f(row0, out_block)` over blocks of rows, in parallel when it pays; `out` holds `per_row`
/// values per row.
fn for_row_blocks<T: Send>(
    n: usize,
    cols: usize,
    out: &mut [T],
    per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    match rows_per_task(n, cols) {
        None => f(0, out),
        Some(rows) => out
            .par_chunks_mut(rows * per_row)
            .enumerate()
            .for_each(|(t, o)| f(t * rows, o)),
    }
}

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
    let mut out = vec![0.0; x.len()];
    softmax_into(x, cols, &mut out)?;
    Ok(out)
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
    let mut out = vec![0.0; x.len()];
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
    let mut out = vec![0.0; probs.len()];
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
    let mut out = vec![0.0; log_probs.len()];
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
    let n = check_rows("logits (rows of cols elements)", logits.len(), cols)?;
    opts.validate(cols)?;
    let (labels, probs) = match targets {
        CpuTargets::Labels(l) => {
            check_labels(l, n, cols, opts.ignore_index)?;
            (Some(l), None)
        }
        CpuTargets::Probs(p) => {
            check_len("probability targets", logits.len(), p.len())?;
            opts.validate_for_probs()?;
            (None, Some(p))
        }
    };
    if let Some(g) = &grad {
        check_len("gradient", logits.len(), g.len())?;
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
    let denominator: f64 = match labels {
        // Folded from +0 (an empty `sum` is −0 since Rust 1.81; PyTorch's is +0).
        Some(l) => l
            .iter()
            .filter(|&&y| y != opts.ignore_index)
            .fold(0.0, |a, &y| a + w_of(y as usize)),
        None => n as f64,
    };
    let grad_output = f64::from(opts.grad_output);
    let scale = match opts.reduction {
        Reduction::Mean => grad_output / denominator,
        Reduction::Sum | Reduction::None => grad_output,
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
        scale: scale as f32,
    };

    let mut rows = vec![RowOut::default(); n];
    match (grad, rows_per_task(n, cols)) {
        (grad, None) => ce_block(&cfg, 0, logits, &mut rows, grad),
        (None, Some(per)) => rows.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
            let r0 = t * per;
            ce_block(&cfg, r0, &logits[r0 * cols..(r0 + o.len()) * cols], o, None);
        }),
        (Some(grad), Some(per)) => rows
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
    }

    let total = rows.iter().fold(0.0, |a, r| a + f64::from(r.loss));
    let loss = match opts.reduction {
        Reduction::Mean => total / denominator,
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
        denominator: denominator as f32,
        lse: rows.iter().map(|r| r.lse).collect(),
        argmax: rows.iter().map(|r| r.argmax).collect(),
        accuracy,
    })
}

// ---- softmax regression on the CPU: matrixmultiply's sgemm (cache-blocked, SIMD kernels) ----

fn expect_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(XentError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// `rows × cols` elements, refused when the product overflows (sizes from a caller, not from data).
fn area(what: &str, rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| XentError::InvalidShape(format!("{what}: {rows} × {cols} overflows usize")))
}

/// `C (m × n) = A·B` with element strides (row stride, column stride) for each operand.
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the callers check every slice's length against the shape and strides, so each strided
    // access of sgemm stays inside its slice; c is m × n row-major and exclusively borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.0.as_ptr(),
            a.1,
            a.2,
            b.0.as_ptr(),
            b.1,
            b.2,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Logits `X W + b` (n × N) for X n × d, W d × N and b of length N.
pub fn linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    d: usize,
    classes: usize,
) -> Result<Vec<f32>> {
    expect_len("features X (n × d)", x.len(), area("X", n, d)?)?;
    expect_len("weights W (d × N)", w.len(), area("W", d, classes)?)?;
    let mut z = vec![0f32; area("Z", n, classes)?];
    sgemm(
        n,
        d,
        classes,
        (x, d as isize, 1),
        (w, classes as isize, 1),
        &mut z,
    );
    if let Some(b) = b {
        expect_len("bias b (N)", b.len(), classes)?;
        z.par_chunks_mut(classes.max(1))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(z, b)| *z += b));
    }
    Ok(z)
}

/// The weight gradient `Xᵀ G` (d × N) for X n × d and G n × N.
pub fn weight_grad(x: &[f32], g: &[f32], n: usize, d: usize, classes: usize) -> Result<Vec<f32>> {
    expect_len("features X (n × d)", x.len(), area("X", n, d)?)?;
    expect_len("gradient G (n × N)", g.len(), area("G", n, classes)?)?;
    let mut dw = vec![0f32; area("dW", d, classes)?];
    sgemm(
        d,
        n,
        classes,
        (x, 1, d as isize),
        (g, classes as isize, 1),
        &mut dw,
    );
    Ok(dw)
}

/// The bias gradient: column sums of G (length N).
pub fn bias_grad(g: &[f32], classes: usize) -> Result<Vec<f32>> {
    if classes == 0 || !g.len().is_multiple_of(classes) {
        return Err(XentError::InvalidShape(format!(
            "{} values are not rows of {classes}",
            g.len()
        )));
    }
    let mut db = vec![0f32; classes];
    for row in g.chunks_exact(classes) {
        db.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    Ok(db)
}
