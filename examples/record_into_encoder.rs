//! xent inside a program's own wgpu pipeline: the program opens its own device, makes its own
//! buffers and runs its own compute pass (here it writes a batch of logits), then records xent's
//! softmax, fused cross-entropy (on its int64 labels, which never visit the host) and weight gradient
//! into the same command encoder, on its buffers, and submits once.
//!
//!     cargo run --example record_into_encoder

use xent::{Context, CrossEntropyOptions, GpuLabels, GpuMatrix, LabelType, Targets, XentError};

/// The program's own kernel: logits z[i] = 4·sin(i) (any producer of logits would do).
const MAKE_LOGITS: &str = "
@group(0) @binding(0) var<storage, read_write> z: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&z)) {
        z[id.x] = 4.0 * sin(f32(id.x));
    }
}";

fn main() -> Result<(), XentError> {
    let (n, c, d) = (256usize, 10usize, 16usize);
    // The program's device: the first adapter wgpu offers.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .next()
        .ok_or_else(|| XentError::NoAdapter("none visible".into()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| XentError::Gpu(e.to_string()))?;
    println!("device: {}", adapter.get_info().name);

    // Its buffers: logits written by its own pass, features for the weight gradient.
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label, bytes: usize| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    let (logits, probs, features, targets) = (
        buffer("logits", n * c * 4),
        buffer("probs", n * c * 4),
        buffer("x", n * d * 4),
        buffer("labels (int64)", n * 8),
    );
    // Class indices as PyTorch keeps them (int64); they never visit xent's host side.
    let y: Vec<i64> = (0..n as i64).map(|i| (i * 3) % c as i64).collect();
    queue.write_buffer(&targets, 0, bytemuck::cast_slice(&y));
    let x: Vec<f32> = (0..n * d)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect();
    queue.write_buffer(&features, 0, bytemuck::cast_slice(&x));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("make_logits"),
        source: wgpu::ShaderSource::Wgsl(MAKE_LOGITS.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("make_logits"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: logits.as_entire_binding(),
        }],
    });

    // xent on the same device, wrapping the program's buffers.
    let ctx = Context::from_device(device.clone(), queue.clone(), true)?;
    let z = GpuMatrix::from_buffer(&ctx, logits, n, c)?;
    let p = GpuMatrix::from_buffer(&ctx, probs, n, c)?;
    let xm = GpuMatrix::from_buffer(&ctx, features, n, d)?;
    // Device-only labels: the mean's denominator and the labels' check run on the device.
    let labels = GpuLabels::from_buffer(&ctx, targets, 0, n, LabelType::I64)?;
    let dw = GpuMatrix::zeros(&ctx, d, c)?;

    // One encoder: the program's pass, then xent's operations; one submission.
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups((n * c).div_ceil(64) as u32, 1, 1);
    }
    let mut rec = ctx.recorder(&mut encoder);
    rec.softmax_into(&z, &p)?;
    let ce = rec.cross_entropy_fwd_bwd(
        &z,
        Targets::Labels(&labels),
        &CrossEntropyOptions::default(),
    )?;
    rec.weight_grad_into(&xm, ce.grad.as_ref().expect("a gradient"), &dw)?;
    queue.submit([encoder.finish()]);

    // Read back and check against the CPU reference.
    let zs = z.read_blocking(&ctx)?;
    let probs = p.read_blocking(&ctx)?;
    let want = xent::reference::softmax(&zs, c);
    let worst = probs
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // A bad label would come back here as XentError::LabelOutOfRange (its row NaN).
    let stats = ce.read_stats_blocking(&ctx)?;
    let loss = stats.loss;
    let dw = dw.read_blocking(&ctx)?;
    println!("softmax of the program's logits: max |error| against the reference {worst:.2e}");
    println!(
        "mean cross-entropy {loss:.6} over {} labelled rows (denominator from the device); dW[0][0..3] = {:?}",
        stats.denominator,
        &dw[..3]
    );
    if worst > 1e-5 || !loss.is_finite() {
        return Err(XentError::InvalidArgument(format!(
            "unexpected result: {worst} {loss}"
        )));
    }
    println!("ok: one submission for the program's pass and xent's three operations");
    Ok(())
}
