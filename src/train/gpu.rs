//! The trainer whose whole step stays on the device.

use std::collections::HashMap;

use super::{EpochStats, TrainConfig, check_data, check_indices, epoch_batches, epoch_stats};
use crate::context::Context;
use crate::context::workspace::Workspace;
use crate::cross_entropy::{CrossEntropyOptions, GradTo, STATS_WIDTH, Targets};
use crate::data::Dataset;
use crate::error::Result;
use crate::launch::Encode;
use crate::matrix::{GpuLabels, GpuMatrix};

/// Device buffers of one minibatch size.
struct BatchBuffers {
    idx: wgpu::Buffer,
    x: GpuMatrix,
    labels: wgpu::Buffer,
    z: GpuMatrix,
    /// The steps' scratch buffers for this batch size (an epoch's last batch is often shorter).
    ws: Workspace,
}

/// The model and data on the device.
pub struct GpuTrainer<'c> {
    ctx: &'c Context,
    train: &'c Dataset,
    x_all: GpuMatrix,
    y_all: GpuLabels,
    w: GpuMatrix,
    b: GpuMatrix,
    vw: GpuMatrix,
    vb: GpuMatrix,
    dw: GpuMatrix,
    db: GpuMatrix,
    batches: HashMap<usize, BatchBuffers>,
    test: Option<(GpuMatrix, GpuLabels)>,
}

impl<'c> GpuTrainer<'c> {
    /// Uploads the data once and zero-initialises the model.
    pub fn new(ctx: &'c Context, train: &'c Dataset, test: Option<&Dataset>) -> Result<Self> {
        check_data(train, test)?;
        let (d, c) = (train.d, train.classes);
        let y_all = GpuLabels::from_slice(ctx, &train.labels)?;
        crate::cross_entropy::check_labels(&y_all, train.n, c, -100)?;
        let test = match test {
            Some(t) => Some((
                GpuMatrix::from_slice(ctx, &t.features, t.n, t.d)?,
                GpuLabels::from_slice(ctx, &t.labels)?,
            )),
            None => None,
        };
        Ok(Self {
            ctx,
            train,
            x_all: GpuMatrix::from_slice(ctx, &train.features, train.n, d)?,
            y_all,
            w: GpuMatrix::zeros(ctx, d, c)?,
            b: GpuMatrix::zeros(ctx, 1, c)?,
            vw: GpuMatrix::zeros(ctx, d, c)?,
            vb: GpuMatrix::zeros(ctx, 1, c)?,
            dw: GpuMatrix::zeros(ctx, d, c)?,
            db: GpuMatrix::zeros(ctx, 1, c)?,
            batches: HashMap::new(),
            test,
        })
    }

    fn batch_mut(&mut self, rows: usize) -> &mut BatchBuffers {
        self.batches.get_mut(&rows).expect("made by `buffers`")
    }

    fn buffers(&mut self, rows: usize) -> Result<&BatchBuffers> {
        if !self.batches.contains_key(&rows) {
            let usage = wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC;
            let bb = BatchBuffers {
                idx: self
                    .ctx
                    .create_buffer("xent.batch.idx", rows as u64 * 4, usage)?,
                x: GpuMatrix::zeros(self.ctx, rows, self.train.d)?,
                labels: self
                    .ctx
                    .create_buffer("xent.batch.labels", rows as u64 * 4, usage)?,
                z: GpuMatrix::zeros(self.ctx, rows, self.train.classes)?,
                ws: Workspace::new(),
            };
            self.batches.insert(rows, bb);
        }
        Ok(&self.batches[&rows])
    }

    /// One SGD step on the rows `idx`, in one submission; returns the batch numbers of the step
    /// ([`crate::CrossEntropyOutput::stats`]: loss, denominator, accuracy, rows, …), still on the
    /// device and valid until the next step (they live in the trainer's workspace). An index outside
    /// the training set is an error (nothing runs).
    pub fn step(&mut self, idx: &[u32], cfg: &TrainConfig) -> Result<GpuMatrix> {
        let mut encoder = self.ctx.encoder("xent.train.step");
        let stats = self.record_step(&mut encoder, idx, cfg)?;
        self.ctx.submit(encoder)?;
        Ok(stats)
    }

    /// Records one step — gather → `X W + b` → fused cross-entropy (in place) → `Xᵀ G` → `1ᵀ G` →
    /// SGD on W and b — into `encoder`, which must be submitted before the next step is recorded (the
    /// batch's indices are written through the queue, ahead of the submission).
    fn record_step(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        idx: &[u32],
        cfg: &TrainConfig,
    ) -> Result<GpuMatrix> {
        check_indices(idx, self.train.n)?;
        self.buffers(idx.len())?;
        // The step's scratch (uniforms, per-row outputs, batch numbers, split-K partials) is the
        // workspace of its batch size: no buffer is made after the first step of each size.
        let rows = idx.len();
        let mut ws = std::mem::take(&mut self.batch_mut(rows).ws);
        let stats = self
            .ctx
            .with_workspace(&mut ws, || self.record_ops(encoder, idx, cfg));
        self.batch_mut(rows).ws = ws;
        stats
    }

    /// [`GpuTrainer::record_step`]'s operations (the batch's buffers exist).
    fn record_ops(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        idx: &[u32],
        cfg: &TrainConfig,
    ) -> Result<GpuMatrix> {
        let ctx = self.ctx;
        let bb = &self.batches[&idx.len()];
        ctx.gather_rows(
            Encode::Into(encoder),
            &self.x_all,
            &self.y_all,
            idx,
            &bb.idx,
            &bb.x,
            &bb.labels,
        )?;
        // Host copy of the batch labels: the cross-entropy call validates them (cheap, batch-sized).
        let all = self.y_all.host().unwrap_or_default();
        let host: Vec<i32> = idx.iter().map(|&i| all[i as usize]).collect();
        let labels = GpuLabels::from_parts(ctx, bb.labels.clone(), host.len(), Some(host));
        ctx.linear_to(Encode::Into(encoder), &bb.x, &self.w, Some(&self.b), &bb.z)?;
        let out = ctx.ce(
            Encode::Into(encoder),
            &bb.z,
            Targets::Labels(&labels),
            &CrossEntropyOptions::default(),
            None,
            GradTo::Logits,
        )?;
        ctx.weight_grad_to(Encode::Into(encoder), &bb.x, &bb.z, &self.dw)?;
        ctx.bias_grad_to(Encode::Into(encoder), &bb.z, &self.db)?;
        let (lr, mu) = (cfg.learning_rate, cfg.momentum);
        ctx.sgd_update_to(
            Encode::Into(encoder),
            &self.w,
            &self.vw,
            &self.dw,
            lr,
            mu,
            cfg.l2,
        )?;
        ctx.sgd_update_to(
            Encode::Into(encoder),
            &self.b,
            &self.vb,
            &self.db,
            lr,
            mu,
            0.0,
        )?;
        Ok(out.stats)
    }

    /// Accuracy on the test set with the current model (one readback).
    pub fn test_accuracy(&self) -> Result<Option<f32>> {
        let Some((x, y)) = &self.test else {
            return Ok(None);
        };
        let z = self.ctx.linear(x, &self.w, Some(&self.b))?;
        let out =
            self.ctx
                .cross_entropy(&z, Targets::Labels(y), &CrossEntropyOptions::default())?;
        Ok(Some(out.read_stats_blocking(self.ctx)?.accuracy))
    }

    /// The model, read back: (W d × N, b).
    pub fn model(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.w.read_blocking(self.ctx)?,
            self.b.read_blocking(self.ctx)?,
        ))
    }

    /// Runs one epoch: every step's statistics are copied into a log on the device and read once.
    pub fn epoch(&mut self, epoch: usize, cfg: &TrainConfig) -> Result<EpochStats> {
        let batches = epoch_batches(self.train.n, cfg.batch_size, cfg.seed, epoch);
        let width = STATS_WIDTH;
        let log = GpuMatrix::zeros(self.ctx, batches.len(), width)?;
        for (s, idx) in batches.iter().enumerate() {
            // The step and its log entry: one submission.
            let mut encoder = self.ctx.encoder("xent.train.step");
            let stats = self.record_step(&mut encoder, idx, cfg)?;
            self.ctx
                .copy_row(Encode::Into(&mut encoder), &stats, &log, s)?;
            self.ctx.submit(encoder)?;
        }
        let log = log.read_blocking(self.ctx)?;
        let per_batch = log
            .chunks_exact(width)
            .zip(&batches)
            .map(|(entry, idx)| (entry[0] as f64, entry[2] as f64, idx.len()));
        Ok(epoch_stats(epoch, per_batch, self.test_accuracy()?))
    }
}
