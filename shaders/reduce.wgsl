// reduce: the in-row reductions across a row's lanes (`seg_max`, `seg_sum4`): subgroup shuffles where
// the context uses them (def SUBGROUP: reduce_subgroup.wgsl), else a tree in workgroup memory
// (reduce_workgroup.wgsl). Both files declare the same names.
#if SUBGROUP
#import reduce_subgroup
#else
#import reduce_workgroup
#endif
