//! Fused linear cross-entropy: the loss of `softmax(X Wᵀ + b)` against labels or probabilities, and
//! its gradients `dX`, `dW`, `db`, without ever holding the `n × V` logits.
//!
//! `W` is `V × d`, PyTorch's `linear_weight` layout (`nn.Linear(d, V).weight`); the trainer's and
//! [`crate::Context::linear`]'s `W` is its transpose, `d × V`.
//!
//! Every backend runs the same plan ([`LinearCeOptions`] documents it):
//! 1. the rows that count are listed first: with labels, rows whose label is `ignore_index` are
//!    dropped (they do no matmul work at all; their `dX` rows are 0), on the host for host labels
//!    and on the device for device-only ones (`listed.rs`: the same list); the mean's denominator
//!    (`Σ w[y]` over those rows, or `n` for probabilities) is computed once, over the whole batch;
//! 2. the listed rows go in chunks sized from the memory budget; per chunk: `Z_c = X_c Wᵀ + b`, the
//!    fused cross-entropy with its gradient written over `Z_c` (scaled by the whole batch's factor),
//!    `dX_c = G_c W`, then `dW += G_cᵀ X_c` and `db += 1ᵀ G_c` **one row block at a time**;
//! 3. the loss is the sum of the row losses, in row order, in f64, over the denominator.
//!
//! Determinism beyond run to run: a row's logits, loss and `dX` row do not depend on the chunk it is
//! in, and `dW`/`db` are summed as `((dW₀ + P₀) + P₁) + …` with `P_b` the product of row block `b`
//! (`row_block` listed rows, summed from zero): chunks are whole numbers of blocks, so the tree is
//! the same whatever the budget, and every result is bit-identical across budgets.

use std::ops::Range;

use crate::error::{Result, XentError};
use crate::exact_sum::{mean_denominator, mean_scale};
use crate::options::{CrossEntropyOptions, Reduction};

mod gpu;
mod listed;

pub use gpu::{GpuLinearGrads, GpuTargets, LinearCeRecorded};

/// Listed rows per block of the `dW`/`db` summation tree, by default.
pub const DEFAULT_ROW_BLOCK: usize = 128;

/// The smallest default budget, bytes: below this much, chunks cost more time (smaller products,
/// one more hand-off between the matmul's threads and the rows') than their memory is worth
/// (2048×128×8192 on the CPU path: 203 ms in 16 chunks of 128 rows, 135 ms in 2 of 1,024).
pub const MIN_DEFAULT_BUDGET: u64 = 32 << 20;

/// The sizes of a linear cross-entropy: `X` is `n × d`, `W` is `classes × d` (`V × d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows (tokens, samples).
    pub n: usize,
    /// Features per row (the hidden size), at least 1.
    pub d: usize,
    /// Classes `V` (the vocabulary), at least 1.
    pub classes: usize,
}

impl LinearShape {
    /// `Err` ([`XentError::InvalidShape`]) unless d ≥ 1 and V ≥ 1.
    pub fn check(&self) -> Result<()> {
        let LinearShape { d, classes, .. } = *self;
        if d == 0 || classes == 0 {
            return Err(XentError::InvalidShape(format!(
                "linear cross-entropy needs d ≥ 1 features and V ≥ 1 classes (got d = {d}, V = {classes})"
            )));
        }
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Options of [`crate::cpu::linear_cross_entropy`] and [`crate::Context::linear_cross_entropy`].
#[derive(Clone, Debug)]
pub struct LinearCeOptions {
    /// Every option of cross-entropy, with its meaning there (weights, `ignore_index`, reduction,
    /// label smoothing, z-loss, soft-capping, `grad_output`).
    pub ce: CrossEntropyOptions,
    /// Per-row upstream gradient `∂L/∂loss_i` (length n) for `Reduction::None`: row i's gradients
    /// are scaled by it (it replaces `grad_output`), before `dW` and `db` are summed — never after.
    pub row_upstream: Option<Vec<f32>>,
    /// Add `dW` and `db` into the caller's buffers (gradient accumulation) instead of overwriting
    /// them. `dX` is always overwritten.
    pub accumulate: bool,
    /// Bytes allowed for one chunk's logits (`chunk_rows × V × 4`; the gradient is written over them).
    /// `None`: about the size of `X` (`n × d × 4`), as PyTorch's and Liger's default, and at least
    /// [`MIN_DEFAULT_BUDGET`]. Rounded down to whole row blocks, and never below one block.
    pub budget_bytes: Option<u64>,
    /// Listed rows per block of the `dW`/`db` summation tree (at least 1). Results are
    /// bit-identical for every budget at a given `row_block`; changing it changes the rounding of
    /// `dW` and `db` (not of the loss or `dX`).
    pub row_block: usize,
}

impl Default for LinearCeOptions {
    fn default() -> Self {
        Self {
            ce: CrossEntropyOptions::default(),
            row_upstream: None,
            accumulate: false,
            budget_bytes: None,
            row_block: DEFAULT_ROW_BLOCK,
        }
    }
}

/// What a linear cross-entropy reports besides its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearCeResult {
    /// The reduced loss (mean or sum; the sum of the row losses for `Reduction::None`).
    pub loss: f32,
    /// Per-row losses (0 for an ignored row).
    pub row_loss: Vec<f32>,
    /// The mean's denominator: `Σ w[y]` over rows not ignored (labels), `n` (probabilities).
    pub denominator: f32,
    /// Fraction of labelled rows not ignored whose first maximal logit is the label (NaN when there
    /// are none, and for probability targets).
    pub accuracy: f32,
    /// Per-row log-sum-exp of the (soft-capped) logits; NaN for ignored rows, whose logits are
    /// never computed.
    pub lse: Vec<f32>,
    /// Rows per chunk (the last may be shorter), and the number of chunks.
    pub chunk_rows: usize,
    /// Chunks run.
    pub chunks: usize,
    /// Bytes of the largest transient buffers the call allocated (logits chunk, gathered rows and
    /// their `dX`, per-row outputs), outputs and inputs excluded.
    pub transient_bytes: u64,
}

/// The plan every backend follows (pure: decided from the shape, the host labels and the options).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub shape: LinearShape,
    /// The listed rows' indices, when some rows are dropped (`None`: every row, in order).
    pub listed: Option<Vec<usize>>,
    /// How many rows are listed.
    pub count: usize,
    pub chunk_rows: usize,
    pub row_block: usize,
    pub denominator: f32,
    /// The caller's reduction.
    pub reduction: Reduction,
    /// The options of each chunk's cross-entropy: the batch's scale as a `Sum` (or `None`).
    pub chunk_ce: CrossEntropyOptions,
    /// The batch's gradient scale, when it is not finite, as every row's upstream gradient.
    pub const_upstream: Option<f32>,
}

impl Plan {
    /// Validates the shape and the options and lays out the chunks. `labels`: the host labels
    /// (already checked), `None` for probability targets.
    /// `granule`: rows the backend's cross-entropy launch packs together (1 on the CPU); chunks
    /// are whole multiples of it and of the row block, so no row changes kernel with the budget.
    pub fn new(
        shape: LinearShape,
        labels: Option<&[i64]>,
        opts: &LinearCeOptions,
        granule: usize,
    ) -> Result<Self> {
        shape.check()?;
        let LinearShape { n, d, classes } = shape;
        opts.ce.validate(classes)?;
        if opts.row_block == 0 {
            return Err(XentError::InvalidArgument(
                "row_block 0: the dW/db summation blocks need at least one row".into(),
            ));
        }
        if let Some(u) = &opts.row_upstream {
            if opts.ce.reduction != Reduction::None {
                return Err(XentError::InvalidArgument(
                    "a per-row upstream gradient needs reduction none".into(),
                ));
            }
            if u.len() != n {
                return Err(XentError::LengthMismatch {
                    what: "per-row upstream gradient (one per row)",
                    expected: n,
                    got: u.len(),
                });
            }
        }
        let ce = &opts.ce;
        let (listed, denominator) = match labels {
            Some(l) => {
                let kept: Vec<usize> = (0..n).filter(|&i| l[i] != ce.ignore_index).collect();
                // Exact, rounded once, as every cross-entropy of this crate.
                let denom = mean_denominator(l, ce.weight.as_deref(), ce.ignore_index);
                let listed = (kept.len() < n).then_some(kept);
                (listed, denom)
            }
            None => (None, n as f32),
        };
        let count = listed.as_ref().map_or(n, Vec::len);
        let row_block = opts.row_block;
        let row_bytes = classes as u64 * 4;
        let budget = opts.budget_bytes.unwrap_or(
            (n as u64)
                .saturating_mul(d as u64)
                .saturating_mul(4)
                .max(MIN_DEFAULT_BUDGET),
        );
        let unit = lcm(row_block, granule.max(1));
        let units = (budget / row_bytes.saturating_mul(unit as u64)).max(1);
        let chunk_rows = (units.saturating_mul(unit as u64)).min(count.max(1) as u64) as usize;
        let mut chunk_ce = ce.clone();
        let mut const_upstream = None;
        match ce.reduction {
            Reduction::Mean => {
                let scale = mean_scale(ce.grad_output, denominator);
                if scale.is_finite() {
                    chunk_ce.reduction = Reduction::Sum;
                    chunk_ce.grad_output = scale;
                } else {
                    // A zero (or tiny) denominator: ±inf or NaN, as the division gives in PyTorch. Not
                    // an option a chunk's cross-entropy accepts, so it is applied as a per-row
                    // upstream instead (the same last multiply, so the same bits).
                    chunk_ce.reduction = Reduction::None;
                    chunk_ce.grad_output = 1.0;
                    const_upstream = Some(scale);
                }
            }
            Reduction::Sum => {}
            Reduction::None => {
                if opts.row_upstream.is_some() {
                    chunk_ce.grad_output = 1.0;
                }
            }
        }
        Ok(Self {
            shape,
            listed,
            count,
            chunk_rows,
            row_block,
            denominator,
            reduction: ce.reduction,
            chunk_ce,
            const_upstream,
        })
    }

    /// Row `k`'s upstream gradient, when the rows have one: the caller's (reduction none) or the
    /// batch's non-finite scale.
    pub fn upstream(&self, opts: &LinearCeOptions, k: usize) -> Option<f32> {
        match (&opts.row_upstream, self.const_upstream) {
            (Some(u), _) => Some(u[self.row(k)]),
            (None, Some(s)) => Some(s),
            (None, None) => None,
        }
    }

    /// The chunks, as ranges of listed rows.
    pub fn chunks(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.count)
            .step_by(self.chunk_rows.max(1))
            .map(|k0| k0..(k0 + self.chunk_rows).min(self.count))
    }

    /// The row blocks of a chunk, as ranges relative to the chunk's start.
    pub fn blocks(&self, chunk: &Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
        let len = chunk.len();
        (0..len)
            .step_by(self.row_block)
            .map(move |b0| b0..(b0 + self.row_block).min(len))
    }

    /// The batch row of listed row `k`.
    pub fn row(&self, k: usize) -> usize {
        self.listed.as_ref().map_or(k, |l| l[k])
    }

    /// The listed rows of `chunk` as runs of consecutive batch rows: (first batch row, first
    /// position in the chunk, length). One run when no row is dropped.
    pub fn runs(&self, chunk: &Range<usize>) -> Vec<(usize, usize, usize)> {
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (pos, k) in chunk.clone().enumerate() {
            let r = self.row(k);
            match runs.last_mut() {
                Some((r0, _, len)) if *r0 + *len == r => *len += 1,
                _ => runs.push((r, pos, 1)),
            }
        }
        runs
    }

    /// The result from the listed rows' losses, log-sum-exps and argmaxes (in listed order).
    pub fn finish(
        &self,
        labels: Option<&[i64]>,
        loss: &[f32],
        lse: &[f32],
        argmax: &[u32],
        transient_bytes: u64,
    ) -> LinearCeResult {
        let n = self.shape.n;
        let mut row_loss = vec![0.0; n];
        let mut row_lse = vec![f32::NAN; n];
        let (mut hit, mut total) = (0usize, 0.0f64);
        for k in 0..self.count {
            let r = self.row(k);
            row_loss[r] = loss[k];
            row_lse[r] = lse[k];
            total += f64::from(loss[k]);
            if let Some(l) = labels {
                hit += usize::from(i64::from(argmax[k]) == l[r]);
            }
        }
        let reduced = match self.reduction {
            Reduction::Mean => total / f64::from(self.denominator),
            Reduction::Sum | Reduction::None => total,
        };
        let accuracy = match labels {
            Some(_) if self.count > 0 => (hit as f64 / self.count as f64) as f32,
            _ => f32::NAN,
        };
        LinearCeResult {
            loss: reduced as f32,
            row_loss,
            denominator: self.denominator,
            accuracy,
            lse: row_lse,
            chunk_rows: self.chunk_rows,
            chunks: self.count.div_ceil(self.chunk_rows.max(1)),
            transient_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize) -> LinearShape {
        LinearShape {
            n,
            d: 3,
            classes: 10,
        }
    }

    #[test]
    fn ignored_rows_are_dropped_and_runs_follow_the_batch() {
        let labels = [0, -100, 2, 3, -100, -100, 1];
        let opts = LinearCeOptions {
            ce: CrossEntropyOptions {
                weight: Some((0..10).map(|j| j as f32).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = Plan::new(shape(7), Some(&labels), &opts, 1).unwrap();
        assert_eq!(p.listed.as_deref(), Some(&[0, 2, 3, 6][..]));
        assert_eq!(p.denominator, 0.0 + 2.0 + 3.0 + 1.0);
        assert_eq!(p.chunk_ce.reduction, Reduction::Sum);
        assert_eq!(p.chunk_ce.grad_output, 1.0 / 6.0);
        assert_eq!(p.runs(&(0..4)), vec![(0, 0, 1), (2, 1, 2), (6, 3, 1)]);
        // No row dropped: no list, one run.
        let p = Plan::new(shape(7), Some(&[1; 7]), &LinearCeOptions::default(), 1).unwrap();
        assert!(p.listed.is_none());
        assert_eq!(p.runs(&(2..7)), vec![(2, 0, 5)]);
    }

    #[test]
    fn budgets_round_down_to_whole_blocks_never_below_one() {
        let chunk = |n: usize, budget: u64| {
            let opts = LinearCeOptions {
                row_block: 4,
                budget_bytes: Some(budget),
                ..Default::default()
            };
            Plan::new(shape(n), None, &opts, 1).unwrap().chunk_rows
        };
        let row = 10 * 4;
        assert_eq!(chunk(100, 9 * row), 8);
        assert_eq!(chunk(100, 3 * row), 4);
        assert_eq!(chunk(100, 0), 4);
        assert_eq!(chunk(6, 1000 * row), 6, "never more than the rows");
        let opts = LinearCeOptions {
            row_block: 4,
            ..Default::default()
        };
        let p = Plan::new(shape(100), None, &opts, 1).unwrap();
        let blocks: Vec<_> = p
            .chunks()
            .flat_map(|c| p.blocks(&c).collect::<Vec<_>>())
            .collect();
        assert_eq!(
            p.chunks().count(),
            1,
            "the default budget's floor holds all 100 rows"
        );
        assert_eq!(blocks.len(), 25);
    }
}
