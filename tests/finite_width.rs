//! Finite-width law of ln GSC against independent Monte Carlo measurements (theory/finite-width.md).
//!
//! False-alarm rates are stated per test; seeds are fixed. The theory side's own sampling error (exact route)
//! is included in the combined standard error.

mod common;

use gradscale::arch::Network;
use gradscale::montecarlo::{simulate, Estimator, McOptions};
use gradscale::stats::z_for_false_alarm;
use gradscale::theory::finite_width::{
    predict_chain, predict_expansion, predict_finite, FiniteMethod, FiniteOptions, FiniteValue,
    CHAIN_BIAS_PER_TAU, TAU_CHAIN,
};
use gradscale::theory::{predict, MfOptions};
use gradscale::verify::finite::check_finite;
use gradscale::verify::finite::ks_two_sample;
use gradscale::Nonlinearity;

fn net(act: Nonlinearity, width: usize, depth: usize, sw2: f64) -> Network {
    Network::mlp_widths(width, &vec![width; depth], act, sw2, 0.0).unwrap()
}

fn sw2(act: Nonlinearity) -> f64 {
    gradscale::arch::MlpSpec::default_sigma_w2(act)
}

/// One configuration of the sweep: (predicted mean, its se, infinite-width value, measured mean, se, n, method).
struct Row {
    act: Nonlinearity,
    width: usize,
    depth: usize,
    pred: Option<f64>,
    pred_se: f64,
    pred_sd: f64,
    meas_sd: f64,
    mf: f64,
    meas: f64,
    meas_se: f64,
}

fn run_config(act: Nonlinearity, width: usize, depth: usize, samples: usize, seed: u64) -> Row {
    let sb2: f64 = std::env::var("SWEEP_SB2").map_or(0.0, |s| s.parse().unwrap());
    let nw = Network::mlp_widths(width, &vec![width; depth], act, sw2(act), sb2).unwrap();
    let mf = predict(&nw, &MfOptions::default()).unwrap().layers[0].log_gsc_to_output;
    let chain_opts = FiniteOptions {
        seed: seed ^ 0x5555,
        ..FiniteOptions::default()
    };
    let fp = match (std::env::var("SWEEP_TAU"), std::env::var("SWEEP_CHAIN_TAU")) {
        (Ok(t), _) => predict_expansion(&nw, t.parse().unwrap(), 1e9).unwrap(),
        (_, Ok(t)) => predict_chain(&nw, &chain_opts, t.parse().unwrap()).unwrap(),
        _ => predict_finite(
            &nw,
            &FiniteOptions {
                seed: seed ^ 0x5555,
                spectra: 400,
                budget: 1e11,
                ..FiniteOptions::default()
            },
        )
        .unwrap(),
    };
    let (pred, pred_se, pred_sd) = match fp.log_gsc_to_output[0] {
        FiniteValue::Law(l) => (Some(l.mean), l.mean_se, l.sd),
        FiniteValue::OutsideValidity { .. } => (None, 0.0, f64::NAN),
    };
    let estimator = if width >= 200 && std::env::var("SWEEP_EXACT").is_err() {
        Estimator::Probes(16)
    } else {
        Estimator::Exact
    };
    let m = simulate(
        &nw,
        &McOptions {
            samples,
            seed,
            estimator,
        },
    )
    .unwrap();
    let s = m.layers[0].log_gsc_to_output;
    Row {
        act,
        width,
        depth,
        pred,
        pred_se,
        pred_sd,
        meas_sd: s.sd,
        mf,
        meas: s.mean,
        meas_se: s.stderr,
    }
}

/// The sweep of the done-when: relu, tanh, selu, erf, gelu, linear at widths 30, 100, 300 and depths
/// up to 50. Prints every row and the two outcome numbers. Slow (tens of minutes on 2 cores).
#[test]
#[ignore]
fn sweep_widths_and_depths() {
    use Nonlinearity::*;
    let acts = [Relu, Tanh, Selu, Erf, Gelu, Linear];
    let depths: Vec<usize> = std::env::var("SWEEP_DEPTHS")
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![1, 3, 10, 20, 50]);
    let widths: Vec<usize> = std::env::var("SWEEP_WIDTHS")
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![30, 100, 300]);
    let acts: Vec<Nonlinearity> = match std::env::var("SWEEP_ACTS") {
        Ok(s) => s.split(',').map(|x| x.parse().unwrap()).collect(),
        Err(_) => acts.to_vec(),
    };
    let samples: usize = std::env::var("SWEEP_SAMPLES")
        .map(|s| s.parse().unwrap())
        .unwrap_or(400);
    let (mut within, mut predicted, mut outside, mut closer_fail, mut closer_cases) =
        (0, 0, 0, 0, 0);
    println!("act width depth   mf      pred    pred_se   meas    meas_se   z");
    for &act in &acts {
        for &w in &widths {
            for &d in &depths {
                let r = run_config(act, w, d, samples, 1000 + (w * 100 + d) as u64);
                match r.pred {
                    Some(p) => {
                        predicted += 1;
                        let se = (r.pred_se.powi(2) + r.meas_se.powi(2)).sqrt();
                        let z = (r.meas - p) / se;
                        if z.abs() <= 3.0 {
                            within += 1;
                        }
                        let differ = (r.mf - p).abs() > 2.0 * se;
                        if differ {
                            closer_cases += 1;
                            if (r.meas - p).abs() >= (r.meas - r.mf).abs() {
                                closer_fail += 1;
                            }
                        }
                        println!(
                            "{} {} {} {:.4} {:.4} {:.4} {:.4} {:.4} {:.2} sd {:.4} {:.4}{}",
                            r.act,
                            r.width,
                            r.depth,
                            r.mf,
                            p,
                            r.pred_se,
                            r.meas,
                            r.meas_se,
                            z,
                            r.pred_sd,
                            r.meas_sd,
                            if differ && (r.meas - p).abs() >= (r.meas - r.mf).abs() {
                                " NOT-CLOSER"
                            } else {
                                ""
                            }
                        );
                    }
                    None => {
                        outside += 1;
                        println!(
                            "{} {} {} {:.4} outside-validity - {:.4} {:.4}",
                            r.act, r.width, r.depth, r.mf, r.meas, r.meas_se
                        );
                    }
                }
            }
        }
    }
    println!(
        "within 3 se: {within}/{predicted}; outside validity: {outside}; not closer than mean field: {closer_fail}/{closer_cases}"
    );
}

fn exact_opts(spectra: usize, seed: u64) -> FiniteOptions {
    FiniteOptions {
        spectra,
        directions: 8,
        seed,
        budget: 1e12,
        keep_sample: true,
        unit_loop: false,
    }
}

use common::simulate_exact as mc;

/// E[GSC^-2] = 1 exactly for bias-free relu and linear nets at any widths (theory/finite-width.md §2): a
/// sharp check of the reduced-product sampler alone. GSC^-2 has mean 1 and a finite variance, so the
/// sample mean over N draws is within 4.9 se of 1 with probability 1 - 1e-6.
#[test]
fn exact_law_inverse_square_mean_is_one() {
    use Nonlinearity::*;
    for (act, widths) in [
        (Relu, vec![16; 9]),
        (Linear, vec![16; 9]),
        (Relu, vec![20, 8, 40, 12, 30]),
        (Linear, vec![20, 8, 40, 12, 30]),
    ] {
        let nw = Network::mlp_widths(widths[0], &widths[1..], act, 2.0, 0.0).unwrap();
        let p = predict_finite(&nw, &exact_opts(20000, 7)).unwrap();
        assert_eq!(p.method, FiniteMethod::Exact);
        let x: Vec<f64> = p.sample_total.iter().map(|l| (-2.0 * l).exp()).collect();
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let se = (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
        assert!(
            (m - 1.0).abs() <= z_for_false_alarm(1e-6) * se,
            "{act} {widths:?}: E[GSC^-2] = {m} +- {se}"
        );
    }
}

/// The distribution test: bias-free He-relu at width 16, depth 8, exact law against 10^4 measured
/// networks. KS p > 0.01 (a 1% false-alarm rate, as the issue states), and mean / variance / degenerate
/// fraction through `check_finite` at family false-alarm 1e-6. At width 8 the degenerate probability is
/// 3.1%, large enough for the count to test the formula sharply.
#[test]
fn exact_law_matches_simulation_at_width_16_and_8() {
    for (width, seed) in [(16usize, 11u64), (8, 12)] {
        let nw = net(Nonlinearity::Relu, width, 8, 2.0);
        let p = predict_finite(&nw, &exact_opts(10000, seed)).unwrap();
        let m = mc(&nw, 10000, seed + 100);
        let (d, pv) = ks_two_sample(&p.sample_total, &m.log_gsc_total);
        assert!(pv > 0.01, "width {width}: KS D = {d}, p = {pv}");
        let r = check_finite(&p, &m, 1e-6);
        let bad: Vec<String> = r
            .comparisons
            .iter()
            .filter(|c| c.verdict != gradscale::verify::finite::FiniteVerdict::Agree)
            .map(|c| {
                format!(
                    "{} l={} pred {} meas {} se {} p {}",
                    c.quantity, c.layer, c.predicted, c.measured, c.stderr, c.p_value
                )
            })
            .collect();
        assert!(bad.is_empty(), "width {width}: {bad:#?}");
        let expected = 1.0 - (1.0 - 0.5f64.powi(width as i32)).powi(8);
        assert!((p.degenerate_probability - expected).abs() < 1e-15);
    }
}

/// Unequal widths, both routes, against simulation per layer (mean and variance of ln GSC(L, l)), family
/// false-alarm 1e-6 per network.
#[test]
fn unequal_widths_agree_with_simulation() {
    use Nonlinearity::*;
    for (act, widths, sb2, seed) in [
        (Relu, vec![24, 12, 40, 16, 32], 0.0, 21u64),
        (Tanh, vec![60, 30, 120, 40], 0.0, 22),
        (Relu, vec![60, 30, 120, 40], 0.1, 23),
    ] {
        let sw = sw2(act);
        let nw = Network::mlp_widths(widths[0], &widths[1..], act, sw, sb2).unwrap();
        let p = predict_finite(&nw, &exact_opts(4000, seed)).unwrap();
        let m = mc(&nw, 1500, seed + 100);
        let r = check_finite(&p, &m, 1e-6);
        let bad: Vec<String> = r
            .comparisons
            .iter()
            .filter(|c| c.verdict != gradscale::verify::finite::FiniteVerdict::Agree)
            .map(|c| {
                format!(
                    "{} l={} pred {} meas {} se {}",
                    c.quantity, c.layer, c.predicted, c.measured, c.stderr
                )
            })
            .collect();
        assert!(bad.is_empty(), "{act} {widths:?}: {bad:#?}");
    }
}

/// A small subset of the sweep, with the infinite-width value as the contrast: the expansion must agree
/// within z_crit combined se (family false-alarm 1e-6 over the subset) and be closer than mean field.
/// The chain law (the default for smooth nonlinearities) against 600 simulated networks per case, within
/// z(1e-6 family) combined standard errors plus its stated bias bound CHAIN_BIAS_PER_TAU * tau.
#[test]
fn chain_subset_against_simulation() {
    use Nonlinearity::*;
    let cases = [
        (Tanh, 100, 5),
        (Gelu, 100, 3),
        (Selu, 100, 10),
        (Erf, 100, 5),
    ];
    let z = z_for_false_alarm(1e-6 / cases.len() as f64);
    for (i, &(act, w, d)) in cases.iter().enumerate() {
        let r = run_config(act, w, d, 600, 500 + i as u64);
        let p = r.pred.expect("inside validity");
        let se = (r.meas_se.powi(2) + r.pred_se.powi(2)).sqrt();
        let bias = CHAIN_BIAS_PER_TAU * d as f64 / w as f64;
        assert!(
            (r.meas - p).abs() <= z * se + bias,
            "{act} w{w} d{d}: pred {p} meas {} se {se}",
            r.meas
        );
        if (r.mf - p).abs() > 2.0 * se {
            assert!(
                (r.meas - p).abs() < (r.meas - r.mf).abs(),
                "{act} w{w} d{d}: not closer than mean field"
            );
        }
    }
}

/// At width 12 (below CHAIN_MIN_WIDTH) the chain is outside its validity beyond 4 layers (tau > 1/3),
/// says so, and still carries its mean as the shift from mean field; at width 30 it holds to tau = 2.
#[test]
fn narrow_smooth_networks_are_outside_validity() {
    for act in [Nonlinearity::Tanh, Nonlinearity::Gelu] {
        let p = predict_finite(&net(act, 12, 10, 1.0), &FiniteOptions::default()).unwrap();
        assert_eq!(p.method, FiniteMethod::Chain);
        assert!(matches!(
            p.log_gsc_to_output[0],
            FiniteValue::OutsideValidity { shift: Some(s), .. } if s.is_finite()
        ));
        assert!(matches!(p.log_gsc_to_output[6], FiniteValue::Law(_)));
        assert!(matches!(
            p.log_gsc_to_output[5],
            FiniteValue::OutsideValidity { .. }
        ));
        // 61 layers: only the status is checked, so 50 draws keep the O(L^2) every-start states cheap.
        let o = FiniteOptions {
            spectra: 50,
            ..FiniteOptions::default()
        };
        let p = predict_finite(&net(act, 30, 61, 1.0), &o).unwrap();
        assert!(matches!(p.log_gsc_to_output[1], FiniteValue::Law(_)));
        assert!(matches!(
            p.log_gsc_to_output[0],
            FiniteValue::OutsideValidity { .. }
        ));
    }
}

/// The chain on bias-free relu and linear nets, where the exact law is known: width 30, depth 10
/// (tau = 1/3, the end of its validity). Mean within z(1e-6) combined standard errors plus the stated bias
/// bound; sd within 10% (measured: 2-6% low up to L/n = 2, theory/finite-width.md section 8).
#[test]
fn chain_matches_exact_law_on_homogeneous_nets() {
    let z = z_for_false_alarm(1e-6 / 4.0);
    for act in [Nonlinearity::Relu, Nonlinearity::Linear] {
        for (n, l) in [(30usize, 10usize), (60, 5)] {
            let nw = net(act, n, l, sw2(act));
            let c = predict_chain(&nw, &exact_opts(2000, 3), TAU_CHAIN).unwrap();
            let e = predict_finite(&nw, &exact_opts(2000, 4)).unwrap();
            assert_eq!(
                (c.method, e.method),
                (FiniteMethod::Chain, FiniteMethod::Exact)
            );
            let (cl, el) = (
                c.log_gsc_to_output[0].law().unwrap(),
                e.log_gsc_to_output[0].law().unwrap(),
            );
            let se = cl.mean_se.hypot(el.mean_se);
            let bias = CHAIN_BIAS_PER_TAU * l as f64 / n as f64;
            assert!(
                (cl.mean - el.mean).abs() <= z * se + bias,
                "{act} n {n} L {l}: chain {} exact {} se {se}",
                cl.mean,
                el.mean
            );
            assert!(
                (cl.sd / el.sd - 1.0).abs() < 0.1,
                "{act}: sd {} vs {}",
                cl.sd,
                el.sd
            );
        }
    }
}

/// Issue item 6: gelu, width 30, depth 5, sigma_b^2 = 0.01, where the O(1/n) expansion (which its own
/// validity rule accepted) predicts about half the measured shift. The chain agrees with 2000 simulated
/// networks within z(1e-6) se plus its bias bound; the expansion is rejected by the same tolerance.
#[test]
fn gelu_narrow_with_bias_chain_agrees_expansion_does_not() {
    let nw = Network::mlp_widths(30, &[30; 5], Nonlinearity::Gelu, 1.0, 0.01).unwrap();
    let p = predict_finite(&nw, &FiniteOptions::default()).unwrap();
    let law = *p.log_gsc_to_output[0].law().unwrap();
    let m = mc(&nw, 2000, 17);
    let s = m.layers[0].log_gsc_to_output;
    let tol =
        z_for_false_alarm(1e-6) * s.stderr.hypot(law.mean_se) + CHAIN_BIAS_PER_TAU * 5.0 / 30.0;
    assert!(
        (s.mean - law.mean).abs() <= tol,
        "chain {} measured {} tol {tol}",
        law.mean,
        s.mean
    );
    let ex = predict_expansion(&nw, 1.0, 1.0).unwrap();
    let ex_mean = ex.log_gsc_to_output[0].law().unwrap().mean;
    assert!(
        (s.mean - ex_mean).abs() > tol,
        "expansion {ex_mean} measured {}",
        s.mean
    );
}

/// The chain's moment-matched unit sums (with their Cornish-Fisher skewness term) against the unit loop
/// they replace, where the normal law alone was measured 0.068 off (gelu with biases, width 60, depth 60,
/// tau = 1; theory/finite-width.md section 8): means within z(1e-6) combined se (8000 draws each), sd
/// within 3%, 0.5% above the sd's own sampling error at 8000 draws.
#[test]
fn chain_unit_sums_match_the_unit_loop() {
    let nw = Network::mlp_widths(60, &[60; 60], Nonlinearity::Gelu, 1.0, 0.05).unwrap();
    let o = FiniteOptions {
        spectra: 8000,
        seed: 21,
        ..FiniteOptions::default()
    };
    let fast = predict_chain(&nw, &o, 1e9).unwrap();
    let slow = predict_chain(
        &nw,
        &FiniteOptions {
            unit_loop: true,
            seed: 22,
            ..o
        },
        1e9,
    )
    .unwrap();
    let (a, b) = (
        fast.log_gsc_to_output[0].law().unwrap(),
        slow.log_gsc_to_output[0].law().unwrap(),
    );
    let se = a.mean_se.hypot(b.mean_se);
    assert!(
        (a.mean - b.mean).abs() <= z_for_false_alarm(1e-6) * se,
        "normal sums {} vs unit loop {} (se {se})",
        a.mean,
        b.mean
    );
    assert!((a.sd / b.sd - 1.0).abs() < 0.03, "sd {} vs {}", a.sd, b.sd);
}

/// The chain states the bias bound `check` adds to the tolerance of its mean: CHAIN_BIAS_PER_TAU * tau
/// per starting layer (tau = 20/30 at l = 0, 10/30 at l = 10, 0 at l = L); the exact route states none.
#[test]
fn chain_states_its_bias_bound_for_check() {
    let o = FiniteOptions {
        spectra: 200,
        ..FiniteOptions::default()
    };
    let p = predict_finite(&net(Nonlinearity::Tanh, 30, 20, 1.0), &o).unwrap();
    assert_eq!(p.method, FiniteMethod::Chain);
    for (l, tau) in [(0usize, 20.0 / 30.0), (10, 10.0 / 30.0), (20, 0.0)] {
        assert!(
            (p.bias_bound[l] - CHAIN_BIAS_PER_TAU * tau).abs() < 1e-12,
            "layer {l}: {}",
            p.bias_bound[l]
        );
    }
    let e = predict_finite(&net(Nonlinearity::Relu, 30, 5, 2.0), &o).unwrap();
    assert_eq!(e.method, FiniteMethod::Exact);
    assert!(e.bias_bound.iter().all(|&b| b == 0.0));
}

/// Same seed, same law (each draw has its own generator, so the thread count cannot matter); another
/// seed gives another sample.
#[test]
fn chain_is_reproducible() {
    let nw = net(Nonlinearity::Tanh, 20, 4, 1.0);
    let o = FiniteOptions {
        spectra: 300,
        seed: 5,
        ..FiniteOptions::default()
    };
    let a = predict_finite(&nw, &o).unwrap();
    let b = predict_finite(&nw, &o).unwrap();
    assert_eq!(a.log_gsc_to_output, b.log_gsc_to_output);
    let c = predict_finite(&nw, &FiniteOptions { seed: 6, ..o }).unwrap();
    assert_ne!(a.log_gsc_to_output, c.log_gsc_to_output);
}

/// The expansion reproduces the exact small-depth slopes: E ln GSC = L/n (relu) and L/(2n) (linear),
/// Var = L/n and L/(2n) (theory/finite-width.md §3, a closed-form check of the recursion).
#[test]
fn expansion_reproduces_homogeneous_slopes() {
    // Mean: the exact small-depth slopes (L/n relu, L/(2n) linear). Variance: the same slopes, then the
    // O(L^2/n^2) terms of theory/finite-width.md section 3 summed by hand: the off-path weight scatter
    // 2 (1 + V) s_{m-1}/n^2 with the spectral spread s_{m-1} = 1 + (1 + V)(m - 1), the path noise's
    // covariance with eps (-2 rho_{m-1} k2 / n^2, rho_{m-1} = 1 + (1 + V)(m - 1), k2 = 4 relu, 2 linear) and
    // its variance rho_{m-1}^2 k / n^3 (k = 4 relu, 2 linear): in ln GSC units, relu
    // L/n - L^2/n^2 + L(4L^2 - 1)/(3 n^3), linear L/(2n) - L(L+1)/(4n^2) + L(L+1)(2L+1)/(12 n^3).
    for (act, slope) in [(Nonlinearity::Relu, 1.0), (Nonlinearity::Linear, 0.5)] {
        for (n, l) in [(400usize, 20usize), (100, 10)] {
            let p = predict_expansion(&net(act, n, l, 2.0), 1.0, 1.0).unwrap();
            let law = *p.log_gsc_to_output[0].law().unwrap();
            let (nf, lf) = (n as f64, l as f64);
            let t = slope * lf / nf;
            assert!(
                (law.mean - t).abs() < 1e-6,
                "{act}: mean {} vs {t}",
                law.mean
            );
            let var = if slope == 1.0 {
                t - lf * lf / (nf * nf) + lf * (4.0 * lf * lf - 1.0) / (3.0 * nf.powi(3))
            } else {
                t - lf * (lf + 1.0) / (4.0 * nf * nf)
                    + lf * (lf + 1.0) * (2.0 * lf + 1.0) / (12.0 * nf.powi(3))
            };
            assert!(
                (law.sd * law.sd - var).abs() < 1e-6,
                "{act} n {n} L {l}: var {} vs {var}",
                law.sd * law.sd
            );
        }
    }
}

/// The CLI: `predict --json` carries the finite-width law per layer, `--widths` builds unequal widths,
/// `check` at width 12 says "outside validity", and a bad `--widths` is one line on stderr with exit 2.
#[test]
fn cli_reports_finite_width_law() {
    let bin = env!("CARGO_BIN_EXE_gradscale");
    let out = std::process::Command::new(bin)
        .args(["predict", "--act", "relu", "--widths", "20,10,40", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[1]["width"], 10);
    for key in ["mean", "sd", "q05", "q50", "q95"] {
        assert!(layers[0]["log_gsc_to_output_finite"][key].is_f64(), "{key}");
    }
    assert_eq!(v["finite_width"]["method"], "exact");
    let out = std::process::Command::new(bin)
        .args([
            "check",
            "--act",
            "tanh",
            "--width",
            "12",
            "--depth",
            "6",
            "--samples",
            "50",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("outside validity"));
    let out = std::process::Command::new(bin)
        .args(["predict", "--widths", "10,0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// psi'(x) by recurrence up to x >= 20 and the asymptotic series (error < 1e-12 there).
fn trigamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 20.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let x2 = x * x;
    acc + 1.0 / x + 1.0 / (2.0 * x2) + 1.0 / (6.0 * x2 * x) - 1.0 / (30.0 * x2 * x2 * x)
        + 1.0 / (42.0 * x2 * x2 * x2 * x)
}

/// REFERENCE §6 closed forms, checked against the exact route (its own sampling error, 1e-6 false alarm):
/// one linear layer, E ln GSC^2 = psi(n^2/2) - psi(n/2) - ln n; and the infinite-depth limit at fixed width,
/// E ln GSC -> [gamma + ln 2 + psi(n/2) - ln(n/2)] / 2, Var -> [pi^2/2 - psi'(n/2)] / 4 (linear, n = 10,
/// depth 1000: tau = 100, where the approach ~ tau^-1/2 e^-tau/8 is far below the error).
#[test]
fn exact_route_reproduces_reference_closed_forms() {
    use statrs::function::gamma::digamma;
    let z = z_for_false_alarm(1e-6);
    let n = 16usize;
    let nf = n as f64;
    let p = predict_finite(
        &net(Nonlinearity::Linear, n, 1, 1.0),
        &exact_opts(20000, 31),
    )
    .unwrap();
    let law = *p.log_gsc_to_output[0].law().unwrap();
    let one = 0.5 * (digamma(nf * nf / 2.0) - digamma(nf / 2.0) - nf.ln());
    println!(
        "one linear layer n=16: {} +- {} (closed form {one})",
        law.mean, law.mean_se
    );
    assert!(
        (law.mean - one).abs() <= z * law.mean_se,
        "one layer: {} +- {} vs {one}",
        law.mean,
        law.mean_se
    );

    let n = 10usize;
    let nf = n as f64;
    let p = predict_finite(
        &net(Nonlinearity::Linear, n, 1000, 1.0),
        &exact_opts(2000, 32),
    )
    .unwrap();
    let law = *p.log_gsc_to_output[0].law().unwrap();
    let euler = 0.577_215_664_901_532_9;
    let mean_inf = 0.5 * (euler + 2f64.ln() + digamma(nf / 2.0) - (nf / 2.0).ln());
    let var_inf = 0.25 * (std::f64::consts::PI.powi(2) / 2.0 - trigamma(nf / 2.0));
    assert!(
        (law.mean - mean_inf).abs() <= z * law.mean_se,
        "deep mean {} +- {} vs {mean_inf}",
        law.mean,
        law.mean_se
    );
    let v = law.sd * law.sd;
    let v_se = 2.0 * law.sd * law.sd_se;
    println!(
        "deep linear n=10: mean {} +- {} (limit {mean_inf}); var {v} +- {v_se} (limit {var_inf})",
        law.mean, law.mean_se
    );
    assert!(
        (v - var_inf).abs() <= z * v_se,
        "deep var {v} +- {v_se} vs {var_inf}"
    );
}

/// Regression for the variance test's standard error (theory/finite-width.md §7): at 100 samples the
/// sample's own fourth moment understates the error of the measured variance of the heavy-tailed ln GSC,
/// and seed 1 of the seed paper's He-relu net (width 100, depth 50) then "disagreed" at eight layers
/// (z down to -7.3) although 2000 samples match the law. With null-based errors every comparison must
/// agree at family false-alarm 1e-3 per seed (so this test's false-alarm rate is below 3e-3).
#[test]
fn variance_test_uses_the_laws_error_at_small_samples() {
    let nw = net(Nonlinearity::Relu, 100, 50, 2.0);
    let p = predict_finite(&nw, &FiniteOptions::default()).unwrap();
    for seed in 1..=3u64 {
        let m = mc(&nw, 100, seed);
        let r = check_finite(&p, &m, 1e-3);
        assert_eq!(
            r.disagree,
            0,
            "seed {seed}: {:#?}",
            r.comparisons
                .iter()
                .filter(|c| c.verdict == gradscale::verify::finite::FiniteVerdict::Disagree)
                .collect::<Vec<_>>()
        );
    }
}

/// With `--probes P`, each measured ln GSC carries the estimator's own noise, so the measured variance is
/// the law's plus that noise (estimated per sample from the P probe values). Tanh, width 100, depth 10, 4
/// probes, 2000 networks: the probe part is a fifth of the variance; with it the comparison at
/// layer 0 agrees at false-alarm 1e-6, and against the law alone that single comparison would be rejected
/// at false-alarm 1e-6 (z = 5.3 with the chain law).
#[test]
fn probe_noise_is_part_of_the_measured_variance() {
    let nw = net(Nonlinearity::Tanh, 100, 10, 1.0);
    // Enough chain draws that the law's own error of its variance (0.7%) stays well below the sample's.
    let p = predict_finite(
        &nw,
        &FiniteOptions {
            spectra: 20_000,
            ..FiniteOptions::default()
        },
    )
    .unwrap();
    let m = simulate(
        &nw,
        &McOptions {
            samples: 2000,
            seed: 8,
            estimator: Estimator::Probes(4),
        },
    )
    .unwrap();
    let law = *p.log_gsc_to_output[0].law().unwrap();
    assert!(m.probe_var_to_output[0] > 0.2 * law.sd * law.sd);
    let r = check_finite(&p, &m, 1e-6);
    let c = r
        .comparisons
        .iter()
        .find(|c| c.quantity == "var ln GSC(L, l)" && c.layer == 0)
        .unwrap();
    assert_eq!(
        c.verdict,
        gradscale::verify::finite::FiniteVerdict::Agree,
        "{c:?}"
    );
    assert!(
        ((c.measured - law.sd * law.sd) / c.stderr).abs() > z_for_false_alarm(1e-6),
        "{c:?} law var {}",
        law.sd * law.sd
    );
    assert!(r.comparisons.iter().all(|c| !c.quantity.starts_with("KS")));
}

/// Diagnostic: the chain law against the exact law on bias-free relu and linear nets, L/n up to 2.
#[test]
#[ignore]
fn chain_probe_against_exact() {
    let acts: Vec<Nonlinearity> = std::env::var("PROBE_ACTS")
        .unwrap_or("relu,linear".into())
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let width: usize = std::env::var("PROBE_WIDTH")
        .map(|s| s.parse().unwrap())
        .unwrap_or(30);
    for act in acts {
        for d in [5, 15, 30, 60] {
            let nw = net(act, width, d, sw2(act));
            let c = predict_chain(&nw, &exact_opts(2000, 3), 1e9).unwrap();
            let e = predict_finite(&nw, &exact_opts(1000, 4)).unwrap();
            let (cl, el) = (
                c.log_gsc_to_output[0].law().unwrap(),
                e.log_gsc_to_output[0].law().unwrap(),
            );
            println!(
                "{act} n={width} L={d}: chain {:.4} +- {:.4} sd {:.4} | exact {:.4} +- {:.4} sd {:.4} | l=L/2 chain {:.4} exact {:.4}",
                cl.mean, cl.mean_se, cl.sd, el.mean, el.mean_se, el.sd,
                c.log_gsc_to_output[d / 2].law().unwrap().mean,
                e.log_gsc_to_output[d / 2].law().unwrap().mean
            );
        }
    }
}

/// Diagnostic: the chain alone (no simulation) for `CHAIN_CASES` = "act:sb2:width:depth;...", 2000 draws,
/// the seeds of the sweep, so its rows can be set against measurements already taken.
#[test]
#[ignore]
fn chain_table() {
    let cases = std::env::var("CHAIN_CASES").unwrap_or("selu:0.05:60:60".into());
    for case in cases.split(';') {
        let f: Vec<&str> = case.split(':').collect();
        let (act, sb2): (Nonlinearity, f64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let (w, d): (usize, usize) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        let nw = Network::mlp_widths(w, &vec![w; d], act, sw2(act), sb2).unwrap();
        let mf = predict(&nw, &MfOptions::default()).unwrap().layers[0].log_gsc_to_output;
        let seed = 1000 + (w * 100 + d) as u64;
        let o = FiniteOptions {
            seed: seed ^ 0x5555,
            spectra: std::env::var("CHAIN_DRAWS").map_or(2000, |s| s.parse().unwrap()),
            unit_loop: std::env::var("CHAIN_UNIT_LOOP").is_ok(),
            ..FiniteOptions::default()
        };
        let t = std::time::Instant::now();
        let c = predict_chain(&nw, &o, 1e9).unwrap();
        let l = c.log_gsc_to_output[0].law().unwrap();
        println!(
            "{act} sb2={sb2} n={w} L={d}: mf {mf:.4} chain {:.4} +- {:.4} sd {:.4} q05 {:.4} q95 {:.4} ({:.2} s)",
            l.mean,
            l.mean_se,
            l.sd,
            l.q05,
            l.q95,
            t.elapsed().as_secs_f64()
        );
    }
}

use common::relu_ended_resnet;

/// The radial-bulk chain (theory/finite-width.md section 9) for ResNets whose branch ends in a relu,
/// against the Monte Carlo engine with exact Jacobians at width 100, alpha = 1, 10 / 20 / 50 blocks. The
/// infinite-width closed form says -1.53 / -3.39 / -8.99 and is beside the point at this width. Bias bound
/// 0.06: the largest gap between the chain and independent numpy measurements at alpha = 1 (widths 100-400,
/// 10-50 blocks) was 0.053 +- 0.012, the chain always below (theory/finite-width.md section 9). Three
/// comparisons at 1e-4 false alarm each. At alpha = 0.5 the chain is 0.08-0.09 too low at 20 and 50 blocks:
/// a finding stated in the note, outside this bound, so not asserted here.
#[test]
fn radial_chain_matches_relu_ended_resnets() {
    let z = z_for_false_alarm(1e-4);
    for (blocks, seed) in [(10, 11), (20, 12), (50, 13)] {
        let nw = relu_ended_resnet(100, blocks, 1.0);
        let law = gradscale::theory::radial::predict_radial(&nw).expect("relu-ended resnet");
        let mf = predict(&nw, &MfOptions::default()).unwrap();
        assert!((law.infinite[0] - mf.layers[0].log_gsc_to_output).abs() < 1e-9);
        let m = mc(&nw, 200, seed);
        let got = &m.layers[0].log_gsc_to_output;
        let tol = z * got.stderr + 0.06;
        assert!(
            (law.finite[0] - got.mean).abs() < tol,
            "{blocks} blocks: chain {:.3}, measured {:.3} +- {:.3} (infinite width {:.3})",
            law.finite[0],
            got.mean,
            got.stderr,
            law.infinite[0]
        );
        // The exact floor: every network, not only the mean.
        assert!(m.log_gsc_total.iter().all(|&x| x >= law.lower_bound - 1e-9));
    }
}

/// The chain at the end of its widened validity: width 30, depth 50 (tau = 1.67), the four smooth
/// nonlinearities with and without biases, 4000 networks (exact Jacobians) against 8000 chain draws. Each
/// mean within z(1e-6 / 8) combined se plus the stated bias bound CHAIN_BIAS_PER_TAU * tau = 0.25 (the
/// measured errors are 0.03-0.18: theory/finite-width.md section 8). `#[ignore]`d: 21 s in release
/// (32000 simulated networks). Fails if the off-path Gamma factor is dropped (`unit_gamma` returning 1: the chain loses the
/// -Var/2 of every layer's ln gain: tanh without biases came out 0.449 against the measured 0.051, 0.40
/// off with a tolerance of 0.35).
#[test]
#[ignore]
fn chain_holds_its_bias_bound_at_tau_five_thirds() {
    let z = z_for_false_alarm(1e-6 / 8.0);
    let (n, l) = (30usize, 50usize);
    let tau = l as f64 / n as f64;
    for (i, act) in [
        Nonlinearity::Tanh,
        Nonlinearity::Selu,
        Nonlinearity::Erf,
        Nonlinearity::Gelu,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, sb2) in [0.0, 0.05].into_iter().enumerate() {
            let nw = Network::mlp_widths(n, &vec![n; l], act, sw2(act), sb2).unwrap();
            let seed = 7000 + 10 * i as u64 + j as u64;
            let c = predict_chain(&nw, &exact_opts(8000, seed), TAU_CHAIN).unwrap();
            let FiniteValue::Law(law) = c.log_gsc_to_output[0] else {
                panic!("{act} sb2 {sb2}: declined at tau {tau}");
            };
            let m = simulate(
                &nw,
                &McOptions {
                    samples: 4000,
                    seed,
                    estimator: Estimator::Exact,
                },
            )
            .unwrap()
            .layers[0]
                .log_gsc_to_output;
            let se = law.mean_se.hypot(m.stderr);
            let err = law.mean - m.mean;
            println!(
                "{act} sb2 {sb2}: chain {:.4} ({:.4}) measured {:.4} ({:.4}) z {:.2}",
                law.mean,
                law.mean_se,
                m.mean,
                m.stderr,
                err / se
            );
            assert!(
                err.abs() <= z * se + CHAIN_BIAS_PER_TAU * tau,
                "{act} sb2 {sb2}: chain {} measured {} (se {se})",
                law.mean,
                m.mean
            );
        }
    }
}
