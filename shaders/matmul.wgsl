// matmul: C = op(A)·op(B) (+ bias), or C += op(A)·op(B), for softmax regression:
//   logits  Z  = X W + b        (A = X n×d, B = W d×N, BIAS)
//   weights dW = Xᵀ G           (TRANS_A: A = X n×d read as d×n; the reduction runs over the n rows)
//   bias    db = 1ᵀ G           (A_ONES: no A, every A element is 1; column sums of G)
//   input   dX = G Wᵀ           (TRANS_B: B = W d×N read as N×d)
// Reads: a, b, bias (bound whole or as the host's row chunk, starting `*_off` elements in). Writes: c.
// Dispatch: (ceil(n / 64), ceil(m / 64)) workgroups; each owns one 64×64 tile of C (no atomics: every
// C element has one owner), each invocation a 4×4 block held in registers. The reduction walks k in
// steps of 16 through workgroup memory. The host splits long reductions into chunks (ACCUM adds a
// chunk into C, in order), so no invocation's loops pass the adapter's loop cap, and splits the batch
// rows at the storage-binding limit.

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
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Keep in sync with `mm_flags` in src/matmul.rs.
const TRANS_A: u32 = 1u;
const TRANS_B: u32 = 2u;
const ACCUM: u32 = 4u;
const BIAS: u32 = 8u;
const A_ONES: u32 = 16u;
override FLAGS: u32 = 0u;

const TK: u32 = 16u;

@group(0) @binding(0) var<uniform> q: MmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 1024>; // [kk][i], TK × TILE
var<workgroup> b_tile: array<f32, 1024>; // [kk][j], TK × TILE

fn has(f: u32) -> bool {
    return (FLAGS & f) != 0u;
}

// op(A)[i][kk], zero outside the matrix.
fn a_at(i: u32, kk: u32) -> f32 {
    if (i >= q.m || kk >= q.k) {
        return 0.0;
    }
    if (has(A_ONES)) {
        return 1.0;
    }
    if (has(TRANS_A)) {
        return a[q.a_off + kk * q.lda + i];
    }
    return a[q.a_off + i * q.lda + kk];
}

// op(B)[kk][j], zero outside the matrix.
fn b_at(kk: u32, j: u32) -> f32 {
    if (kk >= q.k || j >= q.n) {
        return 0.0;
    }
    if (has(TRANS_B)) {
        return b[q.b_off + j * q.ldb + kk];
    }
    return b[q.b_off + kk * q.ldb + j];
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let i0 = wid.y * TILE;
    let j0 = wid.x * TILE;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < q.k; k0 += TK) {
        // 1,024 elements per tile, four per invocation (written out: no inner loop to count).
        let e0 = lid;
        let e1 = lid + 256u;
        let e2 = lid + 512u;
        let e3 = lid + 768u;
        a_tile[e0] = a_at(i0 + e0 % TILE, k0 + e0 / TILE);
        a_tile[e1] = a_at(i0 + e1 % TILE, k0 + e1 / TILE);
        a_tile[e2] = a_at(i0 + e2 % TILE, k0 + e2 / TILE);
        a_tile[e3] = a_at(i0 + e3 % TILE, k0 + e3 / TILE);
        b_tile[e0] = b_at(k0 + e0 / TILE, j0 + e0 % TILE);
        b_tile[e1] = b_at(k0 + e1 / TILE, j0 + e1 % TILE);
        b_tile[e2] = b_at(k0 + e2 / TILE, j0 + e2 % TILE);
        b_tile[e3] = b_at(k0 + e3 / TILE, j0 + e3 % TILE);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ai = kk * TILE + ty * 4u;
            let bj = kk * TILE + tx * 4u;
            let av = vec4<f32>(a_tile[ai], a_tile[ai + 1u], a_tile[ai + 2u], a_tile[ai + 3u]);
            let bv = vec4<f32>(b_tile[bj], b_tile[bj + 1u], b_tile[bj + 2u], b_tile[bj + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
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
            if (has(BIAS)) {
                v += bias[j];
            }
            let o = q.c_off + i * q.ldc + j;
            if (has(ACCUM)) {
                v += c[o];
            }
            c[o] = v;
        }
    }
}
