//! The repository as `init` sees it: its files, relative and sorted, walked once, with the
//! directories that are never inputs left out, and a bounded reader for the few files whose
//! contents decide a layout (`dbt_project.yml`, `airflow.cfg`, headings, imports).

use std::path::{Path, PathBuf};

use super::InitError;
use crate::inputs::is_dbt_target;

/// Directories never walked: build output, vendored packages, virtual environments, caches.
/// `target/` is skipped too, except for a dbt project's `target/run_results.json`.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "target",
    "dbt_packages",
    "dbt_modules",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".terraform",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
];

/// The most bytes of a file read to recognise it.
const MAX_READ: u64 = 256 << 10;

/// A repository (or a directory of one) and its files.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    /// Relative, `/`-separated, sorted.
    pub files: Vec<String>,
}

impl Repo {
    /// Walks `root` once, in lexicographic order.
    pub fn scan(root: &Path) -> Result<Repo, InitError> {
        let root = root.canonicalize().map_err(|e| InitError::Scan {
            path: root.display().to_string(),
            message: format!("cannot open the repository: {e}"),
        })?;
        let walker = walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| kept(e.path(), e.file_type().is_dir()));
        let mut files = Vec::new();
        for entry in walker.flatten() {
            if entry.file_type().is_file() {
                if let Ok(rel) = entry.path().strip_prefix(&root) {
                    files.push(slash(rel));
                }
            }
        }
        files.sort();
        Ok(Repo { root, files })
    }

    /// The part of the repository under `dir` (relative), as a repository of its own.
    pub fn sub(&self, dir: &str) -> Repo {
        if dir.is_empty() {
            return self.clone();
        }
        let prefix = format!("{dir}/");
        Repo {
            root: self.root.join(dir),
            files: self
                .files
                .iter()
                .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
                .collect(),
        }
    }

    pub fn has(&self, file: &str) -> bool {
        self.files
            .binary_search_by(|f| f.as_str().cmp(file))
            .is_ok()
    }

    /// Whether `dir` (relative, `""` for the root) holds any file.
    pub fn has_dir(&self, dir: &str) -> bool {
        dir.is_empty() || self.under(dir).next().is_some()
    }

    /// The files under `dir` (relative, `""` for all).
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.files.iter().filter(move |f| f.starts_with(&prefix))
    }

    /// A file's text, when it is a small UTF-8 regular file inside the repository.
    pub fn read(&self, file: &str) -> Option<String> {
        use crate::safe_fs::{read_bounded_string, Kind, Links};
        let kind = Kind {
            what: "a repository file hatrack init reads",
            max: MAX_READ,
        };
        read_bounded_string(&self.root.join(file), kind, Links::Within(&self.root)).ok()
    }
}

/// Whether the walk enters (or lists) this entry.
fn kept(path: &Path, is_dir: bool) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = path.parent();
    if parent.is_some_and(is_dbt_target) {
        return !is_dir && name == "run_results.json";
    }
    if !is_dir {
        return true;
    }
    if name == "target" && is_dbt_target(path) {
        return true;
    }
    !SKIPPED_DIRS.contains(&name) && !crate::tools::is_run_dir(path)
}

fn slash(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The directory part of a relative path (`""` at the root).
pub fn parent(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(d, _)| d)
}

/// The last component of a relative path.
pub fn name(file: &str) -> &str {
    file.rsplit_once('/').map_or(file, |(_, n)| n)
}

/// `dir/rest`, or `rest` at the root.
pub fn join(dir: &str, rest: &str) -> String {
    match (dir.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{rest}"),
    }
}

/// The fewest directories that hold all of `dirs`: any directory under another is dropped.
pub fn top_dirs(mut dirs: Vec<String>) -> Vec<String> {
    dirs.sort();
    dirs.dedup();
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let covered = out
            .iter()
            .any(|o| o.is_empty() || d == *o || d.starts_with(&format!("{o}/")));
        if !covered {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_dirs_drop_what_another_holds() {
        let dirs = ["k8s/overlays/prod", "k8s", "helm/a", "k8sx"]
            .map(String::from)
            .to_vec();
        assert_eq!(top_dirs(dirs), ["helm/a", "k8s", "k8sx"]);
    }

    #[test]
    fn a_dbt_projects_run_results_is_the_one_file_of_target_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crate::safe_fs::write_test_files(
            root,
            &[
                "dbt/dbt_project.yml",
                "dbt/target/run_results.json",
                "dbt/target/manifest.json",
                "dbt/target/compiled/x.sql",
                "dbt/dbt_packages/p/models/a.sql",
                "target/debug/x",
                "venv/lib/site.py",
            ],
            "x",
        );
        assert_eq!(
            Repo::scan(root).unwrap().files,
            ["dbt/dbt_project.yml", "dbt/target/run_results.json"]
        );
    }
}
