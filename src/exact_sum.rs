//! Exact sums of f32 values, rounded once: the mean's denominator of cross-entropy (Σ w\[y_i\] over
//! the rows not ignored), computed so that the host and the device give the same bits whatever
//! order or tree they add in.
//!
//! Every finite f32 is a whole number of units of 2⁻¹⁴⁹ (the smallest subnormal) below 2²⁷⁷, so a
//! 320-bit two's-complement integer in those units holds the exact sum of up to 2³² values of
//! either sign. Integer addition is associative: any summation order and any reduction tree give
//! the same integer, which is rounded to f32 once, to nearest with ties to even. The shader twin is
//! `shaders/exact_sum.wgsl` (the same limbs, the same rounding), used when labels live only on
//! the device; [`mean_denominator`] is what every backend of the crate divides by.

/// 32-bit limbs of the accumulator, least significant first.
pub(crate) const LIMBS: usize = 10;

/// An exact sum of finite f32 values (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExactSum([u32; LIMBS]);

impl ExactSum {
    /// Adds a finite `x` exactly (a non-finite `x` is the caller's bug: weights are validated
    /// finite before any sum).
    pub(crate) fn add(&mut self, x: f32) {
        let bits = x.to_bits();
        let e = (bits >> 23) & 0xff;
        let m = if e == 0 {
            bits & 0x7f_ffff
        } else {
            (bits & 0x7f_ffff) | 0x80_0000
        };
        // x = m · 2^(max(e, 1) − 150) = (m << s) units of 2⁻¹⁴⁹.
        let s = e.max(1) - 1;
        let (k, b) = ((s / 32) as usize, s % 32);
        let mut t = [0u32; LIMBS];
        t[k] = m << b;
        if b > 0 {
            t[k + 1] = m >> (32 - b);
        }
        if bits >> 31 != 0 {
            negate(&mut t);
        }
        self.merge(&ExactSum(t));
    }

    /// Adds another exact sum.
    pub(crate) fn merge(&mut self, other: &ExactSum) {
        let mut carry = 0u64;
        for (a, &b) in self.0.iter_mut().zip(&other.0) {
            let s = u64::from(*a) + u64::from(b) + carry;
            *a = s as u32;
            carry = s >> 32;
        }
    }

    /// The sum rounded to the nearest f32, ties to even; ±inf past f32's range; +0 for zero.
    pub(crate) fn to_f32(self) -> f32 {
        let mut m = self.0;
        let negative = m[LIMBS - 1] >> 31 != 0;
        if negative {
            negate(&mut m);
        }
        let Some(i) = (0..LIMBS).rev().find(|&i| m[i] != 0) else {
            return 0.0;
        };
        let top = i as u32 * 32 + 31 - m[i].leading_zeros();
        let magnitude = if top < 24 {
            // Below 2²⁴ units the value is an f32 as it stands: its bits are the integer.
            m[0]
        } else {
            let sh = top - 23;
            let mut mant = bits_at(&m, sh) & 0xff_ffff;
            let guard = bits_at(&m, sh - 1) & 1 != 0;
            let sticky = below(&m, sh - 1);
            let mut exp = sh + 1;
            if guard && (sticky || mant & 1 != 0) {
                mant += 1;
                if mant == 1 << 24 {
                    mant >>= 1;
                    exp += 1;
                }
            }
            if exp >= 255 {
                0x7f80_0000
            } else {
                (exp << 23) | (mant & 0x7f_ffff)
            }
        };
        f32::from_bits(magnitude | (u32::from(negative) << 31))
    }
}

/// Two's-complement negation in place.
fn negate(m: &mut [u32; LIMBS]) {
    let mut carry = 1u64;
    for a in m.iter_mut() {
        let s = u64::from(!*a) + carry;
        *a = s as u32;
        carry = s >> 32;
    }
}

/// The 32 bits of `m` starting at bit `pos` (zeros past the top).
fn bits_at(m: &[u32; LIMBS], pos: u32) -> u32 {
    let (k, b) = ((pos / 32) as usize, pos % 32);
    let lo = m[k] >> b;
    let hi = if b > 0 && k + 1 < LIMBS {
        m[k + 1] << (32 - b)
    } else {
        0
    };
    lo | hi
}

/// Whether any bit of `m` below bit `pos` is set.
fn below(m: &[u32; LIMBS], pos: u32) -> bool {
    let (k, b) = ((pos / 32) as usize, pos % 32);
    m[..k].iter().any(|&l| l != 0) || (b > 0 && m[k] & ((1u32 << b) - 1) != 0)
}

/// The mean's denominator of cross-entropy with labels, as every backend of the crate divides by
/// it: Σ w\[y_i\] over the rows whose label is not `ignore_index` (the count of those rows without
/// weights), summed exactly and rounded once to f32. The labels must have been checked
/// ([`crate::options::check_labels`]). The gradient's scale is then `grad_output ÷ denominator`
/// rounded once to f32, as PyTorch divides by its f32 total weight.
pub(crate) fn mean_denominator<L: Copy + Into<i64>>(
    labels: &[L],
    weight: Option<&[f32]>,
    ignore_index: i64,
) -> f32 {
    let kept = labels
        .iter()
        .map(|&l| l.into())
        .filter(|&l| l != ignore_index);
    match weight {
        // A count, rounded once (as the exact sum of ones would be).
        None => kept.count() as f32,
        Some(w) => {
            let mut s = ExactSum::default();
            for l in kept {
                s.add(w[l as usize]);
            }
            s.to_f32()
        }
    }
}

/// `grad_output ÷ denominator` rounded once to f32 (the quotient of two f32 values in f64 and then
/// rounded to f32 is the correctly rounded f32 quotient: 53 ≥ 2·24 + 2 bits).
pub(crate) fn mean_scale(grad_output: f32, denominator: f32) -> f32 {
    (f64::from(grad_output) / f64::from(denominator)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(xs: &[f32]) -> f32 {
        let mut s = ExactSum::default();
        for &x in xs {
            s.add(x);
        }
        s.to_f32()
    }

    #[test]
    fn sums_are_exact_then_rounded_once() {
        assert_eq!(exact(&[]).to_bits(), 0.0f32.to_bits());
        assert_eq!(exact(&[1.0, 2.0, 0.5]), 3.5);
        // f64 loses the small term; the exact sum keeps it.
        assert_eq!(exact(&[1e30, 1e-30, -1e30]), 1e-30);
        assert_eq!(exact(&[f32::MAX, f32::MAX]), f32::INFINITY);
        assert_eq!(exact(&[-f32::MAX, -f32::MAX]), f32::NEG_INFINITY);
        assert_eq!(exact(&[f32::MAX, f32::MAX, -f32::MAX]), f32::MAX);
        let tiny = f32::from_bits(1);
        assert_eq!(exact(&[tiny, tiny, tiny]).to_bits(), 3);
        assert_eq!(exact(&[-tiny]).to_bits(), (1 << 31) | 1);
        assert_eq!(exact(&[f32::MIN_POSITIVE, -tiny]).to_bits(), 0x7f_ffff);
        assert_eq!(exact(&[3.0, -3.0]).to_bits(), 0.0f32.to_bits());
        // Ties to even: 2²⁴ + 1 rounds down, 2²⁴ + 3 up.
        assert_eq!(exact(&[16_777_216.0, 1.0]), 16_777_216.0);
        assert_eq!(exact(&[16_777_216.0, 1.0, 2.0]), 16_777_220.0);
        // Sticky bits far below the guard bit round up.
        assert_eq!(exact(&[16_777_216.0, 1.0, tiny]), 16_777_218.0);
    }

    #[test]
    fn the_exact_sum_is_the_f64_sum_rounded_when_f64_is_exact() {
        // Values of a narrow range, few enough that f64 adds them exactly.
        let mut state = 12345u64;
        for len in [1usize, 2, 7, 100, 1000] {
            let xs: Vec<f32> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.3) * 8.0
                })
                .collect();
            let f64_sum: f64 = xs.iter().map(|&x| f64::from(x)).sum();
            assert_eq!(exact(&xs), f64_sum as f32, "{len}");
            // Any order, the same bits.
            let mut rev = xs.clone();
            rev.reverse();
            assert_eq!(exact(&rev).to_bits(), exact(&xs).to_bits());
        }
    }

    #[test]
    fn denominators_count_or_sum_the_kept_rows() {
        let w = [2.0, -1.0, 0.5, 1.0];
        assert_eq!(mean_denominator(&[0i32, 1, 3, 2], Some(&w), 3), 1.5);
        assert_eq!(mean_denominator(&[0i64, 1, 3, 2], None, 3), 3.0);
        assert_eq!(mean_denominator(&[3i32, 3], None, 3).to_bits(), 0);
        assert_eq!(mean_scale(1.0, 3.0), (1.0f64 / 3.0) as f32);
    }
}
