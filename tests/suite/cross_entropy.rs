//! Cross-entropy (fused forward + backward) and the information-theory kernel against the reference:
//! every option combination, edge cases, in-place, and bad input.

use proptest::prelude::*;
use xent::reference::{self, RefTargets};
use xent::{Context, CrossEntropyOptions, GpuLabels, GpuMatrix, Reduction, Targets, XentError};

use super::common::{
    PROB, Rng, assert_close, contexts, describe, log_tol, same_bits, small_binding_contexts,
};

/// One cross-entropy problem on the host.
#[derive(Clone, Debug)]
pub struct Case {
    pub logits: Vec<f32>,
    pub cols: usize,
    pub labels: Option<Vec<i64>>,
    pub probs: Option<Vec<f32>>,
    pub opts: CrossEntropyOptions,
}

impl Case {
    pub fn n(&self) -> usize {
        self.logits.len() / self.cols
    }

    pub fn reference(&self) -> reference::RefCrossEntropy {
        let t = match (&self.labels, &self.probs) {
            (Some(l), _) => RefTargets::Labels(l),
            (_, Some(p)) => RefTargets::Probs(p),
            _ => unreachable!(),
        };
        reference::cross_entropy(&self.logits, self.cols, t, &self.opts)
    }

    /// Runs the fused kernel (new buffer and in place); returns (loss as PyTorch shapes it, grad,
    /// per-row [loss, lse, argmax, correct], the batch stats [loss, denominator, accuracy, rows]).
    pub fn run(&self, ctx: &Context) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = self.n();
        let z = GpuMatrix::from_slice(ctx, &self.logits, n, self.cols).unwrap();
        let labels = self
            .labels
            .as_ref()
            .map(|l| GpuLabels::from_slice(ctx, l).unwrap());
        let probs = self
            .probs
            .as_ref()
            .map(|p| GpuMatrix::from_slice(ctx, p, n, self.cols).unwrap());
        let targets = match (&labels, &probs) {
            (Some(l), _) => Targets::Labels(l),
            (_, Some(p)) => Targets::Probs(p),
            _ => unreachable!(),
        };
        let out = ctx.cross_entropy_fwd_bwd(&z, targets, &self.opts).unwrap();
        let loss = out.read_loss(ctx).unwrap();
        let grad = out.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
        let rows = out.rows.read_blocking(ctx).unwrap();
        // The loss-only forward agrees with the fused one bit for bit on CPU drivers (lavapipe,
        // llvmpipe) and to rounding on GPUs (NVIDIA's compiler contracts multiply-adds differently in
        // the two pipelines, which moves a loss by a rounding of its terms z_y − M and log Σ: seen on
        // an H100, 2e-8 on 0.025 and 2e-12 on 4e-9); the in-place variant bit for bit (same pipeline
        // but for the output).
        let fwd = ctx.cross_entropy(&z, targets, &self.opts).unwrap();
        let loss_fwd = fwd.read_loss(ctx).unwrap();
        let agree = if ctx.adapter().device_type == wgpu::DeviceType::Cpu {
            same_bits(&loss, &loss_fwd)
        } else {
            agree_to_rounding(&loss, &loss_fwd)
        };
        assert!(agree, "forward-only loss {loss_fwd:?} != fused {loss:?}");
        let inplace = ctx
            .cross_entropy_fwd_bwd_in_place(z, targets, &self.opts)
            .unwrap();
        let g2 = inplace.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
        assert!(same_bits(&grad, &g2), "in-place gradient differs");
        let stats = out.stats.read_blocking(ctx).unwrap();
        (loss, grad, rows, stats)
    }
}

/// Equal bits, or finite values within a rounding of loss terms up to ~100 (f32 ulp 8e-6).
fn agree_to_rounding(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.to_bits() == y.to_bits()
                || (x.is_nan() && y.is_nan())
                || (x.is_finite() && y.is_finite() && (x - y).abs() <= 1e-5 + 1e-6 * x.abs())
        })
}

/// The GPU against the reference: the body every backend shares (`backends::check_ce`).
pub fn check_case(ctx: &Context, case: &Case, what: &str) {
    super::backends::check_ce(&super::backends::Backend::Gpu(ctx), case, what);
}

/// [`gen_case_with`] without the zero weight and target.
pub fn gen_case(seed: u64, n: usize, cols: usize, combo: u32) -> Case {
    gen_case_with(seed, n, cols, combo, false)
}

/// The combinations of `gen_case`'s bits that mean something: no unused bit 4, no duplicate smoothing,
/// no ignore_index with probability targets.
pub fn combos() -> impl Iterator<Item = u32> {
    (0..512u32).filter(|c| c & 4 == 0 && (c >> 4) & 3 != 3 && !(c & 1 != 0 && c & 256 != 0))
}

/// A cross-entropy problem from the bits of `combo`: 1 probability targets, 2·3 reduction, 8 weights,
/// 16·3 smoothing {0, .1, 1}, 64 z-loss + softcap, 128 logit scale 30, 256 ignore_index (labels).
/// `harsh` adds a zero class weight and a zero target probability in every row.
pub fn gen_case_with(seed: u64, n: usize, cols: usize, combo: u32, harsh: bool) -> Case {
    let mut rng = Rng::new(seed);
    let scale = [3.0, 30.0][(combo as usize >> 7) & 1];
    let logits = rng.vec(n * cols, -scale, scale);
    let mut opts = CrossEntropyOptions {
        reduction: [Reduction::Mean, Reduction::Sum, Reduction::None][(combo as usize >> 1) % 3],
        ..CrossEntropyOptions::default()
    };
    if combo & 8 != 0 {
        let mut w = rng.vec(cols, 0.0, 2.0);
        if harsh && cols > 2 {
            w[1] = 0.0; // a zero weight
        }
        opts.weight = Some(w);
    }
    opts.label_smoothing = [0.0, 0.1, 1.0, 0.0][(combo as usize >> 4) & 3];
    if combo & 64 != 0 {
        opts.z_loss = 1e-3;
        opts.softcap = Some(5.0);
    }
    let (labels, probs) = if combo & 1 != 0 {
        let mut p = rng.vec(n * cols, 0.0, 1.0);
        for row in p.chunks_exact_mut(cols) {
            if harsh {
                row[0] = 0.0; // a zero target
            }
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s.max(1e-30));
        }
        (None, Some(p))
    } else {
        let ignore = combo & 256 != 0;
        if ignore {
            opts.ignore_index = 3;
        }
        let l = (0..n)
            .map(|i| {
                if ignore && i % 3 == 0 {
                    3
                } else {
                    rng.below(cols) as i64
                }
            })
            .collect();
        (Some(l), None)
    };
    Case {
        logits,
        cols,
        labels,
        probs,
        opts,
    }
}

/// Runs every meaningful option combination once, on the case `case(combo)` builds, on every adapter;
/// returns how many combinations ran.
fn option_matrix(what: &str, case: impl Fn(u32) -> Case) -> usize {
    let mut covered = 0;
    for combo in combos() {
        let case = case(combo);
        let (n, cols) = (case.n(), case.cols);
        for ctx in contexts() {
            check_case(
                ctx,
                &case,
                &format!("{what} combo {combo} {n}×{cols} {:?}", case.opts),
            );
        }
        covered += 1;
    }
    covered
}

#[test]
fn option_matrix_matches_reference() {
    // Every combination of: labels/probs × reduction × weight × smoothing {0, .1, 1} × (z-loss +
    // softcap) × logit scale × ignore_index, on shapes that cross the workgroup width.
    let covered = option_matrix("", |combo| {
        let (n, cols) = [(7, 5), (5, 300), (3, 1), (4, 1000)][combo as usize % 4];
        gen_case(combo as u64, n, cols, combo)
    });
    assert_eq!(covered, 144, "option combinations covered");
}

/// Every option combination on narrow rows (N ≤ 16, not a multiple of 4), which a lane-per-row adapter
/// runs packed several rows to a lane, with leftover rows on the row kernel; zero weights and targets.
#[test]
fn option_matrix_on_narrow_rows() {
    let covered = option_matrix("narrow", |combo| {
        // The shape follows only the bits that change the kernel's pipeline (targets, weights,
        // smoothing, z-loss + softcap), so each pipeline is built for one row length: every length
        // still meets several option sets, and the test stays within a few minutes on a cold shader
        // cache.
        let shape = ((combo & 1) + (combo >> 3) % 16) as usize % 6;
        let (n, cols) = [(9, 1), (13, 3), (11, 6), (10, 7), (9, 10), (6, 15)][shape];
        gen_case_with(combo as u64 + 7000, n, cols, combo, true)
    });
    assert_eq!(covered, 144, "option combinations covered");
}

#[test]
fn wide_rows_and_chunking() {
    let case = gen_case(77, 3, 70_000, 8 | 16 | 64);
    for ctx in contexts() {
        check_case(ctx, &case, "N=70000");
    }
    let case = gen_case(78, 200, 37, 8 | 16 | 2);
    for ctx in small_binding_contexts(4096) {
        check_case(&ctx, &case, "4 KiB bindings");
    }
}

/// Batches over several of ce_reduce's slices of 4,096 rows, the last one partial: mean over weighted,
/// partly ignored labels, and the sum of probability-target losses. (Under small bindings a batch is
/// always one slice: its row outputs, 16 bytes a row, are bound whole.)
#[test]
fn batch_sums_over_many_slices() {
    let labels = gen_case(79, 9000, 5, 8 | 256);
    let probs = gen_case(80, 9000, 3, 1 | 2);
    // Also under the GPU geometry: a slice walked by a whole workgroup, interleaved, 4 steps a loop.
    let (shared, geometry) = (contexts(), super::common::gpu_geometry_contexts());
    for ctx in shared.iter().chain(geometry.iter()) {
        check_case(ctx, &labels, "n=9000, labels");
        check_case(ctx, &probs, "n=9000, probabilities");
    }
}

/// Four rows of 5 logits with PyTorch's awkward cases: a −inf mask off the target, a −inf target
/// logit (loss +inf, gradient finite), a NaN (loss and gradient NaN), and logits of ±1e4.
pub fn edge_rows() -> Vec<f32> {
    let ninf = f32::NEG_INFINITY;
    vec![
        1.0,
        2.0,
        ninf,
        0.5,
        0.0, // −inf mask off the target
        ninf,
        1.0,
        2.0,
        3.0,
        4.0, // −inf target logit
        1.0,
        f32::NAN,
        0.0,
        0.0,
        0.0, // NaN
        1e4,
        -1e4,
        0.0,
        5e3,
        -5e3, // huge logits
    ]
}

#[test]
fn edge_cases_as_pytorch() {
    let cols = 5;
    let logits = edge_rows();
    let case = Case {
        logits,
        cols,
        labels: Some(vec![0, 0, 1, 1]),
        probs: None,
        opts: CrossEntropyOptions {
            reduction: Reduction::None,
            ..Default::default()
        },
    };
    for ctx in contexts() {
        let (loss, grad, rows, _) = case.run(ctx);
        assert!(
            loss[0].is_finite() && grad[2] == 0.0,
            "mask: {loss:?} {grad:?}"
        );
        assert_eq!(loss[1], f32::INFINITY);
        assert!(
            grad[5..10].iter().all(|g| g.is_finite()) && grad[5] == -1.0,
            "{grad:?}"
        );
        assert!(loss[2].is_nan() && grad[10..15].iter().all(|g| g.is_nan()));
        assert!((loss[3] - 2e4).abs() <= 2e4 * 1e-6, "{}", loss[3]);
        assert_eq!(rows[2], 1.0, "argmax of row 0");
        assert_eq!(rows[4 * 3 + 2], 0.0, "argmax of row 3");
        check_case(ctx, &case, "edge cases");
    }
}

#[test]
fn all_rows_ignored_and_empty_batch() {
    for ctx in contexts() {
        let case = Case {
            logits: vec![0.5; 12],
            cols: 4,
            labels: Some(vec![-100, -100, -100]),
            probs: None,
            opts: CrossEntropyOptions::default(),
        };
        let (loss, grad, _, _) = case.run(ctx);
        assert!(
            loss[0].is_nan(),
            "mean over no rows is NaN (PyTorch), got {loss:?}"
        );
        assert!(
            grad.iter().all(|&g| g == 0.0),
            "ignored rows get a zero gradient"
        );
        for (red, want) in [(Reduction::Mean, f32::NAN), (Reduction::Sum, 0.0)] {
            let z = GpuMatrix::from_slice(ctx, &[], 0, 4).unwrap();
            let l = GpuLabels::from_slice::<i64>(ctx, &[]).unwrap();
            let opts = CrossEntropyOptions {
                reduction: red,
                ..Default::default()
            };
            let out = ctx
                .cross_entropy_fwd_bwd(&z, Targets::Labels(&l), &opts)
                .unwrap();
            let got = out.read_loss(ctx).unwrap()[0];
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{red:?}: {got}"
            );
        }
    }
}

#[test]
fn accuracy_and_argmax() {
    let logits = vec![
        3.0, 1.0, 0.0, /**/ 0.0, 2.0, 2.0, /**/ 1.0, 1.0, 5.0, /**/ 9.0, 0.0, 0.0,
    ];
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &logits, 4, 3).unwrap();
        let l = GpuLabels::from_slice(ctx, &[0u32, 2, 2, 1]).unwrap();
        let out = ctx
            .cross_entropy(&z, Targets::Labels(&l), &CrossEntropyOptions::default())
            .unwrap();
        assert_eq!(
            out.read_row_column(ctx, 2).unwrap(),
            vec![0.0, 1.0, 2.0, 0.0],
            "first maximal class"
        );
        let stats = out.stats.read_blocking(ctx).unwrap();
        assert_eq!(
            (stats[2], stats[3]),
            (0.5, 4.0),
            "accuracy over 4 labelled rows"
        );
    }
}

#[test]
fn per_row_upstream_gradient() {
    let case = gen_case(5, 6, 40, 2 * 2); // reduction none
    let up: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
    let r = case.reference();
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &case.logits, 6, 40).unwrap();
        let l = GpuLabels::from_slice(ctx, case.labels.as_ref().unwrap()).unwrap();
        let u = GpuMatrix::from_slice(ctx, &up, 6, 1).unwrap();
        let out = ctx
            .cross_entropy_with_row_upstream(&z, Targets::Labels(&l), &case.opts, &u)
            .unwrap();
        let g = out.grad.unwrap().read_blocking(ctx).unwrap();
        let want: Vec<f64> = r
            .grad
            .iter()
            .enumerate()
            .map(|(k, &v)| v * up[k / 40] as f64)
            .collect();
        assert_close("per-row upstream", &g, &want, PROB);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &[0.0; 6], 2, 3).unwrap();
        let ce = |labels: &[i64], opts: CrossEntropyOptions| {
            let l = GpuLabels::from_slice(ctx, labels).unwrap();
            ctx.cross_entropy_fwd_bwd(&z, Targets::Labels(&l), &opts)
                .unwrap_err()
        };
        let d = CrossEntropyOptions::default;
        let e = ce(&[0, 3], d());
        assert!(
            matches!(
                e,
                XentError::LabelOutOfRange {
                    row: 1,
                    label: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = ce(&[-1, 0], d());
        assert!(e.to_string().contains("row 0"), "{e}");
        assert!(matches!(ce(&[0], d()), XentError::LengthMismatch { .. }));
        let e = ce(
            &[0, 1],
            CrossEntropyOptions {
                weight: Some(vec![1.0, f32::NAN, 1.0]),
                ..d()
            },
        );
        assert!(e.to_string().contains("class 1"), "{e}");
        assert!(matches!(
            ce(
                &[0, 1],
                CrossEntropyOptions {
                    weight: Some(vec![1.0]),
                    ..d()
                }
            ),
            XentError::LengthMismatch { .. }
        ));
        assert!(
            ce(
                &[0, 1],
                CrossEntropyOptions {
                    label_smoothing: 1.5,
                    ..d()
                }
            )
            .to_string()
            .contains("1.5")
        );
        assert!(
            ce(
                &[0, 1],
                CrossEntropyOptions {
                    softcap: Some(0.0),
                    ..d()
                }
            )
            .to_string()
            .contains("softcap")
        );
        let t = GpuMatrix::from_slice(ctx, &[0.0; 4], 2, 2).unwrap();
        let e = ctx.cross_entropy(&z, Targets::Probs(&t), &d()).unwrap_err();
        assert!(matches!(e, XentError::ShapeMismatch { .. }), "{e}");
        assert!(GpuLabels::from_slice(ctx, &[1i64 << 40]).is_err());
    }
}

#[test]
fn information_theory_rows() {
    let (n, cols) = (9, 300);
    let mut rng = Rng::new(99);
    let mut z = rng.vec(n * cols, -4.0, 4.0);
    z[7] = f32::NEG_INFINITY;
    let mut t = rng.vec(n * cols, 0.0, 1.0);
    t[..cols].iter_mut().step_by(2).for_each(|v| *v = 0.0); // zeros: 0·log 0 = 0
    for row in t.chunks_exact_mut(cols) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    let want = reference::info_rows(&z, Some(&t), cols);
    // The adapters here, and the same under the GPU geometry (the interleaved walk, 4 steps a loop).
    let (shared, geometry) = (contexts(), super::common::gpu_geometry_contexts());
    for ctx in shared.iter().chain(geometry.iter()) {
        let zm = GpuMatrix::from_slice(ctx, &z, n, cols).unwrap();
        let tm = GpuMatrix::from_slice(ctx, &t, n, cols).unwrap();
        let got = ctx
            .info_rows(&zm, Some(&tm), false)
            .unwrap()
            .read_blocking(ctx)
            .unwrap();
        for k in 0..3 {
            let g: Vec<f32> = got.chunks_exact(4).map(|r| r[k]).collect();
            let w: Vec<f64> = want.iter().map(|r| r[k]).collect();
            assert_close(
                &format!("info column {k} on {}", describe(ctx)),
                &g,
                &w,
                log_tol(8.0),
            );
        }
        let bits = ctx
            .info_rows(&zm, None, true)
            .unwrap()
            .read_blocking(ctx)
            .unwrap();
        assert!((bits[0] as f64 - want[0][0] / std::f64::consts::LN_2).abs() < 1e-4);
        assert_eq!(bits[1], 0.0, "no targets: no cross-entropy");
        // KL(P‖P) = 0 with P = softmax(z).
        let p = xent::reference::softmax(&z, cols);
        let pm = GpuMatrix::from_slice(ctx, &p, n, cols).unwrap();
        let kl = ctx
            .info_rows(&zm, Some(&pm), false)
            .unwrap()
            .read_blocking(ctx)
            .unwrap();
        assert!(
            kl.chunks_exact(4).all(|r| r[2].abs() < 1e-5),
            "KL(P‖P) {kl:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_problems_match_reference(n in 1usize..24, cols in 1usize..700, combo in 0u32..512, seed in any::<u64>()) {
        let combo = combo & !4 & !(if combo & 1 != 0 { 256 } else { 0 });
        let case = gen_case(seed, n, cols, combo);
        for ctx in contexts() {
            check_case(ctx, &case, &format!("seed {seed} combo {combo} {n}×{cols}"));
        }
    }
}

/// Per-row outputs are bound whole: a batch whose per-row vectors pass the binding limit is a clear
/// error, not a wgpu validation failure.
#[test]
fn per_row_outputs_past_binding_limit_are_an_error() {
    for ctx in small_binding_contexts(4096) {
        let z = GpuMatrix::zeros(&ctx, 2000, 2).unwrap();
        let l = GpuLabels::from_slice(&ctx, &vec![0i64; 2000]).unwrap();
        let err = ctx
            .cross_entropy(&z, Targets::Labels(&l), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(matches!(err, XentError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("max_storage_buffer_binding_size"),
            "{err}"
        );
    }
}

/// A spread of option combinations again with the GPU geometry (rows kept in workgroup memory), on
/// the first adapter only (every combination is a new pipeline to compile).
#[test]
fn option_matrix_with_gpu_geometry() {
    let ctxs = super::common::gpu_geometry_contexts();
    let ctxs = &ctxs[..ctxs.len().min(1)];
    for combo in combos().filter(|c| c % 29 == 0) {
        let (n, cols) = [(9, 12), (5, 300), (3, 1), (4, 1000), (2, 2500)][combo as usize % 5];
        let case = gen_case(combo as u64 + 1000, n, cols, combo);
        for ctx in ctxs {
            check_case(
                ctx,
                &case,
                &format!("GPU geometry combo {combo} {n}×{cols}"),
            );
        }
    }
}
