//! The network description: the one thing both engines read.
//!
//! A [`Network`] is an input model followed by a list of [`Layer`]s. Layer `l` maps f_{l-1} to f_l, and the
//! GSC is reported between layer outputs (f_0 = x is the input). A layer is a short list of [`Op`]s, so a
//! plain MLP layer is `[Dense, Act]`, a batch-normalised one `[Dense, BatchNorm, Act]`, and a ResNet block
//! `[Residual { branch: [Dense, Act, Dense] }]`. Each op kind has exactly one implementation in each engine
//! (`theory::MeanField`, `montecarlo::Sample`), so anything written here can be both predicted and measured.

mod data;
mod file;
pub mod names;

pub use data::InputData;

pub use file::{from_toml_str, from_toml_str_named, load_file, load_file_named, to_toml_string};
pub use names::{Field, Layout, OpNames, ParamNames};

use crate::error::{Error, Result};
use crate::nonlin::Nonlinearity;
use serde::{Deserialize, Serialize};

/// How a weight matrix is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// i.i.d. N(0, sigma_w^2 / fan_in).
    #[default]
    Gaussian,
    /// sigma_w * sqrt(max(1, fan_out/fan_in))... see theory/orthogonal.md: W = sigma_w * Q with Q having
    /// orthonormal rows or columns (Haar), scaled so E||W x||^2 = sigma_w^2 (fan_out/fan_in) ||x||^2 as for
    /// the Gaussian case.
    Orthogonal,
    /// Looks-linear (Balduzzi et al. 2017): W = [[W0, -W0], [-W0, W0]] with W0 = sqrt(sigma_w^2 / 2) times a
    /// Haar-orthogonal n/2 x n/2 matrix. Fed relu features [relu(u), relu(-u)] it computes [W0 u, -W0 u],
    /// so a relu net is exactly linear (and, at sigma_w^2 = 2, orthogonal) in u at initialisation
    /// (theory/orthogonal.md). Square layers of even width, fed by the input or a relu.
    LooksLinear,
}

/// A fully connected layer h = W x + b.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    pub width: usize,
    pub sigma_w2: f64,
    #[serde(default)]
    pub sigma_b2: f64,
    #[serde(default)]
    pub init: Init,
}

/// The skip path of a residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    #[default]
    Identity,
    /// A fresh Haar-orthogonal matrix per block.
    Orthogonal,
}

/// f = s(x) + alpha * rho(x), with rho a stack of ops ending at the input's width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residual {
    #[serde(default)]
    pub skip: Skip,
    #[serde(default = "one")]
    pub alpha: f64,
    pub branch: Vec<Op>,
}

fn one() -> f64 {
    1.0
}

fn default_eps() -> f64 {
    1e-5
}

/// One primitive operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Dense(Dense),
    Act(Nonlinearity),
    /// Normalise each input's vector across units: (h - mean) / sqrt(var + eps), no affine parameters.
    LayerNorm {
        #[serde(default = "default_eps")]
        eps: f64,
    },
    /// Normalise each unit across the batch: (h - mean_b) / sqrt(var_b + eps), biased variance, no affine
    /// parameters. The GSC of a network with batch norm is that of the whole batch map.
    BatchNorm {
        #[serde(default = "default_eps")]
        eps: f64,
    },
    Residual(Residual),
}

/// The output f_l of one layer, computed from f_{l-1} by a list of ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub ops: Vec<Op>,
}

/// What the network is fed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputModel {
    /// n_0.
    pub width: usize,
    /// Number of inputs fed together (batch norm needs B >= 2; collapse metrics use the batch).
    #[serde(default = "one_usize")]
    pub batch: usize,
    /// Pairwise correlation of the inputs in the batch, in [0, 1).
    #[serde(default)]
    pub correlation: f64,
    /// Real input vectors (file key `data = { path = "x.npy" }`): replaces the Gaussian model; `width` must be
    /// their dimension and `batch` at most their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<InputData>,
}

fn one_usize() -> usize {
    1
}

impl InputModel {
    /// x ~ N(0, I_n) rescaled to ||x||^2 = n, one input.
    pub fn sphere(width: usize) -> Self {
        InputModel {
            width,
            batch: 1,
            correlation: 0.0,
            data: None,
        }
    }
}

/// A network at random initialisation: an input model and a stack of layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub input: InputModel,
    pub layers: Vec<Layer>,
}

/// The plain MLP the CLI flags describe: `depth` layers of `[Dense(width), Act(act)]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpSpec {
    pub act: Nonlinearity,
    pub width: usize,
    pub depth: usize,
    pub sigma_w2: f64,
    pub sigma_b2: f64,
}

impl MlpSpec {
    /// The conventional weight variance for `act`: He (2/(1+a^2)) for the relu family, 1 otherwise (LeCun,
    /// which is also SELU's self-normalising choice). A default, not a recommendation.
    pub fn default_sigma_w2(act: Nonlinearity) -> f64 {
        match act {
            Nonlinearity::Relu => 2.0,
            Nonlinearity::LeakyRelu { slope } => 2.0 / (1.0 + slope * slope),
            _ => 1.0,
        }
    }
}

impl Network {
    pub fn mlp(spec: MlpSpec) -> Result<Network> {
        Network::mlp_widths(
            spec.width,
            &vec![spec.width; spec.depth],
            spec.act,
            spec.sigma_w2,
            spec.sigma_b2,
        )
    }

    /// An MLP with input width `n0` and hidden/output widths `widths` (one per layer).
    pub fn mlp_widths(
        n0: usize,
        widths: &[usize],
        act: Nonlinearity,
        sigma_w2: f64,
        sigma_b2: f64,
    ) -> Result<Network> {
        let net = Network {
            input: InputModel::sphere(n0),
            layers: widths
                .iter()
                .map(|&w| Layer {
                    ops: vec![
                        Op::Dense(Dense {
                            width: w,
                            sigma_w2,
                            sigma_b2,
                            init: Init::Gaussian,
                        }),
                        Op::Act(act),
                    ],
                })
                .collect(),
        };
        net.validate()?;
        Ok(net)
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// n_l for l = 0..=L.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input.width];
        let mut n = self.input.width;
        for layer in &self.layers {
            n = ops_out_width(&layer.ops, n);
            w.push(n);
        }
        w
    }

    /// True when some op mixes the inputs of a batch (batch norm): then the Jacobian, and so the GSC, is of
    /// the whole batch map, and dim f_l = n_l * B.
    pub fn batch_coupled(&self) -> bool {
        fn any(ops: &[Op]) -> bool {
            ops.iter().any(|op| match op {
                Op::BatchNorm { .. } => true,
                Op::Residual(r) => any(&r.branch),
                _ => false,
            })
        }
        self.layers.iter().any(|l| any(&l.ops))
    }

    /// True when every layer is positively homogeneous of degree one (bias-free dense maps, linear /
    /// relu / leaky-relu, residual blocks of those): f(a x) = a f(x) for a > 0, so every Jacobian is
    /// unchanged by rescaling the input. The Monte Carlo engine then rescales layer outputs by powers of
    /// two (exact in floating point) and keeps the scale in log space, so a deep net whose outputs would
    /// leave the f64 range is still measured. Norm layers are excluded: their Jacobian scales as 1/a.
    pub fn scale_equivariant(&self) -> bool {
        fn all(ops: &[Op]) -> bool {
            ops.iter().all(|op| match op {
                Op::Dense(d) => d.sigma_b2 == 0.0,
                Op::Act(phi) => phi.is_positively_homogeneous(),
                Op::Residual(r) => all(&r.branch),
                Op::LayerNorm { .. } | Op::BatchNorm { .. } => false,
            })
        }
        self.layers.iter().all(|l| all(&l.ops))
    }

    /// Checks everything both engines rely on, so neither has to: positive widths, finite non-negative
    /// variances, nonlinearities fed by Gaussian pre-activations, residual branches that return to the
    /// input's width.
    pub fn validate(&self) -> Result<()> {
        if self.input.width == 0 {
            return Err(Error::param("--width (input width)", 0, "an integer >= 1"));
        }
        if self.input.batch == 0 {
            return Err(Error::param("--batch", 0, "an integer >= 1"));
        }
        let c = self.input.correlation;
        if !(0.0..1.0).contains(&c) {
            return Err(Error::param("input correlation", c, "a number in [0, 1)"));
        }
        if let Some(d) = &self.input.data {
            if d.dim() != self.input.width {
                return Err(Error::Architecture(format!(
                    "input data {} has dimension {}, the input width is {}",
                    d.path,
                    d.dim(),
                    self.input.width
                )));
            }
            if d.vectors.len() < self.input.batch {
                return Err(Error::param(
                    "--batch",
                    self.input.batch,
                    format!("at most the {} vectors in {}", d.vectors.len(), d.path),
                ));
            }
        }
        if self.layers.is_empty() {
            return Err(Error::param("--depth", 0, "an integer >= 1"));
        }
        let mut n = self.input.width;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.ops.is_empty() {
                return Err(Error::Architecture(format!("layer {} has no ops", i + 1)));
            }
            n = validate_ops(&layer.ops, n, &format!("layer {}", i + 1), false)?;
        }
        check_looks_linear(&self.layers)?;
        if self.batch_coupled() && self.input.batch < 2 {
            return Err(Error::param(
                "--batch",
                self.input.batch,
                "an integer >= 2 for a network with batch norm",
            ));
        }
        Ok(())
    }
}

/// Looks-linear layers need mirrored input pairs, which only the input (by symmetry in distribution) and
/// relu features [relu(u), relu(-u)] provide with the Gaussian layer's mean-field map.
fn check_looks_linear(layers: &[Layer]) -> Result<()> {
    fn in_branch(ops: &[Op]) -> bool {
        ops.iter().any(|op| match op {
            Op::Dense(d) => d.init == Init::LooksLinear,
            Op::Residual(r) => in_branch(&r.branch),
            _ => false,
        })
    }
    let mut prev_ok = true; // the network input
    for (i, layer) in layers.iter().enumerate() {
        for op in &layer.ops {
            match op {
                Op::Dense(d) => {
                    if d.init == Init::LooksLinear && !prev_ok {
                        return Err(Error::Architecture(format!(
                            "layer {}: looks-linear init must be fed by the input or a relu (its pairing [W0, -W0] is exact for relu features)",
                            i + 1
                        )));
                    }
                    prev_ok = false;
                }
                Op::Act(a) => prev_ok = *a == Nonlinearity::Relu,
                Op::Residual(r) => {
                    if in_branch(&r.branch) {
                        return Err(Error::Architecture(format!(
                            "layer {}: looks-linear init inside a residual branch is not supported",
                            i + 1
                        )));
                    }
                    prev_ok = false;
                }
                _ => prev_ok = false,
            }
        }
    }
    Ok(())
}

fn ops_out_width(ops: &[Op], mut n: usize) -> usize {
    for op in ops {
        if let Op::Dense(d) = op {
            n = d.width;
        }
    }
    n
}

fn check_variance(what: &str, v: f64, strictly_positive: bool) -> Result<()> {
    let ok = v.is_finite() && if strictly_positive { v > 0.0 } else { v >= 0.0 };
    if ok {
        Ok(())
    } else {
        let accepted = if strictly_positive {
            "a finite number > 0"
        } else {
            "a finite number >= 0"
        };
        Err(Error::param(what, v, accepted))
    }
}

/// Returns the output width. `gaussian_in` says whether the incoming signal is a fresh Gaussian
/// pre-activation (after a dense or norm op), which a nonlinearity needs for its mean-field map.
fn validate_ops(ops: &[Op], mut n: usize, where_: &str, _in_branch: bool) -> Result<usize> {
    let mut gaussian = false;
    for op in ops {
        match op {
            Op::Dense(d) => {
                if d.width == 0 {
                    return Err(Error::param(
                        format!("{where_}: dense width"),
                        0,
                        "an integer >= 1",
                    ));
                }
                check_variance("--sigma-w2", d.sigma_w2, true)?;
                check_variance("--sigma-b2", d.sigma_b2, false)?;
                if d.init == Init::LooksLinear && (d.width != n || !n.is_multiple_of(2)) {
                    return Err(Error::Architecture(format!(
                        "{where_}: looks-linear init needs a square layer of even width (width {} from {n})",
                        d.width
                    )));
                }
                if d.init == Init::Orthogonal && d.width != n {
                    // Rectangular Haar matrices are fine for sampling, but the closed forms of
                    // theory/orthogonal.md are for square layers only.
                    return Err(Error::Architecture(format!(
                        "{where_}: orthogonal init needs a square layer (width {} from {n})",
                        d.width
                    )));
                }
                n = d.width;
                gaussian = true;
            }
            Op::Act(_) => {
                if !gaussian {
                    return Err(Error::Architecture(format!(
                        "{where_}: a nonlinearity must follow a dense or norm op (its mean-field map needs Gaussian pre-activations)"
                    )));
                }
                gaussian = false;
            }
            Op::LayerNorm { eps } | Op::BatchNorm { eps } => {
                check_variance("norm eps", *eps, false)?;
                if matches!(op, Op::LayerNorm { .. }) && n < 2 {
                    return Err(Error::Architecture(format!(
                        "{where_}: layer norm needs width >= 2"
                    )));
                }
                gaussian = true;
            }
            Op::Residual(r) => {
                if !r.alpha.is_finite() {
                    return Err(Error::param("residual alpha", r.alpha, "a finite number"));
                }
                if r.branch.is_empty() {
                    return Err(Error::Architecture(format!(
                        "{where_}: residual branch is empty"
                    )));
                }
                let out = validate_ops(&r.branch, n, &format!("{where_} (residual branch)"), true)?;
                if out != n {
                    return Err(Error::Architecture(format!(
                        "{where_}: residual branch ends at width {out}, the skip carries width {n}"
                    )));
                }
                gaussian = false;
            }
        }
    }
    Ok(n)
}
