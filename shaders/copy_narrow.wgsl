// copy_narrow: copy_rows for narrow rows (a template, see narrow.wgsl): the roofline of the narrow
// kernels, walking memory as they do.

#import narrow: main
#import common: p

#matrix 1 x: read
#matrix 2 y: read_write

fn pack_main(row: u32, base: u32) {
    let xb = x_base(row);
    let yb = y_base(row);
    //#vec4s
        y_st(yb + K_u, x_ld(xb + K_u));
    //#end
}
