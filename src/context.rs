//! The GPU context: adapter choice, device, capabilities, error capture and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Result, XentError};
use crate::shaders::{Kernel, ReducePath};

/// How to choose and open the adapter. Every field has a default; [`ContextOptions::from_env`] reads
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` the way wgpu's own tools do.
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Backends to search (`None`: all that this build supports).
    pub backends: Option<wgpu::Backends>,
    /// Keep only adapters whose name contains this text (case-insensitive).
    pub adapter_name: Option<String>,
    /// Use subgroup operations for the in-row reductions where the adapter has them (default `true`).
    /// `false` forces the workgroup-memory path everywhere; the tests run both.
    pub use_subgroups: bool,
    /// Ask the device for at most this many bytes per storage binding (default: the adapter's own,
    /// with matrices bound in 256 MiB chunks on a GPU where a chunk keeps at least 2,048 rows; any
    /// value here replaces that rule). Lowering it makes the host split work into more row chunks;
    /// tests use it to exercise chunking on small data. At least 1,024 bytes.
    pub max_storage_binding: Option<u64>,
    /// Elements one lane walks per pass before a row gets more lanes (default: 8 on a GPU, 2,048 on
    /// a CPU driver). Tests set 8 to run the GPU geometry — many lanes per row, rows kept in workgroup
    /// memory — on lavapipe.
    pub elements_per_lane: Option<usize>,
}

/// The smallest `max_storage_binding` a context accepts.
const MIN_STORAGE_BINDING: u64 = 1024;

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            backends: None,
            adapter_name: None,
            use_subgroups: true,
            max_storage_binding: None,
            elements_per_lane: None,
        }
    }
}

impl ContextOptions {
    /// Defaults, overridden by `WGPU_BACKEND` (e.g. `vulkan`, `gl`) and `WGPU_ADAPTER_NAME`.
    pub fn from_env() -> Self {
        let backends = std::env::var("WGPU_BACKEND")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| wgpu::Backends::from_comma_list(&s));
        let adapter_name = std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .filter(|s| !s.is_empty());
        Self {
            backends,
            adapter_name,
            ..Self::default()
        }
    }
}

/// What xent knows about the adapter it runs on.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Vulkan, Gl, Metal, …
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU, …
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// Smallest subgroup size the adapter may use (0 when it has no subgroups).
    pub subgroup_min_size: u32,
}

impl AdapterSummary {
    fn from_info(info: &wgpu::AdapterInfo) -> Self {
        Self {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            subgroup_min_size: info.subgroup_min_size,
        }
    }
}

/// The optional features xent uses when an adapter has them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SUBGROUP_BARRIER)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

/// Loop iterations the start-up probe asks one invocation to run (above Mesa 22's cap of 65,535).
const PROBE_ITERATIONS: u32 = 100_000;

/// A device and queue with everything xent builds once: the adapter's limits and features, the measured
/// loop cap, and a cache of compute pipelines. Cheap to share: `Context` is `Send + Sync`.
pub struct Context {
    /// See [`Context::id`].
    id: ContextId,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    limits: wgpu::Limits,
    features: wgpu::Features,
    reduce_path: ReducePath,
    loop_cap: Option<u32>,
    /// See [`ContextOptions::elements_per_lane`].
    pub(crate) elements_per_lane: usize,
    /// Bind large matrices in chunks of about 256 MiB (a GPU whose binding limit was not lowered by
    /// the caller; see `GPU_CHUNK_BYTES` in launch.rs).
    pub(crate) gpu_chunks: bool,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// See [`Context::stand_in`].
    stand_ins: [wgpu::Buffer; STAND_INS],
    /// First error wgpu reported outside an error scope; taken (and returned as `Err`) after each submit.
    gpu_error: Arc<Mutex<Option<String>>>,
    /// GPU timestamps around every row-kernel launch, when enabled (benchmarks).
    timer: Mutex<Option<GpuTimer>>,
}

/// A context's identity, unique in the process: every [`crate::GpuMatrix`] and [`crate::GpuLabels`]
/// records its maker's, and every operation compares it with its own. (wgpu's own `Device` equality
/// compares ids that two instances can share, so it cannot tell two contexts apart.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextId(u64);

impl ContextId {
    fn next() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// Stand-in buffers a context keeps (see [`Context::stand_in`]).
const STAND_INS: usize = 4;

/// A pipeline's identity: everything its WGSL source and override constants depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    kernel: Kernel,
    reduce_path: ReducePath,
    /// The `MODE` override (the matmul's tile width `TN`).
    mode: u32,
    /// The `FLAGS` override, masked to the bits the kernel reads ([`Kernel::flag_mask`]).
    flags: u32,
    /// Floats per access: 4 for a vectorised kernel on rows whose length is a multiple of 4, else 1.
    vector_width: u32,
    /// The row length a narrow kernel is expanded for (0 for the others).
    narrow_cols: u32,
}

/// Timestamp queries written in pairs (start, end) around each launch.
struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    used: u32,
}

/// Queries the timer holds: 128 launches between two readings.
const TIMER_QUERIES: u32 = 256;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.summary)
            .field("reduce_path", &self.reduce_path)
            .field("loop_cap", &self.loop_cap)
            .finish_non_exhaustive()
    }
}

fn type_rank(info: &wgpu::AdapterInfo) -> u32 {
    // A hardware GPU first; then lavapipe (Vulkan) before llvmpipe (GL): the Vulkan driver has subgroups.
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    device * 2 + backend
}

/// Every adapter this build can see with the given options, best first (the order [`Context::new`]
/// picks from).
pub async fn list_adapters(options: &ContextOptions) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = options.backends.unwrap_or(wgpu::Backends::all());
    let instance = wgpu::Instance::new(desc);
    let mut adapters = instance.enumerate_adapters(desc_backends(options)).await;
    if let Some(name) = &options.adapter_name {
        let needle = name.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
    }
    adapters.sort_by_key(|a| type_rank(&a.get_info()));
    adapters
}

fn desc_backends(options: &ContextOptions) -> wgpu::Backends {
    options.backends.unwrap_or(wgpu::Backends::all())
}

impl Context {
    /// Opens the best adapter that matches `options` (a hardware GPU first, then lavapipe, then
    /// llvmpipe through GL), with the adapter's own limits and the optional features xent uses.
    pub async fn new(options: ContextOptions) -> Result<Self> {
        let adapters = list_adapters(&options).await;
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            XentError::NoAdapter(format!(
                "backends {:?}, name filter {:?}; on a machine without a GPU install Mesa's \
                 lavapipe (apt-get install mesa-vulkan-drivers libvulkan1)",
                desc_backends(&options),
                options.adapter_name
            ))
        })?;
        Self::from_adapter(&adapter, &options).await
    }

    /// Blocking [`Context::new`].
    pub fn new_blocking(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::new(options))
    }

    /// Opens a device on a given adapter (see [`list_adapters`]); `options` gives the subgroup choice
    /// and the binding-size cap.
    pub async fn from_adapter(adapter: &wgpu::Adapter, options: &ContextOptions) -> Result<Self> {
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_binding {
            // A chunk must hold a few rows past the worst-case alignment shift (256 bytes).
            if cap < MIN_STORAGE_BINDING {
                return Err(XentError::InvalidArgument(format!(
                    "max_storage_binding of {cap} bytes: at least {MIN_STORAGE_BINDING} needed"
                )));
            }
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("xent.device"),
            required_features: features,
            // The adapter's own limits: lavapipe offers 128 MiB per storage binding and 2 GiB per buffer,
            // far more than WebGPU's defaults.
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| XentError::RequestDevice {
                    adapter: info.name.clone(),
                    reason: e.to_string(),
                })?;
        let mut ctx = Self::from_device(device, queue, options.use_subgroups)?;
        if let Some(e) = options.elements_per_lane {
            ctx.elements_per_lane = e.max(1);
        }
        if options.max_storage_binding.is_some() {
            ctx.gpu_chunks = false;
        }
        Ok(ctx)
    }

    /// Wraps a device and queue that a program already has, so xent shares its device. xent uses the
    /// features and limits the device was opened with. xent's own calls catch their errors in error
    /// scopes; it also installs the device's uncaptured-error handler (replacing one the program set)
    /// to report a lost device or an internal error from its next call.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        use_subgroups: bool,
    ) -> Result<Self> {
        let info = device.adapter_info();
        let features = device.features();
        let gpu_error = Arc::new(Mutex::new(None::<String>));
        let sink = Arc::clone(&gpu_error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let subgroups = use_subgroups
            && features.contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 4
            && info.subgroup_min_size <= crate::shaders::WG_SIZE;
        let reduce_path = if subgroups {
            ReducePath::Subgroup(info.subgroup_min_size)
        } else {
            ReducePath::Workgroup
        };
        let stand_ins = std::array::from_fn(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent.stand_in"),
                size: 16,
                usage: crate::matrix::MATRIX_USAGE,
                mapped_at_creation: false,
            })
        });
        let mut ctx = Self {
            id: ContextId::next(),
            limits: device.limits(),
            device,
            queue,
            summary: AdapterSummary::from_info(&info),
            features,
            reduce_path,
            loop_cap: None,
            elements_per_lane: crate::launch::default_elements_per_lane(info.device_type),
            gpu_chunks: info.device_type != wgpu::DeviceType::Cpu,
            pipelines: Mutex::new(HashMap::new()),
            stand_ins,
            gpu_error,
            timer: Mutex::new(None),
        };
        ctx.loop_cap = ctx.probe_loop_cap()?;
        Ok(ctx)
    }

    /// Stand-in `i` (0 … 3): a 16-byte buffer (one vec4, zeros) bound where a kernel's operand is
    /// absent. The kernels never read one for data nor write one (the flags that would are off), so
    /// every launch shares them; a launch with several absent operands takes distinct ones, since wgpu
    /// refuses one buffer bound both read-only and read-write in a dispatch.
    pub(crate) fn stand_in(&self, i: usize) -> &wgpu::Buffer {
        &self.stand_ins[i]
    }

    /// This context's identity (unique in the process; matrices and labels record their maker's).
    pub fn id(&self) -> ContextId {
        self.id
    }

    /// `Err` unless `owner` is this context.
    pub(crate) fn expect_owner(&self, what: &'static str, owner: ContextId) -> Result<()> {
        if owner != self.id {
            return Err(XentError::WrongContext {
                what,
                owner: owner.0,
                context: self.id.0,
            });
        }
        Ok(())
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The device's limits (the adapter's own, unless the device was handed in).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// The wgpu device (to share buffers with other wgpu code).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Which in-row reduction the kernels use: subgroup shuffles (with the adapter's minimum subgroup
    /// size) or workgroup memory.
    pub fn reduce_path(&self) -> ReducePath {
        self.reduce_path
    }

    /// The most loop iterations one shader invocation may run on this adapter, measured at start-up
    /// (`None`: no cap seen). Mesa 22's lavapipe and llvmpipe stop every invocation's loops after
    /// 65,535 iterations in total, silently; xent refuses work that would cross the cap.
    pub fn loop_cap(&self) -> Option<u32> {
        self.loop_cap
    }

    /// Runs one invocation of a counting loop and reads how far it got.
    fn probe_loop_cap(&self) -> Result<Option<u32>> {
        let out = self.create_buffer(
            "xent.probe.out",
            4,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let params = self.uniform_buffer("xent.probe.params", &[PROBE_ITERATIONS, 0, 0, 0])?;
        let pipeline = self.pipeline(Kernel::LoopProbe, 0, 0, 1, 0)?;
        let bind = self.bind_group(
            &pipeline,
            &[params.as_entire_binding(), out.as_entire_binding()],
        )?;
        let mut encoder = self.encoder("xent.probe");
        crate::launch::dispatch(&mut encoder, "xent.probe", &pipeline, &bind, [1, 1, 1]);
        self.submit(encoder)?;
        let counted: Vec<u32> = pollster::block_on(self.read_buffer(&out, 0, 4))?;
        let counted = counted[0];
        Ok((counted < PROBE_ITERATIONS).then_some(counted))
    }

    // ---- small named set-up helpers, used by every launcher ----

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
        self.checked(|| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::bytes_of(value),
                    usage: wgpu::BufferUsages::UNIFORM,
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

    /// Starts timing every kernel launch with GPU timestamps. Returns `false` (and times nothing) on
    /// adapters without timestamp queries inside encoders.
    pub fn enable_gpu_timer(&self) -> bool {
        if !self.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        ) {
            return false;
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("xent.timer"),
            ty: wgpu::QueryType::Timestamp,
            count: TIMER_QUERIES,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("xent.timer.resolve"),
            size: TIMER_QUERIES as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(GpuTimer {
            queries,
            resolve,
            used: 0,
        });
        true
    }

    /// Writes the next timestamp when the timer is on (the launcher calls it before and after its passes).
    pub(crate) fn timestamp(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut timer = self.timer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = timer.as_mut()
            && t.used < TIMER_QUERIES
        {
            encoder.write_timestamp(&t.queries, t.used);
            t.used += 1;
        }
    }

    /// GPU milliseconds of the launches since the last call (first start to last end: gaps between
    /// submissions count), and resets the count. `None` when the timer is off, nothing ran, or more launches ran than it holds.
    pub fn take_gpu_time_ms(&self) -> Result<Option<f64>> {
        let (resolve, used) = {
            let mut timer = self.timer.lock().unwrap_or_else(|p| p.into_inner());
            let Some(t) = timer.as_mut() else {
                return Ok(None);
            };
            let used = std::mem::take(&mut t.used);
            if used == 0 || used % 2 == 1 {
                return Ok(None);
            }
            let mut encoder = self.encoder("xent.timer");
            encoder.resolve_query_set(&t.queries, 0..used, &t.resolve, 0);
            self.submit(encoder)?;
            (t.resolve.clone(), used)
        };
        let ticks: Vec<u64> = pollster::block_on(self.read_buffer(&resolve, 0, used as u64 * 8))?;
        let period = self.queue.get_timestamp_period() as f64;
        // The span from the first launch's start to the last one's end, gaps between launches
        // included (as CUDA events around an operation); summing each launch's end − start instead
        // counted twice the time a launch's start timestamp spent waiting on the one before it.
        let first = ticks.iter().step_by(2).copied().min().unwrap_or(0);
        let last = ticks.iter().skip(1).step_by(2).copied().max().unwrap_or(0);
        let ns = last.saturating_sub(first) as f64 * period;
        Ok((used < TIMER_QUERIES).then_some(ns / 1e6))
    }

    /// The cached pipeline of `kernel` for this context's reduction path, specialised on the `MODE` and
    /// `FLAGS` overrides (where the kernel has them) and the vector width `vw` (1 or 4), built on
    /// first use.
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        mode: u32,
        flags: u32,
        vw: u32,
        cols: u32,
    ) -> Result<wgpu::ComputePipeline> {
        let flags = flags & kernel.flag_mask();
        let vw = if kernel.is_vectorised() { vw } else { 1 };
        let cols = if kernel.is_narrow() { cols } else { 0 };
        let key = PipelineKey {
            kernel,
            reduce_path: self.reduce_path,
            mode,
            flags,
            vector_width: vw,
            narrow_cols: cols,
        };
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let walk = crate::shaders::RowWalk::for_policy(self.elements_per_lane);
        let composed = crate::shaders::source(kernel, self.reduce_path, walk, vw, cols, flags)
            .map_err(|e| XentError::Gpu(format!("{}: {e}", kernel.label())))?;
        let source = composed.source.clone();
        let pipeline = self
            .checked(|| {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.label()),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                let constants: Vec<(&str, f64)> = kernel
                    .overrides()
                    .iter()
                    .map(|&name| (name, if name == "FLAGS" { flags } else { mode } as f64))
                    .collect();
                // Auto layout: the shader's own declarations (read-only vs read-write) define the bindings.
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(kernel.label()),
                        layout: None,
                        module: &module,
                        entry_point: Some("main"),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            // Every kernel writes its workgroup memory before reading it (each reads back only
                            // what it or a barrier-separated writer stored), so WebGPU's zero fill is work for
                            // nothing; on llvmpipe's GL compiler it was most of a pipeline's build time (the
                            // fill of the matmul tiles: minutes per test run with a cold shader cache).
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            })
            // A compile error names lines of the composed module: point them into shaders/.
            .map_err(|e| match e {
                XentError::Gpu(msg) => XentError::Gpu(composed.annotate(&msg)),
                other => other,
            })?;
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
