//! What moved between two finished runs — verdict flips, requirements added or removed,
//! steps whose requests changed (with a readable diff of their messages), artifacts added,
//! removed or changed, and tokens, time and cost per step — read from their run
//! directories (report.json, exchanges.jsonl) and rendered as text or Markdown
//! ([`render`]). `hatrack diff` is its command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::model::transcript::{read_exchanges, Exchange};
use crate::report::{Report, StepReport, TokenUsage};
use crate::run::rundir::EXCHANGES_FILE;
use crate::Error;

mod render;

pub use render::render_text;

/// Prices of a million tokens, to show cost and its delta (none: no cost column values).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenPrices {
    pub prompt: Option<f64>,
    pub completion: Option<f64>,
}

/// Lines of a message or artifact diff shown before it is cut.
const MAX_DIFF_LINES: usize = 60;

#[derive(Debug, Serialize)]
pub struct RunDiff {
    pub run_a: String,
    pub run_b: String,
    pub verdicts: Vec<VerdictChange>,
    pub added_requirements: Vec<String>,
    pub removed_requirements: Vec<String>,
    pub changed_steps: Vec<StepChange>,
    pub artifacts: Vec<ArtifactChange>,
    pub steps: Vec<StepCost>,
    pub total: StepCost,
    pub flipped: usize,
}

#[derive(Debug, Serialize)]
pub struct VerdictChange {
    pub id: String,
    pub a: String,
    pub b: String,
    pub flipped: bool,
}

/// One turn of one step whose request differs between the runs. A step with tools has a
/// request per turn (turn N of A is compared with turn N of B); a plain step's turns are its
/// first ask and its re-asks.
#[derive(Debug, Serialize)]
pub struct StepChange {
    pub step: String,
    /// The exchange's turn (`attempt` in exchanges.jsonl), from 1.
    pub turn: u32,
    /// `changed`, `added` (only in B) or `removed` (only in A).
    pub change: String,
    pub diff: String,
}

#[derive(Debug, Serialize)]
pub struct ArtifactChange {
    pub path: String,
    /// `added`, `removed`, `changed`.
    pub change: String,
    pub diff: String,
}

#[derive(Debug, Serialize, Default)]
pub struct StepCost {
    pub step: String,
    pub tokens_a: u64,
    pub tokens_b: u64,
    pub ms_a: u64,
    pub ms_b: u64,
    pub cost_a: Option<f64>,
    pub cost_b: Option<f64>,
}

fn read_report(dir: &Path) -> Result<Report, Error> {
    crate::report::json::read_recorded(
        dir,
        |e| {
            Error::usage(format!(
                "{e}; pass two run directories written by `hatrack run`"
            ))
        },
        |path, e| {
            Error::usage(format!(
                "{}:{}: not a hatrack report: {e}",
                path.display(),
                e.line()
            ))
        },
    )
}

/// Each step's requests by turn (every sample's; one per distinct request, so the retries
/// of one request count once), in step order then turn order.
fn requests_by_turn(exchanges: &[Exchange]) -> BTreeMap<(String, u32), Vec<&Exchange>> {
    let mut by_turn: BTreeMap<(String, u32), Vec<&Exchange>> = BTreeMap::new();
    for e in exchanges {
        let list = by_turn.entry((e.step.clone(), e.attempt)).or_default();
        if !list.iter().any(|x| x.request_hash == e.request_hash) {
            list.push(e);
        }
    }
    by_turn
}

/// The turns whose requests differ, and the turns only one run has.
fn changed_turns(ex_a: &[Exchange], ex_b: &[Exchange]) -> Vec<StepChange> {
    let (turns_a, turns_b) = (requests_by_turn(ex_a), requests_by_turn(ex_b));
    let keys: BTreeSet<&(String, u32)> = turns_a.keys().chain(turns_b.keys()).collect();
    let mut changes = Vec::new();
    for key in keys {
        let (change, diff) = match (turns_a.get(key), turns_b.get(key)) {
            (Some(x), Some(y)) => {
                let hashes_a: BTreeSet<&str> = x.iter().map(|e| e.request_hash.as_str()).collect();
                let hashes_b: BTreeSet<&str> = y.iter().map(|e| e.request_hash.as_str()).collect();
                if hashes_a == hashes_b {
                    continue;
                }
                let diff = short_diff(
                    &messages_text(&x[0].request),
                    &messages_text(&y[0].request),
                    "A",
                    "B",
                );
                ("changed", diff)
            }
            (None, Some(_)) => ("added", String::new()),
            (Some(_), None) => ("removed", String::new()),
            (None, None) => continue,
        };
        changes.push(StepChange {
            step: key.0.clone(),
            turn: key.1,
            change: change.into(),
            diff,
        });
    }
    changes
}

fn messages_text(request: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(messages) = request.get("messages").and_then(|m| m.as_array()) {
        for m in messages {
            let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("?");
            let content = m.get("content").and_then(|c| c.as_str()).unwrap_or("");
            out.push_str(&format!("──── {role} ────\n{content}\n"));
        }
    }
    for (k, v) in request.as_object().into_iter().flatten() {
        if k != "messages" && k != "response_format" {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    out
}

/// A unified diff cut to `MAX_DIFF_LINES`, with a marker saying how much was left out.
fn short_diff(a: &str, b: &str, label_a: &str, label_b: &str) -> String {
    let text = similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(label_a, label_b)
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= MAX_DIFF_LINES {
        return text;
    }
    let mut cut = lines[..MAX_DIFF_LINES].join("\n");
    cut.push_str(&format!(
        "\n… {} more diff lines not shown\n",
        lines.len() - MAX_DIFF_LINES
    ));
    cut
}

fn cost(usage: &TokenUsage, prices: TokenPrices) -> Option<f64> {
    match (prices.prompt, prices.completion) {
        (None, None) => None,
        (p, c) => Some(
            usage.prompt_tokens as f64 * p.unwrap_or(0.0) / 1e6
                + usage.completion_tokens as f64 * c.unwrap_or(0.0) / 1e6,
        ),
    }
}

/// Compares the run directories `run_a` and `run_b` (a usage error when either holds no
/// readable report or transcript).
pub fn compare(run_a: &Path, run_b: &Path, prices: TokenPrices) -> Result<RunDiff, Error> {
    let (a, b) = (read_report(run_a)?, read_report(run_b)?);
    let ex_a = read_exchanges(&run_a.join(EXCHANGES_FILE))?;
    let ex_b = read_exchanges(&run_b.join(EXCHANGES_FILE))?;
    let requirements = compare_requirements(&a, &b);
    let changed_steps = changed_turns(&ex_a, &ex_b);
    let artifacts = changed_artifacts(&a, &b, (run_a, run_b));
    let (costs, total) = step_costs(&a, &b, prices);
    let flipped = requirements.verdicts.iter().filter(|v| v.flipped).count();
    Ok(RunDiff {
        run_a: run_a.display().to_string(),
        run_b: run_b.display().to_string(),
        verdicts: requirements.verdicts,
        added_requirements: requirements.added,
        removed_requirements: requirements.removed,
        changed_steps,
        artifacts,
        steps: costs,
        total,
        flipped,
    })
}

/// How the requirements of two runs compare: verdicts of those both have, and ids only one has.
struct RequirementChanges {
    /// In A's order, for every requirement B has too.
    verdicts: Vec<VerdictChange>,
    /// Only in B.
    added: Vec<String>,
    /// Only in A.
    removed: Vec<String>,
}

fn compare_requirements(a: &Report, b: &Report) -> RequirementChanges {
    fn verdict_by_id(run: &Report) -> BTreeMap<&str, &str> {
        run.requirements
            .iter()
            .map(|r| (r.id.as_str(), r.verdict.as_str()))
            .collect()
    }
    let (req_a, req_b) = (verdict_by_id(a), verdict_by_id(b));
    let mut verdicts = Vec::new();
    for r in &a.requirements {
        if let Some(vb) = req_b.get(r.id.as_str()) {
            verdicts.push(VerdictChange {
                id: r.id.clone(),
                a: r.verdict.as_str().into(),
                b: (*vb).into(),
                flipped: r.verdict.as_str() != *vb,
            });
        }
    }
    let only_in = |run: &Report, other: &BTreeMap<&str, &str>| -> Vec<String> {
        run.requirements
            .iter()
            .filter(|r| !other.contains_key(r.id.as_str()))
            .map(|r| r.id.clone())
            .collect()
    };
    RequirementChanges {
        verdicts,
        added: only_in(b, &req_a),
        removed: only_in(a, &req_b),
    }
}

/// The artifacts (by path) added, removed or changed (by digest) between the runs; a changed
/// one carries a diff of its text as the run directories hold it now.
fn changed_artifacts(
    a: &Report,
    b: &Report,
    (run_a, run_b): (&Path, &Path),
) -> Vec<ArtifactChange> {
    let arts = |r: &Report| -> BTreeMap<String, String> {
        r.steps
            .iter()
            .flat_map(|s| s.artifacts.iter())
            .map(|x| (x.path.clone(), x.sha256.clone()))
            .collect()
    };
    let (arts_a, arts_b) = (arts(a), arts(b));
    let mut artifacts = Vec::new();
    for path in arts_a.keys().chain(arts_b.keys()).collect::<BTreeSet<_>>() {
        let change = match (arts_a.get(path), arts_b.get(path)) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(_), Some(_)) => "changed",
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (None, None) => continue,
        };
        // The path comes from a report anyone may have edited: read only inside the run.
        let read = |dir: &Path| {
            use crate::safe_fs::{read_bounded_string, Kind, Links};
            read_bounded_string(&dir.join(path), Kind::RUN_FILE, Links::Within(dir))
                .unwrap_or_default()
        };
        let diff = if change == "changed" {
            short_diff(
                &read(run_a),
                &read(run_b),
                &format!("A/{path}"),
                &format!("B/{path}"),
            )
        } else {
            String::new()
        };
        artifacts.push(ArtifactChange {
            path: path.clone(),
            change: change.into(),
            diff,
        });
    }
    artifacts
}

/// A step's tokens (prompt and completion); 0 for a step the run does not have.
fn step_tokens(step: Option<&StepReport>) -> u64 {
    step.map(|s| {
        s.usage
            .prompt_tokens
            .saturating_add(s.usage.completion_tokens)
    })
    .unwrap_or(0)
}

/// Tokens, time and cost of every step either run has (A's steps first, then B's new ones),
/// and their total (whose cost is each run's own total).
fn step_costs(a: &Report, b: &Report, prices: TokenPrices) -> (Vec<StepCost>, StepCost) {
    let mut costs = Vec::new();
    let mut total = StepCost {
        step: "total".into(),
        ..Default::default()
    };
    let ids: Vec<&String> = {
        let mut seen = Vec::new();
        for s in a.steps.iter().chain(&b.steps) {
            if !seen.contains(&&s.id) {
                seen.push(&s.id);
            }
        }
        seen
    };
    for id in ids {
        let sa = a.steps.iter().find(|s| &s.id == id);
        let sb = b.steps.iter().find(|s| &s.id == id);
        let c = StepCost {
            step: id.clone(),
            tokens_a: step_tokens(sa),
            tokens_b: step_tokens(sb),
            ms_a: sa.map(|s| s.duration_ms).unwrap_or(0),
            ms_b: sb.map(|s| s.duration_ms).unwrap_or(0),
            cost_a: sa.and_then(|s| cost(&s.usage, prices)),
            cost_b: sb.and_then(|s| cost(&s.usage, prices)),
        };
        // Saturating: report.json is outside input (it may have been edited).
        total.tokens_a = total.tokens_a.saturating_add(c.tokens_a);
        total.tokens_b = total.tokens_b.saturating_add(c.tokens_b);
        total.ms_a = total.ms_a.saturating_add(c.ms_a);
        total.ms_b = total.ms_b.saturating_add(c.ms_b);
        total.cost_a = cost(&a.run.usage, prices);
        total.cost_b = cost(&b.run.usage, prices);
        costs.push(c);
    }
    (costs, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(step: &str, turn: u32, text: &str) -> Exchange {
        let request = json!({"messages": [{"role": "user", "content": text}]});
        Exchange {
            step: step.into(),
            attempt: turn,
            request_hash: crate::model::request_hash(&request),
            request,
            response: None,
            error: None,
            usage: Default::default(),
            duration_ms: 1,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            replayed: false,
            streamed: false,
        }
    }

    #[test]
    fn turns_are_compared_one_by_one_and_one_sided_turns_are_listed() {
        let a = [
            turn("hat/x", 1, "ask"),
            turn("hat/x", 2, "read_file says v1"),
            turn("hat/x", 2, "read_file says v1"), // a retry of the same request
            turn("hat/x", 3, "answer"),
            turn("signal", 1, "judge"),
        ];
        let b = [
            turn("hat/x", 1, "ask"),
            turn("hat/x", 2, "read_file says v2"),
            turn("signal", 1, "judge"),
            turn("signal", 2, "re-ask"),
        ];
        let changes: Vec<(String, u32, String)> = changed_turns(&a, &b)
            .into_iter()
            .map(|c| (c.step, c.turn, c.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("hat/x".to_string(), 2, "changed".to_string()),
                ("hat/x".to_string(), 3, "removed".to_string()),
                ("signal".to_string(), 2, "added".to_string()),
            ]
        );
        let diff = &changed_turns(&a, &b)[0].diff;
        assert!(
            diff.contains("-read_file says v1") && diff.contains("+read_file says v2"),
            "{diff}"
        );
        assert!(changed_turns(&a, &a).is_empty());
    }
}
