//! Trusted policy vs the reviewed workspace's `hatrack.toml`.
//!
//! In CI the reviewed repository is written by the party the gate judges. So its
//! `hatrack.toml` may bind inputs and tighten rules, but never choose where requests and keys
//! go, which model answers or judges, which stage is run, or how lenient the gate is. Those
//! keys are *policy*: they come from flags, the environment, or a policy file (`--policy
//! FILE`, `HATRACK_POLICY`) that lies outside the workspace. [`KEYS`] is the one table that
//! says which key is which; a key it does not list is policy (fail closed).
//!
//! Merging happens on the TOML tables, key by key, so "the workspace set this key" is a
//! fact, not a guess from a default value; the merged table is then read as one
//! [`ConfigFile`], with every check that file gets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::config::{ConfigFile, CONFIG_FILE};
use crate::model::settings::ModelSettings;
use crate::verdict::grounding::GroundingRules;

/// The environment variable naming a policy file (`--policy` wins over it).
pub const POLICY_ENV: &str = "HATRACK_POLICY";
/// The judge's own key, when the judge lives at another endpoint.
pub const JUDGE_KEY_ENV: &str = "HATRACK_JUDGE_API_KEY";
/// The judge's endpoint from the environment.
pub const JUDGE_BASE_URL_ENV: &str = "HATRACK_JUDGE_BASE_URL";

/// What the reviewed workspace may do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Binds the workspace's files or shapes transport: the workspace sets it.
    Binding,
    /// Where requests and keys go, which model answers or judges, which stage is run: set
    /// only by policy.
    Policy,
    /// A cap on cost or chance (budget, retries, temperature): the workspace may lower it.
    Cap,
    /// A minimum evidence must reach: the workspace may raise it.
    Floor,
    /// A leniency of the gate: the workspace may leave it off, never turn it on.
    Permission,
    /// A list policy starts (deny globs, scrub patterns): the workspace may add to it.
    Addition,
}

impl Trust {
    fn says(self) -> &'static str {
        match self {
            Trust::Binding => "the workspace sets it",
            Trust::Policy => "policy only",
            Trust::Cap => "the workspace may lower it",
            Trust::Floor => "the workspace may raise it",
            Trust::Permission => "the workspace may only leave it off",
            Trust::Addition => "the workspace may add to it",
        }
    }
}

/// One key of `hatrack.toml` and of a policy file.
#[derive(Debug)]
pub struct Key {
    /// Dotted: `model.base_url`, `grounding.min_words`; `inputs.*` stands for a whole table.
    pub name: &'static str,
    pub trust: Trust,
    /// The flag that outranks every file, if there is one.
    pub flag: Option<&'static str>,
    /// The environment variable that outranks every file, if there is one.
    pub env: Option<&'static str>,
    /// Why it matters, for the refusal message and docs/policy.md.
    pub about: &'static str,
}

const fn key(name: &'static str, trust: Trust, about: &'static str) -> Key {
    Key {
        name,
        trust,
        flag: None,
        env: None,
        about,
    }
}

const fn flagged(
    name: &'static str,
    trust: Trust,
    flag: &'static str,
    env: Option<&'static str>,
    about: &'static str,
) -> Key {
    Key {
        name,
        trust,
        flag: Some(flag),
        env,
        about,
    }
}

/// Every key, with what the workspace may do with it. Keys under `model.request` are
/// [`SAMPLING_KNOBS`] (bindings) or policy.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    flagged("stage.path", Trust::Policy, "--stage", None, "which requirements exist"),
    flagged("model.name", Trust::Policy, "--model", Some("HATRACK_MODEL"), "which model answers"),
    flagged("model.base_url", Trust::Policy, "--base-url", Some("OPENAI_BASE_URL"), "where requests and the API key go"),
    key("model.api_key_env", Trust::Policy, "which environment variable is sent as the API key"),
    key("model.seed", Trust::Policy, "a seed can be shopped for until a judge agrees"),
    key("model.temperature", Trust::Cap, "a higher temperature makes a verdict a draw"),
    key("model.max_tokens", Trust::Cap, "what one request may cost"),
    flagged("model.max_retries", Trust::Cap, "--max-retries", None, "how often a request is paid for again"),
    flagged("model.max_reasks", Trust::Cap, "--max-reasks", None, "how often a step is asked again"),
    flagged("model.budget", Trust::Cap, "--budget", None, "what the run may spend"),
    flagged("model.timeout_secs", Trust::Binding, "--timeout", None, "how long one request may take"),
    flagged("model.idle_timeout_secs", Trust::Binding, "--idle-timeout", None, "how long a stream may pause"),
    flagged("model.stream", Trust::Binding, "--no-stream", None, "streamed or whole answers"),
    flagged("model.jobs", Trust::Binding, "--jobs", None, "requests in flight"),
    key("model.max_response_bytes", Trust::Binding, "the largest answer read"),
    key("model.context_tokens", Trust::Binding, "the model's context window every request is sized to fit (it neither redirects nor loosens: a request that does not fit ends its step unknown)"),
    flagged("judge.model", Trust::Policy, "--judge-model", Some("HATRACK_JUDGE_MODEL"), "which model judges"),
    flagged("judge.base_url", Trust::Policy, "--judge-base-url", Some(JUDGE_BASE_URL_ENV), "where judging requests and their key go"),
    key("judge.api_key_env", Trust::Policy, "which environment variable is sent as the judge's key"),
    key("grounding.min_words", Trust::Floor, "how long a quote must be to ground a verdict"),
    key("grounding.min_chars", Trust::Floor, "how long a quote must be to ground a verdict"),
    key("grounding.shared_quote_min_words", Trust::Floor, "how long a quote must be to ground more than one requirement"),
    flagged("gate.allow_unknown", Trust::Permission, "--allow-unknown", None, "whether unknown verdicts pass"),
    flagged("gate.allow_unstable", Trust::Permission, "--allow-unstable", None, "whether unstable verdicts pass"),
    key("gate.allow_nothing_judged", Trust::Permission, "whether a judge that ruled on nothing passes"),
    key("gate.allow_artifact_only", Trust::Permission, "whether a met resting only on a hat's own output passes"),
    key("agent.tools", Trust::Binding, "whether steps may read the workspace through tools"),
    key("agent.max_turns", Trust::Cap, "how many requests one step may make"),
    key("tools.deny", Trust::Addition, "what the tools may never read"),
    key("secrets.scrub_patterns", Trust::Addition, "what is scrubbed from every file written"),
    key("secrets.redact_inputs", Trust::Addition, "what is redacted before it is sent"),
    key("check", Trust::Addition, "which checks' findings make a requirement unmet or refuse its met"),
    key("evidence.files", Trust::Addition, "which linters' and tests' findings the judges see"),
    key("inputs.*", Trust::Binding, "which files answer each Reads item"),
    key("limits.*", Trust::Binding, "how much of each file is quoted"),
];

/// `[model.request]` fields that only shape sampling; the workspace may set them. Any other
/// field (`logit_bias` can steer a judge's answer, `n` bills a request many times) is policy,
/// and hatrack's own fields are refused everywhere ([`crate::config`]).
pub const SAMPLING_KNOBS: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "repetition_penalty",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
];

/// [`KEYS`] as the Markdown table docs/policy.md shows (a test keeps the two the same).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Key | What the workspace may do | Flag / environment | Why it matters |\n|---|---|---|---|\n",
    );
    for k in KEYS {
        let shown = match k.name.rsplit_once('.') {
            Some((section, name)) => format!("`[{section}] {name}`"),
            // A top-level array of tables.
            None => format!("`[[{}]]`", k.name),
        };
        let outranks: Vec<String> = k
            .flag
            .map(|f| format!("`{f}`"))
            .into_iter()
            .chain(k.env.map(|e| format!("`{e}`")))
            .collect();
        out.push_str(&format!(
            "| {shown} | {} | {} | {} |\n",
            k.trust.says(),
            if outranks.is_empty() {
                "—".to_string()
            } else {
                outranks.join(", ")
            },
            k.about
        ));
    }
    out
}

/// The entry for a dotted key; `None`: not listed, so policy.
pub fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| match k.name.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => k.name == name,
    })
}

fn trust_of(name: &str) -> Trust {
    if let Some(knob) = name.strip_prefix("model.request.") {
        return if SAMPLING_KNOBS.contains(&knob) {
            Trust::Binding
        } else {
            Trust::Policy
        };
    }
    lookup(name).map_or(Trust::Policy, |k| k.trust)
}

/// `[section] key` as a person reads it in the file.
fn display(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((section, key)) => format!("[{section}] {key}"),
        None if name == "check" => "[[check]]".to_string(),
        None => name.to_string(),
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from", content = "name")]
pub enum Origin {
    Default,
    Flag(String),
    Env(String),
    PolicyFile,
    /// The workspace file, within what it may do (a binding, or a tightening).
    Workspace,
    /// The workspace file beyond what it may do, with `--trust-workspace-config`.
    TrustedWorkspace,
    /// The run's own run.json (a replay applies the recorded policy).
    Recorded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::PolicyFile => f.write_str("policy file"),
            Origin::Workspace => f.write_str("workspace hatrack.toml (tightened)"),
            Origin::TrustedWorkspace => {
                f.write_str("workspace hatrack.toml (--trust-workspace-config)")
            }
            Origin::Recorded => f.write_str("recorded run.json"),
        }
    }
}

/// Why the policy could not be put together; all exit 2.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: {} set by the reviewed workspace, which may bind inputs and tighten rules but not loosen or redirect them:\n{}\nSet {} with a flag, the environment or a policy file outside the workspace (`--policy FILE`, docs/policy.md); for a repository you own, `--trust-workspace-config` honours the file (and every report says so).", file.display(), if refused.len() == 1 { "a policy key is" } else { "policy keys are" }, refused.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"), if refused.len() == 1 { "it" } else { "them" })]
    Refused {
        file: PathBuf,
        refused: Vec<Refusal>,
    },
    #[error("--policy {}: the policy file lies inside the reviewed workspace {}, which the party under review writes; keep it outside (e.g. in the CI job's checkout of the base branch)", file.display(), workspace.display())]
    InsideWorkspace { file: PathBuf, workspace: PathBuf },
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
}

/// One key the workspace may not set as it did.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub key: String,
    /// 1-based line in the workspace file, when found.
    pub line: Option<usize>,
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        write!(f, "{at}{} {}", display(&self.key), self.why)?;
        if let Some(k) = lookup(&self.key) {
            let mut instead = Vec::new();
            instead.extend(k.flag.map(|f| f.to_string()));
            instead.extend(k.env.map(|e| format!("${e}")));
            if !instead.is_empty() {
                write!(f, " (instead: {})", instead.join(" or "))?;
            }
        }
        Ok(())
    }
}

/// A policy file: a `hatrack.toml` whose every key is trusted, minus `[inputs]` (bindings
/// belong to the workspace). `[stage] path` is relative to the file.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub path: PathBuf,
    table: Table,
}

impl PolicyFile {
    /// `--policy FILE`, else `$HATRACK_POLICY`, else none.
    pub fn from_args(flag: Option<&Path>) -> Result<Option<PolicyFile>, PolicyError> {
        let path = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(POLICY_ENV).filter(|v| !v.is_empty()) {
                Some(p) => PathBuf::from(p),
                None => return Ok(None),
            },
        };
        Self::load(&path).map(Some)
    }

    pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
        let fail = |message: String| PolicyError::File {
            file: path.to_path_buf(),
            message,
        };
        let text = crate::config::read_bounded(path).map_err(|e| fail(e.to_string()))?;
        // The typed reading gives line-numbered errors and every range check.
        ConfigFile::parse(&text, path).map_err(|e| fail(strip_prefix(&e.to_string(), path)))?;
        let mut table: Table = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if table.contains_key("inputs") {
            return Err(fail(
                "[inputs] binds a workspace's files: put it in the workspace's hatrack.toml, not in a policy file".into(),
            ));
        }
        // `[stage] path` relative to the policy file, so the file works from any directory.
        if let Some(Value::Table(stage)) = table.get_mut("stage") {
            if let Some(Value::String(p)) = stage.get_mut("path") {
                if crate::definition::embedded::parse(p).is_none() {
                    let base = path.parent().unwrap_or(Path::new("."));
                    *p = base.join(&*p).to_string_lossy().into_owned();
                }
            }
        }
        // `[evidence] files` relative to the policy file too.
        if let Some(Value::Table(evidence)) = table.get_mut("evidence") {
            if let Some(Value::Array(files)) = evidence.get_mut("files") {
                let base = path.parent().unwrap_or(Path::new("."));
                for f in files.iter_mut() {
                    if let Value::String(p) = f {
                        let joined = base.join(&*p);
                        let joined = std::path::absolute(&joined).unwrap_or(joined);
                        *p = joined.to_string_lossy().into_owned();
                    }
                }
            }
        }
        Ok(PolicyFile {
            path: path.to_path_buf(),
            table,
        })
    }

    /// The file read as a config (its bindings and policy, no workspace merged in).
    pub fn config(&self) -> Result<ConfigFile, crate::Error> {
        typed(&self.table, &self.path)
    }

    /// Refuses a policy file inside `workspace`: the party under review could write it.
    pub fn check_outside(&self, workspace: &Path) -> Result<(), PolicyError> {
        let (Ok(file), Ok(ws)) = (self.path.canonicalize(), workspace.canonicalize()) else {
            return Ok(());
        };
        if file.starts_with(&ws) {
            return Err(PolicyError::InsideWorkspace {
                file: self.path.clone(),
                workspace: workspace.to_path_buf(),
            });
        }
        Ok(())
    }
}

fn strip_prefix(message: &str, path: &Path) -> String {
    let shown = path.display().to_string();
    message
        .strip_prefix(&shown)
        .map(|m| m.trim_start_matches(':').trim_start().to_string())
        .unwrap_or_else(|| message.to_string())
}

/// The configuration a run uses and where each file-set key came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: ConfigFile,
    pub provenance: Provenance,
}

/// What [`PolicyRecord`] needs besides the final values.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub policy_file: Option<PathBuf>,
    pub trusted_workspace: bool,
    /// Dotted key → the file it came from (keys no file set are defaults, flags or env).
    pub from_files: BTreeMap<String, Origin>,
    /// The policy flags given on the command line.
    pub flags: Vec<&'static str>,
}

/// The workspace's `hatrack.toml` merged onto the policy: bindings and tightenings taken,
/// anything that would loosen or redirect refused (unless `trusted`). Nothing is sent
/// before this returns.
pub fn resolve(
    policy: Option<&PolicyFile>,
    workspace: &Path,
    trusted: bool,
) -> Result<Resolved, crate::Error> {
    if let Some(p) = policy {
        p.check_outside(workspace)?;
    }
    let ws_path = workspace.join(CONFIG_FILE);
    let ws_text = crate::config::read_workspace_file(workspace)?;
    let ws_table: Table = match &ws_text {
        Some(text) => {
            ConfigFile::parse(text, &ws_path)?;
            toml::from_str(text)
                .map_err(|e| crate::Error::usage(format!("{}: {e}", ws_path.display())))?
        }
        None => Table::new(),
    };
    let base = policy.map(|p| p.table.clone()).unwrap_or_default();
    let base_config = typed(&base, policy.map_or(Path::new("policy"), |p| &p.path))?;
    let mut merge = Merge {
        merged: base.clone(),
        base: &base_config,
        trusted,
        refused: Vec::new(),
        origins: BTreeMap::new(),
        text: ws_text.as_deref().unwrap_or(""),
    };
    for (name, _) in leaves(&base) {
        merge.origins.insert(name, Origin::PolicyFile);
    }
    for (name, value) in leaves(&ws_table) {
        merge.take(&name, value);
    }
    if !merge.refused.is_empty() {
        return Err(PolicyError::Refused {
            file: ws_path,
            refused: merge.refused,
        }
        .into());
    }
    let config = typed(&merge.merged, &ws_path)?;
    Ok(Resolved {
        config,
        provenance: Provenance {
            policy_file: policy.map(|p| p.path.clone()),
            trusted_workspace: trusted,
            from_files: merge.origins,
            flags: Vec::new(),
        },
    })
}

/// A merged table read as a config, with the file's checks.
fn typed(table: &Table, path: &Path) -> Result<ConfigFile, crate::Error> {
    ConfigFile::from_table(table.clone(), path)
}

/// The leaves of a config table as dotted keys: `section.key`, `model.request.knob`;
/// `inputs` and `limits` entries as `inputs.<item>`.
fn leaves(table: &Table) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (section, value) in table {
        match value {
            Value::Table(t) => {
                for (k, v) in t {
                    match (section.as_str(), k.as_str(), v) {
                        ("model", "request", Value::Table(knobs)) => {
                            for (knob, v) in knobs {
                                out.push((format!("model.request.{knob}"), v.clone()));
                            }
                        }
                        _ => out.push((format!("{section}.{k}"), v.clone())),
                    }
                }
            }
            other => out.push((section.clone(), other.clone())),
        }
    }
    out
}

struct Merge<'a> {
    merged: Table,
    base: &'a ConfigFile,
    trusted: bool,
    refused: Vec<Refusal>,
    origins: BTreeMap<String, Origin>,
    /// The workspace file's text, to name a refused key's line.
    text: &'a str,
}

impl Merge<'_> {
    /// Takes one workspace key as its trust allows.
    fn take(&mut self, name: &str, value: Value) {
        if name == "evidence.files" && !self.trusted && names_outside(&value) {
            self.refused.push(Refusal {
                key: name.to_string(),
                line: line_of(self.text, name),
                why: "names a file outside the workspace: the workspace's evidence files are relative paths inside it (give other files with --evidence or a policy file)".to_string(),
            });
            return;
        }
        let verdict = match trust_of(name) {
            Trust::Binding => Ok(value.clone()),
            Trust::Policy => Err("is policy".to_string()),
            Trust::Cap => self.within(name, &value, |ws, base| ws <= base, "above"),
            Trust::Floor => self.within(name, &value, |ws, base| ws >= base, "below"),
            Trust::Permission => match value {
                Value::Boolean(false) => Ok(value.clone()),
                _ => Err("would let more through the gate".to_string()),
            },
            Trust::Addition => self.added(name, value.clone()),
        };
        match verdict {
            Ok(value) => {
                self.set(name, value);
                self.origins.insert(name.to_string(), Origin::Workspace);
            }
            Err(_) if self.trusted => {
                // Trusted, the file is policy too; a policy file still outranks it.
                if !self.origins.contains_key(name) {
                    self.set(name, value);
                    self.origins
                        .insert(name.to_string(), Origin::TrustedWorkspace);
                }
            }
            Err(why) => {
                let about = lookup(name).map_or("it is not a workspace binding", |k| k.about);
                self.refused.push(Refusal {
                    key: name.to_string(),
                    line: line_of(self.text, name),
                    why: format!("{why}: {about}"),
                });
            }
        }
    }

    /// A cap or floor: the workspace's number compared with the policy's (or the default).
    fn within(
        &self,
        name: &str,
        value: &Value,
        holds: impl Fn(f64, f64) -> bool,
        wrong: &str,
    ) -> Result<Value, String> {
        let Some(ws) = number(value) else {
            return Err("is not a number".into());
        };
        match current(name, self.base) {
            Some(base) if !holds(ws, base) => Err(format!(
                "= {ws} is {wrong} policy's {base}, which would loosen it"
            )),
            _ => Ok(value.clone()),
        }
    }

    /// A list the workspace adds to: policy's entries first, then the workspace's. A value
    /// that is not a list (`redact_inputs = true`) the workspace may set where policy did
    /// not, or repeat; changing policy's would take away what policy asked for.
    fn added(&self, name: &str, value: Value) -> Result<Value, String> {
        match (get(&self.merged, name), value) {
            (Some(Value::Array(policy)), Value::Array(ws)) => {
                let mut all = policy.clone();
                all.extend(ws.into_iter().filter(|v| !policy.contains(v)));
                Ok(Value::Array(all))
            }
            (Some(policy), ws) if *policy != ws => {
                Err("would replace what policy set, where it may only add".to_string())
            }
            (_, value) => Ok(value),
        }
    }

    fn set(&mut self, name: &str, value: Value) {
        let mut path: Vec<&str> = match name.strip_prefix("model.request.") {
            Some(knob) => vec!["model", "request", knob],
            None => name.splitn(2, '.').collect(),
        };
        let last = path.pop().expect("a key has a name");
        let mut table = &mut self.merged;
        for part in path {
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            table = entry.as_table_mut().expect("just made a table");
        }
        table.insert(last.to_string(), value);
    }
}

/// A list of paths with one that is absolute or climbs out with `..`.
fn names_outside(value: &Value) -> bool {
    value.as_array().is_some_and(|files| {
        files.iter().filter_map(Value::as_str).any(|f| {
            let p = Path::new(f);
            p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
        })
    })
}

fn get<'t>(table: &'t Table, name: &str) -> Option<&'t Value> {
    let Some((section, key)) = name.split_once('.') else {
        // A top-level key (`[[check]]`).
        return table.get(name);
    };
    table.get(section)?.as_table()?.get(key)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Policy's value of a cap or floor (`None`: no cap).
fn current(name: &str, c: &ConfigFile) -> Option<f64> {
    let model = ModelSettings::default();
    let grounding = c.grounding;
    let m = &c.model;
    match name {
        "model.temperature" => Some(m.temperature.map_or(model.temperature, f64::from)),
        "model.max_tokens" => m.max_tokens.or(model.max_tokens).map(f64::from),
        "model.max_retries" => Some(f64::from(m.max_retries.unwrap_or(model.max_retries))),
        "model.max_reasks" => Some(f64::from(m.max_reasks.unwrap_or(model.max_reasks))),
        "model.budget" => m.budget.map(|b| b as f64),
        "agent.max_turns" => Some(f64::from(c.agent.max_turns)),
        "grounding.min_words" => Some(grounding.min_words as f64),
        "grounding.min_chars" => Some(grounding.min_chars as f64),
        "grounding.shared_quote_min_words" => Some(grounding.shared_quote_min_words as f64),
        _ => None,
    }
}

/// The line of `key` under its `[section]` header in a TOML text.
fn line_of(text: &str, name: &str) -> Option<usize> {
    let (section, key) = match name.strip_prefix("model.request.") {
        Some(knob) => ("model.request", knob),
        None => name.rsplit_once('.')?,
    };
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = header.trim();
            continue;
        }
        let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
        if current == section && k == key {
            return Some(i + 1);
        }
    }
    None
}

/// The effective policy a run used, key by key with its source: in run.json and every
/// report, and what a replay applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The policy file given, as given (`None`: none).
    pub file: Option<String>,
    /// `--trust-workspace-config`: the workspace file was honoured as policy.
    pub trusted_workspace_config: bool,
    pub keys: Vec<PolicyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyValue {
    pub key: String,
    pub value: String,
    pub source: Origin,
}

/// The values a run ended up with, for [`PolicyRecord::new`].
pub struct Effective<'a> {
    pub settings: &'a ModelSettings,
    pub judge: &'a ModelSettings,
    /// The endpoints without credentials, as run.json records them.
    pub base_url: String,
    pub judge_base_url: String,
    pub key_env: &'a str,
    pub judge_key_env: &'a str,
    pub stage: &'a str,
    pub config: &'a ConfigFile,
    pub grounding: GroundingRules,
    pub gate: crate::verdict::gate::GatePolicy,
}

impl PolicyRecord {
    /// Every policy, cap, floor and permission key with its value and source: a flag given
    /// (`flags`), else its environment variable, else the file that set it, else default.
    pub fn new(provenance: &Provenance, e: &Effective) -> PolicyRecord {
        let keys = KEYS
            .iter()
            .filter(|k| !matches!(k.trust, Trust::Binding | Trust::Addition))
            .map(|k| PolicyValue {
                key: k.name.to_string(),
                value: value_shown(k.name, e),
                source: source(k, provenance),
            })
            .collect();
        PolicyRecord {
            file: provenance
                .policy_file
                .as_ref()
                .map(|p| p.display().to_string()),
            trusted_workspace_config: provenance.trusted_workspace,
            keys,
        }
    }

    /// A recorded key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.key == key)
            .map(|k| k.value.as_str())
    }

    /// The recorded grounding rules (the defaults for a key not recorded).
    pub fn grounding(&self) -> GroundingRules {
        let mut rules = GroundingRules::default();
        if let Some(n) = self.get("grounding.min_words").and_then(|v| v.parse().ok()) {
            rules.min_words = n;
        }
        if let Some(n) = self.get("grounding.min_chars").and_then(|v| v.parse().ok()) {
            rules.min_chars = n;
        }
        if let Some(n) = self
            .get("grounding.shared_quote_min_words")
            .and_then(|v| v.parse().ok())
        {
            rules.shared_quote_min_words = n;
        }
        rules
    }

    /// A recorded permission.
    pub fn allows(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
}

fn source(k: &Key, provenance: &Provenance) -> Origin {
    if let Some(flag) = k.flag.filter(|f| provenance.flags.contains(f)) {
        return Origin::Flag(flag.to_string());
    }
    if let Some(var) = k.env.filter(|v| env_set(v)) {
        return Origin::Env(var.to_string());
    }
    provenance
        .from_files
        .get(k.name)
        .cloned()
        .unwrap_or(Origin::Default)
}

/// An environment variable set to something other than blanks.
pub fn env_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

fn value_shown(name: &str, e: &Effective) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    match name {
        "stage.path" => e.stage.to_string(),
        "model.name" => e.settings.model.clone(),
        "model.base_url" => e.base_url.clone(),
        "model.api_key_env" => e.key_env.to_string(),
        "model.seed" => opt(e.settings.seed.map(|s| s.to_string())),
        "model.temperature" => e.settings.temperature.to_string(),
        "model.max_tokens" => opt(e.settings.max_tokens.map(|t| t.to_string())),
        "model.max_retries" => e.settings.max_retries.to_string(),
        "model.max_reasks" => e.settings.max_reasks.to_string(),
        "model.budget" => opt(e.settings.budget.map(|b| b.to_string())),
        "judge.model" => e.judge.model.clone(),
        "judge.base_url" => e.judge_base_url.clone(),
        "judge.api_key_env" => e.judge_key_env.to_string(),
        "grounding.min_words" => e.grounding.min_words.to_string(),
        "grounding.min_chars" => e.grounding.min_chars.to_string(),
        "grounding.shared_quote_min_words" => e.grounding.shared_quote_min_words.to_string(),
        "gate.allow_unknown" => e.gate.allow_unknown.to_string(),
        "gate.allow_unstable" => e.gate.allow_unstable.to_string(),
        "gate.allow_nothing_judged" => e.gate.allow_nothing_judged.to_string(),
        "gate.allow_artifact_only" => e.gate.allow_artifact_only.to_string(),
        "agent.max_turns" => e.config.agent.max_turns.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        dir
    }

    #[test]
    fn every_redirecting_key_is_refused_with_its_line() {
        let dir = ws("[inputs]\n\"a\" = \"b\"\n[judge]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"x\"\n[model]\napi_key_env = \"OTHER\"\n[model.request]\nlogit_bias = { \"1\" = 100 }\ntop_p = 0.5\n");
        let err = resolve(None, dir.path(), false).unwrap_err().to_string();
        for part in [
            "line 4: [judge] base_url is policy",
            "line 5: [judge] model is policy",
            "line 7: [model] api_key_env is policy",
            "line 9: [model.request] logit_bias is policy",
            "--trust-workspace-config",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(!err.contains("top_p"), "{err}");
    }

    #[test]
    fn the_workspace_may_tighten_but_not_loosen() {
        let dir = ws("[grounding]\nmin_words = 5\n[model]\nmax_retries = 1\nmax_tokens = 100\n");
        let r = resolve(None, dir.path(), false).unwrap();
        assert_eq!(r.config.grounding.min_words, 5);
        assert_eq!(r.config.model.max_retries, Some(1));
        assert_eq!(
            r.provenance.from_files["grounding.min_words"],
            Origin::Workspace
        );

        let dir = ws(
            "[grounding]\nmin_words = 1\n[model]\nmax_retries = 9\n[gate]\nallow_unknown = true\n",
        );
        let err = resolve(None, dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains("[grounding] min_words = 1 is below policy's 3"),
            "{err}"
        );
        assert!(
            err.contains("[model] max_retries = 9 is above policy's 4"),
            "{err}"
        );
        assert!(
            err.contains("[gate] allow_unknown would let more through"),
            "{err}"
        );
    }

    #[test]
    fn trusted_the_file_is_honoured_but_a_policy_file_outranks_it() {
        let dir = ws("[judge]\nmodel = \"ws-judge\"\nbase_url = \"http://ws/v1\"\n");
        let r = resolve(None, dir.path(), true).unwrap();
        assert_eq!(r.config.judge.model.as_deref(), Some("ws-judge"));
        assert_eq!(
            r.provenance.from_files["judge.model"],
            Origin::TrustedWorkspace
        );

        let outside = tempfile::tempdir().unwrap();
        let file = outside.path().join("policy.toml");
        std::fs::write(&file, "[judge]\nmodel = \"policy-judge\"\n").unwrap();
        let policy = PolicyFile::load(&file).unwrap();
        let r = resolve(Some(&policy), dir.path(), true).unwrap();
        assert_eq!(r.config.judge.model.as_deref(), Some("policy-judge"));
        assert_eq!(r.config.judge.base_url.as_deref(), Some("http://ws/v1"));
    }

    #[test]
    fn a_policy_file_inside_the_workspace_is_refused() {
        let dir = ws("");
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, "[model]\nname = \"m\"\n").unwrap();
        let policy = PolicyFile::load(&file).unwrap();
        let err = resolve(Some(&policy), dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside the reviewed workspace"), "{err}");
    }

    #[test]
    fn the_workspace_cannot_take_back_what_policy_adds() {
        let dir = ws("[secrets]\nredact_inputs = false\n");
        let outside = tempfile::tempdir().unwrap();
        let file = outside.path().join("policy.toml");
        std::fs::write(
            &file,
            "[secrets]\nredact_inputs = true\nscrub_patterns = [\"x{20}\"]\n",
        )
        .unwrap();
        let policy = PolicyFile::load(&file).unwrap();
        let err = resolve(Some(&policy), dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2: [secrets] redact_inputs would replace"),
            "{err}"
        );
        // Without a policy saying otherwise, the workspace may turn redaction on.
        let dir = ws("[secrets]\nredact_inputs = true\n");
        assert!(resolve(Some(&policy), dir.path(), false).is_ok());
    }

    #[test]
    fn docs_list_every_key_as_the_table_says() {
        let docs =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.md"))
                .unwrap();
        assert!(
            docs.contains(&markdown_table()),
            "docs/policy.md must hold this table:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn the_workspace_adds_check_mappings_but_cannot_drop_policys() {
        let dir = ws("[[check]]\nrequirement = \"a\"\ntool = \"sqlfluff\"\n");
        let outside = tempfile::tempdir().unwrap();
        let file = outside.path().join("policy.toml");
        std::fs::write(
            &file,
            "[[check]]\nrequirement = \"a\"\ntool = \"ruff\"\non_finding = \"veto\"\n[evidence]\nfiles = [\"ruff.sarif\"]\n",
        )
        .unwrap();
        let policy = PolicyFile::load(&file).unwrap();
        let r = resolve(Some(&policy), dir.path(), false).unwrap();
        let tools: Vec<&str> = r
            .config
            .check
            .iter()
            .map(|c| c["tool"].as_str().unwrap())
            .collect();
        assert_eq!(tools, ["ruff", "sqlfluff"]);
        // Policy's evidence files are relative to the policy file.
        assert_eq!(
            Path::new(&r.config.evidence.files[0]),
            std::path::absolute(outside.path().join("ruff.sarif")).unwrap()
        );
        assert_eq!(r.provenance.from_files["check"], Origin::Workspace);
        // The workspace's own evidence files stay inside it.
        let dir = ws("[evidence]\nfiles = [\"ok.sarif\", \"/etc/passwd\"]\n");
        let err = resolve(None, dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains("line 2: [evidence] files names a file outside the workspace"),
            "{err}"
        );
        let dir = ws("[evidence]\nfiles = [\"../x.sarif\"]\n");
        assert!(resolve(None, dir.path(), false).is_err());
    }

    #[test]
    fn additions_keep_what_policy_listed() {
        let dir = ws("[tools]\ndeny = [\"secret/**\"]\n");
        let outside = tempfile::tempdir().unwrap();
        let file = outside.path().join("policy.toml");
        std::fs::write(&file, "[tools]\ndeny = [\"vault/**\"]\n").unwrap();
        let policy = PolicyFile::load(&file).unwrap();
        let r = resolve(Some(&policy), dir.path(), false).unwrap();
        assert_eq!(r.config.tools.deny, vec!["vault/**", "secret/**"]);
    }
}
