//! Softmax regression (multinomial logistic regression) trained by gradient descent or minibatch SGD,
//! with the whole step on the device: gather the minibatch → `Z = X W + b` → fused cross-entropy
//! (loss and `P̂ − P`, in place) → `dW = Xᵀ G`, `db = 1ᵀ G` → SGD with momentum and L2, in place. Losses
//! are copied into a log buffer on the device and read once per epoch, so steps never wait for the host.
//!
//! [`train_host`] runs the same algorithm, step for step, on the f64 CPU reference or the fast CPU path.

use std::collections::HashMap;
use std::time::Instant;

use crate::context::Context;
use crate::cross_entropy::{CrossEntropyOptions, Targets};
use crate::data::{Dataset, SplitMix64};
use crate::error::{Result, XentError};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::reference::{self, RefTargets};

/// How to train. Every field is documented and has a default; [`TrainConfig::validate`] checks them.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Rows per minibatch, sampled without replacement by a seeded shuffle each epoch (the last
    /// minibatch of an epoch may be smaller). 0: full-batch gradient descent, rows in order.
    pub batch_size: usize,
    /// Learning rate h in `W ← W − h · step`.
    pub learning_rate: f32,
    /// Momentum μ: `v ← μ v + g`, step = v (0: plain SGD).
    pub momentum: f32,
    /// L2 penalty λ on the weights (not the bias): the gradient gains `λ W`.
    pub l2: f32,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 64,
            learning_rate: 0.5,
            momentum: 0.9,
            l2: 1e-4,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        let finite_non_neg = |v: f32| v.is_finite() && v >= 0.0;
        if !finite_non_neg(self.learning_rate) || !finite_non_neg(self.l2) {
            return Err(XentError::InvalidArgument(format!(
                "learning rate {} and l2 {} must be finite and non-negative",
                self.learning_rate, self.l2
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(XentError::InvalidArgument(format!(
                "momentum {} must be in [0, 1)",
                self.momentum
            )));
        }
        Ok(())
    }
}

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's minibatches, weighted by their rows (before each step).
    pub loss: f32,
    /// Training accuracy over the epoch's minibatches (before each step).
    pub train_accuracy: f32,
    /// Accuracy on the test set after the epoch, when one was given.
    pub test_accuracy: Option<f32>,
}

/// The result of training.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// One entry per epoch.
    pub epochs: Vec<EpochStats>,
    /// Weights W (d × N, row-major).
    pub weights: Vec<f32>,
    /// Bias b (N).
    pub bias: Vec<f32>,
    /// Wall seconds of the training loop.
    pub seconds: f64,
}

/// The minibatches of one epoch: row indices, shuffled with a seed derived from `(seed, epoch)`;
/// full batch (`batch_size` 0) keeps the rows in order. Shared by the GPU and CPU trainers.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<u32>> {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    if batch_size == 0 || batch_size >= n {
        return if n == 0 { Vec::new() } else { vec![idx] };
    }
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.shuffle(&mut idx);
    idx.chunks(batch_size).map(<[u32]>::to_vec).collect()
}

fn check_data(train: &Dataset, test: Option<&Dataset>) -> Result<()> {
    if train.n == 0 || train.d == 0 || train.classes == 0 {
        return Err(XentError::InvalidShape(format!(
            "training set of {} rows, {} features, {} classes",
            train.n, train.d, train.classes
        )));
    }
    check_set(
        "training features (n × d) and labels (n)",
        train,
        train.classes,
    )?;
    if let Some(t) = test {
        if t.d != train.d || t.classes > train.classes {
            return Err(XentError::ShapeMismatch {
                what: "test set (features, classes)",
                expected: vec![train.d, train.classes],
                got: vec![t.d, t.classes],
            });
        }
        check_set("test features (n × d) and labels (n)", t, train.classes)?;
    }
    Ok(())
}

/// Lengths of a set's features and labels, and every label in `[0, classes)`.
fn check_set(what: &'static str, set: &Dataset, classes: usize) -> Result<()> {
    let features = set.n.checked_mul(set.d);
    if features != Some(set.features.len()) || set.labels.len() != set.n {
        return Err(XentError::LengthMismatch {
            what,
            expected: features.map_or(usize::MAX, |f| f.saturating_add(set.n)),
            got: set.features.len() + set.labels.len(),
        });
    }
    if let Some((row, &l)) = set
        .labels
        .iter()
        .enumerate()
        .find(|(_, l)| !(0..classes as i64).contains(l))
    {
        return Err(XentError::LabelOutOfRange {
            row,
            label: l,
            classes,
            ignore_index: -100,
        });
    }
    Ok(())
}

/// Every minibatch index is a row of the training set (checked before anything is launched).
fn check_indices(idx: &[u32], n: usize) -> Result<()> {
    match idx.iter().find(|&&i| i as usize >= n) {
        Some(i) => Err(XentError::InvalidArgument(format!(
            "minibatch index {i} is outside the training set's {n} rows"
        ))),
        None => Ok(()),
    }
}

/// Device buffers of one minibatch size.
struct BatchBuffers {
    idx: wgpu::Buffer,
    x: GpuMatrix,
    labels: wgpu::Buffer,
    z: GpuMatrix,
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
            };
            self.batches.insert(rows, bb);
        }
        Ok(&self.batches[&rows])
    }

    /// One SGD step on the rows `idx`; returns the loss statistics buffer of the step (1 × 4: loss,
    /// rows, accuracy, rows), still on the device. An index outside the training set is an error
    /// (nothing runs).
    pub fn step(&mut self, idx: &[u32], cfg: &TrainConfig) -> Result<GpuMatrix> {
        check_indices(idx, self.train.n)?;
        let rows = idx.len();
        let ctx = self.ctx;
        self.buffers(rows)?;
        let bb = &self.batches[&rows];
        ctx.gather_rows(&self.x_all, &self.y_all, idx, &bb.idx, &bb.x, &bb.labels)?;
        // Host copy of the batch labels: the cross-entropy call validates them (cheap, batch-sized).
        let host: Vec<i32> = idx
            .iter()
            .map(|&i| self.y_all.as_slice()[i as usize])
            .collect();
        let labels = GpuLabels::from_parts(ctx, bb.labels.clone(), host);
        ctx.linear_into(&bb.x, &self.w, Some(&self.b), &bb.z)?;
        let out = ctx.cross_entropy_overwrite(
            &bb.z,
            Targets::Labels(&labels),
            &CrossEntropyOptions::default(),
        )?;
        ctx.weight_grad_into(&bb.x, &bb.z, &self.dw)?;
        ctx.bias_grad_into(&bb.z, &self.db)?;
        self.sgd(true, cfg)?;
        self.sgd(false, cfg)?;
        Ok(out.stats)
    }

    /// One SGD update of the weights (with L2) or of the bias (without), in place.
    fn sgd(&self, weights: bool, cfg: &TrainConfig) -> Result<()> {
        let (w, g, v, l2) = if weights {
            (&self.w, &self.dw, &self.vw, cfg.l2)
        } else {
            (&self.b, &self.db, &self.vb, 0.0)
        };
        self.ctx
            .sgd_update(w, v, g, cfg.learning_rate, cfg.momentum, l2)
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
        Ok(Some(out.stats.read_blocking(self.ctx)?[2]))
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
        let log = GpuMatrix::zeros(self.ctx, batches.len(), 4)?;
        for (s, idx) in batches.iter().enumerate() {
            let stats = self.step(idx, cfg)?;
            self.ctx.copy_row_into(&stats, &log, s)?;
        }
        let log = log.read_blocking(self.ctx)?;
        let per_batch = log
            .chunks_exact(4)
            .zip(&batches)
            .map(|(entry, idx)| (entry[0] as f64, entry[2] as f64, idx.len()));
        Ok(epoch_stats(epoch, per_batch, self.test_accuracy()?))
    }
}

/// An epoch's statistics from its minibatches' (mean loss, accuracy, rows), weighted by rows.
fn epoch_stats(
    epoch: usize,
    per_batch: impl Iterator<Item = (f64, f64, usize)>,
    test_accuracy: Option<f32>,
) -> EpochStats {
    let (mut loss, mut correct, mut rows) = (0f64, 0f64, 0f64);
    for (l, a, r) in per_batch {
        loss += l * r as f64;
        correct += a * r as f64;
        rows += r as f64;
    }
    EpochStats {
        epoch: epoch + 1,
        loss: (loss / rows) as f32,
        train_accuracy: (correct / rows) as f32,
        test_accuracy,
    }
}

/// Trains on the GPU; `on_epoch` sees each epoch's statistics as they come (for progress bars).
pub fn train_gpu(
    ctx: &Context,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let start = Instant::now();
    let mut trainer = GpuTrainer::new(ctx, train, test)?;
    let mut epochs = Vec::new();
    for e in 0..cfg.epochs {
        let stats = trainer.epoch(e, cfg)?;
        on_epoch(&stats);
        epochs.push(stats);
    }
    let (weights, bias) = trainer.model()?;
    Ok(TrainOutcome {
        epochs,
        weights,
        bias,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Trains on the f64 reference: [`train_host`] with [`CpuPath::Reference`] (the name said "cpu" but
/// it never ran the fast CPU path).
#[deprecated(
    note = "runs the f64 reference: use train_host(CpuPath::Reference, …) or CpuPath::Fast"
)]
pub fn train_cpu(
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<TrainOutcome> {
    train_host(CpuPath::Reference, train, test, cfg, on_epoch)
}

/// Which CPU code a [`CpuTrainer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuPath {
    /// The f64 reference: the oracle the GPU trainer is tested against.
    Reference,
    /// The fast CPU path ([`crate::cpu`]: rayon, SIMD exp, matrixmultiply's sgemm): the baseline of
    /// the benchmarks.
    Fast,
}

/// The same training on the CPU, step for step (f32 parameters like the GPU's).
pub struct CpuTrainer<'d> {
    train: &'d Dataset,
    path: CpuPath,
    /// Weights W (d × N).
    pub w: Vec<f32>,
    /// Bias b (N).
    pub b: Vec<f32>,
    vw: Vec<f32>,
    vb: Vec<f32>,
}

impl<'d> CpuTrainer<'d> {
    /// A zero-initialised model on the reference path.
    pub fn new(train: &'d Dataset) -> Result<Self> {
        Self::with_path(train, CpuPath::Reference)
    }

    /// A zero-initialised model on the given path.
    pub fn with_path(train: &'d Dataset, path: CpuPath) -> Result<Self> {
        check_data(train, None)?;
        let (d, c) = (train.d, train.classes);
        Ok(Self {
            train,
            path,
            w: vec![0.0; d * c],
            b: vec![0.0; c],
            vw: vec![0.0; d * c],
            vb: vec![0.0; c],
        })
    }

    /// One step on rows `idx`; returns (batch mean loss, batch accuracy) before the step. An index
    /// outside the training set is an error.
    pub fn step(&mut self, idx: &[u32], cfg: &TrainConfig) -> Result<(f64, f64)> {
        check_indices(idx, self.train.n)?;
        let (d, c, rows) = (self.train.d, self.train.classes, idx.len());
        let x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                self.train.features[i as usize * d..(i as usize + 1) * d]
                    .iter()
                    .copied()
            })
            .collect();
        let y: Vec<i64> = idx.iter().map(|&i| self.train.labels[i as usize]).collect();
        let f32s = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
        let (loss, acc, dw, db) = match self.path {
            CpuPath::Reference => {
                let z = f32s(reference::linear(&x, &self.w, Some(&self.b), d, c));
                let ce = reference::cross_entropy(
                    &z,
                    c,
                    RefTargets::Labels(&y),
                    &CrossEntropyOptions::default(),
                );
                let correct = ce
                    .argmax
                    .iter()
                    .zip(&y)
                    .filter(|(a, y)| **a as i64 == **y)
                    .count();
                let g = f32s(ce.grad);
                let (dw, db) = (
                    reference::weight_grad(&x, &g, d, c),
                    reference::bias_grad(&g, c),
                );
                (ce.loss, correct as f64 / rows as f64, f32s(dw), f32s(db))
            }
            CpuPath::Fast => {
                let z = crate::cpu::linear(&x, &self.w, Some(&self.b), rows, d, c)?;
                let mut g = vec![0f32; z.len()];
                let ce = crate::cpu::cross_entropy(
                    &z,
                    c,
                    crate::cpu::CpuTargets::Labels(&y),
                    &CrossEntropyOptions::default(),
                    Some(&mut g),
                )?;
                let dw = crate::cpu::weight_grad(&x, &g, rows, d, c)?;
                let db = crate::cpu::bias_grad(&g, c)?;
                (ce.loss as f64, ce.accuracy as f64, dw, db)
            }
        };
        let update = |w: &mut [f32], v: &mut [f32], g: &[f32], l2: f32| {
            for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                let step = cfg.momentum * *v + (g + l2 * *w);
                *v = step;
                *w -= cfg.learning_rate * step;
            }
        };
        update(&mut self.w, &mut self.vw, &dw, cfg.l2);
        update(&mut self.b, &mut self.vb, &db, 0.0);
        Ok((loss, acc))
    }

    /// Accuracy of the current model on `data`.
    pub fn accuracy(&self, data: &Dataset) -> f32 {
        let z = reference::linear(
            &data.features,
            &self.w,
            Some(&self.b),
            data.d,
            self.train.classes,
        );
        let correct = z
            .chunks_exact(self.train.classes)
            .zip(&data.labels)
            .filter(|(row, y)| {
                let row32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
                reference::first_argmax(&row32) as i64 == **y
            })
            .count();
        correct as f32 / data.n.max(1) as f32
    }
}

/// Trains on the host with the same batches as [`train_gpu`]: on the f64 reference
/// ([`CpuPath::Reference`], the oracle) or on the fast CPU path ([`CpuPath::Fast`]).
pub fn train_host(
    path: CpuPath,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    check_data(train, test)?;
    let start = Instant::now();
    let mut t = CpuTrainer::with_path(train, path)?;
    let mut epochs = Vec::new();
    for e in 0..cfg.epochs {
        let mut per_batch = Vec::new();
        for idx in epoch_batches(train.n, cfg.batch_size, cfg.seed, e) {
            let (l, a) = t.step(&idx, cfg)?;
            per_batch.push((l, a, idx.len()));
        }
        let stats = epoch_stats(e, per_batch.into_iter(), test.map(|d| t.accuracy(d)));
        on_epoch(&stats);
        epochs.push(stats);
    }
    Ok(TrainOutcome {
        epochs,
        weights: t.w,
        bias: t.b,
        seconds: start.elapsed().as_secs_f64(),
    })
}
