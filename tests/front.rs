//! The practitioner's front door: `diagnose` (every advice number against the closed form it comes
//! from), the framework initialisations (their sigma_w^2, and uniform weights drawn uniform), the
//! `--arch` conflict rules, and `collapse` with inputs of unequal norms.

use gradscale::arch::{Dense, Init, InitScheme, InputData, Network, Op};
use gradscale::montecarlo::collapse::measure_collapse;
use gradscale::montecarlo::{OpParams, Sample};
use gradscale::theory::collapse::predict_collapse;
use gradscale::theory::diagnose::{
    diagnose, edge_of_chaos, residual_version, DiagnoseOptions, Verdict,
};
use gradscale::theory::finite_width::FiniteValue;
use gradscale::theory::fixed_point::analyse;
use gradscale::theory::phase::{phase_point, PhaseOptions};
use gradscale::theory::{predict, MfOptions};
use gradscale::verify::collapse::check_collapse;
use gradscale::Nonlinearity;
use rand::SeedableRng;
use serde_json::Value;

mod common;
use common::run;

const TANH: Nonlinearity = Nonlinearity::Tanh;

fn mlp(act: Nonlinearity, n: usize, depth: usize, scheme: InitScheme, sb2: f64) -> Network {
    Network::mlp_init(n, &vec![n; depth], act, scheme, None, sb2).expect("valid net")
}

#[test]
fn edge_of_chaos_puts_chi1_at_one() {
    let cases = [
        (TANH, 0.0),
        (TANH, 0.01),
        (TANH, 0.3),
        (Nonlinearity::Erf, 0.05),
        (Nonlinearity::Selu, 0.01),
    ];
    for (act, sb2) in cases {
        let e = edge_of_chaos(act, sb2);
        let sw2 = e
            .sigma_w2
            .unwrap_or_else(|| panic!("{act:?} {sb2}: {:?}", e.note));
        // Re-evaluated by the fixed-point analysis itself, not by the solver's own record.
        let chi1 = analyse(act, sw2, sb2).chi1.expect("fixed point");
        assert!(
            (chi1 - 1.0).abs() < 1e-9,
            "{act:?} sb2 {sb2}: chi_1 = {chi1} at {sw2}"
        );
    }
    // Relu: 2 whatever the bias, and the output says what the bias does.
    let e = edge_of_chaos(Nonlinearity::Relu, 0.1);
    assert_eq!(e.sigma_w2, Some(2.0));
    assert!(e.note.expect("note").contains("grows linearly"));
    // tanh at sigma_b^2 = 0: the classical sigma_w^2 = 1.
    let e = edge_of_chaos(TANH, 0.0);
    assert!((e.sigma_w2.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn diagnosis_numbers_are_the_closed_forms() {
    let net = mlp(TANH, 256, 20, InitScheme::Xavier, 0.01);
    let opts = DiagnoseOptions::default();
    let d = diagnose(&net, &opts).unwrap();
    let p = predict(&net, &MfOptions::default()).unwrap();
    // Gradient verdict: predict's numbers.
    let total = p.layers[20].log_gsc_from_input;
    assert_eq!(d.gradient.log_gsc_total, total);
    assert_eq!(d.gradient.rate, p.fit.r);
    assert!(
        total < -(2f64.ln()),
        "tanh at xavier, sb2 0.01 vanishes: {total}"
    );
    assert_eq!(d.gradient.verdict, Verdict::Vanishes);
    let per: Vec<f64> = p.layers[1..].iter().map(|l| l.log_gsc_layer).collect();
    assert_eq!(d.gradient.log_gsc_per_layer, per);
    // The growth range: cumulative share of the total crosses 5% at `first` and 95% at `last`.
    let (first, last) = d.gradient.growth_layers.unwrap();
    let share = |l: usize| per[..l].iter().sum::<f64>() / total;
    assert!(share(first) >= 0.05 && (first == 1 || share(first - 1) < 0.05));
    assert!(share(last) >= 0.95 && share(last - 1) < 0.95);
    // Phase: the fixed-point analysis and the phase diagram's point.
    let fp = analyse(TANH, 1.0, 0.01);
    let ph = d.phase.as_ref().unwrap();
    assert_eq!(ph.chi1, fp.chi1);
    assert_eq!(ph.xi_grad, fp.xi_grad);
    assert_eq!(ph.phase, "ordered");
    let pt = phase_point(
        TANH,
        1.0,
        0.01,
        &PhaseOptions {
            threshold: 0.1,
            input_correlation: 0.0,
            max_depth: opts.max_depth,
        },
    );
    assert_eq!(ph.collapse_depth_sign_diversity, pt.collapse_depth);
    // Correlation 0.99 is sign diversity arccos(sqrt 0.99)/pi: crossed later than sign diversity 0.1.
    let c99 = ph.collapse_depth_correlation.unwrap();
    assert!(c99 > pt.collapse_depth.unwrap());
}

#[test]
fn residual_advice_keeps_gsc_at_the_target() {
    let net = mlp(TANH, 256, 20, InitScheme::Lecun, 0.5);
    let opts = DiagnoseOptions {
        target_gsc: 1.5,
        ..DiagnoseOptions::default()
    };
    let d = diagnose(&net, &opts).unwrap();
    let r = d.residual.unwrap();
    assert!(r.alpha < 1.0, "alpha = 1 already meets the target: {r:?}");
    let ln_gsc = |alpha: f64| {
        let res = residual_version(TANH, 1.0, 0.5, Init::Gaussian, 256, 20, alpha);
        predict(&res, &MfOptions::default()).unwrap().layers[20].log_gsc_from_input
    };
    assert!(
        (ln_gsc(r.alpha) - 1.5f64.ln()).abs() < 1e-9,
        "{}",
        ln_gsc(r.alpha)
    );
    assert!(ln_gsc(r.alpha * (1.0 + 1e-6)) > 1.5f64.ln());
    assert!((ln_gsc(1.0) - r.log_gsc_at_alpha_one).abs() < 1e-12);
    // Dilution k = ||s|| / ||alpha rho|| grows along the net (the skip accumulates).
    assert!(r.dilution_last > r.dilution_first && r.dilution_first > 0.0);
}

#[test]
fn width_advice_reaches_the_sd_tolerance() {
    let net = mlp(TANH, 256, 20, InitScheme::Xavier, 0.01);
    let d = diagnose(&net, &DiagnoseOptions::default()).unwrap();
    let w = d.width.unwrap();
    let (sd, n_star) = (w.sd.unwrap(), w.width_for_sd.unwrap());
    assert!(sd > 0.1, "at width 256 the sd is {sd}");
    assert!(matches!(w.width_for_sd_method, Some("expansion" | "chain")));
    // The same finite-width law (same options, same seed) at the advised width is within the tolerance,
    // one narrower is not.
    let sd_at = |n: usize| {
        let wide = mlp(TANH, n, 20, InitScheme::Xavier, 0.01);
        let opts = gradscale::theory::finite_width::FiniteOptions {
            spectra: 400,
            ..Default::default()
        };
        match gradscale::theory::finite_width::predict_finite(&wide, &opts)
            .unwrap()
            .log_gsc_to_output[0]
        {
            FiniteValue::Law(l) => l.sd,
            v => panic!("{v:?} at {n}"),
        }
    };
    assert!(sd_at(n_star) <= 0.1 && sd_at(n_star - 1) > 0.1, "{n_star}");
}

#[test]
fn uniform_weights_have_no_finite_width_law_and_say_why() {
    let net = mlp(TANH, 64, 5, InitScheme::PytorchDefault, 0.0);
    let d = diagnose(&net, &DiagnoseOptions::default()).unwrap();
    let note = d.width.unwrap().note.unwrap();
    assert!(note.contains("uniform"), "{note}");
    // Mean field sees only the variance: the same fixed point as the Gaussian of that variance.
    assert!(d.phase.is_some());
}

#[test]
fn init_schemes_map_to_their_variances() {
    let net = Network::mlp_init(100, &[300, 50], TANH, InitScheme::Xavier, None, 0.0).unwrap();
    let dense: Vec<Dense> = net
        .layers
        .iter()
        .map(|l| match l.ops[0] {
            Op::Dense(d) => d,
            _ => unreachable!(),
        })
        .collect();
    // Glorot: Var W = 2/(fan_in + fan_out) = sigma_w^2 / fan_in.
    assert_eq!(dense[0].sigma_w2 / 100.0, 2.0 / 400.0);
    assert_eq!(dense[1].sigma_w2 / 300.0, 2.0 / 350.0);
    assert_eq!(dense[0].init, Init::Gaussian);
    let pt = Network::mlp_init(100, &[100], TANH, InitScheme::PytorchDefault, None, 0.0).unwrap();
    let Op::Dense(d) = pt.layers[0].ops[0] else {
        unreachable!()
    };
    // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance 1/(3 fan_in) for weight and bias.
    assert_eq!(
        (d.sigma_w2, d.sigma_b2, d.init),
        (1.0 / 3.0, 1.0 / 300.0, Init::Uniform)
    );
    for (s, w2) in [
        ("he", 2.0),
        ("lecun-uniform", 1.0),
        ("kaiming-uniform", 2.0),
    ] {
        let scheme: InitScheme = s.parse().unwrap();
        assert_eq!(scheme.sigma_w2(10, 20), Some(w2), "{s}");
    }
    assert!(Network::mlp_init(10, &[10], TANH, InitScheme::He, Some(1.0), 0.0).is_err());
}

#[test]
fn uniform_weights_are_drawn_uniform_with_the_stated_variance() {
    let (n_in, n_out, sw2, sb2) = (200usize, 200usize, 1.5, 0.2);
    let op = Op::Dense(Dense {
        width: n_out,
        sigma_w2: sw2,
        sigma_b2: sb2,
        init: Init::Uniform,
    });
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
    let (mut w, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let OpParams::Dense { w: wm, b: bv } = op.draw(n_in, &mut rng) else {
            unreachable!()
        };
        w.extend(wm.iter().copied());
        b.extend(bv.iter().copied());
    }
    let check = |xs: &[f64], var: f64, what: &str| {
        let n = xs.len() as f64;
        let a = (3.0 * var).sqrt();
        assert!(
            xs.iter().all(|x| x.abs() <= a),
            "{what}: an entry beyond the support"
        );
        let m2 = xs.iter().map(|x| x * x).sum::<f64>() / n;
        let m4 = xs.iter().map(|x| x.powi(4)).sum::<f64>() / n;
        // se of the mean of x^2 for a uniform entry: var sqrt((9/5 - 1)/n); z at false alarm 1e-6: 4.89.
        let se2 = var * (0.8 / n).sqrt();
        assert!(
            (m2 - var).abs() <= 4.89 * se2,
            "{what}: variance {m2} vs {var}"
        );
        // Kurtosis 9/5 (a Gaussian's is 3): se of m4/var^2 is sqrt((E x^8/var^4 - (9/5)^2)/n),
        // E x^8 / var^4 = 81/9 = 9 for the uniform.
        let kurt = m4 / (var * var);
        let se4 = ((9.0 - 3.24) / n).sqrt();
        assert!(
            (kurt - 1.8).abs() <= 4.89 * se4 + 0.05,
            "{what}: kurtosis {kurt}"
        );
    };
    check(&w, sw2 / n_in as f64, "weights");
    check(&b, sb2, "biases");
}

#[test]
fn diagnose_cli_answers_in_one_screen() {
    let args = [
        "diagnose",
        "--act",
        "tanh",
        "--width",
        "256",
        "--depth",
        "20",
        "--init",
        "xavier",
        "--sigma-b2",
        "0.01",
    ];
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() <= 24, "{out}");
    for key in [
        "VANISHES",
        "GSC(L,0)",
        "chi_1",
        "edge of chaos",
        "ResNet",
        "width 256",
        "paper/adam-does-not-solve",
    ] {
        assert!(out.contains(key), "missing {key}: {out}");
    }
    let mut j = args.to_vec();
    j.push("--json");
    let (code, out, err) = run(&j);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "gradscale.diagnose/1");
    assert_eq!(v["gradient"]["verdict"], "vanishes");
    let sw2 = v["edge_of_chaos"]["sigma_w2"].as_f64().unwrap();
    let chi1 = analyse(TANH, sw2, 0.01).chi1.unwrap();
    assert!(
        (chi1 - 1.0).abs() < 1e-9,
        "chi_1 = {chi1} at the printed sigma_w^2"
    );
}

#[test]
fn arch_conflicts_are_errors_naming_both() {
    let cases: &[(&[&str], [&str; 2])] = &[
        (
            &[
                "predict",
                "--arch",
                "examples/plain-relu.toml",
                "--act",
                "tanh",
            ],
            ["--arch", "--act"],
        ),
        (
            &[
                "diagnose",
                "--arch",
                "examples/plain-relu.toml",
                "--width",
                "10",
            ],
            ["--arch", "--width"],
        ),
        (
            &[
                "simulate",
                "--arch",
                "examples/plain-relu.toml",
                "--init",
                "he",
            ],
            ["--arch", "--init"],
        ),
        (
            &["predict", "--init", "xavier", "--sigma-w2", "2"],
            ["--init", "--sigma-w2"],
        ),
        (
            &["predict", "--init", "pytorch-default", "--sigma-b2", "0.1"],
            ["--init", "--sigma-b2"],
        ),
        (&["predict", "--init", "glorious"], ["--init", "xavier"]),
    ];
    for (args, names) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for n in names {
            assert!(err.contains(n), "{args:?}: {err} does not name {n}");
        }
    }
}

fn write_csv(path: &std::path::Path, rows: usize, dim: usize, seed: u64) {
    use rand::Rng;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut s = String::new();
    for _ in 0..rows {
        // Norms over three decades and a shared offset: mean dot / mean square is far from mean cosine.
        let scale = 10f64.powf(rng.gen_range(-1.5..1.5));
        let row: Vec<String> = (0..dim)
            .map(|_| format!("{:.9}", scale * (rng.gen::<f64>() - 0.5 + 0.4)))
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn arch_with_input_file_and_batch_uses_both_and_says_so() {
    let dir = std::env::temp_dir().join(format!("gradscale-front-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("x100.csv");
    write_csv(&csv, 40, 100, 3);
    let c = csv.to_str().unwrap();
    let (code, out, err) = run(&[
        "predict",
        "--arch",
        "examples/plain-relu.toml",
        "--input-file",
        c,
        "--batch",
        "4",
        "--json",
        "--no-finite",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("--input-file") && err.contains("--batch 4"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["network"]["input"]["data"]["path"], c);
    assert_eq!(v["network"]["input"]["batch"], 4);
    // The closed form starts from the data: ||x||^2/n is its mean square, not 1.
    assert!((v["layers"][0]["sq_norm"].as_f64().unwrap() - 1.0).abs() > 0.01);
    let wrong = dir.join("x7.csv");
    write_csv(&wrong, 10, 7, 4);
    let (code, _, err) = run(&[
        "predict",
        "--arch",
        "examples/plain-relu.toml",
        "--input-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--input-file") && err.contains("--arch"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn collapse_with_unequal_norms_agrees_at_layer_0() {
    let dir = std::env::temp_dir().join(format!("gradscale-collapse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("x.csv");
    write_csv(&csv, 300, 64, 11);
    let data = InputData::load(&csv).unwrap();
    let mut net = Network::mlp_init(64, &[64, 64], TANH, InitScheme::Lecun, None, 0.0).unwrap();
    net.input.data = Some(data.clone());
    net.input.batch = 16;
    let p = predict_collapse(&net, None).unwrap();
    let m = measure_collapse(&net, 100, 5).unwrap();
    let c = check_collapse(&p, &m, 1e-3);
    let z0 = c.rows[0].corr.z;
    assert!(z0.abs() < 4.0, "layer 0: z = {z0}");
    // The test has power: the old estimand (mean dot product over mean square) is rejected.
    let (_, old) = data.moments();
    let z_old = (m.layers[0].corr.mean - old) / m.layers[0].corr.stderr;
    assert!(
        z_old.abs() > 10.0,
        "old estimand {old} is not distinguishable: z = {z_old}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn collapse_runs_with_no_flags() {
    let (code, out, err) = run(&["collapse", "--depth", "3", "--samples", "4"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("collapse metrics over a batch of 16"),
        "{out}"
    );
    assert!(out.contains("verdicts:"), "{out}");
}

#[test]
fn architecture_file_errors_name_file_line_path_and_caret() {
    let dir = std::env::temp_dir().join(format!("gradscale-arch-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n\n[input]\nwidth = 10\n\n[[layers]]\nops = [{ act = \"tanh\" }]\n\n[[layers]]\nrepeat = 3\nops = [{ dense = { width = 10, sigma_w2 = -1.0 } }, { act = \"tanh\" }]\n",
    )
    .unwrap();
    let (code, out, err) = run(&["predict", "--arch", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    let first = err.lines().next().unwrap();
    for part in [
        bad.to_str().unwrap(),
        "line 11",
        "layers[1].ops[0].dense.sigma_w2",
        "-1",
    ] {
        assert!(first.contains(part), "{first} does not name {part}");
    }
    assert!(
        !first.contains("--sigma-w2"),
        "a file value is not a flag: {first}"
    );
    // The caret sits under the value.
    let lines: Vec<&str> = err.lines().collect();
    let src = lines
        .iter()
        .position(|l| l.starts_with("11 |"))
        .expect("source line");
    let col = lines[src].find("-1.0").unwrap();
    assert_eq!(lines[src + 1].find('^'), Some(col), "{err}");
    // Relative data paths resolve against the file's directory; sigma_w2 defaults per nonlinearity.
    write_csv(&dir.join("sub").join("x.csv"), 20, 10, 1);
    let good = dir.join("sub").join("good.toml");
    std::fs::write(
        &good,
        "[input]\nwidth = 10\nbatch = 2\ndata = { path = \"x.csv\" }\n\n[[layers]]\nops = [{ dense = { width = 10 } }, { act = \"relu\" }, { dense = { width = 10 } }, { act = \"tanh\" }]\n",
    )
    .unwrap();
    let net = gradscale::arch::load_file(&good).unwrap();
    assert_eq!(net.input.data.as_ref().unwrap().vectors.len(), 20);
    let sw: Vec<f64> = net.layers[0]
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Dense(d) => Some(d.sigma_w2),
            _ => None,
        })
        .collect();
    assert_eq!(sw, vec![2.0, 1.0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn defaults_that_work() {
    // plot with no name lists the figures.
    let (code, out, err) = run(&["plot"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gsc-depth") && out.contains("phase"), "{out}");
    // blocks without a residual architecture points to the examples.
    let (code, out, err) = run(&["blocks", "--depth", "2", "--samples", "2"]);
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("examples/resnet-"), "{err}");
    // predict --every K keeps the first and last layers, aligned; --summary prints no rows.
    let (code, out, _) = run(&[
        "predict",
        "--act",
        "relu",
        "--depth",
        "100000",
        "--every",
        "50000",
        "--no-finite",
    ]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = out
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("explosion"))
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{out}");
    assert!(rows[3].trim_start().starts_with("100000"));
    let (code, out, _) = run(&["predict", "--act", "tanh", "--depth", "30", "--summary"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 5, "{out}");
    // The top-level help lists every command.
    let (_, out, _) = run(&["--help"]);
    for c in [
        "diagnose", "predict", "simulate", "check", "plot", "audit", "bench", "blocks", "collapse",
        "phase",
    ] {
        assert!(out.contains(&format!("  {c} ")), "help does not list {c}");
    }
}

#[test]
fn check_below_min_samples_is_inconclusive() {
    // Two samples: the standard error has one degree of freedom, so no row may read agree or disagree.
    let args = [
        "check",
        "--act",
        "tanh",
        "--width",
        "20",
        "--depth",
        "6",
        "--no-finite",
        "--json",
    ];
    let json = |samples: &str| -> Value {
        let mut a = args.to_vec();
        a.extend(["--samples", samples]);
        let (code, out, err) = run(&a);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).expect("json")
    };
    let v = json("2");
    let n = v["report"]["comparisons"].as_array().unwrap().len();
    assert_eq!(v["report"]["inconclusive"].as_u64(), Some(n as u64), "{v}");
    assert_eq!(v["report"]["policy"]["min_samples"].as_u64(), Some(10));
    // At the minimum the rows get verdicts again.
    let v = json("10");
    assert_eq!(v["report"]["inconclusive"].as_u64(), Some(0), "{v}");
    let (_, out, _) = run(&args[..args.len() - 1]
        .iter()
        .copied()
        .chain(["--samples", "2"])
        .collect::<Vec<_>>());
    assert!(out.contains("below the minimum of 10"), "{out}");
}

#[test]
fn arch_file_init_schemes() {
    use gradscale::arch::from_toml_str;
    let dense_of = |net: &Network, l: usize, k: usize| match &net.layers[l].ops[k] {
        Op::Dense(d) => *d,
        Op::Residual(r) => match &r.branch[0] {
            Op::Dense(d) => *d,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // File-level Xavier: the first copy of the repeated layer has fan_in 50, the others 100.
    let text = r#"init = "xavier"
[input]
width = 50
[[layers]]
repeat = 3
ops = [{ dense = { width = 100 } }, { act = "tanh" }]
[[layers]]
ops = [{ dense = { width = 100, init = "pytorch-default" } }, { act = "relu" }]
[[layers]]
ops = [{ residual = { branch = [{ dense = { width = 100, init = "kaiming" } }, { act = "relu" }, { dense = { width = 100, init = "gaussian", sigma_w2 = 0.5 } }] } }]
"#;
    let net = from_toml_str(text, "x.toml").expect("valid file");
    let d0 = dense_of(&net, 0, 0);
    assert!((d0.sigma_w2 - 2.0 * 50.0 / 150.0).abs() < 1e-15, "{d0:?}");
    assert_eq!(d0.init, Init::Gaussian);
    assert_eq!(dense_of(&net, 1, 0).sigma_w2, 1.0);
    assert_eq!(dense_of(&net, 2, 0).sigma_w2, 1.0);
    let p = dense_of(&net, 3, 0);
    assert_eq!(
        (p.sigma_w2, p.sigma_b2, p.init),
        (1.0 / 3.0, 1.0 / 300.0, Init::Uniform)
    );
    assert_eq!(dense_of(&net, 4, 0).sigma_w2, 2.0);
    match &net.layers[4].ops[0] {
        Op::Residual(r) => match r.branch[2] {
            Op::Dense(d) => assert_eq!(d.sigma_w2, 0.5),
            ref o => panic!("{o:?}"),
        },
        o => panic!("{o:?}"),
    }
    // A scheme that fixes sigma_w2 next to a given sigma_w2 names the op's path.
    let err = from_toml_str(
        "[input]\nwidth = 10\n[[layers]]\nops = [{ dense = { width = 10, init = \"he\", sigma_w2 = 1.0 } }, { act = \"relu\" }]\n",
        "c.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("c.toml")
            && err.contains("layers[0].ops[0].dense")
            && err.contains("sigma_w2"),
        "{err}"
    );
    // An unknown scheme: file, line, TOML path, the accepted names, exit code 2 and nothing on stdout.
    let dir = std::env::temp_dir().join(format!("gradscale-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("net.toml");
    std::fs::write(
        &f,
        "[input]\nwidth = 10\n\n[[layers]]\nops = [{ dense = { width = 10, init = \"xavir\" } }, { act = \"tanh\" }]\n",
    )
    .unwrap();
    let (code, out, err) = run(&["predict", "--arch", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("net.toml")
            && err.contains("line 5")
            && err.contains("layers[0].ops[0].dense.init")
            && err.contains("unknown init `xavir`")
            && err.contains("pytorch-default"),
        "{err}"
    );
    eprintln!("{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows of a figure CSV as (series, kind, x, y).
fn csv_rows(path: &std::path::Path) -> Vec<(String, String, f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("series,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn plot_arch_draws_gsc_against_layers_to_the_output() {
    let dir = std::env::temp_dir().join(format!("gradscale-plot-arch-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    for (file, dense) in [("plain-tanh", 50), ("resnet-plain-tanh", 50)] {
        let arch = format!("{}/examples/{file}.toml", env!("CARGO_MANIFEST_DIR"));
        let (code, stdout, err) = run(&["plot", "--arch", &arch, "--quick", "--out", out]);
        assert_eq!(code, 0, "{err}");
        assert!(
            stdout.contains(&format!("{file}-gsc-depth.png")),
            "{stdout}"
        );
        let rows = csv_rows(&dir.join(format!("{file}-gsc-depth.csv")));
        let line: Vec<_> = rows.iter().filter(|r| r.1 == "theory").collect();
        let pts: Vec<_> = rows.iter().filter(|r| r.1 == "monte-carlo").collect();
        // x counts dense layers to the output: GSC(L, L) = 1 at x = 0, GSC(L, 0) at x = 50 (also for the
        // ResNet, whose 25 blocks hold two dense layers each).
        let net = gradscale::arch::load_file(std::path::Path::new(&arch)).unwrap();
        let p = predict(&net, &MfOptions::default()).unwrap();
        let at = |x: f64| line.iter().find(|r| r.2 == x).expect("x on the line").3;
        assert_eq!(at(0.0), 1.0);
        let total = p.layers[0].log_gsc_to_output.exp();
        assert!(
            (at(dense as f64) - total).abs() < 1e-12 * total,
            "{}",
            at(50.0)
        );
        assert_eq!(line.len(), net.depth() + 1);
        assert!(total > 1.1, "tanh grows: {total}");
        // Points at both ends (their agreement with the line is `check`'s job, at proper sample counts).
        assert!(pts.iter().any(|r| r.2 == 0.0) && pts.iter().any(|r| r.2 == dense as f64));
    }
    // Only per-layer figures take --arch; one line, exit 2, nothing on stdout.
    let arch = format!("{}/examples/plain-tanh.toml", env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, err) = run(&["plot", "phase", "--arch", &arch, "--out", out]);
    assert_eq!(code, 2, "{err}");
    assert!(
        stdout.is_empty() && err.contains("gsc-depth") && err.lines().count() == 1,
        "{err}"
    );
    // Written atomically: no temporary files left beside the figures.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagnose_given_network_shows_measured_next_to_closed_form() {
    use gradscale::montecarlo::{draw_params, sample_rng};
    let dir = std::env::temp_dir().join(format!("gradscale-diag-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = dir.join("net.safetensors");
    let net = Network::mlp_init(20, &[20; 6], TANH, InitScheme::Gaussian, Some(1.5), 0.0).unwrap();
    let params = draw_params(&net, &mut sample_rng(7, 0));
    gradscale::checkpoint::save_params_file(
        &net,
        &Default::default(),
        &params,
        &w,
        &Default::default(),
    )
    .unwrap();
    let ws = w.to_str().unwrap();
    let flags = [
        "--act",
        "tanh",
        "--width",
        "20",
        "--depth",
        "6",
        "--sigma-w2",
        "1.5",
        "--weights",
        ws,
        "--samples",
        "40",
    ];
    let mut a = vec!["diagnose"];
    a.extend(flags);
    a.push("--json");
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let g = &v["given_network"];
    let rows = g["layers"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    // The closed-form column is the architecture's prediction, the measured one is `simulate --weights`.
    let p = predict(&net, &MfOptions::default()).unwrap();
    let mut s = vec!["simulate"];
    s.extend(flags);
    s.push("--json");
    let (_, sim, _) = run(&s);
    let sim: Value = serde_json::from_str(&sim).unwrap();
    for (l, r) in rows.iter().enumerate() {
        assert_eq!(
            r["closed_form_initial"].as_f64().unwrap(),
            p.layers[l].log_gsc_to_output
        );
        assert_eq!(
            r["measured"]["mean"],
            sim["layers"][l]["log_gsc_to_output"]["mean"]
        );
    }
    assert_eq!(g["inputs"].as_u64(), Some(40));
    // The table says which column is which.
    a.pop();
    let (code, out, _) = run(&a);
    assert_eq!(code, 0);
    assert!(
        out.contains("given network") && out.contains("closed form") && out.contains("measured")
    );
    // Monte Carlo flags without --weights would be dropped: an error naming the flag instead.
    let (code, out, err) = run(&["diagnose", "--act", "tanh", "--samples", "5"]);
    assert_eq!(code, 2);
    assert!(
        out.is_empty() && err.contains("--samples") && err.contains("--weights"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
