//! The stage run: hats in order, then the constraint judges and review agents, then the
//! completion judge; verdicts grounded in evidence; the gate; the report. Model calls go
//! through the [`ChatModel`] trait only, so live, replayed and recorded runs take the same
//! path. Hats produce, judges judge: no step ever rules on its own work.
//!
//! A run's lifecycle — resolve ([`setup`]: stage, policy, settings), prepare and preflight,
//! execute (this file's [`execute`]), finish (snapshot, reports) — is [`lifecycle`]; the
//! `run` and `replay` verbs only dispatch to it.

pub mod agent;
pub mod answer;
pub mod artifacts;
pub mod context;
pub mod judges_only;
pub mod lifecycle;
pub mod outcome;
pub mod progress;
pub mod replay_sources;
pub mod rundir;
pub mod samples;
pub mod setup;
pub mod snapshot;
pub mod step_request;
pub mod steps;
pub mod tool_answers;

use std::path::PathBuf;

use serde::de::DeserializeOwned;

pub use steps::{hat_step, judge_step, review_step, SIGNAL_STEP};

use crate::config::LimitsSection;
use crate::definition::{Requirement, Stage};
use crate::inputs::{Binding, Bindings};
use crate::model::request::ChatMessage;
use crate::model::settings::ModelSettings;
use crate::model::structured::StructuredOutcome;
use crate::model::ChatModel;
use crate::prompt::Prompts;
use crate::report::{
    Cost, InputFileReport, InputReport, Outcome, Report, RequirementReport, RunInfo, StageInfo,
    StepReport, TokenUsage,
};
use crate::secrets::Scrubber;
use crate::verdict::gate::{self, GatePolicy, HatOutput};
use crate::verdict::grounding::{self, GroundingRules, Sources};
use crate::verdict::{Cause, Judged, SourceKind, StepKind, StepStatus, Subject, Verdict};
use crate::Error;
use answer::Verdicts;
use artifacts::Artifact;
use context::{display_name, PriorVerdict, Shown, StepMessages};
use outcome::{Origin, StepOutcome};
use progress::Progress;
use samples::SampledVerdict;
use steps::{Step, Target};

/// Everything a run needs, resolved before the first model call.
pub struct RunPlan {
    pub stage: Stage,
    pub definition_digest: String,
    pub bindings: Bindings,
    pub prompts: Prompts,
    /// The producing hats' model.
    pub settings: ModelSettings,
    /// Every judging step's model (the producing model unless `--judge-model`).
    pub judge_settings: ModelSettings,
    pub limits: LimitsSection,
    pub grounding: GroundingRules,
    /// Where artifacts are written (the run directory).
    pub run_dir: PathBuf,
    pub run_id: String,
    pub started_at: String,
    /// The mode the run was recorded with (from run.json, so replays report the same).
    pub record_mode: String,
    /// How many times each judging step is asked (1 = once).
    pub samples: u32,
    pub policy: GatePolicy,
    /// The effective policy with each key's source, as run.json recorded it (shown in every
    /// report; `None` for runs recorded before it was).
    pub effective_policy: Option<crate::policy::PolicyRecord>,
    /// Agreement below this share marks a sampled verdict unstable.
    pub stability_threshold: f64,
    pub scrubber: Scrubber,
    /// Workspace tools for every step; `None` with `[agent] tools = false`.
    pub agent: Option<agent::Agent>,
    /// `--prices`: cost per step and in total in the reports.
    pub prices: Option<std::sync::Arc<crate::model::prices::Prices>>,
    /// What checks found, and the mappings in force (`None`: the run has no checks).
    pub checks: Option<crate::checks::Facts>,
    /// The dossiers the run's steps have been shown (rendered once each).
    pub dossiers: context::Dossiers,
}

impl RunPlan {
    /// The requirements a check decided before any request (no judge is asked about them).
    pub fn decided(&self) -> Vec<String> {
        self.checks
            .as_ref()
            .map(crate::checks::mapping::vetoed)
            .unwrap_or_default()
    }

    /// The settings a step is asked with: the judge model for judging steps.
    /// The settings a step is asked with: the judge's for judging steps, the producing
    /// model's for hats; without `[model] max_tokens`, the step's own answer budget
    /// ([`Step::answer_tokens`]).
    pub fn settings_for(&self, step: &Step<'_>) -> std::borrow::Cow<'_, ModelSettings> {
        let base = if step.is_judge() {
            &self.judge_settings
        } else {
            &self.settings
        };
        step.sized(base, &self.stage)
    }

    fn shown<'a>(
        &'a self,
        produced: &'a [(String, Vec<Artifact>)],
        prior: &'a [PriorVerdict],
    ) -> Shown<'a> {
        Shown {
            prompts: &self.prompts,
            stage: &self.stage,
            bindings: &self.bindings,
            limits: &self.limits,
            rules: self.grounding,
            produced,
            prior,
            tools: self.agent.is_some(),
            checks: self.checks.as_ref(),
            dossiers: Some(&self.dossiers),
        }
    }
}

/// What one model step came back with.
struct Asked<T> {
    answer: Option<T>,
    outcome: StructuredOutcome,
    /// Tool calls, files read, and how tools were (not) used.
    trail: Vec<crate::tools::Trail>,
    read: Vec<(String, String)>,
    tool_note: Option<String>,
}

/// Asks one structured question and reads the answer into `T`.
async fn ask<T: DeserializeOwned>(
    model: &dyn ChatModel,
    step: &str,
    settings: &ModelSettings,
    messages: &[ChatMessage],
    spec: &crate::model::JsonSchemaSpec,
    agent: Option<&agent::Agent>,
    progress: &Progress,
) -> Result<Asked<T>, Error> {
    use tracing::Instrument;
    let line = progress.start(step);
    let span = tracing::info_span!(
        "hatrack.step",
        hatrack.step = step,
        gen_ai.request.model = settings.model.as_str(),
        hatrack.attempts = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    );
    let agent::AgentOutcome {
        structured: mut outcome,
        trail,
        read,
        note: tool_note,
    } = agent::ask(model, step, settings, messages, spec, agent)
        .instrument(span.clone())
        .await?;
    span.record("hatrack.attempts", outcome.attempts);
    span.record("gen_ai.usage.input_tokens", outcome.usage.prompt_tokens);
    span.record(
        "gen_ai.usage.output_tokens",
        outcome.usage.completion_tokens,
    );
    let answer = match outcome.value.clone().map(serde_json::from_value::<T>) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            outcome.errors.push(format!(
                "the answer does not fit hatrack's reading of the schema: {e}"
            ));
            None
        }
        None => None,
    };
    line.finish(format!(
        "{} · {} tok · {:.1}s · {}",
        if answer.is_some() {
            "answered"
        } else {
            "unparseable"
        },
        outcome.usage.total(),
        outcome.duration_ms as f64 / 1000.0,
        Origin::of(&outcome.sources).as_str()
    ));
    Ok(Asked {
        answer,
        outcome,
        trail,
        read,
        tool_note,
    })
}

/// `deployment/hats/sre.md:14`: relative to the stage directory's parent, so the report reads
/// the same wherever the stage was loaded from.
fn source_label_of(r: &Requirement, stage: &Stage) -> String {
    let base = stage.dir.parent().unwrap_or(&stage.dir);
    let file = r.source.file.strip_prefix(base).unwrap_or(&r.source.file);
    format!("{}:{}", crate::safe_fs::slash_path(file), r.source.line)
}

fn hat_names(stage: &Stage) -> Vec<String> {
    stage.hats.iter().map(|h| h.name.clone()).collect()
}

/// A requirement before any ruling: `unknown`, with no answer as the cause.
fn unjudged(r: &Requirement, plan: &RunPlan, step: &Step<'_>) -> Judged {
    Judged {
        id: r.id.clone(),
        kind: step.requirement_kind(),
        level: r.level.as_str().to_string(),
        mandatory: r.level.is_mandatory(),
        text: r.plain_text(),
        source: source_label_of(r, &plan.stage),
        judged_by: step.id.clone(),
        about: Subject::of(
            step.requirement_kind(),
            &r.plain_text(),
            &hat_names(&plan.stage),
        ),
        model: plan.settings_for(step).model.clone(),
        verdict: Verdict::Unknown,
        claimed: Verdict::Unknown,
        cause: Some(Cause::NoAnswer {
            step: step.id.clone(),
        }),
        finding: String::new(),
        severity: None,
        evidence: Vec::new(),
        agreement: None,
    }
}

/// One judge's word on one requirement, grounded; `unknown` with its cause when the answer
/// (or the whole step) gave none.
fn sample_verdict<T: Verdicts>(
    asked: &Asked<T>,
    id: &str,
    sources: &Sources,
    step: &str,
) -> SampledVerdict {
    let Some(v) = asked.answer.as_ref().and_then(|a| a.verdict_for(id)) else {
        let step = step.to_string();
        return SampledVerdict {
            claimed: Verdict::Unknown,
            verdict: Verdict::Unknown,
            cause: Some(match asked.outcome.overflow {
                Some(_) => Cause::ContextExceeded { step },
                None => Cause::NoAnswer { step },
            }),
            finding: String::new(),
            severity: None,
            evidence: Vec::new(),
        };
    };
    let claimed = Verdict::from_word(v.verdict);
    let quotes: Vec<(String, String)> = v
        .evidence
        .iter()
        .map(|e| (e.source.clone(), e.quote.clone()))
        .collect();
    let (verdict, evidence, cause) = sources.settle(claimed, &quotes);
    SampledVerdict {
        claimed,
        verdict,
        cause,
        finding: v.finding.to_string(),
        severity: v.severity.map(str::to_string),
        evidence,
    }
}

/// What the run has so far: step outcomes, rulings, artifacts by hat, warnings. The run's
/// working state: report structs are built from it once, in [`assemble`].
#[derive(Default)]
struct Progressed {
    steps: Vec<StepOutcome>,
    judged: Vec<Judged>,
    produced: Vec<(String, Vec<Artifact>)>,
    warnings: Vec<String>,
    /// Every file a step read with `read_file` (name, text shown): repository text.
    read: Vec<(String, String)>,
}

impl Progressed {
    /// The repository as the run saw it: every bound input (as shown) and every file a step
    /// read with the tools. An artifact quote found here too is repository evidence.
    fn repository(&self, plan: &RunPlan) -> Sources {
        let mut sources = Sources::new(plan.grounding);
        for f in plan.bindings.all_files() {
            sources.add(
                &crate::verdict::markers::escape_name(&f.path),
                SourceKind::Input,
                &f.content,
            );
        }
        for (path, text) in &self.read {
            sources.add(path, SourceKind::Input, text);
        }
        sources
    }

    /// The inputs a step's prompt cut to fit `max_input_bytes`: every step shares them, so
    /// each is said once.
    fn warn_cuts(&mut self, cuts: &[String]) {
        for cut in cuts {
            if !self.warnings.contains(cut) {
                self.warnings.push(cut.clone());
            }
        }
    }

    /// The run-wide evidence rules, after a batch of rulings: distinct requirements need
    /// distinct evidence; a `met` about the repository needs a repository quote.
    fn settle_evidence(&mut self, plan: &RunPlan) {
        grounding::distinct_evidence(&mut self.judged, &plan.grounding);
        let repository = self.repository(plan);
        grounding::artifact_only(&mut self.judged, &repository);
        // Facts beside the judges: a veto's finding makes its requirement unmet, an open
        // finding refuses a met.
        if let Some(facts) = &plan.checks {
            crate::checks::apply(&mut self.judged, facts);
        }
    }
}

/// Runs the whole stage and returns the report (not yet written).
pub async fn execute(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
) -> Result<Report, Error> {
    use tracing::field::Empty;
    use tracing::Instrument;
    let span = tracing::info_span!(
        "hatrack.run",
        hatrack.stage = plan.stage.name.as_str(),
        hatrack.run_id = plan.run_id.as_str(),
        hatrack.record_mode = plan.record_mode.as_str(),
        hatrack.signal_met = Empty,
        hatrack.exit_code = Empty,
        error = Empty,
    );
    let result = execute_steps(plan, model, progress)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(report) => {
            span.record("hatrack.signal_met", report.outcome.signal_met);
            span.record("hatrack.exit_code", report.outcome.exit_code);
        }
        Err(_) => {
            // Only that it failed: error texts may quote a provider echoing credentials.
            span.record("error", true);
        }
    }
    result
}

async fn execute_steps(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
) -> Result<Report, Error> {
    let table = steps::table(&plan.stage);
    let mut run = Progressed {
        warnings: plan.bindings.warnings.clone(),
        ..Progressed::default()
    };

    // 1. Hats, in order; each reads the artifacts of those before it.
    for step in table.iter().filter(|s| s.kind() == StepKind::Hat) {
        run_hat(plan, model, progress, step, &mut run).await?;
    }

    // 2. Constraint judges and review agents, together.
    run_judges(plan, model, progress, &table, &mut run).await?;
    // 3. The completion judge rules on each completion-signal requirement (a stage
    //    without a completion signal has no such step: the gate rules on the rest).
    if let Some(signal) = table.iter().find(|s| s.kind() == StepKind::Signal) {
        run_signal(plan, model, progress, signal, &mut run).await?;
    }
    step_warnings(&mut run);
    Ok(assemble(plan, run))
}

/// Constraint judges and review agents rule on what the hats produced. They are
/// independent, so they run together; the model layer bounds the requests in flight
/// (`--jobs`), and results keep the table's order.
async fn run_judges(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    table: &[Step<'_>],
    run: &mut Progressed,
) -> Result<(), Error> {
    let mut asks = Vec::new();
    for step in table
        .iter()
        .filter(|s| matches!(s.kind(), StepKind::ConstraintJudge | StepKind::Review))
    {
        let messages = context::messages(step, &plan.shown(&run.produced, &[]))?;
        run.warn_cuts(&messages.cuts);
        asks.push(judge(plan, model, progress, step, messages));
    }
    for (outcome, judged, read) in futures::future::try_join_all(asks).await? {
        run.steps.push(outcome);
        run.judged.extend(judged);
        run.read.extend(read);
    }
    // The run-wide evidence rules, before the completion judge is shown the verdicts so far.
    run.settle_evidence(plan);
    Ok(())
}

/// The completion judge, shown every verdict so far; the evidence rules settle again once
/// it has ruled.
async fn run_signal(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    signal: &Step<'_>,
    run: &mut Progressed,
) -> Result<(), Error> {
    let prior: Vec<PriorVerdict> = run
        .judged
        .iter()
        .map(|r| PriorVerdict {
            id: r.id.clone(),
            verdict: r.shown_verdict().as_str().to_string(),
            finding: r.finding.clone(),
        })
        .collect();
    let messages = context::messages(signal, &plan.shown(&run.produced, &prior))?;
    let (outcome, judged, read) = judge(plan, model, progress, signal, messages).await?;
    run.steps.push(outcome);
    run.judged.extend(judged);
    run.read.extend(read);
    run.settle_evidence(plan);
    Ok(())
}

/// A warning for each step that gave no answer: unparseable, or its request did not fit.
fn step_warnings(run: &mut Progressed) {
    for s in &run.steps {
        match s.status {
            StepStatus::Answered | StepStatus::DecidedByChecks => {}
            StepStatus::Unparseable => run.warnings.push(format!(
                "{} gave no schema-valid answer after {} attempt(s); its verdicts are unknown",
                s.id, s.attempts
            )),
            StepStatus::ContextExceeded => run.warnings.push(format!(
                "{}: {}; its verdicts are unknown, the rest of the stage ran; hint: {}",
                s.id,
                s.errors.last().map(String::as_str).unwrap_or_default(),
                crate::verdict::CONTEXT_HINT
            )),
        }
    }
}

/// Asks one hat for its artifacts and writes the accepted ones.
async fn run_hat(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    step: &Step<'_>,
    run: &mut Progressed,
) -> Result<(), Error> {
    let Target::Hat(hat) = step.target else {
        unreachable!("run_hat is called for hat steps only")
    };
    let StepMessages { messages, cuts, .. } =
        context::messages(step, &plan.shown(&run.produced, &[]))?;
    run.warn_cuts(&cuts);
    let settings = plan.settings_for(step);
    let spec = step.schema(&plan.stage);
    let asked: Asked<answer::HatAnswer> = ask(
        model,
        &step.id,
        &settings,
        &messages,
        &spec,
        plan.agent.as_ref(),
        progress,
    )
    .await?;
    let mut outcome = StepOutcome::of(
        step,
        &settings.model,
        &[&asked.outcome],
        asked.answer.is_some(),
    );
    outcome.trail = asked.trail.clone();
    outcome.tools = asked.tool_note.clone();
    let mut accepted = Vec::new();
    if let Some(a) = &asked.answer {
        // Names scrubbed before they are checked and made unique: the replay reads them
        // scrubbed from the record and must accept exactly what the live run accepted.
        let proposed: Vec<(String, String)> = a
            .artifacts
            .iter()
            .map(|x| (plan.scrubber.scrub(&x.path), x.content.clone()))
            .collect();
        let (ok, refused) = artifacts::accept(&hat.name, &proposed);
        run.warnings.extend(refused);
        let scrub = |s: &str| plan.scrubber.scrub(s);
        outcome.artifacts = artifacts::write(&plan.run_dir, &ok, &scrub).map_err(|e| {
            Error::io(
                format!(
                    "writing artifacts of {} under {}",
                    step.id,
                    plan.run_dir.display()
                ),
                e,
            )
        })?;
        outcome.summary = Some(a.summary.clone());
        accepted = ok;
    }
    run.steps.push(outcome);
    run.produced.push((hat.name.clone(), accepted));
    run.read.extend(asked.read);
    Ok(())
}

/// A judging step's outcome, its rulings, and the files it read with the tools.
type Judging = (StepOutcome, Vec<Judged>, Vec<(String, String)>);

/// Asks a judging step with the answer type its kind uses.
async fn judge(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    step: &Step<'_>,
    messages: StepMessages,
) -> Result<Judging, Error> {
    match step.target {
        Target::ConstraintJudge(_) => {
            judge_samples::<answer::ConstraintAnswer>(plan, model, progress, step, messages).await
        }
        Target::Review(_) => {
            judge_samples::<answer::ReviewAnswer>(plan, model, progress, step, messages).await
        }
        Target::Signal => {
            judge_samples::<answer::SignalAnswer>(plan, model, progress, step, messages).await
        }
        Target::Hat(_) => unreachable!("hats produce; they are never asked to judge"),
    }
}

/// Asks a judging step `plan.samples` times (seed + k each) and combines the samples into
/// one verdict per requirement.
async fn judge_samples<T: DeserializeOwned + Verdicts>(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    step: &Step<'_>,
    StepMessages {
        messages, sources, ..
    }: StepMessages,
) -> Result<Judging, Error> {
    let base = plan.settings_for(step);
    // Requirements a check decided are asked of no judge; a step left with none is not asked.
    let decided = plan.decided();
    let spec = step.schema_without(&plan.stage, &decided);
    let asked = step
        .requirements(&plan.stage)
        .iter()
        .any(|r| !decided.contains(&r.id));
    let rounds = if asked { plan.samples } else { 0 };
    // Samples differ only in their seed; they run together (bounded by the model layer).
    let asked_all: Vec<Asked<T>> = futures::future::try_join_all((0..rounds).map(|k| {
        let settings = samples::settings_for(&base, k);
        let (messages, spec) = (&messages, &spec);
        async move {
            ask(
                model,
                &step.id,
                &settings,
                messages,
                spec,
                plan.agent.as_ref(),
                progress,
            )
            .await
        }
    }))
    .await?;
    let outcomes: Vec<&StructuredOutcome> = asked_all.iter().map(|a| &a.outcome).collect();
    let answered = asked_all.iter().any(|a| a.answer.is_some());
    let mut outcome = StepOutcome::of(step, &base.model, &outcomes, answered);
    if !asked {
        outcome.status = StepStatus::DecidedByChecks;
    }
    outcome.trail = asked_all.iter().flat_map(|a| a.trail.clone()).collect();
    outcome.tools = asked_all.iter().find_map(|a| a.tool_note.clone());
    let sample_sources = sample_sources(&asked_all, &sources);
    outcome.summary = asked_all
        .iter()
        .find_map(|a| a.answer.as_ref().map(|x| x.summary().to_string()));
    let mut judged = Vec::new();
    for req in step.requirements(&plan.stage) {
        let mut r = unjudged(req, plan, step);
        if let Some(facts) = plan.checks.as_ref().filter(|_| decided.contains(&req.id)) {
            crate::checks::mapping::decide(&mut r, facts);
            judged.push(r);
            continue;
        }
        let sampled: Vec<SampledVerdict> = asked_all
            .iter()
            .zip(&sample_sources)
            .map(|(a, s)| sample_verdict(a, &req.id, s, &step.id))
            .collect();
        samples::apply(&mut r, &sampled, plan.stability_threshold);
        judged.push(r);
    }
    let read = asked_all.into_iter().flat_map(|a| a.read).collect();
    Ok((outcome, judged, read))
}

/// Each sample is grounded in what it was shown: the prompt's sources and the files it
/// read (cloned only for a sample that read files).
fn sample_sources<'s, T>(
    asked_all: &[Asked<T>],
    sources: &'s Sources,
) -> Vec<std::borrow::Cow<'s, Sources>> {
    asked_all
        .iter()
        .map(|a| {
            if a.read.is_empty() {
                return std::borrow::Cow::Borrowed(sources);
            }
            let mut s = sources.clone();
            for (path, text) in &a.read {
                s.add(path, crate::verdict::SourceKind::Input, text);
            }
            std::borrow::Cow::Owned(s)
        })
        .collect()
}

/// The gate over the run's rulings and the artifacts each hat wrote.
fn decide(plan: &RunPlan, run: &Progressed) -> gate::GateDecision {
    let stage = &plan.stage;
    let hats: Vec<HatOutput<'_>> = run
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Hat)
        .map(|s| HatOutput {
            step: &s.id,
            artifacts: s.artifacts.len(),
        })
        .collect();
    // Every step that must rule on something: each hat's constraint judge (a hat without
    // constraints is judged by no one, which the gate reports), each review agent, and the
    // completion judge when the stage has a signal.
    let mut judging: Vec<String> = stage.hats.iter().map(|h| judge_step(&h.name)).collect();
    judging.extend(stage.review_agents.iter().map(|a| review_step(&a.name)));
    if !stage.completion_signal.is_empty() {
        judging.push(SIGNAL_STEP.to_string());
    }
    let needs_human: Vec<String> = stage
        .gates
        .iter()
        .filter(|g| g.needs_human())
        .map(|g| g.as_str().to_string())
        .collect();
    let decision = gate::decide(&run.judged, &hats, &judging, &needs_human, plan.policy);
    if stage.completion_signal.is_empty() {
        return decision.without_completion_signal();
    }
    decision
}

/// The run's steps as report.json shows them, and what the run used in all: tokens, time
/// and (with `--prices`) cost.
fn step_reports(
    plan: &RunPlan,
    steps: Vec<StepOutcome>,
) -> (Vec<StepReport>, TokenUsage, u64, Option<Cost>) {
    let mut usage = crate::model::Usage::default();
    let mut duration_ms = 0u64;
    for s in &steps {
        usage.add(&s.usage);
        duration_ms = duration_ms.saturating_add(s.duration_ms);
    }
    let (costs, total) = match plan.prices.as_deref() {
        Some(prices) => {
            let (each, total) = outcome::price(prices, &steps);
            (each.into_iter().map(Some).collect(), Some(total))
        }
        None => (vec![None; steps.len()], None),
    };
    let reports = steps
        .into_iter()
        .zip(costs)
        .map(|(s, cost)| s.into_report(cost))
        .collect();
    (reports, outcome::token_usage(&usage), duration_ms, total)
}

/// The gate over the rulings, and the report: output structs built once, at the end, from
/// the run's working state.
fn assemble(plan: &RunPlan, run: Progressed) -> Report {
    let stage = &plan.stage;
    let gates: Vec<String> = stage.gates.iter().map(|g| g.as_str().to_string()).collect();
    let decision = decide(plan, &run);
    let requirements = run.judged.iter().map(RequirementReport::from).collect();
    let (steps, usage, duration_ms, cost) = step_reports(plan, run.steps);
    Report {
        schema_version: crate::report::SCHEMA_VERSION,
        hatrack_version: env!("CARGO_PKG_VERSION").to_string(),
        stage: StageInfo {
            name: stage.name.clone(),
            studio: stage.studio.clone(),
            title: if stage.title.is_empty() {
                display_name(&stage.name)
            } else {
                stage.title.clone()
            },
            description: stage.description.clone(),
            gates,
            definition_digest: plan.definition_digest.clone(),
            hats: stage.hats.iter().map(|h| h.name.clone()).collect(),
            review_agents: stage.review_agents.iter().map(steps::agent_label).collect(),
            fix_hats: stage.fix_hats.clone(),
            interpretation: stage.interpretation.clone(),
        },
        run: RunInfo {
            id: plan.run_id.clone(),
            model: plan.settings.model.clone(),
            judge_model: plan.judge_settings.model.clone(),
            record_mode: plan.record_mode.clone(),
            started_at: plan.started_at.clone(),
            prompt_digest: plan.prompts.digest_for(plan.checks.is_some()).to_string(),
            samples: plan.samples,
            usage,
            duration_ms,
            cost,
            policy: plan.effective_policy.clone(),
        },
        outcome: Outcome::from(&decision),
        steps,
        requirements,
        inputs: input_reports(&plan.bindings),
        warnings: run.warnings,
        checks: plan.checks.clone(),
    }
}

fn input_reports(bindings: &Bindings) -> Vec<InputReport> {
    let mut out = Vec::new();
    for hat in &bindings.hats {
        for item in &hat.items {
            let (bound_to, files) = match &item.binding {
                Binding::Hat(other) => (format!("hat:{other}"), Vec::new()),
                Binding::Workspace { files, .. } => (
                    "workspace".to_string(),
                    files
                        .iter()
                        .map(|f| InputFileReport {
                            path: f.path.clone(),
                            bytes: f.bytes,
                            sha256: f.sha256.clone(),
                            truncated: f.truncated,
                            shown_bytes: f.shown_bytes,
                        })
                        .collect(),
                ),
            };
            out.push(InputReport {
                hat: hat.hat.clone(),
                item: item.item.clone(),
                bound_to,
                files,
            });
        }
    }
    out
}
