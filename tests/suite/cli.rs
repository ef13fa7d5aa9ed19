//! The `xent` binary end to end: eval against a PyTorch fixture (GPU and CPU), no output on error,
//! train and bench JSON, check and info.

use std::path::{Path, PathBuf};
use std::process::Command;

use xent::npy;

use super::common::contexts;

fn xent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .output()
        .expect("run xent")
}

/// `xent eval` of a fixture's logits and labels with `extra` flags on `backend`, into `out`.
fn eval_fixture(case: &Path, extra: &[&str], backend: &str, out: &Path) -> std::process::Output {
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let (logits, labels, out) = (
        s(case.join("logits.npy")),
        s(case.join("labels.npy")),
        s(out.to_path_buf()),
    );
    let mut args = vec!["eval", "--logits", &logits, "--labels", &labels];
    args.extend_from_slice(extra);
    args.extend(["--backend", backend, "--out", &out]);
    xent(&args)
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(case)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xent-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn eval_matches_pytorch_on_both_backends() {
    let case = fixture("29_weight_smooth_ignore_8x6_none");
    let want_loss = npy::read_f32(&case.join("loss.npy")).unwrap().1;
    let want_grad = npy::read_f32(&case.join("grad.npy")).unwrap().1;
    let mut backends = vec!["reference", "cpu"];
    if !contexts().is_empty() {
        backends.push("gpu");
    }
    for backend in backends {
        let out = temp_dir(backend);
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let r = xent(&[
            "eval",
            "--logits",
            &s(&case.join("logits.npy")),
            "--labels",
            &s(&case.join("labels.npy")),
            "--weight",
            &s(&case.join("weight.npy")),
            "--ignore-index",
            "3",
            "--label-smoothing",
            "0.2",
            "--reduction",
            "none",
            "--features",
            &s(&case.join("logits.npy")),
            "--backend",
            backend,
            "--out",
            &s(&out),
        ]);
        assert!(
            r.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let (shape, loss) = npy::read_f32(&out.join("loss.npy")).unwrap();
        assert_eq!(shape, vec![8]);
        for (g, w) in loss.iter().zip(&want_loss).chain(
            npy::read_f32(&out.join("grad.npy"))
                .unwrap()
                .1
                .iter()
                .zip(&want_grad),
        ) {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                "{backend}: {g} vs {w}"
            );
        }
        for f in [
            "softmax.npy",
            "log_softmax.npy",
            "entropy.npy",
            "grad_weight.npy",
            "grad_bias.npy",
        ] {
            assert!(out.join(f).exists(), "{backend}: {f} missing");
        }
        assert_eq!(
            npy::read_f32(&out.join("grad_weight.npy")).unwrap().0,
            vec![6, 6]
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn eval_writes_nothing_on_error() {
    let case = fixture("01_basic_4x5_mean");
    let out = temp_dir("bad");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // Labels go up to 4 with N = 5; a weight file of the wrong length is an error before any output.
    let r = xent(&[
        "eval",
        "--logits",
        &s(&case.join("logits.npy")),
        "--labels",
        &s(&case.join("labels.npy")),
        "--weight",
        &s(&case.join("logits.npy")),
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("weight")
            || String::from_utf8_lossy(&r.stderr).contains("shape")
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "output written on error"
    );
    let r = xent(&[
        "eval",
        "--logits",
        &s(&case.join("labels.npy")),
        "--labels",
        &s(&case.join("labels.npy")),
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("float32"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn train_json_summary() {
    let backend = if contexts().is_empty() { "cpu" } else { "gpu" };
    let r = xent(&["train", "--epochs", "3", "--json", "--backend", backend]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for key in [
        "test_accuracy",
        "final_loss",
        "epochs",
        "seconds",
        "adapter",
    ] {
        assert!(!v[key].is_null(), "{key} missing in {v}");
    }
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.9, "{v}");
}

#[test]
fn bench_json_check_and_info() {
    if contexts().is_empty() {
        eprintln!("xent tests: no adapter; bench/check/info CLI test skipped");
        return;
    }
    let r = xent(&["bench", "--shapes", "64x100", "--reps", "2", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 7, "{lines:?}");
    for l in &lines {
        for key in ["op", "n", "k", "backend", "median_ms", "gbps"] {
            assert!(!l[key].is_null(), "{key} missing in {l}");
        }
    }
    let r = xent(&["check", "--shapes", "33x257,100x10"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stdout));
    assert!(String::from_utf8_lossy(&r.stdout).contains("cross_entropy fwd+bwd"));
    let r = xent(&["info"]);
    assert!(r.status.success());
    assert!(String::from_utf8_lossy(&r.stdout).contains("loop cap"));
}

/// Nonsense arguments are usage errors (clap's exit code 2 and a message), never a panic (101):
/// zero repetitions, rows of zero columns, a matmul with no classes, an [n, 0] logits file.
#[test]
fn bad_arguments_are_usage_errors_not_panics() {
    for args in [
        &["bench", "--reps", "0"][..],
        &["bench", "--shapes", "10x0"],
        &["check", "--shapes", "4x0"],
        &["bench", "--matmul-shapes", "64x8x0"],
    ] {
        let r = xent(args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
        assert!(!String::from_utf8_lossy(&r.stderr).contains("panicked"));
    }
    let dir = temp_dir("empty-cols");
    std::fs::create_dir_all(&dir).unwrap();
    let logits = dir.join("logits.npy");
    npy::write_f32(&logits, &[3, 0], &[]).unwrap();
    let r = xent(&[
        "eval",
        "--logits",
        logits.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("0 classes") && !err.contains("panicked"),
        "{err}"
    );
}

/// A failure after validation leaves nothing: here `DIR/softmax.npy` is a folder, so the last move
/// would fail; no output is moved into DIR before that is known, and no temporary folder is left.
#[test]
fn eval_leaves_no_partial_output_when_a_target_is_a_folder() {
    let case = fixture("01_basic_4x5_mean");
    let root = temp_dir("partial");
    let out = root.join("out");
    std::fs::create_dir_all(out.join("softmax.npy")).unwrap();
    let r = eval_fixture(&case, &[], "cpu", &out);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("softmax.npy"));
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&out),
        vec!["softmax.npy"],
        "outputs moved before failing"
    );
    assert_eq!(names(&root), vec!["out"], "temporary folder left behind");
    // A folder that does not exist yet (nor its parent) appears whole, at the end.
    let fresh = root.join("a/b");
    let r = eval_fixture(&case, &[], "cpu", &fresh);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(names(&fresh).contains(&"loss.npy".to_string()));
    assert_eq!(names(&root), vec!["a", "out"]);
    std::fs::remove_dir_all(&root).unwrap();
}

/// `--backend cpu` and the GPU refuse the same input: probability targets with a class as
/// ignore_index, and an ignored label that does not fit i32.
#[test]
fn eval_validates_the_same_on_every_backend() {
    let dir = temp_dir("validate");
    std::fs::create_dir_all(&dir).unwrap();
    let logits = dir.join("logits.npy");
    npy::write_f32(&logits, &[2, 3], &[0.5, -1.0, 2.0, 0.0, 0.0, 1.0]).unwrap();
    let targets = dir.join("targets.npy");
    npy::write_f32(&targets, &[2, 3], &[0.2, 0.3, 0.5, 1.0, 0.0, 0.0]).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let big = (1i64 << 40).to_string();
    let labels = dir.join("labels.npy");
    {
        use npyz::WriterBuilder;
        let f = std::io::BufWriter::new(std::fs::File::create(&labels).unwrap());
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2])
            .writer(f)
            .begin_nd()
            .unwrap();
        w.extend([1i64 << 40, 0]).unwrap();
        w.finish().unwrap();
    }
    let mut backends = vec!["reference", "cpu"];
    if !contexts().is_empty() {
        backends.push("gpu");
    }
    for backend in backends {
        let out = dir.join(format!("out-{backend}"));
        for (target_args, needle) in [
            (
                vec!["--targets", &s(&targets), "--ignore-index", "1"],
                "ignore_index",
            ),
            (vec!["--labels", &s(&labels), "--ignore-index", &big], "i32"),
        ] {
            let (logits_s, out_s) = (s(&logits), s(&out));
            let mut args = vec!["eval", "--logits", &logits_s];
            args.extend(target_args.iter().copied());
            args.extend(["--backend", backend, "--out", &out_s]);
            let r = xent(&args);
            let err = String::from_utf8_lossy(&r.stderr);
            assert_eq!(r.status.code(), Some(1), "{backend} {target_args:?}: {err}");
            assert!(err.contains(needle), "{backend}: {err}");
            assert!(!out.exists());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On an adapter with a loop cap, a row past it is refused naming its real length (16,800,000
/// classes, not the 4,200,000 vec4s it is read as).
#[test]
fn eval_loop_cap_error_names_the_row_length() {
    if contexts().iter().all(|c| c.loop_cap().is_none()) {
        eprintln!("xent tests: no adapter with a loop cap; loop-cap CLI test SKIPPED");
        return;
    }
    let dir = temp_dir("loopcap");
    std::fs::create_dir_all(&dir).unwrap();
    let cols = 16_800_000usize;
    let logits = dir.join("logits.npy");
    npy::write_f32(&logits, &[1, cols], &vec![0.25f32; cols]).unwrap();
    let targets = dir.join("t.npy");
    npy::write_f32(&targets, &[1, cols], &vec![1.0 / cols as f32; cols]).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let r = xent(&[
        "eval",
        "--logits",
        &s(&logits),
        "--targets",
        &s(&targets),
        "--out",
        &s(&dir.join("out")),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(
        err.contains("a row of 16800000 elements") && !err.contains("4200000"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `xent info | head -1`: the reader goes away after one line; xent ends quietly, as Unix tools do,
/// instead of panicking in `println!` (exit 101).
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_xent"))
        .arg("info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: xent's next line meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

/// A negative number is a value for a numeric flag, so it gets the range error, not a parse error.
#[test]
fn negative_numbers_get_range_errors() {
    let case = fixture("01_basic_4x5_mean");
    let r = eval_fixture(
        &case,
        &["--label-smoothing", "-0.1"],
        "cpu",
        &temp_dir("neg"),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("outside [0, 1]"), "{err}");
    let r = xent(&["train", "--epochs", "1", "--lr", "-1", "--backend", "cpu"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!err.contains("unexpected argument"), "{err}");
}

/// `check` on the fast CPU path: every host kernel against the reference, no adapter needed.
#[test]
fn check_runs_on_the_fast_cpu_path() {
    let r = xent(&["check", "--backend", "cpu", "--shapes", "33x257,100x10"]);
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}");
    assert!(
        out.contains("fast CPU path") && out.contains("cross_entropy fwd+bwd"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
}

/// The fast CPU path's AVX2+FMA and AVX-512 copies give the same bits (one reduction order for every
/// vector width, and both fuse multiply-adds); shown through `xent eval --backend cpu` under each cap.
#[test]
fn cpu_instruction_sets_with_fma_give_the_same_bits() {
    if xent::cpu::isa() < xent::cpu::Isa::Avx512 {
        eprintln!("xent tests: no AVX-512 here; AVX2-vs-AVX-512 bit test SKIPPED");
        return;
    }
    let dir = temp_dir("isa-bits");
    std::fs::create_dir_all(&dir).unwrap();
    let (n, c) = (37, 3001);
    let z = super::common::random(5, n, c, -20.0, 20.0);
    npy::write_f32(&dir.join("z.npy"), &[n, c], &z).unwrap();
    let targets: Vec<f32> = super::common::random(6, n, c, 0.0, 1.0);
    npy::write_f32(&dir.join("t.npy"), &[n, c], &targets).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |isa: &str| {
        let out = dir.join(isa);
        let r = Command::new(env!("CARGO_BIN_EXE_xent"))
            .args([
                "eval",
                "--logits",
                &s(&dir.join("z.npy")),
                "--targets",
                &s(&dir.join("t.npy")),
            ])
            .args([
                "--label-smoothing",
                "0.1",
                "--backend",
                "cpu",
                "--out",
                &s(&out),
            ])
            .env(xent::cpu::ISA_ENV, isa)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        out
    };
    let (a, b) = (run("avx2"), run("avx512"));
    for name in ["loss.npy", "grad.npy", "softmax.npy", "log_softmax.npy"] {
        let read = |d: &Path| std::fs::read(d.join(name)).unwrap();
        assert_eq!(read(&a), read(&b), "{name}: AVX2 and AVX-512 bits differ");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval --linear-weight` (fused, the logits never materialised) against today's `--features` path
/// on logits materialised from the same X, W, b, on every backend; a bad W writes nothing.
#[test]
fn eval_linear_matches_the_materialised_features_path() {
    let (n, d, v) = (12, 5, 9);
    let dir = temp_dir("linear");
    std::fs::create_dir_all(&dir).unwrap();
    let x = super::common::random(41, n, d, -1.0, 1.0);
    let w = super::common::random(42, v, d, -1.0, 1.0);
    let b = super::common::random(43, 1, v, -0.5, 0.5);
    let labels: Vec<i64> = (0..n)
        .map(|i| if i == 3 { -100 } else { (i * 5 % v) as i64 })
        .collect();
    let z: Vec<f32> = (0..n * v)
        .map(|e| {
            let (i, j) = (e / v, e % v);
            let dot: f64 = (0..d)
                .map(|k| x[i * d + k] as f64 * w[j * d + k] as f64)
                .sum();
            (dot + b[j] as f64) as f32
        })
        .collect();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    npy::write_f32(&dir.join("x.npy"), &[n, d], &x).unwrap();
    npy::write_f32(&dir.join("w.npy"), &[v, d], &w).unwrap();
    npy::write_f32(&dir.join("bad_w.npy"), &[v, d + 1], &vec![0.0; v * (d + 1)]).unwrap();
    npy::write_f32(&dir.join("b.npy"), &[v], &b).unwrap();
    npy::write_f32(&dir.join("z.npy"), &[n, v], &z).unwrap();
    npy::write_i64(&dir.join("labels.npy"), &[n], &labels).unwrap();
    let opts = ["--label-smoothing", "0.1", "--reduction", "sum"];
    let mut backends = vec!["reference", "cpu"];
    if !contexts().is_empty() {
        backends.push("gpu");
    }
    let close = |what: &str, got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale + 1e-6,
                "{what} [{i}]: {g} vs {w}"
            );
        }
    };
    for backend in backends {
        let (fused, chain) = (
            dir.join(format!("fused-{backend}")),
            dir.join(format!("chain-{backend}")),
        );
        let mut a = vec!["eval", "--features"];
        let (xs, ws, bs, ls, zs) = (
            path("x.npy"),
            path("w.npy"),
            path("b.npy"),
            path("labels.npy"),
            path("z.npy"),
        );
        let fo = fused.to_str().unwrap().to_string();
        a.extend([
            xs.as_str(),
            "--linear-weight",
            &ws,
            "--linear-bias",
            &bs,
            "--labels",
            &ls,
        ]);
        a.extend(opts);
        a.extend(["--backend", backend, "--out", &fo]);
        let r = xent(&a);
        assert!(
            r.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let co = chain.to_str().unwrap().to_string();
        let mut a = vec!["eval", "--logits", &zs, "--features", &xs, "--labels", &ls];
        a.extend(opts);
        a.extend(["--backend", backend, "--out", &co]);
        let r = xent(&a);
        assert!(
            r.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let read = |p: PathBuf| npy::read_f32(&p).unwrap();
        let (ls_, loss) = read(fused.join("loss.npy"));
        assert_eq!(ls_, Vec::<usize>::new(), "a sum is a scalar");
        close(
            &format!("{backend}: loss"),
            &loss,
            &read(chain.join("loss.npy")).1,
        );
        let (s, dw) = read(fused.join("grad_linear_weight.npy"));
        assert_eq!(s, vec![v, d]);
        let dw_chain = read(chain.join("grad_weight.npy")).1; // d × V
        let dw_t: Vec<f32> = (0..v * d).map(|e| dw_chain[(e % d) * v + e / d]).collect();
        close(&format!("{backend}: grad_linear_weight"), &dw, &dw_t);
        close(
            &format!("{backend}: grad_linear_bias"),
            &read(fused.join("grad_linear_bias.npy")).1,
            &read(chain.join("grad_bias.npy")).1,
        );
        let (s, dx) = read(fused.join("grad_input.npy"));
        assert_eq!(s, vec![n, d]);
        assert!(
            dx[3 * d..4 * d].iter().all(|&g| g == 0.0),
            "{backend}: the ignored row's dX"
        );
        // A W of the wrong width: an error, and no output at all.
        let bad = dir.join(format!("bad-{backend}"));
        let (bw, bo) = (path("bad_w.npy"), bad.to_str().unwrap().to_string());
        let r = xent(&[
            "eval",
            "--features",
            &xs,
            "--linear-weight",
            &bw,
            "--labels",
            &ls,
            "--backend",
            backend,
            "--out",
            &bo,
        ]);
        assert!(!r.status.success(), "{backend}: a bad W must fail");
        assert!(String::from_utf8_lossy(&r.stderr).contains("does not match the features X"));
        assert!(!bad.exists(), "{backend}: nothing written on error");
    }
    // d = 0 features: the shape rule of every backend, the reference's included (no panic).
    npy::write_f32(&dir.join("x0.npy"), &[n, 0], &[]).unwrap();
    npy::write_f32(&dir.join("w0.npy"), &[v, 0], &[]).unwrap();
    let (x0, w0, ls) = (path("x0.npy"), path("w0.npy"), path("labels.npy"));
    let o0 = dir.join("zero").to_str().unwrap().to_string();
    for backend in ["reference", "cpu"] {
        let r = xent(&[
            "eval",
            "--features",
            &x0,
            "--linear-weight",
            &w0,
            "--labels",
            &ls,
            "--backend",
            backend,
            "--out",
            &o0,
        ]);
        assert_eq!(
            r.status.code(),
            Some(1),
            "{backend}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("d ≥ 1"),
            "{backend}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval --dtype`: a float16 logits file runs in f16 (its type by default) on every backend, the
/// n×N outputs are the run's values (written as float16 with --write-dtype), bf16 runs from f32
/// files, and the backends agree within one unit of the type; `bench --dtype` labels its GPU rows.
#[test]
fn eval_and_bench_run_in_sixteen_bit_types() {
    let dir = temp_dir("dtype");
    std::fs::create_dir_all(&dir).unwrap();
    let (n, c) = (5usize, 7usize);
    let z: Vec<f32> = (0..n * c)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.37)
        .collect();
    // A float16 .npy written by hand (npy::write_f16 is the writer under test elsewhere).
    npy::write_f16(&dir.join("z16.npy"), &[n, c], &z).unwrap();
    npy::write_f32(&dir.join("z32.npy"), &[n, c], &z).unwrap();
    npy::write_i64(&dir.join("y.npy"), &[n], &[0, 3, 6, 1, 2]).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let mut backends = vec!["reference", "cpu"];
    if !contexts().is_empty() {
        backends.push("gpu");
    }
    let mut grads = Vec::new();
    // `xent eval` of LOGITS with the labels, EXTRA flags, on `b`, into DIR/OUT; it must succeed.
    let eval = |logits: &str, extra: &[&str], b: &str, out: &str| {
        let (logits, labels, out) = (p(logits), p("y.npy"), p(out));
        let mut args = vec![
            "eval",
            "--logits",
            &logits,
            "--labels",
            &labels,
            "--backend",
            b,
        ];
        args.extend_from_slice(extra);
        args.extend(["--out", &out]);
        let r = xent(&args);
        assert!(
            r.status.success(),
            "{b}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    };
    for b in &backends {
        eval("z16.npy", &["--write-dtype"], b, &format!("o16_{b}"));
        let (shape, g, elem) = npy::read_floats(&dir.join(format!("o16_{b}/grad.npy"))).unwrap();
        assert_eq!(
            (shape, elem),
            (vec![n, c], xent::Elem::F16),
            "{b}: grad written as f16"
        );
        assert!(g.iter().all(|&v| xent::Elem::F16.round(v) == v));
        grads.push(g);
        eval("z32.npy", &["--dtype", "bf16"], b, &format!("obf_{b}"));
        let (_, s, elem) = npy::read_floats(&dir.join(format!("obf_{b}/softmax.npy"))).unwrap();
        assert_eq!(elem, xent::Elem::F32, "bf16 outputs are written as f32");
        assert!(
            s.iter().all(|&v| xent::Elem::Bf16.round(v) == v),
            "{b}: bf16 values"
        );
    }
    for g in &grads[1..] {
        for (a, b) in g.iter().zip(&grads[0]) {
            assert!(
                (a - b).abs() <= 2f32.powi(-11) * b.abs().max(2f32.powi(-14)),
                "{a} vs {b}"
            );
        }
    }
    if !contexts().is_empty() {
        let r = xent(&[
            "bench",
            "--shapes",
            "64x100",
            "--reps",
            "1",
            "--json",
            "--dtype",
            "f32,bf16",
            "--ops",
            "copy,ce",
            "--gpu-only",
            "--matmul-shapes",
            "none",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(
            out.contains("\"backend\":\"gpu bf16\"") && out.contains("speedup_vs_f32"),
            "{out}"
        );
        let r = xent(&["check", "--dtype", "bf16", "--shapes", "33x257,40x10"]);
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success() && out.contains("storage: bf16"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
