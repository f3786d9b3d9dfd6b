//! Before any model call: load the stage and prompts, bind the inputs, and render every
//! step of the table (preflight), so a template or binding error stops the run at once.

use std::path::{Path, PathBuf};

use super::shared::BatchShared;
use crate::config::ConfigFile;
use crate::definition::Stage;
use crate::inputs::{self, Bindings};
use crate::policy::Provenance;
use crate::prompt::Prompts;
use crate::run::setup;
use crate::run::snapshot::Materialized;
use crate::run::tool_answers::ToolLog;
use crate::Error;

/// Everything decided before the first model call.
pub(super) struct Prepared {
    pub(super) stage: Stage,
    pub(super) stage_dir: PathBuf,
    pub(super) definition_digest: String,
    pub(super) workspace: PathBuf,
    pub(super) bindings: Bindings,
    pub(super) prompts: Prompts,
    pub(super) prompts_dir: Option<PathBuf>,
    pub(super) config: ConfigFile,
    /// A replay from the run's snapshot: the materialised files (kept while the run lasts)
    /// and the recorded tool results that stand in for the workspace.
    pub(super) snapshot: Option<Materialized>,
    pub(super) tool_log: Option<ToolLog>,
    /// Where each policy key came from, for a new run's run.json (`None`: a replay, which
    /// keeps the policy its run.json recorded).
    pub(super) provenance: Option<Provenance>,
    /// What checks found (a new run's, gathered; a replay's, as recorded): `None` when the
    /// run has no checks, so its prompts are those of a run without them.
    pub(super) checks: Option<crate::checks::Facts>,
    /// The thread compiling the stage's probe patterns (a single run's), which
    /// [`gather_checks`] waits for before it runs them.
    probes_warming: Option<std::thread::JoinHandle<()>>,
    /// The context windows, asked while the stage loaded (a single new run's).
    pub(super) windows: Option<super::windows::EarlyWindows>,
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
    let mut probes_warming = None;
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
        None => {
            // The probes compile beside the definitions' loading and the inputs' binding
            // (see `warm_probes`); a thread that cannot start only leaves them to `gather`.
            let dir = stage_dir.clone();
            probes_warming = crate::parallel::spawn_beside("probes", move || {
                crate::checks::gather::warm_probes(&dir)
            })
            .ok();
            (load_stage()?, load_prompts()?)
        }
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
        checks: None,
        probes_warming,
        windows: None,
    })
}

/// A new run's checks: the stage's `checks.toml`, the configuration's `[[check]]` and
/// `[evidence]`, and `--evidence` files; every declaration and file checked before any
/// request (exit 2).
pub(super) fn gather_checks(
    p: &mut Prepared,
    args: &crate::cli::RunArgs,
) -> Result<Option<crate::checks::Facts>, Error> {
    if args.without_checks {
        return Ok(None);
    }
    if let Some(warming) = p.probes_warming.take() {
        // The deny list compiles here while the probes may still be compiling.
        let _ = crate::tools::deny_set(&p.config.tools.deny);
        // Only a cache is filled there: a panic would show again when the probe compiles.
        let _ = warming.join();
    }
    let evidence = &args.evidence;
    use crate::checks::{gather, Gather, Given};
    let requirements: Vec<String> = crate::run::steps::table(&p.stage)
        .iter()
        .flat_map(|s| s.requirements(&p.stage))
        .map(|r| r.id.clone())
        .collect();
    let redact = crate::secrets::compile_patterns(
        p.config.secrets.redact_patterns(),
        "[secrets] redact_inputs",
    )
    .map_err(|e| Error::usage(e.to_string()))?;
    let mut files: Vec<(String, Given)> = evidence
        .iter()
        .map(|f| (f.to_string_lossy().into_owned(), Given::Flag))
        .collect();
    files.extend(
        p.config
            .evidence
            .files
            .iter()
            .map(|f| (f.clone(), Given::Config)),
    );
    let stage_label = p.stage_dir.file_name().map_or_else(
        || p.stage.name.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(gather(&Gather {
        workspace: &p.workspace,
        evidence: files,
        stage_dir: &p.stage_dir,
        stage_label,
        config_checks: &p.config.check,
        requirements,
        redact: &redact,
        deny: &p.config.tools.deny,
        run_tools: &args.run_checks,
        tool_timeout: args
            .check_timeout
            .unwrap_or(crate::checks::runner::DEFAULT_TIMEOUT_SECS),
    })?)
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
        checks: p.checks.as_ref(),
        dossiers: None,
    };
    // One thread per core: rendering is CPU work, and the run waits on it before its first
    // request. The error reported is the first failing step's, in table order.
    let table = steps::table(&p.stage);
    crate::parallel::side_by_side(table.iter().collect(), crate::parallel::cores(), |step| {
        context::messages(step, &shown).map(drop)
    })
    .into_iter()
    .collect::<Result<(), _>>()
    .map_err(Error::from)
}
