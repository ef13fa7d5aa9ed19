// info_rows: information-theory numbers per row, Q = softmax(z).
// Reads: z (n×N logits, chunk-bound), targets P (n×N, chunk-bound; a dummy without INFO_TARGETS).
// Writes: out (n×4, whole): entropy H(Q), cross-entropy H(P, Q), KL(P‖Q), 0; times f0 (1 for nats,
//         1/ln 2 for bits). Without targets, columns 1 and 2 are 0.
// z and targets may be f32, f16 or bf16 (`#matrix`); f32 inside.
// Dispatch: as softmax_fwd. Pass 1: online max and Σexp; pass 2: the sums, with 0·log 0 = 0 (a term
// whose probability is 0 contributes nothing, so −inf masks are fine).

#import prelude: WG, UNROLL, INFO_TARGETS
#import common: p, FLAGS, lane_of, row_of, walk, MaxSum, online_push, row_max_sum, is_inf
#import reduce: seg_sum4


#matrix 1 z: read
#matrix 2 targets: read
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lane_of(lid);
    let w = walk(lane);
    let row = row_of(lid, wid);
    let live = row < p.rows;
    let zb = z_base(row);
    let tb = targets_base(row);
    let with_targets = (FLAGS & INFO_TARGETS) != 0u;

    var acc = MaxSum(p.ninf, 0.0);
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    acc = online_push(acc, z_ld(zb + j));
                }
            }
        }
    }
    let t = row_max_sum(acc, lid);
    let log_s = log(t.s);
    let m_norm = select(t.m, p.nan, is_inf(t.m));

    var sums = vec4<f32>(0.0);
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    let lq = (z_ld(zb + j) - m_norm) - log_s;
                    let q = exp(lq);
                    if (!(q == 0.0)) {
                        sums.x -= q * lq;
                    }
                    if (with_targets) {
                        let pj = targets_ld(tb + j);
                        if (!(pj == 0.0)) {
                            sums.y -= pj * lq;
                            sums.z += pj * (log(pj) - lq);
                        }
                    }
                }
            }
        }
    }
    let r = seg_sum4(sums, lid) * p.f0;
    if (live && lane == 0u) {
        let o = 4u * (p.row0 + row);
        out[o] = r.x;
        out[o + 1u] = r.y;
        out[o + 2u] = r.z;
        out[o + 3u] = 0.0;
    }
}
