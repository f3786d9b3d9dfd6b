//! The run directory: [`RunDir`], the handle a writing process holds (locked, every write
//! confined by [`crate::safe_fs`]), and `run.json`: what a run was made of — hatrack version, stage and workspace (relative to
//! the run directory where possible), definition and prompt digests, model settings (never
//! a key), input digests, start time. Replay reads it back to re-render the same requests.

use std::fs::{File, TryLockError};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::safe_fs;
use crate::secrets::Scrubber;
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
    /// The effective policy, key by key with its source; a replay applies it. Absent in
    /// run.json files written before policy was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::PolicyRecord>,
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
    /// The context window every request was sized to fit, in tokens (absent in runs recorded
    /// before requests were sized: they replay unsized, as they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    /// Where that size came from: `[model] context_tokens`, `server`, or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_from: Option<String>,
    /// Whether answers were streamed (`--stream`, `[model] stream`); absent in runs
    /// recorded before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// How long a streamed answer may stall between chunks (`--idle-timeout`, `[model]
    /// idle_timeout`), as written by humans (`30s`, `2m`); absent before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

/// The model every judging step asked, and where (credentials removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRecord {
    pub name: String,
    pub base_url: String,
    /// The judge's context window, when it was sized apart from the producing model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDigest {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The largest run.json read (a real one is a few KiB).
pub const MAX_RUN_FILE_BYTES: u64 = 4 << 20;

/// A run directory this process writes: created if missing and locked for as long as the
/// handle lives, so a second writer (another `run --transcript` into it, a `--resume`, a
/// `replay` rewriting its reports) fails at once instead of interleaving lines.
///
/// The lock is an exclusive `flock` on the directory itself (no lock file is left behind,
/// so replaying a committed transcript leaves `git status` clean); the kernel releases it
/// when the process ends, however it ends.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates `root` if needed and takes its lock; exit 2 with a message naming the
    /// directory when another process holds it.
    pub fn open_locked(root: &Path) -> Result<RunDir, Error> {
        safe_fs::create_root(root)?;
        let lock = lock_handle(root).map_err(|e| {
            Error::io(
                format!("opening the run directory {} to lock it", root.display()),
                e,
            )
        })?;
        match lock.try_lock() {
            Ok(()) => Ok(RunDir {
                root: root.to_path_buf(),
                _lock: lock,
            }),
            Err(TryLockError::WouldBlock) => Err(Error::usage(format!(
                "{}: another hatrack process is writing this run directory (it is locked); wait for it to finish, or write to another --transcript DIR",
                root.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::io(
                format!("locking the run directory {}", root.display()),
                e,
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes `rel` (a `/`-separated path inside the run directory) through a temporary file
    /// and a rename, never through a symlink. `sync`: fsync before the rename.
    pub fn write_file(&self, rel: &str, bytes: &[u8], sync: bool) -> Result<PathBuf, Error> {
        Ok(safe_fs::write_file(&self.root, rel, bytes, sync)?)
    }
}

#[cfg(unix)]
fn lock_handle(root: &Path) -> std::io::Result<File> {
    File::open(root)
}

#[cfg(not(unix))]
fn lock_handle(root: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .open(root.join(".hatrack.lock"))
}

impl RunRecord {
    /// Reads run.json (never through a symlink, at most [`MAX_RUN_FILE_BYTES`]); any
    /// problem is a usage error naming the file.
    pub fn read(run_dir: &Path) -> Result<RunRecord, Error> {
        let path = run_dir.join(RUN_FILE);
        let hint = || {
            format!(
                "is {} a run directory made by `hatrack run`?",
                run_dir.display()
            )
        };
        let kind = safe_fs::Kind {
            what: "a run.json",
            max: MAX_RUN_FILE_BYTES,
        };
        let bytes = safe_fs::read_bounded(&path, kind, safe_fs::Links::Never)
            .map_err(|e| Error::usage(format!("{e}; {}", hint())))?;
        RunRecord::parse(&bytes)
            .map_err(|e| Error::usage(format!("{}:{e}; {}", path.display(), hint())))
    }

    /// Parses run.json's bytes; the error starts with the line number. A run directory may
    /// come from anyone, so every number a replay or a resume uses is checked against the
    /// same ranges as the flags ([`crate::model::settings::bounds`]): a tampered
    /// `"samples": 4294967295` must not make a replay spin for ever or fill memory.
    pub fn parse(bytes: &[u8]) -> Result<RunRecord, String> {
        use crate::model::settings::bounds::{self, check, check_f64};
        let record: RunRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("{}: {e}", e.line()))?;
        let m = &record.model;
        let mut problems = Vec::new();
        let mut put = |r: Result<(), String>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        put(check("samples", record.samples, &bounds::SAMPLES).map(drop));
        put(check("model.max_reasks", m.max_reasks, &bounds::MAX_REASKS).map(drop));
        if let Some(t) = m.max_tokens {
            put(check("model.max_tokens", t, &bounds::MAX_TOKENS).map(drop));
        }
        put(check_f64("model.temperature", m.temperature, &bounds::TEMPERATURE).map(drop));
        if problems.is_empty() {
            return Ok(record);
        }
        Err(format!(
            "1: {}; the run directory is damaged or was edited by hand — re-record it with `hatrack run --transcript NEW_DIR`",
            problems.join("; ")
        ))
    }

    /// Writes run.json (pretty, trailing newline) into the run directory, scrubbing string
    /// values (never the JSON's structure or its own identifiers: version, times, digests).
    pub fn write(&self, run_dir: &RunDir, scrubber: &Scrubber) -> Result<(), Error> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| Error::usage(format!("encoding {RUN_FILE}: {e}")))?;
        if !scrubber.is_empty() {
            // `[model.request]` holds free-form body fields: keys are scrubbed too.
            let request = value.pointer_mut("/model/request").map(std::mem::take);
            scrubber.scrub_values(&mut value);
            if let Some(mut request) = request {
                scrubber.scrub_json(&mut request);
                if let Some(slot) = value.pointer_mut("/model/request") {
                    *slot = request;
                }
            }
        }
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|e| Error::usage(format!("encoding {RUN_FILE}: {e}")))?;
        text.push('\n');
        run_dir.write_file(RUN_FILE, text.as_bytes(), true)?;
        Ok(())
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
        crate::safe_fs::slash_path(&rel)
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
