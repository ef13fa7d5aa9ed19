//! Command-line plumbing shared by the subcommands: device selection, shapes, tables, progress bars.

pub mod bench;
pub mod bench_linear;
pub mod bench_plot;
pub mod bench_report;
pub mod check;
pub mod eval;
pub mod eval_linear;
pub mod train;

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use xent::{Context, ContextOptions, XentError};

/// Which adapter to use. `--backend cpu` (where a command supports it) runs the CPU path instead.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto (a GPU first, then lavapipe, then llvmpipe), gpu (same), vulkan, gl, metal, dx12; or, where
    /// a command runs on the host, cpu (the fast CPU path) or reference (the f64 oracle).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Use the first adapter whose name contains this text (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Bind at most this many MiB of a matrix per launch (default: the adapter's limit, or 256 MiB
    /// chunks on a GPU where a chunk keeps at least 2,048 rows); larger matrices run in more chunks.
    #[arg(long, value_name = "MIB")]
    pub max_binding_mib: Option<u64>,
}

impl DeviceArgs {
    /// The host backend asked for, if any: `reference` (the f64 oracle) or `cpu` (the fast CPU path).
    pub fn host(&self) -> Option<xent::train::CpuPath> {
        match self.backend.as_str() {
            "reference" => Some(xent::train::CpuPath::Reference),
            "cpu" => Some(xent::train::CpuPath::Fast),
            _ => None,
        }
    }

    /// Context options: the flags override `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`.
    pub fn options(&self) -> Result<ContextOptions, XentError> {
        let mut opts = ContextOptions::from_env();
        match self.backend.as_str() {
            "auto" | "gpu" => {}
            "cpu" | "reference" => {
                return Err(XentError::InvalidArgument(format!(
                    "this command needs a GPU adapter; --backend {} is not available here",
                    self.backend
                )));
            }
            b @ ("vulkan" | "gl" | "metal" | "dx12") => {
                opts.backends = Some(wgpu::Backends::from_comma_list(b));
            }
            other => {
                return Err(XentError::InvalidArgument(format!(
                    "--backend {other}: expected auto, gpu, vulkan, gl, metal, dx12, cpu or reference"
                )));
            }
        }
        if let Some(name) = &self.adapter {
            opts.adapter_name = Some(name.clone());
        }
        if let Some(mib) = self.max_binding_mib {
            opts.max_storage_binding = Some(mib.max(1).saturating_mul(1 << 20));
        }
        Ok(opts)
    }

    /// Opens the chosen adapter.
    pub fn context(&self) -> Result<Context, XentError> {
        Context::new_blocking(self.options()?)
    }
}

/// `xent info`.
pub fn info(args: &DeviceArgs) -> Result<ExitCode, XentError> {
    println!(
        "fast CPU path: {} ({} threads; {} the best this CPU has)",
        xent::cpu::isa(),
        rayon::current_num_threads(),
        xent::cpu::Isa::detected()
    );
    println!(
        "storage types: {} (16-bit as u32 pairs with integer conversions: every adapter; f32 arithmetic inside)",
        xent::Elem::ALL.map(|e| e.short()).join(", ")
    );
    let opts = args.options()?;
    let adapters = pollster::block_on(xent::list_adapters(&opts));
    if adapters.is_empty() {
        return Err(XentError::NoAdapter(
            "none visible; install mesa-vulkan-drivers libvulkan1 for lavapipe".into(),
        ));
    }
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & xent::context::WANTED_FEATURES;
        println!("[{i}] {}", info.name);
        let rows: Vec<(&str, String)> = vec![
            ("backend", format!("{:?}", info.backend)),
            ("device type", format!("{:?}", info.device_type)),
            ("driver", format!("{} {}", info.driver, info.driver_info)),
            ("features used", format!("{features:?}")),
            (
                "subgroup size",
                format!("{}..={}", info.subgroup_min_size, info.subgroup_max_size),
            ),
            (
                "max storage binding",
                mib(limits.max_storage_buffer_binding_size),
            ),
            ("max buffer", mib(limits.max_buffer_size)),
            (
                "workgroups per dim",
                limits.max_compute_workgroups_per_dimension.to_string(),
            ),
            (
                "invocations / workgroup",
                limits.max_compute_invocations_per_workgroup.to_string(),
            ),
            (
                "workgroup storage",
                format!("{} KiB", limits.max_compute_workgroup_storage_size / 1024),
            ),
        ];
        for (k, v) in rows {
            println!("    {k:<24} {v}");
        }
        let o = ContextOptions {
            use_subgroups: true,
            ..opts.clone()
        };
        match pollster::block_on(Context::from_adapter(adapter, &o)) {
            Ok(ctx) => {
                println!("    {:<24} {:?}", "reduction path", ctx.reduce_path());
                let cap = ctx
                    .loop_cap()
                    .map_or("none seen".to_string(), |c| format!("{c} iterations"));
                println!("    {:<24} {cap}", "loop cap (probed)");
            }
            Err(e) => println!("    could not open a device: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

/// Parses `4096x32000` (also `4096×32000`).
pub fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("shape `{s}`: expected ROWSxCOLS, e.g. 4096x32000"))?;
    let a = a.trim().parse().map_err(|e| format!("shape `{s}`: {e}"))?;
    let b: usize = b.trim().parse().map_err(|e| format!("shape `{s}`: {e}"))?;
    if b == 0 {
        return Err(format!("shape `{s}`: rows need at least one column"));
    }
    Ok((a, b))
}

/// Milliseconds of `f`, and its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

/// A progress bar on stderr, hidden when stderr is not a terminal (CI).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Prints a table with a header and right-aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("{}", s.join("  "));
    };
    line(header.iter().map(|s| s.to_string()).collect());
    println!(
        "{}",
        width
            .iter()
            .map(|&w| "-".repeat(w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in rows {
        line(r.clone());
    }
}
