//! Where xent follows PyTorch's rules of input, on every backend alike: any finite class weight
//! (negative ones too, as PyTorch's own tests draw them from [−9, 9)), a negative `ignore_index` with
//! probability targets, and labels that the device cannot hold refused everywhere.

use xent::cpu::{self, CpuTargets};
use xent::{CrossEntropyOptions, GpuLabels, GpuMatrix, Reduction, Targets, XentError};

use super::backends::{backends, check_ce};
use super::common::{Rng, contexts};
use super::cross_entropy::gen_case;

#[test]
fn negative_class_weights_match_the_reference_on_every_backend() {
    let mut ran = 0;
    for (combo, reduction) in [
        (0, Reduction::Mean),
        (0, Reduction::Sum),
        (0, Reduction::None),
        (1, Reduction::Mean),
        (16, Reduction::Mean), // labels with smoothing 0.1: Σ_j w_j enters
    ] {
        let mut case = gen_case(41, 37, 11, combo);
        case.opts.reduction = reduction;
        case.opts.weight = Some(Rng::new(5).vec(11, -9.0, 9.0));
        let what = format!("negative weights, combo {combo} {reduction:?}");
        for b in backends() {
            let out = check_ce(&b, &case, &what);
            if combo != 1 && reduction == Reduction::Mean {
                // PyTorch's denominator: Σ w[y_i], whatever its sign.
                let l = case.labels.as_ref().unwrap();
                let w = case.opts.weight.as_ref().unwrap();
                let want: f64 = l.iter().map(|&y| f64::from(w[y as usize])).sum();
                assert!((f64::from(out.denominator) - want).abs() < 1e-4, "{what}");
            }
        }
        ran += 1;
    }
    assert_eq!(ran, 5);
}

#[test]
fn probability_targets_take_a_negative_ignore_index_and_refuse_a_class() {
    let z = [0.5f32, -1.0, 2.0, 0.0, 0.0, 1.0];
    let p = [0.2f32, 0.3, 0.5, 1.0, 0.0, 0.0];
    for (ignore_index, ok) in [(-100, true), (-1, true), (0, false), (2, false)] {
        let opts = CrossEntropyOptions {
            ignore_index,
            ..Default::default()
        };
        let r = cpu::cross_entropy(&z, 3, CpuTargets::Probs(&p), &opts, None);
        assert_eq!(r.is_ok(), ok, "cpu, ignore_index {ignore_index}");
        for ctx in contexts() {
            let zm = GpuMatrix::from_slice(ctx, &z, 2, 3).unwrap();
            let pm = GpuMatrix::from_slice(ctx, &p, 2, 3).unwrap();
            let r = ctx.cross_entropy_fwd_bwd(&zm, Targets::Probs(&pm), &opts);
            assert_eq!(r.is_ok(), ok, "gpu, ignore_index {ignore_index}");
            if let Err(e) = r {
                assert!(matches!(e, XentError::InvalidArgument(_)), "{e}");
            }
        }
    }
}

#[test]
fn an_ignored_label_outside_i32_is_refused_on_every_backend() {
    let big = 1i64 << 40;
    let opts = CrossEntropyOptions {
        ignore_index: big,
        ..Default::default()
    };
    let z = [0.5f32, -1.0, 2.0, 0.0, 0.0, 1.0];
    let e = cpu::cross_entropy(&z, 3, CpuTargets::Labels(&[big, 0]), &opts, None).unwrap_err();
    assert!(e.to_string().contains("i32"), "{e}");
    for ctx in contexts() {
        let e = GpuLabels::from_slice(ctx, &[big, 0]).unwrap_err();
        assert!(e.to_string().contains("i32"), "{e}");
    }
}
