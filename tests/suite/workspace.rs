//! Workspaces: a loop that runs the same operations allocates no wgpu buffer after its first run,
//! and gives the bits it gives without one.

use xent::train::{GpuTrainer, TrainConfig};
use xent::{CrossEntropyOptions, GpuLabels, GpuMatrix, Targets, Workspace, XentError};

use super::common::{contexts, describe, random, same_bits};

/// The trainer's step (gather → XW+b → fused CE → XᵀG → 1ᵀG → SGD ×2, one submission): buffers made
/// per step, counted by the context.
#[test]
fn a_steady_training_step_makes_no_buffer() {
    let (train, _) = xent::data::digits_split().unwrap();
    let cfg = TrainConfig::default();
    let mut ran = 0;
    for ctx in contexts() {
        let mut trainer = GpuTrainer::new(ctx, &train, None).unwrap();
        // Full batches and an epoch's shorter last batch (1,438 = 22 · 64 + 30), alternating.
        let full: Vec<u32> = (0..cfg.batch_size as u32).collect();
        let last: Vec<u32> = (0..30).collect();
        let per_step: Vec<u64> = [&full, &full, &last, &full, &last, &full, &last]
            .iter()
            .map(|idx| {
                let before = ctx.buffers_created();
                trainer.step(idx, &cfg).unwrap();
                ctx.buffers_created() - before
            })
            .collect();
        println!(
            "{}: buffers made per training step {per_step:?}",
            describe(ctx)
        );
        assert!(
            per_step[0] > 0 && per_step[2] > 0,
            "each batch size's first step makes its buffers"
        );
        assert_eq!(
            [
                per_step[1],
                per_step[3],
                per_step[4],
                per_step[5],
                per_step[6]
            ],
            [0, 0, 0, 0, 0],
            "steady steps make no buffer, whatever the batch size"
        );
        ran += 1;
    }
    assert!(ran > 0, "no adapter");
}

/// Cross-entropy in a workspace, run after run: no new buffer, the bits of calls without one, and
/// the reused batch numbers start clean (a bad device-only label's status does not stay behind).
#[test]
fn workspace_runs_give_the_bits_of_plain_calls() {
    for ctx in contexts() {
        let (n, cols) = (300, 37);
        let z = GpuMatrix::from_slice(ctx, &random(3, n, cols, -5.0, 5.0), n, cols).unwrap();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % cols as i64).collect();
        let host = GpuLabels::from_slice(ctx, &labels).unwrap();
        let opts = CrossEntropyOptions {
            weight: Some((0..cols).map(|j| 0.5 + j as f32 / 7.0).collect()),
            ..Default::default()
        };
        let plain = ctx
            .cross_entropy(&z, Targets::Labels(&host), &opts)
            .unwrap();
        let want = (
            plain.rows.read_blocking(ctx).unwrap(),
            plain.read_stats_blocking(ctx).unwrap(),
        );
        let mut bad = labels.clone();
        bad[17] = cols as i64;
        let bad = {
            let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("bad labels"),
                size: n as u64 * 8,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            ctx.queue()
                .write_buffer(&buf, 0, bytemuck::cast_slice(&bad));
            GpuLabels::from_buffer(ctx, buf, 0, n, xent::LabelType::I64).unwrap()
        };
        let mut ws = Workspace::new();
        let mut made = Vec::new();
        for run in 0..4 {
            let before = ctx.buffers_created();
            let targets = if run == 1 { &bad } else { &host };
            let out = ctx
                .with_workspace(&mut ws, || {
                    ctx.cross_entropy(&z, Targets::Labels(targets), &opts)
                })
                .unwrap();
            made.push(ctx.buffers_created() - before);
            // Read after the run (a readback makes its own staging buffer); the outputs are the
            // workspace's until it runs again.
            let (rows, stats) = (
                out.rows.read_blocking(ctx).unwrap(),
                out.read_stats_blocking(ctx),
            );
            if run == 1 {
                assert!(
                    matches!(stats, Err(XentError::LabelOutOfRange { row: 17, .. })),
                    "{stats:?}"
                );
                continue;
            }
            assert!(
                same_bits(&rows, &want.0),
                "{} run {run}: rows",
                describe(ctx)
            );
            assert_eq!(stats.unwrap(), want.1, "{} run {run}: stats", describe(ctx));
        }
        println!(
            "{}: buffers made per run {made:?}, workspace of {}",
            describe(ctx),
            ws.len()
        );
        // Run 1 (device-only labels) asks for other scratch than runs 0, 2 and 3 (host labels), so
        // run 2 remakes what differs; run 3 repeats run 2 and makes nothing.
        assert!(made[0] > 0);
        assert_eq!(made[3], 0);
    }
}

/// Threads recording into their own encoders on one shared context, each in its own workspace, with
/// device-only labels: the bits of the same calls made on one thread.
#[test]
fn threads_record_into_their_own_encoders_and_workspaces() {
    for ctx in contexts() {
        let (n, cols) = (200, 33);
        let z = GpuMatrix::from_slice(ctx, &random(9, n, cols, -4.0, 4.0), n, cols).unwrap();
        let labels: Vec<i64> = (0..n as i64).map(|i| (i * 11) % cols as i64).collect();
        let host = GpuLabels::from_slice(ctx, &labels).unwrap();
        let opts = CrossEntropyOptions::default();
        let want = ctx
            .cross_entropy_fwd_bwd(&z, Targets::Labels(&host), &opts)
            .unwrap();
        let want_grad = want.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
        let want_loss = want.read_stats_blocking(ctx).unwrap().loss;
        std::thread::scope(|s| {
            for t in 0..4 {
                let (z, labels, opts, want_grad) = (&z, &labels, &opts, &want_grad);
                s.spawn(move || {
                    let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("thread labels"),
                        size: n as u64 * 8,
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    ctx.queue()
                        .write_buffer(&buf, 0, bytemuck::cast_slice(labels));
                    let dev = GpuLabels::from_buffer(ctx, buf, 0, n, xent::LabelType::I64).unwrap();
                    let mut ws = Workspace::new();
                    for step in 0..3 {
                        let mut encoder = ctx.device().create_command_encoder(&Default::default());
                        let out = ctx
                            .with_workspace(&mut ws, || {
                                ctx.recorder(&mut encoder).cross_entropy_fwd_bwd(
                                    z,
                                    Targets::Labels(&dev),
                                    opts,
                                )
                            })
                            .unwrap();
                        ctx.queue().submit([encoder.finish()]);
                        let grad = out.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
                        let loss = out.read_stats_blocking(ctx).unwrap().loss;
                        assert!(
                            same_bits(&grad, want_grad),
                            "thread {t} step {step}: gradient"
                        );
                        assert_eq!(
                            loss.to_bits(),
                            want_loss.to_bits(),
                            "thread {t} step {step}"
                        );
                    }
                });
            }
        });
    }
}
