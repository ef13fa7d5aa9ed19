//! PyTorch's own float16 / bfloat16 `F.cross_entropy` (tests/fixtures/torch_half, made by its
//! make_fixtures.py on the CPU) against xent in the same type, both measured against the f64 call on
//! the same 16-bit values. The precision contract: xent's gradient within one unit in the last place
//! of the type (it is f32 arithmetic rounded once), its loss within f32's relative error — on every
//! backend (each GPU context, the fast CPU path, the reference rounded to the type). PyTorch's
//! worst errors are printed beside xent's, and xent's must not be larger.

use std::path::Path;

use xent::half::{bf16, f16};
use xent::reference::{self, RefTargets};
use xent::{CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Targets, cpu, npy};

use super::common::{contexts, describe};

struct Fixture {
    name: String,
    elem: Elem,
    logits: Vec<f32>,
    cols: usize,
    labels: Option<Vec<i64>>,
    probs: Option<Vec<f32>>,
    opts: CrossEntropyOptions,
    loss64: Vec<f64>,
    grad64: Vec<f64>,
    loss_torch: Vec<f32>,
    grad_torch: Vec<f32>,
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

fn load(dir: &Path) -> Fixture {
    let o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("options.json")).unwrap()).unwrap();
    let f = |name: &str| npy::read_f32(&dir.join(name)).unwrap();
    let (shape, logits) = f("logits.npy");
    let labels =
        (o["target"] == "labels").then(|| npy::read_labels(&dir.join("labels.npy")).unwrap().1);
    let probs = (o["target"] == "probs").then(|| f("targets.npy").1);
    let opts = CrossEntropyOptions {
        weight: o["has_weight"]
            .as_bool()
            .unwrap()
            .then(|| f("weight.npy").1),
        ignore_index: o["ignore_index"].as_i64().unwrap(),
        reduction: o["reduction"].as_str().unwrap().parse().unwrap(),
        label_smoothing: o["label_smoothing"].as_f64().unwrap() as f32,
        ..Default::default()
    };
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into(),
        elem: Elem::parse(o["dtype"].as_str().unwrap()).unwrap(),
        logits,
        cols: shape[1],
        labels,
        probs,
        opts,
        loss64: read_f64(&dir.join("loss64.npy")),
        grad64: read_f64(&dir.join("grad64.npy")),
        loss_torch: f("loss_torch.npy").1,
        grad_torch: f("grad_torch.npy").1,
    }
}

fn fixtures() -> Vec<Fixture> {
    let dirs = super::fixtures::fixture_dirs("torch_half");
    assert!(dirs.len() >= 12, "fixtures missing: {}", dirs.len());
    dirs.iter().map(|d| load(d)).collect()
}

/// Spacing of `e` at `x` (subnormal spacing below its normals).
fn ulp(e: Elem, x: f64) -> f64 {
    let (mant, min_exp) = match e {
        Elem::F16 => (10, -14),
        _ => (7, -126),
    };
    let exp = if x == 0.0 {
        min_exp
    } else {
        (x.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(exp - mant)
}

/// Worst |got − want| in ulps of `e` at `want` over the finite entries, after the contract's
/// absolute term: the f32 kernel's own error, 2^-22 of the largest gradient (p̂ − 1 of a class whose
/// p̂ is near 1 keeps only f32's absolute precision at 1), and f32's smallest normal, 2^-126, below
/// which a device's f32 arithmetic may flush results to zero (only bf16 holds such values: e^-88 is
/// a bf16 number but an f32 subnormal). Non-finite entries must match.
fn worst_ulp(what: &str, e: Elem, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |a, x| a.max(x.abs()));
    let abs = scale * 2f64.powi(-22) + f64::from(f32::MIN_POSITIVE);
    let mut w = 0f64;
    for (i, (&g, &x)) in got.iter().zip(want).enumerate() {
        if x.is_finite() {
            let d = ((f64::from(g) - x).abs() - abs).max(0.0);
            w = w.max(d / ulp(e, x));
        } else {
            assert!(
                (x.is_nan() && g.is_nan()) || f64::from(g) == x,
                "{what}: {i}: {g} vs {x}"
            );
        }
    }
    w
}

fn worst_rel(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .filter(|(_, w)| w.is_finite() && **w != 0.0)
        .map(|(&g, &w)| ((f64::from(g) - w) / w).abs())
        .fold(0.0, f64::max)
}

/// (loss as PyTorch shapes it, gradient) on a GPU context, in the fixture's type.
fn gpu(ctx: &xent::Context, f: &Fixture) -> (Vec<f32>, Vec<f32>) {
    let n = f.logits.len() / f.cols;
    let z = GpuMatrix::from_slice_as(ctx, &f.logits, n, f.cols, f.elem).unwrap();
    let labels = f
        .labels
        .as_ref()
        .map(|l| GpuLabels::from_slice(ctx, l).unwrap());
    let probs = f
        .probs
        .as_ref()
        .map(|p| GpuMatrix::from_slice_as(ctx, p, n, f.cols, f.elem).unwrap());
    let t = match (&labels, &probs) {
        (Some(l), _) => Targets::Labels(l),
        (_, Some(p)) => Targets::Probs(p),
        _ => unreachable!(),
    };
    let out = ctx.cross_entropy_fwd_bwd(&z, t, &f.opts).unwrap();
    let g = out.grad.as_ref().unwrap();
    assert_eq!(g.elem(), f.elem);
    (out.read_loss(ctx).unwrap(), g.read_blocking(ctx).unwrap())
}

/// The fast CPU path's twin in the fixture's type.
fn cpu_twin(f: &Fixture) -> (Vec<f32>, Vec<f32>) {
    fn run<T: cpu::Storage>(f: &Fixture) -> (Vec<f32>, Vec<f32>) {
        let z: Vec<T> = cpu::narrow(&f.logits);
        let t = match (&f.labels, &f.probs) {
            (Some(l), _) => cpu::CpuTargets::Labels(l),
            (_, Some(p)) => cpu::CpuTargets::Probs(p),
            _ => unreachable!(),
        };
        let mut g = vec![T::from_f32(0.0); z.len()];
        let r = cpu::cross_entropy_as(&z, f.cols, t, &f.opts, Some(&mut g)).unwrap();
        let loss = match f.opts.reduction {
            xent::Reduction::None => r.row_loss,
            _ => vec![r.loss],
        };
        (loss, cpu::widen(&g))
    }
    match f.elem {
        Elem::F16 => run::<f16>(f),
        _ => run::<bf16>(f),
    }
}

/// The f64 reference on the same values, its gradient rounded to the type once.
fn reference_rounded(f: &Fixture) -> (Vec<f32>, Vec<f32>) {
    let t = match (&f.labels, &f.probs) {
        (Some(l), _) => RefTargets::Labels(l),
        (_, Some(p)) => RefTargets::Probs(p),
        _ => unreachable!(),
    };
    let r = reference::cross_entropy(&f.logits, f.cols, t, &f.opts);
    let loss = match f.opts.reduction {
        xent::Reduction::None => r.row_loss.iter().map(|&v| v as f32).collect(),
        _ => vec![r.loss as f32],
    };
    (
        loss,
        r.grad.iter().map(|&v| f.elem.round(v as f32)).collect(),
    )
}

#[test]
fn sixteen_bit_cross_entropy_is_closer_to_f64_than_pytorch() {
    let fx = fixtures();
    // (who, type) → worst (xent grad ulp, xent loss rel, PyTorch grad ulp, PyTorch loss rel), cases.
    let mut report: Vec<((String, Elem), [f64; 4], usize)> = Vec::new();
    let mut check = |who: &str, f: &Fixture, (loss, grad): (Vec<f32>, Vec<f32>)| {
        let what = format!("{who} {}", f.name);
        let g = worst_ulp(&what, f.elem, &grad, &f.grad64);
        let l = worst_rel(&loss, &f.loss64);
        // The contract: one ulp of the type for the gradient, f32's relative error for the loss.
        assert!(g <= 1.0, "{what}: gradient off by {g} ulp");
        assert!(l <= 1e-5, "{what}: loss relative error {l:e}");
        let tg = worst_ulp("torch", f.elem, &f.grad_torch, &f.grad64);
        let tl = worst_rel(&f.loss_torch, &f.loss64);
        assert!(
            g <= tg.max(0.5) && l <= tl.max(1e-6),
            "{what}: {g} ulp / {l:e} vs PyTorch {tg} / {tl:e}"
        );
        let key = (who.to_string(), f.elem);
        let at = match report.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                report.push((key, [0.0; 4], 0));
                report.len() - 1
            }
        };
        let (_, w, cases) = &mut report[at];
        for (slot, v) in w.iter_mut().zip([g, l, tg, tl]) {
            *slot = slot.max(v);
        }
        *cases += 1;
    };
    for ctx in contexts() {
        for f in &fx {
            check(&describe(ctx), f, gpu(ctx, f));
        }
    }
    for f in &fx {
        check("cpu", f, cpu_twin(f));
        check("reference", f, reference_rounded(f));
    }
    let cases: usize = report.iter().map(|r| r.2).sum();
    for ((who, e), w, n) in &report {
        println!(
            "{who} {e}: worst over {n} fixtures: grad {:.2} ulp, loss rel {:.1e}; PyTorch {e}: {:.2} ulp, {:.1e}",
            w[0], w[1], w[2], w[3]
        );
    }
    assert!(cases >= fx.len() * 3, "{cases}");
}
