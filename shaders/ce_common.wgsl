// ce_common: what ce_fwd_bwd and ce_narrow share: the option flags and soft-capping.

// Keep in sync with `flags` in src/cross_entropy.rs.
const CE_LABELS: u32 = 1u;
const CE_WEIGHT: u32 = 2u;
const CE_GRAD: u32 = 4u;
const CE_IN_PLACE: u32 = 8u;
const CE_ROW_UPSTREAM: u32 = 16u;
const CE_SOFTCAP: u32 = 32u;
const CE_PASS2: u32 = 64u;

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

