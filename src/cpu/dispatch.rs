//! Run-time dispatch to the AVX-512 and AVX2 + FMA copies, and the parallel driver over row blocks.

use super::*;

/// Environment variable that, set to `1`, keeps the hot loops on the portable build even where
/// SIMD extensions exist (the same as [`ISA_ENV`]`=portable`). Read once, at the first call.
pub const PORTABLE_ENV: &str = "XENT_CPU_PORTABLE";

/// Environment variable that caps the instruction set the hot loops use: `portable`, `avx2` or
/// `avx512` (to compare them, and to test the lower copies on a CPU that has the higher ones). The
/// path taken is the best the CPU has at or below it. Read once, at the first call.
pub const ISA_ENV: &str = "XENT_CPU_ISA";

/// The instruction sets the fast CPU path has copies of its hot loops for, lowest first. Every copy is
/// the same Rust code compiled for its features (LLVM vectorises the loops to the register width), so
/// they differ by rounding only where FMA fuses (AVX2 and AVX-512 both fuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The baseline build (SSE2 on x86-64), no FMA.
    Portable,
    /// AVX2 and FMA: 256-bit vectors.
    Avx2Fma,
    /// AVX-512 F, BW, VL and DQ (with AVX2 and FMA): 512-bit vectors.
    Avx512,
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Avx512 => "AVX-512",
        })
    }
}

impl Isa {
    /// The best instruction set this CPU has.
    pub fn detected() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512dq")
                && has!("fma")
                && has!("avx2")
            {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// The cap [`ISA_ENV`] (or [`PORTABLE_ENV`]) sets, if any.
    fn from_env() -> Option<Self> {
        if std::env::var_os(PORTABLE_ENV).is_some_and(|v| v == "1") {
            return Some(Isa::Portable);
        }
        match std::env::var(ISA_ENV).ok()?.to_ascii_lowercase().as_str() {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2Fma),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// The instruction set the hot loops run on: the best the CPU has, capped by [`ISA_ENV`]. Chosen
/// once, at the first call.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let best = Isa::detected();
        Isa::from_env().map_or(best, |cap| cap.min(best))
    })
}

/// Whether the hot loops run from copies compiled with FMA (AVX2+FMA or AVX-512).
pub fn uses_avx2_fma() -> bool {
    isa() >= Isa::Avx2Fma
}

/// Defines `fn $name(args)` that runs `$generic::<true>` compiled for AVX-512 or for AVX2 + FMA, as
/// [`isa`] says, else `$generic::<false>` (the portable build).
macro_rules! dispatched {
    ($(#[$meta:meta])* fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$meta])*
        pub(super) fn $name$(<$lt>)?($($arg: $ty),*) {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                fn avx512$(<$lt>)?($($arg: $ty),*) {
                    $generic::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2$(<$lt>)?($($arg: $ty),*) {
                    $generic::<true>($($arg),*)
                }
                match isa() {
                    // SAFETY: `isa` reports only what the CPU has (checked at run time).
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2Fma => return unsafe { avx2($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}

dispatched!(
    /// Softmax of whole rows.
    fn softmax_block(x: &[f32], out: &mut [f32], cols: usize) => softmax_rows
);
dispatched!(
    /// Log-softmax of whole rows.
    fn log_softmax_block(x: &[f32], out: &mut [f32], cols: usize) => log_softmax_rows
);
dispatched!(
    /// Log-sum-exp of whole rows.
    fn logsumexp_block(x: &[f32], out: &mut [f32], cols: usize) => logsumexp_rows
);
dispatched!(
    /// Softmax backward of whole rows.
    fn softmax_backward_block(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) => softmax_backward_rows
);
dispatched!(
    /// Log-softmax backward of whole rows.
    fn log_softmax_backward_block(y: &[f32], g: &[f32], out: &mut [f32], cols: usize) => log_softmax_backward_rows
);
dispatched!(
    /// Cross-entropy of whole rows.
    fn ce_block<'a>(cfg: &CeCfg<'a>, row0: usize, z: &[f32], out: &mut [RowOut], grad: Option<&mut [f32]>) => ce_rows
);
dispatched!(
    /// Cross-entropy of whole rows, the gradient over the logits.
    fn ce_block_in_place<'a>(cfg: &CeCfg<'a>, row0: usize, zg: &mut [f32], out: &mut [RowOut]) => ce_rows_in_place
);

/// Rows per rayon task, or `None` to run on the calling thread (small problems, one thread).
pub(super) fn rows_per_task(n: usize, cols: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    let work = n.saturating_mul(cols.saturating_add(ROW_COST));
    if threads < 2 || n < 2 || work < PAR_MIN_WORK {
        return None;
    }
    let tasks = (work / TASK_MIN_WORK)
        .clamp(2, threads * TASKS_PER_THREAD)
        .min(n);
    Some(n.div_ceil(tasks))
}

/// Runs `f(row0, out_block)` over blocks of rows, in parallel when it pays; `out` holds `per_row`
/// values per row.
pub(super) fn for_row_blocks<T: Send>(
    n: usize,
    cols: usize,
    out: &mut [T],
    per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    match rows_per_task(n, cols) {
        None => f(0, out),
        Some(rows) => out
            .par_chunks_mut(rows * per_row)
            .enumerate()
            .for_each(|(t, o)| f(t * rows, o)),
    }
}
