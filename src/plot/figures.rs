//! The figure set. Each figure is computed from the library's two engines (closed form as lines,
//! Monte Carlo as points with 95% error bars) and labelled with its configuration and seed.

use super::{Figure, Series};
use crate::arch::{InputModel, MlpSpec, Network, Op};
use crate::error::{Error, Result};
use crate::verify::observable::{self as obs, LnGscToOutput, Observable};
use crate::verify::Estimator;
use crate::Nonlinearity;

/// What every figure needs to know.
#[derive(Clone, Copy, Debug)]
pub struct FigureOptions {
    pub seed: u64,
    /// Fewer samples and configurations (for `audit --quick` and tests).
    pub quick: bool,
}

/// Figure names, in the order `plot --all` draws them.
pub fn names() -> Vec<&'static str> {
    vec![
        "gsc-depth",
        "gsc-width",
        "resnet-dilution",
        "finite-width",
        "bn-rate",
        "collapse",
        "phase",
    ]
    .into_iter()
    .chain(super::training::NAMES)
    .collect()
}

pub fn build(name: &str, o: &FigureOptions) -> Result<Figure> {
    match name {
        "gsc-depth" => gsc_depth(o),
        "gsc-width" => gsc_width(o),
        "resnet-dilution" => resnet_dilution(o),
        "finite-width" => finite_width(o),
        "bn-rate" => bn_rate(o),
        "collapse" => collapse(o),
        "phase" => phase(o),
        n if super::training::NAMES.contains(&n) => super::training::build(n, o),
        _ => Err(Error::param(
            "figure name",
            name,
            format!("one of: {}", names().join(", ")),
        )),
    }
}

/// 95% interval of a mean from its standard error.
const Z95: f64 = 1.959964;

/// The seed paper's families (examples/*.toml, embedded so the figure does not depend on the working
/// directory): plain, layer-norm and batch-norm MLPs and their ResNet versions, each with relu, tanh and SELU.
pub const FAMILIES: [(&str, &str); 18] = [
    ("plain-relu", include_str!("../../examples/plain-relu.toml")),
    ("plain-tanh", include_str!("../../examples/plain-tanh.toml")),
    ("plain-selu", include_str!("../../examples/plain-selu.toml")),
    ("layer-relu", include_str!("../../examples/layer-relu.toml")),
    ("layer-tanh", include_str!("../../examples/layer-tanh.toml")),
    ("layer-selu", include_str!("../../examples/layer-selu.toml")),
    ("batch-relu", include_str!("../../examples/batch-relu.toml")),
    ("batch-tanh", include_str!("../../examples/batch-tanh.toml")),
    ("batch-selu", include_str!("../../examples/batch-selu.toml")),
    (
        "resnet-plain-relu",
        include_str!("../../examples/resnet-plain-relu.toml"),
    ),
    (
        "resnet-plain-tanh",
        include_str!("../../examples/resnet-plain-tanh.toml"),
    ),
    (
        "resnet-plain-selu",
        include_str!("../../examples/resnet-plain-selu.toml"),
    ),
    (
        "resnet-layer-relu",
        include_str!("../../examples/resnet-layer-relu.toml"),
    ),
    (
        "resnet-layer-tanh",
        include_str!("../../examples/resnet-layer-tanh.toml"),
    ),
    (
        "resnet-layer-selu",
        include_str!("../../examples/resnet-layer-selu.toml"),
    ),
    (
        "resnet-batch-relu",
        include_str!("../../examples/resnet-batch-relu.toml"),
    ),
    (
        "resnet-batch-tanh",
        include_str!("../../examples/resnet-batch-tanh.toml"),
    ),
    (
        "resnet-batch-selu",
        include_str!("../../examples/resnet-batch-selu.toml"),
    ),
];

/// Measured ln GSC(L, 0) of `samples` networks (exact Jacobians).
fn ln_gsc(net: &Network, samples: usize, seed: u64) -> Result<crate::stats::Summary> {
    Ok(LnGscToOutput {
        layer: 0,
        estimator: Estimator::Exact,
    }
    .monte_carlo(net, samples, seed)?
    .summary)
}

/// Probes for batch-coupled networks (whose Jacobian is of the whole batch map, dim n * B); exact otherwise.
fn estimator_for(net: &Network) -> Estimator {
    if net.batch_coupled() {
        Estimator::Probes(4)
    } else {
        Estimator::Exact
    }
}

/// GSC(L, L - l) against l (dense layers between the layer and the output) for one network: the closed
/// form as a line and the measured geometric mean (exp of the mean ln GSC, 95% interval) every `step` dense
/// layers. Both are named `label`: the CSV tells them apart by kind, the legend shows the line.
fn profile_series(
    net: &Network,
    label: &str,
    color: usize,
    panel: usize,
    samples: usize,
    seed: u64,
    step: usize,
) -> Result<Vec<Series>> {
    let prof = crate::verify::profile::gsc_profile(net, samples, seed, estimator_for(net))?;
    let line = prof
        .rows
        .iter()
        .map(|r| (r.dense_to_output as f64, r.predicted.exp()))
        .collect();
    let marked: Vec<_> = prof
        .rows
        .iter()
        .filter(|r| r.dense_to_output % step == 0 || r.layer == 0)
        .filter(|r| r.measured.n > 0)
        .collect();
    let pts = marked
        .iter()
        .map(|r| (r.dense_to_output as f64, r.measured.mean.exp()))
        .collect();
    let bars = marked
        .iter()
        .map(|r| {
            let s = &r.measured;
            (
                (s.mean - Z95 * s.stderr).exp(),
                (s.mean + Z95 * s.stderr).exp(),
            )
        })
        .collect();
    Ok(vec![
        Series::line(label, color, line).in_panel(panel),
        Series::points(label, color, pts, bars).in_panel(panel),
    ])
}

/// The gsc-depth figure of one network (`plot --arch FILE`): its closed-form GSC(L, L - l) and the Monte
/// Carlo points, written as `{stem}-gsc-depth`.
pub fn gsc_depth_of(net: &Network, stem: &str, o: &FigureOptions) -> Result<Figure> {
    let samples = if o.quick { 8 } else { 32 };
    let step = (dense_to_output_total(net) / 12).max(1);
    let series = profile_series(net, stem, 0, 0, samples, o.seed, step)?;
    let last = series[0].points.first().map_or(f64::NAN, |p| p.1);
    Ok(Figure {
        name: format!("{stem}-gsc-depth"),
        title: format!("GSC(L, L - l) of {stem} at initialisation"),
        caption: format!(
            "What to see: how fast the gradient scale grows (a straight line on this log axis is exponential growth) and whether the measured points follow the closed form; closed form GSC(L, 0) = {last:.4e}. Line: closed form at infinite width; points: geometric mean over {samples} sampled networks with 95% interval{}, every {step} dense layers; seed {}.",
            if net.batch_coupled() { " (4 Rademacher probes)" } else { "" },
            o.seed
        ),
        x_label: "l = dense layers between f_(L-l) and the output".into(),
        y_label: "GSC(L, L - l) (log scale)".into(),
        log_y: true,
        log_x: false,
        series,
        panels: vec![],
    })
}

fn dense_to_output_total(net: &Network) -> usize {
    crate::verify::profile::dense_to_output(net)[0]
}

/// Nonlinearities outside the seed paper's three, as width-100 depth-50 MLPs at their default sigma_w^2:
/// most of them make gradients vanish, which on a shared axis would squash the families onto 1.
const OTHER_ACTS: [&str; 5] = ["sigmoid", "gelu", "erf", "elu", "hard-tanh"];

/// The seed paper's Figure 1A, predicted and measured: GSC(L, L - l) against l for its families
/// (plain / layer-norm / batch-norm x relu / tanh / SELU and the ResNet versions), with other nonlinearities
/// in their own panel.
fn gsc_depth(o: &FigureOptions) -> Result<Figure> {
    let samples = if o.quick { 8 } else { 32 };
    let step = 4;
    let mut series = Vec::new();
    for (i, (name, text)) in FAMILIES.iter().enumerate() {
        let net = crate::arch::from_toml_str(text, &format!("examples/{name}.toml"))?;
        series.extend(profile_series(
            &net,
            name,
            i % 9,
            i / 9,
            samples,
            o.seed + i as u64,
            step,
        )?);
    }
    for (i, name) in OTHER_ACTS.iter().enumerate() {
        let act: Nonlinearity = name.parse().map_err(Error::Unsupported)?;
        let net = Network::mlp(MlpSpec {
            act,
            width: 100,
            depth: 50,
            sigma_w2: MlpSpec::default_sigma_w2(act),
            sigma_b2: 0.0,
        })?;
        series.extend(profile_series(
            &net,
            &format!("plain-{name}"),
            i,
            2,
            samples,
            o.seed + 100 + i as u64,
            step,
        )?);
    }
    Ok(Figure {
        name: "gsc-depth".into(),
        title: "Gradients explode with depth: GSC(L, L - l) of the seed paper's width-100 networks at initialisation".into(),
        caption: format!(
            "What to see: the GSC grows exponentially with the number of layers l it spans (a straight line on this log axis) for every family except relu without batch norm (flat at 1); batch norm makes relu explode fastest; ResNets (middle, same 50 dense layers) grow far less; sigmoid and other saturating nonlinearities (right) vanish instead. Lines: closed form at infinite width; points: geometric mean over {samples} sampled networks with 95% interval (batch norm: 4 Rademacher probes, batch 16), every {step} dense layers. sigma_w^2 2 for relu, 1 otherwise, sigma_b = 0; seed {}.",
            o.seed
        ),
        x_label: "l = dense layers between f_(L-l) and the output".into(),
        y_label: "GSC(L, L - l) (log scale)".into(),
        log_y: true,
        log_x: false,
        series,
        panels: vec![
            "plain, layer-norm and batch-norm MLPs".into(),
            "ResNets (25 blocks of 2 dense layers)".into(),
            "other nonlinearities, plain MLP".into(),
        ],
    })
}

/// Finite width: the measured mean ln GSC(L, 0) of He-ReLU nets against width, through the finite-width law
/// of the same networks (theory/finite-width.md: the exact route for bias-free relu, a sampled reduced
/// product of Bartlett factors), next to the infinite-width value 0.
fn gsc_width(o: &FigureOptions) -> Result<Figure> {
    let widths: Vec<usize> = if o.quick {
        vec![10, 30, 100]
    } else {
        vec![10, 20, 30, 50, 100, 200, 300]
    };
    let depths = [10usize, 50];
    let samples = if o.quick { 32 } else { 128 };
    let spectra = if o.quick { 200 } else { 1000 };
    let he_relu = |w: usize, depth: usize| {
        Network::mlp(MlpSpec {
            act: Nonlinearity::Relu,
            width: w,
            depth,
            sigma_w2: 2.0,
            sigma_b2: 0.0,
        })
    };
    let mut series = Vec::new();
    let mut outside = Vec::new();
    for (i, &depth) in depths.iter().enumerate() {
        let mut pts = Vec::new();
        let mut bars = Vec::new();
        let mut law = Vec::new();
        for (j, &w) in widths.iter().enumerate() {
            let net = he_relu(w, depth)?;
            let s = &ln_gsc(&net, samples, o.seed + 100 * i as u64 + j as u64)?;
            pts.push((w as f64, s.mean));
            bars.push((s.mean - Z95 * s.stderr, s.mean + Z95 * s.stderr));
            let f = obs::finite_law(&net, spectra, o.seed + 1000 + 100 * i as u64 + j as u64)?;
            match f.log_gsc_to_output.first().and_then(|v| v.law()) {
                Some(l) => law.push((w as f64, l.mean)),
                None => outside.push(format!("depth {depth} n={w}")),
            }
        }
        series.push(Series::line(
            format!("depth {depth}: finite-width law (mean)"),
            i,
            law,
        ));
        series.push(Series::points(
            format!("depth {depth}: measured mean"),
            i,
            pts,
            bars,
        ));
    }
    series.push(Series::line(
        "infinite width (any depth)",
        7,
        vec![
            (widths[0] as f64, 0.0),
            (*widths.last().unwrap() as f64, 0.0),
        ],
    ));
    let note = if outside.is_empty() {
        String::new()
    } else {
        format!(" No law (outside validity): {}.", outside.join(", "))
    };
    Ok(Figure {
        name: "gsc-width".into(),
        title: "Finite width: ln GSC(L, 0) of He-ReLU MLPs".into(),
        caption: format!(
            "What to see: at finite width the mean ln GSC(L, 0) is positive (gradients grow although the infinite-width value is 0), larger for the deeper net, shrinking as n grows, and the measured points lie on the finite-width law of their depth. Lines: finite-width law (exact route, {spectra} spectra); points: mean over {samples} nets (degenerate excluded), 95% CI. relu, sigma_w^2 = 2, sigma_b = 0; seed {}.{note}",
            o.seed
        ),
        x_label: "width n".into(),
        y_label: "mean ln GSC(L, 0)".into(),
        log_y: false,
        log_x: false,
        series,
        panels: vec![],
    })
}

/// One residual block x + alpha * rho(x) with an exploding branch rho = dense -> tanh -> dense: the
/// block GSC against the dilution k = ||x|| / ||alpha rho||, with the Pythagorean curve
/// GSC_b^2 = (k^2 + GSC_rho^2) / (k^2 + 1).
fn resnet_dilution(o: &FigureOptions) -> Result<Figure> {
    let width = 100;
    let samples = if o.quick { 32 } else { 128 };
    let branch = vec![
        Op::dense(width, 4.0, 0.0),
        Op::Act(Nonlinearity::Tanh),
        Op::dense(width, 1.0, 0.0),
    ];
    let on_sphere = |mut net: Network| {
        net.input = InputModel::sphere(width);
        net
    };
    let block = |alpha: f64| {
        on_sphere(Network::stack(
            width,
            1,
            1,
            vec![Op::residual(alpha, branch.clone())],
        ))
    };
    // GSC of the branch alone (as a 1-layer network), from the closed form.
    let branch_net = on_sphere(Network::stack(width, 1, 1, branch.clone()));
    let pb = crate::verify::closed_form(&branch_net)?;
    let gsc_rho = pb.layers[0].log_gsc_to_output.exp();
    let q_rho = pb.layers[1].sq_norm;
    let alphas: Vec<f64> = if o.quick {
        vec![0.1, 0.3, 1.0, 3.0, 10.0]
    } else {
        vec![0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
    };
    let k_of = |alpha: f64| (1.0 / (alpha * alpha * q_rho)).sqrt();
    let curve: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let k = 10f64.powf(-1.5 + 3.0 * i as f64 / 200.0);
            (k, ((k * k + gsc_rho * gsc_rho) / (k * k + 1.0)).sqrt())
        })
        .collect();
    let mut pts = Vec::new();
    let mut bars = Vec::new();
    for (i, &a) in alphas.iter().enumerate() {
        let net = block(a);
        let s = &ln_gsc(&net, samples, o.seed + i as u64)?;
        pts.push((k_of(a), s.mean.exp()));
        bars.push((
            (s.mean - Z95 * s.stderr).exp(),
            (s.mean + Z95 * s.stderr).exp(),
        ));
    }
    Ok(Figure {
        name: "resnet-dilution".into(),
        title: "Pythagorean equation: block GSC against dilution k".into(),
        caption: format!(
            "What to see: a residual block's GSC falls from the branch's GSC_rho (k -> 0) to 1 (large k) along the Pythagorean curve: diluting the branch under the skip is what keeps ResNet gradients small. Block x + alpha*W2 tanh(W1 x), width {width}, sigma_w^2 = 4 then 1; GSC_rho = {gsc_rho:.4}; line: closed form; points: {samples} nets per point, 95% CI; seed {}.",
            o.seed
        ),
        x_label: "k = ||skip|| / ||residual|| (log10)".into(),
        y_label: "GSC of the block (log scale)".into(),
        log_y: true,
        log_x: false,
        panels: vec![],
        series: vec![
            Series::line("(k^2 + GSC_rho^2)/(k^2 + 1), square root (theory)", 0, curve.iter().map(|&(k, g)| (k.log10(), g)).collect()),
            Series::points("measured", 1, pts.iter().map(|&(k, g)| (k.log10(), g)).collect(), bars),
        ],
    })
}

/// The finite-width law of ln GSC(L, 0) against width: predicted mean and 5/95% quantiles
/// (theory/finite-width.md), the infinite-width value, and Monte Carlo means with 95% CIs.
/// Widths where the prediction is outside its validity are left off the prediction lines.
fn finite_width(o: &FigureOptions) -> Result<Figure> {
    use crate::verify::observable::FiniteValue;
    let depth = 50;
    let widths: Vec<usize> = if o.quick {
        vec![10, 30, 100]
    } else {
        vec![10, 20, 30, 50, 100, 200, 400]
    };
    let samples = if o.quick { 16 } else { 64 };
    let spectra = if o.quick { 200 } else { 1000 };
    let acts = [
        (Nonlinearity::Relu, 2.0, "relu He"),
        (Nonlinearity::Tanh, 1.0, "tanh"),
    ];
    let mut series = Vec::new();
    let mut outside = Vec::new();
    for (i, &(act, sw2, label)) in acts.iter().enumerate() {
        let (mut mean, mut q05, mut q95, mut inf, mut pts, mut bars) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut beyond = vec![];
        for (j, &w) in widths.iter().enumerate() {
            let net = Network::mlp(MlpSpec {
                act,
                width: w,
                depth,
                sigma_w2: sw2,
                sigma_b2: 0.0,
            })?;
            let x = w as f64;
            let p = crate::verify::closed_form(&net)?;
            inf.push((x, p.layers[0].log_gsc_to_output));
            let f = obs::finite_law(&net, spectra, o.seed + j as u64)?;
            match f.log_gsc_to_output.first().and_then(|v| v.law()) {
                Some(l) => {
                    mean.push((x, l.mean));
                    q05.push((x, l.q05));
                    q95.push((x, l.q95));
                }
                None => {
                    outside.push(format!("{label} n={w}"));
                    // The chain's mean past its measured validity: drawn apart, not as the law.
                    if let Some(FiniteValue::OutsideValidity { shift: Some(s), .. }) =
                        f.log_gsc_to_output.first()
                    {
                        beyond.push((x, p.layers[0].log_gsc_to_output + s));
                    }
                }
            }
            {
                let s = &ln_gsc(&net, samples, o.seed + 1000 * (i as u64 + 1) + j as u64)?;
                pts.push((x, s.mean));
                bars.push((s.mean - Z95 * s.stderr, s.mean + Z95 * s.stderr));
            }
        }
        series.push(Series::line(
            format!("{label}: finite-width mean"),
            2 * i,
            mean,
        ));
        series.push(Series::line(
            format!("{label}: predicted 5%"),
            2 * i + 1,
            q05,
        ));
        series.push(Series::line(
            format!("{label}: predicted 95%"),
            2 * i + 1,
            q95,
        ));
        series.push(Series::line(format!("{label}: infinite width"), 6 + i, inf));
        if !beyond.is_empty() {
            series.push(Series::line(
                format!("{label}: chain law beyond its validity (tau > 1/3)"),
                8 + i,
                beyond,
            ));
        }
        series.push(Series::points(
            format!("{label}: measured mean"),
            2 * i,
            pts,
            bars,
        ));
    }
    let note = if outside.is_empty() {
        "all predictions within validity".to_string()
    } else {
        format!(
            "outside validity (off the law's lines): {}",
            outside.join(", ")
        )
    };
    Ok(Figure {
        name: "finite-width".into(),
        title: "Finite-width law of ln GSC(L, 0), depth 50".into(),
        caption: format!(
            "What to see: the measured mean ln GSC(L, 0) follows the finite-width law, not the infinite-width line, and approaches it as n grows; the 5/95% lines show how much single networks scatter. Depth 50, sigma_b = 0; lines: finite-width law (relu: exact route, {spectra} spectra, else the chain beyond the exact route's budget; tanh: the chain law, {spectra} draws, drawn apart where tau > 1/3); points: mean of {samples} nets, 95% CI; {note}; seed {}",
            o.seed
        ),
        x_label: "width n".into(),
        y_label: "ln GSC(L, 0) (nats)".into(),
        log_y: false,
        log_x: false,
        panels: vec![],
        series,
    })
}

/// Batch norm, relu (He) and tanh (sigma_w^2 = 1): the per-layer GSC against batch size. Lines: sqrt(lambda(B))
/// at the BSB1 point (Yang et al. for relu, the sphere quadrature for tanh; theory/batch-norm.md) and the
/// relu B -> infinity limit sqrt(pi/(pi-1)). Points: the measured rate between layers l0 and l1 of each
/// network, (ln GSC(L, l0) - ln GSC(L, l1)) / (l1 - l0), which cancels both ends' transients (the input layer
/// and the top-of-Jacobian factor); mean and standard error over networks.
fn bn_rate(o: &FigureOptions) -> Result<Figure> {
    let (width, depth, l0, l1) = (100, 16, 2, 12);
    let batches: Vec<usize> = if o.quick {
        vec![4, 16, 64]
    } else {
        vec![4, 8, 16, 32, 64, 128, 256]
    };
    let samples = if o.quick { 8 } else { 32 };
    let probes = 4;
    // lambda is defined at integer batch sizes: one point per distinct integer on a log grid.
    let mut grid: Vec<usize> = (0..=60)
        .map(|i| (4.0 * 64f64.powf(i as f64 / 60.0)).round() as usize)
        .collect();
    grid.dedup();
    let last = *batches.last().unwrap_or(&256) as f64;
    let limit = (std::f64::consts::PI / (std::f64::consts::PI - 1.0)).sqrt();
    let mut series = vec![Series::line(
        "relu B -> infinity: sqrt(pi/(pi-1))",
        2,
        vec![(4.0, limit), (last, limit)],
    )];
    for (c, (act, sw2, label)) in [
        (Nonlinearity::Relu, 2.0, "relu"),
        (Nonlinearity::Tanh, 1.0, "tanh"),
    ]
    .into_iter()
    .enumerate()
    {
        let curve: Vec<(f64, f64)> = grid
            .iter()
            .filter_map(|&b| {
                obs::batch_norm_lambda(act, b)
                    .ok()
                    .map(|lambda| (b as f64, lambda.sqrt()))
            })
            .collect();
        let (mut pts, mut bars) = (vec![], vec![]);
        for (j, &b) in batches.iter().enumerate() {
            let net = Network::stack(
                width,
                b,
                depth,
                vec![
                    Op::dense(width, sw2, 0.0),
                    Op::BatchNorm { eps: 1e-5 },
                    Op::Act(act),
                ],
            );
            let seed = o.seed + (100 * c + j) as u64;
            let s = crate::verify::sampled::rate_between(
                &net,
                samples,
                seed,
                Estimator::Probes(probes),
                l0,
                l1,
            )
            .map_err(|e| Error::Unsupported(format!("bn-rate: {e}")))?;
            pts.push((b as f64, s.mean.exp()));
            bars.push((
                (s.mean - Z95 * s.stderr).exp(),
                (s.mean + Z95 * s.stderr).exp(),
            ));
        }
        series.push(Series::line(
            format!("{label}: closed form sqrt(lambda(B))"),
            c,
            curve,
        ));
        series.push(Series::points(
            format!("{label}: Monte Carlo"),
            c,
            pts,
            bars,
        ));
    }
    Ok(Figure {
        name: "bn-rate".into(),
        title: "Batch norm does not remove exploding gradients: rate vs batch size".into(),
        caption: format!(
            "What to see: the per-layer GSC stays above 1 at every batch size (batch norm makes gradients explode, most at small batches), the measured rates follow the closed forms within about 1% from B = 8 on (tanh slightly above: an O(1/n) shift); at B = 4 they fall below them (relu 1.65 vs 1.76, tanh 1.37 vs 1.46, width 100: a gap this figure shows, not hides). Dense-BN-phi (relu sigma_w^2 = 2, tanh 1), width {width}, depth {depth}, rate between layers {l0} and {l1}; {samples} nets x {probes} probes per point, 95% CI; seed {}",
            o.seed
        ),
        x_label: "batch size B (log scale)".into(),
        y_label: "per-layer GSC (ratio per layer)".into(),
        log_y: false,
        log_x: true,
        panels: vec![],
        series,
    })
}

/// Domain collapse against depth: pairwise correlation of layer outputs and sign diversity of the
/// pre-activations, predicted (mean field with finite-batch formulas, theory/collapse.md) and measured
/// (`verify::collapse::collapse_pair`), for relu (He), tanh ordered (1.5, 0.3) and tanh chaotic (2.0, 0).
fn collapse(o: &FigureOptions) -> Result<Figure> {
    let (width, depth, batch) = (256, 50, 16);
    let samples = if o.quick { 4 } else { 16 };
    let configs = [
        (Nonlinearity::Relu, 2.0, 0.0, "relu He"),
        (Nonlinearity::Tanh, 1.5, 0.3, "tanh ordered"),
        (Nonlinearity::Tanh, 2.0, 0.0, "tanh chaotic"),
    ];
    let mut series = Vec::new();
    for (i, &(act, sw2, sb2, label)) in configs.iter().enumerate() {
        let mut net = Network::mlp(MlpSpec {
            act,
            width,
            depth,
            sigma_w2: sw2,
            sigma_b2: sb2,
        })?;
        net.input.batch = batch;
        let (p, m) = crate::verify::collapse::collapse_pair(&net, samples, o.seed + i as u64)?;
        let x = |l: usize| l as f64;
        let mut corr_line = vec![];
        let mut sdiv_line = vec![];
        let (mut corr_pts, mut corr_bars, mut sdiv_pts, mut sdiv_bars) =
            (vec![], vec![], vec![], vec![]);
        for l in 1..=depth {
            corr_line.push((x(l), p.layers[l].c));
            if let Some(v) = p.layers[l].sign_diversity {
                sdiv_line.push((x(l), v));
            }
            // Every other layer for the points, so the error bars stay readable.
            if l % 2 == 0 {
                let c = &m.layers[l].corr;
                corr_pts.push((x(l), c.mean));
                corr_bars.push((c.mean - Z95 * c.stderr, c.mean + Z95 * c.stderr));
                if let Some(s) = &m.layers[l].sign_diversity {
                    sdiv_pts.push((x(l), s.mean));
                    sdiv_bars.push((s.mean - Z95 * s.stderr, s.mean + Z95 * s.stderr));
                }
            }
        }
        series.push(Series::line(
            format!("{label}: correlation"),
            2 * i,
            corr_line,
        ));
        series.push(Series::points(
            format!("{label}: correlation measured"),
            2 * i,
            corr_pts,
            corr_bars,
        ));
        series.push(Series::line(
            format!("{label}: sign diversity"),
            2 * i + 1,
            sdiv_line,
        ));
        series.push(Series::points(
            format!("{label}: sign diversity measured"),
            2 * i + 1,
            sdiv_pts,
            sdiv_bars,
        ));
    }
    Ok(Figure {
        name: "collapse".into(),
        title: "Collapsing domain: correlation and sign diversity vs depth".into(),
        caption: format!(
            "What to see: relu and ordered tanh drive the correlation of different inputs to 1 and the sign diversity to 0 with depth (the domain collapses: the net cannot tell inputs apart), chaotic tanh keeps them apart; the points follow the lines. Width {width}, batch {batch}; lines: mean field with finite-batch formulas; points: {samples} nets, 95% CI; seed {}",
            o.seed
        ),
        x_label: "layer l".into(),
        y_label: "correlation of outputs / sign diversity min(P,N)/(P+N)".into(),
        log_y: false,
        log_x: false,
        panels: vec![],
        series,
    })
}

/// The tanh phase diagram in (sigma_w^2, sigma_b^2) from the closed-form phase analysis: grid points classified as
/// ordered (c* = 1: the domain collapses, per-layer GSC < 1) or chaotic (c* < 1, GSC > 1: gradients
/// explode), and the edge of chaos chi_1 = 1 located between them in each column. Closed form only:
/// the measured counterparts are the collapse and gsc-depth figures.
fn phase(o: &FigureOptions) -> Result<Figure> {
    use crate::verify::consistency::{phase_grid, PhaseOptions};
    let side = if o.quick { 20 } else { 40 };
    let sw2s: Vec<f64> = (0..side)
        .map(|i| 0.5 + 3.5 * i as f64 / (side - 1) as f64)
        .collect();
    let sb2s: Vec<f64> = (0..side)
        .map(|j| 0.5 * j as f64 / (side - 1) as f64)
        .collect();
    let pts = phase_grid(Nonlinearity::Tanh, &sw2s, &sb2s, &PhaseOptions::default());
    let mut ordered = vec![];
    let mut chaotic = vec![];
    let mut edge = vec![];
    for (i, &w) in sw2s.iter().enumerate() {
        let col = &pts[i * side..(i + 1) * side];
        for p in col {
            match p.phase.as_str() {
                "chaotic" | "chaotic-unresolved" => chaotic.push((w, p.sigma_b2)),
                "ordered" | "ordered-scale" | "critical" => ordered.push((w, p.sigma_b2)),
                _ => {}
            }
        }
        // chi_1 decreases with sigma_b^2 at fixed sigma_w^2 for tanh: the edge is where it crosses 1.
        for pair in col.windows(2) {
            if let (Some(a), Some(b)) = (pair[0].chi1, pair[1].chi1) {
                if (a - 1.0) * (b - 1.0) <= 0.0 && a != b {
                    let t = (a - 1.0) / (a - b);
                    edge.push((
                        w,
                        pair[0].sigma_b2 + t * (pair[1].sigma_b2 - pair[0].sigma_b2),
                    ));
                }
            }
        }
    }
    let zero = |v: &Vec<(f64, f64)>| v.iter().map(|&(_, y)| (y, y)).collect::<Vec<_>>();
    let (zo, zc) = (zero(&ordered), zero(&chaotic));
    Ok(Figure {
        name: "phase".into(),
        title: "tanh phase diagram: collapse (ordered) vs explosion (chaotic)".into(),
        caption: format!(
            "What to see: no (sigma_w^2, sigma_b^2) of a tanh net avoids both failures: below the edge-of-chaos line the domain collapses, above it gradients explode; only on the line are both marginal. Closed form, {side} x {side} grid; ordered: c* = 1, per-layer GSC^2 = chi_1 < 1; chaotic: c* < 1, chi_1 > 1; line: chi_1 = 1; seed {} (unused)",
            o.seed
        ),
        x_label: "sigma_w^2 (weight variance x fan-in)".into(),
        y_label: "sigma_b^2 (bias variance)".into(),
        log_y: false,
        log_x: false,
        panels: vec![],
        series: vec![
            Series::points("ordered: domain collapses", 0, ordered, zo),
            Series::points("chaotic: gradients explode", 1, chaotic, zc),
            Series::line("edge of chaos chi_1 = 1", 2, edge),
        ],
    })
}
