//! GitHub Actions output: workflow-command annotations on stdout (at most
//! [`MAX_PER_LEVEL`] `::error` and as many `::warning` lines, most severe first) and the
//! Markdown report for `$GITHUB_STEP_SUMMARY`, capped under GitHub's 1 MiB limit. Rendering
//! only: whether to emit them is the command's business.

use super::findings::{findings, Severity};
use super::model::Report;

/// GitHub shows at most 10 annotations of each level per step; more are dropped silently.
pub const MAX_PER_LEVEL: usize = 10;
/// `$GITHUB_STEP_SUMMARY` takes at most 1 MiB per step.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;
/// Room kept under the limit (for other writers of the same step's summary).
const SUMMARY_RESERVE: usize = 16 * 1024;
/// An annotation's message is cut here (characters), with a visible marker.
const MESSAGE_MAX: usize = 1_000;

/// Text for a terminal or a CI log: control characters other than newline and tab (ESC
/// starts colours and OSC-8 hyperlinks, BEL ends them, CR rewrites a line) and invisible
/// format characters (bidi overrides) are shown as `\u{1b}`, never written raw.
pub fn printable(s: &str) -> String {
    if !s
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || crate::safe_fs::is_format_char(c))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n' && c != '\t') || crate::safe_fs::is_format_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Workflow-command data: `%`, `\r`, `\n` escaped.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow-command property value: data escaping, plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}… [cut; see report.md]", &s[..at]),
        None => s.to_string(),
    }
}

/// The `::error` / `::warning` lines (each ending in a newline). `path_prefix` is where the
/// workspace lies relative to the repository root (`""` at the root, `sub/dir/` below it);
/// `None` when unknown, and then no `file=` is given.
pub fn annotations(report: &Report, path_prefix: Option<&str>) -> String {
    let mut out = String::new();
    for level in [Severity::Error, Severity::Warning] {
        let command = level.as_str();
        for f in findings(report)
            .into_iter()
            .filter(|f| f.severity == level)
            .take(MAX_PER_LEVEL)
        {
            let mut props = Vec::new();
            if let (Some(prefix), Some(loc)) = (path_prefix, &f.location) {
                if loc.in_repository {
                    props.push(format!(
                        "file={}",
                        escape_property(&printable(&format!("{prefix}{}", loc.path)))
                    ));
                    if let Some(line) = loc.line {
                        props.push(format!("line={line}"));
                    }
                }
            }
            props.push(format!(
                "title={}",
                escape_property(&printable(&format!("hatrack: {}", f.rule_id)))
            ));
            out.push_str(&format!(
                "::{command} {}::{}\n",
                props.join(","),
                escape_data(&printable(&cut(&f.message, MESSAGE_MAX)))
            ));
        }
    }
    out
}

/// The step summary: the Markdown report, [`printable`], cut (on a line boundary) to fit
/// under the limit with a pointer to the full report when it does not.
pub fn step_summary(markdown: &str, full_report: &str) -> String {
    let markdown = &printable(markdown);
    let budget = SUMMARY_LIMIT - SUMMARY_RESERVE;
    let mut text = if markdown.len() <= budget {
        markdown.to_string()
    } else {
        let pointer = format!(
            "\n_The report was cut to fit GitHub's step-summary limit; the full report is {full_report}._\n"
        );
        let mut end = budget.saturating_sub(pointer.len());
        while !markdown.is_char_boundary(end) {
            end -= 1;
        }
        let end = markdown[..end].rfind('\n').map_or(end, |i| i + 1);
        format!("{}{pointer}", &markdown[..end])
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_values_are_escaped() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }

    #[test]
    fn a_long_summary_is_cut_on_a_line_with_a_pointer() {
        let line = "x".repeat(99) + "\n";
        let md = line.repeat(20_000);
        let s = step_summary(&md, "transcripts/run/report.html");
        assert!(s.len() < SUMMARY_LIMIT, "{}", s.len());
        assert!(s.contains("the full report is transcripts/run/report.html"));
        assert!(s.contains(&format!("{line}\n_The report was cut")));
        assert_eq!(step_summary("short", "x"), "short\n");
    }
}
