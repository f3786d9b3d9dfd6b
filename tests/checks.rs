//! Facts beside the judges, through the binary: SARIF and JUnit files CI produced, mapped to
//! requirements with `[[check]]`, and built-in probes. The judge is the fake OpenAI server
//! scripted by `FakeReviewer` (a stand-in for a model, not a model); the SARIF and JUnit
//! files below are fixtures shaped like ruff's and a DagBag test's output (stand-ins for
//! the tools, written by the tests).

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Test};

/// The one line of the workspace's notes that judges quote.
const INPUT_LINE: &str =
    "Freshness alerts page the data on-call within 15 minutes of a missed SLA.";
/// ruff's message for AIR301 on `schedule_interval`.
const AIR301: &str = "`schedule_interval` is removed in Airflow 3.0; use `schedule` instead";
/// The requirement the tests map checks to (a review check about the repository).
const MAPPED: &str = "reliability/check/1";

/// A workspace whose every Reads item is bound to `notes.md`, with a DAG at
/// `dags/etl.py` whose line 21 sets `schedule_interval`.
fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("dags")).unwrap();
    std::fs::write(
        ws.join("notes.md"),
        format!("# Orders pipeline notes\n\n{INPUT_LINE}\nRetries: 3.\n"),
    )
    .unwrap();
    // It passes the deployment stage's own probes (retries, timeouts, limits).
    let mut dag = String::from(
        "\"\"\"The orders ETL DAG.\"\"\"\ndefault_args = {\"retries\": 2, \"execution_timeout\": 600}\nmax_active_runs = 1\n",
    );
    for i in 4..21 {
        dag.push_str(&format!("# line {i}\n"));
    }
    dag.push_str("dag = DAG(\"etl\", schedule_interval=\"@daily\")\n");
    std::fs::write(ws.join("dags/etl.py"), dag).unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    // The deployment stage without its own checks.toml, so only the mappings a test gives
    // apply (the shipped ones are tested on the examples).
    let stage = dir.join("deployment");
    support::copy_dir(&repo_root().join("hats/deployment"), &stage);
    std::fs::remove_file(stage.join("checks.toml")).unwrap();
    ws
}

/// SARIF as ruff writes it: absolute `file://` URIs, no `partialFingerprints` (a fixture
/// standing in for ruff's output).
fn ruff_sarif(ws: &Path) -> String {
    let abs = ws.canonicalize().unwrap();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ruff", "version": "0.17.6", "rules": [
                {"id": "AIR301", "name": "airflow3-removal", "shortDescription": {"text": "Removed in Airflow 3.0"}}
            ]}},
            "results": [{
                "level": "error",
                "ruleId": "AIR301",
                "message": {"text": AIR301},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": format!("file://{}/dags/etl.py", abs.display())},
                    "region": {"startLine": 21, "startColumn": 20, "endLine": 21, "endColumn": 37}
                }}]
            }]
        }]
    })
    .to_string()
}

/// A policy file (outside the workspace) mapping ruff's AIR301 to [`MAPPED`].
fn policy(dir: &Path, tool: &str, on_finding: &str) -> PathBuf {
    let file = dir.join("policy.toml");
    std::fs::write(
        &file,
        format!(
            "[[check]]\nrequirement = \"{MAPPED}\"\ntool = \"{tool}\"\non_finding = \"{on_finding}\"\n"
        ),
    )
    .unwrap();
    file
}

async fn server(reviewer: FakeReviewer) -> FakeOpenAi {
    FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await
}

/// Judges that quote the notes, so every requirement is met with grounded evidence.
fn all_met() -> FakeReviewer {
    FakeReviewer::new()
        .cite("constraint_answer", "notes.md", INPUT_LINE)
        .cite("review_answer", "notes.md", INPUT_LINE)
}

/// A run of `ws` against the stage [`workspace`] put beside it.
fn run(server: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .arg("--stage")
        .arg(ws.parent().unwrap().join("deployment"))
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn schema_name(req: &support::fake_openai::SeenRequest) -> String {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no requirement {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vetoing_finding_makes_a_met_requirement_unmet_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let sarif = dir.path().join("ruff.sarif");
    std::fs::write(&sarif, ruff_sarif(&ws)).unwrap();
    let policy = policy(dir.path(), "ruff", "veto");
    let server = server(all_met()).await;

    // Without the evidence the judges open the gate.
    run(&server, &ws, &dir.path().join("clean"))
        .arg("--policy")
        .arg(&policy)
        .status(0)
        .run();
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&sarif)
        .status(1)
        .run();

    // The fake judge answers met for every requirement it is asked about; it is not asked
    // about the vetoed one: the check decided it with no model request.
    let review = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| schema_name(r) == "review_answer")
        .unwrap();
    let ids = review.body["response_format"]["json_schema"]["schema"]["properties"]["checks"]
        ["items"]["properties"]["id"]["enum"]
        .to_string();
    assert!(!ids.contains(MAPPED), "{ids}");
    assert!(ids.contains("reliability/check/2"), "{ids}");
    assert!(!review.messages_text().contains(&format!("[{MAPPED}]")));
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, MAPPED);
    assert_eq!(r["verdict"], "unmet");
    assert_eq!(r["claimed"], "unknown", "no judge was asked");
    assert!(r["cause"].get("claimed").is_none(), "{r}");
    assert!(
        r["note"].as_str().unwrap().contains("no judge was asked"),
        "{r}"
    );
    assert_eq!(r["cause"]["cause"], "check");
    assert_eq!(
        r["cause"]["findings"],
        serde_json::json!(["ruff AIR301 dags/etl.py:21"])
    );
    assert_eq!(
        r["evidence"][0]["found_in"],
        serde_json::json!({"kind": "check", "tool": "ruff", "path": "dags/etl.py", "line": 21})
    );
    let reasons = report["outcome"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["subject"], MAPPED);
    let finding = &report["checks"]["findings"][0];
    assert_eq!(finding["path"], "dags/etl.py");
    assert_eq!(finding["line"], 21);
    assert_eq!(finding["rule_name"], "airflow3-removal");
    assert_eq!(finding["fingerprint"].as_str().unwrap().len(), 64);

    let md = read(&run_dir.join("report.md"));
    assert!(md.contains("dags/etl.py:21"), "{md}");
    assert!(md.contains("vetoed by a check"), "{md}");
    let junit = read(&run_dir.join("junit.xml"));
    let case = junit
        .split("<testcase ")
        .find(|c| c.contains(MAPPED))
        .unwrap();
    assert!(case.contains("<failure"), "{case}");
    assert!(case.contains("dags/etl.py:21"), "{case}");
    let sarif_out = json(&run_dir.join("report.sarif"));
    let hatrack = &sarif_out["runs"][0];
    let result = hatrack["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == MAPPED)
        .unwrap();
    let at = &result["locations"][0]["physicalLocation"];
    assert_eq!(at["artifactLocation"]["uri"], "dags/etl.py");
    assert_eq!(at["region"]["startLine"], 21);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finding_mapped_as_evidence_is_shown_quoted_and_grounds_but_never_passes_a_met() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let sarif = dir.path().join("ruff.sarif");
    std::fs::write(&sarif, ruff_sarif(&ws)).unwrap();
    let policy = policy(dir.path(), "ruff", "evidence");
    let name = "ruff AIR301 dags/etl.py:21";

    // The judge rules unmet quoting the finding: its quote grounds.
    let quoting = server(
        all_met()
            .verdict(MAPPED, "fail")
            .quote(MAPPED, name, AIR301),
    )
    .await;
    let run_dir = dir.path().join("quoted");
    run(&quoting, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&sarif)
        .status(1)
        .run();
    let review = quoting
        .requests()
        .into_iter()
        .find(|r| r.messages_text().contains("review agent"))
        .unwrap();
    let prompt = review.messages_text();
    assert!(
        prompt.contains(&format!("<<<BEGIN {name}>>>\nerror · ruff AIR301 (airflow3-removal) · dags/etl.py:21\n{AIR301}\nmapped to: {MAPPED} (evidence)\n<<<END {name}>>>")),
        "{prompt}"
    );
    let at = |s: &str| prompt.find(s).unwrap();
    assert!(at("<<<END notes.md>>>") < at(&format!("<<<BEGIN {name}>>>")));
    assert!(at(&format!("<<<END {name}>>>")) < at("## Your answer"));
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, MAPPED);
    assert_eq!(r["verdict"], "unmet");
    assert!(r["cause"].is_null(), "the judge's own grounded unmet: {r}");
    assert_eq!(r["evidence"][0]["grounded"], true, "{r}");
    assert_eq!(r["evidence"][0]["found_in"]["kind"], "check");
    assert_eq!(
        r["evidence"][0]["provenance"],
        "a finding of ruff (a check)"
    );

    // The judge says met while the error-level finding is open: refused.
    let server = server(all_met()).await;
    let run_dir = dir.path().join("met");
    run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&sarif)
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, MAPPED);
    assert_eq!(
        (&r["verdict"], &r["claimed"]),
        (&"unknown".into(), &"met".into())
    );
    assert_eq!(r["cause"]["cause"], "open-finding");
    assert_eq!(r["cause"]["findings"], serde_json::json!([name]));
    assert!(r["note"]
        .as_str()
        .unwrap()
        .contains("a met is refused while it is open"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_evidence_replays_without_the_file_and_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let sarif = dir.path().join("ruff.sarif");
    std::fs::write(&sarif, ruff_sarif(&ws)).unwrap();
    let policy = policy(dir.path(), "ruff", "veto");
    let server = server(all_met()).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&sarif)
        .status(1)
        .run();
    std::fs::remove_file(&sarif).unwrap();
    std::fs::remove_file(&policy).unwrap();
    let out = dir.path().join("replayed");
    Test::new()
        .args(["replay"])
        .arg(&run_dir)
        .arg("--out")
        .arg(&out)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .status(1)
        .run();
    for f in ["report.json", "report.md", "junit.xml", "report.sarif"] {
        assert_eq!(
            read(&run_dir.join(f)),
            read(&out.join(f)),
            "{f} differs on replay"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tools_findings_are_reemitted_as_their_own_sarif_run_and_annotated_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let sarif = dir.path().join("ruff.sarif");
    std::fs::write(&sarif, ruff_sarif(&ws)).unwrap();
    let policy = policy(dir.path(), "ruff", "veto");
    let server = server(all_met()).await;
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&sarif)
        .arg("--github")
        .env("GITHUB_WORKSPACE", dir.path())
        .status(1)
        .run();
    // The vetoed requirement is the first error annotation, at the finding's line.
    let first = out
        .stdout
        .lines()
        .find(|l| l.starts_with("::error"))
        .unwrap();
    assert!(
        first.starts_with(&format!(
            "::error file=ws/dags/etl.py,line=21,title=hatrack%3A {MAPPED}::"
        )),
        "{first}"
    );

    let sarif_out = json(&run_dir.join("report.sarif"));
    let runs = sarif_out["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "hatrack's run and ruff's");
    assert_eq!(runs[0]["tool"]["driver"]["name"], "hatrack");
    assert!(
        runs[0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ruleId"] != "AIR301"),
        "the tool's findings are not merged into hatrack's run"
    );
    let ruff = &runs[1];
    assert_eq!(ruff["tool"]["driver"]["name"], "ruff");
    assert_eq!(
        ruff["automationDetails"]["id"],
        "hatrack-checks/deployment/ruff/"
    );
    let result = &ruff["results"][0];
    assert_eq!(result["ruleId"], "AIR301");
    assert_eq!(result["level"], "error");
    let at = &result["locations"][0]["physicalLocation"];
    assert_eq!(at["artifactLocation"]["uri"], "dags/etl.py");
    assert_eq!(at["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(at["region"]["startLine"], 21);
    assert_eq!(
        result["partialFingerprints"]["hatrackCheck/v1"]
            .as_str()
            .unwrap()
            .len(),
        64,
        "ruff gave no fingerprint: hatrack's"
    );
    assert_eq!(
        result["properties"]["mappedTo"],
        serde_json::json!([format!("{MAPPED} (veto)")])
    );

    let md = read(&run_dir.join("report.md"));
    assert!(md.contains("### Checks"), "{md}");
    assert!(
        md.contains("| `ruff AIR301 dags/etl.py:21` | error |"),
        "{md}"
    );
    let html = read(&run_dir.join("report.html"));
    assert!(html.contains("<h2>Checks</h2>"));
    // minijinja escapes `/` in HTML.
    assert!(
        html.contains("<code>ruff AIR301 dags&#x2f;etl.py:21</code>"),
        "{html}"
    );
}

/// A JUnit report as a DagBag import test writes it under pytest (a fixture standing in for
/// the test run's output).
const DAGBAG_JUNIT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="dag-integrity" errors="0" failures="1" skipped="0" tests="2" time="1.2">
    <testcase classname="tests.test_dag_integrity" name="test_dagbag_imports_without_errors" file="tests/test_dag_integrity.py" line="14" time="1.1">
      <failure message="AssertionError: DAG import errors: dags/etl.py: TypeError: DAG.__init__() got an unexpected keyword argument 'schedule_interval'">def test_dagbag_imports_without_errors():
&gt;       assert not dagbag.import_errors
E       AssertionError: DAG import errors</failure>
    </testcase>
    <testcase classname="tests.test_dag_integrity" name="test_every_dag_has_retries" file="tests/test_dag_integrity.py" line="21" time="0.1"/>
  </testsuite>
</testsuites>
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_junit_case_vetoes_its_requirement_like_a_sarif_finding() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let junit = dir.path().join("pytest.xml");
    std::fs::write(&junit, DAGBAG_JUNIT).unwrap();
    let policy = policy(dir.path(), "junit:dag-integrity", "veto");
    let server = server(all_met()).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .arg("--evidence")
        .arg(&junit)
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, MAPPED);
    let name =
        "junit:dag-integrity test_dagbag_imports_without_errors tests/test_dag_integrity.py:14";
    assert_eq!(r["verdict"], "unmet");
    assert_eq!(r["cause"]["cause"], "check");
    assert_eq!(r["cause"]["findings"], serde_json::json!([name]));
    assert_eq!(
        r["evidence"][0]["found_in"],
        serde_json::json!({"kind": "check", "tool": "junit:dag-integrity", "path": "tests/test_dag_integrity.py", "line": 14})
    );
    assert!(r["evidence"][0]["quote"]
        .as_str()
        .unwrap()
        .contains("unexpected keyword argument 'schedule_interval'"));
    // The passing case is a passing record: evidence for, not a veto.
    let findings = report["checks"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[1]["level"], "pass");
    assert_eq!(report["outcome"]["reasons"].as_array().unwrap().len(), 1);
    let md = read(&run_dir.join("report.md"));
    assert!(md.contains("tests/test\\_dag\\_integrity.py:14"), "{md}");
    let junit_out = read(&run_dir.join("junit.xml"));
    let case = junit_out
        .split("<testcase ")
        .find(|c| c.contains(MAPPED))
        .unwrap();
    assert!(case.contains("<failure"), "{case}");
    assert!(case.contains("tests/test_dag_integrity.py:14"), "{case}");
    let sarif_out = json(&run_dir.join("report.sarif"));
    let result = sarif_out["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == MAPPED)
        .unwrap();
    let at = &result["locations"][0]["physicalLocation"];
    assert_eq!(at["artifactLocation"]["uri"], "tests/test_dag_integrity.py");
    assert_eq!(at["region"]["startLine"], 14);
    assert_eq!(
        sarif_out["runs"][1]["tool"]["driver"]["name"],
        "junit:dag-integrity"
    );
}

/// What a temporary directory holds, recursively (relative paths), for "nothing was written
/// outside the run directory".
fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_evidence_stops_the_run_before_any_request_or_is_a_bounded_warning() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = server(all_met()).await;
    let huge = dir.path().join("huge.sarif");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "huge.sarif",
            String::new(),
            "an evidence file is at most 32 MiB",
        ),
        (
            "bad.sarif",
            "{\"version\": \"2.1.0\", \"runs\": [".into(),
            "invalid SARIF: line 1",
        ),
        (
            "typed.sarif",
            "{\"version\": \"2.1.0\", \"runs\": [{\"tool\": 3}]}".into(),
            "runs[0].tool",
        ),
        (
            "bad.xml",
            "<testsuites><testsuite name=\"s\"><testcase name=\"c\"></testsuites>".into(),
            "invalid JUnit XML",
        ),
        (
            "neither.txt",
            "just text".into(),
            "not SARIF 2.1.0 or JUnit XML",
        ),
        ("missing.sarif", String::new(), "missing.sarif"),
    ];
    for (file, text, wanted) in &cases {
        let path = dir.path().join(file);
        if !text.is_empty() {
            std::fs::write(&path, text).unwrap();
        }
        let before = tree(dir.path());
        let out = run(&server, &ws, &dir.path().join(format!("run-{file}")))
            .arg("--evidence")
            .arg(&path)
            .status(2)
            .run();
        assert!(out.stderr.contains(wanted), "{file}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert_eq!(tree(dir.path()), before, "{file}: something was written");
    }
    assert_eq!(server.count(), 0, "no request before the evidence is read");

    // A result about a file outside the workspace is left out with a warning; the run goes on.
    let outside = dir.path().join("outside.sarif");
    let sarif = ruff_sarif(&ws).replace(
        &format!("{}/dags/etl.py", ws.canonicalize().unwrap().display()),
        "/etc/passwd",
    );
    std::fs::write(&outside, sarif).unwrap();
    let run_dir = dir.path().join("run-outside");
    run(&server, &ws, &run_dir)
        .arg("--evidence")
        .arg(&outside)
        .status(0)
        .run();
    let report = json(&run_dir.join("report.json"));
    assert_eq!(report["checks"]["findings"], serde_json::json!([]));
    let warning = report["checks"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("1 ruff result(s) about files outside the workspace left out")
            && warning.contains("/etc/passwd lies outside the workspace"),
        "{warning}"
    );
    assert!(read(&run_dir.join("report.md")).contains("outside the workspace"));

    // Evidence files go through the one bounded reader: a FIFO is refused at once (never
    // waited on), and a link at a flag's name may not lead out of its own directory (a link
    // committed in a reviewed repository cannot point --evidence at a file of the runner).
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo.sarif");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(dir.path().join("secret.sarif"), ruff_sarif(&ws)).unwrap();
        let link = repo.join("linked.sarif");
        std::os::unix::fs::symlink(dir.path().join("secret.sarif"), &link).unwrap();
        let asked = server.count();
        for (path, wanted) in [(fifo, "a FIFO"), (link, "outside")] {
            let started = std::time::Instant::now();
            let out = run(&server, &ws, &dir.path().join("run-refused"))
                .arg("--evidence")
                .arg(&path)
                .status(2)
                .run();
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            assert!(out.stderr.contains(wanted), "{}", out.stderr);
        }
        assert_eq!(
            server.count(),
            asked,
            "no request before the evidence is read"
        );
    }
}

/// A run of a shipped example against the shipped stage (with its checks.toml).
fn example_run(server: &FakeOpenAi, example: &str, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(repo_root().join("examples").join(example))
        .arg("--stage")
        .arg(repo_root().join("hats/deployment"))
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

/// Every requirement id an answer schema of `server`'s requests enumerated.
fn asked_about(server: &FakeOpenAi) -> String {
    server
        .requests()
        .iter()
        .map(|r| r.body["response_format"]["json_schema"]["schema"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gaps_example_fails_on_probes_alone_with_no_model_request_for_what_they_decide() {
    let dir = tempfile::tempdir().unwrap();
    // A judge that says met to everything it is asked.
    let server = server(FakeReviewer::new()).await;
    let run_dir = dir.path().join("gaps");
    example_run(&server, "orders-pipeline-gaps", &run_dir)
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let decided = [
        "pipeline-engineer/anti-pattern/1",
        "pipeline-engineer/anti-pattern/3",
        "sre/anti-pattern/1",
        "reliability/check/1",
    ];
    let asked = asked_about(&server);
    for id in decided {
        let r = requirement(&report, id);
        assert_eq!(r["verdict"], "unmet", "{id}: {r}");
        assert_eq!(r["cause"]["cause"], "check", "{id}");
        assert!(
            !asked.contains(&format!("\"{id}\"")),
            "a judge was asked about {id}"
        );
    }
    assert!(asked.contains("\"pipeline-engineer/anti-pattern/2\""));
    // The offending file and its first line are the evidence.
    let r = requirement(&report, "pipeline-engineer/anti-pattern/1");
    assert_eq!(
        r["cause"]["findings"],
        serde_json::json!([
            "probe dag-retries dags/orders_daily.py:1",
            "probe dag-timeouts dags/orders_daily.py:1"
        ])
    );
    assert_eq!(
        r["evidence"][0]["found_in"],
        serde_json::json!({"kind": "check", "tool": "probe", "path": "dags/orders_daily.py", "line": 1})
    );
    let first_line = read(&repo_root().join("examples/orders-pipeline-gaps/dags/orders_daily.py"))
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    let finding = report["checks"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "probe dag-retries dags/orders_daily.py:1")
        .unwrap();
    assert_eq!(finding["excerpt"], first_line.as_str());
    assert_eq!(finding["level"], "error");
    // The empty alert channel, at its line.
    let r = requirement(&report, "sre/anti-pattern/1");
    let names = r["cause"]["findings"].to_string();
    assert!(
        names.contains("probe empty-alert-route dags/orders_daily.py:15"),
        "{names}"
    );
    assert!(
        names.contains("probe empty-alert-route ops/monitoring.yml:3"),
        "{names}"
    );
    let md = read(&run_dir.join("report.md"));
    assert!(md.contains("decided before any request"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_complete_example_the_probes_are_evidence_a_judge_may_quote_for_met() {
    let dir = tempfile::tempdir().unwrap();
    let id = "pipeline-engineer/anti-pattern/1";
    let name = "probe dag-retries dags/orders_daily.py:77";
    let server =
        server(FakeReviewer::new().quote(id, name, "line 77 of dags/orders_daily.py matches"))
            .await;
    let run_dir = dir.path().join("complete");
    example_run(&server, "orders-pipeline", &run_dir)
        .any_status()
        .run();
    let judge = server
        .requests()
        .into_iter()
        .find(|r| {
            r.messages_text()
                .contains("constraint judge for the Pipeline Engineer")
        })
        .unwrap();
    let prompt = judge.messages_text();
    assert!(
        prompt.contains(&format!(
            "<<<BEGIN {name}>>>\npass · probe dag-retries · dags/orders_daily.py:77\n"
        )),
        "{prompt}"
    );
    assert!(
        prompt.contains("\"retries\": 3,"),
        "the matched line is shown"
    );
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, id);
    assert_eq!(r["verdict"], "met", "{r}");
    assert!(r["cause"].is_null(), "{r}");
    assert_eq!(r["evidence"][0]["grounded"], true);
    assert_eq!(r["evidence"][0]["found_in"]["kind"], "check");
    let errors = report["checks"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .count();
    assert_eq!(errors, 0, "the complete example passes every probe");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_declarations_stop_the_run_before_any_request_and_a_nested_pattern_stays_linear() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = server(all_met()).await;
    let bound = support::inputs_bound_to("notes.md");
    let probe = |requirement: &str, pattern: &str| {
        format!(
            "{bound}[[check]]\nrequirement = \"{requirement}\"\nname = \"p\"\nprobe = {{ files = \"dags/*.py\", must_match = '''{pattern}''' }}\non_finding = \"veto\"\n"
        )
    };
    for (config, wanted) in [
        (
            probe(MAPPED, "(a{1000}){1000}"),
            "[[check]] 1: probe must_match",
        ),
        (probe(MAPPED, "x*"), "matches the empty string"),
        (probe(MAPPED, "(unclosed"), "[[check]] 1: probe must_match"),
        (
            probe("reliability/check/99", "retries"),
            "is not one of the stage's",
        ),
        (
            format!("{bound}[[check]]\nrequirement = \"{MAPPED}\"\ntool = \"ruff\"\nrulez = []\n"),
            "unknown field `rulez`",
        ),
        // A deny pattern that is not a glob is an error, never a pattern quietly dropped
        // from what the probes may not read.
        (
            format!(
                "{}[tools]\ndeny = [\"vault/[\"]\n",
                probe(MAPPED, "retries")
            ),
            "[tools] deny",
        ),
    ] {
        std::fs::write(ws.join("hatrack.toml"), &config).unwrap();
        let out = run(&server, &ws, &dir.path().join("refused"))
            .status(2)
            .run();
        assert!(out.stderr.contains(wanted), "{wanted}: {}", out.stderr);
        assert!(!dir.path().join("refused").exists(), "nothing written");
    }
    assert_eq!(server.count(), 0);

    // Nested repetition on a long line: Rust regexes do not backtrack, so the probe takes
    // linear time (a backtracking engine would take longer than the age of the universe).
    std::fs::write(ws.join("dags/long.py"), "x".repeat(200_000)).unwrap();
    std::fs::write(ws.join("hatrack.toml"), probe(MAPPED, "(x+x+)+y")).unwrap();
    let started = std::time::Instant::now();
    let run_dir = dir.path().join("linear");
    run(&server, &ws, &run_dir).status(1).run();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, MAPPED);
    assert_eq!(r["cause"]["cause"], "check", "no line matches: vetoed");
    // The workspace's own mapping is recorded where it came from.
    assert_eq!(
        report["checks"]["mappings"][0]["from"],
        "hatrack.toml or policy"
    );
}

#[test]
fn hatrack_check_checks_a_stages_checks_toml_as_a_run_would() {
    Test::new()
        .args(["check", "hats/deployment"])
        .stdout_has("checks: 9 mappings in 1 checks.toml")
        .run();
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("deployment");
    support::copy_dir(&repo_root().join("hats/deployment"), &stage);
    std::fs::write(
        stage.join("checks.toml"),
        "[[check]]\nrequirement = \"sre/anti-pattern/9\"\ntool = \"ruff\"\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&stage)
        .status(2)
        .stderr_has("checks.toml: [[check]] 1: requirement \"sre/anti-pattern/9\" is not one of the stage's")
        .stdout_has("1 file with an error")
        .run();
}

/// A stand-in for ruff (a test fixture, not ruff): a shell script named `ruff` in its own
/// directory that records its arguments and environment in `record/` and answers with one
/// AIR301 finding — or, with `hang`, starts a child and waits for ever.
fn fake_ruff(dir: &Path, ws: &Path, hang: bool) -> PathBuf {
    let bin = dir.join("fake-bin");
    let record = dir.join("record");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&record).unwrap();
    let sarif = ruff_sarif(ws).replace('\'', "");
    let body = if hang {
        format!(
            "/bin/sleep 300 &\necho $! > '{}/child.pid'\nwait\n",
            record.display()
        )
    } else {
        format!("printf '%s\\n' '{sarif}'\n")
    };
    let script = format!(
        "#!/bin/sh\n/usr/bin/env > '{r}/env.txt'\necho \"$@\" > '{r}/args.txt'\n{body}",
        r = record.display()
    );
    let path = bin.join("ruff");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn with_path(bin: &Path) -> String {
    format!("{}:/usr/bin:/bin", bin.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_hatrack_runs_gets_its_arguments_and_no_environment_and_replays_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let bin = fake_ruff(dir.path(), &ws, false);
    let policy = policy(dir.path(), "ruff", "veto");
    let server = server(all_met()).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir)
        .arg("--policy")
        .arg(&policy)
        .args(["--run-checks", "ruff"])
        .env("PATH", with_path(&bin))
        .env(
            "OPENAI_API_KEY",
            "sk-test-key-that-no-tool-may-see-0123456789",
        )
        .status(1)
        .run();
    let record = dir.path().join("record");
    assert_eq!(
        read(&record.join("args.txt")).trim(),
        "check --isolated --no-cache --exit-zero --output-format sarif --select=AIR ."
    );
    let env = read(&record.join("env.txt"));
    assert!(!env.contains("OPENAI"), "the tool saw: {env}");
    assert!(!env.contains("sk-test-key"), "the tool saw: {env}");
    let report = json(&run_dir.join("report.json"));
    assert_eq!(requirement(&report, MAPPED)["cause"]["cause"], "check");
    let ran = &report["checks"]["runs"][0];
    assert_eq!(ran["tool"], "ruff");
    assert_eq!(ran["exit_code"], 0);
    assert!(ran["isolation"]
        .as_str()
        .unwrap()
        .contains("an empty environment"));

    // The replay reads the findings from checks.json: no tool on PATH, no model.
    std::fs::remove_dir_all(&bin).unwrap();
    let out = dir.path().join("replayed");
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--out")
        .arg(&out)
        .env("PATH", "/usr/bin:/bin")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .status(1)
        .run();
    for f in ["report.json", "report.md", "junit.xml", "report.sarif"] {
        assert_eq!(read(&run_dir.join(f)), read(&out.join(f)), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_that_hangs_is_killed_with_its_children_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let bin = fake_ruff(dir.path(), &ws, true);
    let server = server(all_met()).await;
    let started = std::time::Instant::now();
    let out = run(&server, &ws, &dir.path().join("run"))
        .args(["--run-checks", "ruff", "--check-timeout", "1"])
        .env("PATH", with_path(&bin))
        .status(2)
        .run();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        out.stderr.contains(
            "--run-checks ruff: did not finish within 1 s and was killed with its process group"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(server.count(), 0, "no request");
    let pid = read(&dir.path().join("record/child.pid"))
        .trim()
        .to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
    assert!(
        stat.is_empty() || state == Some('Z'),
        "the tool's child still runs: {stat}"
    );
    // A tool that is not allowlisted is refused before anything runs.
    run(&server, &ws, &dir.path().join("refused"))
        .args(["--run-checks", "bash"])
        .status(2)
        .stderr_has("hatrack runs only ruff itself")
        .run();
}

/// The directory holding a real ruff: `.venv/local-model/bin` (where `.ci/run` installs it
/// from PyPI), else one on PATH; `None` (skipped, failing under CI=true) without one.
fn real_ruff() -> Option<PathBuf> {
    let venv = repo_root().join(".venv/local-model/bin");
    if venv.join("ruff").is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| d.join("ruff").is_file()) {
        return Some(dir);
    }
    let message = "ruff is not installed (.ci/run installs it into .venv/local-model)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {message}");
    }
    eprintln!("skipped: {message}");
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ruff_vetoes_a_removed_airflow_argument_and_the_run_replays_without_ruff() {
    let Some(ruff) = real_ruff() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("orders-pipeline");
    support::copy_dir(&repo_root().join("examples/orders-pipeline"), &ws);
    let dag = ws.join("dags/orders_daily.py");
    let text = read(&dag);
    assert!(text.contains("    schedule=\""));
    std::fs::write(
        &dag,
        text.replacen("    schedule=\"", "    schedule_interval=\"", 1),
    )
    .unwrap();
    let line = read(&dag)
        .lines()
        .position(|l| l.contains("schedule_interval="))
        .unwrap()
        + 1;
    let server = server(FakeReviewer::new()).await;
    let run_dir = dir.path().join("run");
    Test::new()
        .arg("run")
        .arg(&ws)
        .arg("--stage")
        .arg(repo_root().join("hats/deployment"))
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args([
            "--timeout",
            "5",
            "--max-retries",
            "0",
            "--run-checks",
            "ruff",
            "--transcript",
        ])
        .arg(&run_dir)
        .env("PATH", with_path(&ruff))
        .status(1)
        .run();
    let report = json(&run_dir.join("report.json"));
    let r = requirement(&report, "signal/1");
    assert_eq!(r["verdict"], "unmet");
    assert_eq!(
        r["cause"]["findings"],
        serde_json::json!([format!("ruff AIR301 dags/orders_daily.py:{line}")])
    );
    assert!(
        !asked_about(&server).contains("\"signal/1\""),
        "no judge asked"
    );
    let out = dir.path().join("replayed");
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--out")
        .arg(&out)
        .env("PATH", "/usr/bin:/bin")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .status(1)
        .run();
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "junit.xml",
        "report.sarif",
    ] {
        assert_eq!(read(&run_dir.join(f)), read(&out.join(f)), "{f}");
    }
}
