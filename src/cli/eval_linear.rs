//! `xent eval --features X.npy --linear-weight W.npy [--linear-bias b.npy]`: fused linear
//! cross-entropy of NumPy inputs on any backend, its outputs named after PyTorch's arguments.

use xent::cpu::{self, CpuLinear, CpuLinearGrads};
use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions, LinearShape};
use xent::reference::{self, RefTargets};
use xent::train::CpuPath;
use xent::{GpuLabels, GpuMatrix, Reduction, XentError, npy};

use super::eval::{EvalArgs, Outputs, load_targets, loss_shape, mismatch};

/// Loads X, W, b and the targets, runs the fused call on the chosen backend, and names the outputs.
pub fn outputs(args: &EvalArgs) -> Result<Outputs, XentError> {
    let (xp, wp) = (
        args.features
            .as_ref()
            .expect("clap: --linear-weight requires --features"),
        args.linear_weight.as_ref().expect("checked by the caller"),
    );
    let (xs, x) = npy::read_f32(xp)?;
    let xs = npy::expect_rank(xp, &xs, 2)?;
    let (ws, w) = npy::read_f32(wp)?;
    let ws = npy::expect_rank(wp, &ws, 2)?;
    let (n, d, classes) = (xs[0], xs[1], ws[0]);
    if ws[1] != d {
        return Err(mismatch(wp, "the features X", vec![classes, d], ws));
    }
    let shape = LinearShape { n, d, classes };
    // Every backend's shape rule, before the reference (an oracle that assumes valid shapes) runs.
    shape.check()?;
    let bias = match &args.linear_bias {
        Some(p) => {
            let (s, b) = npy::read_f32(p)?;
            if s != [classes] {
                return Err(mismatch(p, "the linear weight W", vec![classes], &s));
            }
            Some(b)
        }
        None => None,
    };
    let (labels, targets, ce) = load_targets(args, n, classes, "X and the linear weight W")?;
    let opts = LinearCeOptions {
        ce,
        ..Default::default()
    };
    let (loss, dx, dw, db) = match args.device.host() {
        Some(CpuPath::Reference) => {
            let t = match (&labels, &targets) {
                (Some(l), _) => RefTargets::Labels(l),
                (_, Some(p)) => RefTargets::Probs(p),
                _ => unreachable!("checked in load_targets"),
            };
            let r = reference::linear_cross_entropy(&x, &w, bias.as_deref(), d, t, &opts.ce, None);
            let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let loss = match opts.ce.reduction {
                Reduction::None => to32(&r.ce.row_loss),
                _ => vec![r.ce.loss as f32],
            };
            (
                loss,
                to32(&r.grad_input),
                to32(&r.grad_weight),
                to32(&r.grad_bias),
            )
        }
        Some(CpuPath::Fast) => {
            let t = match (&labels, &targets) {
                (Some(l), _) => cpu::CpuTargets::Labels(l),
                (_, Some(p)) => cpu::CpuTargets::Probs(p),
                _ => unreachable!("checked in load_targets"),
            };
            let (mut dx, mut dw, mut db) = (
                vec![0f32; n * d],
                vec![0f32; classes * d],
                vec![0f32; classes],
            );
            let r = cpu::linear_cross_entropy(
                CpuLinear {
                    x: &x,
                    weight: &w,
                    bias: bias.as_deref(),
                    shape,
                },
                t,
                &opts,
                CpuLinearGrads {
                    input: Some(&mut dx),
                    weight: Some(&mut dw),
                    bias: Some(&mut db),
                },
            )?;
            (pick_loss(&opts, r.loss, r.row_loss), dx, dw, db)
        }
        None => {
            let ctx = args.device.context()?;
            let up = |v: &[f32], r: usize, c: usize| GpuMatrix::from_slice(&ctx, v, r, c);
            let (xm, wm) = (up(&x, n, d)?, up(&w, classes, d)?);
            let bm = bias.as_ref().map(|b| up(b, 1, classes)).transpose()?;
            let gl = labels
                .as_ref()
                .map(|l| GpuLabels::from_slice(&ctx, l))
                .transpose()?;
            let gp = targets.as_ref().map(|p| up(p, n, classes)).transpose()?;
            let t = match (&gl, &gp) {
                (Some(l), _) => GpuTargets::Labels(l),
                (_, Some(p)) => GpuTargets::Probs(p),
                _ => unreachable!("checked in load_targets"),
            };
            let (dx, dw, db) = (
                GpuMatrix::zeros(&ctx, n, d)?,
                GpuMatrix::zeros(&ctx, classes, d)?,
                GpuMatrix::zeros(&ctx, 1, classes)?,
            );
            let r = ctx.linear_cross_entropy(
                &xm,
                &wm,
                bm.as_ref(),
                t,
                &opts,
                GpuLinearGrads {
                    input: Some(&dx),
                    weight: Some(&dw),
                    bias: Some(&db),
                },
            )?;
            (
                pick_loss(&opts, r.loss, r.row_loss),
                dx.read_blocking(&ctx)?,
                dw.read_blocking(&ctx)?,
                db.read_blocking(&ctx)?,
            )
        }
    };
    let mut out: Outputs = vec![
        ("loss.npy", loss_shape(opts.ce.reduction, n), loss),
        ("grad_input.npy", vec![n, d], dx),
        ("grad_linear_weight.npy", vec![classes, d], dw),
    ];
    if bias.is_some() {
        out.push(("grad_linear_bias.npy", vec![classes], db));
    }
    Ok(out)
}

/// The loss as PyTorch shapes it.
fn pick_loss(opts: &LinearCeOptions, loss: f32, rows: Vec<f32>) -> Vec<f32> {
    match opts.ce.reduction {
        Reduction::None => rows,
        _ => vec![loss],
    }
}
