//! Device-only labels in fused linear cross-entropy: the rows that count listed on the device
//! (`listed_rows.wgsl`), so that rows whose label is `ignore_index` do no matmul work, with no host
//! round trip and no indirect dispatch.
//!
//! One launch writes a stable partition of the batch rows (kept rows in batch order, then ignored
//! ones) and its count. The chunks are recorded for the worst case (every row kept); each chunk
//! gathers its X rows, labels and upstream by the list, its products skip the listed positions past
//! the count (the count is copied into their uniforms on the device: `live` in matmul.wgsl), and its
//! `dX` rows are scattered back by the list. The kept rows then sit at the positions the host's list
//! gives them, in the same chunks and row blocks, so every result has the host labels' bits.

use crate::context::Context;
use crate::error::Result;
use crate::launch::{Arg, Encode, RowLaunch, RowParams};
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::shaders::flags::{MODE_GATHER, MODE_LIST, MODE_SCATTER};
use crate::shaders::{Elem, Kernel};

/// An operand bound from an aligned start: (buffer, aligned byte offset, bytes, its first word).
struct Window {
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
    shift: u32,
}

impl Window {
    fn new(ctx: &Context, buffer: &wgpu::Buffer, at: u64, bytes: u64) -> Self {
        let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
        let offset = at / align * align;
        Window {
            buffer: buffer.clone(),
            offset,
            size: (at - offset + bytes).max(4),
            shift: ((at - offset) / 4) as u32,
        }
    }

    fn of(ctx: &Context, m: &GpuMatrix) -> Self {
        Self::new(ctx, m.buffer(), m.offset(), m.len() as u64 * 4)
    }

    fn arg(&self) -> Arg<'_> {
        Arg::Part(&self.buffer, self.offset, self.size)
    }
}

/// The list of one recording and the operands it gathers from and scatters to.
pub(super) struct DeviceList {
    /// The count in word 0, the listed batch rows from word 4 (`n + 4` words, read back with the
    /// per-row outputs).
    pub list: GpuMatrix,
    x: Window,
    d: usize,
    labels: Window,
    label_words: usize,
    dx: Option<Window>,
    /// The caller's per-row upstream, uploaded whole.
    upstream: Option<(GpuMatrix, Window)>,
}

impl DeviceList {
    /// The list, and the upload it gathers the upstream from (kept alive with the recording's
    /// other uploads until it has run).
    pub fn into_parts(self) -> (GpuMatrix, Option<GpuMatrix>) {
        (self.list, self.upstream.map(|(m, _)| m))
    }
}

/// What a chunk gathers by the list.
#[derive(Clone, Copy)]
pub(super) enum Gather {
    X,
    Labels,
    Upstream,
}

impl Context {
    /// Whether the device can list the rows of a batch of `n` rows of `d` features: the list's
    /// launch within the loop cap, and every operand it reads or writes whole (X and dX as f32, the
    /// labels, an upstream, the list) within one storage binding. Where it cannot, every row is
    /// computed (ignored rows get a zero gradient), as before the list existed.
    pub(super) fn can_list_rows(&self, n: usize, d: usize, labels: &GpuLabels) -> bool {
        let limits = self.limits();
        let slack = limits.min_storage_buffer_offset_alignment as u64;
        let fits =
            |bytes: u64| bytes.saturating_add(slack) <= limits.max_storage_buffer_binding_size;
        n > 0
            && self.check_row_launch(Kernel::ListedRows, n, 2).is_ok()
            && fits((n as u64).saturating_mul(d as u64).saturating_mul(4))
            && fits(n as u64 * labels.label_type().size())
            && fits((n as u64 + 4) * 4)
    }

    /// Records the list of the rows whose label is not `ignore_index` (see [`Context::can_list_rows`]).
    /// `x` is f32 (n × d), `dx` the caller's input gradient, `upstream` the per-row upstream.
    #[expect(clippy::too_many_arguments, reason = "the operands the list serves")]
    pub(super) fn record_list(
        &self,
        enc: &mut wgpu::CommandEncoder,
        labels: &GpuLabels,
        ignore_index: i64,
        classes: usize,
        x: &GpuMatrix,
        dx: Option<&GpuMatrix>,
        upstream: Option<&[f32]>,
    ) -> Result<DeviceList> {
        let n = labels.len();
        let list = GpuMatrix::zeros(self, n + 4, 1)?;
        let upstream = upstream
            .map(|u| {
                let m = GpuMatrix::from_slice(self, u, n, 1)?;
                let w = Window::of(self, &m);
                Ok::<_, crate::XentError>((m, w))
            })
            .transpose()?;
        let mut params = RowParams::mode(MODE_LIST);
        params.flags = labels.label_type().kernel_flags();
        (params.ignore_index, params.ignore_hi) =
            (ignore_index as i32, (ignore_index >> 32) as i32);
        params.classes = classes as u32;
        self.rows(
            Encode::Into(enc),
            RowLaunch {
                kernel: Kernel::ListedRows,
                params,
                rows: 1,
                cols: n,
                passes: 2,
                args: &[
                    Arg::Whole(list.buffer()),
                    Arg::Whole(self.stand_in(1)),
                    Arg::Whole(self.stand_in(2)),
                    labels.arg(self)?,
                ],
            },
        )?;
        let size = labels.label_type().size();
        Ok(DeviceList {
            x: Window::of(self, x),
            d: x.cols(),
            labels: Window::new(self, labels.buffer(), labels.offset(), n as u64 * size),
            label_words: (size / 4) as usize,
            dx: dx.map(|m| Window::of(self, m)),
            upstream,
            list,
        })
    }

    /// Records the gather of listed rows `k0 .. k0 + rows` of `what` into `out` (from its start).
    pub(super) fn gather_listed(
        &self,
        enc: &mut wgpu::CommandEncoder,
        l: &DeviceList,
        what: Gather,
        k0: usize,
        rows: usize,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let (src, cols) = match what {
            Gather::X => (&l.x, l.d),
            Gather::Labels => (&l.labels, l.label_words),
            Gather::Upstream => (&l.upstream.as_ref().expect("an upstream").1, 1),
        };
        self.listed_launch(
            enc,
            MODE_GATHER,
            l,
            k0,
            rows,
            cols,
            src.shift,
            [src.arg(), Arg::Rows(out, 0, Elem::F32)],
        )
    }

    /// Records the scatter of the `rows × d` input gradient rows in `from` (listed rows `k0 ..`)
    /// back to their batch rows of dX, up to the list's count.
    pub(super) fn scatter_listed(
        &self,
        enc: &mut wgpu::CommandEncoder,
        l: &DeviceList,
        k0: usize,
        from: &GpuMatrix,
    ) -> Result<()> {
        let dx = l.dx.as_ref().expect("an input gradient");
        let (rows, d) = from.shape();
        self.listed_launch(
            enc,
            MODE_SCATTER,
            l,
            k0,
            rows,
            d,
            dx.shift,
            [Arg::Rows(from.buffer(), 0, Elem::F32), dx.arg()],
        )
    }

    #[expect(clippy::too_many_arguments, reason = "one launch's numbers")]
    fn listed_launch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        mode: u32,
        l: &DeviceList,
        k0: usize,
        rows: usize,
        cols: usize,
        shift: u32,
        [src, dst]: [Arg<'_>; 2],
    ) -> Result<()> {
        let mut params = RowParams::mode(mode);
        params.total = k0 as u32;
        params.classes = shift;
        self.rows(
            Encode::Into(enc),
            RowLaunch {
                kernel: Kernel::ListedRows,
                params,
                rows,
                cols,
                passes: 1,
                args: &[
                    Arg::Whole(l.list.buffer()),
                    src,
                    dst,
                    Arg::Whole(self.stand_in(3)),
                ],
            },
        )
    }
}
