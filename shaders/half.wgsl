// half: 16-bit storage (bf16 and f16) packed two to a u32 word, element 2k in the low half of word k.
// Only integer operations: every adapter runs them (GL included; no SHADER_F16), and none depends on
// how the driver rounds, flushes subnormals or treats NaN in float arithmetic or in pack2x16float
// (whose result WGSL leaves indeterminate out of f16's range).
// - Widening is exact (every bf16 and f16 value is an f32 value; a signalling NaN comes out quiet).
// - Narrowing rounds to nearest, ties to even; NaN stays NaN (quiet, sign and top payload bits kept,
//   as the `half` crate does); f16 overflow gives ±inf (|x| ≥ 65520), tiny values f16 subnormals or
//   ±0.
// The `#matrix` bindings (see src/shaders/storage.rs) read and write through these.

// bf16: the top 16 bits of an f32.
fn bf16_f32(h: u32) -> f32 {
    // A NaN comes out quiet (as the `half` crate does).
    let b = h << 16u;
    return bitcast<f32>(b | select(0u, 0x400000u, (b & 0x7fffffffu) > 0x7f800000u));
}

fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
fn f16_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // ±0 and subnormals: m · 2^-24, exact in f32 (a normal f32 for m > 0).
        return bitcast<f32>(sign | bitcast<u32>(f32(m) * 5.9604644775390625e-8));
    }
    if (e == 31u) {
        // ±inf, or a NaN made quiet (as the `half` crate does).
        return bitcast<f32>(sign | 0x7f800000u | select(0u, 0x400000u, m != 0u) | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

fn f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u | ((a >> 13u) & 0x3ffu);
    }
    if (a >= 0x477ff000u) {
        // 65520 and above (inf included) round to inf.
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        // A normal f16 (≥ 2^-14): round the mantissa at bit 13, then rebias the exponent (127 → 15);
        // a carry out of the mantissa moves to the next binade, as it should.
        let r = a + 0xfffu + ((a >> 13u) & 1u);
        return sign | ((r - 0x38000000u) >> 13u);
    }
    let e = a >> 23u;
    if (e < 102u) {
        // Below 2^-25: rounds to ±0.
        return sign;
    }
    // A subnormal f16 (units of 2^-24), rounded to nearest even; 1024 units is the smallest normal.
    let mant = (a & 0x7fffffu) | 0x800000u;
    let s = 126u - e;
    var r = mant >> s;
    let rem = mant & ((1u << s) - 1u);
    let mid = 1u << (s - 1u);
    if (rem > mid || (rem == mid && (r & 1u) == 1u)) {
        r += 1u;
    }
    return sign | r;
}

// Element `i` (0: low half, 1: high half) of a word.
fn bf16_get(w: u32, i: u32) -> f32 {
    return bf16_f32((w >> (16u * i)) & 0xffffu);
}

fn f16_get(w: u32, i: u32) -> f32 {
    return f16_f32((w >> (16u * i)) & 0xffffu);
}

// Two elements as one word.
fn bf16_pack(lo: f32, hi: f32) -> u32 {
    return bf16_bits(lo) | (bf16_bits(hi) << 16u);
}

fn f16_pack(lo: f32, hi: f32) -> u32 {
    return f16_bits(lo) | (f16_bits(hi) << 16u);
}
