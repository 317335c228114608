//! The Monte Carlo engine's deterministic arithmetic against tiny networks whose outputs, Jacobian norms
//! and GSC were computed by automatic differentiation (tests/data/networks.json, copied from the shared
//! fixtures). Tolerance 1e-12 relative: float64 round-off on 4-unit, 3-layer networks is ~1e-15.

#![allow(clippy::needless_range_loop)] // index loops read like the formulas

use gradscale::arch::{Dense, Init, InputModel, Layer, Network, Op, Residual, Skip};
use gradscale::montecarlo::{forward, outcome, Estimator, OpParams, Sample};
use gradscale::Nonlinearity;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use serde_json::Value;

const TOL: f64 = 1e-12;

fn fixtures() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/networks.json"
    ))
    .expect("tests/data/networks.json");
    let v: Value = serde_json::from_str(&text).expect("valid json");
    v["fixtures"].as_array().expect("fixtures").clone()
}

fn mat(v: &Value) -> DMatrix<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    DMatrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

fn vec_(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    let scale = a.abs().max(b.abs()).max(1e-300);
    assert!(
        (a - b).abs() <= TOL * scale.max(1.0),
        "{what}: engine {a} vs fixture {b} (rel {:e})",
        (a - b).abs() / scale
    );
}

fn dense(n: usize, sigma_b2: f64) -> Op {
    Op::Dense(Dense {
        width: n,
        sigma_w2: 1.0,
        sigma_b2,
        init: Init::Gaussian,
    })
}

/// Builds (network, params, input) for a fixture.
fn build(f: &Value) -> (Network, Vec<Vec<OpParams>>, DMatrix<f64>) {
    let n = f["n"].as_u64().unwrap() as usize;
    let depth = f["L"].as_u64().unwrap() as usize;
    match f["arch"].as_str().unwrap() {
        "mlp" => {
            let act: Nonlinearity = f["phi"].as_str().unwrap().parse().unwrap();
            let layers = (0..depth)
                .map(|_| Layer {
                    ops: vec![dense(n, 0.01), Op::Act(act)],
                })
                .collect();
            let params = (0..depth)
                .map(|l| {
                    vec![
                        OpParams::Dense {
                            w: mat(&f["W"][l]),
                            b: DVector::from_vec(vec_(&f["b"][l])),
                        },
                        OpParams::None,
                    ]
                })
                .collect();
            let x = DMatrix::from_vec(n, 1, vec_(&f["x"]));
            (
                Network {
                    input: InputModel::sphere(n),
                    layers,
                },
                params,
                x,
            )
        }
        "resnet" => {
            let alpha = f["alpha"].as_f64().unwrap();
            let relu2 = f["variant"].as_str().unwrap() == "relu2";
            let mut branch = vec![dense(n, 0.0), Op::Act(Nonlinearity::Relu), dense(n, 0.0)];
            if relu2 {
                branch.push(Op::Act(Nonlinearity::Relu));
            }
            let layers = (0..depth)
                .map(|_| Layer {
                    ops: vec![Op::Residual(Residual {
                        skip: Skip::Identity,
                        alpha,
                        branch: branch.clone(),
                    })],
                })
                .collect();
            let params = (0..depth)
                .map(|l| {
                    let d = |w: &Value| OpParams::Dense {
                        w: mat(w),
                        b: DVector::zeros(n),
                    };
                    let mut bp = vec![d(&f["W1"][l]), OpParams::None, d(&f["W2"][l])];
                    if relu2 {
                        bp.push(OpParams::None);
                    }
                    vec![OpParams::Residual {
                        skip: None,
                        branch: bp,
                    }]
                })
                .collect();
            let x = DMatrix::from_vec(n, 1, vec_(&f["x"]));
            (
                Network {
                    input: InputModel::sphere(n),
                    layers,
                },
                params,
                x,
            )
        }
        "bn_relu" => {
            let bsz = f["B"].as_u64().unwrap() as usize;
            let eps = f["bn_eps"].as_f64().unwrap();
            let layers = (0..depth)
                .map(|_| Layer {
                    ops: vec![
                        dense(n, 0.0),
                        Op::BatchNorm { eps },
                        Op::Act(Nonlinearity::Relu),
                    ],
                })
                .collect();
            let params = (0..depth)
                .map(|l| {
                    vec![
                        OpParams::Dense {
                            w: mat(&f["W"][l]),
                            b: DVector::zeros(n),
                        },
                        OpParams::None,
                        OpParams::None,
                    ]
                })
                .collect();
            (
                Network {
                    input: InputModel {
                        width: n,
                        batch: bsz,
                        correlation: 0.0,
                        data: None,
                    },
                    layers,
                },
                params,
                mat(&f["X"]),
            )
        }
        other => panic!("unknown fixture arch {other}"),
    }
}

fn as_matrix(v: &Value) -> DMatrix<f64> {
    // A layer output is either a vector (one input) or n x B rows.
    if v.as_array().unwrap()[0].is_array() {
        mat(v)
    } else {
        let x = vec_(v);
        DMatrix::from_vec(x.len(), 1, x)
    }
}

#[test]
fn every_fixture_matches_autodiff() {
    let all = fixtures();
    assert_eq!(all.len(), 11, "eleven fixtures expected");
    for f in &all {
        let id = f["id"].as_str().unwrap();
        let (net, params, x) = build(f);
        net.validate().unwrap_or_else(|e| panic!("{id}: {e}"));
        let depth = net.depth();
        let trace = forward(&net, &params, x);
        for l in 0..=depth {
            let want = as_matrix(&f["f"][l]);
            let got = &trace.outputs[l];
            assert_eq!(want.shape(), got.shape(), "{id}: shape of f[{l}]");
            for (a, b) in got.iter().zip(want.iter()) {
                close(*a, *b, &format!("{id}: f[{l}]"));
            }
            close(
                got.norm_squared(),
                f["sq_f"][l].as_f64().unwrap(),
                &format!("{id}: sq_f[{l}]"),
            );
        }
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
        let o = outcome(&net, &params, &trace, Estimator::Exact, &mut rng);
        assert!(!o.degenerate, "{id}: not degenerate");
        for l in 0..=depth {
            let want = f["gsc"][depth][l].as_f64().unwrap();
            close(
                o.log_gsc_to_output[l].exp(),
                want,
                &format!("{id}: gsc[L][{l}]"),
            );
            let want = f["gsc"][l][0].as_f64().unwrap();
            close(
                o.log_gsc_from_input[l].exp(),
                want,
                &format!("{id}: gsc[{l}][0]"),
            );
        }
        // The whole input-output Jacobian, entry by entry, from the forward-mode tangent.
        let bsz = net.input.batch.max(1);
        let n = net.input.width;
        let bj = if net.batch_coupled() { bsz } else { 1 };
        let mut t: Vec<DMatrix<f64>> = (0..bj)
            .map(|b| {
                let mut m = DMatrix::zeros(n, n * bj);
                for j in 0..n {
                    m[(j, b * n + j)] = 1.0;
                }
                m
            })
            .collect();
        for l in 0..depth {
            for ((op, p), c) in net.layers[l]
                .ops
                .iter()
                .zip(&params[l])
                .zip(&trace.caches[l])
            {
                t = op.jvp(p, c, t);
            }
        }
        let jf = mat(&f["J_0_L"]);
        for i in 0..n {
            for b in 0..bj {
                for j in 0..n {
                    for b2 in 0..bj {
                        // Row-major vec of an n x B array: index i * B + b.
                        let want = jf[(i * bj + b, j * bj + b2)];
                        close(
                            t[b][(i, b2 * n + j)],
                            want,
                            &format!("{id}: J_0_L[{i},{b};{j},{b2}]"),
                        );
                    }
                }
            }
        }
        let sq_frob = |k: usize, l: usize| f["sq_frob_J"][k][l].as_f64().unwrap();
        let jj: f64 = t.iter().map(|m| m.norm_squared()).sum();
        close(jj, sq_frob(depth, 0), &format!("{id}: ||J_0^L||_F^2"));
    }
}

/// Reverse mode (J^T a) and forward mode (J t) must be transposes of each other: <a, J t> = <J^T a, t>
/// for random a, t, through every op kind at once.
#[test]
fn vjp_is_the_transpose_of_jvp() {
    for f in fixtures() {
        let id = f["id"].as_str().unwrap().to_string();
        let (net, params, x) = build(&f);
        let trace = forward(&net, &params, x);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let bj = if net.batch_coupled() {
            net.input.batch
        } else {
            1
        };
        let n = net.input.width;
        let rnd = |rng: &mut rand_xoshiro::Xoshiro256PlusPlus| -> Vec<DMatrix<f64>> {
            use rand::Rng;
            (0..bj)
                .map(|_| DMatrix::from_fn(n, 1, |_, _| rng.gen::<f64>() - 0.5))
                .collect()
        };
        let t0 = rnd(&mut rng);
        let a0 = rnd(&mut rng);
        let mut t = t0.clone();
        let mut a = a0.clone();
        for l in 0..net.depth() {
            for ((op, p), c) in net.layers[l]
                .ops
                .iter()
                .zip(&params[l])
                .zip(&trace.caches[l])
            {
                t = op.jvp(p, c, t);
            }
        }
        for l in (0..net.depth()).rev() {
            for ((op, p), c) in net.layers[l]
                .ops
                .iter()
                .zip(&params[l])
                .zip(&trace.caches[l])
                .rev()
            {
                a = op.vjp(p, c, a);
            }
        }
        let lhs: f64 = a0.iter().zip(&t).map(|(x, y)| x.dot(y)).sum();
        let rhs: f64 = a.iter().zip(&t0).map(|(x, y)| x.dot(y)).sum();
        close(lhs, rhs, &format!("{id}: <a, J t> vs <J^T a, t>"));
    }
}
