//! `hatrack eval` through the binary, against the fake OpenAI server scripted by
//! `FakeReviewer` (a stand-in for a model, not a model). Three scripted judges with known
//! answers — an oracle that answers the labels, a contrarian that answers the opposite, and
//! one that always answers `met` — must score as the labels, counted by hand, say.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::{copy_dir, Test};

/// One case of the test suite: name, split, expected gate, labels (id, expected).
struct CaseDef {
    name: &'static str,
    split: &'static str,
    gate: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

/// 14 labels met or unmet (7 of each, so the contrarian's κ is −1) and one `any`; two
/// cases of four are the holdout.
const SUITE: &[CaseDef] = &[
    CaseDef {
        name: "clean",
        split: "dev",
        gate: "met",
        labels: &[
            ("pipeline-engineer/anti-pattern/1", "met"),
            ("sre/anti-pattern/1", "met"),
            ("reliability/check/1", "met"),
            ("signal/1", "met"),
        ],
    },
    CaseDef {
        name: "no-retries",
        split: "dev",
        gate: "not met",
        labels: &[
            ("pipeline-engineer/anti-pattern/1", "unmet"),
            ("sre/anti-pattern/2", "met"),
            ("reliability/check/2", "unmet"),
            ("signal/2", "any"),
        ],
    },
    CaseDef {
        name: "no-limits",
        split: "holdout",
        gate: "not met",
        labels: &[
            ("pipeline-engineer/anti-pattern/3", "unmet"),
            ("sre/anti-pattern/1", "unmet"),
            ("signal/3", "met"),
        ],
    },
    CaseDef {
        name: "no-runbook",
        split: "holdout",
        gate: "not met",
        labels: &[
            ("reliability/check/3", "unmet"),
            ("signal/4", "unmet"),
            ("signal/5", "unmet"),
            ("pipeline-engineer/anti-pattern/2", "met"),
        ],
    },
];

fn marker(case: &str) -> String {
    format!("Eval case marker: {case}.")
}

/// Writes the suite under `dir`: each case's workspace (one notes file bound to every
/// input, carrying the case's marker) and its labels.toml beside it.
fn write_suite(dir: &Path) -> PathBuf {
    let suite = dir.join("suite");
    for case in SUITE {
        let ws = suite.join(case.name).join("workspace");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(
            ws.join("notes.md"),
            format!(
                "# Notes\n\n{}\nFreshness alerts page the data on-call within 15 minutes of a missed SLA.\n",
                marker(case.name)
            ),
        )
        .unwrap();
        std::fs::write(
            ws.join("hatrack.toml"),
            support::inputs_bound_to("notes.md"),
        )
        .unwrap();
        let mut toml = format!(
            "split = {:?}\ngate = {:?}\n[expect]\n",
            case.split, case.gate
        );
        for (id, expected) in case.labels {
            toml.push_str(&format!("{id:?} = {expected:?}\n"));
        }
        toml.push_str("[why]\n");
        for (id, _) in case.labels {
            toml.push_str(&format!("{id:?} = \"notes.md: the case's notes\"\n"));
        }
        std::fs::write(suite.join(case.name).join("labels.toml"), toml).unwrap();
    }
    suite
}

#[derive(Clone, Copy, PartialEq)]
enum Judge {
    /// Answers every label as labelled.
    Oracle,
    /// Answers every label the other way.
    Contrarian,
    /// Answers `met` (or `pass`) to everything.
    AlwaysMet,
}

/// The verdict word a judge step uses for `id` (constraints and checks pass/fail, signal
/// sentences met/unmet).
fn word(id: &str, met: bool) -> &'static str {
    match (id.starts_with("signal/"), met) {
        (true, true) => "met",
        (true, false) => "unmet",
        (false, true) => "pass",
        (false, false) => "fail",
    }
}

/// A fake server whose judge answers each case's labels as `judge` does; every request
/// names its case through the marker in the bound notes.
async fn server(judge: Judge) -> FakeOpenAi {
    let mut reviewers: Vec<(String, String, FakeReviewer)> = Vec::new();
    for case in SUITE {
        let mut r = FakeReviewer::new();
        for (id, expected) in case.labels {
            let met = match (judge, *expected) {
                (Judge::AlwaysMet, _) | (_, "any") => true,
                (Judge::Oracle, e) => e == "met",
                (Judge::Contrarian, e) => e != "met",
            };
            r = r.verdict(id, word(id, met));
        }
        // The completion judge sees artifacts, not the notes: each case's hats name theirs
        // after the case.
        let artifact = format!("plan-{}.md", case.name);
        reviewers.push((
            marker(case.name),
            artifact.clone(),
            r.artifact_path(&artifact),
        ));
    }
    FakeOpenAi::with_handler(move |req| {
        let text = req.messages_text();
        let (_, _, reviewer) = reviewers
            .iter()
            .find(|(m, a, _)| text.contains(m.as_str()) || text.contains(a.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "every request shows its case's notes: {}",
                    &text[..text.len().min(3000)]
                )
            });
        reviewer.answer(req)
    })
    .await
}

fn eval(server: &FakeOpenAi, suite: &Path, out: &Path) -> Test {
    Test::new()
        .arg("eval")
        .arg(suite)
        .arg("--out")
        .arg(out)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0"])
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The confusion cells of a metrics object: [[unmet, met, unknown] of defects, … of clean].
fn cells(metrics: &Value) -> [[u64; 3]; 2] {
    let row = |r: &Value| {
        [
            r["unmet"].as_u64().unwrap(),
            r["met"].as_u64().unwrap(),
            r["unknown"].as_u64().unwrap(),
        ]
    };
    let c = &metrics["confusion"];
    [row(&c["expected_unmet"]), row(&c["expected_met"])]
}

/// Hand counts from the label table: (defects, clean, any) overall and on the holdout.
fn label_counts(split: Option<&str>) -> (u64, u64, u64) {
    let mut n = (0, 0, 0);
    for case in SUITE.iter().filter(|c| split.is_none_or(|s| c.split == s)) {
        for (_, e) in case.labels {
            match *e {
                "unmet" => n.0 += 1,
                "met" => n.1 += 1,
                _ => n.2 += 1,
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_judges_with_known_answers_score_as_counted_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    let (defects, clean, any) = label_counts(None);
    assert_eq!((defects, clean, any), (7, 7, 1), "the suite as designed");

    // The oracle: everything right, κ = 1; its cases end with the gates the labels expect.
    let oracle = server(Judge::Oracle).await;
    let dir = tmp.path().join("oracle");
    eval(&oracle, &suite, &dir)
        .stdout_has("14 labelled verdict(s): 14 right, 0 wrong, 0 abstained")
        .run();
    let e = json(&dir.join("eval.json"));
    let all = &e["scores"]["all"]["overall"];
    assert_eq!(cells(all), [[defects, 0, 0], [0, clean, 0]]);
    assert_eq!(
        (all["tpr"]["value"].as_f64(), all["tnr"]["value"].as_f64()),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(all["kappa"].as_f64(), Some(1.0));
    assert_eq!(e["gate"]["right"], 4);
    assert_eq!(e["counts"]["unscored"], any);
    for case in SUITE {
        let report = json(&dir.join(case.name).join("report.json"));
        let expected_exit = if case.gate == "met" { 0 } else { 1 };
        assert_eq!(
            report["outcome"]["exit_code"], expected_exit,
            "{}",
            case.name
        );
    }

    // The contrarian: everything wrong, κ = −1.
    let contrarian = server(Judge::Contrarian).await;
    let dir = tmp.path().join("contrarian");
    eval(&contrarian, &suite, &dir).run();
    let e = json(&dir.join("eval.json"));
    let all = &e["scores"]["all"]["overall"];
    assert_eq!(cells(all), [[0, defects, 0], [clean, 0, 0]]);
    assert_eq!(all["kappa"].as_f64(), Some(-1.0));
    assert_eq!(e["counts"]["wrong"], defects + clean);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(
        junit.matches("<failure").count() as u64,
        defects + clean,
        "{junit}"
    );
    assert_eq!(junit.matches("<skipped").count() as u64, any, "{junit}");
    assert_eq!(
        junit.matches("<testcase ").count() as u64,
        defects + clean + any
    );

    // Always met: catches no defect, passes every clean item, agrees no better than chance;
    // every case that should be blocked passes, and the costly error is listed first.
    let always = server(Judge::AlwaysMet).await;
    let dir = tmp.path().join("always-met");
    eval(&always, &suite, &dir).run();
    let e = json(&dir.join("eval.json"));
    let all = &e["scores"]["all"]["overall"];
    assert_eq!(cells(all), [[0, defects, 0], [0, clean, 0]]);
    assert_eq!(all["tpr"]["value"].as_f64(), Some(0.0));
    assert_eq!(all["tnr"]["value"].as_f64(), Some(1.0));
    assert_eq!(all["kappa"].as_f64(), Some(0.0));
    assert_eq!(all["majority_baseline"].as_f64(), Some(0.5));
    let should_block = SUITE.iter().filter(|c| c.gate == "not met").count() as u64;
    assert_eq!(e["gate"]["should_block_but_passed"], should_block);
    assert_eq!(e["gate"]["cases"][0]["outcome"], "should-block-but-passed");
    let (h_defects, h_clean, _) = label_counts(Some("holdout"));
    assert_eq!(
        cells(&e["scores"]["holdout"]["overall"]),
        [[0, h_defects, 0], [0, h_clean, 0]]
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<failure").count() as u64, defects, "{junit}");
    // Per requirement: the pipeline engineer's first constraint is labelled once unmet, once met.
    let pe1 = e["scores"]["all"]["by_requirement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "pipeline-engineer/anti-pattern/1")
        .unwrap();
    assert_eq!(cells(&pe1["metrics"]), [[0, 1, 0], [0, 1, 0]]);
    let md = std::fs::read_to_string(dir.join("eval.md")).unwrap();
    assert!(md.contains("**should block, but passed**"), "{md}");
    let html = std::fs::read_to_string(dir.join("eval.html")).unwrap();
    assert!(
        html.contains("class=\"wrong\"") && html.contains("notes.md: the case&#39;s notes"),
        "{html}"
    );

    // Thresholds: a TPR of at least 0.5 on the holdout fails the always-met judge, passes the oracle.
    let rescore = |dir: &str, status: i32| {
        Test::new()
            .args(["eval", "--from"])
            .arg(tmp.path().join(dir))
            .arg("--out")
            .arg(tmp.path().join(format!("{dir}-tpr")))
            .args(["--min-tpr", "0.5"])
            .status(status)
            .stdout_has("--min-tpr 0.5 on holdout")
            .run()
    };
    rescore("always-met", 1);
    rescore("oracle", 0);
    eval(&always, &suite, &tmp.path().join("always-met-run"))
        .args(["--min-tpr", "0.5"])
        .status(1)
        .stdout_has("NOT MET")
        .run();

    // Compare: the discordant items are exactly the `unmet` labels, and McNemar's p is the
    // exact binomial tail (all discordant pairs on one side: 2 · ½ⁿ).
    let cmp = tmp.path().join("cmp");
    Test::new()
        .args(["eval", "compare"])
        .arg(tmp.path().join("oracle"))
        .arg(tmp.path().join("always-met"))
        .arg("--out")
        .arg(&cmp)
        .run();
    let c = json(&cmp.join("compare.json"));
    let discordant: BTreeSet<(String, String)> = c["discordant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["case"].as_str().unwrap().to_string(),
                d["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let unmet: BTreeSet<(String, String)> = SUITE
        .iter()
        .flat_map(|c| {
            c.labels
                .iter()
                .filter(|(_, e)| *e == "unmet")
                .map(move |(id, _)| (c.name.to_string(), id.to_string()))
        })
        .collect();
    assert_eq!(discordant, unmet);
    let n = unmet.len() as i32;
    let binomial: f64 = 2.0
        * (0..=0)
            .map(|i| choose(n as u64, i) * 0.5f64.powi(n))
            .sum::<f64>();
    assert!(
        (c["mcnemar_p"].as_f64().unwrap() - binomial).abs() < 1e-12,
        "{c}"
    );
    assert_eq!(c["tpr"]["difference"].as_f64(), Some(-1.0));
    assert_eq!(c["tnr"]["difference"].as_f64(), Some(0.0));
}

fn choose(n: u64, k: u64) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Every file of an eval directory (junit's `time` attributes are its only timings).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_eval_scores_again_and_replays_offline_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    let dir = tmp.path().join("eval");
    {
        let oracle = server(Judge::Oracle).await;
        eval(&oracle, &suite, &dir)
            .args(["--min-kappa", "0.5"])
            .run();
    } // the server is gone: what follows calls no model.
    let before = files(&dir);
    let again = tmp.path().join("again");
    Test::new()
        .args(["eval", "--from"])
        .arg(&dir)
        .arg("--out")
        .arg(&again)
        .args(["--min-kappa", "0.5"])
        .run();
    for f in ["eval.json", "eval.md", "eval.html", "junit.xml"] {
        assert_eq!(
            std::fs::read(again.join(f)).unwrap(),
            before[f],
            "{f} differs when scored again"
        );
    }
    // The same with the suite named (its labels, not the recorded copy).
    Test::new()
        .args(["eval"])
        .arg(&suite)
        .arg("--from")
        .arg(&dir)
        .arg("--out")
        .arg(&again)
        .args(["--min-kappa", "0.5"])
        .run();
    assert_eq!(
        std::fs::read(again.join("eval.json")).unwrap(),
        before["eval.json"]
    );

    Test::new()
        .arg("replay")
        .arg(&dir)
        .stdout_has("14 right, 0 wrong")
        .run();
    // A case whose last run ended in an error (here: as a replay that missed would record
    // it) is scored from that end, not from a report left by an earlier run.
    let broken = tmp.path().join("broken");
    copy_dir(&dir, &broken);
    std::fs::write(
        broken.join("clean").join("member.json"),
        "{\"exit_code\": 4, \"error\": \"replaying clean: no recorded exchange matches\"}\n",
    )
    .unwrap();
    Test::new()
        .args(["eval", "--from"])
        .arg(&broken)
        .status(4)
        .stdout_has("1 without a gate")
        .run();
    let e = json(&broken.join("eval.json"));
    let clean = e["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "clean")
        .unwrap();
    assert_eq!(clean["exit_code"], 4);
    assert!(clean["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["got"] == "unknown"));
    let after = files(&dir);
    let names: Vec<&String> = before.keys().collect();
    assert_eq!(names, after.keys().collect::<Vec<_>>());
    let time = regex::Regex::new(r#" time="[^"]*""#).unwrap();
    for (name, bytes) in &before {
        let (a, b) = (
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&after[name]),
        );
        assert_eq!(
            time.replace_all(&a, ""),
            time.replace_all(&b, ""),
            "{name} changed on replay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_or_stale_label_stops_the_eval_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    let labels = suite.join("no-limits").join("labels.toml");
    let text = std::fs::read_to_string(&labels).unwrap();
    std::fs::write(
        &labels,
        text.replace("sre/anti-pattern/1", "sre/anti-patern/1"),
    )
    .unwrap();
    let server = server(Judge::Oracle).await;
    let out = eval(&server, &suite, &tmp.path().join("typo"))
        .status(2)
        .run();
    assert!(
        out.stderr.contains("no-limits/labels.toml:5: \"sre/anti-patern/1\" is not a requirement of stage deployment"),
        "{}",
        out.stderr
    );
    std::fs::write(&labels, format!("stage_digest = \"sha256:0000\"\n{text}")).unwrap();
    let out = eval(&server, &suite, &tmp.path().join("stale"))
        .status(2)
        .run();
    assert!(
        out.stderr.contains(
            "no-limits/labels.toml:1: stale labels: written for stage digest sha256:0000"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        server.count(),
        0,
        "no request before the labels are checked"
    );
    eval(&server, &suite, &tmp.path().join("allowed"))
        .arg("--allow-stale-labels")
        .run();
    assert!(server.count() > 0);
}

// ---- the shipped corpus: evals/deployment ----

fn corpus() -> PathBuf {
    support::repo_root().join("evals/deployment")
}

/// The shipped stage's requirement ids and digest.
fn stage_ids() -> (BTreeSet<String>, String) {
    let stage = hatrack::definition::load_stage(&support::repo_root().join("hats/deployment"))
        .unwrap()
        .stage;
    let ids = stage
        .hats
        .iter()
        .flat_map(|h| h.constraints().map(|r| r.id.clone()))
        .chain(
            stage
                .review_agents
                .iter()
                .flat_map(|a| a.checks.iter().map(|r| r.id.clone())),
        )
        .chain(stage.completion_signal.iter().map(|r| r.id.clone()))
        .collect();
    (ids, hatrack::definition::definition_digest(&stage))
}

#[test]
fn the_corpus_labels_only_requirements_of_the_shipped_stage_and_is_current() {
    let suite = hatrack::eval::labels::load_suite(&corpus()).unwrap();
    let (ids, digest) = stage_ids();
    assert!(suite.cases.len() >= 12, "{} cases", suite.cases.len());
    for case in &suite.cases {
        for label in &case.labels {
            assert!(
                ids.contains(&label.id),
                "{}:{}: {}",
                case.labels_file,
                label.line,
                label.id
            );
        }
        assert_eq!(
            case.stage_digest.as_deref(),
            Some(digest.as_str()),
            "{}: stale labels",
            case.labels_file
        );
    }
    // A third (or more) of the cases are the holdout.
    let holdout = suite
        .cases
        .iter()
        .filter(|c| c.split == hatrack::eval::labels::Split::Holdout)
        .count();
    assert!(
        holdout * 3 >= suite.cases.len(),
        "{holdout} holdout cases of {}",
        suite.cases.len()
    );
    // The clean case passes, the others are seeded with defects.
    for case in &suite.cases {
        let unmet = case
            .labels
            .iter()
            .any(|l| l.expected == hatrack::eval::labels::Expected::Unmet);
        let gate = if unmet { "not met" } else { "met" };
        assert_eq!(case.gate.as_str(), gate, "{}", case.labels_file);
    }
}

#[test]
fn every_requirement_is_labelled_both_ways_or_left_to_the_hats() {
    use hatrack::eval::labels::Expected;
    let suite = hatrack::eval::labels::load_suite(&corpus()).unwrap();
    let (ids, _) = stage_ids();
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for label in suite.cases.iter().flat_map(|c| &c.labels) {
        seen.entry(label.id.as_str())
            .or_default()
            .insert(label.expected.as_str());
    }
    for id in &ids {
        let words = seen.get(id.as_str()).cloned().unwrap_or_default();
        // A requirement about how a hat conducts itself (not about the repository) is `any`
        // in every end-to-end case; every other one is labelled met somewhere and unmet
        // somewhere, so both errors can be measured.
        let both =
            words.contains(Expected::Met.as_str()) && words.contains(Expected::Unmet.as_str());
        let conduct = words.len() == 1 && words.contains(Expected::Any.as_str());
        assert!(both || conduct, "{id}: labelled only {words:?}");
    }
}

#[test]
fn every_why_line_names_a_file_of_its_case_and_no_workspace_holds_an_answer_key() {
    let suite = hatrack::eval::labels::load_suite(&corpus()).unwrap();
    let path = regex::Regex::new(r"[A-Za-z0-9_./-]+\.(?:py|ya?ml|md|sql|toml)\b").unwrap();
    for case in &suite.cases {
        let ws = corpus().join(&case.name).join("workspace");
        for label in &case.labels {
            let named: Vec<&str> = path.find_iter(&label.why).map(|m| m.as_str()).collect();
            assert!(
                !named.is_empty(),
                "{}:{}: the why-line names no file",
                case.labels_file,
                label.line
            );
            for file in named {
                // A file of the workspace, or one of the case's fixed artifacts.
                let fixed = file.starts_with("artifacts/")
                    && corpus().join(&case.name).join(file).is_file();
                assert!(
                    ws.join(file).is_file() || fixed,
                    "{}:{}: {file} is not in the workspace or the case's artifacts",
                    case.labels_file,
                    label.line
                );
            }
        }
        // Nothing a hat or judge reads (the workspace, fixed artifacts) speaks of the labels
        // or of seeded defects.
        let artifacts = corpus().join(&case.name).join("artifacts");
        for entry in walkdir::WalkDir::new(&ws)
            .into_iter()
            .chain(walkdir::WalkDir::new(&artifacts))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let text = std::fs::read_to_string(entry.path())
                .unwrap_or_default()
                .to_lowercase();
            for word in [
                "labels.toml",
                "seeded",
                "deliberate",
                "answer key",
                "prepared to pass",
            ] {
                assert!(
                    !text.contains(word),
                    "{}: {word:?} in a reviewed workspace",
                    entry.path().display()
                );
            }
        }
    }
    let gaps = std::fs::read_to_string(
        support::repo_root().join("examples/orders-pipeline-gaps/README.md"),
    )
    .unwrap();
    assert!(
        !gaps.to_lowercase().contains("no retries"),
        "the answer key is back in a workspace: {gaps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_runs_through_eval() {
    // A scripted judge (a stand-in for a model) that passes everything, citing the artifact
    // its scripted hats write: the corpus must load, bind and run, and its counts must be the
    // labels'.
    let server = FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("eval");
    eval(&server, &corpus(), &dir).arg("--quiet").run();
    let suite = hatrack::eval::labels::load_suite(&corpus()).unwrap();
    let e = json(&dir.join("eval.json"));
    let count = |w: &str, fixed: bool| {
        suite
            .cases
            .iter()
            .filter(|c| c.fixed_artifacts == fixed)
            .flat_map(|c| &c.labels)
            .filter(|l| l.expected.as_str() == w)
            .count() as u64
    };
    // End to end, the judge passes everything, so only the stage's probes (checks.toml) can
    // catch a defect: they catch some, with no model, and never fire on a clean item.
    let e2e = cells(&e["scores"]["end_to_end_cases"]["overall"]);
    let caught_by_checks = e2e[0][0];
    assert!(caught_by_checks > 0, "{e2e:?}");
    assert_eq!(
        e2e,
        [
            [
                caught_by_checks,
                count("unmet", false) - caught_by_checks,
                0
            ],
            [0, count("met", false), 0]
        ]
    );
    // In the cases that fix their artifacts, a met grounds only where the scripted judge
    // quotes a repository line (review checks do); the rest are ungrounded: unknown, or unmet
    // where a probe of the workspace decides a requirement whose label is about what a hat
    // wrote (the workspace lacks what the fixed artifact adds). Every label counted once.
    let fixed = cells(&e["scores"]["artifact_cases"]["overall"]);
    assert_eq!(
        fixed[0].iter().sum::<u64>(),
        count("unmet", true),
        "{fixed:?}"
    );
    assert_eq!(
        fixed[1].iter().sum::<u64>(),
        count("met", true),
        "{fixed:?}"
    );
    let count = |w: &str| count(w, true) + count(w, false);
    assert_eq!(e["counts"]["cases"], suite.cases.len() as u64);
    assert_eq!(e["counts"]["unscored"], count("any"));
    assert!(e["scores"]["holdout"].is_object());
}

/// The judges alone vs the judges with the stage's checks: the same always-`met` scripted
/// judge (a stand-in for a model) over the corpus, once `--without-checks`. Without checks it
/// catches no defect; with them, every defect it catches is a check's veto, and `eval
/// compare` lists exactly the items the checks turned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_scored_with_and_without_checks_shows_what_the_checks_add() {
    let server = FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await;
    let tmp = tempfile::tempdir().unwrap();
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    eval(&server, &corpus(), &with).arg("--quiet").run();
    eval(&server, &corpus(), &without)
        .args(["--quiet", "--without-checks"])
        .run();
    let (w, wo) = (
        json(&with.join("eval.json")),
        json(&without.join("eval.json")),
    );
    let cases = w["counts"]["cases"].as_u64().unwrap();
    assert_eq!(w["checks"]["cases_with_checks"], cases);
    assert_eq!(wo["checks"]["cases_with_checks"], 0);
    assert_eq!(wo["checks"]["vetoed"], 0);
    let vetoed: BTreeSet<(String, String)> = w["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["vetoed_by_check"] == true)
                .map(move |i| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        i["id"].as_str().unwrap().to_string(),
                    )
                })
        })
        .collect();
    assert_eq!(w["checks"]["vetoed"], vetoed.len() as u64);
    assert!(
        w["checks"]["vetoed_right"].as_u64().unwrap() > 0,
        "{}",
        w["checks"]
    );
    // End to end the scripted judge passes everything: only checks catch a defect.
    let e2e = |e: &Value| cells(&e["scores"]["end_to_end_cases"]["overall"])[0][0];
    assert_eq!(e2e(&wo), 0);
    assert!(e2e(&w) > 0);
    let md = std::fs::read_to_string(without.join("eval.md")).unwrap();
    assert!(md.contains("Checks: none applied"), "{md}");

    let cmp = tmp.path().join("cmp");
    Test::new()
        .args(["eval", "compare"])
        .arg(&without)
        .arg(&with)
        .arg("--out")
        .arg(&cmp)
        .run();
    let c = json(&cmp.join("compare.json"));
    let turned: BTreeSet<(String, String)> = c["discordant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["case"].as_str().unwrap().to_string(),
                d["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Every item one got right and the other not is one a check vetoed (a veto on an item
    // labelled met counts too: the checks made it wrong).
    assert!(!turned.is_empty());
    assert!(turned.is_subset(&vetoed), "{turned:?} vs {vetoed:?}");
    assert_eq!(
        c["only_b_right"].as_u64().unwrap(),
        w["checks"]["vetoed_right"].as_u64().unwrap() - vetoed_right_also_right_without(&wo, &w)
    );
}

/// Vetoed defects the judges alone already got right (unmet) — not turned by the checks.
fn vetoed_right_also_right_without(without: &Value, with: &Value) -> u64 {
    let got = |e: &Value, case: &str, id: &str| -> String {
        e["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == case)
            .and_then(|c| {
                c["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["id"] == id)
            })
            .map(|i| i["outcome"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    with["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let name = c["name"].as_str().unwrap();
            c["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["vetoed_by_check"] == true && i["expected"] == "unmet")
                .map(move |i| (name, i["id"].as_str().unwrap()))
        })
        .filter(|(case, id)| got(without, case, id) == "right")
        .count() as u64
}

// ---- hatrack rejudge ----

/// Whether a request is a producing hat's (its answer schema is `hat_answer`).
fn is_hat(req: &support::fake_openai::SeenRequest) -> bool {
    req.body["response_format"]["json_schema"]["name"] == "hat_answer"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejudge_asks_only_the_judges_again_and_changes_only_what_they_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
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
    let first = FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await;
    let run = tmp.path().join("run");
    Test::new()
        .arg("run")
        .arg(&ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(first.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(&run)
        .run();
    let hats_asked = first.requests().iter().filter(|r| is_hat(r)).count();
    assert!(hats_asked >= 2);

    // A second judge (scripted) that finds monitoring lacking.
    let flipped = "reliability/check/2";
    let second = FakeOpenAi::with_handler(move |req| {
        FakeReviewer::new().verdict(flipped, "fail").answer(req)
    })
    .await;
    let new = tmp.path().join("rejudged");
    Test::new()
        .arg("rejudge")
        .arg(&run)
        .arg("--out")
        .arg(&new)
        .args(["--judge-model", "fake-judge-2", "--base-url"])
        .arg(second.url())
        .args(["--timeout", "5", "--max-retries", "0"])
        .status(1)
        .run();
    let seen = second.requests();
    assert!(seen.iter().all(|r| !is_hat(r)), "a hat was asked again");
    let judges = json(&run.join("report.json"))["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] != "hat")
        .count();
    assert_eq!(
        seen.len(),
        judges,
        "one request per judging step, none for the hats"
    );
    assert!(seen.iter().all(|r| r.body["model"] == "fake-judge-2"));

    let (old, new_report) = (
        json(&run.join("report.json")),
        json(&new.join("report.json")),
    );
    let verdicts = |r: &Value| -> BTreeMap<String, String> {
        r["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                (
                    q["id"].as_str().unwrap().to_string(),
                    q["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (a, b) = (verdicts(&old), verdicts(&new_report));
    let changed: Vec<&String> = a.keys().filter(|id| a[*id] != b[*id]).collect();
    assert_eq!(changed, [flipped]);
    assert_eq!(b[flipped], "unmet");
    let artifacts = |r: &Value| -> Vec<Value> {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "hat")
            .map(|s| s["artifacts"].clone())
            .collect()
    };
    assert_eq!(
        artifacts(&old),
        artifacts(&new_report),
        "the hats' artifacts are the recorded ones"
    );
    // The rejudged run stands alone: it replays offline.
    drop(second);
    Test::new().arg("replay").arg(&new).status(1).run();

    // A hat whose request would change is not asked again: the rejudge stops (exit 4).
    let prompts = tmp.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    for f in ["hat.j2", "judge.j2", "review.j2", "signal.j2", "system.j2"] {
        std::fs::copy(
            support::repo_root().join("prompts").join(f),
            prompts.join(f),
        )
        .unwrap();
    }
    let hat = std::fs::read_to_string(prompts.join("hat.j2")).unwrap();
    std::fs::write(prompts.join("hat.j2"), format!("{hat}\nBe brief.\n")).unwrap();
    let third = FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await;
    Test::new()
        .arg("rejudge")
        .arg(&run)
        .arg("--out")
        .arg(tmp.path().join("changed-hat"))
        .arg("--prompts")
        .arg(&prompts)
        .arg("--base-url")
        .arg(third.url())
        .status(4)
        .run();
    assert_eq!(
        third.count(),
        0,
        "no request once a hat would have to run again"
    );
}

// ---- cases that fix the hats' artifacts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_with_fixed_artifacts_asks_only_its_judges_and_replays_without_them() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite");
    for (name, fixed) in [("fixed", true), ("end-to-end", false)] {
        let ws = suite.join(name).join("workspace");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(
            ws.join("notes.md"),
            format!("# Notes\n\n{}\n", marker(name)),
        )
        .unwrap();
        std::fs::write(
            ws.join("hatrack.toml"),
            support::inputs_bound_to("notes.md"),
        )
        .unwrap();
        std::fs::write(
            suite.join(name).join("labels.toml"),
            "gate = \"met\"\n[expect]\n\"pipeline-engineer/anti-pattern/1\" = \"met\"\n[why]\n\"pipeline-engineer/anti-pattern/1\" = \"artifacts/pipeline-engineer/plan.md: retries 3\"\n",
        )
        .unwrap();
        if fixed {
            for hat in ["pipeline-engineer", "sre"] {
                let dir = suite.join(name).join("artifacts").join(hat);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("plan.md"),
                    format!(
                        "# Fixed by the case\nHand-written {hat} artifact.\n{}\n",
                        support::fake_reviewer::ARTIFACT_LINE
                    ),
                )
                .unwrap();
            }
        }
    }
    let server = FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await;
    let dir = tmp.path().join("eval");
    eval(&server, &suite, &dir).run();
    let seen = server.requests();
    let hats: Vec<String> = seen
        .iter()
        .filter(|r| is_hat(r))
        .map(|r| r.messages_text())
        .collect();
    assert_eq!(
        hats.len(),
        2,
        "only the end-to-end case's two hats are asked"
    );
    assert!(
        hats.iter().all(|t| !t.contains(&marker("fixed"))),
        "a fixed case's hat was asked"
    );
    assert!(
        seen.iter()
            .any(|r| !is_hat(r) && r.messages_text().contains("Hand-written sre artifact.")),
        "the judges see the fixed artifacts"
    );
    let e = json(&dir.join("eval.json"));
    let modes: BTreeMap<String, String> = e["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["mode"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(modes["fixed"], "artifacts");
    assert_eq!(modes["end-to-end"], "end-to-end");
    assert_eq!(e["scores"]["artifact_cases"]["overall"]["items"], 1);
    assert_eq!(e["scores"]["end_to_end_cases"]["overall"]["items"], 1);
    assert_eq!(e["counts"]["right"], 2);
    let fixed_report = json(&dir.join("fixed").join("report.json"));
    let pe = fixed_report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hat/pipeline-engineer")
        .unwrap()
        .clone();
    assert_eq!(pe["model"], "fake-model");
    assert!(
        pe["summary"]
            .as_str()
            .unwrap()
            .contains("not a model's answer"),
        "{pe}"
    );

    // The eval replays offline without the suite's files: the fixed answers are recorded.
    let before = files(&dir);
    std::fs::rename(&suite, tmp.path().join("moved")).unwrap();
    drop(server);
    Test::new().arg("replay").arg(&dir).run();
    let time = regex::Regex::new(r#" time="[^"]*""#).unwrap();
    for (name, bytes) in &before {
        let after = std::fs::read(dir.join(name)).unwrap();
        let (a, b) = (
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&after),
        );
        assert_eq!(
            time.replace_all(&a, ""),
            time.replace_all(&b, ""),
            "{name} changed on replay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_rejudge_from_asks_only_the_judges_of_every_case() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    let oracle = server(Judge::Oracle).await;
    let first = tmp.path().join("first");
    eval(&oracle, &suite, &first).run();
    // The always-met judge, asked again over the recorded hats.
    let always = server(Judge::AlwaysMet).await;
    let second = tmp.path().join("second");
    eval(&always, &suite, &second)
        .args(["--rejudge-from"])
        .arg(&first)
        .args(["--judge-model", "fake-judge-2"])
        .run();
    let seen = always.requests();
    assert!(
        !seen.is_empty() && seen.iter().all(|r| !is_hat(r)),
        "a hat was asked again"
    );
    assert!(seen.iter().all(|r| r.body["model"] == "fake-judge-2"));
    let e = json(&second.join("eval.json"));
    let (defects, clean, _) = label_counts(None);
    assert_eq!(
        cells(&e["scores"]["all"]["overall"]),
        [[0, defects, 0], [0, clean, 0]]
    );
    // Every case's hats' artifacts are the recorded ones.
    for case in SUITE {
        let hats = |d: &Path| -> Vec<Value> {
            json(&d.join(case.name).join("report.json"))["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == "hat")
                .map(|s| s["artifacts"].clone())
                .collect()
        };
        assert_eq!(hats(&first), hats(&second), "{}", case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_in_shards_merged_scores_as_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    let oracle = server(Judge::Oracle).await;
    let whole = tmp.path().join("whole");
    eval(&oracle, &suite, &whole).run();
    let mut shards = Vec::new();
    for i in 1..=2 {
        let dir = tmp.path().join(format!("shard{i}"));
        eval(&oracle, &suite, &dir)
            .args(["--shard", &format!("{i}/2")])
            .stdout_has("merge every shard")
            .run();
        assert!(
            !dir.join("eval.json").exists(),
            "a shard is not scored alone"
        );
        shards.push(dir);
    }
    let merged = tmp.path().join("merged");
    // The merged batch's own gate: three cases should be (and are) blocked.
    Test::new()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .status(1)
        .run();
    Test::new()
        .arg("eval")
        .arg(&suite)
        .arg("--from")
        .arg(&merged)
        .run();
    assert_eq!(
        std::fs::read_to_string(merged.join("eval.json")).unwrap(),
        std::fs::read_to_string(whole.join("eval.json")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_samples_each_item_has_its_flip_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path());
    // A scripted judge that, of the three samples of each constraint judge, answers the
    // second one the other way: every hat-constraint item flips in one sample of three.
    let asked = std::sync::Mutex::new(BTreeMap::<String, usize>::new());
    let pass = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| {
        let format = &req.body["response_format"]["json_schema"];
        if format["name"] != "constraint_answer" {
            return pass.answer(req);
        }
        let ids = format["schema"]["properties"]["constraints"]["items"]["properties"]["id"]
            ["enum"]
            .clone();
        let key = format!(
            "{}{ids}",
            req.messages_text()
                .lines()
                .find(|l| l.contains("Eval case marker"))
                .unwrap_or("")
        );
        let n = {
            let mut asked = asked.lock().unwrap();
            let n = asked.entry(key).or_default();
            *n += 1;
            *n
        };
        let mut judge = FakeReviewer::new();
        for id in ids.as_array().unwrap() {
            judge = judge.verdict(id.as_str().unwrap(), if n == 2 { "fail" } else { "pass" });
        }
        judge.answer(req)
    })
    .await;
    let dir = tmp.path().join("eval");
    eval(&server, &suite, &dir)
        .args(["--samples", "3", "--jobs", "1"])
        .run();
    let e = json(&dir.join("eval.json"));
    assert_eq!(e["samples"], 3);
    for case in e["cases"].as_array().unwrap() {
        for item in case["items"].as_array().unwrap() {
            let expected = if item["kind"] == "hat-constraint" {
                0.333333
            } else {
                0.0
            };
            assert_eq!(item["flip_rate"].as_f64(), Some(expected), "{item}");
            assert_eq!(item["agreement"]["samples"], 3, "{item}");
        }
    }
    let kinds = e["scores"]["all"]["by_kind"].as_array().unwrap();
    let hat = kinds
        .iter()
        .find(|k| k["kind"] == "hat-constraint")
        .unwrap();
    assert_eq!(hat["metrics"]["mean_flip_rate"].as_f64(), Some(0.333333));
    // The modal verdict is the verdict: two samples of three passed.
    assert!(e["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["items"].as_array().unwrap())
        .filter(|i| i["kind"] == "hat-constraint")
        .all(|i| i["got"] == "met"));
}

/// A labels.toml that is a FIFO, a device or a link out of its case is refused at once
/// (exit 2, naming the file) by the one bounded reader, before any request.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labels_file_that_is_not_a_regular_file_is_refused_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Judge::Oracle).await;
    for (i, make) in ["fifo", "device", "outside"].into_iter().enumerate() {
        let suite = write_suite(&tmp.path().join(format!("s{i}")));
        let labels = suite.join("no-limits").join("labels.toml");
        std::fs::remove_file(&labels).unwrap();
        match make {
            "fifo" => {
                let c = std::ffi::CString::new(labels.to_str().unwrap()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }
            "device" => std::os::unix::fs::symlink("/dev/zero", &labels).unwrap(),
            _ => {
                let outside = tmp.path().join(format!("outside-{i}.toml"));
                std::fs::write(&outside, "gate = \"met\"\n").unwrap();
                std::os::unix::fs::symlink(&outside, &labels).unwrap();
            }
        }
        let started = std::time::Instant::now();
        let out = eval(&server, &suite, &tmp.path().join(format!("out{i}")))
            .status(2)
            .run();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{make}"
        );
        assert!(out.stderr.contains("labels.toml"), "{make}: {}", out.stderr);
    }
    assert_eq!(server.count(), 0);
}
