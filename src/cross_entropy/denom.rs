//! The mean's denominator of device-only labels, on the device (`shaders/ce_denom.wgsl`): inside a
//! cross-entropy call, or once for a whole batch whose chunks then share it (fused linear
//! cross-entropy).

use super::plan::{CePlan, GradKind, PlanTargets};
use super::{DENOM_BLOCK, REDUCE_FINISH, STATS_WIDTH};
use crate::context::Context;
use crate::error::Result;
use crate::launch::{Arg, RowLaunch, RowParams};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::options::CrossEntropyOptions;
use crate::shaders::Kernel;

/// The class weights as a scratch matrix (the workspace's, when one is in use), if there are some.
pub(super) fn upload_weights(
    ctx: &Context,
    opts: &CrossEntropyOptions,
) -> Result<Option<GpuMatrix>> {
    opts.weight
        .as_ref()
        .map(|w| -> Result<GpuMatrix> {
            let m = GpuMatrix::scratch(ctx, 1, w.len(), false)?;
            ctx.checked(|| {
                ctx.queue
                    .write_buffer(m.buffer(), 0, bytemuck::cast_slice(w))
            })?;
            Ok(m)
        })
        .transpose()
}

/// ce_denom's two launches for device-only labels: the exact sum of their weights into 11 zeroed
/// words (`acc`), then its finish into the batch numbers (`stats`, 1 × 8).
pub(super) struct DenomLaunch<'a> {
    labels: Arg<'a>,
    weight: &'a wgpu::Buffer,
    stats: &'a wgpu::Buffer,
    acc: GpuMatrix,
    params: RowParams,
    n: usize,
}

impl<'a> DenomLaunch<'a> {
    pub(super) fn new(
        ctx: &Context,
        labels: Arg<'a>,
        weight: &'a wgpu::Buffer,
        stats: &'a GpuMatrix,
        (n, cols): (usize, usize),
        opts: &CrossEntropyOptions,
        plan: &CePlan,
    ) -> Result<Self> {
        let mut params = RowParams::mode(0);
        params.flags = plan.flags;
        (params.ignore_index, params.ignore_hi) = plan.ignore_index;
        params.classes = cols as u32;
        params.total = n as u32;
        params.f[0] = opts.grad_output;
        Ok(Self {
            labels,
            weight,
            stats: stats.on(ctx)?,
            acc: GpuMatrix::scratch(ctx, 1, 16, true)?,
            params,
            n,
        })
    }

    pub(super) fn encode(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let args = [
            Arg::Whole(self.stats),
            Arg::Whole(self.acc.on(ctx)?),
            Arg::Whole(self.weight),
            self.labels,
        ];
        let mut p = self.params;
        let block = DENOM_BLOCK.min(self.n);
        for (mode, rows, cols) in [(0, self.n.div_ceil(block), block), (REDUCE_FINISH, 1, 1)] {
            p.mode = mode;
            ctx.encode_rows(
                encoder,
                RowLaunch {
                    kernel: Kernel::CeDenom,
                    params: p,
                    rows,
                    cols,
                    passes: 1,
                    args: &args,
                },
            )?;
        }
        Ok(())
    }
}

impl Context {
    /// The batch numbers of device-only `labels` over `classes` classes (1 × 8, as
    /// [`super::CrossEntropyOutput::stats`]: [1] the mean's denominator, [4] the gradient's scale,
    /// [5..8] the labels' status), recorded into `encoder`: one denominator for a batch that
    /// [`Context::ce_with`] then runs in chunks.
    pub(crate) fn record_batch_denominator(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        labels: &GpuLabels,
        classes: usize,
        opts: &CrossEntropyOptions,
    ) -> Result<GpuMatrix> {
        let n = labels.len();
        let plan = CePlan::new(
            n,
            classes,
            PlanTargets::Device(labels.label_type()),
            opts,
            GradKind::None,
            false,
            self.binding_floats(),
        );
        let stats = GpuMatrix::scratch(self, 1, STATS_WIDTH, true)?;
        if n == 0 {
            return Ok(stats);
        }
        let weight = upload_weights(self, opts)?;
        let weight_buf = weight
            .as_ref()
            .map_or(Ok(self.stand_in(3)), |w| w.on(self))?;
        DenomLaunch::new(
            self,
            labels.arg(self)?,
            weight_buf,
            &stats,
            (n, classes),
            opts,
            &plan,
        )?
        .encode(self, encoder)?;
        Ok(stats)
    }
}
