//! Checkpoints: the PyTorch-layout fixture written by tests/independent/torch_layout_gsc.py (numpy only)
//! measured against that script's own Jacobians; round trips; bad files.

use gradscale::arch::{load_file_named, to_toml_string, InputData, ParamNames};
use gradscale::checkpoint::{self, load_params, serialize, SafeTensors, Tensor};
use gradscale::montecarlo::{
    draw_params, forward, outcome, simulate_given, Estimator, GivenInputs, McOptions, OpParams,
};
use gradscale::Error;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;

fn data(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

#[test]
fn pytorch_layout_fixture_agrees_with_independent_jacobians() {
    let (net, names) = load_file_named(&data("torch_mlp.toml")).unwrap();
    let params =
        checkpoint::load_params_file(&net, &names, &data("torch_mlp.safetensors")).unwrap();
    let inputs = InputData::load(&data("torch_mlp_inputs.npy")).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("torch_mlp_gsc.json")).unwrap())
            .unwrap();
    let rows = want["rows"].as_array().unwrap();
    assert_eq!(rows.len(), inputs.vectors.len());
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    for (r, x) in rows.iter().zip(&inputs.vectors) {
        let xm = DMatrix::from_column_slice(x.len(), 1, x);
        let tr = forward(&net, &params, xm);
        let o = outcome(&net, &params, &tr, Estimator::Exact, &mut rng);
        for l in 0..=3 {
            let a = r["to_output"][l].as_f64().unwrap();
            let b = r["from_input"][l].as_f64().unwrap();
            // float64 round-off through three 6x6 layers is ~1e-15; 1e-9 is the bound.
            assert!(
                (o.log_gsc_to_output[l] - a).abs() < 1e-9,
                "to_output {l}: {} vs {a}",
                o.log_gsc_to_output[l]
            );
            assert!(
                (o.log_gsc_from_input[l] - b).abs() < 1e-9,
                "from_input {l}: {} vs {b}",
                o.log_gsc_from_input[l]
            );
        }
    }
    // The library's given-network measurement: each row once, in order.
    let m = simulate_given(
        &net,
        &params,
        GivenInputs::Rows(&inputs.vectors),
        &McOptions {
            samples: 5,
            seed: 0,
            estimator: Estimator::Exact,
        },
        &|_| {},
    )
    .unwrap();
    for (i, r) in rows.iter().enumerate() {
        let a = r["to_output"][0].as_f64().unwrap();
        assert!((m.log_gsc_to_output_samples[0][i] - a).abs() < 1e-9);
    }
}

#[test]
fn flax_layout_reads_the_transposed_kernel() {
    let (net, mut names) = load_file_named(&data("torch_mlp.toml")).unwrap();
    let st = SafeTensors::read_file(&data("torch_mlp.safetensors")).unwrap();
    let torch = load_params(&net, &names, &st).unwrap();
    // Write every kernel as [in, out] and say so on the op: the same matrices come back.
    let mut flax_names = names.clone();
    for l in 0..3 {
        flax_names.set_layout(&[l, 0], gradscale::arch::Layout::InOut);
    }
    let bytes = serialize(
        &checkpoint::to_tensors(&net, &flax_names, &torch),
        &BTreeMap::new(),
    );
    let st2 = SafeTensors::parse(bytes, "flax").unwrap();
    assert_eq!(st2.tensor("0.weight").unwrap().shape, vec![4, 6]);
    let back = load_params(&net, &flax_names, &st2).unwrap();
    for (a, b) in torch.iter().zip(&back) {
        if let (OpParams::Dense { w: wa, .. }, OpParams::Dense { w: wb, .. }) = (&a[0], &b[0]) {
            assert_eq!(wa, wb);
        }
    }
    // Read with the default layout, the transposed kernel is refused with a hint.
    let e = load_params(&net, &names, &st2).unwrap_err().to_string();
    assert!(
        e.contains("\"0.weight\"") && e.contains("[4, 6]") && e.contains("in-out"),
        "{e}"
    );
    names.ops.clear();
}

#[test]
fn round_trip_is_bit_exact_and_the_arch_file_reloads() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resnet-batch-relu.toml"),
    )
    .unwrap();
    let (mut net, _) = gradscale::arch::from_toml_str_named(&text, "resnet").unwrap();
    net.layers.truncate(2);
    let names = checkpoint::explicit_names(&net);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
    let params = draw_params(&net, &mut rng);
    let bytes = serialize(
        &checkpoint::to_tensors(&net, &names, &params),
        &BTreeMap::new(),
    );
    let toml = to_toml_string(&net, &names, "rt");
    let (net2, names2) = gradscale::arch::from_toml_str_named(&toml, "rt.toml").unwrap();
    assert_eq!(net2, net);
    assert_eq!(names2, names);
    let back = load_params(
        &net2,
        &names2,
        &SafeTensors::parse(bytes.clone(), "rt").unwrap(),
    )
    .unwrap();
    let bytes2 = serialize(
        &checkpoint::to_tensors(&net2, &names2, &back),
        &BTreeMap::new(),
    );
    assert_eq!(bytes, bytes2);
}

fn one_tensor(name: &str, dtype: &str, shape: &[usize], raw: &[u8]) -> Vec<u8> {
    let h =
        serde_json::json!({name: {"dtype": dtype, "shape": shape, "data_offsets": [0, raw.len()]}});
    let h = serde_json::to_vec(&h).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(raw);
    out
}

#[test]
fn half_precision_dtypes_convert_exactly() {
    let f16 = one_tensor("t", "F16", &[2], &[0x00, 0x3c, 0x00, 0xc0]); // 1.0, -2.0
    assert_eq!(
        SafeTensors::parse(f16, "h")
            .unwrap()
            .tensor("t")
            .unwrap()
            .data,
        vec![1.0, -2.0]
    );
    // 0xbfc0 = -1.5, stored little-endian; its two bytes differ, so a swapped byte order reads -5.97.
    let bf16 = one_tensor("t", "BF16", &[1], &[0xc0, 0xbf]);
    assert_eq!(
        SafeTensors::parse(bf16, "h")
            .unwrap()
            .tensor("t")
            .unwrap()
            .data,
        vec![-1.5]
    );
    let f32b = one_tensor("t", "F32", &[1], &0.5f32.to_le_bytes());
    assert_eq!(
        SafeTensors::parse(f32b, "h")
            .unwrap()
            .tensor("t")
            .unwrap()
            .data,
        vec![0.5]
    );
}

#[test]
fn bad_checkpoints_are_one_clear_error() {
    let (net, names) = load_file_named(&data("torch_mlp.toml")).unwrap();
    let st = SafeTensors::read_file(&data("torch_mlp.safetensors")).unwrap();
    let params = load_params(&net, &names, &st).unwrap();
    let mut t = checkpoint::to_tensors(&net, &names, &params);
    let msg = |t: &BTreeMap<String, Tensor>| {
        let st = SafeTensors::parse(serialize(t, &BTreeMap::new()), "bad.safetensors").unwrap();
        load_params(&net, &names, &st).unwrap_err().to_string()
    };
    let mut missing = t.clone();
    missing.remove("2.weight");
    let e = msg(&missing);
    assert!(
        e.contains("no tensor \"2.weight\"") && e.contains("layer 2"),
        "{e}"
    );
    // A named bias must be present too.
    let mut nobias = t.clone();
    nobias.remove("4.bias");
    assert!(msg(&nobias).contains("4.bias"));
    let mut shape = t.clone();
    shape.insert(
        "2.weight".into(),
        Tensor {
            shape: vec![5, 7],
            data: vec![0.0; 35],
        },
    );
    let e = msg(&shape);
    assert!(e.contains("[5, 7]") && e.contains("[5, 6]"), "{e}");
    t.get_mut("0.bias").unwrap().data[2] = f64::NAN;
    let e = msg(&t);
    assert!(e.contains("\"0.bias\"") && e.contains("non-finite"), "{e}");
    let i64t = one_tensor("0.weight", "I64", &[1], &[0; 8]);
    let e = SafeTensors::parse(i64t, "x").unwrap_err().to_string();
    assert!(e.contains("I64"), "{e}");
    // An absurd header length or shape is refused before allocating.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    assert!(SafeTensors::parse(huge, "x")
        .unwrap_err()
        .to_string()
        .contains("claims"));
    let big = one_tensor("t", "F64", &[1 << 40, 1 << 40], &[0; 8]);
    assert!(SafeTensors::parse(big, "x").is_err());
    // Truncated: every prefix of a valid file is an error.
    let full = std::fs::read(data("torch_mlp.safetensors")).unwrap();
    for cut in 0..full.len() {
        let r = SafeTensors::parse(full[..cut].to_vec(), "cut");
        assert!(
            r.is_err() || r.unwrap().tensor("4.bias").is_err(),
            "prefix {cut} accepted"
        );
    }
    let e: Error = gradscale::arch::from_toml_str_named(
        "[input]\nwidth = 2\n[[layers]]\nrepeat = 2\nops = [{ dense = { width = 2, sigma_w2 = 1.0, weight = \"w\" } }]\n",
        "dup.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("{layer}"), "{e}");
    let _ = ParamNames::default();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(st) = SafeTensors::parse(bytes, "random") {
            let names: Vec<String> = st.names().cloned().collect();
            for n in names {
                let _ = st.tensor(&n);
            }
        }
    }

    #[test]
    fn corrupted_fixture_never_panics(pos in 0usize..1088, byte in any::<u8>()) {
        let mut b = std::fs::read(data("torch_mlp.safetensors")).unwrap();
        let p = pos % b.len();
        b[p] = byte;
        if let Ok(st) = SafeTensors::parse(b, "corrupt") {
            let (net, names) = load_file_named(&data("torch_mlp.toml")).unwrap();
            let _ = load_params(&net, &names, &st);
        }
    }
}
