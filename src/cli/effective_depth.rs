//! `gradscale effective-depth`: Taylor replacement of the top layers, d_eff(tau), and the path profile.

use super::fmt;
use super::residual::GivenArgs;
use gradscale::depth::paths::{PROFILE_FRACTION, TRUNCATION_LIMIT};
use gradscale::depth::taylor::{effective_depth, Labelled, DEFAULT_TAU};
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub given: GivenArgs,
    /// Tolerance on the training error, as a fraction in (0, 1) (0.01 = one percentage point).
    #[arg(long, default_value_t = DEFAULT_TAU, allow_hyphen_values = true)]
    pub tau: f64,
}

pub fn run(a: &Args) -> Result<String> {
    if !(a.tau > 0.0 && a.tau < 1.0) {
        return Err(gradscale::Error::param(
            "--tau",
            a.tau,
            "a number in (0, 1)",
        ));
    }
    let g = a.given.load()?;
    let train = Labelled {
        x: &g.train_x,
        labels: &g.train_y,
    };
    let test = g.test.as_ref().map(|(x, y)| Labelled { x, labels: y });
    let rep = effective_depth(&g.net, &g.init, &g.trained, train, test, a.tau, &g.opts)?;
    if a.given.json {
        let v = json!({"schema": "gradscale.effective-depth/1", "command": "effective-depth", "data": g.data, "split": g.split, "report": rep});
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Taylor replacement: the top m layers replaced by their first-order expansion in the parameters around theta(0), fed by the trained lower layers; {} training rows of {} ({})",
        g.train_x.ncols(),
        g.data,
        g.split
    );
    let _ = writeln!(
        s,
        "{:>4} {:>6} {:>10} {:>12} {:>10} {:>12}",
        "m", "depth", "train_err", "train_loss", "test_err", "test_loss"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), fmt);
    for p in &rep.points {
        let _ = writeln!(
            s,
            "{:>4} {:>6} {:>10.4} {:>12} {:>10} {:>12}",
            p.m,
            p.depth,
            p.train_error,
            fmt(p.train_loss),
            opt(p.test_error),
            opt(p.test_loss)
        );
    }
    match rep.d_eff {
        Some(d) => {
            let _ = writeln!(
                s,
                "d_eff(tau = {} points) = {d} of L = {} (Taylor replacement; trained train error {:.2}%, chance {:.2}%)",
                100.0 * rep.tau,
                rep.depth,
                100.0 * rep.trained_error,
                100.0 * rep.chance_error
            );
        }
        None => {
            let _ = writeln!(
                s,
                "{}",
                rep.message.as_deref().unwrap_or("no effective depth")
            );
        }
    }
    let p = &rep.paths;
    let _ = writeln!(
        s,
        "path profile: c_lambda = E|a_L^(lambda)| (paths through lambda residual factors); predicted rms from the closed form for initialisation-like residuals"
    );
    let _ = writeln!(
        s,
        "{:>6} {:>14} {:>14} {:>14}",
        "lambda", "c_lambda", "rms", "predicted_rms"
    );
    for (i, c) in p.c.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>6} {:>14} {:>14} {:>14}",
            i + 1,
            fmt(c.mean),
            fmt(p.rms[i]),
            fmt(p.predicted_rms[i])
        );
    }
    let _ = writeln!(
        s,
        "path-profile depth ({:.0}% of sum c_lambda) = {}; output change E|df_L| = {}, truncation E|df_L - sum a| = {} ({:.2}% of it)",
        100.0 * PROFILE_FRACTION,
        rep.path_depth.map_or("-".to_string(), |d| d.to_string()),
        fmt(p.change),
        fmt(p.truncation),
        100.0 * p.truncation_rel
    );
    if !p.describes && p.change > 0.0 {
        let _ = writeln!(
            s,
            "note: the truncation exceeds {:.0}% of the change: the first-order path expansion does not describe this network, and its profile depth says nothing about it",
            100.0 * TRUNCATION_LIMIT
        );
    }
    Ok(s)
}
