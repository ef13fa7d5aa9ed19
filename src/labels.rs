//! Class labels on the device: uploaded from the host (with a host copy, checked before any kernel
//! runs), or living only on the device in a caller's buffer (u32, i32 or PyTorch's int64), checked by
//! the kernels themselves.

use crate::context::{Context, ContextId, MATRIX_USAGE};
use crate::error::{Result, XentError};
use crate::launch::Arg;
use crate::matrix::check_caller_buffer;

/// How labels are stored on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelType {
    /// 32-bit signed (what [`GpuLabels::from_slice`] uploads).
    I32,
    /// 32-bit unsigned; a value past `i32::MAX` is a bad label.
    U32,
    /// 64-bit signed, little-endian (PyTorch's `torch.long`), read as pairs of 32-bit words: no
    /// `SHADER_INT64` needed. A value outside i32 is a bad label.
    I64,
}

impl LabelType {
    /// The kernels' FLAGS bits for labels of this type (none for i32).
    pub(crate) fn kernel_flags(self) -> u32 {
        use crate::shaders::flags::{CE_LABELS_I64, CE_LABELS_U32};
        match self {
            LabelType::I32 => 0,
            LabelType::U32 => CE_LABELS_U32,
            LabelType::I64 => CE_LABELS_I64,
        }
    }

    /// Bytes per label.
    pub fn size(self) -> u64 {
        match self {
            LabelType::I32 | LabelType::U32 => 4,
            LabelType::I64 => 8,
        }
    }
}

/// Class labels of `n` rows on the device.
///
/// Two contracts, by where the labels come from:
/// - **Host labels** ([`GpuLabels::from_slice`]): the host copy is kept, and a cross-entropy call
///   checks every label against N and `ignore_index` before anything is recorded, so a bad label is
///   an error ([`XentError::LabelOutOfRange`]) and never a half-written output. The mean's
///   denominator is computed on the host.
/// - **Device-only labels** ([`GpuLabels::from_buffer`]): nothing is read back. The mean's
///   denominator is computed on the device before the rows run, with the same bits as the host's
///   (an exact sum rounded once). A label outside `[0, N)` that is not `ignore_index`, or that does
///   not fit in i32, cannot be refused up front: its row's loss is NaN and so is the whole gradient
///   (every row's: the scale is NaN; with a per-row upstream, the bad rows'), so no plausible number
///   comes out; the first such row and its label are recorded on the device, and reading
///   the output's batch numbers ([`crate::CrossEntropyOutput::read_stats`], `read_loss`, `check`)
///   returns [`XentError::LabelOutOfRange`] with that row and label.
#[derive(Debug)]
pub struct GpuLabels {
    buffer: wgpu::Buffer,
    offset: u64,
    len: usize,
    ty: LabelType,
    host: Option<Vec<i32>>,
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
        Ok(Self::from_parts(ctx, buffer, host.len(), Some(host)))
    }

    /// Labels that live only on the device: `rows` labels of type `ty` in a caller's `buffer` from
    /// byte `offset` (a multiple of the adapter's `min_storage_buffer_offset_alignment`). The buffer
    /// needs STORAGE usage; nothing is read back, ever (see the type's docs for the contract).
    ///
    /// Errors: [`XentError::InvalidArgument`] for a buffer without STORAGE usage or an unaligned
    /// offset, [`XentError::LengthMismatch`] when the labels pass the buffer's end.
    ///
    /// ```no_run
    /// # fn main() -> xent::Result<()> {
    /// use xent::{Context, ContextOptions, CrossEntropyOptions, GpuLabels, GpuMatrix, LabelType, Targets};
    /// let ctx = Context::new_blocking(ContextOptions::default())?;
    /// // A buffer the program owns, holding PyTorch-style int64 class indices.
    /// let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
    ///     label: Some("my labels"),
    ///     size: 16,
    ///     usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    ///     mapped_at_creation: false,
    /// });
    /// ctx.queue().write_buffer(&buf, 0, bytemuck::cast_slice(&[2i64, 0]));
    /// let labels = GpuLabels::from_buffer(&ctx, buf, 0, 2, LabelType::I64)?;
    /// let logits = GpuMatrix::from_slice(&ctx, &[1.0, 2.0, 3.0, 0.5, 0.1, 0.2], 2, 3)?;
    /// let out = ctx.cross_entropy(&logits, Targets::Labels(&labels), &CrossEntropyOptions::default())?;
    /// let stats = out.read_stats_blocking(&ctx)?; // Err(LabelOutOfRange) for a bad label
    /// assert_eq!(stats.denominator, 2.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_buffer(
        ctx: &Context,
        buffer: wgpu::Buffer,
        offset: u64,
        rows: usize,
        ty: LabelType,
    ) -> Result<Self> {
        let bytes = (rows as u64).checked_mul(ty.size()).ok_or_else(|| {
            XentError::InvalidShape(format!("{rows} labels do not fit in a buffer"))
        })?;
        check_caller_buffer(ctx, &buffer, offset, bytes, "labels")?;
        Ok(Self {
            buffer,
            offset,
            len: rows,
            ty,
            host: None,
            owner: ctx.id(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The labels as uploaded, for host labels; `None` for device-only labels.
    pub fn host(&self) -> Option<&[i32]> {
        self.host.as_deref()
    }

    /// The labels as uploaded (empty for device-only labels, which have no host copy).
    #[deprecated(note = "use `host()`, which says when there is no host copy")]
    pub fn as_slice(&self) -> &[i32] {
        self.host().unwrap_or_default()
    }

    /// How the labels are stored on the device.
    pub fn label_type(&self) -> LabelType {
        self.ty
    }

    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Where the labels start in [`GpuLabels::buffer`], in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The buffer, checked to belong to `ctx` (see [`crate::GpuMatrix::on`]).
    pub(crate) fn on(&self, ctx: &Context) -> Result<&wgpu::Buffer> {
        ctx.expect_owner("labels", self.owner)?;
        Ok(&self.buffer)
    }

    /// The labels' binding (from their offset, their bytes only), checked to belong to `ctx`.
    pub(crate) fn arg(&self, ctx: &Context) -> Result<Arg<'_>> {
        let bytes = (self.len as u64 * self.ty.size()).max(4);
        Ok(Arg::Part(self.on(ctx)?, self.offset, bytes))
    }

    /// `len` i32 labels already on the device (`buffer`, from its start), with their host copy if
    /// there is one.
    pub(crate) fn from_parts(
        ctx: &Context,
        buffer: wgpu::Buffer,
        len: usize,
        host: Option<Vec<i32>>,
    ) -> Self {
        Self {
            buffer,
            offset: 0,
            len,
            ty: LabelType::I32,
            host,
            owner: ctx.id(),
        }
    }
}
