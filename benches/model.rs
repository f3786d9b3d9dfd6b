//! Model-layer overhead, printed as figures (no pass/fail):
//! - per-exchange cost of hatrack's client (async-openai + our transport) against the fake
//!   OpenAI server answering with zero latency, without and with the transcript recorder
//!   (one `write` per line, fdatasync at most once per second), and the difference: the
//!   overhead the recorder adds per exchange (target: under 0.3 ms);
//! - the recorder alone, per exchange, with today's policy and with an fdatasync after every
//!   line (the policy before: what durability per line would cost on this disk);
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
    read_exchanges, ChatModel, Exchange, LiveModel, ModelRequest, ModelSettings, RecordMode,
    Recorder, TranscriptModel,
};
use hatrack::secrets::Scrubber;
use serde_json::json;

const EXCHANGES: usize = 500;
const TRANSCRIPT: usize = 1000;

fn request(i: usize) -> ModelRequest {
    ModelRequest::new(
        format!("hat/step-{}", i % 7),
        1,
        json!({
            "model": "bench",
            "messages": [
                {"role": "system", "content": "You are the reliability reviewer. Judge each check."},
                {"role": "user", "content": format!("Request number {i}. {}", "Some workspace text. ".repeat(50))}
            ],
            "temperature": 0.0,
            "seed": 42
        }),
    )
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len() as u32
}

fn stats(label: &str, mut samples: Vec<Duration>) -> Vec<Duration> {
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
    samples
}

fn exchange(i: usize) -> Exchange {
    let r = request(i);
    Exchange {
        step: r.step,
        attempt: 1,
        request_hash: format!("{i:064x}"),
        request: r.body,
        response: Some(
            json!({"choices": [{"message": {"role": "assistant", "content": "{\"verdict\": \"pass\"}"}}]}),
        ),
        error: None,
        usage: Default::default(),
        duration_ms: 1,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        replayed: false,
        streamed: false,
    }
}

fn time_recorder(recorder: &Recorder, sync_each: bool) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(EXCHANGES);
    for i in 0..EXCHANGES {
        let e = exchange(i);
        let started = Instant::now();
        recorder.record(&e).expect("record");
        if sync_each {
            recorder.sync().expect("sync");
        }
        samples.push(started.elapsed());
    }
    samples
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
        let bare = stats("live client only", time_exchanges(live.as_ref()).await);

        // On the project's disk, not a tmpfs: fdatasync must cost what it costs.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let path = dir.path().join("exchanges.jsonl");
        let recording = TranscriptModel::new(
            RecordMode::All,
            None,
            Some(Recorder::create(&path, Scrubber::default()).expect("recorder")),
            Some(live.clone()),
        );
        let recorded = stats(
            "live client + recorder (write per line)",
            time_exchanges(&recording).await,
        );
        // Medians: the means swing with whatever else the machine is doing.
        let added = median(&recorded).as_secs_f64() - median(&bare).as_secs_f64();
        println!(
            "=> the recorder adds {:.1} µs per exchange (median; mean {:+.1} µs; target < 300 µs)",
            added * 1e6,
            (mean(&recorded).as_secs_f64() - mean(&bare).as_secs_f64()) * 1e6
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

        let alone = Recorder::create(dir.path().join("alone.jsonl"), Scrubber::default())
            .expect("recorder");
        stats("recorder alone: record()", time_recorder(&alone, false));
        let synced = Recorder::create(dir.path().join("synced.jsonl"), Scrubber::default())
            .expect("recorder");
        stats(
            "recorder alone: record() + fdatasync (old policy)",
            time_recorder(&synced, true),
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
