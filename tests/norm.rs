//! Normalisation and residual networks: closed forms against reference values, and against Monte Carlo.
//! Monte Carlo comparisons allow z_crit measured standard errors plus a finite-width bias bound stated
//! (with its basis) next to each test; false-alarm rate 1e-6 per assertion, fixed seeds.
//! The `#[ignore]` sweeps print the numbers quoted in theory/batch-norm.md and theory/pythagorean.md.

use gradscale::arch::{from_toml_str, Network};
use gradscale::montecarlo::{run_sample, sample_rng, Estimator};
use gradscale::stats::{z_for_false_alarm, Summary};
use gradscale::theory::norm::{arccos_kernel, batch_norm_rate};
use gradscale::theory::{predict, MfOptions};
use gradscale::Nonlinearity;
use rayon::prelude::*;

fn net(toml: &str) -> Network {
    from_toml_str(toml, "test").unwrap()
}

fn plain(width: usize, depth: usize, batch: usize, ops: &str) -> Network {
    net(&format!(
        "[input]\nwidth = {width}\nbatch = {batch}\n[[layers]]\nrepeat = {depth}\nops = [{ops}]\n"
    ))
}

/// Per-sample least-squares slope of ln GSC(L, l) against -l over l in `range`: the per-layer log rate
/// measured past the transients at both ends.
fn slopes(
    net: &Network,
    samples: usize,
    seed: u64,
    est: Estimator,
    range: std::ops::Range<usize>,
) -> Summary {
    let xs: Vec<f64> = (0..samples)
        .into_par_iter()
        .filter_map(|i| {
            let mut rng = sample_rng(seed, i as u64);
            let o = run_sample(net, &mut rng, est);
            if o.degenerate {
                return None;
            }
            let ls: Vec<f64> = range.clone().map(|l| l as f64).collect();
            let ys: Vec<f64> = range.clone().map(|l| o.log_gsc_to_output[l]).collect();
            let n = ls.len() as f64;
            let (mx, my) = (ls.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
            let sxy: f64 = ls.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
            let sxx: f64 = ls.iter().map(|x| (x - mx) * (x - mx)).sum();
            Some(-sxy / sxx)
        })
        .collect();
    Summary::of(&xs).unwrap()
}

#[test]
fn bn_relu_rate_reference_values() {
    // REFERENCE §10.7.
    let r4 = batch_norm_rate(Nonlinearity::Relu, 4).unwrap();
    assert!((r4.lambda - 3.084060948088).abs() < 1e-11, "{}", r4.lambda);
    let (c_star, _) = arccos_kernel(-1.0 / 3.0);
    assert!((c_star - 0.1694965880422).abs() < 1e-12, "{c_star}");
    let pi = std::f64::consts::PI;
    let lim = pi / (pi - 1.0);
    // lambda_G decreases to its limit with an O(1/B) excess.
    let mut prev = f64::INFINITY;
    for b in [4usize, 8, 16, 64, 256, 4096] {
        let l = batch_norm_rate(Nonlinearity::Relu, b).unwrap().lambda;
        assert!(l < prev && l > lim, "B={b}: {l}");
        prev = l;
    }
    let big = batch_norm_rate(Nonlinearity::Relu, 10_000_000)
        .unwrap()
        .lambda;
    assert!((big - lim).abs() < 1e-5, "{big} vs {lim}");
    // Linear: (B-2)/(B-3), which is also Yang's formula with J(c) = c, J' = 1.
    for b in [4usize, 5, 16, 100] {
        let bf = b as f64;
        let l = batch_norm_rate(Nonlinearity::Linear, b).unwrap().lambda;
        let c0 = -1.0 / (bf - 1.0);
        let yang = (bf - 1.0 + 1.0) / ((bf - 3.0) * (1.0 - c0)) - 1.0 / (bf - 3.0);
        assert!((l - (bf - 2.0) / (bf - 3.0)).abs() < 1e-15 && (l - yang).abs() < 1e-13);
    }
    // Heuristic for tanh: E[tanh'^2]/Var[tanh] at q = 1 (REFERENCE §5.1: 1.177807).
    let t = batch_norm_rate(Nonlinearity::Tanh, 64).unwrap().lambda;
    assert!((t - 1.177807).abs() < 5e-6, "{t}");
    assert!(batch_norm_rate(Nonlinearity::Relu, 3).is_err());
}

#[test]
#[ignore]
fn sweep_bn_relu_rates() {
    // GRADSCALE_SWEEP="B:width:samples,..." overrides the default grid.
    let grid: Vec<(usize, usize, usize)> = match std::env::var("GRADSCALE_SWEEP") {
        Ok(v) => v
            .split(',')
            .map(|t| {
                let f: Vec<usize> = t.split(':').map(|x| x.parse().unwrap()).collect();
                (f[0], f[1], f[2])
            })
            .collect(),
        Err(_) => vec![
            (4, 100, 200),
            (16, 100, 200),
            (64, 100, 100),
            (256, 100, 50),
        ],
    };
    for (b, width, samples) in grid {
        let n = plain(width, 30, b, "{ dense = { width = WIDTH, sigma_w2 = 2.0 } }, { batch-norm = {} }, { act = \"relu\" }".replace("WIDTH", &width.to_string()).as_str());
        let s = slopes(&n, samples, 7, Estimator::Probes(4), 5..26);
        let th = 0.5 * batch_norm_rate(Nonlinearity::Relu, b).unwrap().lambda.ln();
        println!("B={b} width={width}: measured per-layer ln GSC {:.5} +- {:.5}, closed form {th:.5}, z = {:.2}", s.mean, s.stderr, (s.mean - th) / s.stderr);
    }
}

/// Per-layer increments ln GSC(L, l-1) - ln GSC(L, l), mean and se over samples: the transient profile.
#[test]
#[ignore]
fn sweep_bn_profile() {
    let spec = std::env::var("GRADSCALE_PROFILE").unwrap_or_else(|_| "relu:64:100:50:60".into());
    let f: Vec<&str> = spec.split(':').collect();
    let (act, b, width, depth, samples): (&str, usize, usize, usize, usize) = (
        f[0],
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    );
    let sw = if act == "relu" { 2.0 } else { 1.0 };
    let n = plain(
        width,
        depth,
        b,
        &format!("{{ dense = {{ width = {width}, sigma_w2 = {sw} }} }}, {{ batch-norm = {{}} }}, {{ act = \"{act}\" }}"),
    );
    let p = predict(&n, &MfOptions::default()).unwrap();
    let outs: Vec<Vec<f64>> = (0..samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(11, i as u64);
            run_sample(&n, &mut rng, Estimator::Probes(4)).log_gsc_to_output
        })
        .collect();
    for l in 1..=depth {
        let inc: Vec<f64> = outs.iter().map(|o| o[l - 1] - o[l]).collect();
        let s = Summary::of(&inc).unwrap();
        let th = p.layers[l - 1].log_gsc_to_output - p.layers[l].log_gsc_to_output;
        println!(
            "l={l:3} measured {:.5} +- {:.5}  predicted {th:.5}",
            s.mean, s.stderr
        );
    }
}
