//! The cross-entropy row kernel.

use super::*;

/// Everything a cross-entropy row needs besides its data, checked and precomputed once per call.
pub(super) struct CeCfg<'a> {
    pub(super) cols: usize,
    pub(super) labels: Option<&'a [i64]>,
    pub(super) probs: Option<&'a [f32]>,
    /// The class weights (`None`: all ones).
    pub(super) weight: Option<&'a [f32]>,
    /// The class weights, or ones: for the general loops.
    pub(super) w_or_ones: &'a [f32],
    pub(super) ignore_index: i64,
    pub(super) eps: f32,
    pub(super) eps_n: f32,
    /// Σ_j w_j.
    pub(super) w_sum: f32,
    pub(super) z_loss: f32,
    pub(super) softcap: Option<f32>,
    /// The reduction's factor times `grad_output`.
    pub(super) scale: f32,
}

/// What one cross-entropy row reports.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RowOut {
    pub(super) loss: f32,
    pub(super) lse: f32,
    pub(super) argmax: u32,
}

/// Room for one row's soft-capped values (empty without soft-capping).
fn capped_row(cfg: &CeCfg<'_>) -> Vec<f32> {
    if cfg.softcap.is_some() {
        vec![0f32; cfg.cols]
    } else {
        Vec::new()
    }
}

/// A block of rows starting at global row `row0`; `grad` (if any) holds the block's rows.
#[inline(always)]
pub(super) fn ce_rows<const F: bool>(
    cfg: &CeCfg<'_>,
    row0: usize,
    z: &[f32],
    out: &mut [RowOut],
    mut grad: Option<&mut [f32]>,
) {
    let cols = cfg.cols;
    let s = &mut Scratch::new();
    let mut capped = capped_row(cfg);
    if cols <= NARROW && cfg.softcap.is_none() {
        // With AVX-512, whole groups of 16 rows at once (the same bits; see narrow_x86.rs).
        #[cfg(target_arch = "x86_64")]
        let (row0, z, out, mut grad) = match grad {
            Some(g) if F && super::narrow_x86::covers(cfg) && isa() == Isa::Avx512 => {
                // SAFETY: `isa` reports AVX-512 only where the CPU has it; the labels were checked.
                let done = unsafe { super::narrow_x86::ce_groups(cfg, row0, z, out, g) };
                let (out, g) = (&mut out[done..], &mut g[done * cols..]);
                (row0 + done, &z[done * cols..], out, Some(g))
            }
            g => (row0, z, out, g),
        };
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

/// [`ce_rows`] with each gradient row written over its logits: the row is copied aside first, so
/// [`ce_row`] reads exactly the values the separate form reads (the same bits; the narrow path's
/// blocks give the same bits as the row path).
#[inline(always)]
pub(super) fn ce_rows_in_place<const F: bool>(
    cfg: &CeCfg<'_>,
    row0: usize,
    zg: &mut [f32],
    out: &mut [RowOut],
) {
    let cols = cfg.cols;
    let s = &mut Scratch::new();
    let mut capped = capped_row(cfg);
    let mut z = vec![0f32; cols];
    for (r, (row, o)) in zg.chunks_exact_mut(cols).zip(out.iter_mut()).enumerate() {
        z.copy_from_slice(row);
        *o = ce_row::<F>(cfg, row0 + r, &z, Some(row), Exps::Compute, &mut capped, s);
    }
}

/// Where a cross-entropy row's maximum and `e_j = exp(v_j − max)` come from.
#[derive(Clone, Copy)]
pub(super) enum Exps<'e> {
    /// Computed by [`ce_row`] itself.
    Compute,
    /// The narrow path's: the maximum, and `e` already in the gradient row.
    InGrad(f32),
    /// The narrow path's: the maximum and `e` (no gradient row).
    Given(f32, &'e [f32]),
}

/// One row: loss, log-sum-exp, argmax, and the gradient row when `grad` is given.
#[inline(always)]
pub(super) fn ce_row<const F: bool>(
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
        Exps::Compute => row_max(v),
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
        (Exps::Compute, Some(g)) if !ignored => exp_sum_store::<F>(v, m, g),
        (Exps::Compute, _) => exp_sum::<F>(v, m),
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
                    None => sum_map(v, |x| m - x),
                    Some(w) => sum_map2(w, v, |w, x| sel(w != 0.0, w * (m - x), 0.0)),
                };
                loss += eps_n * (shifted + cfg.w_sum * ln_s);
            }
            (loss, keep * wy + eps_n * cfg.w_sum)
        }
        (None, Some(p)) => {
            // d_j = w_j ((1 − ε) p_j + ε/N); the loss is Σ_{d_j ≠ 0} d_j (m − v_j) + (Σ d_j) ln s.
            let w = cfg.w_or_ones;
            let d_sum = sum_map2(p, w, |p, w| w * madd::<F>(keep, p, eps_n));
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
