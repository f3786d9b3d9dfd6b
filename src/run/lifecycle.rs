//! `hatrack run` and `hatrack replay`: resolve everything, bind inputs and render every
//! prompt (preflight, before any model call), then run the stage through the transcript and
//! write the reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::setup;
use crate::cli::{GlobalArgs, RecordModeArg, ReplayArgs, ReportArgs, RunArgs};
use crate::config::ConfigFile;
use crate::definition::Stage;
use crate::inputs::{self, Bindings};
use crate::memo::Memo;
use crate::model::settings::ModelSettings;
use crate::model::transcript::{now_rfc3339, RecordMode, TranscriptModel};
use crate::model::{ChatModel, SharedTransport};
use crate::policy::{Effective, PolicyRecord, Provenance};
use crate::prompt::Prompts;
use crate::report;
use crate::run::judges_only::Hats;
use crate::run::progress::Progress;
use crate::run::replay_sources;
use crate::run::rundir::{
    self, InputDigest, JudgeRecord, ModelRecord, PromptsRecord, RunDir, RunRecord, StageRecord,
    EXCHANGES_FILE, RUN_FILE,
};
use crate::run::snapshot::{self, Materialized};
use crate::run::tool_answers::{ToolAnswers, ToolLog};
use crate::run::{self, RunPlan};
use crate::secrets::Scrubber;
use crate::verdict::gate::GatePolicy;
use crate::Error;

/// Share of samples that must agree for a verdict to count as stable.
const STABILITY_THRESHOLD: f64 = 0.8;

/// Everything decided before the first model call.
pub(super) struct Prepared {
    stage: Stage,
    stage_dir: PathBuf,
    definition_digest: String,
    workspace: PathBuf,
    bindings: Bindings,
    prompts: Prompts,
    prompts_dir: Option<PathBuf>,
    config: ConfigFile,
    /// A replay from the run's snapshot: the materialised files (kept while the run lasts)
    /// and the recorded tool results that stand in for the workspace.
    pub(super) snapshot: Option<Materialized>,
    tool_log: Option<ToolLog>,
    /// Where each policy key came from, for a new run's run.json (`None`: a replay, which
    /// keeps the policy its run.json recorded).
    pub(super) provenance: Option<Provenance>,
}

pub(super) fn prepare(
    stage_dir: PathBuf,
    workspace: PathBuf,
    config: ConfigFile,
    prompts_dir: Option<PathBuf>,
    batch: Option<&BatchShared>,
) -> Result<Prepared, Error> {
    let load_stage = || -> Result<(Stage, String), Error> {
        let stage = setup::load_stage(&stage_dir)?.stage;
        let digest = crate::definition::definition_digest(&stage);
        Ok((stage, digest))
    };
    let load_prompts = || Prompts::load(prompts_dir.as_deref());
    let ((stage, definition_digest), prompts) = match batch {
        Some(b) => {
            let prompts_key = prompts_dir.as_deref().unwrap_or(Path::new(""));
            (
                b.stages
                    .get_or_try(&stage_dir.to_string_lossy(), load_stage)?,
                b.prompts
                    .get_or_try(&prompts_key.to_string_lossy(), load_prompts)?,
            )
        }
        None => (load_stage()?, load_prompts()?),
    };
    let bindings = inputs::bind(&stage, &workspace, &config)?;
    Ok(Prepared {
        stage,
        stage_dir,
        definition_digest,
        workspace,
        bindings,
        prompts,
        prompts_dir,
        config,
        snapshot: None,
        tool_log: None,
        provenance: None,
    })
}

/// Renders every step of the table with representative upstream artifacts and verdicts, so
/// a template error — even inside a loop over artifacts or verdicts — stops the run before
/// any request is made.
pub(super) fn preflight_render(p: &Prepared) -> Result<(), Error> {
    use crate::run::{context, steps};
    let (produced, prior) = context::representative(&p.stage);
    let shown = context::Shown {
        prompts: &p.prompts,
        stage: &p.stage,
        bindings: &p.bindings,
        limits: &p.config.limits,
        rules: p.config.grounding,
        produced: &produced,
        prior: &prior,
        tools: p.config.agent.tools,
    };
    for step in steps::table(&p.stage) {
        context::messages(&step, &shown)?;
    }
    Ok(())
}

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

/// What the runs of a batch share: their preparation (loading, binding, preflight) is CPU
/// work, done a few at a time so the first runs' requests go out while later runs still
/// prepare; each stage (with its digest) and prompts directory is loaded once, and a stage's
/// warnings are logged once, not once per workspace. Work no request waits for (the
/// snapshots) starts once every run has prepared.
pub(crate) struct BatchShared {
    preparing: Semaphore,
    /// Opens the other preparations once the first run has prepared.
    warmed: std::sync::Once,
    pub stages: Memo<(Stage, String)>,
    pub prompts: Memo<Prompts>,
    /// Runs that have not finished preparing (successfully or not).
    unprepared: std::sync::atomic::AtomicUsize,
    /// Becomes true when `unprepared` reaches zero.
    all_prepared: tokio::sync::watch::Sender<bool>,
}

impl BatchShared {
    /// Shared by `runs` runs.
    pub fn new(runs: usize) -> BatchShared {
        BatchShared {
            // One at first: the first run loads the stage and prompts and compiles the
            // globs and patterns the others reuse (then `prepared` opens one per core).
            preparing: Semaphore::new(1),
            warmed: std::sync::Once::new(),
            stages: Memo::new(64),
            prompts: Memo::new(64),
            unprepared: runs.into(),
            all_prepared: tokio::sync::watch::Sender::new(runs == 0),
        }
    }

    /// Waits for a run's turn to prepare.
    async fn turn(&self) -> Turn<'_> {
        let permit = self
            .preparing
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Turn {
            shared: self,
            _permit: permit,
        }
    }

    /// A run has prepared (or failed to): from now on, one preparation per core at a time.
    fn prepared(&self) {
        self.warmed.call_once(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            self.preparing.add_permits(cores.saturating_sub(1));
        });
        let before = self.unprepared.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| n.checked_sub(1),
        );
        if before == Ok(1) {
            self.all_prepared.send_replace(true);
        }
    }

    /// Returns once every run of the batch has prepared.
    async fn everyone_prepared(&self) {
        let mut prepared = self.all_prepared.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = prepared.wait_for(|done| *done).await;
    }
}

/// A run's turn to prepare. Dropping it — prepared, failed or panicked — counts the run as
/// prepared and lets the next one in, so nothing waits for a run that stopped.
struct Turn<'a> {
    shared: &'a BatchShared,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.shared.prepared();
    }
}

impl Runner {
    pub(super) fn single(global: &GlobalArgs, report: &ReportArgs) -> Runner {
        Runner {
            quiet: global.quiet,
            transport: None,
            progress: Progress::new(global.quiet),
            github: github_enabled(report),
            batch: None,
        }
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
    let prompts_dir = args.report.prompts.clone();
    let mut prepared = prepare(stage_dir, workspace, config, prompts_dir, None)?;
    prepared.provenance = Some(provenance);
    preflight_render(&prepared)?;

    let transcript = if let Some(dir) = &args.resume {
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
            .unwrap_or_else(|| default_run_dir(&prepared.workspace));
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
            .unwrap_or_else(|| default_run_dir(&prepared.workspace));
        recording_plan(args, run_dir)
    };
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

/// A new run (or a re-run into the same directory) as `--record-mode` says.
fn recording_plan(args: &RunArgs, run_dir: PathBuf) -> TranscriptPlan {
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
        let prompts = args.report.prompts.clone();
        let mut prepared = prepare(stage_dir, workspace, config, prompts, batch.as_deref())?;
        prepared.provenance = Some(provenance);
        preflight_render(&prepared)?;
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

/// `--resume DIR` continues a run with the settings its run.json recorded. A flag that
/// would change one of them is refused (exit 2) rather than silently dropped — a resumed
/// run that mixed two settings would report neither honestly.
fn check_resume_flags(args: &RunArgs, rec: &RunRecord, dir: &Path) -> Result<(), Error> {
    let mut conflicts: Vec<String> = Vec::new();
    if let Some(m) = args.model.model.as_ref().filter(|m| **m != rec.model.name) {
        conflicts.push(format!("--model {m} (recorded: {})", rec.model.name));
    }
    let recorded_judge = rec
        .model
        .judge
        .as_ref()
        .map_or(&rec.model.name, |j| &j.name);
    if let Some(j) = args
        .model
        .judge_model
        .as_ref()
        .filter(|j| *j != recorded_judge)
    {
        conflicts.push(format!("--judge-model {j} (recorded: {recorded_judge})"));
    }
    if let Some(n) = args.model.max_reasks.filter(|n| *n != rec.model.max_reasks) {
        conflicts.push(format!(
            "--max-reasks {n} (recorded: {})",
            rec.model.max_reasks
        ));
    }
    if let Some(n) = args.samples.filter(|n| *n != rec.samples) {
        conflicts.push(format!("--samples {n} (recorded: {})", rec.samples));
    }
    if let Some(mode) = args
        .record_mode
        .filter(|m| *m != RecordModeArg::NewEpisodes)
    {
        let name = match mode {
            RecordModeArg::None => "none",
            RecordModeArg::Once => "once",
            RecordModeArg::All => "all",
            RecordModeArg::NewEpisodes => "new_episodes",
        };
        conflicts.push(format!(
            "--record-mode {name} (a resume replays what is recorded and records the rest: new_episodes)"
        ));
    }
    if let Some(t) = args.transcript.as_ref().filter(|t| !same_dir(t, dir)) {
        conflicts.push(format!(
            "--transcript {} (a resume writes into {})",
            t.display(),
            dir.display()
        ));
    }
    // A path flag conflicts only when the recorded path still exists here: a run directory
    // moved to another machine needs WORKSPACE / --stage / --prompts to say where they are now.
    let differs = |given: &Path, recorded: &Path| recorded.exists() && !same_dir(given, recorded);
    let recorded_workspace = rundir::resolve_recorded(dir, &rec.workspace);
    if let Some(w) = args.workspace().filter(|w| differs(w, &recorded_workspace)) {
        conflicts.push(format!(
            "WORKSPACE {} (recorded: {})",
            w.display(),
            recorded_workspace.display()
        ));
    }
    if args.stage.stage.is_some() || args.stage.studio.is_some() {
        let recorded_stage = rundir::resolve_recorded(dir, &rec.stage.path);
        let wanted = crate::definition::resolve_stage_dir(
            args.stage.stage.as_deref(),
            args.stage.studio.as_deref(),
        )?;
        if differs(&wanted, &recorded_stage) {
            conflicts.push(format!(
                "--stage {} (recorded: {})",
                wanted.display(),
                recorded_stage.display()
            ));
        }
    }
    if let Some(p) = &args.report.prompts {
        let recorded = rec
            .prompts
            .dir
            .as_ref()
            .map(|d| rundir::resolve_recorded(dir, d));
        let conflicts_with_record = match &recorded {
            Some(r) => differs(p, r),
            None => true,
        };
        if conflicts_with_record {
            conflicts.push(format!(
                "--prompts {} (recorded: {})",
                p.display(),
                recorded
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|| "the shipped templates".into())
            ));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--resume {}: a resumed run keeps the settings its {RUN_FILE} recorded, and these flags conflict with them: {}. Drop them to continue the run as recorded, or re-run with changed settings into a new directory: `hatrack run --from-transcript {} --transcript NEW_DIR …`",
        dir.display(),
        conflicts.join("; "),
        dir.display()
    )))
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
pub(super) fn replay_config(record: &RunRecord, workspace: &Path) -> Result<ConfigFile, Error> {
    let Some(policy) = &record.policy else {
        return Ok(crate::policy::resolve(None, workspace, false)?.config);
    };
    let mut config = ConfigFile::load(workspace)?;
    config.grounding = policy.grounding();
    config.gate.allow_unknown = policy.allows("gate.allow_unknown");
    config.gate.allow_unstable = policy.allows("gate.allow_unstable");
    if let Some(turns) = policy.get("agent.max_turns").and_then(|t| t.parse().ok()) {
        config.agent.max_turns = turns;
    }
    Ok(config)
}

fn default_run_dir(workspace: &Path) -> PathBuf {
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

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub(super) async fn execute<W: Write + ?Sized>(
    prepared: Prepared,
    (settings, judge): (ModelSettings, ModelSettings),
    transcript: TranscriptPlan,
    report_args: &ReportArgs,
    samples: u32,
    runner: &Runner,
    out: &mut W,
) -> Result<i32, Error> {
    let (mut settings, mut judge) = (settings, judge);
    let prices = setup::prices(report_args.prices.as_deref(), &mut settings, &mut judge)?;
    let scrubber = setup::scrubber(&[&settings, &judge], &prepared.config)?;
    let prepared_workspace = prepared.workspace.clone();
    let run_dir = &transcript.run_dir;
    // Held until the reports are written: a second writer fails at once (exit 2).
    let locked = RunDir::open_locked(run_dir)?;

    // run.json: written for a new run (or a full re-record), kept otherwise, so a replay
    // reports the original start time and leaves the transcript byte for byte as it was.
    let (locked, record) = match RunRecord::read(run_dir) {
        Ok(existing) if transcript.mode != RecordMode::All => (locked, existing),
        _ => {
            if transcript.mode == RecordMode::None {
                return Err(Error::usage(format!(
                    "{}: no {RUN_FILE}; nothing to replay",
                    run_dir.display()
                )));
            }
            let record = new_record(
                &prepared,
                (&settings, &judge),
                run_dir,
                samples,
                transcript.mode,
                setup::gate_policy(report_args, &prepared.config),
            );
            // A file and an fsync: off the async workers, which a batch's requests share.
            let scrubber = scrubber.clone();
            blocking(move || {
                let written = record.write(&locked, &scrubber);
                written.map(|()| (locked, record))
            })
            .await?
        }
    };

    let locked = Arc::new(locked);

    // Tokens of streamed answers show on the step's line as they arrive.
    settings.on_tokens = runner.progress.token_observer();
    judge.on_tokens = settings.on_tokens.clone();
    let model = build_model(
        &transcript,
        (&settings, &judge),
        &scrubber,
        runner,
        prices.as_ref(),
    )?;
    let snapshot_sources = transcript.record.then(|| SnapshotSources {
        stage: prepared.stage.clone(),
        workspace: prepared.workspace.clone(),
        config: prepared.config.clone(),
        prompts: prepared.prompts.clone(),
    });
    let mut agent = setup::agent(&prepared.config, &prepared.workspace, &scrubber)?;
    if let (Some(agent), Some(log)) = (agent.as_mut(), prepared.tool_log) {
        agent.tools = ToolAnswers::Recorded {
            log,
            scrubber: scrubber.clone(),
        };
    }
    let plan = RunPlan {
        definition_digest: prepared.definition_digest.clone(),
        bindings: prepared.bindings,
        prompts: prepared.prompts,
        settings,
        judge_settings: judge,
        limits: prepared.config.limits.clone(),
        grounding: prepared.config.grounding,
        run_dir: run_dir.clone(),
        run_id: run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_at: record.started_at.clone(),
        record_mode: record.record_mode.clone(),
        samples: samples.max(1),
        policy: setup::gate_policy(report_args, &prepared.config),
        effective_policy: record.policy.clone(),
        stability_threshold: STABILITY_THRESHOLD,
        scrubber: scrubber.clone(),
        agent,
        prices,
        stage: prepared.stage,
    };
    let snapshotting = snapshot_sources.map(|sources| {
        let wait = runner.batch.clone();
        let (dir, scrubber) = (locked.clone(), scrubber.clone());
        tokio::spawn(sources.write_early(wait, dir, scrubber))
    });
    let report = run::execute(&plan, model.as_ref(), &runner.progress).await;
    let report = finish_snapshot(&locked, snapshotting, &plan, &scrubber, report).await?;

    let out_dir = report_args.out.clone().unwrap_or_else(|| run_dir.clone());
    let (report, written) = {
        let (out_dir, scrubber) = (out_dir.clone(), scrubber.clone());
        blocking(move || -> Result<_, Error> {
            std::fs::create_dir_all(&out_dir)
                .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
            let written = report::write_all_scrubbed(&report, &out_dir, &scrubber)?;
            Ok((report, written))
        })
        .await?
    };
    if runner.github {
        github_output(&report, &prepared_workspace, &out_dir, &scrubber, out)?;
    }
    if !runner.quiet {
        let _ = write!(out, "{}", scrubber.scrub(&report::summary_table(&report)));
        if transcript.mode == RecordMode::None {
            let _ = writeln!(
                out,
                "replayed offline from {}: no model was called (`source` is how each answer was obtained when it was recorded)",
                run_dir.display()
            );
        }
        for path in written {
            let _ = writeln!(out, "wrote {}", path.display());
        }
    }
    Ok(report.outcome.exit_code)
}

/// What a recording run's snapshot copies: the stage, workspace, config and prompts the
/// run uses.
struct SnapshotSources {
    stage: Stage,
    workspace: PathBuf,
    config: ConfigFile,
    prompts: Prompts,
}

/// A snapshot written while its run waits on the model: the files read and the write's
/// outcome.
type EarlySnapshot = (
    snapshot::Collected,
    Result<snapshot::Summary, snapshot::SnapshotError>,
);

impl SnapshotSources {
    /// Reads and writes the snapshot (without tool results: the run has made no tool call
    /// yet) while the run waits on the model, so a run that stops part-way is portable too
    /// and the work is off the run's end. In a batch it waits until every run has prepared:
    /// it would otherwise take CPU from the batch's first requests.
    async fn write_early(
        self,
        batch: Option<Arc<BatchShared>>,
        dir: Arc<RunDir>,
        scrubber: Scrubber,
    ) -> EarlySnapshot {
        if let Some(batch) = batch {
            batch.everyone_prepared().await;
        }
        blocking(move || {
            let collected =
                snapshot::collect(&self.stage, &self.workspace, &self.config, &self.prompts);
            let written = snapshot::write(&dir, &collected, &ToolLog::new(), &scrubber);
            (collected, written)
        })
        .await
    }
}

/// Waits for the run's snapshot (when it records) and writes it again with the run's tool
/// results when it made tool calls, even when the run failed part-way so a `--resume` of it
/// is portable too; a failed run's error comes first.
async fn finish_snapshot(
    dir: &Arc<RunDir>,
    early: Option<tokio::task::JoinHandle<EarlySnapshot>>,
    plan: &RunPlan,
    scrubber: &Scrubber,
    report: Result<report::Report, Error>,
) -> Result<report::Report, Error> {
    let Some(early) = early else {
        return report;
    };
    let (collected, mut written) = joined(early.await);
    let tools = plan
        .agent
        .as_ref()
        .map(|a| a.tools.recorded())
        .unwrap_or_default();
    if !tools.is_empty() {
        let (dir, scrubber) = (dir.clone(), scrubber.clone());
        written = blocking(move || snapshot::write(&dir, &collected, &tools, &scrubber)).await;
    }
    match written {
        Ok(s) => tracing::info!(
            "snapshot: {} files, {} tool results, {} objects, {} bytes",
            s.files,
            s.tool_results,
            s.objects,
            s.bytes
        ),
        Err(e) if report.is_ok() => return Err(e.into()),
        Err(e) => tracing::warn!("{e}"),
    }
    report
}

/// Runs file work (many small writes, fsyncs) on tokio's blocking threads: in a batch, the
/// runtime's two workers keep driving the other runs' requests meanwhile.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    joined(tokio::task::spawn_blocking(work).await)
}

/// A blocking task's value; its panic, if it panicked, goes on in the caller.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn new_record(
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
            digest: p.prompts.digest().to_string(),
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
            }),
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
                    allow_unknown: gate.allow_unknown,
                    allow_unstable: gate.allow_unstable,
                },
            )
        }),
    }
}

/// The transcript around an optional live model (only built when the mode may call it, so
/// a replay opens no socket), with the budget around the live model.
fn build_model(
    t: &TranscriptPlan,
    (settings, judge): (&ModelSettings, &ModelSettings),
    scrubber: &Scrubber,
    runner: &Runner,
    prices: Option<&Arc<crate::model::prices::Prices>>,
) -> Result<Box<dyn ChatModel>, Error> {
    let replay_from = t.replay_from.as_ref().map(|dir| dir.join(EXCHANGES_FILE));
    let record_to = t.record.then(|| t.run_dir.join(EXCHANGES_FILE));
    if let Hats::Files(dir) = &t.hats {
        return canned_hats(t, dir, (settings, judge), scrubber, runner, prices);
    }
    if let Hats::Replayed(hats) = &t.hats {
        let inner = TranscriptModel::open(
            t.mode,
            replay_from.as_deref(),
            record_to.as_deref(),
            settings,
            Some(judge),
            scrubber.clone(),
            crate::model::Handles {
                shared: runner.transport.as_ref(),
                prices,
            },
        )?;
        return Ok(Box::new(super::judges_only::JudgesOnly::new(
            hats, settings, judge, scrubber, inner,
        )?));
    }
    Ok(Box::new(TranscriptModel::open(
        t.mode,
        replay_from.as_deref(),
        record_to.as_deref(),
        settings,
        Some(judge),
        scrubber.clone(),
        crate::model::Handles {
            shared: runner.transport.as_ref(),
            prices,
        },
    )?))
}

/// An eval case with fixed artifacts: the run's transcript around [`CannedHats`], which
/// answers the hats from the case's files and asks a live model (built only when the mode
/// may call one) for the judging steps.
fn canned_hats(
    t: &TranscriptPlan,
    dir: &Path,
    (settings, judge): (&ModelSettings, &ModelSettings),
    scrubber: &Scrubber,
    runner: &Runner,
    prices: Option<&Arc<crate::model::prices::Prices>>,
) -> Result<Box<dyn ChatModel>, Error> {
    use crate::model::transcript::{read_exchanges, Recorder};
    let replay_from = t.replay_from.as_ref().map(|d| d.join(EXCHANGES_FILE));
    let exchanges = match &replay_from {
        Some(path) if path.is_file() && t.mode != RecordMode::All => read_exchanges(path)?,
        _ => Vec::new(),
    };
    let judges = if t.mode.needs_live(&exchanges) {
        let live = TranscriptModel::open(
            RecordMode::All,
            None,
            None,
            settings,
            Some(judge),
            scrubber.clone(),
            crate::model::Handles {
                shared: runner.transport.as_ref(),
                prices,
            },
        )?;
        Some(Arc::new(live) as Arc<dyn ChatModel>)
    } else {
        None
    };
    let canned: Option<Arc<dyn ChatModel>> = t.mode.needs_live(&exchanges).then(|| {
        Arc::new(crate::run::judges_only::CannedHats {
            dir: dir.to_path_buf(),
            judges,
        }) as Arc<dyn ChatModel>
    });
    let record_to = match t.record {
        true => Some(Recorder::append(
            t.run_dir.join(EXCHANGES_FILE),
            scrubber.clone(),
        )?),
        false => None,
    };
    Ok(Box::new(TranscriptModel::new(
        t.mode,
        replay_from.map(|p| (p, exchanges)),
        record_to,
        canned,
    )))
}

/// GitHub Actions output is on with `--github` or when `GITHUB_ACTIONS=true` (as GitHub sets it).
pub(crate) fn github_enabled(args: &ReportArgs) -> bool {
    args.github || on_github_actions()
}

/// Running as a GitHub Actions step (`GITHUB_ACTIONS=true`).
pub(crate) fn on_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Annotations on stdout (always, even with --quiet: they are the point) and report.md
/// appended to `$GITHUB_STEP_SUMMARY` when it is set. Both pass through the scrubber.
fn github_output<W: Write + ?Sized>(
    report: &report::Report,
    workspace: &Path,
    out_dir: &Path,
    scrubber: &Scrubber,
    out: &mut W,
) -> Result<(), Error> {
    // Annotations name files relative to the repository root: `$GITHUB_WORKSPACE` on
    // GitHub, else the current directory; a workspace outside it gets no `file=`.
    let prefix = std::env::var_os("GITHUB_WORKSPACE")
        .filter(|w| !w.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .and_then(|cwd| {
            workspace
                .canonicalize()
                .ok()?
                .strip_prefix(cwd.canonicalize().ok()?)
                .ok()
                .map(Path::to_path_buf)
        })
        .map(|rel| {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel.is_empty() {
                rel
            } else {
                format!("{rel}/")
            }
        });
    let lines = scrubber.scrub(&report::github::annotations(report, prefix.as_deref()));
    let _ = write!(out, "{lines}");
    append_step_summary(
        &out_dir.join("report.md"),
        &out_dir.join("report.html"),
        scrubber,
    )
}

/// Appends `markdown` (the file hatrack just wrote), cut under GitHub's limit with a pointer
/// to `full`, to `$GITHUB_STEP_SUMMARY` when that is set.
pub(crate) fn append_step_summary(
    markdown: &Path,
    full: &Path,
    scrubber: &Scrubber,
) -> Result<(), Error> {
    let Some(summary_path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let text = std::fs::read_to_string(markdown)
        .map_err(|e| Error::io(format!("reading {}", markdown.display()), e))?;
    let full = full.display().to_string();
    let text = report::github::step_summary(&text, &scrubber.scrub(&full));
    let summary_path = PathBuf::from(summary_path);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&summary_path)
        .map_err(|e| {
            Error::io(
                format!("opening $GITHUB_STEP_SUMMARY ({})", summary_path.display()),
                e,
            )
        })?;
    file.write_all(text.as_bytes()).map_err(|e| {
        Error::io(
            format!("writing $GITHUB_STEP_SUMMARY ({})", summary_path.display()),
            e,
        )
    })
}
