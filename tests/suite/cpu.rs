//! The fast CPU path (`xent::cpu`) against the f64 reference and PyTorch's fixtures: the softmax
//! family on awkward shapes and values, cross-entropy over the whole option matrix, edge cases,
//! parallel blocks against single rows, and bad input. No GPU needed.

use std::path::Path;

use proptest::prelude::*;
use xent::cpu::{self, CpuCrossEntropy, CpuTargets};
use xent::{CrossEntropyOptions, Reduction, XentError, npy, reference};

use super::backends::Backend;
use super::common::{PROB, Tol, assert_close, random, same_bits, to_f64};
use super::cross_entropy::{Case, combos};

/// The softmax-family tolerances are `common::PROB` for probabilities and gradients and
/// `common::log_tol(scale)` for log-domain values; PyTorch's float32 fixtures add their own rounding:
/// this much absolute and relative, plus the ulp of the logits (as `fixtures.rs`).
const TORCH: Tol = Tol {
    abs: 2e-6,
    rel: 1e-5,
};

/// Largest finite |x| (at least `floor`).
fn scale_of(x: &[f32], floor: f32) -> f32 {
    x.iter()
        .filter(|v| v.is_finite())
        .fold(floor, |a, &b| a.max(b.abs()))
}

/// The family on the fast CPU path (the body every backend shares), plus the CPU's `_into` forms,
/// which must give the very bits of the allocating ones.
fn check_family(x: &[f32], cols: usize, case: &str) {
    super::backends::check_family(&Backend::Cpu, x, cols, case);
    let mut p = vec![0.0; x.len()];
    cpu::softmax_into(x, cols, &mut p).unwrap();
    assert!(
        same_bits(&p, &cpu::softmax(x, cols).unwrap()),
        "{case}: softmax_into differs"
    );
    let mut lp = vec![0.0; x.len()];
    cpu::log_softmax_into(x, cols, &mut lp).unwrap();
    assert!(
        same_bits(&lp, &cpu::log_softmax(x, cols).unwrap()),
        "{case}: log_softmax_into differs"
    );
}

#[test]
fn family_on_awkward_shapes() {
    check_family(&random(1, 5, 1, -3.0, 3.0), 1, "N=1");
    check_family(&random(2, 9, 257, -5.0, 5.0), 257, "N=257");
    check_family(&random(3, 33, 10, -5.0, 5.0), 10, "N=10");
    check_family(&random(4, 3, 70_000, -8.0, 8.0), 70_000, "N=70000");
    check_family(&random(5, 2, 1 << 20, -10.0, 10.0), 1 << 20, "N=2^20");
    check_family(&random(6, 7, 16, -5.0, 5.0), 16, "N=16 (one chunk)");
    check_family(
        &random(7, 5, 1024 + 17, -5.0, 5.0),
        1024 + 17,
        "N=1041 (block + tail)",
    );
    // Enough rows for several parallel blocks, with a short last block.
    check_family(&random(8, 1001, 97, -6.0, 6.0), 97, "1001×97 (parallel)");
    check_family(
        &random(9, 20_000, 3, -6.0, 6.0),
        3,
        "20000×3 (parallel, tiny rows)",
    );
}

#[test]
fn family_on_empty_batch() {
    for cols in [1, 7, 300] {
        assert!(cpu::softmax(&[], cols).unwrap().is_empty());
        assert!(cpu::log_softmax(&[], cols).unwrap().is_empty());
        assert!(cpu::logsumexp(&[], cols).unwrap().is_empty());
        assert!(cpu::softmax_backward(&[], &[], cols).unwrap().is_empty());
        assert!(
            cpu::log_softmax_backward(&[], &[], cols)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn family_on_huge_logits() {
    let mut x = random(10, 6, 300, -1e4, 1e4);
    x[5] = 1e4;
    x[301] = -1e4;
    check_family(&x, 300, "±1e4");
    check_family(&random(11, 4, 33, 3e4, 3e4 + 8.0), 33, "offset 3e4");
}

/// exp over its whole range through softmax of [x, 0]: p₀ = 1 / (1 + e⁻ˣ) from 0 down to underflow,
/// and 1 − p₀ for x > 0 up to the point where e^x overflows (x − max stays ≤ 0 there).
#[test]
fn family_exp_range_sweep() {
    let mut x = Vec::new();
    let mut v = -120.0f32;
    while v <= 120.0 {
        x.extend([v, 0.0]);
        v += 0.173;
    }
    x.extend([
        -87.0, 0.0, -86.99, 0.0, -87.34, 0.0, -88.72, 0.0, 88.72, 0.0, 1e-30, 0.0,
    ]);
    check_family(&x, 2, "exp sweep");
    // log_softmax_backward takes exp of arbitrary values: large y overflows to ±inf like the reference.
    let y: Vec<f32> = (0..64).map(|i| -150.0 + i as f32 * 4.0).collect();
    let g = vec![0.5f32; 64];
    let got = cpu::log_softmax_backward(&y, &g, 64).unwrap();
    let want = to_f64(&reference::log_softmax_backward(&y, &g, 64));
    assert_close("exp of −150..102", &got, &want, PROB);
}

#[test]
fn family_on_masks_and_non_finite_rows() {
    let cols = 300;
    let ninf = f32::NEG_INFINITY;
    let mut x = random(12, 8, cols, -4.0, 4.0);
    for j in (0..cols).step_by(3) {
        x[j] = ninf; // row 0: a −inf mask on every third class
    }
    x[cols..2 * cols].fill(ninf); // row 1: all −inf
    x[2 * cols + 17] = f32::NAN; // row 2: one NaN
    x[3 * cols + 200] = f32::INFINITY; // row 3: +inf
    x[4 * cols..5 * cols].fill(ninf); // row 4: one finite logit among −inf
    x[4 * cols + 123] = 2.5;
    x[5 * cols + 299] = f32::NAN; // row 5: NaN in the tail chunk
    x[5 * cols] = f32::INFINITY;
    x[6 * cols..7 * cols].fill(f32::NAN); // row 6: all NaN
    check_family(&x, cols, "masks/NaN/inf");

    let lse = cpu::logsumexp(&x, cols).unwrap();
    assert_eq!(lse[1], ninf, "all −inf row: lse = −inf");
    assert!(lse[2].is_nan(), "NaN row: lse = NaN");
    assert_eq!(lse[3], f32::INFINITY, "+inf row: lse = +inf");
    assert!(
        lse[5].is_nan() && lse[6].is_nan(),
        "+inf and NaN, all NaN: lse = NaN"
    );
    let p = cpu::softmax(&x, cols).unwrap();
    assert!(
        p[cols..2 * cols].iter().all(|v| v.is_nan()),
        "all −inf row: softmax NaN"
    );
    assert!(
        p[2 * cols..4 * cols].iter().all(|v| v.is_nan()),
        "NaN, +inf rows: softmax NaN"
    );
    assert_eq!(p[4 * cols + 123], 1.0);
    assert_eq!(p[0], 0.0, "−inf mask: probability 0");
    let lp = cpu::log_softmax(&x, cols).unwrap();
    assert_eq!(lp[0], ninf, "−inf mask: log-probability −inf");
    // Short rows (all in the padded tail chunk) with the same values.
    let short = [
        1.0,
        ninf,
        2.0,
        ninf,
        ninf,
        ninf,
        f32::NAN,
        0.0,
        1.0,
        f32::INFINITY,
        0.0,
        1.0,
    ];
    check_family(&short, 3, "short rows with masks/NaN/inf");
}

#[test]
fn family_bad_input_is_a_clear_error() {
    let x = [0.0f32; 6];
    for e in [
        cpu::softmax(&x, 0).unwrap_err(),
        cpu::log_softmax(&x, 0).unwrap_err(),
        cpu::logsumexp(&x, 0).unwrap_err(),
        cpu::softmax_backward(&x, &x, 0).unwrap_err(),
        cpu::log_softmax_backward(&x, &x, 0).unwrap_err(),
    ] {
        assert!(matches!(e, XentError::InvalidShape(_)), "{e}");
    }
    for e in [
        cpu::softmax(&x, 4).unwrap_err(),
        cpu::log_softmax(&x, 4).unwrap_err(),
        cpu::logsumexp(&x, 4).unwrap_err(),
        cpu::softmax_backward(&x, &x, 4).unwrap_err(),
        cpu::softmax_backward(&x, &x[..3], 3).unwrap_err(),
        cpu::log_softmax_backward(&x, &x[..5], 3).unwrap_err(),
        cpu::softmax_into(&x, 3, &mut [0.0; 5]).unwrap_err(),
        cpu::log_softmax_into(&x, 3, &mut [0.0; 7]).unwrap_err(),
    ] {
        assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
    }
    let e = cpu::softmax(&x, 4).unwrap_err();
    assert!(
        matches!(
            e,
            XentError::LengthMismatch {
                expected: 8,
                got: 6,
                ..
            }
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.
// ---------------------------------------------------------------------------------------------

/// Runs the CPU cross-entropy with and without a gradient; checks that the forward-only results are
/// bit for bit those of the fused call and that a pre-filled gradient buffer is fully overwritten.
pub fn run_case(case: &Case) -> (CpuCrossEntropy, Vec<f32>) {
    let targets = match (&case.labels, &case.probs) {
        (Some(l), _) => CpuTargets::Labels(l),
        (_, Some(p)) => CpuTargets::Probs(p),
        _ => unreachable!(),
    };
    let mut grad = vec![12345.0f32; case.logits.len()];
    let out = cpu::cross_entropy(
        &case.logits,
        case.cols,
        targets,
        &case.opts,
        Some(&mut grad),
    )
    .unwrap();
    let fwd = cpu::cross_entropy(&case.logits, case.cols, targets, &case.opts, None).unwrap();
    assert!(
        same_bits(&out.row_loss, &fwd.row_loss),
        "forward-only row losses differ"
    );
    assert!(same_bits(&out.lse, &fwd.lse), "forward-only lse differs");
    assert!(
        same_bits(&[out.loss], &[fwd.loss]),
        "forward-only loss differs"
    );
    assert_eq!(out.argmax, fwd.argmax);
    (out, grad)
}

/// The CPU against the reference: the body every backend shares (`backends::check_ce`); returns the
/// CPU path's own output for the checks that only it has.
pub fn check_case(case: &Case, what: &str) -> (CpuCrossEntropy, Vec<f32>) {
    super::backends::check_ce(&Backend::Cpu, case, what);
    run_case(case)
}

/// The CPU tests' problems: the shared generator with a zero weight and a zero target in every row.
fn gen_case(seed: u64, n: usize, cols: usize, combo: u32) -> Case {
    super::cross_entropy::gen_case_with(seed, n, cols, combo, true)
}

#[test]
fn ce_option_matrix_matches_reference() {
    let mut covered = 0;
    for combo in combos() {
        // Shapes around the chunk width, a single class, and rows past a sum block.
        let (n, cols) =
            [(7, 5), (5, 300), (3, 1), (4, 1000), (6, 17), (2, 2049)][combo as usize % 6];
        let case = gen_case(combo as u64, n, cols, combo);
        check_case(&case, &format!("combo {combo} {n}×{cols} {:?}", case.opts));
        covered += 1;
    }
    assert_eq!(covered, 144, "option combinations covered");
}

#[test]
fn ce_option_matrix_parallel_blocks() {
    // Enough rows that rayon splits them: every combination once, on two shapes.
    for combo in combos().step_by(5) {
        for (n, cols) in [(700, 100), (9000, 4)] {
            let case = gen_case(1000 + combo as u64, n, cols, combo);
            check_case(&case, &format!("parallel combo {combo} {n}×{cols}"));
        }
    }
}

#[test]
fn ce_wide_rows() {
    check_case(
        &gen_case(77, 3, 70_000, 8 | 16 | 64),
        "N=70000 weights+smoothing+softcap",
    );
    check_case(
        &gen_case(78, 2, 70_000, 1 | 32),
        "N=70000 probs smoothing 1",
    );
    check_case(&gen_case(79, 4, 70_000, 0), "N=70000 plain");
}

/// Each row of a large parallel call equals (bit for bit) the same row run alone: the blocks index
/// labels, targets and gradient rows correctly. Also for narrow rows (N ≤ 16), which go a block of
/// rows at a time.
#[test]
fn ce_parallel_rows_equal_single_rows() {
    const NONE: u32 = 4; // (combo >> 1) % 3 == 2: Reduction::None
    let combos = [NONE, NONE | 8 | 16 | 64, NONE | 1 | 8 | 16, NONE | 256];
    let shapes = [(1500, 60), (5000, 10), (3001, 16)];
    for (combo, (n, cols)) in combos.into_iter().flat_map(|c| shapes.map(|s| (c, s))) {
        let case = gen_case(500 + combo as u64, n, cols, combo);
        let (out, grad) = run_case(&case);
        for i in (0..n).step_by(37).chain([n - 1]) {
            let one = Case {
                logits: case.logits[i * cols..(i + 1) * cols].to_vec(),
                cols,
                labels: case.labels.as_ref().map(|l| vec![l[i]]),
                probs: case
                    .probs
                    .as_ref()
                    .map(|p| p[i * cols..(i + 1) * cols].to_vec()),
                opts: case.opts.clone(),
            };
            let (o1, g1) = run_case(&one);
            let what = format!("combo {combo} {n}×{cols} row {i}");
            assert!(
                same_bits(&o1.row_loss, &out.row_loss[i..=i]),
                "{what}: loss"
            );
            assert!(same_bits(&o1.lse, &out.lse[i..=i]), "{what}: lse");
            assert_eq!(o1.argmax[0], out.argmax[i], "{what}: argmax");
            assert!(
                same_bits(&g1, &grad[i * cols..(i + 1) * cols]),
                "{what}: grad"
            );
        }
    }
}

#[test]
fn ce_edge_cases_as_pytorch() {
    let cols = 5;
    let ninf = f32::NEG_INFINITY;
    let mut logits = super::cross_entropy::edge_rows();
    logits.extend([
        ninf,
        ninf,
        ninf,
        ninf,
        ninf, // all −inf: lse −inf, loss and gradient NaN
        0.0,
        f32::INFINITY,
        1.0,
        2.0,
        3.0, // +inf: lse +inf, loss and gradient NaN
        f32::NAN,
        f32::NAN,
        f32::NAN,
        f32::NAN,
        f32::NAN, // all NaN: argmax 0
    ]);
    let case = Case {
        logits,
        cols,
        labels: Some(vec![0, 0, 1, 1, 2, 1, 3]),
        probs: None,
        opts: CrossEntropyOptions {
            reduction: Reduction::None,
            ..Default::default()
        },
    };
    let (out, grad) = check_case(&case, "edge cases");
    let loss = &out.row_loss;
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
    assert_eq!(out.lse[4], ninf);
    assert!(loss[4].is_nan() && grad[20..25].iter().all(|g| g.is_nan()));
    assert_eq!(out.lse[5], f32::INFINITY);
    assert!(loss[5].is_nan() && grad[25..30].iter().all(|g| g.is_nan()));
    assert_eq!(out.argmax, vec![1, 4, 0, 0, 0, 1, 0]);

    // The same rows under every option, ignored rows among them.
    for combo in combos() {
        let mut c = gen_case(combo as u64, 7, cols, combo);
        c.logits.clone_from(&case.logits);
        if let Some(l) = c.labels.as_mut() {
            l.iter_mut().enumerate().for_each(|(i, y)| {
                *y = if i % 3 == 0 && combo & 256 != 0 {
                    3
                } else {
                    (i % cols) as i64
                }
            });
        }
        check_case(&c, &format!("edge rows, combo {combo}"));
    }
}

#[test]
fn ce_probability_targets_over_masked_logits() {
    // Zero targets over −inf logits contribute 0 (not 0·inf); a non-zero one makes the loss +inf.
    let ninf = f32::NEG_INFINITY;
    let logits = vec![0.0, ninf, 1.0, ninf, /**/ 0.5, ninf, 1.0, 2.0];
    let probs = vec![0.5, 0.0, 0.5, 0.0, /**/ 0.25, 0.25, 0.25, 0.25];
    for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        let case = Case {
            logits: logits.clone(),
            cols: 4,
            labels: None,
            probs: Some(probs.clone()),
            opts: CrossEntropyOptions {
                reduction,
                ..Default::default()
            },
        };
        let (out, _) = check_case(&case, &format!("masked probs {reduction:?}"));
        assert!(out.row_loss[0].is_finite());
        assert_eq!(out.row_loss[1], f32::INFINITY);
    }
    // A degenerate row whose target terms are all zero: loss 0 + z·lse² (+inf with z-loss on).
    let case = Case {
        logits: vec![ninf; 3],
        cols: 3,
        labels: None,
        probs: Some(vec![0.0; 3]),
        opts: CrossEntropyOptions {
            z_loss: 0.5,
            reduction: Reduction::None,
            ..Default::default()
        },
    };
    let (out, _) = check_case(&case, "all −inf row, zero targets, z-loss");
    assert_eq!(out.row_loss[0], f32::INFINITY);
}

#[test]
fn ce_all_rows_ignored_and_empty_batch() {
    let case = Case {
        logits: vec![0.5; 12],
        cols: 4,
        labels: Some(vec![-100, -100, -100]),
        probs: None,
        opts: CrossEntropyOptions::default(),
    };
    let (out, grad) = check_case(&case, "all ignored");
    assert!(
        out.loss.is_nan(),
        "mean over no rows is NaN (PyTorch), got {}",
        out.loss
    );
    assert!(out.accuracy.is_nan());
    assert!(
        grad.iter().all(|&g| g == 0.0 && g.is_sign_positive()),
        "ignored rows: gradient 0"
    );
    assert_eq!(out.row_loss, vec![0.0; 3]);
    for (reduction, want) in [
        (Reduction::Mean, f32::NAN),
        (Reduction::Sum, 0.0),
        (Reduction::None, 0.0),
    ] {
        let opts = CrossEntropyOptions {
            reduction,
            ..Default::default()
        };
        for targets in [CpuTargets::Labels(&[]), CpuTargets::Probs(&[])] {
            let mut grad: [f32; 0] = [];
            let out = cpu::cross_entropy(&[], 4, targets, &opts, Some(&mut grad)).unwrap();
            assert!(
                out.loss.to_bits() == want.to_bits() || (out.loss.is_nan() && want.is_nan()),
                "{reduction:?}: {}",
                out.loss
            );
            assert!(out.row_loss.is_empty() && out.lse.is_empty() && out.argmax.is_empty());
            assert!(out.accuracy.is_nan());
        }
    }
}

#[test]
fn ce_accuracy_argmax_and_grad_output() {
    let logits = vec![
        3.0, 1.0, 0.0, /**/ 0.0, 2.0, 2.0, /**/ 1.0, 1.0, 5.0, /**/ 9.0, 0.0, 0.0,
    ];
    let case = Case {
        logits,
        cols: 3,
        labels: Some(vec![0, 2, 2, 1]),
        probs: None,
        opts: CrossEntropyOptions::default(),
    };
    let (out, _) = check_case(&case, "accuracy");
    assert_eq!(out.argmax, vec![0, 1, 2, 0], "first maximal class");
    assert_eq!(out.accuracy, 0.5);
    assert_eq!(out.denominator, 4.0);
    // grad_output scales the gradient (mean, sum and none), and a zero weight on every label gives
    // the reference's 0/0.
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let mut c = case.clone();
        c.opts.reduction = reduction;
        c.opts.grad_output = -2.5;
        check_case(&c, &format!("grad_output, {reduction:?}"));
        c.opts.weight = Some(vec![0.0, 1.0, 0.0]);
        c.labels = Some(vec![0, 2, 2, 0]);
        check_case(&c, &format!("zero denominator, {reduction:?}"));
        // With z-loss or smoothing the 0/0 mean's infinite scale meets non-zero gradients: ±inf
        // and NaN exactly where the reference has them.
        c.opts.z_loss = 1e-3;
        check_case(&c, &format!("zero denominator, z-loss, {reduction:?}"));
        c.opts.label_smoothing = 0.1;
        c.opts.softcap = Some(4.0);
        check_case(
            &c,
            &format!("zero denominator, z-loss, smoothing, softcap, {reduction:?}"),
        );
    }
}

/// The reference's own PyTorch fixtures (tests/fixtures/torch), run on the CPU path.
#[test]
fn ce_matches_pytorch_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("options.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 30, "fixtures missing: {}", dirs.len());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("options.json")).unwrap())
                .unwrap();
        let (shape, logits) = npy::read_f32(&dir.join("logits.npy")).unwrap();
        let cols = shape[1];
        let opts = CrossEntropyOptions {
            weight: json["has_weight"]
                .as_bool()
                .unwrap()
                .then(|| npy::read_f32(&dir.join("weight.npy")).unwrap().1),
            ignore_index: json["ignore_index"].as_i64().unwrap(),
            reduction: json["reduction"].as_str().unwrap().parse().unwrap(),
            label_smoothing: json["label_smoothing"].as_f64().unwrap() as f32,
            ..Default::default()
        };
        let labels = (json["target"] == "labels")
            .then(|| npy::read_labels(&dir.join("labels.npy")).unwrap().1);
        let probs = labels
            .is_none()
            .then(|| npy::read_f32(&dir.join("targets.npy")).unwrap().1);
        let case = Case {
            logits,
            cols,
            labels,
            probs,
            opts,
        };
        let (out, grad) = check_case(&case, &name);
        let tol = Tol {
            abs: TORCH.abs + scale_of(&case.logits, 1.0) as f64 * 4.0 * f32::EPSILON as f64,
            ..TORCH
        };
        let want_loss = to_f64(&npy::read_f32(&dir.join("loss.npy")).unwrap().1);
        let got_loss = match case.opts.reduction {
            Reduction::None => out.row_loss.clone(),
            _ => vec![out.loss],
        };
        assert_close(
            &format!("{name}: loss vs torch"),
            &got_loss,
            &want_loss,
            tol,
        );
        let want_grad = to_f64(&npy::read_f32(&dir.join("grad.npy")).unwrap().1);
        assert_close(&format!("{name}: grad vs torch"), &grad, &want_grad, tol);
    }
}

#[test]
fn ce_bad_input_is_a_clear_error_and_leaves_grad_alone() {
    let z = [0.0f32; 6];
    let d = CrossEntropyOptions::default;
    let ce = |labels: &[i64], opts: CrossEntropyOptions| {
        let mut grad = [7.0f32; 6];
        let e = cpu::cross_entropy(&z, 3, CpuTargets::Labels(labels), &opts, Some(&mut grad))
            .unwrap_err();
        assert_eq!(grad, [7.0; 6], "gradient written before an error: {e}");
        e
    };
    let e = ce(&[0, 3], d());
    assert!(
        matches!(
            e,
            XentError::LabelOutOfRange {
                row: 1,
                label: 3,
                classes: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = ce(&[-1, 0], d());
    assert!(e.to_string().contains("row 0"), "{e}");
    assert!(matches!(ce(&[0], d()), XentError::LengthMismatch { .. }));
    assert!(matches!(
        ce(&[0, 1, 2], d()),
        XentError::LengthMismatch { .. }
    ));
    let e = ce(
        &[0, 1],
        CrossEntropyOptions {
            weight: Some(vec![1.0, f32::NAN, 1.0]),
            ..d()
        },
    );
    assert!(e.to_string().contains("class 1"), "{e}");
    let e = ce(
        &[0, 1],
        CrossEntropyOptions {
            weight: Some(vec![1.0]),
            ..d()
        },
    );
    assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
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
    assert!(matches!(
        ce(
            &[0, 1],
            CrossEntropyOptions {
                z_loss: -1.0,
                ..d()
            }
        ),
        XentError::InvalidArgument(_)
    ));
    let e = ce(
        &[0, 1],
        CrossEntropyOptions {
            grad_output: f32::INFINITY,
            ..d()
        },
    );
    assert!(matches!(e, XentError::InvalidArgument(_)), "{e}");
    // A label equal to a custom ignore_index is fine; out of range otherwise.
    let opts = CrossEntropyOptions {
        ignore_index: 7,
        ..d()
    };
    assert!(cpu::cross_entropy(&z, 3, CpuTargets::Labels(&[7, 0]), &opts, None).is_ok());
    assert!(matches!(
        ce(&[-100, 0], opts),
        XentError::LabelOutOfRange { label: -100, .. }
    ));

    let mut grad = [7.0f32; 6];
    let e = cpu::cross_entropy(&z, 0, CpuTargets::Labels(&[]), &d(), Some(&mut grad)).unwrap_err();
    assert!(matches!(e, XentError::InvalidShape(_)), "{e}");
    let e = cpu::cross_entropy(&z, 4, CpuTargets::Labels(&[0]), &d(), Some(&mut grad)).unwrap_err();
    assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
    let e =
        cpu::cross_entropy(&z, 3, CpuTargets::Probs(&[0.0; 4]), &d(), Some(&mut grad)).unwrap_err();
    assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
    let opts = CrossEntropyOptions {
        ignore_index: 0,
        ..d()
    };
    let e = cpu::cross_entropy(&z, 3, CpuTargets::Probs(&z), &opts, Some(&mut grad)).unwrap_err();
    assert!(matches!(e, XentError::InvalidArgument(_)), "{e}");
    assert_eq!(grad, [7.0; 6], "gradient written before an error");
    let e = cpu::cross_entropy(
        &z,
        3,
        CpuTargets::Labels(&[0, 1]),
        &d(),
        Some(&mut grad[..5]),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            XentError::LengthMismatch {
                what: "gradient",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(grad, [7.0; 6], "gradient written before an error");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn ce_random_problems_match_reference(n in 1usize..40, cols in 1usize..700, combo in 0u32..512, seed in any::<u64>()) {
        let combo = combo & !4 & !(if combo & 1 != 0 { 256 } else { 0 });
        let combo = if (combo >> 4) & 3 == 3 { combo & !32 } else { combo };
        let case = gen_case(seed, n, cols, combo);
        check_case(&case, &format!("seed {seed} combo {combo} {n}×{cols}"));
    }

    #[test]
    fn family_random_shapes_match_reference(n in 0usize..40, cols in 1usize..600, seed in any::<u64>()) {
        check_family(&random(seed, n, cols, -20.0, 20.0), cols, &format!("seed {seed} {n}×{cols}"));
    }
}

/// Under `XENT_CPU_PORTABLE=1` the hot loops run from the portable build.
#[test]
fn isa_env_caps_the_instruction_set() {
    match std::env::var(cpu::ISA_ENV).as_deref() {
        Ok("portable") => assert_eq!(cpu::isa(), cpu::Isa::Portable),
        Ok("avx2") => assert!(cpu::isa() <= cpu::Isa::Avx2Fma),
        _ => assert_eq!(cpu::isa(), cpu::Isa::detected()),
    }
    assert_eq!(cpu::uses_avx2_fma(), cpu::isa() >= cpu::Isa::Avx2Fma);
}

/// The tests above ran the best copy this CPU has: run them again, in a child process of this test
/// binary, on every lower instruction set (on an AVX-512 machine: AVX2+FMA and portable), so that
/// each copy stays tested against the reference.
#[test]
fn every_lower_instruction_set_passes_the_same_tests() {
    if std::env::var_os(cpu::ISA_ENV).is_some() {
        return; // this is a child
    }
    let lower: Vec<(cpu::Isa, &str)> = [
        (cpu::Isa::Portable, "portable"),
        (cpu::Isa::Avx2Fma, "avx2"),
    ]
    .into_iter()
    .filter(|(isa, _)| *isa < cpu::isa())
    .collect();
    eprintln!(
        "xent tests: CPU path on {} here; also on {:?}",
        cpu::isa(),
        lower
    );
    for (isa, name) in lower {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "suite::cpu::",
                "--skip",
                "every_lower_instruction_set",
                "--test-threads",
                "2",
            ])
            .env(cpu::ISA_ENV, name)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{isa}:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("test suite::cpu::ce_option_matrix_matches_reference ... ok")
                && stdout.contains("test suite::cpu::isa_env_caps_the_instruction_set ... ok"),
            "the {isa} child ran no tests:\n{stdout}"
        );
    }
}

/// The in-place cross-entropy gives the very bits of the separate one (narrow rows, the row path,
/// soft-capping, probabilities), since linear cross-entropy relies on it.
#[test]
fn in_place_cross_entropy_matches_the_separate_form_bit_for_bit() {
    for cols in [1, 10, 16, 17, 1000] {
        let n = 37;
        let z = random(cols as u64, n, cols, -6.0, 6.0);
        let labels: Vec<i64> = (0..n).map(|i| ((i * 7) % cols) as i64).collect();
        let probs = cpu::softmax(&random(99, n, cols, -1.0, 1.0), cols).unwrap();
        for (smoothing, softcap, soft) in [
            (0.0, None, false),
            (0.1, Some(4.0), false),
            (0.2, None, true),
        ] {
            let opts = CrossEntropyOptions {
                label_smoothing: smoothing,
                softcap,
                z_loss: 1e-3,
                ..Default::default()
            };
            let t = if soft {
                CpuTargets::Probs(&probs)
            } else {
                CpuTargets::Labels(&labels)
            };
            let mut g = vec![0.0; z.len()];
            let sep = cpu::cross_entropy(&z, cols, t, &opts, Some(&mut g)).unwrap();
            let mut zg = z.clone();
            let inp = cpu::cross_entropy_in_place(&mut zg, cols, t, &opts).unwrap();
            let what = format!("N={cols}, smoothing {smoothing}, softcap {softcap:?}, soft {soft}");
            assert!(same_bits(&zg, &g), "{what}: gradient");
            assert!(
                same_bits(&inp.row_loss, &sep.row_loss),
                "{what}: row losses"
            );
            assert!(same_bits(&inp.lse, &sep.lse), "{what}: lse");
            assert_eq!(inp.argmax, sep.argmax, "{what}");
        }
    }
}

/// Narrow rows (N ≤ 16) go sixteen at a time through the AVX-512 kernel where the CPU has it: every
/// row must give the bits of the same row computed alone (the row path), for every N, with
/// weights, z-loss, ignored rows, −inf masks, ±0 and huge logits, a group holding a NaN row and
/// one with an all −inf row (those groups fall back to the row path), and a remainder of rows.
#[test]
fn narrow_rows_in_groups_give_the_bits_of_single_rows() {
    for cols in 1..=16usize {
        let n = 16 * 5 + 7;
        let mut z = random(cols as u64 + 900, n, cols, -30.0, 30.0);
        z[3 * cols] = f32::NEG_INFINITY;
        z[5 * cols] = -0.0;
        z[6 * cols] = 3.0e38;
        z[20 * cols] = f32::NAN;
        for v in &mut z[40 * cols..41 * cols] {
            *v = f32::NEG_INFINITY;
        }
        let labels: Vec<i64> = (0..n)
            .map(|i| {
                if i % 7 == 2 {
                    -100
                } else {
                    ((i * 5) % cols) as i64
                }
            })
            .collect();
        for (weights, z_loss, reduction) in [
            (false, 0.0, Reduction::Mean),
            (true, 1e-3, Reduction::Sum),
            (true, 0.0, Reduction::None),
        ] {
            let opts = CrossEntropyOptions {
                weight: weights.then(|| (0..cols).map(|j| 0.5 + j as f32 * 0.25 - 1.0).collect()),
                z_loss,
                reduction,
                grad_output: 0.75,
                ..Default::default()
            };
            let mut g = vec![0.0; z.len()];
            let all =
                cpu::cross_entropy(&z, cols, CpuTargets::Labels(&labels), &opts, Some(&mut g))
                    .unwrap();
            // Alone, with the batch's gradient scale (a sum with the mean's factor).
            let mut one_opts = opts.clone();
            if reduction == Reduction::Mean {
                one_opts.reduction = Reduction::Sum;
                one_opts.grad_output = (0.75f64 / all.denominator as f64) as f32;
            }
            for i in 0..n {
                let row = &z[i * cols..(i + 1) * cols];
                let mut g1 = vec![0.0; cols];
                let one = cpu::cross_entropy(
                    row,
                    cols,
                    CpuTargets::Labels(&labels[i..=i]),
                    &one_opts,
                    Some(&mut g1),
                )
                .unwrap();
                let what =
                    format!("N={cols}, row {i}, weights {weights}, z-loss {z_loss}, {reduction:?}");
                assert!(
                    same_bits(&one.row_loss, &all.row_loss[i..=i]),
                    "{what}: loss {:?} vs {:?}",
                    one.row_loss,
                    &all.row_loss[i..=i]
                );
                assert!(same_bits(&one.lse, &all.lse[i..=i]), "{what}: lse");
                assert_eq!(one.argmax[0], all.argmax[i], "{what}: argmax");
                assert!(
                    same_bits(&g1, &g[i * cols..(i + 1) * cols]),
                    "{what}: grad {g1:?} vs {:?}",
                    &g[i * cols..(i + 1) * cols]
                );
            }
        }
    }
}
