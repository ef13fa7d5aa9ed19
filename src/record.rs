//! Recording into a caller's command encoder: the operations of [`Context`] written into a
//! `wgpu::CommandEncoder` that the caller owns and submits, beside its own passes, as wgpu's
//! ecosystem does it (wgpu_sort, vello). Recording never submits, never blocks and never reads
//! back; every error that can be known on the host (shapes, options, labels, another context's
//! matrices, sizes past the limits) comes back before anything is recorded for that operation. A
//! device error while recording (a pipeline that fails to build, an error wgpu reported earlier
//! outside any scope) can leave part of an operation in the encoder: drop the encoder then.
//!
//! The submit-and-return calls of [`Context`] are this same recording into an encoder of their own,
//! so a recorded operation gives the very bits of the call.
//!
//! ```no_run
//! use xent::{Context, ContextOptions, CrossEntropyOptions, GpuLabels, GpuMatrix, Targets};
//!
//! # fn main() -> Result<(), xent::XentError> {
//! let ctx = Context::new_blocking(ContextOptions::from_env())?;
//! let z = GpuMatrix::from_slice(&ctx, &[2.0, 1.0, 0.1, 0.5, 2.5, -1.0], 2, 3)?;
//! let labels = GpuLabels::from_slice(&ctx, &[0i64, 1])?;
//! let probs = GpuMatrix::zeros(&ctx, 2, 3)?;
//! let mut encoder = ctx.device().create_command_encoder(&Default::default());
//! // … the program's own passes …
//! let mut rec = ctx.recorder(&mut encoder);
//! rec.softmax_into(&z, &probs)?;
//! let ce = rec.cross_entropy_fwd_bwd(&z, Targets::Labels(&labels), &CrossEntropyOptions::default())?;
//! ctx.queue().submit([encoder.finish()]); // one submission for everything
//! let loss = ce.read_loss(&ctx)?[0];
//! # let _ = loss;
//! # Ok(())
//! # }
//! ```

use crate::context::Context;
use crate::cross_entropy::{CrossEntropyOutput, GradTo, Targets};
use crate::error::Result;
use crate::launch::Encode;
use crate::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions, LinearCeRecorded};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::options::CrossEntropyOptions;
use crate::shaders::flags;

/// [`Context`]'s operations, recorded into one caller's encoder (see the [module docs](self)).
/// Outputs that an operation allocates (cross-entropy's per-row numbers and gradient) are returned
/// as usual; read them after the caller has submitted the encoder. Parameters are written through
/// the queue and land at the next submission; inside [`Context::with_workspace`], submit before the
/// same workspace records again.
pub struct Recorder<'a> {
    ctx: &'a Context,
    encoder: &'a mut wgpu::CommandEncoder,
}

impl Context {
    /// A [`Recorder`] of this context's operations into `encoder`.
    pub fn recorder<'a>(&'a self, encoder: &'a mut wgpu::CommandEncoder) -> Recorder<'a> {
        Recorder { ctx: self, encoder }
    }
}

impl Recorder<'_> {
    fn to(&mut self) -> Encode<'_> {
        Encode::Into(self.encoder)
    }

    /// [`Context::softmax_into`], recorded.
    pub fn softmax_into(&mut self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let lse = GpuMatrix::scratch(self.ctx, x.rows(), 1, false)?;
        let ctx = self.ctx;
        ctx.softmax_fwd(self.to(), x, flags::MODE_SOFTMAX, Some(out), &lse)
    }

    /// [`Context::log_softmax_into`], recorded.
    pub fn log_softmax_into(&mut self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let lse = GpuMatrix::scratch(self.ctx, x.rows(), 1, false)?;
        let ctx = self.ctx;
        ctx.softmax_fwd(self.to(), x, flags::MODE_LOG_SOFTMAX, Some(out), &lse)
    }

    /// [`Context::logsumexp`] into `lse` (n × 1), recorded.
    pub fn logsumexp_into(&mut self, x: &GpuMatrix, lse: &GpuMatrix) -> Result<()> {
        let ctx = self.ctx;
        ctx.softmax_fwd(self.to(), x, flags::MODE_LSE, None, lse)
    }

    /// [`Context::softmax_backward_into`], recorded.
    pub fn softmax_backward_into(
        &mut self,
        probs: &GpuMatrix,
        g: &GpuMatrix,
        out: &GpuMatrix,
    ) -> Result<()> {
        let ctx = self.ctx;
        ctx.softmax_bwd(self.to(), probs, g, flags::MODE_BWD_SOFTMAX, out)
    }

    /// [`Context::log_softmax_backward`] into `out`, recorded.
    pub fn log_softmax_backward_into(
        &mut self,
        log_probs: &GpuMatrix,
        g: &GpuMatrix,
        out: &GpuMatrix,
    ) -> Result<()> {
        let ctx = self.ctx;
        ctx.softmax_bwd(self.to(), log_probs, g, flags::MODE_BWD_LOG_SOFTMAX, out)
    }

    /// [`Context::cross_entropy`] (loss only), recorded.
    pub fn cross_entropy(
        &mut self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        let ctx = self.ctx;
        ctx.ce(self.to(), logits, targets, opts, None, GradTo::Nowhere)
    }

    /// [`Context::cross_entropy_fwd_bwd`], recorded.
    pub fn cross_entropy_fwd_bwd(
        &mut self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        let ctx = self.ctx;
        ctx.ce(self.to(), logits, targets, opts, None, GradTo::NewBuffer)
    }

    /// [`Context::cross_entropy_fwd_bwd_into`], recorded.
    pub fn cross_entropy_fwd_bwd_into(
        &mut self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        grad: &GpuMatrix,
    ) -> Result<CrossEntropyOutput> {
        let ctx = self.ctx;
        ctx.ce(self.to(), logits, targets, opts, None, GradTo::Into(grad))
    }

    /// [`Context::cross_entropy_fwd_bwd_in_place`], recorded: the logits come back as `grad`.
    pub fn cross_entropy_fwd_bwd_in_place(
        &mut self,
        logits: GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        let ctx = self.ctx;
        let mut out = ctx.ce(self.to(), &logits, targets, opts, None, GradTo::Logits)?;
        out.grad = Some(logits);
        Ok(out)
    }

    /// [`Context::cross_entropy_with_row_upstream`], recorded.
    pub fn cross_entropy_with_row_upstream(
        &mut self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        opts: &CrossEntropyOptions,
        upstream: &GpuMatrix,
    ) -> Result<CrossEntropyOutput> {
        let ctx = self.ctx;
        ctx.ce_row_upstream(self.to(), logits, targets, opts, upstream)
    }

    /// [`Context::info_rows`], recorded.
    pub fn info_rows(
        &mut self,
        logits: &GpuMatrix,
        targets: Option<&GpuMatrix>,
        bits: bool,
    ) -> Result<GpuMatrix> {
        let out = GpuMatrix::zeros(self.ctx, logits.rows(), 4)?;
        self.info_rows_into(logits, targets, bits, &out)?;
        Ok(out)
    }

    /// [`Context::info_rows_into`], recorded.
    pub fn info_rows_into(
        &mut self,
        logits: &GpuMatrix,
        targets: Option<&GpuMatrix>,
        bits: bool,
        out: &GpuMatrix,
    ) -> Result<()> {
        let ctx = self.ctx;
        ctx.info_rows_to(self.to(), logits, targets, bits, out)
    }

    /// [`Context::input_grad_into`], recorded.
    pub fn input_grad_into(&mut self, g: &GpuMatrix, w: &GpuMatrix, dx: &GpuMatrix) -> Result<()> {
        let ctx = self.ctx;
        ctx.input_grad_to(self.to(), g, w, dx)
    }

    /// [`Context::linear_into`], recorded.
    pub fn linear_into(
        &mut self,
        x: &GpuMatrix,
        w: &GpuMatrix,
        b: Option<&GpuMatrix>,
        z: &GpuMatrix,
    ) -> Result<()> {
        let ctx = self.ctx;
        ctx.linear_to(self.to(), x, w, b, z)
    }

    /// [`Context::weight_grad_into`], recorded.
    pub fn weight_grad_into(&mut self, x: &GpuMatrix, g: &GpuMatrix, dw: &GpuMatrix) -> Result<()> {
        let ctx = self.ctx;
        ctx.weight_grad_to(self.to(), x, g, dw)
    }

    /// [`Context::bias_grad_into`], recorded.
    pub fn bias_grad_into(&mut self, g: &GpuMatrix, db: &GpuMatrix) -> Result<()> {
        let ctx = self.ctx;
        ctx.bias_grad_to(self.to(), g, db)
    }

    /// [`Context::sgd_update`], recorded.
    pub fn sgd_update(
        &mut self,
        w: &GpuMatrix,
        v: &GpuMatrix,
        g: &GpuMatrix,
        learning_rate: f32,
        momentum: f32,
        l2: f32,
    ) -> Result<()> {
        let ctx = self.ctx;
        ctx.sgd_update_to(self.to(), w, v, g, learning_rate, momentum, l2)
    }

    /// [`Context::gather_rows_into`], recorded (the indices are written through the queue, ahead of
    /// the caller's submission).
    pub fn gather_rows_into(
        &mut self,
        x: &GpuMatrix,
        labels: &GpuLabels,
        idx: &[u32],
        out: &GpuMatrix,
    ) -> Result<GpuLabels> {
        let ctx = self.ctx;
        ctx.gather(self.to(), x, labels, idx, out)
    }

    /// [`Context::copy_rows_into`] (the bandwidth roofline), recorded.
    pub fn copy_rows_into(&mut self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let ctx = self.ctx;
        ctx.copy_rows(self.to(), x, out)
    }

    /// [`Context::linear_cross_entropy`], recorded: the gradients land in `grads` when the encoder
    /// runs; [`LinearCeRecorded::read`] then gives the loss (the same bits as the call).
    pub fn linear_cross_entropy(
        &mut self,
        x: &GpuMatrix,
        w: &GpuMatrix,
        bias: Option<&GpuMatrix>,
        targets: GpuTargets<'_>,
        opts: &LinearCeOptions,
        grads: GpuLinearGrads<'_>,
    ) -> Result<LinearCeRecorded> {
        self.ctx
            .record_linear_ce(self.encoder, x, w, bias, targets, opts, grads)
    }
}
