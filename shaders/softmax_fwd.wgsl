// softmax_fwd: softmax, log-softmax or log-sum-exp of each row.
// Reads: x (n×N, chunk-bound). Writes: y (n×N, chunk-bound; untouched in mode 2), lse (n, whole).
// Vectorised: V is f32 or vec4<f32> (vec1.wgsl / vec4.wgsl), chosen by the host from N. x and y are
// stored as f32, f16 or bf16 (`#matrix`, src/shaders/storage.rs), each on its own; f32 inside.
// Dispatch: ceil(rows / (WG / tpr)) workgroups per chunk. Two passes over the row: an online
// (max, Σexp) pass, then the normalising pass (from workgroup memory when ROW_CACHED). MODE: 0 softmax, 1 log-softmax, 2 log-sum-exp only.
// Edge cases (as PyTorch): lse = ±inf for a row whose max is ±inf; softmax and log-softmax of such a
// row (an all -inf row included) are NaN; any NaN makes the row NaN.

#import prelude: WG, UNROLL, ROW_CACHE, MODE_LSE, MODE_LOG_SOFTMAX
#import vector: V, VW
#import common: p, MODE, lane_of, row_of, walk_n, cached, cache_slot, MaxSum, online_push_v, row_max_sum, is_inf

#matrix 1 x: read
#matrix 2 y: read_write
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;

var<workgroup> row_cache: array<V, ROW_CACHE / VW>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lane_of(lid);
    let row = row_of(lid, wid);
    let live = row < p.rows;
    let xb = x_base(row);
    let yb = y_base(row);
    let w = walk_n(lane, p.cols / VW);
    let slot = cache_slot(lid);

    var acc = MaxSum(p.ninf, 0.0);
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    let v = x_ld(xb + j);
                    if (cached()) {
                        row_cache[slot + j] = v;
                    }
                    acc = online_push_v(acc, v);
                }
            }
        }
    }
    let t = row_max_sum(acc, lid);
    if (!live) {
        return;
    }
    let log_s = log(t.s);
    if (lane == 0u) {
        lse[p.row0 + row] = t.m + log_s;
    }
    if (MODE == MODE_LSE) {
        return;
    }
    // z - lse computed as (z - M) - log Σ: exact-ish for huge logits, where lse itself rounds.
    let m = V(select(t.m, p.nan, is_inf(t.m)));
    for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
        for (var u = 0u; u < UNROLL; u++) {
            let j = j0 + u * w.step;
            if (j < w.end) {
                var v: V;
                if (cached()) {
                    v = row_cache[slot + j];
                } else {
                    v = x_ld(xb + j);
                }
                let ls = (v - m) - V(log_s);
                y_st(yb + j, select(exp(ls), ls, MODE == MODE_LOG_SOFTMAX));
            }
        }
    }
}
