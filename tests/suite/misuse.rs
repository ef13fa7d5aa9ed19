//! Misuse of the library gets an `XentError`, never a panic nor wrong numbers: matrices of another
//! context, lying `.npy` headers, out-of-range reads; and bits that do not depend on the host.

use std::path::PathBuf;

use xent::{
    Context, ContextOptions, CrossEntropyOptions, GpuLabels, GpuMatrix, Targets, XentError, npy,
};

use super::common::{Rng, contexts, open_contexts, random};

/// Two contexts on the first adapter (the shared ones are all on different adapters or paths).
fn two_contexts() -> Option<(Context, Context)> {
    let mut a = open_contexts(ContextOptions::from_env()).into_iter();
    let mut b = open_contexts(ContextOptions::from_env()).into_iter();
    Some((a.next()?, b.next()?))
}

fn wrong(r: Result<impl std::fmt::Debug, XentError>, what: &str) {
    match r {
        Err(XentError::WrongContext { .. }) => {}
        other => panic!("{what}: expected WrongContext, got {other:?}"),
    }
}

#[test]
fn matrices_of_another_context_are_refused() {
    let Some((a, b)) = two_contexts() else {
        eprintln!("xent tests: no adapter; two-context test SKIPPED");
        return;
    };
    let x = Rng::new(3).vec(12, -2.0, 2.0);
    let za = GpuMatrix::from_slice(&a, &x, 3, 4).unwrap();
    let zb = GpuMatrix::from_slice(&b, &[0.0; 12], 3, 4).unwrap();
    let la = GpuLabels::from_slice(&a, &[0i64, 1, 2]).unwrap();
    let opts = CrossEntropyOptions::default();
    // Every family of operation, and the readback.
    wrong(b.softmax(&za), "softmax");
    wrong(za.read_blocking(&b), "read");
    wrong(b.softmax_into(&zb, &za), "softmax into a foreign output");
    wrong(b.softmax_backward(&zb, &za), "softmax backward");
    wrong(b.copy_rows_into(&za, &zb), "copy");
    wrong(
        b.cross_entropy_fwd_bwd(&za, Targets::Labels(&la), &opts),
        "ce",
    );
    wrong(
        b.cross_entropy_fwd_bwd(&zb, Targets::Labels(&la), &opts),
        "ce with foreign labels",
    );
    wrong(
        b.cross_entropy_fwd_bwd_into(&zb, Targets::Probs(&zb), &opts, &za),
        "ce into a foreign gradient",
    );
    wrong(b.info_rows(&zb, Some(&za), false), "info rows");
    let wa = GpuMatrix::from_slice(&a, &[0.5; 8], 4, 2).unwrap();
    wrong(b.linear(&zb, &wa, None), "linear");
    wrong(b.weight_grad(&za, &zb), "weight grad");
    wrong(b.bias_grad(&za), "bias grad");
    // The output of the refused softmax_into was not touched; each context still works on its own.
    assert_eq!(zb.read_blocking(&b).unwrap(), vec![0.0; 12]);
    let p = a.softmax(&za).unwrap().read_blocking(&a).unwrap();
    assert!((p[0] + p[1] + p[2] + p[3] - 1.0).abs() < 1e-6);
}

fn npy_with_header(name: &str, dict: &str, data: &[u8]) -> PathBuf {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = std::env::temp_dir().join(format!("xent-npy-{name}-{}.npy", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn npy_headers_that_lie_are_errors() {
    let overflow = npy_with_header(
        "overflow",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808, 2), }",
        &[],
    );
    let e = npy::read_f32(&overflow).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    // The same lie with double quotes and a list: npyz parses both.
    for dict in [
        "{\"descr\": '<f4', 'fortran_order': False, \"shape\": (9223372036854775808, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [4294967296, 4294967296], }",
    ] {
        let p = npy_with_header("quoted", dict, &[]);
        assert!(npy::read_f32(&p).is_err(), "{dict}");
        std::fs::remove_file(p).unwrap();
    }
    let short = npy_with_header(
        "short",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
        &[0u8; 8],
    );
    assert!(npy::read_f32(&short).is_err());
    let labels = npy_with_header(
        "labels",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
        &[0u8; 16],
    );
    assert!(npy::read_labels(&labels).is_err());
    // A good one still reads.
    let good = npy_with_header(
        "good",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
        bytemuck::cast_slice(&[1.5f32, -2.0]),
    );
    assert_eq!(npy::read_f32(&good).unwrap(), (vec![1, 2], vec![1.5, -2.0]));
    // Writing a shape whose count overflows is an error, not a panic nor a lying file.
    let out = std::env::temp_dir().join(format!("xent-npy-w-{}.npy", std::process::id()));
    assert!(npy::write_f32(&out, &[usize::MAX, 2], &[]).is_err());
    for p in [overflow, short, labels, good] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn out_of_range_reads_are_errors() {
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap();
        let l = GpuLabels::from_slice(ctx, &[0i64, 1]).unwrap();
        let out = ctx
            .cross_entropy(&z, Targets::Labels(&l), &CrossEntropyOptions::default())
            .unwrap();
        assert_eq!(out.read_row_column(ctx, 3).unwrap().len(), 2);
        assert!(matches!(
            out.read_row_column(ctx, 4),
            Err(XentError::InvalidArgument(_))
        ));
        // 12 bytes are not whole u64s; past the end; unaligned.
        assert!(pollster::block_on(ctx.read_buffer::<u64>(z.buffer(), 0, 12)).is_err());
        assert!(pollster::block_on(ctx.read_buffer::<f32>(z.buffer(), 8, 16)).is_err());
        assert!(pollster::block_on(ctx.read_buffer::<u8>(z.buffer(), 1, 4)).is_err());
        let ok: Vec<f32> = pollster::block_on(ctx.read_buffer(z.buffer(), 4, 8)).unwrap();
        assert_eq!(ok, vec![2.0, 3.0]);
    }
}

/// Xᵀ G and 1ᵀ G of a tall batch (split-K slices) on a context opened by a thread that sees one CPU,
/// and on one opened by a thread that sees them all: the same bits (the slicing was once two
/// workgroups per host thread).
#[cfg(target_os = "linux")]
#[test]
fn weight_gradient_bits_do_not_depend_on_the_host_cpu_count() {
    let (n, d, c) = (4096, 16, 10);
    let mut rng = Rng::new(17);
    let x = rng.vec(n * d, -1.0, 1.0);
    let g = rng.vec(n * c, -1.0, 1.0);
    let run = |one_cpu: bool| {
        let (x, g) = (x.clone(), g.clone());
        std::thread::spawn(move || {
            if one_cpu {
                // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread only.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    assert_eq!(
                        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                        0
                    );
                }
                assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
            }
            open_contexts(ContextOptions::from_env())
                .iter()
                .map(|ctx| {
                    let xm = GpuMatrix::from_slice(ctx, &x, n, d).unwrap();
                    let gm = GpuMatrix::from_slice(ctx, &g, n, c).unwrap();
                    let dw = ctx
                        .weight_grad(&xm, &gm)
                        .unwrap()
                        .read_blocking(ctx)
                        .unwrap();
                    let db = ctx.bias_grad(&gm).unwrap().read_blocking(ctx).unwrap();
                    (dw, db)
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    };
    let (one, all) = (run(true), run(false));
    assert_eq!(one.len(), all.len());
    for ((dw1, db1), (dw, db)) in one.iter().zip(&all) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(dw1),
            bits(dw),
            "grad_weight bits changed with the CPU count"
        );
        assert_eq!(
            bits(db1),
            bits(db),
            "grad_bias bits changed with the CPU count"
        );
    }
}

/// A caller's buffer wrapped as a matrix: without STORAGE usage, or too small, it is refused with the
/// numbers; a right one is read and written in place.
#[test]
fn caller_buffers_are_checked_and_used_in_place() {
    for ctx in contexts() {
        let buffer = |bytes: u64, usage| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("caller"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let all = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let e = GpuMatrix::from_buffer(ctx, buffer(48, wgpu::BufferUsages::COPY_SRC), 3, 4)
            .unwrap_err();
        assert!(e.to_string().contains("STORAGE"), "{e}");
        let e = GpuMatrix::from_buffer(ctx, buffer(44, all), 3, 4).unwrap_err();
        assert!(
            matches!(
                e,
                XentError::LengthMismatch {
                    expected: 48,
                    got: 44,
                    ..
                }
            ),
            "{e}"
        );
        // A larger buffer is fine; the operation writes the caller's buffer in place.
        let (zb, pb) = (buffer(64, all), buffer(64, all));
        ctx.queue().write_buffer(
            &zb,
            0,
            bytemuck::cast_slice(&[
                0.0f32, 1.0, 2.0, 3.0, -1.0, 0.0, 1.0, 0.5, 9.0, 9.0, 9.0, 9.0,
            ]),
        );
        let z = GpuMatrix::from_buffer(ctx, zb, 3, 4).unwrap();
        let p = GpuMatrix::from_buffer(ctx, pb.clone(), 3, 4).unwrap();
        ctx.softmax_into(&z, &p).unwrap();
        let got: Vec<f32> = pollster::block_on(ctx.read_buffer(&pb, 0, 48)).unwrap();
        let want = xent::reference::softmax(&z.read_blocking(ctx).unwrap(), 4);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{got:?}"
        );
    }
}

/// Matrices at aligned offsets of caller buffers: the row kernels and the matmuls bind them where
/// they start and give the bits of the same matrices in buffers of their own; unaligned offsets and
/// ranges past the end are refused; an operand bound whole at an offset is refused by its operation;
/// an input and an output of one operation in one buffer is wgpu's validation error, returned as
/// `Err` (wgpu refuses a buffer bound read-only and read-write in one dispatch).
#[test]
fn caller_buffers_at_offsets() {
    for ctx in contexts() {
        let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
        let (n, c, d) = (37, 10, 6);
        let z = random(11, n, c, -4.0, 4.0);
        let x = random(12, n, d, -1.0, 1.0);
        let w = random(13, d, c, -1.0, 1.0);
        let slot = |bytes: usize| (bytes as u64).next_multiple_of(align);
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let arena = |label, size| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        // Inputs in one arena (after a first slot left free), the gradient in a second, the matmuls'
        // outputs in a third.
        let (oz, ox) = (align, align + slot(n * c * 4));
        let ow = ox + slot(n * d * 4);
        let inputs = arena("inputs", ow + slot(d * c * 4));
        let grads = arena("gradient", align + slot(n * c * 4));
        let (ozl, odw) = (2 * align, 2 * align + slot(n * c * 4));
        let outputs = arena("outputs", odw + slot(d * c * 4));
        ctx.queue()
            .write_buffer(&inputs, oz, bytemuck::cast_slice(&z));
        ctx.queue()
            .write_buffer(&inputs, ox, bytemuck::cast_slice(&x));
        ctx.queue()
            .write_buffer(&inputs, ow, bytemuck::cast_slice(&w));
        let at =
            |b: &wgpu::Buffer, o, r, k| GpuMatrix::from_buffer_at(ctx, b.clone(), o, r, k).unwrap();
        let (zm, xm, wm) = (
            at(&inputs, oz, n, c),
            at(&inputs, ox, n, d),
            at(&inputs, ow, d, c),
        );
        let gm = at(&grads, align, n, c);
        let (zlm, dwm) = (at(&outputs, ozl, n, c), at(&outputs, odw, d, c));
        let labels: Vec<i64> = (0..n as i64).map(|i| i % c as i64).collect();
        let labels = GpuLabels::from_slice(ctx, &labels).unwrap();
        let opts = CrossEntropyOptions::default();
        ctx.cross_entropy_fwd_bwd_into(&zm, Targets::Labels(&labels), &opts, &gm)
            .unwrap();
        ctx.linear_into(&xm, &wm, None, &zlm).unwrap();
        ctx.weight_grad_into(&xm, &gm, &dwm).unwrap();
        let p = ctx.softmax(&zm).unwrap();
        // The same in buffers of their own.
        let own = |v: &[f32], r, k| GpuMatrix::from_slice(ctx, v, r, k).unwrap();
        let (z2, x2, w2) = (own(&z, n, c), own(&x, n, d), own(&w, d, c));
        let g2 = ctx
            .cross_entropy_fwd_bwd(&z2, Targets::Labels(&labels), &opts)
            .unwrap()
            .grad
            .unwrap();
        let bits = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
        let same = super::common::same_bits;
        assert!(same(&bits(&gm), &bits(&g2)), "CE gradient at an offset");
        assert!(
            same(&bits(&p), &bits(&ctx.softmax(&z2).unwrap())),
            "softmax at an offset"
        );
        assert!(
            same(&bits(&zlm), &bits(&ctx.linear(&x2, &w2, None).unwrap())),
            "X W at offsets"
        );
        assert!(
            same(&bits(&dwm), &bits(&ctx.weight_grad(&x2, &g2).unwrap())),
            "Xᵀ G at offsets"
        );
        // Refused: unaligned, past the end, an operand bound whole, an input and output in one buffer.
        let e = GpuMatrix::from_buffer_at(ctx, inputs.clone(), 4, n, c).unwrap_err();
        assert!(e.to_string().contains("multiple of"), "{e}");
        let e = GpuMatrix::from_buffer_at(ctx, inputs.clone(), ow, d + 1000, c).unwrap_err();
        assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
        let lse = at(&outputs, ozl, n, 1);
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        let e = ctx
            .recorder(&mut enc)
            .logsumexp_into(&zm, &lse)
            .unwrap_err();
        assert!(e.to_string().contains("byte 0"), "{e}");
        let same_buffer_out = at(&inputs, 0, n, c);
        let e = ctx
            .linear_into(&xm, &wm, None, &same_buffer_out)
            .unwrap_err();
        assert!(matches!(e, XentError::Gpu(_)), "{e}");
    }
}
