//! The report as data: what every output format renders. `report.json` is this struct
//! serialised; its fields are documented in `docs/report-json.md`.

use serde::{Deserialize, Serialize};

use crate::verdict::gate::GateDecision;
pub use crate::verdict::gate::{Blocker, Reason, VerdictCounts};
pub use crate::verdict::{
    Agreement, Cause, RequirementKind, SourceKind, StepKind, StepStatus, Subject, Verdict,
};
use crate::verdict::{Evidence, Judged};

/// Bumped whenever a field of `report.json` changes meaning or disappears.
/// 2: constraint judges (no self-assessment), typed gate reasons and causes, evidence
/// provenance, the model of each step.
/// 3: verdicts fail closed (an `unmet` with inexact evidence stays `unmet`, with a cause);
/// new reason kinds `nothing-judged` and `artifact-only`, cause `artifact-only`;
/// requirements carry `blocking` and `about`; evidence may carry `repository_copy`.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub hatrack_version: String,
    pub stage: StageInfo,
    pub run: RunInfo,
    pub outcome: Outcome,
    /// Steps in the order they ran.
    pub steps: Vec<StepReport>,
    /// Every requirement: hat constraints, review checks, completion-signal sentences.
    pub requirements: Vec<RequirementReport>,
    pub inputs: Vec<InputReport>,
    pub warnings: Vec<String>,
    /// What checks found (linters' and tests' findings, probes) and the mappings in force;
    /// a requirement a check decided names its findings in its `cause`. Omitted for a run
    /// without checks, so its report keeps its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<crate::checks::Facts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub name: String,
    pub studio: Option<String>,
    pub title: String,
    pub description: String,
    /// The stage's `review:` gate kinds, as written (`external`, `ask`, …).
    pub gates: Vec<String>,
    /// sha256 over the definition files.
    pub definition_digest: String,
    /// Hats in sequence order.
    pub hats: Vec<String>,
    /// Review agents, `name` or `name (from stage)`.
    pub review_agents: Vec<String>,
    /// v8 `fix_hats:` as declared (shown, not run). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fix_hats: Vec<String>,
    /// v8 `interpretation:` as written (shown, not acted on). Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run directory's name.
    pub id: String,
    /// The model of the producing hats.
    pub model: String,
    /// The model of every judging step (constraint judges, review agents, completion judge).
    pub judge_model: String,
    pub record_mode: String,
    /// RFC 3339, from the transcript.
    pub started_at: String,
    pub prompt_digest: String,
    pub samples: u32,
    pub usage: TokenUsage,
    /// Sum of the step durations (recorded), in milliseconds.
    pub duration_ms: u64,
    /// With `--prices`: the run's cost (unknown when any step's model has no price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// The effective policy, each key with its source (absent for runs recorded before it
    /// was): docs/policy.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::PolicyRecord>,
}

/// What tokens cost, from the `--prices` table. `usd` is `null` when a model used has no
/// price there: an unknown cost, never 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub usd: Option<f64>,
    /// Models used that the table does not price.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl TokenUsage {
    /// Adds another count; sums saturate (a provider's numbers are outside input).
    pub fn add(&mut self, other: &TokenUsage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The stage's completion signal is met.
    pub signal_met: bool,
    /// The exit code hatrack returns for this report (0 met, 1 not met).
    pub exit_code: i32,
    /// One sentence a person reads first.
    pub summary: String,
    pub allow_unknown: bool,
    pub allow_unstable: bool,
    /// Every requirement, counted once by its final verdict.
    pub counts: VerdictCounts,
    /// Requirements, checks and hats that can block the signal.
    pub blocking_total: u32,
    /// Why the signal is not met: one entry per blocking requirement or hat (empty when met).
    pub reasons: Vec<Reason>,
    /// The gate (`external`, `await`, `ask`) still needs a person after hatrack is done.
    pub human_approval_required: bool,
    /// `true` when the stage has no completion signal (v8 layout) and was gated on its hats'
    /// constraints and review checks only. Omitted when `false`, so reports of stages with
    /// a signal keep their bytes (committed transcripts replay to identical files).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_completion_signal: bool,
}

impl From<&GateDecision> for Outcome {
    fn from(d: &GateDecision) -> Outcome {
        Outcome {
            signal_met: d.signal_met,
            exit_code: d.exit_code(),
            summary: d.summary(),
            allow_unknown: d.policy.allow_unknown,
            allow_unstable: d.policy.allow_unstable,
            counts: d.counts,
            blocking_total: d.blocking_total,
            reasons: d.reasons.clone(),
            human_approval_required: !d.needs_human.is_empty(),
            no_completion_signal: d.no_completion_signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// `hat/pipeline-engineer`, `judge/pipeline-engineer`, `review/reliability`, `signal`.
    pub id: String,
    pub kind: StepKind,
    /// Hat or agent name; `completion judge` for the signal step.
    pub name: String,
    /// The model this step asked.
    pub model: String,
    pub status: StepStatus,
    /// Model requests made for this step (re-asks and samples included).
    pub attempts: u32,
    pub usage: TokenUsage,
    pub duration_ms: u64,
    /// With `--prices`: this step's tokens priced at its model's rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// `live`, `replayed`, or `mixed` when some attempts were replayed.
    pub source: String,
    /// The step's own short summary, as the model wrote it.
    pub summary: Option<String>,
    pub artifacts: Vec<ArtifactReport>,
    /// Validation errors of attempts that broke the schema.
    pub errors: Vec<String>,
    /// The agent's tool calls, in order (empty without tools).
    pub trail: Vec<crate::tools::Trail>,
    /// How tools were used when not as an agent: refused by the provider, unused by the model.
    pub tools: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactReport {
    /// Relative to the run directory: `artifacts/<hat>/<path>`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementReport {
    /// `sre/anti-pattern/2`, `reliability/check/4`, `signal/3`.
    pub id: String,
    pub kind: RequirementKind,
    /// `MUST`, `MUST NOT`, `implicit`, …
    pub level: String,
    /// The level is MUST-like (MUST, MUST NOT, SHALL, REQUIRED, implicit).
    pub mandatory: bool,
    /// The gate counts it: not met, it blocks the signal (else it is advisory). Decided once
    /// (`Judged::blocks`): every hat constraint, and MUST-level checks and signal sentences.
    /// (Absent from schema 2 reports: read as `false`.)
    #[serde(default)]
    pub blocking: bool,
    /// The requirement's text, bold markers removed.
    pub text: String,
    /// `file:line` of the definition.
    pub source: String,
    /// The step that judged it (`judge/<hat>`, `review/<agent>`, `signal`).
    pub judged_by: String,
    /// What it is about: `repository` (a `met` needs a quote from a repository file) or
    /// `hat-output` (a `met` may rest on a hat's artifact). (Absent from schema 2 reports:
    /// read as `repository`.)
    #[serde(default)]
    pub about: Subject,
    /// The model that judged it.
    pub model: String,
    /// Final verdict after grounding (and majority, with samples).
    pub verdict: Verdict,
    /// What the judge answered before grounding (differs when evidence was ungrounded).
    pub claimed: Verdict,
    /// `high`, `medium`, `low` for review checks.
    pub severity: Option<String>,
    pub finding: String,
    pub evidence: Vec<EvidenceReport>,
    /// Why the verdict is what it is when hatrack changed it, or why it is unknown.
    pub cause: Option<Cause>,
    /// `cause` as a sentence.
    pub note: Option<String>,
    /// With `--samples N`: how many samples agreed with the verdict.
    pub agreement: Option<Agreement>,
    /// The label of the list it was written under, as written, when more than the plain
    /// `Check` / `Anti-patterns`: a qualified label (`Check (per DAG)`) or a list of what to
    /// reject or forbid (`Reject if`, `Forbidden`). Omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Report {
    /// Keeps on each requirement the label of the list the definition wrote it under (see
    /// [`RequirementReport::label`]), looked up by id in `stage`.
    pub fn with_labels(mut self, stage: &crate::definition::Stage) -> Report {
        let defined = stage
            .hats
            .iter()
            .flat_map(|h| h.requirements.iter())
            .chain(stage.review_agents.iter().flat_map(|a| a.checks.iter()));
        let labels: std::collections::HashMap<&str, &str> = defined
            .filter_map(|r| Some((r.id.as_str(), r.label.as_deref()?)))
            .collect();
        for r in &mut self.requirements {
            r.label = labels.get(r.id.as_str()).map(|l| l.to_string());
        }
        self
    }
}

impl RequirementReport {
    /// A `met` grounded only in a hat's own output (it blocks unless allowed).
    pub fn artifact_only(&self) -> bool {
        self.verdict == Verdict::Met && self.cause == Some(Cause::ArtifactOnly)
    }

    /// The verdict its completion judge was shown (see `Judged::shown_verdict`).
    pub fn shown_verdict(&self) -> Verdict {
        crate::verdict::shown_verdict(self.verdict, self.cause.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReport {
    /// The source exactly as the judge named it: an input path or `artifacts/<hat>/<path>`.
    pub source: String,
    pub quote: String,
    /// The quote is meaningful and occurs in the named source.
    pub grounded: bool,
    /// What the quote was found in (repository input or a hat's artifact).
    pub found_in: Option<SourceKind>,
    /// The 1-based line of the source where the quote starts (absent when ungrounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// "quoted from the repository", "quoted from the sre's artifact", or why it grounds nothing.
    pub provenance: String,
    /// For an artifact quote: a repository file holding the same words (then it counts as
    /// repository evidence). Omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_copy: Option<String>,
}

impl From<&Evidence> for EvidenceReport {
    fn from(e: &Evidence) -> EvidenceReport {
        EvidenceReport {
            source: e.source.clone(),
            quote: e.quote.clone(),
            grounded: e.grounded(),
            found_in: e.found_in.clone(),
            line: e.line,
            provenance: match (&e.found_in, &e.problem, &e.repository_copy) {
                (Some(kind), _, Some(copy)) => format!(
                    "{}; the same words are in the repository ({copy})",
                    kind.provenance()
                ),
                (Some(kind), _, None) => kind.provenance(),
                (None, Some(p), _) => format!("ungrounded: {}", p.describe(&e.source)),
                (None, None, _) => "ungrounded".to_string(),
            },
            repository_copy: e.repository_copy.clone(),
        }
    }
}

impl From<&Judged> for RequirementReport {
    fn from(j: &Judged) -> RequirementReport {
        RequirementReport {
            id: j.id.clone(),
            kind: j.kind,
            level: j.level.clone(),
            mandatory: j.mandatory,
            blocking: j.blocks(),
            text: j.text.clone(),
            source: j.source.clone(),
            judged_by: j.judged_by.clone(),
            about: j.about,
            model: j.model.clone(),
            verdict: j.verdict,
            claimed: j.claimed,
            severity: j.severity.clone(),
            finding: j.finding.clone(),
            evidence: j.evidence.iter().map(EvidenceReport::from).collect(),
            cause: j.cause.clone(),
            note: j.note(),
            agreement: j.agreement,
            label: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputReport {
    pub hat: String,
    /// The Reads item, as written.
    pub item: String,
    /// `workspace` or `hat:<name>`.
    pub bound_to: String,
    pub files: Vec<InputFileReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFileReport {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub truncated: bool,
    /// Bytes the hat's prompt quoted (`bytes` unless `truncated`).
    pub shown_bytes: u64,
}
