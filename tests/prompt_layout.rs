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
