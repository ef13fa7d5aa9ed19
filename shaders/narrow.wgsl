// narrow: the layout of the narrow-row kernels (`*_narrow.wgsl`), used where one lane owns a row (CPU
// drivers) and rows are short and not a multiple of 4 long (N ≤ NARROW_MAX = 16, src/shaders.rs). PR = 4 / gcd(N, 4)
// consecutive rows go to one lane: together they are NV = PR·N/4 whole, aligned vec4s, read and written
// four floats at a time (a row-per-lane kernel moves them one float at a time, and CPU drivers pay per
// access, not per byte) and held in the registers v0 … v{NV-1} in between. The host runs the rows left
// over (fewer than PR) with the row kernel.
//
// The kernels are templates, expanded for one N by `shaders::source` into straight-line code (a
// driver's compiler does not reliably unroll the loops, and a loop over a private array costs it a
// memory access per element):
// - a line holding `$k` is written once per vec4 of the pack, with `$k` = 0 … NV−1;
// - lines between `//{rows` and `//}rows` are written once per row of the pack, with `$i` = 0 … PR−1;
//   inside them a line holding `$e` or `$c` is written once per element of the row: `$e` is the
//   element's place in a pack (`v$e` becomes e.g. `v2.z`) and `$c` its column 0 … N−1 (`lp$c` names
//   a per-element value). Each such line is written for every element before the next line is: a
//   step that must see the previous element's result (a running argmax) keeps to one line.
// NC (= N), PR and NV are constants the expansion defines.

// The entry point of every narrow kernel: the lane's pack starts at row `row` of the chunk and at vec4
// `base` of its n×N bindings (the host starts every chunk on a pack boundary, so this is aligned); the
// kernel's own `pack_main` does the rest.
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x * PR;
    if (row < p.rows) {
        pack_main(row, (p.shift + row * NC) / 4u);
    }
}
