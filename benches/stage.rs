//! Whole-stage and tool-call overhead, printed as figures (no pass/fail):
//! - a full `hatrack run` of the shipped deployment stage on examples/orders-pipeline (two
//!   hats, two constraint judges, one review agent, the completion judge: 6 exchanges),
//!   release binary, against the fake OpenAI server answering at once — the time hatrack
//!   itself adds to a run (target: under 15 ms);
//! - the same stage replayed from that run's transcript;
//! - hatrack's CPU per exchange: user + system time of a `--samples 32` run minus a
//!   `--samples 1` run, per extra exchange (target: under 0.3 ms);
//! - the floor under that figure: the CPU of a bare reqwest client posting the same request
//!   body (the run's largest) to the same fake server and parsing its answer, nothing else —
//!   what any Rust client pays per exchange of that size before hashing, recording or
//!   validating anything;
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

/// User + system CPU time of the children this process has waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid start.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// hatrack's CPU (user + system) for a live run of the stage with `samples` per judging step,
/// and the exchanges it made.
fn cpu_of_run(url: &str, samples: &str, prompts: &[&str], dir: &Path) -> (Duration, usize) {
    let before = children_cpu();
    let mut args = vec![
        "--quiet",
        "run",
        "examples/orders-pipeline",
        "--model",
        "bench",
        "--samples",
        samples,
        "--base-url",
        url,
    ];
    args.extend(prompts);
    args.push("--transcript");
    hatrack(&args, dir);
    let cpu = children_cpu() - before;
    let exchanges = std::fs::read_to_string(dir.join("exchanges.jsonl"))
        .expect("the run's transcript")
        .lines()
        .count();
    (cpu, exchanges)
}

/// CPU per exchange: the median extra CPU of a 32-sample run over a 1-sample run, per extra
/// exchange (what hatrack spends per exchange once a run is under way), for the shipped
/// layout streamed (the fake sends each answer in small deltas, as providers do) and not, and
/// for the per-step one (`--prompts benches/layouts/per-step`).
fn cpu_per_exchange(url: &str, tmp: &Path) {
    for (label, prompts) in [
        ("shared dossier (shipped)", &[][..]),
        ("shared dossier, --no-stream", &["--no-stream"][..]),
        (
            "per-step layout",
            &["--prompts", "benches/layouts/per-step"][..],
        ),
    ] {
        println!("hatrack's CPU per exchange, {label} (user + system, median of 7)");
        cpu_per_exchange_of(url, prompts, &tmp.join(label.replace(' ', "-")));
    }
}

fn cpu_per_exchange_of(url: &str, prompts: &[&str], tmp: &Path) {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut one, mut many) = (Vec::new(), Vec::new());
    let (mut n_one, mut n_many) = (0, 0);
    for i in 0..7 {
        let (cpu, n) = cpu_of_run(url, "1", prompts, &tmp.join(format!("cpu-1-{i}")));
        one.push(cpu);
        n_one = n;
        let (cpu, n) = cpu_of_run(url, "32", prompts, &tmp.join(format!("cpu-32-{i}")));
        many.push(cpu);
        n_many = n;
    }
    let (one, many) = (median(one), median(many));
    let per = many.saturating_sub(one).as_secs_f64() * 1000.0 / (n_many - n_one) as f64;
    println!(
        "  --samples 1: {:.1} ms for {n_one} exchanges; --samples 32: {:.1} ms for {n_many}",
        one.as_secs_f64() * 1000.0,
        many.as_secs_f64() * 1000.0
    );
    println!("  => {per:.3} ms per extra exchange (target < 0.3 ms)");
}

/// CPU (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid start.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is a valid `who` on Linux.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The floor: a bare reqwest client (one thread, four requests in flight, as hatrack's
/// samples run) posting the run's largest request body, without streaming, and parsing the
/// answer. Measured on its own thread, so the fake server's work is not counted.
fn http_floor(url: &str, run: &Path) {
    let transcript = std::fs::read_to_string(run.join("exchanges.jsonl")).expect("a transcript");
    let mut body: serde_json::Value = transcript
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["request"].clone())
        .max_by_key(|r| r.to_string().len())
        .expect("a recorded request");
    if let Some(fields) = body.as_object_mut() {
        fields.remove("stream");
        fields.remove("stream_options");
    }
    let bytes = serde_json::to_vec(&body).expect("a body");
    let endpoint = format!("{url}/chat/completions");
    const N: usize = 124;
    let per = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                hatrack::install_crypto_provider();
                let client = reqwest::Client::new();
                let post = || async {
                    let answer = client
                        .post(&endpoint)
                        .header("content-type", "application/json")
                        .body(serde_json::to_vec(&body).expect("a body"))
                        .send()
                        .await
                        .expect("the fake answers");
                    let text = answer.bytes().await.expect("an answer");
                    serde_json::from_slice::<serde_json::Value>(&text).expect("JSON")
                };
                runtime.block_on(async {
                    use futures::StreamExt;
                    post().await;
                    let before = thread_cpu();
                    futures::stream::iter((0..N).map(|_| post()))
                        .buffer_unordered(4)
                        .collect::<Vec<_>>()
                        .await;
                    (thread_cpu() - before) / N as u32
                })
            })
            .join()
            .expect("the client thread")
    });
    println!(
        "the floor: a bare reqwest POST of the run's largest request ({} bytes) and its parsed answer",
        bytes.len()
    );
    println!(
        "  => {:.3} ms CPU per request ({N} requests, user + system)",
        per.as_secs_f64() * 1000.0
    );
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
    cpu_per_exchange(&url, tmp.path());
    http_floor(&url, &tmp.path().join("run-0"));
    tool_calls();
}
