//! Measuring the gate: labelled cases ([`labels`]), the verdicts of finished runs compared
//! with them ([`score`], pure), two evals compared item by item ([`compare`]), and the
//! files an eval writes ([`render`]).
//!
//! Eval reads finished run directories only (report.json, member.json) and nothing in a run
//! reads eval. report.json is read leniently: fields it gains are ignored, fields it loses
//! read as absent.

pub mod compare;
pub mod files;
pub mod labels;
pub mod render;
pub mod run;
pub mod score;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use labels::{Case, Expected, ExpectedGate, LabelErrors, Split, Suite};
use score::{Confusion, Got, Metrics, Outcome};

/// Bumped whenever a field of eval.json changes meaning or disappears (docs/eval.md).
pub const SCHEMA_VERSION: u32 = 1;
pub const EVAL_FILE: &str = "eval.json";
/// The labels an eval ran with, so `eval --from DIR` can score it again without the suite.
pub const SUITE_FILE: &str = "suite.json";

/// Requirement kinds in the order reports show them.
pub const KINDS: [&str; 3] = ["hat-constraint", "review-check", "signal"];

/// eval.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub schema_version: u32,
    pub hatrack_version: String,
    /// The stage the runs judged (from their reports).
    pub stage: Option<String>,
    /// Producing and judging models the runs used.
    pub models: Vec<String>,
    pub judge_models: Vec<String>,
    /// Samples per judging step (1 without --samples).
    pub samples: u32,
    pub counts: Counts,
    /// The split the thresholds apply to: `holdout` when the suite has one, else `all`.
    pub thresholds_on: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdCheck>,
    pub scores: Scores,
    pub gate: GateView,
    /// What the stage's checks decided in these runs (absent from evals before it).
    #[serde(default)]
    pub checks: ChecksView,
    pub cases: Vec<CaseResult>,
}

/// What checks (the stage's checks.toml, `[[check]]`, evidence) did in an eval's runs, so
/// an eval with checks and one `--without-checks` can be told apart and their difference
/// read: `eval compare` of the two lists every item the checks turned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChecksView {
    /// Cases whose run applied checks (0: `--without-checks`, the judges alone).
    pub cases_with_checks: u32,
    /// Labelled items a check's veto made unmet (cause `check`), whatever the judge said.
    pub vetoed: u32,
    /// Of those, labelled `unmet` (a defect caught by facts) and labelled `met` (a false veto).
    pub vetoed_right: u32,
    pub vetoed_wrong: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub cases: u32,
    pub holdout_cases: u32,
    /// Labelled met or unmet.
    pub items: u32,
    pub right: u32,
    pub wrong: u32,
    pub abstained: u32,
    /// Labelled `any`.
    pub unscored: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub all: ScoreSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<ScoreSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<ScoreSet>,
    /// With both kinds of case: the cases with fixed artifacts (their labels follow from
    /// files alone) and those run end to end (their scores carry the hats' variance), apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_cases: Option<ScoreSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_to_end_cases: Option<ScoreSet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSet {
    pub overall: Metrics,
    /// Hat constraints, review checks, signal sentences (kinds with no item left out).
    pub by_kind: Vec<KindScore>,
    /// Every labelled requirement, in id order.
    pub by_requirement: Vec<RequirementScore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindScore {
    pub kind: String,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementScore {
    pub id: String,
    pub kind: String,
    pub metrics: Metrics,
}

/// Expected gate vs the exit code, per case; the costly error first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateView {
    pub right: u32,
    /// Should have been blocked, but the gate passed it: the costly error.
    pub should_block_but_passed: u32,
    /// Should have passed, but the gate blocked it.
    pub blocked_but_should_pass: u32,
    /// The run ended without a gate (exit 2 or more).
    pub no_gate: u32,
    /// Costly errors first, then the other wrong gates, the runs without one, the right ones.
    pub cases: Vec<GateRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateOutcome {
    ShouldBlockButPassed,
    BlockedButShouldPass,
    NoGate,
    Right,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    pub case: String,
    pub split: Split,
    pub expected: ExpectedGate,
    pub exit_code: i32,
    pub outcome: GateOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub split: Split,
    pub labels_file: String,
    pub expected_gate: ExpectedGate,
    /// `end-to-end` (hats asked) or `artifacts` (the case fixes the hats' artifacts).
    pub mode: String,
    pub exit_code: i32,
    /// Why the run ended without a report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<ItemResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub kind: String,
    pub expected: Expected,
    pub got: Got,
    pub outcome: Outcome,
    pub why: String,
    /// The line of labels.toml.
    pub label_line: usize,
    /// The judge's finding and evidence, as report.json has them.
    #[serde(default)]
    pub finding: String,
    #[serde(default)]
    pub evidence: Vec<EvidenceSeen>,
    /// With samples: how many agreed with the verdict, and the share that did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<AgreementSeen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_rate: Option<f64>,
    /// A check's veto decided it (cause `check`), not the judge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vetoed_by_check: bool,
}

/// The thresholds of `--min-tpr` … `--max-abstain`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    pub min_tpr: Option<f64>,
    pub min_tnr: Option<f64>,
    pub min_kappa: Option<f64>,
    pub max_abstain: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCheck {
    /// `--min-tpr`, …
    pub flag: String,
    pub limit: f64,
    /// `null` when the split has nothing to measure it on (which fails the threshold).
    pub value: Option<f64>,
    pub met: bool,
}

// ---- what eval reads of a finished run (leniently) ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RunReport {
    stage: StageSeen,
    run: RunSeen,
    outcome: OutcomeSeen,
    requirements: Vec<RequirementSeen>,
    /// Present when the run applied checks.
    checks: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct StageSeen {
    name: String,
    definition_digest: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RunSeen {
    model: String,
    judge_model: String,
    samples: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct OutcomeSeen {
    exit_code: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RequirementSeen {
    id: String,
    kind: String,
    verdict: Option<String>,
    finding: String,
    evidence: Vec<EvidenceSeen>,
    agreement: Option<AgreementSeen>,
    cause: Option<CauseSeen>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct CauseSeen {
    cause: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceSeen {
    pub source: String,
    pub quote: String,
    pub grounded: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgreementSeen {
    pub agree: u32,
    pub samples: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct MemberSeen {
    exit_code: Option<i32>,
    error: Option<String>,
}

/// One case's finished run, as read from its run directory.
#[derive(Debug, Clone, Default)]
pub struct CaseRun {
    report: Option<RunReport>,
    exit_code: i32,
    error: Option<String>,
}

/// Reads every case's run directory `dir/<case>/`: its report.json, and member.json (the
/// batch's record of how it ended) when the run ended without a report.
pub fn read_runs(dir: &Path, suite: &Suite) -> Result<Vec<CaseRun>, crate::Error> {
    suite
        .cases
        .iter()
        .map(|case| read_run(&dir.join(&case.name)))
        .collect()
}

fn read_run(run_dir: &Path) -> Result<CaseRun, crate::Error> {
    let report_path = run_dir.join("report.json");
    let member_path = run_dir.join(crate::batch::index::MEMBER_FILE);
    // How the batch says the run last ended: an error there (a replay that missed, a
    // provider that failed) outranks a report.json left from an earlier run.
    let member: Option<MemberSeen> = if member_path.is_file() {
        Some(
            serde_json::from_str(&read_capped(&member_path)?)
                .map_err(|e| crate::Error::usage(format!("{}: {e}", member_path.display())))?,
        )
    } else {
        None
    };
    if let Some(MemberSeen {
        exit_code,
        error: Some(error),
    }) = member
    {
        return Ok(CaseRun {
            report: None,
            exit_code: exit_code.unwrap_or(2),
            error: Some(error),
        });
    }
    if report_path.is_file() {
        let text = read_capped(&report_path)?;
        let report: RunReport = serde_json::from_str(&text).map_err(|e| {
            crate::Error::usage(format!("{}: not a report ({e})", report_path.display()))
        })?;
        return Ok(CaseRun {
            exit_code: report.outcome.exit_code.unwrap_or(2),
            report: Some(report),
            error: None,
        });
    }
    if let Some(member) = member {
        return Ok(CaseRun {
            report: None,
            exit_code: member.exit_code.unwrap_or(2),
            error: Some("the run ended without a report".into()),
        });
    }
    Err(crate::Error::usage(format!(
        "{}: no run of this case (no report.json, no member.json): run the suite with `hatrack eval SUITE --out DIR`, or merge every shard first",
        run_dir.display()
    )))
}

/// A recorded run's file through the one bounded reader (never through a link).
fn read_capped(path: &Path) -> Result<String, crate::Error> {
    use crate::safe_fs::{read_bounded_string, Kind, Links};
    Ok(read_bounded_string(path, Kind::RUN_FILE, Links::Never)?)
}

/// Labels whose id the recorded run does not have (labels of another stage, or a typo),
/// and labels written for another version of the stage unless `allow_stale`: checked on
/// the reports, so `eval --from` refuses what `eval` would have.
pub fn check_recorded(
    suite: &Suite,
    suite_dir: &Path,
    runs: &[CaseRun],
    allow_stale: bool,
) -> Result<(), LabelErrors> {
    let mut problems = Vec::new();
    for (case, run) in suite.cases.iter().zip(runs) {
        let Some(report) = &run.report else { continue };
        let ids: BTreeSet<String> = report.requirements.iter().map(|r| r.id.clone()).collect();
        let stage = (
            report.stage.name.as_str(),
            report.stage.definition_digest.as_str(),
        );
        if let Err(mut e) = labels::check_against_stage(case, suite_dir, &ids, stage, allow_stale) {
            problems.append(&mut e.0);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabelErrors(problems))
    }
}

/// Scores the runs against the labels: pure, so the same runs and labels always give the
/// same report.
pub fn evaluate(suite: &Suite, runs: &[CaseRun], thresholds: &Thresholds) -> EvalReport {
    let cases: Vec<CaseResult> = suite
        .cases
        .iter()
        .zip(runs)
        .map(|(case, run)| case_result(case, run))
        .collect();
    let holdout = cases.iter().any(|c| c.split == Split::Holdout);
    let both =
        cases.iter().any(|c| c.mode == "artifacts") && cases.iter().any(|c| c.mode != "artifacts");
    let of_mode = |artifacts: bool| {
        let kept: Vec<CaseResult> = cases
            .iter()
            .filter(|c| (c.mode == "artifacts") == artifacts)
            .cloned()
            .collect();
        score_set(&kept, None)
    };
    let scores = Scores {
        all: score_set(&cases, None),
        dev: holdout.then(|| score_set(&cases, Some(Split::Dev))),
        holdout: holdout.then(|| score_set(&cases, Some(Split::Holdout))),
        artifact_cases: both.then(|| of_mode(true)),
        end_to_end_cases: both.then(|| of_mode(false)),
    };
    let on = scores.holdout.as_ref().unwrap_or(&scores.all);
    let checks = check_thresholds(&on.overall, thresholds);
    let reports = || runs.iter().filter_map(|r| r.report.as_ref());
    let distinct = |f: &dyn Fn(&RunReport) -> String| -> Vec<String> {
        reports()
            .map(f)
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    EvalReport {
        schema_version: SCHEMA_VERSION,
        hatrack_version: env!("CARGO_PKG_VERSION").to_string(),
        stage: reports().map(|r| r.stage.name.clone()).next(),
        models: distinct(&|r| r.run.model.clone()),
        judge_models: distinct(&|r| r.run.judge_model.clone()),
        samples: reports().map(|r| r.run.samples).max().unwrap_or(1).max(1),
        counts: counts(&cases),
        thresholds_on: if holdout { "holdout" } else { "all" }.to_string(),
        thresholds: checks,
        scores,
        gate: gate_view(&cases),
        checks: checks_view(runs, &cases),
        cases,
    }
}

fn case_result(case: &Case, run: &CaseRun) -> CaseResult {
    let seen: BTreeMap<&str, &RequirementSeen> = run
        .report
        .iter()
        .flat_map(|r| &r.requirements)
        .map(|r| (r.id.as_str(), r))
        .collect();
    let items = case
        .labels
        .iter()
        .map(|label| {
            let judged = seen.get(label.id.as_str());
            let got = Got::from_word(judged.and_then(|j| j.verdict.as_deref()));
            let agreement = judged.and_then(|j| j.agreement);
            ItemResult {
                id: label.id.clone(),
                kind: judged
                    .map(|j| j.kind.clone())
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| kind_of(&label.id).to_string()),
                expected: label.expected,
                got,
                outcome: score::outcome(label.expected, got),
                why: label.why.clone(),
                label_line: label.line,
                finding: judged.map(|j| j.finding.clone()).unwrap_or_default(),
                evidence: judged.map(|j| j.evidence.clone()).unwrap_or_default(),
                agreement,
                flip_rate: agreement.filter(|a| a.samples > 1).map(|a| {
                    score::round(
                        f64::from(a.samples - a.agree.min(a.samples)) / f64::from(a.samples),
                    )
                }),
                vetoed_by_check: judged
                    .and_then(|j| j.cause.as_ref())
                    .is_some_and(|c| c.cause == "check"),
            }
        })
        .collect();
    CaseResult {
        name: case.name.clone(),
        split: case.split,
        labels_file: case.labels_file.clone(),
        expected_gate: case.gate,
        mode: if case.fixed_artifacts {
            "artifacts"
        } else {
            "end-to-end"
        }
        .to_string(),
        exit_code: run.exit_code,
        error: run.error.clone(),
        items,
    }
}

/// The kind an id names (`hat/anti-pattern/N`, `agent/check/N`, `signal/N`), for a run that
/// ended without a report.
pub fn kind_of(id: &str) -> &'static str {
    if id.starts_with("signal/") {
        "signal"
    } else if id.contains("/check/") {
        "review-check"
    } else {
        "hat-constraint"
    }
}

/// Every item of `cases` (of one split, or all).
fn items_of(cases: &[CaseResult], split: Option<Split>) -> impl Iterator<Item = &ItemResult> {
    cases
        .iter()
        .filter(move |c| split.is_none_or(|s| c.split == s))
        .flat_map(|c| &c.items)
}

fn metrics<'a>(items: impl Iterator<Item = &'a ItemResult>) -> Metrics {
    let items: Vec<&ItemResult> = items.collect();
    let mut m = Metrics::of(Confusion::of(items.iter().map(|i| (i.expected, i.got))));
    let flips: Vec<f64> = items
        .iter()
        .filter(|i| i.expected != Expected::Any)
        .filter_map(|i| i.flip_rate)
        .collect();
    if !flips.is_empty() {
        m.mean_flip_rate = Some(score::round(flips.iter().sum::<f64>() / flips.len() as f64));
    }
    m
}

fn score_set(cases: &[CaseResult], split: Option<Split>) -> ScoreSet {
    let by_kind = KINDS
        .iter()
        .filter(|k| items_of(cases, split).any(|i| i.kind == **k && i.expected != Expected::Any))
        .map(|k| KindScore {
            kind: k.to_string(),
            metrics: metrics(items_of(cases, split).filter(|i| i.kind == *k)),
        })
        .collect();
    let ids: BTreeMap<&str, &str> = items_of(cases, split)
        .filter(|i| i.expected != Expected::Any)
        .map(|i| (i.id.as_str(), i.kind.as_str()))
        .collect();
    let by_requirement = ids
        .into_iter()
        .map(|(id, kind)| RequirementScore {
            id: id.to_string(),
            kind: kind.to_string(),
            metrics: metrics(items_of(cases, split).filter(|i| i.id == id)),
        })
        .collect();
    ScoreSet {
        overall: metrics(items_of(cases, split)),
        by_kind,
        by_requirement,
    }
}

fn counts(cases: &[CaseResult]) -> Counts {
    let mut c = Counts {
        cases: cases.len() as u32,
        holdout_cases: cases.iter().filter(|c| c.split == Split::Holdout).count() as u32,
        ..Counts::default()
    };
    for item in items_of(cases, None) {
        match item.outcome {
            Outcome::Right => c.right += 1,
            Outcome::Wrong => c.wrong += 1,
            Outcome::Abstained => c.abstained += 1,
            Outcome::Unscored => c.unscored += 1,
        }
    }
    c.items = c.right + c.wrong + c.abstained;
    c
}

fn checks_view(runs: &[CaseRun], cases: &[CaseResult]) -> ChecksView {
    let vetoed: Vec<&ItemResult> = items_of(cases, None)
        .filter(|i| i.vetoed_by_check)
        .collect();
    let labelled = |e: Expected| vetoed.iter().filter(|i| i.expected == e).count() as u32;
    ChecksView {
        cases_with_checks: runs
            .iter()
            .filter(|r| r.report.as_ref().is_some_and(|r| r.checks.is_some()))
            .count() as u32,
        vetoed: vetoed.len() as u32,
        vetoed_right: labelled(Expected::Unmet),
        vetoed_wrong: labelled(Expected::Met),
    }
}

fn gate_view(cases: &[CaseResult]) -> GateView {
    let mut rows: Vec<GateRow> = cases
        .iter()
        .map(|c| GateRow {
            case: c.name.clone(),
            split: c.split,
            expected: c.expected_gate,
            exit_code: c.exit_code,
            outcome: match (c.expected_gate, c.exit_code) {
                (ExpectedGate::NotMet, 0) => GateOutcome::ShouldBlockButPassed,
                (ExpectedGate::Met, 1) => GateOutcome::BlockedButShouldPass,
                (ExpectedGate::Met, 0) | (ExpectedGate::NotMet, 1) => GateOutcome::Right,
                _ => GateOutcome::NoGate,
            },
        })
        .collect();
    rows.sort_by(|a, b| a.outcome.cmp(&b.outcome).then_with(|| a.case.cmp(&b.case)));
    let count = |o: GateOutcome| rows.iter().filter(|r| r.outcome == o).count() as u32;
    GateView {
        right: count(GateOutcome::Right),
        should_block_but_passed: count(GateOutcome::ShouldBlockButPassed),
        blocked_but_should_pass: count(GateOutcome::BlockedButShouldPass),
        no_gate: count(GateOutcome::NoGate),
        cases: rows,
    }
}

fn check_thresholds(m: &Metrics, t: &Thresholds) -> Vec<ThresholdCheck> {
    let mut checks = Vec::new();
    let mut check = |flag: &str, limit: Option<f64>, value: Option<f64>, min: bool| {
        if let Some(limit) = limit {
            let met = value.is_some_and(|v| if min { v >= limit } else { v <= limit });
            checks.push(ThresholdCheck {
                flag: flag.to_string(),
                limit,
                value,
                met,
            });
        }
    };
    check("--min-tpr", t.min_tpr, m.tpr.value, true);
    check("--min-tnr", t.min_tnr, m.tnr.value, true);
    check("--min-kappa", t.min_kappa, m.kappa, true);
    check("--max-abstain", t.max_abstain, m.abstention.value, false);
    checks
}

impl EvalReport {
    /// The eval's exit code: a run that ended without a gate (provider failure, replay miss,
    /// budget, bad input) gives its own (the highest), else 1 when a threshold is not met.
    pub fn exit_code(&self) -> i32 {
        let worst = self.cases.iter().map(|c| c.exit_code).max().unwrap_or(0);
        if worst >= 2 {
            worst
        } else if self.thresholds.iter().any(|t| !t.met) {
            1
        } else {
            0
        }
    }
}
