//! Writing what a hat produced. Paths come from a model, so they are untrusted: only
//! relative paths without `..` are written, and only under `<run>/artifacts/<hat>/`.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::report::ArtifactReport;

/// An artifact accepted for writing.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// `artifacts/<hat>/<path>`: how reports and later prompts name it.
    pub name: String,
    pub content: String,
}

/// Why a proposed artifact path was refused.
pub fn check_path(path: &str) -> Result<PathBuf, String> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err("the path is empty".into());
    }
    if trimmed.contains('\0') || trimmed.contains('\\') {
        return Err("the path contains a NUL or a backslash".into());
    }
    let p = Path::new(trimmed);
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => clean.push(part),
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

/// Validates a hat's proposed artifacts. Returns the accepted ones (first of duplicates wins,
/// sorted by name)
/// and one warning per refusal.
pub fn accept(hat: &str, proposed: &[(String, String)]) -> (Vec<Artifact>, Vec<String>) {
    let mut accepted: Vec<Artifact> = Vec::new();
    let mut warnings = Vec::new();
    for (path, content) in proposed {
        match check_path(path) {
            Ok(clean) => {
                let rel = clean
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let name = format!("artifacts/{hat}/{rel}");
                if accepted.iter().any(|a| a.name == name) {
                    warnings.push(format!(
                        "hat {hat}: artifact {path:?} was given twice; the first one was kept"
                    ));
                } else {
                    accepted.push(Artifact {
                        name,
                        content: content.clone(),
                    });
                }
            }
            Err(why) => warnings.push(format!("hat {hat}: artifact path {path:?} refused: {why}")),
        }
    }
    // Name order, not answer order: later prompts quote artifacts in this order, and
    // `hatrack render --against` rebuilds it from the files on disk.
    accepted.sort_by(|a, b| a.name.cmp(&b.name));
    (accepted, warnings)
}

/// Writes accepted artifacts under `run_dir` (their names already start with `artifacts/`),
/// passing each through `scrub`, and reports them.
pub fn write(
    run_dir: &Path,
    artifacts: &[Artifact],
    scrub: &dyn Fn(&str) -> String,
) -> std::io::Result<Vec<ArtifactReport>> {
    let mut reports = Vec::new();
    for a in artifacts {
        let path = run_dir.join(&a.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = scrub(&a.content);
        std::fs::write(&path, text.as_bytes())?;
        reports.push(ArtifactReport {
            path: a.name.clone(),
            bytes: text.len() as u64,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        });
    }
    Ok(reports)
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
