//! `xent bench`'s table (or JSON lines) of the memory-bound ops and the matmul: each row against the
//! copy of the same shape on the same backend and storage type (its roofline), the GPU against the
//! fast CPU path, and a 16-bit GPU row against the f32 kernel of the same op and shape.

use xent::cpu;

use super::bench_plot::Measurement;
use super::print_table;

/// Prints `results` (measured on `adapter`) as a table, or as one JSON object per line.
pub fn print(results: &[Measurement], adapter: &str, json: bool) {
    // The roofline of a row: the copy of the same shape on the same backend (the GPU's copy kernel
    // in the same storage type; the CPU path's multithreaded copy). The reference has none.
    let copy = |m: &Measurement| {
        results
            .iter()
            .find(|c| c.op == "copy" && c.backend == m.backend && (c.n, c.k) == (m.n, m.k))
            .filter(|_| m.backend != "reference")
    };
    let roofline = |m: &Measurement| copy(m).map(Measurement::gbps);
    // Kernel against kernel: both timed by timestamps, where the adapter has them.
    let gpu_pct = |m: &Measurement| {
        let c = copy(m)?.gpu_gbps()?;
        Some(100.0 * m.gpu_gbps()? / c)
    };
    let same_op = |m: &Measurement, backend: &str| {
        results
            .iter()
            .find(|c| c.op == m.op && c.backend == backend && (c.n, c.k, c.d) == (m.n, m.k, m.d))
            .map(|c| c.median_ms)
    };
    let cpu_ms = |m: &Measurement| same_op(m, "cpu");
    // Elements per second over the f32 kernel's (a 16-bit GPU row only).
    let vs_f32 = |m: &Measurement| {
        (m.backend.starts_with("gpu ")).then(|| same_op(m, "gpu").map(|f| f / m.median_ms))?
    };
    if json {
        for m in results {
            let obj = serde_json::json!({
                "op": m.op, "n": m.n, "k": m.k, "backend": m.backend, "adapter": adapter,
                "median_ms": m.median_ms, "gpu_ms": m.gpu_ms, "gbps": m.gbps(),
                "gflops": m.gflops(), "d": m.d,
                "gpu_gbps": m.gpu_gbps(),
                "pct_of_copy": roofline(m).filter(|_| m.flops.is_none()).map(|c| 100.0 * m.gbps() / c),
                "cpu_isa": (m.backend == "cpu").then(|| cpu::isa().to_string()),
                "gpu_pct_of_copy": gpu_pct(m),
                "speedup_vs_cpu": m.backend.starts_with("gpu").then(|| cpu_ms(m).map(|c| c / m.median_ms)).flatten(),
                "speedup_vs_f32": vs_f32(m),
            });
            println!("{obj}");
        }
        return;
    }
    println!(
        "adapter: {adapter}; CPU path: {} threads, {}",
        rayon::current_num_threads(),
        cpu::isa()
    );
    if results.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            let pct = match (roofline(m), m.flops) {
                (Some(c), None) => format!("{:.0}%", 100.0 * m.gbps() / c),
                _ => "-".into(),
            };
            let gpu_pct = match m.flops {
                None => gpu_pct(m).map_or("-".into(), |p| format!("{p:.0}%")),
                Some(_) => "-".into(),
            };
            let speedup = match cpu_ms(m) {
                Some(c) if m.backend.starts_with("gpu") => format!("{:.2}x", c / m.median_ms),
                _ => "-".into(),
            };
            let shape = match m.d {
                Some(d) => format!("{}x{}x{}", m.n, d, m.k),
                None => format!("{}x{}", m.n, m.k),
            };
            vec![
                m.op.clone(),
                shape,
                m.backend.clone(),
                format!("{:.3}", m.median_ms),
                m.gpu_ms.map_or("-".into(), |g| format!("{g:.3}")),
                format!("{:.2}", m.gbps()),
                m.gpu_gbps()
                    .filter(|_| m.flops.is_none())
                    .map_or("-".into(), |g| format!("{g:.2}")),
                m.gflops().map_or("-".into(), |f| format!("{f:.2}")),
                pct,
                gpu_pct,
                speedup,
                vs_f32(m).map_or("-".into(), |r| format!("{r:.2}x")),
            ]
        })
        .collect();
    print_table(
        &[
            "op",
            "shape",
            "backend",
            "median ms",
            "GPU ms",
            "GB/s",
            "GPU GB/s",
            "GFLOP/s",
            "% of copy",
            "GPU % of copy",
            "GPU÷CPU",
            "÷ f32",
        ],
        &rows,
    );
    println!(
        "GB/s and GFLOP/s from wall time (launch + wait), bytes at the storage width; GPU ms and GPU GB/s from timestamp queries; % of copy = GB/s over the copy of the same shape on the same backend and type (the GPU's copy kernel; the CPU path's multithreaded copy; GPU % of copy: both from timestamps); GPU÷CPU against the fast CPU path; ÷ f32 = elements per second over the f32 GPU kernel's"
    );
}
