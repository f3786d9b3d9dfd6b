//! Every request fits the model's context window, through the binary against the fake OpenAI
//! server (a stand-in for a model, scripted by `FakeReviewer`): a request the estimator says
//! cannot fit is never sent, and ends only its own step (`context exceeded`, verdicts
//! unknown); so does a provider's "context length exceeded" on a re-ask; re-ask notes and
//! re-sent tool output are cut to fit with a visible note; the window comes from
//! `[model] context_tokens`, else the server, and run.json records it so a replay asks no
//! server.

mod support;

use std::path::{Path, PathBuf};

use hatrack::model::window::{estimate_needed, usable};
use serde_json::{json, Value};
use support::fake_openai::{chat_body, FakeOpenAi, Reply, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::{copy_dir, repo_root, Test};

/// The example workspace with `ops/monitoring.yml` grown by 40 KB, quoted whole: the SRE
/// reads it (and so do its constraint judge and the review agent, which sees every input),
/// the Pipeline Engineer does not.
fn big_runbook_workspace(dir: &Path, model: &str) -> PathBuf {
    let ws = dir.join("ws");
    copy_dir(&repo_root().join("examples/orders-pipeline"), &ws);
    let line = "# check the freshness alert, then page the data on-call engineer\n";
    let grown = std::fs::read_to_string(ws.join("ops/monitoring.yml")).unwrap()
        + &line.repeat(40_000 / line.len());
    std::fs::write(ws.join("ops/monitoring.yml"), grown).unwrap();
    let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    let inputs = &config[..config.find("[limits]").unwrap()];
    std::fs::write(
        ws.join("hatrack.toml"),
        format!(
            "{inputs}[limits]\nmax_file_bytes = 100000\nmax_input_bytes = 200000\nmax_artifact_bytes = 12000\n\n[model]\n{model}\n[agent]\ntools = false\n"
        ),
    )
    .unwrap();
    ws
}

fn run(server: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

/// The fake reviewer behind a server that says its context window is `tokens`.
async fn reviewer_saying_window(tokens: u64) -> FakeOpenAi {
    let server = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    server.says_context(tokens);
    server
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn schema_name(req: &SeenRequest) -> String {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The replay of `run_dir`, offline, reproduces its report.json byte for byte.
fn replays_identically(run_dir: &Path, status: i32) {
    let before = std::fs::read(run_dir.join("report.json")).unwrap();
    Test::new()
        .arg("replay")
        .arg(run_dir)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .status(status)
        .run();
    assert!(std::fs::read(run_dir.join("report.json")).unwrap() == before);
}

/// The steps that could not fit, their requirements, and what a user is told.
fn assert_overflowed(report: &Value, stdout: &str, overflowed: &[&str], answered: &[&str]) {
    for id in overflowed {
        assert_eq!(step(report, id)["status"], "context-exceeded", "{id}");
    }
    for id in answered {
        assert_eq!(step(report, id)["status"], "answered", "{id}");
    }
    for r in report["requirements"].as_array().unwrap() {
        if overflowed.contains(&r["judged_by"].as_str().unwrap()) {
            assert_eq!(r["verdict"], "unknown", "{r}");
            assert_eq!(r["cause"]["cause"], "context-exceeded", "{r}");
        }
    }
    assert!(stdout.contains("context exceeded"), "{stdout}");
    let hint = stdout.lines().find(|l| l.starts_with("hint: ")).unwrap();
    assert!(
        hint.contains("[limits]") && hint.contains("[model] context_tokens"),
        "{hint}"
    );
}

/// What the fake (a stand-in for a model) was asked, by answer schema, sorted.
fn asked(server: &FakeOpenAi) -> Vec<String> {
    let mut asked: Vec<String> = server.requests().iter().map(schema_name).collect();
    asked.sort();
    asked
}

const ALL_STEPS: [&str; 6] = [
    "hat/pipeline-engineer",
    "hat/sre",
    "judge/pipeline-engineer",
    "judge/sre",
    "review/reliability",
    "signal",
];

#[tokio::test(flavor = "multi_thread")]
async fn inputs_larger_than_the_context_send_nothing_and_every_step_ends_unknown_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ws = big_runbook_workspace(dir.path(), "context_tokens = 16384\n");
    let server = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).status(1).run();
    // Every step is shown every input: none fits, so nothing is sent at all.
    assert!(asked(&server).is_empty());
    assert!(
        server.gets().is_empty(),
        "the window was configured: no probe"
    );
    let report = json_file(&run_dir.join("report.json"));
    assert_overflowed(&report, &out.stdout, &ALL_STEPS, &[]);
    let sre = step(&report, "hat/sre");
    assert_eq!(sre["attempts"], 0, "never sent");
    assert!(sre["errors"][0]
        .as_str()
        .unwrap()
        .contains("context window is 16384 tokens"));
    let run_json = json_file(&run_dir.join("run.json"));
    assert_eq!(run_json["model"]["context_tokens"], 16384);
    assert_eq!(run_json["model"]["context_from"], "[model] context_tokens");
    replays_identically(&run_dir, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_that_no_longer_fit_end_unknown_and_the_rest_of_the_stage_runs() {
    // The Pipeline Engineer's artifact is 6 KB: the steps shown it no longer fit a window
    // with room for the first hat's request and 1,000 tokens more.
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    copy_dir(&repo_root().join("examples/orders-pipeline"), &ws);
    let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    let config = config.replace("max_artifact_bytes = 2000", "max_artifact_bytes = 12000");
    std::fs::write(ws.join("hatrack.toml"), &config).unwrap();
    let reviewer = FakeReviewer::new()
        .artifact_text(&"The plan retries every task three times.\n".repeat(150));
    let handler = {
        let r = reviewer.clone();
        move |req: &SeenRequest| r.answer(req)
    };
    let sizing = FakeOpenAi::with_handler(handler.clone()).await;
    run(&sizing, &ws, &dir.path().join("sizing")).run();
    let first = estimate_needed(&sizing.requests()[0].body);
    let window = (first + 1000) * 100 / 95 + 100;
    std::fs::write(
        ws.join("hatrack.toml"),
        config.replace(
            "[model]\n",
            &format!("[model]\ncontext_tokens = {window}\n"),
        ),
    )
    .unwrap();
    let server = FakeOpenAi::with_handler(handler).await;
    let run_dir = dir.path().join("run");
    let out = run(&server, &ws, &run_dir).status(1).run();
    for r in server.requests() {
        assert!(estimate_needed(&r.body) <= usable(window));
    }
    assert_eq!(asked(&server), ["hat_answer"]);
    let report = json_file(&run_dir.join("report.json"));
    assert_overflowed(&report, &out.stdout, &ALL_STEPS[1..], &ALL_STEPS[..1]);
    replays_identically(&run_dir, 1);
}

/// The window is asked by the run that records run.json (while its stage loads), and by no
/// other: a re-run over that run.json and a resumed run size their requests as it recorded.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_run_that_records_run_json_asks_the_server_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let ws = big_runbook_workspace(dir.path(), "");
    let server = reviewer_saying_window(16384).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(1).run();
    let mut paths: Vec<String> = server.gets().iter().map(|g| g.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/props", "/v1/models"], "asked once, both together");

    run(&server, &ws, &run_dir).status(1).run();
    Test::new()
        .args(["run", "--resume"])
        .arg(&run_dir)
        .arg("--base-url")
        .arg(server.url())
        .status(1)
        .run();
    assert_eq!(
        server.gets().len(),
        2,
        "neither the re-run nor --resume asks"
    );
    let run_json = json_file(&run_dir.join("run.json"));
    assert_eq!(run_json["model"]["context_tokens"], 16384);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_comes_from_the_server_and_a_replay_asks_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let ws = big_runbook_workspace(dir.path(), "");
    let server = reviewer_saying_window(16384).await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(1).run();
    // llama.cpp's /props is asked (together with /v1/models, in one round trip).
    assert!(
        server.gets().iter().any(|get| get.path == "/props"),
        "{:?}",
        server.gets().iter().map(|g| &g.path).collect::<Vec<_>>()
    );
    let run_json = json_file(&run_dir.join("run.json"));
    assert_eq!(run_json["model"]["context_tokens"], 16384);
    assert_eq!(run_json["model"]["context_from"], "server");
    let report = json_file(&run_dir.join("report.json"));
    assert_eq!(step(&report, "hat/sre")["status"], "context-exceeded");

    // A server that says nothing: the documented default, which these inputs fit.
    let quiet = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    let other = dir.path().join("other");
    run(&quiet, &ws, &other).status(0).run();
    let run_json = json_file(&other.join("run.json"));
    assert_eq!(run_json["model"]["context_tokens"], 32768);
    assert_eq!(run_json["model"]["context_from"], "default");

    server.stop();
    replays_identically(&run_dir, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_ask_the_provider_refuses_as_too_long_ends_its_step_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = FakeReviewer::new();
    // The review agent's first answer is not JSON; its re-ask is refused as llama.cpp
    // refuses a prompt longer than its context.
    let server = FakeOpenAi::with_handler(move |req| match schema_name(req).as_str() {
        "review_answer" if req.message_count() == 2 => Reply::chat("I think it is fine."),
        "review_answer" => Reply::json(
            400,
            json!({"error": {"code": 400, "message": "the request exceeds the available context size (8244 tokens > 8192), try increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 8244, "n_ctx": 8192}}),
        ),
        _ => reviewer.answer(req),
    })
    .await;
    let run_dir = dir.path().join("run");
    let out = run(&server, Path::new("examples/orders-pipeline"), &run_dir)
        .status(1)
        .run();
    let report = json_file(&run_dir.join("report.json"));
    assert_overflowed(
        &report,
        &out.stdout,
        &["review/reliability"],
        &["hat/pipeline-engineer", "hat/sre", "judge/sre", "signal"],
    );
    let review = step(&report, "review/reliability");
    assert_eq!(review["attempts"], 2);
    assert!(review["errors"][1]
        .as_str()
        .unwrap()
        .contains("refused the request as longer than the model's context window"));
    // Not retried: one re-ask, refused once.
    let reviews = server
        .requests()
        .iter()
        .filter(|r| schema_name(r) == "review_answer")
        .count();
    assert_eq!(reviews, 2);
    // The refusal is recorded, and replays as the same refusal.
    replays_identically(&run_dir, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_ask_note_is_cut_to_fit_with_a_visible_note() {
    let dir = tempfile::tempdir().unwrap();
    let ws = big_runbook_workspace(dir.path(), "");
    // The first ask's size, from a run that fits easily.
    let probe = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    run(&probe, &ws, &dir.path().join("first"))
        .any_status()
        .run();
    let first = probe
        .requests()
        .into_iter()
        .find(|r| schema_name(r) == "hat_answer")
        .unwrap();
    // A window with room for that ask and 400 tokens more: not for a full re-ask note.
    let window = (estimate_needed(&first.body) + 400) * 100 / 95 + 100;
    let config = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        config.replace(
            "[model]\n",
            &format!("[model]\ncontext_tokens = {window}\n"),
        ),
    )
    .unwrap();
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| match schema_name(req).as_str() {
        "hat_answer" if req.message_count() == 2 => {
            Reply::json(200, chat_body(&"not json ".repeat(600), "stop", 10, 5))
        }
        _ => reviewer.answer(req),
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).any_status().run();
    let reasks: Vec<SeenRequest> = server
        .requests()
        .into_iter()
        .filter(|r| schema_name(r) == "hat_answer" && r.message_count() == 4)
        .collect();
    assert!(!reasks.is_empty());
    for r in &reasks {
        assert!(estimate_needed(&r.body) <= usable(window));
        let note = r.body["messages"][2]["content"].as_str().unwrap();
        assert!(
            note.contains("[hatrack: ") && note.contains("cut to fit the model's context window"),
            "{note}"
        );
        // The step's own prompt is sent whole: as its first ask sent it.
        assert!(server
            .requests()
            .iter()
            .any(|a| a.message_count() == 2 && a.body["messages"][1] == r.body["messages"][1]));
    }
    let report = json_file(&run_dir.join("report.json"));
    let pe = step(&report, "hat/pipeline-engineer");
    assert_eq!(
        (pe["status"].as_str(), pe["attempts"].as_u64()),
        (Some("answered"), Some(2))
    );
}

/// A reply asking for one `read_file` call.
fn read_file(path: &str) -> Reply {
    let call = json!({"id": "call_0", "type": "function", "function": {"name": "read_file",
        "arguments": json!({"path": path, "start_line": 1, "max_lines": 2000}).to_string()}});
    let mut body = chat_body("", "tool_calls", 20, 10);
    body["choices"][0]["message"] =
        json!({"role": "assistant", "content": null, "tool_calls": [call]});
    Reply::json(200, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_is_told_to_answer_on_its_last_turn_and_its_tool_output_is_cut_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("notes.md"),
        "# Notes\n\nFreshness alerts page the data on-call within 15 minutes.\n",
    )
    .unwrap();
    let line = "The rollback plan restores the previous DAG version within one hour.\n";
    std::fs::write(ws.join("big.md"), line.repeat(24_000 / line.len())).unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        format!(
            "{}\n[model]\ncontext_tokens = 4096\n\n[agent]\nmax_turns = 3\n",
            support::inputs_bound_to("notes.md")
        ),
    )
    .unwrap();
    let reviewer = FakeReviewer::new();
    // Each hat reads big.md, then notes.md, then would read again: its last turn answers.
    let server = FakeOpenAi::with_handler(move |req| {
        let turn = req.message_count().saturating_sub(2) / 2;
        match (schema_name(req).as_str(), turn) {
            ("hat_answer", 0) => read_file("big.md"),
            ("hat_answer", 1) => read_file("notes.md"),
            ("hat_answer", _) if req.body.get("tool_choice").is_none() => read_file("big.md"),
            _ => reviewer.answer(req),
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).any_status().run();
    let hats: Vec<SeenRequest> = server
        .requests()
        .into_iter()
        .filter(|r| schema_name(r) == "hat_answer")
        .collect();
    assert_eq!(hats.len(), 2 * 3, "three turns per hat");
    for r in &hats {
        assert!(estimate_needed(&r.body) <= usable(4096));
        let last = r.message_count() == 6;
        assert_eq!(r.body.get("tool_choice") == Some(&json!("none")), last);
        if r.message_count() > 2 {
            let big = r.body["messages"][3]["content"].as_str().unwrap();
            assert!(
                big.contains("cut to fit the model's context window"),
                "{big}"
            );
        }
    }
    let report = json_file(&run_dir.join("report.json"));
    assert_eq!(step(&report, "hat/sre")["status"], "answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_ask_refused_as_too_long_in_either_providers_words_ends_only_its_step() {
    let refusals = [
        // llama.cpp's shape, from a real run.
        json!({"error": {"code": 400, "message": "the request exceeds the available context size (8244 tokens > 8192), try increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 8244, "n_ctx": 8192}}),
        // OpenAI's shape.
        json!({"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
    ];
    for refusal in refusals {
        let dir = tempfile::tempdir().unwrap();
        let reviewer = FakeReviewer::new();
        let server = FakeOpenAi::with_handler(move |req| {
            if req.messages_text().contains("# Your role: SRE\n") {
                Reply::json(400, refusal.clone())
            } else {
                reviewer.answer(req)
            }
        })
        .await;
        let run_dir = dir.path().join("run");
        let out = run(&server, Path::new("examples/orders-pipeline"), &run_dir)
            .status(1)
            .run();
        assert!(!out.stderr.contains("error:"), "{}", out.stderr);
        let report = json_file(&run_dir.join("report.json"));
        assert_overflowed(
            &report,
            &out.stdout,
            &["hat/sre"],
            &[
                "hat/pipeline-engineer",
                "judge/sre",
                "review/reliability",
                "signal",
            ],
        );
        assert_eq!(step(&report, "hat/sre")["attempts"], 1, "not retried");
    }
}
