//! The whole deployment stage against a real model: llama.cpp's server with
//! SmolLM2-135M-Instruct, started by `scripts/local-model` (`scripts/test` does it and sets
//! HATRACK_LOCAL_MODEL_URL). A 135M model writes poor reviews, so this checks mechanics:
//! every step answered (schema-valid) or recorded as unparseable after bounded re-asks, all
//! four reports written, and the new transcript replaying to an identical report.json.
//! Skipped, with the reason printed, where the local model is not running — except under
//! CI=true, where a missing model is a failure.

mod support;

use serde_json::Value;
use support::Test;

fn local_model_url() -> Option<String> {
    match std::env::var("HATRACK_LOCAL_MODEL_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but HATRACK_LOCAL_MODEL_URL is not set: run the suite through scripts/test")
        }
        _ => {
            eprintln!("skipped: the local model is not running (start it with scripts/local-model start, or run scripts/test)");
            None
        }
    }
}

const MAX_REASKS: u32 = 1;

#[test]
fn the_deployment_stage_runs_on_the_local_model_and_its_transcript_replays_identically() {
    let Some(url) = local_model_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("live");
    let out = Test::new()
        .args([
            "run",
            "examples/orders-pipeline",
            "--model",
            "smollm2-135m",
            "--timeout",
            "900",
        ])
        .args([
            "--max-reasks",
            &MAX_REASKS.to_string(),
            "--base-url",
            &url,
            "--transcript",
        ])
        .arg(&run_dir)
        .any_status()
        .run();
    assert!(
        matches!(out.status, 0 | 1),
        "the run ended in error:\n{}",
        out.stderr
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let steps = report["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "hat/pipeline-engineer",
            "hat/sre",
            "judge/pipeline-engineer",
            "judge/sre",
            "review/reliability",
            "signal"
        ]
    );

    // Every step's last answer validates against the schema it was asked for, or the step is
    // unparseable after exactly 1 + MAX_REASKS attempts, or ended by the context window or
    // decided by checks.
    let exchanges: Vec<Value> = std::fs::read_to_string(run_dir.join("exchanges.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for step in steps {
        let id = step["id"].as_str().unwrap();
        let attempts: Vec<&Value> = exchanges.iter().filter(|e| e["step"] == id).collect();
        assert_eq!(
            attempts.len() as u64,
            step["attempts"].as_u64().unwrap(),
            "{id}: attempts on record"
        );
        match step["status"].as_str().unwrap() {
            "answered" => {
                let last = attempts.last().unwrap();
                let schema = &last["request"]["response_format"]["json_schema"]["schema"];
                let content = last["response"]["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap();
                let answer: Value = serde_json::from_str(
                    content
                        .trim()
                        .trim_start_matches("```json")
                        .trim_end_matches("```"),
                )
                .unwrap_or_else(|e| panic!("{id}: answered, but its content is not JSON: {e}"));
                let validator = jsonschema::validator_for(schema).unwrap();
                assert!(
                    validator.is_valid(&answer),
                    "{id}: answered, but the answer breaks its schema"
                );
            }
            "unparseable" => assert_eq!(
                attempts.len() as u32,
                1 + MAX_REASKS,
                "{id}: re-asks are bounded"
            ),
            // A request the 8k window cannot hold ends its step, never the run; no request
            // past the window is sent, so the attempts stay within the re-ask bound.
            "context-exceeded" => assert!(
                attempts.len() as u32 <= 1 + MAX_REASKS,
                "{id}: re-asks are bounded"
            ),
            // The shipped probes settled every requirement of the step: nothing was asked.
            "decided-by-checks" => assert!(attempts.is_empty(), "{id}: asked although decided"),
            other => panic!("{id}: unexpected status {other}"),
        }
    }
    for f in ["report.json", "report.md", "report.html", "junit.xml"] {
        assert!(run_dir.join(f).is_file(), "{f} not written");
    }

    // The new transcript replays offline to the same report.json, byte for byte.
    let replayed = dir.path().join("replayed");
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--out")
        .arg(&replayed)
        .status(out.status)
        .run();
    let a = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    let b = std::fs::read_to_string(replayed.join("report.json")).unwrap();
    assert!(
        a == b,
        "the replay's report.json differs from the live run's"
    );
}
