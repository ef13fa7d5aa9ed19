// copy_narrow: copy_rows for narrow rows (a template, see narrow.wgsl): the roofline of the narrow
// kernels, walking memory as they do.

#import narrow: main
#import common: p

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

fn pack_main(row: u32, base: u32) {
    //#vec4s
        y[base + K_u] = x[base + K_u];
    //#end
}
