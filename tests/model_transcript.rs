//! Recording and replaying transcripts: matching by step and request hash, the VCR record
//! modes, replay without a network, and reading damaged transcript files.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hatrack::model::{
    read_exchanges, ChatModel, Handles, LiveModel, ModelError, ModelReply, ModelRequest,
    ModelSettings, RecordMode, Recorder, ReplySource, TranscriptModel,
};
use hatrack::secrets::Scrubber;
use serde_json::json;
use support::fake_openai::{FakeOpenAi, Reply, SeenRequest};

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

fn live(url: &str) -> Option<Arc<dyn ChatModel>> {
    Some(Arc::new(LiveModel::new(&settings(url)).unwrap()))
}

fn request(step: &str, prompt: &str) -> ModelRequest {
    ModelRequest::new(
        step,
        1,
        json!({"model": "test-model", "messages": [
            {"role": "system", "content": "You are a reviewer.\nBe brief."},
            {"role": "user", "content": prompt}
        ]}),
    )
}

/// The fake answers "answer to: <prompt>" so replies differ per request.
fn echo(req: &SeenRequest) -> Reply {
    let prompt = req.body["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    Reply::chat_with(&format!("answer to: {prompt}"), "stop", 20, 7)
}

fn recorder(path: &Path) -> Option<Recorder> {
    Some(Recorder::append(path, Scrubber::default()).unwrap())
}

fn replay_source(path: &Path) -> Option<(std::path::PathBuf, Vec<hatrack::model::Exchange>)> {
    Some((path.to_path_buf(), read_exchanges(path).unwrap()))
}

/// Records steps a and b against the fake server into `path`; returns the live replies.
async fn record_two(fake: &FakeOpenAi, path: &Path) -> Vec<ModelReply> {
    let model = TranscriptModel::new(RecordMode::All, None, recorder(path), live(&fake.url()));
    vec![
        model.complete(&request("hat/a", "first")).await.unwrap(),
        model.complete(&request("hat/b", "second")).await.unwrap(),
    ]
}

#[tokio::test]
async fn record_then_replay_without_the_server_gives_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    let recorded = record_two(&fake, &path).await;
    assert_eq!(fake.count(), 2);

    let exchanges = read_exchanges(&path).unwrap();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].step, "hat/a");
    assert_eq!(exchanges[0].request, request("hat/a", "first").body);
    assert_eq!(
        exchanges[0].request_hash,
        hatrack::model::request_hash(&exchanges[0].request)
    );
    assert_eq!(exchanges[0].usage.total(), 27);
    assert!(
        exchanges[0].started_at.ends_with('Z'),
        "{}",
        exchanges[0].started_at
    );

    // The server is gone: replay must not need it (and `none` gets no live model at all).
    let url = fake.url();
    drop(fake);
    assert!(!RecordMode::None.needs_live(&exchanges));
    let replay = TranscriptModel::new(RecordMode::None, replay_source(&path), None, None);
    let a = replay.complete(&request("hat/a", "first")).await.unwrap();
    let b = replay.complete(&request("hat/b", "second")).await.unwrap();
    for (replayed, live) in [(a, &recorded[0]), (b, &recorded[1])] {
        assert_eq!(replayed.source, ReplySource::Replayed);
        assert_eq!(replayed.body, live.body);
        assert_eq!(replayed.content, live.content);
        assert_eq!(replayed.usage, live.usage);
        assert_eq!(
            replayed.duration_ms, live.duration_ms,
            "durations come from the transcript"
        );
    }
    assert_eq!(
        read_exchanges(&path).unwrap().len(),
        2,
        "replay wrote nothing"
    );
    let _ = url;
}

#[tokio::test]
async fn replay_in_none_mode_never_calls_even_a_live_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    let replay = TranscriptModel::new(
        RecordMode::None,
        replay_source(&path),
        None,
        live(&fake.url()),
    );
    replay.complete(&request("hat/a", "first")).await.unwrap();
    let miss = replay.complete(&request("hat/a", "changed")).await;
    assert!(
        matches!(miss, Err(ModelError::ReplayMiss { .. })),
        "{miss:?}"
    );
    assert_eq!(fake.count(), 2, "no request beyond the two recorded");
}

#[tokio::test]
async fn a_changed_request_under_none_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    let replay = TranscriptModel::new(RecordMode::None, replay_source(&path), None, None);
    let err = replay
        .complete(&request("hat/b", "second, reworded"))
        .await
        .unwrap_err();
    let ModelError::ReplayMiss { step, diff } = &err else {
        panic!("expected a replay miss, got {err:?}")
    };
    assert_eq!(step, "hat/b");
    assert!(diff.contains("-      \"content\": \"second\""), "{diff}");
    assert!(
        diff.contains("+      \"content\": \"second, reworded\""),
        "{diff}"
    );
    assert!(diff.contains("recorded hat/b attempt 1"), "{diff}");
    let shown = err.to_string();
    assert!(
        shown.contains("step hat/b") && shown.contains("record mode `none`"),
        "{shown}"
    );

    let unknown = replay.complete(&request("hat/zzz", "x")).await.unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("no exchange for step hat/zzz; it has: hat/a, hat/b"),
        "{unknown}"
    );
}

#[tokio::test]
async fn matching_is_by_step_and_hash_not_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    let replay = TranscriptModel::new(RecordMode::None, replay_source(&path), None, None);
    let b = replay.complete(&request("hat/b", "second")).await.unwrap();
    let a = replay.complete(&request("hat/a", "first")).await.unwrap();
    assert_eq!(b.content.as_deref(), Some("answer to: second"));
    assert_eq!(a.content.as_deref(), Some("answer to: first"));
    // Same body under another step id is not a hit.
    let other_step = replay.complete(&request("hat/c", "first")).await;
    assert!(matches!(other_step, Err(ModelError::ReplayMiss { .. })));
}

#[tokio::test]
async fn repeated_requests_replay_in_recorded_order_then_reuse_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::scripted(vec![Reply::chat("one"), Reply::chat("two")]).await;
    let model = TranscriptModel::new(RecordMode::All, None, recorder(&path), live(&fake.url()));
    model.complete(&request("hat/a", "same")).await.unwrap();
    model.complete(&request("hat/a", "same")).await.unwrap();
    let replay = TranscriptModel::new(RecordMode::None, replay_source(&path), None, None);
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(
            replay
                .complete(&request("hat/a", "same"))
                .await
                .unwrap()
                .content
                .unwrap(),
        );
    }
    assert_eq!(answers, ["one", "two", "two"]);
}

#[tokio::test]
async fn new_episodes_calls_only_for_the_changed_step_and_appends_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    let model = TranscriptModel::new(
        RecordMode::NewEpisodes,
        replay_source(&path),
        recorder(&path),
        live(&fake.url()),
    );
    let a = model.complete(&request("hat/a", "first")).await.unwrap();
    let b = model
        .complete(&request("hat/b", "second v2"))
        .await
        .unwrap();
    assert_eq!(a.source, ReplySource::Replayed);
    assert_eq!(b.source, ReplySource::Live);
    assert_eq!(b.content.as_deref(), Some("answer to: second v2"));
    assert_eq!(fake.count(), 3, "one new request, for hat/b only");
    let after = read_exchanges(&path).unwrap();
    assert_eq!(
        after.len(),
        3,
        "the hit is not appended again to its own transcript"
    );
    assert_eq!(after[2].request, request("hat/b", "second v2").body);
}

#[tokio::test]
async fn once_records_an_empty_transcript_and_replays_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    let empty = read_exchanges(&path).unwrap();
    assert!(RecordMode::Once.needs_live(&empty));
    let first = TranscriptModel::new(
        RecordMode::Once,
        Some((path.clone(), empty)),
        recorder(&path),
        live(&fake.url()),
    );
    first.complete(&request("hat/a", "first")).await.unwrap();
    assert_eq!(fake.count(), 1);

    let recorded = read_exchanges(&path).unwrap();
    assert!(!RecordMode::Once.needs_live(&recorded));
    let second = TranscriptModel::new(
        RecordMode::Once,
        Some((path.clone(), recorded)),
        recorder(&path),
        None,
    );
    let hit = second.complete(&request("hat/a", "first")).await.unwrap();
    assert_eq!(hit.source, ReplySource::Replayed);
    let miss = second.complete(&request("hat/a", "other")).await;
    assert!(
        matches!(miss, Err(ModelError::ReplayMiss { .. })),
        "{miss:?}"
    );
    assert_eq!(fake.count(), 1);
}

#[tokio::test]
async fn all_mode_calls_every_time_and_re_records_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    let old = read_exchanges(&path).unwrap();
    let model = TranscriptModel::new(
        RecordMode::All,
        Some((path.clone(), old)),
        Some(Recorder::create(&path, Scrubber::default()).unwrap()),
        live(&fake.url()),
    );
    let reply = model.complete(&request("hat/a", "first")).await.unwrap();
    assert_eq!(reply.source, ReplySource::Live);
    assert_eq!(fake.count(), 3);
    assert_eq!(read_exchanges(&path).unwrap().len(), 1);
}

#[tokio::test]
async fn replaying_into_another_transcript_copies_hits_and_leaves_the_old_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old/exchanges.jsonl");
    let new = dir.path().join("new/exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &old).await;
    let old_bytes = std::fs::read(&old).unwrap();
    let model = TranscriptModel::new(
        RecordMode::NewEpisodes,
        replay_source(&old),
        recorder(&new),
        live(&fake.url()),
    );
    model.complete(&request("hat/a", "first")).await.unwrap();
    model
        .complete(&request("hat/b", "new question"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&old).unwrap(),
        old_bytes,
        "OLD is never modified"
    );
    let copied = read_exchanges(&new).unwrap();
    assert_eq!(
        copied.len(),
        2,
        "NEW holds the replayed hit and the new exchange"
    );
    // The copy is the old exchange, marked as carried over (not answered in this run).
    let mut original = read_exchanges(&old).unwrap()[0].clone();
    assert!(!original.replayed && copied[0].replayed);
    original.replayed = true;
    assert_eq!(copied[0], original);
    assert_eq!(copied[1].request, request("hat/b", "new question").body);
}

#[tokio::test]
async fn a_failed_exchange_is_recorded_with_its_status_but_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::scripted(vec![
        Reply::chat("ok"),
        Reply::server_error(),
        Reply::server_error(),
    ])
    .await;
    let model = TranscriptModel::new(RecordMode::All, None, recorder(&path), live(&fake.url()));
    model.complete(&request("hat/a", "first")).await.unwrap();
    let err = model
        .complete(&request("hat/b", "second"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Provider { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(fake.count(), 3);

    // Every exchange so far is in the transcript, intact, after the failure.
    let exchanges = read_exchanges(&path).unwrap();
    assert_eq!(exchanges.len(), 2);
    assert!(exchanges[0].response.is_some());
    let failed = exchanges[1]
        .error
        .as_ref()
        .expect("the failure is recorded");
    assert_eq!(failed.status, Some(500));
    assert!(
        failed.message.contains("fake server error"),
        "{}",
        failed.message
    );
    assert!(exchanges[1].response.is_none());

    let replay = TranscriptModel::new(RecordMode::None, replay_source(&path), None, None);
    let miss = replay
        .complete(&request("hat/b", "second"))
        .await
        .unwrap_err();
    assert!(
        miss.to_string()
            .contains("failed exchanges are not replayed"),
        "{miss}"
    );
}

#[test]
fn an_empty_or_missing_transcript_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    assert!(read_exchanges(&path).unwrap().is_empty());
    std::fs::write(&path, "").unwrap();
    assert!(read_exchanges(&path).unwrap().is_empty());
}

fn one_line() -> String {
    serde_json::to_string(&json!({
        "step": "hat/a", "attempt": 1, "request_hash": "00", "request": {},
        "response": {"choices": []}, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0},
        "duration_ms": 3, "started_at": "2026-01-01T00:00:00.000Z"
    }))
    .unwrap()
}

#[test]
fn a_half_written_last_line_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let line = one_line();
    std::fs::write(&path, format!("{line}\n{}", &line[..line.len() / 2])).unwrap();
    assert_eq!(read_exchanges(&path).unwrap().len(), 1);

    // Resuming after such a crash cuts the half line off, so what is appended stays readable.
    let rec = Recorder::append(&path, Scrubber::default()).unwrap();
    let mut e = read_exchanges(&path).unwrap().remove(0);
    e.step = "hat/after".into();
    rec.record(&e).unwrap();
    let steps: Vec<String> = read_exchanges(&path)
        .unwrap()
        .into_iter()
        .map(|e| e.step)
        .collect();
    assert_eq!(steps, ["hat/a", "hat/after"]);
}

#[test]
fn a_garbage_line_in_the_middle_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let line = one_line();
    std::fs::write(&path, format!("{line}\nnot json at all\n{line}\n")).unwrap();
    let err = read_exchanges(&path).unwrap_err();
    assert!(matches!(err, ModelError::TranscriptDamaged { .. }));
    let text = err.to_string();
    assert!(
        text.contains("exchanges.jsonl") && text.contains("line 2"),
        "{text}"
    );
}

#[tokio::test]
async fn open_in_none_mode_builds_no_client_even_with_a_dead_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    record_two(&fake, &path).await;
    drop(fake);
    let before = std::fs::read(&path).unwrap();
    // A base URL nothing listens on, and one no client could even be built for: `none`
    // must not care, because it never constructs a client.
    for base_url in ["http://127.0.0.1:1/v1", "not a url"] {
        let s = ModelSettings::new("test-model", base_url);
        let model = TranscriptModel::open(
            RecordMode::None,
            Some(&path),
            Some(&path),
            &s,
            None,
            Scrubber::default(),
            Handles::default(),
        )
        .unwrap();
        let hit = model.complete(&request("hat/a", "first")).await.unwrap();
        assert_eq!(hit.content.as_deref(), Some("answer to: first"));
        let miss = model.complete(&request("hat/a", "new")).await.unwrap_err();
        assert!(matches!(miss, ModelError::ReplayMiss { .. }), "{miss:?}");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "replay wrote nothing"
    );

    // `new_episodes` does need a client, and says so for an unusable base URL.
    let bad = ModelSettings::new("test-model", "not a url");
    let err = TranscriptModel::open(
        RecordMode::NewEpisodes,
        Some(&path),
        Some(&path),
        &bad,
        None,
        Scrubber::default(),
        Handles::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn open_once_records_then_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/exchanges.jsonl");
    let fake = FakeOpenAi::with_handler(echo).await;
    let s = settings(&fake.url());
    let first = TranscriptModel::open(
        RecordMode::Once,
        Some(&path),
        Some(&path),
        &s,
        None,
        Scrubber::default(),
        Handles::default(),
    )
    .unwrap();
    assert_eq!(
        first.complete(&request("hat/a", "q")).await.unwrap().source,
        ReplySource::Live
    );
    let second = TranscriptModel::open(
        RecordMode::Once,
        Some(&path),
        Some(&path),
        &s,
        None,
        Scrubber::default(),
        Handles::default(),
    )
    .unwrap();
    assert_eq!(
        second
            .complete(&request("hat/a", "q"))
            .await
            .unwrap()
            .source,
        ReplySource::Replayed
    );
    assert_eq!(fake.count(), 1);
    assert_eq!(read_exchanges(&path).unwrap().len(), 1);
}
