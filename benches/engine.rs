//! Criterion timings of the engines' kernels (`cargo bench`). For GFLOP/s against the machine's measured
//! peak, and the whole suite with scaling fits, use `gradscale bench` (theory/cost.md).

use criterion::{criterion_group, criterion_main, Criterion};
use gradscale::arch::{MlpSpec, Network};
use gradscale::montecarlo::{self, gemm, Estimator, McOptions};
use gradscale::theory::{self, MfOptions};
use gradscale::Nonlinearity;
use nalgebra::DMatrix;

fn tanh_mlp(width: usize, depth: usize) -> Network {
    Network::mlp(MlpSpec {
        act: Nonlinearity::Tanh,
        width,
        depth,
        sigma_w2: 1.0,
        sigma_b2: 0.0,
    })
    .unwrap()
}

fn products(c: &mut Criterion) {
    let a = DMatrix::<f64>::from_fn(100, 100, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
    let mut out = DMatrix::zeros(100, 100);
    c.bench_function("gemm 100 W*T", |b| {
        b.iter(|| gemm::mul_into(&mut out, &a, false, &a))
    });
    c.bench_function("gemm 100 W^T*A", |b| {
        b.iter(|| gemm::mul_into(&mut out, &a, true, &a))
    });
}

/// One width-100 layer's weights: theory/cost.md compares the time per normal with the products'.
fn normals(c: &mut Criterion) {
    let mut w = vec![0.0; 10_000];
    let mut seed = 0;
    c.bench_function("fill_normal 10^4", |b| {
        b.iter(|| {
            seed += 1;
            montecarlo::fill_normal(&mut w, seed, 1.0)
        })
    });
}

fn engines(c: &mut Criterion) {
    let net = tanh_mlp(100, 50);
    let opts = McOptions {
        samples: 20,
        seed: 1,
        estimator: Estimator::Exact,
    };
    c.bench_function("simulate tanh w100 d50 exact x20", |b| {
        b.iter(|| montecarlo::simulate(&net, &opts).unwrap())
    });
    let probes = McOptions {
        estimator: Estimator::Probes(16),
        ..opts
    };
    let wide = tanh_mlp(500, 20);
    c.bench_function("simulate tanh w500 d20 probes16 x20", |b| {
        b.iter(|| montecarlo::simulate(&wide, &probes).unwrap())
    });
    // examples/batch-relu.toml, one sample: the batch map's Jacobian (16 blocks of 100 x 1600) through
    // the column panels of sample.rs.
    let bn = gradscale::bench::batch_relu();
    let one = McOptions {
        samples: 1,
        ..bn.opts
    };
    c.bench_function("simulate batch-relu w100 d50 B16 exact x1", |b| {
        b.iter(|| montecarlo::simulate(&bn.net, &one).unwrap())
    });
    c.bench_function("predict tanh d50 (one grid point)", |b| {
        b.iter(|| theory::predict(&net, &MfOptions::default()).unwrap())
    });
}

/// The finite-width chain law (theory/finite-width.md section 8) at depth 100: the target is
/// 50 ms at any width. Cost per draw is O(depth) for ln GSC(L, 0) (tabulated unit sums from width 32, the
/// unit loop below) plus O(depth^2) for the `CHAIN_EVERY_START` draws that carry every starting layer.
/// The unit tables are cached per process, so iterations after the first measure the draws (the cold
/// first call, tables included, is `gradscale predict --width W --depth 100`).
fn finite_chain(c: &mut Criterion) {
    use gradscale::theory::finite_width::{predict_finite, FiniteOptions};
    for (width, draws) in [(30, 2000), (100, 2000), (300, 2000), (3000, 2000)] {
        let net = tanh_mlp(width, 100);
        let opts = FiniteOptions {
            spectra: draws,
            ..FiniteOptions::default()
        };
        c.bench_function(&format!("finite chain tanh w{width} d100 x{draws}"), |b| {
            b.iter(|| predict_finite(&net, &opts).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = products, normals, engines, finite_chain
}
criterion_main!(benches);
