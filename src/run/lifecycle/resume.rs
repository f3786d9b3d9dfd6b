//! `--resume DIR`: a flag that would change what the run recorded is refused.

use std::path::Path;

use super::same_dir;
use crate::cli::{RecordModeArg, RunArgs};
use crate::run::rundir::{self, RunRecord, RUN_FILE};
use crate::Error;

/// `--resume DIR` continues a run with the settings its run.json recorded. A flag that
/// would change one of them is refused (exit 2) rather than silently dropped — a resumed
/// run that mixed two settings would report neither honestly.
pub(super) fn check_resume_flags(args: &RunArgs, rec: &RunRecord, dir: &Path) -> Result<(), Error> {
    let mut conflicts = setting_conflicts(args, rec, dir);
    conflicts.extend(path_conflicts(args, rec, dir)?);
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

/// Flags that would change what the requests were asked with.
fn setting_conflicts(args: &RunArgs, rec: &RunRecord, dir: &Path) -> Vec<String> {
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
    if !args.evidence.is_empty() || !args.run_checks.is_empty() {
        conflicts.push(
            "--evidence / --run-checks (a resumed run keeps the findings its checks.json recorded)"
                .to_string(),
        );
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
    conflicts
}

/// Path flags that name another workspace, stage or prompts than recorded. One conflicts
/// only when the recorded path still exists here: a run directory moved to another machine
/// needs WORKSPACE / --stage / --prompts to say where they are now.
fn path_conflicts(args: &RunArgs, rec: &RunRecord, dir: &Path) -> Result<Vec<String>, Error> {
    let mut conflicts: Vec<String> = Vec::new();
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
    Ok(conflicts)
}
