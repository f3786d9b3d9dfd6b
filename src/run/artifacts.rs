//! Writing what a hat produced. Paths come from a model, so they are untrusted. They are
//! validated when the answer is accepted ([`accept`]), so a bad name is an answer defect —
//! the artifact is dropped with a warning in the report — and never an I/O failure later:
//! replay and `--resume` re-accept the recorded answer through the same checks and behave
//! the same. Accepted artifacts are written only under `<run>/artifacts/<hat>/`, through
//! [`crate::safe_fs`] (no symlink followed, temporary file + rename).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::safe_fs::escaped_excerpt;
pub use crate::safe_fs::is_format_char;

/// The longest name of one path component, in bytes (what common file systems allow).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The longest artifact path (relative, inside `artifacts/<hat>/`), in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The most artifacts one hat may produce; the rest are dropped with a warning.
pub const MAX_ARTIFACTS_PER_HAT: usize = 1000;
/// Refusal warnings listed one by one per hat; the rest are counted.
pub const MAX_LISTED_REFUSALS: usize = 20;

/// An artifact accepted for writing.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// `artifacts/<hat>/<path>`: how reports and later prompts name it.
    pub name: String,
    pub content: String,
}

/// An artifact as written: its name, and the size and digest of the (scrubbed) bytes on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenArtifact {
    /// Relative to the run directory: `artifacts/<hat>/<path>`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Names Windows reserves whatever the extension (a run directory is portable: it may be
/// checked out there).
fn is_reserved_device(part: &str) -> bool {
    let stem = part
        .split('.')
        .next()
        .unwrap_or(part)
        .trim_end()
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// Why a proposed artifact path was refused; otherwise the clean relative path.
pub fn check_path(path: &str) -> Result<PathBuf, String> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err("the path is empty".into());
    }
    if trimmed.len() > MAX_PATH_BYTES {
        return Err(format!(
            "the path is {} bytes long; at most {MAX_PATH_BYTES} are allowed",
            trimmed.len()
        ));
    }
    if trimmed.contains('\0') || trimmed.contains('\\') {
        return Err("the path contains a NUL or a backslash".into());
    }
    if let Some(c) = trimmed
        .chars()
        .find(|&c| c.is_control() || is_format_char(c))
    {
        return Err(format!(
            "the path contains the control or invisible character U+{:04X}",
            c as u32
        ));
    }
    let p = Path::new(trimmed);
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => {
                let part = part.to_str().unwrap_or_default();
                if part.len() > MAX_COMPONENT_BYTES {
                    return Err(format!(
                        "a path component is {} bytes long; at most {MAX_COMPONENT_BYTES} are allowed",
                        part.len()
                    ));
                }
                if part.ends_with('.') || part.ends_with(' ') || part.starts_with(' ') {
                    return Err(
                        "a path component begins with a space or ends with a dot or a space".into(),
                    );
                }
                if is_reserved_device(part) {
                    return Err(format!("{part:?} is a reserved device name"));
                }
                clean.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute".into()),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("the path names no file".into());
    }
    Ok(clean)
}

/// Validates a hat's proposed artifacts. Returns the accepted ones (first of duplicates
/// wins, sorted by name) and the warnings: one per refusal up to [`MAX_LISTED_REFUSALS`],
/// then one counting the rest. Besides [`check_path`], refused are: a second artifact with
/// the same name, or the same name but for letter case (they would overwrite each other on
/// a case-insensitive file system); one whose path is a directory of another, or under
/// another (`dir` and `dir/inner.md`: a file cannot also be a directory); and those beyond
/// [`MAX_ARTIFACTS_PER_HAT`].
///
/// Paths arrive scrubbed (the caller scrubs them first, so a live run and its replay, which
/// reads the scrubbed record, accept the same names). Two secrets in names scrub to one
/// name (`sk-….md` and `[REDACTED].md`): a name holding `[REDACTED]` that collides with an
/// earlier one is renamed (`[REDACTED]-2.md`) with a warning, never written over it.
pub fn accept(hat: &str, proposed: &[(String, String)]) -> (Vec<Artifact>, Vec<String>) {
    let mut accepted = Accepted::default();
    let mut refusals: Vec<String> = Vec::new();
    for (path, content) in proposed {
        let clean = match check_path(path) {
            Ok(clean) => clean,
            Err(why) => {
                refusals.push(format!(
                    "artifact path {} refused: {why}",
                    escaped_excerpt(path)
                ));
                continue;
            }
        };
        let parts: Vec<String> = clean
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let parts = accepted.apart_from_scrubbed(path, parts, &mut refusals);
        let rel = parts.join("/");
        let folded = rel.to_lowercase();
        let name = format!("artifacts/{hat}/{rel}");
        // The directories it would be in, lowercased.
        let prefixes: Vec<String> = (1..parts.len())
            .map(|n| parts[..n].join("/").to_lowercase())
            .collect();
        if let Some(why) = accepted.refusal(path, &name, &folded, &prefixes) {
            refusals.push(why);
            continue;
        }
        accepted.files.insert(folded);
        accepted.dirs.extend(prefixes);
        accepted.artifacts.push(Artifact {
            name,
            content: content.clone(),
        });
    }
    let warnings = listed_refusals(hat, &refusals);
    // Name order, not answer order: later prompts quote artifacts in this order, and
    // `hatrack render --against` rebuilds it from the files on disk.
    let mut accepted = accepted.artifacts;
    accepted.sort_by(|a, b| a.name.cmp(&b.name));
    (accepted, warnings)
}

/// A hat's artifacts accepted so far, and the relative paths they take, lowercased (on a
/// case-insensitive file system names that differ only in case are one): as files, and as
/// the directories holding them.
#[derive(Default)]
struct Accepted {
    artifacts: Vec<Artifact>,
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl Accepted {
    /// Whether a lowercased relative path is taken, as a file or as a directory.
    fn taken(&self, folded: &str) -> bool {
        self.files.contains(folded) || self.dirs.contains(folded)
    }

    /// `parts`, unless they hold a scrubbed secret and are taken: two secrets can scrub to
    /// one name, and neither may be written over the other, so the later one is renamed to
    /// the first free `-2`, `-3`, … (noted among the `refusals`).
    fn apart_from_scrubbed(
        &self,
        path: &str,
        parts: Vec<String>,
        refusals: &mut Vec<String>,
    ) -> Vec<String> {
        if parts.join("/").contains(crate::secrets::REDACTED)
            && self.taken(&parts.join("/").to_lowercase())
        {
            if let Some(free) = unique_name(&parts, |f| self.taken(f)) {
                refusals.push(format!(
                    "artifact {} holds a scrubbed secret and, scrubbed, is the name of another artifact; it was written as {}",
                    escaped_excerpt(path),
                    escaped_excerpt(&free.join("/"))
                ));
                return free;
            }
        }
        parts
    }

    /// Why an artifact with a valid path is refused next to those accepted before it: the
    /// same name twice, or but for letter case; a directory of another; a path under
    /// another; one beyond [`MAX_ARTIFACTS_PER_HAT`]. `None` when it is accepted.
    fn refusal(&self, path: &str, name: &str, folded: &str, prefixes: &[String]) -> Option<String> {
        if self.artifacts.iter().any(|a| a.name == name) {
            return Some(format!(
                "artifact {} was given twice; the first one was kept",
                escaped_excerpt(path)
            ));
        }
        if self.files.contains(folded) {
            return Some(format!(
                "artifact {} differs from another only in letter case; the first one was kept",
                escaped_excerpt(path)
            ));
        }
        if self.dirs.contains(folded) {
            return Some(format!(
                "artifact {} names a directory that holds other artifacts; it was dropped",
                escaped_excerpt(path)
            ));
        }
        if let Some(p) = prefixes.iter().find(|p| self.files.contains(*p)) {
            return Some(format!(
                "artifact {} would be inside {}, which is an artifact (a file); it was dropped",
                escaped_excerpt(path),
                escaped_excerpt(p)
            ));
        }
        if self.artifacts.len() >= MAX_ARTIFACTS_PER_HAT {
            return Some(format!(
                "artifact {} is beyond the {MAX_ARTIFACTS_PER_HAT} a hat may produce; it was dropped",
                escaped_excerpt(path)
            ));
        }
        None
    }
}

/// The refusals as the report's warnings: the first [`MAX_LISTED_REFUSALS`] one by one, then
/// one counting the rest, so a flood of bad names cannot flood the report.
fn listed_refusals(hat: &str, refusals: &[String]) -> Vec<String> {
    let mut warnings: Vec<String> = refusals
        .iter()
        .take(MAX_LISTED_REFUSALS)
        .map(|r| format!("hat {hat}: {r}"))
        .collect();
    if refusals.len() > MAX_LISTED_REFUSALS {
        warnings.push(format!(
            "hat {hat}: and {} more artifacts refused",
            refusals.len() - MAX_LISTED_REFUSALS
        ));
    }
    warnings
}

/// `parts` with `-2`, `-3`, … put before the extension of its last component, the first that
/// is not `taken` (lowercased) and still a valid name.
fn unique_name(parts: &[String], taken: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let (last, dirs) = parts.split_last()?;
    let (stem, ext) = match last.rfind('.') {
        Some(i) if i > 0 => (&last[..i], &last[i..]),
        _ => (last.as_str(), ""),
    };
    (2..=MAX_ARTIFACTS_PER_HAT + 1).find_map(|n| {
        let mut candidate = dirs.to_vec();
        candidate.push(format!("{stem}-{n}{ext}"));
        let rel = candidate.join("/");
        (!taken(&rel.to_lowercase()) && check_path(&rel).is_ok()).then_some(candidate)
    })
}

/// Writes accepted artifacts under `run_dir` (their names already start with `artifacts/`
/// and were scrubbed before [`accept`] made them unique), passing each content through
/// `scrub`, and says what was written. Every write is confined to the run directory
/// ([`crate::safe_fs::write_file`]): a symlink on the way is an error, never followed.
pub fn write(
    run_dir: &Path,
    artifacts: &[Artifact],
    scrub: &dyn Fn(&str) -> String,
) -> std::io::Result<Vec<WrittenArtifact>> {
    let mut written = Vec::new();
    for a in artifacts {
        let text = scrub(&a.content);
        let name = a.name.clone();
        crate::safe_fs::write_file(run_dir, &name, text.as_bytes(), false).map_err(
            |e| match e {
                crate::safe_fs::SafeFsError::Io { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            },
        )?;
        written.push(WrittenArtifact {
            path: name,
            bytes: text.len() as u64,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_inside_the_run_are_accepted() {
        assert_eq!(
            check_path("./dags/x.py").unwrap(),
            PathBuf::from("dags/x.py")
        );
        assert!(check_path("../x").unwrap_err().contains(".."));
        assert!(check_path("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(check_path("a/../../b").is_err());
        assert!(check_path("").is_err());
        assert!(check_path("C:\\x").is_err());
    }

    #[test]
    fn names_that_break_file_systems_or_lie_are_refused() {
        let long = "a".repeat(MAX_COMPONENT_BYTES + 1);
        assert!(check_path(&long).unwrap_err().contains("255"));
        assert!(check_path(&"a".repeat(MAX_COMPONENT_BYTES)).is_ok());
        let deep = vec!["abcdefgh"; 200].join("/");
        assert!(check_path(&deep).unwrap_err().contains("1024"));
        for bad in [
            "a\nb.md",
            "a\u{1b}[31m.md",
            "report\u{202e}dm.exe",
            "zero\u{200b}width.md",
            "bom\u{feff}.md",
            "tab\there.md",
            "line\u{2028}sep.md",
        ] {
            assert!(check_path(bad).unwrap_err().contains("U+"), "{bad:?}");
        }
        for bad in [
            "dir./x.md",
            "x.md.",
            "a /b",
            "CON",
            "nul.txt",
            "dir/com1.md",
            ".",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in [
            "<path>",
            "notes/ok.md",
            "console.md",
            "a.b/c",
            "ünïcode/ファイル.md",
        ] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn collisions_are_refused_first_one_wins() {
        let p = |v: &[&str]| -> Vec<(String, String)> {
            v.iter().map(|s| (s.to_string(), "x".to_string())).collect()
        };
        // A file and a directory of the same name, in either order.
        let (ok, w) = accept("h", &p(&["dir", "dir/inner.md"]));
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].name, "artifacts/h/dir");
        assert!(w[0].contains("would be inside"), "{w:?}");
        let (ok, w) = accept("h", &p(&["dir/inner.md", "dir"]));
        assert_eq!(ok[0].name, "artifacts/h/dir/inner.md");
        assert!(w[0].contains("directory"), "{w:?}");
        // Letter case, also through directories.
        let (ok, w) = accept("h", &p(&["README.md", "readme.md", "Docs/a", "docs"]));
        assert_eq!(ok.len(), 2, "{ok:?}");
        assert_eq!(w.len(), 2, "{w:?}");
        let (ok, _) = accept("h", &p(&["Docs/a", "docs/b"]));
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn refusal_warnings_are_bounded_and_quote_an_excerpt() {
        let proposed: Vec<(String, String)> = (0..10_000)
            .map(|i| (format!("../{}{i}", "x".repeat(300)), String::new()))
            .collect();
        let (ok, w) = accept("h", &proposed);
        assert!(ok.is_empty());
        assert_eq!(w.len(), MAX_LISTED_REFUSALS + 1);
        assert!(w.last().unwrap().contains("and 9980 more"), "{w:?}");
        assert!(w.iter().all(|m| m.len() < 300), "{}", w[0]);
        assert_eq!(escaped_excerpt("a\u{202e}b\n"), "\"a\\u{202e}b\\u{a}\"");
        let many: Vec<(String, String)> = (0..MAX_ARTIFACTS_PER_HAT + 5)
            .map(|i| (format!("f{i}.md"), String::new()))
            .collect();
        let (ok, w) = accept("h", &many);
        assert_eq!(ok.len(), MAX_ARTIFACTS_PER_HAT);
        assert_eq!(w.len(), 5);
    }

    #[test]
    fn refused_and_duplicate_artifacts_are_reported() {
        let (ok, warnings) = accept(
            "pipeline-engineer",
            &[
                ("dag.py".into(), "a".into()),
                ("../escape.sh".into(), "b".into()),
                ("dag.py".into(), "c".into()),
            ],
        );
        assert_eq!(
            ok,
            vec![Artifact {
                name: "artifacts/pipeline-engineer/dag.py".into(),
                content: "a".into()
            }]
        );
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("refused"));
    }
}
