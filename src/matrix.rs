//! Device-resident data: an n×N f32 matrix and an n-vector of class labels.

use crate::context::{Context, ContextId, MATRIX_USAGE};
use crate::error::{Result, XentError};

/// A row-major `rows × cols` f32 matrix that lives on the device. Kernels take and return these, so a
/// chain of kernels never goes through the host. A vector is a matrix with one column. A matrix
/// belongs to the [`Context`] that made it: handing it to another context (even one wrapping the
/// same device) is [`XentError::WrongContext`].
#[derive(Debug)]
pub struct GpuMatrix {
    buffer: wgpu::Buffer,
    /// Byte where the matrix starts in `buffer` (0 but for a caller's buffer; a multiple of the
    /// device's storage offset alignment).
    offset: u64,
    rows: usize,
    cols: usize,
    /// The context that made it (see [`Context::id`]).
    owner: ContextId,
}

fn checked_len(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .filter(|&l| l.checked_mul(4).is_some())
        .ok_or_else(|| XentError::InvalidShape(format!("{rows}×{cols} overflows")))
}

impl GpuMatrix {
    /// An uninitialised (zero-filled) matrix.
    pub fn zeros(ctx: &Context, rows: usize, cols: usize) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        let buffer = ctx.create_buffer("xent.matrix", len as u64 * 4, MATRIX_USAGE)?;
        Ok(Self {
            buffer,
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
        Self::from_buffer_at(ctx, buffer, 0, rows, cols)
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
        let len = checked_len(rows, cols)?;
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(XentError::InvalidArgument(format!(
                "a matrix's buffer needs STORAGE usage; this one has {:?}",
                buffer.usage()
            )));
        }
        let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
        if !offset.is_multiple_of(align) {
            return Err(XentError::InvalidArgument(format!(
                "a matrix's offset must be a multiple of {align} bytes \
                 (min_storage_buffer_offset_alignment), not {offset}"
            )));
        }
        let end = (len as u64)
            .checked_mul(4)
            .and_then(|b| b.checked_add(offset));
        if end.is_none_or(|end| end > buffer.size()) {
            return Err(XentError::LengthMismatch {
                what: "caller buffer (bytes) for the matrix at its offset",
                expected: end.map_or(usize::MAX, |e| e as usize),
                got: buffer.size() as usize,
            });
        }
        Ok(Self {
            buffer,
            offset,
            rows,
            cols,
            owner: ctx.id(),
        })
    }

    /// Uploads `data` (row-major, `rows * cols` values).
    pub fn from_slice(ctx: &Context, data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        if data.len() != len {
            return Err(XentError::LengthMismatch {
                what: "matrix data",
                expected: len,
                got: data.len(),
            });
        }
        let m = Self::zeros(ctx, rows, cols)?;
        if len > 0 {
            ctx.checked(|| {
                ctx.queue
                    .write_buffer(&m.buffer, 0, bytemuck::cast_slice(data))
            })?;
        }
        Ok(m)
    }

    /// Copies the matrix back to the host.
    pub async fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        let (buffer, offset) = self.rows_on(ctx)?;
        ctx.read_buffer(buffer, offset, self.len() as u64 * 4).await
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

    /// The wgpu buffer (at least `len() * 4` bytes), for sharing with other wgpu code.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer, once `ctx` is known to be the context that made the matrix: every operation takes
    /// its operands' buffers through this, so a matrix of another context is an error (its buffer
    /// id means nothing, or another buffer, on this context's device).
    pub(crate) fn on(&self, ctx: &Context) -> Result<&wgpu::Buffer> {
        ctx.expect_owner("a matrix", self.owner)?;
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
        Ok(crate::launch::Arg::Rows(b, o))
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

/// Class labels of `n` rows on the device (i32), with the host copy kept for validation: a
/// cross-entropy call checks every label against N and `ignore_index` before any kernel runs, so a bad
/// label is an error and never a half-written output.
#[derive(Debug)]
pub struct GpuLabels {
    buffer: wgpu::Buffer,
    host: Vec<i32>,
    owner: ContextId,
}

impl GpuLabels {
    /// Uploads labels given as any integer type that fits in i32 (u32, i32 and i64 from NumPy and
    /// PyTorch); a value outside i32 is an error naming its row.
    pub fn from_slice<T: Copy + TryInto<i32> + std::fmt::Display>(
        ctx: &Context,
        labels: &[T],
    ) -> Result<Self> {
        let host = labels
            .iter()
            .enumerate()
            .map(|(row, &l)| {
                l.try_into().map_err(|_| {
                    XentError::InvalidArgument(format!(
                        "label {l} in row {row} does not fit in i32"
                    ))
                })
            })
            .collect::<Result<Vec<i32>>>()?;
        let buffer = ctx.create_buffer("xent.labels", host.len() as u64 * 4, MATRIX_USAGE)?;
        if !host.is_empty() {
            ctx.checked(|| {
                ctx.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(&host))
            })?;
        }
        Ok(Self {
            buffer,
            host,
            owner: ctx.id(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// The labels as uploaded.
    pub fn as_slice(&self) -> &[i32] {
        &self.host
    }

    /// The wgpu buffer (i32 per row).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer, checked to belong to `ctx` (see [`GpuMatrix::on`]).
    pub(crate) fn on(&self, ctx: &Context) -> Result<&wgpu::Buffer> {
        ctx.expect_owner("labels", self.owner)?;
        Ok(&self.buffer)
    }
}

impl GpuLabels {
    /// Labels already on the device (`buffer`, i32 per row) with their host copy.
    pub(crate) fn from_parts(ctx: &Context, buffer: wgpu::Buffer, host: Vec<i32>) -> Self {
        Self {
            buffer,
            host,
            owner: ctx.id(),
        }
    }
}
