//! Structured answers against the fake server: re-asks on invalid answers, bounded; the token
//! budget; secrets kept off disk.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hatrack::model::{
    ask_structured, build_body, read_exchanges, ChatMessage, ChatModel, JsonSchemaSpec, LiveModel,
    ModelError, ModelSettings, RecordMode, Recorder, ReplySource, Secret, TokenBudget,
    TranscriptModel,
};
use hatrack::secrets::Scrubber;
use serde_json::json;
use support::fake_openai::{FakeOpenAi, Reply};

fn settings(url: &str) -> ModelSettings {
    hatrack::install_crypto_provider();
    ModelSettings {
        timeout: Duration::from_millis(500),
        max_retries: 1,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..ModelSettings::new("test-model", url)
    }
}

fn schema() -> JsonSchemaSpec {
    JsonSchemaSpec::new(
        "verdict",
        json!({
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": ["pass", "fail", "unknown"]},
                "finding": {"type": "string"}
            },
            "required": ["verdict", "finding"],
            "additionalProperties": false
        }),
    )
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are the reliability reviewer."),
        ChatMessage::user("Judge check 1."),
    ]
}

const VALID: &str = r#"{"verdict": "pass", "finding": "retries are bounded"}"#;

/// A recording model over the fake server, writing to `path`.
fn recording(url: &str, path: &Path) -> TranscriptModel {
    TranscriptModel::new(
        RecordMode::All,
        None,
        Some(Recorder::append(path, Scrubber::default()).unwrap()),
        Some(Arc::new(LiveModel::new(&settings(url)).unwrap())),
    )
}

#[tokio::test]
async fn a_valid_first_answer_takes_one_request() {
    let fake = FakeOpenAi::scripted(vec![Reply::chat(VALID)]).await;
    let s = settings(&fake.url());
    let model = LiveModel::new(&s).unwrap();
    let out = ask_structured(&model, "review/rel", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(
        out.value,
        Some(json!({"verdict": "pass", "finding": "retries are bounded"}))
    );
    assert_eq!((out.attempts, fake.count()), (1, 1));
    assert!(out.errors.is_empty());
    assert_eq!(out.usage.total(), 15);
    assert_eq!(out.sources, [ReplySource::Live]);
    // The request is exactly build_body's, with the strict json_schema response format.
    assert_eq!(
        fake.requests()[0].body,
        build_body(&s, &messages(), Some(&schema()))
    );
    assert_eq!(
        fake.requests()[0].body["response_format"]["json_schema"]["strict"],
        true
    );
}

#[tokio::test]
async fn invalid_json_is_re_asked_with_the_error() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::chat("Sure! The verdict is pass."),
        Reply::chat(VALID),
    ])
    .await;
    let s = settings(&fake.url());
    let model = LiveModel::new(&s).unwrap();
    let out = ask_structured(&model, "review/rel", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(out.attempts, 2);
    assert!(out.value.is_some());
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].contains("not valid JSON"), "{:?}", out.errors);
    assert_eq!(out.usage.total(), 30, "usage is summed over attempts");
    let second = &fake.requests()[1];
    assert_eq!(
        second.message_count(),
        4,
        "system, user, the bad answer, the correction request"
    );
    assert_eq!(second.body["messages"][2]["role"], "assistant");
    assert_eq!(
        second.body["messages"][2]["content"],
        "Sure! The verdict is pass."
    );
    let correction = second.body["messages"][3]["content"].as_str().unwrap();
    assert!(
        correction.contains("not valid JSON") && correction.contains("schema"),
        "{correction}"
    );
}

#[tokio::test]
async fn schema_breaking_answers_give_up_after_max_reasks_and_are_all_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let bad = r#"{"verdict": "maybe", "finding": 3}"#;
    let fake = FakeOpenAi::with_handler(move |_| Reply::chat(bad)).await;
    let s = settings(&fake.url());
    let model = recording(&fake.url(), &path);
    let out = ask_structured(&model, "review/rel", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(out.value, None, "unparseable");
    assert_eq!(out.attempts, 3, "1 ask + max_reasks (2)");
    assert_eq!(fake.count(), 3, "never more than 1 + max_reasks requests");
    assert_eq!(out.errors.len(), 3);
    assert!(
        out.errors[0].contains("/verdict") && out.errors[0].contains("/finding"),
        "{}",
        out.errors[0]
    );
    let exchanges = read_exchanges(&path).unwrap();
    let attempts: Vec<u32> = exchanges.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(exchanges
        .iter()
        .all(|e| e.step == "review/rel" && e.response.is_some()));
}

#[tokio::test]
async fn max_reasks_zero_means_a_single_request() {
    let fake = FakeOpenAi::with_handler(|_| Reply::chat("nope")).await;
    let s = ModelSettings {
        max_reasks: 0,
        ..settings(&fake.url())
    };
    let model = LiveModel::new(&s).unwrap();
    let out = ask_structured(&model, "signal", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!((out.value, out.attempts, fake.count()), (None, 1, 1));
}

#[tokio::test]
async fn a_truncated_answer_and_an_empty_choice_list_are_re_asked() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::length(r#"{"verdict": "pa"#),
        Reply::empty_choices(),
        Reply::chat(VALID),
    ])
    .await;
    let s = settings(&fake.url());
    let model = LiveModel::new(&s).unwrap();
    let out = ask_structured(&model, "hat/sre", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(out.attempts, 3);
    assert!(out.value.is_some());
    assert!(
        out.errors[0].contains("finish_reason: length"),
        "{:?}",
        out.errors
    );
    assert!(out.errors[1].contains("no choices"), "{:?}", out.errors);
}

#[tokio::test]
async fn a_provider_failure_mid_re_ask_keeps_earlier_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::scripted(vec![
        Reply::chat("not json"),
        Reply::server_error(),
        Reply::server_error(),
    ])
    .await;
    let s = settings(&fake.url());
    let model = recording(&fake.url(), &path);
    let err = ask_structured(&model, "hat/pe", &s, &messages(), &schema())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("step hat/pe") && text.contains("2 attempt(s)") && text.contains("HTTP 500"),
        "{text}"
    );
    assert_eq!(fake.count(), 3);
    let exchanges = read_exchanges(&path).unwrap();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(
        exchanges[0].response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "not json"
    );
    assert_eq!(exchanges[1].error.as_ref().unwrap().status, Some(500));
}

#[tokio::test]
async fn structured_replay_reproduces_the_outcome_offline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::scripted(vec![Reply::chat("{broken"), Reply::chat(VALID)]).await;
    let s = settings(&fake.url());
    let live = ask_structured(
        &recording(&fake.url(), &path),
        "review/rel",
        &s,
        &messages(),
        &schema(),
    )
    .await
    .unwrap();
    drop(fake);
    let replay = TranscriptModel::new(
        RecordMode::None,
        Some((path.clone(), read_exchanges(&path).unwrap())),
        None,
        None,
    );
    let again = ask_structured(&replay, "review/rel", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(again.value, live.value);
    assert_eq!(again.errors, live.errors);
    assert_eq!(
        (again.usage, again.duration_ms),
        (live.usage, live.duration_ms)
    );
    assert_eq!(
        again.sources,
        [ReplySource::Replayed, ReplySource::Replayed]
    );
}

#[tokio::test]
async fn the_budget_refuses_before_sending() {
    let fake = FakeOpenAi::with_handler(|_| Reply::chat_with(VALID, "stop", 300, 100)).await;
    let s = ModelSettings {
        max_tokens: Some(200),
        ..settings(&fake.url())
    };
    let live: Arc<dyn ChatModel> = Arc::new(LiveModel::new(&s).unwrap());
    // Estimate of one request: 200 max_tokens + ~13 prompt tokens. TokenBudget fits one and a bit.
    let budget = TokenBudget::new(live, 600);
    ask_structured(&budget, "hat/a", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(budget.used(), 400);
    let err = ask_structured(&budget, "hat/b", &s, &messages(), &schema())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::BudgetExceeded { step, budget: 600, used: 400 } if step == "hat/b"),
        "{err:?}"
    );
    assert_eq!(fake.count(), 1, "the refused request was never sent");
}

#[tokio::test]
async fn replayed_exchanges_count_their_recorded_usage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(|_| Reply::chat_with(VALID, "stop", 300, 100)).await;
    let s = settings(&fake.url());
    ask_structured(
        &recording(&fake.url(), &path),
        "hat/a",
        &s,
        &messages(),
        &schema(),
    )
    .await
    .unwrap();
    let replay: Arc<dyn ChatModel> = Arc::new(TranscriptModel::new(
        RecordMode::None,
        Some((path.clone(), read_exchanges(&path).unwrap())),
        None,
        None,
    ));
    let budget = TokenBudget::new(replay, 100_000);
    ask_structured(&budget, "hat/a", &s, &messages(), &schema())
        .await
        .unwrap();
    assert_eq!(budget.used(), 400);
}

#[tokio::test]
async fn no_file_written_contains_the_key_or_a_scrub_pattern_match() {
    let canary = "sk-hatrack-canary-7f3a9c2e41";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/exchanges.jsonl");
    // The fake echoes the prompt back, so a leaked secret would reach both request and response.
    let fake =
        FakeOpenAi::with_handler(|req| Reply::chat(format!("echo: {}", req.messages_text()))).await;
    let s = ModelSettings {
        api_key: Secret::new(canary),
        ..settings(&fake.url())
    };
    let scrubber = Scrubber::new(
        vec![s.api_key.expose().to_string()],
        vec![regex::Regex::new(r"ghp_[A-Za-z0-9]{10,}").unwrap()],
    );
    let model = TranscriptModel::new(
        RecordMode::All,
        None,
        Some(Recorder::append(&path, scrubber).unwrap()),
        Some(Arc::new(LiveModel::new(&s).unwrap())),
    );
    let leaky = vec![ChatMessage::user(format!(
        "config says api_key={canary} and token ghp_abcdefghijklmnop"
    ))];
    ask_structured(&model, "hat/a", &s, &leaky, &schema())
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {canary}").as_str()),
        "the key really was in use"
    );
    let mut written = 0;
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        written += 1;
        assert!(
            !text.contains(canary),
            "{} contains the API key",
            entry.display()
        );
        assert!(
            !text.contains("ghp_abcdefghijklmnop"),
            "{} contains a pattern match",
            entry.display()
        );
        assert!(text.contains("[REDACTED]"), "{}", entry.display());
    }
    assert_eq!(written, 1);
    // The transcript still reads (scrubbing kept it valid JSON).
    assert_eq!(read_exchanges(&path).unwrap().len(), 3);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
