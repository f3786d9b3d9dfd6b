//! What `run`, `replay` and `render` share: finding the stage, the workspace config, the
//! prompts, the model settings and the scrubber, each with an error that says what to do.

use std::path::{Path, PathBuf};

use crate::cli::{GateArgs, ModelArgs, RunArgs, StageArgs};
use crate::config::ConfigFile;
use crate::definition::{self, LoadedStage};
use crate::model::settings::{ModelSettings, Secret};
use crate::run::rundir::ModelRecord;
use crate::secrets::Scrubber;
use crate::Error;

/// The workspace directory, checked.
pub fn workspace_dir(arg: Option<&Path>) -> Result<PathBuf, Error> {
    let dir = arg
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "workspace {} is not a directory; pass the repository to review, e.g. `hatrack run examples/orders-pipeline`",
            dir.display()
        )));
    }
    Ok(dir)
}

/// The stage directory: flags, then `[stage] path` of hatrack.toml (relative to the
/// workspace, or `embedded:NAME`), then the deployment stage compiled into the binary.
pub fn stage_dir(
    args: &StageArgs,
    config: &ConfigFile,
    workspace: &Path,
) -> Result<PathBuf, Error> {
    if args.stage.is_some() || args.studio.is_some() {
        return Ok(definition::resolve_stage_dir(
            args.stage.as_deref(),
            args.studio.as_deref(),
        )?);
    }
    if let Some(p) = &config.stage.path {
        return Ok(match definition::embedded::parse(&p.to_string_lossy()) {
            Some(dir) => dir,
            None => workspace.join(p),
        });
    }
    Ok(definition::default_stage_dir())
}

/// A run's configuration: the workspace's hatrack.toml merged onto the policy (`--policy`,
/// `HATRACK_POLICY`), refusing what the workspace may not set, and where each key came from.
pub fn run_config(
    args: &RunArgs,
    workspace: &Path,
) -> Result<(ConfigFile, crate::policy::Provenance), Error> {
    let file = crate::policy::PolicyFile::from_args(args.trust.policy.as_deref())?;
    let resolved =
        crate::policy::resolve(file.as_ref(), workspace, args.trust.trust_workspace_config)?;
    let mut provenance = resolved.provenance;
    provenance.flags = given_flags(args);
    Ok((resolved.config, provenance))
}

/// The policy flags given on the command line (they outrank every file).
fn given_flags(args: &RunArgs) -> Vec<&'static str> {
    let m = &args.model;
    let r = &args.report;
    [
        (
            args.stage.stage.is_some() || args.stage.studio.is_some(),
            "--stage",
        ),
        (m.model.is_some(), "--model"),
        (m.base_url.is_some(), "--base-url"),
        (m.judge_model.is_some(), "--judge-model"),
        (m.judge_base_url.is_some(), "--judge-base-url"),
        (m.max_retries.is_some(), "--max-retries"),
        (m.max_reasks.is_some(), "--max-reasks"),
        (m.budget.is_some(), "--budget"),
        (r.gate.allow_unknown, "--allow-unknown"),
        (r.gate.allow_unstable, "--allow-unstable"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect()
}

/// The gate's leniencies: a flag, or the policy's `[gate]`.
pub fn gate_policy(flags: &GateArgs, config: &ConfigFile) -> crate::verdict::gate::GatePolicy {
    crate::verdict::gate::GatePolicy {
        allow_unknown: flags.allow_unknown || config.gate.allow_unknown,
        allow_unstable: flags.allow_unstable || config.gate.allow_unstable,
        allow_nothing_judged: config.gate.allow_nothing_judged,
        allow_artifact_only: config.gate.allow_artifact_only,
    }
}

/// Loads the stage and logs its warnings.
pub fn load_stage(dir: &Path) -> Result<LoadedStage, Error> {
    let loaded = definition::load_stage(dir)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded)
}

/// Model settings: flags > environment > hatrack.toml > defaults. The key only ever comes
/// from the environment.
pub fn model_settings(args: &ModelArgs, config: &ConfigFile) -> Result<ModelSettings, Error> {
    let m = &config.model;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut s = ModelSettings::default();
    if let Some(name) = args
        .model
        .clone()
        .or_else(|| env("HATRACK_MODEL"))
        .or_else(|| m.name.clone())
    {
        s.model = name;
    }
    if let Some(url) = args
        .base_url
        .clone()
        .or_else(|| env("OPENAI_BASE_URL"))
        .or_else(|| m.base_url.clone())
    {
        s.base_url = url.trim_end_matches('/').to_string();
    }
    if let Some(key) = env(key_env(config)) {
        s.api_key = Secret::new(key.trim());
    }
    s.api_key_env = key_env(config).to_string();
    s.allow_no_key = env(crate::model::settings::ALLOW_NO_KEY_ENV)
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
    if let Some(t) = m.temperature {
        s.temperature = f64::from(t);
    }
    if let Some(seed) = m.seed {
        s.seed = Some(seed);
    }
    s.max_tokens = m.max_tokens.or(s.max_tokens);
    s.extra_body = m.request.clone();
    if let Some(secs) = args.timeout.or(m.timeout_secs) {
        s.timeout = std::time::Duration::from_secs(secs.max(1));
    }
    if let Some(secs) = args.idle_timeout.or(m.idle_timeout_secs) {
        s.idle_timeout = std::time::Duration::from_secs(secs.max(1));
    }
    s.stream = !args.no_stream && m.stream.unwrap_or(s.stream);
    s.max_retries = args.max_retries.or(m.max_retries).unwrap_or(s.max_retries);
    s.max_reasks = args.max_reasks.or(m.max_reasks).unwrap_or(s.max_reasks);
    s.jobs = args.jobs.or(m.jobs).unwrap_or(s.jobs).max(1);
    s.budget = args.budget.or(m.budget);
    if let Some(bytes) = m.max_response_bytes {
        s.max_response_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    s.budget_usd = args.budget_usd;
    s.context_tokens = m.context_tokens;
    Ok(s)
}

/// The variable the producing key is read from (a policy's `[model] api_key_env`).
pub fn key_env(config: &ConfigFile) -> &str {
    config
        .model
        .api_key_env
        .as_deref()
        .unwrap_or(crate::model::settings::DEFAULT_KEY_ENV)
}

/// The variable the judge's key is read from (a policy's `[judge] api_key_env`).
pub fn judge_key_env(config: &ConfigFile) -> &str {
    config
        .judge
        .api_key_env
        .as_deref()
        .unwrap_or(crate::policy::JUDGE_KEY_ENV)
}

/// The judging steps' settings: the producing settings with the judge's model and base URL
/// (flags > `HATRACK_JUDGE_MODEL` / `HATRACK_JUDGE_BASE_URL` > `[judge]` > the producing
/// model), and the judge's own key: the producing key goes to the judge only when the judge
/// lives at the producing endpoint.
pub fn judge_settings(
    args: &ModelArgs,
    config: &ConfigFile,
    producer: &ModelSettings,
) -> Result<ModelSettings, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut s = producer.clone();
    if let Some(name) = args
        .judge_model
        .clone()
        .or_else(|| env("HATRACK_JUDGE_MODEL"))
        .or_else(|| config.judge.model.clone())
    {
        s.model = name;
    }
    if let Some(url) = args
        .judge_base_url
        .clone()
        .or_else(|| env(crate::policy::JUDGE_BASE_URL_ENV))
        .or_else(|| config.judge.base_url.clone())
    {
        s.base_url = url.trim_end_matches('/').to_string();
    }
    s.api_key = match env(judge_key_env(config)) {
        Some(key) => {
            s.api_key_env = judge_key_env(config).to_string();
            Secret::new(key)
        }
        None if s.base_url == producer.base_url => producer.api_key.clone(),
        None => {
            s.api_key_env = judge_key_env(config).to_string();
            Secret::default()
        }
    };
    check_judge(producer, &s)?;
    Ok(s)
}

/// Requests are routed to an endpoint by model name, so a judge at another endpoint needs a
/// name of its own.
fn check_judge(producer: &ModelSettings, judge: &ModelSettings) -> Result<(), Error> {
    if judge.base_url != producer.base_url && judge.model == producer.model {
        return Err(Error::usage(format!(
            "the judge model {:?} is the producing model's name at another base URL ({}); name the judge model with --judge-model (or [judge] model) so requests can be routed",
            judge.model, judge.base_url
        )));
    }
    Ok(())
}

/// Puts a recorded run's request-shaping settings back, so re-rendered requests match;
/// returns the judge's settings as recorded (the producing ones for older run.json files).
pub fn apply_record(settings: &mut ModelSettings, record: &ModelRecord) -> ModelSettings {
    settings.model = record.name.clone();
    settings.temperature = record.temperature;
    settings.seed = record.seed;
    settings.max_tokens = record.max_tokens;
    settings.max_reasks = record.max_reasks;
    settings.extra_body = record.request.clone();
    let mut judge = settings.clone();
    if let Some(j) = &record.judge {
        judge.model = j.name.clone();
        if j.base_url != record.base_url {
            judge.base_url = j.base_url.clone();
        }
    }
    judge
}

/// One set of HTTP clients for everything the run sends (the context-window probe, the
/// producing and the judging model): a connection the probe opened serves the first
/// request instead of a new one.
/// Already shared settings keep theirs.
pub fn share_connections(settings: &mut ModelSettings, judge: &mut ModelSettings) {
    if settings.connections.is_some() && judge.connections.is_some() {
        return;
    }
    let connections = crate::model::settings::Connections::default();
    settings.connections = Some(connections.clone());
    judge.connections = Some(connections);
}

/// The scrubber for everything written: the API keys' values (the producing and the
/// judge's) and hatrack.toml's patterns.
pub fn scrubber(keys: &[&ModelSettings], config: &ConfigFile) -> Result<Scrubber, Error> {
    let patterns = crate::secrets::compile_patterns(
        &config.secrets.scrub_patterns,
        "hatrack.toml [secrets] scrub_patterns",
    )
    .map_err(|e| Error::usage(e.to_string()))?;
    let mut secrets: Vec<String> = Vec::new();
    for s in keys {
        let key = s.api_key.expose();
        if !key.is_empty() && !secrets.iter().any(|k| k == key) {
            secrets.push(key.to_string());
        }
    }
    Ok(Scrubber::new(secrets, patterns))
}

/// The workspace tools every step is offered, unless `[agent] tools = false`.
pub fn agent(
    config: &ConfigFile,
    workspace: &Path,
    scrubber: &Scrubber,
) -> Result<Option<crate::run::agent::Agent>, Error> {
    let a = &config.agent;
    if !a.tools {
        return Ok(None);
    }
    if !(1..=64).contains(&a.max_turns) {
        return Err(Error::usage(format!(
            "hatrack.toml [agent] max_turns = {}: use 1 to 64",
            a.max_turns
        )));
    }
    let workspace =
        crate::tools::Workspace::new(workspace, &config.tools.deny, crate::tools::Caps::default())
            .map_err(|e| Error::usage(format!("hatrack.toml [tools]: {e}")))?;
    Ok(Some(crate::run::agent::Agent {
        tools: crate::run::tool_answers::ToolAnswers::live(workspace, scrubber.clone()),
        max_turns: a.max_turns,
        scrubber: scrubber.clone(),
    }))
}

/// `--prices FILE` loaded, and `--budget-usd` checked against it: a spending cap needs a
/// price for every model the run may call (an unknown price is never taken as 0).
pub fn prices(
    file: Option<&Path>,
    settings: &mut ModelSettings,
    judge: &mut ModelSettings,
) -> Result<Option<std::sync::Arc<crate::model::prices::Prices>>, Error> {
    let prices = match file {
        Some(path) => Some(std::sync::Arc::new(crate::model::prices::Prices::load(
            path,
        )?)),
        None => None,
    };
    if let Some(usd) = settings.budget_usd {
        if !(usd.is_finite() && usd > 0.0) {
            return Err(Error::usage(format!(
                "--budget-usd {usd}: give a positive number of US dollars, e.g. --budget-usd 2.50"
            )));
        }
        let Some(table) = &prices else {
            return Err(Error::usage(
                "--budget-usd needs --prices FILE (LiteLLM's model-prices JSON, or TOML of USD per million tokens) to know what tokens cost",
            ));
        };
        for model in [&settings.model, &judge.model] {
            if table.get(model).is_none() {
                return Err(Error::usage(format!(
                    "--budget-usd: {} has no price for model {model:?}; add it (input/output per token, or per million in TOML) or drop --budget-usd",
                    table.source.display()
                )));
            }
        }
    }
    judge.budget_usd = settings.budget_usd;
    Ok(prices)
}
