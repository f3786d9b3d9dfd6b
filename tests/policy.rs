//! Trusted policy vs the reviewed workspace, through the binary, against fake OpenAI servers
//! (`FakeReviewer`: a stand-in for a model, not a model). The workspace's hatrack.toml is
//! written by the party the gate judges: it may bind inputs and tighten, but never choose
//! where requests and keys go, which model judges, which stage runs or how lenient the
//! gate is — unless `--trust-workspace-config` says the repository is the user's own.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::{FakeOpenAi, Reply};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const PRODUCER_KEY: &str = "sk-producer-key-0123456789";
const JUDGE_KEY: &str = "sk-judge-key-9876543210";
const OTHER_SECRET: &str = "sk-some-other-secret-4242";

fn workspace(dir: &Path, extra_toml: &str) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("notes.md"),
        "# Orders pipeline notes\n\nFreshness alerts page the data on-call within 15 minutes of a missed SLA.\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        format!("{}{extra_toml}", support::inputs_bound_to("notes.md")),
    )
    .unwrap();
    ws
}

async fn reviewer() -> FakeOpenAi {
    let r = FakeReviewer::new();
    FakeOpenAi::with_handler(move |req| r.answer(req)).await
}

/// `hatrack run WS` with the endpoint and key from the environment, as CI sets them.
fn run(endpoint: &FakeOpenAi, ws: &Path, run_dir: &Path) -> Test {
    Test::new()
        .arg("run")
        .arg(ws)
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(run_dir)
        .env("OPENAI_BASE_URL", endpoint.url())
        .env("OPENAI_API_KEY", PRODUCER_KEY)
        .env("HATRACK_MODEL", "fake-model")
        .env("OTHER_SECRET", OTHER_SECRET)
}

fn bearer(req: &support::fake_openai::SeenRequest) -> String {
    req.header("authorization").unwrap_or_default().to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn policy_entry<'a>(record: &'a Value, key: &str) -> &'a Value {
    record["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == key)
        .unwrap_or_else(|| panic!("no policy key {key} in {record}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_file_cannot_redirect_choose_keys_loosen_or_pick_the_stage() {
    let ci = reviewer().await;
    let elsewhere = reviewer().await;
    let b = elsewhere.url();
    let cases = [
        (
            format!("[judge]\nmodel = \"x\"\nbase_url = \"{b}\"\n"),
            "[judge] base_url is policy",
        ),
        (
            format!("[model]\nbase_url = \"{b}\"\n"),
            "[model] base_url is policy",
        ),
        (
            "[model]\napi_key_env = \"OTHER_SECRET\"\n".to_string(),
            "[model] api_key_env is policy",
        ),
        (
            "[grounding]\nmin_words = 1\nmin_chars = 1\n".to_string(),
            "[grounding] min_words = 1 is below policy's 3",
        ),
        (
            "[stage]\npath = \"empty-stage\"\n".to_string(),
            "[stage] path is policy",
        ),
        (
            "[gate]\nallow_unknown = true\n".to_string(),
            "[gate] allow_unknown would let more through the gate",
        ),
        (
            "[model.request]\nlogit_bias = { \"1234\" = 100 }\n".to_string(),
            "[model.request] logit_bias is policy",
        ),
    ];
    for (i, (toml, refusal)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path(), toml);
        let out = run(&ci, &ws, &dir.path().join(format!("run-{i}")))
            .status(2)
            .stderr_has(*refusal)
            .stderr_has("--trust-workspace-config")
            .stderr_has("--policy FILE")
            .run();
        assert!(!out.stderr.contains(OTHER_SECRET), "{}", out.stderr);
    }
    assert_eq!(ci.count(), 0, "no request before the refusal");
    assert_eq!(
        elsewhere.count(),
        0,
        "no request to the workspace's address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hatrack_own_request_fields_are_refused_wherever_they_are_written() {
    let ci = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "[model.request]\nn = 64\n");
    run(&ci, &ws, &dir.path().join("run"))
        .arg("--trust-workspace-config")
        .status(2)
        .stderr_has("[model.request] n is a field hatrack sets itself")
        .run();
    assert_eq!(ci.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_may_tighten() {
    let ci = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(
        dir.path(),
        "[grounding]\nmin_words = 4\n[model]\nmax_retries = 0\nmax_tokens = 900\n[model.request]\ntop_p = 0.9\n",
    );
    let run_dir = dir.path().join("run");
    run(&ci, &ws, &run_dir).status(0).run();
    let record = json(&run_dir.join("run.json"));
    let policy = &record["policy"];
    assert_eq!(policy["trusted_workspace_config"], false);
    let words = policy_entry(policy, "grounding.min_words");
    assert_eq!(words["value"], "4");
    assert_eq!(words["source"]["from"], "workspace");
    assert_eq!(
        policy_entry(policy, "model.base_url")["source"]["name"],
        "OPENAI_BASE_URL"
    );
    assert_eq!(policy_entry(policy, "model.max_tokens")["value"], "900");
    for req in ci.requests() {
        assert_eq!(req.body["max_tokens"], 900);
        assert_eq!(req.body["top_p"], 0.9);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_the_workspace_judge_is_honoured_reported_and_gets_only_its_own_key() {
    let producer = reviewer().await;
    let judge = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(
        dir.path(),
        &format!(
            "[judge]\nmodel = \"judge-model\"\nbase_url = \"{}\"\n",
            judge.url()
        ),
    );
    let run_dir = dir.path().join("run");
    run(&producer, &ws, &run_dir)
        .arg("--trust-workspace-config")
        .env("HATRACK_JUDGE_API_KEY", JUDGE_KEY)
        .status(0)
        .run();
    assert!(producer.count() > 0 && judge.count() > 0);
    for req in producer.requests() {
        assert_eq!(bearer(&req), format!("Bearer {PRODUCER_KEY}"));
        assert_eq!(req.body["model"], "fake-model");
    }
    for req in judge.requests() {
        assert_eq!(bearer(&req), format!("Bearer {JUDGE_KEY}"));
        assert_eq!(req.body["model"], "judge-model");
    }
    let report = json(&run_dir.join("report.json"));
    let policy = &report["run"]["policy"];
    assert_eq!(policy["trusted_workspace_config"], true);
    assert_eq!(
        policy_entry(policy, "judge.base_url")["source"]["from"],
        "trusted-workspace"
    );
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("--trust-workspace-config"), "{md}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("--trust-workspace-config"));
    // Every format carries the effective policy.
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"policy.judge.base_url\""), "{junit}");
    assert!(junit.contains("name=\"policy.trust\""));
    let sarif = json(&run_dir.join("report.sarif"));
    assert_eq!(
        sarif["runs"][0]["properties"]["policy"]["trusted_workspace_config"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_elsewhere_without_its_own_key_never_gets_the_producing_key() {
    let producer = reviewer().await;
    let judge = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    run(&producer, &ws, &dir.path().join("run"))
        .args(["--judge-model", "judge-model", "--judge-base-url"])
        .arg(judge.url())
        .status(0)
        .run();
    assert!(judge.count() > 0);
    for req in judge.requests() {
        assert!(!bearer(&req).contains(PRODUCER_KEY), "{}", bearer(&req));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_outside_the_workspace_sets_every_policy_key_and_replay_keeps_it() {
    let producer = reviewer().await;
    let judge = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    let trusted = dir.path().join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    // A copy of the shipped stage, named by the policy relative to the policy file.
    support::copy_dir(
        &support::repo_root().join("hats/deployment"),
        &trusted.join("stage"),
    );
    let policy = trusted.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[stage]\npath = \"stage\"\n[model]\nname = \"policy-model\"\nbase_url = \"{}\"\napi_key_env = \"MY_KEY\"\n[judge]\nmodel = \"policy-judge\"\nbase_url = \"{}\"\napi_key_env = \"MY_JUDGE_KEY\"\n[grounding]\nmin_words = 4\n[gate]\nallow_unknown = false\n",
            producer.url(),
            judge.url()
        ),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    Test::new()
        .arg("run")
        .arg(&ws)
        .arg("--policy")
        .arg(&policy)
        .args(["--timeout", "5", "--max-retries", "0", "--transcript"])
        .arg(&run_dir)
        .env("MY_KEY", PRODUCER_KEY)
        .env("MY_JUDGE_KEY", JUDGE_KEY)
        .env("OPENAI_API_KEY", OTHER_SECRET)
        .status(0)
        .run();
    for req in producer.requests() {
        assert_eq!(bearer(&req), format!("Bearer {PRODUCER_KEY}"));
        assert_eq!(req.body["model"], "policy-model");
    }
    assert!(judge.count() > 0);
    for req in judge.requests() {
        assert_eq!(bearer(&req), format!("Bearer {JUDGE_KEY}"));
    }
    let record = json(&run_dir.join("run.json"));
    let policy_record = &record["policy"];
    for key in [
        "stage.path",
        "model.name",
        "model.base_url",
        "model.api_key_env",
        "judge.model",
        "judge.base_url",
        "judge.api_key_env",
        "grounding.min_words",
    ] {
        assert_eq!(
            policy_entry(policy_record, key)["source"]["from"],
            "policy-file",
            "{key}"
        );
    }
    assert_eq!(
        policy_entry(policy_record, "model.api_key_env")["value"],
        "MY_KEY"
    );
    let text = std::fs::read_to_string(run_dir.join("run.json")).unwrap();
    assert!(!text.contains(PRODUCER_KEY) && !text.contains(JUDGE_KEY));

    // Replay applies the recorded policy, not what is on disk now: a workspace file that
    // loosens afterwards and a policy file that is gone change nothing.
    let before = std::fs::read(run_dir.join("report.json")).unwrap();
    std::fs::remove_file(&policy).unwrap();
    Test::new().arg("replay").arg(&run_dir).status(0).run();
    assert_eq!(std::fs::read(run_dir.join("report.json")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_inside_the_workspace_is_refused() {
    let ci = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    std::fs::write(ws.join("policy.toml"), "[grounding]\nmin_words = 1\n").unwrap();
    run(&ci, &ws, &dir.path().join("run"))
        .env("HATRACK_POLICY", ws.join("policy.toml"))
        .status(2)
        .stderr_has("lies inside the reviewed workspace")
        .run();
    assert_eq!(ci.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_origin_redirect_is_never_followed() {
    let elsewhere = reviewer().await;
    let target = format!("{}/chat/completions", elsewhere.url());
    let redirecting =
        FakeOpenAi::with_handler(move |_| Reply::raw(307, &[("location", target.as_str())], ""))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    run(&redirecting, &ws, &dir.path().join("run"))
        .status(3)
        .stderr_has("redirected to another origin")
        .run();
    assert!(redirecting.count() > 0);
    assert_eq!(
        elsewhere.count(),
        0,
        "the prompt went to the redirect's origin"
    );
}

#[test]
fn render_shows_what_a_run_would_send_under_the_same_policy() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "[judge]\nmodel = \"ws-judge\"\n");
    // Untrusted, render refuses the same key a run would.
    Test::new()
        .args(["render", "judge/sre"])
        .arg(&ws)
        .args(["--json"])
        .status(2)
        .stderr_has("[judge] model is policy")
        .run();
    // Trusted, the workspace's judge is the one in the request.
    let out = Test::new()
        .args(["render", "judge/sre"])
        .arg(&ws)
        .args(["--json", "--trust-workspace-config"])
        .run();
    let body: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(body["model"], "ws-judge");
    // A policy file outside the workspace names it as well.
    let outside = dir.path().join("policy.toml");
    std::fs::write(&outside, "[judge]\nmodel = \"policy-judge\"\n").unwrap();
    std::fs::write(
        ws.join("hatrack.toml"),
        support::inputs_bound_to("notes.md"),
    )
    .unwrap();
    let out = Test::new()
        .args(["render", "judge/sre"])
        .arg(&ws)
        .arg("--json")
        .arg("--policy")
        .arg(&outside)
        .run();
    let body: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(body["model"], "policy-judge");
}

/// An unset key variable stops a run bound for a server elsewhere before any request (exit
/// 2, naming the variable: the producer's, a policy's own, the judge's), unless
/// `HATRACK_ALLOW_NO_API_KEY=1` says that server needs none. A model on this machine needs
/// no key, and gets no empty `Authorization: Bearer ` header.
#[tokio::test(flavor = "multi_thread")]
async fn an_unset_key_variable_stops_a_run_bound_elsewhere_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    let elsewhere = |test: Test| {
        test.arg("run")
            .arg(&ws)
            .args([
                "--model",
                "fake-model",
                "--max-retries",
                "0",
                "--timeout",
                "5",
            ])
            .args(["--base-url", "http://models.invalid/v1", "--transcript"])
            .arg(&run_dir)
    };
    let started = std::time::Instant::now();
    elsewhere(Test::new())
        .status(2)
        .stderr_has("OPENAI_API_KEY is not set")
        .stderr_has("http://models.invalid/v1")
        .stderr_has("HATRACK_ALLOW_NO_API_KEY=1")
        .run();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A policy's own variable is the one named.
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[model]\napi_key_env = \"TEAM_MODEL_KEY\"\n").unwrap();
    elsewhere(Test::new())
        .arg("--policy")
        .arg(&policy)
        .env("OPENAI_API_KEY", PRODUCER_KEY)
        .status(2)
        .stderr_has("TEAM_MODEL_KEY is not set")
        .run();
    // Opted out: the run goes on to the server (which does not exist: a provider error).
    elsewhere(Test::new())
        .env("HATRACK_ALLOW_NO_API_KEY", "1")
        .status(3)
        .run();

    // The judge at an endpoint of its own, without its key.
    let producer = reviewer().await;
    run(&producer, &ws, &dir.path().join("run-judge"))
        .args(["--judge-model", "judge-model"])
        .args(["--judge-base-url", "https://judge.invalid/v1"])
        .status(2)
        .stderr_has("HATRACK_JUDGE_API_KEY is not set")
        .run();
    assert_eq!(producer.count(), 0, "nothing was asked before the refusal");

    // A model on this machine needs no key, and is sent no empty one.
    let local = reviewer().await;
    Test::new()
        .arg("run")
        .arg(&ws)
        .args(["--model", "fake-model", "--base-url", &local.url()])
        .args(["--quiet", "--transcript"])
        .arg(dir.path().join("run-local"))
        .status(0)
        .run();
    assert!(local.count() > 0);
    for req in local.requests() {
        assert_eq!(req.header("authorization"), None, "{:?}", req.headers);
    }
}

/// The judge endpoint router: with `--judge-base-url`, every judging step (constraint
/// judges, review agents, the completion judge) goes to the judge's server with the judge's
/// model and key, and every hat goes to the producer's — none crosses over. Both servers are
/// fakes (`FakeOpenAi` scripted by `FakeReviewer`).
#[tokio::test(flavor = "multi_thread")]
async fn the_judge_endpoint_gets_every_judging_step_and_nothing_else() {
    let producer = reviewer().await;
    let judge = reviewer().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), "");
    let run_dir = dir.path().join("run");
    run(&producer, &ws, &run_dir)
        .args(["--judge-model", "judge-model", "--judge-base-url"])
        .arg(judge.url())
        .env("HATRACK_JUDGE_API_KEY", JUDGE_KEY)
        .status(0)
        .run();
    let schema = |r: &support::fake_openai::SeenRequest| {
        r.body["response_format"]["json_schema"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let produced = producer.requests();
    assert!(!produced.is_empty());
    for req in &produced {
        assert_eq!(
            schema(req),
            "hat_answer",
            "a judging step went to the producer"
        );
        assert_eq!(req.body["model"], "fake-model");
        assert!(bearer(req).contains(PRODUCER_KEY));
    }
    let judged = judge.requests();
    let mut kinds: Vec<String> = judged.iter().map(schema).collect();
    kinds.sort();
    kinds.dedup();
    assert!(kinds.iter().all(|k| k != "hat_answer"), "{kinds:?}");
    assert!(kinds.contains(&"review_answer".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"signal_answer".to_string()), "{kinds:?}");
    for req in &judged {
        assert_eq!(req.body["model"], "judge-model");
        assert!(bearer(req).contains(JUDGE_KEY), "{}", bearer(req));
    }
    // The report says which model judged what.
    let report = json(&run_dir.join("report.json"));
    for r in report["requirements"].as_array().unwrap() {
        assert_eq!(r["model"], "judge-model", "{}", r["id"]);
    }
}
