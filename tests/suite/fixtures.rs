//! PyTorch's own kinds of cross_entropy cases (tests/fixtures/torch, made by make_fixtures.py with
//! torch on the CPU): the reference and every GPU context must agree with torch's float32 results.

use std::path::{Path, PathBuf};

use xent::{CrossEntropyOptions, npy};

use super::common::{Tol, assert_close, contexts, describe};
use super::cross_entropy::Case;

fn load_case(dir: &Path) -> (Case, Vec<f64>, Vec<f64>) {
    let opts_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("options.json")).unwrap()).unwrap();
    let (shape, logits) = npy::read_f32(&dir.join("logits.npy")).unwrap();
    let cols = shape[1];
    let weight = opts_json["has_weight"]
        .as_bool()
        .unwrap()
        .then(|| npy::read_f32(&dir.join("weight.npy")).unwrap().1);
    let opts = CrossEntropyOptions {
        weight,
        ignore_index: opts_json["ignore_index"].as_i64().unwrap(),
        reduction: opts_json["reduction"].as_str().unwrap().parse().unwrap(),
        label_smoothing: opts_json["label_smoothing"].as_f64().unwrap() as f32,
        ..Default::default()
    };
    let (labels, probs) = if opts_json["target"] == "labels" {
        (
            Some(npy::read_labels(&dir.join("labels.npy")).unwrap().1),
            None,
        )
    } else {
        (
            None,
            Some(npy::read_f32(&dir.join("targets.npy")).unwrap().1),
        )
    };
    let loss = npy::read_f32(&dir.join("loss.npy")).unwrap().1;
    let grad = npy::read_f32(&dir.join("grad.npy")).unwrap().1;
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
    (
        Case {
            logits,
            cols,
            labels,
            probs,
            opts,
        },
        f64s(loss),
        f64s(grad),
    )
}

fn case_dirs() -> Vec<PathBuf> {
    fixture_dirs("torch")
}

/// The case folders (those with an options.json) of `tests/fixtures/<set>`, sorted.
pub fn fixture_dirs(set: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("options.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// torch's float32 results carry their own rounding; 2e-6 absolute + 1e-5 relative (plus the ulp of
/// the 1e4 logits in the large-logit case) bounds the difference seen.
fn torch_tol(case: &Case) -> Tol {
    let scale = case
        .logits
        .iter()
        .filter(|v| v.is_finite())
        .fold(1f32, |a, &b| a.max(b.abs()));
    Tol {
        abs: 2e-6 + scale as f64 * 4.0 * f32::EPSILON as f64,
        rel: 1e-5,
    }
}

#[test]
fn reference_matches_pytorch() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 30, "fixtures missing: {}", dirs.len());
    for dir in &dirs {
        let (case, loss, grad) = load_case(dir);
        let r = case.reference();
        let got_loss: Vec<f32> = match case.opts.reduction {
            xent::Reduction::None => r.row_loss.iter().map(|&v| v as f32).collect(),
            _ => vec![r.loss as f32],
        };
        let name = dir.file_name().unwrap().to_string_lossy();
        assert_close(
            &format!("{name}: reference loss"),
            &got_loss,
            &loss,
            torch_tol(&case),
        );
        let got_grad: Vec<f32> = r.grad.iter().map(|&v| v as f32).collect();
        assert_close(
            &format!("{name}: reference grad"),
            &got_grad,
            &grad,
            torch_tol(&case),
        );
    }
}

#[test]
fn gpu_matches_pytorch() {
    let dirs = case_dirs();
    let mut worst = (0.0f64, String::new());
    for ctx in contexts() {
        for dir in &dirs {
            let (case, loss, grad) = load_case(dir);
            let name = format!(
                "{} on {}",
                dir.file_name().unwrap().to_string_lossy(),
                describe(ctx)
            );
            let (got_loss, got_grad, _, _) = case.run(ctx);
            assert_close(&format!("{name}: loss"), &got_loss, &loss, torch_tol(&case));
            assert_close(&format!("{name}: grad"), &got_grad, &grad, torch_tol(&case));
            for (g, w) in got_loss.iter().zip(&loss).chain(got_grad.iter().zip(&grad)) {
                let e = (*g as f64 - w).abs();
                if e.is_finite() && e > worst.0 {
                    worst = (e, name.clone());
                }
            }
        }
    }
    eprintln!(
        "xent tests: worst |GPU − torch| over {} fixtures: {:.3e} ({})",
        dirs.len(),
        worst.0,
        worst.1
    );
}
