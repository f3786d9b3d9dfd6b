//! Reports: one small trait and one file per output format, fanned out by [`write_all`]
//! (the shape of hyperfine's `export/`).
//!
//! Every format renders the same [`Report`]; nothing here decides a verdict. Helpers shared
//! by several formats (the gate note, the status words, number formatting) live in
//! [`text`] so that the formats never disagree on wording.

pub mod findings;
pub mod github;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod sarif;
pub mod summary;
pub mod text;

pub use model::*;
pub use summary::summary_table;

use std::path::{Path, PathBuf};

use crate::parallel::side_by_side;

/// One output format. `Send + Sync` because [`write_all`] renders the formats side by side.
pub trait Exporter: Send + Sync {
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

/// The formats [`write_all`] writes, in this order: `report.json`, `report.md`,
/// `report.html`, `junit.xml`, `report.sarif`.
pub fn exporters() -> Vec<Box<dyn Exporter>> {
    vec![
        Box::new(json::JsonExporter),
        Box::new(markdown::MarkdownExporter),
        Box::new(html::HtmlExporter),
        Box::new(junit::JunitExporter),
        Box::new(sarif::SarifExporter),
    ]
}

/// Renders every format and writes it into `dir` (created if missing), passing each text
/// through `scrub` first so no secret reaches disk. Returns the paths written.
///
/// `scrub` must replace a secret with plain text (e.g. `[REDACTED]`): its output goes into
/// XML and HTML unescaped.
///
/// `scrub` runs over every free-text string of the report *before* rendering (a format may
/// escape a secret into a form the scrubber would no longer recognise, e.g. `&` → `&amp;`
/// or `_` → `\_`), and again over each rendered text except `report.json`: JSON is
/// scrubbed as string values only, never as serialized bytes, so a pattern cannot eat its
/// structure (its strings all come from the already scrubbed report). A run writes through
/// [`write_all_scrubbed`], which applies only the literal secrets to the rendered markup.
///
/// All formats are rendered before any file is touched (side by side, one thread each: the
/// formats and their fsyncs are most of the time a run spends after its last answer), and
/// each file goes through
/// [`crate::safe_fs::write_file`]: a temporary file, fsync'd, renamed into place (never
/// written through a symlink), so a failure or a crash never leaves a half-written report:
/// each file is either the old one or the complete new one.
pub fn write_all(
    report: &Report,
    dir: &Path,
    scrub: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<PathBuf>, ReportError> {
    write_with(report, dir, scrub, scrub)
}

/// [`write_all`] with a [`Scrubber`](crate::secrets::Scrubber): every free-text string of
/// the report is scrubbed (secrets and patterns) before rendering; the rendered Markdown,
/// HTML and JUnit files are scrubbed again for the literal secrets only, since a pattern
/// run over markup could match across its structure and break `junit.xml` for CI.
pub fn write_all_scrubbed(
    report: &Report,
    dir: &Path,
    scrubber: &crate::secrets::Scrubber,
) -> Result<Vec<PathBuf>, ReportError> {
    write_with(report, dir, &|s| scrubber.scrub(s), &|s| {
        scrubber.scrub_literals(s)
    })
}

fn write_with(
    report: &Report,
    dir: &Path,
    scrub_strings: &(dyn Fn(&str) -> String + Sync),
    scrub_markup: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<PathBuf>, ReportError> {
    let scrubbed = scrub_report(report, scrub_strings)?;
    let render = |exporter: &dyn Exporter| -> Result<(&'static str, String), ReportError> {
        let text = exporter.render(&scrubbed)?;
        let text = if exporter.file_name().ends_with(".json") {
            text
        } else {
            scrub_markup(&text)
        };
        Ok((exporter.file_name(), text))
    };
    let rendered = side_by_side(exporters(), crate::parallel::cores(), |exporter| {
        render(exporter.as_ref())
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    crate::safe_fs::create_root(dir).map_err(|e| write_error(dir, e))?;
    // Writing waits on the disk (each file is fsync'd): one thread per file.
    let files = rendered.len();
    side_by_side(rendered, files, |(name, text)| {
        crate::safe_fs::write_file(dir, name, text.as_bytes(), true)
            .map_err(|e| write_error(&dir.join(name), e))
    })
    .into_iter()
    .collect()
}

fn write_error(path: &Path, e: crate::safe_fs::SafeFsError) -> ReportError {
    match e {
        crate::safe_fs::SafeFsError::Io { path, source } => ReportError::Write { path, source },
        other => ReportError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Report fields that hold hatrack's own vocabulary (enum words, requirement ids, digests,
/// times), never a secret: left unscrubbed so that a broad pattern (`met`, `check`,
/// `[0-9a-f]{32,}`) cannot make the report unreadable or its ids unrecognisable.
const STRUCTURAL_KEYS: &[&str] = &[
    "kind",
    "status",
    "verdict",
    "claimed",
    "level",
    "id",
    "sha256",
    "digest",
    "definition_digest",
    "started_at",
    "hatrack_version",
    "record_mode",
];

/// Applies `scrub` to every free-text string in the report (through its JSON form, so a
/// field added to the model later is covered without touching this function).
fn scrub_report(report: &Report, scrub: &dyn Fn(&str) -> String) -> Result<Report, ReportError> {
    fn walk(value: &mut serde_json::Value, scrub: &dyn Fn(&str) -> String) {
        match value {
            serde_json::Value::String(s) => *s = scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, scrub)),
            serde_json::Value::Object(map) => map
                .iter_mut()
                .filter(|(k, _)| !STRUCTURAL_KEYS.contains(&k.as_str()))
                .for_each(|(_, v)| walk(v, scrub)),
            _ => {}
        }
    }
    let render_err = |e: serde_json::Error| ReportError::Render {
        format: "report (scrubbing)",
        message: e.to_string(),
    };
    let mut value = serde_json::to_value(report).map_err(render_err)?;
    walk(&mut value, scrub);
    serde_json::from_value(value).map_err(render_err)
}
