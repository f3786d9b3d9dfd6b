//! Airflow: the DAG folder `airflow.cfg` names (`[core] dags_folder`), else every `dags/`
//! directory that holds Python; the `plugins/` beside it; Astronomer projects
//! (`.astro/config.yaml`, with `include/`, `Dockerfile`, `requirements.txt`,
//! `packages.txt`); `.airflowignore` honoured — a file it excludes is never bound.

use super::scan::{join, name, parent, top_dirs, Repo};

/// One DAG folder and what sits beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct DagFolder {
    /// The folder (relative, `""` when it is the repository itself).
    pub dir: String,
    /// Airflow's home: the folder's parent (where `plugins/` and `include/` live).
    pub home: String,
    /// The DAG files `.airflowignore` lets Airflow parse.
    pub dag_files: Vec<String>,
    /// The Python files it excludes.
    pub ignored: Vec<String>,
}

impl DagFolder {
    /// The pattern that binds its DAGs (written as the files one by one when
    /// `.airflowignore` excludes some: see `Layout::excluded`).
    pub fn patterns(&self) -> Vec<String> {
        vec![join(&self.dir, "**/*.py")]
    }

    /// What runs beside the DAGs: plugins (operators, hooks) and an Astronomer `include/`.
    pub fn helper_patterns(&self) -> Vec<String> {
        ["plugins/**/*.py", "include/**/*.py"]
            .iter()
            .map(|p| join(&self.home, p))
            .collect()
    }

    /// The SQL the DAGs run: templates in the folder and in `include/`.
    pub fn sql_patterns(&self) -> Vec<String> {
        vec![
            join(&self.dir, "**/*.sql"),
            join(&self.home, "include/**/*.sql"),
        ]
    }
}

/// The Astronomer projects: directories holding `.astro/config.yaml`.
pub fn astro_roots(repo: &Repo) -> Vec<String> {
    repo.files
        .iter()
        .filter(|f| f.ends_with(".astro/config.yaml") && name(parent(f)) == ".astro")
        .map(|f| parent(parent(f)).to_string())
        .collect()
}

/// An Astronomer project's deployment files, as patterns.
pub fn astro_patterns(root: &str) -> Vec<String> {
    [
        ".astro/config.yaml",
        "Dockerfile",
        "requirements.txt",
        "packages.txt",
    ]
    .iter()
    .map(|f| join(root, f))
    .collect()
}

/// Every DAG folder, in path order.
pub fn dag_folders(repo: &Repo) -> Vec<DagFolder> {
    let mut dirs: Vec<String> = configured_folders(repo);
    if dirs.is_empty() {
        dirs = repo
            .files
            .iter()
            .filter(|f| f.ends_with(".py"))
            .filter_map(|f| dags_ancestor(f))
            .collect();
    }
    let syntax_glob = repo
        .files
        .iter()
        .filter(|f| name(f) == "airflow.cfg")
        .filter_map(|f| repo.read(f))
        .any(|t| cfg_value(&t, "dag_ignore_file_syntax").is_some_and(|v| v == "glob"));
    top_dirs(dirs)
        .into_iter()
        .map(|dir| folder(repo, dir, syntax_glob))
        .filter(|f| !f.dag_files.is_empty() || !f.ignored.is_empty())
        .collect()
}

/// The outermost ancestor directory of `file` named `dags`, unless it lies in a test suite
/// (`tests/dags/` holds DAG tests, not DAGs).
fn dags_ancestor(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').collect();
    let at = parts[..parts.len() - 1].iter().position(|p| *p == "dags")?;
    if parts[..at].iter().any(|p| matches!(*p, "tests" | "test")) {
        return None;
    }
    Some(parts[..=at].join("/"))
}

/// The folders `airflow.cfg` files name, found in the repository.
fn configured_folders(repo: &Repo) -> Vec<String> {
    repo.files
        .iter()
        .filter(|f| name(f) == "airflow.cfg")
        .filter_map(|cfg| {
            let value = cfg_value(&repo.read(cfg)?, "dags_folder")?;
            resolve_folder(repo, parent(cfg), &value)
        })
        .collect()
}

/// A `dags_folder` value as a directory of the repository: `{AIRFLOW_HOME}/…` and relative
/// paths are taken from the file's directory (then the root); an absolute path (the
/// container's, `/opt/airflow/dags`) by its longest tail that exists here.
pub fn resolve_folder(repo: &Repo, cfg_dir: &str, value: &str) -> Option<String> {
    let value = value
        .trim()
        .trim_start_matches("{AIRFLOW_HOME}")
        .trim_start_matches("${AIRFLOW_HOME}")
        .trim_start_matches("$AIRFLOW_HOME");
    let parts: Vec<&str> = value
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") || parts.is_empty() {
        return None;
    }
    (0..parts.len()).find_map(|skip| {
        let tail = parts[skip..].join("/");
        [join(cfg_dir, &tail), tail]
            .into_iter()
            .find(|d| repo.has_dir(d))
    })
}

/// A key's value in an INI file (`key = value`, any section; `#`/`;` comments).
pub fn cfg_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn folder(repo: &Repo, dir: String, syntax_glob: bool) -> DagFolder {
    let ignores: Vec<(String, Vec<String>)> = repo
        .under(&dir)
        .filter(|f| name(f) == ".airflowignore")
        .map(|f| {
            let lines = repo.read(f).unwrap_or_default();
            (parent(f).to_string(), ignore_lines(&lines))
        })
        .collect();
    let mut dag_files = Vec::new();
    let mut ignored = Vec::new();
    for f in repo.under(&dir).filter(|f| f.ends_with(".py")) {
        let skip = ignores.iter().any(|(base, lines)| {
            let prefix = if base.is_empty() {
                String::new()
            } else {
                format!("{base}/")
            };
            f.strip_prefix(&prefix)
                .is_some_and(|rel| lines.iter().any(|l| ignored_by(l, rel, syntax_glob)))
        });
        if skip {
            ignored.push(f.clone());
        } else {
            dag_files.push(f.clone());
        }
    }
    let home = parent(&dir).to_string();
    let home = if dir.is_empty() { String::new() } else { home };
    DagFolder {
        dir,
        home,
        dag_files,
        ignored,
    }
}

fn ignore_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Whether one `.airflowignore` line excludes `rel` (relative to the file's directory):
/// a regular expression searched in the path (Airflow's default), or with
/// `dag_ignore_file_syntax = glob` a gitignore-style glob. A line that does not compile
/// excludes nothing, as in Airflow.
pub fn ignored_by(line: &str, rel: &str, glob: bool) -> bool {
    if glob {
        let anchored = line.trim_start_matches('/');
        let dir_glob = format!("{}/**", anchored.trim_end_matches('/'));
        let any_depth = format!("**/{anchored}");
        [anchored, dir_glob.as_str(), any_depth.as_str()]
            .iter()
            .any(|p| crate::inputs::pattern_matches(p, rel))
            || (!anchored.contains('/')
                && rel
                    .split('/')
                    .any(|c| crate::inputs::pattern_matches(anchored, c)))
    } else {
        regex::Regex::new(line).is_ok_and(|r| r.is_match(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(files: &[&str]) -> Repo {
        let mut files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        files.sort();
        Repo {
            root: std::path::PathBuf::from("/nowhere"),
            files,
        }
    }

    #[test]
    fn a_container_path_is_found_by_its_tail() {
        let r = repo(&["airflow/airflow.cfg", "airflow/dags/a.py"]);
        assert_eq!(
            resolve_folder(&r, "airflow", "/opt/airflow/dags"),
            Some("airflow/dags".into())
        );
        assert_eq!(
            resolve_folder(&r, "airflow", "{AIRFLOW_HOME}/dags"),
            Some("airflow/dags".into())
        );
        assert_eq!(resolve_folder(&r, "airflow", "/opt/elsewhere"), None);
        assert_eq!(resolve_folder(&r, "airflow", "../dags"), None);
    }

    #[test]
    fn airflowignore_lines_are_regexes_by_default_or_globs() {
        assert!(ignored_by("scratch_.*", "scratch_a.py", false));
        assert!(ignored_by("legacy/", "legacy/old.py", false));
        assert!(!ignored_by("legacy/", "current.py", false));
        assert!(!ignored_by("([", "a.py", false));
        assert!(ignored_by("legacy", "legacy/old.py", true));
        assert!(ignored_by("*_test.py", "sub/a_test.py", true));
        assert!(!ignored_by("*_test.py", "a.py", true));
    }

    #[test]
    fn dag_folders_are_found_anywhere_and_ignored_files_listed() {
        let r = repo(&[
            "orchestration/dags/a.py",
            "orchestration/dags/sub/b.py",
            "orchestration/plugins/op.py",
            "src/dags_helper.py",
            "tests/dags/test_dag_integrity.py",
        ]);
        let f = dag_folders(&r);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dir, "orchestration/dags");
        assert_eq!(f[0].home, "orchestration");
        assert_eq!(f[0].patterns(), ["orchestration/dags/**/*.py"]);
    }
}
