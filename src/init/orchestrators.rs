//! Dagster and Prefect: the Python that imports them (a definitions module, assets, flows)
//! and their project files (`workspace.yaml`, `dagster.yaml`, `prefect.yaml`).

use super::scan::{join, name, parent, top_dirs, Repo};

/// The most Python files read to find an orchestrator's import.
const MAX_READ_FILES: usize = 4000;

/// Dagster or Prefect code and project files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Orchestrated {
    /// Patterns binding the code: the fewest directories holding it (`dir/**/*.py`), or the
    /// files themselves at the repository's root.
    pub code: Vec<String>,
    /// Project and deployment files.
    pub project: Vec<String>,
    /// The directories holding the code (for telling pipelines apart).
    pub dirs: Vec<String>,
}

/// Whether Python text imports Dagster or Prefect.
pub fn imports_orchestrator(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        ["dagster", "prefect"].iter().any(|m| {
            l.strip_prefix("import ")
                .or_else(|| l.strip_prefix("from "))
                .is_some_and(|rest| {
                    rest.starts_with(m)
                        && rest[m.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| c == '.' || c == ' ' || c == '_' || c == ',')
                })
        })
    })
}

/// Dagster and Prefect in the repository (DAG folders' files are Airflow's, not looked at).
pub fn find(repo: &Repo, dag_dirs: &[String]) -> Orchestrated {
    let in_dags = |f: &str| {
        dag_dirs
            .iter()
            .any(|d| d.is_empty() || f.starts_with(&format!("{d}/")))
    };
    let files: Vec<&String> = repo
        .files
        .iter()
        .filter(|f| f.ends_with(".py") && !in_dags(f))
        .take(MAX_READ_FILES)
        .filter(|f| repo.read(f).is_some_and(|t| imports_orchestrator(&t)))
        .collect();
    let dirs = top_dirs(files.iter().map(|f| parent(f).to_string()).collect());
    let mut code = Vec::new();
    for d in &dirs {
        if d.is_empty() {
            code.extend(
                files
                    .iter()
                    .filter(|f| !f.contains('/'))
                    .map(|f| f.to_string()),
            );
        } else {
            code.push(join(d, "**/*.py"));
        }
    }
    let project = repo
        .files
        .iter()
        .filter(|f| {
            let n = name(f);
            matches!(n, "dagster.yaml" | "dagster_cloud.yaml" | "prefect.yaml")
                || (n == "workspace.yaml" && !files.is_empty())
                || (n == "pyproject.toml"
                    && repo.read(f).is_some_and(|t| t.contains("[tool.dagster]")))
        })
        .cloned()
        .collect();
    Orchestrated {
        code,
        project,
        dirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_recognised_and_lookalikes_are_not() {
        assert!(imports_orchestrator("from dagster import asset\n"));
        assert!(imports_orchestrator("import dagster_dbt\n"));
        assert!(imports_orchestrator("    from prefect.tasks import task\n"));
        assert!(!imports_orchestrator("import prefecture\n"));
        assert!(!imports_orchestrator("# uses dagster\n"));
    }
}
