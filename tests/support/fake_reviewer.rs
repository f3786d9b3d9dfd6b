//! A scripted stand-in for a model that answers a whole stage — a test fixture, not a model.
//! It reads the answer schema of each request (requirement ids are an enum there), answers
//! every id with a verdict (default: the passing one) and cites evidence copied from the
//! artifact it "produced", so grounding holds unless a test asks for an invented quote.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::fake_openai::{Reply, SeenRequest};

/// The text every hat's artifact holds, and the quote cited from it.
pub const ARTIFACT_LINE: &str = "Retries: 3 with exponential backoff; rollback plan reviewed.";

#[derive(Debug, Clone, Default)]
pub struct FakeReviewer {
    /// Requirement id → verdict word (`pass`, `fail`, `unknown`, `met`, `unmet`).
    pub verdicts: HashMap<String, String>,
    /// Requirement ids whose evidence quote is invented.
    pub fabricate: HashSet<String>,
    /// Answer schema name (`constraint_answer`, `review_answer`, `signal_answer`) → the
    /// evidence every verdict of that kind cites instead of the artifact line.
    pub cite: HashMap<String, (String, String)>,
    /// Requirement id → the one piece of evidence its verdict cites (over `cite`).
    pub quotes: HashMap<String, (String, String)>,
    /// The path each hat gives its artifact (default `plan.md`).
    pub artifact_path: Option<String>,
    /// Text every hat appends to its artifact.
    pub artifact_extra: Option<String>,
    /// Requirement id → the finding its verdict gives (default: a fake finding).
    pub findings: HashMap<String, String>,
}

impl FakeReviewer {
    pub fn new() -> FakeReviewer {
        FakeReviewer::default()
    }

    pub fn verdict(mut self, id: &str, verdict: &str) -> FakeReviewer {
        self.verdicts.insert(id.into(), verdict.into());
        self
    }

    /// Every verdict of one answer kind cites `quote` from `source`.
    pub fn cite(mut self, schema: &str, source: &str, quote: &str) -> FakeReviewer {
        self.cite
            .insert(schema.into(), (source.into(), quote.into()));
        self
    }

    /// The verdict on `id` cites `quote` from `source`.
    pub fn quote(mut self, id: &str, source: &str, quote: &str) -> FakeReviewer {
        self.quotes.insert(id.into(), (source.into(), quote.into()));
        self
    }

    /// Every hat appends `text` to its artifact.
    pub fn artifact_text(mut self, text: &str) -> FakeReviewer {
        self.artifact_extra = Some(text.into());
        self
    }

    /// The verdict on `id` gives `finding`.
    pub fn finding(mut self, id: &str, finding: &str) -> FakeReviewer {
        self.findings.insert(id.into(), finding.into());
        self
    }

    /// Every hat names its artifact `path`.
    pub fn artifact_path(mut self, path: &str) -> FakeReviewer {
        self.artifact_path = Some(path.into());
        self
    }

    pub fn fabricate(mut self, id: &str) -> FakeReviewer {
        self.fabricate.insert(id.into());
        self
    }

    /// The answer to one request, as a chat completion.
    pub fn answer(&self, request: &SeenRequest) -> Reply {
        Reply::chat_with(&self.content(request).to_string(), "stop", 100, 50)
    }

    fn content(&self, request: &SeenRequest) -> Value {
        let format = &request.body["response_format"]["json_schema"];
        let schema = &format["schema"]["properties"];
        match format["name"].as_str() {
            Some("hat_answer") => {
                // The hat's title, from the first line of its prompt ("# Your role: SRE").
                let hat = request.body["messages"][1]["content"]
                    .as_str()
                    .and_then(|t| t.lines().next())
                    .and_then(|l| l.strip_prefix("# Your role: "))
                    .unwrap_or("hat")
                    .to_string();
                json!({
                    "summary": format!("{hat} (fake) wrote its plan."),
                    "artifacts": [{
                        "path": self.artifact_path.as_deref().unwrap_or("plan.md"),
                        "content": format!(
                            "# Plan of {hat}\n{ARTIFACT_LINE}\n{}",
                            self.artifact_extra.as_deref().unwrap_or_default()
                        ),
                    }],
                })
            }
            Some("constraint_answer") => {
                let ids = ids(&schema["constraints"]);
                let hat = ids
                    .first()
                    .and_then(|id| id.split('/').next())
                    .unwrap_or("hat")
                    .to_string();
                let source = format!(
                    "artifacts/{hat}/{}",
                    self.artifact_path.as_deref().unwrap_or("plan.md")
                );
                let verdicts: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        json!({
                            "id": id,
                            "verdict": self.word(id, "pass"),
                            "finding": self.finding_for(id, || format!("{id} checked by the fake judge")),
                            "evidence": [self.cited("constraint_answer", id, &source)],
                        })
                    })
                    .collect();
                json!({"summary": format!("fake constraint judge of {hat}"), "constraints": verdicts})
            }
            Some("review_answer") => {
                let checks: Vec<Value> = ids(&schema["checks"])
                    .iter()
                    .map(|id| {
                        json!({
                            "id": id,
                            "verdict": self.word(id, "pass"),
                            "severity": "high",
                            "finding": self.finding_for(id, || format!("{id}: fake finding")),
                            "evidence": [self.cited("review_answer", id, &self.artifact("pipeline-engineer"))],
                        })
                    })
                    .collect();
                json!({"summary": "fake review", "checks": checks})
            }
            Some("signal_answer") => {
                let reqs: Vec<Value> = ids(&schema["requirements"])
                    .iter()
                    .map(|id| {
                        json!({
                            "id": id,
                            "verdict": self.word(id, "met"),
                            "finding": self.finding_for(id, || format!("{id}: fake ruling")),
                            "evidence": [self.cited("signal_answer", id, &self.artifact("sre"))],
                        })
                    })
                    .collect();
                json!({"summary": "fake judge", "requirements": reqs})
            }
            other => panic!("the fake reviewer does not know the schema {other:?}"),
        }
    }

    fn finding_for(&self, id: &str, default: impl FnOnce() -> String) -> String {
        self.findings.get(id).cloned().unwrap_or_else(default)
    }

    fn word(&self, id: &str, default: &str) -> String {
        self.verdicts
            .get(id)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// Where a hat's artifact is, as the prompts name it.
    fn artifact(&self, hat: &str) -> String {
        format!(
            "artifacts/{hat}/{}",
            self.artifact_path.as_deref().unwrap_or("plan.md")
        )
    }

    fn cited(&self, schema: &str, id: &str, source: &str) -> Value {
        if let Some((source, quote)) = self.quotes.get(id) {
            return json!({"source": source, "quote": quote});
        }
        match self.cite.get(schema) {
            Some((source, quote)) => json!({"source": source, "quote": quote}),
            None => self.evidence(id, source),
        }
    }

    fn evidence(&self, id: &str, source: &str) -> Value {
        if self.fabricate.contains(id) {
            json!({"source": source, "quote": "Retries: 9 with a dead-letter queue in every region."})
        } else {
            json!({"source": source, "quote": ARTIFACT_LINE})
        }
    }
}

/// The enum of ids in an answer list's schema.
fn ids(list_schema: &Value) -> Vec<String> {
    list_schema["items"]["properties"]["id"]["enum"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
