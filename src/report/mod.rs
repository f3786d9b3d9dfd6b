//! Reports: one small trait and one file per output format, fanned out by [`write_all`]
//! (the shape of hyperfine's `export/`).

pub mod model;

pub use model::*;

use std::path::{Path, PathBuf};

/// One output format.
pub trait Exporter {
    /// File name inside the run directory (`report.json`, …).
    fn file_name(&self) -> &'static str;
    fn render(&self, report: &Report) -> Result<String, ReportError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("rendering {format}: {message}")]
    Render {
        format: &'static str,
        message: String,
    },
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Renders every format and writes it into `dir`, passing each text through `scrub` first
/// (so no secret reaches disk). Returns the paths written.
pub fn write_all(
    _report: &Report,
    _dir: &Path,
    _scrub: &dyn Fn(&str) -> String,
) -> Result<Vec<PathBuf>, ReportError> {
    unimplemented!("report formats: issue 4")
}

/// The short table printed on stdout after a run.
pub fn summary_table(_report: &Report) -> String {
    unimplemented!("report formats: issue 4")
}
