//! What the benches share: a schema-valid stand-in answer for every step of the stage (a
//! fixture, not a model) and a one-line summary of timings.

use std::time::Duration;

use super::fake_openai::{Reply, SeenRequest};
use serde_json::{json, Value};

/// A schema-valid answer for any step (a stand-in for a model, not a model): hats write one
/// artifact, judges answer `unknown` for every id their schema lists.
pub fn answer(req: &SeenRequest) -> Reply {
    let format = &req.body["response_format"]["json_schema"];
    let props = &format["schema"]["properties"];
    let content = if format["name"] == "hat_answer" {
        json!({"summary": "bench", "artifacts": [{"path": "plan.md", "content": "# Plan\nRetries: 3."}]})
    } else {
        let (key, extra) = match format["name"].as_str() {
            Some("review_answer") => ("checks", json!({"severity": "low"})),
            Some("signal_answer") => ("requirements", json!({})),
            _ => ("constraints", json!({})),
        };
        let ids: Vec<Value> = props[key]["items"]["properties"]["id"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let items: Vec<Value> = ids
            .into_iter()
            .map(|id| {
                let mut v =
                    json!({"id": id, "verdict": "unknown", "finding": "bench", "evidence": []});
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                v
            })
            .collect();
        json!({"summary": "bench", key: items})
    };
    Reply::chat(content.to_string())
}

pub fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label}: min {:.2} ms, median {:.2} ms, max {:.2} ms ({} runs)",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
}
