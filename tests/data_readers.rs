//! Data readers: the error rules (line and column named), header detection, dtypes, and random or
//! truncated bytes (an error, never a panic).

use gradscale::data::{
    self, parse_csv_labelled, parse_idx, parse_npy, CsvOptions, Split, Standardize,
};
use proptest::prelude::*;

fn csv(text: &str) -> Result<data::Dataset, String> {
    parse_csv_labelled(text, "t.csv", &CsvOptions::default()).map_err(|e| e.to_string())
}

#[test]
fn csv_errors_name_line_and_column() {
    let e = csv("1,2,0\n3,,1\n").unwrap_err();
    assert!(e.contains("line 2, column 2: empty cell"), "{e}");
    let e = csv("1,2,0\n3,4\n").unwrap_err();
    assert!(e.contains("line 2: 2 cells, the first row has 3"), "{e}");
    let e = csv("1,2,0\n3,x,1\n").unwrap_err();
    assert!(e.contains("line 2, column 2: \"x\" is not a number"), "{e}");
    let e = csv("1,2,0.5\n").unwrap_err();
    assert!(e.contains("line 1, column 3: label 0.5"), "{e}");
    let e = csv("1,2,-1\n").unwrap_err();
    assert!(e.contains("label -1"), "{e}");
}

#[test]
fn csv_header_and_label_column() {
    let d = csv("a,b,label\n1,2,0\n3,4,2\n").unwrap();
    assert_eq!(
        (d.x.clone(), d.y.clone(), d.classes),
        (vec![vec![1.0, 2.0], vec![3.0, 4.0]], vec![0, 2], 3)
    );
    // A numeric first row is data unless --header says otherwise.
    let o = CsvOptions {
        header: Some(true),
        label_column: Some(0),
    };
    let d = parse_csv_labelled("9,9,9\n1,2,3\n", "t", &o).unwrap();
    assert_eq!((d.x, d.y), (vec![vec![2.0, 3.0]], vec![1]));
}

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(data);
    b
}

#[test]
fn npy_integer_and_nd_arrays() {
    let a = parse_npy(&npy("|u1", "(2, 2, 2)", &[0, 1, 2, 3, 4, 5, 6, 255]), "x").unwrap();
    assert_eq!(a.shape, vec![2, 2, 2]);
    assert_eq!(
        a.rows(),
        vec![vec![0.0, 1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0, 255.0]]
    );
    let mut raw = Vec::new();
    for v in [-3i64, 7] {
        raw.extend(v.to_le_bytes());
    }
    assert_eq!(
        parse_npy(&npy("<i8", "(2,)", &raw), "x").unwrap().data,
        vec![-3.0, 7.0]
    );
    let e = parse_npy(&npy("<c16", "(1,)", &[0; 16]), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("c16"), "{e}");
    // A shape larger than the bytes present is refused before allocating.
    let e = parse_npy(&npy("<f8", "(100000000000, 100000000000)", &[0; 8]), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn idx_reads_mnist_layout() {
    let mut b = vec![0, 0, 0x08, 3];
    for d in [2u32, 2, 2] {
        b.extend(d.to_be_bytes());
    }
    b.extend([1, 2, 3, 4, 5, 6, 7, 8]);
    let a = parse_idx(&b, "x").unwrap();
    assert_eq!(
        a.rows(),
        vec![vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0, 7.0, 8.0]]
    );
    assert!(parse_idx(&b[..b.len() - 1], "x").is_err());
}

#[test]
fn digits_split_and_standardisation() {
    let p = data::prepare(
        "digits",
        None,
        &CsvOptions::default(),
        Split::None,
        Standardize::None,
    )
    .unwrap();
    assert_eq!(
        (p.train.len(), p.train.dim(), p.train.classes),
        (1797, 64, 10)
    );
    assert!(p.test.is_none());
    // Values are the raw pixel counts 0..16.
    assert!(p
        .train
        .x
        .iter()
        .flatten()
        .all(|v| (0.0..=16.0).contains(v) && v.fract() == 0.0));
    let g = data::prepare(
        "digits",
        None,
        &CsvOptions::default(),
        Split::Fixed,
        Standardize::Global,
    )
    .unwrap();
    let vals: Vec<f64> = g.train.x.iter().flatten().copied().collect();
    let m = vals.iter().sum::<f64>() / vals.len() as f64;
    let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
    assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12, "{m} {v}");
    let e = data::prepare(
        "/nonexistent.npy",
        None,
        &CsvOptions::default(),
        Split::Fixed,
        Standardize::None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent.npy"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_npy(&bytes, "r");
        let _ = parse_idx(&bytes, "r");
        let _ = parse_csv_labelled(&String::from_utf8_lossy(&bytes), "r", &CsvOptions::default());
    }

    #[test]
    fn truncated_headers_never_panic(cut in 0usize..140, hdr in proptest::collection::vec(any::<u8>(), 0..12)) {
        let full = npy("<f8", "(2, 3)", &[0u8; 48]);
        let mut b = full[..cut.min(full.len())].to_vec();
        b.extend(hdr);
        let _ = parse_npy(&b, "t");
        let mut i = vec![0u8, 0, 0x0d, 2];
        i.extend(&b);
        let _ = parse_idx(&i, "t");
    }
}
