// loop_probe: measures how many loop iterations one invocation may run on this adapter.
// Reads: `want` (how many iterations to try). Writes: `counted[0]`, the iterations that actually ran.
// Dispatch: one workgroup of one invocation. Mesa 22's gallivm silently stops loops after 65,535
// iterations per invocation; on such an adapter counted[0] < want.
struct Probe { want: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> probe: Probe;
@group(0) @binding(1) var<storage, read_write> counted: array<u32>;

@compute @workgroup_size(1)
fn main() {
    var c = 0u;
    for (var i = 0u; i < probe.want; i++) {
        c += 1u;
    }
    counted[0] = c;
}
