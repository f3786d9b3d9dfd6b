//! Wording and number formatting shared by the formats, so that the summary on stdout, the
//! PR comment, the HTML page and the JUnit file say the same thing in the same words.

use super::model::{Report, RequirementKind, StepStatus, Verdict};
use crate::definition::GateKind;
use crate::verdict::fold_whitespace;

/// The headline: `signal met` or `signal NOT met`.
pub fn status_words(report: &Report) -> &'static str {
    if report.outcome.signal_met {
        "signal met"
    } else {
        "signal NOT met"
    }
}

/// One line for stdout and logs: `signal NOT MET — 3 unmet, 2 unknown (exit 1)` or
/// `signal met (exit 0)`.
pub fn outcome_line(report: &Report) -> String {
    match signal_note(report) {
        Some(note) => format!("{} — {note}", counted_outcome(report)),
        None => counted_outcome(report),
    }
}

/// `4 met` or `4 met (2 grounded only in a hat's own output)`: the count of met
/// requirements, saying how many rest only on the hats' artifacts.
pub fn met_count(report: &Report) -> String {
    let c = report.outcome.counts;
    if c.artifact_only > 0 {
        format!(
            "{} met ({} grounded only in a hat's own output)",
            c.met, c.artifact_only
        )
    } else {
        format!("{} met", c.met)
    }
}

fn counted_outcome(report: &Report) -> String {
    let o = &report.outcome;
    let c = o.counts;
    if o.signal_met {
        if c.unknown > 0 && o.allow_unknown {
            format!(
                "signal met — {} unknown allowed by --allow-unknown (exit {})",
                c.unknown, o.exit_code
            )
        } else {
            format!("signal met (exit {})", o.exit_code)
        }
    } else {
        let artifact_only = if c.artifact_only > 0 {
            format!(
                ", {} met grounded only in a hat's own output",
                c.artifact_only
            )
        } else {
            String::new()
        };
        format!(
            "signal NOT MET — {} unmet, {} unknown{artifact_only} (exit {})",
            c.unmet, c.unknown, o.exit_code
        )
    }
}

/// For a stage without a completion signal, the note every format shows
/// (`no completion signal: gated on hat constraints and review checks`).
pub fn signal_note(report: &Report) -> Option<&'static str> {
    report
        .outcome
        .no_completion_signal
        .then_some(crate::verdict::gate::NO_SIGNAL_NOTE)
}

/// Said at the top of every report of a run that trusted the workspace's own hatrack.toml
/// as policy: the repository under review chose its endpoints, models or gate.
pub fn trust_note(report: &Report) -> Option<&'static str> {
    report
        .run
        .policy
        .as_ref()
        .filter(|p| p.trusted_workspace_config)
        .map(|_| "Policy from the reviewed workspace: its own hatrack.toml was trusted (--trust-workspace-config), so the repository under review chose settings that decide the gate")
}

/// The effective policy as `(key, value, source)` rows, for the reports' policy tables.
pub fn policy_rows(report: &Report) -> Vec<(String, String, String)> {
    report
        .run
        .policy
        .iter()
        .flat_map(|p| &p.keys)
        .map(|k| (k.key.clone(), k.value.clone(), k.source.to_string()))
        .collect()
}

/// What a v8 stage declares that hatrack shows but does not run: `fix hats: a, b (not run
/// by hatrack) · interpretation: lens`. `None` for a stage that declares neither.
pub fn v8_note(report: &Report) -> Option<String> {
    let s = &report.stage;
    let mut parts = Vec::new();
    if !s.fix_hats.is_empty() {
        parts.push(format!(
            "fix hats: {} (not run by hatrack)",
            s.fix_hats.join(", ")
        ));
    }
    if let Some(i) = &s.interpretation {
        parts.push(format!("interpretation: {i}"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// `2 of 14 blocking fail`: the gate's count, the same words in every format.
pub fn blocking(report: &Report) -> String {
    format!(
        "{} of {} blocking fail",
        report.outcome.reasons.len(),
        report.outcome.blocking_total
    )
}

/// `hats: m · judges: j`, or one name when both are the same model.
pub fn models(report: &Report) -> String {
    if report.run.model == report.run.judge_model {
        format!("model {}", report.run.model)
    } else {
        format!(
            "hats: {} · judges: {}",
            report.run.model, report.run.judge_model
        )
    }
}

/// What the stage's `review:` gate still asks of people once hatrack is done: a label
/// (`gate external`) and what it asks (`a human approval is still required`). Shown as
/// `label: text` on one line, or with the label set apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateNote {
    /// `gate` and the stage's gate kinds as written (`auto` when it names none).
    pub label: String,
    /// What those kinds still ask, `; `-separated.
    pub text: String,
}

impl std::fmt::Display for GateNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.label, self.text)
    }
}

/// What the stage's `review:` gate still asks of people once hatrack is done, e.g.
/// `gate external: a human approval is still required`. Each gate kind is read as its type
/// ([`GateKind`]), never matched as text.
pub fn gate_note(report: &Report) -> GateNote {
    let gates = &report.stage.gates;
    let kinds = if gates.is_empty() {
        "auto".to_string()
    } else {
        gates.join(", ")
    };
    let parsed: Vec<GateKind> = gates.iter().map(|g| GateKind::parse(g)).collect();
    let mut parts: Vec<String> = Vec::new();
    // What each kind that needs a person still asks, and whether it is an approval.
    let asks = [
        (
            GateKind::External,
            "a human approval is still required (external review)",
            true,
        ),
        (
            GateKind::Await,
            "the stage still waits for an external event",
            false,
        ),
        (GateKind::Ask, "a person must still approve the stage", true),
    ];
    let mut approval_said = false;
    for (kind, words, approval) in asks {
        if parsed.contains(&kind) {
            parts.push(words.into());
            approval_said |= approval;
        }
    }
    for (g, kind) in gates.iter().zip(&parsed) {
        if matches!(kind, GateKind::Other(_)) {
            parts.push(format!(
                "gate kind `{g}` is not one hatrack knows; check it by hand"
            ));
        }
    }
    if parts.is_empty() {
        if report.outcome.human_approval_required {
            parts.push("a human approval is still required".into());
        } else {
            parts.push(if report.outcome.no_completion_signal {
                "no human approval needed: the stage advances on its hat constraints and review checks".into()
            } else {
                "no human approval needed: the stage advances on the signal".into()
            });
        }
    } else if report.outcome.human_approval_required && !approval_said {
        parts.push("a human approval is still required".into());
    }
    GateNote {
        label: format!("gate {kinds}"),
        text: parts.join("; "),
    }
}

/// `850 ms`, `12.3 s`, `2 m 03 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{} m {:02} s", s / 60, s % 60)
    }
}

/// `3,240 / 1,200 / 155`: prompt, cached prompt and completion tokens.
pub fn tokens(u: &super::model::TokenUsage) -> String {
    format!(
        "{} / {} / {}",
        int(u.prompt_tokens),
        int(u.cached_tokens),
        int(u.completion_tokens)
    )
}

/// `32%`: the share of prompt tokens the provider served from its cache (whole percent,
/// rounded down; `0%` without prompt tokens).
pub fn cached_share(u: &super::model::TokenUsage) -> String {
    let share = u
        .cached_tokens
        .min(u.prompt_tokens)
        .saturating_mul(100)
        .checked_div(u.prompt_tokens)
        .unwrap_or(0);
    format!("{share}%")
}

/// A cost as people read it: `$0.0123` under a dollar, `$4.57` above; `unknown` when the
/// model has no price (never `$0`).
pub fn usd(cost: Option<&super::model::Cost>) -> String {
    match cost.and_then(|c| c.usd) {
        Some(v) if v < 1.0 => format!("${v:.4}"),
        Some(v) => format!("${v:.2}"),
        None => "unknown".to_string(),
    }
}

/// `12,345`.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `blocking` or `advisory`: the gate's one decision on whether a requirement counts, in
/// the word every format shows.
pub fn weight(r: &super::model::RequirementReport) -> &'static str {
    if r.blocking {
        "blocking"
    } else {
        "advisory"
    }
}

pub fn verdict_icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "✅",
        Verdict::Unmet => "❌",
        Verdict::Unknown => "❔",
    }
}

pub fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Answered => "answered",
        StepStatus::Unparseable => "unparseable",
        StepStatus::DecidedByChecks => "decided by checks (not asked)",
        StepStatus::ContextExceeded => "context exceeded",
    }
}

pub fn kind_label(k: RequirementKind) -> &'static str {
    match k {
        RequirementKind::HatConstraint => "Hat constraints (judged by constraint judges)",
        RequirementKind::ReviewCheck => "Review checks",
        RequirementKind::Signal => "Completion signal",
    }
}

/// `3/5` or `3/5 unstable`.
pub fn agreement(a: &super::model::Agreement) -> String {
    if a.unstable {
        format!("{}/{} unstable", a.agree, a.samples)
    } else {
        format!("{}/{}", a.agree, a.samples)
    }
}

/// The judging steps in the order they ran (hats produce and judge nothing), then any judge
/// named by a requirement but missing from the steps, in order of first mention.
pub fn judges(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .steps
        .iter()
        .filter(|s| s.kind.is_judge())
        .map(|s| s.id.clone())
        .collect();
    for r in &report.requirements {
        if !out.contains(&r.judged_by) {
            out.push(r.judged_by.clone());
        }
    }
    out
}

/// At most `max` characters of `s`; a cut text ends with a visible marker saying how much
/// was left out and where to find the rest.
pub fn cap(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!(
        "{}… [truncated: {} more characters in report.json]",
        kept.trim_end(),
        total - max
    )
}

/// A short one-line version of a requirement's text, for names and table cells.
pub fn short(s: &str, max: usize) -> String {
    let line = fold_whitespace(s);
    if line.chars().count() <= max {
        return line;
    }
    let kept: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(123_000), "2 m 03 s");
    }

    #[test]
    fn integers_get_thousands_separators() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1_000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
    }

    #[test]
    fn cap_marks_what_it_cut() {
        assert_eq!(cap("short", 10), "short");
        let capped = cap(&"é".repeat(30), 10);
        assert!(capped.starts_with(&"é".repeat(10)));
        assert!(capped.contains("[truncated: 20 more characters"));
    }
}

/// One finding of a check as the Markdown and HTML reports list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    /// `ruff AIR301 dags/etl.py:21`.
    pub name: String,
    /// `error`, `warning`, `note`, `pass`.
    pub level: &'static str,
    /// The message, and the repository line a probe read.
    pub message: String,
    /// `reliability/check/1 (veto)`, comma-separated; empty when unmapped.
    pub mapped_to: String,
}

/// Findings listed at most in Markdown and HTML (all are in report.json).
pub const MAX_CHECK_ROWS: usize = 40;

/// What checks found, as the Markdown and HTML reports show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckView {
    /// Counts by level, mappings, evidence files.
    pub summary: String,
    /// Errors first, at most [`MAX_CHECK_ROWS`].
    pub rows: Vec<CheckRow>,
    /// Findings not listed (all are in report.json).
    pub omitted: usize,
    /// What was left out or could not be read (a probe that matched no file, results about
    /// files outside the workspace).
    pub warnings: Vec<String>,
}

/// What checks found, for the reports; `None` for a run without checks.
pub fn check_view(report: &Report) -> Option<CheckView> {
    let (summary, rows) = check_rows(report)?;
    let facts = report.checks.as_ref()?;
    Some(CheckView {
        summary,
        omitted: facts.findings.len().saturating_sub(rows.len()),
        rows,
        warnings: facts.warnings.clone(),
    })
}

/// One summary line and the findings, errors first, at most [`MAX_CHECK_ROWS`].
fn check_rows(report: &Report) -> Option<(String, Vec<CheckRow>)> {
    use crate::checks::Level;
    let facts = report.checks.as_ref()?;
    let count = |l: Level| facts.findings.iter().filter(|f| f.level == l).count();
    let files: Vec<String> = facts
        .files
        .iter()
        .map(|f| format!("{} ({}: {})", f.file, f.format, f.tools.join(", ")))
        .collect();
    let summary = format!(
        "{} finding(s): {} error, {} warning, {} note, {} passing record(s) · {} mapping(s) · evidence files: {}",
        facts.findings.len(),
        count(Level::Error),
        count(Level::Warning),
        count(Level::Note),
        count(Level::Pass),
        facts.mappings.len(),
        if files.is_empty() { "none".to_string() } else { files.join(", ") }
    );
    let mut findings: Vec<&crate::checks::Finding> = facts.findings.iter().collect();
    findings.sort_by_key(|f| f.level);
    let rows = findings
        .into_iter()
        .take(MAX_CHECK_ROWS)
        .map(|f| CheckRow {
            name: f.name.clone(),
            level: f.level.as_str(),
            message: match &f.excerpt {
                Some(line) => format!("{} — {line}", f.message),
                None => f.message.clone(),
            },
            mapped_to: crate::checks::mapping::mapped_to(facts, f).join(", "),
        })
        .collect();
    Some((summary, rows))
}
