//! Cross-entropy's plan: flags, passes, the row kernel's scalars, PyTorch's mean denominator and the
//! batch sums' slicing, decided from validated input before anything is allocated or encoded.

use super::{REDUCE_SLICE, flags};
use crate::exact_sum::{mean_denominator, mean_scale};
use crate::matrix::LabelType;
use crate::options::{CrossEntropyOptions, Reduction};

/// The targets as the plan sees them.
#[derive(Clone, Copy, Debug)]
pub(super) enum PlanTargets<'a> {
    /// Labels with their host copy (checked).
    Host(&'a [i32]),
    /// Labels only on the device, of this type: the denominator comes from ce_denom.
    Device(LabelType),
    /// Probability rows.
    Probs,
}

/// [`GradTo`] without the matrix, for the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GradKind {
    None,
    Buffer,
    InPlace,
}

/// What a cross-entropy call will launch, decided on the host from validated input before anything
/// is allocated or encoded: pure, so unit-tested without a device.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CePlan {
    /// FLAGS of ce_fwd_bwd and ce_reduce.
    pub(super) flags: u32,
    /// Walks over each row (2 with the gradient, smoothing or probability targets).
    pub(super) passes: u32,
    /// `ignore_index` as the kernels compare it: its low and high words as an i64.
    pub(super) ignore_index: (i32, i32),
    /// The mean's denominator: Σ w\[y_i\] over rows not ignored (exact, rounded once:
    /// [`crate::exact_sum::mean_denominator`]), n for probability targets; NaN for device-only
    /// labels (computed on the device by ce_denom, with the same bits).
    pub(super) denominator: f32,
    /// The row kernel's scalars f0…f4: label smoothing, z-loss, softcap (1 when off), Σ_j w_j, and
    /// the gradient's scale (`grad_output`, ÷ the denominator for a mean).
    pub(super) scalars: [f32; 5],
    /// ce_reduce's batch sums: rows per slice, and slices (one launch for one slice; else one
    /// partial per slice, then the partials).
    pub(super) slice: usize,
    pub(super) slices: usize,
}

impl CePlan {
    pub(super) fn new(
        n: usize,
        cols: usize,
        targets: PlanTargets<'_>,
        opts: &CrossEntropyOptions,
        grad: GradKind,
        row_upstream: bool,
        binding_floats: u64,
    ) -> Self {
        let mut fl = 0u32;
        let set = |fl: &mut u32, on: bool, bit: u32| {
            if on {
                *fl |= bit;
            }
        };
        let labels = !matches!(targets, PlanTargets::Probs);
        set(&mut fl, labels, flags::LABELS);
        if let PlanTargets::Device(ty) = targets {
            fl |= flags::DEVICE_DENOM | ty.kernel_flags();
        }
        set(&mut fl, opts.weight.is_some(), flags::WEIGHT);
        set(&mut fl, opts.softcap.is_some(), flags::SOFTCAP);
        set(&mut fl, opts.reduction == Reduction::Mean, flags::MEAN);
        set(&mut fl, grad != GradKind::None, flags::GRAD | flags::PASS2);
        set(&mut fl, grad == GradKind::InPlace, flags::IN_PLACE);
        set(&mut fl, opts.label_smoothing > 0.0 || !labels, flags::PASS2);
        set(&mut fl, row_upstream, flags::ROW_UPSTREAM);
        // The mean's denominator, on the host where labels and weights are: with it the
        // gradient's scale is known before the rows run (device-only labels: ce_denom computes
        // the same bits on the device).
        let denominator = match targets {
            PlanTargets::Host(labels) => {
                mean_denominator(labels, opts.weight.as_deref(), opts.ignore_index)
            }
            PlanTargets::Device(_) => f32::NAN,
            PlanTargets::Probs => n as f32,
        };
        let grad_scale = match opts.reduction {
            Reduction::Mean => mean_scale(opts.grad_output, denominator),
            _ => opts.grad_output,
        };
        // A slice is launched as a "row", so it keeps under the binding limit like one (row_out, 16
        // bytes a row, is bound whole: the partials then fit too).
        let slice = REDUCE_SLICE.min(binding_floats as usize).max(1);
        Self {
            flags: fl,
            passes: if fl & flags::PASS2 != 0 { 2 } else { 1 },
            ignore_index: (opts.ignore_index as i32, (opts.ignore_index >> 32) as i32),
            denominator,
            scalars: [
                opts.label_smoothing,
                opts.z_loss,
                opts.softcap.unwrap_or(1.0),
                opts.weight_sum(cols),
                grad_scale,
            ],
            slice,
            slices: n.div_ceil(slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(labels: Option<&[i32]>, opts: &CrossEntropyOptions, grad: GradKind) -> CePlan {
        CePlan::new(
            labels.map_or(10_000, <[i32]>::len),
            5,
            labels.map_or(PlanTargets::Probs, PlanTargets::Host),
            opts,
            grad,
            false,
            1 << 25,
        )
    }

    #[test]
    fn flags_passes_and_scalars() {
        let d = CrossEntropyOptions::default();
        let p = plan(Some(&[0, 1, 2]), &d, GradKind::None);
        assert_eq!((p.flags, p.passes), (flags::LABELS | flags::MEAN, 1));
        let p = plan(Some(&[0]), &d, GradKind::InPlace);
        assert_eq!(
            p.flags,
            flags::LABELS | flags::MEAN | flags::GRAD | flags::PASS2 | flags::IN_PLACE
        );
        assert_eq!(p.passes, 2);
        // Probability targets always walk twice; smoothing too.
        let sum = CrossEntropyOptions {
            reduction: Reduction::Sum,
            ..d.clone()
        };
        assert_eq!(plan(None, &sum, GradKind::None).flags, flags::PASS2);
        let smooth = CrossEntropyOptions {
            label_smoothing: 0.1,
            softcap: Some(30.0),
            ..d.clone()
        };
        let p = plan(Some(&[1]), &smooth, GradKind::None);
        assert_eq!(p.passes, 2);
        assert_eq!(p.scalars[..3], [0.1, 0.0, 30.0]);
        assert_eq!(p.scalars[3], 5.0); // Σ_j w_j without weights: N
    }

    #[test]
    fn denominators_as_pytorch_and_reduce_slices() {
        let w = CrossEntropyOptions {
            weight: Some(vec![2.0, -1.0, 0.5, 1.0, 1.0]),
            ignore_index: 3,
            ..Default::default()
        };
        // Rows with labels 0, 1, 3 (ignored), 2: 2 − 1 + 0.5; the scale is 1 / that.
        let p = plan(Some(&[0, 1, 3, 2]), &w, GradKind::Buffer);
        assert_eq!(p.denominator, 1.5);
        assert_eq!(p.scalars[4], (1.0 / 1.5) as f32);
        assert_eq!(p.scalars[3], 3.5);
        // Probability targets divide by n; slices of 4,096 rows.
        let p = plan(None, &CrossEntropyOptions::default(), GradKind::None);
        assert_eq!((p.denominator, p.slice, p.slices), (10_000.0, 4096, 3));
        // A tiny binding limit shortens the slices; an ignore_index outside i32 keeps its high word
        // (no i32 label matches it).
        let far = CrossEntropyOptions {
            ignore_index: (1 << 40) + 7,
            ..Default::default()
        };
        let p = CePlan::new(
            9,
            5,
            PlanTargets::Host(&[0; 9]),
            &far,
            GradKind::None,
            true,
            4,
        );
        assert_eq!((p.slice, p.slices, p.ignore_index), (4, 3, (7, 256)));
        assert_ne!(p.flags & flags::ROW_UPSTREAM, 0);
        assert_eq!(p.denominator, 9.0);
        assert_eq!(
            plan(Some(&[0]), &CrossEntropyOptions::default(), GradKind::None).ignore_index,
            (-100, -1)
        );
        // Device-only labels: the denominator is the device's; the type is a flag.
        let p = CePlan::new(
            3,
            5,
            PlanTargets::Device(LabelType::I64),
            &far,
            GradKind::None,
            false,
            1 << 20,
        );
        assert!(p.denominator.is_nan());
        assert_eq!(
            p.flags & (flags::DEVICE_DENOM | flags::LABELS_I64 | flags::LABELS_U32),
            flags::DEVICE_DENOM | flags::LABELS_I64
        );
    }
}
