//! Run-time dispatch to the AVX2 + FMA copies, and the parallel driver over row blocks.

use super::*;

/// Environment variable that, set to `1`, keeps the hot loops on the portable build even where
/// AVX2 and FMA exist (to compare the two, and to test the portable build on such machines). Read
/// once, at the first call.
pub const PORTABLE_ENV: &str = "XENT_CPU_PORTABLE";

/// Whether the AVX2 + FMA copies run: the CPU has both and [`PORTABLE_ENV`] is not `1`. Checked
/// once.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
pub(super) fn has_avx2_fma() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::env::var_os(PORTABLE_ENV).is_none_or(|v| v != "1")
    })
}

/// Whether the hot loops run from copies compiled for AVX2 and FMA (x86 CPUs that have both,
/// unless [`PORTABLE_ENV`] is `1`); otherwise they run from the portable build (SSE2 on x86-64).
pub fn uses_avx2_fma() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        has_avx2_fma()
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// Defines `fn $name(args)` that runs `$generic::<true>` compiled with AVX2 + FMA when the CPU has
/// them, else `$generic::<false>` (the portable build).
macro_rules! dispatched {
    ($(#[$meta:meta])* fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$meta])*
        pub(super) fn $name$(<$lt>)?($($arg: $ty),*) {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2$(<$lt>)?($($arg: $ty),*) {
                    $generic::<true>($($arg),*)
                }
                if has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
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
