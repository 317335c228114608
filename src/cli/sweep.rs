//! `sweep`, `run-job` and `merge`: a grid of experiments run in one process, or split into job lines that
//! any scheduler (GNU parallel, a Slurm array) runs, and merged back into the same bytes.

use gradscale::verify::sweep::{self, Job, JobResult};
use gradscale::{Error, Result};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sweep spec (TOML: `[grid]` and `[run]`; see examples/sweeps/small.toml).
    #[arg(long)]
    pub spec: PathBuf,
    /// Print the jobs, one JSON object per line, instead of running them (for `run-job`).
    #[arg(long, conflicts_with = "json")]
    pub emit_jobs: bool,
    /// Print one JSON object instead of the CSV.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = super::args::positive_usize, allow_hyphen_values = true)]
    pub threads: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct RunJobArgs {
    /// One job line of `sweep --emit-jobs`; without it, job lines are read from stdin (one result line
    /// each).
    #[arg(long)]
    pub job: Option<String>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = super::args::positive_usize, allow_hyphen_values = true)]
    pub threads: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The spec the jobs were emitted from: it fixes which jobs must be present and the report's order.
    #[arg(long)]
    pub spec: PathBuf,
    /// Files of result lines (`run-job` output), in any order; `-` reads stdin.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Print one JSON object instead of the CSV.
    #[arg(long)]
    pub json: bool,
}

fn in_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    match threads.map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build()) {
        Some(Ok(pool)) => pool.install(f),
        _ => f(),
    }
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::File {
            path: "stdin".into(),
            message: e.to_string(),
        })?;
    Ok(s)
}

/// The report `sweep` and `merge` both print, from the jobs and their results in job order.
fn report(jobs: &[Job], results: &[JobResult], as_json: bool) -> String {
    if !as_json {
        return sweep::csv(jobs, results);
    }
    let jobs: Vec<_> = jobs
        .iter()
        .zip(results)
        .map(|(j, r)| {
            json!({
                "id": j.id,
                "arch": j.label.arch,
                "act": j.label.act,
                "width": j.label.width,
                "depth": j.label.depth,
                "sigma_w2": j.label.sigma_w2,
                "sigma_b2": j.label.sigma_b2,
                "observable": j.observable,
                "replicate": j.replicate,
                "seed": j.seed,
                "probes": j.probes,
                "samples": r.samples,
                "degenerate": r.degenerate,
                "overflow": r.overflow,
                "rows": r.rows,
            })
        })
        .collect();
    // `merge` must print the bytes `sweep` printed: the command is the sweep's whichever process put the
    // report together, and the spec's path (which may differ between the two) is left out.
    let v = json!({ "schema": "gradscale.sweep/1", "command": "sweep", "jobs": jobs });
    format!("{}\n", serde_json::to_string_pretty(&v).expect("json"))
}

pub fn run(a: &Args) -> Result<String> {
    let jobs = sweep::load_spec(&a.spec)?;
    if a.emit_jobs {
        let mut s = String::new();
        for j in &jobs {
            s.push_str(&sweep::job_line(j));
            s.push('\n');
        }
        return Ok(s);
    }
    let results = in_pool(a.threads, || sweep::run_all(&jobs))?;
    Ok(report(&jobs, &results, a.json))
}

pub fn run_job(a: &RunJobArgs) -> Result<String> {
    let (text, origin) = match &a.job {
        Some(line) => (line.clone(), "--job"),
        None => (read_stdin()?, "stdin"),
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Error::param(
            "run-job",
            "no job line",
            "a line of `gradscale sweep --emit-jobs` on stdin or in --job",
        ));
    }
    // Every line is checked before any job runs: a bad line fails at once, not after hours of work.
    let jobs = lines
        .iter()
        .map(|(i, l)| sweep::parse_job(l, &format!("{origin}:{}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let mut s = String::new();
    for j in &jobs {
        let r = in_pool(a.threads, || sweep::run_job(j))?;
        s.push_str(&sweep::result_line(&r));
        s.push('\n');
    }
    Ok(s)
}

pub fn merge(a: &MergeArgs) -> Result<String> {
    let jobs = sweep::load_spec(&a.spec)?;
    let mut results = Vec::new();
    for p in &a.results {
        let (text, origin) = if p.as_os_str() == "-" {
            (read_stdin()?, "stdin".to_string())
        } else {
            let origin = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| Error::File {
                path: origin.clone(),
                message: e.to_string(),
            })?;
            (text, origin)
        };
        results.extend(sweep::parse_results(&text, &origin)?);
    }
    let results = sweep::merge(&jobs, results)?;
    Ok(report(&jobs, &results, a.json))
}
