//! CI output: `report.sarif` (SARIF 2.1.0, one rule per requirement, fingerprints stable
//! across replays) and, with `--github` or `GITHUB_ACTIONS=true`, at most 10 `::error` and
//! 10 `::warning` annotations on stdout plus the report in `$GITHUB_STEP_SUMMARY`.

mod support;

use std::path::Path;

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::Test;

const WORKSPACE: &str = "examples/orders-pipeline";
/// The repository file the review agent quotes, and the quote (the start of a line).
const QUOTED_FILE: &str = "models/marts/fct_orders.sql";
const QUOTE: &str = "so late cancellations and refunds update existing rows";

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn all_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for hat in ["pipeline-engineer", "sre"] {
        for i in 1..=5 {
            ids.push(format!("{hat}/anti-pattern/{i}"));
        }
    }
    for i in 1..=4 {
        ids.push(format!("reliability/check/{i}"));
    }
    for i in 1..=5 {
        ids.push(format!("signal/{i}"));
    }
    ids
}

/// Every hat constraint and review check fails (14 gate reasons); every completion-signal
/// sentence cites an invented quote (5 unknowns, advisory with --allow-unknown — but then the
/// completion judge ruled on nothing, a 15th reason). The review agent quotes a SQL model.
async fn failing_run(run_dir: &Path, extra: &[&str], envs: &[(&str, &Path)]) -> String {
    failing_run_saying(run_dir, extra, envs, "").await.stdout
}

/// [`failing_run`], with `said` appended to every judge's finding; the whole output.
async fn failing_run_saying(
    run_dir: &Path,
    extra: &[&str],
    envs: &[(&str, &Path)],
    said: &'static str,
) -> support::Output {
    let mut reviewer = FakeReviewer::new().cite("review_answer", QUOTED_FILE, QUOTE);
    for id in all_ids() {
        reviewer = if id.starts_with("signal/") {
            reviewer.fabricate(&id)
        } else {
            reviewer.verdict(&id, "fail")
        };
    }
    let server = FakeOpenAi::with_handler(move |req| {
        let reply = reviewer.answer(req);
        if said.is_empty() {
            return reply;
        }
        let support::fake_openai::Reply::Http {
            status,
            headers,
            body,
        } = reply
        else {
            return reply;
        };
        let mut body: Value = serde_json::from_str(&body).unwrap();
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        // Every "finding" string of the answer, wherever it is.
        let mut answer: Value = serde_json::from_str(content).unwrap();
        fn add(v: &mut Value, said: &str) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map.iter_mut() {
                        match v {
                            Value::String(s) if k == "finding" => s.push_str(said),
                            other => add(other, said),
                        }
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|v| add(v, said)),
                _ => {}
            }
        }
        add(&mut answer, said);
        body["choices"][0]["message"]["content"] = Value::String(answer.to_string());
        support::fake_openai::Reply::Http {
            status,
            headers,
            body: body.to_string(),
        }
    })
    .await;
    let mut t = Test::new()
        .args([
            "run",
            WORKSPACE,
            "--model",
            "fake-model",
            "--quiet",
            "--allow-unknown",
            "--base-url",
        ])
        .arg(server.url())
        .arg("--transcript")
        .arg(run_dir)
        .args(extra)
        .status(1);
    for (k, v) in envs {
        t = t.env(k, v);
    }
    let out = t.run();
    server.stop();
    out
}

fn quoted_line() -> usize {
    let text =
        std::fs::read_to_string(support::repo_root().join(WORKSPACE).join(QUOTED_FILE)).unwrap();
    text.lines().position(|l| l.contains(QUOTE)).unwrap() + 1
}

fn fingerprints(sarif: &Value) -> Vec<(String, String)> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ruleId"].as_str().unwrap().to_string(),
                r["partialFingerprints"]["hatrackFinding/v1"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn report_sarif_has_one_rule_per_requirement_and_fingerprints_stable_across_replays() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let stdout = failing_run(&run_dir, &[], &[]).await;
    assert!(
        !stdout.contains("::error"),
        "no --github, no annotations:\n{stdout}"
    );
    let sarif = json(&run_dir.join("report.sarif"));
    assert_eq!(sarif["version"], "2.1.0");
    let report = json(&run_dir.join("report.json"));
    let req_ids: Vec<&str> = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // One rule per requirement, then one for the completion judge that judged nothing.
    assert_eq!(rule_ids[..req_ids.len()], req_ids[..]);
    assert_eq!(rule_ids[req_ids.len()..], ["signal"]);
    for rule in rules {
        for field in ["shortDescription", "fullDescription", "help"] {
            assert!(
                rule[field]["text"].as_str().is_some_and(|t| !t.is_empty()),
                "{rule}"
            );
        }
    }
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let errors = results.iter().filter(|r| r["level"] == "error").count();
    let warnings = results.iter().filter(|r| r["level"] == "warning").count();
    assert_eq!((errors, warnings), (15, 5));
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        assert!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string());
    }
    let check = results
        .iter()
        .find(|r| r["ruleId"] == "reliability/check/1")
        .unwrap();
    let physical = &check["locations"][0]["physicalLocation"];
    assert_eq!(physical["artifactLocation"]["uri"], QUOTED_FILE);
    assert_eq!(physical["region"]["startLine"], quoted_line());

    let before = fingerprints(&sarif);
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        Test::new()
            .arg("replay")
            .arg(&run_dir)
            .arg("--out")
            .arg(out.path())
            .args(["--allow-unknown"])
            .status(1)
            .run();
        let again = json(&out.path().join("report.sarif"));
        assert_eq!(fingerprints(&again), before);
        assert_eq!(again, sarif);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn github_output_caps_annotations_points_at_files_and_fills_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let stdout = failing_run(
        &run_dir,
        &["--github"],
        &[("GITHUB_STEP_SUMMARY", &summary)],
    )
    .await;
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::warning "))
        .collect();
    assert_eq!(errors.len(), 10, "{stdout}");
    assert_eq!(warnings.len(), 5, "{stdout}");
    // Most severe first: every error line comes before every warning line.
    let last_error = stdout.rfind("::error ").unwrap();
    assert!(stdout.find("::warning ").unwrap() > last_error);
    // Files are named from the repository root (the current directory), not the workspace.
    let cited = format!(
        "::error file={WORKSPACE}/{QUOTED_FILE},line={},title=hatrack%3A reliability/check/",
        quoted_line()
    );
    assert!(stdout.contains(&cited), "{stdout}");
    for line in errors.iter().chain(&warnings) {
        let (props, message) = line.split_once("::").unwrap().1.split_once("::").unwrap();
        assert!(!message.contains('\n') && !message.contains('\r'));
        for prop in props.split(',') {
            let (_, value) = prop.split_once('=').unwrap();
            assert!(!value.contains(':') && !value.contains(','), "{prop}");
        }
    }
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("earlier step\n"),
        "the summary is appended to"
    );
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(text.ends_with(&md), "the summary holds report.md");

    // GITHUB_ACTIONS=true turns it on too, for a replay as for a run.
    let out = Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--allow-unknown")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", support::repo_root().join(WORKSPACE))
        .status(1)
        .run();
    // Files are named from $GITHUB_WORKSPACE when it is set.
    assert!(
        out.stdout.contains(&format!(
            "::error file={QUOTED_FILE},line={},",
            quoted_line()
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("::error "))
            .count(),
        10
    );
}

/// The composite action and the README's example workflow are valid YAML that do what the
/// README says.
#[test]
fn the_action_and_the_readme_workflow_parse() {
    let root = support::repo_root();
    let action: Value =
        serde_norway::from_str(&std::fs::read_to_string(root.join("action.yml")).unwrap())
            .expect("action.yml is YAML");
    assert_eq!(action["runs"]["using"], "composite");
    let steps = action["runs"]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@"))));
    assert!(steps.iter().any(|s| s["run"]
        .as_str()
        .is_some_and(|r| r.contains("hatrack run") && r.contains("--github"))));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a yaml block");
    let workflow: Value = serde_norway::from_str(block).expect("the README workflow is YAML");
    assert_eq!(workflow["permissions"]["security-events"], "write");
}

/// Copies the shipped deployment stage, making `sre/anti-pattern/3` and
/// `reliability/check/4` SHOULD-level.
fn stage_with_should_items(dir: &Path) -> std::path::PathBuf {
    let stage = dir.join("deployment");
    for sub in ["hats", "review-agents"] {
        std::fs::create_dir_all(stage.join(sub)).unwrap();
    }
    let src = support::repo_root().join("hats/deployment");
    for f in [
        "STAGE.md",
        "hats/pipeline-engineer.md",
        "hats/sre.md",
        "review-agents/reliability.md",
    ] {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        let text = text
            .replace(
                "The agent **MUST** verify that runbooks are actionable",
                "The agent **SHOULD** verify that runbooks are actionable",
            )
            .replace(
                "The agent **MUST** verify that resource sizing",
                "The agent **SHOULD** verify that resource sizing",
            );
        std::fs::write(stage.join(f), text).unwrap();
    }
    stage
}

/// The gate decides once whether a requirement blocks; all seven outputs say the same word.
/// A hat constraint blocks at any level (the stage's rule: no hat constraint fails), so a
/// failing SHOULD constraint is "blocking" everywhere; a failing SHOULD review check is
/// "advisory" everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_should_constraint_is_blocking_and_a_should_check_advisory_in_all_seven_outputs()
{
    let dir = tempfile::tempdir().unwrap();
    let stage = stage_with_should_items(dir.path());
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("notes.md"),
        "# Notes\n\nFreshness alerts page the data on-call within 15 minutes of a missed SLA.\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    let constraint = "sre/anti-pattern/3";
    let check = "reliability/check/4";
    let reviewer = FakeReviewer::new()
        .verdict(constraint, "fail")
        .verdict(check, "fail");
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let run_dir = dir.path().join("run");
    let summary = dir.path().join("summary.md");
    let out = Test::new()
        .arg("run")
        .arg(&ws)
        .arg("--stage")
        .arg(&stage)
        .args(["--model", "fake-model", "--github", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(&run_dir)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_WORKSPACE", &ws)
        .status(1)
        .run();
    let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
    for (id, word, other) in [
        (constraint, "blocking", "advisory"),
        (check, "advisory", "blocking"),
    ] {
        // 1. report.json
        let report = json(&run_dir.join("report.json"));
        let r = report["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        assert_eq!(r["level"], "SHOULD");
        assert_eq!(r["verdict"], "unmet");
        assert_eq!(r["blocking"], word == "blocking", "{r}");
        let is_reason = report["outcome"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["subject"] == id);
        assert_eq!(is_reason, word == "blocking");
        // 2. report.md and 3. the step summary (report.md appended): every line naming it.
        let md = read("report.md");
        let step_summary = std::fs::read_to_string(&summary).unwrap();
        for (name, text) in [("report.md", &md), ("step summary", &step_summary)] {
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(id)).collect();
            assert!(!lines.is_empty(), "{name} does not name {id}");
            let tagged: Vec<&&str> = lines
                .iter()
                .filter(|l| l.contains(&format!("SHOULD ({word})")))
                .collect();
            assert!(!tagged.is_empty(), "{name}: {id} not {word}: {lines:?}");
            assert!(
                !lines
                    .iter()
                    .any(|l| l.contains(&format!("SHOULD ({other})"))),
                "{name}: {id} also {other}"
            );
        }
        // 4. report.html: the requirement's panel.
        let html = read("report.html");
        let anchor = format!("-{}\"", id.replace('/', "-"));
        let start = html
            .find("<details class=\"panel req unmet\" id=\"req-")
            .and_then(|from| html[from..].find(&anchor).map(|at| from + at))
            .unwrap_or_else(|| panic!("no panel for {id}"));
        let panel = &html[start..start + html[start..].find("</details>").unwrap()];
        assert!(panel.contains(&format!("SHOULD ({word})")), "{panel}");
        assert!(!panel.contains(&format!("({other})")), "{panel}");
        // 5. junit.xml: a failure when blocking, skipped (saying advisory) when not.
        let xml = read("junit.xml");
        let case_start = xml.find(&format!("name=\"{id} ")).unwrap();
        let case = &xml[case_start..case_start + xml[case_start..].find("</testcase>").unwrap()];
        if word == "blocking" {
            assert!(case.contains("<failure"), "{case}");
            assert!(case.contains("[SHOULD, blocking]"), "{case}");
        } else {
            assert!(case.contains("<skipped"), "{case}");
            assert!(case.contains("advisory"), "{case}");
        }
        assert!(!case.contains(other), "{case}");
        // 6. report.sarif: error when blocking, warning when advisory; the rule says which.
        let sarif = json(&run_dir.join("report.sarif"));
        let result = sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleId"] == id)
            .unwrap();
        let level = if word == "blocking" {
            "error"
        } else {
            "warning"
        };
        assert_eq!(result["level"], level);
        let message = result["message"]["text"].as_str().unwrap();
        assert!(message.starts_with(&format!("{word}: ")), "{message}");
        let rule = sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        assert_eq!(rule["defaultConfiguration"]["level"], level);
        assert_eq!(rule["properties"]["weight"], word);
        // 7. the annotations on stdout.
        let annotation = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("title=hatrack%3A {id}::")))
            .unwrap_or_else(|| panic!("no annotation for {id}:\n{}", out.stdout));
        assert!(
            annotation.starts_with(&format!("::{level} ")),
            "{annotation}"
        );
        assert!(
            annotation.contains(&format!("::{word}: {id} (SHOULD)")),
            "{annotation}"
        );
    }
}

/// A model's ESC and BEL (colours, OSC-8 hyperlinks that hide where a link goes) never
/// reach a terminal or a CI log raw: annotations, the step summary and the summary table
/// show them escaped.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_from_the_model_never_reach_the_ci_log_raw() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "").unwrap();
    let said = " \u{1b}]8;;https://evil.example\u{7}click here\u{1b}]8;;\u{7} \u{1b}[31mred\u{1b}[0m\u{202e}";
    let out = failing_run_saying(
        &dir.path().join("run"),
        &["--github"],
        &[("GITHUB_STEP_SUMMARY", &summary)],
        said,
    )
    .await;
    assert!(out.stdout.contains("::error "), "{}", out.stdout);
    assert!(
        out.stdout.contains("\\u{1b}]8;;https://evil.example"),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("\\u{1b}"), "{text}");
    for (what, s) in [("stdout", &out.stdout), ("the step summary", &text)] {
        assert!(
            !s.contains(['\u{1b}', '\u{7}', '\u{202e}']),
            "{what} carries raw control characters"
        );
    }
}

/// A `$GITHUB_STEP_SUMMARY` that is a link, a FIFO or cannot be written: the gate's exit code
/// stands (the reports are written), a warning says why, nothing waits and no link is
/// followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_step_summary_that_cannot_be_written_is_a_warning_not_an_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.md");
    std::fs::write(&outside, "not hatrack's\n").unwrap();
    let link = dir.path().join("link.md");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let fifo = dir.path().join("fifo.md");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let missing = dir.path().join("no/such/dir/summary.md");
    for (i, target) in [&link, &fifo, &missing].into_iter().enumerate() {
        let run_dir = dir.path().join(format!("run{i}"));
        let started = std::time::Instant::now();
        // `failing_run` insists on exit 1: the gate's answer, not 2.
        let out = failing_run_saying(
            &run_dir,
            &["--github"],
            &[("GITHUB_STEP_SUMMARY", target)],
            "",
        )
        .await;
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        assert!(
            out.stderr.contains("the step summary was not written"),
            "{}",
            out.stderr
        );
        assert!(run_dir.join("report.md").is_file());
    }
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "not hatrack's\n"
    );
}
