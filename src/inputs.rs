//! Declared inputs: each item of a hat's **Reads** line is bound, before any model call,
//! either to an earlier hat's artifacts (when it names that hat) or to workspace files
//! through `hatrack.toml [inputs]`. Inputs are untrusted text: they are size-capped here and
//! quoted as data by the prompts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{normalise_item, ConfigFile, LimitsSection, CONFIG_FILE};
use crate::definition::{Hat, Stage};
use crate::globs::PathGlob;

/// One file quoted into a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFile {
    /// Relative to the workspace, with `/` separators.
    pub path: String,
    /// What the prompt quotes: the text, cut at the cap with a visible marker.
    pub content: String,
    /// The whole file's text (grounding checks quotes against what the model was shown).
    pub bytes: u64,
    pub sha256: String,
    pub truncated: bool,
    /// Bytes of the file the prompt quotes (all of them unless `truncated`).
    pub shown_bytes: u64,
}

/// What a Reads item is bound to.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// The artifacts of an earlier hat of the sequence.
    Hat(String),
    /// Workspace files, through the `[inputs]` key that matched.
    Workspace { key: String, files: Vec<InputFile> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoundItem {
    /// The item as written in the Reads line.
    pub item: String,
    pub binding: Binding,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HatInputs {
    pub hat: String,
    pub items: Vec<BoundItem>,
}

/// Every hat's bound inputs, in sequence order, and what was cut or skipped on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bindings {
    pub hats: Vec<HatInputs>,
    pub warnings: Vec<String>,
}

impl Bindings {
    pub fn for_hat(&self, hat: &str) -> Option<&HatInputs> {
        self.hats.iter().find(|h| h.hat == hat)
    }

    /// Every workspace file bound anywhere, each once, in first-seen order, each as the hat
    /// that saw most of it saw it (a file two hats read may be cut by one hat's
    /// `max_input_bytes` and not by the other's): what every step is shown.
    pub fn all_files(&self) -> Vec<&InputFile> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut files: Vec<&InputFile> = Vec::new();
        for hat in &self.hats {
            for item in &hat.items {
                if let Binding::Workspace { files: fs, .. } = &item.binding {
                    for f in fs {
                        match seen.get(f.path.as_str()) {
                            Some(&at) if files[at].shown_bytes < f.shown_bytes => files[at] = f,
                            Some(_) => {}
                            None => {
                                seen.insert(f.path.as_str(), files.len());
                                files.push(f);
                            }
                        }
                    }
                }
            }
        }
        files
    }
}

/// One reason the inputs cannot be bound. Every variant names the hat and the item.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("hat {hat}: Reads item {item:?} is not bound to any file.\n  add to {config}:\n    [inputs]\n    \"{key}\" = \"path/to/file\"   # or a list of globs: [\"dir/**/*.sql\"]")]
    Unbound {
        hat: String,
        item: String,
        key: String,
        config: String,
    },
    #[error("hat {hat}: Reads item {item:?} is not bound yet: {config} [inputs] still holds the placeholder {pattern:?} that `hatrack init` wrote because it found no file for it (its TODO line lists the closest candidates it saw).\n  write the file(s) that hold it in place of the placeholder:\n    [inputs]\n    \"{key}\" = \"path/to/file\"   # or a list of globs: [\"dir/**/*.sql\"]")]
    Placeholder {
        hat: String,
        item: String,
        key: String,
        pattern: String,
        config: String,
    },
    #[error("hat {hat}: Reads item {item:?}: {pattern:?} matches no file in the workspace {workspace}; fix the path in hatrack.toml [inputs]")]
    NoMatch {
        hat: String,
        item: String,
        pattern: String,
        workspace: String,
    },
    #[error("hat {hat}: Reads item {item:?}: {pattern:?} points outside the workspace; inputs must be relative paths inside it")]
    Escapes {
        hat: String,
        item: String,
        pattern: String,
    },
    #[error("hat {hat}: Reads item {item:?}: {pattern:?} is not a valid glob: {message}")]
    BadGlob {
        hat: String,
        item: String,
        pattern: String,
        message: String,
    },
    #[error("hat {hat}: Reads item {item:?} names hat {other}, which runs later (or is this hat); a hat can only read earlier hats' artifacts")]
    LaterHat {
        hat: String,
        item: String,
        other: String,
    },
    #[error("hat {hat}: Reads item {item:?} yields nothing: every file bound to it was skipped ({skipped}); a reviewer that saw nothing must not pass — bind text files to it in hatrack.toml [inputs], or convert these to text")]
    NothingReadable {
        hat: String,
        item: String,
        /// The skipped files and why (a bounded list).
        skipped: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// All the problems found, so a user fixes them in one go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("inputs are not bound; no model was called:\n{}", .0.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n"))]
pub struct InputErrors(pub Vec<InputError>);

/// Splits a Reads line into items: commas and semicolons, a leading "and", the final period.
pub fn split_reads(reads: &str) -> Vec<String> {
    reads
        .split([',', ';'])
        .map(|s| s.trim())
        .map(|s| s.strip_prefix("and ").unwrap_or(s))
        .map(|s| s.trim_end_matches('.').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The hat an item names, if any: "Pipeline engineer's deployment" → `pipeline-engineer`.
pub fn named_hat<'a>(item: &str, hats: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let item = normalise_item(item).replace('’', "'");
    hats.into_iter().find(|hat| {
        let spoken = hat.replace(['-', '_'], " ");
        item == spoken
            || item.starts_with(&format!("{spoken}'s"))
            || item.starts_with(&format!("{spoken} "))
    })
}

/// Binds every Reads item of every hat. Reads all bound files (capped); touches no network.
pub fn bind(stage: &Stage, workspace: &Path, config: &ConfigFile) -> Result<Bindings, InputErrors> {
    let mut bindings = Bindings::default();
    let mut errors = Vec::new();
    let hat_names: Vec<&str> = stage.hats.iter().map(|h| h.name.as_str()).collect();
    let files = WorkspaceFiles::scan(workspace).map_err(|e| InputErrors(vec![e]))?;
    let redact = redact_patterns(workspace, config)?;
    let binder = Binder {
        workspace,
        config,
        files,
        redact,
        hat_names,
    };
    for (index, hat) in stage.hats.iter().enumerate() {
        let items = binder.bind_hat(index, hat, &mut bindings.warnings, &mut errors);
        bindings.hats.push(HatInputs {
            hat: hat.name.clone(),
            items,
        });
    }
    if errors.is_empty() {
        Ok(bindings)
    } else {
        Err(InputErrors(errors))
    }
}

/// The `[secrets] redact_inputs` patterns, compiled once for every input of the stage; a bad
/// pattern stops binding before any file is read.
fn redact_patterns(
    workspace: &Path,
    config: &ConfigFile,
) -> Result<Vec<regex::Regex>, InputErrors> {
    crate::secrets::compile_patterns(
        config.secrets.redact_patterns(),
        &format!(
            "{} [secrets] redact_inputs",
            workspace.join(CONFIG_FILE).display()
        ),
    )
    .map_err(|e| {
        InputErrors(vec![InputError::Io {
            path: workspace.join(CONFIG_FILE).display().to_string(),
            message: e.to_string(),
        }])
    })
}

/// What binding needs from the whole stage, gathered once so each hat and item is bound
/// against the same workspace scan, configuration and redaction patterns.
struct Binder<'a> {
    workspace: &'a Path,
    config: &'a ConfigFile,
    files: WorkspaceFiles,
    redact: Vec<regex::Regex>,
    /// Every hat of the sequence, in order: an item may name an earlier one.
    hat_names: Vec<&'a str>,
}

/// The files one Reads item resolved to, once read.
#[derive(Default)]
struct ItemFiles {
    /// Read, and quoted into the prompt.
    quoted: Vec<InputFile>,
    /// `"<file>: <why>"` for each file skipped.
    skipped: Vec<String>,
    /// One warning per file cut, skipped or redacted.
    notes: Vec<String>,
}

impl Binder<'_> {
    /// Binds one hat's Reads items, in order: to an earlier hat, or to workspace files
    /// through `[inputs]`. Every item shares the hat's one input budget. What cannot be bound
    /// goes to `errors`, so every problem of the stage is reported at once.
    fn bind_hat(
        &self,
        index: usize,
        hat: &Hat,
        warnings: &mut Vec<String>,
        errors: &mut Vec<InputError>,
    ) -> Vec<BoundItem> {
        let mut items = Vec::new();
        let mut budget = self.config.limits.max_input_bytes;
        for item in split_reads(hat.reads.as_deref().unwrap_or("")) {
            if let Some(other) = named_hat(&item, self.hat_names.iter().copied()) {
                if self.hat_names[..index].contains(&other) {
                    items.push(BoundItem {
                        item,
                        binding: Binding::Hat(other.to_string()),
                    });
                } else {
                    errors.push(InputError::LaterHat {
                        hat: hat.name.clone(),
                        item,
                        other: other.to_string(),
                    });
                }
                continue;
            }
            let Some((key, list)) = self.config.input_for(&item) else {
                errors.push(InputError::Unbound {
                    hat: hat.name.clone(),
                    key: normalise_item(&item),
                    item,
                    config: self.workspace.join(CONFIG_FILE).display().to_string(),
                });
                continue;
            };
            if let Some(pattern) = self.files.placeholder(list.patterns()) {
                errors.push(InputError::Placeholder {
                    hat: hat.name.clone(),
                    item,
                    key: key.to_string(),
                    pattern: pattern.to_string(),
                    config: self.workspace.join(CONFIG_FILE).display().to_string(),
                });
                continue;
            }
            match self.files.resolve(&hat.name, &item, list.patterns()) {
                Ok(paths) => {
                    let ItemFiles {
                        quoted,
                        skipped,
                        notes,
                    } = self.read_files(&hat.name, paths, &mut budget, errors);
                    push_listed_notes(warnings, &hat.name, &item, notes);
                    if let Some(e) = nothing_readable(&hat.name, &item, &quoted, &skipped) {
                        errors.push(e);
                    }
                    items.push(BoundItem {
                        item,
                        binding: Binding::Workspace {
                            key: key.to_string(),
                            files: quoted,
                        },
                    });
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        items
    }

    /// Reads the files one item resolved to, out of the hat's `budget`, noting each file cut,
    /// skipped or redacted (a file that cannot be read at all goes to `errors`).
    fn read_files(
        &self,
        hat: &str,
        paths: Vec<String>,
        budget: &mut usize,
        errors: &mut Vec<InputError>,
    ) -> ItemFiles {
        let mut read = ItemFiles::default();
        for path in paths {
            let shown = crate::safe_fs::printable_name(&path);
            match read_input(
                self.workspace,
                &path,
                &self.config.limits,
                budget,
                &self.redact,
            ) {
                Ok(Ok((file, redacted))) => {
                    if redacted > 0 {
                        read.notes.push(format!(
                            "hat {hat}: input {shown}: {redacted} passage(s) redacted by [secrets] redact_inputs before sending"
                        ));
                    }
                    if file.truncated {
                        read.notes.push(format!(
                            "hat {hat}: input {shown} was cut at {} of {} bytes to fit the prompt (raise [limits] in hatrack.toml, or let the agent read the rest with its tools)",
                            file.shown_bytes, file.bytes
                        ));
                    }
                    read.quoted.push(file);
                }
                Ok(Err(why)) => {
                    read.notes
                        .push(format!("hat {hat}: input {shown} {why} and was skipped"));
                    read.skipped.push(format!("{shown}: {why}"));
                }
                Err(e) => errors.push(e),
            }
        }
        read
    }
}

/// Adds one item's notes to the warnings, the first [`MAX_LISTED_NOTES`] one by one and the
/// rest counted: a glob over thousands of files must not flood the report.
fn push_listed_notes(warnings: &mut Vec<String>, hat: &str, item: &str, mut notes: Vec<String>) {
    let listed = notes.len().min(MAX_LISTED_NOTES);
    warnings.extend(notes.drain(..listed));
    if !notes.is_empty() {
        warnings.push(format!(
            "hat {hat}: Reads item {item:?}: and {} more inputs cut, skipped or redacted",
            notes.len()
        ));
    }
}

/// The error for an item whose every file was skipped (naming at most ten of them): a
/// reviewer that saw nothing must not pass.
fn nothing_readable(
    hat: &str,
    item: &str,
    quoted: &[InputFile],
    skipped: &[String],
) -> Option<InputError> {
    if !quoted.is_empty() || skipped.is_empty() {
        return None;
    }
    let mut list: Vec<String> = skipped.iter().take(10).cloned().collect();
    if skipped.len() > 10 {
        list.push(format!("and {} more", skipped.len() - 10));
    }
    Some(InputError::NothingReadable {
        hat: hat.to_string(),
        item: item.to_string(),
        skipped: list.join("; "),
    })
}

/// How `hatrack init` starts the placeholder it writes for an item it found no file for.
pub const PLACEHOLDER_PREFIX: &str = "TODO/";

/// The workspace's files, relative (`/`-separated) and sorted, as binding sees them (`.git`,
/// `target`, `node_modules`, `.venv` and hatrack's run and batch directories are skipped;
/// of a dbt project's `target/`, only `run_results.json` is seen).
pub fn workspace_files(root: &Path) -> Result<Vec<String>, InputError> {
    Ok(WorkspaceFiles::scan(root)?.files)
}

/// Whether `file` (relative, `/`-separated) is one a `[inputs]` pattern binds: it matches
/// the glob, or the pattern names a directory holding it. An invalid glob matches nothing.
pub fn pattern_matches(pattern: &str, file: &str) -> bool {
    pattern_matcher(pattern)(file)
}

/// [`pattern_matches`] for one pattern compiled once, to test many files against it.
pub fn pattern_matcher(pattern: &str) -> impl Fn(&str) -> bool {
    let clean = clean_pattern(pattern);
    let dir = format!("{clean}/");
    let glob = glob(clean).ok();
    move |file: &str| file.starts_with(&dir) || glob.as_ref().is_some_and(|g| g.is_match(file))
}

/// A pattern as written in `[inputs]`, without a leading `./` or a trailing `/`.
fn clean_pattern(pattern: &str) -> &str {
    pattern.trim_start_matches("./").trim_end_matches('/')
}

/// The compiled glob of a cleaned `[inputs]` pattern (`*` stays within one path segment),
/// kept for the process: a batch binds the same patterns in every workspace.
fn glob(clean: &str) -> Result<PathGlob, globset::Error> {
    static GLOBS: crate::memo::Memo<PathGlob> = crate::memo::Memo::new(1024);
    GLOBS.get_or_try(clean, || PathGlob::new(clean))
}

/// The workspace's files, relative and sorted, walked once.
struct WorkspaceFiles {
    root: PathBuf,
    files: Vec<String>,
}

impl WorkspaceFiles {
    fn scan(root: &Path) -> Result<WorkspaceFiles, InputError> {
        let root = root.canonicalize().map_err(|e| InputError::Io {
            path: root.display().to_string(),
            message: format!("cannot open the workspace: {e}"),
        })?;
        let mut files = Vec::new();
        let walker = walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let is_dir = e.file_type().is_dir();
                if e.path().parent().is_some_and(is_dbt_target) {
                    return !is_dir && e.file_name() == "run_results.json";
                }
                let skipped = match e.file_name().to_str() {
                    Some("target") => !is_dbt_target(e.path()),
                    Some(".git" | "node_modules" | ".venv") => true,
                    _ => false,
                };
                let run_dir = is_dir && crate::tools::is_run_dir(e.path());
                !skipped && !run_dir
            });
        for entry in walker.flatten() {
            if entry.file_type().is_file() {
                if let Ok(rel) = entry.path().strip_prefix(&root) {
                    files.push(rel_to_slash(rel));
                }
            }
        }
        Ok(WorkspaceFiles { root, files })
    }

    /// The first of `patterns` that is `hatrack init`'s placeholder (`TODO/…`) and binds no
    /// file: the item is unbound, not a path to fix.
    fn placeholder<'p>(&self, patterns: Vec<&'p str>) -> Option<&'p str> {
        patterns.into_iter().find(|p| {
            clean_pattern(p).starts_with(PLACEHOLDER_PREFIX)
                && !self.files.iter().any(|f| pattern_matches(p, f))
        })
    }

    /// Paths (relative, sorted, deduplicated) matching any of the patterns. A pattern without
    /// glob characters may also name a directory: every file under it.
    fn resolve(
        &self,
        hat: &str,
        item: &str,
        patterns: Vec<&str>,
    ) -> Result<Vec<String>, Vec<InputError>> {
        let mut errors = Vec::new();
        let mut matched = BTreeSet::new();
        for pattern in patterns {
            let p = Path::new(pattern);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
            {
                errors.push(InputError::Escapes {
                    hat: hat.into(),
                    item: item.into(),
                    pattern: pattern.into(),
                });
                continue;
            }
            let clean = clean_pattern(pattern);
            let glob = match glob(clean) {
                Ok(g) => g,
                Err(e) => {
                    errors.push(InputError::BadGlob {
                        hat: hat.into(),
                        item: item.into(),
                        pattern: pattern.into(),
                        message: e.kind().to_string(),
                    });
                    continue;
                }
            };
            let dir_prefix = format!("{clean}/");
            let before = matched.len();
            let errors_before = errors.len();
            for f in &self.files {
                if glob.is_match(f) || f.starts_with(&dir_prefix) {
                    // A symlink inside the workspace may still point outside it.
                    match crate::safe_fs::within(&self.root.join(f), &self.root) {
                        Ok(_) => {
                            matched.insert(f.clone());
                        }
                        _ => errors.push(InputError::Escapes {
                            hat: hat.into(),
                            item: item.into(),
                            pattern: f.clone(),
                        }),
                    }
                }
            }
            if matched.len() == before && errors.len() == errors_before {
                errors.push(InputError::NoMatch {
                    hat: hat.into(),
                    item: item.into(),
                    pattern: pattern.into(),
                    workspace: self.root.display().to_string(),
                });
            }
        }
        if errors.is_empty() {
            Ok(matched.into_iter().collect())
        } else {
            Err(errors)
        }
    }
}

/// A dbt project's `target/` directory (beside its `dbt_project.yml`): walked for its
/// `run_results.json` only, the evidence of the project's last tests.
pub fn is_dbt_target(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == "target")
        && dir
            .parent()
            .is_some_and(|p| p.join("dbt_project.yml").is_file())
}

fn rel_to_slash(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Warnings listed one by one per Reads item; the rest are counted.
pub const MAX_LISTED_NOTES: usize = 20;

/// The largest input file hatrack reads at all (checked on its size before reading): only
/// `max_file_bytes` of a file is ever quoted, and the rest is only hashed.
pub const MAX_INPUT_FILE_BYTES: u64 = 64 << 20;

/// Reads one input: `Ok(Err(why))` when it is skipped (binary, not UTF-8, too large);
/// otherwise the file and how many redacted passages it holds. Memory stays bounded whatever
/// the file's size: at most `max_file_bytes` (+ one character) is kept, the rest is streamed
/// through the hash and the UTF-8 check. Quoted text is capped at the per-file limit and at
/// what is left of the step's budget.
///
/// With `redact` patterns, one order everywhere: the whole file (at most
/// [`MAX_INPUT_FILE_BYTES`]) is redacted first, then cut, and its size and sha256 are those
/// of the redacted text. That is what the run's snapshot keeps (scrubbed), so a replay
/// without the workspace quotes the same text with the same "showing N of M bytes".
fn read_input(
    workspace: &Path,
    path: &str,
    limits: &LimitsSection,
    budget: &mut usize,
    redact: &[regex::Regex],
) -> Result<Result<(InputFile, usize), String>, InputError> {
    let full = workspace.join(path);
    let (file, size) = match open_input(workspace, &full)? {
        Ok(opened) => opened,
        Err(why) => return Ok(Err(why)),
    };
    let keep = if redact.is_empty() {
        limits.max_file_bytes.saturating_add(4)
    } else {
        usize::MAX
    };
    let read = match read_text(file, size, keep, &full)? {
        Ok(read) => read,
        Err(why) => return Ok(Err(why)),
    };
    let (read, redacted) = redact_text(read, redact);
    Ok(Ok((quote(path, read, limits, budget), redacted)))
}

/// An I/O failure on an input, named by its full path.
fn io_error(full: &Path, e: std::io::Error) -> InputError {
    InputError::Io {
        path: full.display().to_string(),
        message: e.to_string(),
    }
}

/// Opens an input: a regular file inside the workspace, or nothing — never a FIFO (it would
/// block), a device, or a link out of the workspace — and at most [`MAX_INPUT_FILE_BYTES`].
/// `Ok(Err(why))` when it is skipped; otherwise the file and its size.
fn open_input(
    workspace: &Path,
    full: &Path,
) -> Result<Result<(std::fs::File, u64), String>, InputError> {
    // Any size here: the size is checked below, to skip the file rather than fail.
    let any_size = crate::safe_fs::Kind {
        what: "an input",
        max: u64::MAX,
    };
    let (file, size) = match crate::safe_fs::open_bounded(
        full,
        any_size,
        crate::safe_fs::Links::Within(workspace),
    ) {
        Ok(opened) => opened,
        Err(e) => match e.why {
            crate::safe_fs::ReadWhy::Io(e) => return Err(io_error(full, e)),
            why => return Ok(Err(why.to_string())),
        },
    };
    if size > MAX_INPUT_FILE_BYTES {
        return Ok(Err(format!(
            "is {size} bytes, larger than the {} MiB hatrack reads",
            MAX_INPUT_FILE_BYTES >> 20
        )));
    }
    Ok(Ok((file, size)))
}

/// An input's text: what is kept of it, and the size and sha256 of the whole file (of the
/// redacted text, once [`redact_text`] has run).
struct InputText {
    text: String,
    bytes: u64,
    sha256: String,
}

/// Streams `file` through the hash and the UTF-8 check, keeping at most its first `keep`
/// bytes, so memory stays bounded whatever the file's size. `Ok(Err(why))` when it is
/// skipped: binary, not UTF-8, or grown beyond [`MAX_INPUT_FILE_BYTES`] since it was opened.
fn read_text(
    mut file: std::fs::File,
    size: u64,
    keep: usize,
    full: &Path,
) -> Result<Result<InputText, String>, InputError> {
    use std::io::Read;
    let mut kept: Vec<u8> = Vec::with_capacity(keep.min(size as usize));
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(full, e)),
        };
        let data = &chunk[..n];
        if data.contains(&0) {
            return Ok(Err("is binary".into()));
        }
        total += n as u64;
        if total > MAX_INPUT_FILE_BYTES {
            return Ok(Err(format!(
                "grew beyond the {} MiB hatrack reads",
                MAX_INPUT_FILE_BYTES >> 20
            )));
        }
        hasher.update(data);
        // UTF-8 check across chunk boundaries: an incomplete character is carried over.
        carry.extend_from_slice(data);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_none() => {
                carry.drain(..e.valid_up_to());
            }
            Err(_) => return Ok(Err("is not UTF-8".into())),
        }
        if kept.len() < keep {
            let take = (keep - kept.len()).min(n);
            kept.extend_from_slice(&data[..take]);
        }
    }
    if !carry.is_empty() {
        return Ok(Err("is not UTF-8".into()));
    }
    Ok(Ok(InputText {
        text: whole_characters(kept),
        bytes: total,
        sha256: hex::encode(hasher.finalize()),
    }))
}

/// The kept bytes (valid UTF-8 but perhaps for their end) as text: the kept prefix may end
/// inside a character when the file is longer, and that last part is dropped.
fn whole_characters(kept: Vec<u8>) -> String {
    match String::from_utf8(kept) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

/// With `redact` patterns, the whole text redacted (before any cut), its size and sha256
/// those of the redacted text, and how many redacted passages it holds; without, the text
/// as it is and 0.
fn redact_text(read: InputText, redact: &[regex::Regex]) -> (InputText, usize) {
    if redact.is_empty() {
        return (read, 0);
    }
    let mut text = read.text;
    for pattern in redact {
        if pattern.find_iter(&text).any(|m| !m.is_empty()) {
            text = pattern
                .replace_all(&text, crate::secrets::REDACTED)
                .into_owned();
        }
    }
    // Counted in the redacted text, so a replay from the (already redacted) snapshot
    // counts the same.
    let redacted = text.matches(crate::secrets::REDACTED).count();
    let bytes = text.len() as u64;
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    (
        InputText {
            text,
            bytes,
            sha256,
        },
        redacted,
    )
}

/// The input as the prompt quotes it: escaped as data, cut at the per-file cap and at what
/// is left of the step's `budget`, which the quoted text then uses up.
fn quote(path: &str, read: InputText, limits: &LimitsSection, budget: &mut usize) -> InputFile {
    // Inputs are data: nothing in them may spell hatrack's framing or notes (ordinary text
    // is left as it is).
    let text = crate::verdict::markers::escape_data(&read.text).into_owned();
    let file_bytes = read.bytes;
    let whole = file_bytes as usize <= limits.max_file_bytes;
    let total = if whole {
        text.len()
    } else {
        file_bytes as usize
    };
    let cap = limits.max_file_bytes.min(*budget);
    let (content, truncated) = truncate_of(&text, total, cap);
    *budget = budget.saturating_sub(content.len());
    let shown_bytes = if truncated {
        let mut end = cap.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        end as u64
    } else {
        file_bytes
    };
    InputFile {
        path: path.to_string(),
        content,
        bytes: file_bytes,
        sha256: read.sha256,
        truncated,
        shown_bytes,
    }
}

/// Cuts `text` to at most `cap` bytes on a character boundary, with a visible marker.
pub fn truncate(text: &str, cap: usize) -> (String, bool) {
    truncate_of(text, text.len(), cap)
}

/// [`truncate`] for `text` that is the start of something `total` bytes long.
fn truncate_of(text: &str, total: usize, cap: usize) -> (String, bool) {
    if text.len() <= cap && total <= cap {
        return (text.to_string(), false);
    }
    let mut end = cap.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (
        format!(
            "{}\n{}",
            &text[..end],
            crate::verdict::markers::truncated(end, total)
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_split_into_items() {
        assert_eq!(
            split_reads("Validation report, transformation code, extraction jobs, infrastructure requirements from the intent."),
            vec!["Validation report", "transformation code", "extraction jobs", "infrastructure requirements from the intent"]
        );
        assert_eq!(split_reads("A; B, and C."), vec!["A", "B", "C"]);
    }

    #[test]
    fn an_item_naming_a_hat_binds_to_it() {
        let hats = ["pipeline-engineer", "sre"];
        assert_eq!(
            named_hat("Pipeline engineer's deployment", hats.iter().copied()),
            Some("pipeline-engineer")
        );
        assert_eq!(
            named_hat("Pipeline engineer’s deployment", hats.iter().copied()),
            Some("pipeline-engineer")
        );
        assert_eq!(named_hat("validation report", hats.iter().copied()), None);
    }

    #[test]
    fn run_and_batch_directories_are_never_bound() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (d, files) in [
            ("transcripts/old", vec!["run.json", "exchanges.jsonl"]),
            ("batch", vec!["batch.json"]),
            ("docs", vec![]),
        ] {
            std::fs::create_dir_all(root.join(d).join("artifacts/sre")).unwrap();
            std::fs::write(root.join(d).join("artifacts/sre/plan.md"), "x\n").unwrap();
            for f in files {
                std::fs::write(root.join(d).join(f), "{}\n").unwrap();
            }
        }
        assert_eq!(
            workspace_files(root).unwrap(),
            vec!["docs/artifacts/sre/plan.md".to_string()]
        );
    }

    #[test]
    fn of_a_dbt_projects_target_only_run_results_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crate::safe_fs::write_test_files(
            root,
            &[
                "dbt/dbt_project.yml",
                "dbt/target/run_results.json",
                "dbt/target/manifest.json",
                "dbt/target/run/x.sql",
                "target/run_results.json",
            ],
            "{}\n",
        );
        assert_eq!(
            workspace_files(root).unwrap(),
            ["dbt/dbt_project.yml", "dbt/target/run_results.json"]
        );
    }

    #[test]
    fn truncation_is_visible_and_respects_characters() {
        let (cut, truncated) = truncate("ab—cd", 3);
        assert!(truncated);
        assert!(
            cut.starts_with("ab\n[truncated by hatrack: showing 2 of 7 bytes]"),
            "{cut}"
        );
        assert_eq!(truncate("abc", 3), ("abc".to_string(), false));
    }
}
