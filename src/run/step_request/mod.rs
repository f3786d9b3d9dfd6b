//! The exact request a step would send — the same code path a run uses (`hatrack render`).
//! Against a recorded run ([`against`]), upstream artifacts and earlier verdicts come from
//! that run, and the request is compared with the one it sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::RenderArgs;
use crate::config::ConfigFile;
use crate::definition::{Phase, Stage};
use crate::inputs;
use crate::model::request::build_body_with_tools;
use crate::model::{ChatMessage, ModelSettings};
use crate::prompt::Prompts;
use crate::run::context::{self, StepMessages};
use crate::run::rundir::{self, RunRecord};
use crate::run::setup;
use crate::run::steps::{self, Step, Target};
use crate::verdict::Subject;
use crate::Error;

mod against;

pub use against::compare_with_recorded;

/// A step's first request, as it would be sent now.
pub struct StepRequest {
    /// The step's id (`pipeline-engineer`, `judge/<hat>`, `signal`, …).
    pub step: String,
    /// The request body, with the tool definitions when steps are agents.
    pub body: serde_json::Value,
    pub messages: Vec<ChatMessage>,
    pub tools: Option<serde_json::Value>,
    /// What each requirement the step rules on is about, and so what its `met` needs.
    pub evidence: Vec<String>,
    /// `--against`: the run directory it was rendered against.
    pub against: Option<PathBuf>,
    /// The stage's phase files and studio fix hats: shown after the request, never sent.
    pub phases: Vec<Phase>,
    pub studio_fix_hats: Vec<String>,
}

/// The request `args.step` would send (as a run renders it), and what to show beside it.
pub fn build(args: &RenderArgs) -> Result<StepRequest, Error> {
    let against = match &args.against {
        Some(dir) => {
            let rec = RunRecord::read(dir)?;
            Some((dir.clone(), rec))
        }
        None => None,
    };
    let against = against.as_ref();
    let (workspace, config, stage) = load_target(args, against)?;
    let (settings, judge) = step_settings(args, &config, against)?;
    let prompts = Prompts::load(prompts_dir(args, against).as_deref())?;
    let bindings = inputs::bind(&stage, &workspace, &config)?;
    let run_dir = against.map(|(d, _)| d.as_path());

    let step = steps::find(&stage, &args.step).map_err(Error::usage)?;
    let (produced, prior) = match run_dir {
        Some(dir) => {
            // Only the completion judge is shown earlier verdicts (from the run's report).
            let prior = match step.target {
                Target::Signal => against::prior_verdicts(dir)?,
                _ => Vec::new(),
            };
            (against::produced_before(dir, &stage, &step)?, prior)
        }
        None => (Vec::new(), Vec::new()),
    };
    // Against a run: the findings it showed its judges.
    let checks = match run_dir {
        Some(dir) => crate::checks::Facts::read_recorded(dir)?,
        None => None,
    };
    let shown = context::Shown {
        prompts: &prompts,
        stage: &stage,
        bindings: &bindings,
        limits: &config.limits,
        rules: config.grounding,
        produced: &produced,
        prior: &prior,
        tools: config.agent.tools,
        checks: checks.as_ref(),
        dossiers: None,
    };
    let StepMessages { messages, .. } = context::messages(&step, &shown)?;
    let spec = step.schema(&stage);
    let evidence = evidence_rules(&step, &stage);
    let settings = step.sized(if step.is_judge() { &judge } else { &settings }, &stage);
    let step = step.id;
    // The first turn's request: with the tool definitions when steps are agents.
    let tools = config
        .agent
        .tools
        .then(crate::tools::Workspace::definitions);
    let body = build_body_with_tools(&settings, &messages, Some(&spec), tools.as_ref());
    Ok(StepRequest {
        step,
        body,
        messages,
        tools,
        evidence,
        against: run_dir.map(Path::to_path_buf),
        phases: stage.phases.clone(),
        studio_fix_hats: stage.studio_fix_hats.clone(),
    })
}

/// The workspace, its config and the stage to render: from the arguments, else from the
/// run rendered against (its recorded workspace and stage), else the defaults.
fn load_target(
    args: &RenderArgs,
    against: Option<&(PathBuf, RunRecord)>,
) -> Result<(PathBuf, ConfigFile, Stage), Error> {
    let workspace = match (&args.workspace, against) {
        (Some(w), _) => setup::workspace_dir(Some(w))?,
        (None, Some((dir, rec))) => {
            setup::workspace_dir(Some(&rundir::resolve_recorded(dir, &rec.workspace)))?
        }
        (None, None) => setup::workspace_dir(None)?,
    };
    // The configuration a run would use: policy with the workspace merged onto it (the
    // same refusals), or, against a run, the policy that run recorded.
    let config = match against {
        Some((_, rec)) => crate::run::lifecycle::replay_config(rec, &workspace)?,
        None => {
            let file = crate::policy::PolicyFile::from_args(args.trust.policy.as_deref())?;
            let trusted = args.trust.trust_workspace_config;
            crate::policy::resolve(file.as_ref(), &workspace, trusted)?.config
        }
    };
    let stage_dir = match against {
        Some((dir, rec)) if args.stage.stage.is_none() && args.stage.studio.is_none() => {
            rundir::resolve_recorded(dir, &rec.stage.path)
        }
        _ => setup::stage_dir(&args.stage, &config, &workspace)?,
    };
    let stage = setup::load_stage(&stage_dir)?.stage;
    Ok((workspace, config, stage))
}

/// The producer's and the judge's model settings. Against a run, the run's recorded
/// settings, so the request compares like for like; `--model`/`--judge-model` still win.
fn step_settings(
    args: &RenderArgs,
    config: &ConfigFile,
    against: Option<&(PathBuf, RunRecord)>,
) -> Result<(ModelSettings, ModelSettings), Error> {
    let model_args = crate::cli::ModelArgs {
        model: args.model.clone(),
        judge_model: args.judge_model.clone(),
        ..Default::default()
    };
    let mut settings = setup::model_settings(&model_args, config)?;
    let mut judge = setup::judge_settings(&model_args, config, &settings)?;
    if let Some((_, rec)) = against {
        judge = setup::apply_record(&mut settings, &rec.model);
        if let Some(m) = &args.model {
            settings.model = m.clone();
        }
        if let Some(j) = &args.judge_model {
            judge.model = j.clone();
        }
    }
    Ok((settings, judge))
}

/// The prompts directory: `--prompts`, else the one the run rendered against used.
fn prompts_dir(args: &RenderArgs, against: Option<&(PathBuf, RunRecord)>) -> Option<PathBuf> {
    args.prompts.clone().or_else(|| {
        against.and_then(|(dir, rec)| {
            rec.prompts
                .dir
                .as_ref()
                .map(|p| rundir::resolve_recorded(dir, p))
        })
    })
}

/// What each requirement the step rules on is about, and so what its `met` needs.
fn evidence_rules(step: &Step<'_>, stage: &crate::definition::Stage) -> Vec<String> {
    let hat_names: Vec<String> = stage.hats.iter().map(|h| h.name.clone()).collect();
    step.requirements(stage)
        .iter()
        .map(|r| {
            let about = Subject::of(step.requirement_kind(), &r.plain_text(), &hat_names);
            format!(
                "{} ({}): {} — {}",
                r.id,
                r.level.as_str(),
                about.describe(),
                about.evidence_rule()
            )
        })
        .collect()
}

/// Without `--against`: the request as JSON, or its messages and tool signatures as text
/// followed by the evidence rules, the phases and the studio fix hats (not sent).
pub fn write_request(out: &mut dyn Write, json: bool, request: &StepRequest) {
    let StepRequest {
        body,
        messages,
        tools,
        evidence,
        phases,
        studio_fix_hats,
        ..
    } = request;
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(body).expect("JSON values serialise")
        );
        return;
    }
    write_messages(out, messages, tools.as_ref());
    if !evidence.is_empty() {
        let _ = writeln!(
            out,
            "──── evidence (not sent: how hatrack grounds this step's verdicts) ────"
        );
        for line in evidence {
            let _ = writeln!(out, "{line}");
        }
    }
    write_phases(out, phases, studio_fix_hats);
}

/// The stage's phase files and studio fix hats, after the request: shown, never sent (the
/// method runs them in its elaborate, execute and fix phases; hatrack runs none).
fn write_phases(out: &mut dyn Write, phases: &[Phase], studio_fix_hats: &[String]) {
    if phases.is_empty() && studio_fix_hats.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "──── phases and fix hats (not sent: hatrack runs neither) ────"
    );
    for p in phases {
        let _ = writeln!(out, "phase {} ({}):\n{}", p.name, p.file.display(), p.body);
    }
    if !studio_fix_hats.is_empty() {
        let _ = writeln!(out, "studio fix hats: {}", studio_fix_hats.join(", "));
    }
}

/// The messages, then the tool signatures.
fn write_messages(
    out: &mut dyn Write,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
) {
    for m in messages {
        let _ = writeln!(out, "──── {} ────\n{}\n", m.role, m.content);
    }
    if let Some(tools) = tools {
        let _ = writeln!(out, "──── tools ────");
        for t in tools.as_array().into_iter().flatten() {
            let f = &t["function"];
            let params: Vec<&str> = f["parameters"]["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            let _ = writeln!(
                out,
                "{}({}) — {}",
                f["name"].as_str().unwrap_or_default(),
                params.join(", "),
                f["description"].as_str().unwrap_or_default()
            );
        }
    }
}
