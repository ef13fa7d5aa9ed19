//! The CPU reference: plain loops with f64 accumulation, following PyTorch's definitions. It is the
//! oracle every GPU kernel is tested against; it is kept obviously right rather than fast (the fast
//! CPU path is [`crate::cpu`]).
//!
//! All functions take row-major `n × cols` slices and panic on inconsistent lengths (they are test
//! oracles; the public GPU and CPU APIs validate input and return errors).

use crate::options::{CrossEntropyOptions, Reduction};

/// Rows of a row-major matrix.
fn rows(x: &[f32], cols: usize) -> impl Iterator<Item = &[f32]> {
    assert!(cols > 0 && x.len().is_multiple_of(cols), "bad shape");
    x.chunks_exact(cols)
}

/// log-sum-exp and log-softmax of one row of f64 values, as PyTorch: the log-sum-exp is ±inf when
/// the row's max is ±inf and NaN with any NaN, and the log-softmax is then all NaN.
///
/// The log-softmax is `(z − m) − log s` with `m` the row's max and `s = Σ exp(z − m)`, never
/// `z − lse`: when |m| ≫ log s (a constant row near ±3e38, or 3e38 beside 2.9e38) `m + log s`
/// rounds to `m` even in f64, and `z − lse` would give a 1000-wide constant row the softmax 1.0
/// instead of 0.001.
fn row_normalise(v: &[f64]) -> (f64, Vec<f64>) {
    if v.iter().any(|x| x.is_nan()) {
        return (f64::NAN, vec![f64::NAN; v.len()]);
    }
    let m = v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    if m.is_infinite() {
        return (m, vec![f64::NAN; v.len()]);
    }
    let log_s = v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    (m + log_s, v.iter().map(|&x| (x - m) - log_s).collect())
}

fn widen(z: &[f32]) -> Vec<f64> {
    z.iter().map(|&x| f64::from(x)).collect()
}

/// log Σ exp(z) of one row, as `torch.logsumexp`: ±inf when the row's max is ±inf, NaN with any NaN.
pub fn row_logsumexp(z: &[f32]) -> f64 {
    row_normalise(&widen(z)).0
}

/// `log_softmax(z)` of one row in f64, as PyTorch: a row with NaN or an infinite max is all NaN.
/// Computed as `(z − m) − log s` (see the note at `row_normalise`), so it is right at every magnitude.
pub fn row_log_softmax(z: &[f32]) -> Vec<f64> {
    row_normalise(&widen(z)).1
}

/// Row-wise log-sum-exp (n values).
pub fn logsumexp(x: &[f32], cols: usize) -> Vec<f32> {
    rows(x, cols).map(|z| row_logsumexp(z) as f32).collect()
}

/// Row-wise softmax.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    rows(x, cols)
        .flat_map(|z| row_log_softmax(z).into_iter().map(|l| l.exp() as f32))
        .collect()
}

/// Row-wise log-softmax.
pub fn log_softmax(x: &[f32], cols: usize) -> Vec<f32> {
    rows(x, cols)
        .flat_map(|z| row_log_softmax(z).into_iter().map(|l| l as f32))
        .collect()
}

/// Softmax backward from the forward output `y = softmax(z)` and upstream `g`: `y ⊙ (g − ⟨g, y⟩)`.
pub fn softmax_backward(y: &[f32], g: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(y.len(), g.len());
    rows(y, cols)
        .zip(rows(g, cols))
        .flat_map(|(y, g)| {
            let dot: f64 = y.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
            y.iter()
                .zip(g)
                .map(move |(&a, &b)| (a as f64 * (b as f64 - dot)) as f32)
        })
        .collect()
}

/// Log-softmax backward from the forward output `y = log_softmax(z)` and upstream `g`:
/// `g − exp(y) · Σ g`.
pub fn log_softmax_backward(y: &[f32], g: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(y.len(), g.len());
    rows(y, cols)
        .zip(rows(g, cols))
        .flat_map(|(y, g)| {
            let sum: f64 = g.iter().map(|&b| b as f64).sum();
            y.iter()
                .zip(g)
                .map(move |(&a, &b)| (b as f64 - (a as f64).exp() * sum) as f32)
        })
        .collect()
}

/// Targets of the reference cross-entropy.
#[derive(Clone, Copy, Debug)]
pub enum RefTargets<'a> {
    /// One class index per row.
    Labels(&'a [i64]),
    /// n × N probability rows.
    Probs(&'a [f32]),
}

/// Everything the reference cross-entropy computes, in f64.
#[derive(Clone, Debug)]
pub struct RefCrossEntropy {
    /// Per-row loss (0 for ignored rows).
    pub row_loss: Vec<f64>,
    /// The reduced loss (the sum of row losses for `Reduction::None`).
    pub loss: f64,
    /// The mean's denominator.
    pub denominator: f64,
    /// ∂loss/∂z of the reduced loss times `grad_output` (of `loss.sum()` for none).
    pub grad: Vec<f64>,
    /// Per-row log-sum-exp of the (soft-capped) logits.
    pub lse: Vec<f64>,
    /// Per-row first maximal class.
    pub argmax: Vec<usize>,
}

/// `torch.nn.functional.cross_entropy` with every option of [`CrossEntropyOptions`], in f64.
/// The loss follows PyTorch's formulas term by term; the gradient is the closed form, which the tests
/// check against finite differences of the loss.
pub fn cross_entropy(
    logits: &[f32],
    cols: usize,
    targets: RefTargets<'_>,
    opts: &CrossEntropyOptions,
) -> RefCrossEntropy {
    cross_entropy_wide(&widen(logits), cols, targets, opts)
}

/// [`cross_entropy`] of f64 logits (the exact logits of [`linear_cross_entropy`]).
pub fn cross_entropy_wide(
    logits: &[f64],
    cols: usize,
    targets: RefTargets<'_>,
    opts: &CrossEntropyOptions,
) -> RefCrossEntropy {
    let n = logits.len() / cols;
    let w = |j: usize| opts.weight.as_ref().map_or(1.0, |w| w[j] as f64);
    let w_sum: f64 = (0..cols).map(w).sum();
    let eps = opts.label_smoothing as f64;
    let eps_n = eps / cols as f64;
    let zl = opts.z_loss as f64;
    let mut out = RefCrossEntropy {
        row_loss: vec![0.0; n],
        loss: 0.0,
        denominator: 0.0,
        grad: vec![0.0; n * cols],
        lse: vec![0.0; n],
        argmax: vec![0; n],
    };
    // Per-row upstream scale before the reduction's factor.
    let mut row_scale = vec![0.0; n];
    for (i, z) in logits.chunks_exact(cols).enumerate() {
        let v: Vec<f64> = z
            .iter()
            .map(|&x| match opts.softcap {
                Some(c) => c as f64 * (x / c as f64).tanh(),
                None => x,
            })
            .collect();
        let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let (lse, lp) = row_normalise(&v);
        out.lse[i] = lse;
        out.argmax[i] = first_argmax(&v32);
        let (loss, coef, direct): (f64, f64, Vec<f64>) = match targets {
            RefTargets::Labels(labels) => {
                let y = labels[i];
                if y == opts.ignore_index {
                    continue;
                }
                let y = y as usize;
                let wy = w(y);
                out.denominator += wy;
                let smooth: f64 = (0..cols)
                    .filter(|&j| w(j) != 0.0)
                    .map(|j| w(j) * -lp[j])
                    .sum();
                let loss = if eps > 0.0 {
                    (1.0 - eps) * wy * -lp[y] + eps_n * smooth
                } else {
                    wy * -lp[y]
                };
                let direct = (0..cols)
                    .map(|j| eps_n * w(j) + if j == y { (1.0 - eps) * wy } else { 0.0 })
                    .collect();
                (loss, (1.0 - eps) * wy + eps_n * w_sum, direct)
            }
            RefTargets::Probs(p) => {
                out.denominator += 1.0;
                let wt: Vec<f64> = (0..cols)
                    .map(|j| w(j) * ((1.0 - eps) * p[i * cols + j] as f64 + eps_n))
                    .collect();
                let loss = (0..cols)
                    .filter(|&j| wt[j] != 0.0)
                    .map(|j| wt[j] * -lp[j])
                    .sum();
                (loss, wt.iter().sum(), wt)
            }
        };
        out.row_loss[i] = loss + zl * lse * lse;
        row_scale[i] = 1.0;
        for j in 0..cols {
            let mut g = (coef + 2.0 * zl * lse) * lp[j].exp() - direct[j];
            if let Some(c) = opts.softcap {
                let t = v[j] / c as f64;
                g *= 1.0 - t * t;
            }
            out.grad[i * cols + j] = g;
        }
    }
    let total: f64 = out.row_loss.iter().sum();
    let scale = match opts.reduction {
        Reduction::Mean => {
            out.loss = total / out.denominator;
            opts.grad_output as f64 / out.denominator
        }
        Reduction::Sum | Reduction::None => {
            out.loss = total;
            opts.grad_output as f64
        }
    };
    for (i, g) in out.grad.chunks_exact_mut(cols).enumerate() {
        for v in g {
            *v = if row_scale[i] == 0.0 { 0.0 } else { *v * scale };
        }
    }
    out
}

/// Index of the first maximal element (0 for an empty or all-NaN row).
pub fn first_argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate() {
        if v > z[best] || z[best].is_nan() && !v.is_nan() {
            best = j;
        }
    }
    best
}

/// Per row: entropy H(Q) of Q = softmax(z), and with targets P the cross-entropy H(P, Q) and
/// KL(P‖Q), in nats, with 0·log 0 = 0. Returns `n` triples.
pub fn info_rows(logits: &[f32], targets: Option<&[f32]>, cols: usize) -> Vec<[f64; 3]> {
    logits
        .chunks_exact(cols)
        .enumerate()
        .map(|(i, z)| {
            let lq = row_log_softmax(z);
            let mut r = [0.0; 3];
            for (j, &l) in lq.iter().enumerate() {
                let q = l.exp();
                if q != 0.0 {
                    r[0] -= q * l;
                }
                if let Some(t) = targets {
                    let p = t[i * cols + j] as f64;
                    if p != 0.0 {
                        r[1] -= p * l;
                        r[2] += p * (p.ln() - l);
                    }
                }
            }
            r
        })
        .collect()
}

/// `X W + b` (n × N) for X n × d, W d × N, b of length N (or none), in f64.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, d: usize, classes: usize) -> Vec<f64> {
    let n = x.len().checked_div(d).unwrap_or(0);
    let mut z = vec![0.0; n * classes];
    for i in 0..n {
        for j in 0..classes {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for k in 0..d {
                s += x[i * d + k] as f64 * w[k * classes + j] as f64;
            }
            z[i * classes + j] = s;
        }
    }
    z
}

/// `Xᵀ G` (d × N) for X n × d and G n × N, in f64.
pub fn weight_grad(x: &[f32], g: &[f32], d: usize, classes: usize) -> Vec<f64> {
    let n = g.len() / classes.max(1);
    let mut out = vec![0.0; d * classes];
    for i in 0..n {
        for k in 0..d {
            let xik = x[i * d + k] as f64;
            for j in 0..classes {
                out[k * classes + j] += xik * g[i * classes + j] as f64;
            }
        }
    }
    out
}

/// Column sums of G (length N), in f64.
pub fn bias_grad(g: &[f32], classes: usize) -> Vec<f64> {
    let mut out = vec![0.0; classes];
    for row in g.chunks_exact(classes) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v as f64;
        }
    }
    out
}

/// `G Wᵀ` (n × d) for G n × N and W d × N, in f64.
pub fn input_grad(g: &[f32], w: &[f32], d: usize, classes: usize) -> Vec<f64> {
    let n = g.len() / classes.max(1);
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        for k in 0..d {
            out[i * d + k] = (0..classes)
                .map(|j| g[i * classes + j] as f64 * w[k * classes + j] as f64)
                .sum();
        }
    }
    out
}

/// What [`linear_cross_entropy`] computes, in f64.
#[derive(Clone, Debug)]
pub struct RefLinearCe {
    /// The cross-entropy of the exact logits (loss, row losses, denominator, `∂L/∂Z`).
    pub ce: RefCrossEntropy,
    /// `∂L/∂X = G W` (n × d).
    pub grad_input: Vec<f64>,
    /// `∂L/∂W = Gᵀ X` (V × d).
    pub grad_weight: Vec<f64>,
    /// `∂L/∂b = 1ᵀ G` (V).
    pub grad_bias: Vec<f64>,
}

/// Linear cross-entropy materialised in f64: `Z = X Wᵀ + b` (X n × d, W V × d as PyTorch's
/// `linear_weight`, b of length V), [`cross_entropy_wide`] of Z, then the three gradients, each row
/// of `∂L/∂Z` first scaled by `row_upstream` when given (reduction none).
pub fn linear_cross_entropy(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    d: usize,
    targets: RefTargets<'_>,
    opts: &CrossEntropyOptions,
    row_upstream: Option<&[f32]>,
) -> RefLinearCe {
    let n = x.len() / d;
    let classes = w.len() / d;
    let mut z = vec![0.0; n * classes];
    for i in 0..n {
        for j in 0..classes {
            let dot: f64 = (0..d)
                .map(|k| x[i * d + k] as f64 * w[j * d + k] as f64)
                .sum();
            z[i * classes + j] = dot + b.map_or(0.0, |b| b[j] as f64);
        }
    }
    let mut ce = match row_upstream {
        // The upstream replaces grad_output.
        Some(_) => {
            let unit = CrossEntropyOptions {
                grad_output: 1.0,
                ..opts.clone()
            };
            cross_entropy_wide(&z, classes, targets, &unit)
        }
        None => cross_entropy_wide(&z, classes, targets, opts),
    };
    if let Some(u) = row_upstream {
        for (g, &u) in ce.grad.chunks_exact_mut(classes).zip(u) {
            g.iter_mut().for_each(|v| *v *= u as f64);
        }
    }
    let g = &ce.grad;
    let mut grad_input = vec![0.0; n * d];
    let mut grad_weight = vec![0.0; classes * d];
    let mut grad_bias = vec![0.0; classes];
    for i in 0..n {
        for j in 0..classes {
            let gij = g[i * classes + j];
            grad_bias[j] += gij;
            for k in 0..d {
                grad_input[i * d + k] += gij * w[j * d + k] as f64;
                grad_weight[j * d + k] += gij * x[i * d + k] as f64;
            }
        }
    }
    RefLinearCe {
        ce,
        grad_input,
        grad_weight,
        grad_bias,
    }
}
