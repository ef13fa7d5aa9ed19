//! The training ops the trainer is made of, beside the matmuls and the cross-entropy: gathering a
//! minibatch by index, the SGD update, and copying a row (the trainer's on-device loss log).

use crate::context::{Context, MATRIX_USAGE};
use crate::error::{Result, XentError};
use crate::launch::{Arg, Encode, RowLaunch, RowParams};
use crate::matrix::{GpuLabels, GpuMatrix, LabelType};
use crate::shaders::Kernel;

impl Context {
    /// One SGD step with momentum and L2, in place: `v ← μ v + (g + λ w)`, `w ← w − h v`
    /// (`sgd_update.wgsl`). `w`, `v` and `g` have one shape.
    pub fn sgd_update(
        &self,
        w: &GpuMatrix,
        v: &GpuMatrix,
        g: &GpuMatrix,
        learning_rate: f32,
        momentum: f32,
        l2: f32,
    ) -> Result<()> {
        self.sgd_update_to(Encode::Submit, w, v, g, learning_rate, momentum, l2)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the public op's arguments and the target"
    )]
    pub(crate) fn sgd_update_to(
        &self,
        to: Encode<'_>,
        w: &GpuMatrix,
        v: &GpuMatrix,
        g: &GpuMatrix,
        learning_rate: f32,
        momentum: f32,
        l2: f32,
    ) -> Result<()> {
        let (rows, cols) = w.shape();
        v.expect_shape("momentum buffer", rows, cols)?;
        g.expect_shape("gradient", rows, cols)?;
        if let Some((what, x)) = [
            ("learning rate", learning_rate),
            ("momentum", momentum),
            ("l2", l2),
        ]
        .into_iter()
        .find(|(_, x)| !x.is_finite())
        {
            return Err(XentError::InvalidArgument(format!(
                "{what} {x} is not finite"
            )));
        }
        if rows * cols == 0 {
            return Ok(());
        }
        let mut params = RowParams::mode(0);
        params.f[0] = learning_rate;
        params.f[1] = momentum;
        params.f[2] = l2;
        self.rows(
            to,
            RowLaunch {
                kernel: Kernel::SgdUpdate,
                params,
                rows,
                cols,
                passes: 1,
                args: &[g.rows_arg(self)?, w.rows_arg(self)?, v.rows_arg(self)?],
            },
        )
    }

    /// Rows `idx` of `x` (n × d) and their labels, gathered on the device: `out` (`idx.len()` × d)
    /// gets the rows, and the labels come back as new [`GpuLabels`] (i32; with the gathered host
    /// copy when `labels` has one, device-only otherwise). `labels` must be i32 (host labels are); an
    /// index outside `x` is an error and nothing runs. Inside [`Context::with_workspace`] the index
    /// buffer is the workspace's.
    pub fn gather_rows_into(
        &self,
        x: &GpuMatrix,
        labels: &GpuLabels,
        idx: &[u32],
        out: &GpuMatrix,
    ) -> Result<GpuLabels> {
        self.gather(Encode::Submit, x, labels, idx, out)
    }

    /// [`Context::gather_rows_into`] into `to`.
    pub(crate) fn gather(
        &self,
        to: Encode<'_>,
        x: &GpuMatrix,
        labels: &GpuLabels,
        idx: &[u32],
        out: &GpuMatrix,
    ) -> Result<GpuLabels> {
        crate::train::check_indices(idx, x.rows())?;
        if labels.len() != x.rows() {
            return Err(XentError::LengthMismatch {
                what: "labels (one per row of x)",
                expected: x.rows(),
                got: labels.len(),
            });
        }
        if labels.label_type() != LabelType::I32 {
            return Err(XentError::InvalidArgument(format!(
                "gathering labels needs i32 labels, not {:?}",
                labels.label_type()
            )));
        }
        out.expect_shape("gathered rows", idx.len(), x.cols())?;
        let bytes = idx.len() as u64 * 4;
        let idx_buf = self.scratch_buffer("xent.gather.idx", bytes, MATRIX_USAGE, false)?;
        // The labels are an output the caller keeps: never a workspace's.
        let out_labels = self.create_buffer("xent.gather.labels", bytes, MATRIX_USAGE)?;
        self.gather_rows(to, x, labels, idx, &idx_buf, out, &out_labels)?;
        let host = labels
            .host()
            .map(|h| idx.iter().map(|&i| h[i as usize]).collect());
        Ok(GpuLabels::from_parts(self, out_labels, idx.len(), host))
    }

    /// Rows `idx` of `x` and their labels, gathered into `out` (rows × d) and `out_labels` (rows
    /// i32) through `idx_buf` (room for the indices, which the caller has checked against `x`).
    #[expect(
        clippy::too_many_arguments,
        reason = "operands, outputs and the target"
    )]
    pub(crate) fn gather_rows(
        &self,
        to: Encode<'_>,
        x: &GpuMatrix,
        labels: &GpuLabels,
        idx: &[u32],
        idx_buf: &wgpu::Buffer,
        out: &GpuMatrix,
        out_labels: &wgpu::Buffer,
    ) -> Result<()> {
        let (rows, d) = out.shape();
        x.expect_shape("gathered features", x.rows(), d)?;
        if idx.len() != rows {
            return Err(XentError::LengthMismatch {
                what: "minibatch indices",
                expected: rows,
                got: idx.len(),
            });
        }
        self.checked(|| {
            self.queue
                .write_buffer(idx_buf, 0, bytemuck::cast_slice(idx))
        })?;
        self.rows(
            to,
            RowLaunch {
                kernel: Kernel::GatherRows,
                params: RowParams::mode(0),
                rows,
                cols: d,
                passes: 1,
                args: &[
                    Arg::Whole(x.on(self)?),
                    labels.arg(self)?,
                    Arg::Whole(idx_buf),
                    out.rows_arg(self)?,
                    Arg::Whole(out_labels),
                ],
            },
        )
    }

    /// Copies the single row of `src` (1 × N) into row `row` of `dst` (r × N), on the device.
    pub fn copy_row_into(&self, src: &GpuMatrix, dst: &GpuMatrix, row: usize) -> Result<()> {
        self.copy_row(Encode::Submit, src, dst, row)
    }

    pub(crate) fn copy_row(
        &self,
        to: Encode<'_>,
        src: &GpuMatrix,
        dst: &GpuMatrix,
        row: usize,
    ) -> Result<()> {
        let cols = dst.cols();
        src.expect_shape("row to copy", 1, cols)?;
        if row >= dst.rows() {
            return Err(XentError::InvalidArgument(format!(
                "row {row} of a matrix of {} rows",
                dst.rows()
            )));
        }
        let (from, into) = (src.on(self)?, dst.on(self)?);
        let bytes = cols as u64 * 4;
        self.launches("xent.copy_row", to, |enc| {
            enc.copy_buffer_to_buffer(from, 0, into, row as u64 * bytes, bytes);
            Ok(())
        })
    }
}
