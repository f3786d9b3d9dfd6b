//! The report as data: what every output format renders. `report.json` is this struct
//! serialised; its fields are documented in `docs/report-json.md`.

use serde::{Deserialize, Serialize};

/// Bumped whenever a field of `report.json` changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run directory's name.
    pub id: String,
    pub model: String,
    pub record_mode: String,
    /// RFC 3339, from the transcript.
    pub started_at: String,
    pub prompt_digest: String,
    pub samples: u32,
    pub usage: TokenUsage,
    /// Sum of the step durations (recorded), in milliseconds.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
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
    pub counts: VerdictCounts,
    /// Why the signal is not met, one line each (empty when met).
    pub reasons: Vec<String>,
    /// The gate (`external`, `await`, `ask`) still needs a person after hatrack is done.
    pub human_approval_required: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub met: u32,
    pub unmet: u32,
    pub unknown: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Hat,
    Review,
    Signal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// The model gave a schema-valid answer.
    Answered,
    /// Every attempt broke the schema; the step's verdicts are `unknown`.
    Unparseable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// `hat/pipeline-engineer`, `review/reliability`, `signal`.
    pub id: String,
    pub kind: StepKind,
    /// Hat or agent name; `completion judge` for the signal step.
    pub name: String,
    pub status: StepStatus,
    /// Model requests made for this step (re-asks and samples included).
    pub attempts: u32,
    pub usage: TokenUsage,
    pub duration_ms: u64,
    /// `live`, `replayed`, or `mixed` when some attempts were replayed.
    pub source: String,
    /// The step's own short summary, as the model wrote it.
    pub summary: Option<String>,
    pub artifacts: Vec<ArtifactReport>,
    /// Validation errors of attempts that broke the schema.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactReport {
    /// Relative to the run directory: `artifacts/<hat>/<path>`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    Unmet,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Unmet => "unmet",
            Verdict::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementKind {
    /// An anti-pattern of a hat, self-assessed by that hat.
    HatConstraint,
    /// A review agent's check.
    ReviewCheck,
    /// A completion-signal sentence, ruled on by the completion judge.
    Signal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementReport {
    /// `sre/anti-pattern/2`, `reliability/check/4`, `signal/3`.
    pub id: String,
    pub kind: RequirementKind,
    /// `MUST`, `MUST NOT`, `implicit`, …
    pub level: String,
    /// Blocks the signal when not met.
    pub mandatory: bool,
    /// The requirement's text, bold markers removed.
    pub text: String,
    /// `file:line` of the definition.
    pub source: String,
    /// The step that judged it.
    pub judged_by: String,
    /// Final verdict after grounding (and majority, with samples).
    pub verdict: Verdict,
    /// What the judge answered before grounding (differs when evidence was ungrounded).
    pub claimed: Verdict,
    /// `high`, `medium`, `low` for review checks.
    pub severity: Option<String>,
    pub finding: String,
    pub evidence: Vec<EvidenceReport>,
    /// Why the verdict is what it is when hatrack changed it (ungrounded evidence, unparseable step…).
    pub note: Option<String>,
    /// With `--samples N`: how many samples agreed with the verdict.
    pub agreement: Option<Agreement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub agree: u32,
    pub samples: u32,
    /// Below the stability threshold.
    pub unstable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReport {
    /// An artifact path (`artifacts/<hat>/<path>`) or an input name (`input:validation report`).
    pub source: String,
    pub quote: String,
    /// The quote occurs in the named source (whitespace-normalised).
    pub grounded: bool,
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
}
