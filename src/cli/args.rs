//! Flags shared by the subcommands, and value parsers whose errors name the accepted range.

use clap::Args;
use gradscale::arch::{InitScheme, Network};
use gradscale::montecarlo::{Estimator, McOptions};
use gradscale::{Nonlinearity, Result};
use std::path::PathBuf;

pub fn positive_usize(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err("expected an integer >= 1".into()),
    }
}

pub fn nonneg_f64(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a finite number >= 0".into()),
    }
}

pub fn pos_f64(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a finite number > 0".into()),
    }
}

pub fn unit_interval(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("expected a number in [0, 1)".into()),
    }
}

pub fn probability(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err("expected a number in (0, 1)".into()),
    }
}

/// Widths N0,N1,...,NL (one flag value: clap would read a bare Vec as repeated values).
#[derive(Clone, Debug)]
pub struct WidthList(pub Vec<usize>);

/// `N0,N1,...,NL`: the input width then one width per layer.
pub fn width_list(s: &str) -> std::result::Result<WidthList, String> {
    let v: std::result::Result<Vec<usize>, String> = s.split(',').map(positive_usize).collect();
    match v {
        Ok(v) if v.len() >= 2 => Ok(WidthList(v)),
        _ => Err("expected a comma-separated list N0,N1,...,NL of integers >= 1 (input width, then one width per layer; at least two)".into()),
    }
}

fn nonlinearity(s: &str) -> std::result::Result<Nonlinearity, String> {
    s.parse()
}

/// The network flags an architecture file replaces (each conflicts with --arch, naming both).
const ARCH_REPLACES: [&str; 8] = [
    "act",
    "width",
    "widths",
    "depth",
    "sigma_w2",
    "sigma_b2",
    "input_correlation",
    "init",
];

fn init_scheme(s: &str) -> std::result::Result<InitScheme, String> {
    s.parse()
}

/// The network: either the MLP flags or an architecture file.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Nonlinearity: linear, relu, leaky-relu[:SLOPE], tanh, sigmoid, softplus, selu, elu[:ALPHA], gelu, silu, erf, hard-tanh.
    #[arg(long, default_value = "tanh", value_parser = nonlinearity, allow_hyphen_values = true)]
    pub act: Nonlinearity,
    /// Width n of every layer (input included).
    #[arg(long, default_value_t = 100, value_parser = positive_usize, allow_hyphen_values = true)]
    pub width: usize,
    /// Unequal widths: N0,N1,...,NL (the input width, then one per layer), e.g. 100,50,200 for two layers.
    /// Replaces --width and --depth.
    #[arg(long, value_parser = width_list, conflicts_with_all = ["width", "depth"])]
    pub widths: Option<WidthList>,
    /// Number of layers L (each a dense map followed by the nonlinearity).
    #[arg(long, default_value_t = 50, value_parser = positive_usize, allow_hyphen_values = true)]
    pub depth: usize,
    /// Weight variance: W_ij has variance sigma_w2 / fan_in. Default: 2/(1+a^2) for relu/leaky-relu (He), 1 otherwise.
    #[arg(long = "sigma-w2", value_parser = pos_f64, allow_hyphen_values = true)]
    pub sigma_w2: Option<f64>,
    /// Bias variance sigma_b2 (b_i has this variance).
    #[arg(long = "sigma-b2", default_value_t = 0.0, value_parser = nonneg_f64, allow_hyphen_values = true)]
    pub sigma_b2: f64,
    /// Weight initialisation, as sigma_w^2 (W_ij variance sigma_w^2/fan_in) and distribution:
    /// he = N, sigma_w^2 = 2; xavier (Glorot normal, Var W = 2/(fan_in+fan_out)) = N, sigma_w^2 = 2 fan_in/(fan_in+fan_out) (1 for square layers);
    /// lecun = N, sigma_w^2 = 1; he-uniform, xavier-uniform, lecun-uniform: the same variances, uniform;
    /// pytorch-default (nn.Linear: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))) = uniform, sigma_w^2 = 1/3, bias variance 1/(3 fan_in);
    /// gaussian, uniform, orthogonal, looks-linear: distribution only, scale from --sigma-w2.
    /// The first seven set sigma_w^2 (giving --sigma-w2 too is an error); pytorch-default also sets the bias (so does not take --sigma-b2).
    #[arg(long, value_parser = init_scheme)]
    pub init: Option<InitScheme>,
    /// Inputs fed together as one batch (needed by batch norm; the GSC of a net without batch norm is measured at the first input). Default 1 (collapse: 16). With --arch, replaces the file's batch (said on stderr).
    #[arg(long, value_parser = positive_usize, allow_hyphen_values = true)]
    pub batch: Option<usize>,
    /// Pairwise correlation of the batch's inputs, in [0, 1).
    #[arg(long = "input-correlation", default_value_t = 0.0, value_parser = unit_interval, allow_hyphen_values = true)]
    pub input_correlation: f64,
    /// Real input vectors (CSV, one per line, or a 2-D float .npy, one per row): a random batch of them replaces the Gaussian inputs; the closed form uses their mean square and mean pairwise cosine. The input width becomes their dimension (with --arch: must equal the file's input width; replaces the file's input model, said on stderr).
    #[arg(long = "input-file")]
    pub input_file: Option<PathBuf>,
    /// CSV --input-file: the first row is a header (default: detected, a first row none of whose cells is a number is a header).
    #[arg(long, conflicts_with = "no_header")]
    pub header: bool,
    /// CSV --input-file: the first row is data (an error names it if it is not numeric).
    #[arg(long = "no-header")]
    pub no_header: bool,
    /// Architecture file (TOML; format in theory/architecture-files.md, examples in examples/). Replaces the network flags
    /// --act/--width/--widths/--depth/--sigma-w2/--sigma-b2/--input-correlation/--init (giving one of them too is an error);
    /// --batch and --input-file are applied to it.
    #[arg(long, conflicts_with_all = ARCH_REPLACES)]
    pub arch: Option<PathBuf>,
}

impl NetArgs {
    fn csv_header(&self) -> Option<bool> {
        if self.header {
            Some(true)
        } else if self.no_header {
            Some(false)
        } else {
            None
        }
    }

    pub fn network(&self) -> Result<Network> {
        self.network_with_batch(1)
    }

    /// The network and the checkpoint tensor names its architecture file gives (none with the flags).
    pub fn network_named(&self) -> Result<(Network, gradscale::arch::ParamNames)> {
        self.network_named_with_batch(1)
    }

    /// The network, with `default_batch` where --batch is not given (and no architecture file says).
    pub fn network_with_batch(&self, default_batch: usize) -> Result<Network> {
        self.network_named_with_batch(default_batch).map(|(n, _)| n)
    }

    pub fn network_named_with_batch(
        &self,
        default_batch: usize,
    ) -> Result<(Network, gradscale::arch::ParamNames)> {
        if let Some(path) = &self.arch {
            let (mut net, names) = gradscale::arch::load_file_named(path)?;
            if let Some(data_path) = &self.input_file {
                let data =
                    gradscale::arch::InputData::load_with_header(data_path, self.csv_header())?;
                if data.dim() != net.input.width {
                    return Err(gradscale::Error::Architecture(format!(
                        "--input-file {} has dimension {}, the input width of --arch {} is {}",
                        data_path.display(),
                        data.dim(),
                        path.display(),
                        net.input.width
                    )));
                }
                eprintln!(
                    "note: --input-file {} replaces the input model of --arch {}",
                    data_path.display(),
                    path.display()
                );
                net.input.data = Some(data);
            }
            if let Some(b) = self.batch {
                if b != net.input.batch {
                    eprintln!(
                        "note: --batch {b} replaces the batch {} of --arch {}",
                        net.input.batch,
                        path.display()
                    );
                }
                net.input.batch = b;
            } else if net.input.batch < default_batch {
                net.input.batch = default_batch;
            }
            net.validate()?;
            return Ok((net, names));
        }
        let scheme = self.init.unwrap_or(InitScheme::Gaussian);
        if scheme.fixes_bias() && self.sigma_b2 != 0.0 {
            return Err(gradscale::Error::Architecture(format!(
                "--sigma-b2 and --init {} both set the bias variance: give one",
                scheme.name()
            )));
        }
        let data = match &self.input_file {
            Some(path) => Some(gradscale::arch::InputData::load_with_header(
                path,
                self.csv_header(),
            )?),
            None => None,
        };
        let (n0, hidden): (usize, Vec<usize>) = match &self.widths {
            Some(WidthList(w)) => (w[0], w[1..].to_vec()),
            None => (self.width, vec![self.width; self.depth]),
        };
        let n0 = data.as_ref().map_or(n0, |d| d.dim());
        let mut net =
            Network::mlp_init(n0, &hidden, self.act, scheme, self.sigma_w2, self.sigma_b2)?;
        net.input.data = data;
        net.input.batch = self.batch.unwrap_or(default_batch);
        net.input.correlation = self.input_correlation;
        net.validate()?;
        Ok((net, Default::default()))
    }
}

/// The distribution of probe vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeDist {
    Rademacher,
    Gaussian,
}

/// Monte Carlo flags.
#[derive(Args, Debug, Clone)]
pub struct McArgs {
    /// Number of sampled networks (each with its own weights and input) [default: 200]. With --weights and
    /// input rows (--input-file, or data in the architecture file): the first N batches of rows, in file
    /// order [default: every row once].
    #[arg(long, value_parser = positive_usize, allow_hyphen_values = true)]
    pub samples: Option<usize>,
    /// Seed: the same seed gives the same numbers, whatever the thread count.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Estimate ||J||_F^2 with this many probe vectors instead of the exact Jacobian (for wide networks).
    /// Without it, a run whose exact Jacobians are estimated above ~30 s prints that estimate and the
    /// time with --probes 16 on stderr before it starts; it is never switched to probes for you.
    #[arg(long, value_parser = positive_usize, allow_hyphen_values = true)]
    pub probes: Option<usize>,
    /// Probe distribution for --probes: rademacher (entries +-1; about half the variance of gaussian for
    /// these Jacobians, theory/monte-carlo.md) or gaussian.
    #[arg(long = "probe-dist", value_enum, default_value_t = ProbeDist::Rademacher)]
    pub probe_dist: ProbeDist,
    /// A given network: every sample uses these weights (a safetensors file, tensors named by the
    /// architecture file's ops or by default `layers.L.K.weight`; see theory/checkpoints.md) and only the
    /// inputs vary.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = positive_usize, allow_hyphen_values = true)]
    pub threads: Option<usize>,
}

impl McArgs {
    pub fn options(&self) -> McOptions {
        McOptions {
            samples: self.samples.unwrap_or(200),
            seed: self.seed,
            estimator: match (self.probes, self.probe_dist) {
                (Some(p), ProbeDist::Rademacher) => Estimator::Probes(p),
                (Some(p), ProbeDist::Gaussian) => Estimator::GaussianProbes(p),
                (None, _) => Estimator::Exact,
            },
        }
    }

    /// Runs `f` on a pool with the requested thread count.
    pub fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match self.threads {
            Some(t) => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
                Ok(pool) => pool.install(f),
                Err(_) => f(),
            },
            None => f(),
        }
    }
}
