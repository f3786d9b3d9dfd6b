//! `hatrack render`: the exact request a step would send — the same code path a run uses.
//! With `--against RUN`, upstream artifacts and earlier verdicts come from that run, and the
//! output is the difference between what would be sent now and what that run sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::RenderArgs;
use crate::commands::setup;
use crate::config::ConfigFile;
use crate::definition::Stage;
use crate::inputs;
use crate::model::request::{build_body, JsonSchemaSpec};
use crate::model::transcript::read_exchanges;
use crate::prompt::Prompts;
use crate::report::Report;
use crate::run::artifacts::Artifact;
use crate::run::context::{self, PriorVerdict, StepMessages};
use crate::run::rundir::{self, RunRecord, EXCHANGES_FILE};
use crate::run::{answer, hat_step, review_step, SIGNAL_STEP};
use crate::Error;

pub fn render(args: &RenderArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let against = match &args.against {
        Some(dir) => {
            let rec = RunRecord::read(dir)?;
            setup::check_record(dir, &rec)?;
            Some((dir.clone(), rec))
        }
        None => None,
    };
    let workspace = match (&args.workspace, &against) {
        (Some(w), _) => setup::workspace_dir(Some(w))?,
        (None, Some((dir, rec))) => {
            setup::workspace_dir(Some(&rundir::resolve_recorded(dir, &rec.workspace)))?
        }
        (None, None) => setup::workspace_dir(None)?,
    };
    let config = ConfigFile::load(&workspace)?;
    let stage_dir = match &against {
        Some((dir, rec)) if args.stage.stage.is_none() && args.stage.studio.is_none() => {
            rundir::resolve_recorded(dir, &rec.stage.path)
        }
        _ => setup::stage_dir(&args.stage, &config, &workspace)?,
    };
    let stage = setup::load_stage(&stage_dir)?.stage;
    let mut settings = setup::model_settings(
        &crate::cli::ModelArgs {
            model: args.model.clone(),
            ..Default::default()
        },
        &config,
    )?;
    let prompts_dir = args.prompts.clone().or_else(|| {
        against.as_ref().and_then(|(dir, rec)| {
            rec.prompts
                .dir
                .as_ref()
                .map(|p| rundir::resolve_recorded(dir, p))
        })
    });
    if let Some((_, rec)) = &against {
        setup::apply_record(&mut settings, &rec.model);
        if let Some(m) = &args.model {
            settings.model = m.clone();
        }
    }
    let prompts = Prompts::load(prompts_dir.as_deref())?;
    let bindings = inputs::bind(&stage, &workspace, &config)?;
    let run_dir = against.as_ref().map(|(d, _)| d.as_path());
    let cap = config.limits.max_artifact_bytes;

    let (step, StepMessages { messages, .. }, spec) = step_messages(
        &args.hat,
        &stage,
        &prompts,
        &bindings,
        run_dir,
        cap,
        config.limits.max_input_bytes,
    )?;
    let body = build_body(&settings, &messages, Some(&spec));

    let Some(dir) = run_dir else {
        if args.json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&body).expect("JSON values serialise")
            );
        } else {
            for m in &messages {
                let _ = writeln!(out, "──── {} ────\n{}\n", m.role, m.content);
            }
        }
        return Ok(0);
    };
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
    let new_text = pretty(&body);
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

/// Which step HAT names, its messages and its answer schema.
fn step_messages(
    name: &str,
    stage: &Stage,
    prompts: &Prompts,
    bindings: &inputs::Bindings,
    run_dir: Option<&Path>,
    cap: usize,
    input_budget: usize,
) -> Result<(String, StepMessages, JsonSchemaSpec), Error> {
    let name = name.strip_prefix("hat/").unwrap_or(name);
    if name == SIGNAL_STEP {
        let artifacts = run_dir.map(|d| all_artifacts(d, stage)).unwrap_or_default();
        let prior = match run_dir {
            Some(dir) => prior_verdicts(dir)?,
            None => Vec::new(),
        };
        let ids = stage
            .completion_signal
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>();
        let m = context::signal_messages(prompts, stage, &prior, &artifacts, cap)?;
        return Ok((
            SIGNAL_STEP.into(),
            m,
            JsonSchemaSpec {
                name: "signal_answer".into(),
                schema: answer::signal_schema(&ids),
            },
        ));
    }
    if let Some(agent_name) = name.strip_prefix("review/") {
        let agent = stage
            .review_agents
            .iter()
            .find(|a| a.name == agent_name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "no review agent {agent_name:?} in stage {}; agents: {}",
                    stage.name,
                    stage
                        .review_agents
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let artifacts = run_dir.map(|d| all_artifacts(d, stage)).unwrap_or_default();
        let ids = agent
            .checks
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>();
        let m = context::review_messages(
            prompts,
            stage,
            agent,
            bindings,
            &artifacts,
            cap,
            input_budget,
        )?;
        return Ok((
            review_step(&agent.name),
            m,
            JsonSchemaSpec {
                name: "review_answer".into(),
                schema: answer::review_schema(&ids),
            },
        ));
    }
    let Some(index) = stage.hats.iter().position(|h| h.name == name) else {
        return Err(Error::usage(format!(
            "no hat {name:?} in stage {}; try one of: {}, review/<agent>, signal",
            stage.name,
            stage
                .hats
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let hat = &stage.hats[index];
    let upstream: Vec<(String, Vec<Artifact>)> = stage.hats[..index]
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                run_dir
                    .map(|d| hat_artifacts(d, &h.name))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let ids = hat.constraints().map(|c| c.id.clone()).collect::<Vec<_>>();
    let m = context::hat_messages(prompts, stage, hat, bindings, &upstream, cap)?;
    Ok((
        hat_step(&hat.name),
        m,
        JsonSchemaSpec {
            name: "hat_answer".into(),
            schema: answer::hat_schema(&ids),
        },
    ))
}

/// A hat's artifacts as a run wrote them, in name order (the order a run quotes them in).
fn hat_artifacts(run_dir: &Path, hat: &str) -> Vec<Artifact> {
    let root = run_dir.join("artifacts").join(hat);
    let mut out: Vec<Artifact> = walkdir::WalkDir::new(&root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel: PathBuf = e.path().strip_prefix(&root).ok()?.to_path_buf();
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let content = std::fs::read_to_string(e.path()).ok()?;
            Some(Artifact {
                name: format!("artifacts/{hat}/{rel}"),
                content,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn all_artifacts(run_dir: &Path, stage: &Stage) -> Vec<Artifact> {
    stage
        .hats
        .iter()
        .flat_map(|h| hat_artifacts(run_dir, &h.name))
        .collect()
}

/// The verdicts a run showed its completion judge, from its report.json. A missing or
/// unreadable report is an error naming the file: rendering without those verdicts would
/// show a request that differs from the recorded one for a reason that is not a change.
fn prior_verdicts(run_dir: &Path) -> Result<Vec<PriorVerdict>, Error> {
    let path = run_dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "{}: {e}; `render signal --against` needs the verdicts that run showed its completion judge (a run that stopped early has none: `hatrack run --resume {}` finishes it)",
            path.display(),
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
            verdict: r.verdict.as_str().into(),
            finding: r.finding.clone(),
        })
        .collect())
}
