//! Read-only workspace tools for agents: `list_files`, `read_file`, `search`. Confinement
//! lives here and only here: every path is resolved (symlinks too) and must stay inside the
//! workspace; a deny list keeps secrets and VCS internals out; binaries are refused; every
//! call is capped. A refusal is a result the model reads, never a failed run. Output is
//! deterministic (lexicographic order, never mtime or directory order), so identical
//! workspaces give identical results and replays match byte for byte.
//!
//! This module knows nothing of models: the agent loop in `run/` turns a model's tool call
//! into a [`Call`] and the [`Outcome`] back into a tool message.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::verdict::markers;
use serde::Deserialize;
use serde_json::{json, Value};

/// Paths an agent may never read, whatever `hatrack.toml` says (more via `[tools] deny`).
/// Every deny pattern matches case-insensitively (`ID_ED25519`, `.AWS/`, `Cert.P12`).
pub const DEFAULT_DENY: &[&str] = &[
    ".git",
    ".git/**",
    "**/.git",
    "**/.git/**",
    "**/.env*",
    "**/*.pem",
    "**/*id_rsa*",
    "**/*id_ed25519*",
    "**/*id_ecdsa*",
    "**/*.key",
    "**/*.p12",
    "**/.netrc",
    "**/.npmrc",
    "**/credentials*.json",
    "**/.aws",
    "**/.aws/**",
];

/// The files that make a directory a hatrack run directory (`run.json` beside
/// `exchanges.jsonl`) or a batch directory (`batch.json`).
const RUN_DIR_FILES: &[&str] = &["run.json", "exchanges.jsonl"];
const BATCH_DIR_FILE: &str = "batch.json";

/// Whether `dir` is a hatrack run directory or batch directory. Such directories are never
/// shown to agents (`list_files`, `read_file`, `search`) nor bound as inputs: they hold
/// other steps' requests and answers, and a run's own artifacts, which must never pass for
/// the repository.
pub fn is_run_dir(dir: &Path) -> bool {
    RUN_DIR_FILES.iter().all(|f| dir.join(f).is_file()) || dir.join(BATCH_DIR_FILE).is_file()
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_lines: usize,
    pub max_bytes: usize,
    pub max_line_bytes: usize,
    pub max_hits: usize,
    pub max_entries: usize,
    pub max_depth: usize,
    /// Files larger than this are not searched or read (checked before reading).
    pub max_file_bytes: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_lines: 2000,
            max_bytes: 50 * 1024,
            max_line_bytes: 500,
            max_hits: 100,
            max_entries: 500,
            max_depth: 6,
            max_file_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("workspace {}: {source}", .path.display())]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[tools] deny pattern {pattern:?}: {message}")]
    Deny { pattern: String, message: String },
}

/// One call a model asked for, as parsed from its arguments. Serialized (tagged by tool
/// name, fields in declaration order) it is the call's canonical form: two spellings of the
/// same arguments are one call, which is how a run's snapshot keys recorded results.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    ListFiles {
        path: String,
        depth: usize,
    },
    ReadFile {
        path: String,
        start_line: usize,
        max_lines: usize,
    },
    Search {
        pattern: String,
        path_glob: String,
    },
}

/// What a call returned, and the line a report shows for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The text sent back to the model as the tool message.
    pub text: String,
    /// Why the call was refused (the text says so too).
    pub refused: Option<String>,
    /// For `read_file`: the file read (workspace-relative) and its text, a grounding source.
    pub read: Option<(String, String)>,
    pub trail: Trail,
}

/// One line of an agent's trail: which tool, on what, how much came back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Trail {
    pub tool: String,
    pub target: String,
    /// `12-80` for a read, hits for a search, entries for a listing.
    pub detail: String,
    pub bytes: u64,
    pub refused: bool,
}

/// The workspace as agents see it.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    deny: GlobSet,
    caps: Caps,
    /// Directories that do not exist for agents (canonical): this run's directory and its
    /// reports' directory, wherever they are; any other run directory is found by
    /// [`is_run_dir`].
    hidden: Vec<PathBuf>,
}

/// The deny list as one case-insensitive glob set: [`DEFAULT_DENY`] and `extra` (`[tools]
/// deny`). Kept for the process: the agent's tools and the probes both ask, and building it
/// compiles a regex of every pattern.
pub fn deny_set(extra: &[String]) -> Result<GlobSet, ToolsError> {
    static SETS: crate::memo::Memo<GlobSet> = crate::memo::Memo::new(64);
    // The list as JSON: a key no two different lists share.
    let key = serde_json::to_string(extra).unwrap_or_default();
    SETS.get_or_try(&key, || {
        let mut builder = GlobSetBuilder::new();
        for pattern in DEFAULT_DENY
            .iter()
            .map(|p| p.to_string())
            .chain(extra.iter().cloned())
        {
            let glob = globset::GlobBuilder::new(&pattern)
                .case_insensitive(true)
                .build()
                .map_err(|e| ToolsError::Deny {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                })?;
            builder.add(glob);
        }
        builder.build().map_err(|e| ToolsError::Deny {
            pattern: String::new(),
            message: e.to_string(),
        })
    })
}

impl Workspace {
    pub fn new(root: &Path, extra_deny: &[String], caps: Caps) -> Result<Workspace, ToolsError> {
        let root = root
            .canonicalize()
            .map_err(|source| ToolsError::Workspace {
                path: root.to_path_buf(),
                source,
            })?;
        let deny = deny_set(extra_deny)?;
        Ok(Workspace {
            root,
            deny,
            caps,
            hidden: Vec::new(),
        })
    }

    /// Makes `dir` (this run's directory, its reports' directory) invisible to every tool,
    /// as if it did not exist. A directory that does not exist yet is hidden once created.
    pub fn hide(&mut self, dir: &Path) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let real = dir.canonicalize().unwrap_or(dir);
        if !self.hidden.contains(&real) {
            self.hidden.push(real);
        }
    }

    /// A directory (real path) no agent may see: a hidden one, or any run directory.
    fn invisible_dir(&self, real: &Path) -> bool {
        self.hidden.iter().any(|h| h == real) || is_run_dir(real)
    }

    /// Whether the real path `real` lies in (or is) an invisible directory under the root.
    fn in_invisible_dir(&self, real: &Path) -> bool {
        let Ok(rel) = real.strip_prefix(&self.root) else {
            return false;
        };
        let mut dir = self.root.clone();
        if self.invisible_dir(&dir) {
            return true;
        }
        for c in rel.components() {
            dir.push(c);
            if dir.is_dir() && self.invisible_dir(&dir) {
                return true;
            }
        }
        false
    }

    /// The tool definitions sent as the request's `tools`.
    pub fn definitions() -> Value {
        json!([
            {"type": "function", "function": {
                "name": "list_files",
                "description": "List files and directories under a workspace path, sorted by name.",
                "parameters": {"type": "object", "additionalProperties": false,
                    "required": ["path", "depth"],
                    "properties": {
                        "path": {"type": "string", "description": "relative to the workspace root; \".\" for the root"},
                        "depth": {"type": "integer", "minimum": 1, "maximum": 6}
                    }}
            }},
            {"type": "function", "function": {
                "name": "read_file",
                "description": "Read lines of a text file in the workspace.",
                "parameters": {"type": "object", "additionalProperties": false,
                    "required": ["path", "start_line", "max_lines"],
                    "properties": {
                        "path": {"type": "string"},
                        "start_line": {"type": "integer", "minimum": 1},
                        "max_lines": {"type": "integer", "minimum": 1, "maximum": 2000}
                    }}
            }},
            {"type": "function", "function": {
                "name": "search",
                "description": "Search workspace files for a regular expression; returns path:line: text.",
                "parameters": {"type": "object", "additionalProperties": false,
                    "required": ["pattern", "path_glob"],
                    "properties": {
                        "pattern": {"type": "string"},
                        "path_glob": {"type": "string", "description": "e.g. \"**/*.sql\"; \"**\" for every file"}
                    }}
            }}
        ])
    }

    /// Parses a tool call's name and JSON arguments; a bad call is a refusal to show the model.
    pub fn parse(name: &str, arguments: &str) -> Result<Call, String> {
        let args: Value = serde_json::from_str(arguments)
            .map_err(|e| format!("the arguments are not a JSON object: {e}"))?;
        let text = |k: &str| -> Result<String, String> {
            args.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("`{k}` (a string) is required"))
        };
        let number = |k: &str, default: usize| -> usize {
            args.get(k)
                .and_then(Value::as_u64)
                .map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        match name {
            "list_files" => Ok(Call::ListFiles {
                path: text("path").unwrap_or_else(|_| ".".into()),
                depth: number("depth", 2),
            }),
            "read_file" => Ok(Call::ReadFile {
                path: text("path")?,
                start_line: number("start_line", 1),
                max_lines: number("max_lines", 2000),
            }),
            "search" => Ok(Call::Search {
                pattern: text("pattern")?,
                path_glob: text("path_glob").unwrap_or_else(|_| "**".into()),
            }),
            other => Err(format!(
                "there is no tool {other:?}; the tools are list_files, read_file, search"
            )),
        }
    }

    pub fn call(&self, call: &Call) -> Outcome {
        match call {
            Call::ListFiles { path, depth } => self.list_files(path, *depth),
            Call::ReadFile {
                path,
                start_line,
                max_lines,
            } => self.read_file(path, *start_line, *max_lines),
            Call::Search { pattern, path_glob } => self.search(pattern, path_glob),
        }
    }

    /// A refusal: the model reads why; the run goes on.
    pub fn refuse(tool: &str, target: &str, why: &str) -> Outcome {
        Outcome {
            text: format!("refused: {why}"),
            refused: Some(why.to_string()),
            read: None,
            trail: Trail {
                tool: tool.to_string(),
                target: target.to_string(),
                detail: "refused".into(),
                bytes: 0,
                refused: true,
            },
        }
    }

    /// Resolves a workspace-relative path: no absolute paths, no escape through `..` or a
    /// symlink, nothing on the deny list (checked on the path asked for and the real one).
    /// Returns the real path and its workspace-relative name.
    fn resolve(&self, asked: &str) -> Result<(PathBuf, String), String> {
        let asked = asked.trim();
        let p = Path::new(if asked.is_empty() { "." } else { asked });
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::Prefix(_))) {
            return Err(
                "absolute paths are refused; give a path relative to the workspace root".into(),
            );
        }
        if asked.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        if self.denied(p) {
            return Err(format!("{asked} is on the deny list"));
        }
        let real = self
            .root
            .join(p)
            .canonicalize()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("{asked} does not exist"),
                _ => format!("{asked} cannot be read"),
            })?;
        let rel = real
            .strip_prefix(&self.root)
            .map_err(|_| format!("{asked} is outside the workspace"))?
            .to_path_buf();
        if self.denied(&rel) {
            return Err(format!("{asked} is on the deny list"));
        }
        // hatrack's own run directories do not exist for agents.
        if self.in_invisible_dir(&real) {
            return Err(format!("{asked} does not exist"));
        }
        Ok((real, slash(&rel)))
    }

    fn denied(&self, rel: &Path) -> bool {
        let clean: PathBuf = rel
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        !clean.as_os_str().is_empty() && self.deny.is_match(&clean)
    }

    /// Entries under `dir`, sorted by name, never following links, denied paths (and
    /// everything under them) left out: the one walk `list_files` and `search` share.
    fn walk<'a>(
        &'a self,
        dir: &Path,
        depth: usize,
    ) -> impl Iterator<Item = walkdir::DirEntry> + 'a {
        walkdir::WalkDir::new(dir)
            .min_depth(1)
            .max_depth(depth)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let visible = e
                    .path()
                    .strip_prefix(&self.root)
                    .map_or(true, |r| !self.denied(r));
                visible && !(e.file_type().is_dir() && self.invisible_dir(e.path()))
            })
            .flatten()
    }

    fn list_files(&self, asked: &str, depth: usize) -> Outcome {
        let (real, rel) = match self.resolve(asked) {
            Ok(r) => r,
            Err(why) => return Workspace::refuse("list_files", asked, &why),
        };
        if !real.is_dir() {
            return Workspace::refuse("list_files", asked, &format!("{asked} is not a directory"));
        }
        let depth = depth.clamp(1, self.caps.max_depth);
        let mut lines = Vec::new();
        let mut more = 0usize;
        for entry in self.walk(&real, depth) {
            if lines.len() >= self.caps.max_entries {
                more += 1;
                continue;
            }
            let Ok(r) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            // A file name is data: it must not spell hatrack's framing or a line of its own.
            let name = markers::escape_name(&slash(r)).into_owned();
            let ft = entry.file_type();
            lines.push(if ft.is_dir() {
                format!("{name}/")
            } else if ft.is_symlink() {
                format!("{name} (link)")
            } else {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                format!("{name} ({size} bytes)")
            });
        }
        let mut text = lines.join("\n");
        if more > 0 {
            let _ = write!(
                text,
                "\n… {more} more entries not listed; list a subdirectory"
            );
        }
        if text.is_empty() {
            text = "(empty)".into();
        }
        let entries = lines.len();
        outcome("list_files", &rel, format!("{entries} entries"), text, None)
    }

    fn read_file(&self, asked: &str, start_line: usize, max_lines: usize) -> Outcome {
        let (real, rel) = match self.resolve(asked) {
            Ok(r) => r,
            Err(why) => return Workspace::refuse("read_file", asked, &why),
        };
        let content = match self.text_of(&real) {
            Ok(c) => c,
            Err(why) => return Workspace::refuse("read_file", asked, &format!("{asked}: {why}")),
        };
        let start = start_line.max(1);
        let max_lines = max_lines.clamp(1, self.caps.max_lines);
        let mut text = String::new();
        let mut shown = String::new();
        let mut last = start.saturating_sub(1);
        for (i, line) in content.lines().enumerate().skip(start - 1).take(max_lines) {
            let line = cap_line(&markers::escape_data(line), self.caps.max_line_bytes);
            if text.len() + line.len() + 1 > self.caps.max_bytes {
                break;
            }
            text.push_str(&line);
            text.push('\n');
            shown.push_str(&line);
            shown.push('\n');
            last = i + 1;
        }
        let total = content.lines().count();
        if last < total {
            text.push_str(&markers::read_window(start, last, total));
        } else if text.is_empty() {
            text.push_str(&markers::file_lines(total));
        }
        let detail = format!("lines {start}-{last} of {total}");
        outcome("read_file", &rel, detail, text, Some((rel.clone(), shown)))
    }

    fn search(&self, pattern: &str, path_glob: &str) -> Outcome {
        let re = match regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => re,
            Err(e) => return Workspace::refuse("search", pattern, &format!("bad pattern: {e}")),
        };
        let glob = match Glob::new(path_glob) {
            Ok(g) => g.compile_matcher(),
            Err(e) => return Workspace::refuse("search", path_glob, &format!("bad glob: {e}")),
        };
        let mut hits = Vec::new();
        let mut more = 0usize;
        for entry in self
            .walk(&self.root, usize::MAX)
            .filter(|e| e.file_type().is_file())
        {
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            if !glob.is_match(rel) {
                continue;
            }
            let Ok(content) = self.text_of(entry.path()) else {
                continue;
            };
            for (i, line) in content.lines().enumerate() {
                if re.is_match(line) {
                    if hits.len() >= self.caps.max_hits {
                        more += 1;
                    } else {
                        hits.push(format!(
                            "{}:{}: {}",
                            markers::escape_name(&slash(rel)),
                            i + 1,
                            cap_line(&markers::escape_data(line), self.caps.max_line_bytes)
                        ));
                    }
                }
            }
        }
        let mut text = if hits.is_empty() {
            "(no match)".to_string()
        } else {
            hits.join("\n")
        };
        if more > 0 {
            let _ = write!(
                text,
                "\n… {more} more matches; narrow the pattern or the glob"
            );
        }
        let detail = format!("{} hits", hits.len() + more);
        outcome(
            "search",
            &format!("{pattern} in {path_glob}"),
            detail,
            text,
            None,
        )
    }

    /// A file's text: size checked before reading, binary and non-UTF-8 refused.
    fn text_of(&self, path: &Path) -> Result<String, String> {
        let meta = std::fs::metadata(path).map_err(|_| "cannot be read".to_string())?;
        if !meta.is_file() {
            return Err("is not a file".into());
        }
        if meta.len() > self.caps.max_file_bytes {
            return Err(format!(
                "is {} bytes, over the {}-byte limit for tools",
                meta.len(),
                self.caps.max_file_bytes
            ));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(self.caps.max_file_bytes + 1).read_to_end(&mut bytes))
            .map_err(|_| "cannot be read".to_string())?;
        if bytes.iter().take(8192).any(|b| *b == 0) {
            return Err("is a binary file".into());
        }
        String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
    }
}

fn outcome(
    tool: &str,
    target: &str,
    detail: String,
    text: String,
    read: Option<(String, String)>,
) -> Outcome {
    Outcome {
        trail: Trail {
            tool: tool.to_string(),
            target: target.to_string(),
            detail,
            bytes: text.len() as u64,
            refused: false,
        },
        text,
        refused: None,
        read,
    }
}

/// A line cut at `max` bytes (on a character boundary) with a visible mark (from the one
/// table of marks, which grounding strips: the mark is never evidence).
fn cap_line(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} {}", &line[..end], markers::line_cut(max))
}

fn slash(p: &Path) -> String {
    let s = crate::safe_fs::slash_path(p);
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dags")).unwrap();
        std::fs::create_dir_all(root.join("models/marts")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(
            root.join("dags/orders.py"),
            "retries = 3\nschedule = '@daily'\n",
        )
        .unwrap();
        std::fs::write(
            root.join("models/marts/fct_orders.sql"),
            "select 1\n-- retries\n",
        )
        .unwrap();
        std::fs::write(root.join(".env"), "TOKEN=hunter2hunter2\n").unwrap();
        std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(root.join("blob.bin"), [0u8, 1, 2, 3]).unwrap();
        std::fs::write(outside.path().join("secret.txt"), "outside secret\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("link.txt"))
            .unwrap();
        std::os::unix::fs::symlink(root.join(".env"), root.join("innocent.txt")).unwrap();
        let w = Workspace::new(root, &["**/*.bin".to_string()], Caps::default()).unwrap();
        (dir, outside, w)
    }

    fn read(w: &Workspace, path: &str) -> Outcome {
        w.call(&Call::ReadFile {
            path: path.into(),
            start_line: 1,
            max_lines: 100,
        })
    }

    #[test]
    fn escapes_secrets_and_binaries_are_refused_as_results() {
        let (_d, _o, w) = ws();
        for path in [
            "../../etc/passwd",
            "/etc/passwd",
            "link.txt",
            ".env",
            "innocent.txt",
            ".git/config",
            "blob.bin",
            "dags/../../x",
        ] {
            let o = read(&w, path);
            assert!(o.refused.is_some(), "{path}: {}", o.text);
            assert!(o.text.starts_with("refused: "), "{path}");
            assert!(!o.text.contains("outside secret") && !o.text.contains("hunter2"));
            assert!(o.trail.refused);
        }
    }

    #[test]
    fn reads_are_capped_with_a_hint_where_to_continue() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("a.txt"), body).unwrap();
        let caps = Caps {
            max_lines: 10,
            ..Caps::default()
        };
        let w = Workspace::new(dir.path(), &[], caps).unwrap();
        let o = w.call(&Call::ReadFile {
            path: "a.txt".into(),
            start_line: 5,
            max_lines: 50,
        });
        assert!(o.text.starts_with("line 5\n"));
        assert!(o.text.contains("continue at line 15"), "{}", o.text);
        assert_eq!(o.read.as_ref().unwrap().0, "a.txt");
        assert!(!o.read.unwrap().1.contains("hatrack"));
    }

    #[test]
    fn listings_and_searches_are_sorted_and_skip_denied_paths() {
        let (_d, _o, w) = ws();
        let o = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 3,
        });
        assert!(
            !o.text.contains(".git") && !o.text.contains(".env"),
            "{}",
            o.text
        );
        let names: Vec<&str> = o.text.lines().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(o.text.contains("dags/orders.py (32 bytes)"), "{}", o.text);
        let s = w.call(&Call::Search {
            pattern: "retries".into(),
            path_glob: "**".into(),
        });
        assert_eq!(
            s.text,
            "dags/orders.py:1: retries = 3\nmodels/marts/fct_orders.sql:2: -- retries"
        );
        let s = w.call(&Call::Search {
            pattern: "hunter2".into(),
            path_glob: "**".into(),
        });
        assert_eq!(s.text, "(no match)");
    }

    #[test]
    fn key_and_credential_files_are_denied_whatever_their_case() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let secret = "sentinel-credential-0001";
        let files = [
            "id_ed25519",
            "keys/ID_ED25519.pub",
            "id_ecdsa",
            ".netrc",
            "home/.NETRC",
            ".npmrc",
            "cert.P12",
            "credentials.json",
            "gcp/Credentials-prod.json",
            ".aws/credentials",
            "home/.AWS/config",
        ];
        for f in files {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{secret}\n")).unwrap();
        }
        std::fs::write(root.join("notes.md"), "plain notes\n").unwrap();
        let w = Workspace::new(root, &[], Caps::default()).unwrap();
        for f in files {
            let o = read(&w, f);
            assert!(o.refused.is_some(), "{f}: {}", o.text);
        }
        let listing = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 6,
        });
        assert_eq!(
            listing.text, "gcp/\nhome/\nkeys/\nnotes.md (12 bytes)",
            "{}",
            listing.text
        );
        let s = w.call(&Call::Search {
            pattern: "sentinel".into(),
            path_glob: "**".into(),
        });
        assert_eq!(s.text, "(no match)");
    }

    #[test]
    fn run_directories_do_not_exist_for_agents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let secret = "sentinel-answer-of-another-step";
        // This run's directory (hidden by name: it has no exchanges yet), an older run, a
        // batch, and a run directory of reports only (--out).
        for (d, files) in [
            ("transcripts/ws-now", vec!["run.json"]),
            ("transcripts/ws-old", vec!["run.json", "exchanges.jsonl"]),
            ("batches/b1", vec!["batch.json"]),
            ("reports-out", vec!["report.json"]),
        ] {
            std::fs::create_dir_all(root.join(d).join("artifacts/sre")).unwrap();
            std::fs::write(root.join(d).join("artifacts/sre/plan.md"), secret).unwrap();
            for f in files {
                std::fs::write(root.join(d).join(f), secret).unwrap();
            }
        }
        std::fs::write(root.join("notes.md"), "plain notes\n").unwrap();
        let mut w = Workspace::new(root, &[], Caps::default()).unwrap();
        w.hide(&root.join("transcripts/ws-now"));
        w.hide(&root.join("reports-out"));
        let listing = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 6,
        });
        assert_eq!(
            listing.text, "batches/\nnotes.md (12 bytes)\ntranscripts/",
            "{}",
            listing.text
        );
        for path in [
            "transcripts/ws-now/run.json",
            "transcripts/ws-old/exchanges.jsonl",
            "transcripts/ws-old/artifacts/sre/plan.md",
            "batches/b1/batch.json",
            "reports-out/report.json",
            "./transcripts/../transcripts/ws-old/run.json",
        ] {
            let o = read(&w, path);
            assert_eq!(o.text, format!("refused: {path} does not exist"));
        }
        let o = w.call(&Call::ListFiles {
            path: "transcripts/ws-old".into(),
            depth: 2,
        });
        assert!(o.refused.is_some());
        let s = w.call(&Call::Search {
            pattern: "sentinel".into(),
            path_glob: "**".into(),
        });
        assert_eq!(s.text, "(no match)");
    }

    #[test]
    fn bad_calls_are_explained() {
        assert!(Workspace::parse("rm", "{}")
            .unwrap_err()
            .contains("no tool"));
        assert!(Workspace::parse("read_file", "not json").is_err());
        assert!(Workspace::parse("read_file", "{}")
            .unwrap_err()
            .contains("path"));
        assert_eq!(
            Workspace::parse("read_file", r#"{"path":"a","start_line":3,"max_lines":9}"#),
            Ok(Call::ReadFile {
                path: "a".into(),
                start_line: 3,
                max_lines: 9
            })
        );
    }

    /// A workspace over `files` (path, content) with `caps`.
    fn capped(files: &[(&str, String)], caps: Caps) -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let w = Workspace::new(dir.path(), &[], caps).unwrap();
        (dir, w)
    }

    #[test]
    fn max_bytes_stops_a_read_before_the_line_that_would_pass_it() {
        let body: String = (1..=10).map(|i| format!("line {i:02} ......\n")).collect();
        let caps = Caps {
            max_bytes: 40,
            ..Caps::default()
        };
        let (_d, w) = capped(&[("a.txt", body)], caps);
        let o = read(&w, "a.txt");
        let shown = o.read.as_ref().unwrap().1.clone();
        assert_eq!(shown, "line 01 ......\nline 02 ......\n"); // a third would make 45
        assert!(o.text.contains("continue at line 3"), "{}", o.text);
    }

    #[test]
    fn max_line_bytes_cuts_one_long_line_with_a_marker() {
        let caps = Caps {
            max_line_bytes: 8,
            ..Caps::default()
        };
        let (_d, w) = capped(&[("a.txt", "0123456789abcdef\nshort\n".into())], caps);
        let o = read(&w, "a.txt");
        assert!(o.text.starts_with("01234567 "), "{}", o.text);
        assert!(!o.text.contains("89abcdef"), "{}", o.text);
        assert!(o.text.contains("short"));
        let hit = w.call(&Call::Search {
            pattern: "0123".into(),
            path_glob: "**".into(),
        });
        assert!(hit.text.contains("a.txt:1: 01234567 "), "{}", hit.text);
        assert!(!hit.text.contains("89abcdef"), "{}", hit.text);
    }

    #[test]
    fn max_hits_keeps_the_first_hits_and_counts_the_rest() {
        let body: String = (1..=7).map(|i| format!("retries = {i}\n")).collect();
        let caps = Caps {
            max_hits: 3,
            ..Caps::default()
        };
        let (_d, w) = capped(&[("dag.py", body)], caps);
        let o = w.call(&Call::Search {
            pattern: "retries".into(),
            path_glob: "**".into(),
        });
        assert_eq!(
            o.text.lines().filter(|l| l.starts_with("dag.py:")).count(),
            3
        );
        assert!(o.text.contains("dag.py:3: retries = 3"), "{}", o.text);
        assert!(!o.text.contains("dag.py:4:"), "{}", o.text);
        assert!(o.text.contains("… 4 more matches"), "{}", o.text);
    }

    #[test]
    fn max_entries_lists_the_first_entries_and_counts_the_rest() {
        let files: Vec<(String, String)> = (1..=6)
            .map(|i| (format!("f{i}.txt"), String::new()))
            .collect();
        let files: Vec<(&str, String)> =
            files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
        let caps = Caps {
            max_entries: 4,
            ..Caps::default()
        };
        let (_d, w) = capped(&files, caps);
        let o = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 1,
        });
        assert_eq!(o.text.lines().filter(|l| l.ends_with("bytes)")).count(), 4);
        assert!(o.text.contains("… 2 more entries not listed"), "{}", o.text);
    }

    #[test]
    fn max_depth_bounds_how_deep_a_listing_goes_whatever_is_asked() {
        let caps = Caps {
            max_depth: 2,
            ..Caps::default()
        };
        let (_d, w) = capped(&[("a/b/c/deep.txt", "x".into())], caps);
        let o = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 50,
        });
        assert!(o.text.contains("a/b/"), "{}", o.text);
        assert!(!o.text.contains("a/b/c"), "{}", o.text);
    }

    #[test]
    fn max_file_bytes_refuses_reading_and_skips_searching_a_larger_file() {
        let caps = Caps {
            max_file_bytes: 16,
            ..Caps::default()
        };
        let big = "retries = 3 and a long tail\n".to_string();
        let (_d, w) = capped(
            &[("big.py", big), ("small.py", "retries = 1\n".into())],
            caps,
        );
        let o = read(&w, "big.py");
        assert!(o.refused.is_some(), "{}", o.text);
        assert!(o.text.contains("over the 16-byte limit"), "{}", o.text);
        let hits = w.call(&Call::Search {
            pattern: "retries".into(),
            path_glob: "**".into(),
        });
        assert!(hits.text.contains("small.py:1:"), "{}", hits.text);
        assert!(!hits.text.contains("big.py"), "{}", hits.text);
    }

    /// `a/` and `a-b/` side by side: a listing is the tree in name order — a directory's
    /// entries follow it — not the lines sorted as strings (which would put `a-b/` before
    /// `a/`, since `-` sorts before `/`).
    #[test]
    fn a_listing_keeps_a_directory_s_entries_under_it_next_to_a_dashed_sibling() {
        let files = [
            ("a/x.txt", String::new()),
            ("a-b/y.txt", String::new()),
            ("a.txt", String::new()),
        ];
        let (_d, w) = capped(&files, Caps::default());
        let o = w.call(&Call::ListFiles {
            path: ".".into(),
            depth: 3,
        });
        let names: Vec<&str> = o
            .text
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["a/", "a/x.txt", "a-b/", "a-b/y.txt", "a.txt"]);
    }
}
