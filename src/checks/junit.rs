//! JUnit XML in (pytest, DagBag import tests, dbt, most CI test runners): each test case with
//! a `<failure>` or an `<error>` is an error-level [`Finding`] of the tool `junit:<suite>`
//! (its innermost `<testsuite name>`), its rule the case's name and the rule's name its
//! class; a case that passed is a passing record; a skipped one is left out. `file` and
//! `line` attributes (pytest's `xunit1` family writes them) place it in the workspace.
//!
//! The reader is quick-xml's event reader: no DTD is processed and no entity but XML's five
//! and character references is expanded, so a file cannot pull in other files or expand
//! without bound.

use std::path::Path;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::location::Root;
use super::{capped, capped_line, ChecksError, Finding, Level, MAX_MESSAGE_CHARS, MAX_NAME_CHARS};

/// What one JUnit file held.
pub struct Read {
    pub findings: Vec<Finding>,
    pub tools: Vec<String>,
    pub warnings: Vec<String>,
}

/// The test case being read.
#[derive(Default)]
struct Case {
    name: String,
    class: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    failed: bool,
    skipped: bool,
    message: Option<String>,
    /// The failure's text, while inside `<failure>` / `<error>`.
    text: String,
    in_failure: bool,
}

/// The reader's state: the suites open around the current element, the case being read.
struct State<'a> {
    suites: Vec<String>,
    case: Option<Case>,
    root: &'a Root,
    origin: &'a str,
    saw_root: bool,
    outside: Vec<String>,
    out: Read,
}

/// Reads a JUnit XML report; `origin` names the file in each finding and warning.
pub fn read(bytes: &[u8], path: &Path, origin: &str, root: &Root) -> Result<Read, ChecksError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ChecksError::Junit {
        path: path.to_path_buf(),
        position: e.valid_up_to() as u64,
        message: "not UTF-8".into(),
    })?;
    let mut reader = Reader::from_str(text);
    let mut state = State {
        suites: Vec::new(),
        case: None,
        root,
        origin,
        saw_root: false,
        outside: Vec::new(),
        out: Read {
            findings: Vec::new(),
            tools: Vec::new(),
            warnings: Vec::new(),
        },
    };
    loop {
        let fail = |message: String, position: u64| ChecksError::Junit {
            path: path.to_path_buf(),
            position,
            message,
        };
        let event = reader
            .read_event()
            .map_err(|e| fail(e.to_string(), reader.error_position()))?;
        let position = reader.buffer_position();
        match event {
            Event::Start(e) => state.open(&e, false).map_err(|m| fail(m, position))?,
            Event::Empty(e) => state.open(&e, true).map_err(|m| fail(m, position))?,
            Event::End(e) => state.close(e.local_name().as_ref()),
            Event::Text(t) => state.text(&t.decode().unwrap_or_default()),
            Event::CData(t) => state.text(&t.decode().unwrap_or_default()),
            Event::GeneralRef(r) => state.text(&entity(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    if !state.saw_root {
        return Err(ChecksError::UnknownFormat {
            path: path.to_path_buf(),
        });
    }
    state.finish();
    Ok(state.out)
}

/// `&lt;` and its kin, and character references; any other entity is kept as written.
fn entity(r: &BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name = r.decode().unwrap_or_default();
    match name.as_ref() {
        "lt" => "<".into(),
        "gt" => ">".into(),
        "amp" => "&".into(),
        "apos" => "'".into(),
        "quot" => "\"".into(),
        other => format!("&{other};"),
    }
}

/// An attribute's value, unescaped (`None`: absent; an error: malformed).
fn attribute(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|err| format!("attribute {name}: {err}")),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

impl State<'_> {
    fn open(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<(), String> {
        match e.local_name().as_ref() {
            b"testsuites" => self.saw_root = true,
            b"testsuite" => {
                self.saw_root = true;
                if !empty {
                    let name = attribute(e, "name")?.unwrap_or_else(|| "tests".to_string());
                    self.suites.push(capped_line(&name, MAX_NAME_CHARS));
                }
            }
            b"testcase" => {
                let line = attribute(e, "line")?.and_then(|l| l.trim().parse().ok());
                self.case = Some(Case {
                    name: attribute(e, "name")?.unwrap_or_else(|| "(unnamed case)".into()),
                    class: attribute(e, "classname")?,
                    file: attribute(e, "file")?,
                    line: line.filter(|l| *l > 0),
                    ..Case::default()
                });
                if empty {
                    self.end_case();
                }
            }
            b"failure" | b"error" => {
                let message = attribute(e, "message")?;
                if let Some(case) = self.case.as_mut() {
                    case.failed = true;
                    case.message = case.message.take().or(message);
                    case.in_failure = !empty;
                }
            }
            b"skipped" => {
                if let Some(case) = self.case.as_mut() {
                    case.skipped = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, name: &[u8]) {
        match name {
            b"testsuite" => {
                self.suites.pop();
            }
            b"testcase" => self.end_case(),
            b"failure" | b"error" => {
                if let Some(case) = self.case.as_mut() {
                    case.in_failure = false;
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(case) = self.case.as_mut().filter(|c| c.in_failure) {
            if case.text.len() < MAX_MESSAGE_CHARS * 4 {
                case.text.push_str(text);
            }
        }
    }

    fn end_case(&mut self) {
        let Some(case) = self.case.take() else { return };
        if case.skipped && !case.failed {
            return;
        }
        let tool = format!(
            "junit:{}",
            self.suites.last().map_or("tests", String::as_str)
        );
        if !self.out.tools.contains(&tool) {
            self.out.tools.push(tool.clone());
        }
        let path = match case
            .file
            .as_deref()
            .map(|f| self.root.relative(Path::new(f)))
        {
            Some(Ok(p)) => Some(p),
            Some(Err(why)) => {
                self.outside.push(format!(
                    "{} {}",
                    capped_line(case.file.as_deref().unwrap_or(""), 120),
                    why.describe()
                ));
                None
            }
            None => None,
        };
        let first_line = case.text.lines().map(str::trim).find(|l| !l.is_empty());
        let message = match (&case.message, first_line, case.failed) {
            (Some(m), _, true) if !m.trim().is_empty() => m.clone(),
            (_, Some(l), true) => l.to_string(),
            (_, None, true) => "the test case failed".to_string(),
            _ => "the test case passed".to_string(),
        };
        self.out.findings.push(Finding {
            name: String::new(),
            tool,
            rule: capped_line(&case.name, MAX_NAME_CHARS),
            rule_name: case.class.map(|c| capped_line(&c, MAX_NAME_CHARS)),
            level: if case.failed {
                Level::Error
            } else {
                Level::Pass
            },
            message: capped(&message, MAX_MESSAGE_CHARS),
            path: path.clone(),
            line: path.and(case.line),
            excerpt: None,
            fingerprint: String::new(),
            origin: self.origin.to_string(),
        });
    }

    fn finish(&mut self) {
        if !self.outside.is_empty() {
            let shown: Vec<&str> = self.outside.iter().take(3).map(String::as_str).collect();
            self.out.warnings.push(format!(
                "{}: {} test case file(s) outside the workspace: the cases are kept without a location ({})",
                self.origin,
                self.outside.len(),
                shown.join("; ")
            ));
        }
    }
}

/// Whether `bytes` look like XML.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
        .is_some_and(|b| *b == b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAGBAG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="dag-integrity" tests="3" failures="1">
  <testcase classname="tests.test_dags" name="test_no_import_errors" file="tests/test_dags.py" line="12">
    <failure message="AssertionError: DAG import errors: {'dags/etl.py': 'schedule_interval &amp; co'}">Traceback
   line 2</failure>
  </testcase>
  <testcase classname="tests.test_dags" name="test_retries_set"/>
  <testcase classname="tests.test_dags" name="test_skipped"><skipped/></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn a_failing_case_is_an_error_finding_of_its_suite() {
        let root = Root::new(Path::new("."));
        let read = read(DAGBAG.as_bytes(), Path::new("j.xml"), "j.xml", &root).unwrap();
        assert_eq!(read.tools, ["junit:dag-integrity"]);
        assert_eq!(read.findings.len(), 2, "the skipped case is left out");
        let f = &read.findings[0];
        assert_eq!(f.level, Level::Error);
        assert_eq!(f.rule, "test_no_import_errors");
        assert_eq!(f.rule_name.as_deref(), Some("tests.test_dags"));
        assert!(
            f.message.contains("'schedule_interval & co'"),
            "{}",
            f.message
        );
        assert_eq!(
            (f.path.as_deref(), f.line),
            (Some("tests/test_dags.py"), Some(12))
        );
        assert_eq!(read.findings[1].level, Level::Pass);
    }

    #[test]
    fn hostile_xml_is_an_error_not_a_panic_nor_an_expansion() {
        let root = Root::new(Path::new("."));
        for bad in [
            "<testsuites><testcase name=\"a\"></testsuites>",
            "<testsuites><testcase name=\"a\" file=\"x></testcase></testsuites>",
            "not xml at all",
        ] {
            assert!(
                read(bad.as_bytes(), Path::new("j.xml"), "j", &root).is_err(),
                "{bad}"
            );
        }
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><testsuite name=\"s\"><testcase name=\"c\"><failure>&lol2;</failure></testcase></testsuite>";
        let read = read(laughs.as_bytes(), Path::new("j.xml"), "j", &root).unwrap();
        assert_eq!(read.findings[0].message, "&lol2;");
    }
}
