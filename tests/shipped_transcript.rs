//! The README's main command: replaying the shipped transcript (recorded live from the real
//! local model) works offline and reproduces the committed report byte for byte.

mod support;

use support::{repo_root, Test};

const SHIPPED: &str = "transcripts/orders-pipeline";

#[test]
fn the_shipped_transcript_replays_offline_to_the_committed_reports() {
    let dir = tempfile::tempdir().unwrap();
    // An unroutable provider: a replay must not need one.
    let out = Test::new()
        .args(["replay", SHIPPED, "--out"])
        .arg(dir.path())
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .any_status()
        .run();
    assert!(
        matches!(out.status, 0 | 1),
        "replay failed:\n{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("signal"),
        "no summary on stdout:\n{}",
        out.stdout
    );
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "junit.xml",
        "report.sarif",
    ] {
        let committed = std::fs::read_to_string(repo_root().join(SHIPPED).join(f)).unwrap();
        let replayed = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(
            committed == replayed,
            "{f} differs from the committed one: re-record the transcript or fix the drift"
        );
    }
}
