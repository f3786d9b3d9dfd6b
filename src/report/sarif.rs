//! `report.sarif`: SARIF 2.1.0 for code scanning (GitHub's `upload-sarif`). One rule per
//! requirement (and one per hat that produced no artifact, when that blocks the signal);
//! one result per finding of [`super::findings`] — the gate's reasons as `error`, other
//! requirements not met as `warning` (`note` for MAY). A result points at the repository
//! file its evidence quotes (with the line), else at the workspace's `hatrack.toml`, with the
//! quoted artifact, if any, as a related location. `partialFingerprints` hash the rule id,
//! the quoted source and the normalised quote — never times or run ids — so the same
//! finding keeps its identity from run to run.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::findings::{findings, Finding, Severity};
use super::model::{Blocker, Report, RequirementReport};
use super::{Exporter, ReportError};
use crate::checks::Level;

pub const SARIF_VERSION: &str = "2.1.0";
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The key of hatrack's fingerprint in `partialFingerprints` (versioned: a change of recipe
/// gets a new key rather than silently new values).
pub const FINGERPRINT_KEY: &str = "hatrackFinding/v1";
/// The key of a re-emitted check finding's fingerprint (the tool's own, else hatrack's).
pub const CHECK_FINGERPRINT_KEY: &str = "hatrackCheck/v1";
/// Where results with no repository location point: the workspace's configuration.
const FALLBACK_FILE: &str = "hatrack.toml";
/// The base the repository's files are relative to (GitHub's convention).
const SRCROOT: &str = "%SRCROOT%";

pub struct SarifExporter;

impl Exporter for SarifExporter {
    fn file_name(&self) -> &'static str {
        "report.sarif"
    }

    fn render(&self, report: &Report) -> Result<String, ReportError> {
        let mut text =
            serde_json::to_string_pretty(&sarif(report)).map_err(|e| ReportError::Render {
                format: "report.sarif",
                message: e.to_string(),
            })?;
        text.push('\n');
        Ok(text)
    }
}

/// sha256 (hex) of the rule id, the quoted source and the quote (lowercased, whitespace
/// folded), each on its own line.
pub fn fingerprint(rule_id: &str, source: &str, quote: &str) -> String {
    let quote = crate::verdict::fold_whitespace(quote).to_lowercase();
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update(b"\n");
    h.update(source.as_bytes());
    h.update(b"\n");
    h.update(quote.as_bytes());
    hex::encode(h.finalize())
}

/// The rule's level: `error` for a blocking requirement, else `warning` (`note` for MAY).
fn level_of(r: &RequirementReport) -> &'static str {
    Severity::of_rule(r).as_str()
}

fn rule(r: &RequirementReport) -> Value {
    let short: String = r.text.chars().take(120).collect();
    let short = if short.len() < r.text.len() {
        format!("{short}…")
    } else {
        short
    };
    json!({
        "id": r.id,
        "shortDescription": { "text": short },
        "fullDescription": { "text": format!("{} ({}): {}", r.id, r.level, r.text) },
        "help": {
            "text": format!(
                "{} requirement of the hatrack stage ({}), defined at {} and judged by {}. It is {}: it is met when the judge rules so with grounded evidence, and {}.",
                r.level, super::text::weight(r), r.source, r.judged_by, r.about.describe(), r.about.evidence_rule()
            ),
        },
        "defaultConfiguration": { "level": level_of(r) },
        "properties": {
            "level": r.level,
            "blocking": r.blocking,
            "about": r.about,
            "weight": super::text::weight(r),
            "kind": r.kind,
            "source": r.source,
            "tags": ["hatrack"],
        },
    })
}

fn result(f: &Finding<'_>, rule_index: usize) -> Value {
    let (source, quote) = f
        .location
        .as_ref()
        .map(|l| (l.path.as_str(), l.quote.as_str()))
        .unwrap_or(("", ""));
    let mut physical = json!({
        "artifactLocation": { "uri": FALLBACK_FILE, "uriBaseId": SRCROOT },
    });
    let mut related = Vec::new();
    if let Some(loc) = &f.location {
        let mut here = json!({ "artifactLocation": { "uri": loc.path } });
        if let Some(line) = loc.line {
            here["region"] = json!({ "startLine": line });
        }
        if loc.in_repository {
            here["artifactLocation"]["uriBaseId"] = json!(SRCROOT);
            physical = here;
        } else {
            here["artifactLocation"]["uriBaseId"] = json!("HATRACK_RUN_DIR");
            related.push(json!({
                "id": 0,
                "physicalLocation": here,
                "message": { "text": "quoted from this artifact of the run" },
            }));
        }
    }
    let mut value = json!({
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": f.severity.as_str(),
        "message": { "text": f.message },
        "locations": [{ "physicalLocation": physical }],
        "partialFingerprints": { FINGERPRINT_KEY: fingerprint(&f.rule_id, source, quote) },
    });
    if !related.is_empty() {
        value["relatedLocations"] = json!(related);
    }
    if let Some(r) = f.requirement {
        value["properties"] = json!({ "verdict": r.verdict, "judgedBy": r.judged_by });
    }
    value
}

fn sarif(report: &Report) -> Value {
    let mut rules: Vec<Value> = report.requirements.iter().map(rule).collect();
    let mut ids: Vec<String> = report.requirements.iter().map(|r| r.id.clone()).collect();
    let found = findings(report);
    for f in &found {
        if !ids.contains(&f.rule_id) {
            // A hat that produced no artifact, or a step (or the stage) that judged nothing:
            // its step id is the rule.
            let (short, full, help) = match f.blocker {
                Some(Blocker::NothingJudged { .. }) => (
                    "every judging step rules on something".to_string(),
                    format!("{} must rule (met or unmet) on at least one requirement for the completion signal to be met", f.rule_id),
                    "A stage, hat or review agent with nothing judged cannot open the gate; see the step in report.md.",
                ),
                _ => (
                    "every hat produces at least one artifact".to_string(),
                    format!("{} must produce at least one artifact for the completion signal to be met", f.rule_id),
                    "The stage's completion signal needs an artifact from every hat; see the step's errors in report.md.",
                ),
            };
            rules.push(json!({
                "id": f.rule_id,
                "shortDescription": { "text": short },
                "fullDescription": { "text": full },
                "help": { "text": help },
                "defaultConfiguration": { "level": "error" },
                "properties": { "tags": ["hatrack"] },
            }));
            ids.push(f.rule_id.clone());
        }
    }
    let results: Vec<Value> = found
        .iter()
        .map(|f| {
            let index = ids.iter().position(|id| *id == f.rule_id).unwrap_or(0);
            result(f, index)
        })
        .collect();
    let mut runs = vec![json!({
            "tool": {
                "driver": {
                    "name": "hatrack",
                    "version": report.hatrack_version,
                    "semanticVersion": report.hatrack_version,
                    "rules": rules,
                },
            },
            "automationDetails": { "id": format!("hatrack/{}/", report.stage.name) },
            "results": results,
            "properties": run_properties(report),
    })];
    if let Some(facts) = &report.checks {
        runs.extend(check_runs(report, facts));
    }
    json!({
        "$schema": SCHEMA,
        "version": SARIF_VERSION,
        "runs": runs,
    })
}

/// The tools' own findings, re-emitted each tool under its own run and category
/// (`hatrack-checks/<stage>/<tool>/`), never merged into hatrack's: paths relative to the
/// repository, a fingerprint on every result (the tool's, else hatrack's), and the
/// requirements each is mapped to. Passing records are not results.
fn check_runs(report: &Report, facts: &crate::checks::Facts) -> Vec<Value> {
    let mut tools: Vec<&str> = Vec::new();
    for f in facts.findings.iter().filter(|f| f.level != Level::Pass) {
        if !tools.contains(&f.tool.as_str()) {
            tools.push(&f.tool);
        }
    }
    tools
        .into_iter()
        .map(|tool| {
            let mine: Vec<&crate::checks::Finding> = facts
                .findings
                .iter()
                .filter(|f| f.tool == tool && f.level != Level::Pass)
                .collect();
            let mut rules: Vec<(&str, Option<&str>)> = Vec::new();
            for f in &mine {
                if !rules.iter().any(|(id, _)| *id == f.rule) {
                    rules.push((&f.rule, f.rule_name.as_deref()));
                }
            }
            let results: Vec<Value> = mine
                .iter()
                .map(|f| check_result(facts, f, rules.iter().position(|(id, _)| *id == f.rule)))
                .collect();
            let rules: Vec<Value> = rules
                .iter()
                .map(|(id, name)| {
                    let mut rule = json!({
                        "id": id,
                        "shortDescription": { "text": name.unwrap_or(id) },
                        "properties": { "tags": ["hatrack-check"] },
                    });
                    if let Some(name) = name {
                        rule["name"] = json!(name);
                    }
                    rule
                })
                .collect();
            json!({
                "tool": { "driver": { "name": tool, "rules": rules } },
                "automationDetails": {
                    "id": format!("hatrack-checks/{}/{tool}/", report.stage.name)
                },
                "results": results,
            })
        })
        .collect()
}

fn check_result(
    facts: &crate::checks::Facts,
    f: &crate::checks::Finding,
    index: Option<usize>,
) -> Value {
    let level = match f.level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note | Level::Pass => "note",
    };
    let mut physical = json!({
        "artifactLocation": {
            "uri": f.path.as_deref().unwrap_or(FALLBACK_FILE),
            "uriBaseId": SRCROOT,
        },
    });
    if let (Some(line), Some(_)) = (f.line, &f.path) {
        physical["region"] = json!({ "startLine": line });
    }
    let mut message = f.message.clone();
    if let Some(excerpt) = &f.excerpt {
        message.push_str(&format!(" — {excerpt}"));
    }
    let mut result = json!({
        "ruleId": f.rule,
        "level": level,
        "message": { "text": message },
        "locations": [{ "physicalLocation": physical }],
        "partialFingerprints": { CHECK_FINGERPRINT_KEY: f.fingerprint },
        "properties": {
            "finding": f.name,
            "origin": f.origin,
            "mappedTo": crate::checks::mapping::mapped_to(facts, f),
        },
    });
    if let Some(index) = index {
        result["ruleIndex"] = json!(index);
    }
    result
}

/// The run's properties; `completionSignal` appears only for a stage without one, so the
/// SARIF of a stage with a signal keeps its bytes.
fn run_properties(report: &Report) -> serde_json::Value {
    let mut props = json!({
        "stage": report.stage.name,
        "signalMet": report.outcome.signal_met,
        "summary": report.outcome.summary,
    });
    if let Some(note) = super::text::signal_note(report) {
        props["completionSignal"] = json!(note);
    }
    // The effective policy, as report.json records it (absent for runs recorded before).
    if let Some(policy) = &report.run.policy {
        props["policy"] = json!(policy);
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_case_and_spacing_of_the_quote_only() {
        let a = fingerprint("sre/check/1", "ops/runbook.md", "Retries:  3\nwith backoff");
        assert_eq!(
            a,
            fingerprint("sre/check/1", "ops/runbook.md", "retries: 3 with BACKOFF")
        );
        assert_ne!(
            a,
            fingerprint("sre/check/2", "ops/runbook.md", "retries: 3 with backoff")
        );
        assert_ne!(
            a,
            fingerprint("sre/check/1", "dags/a.py", "retries: 3 with backoff")
        );
        assert_eq!(a.len(), 64);
    }
}
