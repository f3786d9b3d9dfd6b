//! The deployment stage is compiled into the binary: `list`, `check`, `render` and `run`
//! work from any directory with no `--stage`, a run records `embedded:deployment` and
//! replays from it, and `--stage` / `[stage] path` still choose a stage on disk.

mod support;

use std::path::Path;

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Test};

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn list_check_and_render_work_from_an_empty_directory() {
    let empty = tempfile::tempdir().unwrap();
    Test::new()
        .current_dir(empty.path())
        .arg("list")
        .stdout_has("Stage deployment")
        .stdout_has("definition: embedded:deployment")
        .stdout_has("pipeline-engineer/anti-pattern/1")
        .run();
    Test::new()
        .current_dir(empty.path())
        .arg("check")
        .stdout_has("checked the stages built into hatrack: 0 studios, 1 stage, 2 hats")
        .run();
    Test::new()
        .current_dir(empty.path())
        .args(["check", "embedded:deployment"])
        .stdout_has("0 errors, 0 warnings")
        .run();
    // The same definition digest as the files on disk: the embedded copy is those bytes.
    let digest = |args: &[&str]| -> String {
        let out = Test::new()
            .args(["list", "--format", "json"])
            .args(args)
            .run();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["stage"]["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(digest(&[]), digest(&["--stage", "hats/deployment"]));
    Test::new()
        .current_dir(empty.path())
        .args(["render", "pipeline-engineer"])
        .arg(repo_root().join("examples/orders-pipeline"))
        .stdout_has("# Your role: Pipeline Engineer")
        .run();
    Test::new()
        .current_dir(empty.path())
        .args(["list", "--stage", "embedded:nothing"])
        .status(2)
        .stderr_has("the embedded stages are: deployment")
        .run();
}

#[test]
fn list_honours_the_workspace_stage_path() {
    let ws = tempfile::tempdir().unwrap();
    let stage = ws.path().join("stages/deploy-ours");
    support::copy_dir(&repo_root().join("hats/deployment"), &stage);
    let file = stage.join("STAGE.md");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Deploy pipelines to production", "Our own deployment stage");
    std::fs::write(&file, text).unwrap();
    std::fs::write(
        ws.path().join("hatrack.toml"),
        "[stage]\npath = \"stages/deploy-ours\"\n",
    )
    .unwrap();
    Test::new()
        .current_dir(ws.path())
        .arg("list")
        .stdout_has("Our own deployment stage")
        .run();
    Test::new()
        .args(["list", "--workspace"])
        .arg(ws.path())
        .stdout_has("Our own deployment stage")
        .run();
    // --stage still wins over the file.
    Test::new()
        .current_dir(ws.path())
        .args(["list", "--stage", "embedded:deployment"])
        .stdout_lacks("Our own deployment stage")
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_the_embedded_stage_records_it_and_replays_from_anywhere() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let run_dir = elsewhere.path().join("run");
    Test::new()
        .current_dir(elsewhere.path())
        .arg("run")
        .arg(repo_root().join("examples/orders-pipeline"))
        .args(["--model", "fake-model", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(&run_dir)
        .status(0)
        .run();
    server.stop();
    let record = json(&run_dir.join("run.json"));
    assert_eq!(record["stage"]["path"], "embedded:deployment");
    let report = json(&run_dir.join("report.json"));
    let sources: Vec<&str> = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"deployment/hats/pipeline-engineer.md:14"),
        "{sources:?}"
    );
    let recorded = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    let other = tempfile::tempdir().unwrap();
    Test::new()
        .current_dir(other.path())
        .arg("replay")
        .arg(&run_dir)
        .status(0)
        .run();
    assert_eq!(
        std::fs::read_to_string(run_dir.join("report.json")).unwrap(),
        recorded
    );
    // The embedded stage sends byte-identical requests to the same stage on disk, so the
    // run replays against `--stage hats/deployment` too.
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .args(["--stage", "hats/deployment"])
        .status(0)
        .run();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_a_stage_on_disk_records_its_relative_path() {
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let stage = dir.path().join("my-stage/deployment");
    support::copy_dir(&repo_root().join("hats/deployment"), &stage);
    Test::new()
        .args(["run", "examples/orders-pipeline", "--stage"])
        .arg(&stage)
        .args(["--model", "fake-model", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(&run_dir)
        .status(0)
        .run();
    server.stop();
    let record = json(&run_dir.join("run.json"));
    assert_eq!(record["stage"]["path"], "../my-stage/deployment");
    // Edit the stage on disk: the replay reads it (not the embedded copy) and misses.
    let sre = stage.join("hats/sre.md");
    let text = std::fs::read_to_string(&sre).unwrap();
    std::fs::write(&sre, text.replace("runbooks", "run books")).unwrap();
    Test::new().arg("replay").arg(&run_dir).status(4).run();
}
