//! `hatrack rejudge RUN --out DIR`: the judging steps of a recorded run (constraint judges,
//! review agents, completion judge) asked again — with new `--prompts`, `--judge-model`, or
//! a policy file's grounding rules — while every hat step replays from RUN byte for byte.
//! A hat whose request would differ (its template or inputs changed) stops the rejudge with
//! a replay miss (exit 4) before any hat is paid for again.

use std::io::Write;
use std::path::Path;

use super::execute::execute;
use super::prepare::{preflight_render, prepare};
use super::{Runner, TranscriptPlan};
use crate::cli::{GlobalArgs, RejudgeArgs, RunArgs};
use crate::config::ConfigFile;
use crate::model::settings::ModelSettings;
use crate::model::transcript::RecordMode;
use crate::run::replay_sources::{self, Overrides};
use crate::run::rundir::{RunRecord, EXCHANGES_FILE};
use crate::run::setup;
use crate::Error;

/// The run flags a rejudge resolves its configuration with (policy file, judge flags).
fn run_args(args: &RejudgeArgs, workspace: &Path) -> RunArgs {
    RunArgs {
        workspaces: vec![workspace.to_path_buf()],
        manifest: None,
        shard: None,
        stage: Default::default(),
        model: args.model.clone(),
        transcript: Some(args.out.clone()),
        record_mode: None,
        from_transcript: None,
        resume: None,
        report: crate::cli::ReportArgs {
            prompts: args.prompts.clone(),
            ..Default::default()
        },
        samples: None,
        trust: args.trust.clone(),
        evidence: Vec::new(),
        run_checks: Vec::new(),
        check_timeout: None,
        without_checks: false,
    }
}

pub async fn rejudge(
    args: &RejudgeArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let run = &args.run;
    let record = RunRecord::read(run)?;
    if let Some(m) = args
        .model
        .model
        .as_ref()
        .filter(|m| **m != record.model.name)
    {
        return Err(Error::usage(format!(
            "--model {m}: a rejudge keeps the recorded hats ({}); only the judges change (--judge-model)",
            record.model.name
        )));
    }
    if args.out.join(EXCHANGES_FILE).exists() || same_dir(&args.out, run) {
        return Err(Error::usage(format!(
            "{} already holds a run: choose a new --out DIR (the recorded run is never modified)",
            args.out.display()
        )));
    }
    let sources = replay_sources::resolve(
        run,
        &record,
        Overrides {
            workspace: args.workspace.clone(),
            stage: None,
            prompts: args.prompts.clone(),
        },
    )?;
    let workspace = setup::workspace_dir(Some(&sources.workspace))?;
    let run_args = run_args(args, &workspace);
    let (config, provenance) = setup::run_config(&run_args, &workspace)?;
    let (settings, judge) = settings(args, &record, &config)?;
    let mut prepared = prepare(
        sources.stage_dir,
        workspace,
        config,
        sources.prompts_dir,
        None,
    )?;
    prepared.provenance = Some(provenance);
    prepared.snapshot = sources.snapshot;
    preflight_render(&prepared)?;
    let transcript = TranscriptPlan {
        run_dir: args.out.clone(),
        mode: RecordMode::NewEpisodes,
        replay_from: Some(run.clone()),
        record: true,
        hats: crate::run::judges_only::Hats::Replayed(run.clone()),
    };
    let report_args = crate::cli::ReportArgs {
        prompts: args.prompts.clone(),
        gate: args.gate.clone(),
        ..Default::default()
    };
    let runner = Runner::single(global, &report_args);
    execute(
        prepared,
        (settings, judge),
        transcript,
        &report_args,
        record.samples,
        &runner,
        out,
    )
    .await
}

/// The recorded producing model (its requests must match); the judge as the flags say, else
/// the recorded one at the flags' endpoint.
fn settings(
    args: &RejudgeArgs,
    record: &RunRecord,
    config: &ConfigFile,
) -> Result<(ModelSettings, ModelSettings), Error> {
    let mut settings = setup::model_settings(&args.model, config)?;
    let recorded_judge = setup::apply_record(&mut settings, &record.model);
    let judge = if args.model.judge_model.is_some() || args.model.judge_base_url.is_some() {
        setup::judge_settings(&args.model, config, &settings)?
    } else {
        ModelSettings {
            base_url: settings.base_url.clone(),
            ..recorded_judge
        }
    };
    Ok((settings, judge))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
