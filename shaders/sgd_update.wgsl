// sgd_update: one step of SGD with momentum and L2, in place, for a parameter matrix (rows × cols).
// Reads: g (gradient). Reads and writes: w (parameter), v (velocity). All chunk-bound, walked as rows.
//   f0 = learning rate, f1 = momentum μ, f2 = L2 coefficient λ:
//   v ← μ·v + (g + λ·w);  w ← w − lr·v      (with μ = 0 this is plain SGD; v then holds the step)
// Dispatch: as the row kernels; one pass.

#import prelude: WG
#import common: p, lane_of, row_of, walk

@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = row_of(lid, wid);
    if (row >= p.rows) {
        return;
    }
    let base = p.shift + row * p.cols;
    let wk = walk(lane_of(lid));
    for (var j = wk.start; j < wk.end; j += wk.step) {
        let o = base + j;
        let step = p.f1 * v[o] + (g[o] + p.f2 * w[o]);
        v[o] = step;
        w[o] = w[o] - p.f0 * step;
    }
}
