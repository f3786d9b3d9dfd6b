//! `report.html`: one self-contained page (inline CSS, no external fonts, scripts or
//! images) for a reviewer: the status, the hat sequence, a verdict matrix, and expandable
//! details per requirement.
//!
//! The page is `report.html.j2` rendered by minijinja with HTML auto-escaping (the template
//! name ends in `.html.j2`), so every text from a model or a definition is escaped. This
//! file only shapes the report into what the template shows; it decides nothing.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::model::{
    InputReport, Report, RequirementKind, RequirementReport, StepKind, StepReport, StepStatus,
    Verdict,
};
use super::{text, Exporter, ReportError};

const TEMPLATE_NAME: &str = "report.html.j2";
const TEMPLATE: &str = include_str!("report.html.j2");

pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, report: &Report) -> Result<String, ReportError> {
        let err = |e: minijinja::Error| ReportError::Render {
            format: "report.html",
            message: format!("{e:#}"),
        };
        let env = environment().map_err(|message| ReportError::Render {
            format: "report.html",
            message: message.clone(),
        })?;
        let page = Page::new(report);
        let mut html = env
            .get_template(TEMPLATE_NAME)
            .and_then(|t| t.render(minijinja::value::Serde(&page)))
            .map_err(err)?;
        if !html.ends_with('\n') {
            html.push('\n');
        }
        Ok(html)
    }
}

/// Compiles the page template now (about half a millisecond), so that writing the reports
/// at the end of a run does not.
pub fn warm() {
    let _ = environment();
}

/// The page template, compiled once for the process: a batch writes a page per workspace.
fn environment() -> Result<&'static Environment<'static>, &'static String> {
    static ENV: std::sync::OnceLock<Result<Environment<'static>, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template(TEMPLATE_NAME, TEMPLATE)
            .map_err(|e| format!("{e:#}"))?;
        Ok(env)
    })
    .as_ref()
}

/// Everything the template shows, already worded and formatted.
#[derive(Serialize)]
struct Page<'a> {
    report: &'a Report,
    met: bool,
    headline: String,
    /// `gate external` …
    gate_label: String,
    /// … `a human approval is still required (external review)`.
    gate_text: String,
    outcome_line: String,
    /// `no completion signal: …` for a stage without one.
    signal_note: Option<&'static str>,
    /// v8 declarations shown but not run (`fix hats: …`).
    v8_note: Option<String>,
    /// `--trust-workspace-config` was used.
    trust_note: Option<&'static str>,
    /// The effective policy: `(key, value, source)`.
    policy: Vec<(String, String, String)>,
    /// What checks found: a summary line and the findings (`None`: no checks).
    checks: Option<text::CheckView>,
    steps: Vec<StepView<'a>>,
    judges: Vec<JudgeView>,
    groups: Vec<GroupView<'a>>,
    inputs: Vec<InputView<'a>>,
    total_tokens_in: String,
    total_tokens_out: String,
    total_cached: String,
    total_time: String,
    /// With `--prices`: `$0.0123` or `unknown`.
    total_cost: Option<String>,
    /// Models the price table has no price for, comma-separated.
    unpriced: String,
}

#[derive(Serialize)]
struct StepView<'a> {
    step: &'a StepReport,
    kind: &'static str,
    status: &'static str,
    unparseable: bool,
    tokens_in: String,
    tokens_cached: String,
    tokens_out: String,
    time: String,
    cost: Option<String>,
    met: usize,
    unmet: usize,
    unknown: usize,
    artifacts: Vec<ArtifactView<'a>>,
}

#[derive(Serialize)]
struct ArtifactView<'a> {
    path: &'a str,
    size: String,
    sha256: &'a str,
    /// The first 12 hex digits, enough to compare two runs by eye.
    sha256_short: &'a str,
}

#[derive(Serialize)]
struct JudgeView {
    id: String,
    /// Column heading: the hat or agent name, or `completion judge`.
    label: String,
}

#[derive(Serialize)]
struct GroupView<'a> {
    label: &'static str,
    rows: Vec<RowView<'a>>,
}

#[derive(Serialize)]
struct RowView<'a> {
    req: &'a RequirementReport,
    anchor: String,
    verdict: &'static str,
    claimed: &'static str,
    changed: bool,
    icon: &'static str,
    agreement: Option<String>,
    unstable: bool,
    /// One per judge column: the verdict in the column of the judge that ruled, else empty.
    cells: Vec<Option<&'static str>>,
    short_text: String,
    /// The short text is cut, so the details repeat the whole text.
    text_cut: bool,
    ungrounded: usize,
    /// `blocking` or `advisory`.
    weight: &'static str,
    /// A `met` grounded only in a hat's own output.
    artifact_only: bool,
    /// `about the repository` / `about what the hats produced`.
    about: &'static str,
}

#[derive(Serialize)]
struct InputView<'a> {
    input: &'a InputReport,
    files: Vec<FileView<'a>>,
}

#[derive(Serialize)]
struct FileView<'a> {
    path: &'a str,
    size: String,
    truncated: bool,
    shown: String,
}

impl<'a> Page<'a> {
    fn new(report: &'a Report) -> Self {
        let judge_ids = text::judges(report);
        let u = report.run.usage;
        let text::GateNote {
            label: gate_label,
            text: gate_text,
        } = text::gate_note(report);
        Page {
            report,
            met: report.outcome.signal_met,
            headline: if report.outcome.signal_met {
                "Signal met".into()
            } else {
                "Signal NOT met".into()
            },
            gate_label,
            gate_text,
            outcome_line: text::outcome_line(report),
            signal_note: text::signal_note(report),
            v8_note: text::v8_note(report),
            trust_note: text::trust_note(report),
            policy: text::policy_rows(report),
            checks: text::check_view(report),
            steps: report.steps.iter().map(|s| step(report, s)).collect(),
            judges: judges(report, &judge_ids),
            groups: groups(report, &judge_ids),
            inputs: report.inputs.iter().map(input).collect(),
            total_tokens_in: text::int(u.prompt_tokens),
            total_tokens_out: text::int(u.completion_tokens),
            total_cached: format!("{}, {}", text::int(u.cached_tokens), text::cached_share(&u)),
            total_time: text::duration(report.run.duration_ms),
            total_cost: report.run.cost.as_ref().map(|c| text::usd(Some(c))),
            unpriced: report
                .run
                .cost
                .as_ref()
                .map(|c| c.unpriced_models.join(", "))
                .unwrap_or_default(),
        }
    }
}

/// The verdict matrix's columns: each judge by the name of its step.
fn judges(report: &Report, judge_ids: &[String]) -> Vec<JudgeView> {
    judge_ids
        .iter()
        .map(|id| JudgeView {
            id: id.clone(),
            label: report
                .steps
                .iter()
                .find(|s| &s.id == id)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| id.clone()),
        })
        .collect()
}

/// One step's row in the hat sequence: its kind, status, usage, the verdicts it gave and
/// what it wrote.
fn step<'a>(report: &Report, s: &'a StepReport) -> StepView<'a> {
    let count = |v: Verdict| {
        report
            .requirements
            .iter()
            .filter(|r| r.judged_by == s.id && r.verdict == v)
            .count()
    };
    StepView {
        step: s,
        kind: match s.kind {
            StepKind::Hat => "hat",
            StepKind::ConstraintJudge => "constraint judge",
            StepKind::Review => "review agent",
            StepKind::Signal => "completion judge",
        },
        status: text::step_status(s.status),
        unparseable: s.status != StepStatus::Answered,
        tokens_in: text::int(s.usage.prompt_tokens),
        tokens_cached: text::int(s.usage.cached_tokens),
        tokens_out: text::int(s.usage.completion_tokens),
        time: text::duration(s.duration_ms),
        cost: s.cost.as_ref().map(|c| text::usd(Some(c))),
        met: count(Verdict::Met),
        unmet: count(Verdict::Unmet),
        unknown: count(Verdict::Unknown),
        artifacts: s
            .artifacts
            .iter()
            .map(|a| ArtifactView {
                path: &a.path,
                size: bytes(a.bytes),
                sha256: &a.sha256,
                sha256_short: a.sha256.get(..12).unwrap_or(&a.sha256),
            })
            .collect(),
    }
}

/// The requirements grouped by kind (hat constraints, review checks, the signal), empty
/// groups left out.
fn groups<'a>(report: &'a Report, judge_ids: &[String]) -> Vec<GroupView<'a>> {
    [
        RequirementKind::HatConstraint,
        RequirementKind::ReviewCheck,
        RequirementKind::Signal,
    ]
    .into_iter()
    .map(|kind| GroupView {
        label: text::kind_label(kind),
        rows: report
            .requirements
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == kind)
            .map(|(i, r)| row(i, r, judge_ids))
            .collect(),
    })
    .filter(|g| !g.rows.is_empty())
    .collect()
}

/// A bound input and its files, with what each showed of its size.
fn input(input: &InputReport) -> InputView<'_> {
    InputView {
        input,
        files: input
            .files
            .iter()
            .map(|f| FileView {
                path: &f.path,
                size: bytes(f.bytes),
                truncated: f.truncated,
                shown: bytes(f.shown_bytes),
            })
            .collect(),
    }
}

fn row<'a>(index: usize, r: &'a RequirementReport, judges: &[String]) -> RowView<'a> {
    RowView {
        req: r,
        anchor: anchor(index, &r.id),
        verdict: r.verdict.as_str(),
        claimed: r.claimed.as_str(),
        changed: r.claimed != r.verdict,
        icon: match r.verdict {
            // Plain symbols, not emoji: they render with any font, emoji fonts or not.
            Verdict::Met => "✓",
            Verdict::Unmet => "✗",
            Verdict::Unknown => "?",
        },
        agreement: r.agreement.as_ref().map(text::agreement),
        unstable: r.agreement.is_some_and(|a| a.unstable),
        cells: judges
            .iter()
            .map(|j| (j == &r.judged_by).then(|| r.verdict.as_str()))
            .collect(),
        short_text: text::short(&r.text, 90),
        text_cut: text::short(&r.text, 90) != r.text.trim(),
        ungrounded: r.evidence.iter().filter(|e| !e.grounded).count(),
        weight: text::weight(r),
        artifact_only: r.artifact_only(),
        about: r.about.describe(),
    }
}

/// `reliability/check/3` at index 7 → `req-7-reliability-check-3`: a safe fragment id,
/// unique even when two ids differ only in punctuation.
fn anchor(index: usize, id: &str) -> String {
    let mut out = format!("req-{index}-");
    for ch in id.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// `950 B`, `1.8 KiB`, `402.3 KiB`, `1.2 MiB`.
fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}
