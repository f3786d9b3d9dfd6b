//! The one table of steps a stage runs: each hat, then a constraint judge per hat, each
//! review agent, and the completion judge. `run`, `render` and preflight all read it, so
//! the id, role, schema and requirements of a step are decided once.

use crate::definition::{AgentOrigin, Hat, Requirement, ReviewAgent, Stage};
use crate::model::request::JsonSchemaSpec;
use crate::run::answer;
use crate::verdict::RequirementKind;
use crate::verdict::StepKind;

pub const SIGNAL_STEP: &str = "signal";

/// The step id of a hat, its constraint judge, or a review agent.
pub fn hat_step(hat: &str) -> String {
    format!("hat/{hat}")
}
pub fn judge_step(hat: &str) -> String {
    format!("judge/{hat}")
}
pub fn review_step(agent: &str) -> String {
    format!("review/{agent}")
}

/// What a step works on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'s> {
    /// A hat produces artifacts.
    Hat(&'s Hat),
    /// Judges a hat's constraints; never the hat itself.
    ConstraintJudge(&'s Hat),
    Review(&'s ReviewAgent),
    Signal,
}

/// A hat's answer budget without `[model] max_tokens`: room for its artifacts (a DAG, a
/// runbook, a plan), about 16 KB of text.
pub const HAT_ANSWER_TOKENS: u32 = 4096;
/// A judging answer's frame (braces, keys, the step's summary) without `[model] max_tokens`.
pub const ANSWER_FRAME_TOKENS: u32 = 256;
/// One verdict without `[model] max_tokens`: the id, the verdict, a finding of a few
/// sentences and two or three quoted lines with their sources.
pub const TOKENS_PER_VERDICT: u32 = 384;

#[derive(Debug, Clone)]
pub struct Step<'s> {
    pub id: String,
    pub target: Target<'s>,
}

impl<'s> Step<'s> {
    pub fn kind(&self) -> StepKind {
        match self.target {
            Target::Hat(_) => StepKind::Hat,
            Target::ConstraintJudge(_) => StepKind::ConstraintJudge,
            Target::Review(_) => StepKind::Review,
            Target::Signal => StepKind::Signal,
        }
    }

    /// Judging steps ask the judge model; hats ask the producing model.
    pub fn is_judge(&self) -> bool {
        self.kind().is_judge()
    }

    /// How reports name the step.
    pub fn name(&self) -> String {
        match self.target {
            Target::Hat(h) => h.name.clone(),
            Target::ConstraintJudge(h) => format!("{} constraint judge", h.name),
            Target::Review(a) => agent_label(a),
            Target::Signal => "completion judge".to_string(),
        }
    }

    /// The requirements this step rules on (none for a hat).
    pub fn requirements(&self, stage: &'s Stage) -> Vec<&'s Requirement> {
        match self.target {
            Target::Hat(_) => Vec::new(),
            Target::ConstraintJudge(h) => h.constraints().collect(),
            Target::Review(a) => a.checks.iter().collect(),
            Target::Signal => stage.completion_signal.iter().collect(),
        }
    }

    pub fn requirement_kind(&self) -> RequirementKind {
        match self.target {
            Target::Hat(_) | Target::ConstraintJudge(_) => RequirementKind::HatConstraint,
            Target::Review(_) => RequirementKind::ReviewCheck,
            Target::Signal => RequirementKind::Signal,
        }
    }

    /// The `max_tokens` a step's answer gets when `[model] max_tokens` is unset: what its
    /// answer schema needs for the requirements it rules on, not one number for all. A hat
    /// writes artifacts ([`HAT_ANSWER_TOKENS`]); a judging step writes, per requirement, a
    /// verdict, a finding and a few quoted lines ([`TOKENS_PER_VERDICT`]) around a fixed
    /// frame ([`ANSWER_FRAME_TOKENS`]). A cut-off answer is re-asked more briefly.
    pub fn answer_tokens(&self, stage: &Stage) -> u32 {
        match self.target {
            Target::Hat(_) => HAT_ANSWER_TOKENS,
            _ => {
                let n = self.requirements(stage).len() as u32;
                ANSWER_FRAME_TOKENS.saturating_add(n.saturating_mul(TOKENS_PER_VERDICT))
            }
        }
    }

    /// `base` as this step sends it: its own answer budget when `max_tokens` is unset, at
    /// most a quarter of a known context window (the rest is the prompt's). The run and
    /// `hatrack render` both ask through here, so render shows what a run sends.
    pub fn sized<'m>(
        &self,
        base: &'m crate::model::settings::ModelSettings,
        stage: &Stage,
    ) -> std::borrow::Cow<'m, crate::model::settings::ModelSettings> {
        if base.max_tokens.is_some() {
            return std::borrow::Cow::Borrowed(base);
        }
        let mut sized = base.clone();
        let window_share = base
            .context_tokens
            .map_or(u32::MAX, |w| u32::try_from(w / 4).unwrap_or(u32::MAX));
        sized.max_tokens = Some(self.answer_tokens(stage).min(window_share).max(1));
        std::borrow::Cow::Owned(sized)
    }

    /// The answer schema, sent as `response_format` (strict).
    pub fn schema(&self, stage: &Stage) -> JsonSchemaSpec {
        self.schema_without(stage, &[])
    }

    /// The answer schema without the requirements in `decided` (a check decided them, so
    /// no judge is asked about them).
    pub fn schema_without(&self, stage: &Stage, decided: &[String]) -> JsonSchemaSpec {
        let ids: Vec<String> = self
            .requirements(stage)
            .iter()
            .map(|r| r.id.clone())
            .filter(|id| !decided.contains(id))
            .collect();
        let (name, schema) = match self.target {
            Target::Hat(_) => ("hat_answer", answer::hat_schema()),
            Target::ConstraintJudge(_) => ("constraint_answer", answer::constraint_schema(&ids)),
            Target::Review(_) => ("review_answer", answer::review_schema(&ids)),
            Target::Signal => ("signal_answer", answer::signal_schema(&ids)),
        };
        JsonSchemaSpec::new(name, schema)
    }
}

/// Compiles the answer-schema validator of every step of the stage on a thread of its own,
/// so that the steps find them compiled (validators are kept for the process): building
/// one costs about as much as a zero-latency exchange, and the run meanwhile has its
/// preflight, its run.json and its first hat to get through. The requirements `checks`
/// decided are in no judge's schema (as [`crate::run::RunPlan::decided`]). A thread that
/// cannot start leaves each step to compile its own.
pub fn warm_validators(stage: &Stage, checks: Option<&crate::checks::Facts>) {
    let decided = checks
        .map(crate::checks::mapping::vetoed)
        .unwrap_or_default();
    let specs: Vec<JsonSchemaSpec> = table(stage)
        .iter()
        .map(|step| step.schema_without(stage, &decided))
        .collect();
    let _ = crate::parallel::spawn_beside("schemas", move || {
        for spec in &specs {
            let _ = crate::model::structured::validator(&spec.name, spec);
        }
    });
}

/// Every step of the stage, in the order the report lists them: hats, constraint judges
/// (hats without constraints have none), review agents, the completion judge (stages
/// without a completion signal have none).
pub fn table(stage: &Stage) -> Vec<Step<'_>> {
    let mut steps: Vec<Step<'_>> = stage
        .hats
        .iter()
        .map(|h| Step {
            id: hat_step(&h.name),
            target: Target::Hat(h),
        })
        .collect();
    steps.extend(
        stage
            .hats
            .iter()
            .filter(|h| h.constraints().next().is_some())
            .map(|h| Step {
                id: judge_step(&h.name),
                target: Target::ConstraintJudge(h),
            }),
    );
    steps.extend(stage.review_agents.iter().map(|a| Step {
        id: review_step(&a.name),
        target: Target::Review(a),
    }));
    // A stage without completion-signal requirements (the v8 layout has none) gates on
    // its hats' constraints and review checks: asking a judge to rule on nothing would
    // only spend a request and could fail the run on an empty answer.
    if !stage.completion_signal.is_empty() {
        steps.push(Step {
            id: SIGNAL_STEP.to_string(),
            target: Target::Signal,
        });
    }
    steps
}

/// The step a user named: `pipeline-engineer` or `hat/pipeline-engineer`,
/// `judge/pipeline-engineer`, `review/reliability`, `signal`.
pub fn find<'s>(stage: &'s Stage, name: &str) -> Result<Step<'s>, String> {
    let wanted = if name.contains('/') || name == SIGNAL_STEP {
        name.to_string()
    } else {
        hat_step(name)
    };
    let steps = table(stage);
    if let Some(step) = steps.iter().find(|s| s.id == wanted) {
        return Ok(step.clone());
    }
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    Err(format!(
        "no step {name:?} in stage {}; steps: {}",
        stage.name,
        ids.join(", ")
    ))
}

pub fn agent_label(agent: &ReviewAgent) -> String {
    match &agent.origin {
        AgentOrigin::Own => agent.name.clone(),
        AgentOrigin::Included { stage } => format!("{} (from {stage})", agent.name),
    }
}
