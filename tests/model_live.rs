//! The live client against the fake OpenAI server: what hatrack does on each provider fault
//! (retry, give up), that it stays within its limits, and what the error says.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hatrack::model::{
    ChatModel, LiveModel, ModelError, ModelRequest, ModelSettings, ReplySource, SharedTransport,
};
use serde_json::json;
use support::fake_openai::{FakeOpenAi, Reply};

/// Fast settings for the fake server: short timeout and backoff so the suite stays quick.
fn settings(url: &str) -> ModelSettings {
    hatrack::install_crypto_provider();
    ModelSettings {
        timeout: Duration::from_millis(500),
        max_retries: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        retry_after_max: Duration::from_secs(3),
        ..ModelSettings::new("test-model", url)
    }
}

fn request(step: &str) -> ModelRequest {
    ModelRequest::new(
        step,
        1,
        json!({"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}),
    )
}

fn provider_error(
    result: Result<hatrack::model::ModelReply, ModelError>,
) -> (String, u32, String, Option<u16>) {
    match result {
        Err(ModelError::Provider {
            step,
            attempts,
            last,
            status,
            ..
        }) => (step, attempts, last, status),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_answer_carries_content_usage_and_exact_body() {
    let fake = FakeOpenAi::scripted(vec![Reply::chat_with("hi there", "stop", 12, 3)]).await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let reply = model.complete(&request("hat/a")).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("hi there"));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(reply.usage.prompt_tokens, 12);
    assert_eq!(reply.usage.completion_tokens, 3);
    assert_eq!(reply.source, ReplySource::Live);
    assert_eq!(reply.body["model"], "fake-openai");
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body,
        request("hat/a").body,
        "the body is sent as given"
    );
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_succeeds() {
    let fake = FakeOpenAi::scripted(vec![Reply::rate_limited(Some("1")), Reply::chat("ok")]).await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let started = Instant::now();
    let reply = model.complete(&request("hat/a")).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("ok"));
    assert_eq!(fake.count(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?} although the server said Retry-After: 1",
        started.elapsed()
    );
}

#[tokio::test]
async fn text_bodied_429_keeps_its_status_after_the_last_retry() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::rate_limited(None),
        Reply::rate_limited(None),
        Reply::rate_limited(None),
        Reply::chat("never reached"),
    ])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let (step, attempts, last, status) =
        provider_error(model.complete(&request("review/rel")).await);
    assert_eq!(step, "review/rel");
    assert_eq!(attempts, 3, "1 try + max_retries (2)");
    assert_eq!(fake.count(), 3);
    assert_eq!(status, Some(429));
    assert!(
        last.contains("HTTP 429") && last.contains("Too Many Requests"),
        "{last}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::server_error(),
        Reply::server_error(),
        Reply::server_error(),
    ])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let err = model.complete(&request("signal")).await;
    let message = err.as_ref().unwrap_err().to_string();
    let (_, attempts, last, status) = provider_error(err);
    assert_eq!((attempts, status, fake.count()), (3, Some(500), 3));
    assert!(last.contains("fake server error"), "{last}");
    assert!(
        message.contains("step signal")
            && message.contains("3 attempt(s)")
            && message.contains("HTTP 500"),
        "{message}"
    );
}

#[tokio::test]
async fn a_500_then_an_answer_recovers() {
    let fake = FakeOpenAi::scripted(vec![Reply::server_error(), Reply::chat("fine")]).await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let reply = model.complete(&request("hat/a")).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("fine"));
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = FakeOpenAi::scripted(vec![Reply::json(
        400,
        json!({"error": {"message": "invalid schema for response_format", "type": "invalid_request_error"}}),
    )])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let (_, attempts, last, status) = provider_error(model.complete(&request("hat/a")).await);
    assert_eq!((attempts, status, fake.count()), (1, Some(400), 1));
    assert!(last.contains("invalid schema"), "{last}");
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_retried_then_reported() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::Hang(Duration::from_secs(30)),
        Reply::Hang(Duration::from_secs(30)),
        Reply::Hang(Duration::from_secs(30)),
    ])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let started = Instant::now();
    let (_, attempts, last, status) = provider_error(model.complete(&request("hat/a")).await);
    assert_eq!((attempts, status, fake.count()), (3, None, 3));
    assert!(last.contains("timeout of 500ms"), "{last}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up in time"
    );
}

#[tokio::test]
async fn a_cut_off_body_is_retried() {
    let fake = FakeOpenAi::scripted(vec![Reply::cut_off("partial"), Reply::chat("whole")]).await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let reply = model.complete(&request("hat/a")).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("whole"));
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn a_body_cut_off_every_time_names_the_cause() {
    let fake = FakeOpenAi::scripted(vec![
        Reply::cut_off("a"),
        Reply::cut_off("b"),
        Reply::cut_off("c"),
    ])
    .await;
    let model = LiveModel::new(&settings(&fake.url())).unwrap();
    let (_, attempts, last, _) = provider_error(model.complete(&request("hat/a")).await);
    assert_eq!((attempts, fake.count()), (3, 3));
    assert!(last.contains("cut off"), "{last}");
}

#[tokio::test]
async fn a_closed_port_is_a_connection_failure() {
    let fake = FakeOpenAi::scripted(vec![]).await;
    let url = fake.url();
    drop(fake);
    let model = LiveModel::new(&settings(&url)).unwrap();
    let (step, attempts, last, status) = provider_error(model.complete(&request("hat/x")).await);
    assert_eq!((step.as_str(), attempts, status), ("hat/x", 3, None));
    assert!(last.contains("connection failed"), "{last}");
}

#[tokio::test]
async fn at_most_jobs_requests_are_in_flight() {
    let fake =
        FakeOpenAi::with_handler(|_| Reply::chat("ok").delayed(Duration::from_millis(60))).await;
    let s = ModelSettings {
        jobs: 2,
        ..settings(&fake.url())
    };
    let model = Arc::new(LiveModel::new(&s).unwrap());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            model.complete(&request(&format!("hat/{i}"))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.count(), 6);
    assert_eq!(fake.max_in_flight(), 2);
}

/// Clients built from one [`SharedTransport`] (the runs of a batch) share its limit on
/// requests in flight and its connections; clients built apart open their own.
#[tokio::test]
async fn clients_of_one_shared_transport_share_the_limit_and_the_connections() {
    let fake =
        FakeOpenAi::with_handler(|_| Reply::chat("ok").delayed(Duration::from_millis(60))).await;
    let s = settings(&fake.url());
    let shared = SharedTransport::new(2);
    let models: Vec<Arc<LiveModel>> = (0..3)
        .map(|_| Arc::new(LiveModel::shared(&s, &shared).unwrap()))
        .collect();
    let mut tasks = Vec::new();
    for (i, model) in models.iter().cycle().take(6).enumerate() {
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            model.complete(&request(&format!("hat/{i}"))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        fake.max_in_flight(),
        2,
        "one limit across the three clients"
    );
    // New clients, one after another (a pause lets each connection go back to the pool):
    // each uses a connection the others opened.
    let before = fake.connections();
    for i in 0..3 {
        let model = LiveModel::shared(&s, &shared).unwrap();
        model
            .complete(&request(&format!("hat/later-{i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.connections(),
        before,
        "the pool's connections were reused"
    );
    let apart = LiveModel::new(&s).unwrap();
    apart.complete(&request("hat/apart")).await.unwrap();
    assert_eq!(
        fake.connections(),
        before + 1,
        "a client apart opens its own"
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let fake = FakeOpenAi::scripted(vec![Reply::chat("ok")]).await;
    let s = ModelSettings {
        api_key: hatrack::model::Secret::new("sk-test-key-12345\n"),
        ..settings(&fake.url())
    };
    LiveModel::new(&s)
        .unwrap()
        .complete(&request("hat/a"))
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some("Bearer sk-test-key-12345")
    );
}
