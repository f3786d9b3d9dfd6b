//! Splitting a definition file into YAML front matter and a Markdown body
//! (`haiku-format.md` §2). Kept apart from the body grammar so both can be tested alone.

use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

use super::types::{Diagnostic, FrontMatter, Severity};

/// A definition file after the front matter was split off and parsed.
#[derive(Debug, Clone)]
pub struct Document {
    pub front_matter: FrontMatter,
    /// The YAML text as written (without the `---` fences); empty without front matter.
    pub front_matter_text: String,
    /// 1-based file line of the first YAML line.
    pub front_matter_line: usize,
    /// Body text, untrimmed, after CRLF normalisation.
    pub body: String,
    /// 1-based file line of the body's first line.
    pub body_line: usize,
}

impl Document {
    /// The 1-based file line of the first top-level front-matter key `key:`, if written.
    pub fn key_line(&self, key: &str) -> Option<usize> {
        self.front_matter_text
            .lines()
            .position(|l| {
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
            .map(|i| self.front_matter_line + i)
    }

    /// The file lines of the block-list items (`- …` at the start of an entry) of the
    /// top-level key `key`, in order. A flow list (`key: [..]`) yields nothing: callers fall
    /// back to the key's own line.
    pub fn list_item_lines(&self, key: &str) -> Vec<usize> {
        let Some(start) = self.key_line(key) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let mut item_indent: Option<usize> = None;
        for (i, line) in self
            .front_matter_text
            .lines()
            .enumerate()
            .skip(start - self.front_matter_line + 1)
        {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if indent == 0 && !line.starts_with('-') {
                break; // next top-level key
            }
            if line.trim_start().starts_with("- ") || line.trim() == "-" {
                match item_indent {
                    None => {
                        item_indent = Some(indent);
                        lines.push(self.front_matter_line + i);
                    }
                    Some(first) if first == indent => lines.push(self.front_matter_line + i),
                    Some(_) => {}
                }
            }
        }
        lines
    }
}

/// Normalises line endings and strips a byte-order mark: the corpus has neither, but
/// project overlays and other snapshots are not guaranteed clean.
pub fn normalise(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text.to_string()
    }
}

/// Splits and parses a file's text. The front matter runs from a first line that is exactly
/// `---` to the next line that is exactly `---` (never split on every `---`). No front matter
/// gives an empty map and the whole file as body. YAML problems become an error diagnostic
/// at the real file line.
pub fn parse_document(file: &Path, text: &str) -> Result<Document, Diagnostic> {
    let text = normalise(text);
    let no_front_matter = |text: String| Document {
        front_matter: FrontMatter::new(),
        front_matter_text: String::new(),
        front_matter_line: 1,
        body: text,
        body_line: 1,
    };
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| (text == "---").then_some(""))
    else {
        return Ok(no_front_matter(text));
    };
    // Find the closing fence: a line that is exactly `---`.
    let mut offset = 0;
    let mut closing = None;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches('\n') == "---" {
            closing = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((yaml_end, body_start)) = closing else {
        return Err(Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: Some(1),
            message: "front matter starts with `---` but has no closing `---` line; add one after the last YAML line".into(),
        });
    };
    let yaml = &rest[..yaml_end];
    let body = &rest[body_start..];
    let yaml_lines = yaml.matches('\n').count();
    let front_matter = parse_yaml(file, yaml, 2)?;
    Ok(Document {
        front_matter,
        front_matter_text: yaml.to_string(),
        front_matter_line: 2,
        body: body.to_string(),
        body_line: 2 + yaml_lines + 1,
    })
}

/// Parses YAML into a JSON map; `first_line` is the file line of the YAML's first line.
fn parse_yaml(file: &Path, yaml: &str, first_line: usize) -> Result<FrontMatter, Diagnostic> {
    let error = |line: usize, message: String| Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    if yaml.trim().is_empty() {
        return Ok(FrontMatter::new());
    }
    match serde_norway::from_str::<serde_json::Value>(yaml) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(serde_json::Value::Null) => Ok(FrontMatter::new()),
        Ok(other) => Err(error(
            first_line,
            format!(
                "front matter must be a YAML mapping (`key: value` lines), found {}",
                json_kind(&other)
            ),
        )),
        Err(e) => {
            let line = e
                .location()
                .map(|l| first_line + l.line().saturating_sub(1))
                .unwrap_or(first_line);
            let message = location_suffix()
                .replace_all(&e.to_string(), "")
                .into_owned();
            Err(error(
                line,
                format!(
                    "invalid YAML in front matter: {message}; fix the YAML between the `---` lines"
                ),
            ))
        }
    }
}

fn location_suffix() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r" at line \d+ column \d+").expect("static regex"))
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document, Diagnostic> {
        parse_document(Path::new("x.md"), text)
    }

    #[test]
    fn splits_front_matter_and_body_with_lines() {
        let doc = parse("---\nname: a\nhats: [x, y]\n---\n\n# Title\n").unwrap();
        assert_eq!(doc.front_matter["name"], "a");
        assert_eq!(doc.body, "\n# Title\n");
        assert_eq!(doc.body_line, 5);
        assert_eq!(doc.key_line("hats"), Some(3));
    }

    #[test]
    fn crlf_and_bom_are_normalised() {
        let doc = parse("\u{feff}---\r\nname: a\r\n---\r\nbody\r\n").unwrap();
        assert_eq!(doc.front_matter["name"], "a");
        assert_eq!(doc.body, "body\n");
    }

    #[test]
    fn no_front_matter_is_all_body() {
        let doc = parse("# Only body\n---\n").unwrap();
        assert!(doc.front_matter.is_empty());
        assert_eq!(doc.body, "# Only body\n---\n");
    }

    #[test]
    fn body_dashes_do_not_end_front_matter_early() {
        let doc = parse("---\na: 1\n---\ntext\n---\nmore\n").unwrap();
        assert_eq!(doc.body, "text\n---\nmore\n");
    }

    #[test]
    fn yaml_error_reports_real_file_line() {
        let err = parse("---\nname: a\nhats: [x, y\nreview: ask\n---\n").unwrap_err();
        assert_eq!(err.severity, Severity::Error);
        assert!(err.line.unwrap() >= 3, "{err}");
        assert!(err.message.contains("invalid YAML"), "{err}");
        assert!(!err.message.contains("at line"), "{err}");
    }

    #[test]
    fn unclosed_front_matter_is_an_error() {
        let err = parse("---\nname: a\n").unwrap_err();
        assert!(err.message.contains("no closing"), "{err}");
    }

    #[test]
    fn block_list_item_lines() {
        let doc = parse(
            "---\ninputs:\n  - stage: a\n    discovery: x\n  - stage: b\n    output: y\nreview: ask\n---\n",
        )
        .unwrap();
        assert_eq!(doc.list_item_lines("inputs"), vec![3, 5]);
    }
}
