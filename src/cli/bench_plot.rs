//! `xent bench`'s measurements, and `--plot`: GB/s against shape, one line per (op, backend), as SVG.

use xent::XentError;

/// One measurement.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub op: String,
    pub n: usize,
    pub k: usize,
    pub backend: String,
    pub median_ms: f64,
    pub gpu_ms: Option<f64>,
    pub bytes: f64,
    /// Floating-point operations, for the matmul (`k` is then N·C's C and `d` the inner size).
    pub flops: Option<f64>,
    pub d: Option<usize>,
}

impl Measurement {
    pub fn gbps(&self) -> f64 {
        self.bytes / (self.median_ms * 1e-3) / 1e9
    }

    /// GB/s over the GPU-timestamp time (the kernels alone, no submission or wait).
    pub fn gpu_gbps(&self) -> Option<f64> {
        self.gpu_ms.map(|g| self.bytes / (g * 1e-3) / 1e9)
    }

    pub fn gflops(&self) -> Option<f64> {
        self.flops.map(|f| f / (self.median_ms * 1e-3) / 1e9)
    }
}

/// GB/s against shape, one line per (op, backend), as SVG.
pub fn plot(
    path: &std::path::Path,
    results: &[Measurement],
    adapter: &str,
) -> Result<(), XentError> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| XentError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for m in results {
        if !shapes.contains(&(m.n, m.k)) {
            shapes.push((m.n, m.k));
        }
    }
    let ymax = results.iter().map(Measurement::gbps).fold(0.0, f64::max) * 1.15 + 1e-9;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("xent throughput — {adapter}"), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(shapes.len() as f64 - 0.5), 0.0..ymax)
        .map_err(|e| err(&e))?;
    let labels = shapes.clone();
    chart
        .configure_mesh()
        .x_labels(shapes.len())
        .x_label_formatter(&|v| {
            let i = v.round() as usize;
            labels
                .get(i)
                .map_or(String::new(), |(n, k)| format!("{n}x{k}"))
        })
        .y_desc("GB/s")
        .draw()
        .map_err(|e| err(&e))?;
    let mut series: Vec<(String, String)> = Vec::new();
    for m in results {
        let key = (m.op.clone(), m.backend.clone());
        if !series.contains(&key) {
            series.push(key);
        }
    }
    for (i, (op, backend)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = results
            .iter()
            .filter(|m| &m.op == op && &m.backend == backend)
            .map(|m| {
                (
                    shapes.iter().position(|&s| s == (m.n, m.k)).unwrap_or(0) as f64,
                    m.gbps(),
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{op} / {backend}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
