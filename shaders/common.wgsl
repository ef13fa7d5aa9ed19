// common: the uniform every row kernel reads, and numeric helpers.
//
// Row kernels see an n×N row-major matrix in chunks of `rows` rows (the host splits work at the
// storage-binding limit). A row is owned by `tpr` consecutive invocations (a power of two ≤ WG), so one
// workgroup owns WG / tpr rows. The row's lanes form blocks of LB lanes; each block owns one contiguous
// stretch of the row and walks it LB elements at a time (see `walk`): at most about ceil(N / tpr)
// iterations per pass, which the host checks against the adapter's loop cap.

#import prelude: WG, LB, ROW_CACHED
#import vector: V, VW, hmax, hsum
#import reduce: seg_max, seg_sum4

// Keep in sync with `RowParams` in src/launch.rs.
struct Params {
    rows: u32,          // rows in this chunk
    cols: u32,          // N, elements per row
    row0: u32,          // global index of the chunk's first row (indexes per-row vectors)
    shift: u32,         // elements from the start of an n×N binding to the chunk's first element
    tpr: u32,           // invocations per row (power of two)
    mode: u32,          // the same values as the MODE and FLAGS overrides below (kept for
    flags: u32,         // inspection); the kernels read the overrides

    ignore_index: i32,  // cross-entropy: label to skip (its low word; ignore_hi below)
    ninf: f32,          // -inf and NaN come from the host: WGSL has no literal for them
    nan: f32,
    f0: f32,            // kernel-specific scalars
    f1: f32,
    f2: f32,
    f3: f32,
    f4: f32,
    total: u32,         // rows of the whole launch, where a kernel needs it (ce_reduce: the batch)
    shift16: u32,       // `shift` for the 16-bit (f16, bf16) n×N bindings, which start at their own
                        // aligned offset
    ignore_hi: i32,     // cross-entropy: the high word of ignore_index as an i64 (ignore_index is the low)
    classes: u32,       // ce_denom: N (its rows are blocks of labels)
}

@group(0) @binding(0) var<uniform> p: Params;

// Kernel-specific mode and option bits, fixed when the pipeline is built (one cached pipeline per
// value): the driver's compiler removes the branches a launch does not use, which on CPU drivers, where
// both sides of a branch may run under a lane mask, is most of the cost of an option.
override MODE: u32 = 0u;
override FLAGS: u32 = 0u;

const F32_MAX: f32 = 3.40282347e+38;

fn is_inf(x: f32) -> bool {
    return abs(x) > F32_MAX;
}

// exp(a - b) for b = max(a, …); equal arguments give exactly 1, also when both are ±inf, so that a
// row whose maximum is infinite keeps a finite sum (torch.logsumexp gives ±inf there, not NaN).
fn exp_rel(a: f32, b: f32) -> f32 {
    return select(exp(a - b), 1.0, a == b);
}

// Index of this invocation's lane inside its row, and of its row inside the chunk.
fn lane_of(lid: u32) -> u32 {
    return lid & (p.tpr - 1u);
}

fn row_of(lid: u32, wid: vec3<u32>) -> u32 {
    return wid.x * (WG / p.tpr) + lid / p.tpr;
}

// Rows that fit stay in workgroup memory between a kernel's two passes, so their elements are read from
// the buffer once: the host sets ROW_CACHED when the workgroup's rows hold at most ROW_CACHE floats in
// all (ROW_CACHE comes from the prelude). Each lane reads back only what it wrote itself: no barrier.

fn cached() -> bool {
    return (FLAGS & ROW_CACHED) != 0u;
}

// Where this lane's row starts in the kernel's `row_cache` (in V units).
fn cache_slot(lid: u32) -> u32 {
    return (lid / p.tpr) * (p.cols / VW);
}

// Lanes per block of the row walk: LB comes from the prelude, by the context's geometry. On a CPU
// driver LB = 8: a block reads 8 consecutive floats per step, one SIMD register (lavapipe runs 8 lanes
// per SIMD batch, one batch after another; each batch then streams through its own stretch of the row
// instead of re-walking the whole row with a 1 KiB stride). On a GPU LB = WG: a row's lanes form one
// block that walks the whole row interleaved, so a warp's loads are consecutive and each step of the
// workgroup reads one contiguous run of the row. The row walks' loops (softmax, cross-entropy, copy,
// info rows, ce_reduce) take UNROLL steps per iteration (prelude: 4 on a GPU, 1 on a CPU driver) so
// that a lane has that many loads in flight.

// This lane's part of a row: indices start, start + step, … < end.
struct Walk {
    start: u32,
    end: u32,
    step: u32,
}

fn walk(lane: u32) -> Walk {
    return walk_n(lane, p.cols);
}

// The same over a row of `count` items (vectors, in the vectorised kernels).
fn walk_n(lane: u32, count: u32) -> Walk {
    let b = min(LB, p.tpr);
    let blocks = p.tpr / b;
    let stretch = ((count + blocks - 1u) / blocks + b - 1u) / b * b;
    let first = (lane / b) * stretch;
    return Walk(first + lane % b, min(first + stretch, count), b);
}

// Online (max, sum of exp) over the lane's share of a row of `src` starting at element `base`;
// combined over the row's lanes by `row_lse`.
struct MaxSum {
    m: f32,
    s: f32,
}

fn online_push(acc: MaxSum, z: f32) -> MaxSum {
    let m = max(acc.m, z);
    return MaxSum(m, acc.s * exp_rel(acc.m, m) + exp_rel(z, m));
}

// online_push over a vector of elements: one rescale per vector.
fn online_push_v(acc: MaxSum, z: V) -> MaxSum {
    let m = max(acc.m, hmax(z));
    return MaxSum(m, acc.s * exp_rel(acc.m, m) + hsum(select(exp(z - V(m)), V(1.0), z == V(m))));
}

// (row max M, Σ exp(z - M)) over the whole row, from every lane's partial. All invocations call it.
fn row_max_sum(acc: MaxSum, lid: u32) -> MaxSum {
    let m = seg_max(acc.m, lid);
    let s = seg_sum4(vec4<f32>(acc.s * exp_rel(acc.m, m), 0.0, 0.0, 0.0), lid).x;
    return MaxSum(m, s);
}
