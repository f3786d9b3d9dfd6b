//! The definition layer: H·AI·K·U studios, stages, hats and review agents as data
//! (`shared/haiku-format.md` is the specification). Knows nothing of models or runs.
//!
//! Entry points: [`load_stage`] for one stage directory (what `hatrack run` needs) and
//! [`load_tree`] for a stage, a studio or a directory of studios (what `hatrack check` needs).

pub mod body;
pub mod document;
pub mod embedded;
mod files;
mod loader;
mod parse;
pub mod rfc2119;
pub mod types;

pub use loader::{
    default_stage_dir, definition_digest, load_stage, load_tree, resolve_stage_dir, stage_path,
};
pub use types::*;

/// The bytes of one of a stage's `source_files`, from the disk or the binary (what a run's
/// snapshot copies).
pub fn read_source_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    files::read(path)
}

use std::path::PathBuf;

/// A stage that loaded without errors, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct LoadedStage {
    pub stage: Stage,
    pub warnings: Vec<Diagnostic>,
}

/// Everything found under a path given to `hatrack check`.
#[derive(Debug, Clone, Default)]
pub struct LoadedTree {
    pub studios: Vec<Studio>,
    /// Stages loaded on their own (PATH was a stage directory).
    pub stages: Vec<Stage>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The definitions have errors; each diagnostic names file and line.
    #[error("{} error(s) in the definitions", .diagnostics.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("{}: not a stage directory (no STAGE.md); pass a directory such as hats/deployment", .path.display())]
    NotAStage { path: PathBuf },
    #[error("{}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    #[error("no stage named {name:?} in studio {studio}; stages are: {known}")]
    UnknownStage {
        studio: String,
        name: String,
        known: String,
    },
    /// `--studio PARENT/NAME` where NAME matches no studio of PARENT.
    #[error("no studio named {name:?} in {}; studios are: {known}", .parent.display())]
    UnknownStudio {
        name: String,
        parent: PathBuf,
        known: String,
    },
    /// `--studio` without `--stage`: a studio has several stages, so one must be named.
    #[error("--studio {studio} needs --stage NAME; stages are: {known}")]
    MissingStageName { studio: String, known: String },
}
