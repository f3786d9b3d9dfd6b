//! hatrack's own client against a real model: llama.cpp's server with SmolLM2-135M-Instruct
//! (`scripts/local-model start`). It checks mechanics, not wisdom: a plain answer arrives,
//! and a `json_schema` answer validates.
//!
//! The URL comes from `HATRACK_LOCAL_MODEL_URL` (set by `scripts/test`), else from
//! `scripts/local-model url`. When nothing answers there, the test prints why it skipped —
//! except under `CI=true`, where a missing model is a failure, not a silent skip.

mod support;

use std::time::Duration;

use hatrack::model::{
    ask_structured, ChatMessage, ChatModel, JsonSchemaSpec, LiveModel, ModelRequest, ModelSettings,
};
use serde_json::json;

/// The local model's base URL when it answers `/health`, else `None` (after saying why).
fn local_model_url() -> Option<String> {
    let url = std::env::var("HATRACK_LOCAL_MODEL_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| {
            let out = std::process::Command::new(support::repo_root().join("scripts/local-model"))
                .arg("url")
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })?;
    let url = url.trim().trim_end_matches('/').to_string();
    let reason = match health(&url) {
        Ok(()) => return Some(url),
        Err(reason) => reason,
    };
    let message = format!(
        "the local model at {url} is not reachable ({reason}); start it with `scripts/local-model start` \
         or run the suite with `scripts/test`"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {message}");
    }
    eprintln!("skipped: {message}");
    None
}

/// `GET /health` (llama.cpp's, at the server root) answers `{"status":"ok"}`.
fn health(base_url: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let rest = base_url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let host = rest.split('/').next().unwrap_or(rest);
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.contains("\"ok\"") {
        Ok(())
    } else {
        Err(format!(
            "/health said: {}",
            answer.lines().last().unwrap_or("")
        ))
    }
}

fn settings(url: &str) -> ModelSettings {
    hatrack::install_crypto_provider();
    ModelSettings {
        timeout: Duration::from_secs(120),
        max_retries: 1,
        max_tokens: Some(64),
        ..ModelSettings::new("smollm2-135m-instruct", url)
    }
}

#[tokio::test]
async fn the_local_model_answers_a_plain_question() {
    let Some(url) = local_model_url() else { return };
    let s = settings(&url);
    let model = LiveModel::new(&s).unwrap();
    let body = hatrack::model::build_body(
        &s,
        &[
            ChatMessage::system("You are a helpful assistant. Answer in one short sentence."),
            ChatMessage::user("What colour is the sky on a clear day?"),
        ],
        None,
    );
    let reply = model
        .complete(&ModelRequest::new("local/plain", 1, body))
        .await
        .unwrap();
    let content = reply.content.unwrap_or_default();
    assert!(
        !content.trim().is_empty(),
        "an empty answer: {}",
        reply.body
    );
    assert!(
        reply.usage.prompt_tokens > 0 && reply.usage.completion_tokens > 0,
        "{:?}",
        reply.usage
    );
    assert!(matches!(
        reply.finish_reason.as_deref(),
        Some("stop" | "length")
    ));
    assert!(reply.streamed, "llama.cpp's server streams when asked");
}

/// With `response_format: json_schema`, the streamed answer assembles to what the same
/// request answers in one piece (temperature 0), usage included.
#[tokio::test]
async fn a_streamed_schema_answer_equals_the_plain_one() {
    let Some(url) = local_model_url() else { return };
    let mut s = settings(&url);
    let schema = JsonSchemaSpec::new(
        "colour",
        json!({"type": "object", "properties": {"colour": {"type": "string"}},
            "required": ["colour"], "additionalProperties": false}),
    );
    let messages = [
        ChatMessage::system("Answer with JSON only."),
        ChatMessage::user("Name one colour of the rainbow."),
    ];
    let mut replies = Vec::new();
    for stream in [true, false] {
        s.stream = stream;
        let body = hatrack::model::build_body(&s, &messages, Some(&schema));
        let request = ModelRequest::new("local/stream", 1, body);
        let reply = LiveModel::new(&s)
            .unwrap()
            .complete(&request)
            .await
            .unwrap();
        assert_eq!(reply.streamed, stream);
        replies.push(reply);
    }
    assert_eq!(replies[0].content, replies[1].content);
    assert_eq!(replies[0].finish_reason, replies[1].finish_reason);
    assert_eq!(
        replies[0].usage.completion_tokens,
        replies[1].usage.completion_tokens
    );
    let value: serde_json::Value =
        serde_json::from_str(replies[0].content.as_deref().unwrap_or("")).unwrap();
    assert!(jsonschema::is_valid(&schema.schema, &value), "{value}");
}

#[tokio::test]
async fn the_local_model_honours_a_json_schema() {
    let Some(url) = local_model_url() else { return };
    let s = settings(&url);
    let model = LiveModel::new(&s).unwrap();
    let schema = JsonSchemaSpec::new(
        "check",
        json!({
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": ["pass", "fail", "unknown"]},
                "severity": {"type": "integer", "minimum": 1, "maximum": 3}
            },
            "required": ["verdict", "severity"],
            "additionalProperties": false
        }),
    );
    let out = ask_structured(
        &model,
        "local/structured",
        &s,
        &[
            ChatMessage::system("You are a reviewer. Answer with JSON only."),
            ChatMessage::user(
                "Does a deployment with retries and alerting pass the reliability check?",
            ),
        ],
        &schema,
    )
    .await
    .unwrap();
    let value = out
        .value
        .unwrap_or_else(|| panic!("no valid answer: {:?}", out.errors));
    assert!(jsonschema::is_valid(&schema.schema, &value), "{value}");
}
