//! The completion gate: is the stage's completion signal met? The rule (design.md): every
//! mandatory completion-signal requirement met, no MUST-level review check failing, no hat
//! constraint failing, every hat produced at least one artifact. `unknown` counts as not
//! met unless allowed; so does an unstable majority (with `--samples`).

use crate::report::{
    Outcome, RequirementKind, RequirementReport, StepKind, StepReport, Verdict, VerdictCounts,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct GatePolicy {
    pub allow_unknown: bool,
    pub allow_unstable: bool,
}

/// Whether a requirement of this kind and level can block the signal.
fn blocks(r: &RequirementReport) -> bool {
    match r.kind {
        RequirementKind::HatConstraint => true,
        RequirementKind::ReviewCheck | RequirementKind::Signal => r.mandatory,
    }
}

pub fn decide(
    requirements: &[RequirementReport],
    steps: &[StepReport],
    gates: &[String],
    policy: GatePolicy,
) -> Outcome {
    let mut counts = VerdictCounts::default();
    let mut reasons = Vec::new();
    for r in requirements {
        match r.verdict {
            Verdict::Met => counts.met += 1,
            Verdict::Unmet => counts.unmet += 1,
            Verdict::Unknown => counts.unknown += 1,
        }
        if !blocks(r) {
            continue;
        }
        let short = short_text(&r.text);
        match r.verdict {
            Verdict::Unmet => reasons.push(format!("{} ({}) is unmet: {short}", r.id, r.level)),
            Verdict::Unknown if !policy.allow_unknown => reasons.push(format!(
                "{} ({}) is unknown ({}): {short}",
                r.id,
                r.level,
                unknown_cause(r)
            )),
            _ => {}
        }
        if let Some(a) = r.agreement {
            if a.unstable && !policy.allow_unstable && r.verdict != Verdict::Unmet {
                reasons.push(format!(
                    "{} is unstable: {}/{} samples agree",
                    r.id, a.agree, a.samples
                ));
            }
        }
    }
    for s in steps.iter().filter(|s| s.kind == StepKind::Hat) {
        if s.artifacts.is_empty() {
            reasons.push(format!("{} produced no artifact", s.id));
        }
    }
    let signal_met = reasons.is_empty();
    let needs_human: Vec<&str> = gates
        .iter()
        .map(String::as_str)
        .filter(|g| matches!(*g, "external" | "await" | "ask"))
        .collect();
    let summary = match (signal_met, needs_human.is_empty()) {
        (true, true) => "The completion signal is met.".to_string(),
        (true, false) => format!(
            "The completion signal is met; the stage's `{}` gate still requires a human approval.",
            needs_human.join(", ")
        ),
        (false, _) => format!(
            "The completion signal is not met: {} of {} blocking requirement(s) or check(s) fail.",
            reasons.len(),
            requirements.iter().filter(|r| blocks(r)).count()
                + steps.iter().filter(|s| s.kind == StepKind::Hat).count()
        ),
    };
    Outcome {
        signal_met,
        exit_code: if signal_met { 0 } else { 1 },
        summary,
        allow_unknown: policy.allow_unknown,
        counts,
        reasons,
        human_approval_required: !needs_human.is_empty(),
    }
}

/// Why a requirement ended up `unknown`, in a few words.
fn unknown_cause(r: &RequirementReport) -> &'static str {
    match r.note.as_deref() {
        Some(n) if n.contains("ungrounded") => "ungrounded evidence",
        Some(n) if n.contains("no evidence") => "no evidence cited",
        Some(n) if n.contains("no usable answer") => "no answer",
        _ => "the judge could not tell",
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
    use crate::report::{StepStatus, TokenUsage};

    fn req(id: &str, kind: RequirementKind, level: &str, verdict: Verdict) -> RequirementReport {
        RequirementReport {
            id: id.into(),
            kind,
            level: level.into(),
            mandatory: matches!(level, "MUST" | "MUST NOT" | "implicit"),
            text: "text".into(),
            source: "f:1".into(),
            judged_by: "signal".into(),
            verdict,
            claimed: verdict,
            severity: None,
            finding: String::new(),
            evidence: vec![],
            note: None,
            agreement: None,
        }
    }

    fn hat_step(artifacts: usize) -> StepReport {
        StepReport {
            id: "hat/sre".into(),
            kind: StepKind::Hat,
            name: "sre".into(),
            status: StepStatus::Answered,
            attempts: 1,
            usage: TokenUsage::default(),
            duration_ms: 0,
            source: "live".into(),
            summary: None,
            artifacts: (0..artifacts)
                .map(|i| crate::report::ArtifactReport {
                    path: format!("a{i}"),
                    bytes: 1,
                    sha256: String::new(),
                })
                .collect(),
            errors: vec![],
        }
    }

    #[test]
    fn all_met_with_an_external_gate_says_a_human_must_approve() {
        let o = decide(
            &[req(
                "signal/1",
                RequirementKind::Signal,
                "MUST",
                Verdict::Met,
            )],
            &[hat_step(1)],
            &["external".into()],
            GatePolicy::default(),
        );
        assert!(o.signal_met);
        assert_eq!(o.exit_code, 0);
        assert!(o.human_approval_required);
        assert!(o.summary.contains("human approval"));
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
        let o = decide(&reqs, &[hat_step(1)], &[], GatePolicy::default());
        assert!(!o.signal_met);
        assert_eq!(o.reasons.len(), 1);
        assert!(
            o.reasons[0].starts_with("signal/1 (implicit) is unknown (the judge could not tell)")
        );
        let o = decide(
            &reqs,
            &[hat_step(1)],
            &[],
            GatePolicy {
                allow_unknown: true,
                allow_unstable: false,
            },
        );
        assert!(o.signal_met);
    }

    #[test]
    fn a_failing_constraint_or_a_hat_without_artifacts_blocks() {
        let o = decide(
            &[req(
                "sre/anti-pattern/1",
                RequirementKind::HatConstraint,
                "SHOULD",
                Verdict::Unmet,
            )],
            &[hat_step(0)],
            &[],
            GatePolicy::default(),
        );
        assert_eq!(o.reasons.len(), 2);
        assert!(o.reasons[1].contains("produced no artifact"));
        assert_eq!(o.exit_code, 1);
    }
}
