//! Classification data sets: the embedded UCI handwritten digits, and loaders for user data in CSV
//! or NumPy `.npy` files.
//!
//! The digits (1,797 8×8 images, 64 features, 10 classes) are compiled into the crate from
//! `data/digits.csv.gz`; see `data/README.md` for their origin and licence (CC BY 4.0).
//!
//! ```
//! let (train, test) = xent::data::digits_split()?;
//! assert_eq!((train.n, test.n), (1438, 359));
//! assert_eq!((train.d, train.classes), (64, 10));
//! # Ok::<(), xent::XentError>(())
//! ```

#[cfg(feature = "gzip")]
use std::io::Read;
use std::path::Path;

use crate::error::{Result, XentError};

/// The embedded digits: gzip-compressed CSV, 1,797 rows of 64 pixel counts in 0..=16 and a label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Labels read through `f64` must be exact integers; above 2^53 they no longer are.
const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// A classification data set: row-major features (n × d, f32) and labels (n, in 0..classes).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Row-major features, `n * d` values, all finite.
    pub features: Vec<f32>,
    /// One class label per row, each in `0..classes`.
    pub labels: Vec<i64>,
    /// Number of rows (examples).
    pub n: usize,
    /// Number of features per row.
    pub d: usize,
    /// Number of classes: one more than the largest label of the data the set was loaded from
    /// (a split keeps its parent's count, so train and test agree).
    pub classes: usize,
}

impl Dataset {
    /// The embedded UCI optical handwritten digits: n = 1,797, d = 64, classes = 10, with the
    /// 0..=16 pixel counts scaled by 1/16 into [0, 1].
    ///
    /// Origin and licence are in `data/README.md`. For the fixed train/test split that xent uses,
    /// see [`digits_split`]. Needs the `gzip` feature (on by default); without it this is an error.
    pub fn digits() -> Result<Dataset> {
        let text = gunzip(DIGITS_CSV_GZ, "embedded digits.csv.gz")?;
        let mut ds = parse_csv(&text, "embedded digits.csv.gz")?;
        for x in &mut ds.features {
            *x /= 16.0;
        }
        Ok(ds)
    }

    /// Reads a numeric CSV file: comma-separated, one example per line, the last column the
    /// integer class label (`3` or `3.0`, ≥ 0), every other column a finite feature.
    ///
    /// The file is gunzipped first if its name ends in `.gz`. A first line that does not parse as
    /// numbers is taken as a header and skipped; blank lines and lines starting with `#` are
    /// skipped. `classes` is the largest label plus one.
    ///
    /// # Errors
    ///
    /// [`XentError::Io`] naming the file (and the line, for content errors) when the file cannot
    /// be read or decompressed, is not UTF-8, has no data rows or fewer than two columns, has a
    /// row with a different number of fields than the first data row, a field that is not a
    /// number, a non-finite feature, or a label that is not a non-negative integer.
    pub fn from_csv(path: &Path) -> Result<Dataset> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| io_err(&source, e))?;
        let is_gz = path
            .file_name()
            .and_then(|s| s.to_str())
            .is_some_and(|s| s.to_ascii_lowercase().ends_with(".gz"));
        let text = if is_gz {
            gunzip(&bytes, &source)?
        } else {
            String::from_utf8(bytes).map_err(|e| io_err(&source, format!("not UTF-8 text: {e}")))?
        };
        parse_csv(&text, &source)
    }

    /// Reads features from a float32 `.npy` of shape `[n, d]` and labels from an int64 or int32
    /// `.npy` of shape `[n]` (both C order), through [`crate::npy::read_f32`] and
    /// [`crate::npy::read_labels`]. `classes` is the largest label plus one.
    ///
    /// # Errors
    ///
    /// [`XentError::Io`] naming the file when either cannot be read, has the wrong dtype or rank,
    /// the row counts differ, a feature is non-finite (naming row and column), a label is negative
    /// (naming the row), or there are no rows or no feature columns.
    pub fn from_npy(features: &Path, labels: &Path) -> Result<Dataset> {
        let fsrc = features.display().to_string();
        let lsrc = labels.display().to_string();
        let (fshape, fdata) = crate::npy::read_f32(features)?;
        let fshape = crate::npy::expect_rank(features, &fshape, 2)?;
        let (n, d) = (fshape[0], fshape[1]);
        let (lshape, ldata) = crate::npy::read_labels(labels)?;
        let lshape = crate::npy::expect_rank(labels, &lshape, 1)?;
        if lshape[0] != n {
            return Err(io_err(
                &lsrc,
                format!(
                    "{} labels, but the features {fsrc} have shape [{n}, {d}]: expected {n} labels",
                    lshape[0]
                ),
            ));
        }
        if n == 0 || d == 0 {
            return Err(io_err(
                &fsrc,
                format!("shape [{n}, {d}]: need at least one row and one feature column"),
            ));
        }
        if fdata.len() != n * d {
            return Err(io_err(
                &fsrc,
                format!("{} values for shape [{n}, {d}]", fdata.len()),
            ));
        }
        if let Some(i) = fdata.iter().position(|x| !x.is_finite()) {
            return Err(io_err(
                &fsrc,
                format!(
                    "row {} column {}: non-finite feature {}",
                    i / d,
                    i % d,
                    fdata[i]
                ),
            ));
        }
        let classes = classes_of(&ldata, |row| format!("{lsrc}: row {row}"))?;
        Ok(Dataset {
            features: fdata,
            labels: ldata,
            n,
            d,
            classes,
        })
    }

    /// Splits the rows into `(train, test)`: the row order is shuffled by [`SplitMix64`] seeded
    /// with `seed` (Fisher–Yates), then the first `n − n_test` shuffled rows are train and the
    /// rest test, with `n_test = round(n × test_fraction)` (halves round away from zero).
    ///
    /// Deterministic: the same data, fraction and seed give the same split on every platform.
    /// `test_fraction` is clamped to [0, 1] (NaN counts as 0). Both parts keep `d` and `classes`.
    /// For the digits, `split(0.2, seed)` gives 1,438 train and 359 test rows.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let frac = if test_fraction.is_nan() {
            0.0
        } else {
            test_fraction.clamp(0.0, 1.0)
        };
        let n_test = ((self.n as f64 * frac).round() as usize).min(self.n);
        let mut order: Vec<usize> = (0..self.n).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let (train_rows, test_rows) = order.split_at(self.n - n_test);
        (self.select(train_rows), self.select(test_rows))
    }

    /// Standardizes every feature column in place: `x ← (x − mean[j]) / std[j]`, where a `std[j]`
    /// of 0 is taken as 1 (a constant column is only centred). Usually fed the train set's
    /// [`column_stats`](Dataset::column_stats) and applied to both train and test.
    ///
    /// # Errors
    ///
    /// [`XentError::LengthMismatch`] unless `mean` and `std` both have `d` entries;
    /// [`XentError::InvalidArgument`] if an entry is non-finite or a `std` is negative. The data
    /// are left unchanged on error.
    pub fn standardize(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        for (what, v) in [("standardize mean", mean), ("standardize std", std)] {
            if v.len() != self.d {
                return Err(XentError::LengthMismatch {
                    what,
                    expected: self.d,
                    got: v.len(),
                });
            }
        }
        if let Some(j) = mean.iter().position(|m| !m.is_finite()) {
            return Err(XentError::InvalidArgument(format!(
                "standardize: mean[{j}] = {} is not finite",
                mean[j]
            )));
        }
        if let Some(j) = std.iter().position(|s| !s.is_finite() || *s < 0.0) {
            return Err(XentError::InvalidArgument(format!(
                "standardize: std[{j}] = {} is not a finite non-negative number",
                std[j]
            )));
        }
        if self.d == 0 {
            return Ok(());
        }
        let scale: Vec<f32> = std
            .iter()
            .map(|&s| if s == 0.0 { 1.0 } else { 1.0 / s })
            .collect();
        for row in self.features.chunks_exact_mut(self.d) {
            for ((x, m), k) in row.iter_mut().zip(mean).zip(&scale) {
                *x = (*x - m) * k;
            }
        }
        Ok(())
    }

    /// Per-column mean and population standard deviation (divisor n), accumulated in f64. A
    /// standard deviation of 0 (a constant column, or an empty set) is reported as 1, so the
    /// result can go straight into [`standardize`](Dataset::standardize).
    pub fn column_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let mut sum = vec![0.0f64; self.d];
        if self.n == 0 || self.d == 0 {
            return (vec![0.0; self.d], vec![1.0; self.d]);
        }
        for row in self.features.chunks_exact(self.d) {
            for (s, &x) in sum.iter_mut().zip(row) {
                *s += f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / self.n as f64).collect();
        let mut sq = vec![0.0f64; self.d];
        for row in self.features.chunks_exact(self.d) {
            for ((q, &x), m) in sq.iter_mut().zip(row).zip(&mean) {
                let c = f64::from(x) - m;
                *q += c * c;
            }
        }
        let std = sq
            .iter()
            .map(|q| {
                let s = (q / self.n as f64).sqrt() as f32;
                if s > 0.0 { s } else { 1.0 }
            })
            .collect();
        (mean.iter().map(|&m| m as f32).collect(), std)
    }

    /// The rows with the given indices, in that order, as a new set with the same `d` and
    /// `classes`.
    fn select(&self, rows: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(rows.len() * self.d);
        let mut labels = Vec::with_capacity(rows.len());
        for &r in rows {
            features.extend_from_slice(&self.features[r * self.d..(r + 1) * self.d]);
            labels.push(self.labels[r]);
        }
        Dataset {
            features,
            labels,
            n: rows.len(),
            d: self.d,
            classes: self.classes,
        }
    }
}

/// The fixed split of the embedded digits that xent uses everywhere:
/// `(train, test) = Dataset::digits()?.split(0.2, 0)`, that is 1,438 train and 359 test rows
/// (359 = round(1,797 × 0.2)), shuffled by [`SplitMix64`] with seed 0.
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    Ok(Dataset::digits()?.split(0.2, 0))
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast, seedable 64-bit generator, used here for
/// reproducible shuffles. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed` (any value, 0 included).
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits. From seed 0 the stream starts `0xe220a8397b1dcdaf`,
    /// `0x6e789e6aa1b965f4`, `0x06c45d188009454f`.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Shuffles `items` in place (Fisher–Yates, from the back). Each index in `0..=i` is drawn as
    /// the high 64 bits of `next_u64() × (i + 1)` (bias below 2^-40 for any slice that fits in
    /// memory).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = ((u128::from(self.next_u64()) * (i as u128 + 1)) >> 64) as usize;
            items.swap(i, j);
        }
    }
}

fn io_err(source: &str, reason: impl std::fmt::Display) -> XentError {
    XentError::Io {
        path: source.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(feature = "gzip")]
fn gunzip(bytes: &[u8], source: &str) -> Result<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| io_err(source, format!("gzip: {e}")))?;
    Ok(text)
}

/// Without the `gzip` feature a gzipped input (the embedded digits too) is an error saying so.
#[cfg(not(feature = "gzip"))]
fn gunzip(_bytes: &[u8], source: &str) -> Result<String> {
    Err(io_err(
        source,
        "gzipped input needs xent's `gzip` feature (on by default)",
    ))
}

/// A label read as text: an integer (`3`) or an integral float (`3.0`, `3e0`), ≥ 0.
fn parse_label(field: &str) -> std::result::Result<i64, String> {
    if let Ok(v) = field.parse::<i64>() {
        return if v < 0 {
            Err(format!("label {v} is negative"))
        } else {
            Ok(v)
        };
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() <= MAX_EXACT_F64_INT => {
            if v < 0.0 {
                Err(format!("label {field:?} is negative"))
            } else {
                Ok(v as i64)
            }
        }
        Ok(_) => Err(format!("label {field:?} is not an integer")),
        Err(_) => Err(format!("label {field:?} is not a number")),
    }
}

/// `classes` = max label + 1; `Err` for a negative label (naming it through `at(row)`).
fn classes_of(labels: &[i64], at: impl Fn(usize) -> String) -> Result<usize> {
    let mut max = 0i64;
    for (row, &l) in labels.iter().enumerate() {
        if l < 0 {
            return Err(XentError::InvalidArgument(format!(
                "{}: label {l} is negative",
                at(row)
            )));
        }
        max = max.max(l);
    }
    usize::try_from(max)
        .ok()
        .and_then(|m| m.checked_add(1))
        .ok_or_else(|| XentError::InvalidArgument(format!("label {max} is too large")))
}

/// Parses the CSV text described at [`Dataset::from_csv`]; `source` names it in errors.
fn parse_csv(text: &str, source: &str) -> Result<Dataset> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut cols: Option<usize> = None;
    let mut seen_first = false;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = !seen_first;
        seen_first = true;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = |reason: String| io_err(source, format!("line {line_no}: {reason}"));

        // A first line that is not all numbers is a header.
        if first && fields.iter().any(|f| f.parse::<f64>().is_err()) {
            continue;
        }
        let expected = *cols.get_or_insert(fields.len());
        if expected < 2 {
            return Err(at(format!(
                "{} field(s): need at least one feature column and a label column",
                fields.len()
            )));
        }
        if fields.len() != expected {
            return Err(at(format!(
                "{} fields, expected {expected} like the first data row",
                fields.len()
            )));
        }
        let (label, feats) = fields.split_last().expect("at least two fields");
        for (j, f) in feats.iter().enumerate() {
            let x: f32 = f
                .parse()
                .map_err(|_| at(format!("column {}: {f:?} is not a number", j + 1)))?;
            if !x.is_finite() {
                return Err(at(format!("column {}: feature {f:?} is not finite", j + 1)));
            }
            features.push(x);
        }
        labels.push(parse_label(label).map_err(at)?);
    }
    let Some(cols) = cols else {
        return Err(io_err(source, "no data rows"));
    };
    let classes = classes_of(&labels, |row| format!("{source}: data row {row}"))?;
    Ok(Dataset {
        n: labels.len(),
        d: cols - 1,
        features,
        labels,
        classes,
    })
}

#[cfg(test)]
mod tests;
