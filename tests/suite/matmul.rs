//! The matmul kernels and the trainer against the CPU reference.

use xent::data::Dataset;
use xent::train::{self, CpuTrainer, GpuTrainer, TrainConfig};
use xent::{Context, ContextOptions, GpuMatrix, reference};

use super::common::{
    Rng, Tol, assert_close, contexts, describe, gpu_geometry_contexts, open_contexts, random,
    same_bits, small_binding_contexts,
};

/// A sum of k products of values in [−1, 1] carries about k·2⁻²⁴ of rounding per term in the worst
/// case; 4·k·ε absolute (plus 1e-6) bounds what the chunked tile order gives.
fn mm_tol(k: usize) -> Tol {
    Tol {
        abs: 1e-6 + 4.0 * k as f64 * f32::EPSILON as f64,
        rel: 1e-5,
    }
}

fn check_shapes(ctx: &Context, n: usize, d: usize, c: usize, seed: u64) {
    let what = format!("n={n} d={d} N={c} on {}", describe(ctx));
    let mut rng = Rng::new(seed);
    let (x, w, b, g) = (
        rng.vec(n * d, -1.0, 1.0),
        rng.vec(d * c, -1.0, 1.0),
        rng.vec(c, -1.0, 1.0),
        rng.vec(n * c, -1.0, 1.0),
    );
    let xm = GpuMatrix::from_slice(ctx, &x, n, d).unwrap();
    let wm = GpuMatrix::from_slice(ctx, &w, d, c).unwrap();
    let bm = GpuMatrix::from_slice(ctx, &b, 1, c).unwrap();
    let gm = GpuMatrix::from_slice(ctx, &g, n, c).unwrap();
    let z = ctx
        .linear(&xm, &wm, Some(&bm))
        .unwrap()
        .read_blocking(ctx)
        .unwrap();
    assert_close(
        &format!("{what}: XW+b"),
        &z,
        &reference::linear(&x, &w, Some(&b), d, c),
        mm_tol(d),
    );
    let dw = ctx
        .weight_grad(&xm, &gm)
        .unwrap()
        .read_blocking(ctx)
        .unwrap();
    assert_close(
        &format!("{what}: XᵀG"),
        &dw,
        &reference::weight_grad(&x, &g, d, c),
        mm_tol(n),
    );
    let db = ctx.bias_grad(&gm).unwrap().read_blocking(ctx).unwrap();
    assert_close(
        &format!("{what}: 1ᵀG"),
        &db,
        &reference::bias_grad(&g, c),
        mm_tol(n),
    );
    let dx = ctx
        .input_grad(&gm, &wm)
        .unwrap()
        .read_blocking(ctx)
        .unwrap();
    assert_close(
        &format!("{what}: GWᵀ"),
        &dx,
        &reference::input_grad(&g, &w, d, c),
        mm_tol(c),
    );
}

#[test]
fn awkward_shapes() {
    for ctx in contexts() {
        for (i, &(n, d, c)) in [
            (1, 1, 1),
            (1, 37, 10),
            (67, 13, 129),
            (130, 64, 10),
            (3, 300, 2),
            (0, 5, 3),
        ]
        .iter()
        .enumerate()
        {
            check_shapes(ctx, n, d, c, i as u64);
        }
    }
}

/// n = 120,000 rows: the Xᵀ G reduction crosses the loop cap of lavapipe/llvmpipe and is split into
/// chunks added in order.
#[test]
fn long_reduction_over_rows() {
    for ctx in contexts() {
        check_shapes(ctx, 120_000, 3, 10, 42);
    }
}

/// Reductions along the output's rows past the loop cap of lavapipe/llvmpipe (about 30,000 steps a
/// dispatch) run in pieces, each after the first adding into C (the bias added once): 70,000
/// features in `X W`, 40,000 classes in `G Wᵀ`; 25,000 features stay in one dispatch with every
/// tile width.
#[test]
fn long_reductions_along_m_run_in_pieces() {
    for ctx in contexts() {
        check_shapes(ctx, 3, 70_000, 10, 43);
        check_shapes(ctx, 2, 25_000, 40, 44);
        check_shapes(ctx, 3, 5, 40_000, 45);
    }
}

/// A 4 KiB binding limit: the batch rows of every operand are split into many chunks.
#[test]
fn batch_rows_past_binding_limit() {
    for ctx in small_binding_contexts(4096) {
        check_shapes(&ctx, 301, 7, 9, 7);
    }
}

/// Output widths of each tile width (16, 32, 64 columns), and reductions over many rows into few
/// output tiles, which are split into slices (split-K) summed in order by `matmul_reduce`: a few on
/// CPU drivers, up to 512 workgroups' worth under the GPU geometry.
#[test]
fn tile_widths_and_split_reductions() {
    let shapes = [
        (4096, 30, 10),
        (700, 64, 20),
        (300, 5, 33),
        (129, 1, 1),
        (1000, 64, 17),
    ];
    for ctx in contexts() {
        for (i, &(n, d, c)) in shapes.iter().enumerate() {
            check_shapes(ctx, n, d, c, 100 + i as u64);
        }
    }
    for ctx in gpu_geometry_contexts() {
        for (i, &(n, d, c)) in shapes.iter().enumerate() {
            check_shapes(&ctx, n, d, c, 200 + i as u64);
        }
    }
}

/// Split-K inside chunks: a 64 KiB binding limit cuts the 5,000 rows of G into chunks of 1,638, each
/// split into slices under the GPU geometry; every chunk after the first is added into C by the
/// reduction (ACCUM). And the same product twice is bit-identical (fixed slice and chunk order).
#[test]
fn split_reductions_across_chunks_are_deterministic() {
    let ctxs = open_contexts(ContextOptions {
        max_storage_binding: Some(64 << 10),
        elements_per_lane: Some(8),
        ..ContextOptions::from_env()
    });
    for ctx in &ctxs {
        check_shapes(ctx, 5000, 3, 10, 9);
        let mut rng = Rng::new(10);
        let (n, d, c) = (5000, 3, 10);
        let xm = GpuMatrix::from_slice(ctx, &rng.vec(n * d, -1.0, 1.0), n, d).unwrap();
        let gm = GpuMatrix::from_slice(ctx, &rng.vec(n * c, -1.0, 1.0), n, c).unwrap();
        let first = ctx
            .weight_grad(&xm, &gm)
            .unwrap()
            .read_blocking(ctx)
            .unwrap();
        let second = ctx
            .weight_grad(&xm, &gm)
            .unwrap()
            .read_blocking(ctx)
            .unwrap();
        assert_eq!(
            first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            second.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "XᵀG run to run on {}",
            describe(ctx)
        );
    }
}

fn small_digits() -> (Dataset, Dataset) {
    xent::data::digits_split().unwrap()
}

/// GPU and CPU trainers from the same seed agree step for step on the first steps.
#[test]
fn gpu_and_cpu_training_agree_step_for_step() {
    let (train, _) = small_digits();
    let cfg = TrainConfig {
        batch_size: 50,
        ..TrainConfig::default()
    };
    let batches = train::epoch_batches(train.n, cfg.batch_size, cfg.seed, 0);
    for ctx in contexts() {
        let mut gpu = GpuTrainer::new(ctx, &train, None).unwrap();
        let mut cpu = CpuTrainer::new(&train).unwrap();
        for (s, idx) in batches.iter().take(5).enumerate() {
            gpu.step(idx, &cfg).unwrap();
            cpu.step(idx, &cfg).unwrap();
            let (w, b) = gpu.model().unwrap();
            // Each step adds at most a few ulp per weight; 1e-5 absolute after 5 steps with lr 0.5.
            let tol = Tol {
                abs: 1e-5 * (s + 1) as f64,
                rel: 1e-4,
            };
            assert_close(
                &format!("W after step {s} on {}", describe(ctx)),
                &w,
                &cpu.w.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                tol,
            );
            assert_close(
                &format!("b after step {s}"),
                &b,
                &cpu.b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                tol,
            );
        }
    }
}

#[test]
fn digits_default_run_reaches_95_percent() {
    let (train, test) = small_digits();
    let cfg = TrainConfig::default();
    for ctx in contexts() {
        let out = train::train_gpu(ctx, &train, Some(&test), &cfg, |_| {}).unwrap();
        let last = out.epochs.last().unwrap();
        let acc = last.test_accuracy.unwrap();
        eprintln!(
            "xent tests: digits default run on {}: loss {:.4}, test accuracy {acc:.4}",
            describe(ctx),
            last.loss
        );
        assert!(acc >= 0.95, "test accuracy {acc}");
        assert!(last.loss < out.epochs[0].loss);
    }
}

#[test]
fn full_batch_and_cpu_trainer() {
    let (train, test) = small_digits();
    let cfg = TrainConfig {
        batch_size: 0,
        epochs: 3,
        momentum: 0.0,
        ..TrainConfig::default()
    };
    let cpu =
        train::train_host(train::CpuPath::Reference, &train, Some(&test), &cfg, |_| {}).unwrap();
    assert_eq!(cpu.epochs.len(), 3);
    for ctx in contexts() {
        let gpu = train::train_gpu(ctx, &train, Some(&test), &cfg, |_| {}).unwrap();
        let tol = Tol {
            abs: 1e-4,
            rel: 1e-3,
        };
        let want: Vec<f64> = cpu.weights.iter().map(|&v| v as f64).collect();
        assert_close(
            &format!("full-batch W on {}", describe(ctx)),
            &gpu.weights,
            &want,
            tol,
        );
    }
}

/// Bad training input is an error before anything runs: a minibatch index past the training set (GPU
/// and CPU trainers), a test label out of range, test features of the wrong length.
#[test]
fn trainers_refuse_bad_indices_and_bad_test_sets() {
    let (train, test) = small_digits();
    let cfg = TrainConfig::default();
    let past = [0, train.n as u32];
    let mut cpu = CpuTrainer::new(&train).unwrap();
    assert!(matches!(
        cpu.step(&past, &cfg),
        Err(xent::XentError::InvalidArgument(_))
    ));
    let mut bad_label = test.clone();
    bad_label.labels[3] = train.classes as i64;
    let mut short = test.clone();
    short.features.pop();
    for ctx in contexts() {
        let mut gpu = GpuTrainer::new(ctx, &train, None).unwrap();
        assert!(matches!(
            gpu.step(&past, &cfg),
            Err(xent::XentError::InvalidArgument(_))
        ));
        assert!(matches!(
            GpuTrainer::new(ctx, &train, Some(&bad_label)),
            Err(xent::XentError::LabelOutOfRange { row: 3, .. })
        ));
        assert!(matches!(
            train::train_gpu(ctx, &train, Some(&short), &cfg, |_| {}),
            Err(xent::XentError::LengthMismatch { .. })
        ));
    }
    assert!(matches!(
        train::train_host(
            train::CpuPath::Reference,
            &train,
            Some(&bad_label),
            &cfg,
            |_| {}
        ),
        Err(xent::XentError::LabelOutOfRange { row: 3, .. })
    ));
}

/// Weights (or their gradient) larger than one storage binding: a clear `TooLarge`, not a wgpu
/// validation error.
#[test]
fn weights_past_the_binding_limit_are_refused() {
    for ctx in small_binding_contexts(4096) {
        let (n, d, c) = (8, 64, 20); // W: 5,120 bytes
        let xm = GpuMatrix::zeros(&ctx, n, d).unwrap();
        let wm = GpuMatrix::zeros(&ctx, d, c).unwrap();
        let gm = GpuMatrix::zeros(&ctx, n, c).unwrap();
        assert!(matches!(
            ctx.linear(&xm, &wm, None),
            Err(xent::XentError::TooLarge { .. })
        ));
        assert!(matches!(
            ctx.weight_grad(&xm, &gm),
            Err(xent::XentError::TooLarge { .. })
        ));
    }
}

/// CPU drivers run the matmul's direct walk (operands read straight from memory, no workgroup tiles),
/// GPUs the tiled one: the same products in the same order, so the same values. Compared on the
/// same adapters, one context with each geometry, on products without split-K (X W + b, G Wᵀ;
/// `Xᵀ G` is split into slices by the device geometry, so its bits differ between the two contexts
/// for that reason alone).
#[test]
fn the_direct_walk_gives_the_tiled_walks_values() {
    let tiled = gpu_geometry_contexts();
    let mut compared = 0;
    for (direct, tiled) in contexts().into_iter().zip(&tiled) {
        // The same adapter and reduction path, in the same order.
        assert_eq!(
            (
                &direct.adapter().name,
                direct.adapter().backend,
                direct.reduce_path()
            ),
            (
                &tiled.adapter().name,
                tiled.adapter().backend,
                tiled.reduce_path()
            )
        );
        if direct.adapter().device_type != wgpu::DeviceType::Cpu {
            println!(
                "{}: a GPU runs the tiled walk only; nothing to compare",
                describe(direct)
            );
            continue;
        }
        for &(n, d, c) in &[(64, 64, 10), (33, 70, 17), (5, 300, 129)] {
            let run = |ctx: &Context| {
                let x = GpuMatrix::from_slice(ctx, &random(1, n, d, -1.0, 1.0), n, d).unwrap();
                let w = GpuMatrix::from_slice(ctx, &random(2, d, c, -1.0, 1.0), d, c).unwrap();
                let b = GpuMatrix::from_slice(ctx, &random(3, 1, c, -1.0, 1.0), 1, c).unwrap();
                let g = GpuMatrix::from_slice(ctx, &random(4, n, c, -1.0, 1.0), n, c).unwrap();
                let z = ctx
                    .linear(&x, &w, Some(&b))
                    .unwrap()
                    .read_blocking(ctx)
                    .unwrap();
                let dx = ctx.input_grad(&g, &w).unwrap().read_blocking(ctx).unwrap();
                (z, dx)
            };
            let (a, b) = (run(direct), run(tiled));
            assert!(
                same_bits(&a.0, &b.0),
                "{} {n}x{d}x{c}: X W + b",
                describe(direct)
            );
            assert!(
                same_bits(&a.1, &b.1),
                "{} {n}x{d}x{c}: G Wᵀ",
                describe(direct)
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "no adapter");
}
