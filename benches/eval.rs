//! How long `hatrack eval --from` takes to score 100 recorded cases × 20 labelled
//! requirements: reading every report.json, checking the labels against them, scoring
//! (the bootstrap included) and rendering eval.json/md/html and junit.xml. Target: under a
//! second; the bench exits 1 when the median is not.
//!
//! The run directories are synthetic fixtures written here (reports as a run writes them,
//! with verdicts drawn from a fixed pattern), not the output of a model.
//!
//! Run with `cargo bench --bench eval`.

use std::path::Path;
use std::time::{Duration, Instant};

use hatrack::eval::{self, labels, render, Thresholds};

const CASES: usize = 100;
const REQUIREMENTS: usize = 20;
const ITERATIONS: usize = 5;

fn id(r: usize) -> String {
    match r % 3 {
        0 => format!("hat{}/anti-pattern/{}", r % 2, r),
        1 => format!("agent/check/{r}"),
        _ => format!("signal/{r}"),
    }
}

fn word(bit: bool) -> &'static str {
    if bit {
        "met"
    } else {
        "unmet"
    }
}

/// One case: its labels.toml and workspace in the suite, its run directory in the eval.
fn write_case(suite: &Path, runs: &Path, c: usize) {
    let name = format!("case-{c:03}");
    std::fs::create_dir_all(suite.join(&name).join("workspace")).unwrap();
    let split = if c.is_multiple_of(3) {
        "holdout"
    } else {
        "dev"
    };
    let mut toml = format!("split = \"{split}\"\ngate = \"not met\"\n[expect]\n");
    let mut why = String::from("[why]\n");
    let mut requirements = Vec::new();
    for r in 0..REQUIREMENTS {
        let expected = (c + r).is_multiple_of(2);
        let got = if (c * 7 + r * 3).is_multiple_of(5) {
            "unknown"
        } else {
            word(expected ^ (c + r).is_multiple_of(7))
        };
        toml.push_str(&format!("{:?} = {:?}\n", id(r), word(expected)));
        why.push_str(&format!("{:?} = \"notes.md: line {r}\"\n", id(r)));
        requirements.push(serde_json::json!({
            "id": id(r),
            "kind": eval::kind_of(&id(r)),
            "verdict": got,
            "finding": format!("synthetic finding {r} of case {c}"),
            "evidence": [{"source": "notes.md", "quote": "a synthetic quote of a few words", "grounded": true}],
        }));
    }
    std::fs::write(suite.join(&name).join("labels.toml"), toml + &why).unwrap();
    let report = serde_json::json!({
        "stage": {"name": "bench", "definition_digest": "sha256:bench"},
        "run": {"model": "synthetic", "judge_model": "synthetic", "samples": 1},
        "outcome": {"exit_code": 1, "signal_met": false},
        "requirements": requirements,
    });
    std::fs::create_dir_all(runs.join(&name)).unwrap();
    std::fs::write(runs.join(&name).join("report.json"), report.to_string()).unwrap();
}

fn score(suite_dir: &Path, runs_dir: &Path) -> usize {
    let suite = labels::load_suite(suite_dir).unwrap();
    let runs = eval::read_runs(runs_dir, &suite).unwrap();
    eval::check_recorded(&suite, suite_dir, &runs, false).unwrap();
    let report = eval::evaluate(&suite, &runs, &Thresholds::default());
    render::all(&report)
        .iter()
        .map(|(_, text)| text.len())
        .sum()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let (suite, runs) = (tmp.path().join("suite"), tmp.path().join("runs"));
    for c in 0..CASES {
        write_case(&suite, &runs, c);
    }
    let bytes = score(&suite, &runs);
    let mut times: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(score(&suite, &runs));
            start.elapsed()
        })
        .collect();
    times.sort();
    let median = times[ITERATIONS / 2];
    println!(
        "eval: scored {CASES} recorded cases × {REQUIREMENTS} requirements (labels read, reports read, scored, {bytes} bytes rendered) in {:.1} ms (median of {ITERATIONS}; min {:.1} ms)",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
    if median >= Duration::from_secs(1) {
        eprintln!("too slow: scoring must take under a second");
        std::process::exit(1);
    }
}
