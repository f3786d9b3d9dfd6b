//! `hatrack init [DIR]`: resolves the stage, calls [`crate::init::init`] (which looks at
//! the repository and writes its `hatrack.toml` file(s)), and says what it wrote and what
//! is left to fill in. An existing file is never overwritten without `--force`.

use std::io::Write;

use crate::cli::InitArgs;
use crate::config::ConfigFile;
use crate::definition::{self, embedded};
use crate::init::{self, InitError, Request, StageRef, Summary};
use crate::run::setup;
use crate::Error;

impl From<InitError> for Error {
    fn from(e: InitError) -> Error {
        match e {
            InitError::Write(e) => e.into(),
            other => Error::usage(other.to_string()),
        }
    }
}

pub fn init(args: &InitArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let dir = setup::workspace_dir(args.dir.as_deref())?;
    // With --force over an existing file, keep the stage it names (if it still loads).
    let existing = ConfigFile::load(&dir).unwrap_or_default();
    let stage_dir = setup::stage_dir(&args.stage, &existing, &dir)?;
    let stage = setup::load_stage(&stage_dir)?.stage;
    let stage_ref = match embedded::spelling(&stage_dir) {
        Some(s) if stage_dir == definition::default_stage_dir() => StageRef::Default(s),
        Some(s) => StageRef::Embedded(s),
        None => StageRef::Dir(stage_dir.clone()),
    };
    let summary = init::init(&Request {
        repo: &dir,
        stage: &stage,
        stage_ref,
        force: args.force,
    })?;
    report(&summary, &stage.name, out).map_err(|e| Error::io("writing to stdout", e))?;
    Ok(0)
}

/// What was written, and each item left to fill in with the closest candidates seen.
fn report(summary: &Summary, stage: &str, out: &mut dyn Write) -> std::io::Result<()> {
    for written in &summary.configs {
        let todo: Vec<_> = written
            .entries
            .iter()
            .filter(|e| e.choice.patterns.is_empty())
            .collect();
        writeln!(
            out,
            "wrote {}: {} input(s) bound for stage {stage}, {} to fill in",
            written.path.display(),
            written.entries.len() - todo.len(),
            todo.len()
        )?;
        for e in &todo {
            write!(out, "  TODO: {:?} (read by {})", e.key, e.hats.join(", "))?;
            if !e.closest.is_empty() {
                write!(out, "; closest seen: {}", e.closest.join(", "))?;
            }
            if !e.outside.is_empty() {
                write!(out, "; outside this workspace: {}", e.outside.join(", "))?;
            }
            writeln!(out)?;
        }
    }
    if let Some(manifest) = &summary.manifest {
        writeln!(
            out,
            "wrote {}: {} workspaces, one per pipeline; review them all with `hatrack run --manifest {}`",
            manifest.display(),
            summary.configs.len(),
            manifest.display()
        )?;
    }
    if let Some(question) = &summary.question {
        writeln!(out, "{question}")?;
    }
    Ok(())
}
