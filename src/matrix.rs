//! Device-resident data: an n×N matrix (f32, f16 or bf16) and an n-vector of class labels.

use crate::context::{Context, ContextId, MATRIX_USAGE};
use crate::error::{Result, XentError};
use crate::shaders::Elem;

pub use crate::labels::{GpuLabels, LabelType};

/// A row-major `rows × cols` matrix that lives on the device, stored as f32 (the default), f16 or
/// bf16 ([`GpuMatrix::elem`]). Kernels take and return these, so a chain of kernels never goes
/// through the host. A vector is a matrix with one column. A matrix belongs to the [`Context`] that
/// made it: handing it to another context (even one wrapping the same device) is
/// [`XentError::WrongContext`].
///
/// 16-bit matrices hold two elements per 4-byte word, element `2k` in the low half of word `k`
/// (the layout of a contiguous `half::f16` / `half::bf16` slice on a little-endian host, and of a
/// PyTorch tensor's storage); their buffer is rounded up to whole words. Every kernel that takes
/// them computes in f32 and rounds its n×N outputs once, to nearest even (see the README's
/// precision contract).
#[derive(Debug)]
pub struct GpuMatrix {
    buffer: wgpu::Buffer,
    elem: Elem,
    /// Byte where the matrix starts in `buffer` (0 but for a caller's buffer; a multiple of the
    /// device's storage offset alignment).
    offset: u64,
    rows: usize,
    cols: usize,
    /// The context that made it (see [`Context::id`]).
    owner: ContextId,
}

/// Bytes of `len` elements of `elem` in a buffer: whole 4-byte words.
pub(crate) fn storage_bytes(len: usize, elem: Elem) -> u64 {
    (len as u64 * elem.size()).next_multiple_of(4)
}

/// A caller's buffer holds `bytes` of a matrix or labels (`what`) at `offset`: STORAGE usage, the
/// offset a multiple of the storage offset alignment, and the bytes inside the buffer.
pub(crate) fn check_caller_buffer(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
    what: &'static str,
) -> Result<()> {
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(XentError::InvalidArgument(format!(
            "the buffer for {what} needs STORAGE usage; this one has {:?}",
            buffer.usage()
        )));
    }
    let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
    if !offset.is_multiple_of(align) {
        return Err(XentError::InvalidArgument(format!(
            "the offset for {what} must be a multiple of {align} bytes \
             (min_storage_buffer_offset_alignment), not {offset}"
        )));
    }
    let end = bytes.checked_add(offset);
    if end.is_none_or(|end| end > buffer.size()) {
        return Err(XentError::LengthMismatch {
            what: if what == "labels" {
                "caller buffer (bytes) for the labels at their offset"
            } else {
                "caller buffer (bytes) for the matrix at its offset"
            },
            expected: end.map_or(usize::MAX, |e| e as usize),
            got: buffer.size() as usize,
        });
    }
    Ok(())
}

fn checked_len(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .filter(|&l| l.checked_mul(4).is_some())
        .ok_or_else(|| XentError::InvalidShape(format!("{rows}×{cols} overflows")))
}

impl GpuMatrix {
    /// An uninitialised (zero-filled) f32 matrix.
    pub fn zeros(ctx: &Context, rows: usize, cols: usize) -> Result<Self> {
        Self::zeros_as(ctx, rows, cols, Elem::F32)
    }

    /// An f32 scratch matrix of an operation: from this thread's workspace when one is in use
    /// ([`Context::with_workspace`]); zero-filled when new, and when reused if `zeroed` (else it
    /// holds the last run's values: for outputs the kernels overwrite whole).
    pub(crate) fn scratch(ctx: &Context, rows: usize, cols: usize, zeroed: bool) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        let bytes = storage_bytes(len, Elem::F32);
        let buffer = ctx.scratch_buffer("xent.scratch", bytes, MATRIX_USAGE, zeroed)?;
        Ok(Self {
            buffer,
            elem: Elem::F32,
            offset: 0,
            rows,
            cols,
            owner: ctx.id(),
        })
    }

    /// A zero-filled matrix of element type `elem`.
    pub fn zeros_as(ctx: &Context, rows: usize, cols: usize, elem: Elem) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        let buffer = ctx.create_buffer("xent.matrix", storage_bytes(len, elem), MATRIX_USAGE)?;
        Ok(Self {
            buffer,
            elem,
            offset: 0,
            rows,
            cols,
            owner: ctx.id(),
        })
    }

    /// Wraps a buffer the caller owns as a `rows × cols` matrix starting at its first byte, so xent's
    /// operations read and write it in place (no copy). The buffer must have been made on `ctx`'s
    /// device (wgpu cannot tell xent otherwise: a buffer of another device is the caller's error), be
    /// usable as a storage binding, and hold at least `rows · cols · 4` bytes; it may be larger (an
    /// operand that an operation binds whole is then checked against the binding limit by the
    /// buffer's size, and that size must be a multiple of 4).
    /// Reading it back (`read`) also needs `COPY_SRC`.
    ///
    /// Errors: [`XentError::InvalidArgument`] for a buffer without `STORAGE` usage,
    /// [`XentError::LengthMismatch`] (in bytes) for one too small, [`XentError::InvalidShape`] when
    /// the shape overflows.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), xent::XentError> {
    /// let ctx = xent::Context::new_blocking(xent::ContextOptions::from_env())?;
    /// let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
    ///     label: Some("my logits"),
    ///     size: 2 * 3 * 4,
    ///     usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    ///     mapped_at_creation: false,
    /// });
    /// let z = xent::GpuMatrix::from_buffer(&ctx, buffer, 2, 3)?;
    /// let p = ctx.softmax(&z)?; // reads the caller's buffer
    /// # let _ = p;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_buffer(
        ctx: &Context,
        buffer: wgpu::Buffer,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        Self::from_buffer_as(ctx, buffer, 0, rows, cols, Elem::F32)
    }

    /// [`GpuMatrix::from_buffer`] for a matrix starting at byte `offset` of the buffer: a multiple of
    /// the device's `min_storage_buffer_offset_alignment` (256 on most adapters), which is what wgpu
    /// asks of any storage binding's offset, so every sub-allocation a program can bind itself is
    /// accepted. Operands that an operation binds whole (the softmax's log-sum-exp output, a per-row
    /// upstream gradient, labels) must start at byte 0; the operation says so otherwise. An input and
    /// an output of one operation must live in different buffers: wgpu refuses one buffer bound
    /// read-only and read-write in one dispatch (its validation error comes back as
    /// [`XentError::Gpu`], and nothing of the operation runs).
    ///
    /// Errors: as [`GpuMatrix::from_buffer`], plus [`XentError::InvalidArgument`] for an unaligned
    /// offset, and [`XentError::LengthMismatch`] when offset and matrix pass the buffer's end.
    pub fn from_buffer_at(
        ctx: &Context,
        buffer: wgpu::Buffer,
        offset: u64,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        Self::from_buffer_as(ctx, buffer, offset, rows, cols, Elem::F32)
    }

    /// [`GpuMatrix::from_buffer_at`] for a caller's matrix of element type `elem`: a 16-bit matrix
    /// needs `rows · cols · 2` bytes rounded up to a whole 4-byte word after its offset.
    pub fn from_buffer_as(
        ctx: &Context,
        buffer: wgpu::Buffer,
        offset: u64,
        rows: usize,
        cols: usize,
        elem: Elem,
    ) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        check_caller_buffer(ctx, &buffer, offset, storage_bytes(len, elem), "a matrix")?;
        Ok(Self {
            buffer,
            elem,
            offset,
            rows,
            cols,
            owner: ctx.id(),
        })
    }

    /// Uploads `data` (row-major, `rows * cols` values) as an f32 matrix.
    pub fn from_slice(ctx: &Context, data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        Self::from_slice_as(ctx, data, rows, cols, Elem::F32)
    }

    /// Uploads `data` as a matrix of element type `elem`, each value rounded to it on the host (to
    /// nearest, ties to even; NaN stays NaN; f16 overflow gives ±inf).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), xent::XentError> {
    /// use xent::{Elem, GpuMatrix};
    /// let ctx = xent::Context::new_blocking(xent::ContextOptions::from_env())?;
    /// let z = GpuMatrix::from_slice_as(&ctx, &[1.0, 2.0, 3.0, 4.0], 2, 2, Elem::Bf16)?;
    /// let p = ctx.softmax(&z)?; // bf16 in, bf16 out, f32 inside
    /// assert_eq!(p.elem(), Elem::Bf16);
    /// let back: Vec<f32> = p.read_blocking(&ctx)?; // widened exactly
    /// # let _ = back;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_slice_as(
        ctx: &Context,
        data: &[f32],
        rows: usize,
        cols: usize,
        elem: Elem,
    ) -> Result<Self> {
        match elem {
            Elem::F32 => Self::upload(
                ctx,
                bytemuck::cast_slice(data),
                data.len(),
                rows,
                cols,
                elem,
            ),
            _ => {
                let bits: Vec<u16> = data.iter().map(|&v| elem.bits16(v).unwrap_or(0)).collect();
                Self::from_bits16(ctx, &bits, rows, cols, elem)
            }
        }
    }

    /// Uploads f16 values as an f16 matrix (no rounding).
    pub fn from_f16(ctx: &Context, data: &[half::f16], rows: usize, cols: usize) -> Result<Self> {
        let bits: Vec<u16> = data.iter().map(|h| h.to_bits()).collect();
        Self::from_bits16(ctx, &bits, rows, cols, Elem::F16)
    }

    /// Uploads bf16 values as a bf16 matrix (no rounding).
    pub fn from_bf16(ctx: &Context, data: &[half::bf16], rows: usize, cols: usize) -> Result<Self> {
        let bits: Vec<u16> = data.iter().map(|h| h.to_bits()).collect();
        Self::from_bits16(ctx, &bits, rows, cols, Elem::Bf16)
    }

    fn from_bits16(
        ctx: &Context,
        bits: &[u16],
        rows: usize,
        cols: usize,
        elem: Elem,
    ) -> Result<Self> {
        let mut words: Vec<u8> = bytemuck::cast_slice(bits).to_vec();
        words.resize(storage_bytes(bits.len(), elem) as usize, 0);
        Self::upload(ctx, &words, bits.len(), rows, cols, elem)
    }

    /// A new matrix holding `bytes` (`len` elements of `elem`, whole words).
    fn upload(
        ctx: &Context,
        bytes: &[u8],
        len: usize,
        rows: usize,
        cols: usize,
        elem: Elem,
    ) -> Result<Self> {
        let expected = checked_len(rows, cols)?;
        if len != expected {
            return Err(XentError::LengthMismatch {
                what: "matrix data",
                expected,
                got: len,
            });
        }
        let m = Self::zeros_as(ctx, rows, cols, elem)?;
        if len > 0 {
            ctx.checked(|| ctx.queue.write_buffer(&m.buffer, 0, bytes))?;
        }
        Ok(m)
    }

    /// Copies the matrix back to the host as f32 (16-bit types are widened, exactly).
    pub async fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        let (buffer, offset) = self.rows_on(ctx)?;
        if self.elem == Elem::F32 {
            return ctx.read_buffer(buffer, offset, self.len() as u64 * 4).await;
        }
        let bits = self.read_bits16(ctx).await?;
        Ok(bits.iter().map(|&b| self.elem.from_bits16(b)).collect())
    }

    /// The 16-bit patterns of an f16 or bf16 matrix (an f32 matrix is an error).
    pub async fn read_bits16(&self, ctx: &Context) -> Result<Vec<u16>> {
        if self.elem == Elem::F32 {
            return Err(XentError::InvalidArgument(
                "read_bits16 of an f32 matrix: use read".into(),
            ));
        }
        let (buffer, offset) = self.rows_on(ctx)?;
        let words: Vec<u16> = ctx
            .read_buffer(buffer, offset, storage_bytes(self.len(), self.elem))
            .await?;
        Ok(words[..self.len()].to_vec())
    }

    /// The values of an f16 matrix (another type is an error).
    pub fn read_f16_blocking(&self, ctx: &Context) -> Result<Vec<half::f16>> {
        self.expect_elem("read_f16", Elem::F16)?;
        let bits = pollster::block_on(self.read_bits16(ctx))?;
        Ok(bits.into_iter().map(half::f16::from_bits).collect())
    }

    /// The values of a bf16 matrix (another type is an error).
    pub fn read_bf16_blocking(&self, ctx: &Context) -> Result<Vec<half::bf16>> {
        self.expect_elem("read_bf16", Elem::Bf16)?;
        let bits = pollster::block_on(self.read_bits16(ctx))?;
        Ok(bits.into_iter().map(half::bf16::from_bits).collect())
    }

    /// The element type it stores.
    pub fn elem(&self) -> Elem {
        self.elem
    }

    /// `Err` unless the matrix stores `elem`.
    pub(crate) fn expect_elem(&self, what: &str, elem: Elem) -> Result<()> {
        if self.elem != elem {
            return Err(XentError::InvalidArgument(format!(
                "{what}: a {elem} matrix is needed, this {}×{} one stores {}",
                self.rows, self.cols, self.elem
            )));
        }
        Ok(())
    }

    /// Blocking [`GpuMatrix::read`].
    pub fn read_blocking(&self, ctx: &Context) -> Result<Vec<f32>> {
        pollster::block_on(self.read(ctx))
    }

    /// Rows (n).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (N).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// rows × cols.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the matrix has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The wgpu buffer (at least `len()` elements, in whole 4-byte words), for sharing with other
    /// wgpu code.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer, once `ctx` is known to be the context that made the matrix: every operation takes
    /// its operands' buffers through this, so a matrix of another context is an error (its buffer
    /// id means nothing, or another buffer, on this context's device).
    pub(crate) fn on(&self, ctx: &Context) -> Result<&wgpu::Buffer> {
        ctx.expect_owner("a matrix", self.owner)?;
        self.expect_elem(
            "an operand bound whole (a per-row vector, weights, a matmul operand)",
            Elem::F32,
        )?;
        if self.offset != 0 {
            return Err(XentError::InvalidArgument(format!(
                "a {}×{} matrix at byte {} of its buffer is bound whole by this operation: it must \
                 start at byte 0",
                self.rows, self.cols, self.offset
            )));
        }
        Ok(&self.buffer)
    }

    /// The buffer and the byte the matrix starts at, once `ctx` is known to be its context: for the
    /// operands that the row launcher and the matmuls bind at an offset (any aligned one).
    pub(crate) fn rows_on(&self, ctx: &Context) -> Result<(&wgpu::Buffer, u64)> {
        ctx.expect_owner("a matrix", self.owner)?;
        Ok((&self.buffer, self.offset))
    }

    /// [`GpuMatrix::rows_on`] as a row launch's argument.
    pub(crate) fn rows_arg(&self, ctx: &Context) -> Result<crate::launch::Arg<'_>> {
        let (b, o) = self.rows_on(ctx)?;
        Ok(crate::launch::Arg::Rows(b, o, self.elem))
    }

    /// Byte where the matrix starts in [`GpuMatrix::buffer`] (0 unless wrapped with
    /// [`GpuMatrix::from_buffer_at`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `Err` unless the shape is `(rows, cols)`.
    pub(crate) fn expect_shape(&self, what: &'static str, rows: usize, cols: usize) -> Result<()> {
        if self.shape() != (rows, cols) {
            return Err(XentError::ShapeMismatch {
                what,
                expected: vec![rows, cols],
                got: vec![self.rows, self.cols],
            });
        }
        Ok(())
    }
}
