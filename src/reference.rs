//! The CPU reference: plain loops with f64 accumulation, following PyTorch's definitions. It is the
//! oracle every GPU kernel is tested against; it is kept obviously right rather than fast (the fast
//! CPU path is [`crate::cpu`]).
//!
//! All functions take row-major `n × cols` slices and panic on inconsistent lengths (they are test
//! oracles; the public GPU and CPU APIs validate input and return errors).

/// Rows of a row-major matrix.
fn rows(x: &[f32], cols: usize) -> impl Iterator<Item = &[f32]> {
    assert!(cols > 0 && x.len() % cols == 0, "bad shape");
    x.chunks_exact(cols)
}

/// log Σ exp(z) of one row, as `torch.logsumexp`: ±inf when the row's max is ±inf, NaN with any NaN.
pub fn row_logsumexp(z: &[f32]) -> f64 {
    if z.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    if m.is_infinite() {
        return m;
    }
    let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
    m + s.ln()
}

/// `log_softmax(z)` of one row in f64, as PyTorch: a row with NaN or an infinite max is all NaN.
pub fn row_log_softmax(z: &[f32]) -> Vec<f64> {
    let lse = row_logsumexp(z);
    if !lse.is_finite() {
        return vec![f64::NAN; z.len()];
    }
    z.iter().map(|&v| v as f64 - lse).collect()
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
