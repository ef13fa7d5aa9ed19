//! The GPU side of `linear_ce.rs`'s backend: the problem uploaded, the fused call, everything read
//! back.

use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
use xent::{Context, GpuLabels, GpuMatrix, LabelType, XentError};

use super::common::{contexts, describe, same_bits};
use super::linear_ce::{Lce, Problem, option_cases};

/// The fused call on the device; with `device_labels`, the labels live only on the device (int64 in
/// a caller's buffer, 256 bytes in).
pub fn run(
    ctx: &Context,
    p: &Problem,
    opts: &LinearCeOptions,
    start: Option<&Lce>,
    device_labels: bool,
) -> Lce {
    try_run(ctx, p, opts, start, device_labels).unwrap()
}

/// [`run`], its error returned.
pub fn try_run(
    ctx: &Context,
    p: &Problem,
    opts: &LinearCeOptions,
    start: Option<&Lce>,
    device_labels: bool,
) -> xent::Result<Lce> {
    let s = p.shape;
    let up = |v: &[f32], r: usize, c: usize| GpuMatrix::from_slice(ctx, v, r, c).unwrap();
    let x = up(&p.x, s.n, s.d);
    let w = up(&p.w, s.classes, s.d);
    let bias = p.bias.as_ref().map(|b| up(b, 1, s.classes));
    let nan = |len: usize| vec![f32::NAN; len];
    let dx = up(&nan(s.n * s.d), s.n, s.d);
    let (dw0, db0) = match start {
        Some(st) => (st.dw.clone(), st.db.clone()),
        None => (nan(s.classes * s.d), nan(s.classes)),
    };
    let dw = up(&dw0, s.classes, s.d);
    let db = up(&db0, 1, s.classes);
    let labels = p.labels.as_ref().map(|l| {
        if !device_labels {
            return GpuLabels::from_slice(ctx, l).unwrap();
        }
        let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("caller int64 labels"),
            size: 256 + l.len() as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue().write_buffer(&buf, 256, bytemuck::cast_slice(l));
        GpuLabels::from_buffer(ctx, buf, 256, l.len(), LabelType::I64).unwrap()
    });
    let probs = p.probs.as_ref().map(|q| up(q, s.n, s.classes));
    let targets = match (&labels, &probs) {
        (Some(l), _) => GpuTargets::Labels(l),
        (None, Some(q)) => GpuTargets::Probs(q),
        (None, None) => unreachable!(),
    };
    let result = ctx.linear_cross_entropy(
        &x,
        &w,
        bias.as_ref(),
        targets,
        opts,
        GpuLinearGrads {
            input: Some(&dx),
            weight: Some(&dw),
            bias: Some(&db),
        },
    )?;
    Ok(Lce {
        result,
        dx: dx.read_blocking(ctx).unwrap(),
        dw: dw.read_blocking(ctx).unwrap(),
        db: db.read_blocking(ctx).unwrap(),
    })
}

/// Device-only labels give the bits of host labels where the plan is the same (no ignored rows:
/// every row listed either way); with ignored rows (listed out on the host, computed and zeroed on
/// the device) the loss, row losses, log-sum-exps and dX still match bit for bit (a row's numbers
/// do not depend on its chunk) and dW/db, whose blocks then hold other rows, within rounding. Every
/// option set; small budgets; a bad label is the error, not a number.
#[test]
fn device_only_labels_in_linear_cross_entropy() {
    let mut compared = 0;
    for ctx in contexts() {
        for ignore_every in [0, 5] {
            let p = Problem::new(41 + ignore_every as u64, 70, 9, 33, false, ignore_every);
            for (name, probs, mut opts) in option_cases(33, 70) {
                if probs {
                    continue;
                }
                opts.budget_bytes = Some(33 * 4 * 16);
                opts.row_block = 8;
                let (host, dev) = (
                    run(ctx, &p, &opts, None, false),
                    run(ctx, &p, &opts, None, true),
                );
                let what = format!("{} {name}, ignore every {ignore_every}", describe(ctx));
                let (h, d) = (&host.result, &dev.result);
                assert_eq!(
                    h.loss.to_bits(),
                    d.loss.to_bits(),
                    "{what}: loss {} vs {}",
                    h.loss,
                    d.loss
                );
                assert_eq!(
                    h.denominator.to_bits(),
                    d.denominator.to_bits(),
                    "{what}: denominator"
                );
                assert!(same_bits(&h.row_loss, &d.row_loss), "{what}: row losses");
                assert!(same_bits(&h.lse, &d.lse), "{what}: lse");
                assert_eq!(
                    h.accuracy.to_bits(),
                    d.accuracy.to_bits(),
                    "{what}: accuracy"
                );
                assert!(same_bits(&host.dx, &dev.dx), "{what}: dX");
                if ignore_every == 0 {
                    assert!(same_bits(&host.dw, &dev.dw), "{what}: dW");
                    assert!(same_bits(&host.db, &dev.db), "{what}: db");
                } else {
                    let close = |a: &[f32], b: &[f32]| {
                        a.iter()
                            .zip(b)
                            .all(|(x, y)| (x - y).abs() <= 1e-6 + 1e-5 * x.abs())
                    };
                    assert!(close(&host.dw, &dev.dw), "{what}: dW");
                    assert!(close(&host.db, &dev.db), "{what}: db");
                }
                // Whatever the budget, the same bits (one chunk here).
                let whole = LinearCeOptions {
                    budget_bytes: None,
                    ..opts.clone()
                };
                let dev1 = run(ctx, &p, &whole, None, true);
                assert!(
                    same_bits(&dev1.dw, &dev.dw) && same_bits(&dev1.dx, &dev.dx),
                    "{what}: budgets"
                );
                assert_eq!(
                    dev1.result.loss.to_bits(),
                    d.loss.to_bits(),
                    "{what}: budgets"
                );
                compared += 1;
            }
        }
        // A bad label: the error with its row, nothing plausible.
        let mut p = Problem::new(7, 40, 5, 11, false, 0);
        p.labels.as_mut().unwrap()[23] = 11;
        let e = try_run(ctx, &p, &LinearCeOptions::default(), None, true).unwrap_err();
        assert!(
            matches!(
                e,
                XentError::LabelOutOfRange {
                    row: 23,
                    label: 11,
                    classes: 11,
                    ..
                }
            ),
            "{e}"
        );
    }
    // Device-only labels whose buffer cannot be copied from: refused, nothing recorded.
    for ctx in contexts() {
        let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("storage-only labels"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let l = GpuLabels::from_buffer(ctx, buf, 0, 2, LabelType::I64).unwrap();
        let x = GpuMatrix::from_slice(ctx, &[0.5; 6], 2, 3).unwrap();
        let w = GpuMatrix::from_slice(ctx, &[0.1; 12], 4, 3).unwrap();
        let e = ctx
            .linear_cross_entropy(
                &x,
                &w,
                None,
                GpuTargets::Labels(&l),
                &LinearCeOptions::default(),
                GpuLinearGrads::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("COPY_SRC"), "{e}");
    }
    assert!(compared > 0, "no adapter");
    println!("linear cross-entropy, device-only labels: {compared} cases against host labels");
}
