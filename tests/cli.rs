//! The command line as a user meets it: bad input is one line on stderr with exit code 2 and nothing on
//! stdout; --json is machine-readable with the documented keys; plot and audit write their files.

use serde_json::Value;
use std::process::Command;

mod common;
use common::run;

#[test]
fn bad_input_is_one_line_exit_2_no_stdout() {
    let cases: &[(&[&str], &str)] = &[
        (&["predict", "--width", "0"], "--width"),
        (&["predict", "--depth", "0"], "--depth"),
        (&["predict", "--sigma-w2", "-1"], "--sigma-w2"),
        (&["predict", "--sigma-w2", "inf"], "--sigma-w2"),
        (&["predict", "--sigma-w2", "nan"], "--sigma-w2"),
        (&["predict", "--sigma-b2", "-0.5"], "--sigma-b2"),
        (&["predict", "--act", "softsign"], "--act"),
        (&["predict", "--act", "leaky-relu:2"], "--act"),
        (&["simulate", "--samples", "0"], "--samples"),
        (&["simulate", "--samples", "abc"], "--samples"),
        (&["simulate", "--width", "1e3"], "--width"),
        (&["check", "--alpha", "2"], "--alpha"),
        (
            &["simulate", "--probes", "1", "--width", "4", "--depth", "1"],
            "--probes",
        ),
        (
            &["predict", "--arch", "/nonexistent/file.toml"],
            "/nonexistent/file.toml",
        ),
        (
            &["predict", "--input-correlation", "1"],
            "--input-correlation",
        ),
    ];
    for (args, flag) in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: exit code {code}, stderr {stderr}");
        assert!(stdout.is_empty(), "{args:?}: printed {stdout}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: stderr {stderr}"
        );
        assert!(
            stderr.contains(flag),
            "{args:?}: stderr does not name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn predict_json_has_the_documented_keys() {
    let (code, stdout, stderr) = run(&[
        "predict",
        "--act",
        "selu",
        "--width",
        "50",
        "--depth",
        "7",
        "--sigma-w2",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("valid JSON");
    let layers = v["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 8);
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["index"].as_u64(), Some(i as u64));
        for key in ["q", "sq_norm", "log_gsc_to_output", "log_gsc_from_input"] {
            assert!(l[key].as_f64().is_some(), "layer {i}: {key} missing in {l}");
        }
    }
    // SELU at q* = 1: ln GSC(L, 0) = (L/2) ln chi_1.
    let got = layers[0]["log_gsc_to_output"].as_f64().unwrap();
    assert!(
        (got - 3.5 * 1.071574992455799f64.ln()).abs() < 1e-10,
        "{got}"
    );
}

#[test]
fn simulate_json_is_reproducible_and_has_mean_and_stderr() {
    let args = [
        "simulate",
        "--act",
        "tanh",
        "--width",
        "20",
        "--depth",
        "3",
        "--samples",
        "16",
        "--seed",
        "4",
        "--json",
    ];
    let (code, a, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let (_, b, _) = run(&[&args[..], &["--threads", "1"]].concat());
    assert_eq!(a, b, "same seed, different thread count: different output");
    let v: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["samples"].as_u64(), Some(16));
    assert_eq!(v["degenerate"].as_u64(), Some(0));
    assert_eq!(v["overflow"].as_u64(), Some(0));
    for l in v["layers"].as_array().unwrap() {
        for key in [
            "sq_norm",
            "log_sq_norm",
            "log_gsc_to_output",
            "log_gsc_from_input",
        ] {
            assert!(
                l[key]["mean"].as_f64().is_some() && l[key]["stderr"].as_f64().is_some(),
                "{key} in {l}"
            );
        }
    }
}

#[test]
fn check_reports_verdicts() {
    let (code, stdout, stderr) = run(&[
        "check",
        "--act",
        "erf",
        "--width",
        "64",
        "--depth",
        "3",
        "--samples",
        "32",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let rows = v["report"]["comparisons"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows
        .iter()
        .all(|r| r["verdict"].is_string() && r["z"].is_number()));
}

#[test]
fn plot_writes_png_svg_and_csv() {
    let dir = std::env::temp_dir().join(format!("gradscale-plot-{}", std::process::id()));
    let (code, stdout, stderr) = run(&[
        "plot",
        "resnet-dilution",
        "--quick",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v = common::assert_schema("plot", &stdout);
    assert_eq!(v["figures"][0]["files"].as_array().unwrap().len(), 4);
    let caption = std::fs::read_to_string(dir.join("resnet-dilution.caption.txt")).unwrap();
    assert_eq!(caption.lines().count(), 2, "title and caption: {caption}");
    for ext in ["png", "svg", "csv"] {
        let p = dir.join(format!("resnet-dilution.{ext}"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} is missing or tiny", p.display());
    }
    // Text is rendered with the embedded font: the SVG carries the title and axis labels.
    let svg = std::fs::read_to_string(dir.join("resnet-dilution.svg")).unwrap();
    assert!(svg.contains("Pythagorean") && svg.contains("dilution"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The batch-norm, collapse and phase figures in quick mode: every file written, every CSV number finite
/// (a NaN from either engine would show up here), the title in the SVG.
#[test]
fn new_figures_render_with_finite_data() {
    let dir = std::env::temp_dir().join(format!("gradscale-plot3-{}", std::process::id()));
    for (name, word) in [
        ("bn-rate", "Batch norm"),
        ("collapse", "Collapsing"),
        ("phase", "phase diagram"),
    ] {
        let (code, _, stderr) = run(&["plot", name, "--quick", "--out", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {stderr}");
        for ext in ["png", "svg", "csv"] {
            let p = dir.join(format!("{name}.{ext}"));
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 500, "{} is missing or tiny", p.display());
        }
        let csv = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
        // A plain table for `pandas.read_csv(path)`: the header first, six fields on every line.
        assert!(
            csv.starts_with("series,kind,x,y,lo,hi\n"),
            "{name}: {csv:.80}"
        );
        assert!(csv.lines().all(|l| l.split(',').count() == 6), "{name}");
        let mut numbers = 0;
        for line in csv.lines().skip(1) {
            for field in line.split(',').skip(2).filter(|f| !f.is_empty()) {
                let v: f64 = field.parse().unwrap_or(f64::NAN);
                assert!(
                    v.is_finite(),
                    "{name}: non-finite field {field:?} in {line}"
                );
                numbers += 1;
            }
        }
        assert!(numbers > 10, "{name}: only {numbers} numbers");
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains(word), "{name}: title missing from the SVG");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unmeasurable_net_is_an_error_and_a_closed_pipe_is_not() {
    // SELU at sigma_w^2 = 4 leaves the f64 range near layer 900 and cannot be rescaled exactly.
    let (code, stdout, stderr) = run(&[
        "simulate",
        "--act",
        "selu",
        "--sigma-w2",
        "4",
        "--depth",
        "1200",
        "--width",
        "16",
        "--samples",
        "2",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("overflowed") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // A reader that stops after the first line.
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradscale"))
        .args(["predict", "--depth", "2000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A user's claims file alone: verdicts with numbers for each claim, the false one contradicted; with
/// `--fail-on contradicted` that is exit 1 with one stderr line naming it (the report is written either
/// way), while the default (`broken`: only built-in claims and controls) exits 0. Derivation links and
/// figures: none claimed, none mentioned.
#[test]
fn audit_user_claims_file_and_fail_on() {
    let dir = std::env::temp_dir().join(format!("gradscale-claims-{}", std::process::id()));
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/claims/user-claims.toml"
    );
    let args = |fail_on: &'static str| {
        vec![
            "audit".to_string(),
            "--quick".into(),
            "--no-figures".into(),
            "--claims".into(),
            file.into(),
            "--out".into(),
            dir.to_str().unwrap().into(),
            "--fail-on".into(),
            fail_on.into(),
        ]
    };
    let a: Vec<String> = args("contradicted");
    let (code, stdout, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("audit failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(failed[0].contains("user/he-relu-explodes"), "{stderr}");
    assert!(!stdout.contains("figures in"), "{stdout}");
    let v = common::assert_schema(
        "audit",
        &std::fs::read_to_string(dir.join("report.json")).unwrap(),
    );
    let verdict = |id: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(verdict("user/he-relu-explodes"), "contradicted");
    assert_eq!(verdict("user/tanh-sw2-explodes"), "supported");
    // The a-priori allowance 1.5 L/n = 0.75 at width 100, depth 50 covers the whole predicted effect.
    assert_eq!(verdict("user/plain-tanh-closed-form"), "cannot-fail");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    let a: Vec<String> = args("broken");
    let (code, _, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `--json` output validates against its file in `schema/` (plot and audit: in their own tests
/// above; train, residual and effective-depth: in tests/cli_train.rs).
#[test]
fn json_outputs_validate_against_their_schemas() {
    let dir = std::env::temp_dir().join(format!("gradscale-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let arch = dir.join("resnet.toml");
    std::fs::write(
        &arch,
        "[input]\nwidth = 12\nbatch = 1\n\n[[layers]]\nrepeat = 2\nops = [{ residual = { alpha = 1.0, \
         branch = [{ dense = { width = 12, sigma_w2 = 1.0 } }, { act = \"tanh\" }, \
         { dense = { width = 12, sigma_w2 = 1.0 } }] } }]\n",
    )
    .unwrap();
    let arch = arch.to_str().unwrap();
    // A relu-ended ResNet: predict adds the radial-bulk chain (finite_width_radial) and no MLP law.
    let relu_ended = dir.join("relu-ended.toml");
    std::fs::write(
        &relu_ended,
        "[input]\nwidth = 12\n\n[[layers]]\nrepeat = 3\nops = [{ residual = { alpha = 1.0, \
         branch = [{ dense = { width = 12, sigma_w2 = 2.0 } }, { act = \"relu\" }, \
         { dense = { width = 12, sigma_w2 = 2.0 } }, { act = \"relu\" }] } }]\n",
    )
    .unwrap();
    let relu_ended = relu_ended.to_str().unwrap();
    let net = ["--act", "relu", "--widths", "6,8,5,7"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("predict", vec!["predict", "--arch", relu_ended]),
        (
            "predict",
            [&["predict"][..], &net, &["--finite-spectra", "16"]].concat(),
        ),
        (
            "simulate",
            [&["simulate"][..], &net, &["--samples", "8"]].concat(),
        ),
        (
            "check",
            [
                &["check"][..],
                &net,
                &["--samples", "8", "--finite-spectra", "16"],
            ]
            .concat(),
        ),
        (
            "check",
            vec![
                "check",
                "--act",
                "tanh",
                "--width",
                "8",
                "--depth",
                "2",
                "--samples",
                "8",
            ],
        ),
        (
            "collapse",
            vec![
                "collapse",
                "--act",
                "tanh",
                "--width",
                "8",
                "--depth",
                "3",
                "--batch",
                "4",
                "--samples",
                "4",
            ],
        ),
        ("blocks", vec!["blocks", "--arch", arch, "--samples", "4"]),
        (
            "phase",
            vec![
                "phase",
                "--sw2-steps",
                "2",
                "--sb2-steps",
                "2",
                "--max-depth",
                "50",
            ],
        ),
        (
            "diagnose",
            vec!["diagnose", "--act", "tanh", "--width", "16", "--depth", "4"],
        ),
        (
            "bench",
            vec!["bench", "--grid-only", "--grid", "2", "--threads", "1"],
        ),
    ];
    for (command, mut args) in cases {
        args.push("--json");
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        common::assert_schema(command, &stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The schemas are strict: a renamed layer field, a missing top-level field, an extra field and a
/// statistic without its `n` are each rejected.
#[test]
fn schemas_reject_renamed_missing_and_extra_fields() {
    let schema = |c: &str| -> Value {
        let p = format!("{}/schema/{c}.schema.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (code, out, err) = run(&[
        "simulate",
        "--act",
        "tanh",
        "--width",
        "8",
        "--depth",
        "2",
        "--samples",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let good: Value = serde_json::from_str(&out).unwrap();
    let s = schema("simulate");
    assert!(common::schema::validate(&s, &good).is_empty());
    let mut renamed = good.clone();
    let l0 = renamed["layers"][0].as_object_mut().unwrap();
    let idx = l0.remove("index").unwrap();
    l0.insert("layer".into(), idx);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("seed");
    let mut extra = good.clone();
    extra["samples_used"] = 3.into();
    let mut no_n = good.clone();
    no_n["layers"][1]["log_gsc_to_output"]
        .as_object_mut()
        .unwrap()
        .remove("n");
    let mut wrong_tag = good.clone();
    wrong_tag["schema"] = "gradscale.predict/1".into();
    for (what, v) in [
        ("renamed index", renamed),
        ("missing seed", missing),
        ("extra field", extra),
        ("statistic without n", no_n),
        ("another command's tag", wrong_tag),
    ] {
        assert!(
            !common::schema::validate(&s, &v).is_empty(),
            "{what}: accepted"
        );
    }
}

/// `predict` on a relu-ended ResNet states the radial-bulk chain next to the infinite-width number, and the
/// floor -1/2 ln n that no such network goes below (theory/finite-width.md section 9).
#[test]
fn predict_states_the_radial_chain_for_relu_ended_resnets() {
    let dir = std::env::temp_dir().join(format!("gradscale-radial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relu-ended.toml");
    std::fs::write(
        &path,
        "[input]\nwidth = 100\n\n[[layers]]\nrepeat = 50\nops = [{ residual = { alpha = 1.0, \
         branch = [{ dense = { width = 100, sigma_w2 = 2.0 } }, { act = \"relu\" }, \
         { dense = { width = 100, sigma_w2 = 2.0 } }, { act = \"relu\" }] } }]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["predict", "--arch", path.to_str().unwrap(), "--summary"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("radial-bulk chain"))
        .unwrap_or_else(|| panic!("no radial line in:\n{stdout}"));
    // Section 9: infinite width -8.986, floor -2.303 (the chain's own value is tested in finite_resnet.rs).
    assert!(line.contains("-8.98") && line.contains("-2.30"), "{line}");
    assert!(
        stdout.contains("is not what a width-100 network has"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
