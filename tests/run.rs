//! `hatrack run` / `replay` end to end through the binary, against the fake OpenAI server
//! (scripted by `FakeReviewer`, a stand-in for a model) and the shipped deployment stage on
//! `examples/orders-pipeline`. One test per exit code, grounding, and replay.

mod support;

use std::path::Path;

use serde_json::Value;
use support::fake_openai::{FakeOpenAi, Reply};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const WORKSPACE: &str = "examples/orders-pipeline";

fn run_in(server: &FakeOpenAi, dir: &Path) -> Test {
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args([
            "--timeout",
            "5",
            "--max-retries",
            "1",
            "--quiet",
            "--transcript",
        ])
        .arg(dir)
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no requirement {id}"))
}

async fn reviewer_server(reviewer: FakeReviewer) -> FakeOpenAi {
    FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_0_when_every_requirement_is_met_with_grounded_evidence() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).status(0).run();
    // pipeline-engineer, sre, their two constraint judges, reliability, completion judge.
    assert_eq!(server.count(), 6);
    for f in [
        "run.json",
        "exchanges.jsonl",
        "report.json",
        "report.md",
        "report.html",
        "junit.xml",
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    assert!(run_dir
        .join("artifacts/pipeline-engineer/plan.md")
        .is_file());
    let r = report(&run_dir);
    assert_eq!(r["outcome"]["signal_met"], true);
    assert_eq!(
        r["outcome"]["human_approval_required"], true,
        "the stage's gate is external"
    );
    assert_eq!(r["requirements"].as_array().unwrap().len(), 10 + 4 + 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_1_when_a_review_check_fails_and_the_summary_says_why() {
    let server = reviewer_server(FakeReviewer::new().verdict("reliability/check/3", "fail")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(dir.path().join("run"))
        .status(1)
        .stdout_has("reliability/check/3")
        .run();
    assert!(
        out.stdout.to_lowercase().contains("not met"),
        "{}",
        out.stdout
    );
    let r = report(&dir.path().join("run"));
    assert_eq!(requirement(&r, "reliability/check/3")["verdict"], "unmet");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_2_on_an_unbound_input_before_any_request() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("hatrack.toml"),
        "[inputs]\n\"validation report\" = \"report.md\"\n",
    )
    .unwrap();
    std::fs::write(ws.path().join("report.md"), "# Validation\nall good\n").unwrap();
    let out = Test::new()
        .arg("run")
        .arg(ws.path())
        .args(["--base-url", &server.url(), "--transcript"])
        .arg(ws.path().join("run"))
        .status(2)
        .stderr_has("hat pipeline-engineer: Reads item \"transformation code\" is not bound")
        .stderr_has("\"transformation code\" = \"path/to/file\"")
        .run();
    assert!(
        out.stderr.contains("sla requirements from discovery"),
        "{}",
        out.stderr
    );
    assert_eq!(server.count(), 0, "preflight failures make no request");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_2_on_a_glob_that_matches_nothing_or_escapes_the_workspace() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("hatrack.toml"),
        "[inputs]\n\"validation report\" = \"../outside.md\"\n\"transformation code\" = [\"models/**/*.sql\"]\n",
    )
    .unwrap();
    Test::new()
        .arg("run")
        .arg(ws.path())
        .args(["--base-url", &server.url()])
        .status(2)
        .stderr_has("\"../outside.md\" points outside the workspace")
        .stderr_has("\"models/**/*.sql\" matches no file")
        .run();
    assert_eq!(server.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_3_when_the_provider_keeps_failing_names_the_step() {
    let server = FakeOpenAi::with_handler(|_| Reply::server_error()).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir)
        .status(3)
        .stderr_has("hat/pipeline-engineer")
        .stderr_has("500")
        .run();
    assert_eq!(server.count(), 2, "one request and one retry");
    let lines = std::fs::read_to_string(run_dir.join("exchanges.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "the failed exchange is on record");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_4_when_a_replay_meets_a_changed_prompt_and_shows_the_diff() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).run();
    server.stop();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    let hat = std::fs::read_to_string("prompts/hat.j2")
        .unwrap()
        .replace("# Your role:", "# Your part:");
    std::fs::write(prompts.join("hat.j2"), hat).unwrap();
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--prompts")
        .arg(&prompts)
        .arg("--out")
        .arg(dir.path().join("out"))
        .status(4)
        .stderr_has("hat/pipeline-engineer")
        .stderr_has("-")
        .stderr_has("+")
        .stderr_has("Your part")
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_5_when_the_budget_would_be_exceeded_before_the_first_request() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let dir = tempfile::tempdir().unwrap();
    run_in(&server, &dir.path().join("run"))
        .args(["--budget", "100"])
        .status(5)
        .stderr_has("budget")
        .run();
    assert_eq!(server.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fabricated_quote_turns_its_verdict_unknown_and_the_report_says_why() {
    let server = reviewer_server(FakeReviewer::new().fabricate("reliability/check/2")).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).status(1).run();
    let r = report(&run_dir);
    let fabricated = requirement(&r, "reliability/check/2");
    assert_eq!(fabricated["claimed"], "met");
    assert_eq!(fabricated["verdict"], "unknown");
    assert_eq!(fabricated["evidence"][0]["grounded"], false);
    assert!(
        fabricated["note"]
            .as_str()
            .unwrap()
            .contains("does not occur"),
        "{fabricated}"
    );
    let real = requirement(&r, "reliability/check/1");
    assert_eq!(real["verdict"], "met");
    assert_eq!(real["evidence"][0]["grounded"], true);
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("reliability/check/2"),
        "report.md names the downgraded check"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_needs_no_server_and_rewrites_identical_reports() {
    let server = reviewer_server(FakeReviewer::new().verdict("sre/anti-pattern/2", "fail")).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).status(1).run();
    server.stop();
    let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
    let recorded = read("report.json");
    let exchanges = read("exchanges.jsonl");
    for _ in 0..2 {
        Test::new()
            .arg("replay")
            .arg(&run_dir)
            .status(1)
            .stdout_has("sre/anti-pattern/2")
            .run();
        let now = read("report.json");
        let changed: Vec<(&str, &str)> = recorded
            .lines()
            .zip(now.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert!(
            now == recorded,
            "report.json changed on replay: {changed:#?}"
        );
        assert!(
            read("exchanges.jsonl") == exchanges,
            "replay touched the transcript"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn render_prints_exactly_what_the_run_sent() {
    let server = reviewer_server(FakeReviewer::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir).run();
    let sent: Value = serde_json::from_str(
        std::fs::read_to_string(run_dir.join("exchanges.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let out = Test::new()
        .args([
            "render",
            "pipeline-engineer",
            WORKSPACE,
            "--model",
            "fake-model",
            "--json",
        ])
        .run();
    let rendered: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rendered, sent["request"]);
    // A later step, with its upstream artifacts taken from the run.
    for step in ["sre", "review/reliability", "signal"] {
        Test::new()
            .args(["render", step, "--against"])
            .arg(&run_dir)
            .stdout_has("no change")
            .run();
    }
}

/// The corpus's own deployment stage includes two review agents from earlier stages
/// (`review-agents-include`): all three judge, together, within `--jobs`.
#[tokio::test(flavor = "multi_thread")]
async fn included_review_agents_judge_too_and_run_together_within_jobs() {
    let Some(corpus) = support::corpus_dir() else {
        return;
    };
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| {
        let answer = reviewer.answer(req);
        if req.body["response_format"]["json_schema"]["name"] == "review_answer" {
            answer.delayed(std::time::Duration::from_millis(300))
        } else {
            answer
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run_in(&server, &run_dir)
        .arg("--studio")
        .arg(corpus.join("data-pipeline"))
        .args(["--stage", "deployment", "--jobs", "2"])
        .any_status()
        .run();
    let r = report(&run_dir);
    let agents: Vec<&str> = r["stage"]["review_agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        [
            "reliability",
            "data-quality (from transformation)",
            "coverage (from validation)"
        ]
    );
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "hat/pipeline-engineer",
            "hat/sre",
            "judge/pipeline-engineer",
            "judge/sre",
            "review/reliability",
            "review/data-quality",
            "review/coverage",
            "signal"
        ]
    );
    assert_eq!(
        server.max_in_flight(),
        2,
        "review agents run together, at most --jobs at a time"
    );
}

#[test]
fn both_example_workspaces_bind_every_input_of_the_shipped_stage() {
    for ws in ["examples/orders-pipeline", "examples/orders-pipeline-gaps"] {
        for step in [
            "pipeline-engineer",
            "sre",
            "judge/pipeline-engineer",
            "judge/sre",
            "review/reliability",
            "signal",
        ] {
            Test::new()
                .args(["render", step, ws])
                .stdout_has("──── user ────")
                .run();
        }
    }
}
