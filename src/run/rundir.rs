//! `run.json`: what a run was made of — hatrack version, stage and workspace (relative to
//! the run directory where possible), definition and prompt digests, model settings (never
//! a key), input digests, start time. Replay reads it back to re-render the same requests.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

pub const RUN_FILE: &str = "run.json";
pub const EXCHANGES_FILE: &str = "exchanges.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub hatrack_version: String,
    pub started_at: String,
    /// The record mode the run was recorded with.
    pub record_mode: String,
    pub stage: StageRecord,
    pub workspace: String,
    pub prompts: PromptsRecord,
    pub model: ModelRecord,
    pub samples: u32,
    pub inputs: Vec<InputDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage directory, relative to the run directory where possible.
    pub path: String,
    pub name: String,
    pub definition_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptsRecord {
    /// `None`: the shipped templates.
    pub dir: Option<String>,
    pub digest: String,
}

/// The settings that shape a request body (so replay renders identical requests), and the
/// provider's address with any credentials removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub base_url: String,
    pub temperature: f64,
    pub seed: Option<i64>,
    pub max_tokens: Option<u32>,
    pub max_reasks: u32,
    /// `[model.request]`: further body fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub request: serde_json::Map<String, serde_json::Value>,
    /// The judging steps' model (absent in runs recorded before judges had their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeRecord>,
}

/// The model every judging step asked, and where (credentials removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRecord {
    pub name: String,
    pub base_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDigest {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

impl RunRecord {
    pub fn read(run_dir: &Path) -> Result<RunRecord, Error> {
        let path = run_dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::usage(format!(
                "{}: {e}; is {} a run directory made by `hatrack run`?",
                path.display(),
                run_dir.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::usage(format!("{}:{}: {e}", path.display(), e.line())))
    }

    /// Writes run.json (pretty, trailing newline), passing it through `scrub`.
    pub fn write(&self, run_dir: &Path, scrub: &dyn Fn(&str) -> String) -> Result<(), Error> {
        let mut text = serde_json::to_string_pretty(self).expect("run records serialise");
        text.push('\n');
        let path = run_dir.join(RUN_FILE);
        std::fs::write(&path, scrub(&text))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// `path` relative to `base` when both resolve (`../../hats/deployment`), else absolute;
/// a stage compiled into the binary as `embedded:NAME`.
pub fn relative_to(path: &Path, base: &Path) -> String {
    if let Some(spelled) = crate::definition::embedded::spelling(path) {
        return spelled;
    }
    let (Ok(path), Ok(base)) = (path.canonicalize(), base.canonicalize()) else {
        return path.display().to_string();
    };
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return path.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &p[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A path recorded in run.json, resolved against the run directory (`embedded:NAME`: the
/// stage compiled into the binary).
pub fn resolve_recorded(run_dir: &Path, recorded: &str) -> PathBuf {
    if let Some(dir) = crate::definition::embedded::parse(recorded) {
        return dir;
    }
    let p = Path::new(recorded);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        run_dir.join(p)
    }
}

/// A base URL without user:password@ (never written to disk).
pub fn sanitise_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest
                .split_once('/')
                .map(|(a, p)| (a, Some(p)))
                .unwrap_or((rest, None));
            let host = authority
                .rsplit_once('@')
                .map(|(_, h)| h)
                .unwrap_or(authority);
            match path {
                Some(p) => format!("{scheme}://{host}/{p}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_recorded_relative_to_the_run_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("hats/deployment")).unwrap();
        std::fs::create_dir_all(root.path().join("transcripts/run-1")).unwrap();
        let rel = relative_to(
            &root.path().join("hats/deployment"),
            &root.path().join("transcripts/run-1"),
        );
        assert_eq!(rel, "../../hats/deployment");
        assert_eq!(
            resolve_recorded(&root.path().join("transcripts/run-1"), &rel)
                .canonicalize()
                .unwrap(),
            root.path().join("hats/deployment").canonicalize().unwrap()
        );
    }

    #[test]
    fn credentials_in_a_base_url_are_dropped() {
        assert_eq!(
            sanitise_url("https://user:pw@llm.example.com/v1"),
            "https://llm.example.com/v1"
        );
        assert_eq!(
            sanitise_url("http://127.0.0.1:8437/v1"),
            "http://127.0.0.1:8437/v1"
        );
    }
}
