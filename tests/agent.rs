//! Steps as agents: read-only, confined workspace tools through `tools` / `tool_calls`,
//! every turn recorded and replayed. The "agent" here is a scripted stand-in (the fake
//! OpenAI server and `FakeReviewer`), not a model: it asks for the tool calls a test
//! scripts, then answers.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::fake_openai::{chat_body, FakeOpenAi, Reply, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const NOTES_LINE: &str = "Freshness alerts page the data on-call within 15 minutes.";
const DEEP_LINE: &str = "The rollback plan restores the previous DAG version within one hour.";
const SECRET: &str = "sentinel-outside-the-workspace-4711";

/// A workspace with one bound file (`notes.md`), one file no Reads item binds
/// (`docs/rollback.md`), an `.env`, a binary, and a symlink to a file outside it.
fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("docs")).unwrap();
    std::fs::write(ws.join("notes.md"), format!("# Notes\n\n{NOTES_LINE}\n")).unwrap();
    std::fs::write(
        ws.join("docs/rollback.md"),
        format!("# Rollback\n{DEEP_LINE}\n"),
    )
    .unwrap();
    std::fs::write(ws.join(".env"), format!("TOKEN={SECRET}\n")).unwrap();
    std::fs::write(ws.join("blob.bin"), [0u8, 159, 146, 150]).unwrap();
    std::fs::write(dir.join("outside.txt"), format!("{SECRET}\n")).unwrap();
    std::os::unix::fs::symlink(dir.join("outside.txt"), ws.join("docs/link.md")).unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    ws
}

/// A reply asking for tool calls.
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

fn tool_results(req: &SeenRequest) -> Vec<String> {
    req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn schema_name(req: &SeenRequest) -> String {
    req.body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Answers each request: the next scripted tool turn for this kind of step, then the
/// reviewer's answer.
async fn scripted(
    reviewer: FakeReviewer,
    script: impl Fn(&str) -> Vec<Vec<(&'static str, Value)>> + Send + Sync + 'static,
) -> FakeOpenAi {
    FakeOpenAi::with_handler(move |req| {
        let turns = script(&schema_name(req));
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

fn run(server: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .args(["--model", "fake-model", "--base-url"])
        .arg(server.url())
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_lists_and_reads_over_turns_and_the_run_replays_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = scripted(FakeReviewer::new(), |schema| {
        if schema == "hat_answer" {
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
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(0).run();

    // Each hat: three tool turns, then the answer; the last request carries every result.
    let hat_requests: Vec<SeenRequest> = server
        .requests()
        .into_iter()
        .filter(|r| schema_name(r) == "hat_answer")
        .collect();
    assert_eq!(hat_requests.len(), 2 * 4);
    let last = hat_requests
        .iter()
        .max_by_key(|r| tool_results(r).len())
        .unwrap();
    let results = tool_results(last);
    assert_eq!(results.len(), 3);
    assert!(results[0].contains("docs/rollback.md (") && results[0].contains("notes.md ("));
    assert!(
        !results[0].contains(".env"),
        "denied files are not even listed"
    );
    assert!(results[1].contains(NOTES_LINE));
    assert!(results[2].contains(DEEP_LINE));
    assert_eq!(last.body["tools"].as_array().unwrap().len(), 3);

    // exchanges.jsonl holds every turn, tool results included.
    let text = std::fs::read_to_string(run_dir.join("exchanges.jsonl")).unwrap();
    let turns: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["step"] == "hat/sre")
        .collect();
    let attempts: Vec<u64> = turns
        .iter()
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert!(turns[3]["request"].to_string().contains(DEEP_LINE));

    let report = json_file(&run_dir.join("report.json"));
    let sre = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hat/sre")
        .unwrap();
    let trail: Vec<&str> = sre["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tool"].as_str().unwrap())
        .collect();
    assert_eq!(trail, ["list_files", "read_file", "read_file"]);
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("`read_file` `docs/rollback.md`"), "{md}");

    let before = std::fs::read(run_dir.join("report.json")).unwrap();
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .status(0)
        .run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn escapes_secrets_and_binaries_are_refused_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let read = |p: &str| {
        (
            "read_file",
            json!({"path": p, "start_line": 1, "max_lines": 10}),
        )
    };
    let server = scripted(FakeReviewer::new(), move |schema| {
        if schema == "review_answer" {
            vec![vec![
                read("../../etc/passwd"),
                read("/etc/passwd"),
                read("docs/link.md"),
                read(".env"),
                read("blob.bin"),
                ("search", json!({"pattern": "sentinel", "path_glob": "**"})),
                ("rm_rf", json!({})),
            ]]
        } else {
            vec![]
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(0).run();
    let review = server
        .requests()
        .into_iter()
        .filter(|r| schema_name(r) == "review_answer")
        .max_by_key(|r| tool_results(r).len())
        .unwrap();
    let results = tool_results(&review);
    assert_eq!(results.len(), 7);
    for r in &results[..5] {
        assert!(r.starts_with("refused: "), "{r}");
    }
    assert_eq!(results[5], "(no match)");
    assert!(results[6].contains("no tool"));
    for req in server.requests() {
        assert!(
            !req.body_text.contains(SECRET),
            "a request carried the secret"
        );
    }
    for entry in walkdir::WalkDir::new(&run_dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !text.contains(SECRET),
                "{} holds the secret",
                entry.path().display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_never_stops_calling_tools_ends_after_max_turns() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    std::fs::write(
        ws.join("hatrack.toml"),
        std::fs::read_to_string(ws.join("hatrack.toml")).unwrap() + "\n[agent]\nmax_turns = 3\n",
    )
    .unwrap();
    let server = FakeOpenAi::with_handler(|req| {
        if schema_name(req) == "signal_answer" {
            tool_calls(&[("list_files", json!({"path": ".", "depth": 1}))])
        } else {
            FakeReviewer::new().answer(req)
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(1).run();
    let signal_requests = server
        .requests()
        .iter()
        .filter(|r| schema_name(r) == "signal_answer")
        .count();
    assert_eq!(signal_requests, 3);
    let report = json_file(&run_dir.join("report.json"));
    let signal = report["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(signal["status"], "unparseable");
    assert!(
        signal["errors"].to_string().contains("used all 3 turns"),
        "{}",
        signal["errors"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_refuses_tools_gets_one_request_and_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = FakeOpenAi::with_handler(|req| {
        if req.body.get("tools").is_some() {
            Reply::json(
                400,
                json!({"error": {"message": "tools are not supported", "type": "invalid_request_error"}}),
            )
        } else {
            FakeReviewer::new().answer(req)
        }
    })
    .await;
    let run_dir = dir.path().join("run");
    run(&server, &ws, &run_dir).status(0).run();
    let report = json_file(&run_dir.join("report.json"));
    for step in report["steps"].as_array().unwrap() {
        assert!(
            step["tools"].as_str().unwrap().contains("refused `tools`"),
            "{}",
            step["id"]
        );
    }
    // The refusal is part of the transcript: the replay takes the same path offline.
    Test::new().arg("replay").arg(&run_dir).status(0).run();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quote_grounds_only_when_the_agent_read_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let quote_reviewer = || {
        FakeReviewer::new()
            .cite("review_answer", "docs/rollback.md", DEEP_LINE)
            .cite("constraint_answer", "notes.md", NOTES_LINE)
    };
    for (name, reads) in [("read", true), ("unread", false)] {
        let ws = workspace(&dir.path().join(name));
        let server = scripted(quote_reviewer(), move |schema| {
            if reads && schema == "review_answer" {
                vec![vec![(
                    "read_file",
                    json!({"path": "docs/rollback.md", "start_line": 1, "max_lines": 20}),
                )]]
            } else {
                vec![]
            }
        })
        .await;
        let run_dir = dir.path().join(name).join("run");
        run(&server, &ws, &run_dir).any_status().run();
        let report = json_file(&run_dir.join("report.json"));
        let check = report["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "reliability/check/1")
            .unwrap()
            .clone();
        assert_eq!(check["evidence"][0]["grounded"], reads, "{name}: {check}");
        assert_eq!(check["verdict"], if reads { "met" } else { "unknown" });
    }
}
