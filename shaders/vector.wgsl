// vector: the row kernels' vector type `V` (with `VU`, `VW`) and its helpers (`hmax`, `hsum`, `comp`,
// `hfirst`, `vidx`): vec4.wgsl for rows whose length is a multiple of 4 and for the narrow kernels
// (def VEC4), else vec1.wgsl. Both files declare the same names.
#if VEC4
#import vec4
#else
#import vec1
#endif
