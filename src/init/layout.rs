//! What one workspace holds, ecosystem by ecosystem: the detectors' findings put together.

use super::airflow::{self, DagFolder};
use super::dbt::{self, DbtProject};
use super::orchestrators::{self, Orchestrated};
use super::scan::Repo;
use super::{docs, infra};

/// The layouts found in one workspace.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub dbt: Vec<DbtProject>,
    pub dags: Vec<DagFolder>,
    /// Astronomer projects' directories.
    pub astro: Vec<String>,
    pub orchestrated: Orchestrated,
    /// Deployment and infrastructure patterns.
    pub infra: Vec<String>,
    pub runbooks: Vec<String>,
    /// Files never bound: what `.airflowignore` excludes, and files that commonly hold
    /// secrets (`.env`, keys, `*.tfvars`, dbt's `profiles.yml`, `airflow_settings.yaml`).
    /// A pattern that would bind one is written as the other files it binds, one by one.
    pub excluded: Vec<String>,
}

impl Layout {
    pub fn detect(repo: &Repo) -> Layout {
        let dags = airflow::dag_folders(repo);
        let dag_dirs: Vec<String> = dags.iter().map(|d| d.dir.clone()).collect();
        let mut excluded: Vec<String> = dags.iter().flat_map(|d| d.ignored.clone()).collect();
        excluded.extend(repo.files.iter().filter(|f| never_bound(f)).cloned());
        excluded.sort();
        excluded.dedup();
        Layout {
            excluded,
            dbt: dbt::projects(repo),
            astro: airflow::astro_roots(repo),
            orchestrated: orchestrators::find(repo, &dag_dirs),
            dags,
            infra: infra::patterns(repo),
            runbooks: docs::runbooks(repo),
        }
    }

    /// The directories the pipelines live in, one per dbt project, DAG folder and
    /// Dagster/Prefect code directory, with what each is.
    pub fn anchors(&self) -> Vec<Anchor> {
        let mut out: Vec<Anchor> = self
            .dbt
            .iter()
            .map(|p| Anchor {
                what: "dbt project",
                dir: p.dir.clone(),
                home: p.dir.clone(),
            })
            .collect();
        out.extend(self.dags.iter().map(|d| Anchor {
            what: "DAG folder",
            dir: d.dir.clone(),
            home: d.home.clone(),
        }));
        out.extend(self.orchestrated.dirs.iter().map(|d| Anchor {
            what: "Dagster/Prefect code",
            dir: d.clone(),
            home: super::scan::parent(d).to_string(),
        }));
        out
    }
}

/// Beside the paths an agent's tools never read, files that hold credentials in these
/// ecosystems.
const SECRET_FILES: &[&str] = &[
    "**/*.tfvars",
    "**/*.tfvars.json",
    "**/profiles.yml",
    "**/airflow_settings.yaml",
];

/// Whether init never binds `file` (relative), whatever pattern would match it.
pub fn never_bound(file: &str) -> bool {
    static SET: std::sync::OnceLock<globset::GlobSet> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| {
        let mut b = globset::GlobSetBuilder::new();
        for p in crate::tools::DEFAULT_DENY.iter().chain(SECRET_FILES) {
            if let Ok(g) = globset::GlobBuilder::new(p).case_insensitive(true).build() {
                b.add(g);
            }
        }
        b.build().unwrap_or_else(|_| globset::GlobSet::empty())
    });
    set.is_match(file)
}

/// Where one part of a pipeline lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    pub what: &'static str,
    /// The part itself (`""` at the root).
    pub dir: String,
    /// The directory its pipeline lives in (a DAG folder's Airflow home, a dbt project's own
    /// directory).
    pub home: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_hold_secrets_are_never_bound() {
        for f in [
            ".env",
            "deploy/.env.prod",
            "terraform/prod.tfvars",
            "dbt/profiles.yml",
            "airflow_settings.yaml",
            "certs/tls.key",
        ] {
            assert!(never_bound(f), "{f}");
        }
        for f in ["dags/a.py", "dbt/dbt_project.yml", "terraform/main.tf"] {
            assert!(!never_bound(f), "{f}");
        }
    }
}
