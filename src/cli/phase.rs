use super::args::{nonneg_f64, pos_f64, positive_usize, unit_interval};
use super::fmt;
use gradscale::theory::phase::{phase_grid, PhaseOptions};
use gradscale::{Error, Nonlinearity, Result};
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Nonlinearity (as for predict).
    #[arg(long, default_value = "tanh", value_parser = |s: &str| s.parse::<Nonlinearity>(), allow_hyphen_values = true)]
    pub act: Nonlinearity,
    /// Smallest sigma_w^2 of the grid.
    #[arg(long = "sw2-min", default_value_t = 0.5, value_parser = pos_f64, allow_hyphen_values = true)]
    pub sw2_min: f64,
    /// Largest sigma_w^2 of the grid.
    #[arg(long = "sw2-max", default_value_t = 4.0, value_parser = pos_f64, allow_hyphen_values = true)]
    pub sw2_max: f64,
    /// Number of sigma_w^2 values (evenly spaced, ends included).
    #[arg(long = "sw2-steps", default_value_t = 100, value_parser = positive_usize, allow_hyphen_values = true)]
    pub sw2_steps: usize,
    /// Smallest sigma_b^2 of the grid.
    #[arg(long = "sb2-min", default_value_t = 0.0, value_parser = nonneg_f64, allow_hyphen_values = true)]
    pub sb2_min: f64,
    /// Largest sigma_b^2 of the grid.
    #[arg(long = "sb2-max", default_value_t = 1.0, value_parser = nonneg_f64, allow_hyphen_values = true)]
    pub sb2_max: f64,
    /// Number of sigma_b^2 values.
    #[arg(long = "sb2-steps", default_value_t = 100, value_parser = positive_usize, allow_hyphen_values = true)]
    pub sb2_steps: usize,
    /// Sign-diversity threshold t: collapse depth = first layer with arccos(sqrt c_l)/pi < t.
    #[arg(long, default_value_t = 0.1, value_parser = unit_interval, allow_hyphen_values = true)]
    pub threshold: f64,
    /// Correlation of the inputs, in [0, 1).
    #[arg(long = "input-correlation", default_value_t = 0.0, value_parser = unit_interval, allow_hyphen_values = true)]
    pub input_correlation: f64,
    /// Deepest layer searched for the threshold crossing.
    #[arg(long = "max-depth", default_value_t = 10000, value_parser = positive_usize, allow_hyphen_values = true)]
    pub max_depth: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![lo];
    }
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

pub fn run(a: &Args) -> Result<String> {
    if a.sw2_max < a.sw2_min {
        return Err(Error::param(
            "--sw2-max",
            a.sw2_max,
            "a number >= --sw2-min",
        ));
    }
    if a.sb2_max < a.sb2_min {
        return Err(Error::param(
            "--sb2-max",
            a.sb2_max,
            "a number >= --sb2-min",
        ));
    }
    if a.threshold <= 0.0 || a.threshold >= 0.5 {
        return Err(Error::param(
            "--threshold",
            a.threshold,
            "a number in (0, 0.5)",
        ));
    }
    let opts = PhaseOptions {
        threshold: a.threshold,
        input_correlation: a.input_correlation,
        max_depth: a.max_depth,
    };
    let sw = grid(a.sw2_min, a.sw2_max, a.sw2_steps);
    let sb = grid(a.sb2_min, a.sb2_max, a.sb2_steps);
    let pts = phase_grid(a.act, &sw, &sb, &opts);
    if a.json {
        let v = json!({
            "schema": "gradscale.phase/1",
            "command": "phase",
            "act": a.act.name(),
            "threshold": a.threshold,
            "input_correlation": a.input_correlation,
            "max_depth": a.max_depth,
            "points": pts,
        });
        return Ok(format!("{}\n", serde_json::to_string(&v).expect("json")));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "phase diagram of a {} MLP at its variance fixed point (sign-diversity threshold {})",
        a.act.name(),
        a.threshold
    );
    let _ = writeln!(
        s,
        "{:>10} {:>10} {:>14} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "sigma_w2", "sigma_b2", "phase", "q*", "chi_1", "GSC/layer", "c*", "xi_c", "depth"
    );
    let o = |x: Option<f64>| x.map(fmt).unwrap_or_else(|| "-".into());
    for p in &pts {
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>14} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
            fmt(p.sigma_w2),
            fmt(p.sigma_b2),
            p.phase,
            o(p.q_star),
            o(p.chi1),
            o(p.gsc_layer),
            o(p.c_star),
            o(p.xi_c),
            p.collapse_depth
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(s)
}
