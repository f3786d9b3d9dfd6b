//! `hatrack.toml` (at the workspace root) as written. Precedence: flags > environment >
//! policy file > hatrack.toml > defaults, where the workspace's file may only bind inputs and
//! tighten ([`crate::policy`] decides what it may set). Secrets never come from a file: the
//! API key is read from `OPENAI_API_KEY` (or the variable a policy's `api_key_env` names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

pub const CONFIG_FILE: &str = "hatrack.toml";

/// The file as written. Unknown keys are an error: a typo should not silently do nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub stage: StageSection,
    #[serde(default)]
    pub model: ModelSection,
    /// Reads item (lowercase, as written in the hat) → workspace path(s) or glob(s).
    #[serde(default)]
    pub inputs: BTreeMap<String, PathList>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub secrets: SecretsSection,
    #[serde(default)]
    pub judge: JudgeSection,
    /// How long a quote must be to ground a verdict.
    #[serde(default)]
    pub grounding: crate::verdict::grounding::GroundingRules,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub tools: ToolsSection,
    /// How lenient the gate is: policy only (the workspace may only leave these off).
    #[serde(default)]
    pub gate: GateSection,
    /// `[[check]]`: rule mappings and probes, read by [`crate::checks`] (policy's, then what
    /// the workspace adds; the workspace cannot take one away).
    #[serde(default)]
    pub check: Vec<toml::Table>,
    /// `[evidence]`: SARIF and JUnit files CI produced, read by [`crate::checks`].
    #[serde(default)]
    pub evidence: EvidenceSection,
}

/// `[evidence]`: what linters and tests already found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSection {
    /// SARIF 2.1.0 or JUnit XML files: in a policy file relative to it, in the workspace's
    /// file relative to the workspace (and inside it).
    #[serde(default)]
    pub files: Vec<String>,
}

/// `[gate]`: leniencies of the gate, as `--allow-unknown` / `--allow-unstable`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    #[serde(default)]
    pub allow_unknown: bool,
    #[serde(default)]
    pub allow_unstable: bool,
    /// A judging step, or the stage, that ruled on nothing does not block.
    #[serde(default)]
    pub allow_nothing_judged: bool,
    /// A `met` about the repository grounded only in hats' artifacts does not block.
    #[serde(default)]
    pub allow_artifact_only: bool,
}

/// `[agent]`: steps as agents with read-only workspace tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Offer `list_files`, `read_file` and `search` to every step (default true).
    #[serde(default = "default_tools")]
    pub tools: bool,
    /// Model turns per step at most: tool turns, the answer and its re-asks (1..=64).
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
}

fn default_tools() -> bool {
    true
}
fn default_max_turns() -> u32 {
    8
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            tools: default_tools(),
            max_turns: default_max_turns(),
        }
    }
}

/// `[tools]`: what the workspace tools may not read, besides the built-in deny list
/// (`.git/`, `.env*`, `*.pem`, `*id_rsa*`, `*.key`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSection {
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `[judge]`: the model every judging step asks (constraint judges, review agents, the
/// completion judge). The producing hats keep `[model]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSection {
    pub model: Option<String>,
    /// When the judge model lives at another endpoint.
    pub base_url: Option<String>,
    /// The variable holding the judge's key (default `HATRACK_JUDGE_API_KEY`; the producing
    /// key is sent to the judge only when it lives at the producing endpoint).
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    /// Stage directory, relative to the workspace.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub name: Option<String>,
    pub base_url: Option<String>,
    /// Name of the environment variable holding the key (default `OPENAI_API_KEY`).
    pub api_key_env: Option<String>,
    pub temperature: Option<f32>,
    pub seed: Option<i64>,
    pub max_tokens: Option<u32>,
    pub timeout_secs: Option<u64>,
    /// Seconds a streamed answer may go without a chunk (default 60).
    #[serde(alias = "idle_timeout")]
    pub idle_timeout_secs: Option<u64>,
    /// `false` asks for whole answers instead of streamed ones (default `true`).
    pub stream: Option<bool>,
    pub max_retries: Option<u32>,
    pub max_reasks: Option<u32>,
    pub jobs: Option<usize>,
    pub budget: Option<u64>,
    /// Bytes of one response body read at most (default 8 MiB).
    pub max_response_bytes: Option<u64>,
    /// The model's context window in tokens; every request is sized to fit it (default: what
    /// the server says, else 32768).
    pub context_tokens: Option<u64>,
    /// Further request-body fields, sent as they are (e.g. `frequency_penalty = 1.0`).
    #[serde(default)]
    pub request: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Bytes of one input file quoted into a prompt; the rest is cut with a visible marker.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: usize,
    /// Bytes of all inputs quoted into one step's prompt.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
    /// Bytes of one artifact quoted into a later step's prompt.
    #[serde(default = "default_max_artifact_bytes")]
    pub max_artifact_bytes: usize,
}

fn default_max_file_bytes() -> usize {
    12_000
}
fn default_max_input_bytes() -> usize {
    48_000
}
fn default_max_artifact_bytes() -> usize {
    12_000
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_file_bytes: default_max_file_bytes(),
            max_input_bytes: default_max_input_bytes(),
            max_artifact_bytes: default_max_artifact_bytes(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// Regular expressions whose matches are replaced by `[REDACTED]` in every file written.
    #[serde(default)]
    pub scrub_patterns: Vec<String>,
    /// Redact bound inputs *before* they are sent to the model: `true` applies
    /// `scrub_patterns`, a list applies its own patterns. Deterministic, so replay matches.
    #[serde(default)]
    pub redact_inputs: RedactInputs,
}

/// `[secrets] redact_inputs`: `false` (default), `true`, or a list of patterns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RedactInputs {
    Enabled(bool),
    Patterns(Vec<String>),
}

impl Default for RedactInputs {
    fn default() -> Self {
        RedactInputs::Enabled(false)
    }
}

impl SecretsSection {
    /// The patterns applied to bound inputs before they are sent (empty: none).
    pub fn redact_patterns(&self) -> &[String] {
        match &self.redact_inputs {
            RedactInputs::Enabled(true) => &self.scrub_patterns,
            RedactInputs::Enabled(false) => &[],
            RedactInputs::Patterns(p) => p,
        }
    }
}

/// One path or glob, or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PathList {
    One(String),
    Many(Vec<String>),
}

impl PathList {
    pub fn patterns(&self) -> Vec<&str> {
        match self {
            PathList::One(p) => vec![p.as_str()],
            PathList::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

/// The largest hatrack.toml read.
pub const MAX_CONFIG_BYTES: u64 = crate::safe_fs::Kind::CONFIG.max;

/// `[model.request]` fields that are hatrack's own: the request's shape, its messages and
/// the answer's format. Refused wherever they are written.
pub const RESERVED_REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "best_of",
];

/// Reads a config or policy file named on the command line through the bounded reader: a
/// regular file of at most [`MAX_CONFIG_BYTES`], a link at its name followed only inside its
/// own directory.
pub fn read_bounded(path: &Path) -> Result<String, Error> {
    use crate::safe_fs::{read_bounded_string, Kind, Links};
    Ok(read_bounded_string(path, Kind::CONFIG, Links::SameDir)?)
}

/// The text of `WORKSPACE/hatrack.toml` (`None`: there is none). The workspace is the
/// reviewed repository: a link that leads out of it is refused, never followed.
pub fn read_workspace_file(workspace: &Path) -> Result<Option<String>, Error> {
    use crate::safe_fs::{read_bounded_string, Kind, Links};
    let path = workspace.join(CONFIG_FILE);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => Ok(Some(read_bounded_string(
            &path,
            Kind::CONFIG,
            Links::Within(workspace),
        )?)),
    }
}

impl ConfigFile {
    /// Reads `WORKSPACE/hatrack.toml` as written, every key taken; a missing file is an
    /// empty config. For a run, [`crate::policy::resolve`] decides which keys count.
    pub fn load(workspace: &Path) -> Result<ConfigFile, Error> {
        let path = workspace.join(CONFIG_FILE);
        match read_workspace_file(workspace)? {
            Some(text) => Self::parse(&text, &path),
            None => Ok(ConfigFile::default()),
        }
    }

    /// Parses hatrack.toml and checks what can be checked before any model call (the
    /// `[secrets]` patterns compile and cannot match the empty string).
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, Error> {
        Self::checked(Self::parse_toml(text, path)?, path)
    }

    /// A table (a policy with a workspace merged onto it) read as a config, with the
    /// checks [`ConfigFile::parse`] makes.
    pub fn from_table(table: toml::Table, path: &Path) -> Result<ConfigFile, Error> {
        let config: ConfigFile = toml::Value::Table(table)
            .try_into()
            .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        Self::checked(config, path)
    }

    fn checked(config: ConfigFile, path: &Path) -> Result<ConfigFile, Error> {
        config.validate(path)?;
        let secrets = &config.secrets;
        for (patterns, key) in [
            (&secrets.scrub_patterns[..], "scrub_patterns"),
            (secrets.redact_patterns(), "redact_inputs"),
        ] {
            crate::secrets::compile_patterns(
                patterns,
                &format!("{} [secrets] {key}", path.display()),
            )
            .map_err(|e| Error::usage(e.to_string()))?;
        }
        Ok(config)
    }

    fn parse_toml(text: &str, path: &Path) -> Result<ConfigFile, Error> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            Error::usage(format!(
                "{}{at}: {}",
                path.display(),
                e.message().trim_end()
            ))
        })
    }

    /// Every number of the file in its range (the same table as the flags':
    /// [`crate::model::settings::bounds`]), so a typo'd `jobs = 100000` is an error naming
    /// the file and key, not a hang.
    pub fn validate(&self, path: &Path) -> Result<(), Error> {
        use crate::model::settings::bounds::{self, check, check_f64};
        let m = &self.model;
        let l = &self.limits;
        let mut problems: Vec<String> = Vec::new();
        let mut put = |r: Result<(), String>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        let opt = |what: &str, v: Option<u64>, range| match v {
            Some(v) => check(what, v, range).map(drop),
            None => Ok(()),
        };
        put(opt(
            "[model] max_tokens",
            m.max_tokens.map(u64::from),
            &bounds::MAX_TOKENS,
        ));
        put(opt(
            "[model] timeout_secs",
            m.timeout_secs,
            &bounds::TIMEOUT_SECS,
        ));
        put(opt(
            "[model] idle_timeout_secs",
            m.idle_timeout_secs,
            &bounds::IDLE_TIMEOUT_SECS,
        ));
        put(opt(
            "[model] max_retries",
            m.max_retries.map(u64::from),
            &bounds::MAX_RETRIES,
        ));
        put(opt(
            "[model] max_reasks",
            m.max_reasks.map(u64::from),
            &bounds::MAX_REASKS,
        ));
        put(opt("[model] jobs", m.jobs.map(|j| j as u64), &bounds::JOBS));
        put(opt("[model] budget", m.budget, &bounds::BUDGET));
        put(opt(
            "[model] max_response_bytes",
            m.max_response_bytes,
            &bounds::MAX_RESPONSE_BYTES,
        ));
        put(opt(
            "[model] context_tokens",
            m.context_tokens,
            &bounds::CONTEXT_TOKENS,
        ));
        for field in m.request.keys() {
            if RESERVED_REQUEST_FIELDS.contains(&field.as_str()) {
                put(Err(format!(
                    "[model.request] {field} is a field hatrack sets itself (use [model] max_tokens for a cap, --samples for several answers)"
                )));
            }
        }
        if let Some(t) = m.temperature {
            put(check_f64("[model] temperature", f64::from(t), &bounds::TEMPERATURE).map(drop));
        }
        let turns = u64::from(self.agent.max_turns);
        put(check("[agent] max_turns", turns, &bounds::MAX_TURNS).map(drop));
        for (what, v) in [
            ("[limits] max_file_bytes", l.max_file_bytes),
            ("[limits] max_input_bytes", l.max_input_bytes),
            ("[limits] max_artifact_bytes", l.max_artifact_bytes),
        ] {
            put(check(what, v as u64, &bounds::LIMIT_BYTES).map(drop));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::usage(format!(
                "{}: {}",
                path.display(),
                problems.join("; ")
            )))
        }
    }

    /// The `[inputs]` entry for a Reads item, matched case-insensitively with whitespace folded.
    pub fn input_for(&self, item: &str) -> Option<(&str, &PathList)> {
        let wanted = normalise_item(item);
        self.inputs
            .iter()
            .find(|(k, _)| normalise_item(k) == wanted)
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// Lowercase, whitespace folded, trailing punctuation dropped: how Reads items are compared.
pub fn normalise_item(item: &str) -> String {
    crate::verdict::fold_whitespace(item)
        .trim_end_matches(['.', ';', ':'])
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[agent] max_turns` is bounded (1..=64, as documented): 0 would let a step make no
    /// request at all, and a huge value an agent loop without end.
    #[test]
    fn max_turns_is_bounded() {
        let check = |turns: &str| {
            let text = format!("[agent]\ntools = true\nmax_turns = {turns}\n");
            ConfigFile::parse(&text, Path::new("hatrack.toml")).and_then(|c| {
                c.validate(Path::new("hatrack.toml"))?;
                Ok(c)
            })
        };
        for ok in ["1", "8", "64"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "65", "4000000000"] {
            let err = check(bad).unwrap_err().to_string();
            assert!(err.contains("[agent] max_turns"), "{bad}: {err}");
            assert!(err.contains("64"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_typo_in_the_config_names_file_and_line() {
        let err = ConfigFile::parse(
            "[inputs]\n\"a\" = \"b\"\n[modle]\nname = \"x\"\n",
            Path::new("ws/hatrack.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("ws/hatrack.toml:3:"), "{err}");
        assert!(err.contains("modle"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_name_the_file_and_key() {
        let err = ConfigFile::parse(
            "[model]\njobs = 100000\nmax_reasks = 4294967295\ntemperature = nan\n[limits]\nmax_file_bytes = 0\n",
            Path::new("ws/hatrack.toml"),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "ws/hatrack.toml",
            "[model] jobs = 100000",
            "[model] max_reasks = 4294967295",
            "[model] temperature = NaN",
            "[limits] max_file_bytes = 0",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }

    #[test]
    fn inputs_match_case_and_whitespace_insensitively() {
        let cfg = ConfigFile::parse(
            "[inputs]\n\"validation report\" = \"r.md\"\n\"transformation code\" = [\"models/**/*.sql\"]\n",
            Path::new("hatrack.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.input_for("Validation  Report.").unwrap().1,
            &PathList::One("r.md".into())
        );
        assert!(cfg.input_for("extraction jobs").is_none());
    }
}
