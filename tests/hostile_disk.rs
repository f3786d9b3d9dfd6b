//! Hostile input, faults and concurrency on the disk side, through the binary: every write
//! confined to the run directory (symlinks committed in a transcript are never followed),
//! model-chosen names validated as answer defects, sizes bounded, scrubbing that keeps the
//! transcript replayable, a lock on the run directory, inputs that yield nothing stopped in
//! preflight. The model is the fake OpenAI server scripted by `FakeReviewer` (a stand-in).
//!
//! Every test also checks that nothing outside the run directory changed (sentinel files),
//! and that stderr never reports a panic.

mod support;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{json, Value};
use support::fake_openai::{FakeOpenAi, Reply, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Output, Test};

const WORKSPACE: &str = "examples/orders-pipeline";

/// A copy of the example workspace with `extra` appended to its hatrack.toml.
fn workspace(dir: &Path, extra: &str) -> PathBuf {
    let ws = dir.join("ws");
    support::copy_dir(&repo_root().join(WORKSPACE), &ws);
    let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    std::fs::write(ws.join("hatrack.toml"), format!("{config}\n{extra}\n")).unwrap();
    ws
}

fn run(server: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args([
            "--timeout",
            "5",
            "--max-retries",
            "0",
            "--quiet",
            "--transcript",
        ])
        .arg(run_dir)
}

fn replay(run_dir: &Path) -> Test {
    Test::new().args(["replay", "--quiet"]).arg(run_dir)
}

fn no_panic(out: &Output) {
    assert!(
        !out.stderr.contains("panicked"),
        "a panic reached stderr:\n{}",
        out.stderr
    );
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn warnings(dir: &Path) -> Vec<String> {
    report(dir)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// A sentinel file outside every run directory; `check` asserts it is untouched.
struct Sentinel(PathBuf);

impl Sentinel {
    fn new(dir: &Path, name: &str) -> Sentinel {
        let path = dir.join(name);
        std::fs::write(&path, "sentinel: must never change\n").unwrap();
        Sentinel(path)
    }
    fn check(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.0).unwrap(),
            "sentinel: must never change\n",
            "{} was written through a link",
            self.0.display()
        );
    }
}

/// FakeReviewer's answer, with the pipeline engineer's artifacts replaced by `extra` (plus
/// its plan.md, which its verdicts cite).
fn with_artifacts(req: &SeenRequest, extra: &[(String, String)]) -> Reply {
    let reply = FakeReviewer::new().answer(req);
    let is_engineer = req.body["response_format"]["json_schema"]["name"] == "hat_answer"
        && req.body_text.contains("pipeline-engineer/anti-pattern");
    let Reply::Http {
        status,
        headers,
        body,
    } = reply
    else {
        return reply;
    };
    if !is_engineer {
        return Reply::Http {
            status,
            headers,
            body,
        };
    }
    let mut body: Value = serde_json::from_str(&body).unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let mut answer: Value = serde_json::from_str(content).unwrap();
    let arts = answer["artifacts"].as_array_mut().unwrap();
    for (path, content) in extra {
        arts.push(json!({"path": path, "content": content}));
    }
    body["choices"][0]["message"]["content"] = Value::String(answer.to_string());
    Reply::Http {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn reviewer() -> FakeOpenAi {
    FakeOpenAi::with_handler(|req| FakeReviewer::new().answer(req)).await
}

/// Records a passing run into `run_dir`.
async fn recorded(dir: &Path) -> (PathBuf, PathBuf) {
    let server = reviewer().await;
    let ws = workspace(dir, "");
    let run_dir = dir.join("run");
    no_panic(&run(&server, &ws, &run_dir).status(0).run());
    (ws, run_dir)
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) {
    if at.is_dir() {
        std::fs::remove_dir_all(at).unwrap();
    } else if at.symlink_metadata().is_ok() {
        std::fs::remove_file(at).unwrap();
    }
    std::os::unix::fs::symlink(target, at).unwrap();
}

// ---------- 1. writes never follow symlinks ----------

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn replay_replaces_file_links_in_a_run_dir_instead_of_writing_through_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    let before = std::fs::read(run_dir.join("report.json")).unwrap();
    let sentinels: Vec<Sentinel> = [
        "report.json",
        "junit.xml",
        "report.md",
        "report.html",
        "plan.md",
    ]
    .iter()
    .map(|n| Sentinel::new(dir.path(), &format!("outside-{n}")))
    .collect();
    // As a pull request could commit them: links where the reports and an artifact go.
    for (name, s) in ["report.json", "junit.xml", "report.md", "report.html"]
        .iter()
        .zip(&sentinels)
    {
        link(&s.0, &run_dir.join(name));
    }
    link(
        &sentinels[4].0,
        &run_dir.join("artifacts/pipeline-engineer/plan.md"),
    );
    let out = replay(&run_dir).status(0).run();
    no_panic(&out);
    sentinels.iter().for_each(Sentinel::check);
    for name in [
        "report.json",
        "junit.xml",
        "artifacts/pipeline-engineer/plan.md",
    ] {
        let meta = run_dir.join(name).symlink_metadata().unwrap();
        assert!(meta.is_file(), "{name} is a regular file again");
    }
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), before);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_linked_directory_in_a_run_dir_is_refused_and_nothing_outside_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let sentinel = Sentinel::new(&outside, "plan.md");
    link(&outside, &run_dir.join("artifacts/pipeline-engineer"));
    let out = replay(&run_dir).status(2).stderr_has("symbolic link").run();
    no_panic(&out);
    assert!(
        out.stderr.contains("artifacts/pipeline-engineer"),
        "{}",
        out.stderr
    );
    sentinel.check();
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_linked_transcript_is_neither_read_nor_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, run_dir) = recorded(dir.path()).await;
    let sentinel = Sentinel::new(dir.path(), "outside.jsonl");
    link(&sentinel.0, &run_dir.join("exchanges.jsonl"));
    let out = replay(&run_dir).status(2).stderr_has("symbolic link").run();
    no_panic(&out);
    assert!(out.stderr.contains("exchanges.jsonl"), "{}", out.stderr);
    let server = reviewer().await;
    let out = run(&server, &ws, &run_dir)
        .args(["--record-mode", "new_episodes"])
        .status(2)
        .stderr_has("symbolic link")
        .run();
    no_panic(&out);
    let out = run(&server, &ws, &run_dir)
        .args(["--record-mode", "all"])
        .status(2)
        .stderr_has("symbolic link")
        .run();
    no_panic(&out);
    sentinel.check();
    assert_eq!(server.count(), 0, "no model call before the refusal");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_hard_linked_or_special_transcript_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, run_dir) = recorded(dir.path()).await;
    let transcript = run_dir.join("exchanges.jsonl");
    // A hard link: appending would change the outside file too.
    let outside = dir.path().join("outside.jsonl");
    std::fs::hard_link(&transcript, &outside).unwrap();
    let before = std::fs::read(&outside).unwrap();
    let server = reviewer().await;
    let out = run(&server, &ws, &run_dir)
        .args(["--record-mode", "new_episodes"])
        .status(2)
        .stderr_has("hard links")
        .run();
    no_panic(&out);
    assert_eq!(std::fs::read(&outside).unwrap(), before);
    // Re-recording from scratch must not empty the outside file either.
    let out = run(&server, &ws, &run_dir)
        .args(["--record-mode", "all"])
        .status(2)
        .stderr_has("hard links")
        .run();
    no_panic(&out);
    assert_eq!(std::fs::read(&outside).unwrap(), before);
    // A FIFO where the transcript should be: refused at once, never read (it would block).
    std::fs::remove_file(&transcript).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&transcript)
        .status();
    if made.is_ok_and(|s| s.success()) {
        let out = replay(&run_dir)
            .status(2)
            .stderr_has("not a regular file")
            .run();
        no_panic(&out);
    }
    assert_eq!(server.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_loop_counts_in_run_json_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    let path = run_dir.join("run.json");
    let original = std::fs::read_to_string(&path).unwrap();
    for (from, to, field) in [
        ("\"samples\": 1", "\"samples\": 4294967295", "samples"),
        (
            "\"max_reasks\": 2",
            "\"max_reasks\": 4294967295",
            "max_reasks",
        ),
    ] {
        assert!(original.contains(from), "{original}");
        std::fs::write(&path, original.replace(from, to)).unwrap();
        let out = replay(&run_dir)
            .status(2)
            .stderr_has(field)
            .stderr_has("run.json")
            .run();
        no_panic(&out);
    }
    // An oversized run.json is refused without being read whole.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = replay(&run_dir)
        .status(2)
        .stderr_has("larger than 4 MiB")
        .run();
    no_panic(&out);
}

/// A run.json that cannot be written (a directory holds its name) ends the run with its own
/// error, exit 2, and the transcript records no exchange: the first request goes out while
/// run.json is written, but nothing is recorded before it is on disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_json_that_cannot_be_written_ends_the_run_with_nothing_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(run_dir.join("run.json")).unwrap();
    std::fs::write(run_dir.join("run.json").join("kept"), "x").unwrap();
    let out = run(&server, &ws, &run_dir)
        .status(2)
        .stderr_has("run.json: is a directory")
        .run();
    no_panic(&out);
    let transcript = std::fs::read_to_string(run_dir.join("exchanges.jsonl")).unwrap_or_default();
    assert_eq!(transcript.lines().count(), 0, "{transcript}");
    let left: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_new_run_replaces_a_linked_run_json_instead_of_writing_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let sentinel = Sentinel::new(dir.path(), "outside.json");
    link(&sentinel.0, &run_dir.join("run.json"));
    let out = run(&server, &ws, &run_dir)
        .args(["--record-mode", "all"])
        .status(0)
        .run();
    no_panic(&out);
    sentinel.check();
    assert!(run_dir
        .join("run.json")
        .symlink_metadata()
        .unwrap()
        .is_file());
    no_panic(&replay(&run_dir).status(0).run());
}

// ---------- 2. model-chosen names: answer defects, not I/O aborts ----------

#[tokio::test(flavor = "multi_thread")]
async fn bad_artifact_names_are_dropped_with_a_warning_and_the_run_replays_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<(String, String)> = vec![
        ("a".repeat(300) + ".md", "long".into()),
        ("dir".into(), "a file".into()),
        ("dir/inner.md".into(), "under the file".into()),
        ("evil\nname.md".into(), "newline".into()),
        ("esc\u{1b}[31m.md".into(), "escape".into()),
        ("invoice\u{202e}dm.exe".into(), "rtl override".into()),
        ("Plan.MD".into(), "case twin of plan.md".into()),
        ("trailing.".into(), "dot".into()),
        ("../../escape.md".into(), "escape".into()),
    ];
    let server = FakeOpenAi::with_handler(move |req| with_artifacts(req, &extra)).await;
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).status(0).run();
    no_panic(&out);
    let w = warnings(&run_dir).join("\n");
    for expected in [
        "255",
        "would be inside",
        "U+000A",
        "U+001B",
        "U+202E",
        "letter case",
        "ends with a dot",
        "`..`",
    ] {
        assert!(w.contains(expected), "no warning with {expected:?}:\n{w}");
    }
    assert!(!w.contains('\u{202e}') && !w.contains('\u{1b}'), "{w}");
    // Only plan.md and dir were written, inside the run directory.
    let mut names: Vec<String> = std::fs::read_dir(run_dir.join("artifacts/pipeline-engineer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "plan.md"]);
    assert!(!dir.path().join("escape.md").exists());

    // Replay and resume re-accept the recorded answer the same way.
    let first = std::fs::read(run_dir.join("report.json")).unwrap();
    no_panic(&replay(&run_dir).status(0).run());
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), first);
    let calls = server.count();
    let out = Test::new()
        .args(["run", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--resume")
        .arg(&run_dir)
        .status(0)
        .run();
    no_panic(&out);
    assert_eq!(server.count(), calls, "resume replays the recorded answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_refused_artifact_names_give_short_bounded_warnings() {
    // The answer schema allows 10 artifacts; each of these names is 100 kB of trouble.
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<(String, String)> = (0..9)
        .map(|i| match i % 3 {
            0 => (format!("{}{i}", "x".repeat(100_000)), String::new()),
            1 => (format!("{}\n{i}", "y/".repeat(50_000)), String::new()),
            _ => (
                format!("../{}{i}", "\u{202e}z".repeat(30_000)),
                String::new(),
            ),
        })
        .collect();
    let server = FakeOpenAi::with_handler(move |req| with_artifacts(req, &extra)).await;
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    let out = Test::new()
        .arg("run")
        .arg(&ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--max-retries", "0", "--transcript"])
        .arg(&run_dir)
        .status(0)
        .run();
    no_panic(&out);
    assert!(
        out.stderr.len() < 20_000,
        "stderr is {} bytes",
        out.stderr.len()
    );
    let w = warnings(&run_dir);
    let refused: Vec<&String> = w.iter().filter(|m| m.contains("refused")).collect();
    assert_eq!(refused.len(), 9, "{w:?}");
    assert!(refused.iter().all(|m| m.len() < 400), "{}", refused[0]);
    assert!(refused.iter().all(|m| !m.contains('\u{202e}')));
    let size = std::fs::metadata(run_dir.join("report.json"))
        .unwrap()
        .len();
    assert!(size < 100_000, "report.json is {size} bytes");
    no_panic(&replay(&run_dir).status(0).run());
}

// ---------- 3. every file read is bounded ----------

/// Runs hatrack with a deadline (a FIFO read would block for ever): the exit code (-1 when
/// it had to be killed), stderr and how long it took.
fn run_with_deadline(args: &[std::ffi::OsString]) -> (i32, String, std::time::Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("HATRACK_POLICY")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            break -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (code, stderr, started.elapsed())
}

/// The largest resident size of any child this test process has waited for, in bytes.
#[cfg(unix)]
fn children_max_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss as u64 * 1024
}

/// `/dev/zero`, a FIFO, a 3 GB sparse file and a link out of its directory as the
/// workspace's hatrack.toml, `--prices`, `--manifest` and `--policy`: each stops at once
/// with exit 2 naming the file, reads nothing whole, calls no model and writes nothing.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn devices_fifos_huge_files_and_links_out_are_refused_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    let good_toml = std::fs::read(ws.join("hatrack.toml")).unwrap();
    // What a link may point at outside: a valid file of each kind (as a secret could be).
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("hatrack.toml"), &good_toml).unwrap();
    std::fs::write(
        outside.join("prices.json"),
        r#"{"fake-model": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}}"#,
    )
    .unwrap();
    std::fs::write(outside.join("manifest.txt"), format!("{}\n", ws.display())).unwrap();
    std::fs::write(outside.join("policy.toml"), "[grounding]\nmin_words = 3\n").unwrap();
    let sentinel = Sentinel::new(dir.path(), "sentinel");
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();

    #[derive(Clone, Copy, Debug)]
    enum Bad {
        Zero,
        Fifo,
        Sparse,
        LinkOut,
    }
    // Puts the hostile thing at `at`; `real` is the valid file a link out points at.
    let place = |bad: Bad, at: &Path, real: &Path| {
        let _ = std::fs::remove_file(at);
        match bad {
            Bad::Zero => std::os::unix::fs::symlink("/dev/zero", at).unwrap(),
            Bad::Fifo => assert!(std::process::Command::new("mkfifo")
                .arg(at)
                .status()
                .unwrap()
                .success()),
            Bad::Sparse => std::fs::File::create(at).unwrap().set_len(3 << 30).unwrap(),
            Bad::LinkOut => std::os::unix::fs::symlink(real, at).unwrap(),
        }
    };
    let base = |run_dir: &Path| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["run".into()];
        args.extend(
            [
                "--model",
                "fake-model",
                "--base-url",
                &server.url(),
                "--max-retries",
                "0",
                "--quiet",
                "--transcript",
            ]
            .map(Into::into),
        );
        args.push(run_dir.into());
        args
    };
    for bad in [Bad::Zero, Bad::Fifo, Bad::Sparse, Bad::LinkOut] {
        for reader in ["hatrack.toml", "--prices", "--manifest", "--policy"] {
            let run_dir = dir.path().join("run");
            let mut args = base(&run_dir);
            let named = match reader {
                "hatrack.toml" => {
                    let at = ws.join("hatrack.toml");
                    place(bad, &at, &outside.join("hatrack.toml"));
                    args.push(ws.clone().into());
                    at
                }
                flag => {
                    let file = match flag {
                        "--prices" => "prices.json",
                        "--manifest" => "manifest.txt",
                        _ => "policy.toml",
                    };
                    let at = flags.join(file);
                    place(bad, &at, &outside.join(file));
                    args.push(flag.into());
                    args.push(at.clone().into());
                    if flag != "--manifest" {
                        args.push(ws.clone().into());
                    }
                    at
                }
            };
            let (code, stderr, took) = run_with_deadline(&args);
            let case = format!("{bad:?} as {reader}: exit {code} after {took:?}\n{stderr}");
            assert_eq!(code, 2, "{case}");
            assert!(took < std::time::Duration::from_secs(5), "{case}");
            assert!(!stderr.contains("panicked"), "{case}");
            assert!(stderr.contains(&*named.to_string_lossy()), "{case}");
            assert!(!run_dir.exists(), "nothing is written: {case}");
            let _ = std::fs::remove_file(&named);
            if reader == "hatrack.toml" {
                std::fs::write(&named, &good_toml).unwrap();
            }
        }
    }
    assert_eq!(server.count(), 0, "no model was called");
    sentinel.check();
    let rss = children_max_rss();
    assert!(rss < 100 << 20, "a hatrack process used {rss} bytes");
}

// ---------- 4. unbounded sizes ----------

#[tokio::test(flavor = "multi_thread")]
async fn a_transcript_line_beyond_the_limit_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    // A sparse 33 MiB line after the recorded ones: no newline anywhere in it.
    let path = run_dir.join("exchanges.jsonl");
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + (33 << 20)).unwrap();
    let out = replay(&run_dir)
        .status(2)
        .stderr_has(format!("line {} is longer than 32 MiB", lines + 1))
        .stderr_has("exchanges.jsonl")
        .run();
    no_panic(&out);
    // A whole transcript beyond any real run's size is refused before it is read.
    file.set_len(300 << 20).unwrap();
    let out = replay(&run_dir)
        .status(2)
        .stderr_has("larger than 256 MiB")
        .run();
    no_panic(&out);
}

/// An exchange edited into the wrong shape is refused with its line and field named, and
/// the advice is to restore the file: the disk is not at fault.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_exchange_is_refused_naming_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    let path = run_dir.join("exchanges.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut second: Value = serde_json::from_str(&lines[1]).unwrap();
    second["usage"]["prompt_tokens"] = serde_json::json!("many");
    lines[1] = second.to_string();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = replay(&run_dir)
        .status(2)
        .stderr_has("exchanges.jsonl: line 2: not a valid exchange: field `usage.prompt_tokens`")
        .stderr_has("restore exchanges.jsonl")
        .run();
    assert!(!out.stderr.contains("disk space"), "{}", out.stderr);
    no_panic(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_sparse_input_is_skipped_by_its_size_and_alone_stops_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    // 2 GB, sparse: costs nothing on disk; must never be read into memory.
    let big = std::fs::File::create(ws.join("ops/huge.log")).unwrap();
    big.set_len(2 << 30).unwrap();
    let run_dir = dir.path().join("run");
    let started = std::time::Instant::now();
    let out = run(&server, &ws, &run_dir).status(0).run();
    no_panic(&out);
    assert!(started.elapsed().as_secs() < 60);
    let w = warnings(&run_dir).join("\n");
    assert!(w.contains("ops/huge.log is 2147483648 bytes"), "{w}");

    // The validation report bound to it alone: nothing to review — exit 2, no call.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let ws2 = workspace(&other, "");
    std::fs::File::create(ws2.join("ops/huge.log"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let config = std::fs::read_to_string(ws2.join("hatrack.toml"))
        .unwrap()
        .replace("\"reports/validation-report.md\"", "\"ops/huge.log\"");
    std::fs::write(ws2.join("hatrack.toml"), config).unwrap();
    let calls = server.count();
    let out = run(&server, &ws2, &dir.path().join("run2"))
        .status(2)
        .stderr_has("Reads item \"Validation report\" yields nothing")
        .stderr_has("ops/huge.log")
        .run();
    no_panic(&out);
    assert_eq!(server.count(), calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn input_warnings_are_bounded_and_hostile_file_names_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    for i in 0..200 {
        std::fs::write(ws.join(format!("ops/blob-{i:03}.bin")), b"\0\0binary").unwrap();
    }
    std::fs::write(ws.join("ops/a\u{202e}dm.exe\n.bin"), b"\0").unwrap();
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).status(0).run();
    no_panic(&out);
    let w = warnings(&run_dir);
    assert!(w.len() < 40, "{} warnings", w.len());
    assert!(
        w.iter()
            .any(|m| m.contains("more inputs cut, skipped or redacted")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .all(|m| !m.contains('\u{202e}') && !m.contains('\n')),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("\\u{202e}")), "{w:?}");
}

// ---------- 5. scrubbing keeps what it protects ----------

#[tokio::test(flavor = "multi_thread")]
async fn a_scrub_pattern_matching_empty_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    for pattern in ["", "x*", "\\\\b"] {
        let ws = dir.path().join(format!("ws{}", pattern.len()));
        support::copy_dir(&workspace(dir.path(), ""), &ws);
        let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
        std::fs::write(
            ws.join("hatrack.toml"),
            format!("{config}\n[secrets]\nscrub_patterns = [\"{pattern}\"]\n"),
        )
        .unwrap();
        std::fs::remove_dir_all(dir.path().join("ws")).unwrap();
        let out = run(&server, &ws, &dir.path().join("run"))
            .status(2)
            .stderr_has("can match the empty string")
            .stderr_has("hatrack.toml [secrets] scrub_patterns")
            .run();
        no_panic(&out);
    }
    assert_eq!(server.count(), 0);
    assert!(!dir.path().join("run/exchanges.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realistic_scrub_pattern_keeps_the_transcript_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(
        dir.path(),
        "[secrets]\nscrub_patterns = ['password\\s*=\\s*\\S+', 'step', '<[^>]+>', '\"[^\"]*\"']\n",
    );
    let runbook = std::fs::read_to_string(ws.join("ops/runbook.md")).unwrap();
    std::fs::write(
        ws.join("ops/runbook.md"),
        format!("db password = \"hunter2\", then\n{runbook}"),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    no_panic(&run(&server, &ws, &run_dir).status(0).run());
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.body_text.contains("hunter2")),
        "without redact_inputs the input is sent as it is"
    );
    for entry in walkdir::WalkDir::new(&run_dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert!(
                !text.contains("hunter2"),
                "{} leaks",
                entry.path().display()
            );
        }
    }
    for line in std::fs::read_to_string(run_dir.join("exchanges.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).expect("every line is still JSON");
        assert!(v["step"].as_str().unwrap().contains('/') || v["step"] == "signal");
    }
    serde_json::from_str::<Value>(&std::fs::read_to_string(run_dir.join("run.json")).unwrap())
        .unwrap();
    // Patterns that look like markup or quoted strings leave the reports' structure alone.
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuites") && junit.trim_end().ends_with("</testsuites>"));
    // One case per requirement (19) and one per hat (2).
    assert_eq!(junit.matches("<testcase ").count(), 21, "{junit}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<html") && html.contains("</html>"));
    let first = std::fs::read(run_dir.join("report.json")).unwrap();
    no_panic(&replay(&run_dir).status(0).run());
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn redact_inputs_removes_secrets_before_they_are_sent_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(
        dir.path(),
        "[secrets]\nscrub_patterns = ['password\\s*=\\s*\\S+']\nredact_inputs = true\n",
    );
    let runbook = std::fs::read_to_string(ws.join("ops/runbook.md")).unwrap();
    std::fs::write(
        ws.join("ops/runbook.md"),
        format!("db password = hunter2\n{runbook}"),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    no_panic(&run(&server, &ws, &run_dir).status(0).run());
    let requests = server.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| !r.body_text.contains("hunter2")),
        "a redacted input reached the model"
    );
    assert!(warnings(&run_dir)
        .iter()
        .any(|w| w.contains("ops/runbook.md") && w.contains("redacted")));
    no_panic(&replay(&run_dir).status(0).run());
}

/// With `redact_inputs` and `[limits]`, an input is redacted whole and then cut: the live run
/// and a replay from the snapshot alone (which keeps the file scrubbed) quote the same text
/// with the same "showing N of M bytes", so the replay finds every exchange and writes the
/// same report.
#[tokio::test(flavor = "multi_thread")]
async fn redacted_and_cut_inputs_replay_without_the_workspace() {
    for secrets in [
        "scrub_patterns = ['password\\s*=\\s*\\S+']\nredact_inputs = true",
        "redact_inputs = ['password\\s*=\\s*\\S+']",
    ] {
        redacted_and_cut_input_replays(secrets).await;
    }
}

async fn redacted_and_cut_input_replays(secrets: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    // The example's [limits] cut files at 2500 bytes.
    let ws = workspace(dir.path(), &format!("[secrets]\n{secrets}\n"));
    let runbook = std::fs::read_to_string(ws.join("ops/runbook.md")).unwrap();
    let filler = "Each retry is logged with its attempt number and the error seen.\n".repeat(60);
    std::fs::write(
        ws.join("ops/runbook.md"),
        format!("db password = hunter2\nreplica password = swordfish9\n{filler}{runbook}"),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    no_panic(&run(&server, &ws, &run_dir).status(0).run());
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.body_text.contains("hunter2") && !r.body_text.contains("swordfish9")));
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.body_text.contains("[truncated by hatrack")),
        "the runbook was cut"
    );
    // What was redacted before sending is not kept in the run directory either (its
    // snapshot holds the inputs as they were sent).
    for entry in walkdir::WalkDir::new(&run_dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("hunter2") && !text.contains("swordfish9"),
                "{} keeps a redacted secret",
                entry.path().display()
            );
        }
    }
    let report = std::fs::read(run_dir.join("report.json")).unwrap();
    // The workspace is gone: the replay has only the run directory's snapshot.
    std::fs::rename(&ws, dir.path().join("gone")).unwrap();
    let out = replay(&run_dir).status(0).run();
    no_panic(&out);
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), report);
}

/// A workspace whose inputs hold more than a snapshot may (1 GiB in all): the snapshot is
/// written one file at a time (memory stays far below the inputs' size) and only up to
/// what a replay reads, leaving the rest out with a warning, so a replay from it alone is
/// not refused as "edited by hand".
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_keeps_to_the_limits_its_reader_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    // 17 × 64 MiB, sparse: 1088 MiB the `ops/**` binding matches (and skips as binary).
    for i in 0..17 {
        std::fs::File::create(ws.join(format!("ops/big-{i:02}.log")))
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
    }
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).status(0).run();
    no_panic(&out);
    assert!(out.stderr.contains("left out"), "{}", out.stderr);
    let rss = children_max_rss();
    assert!(rss < 512 << 20, "writing the snapshot took {rss} bytes");
    std::fs::rename(&ws, dir.path().join("gone")).unwrap();
    let out = replay(&run_dir).status(0).run();
    no_panic(&out);
    assert!(!out.stderr.contains("edited by hand"), "{}", out.stderr);
}

/// `--transcript` naming a directory that holds a user's files (not a run directory), or
/// another workspace's run, is refused before any request, naming what is there; nothing
/// in it changes. An empty one, or this workspace's run directory, is used as before; a
/// batch is held to the same rule.
#[tokio::test(flavor = "multi_thread")]
async fn a_transcript_dir_holding_someone_elses_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    for name in ["report.md", "junit.xml", "run-notes.txt"] {
        std::fs::write(docs.join(name), format!("my own {name}\n")).unwrap();
    }
    let out = run(&server, &ws, &docs)
        .status(2)
        .stderr_has("is not empty and is not a hatrack run directory")
        .stderr_has("junit.xml, report.md, run-notes.txt")
        .run();
    no_panic(&out);
    // A batch into it: the same.
    let out = Test::new()
        .arg("run")
        .arg(&ws)
        .arg(dir.path().join("gone-too"))
        .args(["--model", "fake-model", "--base-url", &server.url()])
        .arg("--transcript")
        .arg(&docs)
        .status(2)
        .stderr_has("is not a hatrack run directory")
        .run();
    no_panic(&out);
    assert_eq!(server.count(), 0);
    for name in ["report.md", "junit.xml", "run-notes.txt"] {
        assert_eq!(
            std::fs::read_to_string(docs.join(name)).unwrap(),
            format!("my own {name}\n")
        );
    }
    assert_eq!(std::fs::read_dir(&docs).unwrap().count(), 3);
    // An empty directory is fine, and then it is a run directory.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    no_panic(&run(&server, &ws, &empty).status(0).run());
    no_panic(&run(&server, &ws, &empty).status(0).run());

    // A run directory holding another workspace's run is not written over either: its
    // run.json, reports and transcript stay as they were.
    let other = dir.path().join("other");
    support::copy_dir(&ws, &other);
    let before: Vec<(String, Vec<u8>)> = ["run.json", "report.json", "exchanges.jsonl"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(empty.join(f)).unwrap()))
        .collect();
    let asked = server.count();
    let out = run(&server, &other, &empty)
        .status(2)
        .stderr_has("holds a run of another workspace")
        .run();
    no_panic(&out);
    assert_eq!(server.count(), asked);
    for (f, bytes) in before {
        assert_eq!(std::fs::read(empty.join(&f)).unwrap(), bytes, "{f} changed");
    }
}

// ---------- 6. one writer per run directory; a valid last line is kept ----------

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_fails_at_once_while_the_run_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, run_dir) = recorded(dir.path()).await;
    let transcript = std::fs::read(run_dir.join("exchanges.jsonl")).unwrap();
    // Another process's lock, held here.
    let holder = std::fs::File::open(&run_dir).unwrap();
    holder.try_lock().unwrap();
    let server = reviewer().await;
    for test in [
        run(&server, &ws, &run_dir).args(["--record-mode", "all"]),
        Test::new().arg("run").arg("--resume").arg(&run_dir),
        replay(&run_dir),
    ] {
        let out = test
            .status(2)
            .stderr_has("another hatrack process is writing this run directory")
            .run();
        no_panic(&out);
        assert!(
            out.stderr.contains(&*run_dir.to_string_lossy()),
            "{}",
            out.stderr
        );
    }
    assert_eq!(server.count(), 0);
    assert_eq!(
        std::fs::read(run_dir.join("exchanges.jsonl")).unwrap(),
        transcript
    );
    drop(holder);
    no_panic(&replay(&run_dir).status(0).run());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_into_one_transcript_do_not_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let slow = FakeOpenAi::with_handler(|req| {
        FakeReviewer::new()
            .answer(req)
            .delayed(std::time::Duration::from_millis(300))
    })
    .await;
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    let first = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"));
        cmd.arg("run")
            .arg(&ws)
            .args(["--model", "fake-model", "--base-url"])
            .arg(slow.url())
            .args(["--quiet", "--transcript"])
            .arg(&run_dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    // Wait until the first run holds the directory (it has written run.json).
    for _ in 0..200 {
        if run_dir.join("run.json").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = run(&slow, &ws, &run_dir)
        .args(["--record-mode", "all"])
        .status(2)
        .stderr_has("another hatrack process is writing this run directory")
        .run();
    no_panic(&out);
    let done = first.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // Two hats, two constraint judges, the review agent, the completion judge.
    assert_eq!(slow.count(), 6, "only the first run called the model");
    no_panic(&replay(&run_dir).status(0).run());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_last_exchange_without_its_newline_is_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = recorded(dir.path()).await;
    let path = run_dir.join("exchanges.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().count();
    assert!(text.ends_with('\n'));
    text.pop();
    std::fs::write(&path, &text).unwrap();
    let server = reviewer().await;
    let out = Test::new()
        .args(["run", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--resume")
        .arg(&run_dir)
        .status(0)
        .run();
    no_panic(&out);
    assert_eq!(
        server.count(),
        0,
        "the last exchange was replayed, not asked again"
    );
    let after = std::fs::read_to_string(&path).unwrap();
    assert_eq!(after, format!("{text}\n"));
    assert_eq!(after.lines().count(), lines);

    // A half-written last line is still cut off (and its exchange asked again).
    let cut = &text[..text.len() - 40];
    std::fs::write(&path, cut).unwrap();
    let out = Test::new()
        .args(["run", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--resume")
        .arg(&run_dir)
        .status(0)
        .run();
    no_panic(&out);
    assert_eq!(server.count(), 1);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        lines
    );
    no_panic(&replay(&run_dir).status(0).run());
}

// ---------- 7. inputs that yield nothing ----------

#[tokio::test(flavor = "multi_thread")]
async fn an_item_whose_files_are_all_binary_or_not_utf8_stops_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let server = reviewer().await;
    let ws = workspace(dir.path(), "");
    std::fs::write(
        ws.join("reports/validation-report.md"),
        b"\xff\xfe not utf-8",
    )
    .unwrap();
    std::fs::write(ws.join("reports/extra.bin"), b"PK\x03\x04\0\0binary").unwrap();
    let config = std::fs::read_to_string(ws.join("hatrack.toml"))
        .unwrap()
        .replace(
            "\"reports/validation-report.md\"",
            "[\"reports/validation-report.md\", \"reports/extra.bin\"]",
        );
    std::fs::write(ws.join("hatrack.toml"), config).unwrap();
    let out = run(&server, &ws, &dir.path().join("run"))
        .status(2)
        .stderr_has("hat pipeline-engineer: Reads item \"Validation report\" yields nothing")
        .stderr_has("reports/validation-report.md: is not UTF-8")
        .stderr_has("reports/extra.bin: is binary")
        .stderr_has("a reviewer that saw nothing must not pass")
        .run();
    no_panic(&out);
    assert_eq!(server.count(), 0);
}

// ---------- readers never panic on damaged files ----------

fn mutate(text: &[u8], op: u8, at: usize, len: usize, insert: &[u8]) -> Vec<u8> {
    let at = at % (text.len() + 1);
    let end = (at + len).min(text.len());
    let mut out = text[..at].to_vec();
    match op % 3 {
        0 => {
            out.extend_from_slice(insert);
            out.extend_from_slice(&text[at..]);
        }
        1 => out.extend_from_slice(&text[end..]),
        _ => {
            out.extend_from_slice(insert);
            out.extend_from_slice(&text[end..]);
        }
    }
    out
}

const SHIPPED: &str = "transcripts/orders-pipeline";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transcript_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = hatrack::model::transcript::read_exchanges_from(Path::new("x.jsonl"), &bytes[..]);
    }

    #[test]
    fn accepted_artifact_paths_are_always_safe_to_write(
        paths in prop::collection::vec("(\\PC|[\n\t\u{1b}\u{202e}\u{200b}/.\\\\ ]|\\.\\.|CON|[aA]){0,40}", 0..12)
    ) {
        let proposed: Vec<(String, String)> = paths.iter().map(|p| (p.clone(), String::new())).collect();
        let (ok, warnings) = hatrack::run::artifacts::accept("h", &proposed);
        prop_assert_eq!(ok.len() + warnings.len(), proposed.len());
        let mut folded = std::collections::HashSet::new();
        for a in &ok {
            let rel = a.name.strip_prefix("artifacts/h/").unwrap();
            prop_assert!(folded.insert(rel.to_lowercase()), "case twins: {}", rel);
            for part in rel.split('/') {
                prop_assert!(!part.is_empty() && part != "." && part != "..", "{:?}", rel);
                prop_assert!(part.len() <= 255);
                prop_assert!(!part.ends_with('.') && !part.ends_with(' '));
                prop_assert!(part.chars().all(|c| !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{200b}'..='\u{200f}')), "{:?}", rel);
            }
        }
        for a in &ok {
            for b in &ok {
                let (x, y) = (a.name.to_lowercase(), b.name.to_lowercase());
                prop_assert!(!y.starts_with(&format!("{x}/")), "{} is a file and a directory", a.name);
            }
        }
        for w in &warnings {
            prop_assert!(w.len() < 400, "{}", w);
        }
    }

    #[test]
    fn run_json_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = hatrack::run::rundir::RunRecord::parse(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn damaged_real_transcripts_and_run_json_never_panic(
        which in 0..2usize,
        op in any::<u8>(),
        at in any::<usize>(),
        len in 0usize..200,
        insert in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let name = ["exchanges.jsonl", "run.json"][which];
        let original = std::fs::read(repo_root().join(SHIPPED).join(name)).unwrap();
        let damaged = mutate(&original, op, at, len, &insert);
        if which == 0 {
            match hatrack::model::transcript::read_exchanges_from(Path::new(name), &damaged[..]) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.to_string().contains(name)),
            }
        } else {
            let _ = hatrack::run::rundir::RunRecord::parse(&damaged);
        }
    }

}

proptest! {
    // Each case runs the binary: few cases, still every kind of damage over time.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_damaged_run_dir_replays_or_fails_with_a_message(
        which in 0..2usize,
        op in any::<u8>(),
        at in any::<usize>(),
        len in 0usize..100,
        insert in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        support::copy_dir(&repo_root().join(SHIPPED), &run_dir);
        // Recorded paths are relative to the transcript: point them back at the repository.
        let record = std::fs::read_to_string(run_dir.join("run.json")).unwrap();
        let root = repo_root();
        let record = record
            .replace("\"../../hats/deployment\"", &format!("{:?}", root.join("hats/deployment")))
            .replace("\"../../examples/orders-pipeline\"", &format!("{:?}", root.join(WORKSPACE)));
        std::fs::write(run_dir.join("run.json"), record).unwrap();
        let name = ["exchanges.jsonl", "run.json"][which];
        let original = std::fs::read(run_dir.join(name)).unwrap();
        std::fs::write(run_dir.join(name), mutate(&original, op, at, len, &insert)).unwrap();
        let out = replay(&run_dir).any_status().run();
        prop_assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        prop_assert!([0, 1, 2, 4].contains(&out.status), "exit {}: {}", out.status, out.stderr);
    }
}
