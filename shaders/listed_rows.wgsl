// listed_rows: the rows that count, listed on the device, for fused linear cross-entropy with
// device-only labels: no host round trip and no atomics, so the same list every run.
// `list` holds the count in word 0 and the listed rows' batch indices from word 4 (idx[k] = list[4 + k]).
// MODE_LIST (one row launch of one row whose elements are the n labels: p.cols = n, p.classes = N):
//   the row's p.tpr lanes each own a contiguous stretch of ceil(n / tpr) labels. Pass 1 counts each
//   stretch's rows whose label is not ignore_index (a bad label counts as kept: ce_denom reports it);
//   an inclusive scan over the workgroup (Hillis–Steele, log2(WG) steps, integers) gives each stretch's
//   first position; pass 2 writes a stable partition: idx[0 .. count) the kept rows in batch order,
//   then idx[count .. n) the ignored rows in batch order. Then list[0] = count. Loop iterations per
//   invocation: 2·ceil(n / tpr) + log2(WG), checked against the loop cap by the host.
// MODE_GATHER (rows r of p.cols u32 words): dst[r, :] = src[idx[p.total + p.row0 + r], :] (X rows,
//   the labels' words, an upstream), for every r (past the count, the ignored rows). `src_words` is bound
//   from an aligned start, its matrix p.classes words in; `dst_words` by rows (p.shift).
// MODE_SCATTER: dst[idx[k], :] = src[r, :] for k = p.total + p.row0 + r < count, nothing past it (dX
//   rows back to their batch rows); `src_words` by rows (p.shift), `dst_words` from an aligned start, p.classes in.
// Words are copied as u32, so every bit pattern (an i64 label's words, NaN payloads) is kept.
// Dispatch: one workgroup for MODE_LIST; as the row kernels over the chunk's rows otherwise.

#import prelude: WG, MODE_LIST, MODE_GATHER, MODE_SCATTER
#import common: p, MODE, lane_of, row_of, walk
#import ce_common: label_at

@group(0) @binding(1) var<storage, read_write> list: array<u32>;
@group(0) @binding(2) var<storage, read> src_words: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst_words: array<u32>;

var<workgroup> sums: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (MODE == MODE_LIST) {
        list_rows(lid);
        return;
    }
    let row = row_of(lid, wid);
    let k = p.total + p.row0 + row;
    let wk = walk(lane_of(lid));
    if (MODE == MODE_GATHER && row < p.rows) {
        let src = p.classes + list[4u + k] * p.cols;
        let dst = p.shift + row * p.cols;
        for (var j = wk.start; j < wk.end; j += wk.step) {
            dst_words[dst + j] = src_words[src + j];
        }
    }
    if (MODE == MODE_SCATTER && row < p.rows && k < list[0]) {
        let src = p.shift + row * p.cols;
        let dst = p.classes + list[4u + k] * p.cols;
        for (var j = wk.start; j < wk.end; j += wk.step) {
            dst_words[dst + j] = src_words[src + j];
        }
    }
}

fn list_rows(lid: u32) {
    // One row, so one workgroup: its first p.tpr invocations are the row's lanes.
    let n = p.cols;
    let stretch = (n + p.tpr - 1u) / p.tpr;
    let first = min(lid * stretch, n);
    let end = select(first, min(first + stretch, n), lid < p.tpr);
    var kept = 0u;
    for (var r = first; r < end; r++) {
        if (!label_at(r, p.classes).ignored) {
            kept++;
        }
    }
    sums[lid] = kept;
    workgroupBarrier();
    for (var s = 1u; s < WG; s <<= 1u) {
        var v = sums[lid];
        if (lid >= s) {
            v += sums[lid - s];
        }
        workgroupBarrier();
        sums[lid] = v;
        workgroupBarrier();
    }
    let count = sums[WG - 1u];
    // Kept rows before this stretch, and ignored ones (first − kept_before), placed after the count.
    var at_kept = sums[lid] - kept;
    var at_ignored = count + first - at_kept;
    for (var r = first; r < end; r++) {
        if (!label_at(r, p.classes).ignored) {
            list[4u + at_kept] = r;
            at_kept++;
        } else {
            list[4u + at_ignored] = r;
            at_ignored++;
        }
    }
    if (lid == 0u) {
        list[0] = count;
    }
}
