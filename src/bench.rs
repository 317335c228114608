//! Benchmarks of both engines against this machine's own f64 matrix-product peak, measured in the same
//! run (so a busy or throttled machine lowers the peak and the engine alike). Used by `gradscale bench`
//! and `benches/engine.rs`; results and scaling fits are written up in theory/cost.md.

use crate::arch::{InputModel, MlpSpec, Network, Op};
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

/// The physical f64 FMA peak: what the cores can do at most, independent of any matrix-product kernel.
#[derive(Clone, Debug, Serialize)]
pub struct FmaPeak {
    pub threads: usize,
    /// The instruction set timed: "avx512f", "avx2+fma" or "scalar" (no vector FMA found).
    pub isa: &'static str,
    /// Independent FMA chains per thread.
    pub chains: usize,
    pub gflops: f64,
}

/// Independent accumulators per thread: enough to cover the FMA latency (4 cycles) times the number of
/// FMA pipes (up to 2) twice over, so the loop is bound by throughput, not by the dependency chains.
const FMA_CHAINS: usize = 16;

/// With AVX2 only 16 vector registers exist: 16 accumulators plus the two operands would spill to the stack
/// and halve the measured rate (seen on an AVX2-only EPYC: 24.8 GFLOP/s per core against the 36 a matrix
/// product reached). 12 chains still cover 2 pipes x 5 cycles of FMA latency.
const AVX2_CHAINS: usize = 12;

/// Rounds of `FMA_CHAINS` FMAs per timed call and thread.
const FMA_ROUNDS: usize = 1 << 22;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(a: f64, b: f64, rounds: usize) -> f64 {
    use std::arch::x86_64::*;
    let va = _mm512_set1_pd(a);
    let vb = _mm512_set1_pd(b);
    let mut acc = [_mm512_set1_pd(1.0); FMA_CHAINS];
    for (i, x) in acc.iter_mut().enumerate() {
        *x = _mm512_set1_pd(1.0 + i as f64 * 1e-3);
    }
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_pd(*x, va, vb);
        }
    }
    let mut s = _mm512_setzero_pd();
    for x in acc {
        s = _mm512_add_pd(s, x);
    }
    _mm512_reduce_add_pd(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(a: f64, b: f64, rounds: usize) -> f64 {
    use std::arch::x86_64::*;
    let va = _mm256_set1_pd(a);
    let vb = _mm256_set1_pd(b);
    let mut acc = [_mm256_set1_pd(1.0); AVX2_CHAINS];
    for (i, x) in acc.iter_mut().enumerate() {
        *x = _mm256_set1_pd(1.0 + i as f64 * 1e-3);
    }
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_pd(*x, va, vb);
        }
    }
    let mut s = _mm256_setzero_pd();
    for x in acc {
        s = _mm256_add_pd(s, x);
    }
    let mut out = [0.0; 4];
    _mm256_storeu_pd(out.as_mut_ptr(), s);
    out.iter().sum()
}

fn fma_loop_scalar(a: f64, b: f64, rounds: usize) -> f64 {
    fma_loop_scalar_chains::<FMA_CHAINS>(a, b, rounds)
}

fn fma_loop_scalar_chains<const C: usize>(a: f64, b: f64, rounds: usize) -> f64 {
    let mut acc = [1.0f64; C];
    for (i, x) in acc.iter_mut().enumerate() {
        *x = 1.0 + i as f64 * 1e-3;
    }
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = x.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

/// One thread's timed loop: (a, b, rounds) -> a value that depends on every FMA.
type FmaLoop = fn(f64, f64, usize) -> f64;

/// The widest FMA this CPU runs, as (name, f64 lanes, independent chains, loop).
fn fma_kernel() -> (&'static str, usize, usize, FmaLoop) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return ("avx512f", 8, FMA_CHAINS, |a, b, r| unsafe {
                fma_loop_avx512(a, b, r)
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return ("avx2+fma", 4, AVX2_CHAINS, |a, b, r| unsafe {
                fma_loop_avx2(a, b, r)
            });
        }
    }
    ("scalar", 1, FMA_CHAINS, fma_loop_scalar)
}

/// The physical FMA peak on `threads` threads, measured now: every thread runs independent vector FMA
/// chains at once (16 with AVX-512's 32 registers, 12 with AVX2's 16), and the best wall time over repeated runs of at least `min_secs` in total is
/// kept (other processes only ever slow a run down). This is the honest reference for "fraction of peak":
/// a large matrix product's rate depends on its kernel and on the load, the FMA pipes' rate only on the
/// load. Each FMA counts 2 flops per lane.
pub fn fma_peak(threads: usize, min_secs: f64) -> FmaPeak {
    let (isa, lanes, chains, kernel) = fma_kernel();
    let threads = threads.max(1);
    let flops = 2.0 * (lanes * chains * FMA_ROUNDS * threads) as f64;
    // Values that stay near 1 for ever (x -> x a + b has its fixed point at 1), hidden from the optimiser.
    let a = std::hint::black_box(1.0 - 1e-9);
    let b = std::hint::black_box(1e-9);
    let gflops = best_rate(flops, min_secs, || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || kernel(a, b, FMA_ROUNDS)))
                .collect();
            for h in handles {
                std::hint::black_box(h.join().unwrap_or(0.0));
            }
        })
    });
    FmaPeak {
        threads,
        isa,
        chains,
        gflops,
    }
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
    /// gflops over the matrix-product peak on the same thread count.
    pub fraction_of_peak: f64,
    /// gflops over the physical FMA peak on the same thread count, measured in the same run.
    pub fraction_of_fma_peak: f64,
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
    Network::stack(
        width,
        batch,
        depth,
        vec![
            Op::dense(width, 1.0, 0.0),
            Op::BatchNorm { eps: 1e-5 },
            Op::Act(Nonlinearity::Tanh),
        ],
    )
}

/// `depth` residual blocks x + rho(x), rho = [Dense, relu, Dense] with sigma_w^2 = 2 then 1/depth.
pub fn resnet(width: usize, depth: usize) -> Network {
    let branch = vec![
        Op::dense(width, 2.0, 0.0),
        Op::Act(Nonlinearity::Relu),
        Op::dense(width, 1.0 / depth as f64, 0.0),
    ];
    let mut net = Network::stack(width, 1, depth, vec![Op::residual(1.0, branch)]);
    net.input = InputModel::sphere(width);
    net
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

/// examples/batch-relu.toml: [Dense (sigma_w^2 = 2), BatchNorm, relu] x 50 at width 100, batch 16, exact.
/// Its Jacobian is over the whole batch map (dimension 1600), so one sample is 51 GFLOP of products.
pub fn batch_relu() -> McCase {
    let net = Network::stack(
        100,
        16,
        50,
        vec![
            Op::dense(100, 2.0, 0.0),
            Op::BatchNorm { eps: 1e-5 },
            Op::Act(Nonlinearity::Relu),
        ],
    );
    // Best of 2: a single timed run here measured 2x the time of the same `simulate` run as a process.
    McCase {
        repeats: 2,
        ..case(
            "batch-relu w100 d50 B16 exact x2".into(),
            net,
            2,
            Estimator::Exact,
        )
    }
}

/// `bench --quick`: the headline and the batch-norm case of issue 18.
pub fn quick_cases() -> Vec<McCase> {
    vec![headline(), batch_relu()]
}

/// The standard suite: widths 32..1000, depths 10..200, probes, batch norm, a ResNet.
pub fn suite(quick: bool) -> Vec<McCase> {
    let t = Nonlinearity::Tanh;
    let mut v = quick_cases();
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
pub fn run_case(c: &McCase, peak: f64, fma_peak: f64) -> Result<CaseResult> {
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
        fraction_of_fma_peak: gflops / fma_peak,
    })
}

/// Matrix-product flops of one SGD step of a network of dense layers on a batch of `b` rows: per dense
/// layer (n_in -> n_out) the forward product, the weight gradient and the input gradient, 2 n_out n_in b
/// each; the first layer's input gradient is not needed and not counted. Elementwise work is not counted.
pub fn train_step_flops(net: &Network, b: usize) -> f64 {
    let mut n_in = net.input.width;
    let mut flops = 0.0;
    let mut first = true;
    for layer in &net.layers {
        for op in &layer.ops {
            if let Op::Dense(d) = op {
                let gemm = 2.0 * (d.width * n_in * b) as f64;
                flops += if first { 2.0 * gemm } else { 3.0 * gemm };
                first = false;
                n_in = d.width;
            }
        }
    }
    flops
}

/// One training epoch (plain SGD, softmax cross-entropy, minibatches of `batch` rows in file order) of a
/// ReLU MLP of `depth` hidden layers of `width` and a linear readout on `data`, timed (best of
/// `repeats`, each from the same initial weights). No GSC logging or evaluation is timed.
pub fn train_case(
    name: &str,
    data: &crate::data::Dataset,
    depth: usize,
    width: usize,
    batch: usize,
    repeats: usize,
    peaks: (f64, f64),
) -> Result<CaseResult> {
    use crate::train::{self, TrainConfig};
    let net = train::mlp_classifier(
        data.dim(),
        width,
        depth,
        data.classes,
        Nonlinearity::Relu,
        2.0,
        0.0,
    )?;
    let cfg = TrainConfig {
        lr: 1e-3,
        batch_size: batch,
        ..TrainConfig::default()
    };
    let lrs = train::layer_lrs(&cfg, net.depth())?;
    let init = train::init_params(&net, 0);
    let rows: Vec<usize> = (0..data.len()).collect();
    let batches: Vec<(DMatrix<f64>, Vec<usize>)> = rows
        .chunks(batch)
        .map(|c| {
            (
                DMatrix::from_fn(data.dim(), c.len(), |i, j| data.x[c[j]][i]),
                c.iter().map(|&r| data.y[r]).collect(),
            )
        })
        .collect();
    let flops: f64 = batches
        .iter()
        .map(|(x, _)| train_step_flops(&net, x.ncols()))
        .sum();
    // The step `Trainer::run` takes for this network: the fused MLP step, gradients into one buffer.
    let acts = train::mlp::plan(&net)
        .ok_or_else(|| Error::Architecture("the training case is a plain MLP".into()))?;
    let mut seconds = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let mut params = init.clone();
        let mut state = train::OptState::new(&params);
        let mut g = train::zero_grads(&params);
        let t = Instant::now();
        for (x, y) in &batches {
            train::mlp::loss_and_grad_into(&acts, &params, x, y, cfg.loss, &mut g);
            train::apply_step(&mut params, &mut g, &mut state, &cfg, &lrs);
        }
        seconds = seconds.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&params);
    }
    let gflops = flops / seconds / 1e9;
    Ok(CaseResult {
        name: name.into(),
        engine: "train",
        seconds,
        flops,
        gflops,
        fraction_of_peak: gflops / peaks.0,
        fraction_of_fma_peak: gflops / peaks.1,
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
        fraction_of_fma_peak: 0.0,
    })
}

/// `collapse-1000`: the closed-form collapse prediction (correlation map, std and sign diversity per
/// layer) of an ordered tanh MLP (sigma_w^2 = 0.5, sigma_b^2 = 0.1, input correlation 0.5, batch 4) to
/// depth 1000, whose q settles on its fixed point and c on 1: the per-variance Mehler series is paid once
/// and each further layer is a polynomial in c (nonlin/moments.rs). Best of 3; the first call also builds
/// tanh's moment table.
pub fn collapse_prediction(depth: usize) -> Result<CaseResult> {
    collapse_case("", 0.5, 0.1, depth)
}

/// The same on the chaotic side with a bias (sigma_w^2 = 2.5, sigma_b^2 = 0.02: q* = 1.01, c settles
/// below 1), where only the larger Gauss–Hermite rules of gauss/mehler.rs pass the series' checks (80 s
/// at depth 1000 on the nested 2-D rule before them, theory/cost.md).
pub fn collapse_prediction_chaotic_bias(depth: usize) -> Result<CaseResult> {
    collapse_case(" chaotic", 2.5, 0.02, depth)
}

fn collapse_case(label: &str, sigma_w2: f64, sigma_b2: f64, depth: usize) -> Result<CaseResult> {
    let mut net = Network::mlp(MlpSpec {
        act: Nonlinearity::Tanh,
        width: 100,
        depth,
        sigma_w2,
        sigma_b2,
    })?;
    net.input.correlation = 0.5;
    let mut seconds = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(theory::collapse::predict_collapse(&net, Some(4))?);
        seconds = seconds.min(t.elapsed().as_secs_f64());
    }
    Ok(CaseResult {
        name: format!("collapse-{depth} tanh{label} b4 closed form"),
        engine: "closed-form",
        seconds,
        flops: 0.0,
        gflops: 0.0,
        fraction_of_peak: 0.0,
        fraction_of_fma_peak: 0.0,
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
        seconds.push(run_case(&make(v), 1.0, 1.0)?.seconds);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector kernel must do the work it is credited with: every lane of every chain runs the same
    /// recursion as the scalar loop, so its sum is `lanes` times the scalar sum (a kernel that skipped
    /// chains or rounds would differ).
    #[test]
    fn fma_kernel_does_the_counted_work() {
        let (_, lanes, chains, kernel) = fma_kernel();
        let (a, b, r) = (0.999, 0.001, 1000);
        let v = kernel(a, b, r) / lanes as f64;
        let s = match chains {
            AVX2_CHAINS => fma_loop_scalar_chains::<AVX2_CHAINS>(a, b, r),
            _ => fma_loop_scalar(a, b, r),
        };
        assert!((v - s).abs() <= 1e-12 * s.abs(), "{v} vs {s}");
        // And the rounds matter: fewer rounds give a different value.
        assert!((kernel(a, b, r / 2) / lanes as f64 - s).abs() > 1e-6);
    }
}
