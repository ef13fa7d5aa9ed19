// ce_narrow: ce_fwd_bwd for narrow rows (a template: layout and syntax in narrow.wgsl). The logits
// (and probability targets) are read once as whole vec4s, the gradient written once; everything in
// between stays in registers. Same bindings (weights and row_out read as floats and vec4s), options,
// outputs and edge cases as ce_fwd_bwd.

#import prelude: CE_LABELS, CE_WEIGHT, CE_GRAD, CE_IN_PLACE, CE_ROW_UPSTREAM, CE_SOFTCAP, CE_PASS2, CE_DEVICE_DENOM
#import narrow: main
#import common: p, exp_rel, is_inf
#import ce_common: has, capped, label_at, labels

#matrix 1 z: read_write
#matrix 2 grad: read_write
#matrix 3 targets: read
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> gscale: array<f32>;
@group(0) @binding(7) var<storage, read_write> row_out: array<vec4<f32>>;

// Class weight of column c.
fn w_c(c: u32) -> f32 {
    if (has(CE_WEIGHT)) {
        return weight[c];
    }
    return 1.0;
}

fn pack_main(row: u32, base: u32) {
    let zb = z_base(row);
    let gb = grad_base(row);
    let tb = targets_base(row);
    let labels_mode = has(CE_LABELS);
    let eps = p.f0;
    let eps_n = eps / f32(NC);
    var cap_inv = 0.0;
    if (has(CE_SOFTCAP)) {
        cap_inv = 1.0 / p.f2;
    }
    //#vec4s
        var v_K = capped(z_ld(zb + K_u));
    //#end
    //#vec4s
        var t_K = vec4<f32>(0.0);
    //#end
    //#vec4s
        if (!labels_mode) { t_K = targets_ld(tb + K_u); }
    //#end
    //#vec4s
        var g_K = vec4<f32>(0.0);
    //#end
    //#columns
        let w_C = w_c(C_u);
    //#end
    //#rows
    {
        let grow = p.row0 + row + I_u;
        var label = 0u;
        var ignored = false;
        var bad = false;
        if (labels_mode) {
            let l = label_at(grow, p.cols);
            ignored = l.ignored;
            bad = l.bad;
            label = l.cls;
        }
        let keep = !ignored && !bad;
        // Max, first maximal column, Σexp and Σ w·t, as ce_fwd_bwd's pass 1.
        var m = p.ninf;
        //#columns
            m = max(m, v_E);
        //#end
        var best = p.ninf;
        var best_c = 0xffffffffu;
        //#columns
            best_c = select(best_c, C_u, v_E > best);
            best = select(best, v_E, v_E > best);
        //#end
        // No candidate (an all −inf row, or a NaN maximum): class 0, as ce_fwd_bwd.
        let first = select(0u, best_c, best == m && best_c != 0xffffffffu);
        var s = 0.0;
        //#columns
            s += exp_rel(v_E, m);
        //#end
        let log_s = log(s);
        let lse = m + log_s;
        let m_norm = select(m, p.nan, is_inf(m));
        var w_y = 0.0;
        var z_y = 0.0;
        if (keep && labels_mode) {
            //#columns
                w_y = select(w_y, w_C, label == C_u);
            //#end
            //#columns
                z_y = select(z_y, v_E, label == C_u);
            //#end
        }
        var coef = 0.0;
        if (labels_mode) {
            coef = (1.0 - eps) * w_y + eps_n * p.f3; // f3 = Σ_j w_j
        } else {
            //#columns
                coef += w_C * ((1.0 - eps) * t_E + eps_n);
            //#end
        }
        coef += 2.0 * p.f1 * lse;
        let up = select(select(p.f4, gscale[4], has(CE_DEVICE_DENOM)), gscale[grow], has(CE_ROW_UPSTREAM));
        // The gradient and the loss terms that need the log-sum-exp, as ce_fwd_bwd's pass 2.
        var loss_acc = 0.0;
        if (has(CE_PASS2)) {
            //#columns
                let lp_C = (v_E - m_norm) - log_s;
            //#end
            //#columns
                var d_C = 0.0;
            //#end
            if (labels_mode) {
                //#columns
                    d_C = eps_n * w_C + select(0.0, (1.0 - eps) * w_y, label == C_u);
                //#end
                if (eps > 0.0) {
                    //#columns
                        loss_acc += select(0.0, w_C * (-lp_C), w_C != 0.0);
                    //#end
                }
            } else {
                //#columns
                    d_C = w_C * ((1.0 - eps) * t_E + eps_n);
                //#end
                //#columns
                    loss_acc += select(0.0, d_C * (-lp_C), d_C != 0.0);
                //#end
            }
            if (has(CE_GRAD)) {
                //#columns
                    var gj_C = (coef * exp(lp_C) - d_C) * up;
                //#end
                if (has(CE_SOFTCAP)) {
                    //#columns
                        gj_C *= 1.0 - (v_E * cap_inv) * (v_E * cap_inv);
                    //#end
                }
                //#columns
                    g_E = select(select(0.0, gj_C, keep), p.nan, bad);
                //#end
            }
        }
        var loss = loss_acc;
        var correct = -1.0;
        if (labels_mode) {
            loss = (1.0 - eps) * w_y * (-((z_y - m_norm) - log_s)) + eps_n * loss_acc;
            correct = select(select(0.0, 1.0, first == label), -1.0, ignored || bad);
        }
        loss += p.f1 * lse * lse;
        row_out[grow] = vec4<f32>(select(select(0.0, loss, keep), p.nan, bad), lse, f32(first), correct);
    }
    //#end
    if (has(CE_GRAD)) {
        if (has(CE_IN_PLACE)) {
            //#vec4s
                z_st(zb + K_u, g_K);
            //#end
        } else {
            //#vec4s
                grad_st(gb + K_u, g_K);
            //#end
        }
    }
}
