//! The options of cross-entropy and their validation: GPU-free, shared by the GPU operations
//! ([`crate::cross_entropy`]), the fast CPU path ([`crate::cpu`]), the f64 reference
//! ([`crate::reference`]) and the CLI, so every backend accepts and refuses exactly the same input.

use crate::error::{Result, XentError};

/// How per-row losses become the reported loss, as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per row.
    None,
    /// The sum over rows.
    Sum,
    /// The sum divided by Σ w\[y_i\] over rows not ignored (labels), or by n (probability targets).
    #[default]
    Mean,
}

impl std::str::FromStr for Reduction {
    type Err = XentError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "sum" => Ok(Self::Sum),
            "mean" => Ok(Self::Mean),
            other => Err(XentError::InvalidArgument(format!(
                "reduction `{other}`: expected none, sum or mean"
            ))),
        }
    }
}

/// The options of `torch.nn.functional.cross_entropy`, plus the extras of the best fused kernels.
/// Every field is documented with its PyTorch meaning; [`CrossEntropyOptions::validate`] checks them.
#[derive(Clone, Debug)]
pub struct CrossEntropyOptions {
    /// Per-class weights `w` (length N, any finite value, as PyTorch). `None`: all ones. A negative
    /// weight flips the sign of its class's loss terms; with labels and `Reduction::Mean` the
    /// denominator is PyTorch's Σ w\[y_i\] over the rows not ignored, which can then be ≤ 0 (0 gives
    /// ±inf or NaN, as a division by zero does in PyTorch).
    pub weight: Option<Vec<f32>>,
    /// Rows whose label equals this contribute no loss and a zero gradient (labels only; PyTorch's
    /// default −100).
    pub ignore_index: i64,
    /// none | sum | mean.
    pub reduction: Reduction,
    /// ε in [0, 1]: the target becomes `(1−ε)·p + ε/N`.
    pub label_smoothing: f32,
    /// z-loss coefficient (PaLM, Liger): adds `z_loss · lse²` to each row that is not ignored.
    pub z_loss: f32,
    /// Logit soft-capping `c·tanh(z/c)` applied before everything else (Gemma 2). `None`: off.
    pub softcap: Option<f32>,
    /// The upstream gradient ∂L/∂loss (a scalar; 1 for a loss that is the objective). For
    /// `Reduction::None` it multiplies each row; see also
    /// [`crate::Context::cross_entropy_with_row_upstream`].
    pub grad_output: f32,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        Self {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: None,
            grad_output: 1.0,
        }
    }
}

impl CrossEntropyOptions {
    /// Checks every option against N classes; the messages name the bad value.
    pub fn validate(&self, classes: usize) -> Result<()> {
        if let Some(w) = &self.weight {
            if w.len() != classes {
                return Err(XentError::LengthMismatch {
                    what: "class weights",
                    expected: classes,
                    got: w.len(),
                });
            }
            if let Some((j, v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(XentError::InvalidArgument(format!(
                    "class weight {v} at class {j}: weights must be finite"
                )));
            }
        }
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(XentError::InvalidArgument(format!(
                "label_smoothing {eps} is outside [0, 1]"
            )));
        }
        if !self.z_loss.is_finite() || self.z_loss < 0.0 {
            return Err(XentError::InvalidArgument(format!(
                "z_loss {} must be finite and non-negative",
                self.z_loss
            )));
        }
        if let Some(c) = self.softcap
            && (!c.is_finite() || c <= 0.0)
        {
            return Err(XentError::InvalidArgument(format!(
                "softcap {c} must be finite and positive"
            )));
        }
        if !self.grad_output.is_finite() {
            return Err(XentError::InvalidArgument(format!(
                "grad_output {} is not finite",
                self.grad_output
            )));
        }
        Ok(())
    }

    /// [`CrossEntropyOptions::validate`]'s extra rule for probability targets: PyTorch refuses a
    /// non-negative `ignore_index` there ("ignore_index is not supported for floating point target");
    /// a negative one can match no class and is accepted.
    pub fn validate_for_probs(&self) -> Result<()> {
        if self.ignore_index >= 0 {
            return Err(XentError::InvalidArgument(format!(
                "ignore_index {} is not supported with probability targets (as PyTorch; only a \
                 negative ignore_index, such as the default -100, is accepted there)",
                self.ignore_index
            )));
        }
        Ok(())
    }

    /// Σ_j w_j (N without weights).
    pub(crate) fn weight_sum(&self, classes: usize) -> f32 {
        match &self.weight {
            Some(w) => w.iter().map(|&v| v as f64).sum::<f64>() as f32,
            None => classes as f32,
        }
    }
}

/// Every label must be a class in `[0, classes)` or `ignore_index`, and fit in i32 (the kernels use
/// labels as i32; a label equal to `ignore_index` outside i32 is refused on every backend,
/// not only where it would be narrowed). `labels` are i32 or i64 host values; the error names the
/// first bad row.
pub fn check_labels<L: Copy + Into<i64>>(
    labels: &[L],
    n: usize,
    classes: usize,
    ignore_index: i64,
) -> Result<()> {
    if labels.len() != n {
        return Err(XentError::LengthMismatch {
            what: "labels (one per row)",
            expected: n,
            got: labels.len(),
        });
    }
    for (row, &l) in labels.iter().enumerate() {
        let l: i64 = l.into();
        if (0..classes as i64).contains(&l) {
            continue;
        }
        if l != ignore_index {
            return Err(XentError::LabelOutOfRange {
                row,
                label: l,
                classes,
                ignore_index,
            });
        }
        if i32::try_from(l).is_err() {
            return Err(XentError::InvalidArgument(format!(
                "label {l} in row {row} does not fit in i32 (labels are i32 on the device)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_the_same_for_i32_and_i64() {
        assert!(check_labels(&[0i32, 2, -100], 3, 3, -100).is_ok());
        assert!(check_labels(&[0i64, 2, -100], 3, 3, -100).is_ok());
        let e = check_labels(&[0i64, 3], 2, 3, -100).unwrap_err();
        assert!(
            matches!(
                e,
                XentError::LabelOutOfRange {
                    row: 1,
                    label: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = check_labels(&[0i64], 2, 3, -100).unwrap_err();
        assert!(matches!(e, XentError::LengthMismatch { .. }), "{e}");
        // An ignored label past i32: refused everywhere, since the device could not hold it.
        let big = 1i64 << 40;
        let e = check_labels(&[big], 1, 3, big).unwrap_err();
        assert!(e.to_string().contains("does not fit in i32"), "{e}");
    }

    #[test]
    fn weights_any_finite_and_probs_refuse_a_class_ignore_index() {
        let o = CrossEntropyOptions {
            weight: Some(vec![-9.0, 0.0, 2.5]),
            ..Default::default()
        };
        assert!(o.validate(3).is_ok());
        let o = CrossEntropyOptions {
            weight: Some(vec![1.0, f32::INFINITY, 1.0]),
            ..Default::default()
        };
        assert!(o.validate(3).is_err());
        let probs = |ignore_index| {
            CrossEntropyOptions {
                ignore_index,
                ..Default::default()
            }
            .validate_for_probs()
        };
        assert!(probs(-100).is_ok() && probs(-1).is_ok());
        assert!(probs(0).is_err() && probs(7).is_err());
    }
}
