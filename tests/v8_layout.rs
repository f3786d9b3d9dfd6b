//! The H·AI·K·U plugin v8 layout (`tests/fixtures/v8/orchestration`): `## Check` lead-in
//! sentences, failure-mode guidance, front-matter-less hats with `## Process`, `fix_hats:`
//! and `interpretation:`, and stages without a completion signal — through the binary, with
//! the fake OpenAI server scripted by `FakeReviewer` for runs.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::{chat_body, FakeOpenAi, Reply, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const STUDIO: &str = "tests/fixtures/v8/orchestration";
const BUILD: &str = "tests/fixtures/v8/orchestration/stages/build";
const RELEASE: &str = "tests/fixtures/v8/orchestration/stages/release";
/// Labels as the method writes them: `**Check (…):**`, `**Reject:**`, `**Reject if
/// (…):**`, `**Forbidden:**`; studio-level review agents and fix hats, `applies_to:`, phases.
const WAREHOUSE: &str = "tests/fixtures/v8/warehouse";
const MODEL: &str = "tests/fixtures/v8/warehouse/stages/model";
const PUBLISH: &str = "tests/fixtures/v8/warehouse/stages/publish";

fn list_json(stage: &str) -> Value {
    let out = Test::new()
        .args(["list", "--stage", stage, "--format", "json"])
        .run();
    serde_json::from_str(&out.stdout).expect("list --format json prints JSON")
}

#[test]
fn a_check_lead_in_with_seven_bold_bullets_lists_seven_must_checks_with_ids() {
    let v = list_json(BUILD);
    let agent = &v["review_agents"][0];
    assert_eq!(agent["name"], "orchestration");
    let checks = agent["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7, "{checks:#?}");
    for (n, check) in checks.iter().enumerate() {
        assert_eq!(check["id"], format!("orchestration/check/{}", n + 1));
        assert_eq!(check["level"], "MUST");
        assert_eq!(check["keywords"], serde_json::json!(["MUST"]));
        assert_eq!(
            check["lead_in"],
            "The agent **MUST** verify, and file feedback for any violation:"
        );
    }
    assert_eq!(
        checks[0]["text"],
        "**Retries are bounded** — every task sets retries and a retry delay; no task retries forever"
    );
    assert!(checks[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("review-agents/orchestration.md:15"));
    assert_eq!(checks[6]["id"], "orchestration/check/7");
    // The failure modes are guidance, not checks.
    let modes = agent["failure_modes"].as_array().unwrap();
    assert_eq!(modes.len(), 2);
    assert!(modes[1]
        .as_str()
        .unwrap()
        .starts_with("Alerts sent to a personal address"));
}

#[test]
fn a_label_lead_in_gives_its_level_and_a_labelled_failure_mode_list_is_guidance() {
    let v = list_json(RELEASE);
    let agent = &v["review_agents"][0];
    let levels: Vec<&str> = agent["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["SHOULD", "SHOULD"]);
    assert_eq!(agent["checks"][1]["id"], "rollout/check/2");
    assert_eq!(
        agent["failure_modes"],
        serde_json::json!(["A rollback plan that reverts code but not the scheduler state"])
    );
    // 1.x checks carry no lead-in at all.
    let shipped = list_json("hats/deployment");
    assert!(shipped["review_agents"][0]["checks"][0]["lead_in"].is_null());
}

#[test]
fn hats_without_front_matter_load_with_their_process_as_guidance() {
    let v = list_json(BUILD);
    let hats = v["hats"].as_array().unwrap();
    let names: Vec<&str> = hats.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["builder", "verifier"]);
    assert!(hats[0]["process"]
        .as_str()
        .unwrap()
        .starts_with("1. Read the unit spec"));
    assert_eq!(hats[0]["constraints"].as_array().unwrap().len(), 2);
    // A keyword sentence in Process is context, like one in Focus: not a constraint.
    assert_eq!(hats[1]["constraints"].as_array().unwrap().len(), 1);
    assert_eq!(hats[1]["other_requirements"][0]["id"], "verifier/process/1");
    assert_eq!(hats[1]["other_requirements"][0]["section"], "process");
    assert_eq!(
        v["completion_signal"]["requirements"],
        serde_json::json!([])
    );
}

#[test]
fn fix_hats_and_interpretation_are_shown_by_list_as_json_and_text() {
    let v = list_json(BUILD);
    assert_eq!(
        v["stage"]["fix_hats"],
        serde_json::json!(["classifier", "builder", "feedback-assessor"])
    );
    assert_eq!(v["stage"]["interpretation"], "strict");
    assert_eq!(v["review_agents"][0]["interpretation"], "lens");
    assert!(v["hats"][0]["interpretation"].is_null());
    // Fix hats that are not in `hats:` do not run, and are not warned about as unlisted.
    assert_eq!(v["warnings"], serde_json::json!([]));
    Test::new()
        .args(["list", "--stage", BUILD])
        .stdout_has("fix hats: classifier, builder, feedback-assessor (not run by hatrack)")
        .stdout_has("interpretation: strict")
        .stdout_has("Interpretation: lens")
        .stdout_has(
            "MUST      orchestration/check/1  Retries are bounded — every task sets retries",
        )
        .stdout_has("Common failure modes (guidance for the judge, not checks):")
        .stdout_has("Completion signal: none — the run gates on hat constraints and review checks")
        .run();
    let shipped = list_json("hats/deployment");
    assert_eq!(shipped["stage"]["fix_hats"], serde_json::json!([]));
    assert!(shipped["stage"]["interpretation"].is_null());
}

#[test]
fn check_on_a_tree_of_v8_stages_reports_no_errors() {
    let out = Test::new()
        .args(["check", STUDIO])
        .status(0)
        .stdout_has("1 studio, 2 stages, 3 hats, 2 review agents, 1 output, 0 discovery")
        .stdout_has("9 review checks (7 MUST, 2 SHOULD)")
        .stdout_has(
            "2 stages without a completion signal: gated on hat constraints and review checks",
        )
        .stdout_has("0 errors, 1 warning")
        .run();
    // The one warning: a v8 hat with no anti-pattern list runs unchecked, and says so.
    assert!(
        out.stderr
            .contains("releaser.md:1: warning: hat `releaser` (v8 layout: `## Process`) has no `## Anti-patterns (RFC 2119)` section"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
}

/// The one line of the workspace's README the review agent reads and quotes.
const README_LINE: &str = "Every task of the orders DAG sets retries=3 with a five minute delay.";

/// A workspace the v8 hats read nothing from (no Reads binding); the review agent reads its
/// README with the tools.
fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("README.md"),
        format!("# Orders pipeline\n\n{README_LINE}\n"),
    )
    .unwrap();
    ws
}

/// The fake cites each hat's artifact for its constraints; the review agent's checks are
/// about the repository, so it reads the README first (one tool turn) and quotes it.
async fn server(reviewer: FakeReviewer) -> FakeOpenAi {
    let reviewer = reviewer.cite("review_answer", "README.md", README_LINE);
    FakeOpenAi::with_handler(move |req| {
        let read = req.body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
        if schema_name(req) == "review_answer" && !read {
            let mut body = chat_body("", "tool_calls", 20, 10);
            body["choices"][0]["message"] = serde_json::json!({
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_0", "type": "function", "function": {
                    "name": "read_file",
                    "arguments": r#"{"path": "README.md", "start_line": 1, "max_lines": 20}"#}}]
            });
            return Reply::json(200, body);
        }
        reviewer.answer(req)
    })
    .await
}

/// Runs the build stage; returns the exit code and the report.json.
async fn run_build(dir: &Path, reviewer: FakeReviewer) -> (i32, Value, Vec<SeenRequest>, String) {
    run_stage(dir, BUILD, reviewer).await
}

/// Runs `stage` against the README workspace with the fake model (a stand-in for the model,
/// scripted by `FakeReviewer`); returns the exit code, the report.json, the requests and
/// stdout.
async fn run_stage(
    dir: &Path,
    stage: &str,
    reviewer: FakeReviewer,
) -> (i32, Value, Vec<SeenRequest>, String) {
    let ws = workspace(dir);
    let server = server(reviewer).await;
    let run_dir = dir.join("run");
    let out = Test::new()
        .arg("run")
        .arg(&ws)
        .args(["--stage"])
        .arg(support::repo_root().join(stage))
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(&run_dir)
        .any_status()
        .run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let report = std::fs::read_to_string(run_dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}):\n{}", out.stderr));
    (
        out.status,
        serde_json::from_str(&report).unwrap(),
        server.requests(),
        out.stdout,
    )
}

fn schema_name(req: &SeenRequest) -> &str {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join("run").join(file)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_without_a_signal_passes_when_every_constraint_and_check_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (status, report, requests, stdout) = run_build(dir.path(), FakeReviewer::new()).await;
    assert_eq!(status, 0, "{stdout}\n{report:#}");
    // No completion judge is asked to rule on nothing.
    assert!(requests.iter().all(|r| schema_name(r) != "signal_answer"));
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "hat/builder",
            "hat/verifier",
            "judge/builder",
            "judge/verifier",
            "review/orchestration"
        ]
    );
    // 3 constraints + 7 checks + 2 hats.
    assert_eq!(report["outcome"]["blocking_total"], 12);
    assert_eq!(report["outcome"]["no_completion_signal"], true);
    assert_eq!(
        report["outcome"]["summary"],
        "No completion signal: gated on hat constraints and review checks; all of them hold."
    );
    assert_eq!(
        report["stage"]["fix_hats"],
        serde_json::json!(["classifier", "builder", "feedback-assessor"])
    );
    assert_eq!(report["stage"]["interpretation"], "strict");

    // Every format says the stage had no completion signal.
    let note = "no completion signal: gated on hat constraints and review checks";
    assert!(stdout.contains(note), "summary table:\n{stdout}");
    for file in ["report.md", "report.html", "junit.xml", "report.sarif"] {
        assert!(
            read(dir.path(), file).contains(note),
            "{file} does not say it"
        );
    }
    let md = read(dir.path(), "report.md");
    assert!(md.contains("fix hats: classifier, builder, feedback-assessor (not run by hatrack)"));
    assert!(md.contains("interpretation: strict"));
    assert!(md.contains("the stage advances on its hat constraints and review checks"));
    assert!(read(dir.path(), "report.html").contains("fix hats: classifier"));

    // A replay needs no completion judge either, and reproduces the report.
    let out = dir.path().join("replayed");
    Test::new()
        .arg("replay")
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&out)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .run();
    assert_eq!(
        std::fs::read_to_string(out.join("report.json")).unwrap(),
        read(dir.path(), "report.json")
    );

    // The v8 guidance reaches the prompts: Process to the hat, failure modes to the judge.
    let text_of = |schema: &str| -> String {
        requests
            .iter()
            .filter(|r| schema_name(r) == schema)
            .map(|r| r.messages_text())
            .collect()
    };
    let hats = text_of("hat_answer");
    assert!(hats.contains("Process (how you work; guidance):\n1. Read the unit spec"));
    assert!(hats.contains("this stage has no completion signal"));
    let review = text_of("review_answer");
    assert!(review.contains("Common failure modes to look for (guidance for your review; rule only on the checks below):\n- A retry count with no retry delay"));
    assert!(review.contains("[orchestration/check/1] The agent MUST verify, and file feedback for any violation: Retries are bounded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_without_a_signal_fails_when_a_review_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = FakeReviewer::new().verdict("orchestration/check/2", "fail");
    let (status, report, _, _) = run_build(dir.path(), reviewer).await;
    assert_eq!(status, 1);
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["subject"], "orchestration/check/2");
    assert_eq!(
        report["outcome"]["summary"],
        "No completion signal: gated on hat constraints and review checks; 1 of 12 blocking constraint(s), check(s) or hat(s) fail."
    );
    assert!(read(dir.path(), "report.md").contains("orchestration/check/2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_without_a_signal_fails_when_a_constraint_judge_fails() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = FakeReviewer::new().verdict("verifier/anti-pattern/1", "fail");
    let (status, report, _, _) = run_build(dir.path(), reviewer).await;
    assert_eq!(status, 1);
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["subject"], "verifier/anti-pattern/1");
    assert_eq!(report["outcome"]["no_completion_signal"], true);
}

#[test]
fn qualified_labels_and_reject_lists_check_clean_with_their_checks_counted() {
    let out = Test::new()
        .args(["check", WAREHOUSE])
        .status(0)
        .stdout_has("1 studio, 2 stages, 2 hats, 2 review agents, 0 outputs, 0 discovery")
        // tests: 2 under `Check (per model, lens)`, 2 under `Reject`, 1 under `Reject if
        // (advisory)` with a SHOULD lead-in; access: 1; the studio's: 1 + 2 under `Reject if`.
        .stdout_has("9 review checks (4 MUST NOT, 3 MUST, 1 SHOULD NOT, 1 SHOULD)")
        // modeler: its anti-pattern and the `Forbidden` item; publisher: 1.
        .stdout_has("3 hat constraints (3 MUST NOT)")
        .stdout_has("studio level: 2 review agents (run on the stages they apply to), 1 fix hat (shown, not run)")
        .stdout_has("1 phase file: guidance, shown, not run")
        .stdout_has("0 errors, 0 warnings")
        .run();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn reject_items_are_must_not_checks_with_their_label_kept() {
    let v = list_json(MODEL);
    let tests = &v["review_agents"][0];
    assert_eq!(tests["name"], "tests");
    let checks = tests["checks"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = checks
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["level"].as_str().unwrap(),
                c["label"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("tests/check/1", "MUST", "Check (per model, lens)"),
            ("tests/check/2", "SHOULD", "Check (per model, lens)"),
            ("tests/check/3", "MUST NOT", "Reject"),
            ("tests/check/4", "MUST NOT", "Reject"),
            ("tests/check/5", "SHOULD NOT", "Reject if (advisory)"),
        ]
    );
    assert_eq!(checks[2]["text"], "A model whose tests are all disabled");
    // The judge reads the list's label (or its lead-in) before a keyword-less item.
    assert_eq!(checks[2]["lead_in"], "Reject:");
    assert_eq!(
        checks[4]["lead_in"],
        "The agent **SHOULD** reject a model when:"
    );
    assert_eq!(checks[2]["malformed"], false);
    // A hat's `Forbidden` list holds constraints at MUST NOT, label kept.
    let constraints = v["hats"][0]["constraints"].as_array().unwrap();
    assert_eq!(constraints.len(), 2);
    assert_eq!(constraints[1]["level"], "MUST NOT");
    assert_eq!(constraints[1]["label"], "Forbidden");
    assert!(constraints[0]["label"].is_null());
    // 1.x and plain v8 labels keep no label.
    assert!(list_json(BUILD)["review_agents"][0]["checks"][0]["label"].is_null());
}

#[test]
fn studio_review_agents_apply_to_their_stages_and_fix_hats_and_phases_are_shown() {
    let model = list_json(MODEL);
    let names = |v: &Value| -> Vec<(String, String)> {
        v["review_agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["origin"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |n: &str, o: &str| (n.to_string(), o.to_string());
    assert_eq!(
        names(&model),
        [pair("tests", "own"), pair("consistency", "studio")]
    );
    assert_eq!(
        model["stage"]["studio_agents_not_applied"],
        serde_json::json!(["release-gate"])
    );
    assert_eq!(
        model["stage"]["studio_fix_hats"],
        serde_json::json!(["reconciler"])
    );
    assert_eq!(model["stage"]["phases"][0]["name"], "EXECUTION");
    let publish = list_json(PUBLISH);
    assert_eq!(
        names(&publish),
        [
            pair("access", "own"),
            pair("consistency", "studio"),
            pair("release-gate", "studio")
        ]
    );
    assert_eq!(
        publish["review_agents"][2]["applies_to"],
        serde_json::json!(["publish"])
    );
    assert_eq!(
        publish["review_agents"][2]["checks"][1]["level"],
        "MUST NOT"
    );
    assert_eq!(
        publish["review_agents"][2]["checks"][1]["label"],
        "Reject if"
    );
    Test::new()
        .args(["list", "--stage", MODEL])
        .stdout_has("studio fix hats: reconciler (not run by hatrack)")
        .stdout_has("studio review agents not applying here: release-gate")
        .stdout_has("phase EXECUTION (")
        .stdout_has("- consistency (studio-level, from studio warehouse)")
        .stdout_has(
            "tests/check/3  A model whose tests are all disabled  [listed under \"Reject\"]",
        )
        .run();
    // `render` shows the phases and fix hats after the request, never in it.
    let ws = tempfile::tempdir().unwrap();
    Test::new()
        .args(["render", "review/consistency", "--stage", MODEL])
        .arg(ws.path())
        .stdout_has("──── phases and fix hats (not sent: hatrack runs neither) ────")
        .stdout_has("**Untested joins** are the highest-priority finding.")
        .stdout_has("studio fix hats: reconciler")
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_judges_reject_items_as_must_not_and_keeps_their_label_in_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = FakeReviewer::new().verdict("tests/check/3", "fail");
    let (status, report, requests, _) = run_stage(dir.path(), MODEL, reviewer).await;
    assert_eq!(status, 1, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "hat/modeler",
            "judge/modeler",
            "review/tests",
            "review/consistency"
        ]
    );
    let find = |id: &str| {
        report["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {report:#}"))
            .clone()
    };
    let rejected = find("tests/check/3");
    assert_eq!(rejected["level"], "MUST NOT");
    assert_eq!(rejected["label"], "Reject");
    assert_eq!(rejected["blocking"], true);
    assert_eq!(find("modeler/anti-pattern/2")["label"], "Forbidden");
    assert_eq!(find("tests/check/5")["label"], "Reject if (advisory)");
    assert!(find("consistency/check/1").get("label").is_none());
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["subject"], "tests/check/3");
    // The review judge reads each reject item after its list's label.
    let review: String = requests
        .iter()
        .filter(|r| schema_name(r) == "review_answer")
        .map(|r| r.messages_text())
        .collect();
    assert!(
        review.contains("[tests/check/3] Reject: A model whose tests are all disabled"),
        "{review}"
    );
}
