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
}

impl Layout {
    pub fn detect(repo: &Repo) -> Layout {
        let dags = airflow::dag_folders(repo);
        let dag_dirs: Vec<String> = dags.iter().map(|d| d.dir.clone()).collect();
        Layout {
            dbt: dbt::projects(repo),
            astro: airflow::astro_roots(repo),
            orchestrated: orchestrators::find(repo, &dag_dirs),
            dags,
            infra: infra::patterns(repo),
            runbooks: docs::runbooks(repo),
        }
    }

    /// Files `.airflowignore` excludes: no pattern that binds one of them is written.
    pub fn excluded(&self) -> Vec<&String> {
        self.dags.iter().flat_map(|d| &d.ignored).collect()
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
