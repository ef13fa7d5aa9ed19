// ce_denom: for labels that live only on the device, the mean's denominator of cross-entropy (Σ w[y]
// over the rows not ignored; the count without weights), exactly as the host computes it for host
// labels (exact_sum.wgsl: the same bits whatever the order), the gradient's scale, and the labels'
// check — before the rows run, with no host round trip.
// MODE 0 (accumulate), a row launch whose "row" g is the batch rows g·p.cols … (fewer in the last;
//   p.total is n): each lane sums w[y] of its rows in carry-save form, the workgroup adds its lanes'
//   sums into workgroup memory and then into acc[0..10], all through integer atomics that forward
//   their carries (exact integer sums: any interleaving gives the same total; no float atomics). A
//   bad label (ce_common's label_at) records its row: acc[10] = max(~row), so the first bad row wins.
// MODE_FINISH (one row of one element): rounds acc to f32 and writes stats[1] = the denominator,
//   stats[4] = the gradient's scale (p.f0 = grad_output, ÷ the denominator for a mean, correctly
//   rounded; NaN when a label was bad, so that every row's gradient is NaN), stats[5] = first bad
//   row + 1 (0: every label good), stats[6], stats[7] = its label's two words. ce_fwd_bwd reads the scale, ce_reduce the denominator (CE_DEVICE_DENOM).
// p.classes is N (p.cols is the block of rows). Reads: labels (binding 4), weight. Writes: acc (11 u32, zeroed by the host first), stats (1×8).

#import prelude: WG, CE_WEIGHT, CE_MEAN, MODE_FINISH
#import common: p, MODE, FLAGS, lane_of, row_of, walk
#import ce_common: has, label_at, labels, Label
#import exact_sum: CarrySave, cs_add, cs_limbs, limbs_nonzero, limbs_to_f32, div_rne

@group(0) @binding(1) var<storage, read_write> stats: array<u32>;
@group(0) @binding(2) var<storage, read_write> acc: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;

var<workgroup> wacc: array<atomic<u32>, 11>;

// v added into the workgroup's limbs (or, with to_batch, the batch's), each limb's value and then the
// incoming carry as atomic adds of their own: each add's carry is exact, so the total is, in any
// interleaving. (One function for both: WGSL passes no pointers to atomics of other address spaces.)
fn add_limbs(v: array<u32, 10>, to_batch: bool) {
    var x = v;
    var carry = 0u;
    for (var i = 0u; i < 10u; i++) {
        var c = 0u;
        for (var k = 0u; k < 2u; k++) {
            let a = select(carry, x[i], k == 0u);
            if (a != 0u) {
                var old: u32;
                if (to_batch) {
                    old = atomicAdd(&acc[i], a);
                } else {
                    old = atomicAdd(&wacc[i], a);
                }
                c += select(0u, 1u, old + a < old);
            }
        }
        carry = c;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if ((MODE & MODE_FINISH) != 0u) {
        if (lid == 0u && wid.x == 0u) {
            finish();
        }
        return;
    }
    if (lid < 11u) {
        atomicStore(&wacc[lid], 0u);
    }
    workgroupBarrier();
    let lane = lane_of(lid);
    let g = row_of(lid, wid);
    let first = (p.row0 + g) * p.cols;
    var cs: CarrySave;
    var bad_mark = 0u;
    if (g < p.rows) {
        let w = walk(lane);
        for (var j = w.start; j < w.end; j += w.step) {
            let row = first + j;
            if (row < p.total) {
                let l = label_at(row, p.classes);
                if (l.bad) {
                    bad_mark = max(bad_mark, ~row);
                } else if (!l.ignored) {
                    var wy = 1.0;
                    if (has(CE_WEIGHT)) {
                        wy = weight[l.cls];
                    }
                    cs_add(&cs, bitcast<u32>(wy));
                }
            }
        }
    }
    let mine = cs_limbs(&cs);
    if (limbs_nonzero(mine)) {
        add_limbs(mine, false);
    }
    if (bad_mark != 0u) {
        atomicMax(&wacc[10], bad_mark);
    }
    workgroupBarrier();
    if (lid == 0u) {
        var total: array<u32, 10>;
        for (var i = 0u; i < 10u; i++) {
            total[i] = atomicLoad(&wacc[i]);
        }
        if (limbs_nonzero(total)) {
            add_limbs(total, true);
        }
        let b = atomicLoad(&wacc[10]);
        if (b != 0u) {
            atomicMax(&acc[10], b);
        }
    }
}

fn finish() {
    var total: array<u32, 10>;
    for (var i = 0u; i < 10u; i++) {
        total[i] = atomicLoad(&acc[i]);
    }
    let den = limbs_to_f32(total);
    let go = bitcast<u32>(p.f0);
    stats[1] = den;
    stats[4] = select(go, div_rne(go, den), has(CE_MEAN));
    let b = atomicLoad(&acc[10]);
    stats[5] = 0u;
    stats[6] = 0u;
    stats[7] = 0u;
    if (b != 0u) {
        let row = ~b;
        let l = label_at(row, p.classes);
        // A bad label poisons the whole gradient (the scale NaN), not only its row's.
        stats[4] = 0x7fc00000u;
        stats[5] = row + 1u;
        stats[6] = bitcast<u32>(l.lo);
        stats[7] = bitcast<u32>(l.hi);
    }
}
