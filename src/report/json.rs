//! `report.json`: the [`Report`] itself, pretty-printed. Keys come out in struct order
//! (no maps), so identical reports give byte-identical files; the schema is documented in
//! `docs/report-json.md`.

use std::path::Path;

use super::{Exporter, Report, ReportError};

pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn file_name(&self) -> &'static str {
        "report.json"
    }

    fn render(&self, report: &Report) -> Result<String, ReportError> {
        let mut text = serde_json::to_string_pretty(report).map_err(|e| ReportError::Render {
            format: "report.json",
            message: e.to_string(),
        })?;
        text.push('\n');
        Ok(text)
    }
}

/// A finished run's report.json (`run_dir/report.json`), read through the bounded reader and
/// parsed. The caller words both failures: `unreadable` gets the reader's error, `not_a_report`
/// the file's path and the parser's.
pub fn read_recorded<E>(
    run_dir: &Path,
    unreadable: impl FnOnce(crate::safe_fs::ReadError) -> E,
    not_a_report: impl FnOnce(&Path, serde_json::Error) -> E,
) -> Result<Report, E> {
    let path = run_dir.join("report.json");
    let text = crate::safe_fs::read_bounded_string(
        &path,
        crate::safe_fs::Kind::RUN_FILE,
        crate::safe_fs::Links::Never,
    )
    .map_err(unreadable)?;
    serde_json::from_str(&text).map_err(|e| not_a_report(&path, e))
}
