//! Launchers of the softmax family: softmax, log-softmax, log-sum-exp and their backwards.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::launch::{Arg, Encode, RowLaunch, RowParams};
use crate::matrix::GpuMatrix;
use crate::shaders::Kernel;

/// Modes of `softmax_fwd.wgsl` and `softmax_bwd.wgsl` (defined once, in [`crate::shaders::flags`]).
use crate::shaders::flags::{
    MODE_BWD_LOG_SOFTMAX as BWD_LOG_SOFTMAX, MODE_BWD_SOFTMAX as BWD_SOFTMAX,
    MODE_LOG_SOFTMAX as FWD_LOG_SOFTMAX, MODE_LSE as FWD_LSE, MODE_SOFTMAX as FWD_SOFTMAX,
};

/// `Err` for a matrix no row kernel accepts (N = 0).
pub(crate) fn check_cols(cols: usize) -> Result<()> {
    if cols == 0 {
        return Err(XentError::InvalidShape(
            "N = 0 classes: every row needs at least one element".into(),
        ));
    }
    Ok(())
}

impl Context {
    /// Runs softmax_fwd in `mode`, writing `y` (absent in mode 2) and the per-row log-sum-exp.
    pub(crate) fn softmax_fwd(
        &self,
        to: Encode<'_>,
        x: &GpuMatrix,
        mode: u32,
        y: Option<&GpuMatrix>,
        lse: &GpuMatrix,
    ) -> Result<()> {
        let (n, cols) = x.shape();
        check_cols(cols)?;
        lse.expect_shape("log-sum-exp output", n, 1)?;
        // mode 2 never writes y: a stand-in takes its binding.
        let y_arg = match y {
            Some(y) => {
                y.expect_shape("output", n, cols)?;
                y.rows_arg(self)?
            }
            None => Arg::Whole(self.stand_in(0)),
        };
        self.rows(
            to,
            RowLaunch {
                kernel: Kernel::SoftmaxFwd,
                params: RowParams::mode(mode),
                rows: n,
                cols,
                passes: 2,
                args: &[x.rows_arg(self)?, y_arg, Arg::Whole(lse.on(self)?)],
            },
        )
    }

    /// Row-wise softmax `exp(z − lse(z))`. A row whose max is ±inf (an all −inf row too) or that holds
    /// a NaN comes out all NaN, as in PyTorch.
    pub fn softmax(&self, x: &GpuMatrix) -> Result<GpuMatrix> {
        Ok(self.softmax_with_lse(x)?.0)
    }

    /// [`Context::softmax`] into an existing `out` of the same shape. A reused output skips the
    /// zero-fill wgpu gives every new buffer on first use (one write pass over memory).
    pub fn softmax_into(&self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let lse = GpuMatrix::scratch(self, x.rows(), 1, false)?;
        self.softmax_fwd(Encode::Submit, x, FWD_SOFTMAX, Some(out), &lse)
    }

    /// Row-wise log-softmax `z − lse(z)`; same edge cases as [`Context::softmax`]. `−inf` logits in an
    /// otherwise finite row give `−inf`.
    pub fn log_softmax(&self, x: &GpuMatrix) -> Result<GpuMatrix> {
        let y = GpuMatrix::zeros_as(self, x.rows(), x.cols(), x.elem())?;
        self.log_softmax_into(x, &y)?;
        Ok(y)
    }

    /// [`Context::log_softmax`] into an existing `out` of the same shape.
    pub fn log_softmax_into(&self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let lse = GpuMatrix::scratch(self, x.rows(), 1, false)?;
        self.softmax_fwd(Encode::Submit, x, FWD_LOG_SOFTMAX, Some(out), &lse)
    }

    /// Row-wise log-sum-exp as an `n × 1` matrix: `−inf` for an all −inf row, `+inf` when the row has
    /// `+inf`, NaN when it has a NaN (as `torch.logsumexp`).
    pub fn logsumexp(&self, x: &GpuMatrix) -> Result<GpuMatrix> {
        let lse = GpuMatrix::zeros(self, x.rows(), 1)?;
        self.logsumexp_into(x, &lse)?;
        Ok(lse)
    }

    /// [`Context::logsumexp`] into an existing `lse` (n × 1).
    pub fn logsumexp_into(&self, x: &GpuMatrix, lse: &GpuMatrix) -> Result<()> {
        self.softmax_fwd(Encode::Submit, x, FWD_LSE, None, lse)
    }

    /// Softmax and its log-sum-exp (`n × 1`) in one pass over memory.
    pub fn softmax_with_lse(&self, x: &GpuMatrix) -> Result<(GpuMatrix, GpuMatrix)> {
        let y = GpuMatrix::zeros_as(self, x.rows(), x.cols(), x.elem())?;
        let lse = GpuMatrix::zeros(self, x.rows(), 1)?;
        self.softmax_fwd(Encode::Submit, x, FWD_SOFTMAX, Some(&y), &lse)?;
        Ok((y, lse))
    }

    pub(crate) fn softmax_bwd(
        &self,
        to: Encode<'_>,
        y: &GpuMatrix,
        g: &GpuMatrix,
        mode: u32,
        dz: &GpuMatrix,
    ) -> Result<()> {
        let (n, cols) = y.shape();
        check_cols(cols)?;
        g.expect_shape("upstream gradient", n, cols)?;
        dz.expect_shape("gradient output", n, cols)?;
        self.rows(
            to,
            RowLaunch {
                kernel: Kernel::SoftmaxBwd,
                params: RowParams::mode(mode),
                rows: n,
                cols,
                passes: 2,
                args: &[y.rows_arg(self)?, g.rows_arg(self)?, dz.rows_arg(self)?],
            },
        )
    }

    /// [`Context::softmax_backward`] into an existing `out`.
    pub fn softmax_backward_into(
        &self,
        probs: &GpuMatrix,
        g: &GpuMatrix,
        out: &GpuMatrix,
    ) -> Result<()> {
        self.softmax_bwd(Encode::Submit, probs, g, BWD_SOFTMAX, out)
    }

    /// The softmax Jacobian-vector product `p̂ ⊙ (g − ⟨g, p̂⟩)`, from the forward output `p̂` and the
    /// upstream gradient `g = ∂L/∂p̂` (never builds the N×N Jacobian).
    pub fn softmax_backward(&self, probs: &GpuMatrix, g: &GpuMatrix) -> Result<GpuMatrix> {
        let dz = GpuMatrix::zeros_as(self, probs.rows(), probs.cols(), probs.elem())?;
        self.softmax_bwd(Encode::Submit, probs, g, BWD_SOFTMAX, &dz)?;
        Ok(dz)
    }

    /// The log-softmax backward `g − exp(y) · Σ g` from the forward output `y = log_softmax(z)`.
    pub fn log_softmax_backward(&self, log_probs: &GpuMatrix, g: &GpuMatrix) -> Result<GpuMatrix> {
        let dz = GpuMatrix::zeros_as(self, log_probs.rows(), log_probs.cols(), log_probs.elem())?;
        self.log_softmax_backward_into(log_probs, g, &dz)?;
        Ok(dz)
    }

    /// [`Context::log_softmax_backward`] into an existing `out` of the same shape.
    pub fn log_softmax_backward_into(
        &self,
        log_probs: &GpuMatrix,
        g: &GpuMatrix,
        out: &GpuMatrix,
    ) -> Result<()> {
        self.softmax_bwd(Encode::Submit, log_probs, g, BWD_LOG_SOFTMAX, out)
    }

    /// A copy of `x` into `out`, walked exactly as the row kernels walk memory: the bandwidth roofline
    /// that benchmarks compare the memory-bound kernels with.
    pub fn copy_rows_into(&self, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        self.copy_rows(Encode::Submit, x, out)
    }

    pub(crate) fn copy_rows(&self, to: Encode<'_>, x: &GpuMatrix, out: &GpuMatrix) -> Result<()> {
        let (n, cols) = x.shape();
        check_cols(cols)?;
        out.expect_shape("copy output", n, cols)?;
        self.rows(
            to,
            RowLaunch {
                kernel: Kernel::CopyRows,
                params: RowParams::mode(0),
                rows: n,
                cols,
                passes: 1,
                args: &[x.rows_arg(self)?, out.rows_arg(self)?],
            },
        )
    }

    /// Host-slice convenience: uploads `x` (`x.len() / cols` rows), runs [`Context::softmax`], reads back.
    pub fn softmax_host(&self, x: &[f32], cols: usize) -> Result<Vec<f32>> {
        let m = self.upload_rows(x, cols)?;
        self.softmax(&m)?.read_blocking(self)
    }

    /// Host-slice [`Context::log_softmax`].
    pub fn log_softmax_host(&self, x: &[f32], cols: usize) -> Result<Vec<f32>> {
        let m = self.upload_rows(x, cols)?;
        self.log_softmax(&m)?.read_blocking(self)
    }

    /// Host-slice [`Context::logsumexp`].
    pub fn logsumexp_host(&self, x: &[f32], cols: usize) -> Result<Vec<f32>> {
        let m = self.upload_rows(x, cols)?;
        self.logsumexp(&m)?.read_blocking(self)
    }

    /// Uploads a row-major slice of `cols`-element rows.
    pub fn upload_rows(&self, x: &[f32], cols: usize) -> Result<GpuMatrix> {
        check_cols(cols)?;
        if !x.len().is_multiple_of(cols) {
            return Err(XentError::LengthMismatch {
                what: "row-major data (a multiple of N)",
                expected: x.len().next_multiple_of(cols),
                got: x.len(),
            });
        }
        GpuMatrix::from_slice(self, x, x.len() / cols, cols)
    }
}
