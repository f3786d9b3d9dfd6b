//! `hatrack list`: the shipped stage as the user sees it, as text and as JSON, and
//! stage lookup through --studio.

mod support;

use serde_json::Value;
use support::{corpus_dir, Test};

fn list_json(args: &[&str]) -> Value {
    let out = Test::new()
        .arg("list")
        .args(args)
        .args(["--format", "json"])
        .run();
    serde_json::from_str(&out.stdout).expect("list --format json prints JSON")
}

fn levels(reqs: &Value) -> Vec<String> {
    reqs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn json_shows_the_deployment_stage_in_order_with_every_requirement() {
    let v = list_json(&["--stage", "hats/deployment"]);
    assert_eq!(v["stage"]["name"], "deployment");
    assert_eq!(v["stage"]["gates"], serde_json::json!(["external"]));
    assert_eq!(v["stage"]["needs_human"], true);
    assert_eq!(v["stage"]["elaboration"], "autonomous");
    assert_eq!(v["stage"]["digest"].as_str().unwrap().len(), 64);

    let hats = v["hats"].as_array().unwrap();
    let names: Vec<_> = hats.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pipeline-engineer", "sre"]);
    for hat in hats {
        let mut l = levels(&hat["constraints"]);
        l.sort();
        assert_eq!(
            l,
            ["MUST", "MUST NOT", "MUST NOT", "MUST NOT", "MUST NOT"],
            "{}",
            hat["name"]
        );
    }
    let first = &hats[0]["constraints"][0];
    assert_eq!(first["id"], "pipeline-engineer/anti-pattern/1");
    assert_eq!(first["level"], "MUST NOT");
    assert_eq!(
        first["text"],
        "The agent **MUST NOT** deploy without configuring retries and timeout policies"
    );
    assert_eq!(
        first["source"],
        "hats/deployment/hats/pipeline-engineer.md:14"
    );
    assert_eq!(hats[1]["constraints"][2]["id"], "sre/anti-pattern/3");
    assert_eq!(hats[1]["constraints"][2]["level"], "MUST");
    assert!(hats[0]["reads"]
        .as_str()
        .unwrap()
        .starts_with("Validation report, transformation code"));

    let agents = v["review_agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["name"], "reliability");
    assert_eq!(agents[0]["origin"], "own");
    assert_eq!(levels(&agents[0]["checks"]), ["MUST"; 4]);
    assert_eq!(agents[0]["checks"][3]["id"], "reliability/check/4");
    assert!(agents[0]["mandate"]
        .as_str()
        .unwrap()
        .contains("resilient and observable"));

    assert_eq!(v["criteria"]["good"].as_array().unwrap().len(), 3);
    assert_eq!(v["criteria"]["bad"].as_array().unwrap().len(), 3);
    assert_eq!(v["criteria"]["bad"][0], "Pipeline is deployed");

    let signal = &v["completion_signal"]["requirements"];
    assert_eq!(
        levels(signal),
        ["implicit", "implicit", "implicit", "MUST", "MUST"]
    );
    assert_eq!(signal[4]["id"], "signal/5");
    assert_eq!(
        signal[4]["text"],
        "SRE **MUST** have **MUST** be verified the deployment meets operational readiness criteria."
    );
    assert_eq!(signal[4]["keywords"], serde_json::json!(["MUST", "MUST"]));
    assert_eq!(v["outputs"][0]["name"], "pipeline-config");
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn text_listing_is_readable_and_is_the_default() {
    Test::new()
        .arg("list")
        .stdout_has("Stage deployment: Deploy pipelines to production with monitoring and alerting")
        .stdout_has("gate: external")
        .stdout_has("1. pipeline-engineer")
        .stdout_has("2. sre")
        .stdout_has("MUST NOT  pipeline-engineer/anti-pattern/1  The agent MUST NOT deploy without configuring retries")
        .stdout_has("- reliability (own)")
        .stdout_has("MUST      reliability/check/3  The agent MUST verify that backfill procedures exist")
        .stdout_has("implicit  signal/1  Pipeline is deployed to the production orchestrator")
        .stdout_has("    - Documentation exists")
        .stdout_lacks("**")
        .run();
}

#[test]
fn studio_lookup_by_directory_name_slug_and_included_agents() {
    let Some(corpus) = corpus_dir() else { return };
    let v = list_json(&[
        "--studio",
        corpus.join("data-pipeline").to_str().unwrap(),
        "--stage",
        "deployment",
    ]);
    let agents: Vec<(String, String)> = v["review_agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["from_stage"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        [
            ("reliability".to_string(), "-".to_string()),
            ("data-quality".to_string(), "transformation".to_string()),
            ("coverage".to_string(), "validation".to_string())
        ]
    );
    assert_eq!(v["stage"]["studio"], "data-pipeline");
    assert_eq!(v["inputs"][0]["name"], "validation-report");
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("dangling input"));

    // `software` is named application-development, slug appdev: any of them finds it.
    for name in ["APPDEV", "application-development", "software"] {
        let v = list_json(&[
            "--studio",
            corpus.join(name).to_str().unwrap(),
            "--stage",
            "design",
        ]);
        assert_eq!(v["stage"]["studio"], "software", "{name}");
        assert_eq!(v["hats"][0]["name"], "designer");
    }
}

#[test]
fn unknown_stage_studio_or_directory_exits_2_with_what_to_do() {
    let Some(corpus) = corpus_dir() else { return };
    Test::new()
        .args(["list", "--studio"])
        .arg(corpus.join("data-pipeline"))
        .args(["--stage", "nope"])
        .status(2)
        .stderr_has("no stage named \"nope\"")
        .stderr_has("stages are: deployment, discovery")
        .run();
    Test::new()
        .args(["list", "--studio"])
        .arg(corpus.join("no-such-studio"))
        .args(["--stage", "x"])
        .status(2)
        .stderr_has("no studio named \"no-such-studio\"")
        .run();
    Test::new()
        .args(["list", "--studio"])
        .arg(corpus.join("software"))
        .status(2)
        .stderr_has("needs --stage NAME")
        .run();
    Test::new()
        .args(["list", "--stage", "hats"])
        .status(2)
        .stderr_has("hats: not a stage directory (no STAGE.md)")
        .run();
}

#[test]
fn list_of_a_broken_stage_prints_each_diagnostic_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("STAGE.md"),
        "---\nname: s\nhats: [ghost]\n---\n# S\n",
    )
    .unwrap();
    Test::new()
        .args(["list", "--stage"])
        .arg(&dir)
        .status(2)
        .stderr_has("STAGE.md:3: error: hat `ghost` is listed in `hats:`")
        .stderr_has("error: 1 error(s) in the definitions")
        .run();
}

/// What each judged requirement is about — and so what evidence its `met` needs — is
/// shown by `list` (text and JSON) and by `render` for the step that rules on it.
#[test]
fn list_and_render_show_what_each_requirement_is_about() {
    Test::new()
        .arg("list")
        .stdout_has("retry policies.  [evidence: repository]")
        .stdout_has("signal/4  Runbook MUST exist with recovery procedures for common failure scenarios.  [evidence: hat output]")
        .stdout_has("readiness criteria.  [evidence: hat output]")
        .stdout_has("dead-letter queues, alerting  [evidence: repository]")
        .stdout_has("Evidence: a met on a requirement marked [evidence: repository] needs a quote from a repository file")
        .run();
    let v = list_json(&["--stage", "hats/deployment"]);
    let about = |reqs: &Value| -> Vec<String> {
        reqs.as_array()
            .unwrap()
            .iter()
            .map(|r| r["about"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        about(&v["completion_signal"]["requirements"]),
        [
            "repository",
            "repository",
            "repository",
            "hat-output",
            "hat-output"
        ]
    );
    assert!(about(&v["hats"][0]["constraints"])
        .iter()
        .all(|a| a == "hat-output"));
    assert!(about(&v["review_agents"][0]["checks"])
        .iter()
        .all(|a| a == "repository"));
    Test::new()
        .args(["render", "signal", "examples/orders-pipeline"])
        .stdout_has("signal/1 (implicit): about the repository — a met needs a quote from a repository file")
        .stdout_has("signal/5 (MUST): about what the hats produced — a met may rest on a hat's artifact")
        .run();
}
