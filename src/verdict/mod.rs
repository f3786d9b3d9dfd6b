//! Verdicts as typed data, between `run/` (which asks the judges) and `report/` (which
//! renders). A verdict here carries its evidence, where each quote was found, and — when
//! hatrack changed what the judge claimed — the [`Cause`]. The [`gate`] decides on these
//! values alone, so every report and the exit code read the same decision.
//!
//! - [`grounding`]: does a quote mean something, and does it occur in the source it names?
//! - [`markers`]: hatrack's own marks in what a step is shown, never evidence.
//! - [`gate`]: is the stage's completion signal met, and if not, which requirement blocks it?
//!
//! **What a requirement is about** ([`Subject`]) decides what evidence a `met` needs. A
//! requirement is about **what the hats produced** when it is a hat constraint (its
//! constraint judge rules on what that hat wrote), or when its text names one of the stage's
//! hats (`SRE MUST have verified…`, `the pipeline engineer's deployment`) or a document a hat
//! writes ([`HAT_OUTPUT_WORDS`]: plan, runbook, playbook, assessment, checklist, write-up,
//! artifact): such a `met` may rest on a hat's artifact. Every other review check and
//! completion-signal sentence is about **the repository** (`Pipeline is deployed with retry
//! policies`): its `met` needs at least one quote from a repository file — a bound input, a
//! file a step read with `read_file`, or an artifact quote whose words also occur in one.
//! A `met` grounded only in a hat's own output is kept, counted and shown as such
//! ([`Cause::ArtifactOnly`]: "grounded only in a hat's own output") and blocks unless the
//! gate's policy allows it.

pub mod gate;
pub mod grounding;
pub mod markers;

pub use grounding::fold_whitespace;

use serde::{Deserialize, Serialize};

/// A judge's ruling on one requirement, after grounding.
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

    /// A judge's word: `pass`/`met`, `fail`/`unmet`; anything else is `unknown`.
    pub fn from_word(word: &str) -> Verdict {
        match word {
            "pass" | "met" => Verdict::Met,
            "fail" | "unmet" => Verdict::Unmet,
            _ => Verdict::Unknown,
        }
    }
}

/// Words that name a document a hat writes: a requirement naming one is about the hats'
/// output (whole words, any case).
pub const HAT_OUTPUT_WORDS: &[&str] = &[
    "plan",
    "plans",
    "runbook",
    "runbooks",
    "playbook",
    "playbooks",
    "assessment",
    "assessments",
    "checklist",
    "checklists",
    "writeup",
    "artifact",
    "artifacts",
];

/// What a requirement is about, which decides what evidence its `met` needs (see the module
/// docs for the rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    /// The repository under review: a `met` needs a quote from a repository file.
    #[default]
    Repository,
    /// What the hats produced: a `met` may rest on a hat's artifact.
    HatOutput,
}

impl Subject {
    /// The subject of a requirement of `kind` with this `text`, in a stage whose hats are
    /// `hats` (their names, e.g. `pipeline-engineer`, `sre`).
    pub fn of(kind: RequirementKind, text: &str, hats: &[String]) -> Subject {
        if kind == RequirementKind::HatConstraint {
            return Subject::HatOutput;
        }
        let words = |t: &str| -> Vec<String> {
            t.replace("write-up", "writeup")
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect()
        };
        let text = words(text);
        let names_a_hat = hats.iter().any(|h| {
            let name = words(h);
            !name.is_empty() && text.windows(name.len()).any(|w| w == name.as_slice())
        });
        let names_a_document = text.iter().any(|w| HAT_OUTPUT_WORDS.contains(&w.as_str()));
        if names_a_hat || names_a_document {
            Subject::HatOutput
        } else {
            Subject::Repository
        }
    }

    /// `about the repository`, `about what the hats produced`.
    pub fn describe(self) -> &'static str {
        match self {
            Subject::Repository => "about the repository",
            Subject::HatOutput => "about what the hats produced",
        }
    }

    /// What a `met` on it needs, in a few words.
    pub fn evidence_rule(self) -> &'static str {
        match self {
            Subject::Repository => "a met needs a quote from a repository file",
            Subject::HatOutput => "a met may rest on a hat's artifact",
        }
    }
}

/// What a step of the stage does: produce (a hat) or judge (the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// A producing hat: writes artifacts, judges nothing.
    Hat,
    /// Judges one hat's constraints (never the hat itself).
    ConstraintJudge,
    Review,
    Signal,
}

impl StepKind {
    /// Hats produce, every other step judges.
    pub fn is_judge(self) -> bool {
        self != StepKind::Hat
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// The model gave a schema-valid answer.
    Answered,
    /// Every attempt broke the schema; the step's verdicts are `unknown`.
    Unparseable,
    /// Checks decided every requirement of the step before any request: it was not asked.
    DecidedByChecks,
    /// The step's next request could not fit the model's context window (estimated before
    /// sending, or refused by the provider); the step's verdicts are `unknown`, the rest of
    /// the stage ran.
    ContextExceeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementKind {
    /// An anti-pattern (MUST / MUST NOT) of a hat, judged by that hat's constraint judge.
    HatConstraint,
    /// A review agent's check.
    ReviewCheck,
    /// A completion-signal sentence, ruled on by the completion judge.
    Signal,
}

/// What a grounded quote was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceKind {
    /// A file of the repository under review (a bound input).
    Input,
    /// An artifact an agent (hat) of this run wrote.
    Artifact { hat: String },
    /// A finding of a check (a linter's or a test's result, or a built-in probe's), about
    /// `path` at `line` of the repository when it names one.
    Check {
        tool: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
}

impl SourceKind {
    /// `quoted from the repository`, `quoted from the sre's artifact`.
    pub fn provenance(&self) -> String {
        match self {
            SourceKind::Input => "quoted from the repository".to_string(),
            SourceKind::Artifact { hat } => format!("quoted from the {hat}'s artifact"),
            SourceKind::Check { tool, .. } => format!("a finding of {tool} (a check)"),
        }
    }
}

/// Why a quote grounds nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Ungrounded {
    /// Too short, or only punctuation: it could occur anywhere.
    Meaningless {
        words: usize,
        chars: usize,
        min_words: usize,
        min_chars: usize,
    },
    /// The named source is not one this step was shown (names must match exactly).
    UnknownSource,
    /// Two sources shown to the step carry this name.
    AmbiguousSource,
    /// The quote does not occur in the named source (whitespace folded, at word boundaries).
    NotFound,
    /// The quote holds one of hatrack's own marks (a BEGIN/END frame, a truncation or
    /// line-cut note), which are never evidence.
    HatrackMark,
    /// The same short quote already grounds another requirement's verdict (`by`): distinct
    /// requirements need distinct evidence.
    Reused { by: String, shared_min_words: usize },
}

impl Ungrounded {
    pub fn describe(&self, source: &str) -> String {
        match self {
            Ungrounded::Meaningless {
                words,
                chars,
                min_words,
                min_chars,
            } => format!(
                "the quote from {source:?} is too short to mean anything ({words} word(s), {chars} character(s); at least {min_words} words and {min_chars} characters are needed)"
            ),
            Ungrounded::UnknownSource => format!(
                "{source:?} is not an input or artifact shown to this step (name it exactly as its BEGIN marker does)"
            ),
            Ungrounded::AmbiguousSource => {
                format!("{source:?} names more than one source shown to this step")
            }
            Ungrounded::NotFound => format!("the quote does not occur in {source}"),
            Ungrounded::Reused {
                by,
                shared_min_words,
            } => format!(
                "the same words already ground {by}: a quote of fewer than {shared_min_words} words grounds one requirement only (distinct requirements need distinct evidence)"
            ),
            Ungrounded::HatrackMark => {
                "the quote holds one of hatrack's own marks (a BEGIN/END line, a truncation or line-cut note), which are never evidence".to_string()
            }
        }
    }
}

/// One quote offered as evidence, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The source as the judge named it.
    pub source: String,
    pub quote: String,
    /// What the quote was found in; `None` when it grounds nothing.
    pub found_in: Option<SourceKind>,
    /// The 1-based line of the source (as shown to the step) where the quote starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Why it grounds nothing.
    pub problem: Option<Ungrounded>,
    /// For a quote found in an artifact: a repository file whose text holds the same words
    /// (the hat quoted the repository), which makes it repository evidence too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_copy: Option<String>,
}

impl Evidence {
    pub fn grounded(&self) -> bool {
        self.found_in.is_some()
    }

    /// A grounded quote of repository text: found in a repository file, or in an artifact
    /// whose words a repository file holds too.
    pub fn from_repository(&self) -> bool {
        matches!(self.found_in, Some(SourceKind::Input)) || self.repository_copy.is_some()
    }
}

/// Why hatrack's verdict is not simply what the judge claimed, why it is `unknown`, or why
/// a judge's ruling stands on weaker ground than it claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "kebab-case")]
pub enum Cause {
    /// The judge cited evidence that does not ground (each quote says why). A claimed `met`
    /// became `unknown`; a claimed `unmet` stays `unmet` (verdicts fail closed).
    Ungrounded { claimed: Verdict },
    /// The judge said `met` and cited nothing.
    NoEvidence,
    /// The step gave no schema-valid answer for this requirement.
    NoAnswer { step: String },
    /// The step's request could not fit the model's context window (estimated before it was
    /// sent, or refused by the provider as too long), so the step gave no answer.
    ContextExceeded { step: String },
    /// The judge itself answered `unknown`.
    JudgeUndecided,
    /// With `--samples`, the most frequent verdicts tied: `unmet` when `unmet` was among
    /// them, else `unknown`.
    SamplesTied,
    /// A `met` on a requirement about the repository whose grounded quotes all come from
    /// hats' artifacts: it stays `met`, is counted as such, and blocks unless allowed.
    ArtifactOnly,
    /// An error-level finding of a check mapped to the requirement with `veto`: unmet,
    /// whatever the judge `claimed` (`None`: no judge was asked, the check decided it before
    /// any request); `findings` names each (as judges are shown them).
    Check {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed: Option<Verdict>,
        findings: Vec<String>,
    },
    /// The judge said `met` while an error-level finding of a check mapped to the
    /// requirement (as evidence) is open: refused, as ungrounded evidence is.
    OpenFinding { findings: Vec<String> },
}

impl Cause {
    /// A few words for reasons and table cells.
    pub fn short(&self) -> &'static str {
        match self {
            Cause::Ungrounded {
                claimed: Verdict::Unmet,
            } => "evidence not exact",
            Cause::Ungrounded { .. } => "ungrounded evidence",
            Cause::NoEvidence => "no evidence cited",
            Cause::NoAnswer { .. } => "no answer",
            Cause::ContextExceeded { .. } => "context exceeded",
            Cause::JudgeUndecided => "the judge could not tell",
            Cause::SamplesTied => "the samples tied",
            Cause::ArtifactOnly => "grounded only in a hat's own output",
            Cause::Check { .. } => "vetoed by a check",
            Cause::OpenFinding { .. } => "a check's finding is open",
        }
    }

    /// A sentence for the report, with the evidence problems spelled out.
    pub fn describe(&self, evidence: &[Evidence]) -> String {
        match self {
            Cause::Ungrounded { claimed } => {
                let problems: Vec<String> = evidence
                    .iter()
                    .filter_map(|e| e.problem.as_ref().map(|p| p.describe(&e.source)))
                    .collect();
                if *claimed == Verdict::Unmet {
                    format!(
                        "unmet (evidence not exact): the judge's unmet stands whatever its evidence ({})",
                        problems.join("; ")
                    )
                } else {
                    format!(
                        "downgraded from {} to unknown: ungrounded evidence ({})",
                        claimed.as_str(),
                        problems.join("; ")
                    )
                }
            }
            Cause::NoEvidence => "downgraded from met to unknown: no evidence was cited".into(),
            Cause::NoAnswer { step } => {
                format!("{step} gave no usable answer for this requirement")
            }
            Cause::ContextExceeded { step } => format!(
                "context exceeded: {step}'s request did not fit the model's context window, so it gave no answer ({CONTEXT_HINT})"
            ),
            Cause::JudgeUndecided => "the judge answered unknown".into(),
            Cause::SamplesTied => {
                "the samples tied: a tie that includes unmet is unmet, any other tie is unknown"
                    .into()
            }
            Cause::ArtifactOnly => "met, but grounded only in a hat's own output: this requirement is about the repository, so a met needs at least one quote from a repository file (a bound input, or a file read with read_file)".into(),
            Cause::Check { claimed, findings } => format!(
                "unmet by a check, {}: {} {} an error-level finding of a check mapped to this requirement with on_finding = \"veto\"",
                match claimed {
                    Some(v) => format!("whatever the judge says (it said {})", v.as_str()),
                    None => "decided before any request (no judge was asked)".to_string(),
                },
                findings.join(", "),
                if findings.len() == 1 { "is" } else { "are" }
            ),
            Cause::OpenFinding { findings } => format!(
                "downgraded from met to unknown: {} {} an open error-level finding of a check mapped to this requirement; a met is refused while it is open",
                findings.join(", "),
                if findings.len() == 1 { "is" } else { "are" }
            ),
        }
    }
}

/// What to do about a step whose request did not fit the model's context window.
pub const CONTEXT_HINT: &str = "quote less with [limits] max_file_bytes / max_input_bytes / max_artifact_bytes, lower [model] max_tokens, or set [model] context_tokens to the model's real window";

/// A verdict as the completion judge is shown it: see [`Judged::shown_verdict`].
pub fn shown_verdict(verdict: Verdict, cause: Option<&Cause>) -> Verdict {
    match cause {
        Some(Cause::Ungrounded { .. }) => Verdict::Unknown,
        _ => verdict,
    }
}

/// With `--samples N`: how many samples agreed with the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub agree: u32,
    pub samples: u32,
    /// Below the stability threshold.
    pub unstable: bool,
}

/// One requirement and the ruling on it: the working state the gate and the reports read.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub id: String,
    pub kind: RequirementKind,
    /// `MUST`, `MUST NOT`, `implicit`, …
    pub level: String,
    /// Blocks the signal when not met.
    pub mandatory: bool,
    pub text: String,
    /// `file:line` of the definition.
    pub source: String,
    /// The step that judged it (`judge/sre`, `review/reliability`, `signal`).
    pub judged_by: String,
    /// What it is about: what evidence its `met` needs.
    pub about: Subject,
    /// The model that judged it.
    pub model: String,
    pub verdict: Verdict,
    pub claimed: Verdict,
    pub cause: Option<Cause>,
    pub finding: String,
    pub severity: Option<String>,
    pub evidence: Vec<Evidence>,
    pub agreement: Option<Agreement>,
}

impl Judged {
    /// A MUST review check `id` about the repository, judged `verdict` by `review/x` with no
    /// finding or evidence: where a test's rulings start.
    #[cfg(test)]
    pub(crate) fn review_check(id: &str, verdict: Verdict) -> Judged {
        Judged {
            id: id.into(),
            kind: RequirementKind::ReviewCheck,
            level: "MUST".into(),
            mandatory: true,
            text: "t".into(),
            source: "f:1".into(),
            judged_by: "review/x".into(),
            about: Subject::Repository,
            model: "m".into(),
            verdict,
            claimed: verdict,
            cause: None,
            finding: String::new(),
            severity: None,
            evidence: Vec::new(),
            agreement: None,
        }
    }

    /// Whether this requirement can block the signal — decided here once; the gate and every
    /// report format (json `blocking`, md/html "(blocking)"/"(advisory)", junit failure vs
    /// skipped, SARIF `error` vs `warning`/`note`, annotations, step summary) render this.
    ///
    /// Every hat constraint blocks, whatever its level: it names an anti-pattern of the hat's
    /// own work, and the stage's rule (design.md) is that no hat constraint fails — so a
    /// failing SHOULD constraint blocks and is shown as blocking. Review checks and
    /// completion-signal sentences block at MUST level only (MUST, MUST NOT, SHALL,
    /// REQUIRED, implicit); at SHOULD / MAY they are advisory and never block.
    pub fn blocks(&self) -> bool {
        match self.kind {
            RequirementKind::HatConstraint => true,
            RequirementKind::ReviewCheck | RequirementKind::Signal => self.mandatory,
        }
    }

    /// The verdict as grounding supports it, as the completion judge is shown it: a ruling
    /// whose evidence did not ground reads `unknown` there (the gate still counts a judge's
    /// `unmet` as unmet).
    pub fn shown_verdict(&self) -> Verdict {
        shown_verdict(self.verdict, self.cause.as_ref())
    }

    /// A `met` grounded only in a hat's own output.
    pub fn artifact_only(&self) -> bool {
        self.verdict == Verdict::Met && self.cause == Some(Cause::ArtifactOnly)
    }

    /// The report's note: the cause as a sentence.
    pub fn note(&self) -> Option<String> {
        self.cause.as_ref().map(|c| c.describe(&self.evidence))
    }
}
