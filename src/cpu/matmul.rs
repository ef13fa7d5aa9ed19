//! Softmax regression on the CPU: matrixmultiply's sgemm (cache-blocked, SIMD kernels).

use super::*;

/// `rows × cols` elements, refused when the product overflows (sizes from a caller, not from data).
pub(super) fn area(what: &str, rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| XentError::InvalidShape(format!("{what}: {rows} × {cols} overflows usize")))
}

/// `C (m × n) = A·B` with element strides (row stride, column stride) for each operand.
pub(super) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: &mut [f32],
) {
    sgemm_beta(m, k, n, a, b, 0.0, (c, n as isize, 1));
}

/// `C ← A·B + β C` with C's strides given too. With β = 1 and `k` at most matrixmultiply's
/// reduction block (256), every element becomes `c + Σ_k a·b` with the sum taken from zero: the
/// step of [`crate::linear_ce`]'s summation tree.
pub(super) fn sgemm_beta(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    beta: f32,
    c: (&mut [f32], isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the callers check every slice's length against the shape and strides, so each strided
    // access of sgemm stays inside its slice; c is exclusively borrowed.
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
            beta,
            c.0.as_mut_ptr(),
            c.1,
            c.2,
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
    check_len("features X (n × d)", area("X", n, d)?, x.len())?;
    check_len("weights W (d × N)", area("W", d, classes)?, w.len())?;
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
        check_len("bias b (N)", classes, b.len())?;
        z.par_chunks_mut(classes.max(1))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(z, b)| *z += b));
    }
    Ok(z)
}

/// The weight gradient `Xᵀ G` (d × N) for X n × d and G n × N.
pub fn weight_grad(x: &[f32], g: &[f32], n: usize, d: usize, classes: usize) -> Result<Vec<f32>> {
    check_len("features X (n × d)", area("X", n, d)?, x.len())?;
    check_len("gradient G (n × N)", area("G", n, classes)?, g.len())?;
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
