//! Recording into a caller's encoder (`Context::recorder`): the very bits of the submit-and-return
//! calls, on every context, with every operation recorded into one encoder and submitted once; and
//! host-known errors before anything is recorded.

use xent::{CrossEntropyOptions, GpuLabels, GpuMatrix, Targets, XentError};

use super::common::{contexts, describe, random, same_bits, small_binding_contexts};

/// The layer's weights for `G Wᵀ`: W is d × N (the same values on every call).
fn w2(ctx: &xent::Context, d: usize, c: usize) -> GpuMatrix {
    GpuMatrix::from_slice(ctx, &random(6, d, c, -1.0, 1.0), d, c).unwrap()
}

#[test]
fn recorded_operations_give_the_bits_of_the_calls() {
    let mut checked = 0;
    for ctx in contexts() {
        // A narrow shape, one not a multiple of 4, and a row wider than a workgroup.
        for (n, c) in [(1000, 10), (33, 257), (5, 4099)] {
            let what = format!("{n}x{c} on {}", describe(ctx));
            let z = GpuMatrix::from_slice(ctx, &random(1, n, c, -6.0, 6.0), n, c).unwrap();
            let g = GpuMatrix::from_slice(ctx, &random(2, n, c, -1.0, 1.0), n, c).unwrap();
            let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7) % c as i64).collect();
            let labels = GpuLabels::from_slice(ctx, &labels).unwrap();
            let opts = CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            };
            let d = 12;
            let x = GpuMatrix::from_slice(ctx, &random(3, n, d, -1.0, 1.0), n, d).unwrap();
            let w = GpuMatrix::from_slice(ctx, &random(4, d, c, -1.0, 1.0), d, c).unwrap();
            let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
            // The calls.
            let p = ctx.softmax(&z).unwrap();
            let lp = ctx.log_softmax(&z).unwrap();
            let lse = ctx.logsumexp(&z).unwrap();
            let dz = ctx.softmax_backward(&p, &g).unwrap();
            let ce = ctx
                .cross_entropy_fwd_bwd(&z, Targets::Labels(&labels), &opts)
                .unwrap();
            let zl = ctx.linear(&x, &w, None).unwrap();
            let dw = ctx.weight_grad(&x, ce.grad.as_ref().unwrap()).unwrap();
            let info = ctx.info_rows(&z, Some(&p), false).unwrap();
            let dx = ctx.input_grad(&g, &w2(ctx, d, c)).unwrap();
            let none = CrossEntropyOptions {
                reduction: xent::Reduction::None,
                ..opts.clone()
            };
            let up = GpuMatrix::from_slice(ctx, &random(5, n, 1, -2.0, 2.0), n, 1).unwrap();
            let ceu = ctx
                .cross_entropy_with_row_upstream(&z, Targets::Labels(&labels), &none, &up)
                .unwrap();
            let z_copy = || GpuMatrix::from_slice(ctx, &read(&z), n, c).unwrap();
            let cei = ctx
                .cross_entropy_fwd_bwd_in_place(z_copy(), Targets::Labels(&labels), &opts)
                .unwrap();
            // The same, recorded into one encoder, submitted once.
            let out = |r, c| GpuMatrix::zeros(ctx, r, c).unwrap();
            let (p2, lp2, lse2, dz2, zl2, dw2) = (
                out(n, c),
                out(n, c),
                out(n, 1),
                out(n, c),
                out(n, c),
                out(d, c),
            );
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            let mut rec = ctx.recorder(&mut encoder);
            rec.softmax_into(&z, &p2).unwrap();
            rec.log_softmax_into(&z, &lp2).unwrap();
            rec.logsumexp_into(&z, &lse2).unwrap();
            rec.softmax_backward_into(&p2, &g, &dz2).unwrap();
            let ce2 = rec
                .cross_entropy_fwd_bwd(&z, Targets::Labels(&labels), &opts)
                .unwrap();
            rec.linear_into(&x, &w, None, &zl2).unwrap();
            rec.weight_grad_into(&x, ce2.grad.as_ref().unwrap(), &dw2)
                .unwrap();
            let info2 = rec.info_rows(&z, Some(&p2), false).unwrap();
            let dx2 = out(n, d);
            rec.input_grad_into(&g, &w2(ctx, d, c), &dx2).unwrap();
            let ceu2 = rec
                .cross_entropy_with_row_upstream(&z, Targets::Labels(&labels), &none, &up)
                .unwrap();
            let cei2 = rec
                .cross_entropy_fwd_bwd_in_place(z_copy(), Targets::Labels(&labels), &opts)
                .unwrap();
            ctx.queue().submit([encoder.finish()]);
            for (name, a, b) in [
                ("softmax", &p, &p2),
                ("log_softmax", &lp, &lp2),
                ("logsumexp", &lse, &lse2),
                ("softmax_backward", &dz, &dz2),
                (
                    "ce grad",
                    ce.grad.as_ref().unwrap(),
                    ce2.grad.as_ref().unwrap(),
                ),
                ("ce rows", &ce.rows, &ce2.rows),
                ("ce stats", &ce.stats, &ce2.stats),
                ("linear", &zl, &zl2),
                ("weight_grad", &dw, &dw2),
                ("info_rows", &info, &info2),
                ("input_grad", &dx, &dx2),
                (
                    "ce row upstream grad",
                    ceu.grad.as_ref().unwrap(),
                    ceu2.grad.as_ref().unwrap(),
                ),
                ("ce row upstream rows", &ceu.rows, &ceu2.rows),
                (
                    "ce in place grad",
                    cei.grad.as_ref().unwrap(),
                    cei2.grad.as_ref().unwrap(),
                ),
                ("ce in place stats", &cei.stats, &cei2.stats),
            ] {
                assert!(
                    same_bits(&read(a), &read(b)),
                    "{what}: recorded {name} differs"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0 || contexts().is_empty());
}

#[test]
fn host_known_errors_come_before_anything_is_recorded() {
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &[1.0; 12], 3, 4).unwrap();
        let wrong = GpuMatrix::zeros(ctx, 4, 3).unwrap();
        let labels = GpuLabels::from_slice(ctx, &[0i64, 9, 1]).unwrap();
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let mut rec = ctx.recorder(&mut encoder);
        assert!(matches!(
            rec.softmax_into(&z, &wrong),
            Err(XentError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            rec.cross_entropy(
                &z,
                Targets::Labels(&labels),
                &CrossEntropyOptions::default()
            ),
            Err(XentError::LabelOutOfRange { row: 1, .. })
        ));
        // Nothing was recorded: the encoder finishes and submits cleanly, and writes nothing.
        ctx.queue().submit([encoder.finish()]);
        assert_eq!(wrong.read_blocking(ctx).unwrap(), vec![0.0; 12]);
    }
}

#[test]
fn batch_statistics_by_name() {
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &[3.0, 1.0, 0.0, 0.0, 2.0, 1.0, 5.0, 0.0, 0.0], 3, 3)
            .unwrap();
        let l = GpuLabels::from_slice(ctx, &[0i64, 2, -100]).unwrap();
        let out = ctx
            .cross_entropy(&z, Targets::Labels(&l), &CrossEntropyOptions::default())
            .unwrap();
        let s = out.read_stats_blocking(ctx).unwrap();
        let raw = out.stats.read_blocking(ctx).unwrap();
        assert_eq!(
            [s.loss, s.denominator, s.accuracy, s.labelled_rows],
            raw[..4]
        );
        // Two labelled rows, one right (row 0's argmax is 0; row 1's is 1, not 2).
        assert_eq!(
            (s.denominator, s.accuracy, s.labelled_rows),
            (2.0, 0.5, 2.0)
        );
        assert_eq!(pollster::block_on(out.read_stats(ctx)).unwrap(), s);
    }
}

/// Fused linear cross-entropy recorded into a caller's encoder: the bits of the call, read after the
/// caller's one submission; a product too large for the adapter (weights past the binding limit) is
/// refused before anything is recorded.
#[test]
fn recorded_linear_cross_entropy_gives_the_bits_of_the_call() {
    use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
    for ctx in contexts() {
        let (n, d, v) = (300, 9, 70);
        let up = |seed, r, c, s: f32| {
            GpuMatrix::from_slice(ctx, &random(seed, r, c, -s, s), r, c).unwrap()
        };
        let (x, w) = (up(1, n, d, 1.0), up(2, v, d, 1.0));
        let labels: Vec<i64> = (0..n as i64)
            .map(|i| {
                if i % 9 == 4 {
                    -100
                } else {
                    (i * 11) % v as i64
                }
            })
            .collect();
        let labels = GpuLabels::from_slice(ctx, &labels).unwrap();
        let opts = LinearCeOptions {
            budget_bytes: Some(128 * v as u64 * 4),
            ..Default::default()
        };
        let outs = || {
            (
                GpuMatrix::zeros(ctx, n, d).unwrap(),
                GpuMatrix::zeros(ctx, v, d).unwrap(),
            )
        };
        let ((dx, dw), (dx2, dw2)) = (outs(), outs());
        let grads = |dx, dw| GpuLinearGrads {
            input: Some(dx),
            weight: Some(dw),
            bias: None,
        };
        let called = ctx
            .linear_cross_entropy(
                &x,
                &w,
                None,
                GpuTargets::Labels(&labels),
                &opts,
                grads(&dx, &dw),
            )
            .unwrap();
        let record = |encoder: &mut wgpu::CommandEncoder| {
            ctx.recorder(encoder)
                .linear_cross_entropy(
                    &x,
                    &w,
                    None,
                    GpuTargets::Labels(&labels),
                    &opts,
                    grads(&dx2, &dw2),
                )
                .unwrap()
        };
        // Read before its encoder is submitted: an error, not a loss of 0.
        let mut early = ctx.device().create_command_encoder(&Default::default());
        let e = record(&mut early).read(ctx).unwrap_err();
        assert!(
            e.to_string().contains("before its encoder was submitted"),
            "{e}"
        );
        drop(early);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let recorded = record(&mut encoder);
        ctx.queue().submit([encoder.finish()]);
        let what = describe(ctx);
        let r = recorded.read(ctx).unwrap();
        assert!(same_bits(&[r.loss], &[called.loss]), "{what}: loss");
        assert!(
            same_bits(&r.row_loss, &called.row_loss),
            "{what}: row losses"
        );
        assert!(same_bits(&r.lse, &called.lse), "{what}: lse");
        let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
        assert!(same_bits(&read(&dx2), &read(&dx)), "{what}: dX");
        assert!(same_bits(&read(&dw2), &read(&dw)), "{what}: dW");
        // Device-only labels written by an earlier command of the same encoder (the caller's
        // pipeline makes them): the list is made from them when the encoder runs, and the results
        // are the host labels' bits.
        let host = labels
            .host()
            .unwrap()
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<i64>>();
        let buffer = |usage| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("labels"),
                size: n as u64 * 8,
                usage,
                mapped_at_creation: false,
            })
        };
        let staged = buffer(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
        ctx.queue()
            .write_buffer(&staged, 0, bytemuck::cast_slice(&host));
        let on_device = buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
        let device_labels =
            GpuLabels::from_buffer(ctx, on_device.clone(), 0, n, xent::LabelType::I64).unwrap();
        let (dx3, dw3) = outs();
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&staged, 0, &on_device, 0, n as u64 * 8);
        let recorded = ctx
            .recorder(&mut encoder)
            .linear_cross_entropy(
                &x,
                &w,
                None,
                GpuTargets::Labels(&device_labels),
                &opts,
                grads(&dx3, &dw3),
            )
            .unwrap();
        ctx.queue().submit([encoder.finish()]);
        let r = recorded.read(ctx).unwrap();
        assert!(
            same_bits(&[r.loss], &[called.loss]),
            "{what}: device labels, loss"
        );
        assert!(same_bits(&r.lse, &called.lse), "{what}: device labels, lse");
        assert!(
            same_bits(&read(&dx3), &read(&dx)) && same_bits(&read(&dw3), &read(&dw)),
            "{what}: device labels, dX and dW"
        );
    }
    // Weights past a 4 KiB binding limit: TooLarge, before anything is recorded.
    for ctx in small_binding_contexts(4096) {
        let (n, d, v) = (4, 9, 200);
        let x = GpuMatrix::from_slice(&ctx, &random(1, n, d, -1.0, 1.0), n, d).unwrap();
        let w = GpuMatrix::zeros(&ctx, v, d).unwrap();
        let dw = GpuMatrix::from_slice(&ctx, &vec![7.0; v * d], v, d).unwrap();
        let labels = GpuLabels::from_slice(&ctx, &[1i64; 4]).unwrap();
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let e = ctx
            .recorder(&mut encoder)
            .linear_cross_entropy(
                &x,
                &w,
                None,
                GpuTargets::Labels(&labels),
                &LinearCeOptions::default(),
                GpuLinearGrads {
                    weight: Some(&dw),
                    ..Default::default()
                },
            )
            .unwrap_err();
        let what = describe(&ctx);
        assert!(matches!(e, XentError::TooLarge { .. }), "{what}: {e}");
        // Nothing was recorded: dW keeps its values.
        ctx.queue().submit([encoder.finish()]);
        let dw = dw.read_blocking(&ctx).unwrap();
        assert!(
            dw.iter().all(|&g| g == 7.0),
            "{what}: an output was written"
        );
    }
}

/// Gathering a minibatch by index (rows and labels), called and recorded: the rows and labels of the
/// host's gather.
#[test]
fn gathered_minibatches_as_called_and_recorded() {
    for ctx in contexts() {
        let (n, d) = (50, 7);
        let xs = random(8, n, d, -1.0, 1.0);
        let x = GpuMatrix::from_slice(ctx, &xs, n, d).unwrap();
        let ys: Vec<i64> = (0..n as i64).map(|i| (i * 5) % 3).collect();
        let labels = GpuLabels::from_slice(ctx, &ys).unwrap();
        let idx = [4u32, 0, 49, 4, 17];
        let want_x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| xs[i as usize * d..][..d].to_vec())
            .collect();
        let want_y: Vec<i32> = idx.iter().map(|&i| ys[i as usize] as i32).collect();
        let out = GpuMatrix::zeros(ctx, idx.len(), d).unwrap();
        let got = ctx.gather_rows_into(&x, &labels, &idx, &out).unwrap();
        assert_eq!(out.read_blocking(ctx).unwrap(), want_x);
        assert_eq!(got.host(), Some(&want_y[..]));
        let out2 = GpuMatrix::zeros(ctx, idx.len(), d).unwrap();
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let got2 = ctx
            .recorder(&mut encoder)
            .gather_rows_into(&x, &labels, &idx, &out2)
            .unwrap();
        ctx.queue().submit([encoder.finish()]);
        assert_eq!(out2.read_blocking(ctx).unwrap(), want_x);
        let raw: Vec<i32> = pollster::block_on(ctx.read_buffer(got2.buffer(), 0, 20)).unwrap();
        assert_eq!(raw, want_y);
        // An index outside x: an error, nothing written.
        let e = ctx.gather_rows_into(&x, &labels, &[50], &GpuMatrix::zeros(ctx, 1, d).unwrap());
        assert!(matches!(e, Err(XentError::InvalidArgument(_))), "{e:?}");
    }
}
