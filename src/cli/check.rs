use super::{fmt, McArgs, NetArgs};
use gradscale::verify::finite::{check_finite, FiniteVerdict};
use gradscale::verify::{check, CheckPolicy, Verdict};
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub mc: McArgs,
    /// Family-wise false-alarm rate of the whole check (split evenly over the comparisons).
    #[arg(long, default_value_t = 1e-3, value_parser = super::args::probability, allow_hyphen_values = true)]
    pub alpha: f64,
    #[command(flatten)]
    pub finite: super::finite::FiniteArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let (net, names) = a.net.network_named()?;
    let mut p = gradscale::verify::closed_form(&net)?;
    let m = match &a.mc.weights {
        Some(w) => {
            p.notes.push(format!(
                "given network {}: the measurements are one network over inputs, compared with the closed form of the architecture's initial distribution (a trained network is not expected to agree)",
                w.display()
            ));
            super::simulate::measure_given(&net, &names, &a.mc, w)?
        }
        None => super::simulate::measure(&net, &a.mc)?,
    };
    let policy = CheckPolicy {
        family_alpha: a.alpha,
        ..CheckPolicy::default()
    };
    let r = check(&net, &p, &m, &policy);
    let fin = a.finite.predict(&net, true)?;
    let fr = fin
        .as_ref()
        .map(|f| check_finite(f, &m, policy.family_alpha));
    if a.json {
        let v = json!({
            "schema": "gradscale.check/1",
            "command": "check",
            "network": net,
            "samples": m.samples,
            "degenerate": m.degenerate,
            "overflow": m.overflow,
            "seed": m.seed,
            "report": r,
            "notes": p.notes,
            "finite_width": fr,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "check: {} samples ({} degenerate), seed {}; tolerance = {:.2} se + {} * (sum of 1/n over layers spanned) [family false-alarm {}]",
        m.samples, m.degenerate, m.seed, r.z_crit, policy.kappa, policy.family_alpha
    );
    let _ = writeln!(
        s,
        "{:<14} {:>5} {:>13} {:>13} {:>11} {:>9} {:>11}  verdict",
        "quantity", "l", "predicted", "measured", "se", "z", "tolerance"
    );
    for c in &r.comparisons {
        let _ = writeln!(
            s,
            "{:<14} {:>5} {:>13} {:>13} {:>11} {:>9} {:>11}  {}",
            c.quantity,
            c.layer,
            fmt(c.predicted),
            fmt(c.measured),
            fmt(c.stderr),
            super::fmt_z(c.z),
            fmt(c.tolerance),
            match c.verdict {
                Verdict::Agree => "agree",
                Verdict::Disagree => "DISAGREE",
                Verdict::Inconclusive => "inconclusive",
            }
        );
    }
    let _ = writeln!(
        s,
        "summary: {} agree, {} disagree, {} inconclusive",
        r.agree, r.disagree, r.inconclusive
    );
    for n in &p.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if m.samples.saturating_sub(m.degenerate + m.overflow) < policy.min_samples {
        let _ = writeln!(
            s,
            "note: {} usable samples, below the minimum of {} for a verdict (the standard error is estimated too poorly): every row is inconclusive; use --samples {} or more",
            m.samples.saturating_sub(m.degenerate + m.overflow),
            policy.min_samples,
            policy.min_samples
        );
    }
    let heavy = r
        .comparisons
        .iter()
        .filter(|c| c.quantity.starts_with("||f_l||") && c.verdict == Verdict::Inconclusive)
        .count();
    if heavy > 0 {
        let _ = writeln!(
            s,
            "note: {heavy} rows of ||f_l||^2/n_l are inconclusive: the sample's Var ln ||f_l||^2 exceeds ln(samples), \
             so its mean cannot estimate the expectation (theory/verification.md)"
        );
    }
    if let Some(fr) = &fr {
        let _ = writeln!(
            s,
            "\nfinite width ({:?}): law of ln GSC at this width against the measured distribution [per-comparison false-alarm {:.2e}]",
            fr.method, fr.alpha_per_comparison
        );
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>13} {:>13} {:>11} {:>9} {:>10}  verdict",
            "quantity", "l", "predicted", "measured", "se", "z", "p"
        );
        for c in &fr.comparisons {
            let verdict = match c.verdict {
                FiniteVerdict::Agree => "agree",
                FiniteVerdict::Disagree => "DISAGREE",
                FiniteVerdict::OutsideValidity => "outside validity",
                FiniteVerdict::Inconclusive => "inconclusive",
            };
            if c.verdict == FiniteVerdict::OutsideValidity {
                let _ = writeln!(
                    s,
                    "{:<20} {:>5} {:>13} {:>13} {:>11} {:>9} {:>10}  {}",
                    c.quantity, c.layer, "-", "-", "-", "-", "-", verdict
                );
                continue;
            }
            let _ = writeln!(
                s,
                "{:<20} {:>5} {:>13} {:>13} {:>11} {:>9} {:>10}  {}",
                c.quantity,
                c.layer,
                fmt(c.predicted),
                fmt(c.measured),
                fmt(c.stderr),
                if c.z.is_finite() {
                    super::fmt_z(c.z)
                } else {
                    "-".into()
                },
                if c.p_value.is_finite() {
                    format!("{:.3e}", c.p_value)
                } else {
                    "-".into()
                },
                verdict
            );
        }
        let _ = writeln!(
            s,
            "finite-width summary: {} agree, {} disagree, {} outside validity, {} inconclusive",
            fr.agree, fr.disagree, fr.outside_validity, fr.inconclusive
        );
    }
    Ok(s)
}
