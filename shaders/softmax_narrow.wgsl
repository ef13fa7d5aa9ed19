// softmax_narrow: softmax_fwd for narrow rows (a template: layout and syntax in narrow.wgsl). One read,
// one exp and one write per element. Same bindings, modes, outputs and edge cases as softmax_fwd.

#import prelude: MODE_LSE, MODE_LOG_SOFTMAX
#import narrow: main
#import common: p, MODE, exp_rel, is_inf

#matrix 1 x: read
#matrix 2 y: read_write
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;

fn pack_main(row: u32, base: u32) {
    let xb = x_base(row);
    let yb = y_base(row);
    //#vec4s
        var v_K = x_ld(xb + K_u);
    //#end
    //#rows
    {
        var m = p.ninf;
        //#columns
            m = max(m, v_E);
        //#end
        var s = 0.0;
        //#columns
            s += exp_rel(v_E, m);
        //#end
        let log_s = log(s);
        lse[p.row0 + row + I_u] = m + log_s;
        let mn = select(m, p.nan, is_inf(m));
        //#columns
            v_E = select(exp((v_E - mn) - log_s), (v_E - mn) - log_s, MODE == MODE_LOG_SOFTMAX);
        //#end
    }
    //#end
    if (MODE == MODE_LSE) {
        return;
    }
    //#vec4s
        y_st(yb + K_u, v_K);
    //#end
}
