//! `gradscale train` end to end: checkpoints reload in `simulate`, `--resume` gives the same bits as an
//! uninterrupted run, divergence stops with exit code 2 and keeps the last finite checkpoint.

mod common;
use common::run;

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("gradscale-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

const SMALL: [&str; 8] = [
    "--width",
    "16",
    "--depth",
    "2",
    "--batch-size",
    "128",
    "--gsc-rows",
    "4",
];

#[test]
fn trained_checkpoint_reloads_in_simulate() {
    let dir = tmp("reload");
    let mut a = vec!["train", "--data", "digits", "--epochs", "1", "--out", &dir];
    a.extend(SMALL);
    let (code, tout, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    assert!(tout.contains("split fixed"), "{tout}");
    let arch = format!("{dir}/arch.toml");
    let w = format!("{dir}/trained.safetensors");
    let (code, out, err) = run(&[
        "simulate",
        "--arch",
        &arch,
        "--weights",
        &w,
        "--samples",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 4);
    // The log holds per-epoch losses and the GSC at steps 0, 1, 10 and the epoch end (12 steps).
    // log.json is what `train --json` prints.
    let log = common::assert_schema(
        "train",
        &std::fs::read_to_string(format!("{dir}/log.json")).unwrap(),
    );
    let init = format!("{dir}/init.safetensors");
    for command in ["residual", "effective-depth"] {
        let (code, out, err) = run(&[
            command,
            "--arch",
            &arch,
            "--init",
            &init,
            "--trained",
            &w,
            "--data",
            "digits",
            "--samples",
            "4",
            "--json",
        ]);
        assert_eq!(code, 0, "{command}: {err}");
        common::assert_schema(command, &out);
    }
    let steps: Vec<u64> = log["log"]["gsc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 1, 10, 12]);
    // Step 0 against the closed form: 2L rows (L = 3 with the readout), each with a verdict, on the console too.
    let rep = &log["step0_check"]["report"];
    let rows = rep["comparisons"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rep}");
    assert!(rows.iter().all(|r| r["verdict"] == "agree"), "{rep}");
    assert!(tout.contains("step 0: 6 agree, 0 disagree"), "{tout}");
    // A wrong-shape checkpoint for this architecture: one line naming the tensor, exit 2.
    let (code, _, err) = run(&[
        "simulate",
        "--act",
        "relu",
        "--width",
        "16",
        "--depth",
        "3",
        "--weights",
        &w,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("layers.1.0.weight") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn resume_gives_the_uninterrupted_bits() {
    let a_dir = tmp("full");
    let b_dir = tmp("resumed");
    let mut a = vec![
        "train",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--out",
        &a_dir,
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
    ];
    a.extend(SMALL);
    assert_eq!(run(&a).0, 0);
    let mut b = vec![
        "train",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        &b_dir,
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
    ];
    b.extend(SMALL);
    assert_eq!(run(&b).0, 0);
    let (code, _, err) = run(&["train", "--resume", &b_dir, "--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    for f in ["trained.safetensors", "state.safetensors", "log.json"] {
        let x = std::fs::read(format!("{a_dir}/{f}")).unwrap();
        let y = std::fs::read(format!("{b_dir}/{f}")).unwrap();
        assert!(x == y, "{f} differs after resume");
    }
}

#[test]
fn divergence_stops_and_keeps_the_last_finite_checkpoint() {
    let dir = tmp("diverge");
    let mut a = vec![
        "train", "--data", "digits", "--epochs", "3", "--out", &dir, "--lr", "1e6", "--act",
        "linear",
    ];
    a.extend(SMALL);
    let (code, _, err) = run(&a);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("diverged at step"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/log.json")).unwrap()).unwrap();
    assert!(log["log"]["diverged"]["step"].as_u64().is_some());
    assert!(std::path::Path::new(&format!("{dir}/init.safetensors")).exists());
}

#[test]
fn bad_data_is_one_line_exit_2() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let f = format!("{dir}/d.csv");
    std::fs::write(&f, "1,2,0\n3,,1\n").unwrap();
    let (code, _, err) = run(&["train", "--data", &f, "--out", &dir]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2, column 2: empty cell") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run(&[
        "train",
        "--data",
        "digits",
        "--lr-layer",
        "9=1",
        "--out",
        &dir,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--lr-layer"), "{err}");
}

#[test]
fn every_measurement_takes_a_trained_resnet() {
    let dir = tmp("resnet");
    let arch = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/digits-resnet-batch-relu.toml"
    );
    let (code, _, err) = run(&[
        "train",
        "--arch",
        arch,
        "--data",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--gsc-rows",
        "8",
        "--out",
        &dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let a = format!("{dir}/arch.toml");
    let w = format!("{dir}/trained.safetensors");
    for cmd in [
        vec!["simulate", "--arch", &a, "--weights", &w, "--samples", "2"],
        vec!["collapse", "--arch", &a, "--weights", &w, "--samples", "2"],
        vec!["blocks", "--arch", &a, "--weights", &w, "--samples", "2"],
        vec!["check", "--arch", &a, "--weights", &w, "--samples", "4"],
    ] {
        let (code, out, err) = run(&cmd);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        assert!(out.contains("given network"), "{cmd:?}: {out}");
    }
}

/// `--header` / `--no-header` override the detection of a CSV header row, for `--input-file` and `--data`.
#[test]
fn csv_header_flags() {
    let dir = tmp("header");
    std::fs::create_dir_all(&dir).unwrap();
    // A numeric first row of another length: data by default (a ragged row), skipped with --header.
    let f = format!("{dir}/x.csv");
    std::fs::write(&f, "7,7\n1,2,3\n4,5,6\n2,1,0\n").unwrap();
    let sim = |extra: &[&str]| {
        let mut a = vec![
            "simulate",
            "--input-file",
            &f,
            "--depth",
            "2",
            "--samples",
            "2",
        ];
        a.extend(extra);
        run(&a)
    };
    let (code, _, err) = sim(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2: 3 cells"), "{err}");
    let (code, _, err) = sim(&["--header"]);
    assert_eq!(code, 0, "{err}");
    // A text first row: a header by default, an error naming it with --no-header.
    let g = format!("{dir}/h.csv");
    std::fs::write(&g, "a,b,c\n1,2,3\n4,5,6\n2,1,0\n").unwrap();
    let (code, _, err) = run(&[
        "simulate",
        "--input-file",
        &g,
        "--depth",
        "2",
        "--samples",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "simulate",
        "--input-file",
        &g,
        "--depth",
        "2",
        "--samples",
        "2",
        "--no-header",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1, column 1: \"a\" is not a number") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run(&["simulate", "--input-file", &g, "--header", "--no-header"]);
    assert_eq!(code, 2, "{err}");
    // The same for a labelled training CSV.
    let (code, _, err) = run(&[
        "train",
        "--data",
        &g,
        "--no-header",
        "--epochs",
        "1",
        "--out",
        &dir,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1, column 1"), "{err}");
}

/// Issue 14's bad data inputs, each one line naming the file, line and column, exit 2: a ragged row, a text
/// cell, a label that is not a class index (negative, fractional).
#[test]
fn bad_rows_cells_and_labels_are_one_line_exit_2() {
    let dir = tmp("bad-rows");
    std::fs::create_dir_all(&dir).unwrap();
    let ok: Vec<String> = (0..20)
        .map(|i| format!("{},{},{}", i as f64 * 0.1, 1.0 - i as f64 * 0.05, i % 3))
        .collect();
    let cases = [
        (5, "0.1,0", "line 6: 2 cells, the first row has 3"),
        (3, "0.1,x,1", "line 4, column 2: \"x\" is not a number"),
        (
            7,
            "0.1,0.2,-1",
            "line 8, column 3: label -1 is not a class index",
        ),
        (
            9,
            "0.1,0.2,2.5",
            "line 10, column 3: label 2.5 is not a class index",
        ),
    ];
    for (k, (row, bad, want)) in cases.iter().enumerate() {
        let mut rows = ok.clone();
        rows[*row] = bad.to_string();
        let f = format!("{dir}/d{k}.csv");
        std::fs::write(&f, rows.join("\n") + "\n").unwrap();
        let (code, _, err) = run(&["train", "--data", &f, "--out", &dir, "--epochs", "1"]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(
            err.contains(want) && err.contains(&format!("d{k}.csv")) && err.lines().count() == 1,
            "{bad}: {err}"
        );
    }
}
