//! Which workspace, stage and prompts a replay renders its requests from. For each: the
//! flag when given (`--workspace`, `--stage`, `--prompts`: to try a change); else the path
//! run.json recorded, when it is still there (so a prompt author replaying in the repository
//! sees drift in the current definitions); else the run's snapshot ([`super::snapshot`]), so a
//! run directory copied to another machine replays with nothing else. A run directory
//! without a snapshot behaves as before, and a missing workspace or stage is an error that
//! names the flag that fixes it.

use std::path::{Path, PathBuf};

use crate::run::rundir::{self, RunRecord};
use crate::run::snapshot::{Materialized, Snapshot};
use crate::run::tool_answers::ToolLog;
use crate::Error;

/// The paths a replay passes in, each `None` when not given.
pub struct Overrides {
    pub workspace: Option<PathBuf>,
    pub stage: Option<PathBuf>,
    pub prompts: Option<PathBuf>,
}

pub struct ReplaySources {
    pub workspace: PathBuf,
    pub stage_dir: PathBuf,
    pub prompts_dir: Option<PathBuf>,
    /// When the workspace comes from the snapshot: the tool results recorded with it.
    pub tool_log: Option<ToolLog>,
    /// Holds the materialised snapshot for as long as the replay runs.
    pub snapshot: Option<Materialized>,
    /// What came from the snapshot (`workspace`, `stage`, `prompts`), for a log line.
    pub from_snapshot: Vec<&'static str>,
}

pub fn resolve(dir: &Path, record: &RunRecord, o: Overrides) -> Result<ReplaySources, Error> {
    let recorded_workspace = rundir::resolve_recorded(dir, &record.workspace);
    let recorded_stage = rundir::resolve_recorded(dir, &record.stage.path);
    let recorded_prompts = record
        .prompts
        .dir
        .as_ref()
        .map(|p| rundir::resolve_recorded(dir, p));
    let need_workspace = o.workspace.is_none() && !recorded_workspace.is_dir();
    let need_stage = o.stage.is_none() && !stage_exists(&recorded_stage);
    let need_prompts =
        o.prompts.is_none() && recorded_prompts.as_ref().is_some_and(|p| !p.is_dir());
    let mut sources = ReplaySources {
        workspace: o.workspace.unwrap_or(recorded_workspace),
        stage_dir: o.stage.unwrap_or(recorded_stage),
        prompts_dir: o.prompts.or(recorded_prompts),
        tool_log: None,
        snapshot: None,
        from_snapshot: Vec::new(),
    };
    if !(need_workspace || need_stage || need_prompts) {
        return Ok(sources);
    }
    let Some(snapshot) = Snapshot::read(dir)? else {
        if !(need_workspace || need_stage) {
            // As before snapshots: a missing --prompts DIR leaves the shipped templates.
            return Ok(sources);
        }
        return Err(no_snapshot(dir, &sources, need_workspace, need_stage));
    };
    let m = snapshot.materialize()?;
    if need_workspace {
        sources.workspace = m.workspace.clone();
        sources.tool_log = Some(snapshot.tool_log()?);
        sources.from_snapshot.push("workspace");
    }
    if need_stage {
        sources.stage_dir = m.stage_dir.clone();
        sources.from_snapshot.push("stage");
    }
    if need_prompts && snapshot.has_prompts() {
        sources.prompts_dir = Some(m.prompts.clone());
        sources.from_snapshot.push("prompts");
    }
    sources.snapshot = Some(m);
    Ok(sources)
}

/// A stage compiled into the binary is always there; one on disk when its directory is.
fn stage_exists(dir: &Path) -> bool {
    crate::definition::embedded::contains(dir) || dir.is_dir()
}

fn no_snapshot(
    dir: &Path,
    sources: &ReplaySources,
    need_workspace: bool,
    need_stage: bool,
) -> Error {
    let mut missing = Vec::new();
    if need_workspace {
        missing.push(format!(
            "the workspace {} is not a directory: pass --workspace DIR (the workspace the run reviewed)",
            sources.workspace.display()
        ));
    }
    if need_stage {
        missing.push(format!(
            "the stage {} is not a directory: pass --stage DIR (the stage the run used)",
            sources.stage_dir.display()
        ));
    }
    Error::usage(format!(
        "{}: {}; this run directory has no snapshot (it was recorded before run directories carried one) to replay from instead",
        dir.display(),
        missing.join("; and ")
    ))
}
