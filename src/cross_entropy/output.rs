//! What a cross-entropy call leaves on the device, and its batch numbers read back by name.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::matrix::GpuMatrix;
use crate::options::Reduction;

/// What a cross-entropy call leaves on the device.
#[derive(Debug)]
pub struct CrossEntropyOutput {
    /// n×4, per row: loss (weighted, smoothed, with z-loss; 0 when ignored; NaN for a bad
    /// device-only label), log-sum-exp of the (soft-capped) logits, argmax (first maximal class, as
    /// f32), correct (1 or 0; −1 for an ignored or bad row, or probability targets).
    pub rows: GpuMatrix,
    /// 1×8: the reduced loss (the sum of row losses for `Reduction::None`), the mean's denominator,
    /// the accuracy over labelled rows, how many labelled rows there were; then the gradient's scale
    /// (written for device-only labels, 0 otherwise) and the labels' status (first bad row + 1, 0 when every label is good; that label's low and
    /// high words, as f32 bit patterns). Read them by name with [`CrossEntropyOutput::read_stats`].
    pub stats: GpuMatrix,
    /// ∂L/∂logits of the reduced loss (of `loss.sum()` for none), when asked for.
    pub grad: Option<GpuMatrix>,
    /// The reduction the call used.
    pub reduction: Reduction,
    /// N and the ignore index, for the labels' error.
    pub(super) classes: usize,
    pub(super) ignore_index: i64,
}

/// The batch numbers of a cross-entropy call, by name ([`CrossEntropyOutput::read_stats`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CeStats {
    /// The reduced loss (the sum of the row losses for `Reduction::None`).
    pub loss: f32,
    /// The mean's denominator: Σ w\[y\] over rows not ignored (labels), n (probability targets).
    pub denominator: f32,
    /// Accuracy over the labelled rows not ignored (NaN when there are none, and for probabilities).
    pub accuracy: f32,
    /// How many labelled rows were not ignored.
    pub labelled_rows: f32,
}

impl CrossEntropyOutput {
    /// The batch numbers, read back (`stats` on the device, by name); for device-only labels,
    /// [`XentError::LabelOutOfRange`] naming the first bad row when a label was bad.
    pub async fn read_stats(&self, ctx: &Context) -> Result<CeStats> {
        let s = self.stats.read(ctx).await?;
        self.status(&s)?;
        Ok(CeStats {
            loss: s[0],
            denominator: s[1],
            accuracy: s[2],
            labelled_rows: s[3],
        })
    }

    /// Blocking [`CrossEntropyOutput::read_stats`].
    pub fn read_stats_blocking(&self, ctx: &Context) -> Result<CeStats> {
        pollster::block_on(self.read_stats(ctx))
    }

    /// `Ok` when every label was good: always for host labels (checked before the call), and for
    /// device-only labels when the device found none outside `[0, N)` that was not `ignore_index`
    /// (else [`XentError::LabelOutOfRange`] with the first bad row and its label).
    pub async fn check(&self, ctx: &Context) -> Result<()> {
        let s = self.stats.read(ctx).await?;
        self.status(&s)
    }

    /// Blocking [`CrossEntropyOutput::check`].
    pub fn check_blocking(&self, ctx: &Context) -> Result<()> {
        pollster::block_on(self.check(ctx))
    }

    /// Column `c` of [`CrossEntropyOutput::rows`], read back (a bad device-only label's row has a
    /// NaN loss; [`CrossEntropyOutput::check`] names it).
    pub fn read_row_column(&self, ctx: &Context, c: usize) -> Result<Vec<f32>> {
        if c >= 4 {
            return Err(XentError::InvalidArgument(format!(
                "row column {c}: the per-row outputs have 4 columns (loss, lse, argmax, correct)"
            )));
        }
        let rows = self.rows.read_blocking(ctx)?;
        Ok(rows.chunks_exact(4).map(|r| r[c]).collect())
    }

    /// The loss as PyTorch returns it: n values for none, one value for sum and mean; the labels'
    /// error instead when a device-only label was bad.
    pub fn read_loss(&self, ctx: &Context) -> Result<Vec<f32>> {
        let stats = self.read_stats_blocking(ctx)?;
        match self.reduction {
            Reduction::None => self.read_row_column(ctx, 0),
            _ => Ok(vec![stats.loss]),
        }
    }

    /// The labels' status words of `stats` as an error.
    fn status(&self, s: &[f32]) -> Result<()> {
        label_status(s, self.classes, self.ignore_index)
    }
}

/// The labels' status words of batch numbers `s` (1 × 8) as an error: `Ok` when no device-only label
/// was bad, else [`XentError::LabelOutOfRange`] with the first bad row and its label.
pub(crate) fn label_status(s: &[f32], classes: usize, ignore_index: i64) -> Result<()> {
    let row = s[5].to_bits();
    if row == 0 {
        return Ok(());
    }
    let label = ((u64::from(s[7].to_bits()) << 32) | u64::from(s[6].to_bits())) as i64;
    Err(XentError::LabelOutOfRange {
        row: row as usize - 1,
        label,
        classes,
        ignore_index,
    })
}
