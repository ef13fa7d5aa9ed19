//! Softmax cross-entropy with PyTorch's options, fused with its gradient, and the per-row
//! information-theory kernel.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::launch::{Arg, Encode, RowLaunch, RowParams};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::shaders::Kernel;
use crate::softmax::check_cols;

pub use crate::options::{CrossEntropyOptions, Reduction};

mod denom;
mod output;
mod plan;

use denom::{DenomLaunch, upload_weights};

pub(crate) use output::label_status;
pub use output::{CeStats, CrossEntropyOutput};
use plan::{CePlan, GradKind, PlanTargets};

/// Batch rows per partial sum in ce_reduce's first stage.
const REDUCE_SLICE: usize = 4096;
/// Columns of [`CrossEntropyOutput::stats`].
pub(crate) const STATS_WIDTH: usize = 8;
/// Batch rows per "row" of ce_denom (a lane sums at most this many: its carry-save digits hold 2¹⁵).
const DENOM_BLOCK: usize = 4096;
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

/// The cross-entropy kernels' FLAGS bits (defined once, in [`crate::shaders::flags`]).
mod flags {
    pub use crate::shaders::flags::CE_DEVICE_DENOM as DEVICE_DENOM;
    pub use crate::shaders::flags::{
        CE_GRAD as GRAD, CE_IN_PLACE as IN_PLACE, CE_LABELS as LABELS, CE_MEAN as MEAN,
        CE_PASS2 as PASS2, CE_ROW_UPSTREAM as ROW_UPSTREAM, CE_SOFTCAP as SOFTCAP,
        CE_WEIGHT as WEIGHT, INFO_TARGETS,
    };
    #[cfg(test)]
    pub use crate::shaders::flags::{CE_LABELS_I64 as LABELS_I64, CE_LABELS_U32 as LABELS_U32};
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
        self.ce_row_upstream(Encode::Submit, logits, targets, opts, upstream)
    }

    /// [`Context::cross_entropy_with_row_upstream`] into `to`.
    pub(crate) fn ce_row_upstream(
        &self,
        to: Encode<'_>,
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
        self.ce(to, logits, targets, opts, Some(upstream), GradTo::NewBuffer)
    }

    /// Validates everything known on the host (for host labels also the labels, and the mean's
    /// denominator and the gradient scale are computed here), then encodes, in one submission:
    /// ce_denom (device-only labels: the denominator, the scale and the labels' check, on the
    /// device) → ce_fwd_bwd → ce_reduce (loss, accuracy; two stages past 4,096 rows). No readback.
    pub(crate) fn ce(
        &self,
        to: Encode<'_>,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        upstream: Option<&GpuMatrix>,
        grad_to: GradTo<'_>,
    ) -> Result<CrossEntropyOutput> {
        self.ce_with(to, logits, targets, opts, upstream, grad_to, None)
    }

    /// [`Context::ce`]; for device-only labels with `batch`, the gradient's scale comes from that
    /// batch's numbers ([`Context::record_batch_denominator`]) and the call runs no denominator of
    /// its own (fused linear cross-entropy's chunks: one denominator for the whole batch).
    #[expect(
        clippy::too_many_arguments,
        reason = "ce's operands and the batch's numbers"
    )]
    pub(crate) fn ce_with(
        &self,
        to: Encode<'_>,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        upstream: Option<&GpuMatrix>,
        grad_to: GradTo<'_>,
        batch: Option<&GpuMatrix>,
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
        let plan_targets = match targets {
            Targets::Labels(labels) => match labels.host() {
                Some(host) => {
                    crate::options::check_labels(host, n, cols, opts.ignore_index)?;
                    PlanTargets::Host(host)
                }
                None if labels.len() != n => {
                    return Err(XentError::LengthMismatch {
                        what: "labels (one per row)",
                        expected: n,
                        got: labels.len(),
                    });
                }
                None => PlanTargets::Device(labels.label_type()),
            },
            Targets::Probs(t) => {
                t.expect_shape("probability targets", n, cols)?;
                opts.validate_for_probs()?;
                PlanTargets::Probs
            }
        };
        let device_denom = matches!(plan_targets, PlanTargets::Device(_));
        let grad_into = match grad_to {
            GradTo::Into(g) => Some(g),
            _ => None,
        };
        let plan = CePlan::new(
            n,
            cols,
            plan_targets,
            opts,
            grad_to.kind(),
            upstream.is_some(),
            self.binding_floats(),
        );
        let fl = plan.flags;

        // Every row's four numbers are written by the rows' kernel; the batch numbers' status words
        // and the exact sum's limbs must start at zero.
        let rows = GpuMatrix::scratch(self, n, 4, false)?;
        let stats = GpuMatrix::scratch(self, 1, STATS_WIDTH, true)?;
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
        let weight = upload_weights(self, opts)?;
        let weight_buf = weight.as_ref().map_or(Ok(no_weight), |w| w.on(self))?;
        let (labels_arg, targets_arg) = match targets {
            Targets::Labels(l) => (l.arg(self)?, Arg::Whole(no_targets)),
            Targets::Probs(t) => (Arg::Whole(no_labels), t.rows_arg(self)?),
        };
        let reduction = opts.reduction;
        let output = |rows, stats, grad| CrossEntropyOutput {
            rows,
            stats,
            grad,
            reduction,
            classes: cols,
            ignore_index: opts.ignore_index,
        };
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
            return Ok(output(rows, stats, grad));
        }

        let (denom, slice, slices) = (plan.denominator, plan.slice, plan.slices);
        let mut params = RowParams::mode(0);
        params.flags = fl;
        (params.ignore_index, params.ignore_hi) = plan.ignore_index;
        // Device-only labels: the denominator on the device (unless the batch's is given).
        let own_denominator = (device_denom && batch.is_none())
            .then(|| DenomLaunch::new(self, labels_arg, weight_buf, &stats, (n, cols), opts, &plan))
            .transpose()?;
        let device_denominator = |encoder: &mut wgpu::CommandEncoder| -> Result<()> {
            match &own_denominator {
                Some(d) => d.encode(self, encoder),
                None => Ok(()),
            }
        };
        // Written only by the first stage of a batch of several slices.
        let partials = (slices > 1)
            .then(|| GpuMatrix::scratch(self, slices, 4, false))
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
        params.f = plan.scalars;
        let grad_arg = match grad.as_ref().or(grad_into) {
            Some(g) => g.rows_arg(self)?,
            None => Arg::Whole(no_grad),
        };
        // Per-row upstream gradients; else, for device-only labels, the batch numbers (the scale at
        // [4]); else unread (the scale is f4): a read-only stand-in.
        let scale_buf = match upstream {
            Some(u) => u.on(self)?,
            None if device_denom => batch.unwrap_or(&stats).on(self)?,
            None => no_weight,
        };
        let passes = plan.passes;
        let main_args = [
            logits.rows_arg(self)?,
            grad_arg,
            targets_arg,
            labels_arg,
            Arg::Whole(weight_buf),
            Arg::Whole(scale_buf),
            Arg::Whole(rows.on(self)?),
        ];
        // One submission: the denominator (device-only labels), the rows, then the batch numbers.
        self.launches(Kernel::CeFwdBwd.label(), to, |encoder| {
            device_denominator(encoder)?;
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
        Ok(output(rows, stats, grad))
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
        let out = GpuMatrix::zeros(self, logits.rows(), 4)?;
        self.info_rows_to(Encode::Submit, logits, targets, bits, &out)?;
        Ok(out)
    }

    /// [`Context::info_rows`] into an existing `out` (n × 4).
    pub fn info_rows_into(
        &self,
        logits: &GpuMatrix,
        targets: Option<&GpuMatrix>,
        bits: bool,
        out: &GpuMatrix,
    ) -> Result<()> {
        self.info_rows_to(Encode::Submit, logits, targets, bits, out)
    }

    /// [`Context::info_rows`] into `to`.
    pub(crate) fn info_rows_to(
        &self,
        to: Encode<'_>,
        logits: &GpuMatrix,
        targets: Option<&GpuMatrix>,
        bits: bool,
        out: &GpuMatrix,
    ) -> Result<()> {
        let (n, cols) = logits.shape();
        check_cols(cols)?;
        if let Some(t) = targets {
            t.expect_shape("target distribution", n, cols)?;
        }
        out.expect_shape("per-row information (n × 4)", n, 4)?;
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
            to,
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
        )
    }
}

/// Every label must be a class in `[0, N)` or the ignore index ([`crate::options::check_labels`] on
/// the labels' host copy); device-only labels are checked by the kernels instead (see
/// [`GpuLabels`]), so here they are an error.
pub fn check_labels(labels: &GpuLabels, n: usize, classes: usize, ignore_index: i64) -> Result<()> {
    let host = labels.host().ok_or_else(|| {
        XentError::InvalidArgument(
            "device-only labels have no host copy to check; the cross-entropy kernels check them"
                .into(),
        )
    })?;
    crate::options::check_labels(host, n, classes, ignore_index)
}
