//! Softmax cross-entropy with PyTorch's options, fused with its gradient, and the per-row
//! information-theory kernel.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::launch::{Arg, Encode, RowLaunch, RowParams};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::shaders::Kernel;
use crate::softmax::check_cols;

pub use crate::options::{CrossEntropyOptions, Reduction};

mod plan;

use plan::{CePlan, GradKind};

/// Batch rows per partial sum in ce_reduce's first stage.
const REDUCE_SLICE: usize = 4096;
/// ce_reduce's MODE bits (defined once, in [`crate::shaders::flags`]).
use crate::shaders::flags::{
    MODE_FINISH as REDUCE_FINISH, MODE_FROM_PARTIALS as REDUCE_FROM_PARTIALS,
};

/// The target of cross-entropy.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class index per row.
    Labels(&'a GpuLabels),
    /// One probability row per row (soft labels); rows need not be one-hot nor sum to 1.
    Probs(&'a GpuMatrix),
}

/// What a cross-entropy call leaves on the device.
#[derive(Debug)]
pub struct CrossEntropyOutput {
    /// n×4, per row: loss (weighted, smoothed, with z-loss; 0 when ignored), log-sum-exp of the
    /// (soft-capped) logits, argmax (first maximal class, as f32), correct (1 or 0; −1 for an ignored
    /// row or probability targets).
    pub rows: GpuMatrix,
    /// 1×4: the reduced loss (the sum of row losses for `Reduction::None`), the mean's denominator,
    /// the accuracy over labelled rows, and how many labelled rows there were.
    pub stats: GpuMatrix,
    /// ∂L/∂logits of the reduced loss (of `loss.sum()` for none), when asked for.
    pub grad: Option<GpuMatrix>,
    /// The reduction the call used.
    pub reduction: Reduction,
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
    /// The batch numbers, read back (`stats` on the device, by name).
    pub async fn read_stats(&self, ctx: &Context) -> Result<CeStats> {
        let s = self.stats.read(ctx).await?;
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

    /// Column `c` of [`CrossEntropyOutput::rows`], read back.
    pub fn read_row_column(&self, ctx: &Context, c: usize) -> Result<Vec<f32>> {
        if c >= 4 {
            return Err(XentError::InvalidArgument(format!(
                "row column {c}: the per-row outputs have 4 columns (loss, lse, argmax, correct)"
            )));
        }
        let rows = self.rows.read_blocking(ctx)?;
        Ok(rows.chunks_exact(4).map(|r| r[c]).collect())
    }

    /// The loss as PyTorch returns it: n values for none, one value for sum and mean.
    pub fn read_loss(&self, ctx: &Context) -> Result<Vec<f32>> {
        match self.reduction {
            Reduction::None => self.read_row_column(ctx, 0),
            _ => Ok(vec![self.stats.read_blocking(ctx)?[0]]),
        }
    }
}

/// The cross-entropy kernels' FLAGS bits (defined once, in [`crate::shaders::flags`]).
mod flags {
    pub use crate::shaders::flags::{
        CE_GRAD as GRAD, CE_IN_PLACE as IN_PLACE, CE_LABELS as LABELS, CE_MEAN as MEAN,
        CE_PASS2 as PASS2, CE_ROW_UPSTREAM as ROW_UPSTREAM, CE_SOFTCAP as SOFTCAP,
        CE_WEIGHT as WEIGHT, INFO_TARGETS,
    };
}

/// Where the gradient goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GradTo<'a> {
    Nowhere,
    NewBuffer,
    Logits,
    Into(&'a GpuMatrix),
}

impl GradTo<'_> {
    fn kind(self) -> GradKind {
        match self {
            GradTo::Nowhere => GradKind::None,
            GradTo::NewBuffer | GradTo::Into(_) => GradKind::Buffer,
            GradTo::Logits => GradKind::InPlace,
        }
    }
}

impl Context {
    /// Loss only (forward): reads the logits once (twice with smoothing or probability targets).
    pub fn cross_entropy(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        self.ce(Encode::Submit, logits, targets, opts, None, GradTo::Nowhere)
    }

    /// Loss and gradient `∂L/∂z` in one fused kernel (plus one or two small launches summing the
    /// batch), into a new buffer.
    pub fn cross_entropy_fwd_bwd(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        self.ce(
            Encode::Submit,
            logits,
            targets,
            opts,
            None,
            GradTo::NewBuffer,
        )
    }

    /// As [`Context::cross_entropy_fwd_bwd`], writing the gradient into an existing `grad` (n × N);
    /// the output's `grad` is then `None`. A reused buffer skips wgpu's zero-fill of new buffers.
    pub fn cross_entropy_fwd_bwd_into(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        grad: &GpuMatrix,
    ) -> Result<CrossEntropyOutput> {
        self.ce(
            Encode::Submit,
            logits,
            targets,
            opts,
            None,
            GradTo::Into(grad),
        )
    }

    /// As [`Context::cross_entropy_fwd_bwd`], writing the gradient over the logits to save memory: the
    /// logits are consumed and come back as `grad`.
    pub fn cross_entropy_fwd_bwd_in_place(
        &self,
        logits: GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        let mut out = self.ce(Encode::Submit, &logits, targets, opts, None, GradTo::Logits)?;
        out.grad = Some(logits);
        Ok(out)
    }

    /// Loss and gradient with a per-row upstream gradient `∂L/∂loss_i` (`n × 1`), for
    /// `Reduction::None` losses that feed further computation.
    pub fn cross_entropy_with_row_upstream(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        upstream: &GpuMatrix,
    ) -> Result<CrossEntropyOutput> {
        if opts.reduction != Reduction::None {
            return Err(XentError::InvalidArgument(
                "a per-row upstream gradient needs reduction none".into(),
            ));
        }
        upstream.expect_shape("per-row upstream gradient", logits.rows(), 1)?;
        self.ce(
            Encode::Submit,
            logits,
            targets,
            opts,
            Some(upstream),
            GradTo::NewBuffer,
        )
    }

    /// Validates everything (the mean's denominator and the gradient scale are computed here, from
    /// the labels and weights the host has), then encodes ce_fwd_bwd → ce_reduce (loss, accuracy; two
    /// stages past 4,096 rows) in one submission. No readback in between.
    pub(crate) fn ce(
        &self,
        to: Encode<'_>,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        upstream: Option<&GpuMatrix>,
        grad_to: GradTo<'_>,
    ) -> Result<CrossEntropyOutput> {
        let (n, cols) = logits.shape();
        check_cols(cols)?;
        opts.validate(cols)?;
        // Every operand on this context (and, bound whole, at byte 0), before anything is written:
        // an empty batch writes stats.
        logits.rows_on(self)?;
        match targets {
            Targets::Labels(l) => l.on(self).map(drop)?,
            Targets::Probs(t) => t.rows_on(self).map(drop)?,
        }
        if let GradTo::Into(g) = grad_to {
            g.rows_on(self)?;
            g.expect_shape("gradient output", n, cols)?;
        }
        if let Some(u) = upstream {
            u.on(self)?;
        }
        match targets {
            Targets::Labels(labels) => check_labels(labels, n, cols, opts.ignore_index)?,
            Targets::Probs(t) => {
                t.expect_shape("probability targets", n, cols)?;
                opts.validate_for_probs()?;
            }
        }
        let grad_into = match grad_to {
            GradTo::Into(g) => Some(g),
            _ => None,
        };
        let labels_host = match targets {
            Targets::Labels(l) => Some(l.as_slice()),
            Targets::Probs(_) => None,
        };
        let plan = CePlan::new(
            n,
            cols,
            labels_host,
            opts,
            grad_to.kind(),
            upstream.is_some(),
            self.binding_floats(),
        );
        let fl = plan.flags;

        let rows = GpuMatrix::zeros(self, n, 4)?;
        let stats = GpuMatrix::zeros(self, 1, 4)?;
        let grad = match grad_to {
            GradTo::NewBuffer => Some(GpuMatrix::zeros_as(self, n, cols, logits.elem())?),
            _ => None,
        };
        // Absent operands take the context's stand-ins, a distinct one per binding.
        let (no_labels, no_targets, no_grad, no_weight) = (
            self.stand_in(0),
            self.stand_in(1),
            self.stand_in(2),
            self.stand_in(3),
        );
        let weight = opts
            .weight
            .as_ref()
            .map(|w| GpuMatrix::from_slice(self, w, 1, cols))
            .transpose()?;
        let weight_buf = weight.as_ref().map_or(Ok(no_weight), |w| w.on(self))?;
        let (labels_buf, targets_arg) = match targets {
            Targets::Labels(l) => (l.on(self)?, Arg::Whole(no_targets)),
            Targets::Probs(t) => (no_labels, t.rows_arg(self)?),
        };
        let reduction = opts.reduction;
        if n == 0 {
            // Nothing to launch: PyTorch's mean of nothing is NaN, its sum 0.
            let loss = if reduction == Reduction::Mean {
                f32::NAN
            } else {
                0.0
            };
            self.checked(|| {
                self.queue.write_buffer(
                    stats.buffer(),
                    0,
                    bytemuck::cast_slice(&[loss, 0.0, f32::NAN, 0.0]),
                )
            })?;
            return Ok(CrossEntropyOutput {
                rows,
                stats,
                grad,
                reduction,
            });
        }

        let (denom, slice, slices) = (plan.denominator, plan.slice, plan.slices);
        // Written only by the first stage of a batch of several slices.
        let partials = (slices > 1)
            .then(|| GpuMatrix::zeros(self, slices, 4))
            .transpose()?;
        let partials_buf = partials.as_ref().map_or(Ok(no_grad), |p| p.on(self))?;
        let reduce = |encoder: &mut wgpu::CommandEncoder| -> Result<()> {
            let mut params = RowParams::mode(REDUCE_FINISH);
            params.flags = fl;
            params.f[1] = denom;
            params.total = n as u32;
            let args = [
                Arg::Whole(rows.on(self)?),
                Arg::Whole(stats.on(self)?),
                Arg::Whole(partials_buf),
            ];
            let launch = |params, rows, cols| RowLaunch {
                kernel: Kernel::CeReduce,
                params,
                rows,
                cols,
                passes: 1,
                args: &args,
            };
            if slices == 1 {
                return self.encode_rows(encoder, launch(params, 1, n));
            }
            params.mode = 0;
            self.encode_rows(encoder, launch(params, slices, slice))?;
            params.mode = REDUCE_FINISH | REDUCE_FROM_PARTIALS;
            self.encode_rows(encoder, launch(params, 1, slices))
        };
        let mut params = RowParams::mode(0);
        params.flags = fl;
        params.ignore_index = plan.ignore_index;
        params.f = plan.scalars;
        let grad_arg = match grad.as_ref().or(grad_into) {
            Some(g) => g.rows_arg(self)?,
            None => Arg::Whole(no_grad),
        };
        // Read only with per-row upstream gradients (else the scale is f4); a read-only stand-in.
        let scale_buf = upstream.map_or(Ok(no_weight), |u| u.on(self))?;
        let passes = plan.passes;
        let main_args = [
            logits.rows_arg(self)?,
            grad_arg,
            targets_arg,
            Arg::Whole(labels_buf),
            Arg::Whole(weight_buf),
            Arg::Whole(scale_buf),
            Arg::Whole(rows.on(self)?),
        ];
        // One submission: the rows, then the batch numbers.
        self.launches(Kernel::CeFwdBwd.label(), to, |encoder| {
            self.encode_rows(
                encoder,
                RowLaunch {
                    kernel: Kernel::CeFwdBwd,
                    params,
                    rows: n,
                    cols,
                    passes,
                    args: &main_args,
                },
            )?;
            reduce(encoder)
        })?;
        Ok(CrossEntropyOutput {
            rows,
            stats,
            grad,
            reduction,
        })
    }

    /// Per row: entropy of softmax(z), and with targets P also the cross-entropy H(P, Q) and
    /// KL(P‖Q) with Q = softmax(z); `n × 4` (H(Q), H(P,Q), KL, 0), in nats or bits. Terms with a
    /// zero probability contribute 0 (0·log 0 = 0).
    pub fn info_rows(
        &self,
        logits: &GpuMatrix,
        targets: Option<&GpuMatrix>,
        bits: bool,
    ) -> Result<GpuMatrix> {
        let (n, cols) = logits.shape();
        check_cols(cols)?;
        if let Some(t) = targets {
            t.expect_shape("target distribution", n, cols)?;
        }
        let out = GpuMatrix::zeros(self, n, 4)?;
        let mut params = RowParams::mode(0);
        params.f[0] = if bits { std::f32::consts::LOG2_E } else { 1.0 };
        let targets_arg = match targets {
            Some(t) => {
                params.flags = flags::INFO_TARGETS;
                t.rows_arg(self)?
            }
            None => Arg::Whole(self.stand_in(0)),
        };
        self.rows(
            Encode::Submit,
            RowLaunch {
                kernel: Kernel::InfoRows,
                params,
                rows: n,
                cols,
                passes: 2,
                args: &[
                    logits.rows_arg(self)?,
                    targets_arg,
                    Arg::Whole(out.on(self)?),
                ],
            },
        )?;
        Ok(out)
    }
}

/// Every label must be a class in `[0, N)` or the ignore index ([`crate::options::check_labels`] on
/// the labels' host copy).
pub fn check_labels(labels: &GpuLabels, n: usize, classes: usize, ignore_index: i64) -> Result<()> {
    crate::options::check_labels(labels.as_slice(), n, classes, ignore_index)
}
