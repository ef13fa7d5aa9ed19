//! Cross-entropy of narrow rows (N ≤ 16 classes, e.g. 65536×10) with AVX-512: sixteen rows at once,
//! one row per lane, each class a vector across the rows (the group transposed through a staging
//! block by scalar moves, in and out: on Zen 4 that beat gathers and scatters, which took 60% of the
//! kernel's time). The row path spends most of such a row in per-row scalar work (its max, Σ,
//! argmax, loss); here every step but the logarithm is a vector over 16 rows. Whole-process A/B of
//! `bench --ops ce --shapes 65536x10` against the row path: 0.83× the wall time, 0.76× the CPU time.
//!
//! **The same bits as the row path** ([`super::ce_row::ce_row`] after
//! [`super::passes::narrow_max_exp`]), by construction: the same operations in the same order per
//! row — the max as `sel(a > b, a, b)` from −inf, `exp_le0` with the same fused steps, the sum
//! folded left to right from 0, `ln` of each lane's sum by the scalar `f32::ln`, the first maximal
//! index, and the loss and gradient formulas term by term. Covered: labels without soft-capping,
//! label smoothing or probabilities (weights, z-loss, `ignore_index` and any scale are); a group of
//! 16 rows that holds a NaN or a non-finite maximum goes to the row path whole.

use std::arch::x86_64::*;

use super::ce_row::{CeCfg, Exps, RowOut, ce_row};
use super::passes::Scratch;

/// Whether [`ce_groups`] covers these options.
pub(super) fn covers(cfg: &CeCfg<'_>) -> bool {
    cfg.labels.is_some()
        && cfg.probs.is_none()
        && cfg.softcap.is_none()
        && cfg.eps == 0.0
        && (1..=16).contains(&cfg.cols)
}

/// `exp_le0::<true>` on 16 lanes: the same fused steps (see `scalar::exp_parts`).
#[inline(always)]
unsafe fn exp_le0(x: __m512) -> __m512 {
    unsafe {
        const MAGIC: f32 = 12_582_912.0;
        let magic = _mm512_set1_ps(MAGIC);
        let t = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), magic);
        let n = _mm512_sub_ps(t, magic);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_359_4), x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
        let mut q = _mm512_set1_ps(1.393_364_2e-3);
        for c in [8.369_149e-3, 4.166_646_7e-2, 1.666_650_5e-1, 0.5, 1.0, 1.0] {
            q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(c));
        }
        let n_bits = _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(MAGIC.to_bits() as i32),
        );
        let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
            n_bits,
            _mm512_set1_epi32(127),
        )));
        let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-87.0));
        _mm512_mask_blend_ps(below, _mm512_mul_ps(q, scale), _mm512_setzero_ps())
    }
}

/// Cross-entropy with its gradient of the whole groups of 16 rows in `z` (rows of `cfg.cols`, global
/// rows from `row0`), into `out` and `grad`; returns how many rows it did (the rest: the caller).
///
/// # Safety
/// The CPU must have AVX-512F (the caller checks [`super::isa`]); `cfg` must be [`covers`]ed and
/// its labels checked (every label a class or `ignore_index`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(super) unsafe fn ce_groups(
    cfg: &CeCfg<'_>,
    row0: usize,
    z: &[f32],
    out: &mut [RowOut],
    grad: &mut [f32],
) -> usize {
    macro_rules! by_width {
        ($($c:literal)*) => {
            match cfg.cols {
                $($c => ce_groups_of::<$c>(cfg, row0, z, out, grad),)*
                _ => 0,
            }
        };
    }
    by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// [`ce_groups`] for rows of `C` classes: the loops over the classes unrolled, the group's vectors
/// in registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
fn ce_groups_of<const C: usize>(
    cfg: &CeCfg<'_>,
    row0: usize,
    z: &[f32],
    out: &mut [RowOut],
    grad: &mut [f32],
) -> usize {
    let cols = C;
    let groups = out.len() / 16;
    let labels = cfg.labels.expect("covers: labels");
    let s = &mut Scratch::new();
    let mut v = [_mm512_setzero_ps(); C];
    let mut stage = [0f32; 256];
    for gi in 0..groups {
        let r0 = gi * 16;
        let zg = &z[r0 * cols..(r0 + 16) * cols];
        // SAFETY: every gathered index is below 16·cols, the group's length (lane · cols + j, j < cols).
        let (mut m, mut unordered) = (_mm512_set1_ps(f32::NEG_INFINITY), 0u16);
        // The group column by column (scalar moves through the staging block: Zen 4's gathers
        // cost more).
        for (r, row) in zg.chunks_exact(cols).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                stage[j * 16 + r] = x;
            }
        }
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = unsafe { _mm512_loadu_ps(stage[j * 16..].as_ptr()) };
            unordered |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(*vj, *vj);
            // sel(m > v, m, v): max_ps returns its second operand on ties (±0) as the select does.
            m = _mm512_max_ps(m, *vj);
        }
        let finite =
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(m), _mm512_set1_ps(f32::INFINITY));
        if unordered != 0 || finite != 0xffff {
            // The row path, row by row, for a group with a NaN or a non-finite maximum.
            let gg = &mut grad[r0 * cols..(r0 + 16) * cols];
            let mut capped = Vec::new();
            for (r, ((zr, gr), o)) in zg
                .chunks_exact(cols)
                .zip(gg.chunks_exact_mut(cols))
                .zip(&mut out[r0..r0 + 16])
                .enumerate()
            {
                *o = ce_row::<true>(
                    cfg,
                    row0 + r0 + r,
                    zr,
                    Some(gr),
                    Exps::Compute,
                    &mut capped,
                    s,
                );
            }
            continue;
        }
        // e_j = exp(v_j − m); Σ e_j left to right from 0; the first j with v_j = m.
        let mut e = [_mm512_setzero_ps(); C];
        let mut sum = _mm512_setzero_ps();
        let mut first = _mm512_set1_epi32(0);
        for j in (0..cols).rev() {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v[j], m);
            first = _mm512_mask_blend_epi32(hit, first, _mm512_set1_epi32(j as i32));
        }
        for j in 0..cols {
            e[j] = unsafe { exp_le0(_mm512_sub_ps(v[j], m)) };
            sum = _mm512_add_ps(sum, e[j]);
        }
        let mut sums = [0f32; 16];
        unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), sum) };
        let ln_s = sums.map(f32::ln);
        let ln_s = unsafe { _mm512_loadu_ps(ln_s.as_ptr()) };
        let lse = _mm512_add_ps(m, ln_s);
        // Labels: y per lane (0 for ignored rows, which are masked), w_y, z_y.
        let mut ys = [0i32; 16];
        let mut ignored = 0u16;
        for (l, y) in ys.iter_mut().enumerate() {
            let label = labels[row0 + r0 + l];
            if label == cfg.ignore_index {
                ignored |= 1 << l;
            } else {
                *y = label as i32;
            }
        }
        let y = unsafe { _mm512_loadu_si512(ys.as_ptr().cast()) };
        let wy = match cfg.weight {
            // SAFETY: y is a class (labels are checked) or 0.
            Some(w) => unsafe { _mm512_i32gather_ps::<4>(y, w.as_ptr()) },
            None => _mm512_set1_ps(1.0),
        };
        let mut vy = _mm512_setzero_ps();
        let mut ey = _mm512_setzero_ps();
        for j in 0..cols {
            let at = _mm512_cmpeq_epi32_mask(y, _mm512_set1_epi32(j as i32));
            vy = _mm512_mask_blend_ps(at, vy, v[j]);
            ey = _mm512_mask_blend_ps(at, ey, e[j]);
        }
        let keep = _mm512_set1_ps(1.0 - cfg.eps);
        let eps_n = _mm512_set1_ps(cfg.eps_n);
        let zl = _mm512_set1_ps(cfg.z_loss);
        let kwy = _mm512_mul_ps(keep, wy);
        // loss = keep·w_y·((m − v_y) + ln s) + z_loss·lse·lse
        let loss = _mm512_mul_ps(kwy, _mm512_add_ps(_mm512_sub_ps(m, vy), ln_s));
        let loss = _mm512_add_ps(loss, _mm512_mul_ps(_mm512_mul_ps(zl, lse), lse));
        // a = (keep·w_y + ε/N·Σw + 2·z_loss·lse) / Σe
        let coef = _mm512_add_ps(kwy, _mm512_mul_ps(eps_n, _mm512_set1_ps(cfg.w_sum)));
        let two_zl = _mm512_mul_ps(_mm512_set1_ps(2.0), zl);
        let a = _mm512_div_ps(_mm512_add_ps(coef, _mm512_mul_ps(two_zl, lse)), sum);
        let scale = _mm512_set1_ps(cfg.scale);
        let neg_eps_n = _mm512_set1_ps(-cfg.eps_n);
        // −(ε/N·w_y + keep·w_y): the sign flipped, as the row path's negation.
        let direct_y_neg = _mm512_xor_ps(
            _mm512_add_ps(_mm512_mul_ps(eps_n, wy), kwy),
            _mm512_set1_ps(-0.0),
        );
        let gy = _mm512_mul_ps(_mm512_fmadd_ps(a, ey, direct_y_neg), scale);
        let keep_rows = !ignored;
        let gg = &mut grad[r0 * cols..(r0 + 16) * cols];
        for j in 0..cols {
            let c = match cfg.weight {
                Some(w) => _mm512_mul_ps(neg_eps_n, _mm512_set1_ps(w[j])),
                None => neg_eps_n,
            };
            let mut g = _mm512_mul_ps(_mm512_fmadd_ps(a, e[j], c), scale);
            let at = _mm512_cmpeq_epi32_mask(y, _mm512_set1_epi32(j as i32));
            g = _mm512_mask_blend_ps(at & keep_rows, g, gy);
            g = _mm512_mask_blend_ps(ignored, g, _mm512_setzero_ps());
            // Column j of the group into the staging block (row-major again below: Zen 4's
            // scatters cost more than the scalar moves).
            unsafe { _mm512_storeu_ps(stage[j * 16..].as_mut_ptr(), g) };
        }
        for (r, row) in gg.chunks_exact_mut(cols).enumerate() {
            for (j, g) in row.iter_mut().enumerate() {
                *g = stage[j * 16 + r];
            }
        }
        let loss = _mm512_mask_blend_ps(ignored, loss, _mm512_setzero_ps());
        let (mut ls, mut lses, mut firsts) = ([0f32; 16], [0f32; 16], [0i32; 16]);
        unsafe {
            _mm512_storeu_ps(ls.as_mut_ptr(), loss);
            _mm512_storeu_ps(lses.as_mut_ptr(), lse);
            _mm512_storeu_si512(firsts.as_mut_ptr().cast(), first);
        }
        for (l, o) in out[r0..r0 + 16].iter_mut().enumerate() {
            *o = RowOut {
                loss: ls[l],
                lse: lses[l],
                argmax: firsts[l] as u32,
            };
        }
    }
    groups * 16
}
