//! Hats produce, judges judge: the gate through the binary, against the fake OpenAI server
//! scripted by `FakeReviewer` (a stand-in for a model, not a model). A hat's constraints are
//! ruled on by its constraint judge; quotes ground only when meaningful and found in the
//! source named exactly; `--judge-model` sends every judging step to its own model; and the
//! four reports agree with the exit code.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::{FakeReviewer, ARTIFACT_LINE};
use support::Test;

/// The one line of the workspace's only input file that the judges may quote.
const INPUT_LINE: &str =
    "Freshness alerts page the data on-call within 15 minutes of a missed SLA.";

/// A workspace whose every Reads item is bound to one file, `notes.md`.
fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("notes.md"),
        format!("# Orders pipeline notes\n\n{INPUT_LINE}\nRetries: 3.\n"),
    )
    .unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    ws
}

fn run(server: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

async fn server(reviewer: FakeReviewer) -> FakeOpenAi {
    FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no requirement {id}"))
}

fn schema_name(req: &support::fake_openai::SeenRequest) -> String {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hat_cannot_pass_its_own_constraints_the_judge_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    // The hat's artifact says all is well; its constraint judge fails one constraint.
    let server = server(FakeReviewer::new().verdict("sre/anti-pattern/2", "fail")).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(1).run();

    // Hats are never asked for verdicts: their schema has no place for one.
    for req in server.requests() {
        if schema_name(&req) == "hat_answer" {
            let props = &req.body["response_format"]["json_schema"]["schema"]["properties"];
            assert_eq!(props.as_object().unwrap().len(), 2, "{props}");
            assert!(props.get("verdicts").is_none());
        }
    }
    let report = json(&run_dir.join("report.json"));
    let c = requirement(&report, "sre/anti-pattern/2");
    assert_eq!(c["verdict"], "unmet");
    assert_eq!(c["judged_by"], "judge/sre");
    for r in report["requirements"].as_array().unwrap() {
        assert!(
            !r["judged_by"].as_str().unwrap().starts_with("hat/"),
            "a hat judged {}",
            r["id"]
        );
    }
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["subject"], "sre/anti-pattern/2");
    assert_eq!(reasons[0]["kind"], "unmet");

    // Every format names the judge, never the hat, as the one that ruled.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.contains("`sre/anti-pattern/2`"))
        .expect("the unmet constraint is listed");
    assert!(row.contains("`judge/sre`"), "{row}");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    let suite = junit
        .split("<testsuite ")
        .find(|s| s.contains("sre/anti-pattern/2"))
        .unwrap();
    assert!(suite.starts_with("name=\"judge/sre\""), "{suite}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("sre constraint judge"));
}

/// Every judge cites `quote` from `source`; the completion judge cites its usual artifact.
async fn cited(dir: &Path, name: &str, reviewer: FakeReviewer) -> (Value, i32) {
    let ws = workspace(dir);
    let server = server(reviewer).await;
    let run_dir = dir.join(name);
    let out = run(&server, &ws, &run_dir).any_status().run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    (json(&run_dir.join("report.json")), out.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn trivial_quotes_and_borrowed_names_ground_nothing_and_keep_the_gate_closed() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (source, quote)) in [
        ("notes.md", "e"),
        ("notes.md", "ok"),
        ("notes.md", "#"),
        ("notes.md", "   "),
        // The hat wrote an artifact named like the input: the input is `notes.md`, the
        // artifact `artifacts/<hat>/notes.md`, and the quote occurs only in the artifact.
        ("notes.md", ARTIFACT_LINE),
        // A path suffix of the artifact is not its name.
        ("plan.md", ARTIFACT_LINE),
    ]
    .into_iter()
    .enumerate()
    {
        let reviewer = FakeReviewer::new()
            .artifact_path(if source == "plan.md" {
                "plan.md"
            } else {
                "notes.md"
            })
            .cite("constraint_answer", source, quote)
            .cite("review_answer", source, quote)
            .cite("signal_answer", source, quote);
        let (report, status) = cited(dir.path(), &format!("run-{i}"), reviewer).await;
        assert_eq!(status, 1, "{quote:?} from {source:?} opened the gate");
        for r in report["requirements"].as_array().unwrap() {
            assert_eq!(r["verdict"], "unknown", "{quote:?}: {}", r["id"]);
            assert_eq!(r["cause"]["cause"], "ungrounded", "{}", r["id"]);
            assert_eq!(r["evidence"][0]["grounded"], false);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_exact_quote_from_the_named_input_grounds_and_opens_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    // Judges shown the input quote it; the completion judge (shown artifacts only) quotes
    // the line of the input a hat quoted in its artifact (signal/1 is about the repository:
    // its met needs repository words).
    let reviewer = FakeReviewer::new()
        .cite("constraint_answer", "notes.md", INPUT_LINE)
        .cite("review_answer", "notes.md", INPUT_LINE);
    let (report, status) = cited(dir.path(), "run", reviewer).await;
    assert_eq!(status, 0, "{}", report["outcome"]);
    let c = requirement(&report, "sre/anti-pattern/1");
    assert_eq!(c["verdict"], "met");
    assert_eq!(
        c["evidence"][0]["found_in"],
        serde_json::json!({"kind": "input"})
    );
    assert_eq!(c["evidence"][0]["provenance"], "quoted from the repository");
    let s = requirement(&report, "signal/1");
    assert_eq!(s["about"], "repository");
    assert_eq!(s["evidence"][0]["quote"], INPUT_LINE);
    assert_eq!(
        s["evidence"][0]["found_in"],
        serde_json::json!({"kind": "artifact", "hat": "pipeline-engineer"})
    );
    assert_eq!(
        s["evidence"][0]["provenance"],
        "quoted from the pipeline-engineer's artifact; the same words are in the repository (notes.md)"
    );
    assert_eq!(s["evidence"][0]["repository_copy"], "notes.md");
    assert!(s["cause"].is_null(), "{s}");
    let md = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(md.contains("quoted from the repository"));
}

#[tokio::test(flavor = "multi_thread")]
async fn judge_model_asks_every_judging_step_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = server(FakeReviewer::new()).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .args(["--judge-model", "judge-7b"])
        .status(0)
        .run();
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    for req in &requests {
        let expected = if schema_name(req) == "hat_answer" {
            "fake-model"
        } else {
            "judge-7b"
        };
        assert_eq!(req.body["model"], expected, "{}", schema_name(req));
    }
    let record = json(&run_dir.join("run.json"));
    assert_eq!(record["model"]["name"], "fake-model");
    assert_eq!(record["model"]["judge"]["name"], "judge-7b");
    let report = json(&run_dir.join("report.json"));
    assert_eq!(report["run"]["model"], "fake-model");
    assert_eq!(report["run"]["judge_model"], "judge-7b");
    for step in report["steps"].as_array().unwrap() {
        let expected = if step["kind"] == "hat" {
            "fake-model"
        } else {
            "judge-7b"
        };
        assert_eq!(step["model"], expected, "{}", step["id"]);
    }
    for r in report["requirements"].as_array().unwrap() {
        assert_eq!(r["model"], "judge-7b", "{}", r["id"]);
    }
    // The replay asks the recorded judge model again: it matches without a network.
    Test::new().arg("replay").arg(&run_dir).status(0).run();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_four_reports_and_the_exit_code_agree_on_every_count() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    // One unmet constraint, one fabricated quote (unknown), one failing review check.
    let reviewer = FakeReviewer::new()
        .verdict("pipeline-engineer/anti-pattern/1", "fail")
        .fabricate("sre/anti-pattern/3")
        .verdict("reliability/check/2", "fail");
    let server = server(reviewer).await;
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).any_status().run();

    let report = json(&run_dir.join("report.json"));
    let outcome = &report["outcome"];
    let reasons = outcome["reasons"].as_array().unwrap();
    let (met, unmet, unknown) = (
        outcome["counts"]["met"].as_u64().unwrap(),
        outcome["counts"]["unmet"].as_u64().unwrap(),
        outcome["counts"]["unknown"].as_u64().unwrap(),
    );
    let total = outcome["blocking_total"].as_u64().unwrap();
    assert_eq!((unmet, unknown), (2, 1));
    assert_eq!(reasons.len(), 3);
    assert_eq!(
        met + unmet + unknown,
        report["requirements"].as_array().unwrap().len() as u64,
        "each requirement is counted once"
    );
    assert_eq!(out.status, 1);
    assert_eq!(outcome["exit_code"], 1);
    // Reasons are data: each names a requirement whose own verdict and cause match it.
    for reason in reasons {
        let r = requirement(&report, reason["subject"].as_str().unwrap());
        match reason["kind"].as_str().unwrap() {
            "unmet" => assert_eq!(r["verdict"], "unmet"),
            "unknown" => {
                assert_eq!(r["verdict"], "unknown");
                assert_eq!(reason["cause"], r["cause"]);
            }
            other => panic!("unexpected reason kind {other}"),
        }
    }

    let blocking = format!("{} of {total} blocking fail", reasons.len());
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.starts_with("## ❌ signal NOT met"), "{md}");
    assert!(md.contains("(exit 1)"));
    assert!(md.contains(&format!("{met} met · {unmet} unmet · {unknown} unknown")));
    assert!(md.contains(&blocking), "{md}");

    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("Signal NOT met"));
    assert!(html.contains(&format!(">{met} met</span>")));
    assert!(html.contains(&format!(">{unmet} unmet</span>")));
    assert!(html.contains(&format!(">{unknown} unknown</span>")));
    assert!(html.contains(&blocking));

    let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(
        junit.failures as usize,
        reasons.len(),
        "failures are the gate's reasons"
    );
    let hats = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "hat")
        .count();
    assert_eq!(
        junit.tests as usize,
        report["requirements"].as_array().unwrap().len() + hats
    );
    assert!(out.stdout.contains(&blocking), "{}", out.stdout);
}

/// The gate's reasons as (subject, kind, message).
fn reasons(report: &Value) -> Vec<(String, String, String)> {
    report["outcome"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["subject"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Verdicts fail closed: a judge's `unmet` cited with a one-word quote, a misquote, or a
/// source it was never shown stays unmet and blocks; `--allow-unknown` does not cover it,
/// and every report says "unmet (evidence not exact)", never "unknown".
#[tokio::test(flavor = "multi_thread")]
async fn an_unmet_with_inexact_evidence_stays_unmet_even_with_allow_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    for (i, (source, quote)) in [
        ("notes.md", "Retries"),
        (
            "notes.md",
            "Freshness alerts page the data engineers within an hour.",
        ),
        ("elsewhere.md", INPUT_LINE),
    ]
    .into_iter()
    .enumerate()
    {
        let reviewer = FakeReviewer::new()
            .verdict("sre/anti-pattern/2", "fail")
            .quote("sre/anti-pattern/2", source, quote);
        let server = server(reviewer).await;
        let run_dir = dir.path().join(format!("run-{i}"));
        let out = run(&server, &ws, &run_dir)
            .arg("--allow-unknown")
            .status(1)
            .run();
        let report = json(&run_dir.join("report.json"));
        let c = requirement(&report, "sre/anti-pattern/2");
        assert_eq!(c["verdict"], "unmet", "{quote:?}: {c}");
        assert_eq!(c["evidence"][0]["grounded"], false);
        assert_eq!(report["outcome"]["counts"]["unmet"], 1);
        let reasons = reasons(&report);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        let (subject, kind, message) = &reasons[0];
        assert_eq!(
            (subject.as_str(), kind.as_str()),
            ("sre/anti-pattern/2", "unmet")
        );
        assert!(
            message.contains("is unmet (evidence not exact)"),
            "{message}"
        );
        assert!(
            out.stdout.contains("unmet (evidence not exact)"),
            "{}",
            out.stdout
        );
        let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
        assert!(md.contains("unmet (evidence not exact)"), "{md}");
        assert!(!md.contains("is unknown"), "{md}");
    }
}

/// With `--samples 2`, one sample unmet and one met: a 1–1 tie that includes unmet is
/// unmet, and neither `--allow-unknown` nor `--allow-unstable` lets it through.
#[tokio::test(flavor = "multi_thread")]
async fn a_tie_between_samples_that_includes_unmet_blocks_as_unmet() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    // Samples differ only in their seed (seed, seed + 1): one of them is odd.
    let server = FakeOpenAi::with_handler(|req| {
        let odd = req.body["seed"].as_i64().unwrap_or(0) % 2 != 0;
        let word = if odd { "fail" } else { "pass" };
        FakeReviewer::new()
            .verdict("reliability/check/3", word)
            .answer(req)
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .args(["--samples", "2", "--allow-unknown", "--allow-unstable"])
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let c = requirement(&report, "reliability/check/3");
    assert_eq!(c["verdict"], "unmet", "{c}");
    assert_eq!(c["agreement"]["agree"], 1);
    assert_eq!(c["agreement"]["samples"], 2);
    assert_eq!(c["cause"]["cause"], "samples-tied");
    let reasons = reasons(&report);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].1, "unmet");
    assert!(
        reasons[0].2.contains("is unmet (the samples tied)"),
        "{}",
        reasons[0].2
    );

    // Samples that could not tell never outvote one that ruled unmet: with 3 samples, the
    // odd-seeded ones fail the check and the others answer unknown.
    let server = FakeOpenAi::with_handler(|req| {
        let odd = req.body["seed"].as_i64().unwrap_or(0) % 2 != 0;
        let word = if odd { "fail" } else { "unknown" };
        FakeReviewer::new()
            .verdict("reliability/check/3", word)
            .answer(req)
    })
    .await;
    let run_dir = dir.path().join("run-3");
    run(&server, &ws, &run_dir)
        .args(["--samples", "3", "--allow-unknown", "--allow-unstable"])
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let c = requirement(&report, "reliability/check/3");
    assert_eq!(c["verdict"], "unmet", "{c}");
    let blocking = crate::reasons(&report);
    assert_eq!(blocking.len(), 1, "{blocking:?}");
    assert_eq!(
        (blocking[0].0.as_str(), blocking[0].1.as_str()),
        ("reliability/check/3", "unmet")
    );
}

/// A stage directory (v8 layout) with one hat that has no constraints, no review agent and
/// no completion signal: nothing in it can be judged.
fn empty_stage(dir: &Path) -> PathBuf {
    let stage = dir.join("stages/empty");
    std::fs::create_dir_all(stage.join("hats")).unwrap();
    std::fs::write(
        stage.join("STAGE.md"),
        "---\nname: empty\ndescription: A stage that checks nothing\nhats: [writer]\nreview: auto\n---\n\n# Empty\n\nThe writer writes.\n",
    )
    .unwrap();
    std::fs::write(
        stage.join("hats/writer.md"),
        "**Focus:** Write a note.\n\n## Process\n\n1. Write the note.\n",
    )
    .unwrap();
    stage
}

/// A stage (or a hat, or a review agent) with nothing judged cannot open the gate: before,
/// a stage with nothing to check passed with exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_stage_with_nothing_judged_does_not_open_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let stage = empty_stage(dir.path());
    let server = server(FakeReviewer::new()).await;
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir)
        .arg("--stage")
        .arg(&stage)
        .args(["--allow-unknown", "--allow-unstable"])
        .status(1)
        .run();
    assert!(out.stdout.contains("nothing was judged"), "{}", out.stdout);
    let report = json(&run_dir.join("report.json"));
    assert_eq!(report["requirements"].as_array().unwrap().len(), 0);
    let reasons = reasons(&report);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].0, "judge/writer");
    assert_eq!(reasons[0].1, "nothing-judged");
    assert!(reasons[0].2.contains("nothing was judged"));
    let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(junit.failures, 1, "{xml}");
    assert!(xml.contains("type=\"nothing-judged\""), "{xml}");
    let sarif = json(&run_dir.join("report.sarif"));
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "judge/writer");
    assert_eq!(sarif["runs"][0]["results"][0]["level"], "error");
}

/// A judge that answers `unknown` to everything rules on nothing: `--allow-unknown` lets
/// each unknown through, but not a stage in which nothing was judged.
#[tokio::test(flavor = "multi_thread")]
async fn judges_that_rule_on_nothing_keep_the_gate_closed_even_with_allow_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = FakeOpenAi::with_handler(|req| {
        let mut reviewer = FakeReviewer::new();
        for id in (1..=5).flat_map(|i| {
            [
                format!("pipeline-engineer/anti-pattern/{i}"),
                format!("sre/anti-pattern/{i}"),
                format!("signal/{i}"),
                format!("reliability/check/{i}"),
            ]
        }) {
            reviewer = reviewer.verdict(&id, "unknown");
        }
        reviewer.answer(req)
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .arg("--allow-unknown")
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let subjects: Vec<String> = reasons(&report).into_iter().map(|r| r.0).collect();
    assert_eq!(
        subjects,
        [
            "judge/pipeline-engineer",
            "judge/sre",
            "review/reliability",
            "signal"
        ]
    );
    assert!(reasons(&report).iter().all(|r| r.1 == "nothing-judged"));
}

/// Distinct requirements need distinct evidence: one heading quoted for every requirement
/// by every judge shown the file grounds one requirement at most, and the gate stays closed;
/// so does the heading of the hats' artifacts, quoted by the completion judge.
#[tokio::test(flavor = "multi_thread")]
async fn one_heading_quoted_for_every_requirement_grounds_at_most_one() {
    let dir = tempfile::tempdir().unwrap();
    let heading = "# Orders pipeline notes";
    let reviewer = FakeReviewer::new()
        .artifact_text("## Rollout and recovery checklist\n")
        .cite("constraint_answer", "notes.md", heading)
        .cite("review_answer", "notes.md", heading)
        .cite(
            "signal_answer",
            "artifacts/sre/plan.md",
            "## Rollout and recovery checklist",
        );
    let (report, status) = cited(dir.path(), "run", reviewer).await;
    assert_eq!(status, 1, "{}", report["outcome"]);
    let grounded: Vec<&str> = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["evidence"][0]["grounded"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(grounded, ["pipeline-engineer/anti-pattern/1", "signal/1"]);
    let second = requirement(&report, "pipeline-engineer/anti-pattern/2");
    assert_eq!(second["verdict"], "unknown");
    assert!(
        second["evidence"][0]["provenance"]
            .as_str()
            .unwrap()
            .contains("already ground pipeline-engineer/anti-pattern/1"),
        "{second}"
    );
    let check = requirement(&report, "reliability/check/1");
    assert_eq!(check["verdict"], "unknown");
    assert_eq!(requirement(&report, "signal/2")["verdict"], "unknown");
}

/// A `met` on a requirement about the repository needs a quote from the repository: a
/// completion judge (and a review agent) quoting only a hat's own sentence has its `met`s
/// kept, counted and shown as "grounded only in a hat's own output", and they block.
/// Requirements about what the hats produced (hat constraints; `signal/4` names a runbook,
/// `signal/5` the SRE) may rest on an artifact.
#[tokio::test(flavor = "multi_thread")]
async fn mets_grounded_only_in_hat_artifacts_are_counted_as_such_and_block() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = FakeReviewer::new()
        .cite("signal_answer", "artifacts/sre/plan.md", ARTIFACT_LINE)
        .cite(
            "review_answer",
            "artifacts/pipeline-engineer/plan.md",
            ARTIFACT_LINE,
        );
    let (report, status) = cited(dir.path(), "run", reviewer).await;
    assert_eq!(status, 1);
    let artifact_only = [
        "reliability/check/1",
        "reliability/check/2",
        "reliability/check/3",
        "reliability/check/4",
        "signal/1",
        "signal/2",
        "signal/3",
    ];
    for r in report["requirements"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["verdict"], "met", "{id}");
        assert_eq!(r["evidence"][0]["grounded"], true, "{id}");
        if artifact_only.contains(&id) {
            assert_eq!(r["about"], "repository", "{id}");
            assert_eq!(r["cause"]["cause"], "artifact-only", "{id}");
            assert!(r["note"]
                .as_str()
                .unwrap()
                .contains("grounded only in a hat's own output"));
        } else {
            assert_eq!(r["about"], "hat-output", "{id}");
            assert!(r["cause"].is_null(), "{id}: {r}");
        }
    }
    let counts = &report["outcome"]["counts"];
    assert_eq!(counts["met"], 19);
    assert_eq!(counts["artifact_only"], 7);
    let reasons = reasons(&report);
    let subjects: Vec<&str> = reasons.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(subjects, artifact_only);
    for (subject, kind, message) in &reasons {
        assert_eq!(kind, "artifact-only");
        assert!(
            message.contains("is met but grounded only in a hat's own output"),
            "{subject}: {message}"
        );
    }
    let run_dir = dir.path().join("run");
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("19 met (7 grounded only in a hat's own output)"),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.contains("`signal/1`"))
        .expect("signal/1 is listed");
    assert!(row.contains("grounded only in a hat's own output"), "{row}");
    let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(junit.failures, 7);
    assert!(xml.contains("type=\"artifact-only\""));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("7 met grounded only in a hat&#x27;s own output"));
}
