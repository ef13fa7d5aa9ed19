//! Row kernels of the softmax family (generic over FMA; instantiated twice by `dispatched!`).

use super::*;

#[inline(always)]
pub(super) fn softmax_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
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
    for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(x);
        if !m.is_finite() {
            out.fill(f32::NAN);
            continue;
        }
        let inv = 1.0 / exp_sum_store::<F>(x, m, out);
        map_in_place(out, |e| e * inv);
    }
}

#[inline(always)]
pub(super) fn log_softmax_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
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
    for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(x);
        if !m.is_finite() {
            out.fill(f32::NAN);
            continue;
        }
        let ln_s = exp_sum::<F>(x, m).ln();
        map_in_place2(out, x, |_, v| (v - m) - ln_s);
    }
}

#[inline(always)]
pub(super) fn logsumexp_rows<const F: bool>(x: &[f32], out: &mut [f32], cols: usize) {
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
    for (x, out) in x.chunks_exact(cols).zip(out.iter_mut()) {
        let m = row_max(x);
        *out = if m.is_finite() {
            m + exp_sum::<F>(x, m).ln()
        } else {
            degenerate_lse(x, m)
        };
    }
}

#[inline(always)]
pub(super) fn softmax_backward_rows<const F: bool>(
    y: &[f32],
    g: &[f32],
    out: &mut [f32],
    cols: usize,
) {
    let rows = y.chunks_exact(cols).zip(g.chunks_exact(cols));
    for ((y, g), out) in rows.zip(out.chunks_exact_mut(cols)) {
        let dot = sum_map2(y, g, |a, b| a * b);
        map2(out, y, g, &|a, b| a * (b - dot));
    }
}

#[inline(always)]
pub(super) fn log_softmax_backward_rows<const F: bool>(
    y: &[f32],
    g: &[f32],
    out: &mut [f32],
    cols: usize,
) {
    let rows = y.chunks_exact(cols).zip(g.chunks_exact(cols));
    for ((y, g), out) in rows.zip(out.chunks_exact_mut(cols)) {
        let sum = sum_map(g, |b| b);
        map2(out, y, g, &|a, b| madd::<F>(-exp::<F>(a), sum, b));
    }
}
