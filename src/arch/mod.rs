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
    /// i.i.d. N(0, sigma_w^2 / fan_in); biases N(0, sigma_b^2).
    #[default]
    Gaussian,
    /// i.i.d. uniform on [-a, a] with a = sqrt(3 sigma_w^2 / fan_in), the same variance as `Gaussian`;
    /// biases uniform with variance sigma_b^2. Mean field sees only the variance, so every infinite-width
    /// result is that of `Gaussian`; the finite-width law is not (it uses the Gaussian fourth moment, and a
    /// uniform entry has kurtosis 9/5 instead of 3: theory/initialisations.md).
    Uniform,
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
    #[serde(deserialize_with = "file_width")]
    pub width: usize,
    /// In a file it may be left out: the command line's default for the nonlinearity that follows
    /// (filled in by `file.rs`; NaN until then).
    #[serde(default = "nan", deserialize_with = "file_positive")]
    pub sigma_w2: f64,
    #[serde(default, deserialize_with = "file_nonneg")]
    pub sigma_b2: f64,
    /// In a file it may also name a framework scheme (`he`, `xavier`, ...): the distribution is taken here,
    /// the variances it fixes are set by `file.rs`, which knows the fans.
    #[serde(default, deserialize_with = "file_init")]
    pub init: Init,
}

fn nan() -> f64 {
    f64::NAN
}

// Range checks while deserialising an architecture file, so that the error carries the value's line,
// column and TOML path (file.rs). `validate` repeats them for networks built in code.
fn checked<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + std::fmt::Display>(
    d: D,
    ok: impl Fn(&T) -> bool,
    accepted: &str,
) -> std::result::Result<T, D::Error> {
    let v = T::deserialize(d)?;
    if ok(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not accepted (expected {accepted})"
        )))
    }
}

/// A scheme name (any of `--init`'s, aliases included) read from a file.
pub(crate) fn file_scheme<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<InitScheme, D::Error> {
    let v = String::deserialize(d)?;
    v.parse::<InitScheme>()
        .map_err(|e| serde::de::Error::custom(format!("unknown init `{v}` ({e})")))
}

fn file_init<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Init, D::Error> {
    file_scheme(d).map(InitScheme::distribution)
}

fn file_width<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    checked(d, |&v: &usize| v >= 1, "an integer >= 1")
}

fn file_positive<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    checked(
        d,
        |&v: &f64| v.is_finite() && v > 0.0,
        "a finite number > 0",
    )
}

fn file_nonneg<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    checked(
        d,
        |&v: &f64| v.is_finite() && v >= 0.0,
        "a finite number >= 0",
    )
}

fn file_finite<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    checked(d, |&v: &f64| v.is_finite(), "a finite number")
}

fn file_correlation<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    checked(d, |&v: &f64| (0.0..1.0).contains(&v), "a number in [0, 1)")
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
    #[serde(default = "one", deserialize_with = "file_finite")]
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
        #[serde(default = "default_eps", deserialize_with = "file_nonneg")]
        eps: f64,
    },
    /// Normalise each unit across the batch: (h - mean_b) / sqrt(var_b + eps), biased variance, no affine
    /// parameters. The GSC of a network with batch norm is that of the whole batch map.
    BatchNorm {
        #[serde(default = "default_eps", deserialize_with = "file_nonneg")]
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
    #[serde(deserialize_with = "file_width")]
    pub width: usize,
    /// Number of inputs fed together (batch norm needs B >= 2; collapse metrics use the batch).
    #[serde(default = "one_usize", deserialize_with = "file_width")]
    pub batch: usize,
    /// Pairwise correlation of the inputs in the batch, in [0, 1).
    #[serde(default, deserialize_with = "file_correlation")]
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
            Nonlinearity::Linear
            | Nonlinearity::Tanh
            | Nonlinearity::Sigmoid
            | Nonlinearity::Softplus
            | Nonlinearity::Selu
            | Nonlinearity::Elu { .. }
            | Nonlinearity::Gelu
            | Nonlinearity::Silu
            | Nonlinearity::Erf
            | Nonlinearity::HardTanh => 1.0,
        }
    }
}

/// The initialisations frameworks use, as (distribution, sigma_w^2, sigma_b^2) of this crate's
/// parametrisation W_ij with variance sigma_w^2 / fan_in (theory/initialisations.md).
///
/// | scheme | distribution | sigma_w^2 | bias variance |
/// |---|---|---|---|
/// | `he` / `he-uniform` | normal / uniform | 2 | given |
/// | `xavier` / `xavier-uniform` (Glorot) | normal / uniform | 2 fan_in / (fan_in + fan_out) | given |
/// | `lecun` / `lecun-uniform` | normal / uniform | 1 | given |
/// | `pytorch-default` (`nn.Linear`) | uniform U(-1/sqrt(fan_in), 1/sqrt(fan_in)) | 1/3 | 1 / (3 fan_in) |
/// | `gaussian` / `uniform` / `orthogonal` / `looks-linear` | as named | given (default per nonlinearity) | given |
///
/// The first four fix the scale (so they do not combine with an explicit sigma_w^2); the last four are
/// distributions only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitScheme {
    He,
    HeUniform,
    Xavier,
    XavierUniform,
    Lecun,
    LecunUniform,
    PytorchDefault,
    Gaussian,
    Uniform,
    Orthogonal,
    LooksLinear,
}

impl InitScheme {
    pub const NAMES: &'static str = "he, he-uniform, xavier, xavier-uniform, lecun, lecun-uniform, pytorch-default, gaussian, uniform, orthogonal, looks-linear";

    /// True when the scheme fixes sigma_w^2 itself.
    pub fn fixes_scale(self) -> bool {
        use InitScheme::*;
        matches!(
            self,
            He | HeUniform | Xavier | XavierUniform | Lecun | LecunUniform | PytorchDefault
        )
    }

    /// True when the scheme fixes the bias variance (PyTorch's default draws biases too).
    pub fn fixes_bias(self) -> bool {
        self == InitScheme::PytorchDefault
    }

    pub fn distribution(self) -> Init {
        use InitScheme::*;
        match self {
            He | Xavier | Lecun | Gaussian => Init::Gaussian,
            HeUniform | XavierUniform | LecunUniform | PytorchDefault | Uniform => Init::Uniform,
            Orthogonal => Init::Orthogonal,
            LooksLinear => Init::LooksLinear,
        }
    }

    /// sigma_w^2 of a layer with these fans, or None when the scheme leaves the scale to the user.
    pub fn sigma_w2(self, fan_in: usize, fan_out: usize) -> Option<f64> {
        use InitScheme::*;
        match self {
            He | HeUniform => Some(2.0),
            // Glorot & Bengio (2010): Var W = 2 / (fan_in + fan_out).
            Xavier | XavierUniform => Some(2.0 * fan_in as f64 / (fan_in + fan_out) as f64),
            Lecun | LecunUniform => Some(1.0),
            // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) has variance 1 / (3 fan_in).
            PytorchDefault => Some(1.0 / 3.0),
            Gaussian | Uniform | Orthogonal | LooksLinear => None,
        }
    }

    /// The bias variance the scheme fixes, if it does.
    pub fn sigma_b2(self, fan_in: usize) -> Option<f64> {
        (self == InitScheme::PytorchDefault).then(|| 1.0 / (3.0 * fan_in as f64))
    }

    pub fn name(self) -> &'static str {
        use InitScheme::*;
        match self {
            He => "he",
            HeUniform => "he-uniform",
            Xavier => "xavier",
            XavierUniform => "xavier-uniform",
            Lecun => "lecun",
            LecunUniform => "lecun-uniform",
            PytorchDefault => "pytorch-default",
            Gaussian => "gaussian",
            Uniform => "uniform",
            Orthogonal => "orthogonal",
            LooksLinear => "looks-linear",
        }
    }
}

impl std::str::FromStr for InitScheme {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        use InitScheme::*;
        let all = [
            He,
            HeUniform,
            Xavier,
            XavierUniform,
            Lecun,
            LecunUniform,
            PytorchDefault,
            Gaussian,
            Uniform,
            Orthogonal,
            LooksLinear,
        ];
        let t = s.trim().to_ascii_lowercase();
        let t = match t.as_str() {
            "glorot" => "xavier",
            "glorot-uniform" => "xavier-uniform",
            "kaiming" => "he",
            "kaiming-uniform" => "he-uniform",
            other => other,
        };
        all.into_iter()
            .find(|i| i.name() == t)
            .ok_or_else(|| format!("expected one of {}", InitScheme::NAMES))
    }
}

impl Op {
    /// A Gaussian dense op of `width` outputs: the one builder of it, so a new `Dense` field is filled in
    /// one place.
    pub fn dense(width: usize, sigma_w2: f64, sigma_b2: f64) -> Op {
        Op::Dense(Dense {
            width,
            sigma_w2,
            sigma_b2,
            init: Init::Gaussian,
        })
    }

    /// A residual block x + alpha * branch(x) with an identity skip.
    pub fn residual(alpha: f64, branch: Vec<Op>) -> Op {
        Op::Residual(Residual {
            skip: Skip::Identity,
            alpha,
            branch,
        })
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

    /// A network from an input width and one op list per layer, on an uncorrelated Gaussian input of
    /// `input_width` x `batch` (widths may differ from layer to layer).
    pub fn from_layers(input_width: usize, batch: usize, layers: Vec<Vec<Op>>) -> Network {
        Network {
            input: InputModel {
                width: input_width,
                batch,
                correlation: 0.0,
                data: None,
            },
            layers: layers.into_iter().map(|ops| Layer { ops }).collect(),
        }
    }

    /// `depth` identical layers of `ops` on an uncorrelated Gaussian input of `width` x `batch`.
    pub fn stack(width: usize, batch: usize, depth: usize, ops: Vec<Op>) -> Network {
        Network::from_layers(width, batch, vec![ops; depth])
    }

    /// An MLP with input width `n0` and hidden/output widths `widths` (one per layer).
    pub fn mlp_widths(
        n0: usize,
        widths: &[usize],
        act: Nonlinearity,
        sigma_w2: f64,
        sigma_b2: f64,
    ) -> Result<Network> {
        Network::mlp_init(
            n0,
            widths,
            act,
            InitScheme::Gaussian,
            Some(sigma_w2),
            sigma_b2,
        )
    }

    /// An MLP initialised by `scheme`: its sigma_w^2 (per layer, from the fans) where it fixes one, else
    /// `sigma_w2` (default [`MlpSpec::default_sigma_w2`]); its bias variance where it fixes one, else
    /// `sigma_b2`. Giving a sigma_w^2 to a scheme that fixes it is an error naming both.
    pub fn mlp_init(
        n0: usize,
        widths: &[usize],
        act: Nonlinearity,
        scheme: InitScheme,
        sigma_w2: Option<f64>,
        sigma_b2: f64,
    ) -> Result<Network> {
        if scheme.fixes_scale() && sigma_w2.is_some() {
            return Err(Error::Architecture(format!(
                "--sigma-w2 and --init {} both set the weight variance: give one",
                scheme.name()
            )));
        }
        let mut fan_in = n0;
        let mut layers = Vec::with_capacity(widths.len());
        for &w in widths {
            let sw2 = scheme
                .sigma_w2(fan_in, w)
                .or(sigma_w2)
                .unwrap_or_else(|| MlpSpec::default_sigma_w2(act));
            let sb2 = scheme.sigma_b2(fan_in).unwrap_or(sigma_b2);
            layers.push(Layer {
                ops: vec![
                    Op::Dense(Dense {
                        width: w,
                        sigma_w2: sw2,
                        sigma_b2: sb2,
                        init: scheme.distribution(),
                    }),
                    Op::Act(act),
                ],
            });
            fan_in = w;
        }
        let net = Network {
            input: InputModel::sphere(n0),
            layers,
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
                Op::Dense(_) | Op::Act(_) | Op::LayerNorm { .. } => false,
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
            Op::Act(_) | Op::LayerNorm { .. } | Op::BatchNorm { .. } => false,
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
                Op::LayerNorm { .. } | Op::BatchNorm { .. } => prev_ok = false,
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
