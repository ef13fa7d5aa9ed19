// reduce_subgroup: in-row reductions with subgroup shuffles.
// SG is the adapter's *minimum* subgroup size: a butterfly of shuffle-xor with offsets < SG stays inside
// an aligned block of SG lanes whatever the actual subgroup size is (subgroups are taken to be
// contiguous, aligned runs of local_invocation_index, as on every driver seen). Rows wider than SG lanes
// then combine their blocks' partials from workgroup memory in a fixed order. Deterministic.
// Every invocation of the workgroup must call these.

#import prelude: WG, SG
#import common: p

var<workgroup> red: array<vec4<f32>, WG / SG>;

fn seg_max(v: f32, lid: u32) -> f32 {
    var r = v;
    for (var o = min(p.tpr, SG) >> 1u; o > 0u; o = o >> 1u) {
        r = max(r, subgroupShuffleXor(r, o));
    }
    if (p.tpr > SG) {
        if ((lid & (SG - 1u)) == 0u) {
            red[lid / SG].x = r;
        }
        workgroupBarrier();
        let first = (lid & ~(p.tpr - 1u)) / SG;
        r = red[first].x;
        for (var k = 1u; k < p.tpr / SG; k++) {
            r = max(r, red[first + k].x);
        }
        workgroupBarrier();
    }
    return r;
}

fn seg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    var r = v;
    for (var o = min(p.tpr, SG) >> 1u; o > 0u; o = o >> 1u) {
        r = r + subgroupShuffleXor(r, o);
    }
    if (p.tpr > SG) {
        if ((lid & (SG - 1u)) == 0u) {
            red[lid / SG] = r;
        }
        workgroupBarrier();
        let first = (lid & ~(p.tpr - 1u)) / SG;
        r = red[first];
        for (var k = 1u; k < p.tpr / SG; k++) {
            r = r + red[first + k];
        }
        workgroupBarrier();
    }
    return r;
}
