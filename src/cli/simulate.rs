use super::{fmt, progress_reporter, McArgs, NetArgs};
use gradscale::montecarlo::{simulate_with_progress, Measurement};
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub mc: McArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Exact runs estimated above this get a note on stderr, before they start, with the probe alternative.
const LONG_RUN_SECS: f64 = 30.0;
/// Runs with fewer product flops than this cannot take LONG_RUN_SECS at the rates the engine has shown
/// even on a loaded machine (>= 5 GFLOP/s on exact Jacobians, theory/cost.md): no calibration for them.
const CALIBRATE_ABOVE: f64 = 1.5e11;
/// The probe count the note offers (the bench suite's wide case; its log-bias correction and the probe
/// noise in the standard errors: theory/monte-carlo.md).
const SUGGESTED_PROBES: usize = 16;
/// Share of the product peak the engine reaches on exact Jacobians: 20-80% measured across the bench
/// suite (theory/cost.md); the estimate takes the middle.
const EXACT_SHARE_OF_PEAK: f64 = 0.5;

/// The note for an exact run estimated above LONG_RUN_SECS: its time at the product rate measured now
/// (a 20 ms 256^3 calibration) and the time with probes (products plus the parameter draws, which bound a
/// wide probe run). None for short or probe runs. The estimator is never switched for the user: probes
/// change the noise the standard errors carry, so that is the user's call.
fn long_run_note(
    net: &gradscale::Network,
    opts: &gradscale::montecarlo::McOptions,
    threads: Option<usize>,
) -> Option<String> {
    use gradscale::montecarlo::{draws_per_sample, flops_per_sample, Estimator};
    if opts.estimator != Estimator::Exact {
        return None;
    }
    let samples = opts.samples as f64;
    let flops = flops_per_sample(net, Estimator::Exact) * samples;
    if flops < CALIBRATE_ABOVE {
        return None;
    }
    let threads = threads.unwrap_or_else(rayon::current_num_threads);
    let rate =
        EXACT_SHARE_OF_PEAK * gradscale::bench::gemm_peak(256, threads, 0.02).ok()?.gflops * 1e9;
    let secs = flops / rate;
    if secs.is_nan() || secs <= LONG_RUN_SECS {
        return None;
    }
    // Draw rate of the vectorised normal generator, timed on 2^20 entries.
    let mut buf = vec![0.0; 1 << 20];
    let t = std::time::Instant::now();
    gradscale::montecarlo::fill_normal(&mut buf, 1, 1.0);
    let draw_secs = t.elapsed().as_secs_f64() / buf.len() as f64 / threads as f64;
    let probe_secs = flops_per_sample(net, Estimator::Probes(SUGGESTED_PROBES)) * samples / rate
        + draws_per_sample(net) * samples * draw_secs;
    Some(format!(
        "note: exact Jacobians here are {flops:.1e} flops of products, about {} at the product rate measured just now; \
         --probes {SUGGESTED_PROBES} would take about {} (unbiased, noisier; theory/monte-carlo.md)",
        duration(secs),
        duration(probe_secs)
    ))
}

fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

pub fn measure(net: &gradscale::Network, mc: &McArgs) -> Result<Measurement> {
    let opts = mc.options();
    if let Some(note) = long_run_note(net, &opts, mc.threads) {
        eprintln!("{note}");
    }
    let progress = progress_reporter(opts.samples, "simulate");
    let m = mc.in_pool(|| simulate_with_progress(net, &opts, &progress))?;
    if m.degenerate + m.overflow == m.samples {
        let why = if m.overflow > 0 {
            format!(
                "{} of them overflowed: a layer output left the f64 range (|x| > 1.8e308) or became NaN; \
                 only bias-free nets of linear/relu/leaky-relu layers are rescaled exactly, so lower the depth \
                 or the weight variance, or use `predict`, which works in log space",
                m.overflow
            )
        } else {
            "a layer output or Jacobian was exactly zero".to_string()
        };
        return Err(gradscale::Error::Unsupported(format!(
            "none of the {} samples could be measured ({why}): nothing to report",
            m.samples
        )));
    }
    Ok(m)
}

/// The inputs of a given network: its input rows in order when it has some (then every whole batch of
/// rows once unless --samples says fewer), Gaussian draws otherwise.
pub fn given_inputs<'a>(
    net: &'a gradscale::Network,
    mc: &McArgs,
    opts: &mut gradscale::montecarlo::McOptions,
) -> gradscale::montecarlo::GivenInputs<'a> {
    use gradscale::montecarlo::{given_samples, GivenInputs};
    match &net.input.data {
        Some(d) => {
            opts.samples = mc.samples.unwrap_or(given_samples(net, d.vectors.len()));
            GivenInputs::Rows(&d.vectors)
        }
        None => GivenInputs::Drawn,
    }
}

/// The measurement of a given network (`--weights`): its inputs are the network's input rows in order
/// when it has some (each row once unless --samples says fewer batches), Gaussian draws otherwise.
pub fn measure_given(
    net: &gradscale::Network,
    names: &gradscale::arch::ParamNames,
    mc: &McArgs,
    weights: &std::path::Path,
) -> Result<Measurement> {
    use gradscale::montecarlo::simulate_given;
    let params = gradscale::checkpoint::load_params_file(net, names, weights)?;
    let mut opts = mc.options();
    let inputs = given_inputs(net, mc, &mut opts);
    let progress = progress_reporter(opts.samples, "simulate");
    let m = mc.in_pool(|| simulate_given(net, &params, inputs, &opts, &progress))?;
    if m.degenerate + m.overflow == m.samples {
        return Err(gradscale::Error::Unsupported(format!(
            "none of the {} inputs could be measured (a layer output or Jacobian was zero or not finite)",
            m.samples
        )));
    }
    Ok(m)
}

pub fn run(a: &Args) -> Result<String> {
    let (net, names) = a.net.network_named()?;
    let m = match &a.mc.weights {
        Some(w) => measure_given(&net, &names, &a.mc, w)?,
        None => measure(&net, &a.mc)?,
    };
    if a.json {
        // The one statistic object of every --json output: mean, stderr, median, sd, n.
        let ms = |s: &gradscale::stats::Summary| serde_json::to_value(s).expect("json");
        let layers: Vec<_> = m
            .layers
            .iter()
            .map(|l| {
                json!({
                    "index": l.index,
                    "width": l.width,
                    "sq_norm": ms(&l.sq_norm),
                    "log_sq_norm": ms(&l.log_sq_norm),
                    "log_gsc_to_output": ms(&l.log_gsc_to_output),
                    "log_gsc_from_input": ms(&l.log_gsc_from_input),
                })
            })
            .collect();
        let v = json!({
            "schema": "gradscale.simulate/1",
            "command": "simulate",
            "network": net,
            "samples": m.samples,
            "degenerate": m.degenerate,
            "overflow": m.overflow,
            "seed": m.seed,
            "estimator": m.estimator,
            "weights": a.mc.weights.as_ref().map(|p| p.display().to_string()),
            "layers": layers,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    if let Some(w) = &a.mc.weights {
        let _ = writeln!(
            s,
            "given network: weights from {} (only the inputs vary: {})",
            w.display(),
            match &net.input.data {
                Some(d) => format!("rows of {} in order", d.path),
                None => "Gaussian inputs".into(),
            }
        );
    }
    s.push_str(&table(&m));
    Ok(s)
}

pub fn table(m: &Measurement) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Monte Carlo: {} samples ({} degenerate, {} overflowed, excluded), seed {}, estimator {:?}",
        m.samples, m.degenerate, m.overflow, m.seed, m.estimator
    );
    let _ = writeln!(
        s,
        "{:>5} {:>6} {:>13} {:>11} {:>13} {:>11} {:>13} {:>11}",
        "l", "width", "|f_l|^2/n", "+-se", "lnGSC(L,l)", "+-se", "lnGSC(l,0)", "+-se"
    );
    for l in &m.layers {
        let _ = writeln!(
            s,
            "{:>5} {:>6} {:>13} {:>11} {:>13} {:>11} {:>13} {:>11}",
            l.index,
            l.width,
            super::fmt_pos(l.sq_norm.mean, l.log_sq_norm.mean),
            if l.sq_norm.mean.is_finite() && l.sq_norm.mean > 0.0 {
                fmt(l.sq_norm.stderr)
            } else {
                "-".into()
            },
            fmt(l.log_gsc_to_output.mean),
            fmt(l.log_gsc_to_output.stderr),
            fmt(l.log_gsc_from_input.mean),
            fmt(l.log_gsc_from_input.stderr)
        );
    }
    if m.layers.iter().any(|l| {
        l.log_sq_norm.mean.is_finite() && !(l.sq_norm.mean.is_finite() && l.sq_norm.mean > 0.0)
    }) {
        let _ = writeln!(
            s,
            "|f_l|^2/n beyond the f64 range shows as e^X with X the mean of ln(|f_l|^2/n) (log_sq_norm in --json)"
        );
    }
    s
}
