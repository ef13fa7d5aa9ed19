// softmax_bwd: the backward of softmax or log-softmax, from the forward's output and the upstream
// gradient; never builds the N×N Jacobian.
// Reads: y (n×N, the forward's output p̂ or log p̂), g (n×N, dL/dy). Writes: dz (n×N). All chunk-bound.
// Vectorised: V is f32 or vec4<f32> (vec1.wgsl / vec4.wgsl), chosen by the host from N. Each of y, g
// and dz is stored as f32, f16 or bf16 (`#matrix`, src/shaders/storage.rs); f32 inside.
// Dispatch: as softmax_fwd. MODE 0 (softmax):     dz = p̂ ⊙ (g − ⟨g, p̂⟩)
//                           MODE 1 (log-softmax): dz = g − exp(y) · Σ g
// Two passes: the row's dot product (or sum), then the write.

#import prelude: WG, UNROLL, MODE_BWD_LOG_SOFTMAX
#import vector: V, VW, hsum
#import common: p, MODE, lane_of, row_of, walk_n
#import reduce: seg_sum4

#matrix 1 y: read
#matrix 2 g: read
#matrix 3 dz: read_write

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lane_of(lid);
    let row = row_of(lid, wid);
    let live = row < p.rows;
    let yb = y_base(row);
    let gb = g_base(row);
    let db = dz_base(row);
    let w = walk_n(lane, p.cols / VW);
    let log_mode = MODE == MODE_BWD_LOG_SOFTMAX;

    var acc = 0.0;
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    let gj = g_ld(gb + j);
                    acc += hsum(select(gj * y_ld(yb + j), gj, log_mode));
                }
            }
        }
    }
    let dot = seg_sum4(vec4<f32>(acc, 0.0, 0.0, 0.0), lid).x;
    if (!live) {
        return;
    }
    for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
        for (var u = 0u; u < UNROLL; u++) {
            let j = j0 + u * w.step;
            if (j < w.end) {
                let yj = y_ld(yb + j);
                let gj = g_ld(gb + j);
                dz_st(db + j, select(yj * (gj - V(dot)), gj - exp(yj) * dot, log_mode));
            }
        }
    }
}
