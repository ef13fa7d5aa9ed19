// ce_reduce: the batch-level numbers of cross-entropy, after ce_fwd_bwd, on the device (no host
// round-trip), adding in a fixed order (deterministic; no atomics). MODE bit 0 (FINISH): this launch
// writes the results; bit 1 (FROM_PARTIALS): it adds partials rather than batch rows.
// A batch of at most one slice: one launch (FINISH), one "row" of p.cols = n batch rows.
// Larger batches, two launches: first a row launch over slices, "row" g being the p.cols = S batch rows
//   g·S … g·S + S − 1 (fewer in the last slice: p.total is the batch size n), each slice's sums going
//   to partial[g]; then one "row" of p.cols = G partials (FINISH | FROM_PARTIALS).
// FINISH writes stats[0] = Σ row losses (÷ p.f1, the mean's denominator from the host, for mean; with
//   CE_DEVICE_DENOM ÷ stats[1], written there by ce_denom),
//   stats[1] = p.f1, stats[2] = accuracy over rows with a label, stats[3] = how many such rows.
// Reads: row_out (n×4), partial (G×4). Writes: partial, stats (4).
// An all-ignored batch gives a mean of 0/0 = NaN, as PyTorch.

#import prelude: WG, UNROLL, CE_MEAN, CE_DEVICE_DENOM, MODE_FINISH, MODE_FROM_PARTIALS
#import common: p, MODE, FLAGS, lane_of, row_of, walk
#import reduce: seg_sum4


@group(0) @binding(1) var<storage, read> row_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>;

// What batch row i adds to the sums: its loss, and whether it has a label and was right.
fn term(i: u32) -> vec4<f32> {
    let c = row_out[4u * i + 3u];
    return vec4<f32>(row_out[4u * i], 0.0, select(0.0, 1.0, c == 1.0), select(0.0, 1.0, c >= 0.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let finish = (MODE & MODE_FINISH) != 0u;
    let from_partials = (MODE & MODE_FROM_PARTIALS) != 0u;
    let lane = lane_of(lid);
    let w = walk(lane);
    let g = row_of(lid, wid);
    let live = g < p.rows;
    let first = (p.row0 + g) * p.cols;
    var acc = vec4<f32>(0.0);
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    if (from_partials) {
                        acc += partial[j];
                    } else if (first + j < p.total) {
                        acc += term(first + j);
                    }
                }
            }
        }
    }
    let t = seg_sum4(acc, lid);
    if (!live || lane != 0u) {
        return;
    }
    if (!finish) {
        partial[p.row0 + g] = t;
        return;
    }
    let mean = (FLAGS & CE_MEAN) != 0u;
    // Device-only labels: ce_denom wrote the denominator into stats[1] before the rows ran.
    let den = select(p.f1, stats[1], (FLAGS & CE_DEVICE_DENOM) != 0u);
    stats[0] = select(t.x, t.x / den, mean);
    stats[1] = den;
    stats[2] = t.z / t.w;
    stats[3] = t.w;
}
