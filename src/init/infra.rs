//! Deployment and infrastructure files: Kubernetes manifests, Helm charts, Kustomize,
//! Terraform, docker-compose, Dockerfiles and CI workflows. Variable files that commonly hold
//! secrets (`*.tfvars`, `.env`) are never bound.

use super::scan::{join, name, parent, top_dirs, Repo};

/// The most YAML files read to recognise Kubernetes manifests.
const MAX_YAML_READ: usize = 2000;

/// CI configuration at fixed places.
const CI_FILES: &[&str] = &[
    ".gitlab-ci.yml",
    "Jenkinsfile",
    ".circleci/config.yml",
    "azure-pipelines.yml",
    "bitbucket-pipelines.yml",
    "cloudbuild.yaml",
    "cloudbuild.yml",
];

/// The infrastructure of the repository as patterns, most telling first.
pub fn patterns(repo: &Repo) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(helm(repo));
    out.extend(kustomize(repo));
    out.extend(kubernetes(repo));
    out.extend(terraform(repo));
    out.extend(
        repo.files
            .iter()
            .filter(|f| is_compose(name(f)) || is_dockerfile(name(f)))
            .cloned(),
    );
    if repo.under(".github/workflows").next().is_some() {
        out.push(".github/workflows/**".into());
    }
    out.extend(
        CI_FILES
            .iter()
            .filter(|f| repo.has(f))
            .map(|f| f.to_string()),
    );
    out
}

fn is_compose(n: &str) -> bool {
    let yaml = n.ends_with(".yml") || n.ends_with(".yaml");
    yaml && (n.starts_with("docker-compose") || n.starts_with("compose."))
}

fn is_dockerfile(n: &str) -> bool {
    n == "Dockerfile" || n.starts_with("Dockerfile.") || n.ends_with(".Dockerfile")
}

/// Helm charts: each directory holding `Chart.yaml`.
fn helm(repo: &Repo) -> Vec<String> {
    let charts: Vec<&str> = repo
        .files
        .iter()
        .filter(|f| name(f) == "Chart.yaml")
        .map(|f| parent(f))
        .collect();
    charts
        .iter()
        .flat_map(|c| {
            ["Chart.yaml", "values*.yaml", "templates/**"]
                .map(|p| join(c, p))
                .to_vec()
        })
        .collect()
}

/// Kustomize: the fewest directories holding a `kustomization.yaml`.
fn kustomize(repo: &Repo) -> Vec<String> {
    let dirs = repo
        .files
        .iter()
        .filter(|f| {
            matches!(
                name(f),
                "kustomization.yaml" | "kustomization.yml" | "Kustomization"
            )
        })
        .map(|f| parent(f).to_string())
        .collect();
    yaml_under(top_dirs(dirs))
}

/// Plain manifests: YAML with a top-level `apiVersion:` and `kind:`, outside charts'
/// templates, by the fewest directories holding them (the files themselves at the root).
fn kubernetes(repo: &Repo) -> Vec<String> {
    let manifests: Vec<&String> = repo
        .files
        .iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .filter(|f| !f.contains("/templates/") && !f.starts_with("templates/"))
        .filter(|f| !f.starts_with(".github/"))
        .take(MAX_YAML_READ)
        .filter(|f| repo.read(f).is_some_and(|t| is_manifest(&t)))
        .collect();
    let dirs = top_dirs(manifests.iter().map(|f| parent(f).to_string()).collect());
    let mut out: Vec<String> = manifests
        .iter()
        .filter(|f| !f.contains('/'))
        .map(|f| f.to_string())
        .collect();
    out.extend(yaml_under(
        dirs.into_iter().filter(|d| !d.is_empty()).collect(),
    ));
    out
}

fn yaml_under(dirs: Vec<String>) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| [join(d, "**/*.yaml"), join(d, "**/*.yml")])
        .collect()
}

/// Whether YAML text is a Kubernetes object (both keys at the top level).
pub fn is_manifest(text: &str) -> bool {
    let top = |key: &str| text.lines().any(|l| l.starts_with(key));
    top("apiVersion:") && top("kind:")
}

/// Terraform: the fewest directories holding `*.tf` (the files themselves at the root).
fn terraform(repo: &Repo) -> Vec<String> {
    let tf: Vec<&String> = repo.files.iter().filter(|f| f.ends_with(".tf")).collect();
    let dirs = top_dirs(tf.iter().map(|f| parent(f).to_string()).collect());
    dirs.iter()
        .map(|d| {
            if d.is_empty() {
                "*.tf".to_string()
            } else {
                join(d, "**/*.tf")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_compose_files_and_dockerfiles_are_recognised() {
        assert!(is_manifest("apiVersion: apps/v1\nkind: Deployment\n"));
        assert!(!is_manifest("version: 2\nmodels: []\n"));
        assert!(is_compose("docker-compose.override.yml"));
        assert!(is_compose("compose.yaml"));
        assert!(!is_compose("compose.py"));
        assert!(is_dockerfile("Dockerfile.worker"));
        assert!(is_dockerfile("api.Dockerfile"));
    }
}
