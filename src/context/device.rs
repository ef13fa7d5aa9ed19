//! The small named device helpers every launcher uses: buffers, uniforms, bind groups, encoders,
//! submission inside error scopes, one compute pass, and the one readback helper.

use super::Context;
use crate::error::{Result, XentError};

/// Buffer usage of every matrix, label and stand-in buffer: bound as storage, copied from (readback)
/// and into (uploads, the trainer's log).
pub(crate) const MATRIX_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Records one compute pass: `pipeline` with bind group 0, `groups` workgroups.
pub(crate) fn dispatch(
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    group: &wgpu::BindGroup,
    groups: [u32; 3],
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
}

impl Context {
    /// A buffer, refused with a clear error when it exceeds the device's buffer limit.
    pub(crate) fn create_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        if bytes > self.limits.max_buffer_size {
            return Err(XentError::TooLarge {
                what: format!("buffer `{label}`"),
                needed: format!("{bytes} bytes"),
                limit: format!("{} bytes (max_buffer_size)", self.limits.max_buffer_size),
            });
        }
        // wgpu wants sizes in multiples of 4; an empty matrix still gets a valid (tiny) buffer.
        let size = bytes.max(4).next_multiple_of(4);
        self.buffers_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.checked(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    pub(crate) fn uniform_buffer<T: bytemuck::Pod>(
        &self,
        label: &str,
        value: &T,
    ) -> Result<wgpu::Buffer> {
        use wgpu::util::DeviceExt;
        if self.in_workspace() {
            let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
            let size = std::mem::size_of::<T>() as u64;
            let buffer = self.scratch_buffer(label, size, usage, false)?;
            self.checked(|| {
                self.queue
                    .write_buffer(&buffer, 0, bytemuck::bytes_of(value))
            })?;
            return Ok(buffer);
        }
        self.buffers_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.checked(|| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::bytes_of(value),
                    // COPY_DST: a value the device computes may be copied in (see matmul.wgsl's
                    // `live`).
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                })
        })
    }

    pub(crate) fn bind_group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        resources: &[wgpu::BindingResource<'_>],
    ) -> Result<wgpu::BindGroup> {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        self.checked(|| {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })
    }

    pub(crate) fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submits; an error wgpu reports for it is `Err` (see [`Context::checked`]).
    pub(crate) fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        self.checked(|| self.queue.submit(Some(encoder.finish())))
    }

    /// Runs `f` (device calls: creating, writing, submitting) inside validation and out-of-memory
    /// error scopes. wgpu keeps error scopes per thread, so an error `f` causes comes back here, to
    /// this thread's call, and not to another thread sharing the context. Errors outside any scope
    /// (a lost device, an internal error) go to the context's handler and are returned by the next
    /// call that looks.
    pub(crate) fn checked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        // Native wgpu resolves a scope's future at once.
        let invalid = pollster::block_on(validation.pop());
        let no_memory = pollster::block_on(oom.pop());
        if let Some(e) = invalid.or(no_memory) {
            return Err(XentError::Gpu(e.to_string()));
        }
        self.take_gpu_error()?;
        Ok(out)
    }

    pub(crate) fn take_gpu_error(&self) -> Result<()> {
        let mut slot = self.gpu_error.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(msg) => Err(XentError::Gpu(msg)),
            None => Ok(()),
        }
    }

    /// The one readback helper: copy `bytes` at `offset` of `src` into a staging buffer, map it, wait,
    /// and return its contents as `T`s.
    pub async fn read_buffer<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<T>> {
        let elem = std::mem::size_of::<T>() as u64;
        if elem == 0 || !bytes.is_multiple_of(elem) {
            return Err(XentError::InvalidArgument(format!(
                "read of {bytes} bytes: not a whole number of {elem}-byte elements"
            )));
        }
        // wgpu copies whole 4-byte words from 4-byte-aligned offsets, within the buffer.
        if !offset.is_multiple_of(4) || !bytes.is_multiple_of(4) {
            return Err(XentError::InvalidArgument(format!(
                "read of {bytes} bytes at offset {offset}: both must be multiples of 4"
            )));
        }
        if offset.checked_add(bytes).is_none_or(|end| end > src.size()) {
            return Err(XentError::TooLarge {
                what: format!("read of {bytes} bytes at offset {offset}"),
                needed: format!(
                    "a buffer of at least {} bytes",
                    offset.saturating_add(bytes)
                ),
                limit: format!("{} bytes (the buffer's size)", src.size()),
            });
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.create_buffer(
            "xent.staging",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = self.encoder("xent.readback");
        encoder.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
        self.submit(encoder)?;
        let slice = staging.slice(..bytes);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            tx.send(r).ok();
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| XentError::Readback(e.to_string()))?;
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(XentError::Readback(e.to_string())),
            None => return Err(XentError::Readback("map callback dropped".into())),
        }
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| XentError::Readback(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        staging.unmap();
        self.take_gpu_error()?;
        Ok(out)
    }

    /// Waits until every submitted command has finished (benchmarks stop their clock after this).
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| XentError::Gpu(e.to_string()))?;
        self.take_gpu_error()
    }
}
