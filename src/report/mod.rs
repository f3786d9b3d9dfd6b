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

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
/// `scrub` runs twice: over every string of the report *before* rendering (a format may
/// escape a secret into a form the scrubber would no longer recognise, e.g. `&` → `&amp;`
/// or `_` → `\_`), and over each rendered text before it is written.
///
/// All formats are rendered before any file is touched, and each file is written to a
/// temporary file in `dir` and renamed into place, so a failure or a crash never leaves a
/// half-written report: each file is either the old one or the complete new one.
pub fn write_all(
    report: &Report,
    dir: &Path,
    scrub: &dyn Fn(&str) -> String,
) -> Result<Vec<PathBuf>, ReportError> {
    let scrubbed = scrub_report(report, scrub)?;
    let mut rendered = Vec::new();
    for exporter in exporters() {
        let text = exporter.render(&scrubbed)?;
        rendered.push((exporter.file_name(), scrub(&text)));
    }
    fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in rendered {
        let path = dir.join(name);
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Applies `scrub` to every string in the report (through its JSON form, so a field added
/// to the model later is covered without touching this function).
fn scrub_report(report: &Report, scrub: &dyn Fn(&str) -> String) -> Result<Report, ReportError> {
    fn walk(value: &mut serde_json::Value, scrub: &dyn Fn(&str) -> String) {
        match value {
            serde_json::Value::String(s) => *s = scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, scrub)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(v, scrub)),
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

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk, then renames it
/// over `path` (atomic on the same file system).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and per call, so two writers never share a temporary file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{file_name}.{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}
