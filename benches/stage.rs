//! Whole-stage and tool-call overhead, printed as figures (no pass/fail):
//! - a full `hatrack run` of the shipped deployment stage on examples/orders-pipeline (two
//!   hats, two constraint judges, one review agent, the completion judge: 6 exchanges),
//!   release binary, against the fake OpenAI server answering at once — the time hatrack
//!   itself adds to a run (target: under 15 ms);
//! - the same stage replayed from that run's transcript;
//! - the cost of one workspace tool call (`list_files`, `read_file`, `search`) on the example
//!   workspace: what an agent turn adds besides the model.
//!
//! Run: `cargo bench --bench stage` (builds the release binary first).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{answer, stats};
use fake_openai::FakeOpenAi;
use hatrack::tools::{Call, Caps, Workspace};

const RUNS: usize = 20;

fn hatrack(args: &[&str], dir: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("target/release/hatrack")
        .args(args)
        .arg(dir)
        .status()
        .expect("target/release/hatrack runs");
    let took = started.elapsed();
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "hatrack {args:?} failed: {status}"
    );
    took
}

fn tool_calls() {
    let ws = Workspace::new(Path::new("examples/orders-pipeline"), &[], Caps::default())
        .expect("the example workspace");
    let calls = [
        (
            "list_files . depth 3",
            Call::ListFiles {
                path: ".".into(),
                depth: 3,
            },
        ),
        (
            "read_file (200 lines)",
            Call::ReadFile {
                path: "reports/validation-report.md".into(),
                start_line: 1,
                max_lines: 200,
            },
        ),
        (
            "search retries in **",
            Call::Search {
                pattern: "retr(y|ies)".into(),
                path_glob: "**".into(),
            },
        ),
    ];
    println!("workspace tool calls on examples/orders-pipeline");
    for (label, call) in calls {
        let samples: Vec<Duration> = (0..200)
            .map(|_| {
                let started = Instant::now();
                let out = ws.call(&call);
                let took = started.elapsed();
                assert!(out.refused.is_none(), "{label}: {}", out.text);
                took
            })
            .collect();
        let mut sorted = samples;
        sorted.sort();
        println!(
            "  {label}: median {:.1} µs, max {:.1} µs",
            sorted[sorted.len() / 2].as_secs_f64() * 1e6,
            sorted[sorted.len() - 1].as_secs_f64() * 1e6
        );
    }
}

fn main() {
    let built = Command::new("cargo")
        .args(["build", "--release", "--quiet"])
        .status()
        .expect("cargo builds the release binary");
    assert!(built.success());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the fake server");
    let fake = runtime.block_on(FakeOpenAi::with_handler(answer));
    let url = fake.url();
    let tmp = tempfile::tempdir().expect("a temp dir");

    println!("full stage, examples/orders-pipeline, fake model with zero latency, release binary");
    let mut live = Vec::new();
    let mut replays = Vec::new();
    for i in 0..RUNS {
        let dir = tmp.path().join(format!("run-{i}"));
        live.push(hatrack(
            &[
                "--quiet",
                "run",
                "examples/orders-pipeline",
                "--model",
                "bench",
                "--base-url",
                &url,
                "--transcript",
            ],
            &dir,
        ));
        replays.push(hatrack(&["--quiet", "replay"], &dir));
    }
    stats("run (6 exchanges, recorded)", live);
    stats("replay of that run", replays);
    println!("  fake server requests served: {}", fake.count());
    tool_calls();
}
