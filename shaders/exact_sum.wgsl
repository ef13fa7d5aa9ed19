// exact_sum: exact sums of f32 values, rounded once, and a correctly rounded f32 division — the twin of
// src/exact_sum.rs, which explains the representation: a 320-bit two's-complement integer in units of
// 2^-149 (every finite f32 is a whole number of them below 2^277), here ten u32 limbs, least
// significant first. Integer addition is associative, so any order of lanes, workgroups and atomics
// gives the host's integer, and the rounding at the end gives its bits.
// A lane sums its values in carry-save form (CarrySave: 16-bit digits in u32 words, positive and
// negative terms apart), which costs no loop per value: Mesa's CPU drivers cut every invocation's loops
// at 65,535 iterations in all (docs/PLATFORM.md), so per-value loops over limbs are out.

struct CarrySave {
    pos: array<u32, 20>,
    neg: array<u32, 20>,
}

// Adds a finite f32 (as bits) to a carry-save sum: its 24-bit significand shifted into at most three
// 16-bit digits. Each digit takes less than 2^17 per value: 2^15 values fit without overflow.
fn cs_add(cs: ptr<function, CarrySave>, bits: u32) {
    let e = (bits >> 23u) & 0xffu;
    let m = select((bits & 0x7fffffu) | 0x800000u, bits & 0x7fffffu, e == 0u);
    let s = max(e, 1u) - 1u;
    let k = s >> 4u;
    let b = s & 15u;
    let t0 = (m & 0xffffu) << b;
    let t1 = (m >> 16u) << b;
    if ((bits >> 31u) != 0u) {
        (*cs).neg[k] += t0 & 0xffffu;
        (*cs).neg[k + 1u] += (t0 >> 16u) + (t1 & 0xffffu);
        (*cs).neg[k + 2u] += t1 >> 16u;
    } else {
        (*cs).pos[k] += t0 & 0xffffu;
        (*cs).pos[k + 1u] += (t0 >> 16u) + (t1 & 0xffffu);
        (*cs).pos[k + 2u] += t1 >> 16u;
    }
}

// The 320-bit two's-complement value of a carry-save sum (positive part minus negative part).
fn cs_limbs(cs: ptr<function, CarrySave>) -> array<u32, 10> {
    var out: array<u32, 10>;
    var cp = 0u;
    var cn = 0u;
    var borrow = 0u;
    for (var i = 0u; i < 10u; i++) {
        let p0 = (*cs).pos[2u * i] + cp;
        let p1 = (*cs).pos[2u * i + 1u] + (p0 >> 16u);
        cp = p1 >> 16u;
        let n0 = (*cs).neg[2u * i] + cn;
        let n1 = (*cs).neg[2u * i + 1u] + (n0 >> 16u);
        cn = n1 >> 16u;
        let a = (p0 & 0xffffu) | (p1 << 16u);
        let b = (n0 & 0xffffu) | (n1 << 16u);
        let d = a - b - borrow;
        borrow = select(0u, 1u, a < b || (borrow == 1u && a == b));
        out[i] = d;
    }
    return out;
}

// Whether a 320-bit value is not zero.
fn limbs_nonzero(v: array<u32, 10>) -> bool {
    var x = v;
    var any = 0u;
    for (var i = 0u; i < 10u; i++) {
        any |= x[i];
    }
    return any != 0u;
}

// The sign and magnitude of a 320-bit two's-complement value.
fn limbs_abs(v: array<u32, 10>) -> array<u32, 10> {
    var m = v;
    if ((m[9] >> 31u) == 0u) {
        return m;
    }
    var carry = 1u;
    for (var i = 0u; i < 10u; i++) {
        let t = ~m[i] + carry;
        carry = select(0u, 1u, carry == 1u && t == 0u);
        m[i] = t;
    }
    return m;
}

// The 32 bits of m from bit pos up (zeros past the top).
fn limbs_bits_at(m: ptr<function, array<u32, 10>>, pos: u32) -> u32 {
    let k = pos >> 5u;
    let b = pos & 31u;
    var hi = 0u;
    if (b > 0u && k + 1u < 10u) {
        hi = (*m)[k + 1u] << (32u - b);
    }
    return ((*m)[k] >> b) | hi;
}

// Whether any bit of m below bit pos is set.
fn limbs_below(m: ptr<function, array<u32, 10>>, pos: u32) -> bool {
    let k = pos >> 5u;
    let b = pos & 31u;
    var any = 0u;
    for (var i = 0u; i < k; i++) {
        any |= (*m)[i];
    }
    if (b > 0u) {
        any |= (*m)[k] & ((1u << b) - 1u);
    }
    return any != 0u;
}

// A 320-bit value rounded to the nearest f32 (ties to even; ±inf past the range; +0 for zero), as bits.
fn limbs_to_f32(v: array<u32, 10>) -> u32 {
    let sign = v[9] & 0x80000000u;
    var m = limbs_abs(v);
    var top = 0u;
    var found = false;
    for (var i = 0u; i < 10u; i++) {
        if (m[i] != 0u) {
            top = 32u * i + 31u - countLeadingZeros(m[i]);
            found = true;
        }
    }
    if (!found) {
        return 0u;
    }
    if (top < 24u) {
        return sign | m[0];
    }
    let sh = top - 23u;
    let guard = (limbs_bits_at(&m, sh - 1u) & 1u) != 0u;
    return round_normal(sign, sh + 1u, limbs_bits_at(&m, sh) & 0xffffffu, guard, limbs_below(&m, sh - 1u));
}

// A normal f32 from its sign bit, biased exponent e ≥ 1, 24-bit significand (leading bit set) and the
// guard and sticky bits below it: rounded to nearest, ties to even; ±inf past the range.
fn round_normal(sign: u32, e: u32, significand: u32, guard: bool, sticky: bool) -> u32 {
    var mant = significand;
    var be = e;
    if (guard && (sticky || (mant & 1u) != 0u)) {
        mant += 1u;
        if (mant == 0x1000000u) {
            mant = mant >> 1u;
            be += 1u;
        }
    }
    if (be >= 255u) {
        return sign | 0x7f800000u;
    }
    return sign | (be << 23u) | (mant & 0x7fffffu);
}

// A finite non-zero f32 (biased exponent, fraction) as m · 2^(e − 150) with m in [2^23, 2^24),
// subnormals normalised.
struct Unpacked {
    m: u32,
    e: i32,
}

fn unpack(e: u32, f: u32) -> Unpacked {
    if (e == 0u) {
        let lz = countLeadingZeros(f) - 8u;
        return Unpacked(f << lz, 1 - i32(lz));
    }
    return Unpacked(f | 0x800000u, i32(e));
}

// a ÷ b for f32 bit patterns, correctly rounded (to nearest, ties to even), subnormals included: the
// host's `(a as f64 / b as f64) as f32` on every adapter (WGSL's own division may be off by 2.5 ulp).
fn div_rne(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & 0x80000000u;
    let ea = (a >> 23u) & 0xffu;
    let eb = (b >> 23u) & 0xffu;
    let fa = a & 0x7fffffu;
    let fb = b & 0x7fffffu;
    if ((ea == 255u && fa != 0u) || (eb == 255u && fb != 0u)) {
        return 0x7fc00000u;
    }
    let a_zero = ea == 0u && fa == 0u;
    let b_zero = eb == 0u && fb == 0u;
    if ((ea == 255u && eb == 255u) || (a_zero && b_zero)) {
        return 0x7fc00000u;
    }
    if (ea == 255u || b_zero) {
        return sign | 0x7f800000u;
    }
    if (eb == 255u || a_zero) {
        return sign;
    }
    let ua = unpack(ea, fa);
    let ub = unpack(eb, fb);
    var ma = ua.m;
    let mb = ub.m;
    var e = ua.e - ub.e;
    if (ma < mb) {
        ma = ma << 1u;
        e -= 1;
    }
    // ma / mb in [1, 2): 25 quotient bits (24 and a guard bit), the remainder for the sticky bit.
    var q = 0u;
    var r = ma;
    for (var i = 0u; i < 25u; i++) {
        q = q << 1u;
        if (r >= mb) {
            r -= mb;
            q |= 1u;
        }
        r = r << 1u;
    }
    var sticky = r != 0u;
    let biased = e + 127;
    if (biased >= 1) {
        return round_normal(sign, u32(biased), q >> 1u, (q & 1u) != 0u, sticky);
    }
    // Subnormal: the last representable bit is 2^-149, sh bits further up q (rounding up into the
    // smallest normal gives its bits too).
    let sh = u32(2 - biased);
    var mant = 0u;
    var guard = false;
    if (sh <= 25u) {
        mant = q >> sh;
        guard = ((q >> (sh - 1u)) & 1u) != 0u;
        sticky = sticky || (q & ((1u << (sh - 1u)) - 1u)) != 0u;
    }
    if (guard && (sticky || (mant & 1u) != 0u)) {
        mant += 1u;
    }
    return sign | mant;
}
