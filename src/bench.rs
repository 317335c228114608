//! Benchmarks of both engines against this machine's own f64 matrix-product peak, measured in the same
//! run (so a busy or throttled machine lowers the peak and the engine alike). Used by `gradscale bench`
//! and `benches/engine.rs`; results and scaling fits are written up in theory/cost.md.

use crate::arch::{Dense, Init, InputModel, Layer, MlpSpec, Network, Op, Residual, Skip};
use crate::error::{Error, Result};
use crate::montecarlo::{self, gemm, Estimator, McOptions};
use crate::theory::{self, MfOptions};
use crate::Nonlinearity;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// Runs `f` on a fresh pool of `threads` threads.
pub fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Unsupported(format!("cannot start {threads} threads: {e}")))?;
    Ok(pool.install(f))
}

/// Best rate over repeated timings of `f` (which does `flops` flops), for at least `min_secs`: the best,
/// not the mean, because other processes only ever slow a run down.
fn best_rate(flops: f64, min_secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut reps = 0;
    while reps < 3 || start.elapsed().as_secs_f64() < min_secs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    flops / best / 1e9
}

/// A matrix-product peak: GFLOP/s of an n x n x n f64 product with the engine's kernels.
#[derive(Clone, Debug, Serialize)]
pub struct Peak {
    pub threads: usize,
    pub n: usize,
    pub gflops: f64,
}

/// The f64 product peak on `threads` threads: one faer call on one thread; on more, the better of faer's
/// parallel product and the engine's own split product (gemm.rs).
pub fn gemm_peak(n: usize, threads: usize, min_secs: f64) -> Result<Peak> {
    let flops = 2.0 * (n as f64).powi(3);
    let gflops = if threads == 1 {
        let a = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
        let b = a.clone();
        let mut c = Mat::<f64>::zeros(n, n);
        best_rate(flops, min_secs, || {
            matmul(
                c.as_mut(),
                Accum::Replace,
                a.as_ref(),
                b.as_ref(),
                1.0,
                Par::Seq,
            )
        })
    } else {
        // The faster of faer's own parallel product and the engine's shape-fixed panel split.
        let a = DMatrix::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
        let b = a.clone();
        let mut c = DMatrix::<f64>::zeros(n, n);
        let split = in_pool(threads, || {
            best_rate(flops, min_secs / 2.0, || {
                gemm::mul_into(&mut c, &a, false, &b)
            })
        })?;
        let fa = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
        let fb = fa.clone();
        let mut fc = Mat::<f64>::zeros(n, n);
        let own = in_pool(threads, || {
            best_rate(flops, min_secs / 2.0, || {
                matmul(
                    fc.as_mut(),
                    Accum::Replace,
                    fa.as_ref(),
                    fb.as_ref(),
                    1.0,
                    Par::rayon(threads),
                )
            })
        })?;
        split.max(own)
    };
    Ok(Peak { threads, n, gflops })
}

/// One timed workload.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub engine: &'static str,
    /// Wall-clock seconds of the whole call (drawing, forward, both Jacobian passes, aggregation).
    pub seconds: f64,
    /// Matrix-product flops done (0 for the closed form).
    pub flops: f64,
    pub gflops: f64,
    /// gflops over the peak on the same thread count.
    pub fraction_of_peak: f64,
}

/// A Monte Carlo workload.
#[derive(Clone, Debug)]
pub struct McCase {
    pub name: String,
    pub net: Network,
    pub opts: McOptions,
    /// Timed runs; the fastest is reported (other processes only ever slow a run down).
    pub repeats: usize,
}

fn mlp(act: Nonlinearity, width: usize, depth: usize) -> Network {
    Network::mlp(MlpSpec {
        act,
        width,
        depth,
        sigma_w2: MlpSpec::default_sigma_w2(act),
        sigma_b2: 0.0,
    })
    .expect("valid benchmark network")
}

/// `depth` layers of [Dense, BatchNorm, tanh] at width `width`, batch `batch`.
pub fn batch_norm_net(width: usize, depth: usize, batch: usize) -> Network {
    let dense = Op::Dense(Dense {
        width,
        sigma_w2: 1.0,
        sigma_b2: 0.0,
        init: Init::Gaussian,
    });
    Network {
        input: InputModel {
            width,
            batch,
            correlation: 0.0,
            data: None,
        },
        layers: (0..depth)
            .map(|_| Layer {
                ops: vec![
                    dense.clone(),
                    Op::BatchNorm { eps: 1e-5 },
                    Op::Act(Nonlinearity::Tanh),
                ],
            })
            .collect(),
    }
}

/// `depth` residual blocks x + rho(x), rho = [Dense, relu, Dense] with sigma_w^2 = 2 then 1/depth.
pub fn resnet(width: usize, depth: usize) -> Network {
    let d = |s: f64| {
        Op::Dense(Dense {
            width,
            sigma_w2: s,
            sigma_b2: 0.0,
            init: Init::Gaussian,
        })
    };
    Network {
        input: InputModel::sphere(width),
        layers: (0..depth)
            .map(|_| Layer {
                ops: vec![Op::Residual(Residual {
                    skip: Skip::Identity,
                    alpha: 1.0,
                    branch: vec![d(2.0), Op::Act(Nonlinearity::Relu), d(1.0 / depth as f64)],
                })],
            })
            .collect(),
    }
}

fn case(name: String, net: Network, samples: usize, estimator: Estimator) -> McCase {
    McCase {
        name,
        net,
        opts: McOptions {
            samples,
            seed: 1,
            estimator,
        },
        repeats: 1,
    }
}

/// The headline workload of issue 6: tanh, width 100, depth 50, 200 samples, exact, both GSC families.
pub fn headline() -> McCase {
    McCase {
        repeats: 3,
        ..case(
            "mlp tanh w100 d50 exact x200".into(),
            mlp(Nonlinearity::Tanh, 100, 50),
            200,
            Estimator::Exact,
        )
    }
}

/// The standard suite: widths 32..1000, depths 10..200, probes, batch norm, a ResNet.
pub fn suite(quick: bool) -> Vec<McCase> {
    let t = Nonlinearity::Tanh;
    let mut v = vec![headline()];
    let mut add =
        |name: &str, net: Network, s: usize, e: Estimator| v.push(case(name.into(), net, s, e));
    add(
        "mlp tanh w32 d50 exact",
        mlp(t, 32, 50),
        400,
        Estimator::Exact,
    );
    add(
        "mlp tanh w300 d50 exact",
        mlp(t, 300, 50),
        16,
        Estimator::Exact,
    );
    add(
        "mlp tanh w100 d10 exact",
        mlp(t, 100, 10),
        400,
        Estimator::Exact,
    );
    add(
        "mlp tanh w100 d200 exact",
        mlp(t, 100, 200),
        50,
        Estimator::Exact,
    );
    add(
        "mlp tanh w1000 d50 probes16",
        mlp(t, 1000, 50),
        16,
        Estimator::Probes(16),
    );
    add(
        "batchnorm tanh w16 d10 B64 exact",
        batch_norm_net(16, 10, 64),
        4,
        Estimator::Exact,
    );
    add(
        "resnet relu w100 d25 exact",
        resnet(100, 25),
        100,
        Estimator::Exact,
    );
    if !quick {
        add(
            "mlp tanh w1000 d10 exact",
            mlp(t, 1000, 10),
            4,
            Estimator::Exact,
        );
    }
    v
}

/// Times one Monte Carlo case on the current pool (best of `repeats`).
pub fn run_case(c: &McCase, peak: f64) -> Result<CaseResult> {
    let mut seconds = f64::INFINITY;
    for _ in 0..c.repeats.max(1) {
        let t = Instant::now();
        let m = montecarlo::simulate(&c.net, &c.opts)?;
        seconds = seconds.min(t.elapsed().as_secs_f64());
        // Keep the result observable so the work cannot be optimised away.
        std::hint::black_box(&m);
    }
    let flops = montecarlo::flops_per_sample(&c.net, c.opts.estimator) * c.opts.samples as f64;
    let gflops = flops / seconds / 1e9;
    Ok(CaseResult {
        name: c.name.clone(),
        engine: "monte-carlo",
        seconds,
        flops,
        gflops,
        fraction_of_peak: gflops / peak,
    })
}

/// The closed-form phase grid: `side` x `side` points (sigma_w^2 in [0.5, 4], sigma_b^2 in [0, 1]) of a
/// tanh MLP, every layer to `depth`, one `theory::predict` per point (without the fixed-point analysis),
/// in parallel. Returns seconds; the first call includes building tanh's moment table (theory/table.rs).
pub fn phase_grid(side: usize, depth: usize) -> Result<CaseResult> {
    let t = Instant::now();
    let points: Vec<(usize, usize)> = (0..side)
        .flat_map(|i| (0..side).map(move |j| (i, j)))
        .collect();
    let out: Result<Vec<f64>> = points
        .par_iter()
        .map(|&(i, j)| {
            let sw2 = 0.5 + 3.5 * i as f64 / (side.max(2) - 1) as f64;
            let sb2 = j as f64 / (side.max(2) - 1) as f64;
            let net = Network::mlp(MlpSpec {
                act: Nonlinearity::Tanh,
                width: 100,
                depth,
                sigma_w2: sw2,
                sigma_b2: sb2,
            })?;
            let p = theory::predict(
                &net,
                &MfOptions {
                    skip_fixed_point: true,
                    ..Default::default()
                },
            )?;
            Ok(p.layers[0].log_gsc_to_output)
        })
        .collect();
    std::hint::black_box(out?);
    Ok(CaseResult {
        name: format!("closed form {side}x{side} grid tanh d{depth}"),
        engine: "closed-form",
        seconds: t.elapsed().as_secs_f64(),
        flops: 0.0,
        gflops: 0.0,
        fraction_of_peak: 0.0,
    })
}

/// Least-squares slope of ln y against ln x: the scaling exponent.
pub fn fit_exponent(xs: &[f64], ys: &[f64]) -> f64 {
    let lx: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
    let ly: Vec<f64> = ys.iter().map(|y| y.ln()).collect();
    let n = lx.len() as f64;
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxy: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = lx.iter().map(|x| (x - mx).powi(2)).sum();
    sxy / sxx
}

/// One scaling sweep: a parameter, its values, the seconds each took, and the fitted exponent.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub parameter: &'static str,
    pub fixed: String,
    pub values: Vec<f64>,
    pub seconds: Vec<f64>,
    pub exponent: f64,
}

fn sweep(
    parameter: &'static str,
    fixed: &str,
    values: &[usize],
    make: impl Fn(usize) -> McCase,
) -> Result<Sweep> {
    let mut seconds = Vec::new();
    for &v in values {
        seconds.push(run_case(&make(v), 1.0)?.seconds);
    }
    let xs: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    Ok(Sweep {
        parameter,
        fixed: fixed.into(),
        exponent: fit_exponent(&xs, &seconds),
        values: xs,
        seconds,
    })
}

/// Time against width, depth, samples and batch (theory/cost.md).
pub fn scaling_sweeps() -> Result<Vec<Sweep>> {
    let t = Nonlinearity::Tanh;
    Ok(vec![
        sweep(
            "width",
            "tanh d20 exact, 2e9/width^3 samples",
            &[64, 128, 256, 512],
            |w| {
                // Samples scaled so each point is ~0.3 s; seconds are reported per sample below.
                let s = ((2.0e8 / (w as f64).powi(3)) as usize).max(2);
                case(format!("w{w}"), mlp(t, w, 20), s, Estimator::Exact)
            },
        )
        .map(per_sample(|w| {
            ((2.0e8 / (w as f64).powi(3)) as usize).max(2)
        }))?,
        sweep(
            "depth",
            "tanh w100 exact x50",
            &[10, 20, 40, 80, 160],
            |d| case(format!("d{d}"), mlp(t, 100, d), 50, Estimator::Exact),
        )?,
        sweep(
            "samples",
            "tanh w100 d20 exact",
            &[25, 50, 100, 200, 400],
            |s| case(format!("s{s}"), mlp(t, 100, 20), s, Estimator::Exact),
        )?,
        sweep(
            "batch",
            "batch norm tanh w16 d5 exact x2",
            &[4, 8, 16, 32, 64],
            |b| {
                case(
                    format!("B{b}"),
                    batch_norm_net(16, 5, b),
                    2,
                    Estimator::Exact,
                )
            },
        )?,
    ])
}

/// Turns a sweep's seconds into seconds per sample (when the sample count varied along the sweep).
fn per_sample(samples: impl Fn(usize) -> usize) -> impl FnOnce(Sweep) -> Sweep {
    move |mut s: Sweep| {
        for (t, v) in s.seconds.iter_mut().zip(&s.values) {
            *t /= samples(*v as usize) as f64;
        }
        s.exponent = fit_exponent(&s.values, &s.seconds);
        s.parameter = "width (per sample)";
        s
    }
}
