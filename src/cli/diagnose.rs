use super::{fmt, McArgs, NetArgs};
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
    /// A given network (--weights, with its inputs from --input-file or the architecture file's data, else
    /// Gaussian draws): its measured per-layer GSC profile is shown next to the closed form of the initial
    /// distribution. The other Monte Carlo flags apply only with --weights.
    #[command(flatten)]
    pub mc: McArgs,
}

/// The given network's measured ln GSC(L, l) next to the closed form of its architecture's initial
/// distribution, per layer.
struct Given {
    weights: String,
    measurement: gradscale::verify::Measurement,
    predicted: Vec<f64>,
}

fn given(
    a: &Args,
    net: &gradscale::Network,
    names: &gradscale::arch::ParamNames,
) -> Result<Option<Given>> {
    let Some(w) = &a.mc.weights else {
        // Monte Carlo flags without a network to measure would be silently dropped.
        for (flag, set) in [
            ("--samples", a.mc.samples.is_some()),
            ("--probes", a.mc.probes.is_some()),
            ("--threads", a.mc.threads.is_some()),
            ("--seed", a.mc.seed != 0),
        ] {
            if set {
                return Err(gradscale::Error::param(
                    flag,
                    "given without --weights",
                    "--weights FILE: diagnose measures only a given network; without one it uses the closed forms",
                ));
            }
        }
        return Ok(None);
    };
    let m = super::simulate::measure_given(net, names, &a.mc, w)?;
    let p = gradscale::verify::closed_form(net)?;
    Ok(Some(Given {
        weights: w.display().to_string(),
        measurement: m,
        predicted: p.layers.iter().map(|l| l.log_gsc_to_output).collect(),
    }))
}

pub fn run(a: &Args) -> Result<String> {
    let (net, names) = a.net.network_named()?;
    let g = given(a, &net, &names)?;
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
        if let Some(g) = &g {
            let m = &g.measurement;
            let layers: Vec<_> = m
                .layers
                .iter()
                .zip(&g.predicted)
                .map(|(l, p)| {
                    let s = &l.log_gsc_to_output;
                    serde_json::json!({
                        "layer": l.index,
                        "closed_form_initial": p,
                        "measured": {"mean": s.mean, "stderr": s.stderr, "n": s.n},
                    })
                })
                .collect();
            v["given_network"] = serde_json::json!({
                "weights": g.weights,
                "inputs": m.samples,
                "degenerate": m.degenerate,
                "seed": m.seed,
                "quantity": "ln GSC(L, l)",
                "layers": layers,
            });
        }
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = table(&d, a, net.depth());
    if let Some(g) = &g {
        given_table(&mut s, g);
    }
    Ok(s)
}

/// Every layer for shallow nets, else about a dozen rows (first and last included); all are in --json.
fn given_table(s: &mut String, g: &Given) {
    let m = &g.measurement;
    let depth = m.layers.len() - 1;
    let _ = writeln!(
        s,
        "given network ({}; {} inputs, {} degenerate, seed {}): the numbers above are the closed forms of its architecture's initial distribution; below, ln GSC(L, l) measured on this network over its inputs next to that closed form",
        g.weights, m.samples, m.degenerate, m.seed
    );
    let _ = writeln!(
        s,
        "{:>5} {:>14} {:>14} {:>11}",
        "l", "closed form", "measured", "se"
    );
    let step = depth.div_ceil(12).max(1);
    for l in (0..=depth).filter(|l| l % step == 0 || *l == depth) {
        let x = &m.layers[l].log_gsc_to_output;
        let _ = writeln!(
            s,
            "{:>5} {:>14} {:>14} {:>11}",
            l,
            fmt(g.predicted[l]),
            fmt(x.mean),
            fmt(x.stderr)
        );
    }
    let total = &m.layers[0].log_gsc_to_output;
    let _ = writeln!(
        s,
        "  this network: ln GSC(L,0) = {} +- {} measured, {} in the closed form at initialisation",
        fmt(total.mean),
        fmt(total.stderr),
        fmt(g.predicted[0])
    );
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt).unwrap_or_else(|| "-".into())
}

fn depth(x: Option<usize>, max: usize) -> String {
    x.map(|d| format!("at layer {d}"))
        .unwrap_or_else(|| format!("never (searched to layer {max})"))
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
            "collapse: c* = {}  xi_c = {}; correlation passes 0.99 {}; sign diversity < 0.1 {}",
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
    if d.edge_of_chaos.is_none() && d.residual.is_none() && d.width.is_none() {
        let _ = writeln!(s, "  none for this architecture (see the note below)");
    }
    if let Some(r) = d.residual.as_ref().filter(|r| r.alpha >= 1.0) {
        let _ = writeln!(
            s,
            "  ResNet (f_l = f_(l-1) + alpha W2 phi(W1 f_(l-1) + b), {} blocks): GSC(L,0) = {} at alpha = 1, already <= {}",
            r.blocks,
            super::fmt_pos(r.log_gsc_at_alpha_one.exp(), r.log_gsc_at_alpha_one),
            r.target_gsc
        );
    }
    if let Some(r) = d.residual.as_ref().filter(|r| r.alpha < 1.0) {
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
