//! Scalar building blocks of the fast CPU path: fused multiply-add, select, the f32 `exp` and `tanh`
//! polynomials. All `#[inline(always)]`: they are instantiated inside the AVX2 copies.

/// `a · b + c`, fused when the instantiation has FMA (an unfused `mul_add` is a libm call).
#[inline(always)]
pub(super) fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Branch-free select (a blend in vector code).
#[inline(always)]
pub(super) fn sel(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// `exp(x)` in f32 for `x ≤ 0` (or NaN): Cody–Waite range reduction `x = n ln 2 + r`, a degree-6
/// polynomial for `e^r` (Chebyshev fit, 1e-8 relative, below f32 rounding) and `2ⁿ` built in the
/// exponent bits; within 2 ulp. `−inf` and anything below −87 give 0, NaN gives NaN; `x > 0` gives
/// garbage (the row passes only call it on `z − max`, and on a row whose maximum is unreliable
/// because it holds a NaN, whose results are NaN anyway).
#[inline(always)]
pub(super) fn exp_le0<const F: bool>(x: f32) -> f32 {
    let (y, n_bits) = exp_parts::<F>(x);
    // 2ⁿ for n ∈ [−126, 0]: the exponent field n + 127.
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    sel(x < -87.0, 0.0, y * scale)
}

/// `exp(x)` in f32 for any `x`: as [`exp_le0`], plus `+inf` above ln(f32::MAX).
#[inline(always)]
pub(super) fn exp<const F: bool>(x: f32) -> f32 {
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
pub(super) fn exp_parts<const F: bool>(x: f32) -> (f32, u32) {
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
pub(super) fn tanh<const F: bool>(x: f32) -> f32 {
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
