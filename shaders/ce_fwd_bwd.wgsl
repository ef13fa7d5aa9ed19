// ce_fwd_bwd: softmax cross-entropy per row, fused with its gradient.
// Reads: z (n×N logits, chunk-bound), targets (n×N probabilities, chunk-bound) or labels (n; i32, u32
//        or i64: ce_common's label_at), weight (N class weights), gscale (one gradient scale per row,
//        read with CE_ROW_UPSTREAM; with CE_DEVICE_DENOM the batch numbers of ce_denom, the scale at
//        [4]; otherwise the scale is p.f4: the upstream gradient, ÷ the mean's denominator for mean).
// Writes: row_out (n×4: loss, lse, argmax, correct), and the gradient ∂L/∂z into grad (n×N,
//         chunk-bound), or over z itself with CE_IN_PLACE. Unused bindings get a 16-byte stand-in.
// Vectorised: V is f32 or vec4<f32> (vec1.wgsl / vec4.wgsl), chosen by the host from N. z, grad and
// targets are stored as f32, f16 or bf16 (`#matrix`, src/shaders/storage.rs); f32 inside. In place,
// the gradient takes z's type.
// Dispatch: as softmax_fwd. Pass 1 reads z (and targets): online max and Σexp, argmax, Σ w·t.
//           Pass 2 (gradient, smoothing or probability targets) reads z again (from workgroup memory
//           when ROW_CACHED), writes the gradient and
//           accumulates the loss terms that need the final log-sum-exp.
// Semantics: torch.nn.functional.cross_entropy (weight, ignore_index, label_smoothing), with logit
// soft-capping c·tanh(z/c) applied first and z-loss (f1 · lse²) added to each row that is not ignored.
// row_out[3] (correct) is 1 or 0, and −1 for an ignored or bad row or probability targets.
// Ignored rows: loss 0 and gradient exactly 0. A bad device-only label (ce_common's label_at): loss
// and gradient NaN, never a plausible number; ce_denom records the first such row. Terms with a zero target (or zero weight) contribute 0
// (PyTorch gives 0·(−inf) = NaN there for probability targets over masked logits).
// Flags and soft-capping: ce_common.wgsl.

#import prelude: WG, UNROLL, ROW_CACHE, CE_LABELS, CE_WEIGHT, CE_GRAD, CE_IN_PLACE, CE_ROW_UPSTREAM, CE_PASS2, CE_DEVICE_DENOM
#import vector: V, VU, VW, comp, hfirst, hmax, hsum, vidx
#import common: p, lane_of, row_of, walk_n, cached, cache_slot, exp_rel, is_inf, MaxSum, online_push_v
#import reduce: seg_max, seg_sum4
#import ce_common: has, capped, label_at, labels

#matrix 1 z: read_write
#matrix 2 grad: read_write
#matrix 3 targets: read
@group(0) @binding(5) var<storage, read> weight: array<V>;
@group(0) @binding(6) var<storage, read> gscale: array<f32>;
@group(0) @binding(7) var<storage, read_write> row_out: array<f32>;

var<workgroup> row_cache: array<V, ROW_CACHE / VW>;

// Class weights of the vector at vector index j.
fn w_v(j: u32) -> V {
    if (has(CE_WEIGHT)) {
        return weight[j];
    }
    return V(1.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lane_of(lid);
    let row = row_of(lid, wid);
    let live = row < p.rows;
    let zb = z_base(row);
    let gb = grad_base(row);
    let tb = targets_base(row);
    let w = walk_n(lane, p.cols / VW);
    let slot = cache_slot(lid);
    let grow = p.row0 + row;
    let labels_mode = has(CE_LABELS);
    let eps = p.f0;
    let eps_n = eps / f32(p.cols);

    var label = 0u;
    var ignored = false;
    var bad = false;
    if (live && labels_mode) {
        let l = label_at(grow, p.cols);
        ignored = l.ignored;
        bad = l.bad;
        label = l.cls;
    }

    // Pass 1: online (max, Σexp), the lane's first maximal index, and Σ w·t for probability targets.
    var acc = MaxSum(p.ninf, 0.0);
    var best = p.ninf;
    var best_j = 0xffffffffu;
    var tw = 0.0;
    if (live) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    let raw = z_ld(zb + j);
                    if (cached()) {
                        row_cache[slot + j] = raw;
                    }
                    let v = capped(raw);
                    let hm = hmax(v);
                    if (hm > best) {
                        best = hm;
                        best_j = VW * j + hfirst(v, hm);
                    }
                    acc = online_push_v(acc, v);
                    if (!labels_mode) {
                        tw += hsum(w_v(j) * ((1.0 - eps) * targets_ld(tb + j) + V(eps_n)));
                    }
                }
            }
        }
    }
    let m = seg_max(acc.m, lid);
    let sums = seg_sum4(vec4<f32>(acc.s * exp_rel(acc.m, m), tw, 0.0, 0.0), lid);
    let cand = select(-4294967296.0, -f32(best_j), live && best == m && best_j != 0xffffffffu);
    // No candidate (an all −inf row, or a NaN maximum): class 0, as the reference and PyTorch.
    let best_neg = seg_max(cand, lid);
    let first = select(0u, u32(min(-best_neg, f32(p.cols - 1u))), best_neg > -4294967296.0);

    let log_s = log(sums.x);
    let lse = m + log_s;
    // log p̂_j = (z_j − M) − log Σ; a row whose max is infinite has no softmax (NaN, as PyTorch).
    let m_norm = select(m, p.nan, is_inf(m));
    let keep = live && !ignored && !bad;

    var w_y = 0.0;
    var z_y = 0.0;
    if (keep && labels_mode) {
        w_y = comp(w_v(label / VW), label % VW);
        z_y = comp(capped(z_ld(zb + label / VW)), label % VW); // read before pass 2 may overwrite z
    }
    // ∂loss/∂z_j = coef · p̂_j − direct_j, with direct_j the (smoothed, weighted) target.
    var coef = sums.y;
    if (labels_mode) {
        coef = (1.0 - eps) * w_y + eps_n * p.f3; // f3 = Σ_j w_j
    }
    coef += 2.0 * p.f1 * lse;
    var up = 0.0;
    if (live) {
        up = select(select(p.f4, gscale[4], has(CE_DEVICE_DENOM)), gscale[grow], has(CE_ROW_UPSTREAM));
    }
    var cap_inv = 0.0;
    if (has(CE_SOFTCAP)) {
        cap_inv = 1.0 / p.f2;
    }

    // Pass 2: the gradient, and the loss terms that need the final log-sum-exp.
    var loss_acc = 0.0;
    if (live && has(CE_PASS2)) {
        for (var j0 = w.start; j0 < w.end; j0 += UNROLL * w.step) {
            for (var u = 0u; u < UNROLL; u++) {
                let j = j0 + u * w.step;
                if (j < w.end) {
                    var raw: V;
                    if (cached()) {
                        raw = row_cache[slot + j];
                    } else {
                        raw = z_ld(zb + j);
                    }
                    let v = capped(raw);
                    let lp = (v - V(m_norm)) - V(log_s);
                    var direct = V(0.0);
                    if (labels_mode) {
                        let wj = w_v(j);
                        direct = eps_n * wj + select(V(0.0), V((1.0 - eps) * w_y), vidx(j) == VU(label));
                        if (eps > 0.0) {
                            loss_acc += hsum(select(V(0.0), wj * (-lp), wj != V(0.0)));
                        }
                    } else {
                        direct = w_v(j) * ((1.0 - eps) * targets_ld(tb + j) + V(eps_n));
                        loss_acc += hsum(select(V(0.0), direct * (-lp), direct != V(0.0)));
                    }
                    if (has(CE_GRAD)) {
                        var gj = (coef * exp(lp) - direct) * up;
                        if (has(CE_SOFTCAP)) {
                            let t = v * cap_inv;
                            gj *= V(1.0) - t * t;
                        }
                        gj = select(select(V(0.0), gj, keep), V(p.nan), bad);
                        if (has(CE_IN_PLACE)) {
                            z_st(zb + j, gj);
                        } else {
                            grad_st(gb + j, gj);
                        }
                    }
                }
            }
        }
    }
    let lsum = seg_sum4(vec4<f32>(loss_acc, 0.0, 0.0, 0.0), lid).x;
    if (!live || lane != 0u) {
        return;
    }
    var loss = 0.0;
    if (labels_mode) {
        loss = (1.0 - eps) * w_y * (-((z_y - m_norm) - log_s)) + eps_n * lsum;
    } else {
        loss = lsum;
    }
    loss += p.f1 * lse * lse;
    var correct = -1.0;
    if (labels_mode && !ignored && !bad) {
        correct = select(0.0, 1.0, first == label);
    }
    let o = 4u * grow;
    row_out[o] = select(select(0.0, loss, keep), p.nan, bad);
    row_out[o + 1u] = lse;
    row_out[o + 2u] = f32(first);
    row_out[o + 3u] = correct;
}
