//! Sweeps as job lists: the spec's expansion, its errors, and the promise that a sweep split into jobs
//! (run in any order, by any number of processes, GNU parallel included) and merged prints the bytes the
//! single-process sweep prints.

use gradscale::verify::sweep::{self, Observable};
use std::io::Write;
use std::process::{Command, Stdio};

mod common;
use common::run;

const BIN: &str = env!("CARGO_BIN_EXE_gradscale");

fn example() -> String {
    format!("{}/examples/sweeps/small.toml", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gradscale-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Runs the binary with `stdin` fed in: (exit code, stdout, stderr).
fn run_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

#[test]
fn spec_expands_in_grid_order_with_seeds_from_content() {
    let jobs = sweep::load_spec(std::path::Path::new(&example())).unwrap();
    // 2 act x 1 width x 2 depth x 2 sigma_w2 x 1 observable x 2 seeds.
    assert_eq!(jobs.len(), 16);
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.id, i + 1);
        assert_eq!(j.observable, Observable::LnGsc);
        assert_eq!(j.samples, 16);
        assert_eq!(j.network.depth(), j.label.depth);
    }
    // act slowest, seeds fastest.
    assert_eq!(jobs[0].label.act.unwrap().name(), "tanh");
    assert_eq!(jobs[8].label.act.unwrap().name(), "relu");
    assert_eq!(
        (jobs[0].replicate, jobs[1].replicate, jobs[2].replicate),
        (0, 1, 0)
    );
    assert_eq!(jobs[2].label.sigma_w2, Some(2.0));
    let mut seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 16, "every job its own seed");
    // The same content at another position in another spec: the same seed.
    let other = "[grid]\nact = [\"relu\"]\nwidth = [30]\ndepth = [8]\nsigma_w2 = [2.0]\n\
                 [run]\nobservables = [\"ln-gsc\"]\nsamples = 16\nseeds = [1]\n";
    let o = sweep::expand(other, "other", None).unwrap();
    let same = jobs
        .iter()
        .find(|j| {
            j.label.act == o[0].label.act
                && j.label.depth == 8
                && j.label.sigma_w2 == Some(2.0)
                && j.replicate == 1
        })
        .unwrap();
    assert_eq!(o[0].id, 1);
    assert_ne!(same.id, 1);
    assert_eq!(o[0].seed, same.seed);
    // ... and so the same numbers: the job runs on its seed, not on its id.
    assert_eq!(
        sweep::run_job(&o[0]).unwrap().rows,
        sweep::run_job(same).unwrap().rows
    );
    // A job line carries its network: it reads back to the same job.
    let line = sweep::job_line(&jobs[5]);
    assert!(!line.contains('\n'));
    assert_eq!(sweep::parse_job(&line, "test").unwrap(), jobs[5]);
}

#[test]
fn architecture_files_and_every_layer_expand() {
    let d = scratch("arch");
    std::fs::write(
        d.join("tiny.toml"),
        "[input]\nwidth = 6\n[[layers]]\nrepeat = 3\nops = [{ dense = { width = 6, sigma_w2 = 2.0 } }, { act = \"relu\" }]\n",
    )
    .unwrap();
    let spec = d.join("spec.toml");
    std::fs::write(
        &spec,
        "[grid]\narch = [\"tiny.toml\"]\n[run]\nobservables = [\"every-layer\", \"sq-norm\"]\nsamples = 12\nseeds = [3]\n",
    )
    .unwrap();
    let jobs = sweep::load_spec(&spec).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].label.arch.as_deref(), Some("tiny.toml"));
    assert_eq!(jobs[0].label.depth, 3);
    assert_eq!(jobs[0].observable, Observable::EveryLayer);
    let r = sweep::run_job(&jobs[0]).unwrap();
    // Three quantities per layer 0..=3.
    assert_eq!(r.rows.len(), 12);
    let r = sweep::run_job(&jobs[1]).unwrap();
    assert_eq!(r.rows.len(), 4);
    assert!(r.rows.iter().all(|row| row.quantity == "sq_norm"));
    // The CSV leaves the MLP columns of an architecture file empty.
    let csv = ok(&["sweep", "--spec", spec.to_str().unwrap()]);
    let first = csv.lines().nth(1).unwrap();
    assert!(
        first.starts_with("1,tiny.toml,,,3,,,every-layer,3,"),
        "{first}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_specs_are_one_line_exit_2() {
    let d = scratch("bad");
    let grid = "[grid]\nact = [\"tanh\"]\nwidth = [10]\ndepth = [2]\nsigma_w2 = [1.0]\n";
    // An input data set cannot travel in a job line (its vectors are never serialised): refused.
    std::fs::write(d.join("x.csv"), "1,2,3\n4,5,6\n").unwrap();
    std::fs::write(
        d.join("withdata.toml"),
        "[input]\nwidth = 3\ndata = { path = \"x.csv\" }\n[[layers]]\nops = [{ dense = { width = 3 } }, { act = \"relu\" }]\n",
    )
    .unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[grid]\nact = [\"tanh\"]\nwidth = [10]\nsigma_w2 = [1.0]\n[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0]\n",
            "grid.depth",
        ),
        (
            &format!("{grid}[run]\nobservables = [\"gsc\"]\nsamples = 8\nseeds = [0]\n"),
            "run.observables",
        ),
        (
            &format!("{grid}[run]\nobservables = [\"ln-gsc\"]\nsamples = 1\nseeds = [0]\n"),
            "run.samples",
        ),
        (
            &format!("{grid}[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0, 0]\n"),
            "run.seeds",
        ),
        (
            &format!("{grid}[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0]\nsample = 3\n"),
            "sample",
        ),
        (
            "[grid]\nact = [\"tanh\"]\nwidth = [0]\ndepth = [2]\nsigma_w2 = [1.0]\n[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0]\n",
            "width",
        ),
        (
            "[grid]\narch = [\"nonexistent.toml\"]\n[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0]\n",
            "nonexistent.toml",
        ),
        (
            "[grid]\narch = [\"withdata.toml\"]\n[run]\nobservables = [\"ln-gsc\"]\nsamples = 8\nseeds = [0]\n",
            "no input data file",
        ),
    ];
    for (i, (text, what)) in cases.iter().enumerate() {
        let p = d.join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        for args in [
            vec!["sweep", "--spec", p.to_str().unwrap()],
            vec!["sweep", "--emit-jobs", "--spec", p.to_str().unwrap()],
            vec!["merge", "--spec", p.to_str().unwrap(), "-"],
        ] {
            let (code, stdout, stderr) = run_stdin(&args, "");
            assert_eq!(code, 2, "case {i} {args:?}: {stderr}");
            assert!(stdout.is_empty(), "case {i}: {stdout}");
            assert_eq!(stderr.lines().count(), 1, "case {i}: {stderr}");
            assert!(
                stderr.contains(what),
                "case {i}: {stderr} should name {what}"
            );
        }
    }
    // A job line that is not one.
    for line in ["{}", "not json", "{\"schema\": \"gradscale.predict/1\"}"] {
        let (code, stdout, stderr) = run(&["run-job", "--job", line]);
        assert_eq!(code, 2, "{line}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // A hand-edited job (its seed no longer its content's hash), named by its line on stdin.
    let jobs = ok(&["sweep", "--spec", &example(), "--emit-jobs"]);
    let first = jobs.lines().next().unwrap();
    let edited = first.replace("\"samples\":16", "\"samples\":17");
    assert_ne!(edited, first);
    let (code, stdout, stderr) = run_stdin(&["run-job"], &format!("{first}\n{edited}\n"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "no result before every line is checked");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stdin:2") && stderr.contains("not the hash"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The single-process CSV and JSON, checked against the schema, and the same from `--threads 1`.
fn single_process(spec: &str) -> (String, String) {
    let csv = ok(&["sweep", "--spec", spec]);
    let json = ok(&["sweep", "--spec", spec, "--json"]);
    common::assert_schema("sweep", &json);
    assert_eq!(
        ok(&["sweep", "--spec", spec, "--threads", "1"]),
        csv,
        "results depend on the thread count"
    );
    (csv, json)
}

/// Merges `results` (text of result lines) from two files and from stdin; both must equal `csv`/`json`.
fn assert_merge_equals(
    spec: &str,
    results: &[String],
    csv: &str,
    json: &str,
    dir: &std::path::Path,
) {
    let half = results.len() / 2;
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    std::fs::write(&a, results[..half].concat()).unwrap();
    std::fs::write(&b, results[half..].concat()).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(ok(&["merge", "--spec", spec, b, a]), csv);
    assert_eq!(ok(&["merge", "--spec", spec, "--json", a, b]), json);
    let (code, stdout, stderr) = run_stdin(&["merge", "--spec", spec, "-"], &results.concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, csv);
}

#[test]
fn jobs_run_apart_and_merged_in_any_order_equal_the_single_process_bytes() {
    let spec = example();
    let d = scratch("merge");
    let (csv, json) = single_process(&spec);
    // pandas.read_csv without options: one header, the same number of fields on every line, no quotes.
    let header = csv.lines().next().unwrap();
    let fields = header.split(',').count();
    assert!(csv.lines().all(|l| l.split(',').count() == fields));
    // 16 jobs x 9 layers (depth 4: 5, depth 8: 9; half each) = 8 x 5 + 8 x 9 rows.
    assert_eq!(csv.lines().count(), 1 + 8 * 5 + 8 * 9);
    let jobs_text = ok(&["sweep", "--spec", &spec, "--emit-jobs"]);
    let jobs: Vec<&str> = jobs_text.lines().collect();
    assert_eq!(jobs.len(), 16);
    for j in &jobs {
        common::assert_schema("sweep-job", j);
    }
    // Each job in its own process, in a shuffled order (a fixed permutation: 7 is coprime to 16).
    let mut results: Vec<String> = (0..jobs.len())
        .map(|i| {
            let line = jobs[(7 * i + 3) % jobs.len()];
            let out = ok(&["run-job", "--job", line, "--threads", "1"]);
            assert_eq!(out.lines().count(), 1);
            common::assert_schema("run-job", &out);
            out
        })
        .collect();
    assert_merge_equals(&spec, &results, &csv, &json, &d);
    // Several job lines through one run-job on stdin: the same result lines.
    let (code, stdout, stderr) = run_stdin(&["run-job"], &jobs[..3].join("\n"));
    assert_eq!(code, 0, "{stderr}");
    let mut three: Vec<&str> = results.iter().map(|s| s.as_str()).collect();
    three.sort_by_key(|s| sweep::parse_results(s, "t").unwrap()[0].id);
    assert_eq!(stdout, three[..3].concat());

    // A missing job and a duplicated one: one line naming the ids, exit 2, nothing on stdout.
    let dropped = results.remove(4);
    let dropped_id = sweep::parse_results(&dropped, "t").unwrap()[0].id;
    let all = results.concat();
    let (code, stdout, stderr) = run_stdin(&["merge", "--spec", &spec, "-"], &all);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("missing job ids {dropped_id}")),
        "{stderr}"
    );
    results.push(dropped.clone());
    results.push(dropped);
    let (code, _, stderr) = run_stdin(&["merge", "--spec", &spec, "-"], &results.concat());
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("duplicate job ids {dropped_id}")),
        "{stderr}"
    );
    // A result from another spec's job with the same id: refused, not merged.
    results.pop();
    let mut stale = sweep::parse_results(&results[0], "t").unwrap().remove(0);
    stale.seed ^= 1;
    results[0] = format!("{}\n", sweep::result_line(&stale));
    let (code, _, stderr) = run_stdin(&["merge", "--spec", &spec, "-"], &results.concat());
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("result of job {}", stale.id)),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The documented scale-out, for real: GNU parallel runs the emitted jobs two at a time. CI sets
/// GRADSCALE_REQUIRE_PARALLEL=1 (and installs parallel), so there a missing `parallel` fails this test.
#[test]
fn gnu_parallel_two_at_a_time_merges_to_the_single_process_bytes() {
    let have = Command::new("parallel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("GRADSCALE_REQUIRE_PARALLEL").as_deref() != Ok("1"),
            "GRADSCALE_REQUIRE_PARALLEL=1 but GNU parallel is not on PATH (Debian: apt-get install parallel)"
        );
        eprintln!("skipped: GNU parallel is not on PATH");
        return;
    }
    let spec = example();
    let d = scratch("parallel");
    let (csv, json) = single_process(&spec);
    let jobs = d.join("jobs.jsonl");
    std::fs::write(&jobs, ok(&["sweep", "--spec", &spec, "--emit-jobs"])).unwrap();
    let out = Command::new("parallel")
        .args([
            "--will-cite",
            "-j2",
            "--pipe",
            "-N1",
            BIN,
            "run-job",
            "--threads",
            "1",
        ])
        .stdin(std::fs::File::open(&jobs).unwrap())
        .output()
        .expect("parallel runs");
    assert!(
        out.status.success(),
        "parallel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let results: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
    assert_eq!(results.len(), 16);
    assert_merge_equals(&spec, &results, &csv, &json, &d);
    let _ = std::fs::remove_dir_all(&d);
}
