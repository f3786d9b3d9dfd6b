//! What each kind of step answers, as JSON Schemas (sent as `response_format`, strict) and as
//! the Rust types the validated answer is read into.

use serde::Deserialize;
use serde_json::{json, Value};

/// One quote a judge offered as evidence, and the source it named: unchecked (grounding
/// turns it into a [`crate::verdict::Evidence`]).
#[derive(Debug, Clone, Deserialize)]
pub struct OfferedEvidence {
    pub source: String,
    pub quote: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactAnswer {
    pub path: String,
    pub content: String,
}

/// A hat's answer: what it produced. Hats produce; their constraints are judged by a
/// separate constraint judge, so a hat is never asked to grade its own work.
#[derive(Debug, Clone, Deserialize)]
pub struct HatAnswer {
    pub summary: String,
    pub artifacts: Vec<ArtifactAnswer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConstraintVerdict {
    pub id: String,
    /// `pass`, `fail`, `unknown`.
    pub verdict: String,
    pub finding: String,
    pub evidence: Vec<OfferedEvidence>,
}

/// A constraint judge's answer on one hat's constraints.
#[derive(Debug, Clone, Deserialize)]
pub struct ConstraintAnswer {
    pub summary: String,
    pub constraints: Vec<ConstraintVerdict>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckVerdict {
    pub id: String,
    /// `pass`, `fail`, `unknown`.
    pub verdict: String,
    /// `high`, `medium`, `low`.
    pub severity: String,
    pub finding: String,
    pub evidence: Vec<OfferedEvidence>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewAnswer {
    pub summary: String,
    pub checks: Vec<CheckVerdict>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignalVerdict {
    pub id: String,
    /// `met`, `unmet`, `unknown`.
    pub verdict: String,
    pub finding: String,
    pub evidence: Vec<OfferedEvidence>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignalAnswer {
    pub summary: String,
    pub requirements: Vec<SignalVerdict>,
}

/// Artifacts one hat may produce in one answer (a bound that also stops a small model from
/// repeating one file until it runs out of tokens).
pub const MAX_ARTIFACTS: usize = 10;

fn evidence_schema() -> Value {
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["source", "quote"],
            "properties": {
                "source": {"type": "string"},
                "quote": {"type": "string"}
            }
        }
    })
}

/// A list with exactly one entry per id (ids as an enum, so the model cannot invent one).
fn verdict_list(ids: &[String], verdicts: &[&str], extra: &[(&str, Value)]) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("id".into(), json!({"type": "string", "enum": ids}));
    properties.insert(
        "verdict".into(),
        json!({"type": "string", "enum": verdicts}),
    );
    let mut required = vec!["id".to_string(), "verdict".to_string()];
    for (name, schema) in extra {
        properties.insert((*name).into(), schema.clone());
        required.push((*name).into());
    }
    properties.insert("evidence".into(), evidence_schema());
    required.push("evidence".into());
    json!({
        "type": "array",
        "minItems": ids.len(),
        "maxItems": ids.len(),
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": required,
            "properties": properties
        }
    })
}

pub fn hat_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "artifacts"],
        "properties": {
            "summary": {"type": "string"},
            "artifacts": {
                "type": "array",
                "maxItems": MAX_ARTIFACTS,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["path", "content"],
                    "properties": {
                        "path": {"type": "string"},
                        "content": {"type": "string"}
                    }
                }
            }
        }
    })
}

pub fn constraint_schema(constraint_ids: &[String]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "constraints"],
        "properties": {
            "summary": {"type": "string"},
            "constraints": verdict_list(
                constraint_ids,
                &["pass", "fail", "unknown"],
                &[("finding", json!({"type": "string"}))]
            )
        }
    })
}

pub fn review_schema(check_ids: &[String]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "checks"],
        "properties": {
            "summary": {"type": "string"},
            "checks": verdict_list(
                check_ids,
                &["pass", "fail", "unknown"],
                &[
                    ("severity", json!({"type": "string", "enum": ["high", "medium", "low"]})),
                    ("finding", json!({"type": "string"}))
                ]
            )
        }
    })
}

pub fn signal_schema(requirement_ids: &[String]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "requirements"],
        "properties": {
            "summary": {"type": "string"},
            "requirements": verdict_list(
                requirement_ids,
                &["met", "unmet", "unknown"],
                &[("finding", json!({"type": "string"}))]
            )
        }
    })
}

/// One judge's word on one requirement, whatever kind of step gave it.
pub struct VerdictView<'a> {
    pub verdict: &'a str,
    pub finding: &'a str,
    pub severity: Option<&'a str>,
    pub evidence: &'a [OfferedEvidence],
}

/// An answer that rules on requirements by id: read the same way for constraint judges,
/// review agents and the completion judge.
pub trait Verdicts {
    fn summary(&self) -> &str;
    fn verdict_for(&self, id: &str) -> Option<VerdictView<'_>>;
}

/// The three judging answers are read alike: a summary, and a list of verdicts found by id
/// (a review check's with its severity).
macro_rules! verdicts_by_id {
    ($answer:ty, $list:ident $(, $severity:ident)?) => {
        impl Verdicts for $answer {
            fn summary(&self) -> &str {
                &self.summary
            }
            fn verdict_for(&self, id: &str) -> Option<VerdictView<'_>> {
                let v = self.$list.iter().find(|v| v.id == id)?;
                Some(VerdictView {
                    verdict: &v.verdict,
                    finding: &v.finding,
                    severity: verdicts_by_id!(@severity v $($severity)?),
                    evidence: &v.evidence,
                })
            }
        }
    };
    (@severity $v:ident) => {
        None
    };
    (@severity $v:ident $severity:ident) => {
        Some(&$v.$severity)
    };
}

verdicts_by_id!(ConstraintAnswer, constraints);
verdicts_by_id!(ReviewAnswer, checks, severity);
verdicts_by_id!(SignalAnswer, requirements);
