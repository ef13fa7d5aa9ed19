//! The pipeline cache (one compute pipeline per [`PipelineKey`], built on first use from the composed
//! WGSL) and the start-up probe of the adapter's loop cap.

use super::Context;
use crate::error::{Result, XentError};
use crate::shaders::{Elems, Kernel, ReducePath};

/// Loop iterations the start-up probe asks one invocation to run (above Mesa 22's cap of 65,535).
const PROBE_ITERATIONS: u32 = 100_000;

/// A pipeline's identity: everything its WGSL source and override constants depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct PipelineKey {
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
    /// The element type at each `#matrix` binding.
    elems: Elems,
}

impl Context {
    /// Runs one invocation of a counting loop and reads how far it got.
    pub(super) fn probe_loop_cap(&self) -> Result<Option<u32>> {
        let out = self.create_buffer(
            "xent.probe.out",
            4,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let params = self.uniform_buffer("xent.probe.params", &[PROBE_ITERATIONS, 0, 0, 0])?;
        let pipeline = self.pipeline(Kernel::LoopProbe, 0, 0, 1, 0, &Elems::F32)?;
        let bind = self.bind_group(
            &pipeline,
            &[params.as_entire_binding(), out.as_entire_binding()],
        )?;
        let mut encoder = self.encoder("xent.probe");
        super::dispatch(&mut encoder, "xent.probe", &pipeline, &bind, [1, 1, 1]);
        self.submit(encoder)?;
        let counted: Vec<u32> = pollster::block_on(self.read_buffer(&out, 0, 4))?;
        let counted = counted[0];
        Ok((counted < PROBE_ITERATIONS).then_some(counted))
    }

    /// The cached pipeline of `kernel` for this context's reduction path, specialised on the `MODE` and
    /// `FLAGS` overrides (where the kernel has them) and the vector width `vw` (1 or 4), built on
    /// first use, with the element types `elems` at its `#matrix` bindings.
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        mode: u32,
        flags: u32,
        vw: u32,
        cols: u32,
        elems: &Elems,
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
            elems: *elems,
        };
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let walk = self.geometry.walk;
        let composed =
            crate::shaders::compose_kernel(kernel, self.reduce_path, walk, vw, cols, flags, elems)
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
