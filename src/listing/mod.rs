//! A stage as a user needs to see it (`hatrack list`): hats in order with what they read
//! and produce and every constraint, review agents with their checks, criteria guidance,
//! the completion-signal requirements and the gate. [`ListView`] is the stable JSON;
//! [`write_text`] the listing for a terminal.

use serde::Serialize;

use crate::definition::{
    definition_digest, embedded, AgentOrigin, ArtifactDef, ArtifactKind, Hat, InputRef,
    Requirement, ReviewAgent, Stage,
};
use crate::verdict::{RequirementKind, Subject};

mod text;

pub use text::write_text;

/// The JSON printed by `hatrack list --format json`. The shape is stable: fields are only
/// ever added. Requirements appear as [`RequirementView`] everywhere.
///
/// ```text
/// { "stage": { name, studio, dir, file, title, description, gates: ["external"],
///              needs_human, elaboration, digest, fix_hats: [..], interpretation,
///              studio_fix_hats: [..], studio_agents_not_applied: [..],
///              phases: [ { name, file, body } ] },
///   "inputs": [ { stage, kind: "discovery"|"output", name, source: "file:line" } ],
///   "hats": [ { name, file, focus, produces, reads, responsibilities, process, interpretation,
///               constraints: [Requirement], other_requirements: [Requirement] } ],
///   "review_agents": [ { name, file, origin: "own"|"included"|"studio", from_stage, studio,
///                        applies_to: [..], interpretation, mandate,
///                        checks: [Requirement], failure_modes: [..] } ],
///   "criteria": { good: [..], bad: [..] } | null,
///   "completion_signal": { text, requirements: [Requirement] },
///   "outputs": [Artifact], "discovery": [Artifact],
///   "warnings": [ "file:line: warning: …" ] }
/// Requirement = { id, level: "MUST NOT"|"MUST"|"implicit"|"SHOULD NOT"|"SHOULD"|"MAY",
///                 keywords: [..], text (verbatim, bold markers kept), section,
///                 source: "file:line", malformed, lead_in, label,
///                 about: "repository"|"hat-output"|null (what a met needs; null for
///                 sentences that are not judged) }
/// Artifact = { name, file, location, scope, format, required }
/// ```
#[derive(Debug, Serialize)]
pub struct ListView {
    pub stage: StageView,
    pub inputs: Vec<InputView>,
    pub hats: Vec<HatView>,
    pub review_agents: Vec<AgentView>,
    pub criteria: Option<CriteriaView>,
    pub completion_signal: SignalView,
    pub outputs: Vec<ArtifactView>,
    pub discovery: Vec<ArtifactView>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StageView {
    pub name: String,
    pub studio: Option<String>,
    pub dir: String,
    pub file: String,
    pub title: String,
    pub description: String,
    pub gates: Vec<String>,
    /// Whether a gate kind needs a person (or a world event) after hatrack is done.
    pub needs_human: bool,
    pub elaboration: Option<String>,
    /// sha256 of the definition files (see `definition::definition_digest`).
    pub digest: String,
    /// v8 `fix_hats:`: shown, never run (hatrack has no fix loop).
    pub fix_hats: Vec<String>,
    /// v8 `interpretation:` as written.
    pub interpretation: Option<String>,
    /// v8 studio-level `fix-hats/`: shown, never run.
    pub studio_fix_hats: Vec<String>,
    /// Studio-level review agents whose `applies_to:` leaves this stage out.
    pub studio_agents_not_applied: Vec<String>,
    /// `phases/*.md`: guidance for the method's phases, shown, never run.
    pub phases: Vec<PhaseView>,
}

#[derive(Debug, Serialize)]
pub struct PhaseView {
    pub name: String,
    pub file: String,
    pub body: String,
}

#[derive(Debug, Serialize)]
pub struct InputView {
    pub stage: String,
    pub kind: &'static str,
    pub name: String,
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct HatView {
    pub name: String,
    pub file: String,
    pub focus: Option<String>,
    pub produces: Option<String>,
    pub reads: Option<String>,
    pub responsibilities: Option<String>,
    /// v8 `## Process`: guidance shown to the hat, not judged.
    pub process: Option<String>,
    /// v8 front-matter `interpretation:` (`lens`/`strict`), shown as written.
    pub interpretation: Option<String>,
    /// The anti-pattern requirements: what each hat is judged on.
    pub constraints: Vec<RequirementView>,
    /// Keyword sentences elsewhere in the hat (Focus, Produces, prose): context only.
    pub other_requirements: Vec<RequirementView>,
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    pub file: String,
    pub origin: &'static str,
    /// For included agents, the stage they come from.
    pub from_stage: Option<String>,
    /// For a studio-level agent (v8 `<studio>/review-agents/`), its studio.
    pub studio: Option<String>,
    /// v8 front-matter `applies_to:` as written.
    pub applies_to: Vec<String>,
    /// v8 front-matter `interpretation:` (`lens`/`strict`), shown as written.
    pub interpretation: Option<String>,
    pub mandate: String,
    pub checks: Vec<RequirementView>,
    /// v8 "Common failure modes to look for": guidance for the judge, not checks.
    pub failure_modes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CriteriaView {
    pub good: Vec<String>,
    pub bad: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SignalView {
    pub text: String,
    pub requirements: Vec<RequirementView>,
}

#[derive(Debug, Serialize)]
pub struct RequirementView {
    pub id: String,
    pub level: &'static str,
    pub keywords: Vec<String>,
    pub text: String,
    pub section: String,
    pub source: String,
    pub malformed: bool,
    /// For a v8 check whose keyword is in the `## Check` lead-in: that sentence.
    pub lead_in: Option<String>,
    /// The list's label as written when qualified or a reject list (`Reject if`).
    pub label: Option<String>,
    /// What a judged requirement is about: `repository` (a `met` needs a quote from a
    /// repository file) or `hat-output` (a `met` may rest on a hat's artifact).
    pub about: Option<Subject>,
}

#[derive(Debug, Serialize)]
pub struct ArtifactView {
    pub name: String,
    pub file: String,
    pub location: String,
    pub scope: String,
    pub format: String,
    pub required: bool,
}

fn requirement_view(r: &Requirement) -> RequirementView {
    RequirementView {
        id: r.id.clone(),
        level: r.level.as_str(),
        keywords: r.keywords.clone(),
        text: r.text.clone(),
        section: r.section.clone(),
        source: r.source.to_string(),
        malformed: r.malformed,
        lead_in: r.lead_in.clone(),
        label: r.label.clone(),
        about: None,
    }
}

/// A judged requirement of `kind`, with what it is about.
fn judged_view(r: &Requirement, kind: RequirementKind, hats: &[String]) -> RequirementView {
    RequirementView {
        about: Some(Subject::of(kind, &r.plain_text(), hats)),
        ..requirement_view(r)
    }
}

/// A hat's or agent's v8 `interpretation:` (the spec puts it there; stages may have one too).
fn fm_interpretation(fm: &crate::definition::FrontMatter) -> Option<String> {
    fm.get("interpretation")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn artifact_view(a: &ArtifactDef) -> ArtifactView {
    ArtifactView {
        name: a.name.clone(),
        file: a.file.display().to_string(),
        location: a.location.clone(),
        scope: a.scope.clone(),
        format: a.format.clone(),
        required: a.required,
    }
}

impl ListView {
    pub fn of(stage: &Stage, warnings: &[crate::definition::Diagnostic]) -> ListView {
        let hats: Vec<String> = stage.hats.iter().map(|h| h.name.clone()).collect();
        ListView {
            stage: stage_view(stage),
            inputs: stage.inputs.iter().map(input_view).collect(),
            hats: stage.hats.iter().map(|h| hat_view(h, &hats)).collect(),
            review_agents: stage
                .review_agents
                .iter()
                .map(|a| agent_view(a, &hats))
                .collect(),
            criteria: stage.criteria.as_ref().map(|c| CriteriaView {
                good: c.good.clone(),
                bad: c.bad.clone(),
            }),
            completion_signal: SignalView {
                text: stage.completion_signal_text.clone(),
                requirements: stage
                    .completion_signal
                    .iter()
                    .map(|r| judged_view(r, RequirementKind::Signal, &hats))
                    .collect(),
            },
            outputs: stage.outputs.iter().map(artifact_view).collect(),
            discovery: stage.discovery.iter().map(artifact_view).collect(),
            warnings: warnings.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// The stage's own facts: names, gate, elaboration, digest, v8 extras.
fn stage_view(stage: &Stage) -> StageView {
    StageView {
        name: stage.name.clone(),
        studio: stage.studio.clone(),
        dir: embedded::spelling(&stage.dir).unwrap_or_else(|| stage.dir.display().to_string()),
        file: stage.file.display().to_string(),
        title: stage.title.clone(),
        description: stage.description.clone(),
        gates: stage.gates.iter().map(|g| g.as_str().to_string()).collect(),
        needs_human: stage.gates.iter().any(|g| g.needs_human()),
        elaboration: stage.elaboration.clone(),
        digest: definition_digest(stage),
        fix_hats: stage.fix_hats.clone(),
        interpretation: stage.interpretation.clone(),
        studio_fix_hats: stage.studio_fix_hats.clone(),
        studio_agents_not_applied: stage.studio_agents_not_applied.clone(),
        phases: stage
            .phases
            .iter()
            .map(|p| PhaseView {
                name: p.name.clone(),
                file: p.file.display().to_string(),
                body: p.body.clone(),
            })
            .collect(),
    }
}

fn input_view(i: &InputRef) -> InputView {
    InputView {
        stage: i.stage.clone(),
        kind: match i.kind {
            ArtifactKind::Discovery => "discovery",
            ArtifactKind::Output => "output",
        },
        name: i.name.clone(),
        source: i.source.to_string(),
    }
}

/// A hat: its guidance sections, its constraints, and its other keyword sentences apart.
fn hat_view(h: &Hat, hats: &[String]) -> HatView {
    HatView {
        name: h.name.clone(),
        file: h.file.display().to_string(),
        focus: h.focus.clone(),
        produces: h.produces.clone(),
        reads: h.reads.clone(),
        responsibilities: h.responsibilities.clone(),
        process: h.process.clone(),
        interpretation: fm_interpretation(&h.front_matter),
        constraints: h
            .constraints()
            .map(|r| judged_view(r, RequirementKind::HatConstraint, hats))
            .collect(),
        other_requirements: h
            .requirements
            .iter()
            .filter(|r| r.section != "anti-patterns")
            .map(requirement_view)
            .collect(),
    }
}

/// A review agent, with where it comes from (own, or included from a sibling stage).
fn agent_view(a: &ReviewAgent, hats: &[String]) -> AgentView {
    AgentView {
        name: a.name.clone(),
        file: a.file.display().to_string(),
        origin: match (&a.origin, &a.studio_level) {
            (AgentOrigin::Own, Some(_)) => "studio",
            (AgentOrigin::Own, None) => "own",
            (AgentOrigin::Included { .. }, _) => "included",
        },
        studio: a.studio_level.clone(),
        applies_to: a.applies_to.clone(),
        from_stage: match &a.origin {
            AgentOrigin::Own => None,
            AgentOrigin::Included { stage } => Some(stage.clone()),
        },
        interpretation: fm_interpretation(&a.front_matter),
        mandate: a.mandate.clone(),
        checks: a
            .checks
            .iter()
            .map(|r| judged_view(r, RequirementKind::ReviewCheck, hats))
            .collect(),
        failure_modes: a.failure_modes.clone(),
    }
}
