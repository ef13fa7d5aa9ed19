// ce_reduce: the batch-level numbers of cross-entropy, on the device (no host round-trip).
// Dispatch: one workgroup; the n rows are walked as a single "row" of p.cols = n elements.
// mode 0 (before ce_fwd_bwd): the mean's denominator Σ w[y_i] over rows not ignored (n for probability
//   targets) into stats[1], and the gradient scale into gscale[0]: f0 / denominator for mean, f0 for
//   sum and none (f0 = the upstream gradient).
// mode 1 (after ce_fwd_bwd): stats[0] = Σ row losses (÷ stats[1] for mean), stats[2] = accuracy over
//   rows with a label, stats[3] = how many such rows.
// Reads: labels (n), weight (N), row_out (n×4). Writes: stats (4), gscale (1).
// An all-ignored batch gives a mean of 0/0 = NaN, as PyTorch.

const CE_LABELS: u32 = 1u;
const CE_WEIGHT: u32 = 2u;
const CE_MEAN: u32 = 128u;

@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> row_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> gscale: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lane_of(lid);
    let w = walk(lane);
    let live = row_of(lid, wid) == 0u;
    var acc = vec4<f32>(0.0);
    if (live) {
        for (var i = w.start; i < w.end; i += w.step) {
            if (MODE == 0u) {
                var w = 1.0;
                if ((FLAGS & CE_LABELS) != 0u) {
                    let l = labels[i];
                    if (l == p.ignore_index) {
                        w = 0.0;
                    } else if ((FLAGS & CE_WEIGHT) != 0u) {
                        w = weight[u32(l)];
                    }
                }
                acc.x += w;
            } else {
                let c = row_out[4u * i + 3u];
                acc += vec4<f32>(row_out[4u * i], 0.0, select(0.0, 1.0, c == 1.0), select(0.0, 1.0, c >= 0.0));
            }
        }
    }
    let t = seg_sum4(acc, lid);
    if (!live || lane != 0u) {
        return;
    }
    let mean = (FLAGS & CE_MEAN) != 0u;
    if (MODE == 0u) {
        stats[1] = t.x;
        gscale[0] = select(p.f0, p.f0 / t.x, mean);
    } else {
        stats[0] = select(t.x, t.x / stats[1], mean);
        stats[2] = t.z / t.w;
        stats[3] = t.w;
    }
}
