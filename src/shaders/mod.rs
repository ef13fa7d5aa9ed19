//! The kernel table and the WGSL modules (`shaders/`).
//!
//! Every kernel has one entry in [`KERNELS`]: its root file, label, the overrides and FLAGS bits it
//! reads, whether it is vectorised, its narrow variant, whether it caches rows, and the element types
//! it stores. A kernel's module is composed from its root file by [`compose`]: each WGSL file names
//! what it imports (`#import common: p, walk_n, …`), conditional pieces hang on named defs (`SUBGROUP`,
//! `VEC4`), n×N operands are `#matrix` bindings expanded for the element type bound there
//! ([`storage`]: f32, f16, bf16), and the generated modules `prelude` (constants shared with Rust) and
//! `narrow_shape` fill in what Rust decides. Narrow kernels then have their per-element blocks
//! expanded ([`narrow`]).

pub mod compose;
pub mod narrow;
pub mod storage;

pub use compose::{Composed, Origin};
pub use storage::{Elem, Elems};

/// Invocations per workgroup of every row kernel. The WGSL constant `WG` is generated from this value
/// (see [`prelude`]), so the two sides cannot drift apart. 256 is the WebGPU default limit.
pub const WG_SIZE: u32 = 256;

/// Floats of workgroup memory that keep a workgroup's rows between the two passes of softmax_fwd and
/// ce_fwd_bwd (8 KiB; with the 4 KiB reduction array well under WebGPU's 16 KiB default).
pub const ROW_CACHE: u32 = 2048;

/// The `FLAGS` bit that turns that cache on.
pub const ROW_CACHED: u32 = flags::ROW_CACHED;

/// Every bit of the kernels' `FLAGS` override and every value of their `MODE`, defined once. Rust uses
/// these constants and the generated prelude declares each as a WGSL `const` of the same name and
/// value (see [`prelude`]), so no flag or mode is written on both sides. Cross-entropy bits are
/// `CE_*`, the matmul's `MM_*`, modes `MODE_*`.
pub mod flags {
    /// ce_fwd_bwd / ce_narrow: class-index targets (else probability rows).
    pub const CE_LABELS: u32 = 1 << 0;
    /// Class weights are bound.
    pub const CE_WEIGHT: u32 = 1 << 1;
    /// Write the gradient.
    pub const CE_GRAD: u32 = 1 << 2;
    /// The gradient goes over the logits.
    pub const CE_IN_PLACE: u32 = 1 << 3;
    /// Per-row upstream gradients are bound.
    pub const CE_ROW_UPSTREAM: u32 = 1 << 4;
    /// Logit soft-capping.
    pub const CE_SOFTCAP: u32 = 1 << 5;
    /// A second pass over the row (gradient, smoothing, probability targets).
    pub const CE_PASS2: u32 = 1 << 6;
    /// ce_reduce: the mean, not the sum.
    pub const CE_MEAN: u32 = 1 << 7;
    /// softmax_fwd / ce_fwd_bwd: the workgroup's rows are kept in workgroup memory between passes.
    pub const ROW_CACHED: u32 = 1 << 8;
    /// Labels are u32 (else i32).
    pub const CE_LABELS_U32: u32 = 1 << 9;
    /// Labels are i64, as pairs of u32 words (else i32).
    pub const CE_LABELS_I64: u32 = 1 << 10;
    /// Device-only labels: the mean's denominator and the gradient's scale come from ce_denom's
    /// batch numbers, not from the uniform.
    pub const CE_DEVICE_DENOM: u32 = 1 << 11;
    /// info_rows: target distributions are bound.
    pub const INFO_TARGETS: u32 = 1 << 0;
    /// matmul: A is read transposed.
    pub const MM_TRANS_A: u32 = 1 << 0;
    /// matmul: B is read transposed.
    pub const MM_TRANS_B: u32 = 1 << 1;
    /// matmul / matmul_reduce: add into C instead of overwriting it.
    pub const MM_ACCUM: u32 = 1 << 2;
    /// matmul: add the bias row.
    pub const MM_BIAS: u32 = 1 << 3;
    /// matmul: A is a row of ones (column sums), not bound.
    pub const MM_A_ONES: u32 = 1 << 4;

    /// softmax_fwd's MODE: softmax.
    pub const MODE_SOFTMAX: u32 = 0;
    /// softmax_fwd's MODE: log-softmax.
    pub const MODE_LOG_SOFTMAX: u32 = 1;
    /// softmax_fwd's MODE: log-sum-exp only (no row output).
    pub const MODE_LSE: u32 = 2;
    /// softmax_bwd's MODE: the softmax backward from p̂.
    pub const MODE_BWD_SOFTMAX: u32 = 0;
    /// softmax_bwd's MODE: the log-softmax backward from log p̂.
    pub const MODE_BWD_LOG_SOFTMAX: u32 = 1;
    /// ce_reduce's MODE bit: this launch writes the final numbers.
    pub const MODE_FINISH: u32 = 1 << 0;
    /// ce_reduce's MODE bit: it adds partials, not batch rows.
    pub const MODE_FROM_PARTIALS: u32 = 1 << 1;
    /// listed_rows' MODE: list the rows whose label is not ignored (a stable partition).
    pub const MODE_LIST: u32 = 0;
    /// listed_rows' MODE: gather rows by the list.
    pub const MODE_GATHER: u32 = 1;
    /// listed_rows' MODE: scatter rows back by the list, up to its count.
    pub const MODE_SCATTER: u32 = 2;

    /// Every flag and mode by its WGSL name, for the prelude.
    pub(crate) const ALL: &[(&str, u32)] = &[
        ("CE_LABELS", CE_LABELS),
        ("CE_WEIGHT", CE_WEIGHT),
        ("CE_GRAD", CE_GRAD),
        ("CE_IN_PLACE", CE_IN_PLACE),
        ("CE_ROW_UPSTREAM", CE_ROW_UPSTREAM),
        ("CE_SOFTCAP", CE_SOFTCAP),
        ("CE_PASS2", CE_PASS2),
        ("CE_MEAN", CE_MEAN),
        ("ROW_CACHED", ROW_CACHED),
        ("CE_LABELS_U32", CE_LABELS_U32),
        ("CE_LABELS_I64", CE_LABELS_I64),
        ("CE_DEVICE_DENOM", CE_DEVICE_DENOM),
        ("INFO_TARGETS", INFO_TARGETS),
        ("MM_TRANS_A", MM_TRANS_A),
        ("MM_TRANS_B", MM_TRANS_B),
        ("MM_ACCUM", MM_ACCUM),
        ("MM_BIAS", MM_BIAS),
        ("MM_A_ONES", MM_A_ONES),
        ("MODE_SOFTMAX", MODE_SOFTMAX),
        ("MODE_LOG_SOFTMAX", MODE_LOG_SOFTMAX),
        ("MODE_LSE", MODE_LSE),
        ("MODE_BWD_SOFTMAX", MODE_BWD_SOFTMAX),
        ("MODE_BWD_LOG_SOFTMAX", MODE_BWD_LOG_SOFTMAX),
        ("MODE_FINISH", MODE_FINISH),
        ("MODE_FROM_PARTIALS", MODE_FROM_PARTIALS),
        ("MODE_LIST", MODE_LIST),
        ("MODE_GATHER", MODE_GATHER),
        ("MODE_SCATTER", MODE_SCATTER),
    ];
}

/// Rows of at most this many elements, whose length is not a multiple of 4, go to the narrow kernels
/// (`narrow.wgsl`) where a lane owns a row: PR = 4 / gcd(N, 4) rows per lane as whole vec4s.
pub const NARROW_MAX: u32 = 16;

/// How the kernels reduce across the invocations that share a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReducePath {
    /// Subgroup shuffles inside blocks of this many lanes (the adapter's minimum subgroup size), then
    /// workgroup memory across blocks.
    Subgroup(u32),
    /// A tree in workgroup memory, one barrier per level.
    Workgroup,
}

/// Every compute kernel xent has. Each names its WGSL file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Start-up probe of the per-invocation loop cap (`loop_probe.wgsl`).
    LoopProbe,
    /// Softmax, log-softmax and log-sum-exp forward (`softmax_fwd.wgsl`).
    SoftmaxFwd,
    /// Softmax and log-softmax backward (`softmax_bwd.wgsl`).
    SoftmaxBwd,
    /// Fused cross-entropy loss and gradient (`ce_fwd_bwd.wgsl`).
    CeFwdBwd,
    /// Cross-entropy's batch-level reductions (`ce_reduce.wgsl`).
    CeReduce,
    /// The mean's denominator and the labels' check for device-only labels (`ce_denom.wgsl`).
    CeDenom,
    /// Entropy, cross-entropy and KL per row (`info_rows.wgsl`).
    InfoRows,
    /// The bandwidth roofline: a copy walked like the row kernels (`copy_rows.wgsl`).
    CopyRows,
    /// [`Kernel::SoftmaxFwd`] for narrow rows, packed to whole vec4s (`softmax_narrow.wgsl`).
    SoftmaxNarrow,
    /// [`Kernel::CopyRows`] for narrow rows (`copy_narrow.wgsl`).
    CopyNarrow,
    /// [`Kernel::CeFwdBwd`] for narrow rows (`ce_narrow.wgsl`).
    CeNarrow,
    /// [`Kernel::SoftmaxBwd`] for narrow rows (`softmax_bwd_narrow.wgsl`).
    SoftmaxBwdNarrow,
    /// Tiled matrix product for softmax regression (`matmul.wgsl`).
    Matmul,
    /// The sum of a split-K matmul's partial products (`matmul_reduce.wgsl`).
    MatmulReduce,
    /// SGD with momentum and L2, in place (`sgd_update.wgsl`).
    SgdUpdate,
    /// Minibatch rows and labels gathered by index (`gather_rows.wgsl`).
    GatherRows,
    /// The rows of fused linear cross-entropy that count, listed, gathered and scattered on the
    /// device (`listed_rows.wgsl`).
    ListedRows,
}

/// Everything the host knows about one kernel: one entry per kernel in [`KERNELS`].
#[derive(Clone, Copy, Debug)]
pub struct KernelInfo {
    /// The kernel.
    pub kernel: Kernel,
    /// The root module (`shaders/<file>.wgsl`).
    pub file: &'static str,
    /// The wgpu label of its module and pipeline.
    pub label: &'static str,
    /// The override constants the host sets: `FLAGS` from the launch's flags, the other one (`MODE`,
    /// or the matmul's tile width `TN`) from its mode.
    pub overrides: &'static [&'static str],
    /// The [`flags`] bits it reads (the rest are masked out of its pipeline key, so options it
    /// ignores build no extra pipelines).
    pub flags: u32,
    /// Reads and writes its n×N rows through `V`, four floats at a time when N is a multiple of 4.
    pub vectorised: bool,
    /// Its narrow-row variant (see [`NARROW_MAX`]).
    pub narrow: Option<Kernel>,
    /// It is a narrow variant itself (expanded per row length, see [`narrow`]).
    pub is_narrow: bool,
    /// It keeps rows that fit in workgroup memory between its two passes.
    pub caches_rows: bool,
    /// Storage element types its `#matrix` operands accept.
    pub elems: &'static [Elem],
}

const MODE_FLAGS: &[&str] = &["MODE", "FLAGS"];
/// The element types of a kernel whose n×N operands are `#matrix` bindings.
const ANY_ELEM: &[Elem] = &Elem::ALL;
const CE_FLAGS: u32 = flags::CE_LABELS
    | flags::CE_WEIGHT
    | flags::CE_GRAD
    | flags::CE_IN_PLACE
    | flags::CE_ROW_UPSTREAM
    | flags::CE_SOFTCAP
    | flags::CE_PASS2
    | LABEL_FLAGS
    | flags::CE_DEVICE_DENOM;
/// The labels' storage type.
const LABEL_FLAGS: u32 = flags::CE_LABELS_U32 | flags::CE_LABELS_I64;

const fn entry(kernel: Kernel, file: &'static str, label: &'static str) -> KernelInfo {
    KernelInfo {
        kernel,
        file,
        label,
        overrides: MODE_FLAGS,
        flags: 0,
        vectorised: false,
        narrow: None,
        is_narrow: false,
        caches_rows: false,
        elems: &[Elem::F32],
    }
}

/// The kernel table, in [`Kernel`] order.
pub const KERNELS: [KernelInfo; 17] = [
    KernelInfo {
        overrides: &[],
        ..entry(Kernel::LoopProbe, "loop_probe", "xent.loop_probe")
    },
    KernelInfo {
        flags: flags::ROW_CACHED,
        vectorised: true,
        narrow: Some(Kernel::SoftmaxNarrow),
        caches_rows: true,
        elems: ANY_ELEM,
        ..entry(Kernel::SoftmaxFwd, "softmax_fwd", "xent.softmax_fwd")
    },
    KernelInfo {
        vectorised: true,
        narrow: Some(Kernel::SoftmaxBwdNarrow),
        elems: ANY_ELEM,
        ..entry(Kernel::SoftmaxBwd, "softmax_bwd", "xent.softmax_bwd")
    },
    KernelInfo {
        flags: CE_FLAGS | flags::ROW_CACHED,
        vectorised: true,
        narrow: Some(Kernel::CeNarrow),
        caches_rows: true,
        elems: ANY_ELEM,
        ..entry(Kernel::CeFwdBwd, "ce_fwd_bwd", "xent.ce_fwd_bwd")
    },
    KernelInfo {
        flags: flags::CE_MEAN | flags::CE_DEVICE_DENOM,
        ..entry(Kernel::CeReduce, "ce_reduce", "xent.ce_reduce")
    },
    KernelInfo {
        flags: flags::CE_MEAN | flags::CE_WEIGHT | LABEL_FLAGS,
        ..entry(Kernel::CeDenom, "ce_denom", "xent.ce_denom")
    },
    KernelInfo {
        flags: flags::INFO_TARGETS,
        elems: ANY_ELEM,
        ..entry(Kernel::InfoRows, "info_rows", "xent.info_rows")
    },
    KernelInfo {
        vectorised: true,
        narrow: Some(Kernel::CopyNarrow),
        elems: ANY_ELEM,
        ..entry(Kernel::CopyRows, "copy_rows", "xent.copy_rows")
    },
    KernelInfo {
        is_narrow: true,
        elems: ANY_ELEM,
        ..entry(
            Kernel::SoftmaxNarrow,
            "softmax_narrow",
            "xent.softmax_narrow",
        )
    },
    KernelInfo {
        is_narrow: true,
        elems: ANY_ELEM,
        ..entry(Kernel::CopyNarrow, "copy_narrow", "xent.copy_narrow")
    },
    KernelInfo {
        flags: CE_FLAGS,
        is_narrow: true,
        elems: ANY_ELEM,
        ..entry(Kernel::CeNarrow, "ce_narrow", "xent.ce_narrow")
    },
    KernelInfo {
        is_narrow: true,
        elems: ANY_ELEM,
        ..entry(
            Kernel::SoftmaxBwdNarrow,
            "softmax_bwd_narrow",
            "xent.softmax_bwd_narrow",
        )
    },
    KernelInfo {
        overrides: &["TN", "FLAGS"],
        flags: flags::MM_TRANS_A
            | flags::MM_TRANS_B
            | flags::MM_ACCUM
            | flags::MM_BIAS
            | flags::MM_A_ONES,
        elems: ANY_ELEM,
        ..entry(Kernel::Matmul, "matmul", "xent.matmul")
    },
    KernelInfo {
        overrides: &["FLAGS"],
        flags: flags::MM_ACCUM,
        ..entry(Kernel::MatmulReduce, "matmul_reduce", "xent.matmul_reduce")
    },
    entry(Kernel::SgdUpdate, "sgd_update", "xent.sgd_update"),
    entry(Kernel::GatherRows, "gather_rows", "xent.gather_rows"),
    KernelInfo {
        flags: LABEL_FLAGS,
        ..entry(Kernel::ListedRows, "listed_rows", "xent.listed_rows")
    },
];

impl Kernel {
    /// Every kernel, for validation tests.
    pub const ALL: &'static [Kernel] = &[
        Kernel::LoopProbe,
        Kernel::SoftmaxFwd,
        Kernel::SoftmaxBwd,
        Kernel::CeFwdBwd,
        Kernel::CeReduce,
        Kernel::CeDenom,
        Kernel::InfoRows,
        Kernel::CopyRows,
        Kernel::SoftmaxNarrow,
        Kernel::CopyNarrow,
        Kernel::CeNarrow,
        Kernel::SoftmaxBwdNarrow,
        Kernel::Matmul,
        Kernel::MatmulReduce,
        Kernel::SgdUpdate,
        Kernel::GatherRows,
        Kernel::ListedRows,
    ];

    /// The kernel's entry in [`KERNELS`].
    pub fn info(self) -> &'static KernelInfo {
        &KERNELS[self as usize]
    }

    /// The wgpu label of the kernel's module and pipeline.
    pub fn label(self) -> &'static str {
        self.info().label
    }

    /// The `FLAGS` bits the kernel reads.
    pub fn flag_mask(self) -> u32 {
        self.info().flags
    }

    /// Whether the kernel goes four floats at a time on rows whose length is a multiple of 4.
    pub fn is_vectorised(self) -> bool {
        self.info().vectorised
    }

    /// The kernel's narrow-row variant (see [`NARROW_MAX`]), if it has one.
    pub fn narrow(self) -> Option<Kernel> {
        self.info().narrow
    }

    /// Whether the kernel is a narrow-row variant.
    pub fn is_narrow(self) -> bool {
        self.info().is_narrow
    }

    /// Whether the kernel keeps rows that fit in workgroup memory between its two passes.
    pub fn caches_rows(self) -> bool {
        self.info().caches_rows
    }

    /// The pipeline-overridable constants the host sets.
    pub fn overrides(self) -> &'static [&'static str] {
        self.info().overrides
    }
}

/// Constants shared by Rust and WGSL, generated so they are defined once: WG, ROW_CACHE, LB, UNROLL,
/// SG (subgroup path) and every [`flags`] bit.
///
/// `row_cache` sizes the workgroup row cache: [`ROW_CACHE`] floats when the pipeline uses it, else one
/// vec4 (an unused array need not take workgroup memory; with WebGPU's zero fill it had also cost
/// llvmpipe's GL compiler ~25 s per pipeline).
/// `walk` gives LB and UNROLL, how the row kernels walk a row (see [`RowWalk`]).
pub fn prelude(path: ReducePath, walk: RowWalk, row_cache: bool) -> String {
    // naga 30 enables subgroup operations through the device feature and rejects `enable subgroups;`.
    let mut s = String::new();
    let cache = if row_cache { ROW_CACHE } else { 4 };
    s.push_str(&format!(
        "const WG: u32 = {WG_SIZE}u;\nconst ROW_CACHE: u32 = {cache}u;\n\
         const LB: u32 = {}u;\nconst UNROLL: u32 = {}u;\n",
        walk.block, walk.unroll
    ));
    if let ReducePath::Subgroup(sg) = path {
        s.push_str(&format!("const SG: u32 = {sg}u;\n"));
    }
    for (name, bit) in flags::ALL {
        s.push_str(&format!("const {name}: u32 = {bit}u;\n"));
    }
    s
}

/// How a context's row kernels walk a row (the WGSL constants LB and UNROLL; `walk_n` in common.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowWalk {
    /// Lanes per block: a block owns one contiguous stretch of the row and reads LB consecutive items
    /// per step.
    pub block: u32,
    /// Steps each loop iteration takes, their loads issued together (independent loads in flight).
    pub unroll: u32,
}

impl RowWalk {
    /// Whether this is the GPU policy (the context's lanes walk short stretches).
    pub fn is_gpu(self) -> bool {
        self.block == WG_SIZE
    }

    /// The walk for a context whose lanes walk `elements_per_lane` elements per pass. CPU-driver
    /// policy (long walks): blocks of 8 lanes, one SIMD batch streaming its own stretch, one step per
    /// iteration. GPU policy: the row's lanes walk it interleaved as one block (a warp's loads are
    /// consecutive), 4 steps per iteration so that each lane keeps 4 loads in flight.
    pub fn for_policy(elements_per_lane: usize) -> Self {
        if elements_per_lane >= 64 {
            Self {
                block: 8,
                unroll: 1,
            }
        } else {
            Self {
                block: WG_SIZE,
                unroll: 4,
            }
        }
    }
}

/// Rows per lane in a narrow kernel's pack: the fewest rows of `cols` floats that make whole vec4s,
/// 4 / gcd(cols, 4).
pub fn narrow_pack(cols: u32) -> u32 {
    match cols % 4 {
        0 => 1,
        2 => 2,
        _ => 4,
    }
}

/// The composed WGSL module of `kernel` for the reduction path `path`, reading rows `vw` floats at a
/// time (4 for a vectorised kernel on rows whose length is a multiple of 4, else 1), with the element
/// types `elems` at its `#matrix` bindings.
/// A narrow kernel is expanded for rows of `cols` elements (the other kernels ignore `cols`).
/// `flags` are the pipeline's FLAGS: [`ROW_CACHED`] among them gives the row cache its size. `walk`
/// as in [`prelude`]. An `Err` names the file and line at fault (a broken shader; the tests compose
/// every variant).
pub fn compose_kernel(
    kernel: Kernel,
    path: ReducePath,
    walk: RowWalk,
    vw: u32,
    cols: u32,
    flags: u32,
    elems: &Elems,
) -> Result<Composed, String> {
    let info = kernel.info();
    if let Some(e) = elems.0.iter().find(|e| !info.elems.contains(e)) {
        return Err(format!("{} does not store {e}", info.label));
    }
    let mut defs = vec![];
    if matches!(path, ReducePath::Subgroup(_)) {
        defs.push("SUBGROUP");
    }
    if (vw == 4 && info.vectorised) || info.is_narrow {
        defs.push("VEC4");
    }
    // The matmul reads its operands directly on CPU drivers (no workgroup tiles; see matmul.wgsl).
    if kernel == Kernel::Matmul && !walk.is_gpu() {
        defs.push("MM_DIRECT");
    }
    let mut generated = vec![("prelude", prelude(path, walk, flags & ROW_CACHED != 0))];
    if info.is_narrow {
        let shape = narrow::Shape::of(cols);
        generated.push(("narrow_shape", shape.module()));
        let composed = compose::compose(info.file, &defs, &generated, elems)?;
        return narrow::expand_blocks(composed, shape);
    }
    compose::compose(info.file, &defs, &generated, elems)
}

/// [`compose_kernel`]'s WGSL for f32 storage.
pub fn source(
    kernel: Kernel,
    path: ReducePath,
    walk: RowWalk,
    vw: u32,
    cols: u32,
    flags: u32,
) -> Result<Composed, String> {
    compose_kernel(kernel, path, walk, vw, cols, flags, &Elems::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_kernel_order_and_names_existing_files() {
        for (i, info) in KERNELS.iter().enumerate() {
            assert_eq!(info.kernel, Kernel::ALL[i]);
            assert_eq!(info.kernel as usize, i);
            assert!(compose::file(info.file).is_some(), "{}", info.file);
            assert_eq!(info.label, format!("xent.{}", info.file));
        }
    }
}
