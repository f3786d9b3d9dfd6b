//! Batches through the binary, against the fake OpenAI server scripted by `FakeReviewer` (a
//! stand-in for a model, not a model): many workspaces in one process under one `--jobs`
//! limit, a batch index over their run directories, the worst exit code, shards that any
//! machine picks alike, and `merge` writing what a single machine would have.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::Test;

/// Text that makes the fake reviewer fail the pipeline engineer's first constraint.
const FAIL_MARK: &str = "Retries are unbounded here.";

/// A workspace at `dir/name` whose every Reads item is bound to `notes.md`.
fn workspace(dir: &Path, name: &str, failing: bool) -> PathBuf {
    let ws = dir.join(name);
    std::fs::create_dir_all(&ws).unwrap();
    let extra = if failing { FAIL_MARK } else { "" };
    std::fs::write(
        ws.join("notes.md"),
        format!(
            "# {name} notes\n\nFreshness alerts page the on-call within 15 minutes.\n{extra}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    ws
}

/// Passes everything, except the pipeline engineer's first constraint for a workspace whose
/// notes carry [`FAIL_MARK`]; each answer after `latency`.
async fn server(latency: Duration) -> FakeOpenAi {
    let pass = FakeReviewer::new();
    let fail = FakeReviewer::new().verdict("pipeline-engineer/anti-pattern/1", "fail");
    FakeOpenAi::with_handler(move |req| {
        let reviewer = if req.messages_text().contains(FAIL_MARK) {
            &fail
        } else {
            &pass
        };
        reviewer.answer(req).delayed(latency)
    })
    .await
}

fn run(server: &FakeOpenAi) -> Test {
    Test::new()
        .arg("run")
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0"])
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn names(batch_dir: &Path) -> Vec<String> {
    json(&batch_dir.join("batch.json"))["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

/// The index files, with junit.xml's `time` attributes (its only timing fields) removed.
fn index_files(batch_dir: &Path) -> Vec<(String, String)> {
    let time = regex::Regex::new(r#" time="[^"]*""#).unwrap();
    ["batch.json", "batch.md", "batch.html", "junit.xml"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(batch_dir.join(f)).unwrap();
            (f.to_string(), time.replace_all(&text, "").into_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_every_workspace_and_exits_with_the_worst() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let good = workspace(&tmp.path().join("a"), "orders", false);
    let bad = workspace(&tmp.path().join("b"), "orders", true);
    let fine = workspace(tmp.path(), "billing", false);
    let batch = tmp.path().join("batch");
    let out = run(&server)
        .arg(&good)
        .arg(&bad)
        .arg(&fine)
        .arg("--transcript")
        .arg(&batch)
        .status(1)
        .stdout_has("2 of 3 workspace(s) met the completion signal; 1 did not")
        .run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    let index = json(&batch.join("batch.json"));
    assert_eq!(index["exit_code"], 1);
    assert_eq!(index["counts"]["workspaces"], 3);
    let names = names(&batch);
    // Sorted, and the two `orders` told apart by a suffix.
    assert_eq!(names[0], "billing");
    assert!(names[1].starts_with("orders-") && names[2].starts_with("orders-"));
    for name in &names {
        let report = json(&batch.join(name).join("report.json"));
        let entry = index["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name.as_str())
            .unwrap();
        assert_eq!(entry["exit_code"], report["outcome"]["exit_code"], "{name}");
        assert_eq!(
            entry["signal_met"], report["outcome"]["signal_met"],
            "{name}"
        );
    }
    // One suite per workspace; a case fails exactly where a member's gate lists a reason.
    let reasons: usize = names
        .iter()
        .map(|n| {
            json(&batch.join(n).join("report.json"))["outcome"]["reasons"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert!(reasons >= 1);
    let junit = std::fs::read_to_string(batch.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 3, "{junit}");
    assert_eq!(junit.matches("<failure").count(), reasons, "{junit}");
    let md = std::fs::read_to_string(batch.join("batch.md")).unwrap();
    assert!(
        md.contains("[billing](billing/report.md) | met | 0"),
        "{md}"
    );
    let html = std::fs::read_to_string(batch.join("batch.html")).unwrap();
    assert!(
        html.contains("<a href=\"billing/report.html\">billing</a>"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_that_cannot_run_is_reported_and_the_rest_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let good = workspace(tmp.path(), "good", false);
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let batch = tmp.path().join("batch");
    run(&server)
        .arg(&good)
        .arg(&empty)
        .arg("--transcript")
        .arg(&batch)
        .status(2)
        .stdout_has("1 of 2 workspace(s) met the completion signal; 1 ended without a verdict")
        .run();
    let index = json(&batch.join("batch.json"));
    let empty_entry = &index["workspaces"][0];
    assert_eq!(empty_entry["name"], "empty");
    assert_eq!(empty_entry["exit_code"], 2);
    assert!(empty_entry["error"].as_str().unwrap().contains("empty"));
    assert_eq!(index["workspaces"][1]["signal_met"], true);
    let junit = std::fs::read_to_string(batch.join("junit.xml")).unwrap();
    assert!(junit.contains("<error"), "{junit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jobs_limit_holds_across_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::from_millis(40)).await;
    let mut cmd = run(&server).args(["--jobs", "2", "--transcript"]);
    cmd = cmd.arg(tmp.path().join("batch"));
    for i in 0..4 {
        cmd = cmd.arg(workspace(tmp.path(), &format!("ws{i}"), false));
    }
    cmd.status(0).run();
    assert_eq!(server.count(), 4 * 6);
    assert!(server.max_in_flight() <= 2, "{}", server.max_in_flight());
    assert_eq!(
        server.max_in_flight(),
        2,
        "the batch ran its members together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_merged_equal_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let list: Vec<PathBuf> = (0..9)
        .map(|i| {
            workspace(
                &tmp.path().join("repos"),
                &format!("pipeline-{i}"),
                i % 4 == 0,
            )
        })
        .collect();
    let whole = tmp.path().join("whole");
    let mut cmd = run(&server).arg("--transcript").arg(&whole).any_status();
    for ws in &list {
        cmd = cmd.arg(ws);
    }
    cmd.run();

    // Each shard is given the list in another order: the split must not depend on it.
    let mut shard_dirs = Vec::new();
    for i in 1..=3usize {
        let dir = tmp.path().join(format!("shard-{i}"));
        let mut order = list.clone();
        order.rotate_left(i * 2);
        let mut cmd = run(&server)
            .args(["--shard", &format!("{i}/3"), "--transcript"])
            .arg(&dir)
            .any_status();
        for ws in &order {
            cmd = cmd.arg(ws);
        }
        cmd.run();
        shard_dirs.push(dir);
    }
    let mut in_shards: Vec<String> = shard_dirs.iter().flat_map(|d| names(d)).collect();
    in_shards.sort();
    assert_eq!(in_shards, names(&whole), "the shards partition the batch");

    let merged = tmp.path().join("merged");
    let out = Test::new()
        .arg("merge")
        .args(&shard_dirs)
        .arg("--out")
        .arg(&merged)
        .status(1)
        .stdout_has("met the completion signal")
        .run();
    assert!(!out.stderr.contains("panicked"));
    assert_eq!(index_files(&merged), index_files(&whole));
    for name in names(&whole) {
        assert!(
            merged.join(&name).join("exchanges.jsonl").is_file(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_lists_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    workspace(&tmp.path().join("repos"), "one", false);
    workspace(&tmp.path().join("repos"), "two", false);
    let manifest = tmp.path().join("workspaces.txt");
    std::fs::write(
        &manifest,
        "# the team's pipelines\nrepos/one\n\n  repos/two  \n",
    )
    .unwrap();
    let batch = tmp.path().join("batch");
    run(&server)
        .arg("--manifest")
        .arg(&manifest)
        .arg("--transcript")
        .arg(&batch)
        .status(0)
        .run();
    assert_eq!(names(&batch), ["one", "two"]);
}

#[test]
fn single_run_flags_and_bad_lists_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let a = workspace(tmp.path(), "a", false);
    let b = workspace(tmp.path(), "b", false);
    Test::new()
        .arg("run")
        .arg(&a)
        .arg(&b)
        .arg("--resume")
        .arg(tmp.path().join("x"))
        .status(2)
        .stderr_has("--resume applies to one run, not a batch")
        .run();
    Test::new()
        .arg("run")
        .arg(&a)
        .arg(&a)
        .status(2)
        .stderr_has("listed twice")
        .run();
    Test::new()
        .args(["run", "--shard", "4/3"])
        .arg(&a)
        .status(2)
        .stderr_has("expected I/N")
        .run();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_refuses_what_a_shard_never_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let shard = tmp.path().join("shard");
    run(&server)
        .arg(workspace(tmp.path(), "a", false))
        .arg(workspace(tmp.path(), "b", false))
        .arg("--transcript")
        .arg(&shard)
        .status(0)
        .run();
    // The same shard twice: each member would come in twice.
    Test::new()
        .arg("merge")
        .arg(&shard)
        .arg(&shard)
        .arg("--out")
        .arg(tmp.path().join("m1"))
        .status(2)
        .stderr_has("shard 1/1 is given twice")
        .run();
    // A symlink planted in a member's run directory is not followed.
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    std::os::unix::fs::symlink(&secret, shard.join("a").join("link.txt")).unwrap();
    let out = tmp.path().join("m2");
    Test::new()
        .arg("merge")
        .arg(&shard)
        .arg("--out")
        .arg(&out)
        .status(2)
        .stderr_has("not a regular file or directory")
        .run();
    assert!(!out.join("a").join("link.txt").exists());
    // An index naming a path outside the shard.
    let hostile = tmp.path().join("hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::write(
        hostile.join("batch.json"),
        r#"{"schema_version":1,"hatrack_version":"x","exit_code":0,"summary":"","counts":{"workspaces":1,"signal_met":1,"signal_not_met":0,"failed":0},"workspaces":[{"name":"../shard","exit_code":0,"signal_met":true,"summary":"","total_tokens":0}]}"#,
    )
    .unwrap();
    let out = Test::new()
        .arg("merge")
        .arg(&hostile)
        .arg("--out")
        .arg(tmp.path().join("m3"))
        .status(2)
        .stderr_has("not a member name")
        .run();
    assert!(!out.stderr.contains("panicked"));
}

/// The index takes a member's exit code from member.json and its result from report.json: a
/// shard edited so that they disagree (or so that a report contradicts itself) could open
/// the batch's gate, so `merge` refuses it and says which member and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_refuses_a_member_whose_files_disagree() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let shard = tmp.path().join("shard");
    run(&server)
        .arg(workspace(tmp.path(), "a", true))
        .arg(workspace(tmp.path(), "b", false))
        .arg("--transcript")
        .arg(&shard)
        .status(1)
        .run();
    let member = shard.join("a").join("member.json");
    let report = shard.join("a").join("report.json");
    let (member_text, report_text) = (
        std::fs::read_to_string(&member).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    );
    let merge = |out: &str| {
        Test::new()
            .arg("merge")
            .arg(&shard)
            .arg("--out")
            .arg(tmp.path().join(out))
    };
    merge("untouched").status(1).run();

    // member.json says exit 0 for a run whose report did not meet the signal.
    std::fs::write(
        &member,
        member_text.replace("\"exit_code\": 1", "\"exit_code\": 0"),
    )
    .unwrap();
    merge("m1")
        .status(2)
        .stderr_has("member.json says exit 0 but report.json says exit 1")
        .stderr_has("edited")
        .run();
    std::fs::write(&member, &member_text).unwrap();

    // report.json claims the signal met, and exit 0, while its reasons still block it.
    let mut edited = json(&report);
    edited["outcome"]["signal_met"] = Value::Bool(true);
    edited["outcome"]["exit_code"] = Value::from(0);
    std::fs::write(&report, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    std::fs::write(
        &member,
        member_text.replace("\"exit_code\": 1", "\"exit_code\": 0"),
    )
    .unwrap();
    let out = merge("m2")
        .status(2)
        .stderr_has("signal is met with 1 blocking reason")
        .run();
    assert!(!out.stderr.contains("panicked"));
    assert!(!tmp.path().join("m2").join("batch.json").exists());

    // Put back, the shard merges as before.
    std::fs::write(&member, &member_text).unwrap();
    std::fs::write(&report, &report_text).unwrap();
    merge("restored").status(1).run();
}

/// A member that stops on an error is reported with that error in member.json and the index:
/// scrubbed with the member's own `[secrets]` patterns, which only its hatrack.toml names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_error_is_scrubbed_with_the_members_own_patterns() {
    let tmp = tempfile::tempdir().unwrap();
    let leaky = workspace(tmp.path(), "leaky", false);
    let config = std::fs::read_to_string(leaky.join("hatrack.toml")).unwrap();
    std::fs::write(
        leaky.join("hatrack.toml"),
        format!("{config}\n[secrets]\nscrub_patterns = [\"ACME-[0-9]{{6}}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        leaky.join("notes.md"),
        "# leaky notes\n\nTicket ACME-123456.\n",
    )
    .unwrap();
    // The provider refuses the leaky workspace's requests, quoting its ticket id back.
    let pass = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| {
        if req.messages_text().contains("leaky notes") {
            support::fake_openai::Reply::json(
                400,
                serde_json::json!({"error": {"message": "cannot review ticket ACME-123456", "type": "invalid_request_error"}}),
            )
        } else {
            pass.answer(req)
        }
    })
    .await;
    let batch = tmp.path().join("batch");
    run(&server)
        .arg(&leaky)
        .arg(workspace(tmp.path(), "fine", false))
        .arg("--transcript")
        .arg(&batch)
        .status(3)
        .run();
    let index = json(&batch.join("batch.json"));
    let error = index["workspaces"][1]["error"].as_str().unwrap();
    assert!(error.contains("cannot review ticket"), "{error}");
    for entry in walkdir::WalkDir::new(&batch) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        assert!(
            !text.contains("ACME-123456"),
            "{} holds the ticket id",
            entry.path().display()
        );
    }
}

/// On GitHub Actions a batch (and a merge) appends batch.md to the step summary; the
/// annotations stay with single runs (GitHub shows ten per step: a batch's first few
/// workspaces only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_actions_the_batch_table_goes_to_the_step_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let summary = tmp.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let batch = tmp.path().join("batch");
    let out = run(&server)
        .arg(workspace(tmp.path(), "a", true))
        .arg(workspace(tmp.path(), "b", false))
        .arg("--transcript")
        .arg(&batch)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .status(1)
        .run();
    assert!(!out.stdout.contains("::error"), "{}", out.stdout);
    let table = std::fs::read_to_string(batch.join("batch.md")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        format!("earlier step\n{table}")
    );

    // The same for a merge of shards, with --github.
    std::fs::write(&summary, "").unwrap();
    let merged = tmp.path().join("merged");
    Test::new()
        .arg("merge")
        .arg(&batch)
        .arg("--out")
        .arg(&merged)
        .arg("--github")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .status(1)
        .run();
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        std::fs::read_to_string(merged.join("batch.md")).unwrap()
    );
    // Without either, nothing is appended.
    std::fs::write(&summary, "").unwrap();
    Test::new()
        .arg("merge")
        .arg(&batch)
        .arg("--out")
        .arg(tmp.path().join("quiet"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .status(1)
        .run();
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), "");
}

/// Runs `list` as shard `i/n` into `dir` (every member passes).
fn shard_run(server: &FakeOpenAi, list: &[PathBuf], i: usize, n: usize, dir: &Path) {
    let mut cmd = run(server)
        .args(["--shard", &format!("{i}/{n}"), "--transcript"])
        .arg(dir)
        .status(0);
    for ws in list {
        cmd = cmd.arg(ws);
    }
    cmd.run();
}

/// Each batch.json records its shard and the whole member list; a merge missing a shard is
/// refused naming it and the workspaces it holds, and `--partial` merges what is there with
/// a gate that cannot be met — even when every merged workspace met its signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_missing_a_shard_is_refused_and_a_partial_one_cannot_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let list: Vec<PathBuf> = (0..6)
        .map(|i| workspace(&tmp.path().join("repos"), &format!("p{i}"), false))
        .collect();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let dir = tmp.path().join(format!("shard-{i}"));
            shard_run(&server, &list, i, 3, &dir);
            dir
        })
        .collect();
    let all: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    for (i, dir) in dirs.iter().enumerate() {
        let scope = &json(&dir.join("batch.json"))["scope"];
        assert_eq!(scope["shard"], format!("{}/3", i + 1));
        assert_eq!(scope["members"], serde_json::json!(all), "the whole list");
        assert_eq!(scope["members_digest"].as_str().unwrap().len(), 64);
    }
    let in_third = names(&dirs[2]);

    let merge = |given: &[PathBuf], out: &str| {
        Test::new()
            .arg("merge")
            .args(given)
            .arg("--out")
            .arg(tmp.path().join(out))
    };
    let out = merge(&dirs[..2], "refused")
        .status(2)
        .stderr_has("incomplete merge: shard(s) 3/3 missing")
        .stderr_has("--partial")
        .run();
    for name in &in_third {
        assert!(out.stderr.contains(name.as_str()), "{}", out.stderr);
    }
    assert!(!tmp.path().join("refused").join("batch.json").exists());

    merge(&dirs[..2], "partial")
        .arg("--partial")
        .status(1)
        .stdout_has("shard(s) 3/3 not merged")
        .run();
    let partial = tmp.path().join("partial");
    let index = json(&partial.join("batch.json"));
    assert_eq!(index["exit_code"], 1);
    assert_eq!(index["counts"]["signal_not_met"], 0, "every merged run met");
    assert_eq!(index["counts"]["missing"], in_third.len());
    assert_eq!(
        index["scope"]["missing"]["shards"],
        serde_json::json!(["3/3"])
    );
    assert_eq!(
        index["scope"]["missing"]["workspaces"],
        serde_json::json!(in_third)
    );
    let md = std::fs::read_to_string(partial.join("batch.md")).unwrap();
    assert!(
        md.contains("**Gate not met: shards missing.** shard(s) 3/3 were not merged"),
        "{md}"
    );
    let html = std::fs::read_to_string(partial.join("batch.html")).unwrap();
    assert!(html.contains("Gate not met: shards missing."), "{html}");
    let junit = std::fs::read_to_string(partial.join("junit.xml")).unwrap();
    assert!(
        junit.contains("shard 3/3") && junit.contains("<failure"),
        "{junit}"
    );

    // The partial merge and the late shard make the whole batch, whose gate can be met.
    let whole = tmp.path().join("whole");
    let mut cmd = run(&server).arg("--transcript").arg(&whole).status(0);
    for ws in &list {
        cmd = cmd.arg(ws);
    }
    cmd.run();
    merge(&[partial.clone(), dirs[2].clone()], "completed")
        .status(0)
        .run();
    assert_eq!(
        index_files(&tmp.path().join("completed")),
        index_files(&whole)
    );
    // Merging an already merged (partial) batch again with the shards it holds is refused.
    merge(&[partial, dirs[0].clone()], "twice")
        .status(2)
        .stderr_has("shard 1/3 is given twice")
        .run();
}

/// Shards run with other workspace lists are of another batch: refused, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_different_batches_are_not_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let list: Vec<PathBuf> = (0..4)
        .map(|i| workspace(&tmp.path().join("repos"), &format!("q{i}"), false))
        .collect();
    let mut other = list.clone();
    other.push(workspace(&tmp.path().join("repos"), "extra", false));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    shard_run(&server, &list, 1, 2, &a);
    shard_run(&server, &other, 2, 2, &b);
    let out = Test::new()
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .arg("--partial")
        .arg("--out")
        .arg(tmp.path().join("m"))
        .status(2)
        .stderr_has("shards of different batches (4 and 5 workspace(s)")
        .run();
    assert!(
        out.stderr.contains(&a.display().to_string()),
        "{}",
        out.stderr
    );
    // Shard counts must agree too.
    let c = tmp.path().join("c");
    shard_run(&server, &list, 2, 3, &c);
    Test::new()
        .arg("merge")
        .arg(&a)
        .arg(&c)
        .arg("--out")
        .arg(tmp.path().join("m2"))
        .status(2)
        .stderr_has("splits the batch into 2 shard(s) but")
        .run();
}

/// A replayed shard keeps what its index records of the batch (its shard, the whole member
/// list), so it still merges: the replay rewrites the index byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_shard_keeps_its_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let list: Vec<PathBuf> = (0..4)
        .map(|i| workspace(&tmp.path().join("repos"), &format!("r{i}"), false))
        .collect();
    let shard = tmp.path().join("shard");
    shard_run(&server, &list, 2, 2, &shard);
    let before = index_files(&shard);
    let scope = json(&shard.join("batch.json"))["scope"].clone();
    assert_eq!(scope["shard"], "2/2");
    assert_eq!(scope["members"].as_array().unwrap().len(), 4);
    Test::new().arg("replay").arg(&shard).status(0).run();
    assert_eq!(index_files(&shard), before);
}

/// Workspaces named like the batch's own files (`batch.json`, `junit.xml`, `batch.md`,
/// `batch.html`) or `workspace`: each gets a run directory of another name before any
/// request, and the index is written (a member must never be paid for and then lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_named_like_the_batch_files_run_under_other_names() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let reserved = [
        "batch.json",
        "junit.xml",
        "batch.md",
        "batch.html",
        "Workspace",
    ];
    let repos = tmp.path().join("repos");
    let listed: Vec<PathBuf> = reserved
        .iter()
        .map(|n| workspace(&repos, n, false))
        .collect();
    let batch = tmp.path().join("batch");
    let out = run(&server)
        .args(&listed)
        .arg("--transcript")
        .arg(&batch)
        .any_status()
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    let members = names(&batch);
    assert_eq!(members.len(), reserved.len(), "{members:?}");
    for name in &members {
        assert!(
            !reserved.iter().any(|r| r.eq_ignore_ascii_case(name)),
            "{name} is a name the batch uses for itself"
        );
        assert!(batch.join(name).join("exchanges.jsonl").is_file(), "{name}");
    }
    for file in ["batch.json", "junit.xml", "batch.md", "batch.html"] {
        assert!(batch.join(file).is_file(), "{file} is the index");
    }
    Test::new()
        .args(["replay", "--quiet"])
        .arg(&batch)
        .status(0)
        .run();
}

/// `merge --out` an existing batch (its index would be replaced, its old members left
/// unindexed) or a directory inside a shard (a batch nested in another) is refused, and
/// nothing is written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_refuses_an_existing_batch_or_a_shard_as_out() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let shard = tmp.path().join("shard");
    let other = tmp.path().join("other");
    run(&server)
        .arg(workspace(tmp.path(), "a", false))
        .arg(workspace(tmp.path(), "b", false))
        .arg("--transcript")
        .arg(&shard)
        .status(0)
        .run();
    run(&server)
        .arg(workspace(tmp.path(), "c", false))
        .arg(workspace(tmp.path(), "d", false))
        .arg("--transcript")
        .arg(&other)
        .status(0)
        .run();
    let before = std::fs::read(other.join("batch.json")).unwrap();
    Test::new()
        .arg("merge")
        .arg(&shard)
        .arg("--out")
        .arg(&other)
        .status(2)
        .stderr_has("is not empty")
        .stderr_has("batch.json")
        .run();
    assert_eq!(std::fs::read(other.join("batch.json")).unwrap(), before);
    assert!(!other.join("a").exists(), "nothing was copied into it");
    for inside in [shard.join("merged"), shard.join("a/merged")] {
        Test::new()
            .arg("merge")
            .arg(&shard)
            .arg("--out")
            .arg(&inside)
            .status(2)
            .stderr_has("is inside the shard")
            .run();
        assert!(!inside.exists());
    }
    // A new directory (or an empty one) is what merge writes.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    Test::new()
        .arg("merge")
        .arg(&shard)
        .arg("--out")
        .arg(&fresh)
        .status(0)
        .run();
    assert_eq!(names(&fresh), ["a", "b"]);
}

/// `merge --verify` replays every member from its own transcript and refuses one whose
/// report it does not reproduce (edited where the other checks cannot see); an untouched
/// shard merges as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_verify_refuses_a_report_its_transcript_does_not_reproduce() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(Duration::ZERO).await;
    let shard = tmp.path().join("shard");
    run(&server)
        .arg(workspace(tmp.path(), "a", false))
        .arg(workspace(tmp.path(), "b", false))
        .arg("--transcript")
        .arg(&shard)
        .status(0)
        .run();
    let calls = server.count();
    let merge = |out: &str, verify: bool| {
        let t = Test::new()
            .arg("merge")
            .arg(&shard)
            .arg("--out")
            .arg(tmp.path().join(out));
        if verify {
            t.arg("--verify")
        } else {
            t
        }
    };
    merge("verified", true).status(0).run();
    assert_eq!(names(&tmp.path().join("verified")), ["a", "b"]);
    // A finding reworded in b's report: the gate is the same, so only a replay tells.
    let report = shard.join("b/report.json");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("checked by the fake judge"));
    std::fs::write(
        &report,
        text.replace("checked by the fake judge", "checked by a careful human"),
    )
    .unwrap();
    merge("unverified", false).status(0).run();
    merge("refused", true)
        .status(2)
        .stderr_has("member b: report.json is not what its transcript reproduces")
        .run();
    assert_eq!(server.count(), calls, "verifying calls no model");
}
