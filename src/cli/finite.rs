//! Flags and formatting of the finite-width law (theory/finite-width.md), shared by `predict` and `check`.

use super::fmt;
use gradscale::theory::finite_width::{
    predict_finite, FiniteOptions, FinitePrediction, FiniteValue, DEFAULT_BUDGET,
};
use gradscale::{Error, Network, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct FiniteArgs {
    /// Finite-width law: reduced spectra sampled by the exact route (bias-free relu / linear MLPs). Its own
    /// Monte Carlo error is reported as mean_se.
    #[arg(long = "finite-spectra", default_value_t = 2000, value_parser = super::args::positive_usize, allow_hyphen_values = true)]
    pub finite_spectra: usize,
    /// Seed of the finite-width law's own sampling (independent of --seed).
    #[arg(long = "finite-seed", default_value_t = 0)]
    pub finite_seed: u64,
    /// Skip the finite-width law.
    #[arg(long = "no-finite")]
    pub no_finite: bool,
}

impl FiniteArgs {
    pub fn options(&self, keep_sample: bool) -> FiniteOptions {
        FiniteOptions {
            spectra: self.finite_spectra.max(2),
            directions: 8,
            seed: self.finite_seed,
            budget: DEFAULT_BUDGET,
            keep_sample,
            unit_loop: false,
        }
    }

    /// The finite-width law, or None when it is switched off or the network is not a plain MLP (then
    /// there is nothing to say, which is not an error of the whole command).
    pub fn predict(&self, net: &Network, keep_sample: bool) -> Result<Option<FinitePrediction>> {
        if self.no_finite {
            return Ok(None);
        }
        match predict_finite(net, &self.options(keep_sample)) {
            Ok(p) => Ok(Some(p)),
            Err(Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// "mean +- sd" or "outside validity", for a table cell.
pub fn cell(v: &FiniteValue) -> String {
    match v {
        FiniteValue::Law(l) => format!("{} +- {}", fmt(l.mean), fmt(l.sd)),
        FiniteValue::OutsideValidity { .. } => "outside validity".into(),
    }
}
