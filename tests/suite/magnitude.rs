//! Every backend — the f64 reference, the fast CPU path, each GPU context — right at every magnitude
//! f32 can hold, against expected values found by exact reasoning rather than by another softmax:
//! a constant row of N equal values has softmax exactly 1/N and log-softmax −ln N whatever the value;
//! k equal maxima beside values ≥ 2⁸⁰ smaller share the mass 1/k (the others' exp underflows f64).
//! These are the rows where `z − lse` goes wrong: |max| ≫ log Σ, so `m + log Σ` rounds to `m`.

use xent::{cpu, reference};

use super::common::contexts;

/// (row, expected softmax, expected log-softmax, expected log-sum-exp), all exact in f64 up to the
/// rounding of ln.
struct Row {
    what: &'static str,
    z: Vec<f32>,
    softmax: Vec<f64>,
    log_softmax: Vec<f64>,
    lse: f64,
}

fn rows() -> Vec<Row> {
    let mut out = Vec::new();
    for (what, v, n) in [
        ("1000 × 3e38", 3e38f32, 1000),
        ("1000 × -3e38", -3e38, 1000),
        ("7 × 1e4", 1e4, 7),
        ("1 × 3e38", 3e38, 1),
        ("4099 × f32::MAX", f32::MAX, 4099),
    ] {
        let ln_n = (n as f64).ln();
        out.push(Row {
            what,
            z: vec![v; n],
            softmax: vec![1.0 / n as f64; n],
            log_softmax: vec![-ln_n; n],
            lse: f64::from(v) + ln_n,
        });
    }
    // Two maxima of 3e38 beside 2.9e38, small values and a −inf mask: the maxima take 1/2 each.
    let z = vec![3e38f32, 2.9e38, -5.0, 3e38, 1.0, f32::NEG_INFINITY];
    let m = 3e38f32 as f64;
    let ln2 = 2f64.ln();
    out.push(Row {
        what: "3e38 beside 2.9e38 and small values",
        softmax: vec![0.5, 0.0, 0.0, 0.5, 0.0, 0.0],
        log_softmax: z.iter().map(|&x| (f64::from(x) - m) - ln2).collect(),
        lse: m + ln2,
        z,
    });
    // The mirror image near −3e38: −3e38 is the max of its row.
    let z = vec![-3e38f32, -3e38, f32::NEG_INFINITY, -3e38];
    let m = -3e38f32 as f64;
    let ln3 = 3f64.ln();
    out.push(Row {
        what: "three −3e38 and a mask",
        softmax: vec![1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0],
        log_softmax: vec![-ln3, -ln3, f64::NEG_INFINITY, -ln3],
        lse: m + ln3,
        z,
    });
    out
}

/// f32 results within a few ulp of the exact value (relative 1e-6, absolute 1e-7 for values near 0;
/// an expected infinity must be met exactly; log-softmax entries of order 3e38 compare relatively).
#[track_caller]
fn check(backend: &str, what: &str, quantity: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{backend} {what} {quantity}");
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let ok = if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= 1e-7 + 1e-6 * w.abs()
        };
        assert!(
            ok,
            "{backend}: {what}: {quantity}[{j}] = {g}, exactly {w} (f64 of the exact value)"
        );
    }
}

#[test]
fn every_backend_is_right_at_every_magnitude() {
    let mut checked = 0;
    for r in rows() {
        let cols = r.z.len();
        let lse = [r.lse];
        // The reference, in f64 before any rounding to f32.
        let sm: Vec<f64> = reference::row_log_softmax(&r.z)
            .iter()
            .map(|l| l.exp())
            .collect();
        for (j, (&g, &w)) in sm.iter().zip(&r.softmax).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12,
                "reference: {}: softmax[{j}] {g} vs {w}",
                r.what
            );
        }
        check(
            "reference",
            r.what,
            "softmax",
            &reference::softmax(&r.z, cols),
            &r.softmax,
        );
        check(
            "reference",
            r.what,
            "log_softmax",
            &reference::log_softmax(&r.z, cols),
            &r.log_softmax,
        );
        check(
            "reference",
            r.what,
            "logsumexp",
            &reference::logsumexp(&r.z, cols),
            &lse,
        );
        check(
            "cpu",
            r.what,
            "softmax",
            &cpu::softmax(&r.z, cols).unwrap(),
            &r.softmax,
        );
        check(
            "cpu",
            r.what,
            "log_softmax",
            &cpu::log_softmax(&r.z, cols).unwrap(),
            &r.log_softmax,
        );
        check(
            "cpu",
            r.what,
            "logsumexp",
            &cpu::logsumexp(&r.z, cols).unwrap(),
            &lse,
        );
        for ctx in contexts() {
            let b = super::common::describe(ctx);
            check(
                &b,
                r.what,
                "softmax",
                &ctx.softmax_host(&r.z, cols).unwrap(),
                &r.softmax,
            );
            check(
                &b,
                r.what,
                "log_softmax",
                &ctx.log_softmax_host(&r.z, cols).unwrap(),
                &r.log_softmax,
            );
            check(
                &b,
                r.what,
                "logsumexp",
                &ctx.logsumexp_host(&r.z, cols).unwrap(),
                &lse,
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 7);
}
