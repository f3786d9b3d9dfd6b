//! No secret reaches disk: with a canary API key and a scrub pattern configured, a run whose
//! fake model (a stand-in, labelled as such) leaks both into its answers writes neither into
//! any file — transcript, artifacts, reports.

mod support;

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
