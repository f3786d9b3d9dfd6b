//! Streamed answers (SSE) against the fake OpenAI server: a slow but steady stream finishes,
//! a stall is a timeout (exit 3 through the binary), tool-call deltas assemble, a cut-off or
//! broken stream is an error and never a partial answer, and a provider that ignores
//! `"stream": true` still works. The transcript stores the assembled answer and replays
//! whether or not the replaying run streams.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hatrack::model::{
    ChatModel, LiveModel, ModelError, ModelRequest, ModelSettings, ProviderErrorKind, TokenObserver,
};
use serde_json::{json, Value};
use support::fake_openai::{chat_body, sse_events, FakeOpenAi, Reply, SseEnd};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const WORKSPACE: &str = "examples/orders-pipeline";

fn settings(url: &str) -> ModelSettings {
    hatrack::install_crypto_provider();
    ModelSettings {
        timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_millis(400),
        max_retries: 1,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..ModelSettings::new("test-model", url)
    }
}

fn streamed_request(step: &str) -> ModelRequest {
    ModelRequest::new(
        step,
        1,
        json!({"model": "test-model", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello"}]}),
    )
}

/// `reply` (a JSON chat answer) as a stream whose first `slow` events each come `pause`
/// after the one before (the rest at once).
fn slow_stream(reply: Reply, slow: usize, pause: Duration) -> Reply {
    let Reply::Http { body, .. } = reply else {
        panic!("a JSON answer")
    };
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut events = sse_events(&body, Duration::ZERO);
    for event in events.iter_mut().take(slow) {
        event.pause = pause;
    }
    Reply::Sse {
        events,
        end: SseEnd::Close,
    }
}

fn provider_error(
    result: Result<hatrack::model::ModelReply, ModelError>,
) -> (ProviderErrorKind, u32, String) {
    match result {
        Err(ModelError::Provider {
            kind,
            attempts,
            last,
            ..
        }) => (kind, attempts, last),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_but_steady_stream_finishes_and_reports_tokens_as_they_arrive() {
    // 8 pauses of 200 ms: 1.6 s in all, four times the idle timeout, never idle that long.
    let fake = FakeOpenAi::scripted(vec![slow_stream(
        Reply::chat_with("{\"verdict\": \"pass\"}", "stop", 12, 7),
        8,
        Duration::from_millis(200),
    )])
    .await;
    let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut s = settings(&fake.url());
    let log = seen.clone();
    s.on_tokens = Some(TokenObserver::new(move |step, n| {
        log.lock().unwrap().push((step.to_string(), n))
    }));
    let started = Instant::now();
    let reply = LiveModel::new(&s)
        .unwrap()
        .complete(&streamed_request("hat/a"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(reply.content.as_deref(), Some("{\"verdict\": \"pass\"}"));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (reply.usage.prompt_tokens, reply.usage.completion_tokens),
        (12, 7)
    );
    assert!(reply.streamed);
    assert_eq!(reply.body["object"], "chat.completion");
    assert_eq!(reply.body["model"], "fake-openai");
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.iter().all(|(step, _)| step == "hat/a"));
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
    assert_eq!(fake.count(), 1);
}

#[tokio::test]
async fn a_stall_mid_stream_is_a_retried_timeout() {
    let stalled = || {
        Reply::stream("{\"verdict\": \"pass\"}", Duration::ZERO)
            .stall_after(3, Duration::from_secs(20))
    };
    let fake = FakeOpenAi::scripted(vec![stalled(), stalled()]).await;
    let started = Instant::now();
    let result = LiveModel::new(&settings(&fake.url()))
        .unwrap()
        .complete(&streamed_request("hat/a"))
        .await;
    let (kind, attempts, last) = provider_error(result);
    assert_eq!((kind, attempts), (ProviderErrorKind::Timeout, 2));
    assert!(last.contains("stalled") && last.contains("400ms"), "{last}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_overall_timeout_caps_a_stream_that_never_stalls() {
    let mut s = settings("");
    s.timeout = Duration::from_secs(1);
    s.max_retries = 0;
    let fake = FakeOpenAi::scripted(vec![slow_stream(
        Reply::chat("a long answer that trickles in"),
        20,
        Duration::from_millis(150),
    )])
    .await;
    s.base_url = fake.url();
    let (kind, _, last) = provider_error(
        LiveModel::new(&s)
            .unwrap()
            .complete(&streamed_request("hat/a"))
            .await,
    );
    assert_eq!(kind, ProviderErrorKind::Timeout, "{last}");
}

#[tokio::test]
async fn tool_call_deltas_assemble_by_index() {
    let mut body = chat_body("", "tool_calls", 10, 5);
    body["choices"][0]["message"] = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "read_file", "arguments": "{\"path\": \"dags/orders.py\"}"}},
        {"id": "call_2", "type": "function",
         "function": {"name": "list_files", "arguments": "{\"dir\": \"models\"}"}}
    ]});
    let fake = FakeOpenAi::scripted(vec![Reply::json(200, body.clone())]).await;
    let reply = LiveModel::new(&settings(&fake.url()))
        .unwrap()
        .complete(&streamed_request("hat/a"))
        .await
        .unwrap();
    assert!(reply.streamed);
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        Value::Array(reply.tool_calls.clone()),
        body["choices"][0]["message"]["tool_calls"]
    );
}

#[tokio::test]
async fn a_cut_off_stream_is_an_error_not_a_partial_answer() {
    let cut = || Reply::stream("{\"verdict\": \"pass\"}", Duration::ZERO).truncated(3);
    let fake = FakeOpenAi::scripted(vec![cut(), cut()]).await;
    let (kind, attempts, last) = provider_error(
        LiveModel::new(&settings(&fake.url()))
            .unwrap()
            .complete(&streamed_request("hat/a"))
            .await,
    );
    assert_eq!((kind, attempts), (ProviderErrorKind::BadResponse, 2));
    assert!(last.contains("without [DONE]"), "{last}");
}

#[tokio::test]
async fn error_events_and_invalid_chunks_are_named() {
    let sse = |text: &str| Reply::raw(200, &[("content-type", "text/event-stream")], text);
    let fake = FakeOpenAi::scripted(vec![
        sse("data: {\"error\":{\"message\":\"the context size was exceeded\"}}\n\n"),
        sse("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {oops\n\n"),
        sse("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {oops\n\n"),
    ])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let (kind, attempts, last) = provider_error(model.complete(&streamed_request("hat/a")).await);
    assert_eq!(
        (kind, attempts),
        (ProviderErrorKind::ContextExceeded, 1),
        "{last}"
    );
    let result = model.complete(&streamed_request("review/r")).await;
    let message = result.as_ref().unwrap_err().to_string();
    let (kind, _, last) = provider_error(result);
    assert_eq!(kind, ProviderErrorKind::BadResponse);
    assert!(last.contains("stream chunk 2 is not valid JSON"), "{last}");
    assert!(message.starts_with("step review/r:"), "{message}");
}

#[tokio::test]
async fn a_streamed_answer_over_the_size_cap_is_too_large() {
    let fake = FakeOpenAi::scripted(vec![Reply::chat("x".repeat(20_000))]).await;
    let mut s = settings(&fake.url());
    s.max_response_bytes = 4096;
    let (kind, attempts, last) = provider_error(
        LiveModel::new(&s)
            .unwrap()
            .complete(&streamed_request("hat/a"))
            .await,
    );
    assert_eq!((kind, attempts), (ProviderErrorKind::TooLarge, 1), "{last}");
}

#[tokio::test]
async fn a_provider_that_ignores_stream_answers_plain_json() {
    let fake = FakeOpenAi::scripted(vec![Reply::chat_with("plain", "stop", 3, 1)]).await;
    fake.ignore_stream();
    let reply = LiveModel::new(&settings(&fake.url()))
        .unwrap()
        .complete(&streamed_request("hat/a"))
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("plain"));
    assert_eq!(reply.usage.total(), 4);
    assert!(!reply.streamed);
}

fn run_in(server: &FakeOpenAi, dir: &Path) -> Test {
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args([
            "--timeout",
            "20",
            "--idle-timeout",
            "1",
            "--max-retries",
            "1",
        ])
        .args(["--quiet", "--transcript"])
        .arg(dir)
}

fn exchanges(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("exchanges.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_a_slow_stream_finishes_records_assembled_and_replays_either_way() {
    let reviewer = FakeReviewer::new();
    let first = AtomicUsize::new(0);
    // The first step trickles in over 2.4 s (idle timeout 1 s); the rest stream at once.
    let server = FakeOpenAi::with_handler(move |req| {
        let answer = reviewer.answer(req);
        match first.fetch_add(1, Ordering::SeqCst) {
            0 => slow_stream(answer, 4, Duration::from_millis(600)),
            _ => answer,
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).status(0).run();
    let recorded = exchanges(&run_dir);
    assert_eq!(recorded.len(), 6);
    for e in &recorded {
        assert_eq!(e["request"]["stream"], true, "the exact body sent");
        assert_eq!(e["streamed"], true);
        assert_eq!(e["response"]["object"], "chat.completion");
        assert!(e["response"]["choices"][0]["message"]["content"].is_string());
        assert_eq!(e["usage"]["completion_tokens"], 50);
    }
    drop(server);
    let report = std::fs::read(run_dir.join("report.json")).unwrap();
    Test::new()
        .args(["replay", "--quiet"])
        .arg(&run_dir)
        .status(0)
        .run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), report);
    // A run that does not stream matches the streamed recording (stream fields are not
    // part of the request hash).
    Test::new()
        .args([
            "run",
            WORKSPACE,
            "--model",
            "fake-model",
            "--record-mode",
            "none",
        ])
        .args(["--no-stream", "--quiet", "--transcript"])
        .arg(&run_dir)
        .status(0)
        .run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), report);
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_a_stall_mid_stream_exits_3_after_the_idle_timeout() {
    let server = FakeOpenAi::with_handler(|_| {
        Reply::stream("{\"artifacts\": []}", Duration::ZERO).stall_after(3, Duration::from_secs(30))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let started = Instant::now();
    run_in(&server, &run_dir)
        .status(3)
        .stderr_has("hat/pipeline-engineer")
        .stderr_has("stalled")
        .run();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.count(), 2, "one request and one retry");
    let recorded = exchanges(&run_dir);
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("idle timeout"));
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_no_stream_sends_plain_requests() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).arg("--no-stream").status(0).run();
    for req in server.requests() {
        assert!(req.body.get("stream").is_none(), "{}", req.body_text);
    }
    assert!(exchanges(&run_dir)
        .iter()
        .all(|e| e.get("streamed").is_none()));
}

/// A server that keeps talking after `data: [DONE]` (another content chunk, then silence
/// with the connection open): nothing after `[DONE]` belongs to the answer, so every answer
/// is the JSON the model sent, nothing is asked twice, and the run does not wait for the
/// silence to end.
#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_nothing_after_done_belongs_to_the_answer() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| {
        let Reply::Http { body, .. } = reviewer.answer(req) else {
            panic!("a JSON answer")
        };
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut events = sse_events(&body, Duration::ZERO);
        events.push(support::fake_openai::SseEvent {
            pause: Duration::ZERO,
            text: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"} trailing\"}}]}\n\n"
                .into(),
        });
        Reply::Sse {
            events,
            end: SseEnd::Stall(Duration::from_secs(30)),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let started = Instant::now();
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--idle-timeout", "20", "--max-retries", "0", "--quiet"])
        .arg("--transcript")
        .arg(&run_dir)
        .status(0)
        .run();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run waited for the silence after [DONE]: {:?}",
        started.elapsed()
    );
    assert_eq!(server.count(), 6, "one request per step, no re-asks");
    for e in exchanges(&run_dir) {
        let content = e["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert!(!content.contains("trailing"), "{content}");
        serde_json::from_str::<Value>(content).expect("each answer is the JSON sent");
    }
}

/// run.json says how answers were read: streamed or not, and the idle timeout a stream
/// had (so a stalled run can be read back without guessing its flags). The model is a fake
/// (`FakeOpenAi` scripted by `FakeReviewer`).
#[tokio::test(flavor = "multi_thread")]
async fn run_json_records_stream_and_idle_timeout() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let dir = tempfile::tempdir().unwrap();
    let model = |run_dir: &Path| -> Value {
        let text = std::fs::read_to_string(run_dir.join("run.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["model"].clone()
    };
    let streamed = dir.path().join("streamed");
    run_in(&server, &streamed).status(0).run();
    assert_eq!(model(&streamed)["stream"], true);
    assert_eq!(model(&streamed)["idle_timeout"], "1s");
    let plain = dir.path().join("plain");
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args([
            "--no-stream",
            "--idle-timeout",
            "90",
            "--quiet",
            "--transcript",
        ])
        .arg(&plain)
        .status(0)
        .run();
    assert_eq!(model(&plain)["stream"], false);
    assert_eq!(model(&plain)["idle_timeout"], "1m 30s");
}
