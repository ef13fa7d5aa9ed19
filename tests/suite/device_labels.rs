//! Labels that live only on the device (u32, i32, int64 in a caller's buffer): the bits of host
//! labels, the mean's denominator computed on the device with the host's bits, and the
//! NaN-and-status contract for bad labels.

use xent::cpu::{self, CpuTargets};
use xent::{
    Context, CrossEntropyOptions, CrossEntropyOutput, GpuLabels, GpuMatrix, LabelType, Reduction,
    Targets, XentError,
};

use super::common::{contexts, describe, random, same_bits};

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// `labels` in a caller's buffer of type `ty`, `pad` bytes in (a multiple of the storage offset
/// alignment), with a few bytes of junk around them.
fn device_labels(ctx: &Context, labels: &[i64], ty: LabelType, pad: u64) -> GpuLabels {
    let words: Vec<u32> = match ty {
        LabelType::I32 | LabelType::U32 => labels.iter().map(|&l| l as u32).collect(),
        LabelType::I64 => labels
            .iter()
            .flat_map(|&l| [l as u32, ((l as u64) >> 32) as u32])
            .collect(),
    };
    let bytes = pad + words.len() as u64 * 4 + 16;
    let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller labels"),
        size: bytes,
        usage: USAGE,
        mapped_at_creation: false,
    });
    let mut all = vec![0xdead_beefu32; (bytes / 4) as usize];
    all[(pad / 4) as usize..][..words.len()].copy_from_slice(&words);
    ctx.queue()
        .write_buffer(&buf, 0, bytemuck::cast_slice(&all));
    GpuLabels::from_buffer(ctx, buf, pad, labels.len(), ty).unwrap()
}

/// Everything a call leaves, read back: rows, stats, gradient.
fn outputs(ctx: &Context, out: &CrossEntropyOutput) -> Vec<Vec<f32>> {
    let mut v = vec![
        out.rows.read_blocking(ctx).unwrap(),
        out.stats.read_blocking(ctx).unwrap(),
    ];
    if let Some(g) = &out.grad {
        v.push(g.read_blocking(ctx).unwrap());
    }
    v
}

fn option_sets(cols: usize) -> Vec<(&'static str, CrossEntropyOptions)> {
    let d = CrossEntropyOptions::default();
    // Weights whose sums are not f32 values (0.1), negative ones, and a spread of magnitudes whose
    // sums f64 would not hold exactly.
    let w: Vec<f32> = (0..cols)
        .map(|j| match j % 5 {
            0 => 0.1,
            1 => 2.5,
            2 => -0.7,
            3 => 1e-30,
            _ => 3e6,
        })
        .collect();
    vec![
        ("default", d.clone()),
        (
            "weights, class ignore_index, grad_output",
            CrossEntropyOptions {
                weight: Some(w.clone()),
                ignore_index: (cols as i64 - 1).min(2),
                grad_output: 0.37,
                ..d.clone()
            },
        ),
        (
            "tiny weights (subnormal scale)",
            CrossEntropyOptions {
                weight: Some(vec![1e-38; cols]),
                grad_output: 1e-10,
                ..d.clone()
            },
        ),
        (
            "sum, smoothing",
            CrossEntropyOptions {
                reduction: Reduction::Sum,
                label_smoothing: 0.1,
                weight: Some(w),
                ..d.clone()
            },
        ),
        (
            "none",
            CrossEntropyOptions {
                reduction: Reduction::None,
                ..d
            },
        ),
    ]
}

#[test]
fn device_only_labels_give_the_bits_of_host_labels() {
    // 70,000 rows: 18 blocks of ce_denom, many workgroups adding into the batch's limbs.
    let shapes = [
        (1, 1),
        (37, 5),
        (300, 10),
        (64, 1000),
        (5000, 7),
        (3, 4099),
        (70_000, 3),
    ];
    let mut compared = 0;
    for ctx in contexts() {
        for (si, &(n, cols)) in shapes.iter().enumerate() {
            let z = GpuMatrix::from_slice(ctx, &random(si as u64, n, cols, -6.0, 6.0), n, cols)
                .unwrap();
            for (name, opts) in option_sets(cols) {
                // Every seventh row ignored, the rest classes.
                let labels: Vec<i64> = (0..n)
                    .map(|i| match i % 7 {
                        3 => opts.ignore_index,
                        _ => ((i * 13 + 5) % cols) as i64,
                    })
                    .collect();
                let host = GpuLabels::from_slice(ctx, &labels).unwrap();
                let want_fwd = ctx
                    .cross_entropy(&z, Targets::Labels(&host), &opts)
                    .unwrap();
                let want = ctx
                    .cross_entropy_fwd_bwd(&z, Targets::Labels(&host), &opts)
                    .unwrap();
                let (want_fwd, want) = (outputs(ctx, &want_fwd), outputs(ctx, &want));
                // The CPU path's denominator: the same exact sum, the same bits.
                let cpu_out = cpu::cross_entropy(
                    &z.read_blocking(ctx).unwrap(),
                    cols,
                    CpuTargets::Labels(&labels),
                    &opts,
                    None,
                )
                .unwrap();
                assert_eq!(
                    cpu_out.denominator.to_bits(),
                    want[1][1].to_bits(),
                    "{} {name} {n}x{cols}: CPU and GPU denominators",
                    describe(ctx)
                );
                for (ty, pad) in [
                    (LabelType::I32, 0),
                    (LabelType::U32, 256),
                    (LabelType::I64, 512),
                ] {
                    if ty == LabelType::U32 && labels.iter().any(|&l| l < 0) {
                        continue; // −100 is no u32 (as a u32 it is a bad label: tested below)
                    }
                    let dev = device_labels(ctx, &labels, ty, pad);
                    let got_fwd = ctx.cross_entropy(&z, Targets::Labels(&dev), &opts).unwrap();
                    got_fwd.check_blocking(ctx).unwrap();
                    let got = ctx
                        .cross_entropy_fwd_bwd(&z, Targets::Labels(&dev), &opts)
                        .unwrap();
                    // Recorded into a caller's encoder: the same bits again.
                    let mut encoder = ctx.device().create_command_encoder(&Default::default());
                    let rec = ctx
                        .recorder(&mut encoder)
                        .cross_entropy_fwd_bwd(&z, Targets::Labels(&dev), &opts)
                        .unwrap();
                    ctx.queue().submit([encoder.finish()]);
                    for (what, a, b) in [
                        ("loss only", &want_fwd, outputs(ctx, &got_fwd)),
                        ("fwd+bwd", &want, outputs(ctx, &got)),
                        ("recorded", &want, outputs(ctx, &rec)),
                    ] {
                        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                            // stats: the batch numbers and the status; [4], the device's scale,
                            // is written for device-only labels only.
                            let (x, y) = if k == 1 {
                                (&[&x[..4], &x[5..]].concat(), &[&y[..4], &y[5..]].concat())
                            } else {
                                (x, y)
                            };
                            assert!(
                                same_bits(x, y),
                                "{} {name} {n}x{cols} {ty:?} {what}: output {k} differs",
                                describe(ctx)
                            );
                        }
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 0, "no adapter");
    println!("device-only labels: {compared} comparisons bit-identical to host labels");
}

#[test]
fn bad_device_labels_give_nan_rows_and_name_the_first() {
    let (n, cols) = (9, 5);
    for ctx in contexts() {
        let z = GpuMatrix::from_slice(ctx, &random(7, n, cols, -3.0, 3.0), n, cols).unwrap();
        // (type, labels, first bad row, its label as reported)
        let cases: [(LabelType, Vec<i64>, usize, i64); 4] = [
            (LabelType::I32, vec![0, 1, 2, 5, 4, -1, 3, -100, 0], 3, 5),
            (LabelType::I32, vec![0, 1, 2, 3, 4, 0, -7, -100, 0], 6, -7),
            // int64 whose high word is neither 0 nor all ones.
            (
                LabelType::I64,
                vec![0, 1, (1 << 32) + 2, 3, 4, 0, 1, 2, 3],
                2,
                (1 << 32) + 2,
            ),
            // u32 past i32: 2³¹.
            (
                LabelType::U32,
                vec![0, 1, 2, 3, 4, 0, 1, 1 << 31, 3],
                7,
                1 << 31,
            ),
        ];
        for (ty, labels, row, label) in cases {
            let dev = device_labels(ctx, &labels, ty, 0);
            let opts = CrossEntropyOptions::default();
            let out = ctx
                .cross_entropy_fwd_bwd(&z, Targets::Labels(&dev), &opts)
                .unwrap();
            let e = out.read_stats_blocking(ctx).unwrap_err();
            assert!(
                matches!(e, XentError::LabelOutOfRange { row: r, label: l, classes: 5, ignore_index: -100 } if r == row && l == label),
                "{} {ty:?}: {e}",
                describe(ctx)
            );
            assert!(matches!(
                out.check_blocking(ctx),
                Err(XentError::LabelOutOfRange { .. })
            ));
            assert!(out.read_loss(ctx).is_err());
            // Bad rows: NaN loss; the other rows' losses as if those were ignored (the same
            // denominator: bad rows are not counted); the whole gradient NaN (the scale is).
            let bad: Vec<bool> = labels
                .iter()
                .map(|&l| l != -100 && !(0..cols as i64).contains(&l))
                .collect();
            let fixed: Vec<i64> = labels
                .iter()
                .zip(&bad)
                .map(|(&l, &b)| if b { -100 } else { l })
                .collect();
            let want = ctx
                .cross_entropy_fwd_bwd(
                    &z,
                    Targets::Labels(&GpuLabels::from_slice(ctx, &fixed).unwrap()),
                    &opts,
                )
                .unwrap();
            let (rows, grad) = (
                out.read_row_column(ctx, 0).unwrap(),
                out.grad.as_ref().unwrap().read_blocking(ctx).unwrap(),
            );
            let (want_rows, want_grad) = (
                want.read_row_column(ctx, 0).unwrap(),
                want.grad.as_ref().unwrap().read_blocking(ctx).unwrap(),
            );
            assert!(want_grad.iter().all(|v| v.is_finite()));
            for i in 0..n {
                // Ignored rows keep their gradient of exactly 0; every other row is NaN.
                let g = &grad[i * cols..][..cols];
                if labels[i] == -100 {
                    assert!(g.iter().all(|&v| v == 0.0), "ignored row {i}");
                } else {
                    assert!(g.iter().all(|v| v.is_nan()), "row {i}: the gradient is NaN");
                }
                if bad[i] {
                    assert!(rows[i].is_nan(), "row {i}");
                } else {
                    assert_eq!(rows[i].to_bits(), want_rows[i].to_bits(), "row {i}");
                }
            }
            // The batch loss is NaN, never a plausible number.
            assert!(out.stats.read_blocking(ctx).unwrap()[0].is_nan());
        }
    }
}

#[test]
fn caller_label_buffers_are_checked() {
    for ctx in contexts() {
        let make = |size, usage| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("caller labels"),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let e = GpuLabels::from_buffer(
            ctx,
            make(64, wgpu::BufferUsages::COPY_DST),
            0,
            4,
            LabelType::I32,
        )
        .unwrap_err();
        assert!(e.to_string().contains("STORAGE"), "{e}");
        let e = GpuLabels::from_buffer(ctx, make(1024, USAGE), 4, 4, LabelType::I32).unwrap_err();
        assert!(e.to_string().contains("multiple of"), "{e}");
        let e = GpuLabels::from_buffer(ctx, make(64, USAGE), 0, 9, LabelType::I64).unwrap_err();
        assert!(
            matches!(
                e,
                XentError::LengthMismatch {
                    expected: 72,
                    got: 64,
                    ..
                }
            ),
            "{e}"
        );
        // Rows that do not match the logits: refused before anything is recorded.
        let z = GpuMatrix::from_slice(ctx, &[0.0; 6], 2, 3).unwrap();
        let l = GpuLabels::from_buffer(ctx, make(64, USAGE), 0, 3, LabelType::U32).unwrap();
        let e = ctx
            .cross_entropy(&z, Targets::Labels(&l), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(
            matches!(
                e,
                XentError::LengthMismatch {
                    expected: 2,
                    got: 3,
                    ..
                }
            ),
            "{e}"
        );
        // An ignore_index outside i32 and an int64 label equal to it: a bad label on the device, as
        // the host refuses it.
        let far = (1i64 << 40) + 7;
        let z3 = GpuMatrix::from_slice(ctx, &[0.0; 9], 3, 3).unwrap();
        let buf = make(256, USAGE);
        ctx.queue()
            .write_buffer(&buf, 0, bytemuck::cast_slice(&[0i64, far, 7]));
        let l3 = GpuLabels::from_buffer(ctx, buf, 0, 3, LabelType::I64).unwrap();
        let opts = CrossEntropyOptions {
            ignore_index: far,
            ..Default::default()
        };
        let e = ctx
            .cross_entropy(&z3, Targets::Labels(&l3), &opts)
            .unwrap()
            .read_stats_blocking(ctx)
            .unwrap_err();
        assert!(
            matches!(e, XentError::LabelOutOfRange { row: 1, label, .. } if label == far),
            "{e}"
        );
        let host_far = GpuLabels::from_slice(ctx, &[0i64, 1, 2]).unwrap();
        assert!(xent::cross_entropy::check_labels(&host_far, 3, 3, far).is_ok());
        // Device-only labels have no host copy to check, and linear cross-entropy says why it
        // needs one.
        assert!(l.host().is_none());
        assert!(xent::cross_entropy::check_labels(&l, 3, 3, -100).is_err());
        println!("{}: caller label buffers checked", describe(ctx));
    }
}

/// A caller's buffer from another wgpu device: wgpu's validation error comes back as an error, no
/// panic, and nothing of the operation runs.
#[test]
fn caller_label_buffers_of_another_device_are_an_error() {
    let ctxs = contexts();
    let (Some(a), Some(b)) = (ctxs.first(), ctxs.get(1)) else {
        panic!("this test needs two contexts (XENT_REQUIRE_BACKENDS gives three)");
    };
    let buf = b.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("labels of another device"),
        size: 256,
        usage: USAGE,
        mapped_at_creation: false,
    });
    let labels = GpuLabels::from_buffer(a, buf, 0, 2, LabelType::I64).unwrap();
    let z = GpuMatrix::from_slice(a, &[0.0; 6], 2, 3).unwrap();
    let e = a
        .cross_entropy_fwd_bwd(
            &z,
            Targets::Labels(&labels),
            &CrossEntropyOptions::default(),
        )
        .unwrap_err();
    println!("{} with labels of {}: {e}", describe(a), describe(b));
    assert!(matches!(e, XentError::Gpu(_)), "{e}");
}
