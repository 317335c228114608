//! The training engine: gradients of every op and of the whole loss against central finite differences,
//! the reverse products against the Monte Carlo engine's exact Jacobians, optimiser steps against hand
//! values, digits accuracy, thread-count independence.

use gradscale::arch::{Dense, Init, InputModel, Layer, Network, Op, Residual, Skip};
use gradscale::data::{self, CsvOptions, Dataset, Split, Standardize};
use gradscale::montecarlo::{forward, NetParams, OpParams, Sample};
use gradscale::train::{
    self, apply_step, backward_op, init_params, layer_arrays, loss_and_grad, Loss, OptState,
    Optimizer, TrainConfig, Trainer,
};
use gradscale::Nonlinearity;
use nalgebra::{DMatrix, DVector};

fn dense(w: usize) -> Op {
    Op::Dense(Dense {
        width: w,
        sigma_w2: 1.5,
        sigma_b2: 0.1,
        init: Init::Gaussian,
    })
}

fn net(layers: Vec<Vec<Op>>, n0: usize, batch: usize) -> Network {
    let n = Network {
        input: InputModel {
            width: n0,
            batch,
            correlation: 0.0,
            data: None,
        },
        layers: layers.into_iter().map(|ops| Layer { ops }).collect(),
    };
    n.validate().unwrap();
    n
}

/// Tiny networks covering every op kind: dense + smooth act, layer norm, batch norm, residual.
fn zoo() -> Vec<(&'static str, Network)> {
    let tanh = Nonlinearity::Tanh;
    let gelu = Nonlinearity::Gelu;
    vec![
        (
            "mlp",
            net(
                vec![
                    vec![dense(5), Op::Act(tanh)],
                    vec![dense(4), Op::Act(gelu)],
                    vec![dense(3)],
                ],
                4,
                1,
            ),
        ),
        (
            "layer-norm",
            net(
                vec![
                    vec![dense(5), Op::LayerNorm { eps: 1e-5 }, Op::Act(tanh)],
                    vec![dense(3)],
                ],
                4,
                1,
            ),
        ),
        (
            "batch-norm",
            net(
                vec![
                    vec![dense(5), Op::BatchNorm { eps: 1e-5 }, Op::Act(tanh)],
                    vec![dense(3)],
                ],
                4,
                2,
            ),
        ),
        (
            "residual",
            net(
                vec![
                    vec![dense(5), Op::Act(tanh)],
                    vec![Op::Residual(Residual {
                        skip: Skip::Identity,
                        alpha: 0.7,
                        branch: vec![
                            dense(5),
                            Op::LayerNorm { eps: 1e-5 },
                            Op::Act(gelu),
                            dense(5),
                        ],
                    })],
                    vec![Op::Residual(Residual {
                        skip: Skip::Orthogonal,
                        alpha: 1.0,
                        branch: vec![
                            dense(5),
                            Op::BatchNorm { eps: 1e-5 },
                            Op::Act(tanh),
                            dense(5),
                        ],
                    })],
                    vec![dense(3)],
                ],
                4,
                2,
            ),
        ),
    ]
}

/// Parameters with non-trivial norm affine maps (so their gradients are tested away from 1 and 0).
fn params_for(n: &Network, seed: u64) -> NetParams {
    let mut p = init_params(n, seed);
    let mut k = 0.0;
    for l in layer_arrays(&mut p) {
        for s in l {
            for v in s.iter_mut() {
                k += 1.0;
                *v += 0.05 * (k * 0.37f64).sin();
            }
        }
    }
    p
}

fn inputs(n0: usize, b: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n0, b, |i, j| ((i * 7 + j * 3) as f64 * 0.61).sin() * 1.3)
}

#[test]
fn gradients_match_central_differences() {
    for loss in [Loss::SoftmaxCe, Loss::Mse] {
        for (name, n) in zoo() {
            let params = params_for(&n, 3);
            let x = inputs(4, 6);
            let y = vec![0, 2, 1, 1, 0, 2];
            let (_, mut g, _) = loss_and_grad(&n, &params, &x, &y, loss);
            let garrs: Vec<Vec<f64>> = layer_arrays(&mut g)
                .into_iter()
                .flat_map(|l| l.into_iter().map(|s| s.to_vec()).collect::<Vec<_>>())
                .collect();
            let mut worst: f64 = 0.0;
            let mut scale: f64 = 0.0;
            let mut count = 0;
            let mut p = params.clone();
            let nar = garrs.len();
            for a in 0..nar {
                let len = garrs[a].len();
                for i in 0..len {
                    let h = 1e-5;
                    let eval = |p: &mut NetParams, d: f64| {
                        let v = {
                            let mut arrs: Vec<&mut [f64]> =
                                layer_arrays(p).into_iter().flatten().collect();
                            arrs[a][i] += d;
                            0
                        };
                        let _ = v;
                        let (l, _, _) = loss_and_grad(&n, p, &x, &y, loss);
                        let mut arrs: Vec<&mut [f64]> =
                            layer_arrays(p).into_iter().flatten().collect();
                        arrs[a][i] -= d;
                        l
                    };
                    let fd = (eval(&mut p, h) - eval(&mut p, -h)) / (2.0 * h);
                    worst = worst.max((fd - garrs[a][i]).abs());
                    scale = scale.max(garrs[a][i].abs());
                    count += 1;
                }
            }
            // Central differences with h = 1e-5: truncation O(h^2 f''') ~ 1e-10, round-off ~ 1e-16/h ~ 1e-11.
            assert!(count > 20, "{name}: {count} parameters");
            assert!(
                worst < 1e-8 * scale.max(1.0),
                "{name} {loss:?}: max |fd - grad| = {worst:e} (max |grad| {scale})"
            );
        }
    }
}

#[test]
fn reverse_products_are_rows_of_the_engines_jacobian() {
    // For a batch-independent net, the training backward pass from e_i at the output is row i of
    // df_L/dx, which the Monte Carlo engine builds by forward mode from the identity.
    let (_, n) = zoo().remove(1);
    let params = params_for(&n, 5);
    let x = inputs(4, 1);
    let tr = forward(&n, &params, x.clone());
    let mut t = vec![DMatrix::<f64>::identity(4, 4)];
    for (l, layer) in n.layers.iter().enumerate() {
        for (k, op) in layer.ops.iter().enumerate() {
            t = op.jvp(&params[l][k], &tr.caches[l][k], t);
        }
    }
    let jac = &t[0]; // 3 x 4
    let (_, nodes) = train::forward_batch(&n, &params, &x);
    for i in 0..3 {
        let mut a = DMatrix::zeros(3, 1);
        a[(i, 0)] = 1.0;
        for l in (0..n.depth()).rev() {
            for k in (0..n.layers[l].ops.len()).rev() {
                a = backward_op(&n.layers[l].ops[k], &params[l][k], &nodes[l][k], a).0;
            }
        }
        for j in 0..4 {
            assert!((a[(j, 0)] - jac[(i, j)]).abs() < 1e-13, "row {i} col {j}");
        }
    }
}

fn one_param_net() -> (Network, NetParams) {
    let n = net(vec![vec![dense(1)]], 1, 1);
    let p = vec![vec![OpParams::Dense {
        w: DMatrix::from_element(1, 1, 0.5),
        b: DVector::from_element(1, -0.25),
    }]];
    (n, p)
}

fn grad(gw: f64, gb: f64) -> NetParams {
    vec![vec![OpParams::Dense {
        w: DMatrix::from_element(1, 1, gw),
        b: DVector::from_element(1, gb),
    }]]
}

fn wb(p: &NetParams) -> (f64, f64) {
    match &p[0][0] {
        OpParams::Dense { w, b } => (w[(0, 0)], b[0]),
        _ => unreachable!(),
    }
}

#[test]
fn sgd_and_adam_steps_match_hand_values() {
    let (_, p0) = one_param_net();
    let cfg = |o| TrainConfig {
        optimizer: o,
        lr: 0.1,
        ..Default::default()
    };
    // Plain SGD: w = 0.5 - 0.1 * 0.2.
    let c = cfg(Optimizer::Sgd { momentum: 0.0 });
    let mut p = p0.clone();
    let mut s = OptState::new(&p);
    apply_step(&mut p, &mut grad(0.2, -1.0), &mut s, &c, &[1.0]);
    assert_eq!(wb(&p), (0.5 - 0.1 * 0.2, -0.25 + 0.1));
    // Momentum 0.9, two steps of g = 0.2: v = 0.2 then 0.38; w = 0.5 - 0.02 - 0.038. Layer multiplier 0.5.
    let c = cfg(Optimizer::Sgd { momentum: 0.9 });
    let mut p = p0.clone();
    let mut s = OptState::new(&p);
    apply_step(&mut p, &mut grad(0.2, 0.0), &mut s, &c, &[0.5]);
    apply_step(&mut p, &mut grad(0.2, 0.0), &mut s, &c, &[0.5]);
    assert!((wb(&p).0 - (0.5 - 0.05 * 0.2 - 0.05 * 0.38)).abs() < 1e-15);
    // Adam: step 1 moves by lr * g / (|g| + eps) ~ lr; step 2 with g2 = -0.1:
    // m = 0.9*0.02 + 0.1*(-0.1) = 0.008, v = 0.999*4e-5 + 0.001*0.01 = 4.996e-5,
    // mhat = 0.008/0.19, vhat = 4.996e-5/0.001999.
    let c = cfg(Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    });
    let mut p = p0.clone();
    let mut s = OptState::new(&p);
    apply_step(&mut p, &mut grad(0.2, 0.0), &mut s, &c, &[1.0]);
    let w1 = 0.5 - 0.1 * 0.2 / (0.2 + 1e-8);
    assert!((wb(&p).0 - w1).abs() < 1e-15);
    apply_step(&mut p, &mut grad(-0.1, 0.0), &mut s, &c, &[1.0]);
    let (mh, vh) = (0.008 / 0.19, 4.996e-5 / (1.0 - 0.999f64.powi(2)));
    let w2 = w1 - 0.1 * mh / (vh.sqrt() + 1e-8);
    assert!((wb(&p).0 - w2).abs() < 1e-14, "{} vs {w2}", wb(&p).0);
    // Clipping to norm 0.1 of g = (0.3, 0.4): the step is lr * (0.06, 0.08).
    let c = TrainConfig {
        clip: Some(0.1),
        ..cfg(Optimizer::Sgd { momentum: 0.0 })
    };
    let mut p = p0.clone();
    let mut s = OptState::new(&p);
    assert!(apply_step(&mut p, &mut grad(0.3, 0.4), &mut s, &c, &[1.0]));
    assert!((wb(&p).0 - (0.5 - 0.1 * 0.06)).abs() < 1e-15);
}

fn digits() -> data::Prepared {
    data::prepare(
        "digits",
        None,
        &CsvOptions::default(),
        Split::Fixed,
        Standardize::Global,
    )
    .unwrap()
}

fn digits_cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::Sgd { momentum: 0.9 },
        lr: 0.02,
        epochs,
        batch_size: 32,
        seed: 1,
        gsc_rows: 8,
        ..Default::default()
    }
}

#[test]
fn digits_depth3_width64_reaches_90_percent() {
    let prep = digits();
    assert_eq!(
        (
            prep.train.len(),
            prep.test.as_ref().unwrap().len(),
            prep.train.classes
        ),
        (1438, 359, 10)
    );
    let n = train::mlp_classifier(64, 64, 3, 10, Nonlinearity::Relu, 2.0, 0.0).unwrap();
    let mut t = Trainer::new(n, digits_cfg(8), &prep.train).unwrap();
    t.run(&prep.train, prep.test.as_ref(), &mut |_, _| {}, &mut |_| {
        Ok(())
    })
    .unwrap();
    let last = t.log.epochs.last().unwrap();
    let acc = 1.0 - last.test_error.unwrap();
    eprintln!(
        "digits test accuracy {acc} (train error {})",
        last.train_error
    );
    assert!(acc >= 0.90, "test accuracy {acc}");
}

#[test]
fn training_is_thread_count_independent() {
    let prep = digits();
    let small = Dataset {
        ..prep.train.slice(0..300, "")
    };
    let n = train::mlp_classifier(64, 32, 2, 10, Nonlinearity::Tanh, 1.0, 0.0).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut t = Trainer::new(n.clone(), digits_cfg(2), &small).unwrap();
            t.run(&small, None, &mut |_, _| {}, &mut |_| Ok(()))
                .unwrap();
            t
        })
    };
    let a = run(1);
    let b = run(3);
    assert_eq!(a.log, b.log);
    let mut pa = a.params.clone();
    let mut pb = b.params.clone();
    let fa: Vec<Vec<f64>> = layer_arrays(&mut pa)
        .into_iter()
        .flatten()
        .map(|s| s.to_vec())
        .collect();
    let fb: Vec<Vec<f64>> = layer_arrays(&mut pb)
        .into_iter()
        .flatten()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(fa, fb);
}

/// Step 0 of a run against the closed form of its initial distribution (verify::step0): each digits
/// example family agrees on digits at the stated family-wise false-alarm rate (1e-3 per network), and a
/// tanh network compared with the closed form of a different sigma_w^2 is reported as disagreeing.
#[test]
fn step0_gsc_agrees_with_the_closed_form_for_the_digits_families() {
    use gradscale::verify::step0::{check_step0, Step0Options};
    let prep = digits();
    let cfg = TrainConfig {
        gsc_rows: 32,
        ..digits_cfg(1)
    };
    let opts = Step0Options::default();
    let step0 = |n: Network| {
        let mut t = Trainer::new(n, cfg.clone(), &prep.train).unwrap();
        t.log_step0(&prep.train).unwrap();
        let rows = train::gsc_rows(&t.net, &prep.train, cfg.gsc_rows)
            .unwrap()
            .to_vec();
        (t.log.gsc[0].clone(), rows)
    };
    for fam in [
        "digits-plain-relu",
        "digits-batch-tanh",
        "digits-resnet-batch-relu",
        "digits-resnet-layer-relu",
    ] {
        let n = gradscale::arch::load_file(std::path::Path::new(&format!(
            "{}/examples/{fam}.toml",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap();
        let (g, rows) = step0(n.clone());
        let r = check_step0(&n, &rows, &g, &opts).unwrap();
        for c in &r.comparisons {
            eprintln!(
                "{fam} {} l={} pred {:.4} meas {:.4} se {:.4} sd {:.4} tol {:.4} {}",
                c.quantity,
                c.layer,
                c.predicted,
                c.measured,
                c.se_rows,
                c.sd_networks,
                c.tolerance,
                c.verdict
            );
        }
        assert_eq!(
            (r.disagree, r.inconclusive),
            (0, 0),
            "{fam}: {}",
            r.disagreements()
        );
        assert_eq!(r.comparisons.len(), 2 * n.depth());
    }
    // The same tanh network against the closed form of sigma_w^2 = 8 instead of 1 (deep in the chaotic phase).
    let measured = train::mlp_classifier(64, 64, 5, 10, Nonlinearity::Tanh, 1.0, 0.0).unwrap();
    let wrong = train::mlp_classifier(64, 64, 5, 10, Nonlinearity::Tanh, 8.0, 0.0).unwrap();
    let (g, rows) = step0(measured.clone());
    let ok = check_step0(&measured, &rows, &g, &opts).unwrap();
    assert_eq!(ok.disagree, 0, "{}", ok.disagreements());
    let bad = check_step0(&wrong, &rows, &g, &opts).unwrap();
    eprintln!("wrong sigma_w^2: {}", bad.disagreements());
    // One network cannot resolve much more: the across-network spread dominates the tolerance.
    assert!(bad.disagree >= 1, "{}", bad.disagreements());
}

/// Batch norm keeps running statistics in training (momentum 0.1, unbiased variance, as PyTorch) and
/// evaluation uses them; a checkpoint round trip keeps them. Layer 1 is frozen (learning-rate multiplier 0)
/// so that both full-batch steps see the same pre-norm values h = W1 x + b1, known by hand.
#[test]
fn batch_norm_running_statistics_are_kept_and_used_in_evaluation() {
    use gradscale::checkpoint::{self, SafeTensors};
    let n = net(
        vec![vec![dense(3), Op::BatchNorm { eps: 1e-5 }], vec![dense(2)]],
        4,
        2,
    );
    let x: Vec<Vec<f64>> = (0..6)
        .map(|r| {
            (0..4)
                .map(|i| ((r * 7 + i * 3) % 5) as f64 - 1.7 + 0.1 * r as f64)
                .collect()
        })
        .collect();
    let d = Dataset {
        name: "bn".into(),
        x: x.clone(),
        y: vec![0, 1, 0, 1, 1, 0],
        classes: 2,
    };
    let cfg = TrainConfig {
        lr: 0.1,
        lr_layer: vec![(1, 0.0)],
        epochs: 2,
        batch_size: 6,
        seed: 3,
        gsc_rows: 2,
        ..Default::default()
    };
    let mut t = Trainer::new(n.clone(), cfg, &d).unwrap();
    t.run(&d, None, &mut |_, _| {}, &mut |_| Ok(())).unwrap();
    assert_eq!(t.state.step, 2);
    let OpParams::Dense { w: w1, b: b1 } = &t.params[0][0] else {
        panic!()
    };
    // Debug prints each f64 in its shortest round-trip form, so equal text is equal bits.
    assert_eq!(
        format!("{:?}", t.params[0][0]),
        format!("{:?}", t.init[0][0]),
        "layer 1 is frozen"
    );
    let xm = DMatrix::from_fn(4, 6, |i, b| x[b][i]);
    let h = w1 * &xm + b1 * DMatrix::from_element(1, 6, 1.0);
    let OpParams::Norm {
        running_mean: Some(rm),
        running_var: Some(rv),
        scale,
        shift,
    } = &t.params[0][1]
    else {
        panic!()
    };
    for i in 0..3 {
        let r = h.row(i);
        let m = r.sum() / 6.0;
        let v = r.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 5.0;
        // Two updates from (0, 1): 0.9 (0.9 * 0 + 0.1 m) + 0.1 m and likewise from 1 for the variance.
        assert!((rm[i] - 0.19 * m).abs() < 1e-13, "{} {}", rm[i], 0.19 * m);
        assert!(
            (rv[i] - (0.81 + 0.19 * v)).abs() < 1e-13,
            "{} {}",
            rv[i],
            0.81 + 0.19 * v
        );
    }
    let OpParams::Dense { w: w2, b: b2 } = &t.params[1][0] else {
        panic!()
    };
    let mut z = h.clone();
    for mut col in z.column_iter_mut() {
        for i in 0..3 {
            col[i] = scale[i] * (col[i] - rm[i]) / (rv[i] + 1e-5).sqrt() + shift[i];
        }
    }
    let want = w2 * z + b2 * DMatrix::from_element(1, 6, 1.0);
    let got = train::forward_eval(&t.net, &t.params, &xm);
    assert!((&got - &want).amax() < 1e-12, "{got} {want}");
    // Evaluation is per example: one column alone gives the same output.
    let one = train::forward_eval(&t.net, &t.params, &xm.columns(2, 1).into_owned());
    assert!((one.column(0) - got.column(2)).amax() < 1e-12);
    let names = checkpoint::explicit_names(&t.net);
    let bytes = checkpoint::serialize(
        &checkpoint::to_tensors(&t.net, &names, &t.params),
        &Default::default(),
    );
    let back = checkpoint::load_params(&t.net, &names, &SafeTensors::parse(bytes, "mem").unwrap())
        .unwrap();
    assert_eq!(format!("{back:?}"), format!("{:?}", t.params));
    assert_eq!(train::forward_eval(&t.net, &back, &xm), got);
}

/// The fused MLP step (`train::mlp`) against the op-by-op reverse mode it replaces for plain MLPs: the
/// same products and element-wise operations in the same order, so the same bits (loss, every weight and
/// bias gradient), on ReLU (mask read from the output), leaky ReLU, smooth and linear activations, a
/// one-column batch and both losses. A network with any other op is not taken by the fused step.
#[test]
fn fused_mlp_step_gives_the_per_op_gradients_bit_for_bit() {
    let relu = Nonlinearity::Relu;
    let nets = [
        net(
            vec![
                vec![dense(7), Op::Act(relu)],
                vec![dense(6), Op::Act(relu)],
                vec![dense(5), Op::Act(Nonlinearity::Linear)],
                vec![dense(3)],
            ],
            4,
            1,
        ),
        net(
            vec![
                vec![dense(6), Op::Act(Nonlinearity::LeakyRelu { slope: 0.1 })],
                vec![dense(5), Op::Act(Nonlinearity::Tanh)],
                vec![dense(4)],
                vec![dense(3)],
            ],
            4,
            1,
        ),
    ];
    for n in &nets {
        let acts = train::mlp::plan(n).expect("a plain MLP");
        let params = params_for(n, 5);
        for b in [1, 6] {
            // Inputs of both signs and a shifted bias, so some ReLU units are off and some on.
            let x = inputs(4, b);
            let y: Vec<usize> = (0..b).map(|j| (j * 2) % 3).collect();
            for loss in [Loss::SoftmaxCe, Loss::Mse] {
                let (l0, g0, e0) = train::loss_and_grad_ops(n, &params, &x, &y, loss);
                // A buffer holding another batch's gradients (a previous step) is overwritten, not added to.
                let mut g1 = train::zero_grads(&params);
                let other = inputs(4, 3) * -0.7;
                train::mlp::loss_and_grad_into(&acts, &params, &other, &[1, 0, 2], loss, &mut g1);
                let (l1, e1) =
                    train::mlp::loss_and_grad_into(&acts, &params, &x, &y, loss, &mut g1);
                assert_eq!(l0.to_bits(), l1.to_bits(), "loss, batch {b} {loss:?}");
                assert_eq!(e0, e1);
                let (mut g0, mut g1) = (g0, g1);
                let a0: Vec<Vec<f64>> = layer_arrays(&mut g0)
                    .into_iter()
                    .flatten()
                    .map(|s| s.to_vec())
                    .collect();
                let a1: Vec<Vec<f64>> = layer_arrays(&mut g1)
                    .into_iter()
                    .flatten()
                    .map(|s| s.to_vec())
                    .collect();
                assert_eq!(a0.len(), a1.len());
                for (k, (u, v)) in a0.iter().zip(&a1).enumerate() {
                    let ub: Vec<u64> = u.iter().map(|g| g.to_bits()).collect();
                    let vb: Vec<u64> = v.iter().map(|g| g.to_bits()).collect();
                    assert_eq!(ub, vb, "array {k}, batch {b} {loss:?}: {u:?} vs {v:?}");
                }
                assert!(a0.iter().flatten().any(|g| *g != 0.0));
            }
        }
    }
    for (name, n) in zoo() {
        assert_eq!(
            train::mlp::plan(&n).is_some(),
            name == "mlp",
            "{name}: only the plain MLP takes the fused step"
        );
    }
}
