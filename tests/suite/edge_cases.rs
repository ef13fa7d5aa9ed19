//! Edge cases across kernels: the information-theory rows on awkward shapes and non-finite rows,
//! cross-entropy with all −inf and +inf rows, and the `_into` variants (results equal to the
//! allocating ones; a wrong-shaped output is an error that leaves the output as it was).

use xent::reference::{self, RefTargets};
use xent::{Context, CrossEntropyOptions, GpuLabels, GpuMatrix, Reduction, Targets, XentError};

use super::common::{
    PROB, Rng, Tol, assert_close, contexts, describe, log_tol, same_bits, small_binding_contexts,
    to_f64,
};

const NINF: f32 = f32::NEG_INFINITY;
const INF: f32 = f32::INFINITY;
const SENTINEL: f32 = 7777.0;

/// `Tol { abs, rel }` on one line.
fn tol(abs: f64, rel: f64) -> Tol {
    Tol { abs, rel }
}

/// Logits in ±`scale` and target rows (every fifth entry 0, then normalised), `n × cols`. With n ≥ 6,
/// rows 0–4 are edge rows: 0 a −inf mask on every third class (target 0 there), 1 all −inf, 2 one
/// NaN, 3 one +inf, 4 a −inf logit under a non-zero target (H(P,Q) = KL = +inf).
fn info_problem(seed: u64, n: usize, cols: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut z = rng.vec(n * cols, -scale, scale);
    let mut t = rng.vec(n * cols, 0.0, 1.0);
    t.iter_mut().step_by(5).for_each(|v| *v = 0.0); // 0·log 0 = 0
    if n >= 6 {
        for j in (0..cols).step_by(3) {
            (z[j], t[j]) = (NINF, 0.0);
        }
        z[cols..2 * cols].fill(NINF);
        z[2 * cols + cols / 2] = f32::NAN;
        z[4 * cols - 1] = INF;
        let j = 4 * cols + (1 % cols);
        (z[j], t[j]) = (NINF, 0.5);
    }
    for row in t.chunks_exact_mut(cols) {
        let s: f32 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    (z, t)
}

/// info_rows (nats with targets, bits without) against the reference, NaN meeting NaN and ±inf the
/// same infinity; column 3 is 0, and without targets columns 1 and 2 are 0. Tolerance: the log-domain
/// one, plus 1e-6·(1 + ln N) for an error δ in log Σ, which moves each of H(Q), H(P,Q), KL by at most
/// about (1 + H)·δ.
fn check_info(ctx: &Context, z: &[f32], t: &[f32], cols: usize, scale: f32, what: &str) {
    let n = z.len() / cols;
    let what = format!("{what} {n}×{cols} on {}", describe(ctx));
    let zm = GpuMatrix::from_slice(ctx, z, n, cols).unwrap();
    let tm = GpuMatrix::from_slice(ctx, t, n, cols).unwrap();
    let out = ctx.info_rows(&zm, Some(&tm), false).unwrap();
    assert_eq!(out.shape(), (n, 4), "{what}");
    let got = out.read_blocking(ctx).unwrap();
    let want = reference::info_rows(z, Some(t), cols);
    let tol = tol(log_tol(scale).abs + 1e-6 * (1.0 + (cols as f64).ln()), 1e-5);
    for (k, name) in ["H(Q)", "H(P,Q)", "KL(P||Q)"].into_iter().enumerate() {
        let g: Vec<f32> = got.chunks_exact(4).map(|r| r[k]).collect();
        let w: Vec<f64> = want.iter().map(|r| r[k]).collect();
        assert_close(&format!("{what}: {name}"), &g, &w, tol);
    }
    assert!(got.chunks_exact(4).all(|r| r[3] == 0.0), "{what}: col 3");
    let bits = ctx.info_rows(&zm, None, true).unwrap();
    let bits = bits.read_blocking(ctx).unwrap();
    let g: Vec<f32> = bits.chunks_exact(4).map(|r| r[0]).collect();
    let w: Vec<f64> = want
        .iter()
        .map(|r| r[0] * std::f64::consts::LOG2_E)
        .collect();
    assert_close(&format!("{what}: H(Q) in bits"), &g, &w, tol);
    assert!(
        bits.chunks_exact(4).all(|r| r[1..] == [0.0; 3]),
        "{what}: no targets, columns 1-3 not 0: {bits:?}"
    );
    if n >= 6 && cols >= 3 {
        // The edge rows spelled out: the README's softmax is NaN for an all −inf, NaN or +inf row, so
        // are its entropy and cross-entropy; a −inf mask under a target > 0 costs +inf.
        let r = |i: usize| &got[4 * i..4 * i + 3];
        let ok = r(0).iter().all(|v| v.is_finite())
            && (1..4).all(|i| r(i).iter().all(|v| v.is_nan()))
            && r(4)[0].is_finite()
            && r(4)[1..] == [INF; 2];
        assert!(ok, "{what}: edge rows {:?}", &got[..20]);
    }
}

/// info_rows against the reference on awkward shapes: an empty batch, N = 1, N = 16 (vec4 path),
/// N = 257 (not a multiple of the workgroup), N = 5000 (rows wider than a workgroup), each with −inf
/// masks, an all −inf row, a NaN row, a +inf row and a masked class under a non-zero target; and the
/// same under 4 KiB bindings (3 rows of 257 floats a chunk: many chunk boundaries).
#[test]
fn info_rows_awkward_shapes_and_non_finite_rows() {
    let shapes = [(0, 7), (9, 1), (7, 16), (8, 257), (6, 5000)];
    let (shared, small) = (contexts(), small_binding_contexts(4096));
    for ctx in shared.iter() {
        for (i, &(n, cols)) in shapes.iter().enumerate() {
            let (z, t) = info_problem(100 + i as u64, n, cols, 6.0);
            check_info(ctx, &z, &t, cols, 6.0, "info");
        }
    }
    for ctx in &small {
        for (n, cols) in [(40, 257), (60, 37)] {
            let (z, t) = info_problem(n as u64, n, cols, 6.0);
            check_info(ctx, &z, &t, cols, 6.0, "info, 4 KiB bindings");
        }
    }
}

/// Fused cross-entropy forward + backward with an all −inf row, a +inf logit on the target and one off
/// it (and a finite row with a −inf mask), for labels and probability targets, reductions none and
/// mean, plain and with smoothing 0.1 + class weights: loss, gradient and lse as the reference, and as
/// PyTorch documents: those three rows' loss and gradient NaN (a mean over them NaN), lse −inf / +inf,
/// argmax of a +inf row the +inf class (the all −inf row's: the test at the end of this file); the other
/// rows finite; the loss-only forward the same losses (NaN for NaN: its sign may differ).
#[test]
fn cross_entropy_all_neg_inf_and_pos_inf_rows() {
    let cols = 7;
    let mut rng = Rng::new(31);
    let mut logits = rng.vec(5 * cols, -3.0, 3.0);
    logits[cols..2 * cols].fill(NINF); // row 1: all −inf
    logits[2 * cols + 4] = INF; // row 2: +inf on the target (label 4)
    logits[3 * cols] = INF; // row 3: +inf off the target (label 2)
    logits[4 * cols + 5] = NINF; // row 4: a −inf mask off the target
    let labels = vec![1i64, 3, 4, 2, 0];
    let mut probs = rng.vec(5 * cols, 0.0, 1.0);
    probs[4 * cols + 5] = 0.0;
    for row in probs.chunks_exact_mut(cols) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    for combo in 0..8 {
        let w = (combo & 2 != 0).then(|| rng.vec(cols, 0.5, 2.0));
        let wmax = w
            .as_ref()
            .map_or(1.0, |w| w.iter().fold(0f32, |a, b| a.max(*b)));
        let opts = CrossEntropyOptions {
            reduction: [Reduction::None, Reduction::Mean][combo & 1],
            label_smoothing: [0.0, 0.1][(combo >> 1) & 1],
            weight: w,
            ..Default::default()
        };
        let use_probs = combo & 4 != 0;
        let rt = [RefTargets::Labels(&labels), RefTargets::Probs(&probs)][use_probs as usize];
        let r = reference::cross_entropy(&logits, cols, rt, &opts);
        let want_loss = match opts.reduction {
            Reduction::None => r.row_loss.clone(),
            _ => vec![r.loss],
        };
        for ctx in contexts() {
            let what = format!("probs {use_probs}, {opts:?} on {}", describe(ctx));
            let z = GpuMatrix::from_slice(ctx, &logits, 5, cols).unwrap();
            let l = GpuLabels::from_slice(ctx, &labels).unwrap();
            let p = GpuMatrix::from_slice(ctx, &probs, 5, cols).unwrap();
            let t = [Targets::Labels(&l), Targets::Probs(&p)][use_probs as usize];
            let out = ctx.cross_entropy_fwd_bwd(&z, t, &opts).unwrap();
            let loss = out.read_loss(ctx).unwrap();
            let grad = out.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
            let rows = out.rows.read_blocking(ctx).unwrap();
            let col = |c: usize| rows.chunks_exact(4).map(|r| r[c]).collect::<Vec<f32>>();
            let ltol = tol(log_tol(3.0 * wmax).abs, 3e-5);
            assert_close(&format!("{what}: loss"), &loss, &want_loss, ltol);
            let gtol = tol(PROB.abs * wmax as f64, 1e-4);
            assert_close(&format!("{what}: grad"), &grad, &r.grad, gtol);
            assert_close(&format!("{what}: lse"), &col(1), &r.lse, log_tol(3.0));
            let fwd = ctx.cross_entropy(&z, t, &opts).unwrap();
            let fwd = fwd.read_loss(ctx).unwrap();
            assert_close(&format!("{what}: loss-only"), &fwd, &to_f64(&loss), ltol);
            // The documented values, independently of the reference.
            for (i, g) in grad.chunks_exact(cols).enumerate() {
                let bad = (1..4).contains(&i);
                let ok = g.iter().all(|v| [v.is_finite(), v.is_nan()][bad as usize]);
                assert!(ok, "{what}: grad row {i} {g:?}");
            }
            let nan: Vec<bool> = loss.iter().map(|v| v.is_nan()).collect();
            match opts.reduction {
                Reduction::None => assert_eq!(nan, [false, true, true, true, false], "{what}"),
                _ => assert_eq!(nan, [true], "{what}: mean over NaN rows"),
            }
            assert_eq!(col(1)[1..4], [NINF, INF, INF], "{what}: lse");
            assert_eq!(col(2)[2..4], [4.0, 0.0], "{what}: argmax");
        }
    }
}

/// Bit-for-bit equality of two results, by the suite's one rule (`common::same_bits`).
#[track_caller]
fn assert_same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert!(same_bits(a, b), "{what}: {a:?}\n != {b:?}");
}

/// A `rows × cols` output filled with [`SENTINEL`].
fn sentinel(ctx: &Context, rows: usize, cols: usize) -> GpuMatrix {
    GpuMatrix::from_slice(ctx, &vec![SENTINEL; rows * cols], rows, cols).unwrap()
}

/// Whether `out` still holds [`SENTINEL`] everywhere.
fn untouched(ctx: &Context, out: &GpuMatrix) -> bool {
    let v = out.read_blocking(ctx).unwrap();
    v.iter().all(|x| x.to_bits() == SENTINEL.to_bits())
}

/// `result` is a ShapeMismatch error and `out` still holds the sentinel.
#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(
    what: &str,
    ctx: &Context,
    res: xent::Result<T>,
    out: &GpuMatrix,
) {
    let shape_err = matches!(res, Err(XentError::ShapeMismatch { .. }));
    assert!(
        shape_err && untouched(ctx, out),
        "{what}: {res:?} (or output touched)"
    );
}

/// `softmax_into`, `log_softmax_into`, `softmax_backward_into` into outputs pre-filled with a sentinel:
/// bit-identical to the allocating variants (every element written) on narrow, odd and vec4 rows with
/// a −inf mask and an all −inf row; into a wrong-shaped output (the transpose: same size; one column
/// more) or with a wrong-shaped upstream gradient: `ShapeMismatch`, the output untouched.
#[test]
fn softmax_into_variants_match_and_reject_wrong_shapes() {
    for ctx in contexts() {
        for (n, cols) in [(6, 10), (4, 257), (3, 1024)] {
            let what = format!("{n}×{cols} on {}", describe(ctx));
            let mut rng = Rng::new(cols as u64);
            let mut x = rng.vec(n * cols, -5.0, 5.0);
            x[1] = NINF;
            x[cols..2 * cols].fill(NINF);
            let xm = GpuMatrix::from_slice(ctx, &x, n, cols).unwrap();
            let gm = GpuMatrix::from_slice(ctx, &rng.vec(n * cols, -1.0, 1.0), n, cols).unwrap();
            let probs = ctx.softmax(&xm).unwrap();
            let p = probs.read_blocking(ctx).unwrap();
            let lp = ctx.log_softmax(&xm).unwrap().read_blocking(ctx).unwrap();
            let dz = ctx.softmax_backward(&probs, &gm).unwrap();
            let dz = dz.read_blocking(ctx).unwrap();
            let into = |name: &str, run: &dyn Fn(&GpuMatrix) -> xent::Result<()>, want: &[f32]| {
                let out = sentinel(ctx, n, cols);
                run(&out).unwrap();
                let got = out.read_blocking(ctx).unwrap();
                assert_same_bits(&format!("{name} {what}"), &got, want);
                for (r, c) in [(cols, n), (n, cols + 1)] {
                    let out = sentinel(ctx, r, c);
                    assert_rejected(&format!("{name} {what}, out {r}×{c}"), ctx, run(&out), &out);
                }
            };
            into("softmax_into", &|o| ctx.softmax_into(&xm, o), &p);
            into("log_softmax_into", &|o| ctx.log_softmax_into(&xm, o), &lp);
            into(
                "softmax_backward_into",
                &|o| ctx.softmax_backward_into(&probs, &gm, o),
                &dz,
            );
            // A right output with a wrong upstream gradient.
            for (r, c) in [(cols, n), (n, cols + 1)] {
                let out = sentinel(ctx, n, cols);
                let res = ctx.softmax_backward_into(&probs, &sentinel(ctx, r, c), &out);
                assert_rejected(
                    &format!("backward, upstream {r}×{c}, {what}"),
                    ctx,
                    res,
                    &out,
                );
            }
        }
    }
}

/// `cross_entropy_fwd_bwd_into` into a sentinel-filled gradient: gradient, per-row outputs and batch
/// numbers bit-identical to `cross_entropy_fwd_bwd` (labels with mean, probabilities with none), its
/// `grad` None; a wrong-shaped gradient (transpose, one column more), mismatched targets or a label out
/// of range: an error, the gradient untouched.
#[test]
fn cross_entropy_into_matches_and_rejects_wrong_shapes() {
    for ctx in contexts() {
        for (n, cols) in [(6, 10), (4, 257), (3, 1024)] {
            let what = format!("{n}×{cols} on {}", describe(ctx));
            let mut rng = Rng::new(cols as u64 + 1);
            let mut z = rng.vec(n * cols, -5.0, 5.0);
            z[2] = NINF;
            let zm = GpuMatrix::from_slice(ctx, &z, n, cols).unwrap();
            let labels: Vec<i64> = (0..n).map(|i| (i * 7 % cols) as i64).collect();
            let lm = GpuLabels::from_slice(ctx, &labels).unwrap();
            let pm = GpuMatrix::from_slice(ctx, &rng.vec(n * cols, 0.0, 0.01), n, cols).unwrap();
            let mean = CrossEntropyOptions::default();
            let none = CrossEntropyOptions {
                reduction: Reduction::None,
                label_smoothing: 0.1,
                ..mean.clone()
            };
            for (targets, opts) in [(Targets::Labels(&lm), &mean), (Targets::Probs(&pm), &none)] {
                let w = format!("{what}, {:?}", opts.reduction);
                let a = ctx.cross_entropy_fwd_bwd(&zm, targets, opts).unwrap();
                let grad = sentinel(ctx, n, cols);
                let b = ctx
                    .cross_entropy_fwd_bwd_into(&zm, targets, opts, &grad)
                    .unwrap();
                assert!(b.grad.is_none(), "{w}: grad of an _into call");
                let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
                assert_same_bits(
                    &format!("grad {w}"),
                    &read(&grad),
                    &read(a.grad.as_ref().unwrap()),
                );
                assert_same_bits(&format!("rows {w}"), &read(&b.rows), &read(&a.rows));
                assert_same_bits(&format!("stats {w}"), &read(&b.stats), &read(&a.stats));
                for (r, c) in [(cols, n), (n, cols + 1)] {
                    let g = sentinel(ctx, r, c);
                    let res = ctx.cross_entropy_fwd_bwd_into(&zm, targets, opts, &g);
                    assert_rejected(&format!("{w}: gradient {r}×{c}"), ctx, res, &g);
                }
            }
            let grad = sentinel(ctx, n, cols);
            let bad_t = sentinel(ctx, n, cols + 1);
            let res = ctx.cross_entropy_fwd_bwd_into(&zm, Targets::Probs(&bad_t), &none, &grad);
            assert_rejected(
                &format!("{what}: targets {n}×{}", cols + 1),
                ctx,
                res,
                &grad,
            );
            let bad_l = GpuLabels::from_slice(ctx, &vec![cols as i64; n]).unwrap();
            let res = ctx.cross_entropy_fwd_bwd_into(&zm, Targets::Labels(&bad_l), &mean, &grad);
            let label_err = matches!(res, Err(XentError::LabelOutOfRange { .. }));
            assert!(
                label_err && untouched(ctx, &grad),
                "{what}: {res:?} (or grad touched)"
            );
        }
    }
}

/// The all −inf row's argmax (every class is maximal): the first maximal class, 0, as the docs of
/// `CrossEntropyOutput::rows`, the reference, the CPU path and PyTorch's argmax say; on the narrow
/// (N = 7) and row (N = 300) kernels.
/// (Both kernels returned N − 1 until the fallback of "no candidate" became 0.)
#[test]
fn all_neg_inf_row_argmax_is_first_class() {
    for ctx in contexts() {
        for cols in [7, 300, 5000] {
            let mut z = vec![0.5; 2 * cols];
            z[..cols].fill(NINF);
            let zm = GpuMatrix::from_slice(ctx, &z, 2, cols).unwrap();
            let l = GpuLabels::from_slice(ctx, &[0i64, 0]).unwrap();
            let opts = CrossEntropyOptions::default();
            let out = ctx.cross_entropy(&zm, Targets::Labels(&l), &opts).unwrap();
            let argmax = out.read_row_column(ctx, 2).unwrap();
            assert_eq!(argmax, [0.0, 0.0], "N = {cols} on {}", describe(ctx));
        }
    }
}
