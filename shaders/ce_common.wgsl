// ce_common: what ce_fwd_bwd and ce_narrow share: the option flags and soft-capping.

#import prelude: CE_SOFTCAP
#import vector: V
#import common: p, FLAGS

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

