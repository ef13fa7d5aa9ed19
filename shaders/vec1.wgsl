// vec1: the scalar element type of the vectorisable row kernels (rows whose length is not a multiple
// of 4). Same names as vec4.wgsl.
alias V = f32;
alias VU = u32;
const VW: u32 = 1u;

fn hmax(v: V) -> f32 {
    return v;
}

fn hsum(v: V) -> f32 {
    return v;
}

fn comp(v: V, i: u32) -> f32 {
    return v;
}

// Index of the first component equal to `m` (0 for a scalar).
fn hfirst(v: V, m: f32) -> u32 {
    return 0u;
}

// Element indices of the vector at vector index j.
fn vidx(j: u32) -> VU {
    return j;
}
