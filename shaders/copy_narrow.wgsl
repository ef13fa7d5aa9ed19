// copy_narrow: copy_rows for narrow rows (a template, see narrow.wgsl): the roofline of the narrow
// kernels, walking memory as they do.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = pack_row(gid);
    if (row >= p.rows) {
        return;
    }
    let base = pack_base(row);
    y[base + $ku] = x[base + $ku];
}
