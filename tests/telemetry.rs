//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a run sends its spans — the run,
//! each step, each model exchange — as OTLP/HTTP JSON to `…/v1/traces`, once, at exit.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::Test;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A collector that keeps every (path, headers, body) POSTed to it.
async fn collector() -> (String, Arc<Mutex<Vec<(String, String, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    keep.lock().unwrap().push((
                        path,
                        head.to_lowercase(),
                        serde_json::from_str(body).unwrap(),
                    ));
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                        .await;
                    return;
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_sends_its_run_step_and_exchange_spans_to_the_collector() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let (url, seen) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    Test::new()
        .args([
            "run",
            "examples/orders-pipeline",
            "--model",
            "fake-model",
            "--quiet",
            "--base-url",
        ])
        .arg(server.url())
        .arg("--transcript")
        .arg(dir.path().join("run"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-team=data%20platform")
        .status(0)
        .run();
    server.stop();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one export at exit");
    let (path, head, body) = &seen[0];
    assert_eq!(path, "/v1/traces");
    assert!(head.contains("x-team: data platform"), "{head}");
    let resource = &body["resourceSpans"][0];
    assert_eq!(
        resource["resource"]["attributes"][0]["value"]["stringValue"],
        "hatrack"
    );
    let spans = resource["scopeSpans"][0]["spans"].as_array().unwrap();
    let by_name = |n: &str| spans.iter().filter(|s| s["name"] == n).collect::<Vec<_>>();
    let runs = by_name("hatrack.run");
    assert_eq!(runs.len(), 1);
    assert_eq!(by_name("hatrack.step").len(), 6);
    assert_eq!(by_name("gen_ai.chat").len(), 6);
    let attrs = |s: &Value| -> HashMap<String, Value> {
        s["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
            .collect()
    };
    assert_eq!(attrs(runs[0])["hatrack.signal_met"]["boolValue"], true);
    let trace = runs[0]["traceId"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
    let ids: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["spanId"].as_str().unwrap(), s))
        .collect();
    for chat in by_name("gen_ai.chat") {
        assert_eq!(chat["traceId"], trace);
        let a = attrs(chat);
        assert_eq!(a["gen_ai.request.model"]["stringValue"], "fake-model");
        assert_eq!(a["gen_ai.usage.input_tokens"]["intValue"], "100");
        assert_eq!(a["hatrack.source"]["stringValue"], "live");
        // exchange → step → run
        let step = ids[chat["parentSpanId"].as_str().unwrap()];
        assert_eq!(step["name"], "hatrack.step");
        assert_eq!(attrs(step)["hatrack.step"], a["hatrack.step"]);
        assert_eq!(step["parentSpanId"], runs[0]["spanId"]);
    }
    // Nothing of the prompts or answers is exported.
    assert!(!body.to_string().contains("Pipeline Engineer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_only_warns() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) is closed: the export fails, the run's exit code does not change.
    Test::new()
        .args([
            "run",
            "examples/orders-pipeline",
            "--model",
            "fake-model",
            "--quiet",
            "--base-url",
        ])
        .arg(server.url())
        .arg("--transcript")
        .arg(dir.path().join("run"))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:9/v1/traces",
        )
        .status(0)
        .stderr_has("OpenTelemetry: sending")
        .run();
    server.stop();
}

/// A collector that answers every POST (read whole) with a 307 to `to`.
async fn redirector(to: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let reply = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    return;
                }
            });
        }
    });
    url
}

/// A collector that redirects elsewhere (another port is another origin) is not followed:
/// `OTEL_EXPORTER_OTLP_HEADERS` (a collector's key) and the spans never reach that server,
/// and the run's exit code does not change.
#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_never_follows_a_redirect_to_another_origin() {
    let (elsewhere, seen) = collector().await;
    let redirecting = redirector(format!("{elsewhere}/v1/traces")).await;
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let dir = tempfile::tempdir().unwrap();
    Test::new()
        .args(["run", "examples/orders-pipeline", "--model", "fake-model"])
        .args(["--quiet", "--base-url", &server.url(), "--transcript"])
        .arg(dir.path().join("run"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &redirecting)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer collector-key-4711",
        )
        .status(0)
        .stderr_has("OpenTelemetry: sending")
        .stderr_has("another origin")
        .run();
    server.stop();
    assert!(
        seen.lock().unwrap().is_empty(),
        "the redirect was followed to another origin"
    );
}
