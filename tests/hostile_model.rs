//! Hostile input from the model side, through the binary where it can be: numbers out of
//! range from flags, hatrack.toml and run.json; a provider sending absurd numbers, huge or
//! endless bodies, and errors that must be named for what they are (and not retried when
//! retrying cannot help). Every case: the exit code, what stderr says, how many requests
//! were made, and never a panic.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hatrack::model::{
    ChatModel, LiveModel, ModelError, ModelRequest, ModelSettings, ProviderErrorKind,
};
use serde_json::json;
use support::fake_openai::{FakeOpenAi, Reply};
use support::fake_reviewer::FakeReviewer;
use support::{repo_root, Output, Test};

const WORKSPACE: &str = "examples/orders-pipeline";

/// `hatrack run` against `server` into `dir`, no retries unless a test adds them.
fn run_in(server: &FakeOpenAi, dir: &Path) -> Test {
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--quiet", "--transcript"])
        .arg(dir)
}

fn no_panic(out: &Output) {
    assert!(
        !out.stderr.contains("panicked"),
        "a panic on outside input:\n{}",
        out.stderr
    );
    assert_ne!(out.status, 101, "exit 101 is a panic:\n{}", out.stderr);
}

/// A copy of the shipped transcript (run.json and exchanges.jsonl), to tamper with.
fn shipped_run_copy(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    for f in ["run.json", "exchanges.jsonl"] {
        std::fs::copy(
            repo_root().join("transcripts/orders-pipeline").join(f),
            run.join(f),
        )
        .unwrap();
    }
    run
}

fn edit_run_json(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

// ── numbers from flags ────────────────────────────────────────────────────────────────

#[test]
fn flags_out_of_range_exit_2_naming_the_flag_and_range_before_any_work() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--samples", "4294967295"], "--samples", "from 1 to 32"),
        (&["--samples", "0"], "--samples", "from 1 to 32"),
        (
            &["--max-reasks", "4294967295"],
            "--max-reasks",
            "from 0 to 10",
        ),
        (&["--jobs", "0"], "--jobs", "from 1 to 64"),
        (
            &["--jobs", "18446744073709551616"],
            "--jobs",
            "from 1 to 64",
        ),
        (&["--timeout", "0"], "--timeout", "from 1 to 3600"),
        (&["--timeout", "99999999999"], "--timeout", "from 1 to 3600"),
        (&["--max-retries", "1000"], "--max-retries", "from 0 to 20"),
        (&["--budget", "0"], "--budget", "from 1 to"),
    ];
    for (args, flag, range) in cases {
        let started = Instant::now();
        let out = Test::new()
            .args(["run", WORKSPACE, "--base-url", "http://127.0.0.1:9/v1"])
            .args(args.iter())
            .status(2)
            .stderr_has(*flag)
            .stderr_has(*range)
            .run();
        no_panic(&out);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} hung");
    }
    let out = Test::new()
        .args(["diff", "a", "b", "--prompt-price", "NaN"])
        .status(2)
        .stderr_has("--prompt-price")
        .run();
    no_panic(&out);
}

// ── numbers from hatrack.toml ─────────────────────────────────────────────────────────

#[test]
fn hatrack_toml_numbers_out_of_range_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hatrack.toml"),
        "[model]\njobs = 100000\nmax_reasks = 4294967295\nmax_response_bytes = 0\n[limits]\nmax_input_bytes = 18446744073709551615\n",
    )
    .unwrap();
    let out = Test::new()
        .arg("run")
        .arg(dir.path())
        .args(["--base-url", "http://127.0.0.1:9/v1"])
        .status(2)
        .stderr_has("hatrack.toml")
        .stderr_has("[model] jobs = 100000 is out of range")
        .stderr_has("[model] max_reasks = 4294967295")
        .stderr_has("[model] max_response_bytes = 0")
        .stderr_has("[limits] max_input_bytes")
        .run();
    no_panic(&out);
}

// ── numbers from run.json ─────────────────────────────────────────────────────────────

#[test]
fn a_tampered_run_json_is_refused_by_replay_resume_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let run = shipped_run_copy(dir.path());
    edit_run_json(&run, |v| {
        v["samples"] = json!(4294967295u64);
        v["model"]["max_reasks"] = json!(4294967295u64);
        v["model"]["temperature"] = json!(1e300);
    });
    let started = Instant::now();
    for args in [
        vec!["replay".to_string(), run.display().to_string()],
        vec![
            "run".into(),
            "--resume".into(),
            run.display().to_string(),
            "--base-url".into(),
            "http://127.0.0.1:9/v1".into(),
        ],
        vec![
            "render".into(),
            "signal".into(),
            WORKSPACE.into(),
            "--against".into(),
            run.display().to_string(),
        ],
    ] {
        let out = Test::new()
            .args(&args)
            .status(2)
            .stderr_has("run.json")
            .stderr_has("samples = 4294967295 is out of range")
            .stderr_has("model.max_reasks = 4294967295")
            .stderr_has("model.temperature")
            .run();
        no_panic(&out);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a tampered run.json hung"
    );
}

// ── --resume and its recorded settings ───────────────────────────────────────────────

#[test]
fn resume_refuses_flags_that_conflict_with_the_recorded_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = shipped_run_copy(dir.path());
    let out = Test::new()
        .args(["run", "--resume"])
        .arg(&run)
        .args([
            "--samples",
            "3",
            "--model",
            "other-model",
            "--max-reasks",
            "0",
            "--record-mode",
            "all",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ])
        .status(2)
        .stderr_has("--samples 3 (recorded: 1)")
        .stderr_has("--model other-model (recorded: smollm2-135m-instruct)")
        .stderr_has("--max-reasks 0 (recorded: 2)")
        .stderr_has("--record-mode all")
        .stderr_has("--from-transcript")
        .run();
    no_panic(&out);

    // Paths conflict when the recorded one exists here; a moved run dir may name new ones.
    edit_run_json(&run, |v| {
        v["workspace"] = json!(repo_root().join(WORKSPACE));
        v["stage"]["path"] = json!(repo_root().join("hats/deployment"));
    });
    let out = Test::new()
        .args(["run", "examples/orders-pipeline-gaps", "--resume"])
        .arg(&run)
        .args(["--base-url", "http://127.0.0.1:9/v1"])
        .status(2)
        .stderr_has("WORKSPACE examples/orders-pipeline-gaps (recorded: ")
        .run();
    no_panic(&out);
    let out = Test::new()
        .args(["run", WORKSPACE, "--resume"])
        .arg(&run)
        .args(["--stage", "hats/deployment", "--samples", "1"])
        .args([
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--max-retries",
            "0",
            "--quiet",
        ])
        .any_status()
        .run();
    no_panic(&out);
    assert!(
        !out.stderr.contains("conflict"),
        "flags equal to the recorded values are accepted:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_asks_as_many_samples_as_were_recorded() {
    // A run recorded with --samples 3 that stopped after its hats: the resume asks each
    // judging step three times although no --samples flag is given.
    let reviewer = FakeReviewer::new();
    let first = FakeOpenAi::with_handler({
        let r = reviewer.clone();
        move |req| {
            if req.body["response_format"]["json_schema"]["name"] == "hat_answer" {
                r.answer(req)
            } else {
                Reply::json(
                    401,
                    json!({"error": {"code": "invalid_api_key", "message": "no"}}),
                )
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    run_in(&first, &run)
        .args(["--samples", "3", "--max-retries", "0"])
        .status(3)
        .run();
    first.stop();
    let second = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    Test::new()
        .args(["run", "--resume"])
        .arg(&run)
        .args(["--base-url", &second.url(), "--quiet"])
        .any_status()
        .run();
    let review_asks = second
        .requests()
        .iter()
        .filter(|r| r.body["response_format"]["json_schema"]["name"] == "review_answer")
        .count();
    assert_eq!(review_asks, 3, "the recorded --samples 3 was not used");
}

// ── render --against ──────────────────────────────────────────────────────────────────

#[test]
fn render_against_a_run_without_a_readable_report_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = shipped_run_copy(dir.path());
    let render = |status: i32, has: &str| {
        Test::new()
            .args([
                "render",
                "signal",
                WORKSPACE,
                "--stage",
                "hats/deployment",
                "--against",
            ])
            .arg(&run)
            .status(status)
            .stderr_has("report.json")
            .stderr_has(has)
            .run()
    };
    no_panic(&render(2, "needs the verdicts"));
    std::fs::write(run.join("report.json"), "{\"requirements\": [tru").unwrap();
    no_panic(&render(2, "not a report this hatrack can read"));
}

/// An artifact of the run that cannot be read (here: not UTF-8) is reported, naming the
/// file, never skipped: a request rendered without it would differ from the recorded one
/// for a reason that is not a change.
#[test]
fn render_against_a_run_with_an_unreadable_artifact_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = shipped_run_copy(dir.path());
    let artifacts = run.join("artifacts/pipeline-engineer/deploy");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("broken.md"), b"plan \xff\xfe\n").unwrap();
    let out = Test::new()
        .args(["render", "sre", WORKSPACE, "--stage", "hats/deployment"])
        .arg("--against")
        .arg(&run)
        .status(2)
        .stderr_has("artifacts/pipeline-engineer/deploy/broken.md")
        .stderr_has("an artifact of hat `pipeline-engineer`")
        .stderr_has("not UTF-8")
        .run();
    no_panic(&out);
}

// ── I/O ──────────────────────────────────────────────────────────────────────────────

#[test]
fn an_unwritable_run_directory_is_an_io_error_not_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = Test::new()
        .args([
            "run",
            WORKSPACE,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--transcript",
        ])
        .arg(file.join("run"))
        .status(2)
        .stderr_has("error: I/O: ")
        .stderr_has("hint: this is the machine, not the command line")
        .run();
    no_panic(&out);
}

// ── provider errors: classified, hinted, retried only when it can help ───────────────

struct ProviderCase {
    reply: Reply,
    says: &'static [&'static str],
    hint: &'static str,
    requests: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_errors_are_named_for_their_cause_and_not_retried_when_futile() {
    let cases = vec![
        // A provider's "context length exceeded" ends only its step, not the run (exit 1):
        // tests/context_window.rs.
        ProviderCase {
            reply: Reply::json(
                401,
                json!({"error": {"message": "Incorrect API key provided: sk-xx.", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            ),
            says: &["refused the API key", "HTTP 401"],
            hint: "OPENAI_API_KEY",
            requests: 1,
        },
        ProviderCase {
            reply: Reply::raw(403, &[], "Forbidden"),
            says: &["refused the API key", "HTTP 403"],
            hint: "OPENAI_API_KEY",
            requests: 1,
        },
        ProviderCase {
            reply: Reply::json(
                429,
                json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "code": "insufficient_quota"}}),
            ),
            says: &["no quota or credit", "HTTP 429"],
            hint: "billing",
            requests: 1,
        },
        ProviderCase {
            reply: Reply::json(
                404,
                json!({"error": {"message": "The model `fake-model` does not exist or you do not have access to it.", "type": "invalid_request_error", "code": "model_not_found"}}),
            ),
            says: &["does not know this URL or model", "HTTP 404"],
            hint: "--model",
            requests: 1,
        },
        ProviderCase {
            reply: Reply::raw(404, &[], ""),
            says: &["HTTP 404"],
            hint: "--base-url",
            requests: 1,
        },
        ProviderCase {
            reply: Reply::json(
                422,
                json!({"error": {"message": "temperature: must be <= 2"}}),
            ),
            says: &["rejected the request", "HTTP 422"],
            hint: "[model.request]",
            requests: 1,
        },
        // Retryable ones are retried (1 + --max-retries 1).
        ProviderCase {
            reply: Reply::rate_limited(Some("0")),
            says: &["rate-limiting", "HTTP 429", "2 attempt(s)"],
            hint: "--jobs",
            requests: 2,
        },
        ProviderCase {
            reply: Reply::server_error(),
            says: &["server error", "HTTP 500"],
            hint: "--resume",
            requests: 2,
        },
    ];
    for case in cases {
        let reply = case.reply.clone();
        let server = FakeOpenAi::with_handler(move |_| reply.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut test = run_in(&server, &dir.path().join("run"))
            .args(["--max-retries", "1"])
            .status(3)
            .stderr_has("hat/pipeline-engineer")
            .stderr_has("hint: ")
            .stderr_has(case.hint);
        for s in case.says {
            test = test.stderr_has(*s);
        }
        let out = test.run();
        no_panic(&out);
        assert_eq!(
            server.count(),
            case.requests,
            "requests made for {:?}\n{}",
            case.says,
            out.stderr
        );
        if case.requests == 1 {
            assert!(
                !out.stderr
                    .contains("check --base-url / OPENAI_BASE_URL, OPENAI_API_KEY and --model"),
                "the old catch-all hint:\n{}",
                out.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_of_1e20_neither_panics_nor_waits_forever() {
    for value in [
        "1e20",
        "inf",
        "18446744073709551616",
        "-5",
        "NaN",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        let server = FakeOpenAi::with_handler(move |_| Reply::rate_limited(Some(value))).await;
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(&server, &dir.path().join("run"))
            .args(["--max-retries", "0"])
            .status(3)
            .stderr_has("HTTP 429")
            .run();
        no_panic(&out);
        assert_eq!(server.count(), 1);
    }
    // And the wait it causes is capped (library level, with a 1 s cap).
    let server =
        FakeOpenAi::scripted(vec![Reply::rate_limited(Some("1e20")), Reply::chat("ok")]).await;
    let mut s = live_settings(&server.url());
    s.retry_after_max = Duration::from_secs(1);
    let model = LiveModel::new(&s).unwrap();
    let started = Instant::now();
    let reply = model.complete(&request()).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("ok"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_near_2_pow_63_is_refused_and_cannot_wrap_the_budget() {
    let big = (1u64 << 63) - 1;
    let server = FakeOpenAi::with_handler(move |_| Reply::usage(big, big)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(&server, &dir.path().join("run"))
        .args(["--budget", "100000", "--max-retries", "2"])
        .status(3)
        .stderr_has("usage.prompt_tokens = 9223372036854775807")
        .stderr_has("cannot be trusted")
        .run();
    no_panic(&out);
    assert_eq!(server.count(), 1, "an impossible answer is not retried");
}

#[test]
fn replayed_usage_near_2_pow_63_cannot_wrap_the_totals() {
    // A transcript edited so that two exchanges claim ~2^63 tokens each: the replay reports
    // saturated (clamped) totals instead of wrapping to small numbers.
    let dir = tempfile::tempdir().unwrap();
    let run = shipped_run_copy(dir.path());
    edit_run_json(&run, |v| {
        v["stage"]["path"] = json!(repo_root().join("hats/deployment"));
        v["workspace"] = json!(repo_root().join(WORKSPACE));
    });
    let path = run.join("exchanges.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let big = (1u64 << 63) - 1;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["usage"]["prompt_tokens"] = json!(big);
            e["usage"]["completion_tokens"] = json!(big);
            e["duration_ms"] = json!(u64::MAX);
            e.to_string()
        })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let out = Test::new()
        .arg("replay")
        .arg(&run)
        .args(["--quiet", "--out"])
        .arg(dir.path().join("out"))
        .any_status()
        .run();
    no_panic(&out);
    assert!(matches!(out.status, 0 | 1), "{}", out.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    let prompt = report["run"]["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt >= 1 << 40, "the total wrapped: {prompt}");
}

// ── sizes ────────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_cap_fails_with_exit_3_and_is_not_retried() {
    // 9 MiB with an honest Content-Length (refused before reading), and an endless chunked
    // body (read until the cap, then dropped).
    for reply in [Reply::huge(9 * 1024 * 1024), Reply::endless()] {
        let server = FakeOpenAi::with_handler(move |_| reply.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = run_in(&server, &dir.path().join("run"))
            .args(["--max-retries", "2"])
            .status(3)
            .stderr_has("larger than the cap of 8388608 bytes")
            .stderr_has("max_response_bytes")
            .run();
        no_panic(&out);
        assert_eq!(server.count(), 1, "a too-large answer is not asked again");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_is_configurable_in_hatrack_toml() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    support::copy_dir(&repo_root().join(WORKSPACE), &ws);
    let toml = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    let toml = if toml.contains("[model]") {
        toml.replacen("[model]", "[model]\nmax_response_bytes = 4096", 1)
    } else {
        format!("{toml}\n[model]\nmax_response_bytes = 4096\n")
    };
    std::fs::write(ws.join("hatrack.toml"), toml).unwrap();
    let server = FakeOpenAi::with_handler(|_| Reply::huge(10_000)).await;
    let out = Test::new()
        .arg("run")
        .arg(&ws)
        .args([
            "--model",
            "fake-model",
            "--base-url",
            &server.url(),
            "--quiet",
            "--transcript",
        ])
        .arg(dir.path().join("run"))
        .status(3)
        .stderr_has("larger than the cap of 4096 bytes")
        .run();
    no_panic(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_bad_answer_is_quoted_back_as_an_excerpt_not_whole() {
    // The first answer is 1 MB of cut-off text; the re-ask must carry the reason and a
    // bounded excerpt, so the second request is small.
    let reviewer = FakeReviewer::new();
    let long = format!(
        "{{\"artifacts\": [{{\"path\": \"a.md\", \"content\": \"{}",
        "y".repeat(1_000_000)
    );
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let server = FakeOpenAi::with_handler(move |req| {
        if asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::length(&long)
        } else {
            reviewer.answer(req)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(&server, &dir.path().join("run")).any_status().run();
    no_panic(&out);
    let requests = server.requests();
    let reask = requests
        .iter()
        .find(|r| r.message_count() == 4)
        .expect("a re-ask was made");
    let first = &requests[0];
    assert!(
        reask.body_text.len() < first.body_text.len() + 8 * 1024,
        "the re-ask grew by {} bytes",
        reask.body_text.len() - first.body_text.len()
    );
    let text = reask.messages_text();
    assert!(text.contains("bytes left out"), "no excerpt marker");
    assert!(text.contains("cut off at the token limit"), "no reason");
    // The report keeps the reason, bounded.
    let report = std::fs::read_to_string(dir.path().join("run/report.json")).unwrap();
    assert!(
        report.len() < 500_000,
        "report.json quotes the whole answer"
    );
}

// ── TLS roots only for https ─────────────────────────────────────────────────────────

#[test]
fn an_http_client_is_built_without_loading_tls_roots() {
    hatrack::install_crypto_provider();
    // Loading the system's root certificates takes milliseconds (~18 ms in a debug build
    // here); an http client loads none, so its fastest of five builds is far below that.
    // (An https client is not built here: a machine without a CA store could not.)
    let settings = ModelSettings::new("m", "http://127.0.0.1:9/v1");
    let fastest = (0..5)
        .map(|_| {
            let started = Instant::now();
            LiveModel::new(&settings).unwrap();
            started.elapsed()
        })
        .min()
        .unwrap();
    assert!(fastest < Duration::from_millis(3), "{fastest:?}");
}

// ── helpers ──────────────────────────────────────────────────────────────────────────

fn live_settings(url: &str) -> ModelSettings {
    hatrack::install_crypto_provider();
    ModelSettings {
        timeout: Duration::from_secs(5),
        max_retries: 1,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..ModelSettings::new("test-model", url)
    }
}

fn request() -> ModelRequest {
    ModelRequest::new(
        "hat/a",
        1,
        json!({"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}),
    )
}

// ── property tests: arbitrary provider responses never panic the client ──────────────

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = u16> {
        prop_oneof![
            Just(200u16),
            Just(400),
            Just(401),
            Just(404),
            Just(429),
            Just(500),
            200u16..600
        ]
    }

    /// A chat body with random parts replaced: wrong types, huge and negative numbers,
    /// missing fields, error objects.
    fn mutated_body() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(1e308)),
            Just(json!(-1)),
            Just(json!(0.5)),
            Just(json!("12")),
            Just(json!(null)),
            any::<u64>().prop_map(|n| json!(n)),
        ];
        let content = prop_oneof![
            Just(json!(null)),
            Just(json!(42)),
            Just(json!(["a"])),
            ".{0,40}".prop_map(|s| json!(s)),
        ];
        let error = prop_oneof![
            Just(json!(null)),
            Just(json!({"code": "context_length_exceeded"})),
            Just(json!({"type": "exceed_context_size_error"})),
            Just(json!("plain")),
        ];
        (number.clone(), number, content, error, any::<bool>(), any::<bool>()).prop_map(
            |(p, c, content, error, drop_choices, with_error)| {
                let mut body = json!({
                    "id": "x", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": p, "completion_tokens": c, "prompt_tokens_details": {"cached_tokens": p}}
                });
                if drop_choices {
                    body.as_object_mut().unwrap().remove("choices");
                }
                if with_error {
                    body["error"] = error;
                }
                body.to_string()
            },
        )
    }

    fn any_body() -> impl Strategy<Value = String> {
        prop_oneof![
            mutated_body(),
            ".{0,200}",
            Just(String::new()),
            Just("{".into())
        ]
    }

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,24}",
            Just("1e20".into()),
            Just("-0".into()),
            Just("inf".into()),
            Just("0.000000001".into()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever status, Retry-After and body the provider sends, the client returns an
        /// answer or a typed provider error — never a panic, never a hang.
        #[test]
        fn any_response_is_an_answer_or_a_typed_error(
            status in status(),
            retry_after in header_value(),
            body in any_body(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let reply = Reply::raw(status, &[("retry-after", retry_after.trim()), ("content-type", "application/json")], &body);
                let server = FakeOpenAi::with_handler(move |_| reply.clone()).await;
                let mut s = live_settings(&server.url());
                s.max_retries = 1;
                s.retry_after_max = Duration::from_millis(10);
                let model = LiveModel::new(&s).unwrap();
                let started = Instant::now();
                match model.complete(&request()).await {
                    Ok(reply) => {
                        prop_assert!(reply.usage.prompt_tokens <= hatrack::model::Usage::MAX_PER_EXCHANGE);
                        let _ = reply.usage.total();
                    }
                    Err(ModelError::Provider { kind, attempts, .. }) => {
                        prop_assert!((1..=2).contains(&attempts));
                        if !kind.retryable() {
                            prop_assert_eq!(attempts, 1, "{:?} was retried", kind);
                        }
                    }
                    Err(other) => prop_assert!(false, "not a provider error: {other:?}"),
                }
                prop_assert!(started.elapsed() < Duration::from_secs(5));
                Ok::<(), TestCaseError>(())
            })?;
        }

        /// The parsing helpers alone, on anything.
        #[test]
        fn parsing_helpers_never_panic(text in ".{0,300}", status in 0u16..1000, max in 0usize..5000) {
            let _ = hatrack::model::openai::parse_retry_after(&text, Duration::from_secs(60));
            let _ = hatrack::model::openai::classify_status(status, &text);
            let cut = hatrack::model::structured::head_and_tail(&text, max);
            prop_assert!(cut.len() <= text.len().max(max + 64));
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let reply = hatrack::model::ModelReply::from_body(v.clone(), 0, hatrack::model::ReplySource::Live);
                let _ = reply.usage.total();
                let _ = hatrack::model::Usage::implausible(&v);
            }
        }
    }

    fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_string()),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("-0".to_string()),
            "[0-9]{0,25}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any number for any numeric flag: parsed in range or refused, never a panic.
        #[test]
        fn numeric_flags_are_in_range_or_refused(
            flag in prop::sample::select(vec!["--samples", "--jobs", "--max-reasks", "--max-retries", "--timeout", "--budget"]),
            value in number_text(),
        ) {
            use clap::Parser;
            let parsed = hatrack::cli::Cli::try_parse_from(["hatrack", "run", flag, &value]);
            if let Ok(cli) = parsed {
                let hatrack::cli::Command::Run(run) = cli.command else { panic!("not run") };
                let m = &run.model;
                prop_assert!(run.samples.is_none_or(|n| (1..=32).contains(&n)));
                prop_assert!(m.jobs.is_none_or(|n| (1..=64).contains(&n)));
                prop_assert!(m.max_reasks.is_none_or(|n| n <= 10));
                prop_assert!(m.max_retries.is_none_or(|n| n <= 20));
                prop_assert!(m.timeout.is_none_or(|n| (1..=3600).contains(&n)));
                prop_assert!(m.budget.is_none_or(|n| n >= 1));
            }
        }

        /// Any number for any numeric key of hatrack.toml: a config in range or an error
        /// naming the file, never a panic.
        #[test]
        fn numeric_config_keys_are_in_range_or_refused(
            key in prop::sample::select(vec![
                "[model]\njobs", "[model]\nmax_reasks", "[model]\nmax_retries", "[model]\ntimeout_secs",
                "[model]\nbudget", "[model]\nmax_tokens", "[model]\ntemperature", "[model]\nseed",
                "[model]\nmax_response_bytes", "[limits]\nmax_file_bytes", "[limits]\nmax_input_bytes",
            ]),
            value in number_text(),
        ) {
            let text = format!("{key} = {value}\n");
            match hatrack::config::ConfigFile::parse(&text, Path::new("ws/hatrack.toml")) {
                Ok(c) => {
                    prop_assert!(c.model.jobs.is_none_or(|n| (1..=64).contains(&n)));
                    prop_assert!(c.model.temperature.is_none_or(|t| (0.0..=2.0).contains(&t)));
                    prop_assert!(c.limits.max_file_bytes >= 1);
                }
                Err(e) => prop_assert!(e.to_string().contains("ws/hatrack.toml"), "{}", e),
            }
        }
    }

    #[test]
    fn kinds_are_distinct_and_described() {
        use ProviderErrorKind::*;
        let all = [
            ContextExceeded,
            Auth,
            Quota,
            NotFound,
            RateLimited,
            Server,
            Timeout,
            Connection,
            BadRequest,
            BadResponse,
            TooLarge,
        ];
        let mut seen = std::collections::HashSet::new();
        for k in all {
            assert!(seen.insert(k.describe()), "{k:?}");
        }
    }
}
