//! The prompt author's loop through the binary, against the fake OpenAI server (scripted by
//! `FakeReviewer`, a stand-in for a model): re-run only what changed, compare runs, resume
//! after SIGKILL, survive a damaged transcript, and measure verdict stability.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_openai::{FakeOpenAi, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Test};

const WORKSPACE: &str = "examples/orders-pipeline";

fn run_args(server: &FakeOpenAi) -> Vec<String> {
    [
        "run",
        WORKSPACE,
        "--model",
        "fake-model",
        "--timeout",
        "5",
        "--max-retries",
        "0",
        "--base-url",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([server.url()])
    .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn steps_requested(server: &FakeOpenAi) -> BTreeSet<String> {
    server.requests().iter().map(step_of).collect()
}

/// The step a request belongs to, read from its answer schema and the role it names.
fn step_of(req: &SeenRequest) -> String {
    let name = req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or("");
    let text = req.messages_text();
    match name {
        "signal_answer" => "signal".into(),
        "review_answer" => "review/reliability".into(),
        "constraint_answer" if text.contains("constraint judge for the Pipeline Engineer") => {
            "judge/pipeline-engineer".into()
        }
        "constraint_answer" => "judge/sre".into(),
        _ if text.contains("# Your role: Pipeline Engineer\n") => "hat/pipeline-engineer".into(),
        _ => "hat/sre".into(),
    }
}

/// A copy of the shipped stage the test may edit.
fn stage_copy(dir: &Path) -> PathBuf {
    let stage = dir.join("deployment");
    for sub in ["", "hats", "review-agents", "outputs"] {
        std::fs::create_dir_all(stage.join(sub)).unwrap();
    }
    for f in [
        "STAGE.md",
        "hats/pipeline-engineer.md",
        "hats/sre.md",
        "review-agents/reliability.md",
        "outputs/PIPELINE-CONFIG.md",
    ] {
        std::fs::copy(repo_root().join("hats/deployment").join(f), stage.join(f)).unwrap();
    }
    stage
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_sre_hat_re_runs_only_the_steps_whose_requests_changed() {
    let dir = tempfile::tempdir().unwrap();
    let stage = stage_copy(dir.path());
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));

    let first = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    Test::new()
        .args(run_args(&first))
        .arg("--stage")
        .arg(&stage)
        .arg("--transcript")
        .arg(&old)
        .run();
    assert_eq!(first.count(), 6);
    let old_exchanges = std::fs::read(old.join("exchanges.jsonl")).unwrap();

    // One line of sre.md changes, and this time the SRE fails a constraint.
    let sre = std::fs::read_to_string(stage.join("hats/sre.md")).unwrap();
    std::fs::write(
        stage.join("hats/sre.md"),
        sre.replace(
            "covers only success cases, not failure",
            "covers only the success cases, not failure",
        ),
    )
    .unwrap();
    let second = FakeOpenAi::with_handler({
        let r = FakeReviewer::new().verdict("sre/anti-pattern/2", "fail");
        move |req| r.answer(req)
    })
    .await;
    let out = Test::new()
        .args(run_args(&second))
        .arg("--stage")
        .arg(&stage)
        .arg("--from-transcript")
        .arg(&old)
        .arg("--transcript")
        .arg(&new)
        .status(1)
        .run();
    // The SRE's and its constraint judge's requests changed (they quote the edited
    // constraint); the judge's new verdict changes what the completion judge is shown. The
    // Pipeline Engineer, its judge and the Reliability review (same artifacts, same inputs)
    // replay.
    assert_eq!(
        steps_requested(&second),
        BTreeSet::from([
            "hat/sre".to_string(),
            "judge/sre".to_string(),
            "signal".to_string()
        ])
    );
    assert_eq!(second.count(), 3);
    assert_eq!(
        std::fs::read(old.join("exchanges.jsonl")).unwrap(),
        old_exchanges,
        "OLD is never modified"
    );
    let report = json(&new.join("report.json"));
    let source = |id: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["source"]
            .clone()
    };
    assert_eq!(source("hat/pipeline-engineer"), "replayed");
    assert_eq!(source("hat/sre"), "live");
    assert_eq!(source("review/reliability"), "replayed");
    assert_eq!(source("signal"), "live");
    assert!(
        out.stdout.contains("replayed") && out.stdout.contains("live"),
        "{}",
        out.stdout
    );

    // NEW alone is a complete transcript: it replays offline.
    Test::new().arg("replay").arg(&new).status(1).run();

    let diff = Test::new().arg("diff").arg(&old).arg(&new).status(1).run();
    assert!(
        diff.stdout.contains("hat/sre turn 1 (changed)"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("covers only the success cases"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("sre/anti-pattern/2: met → unmet"),
        "{}",
        diff.stdout
    );
    assert!(
        !diff
            .stdout
            .contains("hat/pipeline-engineer turn 1 (changed)"),
        "{}",
        diff.stdout
    );
    let as_json = Test::new()
        .arg("diff")
        .arg(&old)
        .arg(&new)
        .args(["--format", "json"])
        .status(1)
        .run();
    let d: Value = serde_json::from_str(&as_json.stdout).unwrap();
    assert_eq!(d["flipped"], 1);
    Test::new()
        .arg("diff")
        .arg(&old)
        .arg(&old)
        .status(0)
        .stdout_has("no verdict flipped")
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_its_first_exchange_resumes_without_asking_again() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let reviewer = FakeReviewer::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let slow = FakeOpenAi::with_handler({
        let seen = seen.clone();
        let r = reviewer.clone();
        move |req| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                r.answer(req)
            } else {
                r.answer(req).delayed(Duration::from_secs(30))
            }
        }
    })
    .await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(run_args(&slow))
        .arg("--transcript")
        .arg(&run_dir)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exchanges = run_dir.join("exchanges.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&exchanges)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first exchange was never recorded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    slow.stop();

    let resumed = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    Test::new()
        .args(["run", "--resume"])
        .arg(&run_dir)
        .args(["--base-url", &resumed.url()])
        .run();
    assert!(
        !steps_requested(&resumed).contains("hat/pipeline-engineer"),
        "the first step was asked again"
    );
    assert_eq!(resumed.count(), 5);
    let text = std::fs::read_to_string(&exchanges).unwrap();
    let mut seen_steps = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        seen_steps.push(format!("{}#{}", e["step"].as_str().unwrap(), e["attempt"]));
    }
    let unique: BTreeSet<&String> = seen_steps.iter().collect();
    assert_eq!(
        unique.len(),
        seen_steps.len(),
        "a step was recorded twice: {seen_steps:?}"
    );
    assert_eq!(seen_steps.len(), 6, "{seen_steps:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_transcript_gives_a_clear_message_never_a_panic() {
    let server = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    Test::new()
        .args(run_args(&server))
        .arg("--transcript")
        .arg(&run_dir)
        .run();
    let path = run_dir.join("exchanges.jsonl");
    let good = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    // A garbage line in the middle names the file and the line.
    std::fs::write(
        &path,
        format!("{}\nnot json at all\n{}\n", lines[0], lines[1..].join("\n")),
    )
    .unwrap();
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .status(2)
        .stderr_has("exchanges.jsonl")
        .stderr_has("line 2")
        .run();

    // A half-written last line (a crash mid-write) is dropped with a warning; the run resumes.
    let half = &lines[3][..lines[3].len() / 2];
    std::fs::write(&path, format!("{}\n{half}", lines[..3].join("\n"))).unwrap();
    Test::new()
        .args(["run", "--resume"])
        .arg(&run_dir)
        .args(["--base-url", &server.url()])
        .stderr_has("line 4")
        .run();

    // An empty transcript replays nothing: a miss that names the first step.
    std::fs::write(&path, "").unwrap();
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .status(4)
        .stderr_has("hat/pipeline-engineer")
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn five_samples_that_disagree_show_agreement_and_mark_the_check_unstable() {
    let review_calls = Arc::new(AtomicUsize::new(0));
    let server = FakeOpenAi::with_handler({
        let calls = review_calls.clone();
        move |req| {
            let mut reviewer = FakeReviewer::new();
            if req.body["response_format"]["json_schema"]["name"] == "review_answer" {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let word = ["pass", "pass", "fail", "pass", "fail"][n % 5];
                reviewer = reviewer.verdict("reliability/check/1", word);
            }
            reviewer.answer(req)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    Test::new()
        .args(run_args(&server))
        .args(["--samples", "5", "--transcript"])
        .arg(&run_dir)
        .status(1)
        .run();
    // 2 hats once each; 2 constraint judges, the review agent and the completion judge
    // 5 times each.
    assert_eq!(server.count(), 2 + 2 * 5 + 5 + 5);
    let report = json(&run_dir.join("report.json"));
    let check = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "reliability/check/1")
        .unwrap();
    assert_eq!(check["verdict"], "met");
    assert_eq!(
        check["agreement"],
        serde_json::json!({"agree": 3, "samples": 5, "unstable": true})
    );
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    let reason = reasons
        .iter()
        .find(|r| r["subject"] == "reliability/check/1")
        .expect("the unstable check is a reason");
    assert_eq!(reason["kind"], "unstable");
    assert_eq!(
        (reason["agree"].as_u64(), reason["samples"].as_u64()),
        (Some(3), Some(5))
    );
    for f in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(f)).unwrap();
        // The HTML escapes `/` as `&#x2f;` (it reads as 3/5 in a browser).
        assert!(
            text.contains("3/5") || text.contains("3&#x2f;5"),
            "{f} does not show the agreement"
        );
    }
    // --allow-unstable lets the majority stand: replay with it and the gate opens.
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--allow-unstable")
        .arg("--out")
        .arg(dir.path().join("out"))
        .status(0)
        .run();
}
