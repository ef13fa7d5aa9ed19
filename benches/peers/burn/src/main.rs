//! Peer benchmark: burn (wgpu backend) softmax and cross-entropy on Mesa lavapipe.
//!
//! See README.md in this folder. Prints one JSON object per line per (op, shape).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::softmax;
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor, TensorData};
use serde_json::{json, Value};

const DEFAULT_SHAPES: &str = "4096x1000,1024x32000,256x128256,65536x10";
const WARMUP: usize = 2;
const REPS: usize = 7;
/// A shape whose second warm-up run takes longer than this gets `REPS_SLOW` timed reps.
const SLOW_S: f64 = 2.0;
const REPS_SLOW: usize = 3;
const TOL: f64 = 1e-3;
/// A softmax row whose sum is off by more than this is wrong. The bound is loose on purpose:
/// f32 accumulation over ~1e5 columns can be off by about 1e-3.
const ROW_SUM_TOL: f64 = 1e-2;

fn parse_shapes(s: &str) -> Vec<(usize, usize)> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (a, b) = t
                .trim()
                .split_once('x')
                .unwrap_or_else(|| panic!("bad shape {t:?}, want NxK"));
            (a.parse().expect("bad n"), b.parse().expect("bad k"))
        })
        .collect()
}

/// One JSON object on one line, keys in the order given.
fn emit(fields: &[(&str, Value)]) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    println!("{{{}}}", body.join(","));
}

/// JSON number, or the string "inf"/"nan" where JSON has no number for it.
fn num(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { json!(v.to_string()) }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs `f` (which must sync before returning) WARMUP times, then REPS (or REPS_SLOW) times.
/// Returns (median seconds, reps used).
fn time_it(mut f: impl FnMut()) -> (f64, usize) {
    let mut last = 0.0;
    for _ in 0..WARMUP {
        let t = Instant::now();
        f();
        last = t.elapsed().as_secs_f64();
    }
    let reps = if last > SLOW_S { REPS_SLOW } else { REPS };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    (median(&mut times), reps)
}

fn to_f32(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data")
}

fn cpu_softmax_row(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn main() {
    let mut shapes_arg = DEFAULT_SHAPES.to_string();
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--shapes" => {
                shapes_arg = args.get(i + 1).expect("--shapes needs a value").clone();
                i += 2;
            }
            s if s.starts_with("--shapes=") => {
                shapes_arg = s["--shapes=".len()..].to_string();
                i += 1;
            }
            other => panic!("unknown argument {other:?}; usage: burn-peer [--shapes NxK,NxK,...]"),
        }
    }
    let shapes = parse_shapes(&shapes_arg);

    // Vulkan, CPU-type adapter: on this machine that is Mesa lavapipe.
    let (device, setup) = Device::wgpu_options()
        .graphics_api(WgpuBackend::Vulkan)
        .device_kind(DeviceKind::Cpu)
        .init_with_setup()
        .expect("could not initialise burn's wgpu runtime on a Vulkan CPU adapter (lavapipe)");
    let info = setup.adapter.get_info();
    let adapter = format!("{} ({:?}, {})", info.name, info.backend, info.driver_info);
    let ad_device = device.clone().autodiff();
    let version = "0.22.1"; // keep in step with Cargo.lock

    for &(n, k) in &shapes {
        let bytes = (n * k * 8) as f64;
        let x = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device);
        device.sync().expect("sync");
        let xh = to_f32(x.clone());

        // ---- softmax forward ----
        let (t, reps) = time_it(|| {
            let y = softmax(x.clone(), 1);
            device.sync().expect("sync");
            drop(y);
        });
        let y = softmax(x.clone(), 1);
        // err over finite outputs; non-finite outputs are counted separately
        let mut err: f64 = 0.0;
        let mut nan = 0usize;
        let mut inf = 0usize;
        let mut bad_rows = 0usize;
        let mut worst_row_sum = 1.0f64;
        let check_rows: Vec<usize> = (0..8).map(|j| j * (n - 1) / 7).collect();
        for &r in &check_rows {
            let got = to_f32(y.clone().narrow(0, r, 1));
            let want = cpu_softmax_row(&xh[r * k..(r + 1) * k]);
            let mut row_sum = 0.0f64;
            for (g, w) in got.iter().zip(&want) {
                if g.is_nan() {
                    nan += 1;
                    continue;
                }
                if g.is_infinite() {
                    inf += 1;
                    continue;
                }
                row_sum += *g as f64;
                err = err.max((*g as f64 - w).abs());
            }
            let finite_row = got.iter().all(|g| g.is_finite());
            if !finite_row || (row_sum - 1.0).abs() > ROW_SUM_TOL {
                bad_rows += 1;
            }
            if finite_row && (row_sum - 1.0).abs() > (worst_row_sum - 1.0).abs() {
                worst_row_sum = row_sum;
            }
        }
        drop(y);
        let nonfinite = nan + inf;
        let ok = err <= TOL && bad_rows == 0;
        emit(&[
            ("peer", json!("burn-wgpu")),
            ("version", json!(version)),
            ("adapter", json!(adapter)),
            ("op", json!("softmax")),
            ("n", json!(n)),
            ("k", json!(k)),
            ("median_ms", json!(t * 1e3)),
            ("gbps", json!(bytes / t / 1e9)),
            ("max_abs_err", json!(err)),
            ("ok", json!(ok)),
            ("reps", json!(reps)),
            ("rows_checked", json!(check_rows.len())),
            ("nan", json!(nan)),
            ("inf", json!(inf)),
            ("bad_rows", json!(bad_rows)),
            ("worst_finite_row_sum", json!(worst_row_sum)),
        ]);
        if !ok {
            eprintln!(
                "WRONG: burn softmax {n}x{k}: max abs err (finite outputs) {err:e} (tol {TOL:e}); \
                 {nonfinite} non-finite outputs; {bad_rows}/{} checked rows non-finite or \
                 with |sum-1| > {ROW_SUM_TOL:e} (worst finite row sum {worst_row_sum})",
                check_rows.len()
            );
        }

        // ---- cross-entropy forward + backward (mean reduction, class-index targets) ----
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ (n as u64 * 31 + k as u64);
        let targets_h: Vec<i32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) % k as u64) as i32
            })
            .collect();
        let targets = Tensor::<1, Int>::from_ints(TensorData::new(targets_h.clone(), [n]), &ad_device);
        let ce = CrossEntropyLossConfig::new().init(&ad_device);
        let run_ce = || {
            let logits = x.clone().autodiff().require_grad();
            let loss = ce.forward(logits.clone(), targets.clone());
            let grads = loss.backward();
            let g = logits.grad(&grads).expect("no grad for logits");
            (loss, g)
        };
        let (t, reps) = time_it(|| {
            let out = run_ce();
            device.sync().expect("sync");
            drop(out);
        });
        let (loss, g) = run_ce();
        let loss_v = loss.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0] as f64;
        // CPU f64 reference: mean over rows of logsumexp(x_r) - x_r[t_r]
        let mut ref_loss = 0.0f64;
        for r in 0..n {
            let row = &xh[r * k..(r + 1) * k];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            ref_loss += m + s.ln() - row[targets_h[r] as usize] as f64;
        }
        ref_loss /= n as f64;
        let loss_err = {
            let e = (loss_v - ref_loss).abs();
            if e.is_nan() { f64::INFINITY } else { e }
        };
        // gradient check on the same rows, scaled by n: n*grad = softmax - onehot
        let mut grad_err: f64 = 0.0;
        for &r in &check_rows {
            let got = to_f32(g.clone().narrow(0, r, 1));
            let mut want = cpu_softmax_row(&xh[r * k..(r + 1) * k]);
            want[targets_h[r] as usize] -= 1.0;
            for (gv, w) in got.iter().zip(&want) {
                let e = (*gv as f64 * n as f64 - w).abs();
                grad_err = if e.is_nan() { f64::INFINITY } else { grad_err.max(e) };
            }
        }
        drop(g);
        let ok = loss_err <= TOL && grad_err <= TOL;
        emit(&[
            ("peer", json!("burn-wgpu")),
            ("version", json!(version)),
            ("adapter", json!(adapter)),
            ("op", json!("ce")),
            ("n", json!(n)),
            ("k", json!(k)),
            ("median_ms", json!(t * 1e3)),
            ("gbps", json!(bytes / t / 1e9)),
            ("max_abs_err", num(loss_err)),
            ("ok", json!(ok)),
            ("reps", json!(reps)),
            ("loss", num(loss_v)),
            ("ref_loss", json!(ref_loss)),
            ("grad_err_scaled", num(grad_err)),
            ("rows_checked", json!(check_rows.len())),
        ]);
        if !ok {
            eprintln!(
                "WRONG: burn cross-entropy {n}x{k}: loss err {loss_err:e}, n*grad err {grad_err:e} (tol {TOL:e})"
            );
        }
    }
}
