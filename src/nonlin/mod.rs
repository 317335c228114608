//! The nonlinearity catalogue: phi, phi', phi'' and what the Gaussian engine needs to integrate them well
//! (where phi is not smooth). Closed-form Gaussian moments live in [`moments`].
//!
//! Derivations and the moment table: `theory/nonlinearities.md`.

pub mod moments;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// SELU constants (Klambauer et al. 2017), to f64 precision; see theory/nonlinearities.md.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;

/// One elementwise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Nonlinearity {
    Linear,
    Relu,
    /// x for x > 0, `slope * x` otherwise.
    LeakyRelu {
        slope: f64,
    },
    Tanh,
    Sigmoid,
    Softplus,
    Selu,
    /// x for x > 0, alpha (e^x - 1) otherwise.
    Elu {
        alpha: f64,
    },
    /// Exact GELU x Phi(x) (erf form, not the tanh approximation).
    Gelu,
    /// x sigma(x), also called swish.
    Silu,
    Erf,
    /// clip(x, -1, 1).
    HardTanh,
}

/// Standard normal CDF to ~1e-16 relative (libm's erfc, unlike statrs, is good to the last bits).
#[inline]
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density.
#[inline]
pub fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[inline]
fn sigmoid(x: f64) -> f64 {
    // Written so neither branch overflows.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Nonlinearity {
    /// Every catalogue entry with its default parameters (leaky slope 0.01, elu alpha 1).
    pub fn catalogue() -> Vec<Nonlinearity> {
        use Nonlinearity::*;
        vec![
            Linear,
            Relu,
            LeakyRelu { slope: 0.01 },
            Tanh,
            Sigmoid,
            Softplus,
            Selu,
            Elu { alpha: 1.0 },
            Gelu,
            Silu,
            Erf,
            HardTanh,
        ]
    }

    #[inline]
    pub fn phi(&self, x: f64) -> f64 {
        use Nonlinearity::*;
        match *self {
            Linear => x,
            Relu => x.max(0.0),
            LeakyRelu { slope } => {
                if x > 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Tanh => x.tanh(),
            Sigmoid => sigmoid(x),
            Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Selu => {
                if x > 0.0 {
                    SELU_LAMBDA * x
                } else {
                    SELU_LAMBDA * SELU_ALPHA * x.exp_m1()
                }
            }
            Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            Gelu => x * norm_cdf(x),
            Silu => x * sigmoid(x),
            Erf => libm::erf(x),
            HardTanh => x.clamp(-1.0, 1.0),
        }
    }

    /// phi'(x); at a kink, the right derivative's convention is irrelevant (measure zero) but fixed: the
    /// left value, matching autodiff frameworks' relu'(0) = 0.
    #[inline]
    pub fn dphi(&self, x: f64) -> f64 {
        use Nonlinearity::*;
        match *self {
            Linear => 1.0,
            Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            LeakyRelu { slope } => {
                if x > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Softplus => sigmoid(x),
            Selu => {
                if x > 0.0 {
                    SELU_LAMBDA
                } else {
                    SELU_LAMBDA * SELU_ALPHA * x.exp()
                }
            }
            Elu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    alpha * x.exp()
                }
            }
            Gelu => norm_cdf(x) + x * norm_pdf(x),
            Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Erf => std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
            HardTanh => {
                if x.abs() < 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// phi''(x) almost everywhere (the Dirac parts at kinks are not included; see [`Self::kinks`]).
    #[inline]
    pub fn d2phi(&self, x: f64) -> f64 {
        use Nonlinearity::*;
        match *self {
            Linear | Relu | LeakyRelu { .. } | HardTanh => 0.0,
            Tanh => {
                let t = x.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
            Softplus => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Selu => {
                if x > 0.0 {
                    0.0
                } else {
                    SELU_LAMBDA * SELU_ALPHA * x.exp()
                }
            }
            Elu { alpha } => {
                if x > 0.0 {
                    0.0
                } else {
                    alpha * x.exp()
                }
            }
            Gelu => norm_pdf(x) * (2.0 - x * x),
            Silu => {
                let s = sigmoid(x);
                let ds = s * (1.0 - s);
                2.0 * ds + x * ds * (1.0 - 2.0 * s)
            }
            Erf => -2.0 * x * std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
        }
    }

    /// Points where phi, phi' or phi'' is not analytic: quadrature rules split there, because a rule across
    /// a kink converges only algebraically.
    pub fn kinks(&self) -> &'static [f64] {
        use Nonlinearity::*;
        match *self {
            Relu | LeakyRelu { .. } | Selu | Elu { .. } => &[0.0],
            HardTanh => &[-1.0, 1.0],
            Linear | Tanh | Sigmoid | Softplus | Gelu | Silu | Erf => &[],
        }
    }

    /// True when phi(a x) = a phi(x) for a > 0, which makes the per-layer GSC exactly 1 (theory/gsc-mlp.md).
    pub fn is_positively_homogeneous(&self) -> bool {
        matches!(
            self,
            Nonlinearity::Linear | Nonlinearity::Relu | Nonlinearity::LeakyRelu { .. }
        )
    }

    /// The name `FromStr` accepts back.
    pub fn name(&self) -> String {
        use Nonlinearity::*;
        match *self {
            Linear => "linear".into(),
            Relu => "relu".into(),
            LeakyRelu { slope } => format!("leaky-relu:{slope}"),
            Tanh => "tanh".into(),
            Sigmoid => "sigmoid".into(),
            Softplus => "softplus".into(),
            Selu => "selu".into(),
            Elu { alpha } => format!("elu:{alpha}"),
            Gelu => "gelu".into(),
            Silu => "silu".into(),
            Erf => "erf".into(),
            HardTanh => "hard-tanh".into(),
        }
    }
}

impl fmt::Display for Nonlinearity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Accepted spellings, for error messages and `--help`.
pub const NONLINEARITY_NAMES: &str =
    "linear, relu, leaky-relu[:SLOPE], tanh, sigmoid, softplus, selu, elu[:ALPHA], gelu, silu (swish), erf, hard-tanh";

impl FromStr for Nonlinearity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use Nonlinearity::*;
        let lower = s.trim().to_ascii_lowercase();
        let (head, param) = match lower.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (lower.clone(), None),
        };
        let parse_param = |default: f64, what: &str| -> Result<f64, String> {
            match &param {
                None => Ok(default),
                Some(p) => {
                    let v: f64 = p
                        .parse()
                        .map_err(|_| format!("'{s}': {what} '{p}' is not a number"))?;
                    if !v.is_finite() {
                        return Err(format!("'{s}': {what} must be finite"));
                    }
                    Ok(v)
                }
            }
        };
        let no_param = |v: Nonlinearity| -> Result<Nonlinearity, String> {
            if param.is_some() {
                Err(format!("'{s}': {head} takes no parameter"))
            } else {
                Ok(v)
            }
        };
        match head.as_str() {
            "linear" | "identity" => no_param(Linear),
            "relu" => no_param(Relu),
            "leaky-relu" | "leaky_relu" | "leakyrelu" | "leaky" => {
                let slope = parse_param(0.01, "slope")?;
                if !(0.0..1.0).contains(&slope) {
                    return Err(format!("'{s}': leaky-relu slope must be in [0, 1)"));
                }
                Ok(LeakyRelu { slope })
            }
            "tanh" => no_param(Tanh),
            "sigmoid" | "logistic" => no_param(Sigmoid),
            "softplus" => no_param(Softplus),
            "selu" => no_param(Selu),
            "elu" => {
                let alpha = parse_param(1.0, "alpha")?;
                if alpha < 0.0 {
                    return Err(format!("'{s}': elu alpha must be >= 0"));
                }
                Ok(Elu { alpha })
            }
            "gelu" => no_param(Gelu),
            "silu" | "swish" => no_param(Silu),
            "erf" => no_param(Erf),
            "hard-tanh" | "hardtanh" | "hard_tanh" => no_param(HardTanh),
            _ => Err(format!(
                "unknown nonlinearity '{s}' (accepted: {NONLINEARITY_NAMES})"
            )),
        }
    }
}

impl TryFrom<String> for Nonlinearity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Nonlinearity> for String {
    fn from(n: Nonlinearity) -> String {
        n.name()
    }
}

impl Nonlinearity {
    /// (phi'(0+), phi'(0-)): near q = 0 the layer behaves like this piecewise-linear map, which is what the
    /// closed-form engine uses when q underflows (deep ordered nets), instead of dividing 0 by 0.
    pub fn slopes_at_zero(&self) -> (f64, f64) {
        use Nonlinearity::*;
        match *self {
            Relu => (1.0, 0.0),
            LeakyRelu { slope } => (1.0, slope),
            Selu => (SELU_LAMBDA, SELU_LAMBDA * SELU_ALPHA),
            Elu { alpha } => (1.0, alpha),
            Linear | Tanh | Sigmoid | Softplus | Gelu | Silu | Erf | HardTanh => {
                let d = self.dphi(0.0);
                (d, d)
            }
        }
    }

    /// (lim phi(x)/x as x -> +inf, as x -> -inf): the positively homogeneous map a layer tends to when q is
    /// astronomically large (deep chaotic nets), again so that the engine never forms inf/inf.
    pub fn slopes_at_infinity(&self) -> (f64, f64) {
        use Nonlinearity::*;
        match *self {
            Linear => (1.0, 1.0),
            Relu | Elu { .. } | Gelu | Silu | Softplus => (1.0, 0.0),
            LeakyRelu { slope } => (1.0, slope),
            Selu => (SELU_LAMBDA, 0.0),
            Tanh | Sigmoid | Erf | HardTanh => (0.0, 0.0),
        }
    }

    /// For bounded phi: (phi(+inf), phi(-inf), integral of phi'^2 over the real line). At huge q,
    /// E[phi^2] -> (phi(+inf)^2 + phi(-inf)^2)/2 and E[phi'^2] ~ integral / sqrt(2 pi q).
    pub fn saturation(&self) -> Option<(f64, f64, f64)> {
        use Nonlinearity::*;
        match *self {
            Tanh => Some((1.0, -1.0, 4.0 / 3.0)),
            Sigmoid => Some((1.0, 0.0, 1.0 / 6.0)),
            Erf => Some((
                1.0,
                -1.0,
                2.0 * std::f64::consts::SQRT_2 / std::f64::consts::PI.sqrt(),
            )),
            HardTanh => Some((1.0, -1.0, 2.0)),
            Linear | Relu | LeakyRelu { .. } | Softplus | Selu | Elu { .. } | Gelu | Silu => None,
        }
    }
}
