//! The reference checked on its own: its closed-form gradients against central finite differences of
//! its losses, in f64, for every option combination.

use xent::reference::{self, RefTargets};
use xent::{CrossEntropyOptions, Reduction};

use super::common::Rng;

fn fd_check(
    logits: &[f32],
    cols: usize,
    labels: Option<&[i64]>,
    probs: Option<&[f32]>,
    opts: &CrossEntropyOptions,
) {
    let target = match (labels, probs) {
        (Some(l), _) => RefTargets::Labels(l),
        (_, Some(p)) => RefTargets::Probs(p),
        _ => unreachable!(),
    };
    let t = |_: Option<&[i64]>| target;
    let total = |z: &[f32]| {
        let r = reference::cross_entropy(z, cols, t(labels), opts);
        match opts.reduction {
            Reduction::None => r.row_loss.iter().sum::<f64>() * opts.grad_output as f64,
            _ => r.loss * opts.grad_output as f64,
        }
    };
    let grad = reference::cross_entropy(logits, cols, t(labels), opts).grad;
    let h = 1e-3f32;
    for k in 0..logits.len() {
        let (mut up, mut down) = (logits.to_vec(), logits.to_vec());
        up[k] += h;
        down[k] -= h;
        let fd = (total(&up) - total(&down)) / (up[k] as f64 - down[k] as f64);
        let err = (fd - grad[k]).abs();
        assert!(
            err <= 1e-5 + 1e-4 * grad[k].abs(),
            "{opts:?} index {k}: fd {fd} vs closed form {}",
            grad[k]
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let (n, cols) = (3, 5);
    let mut rng = Rng::new(2024);
    let z = rng.vec(n * cols, -2.0, 2.0);
    let labels = [1i64, -100, 4];
    let mut probs = rng.vec(n * cols, 0.0, 1.0);
    probs[3] = 0.0;
    let mut checked = 0;
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for weight in [None, Some(vec![0.5, 1.0, 2.0, 0.0, 1.5])] {
            for eps in [0.0, 0.2, 1.0] {
                for extras in [false, true] {
                    let opts = CrossEntropyOptions {
                        reduction: red,
                        weight: weight.clone(),
                        label_smoothing: eps,
                        z_loss: if extras { 0.01 } else { 0.0 },
                        softcap: extras.then_some(3.0),
                        grad_output: 0.7,
                        ..Default::default()
                    };
                    fd_check(&z, cols, Some(&labels), None, &opts);
                    fd_check(&z, cols, None, Some(&probs), &opts);
                    checked += 2;
                }
            }
        }
    }
    assert_eq!(checked, 72);
}

#[test]
fn softmax_backward_matches_finite_differences() {
    // d/dz of Σ_j g_j softmax(z)_j and of Σ_j g_j log_softmax(z)_j.
    let cols = 6;
    let mut rng = Rng::new(7);
    let z = rng.vec(cols, -3.0, 3.0);
    let g = rng.vec(cols, -1.0, 1.0);
    let p = reference::softmax(&z, cols);
    let lp = reference::log_softmax(&z, cols);
    let d_soft = reference::softmax_backward(&p, &g, cols);
    let d_log = reference::log_softmax_backward(&lp, &g, cols);
    let f = |z: &[f32], log: bool| -> f64 {
        let y = reference::row_log_softmax(z);
        y.iter()
            .zip(&g)
            .map(|(&l, &gj)| gj as f64 * if log { l } else { l.exp() })
            .sum()
    };
    for k in 0..cols {
        let (mut up, mut down) = (z.clone(), z.clone());
        up[k] += 1e-3;
        down[k] -= 1e-3;
        let dz = up[k] as f64 - down[k] as f64;
        let fd_soft = (f(&up, false) - f(&down, false)) / dz;
        let fd_log = (f(&up, true) - f(&down, true)) / dz;
        assert!(
            (fd_soft - d_soft[k] as f64).abs() < 1e-5,
            "softmax {k}: {fd_soft} vs {}",
            d_soft[k]
        );
        assert!(
            (fd_log - d_log[k] as f64).abs() < 1e-5,
            "log_softmax {k}: {fd_log} vs {}",
            d_log[k]
        );
    }
}

#[test]
fn reference_edge_cases_follow_pytorch() {
    let ninf = f32::NEG_INFINITY;
    assert_eq!(reference::row_logsumexp(&[ninf, ninf]), f64::NEG_INFINITY);
    assert_eq!(
        reference::row_logsumexp(&[f32::INFINITY, 0.0]),
        f64::INFINITY
    );
    assert!(reference::row_logsumexp(&[f32::NAN, 0.0]).is_nan());
    assert!(
        reference::softmax(&[ninf, ninf], 2)
            .iter()
            .all(|v| v.is_nan())
    );
    let lse = reference::row_logsumexp(&[1e4, 1e4]);
    assert!((lse - (1e4 + std::f64::consts::LN_2)).abs() < 1e-9);
}
