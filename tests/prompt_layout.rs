//! The request layout a provider's prompt cache can reuse, through the binary against the
//! fake OpenAI server (a stand-in for a model, scripted by `FakeReviewer`, that records every
//! request body): every step's request opens with the same bytes — the system message, the
//! stage, every bound input — then what the hats produced so far in production order, and
//! only then its own role and task. Each step is still asked only about its own
//! requirements.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fake_openai::{FakeOpenAi, SeenRequest};
use support::fake_reviewer::FakeReviewer;
use support::Test;

const END: &str = "<<<END ";

fn message(r: &SeenRequest, i: usize) -> &str {
    r.body["messages"][i]["content"].as_str().unwrap()
}

/// The ids a prompt lists as `- [id] …` lines, after the shared part.
fn listed_ids(user: &str, shared: usize) -> BTreeSet<String> {
    user[shared..]
        .lines()
        .filter_map(|l| l.strip_prefix("- ["))
        .filter_map(|l| l.split_once(']'))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// The requirement ids of a request's answer schema (none for a hat).
fn schema_ids(r: &SeenRequest) -> BTreeSet<String> {
    let props = &r.body["response_format"]["json_schema"]["schema"]["properties"];
    ["constraints", "checks", "requirements"]
        .iter()
        .filter_map(|k| props[*k]["items"]["properties"]["id"]["enum"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_opens_with_the_bytes_the_run_shares_and_asks_only_about_its_own_requirements(
) {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::with_handler({
        let r = FakeReviewer::new();
        move |req| r.answer(req)
    })
    .await;
    Test::new()
        .args(["run", "examples/orders-pipeline", "--model", "fake-model"])
        .args(["--jobs", "1", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(dir.path().join("run"))
        .run();
    let requests = server.requests();
    assert_eq!(requests.len(), 6);

    // The first request (the first hat) is shown no artifact: its last frame closes the last
    // bound input. System, stage and inputs end there.
    let first = &requests[0];
    let first_user = message(first, 1);
    let inputs_end = first_user.rfind(END).unwrap();
    let inputs_end = inputs_end + first_user[inputs_end..].find('\n').unwrap();
    assert!(
        inputs_end > first_user.len() / 2,
        "the inputs are most of it"
    );
    for (i, r) in requests.iter().enumerate().skip(1) {
        assert_eq!(message(r, 0), message(first, 0), "request {i}: system");
        let user = message(r, 1);
        assert_eq!(
            &user[..inputs_end],
            &first_user[..inputs_end],
            "request {i} does not open with the shared stage and inputs"
        );
        // And with an earlier request it shares at least that much, often more (the
        // artifacts produced before both).
        let best = requests[..i]
            .iter()
            .map(|e| common_prefix(message(e, 1), user))
            .max()
            .unwrap();
        assert!(best >= inputs_end, "request {i}");
    }
    // The judges, the review and the completion judge all see both hats' artifacts in
    // production order, so they share everything up to their own part.
    let judges: Vec<&SeenRequest> = requests
        .iter()
        .filter(|r| !schema_ids(r).is_empty())
        .collect();
    let role = |r: &SeenRequest| message(r, 1).find("\n# Your role: ").unwrap();
    for r in &judges {
        let shared = role(judges[0]);
        assert_eq!(message(r, 1)[..shared], message(judges[0], 1)[..shared]);
        let user = message(r, 1);
        let pe = user.find("## Produced by the Pipeline Engineer").unwrap();
        let sre = user.find("## Produced by the SRE").unwrap();
        assert!(inputs_end < pe && pe < sre && sre < role(r));
    }

    // Each step lists only its own requirements after the shared part (the completion judge
    // is also shown the verdicts so far, as before).
    for r in &requests {
        let ids = schema_ids(r);
        let user = message(r, 1);
        let own = listed_ids(user, role(r));
        if r.body["response_format"]["json_schema"]["name"] == "signal_answer" {
            assert!(ids.is_subset(&own));
        } else if ids.is_empty() {
            let hat = user[role(r)..].lines().nth(1).unwrap().to_string();
            let prefix = if hat.contains("Pipeline Engineer") {
                "pipeline-engineer/"
            } else {
                "sre/"
            };
            assert!(
                own.iter().all(|id| id.starts_with(prefix)),
                "{hat}: {own:?}"
            );
        } else {
            assert_eq!(own, ids);
        }
    }
}

/// Without `[model] max_tokens`, each step's answer budget is what its answer needs: a hat
/// gets room for its artifacts, a judging step a frame plus one share per requirement it
/// rules on — not one number for all; `[model] max_tokens` sets one for every step.
#[tokio::test(flavor = "multi_thread")]
async fn each_step_gets_the_answer_budget_its_requirements_need() {
    use hatrack::run::steps::{ANSWER_FRAME_TOKENS, HAT_ANSWER_TOKENS, TOKENS_PER_VERDICT};
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    support::copy_dir(
        &support::repo_root().join("examples/orders-pipeline"),
        &workspace,
    );
    let config = workspace.join("hatrack.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[model]\nmax_tokens = 1536\n"));
    let without = text.replace("[model]\nmax_tokens = 1536\n", "");
    for fixed in [None, Some(700u64)] {
        let configured = match fixed {
            Some(f) => format!("{without}\n[model]\nmax_tokens = {f}\n"),
            None => without.clone(),
        };
        std::fs::write(&config, configured).unwrap();
        let server = FakeOpenAi::with_handler({
            let r = FakeReviewer::new();
            move |req| r.answer(req)
        })
        .await;
        Test::new()
            .args(["run"])
            .arg(&workspace)
            .args(["--model", "fake-model", "--jobs", "1", "--base-url"])
            .arg(server.url())
            .arg("--transcript")
            .arg(dir.path().join(format!("run-{}", fixed.unwrap_or(0))))
            .any_status()
            .run();
        let requests = server.requests();
        assert_eq!(requests.len(), 6);
        let mut sizes = BTreeSet::new();
        for r in &requests {
            let n = schema_ids(r).len() as u64;
            let want = match fixed {
                Some(f) => f,
                None if n == 0 => u64::from(HAT_ANSWER_TOKENS),
                None => u64::from(ANSWER_FRAME_TOKENS) + n * u64::from(TOKENS_PER_VERDICT),
            };
            assert_eq!(r.body["max_tokens"], want, "{n} requirement(s)");
            sizes.insert(want);
        }
        assert_eq!(sizes.len() > 1, fixed.is_none(), "{sizes:?}");
    }
}

/// A line of `ops/monitoring.yml` within what `[limits]` shows of it: the SRE reads that file,
/// the Pipeline Engineer does not.
const MONITORING: &str = "ops/monitoring.yml";
const MONITORING_LINE: &str = "Task duration vs 14-day p95, sensor wait for day-close";

/// Runs the example stage against `reviewer` (`--jobs 1`, so requests come in step order),
/// with `prompts` as `--prompts` when given; returns the requests and the report.
async fn run_example(
    reviewer: FakeReviewer,
    prompts: Option<&std::path::Path>,
    run_dir: &std::path::Path,
) -> (Vec<SeenRequest>, Value) {
    let server = FakeOpenAi::with_handler(move |req| reviewer.answer(req)).await;
    let mut test = Test::new()
        .args(["run", "examples/orders-pipeline", "--model", "fake-model"])
        .args(["--jobs", "1", "--quiet", "--base-url"])
        .arg(server.url())
        .arg("--transcript")
        .arg(run_dir)
        .any_status();
    if let Some(dir) = prompts {
        test = test.arg("--prompts").arg(dir);
    }
    test.run();
    let text = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    (server.requests(), serde_json::from_str(&text).unwrap())
}

fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no requirement {id}"))
}

/// The names a request's dossier frames (its BEGIN markers before the step's own part).
fn dossier_names(r: &SeenRequest) -> BTreeSet<String> {
    let user = message(r, 1);
    let dossier = &user[..user.find("\n# Your role: ").unwrap()];
    dossier
        .lines()
        .filter_map(|l| l.strip_prefix("<<<BEGIN "))
        .filter_map(|l| l.strip_suffix(">>>"))
        .map(str::to_string)
        .collect()
}

/// Grounding follows what the dossier showed, not what its template was offered: with a
/// `--prompts` dossier that leaves a file out, a quote from that file grounds nothing (the
/// same quote grounds with the shipped dossier, which shows it).
#[tokio::test(flavor = "multi_thread")]
async fn a_quote_from_a_file_the_dossier_did_not_show_does_not_ground() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    let shipped = std::fs::read_to_string(support::repo_root().join("prompts/dossier.j2")).unwrap();
    let from = "{% for f in inputs %}";
    assert!(shipped.contains(from));
    let omitting = format!("{{% for f in inputs if f.path != \"{MONITORING}\" %}}");
    std::fs::write(prompts.join("dossier.j2"), shipped.replace(from, &omitting)).unwrap();
    let reviewer = || FakeReviewer::new().cite("review_answer", MONITORING, MONITORING_LINE);
    let id = "reliability/check/1";

    let (_, shown) = run_example(reviewer(), None, &dir.path().join("shown")).await;
    let r = requirement(&shown, id);
    assert_eq!(r["evidence"][0]["grounded"], true, "{r}");
    assert_eq!(r["verdict"], "met", "{r}");

    let (requests, omitted) =
        run_example(reviewer(), Some(&prompts), &dir.path().join("omitted")).await;
    let review = requests
        .iter()
        .find(|r| r.body["response_format"]["json_schema"]["name"] == "review_answer")
        .unwrap();
    assert!(!message(review, 1).contains(&format!("<<<BEGIN {MONITORING}>>>")));
    assert!(
        dossier_names(review).contains("intent.md"),
        "the rest is shown"
    );
    let r = requirement(&omitted, id);
    assert_eq!(r["claimed"], "met", "{r}");
    assert_eq!(r["evidence"][0]["grounded"], false, "{r}");
    assert_ne!(r["verdict"], "met", "{r}");
}

const PER_HAT: &str = "benches/layouts/per-hat";

/// The per-hat benchmark layout differs from the shipped one in its dossier only: its other
/// templates are the shipped ones, byte for byte.
#[test]
fn the_per_hat_layout_changes_only_the_dossier() {
    let root = support::repo_root();
    for entry in std::fs::read_dir(root.join("prompts")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name == "dossier.j2" || !name.ends_with(".j2") {
            continue;
        }
        let copy = std::fs::read_to_string(root.join(PER_HAT).join(&name))
            .unwrap_or_else(|e| panic!("{PER_HAT}/{name}: {e}"));
        assert!(
            copy == std::fs::read_to_string(&path).unwrap(),
            "{PER_HAT}/{name} differs from prompts/{name}"
        );
    }
}

/// The per-hat layout: a hat and its constraint judge are shown the inputs the hat reads and
/// the artifacts of the hats it reads (the judge also the judged hat's own); the review agent
/// and the completion judge everything. A judge is grounded in what it was shown only, and
/// the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn the_per_hat_layout_shows_each_hat_what_it_reads_and_grounds_its_judge_there() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let reviewer = FakeReviewer::new()
        .quote(
            "pipeline-engineer/anti-pattern/1",
            MONITORING,
            MONITORING_LINE,
        )
        .quote("sre/anti-pattern/1", MONITORING, MONITORING_LINE);
    let prompts = support::repo_root().join(PER_HAT);
    let (requests, report) = run_example(reviewer, Some(&prompts), &run_dir).await;
    assert_eq!(requests.len(), 6);
    let names: Vec<BTreeSet<String>> = requests.iter().map(dossier_names).collect();
    let (pe, sre, pe_judge, sre_judge, review, signal) = (
        &names[0], &names[1], &names[2], &names[3], &names[4], &names[5],
    );
    let pe_plan = "artifacts/pipeline-engineer/plan.md".to_string();
    let sre_plan = "artifacts/sre/plan.md".to_string();
    // Request order: the hats, their judges, the review, the completion judge.
    assert!(message(&requests[2], 1)
        .contains("# Your role: constraint judge for the Pipeline Engineer"));
    assert!(message(&requests[3], 1).contains("# Your role: constraint judge for the SRE"));

    assert!(
        pe.contains("models/marts/fct_orders.sql") && !pe.contains(MONITORING),
        "{pe:?}"
    );
    assert!(!pe.iter().any(|n| n.starts_with("artifacts/")), "{pe:?}");
    assert_eq!(
        *pe_judge,
        pe.iter().cloned().chain([pe_plan.clone()]).collect()
    );

    assert!(sre.contains(MONITORING) && !sre.contains("models/marts/fct_orders.sql"));
    assert!(
        sre.contains(&pe_plan),
        "the SRE reads the Pipeline Engineer's deployment"
    );
    assert_eq!(
        *sre_judge,
        sre.iter().cloned().chain([sre_plan.clone()]).collect()
    );

    assert!(pe.union(sre).all(|n| review.contains(n)));
    assert!(review.contains(&pe_plan) && review.contains(&sre_plan));
    assert_eq!(review, signal);

    // The same quote of ops/monitoring.yml: shown to the SRE's judge, not to the Pipeline
    // Engineer's.
    let r = requirement(&report, "sre/anti-pattern/1");
    assert_eq!(r["evidence"][0]["grounded"], true, "{r}");
    let r = requirement(&report, "pipeline-engineer/anti-pattern/1");
    assert_eq!(r["evidence"][0]["grounded"], false, "{r}");
    assert_ne!(r["verdict"], "pass", "{r}");

    let recorded = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    Test::new()
        .arg("replay")
        .arg(&run_dir)
        .args(["--quiet"])
        .any_status()
        .run();
    let replayed = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    assert!(
        replayed == recorded,
        "the per-hat run replays to the same report"
    );
}
