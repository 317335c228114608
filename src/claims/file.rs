//! Claims as data: the TOML format of the built-in registry (`claims/registry.toml`, embedded in the
//! binary) and of a user's `gradscale audit --claims FILE`. The format is documented in
//! theory/verification.md ("Claim files"), with examples in examples/claims/.
//!
//! A claim names a network (an MLP in one line, an architecture file, or an inline architecture), an
//! observable, a relation and, where needed, a value; or, for the measurements that are not (yet) generic,
//! a built-in test by name.

use super::{AuditOptions, Claim, ClaimTest, Evidence, Source};
use crate::arch::{MlpSpec, Network};
use crate::error::{Error, Result};
pub use crate::verify::Relation;
use crate::verify::{self, Estimator, TestPolicy};
use crate::Nonlinearity;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    claim: Vec<FileClaim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileClaim {
    id: String,
    statement: String,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    theory: String,
    #[serde(default)]
    control: bool,
    #[serde(default)]
    untestable: String,
    test: Option<String>,
    network: Option<toml::Table>,
    observable: Option<String>,
    relation: Option<String>,
    value: Option<f64>,
    bias_bound: Option<f64>,
    samples: Option<usize>,
    seed: Option<u64>,
    probes: Option<usize>,
    figure: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMlp {
    act: Nonlinearity,
    width: usize,
    depth: usize,
    sigma_w2: f64,
    #[serde(default)]
    sigma_b2: f64,
}

/// What a generic claim measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observable {
    /// ln GSC(L, 0) of the whole network.
    LnGsc,
    /// ||f_L||^2 / n_L at the output.
    SqNorm,
    /// Every layer's ln GSC(L, l), ln GSC(k, 0) and ||f_l||^2/n_l (`verify::check`); relation `= closed-form`.
    EveryLayer,
}

/// A claim stated as data: network, observable, relation, sample size, seed offset.
#[derive(Clone, Debug)]
pub struct Spec {
    pub network: Network,
    /// How the network was given, for the report.
    pub network_label: String,
    pub observable: Observable,
    pub relation: Relation,
    /// Full-mode sample count (quick mode: a quarter, at least 16).
    pub samples: usize,
    /// Offset added to the audit seed.
    pub seed: u64,
    pub estimator: Estimator,
    /// Finite-width bias bound for equality relations; None: kappa * sum of 1/n over the layers spanned
    /// (`verify::CheckPolicy`), relative to the value for ||f_L||^2/n.
    pub bias_bound: Option<f64>,
    pub figure: Option<String>,
}

impl Spec {
    /// Measures the observable and tests the relation.
    pub fn run(&self, o: &AuditOptions) -> Result<Evidence> {
        let net = &self.network;
        let seed = o.seed.wrapping_add(self.seed);
        let samples = o.samples(self.samples);
        if self.observable == Observable::EveryLayer {
            let e =
                super::architecture_check(net, &self.network_label, samples, seed, self.estimator)?;
            return Ok(self.with_figure(e));
        }
        let depth = net.depth();
        let obs: Box<dyn crate::verify::Observable> = match self.observable {
            Observable::LnGsc => Box::new(verify::observable::LnGscToOutput {
                layer: 0,
                estimator: self.estimator,
            }),
            Observable::SqNorm => Box::new(verify::observable::SqNorm {
                layer: depth,
                estimator: self.estimator,
            }),
            Observable::EveryLayer => unreachable!("handled above"),
        };
        let mut policy = TestPolicy::new(samples, seed);
        policy.bias_bound = self.bias_bound;
        let t = verify::test(net, obs.as_ref(), self.relation, &policy)?;
        let s = &t.sampled.summary;
        let what = obs.name();
        let rel = match self.relation {
            Relation::Greater(v) => format!("> {v}"),
            Relation::Less(v) => format!("< {v}"),
            Relation::Equals(v) => format!("= {v}, bias bound {:.3e}", t.evidence.bias_bound),
            Relation::EqualsClosedForm => format!(
                "= closed form {:.6}, bias bound {:.3e}",
                t.evidence.prediction, t.evidence.bias_bound
            ),
        };
        let mut e = t.evidence.clone();
        e.detail = format!(
            "{}: {what} {rel}; measured {:.4} +- {:.4} over {} nets ({} degenerate); seed {seed}",
            self.network_label, s.mean, s.stderr, t.sampled.samples, t.sampled.degenerate
        );
        Ok(self.with_figure(e))
    }

    fn with_figure(&self, e: Evidence) -> Evidence {
        match &self.figure {
            Some(f) => e.with_figure(f),
            None => e,
        }
    }
}

/// A stable seed offset from a claim id (FNV-1a), so a claim's draws do not depend on its position.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) % 1_000_000
}

/// Parses a claims file. `origin` names it in errors; `dir` resolves `network = { file = ... }`;
/// `builtin` marks the embedded registry (whose claims may use named built-in tests).
pub fn parse_claims(
    text: &str,
    origin: &str,
    dir: Option<&Path>,
    builtin: bool,
) -> Result<Vec<Claim>> {
    let f: ClaimsFile = toml::from_str(text).map_err(|e| Error::File {
        path: origin.to_string(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let mut out: Vec<Claim> = Vec::with_capacity(f.claim.len());
    for c in f.claim {
        let err = |m: String| Error::File {
            path: origin.to_string(),
            message: format!("claim '{}': {m}", c.id),
        };
        if c.id.trim().is_empty() || c.statement.trim().is_empty() {
            return Err(err("id and statement must not be empty".into()));
        }
        if out.iter().any(|o| o.id == c.id) {
            return Err(err("duplicate id".into()));
        }
        let generic = c.network.is_some()
            || c.observable.is_some()
            || c.relation.is_some()
            || c.value.is_some();
        let test = match (&c.test, generic) {
            (Some(_), true) => {
                return Err(err(
                    "give either test = \"name\" or network/observable/relation, not both".into(),
                ))
            }
            (Some(name), false) => Some(ClaimTest::Builtin(
                super::registry::builtin_test(name)
                    .ok_or_else(|| err(format!("test: unknown built-in test '{name}'")))?,
            )),
            (None, true) => Some(ClaimTest::Spec(Box::new(
                spec_of(&c, origin, dir).map_err(|e| match e {
                    Error::File { .. } => e,
                    other => err(other.to_string()),
                })?,
            ))),
            (None, false) => {
                if c.untestable.trim().is_empty() {
                    return Err(err(
                        "needs a network, observable and relation (or untestable = \"why\")".into(),
                    ));
                }
                None
            }
        };
        out.push(Claim {
            source: c.source.unwrap_or(if builtin {
                Source::Derived
            } else {
                Source::User
            }),
            id: c.id,
            statement: c.statement,
            reference: c.reference,
            theory: c.theory,
            test,
            untestable: c.untestable,
            control: c.control,
            builtin,
        });
    }
    Ok(out)
}

/// Reads a user's claims file (see `parse_claims`).
pub fn load_claims(path: &Path) -> Result<Vec<Claim>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_claims(&text, &path.display().to_string(), path.parent(), false)
}

fn spec_of(c: &FileClaim, origin: &str, dir: Option<&Path>) -> Result<Spec> {
    let field = |name: &str, accepted: &str| Error::param(name, "missing", accepted);
    let table = c.network.as_ref().ok_or_else(|| {
        field(
            "network",
            "{ mlp = {...} }, { file = \"arch.toml\" } or an inline architecture",
        )
    })?;
    let (network, network_label) = if let Some(m) = table.get("mlp") {
        if table.len() != 1 {
            return Err(Error::param(
                "network",
                "mlp with other keys",
                "mlp = { ... } alone",
            ));
        }
        let m: FileMlp = m.clone().try_into().map_err(|e: toml::de::Error| {
            Error::param(
                "network.mlp",
                e.message(),
                "act, width, depth, sigma_w2 [, sigma_b2]",
            )
        })?;
        let net = Network::mlp(MlpSpec {
            act: m.act,
            width: m.width,
            depth: m.depth,
            sigma_w2: m.sigma_w2,
            sigma_b2: m.sigma_b2,
        })?;
        let label = format!(
            "{} MLP, width {}, depth {}, sigma_w^2 = {}, sigma_b^2 = {}",
            m.act.name(),
            m.width,
            m.depth,
            m.sigma_w2,
            m.sigma_b2
        );
        (net, label)
    } else if let Some(p) = table.get("file") {
        let p = p
            .as_str()
            .ok_or_else(|| Error::param("network.file", p, "a path (string)"))?;
        let path = match dir {
            Some(d) => d.join(p),
            None => p.into(),
        };
        (crate::arch::load_file(&path)?, format!("network {p}"))
    } else {
        let text = toml::to_string(table)
            .map_err(|e| Error::param("network", e, "an architecture table"))?;
        let net =
            crate::arch::from_toml_str(&text, &format!("{origin}: claim '{}': network", c.id))?;
        let label = table
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("network of claim {}", c.id));
        (net, label)
    };
    let observable = match c.observable.as_deref() {
        Some("ln-gsc") => Observable::LnGsc,
        Some("sq-norm") => Observable::SqNorm,
        Some("every-layer") => Observable::EveryLayer,
        Some(o) => {
            return Err(Error::param(
                "observable",
                o,
                "ln-gsc, sq-norm or every-layer",
            ))
        }
        None => return Err(field("observable", "ln-gsc, sq-norm or every-layer")),
    };
    let value = || {
        c.value
            .filter(|v| v.is_finite())
            .ok_or_else(|| field("value", "a finite number for this relation"))
    };
    let relation = match c.relation.as_deref() {
        Some(">") => Relation::Greater(value()?),
        Some("<") => Relation::Less(value()?),
        Some("=") => Relation::Equals(value()?),
        Some("= closed-form") => {
            if c.value.is_some() {
                return Err(Error::param(
                    "value",
                    "given",
                    "no value with = closed-form",
                ));
            }
            Relation::EqualsClosedForm
        }
        Some(r) => {
            return Err(Error::param(
                "relation",
                r,
                "\">\", \"<\", \"=\" or \"= closed-form\"",
            ))
        }
        None => {
            return Err(field(
                "relation",
                "\">\", \"<\", \"=\" or \"= closed-form\"",
            ))
        }
    };
    if observable == Observable::EveryLayer && relation != Relation::EqualsClosedForm {
        return Err(Error::param(
            "relation",
            c.relation.as_deref().unwrap_or(""),
            "\"= closed-form\" for every-layer",
        ));
    }
    if let Some(b) = c.bias_bound {
        if !(b >= 0.0 && b.is_finite()) || observable == Observable::EveryLayer {
            return Err(Error::param(
                "bias-bound",
                b,
                "a finite number >= 0 (not with every-layer)",
            ));
        }
    }
    let samples = c.samples.unwrap_or(64);
    if !(2..=100_000).contains(&samples) {
        return Err(Error::param("samples", samples, "an integer in 2..=100000"));
    }
    let estimator = match c.probes {
        Some(0) => return Err(Error::param("probes", 0, "an integer >= 1")),
        Some(p) => Estimator::Probes(p),
        // A batch-coupled net's Jacobian is of the whole batch map (n B wide): probes, as in
        // examples/README.md.
        None if network.batch_coupled() => Estimator::Probes(4),
        None => Estimator::Exact,
    };
    Ok(Spec {
        network,
        network_label,
        observable,
        relation,
        samples,
        seed: c.seed.unwrap_or_else(|| seed_of(&c.id)),
        estimator,
        bias_bound: c.bias_bound,
        figure: c.figure.clone(),
    })
}
