use super::args::positive_usize;
use gradscale::bench::{self, CaseResult, FmaPeak, Peak};
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Threads for the Monte Carlo cases (default: all cores). The peak is measured on 1 thread and on this many.
    #[arg(long, value_parser = positive_usize, allow_hyphen_values = true)]
    pub threads: Option<usize>,
    /// Only the headline case (tanh, width 100, depth 50, 200 samples, exact), the batch-norm case (examples/batch-relu.toml, 2 samples) and the closed-form grid.
    #[arg(long)]
    pub quick: bool,
    /// Also run the scaling sweeps (time against width, depth, samples, batch) and fit exponents.
    #[arg(long)]
    pub sweep: bool,
    /// Side of the closed-form (sigma_w^2, sigma_b^2) grid: side^2 points, each predicted to depth 50.
    #[arg(long, default_value_t = 100, value_parser = positive_usize, allow_hyphen_values = true)]
    pub grid: usize,
    /// Skip the Monte Carlo cases (the closed-form grid only; the peak is still measured).
    #[arg(long)]
    pub grid_only: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let threads = a.threads.unwrap_or_else(rayon::current_num_threads);
    // The closed-form grid runs first: after the parallel matrix products, their worker threads keep
    // spinning for a while and slowed this short, allocation-heavy case by 2-3x (measured).
    let grid = bench::in_pool(threads, || bench::phase_grid(a.grid, 50))??;
    let peak1 = bench::gemm_peak(1024, 1, 1.0)?;
    let peak_n = if threads > 1 {
        bench::gemm_peak(1536, threads, 1.5)?
    } else {
        peak1.clone()
    };
    // The physical reference: vector FMA throughput on the same thread counts, measured in this run.
    let fma1 = bench::fma_peak(1, 0.5);
    let fma_n = if threads > 1 {
        bench::fma_peak(threads, 0.75)
    } else {
        fma1.clone()
    };
    let cases = if a.grid_only {
        vec![]
    } else if a.quick {
        bench::quick_cases()
    } else {
        bench::suite(false)
    };
    let mut results: Vec<CaseResult> = Vec::new();
    if !a.grid_only {
        results.push(bench::collapse_prediction(1000)?);
        results.push(bench::collapse_prediction_chaotic_bias(1000)?);
    }
    for c in &cases {
        results.push(bench::in_pool(threads, || {
            bench::run_case(c, peak_n.gflops, fma_n.gflops)
        })??);
    }
    // Training: one epoch of a depth-50, width-100 ReLU MLP, batch 128, on digits and Fashion-MNIST.
    let mut notes = Vec::new();
    if !a.grid_only {
        for name in ["digits", "fashion-mnist"] {
            let prep = match gradscale::data::prepare(
                name,
                None,
                &Default::default(),
                gradscale::data::Split::Fixed,
                gradscale::data::Standardize::Global,
            ) {
                Ok(p) => p,
                Err(e) => {
                    notes.push(format!("train on {name}: not installed ({e})"));
                    continue;
                }
            };
            let repeats = if prep.train.len() > 10_000 { 1 } else { 3 };
            results.push(bench::in_pool(threads, || {
                bench::train_case(
                    &format!("train epoch {name} d50 w100 b128"),
                    &prep.train,
                    50,
                    100,
                    128,
                    repeats,
                    (peak_n.gflops, fma_n.gflops),
                )
            })??);
        }
    }
    results.push(grid);
    let sweeps = if a.sweep {
        Some(bench::in_pool(threads, bench::scaling_sweeps)??)
    } else {
        None
    };
    if a.json {
        let v = json!({
            "schema": "gradscale.bench/1",
            "command": "bench",
            "threads": threads,
            "peak": [peak1, peak_n],
            "fma_peak": [fma1, fma_n],
            "cases": results,
            "sweeps": sweeps,
            "notes": notes,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = table(
        threads,
        &[peak1, peak_n],
        &[fma1, fma_n],
        &results,
        sweeps.as_deref(),
    );
    for n in notes {
        let _ = writeln!(s, "note: {n}");
    }
    Ok(s)
}

fn table(
    threads: usize,
    peaks: &[Peak],
    fma: &[FmaPeak],
    results: &[CaseResult],
    sweeps: Option<&[bench::Sweep]>,
) -> String {
    let mut s = String::new();
    for p in peaks {
        let _ = writeln!(
            s,
            "f64 product peak ({}x{0}x{0}, {} thread{}): {:.1} GFLOP/s",
            p.n,
            p.threads,
            if p.threads == 1 { "" } else { "s" },
            p.gflops
        );
    }
    for p in fma {
        let _ = writeln!(
            s,
            "f64 FMA peak ({}, {} chains per thread, {} thread{}): {:.1} GFLOP/s",
            p.isa,
            p.chains,
            p.threads,
            if p.threads == 1 { "" } else { "s" },
            p.gflops
        );
    }
    let _ = writeln!(
        s,
        "cases on {threads} thread(s), as fractions of the {threads}-thread product and FMA peaks:"
    );
    let _ = writeln!(
        s,
        "{:<40} {:>10} {:>10} {:>9} {:>9}",
        "case", "seconds", "GFLOP/s", "product", "FMA"
    );
    for r in results {
        if r.flops > 0.0 {
            let _ = writeln!(
                s,
                "{:<40} {:>10.3} {:>10.1} {:>8.1}% {:>8.1}%",
                r.name,
                r.seconds,
                r.gflops,
                100.0 * r.fraction_of_peak,
                100.0 * r.fraction_of_fma_peak
            );
        } else {
            let _ = writeln!(
                s,
                "{:<40} {:>10.3} {:>10} {:>9} {:>9}",
                r.name, r.seconds, "-", "-", "-"
            );
        }
    }
    if let Some(sw) = sweeps {
        let _ = writeln!(
            s,
            "scaling (seconds; exponent = slope of ln time on ln parameter):"
        );
        for w in sw {
            let pts: Vec<String> = w
                .values
                .iter()
                .zip(&w.seconds)
                .map(|(v, t)| format!("{v}:{t:.4}"))
                .collect();
            let _ = writeln!(
                s,
                "  {:<20} [{}] exponent {:.2}   {}",
                w.parameter,
                w.fixed,
                w.exponent,
                pts.join(" ")
            );
        }
    }
    s
}
