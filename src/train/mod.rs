//! Softmax regression (multinomial logistic regression) trained by gradient descent or minibatch SGD,
//! with the whole step on the device: gather the minibatch → `Z = X W + b` → fused cross-entropy
//! (loss and `P̂ − P`, in place) → `dW = Xᵀ G`, `db = 1ᵀ G` → SGD with momentum and L2, in place. Losses
//! are copied into a log buffer on the device and read once per epoch, so steps never wait for the host.
//!
//! [`train_host`] runs the same algorithm, step for step, on the f64 CPU reference or the fast CPU path.

use std::time::Instant;

use crate::context::Context;
use crate::data::{Dataset, SplitMix64};

mod gpu;
mod host;

use crate::error::{Result, XentError};
pub use gpu::GpuTrainer;
pub use host::CpuTrainer;

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

pub(crate) fn check_data(train: &Dataset, test: Option<&Dataset>) -> Result<()> {
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
pub(crate) fn check_set(what: &'static str, set: &Dataset, classes: usize) -> Result<()> {
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
pub(crate) fn check_indices(idx: &[u32], n: usize) -> Result<()> {
    match idx.iter().find(|&&i| i as usize >= n) {
        Some(i) => Err(XentError::InvalidArgument(format!(
            "minibatch index {i} is outside the training set's {n} rows"
        ))),
        None => Ok(()),
    }
}

/// An epoch's statistics from its minibatches' (mean loss, accuracy, rows), weighted by rows.
pub(crate) fn epoch_stats(
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
