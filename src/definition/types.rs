//! The data a stage definition is made of. Everything here is plain data: loading and
//! linting live in sibling modules, and nothing here knows about models.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Raw YAML front matter, kept whole so unknown keys survive (every H·AI·K·U snapshot adds keys).
pub type FrontMatter = serde_json::Map<String, serde_json::Value>;

/// Where something was written: a file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRef {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// RFC 2119 strength of a requirement. `Implicit` is a completion-signal sentence with no
/// keyword: judged like `Must`, reported separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    MustNot,
    Must,
    Implicit,
    ShouldNot,
    Should,
    May,
}

impl Level {
    /// Whether an unmet requirement of this level blocks the completion signal.
    pub fn is_mandatory(self) -> bool {
        matches!(self, Level::Must | Level::MustNot | Level::Implicit)
    }

    /// The spelling users read in reports: `MUST NOT`, `MUST`, `implicit`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Level::MustNot => "MUST NOT",
            Level::Must => "MUST",
            Level::Implicit => "implicit",
            Level::ShouldNot => "SHOULD NOT",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One RFC 2119 requirement: an anti-pattern item, a review check, or a completion-signal
/// sentence. `text` is verbatim (list marker removed, bold markers kept): garbled corpus
/// wording is never repaired, only flagged through `malformed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirement {
    /// Stable, readable id: `pipeline-engineer/anti-pattern/1`, `reliability/check/3`, `signal/2`.
    pub id: String,
    pub level: Level,
    /// Every keyword in the unit, as written (`MUST NOT`, `REQUIRED`, …), in order.
    pub keywords: Vec<String>,
    pub text: String,
    /// Normalised section label or heading the requirement was found under
    /// (`anti-patterns`, `check`, `completion signal`, `focus`, …).
    pub section: String,
    pub source: SourceRef,
    /// The text looks damaged by the corpus's mechanical RFC rewrite (e.g. `**MUST** captur`).
    pub malformed: bool,
    /// For a v8 check that takes its keyword from the `## Check` lead-in sentence ("The
    /// agent **MUST** verify, and file feedback for any violation:"): that sentence, as
    /// written. The item's own `text` holds no keyword, so a judge needs both to read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_in: Option<String>,
    /// The label of the list the requirement comes from, as written, when it is more than
    /// the plain `Check` / `Anti-patterns`: a qualified label (`Check (per DAG)`) or a list
    /// of what to reject or forbid (`Reject if`, `Forbidden`), whose keyword-less items are
    /// MUST NOT. Reported per requirement in report.json (`label`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Requirement {
    /// The text without Markdown bold markers, for display.
    pub fn plain_text(&self) -> String {
        self.text.replace("**", "")
    }
}

/// A labelled section (`**Focus:** …`) or heading section of a body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Normalised: lowercase, ` (rfc 2119)` stripped, `anti patterns` → `anti-patterns`.
    pub label: String,
    /// The label or heading as written.
    pub heading: String,
    /// The section's text after the label, trimmed.
    pub text: String,
    pub line: usize,
}

/// A hat: one agent role of the stage's sequence.
#[derive(Debug, Clone, Serialize)]
pub struct Hat {
    /// The file stem: the runtime's key (not the front-matter `name`).
    pub name: String,
    pub file: PathBuf,
    pub front_matter: FrontMatter,
    pub focus: Option<String>,
    pub produces: Option<String>,
    pub reads: Option<String>,
    pub responsibilities: Option<String>,
    /// v8 `## Process`: how the hat works, shown to the hat as guidance. Keyword sentences
    /// in it are requirements of section `process` (context, like Focus), not constraints.
    pub process: Option<String>,
    pub sections: Vec<Section>,
    /// Body without front matter, trimmed.
    pub body: String,
    /// Every requirement in the body, tagged by section.
    pub requirements: Vec<Requirement>,
}

impl Hat {
    /// The hat's constraints: requirements found in an anti-pattern section.
    pub fn constraints(&self) -> impl Iterator<Item = &Requirement> {
        self.requirements
            .iter()
            .filter(|r| r.section == "anti-patterns")
    }
}

/// Whether a review agent belongs to the stage or was pulled in by `review-agents-include`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AgentOrigin {
    Own,
    Included { stage: String },
}

/// A review agent: a mandate and a list of checks it judges.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewAgent {
    /// The file stem.
    pub name: String,
    pub file: PathBuf,
    pub origin: AgentOrigin,
    pub front_matter: FrontMatter,
    pub mandate: String,
    pub checks: Vec<Requirement>,
    /// v8 "Common failure modes to look for": what to watch for, shown to the review judge
    /// as guidance. Never judged one by one (they are not checks). Items verbatim.
    pub failure_modes: Vec<String>,
    /// v8 front-matter `applies_to:` as written. Entries without `.` or `/` name stages
    /// (globs: `deploy*`): the agent runs on a stage one of them matches. File globs
    /// (`*.tsx`) name artifact kinds hatrack cannot tell before a run: shown, not gating.
    pub applies_to: Vec<String>,
    /// For a studio-level agent (`<studio>/review-agents/`, v8), the studio directory it
    /// comes from. It reviews each stage it applies to as one of the stage's own (origin
    /// `own`); `None` for a stage's agents.
    pub studio_level: Option<String>,
    pub body: String,
}

impl ReviewAgent {
    /// Whether the agent runs on the stage `stage`: when `applies_to:` names no stage
    /// (absent, or file globs only), or one of its stage patterns matches.
    pub fn applies_to_stage(&self, stage: &str) -> bool {
        let stages: Vec<&String> = self
            .applies_to
            .iter()
            .filter(|p| is_stage_pattern(p))
            .collect();
        stages.is_empty() || stages.iter().any(|p| glob_matches(p, stage))
    }
}

/// An `applies_to:` entry that names stages (no `.` or `/`), not files.
pub fn is_stage_pattern(pattern: &str) -> bool {
    !pattern.contains('.') && !pattern.contains('/')
}

/// `*` and `?` glob over a whole name, case-insensitive.
fn glob_matches(pattern: &str, name: &str) -> bool {
    globset::GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// A phase file (`phases/ELABORATION.md`, `phases/EXECUTION.md`): guidance for the method's
/// elaborate and execute phases. Read and shown; hatrack runs no phases.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// The file stem as written (`EXECUTION`).
    pub name: String,
    pub file: PathBuf,
    pub front_matter: FrontMatter,
    pub body: String,
}

/// A stage's `review:` gate kind, reported as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    Auto,
    Ask,
    External,
    Await,
    Other(String),
}

impl GateKind {
    pub fn parse(s: &str) -> GateKind {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => GateKind::Auto,
            "ask" => GateKind::Ask,
            "external" => GateKind::External,
            "await" => GateKind::Await,
            other => GateKind::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            GateKind::Auto => "auto",
            GateKind::Ask => "ask",
            GateKind::External => "external",
            GateKind::Await => "await",
            GateKind::Other(s) => s,
        }
    }

    /// `external` and `await` need a person (or a world event) after hatrack is done.
    pub fn needs_human(&self) -> bool {
        matches!(self, GateKind::External | GateKind::Await | GateKind::Ask)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    Discovery,
    Output,
}

/// An entry of a stage's `inputs:` (an artifact of an earlier stage of the same studio).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputRef {
    pub stage: String,
    pub kind: ArtifactKind,
    pub name: String,
    pub source: SourceRef,
}

/// An `outputs/*.md` or `discovery/*.md` artifact definition.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactDef {
    pub kind: ArtifactKind,
    pub name: String,
    pub file: PathBuf,
    pub location: String,
    pub scope: String,
    pub format: String,
    pub required: bool,
    pub body: String,
    pub front_matter: FrontMatter,
}

/// `## Criteria Guidance`: quoted good and bad examples, quotes stripped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CriteriaGuidance {
    pub good: Vec<String>,
    pub bad: Vec<String>,
}

/// `review-agents-include` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Include {
    pub stage: String,
    pub agents: Vec<String>,
    pub source: SourceRef,
}

/// A stage: the unit hatrack runs.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Studio directory name, when the stage was loaded from inside a studio.
    pub studio: Option<String>,
    /// The directory name (== front-matter `name` in the corpus).
    pub name: String,
    pub dir: PathBuf,
    /// Path of STAGE.md.
    pub file: PathBuf,
    pub front_matter: FrontMatter,
    pub description: String,
    /// The `# Title` of the body.
    pub title: String,
    /// STAGE.md body without front matter, trimmed.
    pub body: String,
    pub hats: Vec<Hat>,
    /// Own agents (sorted by name) then included ones, in `review-agents-include` order.
    pub review_agents: Vec<ReviewAgent>,
    pub gates: Vec<GateKind>,
    pub elaboration: Option<String>,
    pub inputs: Vec<InputRef>,
    pub includes: Vec<Include>,
    pub criteria: Option<CriteriaGuidance>,
    pub completion_signal: Vec<Requirement>,
    /// The completion signal paragraph as written (hard wraps joined).
    pub completion_signal_text: String,
    pub outputs: Vec<ArtifactDef>,
    pub discovery: Vec<ArtifactDef>,
    /// v8 `fix_hats:`: the hats H·AI·K·U runs per review finding. Read and shown, never
    /// run by hatrack (it has no fix loop); names need not appear in `hats:`.
    pub fix_hats: Vec<String>,
    /// v8 `interpretation:` (`lens` or `strict`, as written): shown, not acted on.
    pub interpretation: Option<String>,
    /// `phases/*.md`, sorted: shown, never run.
    pub phases: Vec<Phase>,
    /// The studio's `fix-hats/` (v8, intent-scope findings), by name: shown, never run.
    pub studio_fix_hats: Vec<String>,
    /// Studio-level review agents whose `applies_to:` leaves this stage out, by name.
    pub studio_agents_not_applied: Vec<String>,
    /// Every file read to build this stage, sorted: the input to the definition digest.
    pub source_files: Vec<PathBuf>,
}

/// A studio: an ordered list of stages.
#[derive(Debug, Clone, Serialize)]
pub struct Studio {
    /// Directory name: the stable id.
    pub dir_name: String,
    pub dir: PathBuf,
    pub name: String,
    pub slug: Option<String>,
    pub aliases: Vec<String>,
    pub description: String,
    pub category: String,
    pub front_matter: FrontMatter,
    pub stages: Vec<Stage>,
    /// v8 studio-level `review-agents/`, sorted by name (each stage holds those that apply
    /// to it, as origin `studio`).
    pub review_agents: Vec<ReviewAgent>,
    /// v8 studio-level `fix-hats/`, sorted: shown, never run.
    pub fix_hats: Vec<Hat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Error,
    Warning,
}

/// A problem found while loading or linting, printed as `file:line: error: message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                sev,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), sev, self.message),
        }
    }
}
