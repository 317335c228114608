use super::{fmt, NetArgs};
use gradscale::theory::diagnose::{diagnose, DiagnoseOptions, Diagnosis};
use gradscale::Result;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// GSC(L, 0) at or above this is "explodes", at or below 1/this "vanishes".
    #[arg(long = "explode-at", default_value_t = 2.0, value_parser = super::args::pos_f64, allow_hyphen_values = true)]
    pub explode_at: f64,
    /// The GSC(L, 0) the residual advice keeps to.
    #[arg(long = "target-gsc", default_value_t = 2.0, value_parser = super::args::pos_f64, allow_hyphen_values = true)]
    pub target_gsc: f64,
    /// sd of ln GSC(L, 0) across networks beyond which finite-width fluctuations are said to matter.
    #[arg(long = "fluctuation-sd", default_value_t = 0.1, value_parser = super::args::pos_f64, allow_hyphen_values = true)]
    pub fluctuation_sd: f64,
    /// Print one JSON object (schema "gradscale.diagnose/1") instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let net = a.net.network()?;
    let d = diagnose(
        &net,
        &DiagnoseOptions {
            explode_at: a.explode_at,
            target_gsc: a.target_gsc,
            fluctuation_sd: a.fluctuation_sd,
            ..DiagnoseOptions::default()
        },
    )?;
    if a.json {
        let mut v = serde_json::to_value(&d).expect("json");
        v["command"] = "diagnose".into();
        v["network"] = serde_json::to_value(&net).expect("json");
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    Ok(table(&d, a, net.depth()))
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt).unwrap_or_else(|| "-".into())
}

fn depth(x: Option<usize>, max: usize) -> String {
    x.map(|d| format!("layer {d}"))
        .unwrap_or_else(|| format!("never (searched to {max})"))
}

fn table(d: &Diagnosis, a: &Args, l: usize) -> String {
    let mut s = String::new();
    let g = &d.gradient;
    let _ = writeln!(
        s,
        "gradients: {} (infinite width; explodes at GSC(L,0) >= {}, vanishes at <= 1/{})",
        g.verdict.name().to_uppercase(),
        a.explode_at,
        a.explode_at
    );
    let _ = writeln!(
        s,
        "  GSC(L,0) = {} (ln {:.4}) over L = {l} layers; fitted rate r = {} per layer",
        super::fmt_pos(g.gsc_total, g.log_gsc_total),
        g.log_gsc_total,
        fmt(g.rate)
    );
    if let Some((first, last)) = g.growth_layers {
        let (lo, hi) = g
            .log_gsc_per_layer
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let _ = writeln!(
            s,
            "  90% of ln GSC(L,0) accrues in layers {first}..{last}; per-layer ln GSC(l,l-1) ranges {lo:.4} .. {hi:.4} (profile in --json)"
        );
    }
    if let Some(p) = &d.phase {
        let _ = writeln!(
            s,
            "phase: {}  q* = {}  chi_1 = {}  xi_q = {}  xi_grad = {}",
            p.phase,
            opt(p.q_star),
            opt(p.chi1),
            opt(p.xi_q),
            opt(p.xi_grad)
        );
        let _ = writeln!(
            s,
            "collapse: c* = {}  xi_c = {}; correlation passes 0.99 at {}; sign diversity < 0.1 at {}",
            opt(p.c_star),
            opt(p.xi_c),
            depth(p.collapse_depth_correlation, 100_000),
            depth(p.collapse_depth_sign_diversity, 100_000)
        );
    }
    let _ = writeln!(s, "advice:");
    if let Some(e) = &d.edge_of_chaos {
        match e.sigma_w2 {
            Some(w) => {
                let _ = writeln!(
                    s,
                    "  edge of chaos at sigma_b^2 = {}: sigma_w^2 = {:.10} (chi_1 = {:.12}){}",
                    e.sigma_b2,
                    w,
                    e.chi1.unwrap_or(f64::NAN),
                    e.note
                        .as_ref()
                        .map(|n| format!("; {n}"))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  edge of chaos: {}",
                    e.note.as_deref().unwrap_or("not found")
                );
            }
        }
    }
    if let Some(r) = &d.residual {
        let _ = writeln!(
            s,
            "  ResNet (f_l = f_(l-1) + alpha W2 phi(W1 f_(l-1) + b), {} blocks): GSC(L,0) = {} at alpha = 1; alpha = {:.6} keeps it at {} (dilution k = {:.3} first block, {:.3} last)",
            r.blocks,
            super::fmt_pos(r.log_gsc_at_alpha_one.exp(), r.log_gsc_at_alpha_one),
            r.alpha,
            fmt(r.log_gsc_at_alpha.exp()),
            r.dilution_first,
            r.dilution_last
        );
    }
    if let Some(w) = &d.width {
        match (w.mean, w.sd) {
            (Some(m), Some(sd)) => {
                let _ = writeln!(
                    s,
                    "  width {}: ln GSC(L,0) = {:.4} +- {:.4} across networks (infinite width {:.4}); sd <= {} from width {}{}",
                    w.width,
                    m,
                    sd,
                    w.mean_field,
                    a.fluctuation_sd,
                    w.width_for_sd
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| w.width.to_string()),
                    if w.width_for_sd_method == Some("scaling") {
                        " (from sd ~ n^-1/2)"
                    } else {
                        ""
                    }
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "  width {}: {}",
                    w.width,
                    w.note
                        .as_deref()
                        .unwrap_or("finite-width law not available")
                );
            }
        }
    }
    let _ = writeln!(s, "does not help:");
    for h in &d.does_not_help {
        let _ = writeln!(s, "  {}: {} [audit: {}]", h.what, h.why, h.claim);
    }
    for n in &d.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
