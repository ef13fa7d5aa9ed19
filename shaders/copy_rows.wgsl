// copy_rows: y = x, walked exactly as the (vectorised) row kernels walk memory. It is the roofline of
// the memory-bound kernels: benchmarks report them as a percentage of its bandwidth on the same adapter.
// Reads: x (n×N, chunk-bound). Writes: y (n×N, chunk-bound). Dispatch: as softmax_fwd; one pass.

#import prelude: WG, UNROLL
#import vector: V, VW
#import common: p, lane_of, row_of, walk_n

@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = row_of(lid, wid);
    if (row >= p.rows) {
        return;
    }
    let base = (p.shift + row * p.cols) / VW;
    let w = walk_n(lane_of(lid), p.cols / VW);
    for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
        for (var u = 0u; u < UNROLL; u++) {
            let j = j0 + u * w.step;
            if (j < w.end) {
                y[base + j] = x[base + j];
            }
        }
    }
}
