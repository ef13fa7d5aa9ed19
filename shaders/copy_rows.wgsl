// copy_rows: y = x, walked exactly as the (vectorised) row kernels walk memory. It is the roofline of
// the memory-bound kernels: benchmarks report them as a percentage of its bandwidth on the same adapter.
// Reads: x (n×N, chunk-bound). Writes: y (n×N, chunk-bound). Dispatch: as softmax_fwd; one pass.
// Either may be f32, f16 or bf16 (`#matrix`): a copy between types rounds as every kernel's store.

#import prelude: WG, UNROLL
#import vector: V, VW
#import common: p, lane_of, row_of, walk_n

#matrix 1 x: read
#matrix 2 y: read_write

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = row_of(lid, wid);
    if (row >= p.rows) {
        return;
    }
    let xb = x_base(row);
    let yb = y_base(row);
    let w = walk_n(lane_of(lid), p.cols / VW);
    for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
        for (var u = 0u; u < UNROLL; u++) {
            let j = j0 + u * w.step;
            if (j < w.end) {
                y_st(yb + j, x_ld(xb + j));
            }
        }
    }
}
