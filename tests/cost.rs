//! `--prices FILE` and `--budget-usd`: cost per step and in total in every report,
//! recomputed here from the recorded token counts; a model without a price is "unknown",
//! never $0; the spending cap stops the run before the request that could exceed it (exit 5).

mod support;

use std::path::Path;

use serde_json::Value;
use support::fake_openai::FakeOpenAi;
use support::fake_reviewer::FakeReviewer;
use support::Test;

const WORKSPACE: &str = "examples/orders-pipeline";
/// USD per token of the fake model.
const INPUT: f64 = 1.5e-7;
const OUTPUT: f64 = 6e-7;

fn litellm(dir: &Path, model: &str) -> std::path::PathBuf {
    let path = dir.join("model_prices_and_context_window.json");
    std::fs::write(
        &path,
        format!(
            r#"{{
  "sample_spec": {{ "input_cost_per_token": "price per input token", "mode": "chat" }},
  "{model}": {{ "input_cost_per_token": {INPUT:e}, "output_cost_per_token": {OUTPUT:e}, "litellm_provider": "openai", "mode": "chat" }}
}}"#
        ),
    )
    .unwrap();
    path
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn server() -> FakeOpenAi {
    let reviewer = FakeReviewer::new();
    FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await
}

fn run(server: &FakeOpenAi, run_dir: &Path) -> Test {
    Test::new()
        .args(["run", WORKSPACE, "--model", "fake-model", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(run_dir)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_per_step_and_in_total_recomputed_from_the_token_counts() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let prices = litellm(dir.path(), "fake-model");
    let out = run(&server, &run_dir)
        .arg("--prices")
        .arg(&prices)
        .status(0)
        .run();
    server.stop();
    let report = json(&run_dir.join("report.json"));
    let mut total = 0.0;
    for step in report["steps"].as_array().unwrap() {
        let u = &step["usage"];
        let expected = u["prompt_tokens"].as_u64().unwrap() as f64 * INPUT
            + u["completion_tokens"].as_u64().unwrap() as f64 * OUTPUT;
        let got = step["cost"]["usd"].as_f64().unwrap();
        assert!(close(got, expected), "{}: {got} != {expected}", step["id"]);
        assert!(expected > 0.0);
        total += expected;
    }
    assert!(close(report["run"]["cost"]["usd"].as_f64().unwrap(), total));
    let header = out.stdout.lines().find(|l| l.starts_with("step")).unwrap();
    assert!(header.trim_end().ends_with("cost"), "{}", out.stdout);
    let shown = format!("${total:.4}");
    assert!(
        out.stdout.contains(&shown),
        "summary lacks {shown}:\n{}",
        out.stdout
    );
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("| Cost |") && md.contains(&format!("cost {shown}")),
        "{md}"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(&format!("cost {shown}")));
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"cost_usd\""));

    // The same prices as TOML (USD per million tokens) give the same costs on replay; a
    // replay without --prices reports no cost at all.
    let toml = dir.path().join("prices.toml");
    std::fs::write(&toml, "[\"fake-model\"]\ninput = 0.15\noutput = 0.60\n").unwrap();
    let again = dir.path().join("again");
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--prices")
        .arg(&toml)
        .arg("--out")
        .arg(&again)
        .run();
    let replayed = json(&again.join("report.json"));
    assert!(close(
        replayed["run"]["cost"]["usd"].as_f64().unwrap(),
        total
    ));
    let plain = dir.path().join("plain");
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .arg("--out")
        .arg(&plain)
        .stdout_lacks("cost")
        .run();
    let plain = json(&plain.join("report.json"));
    assert!(plain["run"].get("cost").is_none() && plain["steps"][0].get("cost").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_a_price_costs_unknown_never_zero() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let prices = litellm(dir.path(), "some-other-model");
    let out = run(&server, &run_dir)
        .arg("--prices")
        .arg(&prices)
        .status(0)
        .run();
    server.stop();
    let report = json(&run_dir.join("report.json"));
    assert_eq!(report["run"]["cost"]["usd"], Value::Null);
    assert_eq!(
        report["run"]["cost"]["unpriced_models"],
        serde_json::json!(["fake-model"])
    );
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["cost"]["usd"], Value::Null);
    }
    let total = out.stdout.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.trim_end().ends_with("unknown"), "{}", out.stdout);
    assert!(!out.stdout.contains("$0.0000"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn budget_usd_stops_before_a_request_that_could_exceed_it() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let prices = litellm(dir.path(), "fake-model");
    run(&server, &dir.path().join("tiny"))
        .arg("--prices")
        .arg(&prices)
        .args(["--budget-usd", "0.0001"])
        .status(5)
        .stderr_has("could exceed the budget of $0.0001")
        .stderr_has("raise --budget-usd")
        .run();
    assert_eq!(server.count(), 0, "nothing was sent");
    run(&server, &dir.path().join("enough"))
        .arg("--prices")
        .arg(&prices)
        .args(["--budget-usd", "5"])
        .status(0)
        .run();
    // A cap needs prices, and a price for the model.
    run(&server, &dir.path().join("no-prices"))
        .args(["--budget-usd", "5"])
        .status(2)
        .stderr_has("--budget-usd needs --prices FILE")
        .run();
    let other = litellm(&dir.path().join(".."), "some-other-model");
    run(&server, &dir.path().join("unpriced"))
        .arg("--prices")
        .arg(&other)
        .args(["--budget-usd", "5"])
        .status(2)
        .stderr_has("has no price for model \"fake-model\"")
        .run();
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_prompt_tokens_are_priced_at_the_cached_input_price_and_shown() {
    // A stand-in provider that serves 60 of every 100 prompt tokens from its cache.
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| {
        let mut body = support::fake_openai::chat_body("", "stop", 100, 50);
        if let support::fake_openai::Reply::Http { body: text, .. } = reviewer.answer(req) {
            body = serde_json::from_str(&text).unwrap();
        }
        body["usage"]["prompt_tokens_details"]["cached_tokens"] = 60.into();
        support::fake_openai::Reply::json(200, body)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    const CACHED: f64 = 1.5e-8;
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        format!(
            r#"{{"fake-model": {{"input_cost_per_token": {INPUT:e}, "output_cost_per_token": {OUTPUT:e}, "cache_read_input_token_cost": {CACHED:e}}}}}"#
        ),
    )
    .unwrap();
    let out = run(&server, &run_dir)
        .arg("--prices")
        .arg(&prices)
        .status(0)
        .run();
    let report = json(&run_dir.join("report.json"));
    let steps = report["steps"].as_array().unwrap();
    for step in steps {
        assert_eq!(step["usage"]["cached_tokens"], 60, "{}", step["id"]);
        let expected = 40.0 * INPUT + 60.0 * CACHED + 50.0 * OUTPUT;
        let got = step["cost"]["usd"].as_f64().unwrap();
        assert!(close(got, expected), "{}: {got} != {expected}", step["id"]);
    }
    let total = out.stdout.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.contains("(60% cached)"), "{total}");
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let cached = 60 * steps.len();
    assert!(
        md.contains(&format!("({cached} prompt tokens cached, 60%)")),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn budget_usd_stops_a_run_midway_and_keeps_what_it_finished() {
    // Every answer reports a million prompt tokens: $0.15 at the fake model's price, far
    // more than any request's estimate (its prompt and max_tokens), so the cap is reached
    // by what was spent, not by what was feared. With $0.25, the two hats are answered
    // ($0.30 spent) and the next request, the first judge's, is refused.
    let reviewer = FakeReviewer::new();
    let server = FakeOpenAi::with_handler(move |req| match reviewer.answer(req) {
        support::fake_openai::Reply::Http { body, .. } => {
            let mut body: Value = serde_json::from_str(&body).unwrap();
            body["usage"]["prompt_tokens"] = 1_000_000.into();
            body["usage"]["total_tokens"] =
                (1_000_000 + body["usage"]["completion_tokens"].as_u64().unwrap()).into();
            support::fake_openai::Reply::json(200, body)
        }
        other => other,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let prices = litellm(dir.path(), "fake-model");
    run(&server, &run_dir)
        .arg("--prices")
        .arg(&prices)
        .args(["--budget-usd", "0.25"])
        .status(5)
        .stderr_has("judge/pipeline-engineer: the next request")
        .stderr_has("could exceed the budget of $0.25")
        .run();
    assert_eq!(server.count(), 2, "the two hats, then nothing");
    // What it finished is kept: both hats' exchanges and artifacts.
    let exchanges = std::fs::read_to_string(run_dir.join("exchanges.jsonl")).unwrap();
    let steps: Vec<String> = exchanges
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(steps, ["hat/pipeline-engineer", "hat/sre"]);
    for hat in ["pipeline-engineer", "sre"] {
        let plan = run_dir.join("artifacts").join(hat).join("plan.md");
        let text = std::fs::read_to_string(&plan).unwrap_or_else(|e| panic!("{plan:?}: {e}"));
        assert!(
            text.contains(support::fake_reviewer::ARTIFACT_LINE),
            "{text}"
        );
    }
    // Resumed with a larger cap, the run finishes without asking for the hats again: each
    // exchange is recorded, and the hats' are still the only ones.
    run_resume(&server, &run_dir, &prices);
    assert!(server.count() > 2, "the judges were asked on resume");
    server.stop();
    let exchanges = std::fs::read_to_string(run_dir.join("exchanges.jsonl")).unwrap();
    let hats: Vec<String> = exchanges
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|s| s.starts_with("hat/"))
        .collect();
    assert_eq!(hats, ["hat/pipeline-engineer", "hat/sre"]);
    assert_eq!(
        json(&run_dir.join("report.json"))["outcome"]["exit_code"],
        0
    );
}

fn run_resume(server: &FakeOpenAi, run_dir: &Path, prices: &Path) {
    Test::new()
        .args(["run", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--resume")
        .arg(run_dir)
        .arg("--prices")
        .arg(prices)
        .args(["--budget-usd", "100"])
        .status(0)
        .run();
}
