//! The softmax family against the CPU reference: named geometries and awkward values on every backend
//! (`backends.rs`), chunking, the loop cap, bad input, determinism, and a property test over random
//! shapes on the GPU contexts.

use proptest::prelude::*;
use xent::{Context, GpuMatrix, XentError, reference};

use super::backends::{Backend, backends, check_family};
use super::common::{
    PROB, Rng, assert_close, contexts, describe, random, small_binding_contexts, to_f64,
};

#[test]
fn single_class() {
    for b in backends() {
        check_family(&b, &random(1, 5, 1, -3.0, 3.0), 1, "N=1");
    }
}

#[test]
fn cols_not_a_multiple_of_workgroup() {
    for b in backends() {
        check_family(&b, &random(2, 9, 257, -5.0, 5.0), 257, "N=257");
        check_family(&b, &random(3, 33, 10, -5.0, 5.0), 10, "N=10");
    }
}

#[test]
fn row_wider_than_workgroup() {
    for b in backends() {
        check_family(&b, &random(4, 3, 4099, -8.0, 8.0), 4099, "N=4099");
    }
}

#[test]
fn row_of_2_pow_20() {
    for b in backends() {
        check_family(&b, &random(5, 2, 1 << 20, -10.0, 10.0), 1 << 20, "N=2^20");
    }
}

#[test]
fn empty_batch() {
    for ctx in contexts() {
        let x = GpuMatrix::from_slice(ctx, &[], 0, 7).unwrap();
        assert_eq!(ctx.softmax(&x).unwrap().shape(), (0, 7));
        assert!(
            ctx.logsumexp(&x)
                .unwrap()
                .read_blocking(ctx)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn huge_logits() {
    for b in backends() {
        let mut x = random(6, 6, 300, -1e4, 1e4);
        x[5] = 1e4;
        x[301] = -1e4;
        check_family(&b, &x, 300, "±1e4");
    }
}

#[test]
fn masks_and_non_finite_rows() {
    let cols = 300;
    let mut x = random(7, 6, cols, -4.0, 4.0);
    let ninf = f32::NEG_INFINITY;
    for j in (0..cols).step_by(3) {
        x[j] = ninf; // row 0: a −inf mask on every third class
    }
    x[cols..2 * cols].fill(ninf); // row 1: all −inf
    x[2 * cols + 17] = f32::NAN; // row 2: one NaN
    x[3 * cols + 200] = f32::INFINITY; // row 3: +inf
    x[4 * cols..5 * cols].fill(ninf); // row 4: one finite logit among −inf
    x[4 * cols + 123] = 2.5;
    for ctx in contexts() {
        check_family(&Backend::Gpu(ctx), &x, cols, "masks/NaN/inf");
        // The documented edge cases, spelled out.
        let lse = ctx.logsumexp_host(&x, cols).unwrap();
        assert_eq!(lse[1], ninf, "all −inf row: lse = −inf");
        assert!(lse[2].is_nan(), "NaN row: lse = NaN");
        assert_eq!(lse[3], f32::INFINITY, "+inf row: lse = +inf");
        let p = ctx.softmax_host(&x, cols).unwrap();
        assert!(
            p[cols..2 * cols].iter().all(|v| v.is_nan()),
            "all −inf row: softmax NaN"
        );
        assert_eq!(p[4 * cols + 123], 1.0);
        assert_eq!(p[0], 0.0, "−inf mask: probability 0");
    }
}

/// n·N past the 128 MiB binding limit of lavapipe/llvmpipe: the host splits rows into chunks. N = 1001
/// makes chunk starts unaligned, so the binding offset rounds down and the kernel shifts.
#[test]
fn matrix_past_binding_limit_is_chunked() {
    let cols = 1001;
    for ctx in contexts() {
        let limit = ctx.limits().max_storage_buffer_binding_size;
        let n = (limit / 4 / cols as u64 + 7) as usize;
        if (n * cols * 4) as u64 > ctx.limits().max_buffer_size {
            eprintln!(
                "{}: binding limit {limit} too large to cross here; skipped",
                describe(ctx)
            );
            continue;
        }
        let x = random(8, n, cols, -6.0, 6.0);
        let got = ctx.softmax_host(&x, cols).unwrap();
        // Compare the rows on both sides of every chunk boundary and a sample elsewhere.
        let want = reference::softmax(&x, cols);
        for i in (0..n).step_by(97).chain(n - 10..n) {
            let r = i * cols..(i + 1) * cols;
            assert_close(
                &format!("row {i} of {n}×{cols}"),
                &got[r.clone()],
                &to_f64(&want[r]),
                PROB,
            );
        }
    }
}

/// Short rows whose length is not a multiple of 4 go to the narrow kernels on a lane-per-row adapter,
/// PR = 4 / gcd(N, 4) rows to a lane, and the rows left over (n mod PR) to the row kernel: every such
/// length, batches smaller than a pack, with a remainder and without, and rows that are masked, NaN,
/// +inf or ±1e4 inside the packs.
#[test]
fn narrow_rows_every_length_and_remainder() {
    for ctx in contexts() {
        for cols in 1..=17 {
            for n in [1, 2, 3, 4, 5, 8, 67] {
                let mut x = random(100 + cols as u64, n, cols, -6.0, 6.0);
                if n >= 5 {
                    x[cols..2 * cols].fill(f32::NEG_INFINITY); // row 1: all −inf
                    x[2 * cols + cols / 2] = f32::NAN; // row 2: one NaN
                    x[3 * cols] = f32::INFINITY; // row 3: +inf
                    x[4 * cols] = 1e4; // row 4: ±1e4
                    x[4 * cols + cols - 1] = -1e4;
                }
                if n == 67 {
                    x[66 * cols] = f32::NEG_INFINITY; // a −inf mask in the last row
                }
                check_family(
                    &Backend::Gpu(ctx),
                    &x,
                    cols,
                    &format!("narrow N={cols}, n={n}"),
                );
            }
        }
    }
}

/// Narrow rows cut into many chunks: every chunk starts on a pack boundary.
#[test]
fn narrow_rows_in_many_small_chunks() {
    for ctx in small_binding_contexts(4096) {
        for cols in [3, 6, 7, 10] {
            check_family(
                &Backend::Gpu(&ctx),
                &random(12 + cols as u64, 1001, cols, -5.0, 5.0),
                cols,
                &format!("4 KiB bindings, narrow N={cols}"),
            );
        }
    }
}

/// A lowered binding limit (4 KiB) cuts small data into many chunks with shifted starts.
#[test]
fn many_small_chunks() {
    for ctx in small_binding_contexts(4096) {
        check_family(
            &Backend::Gpu(&ctx),
            &random(9, 40, 333, -5.0, 5.0),
            333,
            "4 KiB bindings, N=333",
        );
        check_family(
            &Backend::Gpu(&ctx),
            &random(10, 300, 3, -5.0, 5.0),
            3,
            "4 KiB bindings, N=3",
        );
    }
}

#[test]
fn row_too_wide_for_one_binding_is_an_error() {
    for ctx in small_binding_contexts(4096) {
        let x = GpuMatrix::from_slice(&ctx, &vec![0.0; 2 * 2000], 2, 2000).unwrap();
        let err = ctx.softmax(&x).unwrap_err();
        assert!(matches!(err, XentError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("max_storage_buffer_binding_size"),
            "{err}"
        );
    }
}

/// On an adapter with a loop cap, a row whose walk would cross it is refused (never wrong numbers);
/// elsewhere it is computed and checked.
#[test]
fn row_past_loop_cap_is_refused_or_right() {
    // Not a multiple of 4 (the scalar walk): 2 passes × ceil(N / 256) ≈ 78k iterations per lane,
    // past the cap (xent keeps half of it as margin).
    let cols = 10_000_001;
    for ctx in contexts() {
        if cols as u64 * 4 > ctx.limits().max_storage_buffer_binding_size {
            continue;
        }
        let x = random(11, 1, cols, -3.0, 3.0);
        match (ctx.loop_cap(), ctx.softmax_host(&x, cols)) {
            (Some(_), Err(XentError::TooLarge { needed, .. })) => assert!(needed.contains("loop")),
            (None, Ok(p)) => {
                assert_close("N=10M", &p, &to_f64(&reference::softmax(&x, cols)), PROB)
            }
            (cap, r) => panic!(
                "{}: cap {cap:?} gave {:?}",
                describe(ctx),
                r.map(|v| v.len())
            ),
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    for ctx in contexts() {
        assert!(matches!(
            GpuMatrix::from_slice(ctx, &[1.0; 5], 2, 3),
            Err(XentError::LengthMismatch { .. })
        ));
        assert!(matches!(
            ctx.softmax_host(&[1.0; 5], 0),
            Err(XentError::InvalidShape(_))
        ));
        assert!(matches!(
            ctx.softmax_host(&[1.0; 5], 3),
            Err(XentError::LengthMismatch { .. })
        ));
        let a = GpuMatrix::from_slice(ctx, &[1.0; 6], 2, 3).unwrap();
        let b = GpuMatrix::from_slice(ctx, &[1.0; 6], 3, 2).unwrap();
        assert!(matches!(
            ctx.softmax_backward(&a, &b),
            Err(XentError::ShapeMismatch { .. })
        ));
        let huge = GpuMatrix::zeros(ctx, 1 << 20, 1 << 20);
        assert!(matches!(huge, Err(XentError::TooLarge { .. })), "{huge:?}");
    }
}

#[test]
fn identical_run_to_run() {
    let x = random(12, 17, 5000, -20.0, 20.0);
    for ctx in contexts() {
        let a = ctx.log_softmax_host(&x, 5000).unwrap();
        let b = ctx.log_softmax_host(&x, 5000).unwrap();
        assert!(
            a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()),
            "{}",
            describe(ctx)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_match_reference(n in 0usize..40, cols in 1usize..3000, scale in 0.1f32..300.0, seed in any::<u64>()) {
        let x = Rng::new(seed).vec(n * cols, -scale, scale);
        for ctx in contexts() {
            if n == 0 { continue; }
            check_family(&Backend::Gpu(ctx), &x, cols, &format!("{n}×{cols} ±{scale}"));
        }
    }
}

/// `.ci/run` sets XENT_REQUIRE_BACKENDS=vulkan,gl: the suite must have run on both software adapters.
#[test]
fn adapters_required_by_ci_are_present() {
    let Ok(required) = std::env::var("XENT_REQUIRE_BACKENDS") else {
        eprintln!(
            "xent tests: XENT_REQUIRE_BACKENDS unset; ran on {} context(s)",
            contexts().len()
        );
        return;
    };
    for backend in required.split(',').filter(|b| !b.is_empty()) {
        let found = contexts()
            .iter()
            .any(|c| format!("{:?}", c.adapter().backend).eq_ignore_ascii_case(backend));
        assert!(
            found,
            "XENT_REQUIRE_BACKENDS names {backend}, but no such adapter ran the tests"
        );
    }
}

/// One context serves several threads at once (pipelines built once, shared).
#[test]
fn context_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Context>();
    send_sync::<GpuMatrix>();
    for ctx in contexts() {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    let cols = 300 + t as usize;
                    let x = random(100 + t, 9, cols, -6.0, 6.0);
                    let got = ctx.softmax_host(&x, cols).unwrap();
                    assert_close(
                        &format!("thread {t} on {}", describe(ctx)),
                        &got,
                        &to_f64(&reference::softmax(&x, cols)),
                        PROB,
                    );
                });
            }
        });
    }
}

/// The GPU geometry (8 elements per lane, rows up to 2,048 floats per workgroup kept in workgroup
/// memory between passes) on whatever adapter is here, so a CPU driver checks it too.
#[test]
fn gpu_geometry_with_row_cache() {
    for ctx in super::common::gpu_geometry_contexts() {
        check_family(
            &Backend::Gpu(&ctx),
            &random(20, 40, 10, -5.0, 5.0),
            10,
            "GPU geometry N=10 (cached)",
        );
        check_family(
            &Backend::Gpu(&ctx),
            &random(21, 9, 1000, -5.0, 5.0),
            1000,
            "GPU geometry N=1000 (cached)",
        );
        check_family(
            &Backend::Gpu(&ctx),
            &random(22, 5, 3001, -5.0, 5.0),
            3001,
            "GPU geometry N=3001 (not cached)",
        );
        check_family(
            &Backend::Gpu(&ctx),
            &random(23, 3, 70_000, -5.0, 5.0),
            70_000,
            "GPU geometry N=70000",
        );
        // The copy kernel (the benchmarks' roofline) walks rows the same way: an exact copy.
        for (n, cols) in [(40, 10), (5, 3001), (3, 70_000)] {
            let x = random(24, n, cols, -5.0, 5.0);
            let xm = GpuMatrix::from_slice(&ctx, &x, n, cols).unwrap();
            let out = GpuMatrix::zeros(&ctx, n, cols).unwrap();
            ctx.copy_rows_into(&xm, &out).unwrap();
            assert_eq!(
                out.read_blocking(&ctx).unwrap(),
                x,
                "GPU geometry copy {n}x{cols}"
            );
        }
    }
}
