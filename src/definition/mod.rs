//! The definition layer: H·AI·K·U studios, stages, hats and review agents as data
//! (`shared/haiku-format.md` is the specification). Knows nothing of models or runs.
//!
//! Entry points: [`load_stage`] for one stage directory (what `hatrack run` needs) and
//! [`load_tree`] for a stage, a studio or a directory of studios (what `hatrack check` needs).

pub mod types;

pub use types::*;

use std::path::{Path, PathBuf};

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
}

/// Loads one stage directory (STAGE.md, hats/, review-agents/, outputs/, discovery/), with
/// included review agents resolved from sibling stages.
pub fn load_stage(_dir: &Path) -> Result<LoadedStage, DefinitionError> {
    unimplemented!("definition loader: issue 2")
}

/// Loads a stage directory, a studio directory or a directory of studios. Never fails:
/// every problem is a diagnostic.
pub fn load_tree(_path: &Path) -> LoadedTree {
    unimplemented!("definition loader: issue 2")
}
