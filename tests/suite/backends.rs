//! One test body per property, run on every backend: each GPU context (every adapter, both
//! reduction paths) and the fast CPU path (`xent::cpu`), all against the f64 reference. A test
//! names the property once and loops `for b in backends()`.

use xent::{Context, CrossEntropyOptions, GpuMatrix, Reduction, cpu, reference};

use super::cross_entropy::Case;

use super::common::{PROB, Rng, Tol, assert_close, contexts, describe, log_tol, to_f64};

/// A backend of the softmax family.
pub enum Backend<'a> {
    Gpu(&'a Context),
    Cpu,
}

/// The softmax family's outputs on one input.
pub struct Family {
    pub softmax: Vec<f32>,
    /// The log-sum-exp the softmax call gave with it (the GPU's `softmax_with_lse`).
    pub lse_with_softmax: Vec<f32>,
    pub logsumexp: Vec<f32>,
    pub log_softmax: Vec<f32>,
}

impl Backend<'_> {
    pub fn name(&self) -> String {
        match self {
            Backend::Gpu(ctx) => describe(ctx),
            Backend::Cpu => format!("the fast CPU path ({})", cpu::isa()),
        }
    }

    /// Every forward of the family on `x` (rows of `cols`).
    pub fn forward(&self, x: &[f32], cols: usize) -> Family {
        match self {
            Backend::Gpu(ctx) => {
                let xm = GpuMatrix::from_slice(ctx, x, x.len() / cols, cols).unwrap();
                let (p, lse) = ctx.softmax_with_lse(&xm).unwrap();
                Family {
                    softmax: p.read_blocking(ctx).unwrap(),
                    lse_with_softmax: lse.read_blocking(ctx).unwrap(),
                    logsumexp: ctx.logsumexp(&xm).unwrap().read_blocking(ctx).unwrap(),
                    log_softmax: ctx.log_softmax(&xm).unwrap().read_blocking(ctx).unwrap(),
                }
            }
            Backend::Cpu => {
                let lse = cpu::logsumexp(x, cols).unwrap();
                Family {
                    softmax: cpu::softmax(x, cols).unwrap(),
                    lse_with_softmax: lse.clone(),
                    logsumexp: lse,
                    log_softmax: cpu::log_softmax(x, cols).unwrap(),
                }
            }
        }
    }

    /// (softmax backward from `p`, log-softmax backward from `lp`), upstream `g`.
    pub fn backward(&self, p: &[f32], lp: &[f32], g: &[f32], cols: usize) -> (Vec<f32>, Vec<f32>) {
        match self {
            Backend::Gpu(ctx) => {
                let n = p.len() / cols;
                let up = |v: &[f32]| GpuMatrix::from_slice(ctx, v, n, cols).unwrap();
                let (pm, lpm, gm) = (up(p), up(lp), up(g));
                (
                    ctx.softmax_backward(&pm, &gm)
                        .unwrap()
                        .read_blocking(ctx)
                        .unwrap(),
                    ctx.log_softmax_backward(&lpm, &gm)
                        .unwrap()
                        .read_blocking(ctx)
                        .unwrap(),
                )
            }
            Backend::Cpu => (
                cpu::softmax_backward(p, g, cols).unwrap(),
                cpu::log_softmax_backward(lp, g, cols).unwrap(),
            ),
        }
    }
}

/// Every GPU context (held for the whole loop, see `contexts`), then the fast CPU path.
pub fn backends() -> impl Iterator<Item = Backend<'static>> {
    contexts()
        .into_iter()
        .map(Backend::Gpu)
        .chain(std::iter::once(Backend::Cpu))
}

/// The softmax family on `b` against the reference: softmax, log-sum-exp (alone and beside the
/// softmax), log-softmax, and both backwards from the backend's own forward outputs and a seeded
/// upstream gradient. Tolerances: `PROB` for probabilities and gradients, `log_tol` of the logits'
/// magnitude for log-domain values (common.rs gives their formulas).
pub fn check_family(b: &Backend<'_>, x: &[f32], cols: usize, case: &str) {
    let what = |k: &str| format!("{case} {k} on {}", b.name());
    let scale = x
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |a, &v| a.max(v.abs()));
    let f = b.forward(x, cols);
    assert_close(
        &what("softmax"),
        &f.softmax,
        &to_f64(&reference::softmax(x, cols)),
        PROB,
    );
    let lse_ref: Vec<f64> = x.chunks_exact(cols).map(reference::row_logsumexp).collect();
    assert_close(
        &what("lse (with softmax)"),
        &f.lse_with_softmax,
        &lse_ref,
        log_tol(scale),
    );
    assert_close(&what("logsumexp"), &f.logsumexp, &lse_ref, log_tol(scale));
    assert_close(
        &what("log_softmax"),
        &f.log_softmax,
        &to_f64(&reference::log_softmax(x, cols)),
        log_tol(scale),
    );
    let g = Rng::new(cols as u64 ^ 0x5eed).vec(x.len(), -1.0, 1.0);
    let (dz, dlz) = b.backward(&f.softmax, &f.log_softmax, &g, cols);
    assert_close(
        &what("softmax_backward"),
        &dz,
        &to_f64(&reference::softmax_backward(&f.softmax, &g, cols)),
        PROB,
    );
    let gsum = g
        .chunks_exact(cols)
        .map(|r| r.iter().map(|v| v.abs()).sum::<f32>())
        .fold(0f32, f32::max);
    assert_close(
        &what("log_softmax_backward"),
        &dlz,
        &to_f64(&reference::log_softmax_backward(&f.log_softmax, &g, cols)),
        log_tol(gsum),
    );
}

/// Cross-entropy of one case, as every backend gives it.
pub struct CeOut {
    /// The loss as PyTorch shapes it: n values for `none`, else one.
    pub loss: Vec<f32>,
    /// Per-row losses (0 for ignored rows).
    pub row_loss: Vec<f32>,
    pub grad: Vec<f32>,
    pub lse: Vec<f32>,
    pub argmax: Vec<u32>,
    pub denominator: f32,
    pub accuracy: f32,
}

impl Backend<'_> {
    /// Cross-entropy forward and backward of `case` (with each backend's own consistency checks:
    /// forward-only and in-place runs against the fused one).
    pub fn cross_entropy(&self, case: &Case) -> CeOut {
        match self {
            Backend::Gpu(ctx) => {
                let (loss, grad, rows, stats) = case.run(ctx);
                let col = |c: usize| rows.chunks_exact(4).map(|r| r[c]).collect::<Vec<f32>>();
                CeOut {
                    loss,
                    row_loss: col(0),
                    grad,
                    lse: col(1),
                    argmax: col(2).iter().map(|&a| a as u32).collect(),
                    denominator: stats[1],
                    accuracy: stats[2],
                }
            }
            Backend::Cpu => {
                let (out, grad) = super::cpu::run_case(case);
                CeOut {
                    loss: match case.opts.reduction {
                        Reduction::None => out.row_loss.clone(),
                        _ => vec![out.loss],
                    },
                    row_loss: out.row_loss,
                    grad,
                    lse: out.lse,
                    argmax: out.argmax,
                    denominator: out.denominator,
                    accuracy: out.accuracy,
                }
            }
        }
    }
}

/// Largest |class weight| (1 without weights): losses and gradients scale with it.
fn wmax(opts: &CrossEntropyOptions) -> f32 {
    opts.weight
        .as_ref()
        .map_or(1.0, |w| w.iter().fold(0f32, |a, &b| a.max(b.abs())))
}

/// Cross-entropy on `b` against the reference. Tolerances follow `common`'s formulas: losses
/// `log_tol` of the logits' magnitude times the largest |weight| (and the z-loss's lse²) with 3e-5
/// relative; gradients `PROB` scaled by the same and by the mean's 1 / denominator where that exceeds
/// 1, with 1e-4 relative. Argmax and accuracy are compared on rows without NaN and without
/// soft-capping (f32 tanh against f64 may break ties).
pub fn check_ce(b: &Backend<'_>, case: &Case, what: &str) -> CeOut {
    let what = format!("{what} on {}", b.name());
    let r = case.reference();
    let out = b.cross_entropy(case);
    let scale = case
        .logits
        .iter()
        .filter(|v| v.is_finite())
        .fold(1f32, |a, &v| a.max(v.abs()));
    let (w, zl) = (wmax(&case.opts), case.opts.z_loss);
    let loss_tol = Tol {
        abs: log_tol(scale * w * (1.0 + zl * scale * 2.0)).abs,
        rel: 3e-5,
    };
    let want_loss: Vec<f64> = match case.opts.reduction {
        Reduction::None => r.row_loss.clone(),
        _ => vec![r.loss],
    };
    assert_close(&format!("{what}: loss"), &out.loss, &want_loss, loss_tol);
    assert_close(
        &format!("{what}: row loss"),
        &out.row_loss,
        &r.row_loss,
        loss_tol,
    );
    assert_close(
        &format!("{what}: denominator"),
        &[out.denominator],
        &[r.denominator],
        PROB,
    );
    let gscale = match case.opts.reduction {
        Reduction::Mean => (case.opts.grad_output as f64 / r.denominator).abs(),
        _ => (case.opts.grad_output as f64).abs(),
    };
    let gscale = if gscale.is_finite() {
        gscale.max(1.0)
    } else {
        1.0
    };
    let gtol = Tol {
        abs: PROB.abs * w as f64 * (1.0 + zl as f64 * scale as f64 * 4.0) * gscale,
        rel: 1e-4,
    };
    assert_close(&format!("{what}: grad"), &out.grad, &r.grad, gtol);
    assert_close(&format!("{what}: lse"), &out.lse, &r.lse, log_tol(scale));
    if case.opts.softcap.is_none() {
        let cols = case.cols;
        let clean = |i: usize| {
            !case.logits[i * cols..(i + 1) * cols]
                .iter()
                .any(|v| v.is_nan())
        };
        for (i, (&got, &want)) in out.argmax.iter().zip(&r.argmax).enumerate() {
            assert!(
                !clean(i) || got as usize == want,
                "{what}: argmax of row {i}: {got} vs {want}"
            );
        }
        if (0..case.n()).all(clean)
            && let Some(l) = &case.labels
        {
            let kept: Vec<usize> = (0..l.len())
                .filter(|&i| l[i] != case.opts.ignore_index)
                .collect();
            let hits = kept.iter().filter(|&&i| r.argmax[i] as i64 == l[i]).count();
            let want = hits as f32 / kept.len() as f32;
            assert!(
                (out.accuracy.is_nan() && want.is_nan()) || (out.accuracy - want).abs() < 1e-6,
                "{what}: accuracy {} vs {want}",
                out.accuracy
            );
        }
    }
    out
}
