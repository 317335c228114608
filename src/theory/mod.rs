//! The closed-form engine: the infinite-width map of each op kind, and what follows for a whole network.
//!
//! State is carried in log space (`log_q`), so depth 10^4 of a geometrically growing or shrinking net
//! neither overflows nor underflows. Derivations: `theory/mean-field.md`, `theory/gsc-mlp.md`.

mod act;
mod batch_mean;
pub mod blocks;
pub mod collapse;
mod dense;
pub mod diagnose;
mod finite_chain;
pub mod finite_width;
pub mod fixed_point;
pub mod isometry;
pub mod norm;
pub mod phase;
pub mod radial;
mod residual;
pub mod sphere;
pub mod table;

pub use fixed_point::{fixed_point, FixedPoint, MlpFixedPoint};

use crate::arch::{Network, Op};
use crate::error::Result;
use serde::Serialize;

/// What the infinite-width engine knows about a signal (a layer output or an intermediate pre-activation),
/// per unit and per input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MfState {
    pub width: usize,
    /// ln of the mean square entry, ln(||f||^2 / n).
    pub log_q: f64,
    /// Mean entry divided by the root mean square: the shared offset that makes relu features non-centred.
    pub mean_ratio: f64,
    /// Correlation between the representations of two inputs, E[f(x1) f(x2)] / E[f^2] (only tracked when
    /// asked: it costs a 2-D quadrature per nonlinearity).
    pub c: f64,
    /// True right after a dense or norm op: entries are centred Gaussians, as a nonlinearity's map requires.
    pub gaussian: bool,
    /// ln of the last pre-activation variance fed to a nonlinearity (the "q" of the mean-field literature).
    pub preact_log_q: Option<f64>,
}

/// One op's effect: the new state and ln of the qm^2 gain ||J_op||_F^2 / dim(in).
#[derive(Clone, Debug)]
pub struct MfStep {
    pub state: MfState,
    pub log_gain2: f64,
}

/// Options for the closed-form engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct MfOptions {
    /// Track the correlation map (needed for collapse predictions; costs 2-D quadrature).
    pub correlation: bool,
    /// Inputs per batch (batch norm's statistics); `predict` sets it from the network's input model.
    pub batch: usize,
    /// Skip the fixed-point analysis (q*, chi_1, depth scales: Newton steps on quadrature derivatives)
    /// when only the layer-by-layer values are wanted, as in a phase grid.
    pub skip_fixed_point: bool,
    /// Ablation: leave out the batch-mean part of the gradient in batch-coupled nets (the top-of-Jacobian
    /// factor and its residual generalisation, theory/batch-norm.md), to see what it contributes.
    pub ignore_batch_mean: bool,
}

/// Each op kind's infinite-width map. Implemented once per kind in this module's files.
pub trait MeanField {
    fn mean_field(&self, s: &MfState, opts: &MfOptions) -> Result<MfStep>;
}

impl MeanField for Op {
    fn mean_field(&self, s: &MfState, opts: &MfOptions) -> Result<MfStep> {
        match self {
            Op::Dense(d) => dense::map(d, s, opts),
            Op::Act(a) => act::map(*a, s, opts),
            Op::LayerNorm { eps } => norm::layer_norm(*eps, s, opts),
            Op::BatchNorm { eps } => norm::batch_norm(*eps, s, opts),
            Op::Residual(r) => residual::map(r, s, opts),
        }
    }
}

/// Runs a list of ops, summing ln qm^2 gains (the chain rule of theory/gsc-mlp.md: qm^2 norms multiply at
/// infinite width).
pub fn map_ops(ops: &[Op], s: &MfState, opts: &MfOptions) -> Result<MfStep> {
    let mut state = *s;
    let mut log_gain2 = 0.0;
    let mut i = 0;
    while i < ops.len() {
        // Batch norm's rate belongs to the (norm, nonlinearity) pair: theory/batch-norm.md.
        let step = match (&ops[i], ops.get(i + 1)) {
            (Op::BatchNorm { eps }, Some(Op::Act(a))) => {
                i += 2;
                norm::batch_norm_act(*eps, *a, &state, opts)?
            }
            (op, _) => {
                i += 1;
                op.mean_field(&state, opts)?
            }
        };
        state = step.state;
        log_gain2 += step.log_gain2;
    }
    Ok(MfStep { state, log_gain2 })
}

/// ln(e^a + e^b) without overflow; -inf stands for an exact zero.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// The closed-form prediction for one layer output f_l.
#[derive(Clone, Debug, Serialize)]
pub struct LayerPrediction {
    pub index: usize,
    pub width: usize,
    /// Pre-activation variance of the layer's last nonlinearity (for l = 0 and for layers without one: the
    /// mean square of f_l). Infinite if it overflows f64; `log_q` is always finite.
    pub q: f64,
    pub log_q: f64,
    /// ||f_l||^2 / n_l.
    pub sq_norm: f64,
    pub log_sq_norm: f64,
    /// ln GSC(L, l).
    pub log_gsc_to_output: f64,
    /// ln GSC(l, 0).
    pub log_gsc_from_input: f64,
    /// ln GSC(l, l-1) (0 for l = 0).
    pub log_gsc_layer: f64,
    /// Correlation of two inputs' representations (present when tracked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
}

/// Least-squares line ln GSC(L, L-l) = ln c + l ln r over l = 0..=L (theory/gsc-mlp.md): the explosion rate r
/// per layer and the intercept c.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ExplosionFit {
    pub log_r: f64,
    pub log_c: f64,
    pub r: f64,
    pub c: f64,
}

/// Everything the closed-form engine says about a network.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub layers: Vec<LayerPrediction>,
    pub fit: ExplosionFit,
    /// Present when the network is a uniform MLP (every layer the same dense + nonlinearity at one width):
    /// the fixed point of its length map and the depth scales there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_point: Option<MlpFixedPoint>,
    /// Heuristics used and assumptions violated, one sentence each (empty when every formula applied is
    /// exact at infinite width).
    pub notes: Vec<String>,
}

/// Fits ln y_l = a + b l by least squares over l = 0..n-1 and returns (a, b).
pub fn fit_line(ys: &[f64]) -> (f64, f64) {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return (ys.first().copied().unwrap_or(0.0), 0.0);
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    let b = sxy / sxx;
    (my - b * mx, b)
}

/// Initial state for the input model: ||x||^2 = n_0 exactly, so log_q = 0; inputs of the batch have
/// pairwise correlation `input.correlation`.
pub fn input_state(net: &Network) -> MfState {
    // Real data: its empirical mean square and mean pairwise correlation (theory/collapse.md).
    let (log_q, c) = match &net.input.data {
        // The correlation is the mean pairwise cosine, the statistic `collapse` measures: with inputs of
        // unequal norms the mean dot product over the mean square is a different number (theory/collapse.md).
        Some(d) => {
            let (q0, _) = d.moments();
            (q0.ln(), collapse::mean_pairwise_cosine_of(&d.vectors))
        }
        None => (0.0, net.input.correlation),
    };
    MfState {
        width: net.input.width,
        log_q,
        mean_ratio: 0.0,
        c,
        gaussian: false,
        preact_log_q: None,
    }
}

/// The closed-form prediction for `net` at infinite width.
pub fn predict(net: &Network, opts: &MfOptions) -> Result<Prediction> {
    net.validate()?;
    let opts = &MfOptions {
        batch: net.input.batch,
        ..*opts
    };
    let mut states = vec![input_state(net)];
    let mut log_gains = vec![0.0];
    for layer in &net.layers {
        let prev = *states.last().expect("non-empty");
        // The pre-activation q is reported per layer, so forget the previous layer's.
        let start = MfState {
            preact_log_q: None,
            ..prev
        };
        let step = map_ops(&layer.ops, &start, opts)?;
        states.push(step.state);
        log_gains.push(step.log_gain2);
    }
    let depth = net.depth();
    // ln ||f_l||^2 = log_q + ln n_l; ln GSC^2(k, l) = sum of gains + ln||f_l||^2 - ln||f_k||^2.
    let log_norm2: Vec<f64> = states
        .iter()
        .map(|s| s.log_q + (s.width as f64).ln())
        .collect();
    let mut cum = vec![0.0; depth + 1];
    for l in 1..=depth {
        cum[l] = cum[l - 1] + log_gains[l];
    }
    let log_gsc = |k: usize, l: usize| 0.5 * (cum[k] - cum[l] + log_norm2[l] - log_norm2[k]);
    // Batch-coupled nets: the batch-mean part of the gradient at each Jacobian's top (batch_mean.rs).
    let mut to_output = vec![0.0; depth + 1];
    let mut from_input = vec![0.0; depth + 1];
    let mut layer_top = vec![0.0; depth + 1];
    let rules = if opts.ignore_batch_mean {
        None
    } else {
        batch_mean::rules(net, opts.batch, &log_gains)
    };
    if let Some(rules) = rules {
        batch_mean::walk_down(&rules, depth, opts.batch, true, |l, c| to_output[l] = c);
        for k in 1..=depth {
            batch_mean::walk_down(&rules, k, opts.batch, true, |l, c| {
                if l == 0 {
                    from_input[k] = c;
                }
                if l + 1 == k {
                    layer_top[k] = c;
                }
            });
        }
    }
    let layers: Vec<LayerPrediction> = (0..=depth)
        .map(|l| {
            let s = &states[l];
            let log_q = s.preact_log_q.unwrap_or(s.log_q);
            LayerPrediction {
                index: l,
                width: s.width,
                q: log_q.exp(),
                log_q,
                sq_norm: s.log_q.exp(),
                log_sq_norm: s.log_q,
                log_gsc_to_output: log_gsc(depth, l) + to_output[l],
                log_gsc_from_input: log_gsc(l, 0) + from_input[l],
                log_gsc_layer: if l == 0 {
                    0.0
                } else {
                    log_gsc(l, l - 1) + layer_top[l]
                },
                c: opts.correlation.then_some(s.c),
            }
        })
        .collect();
    let ys: Vec<f64> = (0..=depth)
        .map(|l| log_gsc(depth, depth - l) + to_output[depth - l])
        .collect();
    let (log_c, log_r) = fit_line(&ys);
    let fixed_point = if opts.skip_fixed_point {
        None
    } else {
        fixed_point::for_network(net)?
    };
    Ok(Prediction {
        layers,
        fit: ExplosionFit {
            log_r,
            log_c,
            r: log_r.exp(),
            c: log_c.exp(),
        },
        fixed_point,
        notes: blocks::assumptions(net, opts)?,
    })
}
