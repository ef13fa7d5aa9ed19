// narrow: the layout of the narrow-row kernels (`*_narrow.wgsl`), used where one lane owns a row (CPU
// drivers) and rows are short and not a multiple of 4 long (N ≤ NARROW_MAX = 16, src/shaders.rs). PR = 4 / gcd(N, 4)
// consecutive rows go to one lane: together they are NV = PR·N/4 whole, aligned vec4s, read and written
// four floats at a time (a row-per-lane kernel moves them one float at a time, and CPU drivers pay per
// access, not per byte) and held in the registers v0 … v{NV-1} in between. The host runs the rows left
// over (fewer than PR) with the row kernel.
//
// The kernels are written as straight-line code for one N (a driver's compiler does not reliably
// unroll loops, and a loop over a private array costs it a memory access per element): per-element
// blocks of ordinary WGSL that `shaders::narrow` writes out once per value:
// - `//#vec4s` … `//#end`: once per vec4 of the pack (k = 0 … NV−1);
// - `//#rows` … `//#end`: once per row of the pack (i = 0 … PR−1);
// - `//#columns` … `//#end`: once per column (c = 0 … N−1), inside a rows block also per element
//   e = i·N + c of the pack.
// Placeholders are identifiers: `K_`, `I_`, `C_` the index (`K_u` … as a u32 literal), `name_K`,
// `name_I`, `name_C` the name with the index (`lp_C` → `lp3`), `name_E` the name with the element's
// register (`v_E` → `v2.z`). A block is written out whole for one value before the next, so its lines
// may be split and joined freely; a placeholder outside its block is an error naming this file's line.
// NC (= N), PR and NV come from the generated module `narrow_shape`.

#import prelude: WG
#import common: p
#import narrow_shape: NC, PR, NV

// The entry point of every narrow kernel: the lane's pack starts at row `row` of the chunk and at vec4
// `base` of its f32 n×N bindings (the host starts every chunk on a pack boundary, so this is aligned;
// a `#matrix` binding's own `NAME_base(row)` gives the same for its type, 16-bit ones included: a
// pack is whole vec4s, so whole pairs of words); the kernel's own `pack_main` does the rest.
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x * PR;
    if (row < p.rows) {
        pack_main(row, (p.shift + row * NC) / 4u);
    }
}
