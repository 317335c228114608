//! The README's console blocks are what the binary prints.
//!
//! Rules (kept simple so that anyone adding a block knows what is checked):
//! - Only blocks fenced as ```` ```console ```` are checked; ```` ```sh ````/```` ```text ```` blocks are not.
//! - In a console block, a line `$ gradscale ARGS...` is run as the built binary with ARGS split on
//!   whitespace (no shell: no quotes, pipes, globs or variables), from the repository root. It must exit
//!   with code 0, and the lines after it, up to the next `$ ` line or the block's end, must equal its
//!   stdout line by line (trailing whitespace ignored; stderr is not compared).
//! - A line that is exactly `...` stands for any number of lines (zero or more) of the output.
//! - Any other `$ ` line (e.g. `$ cargo install --path .`) is not run and must have no output lines.
//!
//! A command must be quick (it runs in the debug-profile test build): keep samples and depths small.

use std::process::Command;

struct Case {
    line: usize,
    args: Vec<String>,
    expected: Vec<String>,
}

fn console_blocks(readme: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut in_block = false;
    let mut current: Option<Case> = None;
    for (i, raw) in readme.lines().enumerate() {
        let line = raw.trim_end();
        if !in_block {
            in_block = line == "```console";
            continue;
        }
        if line == "```" {
            in_block = false;
            cases.extend(current.take());
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            cases.extend(current.take());
            let words: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            current = Some(Case {
                line: i + 1,
                args: words,
                expected: Vec::new(),
            });
        } else {
            match current.as_mut() {
                Some(c) => c.expected.push(line.to_string()),
                None => panic!("README.md:{}: output before any `$ ` command", i + 1),
            }
        }
    }
    assert!(!in_block, "README.md: a ```console block is not closed");
    cases
}

/// Matches `actual` against `expected`, where an `...` line stands for zero or more lines.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.first() {
        None => actual.is_empty(),
        Some(e) if e == "..." => (0..=actual.len()).any(|k| matches(&expected[1..], &actual[k..])),
        Some(e) => actual
            .first()
            .is_some_and(|a| a.trim_end() == e && matches(&expected[1..], &actual[1..])),
    }
}

#[test]
fn readme_console_blocks_are_what_the_binary_prints() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let cases = console_blocks(&readme);
    assert!(!cases.is_empty(), "no console blocks found");
    let mut ran = 0;
    for c in &cases {
        if c.args.first().map(String::as_str) != Some("gradscale") {
            assert!(
                c.expected.is_empty(),
                "README.md:{}: `$ {}` is not run, so it cannot show output",
                c.line,
                c.args.join(" ")
            );
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_gradscale"))
            .args(&c.args[1..])
            .current_dir(root)
            .output()
            .expect("binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "README.md:{}: `{}` failed: {}",
            c.line,
            c.args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let actual: Vec<&str> = stdout.lines().collect();
        assert!(
            matches(&c.expected, &actual),
            "README.md:{}: `{}` prints\n{}\nbut the README shows\n{}",
            c.line,
            c.args.join(" "),
            stdout,
            c.expected.join("\n")
        );
        ran += 1;
    }
    assert!(ran >= 1);
}

#[test]
fn the_matcher_rejects_what_differs() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&e(&["a", "...", "d"]), &["a", "b", "c", "d"]));
    assert!(matches(&e(&["a", "...", "d"]), &["a", "d"]));
    assert!(matches(&e(&["a", "..."]), &["a", "b"]));
    assert!(!matches(&e(&["a", "...", "d"]), &["a", "b", "c"]));
    assert!(!matches(&e(&["a", "b"]), &["a", "b", "c"]));
    assert!(!matches(&e(&["a", "x"]), &["a", "b"]));
    assert!(matches(&e(&["a"]), &["a   "]));
}
