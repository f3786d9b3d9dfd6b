//! dbt projects: every `dbt_project.yml` and the directories it names (`model-paths`,
//! `test-paths`, `seed-paths`, `macro-paths`, `snapshot-paths`, dbt's defaults when absent);
//! its schema YAML that declares tests and its `target/run_results.json` are validation
//! evidence. `target/` and `dbt_packages/` are never walked (see `scan.rs`).

use serde_norway::Value;

use super::scan::{join, parent, Repo};

/// One dbt project.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtProject {
    /// The project's directory (relative, `""` at the root).
    pub dir: String,
    pub model_paths: Vec<String>,
    pub test_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub snapshot_paths: Vec<String>,
}

/// Every dbt project of the repository, in path order.
pub fn projects(repo: &Repo) -> Vec<DbtProject> {
    repo.files
        .iter()
        .filter(|f| super::scan::name(f) == "dbt_project.yml")
        .map(|f| {
            let text = repo.read(f).unwrap_or_default();
            project(parent(f), &text)
        })
        .collect()
}

/// A project from its `dbt_project.yml` text (a file that does not parse keeps the defaults).
pub fn project(dir: &str, text: &str) -> DbtProject {
    let yaml: Value = serde_norway::from_str(text).unwrap_or(Value::Null);
    let paths = |key: &str, default: &str| {
        let listed: Vec<String> = match yaml.get(key) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let clean: Vec<String> = listed
            .iter()
            .map(|p| p.trim().trim_start_matches("./").trim_end_matches('/'))
            .filter(|p| !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == ".."))
            .map(str::to_string)
            .collect();
        if clean.is_empty() {
            vec![default.to_string()]
        } else {
            clean
        }
    };
    DbtProject {
        dir: dir.to_string(),
        model_paths: paths("model-paths", "models"),
        test_paths: paths("test-paths", "tests"),
        seed_paths: paths("seed-paths", "seeds"),
        macro_paths: paths("macro-paths", "macros"),
        snapshot_paths: paths("snapshot-paths", "snapshots"),
    }
}

impl DbtProject {
    fn under(&self, paths: &[String], glob: &str) -> Vec<String> {
        paths
            .iter()
            .map(|p| join(&join(&self.dir, p), glob))
            .collect()
    }

    /// The project's code, most telling first: models (SQL, Python, their YAML), the
    /// project file, macros, snapshots, singular tests, seed properties.
    pub fn code_patterns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for glob in ["**/*.sql", "**/*.yml", "**/*.yaml", "**/*.py"] {
            out.extend(self.under(&self.model_paths, glob));
        }
        out.push(join(&self.dir, "dbt_project.yml"));
        out.extend(self.under(&self.macro_paths, "**/*.sql"));
        out.extend(self.under(&self.snapshot_paths, "**/*.sql"));
        out.extend(self.under(&self.test_paths, "**/*.sql"));
        out.extend(self.under(&self.seed_paths, "**/*.yml"));
        out
    }

    /// Validation evidence: the last run's results, schema YAML that declares tests,
    /// singular and generic tests.
    pub fn validation_patterns(&self, repo: &Repo) -> Vec<String> {
        let mut out = vec![join(&self.dir, "target/run_results.json")];
        for models in &self.model_paths {
            let dir = join(&self.dir, models);
            out.extend(
                repo.under(&dir)
                    .filter(|f| f.ends_with(".yml") || f.ends_with(".yaml"))
                    .filter(|f| repo.read(f).is_some_and(|t| declares_tests(&t)))
                    .cloned(),
            );
        }
        out.extend(self.under(&self.test_paths, "**/*.sql"));
        out.extend(self.under(&self.test_paths, "**/*.yml"));
        out
    }
}

/// Whether a dbt properties file declares tests (`tests:` or `data_tests:` with entries,
/// on a model, a column or a source).
pub fn declares_tests(text: &str) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Mapping(m) => m.iter().any(|(k, v)| {
                let named = matches!(k.as_str(), Some("tests" | "data_tests"));
                (named && v.as_sequence().is_some_and(|s| !s.is_empty())) || walk(v)
            }),
            Value::Sequence(s) => s.iter().any(walk),
            _ => false,
        }
    }
    serde_norway::from_str::<Value>(text).is_ok_and(|v| walk(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_project_file_with_dbts_defaults() {
        let p = project(
            "analytics",
            "name: a\nmodel-paths: [\"transform\", \"./marts/\"]\ntest-paths: checks\nmacro-paths: []\n",
        );
        assert_eq!(p.model_paths, ["transform", "marts"]);
        assert_eq!(p.test_paths, ["checks"]);
        assert_eq!(p.macro_paths, ["macros"]);
        assert_eq!(p.snapshot_paths, ["snapshots"]);
        assert_eq!(p.code_patterns()[0], "analytics/transform/**/*.sql");
        let broken = project("", "model-paths: [unclosed\n");
        assert_eq!(broken.model_paths, ["models"]);
        assert_eq!(project("", "model-paths: ['../x']").model_paths, ["models"]);
    }

    #[test]
    fn schema_yaml_with_tests_is_evidence() {
        assert!(declares_tests(
            "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n"
        ));
        assert!(declares_tests(
            "models:\n  - name: a\n    tests:\n      - dbt_utils.recency: {field: t}\n"
        ));
        assert!(!declares_tests(
            "version: 2\nmodels:\n  - name: a\n    tests: []\n"
        ));
        assert!(!declares_tests("version: 2\nmodels:\n  - name: a\n"));
    }
}
