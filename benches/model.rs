//! Model-layer overhead, printed as figures (no pass/fail):
//! - per-exchange cost of hatrack's client (async-openai + our transport) against the fake
//!   OpenAI server answering with zero latency, without and with the transcript recorder
//!   (which flushes and fsyncs each line);
//! - replay lookups per second in a 1000-exchange transcript (hashing + index lookup), and
//!   the time to read that transcript.
//!
//! Run: `cargo bench --bench model`.

#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_openai::{FakeOpenAi, Reply};
use hatrack::model::{
    read_exchanges, ChatModel, LiveModel, ModelRequest, ModelSettings, RecordMode, Recorder,
    TranscriptModel,
};
use hatrack::secrets::Scrubber;
use serde_json::json;

const EXCHANGES: usize = 500;
const TRANSCRIPT: usize = 1000;

fn request(i: usize) -> ModelRequest {
    ModelRequest {
        step: format!("hat/step-{}", i % 7),
        attempt: 1,
        body: json!({
            "model": "bench",
            "messages": [
                {"role": "system", "content": "You are the reliability reviewer. Judge each check."},
                {"role": "user", "content": format!("Request number {i}. {}", "Some workspace text. ".repeat(50))}
            ],
            "temperature": 0.0,
            "seed": 42
        }),
    }
}

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let median = samples[n / 2];
    let p95 = samples[n * 95 / 100];
    println!(
        "{label:<48} n={n:<5} mean {:>8.1} µs  median {:>8.1} µs  p95 {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6,
        p95.as_secs_f64() * 1e6
    );
}

async fn time_exchanges(model: &dyn ChatModel) -> Vec<Duration> {
    // Warm up the connection pool first.
    for i in 0..20 {
        model.complete(&request(i)).await.expect("warm-up exchange");
    }
    let mut samples = Vec::with_capacity(EXCHANGES);
    for i in 0..EXCHANGES {
        let started = Instant::now();
        model.complete(&request(i)).await.expect("exchange");
        samples.push(started.elapsed());
    }
    samples
}

/// Building the client, which a run does once: for an `https` base URL it loads the
/// system's root certificates; for `http` it loads none. For comparison, a default
/// `reqwest::Client::new()` (one load of the system's roots): until 2026-11-28 every run
/// built two of those (async-openai's own default client, then ours), even for http.
fn time_client_builds() {
    let samples: Vec<Duration> = (0..30)
        .map(|_| {
            let started = Instant::now();
            let _ = reqwest::Client::new();
            started.elapsed()
        })
        .collect();
    stats("reqwest::Client::new() (loads the CA store)", samples);
    for url in ["http://127.0.0.1:9/v1", "https://127.0.0.1:9/v1"] {
        let settings = ModelSettings::new("bench", url);
        let samples: Vec<Duration> = (0..30)
            .map(|_| {
                let started = Instant::now();
                LiveModel::new(&settings).expect("client");
                started.elapsed()
            })
            .collect();
        stats(&format!("build the client for {url}"), samples);
    }
}

fn main() {
    hatrack::install_crypto_provider();
    time_client_builds();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let answer = Reply::chat(r#"{"verdict": "pass", "finding": "fine"}"#);
        let fake = FakeOpenAi::with_handler(move |_| answer.clone()).await;
        let settings = ModelSettings::new("bench", fake.url());
        let live: Arc<dyn ChatModel> = Arc::new(LiveModel::new(&settings).expect("client"));

        println!("model layer against the fake server (zero latency), {EXCHANGES} exchanges each");
        stats("live client only", time_exchanges(live.as_ref()).await);

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("exchanges.jsonl");
        let recording = TranscriptModel::new(
            RecordMode::All,
            None,
            Some(Recorder::create(&path, Scrubber::default()).expect("recorder")),
            Some(live.clone()),
        );
        stats(
            "live client + recorder (flush + fsync per line)",
            time_exchanges(&recording).await,
        );
        let key = "sk-bench-key-0123456789abcdef".to_string();
        let scrubbing = TranscriptModel::new(
            RecordMode::All,
            None,
            Some(
                Recorder::create(
                    dir.path().join("scrubbed.jsonl"),
                    Scrubber::new(vec![key], vec![regex::Regex::new(r"ghp_[A-Za-z0-9]{10,}").unwrap()]),
                )
                .expect("recorder"),
            ),
            Some(live.clone()),
        );
        stats(
            "live client + recorder + scrubber",
            time_exchanges(&scrubbing).await,
        );

        // A 1000-exchange transcript, then replay lookups against it.
        let big = dir.path().join("big.jsonl");
        let recorder = TranscriptModel::new(
            RecordMode::All,
            None,
            Some(Recorder::create(&big, Scrubber::default()).expect("recorder")),
            Some(live.clone()),
        );
        for i in 0..TRANSCRIPT {
            recorder.complete(&request(i)).await.expect("record");
        }
        let started = Instant::now();
        let exchanges = read_exchanges(&big).expect("read transcript");
        let read_time = started.elapsed();
        println!(
            "read a {}-exchange transcript ({} KiB)          {:>8.1} ms",
            exchanges.len(),
            std::fs::metadata(&big).map(|m| m.len() / 1024).unwrap_or(0),
            read_time.as_secs_f64() * 1e3
        );
        let replay = TranscriptModel::new(RecordMode::None, Some((big.clone(), exchanges)), None, None);
        let requests: Vec<ModelRequest> = (0..TRANSCRIPT).map(request).collect();
        let started = Instant::now();
        for r in requests.iter().rev() {
            replay.complete(r).await.expect("replay hit");
        }
        let elapsed = started.elapsed();
        println!(
            "replay lookups (hash + match) in {TRANSCRIPT} exchanges    {:>8.0} lookups/s  ({:.1} µs each)",
            TRANSCRIPT as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / TRANSCRIPT as f64
        );
        println!("fake server requests served: {}", fake.count());
    });
}
