//! The products of fused linear cross-entropy ([`crate::linear_ce`]) on the matmul kernel: `W` in
//! PyTorch's `V × d` layout, no split-K.

use super::{Batch, Product, mm_flags};
use crate::context::Context;
use crate::error::Result;
use crate::launch::Encode;
use crate::matrix::GpuMatrix;

/// The operands of one chunk of fused linear cross-entropy ([`crate::linear_ce`]): `x` c × d, `w`
/// V × d (PyTorch's layout), `z` c × V (the logits, then their gradient G), and the outputs wanted.
pub(crate) struct LceChunk<'a> {
    pub x: &'a GpuMatrix,
    pub w: &'a GpuMatrix,
    pub bias: Option<&'a GpuMatrix>,
    pub z: &'a GpuMatrix,
    pub dx: Option<&'a GpuMatrix>,
    pub dw: Option<&'a GpuMatrix>,
    pub db: Option<&'a GpuMatrix>,
    /// Device-listed rows: the list (its count in word 0) and the listed index of the chunk's first
    /// row. Rows past the count do no matmul work (see `live` in matmul.wgsl).
    pub limit: Option<(&'a wgpu::Buffer, usize)>,
}

/// The products of fused linear cross-entropy, without split-K, so that each output element's
/// summation order depends only on the product's shape (never on the chunk's size or the
/// device's occupancy).
impl<'a> LceChunk<'a> {
    /// `Z = X Wᵀ + b`.
    fn logits(&self) -> Product<'a> {
        let ((c, d), classes) = (self.x.shape(), self.w.rows());
        Product {
            a: Some(self.x),
            b: self.w,
            bias: self.bias,
            c: self.z,
            m: c,
            n: classes,
            k: d,
            lda: d,
            ldb: d,
            ldc: classes,
            flags: mm_flags::TRANS_B
                | if self.bias.is_some() {
                    mm_flags::BIAS
                } else {
                    0
                },
            batch: Batch::M,
            k0: 0,
            split: false,
            limit: self.limit,
        }
    }

    /// `dX = G W`.
    fn input_grad(&self) -> Option<Product<'a>> {
        let ((c, classes), d) = (self.z.shape(), self.w.cols());
        Some(Product {
            a: Some(self.z),
            b: self.w,
            bias: None,
            c: self.dx?,
            m: c,
            n: d,
            k: classes,
            lda: classes,
            ldb: d,
            ldc: d,
            flags: 0,
            batch: Batch::M,
            k0: 0,
            split: false,
            limit: self.limit,
        })
    }

    /// `dW += G[rows]ᵀ X[rows]` and `db += 1ᵀ G[rows]`: one row block of the fixed summation tree,
    /// each element `c + Σ_rows` with the sum taken from zero.
    fn block_grads(&self, rows: &std::ops::Range<usize>) -> [Option<Product<'a>>; 2] {
        let ((_, classes), d) = (self.z.shape(), self.x.cols());
        let dw = self.dw.map(|dw| Product {
            a: Some(self.z),
            b: self.x,
            bias: None,
            c: dw,
            m: classes,
            n: d,
            k: rows.len(),
            lda: classes,
            ldb: d,
            ldc: d,
            flags: mm_flags::TRANS_A | mm_flags::ACCUM,
            batch: Batch::K,
            k0: rows.start,
            split: false,
            limit: self.limit.map(|(l, k0)| (l, k0 + rows.start)),
        });
        let db = self.db.map(|db| Product {
            a: None,
            b: self.z,
            bias: None,
            c: db,
            m: 1,
            n: classes,
            k: rows.len(),
            lda: 1,
            ldb: classes,
            ldc: classes,
            flags: mm_flags::TRANS_A | mm_flags::A_ONES | mm_flags::ACCUM,
            batch: Batch::K,
            k0: rows.start,
            split: false,
            limit: self.limit.map(|(l, k0)| (l, k0 + rows.start)),
        });
        [dw, db]
    }
}

impl Context {
    /// Plans every product of a chunk (and of a block of `rows`) without encoding: the errors they
    /// can raise, raised before anything is recorded.
    pub(crate) fn lce_check(
        &self,
        chunk: &LceChunk<'_>,
        rows: &std::ops::Range<usize>,
    ) -> Result<()> {
        let [dw, db] = chunk.block_grads(rows);
        for p in [Some(chunk.logits()), chunk.input_grad(), dw, db]
            .iter()
            .flatten()
        {
            self.plan_matmul(p)?;
        }
        Ok(())
    }

    /// Records `Z = X Wᵀ + b`.
    pub(crate) fn lce_logits(
        &self,
        to: &mut wgpu::CommandEncoder,
        chunk: &LceChunk<'_>,
    ) -> Result<()> {
        self.run_matmul(Encode::Into(to), &chunk.logits())
    }

    /// Records `dX = G W` (when wanted).
    pub(crate) fn lce_input_grad(
        &self,
        to: &mut wgpu::CommandEncoder,
        chunk: &LceChunk<'_>,
    ) -> Result<()> {
        match chunk.input_grad() {
            Some(p) => self.run_matmul(Encode::Into(to), &p),
            None => Ok(()),
        }
    }

    /// Records one row block's `dW` and `db` updates (those wanted).
    pub(crate) fn lce_block_grads(
        &self,
        to: &mut wgpu::CommandEncoder,
        chunk: &LceChunk<'_>,
        rows: &std::ops::Range<usize>,
    ) -> Result<()> {
        for p in chunk.block_grads(rows).iter().flatten() {
            self.run_matmul(Encode::Into(to), p)?;
        }
        Ok(())
    }
}
