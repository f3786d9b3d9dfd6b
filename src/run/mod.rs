//! The stage run: hats in order, then review agents, then the completion judge; verdicts
//! grounded in evidence; the gate; the report. Model calls go through the [`ChatModel`]
//! trait only, so live, replayed and recorded runs take the same path.

pub mod answer;
pub mod artifacts;
pub mod context;
pub mod gate;
pub mod grounding;
pub mod progress;
pub mod rundir;
pub mod samples;

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::config::LimitsSection;
use crate::definition::{AgentOrigin, Requirement, Stage};
use crate::inputs::{Binding, Bindings};
use crate::model::request::{ChatMessage, JsonSchemaSpec};
use crate::model::settings::ModelSettings;
use crate::model::structured::{ask_structured, StructuredOutcome};
use crate::model::{ChatModel, ReplySource};
use crate::prompt::Prompts;
use crate::report::{
    EvidenceReport, InputFileReport, InputReport, Report, RequirementKind, RequirementReport,
    RunInfo, StageInfo, StepKind, StepReport, StepStatus, TokenUsage, Verdict,
};
use crate::secrets::Scrubber;
use crate::Error;
use answer::Verdicts;
use artifacts::Artifact;
use context::{display_name, PriorVerdict, StepMessages};
use gate::GatePolicy;
use progress::Progress;
use samples::SampledVerdict;

/// Everything a run needs, resolved before the first model call.
pub struct RunPlan {
    pub stage: Stage,
    pub definition_digest: String,
    pub bindings: Bindings,
    pub prompts: Prompts,
    pub settings: ModelSettings,
    pub limits: LimitsSection,
    /// Where artifacts are written (the run directory).
    pub run_dir: PathBuf,
    pub run_id: String,
    pub started_at: String,
    /// The mode the run was recorded with (from run.json, so replays report the same).
    pub record_mode: String,
    /// How many times each judging step is asked (1 = once).
    pub samples: u32,
    pub policy: GatePolicy,
    /// Agreement below this share marks a sampled verdict unstable.
    pub stability_threshold: f64,
    pub scrubber: Scrubber,
}

/// The step id of a hat, a review agent, or the completion judge.
pub fn hat_step(hat: &str) -> String {
    format!("hat/{hat}")
}
pub fn review_step(agent: &str) -> String {
    format!("review/{agent}")
}
pub const SIGNAL_STEP: &str = "signal";

/// What one model step came back with.
struct Asked<T> {
    answer: Option<T>,
    outcome: StructuredOutcome,
}

/// Asks one structured question and reads the answer into `T`.
async fn ask<T: DeserializeOwned>(
    model: &dyn ChatModel,
    step: &str,
    settings: &ModelSettings,
    messages: &[ChatMessage],
    schema_name: &str,
    schema: serde_json::Value,
    progress: &Progress,
) -> Result<Asked<T>, Error> {
    let line = progress.start(step);
    let spec = JsonSchemaSpec {
        name: schema_name.to_string(),
        schema,
    };
    let mut outcome = ask_structured(model, step, settings, messages, &spec).await?;
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
        source_label(&outcome.sources)
    ));
    Ok(Asked { answer, outcome })
}

fn source_label(sources: &[ReplySource]) -> &'static str {
    let replayed = sources
        .iter()
        .filter(|s| **s == ReplySource::Replayed)
        .count();
    match replayed {
        0 => "live",
        n if n == sources.len() => "replayed",
        _ => "mixed",
    }
}

fn step_report(
    id: &str,
    kind: StepKind,
    name: &str,
    outcomes: &[&StructuredOutcome],
    answered: bool,
) -> StepReport {
    let mut usage = TokenUsage::default();
    let mut origins = Vec::new();
    let mut errors = Vec::new();
    let mut attempts = 0;
    let mut duration_ms = 0;
    for o in outcomes {
        usage.prompt_tokens += o.usage.prompt_tokens;
        usage.completion_tokens += o.usage.completion_tokens;
        usage.cached_tokens += o.usage.cached_tokens;
        origins.extend(o.origins.iter().copied());
        errors.extend(o.errors.iter().cloned());
        attempts += o.attempts;
        duration_ms += o.duration_ms;
    }
    StepReport {
        id: id.to_string(),
        kind,
        name: name.to_string(),
        status: if answered {
            StepStatus::Answered
        } else {
            StepStatus::Unparseable
        },
        attempts,
        usage,
        duration_ms,
        // Where the answers were first obtained, so a replay reports what the recorded run did.
        source: source_label(&origins).to_string(),
        summary: None,
        artifacts: Vec::new(),
        errors,
    }
}

fn parse_verdict(word: &str) -> Verdict {
    match word {
        "pass" | "met" => Verdict::Met,
        "fail" | "unmet" => Verdict::Unmet,
        _ => Verdict::Unknown,
    }
}

/// `deployment/hats/sre.md:14`: relative to the stage directory's parent, so the report reads
/// the same wherever the stage was loaded from.
fn source_label_of(r: &Requirement, stage: &Stage) -> String {
    let base = stage.dir.parent().unwrap_or(&stage.dir);
    let file = r.source.file.strip_prefix(base).unwrap_or(&r.source.file);
    let file = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    format!("{file}:{}", r.source.line)
}

fn requirement_report(
    r: &Requirement,
    stage: &Stage,
    kind: RequirementKind,
    judged_by: &str,
) -> RequirementReport {
    RequirementReport {
        id: r.id.clone(),
        kind,
        level: r.level.as_str().to_string(),
        mandatory: r.level.is_mandatory(),
        text: r.plain_text(),
        source: source_label_of(r, stage),
        judged_by: judged_by.to_string(),
        verdict: Verdict::Unknown,
        claimed: Verdict::Unknown,
        severity: None,
        finding: String::new(),
        evidence: Vec::new(),
        note: None,
        agreement: None,
    }
}

/// One judge's word on one requirement, grounded; `unknown` with a note when the answer
/// (or the whole step) gave none.
fn sample_verdict<T: Verdicts>(
    answer: Option<&T>,
    id: &str,
    sources: &grounding::Sources,
    step: &str,
) -> SampledVerdict {
    let Some(v) = answer.and_then(|a| a.verdict_for(id)) else {
        return no_answer(step);
    };
    let claimed = parse_verdict(v.verdict);
    let (verdict, evidence, note) = sources.settle(claimed, v.evidence);
    SampledVerdict {
        claimed,
        verdict,
        finding: v.finding.to_string(),
        severity: v.severity.map(str::to_string),
        evidence,
        note,
    }
}

fn no_answer(step: &str) -> SampledVerdict {
    SampledVerdict {
        claimed: Verdict::Unknown,
        verdict: Verdict::Unknown,
        finding: String::new(),
        severity: None,
        evidence: Vec::<EvidenceReport>::new(),
        note: Some(format!("{step} gave no usable answer for this requirement")),
    }
}

/// Runs the whole stage and returns the report (not yet written).
pub async fn execute(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
) -> Result<Report, Error> {
    let stage = &plan.stage;
    let cap = plan.limits.max_artifact_bytes;
    let scrub = |s: &str| plan.scrubber.scrub(s);
    let mut warnings = plan.bindings.warnings.clone();
    let mut steps = Vec::new();
    let mut requirements = Vec::new();
    let mut produced: Vec<(String, Vec<Artifact>)> = Vec::new();

    // 1. Hats, in order; each reads the artifacts of those before it.
    for hat in &stage.hats {
        let step = hat_step(&hat.name);
        let StepMessages {
            messages,
            mut sources,
        } = context::hat_messages(&plan.prompts, stage, hat, &plan.bindings, &produced, cap)?;
        let ids: Vec<String> = hat.constraints().map(|c| c.id.clone()).collect();
        let asked: Asked<answer::HatAnswer> = ask(
            model,
            &step,
            &plan.settings,
            &messages,
            "hat_answer",
            answer::hat_schema(&ids),
            progress,
        )
        .await?;
        let mut report = step_report(
            &step,
            StepKind::Hat,
            &hat.name,
            &[&asked.outcome],
            asked.answer.is_some(),
        );
        let mut accepted = Vec::new();
        if let Some(a) = &asked.answer {
            let proposed: Vec<(String, String)> = a
                .artifacts
                .iter()
                .map(|x| (x.path.clone(), x.content.clone()))
                .collect();
            let (ok, refused) = artifacts::accept(&hat.name, &proposed);
            warnings.extend(refused);
            report.artifacts = artifacts::write(&plan.run_dir, &ok, &scrub).map_err(|e| {
                Error::io(
                    format!(
                        "writing artifacts of {step} under {}",
                        plan.run_dir.display()
                    ),
                    e,
                )
            })?;
            report.summary = Some(a.summary.clone());
            // A hat cites its own artifacts by the path it gave them.
            let own_prefix = format!("artifacts/{}/", hat.name);
            for art in &ok {
                sources.add(&art.name, &art.content);
                sources.add(art.name.trim_start_matches(&own_prefix), &art.content);
            }
            accepted = ok;
        }
        for c in hat.constraints() {
            let mut r = requirement_report(c, stage, RequirementKind::HatConstraint, &step);
            let sample = sample_verdict(asked.answer.as_ref(), &c.id, &sources, &step);
            samples::apply(&mut r, &[sample], plan.stability_threshold);
            requirements.push(r);
        }
        steps.push(report);
        produced.push((hat.name.clone(), accepted));
    }
    let all_artifacts: Vec<Artifact> = produced
        .iter()
        .flat_map(|(_, a)| a.iter().cloned())
        .collect();

    // 2. Review agents judge every check (each asked `samples` times). They are independent,
    //    so they run together; the model layer bounds the requests in flight (`--jobs`), and
    //    results keep the agents' order.
    let step_ids: Vec<String> = stage
        .review_agents
        .iter()
        .map(|a| review_step(&a.name))
        .collect();
    let mut reviews = Vec::new();
    for (agent, step) in stage.review_agents.iter().zip(&step_ids) {
        let messages = context::review_messages(
            &plan.prompts,
            stage,
            agent,
            &plan.bindings,
            &all_artifacts,
            cap,
            plan.limits.max_input_bytes,
        )?;
        let ids: Vec<String> = agent.checks.iter().map(|c| c.id.clone()).collect();
        let judge = Judge {
            step,
            kind: StepKind::Review,
            name: agent_label(agent),
            requirement_kind: RequirementKind::ReviewCheck,
            requirements: &agent.checks,
            schema_name: "review_answer",
            schema: answer::review_schema(&ids),
        };
        reviews.push((judge, messages));
    }
    let judged =
        futures::future::try_join_all(reviews.into_iter().map(|(judge, messages)| async move {
            judge_samples::<answer::ReviewAnswer>(plan, model, progress, &judge, messages).await
        }))
        .await?;
    for (report, judged) in judged {
        requirements.extend(judged);
        steps.push(report);
    }

    // 3. The completion judge rules on each completion-signal requirement.
    let prior: Vec<PriorVerdict> = requirements
        .iter()
        .map(|r| PriorVerdict {
            id: r.id.clone(),
            verdict: r.verdict.as_str().to_string(),
            finding: r.finding.clone(),
        })
        .collect();
    let messages = context::signal_messages(&plan.prompts, stage, &prior, &all_artifacts, cap)?;
    let ids: Vec<String> = stage
        .completion_signal
        .iter()
        .map(|r| r.id.clone())
        .collect();
    let judge = Judge {
        step: SIGNAL_STEP,
        kind: StepKind::Signal,
        name: "completion judge".to_string(),
        requirement_kind: RequirementKind::Signal,
        requirements: &stage.completion_signal,
        schema_name: "signal_answer",
        schema: answer::signal_schema(&ids),
    };
    let (report, judged) =
        judge_samples::<answer::SignalAnswer>(plan, model, progress, &judge, messages).await?;
    requirements.extend(judged);
    steps.push(report);

    for s in steps.iter().filter(|s| s.status == StepStatus::Unparseable) {
        warnings.push(format!(
            "{} gave no schema-valid answer after {} attempt(s); its verdicts are unknown",
            s.id, s.attempts
        ));
    }

    // 4. The gate and the report.
    let gates: Vec<String> = stage.gates.iter().map(|g| g.as_str().to_string()).collect();
    let outcome = gate::decide(&requirements, &steps, &gates, plan.policy);
    let mut usage = TokenUsage::default();
    for s in &steps {
        usage.prompt_tokens += s.usage.prompt_tokens;
        usage.completion_tokens += s.usage.completion_tokens;
        usage.cached_tokens += s.usage.cached_tokens;
    }
    Ok(Report {
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
            review_agents: stage.review_agents.iter().map(agent_label).collect(),
        },
        run: RunInfo {
            id: plan.run_id.clone(),
            model: plan.settings.model.clone(),
            record_mode: plan.record_mode.clone(),
            started_at: plan.started_at.clone(),
            prompt_digest: plan.prompts.digest().to_string(),
            samples: plan.samples,
            usage,
            duration_ms: steps.iter().map(|s| s.duration_ms).sum(),
        },
        outcome,
        steps,
        requirements,
        inputs: input_reports(&plan.bindings),
        warnings,
    })
}

/// A judging step: which requirements it rules on, and the answer schema it is asked for.
struct Judge<'a> {
    step: &'a str,
    kind: StepKind,
    name: String,
    requirement_kind: RequirementKind,
    requirements: &'a [Requirement],
    schema_name: &'static str,
    schema: serde_json::Value,
}

/// Asks a judging step `plan.samples` times (seed + k each) and combines the samples into
/// one verdict per requirement.
async fn judge_samples<T: DeserializeOwned + Verdicts>(
    plan: &RunPlan,
    model: &dyn ChatModel,
    progress: &Progress,
    judge: &Judge<'_>,
    StepMessages { messages, sources }: StepMessages,
) -> Result<(StepReport, Vec<RequirementReport>), Error> {
    // Samples differ only in their seed; they run together (bounded by the model layer).
    let asked_all: Vec<Asked<T>> = futures::future::try_join_all((0..plan.samples).map(|k| {
        let settings = samples::settings_for(&plan.settings, k);
        let messages = &messages;
        async move {
            ask(
                model,
                judge.step,
                &settings,
                messages,
                judge.schema_name,
                judge.schema.clone(),
                progress,
            )
            .await
        }
    }))
    .await?;
    let outcomes: Vec<&StructuredOutcome> = asked_all.iter().map(|a| &a.outcome).collect();
    let answered = asked_all.iter().any(|a| a.answer.is_some());
    let mut report = step_report(judge.step, judge.kind, &judge.name, &outcomes, answered);
    report.summary = asked_all
        .iter()
        .find_map(|a| a.answer.as_ref().map(|x| x.summary().to_string()));
    let mut judged = Vec::new();
    for req in judge.requirements {
        let mut r = requirement_report(req, &plan.stage, judge.requirement_kind, judge.step);
        let sampled: Vec<SampledVerdict> = asked_all
            .iter()
            .map(|a| sample_verdict(a.answer.as_ref(), &req.id, &sources, judge.step))
            .collect();
        samples::apply(&mut r, &sampled, plan.stability_threshold);
        judged.push(r);
    }
    Ok((report, judged))
}

fn agent_label(agent: &crate::definition::ReviewAgent) -> String {
    match &agent.origin {
        AgentOrigin::Own => agent.name.clone(),
        AgentOrigin::Included { stage } => format!("{} (from {stage})", agent.name),
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
