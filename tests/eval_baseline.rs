//! The recorded baseline (transcripts/eval-deployment-holdout): the local 135M-parameter
//! model's eval of the corpus's holdout split, with the stage's checks, recorded live by
//! `scripts/record-eval-baseline`. Offline it replays byte for byte, `eval --from` scores it
//! to the same eval.json, and the README's table shows its figures.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{copy_dir, repo_root, Test};

const BASELINES: [&str; 1] = ["transcripts/eval-deployment-holdout"];

/// Every file of an eval directory but the recorded exchanges, by path.
fn written(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_recorded_baselines_replay_offline_byte_for_byte() {
    for baseline in BASELINES {
        let committed = repo_root().join(baseline);
        assert!(committed.join("eval.json").is_file(), "{baseline} missing");
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("eval");
        copy_dir(&committed, &copy);
        // An unroutable provider: the replay must not need one.
        Test::new()
            .arg("replay")
            .arg(&copy)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .any_status()
            .run();
        let (before, after) = (written(&committed), written(&copy));
        assert_eq!(
            before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            after.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{baseline}: the files differ"
        );
        for ((path, a), (_, b)) in before.iter().zip(&after) {
            assert!(
                a == b,
                "{baseline}: {} differs after replay",
                path.display()
            );
        }

        let again = tmp.path().join("again");
        Test::new()
            .args(["eval", "--from"])
            .arg(&committed)
            .arg("--out")
            .arg(&again)
            .any_status()
            .run();
        assert_eq!(
            std::fs::read(again.join("eval.json")).unwrap(),
            std::fs::read(committed.join("eval.json")).unwrap(),
            "{baseline}: eval --from scores differently"
        );
    }
}

#[test]
fn the_baseline_is_the_local_models_with_checks_and_the_readme_shows_its_figures() {
    let e: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join(BASELINES[0]).join("eval.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(e["checks"]["cases_with_checks"], e["counts"]["cases"]);
    assert_eq!(e["models"], serde_json::json!(["smollm2-135m-instruct"]));
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let m = &e["scores"]["all"]["overall"];
    let row = format!(
        "| {} | {}/{} | {}/{} | {} |",
        m["items"],
        m["tpr"]["count"],
        m["tpr"]["of"],
        m["tnr"]["count"],
        m["tnr"]["of"],
        m["abstention"]["count"],
    );
    assert!(readme.contains(&row), "README lacks the baseline row {row}");
}
