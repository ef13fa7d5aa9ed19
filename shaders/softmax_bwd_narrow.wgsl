// softmax_bwd_narrow: softmax_bwd for narrow rows (a template: layout and syntax in narrow.wgsl). One
// read of y and of g and one write per element, the row's dot product (or sum) in column order. Same
// bindings, modes and outputs as softmax_bwd.

#import prelude: MODE_BWD_LOG_SOFTMAX
#import narrow: main
#import common: p, MODE

#matrix 1 y: read
#matrix 2 g: read
#matrix 3 dz: read_write

fn pack_main(row: u32, base: u32) {
    let yb = y_base(row);
    let gb = g_base(row);
    let db = dz_base(row);
    //#vec4s
        var v_K = y_ld(yb + K_u);
    //#end
    //#vec4s
        let g_K = g_ld(gb + K_u);
    //#end
    //#rows
    {
        var d = 0.0;
        //#columns
            d += select(g_E * v_E, g_E, MODE == MODE_BWD_LOG_SOFTMAX);
        //#end
        //#columns
            v_E = select(v_E * (g_E - d), g_E - exp(v_E) * d, MODE == MODE_BWD_LOG_SOFTMAX);
        //#end
    }
    //#end
    //#vec4s
        dz_st(db + K_u, v_K);
    //#end
}
