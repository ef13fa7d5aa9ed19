//! The registry of WGSL sources (`shaders/`) and how a kernel's module is assembled.
//!
//! A row kernel's module is: a generated prelude (constants shared with Rust), the element type
//! (`vec1.wgsl` or `vec4.wgsl`: `V` is `f32` or `vec4<f32>`), `common.wgsl` (the
//! `Params` uniform and numeric helpers), one of the two in-row reduction files
//! (`reduce_subgroup.wgsl` or `reduce_workgroup.wgsl`, same function names), and the kernel itself.

/// Invocations per workgroup of every row kernel. The WGSL constant `WG` is generated from this value
/// (see [`prelude`]), so the two sides cannot drift apart. 256 is the WebGPU default limit.
pub const WG_SIZE: u32 = 256;

/// Floats of workgroup memory that keep a workgroup's rows between the two passes of softmax_fwd and
/// ce_fwd_bwd (8 KiB; with the 4 KiB reduction array well under WebGPU's 16 KiB default).
pub const ROW_CACHE: u32 = 2048;

/// The `FLAGS` bit that turns that cache on.
pub const ROW_CACHED: u32 = flags::ROW_CACHED;

/// Every bit of the kernels' `FLAGS` override, defined once. Rust uses these constants and the
/// generated prelude declares each as a WGSL `const` of the same name and value (see [`prelude`]), so
/// no flag is written on both sides. Cross-entropy bits are `CE_*`, the matmul's `MM_*`.
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

    /// Every flag by its WGSL name, for the prelude.
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
        ("INFO_TARGETS", INFO_TARGETS),
        ("MM_TRANS_A", MM_TRANS_A),
        ("MM_TRANS_B", MM_TRANS_B),
        ("MM_ACCUM", MM_ACCUM),
        ("MM_BIAS", MM_BIAS),
        ("MM_A_ONES", MM_A_ONES),
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
}

impl Kernel {
    /// Every kernel, for validation tests.
    pub const ALL: &'static [Kernel] = &[
        Kernel::LoopProbe,
        Kernel::SoftmaxFwd,
        Kernel::SoftmaxBwd,
        Kernel::CeFwdBwd,
        Kernel::CeReduce,
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
    ];

    /// The wgpu label of the kernel's module and pipeline.
    pub fn label(self) -> &'static str {
        match self {
            Kernel::LoopProbe => "xent.loop_probe",
            Kernel::SoftmaxFwd => "xent.softmax_fwd",
            Kernel::SoftmaxBwd => "xent.softmax_bwd",
            Kernel::CeFwdBwd => "xent.ce_fwd_bwd",
            Kernel::CeReduce => "xent.ce_reduce",
            Kernel::InfoRows => "xent.info_rows",
            Kernel::CopyRows => "xent.copy_rows",
            Kernel::SoftmaxNarrow => "xent.softmax_narrow",
            Kernel::CopyNarrow => "xent.copy_narrow",
            Kernel::SoftmaxBwdNarrow => "xent.softmax_bwd_narrow",
            Kernel::CeNarrow => "xent.ce_narrow",
            Kernel::Matmul => "xent.matmul",
            Kernel::MatmulReduce => "xent.matmul_reduce",
            Kernel::SgdUpdate => "xent.sgd_update",
            Kernel::GatherRows => "xent.gather_rows",
        }
    }

    /// The kernel's own WGSL (without prelude and shared parts).
    fn body(self) -> &'static str {
        match self {
            Kernel::LoopProbe => include_str!("../shaders/loop_probe.wgsl"),
            Kernel::SoftmaxFwd => include_str!("../shaders/softmax_fwd.wgsl"),
            Kernel::SoftmaxBwd => include_str!("../shaders/softmax_bwd.wgsl"),
            Kernel::CeFwdBwd => concat!(
                include_str!("../shaders/ce_common.wgsl"),
                include_str!("../shaders/ce_fwd_bwd.wgsl")
            ),
            Kernel::CeReduce => include_str!("../shaders/ce_reduce.wgsl"),
            Kernel::InfoRows => include_str!("../shaders/info_rows.wgsl"),
            Kernel::CopyRows => include_str!("../shaders/copy_rows.wgsl"),
            Kernel::SoftmaxNarrow => include_str!("../shaders/softmax_narrow.wgsl"),
            Kernel::CopyNarrow => include_str!("../shaders/copy_narrow.wgsl"),
            Kernel::SoftmaxBwdNarrow => include_str!("../shaders/softmax_bwd_narrow.wgsl"),
            Kernel::CeNarrow => concat!(
                include_str!("../shaders/ce_common.wgsl"),
                include_str!("../shaders/ce_narrow.wgsl")
            ),
            Kernel::Matmul => include_str!("../shaders/matmul.wgsl"),
            Kernel::MatmulReduce => include_str!("../shaders/matmul_reduce.wgsl"),
            Kernel::SgdUpdate => include_str!("../shaders/sgd_update.wgsl"),
            Kernel::GatherRows => include_str!("../shaders/gather_rows.wgsl"),
        }
    }

    /// The `FLAGS` bits the kernel reads (the rest are masked out of its pipeline key, so that options a
    /// kernel ignores do not build extra pipelines).
    pub fn flag_mask(self) -> u32 {
        use flags::*;
        let ce =
            CE_LABELS | CE_WEIGHT | CE_GRAD | CE_IN_PLACE | CE_ROW_UPSTREAM | CE_SOFTCAP | CE_PASS2;
        match self {
            Kernel::CeFwdBwd => ce | ROW_CACHED,
            Kernel::CeNarrow => ce,
            Kernel::SoftmaxFwd => ROW_CACHED,
            Kernel::CeReduce => CE_MEAN,
            Kernel::InfoRows => INFO_TARGETS,
            Kernel::Matmul => MM_TRANS_A | MM_TRANS_B | MM_ACCUM | MM_BIAS | MM_A_ONES,
            Kernel::MatmulReduce => MM_ACCUM,
            _ => 0,
        }
    }

    /// Whether the kernel reads and writes its n×N rows through the vector type `V` (vec1.wgsl or
    /// vec4.wgsl), so that rows whose length is a multiple of 4 go four floats at a time.
    pub fn is_vectorised(self) -> bool {
        matches!(
            self,
            Kernel::SoftmaxFwd | Kernel::SoftmaxBwd | Kernel::CeFwdBwd | Kernel::CopyRows
        )
    }

    /// The kernel's narrow-row variant (see [`NARROW_MAX`]), if it has one.
    pub fn narrow(self) -> Option<Kernel> {
        match self {
            Kernel::SoftmaxFwd => Some(Kernel::SoftmaxNarrow),
            Kernel::CopyRows => Some(Kernel::CopyNarrow),
            Kernel::CeFwdBwd => Some(Kernel::CeNarrow),
            Kernel::SoftmaxBwd => Some(Kernel::SoftmaxBwdNarrow),
            _ => None,
        }
    }

    /// Whether the kernel is a narrow-row variant (a template expanded per row length, see
    /// [`narrow_pack`]).
    pub fn is_narrow(self) -> bool {
        matches!(
            self,
            Kernel::SoftmaxNarrow
                | Kernel::CopyNarrow
                | Kernel::CeNarrow
                | Kernel::SoftmaxBwdNarrow
        )
    }

    /// Whether the kernel keeps rows that fit in workgroup memory between its two passes.
    pub fn caches_rows(self) -> bool {
        matches!(self, Kernel::SoftmaxFwd | Kernel::CeFwdBwd)
    }

    /// Whether the kernel uses `common.wgsl` (its `Params`, the `MODE`/`FLAGS` overrides) and an
    /// in-row reduction.
    pub fn is_row_kernel(self) -> bool {
        !matches!(
            self,
            Kernel::LoopProbe | Kernel::Matmul | Kernel::MatmulReduce
        )
    }

    /// The pipeline-overridable constants the host sets: `FLAGS` from the launch's flags, the other
    /// one (`MODE`, or the matmul's tile width `TN`) from its mode.
    pub fn overrides(self) -> &'static [&'static str] {
        match self {
            Kernel::LoopProbe => &[],
            Kernel::Matmul => &["TN", "FLAGS"],
            Kernel::MatmulReduce => &["FLAGS"],
            _ => &["MODE", "FLAGS"],
        }
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

/// The complete WGSL module of `kernel` for the reduction path `path`, reading rows `vw` floats at a
/// time (4 for a vectorised kernel on rows whose length is a multiple of 4, else 1). A narrow kernel
/// is expanded for rows of `cols` elements (the other kernels ignore `cols`). `flags` are the
/// pipeline's FLAGS: [`ROW_CACHED`] among them gives the row cache its size. `walk` as in
/// [`prelude`].
pub fn source(
    kernel: Kernel,
    path: ReducePath,
    walk: RowWalk,
    vw: u32,
    cols: u32,
    flags: u32,
) -> String {
    let mut s = prelude(path, walk, flags & ROW_CACHED != 0);
    if kernel.is_row_kernel() {
        s.push_str(if vw == 4 || kernel.is_narrow() {
            include_str!("../shaders/vec4.wgsl")
        } else {
            include_str!("../shaders/vec1.wgsl")
        });
        s.push_str(include_str!("../shaders/common.wgsl"));
        s.push_str(match path {
            ReducePath::Subgroup(_) => include_str!("../shaders/reduce_subgroup.wgsl"),
            ReducePath::Workgroup => include_str!("../shaders/reduce_workgroup.wgsl"),
        });
    }
    if kernel.is_narrow() {
        s.push_str(&expand_narrow(
            &[include_str!("../shaders/narrow.wgsl"), kernel.body()].concat(),
            cols,
        ));
    } else {
        s.push_str(kernel.body());
    }
    s
}

/// Expands a narrow kernel's template (syntax in `shaders/narrow.wgsl`) for rows of `cols` elements.
fn expand_narrow(template: &str, cols: u32) -> String {
    let pr = narrow_pack(cols);
    let nv = pr * cols / 4;
    let mut out =
        format!("const NC: u32 = {cols}u;\nconst PR: u32 = {pr}u;\nconst NV: u32 = {nv}u;\n");
    let mut emit = |line: &str, row: u32| {
        if line.contains("$k") {
            for k in 0..nv {
                out.push_str(&line.replace("$k", &k.to_string()));
                out.push('\n');
            }
        } else if line.contains("$e") || line.contains("$c") {
            for c in 0..cols {
                let e = row * cols + c;
                let reg = format!("{}.{}", e / 4, ["x", "y", "z", "w"][e as usize % 4]);
                let l = line.replace("$e", &reg).replace("$c", &c.to_string());
                out.push_str(&l.replace("$i", &row.to_string()));
                out.push('\n');
            }
        } else {
            out.push_str(&line.replace("$i", &row.to_string()));
            out.push('\n');
        }
    };
    let mut block: Option<Vec<&str>> = None;
    for line in template.lines() {
        match (line.trim(), block.as_mut()) {
            ("//{rows", _) => block = Some(Vec::new()),
            ("//}rows", Some(rows)) => {
                for i in 0..pr {
                    rows.iter().for_each(|l| emit(l, i));
                }
                block = None;
            }
            (_, Some(rows)) => rows.push(line),
            (_, None) => emit(line, 0),
        }
    }
    out
}
