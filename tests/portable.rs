//! Portable runs: a run directory carries a content-addressed snapshot of the stage, the
//! prompts, the bound inputs and the agents' tool results, so `hatrack replay DIR` works
//! with the workspace and the stage gone — and a hostile snapshot is refused, never trusted.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_openai::{chat_body, FakeOpenAi, Reply, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Test};

const NOTES_LINE: &str = "Freshness alerts page the data on-call within 15 minutes.";
const DEEP_LINE: &str = "The rollback plan restores the previous DAG version within one hour.";
const PATTERN_SECRET: &str = "sk-live-4f7a9c2e";
const KEY_SECRET: &str = "key-value-90210-portable";

/// A workspace binding `notes.md` to every Reads item, with one unbound file the agent
/// reads through its tools; `extra_toml` is appended to hatrack.toml.
fn workspace(dir: &Path, notes: &str, extra_toml: &str) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("docs")).unwrap();
    std::fs::write(ws.join("notes.md"), format!("# Notes\n\n{notes}\n")).unwrap();
    std::fs::write(
        ws.join("docs/rollback.md"),
        format!("# Rollback\n{DEEP_LINE}\n"),
    )
    .unwrap();
    let mut toml = support::inputs_bound_to("notes.md");
    toml.push_str(extra_toml);
    std::fs::write(ws.join("hatrack.toml"), toml).unwrap();
    ws
}

/// The shipped stage, copied so that deleting it means something.
fn stage(dir: &Path) -> PathBuf {
    let to = dir.join("stages/deployment");
    copy_tree(&repo_root().join("hats/deployment"), &to);
    to
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).into_iter().flatten() {
        let rel = entry.path().strip_prefix(from).unwrap();
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir` (relative name → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn schema_name(req: &SeenRequest) -> String {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn tool_calls(calls: &[(&str, Value)]) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    let mut body = chat_body("", "tool_calls", 20, 10);
    body["choices"][0]["message"] =
        json!({"role": "assistant", "content": null, "tool_calls": calls});
    Reply::json(200, body)
}

/// Hats list, read a bound file and read an unbound one over three turns, then answer;
/// every other step answers at once. `tools: false`: every step answers at once.
async fn server(tools: bool) -> FakeOpenAi {
    let reviewer = FakeReviewer::new();
    FakeOpenAi::with_handler(move |req| {
        let turns = if tools && schema_name(req) == "hat_answer" {
            vec![
                vec![("list_files", json!({"path": ".", "depth": 2}))],
                vec![(
                    "read_file",
                    json!({"path": "notes.md", "start_line": 1, "max_lines": 50}),
                )],
                vec![(
                    "read_file",
                    json!({"path": "docs/rollback.md", "start_line": 1, "max_lines": 50}),
                )],
            ]
        } else {
            vec![]
        };
        let done = req.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant" && m.get("tool_calls").is_some())
            .count();
        match turns.get(done) {
            Some(calls) => tool_calls(calls),
            None => reviewer.answer(req),
        }
    })
    .await
}

fn record(server: &FakeOpenAi, ws: &Path, stage: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .arg("--stage")
        .arg(stage)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

fn replay(run_dir: &Path) -> Test {
    Test::new()
        .arg("replay")
        .arg(run_dir)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
}

/// Records a run in a temporary directory, copies the run directory to another one and
/// deletes the workspace and the stage. Returns (the original tempdir, the copy's tempdir,
/// the copy).
async fn recorded_copy(tools: bool) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), NOTES_LINE, "");
    let stage = stage(dir.path());
    let run_dir = dir.path().join("runs/one");
    let server = server(tools).await;
    record(&server, &ws, &stage, &run_dir).status(0).run();
    assert!(run_dir.join("snapshot/manifest.json").is_file());
    let other = tempfile::tempdir().unwrap();
    let copy = other.path().join("runs/one");
    copy_tree(&run_dir, &copy);
    std::fs::remove_dir_all(&ws).unwrap();
    std::fs::remove_dir_all(dir.path().join("stages")).unwrap();
    (dir, other, copy)
}

fn replays_unchanged(copy: &Path, original_report: &[u8]) {
    let before = files(copy);
    let out = replay(copy).status(0).run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(files(copy), before, "the replay changed the run directory");
    assert_eq!(
        std::fs::read(copy.join("report.json")).unwrap(),
        original_report
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_run_replays_without_its_workspace_and_stage() {
    let (dir, _other, copy) = recorded_copy(false).await;
    let original = std::fs::read(dir.path().join("runs/one/report.json")).unwrap();
    replays_unchanged(&copy, &original);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(copy.join("snapshot/manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = manifest["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for wanted in [
        "stage/deployment/STAGE.md",
        "stage/deployment/hats/sre.md",
        "stage/deployment/review-agents/reliability.md",
        "prompts/hat.j2",
        "workspace/hatrack.toml",
        "workspace/notes.md",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(
        !names.contains(&"workspace/docs/rollback.md"),
        "only bound inputs are copied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_run_replays_its_tool_calls_from_the_snapshot() {
    let (dir, _other, copy) = recorded_copy(true).await;
    let original = std::fs::read(dir.path().join("runs/one/report.json")).unwrap();
    let manifest = std::fs::read_to_string(copy.join("snapshot/manifest.json")).unwrap();
    assert!(manifest.contains("\"tool\": \"list_files\""), "{manifest}");
    replays_unchanged(&copy, &original);

    // Without the recorded results, a tool call cannot be answered: an honest miss.
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    m["tools"] = json!([]);
    std::fs::write(
        copy.join("snapshot/manifest.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    let out = replay(&copy).status(4).run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_inputs_never_reach_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let notes = format!("{NOTES_LINE}\ntoken: {PATTERN_SECRET}\nkey: {KEY_SECRET}");
    let extra = "[secrets]\nscrub_patterns = [\"sk-live-[0-9a-f]+\"]\nredact_inputs = true\n";
    let ws = workspace(dir.path(), &notes, extra);
    // A bound file named after the secret: the snapshot's names are scrubbed too.
    let toml = std::fs::read_to_string(ws.join("hatrack.toml"))
        .unwrap()
        .replace(
            "\"validation report\" = \"notes.md\"",
            "\"validation report\" = [\"notes.md\", \"docs/sk-*.md\"]",
        );
    std::fs::write(ws.join("hatrack.toml"), toml).unwrap();
    std::fs::write(ws.join(format!("docs/{PATTERN_SECRET}.md")), "named\n").unwrap();
    let stage = stage(dir.path());
    let run_dir = dir.path().join("run");
    let server = server(false).await;
    record(&server, &ws, &stage, &run_dir)
        .env("OPENAI_API_KEY", KEY_SECRET)
        .status(0)
        .run();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("snapshot/manifest.json")).unwrap())
            .unwrap();
    assert!(
        manifest["files"].as_object().unwrap().len() > 5,
        "{manifest}"
    );
    assert!(
        manifest["pack"].as_object().unwrap().len() > 5,
        "{manifest}"
    );
    for (name, bytes) in files(&run_dir) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in [PATTERN_SECRET, KEY_SECRET] {
            assert!(!name.contains(secret), "a file is named after {secret}");
            assert!(!text.contains(secret), "{name} holds {secret}");
        }
    }
    let manifest = std::fs::read_to_string(run_dir.join("snapshot/manifest.json")).unwrap();
    assert!(manifest.contains("workspace/notes.md"), "{manifest}");
}

/// The snapshot is written while the run waits on the model, not at its end: a run killed
/// part-way (a cancelled CI job, a crash) already carries what a replay elsewhere needs.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_while_it_waits_on_the_model_already_carries_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), NOTES_LINE, "");
    let stage = stage(dir.path());
    let run_dir = dir.path().join("run");
    let silent = FakeOpenAi::scripted(vec![Reply::Hang(Duration::from_secs(60))]).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .arg("run")
        .arg(&ws)
        .arg("--stage")
        .arg(&stage)
        .args(["--model", "fake-model", "--base-url"])
        .arg(silent.url())
        .args([
            "--quiet",
            "--timeout",
            "60",
            "--max-retries",
            "0",
            "--transcript",
        ])
        .arg(&run_dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .spawn()
        .unwrap();
    let manifest = run_dir.join("snapshot/manifest.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(manifest.is_file() && silent.count() == 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let still_waiting = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        still_waiting,
        "the run ended without an answer from the model"
    );
    assert_eq!(silent.count(), 1, "the run is waiting on its first request");
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    for wanted in ["stage/deployment/STAGE.md", "workspace/notes.md"] {
        assert!(m["files"].get(wanted).is_some(), "{wanted} missing: {m}");
    }
    assert!(run_dir.join("snapshot/objects.pack").is_file());
}

/// Records a run, removes its workspace and stage, and returns the run directory.
async fn orphaned_run(dir: &Path) -> PathBuf {
    let ws = workspace(dir, NOTES_LINE, "");
    let stage = stage(dir);
    let run_dir = dir.join("run");
    let server = server(false).await;
    record(&server, &ws, &stage, &run_dir).status(0).run();
    std::fs::remove_dir_all(&ws).unwrap();
    std::fs::remove_dir_all(dir.join("stages")).unwrap();
    run_dir
}

fn edit_manifest(run_dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = run_dir.join("snapshot/manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

fn first_entry(m: &mut Value) -> (String, Value) {
    let files = m["files"].as_object_mut().unwrap();
    let key = files.keys().find(|k| k.starts_with("workspace/")).cloned();
    let key = key.unwrap();
    let entry = files.shift_remove(&key).unwrap();
    (key, entry)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_snapshot_is_refused_with_a_clear_error() {
    type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "dot-dot path",
            Box::new(|r| {
                edit_manifest(r, |m| {
                    let (_, e) = first_entry(m);
                    m["files"]["workspace/../../escaped.txt"] = e;
                })
            }),
            "not a relative path of plain names",
        ),
        (
            "absolute path",
            Box::new(|r| {
                edit_manifest(r, |m| {
                    let (_, e) = first_entry(m);
                    m["files"]["/tmp/hatrack-escaped.txt"] = e;
                })
            }),
            "not a relative path of plain names",
        ),
        (
            "hash that is a path",
            Box::new(|r| {
                edit_manifest(r, |m| {
                    let (k, mut e) = first_entry(m);
                    e["sha256"] = json!("../../run.json");
                    m["files"][k] = e;
                })
            }),
            "is not 64 lowercase hex digits",
        ),
        (
            "huge size",
            Box::new(|r| {
                edit_manifest(r, |m| {
                    let (k, mut e) = first_entry(m);
                    e["bytes"] = json!(1u64 << 50);
                    m["files"][k] = e;
                })
            }),
            "MiB a snapshot file may have",
        ),
        (
            "one sha256 given two sizes",
            Box::new(|r| {
                edit_manifest(r, |m| {
                    let (k, e) = first_entry(m);
                    let mut twin = e.clone();
                    twin["bytes"] = json!(e["bytes"].as_u64().unwrap() + 1);
                    m["files"][k] = e;
                    m["files"]["workspace/twin.md"] = twin;
                })
            }),
            "is given two sizes",
        ),
        (
            "object content changed",
            Box::new(|r| {
                let pack = r.join("snapshot/objects.pack");
                let mut bytes = std::fs::read(&pack).unwrap();
                bytes[0] ^= 1;
                std::fs::write(pack, bytes).unwrap();
            }),
            "does not match the sha256",
        ),
        (
            "pack cut short",
            Box::new(|r| {
                let pack = r.join("snapshot/objects.pack");
                let bytes = std::fs::read(&pack).unwrap();
                std::fs::write(pack, &bytes[..bytes.len() - 1]).unwrap();
            }),
            "the pack was cut short",
        ),
        (
            "pack is a link",
            Box::new(|r| {
                let pack = r.join("snapshot/objects.pack");
                let moved = r.parent().unwrap().join("elsewhere.pack");
                std::fs::rename(&pack, &moved).unwrap();
                std::os::unix::fs::symlink(&moved, &pack).unwrap();
            }),
            "a link is never followed",
        ),
        (
            "manifest is a link",
            Box::new(|r| {
                let path = r.join("snapshot/manifest.json");
                let moved = r.parent().unwrap().join("manifest.json");
                std::fs::rename(&path, &moved).unwrap();
                std::os::unix::fs::symlink(&moved, &path).unwrap();
            }),
            "snapshot/manifest.json",
        ),
        (
            "manifest not JSON",
            Box::new(|r| {
                std::fs::write(r.join("snapshot/manifest.json"), "{\"format\": ").unwrap()
            }),
            "snapshot is damaged",
        ),
    ];
    for (name, damage, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = orphaned_run(dir.path()).await;
        damage(&run_dir);
        let before = files(dir.path());
        let out = replay(&run_dir).status(2).run();
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        assert_eq!(files(dir.path()), before, "{name}: something was written");
        assert!(!Path::new("/tmp/hatrack-escaped.txt").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_snapshot_a_missing_workspace_or_stage_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), NOTES_LINE, "");
    let stage = stage(dir.path());
    let run_dir = dir.path().join("run");
    let server = server(false).await;
    record(&server, &ws, &stage, &run_dir).status(0).run();
    std::fs::remove_dir_all(run_dir.join("snapshot")).unwrap();

    let moved_stage = dir.path().join("stage-elsewhere");
    std::fs::rename(&stage, &moved_stage).unwrap();
    let out = replay(&run_dir).status(2).run();
    assert!(out.stderr.contains("--stage"), "{}", out.stderr);
    assert!(!out.stderr.contains("--workspace DIR"), "{}", out.stderr);
    replay(&run_dir)
        .arg("--stage")
        .arg(&moved_stage)
        .status(0)
        .run();

    std::fs::remove_dir_all(&ws).unwrap();
    let out = replay(&run_dir)
        .arg("--stage")
        .arg(&moved_stage)
        .status(2)
        .run();
    assert!(out.stderr.contains("--workspace"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        !run_dir.join("snapshot").exists(),
        "a replay wrote a snapshot"
    );
}

/// The snapshot directories of processes started with `TMPDIR=tmp`.
#[cfg(unix)]
fn snapshot_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hatrack-snapshot-")
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// A replay of `copy` (from its snapshot, `TMPDIR=tmp`) stopped (SIGSTOP) while its
/// snapshot directory exists and holds files: the process and that directory.
#[cfg(unix)]
fn replay_caught_mid_way(copy: &Path, tmp: &Path) -> (std::process::Child, PathBuf) {
    for _ in 0..20 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"))
            .args(["replay", "--quiet"])
            .arg(copy)
            .env("TMPDIR", tmp)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mine = format!("hatrack-snapshot-{}-", child.id());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let found = snapshot_dirs(tmp).into_iter().find(|d| {
                d.file_name().unwrap().to_string_lossy().starts_with(&mine)
                    && d.join("prompts").exists()
            });
            if let Some(dir) = found {
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) };
                if child.try_wait().unwrap().is_none() {
                    return (child, dir);
                }
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no replay was caught while its snapshot directory existed");
}

/// The directory a replay materializes its snapshot into is private (0700), is removed on
/// SIGINT, and one left by a process killed outright is removed by the next replay — while
/// a live process's directory is never touched.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshot_directory_is_private_and_never_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, other, copy) = recorded_copy(false).await;
    let tmp = other.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // Another live process's directory (this test's own pid): never touched.
    let live = tmp.join(format!("hatrack-snapshot-{}-live", std::process::id()));
    std::fs::create_dir(&live).unwrap();

    // Interrupted: SIGINT removes it. Once continued, the replay may still win the race
    // and end by itself (its directory then goes with it), so it is caught again until the
    // signal's own exit (130) is seen; a directory is never left either way.
    let mut interrupted = Vec::new();
    for _ in 0..5 {
        let (mut child, dir) = replay_caught_mid_way(&copy, &tmp);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
        }
        let status = child.wait().unwrap();
        assert!(!dir.exists(), "SIGINT left {}", dir.display());
        interrupted.push(status.code());
        if status.code() == Some(130) {
            break;
        }
    }
    assert!(interrupted.contains(&Some(130)), "{interrupted:?}");

    // Killed outright: the directory stays, and the next replay removes it.
    let (mut child, dir) = replay_caught_mid_way(&copy, &tmp);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.exists());
    let out = Test::new()
        .args(["replay", "--quiet"])
        .arg(&copy)
        .env("TMPDIR", &tmp)
        .status(0)
        .run();
    assert!(!out.stderr.contains("panicked"));
    assert_eq!(
        snapshot_dirs(&tmp),
        [live],
        "only the live process's directory is left"
    );
}
