//! `hatrack run` and `hatrack replay`: resolve everything, bind inputs and render every
//! prompt (preflight, before any model call), then run the stage through the transcript and
//! write the reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{GlobalArgs, RecordModeArg, ReplayArgs, ReportArgs, RunArgs};
use crate::config::ConfigFile;
use crate::model::settings::ModelSettings;
use crate::model::transcript::{RecordMode, TranscriptModel};
use crate::model::SharedTransport;
use crate::run::judges_only::Hats;
use crate::run::progress::Progress;
use crate::run::replay_sources;
use crate::run::rundir::{self, RunRecord, EXCHANGES_FILE, RUN_FILE};
use crate::run::setup;
use crate::secrets::Scrubber;
use crate::Error;

mod execute;
mod finish;
mod hats;
mod prepare;
mod record_files;
pub mod rejudge;
mod resume;
mod shared;
mod windows;

use execute::execute;
use prepare::{gather_checks, preflight_render, prepare};
use resume::check_resume_flags;

pub(crate) use finish::{append_step_summary, github_enabled, on_github_actions};
pub(crate) use shared::BatchShared;

/// How the transcript is used.
pub(super) struct TranscriptPlan {
    pub(super) run_dir: PathBuf,
    pub(super) mode: RecordMode,
    /// Exchanges to replay from (this run's own, or another run's with --from-transcript).
    pub(super) replay_from: Option<PathBuf>,
    /// Append to this run's exchanges.jsonl (false: replay only, the transcript is untouched).
    pub(super) record: bool,
    /// Where the hat steps' answers come from (asked; replayed from a recorded run for
    /// `rejudge`; an eval case's fixed artifacts).
    pub(super) hats: Hats,
}

/// How a run is carried out beyond its own arguments: shared by the runs of a batch.
pub(crate) struct Runner {
    /// No summary on stdout, no progress.
    pub quiet: bool,
    /// The requests-in-flight limit and HTTP connections shared by every run of a batch
    /// (`None`: the run's own).
    pub transport: Option<SharedTransport>,
    pub progress: Progress,
    /// GitHub Actions annotations and step summary (off for the runs of a batch).
    pub github: bool,
    /// What the runs of a batch share besides the request limit (`None`: a run alone).
    pub batch: Option<Arc<BatchShared>>,
}

impl Runner {
    fn single(global: &GlobalArgs, report: &ReportArgs) -> Runner {
        Runner {
            quiet: global.quiet,
            transport: None,
            progress: Progress::new(global.quiet),
            github: github_enabled(report),
            batch: None,
        }
    }

    /// A run's transcript in `mode` over these exchange files, around a live model (built
    /// only when the mode may call it) for the hats' and the judges' settings.
    fn open_transcript(
        &self,
        mode: RecordMode,
        (replay_from, record_to): (Option<&Path>, Option<&Path>),
        (settings, judge): (&ModelSettings, &ModelSettings),
        scrubber: &Scrubber,
        prices: Option<&Arc<crate::model::prices::Prices>>,
    ) -> Result<TranscriptModel, crate::model::ModelError> {
        TranscriptModel::open(
            mode,
            replay_from,
            record_to,
            settings,
            Some(judge),
            scrubber.clone(),
            crate::model::Handles {
                shared: self.transport.as_ref(),
                prices,
            },
        )
    }
}

pub async fn run(args: &RunArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    // A resumed run takes its stage, workspace and request settings from its run.json.
    let resumed = match &args.resume {
        Some(dir) => {
            let rec = RunRecord::read(dir)?;
            check_resume_flags(args, &rec, dir)?;
            Some(rec)
        }
        None => None,
    };
    let workspace = match (args.workspace(), &resumed, &args.resume) {
        (Some(w), _, _) => setup::workspace_dir(Some(w))?,
        (None, Some(rec), Some(dir)) => {
            setup::workspace_dir(Some(&rundir::resolve_recorded(dir, &rec.workspace)))?
        }
        _ => setup::workspace_dir(None)?,
    };
    let (config, provenance) = setup::run_config(args, &workspace)?;
    let stage_dir = match (&resumed, &args.resume) {
        (Some(rec), Some(dir)) if args.stage.stage.is_none() && args.stage.studio.is_none() => {
            rundir::resolve_recorded(dir, &rec.stage.path)
        }
        _ => setup::stage_dir(&args.stage, &config, &workspace)?,
    };
    let mut settings = setup::model_settings(&args.model, &config)?;
    let mut judge = setup::judge_settings(&args.model, &config, &settings)?;
    if let Some(rec) = &resumed {
        judge = setup::apply_record(&mut settings, &rec.model);
    }
    let transcript = transcript_plan(args, &workspace)?;
    setup::share_connections(&mut settings, &mut judge);
    let early_windows = early_windows(&transcript, (&settings, &judge));
    // Loading, binding and preflight are CPU and file work: on a blocking thread, so that
    // this one asks the windows meanwhile.
    let owned_args = args.clone();
    let mut prepared = blocking(move || {
        prepared_run(
            &owned_args,
            (stage_dir, workspace),
            (config, provenance),
            None,
        )
    })
    .await?;
    prepared.windows = early_windows;

    // A resumed run asks as many samples as it recorded (flags that differ were refused).
    let samples = match &resumed {
        Some(rec) => rec.samples,
        None => args.samples.unwrap_or(1),
    };
    let runner = Runner::single(global, &args.report);
    execute(
        prepared,
        (settings, judge),
        transcript,
        &args.report,
        samples,
        &runner,
        out,
    )
    .await
}

/// A run loaded, bound, its checks gathered (a resumed run's as it recorded them) and every
/// step rendered: CPU and file work, which callers run on a blocking thread.
fn prepared_run(
    args: &RunArgs,
    (stage_dir, workspace): (PathBuf, PathBuf),
    (config, provenance): (ConfigFile, crate::policy::Provenance),
    batch: Option<&BatchShared>,
) -> Result<prepare::Prepared, Error> {
    let prompts_dir = args.report.prompts.clone();
    let mut prepared = prepare(stage_dir, workspace, config, prompts_dir, batch)?;
    prepared.provenance = Some(provenance);
    prepared.checks = match &args.resume {
        Some(dir) => crate::checks::Facts::read_recorded(dir)?,
        None => gather_checks(&mut prepared, args)?,
    };
    preflight_render(&prepared)?;
    Ok(prepared)
}

/// The context windows, asked while the stage loads when the run will record a new run.json
/// and ask them anyway (as `execute` does): not for a replay, a run directory whose run.json
/// stands (a resumed run's; any unless `--record-mode all`), a window set in
/// `[model] context_tokens`, or settings no request could go out with (no key for a remote
/// endpoint: the run fails on that).
fn early_windows(
    transcript: &TranscriptPlan,
    (settings, judge): (&ModelSettings, &ModelSettings),
) -> Option<windows::EarlyWindows> {
    let recorded = transcript.run_dir.join(RUN_FILE).exists();
    if transcript.mode == RecordMode::None
        || (recorded && transcript.mode != RecordMode::All)
        || settings.context_tokens.is_some()
    {
        return None;
    }
    crate::model::openai::shared_http_client(settings)?;
    crate::model::openai::shared_http_client(judge)?;
    Some(windows::EarlyWindows::start(settings, judge))
}

/// Where a single run reads and writes its transcript: `--resume`, `--from-transcript`, or a
/// new run directory as `--record-mode` says.
fn transcript_plan(args: &RunArgs, workspace: &Path) -> Result<TranscriptPlan, Error> {
    let plan = if let Some(dir) = &args.resume {
        TranscriptPlan {
            run_dir: dir.clone(),
            mode: RecordMode::NewEpisodes,
            replay_from: Some(dir.clone()),
            record: true,
            hats: Hats::Asked,
        }
    } else if let Some(old) = &args.from_transcript {
        let new = args
            .transcript
            .clone()
            .unwrap_or_else(|| default_run_dir(workspace));
        if same_dir(old, &new) {
            return Err(Error::usage(format!(
                "--from-transcript {} and --transcript name the same directory; the old run is never modified: choose a new --transcript DIR (or use --resume to continue a run)",
                old.display()
            )));
        }
        if new.join(EXCHANGES_FILE).is_file() {
            return Err(Error::usage(format!(
                "{} already holds a run; choose a new --transcript DIR",
                new.display()
            )));
        }
        refuse_foreign_dir(&new, &[EXCHANGES_FILE, RUN_FILE])?;
        if !old.join(EXCHANGES_FILE).is_file() {
            return Err(Error::usage(format!(
                "{}: no exchanges.jsonl; is it a run directory?",
                old.display()
            )));
        }
        TranscriptPlan {
            run_dir: new,
            mode: RecordMode::NewEpisodes,
            replay_from: Some(old.clone()),
            record: true,
            hats: Hats::Asked,
        }
    } else {
        let run_dir = args
            .transcript
            .clone()
            .unwrap_or_else(|| default_run_dir(workspace));
        refuse_foreign_dir(&run_dir, &[EXCHANGES_FILE, RUN_FILE])?;
        refuse_another_workspaces_run(&run_dir, workspace)?;
        recording_plan(args, run_dir)
    };
    Ok(plan)
}

/// A new run (or a re-run into the same directory) as `--record-mode` says.
pub(super) fn recording_plan(args: &RunArgs, run_dir: PathBuf) -> TranscriptPlan {
    let mode = match args.record_mode.unwrap_or_default() {
        RecordModeArg::None => RecordMode::None,
        RecordModeArg::Once => RecordMode::Once,
        RecordModeArg::NewEpisodes => RecordMode::NewEpisodes,
        RecordModeArg::All => RecordMode::All,
    };
    TranscriptPlan {
        replay_from: Some(run_dir.clone()),
        run_dir,
        mode,
        record: mode != RecordMode::None,
        hats: Hats::Asked,
    }
}

/// One workspace of a batch: a fresh run (or a re-run as `--record-mode` says) into
/// `run_dir`, with the batch's shared limit and progress.
pub(crate) async fn run_member<W: Write + ?Sized>(
    args: &RunArgs,
    (workspace, hats): (&Path, &Hats),
    run_dir: PathBuf,
    runner: &Runner,
    out: &mut W,
) -> Result<i32, Error> {
    // Loading, binding and preflight are CPU and file work: on a blocking thread, so the
    // runtime's workers keep the batch's requests in flight moving meanwhile.
    let (member_args, workspace) = (args.clone(), workspace.to_path_buf());
    let batch = runner.batch.clone();
    let turn = match &runner.batch {
        Some(b) => Some(b.turn().await),
        None => None,
    };
    let prepared = blocking(move || -> Result<_, Error> {
        let args = member_args;
        let workspace = setup::workspace_dir(Some(&workspace))?;
        let (config, provenance) = setup::run_config(&args, &workspace)?;
        let stage_dir = setup::stage_dir(&args.stage, &config, &workspace)?;
        let settings = setup::model_settings(&args.model, &config)?;
        let judge = setup::judge_settings(&args.model, &config, &settings)?;
        let dirs = (stage_dir, workspace);
        let prepared = prepared_run(&args, dirs, (config, provenance), batch.as_deref())?;
        Ok((prepared, settings, judge))
    })
    .await;
    drop(turn);
    let (prepared, settings, judge) = prepared?;
    let transcript = match hats {
        // A rejudged member: its hats replay from the recorded run, its judges are asked.
        Hats::Replayed(old) => TranscriptPlan {
            run_dir,
            mode: RecordMode::NewEpisodes,
            replay_from: Some(old.clone()),
            record: true,
            hats: hats.clone(),
        },
        _ => TranscriptPlan {
            hats: hats.clone(),
            ..recording_plan(args, run_dir)
        },
    };
    let samples = args.samples.unwrap_or(1);
    execute(
        prepared,
        (settings, judge),
        transcript,
        &args.report,
        samples,
        runner,
        out,
    )
    .await
}

pub async fn replay(
    args: &ReplayArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    replay_with(args, &Runner::single(global, &args.report), out).await
}

/// Replays one run directory with the given runner (a batch's members share one).
pub(crate) async fn replay_with<W: Write + ?Sized>(
    args: &ReplayArgs,
    runner: &Runner,
    out: &mut W,
) -> Result<i32, Error> {
    let dir = &args.transcript;
    let record = RunRecord::read(dir)?;
    let sources = replay_sources::resolve(
        dir,
        &record,
        replay_sources::Overrides {
            workspace: args.workspace.clone(),
            stage: args
                .stage
                .as_deref()
                .map(|s| crate::definition::stage_path(&s.to_string_lossy())),
            prompts: args.report.prompts.clone(),
        },
    )?;
    if !sources.from_snapshot.is_empty() {
        tracing::info!(
            "replaying {} from the run's snapshot",
            sources.from_snapshot.join(", ")
        );
    }
    let workspace = setup::workspace_dir(Some(&sources.workspace))?;
    let config = replay_config(&record, &workspace)?;
    let mut settings = setup::model_settings(&Default::default(), &config)?;
    let judge = setup::apply_record(&mut settings, &record.model);
    let mut prepared = prepare(
        sources.stage_dir,
        workspace,
        config,
        sources.prompts_dir,
        runner.batch.as_deref(),
    )?;
    prepared.snapshot = sources.snapshot;
    prepared.tool_log = sources.tool_log;
    // The findings the run recorded: a replay needs neither the tools' files nor a probe.
    prepared.checks = crate::checks::Facts::read_recorded(dir)?;
    let transcript = TranscriptPlan {
        run_dir: dir.clone(),
        mode: RecordMode::None,
        replay_from: Some(dir.clone()),
        record: false,
        hats: Hats::Asked,
    };
    execute(
        prepared,
        (settings, judge),
        transcript,
        &args.report,
        record.samples,
        runner,
        out,
    )
    .await
}

/// A replay's configuration: the workspace's bindings with the policy its run.json
/// recorded, never the policy on disk now. A run.json from before policy was recorded gets
/// the workspace file checked as a new run's would be (no policy file, not trusted).
pub(crate) fn replay_config(record: &RunRecord, workspace: &Path) -> Result<ConfigFile, Error> {
    let Some(policy) = &record.policy else {
        return Ok(crate::policy::resolve(None, workspace, false)?.config);
    };
    let mut config = ConfigFile::load(workspace)?;
    config.grounding = policy.grounding();
    config.gate.allow_unknown = policy.allows("gate.allow_unknown");
    config.gate.allow_unstable = policy.allows("gate.allow_unstable");
    config.gate.allow_nothing_judged = policy.allows("gate.allow_nothing_judged");
    config.gate.allow_artifact_only = policy.allows("gate.allow_artifact_only");
    if let Some(turns) = policy.get("agent.max_turns").and_then(|t| t.parse().ok()) {
        config.agent.max_turns = turns;
    }
    Ok(config)
}

/// A directory hatrack is to write a run (or a batch) into must be missing, empty, or one
/// it wrote (it holds one of `markers`): a run writes report.md, junit.xml, run.json… and
/// would silently replace a user's files of those names. The refusal names what is there.
pub(crate) fn refuse_foreign_dir(dir: &Path, markers: &[&str]) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Missing (created later) or not a directory (the writer says so).
        Err(_) => return Ok(()),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty()
        || markers
            .iter()
            .any(|m| dir.join(m).symlink_metadata().is_ok())
    {
        return Ok(());
    }
    names.sort();
    let shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| crate::safe_fs::printable_name(n))
        .collect();
    let more = match names.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    Err(Error::usage(format!(
        "{} is not empty and is not a hatrack run directory (it holds {}{more}); a run would write its reports over files there: choose a new or empty --transcript DIR",
        dir.display(),
        shown.join(", ")
    )))
}

/// A run directory holding the run of another workspace is not written over: its reports and
/// run.json would be replaced and its transcript mixed with this run's. Re-running the same
/// workspace into its own directory (the record modes) stays allowed.
fn refuse_another_workspaces_run(run_dir: &Path, workspace: &Path) -> Result<(), Error> {
    if !run_dir.join(RUN_FILE).is_file() {
        return Ok(());
    }
    let Ok(record) = RunRecord::read(run_dir) else {
        return Ok(()); // the run itself says what is wrong with it
    };
    let recorded = run_dir.join(&record.workspace);
    let same = match (recorded.canonicalize(), workspace.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{} holds a run of another workspace ({}); a run of {} would overwrite its reports and mix their transcripts: choose a new --transcript DIR",
        run_dir.display(),
        crate::safe_fs::printable_name(&record.workspace),
        workspace.display()
    )))
}

pub(super) fn default_run_dir(workspace: &Path) -> PathBuf {
    let name = workspace
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".to_string());
    default_dir(&name)
}

/// `transcripts/NAME-YYYYMMDD-HHMMSS` (UTC): where a run or a batch goes without
/// `--transcript`.
pub(crate) fn default_dir(name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string();
    PathBuf::from("transcripts").join(format!("{name}-{stamp}"))
}

pub(super) fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Runs file work (many small writes, fsyncs) on tokio's blocking threads: in a batch, the
/// runtime's two workers keep driving the other runs' requests meanwhile.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    joined(tokio::task::spawn_blocking(work).await)
}

/// A blocking task's value; its panic, if it panicked, goes on in the caller.
pub(super) fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
