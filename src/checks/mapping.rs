//! `[[check]]`: which tool's rules (or which probe) speak to which requirement, and what an
//! error-level finding does to it.
//!
//! ```toml
//! [[check]]
//! requirement = "pipeline-engineer/anti-pattern/1"
//! tool = "ruff"                # the SARIF driver's name, or "junit:<suite>"
//! rules = ["AIR301", "AIR302"] # ids or names; empty: every rule of the tool
//! on_finding = "veto"          # or "evidence" (the default)
//! ```
//!
//! - **veto**: an error-level finding makes the requirement **unmet** with the cause
//!   `check` and the finding as its evidence, whatever the judge says ([`apply`]).
//! - **evidence**: the judge is shown the finding and may quote it; a judge's `met` while an
//!   error-level finding is open is refused (`unknown`, cause `open-finding`), as ungrounded
//!   evidence is.
//!
//! Either way a clean run is evidence for, never proof of, `met`: the judge still rules.

use serde::{Deserialize, Serialize};

use super::probes::ProbeSpec;
pub use super::probes::PROBE_TOOL;
use super::{ChecksError, Facts, Finding};
use crate::verdict::{Cause, Evidence, Judged, SourceKind, Verdict};
/// Findings shown to one judging step at most.
pub const MAX_SHOWN: usize = 30;
/// Findings cited as one vetoed requirement's evidence at most (all are named in the cause).
pub const MAX_VETO_EVIDENCE: usize = 5;

/// What an error-level finding of a mapping does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFinding {
    /// The requirement is unmet, whatever the judge says.
    Veto,
    /// The judge sees it; a `met` while it is open is refused.
    #[default]
    Evidence,
}

impl OnFinding {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFinding::Veto => "veto",
            OnFinding::Evidence => "evidence",
        }
    }
}

/// One `[[check]]` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub requirement: String,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub on_finding: Option<OnFinding>,
    /// A probe's name: its findings' rule (`probe dag-retries dags/etl.py:1`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
    /// Why this mapping fits the requirement (shown in reports; say it in `checks.toml`).
    #[serde(default)]
    pub why: Option<String>,
}

/// One mapping in force, as `checks.json` and `report.json` record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub requirement: String,
    /// The SARIF driver, `junit:<suite>`, or `probe`.
    pub tool: String,
    /// Rule ids or names (a probe's name); empty: every rule of the tool.
    pub rules: Vec<String>,
    pub on_finding: OnFinding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Where it was declared: `hats/deployment/checks.toml`, `hatrack.toml or policy`.
    pub from: String,
}

impl Mapping {
    /// Whether `finding` is one of this mapping's (tool and rule compared without case).
    pub fn matches(&self, finding: &Finding) -> bool {
        finding.tool.eq_ignore_ascii_case(&self.tool)
            && (self.rules.is_empty()
                || self.rules.iter().any(|r| {
                    r.eq_ignore_ascii_case(&finding.rule)
                        || finding
                            .rule_name
                            .as_deref()
                            .is_some_and(|n| r.eq_ignore_ascii_case(n))
                }))
    }
}

impl CheckSpec {
    /// The mapping this entry declares, checked: the requirement exists, a tool or a probe
    /// (not both), a probe has a name and valid patterns. `index` is 1-based.
    pub fn mapping(
        &self,
        origin: &str,
        index: usize,
        requirements: &[String],
    ) -> Result<Mapping, ChecksError> {
        let fail = |message: String| ChecksError::Mapping {
            origin: origin.to_string(),
            index,
            message,
        };
        if !requirements.contains(&self.requirement) {
            let known = requirements.join(", ");
            return Err(fail(format!(
                "requirement {:?} is not one of the stage's ({known})",
                self.requirement
            )));
        }
        let (tool, rules) = match (&self.tool, &self.probe) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "give a tool or a probe, not both: a probe is its own tool".into(),
                ))
            }
            (None, None) => {
                return Err(fail(
                    "give a tool (the SARIF driver's name, or \"junit:<suite>\") or a probe".into(),
                ))
            }
            (Some(tool), None) if tool.trim().eq_ignore_ascii_case(PROBE_TOOL) => {
                return Err(fail(format!(
                    "tool \"{PROBE_TOOL}\" is hatrack's own: declare a probe with `probe = {{ … }}`"
                )))
            }
            (Some(tool), None) if tool.trim().is_empty() => {
                return Err(fail("the tool's name is empty".into()))
            }
            (Some(tool), None) => (tool.trim().to_string(), self.rules.clone()),
            (None, Some(probe)) => {
                let name = self.probe_name().map_err(&fail)?;
                probe.check().map_err(&fail)?;
                if !self.rules.is_empty() {
                    return Err(fail(
                        "rules belong to a tool; a probe's findings carry its name".into(),
                    ));
                }
                (PROBE_TOOL.to_string(), vec![name])
            }
        };
        Ok(Mapping {
            requirement: self.requirement.clone(),
            tool,
            rules,
            on_finding: self.on_finding.unwrap_or_default(),
            probe: self.probe.clone(),
            why: self.why.clone(),
            from: origin.to_string(),
        })
    }

    fn probe_name(&self) -> Result<String, String> {
        let Some(name) = self.name.as_deref().map(str::trim) else {
            return Err(
                "a probe needs a name (`name = \"dag-retries\"`): its findings are named after it"
                    .into(),
            );
        };
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(format!(
                "probe name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(name.to_string())
    }
}

/// The findings of veto mappings and of evidence mappings of one requirement that are
/// errors, each once.
fn open_findings<'f>(facts: &'f Facts, id: &str) -> (Vec<&'f Finding>, Vec<&'f Finding>) {
    let mut vetoes = Vec::new();
    let mut open = Vec::new();
    for f in facts.findings.iter().filter(|f| f.is_error()) {
        let mine = facts
            .mappings
            .iter()
            .filter(|m| m.requirement == id && m.matches(f));
        let (mut veto, mut evidence) = (false, false);
        for m in mine {
            match m.on_finding {
                OnFinding::Veto => veto = true,
                OnFinding::Evidence => evidence = true,
            }
        }
        if veto {
            vetoes.push(f);
        } else if evidence {
            open.push(f);
        }
    }
    (vetoes, open)
}

/// Applies the mappings to the rulings: an error-level finding of a veto mapping makes its
/// requirement unmet (cause `check`, the findings as evidence); a `met` while an error-level
/// finding of an evidence mapping is open becomes `unknown` (cause `open-finding`).
/// Idempotent: run after each batch of rulings, as the other run-wide evidence rules are.
pub fn apply(judged: &mut [Judged], facts: &Facts) {
    for r in judged.iter_mut() {
        if matches!(r.cause, Some(Cause::Check { .. })) {
            continue;
        }
        let (vetoes, open) = open_findings(facts, &r.id);
        if !vetoes.is_empty() {
            let claimed = Some(r.claimed);
            veto(r, &vetoes, claimed);
        } else if !open.is_empty() && r.verdict == Verdict::Met {
            r.verdict = Verdict::Unknown;
            r.cause = Some(Cause::OpenFinding {
                findings: open.iter().map(|f| f.name.clone()).collect(),
            });
        }
    }
}

/// The requirements an error-level finding of a veto mapping decides: no judge is asked
/// about them (they leave their step's prompt and answer schema).
pub fn vetoed(facts: &Facts) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in facts
        .mappings
        .iter()
        .filter(|m| m.on_finding == OnFinding::Veto)
    {
        if !out.contains(&m.requirement)
            && facts.findings.iter().any(|f| f.is_error() && m.matches(f))
        {
            out.push(m.requirement.clone());
        }
    }
    out
}

/// Decides a requirement no judge was asked about ([`vetoed`]): unmet, cause `check`.
pub fn decide(r: &mut Judged, facts: &Facts) {
    let (vetoes, _) = open_findings(facts, &r.id);
    if vetoes.is_empty() {
        return;
    }
    r.cause = None;
    r.finding.clear();
    veto(r, &vetoes, None);
}

fn veto(r: &mut Judged, findings: &[&Finding], claimed: Option<Verdict>) {
    let judge_said = r.verdict;
    r.verdict = Verdict::Unmet;
    r.cause = Some(Cause::Check {
        claimed,
        findings: findings.iter().map(|f| f.name.clone()).collect(),
    });
    let first = findings[0];
    let mut finding = format!(
        "{}: {}",
        first.name,
        super::capped_line(&first.message, 300)
    );
    if findings.len() > 1 {
        finding.push_str(&format!(" (and {} more)", findings.len() - 1));
    }
    if !r.finding.trim().is_empty() && judge_said != Verdict::Unmet {
        finding.push_str(&format!(
            "; the judge said {}: {}",
            r.claimed.as_str(),
            r.finding.trim()
        ));
    } else if !r.finding.trim().is_empty() {
        finding.push_str(&format!("; the judge: {}", r.finding.trim()));
    }
    r.finding = finding;
    let mut evidence: Vec<Evidence> = findings
        .iter()
        .take(MAX_VETO_EVIDENCE)
        .map(|f| evidence_of(f))
        .collect();
    evidence.append(&mut r.evidence);
    r.evidence = evidence;
}

/// A finding as a quote: its message, from the finding (a check source).
pub fn evidence_of(f: &Finding) -> Evidence {
    Evidence {
        source: f.name.clone(),
        quote: f.message.clone(),
        found_in: Some(source_kind(f)),
        line: None,
        problem: None,
        repository_copy: None,
    }
}

/// What a quote of `f` is found in.
pub fn source_kind(f: &Finding) -> SourceKind {
    SourceKind::Check {
        tool: f.tool.clone(),
        path: f.path.clone(),
        line: f.line,
    }
}

/// The findings one judging step is shown, and how many there were to show: first those of
/// the mappings of `requirements` (passing records included: evidence for), then every other
/// error or warning, at most [`MAX_SHOWN`].
pub fn shown_to<'f>(facts: &'f Facts, requirements: &[&str]) -> (Vec<&'f Finding>, usize) {
    let mapped = |f: &Finding| {
        facts
            .mappings
            .iter()
            .any(|m| requirements.contains(&m.requirement.as_str()) && m.matches(f))
    };
    let mut shown: Vec<&Finding> = facts.findings.iter().filter(|f| mapped(f)).collect();
    shown.sort_by_key(|f| f.level);
    let others = facts
        .findings
        .iter()
        .filter(|f| !mapped(f) && matches!(f.level, super::Level::Error | super::Level::Warning));
    let mut others: Vec<&Finding> = others.collect();
    others.sort_by_key(|f| f.level);
    shown.extend(others);
    let total = shown.len();
    shown.truncate(MAX_SHOWN);
    (shown, total)
}

/// The mappings of a requirement, for a finding's text: `reliability/check/1 (veto)`.
pub fn mapped_to(facts: &Facts, f: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in facts.mappings.iter().filter(|m| m.matches(f)) {
        let entry = format!("{} ({})", m.requirement, m.on_finding.as_str());
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// What a judging step's prompt shows of the checks: `null` when there is nothing to show
/// (the template then renders nothing, so a run without checks sends what it always did),
/// else `{"note", "items": [{"name", "text"}]}`. Each finding is escaped as data and added
/// to `sources` under its name, so a judge's quote of it grounds.
pub fn prompt_values(
    facts: &Facts,
    requirements: &[&str],
    sources: &mut crate::verdict::grounding::Sources,
) -> serde_json::Value {
    use crate::verdict::markers::{escape_data, escape_name};
    let (shown, total) = shown_to(facts, requirements);
    if shown.is_empty() {
        return serde_json::Value::Null;
    }
    let items: Vec<serde_json::Value> = shown
        .iter()
        .map(|f| {
            let mut text = f.shown_text();
            let mapped = mapped_to(facts, f);
            if !mapped.is_empty() {
                text.push_str(&format!("\nmapped to: {}", mapped.join(", ")));
            }
            let name = escape_name(&f.name).into_owned();
            let text = escape_data(&text).into_owned();
            sources.add(&name, source_kind(f), &text);
            serde_json::json!({"name": name, "text": text})
        })
        .collect();
    let note = if total > shown.len() {
        format!("{} of {total}", shown.len())
    } else {
        format!("{total}")
    };
    serde_json::json!({"note": note, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{Level, FORMAT};

    fn finding(tool: &str, rule: &str, level: Level) -> Finding {
        Finding {
            name: format!("{tool} {rule} a.py:3"),
            tool: tool.into(),
            rule: rule.into(),
            rule_name: Some(format!("{rule}-name")),
            level,
            message: format!("{rule} was found here"),
            path: Some("a.py".into()),
            line: Some(3),
            excerpt: None,
            fingerprint: "f".into(),
            origin: "x.sarif".into(),
        }
    }

    fn mapping(requirement: &str, tool: &str, rules: &[&str], on: OnFinding) -> Mapping {
        Mapping {
            requirement: requirement.into(),
            tool: tool.into(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            on_finding: on,
            probe: None,
            why: None,
            from: "test".into(),
        }
    }

    fn judged(id: &str, verdict: Verdict) -> Judged {
        Judged {
            finding: "all good".into(),
            ..Judged::review_check(id, verdict)
        }
    }

    #[test]
    fn rules_match_by_id_or_name_without_case_and_an_empty_list_takes_every_rule() {
        let f = finding("Ruff", "AIR301", Level::Error);
        assert!(mapping("r", "ruff", &["air301"], OnFinding::Veto).matches(&f));
        assert!(mapping("r", "ruff", &["AIR301-NAME"], OnFinding::Veto).matches(&f));
        assert!(mapping("r", "ruff", &[], OnFinding::Veto).matches(&f));
        assert!(!mapping("r", "ruff", &["AIR302"], OnFinding::Veto).matches(&f));
        assert!(!mapping("r", "sqlfluff", &[], OnFinding::Veto).matches(&f));
    }

    #[test]
    fn a_veto_unmets_an_evidence_mapping_refuses_a_met_and_warnings_do_neither() {
        let facts = Facts {
            format: FORMAT,
            mappings: vec![
                mapping("vetoed", "ruff", &["AIR301"], OnFinding::Veto),
                mapping("open", "ruff", &["AIR302"], OnFinding::Evidence),
                mapping("warned", "ruff", &["AIR311"], OnFinding::Veto),
            ],
            findings: vec![
                finding("ruff", "AIR301", Level::Error),
                finding("ruff", "AIR302", Level::Error),
                finding("ruff", "AIR311", Level::Warning),
            ],
            ..Facts::default()
        };
        assert_eq!(vetoed(&facts), ["vetoed"]);
        let mut all = vec![
            judged("vetoed", Verdict::Met),
            judged("open", Verdict::Met),
            judged("warned", Verdict::Met),
        ];
        apply(&mut all, &facts);
        assert_eq!(all[0].verdict, Verdict::Unmet);
        assert_eq!(
            all[0].cause,
            Some(Cause::Check {
                claimed: Some(Verdict::Met),
                findings: vec!["ruff AIR301 a.py:3".into()]
            })
        );
        assert!(all[0]
            .finding
            .starts_with("ruff AIR301 a.py:3: AIR301 was found here"));
        assert!(all[0].finding.ends_with("the judge said met: all good"));
        assert_eq!(
            all[0].evidence[0].found_in,
            Some(source_kind(&facts.findings[0]))
        );
        assert_eq!(all[1].verdict, Verdict::Unknown);
        assert!(matches!(all[1].cause, Some(Cause::OpenFinding { .. })));
        assert_eq!(all[2].verdict, Verdict::Met, "a warning vetoes nothing");
        let again = all.clone();
        apply(&mut all, &facts);
        assert_eq!(all, again, "idempotent");
        // An unmet judge's ruling stays, an evidence mapping leaves it alone.
        let mut unmet = vec![judged("open", Verdict::Unmet)];
        apply(&mut unmet, &facts);
        assert_eq!((unmet[0].verdict, &unmet[0].cause), (Verdict::Unmet, &None));
    }

    #[test]
    fn a_step_is_shown_its_mapped_findings_first_then_other_problems_capped() {
        let mut findings: Vec<Finding> = (0..40)
            .map(|i| finding("ruff", &format!("R{i:02}"), Level::Warning))
            .collect();
        findings.push(finding("probe", "retries", Level::Pass));
        findings.push(finding("ruff", "UNMAPPED-PASS", Level::Pass));
        let facts = Facts {
            format: FORMAT,
            mappings: vec![mapping("mine", "probe", &["retries"], OnFinding::Veto)],
            findings,
            ..Facts::default()
        };
        let (shown, total) = shown_to(&facts, &["mine"]);
        assert_eq!(total, 41, "40 warnings and the mapped passing record");
        assert_eq!(shown.len(), MAX_SHOWN);
        assert_eq!(shown[0].rule, "retries");
        assert!(shown.iter().all(|f| f.rule != "UNMAPPED-PASS"));
    }
}
