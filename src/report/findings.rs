//! The report as a list of findings, most severe first: what the GitHub annotations and
//! `report.sarif` both render, so they never disagree. Nothing is decided here: an error is
//! one of the gate's reasons (`outcome.reasons`), a warning or note is a requirement the gate
//! did not count against the signal but that is not met.

use super::model::{Blocker, Report, RequirementReport, SourceKind, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// One of the gate's reasons: the signal is not met because of it.
    Error,
    /// Not met or unknown, but not blocking (advisory levels, or `--allow-unknown`).
    Warning,
    /// A `MAY` requirement not met.
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }

    /// A requirement not met that is not one of the gate's reasons: a note for a `MAY`, else
    /// a warning.
    pub fn not_counted(r: &RequirementReport) -> Severity {
        if r.level == "MAY" {
            Severity::Note
        } else {
            Severity::Warning
        }
    }

    /// The level of a requirement's rule: an error when the gate counts it against the
    /// signal (`blocking`), else as [`Severity::not_counted`].
    pub fn of_rule(r: &RequirementReport) -> Severity {
        if r.blocking {
            Severity::Error
        } else {
            Severity::not_counted(r)
        }
    }
}

/// Where a finding's evidence points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// As the evidence named it: a workspace path, or `artifacts/<hat>/<path>`.
    pub path: String,
    /// 1-based line where the quote starts, when known.
    pub line: Option<usize>,
    /// A file of the repository under review (else an artifact in the run directory).
    pub in_repository: bool,
    /// The quote found there.
    pub quote: String,
}

#[derive(Debug, Clone)]
pub struct Finding<'a> {
    /// The requirement id, or the hat's step id when a hat produced no artifact.
    pub rule_id: String,
    pub severity: Severity,
    /// One line a person reads: what is wrong, then the judge's finding.
    pub message: String,
    pub requirement: Option<&'a RequirementReport>,
    pub location: Option<Location>,
    /// For one of the gate's reasons: what blocks.
    pub blocker: Option<&'a Blocker>,
}

/// Gate reasons first (unmet, then missing artifacts, unstable, unknown), then the other
/// requirements not met (warnings before notes, unmet before unknown); within each group,
/// those quoting a repository file first, then report order.
pub fn findings(report: &Report) -> Vec<Finding<'_>> {
    let find = |id: &str| report.requirements.iter().find(|r| r.id == id);
    let mut errors: Vec<(u8, Finding)> = report
        .outcome
        .reasons
        .iter()
        .map(|reason| {
            let rank = match reason.blocker {
                Blocker::Unmet { .. } => 0,
                Blocker::NoArtifact | Blocker::NothingJudged { .. } => 1,
                Blocker::ArtifactOnly { .. } => 2,
                Blocker::Unstable { .. } => 2,
                Blocker::Unknown { .. } => 3,
            };
            let requirement = find(&reason.subject);
            let finding = Finding {
                rule_id: reason.subject.clone(),
                severity: Severity::Error,
                message: with_finding(&reason.message, requirement),
                requirement,
                location: requirement.and_then(location),
                blocker: Some(&reason.blocker),
            };
            (rank, finding)
        })
        .collect();
    // Within a rank, findings that point at a repository file first: they become inline
    // annotations, and only the first few of each level are shown.
    errors.sort_by_key(|(rank, f)| (*rank, !located(f)));
    let blocking: Vec<&str> = report
        .outcome
        .reasons
        .iter()
        .map(|r| r.subject.as_str())
        .collect();
    let mut others: Vec<(u8, Finding)> = report
        .requirements
        .iter()
        .filter(|r| {
            (r.verdict != Verdict::Met || r.artifact_only()) && !blocking.contains(&r.id.as_str())
        })
        .map(|r| {
            let severity = Severity::not_counted(r);
            let rank = u8::from(r.verdict != Verdict::Unmet);
            let state = if r.artifact_only() {
                "met but grounded only in a hat's own output"
            } else {
                r.verdict.as_str()
            };
            let head = format!("{} ({}) is {state}: {}", r.id, r.level, r.text);
            let finding = Finding {
                rule_id: r.id.clone(),
                severity,
                message: with_finding(&head, Some(r)),
                requirement: Some(r),
                location: location(r),
                blocker: None,
            };
            (rank, finding)
        })
        .collect();
    others.sort_by_key(|(rank, f)| (f.severity, *rank, !located(f)));
    errors.into_iter().chain(others).map(|(_, f)| f).collect()
}

fn located(f: &Finding<'_>) -> bool {
    f.location.as_ref().is_some_and(|l| l.in_repository)
}

/// `blocking: <head> — <finding>`: the gate's weight first, so an annotation or a SARIF
/// result says whether it holds the signal back.
fn with_finding(head: &str, r: Option<&RequirementReport>) -> String {
    let weight = r.map_or("blocking", super::text::weight);
    match r.map(|r| r.finding.trim()).filter(|f| !f.is_empty()) {
        Some(finding) => format!("{weight}: {head} — {finding}"),
        None => format!("{weight}: {head}"),
    }
}

/// The file and line of a check's finding among the evidence (the most precise place there
/// is), else the first grounded quote from the repository, else the first from an artifact.
fn location(r: &RequirementReport) -> Option<Location> {
    let grounded = || r.evidence.iter().filter(|e| e.grounded);
    let checked = grounded().find_map(|e| match &e.found_in {
        Some(SourceKind::Check {
            path: Some(path),
            line,
            ..
        }) => Some(Location {
            path: path.clone(),
            line: line.map(|l| l as usize),
            in_repository: true,
            quote: e.quote.clone(),
        }),
        _ => None,
    });
    if checked.is_some() {
        return checked;
    }
    let input = grounded().find(|e| e.found_in == Some(SourceKind::Input));
    let artifact = || grounded().find(|e| matches!(e.found_in, Some(SourceKind::Artifact { .. })));
    let any = input.or_else(artifact)?;
    Some(Location {
        path: any.source.trim().trim_start_matches("./").to_string(),
        line: any.line,
        in_repository: any.found_in == Some(SourceKind::Input),
        quote: any.quote.clone(),
    })
}
