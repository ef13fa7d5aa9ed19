//! The one launcher pattern for row kernels, and the one chunking rule.
//!
//! A row kernel reads and writes n×N matrices; the host splits the rows into chunks so that every n×N
//! binding stays under `max_storage_buffer_binding_size` and every dispatch under
//! `max_compute_workgroups_per_dimension`. A chunk's n×N bindings start at the aligned offset just
//! below the chunk's first element; `shift` tells the kernel how far in the chunk begins. Per-row
//! vectors (labels, losses) are bound whole and indexed with the global row `row0 + row`.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::shaders::{
    Elem, Elems, Kernel, NARROW_MAX, ROW_CACHE, ROW_CACHED, WG_SIZE, narrow_pack,
};

/// Rows of one launch that run on one pipeline, in chunks of at most `chunk` rows.
struct Segment {
    pipeline: wgpu::ComputePipeline,
    rows: std::ops::Range<usize>,
    /// Rows one workgroup covers.
    rows_per_group: usize,
    chunk: usize,
}

/// The uniform of every row kernel. Keep in sync with `Params` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowParams {
    pub rows: u32,
    pub cols: u32,
    pub row0: u32,
    pub shift: u32,
    pub tpr: u32,
    pub mode: u32,
    pub flags: u32,
    pub ignore_index: i32,
    pub ninf: f32,
    pub nan: f32,
    pub f: [f32; 5],
    pub total: u32,
    pub shift16: u32,
    pub ignore_hi: i32,
    pub classes: u32,
}

impl RowParams {
    /// Parameters with a mode, everything else zero (the launcher fills the geometry).
    pub fn mode(mode: u32) -> Self {
        Self {
            rows: 0,
            cols: 0,
            row0: 0,
            shift: 0,
            tpr: 0,
            mode,
            flags: 0,
            ignore_index: 0,
            ninf: f32::NEG_INFINITY,
            nan: f32::NAN,
            f: [0.0; 5],
            total: 0,
            shift16: 0,
            ignore_hi: 0,
            classes: 0,
        }
    }
}

/// One launch of a row kernel: `kernel` over `rows` rows of `cols` elements, walking each row
/// `passes` times (for the loop-cap check), with `args` bound after the uniform.
pub(crate) struct RowLaunch<'a> {
    pub kernel: Kernel,
    pub params: RowParams,
    pub rows: usize,
    pub cols: usize,
    pub passes: u32,
    pub args: &'a [Arg<'a>],
}

/// Where an operation's launches go: a submission of their own, or the caller's encoder.
pub(crate) enum Encode<'e> {
    Submit,
    Into(&'e mut wgpu::CommandEncoder),
}

/// One binding of a row kernel, in binding order after the uniform at binding 0.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// An n×N matrix of the given element type starting at the given byte of the buffer (a multiple
    /// of the storage offset alignment), bound chunk by chunk.
    Rows(&'a wgpu::Buffer, u64, Elem),
    /// A buffer bound whole (per-row vectors, class weights, scalars).
    Whole(&'a wgpu::Buffer),
    /// `size` bytes of a buffer from byte `offset` (an aligned start): a caller's per-row vector.
    Part(&'a wgpu::Buffer, u64, u64),
}

pub(crate) use crate::context::dispatch;

/// Loop iterations the in-row reductions may add per invocation: a few reductions of at most
/// log2(WG) tree levels or WG / SG serial steps each.
const REDUCTION_SLACK: u64 = WG_SIZE as u64;

impl Context {
    /// Iterations one invocation runs for `passes` walks over a row of `cols` elements read `vw` at a
    /// time by `tpr` lanes, plus the reductions' loops; refused when it would cross the adapter's
    /// loop cap. The error names the row's length in elements, not in vectors.
    pub(crate) fn check_loop_cap(&self, cols: usize, vw: u32, tpr: u32, passes: u32) -> Result<()> {
        let Some(cap) = self.loop_cap() else {
            return Ok(());
        };
        // Half the probed cap: the driver's count is not exactly the probe's single loop (nested
        // loops were seen to run out early in matmul.wgsl), so keep a wide margin.
        let cap = cap / 2;
        // A lane's stretch is rounded up to whole blocks: one step more at most.
        let per_pass = cols.div_ceil(vw as usize).div_ceil(tpr as usize) as u64 + 1;
        let needed = per_pass * passes as u64 + REDUCTION_SLACK;
        if needed > cap as u64 {
            return Err(XentError::TooLarge {
                what: format!("a row of {cols} elements"),
                needed: format!("{needed} loop iterations per shader invocation"),
                limit: format!(
                    "{cap} (this adapter silently stops loops past that; see the README, Numerics and edge cases)"
                ),
            });
        }
        Ok(())
    }

    /// Workgroups that keep the device busy (split-K's target; see [`crate::geometry`]).
    pub(crate) fn busy_workgroups(&self) -> usize {
        self.geometry.busy_workgroups
    }

    /// Invocations per row (see [`crate::geometry`]).
    pub(crate) fn lanes_per_row(&self, cols: usize) -> u32 {
        self.geometry.lanes_per_row(cols)
    }

    /// Floats a chunk's n×N binding holds: the binding limit less the worst-case shift of
    /// (alignment − 1) elements before the chunk's first element.
    pub(crate) fn binding_floats(&self) -> u64 {
        let limits = self.limits();
        let align_elems = (limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
        (limits.max_storage_buffer_binding_size / 4).saturating_sub(align_elems - 1)
    }

    /// Rows per chunk under the binding and dispatch limits; `Err` when a single row does not fit.
    pub(crate) fn rows_per_chunk(&self, cols: usize, tpr: u32) -> Result<usize> {
        let limits = self.limits();
        let floats = self.geometry.chunk_floats(self.binding_floats(), cols);
        let by_binding = floats / cols.max(1) as u64;
        if by_binding == 0 {
            return Err(XentError::TooLarge {
                what: format!("a row of {cols} f32"),
                needed: format!("{} bytes in one storage binding", cols as u64 * 4),
                limit: format!(
                    "{} bytes (max_storage_buffer_binding_size)",
                    limits.max_storage_buffer_binding_size
                ),
            });
        }
        let rows_per_wg = (WG_SIZE / tpr) as u64;
        let by_dispatch = limits.max_compute_workgroups_per_dimension as u64 * rows_per_wg;
        Ok(by_binding.min(by_dispatch).min(u32::MAX as u64) as usize)
    }

    /// Records the launches `record` encodes: into the caller's encoder ([`Encode::Into`]: nothing is
    /// submitted), or into a command buffer of their own between two timestamps (when the GPU timer
    /// is on), submitted at once ([`Encode::Submit`]): an operation of several launches is one
    /// submission, and nothing of it runs when encoding fails.
    pub(crate) fn launches<T>(
        &self,
        label: &str,
        to: Encode<'_>,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<T>,
    ) -> Result<T> {
        match to {
            Encode::Into(encoder) => record(encoder),
            Encode::Submit => {
                let mut encoder = self.encoder(label);
                self.timestamp(&mut encoder);
                let out = record(&mut encoder)?;
                self.timestamp(&mut encoder);
                self.submit(encoder)?;
                Ok(out)
            }
        }
    }

    /// [`Context::launches`] of one row launch.
    pub(crate) fn rows(&self, to: Encode<'_>, launch: RowLaunch<'_>) -> Result<()> {
        self.launches(launch.kernel.label(), to, |encoder| {
            self.encode_rows(encoder, launch)
        })
    }

    /// What a row launch of `kernel` over rows of `cols` elements walked `passes` times needs, or the
    /// error that refuses it (the loop cap, a row past the binding limit): lanes per row, the
    /// vector width, rows per chunk. Every error a row launch can raise on the host but the
    /// whole-bound operands' sizes.
    pub(crate) fn check_row_launch(
        &self,
        kernel: Kernel,
        cols: usize,
        passes: u32,
    ) -> Result<(u32, u32, usize)> {
        let tpr = self.lanes_per_row(cols);
        // Vectorised kernels read rows four floats at a time when N allows it: a chunk's first element
        // is then 16-byte aligned too (N·4·row0 is a multiple of 16, offsets of 256).
        let vw: u32 = if kernel.is_vectorised() && cols.is_multiple_of(4) {
            4
        } else {
            1
        };
        self.check_loop_cap(cols, vw, tpr, passes)?;
        Ok((tpr, vw, self.rows_per_chunk(cols, tpr)?))
    }

    /// Rows that a launch of `kernel` over rows of `cols` elements packs together (its narrow
    /// variant's pack on a lane-per-row launch; else 1). The pack and the row kernel give different
    /// bits, so a caller that splits a batch into launches and wants every row's bits independent of
    /// the split makes every launch but the last a multiple of this.
    pub(crate) fn row_granule(&self, kernel: Kernel, cols: usize) -> usize {
        let narrow = kernel.narrow().is_some()
            && self.lanes_per_row(cols) == 1
            && !cols.is_multiple_of(4)
            && cols <= NARROW_MAX as usize;
        if narrow {
            narrow_pack(cols as u32) as usize
        } else {
            1
        }
    }

    /// Encodes a row launch in as many chunks as the limits need.
    pub(crate) fn encode_rows(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        launch: RowLaunch<'_>,
    ) -> Result<()> {
        let RowLaunch {
            kernel,
            params: base,
            rows: n,
            cols,
            passes,
            args,
        } = launch;
        if n == 0 {
            return Ok(());
        }
        // Operands bound whole (per-row vectors, class weights) must fit one binding too.
        let limit = self.limits().max_storage_buffer_binding_size;
        for arg in args {
            let bytes = match arg {
                Arg::Whole(b) => b.size(),
                Arg::Part(_, _, size) => *size,
                Arg::Rows(..) => continue,
            };
            if bytes > limit {
                return Err(XentError::TooLarge {
                    what: format!("`{}` operand of {} rows", kernel.label(), n),
                    needed: format!("{bytes} bytes in one storage binding"),
                    limit: format!("{limit} bytes (max_storage_buffer_binding_size)"),
                });
            }
        }
        let (tpr, vw, chunk) = self.check_row_launch(kernel, cols, passes)?;
        let elems = launch_elems(kernel, args)?;
        let mut base = base;
        // The row cache is for rows spread over several lanes. A lane that owns its row re-reads it
        // from the nearest cache level anyway (and on CPU drivers, where lanes own rows, workgroup
        // memory costs as much as a buffer access).
        if kernel.caches_rows() && tpr > 1 && (WG_SIZE / tpr) as usize * cols <= ROW_CACHE as usize
        {
            base.flags |= ROW_CACHED;
        }
        // Narrow rows on a lane-per-row launch: whole packs of PR rows go to the kernel's narrow
        // variant, the rows left over (fewer than PR) to the row kernel itself (all rows, should a
        // binding not hold one pack).
        let mut segments = Vec::with_capacity(2);
        let mut packed = 0;
        let pr = self.row_granule(kernel, cols);
        if let Some(narrow) = kernel.narrow()
            && pr > 1
            && chunk >= pr
        {
            packed = n / pr * pr;
            if packed > 0 {
                segments.push(Segment {
                    pipeline: self.pipeline(
                        narrow,
                        base.mode,
                        base.flags,
                        4,
                        cols as u32,
                        &elems,
                    )?,
                    rows: 0..packed,
                    rows_per_group: WG_SIZE as usize * pr,
                    chunk: chunk / pr * pr,
                });
            }
        }
        if packed < n {
            segments.push(Segment {
                pipeline: self.pipeline(kernel, base.mode, base.flags, vw, cols as u32, &elems)?,
                rows: packed..n,
                rows_per_group: (WG_SIZE / tpr) as usize,
                chunk,
            });
        }
        let align = self.limits().min_storage_buffer_offset_alignment as u64;
        for seg in &segments {
            let mut row0 = seg.rows.start;
            while row0 < seg.rows.end {
                let rows = seg.chunk.min(seg.rows.end - row0);
                // Each element width has its own aligned window: (offset, size, shift in elements).
                let window = |elem: Elem| {
                    let first_byte = row0 as u64 * cols as u64 * elem.size();
                    let offset = first_byte / align * align;
                    let bytes = first_byte - offset + rows as u64 * cols as u64 * elem.size();
                    // 16-bit rows may end in the middle of a word: bind whole words (the matrix's
                    // buffer holds them, see GpuMatrix).
                    (
                        offset,
                        bytes.next_multiple_of(4),
                        (first_byte - offset) / elem.size(),
                    )
                };
                let params = RowParams {
                    rows: rows as u32,
                    cols: cols as u32,
                    row0: row0 as u32,
                    shift: window(Elem::F32).2 as u32,
                    shift16: window(Elem::Bf16).2 as u32,
                    tpr,
                    ..base
                };
                let uniform = self.uniform_buffer(kernel.label(), &params)?;
                let mut resources = vec![uniform.as_entire_binding()];
                for arg in args {
                    resources.push(match arg {
                        Arg::Rows(b, base, elem) => {
                            let (offset, size, _) = window(*elem);
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: b,
                                offset: base + offset,
                                size: wgpu::BufferSize::new(size),
                            })
                        }
                        Arg::Whole(b) => b.as_entire_binding(),
                        Arg::Part(b, offset, size) => {
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: b,
                                offset: *offset,
                                size: wgpu::BufferSize::new(*size),
                            })
                        }
                    });
                }
                let bind = self.bind_group(&seg.pipeline, &resources)?;
                let groups = rows.div_ceil(seg.rows_per_group) as u32;
                dispatch(
                    encoder,
                    kernel.label(),
                    &seg.pipeline,
                    &bind,
                    [groups, 1, 1],
                );
                row0 += rows;
            }
        }
        Ok(())
    }
}

/// The element type at each binding of a launch (its n×N operands' types; f32 for the rest), or the
/// error for a type the kernel does not store.
pub(crate) fn launch_elems(kernel: Kernel, args: &[Arg<'_>]) -> Result<Elems> {
    let mut elems = Elems::F32;
    for (i, arg) in args.iter().enumerate() {
        if let Arg::Rows(_, _, elem) = arg
            && let Some(slot) = elems.0.get_mut(i + 1)
        {
            if !kernel.info().elems.contains(elem) {
                return Err(XentError::InvalidArgument(format!(
                    "`{}` does not take {elem} matrices (it stores {})",
                    kernel.label(),
                    kernel
                        .info()
                        .elems
                        .iter()
                        .map(|e| e.short())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            *slot = *elem;
        }
    }
    Ok(elems)
}
