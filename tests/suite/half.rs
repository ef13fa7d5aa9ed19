//! f16 and bf16 storage on every context.
//!
//! The contract tested here: a kernel on 16-bit matrices computes exactly what it computes on f32
//! matrices holding the same (widened) values, and rounds each n×N output once, to nearest even;
//! f32 outputs (losses, log-sum-exp, statistics) are the f32 kernel's bits. Every launch takes the
//! same kernel (vector width, narrow variant) in every type, so for every shape the 16-bit output is
//! bit for bit `round(f32 output)`; against the f64 oracle that is within one unit in the last place
//! of the type plus the f32 kernel's own error.

use xent::{Context, CrossEntropyOptions, Elem, GpuLabels, GpuMatrix, Reduction, Targets};

use super::common::{
    Rng, contexts, describe, gpu_geometry_contexts, same_bits, small_binding_contexts,
};

const HALVES: [Elem; 2] = [Elem::F16, Elem::Bf16];

/// Logits for 16-bit tests: mostly moderate values, with −inf masks, +inf, NaN, values beyond f16's
/// range (±7e4, ±1e5: ±inf in f16) and subnormals of both types (f16's from 6e-8, bf16's below
/// 1.2e-38), each in a few rows only so that most rows stay finite.
fn logits(seed: u64, n: usize, cols: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let mut x = r.vec(n * cols, -6.0, 6.0);
    for row in 0..n {
        let k = r.below(9);
        let at = row * cols + r.below(cols);
        x[at] = match k {
            0 => f32::NEG_INFINITY,
            1 if row % 7 == 3 => f32::INFINITY,
            2 if row % 11 == 5 => f32::NAN,
            3 => 7.0e4 * if row % 2 == 0 { 1.0 } else { -1.0 },
            4 => 1.0e5,
            5 => 3.0e-6,
            6 => 1.0e-39,
            _ => x[at],
        };
    }
    x
}

fn round_all(e: Elem, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| e.round(x)).collect()
}

/// Everything one context computes on a matrix of `x` in type `e`: softmax, log-softmax, lse, both
/// backwards (from the forward's own outputs), info rows, CE fwd+bwd (new buffer and in place).
struct Outputs {
    softmax: Vec<f32>,
    log_softmax: Vec<f32>,
    lse: Vec<f32>,
    softmax_bwd: Vec<f32>,
    log_softmax_bwd: Vec<f32>,
    info: Vec<f32>,
    ce_rows: Vec<f32>,
    ce_grad: Vec<f32>,
    ce_in_place: Vec<f32>,
    copy: Vec<f32>,
}

fn run(
    ctx: &Context,
    x: &[f32],
    g: &[f32],
    labels: &[i64],
    n: usize,
    cols: usize,
    e: Elem,
) -> Outputs {
    let m = |v: &[f32]| GpuMatrix::from_slice_as(ctx, v, n, cols, e).unwrap();
    let z = m(x);
    let (p, lse) = ctx.softmax_with_lse(&z).unwrap();
    let lp = ctx.log_softmax(&z).unwrap();
    let gm = m(g);
    // The backwards read the forward's own outputs (already in type e) and a 16-bit upstream.
    let dp = ctx.softmax_backward(&p, &gm).unwrap();
    let dlp = ctx.log_softmax_backward(&lp, &gm).unwrap();
    let info = ctx.info_rows(&z, Some(&p), false).unwrap();
    let lab = GpuLabels::from_slice(ctx, labels).unwrap();
    let opts = CrossEntropyOptions {
        reduction: Reduction::Mean,
        label_smoothing: 0.05,
        ..Default::default()
    };
    let ce = ctx
        .cross_entropy_fwd_bwd(&z, Targets::Labels(&lab), &opts)
        .unwrap();
    let ce_grad = ce.grad.as_ref().unwrap();
    assert_eq!(ce_grad.elem(), e, "the gradient takes the logits' type");
    let in_place = ctx
        .cross_entropy_fwd_bwd_in_place(m(x), Targets::Labels(&lab), &opts)
        .unwrap();
    let copy = GpuMatrix::zeros_as(ctx, n, cols, e).unwrap();
    ctx.copy_rows_into(&z, &copy).unwrap();
    for out in [&p, &lp, &dp, &dlp] {
        assert_eq!(out.elem(), e);
    }
    let r = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
    Outputs {
        softmax: r(&p),
        log_softmax: r(&lp),
        lse: r(&lse),
        softmax_bwd: r(&dp),
        log_softmax_bwd: r(&dlp),
        info: r(&info),
        ce_rows: r(&ce.rows),
        ce_grad: r(ce_grad),
        ce_in_place: r(in_place.grad.as_ref().unwrap()),
        copy: r(&copy),
    }
}

const SHAPES: &[(usize, usize)] = &[
    (0, 5),
    (9, 1),
    (37, 3),
    (6, 16),
    (5, 257),
    (3, 1000),
    (2, 4099),
    (1, 32001),
];

#[test]
fn sixteen_bit_storage_is_the_f32_kernel_rounded_once() {
    let mut checked = 0;
    for ctx in contexts() {
        checked += rounded_once_on(ctx, SHAPES);
    }
    // Rows past the binding limit (64 KiB bindings: many chunks, each 16-bit binding at its own
    // aligned offset), and the GPU geometry (many lanes per row, rows kept in workgroup memory).
    let past_the_limit = [(200, 257), (40, 1000), (3500, 5), (300, 64)];
    for ctx in &small_binding_contexts(64 * 1024) {
        checked += rounded_once_on(ctx, &past_the_limit);
    }
    for ctx in &gpu_geometry_contexts() {
        checked += rounded_once_on(ctx, &SHAPES[..SHAPES.len() - 1]);
    }
    assert!(checked >= SHAPES.len() * 2 * 3, "checked {checked}");
}

/// The body of [`sixteen_bit_storage_is_the_f32_kernel_rounded_once`] on one context; the cases run.
fn rounded_once_on(ctx: &Context, shapes: &[(usize, usize)]) -> usize {
    let mut checked = 0;
    {
        for (s, &(n, cols)) in shapes.iter().enumerate() {
            let x = logits(100 + s as u64, n, cols);
            let g = Rng::new(200 + s as u64).vec(n * cols, -1.0, 1.0);
            let labels: Vec<i64> = (0..n).map(|i| ((i * 7) % cols) as i64).collect();
            for e in HALVES {
                let case = format!("{} {n}×{cols} {e}", describe(ctx));
                let xe = round_all(e, &x);
                let ge = round_all(e, &g);
                let h = run(ctx, &x, &g, &labels, n, cols, e);
                // The copy is exact: every value (NaN aside) survives the trip.
                assert!(same_bits(&h.copy, &xe), "{case}: copy");
                // The f32 kernel on the same values, its n×N outputs rounded once.
                let f = run(ctx, &xe, &ge, &labels, n, cols, Elem::F32);
                let same_rounded = |what: &str, half: &[f32], full: &[f32]| {
                    assert!(same_bits(half, &round_all(e, full)), "{case}: {what}");
                };
                same_rounded("softmax", &h.softmax, &f.softmax);
                same_rounded("log_softmax", &h.log_softmax, &f.log_softmax);
                assert!(same_bits(&h.lse, &f.lse), "{case}: lse");
                // The backwards read 16-bit forward outputs: run the f32 one on those same values.
                let fp = GpuMatrix::from_slice(ctx, &h.softmax, n, cols).unwrap();
                let flp = GpuMatrix::from_slice(ctx, &h.log_softmax, n, cols).unwrap();
                let fg = GpuMatrix::from_slice(ctx, &ge, n, cols).unwrap();
                let fdp = ctx
                    .softmax_backward(&fp, &fg)
                    .unwrap()
                    .read_blocking(ctx)
                    .unwrap();
                let fdlp = ctx
                    .log_softmax_backward(&flp, &fg)
                    .unwrap()
                    .read_blocking(ctx)
                    .unwrap();
                same_rounded("softmax_backward", &h.softmax_bwd, &fdp);
                same_rounded("log_softmax_backward", &h.log_softmax_bwd, &fdlp);
                let fz = GpuMatrix::from_slice(ctx, &xe, n, cols).unwrap();
                let finfo = ctx
                    .info_rows(&fz, Some(&fp), false)
                    .unwrap()
                    .read_blocking(ctx)
                    .unwrap();
                assert!(same_bits(&h.info, &finfo), "{case}: info rows");
                assert!(same_bits(&h.ce_rows, &f.ce_rows), "{case}: CE rows");
                same_rounded("CE gradient", &h.ce_grad, &f.ce_grad);
                same_rounded("CE gradient in place", &h.ce_in_place, &f.ce_grad);
                checked += 1;
            }
        }
    }
    checked
}

/// Rows that share a 4-byte word at their boundary (odd N) are written by different invocations:
/// each store must leave the other half alone. Random bit patterns (NaN excluded) copied through
/// every type pair must come back exactly, over many rows and across chunk boundaries.
#[test]
fn rows_sharing_a_word_are_race_free() {
    let shapes = [(40001, 1), (15000, 3), (640, 257), (3, 32001)];
    // 64 KiB bindings: the first three shapes cross many chunk boundaries (rows past the limit).
    let mut small = small_binding_contexts(64 * 1024);
    let mut checked = 0;
    let mut run_on = |ctx: &Context, widest: usize| {
        for (s, &(n, cols)) in shapes.iter().enumerate().filter(|(_, s)| s.1 <= widest) {
            for e in HALVES {
                let mut r = Rng::new(300 + s as u64);
                let bits: Vec<u16> = (0..n * cols)
                    .map(|_| {
                        loop {
                            let b = r.next_u64() as u16;
                            if !e.from_bits16(b).is_nan() {
                                break b;
                            }
                        }
                    })
                    .collect();
                let vals: Vec<f32> = bits.iter().map(|&b| e.from_bits16(b)).collect();
                let x = GpuMatrix::from_slice_as(ctx, &vals, n, cols, e).unwrap();
                let y = GpuMatrix::zeros_as(ctx, n, cols, e).unwrap();
                ctx.copy_rows_into(&x, &y).unwrap();
                let got = pollster::block_on(y.read_bits16(ctx)).unwrap();
                let bad = got.iter().zip(&bits).position(|(a, b)| a != b);
                assert!(
                    bad.is_none(),
                    "{} {n}×{cols} {e}: element {bad:?}",
                    describe(ctx)
                );
                // f32 → 16-bit stores round as the host does, and 16-bit → f32 widens exactly.
                let wide = GpuMatrix::zeros(ctx, n, cols).unwrap();
                ctx.copy_rows_into(&x, &wide).unwrap();
                assert!(same_bits(&wide.read_blocking(ctx).unwrap(), &vals));
                checked += 1;
            }
        }
    };
    for ctx in contexts() {
        run_on(ctx, usize::MAX);
    }
    for ctx in small.drain(..) {
        run_on(&ctx, 257);
    }
    assert!(checked >= 16);
}

/// The device's f32 → f16 / bf16 rounding against the `half` crate's, on values chosen around every
/// rounding decision: ties, the largest finite values and overflow, the subnormals and underflow,
/// signed zeros, infinities, NaN.
#[test]
fn device_rounding_matches_the_host() {
    let mut vals = vec![
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e5,
        3.0e38,
        f32::MAX,
        -f32::MAX,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        6.0e-8,
        5.96e-8,
        2.98e-8,
        2.9802322e-8,
        2.99e-8,
        6.1e-5,
        6.097e-5,
        1.0e-39,
        1.2e-38,
        9.2e-41,
        f32::MIN_POSITIVE,
        1e-45,
    ];
    let mut r = Rng::new(7);
    for _ in 0..4000 {
        vals.push(f32::from_bits(r.next_u64() as u32));
    }
    for _ in 0..4000 {
        vals.push(r.uniform(-7.0e4, 7.0e4) * 2f32.powi(r.below(60) as i32 - 50));
    }
    for ctx in contexts() {
        for e in HALVES {
            let n = vals.len();
            let x = GpuMatrix::from_slice(ctx, &vals, n, 1).unwrap();
            let y = GpuMatrix::zeros_as(ctx, n, 1, e).unwrap();
            ctx.copy_rows_into(&x, &y).unwrap();
            let got = pollster::block_on(y.read_bits16(ctx)).unwrap();
            for (i, (&g, &v)) in got.iter().zip(&vals).enumerate() {
                let want = e.bits16(v).unwrap();
                let ok = g == want || (v.is_nan() && e.from_bits16(g).is_nan());
                assert!(
                    ok,
                    "{} {e}: {v:e} ({i}) gave {g:#06x}, host {want:#06x}",
                    describe(ctx)
                );
            }
        }
    }
}

#[test]
fn sixteen_bit_matrices_are_refused_where_f32_is_needed() {
    for ctx in contexts() {
        let x = GpuMatrix::from_slice_as(ctx, &[1.0; 12], 3, 4, Elem::Bf16).unwrap();
        let g = GpuMatrix::from_slice(ctx, &[1.0; 6], 3, 2).unwrap();
        // Products write f32 (no 16-bit accumulator anywhere).
        let dw = GpuMatrix::zeros_as(ctx, 4, 2, Elem::Bf16).unwrap();
        let e = ctx.weight_grad_into(&x, &g, &dw).unwrap_err().to_string();
        assert!(e.contains("bf16") && e.contains("f32"), "{e}");
        // Operands bound whole (per-row upstream gradients, log-sum-exp outputs) are f32.
        let up = GpuMatrix::from_slice_as(ctx, &[1.0; 3], 3, 1, Elem::F16).unwrap();
        let lab = GpuLabels::from_slice(ctx, &[0i64, 1, 2]).unwrap();
        let opts = CrossEntropyOptions {
            reduction: Reduction::None,
            ..Default::default()
        };
        let e = ctx
            .cross_entropy_with_row_upstream(&x, Targets::Labels(&lab), &opts, &up)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f16") && e.contains("f32"), "{e}");
        assert!(x.read_f16_blocking(ctx).is_err());
        assert_eq!(x.read_bf16_blocking(ctx).unwrap().len(), 12);
        let f = GpuMatrix::from_slice(ctx, &[1.0; 12], 3, 4).unwrap();
        assert!(pollster::block_on(f.read_bits16(ctx)).is_err());
        // A caller buffer too small for a 16-bit matrix's whole words is refused.
        let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let e = GpuMatrix::from_buffer_as(ctx, buf, 0, 1, 3, Elem::F16).unwrap_err();
        assert!(e.to_string().contains("expected 8"), "{e}");
    }
}

/// The matmuls read 16-bit A and B widened: the same bits as the f32 product of the same values
/// (X W + b, Xᵀ G split-K included, 1ᵀ G, G Wᵀ), with odd widths so rows start mid-word.
#[test]
fn sixteen_bit_matmul_inputs_give_the_f32_products_bits() {
    for ctx in contexts() {
        for &(n, d, c) in &[(7usize, 13usize, 5usize), (4096, 16, 10), (33, 64, 3)] {
            for e in HALVES {
                let mut r = Rng::new(500 + n as u64);
                let x = round_all(e, &r.vec(n * d, -2.0, 2.0));
                let w = round_all(e, &r.vec(d * c, -1.0, 1.0));
                let g = round_all(e, &r.vec(n * c, -0.5, 0.5));
                let b = r.vec(c, -1.0, 1.0);
                let (h, f) = (
                    |v: &[f32], rows, cols| {
                        GpuMatrix::from_slice_as(ctx, v, rows, cols, e).unwrap()
                    },
                    |v: &[f32], rows, cols| GpuMatrix::from_slice(ctx, v, rows, cols).unwrap(),
                );
                let bias = f(&b, 1, c);
                let read = |m: GpuMatrix| m.read_blocking(ctx).unwrap();
                let case = format!("{} {n}×{d}×{c} {e}", describe(ctx));
                let pairs = [
                    (
                        "X W + b",
                        read(ctx.linear(&h(&x, n, d), &h(&w, d, c), Some(&bias)).unwrap()),
                        read(ctx.linear(&f(&x, n, d), &f(&w, d, c), Some(&bias)).unwrap()),
                    ),
                    (
                        "Xᵀ G",
                        read(ctx.weight_grad(&h(&x, n, d), &h(&g, n, c)).unwrap()),
                        read(ctx.weight_grad(&f(&x, n, d), &f(&g, n, c)).unwrap()),
                    ),
                    (
                        "1ᵀ G",
                        read(ctx.bias_grad(&h(&g, n, c)).unwrap()),
                        read(ctx.bias_grad(&f(&g, n, c)).unwrap()),
                    ),
                    (
                        "G Wᵀ",
                        read(ctx.input_grad(&h(&g, n, c), &h(&w, d, c)).unwrap()),
                        read(ctx.input_grad(&f(&g, n, c), &f(&w, d, c)).unwrap()),
                    ),
                ];
                for (what, half, full) in pairs {
                    assert!(same_bits(&half, &full), "{case}: {what}");
                }
            }
        }
    }
}

/// The fused linear cross-entropy on 16-bit X and W (X widened once on the device, W read widened by
/// the matmuls; f32 accumulators and gradients): the bits of the call on f32 matrices holding the
/// same values, over several chunks; 16-bit gradient outputs and probability targets are refused up
/// front.
#[test]
fn fused_linear_cross_entropy_takes_sixteen_bit_inputs() {
    use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
    let (n, d, v) = (300usize, 24usize, 77usize);
    for ctx in contexts() {
        for e in HALVES {
            let mut r = Rng::new(900);
            let x = round_all(e, &r.vec(n * d, -1.0, 1.0));
            let w = round_all(e, &r.vec(v * d, -0.5, 0.5));
            let b = r.vec(v, -0.1, 0.1);
            let labels: Vec<i64> = (0..n)
                .map(|i| {
                    if i % 9 == 4 {
                        -100
                    } else {
                        ((i * 13) % v) as i64
                    }
                })
                .collect();
            let lab = GpuLabels::from_slice(ctx, &labels).unwrap();
            let bias = GpuMatrix::from_slice(ctx, &b, 1, v).unwrap();
            let opts = LinearCeOptions {
                budget_bytes: Some(128 * v as u64 * 4),
                ..Default::default()
            };
            let run = |xe: Elem, we: Elem| {
                let xm = GpuMatrix::from_slice_as(ctx, &x, n, d, xe).unwrap();
                let wm = GpuMatrix::from_slice_as(ctx, &w, v, d, we).unwrap();
                let (dx, dw, db) = (
                    GpuMatrix::zeros(ctx, n, d).unwrap(),
                    GpuMatrix::zeros(ctx, v, d).unwrap(),
                    GpuMatrix::zeros(ctx, 1, v).unwrap(),
                );
                let grads = GpuLinearGrads {
                    input: Some(&dx),
                    weight: Some(&dw),
                    bias: Some(&db),
                };
                let t = GpuTargets::Labels(&lab);
                let res = ctx
                    .linear_cross_entropy(&xm, &wm, Some(&bias), t, &opts, grads)
                    .unwrap();
                assert!(res.chunks > 1, "{} chunks", res.chunks);
                let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
                (res.loss, read(&dx), read(&dw), read(&db))
            };
            let f = run(Elem::F32, Elem::F32);
            for (xe, we) in [(e, e), (e, Elem::F32), (Elem::F32, e)] {
                let h = run(xe, we);
                let case = format!("{} X {xe} W {we}", describe(ctx));
                assert_eq!(h.0.to_bits(), f.0.to_bits(), "{case}: loss");
                assert!(same_bits(&h.1, &f.1), "{case}: dX");
                assert!(
                    same_bits(&h.2, &f.2) && same_bits(&h.3, &f.3),
                    "{case}: dW, db"
                );
            }
            let xm = GpuMatrix::from_slice_as(ctx, &x, n, d, e).unwrap();
            let wm = GpuMatrix::from_slice_as(ctx, &w, v, d, e).unwrap();
            let dx16 = GpuMatrix::zeros_as(ctx, n, d, e).unwrap();
            let grads = GpuLinearGrads {
                input: Some(&dx16),
                weight: None,
                bias: None,
            };
            let t = GpuTargets::Labels(&lab);
            let err = ctx
                .linear_cross_entropy(&xm, &wm, None, t, &opts, grads)
                .unwrap_err();
            assert!(err.to_string().contains("f32"), "{err}");
            let p16 = GpuMatrix::zeros_as(ctx, n, v, e).unwrap();
            let none = GpuLinearGrads {
                input: None,
                weight: None,
                bias: None,
            };
            let err = ctx
                .linear_cross_entropy(&xm, &wm, None, GpuTargets::Probs(&p16), &opts, none)
                .unwrap_err();
            assert!(err.to_string().contains("probability targets"), "{err}");
        }
    }
}

/// Cross-entropy's options on 16-bit logits (class weights, ignore_index, z-loss, soft-capping,
/// every reduction, probability targets in 16 bits, a per-row upstream): the f32 kernel's numbers on
/// the same values, the gradient rounded once; and outputs in f32 on request (an f32 `_into` output
/// of a 16-bit input holds the f32 kernel's values, unrounded).
#[test]
fn every_cross_entropy_option_and_f32_outputs_on_request() {
    for ctx in contexts() {
        for &(n, cols) in &[(37usize, 3usize), (9, 257), (4, 1000)] {
            let x = logits(700 + cols as u64, n, cols);
            let mut labels: Vec<i64> = (0..n).map(|i| ((i * 5) % cols) as i64).collect();
            labels[1] = -100;
            let mut r = Rng::new(701);
            let weight: Vec<f32> = r.vec(cols, -0.5, 2.0);
            let probs = r.vec(n * cols, 0.0, 0.2);
            let upstream = r.vec(n, -2.0, 2.0);
            let option_sets = [
                CrossEntropyOptions {
                    weight: Some(weight.clone()),
                    reduction: Reduction::Sum,
                    ..Default::default()
                },
                CrossEntropyOptions {
                    z_loss: 1e-3,
                    softcap: Some(5.0),
                    label_smoothing: 0.2,
                    ..Default::default()
                },
                CrossEntropyOptions {
                    reduction: Reduction::None,
                    weight: Some(weight.clone()),
                    ..Default::default()
                },
            ];
            for e in HALVES {
                let case = format!("{} {n}×{cols} {e}", describe(ctx));
                let xe = round_all(e, &x);
                let pe = round_all(e, &probs);
                let lab = GpuLabels::from_slice(ctx, &labels).unwrap();
                let up = GpuMatrix::from_slice(ctx, &upstream, n, 1).unwrap();
                // (rows, grad) of one call on logits and probability targets stored as `t`, the
                // gradient into a matrix of `out`.
                let call =
                    |t: Elem, out: Elem, opts: &CrossEntropyOptions, probs: bool, rowup: bool| {
                        let z = GpuMatrix::from_slice_as(ctx, &xe, n, cols, t).unwrap();
                        let pm = GpuMatrix::from_slice_as(ctx, &pe, n, cols, t).unwrap();
                        let targets = if probs {
                            Targets::Probs(&pm)
                        } else {
                            Targets::Labels(&lab)
                        };
                        let o = if rowup {
                            ctx.cross_entropy_with_row_upstream(&z, targets, opts, &up)
                                .unwrap()
                        } else {
                            let g = GpuMatrix::zeros_as(ctx, n, cols, out).unwrap();
                            let o = ctx
                                .cross_entropy_fwd_bwd_into(&z, targets, opts, &g)
                                .unwrap();
                            return (
                                o.rows.read_blocking(ctx).unwrap(),
                                g.read_blocking(ctx).unwrap(),
                            );
                        };
                        let g = o.grad.as_ref().unwrap().read_blocking(ctx).unwrap();
                        (o.rows.read_blocking(ctx).unwrap(), g)
                    };
                let mut runs: Vec<(String, CrossEntropyOptions, bool, bool)> = option_sets
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("options {i}"), o.clone(), false, false))
                    .collect();
                runs.push((
                    "probability targets".into(),
                    CrossEntropyOptions::default(),
                    true,
                    false,
                ));
                runs.push((
                    "per-row upstream".into(),
                    CrossEntropyOptions {
                        reduction: Reduction::None,
                        ..Default::default()
                    },
                    false,
                    true,
                ));
                for (what, opts, probs, rowup) in &runs {
                    let (hr, hg) = call(e, e, opts, *probs, *rowup);
                    let (fr, fg) = call(Elem::F32, Elem::F32, opts, *probs, *rowup);
                    assert!(same_bits(&hr, &fr), "{case}: {what}: rows");
                    assert!(
                        same_bits(&hg, &round_all(e, &fg)),
                        "{case}: {what}: gradient"
                    );
                    if !rowup {
                        // The gradient in f32 on request: the f32 kernel's values themselves.
                        let (_, wide) = call(e, Elem::F32, opts, *probs, false);
                        assert!(same_bits(&wide, &fg), "{case}: {what}: f32 gradient output");
                    }
                }
                let z = GpuMatrix::from_slice_as(ctx, &xe, n, cols, e).unwrap();
                let p32 = GpuMatrix::zeros(ctx, n, cols).unwrap();
                ctx.softmax_into(&z, &p32).unwrap();
                let zf = GpuMatrix::from_slice(ctx, &xe, n, cols).unwrap();
                let pf = ctx.softmax(&zf).unwrap().read_blocking(ctx).unwrap();
                assert!(
                    same_bits(&p32.read_blocking(ctx).unwrap(), &pf),
                    "{case}: f32 softmax output"
                );
            }
        }
    }
}

/// 16-bit operations recorded into a caller's encoder (one submission) give the calls' bits.
#[test]
fn recorded_sixteen_bit_operations_give_the_calls_bits() {
    for ctx in contexts() {
        let (n, cols) = (33, 257);
        let x = logits(1000, n, cols);
        let labels: Vec<i64> = (0..n).map(|i| (i % cols) as i64).collect();
        let lab = GpuLabels::from_slice(ctx, &labels).unwrap();
        let opts = CrossEntropyOptions::default();
        let z = GpuMatrix::from_slice_as(ctx, &x, n, cols, Elem::Bf16).unwrap();
        let (p_rec, g_rec) = (
            GpuMatrix::zeros_as(ctx, n, cols, Elem::Bf16).unwrap(),
            GpuMatrix::zeros_as(ctx, n, cols, Elem::F16).unwrap(),
        );
        let mut encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let out = {
            let mut rec = ctx.recorder(&mut encoder);
            rec.softmax_into(&z, &p_rec).unwrap();
            rec.cross_entropy_fwd_bwd_into(&z, Targets::Labels(&lab), &opts, &g_rec)
                .unwrap()
        };
        ctx.queue().submit([encoder.finish()]);
        let p_call = ctx.softmax(&z).unwrap();
        let g_call = GpuMatrix::zeros_as(ctx, n, cols, Elem::F16).unwrap();
        let call = ctx
            .cross_entropy_fwd_bwd_into(&z, Targets::Labels(&lab), &opts, &g_call)
            .unwrap();
        let read = |m: &GpuMatrix| m.read_blocking(ctx).unwrap();
        let case = describe(ctx);
        assert!(same_bits(&read(&p_rec), &read(&p_call)), "{case}: softmax");
        assert!(
            same_bits(&read(&g_rec), &read(&g_call)),
            "{case}: bf16 logits → f16 gradient"
        );
        assert!(
            same_bits(&read(&out.rows), &read(&call.rows)),
            "{case}: rows"
        );
    }
}
