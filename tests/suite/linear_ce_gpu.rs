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

/// Every result of `dev` has the bits of `host`'s.
fn assert_same_bits(host: &Lce, dev: &Lce, what: &str) {
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
    assert_eq!(
        h.accuracy.to_bits(),
        d.accuracy.to_bits(),
        "{what}: accuracy"
    );
    assert!(same_bits(&h.row_loss, &d.row_loss), "{what}: row losses");
    assert!(same_bits(&h.lse, &d.lse), "{what}: lse");
    assert!(same_bits(&host.dx, &dev.dx), "{what}: dX");
    assert!(same_bits(&host.dw, &dev.dw), "{what}: dW");
    assert!(same_bits(&host.db, &dev.db), "{what}: db");
}

/// The label patterns of the device-only tests: none ignored, every 5th, the first half, all.
fn ignore_patterns(p: &Problem) -> Vec<(&'static str, Problem)> {
    let with = |f: &dyn Fn(usize) -> bool| {
        let mut q = p.clone();
        for (i, l) in q.labels.as_mut().unwrap().iter_mut().enumerate() {
            if f(i) {
                *l = -100;
            }
        }
        q
    };
    vec![
        ("none ignored", p.clone()),
        ("every 5th ignored", with(&|i| i % 5 == 1)),
        ("first half ignored", with(&|i| i < p.shape.n / 2)),
        ("all ignored", with(&|_| true)),
    ]
}

/// Device-only labels give the bits of host labels. The rows whose label is `ignore_index` are
/// listed out on the device, in the host's order (a stable partition), and do no matmul work, so
/// the kept rows sit in the same chunks and row blocks as with host labels: loss, row losses,
/// log-sum-exps, accuracy, dX, dW and db all match bit for bit, for every option set, small
/// budgets and the default one. The ignored rows' features are never read (NaN there changes
/// nothing, as with host labels). Labels in a STORAGE-only buffer work (nothing is copied out). With
/// the GPU geometry the list's scan runs over 256 lanes. A bad label is the error, not a number.
#[test]
fn device_only_labels_in_linear_cross_entropy() {
    let mut compared = 0;
    let (shared, geometry) = (contexts(), super::common::gpu_geometry_contexts());
    for (ctx, big) in shared
        .iter()
        .map(|c| (c, false))
        .chain(geometry.iter().map(|c| (c, true)))
    {
        let n = if big { 1500 } else { 70 };
        let base = Problem::new(41, n, 9, 33, false, 0);
        for (pattern, mut p) in ignore_patterns(&base) {
            // The ignored rows' features: NaN, never read.
            let labels = p.labels.clone().unwrap();
            for (i, row) in p.x.chunks_exact_mut(9).enumerate() {
                if labels[i] == -100 && i % 2 == 0 {
                    row.fill(f32::NAN);
                }
            }
            let cases = option_cases(33, n);
            let cases = if big { &cases[..2] } else { &cases[..] };
            for (name, probs, opts) in cases {
                if *probs || (pattern == "all ignored" && compared % 3 != 0) {
                    continue;
                }
                let mut opts = opts.clone();
                opts.budget_bytes = Some(33 * 4 * 16);
                opts.row_block = 8;
                let what = format!("{} {name}, {pattern}", describe(ctx));
                let (host, dev) = (
                    run(ctx, &p, &opts, None, false),
                    run(ctx, &p, &opts, None, true),
                );
                assert_same_bits(&host, &dev, &what);
                assert!(
                    pattern == "all ignored" || dev.dw.iter().chain(&dev.dx).all(|v| v.is_finite()),
                    "{what}: NaN features of ignored rows reached dW or dX"
                );
                // Whatever the budget, the same bits.
                let whole = LinearCeOptions {
                    budget_bytes: None,
                    ..opts.clone()
                };
                assert_same_bits(
                    &host,
                    &run(ctx, &p, &whole, None, true),
                    &format!("{what}, default budget"),
                );
                compared += 1;
            }
        }
        // More rows than one invocation may loop over (the list's scan spreads them over 256 lanes).
        let p = Problem::new(17, 70_000, 2, 5, false, 3);
        let opts = LinearCeOptions::default();
        let (host, dev) = (
            run(ctx, &p, &opts, None, false),
            run(ctx, &p, &opts, None, true),
        );
        assert_same_bits(&host, &dev, &format!("{} 70,000 rows", describe(ctx)));
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
    // Labels in a buffer without COPY_SRC: listed on the device, nothing copied out, the host's
    // bits. Where the adapter's limits keep the device from listing (X past a 2 KiB binding here),
    // every row is computed and each chunk's labels copied out: such a buffer is then refused, and
    // with COPY_SRC the loss, rows and dX keep the host's bits, dW and db (whose blocks then hold
    // ignored rows too) within rounding.
    let p = Problem::new(9, 70, 9, 33, false, 5);
    let opts = LinearCeOptions {
        budget_bytes: Some(33 * 4 * 16),
        row_block: 8,
        ..Default::default()
    };
    let storage_only = |ctx: &Context| {
        let l = p.labels.as_ref().unwrap();
        let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("labels without COPY_SRC"),
            size: l.len() as u64 * 8,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue().write_buffer(&buf, 0, bytemuck::cast_slice(l));
        GpuLabels::from_buffer(ctx, buf, 0, l.len(), LabelType::I64).unwrap()
    };
    let fused = |ctx: &Context, l: &GpuLabels| {
        let s = p.shape;
        let x = GpuMatrix::from_slice(ctx, &p.x, s.n, s.d).unwrap();
        let w = GpuMatrix::from_slice(ctx, &p.w, s.classes, s.d).unwrap();
        let dw = GpuMatrix::zeros(ctx, s.classes, s.d).unwrap();
        ctx.linear_cross_entropy(
            &x,
            &w,
            None,
            GpuTargets::Labels(l),
            &opts,
            GpuLinearGrads {
                weight: Some(&dw),
                ..Default::default()
            },
        )
        .map(|r| (r, dw.read_blocking(ctx).unwrap()))
    };
    for ctx in shared.iter() {
        let host = GpuLabels::from_slice(ctx, p.labels.as_ref().unwrap()).unwrap();
        let (h, hdw) = fused(ctx, &host).unwrap();
        let (d, ddw) = fused(ctx, &storage_only(ctx)).unwrap();
        let what = describe(ctx);
        assert_eq!(
            h.loss.to_bits(),
            d.loss.to_bits(),
            "{what}: storage-only labels"
        );
        assert!(same_bits(&hdw, &ddw), "{what}: storage-only labels, dW");
    }
    for ctx in &super::common::small_binding_contexts(2048) {
        let what = describe(ctx);
        let e = fused(ctx, &storage_only(ctx)).unwrap_err();
        assert!(e.to_string().contains("COPY_SRC"), "{what}: {e}");
        let (host, dev) = (
            run(ctx, &p, &opts, None, false),
            run(ctx, &p, &opts, None, true),
        );
        let (h, d) = (&host.result, &dev.result);
        assert_eq!(h.loss.to_bits(), d.loss.to_bits(), "{what}: unlisted, loss");
        assert!(
            same_bits(&h.row_loss, &d.row_loss),
            "{what}: unlisted, rows"
        );
        assert!(same_bits(&host.dx, &dev.dx), "{what}: unlisted, dX");
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-6 + 1e-5 * x.abs())
        };
        assert!(
            close(&host.dw, &dev.dw) && close(&host.db, &dev.db),
            "{what}: unlisted, dW, db"
        );
        compared += 1;
    }
    assert!(compared > 0, "no adapter");
    println!("linear cross-entropy, device-only labels: {compared} cases against host labels");
}
