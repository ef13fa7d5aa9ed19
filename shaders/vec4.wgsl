// vec4: rows whose length is a multiple of 4 are read and written four floats at a time (one 16-byte
// access per lane: a quarter of the loop iterations, bounds checks and address arithmetic). Same names
// as vec1.wgsl; the host picks the file per launch.
alias V = vec4<f32>;
alias VU = vec4<u32>;
const VW: u32 = 4u;

fn hmax(v: V) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: V) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn comp(v: V, i: u32) -> f32 {
    return v[i];
}

fn hfirst(v: V, m: f32) -> u32 {
    return select(select(select(3u, 2u, v.z == m), 1u, v.y == m), 0u, v.x == m);
}

fn vidx(j: u32) -> VU {
    return VU(4u * j) + VU(0u, 1u, 2u, 3u);
}
