// matmul_reduce: the second step of a split-K matmul (matmul.wgsl): C[e] = Σ_s part[s·count + e], the
// S partial matrices added in slice order (deterministic), plus C's old value when MM_ACCUM (a later chunk
// of a reduction split at the loop cap). One invocation per element of C.
// Reads: part (S × count). Writes: c (count, from `c_off`). Dispatch: (ceil(count / WG), 1, 1).

#import prelude: WG, MM_ACCUM

// Keep in sync with `ReduceParams` in src/matmul.rs.
struct RedParams {
    count: u32,     // elements of C
    slices: u32,    // S
    c_off: u32,
    pad0: u32,
}

override FLAGS: u32 = 0u;

@group(0) @binding(0) var<uniform> q: RedParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    if (e >= q.count) {
        return;
    }
    var v = part[e];
    for (var s = 1u; s < q.slices; s++) {
        v += part[s * q.count + e];
    }
    if ((FLAGS & MM_ACCUM) != 0u) {
        v += c[q.c_off + e];
    }
    c[q.c_off + e] = v;
}
