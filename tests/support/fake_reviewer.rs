//! A scripted stand-in for a model that answers a whole stage — a test fixture, not a model.
//! It reads the answer schema of each request (requirement ids are an enum there), answers
//! every id with a verdict (default: the passing one) and cites evidence the way hatrack's
//! rules ask for, so grounding holds unless a test asks otherwise:
//! - each hat writes [`ARTIFACT_LINE`] and quotes (as a `> ` line) the wordiest line of the
//!   first repository input it was shown;
//! - constraint judges cite the hat's [`ARTIFACT_LINE`] (a hat constraint is about what the
//!   hat produced);
//! - review agents cite the wordiest line of the first repository input they were shown
//!   (their checks are about the repository), else the pipeline engineer's artifact;
//! - the completion judge, shown only artifacts, cites a hat's `> ` quote of the repository
//!   (whose words occur in a repository file), else the SRE's artifact line.
//!
//! Every default quote has at least 8 words, so it may stand for several requirements.

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
                // The hat's title, from its prompt's role line ("# Your role: SRE").
                let hat = prompt(request)
                    .lines()
                    .find_map(|l| l.strip_prefix("# Your role: "))
                    .unwrap_or("hat")
                    .to_string();
                let quoted = repository_line(request)
                    .map(|(_, line)| format!("> {line}\n"))
                    .unwrap_or_default();
                json!({
                    "summary": format!("{hat} (fake) wrote its plan."),
                    "artifacts": [{
                        "path": self.artifact_path.as_deref().unwrap_or("plan.md"),
                        "content": format!(
                            "# Plan of {hat}\n{ARTIFACT_LINE}\n{quoted}{}",
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
                let repository = repository_line(request);
                let checks: Vec<Value> = ids(&schema["checks"])
                    .iter()
                    .map(|id| {
                        let default = match &repository {
                            Some((source, line)) => self.evidence_of(id, source, line),
                            None => self.evidence(id, &self.artifact("pipeline-engineer")),
                        };
                        json!({
                            "id": id,
                            "verdict": self.word(id, "pass"),
                            "severity": "high",
                            "finding": self.finding_for(id, || format!("{id}: fake finding")),
                            "evidence": [self.cited_or("review_answer", id, default)],
                        })
                    })
                    .collect();
                json!({"summary": "fake review", "checks": checks})
            }
            Some("signal_answer") => {
                let quoted = quoted_repository_line(request);
                let reqs: Vec<Value> = ids(&schema["requirements"])
                    .iter()
                    .map(|id| {
                        let default = match &quoted {
                            Some((source, line)) => self.evidence_of(id, source, line),
                            None => self.evidence(id, &self.artifact("sre")),
                        };
                        json!({
                            "id": id,
                            "verdict": self.word(id, "met"),
                            "finding": self.finding_for(id, || format!("{id}: fake ruling")),
                            "evidence": [self.cited_or("signal_answer", id, default)],
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
        self.cited_or(schema, id, self.evidence(id, source))
    }

    /// The evidence a test asked for (by id, then by answer kind), else `default`.
    fn cited_or(&self, schema: &str, id: &str, default: Value) -> Value {
        if let Some((source, quote)) = self.quotes.get(id) {
            return json!({"source": source, "quote": quote});
        }
        match self.cite.get(schema) {
            Some((source, quote)) => json!({"source": source, "quote": quote}),
            None => default,
        }
    }

    /// The artifact line from `source`, or an invented quote for a fabricated id.
    fn evidence(&self, id: &str, source: &str) -> Value {
        self.evidence_of(id, source, ARTIFACT_LINE)
    }

    fn evidence_of(&self, id: &str, source: &str, quote: &str) -> Value {
        if self.fabricate.contains(id) {
            json!({"source": source, "quote": "Retries: 9 with a dead-letter queue in every region."})
        } else {
            json!({"source": source, "quote": quote})
        }
    }
}

/// The user message of a request: the step's prompt.
fn prompt(request: &SeenRequest) -> &str {
    request.body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
}

/// Each framed block of a prompt: its name and its lines.
fn blocks(prompt: &str) -> Vec<(String, Vec<&str>)> {
    let mut out = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in prompt.lines() {
        if let Some(at) = line.find("<<<BEGIN ") {
            let name = line[at + "<<<BEGIN ".len()..].trim_end_matches(">>>");
            open = Some((name.to_string(), Vec::new()));
        } else if line.starts_with("<<<END ") {
            out.extend(open.take());
        } else if let Some((_, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    out
}

/// Words of a line: runs of non-space characters holding a letter or digit.
fn words(line: &str) -> usize {
    line.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

/// The line with the most words (at least 8) of `lines`, leaving out hatrack's own marks.
fn wordiest<'a>(lines: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<&str> = None;
    for line in lines.map(str::trim) {
        if line.contains("hatrack") || line.contains("<<") || line.starts_with('[') {
            continue;
        }
        if words(line) >= 8 && best.is_none_or(|b| words(line) > words(b)) {
            best = Some(line);
        }
    }
    best
}

/// The first repository input shown in the prompt (a block not named `artifacts/…`) and its
/// wordiest line.
fn repository_line(request: &SeenRequest) -> Option<(String, String)> {
    blocks(prompt(request))
        .into_iter()
        .filter(|(name, _)| !name.starts_with("artifacts/"))
        .find_map(|(name, lines)| wordiest(lines.into_iter()).map(|l| (name, l.to_string())))
}

/// A hat's `> ` quote of the repository in an artifact shown in the prompt: the artifact's
/// name and the quoted words.
fn quoted_repository_line(request: &SeenRequest) -> Option<(String, String)> {
    blocks(prompt(request))
        .into_iter()
        .filter(|(name, _)| name.starts_with("artifacts/"))
        .find_map(|(name, lines)| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix("> "))
                .map(|l| (name, l.trim().to_string()))
        })
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
