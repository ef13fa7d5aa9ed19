//! Every kernel's module, on both reduction paths, parsed and validated by naga: a broken shader fails
//! here with no adapter present.

use xent::ReducePath;
use xent::shaders::{Kernel, source};

#[test]
fn every_shader_validates_on_both_reduction_paths() {
    let mut checked = 0;
    for &kernel in Kernel::ALL {
        for (path, vw) in [
            (ReducePath::Workgroup, 1),
            (ReducePath::Workgroup, 4),
            (ReducePath::Subgroup(8), 4),
            (ReducePath::Subgroup(32), 1),
        ] {
            let src = source(kernel, path, vw);
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                panic!("{kernel:?}/{path:?}/vec{vw}: {}", e.emit_to_string(&src))
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
                    panic!("{kernel:?}/{path:?}/vec{vw}: {}", e.emit_to_string(&src))
                });
            checked += 1;
        }
    }
    assert_eq!(checked, Kernel::ALL.len() * 4);
}

#[test]
fn workgroup_path_uses_no_subgroup_operation() {
    for &kernel in Kernel::ALL {
        let src = source(kernel, ReducePath::Workgroup, 4);
        let code: String = src.lines().map(|l| l.split("//").next().unwrap()).collect();
        assert!(
            !code.contains("subgroup"),
            "{kernel:?} workgroup path mentions subgroups"
        );
    }
}
