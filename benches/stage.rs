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

#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fake_openai::{FakeOpenAi, Reply, SeenRequest};
use hatrack::tools::{Call, Caps, Workspace};
use serde_json::{json, Value};

const RUNS: usize = 20;

/// A schema-valid answer for any step (a stand-in for a model, not a model): hats write one
/// artifact, judges answer `unknown` for every id their schema lists.
fn answer(req: &SeenRequest) -> Reply {
    let format = &req.body["response_format"]["json_schema"];
    let props = &format["schema"]["properties"];
    let content = if format["name"] == "hat_answer" {
        json!({"summary": "bench", "artifacts": [{"path": "plan.md", "content": "# Plan\nRetries: 3."}]})
    } else {
        let (key, extra) = match format["name"].as_str() {
            Some("review_answer") => ("checks", json!({"severity": "low"})),
            Some("signal_answer") => ("requirements", json!({})),
            _ => ("constraints", json!({})),
        };
        let ids: Vec<Value> = props[key]["items"]["properties"]["id"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let items: Vec<Value> = ids
            .into_iter()
            .map(|id| {
                let mut v =
                    json!({"id": id, "verdict": "unknown", "finding": "bench", "evidence": []});
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                v
            })
            .collect();
        json!({"summary": "bench", key: items})
    };
    Reply::chat(content.to_string())
}

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label}: min {:.2} ms, median {:.2} ms, max {:.2} ms ({} runs)",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
}

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
