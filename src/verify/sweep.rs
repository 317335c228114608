//! Sweeps as job lists: a spec expands into self-contained jobs (one network, one observable, one sample
//! size, one seed), each job runs alone through [`run_job`], and [`merge`] puts the results back in spec
//! order. The in-process sweep runs every job through the same function, and each job's seed is a hash of
//! its content (never of its position or of which process ran it), so a sweep split over processes or
//! machines and merged gives the single-process report bit for bit. Format and method:
//! theory/verification.md, "Sweeps as job lists".

use crate::arch::{MlpSpec, Network};
use crate::error::{Error, Result};
use crate::montecarlo::Estimator;
use crate::Nonlinearity;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// The `schema` tag of a job line (`sweep --emit-jobs`).
pub const JOB_SCHEMA: &str = "gradscale.sweep-job/1";
/// The `schema` tag of a result line (`run-job`).
pub const RESULT_SCHEMA: &str = "gradscale.run-job/1";

/// More jobs than this is a spec typo (a grid axis pasted twice), not a sweep one machine should expand.
const MAX_JOBS: usize = 1_000_000;

/// What a job measures, per layer, next to its closed form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observable {
    /// ln GSC(L, l).
    LnGsc,
    /// ||f_l||^2 / n_l.
    SqNorm,
    /// ln GSC(L, l), ln GSC(l, 0) and ||f_l||^2 / n_l.
    EveryLayer,
}

impl Observable {
    const ACCEPTED: &'static str = "ln-gsc, sq-norm or every-layer";

    fn parse(s: &str) -> Result<Self> {
        match s {
            "ln-gsc" => Ok(Observable::LnGsc),
            "sq-norm" => Ok(Observable::SqNorm),
            "every-layer" => Ok(Observable::EveryLayer),
            o => Err(Error::param("run.observables", o, Self::ACCEPTED)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Observable::LnGsc => "ln-gsc",
            Observable::SqNorm => "sq-norm",
            Observable::EveryLayer => "every-layer",
        }
    }
}

/// How a job's network was given: the grid point of an MLP, or an architecture file (the report's
/// columns; the job itself carries the resolved network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetLabel {
    /// The architecture file as the spec names it (None for a grid MLP).
    pub arch: Option<String>,
    pub act: Option<Nonlinearity>,
    pub width: Option<usize>,
    pub depth: usize,
    pub sigma_w2: Option<f64>,
    pub sigma_b2: Option<f64>,
}

/// One self-contained unit of a sweep: everything `run-job` needs, nothing it must look up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub schema: String,
    /// 1-based position in the spec's expansion: line `id` of the emitted job list (a Slurm array index).
    pub id: usize,
    pub label: NetLabel,
    pub network: Network,
    pub observable: Observable,
    pub samples: usize,
    /// The spec's seed value this job replicates (`run.seeds`).
    pub replicate: u64,
    /// Rademacher probes per Jacobian; 0 for the exact Jacobian.
    pub probes: usize,
    /// [`job_seed`] of the fields above: the sampler's seed.
    pub seed: u64,
}

/// One reported quantity of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// `ln_gsc_to_output` (ln GSC(L, l)), `ln_gsc_from_input` (ln GSC(l, 0)) or `sq_norm` (||f_l||^2/n_l).
    pub quantity: String,
    pub index: usize,
    /// Closed form at infinite width.
    #[serde(with = "exact")]
    pub predicted: f64,
    /// Mean over the non-degenerate sampled networks, its standard error, and their number.
    #[serde(with = "exact")]
    pub measured: f64,
    #[serde(with = "exact")]
    pub stderr: f64,
    pub n: usize,
}

/// What `run-job` prints for one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    pub schema: String,
    pub id: usize,
    /// The job's seed, echoed so that `merge` can tell a result of this spec's job from a stale one.
    pub seed: u64,
    pub samples: usize,
    pub degenerate: usize,
    pub overflow: usize,
    pub rows: Vec<Row>,
}

/// f64 fields of job and result lines: finite values as JSON numbers (serde_json's float_roundtrip reads
/// back the bits that were written), the others as the strings "inf", "-inf", "nan", which JSON numbers
/// cannot carry (serde_json would write null and could not read it back as a float).
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            s.serialize_str("nan")
        } else if *x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Num::deserialize(d)? {
            Num::F(x) => Ok(x),
            Num::S(s) => match s.as_str() {
                "nan" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not a number (expected a JSON number, \"inf\", \"-inf\" or \"nan\")"
                ))),
            },
        }
    }
}

/// The content a job's seed is derived from: everything that changes what it measures, nothing about
/// where it sits in the spec.
#[derive(Serialize)]
struct SeedContent<'a> {
    network: &'a Network,
    observable: Observable,
    samples: usize,
    replicate: u64,
    probes: usize,
}

/// FNV-1a (64-bit) of the job's content as JSON, cut to 53 bits so that the seed survives readers that
/// hold JSON numbers as doubles (JavaScript, a spreadsheet). `sample_rng` mixes the seed with SplitMix64
/// before use, so the cut costs no generator quality.
pub fn job_seed(
    network: &Network,
    observable: Observable,
    samples: usize,
    replicate: u64,
    probes: usize,
) -> u64 {
    let text = serde_json::to_string(&SeedContent {
        network,
        observable,
        samples,
        replicate,
        probes,
    })
    .expect("a network serialises");
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h >> 11
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    grid: Grid,
    run: Run,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    act: Option<Vec<Nonlinearity>>,
    width: Option<Vec<usize>>,
    depth: Option<Vec<usize>>,
    sigma_w2: Option<Vec<f64>>,
    sigma_b2: Option<Vec<f64>>,
    arch: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    observables: Vec<String>,
    samples: usize,
    seeds: Vec<u64>,
    probes: Option<usize>,
}

/// An axis of the grid: present, not empty, no value twice (a repeated value would give two jobs of the
/// same content, hence the same seed: a duplicate, not a replicate).
fn axis<T: PartialEq + Clone + std::fmt::Display>(
    name: &str,
    v: &Option<Vec<T>>,
) -> Result<Vec<T>> {
    let v = v.as_ref().ok_or_else(|| {
        Error::param(
            format!("grid.{name}"),
            "missing",
            "a list (an MLP grid needs act, width, depth and sigma_w2)",
        )
    })?;
    if v.is_empty() {
        return Err(Error::param(
            format!("grid.{name}"),
            "[]",
            "a non-empty list",
        ));
    }
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            return Err(Error::param(format!("grid.{name}"), x, "each value once"));
        }
    }
    Ok(v.clone())
}

/// Expands a sweep spec (TOML: `[grid]` of MLP axes and/or architecture files, `[run]` with observables,
/// samples and seeds) into its jobs, in the report's order: networks (MLP grid points with `act` slowest,
/// then the architecture files) x observables x seeds. `origin` names the spec in errors; `dir` resolves
/// `grid.arch` paths.
pub fn expand(text: &str, origin: &str, dir: Option<&Path>) -> Result<Vec<Job>> {
    let wrap = |e: Error| match e {
        Error::File { .. } => e,
        other => Error::File {
            path: origin.to_string(),
            message: other.to_string(),
        },
    };
    let f: SpecFile = toml::from_str(text).map_err(|e| Error::File {
        path: origin.to_string(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let mut nets: Vec<(NetLabel, Network)> = Vec::new();
    let g = &f.grid;
    let mlp_given =
        g.act.is_some() || g.width.is_some() || g.depth.is_some() || g.sigma_w2.is_some();
    if mlp_given || g.sigma_b2.is_some() {
        let acts = axis("act", &g.act).map_err(wrap)?;
        let widths = axis("width", &g.width).map_err(wrap)?;
        let depths = axis("depth", &g.depth).map_err(wrap)?;
        let sw = axis("sigma_w2", &g.sigma_w2).map_err(wrap)?;
        let sb = match &g.sigma_b2 {
            Some(_) => axis("sigma_b2", &g.sigma_b2).map_err(wrap)?,
            None => vec![0.0],
        };
        for &act in &acts {
            for &width in &widths {
                for &depth in &depths {
                    for &sigma_w2 in &sw {
                        for &sigma_b2 in &sb {
                            let net = Network::mlp(MlpSpec {
                                act,
                                width,
                                depth,
                                sigma_w2,
                                sigma_b2,
                            })
                            .map_err(wrap)?;
                            let label = NetLabel {
                                arch: None,
                                act: Some(act),
                                width: Some(width),
                                depth,
                                sigma_w2: Some(sigma_w2),
                                sigma_b2: Some(sigma_b2),
                            };
                            nets.push((label, net));
                        }
                    }
                }
            }
        }
    }
    if g.arch.is_some() {
        for p in axis("arch", &g.arch).map_err(wrap)? {
            let path = match dir {
                Some(d) => d.join(&p),
                None => p.clone().into(),
            };
            let net = crate::arch::load_file(&path)?;
            if net.input.data.is_some() {
                // Data vectors are never serialised, so a job line could not carry them.
                return Err(wrap(Error::param(
                    "grid.arch",
                    &p,
                    "networks with a Gaussian input model (no input data file)",
                )));
            }
            let label = NetLabel {
                arch: Some(p),
                act: None,
                width: None,
                depth: net.depth(),
                sigma_w2: None,
                sigma_b2: None,
            };
            nets.push((label, net));
        }
    }
    if nets.is_empty() {
        return Err(wrap(Error::param(
            "grid",
            "no network",
            "MLP axes act, width, depth, sigma_w2 and/or arch = [files]",
        )));
    }
    let r = &f.run;
    if r.observables.is_empty() {
        return Err(wrap(Error::param(
            "run.observables",
            "[]",
            Observable::ACCEPTED,
        )));
    }
    let mut observables = Vec::new();
    for o in &r.observables {
        let o = Observable::parse(o).map_err(wrap)?;
        if observables.contains(&o) {
            return Err(wrap(Error::param(
                "run.observables",
                o.name(),
                "each observable once",
            )));
        }
        observables.push(o);
    }
    if !(2..=100_000).contains(&r.samples) {
        return Err(wrap(Error::param(
            "run.samples",
            r.samples,
            "an integer in 2..=100000",
        )));
    }
    let seeds = axis("seeds", &Some(r.seeds.clone())).map_err(|e| {
        wrap(match e {
            Error::InvalidParameter {
                value, accepted, ..
            } => Error::param("run.seeds", value, accepted),
            other => other,
        })
    })?;
    if r.probes == Some(0) {
        return Err(wrap(Error::param(
            "run.probes",
            0,
            "an integer >= 1 (leave it out for exact Jacobians)",
        )));
    }
    let total = nets.len() * observables.len() * seeds.len();
    if total > MAX_JOBS {
        return Err(wrap(Error::param(
            "grid",
            format!("{total} jobs"),
            format!("at most {MAX_JOBS} jobs"),
        )));
    }
    let mut jobs = Vec::with_capacity(total);
    for (label, net) in &nets {
        // As for claims: a batch-coupled net's Jacobian is of the whole batch map (n B wide), so probes.
        let probes = r.probes.unwrap_or(if net.batch_coupled() { 4 } else { 0 });
        for &observable in &observables {
            for &replicate in &seeds {
                jobs.push(Job {
                    schema: JOB_SCHEMA.into(),
                    id: jobs.len() + 1,
                    label: label.clone(),
                    network: net.clone(),
                    observable,
                    samples: r.samples,
                    replicate,
                    probes,
                    seed: job_seed(net, observable, r.samples, replicate, probes),
                });
            }
        }
    }
    Ok(jobs)
}

/// Reads and expands a spec file (see [`expand`]).
pub fn load_spec(path: &Path) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    expand(&text, &path.display().to_string(), path.parent())
}

/// The job line `sweep --emit-jobs` prints (no newline).
pub fn job_line(job: &Job) -> String {
    serde_json::to_string(job).expect("a job serialises")
}

/// Parses a job line (`origin` names it in errors) and checks it is one: its schema tag, a valid network,
/// and a seed that is the hash of its content (a hand-edited line would otherwise run under a seed another
/// job may also get).
pub fn parse_job(line: &str, origin: &str) -> Result<Job> {
    let err = |m: String| Error::File {
        path: origin.to_string(),
        message: m,
    };
    let mut de = serde_json::Deserializer::from_str(line.trim());
    let job: Job = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| err(format!("{} (at {})", e.inner(), e.path())))?;
    if job.schema != JOB_SCHEMA {
        return Err(err(format!(
            "schema `{}` is not accepted (expected {JOB_SCHEMA}: a line of `gradscale sweep --emit-jobs`)",
            job.schema
        )));
    }
    job.network.validate().map_err(|e| err(e.to_string()))?;
    if !(2..=100_000).contains(&job.samples) {
        return Err(err(format!(
            "job {}: samples {} is not accepted (expected an integer in 2..=100000)",
            job.id, job.samples
        )));
    }
    let expected = job_seed(
        &job.network,
        job.observable,
        job.samples,
        job.replicate,
        job.probes,
    );
    if job.seed != expected {
        return Err(err(format!(
            "job {}: seed {} is not the hash of the job's content ({expected}); emit the jobs again from the spec",
            job.id, job.seed
        )));
    }
    Ok(job)
}

/// Runs one job: the closed form and `samples` sampled networks through
/// [`super::predict_and_measure`] (thread-count independent), reported per layer.
pub fn run_job(job: &Job) -> Result<JobResult> {
    let estimator = match job.probes {
        0 => Estimator::Exact,
        p => Estimator::Probes(p),
    };
    let (p, m) = super::predict_and_measure(&job.network, job.samples, job.seed, estimator)?;
    let mut rows = Vec::new();
    let mut push = |quantity: &str, index: usize, predicted: f64, s: &crate::stats::Summary| {
        rows.push(Row {
            quantity: quantity.into(),
            index,
            predicted,
            measured: s.mean,
            stderr: s.stderr,
            n: s.n,
        })
    };
    for (l, (pl, ml)) in p.layers.iter().zip(&m.layers).enumerate() {
        if matches!(job.observable, Observable::LnGsc | Observable::EveryLayer) {
            push(
                "ln_gsc_to_output",
                l,
                pl.log_gsc_to_output,
                &ml.log_gsc_to_output,
            );
        }
        if job.observable == Observable::EveryLayer {
            push(
                "ln_gsc_from_input",
                l,
                pl.log_gsc_from_input,
                &ml.log_gsc_from_input,
            );
        }
        if matches!(job.observable, Observable::SqNorm | Observable::EveryLayer) {
            push("sq_norm", l, pl.sq_norm, &ml.sq_norm);
        }
    }
    Ok(JobResult {
        schema: RESULT_SCHEMA.into(),
        id: job.id,
        seed: job.seed,
        samples: m.samples,
        degenerate: m.degenerate,
        overflow: m.overflow,
        rows,
    })
}

/// The result line `run-job` prints (no newline).
pub fn result_line(r: &JobResult) -> String {
    serde_json::to_string(r).expect("a result serialises")
}

/// Every job of a sweep in one process: the jobs in parallel, each through [`run_job`], results in job
/// order.
pub fn run_all(jobs: &[Job]) -> Result<Vec<JobResult>> {
    jobs.par_iter().map(run_job).collect()
}

/// Result lines (`origin` names them in errors), blank lines skipped.
pub fn parse_results(text: &str, origin: &str) -> Result<Vec<JobResult>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |m: String| Error::File {
            path: format!("{origin}:{}", i + 1),
            message: m,
        };
        let mut de = serde_json::Deserializer::from_str(line.trim());
        let r: JobResult = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| err(format!("{} (at {})", e.inner(), e.path())))?;
        if r.schema != RESULT_SCHEMA {
            return Err(err(format!(
                "schema `{}` is not accepted (expected {RESULT_SCHEMA}: a line of `gradscale run-job`)",
                r.schema
            )));
        }
        out.push(r);
    }
    Ok(out)
}

/// Lists ids compactly for an error message: the first few, then how many more.
fn id_list(ids: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        let _ = write!(s, " and {} more", ids.len() - SHOWN);
    }
    s
}

/// Puts results (in any order) back in the spec's job order, checking that every job is present exactly
/// once and that each result was run from this spec's job (same seed, hence same content).
pub fn merge(jobs: &[Job], results: Vec<JobResult>) -> Result<Vec<JobResult>> {
    let mut slots: Vec<Option<JobResult>> = vec![None; jobs.len()];
    let mut duplicate = Vec::new();
    let mut unknown = Vec::new();
    for r in results {
        if r.id == 0 || r.id > jobs.len() {
            unknown.push(r.id);
            continue;
        }
        let job = &jobs[r.id - 1];
        if r.seed != job.seed {
            return Err(Error::Unsupported(format!(
                "result of job {} has seed {}, but the spec's job {} has seed {}: it was run from another spec \
                 (or an older version of this one); run that job again",
                r.id, r.seed, r.id, job.seed
            )));
        }
        let slot = &mut slots[r.id - 1];
        if slot.is_some() {
            duplicate.push(r.id);
        } else {
            *slot = Some(r);
        }
    }
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(Error::Unsupported(format!(
            "results of jobs the spec does not have (it has jobs 1..={}): {}",
            jobs.len(),
            id_list(&unknown)
        )));
    }
    duplicate.sort_unstable();
    duplicate.dedup();
    let missing: Vec<usize> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| i + 1)
        .collect();
    match (missing.is_empty(), duplicate.is_empty()) {
        (true, true) => Ok(slots.into_iter().map(|s| s.expect("checked")).collect()),
        (false, true) => Err(Error::Unsupported(format!(
            "{} of {} jobs have no result: missing job ids {}",
            missing.len(),
            jobs.len(),
            id_list(&missing)
        ))),
        (true, false) => Err(Error::Unsupported(format!(
            "jobs with more than one result: duplicate job ids {}",
            id_list(&duplicate)
        ))),
        (false, false) => Err(Error::Unsupported(format!(
            "missing job ids {}; duplicate job ids {}",
            id_list(&missing),
            id_list(&duplicate)
        ))),
    }
}

/// A CSV field: quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A float in Rust's debug form: the shortest decimal that reads back to the same bits, in exponent form
/// when very small or large (the display form would spell out 1e-300 digit by digit); `NaN`, `inf`, `-inf`
/// otherwise, all of which pandas reads as floats.
fn csv_float(x: f64) -> String {
    format!("{x:?}")
}

/// The sweep's CSV: a header, then one row per job x reported quantity x layer, in job order. Columns
/// that do not apply (act, width, sigma_w2, sigma_b2 of an architecture file; arch of a grid MLP) are
/// empty, which `pandas.read_csv` reads as missing.
pub fn csv(jobs: &[Job], results: &[JobResult]) -> String {
    let mut s = String::from(
        "job,arch,act,width,depth,sigma_w2,sigma_b2,observable,replicate,seed,samples,degenerate,overflow,\
         quantity,layer,predicted,measured,stderr,n\n",
    );
    for (j, r) in jobs.iter().zip(results) {
        let l = &j.label;
        let opt = |x: Option<f64>| x.map(csv_float).unwrap_or_default();
        let prefix = format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            j.id,
            csv_field(l.arch.as_deref().unwrap_or("")),
            l.act.map(|a| csv_field(&a.name())).unwrap_or_default(),
            l.width.map(|w| w.to_string()).unwrap_or_default(),
            l.depth,
            opt(l.sigma_w2),
            opt(l.sigma_b2),
            j.observable.name(),
            j.replicate,
            j.seed,
            r.samples,
            r.degenerate,
            r.overflow,
        );
        for row in &r.rows {
            let _ = writeln!(
                s,
                "{prefix},{},{},{},{},{},{}",
                row.quantity,
                row.index,
                csv_float(row.predicted),
                csv_float(row.measured),
                csv_float(row.stderr),
                row.n
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_round_trip_through_result_lines() {
        let r = JobResult {
            schema: RESULT_SCHEMA.into(),
            id: 1,
            seed: 7,
            samples: 2,
            degenerate: 0,
            overflow: 0,
            rows: vec![Row {
                quantity: "sq_norm".into(),
                index: 0,
                predicted: f64::INFINITY,
                measured: 0.1 + 0.2,
                stderr: f64::NAN,
                n: 0,
            }],
        };
        let back = parse_results(&result_line(&r), "t").unwrap().remove(0);
        assert_eq!(back.rows[0].predicted, f64::INFINITY);
        assert_eq!(back.rows[0].measured.to_bits(), (0.1f64 + 0.2).to_bits());
        assert!(back.rows[0].stderr.is_nan());
    }
}
