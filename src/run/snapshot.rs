//! A run directory's portable snapshot: what a replay needs besides the transcript, so
//! `hatrack replay DIR` works on a machine that has neither the workspace nor the stage.
//!
//! ```text
//! snapshot/manifest.json         {"format": 2, "stage_dir": "deployment",
//!                                  "files": {"stage/deployment/STAGE.md": {"sha256", "bytes"}, …},
//!                                  "tools": [{"call": {"tool": "read_file", …}, "result": sha256}],
//!                                  "pack": {"<sha256>": {"offset", "bytes"}, …}}
//! snapshot/objects.pack          each distinct content once (files and tool results), where
//!                                the manifest's `pack` table says
//! ```
//! One pack rather than a file per content: creating files is most of what writing a
//! snapshot costs, and a batch writes one snapshot per workspace. Format 1 (one
//! `snapshot/objects/<sha256>` file per content) is still read.
//! Logical paths start with `stage/` (the stage's source files, relative to the stage
//! directory's parent, so sibling stages' agents keep their place), `workspace/` (hatrack.toml
//! and every file an `[inputs]` pattern matches) or `prompts/` (the effective templates).
//! `tools` holds each workspace tool call the run made (canonical arguments) and its result.
//!
//! Secrets: contents, names and tool results pass through the run's [`Scrubber`] before
//! they are hashed and written (a non-UTF-8 file the scrubber would change is left out).
//! Writes go through [`RunDir::write_file`]; reads never follow a link, are size-capped and
//! are checked against their sha256. A manifest may come from anyone: every path, hash and
//! size in it is validated before anything is read, and a replay materialises the snapshot
//! into a fresh private temporary directory (never the run directory, which a replay leaves
//! untouched) through the same confined writer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ConfigFile, CONFIG_FILE};
use crate::definition::Stage;
use crate::inputs::{self, MAX_INPUT_FILE_BYTES};
use crate::prompt::Prompts;
use crate::run::rundir::RunDir;
use crate::run::tool_answers::{call_key, ToolLog};
use crate::safe_fs::{self, SafeFsError};
use crate::secrets::Scrubber;
use crate::tools::{Call, Outcome};

pub const SNAPSHOT_DIR: &str = "snapshot";
pub const MANIFEST_FILE: &str = "snapshot/manifest.json";
pub const PACK_FILE: &str = "snapshot/objects.pack";
/// Format 1's object store: one file per content (read, never written).
pub const OBJECTS_DIR: &str = "snapshot/objects";
pub const FORMAT: u32 = 2;

/// The largest manifest read (a real one is a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// The largest object (an input is at most this large; see [`MAX_INPUT_FILE_BYTES`]).
pub const MAX_OBJECT_BYTES: u64 = MAX_INPUT_FILE_BYTES;
/// All objects a manifest may name together, and how many entries it may have.
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;
pub const MAX_ENTRIES: usize = 100_000;

/// The three trees a snapshot holds.
const STAGE: &str = "stage";
const WORKSPACE: &str = "workspace";
const PROMPTS: &str = "prompts";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The stage directory's name: the stage is `stage/<stage_dir>/`.
    pub stage_dir: String,
    /// Logical path → content.
    pub files: BTreeMap<String, Entry>,
    #[serde(default)]
    pub tools: Vec<ToolEntry>,
    /// Format 2: where each content lies in `objects.pack`, by sha256.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pack: BTreeMap<String, Slice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// The call's canonical form ([`crate::tools::Call`] serialized).
    pub call: serde_json::Value,
    /// The object holding its result ([`crate::tools::Outcome`] as JSON).
    pub result: Entry,
}

/// Why a snapshot cannot be written or used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {message}; the run's snapshot is damaged or was edited by hand — replay with --workspace DIR and --stage DIR, or re-record the run", .path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{}: {message} (snapshot file {logical}); the run's snapshot is damaged or was edited by hand — replay with --workspace DIR and --stage DIR, or re-record the run", .path.display())]
    Object {
        path: PathBuf,
        logical: String,
        message: String,
    },
    #[error("{}: its content does not match the sha256 the snapshot manifest gives for {logical} (expected {expected}, found {actual}); the snapshot is damaged or was edited — re-record the run, or replay with --workspace DIR and --stage DIR", .path.display())]
    HashMismatch {
        path: PathBuf,
        logical: String,
        expected: String,
        actual: String,
    },
    #[error("creating a temporary directory for the run's snapshot: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Write(#[from] SafeFsError),
}

impl From<SnapshotError> for crate::Error {
    fn from(e: SnapshotError) -> crate::Error {
        match e {
            SnapshotError::Write(w) => w.into(),
            SnapshotError::TempDir(source) => crate::Error::io(
                "creating a temporary directory for the run's snapshot",
                source,
            ),
            other => crate::Error::usage(other.to_string()),
        }
    }
}

/// What a recording run copies into its snapshot, gathered before the first model call:
/// the stage's files and the templates (small) as they are, the workspace's files by where
/// they are and what they held (their contents are streamed when the snapshot is written,
/// one at a time, so memory stays bounded by the largest file, not the workspace).
pub struct Collected {
    stage_dir: String,
    files: Vec<(String, Source)>,
    /// `[secrets] redact_inputs`, applied to the workspace's inputs as binding does.
    redact: Vec<regex::Regex>,
}

/// Where a collected content comes from.
enum Source {
    Bytes(Vec<u8>),
    /// A workspace file and the sha256 it had when collected: written from the bytes then
    /// read, or (beyond [`KEEP_BYTES`]) read again when the snapshot is written and left out
    /// if it changed meanwhile (a snapshot never holds what the run did not see).
    File {
        path: PathBuf,
        workspace: PathBuf,
        sha256: String,
        redact: bool,
        /// The bytes read when collected, while they fit [`KEEP_BYTES`]: written from memory
        /// instead of read twice more (each read of a workspace file is half a dozen system
        /// calls, its links checked).
        kept: Option<Vec<u8>>,
    },
}

/// Bytes of workspace files kept in memory between collecting and writing a snapshot; the
/// rest are read again (and left out if they changed).
const KEEP_BYTES: usize = 16 << 20;

/// The snapshot's cap on one file, for the bounded reader.
const OBJECT_KIND: safe_fs::Kind = safe_fs::Kind {
    what: "a snapshot file",
    max: MAX_OBJECT_BYTES,
};

/// Reads the stage's source files, the effective templates, hatrack.toml and the files the
/// `[inputs]` patterns match. A file that cannot be read is left out: binding has already
/// reported what matters, and a replay without it misses honestly.
pub fn collect(
    stage: &Stage,
    workspace: &Path,
    config: &ConfigFile,
    prompts: &Prompts,
) -> Collected {
    let mut files = Vec::new();
    let base = stage.dir.parent().unwrap_or(&stage.dir);
    for file in &stage.source_files {
        // Studio-level files (v8 `<studio>/review-agents/`) lie outside the stage's
        // parent: the snapshot keeps the stage directory only (docs/snapshot.md).
        let Ok(rel) = file.strip_prefix(base) else {
            continue;
        };
        let rel = safe_fs::slash_path(rel);
        if let Ok(bytes) = crate::definition::read_source_file(file) {
            files.push((format!("{STAGE}/{rel}"), Source::Bytes(bytes)));
        }
    }
    for (name, text) in prompts.texts() {
        files.push((
            format!("{PROMPTS}/{name}"),
            Source::Bytes(text.clone().into_bytes()),
        ));
    }
    let patterns: Vec<&str> = config.inputs.values().flat_map(|l| l.patterns()).collect();
    let mut wanted: Vec<String> = inputs::workspace_files(workspace)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| patterns.iter().any(|p| inputs::pattern_matches(p, f)))
        .collect();
    if workspace.join(CONFIG_FILE).symlink_metadata().is_ok() {
        wanted.push(CONFIG_FILE.to_string());
    }
    // Inputs are kept as they were sent: redacted (`[secrets] redact_inputs`) whole, the
    // order the run used (then scrubbed, like everything written).
    let redact =
        crate::secrets::compile_patterns(config.secrets.redact_patterns(), "").unwrap_or_default();
    let mut keep = KEEP_BYTES;
    for rel in wanted {
        let path = workspace.join(&rel);
        let links = safe_fs::Links::Within(workspace);
        if let Ok(bytes) = safe_fs::read_bounded(&path, OBJECT_KIND, links) {
            let sha256 = sha256(&bytes);
            let kept = (bytes.len() <= keep).then(|| {
                keep -= bytes.len();
                bytes
            });
            files.push((
                format!("{WORKSPACE}/{rel}"),
                Source::File {
                    path,
                    workspace: workspace.to_path_buf(),
                    sha256,
                    redact: rel != CONFIG_FILE,
                    kept,
                },
            ));
        }
    }
    Collected {
        stage_dir: stage
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        files,
        redact,
    }
}

impl Collected {
    /// A content's bytes as the snapshot keeps them (redacted, then scrubbed) and their
    /// sha256; `Err` says why it is left out.
    fn content(&self, source: &Source, scrubber: &Scrubber) -> Result<(Vec<u8>, String), String> {
        use std::borrow::Cow;
        let (raw, raw_hash): (Cow<[u8]>, _) = match source {
            Source::Bytes(bytes) => (Cow::Borrowed(bytes), None),
            Source::File {
                path,
                workspace,
                sha256: seen,
                redact,
                kept,
            } => {
                let bytes = match kept {
                    Some(bytes) => Cow::Borrowed(&bytes[..]),
                    None => {
                        let links = safe_fs::Links::Within(workspace);
                        let bytes = safe_fs::read_bounded(path, OBJECT_KIND, links)
                            .map_err(|e| e.why.to_string())?;
                        if sha256(&bytes) != *seen {
                            return Err("it changed while the run went on".to_string());
                        }
                        Cow::Owned(bytes)
                    }
                };
                match std::str::from_utf8(&bytes) {
                    Ok(text) if *redact && !self.redact.is_empty() => {
                        let mut text = text.to_string();
                        for pattern in &self.redact {
                            text = pattern
                                .replace_all(&text, crate::secrets::REDACTED)
                                .into_owned();
                        }
                        (Cow::Owned(text.into_bytes()), None)
                    }
                    _ => (bytes, Some(seen)),
                }
            }
        };
        let clean = scrub_bytes(&raw, scrubber).ok_or_else(not_text)?;
        // Hashed once when nothing changed it (a workspace may hold a gigabyte).
        let hash = match raw_hash {
            Some(h) if clean[..] == raw[..] => h.clone(),
            _ => sha256(&clean),
        };
        Ok((clean, hash))
    }
}

fn not_text() -> String {
    "it is not UTF-8 text and holds something the scrubber would change".to_string()
}

/// How much a snapshot holds, for the run's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub tool_results: usize,
    pub objects: usize,
    pub bytes: u64,
}

/// Where pass 2 of [`write`] finds a content again: a collected file, or a tool result.
#[derive(Clone, Copy)]
enum Origin {
    File(usize),
    Tool(usize),
}

/// Writes the snapshot (scrubbed) into the locked run directory through the confined
/// writer (no link followed, temp file + rename; the pack is synced before the manifest
/// that names its contents), and removes a format-1 object store a re-recorded run leaves
/// behind, so the run carries exactly what it used.
///
/// It keeps to the limits [`Snapshot::read`] checks (at most [`MAX_ENTRIES`] entries and
/// [`MAX_TOTAL_BYTES`] in all: what does not fit is left out with a warning, and a replay
/// without the workspace misses it honestly) and streams: contents are read, scrubbed and
/// hashed one at a time, then written into the pack one at a time.
// long-fn: two passes over the same contents (sizes and hashes, then the pack), side by side.
pub fn write(
    run_dir: &RunDir,
    collected: &Collected,
    tools: &ToolLog,
    scrubber: &Scrubber,
) -> Result<Summary, SnapshotError> {
    // Pass 1: every content's scrubbed size and hash, within the reader's limits.
    let mut sizes: BTreeMap<String, (u64, Origin)> = BTreeMap::new();
    let mut total: u64 = 0;
    let mut entries = 0usize;
    let mut left_out: Vec<String> = Vec::new();
    let fits = |bytes: u64, entries: &mut usize, total: &mut u64| {
        if *entries >= MAX_ENTRIES || total.saturating_add(bytes) > MAX_TOTAL_BYTES {
            return false;
        }
        *entries += 1;
        *total += bytes;
        true
    };
    let mut files = BTreeMap::new();
    for (i, (logical, source)) in collected.files.iter().enumerate() {
        let (clean, hash) = match collected.content(source, scrubber) {
            Ok(content) => content,
            Err(why) => {
                if matches!(source, Source::File { .. }) {
                    left_out.push(format!("{}: {why}", scrubber.scrub(logical)));
                }
                continue;
            }
        };
        let name = scrubber.scrub(logical);
        if !fits(clean.len() as u64, &mut entries, &mut total) {
            left_out.push(format!("{name}: beyond what a snapshot holds"));
            continue;
        }
        let entry = Entry {
            sha256: hash,
            bytes: clean.len() as u64,
        };
        sizes
            .entry(entry.sha256.clone())
            .or_insert((entry.bytes, Origin::File(i)));
        files.insert(name, entry);
    }
    let mut tool_entries = Vec::new();
    let mut tool_results: Vec<Vec<u8>> = Vec::new();
    for (key, outcome) in tools {
        let (Ok(call), Ok(mut result)) = (
            serde_json::from_str::<serde_json::Value>(key),
            serde_json::to_vec(outcome),
        ) else {
            continue;
        };
        result.push(b'\n');
        if !fits(result.len() as u64, &mut entries, &mut total) {
            left_out.push(format!(
                "a result of {}: beyond what a snapshot holds",
                call
            ));
            continue;
        }
        let entry = Entry {
            sha256: sha256(&result),
            bytes: result.len() as u64,
        };
        sizes
            .entry(entry.sha256.clone())
            .or_insert((entry.bytes, Origin::Tool(tool_results.len())));
        tool_results.push(result);
        tool_entries.push(ToolEntry {
            call,
            result: entry,
        });
    }
    if !left_out.is_empty() {
        tracing::warn!(
            "snapshot: {} content(s) left out (a snapshot holds at most {MAX_ENTRIES} entries and {} MiB; a replay without the workspace misses them): {}",
            left_out.len(),
            MAX_TOTAL_BYTES >> 20,
            left_out
                .iter()
                .take(5)
                .map(|w| safe_fs::printable_name(w))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    // `sizes` is ordered by sha256: the pack's order.
    let mut offset = 0u64;
    let pack_table: BTreeMap<String, Slice> = sizes
        .iter()
        .map(|(hash, (bytes, _))| {
            let slice = Slice {
                offset,
                bytes: *bytes,
            };
            offset += slice.bytes;
            (hash.clone(), slice)
        })
        .collect();
    let manifest = Manifest {
        format: FORMAT,
        stage_dir: scrubber.scrub(&collected.stage_dir),
        files,
        tools: tool_entries,
        pack: pack_table,
    };
    let summary = Summary {
        files: manifest.files.len(),
        tool_results: manifest.tools.len(),
        objects: sizes.len(),
        bytes: offset,
    };
    // Pass 2: each distinct content into the pack, one at a time, checked against pass 1.
    let mut changed: Option<SnapshotError> = None;
    safe_fs::write_file_with(run_dir.path(), PACK_FILE, true, &mut |file| {
        use std::io::Write;
        for (hash, (_, origin)) in &sizes {
            let bytes = match *origin {
                Origin::Tool(i) => std::borrow::Cow::Borrowed(&tool_results[i][..]),
                Origin::File(i) => {
                    let (logical, source) = &collected.files[i];
                    let fail = |message: String| SnapshotError::Object {
                        path: run_dir.path().join(PACK_FILE),
                        logical: safe_fs::printable_name(&scrubber.scrub(logical)),
                        message,
                    };
                    match collected.content(source, scrubber) {
                        Ok((b, h)) if h == *hash => std::borrow::Cow::Owned(b),
                        Ok(_) => {
                            changed = Some(fail(
                                "it changed while the snapshot was written; record the run again"
                                    .into(),
                            ));
                            return Err(std::io::Error::other("a snapshot file changed"));
                        }
                        Err(why) => {
                            changed = Some(fail(why));
                            return Err(std::io::Error::other("a snapshot file changed"));
                        }
                    }
                }
            };
            file.write_all(&bytes)?;
        }
        Ok(())
    })
    .map_err(|e| changed.take().unwrap_or(SnapshotError::Write(e)))?;
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    safe_fs::write_file(run_dir.path(), MANIFEST_FILE, text.as_bytes(), true)?;
    remove_object_files(run_dir.path());
    Ok(summary)
}

/// Scrubbed content, or `None` for a non-UTF-8 file the scrubber would change (its bytes
/// cannot be scrubbed as text without altering what is not a secret).
fn scrub_bytes(bytes: &[u8], scrubber: &Scrubber) -> Option<Vec<u8>> {
    if scrubber.is_empty() {
        return Some(bytes.to_vec());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(scrubber.scrub(text).into_bytes()),
        Err(_) => {
            let lossy = String::from_utf8_lossy(bytes);
            (scrubber.scrub(&lossy) == lossy).then(|| bytes.to_vec())
        }
    }
}

/// Removes a format-1 object store (best effort: a leftover is only unused).
fn remove_object_files(root: &Path) {
    let dir = root.join(OBJECTS_DIR);
    if !is_real_dir(&root.join(SNAPSHOT_DIR)) || !is_real_dir(&dir) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
        if is_file && is_hash(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

/// A snapshot read from a run directory, its manifest validated.
#[derive(Debug)]
pub struct Snapshot {
    root: PathBuf,
    manifest: Manifest,
}

impl Snapshot {
    /// `None` when the run directory carries no snapshot (it was recorded before run
    /// directories did). Never follows a link; a bad manifest is an error naming it.
    pub fn read(run_dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
        let path = run_dir.join(MANIFEST_FILE);
        let bad = |message: String| SnapshotError::Manifest {
            path: path.clone(),
            message,
        };
        match std::fs::symlink_metadata(run_dir.join(SNAPSHOT_DIR)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(bad(format!(
                    "{SNAPSHOT_DIR}/ is not a directory (a link is never followed)"
                )))
            }
            Ok(_) => {}
        }
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let bytes = read_capped(&path, MAX_MANIFEST_BYTES).map_err(bad)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("line {}: {e}", e.line())))?;
        validate(&manifest).map_err(bad)?;
        Ok(Some(Snapshot {
            root: run_dir.to_path_buf(),
            manifest,
        }))
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether the snapshot holds the prompt templates (it always holds a stage and a
    /// workspace, even an empty one).
    pub fn has_prompts(&self) -> bool {
        self.manifest
            .files
            .keys()
            .any(|k| k.starts_with(&format!("{PROMPTS}/")))
    }

    /// Format 2 keeps the contents in `objects.pack`; format 1 in a file each.
    fn packed(&self) -> bool {
        self.manifest.format >= 2
    }

    /// Where an object lies: the pack (format 2) or its own file (format 1).
    fn object_path(&self, entry: &Entry) -> PathBuf {
        if self.packed() {
            self.root.join(PACK_FILE)
        } else {
            self.root.join(OBJECTS_DIR).join(&entry.sha256)
        }
    }

    /// One object's bytes, checked against the manifest's size and sha256.
    fn object(&self, logical: &str, entry: &Entry) -> Result<Vec<u8>, SnapshotError> {
        let path = self.object_path(entry);
        let fail = |message: String| SnapshotError::Object {
            path: path.clone(),
            logical: safe_fs::printable_name(logical),
            message,
        };
        let bytes = if self.packed() {
            // `validate` made sure the table has this content, at this size.
            let slice = self.manifest.pack[&entry.sha256];
            read_packed(&path, slice).map_err(fail)?
        } else {
            if !is_real_dir(&self.root.join(OBJECTS_DIR)) {
                return Err(fail(format!(
                    "{OBJECTS_DIR}/ is missing or not a directory (a link is never followed)"
                )));
            }
            read_capped(&path, entry.bytes).map_err(fail)?
        };
        if bytes.len() as u64 != entry.bytes {
            return Err(fail(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                entry.bytes
            )));
        }
        let actual = sha256(&bytes);
        if actual != entry.sha256 {
            return Err(SnapshotError::HashMismatch {
                path,
                logical: safe_fs::printable_name(logical),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Writes the stage, workspace and prompts into a fresh private temporary directory
    /// (`$TMPDIR/hatrack-snapshot-<pid>-…`, mode 0700), every object verified first. The
    /// directory is removed when the returned value is dropped, on SIGINT and SIGTERM, and,
    /// if the process was killed outright, by the next materialize on this machine, which
    /// removes the directories of processes that no longer exist.
    pub fn materialize(&self) -> Result<Materialized, SnapshotError> {
        temp::remove_stale();
        temp::guard_signals();
        let mut builder = tempfile::Builder::new();
        let prefix = format!("{}{}-", temp::PREFIX, std::process::id());
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir().map_err(SnapshotError::TempDir)?;
        let root = dir.path().to_path_buf();
        temp::register(&root);
        let stage_dir = root.join(STAGE).join(&self.manifest.stage_dir);
        let workspace = root.join(WORKSPACE);
        for made in [&stage_dir, &workspace] {
            std::fs::create_dir_all(made).map_err(SnapshotError::TempDir)?;
        }
        for (logical, entry) in &self.manifest.files {
            let bytes = self.object(logical, entry)?;
            safe_fs::write_file(&root, logical, &bytes, false)?;
        }
        Ok(Materialized {
            stage_dir,
            workspace,
            prompts: root.join(PROMPTS),
            _dir: dir,
        })
    }

    /// The recorded tool results, keyed like [`crate::run::tool_answers::call_key`].
    pub fn tool_log(&self) -> Result<ToolLog, SnapshotError> {
        let mut log = ToolLog::new();
        for entry in &self.manifest.tools {
            let logical = format!("tools: {}", entry.call);
            let bad = |message: String| SnapshotError::Object {
                path: self.object_path(&entry.result),
                logical: safe_fs::printable_name(&logical),
                message,
            };
            let call: Call = serde_json::from_value(entry.call.clone())
                .map_err(|e| bad(format!("not a tool call: {e}")))?;
            let bytes = self.object(&logical, &entry.result)?;
            let outcome: Outcome = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("not a tool result: {e}")))?;
            log.insert(call_key(&call, &Scrubber::default()), outcome);
        }
        Ok(log)
    }
}

/// A snapshot written out for a replay; the directory goes when this is dropped.
#[derive(Debug)]
pub struct Materialized {
    pub stage_dir: PathBuf,
    pub workspace: PathBuf,
    pub prompts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Materialized {
    fn drop(&mut self) {
        temp::unregister(self._dir.path());
    }
}

/// The temporary directories snapshots are materialized into: private, and never left
/// behind by an interrupted replay.
mod temp {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// `hatrack-snapshot-<pid>-<random>`: the pid says whose it is.
    pub const PREFIX: &str = "hatrack-snapshot-";

    /// This process's directories, for the signal handler.
    static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub fn register(dir: &Path) {
        if let Ok(mut live) = LIVE.lock() {
            live.push(dir.to_path_buf());
        }
    }

    pub fn unregister(dir: &Path) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|d| d != dir);
        }
    }

    /// On SIGINT or SIGTERM: removes this process's directories, then exits as the signal
    /// would have (130, 143). Installed once, when a runtime is there to wait on signals.
    pub fn guard_signals() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        #[cfg(unix)]
        ONCE.call_once(|| {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return;
            };
            // Registered here, synchronously: a signal from now on is the handler's.
            let _enter = handle.enter();
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            handle.spawn(async move {
                let code = tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                };
                let dirs = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
                for dir in dirs {
                    // A file written meanwhile can make one attempt fail.
                    for _ in 0..5 {
                        if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                            break;
                        }
                    }
                }
                std::process::exit(code);
            });
        });
    }

    /// Removes the directories left by processes of this user that no longer exist (killed
    /// outright: SIGKILL, a power loss). A directory of a live process is never touched.
    pub fn remove_stale() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let tmp = std::env::temp_dir();
            let Ok(entries) = std::fs::read_dir(&tmp) else {
                return;
            };
            let me = unsafe { libc::geteuid() };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
                    continue;
                };
                let Some(pid) = rest
                    .split_once('-')
                    .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
                else {
                    continue;
                };
                if pid <= 0 || pid as u32 == std::process::id() || alive(pid) {
                    continue;
                }
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() && !meta.file_type().is_symlink() && meta.uid() == me {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
    }

    /// Whether a process with this id exists (one of another user counts as alive).
    #[cfg(unix)]
    fn alive(pid: libc::pid_t) -> bool {
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
}

/// Every path, hash and size checked before anything is read.
fn validate(m: &Manifest) -> Result<(), String> {
    check_header(m)?;
    let mut total: u64 = 0;
    let entries = m
        .files
        .iter()
        .map(|(k, e)| (k.as_str(), e))
        .chain(m.tools.iter().map(|t| ("a tool result", &t.result)));
    for (logical, entry) in entries {
        check_entry(m, logical, entry)?;
        total = total.saturating_add(entry.bytes);
    }
    check_pack_table(m)?;
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "{total} bytes in all, more than {} MiB",
            MAX_TOTAL_BYTES >> 20
        ));
    }
    Ok(())
}

/// The manifest as a whole: a format this hatrack reads, a bounded number of entries, and a
/// stage directory that is one plain name (it becomes a path).
fn check_header(m: &Manifest) -> Result<(), String> {
    if !(1..=FORMAT).contains(&m.format) {
        return Err(format!(
            "format {} (this hatrack reads formats 1 to {FORMAT})",
            m.format
        ));
    }
    if m.files.len() + m.tools.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    if !is_plain_name(&m.stage_dir) {
        return Err(format!(
            "stage_dir {} is not a plain directory name",
            safe_fs::printable_name(&m.stage_dir)
        ));
    }
    Ok(())
}

/// One file or tool result: a logical path that stays inside the snapshot, a well-formed
/// hash, a bounded size and, from format 2, a pack-table slice of that same size.
fn check_entry(m: &Manifest, logical: &str, entry: &Entry) -> Result<(), String> {
    let shown = safe_fs::printable_name(logical);
    if logical != "a tool result" && !is_logical_path(logical) {
        return Err(format!(
            "{shown}: not a relative path of plain names under stage/, workspace/ or prompts/"
        ));
    }
    if !is_hash(&entry.sha256) {
        return Err(format!(
            "{shown}: sha256 {} is not 64 lowercase hex digits",
            safe_fs::printable_name(&entry.sha256)
        ));
    }
    if entry.bytes > MAX_OBJECT_BYTES {
        return Err(format!(
            "{shown}: {} bytes, more than the {} MiB a snapshot file may have",
            entry.bytes,
            MAX_OBJECT_BYTES >> 20
        ));
    }
    if m.format >= 2 {
        match m.pack.get(&entry.sha256) {
            Some(slice) if slice.bytes == entry.bytes => {}
            Some(slice) => {
                return Err(format!(
                    "{shown}: sha256 {} is given two sizes ({} bytes, {} in the pack table)",
                    entry.sha256, entry.bytes, slice.bytes
                ))
            }
            None => {
                return Err(format!(
                    "{shown}: sha256 {} is not in the pack table",
                    entry.sha256
                ))
            }
        }
    }
    Ok(())
}

/// The pack table: none in format 1; otherwise well-formed hashes and slices that fit in a
/// file (bounded, and whose end does not overflow).
fn check_pack_table(m: &Manifest) -> Result<(), String> {
    if m.format == 1 && !m.pack.is_empty() {
        return Err("format 1 has no pack table".to_string());
    }
    for (hash, slice) in &m.pack {
        if !is_hash(hash) {
            return Err(format!(
                "pack table: {} is not 64 lowercase hex digits",
                safe_fs::printable_name(hash)
            ));
        }
        if slice.bytes > MAX_OBJECT_BYTES || slice.offset.checked_add(slice.bytes).is_none() {
            return Err(format!("pack table: {hash} has an impossible slice"));
        }
    }
    Ok(())
}

fn is_logical_path(p: &str) -> bool {
    let mut parts = p.split('/');
    matches!(parts.next(), Some(STAGE | WORKSPACE | PROMPTS))
        && p.split('/').count() >= 2
        && p.split('/').all(is_plain_name)
}

/// One path component that names a file or directory inside its parent and nothing else.
fn is_plain_name(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(n)), None) if n == name)
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(|c| c.is_control())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && !m.file_type().is_symlink())
}

/// A regular file's bytes (never through a link), at most `cap`.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let kind = safe_fs::Kind {
        what: "a snapshot file",
        max: cap,
    };
    safe_fs::read_bounded(path, kind, safe_fs::Links::Never).map_err(|e| e.why.to_string())
}

/// One content's bytes from the pack (never through a link).
fn read_packed(path: &Path, slice: Slice) -> Result<Vec<u8>, String> {
    use std::io::{Seek, SeekFrom};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err("a link (a link is never followed)".to_string());
    }
    let mut file = safe_fs::open_read_no_follow(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let end = slice.offset.saturating_add(slice.bytes);
    if size < end {
        return Err(format!(
            "{size} bytes, but the manifest places a content at bytes {}..{end} (the pack was cut short)",
            slice.offset
        ));
    }
    file.seek(SeekFrom::Start(slice.offset))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(slice.bytes)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_paths_are_plain_and_rooted_in_a_tree() {
        assert!(is_logical_path("stage/deployment/STAGE.md"));
        assert!(is_logical_path("workspace/hatrack.toml"));
        assert!(!is_logical_path("workspace"));
        assert!(!is_logical_path("other/x"));
        assert!(!is_logical_path("workspace/../x"));
        assert!(!is_logical_path("workspace/./x"));
        assert!(!is_logical_path("/etc/passwd"));
        assert!(!is_logical_path("workspace//x"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name(""));
        assert!(is_hash(&sha256(b"x")));
        assert!(!is_hash("../../etc/passwd"));
    }

    /// A snapshot written by hatrack before the pack (format 1: a file per content) still
    /// replays; recording into its directory again writes format 2 and drops `objects/`.
    #[test]
    fn format_1_is_still_read_and_a_rerecording_writes_the_pack() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        let text = b"[inputs]\n";
        let hash = sha256(text);
        std::fs::create_dir_all(run.join(OBJECTS_DIR)).unwrap();
        std::fs::write(run.join(OBJECTS_DIR).join(&hash), text).unwrap();
        let manifest = serde_json::json!({
            "format": 1, "stage_dir": "deployment",
            "files": {"workspace/hatrack.toml": {"sha256": hash, "bytes": text.len()}},
        });
        std::fs::write(run.join(MANIFEST_FILE), manifest.to_string()).unwrap();

        let old = Snapshot::read(run).unwrap().expect("a snapshot");
        let unpacked = old.materialize().unwrap();
        assert_eq!(
            std::fs::read(unpacked.workspace.join("hatrack.toml")).unwrap(),
            text
        );

        let collected = Collected {
            stage_dir: "deployment".into(),
            files: vec![(
                "workspace/hatrack.toml".into(),
                Source::Bytes(text.to_vec()),
            )],
            redact: Vec::new(),
        };
        let locked = RunDir::open_locked(run).unwrap();
        write(&locked, &collected, &ToolLog::new(), &Scrubber::default()).unwrap();
        assert!(
            !run.join(OBJECTS_DIR).exists(),
            "format 1's objects are gone"
        );
        let new = Snapshot::read(run).unwrap().expect("a snapshot");
        assert_eq!(new.manifest().format, FORMAT);
        let unpacked = new.materialize().unwrap();
        assert_eq!(
            std::fs::read(unpacked.workspace.join("hatrack.toml")).unwrap(),
            text
        );
    }
}
