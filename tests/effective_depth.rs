//! The residual trick, the path expansion and the effective depth (theory/effective-depth.md), on networks
//! whose "trained" parameters are built: a known change to known initial parameters, so every law has an
//! exact answer.

use gradscale::arch::{Dense, Init, InputModel, Layer, Network, Op, Residual, Skip};
use gradscale::depth::paths::{closed_form_profile, path_expansion, profile_depth, LayerGains};
use gradscale::depth::residual::residual_decomposition;
use gradscale::depth::taylor::{effective_depth, taylor_curve, Labelled};
use gradscale::depth::DepthOptions;
use gradscale::montecarlo::param_jvp::{param_diff, param_jvp};
use gradscale::montecarlo::{draw_params, forward, sample_rng, NetParams, OpParams};
use gradscale::Nonlinearity;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rand_distr::StandardNormal;

fn dense(width: usize, sigma_w2: f64, sigma_b2: f64) -> Op {
    Op::Dense(Dense {
        width,
        sigma_w2,
        sigma_b2,
        init: Init::Gaussian,
    })
}

/// `depth` hidden layers [Dense, act] of width n, then a linear readout to `classes` logits.
fn mlp(n0: usize, n: usize, depth: usize, classes: usize, act: Nonlinearity) -> Network {
    let mut layers: Vec<Layer> = (0..depth)
        .map(|_| Layer {
            ops: vec![dense(n, 1.0, 0.05), Op::Act(act)],
        })
        .collect();
    layers.push(Layer {
        ops: vec![dense(classes, 1.0, 0.0)],
    });
    Network {
        input: InputModel::sphere(n0),
        layers,
    }
}

fn gaussian(r: usize, c: usize, sd: f64, rng: &mut impl Rng) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |_, _| sd * rng.sample::<f64, _>(StandardNormal))
}

/// p plus i.i.d. N(0, eps^2) on every weight, bias and skip entry.
fn perturb(p: &OpParams, eps: f64, rng: &mut impl Rng) -> OpParams {
    match p {
        OpParams::Dense { w, b } => OpParams::Dense {
            w: w + gaussian(w.nrows(), w.ncols(), eps, rng),
            b: b + DVector::from_fn(b.len(), |_, _| eps * rng.sample::<f64, _>(StandardNormal)),
        },
        OpParams::None => OpParams::None,
        OpParams::Norm { scale, shift, .. } => OpParams::Norm {
            scale: scale
                + DVector::from_fn(scale.len(), |_, _| {
                    eps * rng.sample::<f64, _>(StandardNormal)
                }),
            shift: shift
                + DVector::from_fn(shift.len(), |_, _| {
                    eps * rng.sample::<f64, _>(StandardNormal)
                }),
            running_mean: None,
            running_var: None,
        },
        OpParams::Residual { skip, branch } => OpParams::Residual {
            skip: skip
                .as_ref()
                .map(|q| q + gaussian(q.nrows(), q.ncols(), eps, rng)),
            branch: branch.iter().map(|b| perturb(b, eps, rng)).collect(),
        },
    }
}

/// init + scale (changed - init), op by op.
fn blend(init: &NetParams, changed: &NetParams, scale: f64) -> NetParams {
    fn one(a: &OpParams, b: &OpParams, s: f64) -> OpParams {
        match (a, b) {
            (OpParams::Dense { w: w0, b: b0 }, OpParams::Dense { w, b }) => OpParams::Dense {
                w: w0 + (w - w0) * s,
                b: b0 + (b - b0) * s,
            },
            (
                OpParams::Residual {
                    skip: s0,
                    branch: b0,
                },
                OpParams::Residual { skip, branch },
            ) => OpParams::Residual {
                skip: s0
                    .as_ref()
                    .zip(skip.as_ref())
                    .map(|(q0, q)| q0 + (q - q0) * s),
                branch: b0.iter().zip(branch).map(|(x, y)| one(x, y, s)).collect(),
            },
            (
                OpParams::Norm {
                    scale: s0,
                    shift: h0,
                    ..
                },
                OpParams::Norm { scale, shift, .. },
            ) => OpParams::Norm {
                scale: s0 + (scale - s0) * s,
                shift: h0 + (shift - h0) * s,
                running_mean: None,
                running_var: None,
            },
            // A norm op without parameters is scale 1, shift 0.
            (OpParams::None, OpParams::Norm { scale, shift, .. }) => OpParams::Norm {
                scale: scale.map(|v| 1.0 + (v - 1.0) * s),
                shift: shift * s,
                running_mean: None,
                running_var: None,
            },
            _ => OpParams::None,
        }
    }
    init.iter()
        .zip(changed)
        .map(|(l0, l1)| l0.iter().zip(l1).map(|(a, b)| one(a, b, scale)).collect())
        .collect()
}

fn perturb_layers(p: &NetParams, layers: &[usize], eps: f64, rng: &mut impl Rng) -> NetParams {
    p.iter()
        .enumerate()
        .map(|(l, lp)| {
            if layers.contains(&(l + 1)) {
                lp.iter().map(|op| perturb(op, eps, rng)).collect()
            } else {
                lp.clone()
            }
        })
        .collect()
}

fn argmax_labels(out: &DMatrix<f64>) -> Vec<usize> {
    out.column_iter()
        .map(|c| {
            let mut best = 0;
            for i in 1..c.len() {
                if c[i] > c[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[test]
fn residual_decomposition_is_exact_and_linear_layers_have_known_jacobians() {
    let mut rng = sample_rng(11, 0);
    // Linear layers: the skip's Jacobian is W0 and the residual's is the change, whatever the input.
    let net = Network {
        input: InputModel::sphere(6),
        layers: vec![
            Layer {
                ops: vec![dense(9, 1.0, 0.1)],
            },
            Layer {
                ops: vec![dense(9, 1.0, 0.1), Op::Act(Nonlinearity::Tanh)],
            },
            Layer {
                ops: vec![dense(4, 1.0, 0.0)],
            },
        ],
    };
    let init = draw_params(&net, &mut rng);
    let trained = perturb_layers(&init, &[1, 2, 3], 0.2, &mut rng);
    let x = gaussian(6, 20, 1.0, &mut rng);
    let rep = residual_decomposition(&net, &init, &trained, &x, &DepthOptions::default()).unwrap();
    assert!(rep.message.is_none());
    for l in &rep.layers {
        assert!(
            l.reconstruction_error < 1e-15,
            "layer {}: {}",
            l.layer,
            l.reconstruction_error
        );
        assert!(!l.unchanged && l.zero_residual_groups == 0);
        assert_eq!(l.blocks.log_k.n, 20);
    }
    // Layer 1 is W x + b: ||J_i||_F^2 = ||W0||_F^2 and ||J_r||_F^2 = ||dW||_F^2 for every example, so the
    // GSCs are exact functions of the example's norms; compare the mean of ln GSC_i with its direct value.
    let (OpParams::Dense { w: w0, b: b0 }, OpParams::Dense { w: wt, b: bt }) =
        (&init[0][0], &trained[0][0])
    else {
        unreachable!()
    };
    let dw = wt - w0;
    let db = bt - b0;
    let direct: Vec<f64> = x
        .column_iter()
        .map(|c| {
            let s = w0 * c + b0;
            let r = &dw * c + &db;
            let gi = (w0.norm_squared() / 6.0).sqrt() * c.norm() / s.norm();
            let gr = (dw.norm_squared() / 6.0).sqrt() * c.norm() / r.norm();
            let k = s.norm() / r.norm();
            (gi.ln(), gr.ln(), k.ln())
        })
        .map(|(a, b, c)| a + 10.0 * b + 100.0 * c)
        .collect();
    let direct_mean = direct.iter().sum::<f64>() / direct.len() as f64;
    let b = &rep.layers[0].blocks;
    let got = b.log_gsc_skip.mean + 10.0 * b.log_gsc_branch.mean + 100.0 * b.log_k.mean;
    assert!((got - direct_mean).abs() < 1e-10, "{got} vs {direct_mean}");
}

#[test]
fn identical_parameters_give_zero_residuals_and_a_message_not_nan() {
    let mut rng = sample_rng(12, 0);
    let net = mlp(5, 8, 2, 3, Nonlinearity::Relu);
    let init = draw_params(&net, &mut rng);
    let x = gaussian(5, 10, 1.0, &mut rng);
    let rep = residual_decomposition(&net, &init, &init, &x, &DepthOptions::default()).unwrap();
    assert!(rep
        .message
        .as_deref()
        .unwrap()
        .contains("nothing was trained"));
    for l in &rep.layers {
        assert!(l.unchanged && l.zero_residual_groups == l.groups);
        assert_eq!(l.reconstruction_error, 0.0);
    }
    let json = serde_json::to_string(&rep).unwrap();
    assert!(!json.contains("NaN"));
    // Only the middle layer changed: the others are named as unchanged.
    let trained = perturb_layers(&init, &[2], 0.1, &mut rng);
    let rep = residual_decomposition(&net, &init, &trained, &x, &DepthOptions::default()).unwrap();
    assert!(rep
        .message
        .as_deref()
        .unwrap()
        .contains("layer(s) 1, 3 did not change"));
    let paths = path_expansion(&net, &init, &init, &x, &DepthOptions::default()).unwrap();
    assert_eq!(paths.change, 0.0);
    assert_eq!(paths.depth90, None);
}

#[test]
fn path_expansion_is_exact_for_affine_layers() {
    let mut rng = sample_rng(13, 0);
    let net = Network {
        input: InputModel::sphere(7),
        layers: (0..5)
            .map(|_| Layer {
                ops: vec![dense(7, 1.0, 0.1)],
            })
            .collect(),
    };
    let init = draw_params(&net, &mut rng);
    // Large changes: exactness must not rely on them being small.
    let trained = perturb_layers(&init, &[1, 2, 3, 4, 5], 0.5, &mut rng);
    let x = gaussian(7, 15, 1.0, &mut rng);
    let p = path_expansion(&net, &init, &trained, &x, &DepthOptions::default()).unwrap();
    assert!(p.change > 0.1);
    assert!(p.truncation_rel < 1e-12, "{}", p.truncation_rel);
    // Every path length is present with changes this large.
    assert!(p.c.iter().all(|s| s.mean > 0.0));
}

#[test]
fn path_expansion_truncation_is_second_order_for_smooth_layers() {
    let mut rng = sample_rng(14, 0);
    let net = mlp(6, 10, 4, 3, Nonlinearity::Tanh);
    let init = draw_params(&net, &mut rng);
    let changed = perturb_layers(&init, &[1, 2, 3, 4, 5], 1.0, &mut rng);
    let x = gaussian(6, 12, 1.0, &mut rng);
    let trunc = |eps: f64| {
        let t = blend(&init, &changed, eps);
        path_expansion(&net, &init, &t, &x, &DepthOptions::default())
            .unwrap()
            .truncation
    };
    // A remainder of order eps^2 shrinks by 4 when eps halves (to O(eps) relative; eps = 1e-3 here).
    let ratio = trunc(2e-3) / trunc(1e-3);
    assert!((ratio - 4.0).abs() < 0.1, "ratio {ratio}");
}

#[test]
fn closed_form_profile_is_the_binomial_path_count_for_equal_layers() {
    let (a, b, rho2, depth) = (1.3, 0.4, 0.7, 6usize);
    let gains = vec![
        LayerGains {
            skip_gain2: a,
            residual_gain2: b,
            residual_sq: rho2,
        };
        depth
    ];
    let got = closed_form_profile(&gains);
    let binom = |n: usize, k: usize| -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    };
    for lam in 1..=depth {
        let want: f64 = (1..=depth)
            .filter(|&s| depth - s + 1 >= lam)
            .map(|s| {
                rho2 * binom(depth - s, lam - 1)
                    * a.powi((depth - s + 1 - lam) as i32)
                    * b.powi((lam - 1) as i32)
            })
            .sum();
        assert!(
            (got[lam - 1] - want).abs() < 1e-12 * want,
            "lambda {lam}: {} vs {want}",
            got[lam - 1]
        );
    }
    assert_eq!(profile_depth(&[1.0, 8.0, 1.0], 0.9), Some(2));
    assert_eq!(profile_depth(&[0.0, 0.0], 0.9), None);
}

/// Initialisation-like residuals where the closed form holds in expectation exactly: skips c Q_l (Haar
/// orthogonal, so every direction's gain is c^2) and residuals dW_l with i.i.d. N(0, s^2/n) entries
/// (centred and independent, so paths are uncorrelated and E||dW u||^2 = s^2 ||u||^2). Over independent
/// networks the ratio ||a_L^(lambda)||^2 / prediction has mean 1; checked at 4 standard errors per lambda
/// (false alarm <= 6.3e-5 each, 3.2e-4 over the five lambdas).
#[test]
fn closed_form_profile_matches_initialisation_like_residuals() {
    let (n, depth, c2, s2, nets) = (16usize, 5usize, 0.8, 0.3, 400usize);
    let skip_net = Network {
        input: InputModel::sphere(n),
        layers: (0..depth)
            .map(|_| Layer {
                ops: vec![Op::Dense(Dense {
                    width: n,
                    sigma_w2: c2,
                    sigma_b2: 0.0,
                    init: Init::Orthogonal,
                })],
            })
            .collect(),
    };
    let res_net = Network {
        input: InputModel::sphere(n),
        layers: (0..depth)
            .map(|_| Layer {
                ops: vec![dense(n, s2, 0.0)],
            })
            .collect(),
    };
    let mut ratios = vec![Vec::new(); depth];
    for i in 0..nets {
        let mut rng = sample_rng(15, i as u64);
        let init = draw_params(&skip_net, &mut rng);
        let dw = draw_params(&res_net, &mut rng);
        let trained: NetParams = init
            .iter()
            .zip(&dw)
            .map(|(a, b)| match (&a[0], &b[0]) {
                (OpParams::Dense { w, b: b0 }, OpParams::Dense { w: d, .. }) => {
                    vec![OpParams::Dense {
                        w: w + d,
                        b: b0.clone(),
                    }]
                }
                _ => unreachable!(),
            })
            .collect();
        let x = gaussian(n, 1, 1.0, &mut rng);
        let p = path_expansion(&skip_net, &init, &trained, &x, &DepthOptions::default()).unwrap();
        // Measured skip gains are exactly c^2 (orthogonal skips).
        for g in &p.gains {
            assert!((g.skip_gain2 - c2).abs() < 1e-12);
        }
        let x2 = x.norm_squared();
        let gains: Vec<LayerGains> = (0..depth)
            .map(|l| LayerGains {
                skip_gain2: c2,
                residual_gain2: s2,
                residual_sq: s2 * c2.powi(l as i32) * x2,
            })
            .collect();
        let pred = closed_form_profile(&gains);
        for lam in 0..depth {
            ratios[lam].push(p.rms[lam].powi(2) / pred[lam]);
        }
    }
    for (lam, r) in ratios.iter().enumerate() {
        let m = r.iter().sum::<f64>() / r.len() as f64;
        let sd = (r.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (r.len() - 1) as f64).sqrt();
        let se = sd / (r.len() as f64).sqrt();
        assert!(
            (m - 1.0).abs() < 4.0 * se,
            "lambda {}: mean ratio {m} +- {se}",
            lam + 1
        );
    }
}

#[test]
fn param_jvp_matches_central_differences() {
    let mut rng = sample_rng(16, 0);
    let net = Network {
        input: InputModel {
            width: 5,
            batch: 4,
            correlation: 0.0,
            data: None,
        },
        layers: vec![
            Layer {
                ops: vec![
                    dense(6, 1.0, 0.1),
                    Op::LayerNorm { eps: 1e-5 },
                    Op::Act(Nonlinearity::Tanh),
                ],
            },
            Layer {
                ops: vec![Op::Residual(Residual {
                    skip: Skip::Orthogonal,
                    alpha: 0.7,
                    branch: vec![
                        dense(6, 2.0, 0.1),
                        Op::BatchNorm { eps: 1e-5 },
                        Op::Act(Nonlinearity::Tanh),
                        dense(6, 1.0, 0.0),
                    ],
                })],
            },
        ],
    };
    let mut init = draw_params(&net, &mut rng);
    // A learned affine on the layer norm at both ends; the batch norm has none at init and one after.
    let affine = |rng: &mut rand_xoshiro::Xoshiro256PlusPlus| OpParams::Norm {
        scale: DVector::from_fn(6, |_, _| 1.0 + 0.3 * rng.sample::<f64, _>(StandardNormal)),
        shift: DVector::from_fn(6, |_, _| 0.3 * rng.sample::<f64, _>(StandardNormal)),
        running_mean: None,
        running_var: None,
    };
    init[0][1] = affine(&mut rng);
    let mut changed = perturb_layers(&init, &[1, 2], 1.0, &mut rng);
    if let OpParams::Residual { branch, .. } = &mut changed[1][0] {
        branch[1] = affine(&mut rng);
    }
    let x = gaussian(5, 4, 1.0, &mut rng);
    let run = |p: &NetParams| forward(&net, p, x.clone()).outputs[2].clone();
    let h = 1e-5;
    let fd = (run(&blend(&init, &changed, h)) - run(&blend(&init, &changed, -h))) / (2.0 * h);
    let mut hcur = x.clone();
    let mut t = vec![DMatrix::zeros(5, 1); 4];
    for l in 0..2 {
        for ((op, p0), p1) in net.layers[l].ops.iter().zip(&init[l]).zip(&changed[l]) {
            let dp = param_diff(p1, p0).unwrap();
            let (o, tt) = param_jvp(op, p0, &dp, &hcur, t);
            hcur = o;
            t = tt;
        }
    }
    let got = DMatrix::from_fn(6, 4, |i, b| t[b][(i, 0)]);
    let err = (&got - &fd).amax() / fd.amax();
    assert!(err < 1e-7, "relative error {err}");
}

#[test]
fn only_the_top_layer_trained_gives_effective_depth_one() {
    let mut rng = sample_rng(17, 0);
    let net = mlp(6, 12, 4, 4, Nonlinearity::Tanh);
    let init = draw_params(&net, &mut rng);
    let trained = perturb_layers(&init, &[5], 1.0, &mut rng);
    let x = gaussian(6, 200, 1.0, &mut rng);
    let labels = argmax_labels(&forward(&net, &trained, x.clone()).outputs[5]);
    let train = Labelled {
        x: &x,
        labels: &labels,
    };
    let rep = effective_depth(
        &net,
        &init,
        &trained,
        train,
        None,
        0.01,
        &DepthOptions::default(),
    )
    .unwrap();
    assert_eq!(rep.trained_error, 0.0);
    assert_eq!(rep.d_eff, Some(1), "{:?}", rep.points);
    // Only paths through the top residual exist: a single factor.
    assert_eq!(rep.path_depth, Some(1));
    // Every lower layer changed as well: the full replacement is then no longer exact, and d_eff is
    // whatever the curve says but never above L.
    let trained = perturb_layers(&init, &[1, 2, 3, 4, 5], 0.8, &mut rng);
    let labels = argmax_labels(&forward(&net, &trained, x.clone()).outputs[5]);
    let train = Labelled {
        x: &x,
        labels: &labels,
    };
    let rep = effective_depth(
        &net,
        &init,
        &trained,
        train,
        None,
        0.01,
        &DepthOptions::default(),
    )
    .unwrap();
    let d = rep.d_eff.unwrap();
    assert!((1..=5).contains(&d));
    assert!(rep.points[1].depth == 5 && rep.points[5].depth == 1);
}

/// A linear net is linear in each layer's parameters separately, so when one layer (any, not only the
/// top) changed, the first-order replacement is exact at every m and d_eff = 1. (With several changed
/// layers it is not: products of changes are second order; theory/effective-depth.md.)
#[test]
fn linear_net_with_one_changed_layer_has_effective_depth_one() {
    let mut rng = sample_rng(18, 0);
    let net = mlp(6, 10, 4, 4, Nonlinearity::Linear);
    let init = draw_params(&net, &mut rng);
    let trained = perturb_layers(&init, &[2], 1.0, &mut rng);
    let x = gaussian(6, 150, 1.0, &mut rng);
    let labels = argmax_labels(&forward(&net, &trained, x.clone()).outputs[5]);
    let train = Labelled {
        x: &x,
        labels: &labels,
    };
    let curve = taylor_curve(&net, &init, &trained, train, Some(train)).unwrap();
    for p in &curve {
        assert_eq!(p.train_error, 0.0, "m = {}", p.m);
        assert!((p.train_loss - curve[0].train_loss).abs() < 1e-10);
    }
    let rep = effective_depth(
        &net,
        &init,
        &trained,
        train,
        None,
        0.01,
        &DepthOptions::default(),
    )
    .unwrap();
    assert_eq!(rep.d_eff, Some(1));
}

#[test]
fn a_net_that_never_trained_has_no_effective_depth() {
    let mut rng = sample_rng(19, 0);
    let net = mlp(6, 10, 3, 4, Nonlinearity::Relu);
    let init = draw_params(&net, &mut rng);
    let trained = perturb_layers(&init, &[1, 2, 3, 4], 0.01, &mut rng);
    let x = gaussian(6, 400, 1.0, &mut rng);
    // Labels unrelated to the net: its error is at chance.
    let labels: Vec<usize> = (0..400).map(|_| rng.gen_range(0..4)).collect();
    let train = Labelled {
        x: &x,
        labels: &labels,
    };
    let rep = effective_depth(
        &net,
        &init,
        &trained,
        train,
        None,
        0.01,
        &DepthOptions::default(),
    )
    .unwrap();
    assert_eq!(rep.d_eff, None);
    assert!(rep
        .message
        .unwrap()
        .contains("no meaningful effective depth"));
}

#[test]
fn bad_input_is_one_clear_error() {
    let mut rng = sample_rng(20, 0);
    let net = mlp(6, 10, 2, 3, Nonlinearity::Relu);
    let init = draw_params(&net, &mut rng);
    let other = draw_params(&mlp(6, 11, 2, 3, Nonlinearity::Relu), &mut rng);
    let x = gaussian(6, 10, 1.0, &mut rng);
    let e = residual_decomposition(&net, &init, &other, &x, &DepthOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "trained: layer 1 op 1 (dense): weight has shape [11, 6], expected [10, 6]"
    );
    let labels = vec![0usize; 10];
    let train = Labelled {
        x: &x,
        labels: &labels,
    };
    for tau in [0.0, 1.0, -0.5, f64::NAN] {
        let e = effective_depth(
            &net,
            &init,
            &init,
            train,
            None,
            tau,
            &DepthOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--tau:"), "{e}");
    }
    let bad = vec![3usize; 10];
    let e = taylor_curve(
        &net,
        &init,
        &init,
        Labelled {
            x: &x,
            labels: &bad,
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("label of example 1"), "{e}");
    let narrow = gaussian(5, 10, 1.0, &mut rng);
    let e = path_expansion(&net, &init, &init, &narrow, &DepthOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("feature count"), "{e}");
}

fn gradscale(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gradscale"))
        .args(args)
        .output()
        .expect("run gradscale")
}

#[test]
fn cli_reports_mismatched_checkpoints_bad_tau_and_untrained_nets_in_one_line() {
    let dir = std::env::temp_dir().join(format!("gradscale-depth-cli-{}", std::process::id()));
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (out, width) in [(&a, "8"), (&b, "9")] {
        let o = gradscale(&[
            "train",
            "--act",
            "tanh",
            "--width",
            width,
            "--depth",
            "1",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--seed",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let p = |d: &std::path::Path, f: &str| d.join(f).to_str().unwrap().to_string();
    let (arch, init) = (p(&a, "arch.toml"), p(&a, "init.safetensors"));
    let other = p(&b, "trained.safetensors");
    let o = gradscale(&[
        "effective-depth",
        "--arch",
        &arch,
        "--init",
        &init,
        "--trained",
        &other,
        "--samples",
        "20",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("trained.safetensors"), "{err}");
    assert!(o.stdout.is_empty());
    for tau in ["0", "1", "-0.1"] {
        let o = gradscale(&[
            "effective-depth",
            "--arch",
            &arch,
            "--init",
            &init,
            "--trained",
            &init,
            "--tau",
            tau,
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: --tau:"));
    }
    let o = gradscale(&[
        "residual",
        "--arch",
        &arch,
        "--init",
        &init,
        "--trained",
        &init,
        "--samples",
        "20",
    ]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("nothing was trained") && !out.contains("NaN"),
        "{out}"
    );
    let o = gradscale(&[
        "effective-depth",
        "--arch",
        &arch,
        "--init",
        &init,
        "--trained",
        &init,
        "--samples",
        "50",
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["report"]["d_eff"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The training study (verify::training) on a tiny grid: the same seed gives identical results on one
/// thread and on several; d_eff never exceeds L; the residual decomposition of every trained layer is exact.
#[test]
fn training_study_is_reproducible_and_lawful() {
    use gradscale::verify::training::{run_study, StudyOptions};
    let mut o = StudyOptions::audit(true, 5);
    o.width = 8;
    o.depths = vec![3, 5];
    o.seeds = 2;
    o.sgd_lrs = vec![0.1];
    o.adam_lrs = vec![0.003];
    o.epochs = 2;
    o.train_rows = 96;
    o.eval_rows = 32;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run_study(&o).unwrap());
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| run_study(&o).unwrap());
    assert_eq!(one.cells.len(), 8);
    for (a, b) in one.cells.iter().zip(&two.cells) {
        assert_eq!(a.error.mean.to_bits(), b.error.mean.to_bits());
        assert_eq!(a.d_eff, b.d_eff);
        assert_eq!(a.ln_k, b.ln_k);
        for d in a.d_eff.iter().flatten() {
            assert!(*d <= a.depth, "{d} > {}", a.depth);
        }
        assert!(a.reconstruction_error < 1e-10, "{}", a.reconstruction_error);
        assert_eq!(a.ln_gsc_init.len(), 2);
    }
}

/// The ResNet baseline's branches are scaled by 1/sqrt(blocks) so that its forward norm stays bounded with
/// depth: ||f_l||^2/n at L = 24 never exceeds 3 times the stem's (unscaled branches grow it ~blocks-fold).
#[test]
fn scaled_resnet_forward_norm_stays_bounded() {
    use gradscale::montecarlo::{simulate, Estimator, McOptions};
    use gradscale::verify::training::{network, Family};
    let net = network(Family::Resnet, 32, 24, 32, 10);
    let m = simulate(
        &net,
        &McOptions {
            samples: 8,
            seed: 3,
            estimator: Estimator::Probes(2),
        },
    )
    .unwrap();
    let stem = m.layers[1].sq_norm.mean;
    for l in 1..24 {
        let q = m.layers[l].sq_norm.mean;
        assert!(q <= 3.0 * stem, "layer {l}: {q} vs stem {stem}");
    }
}
