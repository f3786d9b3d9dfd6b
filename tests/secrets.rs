//! No secret reaches disk: with a canary API key and a scrub pattern configured, a run whose
//! fake model (a stand-in, labelled as such) leaks both into its answers writes neither into
//! any file — transcript, artifacts, reports.

mod support;

use std::path::{Path, PathBuf};
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Test};

const CANARY_KEY: &str = "sk-hatrack-canary-7f3a9c2e41d84b6f";

#[tokio::test(flavor = "multi_thread")]
async fn neither_the_key_nor_a_scrub_pattern_match_is_written_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    support::copy_dir(&repo_root().join("examples/orders-pipeline"), &workspace);
    let config = std::fs::read_to_string(workspace.join("hatrack.toml")).unwrap();
    std::fs::write(
        workspace.join("hatrack.toml"),
        format!("{config}\n[secrets]\nscrub_patterns = [\"ACME-[0-9]{{6}}\"]\n"),
    )
    .unwrap();

    // The fake model echoes the Authorization header and an internal ticket id into its answer.
    let server = FakeOpenAi::with_handler(|req| {
        let leaked = format!("{} ACME-123456", req.header("authorization").unwrap_or(""));
        let reply = FakeReviewer::new().answer(req);
        let support::fake_openai::Reply::Http {
            status,
            headers,
            body,
        } = reply
        else {
            unreachable!()
        };
        let body = body
            .replace("fake review", &leaked)
            .replace("wrote its plan.", &leaked);
        support::fake_openai::Reply::Http {
            status,
            headers,
            body,
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    Test::new()
        .arg("run")
        .arg(&workspace)
        .args([
            "--model",
            "fake-model",
            "--base-url",
            &server.url(),
            "--transcript",
        ])
        .arg(&run_dir)
        .env("OPENAI_API_KEY", CANARY_KEY)
        .any_status()
        .run();
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {CANARY_KEY}"))),
        "the key is sent to the provider"
    );
    let mut files = 0;
    for entry in walkdir::WalkDir::new(&run_dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
    {
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        assert!(
            !text.contains(CANARY_KEY),
            "{} contains the API key",
            entry.path().display()
        );
        assert!(
            !text.contains("ACME-123456"),
            "{} contains a scrub-pattern match",
            entry.path().display()
        );
        files += 1;
    }
    assert!(
        files >= 7,
        "expected run.json, exchanges.jsonl, 4 reports and artifacts; found {files}"
    );
    let report = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    assert!(
        report.contains("[REDACTED]"),
        "the leaked text is visibly redacted"
    );
}

/// The fake reviewer, with `echo(request)` written into the pipeline engineer's plan.md (a
/// model echoing what it saw, the key included) and `extra` artifacts beside it.
async fn echoing_server(
    echo: fn(&support::fake_openai::SeenRequest) -> String,
    extra: Vec<(String, String)>,
) -> FakeOpenAi {
    FakeOpenAi::with_handler(move |req| {
        let reply = FakeReviewer::new().answer(req);
        let support::fake_openai::Reply::Http {
            status,
            headers,
            body,
        } = reply
        else {
            unreachable!()
        };
        let mut body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let mut answer: serde_json::Value = serde_json::from_str(&content).unwrap();
        if let Some(arts) = answer.get_mut("artifacts").and_then(|a| a.as_array_mut()) {
            let plan = arts[0]["content"].as_str().unwrap().to_string();
            arts[0]["content"] = format!("{plan}Seen: {}\n", echo(req)).into();
            if req.body_text.contains("pipeline-engineer/anti-pattern") {
                for (path, content) in &extra {
                    arts.push(serde_json::json!({"path": path, "content": content}));
                }
            }
        }
        body["choices"][0]["message"]["content"] = answer.to_string().into();
        support::fake_openai::Reply::Http {
            status,
            headers,
            body: body.to_string(),
        }
    })
    .await
}

fn workspace(dir: &Path) -> std::path::PathBuf {
    let workspace = dir.join("ws");
    support::copy_dir(&repo_root().join("examples/orders-pipeline"), &workspace);
    workspace
}

fn run_with_key(server: &FakeOpenAi, workspace: &Path, run_dir: &Path, key: &str) -> Test {
    Test::new()
        .arg("run")
        .arg(workspace)
        .args([
            "--model",
            "fake-model",
            "--base-url",
            &server.url(),
            "--max-retries",
            "0",
            "--quiet",
            "--transcript",
        ])
        .arg(run_dir)
        .env("OPENAI_API_KEY", key)
}

/// A run (no scrub patterns, only the key) whose model echoes the Authorization header it
/// was sent into its answers; returns the server and the run directory.
async fn run_where_the_model_echoes_the_key(dir: &Path) -> (FakeOpenAi, PathBuf) {
    let server = echoing_server(
        |req| req.header("authorization").unwrap_or("").to_string(),
        Vec::new(),
    )
    .await;
    let ws = workspace(dir);
    let run_dir = dir.join("run");
    run_with_key(&server, &ws, &run_dir, CANARY_KEY).run();
    (server, run_dir)
}

/// No scrub patterns, only the key: the reports are written without rebuilding the report
/// for scrubbing when the key is nowhere in it, and the key echoed by the model still
/// reaches no file of the run.
#[tokio::test(flavor = "multi_thread")]
async fn with_only_the_key_to_scrub_no_file_of_the_run_holds_the_echoed_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, run_dir) = run_where_the_model_echoes_the_key(dir.path()).await;
    let mut reports = 0;
    for entry in walkdir::WalkDir::new(&run_dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
    {
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        assert!(
            !text.contains(CANARY_KEY),
            "{} contains the API key",
            entry.path().display()
        );
        let name = entry.file_name().to_string_lossy();
        reports += usize::from(name.starts_with("report.") || name == "junit.xml");
    }
    assert_eq!(reports, 5, "every report was written");
}

/// A model that echoes the key into an artifact: later steps quote that artifact, and a
/// replay (which has only the scrubbed record, and no key) renders them with `[REDACTED]`.
/// The replay must find every exchange and write the same report.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_model_echoed_the_key_replays_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (server, run_dir) = run_where_the_model_echoes_the_key(dir.path()).await;
    let plan =
        std::fs::read_to_string(run_dir.join("artifacts/pipeline-engineer/plan.md")).unwrap();
    assert!(plan.contains("Seen: Bearer [REDACTED]"), "{plan}");
    assert!(
        server.requests().iter().any(|r| r
            .messages_text()
            .contains(&format!("Seen: Bearer {CANARY_KEY}"))),
        "a later step quoted the echoed key"
    );
    let report = std::fs::read(run_dir.join("report.json")).unwrap();
    let calls = server.count();
    Test::new()
        .args(["replay", "--quiet"])
        .arg(&run_dir)
        .status(0)
        .run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), report);
    assert_eq!(server.count(), calls);

    // Resumed with the key at hand, nothing is asked (and paid for) again.
    Test::new()
        .args(["run", "--quiet", "--base-url", &server.url(), "--resume"])
        .arg(&run_dir)
        .env("OPENAI_API_KEY", CANARY_KEY)
        .status(0)
        .run();
    assert_eq!(
        server.count(),
        calls,
        "resume replays every recorded exchange"
    );
}

/// Artifact names that scrub to one name (the key and a literal `[REDACTED]`, two matches
/// of one pattern) are all kept, under unique names with a warning, and the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn artifact_names_that_scrub_alike_stay_apart_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![
        (
            format!("{CANARY_KEY}.md"),
            "named after the key".to_string(),
        ),
        ("[REDACTED].md".to_string(), "named [REDACTED]".to_string()),
        ("ACME-111111.md".to_string(), "first ticket".to_string()),
        ("ACME-222222.md".to_string(), "second ticket".to_string()),
    ];
    let server = echoing_server(|_| String::new(), extra).await;
    let ws = workspace(dir.path());
    let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        format!("{config}\n[secrets]\nscrub_patterns = [\"ACME-[0-9]{{6}}\"]\n"),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    run_with_key(&server, &ws, &run_dir, CANARY_KEY).run();
    let arts = run_dir.join("artifacts/pipeline-engineer");
    let mut contents: Vec<String> = std::fs::read_dir(&arts)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    contents.sort();
    assert_eq!(
        contents.len(),
        5,
        "plan.md and four artifacts, none written over another: {contents:?}"
    );
    for content in [
        "named after the key",
        "named [REDACTED]",
        "first ticket",
        "second ticket",
    ] {
        assert!(
            contents.iter().any(|c| c == content),
            "{content}: {contents:?}"
        );
    }
    assert!(arts.join("[REDACTED]-2.md").is_file());
    assert!(arts.join("[REDACTED]-3.md").is_file());
    let report = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    assert!(report.contains("was written as"), "a warning says so");
    assert!(!report.contains(CANARY_KEY) && !report.contains("ACME-1"));
    let before = std::fs::read(run_dir.join("report.json")).unwrap();
    Test::new()
        .args(["replay", "--quiet"])
        .arg(&run_dir)
        .status(0)
        .run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), before);
}

/// A key holding a quote or a backslash (which escaped JSON turns into many forms) stops a
/// live run before any request, naming its variable.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_with_a_quote_or_a_backslash_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = echoing_server(|_| String::new(), Vec::new()).await;
    let ws = workspace(dir.path());
    for key in [r#"sk-with"quote-1234"#, r"sk-with\backslash-1234"] {
        run_with_key(&server, &ws, &dir.path().join("run"), key)
            .status(2)
            .stderr_has("OPENAI_API_KEY contains a quote or a backslash")
            .run();
    }
    assert_eq!(server.count(), 0);
}
