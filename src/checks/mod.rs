//! Facts beside the judges: what linters and tests already found (SARIF 2.1.0 and JUnit XML
//! that CI produced, given with `--evidence FILE` or `[evidence] files`), and built-in probes
//! (a glob and a pattern) declared with the rule mappings.
//!
//! - [`sarif`], [`junit`]: read a tool's output into normalised [`Finding`]s: paths relative
//!   to the workspace (tools write absolute `file://` URIs), rule id and name, level,
//!   message, `file:line`, and a stable fingerprint when the tool gave none.
//! - [`probes`]: `must_match`, `must_not_match`, `must_exist` over workspace files, line by
//!   line, with size caps; no tool and no model.
//! - [`mapping`]: `[[check]]` entries (the stage's `checks.toml`, a policy file, and — only
//!   adding — the workspace's `hatrack.toml`) tie a tool's rules to a requirement, with
//!   `on_finding = "veto"` (an error-level finding makes it unmet, whatever the judge says)
//!   or `"evidence"` (the judge sees it, and its `met` is refused while an error-level
//!   finding is open); and which findings each judging step is shown.
//!
//! Everything a run learned here is one [`Facts`] value, written to the run directory as
//! `checks.json` and read back by a replay, so a replay needs neither the tools' files nor
//! the workspace the probes read, and shows the judges byte for byte what the run showed.

pub mod gather;
pub mod junit;
pub mod location;
pub mod mapping;
pub mod probes;
pub mod runner;
pub mod sarif;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use gather::{gather, Gather, Given};
pub use mapping::{apply, CheckSpec, Mapping, OnFinding};

/// The file in the run directory that holds a run's [`Facts`].
pub const CHECKS_FILE: &str = "checks.json";
/// The file beside a stage's STAGE.md that maps checks to its requirements.
pub const STAGE_CHECKS_FILE: &str = "checks.toml";
/// `checks.json`'s format.
pub const FORMAT: u32 = 1;

/// The largest evidence file read (SARIF or JUnit): larger is refused before it is read.
pub const MAX_EVIDENCE_BYTES: u64 = 32 << 20;
/// The largest `checks.json` a replay reads.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Findings kept at most in one run (passing records aside): more is refused, since
/// leaving some out could leave out the one that vetoes.
pub const MAX_FINDINGS: usize = 10_000;
/// Passing records (a JUnit case that passed, a probe that held) kept at most; the rest
/// are counted in a warning.
pub const MAX_PASS_RECORDS: usize = 1_000;
/// Evidence files at most.
pub const MAX_EVIDENCE_FILES: usize = 64;
/// Characters of a message kept (the rest is cut with `…`).
pub const MAX_MESSAGE_CHARS: usize = 1_000;
/// Characters of a tool or rule name, and of a path, kept.
pub const MAX_NAME_CHARS: usize = 200;
/// Warnings listed one by one; the rest are counted.
pub const MAX_WARNINGS: usize = 20;

/// How serious a finding is. `Pass` is a record that something was checked and held (a
/// JUnit case that passed, a probe that found what it needs): evidence for, never proof of,
/// `met`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Error,
    Warning,
    Note,
    Pass,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
            Level::Pass => "pass",
        }
    }

    /// A SARIF `level` (`error`, `warning`, `note`, `none`).
    pub fn from_sarif(level: &str) -> Option<Level> {
        match level {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "note" | "none" => Some(Level::Note),
            _ => None,
        }
    }
}

/// One finding of a tool, a test or a probe, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The name judges see and cite: `ruff AIR301 dags/etl.py:21` (unique in the run).
    pub name: String,
    /// The SARIF driver's name (`ruff`), `junit:<suite>`, or `probe`.
    pub tool: String,
    /// The rule id (`AIR301`), the test case's name, or the probe's name.
    pub rule: String,
    /// The rule's name (`airflow3-removal`), or the test case's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    pub level: Level,
    pub message: String,
    /// Relative to the workspace, `/`-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The line of the repository it is about, when hatrack read it (probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// The tool's own fingerprint, else hatrack's (see [`fingerprint`]).
    pub fingerprint: String,
    /// The evidence file it came from (as given), or `probe`.
    pub origin: String,
}

impl Finding {
    /// `error` or `warning`, not a passing record or a note: it holds a requirement back.
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// `dags/etl.py:21`, `dags/etl.py`, or nothing.
    pub fn location(&self) -> Option<String> {
        let path = self.path.as_deref()?;
        Some(match self.line {
            Some(line) => format!("{path}:{line}"),
            None => path.to_string(),
        })
    }

    /// The text a judge is shown under the finding's name, and may quote: the message on a
    /// line of its own, so a quote of it stands alone.
    pub fn shown_text(&self) -> String {
        let mut head = format!("{} · {} {}", self.level.as_str(), self.tool, self.rule);
        if let Some(name) = &self.rule_name {
            head.push_str(&format!(" ({name})"));
        }
        if let Some(at) = self.location() {
            head.push_str(&format!(" · {at}"));
        }
        let mut text = format!("{head}\n{}", self.message);
        if let Some(line) = &self.excerpt {
            text.push_str(&format!("\n{line}"));
        }
        text
    }
}

/// An evidence file that was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    /// As given (`--evidence`, `[evidence] files`).
    pub file: String,
    /// `sarif` or `junit`.
    pub format: String,
    pub sha256: String,
    pub bytes: u64,
    /// The tools (SARIF drivers) or `junit:<suite>` names it holds.
    pub tools: Vec<String>,
    /// Findings taken from it (passing records included).
    pub findings: usize,
}

/// Everything a run learned from checks: what `checks.json` holds and `report.json`'s
/// `checks` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    pub format: u32,
    /// The evidence files read.
    pub files: Vec<EvidenceFile>,
    /// Every `[[check]]` in force (the stage's, the policy's, the workspace's additions).
    pub mappings: Vec<Mapping>,
    /// Findings in a stable order: by tool, path, line, rule.
    pub findings: Vec<Finding>,
    /// What was left out or could not be read, one sentence each.
    pub warnings: Vec<String>,
    /// The tools hatrack ran itself (`--run-checks`): a replay reads their findings here
    /// and never runs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<runner::ToolRun>,
}

impl Facts {
    /// Nothing to show or apply: no mapping and no finding.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty() && self.findings.is_empty()
    }

    /// The finding with this name.
    pub fn finding(&self, name: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.name == name)
    }

    /// The facts with `scrub` applied to their free text (messages, excerpts, rule names,
    /// warnings), as every file a run writes is; names, paths and ids are left as they are.
    pub fn scrubbed(mut self, scrub: &dyn Fn(&str) -> String) -> Facts {
        for f in &mut self.findings {
            f.message = scrub(&f.message);
            f.excerpt = f.excerpt.as_deref().map(scrub);
            f.rule_name = f.rule_name.as_deref().map(scrub);
        }
        for w in &mut self.warnings {
            *w = scrub(w);
        }
        self
    }

    /// `checks.json`'s bytes (pretty JSON, a trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut text =
            serde_json::to_string_pretty(self).expect("facts are plain data and serialise");
        text.push('\n');
        text.into_bytes()
    }

    /// Reads a run directory's `checks.json` (`None`: the run had no checks). It may come
    /// from anyone: its size is capped and its counts checked.
    pub fn read_recorded(run_dir: &Path) -> Result<Option<Facts>, ChecksError> {
        let path = run_dir.join(CHECKS_FILE);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let bytes = read_capped(&path, MAX_RECORD_BYTES, false)?;
        let facts: Facts = serde_json::from_slice(&bytes).map_err(|e| ChecksError::Record {
            path: path.clone(),
            message: format!("line {}: {e}", e.line()),
        })?;
        if facts.format != FORMAT || facts.findings.len() > MAX_FINDINGS + MAX_PASS_RECORDS {
            return Err(ChecksError::Record {
                path,
                message: format!(
                    "format {} with {} findings: this hatrack reads format {FORMAT} with at most {} findings",
                    facts.format,
                    facts.findings.len(),
                    MAX_FINDINGS + MAX_PASS_RECORDS
                ),
            });
        }
        Ok(Some(facts))
    }
}

/// Why checks could not be read or declared; every one exits 2, before any request.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    #[error("{}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: {} bytes; an evidence file is at most {} MiB: narrow the tool's output (select the rules you map) or split it", .path.display(), .bytes, .max >> 20)]
    TooLarge { path: PathBuf, bytes: u64, max: u64 },
    #[error("{}: not SARIF 2.1.0 or JUnit XML (a SARIF file is JSON with \"version\": \"2.1.0\"; a JUnit file is XML with <testsuites> or <testsuite>)", .path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: invalid SARIF: {message}", .path.display())]
    Sarif { path: PathBuf, message: String },
    #[error("{}: invalid JUnit XML at byte {position}: {message}", .path.display())]
    Junit {
        path: PathBuf,
        position: u64,
        message: String,
    },
    #[error("{}: more than {MAX_FINDINGS} findings; leaving some out could leave out one that vetoes: select the rules you map when running the tool", .path.display())]
    TooMany { path: PathBuf },
    #[error("{origin}: [[check]] {index}: {message}")]
    Mapping {
        origin: String,
        index: usize,
        message: String,
    },
    #[error("{}: {message}", .path.display())]
    ChecksFile { path: PathBuf, message: String },
    #[error("{}: {message}; replay it with the hatrack that recorded it, or run it again", .path.display())]
    Record { path: PathBuf, message: String },
    #[error("--run-checks {tool}: {message}")]
    Tool { tool: String, message: String },
}

impl From<ChecksError> for crate::Error {
    fn from(e: ChecksError) -> crate::Error {
        crate::Error::usage(e.to_string())
    }
}

/// sha256 (hex) of the tool, the rule, the path and the message (whitespace folded), each
/// on its own line: the same finding keeps its fingerprint when lines above it move. The
/// `occurrence` tells identical findings in one file apart.
pub fn fingerprint(tool: &str, rule: &str, path: &str, message: &str, occurrence: usize) -> String {
    let message = crate::verdict::fold_whitespace(message);
    let mut h = Sha256::new();
    for part in [tool, rule, path, &message, &occurrence.to_string()] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// `text` cut to `max` characters, with `…` when cut; control characters other than a line
/// break become spaces.
pub fn capped(text: &str, max: usize) -> String {
    let clean: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max).collect();
    cut.push('…');
    cut
}

/// One line of `text`, capped (names, rule ids, tool names).
pub fn capped_line(text: &str, max: usize) -> String {
    capped(&text.replace(['\n', '\r'], " "), max)
}

/// Reads a file of at most `max` bytes: a regular file only (a FIFO would hang), its size
/// checked before reading. `follow`: a link given on the command line is followed; a path
/// from a file the workspace wrote is not.
pub fn read_capped(path: &Path, max: u64, follow: bool) -> Result<Vec<u8>, ChecksError> {
    let fail = |message: String| ChecksError::Read {
        path: path.to_path_buf(),
        message,
    };
    let file = if follow {
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        std::fs::File::open(path).map_err(|e| fail(e.to_string()))?
    } else {
        crate::safe_fs::open_read_no_follow(path).map_err(|e| fail(e.to_string()))?
    };
    let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    if len > max {
        return Err(ChecksError::TooLarge {
            path: path.to_path_buf(),
            bytes: len,
            max,
        });
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(ChecksError::TooLarge {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}
