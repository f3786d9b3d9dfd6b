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
/// The formats render on every core, slowest first (they and their fsyncs are most of the
/// time a run spends after its last answer). Each is written to a temporary file beside its
/// target as soon as it is rendered ([`crate::safe_fs::stage_file`], never through a
/// symlink); then all are fsync'd together, and only then renamed into place. A failure
/// removes them all. So no report is touched unless all were written, and a crash
/// never leaves a half-written one: each file is the old one or the complete new one.
pub fn write_all(
    report: &Report,
    dir: &Path,
    scrub: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<PathBuf>, ReportError> {
    write_with(report, dir, Some(scrub), scrub)
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
    let scrub_strings = |s: &str| scrubber.scrub(s);
    // Rebuilding the report string by string costs half a millisecond; a report in which
    // no secret appears (the usual case: no patterns, the key never echoed) is kept as is.
    let needs_scrubbing =
        serde_json::to_string(report).map_or(true, |json| scrubber.could_change_json(&json));
    write_with(
        report,
        dir,
        needs_scrubbing.then_some(&scrub_strings),
        &|s| scrubber.scrub_literals(s),
    )
}

fn write_with(
    report: &Report,
    dir: &Path,
    scrub_strings: Option<&(dyn Fn(&str) -> String + Sync)>,
    scrub_markup: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<PathBuf>, ReportError> {
    let scrubbed;
    let report = match scrub_strings {
        Some(scrub) => {
            scrubbed = scrub_report(report, scrub)?;
            &scrubbed
        }
        None => report,
    };
    crate::safe_fs::create_root(dir).map_err(|e| write_error(dir, e))?;
    // Each format is written under a temporary name as soon as it is rendered; then all are
    // fsync'd at once (their fsyncs share the file system's journal commits) and only then
    // renamed into place, so a failure touches no report and removes the temporary files.
    let stage = |exporter: &dyn Exporter| -> Result<crate::safe_fs::Staged, ReportError> {
        let name = exporter.file_name();
        let text = exporter.render(report)?;
        let text = if name.ends_with(".json") {
            text
        } else {
            scrub_markup(&text)
        };
        crate::safe_fs::stage_file(dir, name, text.as_bytes())
            .map_err(|e| write_error(&dir.join(name), e))
    };
    // Rendered slowest first, so that the threads finish together; put in place (and
    // listed) in the usual order.
    let mut formats: Vec<(usize, Box<dyn Exporter>)> =
        exporters().into_iter().enumerate().collect();
    let rank = |name: &str| SLOWEST_FIRST.iter().position(|n| *n == name);
    formats.sort_by_key(|(_, e)| rank(e.file_name()).unwrap_or(SLOWEST_FIRST.len()));
    let mut staged = side_by_side(formats, crate::parallel::cores(), |(i, exporter)| {
        stage(exporter.as_ref()).map(|file| (i, file))
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    staged.sort_by_key(|(i, _)| *i);
    side_by_side(staged.iter().collect(), staged.len(), |(_, file)| {
        file.sync()
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| write_error(dir, e))?;
    staged
        .into_iter()
        .map(|(_, file)| file.place().map_err(|e| write_error(dir, e)))
        .collect()
}

/// The formats by the time they take to render, longest first (measured on the example
/// stage's report); a format not listed goes last.
const SLOWEST_FIRST: &[&str] = &["report.sarif", "report.html", "junit.xml", "report.md"];

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
