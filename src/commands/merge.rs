//! `hatrack merge SHARD_DIR… --out DIR`: the run directories of every shard copied into one
//! batch directory, and the batch index built over all of them — the same files a single
//! machine running the whole batch writes. Reads only the shards' directories.
//!
//! The shards must make the whole batch: each `batch.json` records its shard and the whole
//! member list, so shards of different batches, a shard given twice, or a missing shard are
//! refused (exit 2) naming what is wrong. `--partial` merges an incomplete set; the merged
//! index then names what it lacks and its gate is not met (exit at least 1).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::index::{self, BatchIndex};
use crate::batch::run::write_index;
use crate::batch::scope::{self, Combined, Part};
use crate::cli::MergeArgs;
use crate::run::lifecycle::on_github_actions;
use crate::run::rundir::RunDir;
use crate::Error;

/// Largest file copied from a shard (the transcript's own limit).
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// Deepest directory nesting copied from a shard (artifacts sit a few levels down).
const MAX_DEPTH: usize = 16;

/// `--out` must be a new batch directory: missing or empty (an existing batch would have
/// its index replaced and its old members left unindexed), and not inside a shard given
/// (a batch nested in another, which a later merge of that shard would copy).
fn check_out(args: &MergeArgs) -> Result<(), Error> {
    let out = &args.out;
    if let Ok(entries) = std::fs::read_dir(out) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| crate::safe_fs::printable_name(&e.file_name().to_string_lossy()))
            .collect();
        if !names.is_empty() {
            names.sort();
            names.truncate(5);
            return Err(Error::usage(format!(
                "--out {} is not empty (it holds {}…); merge writes a whole new batch directory: give a new or empty --out DIR",
                out.display(),
                names.join(", ")
            )));
        }
    }
    // Where --out is, or would be created: its nearest existing ancestor, resolved.
    let absolute = std::path::absolute(out)
        .map_err(|e| Error::io(format!("resolving {}", out.display()), e))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    resolved.extend(rest.iter().rev());
    for shard in &args.shards {
        let Ok(shard_real) = shard.canonicalize() else {
            continue;
        };
        if resolved.starts_with(&shard_real) {
            return Err(Error::usage(format!(
                "--out {} is inside the shard {}; merge into a directory outside every shard",
                out.display(),
                shard.display()
            )));
        }
    }
    Ok(())
}

pub fn merge(args: &MergeArgs, out: &mut dyn Write) -> Result<i32, Error> {
    check_out(args)?;
    let indexes = read_shards(&args.shards)?;
    let member_lists: Vec<Vec<String>> = indexes
        .iter()
        .map(|i| i.workspaces.iter().map(|w| w.name.clone()).collect())
        .collect();
    let parts: Vec<Part<'_>> = args
        .shards
        .iter()
        .zip(&indexes)
        .zip(&member_lists)
        .map(|((dir, index), names)| Part {
            shown: dir.display().to_string(),
            scope: index.scope.as_ref(),
            names,
        })
        .collect();
    let combined = scope::combine(&parts).map_err(Error::usage)?;
    let names = distinct_members(&args.shards, &member_lists)?;
    if !args.partial {
        refuse_incomplete(&combined)?;
    }

    let locked = RunDir::open_locked(&args.out)?;
    for (shard, names) in args.shards.iter().zip(&member_lists) {
        for name in names {
            let target = args.out.join(name);
            if target.symlink_metadata().is_ok() {
                return Err(Error::usage(format!(
                    "{} already exists; merge into a new --out DIR",
                    target.display()
                )));
            }
            copy_tree(&shard.join(name), &args.out, name, 0)?;
        }
    }
    let loaded = crate::batch::index::load(locked.path(), &names)
        .map_err(|e| Error::usage(e.to_string()))?;
    if args.verify {
        let ran: Vec<&str> = loaded
            .iter()
            .filter(|m| m.entry.error.is_none())
            .map(|m| m.entry.name.as_str())
            .collect();
        verify(locked.path(), &ran)?;
    }
    write_index(
        &locked,
        &loaded,
        Some(combined.scope),
        out,
        false,
        args.github || on_github_actions(),
    )
}

/// Each shard's `batch.json`, refusing one that names a member hatrack would not write (a
/// name that is not a plain directory name).
fn read_shards(shards: &[PathBuf]) -> Result<Vec<BatchIndex>, Error> {
    let indexes = shards
        .iter()
        .map(|shard| index::read(shard).map_err(|e| Error::usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    for (shard, listed) in shards.iter().zip(&indexes) {
        if let Some(w) = listed
            .workspaces
            .iter()
            .find(|w| !crate::batch::valid_name(&w.name))
        {
            return Err(Error::usage(format!(
                "{}: batch.json names {:?}, which is not a member name hatrack writes",
                shard.display(),
                w.name
            )));
        }
    }
    Ok(indexes)
}

/// Every shard's members, in shard order. Shards of one batch never share a member; checked
/// again on the names themselves (as a file system that ignores case would see them).
fn distinct_members(
    shards: &[PathBuf],
    member_lists: &[Vec<String>],
) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = Vec::new();
    for (shard, listed) in shards.iter().zip(member_lists) {
        for name in listed {
            if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(Error::usage(format!(
                    "{name} is in more than one shard (again in {}); merge the shards of one batch, each once",
                    shard.display()
                )));
            }
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// Without `--partial`, a merge that lacks shards or members is refused, naming what is
/// missing.
fn refuse_incomplete(combined: &Combined) -> Result<(), Error> {
    let Some(missing) = &combined.scope.missing else {
        return Ok(());
    };
    let shards = if missing.shards.is_empty() {
        "every shard is given, but their batch.json files lack members".to_string()
    } else {
        format!("shard(s) {} missing", missing.shards.join(", "))
    };
    Err(Error::usage(format!(
        "incomplete merge: {shards}, so {} of {} workspace(s) would never be reviewed ({}); pass every shard's batch directory, or --partial to merge these anyway (the merged gate is then not met)",
        missing.workspaces.len(),
        combined.scope.members.len(),
        scope::listing(&missing.workspaces),
    )))
}

/// The files of a member's run directory its report consists of.
const REPORT_FILES: [&str; 3] = ["report.json", "junit.xml", "report.md"];

/// `--verify`: each member (its copy under `out`) replayed offline from its own transcript;
/// a replay that fails, or that writes a report other than the one the shard brought, is
/// refused, naming the member and what differs.
fn verify(out: &Path, members: &[&str]) -> Result<(), Error> {
    use crate::run::lifecycle::{replay_with, Runner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let progress = crate::run::progress::Progress::new(true);
    for name in members {
        let dir = out.join(name);
        let read = |file: &str| {
            crate::safe_fs::read_bounded(
                &dir.join(file),
                crate::safe_fs::Kind::RUN_FILE,
                crate::safe_fs::Links::Never,
            )
            .ok()
        };
        let brought: Vec<Option<Vec<u8>>> = REPORT_FILES.iter().map(|f| read(f)).collect();
        let args = crate::cli::ReplayArgs {
            transcript: dir.clone(),
            stage: None,
            workspace: None,
            require_signature: None,
            report: Default::default(),
        };
        let runner = Runner {
            quiet: true,
            transport: None,
            progress: progress.member(name),
            github: false,
            batch: None,
        };
        let refuse = |why: String| {
            Error::usage(format!(
                "--verify: member {name}: {why}; its shard was edited after it ran, or recorded by another hatrack: run that shard again"
            ))
        };
        runtime
            .block_on(replay_with(&args, &runner, &mut std::io::sink()))
            .map_err(|e| refuse(format!("its transcript does not replay ({e})")))?;
        for (file, before) in REPORT_FILES.iter().zip(brought) {
            if read(file) != before {
                return Err(refuse(format!(
                    "{file} is not what its transcript reproduces"
                )));
            }
        }
    }
    runtime.shutdown_background();
    Ok(())
}

/// Copies the regular files under `from` to `root/rel`, never following a symlink (a run
/// directory hatrack wrote has none: one found is refused).
fn copy_tree(from: &Path, root: &Path, rel: &str, depth: usize) -> Result<(), Error> {
    let refuse =
        |why: &str| Error::usage(format!("{}: {why}; was the shard edited?", from.display()));
    if depth > MAX_DEPTH {
        return Err(refuse("nested too deep for a run directory"));
    }
    let meta = from
        .symlink_metadata()
        .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    if !meta.is_dir() {
        return Err(refuse("not a directory"));
    }
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| Error::io(format!("reading {}", from.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let child = format!("{rel}/{name}");
        let meta = path
            .symlink_metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            copy_tree(&path, root, &child, depth + 1)?;
        } else if meta.is_file() {
            copy_file(&path, root, &child, meta.len())?;
        } else {
            return Err(Error::usage(format!(
                "{}: not a regular file or directory (a symlink?); hatrack writes none into a run directory",
                path.display()
            )));
        }
    }
    Ok(())
}

fn copy_file(path: &Path, root: &Path, rel: &str, len: u64) -> Result<(), Error> {
    use std::io::Read;
    if len > MAX_FILE {
        return Err(Error::usage(format!(
            "{}: {len} bytes, larger than any file of a run directory ({MAX_FILE})",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    crate::safe_fs::open_read_no_follow(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    crate::safe_fs::write_file(root, rel, &bytes, false)?;
    Ok(())
}
