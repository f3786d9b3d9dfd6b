//! `report.md`: meant to be pasted as a pull-request comment. Status first, then what is not
//! met, then the steps, then everything else folded in `<details>` blocks.
//!
//! GitHub refuses comments over 65,536 characters, so the text is built against a byte
//! budget well under that: long findings and quotes are cut with a visible marker, and
//! rows or blocks that no longer fit are counted in an "omitted" line pointing at
//! `report.json` / `report.html` instead.

use super::model::{Report, RequirementReport, StepReport, StepStatus, Verdict};
use super::{text, Exporter, ReportError};
use crate::verdict::fold_whitespace;

/// The whole comment stays under this many bytes (bytes ≥ characters, so this is safe for
/// GitHub's character limit too).
pub const MAX_BYTES: usize = 60_000;
/// Room kept free for the closing markers of whatever section is cut short.
const RESERVE: usize = 1_500;
const FINDING_IN_TABLE: usize = 240;
const FINDING_IN_DETAILS: usize = 2_000;
const QUOTE_MAX: usize = 1_000;
const WARNING_MAX: usize = 400;
/// Tool calls listed per step.
const TRAIL_MAX: usize = 30;

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn render(&self, report: &Report) -> Result<String, ReportError> {
        Ok(render(report))
    }
}

/// The report text, accumulated under its byte cap ([`MAX_BYTES`]).
struct SizedText {
    out: String,
}

impl SizedText {
    /// Appends `block` if it fits (keeping [`RESERVE`] free); says whether it did.
    fn try_push(&mut self, block: &str) -> bool {
        if self.out.len() + block.len() + RESERVE <= MAX_BYTES {
            self.out.push_str(block);
            true
        } else {
            false
        }
    }

    /// Appends a closing marker, which may use the reserve.
    fn push_marker(&mut self, block: &str) {
        if self.out.len() + block.len() <= MAX_BYTES {
            self.out.push_str(block);
        }
    }
}

fn render(report: &Report) -> String {
    let mut md = SizedText { out: String::new() };
    head(report, &mut md);
    not_met_table(report, &mut md);
    checks(report, &mut md);
    steps_table(report, &mut md);
    details(report, &mut md);
    warnings(report, &mut md);
    policy(report, &mut md);
    md.out
}

/// The effective policy, key by key with its source (docs/policy.md).
fn policy(report: &Report, md: &mut SizedText) {
    let rows = text::policy_rows(report);
    if rows.is_empty() {
        return;
    }
    let mut s = String::from("### Policy\n\n| Key | Value | Source |\n|---|---|---|\n");
    for (key, value, source) in rows {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            code(&key),
            code(&value),
            esc(&source)
        ));
    }
    s.push('\n');
    if !md.try_push(&s) {
        md.push_marker("… policy table cut: see report.json `run.policy`\n\n");
    }
}

fn head(report: &Report, md: &mut SizedText) {
    let icon = if report.outcome.signal_met {
        "✅"
    } else {
        "❌"
    };
    let mut s = format!(
        "## {icon} {} — stage {} (exit {})\n\n",
        text::status_words(report),
        code(&report.stage.name),
        report.outcome.exit_code
    );
    let summary = fold_whitespace(&report.outcome.summary);
    if !summary.is_empty() {
        s.push_str(&esc(&text::cap(&summary, FINDING_IN_DETAILS)));
        s.push_str("\n\n");
    }
    let gate = text::gate_note(report);
    s.push_str(&format!(
        "> **{}:** {}\n\n",
        esc(&gate.label),
        esc(&gate.text)
    ));
    if let Some(note) = text::signal_note(report) {
        s.push_str(&format!("> **{}**\n\n", esc(note)));
    }
    if let Some(note) = text::v8_note(report) {
        s.push_str(&format!("> {}\n\n", esc(&note)));
    }
    if let Some(note) = text::trust_note(report) {
        s.push_str(&format!("> ⚠️ **{}**\n\n", esc(note)));
    }
    if !report.outcome.reasons.is_empty() {
        s.push_str("Why:\n");
        for reason in &report.outcome.reasons {
            s.push_str(&format!(
                "- {}\n",
                esc(&text::cap(&fold_whitespace(&reason.message), 400))
            ));
        }
        s.push('\n');
    }
    let c = report.outcome.counts;
    s.push_str(&format!(
        "{} · {} unmet · {} unknown{} · {} · run {} · hats {} · judges {} · record mode {}\n\n",
        text::met_count(report),
        c.unmet,
        c.unknown,
        if report.outcome.allow_unknown {
            " (unknown allowed)"
        } else {
            ""
        },
        text::blocking(report),
        code(&report.run.id),
        code(&report.run.model),
        code(&report.run.judge_model),
        code(&report.run.record_mode),
    ));
    if !md.try_push(&s) {
        // Only an absurdly long stage name or reason list gets here; keep the status line.
        let first = s.lines().next().unwrap_or_default().to_string();
        md.push_marker(&format!("{first}\n\n… [header cut: see report.json]\n\n"));
    }
}

/// Unmet first, then unknown; blocking before advisory within each; otherwise in report order.
fn not_met(report: &Report) -> Vec<&RequirementReport> {
    let mut rows: Vec<&RequirementReport> = report
        .requirements
        .iter()
        .filter(|r| r.verdict != Verdict::Met || r.artifact_only())
        .collect();
    rows.sort_by_key(|r| (r.verdict != Verdict::Unmet, !r.blocking));
    rows
}

/// `MUST NOT (blocking)`, `SHOULD (advisory)`.
fn level(r: &RequirementReport) -> String {
    format!("{} ({})", r.level, text::weight(r))
}

fn not_met_table(report: &Report, md: &mut SizedText) {
    let rows = not_met(report);
    if rows.is_empty() {
        md.try_push("Every requirement is met.\n\n");
        return;
    }
    md.try_push("### Requirements not met\n\n| | Requirement | Level | Judge | Finding |\n|---|---|---|---|---|\n");
    let mut omitted = 0;
    for r in &rows {
        // For an unknown, why hatrack could not rule matters more than what the judge said.
        let note = r.note.clone().filter(|n| !n.trim().is_empty());
        let finding = match (r.verdict, note) {
            (Verdict::Unknown, Some(note)) => note,
            (_, note) if r.finding.trim().is_empty() => note.unwrap_or_default(),
            _ => r.finding.clone(),
        };
        let (icon, verdict) = if r.artifact_only() {
            ("⚠️", "met, grounded only in a hat's own output")
        } else {
            (text::verdict_icon(r.verdict), r.verdict.as_str())
        };
        let finding = if r.artifact_only() {
            r.note.clone().unwrap_or(finding)
        } else {
            finding
        };
        let row = format!(
            "| {} {} | {} {} | {} | {} | {} |\n",
            icon,
            verdict,
            code(&r.id),
            esc(&text::short(&r.text, 100)),
            esc(&level(r)),
            code(&r.judged_by),
            esc(&text::cap(&fold_whitespace(&finding), FINDING_IN_TABLE)),
        );
        if omitted > 0 || !md.try_push(&row) {
            omitted += 1;
        }
    }
    if omitted > 0 {
        md.push_marker(&format!(
            "\n… {omitted} more not shown (the comment is capped); see report.html or report.json.\n"
        ));
    }
    md.try_push("\n");
}

/// What checks found (linters, tests, probes), errors first; absent without checks.
fn checks(report: &Report, md: &mut SizedText) {
    let Some(view) = text::check_view(report) else {
        return;
    };
    md.try_push(&format!("### Checks\n\n{}\n\n", esc(&view.summary)));
    for w in &view.warnings {
        md.try_push(&format!(
            "- ⚠️ {}\n",
            esc(&text::cap(&fold_whitespace(w), WARNING_MAX))
        ));
    }
    if !view.warnings.is_empty() {
        md.try_push("\n");
    }
    if view.rows.is_empty() {
        return;
    }
    md.try_push("| Finding | Level | Message | Mapped to |\n|---|---|---|---|\n");
    let mut omitted = view.omitted;
    for row in &view.rows {
        let line = format!(
            "| {} | {} | {} | {} |\n",
            code(&row.name),
            row.level,
            esc(&text::cap(&fold_whitespace(&row.message), FINDING_IN_TABLE)),
            esc(&row.mapped_to),
        );
        if !md.try_push(&line) {
            omitted += 1;
        }
    }
    if omitted > 0 {
        md.push_marker(&format!(
            "\n… {omitted} more findings in report.json (`checks`).\n"
        ));
    }
    md.try_push("\n");
}

fn steps_table(report: &Report, md: &mut SizedText) {
    if report.steps.is_empty() {
        return;
    }
    let priced = report.run.cost.is_some();
    if priced {
        md.try_push("### Steps\n\n| Step | Status | Source | Attempts | Tokens (in / cached / out) | Time | Cost |\n|---|---|---|---:|---:|---:|---:|\n");
    } else {
        md.try_push("### Steps\n\n| Step | Status | Source | Attempts | Tokens (in / cached / out) | Time |\n|---|---|---|---:|---:|---:|\n");
    }
    let mut omitted = 0;
    for step in &report.steps {
        let status = match step.status {
            StepStatus::Answered => "answered".to_string(),
            StepStatus::Unparseable => "⚠️ unparseable".to_string(),
            StepStatus::DecidedByChecks => text::step_status(step.status).to_string(),
            StepStatus::ContextExceeded => "⚠️ context exceeded".to_string(),
        };
        let cost = if priced {
            format!(" {} |", text::usd(step.cost.as_ref()))
        } else {
            String::new()
        };
        let row = format!(
            "| {} {} | {} | {} | {} | {} | {} |{cost}\n",
            code(&step.id),
            esc(&step.name),
            status,
            esc(&step.source),
            step.attempts,
            text::tokens(&step.usage),
            text::duration(step.duration_ms),
        );
        if omitted > 0 || !md.try_push(&row) {
            omitted += 1;
        }
    }
    if omitted > 0 {
        md.push_marker(&format!("\n… {omitted} more steps not shown.\n"));
    }
    let u = report.run.usage;
    let cost = match &report.run.cost {
        Some(c) => format!(", cost {}", text::usd(Some(c))),
        None => String::new(),
    };
    md.try_push(&format!(
        "\nTotal: {} / {} tokens ({} prompt tokens cached, {}), {}{cost}.\n\n",
        text::int(u.prompt_tokens),
        text::int(u.completion_tokens),
        text::int(u.cached_tokens),
        text::cached_share(&u),
        text::duration(report.run.duration_ms)
    ));
}

fn details(report: &Report, md: &mut SizedText) {
    if report.requirements.is_empty() {
        return;
    }
    md.try_push("### Details\n\n");
    let mut omitted = 0usize;
    // Every step (a hat's failed attempts matter too), then judges named only by requirements.
    let mut ids: Vec<String> = report.steps.iter().map(|s| s.id.clone()).collect();
    for judge in text::judges(report) {
        if !ids.contains(&judge) {
            ids.push(judge);
        }
    }
    for judge in ids {
        let reqs: Vec<&RequirementReport> = report
            .requirements
            .iter()
            .filter(|r| r.judged_by == judge)
            .collect();
        let step = report.steps.iter().find(|s| s.id == judge);
        let quiet = |s: &StepReport| s.errors.is_empty() && s.trail.is_empty() && s.tools.is_none();
        if reqs.is_empty() && step.is_none_or(quiet) {
            continue;
        }
        if omitted > 0 {
            omitted += reqs.len();
            continue;
        }
        let count = |v: Verdict| reqs.iter().filter(|r| r.verdict == v).count();
        let (met, unmet, unknown) = (
            count(Verdict::Met),
            count(Verdict::Unmet),
            count(Verdict::Unknown),
        );
        let open = if unmet + unknown > 0 { " open" } else { "" };
        let mut block = format!(
            "<details{open}>\n<summary><b>{}</b> — {met} met, {unmet} unmet, {unknown} unknown</summary>\n\n",
            html_escape(&judge)
        );
        if let Some(step) = step {
            block.push_str(&step_notes(step));
        }
        if !md.try_push(&block) {
            omitted += reqs.len();
            continue;
        }
        for (i, r) in reqs.iter().enumerate() {
            if !md.try_push(&requirement_block(r)) {
                omitted += reqs.len() - i;
                break;
            }
        }
        md.push_marker("</details>\n\n");
    }
    if omitted > 0 {
        md.push_marker(&format!(
            "… details of {omitted} requirements not shown (the comment is capped); see report.html or report.json.\n\n"
        ));
    }
}

fn step_notes(step: &StepReport) -> String {
    let mut s = String::new();
    if let Some(summary) = step.summary.as_deref().filter(|t| !t.trim().is_empty()) {
        s.push_str(&format!(
            "_Step summary:_ {}\n\n",
            esc(&text::cap(&fold_whitespace(summary), FINDING_IN_DETAILS))
        ));
    }
    if step.status == StepStatus::Unparseable {
        s.push_str(&format!(
            "⚠️ **Unparseable:** no attempt of {} gave a schema-valid answer; its verdicts are unknown.\n\n",
            step.attempts
        ));
    }
    if step.status == StepStatus::ContextExceeded {
        s.push_str(&format!(
            "⚠️ **Context exceeded:** a request of this step could not fit the model's context window; its verdicts are unknown. {}.\n\n",
            esc(crate::verdict::CONTEXT_HINT)
        ));
    }
    for (i, err) in step.errors.iter().enumerate() {
        s.push_str(&format!(
            "- attempt {}: {}\n",
            i + 1,
            esc(&text::cap(&fold_whitespace(err), 400))
        ));
    }
    if !step.errors.is_empty() {
        s.push('\n');
    }
    if let Some(note) = &step.tools {
        s.push_str(&format!("_Tools:_ {}\n\n", esc(note)));
    }
    if !step.trail.is_empty() {
        s.push_str("_Agent trail:_\n");
        for t in step.trail.iter().take(TRAIL_MAX) {
            s.push_str(&format!(
                "- {} {} — {}, {} B{}\n",
                code(&t.tool),
                code(&text::cap(&t.target, 200)),
                esc(&t.detail),
                t.bytes,
                if t.refused { " (refused)" } else { "" }
            ));
        }
        if step.trail.len() > TRAIL_MAX {
            s.push_str(&format!(
                "- … {} more in report.json\n",
                step.trail.len() - TRAIL_MAX
            ));
        }
        s.push('\n');
    }
    s
}

fn requirement_block(r: &RequirementReport) -> String {
    let mut s = format!(
        "**{} {}** {} ({}{}) — {}\n\n",
        text::verdict_icon(r.verdict),
        r.verdict.as_str(),
        code(&r.id),
        esc(&level(r)),
        r.severity
            .as_deref()
            .map(|sev| format!(", severity {}", esc(sev)))
            .unwrap_or_default(),
        esc(&text::cap(&fold_whitespace(&r.text), FINDING_IN_DETAILS)),
    );
    let mut facts = Vec::new();
    if r.claimed != r.verdict {
        facts.push(format!(
            "judge claimed **{}**, hatrack ruled **{}**",
            r.claimed.as_str(),
            r.verdict.as_str()
        ));
    }
    if let Some(a) = &r.agreement {
        facts.push(format!("agreement {}", text::agreement(a)));
    }
    facts.push(format!(
        "judged by {} ({})",
        code(&r.judged_by),
        code(&r.model)
    ));
    facts.push(format!("source {}", code(&r.source)));
    s.push_str(&format!("<sub>{}</sub>\n\n", facts.join(" · ")));
    if !r.finding.trim().is_empty() {
        s.push_str(&format!(
            "Finding: {}\n\n",
            esc(&text::cap(&fold_whitespace(&r.finding), FINDING_IN_DETAILS))
        ));
    }
    if let Some(note) = r.note.as_deref().filter(|n| !n.trim().is_empty()) {
        s.push_str(&format!(
            "Note: {}\n\n",
            esc(&text::cap(&fold_whitespace(note), FINDING_IN_DETAILS))
        ));
    }
    for e in &r.evidence {
        let mark = if e.grounded {
            format!("✓ {}", esc(&e.provenance))
        } else {
            format!("⚠️ **{}**", esc(&e.provenance))
        };
        s.push_str(&format!(
            "Evidence from {} — {mark}\n\n{}\n\n",
            code(&e.source),
            fenced(&text::cap(&e.quote, QUOTE_MAX))
        ));
    }
    s
}

fn warnings(report: &Report, md: &mut SizedText) {
    if report.warnings.is_empty() {
        return;
    }
    md.try_push("### Warnings\n\n");
    let mut omitted = 0;
    for w in &report.warnings {
        let line = format!("- {}\n", esc(&text::cap(&fold_whitespace(w), WARNING_MAX)));
        if omitted > 0 || !md.try_push(&line) {
            omitted += 1;
        }
    }
    if omitted > 0 {
        md.push_marker(&format!("- … {omitted} more warnings in report.json\n"));
    }
    md.push_marker("\n");
}

/// Escapes text for inline Markdown: characters that could start emphasis, links, code,
/// HTML or break a table cell are backslash-escaped (CommonMark allows that for any ASCII
/// punctuation), so model-written text shows as written and never as markup.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if matches!(
            ch,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' | '!'
        ) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// An inline code span that survives backticks inside `s`; a `|` (which would still split
/// a table cell) is replaced by a lookalike.
fn code(s: &str) -> String {
    let s = fold_whitespace(s).replace('|', "¦");
    let longest = longest_backtick_run(&s);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A fenced code block that survives backticks inside `s`.
fn fenced(s: &str) -> String {
    let fence = "`".repeat((longest_backtick_run(s) + 1).max(3));
    format!("{fence}text\n{}\n{fence}", s.trim_end_matches('\n'))
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in s.chars() {
        if ch == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// Text made safe inside HTML (an element or a quoted attribute): `& < > " '` as entities.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}
