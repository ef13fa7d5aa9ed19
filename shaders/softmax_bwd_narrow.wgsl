// softmax_bwd_narrow: softmax_bwd for narrow rows (a template: layout and syntax in narrow.wgsl). One
// read of y and of g and one write per element, the row's dot product (or sum) in column order. Same
// bindings, modes and outputs as softmax_bwd.

#import prelude: MODE_BWD_LOG_SOFTMAX
#import narrow: main
#import common: p, MODE

@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dz: array<vec4<f32>>;

fn pack_main(row: u32, base: u32) {
    //#vec4s
        var v_K = y[base + K_u];
    //#end
    //#vec4s
        let g_K = g[base + K_u];
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
        dz[base + K_u] = v_K;
    //#end
}
