//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a run sends its spans — the run,
//! each step, each model exchange — as OTLP/HTTP JSON to `…/v1/traces`, as each step ends,
//! named and attributed as the GenAI semantic conventions write them. The model is a fake
//! (`FakeOpenAi` scripted by `FakeReviewer`), standing in for a real one.

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
    assert!(
        seen.len() > 1,
        "one export per step as it ends, not one at exit"
    );
    let mut spans: Vec<Value> = Vec::new();
    for (path, head, body) in &seen {
        assert_eq!(path, "/v1/traces");
        assert!(head.contains("x-team: data platform"), "{head}");
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "hatrack"
        );
        spans.extend(
            resource["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    let body = Value::Array(spans.clone());
    let by_name = |n: &str| spans.iter().filter(|s| s["name"] == n).collect::<Vec<_>>();
    let starts = |p: &str| {
        spans
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(p))
            .collect::<Vec<_>>()
    };
    let runs = by_name("hatrack.run");
    assert_eq!(runs.len(), 1);
    // Steps are agent invocations: `invoke_agent {agent}` (the hat's name for a hat).
    assert_eq!(starts("invoke_agent ").len(), 6);
    assert_eq!(by_name("invoke_agent pipeline-engineer").len(), 1);
    assert_eq!(by_name("invoke_agent judge/sre").len(), 1);
    // Exchanges are `chat {model}`, client spans.
    assert_eq!(by_name("chat fake-model").len(), 6);
    assert!(by_name("chat fake-model").iter().all(|s| s["kind"] == 3));
    assert!(by_name("hatrack.step").is_empty() && by_name("gen_ai.chat").is_empty());
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
    let agent = attrs(by_name("invoke_agent pipeline-engineer")[0]);
    assert_eq!(
        agent["gen_ai.operation.name"]["stringValue"],
        "invoke_agent"
    );
    assert_eq!(
        agent["gen_ai.agent.name"]["stringValue"],
        "pipeline-engineer"
    );
    assert_eq!(agent["gen_ai.provider.name"]["stringValue"], "openai");
    for chat in by_name("chat fake-model") {
        assert_eq!(chat["traceId"], trace);
        let a = attrs(chat);
        assert_eq!(a["gen_ai.operation.name"]["stringValue"], "chat");
        assert_eq!(a["gen_ai.provider.name"]["stringValue"], "openai");
        assert_eq!(a["gen_ai.request.model"]["stringValue"], "fake-model");
        assert_eq!(a["gen_ai.usage.input_tokens"]["intValue"], "100");
        assert_eq!(a["hatrack.source"]["stringValue"], "live");
        // exchange → step → run
        let step = ids[chat["parentSpanId"].as_str().unwrap()];
        assert!(step["name"].as_str().unwrap().starts_with("invoke_agent "));
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

/// A run killed part-way keeps the spans of the steps that ended before: they were sent as
/// each step ended, not held for an exit that never comes.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_keeps_the_spans_it_sent() {
    use support::fake_openai::Reply;
    let reviewer = FakeReviewer::new();
    let answered = Arc::new(Mutex::new(0usize));
    let count = answered.clone();
    // The fake model answers the first hat, then never answers again.
    let server = FakeOpenAi::with_handler(move |req| {
        let mut n = count.lock().unwrap();
        *n += 1;
        if *n == 1 {
            reviewer.answer(req)
        } else {
            Reply::chat("{}").delayed(std::time::Duration::from_secs(600))
        }
    })
    .await;
    let (url, seen) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .current_dir(support::repo_root())
        .args(["run", "examples/orders-pipeline", "--model", "fake-model"])
        .args(["--quiet", "--timeout", "600", "--base-url", &server.url()])
        .arg("--transcript")
        .arg(dir.path().join("run"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let names = || -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, body)| {
                body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|s| s["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !names()
        .iter()
        .any(|n| n == "invoke_agent pipeline-engineer")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    server.stop();
    let names = names();
    assert!(
        names.iter().any(|n| n == "invoke_agent pipeline-engineer"),
        "nothing of the finished step reached the collector before the kill: {names:?}"
    );
    assert!(names.iter().any(|n| n == "chat fake-model"), "{names:?}");
    // The step still waiting for the model was never sent (it had not ended).
    assert!(!names.iter().any(|n| n == "invoke_agent sre"), "{names:?}");
}
