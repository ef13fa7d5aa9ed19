// ce_common: what ce_fwd_bwd and ce_narrow share: the option flags and soft-capping.

#import prelude: CE_SOFTCAP, CE_LABELS_U32, CE_LABELS_I64
#import vector: V
#import common: p, FLAGS

// Class labels, one per row: i32 (host labels, and device-only i32), u32 (CE_LABELS_U32), or i64 as
// pairs of words, low word first (CE_LABELS_I64; PyTorch's int64 without SHADER_INT64).
@group(0) @binding(4) var<storage, read> labels: array<i32>;

// The CE_* flag bits come from the prelude (generated from `flags` in src/shaders.rs).

fn has(f: u32) -> bool {
    return (FLAGS & f) != 0u;
}

// Soft-capping c·tanh(z/c) (f2 = c). tanh saturates to ±1 in f32 beyond |x| = 15; clamping keeps
// backends that build tanh from exp away from inf/inf.
fn capped(v: V) -> V {
    if (has(CE_SOFTCAP)) {
        return p.f2 * tanh(clamp(v / p.f2, V(-15.0), V(15.0)));
    }
    return v;
}

// A row's label as the kernels use it. `lo`/`hi` are the label's two words as an i64 (for the error),
// `ignored` when it equals ignore_index (p.ignore_index and p.ignore_hi, its two words), `bad` when it
// is neither a class in [0, N) nor ignored, or does not fit in i32 (refused on the host everywhere;
// only device-only labels can be bad: their rows get NaN, see ce_denom), with `classes` = N. `cls`
// (the class) is 0 unless usable.
struct Label {
    cls: u32,
    ignored: bool,
    bad: bool,
    lo: i32,
    hi: i32,
}

fn label_at(row: u32, classes: u32) -> Label {
    var l: Label;
    if (has(CE_LABELS_I64)) {
        l.lo = labels[2u * row];
        l.hi = labels[2u * row + 1u];
    } else {
        l.lo = labels[row];
        // i32: the sign's extension; u32: 0 (a u32 past i32 then does not fit).
        l.hi = select(l.lo >> 31u, 0, has(CE_LABELS_U32));
    }
    let fits = l.hi == (l.lo >> 31u);
    l.ignored = fits && l.lo == p.ignore_index && l.hi == p.ignore_hi;
    l.bad = !l.ignored && (!fits || l.lo < 0 || u32(l.lo) >= classes);
    l.cls = select(u32(l.lo), 0u, l.ignored || l.bad);
    return l;
}
