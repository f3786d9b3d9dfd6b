//! One run through its transcript: run.json, the model (live, replayed or recorded), the
//! stage sequence, the snapshot and the reports.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::finish::{finish_snapshot, github_output, SnapshotSources};
use super::prepare::Prepared;
use super::record_files::RecordFiles;
use super::windows;
use super::{blocking, Runner, TranscriptPlan};
use crate::cli::ReportArgs;
use crate::model::settings::ModelSettings;
use crate::model::transcript::{now_rfc3339, RecordMode};
use crate::model::ChatModel;
use crate::policy::{Effective, PolicyRecord};
use crate::report;
use crate::run::judges_only::Hats;
use crate::run::rundir::{
    self, InputDigest, JudgeRecord, ModelRecord, PromptsRecord, RunDir, RunRecord, StageRecord,
    EXCHANGES_FILE, RUN_FILE,
};
use crate::run::setup;
use crate::run::tool_answers::ToolAnswers;
use crate::run::{self, RunPlan};
use crate::secrets::Scrubber;
use crate::verdict::gate::GatePolicy;
use crate::Error;

/// Share of samples that must agree for a verdict to count as stable.
pub(super) const STABILITY_THRESHOLD: f64 = 0.8;

pub(super) async fn execute<W: Write + ?Sized>(
    mut prepared: Prepared,
    (mut settings, mut judge): (ModelSettings, ModelSettings),
    transcript: TranscriptPlan,
    report_args: &ReportArgs,
    samples: u32,
    runner: &Runner,
    out: &mut W,
) -> Result<i32, Error> {
    warm_up(&prepared);
    let (prices, scrubber) =
        priced_and_connected(report_args, &prepared, &mut settings, &mut judge)?;
    let prepared_workspace = prepared.workspace.clone();
    let run_dir = &transcript.run_dir;
    // Held until the reports are written: a second writer fails at once (exit 2).
    let locked = Arc::new(RunDir::open_locked(run_dir)?);
    let (checks, checks_written) = scrubbed_checks(&mut prepared, &scrubber, &transcript);
    let gate = setup::gate_policy(&report_args.gate, &prepared.config);
    let (record, record_written) = open_record(
        &locked,
        &mut prepared,
        (&settings, &judge),
        &transcript,
        (gate, samples),
        &scrubber,
    )
    .await?;
    let files = RecordFiles::new(checks_written.into_iter().chain(record_written).collect());
    windows::apply_recorded(&mut settings, &mut judge, &record.model);
    // Tokens of streamed answers show on the step's line as they arrive.
    settings.on_tokens = runner.progress.token_observer();
    judge.on_tokens = settings.on_tokens.clone();
    let model = build_model(
        &transcript,
        (&settings, &judge),
        &scrubber,
        runner,
        (prices.as_ref(), files.gate()),
    );
    let model = match model {
        Ok(model) => model,
        Err(e) => return files.failing(e).await,
    };
    let snapshot_sources = transcript.record.then(|| SnapshotSources::of(&prepared));
    let plan = run_plan(
        prepared,
        (settings, judge),
        &record,
        (samples, gate),
        &scrubber,
        prices,
        (run_dir, report_args.out.as_deref()),
    );
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return files.failing(e).await,
    };
    let snapshotting = snapshot_sources.map(|sources| {
        let (wait, dir) = (runner.batch.clone(), locked.clone());
        tokio::spawn(sources.write_early(wait, dir, scrubber.clone()))
    });
    let plan = RunPlan { checks, ..plan };
    let report = run::execute(&plan, model.as_ref(), &runner.progress).await;
    files.written().await?;
    let syncing = sync_transcript(model);
    let report = finish_snapshot(&locked, snapshotting, &plan, &scrubber, report).await?;
    let out_dir = report_args.out.clone().unwrap_or_else(|| run_dir.clone());
    // Each requirement keeps the label of the list its definition wrote it under.
    let report = publish(
        report.with_labels(&plan.stage),
        (&out_dir, &prepared_workspace),
        &transcript,
        &scrubber,
        runner,
        out,
    )
    .await?;
    super::joined(syncing.await);
    Ok(report.outcome.exit_code)
}

/// The price table (applied to both models' settings), the scrubber for everything
/// written, and one set of HTTP connections shared by the run's requests.
fn priced_and_connected(
    report_args: &ReportArgs,
    prepared: &Prepared,
    settings: &mut ModelSettings,
    judge: &mut ModelSettings,
) -> Result<(Option<Arc<crate::model::prices::Prices>>, Scrubber), Error> {
    let prices = setup::prices(report_args.prices.as_deref(), settings, judge)?;
    let scrubber = setup::scrubber(&[settings, judge], &prepared.config)?;
    setup::share_connections(settings, judge);
    Ok((prices, scrubber))
}

/// Compiles, beside the run, what its steps and reports need later: every step's
/// answer-schema validator, and the HTML report's template (while the run waits on the
/// model rather than after its last answer).
fn warm_up(prepared: &Prepared) {
    run::steps::warm_validators(&prepared.stage, prepared.checks.as_ref());
    let _ = crate::parallel::spawn_beside("report-template", report::html::warm);
}

/// Makes the transcript's last lines durable on a blocking thread, beside the snapshot and
/// the reports rather than after them (a sync that fails is a warning, as when the
/// transcript closes). The model is dropped there too.
fn sync_transcript(model: Box<dyn ChatModel>) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = model.sync() {
            tracing::warn!("{e}");
        }
    })
}

/// Writes the reports to `out_dir`, the GitHub output when asked, and the summary unless
/// quiet.
async fn publish<W: Write + ?Sized>(
    report: report::Report,
    (out_dir, workspace): (&Path, &Path),
    transcript: &TranscriptPlan,
    scrubber: &Scrubber,
    runner: &Runner,
    out: &mut W,
) -> Result<report::Report, Error> {
    let (report, written) = write_reports(report, out_dir, scrubber).await?;
    if runner.github {
        github_output(&report, workspace, out_dir, scrubber, out)?;
    }
    if !runner.quiet {
        tell(out, &report, transcript, &written, scrubber);
    }
    Ok(report)
}

/// Everything the stage sequence needs, from what was prepared and recorded.
fn run_plan(
    prepared: Prepared,
    (settings, judge): (ModelSettings, ModelSettings),
    record: &RunRecord,
    (samples, gate): (u32, GatePolicy),
    scrubber: &Scrubber,
    prices: Option<Arc<crate::model::prices::Prices>>,
    (run_dir, out_dir): (&Path, Option<&Path>),
) -> Result<RunPlan, Error> {
    let mut agent = setup::agent(&prepared.config, &prepared.workspace, scrubber)?;
    if let Some(crate::run::agent::Agent {
        tools: ToolAnswers::Live { workspace, .. },
        ..
    }) = agent.as_mut()
    {
        // This run's directory and its reports' directory do not exist for agents, wherever
        // they are (the default run directory lies inside the workspace when it is the
        // current directory); other run directories are recognised by their files.
        workspace.hide(run_dir);
        if let Some(out) = out_dir {
            workspace.hide(out);
        }
    }
    if let (Some(agent), Some(log)) = (agent.as_mut(), prepared.tool_log) {
        agent.tools = ToolAnswers::Recorded {
            log,
            scrubber: scrubber.clone(),
        };
    }
    Ok(RunPlan {
        definition_digest: prepared.definition_digest,
        bindings: prepared.bindings,
        prompts: prepared.prompts,
        settings,
        judge_settings: judge,
        limits: prepared.config.limits.clone(),
        grounding: prepared.config.grounding,
        run_dir: run_dir.to_path_buf(),
        run_id: run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_at: record.started_at.clone(),
        record_mode: record.record_mode.clone(),
        samples: samples.max(1),
        policy: gate,
        effective_policy: record.policy.clone(),
        stability_threshold: STABILITY_THRESHOLD,
        dossiers: Default::default(),
        scrubber: scrubber.clone(),
        agent,
        prices,
        stage: prepared.stage,
        checks: None,
    })
}

/// The checks scrubbed as every recorded text is, and, for a run that records, checks.json
/// being written (or a stale one removed) on a blocking thread beside run.json and the
/// context-window probe.
fn scrubbed_checks(
    prepared: &mut Prepared,
    scrubber: &Scrubber,
    transcript: &TranscriptPlan,
) -> (
    Option<crate::checks::Facts>,
    Option<tokio::task::JoinHandle<Result<(), Error>>>,
) {
    let checks = prepared
        .checks
        .take()
        .map(|f| f.scrubbed(&|s| scrubber.scrub(s)));
    let writing = transcript.record.then(|| {
        let (dir, json) = (
            transcript.run_dir.clone(),
            checks.as_ref().map(|f| f.to_json()),
        );
        tokio::task::spawn_blocking(move || record_checks(&dir, json.as_deref()))
    });
    (checks, writing)
}

fn record_checks(dir: &Path, json: Option<&[u8]>) -> Result<(), Error> {
    use crate::checks::CHECKS_FILE;
    match json {
        Some(json) => crate::safe_fs::write_file(dir, CHECKS_FILE, json, true)
            .map(drop)
            .map_err(Error::from),
        None => match std::fs::remove_file(dir.join(CHECKS_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                format!("removing {}", dir.join(CHECKS_FILE).display()),
                e,
            )),
            _ => Ok(()),
        },
    }
}

/// run.json: written for a new run (or a full re-record), kept otherwise, so a replay
/// reports the original start time and leaves the transcript byte for byte as it was.
async fn open_record(
    locked: &Arc<RunDir>,
    prepared: &mut Prepared,
    models: (&ModelSettings, &ModelSettings),
    transcript: &TranscriptPlan,
    (gate, samples): (GatePolicy, u32),
    scrubber: &Scrubber,
) -> Result<
    (
        RunRecord,
        Option<tokio::task::JoinHandle<Result<(), Error>>>,
    ),
    Error,
> {
    let run_dir = &transcript.run_dir;
    // Asked while the stage loaded, when the run looked new then (dropped, it stops asking).
    let early = prepared.windows.take();
    match RunRecord::read(run_dir) {
        Ok(existing) if transcript.mode != RecordMode::All => Ok((existing, None)),
        _ => {
            if transcript.mode == RecordMode::None {
                return Err(Error::usage(format!(
                    "{}: no {RUN_FILE}; nothing to replay",
                    run_dir.display()
                )));
            }
            // The context windows are asked of the server here, by a run about to call it,
            // and recorded, so that a replay never asks.
            let (mut settings, mut judge) = (models.0.clone(), models.1.clone());
            let windows = match early {
                Some(early) => early.windows().await,
                None => windows::ask(&settings, &judge).await,
            };
            let from = windows.apply(&mut settings, &mut judge);
            let mut record = new_record(
                prepared,
                (&settings, &judge),
                run_dir,
                samples,
                transcript.mode,
                gate,
            );
            record.model.context_from = Some(from.to_string());
            // A file and an fsync: off the async workers, which a batch's requests share,
            // and beside the first request (see `RecordFiles`).
            let (dir, scrubber, written) = (locked.clone(), scrubber.clone(), record.clone());
            let writing = tokio::task::spawn_blocking(move || written.write(&dir, &scrubber));
            Ok((record, Some(writing)))
        }
    }
}

/// The reports, every format, into `out_dir`: on a blocking thread.
async fn write_reports(
    report: report::Report,
    out_dir: &Path,
    scrubber: &Scrubber,
) -> Result<(report::Report, Vec<std::path::PathBuf>), Error> {
    let (out_dir, scrubber) = (out_dir.to_path_buf(), scrubber.clone());
    blocking(move || -> Result<_, Error> {
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
        let written = report::write_all_scrubbed(&report, &out_dir, &scrubber)?;
        Ok((report, written))
    })
    .await
}

/// The summary table and the files written, on stdout.
fn tell<W: Write + ?Sized>(
    out: &mut W,
    report: &report::Report,
    transcript: &TranscriptPlan,
    written: &[std::path::PathBuf],
    scrubber: &Scrubber,
) {
    let table = scrubber.scrub(&report::summary_table(report));
    let _ = write!(out, "{}", report::github::printable(&table));
    if transcript.mode == RecordMode::None {
        let _ = writeln!(
            out,
            "replayed offline from {}: no model was called (`source` is how each answer was obtained when it was recorded)",
            transcript.run_dir.display()
        );
    }
    for path in written {
        let _ = writeln!(out, "wrote {}", path.display());
    }
}

pub(super) fn new_record(
    p: &Prepared,
    (settings, judge): (&ModelSettings, &ModelSettings),
    run_dir: &Path,
    samples: u32,
    mode: RecordMode,
    gate: GatePolicy,
) -> RunRecord {
    let mut inputs: Vec<InputDigest> = p
        .bindings
        .all_files()
        .into_iter()
        .map(|f| InputDigest {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
            bytes: f.bytes,
        })
        .collect();
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    RunRecord {
        hatrack_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: now_rfc3339(),
        record_mode: mode.as_str().to_string(),
        stage: StageRecord {
            path: rundir::relative_to(&p.stage_dir, run_dir),
            name: p.stage.name.clone(),
            definition_digest: p.definition_digest.clone(),
        },
        workspace: rundir::relative_to(&p.workspace, run_dir),
        prompts: PromptsRecord {
            dir: p
                .prompts_dir
                .as_ref()
                .map(|d| rundir::relative_to(d, run_dir)),
            digest: p.prompts.digest_for(p.checks.is_some()).to_string(),
        },
        model: ModelRecord {
            name: settings.model.clone(),
            base_url: rundir::sanitise_url(&settings.base_url),
            temperature: settings.temperature,
            seed: settings.seed,
            max_tokens: settings.max_tokens,
            max_reasks: settings.max_reasks,
            request: settings.extra_body.clone(),
            judge: Some(JudgeRecord {
                name: judge.model.clone(),
                base_url: rundir::sanitise_url(&judge.base_url),
                context_tokens: judge
                    .context_tokens
                    .filter(|_| judge.context_tokens != settings.context_tokens),
            }),
            context_tokens: settings.context_tokens,
            context_from: None,
            stream: Some(settings.stream),
            idle_timeout: Some(humantime::format_duration(settings.idle_timeout).to_string()),
        },
        samples: samples.max(1),
        inputs,
        policy: p.provenance.as_ref().map(|provenance| {
            PolicyRecord::new(
                provenance,
                &Effective {
                    settings,
                    judge,
                    base_url: rundir::sanitise_url(&settings.base_url),
                    judge_base_url: rundir::sanitise_url(&judge.base_url),
                    key_env: setup::key_env(&p.config),
                    judge_key_env: setup::judge_key_env(&p.config),
                    stage: &rundir::relative_to(&p.stage_dir, run_dir),
                    config: &p.config,
                    grounding: p.config.grounding,
                    gate,
                },
            )
        }),
    }
}

/// The transcript around an optional live model (only built when the mode may call it, so
/// a replay opens no socket), with the budget around the live model.
pub(super) fn build_model(
    t: &TranscriptPlan,
    (settings, judge): (&ModelSettings, &ModelSettings),
    scrubber: &Scrubber,
    runner: &Runner,
    (prices, gate): (
        Option<&Arc<crate::model::prices::Prices>>,
        crate::model::transcript::RecordGate,
    ),
) -> Result<Box<dyn ChatModel>, Error> {
    let replay_from = t.replay_from.as_ref().map(|dir| dir.join(EXCHANGES_FILE));
    let record_to = t.record.then(|| t.run_dir.join(EXCHANGES_FILE));
    if let Hats::Files(dir) = &t.hats {
        let extra = (prices, gate);
        return super::hats::canned_hats(t, dir, (settings, judge), scrubber, runner, extra);
    }
    let open = || {
        runner
            .open_transcript(
                t.mode,
                (replay_from.as_deref(), record_to.as_deref()),
                (settings, judge),
                scrubber,
                prices,
            )
            .map(|model| model.recording_after(gate.clone()))
    };
    if let Hats::Replayed(hats) = &t.hats {
        return Ok(Box::new(crate::run::judges_only::JudgesOnly::new(
            hats,
            settings,
            judge,
            scrubber,
            open()?,
        )?));
    }
    Ok(Box::new(open()?))
}
