//! The completion gate, in one place. The rule (design.md): every mandatory completion-signal
//! requirement met, no MUST-level review check failing, no hat constraint failing, every hat
//! produced at least one artifact. `unknown` counts as not met unless allowed; so does an
//! unstable majority (with `--samples`) unless allowed. A judge's `unmet` is never allowed.
//!
//! Nothing judged opens nothing: every judging step — each hat's constraint judge (named
//! `judge/<hat>` even when the hat has no constraints to judge), each review agent, the
//! completion judge — must rule (`met` or `unmet`, after grounding) on at least one of its
//! requirements, and so must the stage as a whole; otherwise the step (or the stage) is a
//! reason of its own ("nothing was judged"), unless [`GatePolicy::allow_nothing_judged`].
//!
//! Each blocking requirement or hat yields at most one [`Reason`], typed; its `message` is
//! rendered here once, from the data, and never parsed back.

use serde::{Deserialize, Serialize};

use super::{Cause, Judged, Verdict};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatePolicy {
    pub allow_unknown: bool,
    pub allow_unstable: bool,
    /// A judging step (or the whole stage) that ruled on nothing does not block. Off by
    /// default, and no flag sets it: it is for a policy that knowingly gates on less.
    pub allow_nothing_judged: bool,
    /// A `met` on a requirement about the repository grounded only in hats' artifacts does
    /// not block. Off by default, and no flag sets it (a policy file may).
    pub allow_artifact_only: bool,
}

/// The subject of a [`Blocker::NothingJudged`] reason about the whole stage.
pub const STAGE_SUBJECT: &str = "stage";

/// Why one requirement (or hat) keeps the signal from being met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Blocker {
    /// The judge ruled it not met. `cause` is set when the ruling stands on weaker ground
    /// than a grounded "no": its evidence was not exact, or the samples tied. Either way it
    /// blocks, and `--allow-unknown` never covers it.
    Unmet {
        level: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
    /// No grounded ruling; `cause` says why.
    Unknown { level: String, cause: Option<Cause> },
    /// The sampled judges disagreed too much to trust the majority.
    Unstable {
        level: String,
        agree: u32,
        samples: u32,
    },
    /// The judge ruled it met, but every quote that grounds it comes from a hat's own
    /// output, and it is about the repository.
    ArtifactOnly { level: String },
    /// A hat produced no artifact.
    NoArtifact,
    /// A judging step ruled on none of its `requirements` (0: it has none to rule on), or,
    /// with the subject [`STAGE_SUBJECT`], nothing in the whole stage was ruled on.
    NothingJudged { requirements: u32 },
}

impl Blocker {
    /// The word report.json's `kind` uses (`unmet`, `unknown`, `unstable`, `no-artifact`,
    /// `nothing-judged`), for formats that label a failure with it.
    pub fn kind(&self) -> &'static str {
        match self {
            Blocker::Unmet { .. } => "unmet",
            Blocker::Unknown { .. } => "unknown",
            Blocker::Unstable { .. } => "unstable",
            Blocker::ArtifactOnly { .. } => "artifact-only",
            Blocker::NoArtifact => "no-artifact",
            Blocker::NothingJudged { .. } => "nothing-judged",
        }
    }
}

/// One line of "why the signal is not met".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The requirement id, or the hat's step id for [`Blocker::NoArtifact`].
    pub subject: String,
    #[serde(flatten)]
    pub blocker: Blocker,
    /// The sentence every report shows.
    pub message: String,
}

/// How many requirements ended in each verdict (each counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub met: u32,
    pub unmet: u32,
    pub unknown: u32,
    /// Of `met`: those grounded only in a hat's own output although they are about the
    /// repository. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub artifact_only: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The gate's decision and everything the reports say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateDecision {
    pub signal_met: bool,
    pub counts: VerdictCounts,
    /// Requirements and hats that can block the signal.
    pub blocking_total: u32,
    /// One per blocking requirement or hat that is not satisfied.
    pub reasons: Vec<Reason>,
    /// Gate kinds (`external`, `await`, `ask`) that still need a person.
    pub needs_human: Vec<String>,
    pub policy: GatePolicy,
    /// The stage has no completion signal (the v8 layout): the gate ruled on the hats'
    /// constraints, the review checks and the hats' artifacts only.
    pub no_completion_signal: bool,
}

/// The words every report format uses for a stage without a completion signal.
pub const NO_SIGNAL_NOTE: &str = "no completion signal: gated on hat constraints and review checks";

impl GateDecision {
    pub fn exit_code(&self) -> i32 {
        if self.signal_met {
            0
        } else {
            1
        }
    }

    /// Marks a decision taken for a stage without a completion signal.
    pub fn without_completion_signal(mut self) -> GateDecision {
        self.no_completion_signal = true;
        self
    }

    /// The one sentence a person reads first.
    pub fn summary(&self) -> String {
        if self.no_completion_signal {
            return self.summary_without_signal();
        }
        match (self.signal_met, self.needs_human.is_empty()) {
            (true, true) => "The completion signal is met.".to_string(),
            (true, false) => format!(
                "The completion signal is met; the stage's `{}` gate still requires a human approval.",
                self.needs_human.join(", ")
            ),
            (false, _) => format!(
                "The completion signal is not met: {} of {} blocking requirement(s), check(s) or hat(s) fail.",
                self.reasons.len(),
                self.blocking_total
            ),
        }
    }
}

impl GateDecision {
    /// [`GateDecision::summary`] for a stage without a completion signal: it says so first,
    /// since "the signal is met" would claim something the stage never defined.
    fn summary_without_signal(&self) -> String {
        let mut first = NO_SIGNAL_NOTE.to_string();
        first[..1].make_ascii_uppercase();
        if !self.signal_met {
            return format!(
                "{first}; {} of {} blocking constraint(s), check(s) or hat(s) fail.",
                self.reasons.len(),
                self.blocking_total
            );
        }
        if self.needs_human.is_empty() {
            format!("{first}; all of them hold.")
        } else {
            format!(
                "{first}; all of them hold, and the stage's `{}` gate still requires a human approval.",
                self.needs_human.join(", ")
            )
        }
    }
}

/// A hat and whether it produced any artifact.
pub struct HatOutput<'a> {
    pub step: &'a str,
    pub artifacts: usize,
}

/// Decides the gate. `judging` names every step that must rule on something: each hat's
/// constraint judge (whether or not the hat has constraints), each review agent and the
/// completion judge, as their requirements' `judged_by` names them. `needs_human` names the
/// stage's gate kinds that still need a person once hatrack is done (`external`, `await`,
/// `ask`: the definition's typed gate kinds say which).
pub fn decide(
    judged: &[Judged],
    hats: &[HatOutput<'_>],
    judging: &[String],
    needs_human: &[String],
    policy: GatePolicy,
) -> GateDecision {
    let mut counts = VerdictCounts::default();
    let mut reasons = Vec::new();
    let mut blocking_total = 0u32;
    for r in judged {
        match r.verdict {
            Verdict::Met => {
                counts.met = counts.met.saturating_add(1);
                if r.artifact_only() {
                    counts.artifact_only = counts.artifact_only.saturating_add(1);
                }
            }
            Verdict::Unmet => counts.unmet = counts.unmet.saturating_add(1),
            Verdict::Unknown => counts.unknown = counts.unknown.saturating_add(1),
        }
        if !r.blocks() {
            continue;
        }
        blocking_total = blocking_total.saturating_add(1);
        if let Some(blocker) = blocker(r, policy) {
            let message = message(r, &blocker);
            reasons.push(Reason {
                subject: r.id.clone(),
                blocker,
                message,
            });
        }
    }
    for hat in hats {
        blocking_total = blocking_total.saturating_add(1);
        if hat.artifacts == 0 {
            reasons.push(Reason {
                subject: hat.step.to_string(),
                blocker: Blocker::NoArtifact,
                message: format!("{} produced no artifact", hat.step),
            });
        }
    }
    if !policy.allow_nothing_judged {
        for reason in nothing_judged(judged, judging, &reasons) {
            blocking_total = blocking_total.saturating_add(1);
            reasons.push(reason);
        }
    }
    GateDecision {
        signal_met: reasons.is_empty(),
        counts,
        blocking_total,
        reasons,
        needs_human: needs_human.to_vec(),
        policy,
        no_completion_signal: false,
    }
}

/// A ruling: `met` or `unmet` after grounding (an `unknown` rules on nothing).
fn ruled(r: &Judged) -> bool {
    matches!(r.verdict, Verdict::Met | Verdict::Unmet)
}

/// A reason for each judging step that ruled on nothing and is not already blocking through
/// one of its requirements, and one for the stage when nothing at all was ruled on and
/// nothing else blocks.
fn nothing_judged(judged: &[Judged], judging: &[String], earlier: &[Reason]) -> Vec<Reason> {
    let mut out = Vec::new();
    for step in judging {
        let mine: Vec<&Judged> = judged.iter().filter(|r| &r.judged_by == step).collect();
        let already = mine
            .iter()
            .any(|r| earlier.iter().any(|e| e.subject == r.id));
        if mine.iter().any(|r| ruled(r)) || already {
            continue;
        }
        let requirements = u32::try_from(mine.len()).unwrap_or(u32::MAX);
        let message = if mine.is_empty() {
            format!("{step}: nothing was judged (it has no requirements to rule on)")
        } else {
            format!(
                "{step}: nothing was judged (none of its {requirements} requirement(s) got a met or unmet ruling)"
            )
        };
        out.push(Reason {
            subject: step.clone(),
            blocker: Blocker::NothingJudged { requirements },
            message,
        });
    }
    if !judged.iter().any(ruled) && earlier.is_empty() && out.is_empty() {
        let requirements = u32::try_from(judged.len()).unwrap_or(u32::MAX);
        out.push(Reason {
            subject: STAGE_SUBJECT.to_string(),
            blocker: Blocker::NothingJudged { requirements },
            message: format!(
                "nothing was judged: none of the stage's {requirements} requirement(s) got a met or unmet ruling"
            ),
        });
    }
    out
}

/// The one blocker of a blocking requirement, if any: unmet, else unknown, else unstable.
fn blocker(r: &Judged, policy: GatePolicy) -> Option<Blocker> {
    let level = r.level.clone();
    match r.verdict {
        Verdict::Unmet => {
            return Some(Blocker::Unmet {
                level,
                cause: r.cause.clone(),
            })
        }
        Verdict::Unknown if !policy.allow_unknown => {
            return Some(Blocker::Unknown {
                level,
                cause: r.cause.clone(),
            })
        }
        Verdict::Met if r.artifact_only() && !policy.allow_artifact_only => {
            return Some(Blocker::ArtifactOnly { level })
        }
        _ => {}
    }
    match r.agreement {
        Some(a) if a.unstable && !policy.allow_unstable => Some(Blocker::Unstable {
            level,
            agree: a.agree,
            samples: a.samples,
        }),
        _ => None,
    }
}

fn message(r: &Judged, blocker: &Blocker) -> String {
    let short = short_text(&r.text);
    match blocker {
        Blocker::Unmet { level, cause: None } => format!("{} ({level}) is unmet: {short}", r.id),
        Blocker::Unmet {
            level,
            cause: Some(cause),
        } => format!("{} ({level}) is unmet ({}): {short}", r.id, cause.short()),
        Blocker::Unknown { level, cause } => {
            let why = cause.as_ref().map_or("no ruling", Cause::short);
            let unstable = match r.agreement {
                Some(a) if a.unstable => {
                    format!("; unstable: {}/{} samples agree", a.agree, a.samples)
                }
                _ => String::new(),
            };
            format!("{} ({level}) is unknown ({why}{unstable}): {short}", r.id)
        }
        Blocker::Unstable {
            level,
            agree,
            samples,
        } => format!(
            "{} ({level}) is unstable: {agree}/{samples} samples agree: {short}",
            r.id
        ),
        Blocker::ArtifactOnly { level } => format!(
            "{} ({level}) is met but grounded only in a hat's own output: {short}",
            r.id
        ),
        Blocker::NoArtifact => format!("{} produced no artifact", r.id),
        Blocker::NothingJudged { .. } => format!("{}: nothing was judged", r.id),
    }
}

fn short_text(text: &str) -> String {
    let mut t: String = text.chars().take(100).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Agreement, RequirementKind};

    fn req(id: &str, kind: RequirementKind, level: &str, verdict: Verdict) -> Judged {
        Judged {
            id: id.into(),
            kind,
            level: level.into(),
            mandatory: matches!(level, "MUST" | "MUST NOT" | "implicit"),
            text: "text".into(),
            source: "f:1".into(),
            judged_by: "signal".into(),
            about: crate::verdict::Subject::Repository,
            model: "m".into(),
            verdict,
            claimed: verdict,
            cause: (verdict == Verdict::Unknown).then_some(Cause::JudgeUndecided),
            finding: String::new(),
            severity: None,
            evidence: vec![],
            agreement: None,
        }
    }

    fn hat(artifacts: usize) -> HatOutput<'static> {
        HatOutput {
            step: "hat/sre",
            artifacts,
        }
    }

    #[test]
    fn all_met_with_an_external_gate_says_a_human_must_approve() {
        let d = decide(
            &[req(
                "signal/1",
                RequirementKind::Signal,
                "MUST",
                Verdict::Met,
            )],
            &[hat(1)],
            &[],
            &["external".into()],
            GatePolicy::default(),
        );
        assert!(d.signal_met);
        assert_eq!(d.exit_code(), 0);
        assert!(d.summary().contains("human approval"));
    }

    #[test]
    fn unknown_blocks_unless_allowed_and_should_level_checks_do_not_block() {
        let reqs = [
            req(
                "signal/1",
                RequirementKind::Signal,
                "implicit",
                Verdict::Unknown,
            ),
            req(
                "x/check/1",
                RequirementKind::ReviewCheck,
                "SHOULD",
                Verdict::Unmet,
            ),
        ];
        let d = decide(&reqs, &[hat(1)], &[], &[], GatePolicy::default());
        assert!(!d.signal_met);
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(
            d.reasons[0].blocker,
            Blocker::Unknown {
                level: "implicit".into(),
                cause: Some(Cause::JudgeUndecided)
            }
        );
        assert_eq!(d.blocking_total, 2);
        let allowed = GatePolicy {
            allow_unknown: true,
            ..GatePolicy::default()
        };
        assert!(decide(&reqs, &[hat(1)], &[], &[], allowed).signal_met);
    }

    #[test]
    fn an_unmet_whatever_its_cause_blocks_and_allow_unknown_does_not_cover_it() {
        let mut r = req("signal/1", RequirementKind::Signal, "MUST", Verdict::Unmet);
        r.claimed = Verdict::Unmet;
        r.cause = Some(Cause::Ungrounded {
            claimed: Verdict::Unmet,
        });
        let mut tied = req("signal/2", RequirementKind::Signal, "MUST", Verdict::Unmet);
        tied.cause = Some(Cause::SamplesTied);
        let policy = GatePolicy {
            allow_unknown: true,
            allow_unstable: true,
            ..GatePolicy::default()
        };
        let d = decide(&[r, tied], &[hat(1)], &[], &[], policy);
        assert!(!d.signal_met);
        assert_eq!(d.reasons.len(), 2);
        assert!(
            d.reasons[0]
                .message
                .contains("is unmet (evidence not exact)"),
            "{}",
            d.reasons[0].message
        );
        assert!(d.reasons[1].message.contains("is unmet (the samples tied)"));
    }

    #[test]
    fn an_unknown_and_unstable_requirement_is_counted_once() {
        let mut r = req(
            "signal/2",
            RequirementKind::Signal,
            "MUST",
            Verdict::Unknown,
        );
        r.agreement = Some(Agreement {
            agree: 2,
            samples: 5,
            unstable: true,
        });
        let d = decide(&[r], &[hat(1)], &[], &[], GatePolicy::default());
        assert_eq!(d.reasons.len(), 1);
        assert!(d.reasons[0].message.contains("unstable: 2/5"));
        assert!(d.summary().contains("1 of 2"));
    }

    #[test]
    fn a_failing_constraint_or_a_hat_without_artifacts_blocks() {
        let d = decide(
            &[req(
                "sre/anti-pattern/1",
                RequirementKind::HatConstraint,
                "SHOULD",
                Verdict::Unmet,
            )],
            &[hat(0)],
            &[],
            &[],
            GatePolicy::default(),
        );
        assert_eq!(d.reasons.len(), 2);
        assert_eq!(d.reasons[1].blocker, Blocker::NoArtifact);
        assert_eq!(d.exit_code(), 1);
    }

    #[test]
    fn without_a_signal_the_summary_says_what_was_gated() {
        let met = decide(
            &[req(
                "x/anti-pattern/1",
                RequirementKind::HatConstraint,
                "MUST",
                Verdict::Met,
            )],
            &[hat(1)],
            &[],
            &["ask".into()],
            GatePolicy::default(),
        )
        .without_completion_signal();
        assert!(met.signal_met);
        assert_eq!(met.summary(), "No completion signal: gated on hat constraints and review checks; all of them hold, and the stage's `ask` gate still requires a human approval.");
        let unmet = decide(
            &[req(
                "x/anti-pattern/1",
                RequirementKind::HatConstraint,
                "MUST",
                Verdict::Met,
            )],
            &[hat(0)],
            &[],
            &[],
            GatePolicy::default(),
        )
        .without_completion_signal();
        assert_eq!(unmet.exit_code(), 1);
        assert!(unmet
            .summary()
            .ends_with("; 1 of 2 blocking constraint(s), check(s) or hat(s) fail."));
    }

    #[test]
    fn nothing_judged_opens_nothing_unless_the_policy_says_so() {
        // A stage with no requirement at all.
        let d = decide(&[], &[hat(1)], &[], &[], GatePolicy::default());
        assert!(!d.signal_met);
        assert_eq!(d.reasons[0].subject, STAGE_SUBJECT);
        assert!(d.reasons[0].message.starts_with("nothing was judged"));
        // Every ruling unknown, and --allow-unknown: still closed.
        let unknown = [req(
            "signal/1",
            RequirementKind::Signal,
            "MUST",
            Verdict::Unknown,
        )];
        let allow_unknown = GatePolicy {
            allow_unknown: true,
            ..GatePolicy::default()
        };
        let d = decide(&unknown, &[hat(1)], &["signal".into()], &[], allow_unknown);
        assert!(!d.signal_met);
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(d.reasons[0].subject, "signal");
        assert_eq!(
            d.reasons[0].blocker,
            Blocker::NothingJudged { requirements: 1 }
        );
        // A judging step with nothing to rule on (a hat without constraints), while others
        // ruled.
        let met = [req(
            "signal/1",
            RequirementKind::Signal,
            "MUST",
            Verdict::Met,
        )];
        let judging = ["signal".to_string(), "judge/sre".to_string()];
        let d = decide(&met, &[hat(1)], &judging, &[], GatePolicy::default());
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(d.reasons[0].subject, "judge/sre");
        assert_eq!(
            d.reasons[0].blocker,
            Blocker::NothingJudged { requirements: 0 }
        );
        assert_eq!(d.blocking_total, 3);
        let allowed = GatePolicy {
            allow_nothing_judged: true,
            ..GatePolicy::default()
        };
        assert!(decide(&met, &[hat(1)], &judging, &[], allowed).signal_met);
        assert!(decide(&[], &[hat(1)], &[], &[], allowed).signal_met);
    }
}
