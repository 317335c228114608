//! `gradscale residual`: a trained network as a residual network, layer by layer (the residual trick).

use super::fmt;
use super::train::DataArgs;
use gradscale::arch::{load_file_named, Network};
use gradscale::checkpoint::load_params_file;
use gradscale::depth::residual::residual_decomposition;
use gradscale::depth::{to_columns, DepthOptions};
use gradscale::montecarlo::{Estimator, NetParams};
use gradscale::stats::Summary;
use gradscale::{Error, Result};
use nalgebra::DMatrix;
use serde_json::json;
use std::fmt::Write;
use std::path::PathBuf;

/// A trained network against its initialisation, on data.
#[derive(clap::Args, Debug)]
pub struct GivenArgs {
    /// Architecture file naming the tensors (`gradscale train` writes DIR/arch.toml).
    #[arg(long)]
    pub arch: PathBuf,
    /// Weights at initialisation, theta(0) (safetensors; DIR/init.safetensors).
    #[arg(long)]
    pub init: PathBuf,
    /// Trained weights, theta(t) (safetensors; DIR/trained.safetensors).
    #[arg(long)]
    pub trained: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Use the first N training rows (default: all). Batch norm uses the statistics of the rows used.
    #[arg(long, value_parser = super::args::positive_usize)]
    pub samples: Option<usize>,
    /// Gaussian probes per example for the Jacobian norms instead of exact Jacobians.
    #[arg(long, value_parser = super::args::positive_usize)]
    pub probes: Option<usize>,
    /// Seed of the probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything the two commands read.
pub struct Given {
    pub net: Network,
    pub init: NetParams,
    pub trained: NetParams,
    pub train_x: DMatrix<f64>,
    pub train_y: Vec<usize>,
    pub test: Option<(DMatrix<f64>, Vec<usize>)>,
    pub data: String,
    pub split: String,
    pub opts: DepthOptions,
}

impl GivenArgs {
    pub fn load(&self) -> Result<Given> {
        let (net, names) = load_file_named(&self.arch)?;
        let init = load_params_file(&net, &names, &self.init)?;
        let trained = load_params_file(&net, &names, &self.trained)?;
        let prep = self.data.prepare()?;
        if prep.train.dim() != net.input.width {
            return Err(Error::param(
                "--data (feature count)",
                prep.train.dim(),
                format!(
                    "{} features, the input width of {}",
                    net.input.width,
                    self.arch.display()
                ),
            ));
        }
        let n = self
            .samples
            .unwrap_or(prep.train.x.len())
            .min(prep.train.x.len());
        Ok(Given {
            train_x: to_columns(&prep.train.x[..n]),
            train_y: prep.train.y[..n].to_vec(),
            test: prep.test.as_ref().map(|t| (to_columns(&t.x), t.y.clone())),
            data: prep.train.name.clone(),
            split: prep.split.clone(),
            net,
            init,
            trained,
            opts: DepthOptions {
                estimator: match self.probes {
                    Some(p) => Estimator::Probes(p),
                    None => Estimator::Exact,
                },
                seed: self.seed,
            },
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub given: GivenArgs,
}

pub fn pm(s: &Summary) -> String {
    if s.n == 0 {
        "-".into()
    } else {
        format!("{:.4} +- {:.4}", s.mean, s.stderr)
    }
}

pub fn run(a: &Args) -> Result<String> {
    let g = a.given.load()?;
    let rep = residual_decomposition(&g.net, &g.init, &g.trained, &g.train_x, &g.opts)?;
    if a.given.json {
        let v = json!({"schema": "gradscale.residual/1", "command": "residual", "data": g.data, "split": g.split, "report": rep});
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "residual trick: f_l = i_l(f_(l-1)) + r_l(f_(l-1)), i_l the layer at theta(0), r_l the trained layer minus i_l; on {} training rows of {} ({})",
        rep.examples, g.data, g.split
    );
    let _ = writeln!(
        s,
        "k = |i|/|r|; GSC of skip i, residual r and trained layer f; pyth_err = ln GSC_f - ln sqrt((k^2 GSC_i^2 + GSC_r^2)/(k^2+1)); cos = cross terms; mean +- se over examples"
    );
    let _ = writeln!(
        s,
        "{:>5} {:>12} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "layer",
        "k_pooled",
        "ln k",
        "ln GSC_i",
        "ln GSC_r",
        "ln GSC_f",
        "pyth_err",
        "cos_len",
        "cos_jac"
    );
    for l in &rep.layers {
        let b = &l.blocks;
        if l.unchanged {
            let _ = writeln!(
                s,
                "{:>5} {:>12} unchanged (residual exactly zero)",
                l.layer, "inf"
            );
            continue;
        }
        let _ = writeln!(
            s,
            "{:>5} {:>12} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20}",
            l.layer,
            fmt(l.k_pooled),
            pm(&b.log_k),
            pm(&b.log_gsc_skip),
            pm(&b.log_gsc_branch),
            pm(&b.log_gsc_block),
            pm(&b.pythagorean_error),
            pm(&b.cos_length),
            pm(&b.cos_jacobian)
        );
        if l.zero_residual_groups > 0 {
            let _ = writeln!(
                s,
                "      note: {} of {} examples have a zero residual in this layer and are left out of its k and GSC_r",
                l.zero_residual_groups, l.groups
            );
        }
    }
    let worst = rep
        .layers
        .iter()
        .map(|l| l.reconstruction_error)
        .fold(0.0, f64::max);
    let _ = writeln!(s, "exactness: max |i + r - f| / max |f| = {worst:.1e}");
    if let Some(m) = &rep.message {
        let _ = writeln!(s, "{m}");
    }
    Ok(s)
}
