// reduce_workgroup: in-row reductions through workgroup memory, for adapters without subgroups.
// The tpr lanes of a row reduce as a tree, one barrier per level; the order is fixed, so results are
// identical run to run. Every invocation of the workgroup must call these (they contain barriers).

#import prelude: WG
#import common: p

var<workgroup> red: array<vec4<f32>, WG>;

fn seg_base(lid: u32) -> u32 {
    return lid & ~(p.tpr - 1u);
}

fn seg_max(v: f32, lid: u32) -> f32 {
    red[lid].x = v;
    workgroupBarrier();
    for (var s = p.tpr >> 1u; s > 0u; s = s >> 1u) {
        if ((lid & (p.tpr - 1u)) < s) {
            red[lid].x = max(red[lid].x, red[lid + s].x);
        }
        workgroupBarrier();
    }
    let r = red[seg_base(lid)].x;
    workgroupBarrier();
    return r;
}

fn seg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = p.tpr >> 1u; s > 0u; s = s >> 1u) {
        if ((lid & (p.tpr - 1u)) < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[seg_base(lid)];
    workgroupBarrier();
    return r;
}
