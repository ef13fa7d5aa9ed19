//! Vectorisable passes: maps as plain loops over slices (LLVM's loop vectoriser takes them whole),
//! reductions in a fixed order over a block in L1 (64 accumulators, then pairwise), and the
//! narrow-row block passes.

use super::*;

/// One thread's buffer for the reductions: a block of mapped values.
pub(super) struct Scratch {
    pub(super) buf: [f32; BLOCK],
}

impl Scratch {
    pub(super) fn new() -> Self {
        Self { buf: [0.0; BLOCK] }
    }
}

/// Reductions of at most this many elements are a plain fold.
pub(super) const FOLD_MAX: usize = 16;

/// Accumulators of a block reduction (see [`pairwise`]).
const ACC: usize = 64;

/// The maximum of a block of more than [`FOLD_MAX`] (at most [`BLOCK`]) elements in
/// [`pairwise`]'s order (element `i` into accumulator `i mod 64`, then the tree), with the 64
/// accumulators as four 16-lane locals that stay in registers through the loop. [`pairwise`]'s
/// accumulator array stayed on the stack here, and the max's select became a masked store that
/// Zen 4 cannot forward to the next load (a third of a cross-entropy row's time). The sums keep
/// [`pairwise`]: written this way, LLVM vectorised them two lanes wide.
#[inline(always)]
fn block_max(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| sel(a > b, a, b);
    let chunks = x.chunks_exact(ACC);
    let rest = chunks.remainder();
    let id = f32::NEG_INFINITY;
    let (mut a0, mut a1, mut a2, mut a3) = ([id; 16], [id; 16], [id; 16], [id; 16]);
    for c in chunks {
        let c: &[f32; ACC] = c.try_into().expect("a chunk of 64");
        for j in 0..16 {
            a0[j] = max(a0[j], c[j]);
        }
        for j in 0..16 {
            a1[j] = max(a1[j], c[16 + j]);
        }
        for j in 0..16 {
            a2[j] = max(a2[j], c[32 + j]);
        }
        for j in 0..16 {
            a3[j] = max(a3[j], c[48 + j]);
        }
    }
    let mut acc = [id; ACC];
    for (k, l) in [a0, a1, a2, a3].iter().enumerate() {
        acc[16 * k..16 * (k + 1)].copy_from_slice(l);
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = max(*a, v);
    }
    tree(acc, max)
}

/// `op`-reduction of `x` (at most [`BLOCK`] elements) in a fixed order: element `i` goes into
/// accumulator `i mod 64`, in order (the vector loop keeps the 64 accumulators in a stack array,
/// a full-width store and reload per chunk, which the store buffer forwards; the max, whose select
/// became a masked store that is not forwarded, has [`block_max`]), then the 64 accumulators
/// pairwise. The order is the
/// same whatever the vector width, so AVX2+FMA and AVX-512 give the same bits (the portable build
/// differs where they fuse multiply-adds); the error grows with
/// the 16 terms an accumulator takes from a block and log₂ 64, as the tree it replaced (a tree of
/// stores and reloads through a scratch buffer, which cost the wide rows a third of their time).
/// `op` must be commutative and associative up to rounding, with identity `id`.
#[inline(always)]
pub(super) fn pairwise(x: &[f32], id: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    if x.len() <= FOLD_MAX {
        return x.iter().fold(id, |a, &b| op(a, b));
    }
    let mut acc = [id; ACC];
    let chunks = x.chunks_exact(ACC);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = op(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = op(*a, v);
    }
    tree(acc, op)
}

/// [`pairwise`]'s tree over its accumulators: halves combined pairwise down to one.
#[inline(always)]
fn tree(mut acc: [f32; ACC], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut len = ACC;
    while len > 1 {
        len /= 2;
        let (lo, hi) = acc.split_at_mut(len);
        for (a, &b) in lo.iter_mut().zip(hi.iter()) {
            *a = op(*a, b);
        }
    }
    acc[0]
}

/// Pairwise sum of a block.
#[inline(always)]
pub(super) fn block_sum(x: &[f32]) -> f32 {
    pairwise(x, 0.0, |a, b| a + b)
}

/// The largest element when the row holds no NaN. With NaNs the result is NaN or the maximum of
/// some of the elements (the tree's `a > b ? a : b`, one `maxps`, is not NaN-symmetric): callers
/// only use it when the row turns out NaN-free, and otherwise produce NaN results (and take the
/// argmax from [`exact_argmax`]).
#[inline(always)]
pub(super) fn row_max(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| sel(a > b, a, b);
    let mut m = f32::NEG_INFINITY;
    for b in x.chunks(BLOCK) {
        let block = if b.len() <= FOLD_MAX {
            pairwise(b, f32::NEG_INFINITY, max)
        } else {
            block_max(b)
        };
        m = max(block, m);
    }
    m
}

/// The reference's first argmax: the first maximal element with NaN skipped (0 for an all-NaN
/// row). Scalar: only for rows holding a NaN or an infinite maximum.
pub(super) fn exact_argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in x.iter().enumerate() {
        if v > x[best] || (x[best].is_nan() && !v.is_nan()) {
            best = j;
        }
    }
    best
}

/// Σ_j f(a_j, b_j) over slices of equal length, block by block: the [`block_sum`] of the mapped
/// values, each mapped as it is added (the same order, so the same bits, as mapping a block into a
/// buffer first; without the buffer's store and reload).
#[inline(always)]
pub(super) fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut total = 0.0;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        total += block_sum_map2(ab, bb, &f);
    }
    total
}

/// [`block_sum`] of `f(a_j, b_j)`: [`pairwise`]'s order, `f` applied on the fly.
#[inline(always)]
fn block_sum_map2(a: &[f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) -> f32 {
    if a.len() <= FOLD_MAX {
        return a.iter().zip(b).fold(0.0, |acc, (&x, &y)| acc + f(x, y));
    }
    let mut acc = [0.0f32; ACC];
    let (ca, cb) = (a.chunks_exact(ACC), b.chunks_exact(ACC));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += f(x, y);
        }
    }
    for ((s, &x), &y) in acc.iter_mut().zip(ra).zip(rb) {
        *s += f(x, y);
    }
    tree(acc, |a, b| a + b)
}

/// [`block_sum`] of `f(x_j)`: [`pairwise`]'s order, `f` applied on the fly.
#[inline(always)]
fn block_sum_map(x: &[f32], f: &impl Fn(f32) -> f32) -> f32 {
    if x.len() <= FOLD_MAX {
        return x.iter().fold(0.0, |acc, &v| acc + f(v));
    }
    let mut acc = [0.0f32; ACC];
    let chunks = x.chunks_exact(ACC);
    let rest = chunks.remainder();
    for c in chunks {
        for (s, &v) in acc.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    for (s, &v) in acc.iter_mut().zip(rest) {
        *s += f(v);
    }
    tree(acc, |a, b| a + b)
}

/// Σ_j f(x_j), block by block (as [`sum_map2`]).
#[inline(always)]
pub(super) fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut total = 0.0;
    for xb in x.chunks(BLOCK) {
        total += block_sum_map(xb, &f);
    }
    total
}

/// Σ_j f(a_j, b_j, c_j) over slices of equal length.
#[inline(always)]
pub(super) fn sum_map3(
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
        total += block_sum(buf);
    }
    total
}

/// Writes `e_j = exp(v_j − m)` into `out` and returns Σ e_j (each block summed while in L1).
#[inline(always)]
pub(super) fn exp_sum_store<const F: bool>(v: &[f32], m: f32, out: &mut [f32]) -> f32 {
    let mut total = 0.0;
    for (vb, ob) in v.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        map_in_place2(ob, vb, |_, x| exp_le0::<F>(x - m));
        total += block_sum(ob);
    }
    total
}

/// Σ exp(v_j − m).
#[inline(always)]
pub(super) fn exp_sum<const F: bool>(v: &[f32], m: f32) -> f32 {
    sum_map(v, |x| exp_le0::<F>(x - m))
}

/// Rows of at most this many elements (whose reductions are all plain folds, see [`pairwise`]) take
/// the narrow path: a block of rows at a time, with `exp` vectorised across the whole block instead of
/// over a handful of elements per row (mostly the scalar tail of a vector loop).
pub(super) const NARROW: usize = FOLD_MAX;

/// Rows per block of the narrow path (at most [`BLOCK`] elements).
pub(super) const NARROW_ROWS: usize = BLOCK / NARROW;

/// [`row_max`] of a row of at most [`FOLD_MAX`] elements, without the block machinery.
#[inline(always)]
pub(super) fn fold_max(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| sel(a > b, a, b);
    max(
        x.iter().fold(f32::NEG_INFINITY, |a, &b| max(a, b)),
        f32::NEG_INFINITY,
    )
}

/// [`block_sum`] of at most [`FOLD_MAX`] elements.
#[inline(always)]
pub(super) fn fold_sum(x: &[f32]) -> f32 {
    x.iter().fold(0.0, |a, &b| a + b)
}

/// The narrow path's first two passes over a block of at most [`NARROW_ROWS`] rows of `cols ≤
/// NARROW` elements: each row's maximum into `ms`, then `e = exp(v − max)` into `e` in one
/// vectorised map. Bit for bit what the row path computes row by row.
#[inline(always)]
pub(super) fn narrow_max_exp<const F: bool>(x: &[f32], cols: usize, ms: &mut [f32], e: &mut [f32]) {
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
pub(super) fn for_narrow_blocks<const F: bool>(
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
pub(super) fn map2(out: &mut [f32], a: &[f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = f(x, y);
    }
}

/// `out_j = f(out_j)`.
#[inline(always)]
pub(super) fn map_in_place(out: &mut [f32], f: impl Fn(f32) -> f32) {
    for o in out.iter_mut() {
        *o = f(*o);
    }
}

/// `out_j = f(out_j, a_j)`.
#[inline(always)]
pub(super) fn map_in_place2(out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(*o, x);
    }
}

/// `out_j = f(out_j, a_j, b_j)`.
#[inline(always)]
pub(super) fn map_in_place3(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32, f32) -> f32,
) {
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = f(*o, x, y);
    }
}

/// Index of the first element equal to `m` (0 if none): with `m` the maximum of a NaN-free row, the
/// reference's first argmax. Whole chunks of [`LANES`] are tested at once.
#[inline(always)]
pub(super) fn first_index(x: &[f32], m: f32) -> usize {
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
pub(super) fn degenerate_lse(x: &[f32], m: f32) -> f32 {
    if x.iter().any(|v| v.is_nan()) {
        f32::NAN
    } else {
        m
    }
}
