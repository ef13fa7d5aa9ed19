//! Shared test machinery: the contexts to run on, a seeded generator, and named tolerances.

use std::sync::{Mutex, MutexGuard, OnceLock};

use xent::{Context, ContextOptions, ReducePath};

/// Every context the GPU tests run on: each adapter, and on adapters with subgroups both reduction
/// paths. Printed once so the log says which ran.
///
/// The shared contexts are used by one test at a time: the returned guard holds a lock for as long as
/// it lives (a whole `for ctx in contexts() { … }` loop). wgpu's GL backend panics ("Could not lock
/// adapter context. This is most-likely a deadlock.") in a thread that waits more than a second for
/// the GL context while another thread's long kernel holds it — which parallel tests on 2 busy cores
/// did. Tests that open their own contexts (small bindings, GPU geometry) have their own locks.
pub fn contexts() -> Contexts {
    static CTXS: OnceLock<Vec<Context>> = OnceLock::new();
    static BUSY: Mutex<()> = Mutex::new(());
    let guard = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    Contexts {
        ctxs: CTXS.get_or_init(|| open_contexts(ContextOptions::from_env())),
        _guard: guard,
    }
}

/// The shared contexts, held exclusively while this lives (see [`contexts`]).
pub struct Contexts {
    ctxs: &'static [Context],
    _guard: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Contexts {
    type Target = [Context];
    fn deref(&self) -> &[Context] {
        self.ctxs
    }
}

/// Iterating keeps the guard alive until the loop ends.
pub struct ContextsIter {
    inner: std::slice::Iter<'static, Context>,
    _guard: MutexGuard<'static, ()>,
}

impl Iterator for ContextsIter {
    type Item = &'static Context;
    fn next(&mut self) -> Option<&'static Context> {
        self.inner.next()
    }
}

impl IntoIterator for Contexts {
    type Item = &'static Context;
    type IntoIter = ContextsIter;
    fn into_iter(self) -> ContextsIter {
        ContextsIter {
            inner: self.ctxs.iter(),
            _guard: self._guard,
        }
    }
}

/// The same adapters with the storage-binding limit lowered to `bytes`, so that small data crosses
/// many chunk boundaries.
pub fn small_binding_contexts(bytes: u64) -> Vec<Context> {
    open_contexts(ContextOptions {
        max_storage_binding: Some(bytes),
        ..ContextOptions::from_env()
    })
}

/// The same adapters with the GPU geometry (8 elements per lane: many lanes per row, rows kept in
/// workgroup memory between passes), which CPU drivers would otherwise never run. GL included since
/// pipelines skip WebGPU's zero fill of workgroup memory: llvmpipe's GL had run this geometry ~100×
/// slower than lavapipe, mostly that fill.
pub fn gpu_geometry_contexts() -> Vec<Context> {
    open_contexts(ContextOptions {
        elements_per_lane: Some(8),
        ..ContextOptions::from_env()
    })
}

/// Every adapter (both reduction paths where it has subgroups) opened with `base`.
pub fn open_contexts(base: ContextOptions) -> Vec<Context> {
    let adapters = pollster::block_on(xent::list_adapters(&base));
    let mut out = Vec::new();
    for adapter in &adapters {
        for use_subgroups in [true, false] {
            let opts = ContextOptions {
                use_subgroups,
                ..base.clone()
            };
            let ctx = pollster::block_on(Context::from_adapter(adapter, &opts))
                .unwrap_or_else(|e| panic!("adapter {:?}: {e}", adapter.get_info().name));
            let workgroup_only = ctx.reduce_path() == ReducePath::Workgroup;
            eprintln!("xent tests: running on {}", describe(&ctx));
            out.push(ctx);
            if workgroup_only {
                break; // no subgroups here: the workgroup path is the only one
            }
        }
    }
    if out.is_empty() {
        let required = std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "XENT_REQUIRE_GPU=1 but no adapter was found (install mesa-vulkan-drivers libvulkan1)"
        );
        eprintln!("xent tests: WARNING: no GPU adapter found; GPU tests SKIPPED (ran on nothing)");
    }
    out
}

/// "llvmpipe (LLVM 15.0.6, 256 bits) / Vulkan / Subgroup(8) / loop cap Some(65535)"
pub fn describe(ctx: &Context) -> String {
    format!(
        "{} / {:?} / {:?} / loop cap {:?}",
        ctx.adapter().name,
        ctx.adapter().backend,
        ctx.reduce_path(),
        ctx.loop_cap()
    )
}

/// SplitMix64: a tiny seeded generator, so every test's data is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// `n × cols` values uniform in [lo, hi) from `seed`: the one generator of test data.
pub fn random(seed: u64, n: usize, cols: usize, lo: f32, hi: f32) -> Vec<f32> {
    Rng::new(seed).vec(n * cols, lo, hi)
}

/// The one bit-identity rule of the suite: the same bits, element for element, where any two NaNs
/// count as equal (pipelines and instruction sets may give a NaN either sign or payload; every other
/// value, −0 against +0 included, must match exactly).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Tolerance `|gpu − ref| ≤ abs + rel·|ref|`. NaN must meet NaN and an infinity the same infinity.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

/// Probabilities and gradients (values in [−1, 1] scaled by weights): f32 exp has a few ulp of error,
/// and a lane's serial sum of N/tpr terms adds up to (N/tpr)·2⁻²⁴ relative to the row sum; 1e-5
/// relative covers N/tpr ≤ 4096 with margin, 2e-6 absolute covers values that round near 0.
pub const PROB: Tol = Tol {
    abs: 2e-6,
    rel: 1e-5,
};

/// Log-domain values (log-softmax, log-sum-exp, losses): the same relative bound, plus the
/// ulp of the logits' magnitude, which `z − M` carries: callers add `scale · 2⁻²³` to `abs`.
pub fn log_tol(scale: f32) -> Tol {
    Tol {
        abs: 2e-6 + scale.abs() as f64 * 2.0 * f32::EPSILON as f64,
        rel: 1e-5,
    }
}

/// Asserts `got` (GPU, f32) against `want` (reference) element by element; the message names the
/// context, the case and the first bad index.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol.abs + tol.rel * w.abs()
        };
        assert!(ok, "{what}: index {i}: got {g}, want {w} (tol {tol:?})");
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
