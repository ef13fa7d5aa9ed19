//! The GPU context: adapter choice, device, capabilities and the device's geometry. Its parts:
//! [`device`](self) helpers (buffers, error scopes, submission, the one readback helper), the pipeline
//! cache and the loop-cap probe (`pipelines.rs`), and the GPU timer (`timer.rs`).

mod device;
mod pipelines;
mod timer;
pub mod workspace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Result, XentError};
use crate::geometry::Geometry;
use crate::shaders::ReducePath;

pub(crate) use device::{MATRIX_USAGE, dispatch};
use pipelines::PipelineKey;
use timer::GpuTimer;

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
    /// The device's geometry (lanes per row, row walk, chunking, split-K target), decided once.
    pub(crate) geometry: Geometry,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// See [`Context::stand_in`].
    stand_ins: [wgpu::Buffer; STAND_INS],
    /// First error wgpu reported outside an error scope; taken (and returned as `Err`) after each submit.
    gpu_error: Arc<Mutex<Option<String>>>,
    /// GPU timestamps around every row-kernel launch, when enabled (benchmarks).
    timer: Mutex<Option<GpuTimer>>,
    /// See [`Context::buffers_created`].
    buffers_created: std::sync::atomic::AtomicU64,
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
        ctx.geometry = Geometry::new(
            info.device_type,
            options.elements_per_lane,
            options.max_storage_binding.is_some(),
        );
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
                usage: device::MATRIX_USAGE,
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
            geometry: Geometry::new(info.device_type, None, false),
            pipelines: Mutex::new(HashMap::new()),
            stand_ins,
            gpu_error,
            timer: Mutex::new(None),
            buffers_created: Default::default(),
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

    /// How many wgpu buffers this context has made so far (matrices, labels, uniforms, scratch): a
    /// loop inside [`Context::with_workspace`] makes none after its first run.
    pub fn buffers_created(&self) -> u64 {
        self.buffers_created
            .load(std::sync::atomic::Ordering::Relaxed)
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
}
