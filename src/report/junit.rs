//! `junit.xml`: for CI test-report views. One test suite per judge (`judge/pipeline-engineer`,
//! `review/reliability`, `signal`), one test case per requirement it ruled on, and a `hats`
//! suite with one case per hat ("produced an artifact").
//!
//! A case fails exactly when the gate lists it among its reasons (so the failures equal the
//! gate's count): unmet, unknown or unstable where that blocks. Met is success; a verdict
//! that does not block (an advisory SHOULD, an unknown allowed by `--allow-unknown`) is
//! skipped with the reason. Suite times are the step's recorded duration. No timestamps or
//! UUIDs are written, so a replayed run gives the same file.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::model::{Blocker, Reason, Report, RequirementReport, StepStatus, Verdict};
use super::{text, Exporter, ReportError};
use crate::verdict::fold_whitespace;

pub struct JunitExporter;

impl Exporter for JunitExporter {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }

    fn render(&self, report: &Report) -> Result<String, ReportError> {
        let mut junit = quick_junit::Report::new(format!("hatrack {}", report.stage.name));
        junit.set_time(Duration::from_millis(report.run.duration_ms));
        junit.add_test_suite(hats_suite(report));
        for judge in text::judges(report) {
            junit.add_test_suite(suite(report, &judge));
        }
        let mut xml = junit.to_string().map_err(|e| ReportError::Render {
            format: "junit.xml",
            message: e.to_string(),
        })?;
        if !xml.ends_with('\n') {
            xml.push('\n');
        }
        Ok(xml)
    }
}

/// One workspace of a batch as one suite: its hats' cases, then every requirement's, each
/// named by the step that ruled on it and classed under the workspace.
pub fn workspace_suite(workspace: &str, report: &Report) -> TestSuite {
    let mut suite = TestSuite::new(workspace);
    suite.set_time(Duration::from_millis(report.run.duration_ms));
    suite.add_property(Property::new("stage", report.stage.name.as_str()));
    let hats = hats_suite(report).test_cases;
    let judged = text::judges(report)
        .into_iter()
        .flat_map(|judge| suite_cases(report, &judge));
    for mut case in hats.into_iter().chain(judged) {
        case.set_classname(workspace);
        suite.add_test_case(case);
    }
    suite
}

fn suite_cases(report: &Report, judge: &str) -> Vec<TestCase> {
    report
        .requirements
        .iter()
        .filter(|r| r.judged_by == judge)
        .map(|r| {
            let mut c = case(report, r);
            c.name = format!("{judge}: {}", c.name.as_str()).into();
            c
        })
        .collect()
}

fn suite(report: &Report, judge: &str) -> TestSuite {
    let mut suite = TestSuite::new(judge);
    if let Some(step) = report.steps.iter().find(|s| s.id == judge) {
        suite.set_time(Duration::from_millis(step.duration_ms));
        suite.add_properties([
            Property::new("status", text::step_status(step.status)),
            Property::new("source", step.source.as_str()),
            Property::new("attempts", step.attempts.to_string()),
            Property::new("prompt_tokens", step.usage.prompt_tokens.to_string()),
            Property::new("cached_tokens", step.usage.cached_tokens.to_string()),
            Property::new(
                "completion_tokens",
                step.usage.completion_tokens.to_string(),
            ),
        ]);
        if let Some(cost) = &step.cost {
            suite.add_property(Property::new(
                "cost_usd",
                cost.usd.map_or("unknown".to_string(), |v| format!("{v}")),
            ));
        }
        if step.status != StepStatus::Answered || !step.errors.is_empty() {
            let mut err = format!(
                "step {} is {} after {} attempt(s)\n",
                step.id,
                text::step_status(step.status),
                step.attempts
            );
            for (i, e) in step.errors.iter().enumerate() {
                err.push_str(&format!("attempt {}: {e}\n", i + 1));
            }
            suite.set_system_err(err);
        }
    }
    for r in report.requirements.iter().filter(|r| r.judged_by == judge) {
        suite.add_test_case(case(report, r));
    }
    suite
}

/// One case per hat: did it produce an artifact?
fn hats_suite(report: &Report) -> TestSuite {
    let mut suite = TestSuite::new("hats");
    // A CI view has no header: the stage's lack of a completion signal rides on the suite
    // every report has.
    if let Some(note) = text::signal_note(report) {
        suite.add_property(Property::new("completion_signal", note));
    }
    // The effective policy, key by key (runs recorded before it was have none).
    if let Some(note) = text::trust_note(report) {
        suite.add_property(Property::new("policy.trust", note));
    }
    for (key, value, source) in text::policy_rows(report) {
        suite.add_property(Property::new(
            format!("policy.{key}"),
            format!("{value} ({source})"),
        ));
    }
    for step in report.steps.iter().filter(|s| !s.kind.is_judge()) {
        let status = match blocker_of(report, &step.id) {
            Some(reason) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type("no-artifact")
                    .set_message(reason.message.clone());
                s
            }
            None => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(format!("{} produced an artifact", step.id), status);
        case.set_classname(report.stage.name.as_str());
        suite.add_test_case(case);
    }
    // A judging step (or the stage) that ruled on nothing: a failure of its own, so the
    // failures stay exactly the gate's reasons.
    for reason in report
        .outcome
        .reasons
        .iter()
        .filter(|r| matches!(r.blocker, Blocker::NothingJudged { .. }))
    {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_type(reason.blocker.kind())
            .set_message(reason.message.clone());
        let mut case = TestCase::new(format!("{} judged something", reason.subject), status);
        case.set_classname(report.stage.name.as_str());
        suite.add_test_case(case);
    }
    suite
}

/// The gate's reason for this requirement or hat, if it blocks.
fn blocker_of<'a>(report: &'a Report, subject: &str) -> Option<&'a Reason> {
    report.outcome.reasons.iter().find(|r| r.subject == subject)
}

fn case(report: &Report, r: &RequirementReport) -> TestCase {
    let name = format!("{} {}", r.id, text::short(&r.text, 80));
    let status = match (blocker_of(report, &r.id), r.verdict) {
        (Some(reason), _) => {
            let kind = reason.blocker.kind();
            let detail = match r.verdict {
                Verdict::Unmet => r.finding.clone(),
                _ => reason_for_unknown(r),
            };
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type(kind)
                .set_message(message(r, &detail, &reason.message))
                .set_description(evidence_text(r));
            s
        }
        (None, Verdict::Met) => TestCaseStatus::success(),
        (None, verdict) => {
            let why = match verdict {
                Verdict::Unknown if report.outcome.allow_unknown => format!(
                    "unknown, allowed by --allow-unknown: {}",
                    reason_for_unknown(r)
                ),
                _ if !r.blocking => format!(
                    "{} but advisory ({}): does not block the signal",
                    verdict.as_str(),
                    r.level
                ),
                _ => format!("{}, allowed by --allow-unstable", verdict.as_str()),
            };
            let mut s = TestCaseStatus::skipped();
            s.set_type(verdict.as_str())
                .set_message(why)
                .set_description(evidence_text(r));
            s
        }
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(report.stage.name.as_str());
    case
}

/// `[MUST, blocking] finding`, one line.
fn message(r: &RequirementReport, text_: &str, fallback: &str) -> String {
    let body = fold_whitespace(text_);
    let body = if body.is_empty() {
        fallback.to_string()
    } else {
        body
    };
    format!("[{}, {}] {body}", r.level, text::weight(r))
}

fn reason_for_unknown(r: &RequirementReport) -> String {
    r.note
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .or(Some(r.finding.as_str()).filter(|f| !f.trim().is_empty()))
        .unwrap_or("the judge could not decide")
        .to_string()
}

/// The failure's text: what was required, what was found, and each quote with its
/// grounding.
fn evidence_text(r: &RequirementReport) -> String {
    let mut s = format!(
        "requirement: {}\nsource: {}\n",
        fold_whitespace(&r.text),
        r.source
    );
    if let Some(sev) = &r.severity {
        s.push_str(&format!("severity: {sev}\n"));
    }
    s.push_str(&format!("judged by: {} (model {})\n", r.judged_by, r.model));
    if r.claimed != r.verdict {
        s.push_str(&format!(
            "claimed: {} (hatrack ruled {})\n",
            r.claimed.as_str(),
            r.verdict.as_str()
        ));
    }
    if let Some(a) = &r.agreement {
        s.push_str(&format!("agreement: {}\n", text::agreement(a)));
    }
    if !r.finding.trim().is_empty() {
        s.push_str(&format!("finding: {}\n", r.finding.trim()));
    }
    if let Some(note) = r.note.as_deref().filter(|n| !n.trim().is_empty()) {
        s.push_str(&format!("note: {}\n", note.trim()));
    }
    for e in &r.evidence {
        let mark = if e.grounded { "grounded" } else { "UNGROUNDED" };
        s.push_str(&format!(
            "evidence [{mark}] {} — {}:\n",
            e.source, e.provenance
        ));
        for line in e.quote.lines() {
            s.push_str(&format!("  > {line}\n"));
        }
    }
    s
}
