//! After the stage: the snapshot written while the run waited on the model (again with tool
//! results when there were any), and GitHub Actions output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared::BatchShared;
use super::{blocking, joined};
use crate::cli::ReportArgs;
use crate::config::ConfigFile;
use crate::definition::Stage;
use crate::prompt::Prompts;
use crate::report;
use crate::run::rundir::RunDir;
use crate::run::snapshot::{self};
use crate::run::tool_answers::ToolLog;
use crate::run::RunPlan;
use crate::secrets::Scrubber;
use crate::Error;

/// What a recording run's snapshot copies: the stage, workspace, config and prompts the
/// run uses.
pub(super) struct SnapshotSources {
    pub(super) stage: Stage,
    pub(super) workspace: PathBuf,
    pub(super) config: ConfigFile,
    pub(super) prompts: Prompts,
}

/// A snapshot written while its run waits on the model: the files read and the write's
/// outcome.
pub(super) type EarlySnapshot = (
    snapshot::Collected,
    Result<snapshot::Summary, snapshot::SnapshotError>,
);

impl SnapshotSources {
    /// What a prepared run's snapshot holds.
    pub(super) fn of(prepared: &super::prepare::Prepared) -> SnapshotSources {
        SnapshotSources {
            stage: prepared.stage.clone(),
            workspace: prepared.workspace.clone(),
            config: prepared.config.clone(),
            prompts: prepared.prompts.clone(),
        }
    }

    /// Reads and writes the snapshot (without tool results: the run has made no tool call
    /// yet) while the run waits on the model, so a run that stops part-way is portable too
    /// and the work is off the run's end. In a batch it waits until every run has prepared:
    /// it would otherwise take CPU from the batch's first requests.
    pub(super) async fn write_early(
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
pub(super) async fn finish_snapshot(
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
pub(super) fn github_output<W: Write + ?Sized>(
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
            let rel = crate::safe_fs::slash_path(&rel);
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
    );
    Ok(())
}

/// Appends `markdown` (the file hatrack just wrote), cut under GitHub's limit with a pointer
/// to `full`, to `$GITHUB_STEP_SUMMARY` when that is set. Best effort: the reports are
/// written and the gate decided, so a summary that cannot be written is a warning, never
/// another exit code. Through the confined writer: a link at that name is never followed,
/// anything but a regular file (a FIFO would block) is refused, and nothing waits.
pub(crate) fn append_step_summary(markdown: &Path, full: &Path, scrubber: &Scrubber) {
    let Some(summary_path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())
    else {
        return;
    };
    let summary_path = PathBuf::from(summary_path);
    let written = (|| -> Result<(), String> {
        let text = crate::safe_fs::read_bounded_string(
            markdown,
            crate::safe_fs::Kind::RUN_FILE,
            crate::safe_fs::Links::Never,
        )
        .map_err(|e| e.to_string())?;
        let full = full.display().to_string();
        let text = report::github::step_summary(&text, &scrubber.scrub(&full));
        let (root, name) = crate::safe_fs::split(&summary_path);
        let mut file =
            crate::safe_fs::open_append(&root, &name, false).map_err(|e| e.to_string())?;
        file.write_all(text.as_bytes()).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        tracing::warn!(
            "$GITHUB_STEP_SUMMARY ({}): the step summary was not written: {}",
            crate::safe_fs::printable_name(&summary_path.display().to_string()),
            crate::safe_fs::printable_name(&e)
        );
    }
}
