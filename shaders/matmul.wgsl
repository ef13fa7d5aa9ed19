// matmul: C = op(A)·op(B) (+ bias), or C += op(A)·op(B), for softmax regression:
//   logits  Z  = X W + b        (A = X n×d, B = W d×N, MM_BIAS)
//   weights dW = Xᵀ G           (MM_TRANS_A: A = X n×d read as d×n; the reduction runs over the n rows)
//   bias    db = 1ᵀ G           (MM_A_ONES: no A, every A element is 1; column sums of G)
//   input   dX = G Wᵀ           (MM_TRANS_B: B = W d×N read as N×d)
// Reads: a, b, bias (bound whole or as the host's row chunk, starting `*_off` elements in). Writes: c.
// a and b may be f32, f16 or bf16 (`#matrix`, read widened); bias and c are f32.
// Tiles: each workgroup owns one TM×TN tile of C (no atomics: every element has one owner), each
// invocation a 4×4 block held in registers, so TM·TN = 16·WG. TN (64, 32 or 16, an override the host
// picks from C's width) lets a narrow C, such as N = 10 classes, waste 6/16 of a tile instead of 54/64.
// The reduction walks k in steps of TK through workgroup memory.
// Dispatch: (ceil(n / TN), ceil(m / TM), S); with MM_DIRECT (CPU drivers) x and y swapped. Split-K: workgroup z sums only its slice of the reduction,
// k in [z·kslice, min(k, (z+1)·kslice)), into its own partial matrix, `z·cslice` elements into c (the
// host's scratch); matmul_reduce.wgsl then adds the S partials in slice order. A long reduction that
// feeds few output tiles (Xᵀ G with N = 10) so fills the device. With S = 1, c is the output itself.
// The host also splits reductions past the adapter's loop cap into chunks (MM_ACCUM adds a chunk into C,
// in order), and the batch rows at the storage-binding limit.

#import prelude: WG, MM_TRANS_A, MM_TRANS_B, MM_ACCUM, MM_BIAS, MM_A_ONES

// Keep in sync with `MatmulParams` in src/matmul.rs.
struct MmParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    kslice: u32,    // reduction length of one split-K slice (a multiple of TK; ≥ k when S = 1)
    cslice: u32,    // elements between two slices' partial matrices in c (0 when S = 1)
    listed0: u32,   // listed index of this dispatch's first batch row (see `live` below)
    live: u32,      // batch rows listed in all (u32 max: every row; see main)
    pad0: u32,
    pad1: u32,
}

// The MM_* flag bits come from the prelude (generated from `flags` in src/shaders.rs).
override FLAGS: u32 = 0u;
override TN: u32 = 64u;

override TM: u32 = 16u * WG / TN;
// Derived from TN (overrides, so the pipeline's TN flows into them; the host sets only TN).
// Reduction step: a TK×TM slab of A and a TK×TN slab of B per step (at most 2,048 and 1,024 floats).
override TK: u32 = min(16u, 2048u / TM);
// Invocations along a tile's columns (4 columns each), and the slab elements each one stages per step.
override TX: u32 = TN / 4u;
override A_LOADS: u32 = TK * TM / WG;
override B_LOADS: u32 = (TK * TN + WG - 1u) / WG;

@group(0) @binding(0) var<uniform> q: MmParams;
#matrix 1 a: read flat
#matrix 2 b: read flat
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 2048>; // [kk][i], TK × TM
var<workgroup> b_tile: array<f32, 1024>; // [kk][j], TK × TN

fn has(f: u32) -> bool {
    return (FLAGS & f) != 0u;
}

// op(A)[i][kk], zero outside the matrix and past `k_end` (the end of this slice).
fn a_at(i: u32, kk: u32, k_end: u32) -> f32 {
    if (i >= q.m || kk >= k_end) {
        return 0.0;
    }
    if (has(MM_A_ONES)) {
        return 1.0;
    }
    if (has(MM_TRANS_A)) {
        return a_ld(q.a_off + kk * q.lda + i);
    }
    return a_ld(q.a_off + i * q.lda + kk);
}

// op(B)[kk][j], zero outside the matrix and past `k_end`.
fn b_at(kk: u32, j: u32, k_end: u32) -> f32 {
    if (kk >= k_end || j >= q.n) {
        return 0.0;
    }
    if (has(MM_TRANS_B)) {
        return b_ld(q.b_off + j * q.ldb + kk);
    }
    return b_ld(q.b_off + kk * q.ldb + j);
}

// The r-th of an invocation's A_LOADS (B_LOADS) stores into the staged slab of A (B).
fn stage_a(r: u32, lid: u32, i0: u32, k0: u32, k_end: u32) {
    if (r < A_LOADS) {
        let e = lid + r * WG;
        a_tile[e] = a_at(i0 + e % TM, k0 + e / TM, k_end);
    }
}

fn stage_b(r: u32, lid: u32, j0: u32, k0: u32, k_end: u32) {
    let e = lid + r * WG;
    if (r < B_LOADS && e < TK * TN) {
        b_tile[e] = b_at(k0 + e / TN, j0 + e % TN, k_end);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
#if MM_DIRECT
    // CPU drivers hand each thread a contiguous run of workgroups: x runs over C's row tiles, so that
    // a run spans every row tile of some column tiles, and a prefix of listed rows (`live`, below)
    // spreads over the threads instead of landing on the first ones.
    let i0 = wid.x * TM;
    let j0 = wid.y * TN;
#else
    let i0 = wid.y * TM;
    let j0 = wid.x * TN;
#endif
    let tx = lid % TX;
    let ty = lid / TX;
    // Fused linear cross-entropy with device-only labels lists the rows that count on the device
    // (listed_rows.wgsl) and copies their count into `q.live` before the dispatch: only the
    // dispatch's first `live` batch rows are listed. Past them, a workgroup of output rows (X W, G Wᵀ)
    // returns at once, and a reduction over the batch rows (MM_TRANS_A: Xᵀ G, 1ᵀ G) ends there, as a
    // product of only the listed rows would (the same sums, so the host list's bits); with none,
    // it writes nothing. Uniform values, so the returns keep the barriers in uniform control flow.
    let live = q.live - min(q.live, q.listed0);
    if (has(MM_TRANS_A)) {
        if (live == 0u) {
            return;
        }
    } else if (i0 >= live) {
        return;
    }
    let k_rows = select(q.k, min(q.k, live), has(MM_TRANS_A));
    let k_begin = wid.z * q.kslice;
    let k_end = min(k_rows, k_begin + q.kslice);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
#if MM_DIRECT
    // CPU drivers (the context's row walk is the CPU policy): each invocation reads its operands
    // straight from memory, with no workgroup memory and no barriers (on Mesa's CPU drivers a barrier
    // suspends and resumes every invocation of the workgroup), and one whose 4×4 block lies outside C
    // does nothing. The same products in the same order as the tiled walk below (zeros past k_end
    // included), so the same values.
    let bi = i0 + ty * 4u;
    let bj = j0 + tx * 4u;
    let inside = bi < q.m && bj < q.n;
    for (var k0 = k_begin; k0 < k_end && inside; k0 += TK) {
        for (var kk = 0u; kk < TK; kk++) {
            let k = k0 + kk;
            let av = vec4<f32>(a_at(bi, k, k_end), a_at(bi + 1u, k, k_end), a_at(bi + 2u, k, k_end), a_at(bi + 3u, k, k_end));
            let bv = vec4<f32>(b_at(k, bj, k_end), b_at(k, bj + 1u, k_end), b_at(k, bj + 2u, k_end), b_at(k, bj + 3u, k_end));
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
    }
#else
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        // Staging written out (A_LOADS ≤ 8, B_LOADS ≤ 4; the guards are pipeline constants): no inner
        // loop, so a step costs the loop cap 1 + TK iterations (Tile::iterations_per_step).
        stage_a(0u, lid, i0, k0, k_end);
        stage_a(1u, lid, i0, k0, k_end);
        stage_a(2u, lid, i0, k0, k_end);
        stage_a(3u, lid, i0, k0, k_end);
        stage_a(4u, lid, i0, k0, k_end);
        stage_a(5u, lid, i0, k0, k_end);
        stage_a(6u, lid, i0, k0, k_end);
        stage_a(7u, lid, i0, k0, k_end);
        stage_b(0u, lid, j0, k0, k_end);
        stage_b(1u, lid, j0, k0, k_end);
        stage_b(2u, lid, j0, k0, k_end);
        stage_b(3u, lid, j0, k0, k_end);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ai = kk * TM + ty * 4u;
            let bj = kk * TN + tx * 4u;
            let av = vec4<f32>(a_tile[ai], a_tile[ai + 1u], a_tile[ai + 2u], a_tile[ai + 3u]);
            let bv = vec4<f32>(b_tile[bj], b_tile[bj + 1u], b_tile[bj + 2u], b_tile[bj + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
#endif
    let c_base = q.c_off + wid.z * q.cslice;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + ty * 4u + r;
        if (i >= q.m) {
            break;
        }
        for (var s = 0u; s < 4u; s++) {
            let j = j0 + tx * 4u + s;
            if (j >= q.n) {
                break;
            }
            var v = rows[r][s];
            if (has(MM_BIAS)) {
                v += bias[j];
            }
            let o = c_base + i * q.ldc + j;
            if (has(MM_ACCUM)) {
                v += c[o];
            }
            c[o] = v;
        }
    }
}
