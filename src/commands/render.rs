//! `hatrack render`: the exact request a step would send — the same code path a run uses.
//! With `--against RUN`, upstream artifacts and earlier verdicts come from that run, and the
//! output is the difference between what would be sent now and what that run sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::RenderArgs;
use crate::config::ConfigFile;
use crate::definition::Stage;
use crate::inputs;
use crate::model::request::build_body_with_tools;
use crate::model::transcript::read_exchanges;
use crate::model::{ChatMessage, ModelSettings};
use crate::prompt::Prompts;
use crate::report::Report;
use crate::run::artifacts::Artifact;
use crate::run::context::{self, PriorVerdict, StepMessages};
use crate::run::rundir::{self, RunRecord, EXCHANGES_FILE};
use crate::run::setup;
use crate::run::steps::{self, Step, Target};
use crate::verdict::Subject;
use crate::Error;

pub fn render(args: &RenderArgs, out: &mut dyn Write) -> Result<i32, Error> {
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
                Target::Signal => prior_verdicts(dir)?,
                _ => Vec::new(),
            };
            (produced_before(dir, &stage, &step)?, prior)
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
    };
    let StepMessages { messages, .. } = context::messages(&step, &shown)?;
    let spec = step.schema(&stage);
    let evidence = evidence_rules(&step, &stage);
    let settings = if step.is_judge() { &judge } else { &settings };
    let step = step.id;
    // The first turn's request: with the tool definitions when steps are agents.
    let tools = config
        .agent
        .tools
        .then(crate::tools::Workspace::definitions);
    let body = build_body_with_tools(settings, &messages, Some(&spec), tools.as_ref());

    let Some(dir) = run_dir else {
        write_request(out, args.json, &body, &messages, tools.as_ref());
        if !args.json && !evidence.is_empty() {
            let _ = writeln!(
                out,
                "──── evidence (not sent: how hatrack grounds this step's verdicts) ────"
            );
            for line in &evidence {
                let _ = writeln!(out, "{line}");
            }
        }
        if !args.json {
            write_phases(out, &stage);
        }
        return Ok(0);
    };
    compare_with_recorded(out, dir, &step, &body)
}

/// The stage's phase files and studio fix hats, after the request: shown, never sent (the
/// method runs them in its elaborate, execute and fix phases; hatrack runs none).
fn write_phases(out: &mut dyn Write, stage: &crate::definition::Stage) {
    if stage.phases.is_empty() && stage.studio_fix_hats.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "──── phases and fix hats (not sent: hatrack runs neither) ────"
    );
    for p in &stage.phases {
        let _ = writeln!(out, "phase {} ({}):\n{}", p.name, p.file.display(), p.body);
    }
    if !stage.studio_fix_hats.is_empty() {
        let _ = writeln!(out, "studio fix hats: {}", stage.studio_fix_hats.join(", "));
    }
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

/// Without `--against`: the request as JSON, or its messages and tool signatures as text.
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

fn write_request(
    out: &mut dyn Write,
    json: bool,
    body: &serde_json::Value,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
) {
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(body).expect("JSON values serialise")
        );
        return;
    }
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

/// With `--against`: the difference between the step's first recorded request and the one
/// it would send now. Exit 0 when identical, 1 when it differs or none was recorded.
fn compare_with_recorded(
    out: &mut dyn Write,
    dir: &Path,
    step: &str,
    body: &serde_json::Value,
) -> Result<i32, Error> {
    let recorded = read_exchanges(&dir.join(EXCHANGES_FILE))?;
    let Some(old) = recorded.iter().find(|e| e.step == step && e.attempt == 1) else {
        let _ = writeln!(
            out,
            "{step}: {} has no recorded request for this step",
            dir.display()
        );
        return Ok(1);
    };
    let old_text = pretty(&old.request);
    let new_text = pretty(body);
    if old_text == new_text {
        let _ = writeln!(
            out,
            "{step}: no change — the request is identical to the one recorded in {}",
            dir.display()
        );
        return Ok(0);
    }
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    let _ = write!(
        out,
        "{}",
        diff.unified_diff().context_radius(3).header(
            &format!("{step} (recorded in {})", dir.display()),
            &format!("{step} (now)")
        )
    );
    Ok(1)
}

/// Message text with its newlines shown as lines, so a changed sentence is one changed line.
fn pretty(body: &serde_json::Value) -> String {
    serde_json::to_string_pretty(body)
        .expect("JSON values serialise")
        .replace("\\n", "\\n\n")
}

/// The artifacts a step would have been shown in that run: a hat sees those of the hats
/// before it, every judge sees all of them. One that cannot be read is an error (see
/// [`hat_artifacts`]).
fn produced_before(
    run_dir: &Path,
    stage: &Stage,
    step: &Step<'_>,
) -> Result<Vec<(String, Vec<Artifact>)>, Error> {
    let hats = match step.target {
        Target::Hat(hat) => {
            let index = stage
                .hats
                .iter()
                .position(|h| h.name == hat.name)
                .unwrap_or(0);
            &stage.hats[..index]
        }
        _ => &stage.hats[..],
    };
    hats.iter()
        .map(|h| Ok((h.name.clone(), hat_artifacts(run_dir, &h.name)?)))
        .collect()
}

/// A hat's artifacts as a run wrote them, in name order (the order a run quotes them in).
/// One that cannot be read (or listed) is an error naming it: rendering without it would
/// show a request that differs from the recorded one for a reason that is not a change.
fn hat_artifacts(run_dir: &Path, hat: &str) -> Result<Vec<Artifact>, Error> {
    let root = run_dir.join("artifacts").join(hat);
    let unreadable = |path: &Path, why: String| {
        Error::usage(format!(
            "{}: an artifact of hat `{hat}` in the run rendered against cannot be read ({why}); the request would differ from the recorded one for a reason that is not a change — restore the file from where the run directory came from, or render without --against",
            path.display()
        ))
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = match entry {
            Ok(e) => e,
            // No artifacts directory: the hat wrote none.
            Err(e)
                if e.depth() == 0
                    && e.io_error()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                break
            }
            Err(e) => {
                let path = e.path().unwrap_or(&root).to_path_buf();
                return Err(unreadable(&path, e.to_string()));
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let rel: Vec<String> = entry
            .path()
            .strip_prefix(&root)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let content = crate::safe_fs::read_bounded_string(
            entry.path(),
            crate::safe_fs::Kind::RUN_FILE,
            crate::safe_fs::Links::Within(run_dir),
        )
        .map_err(|e| unreadable(entry.path(), e.why.to_string()))?;
        out.push(Artifact {
            name: format!("artifacts/{hat}/{}", rel.join("/")),
            content,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The verdicts a run showed its completion judge, from its report.json. A missing or
/// unreadable report is an error naming the file: rendering without those verdicts would
/// show a request that differs from the recorded one for a reason that is not a change.
fn prior_verdicts(run_dir: &Path) -> Result<Vec<PriorVerdict>, Error> {
    let path = run_dir.join("report.json");
    let text = crate::safe_fs::read_bounded_string(
        &path,
        crate::safe_fs::Kind::RUN_FILE,
        crate::safe_fs::Links::Never,
    )
    .map_err(|e| {
        Error::usage(format!(
            "{e}; `render signal --against` needs the verdicts that run showed its completion judge (a run that stopped early has none: `hatrack run --resume {}` finishes it)",
            run_dir.display()
        ))
    })?;
    let report = serde_json::from_str::<Report>(&text).map_err(|e| {
        Error::usage(format!(
            "{}:{}: not a report this hatrack can read: {e}; re-create it with `hatrack replay {}`",
            path.display(),
            e.line(),
            run_dir.display()
        ))
    })?;
    Ok(report
        .requirements
        .iter()
        .filter(|r| r.kind != crate::report::RequirementKind::Signal)
        .map(|r| PriorVerdict {
            id: r.id.clone(),
            verdict: r.shown_verdict().as_str().into(),
            finding: r.finding.clone(),
        })
        .collect())
}
