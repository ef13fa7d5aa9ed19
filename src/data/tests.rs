//! Tests of the data sets: the embedded digits, CSV and .npy loading, splits and standardisation.

use super::*;
use std::io::Write;
use std::path::PathBuf;

/// A temp path unique to this process and test.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xent-data-{}-{name}", std::process::id()))
}

fn write_temp(name: &str, contents: &str) -> PathBuf {
    let path = temp_path(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn csv_err(name: &str, contents: &str) -> String {
    let path = write_temp(name, contents);
    let err = Dataset::from_csv(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    err
}

#[test]
fn splitmix64_reference_stream() {
    let mut g = SplitMix64::new(0);
    assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(g.next_u64(), 0x06c4_5d18_8009_454f);
}

#[test]
fn shuffle_is_a_seeded_permutation() {
    let mut a: Vec<u32> = (0..100).collect();
    let mut b = a.clone();
    SplitMix64::new(7).shuffle(&mut a);
    SplitMix64::new(7).shuffle(&mut b);
    assert_eq!(a, b);
    assert_ne!(a, (0..100).collect::<Vec<_>>());
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    let mut empty: [u8; 0] = [];
    SplitMix64::new(0).shuffle(&mut empty);
}

#[test]
fn digits_loads() {
    let ds = Dataset::digits().unwrap();
    assert_eq!((ds.n, ds.d, ds.classes), (1797, 64, 10));
    assert_eq!(ds.features.len(), 1797 * 64);
    assert_eq!(ds.labels.len(), 1797);
    assert!(ds.features.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert_eq!(ds.features.iter().copied().fold(0.0f32, f32::max), 1.0);
    // Pixel counts 0..=16 scaled by 1/16 are exact multiples of 1/16.
    assert!(ds.features.iter().all(|&x| (x * 16.0).fract() == 0.0));
    let mut counts = [0usize; 10];
    for &l in &ds.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    // The first image of the file is a 0.
    assert_eq!(ds.labels[0], 0);
    assert_eq!(ds.features[2], 5.0 / 16.0);
}

fn sorted_rows(sets: &[&Dataset]) -> Vec<(Vec<u32>, i64)> {
    let mut rows: Vec<(Vec<u32>, i64)> = sets
        .iter()
        .flat_map(|s| {
            s.features
                .chunks_exact(s.d)
                .zip(&s.labels)
                .map(|(r, &l)| (r.iter().map(|x| x.to_bits()).collect(), l))
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn digits_split_sizes_and_determinism() {
    let all = Dataset::digits().unwrap();
    let (train, test) = digits_split().unwrap();
    assert_eq!((train.n, test.n), (1438, 359));
    assert_eq!(train.features.len(), 1438 * 64);
    assert_eq!(test.labels.len(), 359);
    assert_eq!(
        (train.d, test.d, train.classes, test.classes),
        (64, 64, 10, 10)
    );
    // The split is a partition of the rows.
    assert_eq!(sorted_rows(&[&train, &test]), sorted_rows(&[&all]));
    // Same seed, same split; another seed, another one.
    let (train2, test2) = all.split(0.2, 0);
    assert_eq!(train.labels, train2.labels);
    assert_eq!(train.features, train2.features);
    assert_eq!(test.features, test2.features);
    let (train3, _) = all.split(0.2, 1);
    assert_ne!(train.features, train3.features);
    // Every class is in the test set.
    let mut counts = [0usize; 10];
    for &l in &test.labels {
        counts[l as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c > 15), "{counts:?}");
}

#[test]
fn split_fraction_edges() {
    let ds = Dataset::digits().unwrap();
    assert_eq!(ds.split(0.0, 3).1.n, 0);
    assert_eq!(ds.split(1.0, 3).0.n, 0);
    assert_eq!(ds.split(2.0, 3).1.n, 1797);
    assert_eq!(ds.split(-1.0, 3).1.n, 0);
    assert_eq!(ds.split(f64::NAN, 3).0.n, 1797);
    assert_eq!(ds.split(0.5, 3).1.n, 899); // 898.5 rounds up
}

#[test]
fn csv_round_trip_with_header() {
    let path = write_temp(
        "roundtrip.csv",
        "x0, x1 ,label\n0.5,-1,2\n\n# a comment\n3e-1,4,0.0\r\n1,1,1\n",
    );
    let ds = Dataset::from_csv(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((ds.n, ds.d, ds.classes), (3, 2, 3));
    assert_eq!(ds.features, vec![0.5, -1.0, 0.3, 4.0, 1.0, 1.0]);
    assert_eq!(ds.labels, vec![2, 0, 1]);

    // Written back out as CSV (gzipped this time) and read again: identical.
    let mut text = String::new();
    for (row, l) in ds.features.chunks_exact(ds.d).zip(&ds.labels) {
        let cells: Vec<String> = row.iter().map(|x| x.to_string()).collect();
        text.push_str(&format!("{},{l}\n", cells.join(",")));
    }
    let gz = temp_path("roundtrip.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let back = Dataset::from_csv(&gz).unwrap();
    std::fs::remove_file(&gz).unwrap();
    assert_eq!(back.features, ds.features);
    assert_eq!(back.labels, ds.labels);
    assert_eq!((back.n, back.d, back.classes), (3, 2, 3));
}

#[test]
fn csv_bad_rows_are_named() {
    let e = csv_err("ragged.csv", "a,b,y\n1,2,0\n1,2,3,0\n");
    assert!(
        e.contains("line 3") && e.contains("4 fields, expected 3"),
        "{e}"
    );
    let e = csv_err("neg.csv", "1,2,0\n1,2,-1\n");
    assert!(e.contains("line 2") && e.contains("negative"), "{e}");
    let e = csv_err("frac.csv", "1,2,0\n1,2,1.5\n");
    assert!(e.contains("line 2") && e.contains("not an integer"), "{e}");
    let e = csv_err("nan.csv", "1,2,0\n1,nan,1\n");
    assert!(
        e.contains("line 2") && e.contains("column 2") && e.contains("not finite"),
        "{e}"
    );
    let e = csv_err("inf.csv", "1,1e40,0\n");
    assert!(e.contains("line 1") && e.contains("not finite"), "{e}");
    let e = csv_err("word.csv", "h,h,h\n1,2,0\n1,x,0\n");
    assert!(
        e.contains("line 3") && e.contains("\"x\" is not a number"),
        "{e}"
    );
    let e = csv_err("empty.csv", "just,a,header\n");
    assert!(e.contains("no data rows"), "{e}");
    let e = csv_err("onecol.csv", "1\n2\n");
    assert!(
        e.contains("line 1") && e.contains("at least one feature"),
        "{e}"
    );
    let e = Dataset::from_csv(&temp_path("missing.csv")).unwrap_err();
    assert!(matches!(e, XentError::Io { .. }), "{e}");
    let e = csv_err("notgz.csv.gz", "1,2,0\n");
    assert!(e.contains("gzip"), "{e}");
}

fn write_labels_npy(path: &Path, labels: &[i64]) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[labels.len() as u64])
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(labels.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn npy_round_trip_and_shape_errors() {
    let fx = temp_path("x.npy");
    let fy = temp_path("y.npy");
    let fy_short = temp_path("y_short.npy");
    let fy_neg = temp_path("y_neg.npy");
    let fx_nan = temp_path("x_nan.npy");
    crate::npy::write_f32(&fx, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    crate::npy::write_f32(&fx_nan, &[2, 2], &[1.0, 2.0, 3.0, f32::NAN]).unwrap();
    write_labels_npy(&fy, &[0, 4, 1]);
    write_labels_npy(&fy_short, &[0, 1]);
    write_labels_npy(&fy_neg, &[0, -2, 1]);

    let ds = Dataset::from_npy(&fx, &fy).unwrap();
    assert_eq!((ds.n, ds.d, ds.classes), (3, 2, 5));
    assert_eq!(ds.labels, vec![0, 4, 1]);
    assert_eq!(ds.features, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    let e = Dataset::from_npy(&fx, &fy_short).unwrap_err().to_string();
    assert!(e.contains("2 labels") && e.contains("expected 3"), "{e}");
    let e = Dataset::from_npy(&fx, &fy_neg).unwrap_err().to_string();
    assert!(e.contains("row 1") && e.contains("negative"), "{e}");
    let e = Dataset::from_npy(&fx_nan, &fy_short)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 1 column 1") && e.contains("non-finite"),
        "{e}"
    );
    // Labels given where features belong: rank 1, not 2 (and the wrong dtype).
    assert!(Dataset::from_npy(&fy, &fy).is_err());
    for p in [fx, fy, fy_short, fy_neg, fx_nan] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn column_stats_and_standardize() {
    let mut ds = Dataset {
        features: vec![1.0, 5.0, 3.0, 5.0],
        labels: vec![0, 1],
        n: 2,
        d: 2,
        classes: 2,
    };
    let (mean, std) = ds.column_stats();
    assert_eq!(mean, vec![2.0, 5.0]);
    assert_eq!(std, vec![1.0, 1.0]); // the constant column's 0 is reported as 1
    ds.standardize(&mean, &std).unwrap();
    assert_eq!(ds.features, vec![-1.0, 0.0, 1.0, 0.0]);
    // A zero std passed in is also taken as 1.
    ds.standardize(&[0.0, 0.0], &[2.0, 0.0]).unwrap();
    assert_eq!(ds.features, vec![-0.5, 0.0, 0.5, 0.0]);

    let before = ds.features.clone();
    assert!(matches!(
        ds.standardize(&[0.0], &[1.0, 1.0]),
        Err(XentError::LengthMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(ds.standardize(&[0.0, 0.0], &[1.0, -1.0]).is_err());
    assert!(ds.standardize(&[f32::NAN, 0.0], &[1.0, 1.0]).is_err());
    assert_eq!(ds.features, before);

    // Standardized digits (train statistics): train columns have mean ≈ 0.
    let (mut train, _) = digits_split().unwrap();
    let (m, s) = train.column_stats();
    train.standardize(&m, &s).unwrap();
    let (m2, _) = train.column_stats();
    assert!(m2.iter().all(|x| x.abs() < 1e-5), "{m2:?}");
}
