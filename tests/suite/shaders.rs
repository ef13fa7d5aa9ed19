//! Every kernel's module, on both reduction paths and for every element type it stores, parsed and
//! validated by naga: a broken shader fails here with no adapter present.

use xent::ReducePath;
use xent::shaders::{Elem, Elems, Kernel, NARROW_MAX, ROW_CACHED, RowWalk, compose_kernel, source};

/// The element-type variants of a kernel: f32, every binding in each type it stores, and a mix
/// (a 16-bit input with f32 outputs, and the reverse).
fn elem_variants(kernel: Kernel) -> Vec<Elems> {
    let mut v = vec![Elems::F32];
    for &e in kernel.info().elems.iter().filter(|&&e| e != Elem::F32) {
        v.push(Elems([e; 8]));
        let mut mixed = Elems::F32;
        mixed.0[1] = e;
        v.push(mixed);
        let mut rev = Elems([e; 8]);
        rev.0[1] = Elem::F32;
        v.push(rev);
    }
    v
}

#[test]
fn every_shader_validates_on_both_reduction_paths() {
    let mut checked = 0;
    let mut expected = 0;
    for &kernel in Kernel::ALL {
        // A narrow kernel is expanded per row length: every length it is used for.
        let lengths: Vec<u32> = if kernel.is_narrow() {
            (1..=NARROW_MAX).filter(|n| n % 4 != 0).collect()
        } else {
            vec![0]
        };
        let variants = elem_variants(kernel);
        expected += 4 * lengths.len() * variants.len();
        for (path, vw, cols, elems) in [
            (ReducePath::Workgroup, 1),
            (ReducePath::Workgroup, 4),
            (ReducePath::Subgroup(8), 4),
            (ReducePath::Subgroup(32), 1),
        ]
        .into_iter()
        .flat_map(|(path, vw)| lengths.iter().map(move |&cols| (path, vw, cols)))
        .flat_map(|(path, vw, cols)| variants.iter().map(move |&e| (path, vw, cols, e)))
        {
            // The row cache at full size on half the variants, as one vec4 on the others.
            let flags = if vw == 4 { ROW_CACHED } else { 0 };
            // Both walks: CPU-driver blocks of 8 lanes, and the GPU's whole-row interleave.
            let walk = RowWalk::for_policy(if vw == 4 { 2048 } else { 8 });
            let composed = compose_kernel(kernel, path, walk, vw, cols, flags, &elems)
                .unwrap_or_else(|e| panic!("{kernel:?}/{path:?}/vec{vw}/N={cols}/{elems:?}: {e}"));
            let src = &composed.source;
            // Errors name the composed module's lines; `annotate` adds the shaders/ file and line.
            let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| {
                panic!(
                    "{kernel:?}/{path:?}/vec{vw}/N={cols}/{elems:?}: {}",
                    composed.annotate(&e.emit_to_string_with_path(src, "wgsl"))
                )
            });
            let caps = match path {
                ReducePath::Subgroup(_) => {
                    naga::valid::Capabilities::SUBGROUP
                        | naga::valid::Capabilities::SUBGROUP_BARRIER
                }
                ReducePath::Workgroup => naga::valid::Capabilities::empty(),
            };
            let stages = match path {
                ReducePath::Subgroup(_) => naga::valid::SubgroupOperationSet::all(),
                ReducePath::Workgroup => naga::valid::SubgroupOperationSet::empty(),
            };
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(stages)
                .validate(&module)
                .unwrap_or_else(|e| {
                    panic!(
                        "{kernel:?}/{path:?}/vec{vw}/N={cols}/{elems:?}: {}",
                        composed.annotate(&e.emit_to_string_with_path(src, "wgsl"))
                    )
                });
            checked += 1;
        }
    }
    assert!(expected > Kernel::ALL.len() * 4 * 2);
    assert_eq!(checked, expected);
}

#[test]
fn a_type_a_kernel_does_not_store_is_refused_by_name() {
    let walk = RowWalk::for_policy(8);
    let e = compose_kernel(
        Kernel::SgdUpdate,
        ReducePath::Workgroup,
        walk,
        1,
        0,
        0,
        &Elems([Elem::Bf16; 8]),
    )
    .unwrap_err();
    assert!(e.contains("xent.sgd_update does not store bf16"), "{e}");
}

#[test]
fn workgroup_path_uses_no_subgroup_operation() {
    for &kernel in Kernel::ALL {
        let src = source(
            kernel,
            ReducePath::Workgroup,
            RowWalk::for_policy(8),
            4,
            10,
            ROW_CACHED,
        )
        .unwrap()
        .source;
        let code: String = src.lines().map(|l| l.split("//").next().unwrap()).collect();
        assert!(
            !code.contains("subgroup"),
            "{kernel:?} workgroup path mentions subgroups"
        );
    }
}
