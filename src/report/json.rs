//! `report.json`: the [`Report`] itself, pretty-printed. Keys come out in struct order
//! (no maps), so identical reports give byte-identical files; the schema is documented in
//! `docs/report-json.md`.

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
