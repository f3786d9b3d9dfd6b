//! Batches: many workspaces reviewed in one process (or spread over machines as shards),
//! one run directory each, and one index over all of them.
//!
//! This module is the batch's data: which workspaces it holds and under what names
//! ([`members`]), which of them a shard runs ([`in_shard`]), and the index built from the
//! run directories ([`index`]). Running the members is [`run`]; combining shards is
//! `commands/merge.rs`. Both build the index the same way — from what the run
//! directories hold and nothing else — so a merged batch's index equals a single machine's.

pub mod index;
pub mod render;
pub mod run;
pub mod scope;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cli::Shard;

/// Longest run-directory name a workspace gets (before a disambiguating suffix).
const MAX_NAME: usize = 64;

/// Most workspaces one batch takes: each holds a run directory and its reports.
pub const MAX_MEMBERS: usize = 10_000;

/// A workspace of a batch and the name of its run directory inside the batch directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub workspace: PathBuf,
    /// Where its hats' answers come from (an eval case may fix them).
    pub hats: crate::run::judges_only::Hats,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{manifest}:{line}: {message}")]
    Manifest {
        manifest: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Workspaces listed in a manifest: one path per line, relative to the manifest's directory;
/// blank lines and lines starting with `#` are skipped.
pub fn read_manifest(path: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let shown = path.display().to_string();
    use crate::safe_fs::{read_bounded_string, Kind, Links};
    let text = read_bounded_string(path, Kind::MANIFEST, Links::SameDir).map_err(|e| {
        BatchError::Manifest {
            manifest: shown.clone(),
            line: 0,
            message: format!(
                "cannot read it ({}); pass a text file with one workspace per line",
                e.why
            ),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut listed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.chars().any(char::is_control) {
            return Err(BatchError::Manifest {
                manifest: shown,
                line: i + 1,
                message: "a control character in a path; one workspace path per line".into(),
            });
        }
        listed.push(base.join(line));
    }
    Ok(listed)
}

/// Names every listed workspace for its run directory: the directory's own name, made safe
/// (`[A-Za-z0-9._-]`, at most 64 characters); names that collide (ignoring case, as some
/// file systems do) get a suffix from a hash of the path as listed. A name depends only on
/// the set of workspaces, never on their order, so shards agree on it.
///
/// A workspace named like a file of the batch directory itself ([`RESERVED_NAMES`], in any
/// letter case) gets the name `ws-NAME`, decided here, before any request.
///
/// The same directory listed twice is refused: it would be reviewed twice into one name.
pub fn members(listed: &[PathBuf]) -> Result<Vec<Member>, BatchError> {
    if listed.len() > MAX_MEMBERS {
        return Err(BatchError::Invalid(format!(
            "{} workspaces in one batch; at most {MAX_MEMBERS}: split the list and use --shard",
            listed.len()
        )));
    }
    let mut seen = std::collections::BTreeMap::new();
    for path in listed {
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if let Some(first) = seen.insert(key, path) {
            return Err(BatchError::Invalid(format!(
                "workspace {} is listed twice (also as {}); list each workspace once",
                path.display(),
                first.display()
            )));
        }
    }
    let bases: Vec<String> = listed.iter().map(|p| base_name(p)).collect();
    let mut members = Vec::with_capacity(listed.len());
    for (path, base) in listed.iter().zip(&bases) {
        let clashes = bases
            .iter()
            .filter(|b| b.eq_ignore_ascii_case(base))
            .count();
        let name = if clashes > 1 {
            format!("{base}-{}", &hex(path.to_string_lossy().as_bytes())[..8])
        } else {
            base.clone()
        };
        members.push(Member {
            name,
            workspace: path.clone(),
            hats: Default::default(),
        });
    }
    let mut names: Vec<String> = members.iter().map(|m| m.name.to_lowercase()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(BatchError::Invalid(format!(
            "two workspaces would share the run directory {:?}; rename one of them",
            w[0]
        )));
    }
    Ok(members)
}

/// Whether `name` belongs to `shard`: by a hash of the name, so the split is the same on
/// every machine and for any order of the list.
pub fn in_shard(name: &str, shard: Shard) -> bool {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % u64::from(shard.count) == u64::from(shard.index - 1)
}

/// Whether `name` could be a member's run directory (what [`members`] produces): checked
/// when a batch directory is read back, so a hostile index cannot point outside it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME + 9
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Names a batch directory uses for itself (its index files, and `workspace`, the name of a
/// path that has none): a member named so would collide with them after being paid for.
pub const RESERVED_NAMES: [&str; 5] = [
    "batch.json",
    "batch.md",
    "batch.html",
    "junit.xml",
    "workspace",
];

/// A member whose name is reserved runs under `ws-NAME` instead.
fn unreserved(name: String) -> String {
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
        format!("ws-{name}")
    } else {
        name
    }
}

fn base_name(path: &Path) -> String {
    let named = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let safe: String = named
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    if safe.is_empty() {
        unreserved("workspace".to_string())
    } else {
        unreserved(safe)
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[&str]) -> Vec<String> {
        let listed: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        members(&listed)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect()
    }

    #[test]
    fn names_are_safe_and_collisions_are_told_apart_whatever_the_order() {
        let a = names(&["/nowhere/a/orders", "/nowhere/b/Orders", "/nowhere/x y"]);
        assert!(
            a[0].starts_with("orders-") && a[1].starts_with("Orders-"),
            "{a:?}"
        );
        assert_ne!(a[0], a[1]);
        assert_eq!(a[2], "x_y");
        let b = names(&["/nowhere/x y", "/nowhere/b/Orders", "/nowhere/a/orders"]);
        assert_eq!(
            (b[2].as_str(), b[1].as_str()),
            (a[0].as_str(), a[1].as_str())
        );
        assert_eq!(names(&["/nowhere/.hidden"]), ["hidden"]);
        assert!(names(&["/"])[0] == "ws-workspace");
        assert_eq!(
            names(&["/nowhere/batch.json", "/nowhere/JUnit.xml"]),
            ["ws-batch.json", "ws-JUnit.xml"]
        );
        assert!(a.iter().all(|n| valid_name(n)));
    }

    #[test]
    fn a_workspace_listed_twice_is_refused() {
        let err = members(&[PathBuf::from("/nowhere/a"), PathBuf::from("/nowhere/a")]);
        assert!(err.unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn shards_partition_the_batch() {
        let all: Vec<String> = (0..50).map(|i| format!("ws{i}")).collect();
        let count = 3;
        let mut total = 0;
        for index in 1..=count {
            let shard = Shard { index, count };
            total += all.iter().filter(|n| in_shard(n, shard)).count();
        }
        assert_eq!(total, all.len());
    }

    #[test]
    fn hostile_names_are_not_member_names() {
        for bad in ["..", "../x", "/etc", "a/b", "", ".git", "a\u{0}b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
