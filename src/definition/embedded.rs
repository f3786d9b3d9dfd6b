//! The stages compiled into the binary: `hats/deployment/**`, so `hatrack run`, `list` and
//! `render` work from any directory. They are read through the same loader as files on disk
//! (see [`super::files`]): an embedded stage is a read-only in-memory directory whose path
//! is `embedded:/<stage>` (users and run.json spell it `embedded:<stage>`), so requirement
//! sources still read `deployment/hats/sre.md:14`.

use std::path::{Component, Path, PathBuf};

/// How a path into the embedded stages starts (its first component).
pub const ROOT: &str = "embedded:";

/// The stage used when neither a flag nor hatrack.toml names one.
pub const DEFAULT_STAGE: &str = "deployment";

/// Every embedded file, by its path below `hats/`. A test keeps this list equal to the
/// files of `hats/` on disk, so a file added there cannot be forgotten here.
pub const FILES: &[(&str, &str)] = &[
    (
        "deployment/STAGE.md",
        include_str!("../../hats/deployment/STAGE.md"),
    ),
    (
        "deployment/checks.toml",
        include_str!("../../hats/deployment/checks.toml"),
    ),
    (
        "deployment/hats/pipeline-engineer.md",
        include_str!("../../hats/deployment/hats/pipeline-engineer.md"),
    ),
    (
        "deployment/hats/sre.md",
        include_str!("../../hats/deployment/hats/sre.md"),
    ),
    (
        "deployment/outputs/PIPELINE-CONFIG.md",
        include_str!("../../hats/deployment/outputs/PIPELINE-CONFIG.md"),
    ),
    (
        "deployment/review-agents/reliability.md",
        include_str!("../../hats/deployment/review-agents/reliability.md"),
    ),
];

/// The directory of an embedded stage: `embedded:/<name>`.
pub fn stage_dir(name: &str) -> PathBuf {
    Path::new(ROOT).join(name)
}

/// The embedded stage named by `embedded:NAME` (or `embedded:/NAME`), as its directory.
/// `None` when `spelling` does not start with `embedded:`; a name that is not embedded
/// still gives a directory, which the loader then reports as missing.
pub fn parse(spelling: &str) -> Option<PathBuf> {
    let name = spelling.strip_prefix(ROOT)?.trim_start_matches('/');
    Some(stage_dir(name.trim_end_matches('/')))
}

/// How run.json and messages spell an embedded stage directory (`embedded:deployment`).
pub fn spelling(dir: &Path) -> Option<String> {
    let rel = relative(dir)?;
    Some(format!("{ROOT}{rel}"))
}

/// Whether `path` lies in the embedded tree.
pub fn contains(path: &Path) -> bool {
    relative(path).is_some()
}

/// `path` below the embedded root, `/`-separated (`deployment/hats/sre.md`; `""` for the root).
fn relative(path: &Path) -> Option<String> {
    let mut parts = path.components();
    match parts.next() {
        Some(Component::Normal(first)) if first == ROOT => {}
        _ => return None,
    }
    let mut out: Vec<String> = Vec::new();
    for c in parts {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            _ => return None,
        }
    }
    Some(out.join("/"))
}

/// The text of an embedded file.
pub fn read(path: &Path) -> Option<&'static str> {
    let rel = relative(path)?;
    FILES.iter().find(|(p, _)| *p == rel).map(|(_, text)| *text)
}

/// Whether an embedded directory exists (some file lies below it).
pub fn is_dir(path: &Path) -> bool {
    match relative(path) {
        Some(rel) if rel.is_empty() => true,
        Some(rel) => FILES.iter().any(|(p, _)| {
            p.strip_prefix(rel.as_str())
                .is_some_and(|r| r.starts_with('/'))
        }),
        None => false,
    }
}

/// The entries (files and directories) directly inside an embedded directory, sorted.
pub fn list(path: &Path) -> Option<Vec<PathBuf>> {
    if !is_dir(path) {
        return None;
    }
    let rel = relative(path)?;
    let prefix = if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}/")
    };
    let mut names: Vec<&str> = FILES
        .iter()
        .filter_map(|(p, _)| p.strip_prefix(prefix.as_str()))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .collect();
    names.sort_unstable();
    names.dedup();
    Some(names.into_iter().map(|n| path.join(n)).collect())
}

/// The names of the embedded stages.
pub fn stage_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FILES
        .iter()
        .filter_map(|(p, _)| p.strip_suffix("/STAGE.md"))
        .collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_list_holds_exactly_the_stage_files_of_hats() {
        // Every stage directory of hats/ (hats/NOTICE, the licence note, is not a stage file).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("hats");
        let mut on_disk: Vec<String> = walkdir::WalkDir::new(&root)
            .min_depth(2)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(&root).unwrap();
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "src/definition/embedded.rs FILES must list every stage file of hats/"
        );
        for (p, text) in FILES {
            assert_eq!(
                std::fs::read_to_string(root.join(p)).unwrap(),
                *text,
                "{p} differs"
            );
        }
    }

    #[test]
    fn spellings_round_trip() {
        let dir = parse("embedded:deployment").unwrap();
        assert_eq!(dir, stage_dir("deployment"));
        assert_eq!(parse("embedded:/deployment/").unwrap(), dir);
        assert_eq!(spelling(&dir).unwrap(), "embedded:deployment");
        assert!(parse("hats/deployment").is_none());
        assert!(spelling(Path::new("hats/deployment")).is_none());
        assert_eq!(stage_names(), vec!["deployment"]);
    }

    #[test]
    fn the_tree_lists_like_a_directory() {
        let dir = stage_dir("deployment");
        assert!(is_dir(&dir) && is_dir(&dir.join("hats")) && !is_dir(&dir.join("STAGE.md")));
        assert!(!is_dir(&dir.join("hat")));
        assert!(read(&dir.join("STAGE.md")).is_some());
        assert!(read(&dir.join("hats/../STAGE.md")).is_some());
        let names: Vec<String> = list(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "STAGE.md",
                "checks.toml",
                "hats",
                "outputs",
                "review-agents"
            ]
        );
        assert!(list(&dir.join("nothing")).is_none());
    }
}
