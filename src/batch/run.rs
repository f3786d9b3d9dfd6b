//! `hatrack run WS1 WS2 …` (or `--manifest FILE`, or `--shard I/N`): every workspace's run
//! in one process, under one `--jobs` limit, each into its own run directory of the batch
//! directory, then the batch index over all of them. The exit code is the worst member's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::index::{self, Loaded, MemberEnd, MEMBER_FILE};
use crate::batch::scope::Scope;
use crate::batch::{self, Member};
use crate::cli::{GlobalArgs, ReplayArgs, RunArgs};
use crate::config::ConfigFile;
use crate::model::SharedTransport;
use crate::run::lifecycle::{
    append_step_summary, blocking, github_enabled, replay_with, run_member, BatchShared, Runner,
};
use crate::run::progress::Progress;
use crate::run::rundir::RunDir;
use crate::run::setup;
use crate::secrets::Scrubber;
use crate::Error;

/// A batch directory is written into only when it is missing, empty, or hatrack's: it holds
/// the index, or a member's run directory (a batch stopped before its index).
fn refuse_foreign_batch_dir(dir: &Path) -> Result<(), Error> {
    let has_member = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            e.file_type().is_ok_and(|t| t.is_dir())
                && (p.join(MEMBER_FILE).is_file() || p.join("run.json").is_file())
        })
    });
    if has_member {
        return Ok(());
    }
    crate::run::lifecycle::refuse_foreign_dir(dir, &[index::INDEX_FILE])
}

pub async fn run(args: &RunArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    refuse_single_run_flags(args)?;
    let mut listed = args.workspaces.clone();
    if let Some(manifest) = &args.manifest {
        listed.extend(batch::read_manifest(manifest).map_err(|e| Error::usage(e.to_string()))?);
    }
    if listed.is_empty() {
        return Err(Error::usage(
            "the batch lists no workspace: pass them as arguments or list them in --manifest FILE",
        ));
    }
    let members = batch::members(&listed).map_err(|e| Error::usage(e.to_string()))?;
    let dir = args.transcript.clone().unwrap_or_else(default_batch_dir);
    run_members(args, global, members, &dir, out).await
}

/// Runs the given members (named by the caller: `hatrack eval` names them after its cases)
/// as a batch into `dir`, `args.shard` picking the shard's share, and writes the index;
/// returns the batch's exit code (the worst member's).
pub(crate) async fn run_members(
    args: &RunArgs,
    global: &GlobalArgs,
    mut members: Vec<Member>,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let scope = Scope::new(&members, args.shard);
    if let Some(shard) = args.shard {
        members.retain(|m| batch::in_shard(&m.name, shard));
    }
    let dir = dir.to_path_buf();
    refuse_foreign_batch_dir(&dir)?;
    let locked = RunDir::open_locked(&dir)?;

    // One limit on requests in flight for the whole batch: flags, env and the policy file
    // decide it, as the members' hatrack.toml files may disagree.
    let policy = match crate::policy::PolicyFile::from_args(args.trust.policy.as_deref())? {
        Some(file) => file.config()?,
        None => ConfigFile::default(),
    };
    let defaults = setup::model_settings(&args.model, &policy)?;
    let judge = setup::judge_settings(&args.model, &policy, &defaults)?;
    let transport = SharedTransport::new(defaults.jobs);
    let scrubber = setup::scrubber(&[&defaults, &judge], &policy)?;
    let progress = Progress::new(global.quiet);
    let line = Arc::new(progress.batch(members.len()));
    // Each member is its own task, so the runtime's worker threads share the CPU work
    // (loading, rendering, grounding, reports) while others wait on the model.
    let shared = Arc::new(args.clone());
    let batch_shared = Arc::new(BatchShared::new(members.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for m in &members {
        let runner = Runner {
            quiet: true,
            transport: Some(transport.clone()),
            progress: progress.member(&m.name),
            github: false,
            batch: Some(batch_shared.clone()),
        };
        let (args, m, line) = (shared.clone(), m.clone(), line.clone());
        let (dir, scrubber) = (dir.clone(), scrubber.clone());
        tasks.spawn(async move {
            let end = run_one(&args, &m, dir.join(&m.name), &runner).await;
            line.done_one();
            // Written and read back as each run ends: the index is built from the run
            // directories alone (as `hatrack merge` builds it), without a pause at the end.
            blocking(move || {
                write_member_end(&dir, &m, end, &scrubber)?;
                index::load_member(&dir, &m.name).map_err(|e| Error::usage(e.to_string()))
            })
            .await
        });
    }
    // Every run finishes even when another's run directory cannot be written; the first
    // such error is the batch's.
    let mut loaded = Vec::with_capacity(members.len());
    let mut failed = None;
    while let Some(joined) = tasks.join_next().await {
        let member = joined
            .map_err(|e| Error::usage(format!("a workspace's run stopped unexpectedly: {e}")))
            .and_then(|r| r);
        match member {
            Ok(m) => loaded.push(m),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    index::sort(&mut loaded);
    if let Ok(line) = Arc::try_unwrap(line) {
        line.finish();
    }
    let github = github_enabled(&args.report);
    let exit = write_index(&locked, &loaded, Some(scope), out, global.quiet, github)?;
    Ok(exit)
}

/// `hatrack replay BATCH_DIR`: every member that ran is replayed offline (as `replay` does
/// one run directory) and the index rewritten; an unchanged batch rewrites every file byte
/// for byte. A member that stopped before its run has nothing to replay and keeps its end.
pub async fn replay(
    args: &ReplayArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    if args.workspace.is_some() || args.stage.is_some() || args.report.out.is_some() {
        return Err(Error::usage(
            "--workspace, --stage and --out apply to one run, not a batch: replay a member alone (`hatrack replay BATCH_DIR/NAME --workspace …`)",
        ));
    }
    let dir = args.transcript.clone();
    let locked = RunDir::open_locked(&dir)?;
    let recorded = index::read(&dir).map_err(|e| Error::usage(e.to_string()))?;
    let names: Vec<String> = recorded.workspaces.iter().map(|w| w.name.clone()).collect();
    let loaded = index::load(&dir, &names).map_err(|e| Error::usage(e.to_string()))?;
    let progress = Progress::new(global.quiet);
    // A replay writes no snapshot: nothing waits for the members to prepare.
    let batch_shared = Arc::new(BatchShared::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for member in loaded.iter().filter(|m| m.entry.error.is_none()) {
        let name = member.entry.name.clone();
        let runner = Runner {
            quiet: true,
            transport: None,
            progress: progress.member(&name),
            github: false,
            batch: Some(batch_shared.clone()),
        };
        let member_args = ReplayArgs {
            transcript: dir.join(&name),
            ..args.clone()
        };
        tasks.spawn(async move {
            let end = match replay_with(&member_args, &runner, &mut std::io::sink()).await {
                Ok(exit_code) => MemberEnd {
                    exit_code,
                    error: None,
                },
                Err(e) => MemberEnd {
                    exit_code: e.exit_code(),
                    error: Some(format!("replaying {name}: {e}")),
                },
            };
            (name, end)
        });
    }
    let scrubber = Scrubber::default();
    while let Some(joined) = tasks.join_next().await {
        let (name, end) =
            joined.map_err(|e| Error::usage(format!("a replay stopped unexpectedly: {e}")))?;
        let recorded = loaded.iter().find(|m| m.entry.name == name);
        if recorded.is_some_and(|m| m.entry.exit_code != end.exit_code || end.error.is_some()) {
            let member = Member {
                name,
                workspace: PathBuf::new(),
                hats: Default::default(),
            };
            write_member_end(&dir, &member, end, &scrubber)?;
        }
    }
    let loaded = index::load(&dir, &names).map_err(|e| Error::usage(e.to_string()))?;
    write_index(
        &locked,
        &loaded,
        recorded.scope,
        out,
        global.quiet,
        github_enabled(&args.report),
    )
}

/// Flags that name one run's directory or history have no meaning across a batch.
fn refuse_single_run_flags(args: &RunArgs) -> Result<(), Error> {
    let flag = if args.resume.is_some() {
        Some("--resume")
    } else if args.from_transcript.is_some() {
        Some("--from-transcript")
    } else if args.report.out.is_some() {
        Some("--out")
    } else {
        None
    };
    match flag {
        Some(flag) => Err(Error::usage(format!(
            "{flag} applies to one run, not a batch: run that workspace alone (its run directory is BATCH_DIR/NAME)"
        ))),
        None => Ok(()),
    }
}

/// One member's run; its end (exit code, and the error when it stopped early).
async fn run_one(args: &RunArgs, m: &Member, run_dir: PathBuf, runner: &Runner) -> MemberEnd {
    let mut sink = std::io::sink();
    match run_member(args, (&m.workspace, &m.hats), run_dir, runner, &mut sink).await {
        Ok(exit_code) => MemberEnd {
            exit_code,
            error: None,
        },
        Err(e) => {
            let message = format!("{}: {e}", m.workspace.display());
            MemberEnd {
                exit_code: e.exit_code(),
                error: Some(match member_scrubber(args, &m.workspace) {
                    Some(own) => own.scrub(&message),
                    None => message,
                }),
            }
        }
    }
}

/// The member's own scrubber: its hatrack.toml may name `[secrets]` patterns, and an API
/// key, that the batch's defaults do not know, and an error (a provider's answer, a file's
/// text) may carry them. `None` when its configuration cannot be read: then it names none,
/// and the batch's scrubber (applied to every member's end) is all there is.
fn member_scrubber(args: &RunArgs, workspace: &Path) -> Option<Scrubber> {
    let workspace = setup::workspace_dir(Some(workspace)).ok()?;
    let config = ConfigFile::load(&workspace).ok()?;
    let settings = setup::model_settings(&args.model, &config).ok()?;
    setup::scrubber(&[&settings], &config).ok()
}

/// `member.json` in the member's run directory: what the index is built from, here and in
/// `hatrack merge`.
fn write_member_end(
    dir: &Path,
    m: &Member,
    mut end: MemberEnd,
    scrubber: &Scrubber,
) -> Result<(), Error> {
    end.error = end.error.map(|e| scrubber.scrub(&e));
    let mut json = serde_json::to_string_pretty(&end).expect("member.json serialises");
    json.push('\n');
    crate::safe_fs::write_file(
        dir,
        &format!("{}/{MEMBER_FILE}", m.name),
        json.as_bytes(),
        true,
    )?;
    Ok(())
}

/// Builds the index from the members read back from their run directories (in name
/// order) and the batch's scope (its shard and whole member list), writes it, prints the table and returns the batch's exit code. On GitHub Actions
/// (`github`) batch.md goes to the step summary; annotations stay with single runs, since
/// GitHub's ten per step would show only a batch's first few workspaces.
pub(crate) fn write_index(
    dir: &RunDir,
    loaded: &[Loaded],
    scope: Option<Scope>,
    out: &mut dyn Write,
    quiet: bool,
    github: bool,
) -> Result<i32, Error> {
    let index = index::build(loaded, scope);
    let written = batch::render::write_all(dir.path(), &index, loaded)?;
    if github {
        let [_, markdown, html, _] = batch::render::FILES;
        let (markdown, html) = (dir.path().join(markdown), dir.path().join(html));
        append_step_summary(&markdown, &html, &Scrubber::default());
    }
    if !quiet {
        for w in &index.workspaces {
            let result = match w.signal_met {
                Some(true) => "met",
                Some(false) => "not met",
                None => "failed",
            };
            let _ = writeln!(out, "{:<32} {:<8} exit {}", w.name, result, w.exit_code);
            if let Some(e) = &w.error {
                let _ = writeln!(out, "  {}", crate::report::text::cap(e, 400));
            }
        }
        let _ = writeln!(out, "{} (exit {})", index.summary, index.exit_code);
        for path in written {
            let _ = writeln!(out, "wrote {}", path.display());
        }
    }
    Ok(index.exit_code)
}

fn default_batch_dir() -> PathBuf {
    crate::run::lifecycle::default_dir("batch")
}
