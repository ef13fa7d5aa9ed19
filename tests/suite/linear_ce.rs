//! Fused linear cross-entropy (`xent::linear_ce`) on every backend against the f64 reference,
//! materialised: every option on awkward shapes, bit-identity across memory budgets and runs,
//! accumulation, finite differences of the reference's gradients, and bad input.

use xent::cpu::{self, CpuLinear, CpuLinearGrads, CpuTargets};
use xent::linear_ce::{LinearCeOptions, LinearCeResult, LinearShape};
use xent::reference::{self, RefTargets};
use xent::{CrossEntropyOptions, Reduction, XentError};

use super::backends::{Backend, backends};
use super::common::{Rng, Tol, assert_close, same_bits};

/// One problem: X n × d, W V × d, an optional bias, labels or probabilities.
#[derive(Clone, Debug)]
pub struct Problem {
    pub shape: LinearShape,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub labels: Option<Vec<i64>>,
    pub probs: Option<Vec<f32>>,
}

impl Problem {
    /// Seeded data; every `ignore_every`-th label (if any) is −100.
    pub fn new(seed: u64, n: usize, d: usize, v: usize, probs: bool, ignore_every: usize) -> Self {
        let mut r = Rng::new(seed);
        let x = r.vec(n * d, -1.0, 1.0);
        let w = r.vec(v * d, -1.5, 1.5);
        let bias = Some(r.vec(v, -0.5, 0.5));
        let (labels, probs) = if probs {
            let mut p = r.vec(n * v, 0.0, 1.0);
            for row in p.chunks_exact_mut(v) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
            }
            (None, Some(p))
        } else {
            let l = (0..n)
                .map(|i| {
                    if ignore_every > 0 && i % ignore_every == 1 {
                        -100
                    } else {
                        r.below(v) as i64
                    }
                })
                .collect();
            (Some(l), None)
        };
        Self {
            shape: LinearShape { n, d, classes: v },
            x,
            w,
            bias,
            labels,
            probs,
        }
    }

    pub fn cpu_targets(&self) -> CpuTargets<'_> {
        match (&self.labels, &self.probs) {
            (Some(l), _) => CpuTargets::Labels(l),
            (None, Some(p)) => CpuTargets::Probs(p),
            (None, None) => unreachable!(),
        }
    }

    pub fn ref_targets(&self) -> RefTargets<'_> {
        match (&self.labels, &self.probs) {
            (Some(l), _) => RefTargets::Labels(l),
            (None, Some(p)) => RefTargets::Probs(p),
            (None, None) => unreachable!(),
        }
    }
}

/// Everything one call gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Lce {
    pub result: LinearCeResult,
    pub dx: Vec<f32>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
}

impl Backend<'_> {
    /// The fused call with every gradient, `dW`/`db` starting from `start` (accumulated into when
    /// `opts.accumulate`).
    pub fn linear_ce(&self, p: &Problem, opts: &LinearCeOptions, start: Option<&Lce>) -> Lce {
        let LinearShape { n, d, classes } = p.shape;
        let mut dx = vec![f32::NAN; n * d];
        let (mut dw, mut db) = match start {
            Some(s) => (s.dw.clone(), s.db.clone()),
            None => (vec![f32::NAN; classes * d], vec![f32::NAN; classes]),
        };
        match self {
            Backend::Cpu => {
                let grads = CpuLinearGrads {
                    input: Some(&mut dx),
                    weight: Some(&mut dw),
                    bias: Some(&mut db),
                };
                let result = cpu_call(p, opts, grads).unwrap();
                Lce { result, dx, dw, db }
            }
            Backend::Gpu(ctx) => super::linear_ce_gpu::run(ctx, p, opts, start, false),
        }
    }
}

/// The CPU path's call on `p`.
pub fn cpu_call(
    p: &Problem,
    opts: &LinearCeOptions,
    grads: CpuLinearGrads<'_>,
) -> Result<LinearCeResult, XentError> {
    cpu::linear_cross_entropy(
        CpuLinear {
            x: &p.x,
            weight: &p.w,
            bias: p.bias.as_deref(),
            shape: p.shape,
        },
        p.cpu_targets(),
        opts,
        grads,
    )
}

/// The options of the table: every cross-entropy option, alone and together.
pub fn option_cases(v: usize, n: usize) -> Vec<(String, bool, LinearCeOptions)> {
    let ce = |f: &dyn Fn(&mut CrossEntropyOptions)| {
        let mut o = CrossEntropyOptions::default();
        f(&mut o);
        LinearCeOptions {
            ce: o,
            ..Default::default()
        }
    };
    let weights: Vec<f32> = (0..v).map(|j| 0.25 + (j % 5) as f32 * 0.5).collect();
    let mut cases = vec![
        ("plain mean".to_string(), false, ce(&|_| {})),
        ("sum".into(), false, ce(&|o| o.reduction = Reduction::Sum)),
        (
            "weights + ignore".into(),
            false,
            ce(&|o| o.weight = Some(weights.clone())),
        ),
        (
            "smoothing 0.1".into(),
            false,
            ce(&|o| o.label_smoothing = 0.1),
        ),
        (
            "smoothing 1".into(),
            false,
            ce(&|o| o.label_smoothing = 1.0),
        ),
        (
            "z-loss + softcap".into(),
            false,
            ce(&|o| {
                o.z_loss = 1e-3;
                o.softcap = Some(3.0);
            }),
        ),
        (
            "grad_output 0.5, smoothing + weights".into(),
            false,
            ce(&|o| {
                o.grad_output = 0.5;
                o.label_smoothing = 0.1;
                o.weight = Some(weights.clone());
            }),
        ),
        ("soft targets".into(), true, ce(&|_| {})),
        (
            "soft targets, smoothing, sum".into(),
            true,
            ce(&|o| {
                o.label_smoothing = 0.2;
                o.reduction = Reduction::Sum;
            }),
        ),
    ];
    let mut none = ce(&|o| o.reduction = Reduction::None);
    none.row_upstream = Some(Rng::new(77).vec(n, -2.0, 2.0));
    cases.push(("none, per-row upstream".into(), false, none));
    cases.push(("none".into(), false, ce(&|o| o.reduction = Reduction::None)));
    cases
}

/// Tolerance for a product of gradients with operands: relative to the largest |value| of the
/// reference (each element sums d or n or V terms of f32 products).
fn product_tol(want: &[f64]) -> Tol {
    let scale = want.iter().fold(0f64, |a, b| a.max(b.abs()));
    Tol {
        abs: 1e-6 + 2e-5 * scale,
        rel: 2e-5,
    }
}

/// The call on `b` against the reference: loss, row losses, dX, dW, db.
/// Returns the worst errors, each relative to the reference's largest |value|: loss (the row
/// losses), dX, dW, db.
pub fn check_against_reference(
    b: &Backend<'_>,
    p: &Problem,
    opts: &LinearCeOptions,
    what: &str,
) -> [f64; 4] {
    let got = b.linear_ce(p, opts, None);
    let want = reference::linear_cross_entropy(
        &p.x,
        &p.w,
        p.bias.as_deref(),
        p.shape.d,
        p.ref_targets(),
        &opts.ce,
        opts.row_upstream.as_deref(),
    );
    let what = |k: &str| format!("{what}: {k} on {}", b.name());
    let lt = Tol {
        abs: 2e-5,
        rel: 2e-5,
    };
    assert_close(&what("loss"), &[got.result.loss], &[want.ce.loss], lt);
    assert_close(
        &what("row losses"),
        &got.result.row_loss,
        &want.ce.row_loss,
        lt,
    );
    assert_close(
        &what("denominator"),
        &[got.result.denominator],
        &[want.ce.denominator],
        lt,
    );
    assert_close(
        &what("dX"),
        &got.dx,
        &want.grad_input,
        product_tol(&want.grad_input),
    );
    assert_close(
        &what("dW"),
        &got.dw,
        &want.grad_weight,
        product_tol(&want.grad_weight),
    );
    assert_close(
        &what("db"),
        &got.db,
        &want.grad_bias,
        product_tol(&want.grad_bias),
    );
    let worst = |got: &[f32], want: &[f64]| {
        let scale = want.iter().fold(0f64, |a, w| a.max(w.abs()));
        let err = got
            .iter()
            .zip(want)
            .filter(|(_, w)| w.is_finite())
            .fold(0f64, |a, (&g, w)| a.max((g as f64 - w).abs()));
        if scale > 0.0 { err / scale } else { err }
    };
    [
        worst(&got.result.row_loss, &want.ce.row_loss),
        worst(&got.dx, &want.grad_input),
        worst(&got.dw, &want.grad_weight),
        worst(&got.db, &want.grad_bias),
    ]
}

/// Shapes: V not a multiple of any tile, d = 1, V = 1, n = 0, rows of one block and of several.
const SHAPES: [(usize, usize, usize); 6] = [
    (13, 7, 29),
    (9, 1, 6),
    (5, 4, 1),
    (0, 3, 5),
    (1, 3, 70),
    (70, 9, 33),
];

#[test]
fn every_option_on_every_shape_matches_the_reference() {
    // The worst error of each option on each backend over all shapes, printed as a table.
    let mut table: Vec<(String, String, [f64; 4])> = Vec::new();
    for b in backends() {
        for (si, &(n, d, v)) in SHAPES.iter().enumerate() {
            for (name, soft, opts) in option_cases(v, n) {
                let p = Problem::new(si as u64 * 31 + 5, n, d, v, soft, 3);
                let mut o = opts.clone();
                o.row_block = 4;
                o.budget_bytes = Some((v * 4 * 8) as u64);
                let e = check_against_reference(&b, &p, &o, &format!("{name} at {n}×{d}×{v}"));
                let backend = b.name();
                match table
                    .iter_mut()
                    .find(|(o, bk, _)| *o == name && *bk == backend)
                {
                    Some((_, _, w)) => w.iter_mut().zip(e).for_each(|(w, e)| *w = w.max(e)),
                    None => table.push((name, backend, e)),
                }
            }
        }
    }
    println!(
        "linear cross-entropy against the f64 reference, worst error ÷ the largest |value|, over the shapes {SHAPES:?}:"
    );
    println!(
        "{:40} {:11} {:11} {:11} {:11}  backend",
        "option", "row loss", "dX", "dW", "db"
    );
    for (o, b, e) in &table {
        println!(
            "{o:40} {:<11.2e} {:<11.2e} {:<11.2e} {:<11.2e}  {b}",
            e[0], e[1], e[2], e[3]
        );
    }
}

/// A vocabulary past the loop cap of lavapipe/llvmpipe: `dX = G W`'s reduction over 40,000 classes
/// runs in pieces there.
#[test]
fn a_vocabulary_past_the_loop_cap_matches_the_reference() {
    for b in backends() {
        let p = Problem::new(77, 5, 3, 40_000, false, 4);
        check_against_reference(&b, &p, &LinearCeOptions::default(), "5×3×40000");
    }
}

/// A mean over rows whose class weights sum to 0: PyTorch's 0/0, a NaN loss and NaN gradients, on
/// every backend — not an error (the chunks' non-finite scale goes through as a per-row upstream).
#[test]
fn a_zero_mean_denominator_gives_nan_not_an_error() {
    for b in backends() {
        let mut p = Problem::new(8, 9, 3, 5, false, 0);
        p.labels = Some(vec![0; 9]);
        let opts = LinearCeOptions {
            ce: CrossEntropyOptions {
                weight: Some(vec![0.0, 1.0, 1.0, 1.0, 1.0]),
                ..Default::default()
            },
            ..Default::default()
        };
        let got = b.linear_ce(&p, &opts, None);
        let what = b.name();
        assert_eq!(got.result.denominator, 0.0, "{what}");
        assert!(got.result.loss.is_nan(), "{what}: loss {}", got.result.loss);
        assert!(got.dx.iter().all(|g| g.is_nan()), "{what}: dX {:?}", got.dx);
    }
}

#[test]
fn all_rows_ignored_gives_nan_mean_and_zero_gradients() {
    for b in backends() {
        let mut p = Problem::new(3, 6, 4, 7, false, 0);
        p.labels = Some(vec![-100; 6]);
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let opts = LinearCeOptions {
                ce: CrossEntropyOptions {
                    reduction,
                    ..Default::default()
                },
                ..Default::default()
            };
            let got = b.linear_ce(&p, &opts, None);
            let what = format!("{reduction:?} on {}", b.name());
            assert_eq!(
                got.result.loss.is_nan(),
                reduction == Reduction::Mean,
                "{what}"
            );
            assert_eq!(got.result.chunks, 0, "{what}: no row was computed");
            assert!(
                got.dx
                    .iter()
                    .chain(&got.dw)
                    .chain(&got.db)
                    .all(|&g| g == 0.0),
                "{what}"
            );
        }
    }
}

/// Row losses and every gradient of `got` bit for bit those of `want`.
#[track_caller]
fn assert_same_bits(got: &Lce, want: &Lce, what: &str) {
    assert!(
        same_bits(&got.result.row_loss, &want.result.row_loss),
        "{what}: row losses"
    );
    assert!(same_bits(&got.dx, &want.dx), "{what}: dX");
    assert!(same_bits(&got.dw, &want.dw), "{what}: dW");
    assert!(same_bits(&got.db, &want.db), "{what}: db");
}

/// Every result bit-identical across budgets (chunks of 1 row up to the whole batch) and runs, at
/// each row block.
#[test]
fn results_are_bit_identical_across_budgets_and_runs() {
    for b in backends() {
        for (soft, ignore) in [(false, 3), (true, 0)] {
            let p = Problem::new(11, 37, 6, 23, soft, ignore);
            for row_block in [1, 4, 128] {
                let run = |rows: usize| {
                    let opts = LinearCeOptions {
                        row_block,
                        budget_bytes: Some((rows * 23 * 4) as u64),
                        ..Default::default()
                    };
                    b.linear_ce(&p, &opts, None)
                };
                let first = run(1);
                for rows in [1, 2, 5, 8, 13, 37, 1000] {
                    let got = run(rows);
                    let what = format!("row block {row_block}, {rows}-row budget on {}", b.name());
                    assert!(
                        same_bits(&[got.result.loss], &[first.result.loss]),
                        "{what}: loss"
                    );
                    assert_same_bits(&got, &first, &what);
                }
                if row_block == 1 {
                    assert_eq!(
                        first.result.chunk_rows, 1,
                        "a one-row budget runs chunks of 1 row"
                    );
                }
            }
        }
        // Narrow vocabularies (the GPU packs rows of N ≤ 16, N not a multiple of 4, in twos or
        // fours, with other bits than single rows): chunks are whole packs, so still the same bits.
        for v in [3, 5, 6, 7, 10, 13] {
            for soft in [false, true] {
                let p = Problem::new(50 + v as u64, 37, 6, v, soft, if soft { 0 } else { 5 });
                let run = |rows: usize| {
                    let opts = LinearCeOptions {
                        row_block: 1,
                        budget_bytes: Some((rows * v * 4) as u64),
                        ..Default::default()
                    };
                    b.linear_ce(&p, &opts, None)
                };
                let first = run(1);
                for rows in [2, 3, 5, 6, 9, 37] {
                    let got = run(rows);
                    let what = format!("V={v}, soft {soft}, {rows}-row budget on {}", b.name());
                    assert_same_bits(&got, &first, &what);
                }
            }
        }
        // Products large enough for matrixmultiply's threads and the GPU's wider tiles.
        let p = Problem::new(12, 700, 64, 600, false, 7);
        let run = |rows: usize| {
            let opts = LinearCeOptions {
                budget_bytes: Some((rows * 600 * 4) as u64),
                ..Default::default()
            };
            b.linear_ce(&p, &opts, None)
        };
        let first = run(128);
        for rows in [256, 384, 1000] {
            let got = run(rows);
            let what = format!("700×64×600, {rows}-row budget on {}", b.name());
            assert!(
                got.result.chunks < first.result.chunks,
                "{what}: fewer chunks"
            );
            assert_same_bits(&got, &first, &what);
        }
    }
}

#[test]
fn accumulate_adds_into_the_callers_gradients() {
    for b in backends() {
        let p = Problem::new(21, 19, 5, 11, false, 4);
        let opts = LinearCeOptions::default();
        let fresh = b.linear_ce(&p, &opts, None);
        let acc = LinearCeOptions {
            accumulate: true,
            ..Default::default()
        };
        let twice = b.linear_ce(&p, &acc, Some(&fresh));
        let want: Vec<f64> = fresh.dw.iter().map(|&g| 2.0 * g as f64).collect();
        assert_close(
            &format!("2 dW on {}", b.name()),
            &twice.dw,
            &want,
            product_tol(&want),
        );
        let want: Vec<f64> = fresh.db.iter().map(|&g| 2.0 * g as f64).collect();
        assert_close(
            &format!("2 db on {}", b.name()),
            &twice.db,
            &want,
            product_tol(&want),
        );
        assert!(
            same_bits(&twice.dx, &fresh.dx),
            "dX is overwritten, not accumulated"
        );
    }
}

/// The reference's closed-form gradients against central differences of its loss, in f64.
#[test]
fn reference_gradients_match_finite_differences() {
    for (name, soft, opts) in option_cases(5, 4) {
        let p = Problem::new(9, 4, 3, 5, soft, 3);
        let loss = |x: &[f32], w: &[f32], bias: &[f32]| -> f64 {
            let r = reference::linear_cross_entropy(
                x,
                w,
                Some(bias),
                3,
                p.ref_targets(),
                &opts.ce,
                opts.row_upstream.as_deref(),
            );
            // With a per-row upstream u, the objective is Σ u_i loss_i; else grad_output × loss.
            match &opts.row_upstream {
                Some(u) => {
                    r.ce.row_loss
                        .iter()
                        .zip(u)
                        .map(|(l, &u)| l * u as f64)
                        .sum()
                }
                None => r.ce.loss * opts.ce.grad_output as f64,
            }
        };
        let bias = p.bias.clone().unwrap();
        let want = reference::linear_cross_entropy(
            &p.x,
            &p.w,
            Some(&bias),
            3,
            p.ref_targets(),
            &opts.ce,
            opts.row_upstream.as_deref(),
        );
        let h = 1e-3f32;
        let fd = |which: usize, i: usize| {
            let (mut x, mut w, mut b) = (p.x.clone(), p.w.clone(), bias.clone());
            let v = [&mut x, &mut w, &mut b][which].as_mut_slice();
            let (up, down) = (v[i] + h, v[i] - h);
            v[i] = up;
            let lp = loss(&x, &w, &b);
            let v = [&mut x, &mut w, &mut b][which].as_mut_slice();
            v[i] = down;
            let lm = loss(&x, &w, &b);
            (lp - lm) / (up as f64 - down as f64)
        };
        for (which, grad) in [&want.grad_input, &want.grad_weight, &want.grad_bias]
            .into_iter()
            .enumerate()
        {
            for (i, &g) in grad.iter().enumerate() {
                let f = fd(which, i);
                assert!(
                    (f - g).abs() <= 2e-3 * (1.0 + g.abs()),
                    "{name}: operand {which} index {i}: finite difference {f}, closed form {g}"
                );
            }
        }
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let p = Problem::new(1, 4, 3, 5, false, 0);
    let call = |p: &Problem, opts: &LinearCeOptions, dx_len: usize| {
        let mut dx = vec![7.0; dx_len];
        let mut dw = vec![7.0; 15];
        let grads = CpuLinearGrads {
            input: Some(&mut dx),
            weight: Some(&mut dw),
            bias: None,
        };
        let r = cpu_call(p, opts, grads);
        assert!(
            dx.iter().chain(&dw).all(|&v| v == 7.0),
            "an output was written"
        );
        r.unwrap_err()
    };
    let ok = LinearCeOptions::default();
    assert!(matches!(
        call(&p, &ok, 11),
        XentError::LengthMismatch { .. }
    ));
    let mut bad = p.clone();
    bad.labels = Some(vec![0, 5, 1, 2]);
    assert!(matches!(
        call(&bad, &ok, 12),
        XentError::LabelOutOfRange { row: 1, .. }
    ));
    let mut bad = p.clone();
    bad.w.pop();
    assert!(matches!(
        call(&bad, &ok, 12),
        XentError::LengthMismatch { .. }
    ));
    let mut bad = p.clone();
    bad.shape.d = 0;
    assert!(matches!(call(&bad, &ok, 12), XentError::InvalidShape(_)));
    let upstream = LinearCeOptions {
        row_upstream: Some(vec![1.0; 4]),
        ..Default::default()
    };
    assert!(matches!(
        call(&p, &upstream, 12),
        XentError::InvalidArgument(_)
    ));
    let block0 = LinearCeOptions {
        row_block: 0,
        ..Default::default()
    };
    assert!(matches!(
        call(&p, &block0, 12),
        XentError::InvalidArgument(_)
    ));
    let weights = LinearCeOptions {
        ce: CrossEntropyOptions {
            weight: Some(vec![1.0, f32::NAN, 1.0, 1.0, 1.0]),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(matches!(
        call(&p, &weights, 12),
        XentError::InvalidArgument(_)
    ));
}

/// The fused path against the materialised chain of the same backend's own kernels
/// (`linear` → `cross_entropy` → `weight_grad`, `bias_grad`, `G W`): ignored rows skipped cost no
/// accuracy, and the transient memory is a chunk, not the n × V logits.
#[test]
fn fused_matches_the_materialised_chain_on_the_cpu() {
    let p = Problem::new(5, 300, 16, 257, false, 5);
    let LinearShape { n, d, classes } = p.shape;
    let opts = LinearCeOptions {
        budget_bytes: Some(64 * 257 * 4),
        ..Default::default()
    };
    let fused = Backend::Cpu.linear_ce(&p, &opts, None);
    // W is V × d here; the chain's is d × V.
    let wt: Vec<f32> = (0..d * classes)
        .map(|e| p.w[(e % classes) * d + e / classes])
        .collect();
    let z = cpu::linear(&p.x, &wt, p.bias.as_deref(), n, d, classes).unwrap();
    let mut g = vec![0.0; n * classes];
    let ce = cpu::cross_entropy(&z, classes, p.cpu_targets(), &opts.ce, Some(&mut g)).unwrap();
    assert!(
        same_bits(&[fused.result.loss], &[ce.loss]),
        "loss {} vs {}",
        fused.result.loss,
        ce.loss
    );
    assert!(
        same_bits(&fused.result.row_loss, &ce.row_loss),
        "row losses"
    );
    let dw_t = cpu::weight_grad(&p.x, &g, n, d, classes).unwrap();
    let dw: Vec<f64> = (0..classes * d)
        .map(|e| dw_t[(e % d) * classes + e / d] as f64)
        .collect();
    assert_close("dW against the chain", &fused.dw, &dw, product_tol(&dw));
    let db: Vec<f64> = cpu::bias_grad(&g, classes)
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_close("db against the chain", &fused.db, &db, product_tol(&db));
    assert_eq!(
        fused.result.chunk_rows, 128,
        "a 64-row budget rounds up to one block"
    );
    assert_eq!(
        fused.result.chunks, 2,
        "240 listed rows of 300 in blocks of 128"
    );
    assert!(fused.result.transient_bytes < (n * classes * 4) as u64 / 2);
}

/// On the GPU an output may not overlap an input or another output (dX written over X would feed
/// the next chunks their own gradient): a clear error, nothing written; outputs in disjoint parts of
/// one caller buffer are fine, with the bits of separate buffers.
#[test]
fn gpu_outputs_that_overlap_inputs_are_refused() {
    use xent::linear_ce::{GpuLinearGrads, GpuTargets};
    use xent::{GpuLabels, GpuMatrix};
    for ctx in super::common::contexts() {
        let (n, d, v) = (40, 4, 12);
        let p = Problem::new(3, n, d, v, false, 0);
        let x = GpuMatrix::from_slice(ctx, &p.x, n, d).unwrap();
        let w = GpuMatrix::from_slice(ctx, &p.w, v, d).unwrap();
        let labels = GpuLabels::from_slice(ctx, p.labels.as_ref().unwrap()).unwrap();
        let run = |grads: GpuLinearGrads<'_>| {
            ctx.linear_cross_entropy(
                &x,
                &w,
                None,
                GpuTargets::Labels(&labels),
                &LinearCeOptions::default(),
                grads,
            )
        };
        let what = super::common::describe(ctx);
        let e = run(GpuLinearGrads {
            input: Some(&x),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(e, XentError::InvalidArgument(_)) && e.to_string().contains("overlaps X"),
            "{what}: {e}"
        );
        let e = run(GpuLinearGrads {
            weight: Some(&w),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("dW overlaps W"), "{what}: {e}");
        assert_eq!(x.read_blocking(ctx).unwrap(), p.x, "{what}: X untouched");
        assert_eq!(w.read_blocking(ctx).unwrap(), p.w, "{what}: W untouched");
        // dX and dW in one buffer, at disjoint aligned offsets.
        let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
        let dw_at = ((n * d * 4) as u64).next_multiple_of(align);
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("one arena"),
            size: dw_at + (v * d * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let dx = GpuMatrix::from_buffer_at(ctx, buffer.clone(), 0, n, d).unwrap();
        let dw = GpuMatrix::from_buffer_at(ctx, buffer, dw_at, v, d).unwrap();
        run(GpuLinearGrads {
            input: Some(&dx),
            weight: Some(&dw),
            bias: None,
        })
        .unwrap();
        let (dx2, dw2) = (
            GpuMatrix::zeros(ctx, n, d).unwrap(),
            GpuMatrix::zeros(ctx, v, d).unwrap(),
        );
        run(GpuLinearGrads {
            input: Some(&dx2),
            weight: Some(&dw2),
            bias: None,
        })
        .unwrap();
        let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
        assert!(
            same_bits(&read(&dx), &read(&dx2)),
            "{what}: dX in the arena"
        );
        assert!(
            same_bits(&read(&dw), &read(&dw2)),
            "{what}: dW in the arena"
        );
        // Device-only labels with ignored rows (listed on the device, dX rows scattered back): dX
        // past dW in the arena, X past other data in its buffer; the bits of host labels.
        let q = Problem::new(5, n, d, v, false, 3);
        let dx_at = ((v * d * 4) as u64).next_multiple_of(align);
        let arena = |bytes: u64| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("an arena"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (grads_buf, x_buf, l_buf) = (
            arena(dx_at + (n * d * 4) as u64),
            arena(align + (n * d * 4) as u64),
            arena((n * 8) as u64),
        );
        ctx.queue()
            .write_buffer(&x_buf, align, bytemuck::cast_slice(&q.x));
        ctx.queue()
            .write_buffer(&l_buf, 0, bytemuck::cast_slice(q.labels.as_ref().unwrap()));
        let xq = GpuMatrix::from_buffer_at(ctx, x_buf, align, n, d).unwrap();
        let device_labels = GpuLabels::from_buffer(ctx, l_buf, 0, n, xent::LabelType::I64).unwrap();
        let host_labels = GpuLabels::from_slice(ctx, q.labels.as_ref().unwrap()).unwrap();
        let wq = GpuMatrix::from_slice(ctx, &q.w, v, d).unwrap();
        let fused = |l: &GpuLabels, dx: &GpuMatrix, dw: &GpuMatrix| {
            ctx.linear_cross_entropy(
                &xq,
                &wq,
                None,
                GpuTargets::Labels(l),
                &LinearCeOptions::default(),
                GpuLinearGrads {
                    input: Some(dx),
                    weight: Some(dw),
                    bias: None,
                },
            )
            .unwrap()
        };
        let dw = GpuMatrix::from_buffer_at(ctx, grads_buf.clone(), 0, v, d).unwrap();
        let dx = GpuMatrix::from_buffer_at(ctx, grads_buf, dx_at, n, d).unwrap();
        let dev = fused(&device_labels, &dx, &dw);
        let host = fused(&host_labels, &dx2, &dw2);
        assert_eq!(
            dev.loss.to_bits(),
            host.loss.to_bits(),
            "{what}: device labels, loss"
        );
        assert!(
            same_bits(&read(&dx), &read(&dx2)) && same_bits(&read(&dw), &read(&dw2)),
            "{what}: device labels in arenas"
        );
    }
}
