//! Domain collapse (theory/collapse.md, theory/tradeoff.md): the correlation map against an independent
//! implementation of the infinite-width kernels, the tradeoff theorem over random (phi, sigma_w^2,
//! sigma_b^2), the phase diagram's speed and finiteness, and the predicted collapse metrics against
//! sampled networks at width 256, depth 50, batch 32.

use gradscale::arch::{MlpSpec, Network};
use gradscale::montecarlo::collapse::measure_collapse;
use gradscale::theory::collapse::{
    expected_sign_diversity, expected_std, predict_collapse, sign_diversity_large_batch,
};
use gradscale::theory::phase::{phase_grid, phase_point, PhaseOptions};
use gradscale::theory::{predict, MfOptions};
use gradscale::Nonlinearity;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::f64::consts::PI;

fn mlp(act: Nonlinearity, width: usize, depth: usize, sw2: f64, sb2: f64) -> Network {
    Network::mlp(MlpSpec {
        act,
        width,
        depth,
        sigma_w2: sw2,
        sigma_b2: sb2,
    })
    .unwrap()
}

/// Gauss–Hermite rule for N(0,1) by the classic Newton iteration on the physicists' Hermite polynomial
/// (Numerical Recipes' gauher), independent of the library's quadrature and of its Golub–Welsch rule.
fn gauher(n: usize) -> (Vec<f64>, Vec<f64>) {
    let pim4 = PI.powf(-0.25);
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let m = n.div_ceil(2);
    let mut z = 0.0f64;
    for i in 0..m {
        z = match i {
            0 => (2.0 * n as f64 + 1.0).sqrt() - 1.85575 * (2.0 * n as f64 + 1.0).powf(-0.16667),
            1 => z - 1.14 * (n as f64).powf(0.426) / z,
            2 => 1.86 * z - 0.86 * x[0],
            3 => 1.91 * z - 0.91 * x[1],
            _ => 2.0 * z - x[i - 2],
        };
        let mut pp = 0.0;
        for _ in 0..100 {
            let (mut p1, mut p2) = (pim4, 0.0);
            for j in 0..n {
                let p3 = p2;
                p2 = p1;
                p1 = z * (2.0 / (j + 1) as f64).sqrt() * p2
                    - (j as f64 / (j + 1) as f64).sqrt() * p3;
            }
            pp = (2.0 * n as f64).sqrt() * p2;
            let z1 = z;
            z = z1 - p1 / pp;
            if (z - z1).abs() <= 1e-15 {
                break;
            }
        }
        x[i] = z;
        x[n - 1 - i] = -z;
        w[i] = 2.0 / (pp * pp);
        w[n - 1 - i] = w[i];
    }
    // Physicists' (weight e^{-t^2}) to probabilists': z = sqrt(2) t, weights / sqrt(pi).
    (
        x.iter().map(|t| t * 2f64.sqrt()).collect(),
        w.iter().map(|v| v / PI.sqrt()).collect(),
    )
}

/// Independent kernels: (E[phi^2](q), E[phi(u1) phi(u2)](q, c)) at equal variances.
fn kernel(act: Nonlinearity, q: f64, c: f64, gh: &(Vec<f64>, Vec<f64>)) -> (f64, f64) {
    match act {
        Nonlinearity::Relu | Nonlinearity::LeakyRelu { .. } => {
            let a = if let Nonlinearity::LeakyRelu { slope } = act {
                slope
            } else {
                0.0
            };
            // phi = a x + (1-a) relu x; arc-cosine kernel through the angle.
            let t = c.acos();
            let k = q * (t.sin() + (PI - t) * t.cos()) / (2.0 * PI);
            let second = q * (1.0 + a * a) / 2.0;
            (second, (1.0 - a).powi(2) * k + a * q * c)
        }
        Nonlinearity::Erf => {
            let s = (2.0 / PI) * (2.0 * q / (1.0 + 2.0 * q)).asin();
            (s, (2.0 / PI) * (2.0 * q * c / (1.0 + 2.0 * q)).asin())
        }
        _ => {
            let (x, w) = gh;
            let sq = q.sqrt();
            let sc = ((1.0 - c) * (1.0 + c)).sqrt();
            let (mut s, mut cr) = (0.0, 0.0);
            for (&x1, &w1) in x.iter().zip(w) {
                let p1 = act.phi(sq * x1);
                s += w1 * p1 * p1;
                let inner: f64 = x
                    .iter()
                    .zip(w)
                    .map(|(&x2, &w2)| w2 * act.phi(sq * (c * x1 + sc * x2)))
                    .sum();
                cr += w1 * p1 * inner;
            }
            (s, cr)
        }
    }
}

/// The library's correlation map c_l of a width-10 MLP (batch 2, input correlation c0) against an
/// independent iteration, x-level (q_x, c_x) -> pre-activation (q, c) -> output, with the 2-D kernels
/// of the given rule, to 1e-10 at every layer.
fn assert_map_matches_independent_iteration(
    act: Nonlinearity,
    sw2: f64,
    sb2: f64,
    d: usize,
    c0: f64,
    rule: &(Vec<f64>, Vec<f64>),
) {
    let mut net = mlp(act, 10, d, sw2, sb2);
    net.input.batch = 2;
    net.input.correlation = c0;
    let p = predict(
        &net,
        &MfOptions {
            correlation: true,
            ..Default::default()
        },
    )
    .unwrap();
    let (mut qx, mut cx) = (1.0, c0);
    for l in 1..=d {
        let q = sw2 * qx + sb2;
        let c = (sw2 * qx * cx + sb2) / q;
        let (s, cr) = kernel(act, q, c, rule);
        qx = s;
        cx = cr / s;
        let got = p.layers[l].c.unwrap();
        assert!(
            (got - cx).abs() <= 1e-10,
            "{act} sw2={sw2} sb2={sb2} c0={c0} l={l}: library {got} independent {cx}"
        );
    }
}

#[test]
fn correlation_map_matches_independent_kernels() {
    // Leaky relu's cross term: E[(a u1 + (1-a) r1)(a u2 + (1-a) r2)] = a^2 q c + a(1-a) q c + (1-a)^2 k
    // = a q c + (1-a)^2 k (E[u1 relu(u2)] = q c / 2 by u -> -u symmetry).
    let gh = gauher(160);
    let cases: Vec<(Nonlinearity, f64, f64)> = vec![
        (Nonlinearity::Relu, 2.0, 0.0),
        (Nonlinearity::LeakyRelu { slope: 0.2 }, 1.5, 0.0),
        (Nonlinearity::Erf, 1.7, 0.1),
        (Nonlinearity::Tanh, 1.6, 0.05),
        // sigma_w^2 < 2 keeps gelu's q bounded (q* ~ 1): at q >~ 5 gelu bends on a scale 1/sqrt(q) that
        // this test's plain 160-node Gauss–Hermite rule no longer resolves to 1e-10.
        (Nonlinearity::Gelu, 1.8, 0.02),
    ];
    for (act, sw2, sb2) in cases {
        // Depth 50 for every case (tanh and gelu: ~60 ms a layer of bivariate quadrature, ~25 s in all).
        for c0 in [0.0, 0.5, 0.9, 0.99] {
            assert_map_matches_independent_iteration(act, sw2, sb2, 50, c0, &gh);
        }
    }
}

#[test]
fn relu_correlation_follows_the_asymptotic_law() {
    // 1 - c_l ~ (9 pi^2/2) l^-2 (1 - 3 ln l / l + O(1/l)): at l = 2000 the O(1/l) remainder is < 1%.
    let net = {
        let mut n = mlp(Nonlinearity::Relu, 4, 2000, 2.0, 0.0);
        n.input.batch = 2;
        n
    };
    let p = predict(
        &net,
        &MfOptions {
            correlation: true,
            ..Default::default()
        },
    )
    .unwrap();
    let l = 2000.0f64;
    let law = 4.5 * PI * PI / (l * l) * (1.0 - 3.0 * l.ln() / l);
    let got = 1.0 - p.layers[2000].c.unwrap();
    assert!((got / law - 1.0).abs() < 0.01, "{got} vs {law}");
    assert!(p.layers.iter().all(|x| x.c.unwrap().is_finite()));
}

#[test]
fn finite_batch_formulas() {
    // P = 2: |h1 - h2|/2 with h1 - h2 ~ N(0, 2q(1-c)) has mean sqrt(q(1-c)/pi).
    let (q, c) = (1.7, 0.3);
    assert!((expected_std(q, c, 2) - (q * (1.0 - c) / PI).sqrt()).abs() < 1e-14);
    // Large P tends to sqrt(q(1-c)).
    assert!((expected_std(q, c, 100_000) / (q * (1.0 - c)).sqrt() - 1.0).abs() < 1e-5);
    // sdiv at P = 2: min(P,N)/2 = 1/2 when signs differ, P(differ) = arccos(c)/pi (Sheppard).
    for c in [0.0f64, 0.4, 0.9] {
        let want = 0.5 * c.acos() / PI;
        assert!((expected_sign_diversity(c, 2) - want).abs() < 1e-12, "{c}");
    }
    // Large batch: arccos(sqrt c)/pi, approached from below (Jensen).
    for c in [0.0, 0.5, 0.99] {
        let big = expected_sign_diversity(c, 4000);
        let lim = sign_diversity_large_batch(c);
        assert!(
            big <= lim + 1e-12 && (big - lim).abs() < 0.01,
            "{c}: {big} {lim}"
        );
    }
    assert_eq!(expected_sign_diversity(1.0, 32), 0.0);
    assert!(sign_diversity_large_batch(1.0 - 1e-300) >= 0.0);
}

#[test]
fn tradeoff_theorem_over_random_networks() {
    // At q*: GSC^2 = chi_1 (computed apart), c* < 1 iff chi_1 > 1, and c* is a fixed point of the
    // public bivariate correlation map.
    let smooth = [
        Nonlinearity::Tanh,
        Nonlinearity::Erf,
        Nonlinearity::Gelu,
        Nonlinearity::Softplus,
        Nonlinearity::Silu,
        Nonlinearity::Sigmoid,
    ];
    let config = Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[5; 32]));
    runner
        .run(
            &(0..smooth.len(), 0.3f64..4.0, 0.0f64..1.0),
            |(i, sw2, sb2)| {
                let act = smooth[i];
                let p = phase_point(act, sw2, sb2, &PhaseOptions::default());
                let (Some(q), Some(chi1), Some(g)) = (p.q_star, p.chi1, p.gsc_layer) else {
                    return Ok(());
                };
                prop_assert!(
                    (g * g - chi1).abs() <= 1e-9 * chi1,
                    "{act} {sw2} {sb2}: {p:?}"
                );
                if q > 0.0 && (chi1 - 1.0).abs() > 1e-6 {
                    let cs = p.c_star.unwrap();
                    prop_assert_eq!(cs < 1.0, chi1 > 1.0);
                    let m = act.moments(q);
                    let (cross, _) = act.cross_moments(q, q, cs);
                    let image = (sw2 * cross + sb2) / (sw2 * m.second + sb2);
                    prop_assert!(
                        (image - cs).abs() < 1e-7,
                        "{act} {sw2} {sb2}: C(c*) {image} c* {cs}"
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn phase_grid_is_fast_and_finite() {
    let sw: Vec<f64> = (0..100).map(|i| 0.5 + 3.5 * i as f64 / 99.0).collect();
    let sb: Vec<f64> = (0..100).map(|i| i as f64 / 99.0).collect();
    // Include the edge of chaos of bias-free tanh exactly.
    let mut sw = sw;
    sw[14] = 1.0;
    let t = std::time::Instant::now();
    let pts = phase_grid(Nonlinearity::Tanh, &sw, &sb, &PhaseOptions::default());
    let secs = t.elapsed().as_secs_f64();
    let json = serde_json::to_string(&pts).unwrap();
    assert!(!json.contains("NaN") && !json.contains("null,\"chi1\":null"));
    for p in &pts {
        for v in [p.q_star, p.chi1, p.gsc_layer, p.c_star, p.xi_c]
            .into_iter()
            .flatten()
        {
            assert!(v.is_finite(), "{p:?}");
        }
    }
    // Timing is informational in debug-ish test profiles on a shared machine; the release CLI is
    // measured in theory/tradeoff.md.
    eprintln!("phase 100x100: {secs:.2} s");
}

/// Student t quantile with `dof` degrees of freedom for a two-sided false-alarm rate `alpha`.
fn t_crit(alpha: f64, dof: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, dof)
        .unwrap()
        .inverse_cdf(1.0 - alpha / 2.0)
}

/// Predicted vs measured std and sign diversity at every layer; returns the failures.
/// Tolerance: t_crit * se + bias, bias = (l / n) * predicted (relative), see theory/collapse.md.
fn collapse_failures(
    act: Nonlinearity,
    sw2: f64,
    sb2: f64,
    seed: u64,
    samples: usize,
) -> Vec<String> {
    let (n, depth, batch) = (256, 50, 32);
    let mut net = mlp(act, n, depth, sw2, sb2);
    net.input.batch = batch;
    let p = predict_collapse(&net, None).unwrap();
    let m = measure_collapse(&net, samples, seed).unwrap();
    // 1e-6 per test over 2 * depth comparisons.
    let t = t_crit(1e-6 / (2.0 * depth as f64), (samples - 1) as f64);
    let mut bad = vec![];
    for l in 1..=depth {
        let bias = l as f64 / n as f64;
        for (name, pred, meas) in [
            ("std", p.layers[l].preact_std, m.layers[l].preact_std),
            (
                "sdiv",
                p.layers[l].sign_diversity,
                m.layers[l].sign_diversity,
            ),
        ] {
            let (pred, meas) = (pred.unwrap(), meas.unwrap());
            let tol = t * meas.stderr + bias * pred;
            if (meas.mean - pred).abs() > tol {
                bad.push(format!(
                    "{act} {name} l={l}: pred {pred:.5} meas {:.5} se {:.5} tol {tol:.5}",
                    meas.mean, meas.stderr
                ));
            }
        }
    }
    bad
}

#[test]
fn collapse_metrics_tanh_ordered_and_chaotic_agree() {
    for (sw2, sb2, seed) in [(1.5, 0.3, 11), (2.0, 0.0, 12)] {
        let bad = collapse_failures(Nonlinearity::Tanh, sw2, sb2, seed, 40);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

#[test]
fn collapse_metrics_relu_sign_diversity_agrees() {
    let bad: Vec<String> = collapse_failures(Nonlinearity::Relu, 2.0, 0.0, 13, 40)
        .into_iter()
        .filter(|s| s.contains("sdiv"))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn collapse_metrics_selu_agree() {
    let bad = collapse_failures(Nonlinearity::Selu, 1.0, 0.0, 14, 40);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A finding, not a pass: at width 256 the relu pre-activation std across inputs runs well above the
/// mean-field value beyond ~15 layers (theory/collapse.md). With 40 networks the standard error (relu's
/// spread over networks is wide) hides it; 300 networks resolve it. Run with --ignored to see the rows.
#[test]
#[ignore]
fn finding_relu_std_exceeds_mean_field_at_depth() {
    let bad: Vec<String> = collapse_failures(Nonlinearity::Relu, 2.0, 0.0, 7, 300)
        .into_iter()
        .filter(|s| s.contains("std"))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn input_vectors_from_csv_and_npy() {
    use gradscale::arch::InputData;
    // Three vectors with known moments: q0 = mean ||x||^2/n, c0 = mean pairwise (x_a . x_b / n)/q0.
    let rows = [
        [1.0, 2.0, 0.0, -1.0],
        [2.0, 1.0, 1.0, 0.0],
        [0.5, -1.0, 2.0, 1.0],
    ];
    let n = 4.0;
    let sq: f64 = rows.iter().flatten().map(|x| x * x).sum();
    let q0 = sq / (3.0 * n);
    let dot = |a: &[f64; 4], b: &[f64; 4]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let c0 = (dot(&rows[0], &rows[1]) + dot(&rows[0], &rows[2]) + dot(&rows[1], &rows[2]))
        / (3.0 * n)
        / q0;
    let dir = std::env::temp_dir().join(format!("gradscale-collapse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("x.csv");
    let text: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    std::fs::write(&csv, text.join("\n")).unwrap();
    // A version-1 .npy written by hand: magic, header padded to 64 bytes, then little-endian f64.
    let npy = dir.join("x.npy");
    let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in rows.iter().flatten() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&npy, bytes).unwrap();
    for path in [&csv, &npy] {
        let d = InputData::load(path).unwrap();
        assert_eq!(d.vectors.len(), 3);
        let (q, c) = d.moments();
        assert!(
            (q - q0).abs() < 1e-14 && (c - c0).abs() < 1e-14,
            "{path:?}: {q} {c}"
        );
        let mut net = Network::mlp_widths(4, &[64, 64], Nonlinearity::Tanh, 1.5, 0.1).unwrap();
        net.input.batch = 3;
        net.input.data = Some(d);
        net.validate().unwrap();
        // Prediction and measurement estimate the same statistic at layer 0: the mean pairwise cosine
        // (not c0, the mean product over the mean square, which differs for inputs of unequal norms).
        let cos = |a: &[f64; 4], b: &[f64; 4]| dot(a, b) / (dot(a, a) * dot(b, b)).sqrt();
        let want =
            (cos(&rows[0], &rows[1]) + cos(&rows[0], &rows[2]) + cos(&rows[1], &rows[2])) / 3.0;
        assert!(
            (want - c0).abs() > 1e-3,
            "rows of unequal norms make the two differ"
        );
        let p = predict_collapse(&net, None).unwrap();
        assert!((p.layers[0].c - want).abs() < 1e-14);
        // The batch is the whole file (3 of 3 vectors), so the measured input cosine is exact.
        let m = measure_collapse(&net, 2, 1).unwrap();
        assert!((m.layers[0].corr.mean - want).abs() < 1e-14);
        net.input.batch = 4;
        assert!(net.validate().is_err());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn collapse_metrics_survive_scales_outside_f64() {
    use gradscale::montecarlo::collapse::{mean_pairwise_cosine, unit_metrics};
    use nalgebra::DMatrix;
    // The metrics of a batch and of the same batch times 2^-700 or 2^+700 must agree: cosines and signs are
    // scale-free and ln std shifts by exactly 700 ln 2. Before, 1e-160 outputs made every Gram product
    // underflow and every cosine read 0/0 = 1 (a deep ordered tanh net looked fully collapsed).
    let h = DMatrix::from_fn(7, 5, |i, j| ((i * 5 + j) as f64 * 0.77).sin() + 0.1);
    let (c, (s, d)) = (mean_pairwise_cosine(&h), unit_metrics(&h, 0.0));
    assert!(c.abs() < 0.99 && s.is_finite() && d > 0.0);
    for e in [-700, 700] {
        let g = &h * 2f64.powi(e);
        let (gs, gd) = unit_metrics(&g, 0.0);
        assert!((mean_pairwise_cosine(&g) - c).abs() < 1e-12, "2^{e}");
        assert!((gs - s - e as f64 * 2f64.ln()).abs() < 1e-9, "2^{e}");
        assert_eq!(gd, d);
        // The caller's log scale is added back.
        assert!((unit_metrics(&g, -e as f64 * 2f64.ln()).0 - s).abs() < 1e-9);
    }
    // Scale-equivariant nets are rescaled exactly: He-relu at sigma_w^2 = 2 and 4 (same seed) give the same
    // cosines and sign diversity and a pre-activation std shifted by l ln(2)/2, even where 2^l overflows.
    let m = |sw2| {
        let mut net = mlp(Nonlinearity::Relu, 12, 1200, sw2, 0.0);
        net.input.batch = 3;
        measure_collapse(&net, 2, 9).unwrap()
    };
    let (a, b) = (m(2.0), m(4.0));
    for l in [10, 1100] {
        let (la, lb) = (&a.layers[l], &b.layers[l]);
        assert!((la.corr.mean - lb.corr.mean).abs() < 1e-9);
        let (sa, sb) = (la.preact_std.unwrap().mean, lb.preact_std.unwrap().mean);
        let want = l as f64 * 2f64.ln() / 2.0;
        assert!((sb.ln() - sa.ln() - want).abs() < 1e-6, "{l}: {sa} {sb}");
    }
}

/// The deep correlation map's fast path (the per-variance Mehler series remembered across layers,
/// nonlin/moments.rs) against the same map computed afresh at every layer, to depth 300 (past the layer,
/// ~100, where the ordered map without bias reaches the small-q clamp; depth 1000 gave the same verdict in
/// 6 s of debug-mode test time): ordered tanh with q -> 0 (the small-q clamp is reached after ~100 layers and then every layer asks for one q), ordered
/// tanh and gelu with a bias (q settles on its fixed point, c -> 1), and chaotic tanh (c settles below 1).
/// and chaotic tanh with a bias (q* = 1.01, where only the 384-node series passes its checks).
/// Equal to 1e-10 at every layer (absolute on c and sign diversity, relative on the std).
#[test]
fn deep_correlation_map_fast_path_equals_fresh_computation() {
    for (act, sw2, sb2, c0) in [
        (Nonlinearity::Tanh, 0.5, 0.0, 0.5),
        (Nonlinearity::Tanh, 0.5, 0.1, 0.5),
        (Nonlinearity::Gelu, 0.8, 0.05, 0.2),
        (Nonlinearity::Tanh, 1.5, 0.0, 0.9),
        (Nonlinearity::Tanh, 2.5, 0.02, 0.9),
    ] {
        let mut net = mlp(act, 100, 300, sw2, sb2);
        net.input.correlation = c0;
        let fast = predict_collapse(&net, Some(4)).unwrap();
        let fresh = gradscale::nonlin::moments::without_kernel_cache(|| {
            predict_collapse(&net, Some(4)).unwrap()
        });
        for (f, r) in fast.layers.iter().zip(&fresh.layers) {
            let at = format!("{act} {sw2} {sb2} layer {}", f.index);
            assert!((f.c - r.c).abs() <= 1e-10, "{at}: c {} vs {}", f.c, r.c);
            let (Some(fs), Some(rs)) = (f.preact_std, r.preact_std) else {
                assert_eq!(f.index, 0);
                continue;
            };
            assert!((fs - rs).abs() <= 1e-10 * rs, "{at}: std {fs} vs {rs}");
            let (fd, rd) = (f.sign_diversity.unwrap(), r.sign_diversity.unwrap());
            assert!((fd - rd).abs() <= 1e-10, "{at}: sdiv {fd} vs {rd}");
        }
    }
}

/// The trapezoidal rule with step h on [-12, 12] for N(0,1): for an integrand analytic in the strip
/// |Im z| < tau its error is ~exp(-2 pi tau / h) (Trefethen & Weideman, SIAM Review 56, 2014). tanh(sqrt(q)
/// z) has poles at Im z = pi / (2 sqrt q), 0.55 at the largest q below (8.1): exp(-41) at h = 1/12.
/// (gauher above loses its Newton iteration's starting guesses beyond ~200 nodes, and 160 nodes are off
/// by 1.4e-9 at q = 2.52, c = 0.9.)
fn trapezoid(h: f64) -> (Vec<f64>, Vec<f64>) {
    let k = (12.0 / h).round() as i64;
    let z: Vec<f64> = (-k..=k).map(|j| j as f64 * h).collect();
    let w = z
        .iter()
        .map(|z| h * (-0.5 * z * z).exp() / (2.0 * PI).sqrt())
        .collect();
    (z, w)
}

/// Chaotic tanh with a bias (sigma_w^2 = 2.5, sigma_b^2 = 0.02; q* = 1.01, c* < 1): the map was ~80 ms a
/// layer on the nested 2-D rule, as the 192-node Mehler series is refused there (theory/cost.md); the
/// larger rules of gauss/mehler.rs now take it. Against independent 2-D trapezoidal kernels at every
/// layer to depth 400 (c has settled on c* by then), to 1e-10; also sigma_w^2 = 8 (q* = 5.6, where only
/// the 1536-node rule passes) to depth 100.
#[test]
fn chaotic_tanh_with_a_bias_matches_independent_kernels() {
    let gh = trapezoid(1.0 / 12.0);
    for (sw2, sb2, d) in [(2.5, 0.02, 400), (8.0, 0.1, 100)] {
        for c0 in [0.0, 0.9] {
            assert_map_matches_independent_iteration(Nonlinearity::Tanh, sw2, sb2, d, c0, &gh);
        }
    }
}
