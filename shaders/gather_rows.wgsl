// gather_rows: a minibatch by index, on the device: out[i, :] = x[idx[i], :] and
// out_labels[i] = labels[idx[i]].
// Reads: x (whole, n_all × cols), labels (whole, n_all), idx (whole; this chunk's rows start at row0).
// Writes: out (batch × cols, chunk-bound), out_labels (whole).
// Dispatch: as the row kernels over the batch rows; one pass.

#import prelude: WG
#import common: p, lane_of, row_of, walk

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_labels: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = row_of(lid, wid);
    if (row >= p.rows) {
        return;
    }
    let lane = lane_of(lid);
    let src = idx[p.row0 + row];
    let base = p.shift + row * p.cols;
    let src_base = src * p.cols;
    let wk = walk(lane);
    for (var j = wk.start; j < wk.end; j += wk.step) {
        out[base + j] = x[src_base + j];
    }
    if (lane == 0u) {
        out_labels[p.row0 + row] = labels[src];
    }
}
