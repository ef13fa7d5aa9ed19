//! The GPU side of `linear_ce.rs`'s backend: the problem uploaded, the fused call, everything read
//! back.

use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
use xent::{Context, GpuLabels, GpuMatrix};

use super::linear_ce::{Lce, Problem};

pub fn run(ctx: &Context, p: &Problem, opts: &LinearCeOptions, start: Option<&Lce>) -> Lce {
    let s = p.shape;
    let up = |v: &[f32], r: usize, c: usize| GpuMatrix::from_slice(ctx, v, r, c).unwrap();
    let x = up(&p.x, s.n, s.d);
    let w = up(&p.w, s.classes, s.d);
    let bias = p.bias.as_ref().map(|b| up(b, 1, s.classes));
    let nan = |len: usize| vec![f32::NAN; len];
    let dx = up(&nan(s.n * s.d), s.n, s.d);
    let (dw0, db0) = match start {
        Some(st) => (st.dw.clone(), st.db.clone()),
        None => (nan(s.classes * s.d), nan(s.classes)),
    };
    let dw = up(&dw0, s.classes, s.d);
    let db = up(&db0, 1, s.classes);
    let labels = p
        .labels
        .as_ref()
        .map(|l| GpuLabels::from_slice(ctx, l).unwrap());
    let probs = p.probs.as_ref().map(|q| up(q, s.n, s.classes));
    let targets = match (&labels, &probs) {
        (Some(l), _) => GpuTargets::Labels(l),
        (None, Some(q)) => GpuTargets::Probs(q),
        (None, None) => unreachable!(),
    };
    let result = ctx
        .linear_cross_entropy(
            &x,
            &w,
            bias.as_ref(),
            targets,
            opts,
            GpuLinearGrads {
                input: Some(&dx),
                weight: Some(&dw),
                bias: Some(&db),
            },
        )
        .unwrap();
    Lce {
        result,
        dx: dx.read_blocking(ctx).unwrap(),
        dw: dw.read_blocking(ctx).unwrap(),
        db: db.read_blocking(ctx).unwrap(),
    }
}
