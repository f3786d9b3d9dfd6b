//! Confined writes: the one place where hatrack creates or replaces files inside a
//! directory it owns (a run directory, a `--out` directory).
//!
//! A run directory is data that may come from anyone (a transcript committed in a pull
//! request), so nothing under it is trusted to be what its name says:
//! - every path is relative, made of plain components (no `..`, no root);
//! - every existing component between the root and the file is checked with
//!   `symlink_metadata`: a symlink (or a file where a directory is needed) is refused, never
//!   followed;
//! - directories are created one level at a time, and re-checked;
//! - a file is written to a fresh temporary file (`create_new` + `O_NOFOLLOW`) in the same
//!   directory and renamed over the target, so a reader sees the old file or the new one,
//!   and a symlink sitting at the target's name is replaced, not written through;
//! - a file opened for appending (the transcript) is opened with `O_NOFOLLOW` and must be a
//!   regular file with no other hard link (checked before it is opened, so truncating cannot
//!   empty a file shared with another name); files are read the same way
//!   ([`open_read_no_follow`]: no link, no FIFO or device).
//!
//! The root itself is the user's choice (`--transcript DIR`) and may be a symlink. Names from
//! untrusted sources are shown in messages through [`printable_name`] / [`escaped_excerpt`]: short,
//! with control and bidi characters escaped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How much of an untrusted name a message quotes, in characters.
pub const EXCERPT_CHARS: usize = 60;

/// Characters that make a name lie about itself or break tools: bidi controls (U+202E turns
/// `exe.md` into what reads as `dm.exe`), zero-width and other invisible format characters,
/// line and paragraph separators. (C0/C1 controls are caught by `char::is_control`.)
pub fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A short, printable excerpt of an untrusted string for a warning: at most
/// [`EXCERPT_CHARS`] characters, control and format characters shown as `\u{..}`.
pub fn escaped_excerpt(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == EXCERPT_CHARS {
            out.push_str(&format!("…\" ({} bytes)", text.len()));
            return out;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || is_format_char(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An untrusted name for a message: as it is when short and printable, else [`escaped_excerpt`].
pub fn printable_name(text: &str) -> String {
    if text.chars().count() <= 200 && !text.chars().any(|c| c.is_control() || is_format_char(c)) {
        text.to_string()
    } else {
        escaped_excerpt(text)
    }
}

/// A relative path as `/`-separated text, whatever the platform (`a/b/c.md`; empty for an
/// empty path): how paths are written in reports, run.json, messages and tool answers.
pub fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Why a confined write was refused or failed. Names the path and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{}: refusing to write through a symbolic link ({}); hatrack never follows links inside a run directory — remove the link (or use a fresh --transcript DIR)", .path.display(), .what)]
    Symlink { path: PathBuf, what: String },
    #[error("{}: {what}; remove it or use a fresh --transcript DIR", .path.display())]
    NotWritable { path: PathBuf, what: String },
    #[error("{rel:?} is not a relative path of plain names inside {}", .root.display())]
    BadPath { root: PathBuf, rel: String },
    #[error("writing {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<SafeFsError> for crate::Error {
    fn from(e: SafeFsError) -> crate::Error {
        match e {
            SafeFsError::Io { path, source } => {
                crate::Error::io(format!("writing {}", path.display()), source)
            }
            other => crate::Error::usage(other.to_string()),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SafeFsError + '_ {
    move |source| SafeFsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The plain components of `rel`, or an error.
fn components<'a>(root: &Path, rel: &'a str) -> Result<Vec<&'a str>, SafeFsError> {
    let bad = || SafeFsError::BadPath {
        root: root.to_path_buf(),
        rel: rel.to_string(),
    };
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(bad)?),
            _ => return Err(bad()),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts)
}

/// Makes sure `dir` (below the root) is a real directory, creating it if missing.
fn ensure_dir(dir: &Path) -> Result<(), SafeFsError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(SafeFsError::Symlink {
            path: dir.to_path_buf(),
            what: "a directory component is a link".into(),
        }),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SafeFsError::NotWritable {
            path: dir.to_path_buf(),
            what: "is a file where a directory is needed".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(dir)(e)),
            }
            // Re-check: something may have raced us into place.
            match fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() && !m.file_type().is_symlink() => Ok(()),
                Ok(_) => Err(SafeFsError::Symlink {
                    path: dir.to_path_buf(),
                    what: "a directory component was replaced by a link".into(),
                }),
                Err(e) => Err(io_err(dir)(e)),
            }
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Creates `root` (and its parents) if missing. The root is the user's choice and may be a
/// link to a directory.
pub fn create_root(root: &Path) -> Result<(), SafeFsError> {
    fs::create_dir_all(root).map_err(io_err(root))
}

/// Checks every component of `rel` below `root` and creates the missing directories; returns
/// the full path of the file (which is not created).
pub fn prepare(root: &Path, rel: &str) -> Result<PathBuf, SafeFsError> {
    let parts = components(root, rel)?;
    let mut dir = root.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        ensure_dir(&dir)?;
    }
    let path = dir.join(parts[parts.len() - 1]);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => Ok(path), // replaced by the rename, never followed
        Ok(m) if m.is_dir() => Err(SafeFsError::NotWritable {
            path,
            what: "is a directory where a file is to be written".into(),
        }),
        _ => Ok(path),
    }
}

fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Opens without blocking: opening a FIFO for reading waits for a writer, which may never
/// come. (Reads from a regular file are not affected.)
fn no_block(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options
}

/// Opens `path` for reading without following a link at its last component; anything but a
/// regular file (a FIFO would block the reader for ever, a device never ends) is refused.
pub fn open_read_no_follow(path: &Path) -> std::io::Result<File> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.is_file() && !meta.file_type().is_symlink() {
            return Err(std::io::Error::other("not a regular file"));
        }
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

// ---------- the one bounded reader ----------

/// What the bounded reader reads: how messages name it and the most it reads of one.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub what: &'static str,
    pub max: u64,
}

impl Kind {
    /// `hatrack.toml`, a policy file.
    pub const CONFIG: Kind = Kind {
        what: "a hatrack.toml or policy file",
        max: 1 << 20,
    };
    /// `--prices` (LiteLLM's whole table is a few MiB).
    pub const PRICES: Kind = Kind {
        what: "a prices file",
        max: 32 << 20,
    };
    /// `--manifest`: one workspace per line.
    pub const MANIFEST: Kind = Kind {
        what: "a batch manifest",
        max: 4 << 20,
    };
    /// A stage's STAGE.md, hats, review agents.
    pub const DEFINITION: Kind = Kind {
        what: "a stage definition file",
        max: 4 << 20,
    };
    /// A prompt template (`--prompts DIR`).
    pub const TEMPLATE: Kind = Kind {
        what: "a prompt template",
        max: 1 << 20,
    };
    /// A case's `labels.toml` of a labelled suite.
    pub const LABELS: Kind = Kind {
        what: "a labels.toml",
        max: 1 << 20,
    };
    /// A report or an artifact a run directory holds (read by `diff`, `render`, the step
    /// summary).
    pub const RUN_FILE: Kind = Kind {
        what: "a file of a run directory",
        max: 64 << 20,
    };
}

/// Where a link in a file's path may lead.
#[derive(Debug, Clone, Copy)]
pub enum Links<'a> {
    /// Nowhere: the file itself must not be a link (files inside a run directory).
    Never,
    /// Only to a file inside this directory, whatever component is the link (a reviewed
    /// workspace's files: a pull request must not point hatrack at a file of the machine).
    Within(&'a Path),
    /// A file named on the command line: a link at its name may lead only inside the
    /// directory it is named in (so a link committed in a reviewed repository cannot point
    /// a flag at a secret elsewhere on the runner).
    SameDir,
    /// Anywhere: the user's own file (a mounted signing key).
    Follow,
}

/// Why the bounded reader refused a file, or could not read it.
#[derive(Debug, thiserror::Error)]
pub enum ReadWhy {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("not a regular file ({0}); hatrack reads only regular files")]
    NotRegular(&'static str),
    #[error("is {len} bytes, larger than {}, the most hatrack reads of {what}", human(*.max))]
    TooLarge {
        len: u64,
        max: u64,
        what: &'static str,
    },
    #[error("a symbolic link, which hatrack never follows here; replace it with the file itself")]
    Link,
    #[error("a symbolic link to {} outside {}, which hatrack never follows (a reviewed repository could point it at a file of the machine); pass or commit the file itself", .target.display(), .root.display())]
    Outside { target: PathBuf, root: PathBuf },
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// A file the bounded reader refused or could not read, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", .path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub why: ReadWhy,
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(&self.why, ReadWhy::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

impl From<ReadError> for crate::Error {
    fn from(e: ReadError) -> crate::Error {
        match e.why {
            ReadWhy::Io(source) => {
                crate::Error::io(format!("reading {}", e.path.display()), source)
            }
            _ => crate::Error::usage(e.to_string()),
        }
    }
}

/// `1 MiB`, `4 KiB`, `100 bytes`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn file_kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a plain file"
}

/// The real path of `path` when it must stay inside `root`.
pub fn within(path: &Path, root: &Path) -> Result<PathBuf, ReadWhy> {
    let real_root = real_dir(root).map_err(ReadWhy::Io)?;
    if let Some(real) = plain_below(path, root, &real_root) {
        return Ok(real);
    }
    let real = path.canonicalize().map_err(ReadWhy::Io)?;
    if real.starts_with(&real_root) {
        Ok(real)
    } else {
        Err(ReadWhy::Outside {
            target: real,
            root: real_root,
        })
    }
}

/// `dir`'s real path, resolved once per process. A run reads many files below the same
/// workspace, and resolving a relative path costs a `getcwd` and a `readlink` per component
/// (hatrack never changes its working directory, so a relative key stays valid).
fn real_dir(dir: &Path) -> std::io::Result<PathBuf> {
    static REAL: crate::memo::Memo<PathBuf> = crate::memo::Memo::new(64);
    // Debug quotes a path without loss (bytes that are not UTF-8 are escaped).
    REAL.get_or_try(&format!("{dir:?}"), || dir.canonicalize())
}

/// `path`'s real path when it is `root` and plain names below it (no `.` or `..`), none of
/// them a link: the real root and those names, at one `lstat` per name. `None` when a link
/// (or anything else) needs the full resolution.
fn plain_below(path: &Path, root: &Path, real_root: &Path) -> Option<PathBuf> {
    let below = path.strip_prefix(root).ok()?;
    let mut real = real_root.to_path_buf();
    for part in below.components() {
        let Component::Normal(name) = part else {
            return None;
        };
        real.push(name);
        if fs::symlink_metadata(&real).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    Some(real)
}

/// Opens a file for a bounded read: a regular file only (a FIFO is refused without waiting
/// for a writer, a device is never opened), links as `links` allows, its size checked
/// against `kind` before anything is read. Returns the file and its size.
pub fn open_bounded(path: &Path, kind: Kind, links: Links) -> Result<(File, u64), ReadError> {
    let fail = |why| ReadError {
        path: path.to_path_buf(),
        why,
    };
    let meta = fs::symlink_metadata(path).map_err(|e| fail(ReadWhy::Io(e)))?;
    let is_link = meta.file_type().is_symlink();
    let target = match links {
        Links::Never if is_link => return Err(fail(ReadWhy::Link)),
        Links::Never | Links::Follow => path.to_path_buf(),
        Links::Within(root) => within(path, root).map_err(fail)?,
        Links::SameDir if is_link => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            within(path, parent).map_err(fail)?
        }
        Links::SameDir => path.to_path_buf(),
    };
    // Checked before opening: opening a device can have effects of its own.
    let meta = fs::metadata(&target).map_err(|e| fail(ReadWhy::Io(e)))?;
    if !meta.is_file() {
        return Err(fail(ReadWhy::NotRegular(file_kind(meta.file_type()))));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    no_block(&mut options);
    if matches!(links, Links::Never | Links::Within(_)) {
        no_follow(&mut options);
    }
    let file = options.open(&target).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return fail(ReadWhy::Link);
        }
        fail(ReadWhy::Io(e))
    })?;
    // Again on what was opened: the name may have been swapped in between.
    let meta = file.metadata().map_err(|e| fail(ReadWhy::Io(e)))?;
    if !meta.is_file() {
        return Err(fail(ReadWhy::NotRegular(file_kind(meta.file_type()))));
    }
    if meta.len() > kind.max {
        return Err(fail(ReadWhy::TooLarge {
            len: meta.len(),
            max: kind.max,
            what: kind.what,
        }));
    }
    Ok((file, meta.len()))
}

/// A whole file through [`open_bounded`]: never more than `kind.max` bytes read, even from a
/// file that grows while it is read.
pub fn read_bounded(path: &Path, kind: Kind, links: Links) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let (file, len) = open_bounded(path, kind, links)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(kind.max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError {
            path: path.to_path_buf(),
            why: ReadWhy::Io(e),
        })?;
    if bytes.len() as u64 > kind.max {
        return Err(ReadError {
            path: path.to_path_buf(),
            why: ReadWhy::TooLarge {
                len: bytes.len() as u64,
                max: kind.max,
                what: kind.what,
            },
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_string(path: &Path, kind: Kind, links: Links) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, kind, links)?).map_err(|_| ReadError {
        path: path.to_path_buf(),
        why: ReadWhy::NotUtf8,
    })
}

/// Writes `bytes` to `root/rel` through a temporary file and a rename. With `sync`, the
/// temporary file is fsync'd before the rename (reports: complete or absent after a power
/// loss).
pub fn write_file(
    root: &Path,
    rel: &str,
    bytes: &[u8],
    sync: bool,
) -> Result<PathBuf, SafeFsError> {
    write_via_temp(root, rel, sync, true, &mut |file| file.write_all(bytes))
}

/// [`write_file`] for a file written piece by piece (a snapshot's pack): `fill` writes the
/// contents into the temporary file, which is put in place only when it succeeds.
pub fn write_file_with(
    root: &Path,
    rel: &str,
    sync: bool,
    fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
) -> Result<PathBuf, SafeFsError> {
    write_via_temp(root, rel, sync, true, fill)
}

/// [`write_file`] for a file that must not exist yet: anything at the name (a file, a link,
/// even a dangling one) is left alone and the write fails with `AlreadyExists`. The file
/// appears whole, by a hard link from the temporary file, which never follows a link.
pub fn write_new_file(root: &Path, rel: &str, bytes: &[u8]) -> Result<PathBuf, SafeFsError> {
    write_via_temp(root, rel, true, false, &mut |file| file.write_all(bytes))
}

fn write_via_temp(
    root: &Path,
    rel: &str,
    sync: bool,
    replace: bool,
    fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
) -> Result<PathBuf, SafeFsError> {
    stage(root, rel, sync, fill)?.put(replace)
}

/// A file written (with `sync`, fsync'd) under a temporary name beside its target and not
/// yet in place: [`Staged::place`] renames it over the target; dropped unplaced, it is
/// removed. Lets a writer of several files (the reports) write each as soon as it is ready
/// and touch no target until every one of them was written and synced.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    placed: bool,
}

/// [`write_file`] up to the rename: `bytes` in a temporary file beside `root/rel`, not yet
/// fsync'd ([`Staged::sync`]).
pub fn stage_file(root: &Path, rel: &str, bytes: &[u8]) -> Result<Staged, SafeFsError> {
    stage(root, rel, false, &mut |file| file.write_all(bytes))
}

fn stage(
    root: &Path,
    rel: &str,
    sync: bool,
    fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
) -> Result<Staged, SafeFsError> {
    let path = prepare(root, rel)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and per call, so two writers never share a temporary file. Kept
    // short: the target's name may already be near the 255-byte limit.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let short: String = name.chars().take(32).collect();
    let mut tmp = PathBuf::new();
    let mut opened = Err(std::io::Error::other("no temporary name was free"));
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        tmp = path.with_file_name(format!(".{short}.{}-{n}.tmp", std::process::id()));
        opened = no_follow(OpenOptions::new().write(true).create_new(true)).open(&tmp);
        // Something already has that name (a file a transcript brought along): another name.
        match &opened {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            _ => break,
        }
    }
    let file = opened.map_err(|source| SafeFsError::Io {
        path: path.clone(),
        source,
    })?;
    // From here on the temporary file is ours: dropping `staged` on an error removes it.
    let mut staged = Staged {
        tmp,
        path,
        file,
        placed: false,
    };
    fill(&mut staged.file).map_err(|source| SafeFsError::Io {
        path: staged.path.clone(),
        source,
    })?;
    if sync {
        staged.sync()?;
    }
    Ok(staged)
}

impl Staged {
    /// Makes the written contents durable (fsync).
    pub fn sync(&self) -> Result<(), SafeFsError> {
        self.file.sync_all().map_err(|source| SafeFsError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Renames the file over its target (the old file, if any, is replaced whole).
    pub fn place(self) -> Result<PathBuf, SafeFsError> {
        self.put(true)
    }

    /// Puts the file in place: over the target (`replace`), or only where nothing is (a hard
    /// link, which never follows a link; `AlreadyExists` otherwise).
    fn put(mut self, replace: bool) -> Result<PathBuf, SafeFsError> {
        let (tmp, path) = (&self.tmp, &self.path);
        let placed = if replace {
            fs::rename(tmp, path)
        } else {
            match fs::hard_link(tmp, path) {
                Ok(()) => fs::remove_file(tmp),
                // A file system without hard links: the name checked free, then renamed.
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    match fs::symlink_metadata(path) {
                        Err(m) if m.kind() == std::io::ErrorKind::NotFound => fs::rename(tmp, path),
                        _ => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        };
        match placed {
            Ok(()) => {
                self.placed = true;
                Ok(self.path.clone())
            }
            Err(source) => Err(SafeFsError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Opens `root/rel` for appending (created if missing; emptied first with `truncate`),
/// refusing a link or anything but a regular file.
pub fn open_append(root: &Path, rel: &str, truncate: bool) -> Result<File, SafeFsError> {
    let path = prepare(root, rel)?;
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.file_type().is_symlink() {
            return Err(SafeFsError::Symlink {
                path,
                what: "the file itself is a link".into(),
            });
        }
        if !meta.is_file() {
            return Err(SafeFsError::NotWritable {
                path,
                what: "is not a regular file".into(),
            });
        }
        // Checked before opening: `truncate` must not empty a file shared with another name.
        check_links(&path, &meta)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).read(true);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    // Never waits: a FIFO put at the name after the check would block an open for writing.
    no_block(&mut options);
    let file = no_follow(&mut options).open(&path).map_err(|e| {
        // ELOOP: a link appeared at the name between the check and the open.
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return SafeFsError::Symlink {
                path: path.clone(),
                what: "the file itself is a link".into(),
            };
        }
        io_err(&path)(e)
    })?;
    let meta = file.metadata().map_err(io_err(&path))?;
    if !meta.is_file() {
        return Err(SafeFsError::NotWritable {
            path,
            what: "is not a regular file".into(),
        });
    }
    check_links(&path, &meta)?;
    Ok(file)
}

/// A hard link shares its contents with another name, possibly outside the directory:
/// writing in place would change that file too.
fn check_links(path: &Path, meta: &fs::Metadata) -> Result<(), SafeFsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(SafeFsError::NotWritable {
                path: path.to_path_buf(),
                what: format!(
                    "has {} hard links, so writing it in place would also change another file",
                    meta.nlink()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// The root and the relative name of a path whose parent is the root (`DIR/exchanges.jsonl`).
pub fn split(path: &Path) -> (PathBuf, String) {
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (root, name)
}

/// Tests' fixtures: each of `files` (relative, `/`-separated) written under `root` with
/// `content`, its directories made first.
#[cfg(test)]
pub(crate) fn write_test_files(root: &Path, files: &[&str], content: &str) {
    for f in files {
        fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        fs::write(root.join(f), content).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace's file resolves to its real path below the workspace's real path, however
    /// the workspace was named; a link (file or directory) is followed only to a file inside.
    #[cfg(unix)]
    #[test]
    fn within_follows_links_only_inside_the_root() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        let ws = dir.path().join("ws");
        fs::create_dir_all(ws.join("dags")).unwrap();
        fs::write(ws.join("dags/a.py"), "a").unwrap();
        fs::write(dir.path().join("secret"), "s").unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        fs::write(dir.path().join("elsewhere/b.py"), "b").unwrap();
        symlink(ws.join("dags/a.py"), ws.join("inside.py")).unwrap();
        symlink(dir.path().join("secret"), ws.join("out.py")).unwrap();
        symlink(dir.path().join("elsewhere"), ws.join("linked")).unwrap();
        // The workspace named through a link of its own: still its real path.
        symlink(&ws, dir.path().join("alias")).unwrap();

        for root in [ws.clone(), dir.path().join("alias")] {
            let got = within(&root.join("dags/a.py"), &root).unwrap();
            assert_eq!(got, real.join("ws/dags/a.py"));
            let got = within(&root.join("inside.py"), &root).unwrap();
            assert_eq!(got, real.join("ws/dags/a.py"));
            for escape in ["out.py", "linked/b.py"] {
                let err = within(&root.join(escape), &root).unwrap_err();
                assert!(matches!(err, ReadWhy::Outside { .. }), "{escape}: {err}");
            }
            assert!(within(&root.join("dags/../../secret"), &root).is_err());
            assert!(matches!(
                within(&root.join("missing.py"), &root),
                Err(ReadWhy::Io(_))
            ));
        }
    }

    #[test]
    fn writes_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        fs::create_dir(&root).unwrap();
        let outside = dir.path().join("sentinel");
        fs::write(&outside, "keep").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("report.json")).unwrap();
            std::os::unix::fs::symlink(dir.path(), root.join("artifacts")).unwrap();
        }
        // A link at the file's name is replaced, not written through.
        write_file(&root, "report.json", b"new", false).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(fs::read_to_string(root.join("report.json")).unwrap(), "new");
        // A link as a directory component is refused.
        let err = write_file(&root, "artifacts/sentinel", b"x", false).unwrap_err();
        assert!(matches!(err, SafeFsError::Symlink { .. }), "{err}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        // Appending refuses a link.
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, root.join("exchanges.jsonl")).unwrap();
        let err = open_append(&root, "exchanges.jsonl", false).unwrap_err();
        assert!(matches!(err, SafeFsError::Symlink { .. }), "{err}");
        assert!(write_file(&root, "../x", b"x", false).is_err());
        assert!(write_file(&root, "/x", b"x", false).is_err());
    }
}
