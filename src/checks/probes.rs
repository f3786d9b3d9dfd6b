//! Built-in probes: facts a glob and a pattern settle, with no tool and no model.
//!
//! ```toml
//! [[check]]
//! requirement = "pipeline-engineer/anti-pattern/1"
//! name = "dag-retries"
//! probe = { files = "dags/**/*.py", must_match = '''["']retries["']\s*:\s*[1-9]''' }
//! on_finding = "veto"
//! ```
//!
//! - `must_match`: every file matching `files` must hold a line the pattern matches; a file
//!   that holds none is an error at its first line (the offending files are the evidence),
//!   one that does is a passing record at the line that matched.
//! - `must_not_match`: every line the pattern matches, in any matching file, is an error.
//! - `must_exist = true`: at least one file matches `files`.
//!
//! Patterns are Rust regexes (no backtracking: a pattern runs in time linear in the text),
//! compiled up front with a size limit and refused when they match the empty string. Files
//! are read as bound inputs are — never through a link, never the deny list (`.env*`,
//! keys, `[tools] deny`), at most [`MAX_FILE_BYTES`] each — and matched line by line, each
//! line cut at [`MAX_LINE_BYTES`].

use std::io::Read;
use std::path::Path;

use regex::Regex;
use regex_automata::meta;
use serde::{Deserialize, Serialize};

use super::{capped_line, Finding, Level};

/// The tool name findings of built-in probes carry.
pub const PROBE_TOOL: &str = "probe";

/// The largest file a probe reads (larger ones are left out with a warning).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Bytes of one line matched at most (the rest of the line is not matched).
pub const MAX_LINE_BYTES: usize = 4096;
/// Files one probe reads at most (the rest are left out with a warning).
pub const MAX_FILES: usize = 2_000;
/// Error findings of one probe at most.
pub const MAX_HITS: usize = 100;
/// Characters of a repository line kept as a finding's excerpt.
pub const MAX_EXCERPT_CHARS: usize = 240;
/// The compiled size a pattern may reach.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A probe as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// A glob relative to the workspace (`dags/**/*.py`), or a directory.
    pub files: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_not_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_exist: Option<bool>,
}

/// What a probe asks.
enum Ask {
    Match(Pattern),
    NotMatch(Pattern),
    Exist,
}

impl ProbeSpec {
    /// Exactly one question, a glob that stays in the workspace, and patterns that compile
    /// within the size limit and do not match the empty string.
    pub fn check(&self) -> Result<(), String> {
        self.ask().map(drop)
    }

    fn ask(&self) -> Result<Ask, String> {
        let files = self.files.trim();
        if files.is_empty() || files.starts_with('/') || files.split('/').any(|p| p == "..") {
            return Err(format!(
                "probe files {:?}: give a glob relative to the workspace, without '..'",
                self.files
            ));
        }
        globset::GlobBuilder::new(files.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("probe files {:?}: {e}", self.files))?;
        match (&self.must_match, &self.must_not_match, self.must_exist) {
            (Some(p), None, None) => compile(p, "must_match").map(Ask::Match),
            (None, Some(p), None) => compile(p, "must_not_match").map(Ask::NotMatch),
            (None, None, Some(true)) => Ok(Ask::Exist),
            (None, None, Some(false)) => Err(
                "must_exist = false asks nothing: leave the probe out, or use must_not_match"
                    .into(),
            ),
            _ => Err(
                "a probe asks one thing: must_match, must_not_match or must_exist = true".into(),
            ),
        }
    }
}

/// A probe's compiled pattern and its text. Built without a literal prefilter: a probe
/// matches short lines, where the lazy DFA alone is fast, and the prefilter's literal
/// analysis was a third of the build time (0.4 of 1 ms for a `(?i)\b\w*(…)` pattern, built
/// in every run). Matches exactly what `regex::Regex` matches.
#[derive(Clone)]
struct Pattern {
    regex: meta::Regex,
    text: std::sync::Arc<str>,
}

impl Pattern {
    fn is_match(&self, line: &str) -> bool {
        self.regex.is_match(line)
    }
}

/// A pattern compiled with a size limit (a pattern like `(a{1000}){1000}` is refused, not
/// built), refused when it matches the empty string (it would hold, or fail, on every line).
/// Compiled once per process: a run checks its probes when it reads the stage's mappings and
/// compiles them again to run them, and building a regex costs more than the probe.
fn compile(pattern: &str, key: &str) -> Result<Pattern, String> {
    static PATTERNS: crate::memo::Memo<Pattern> = crate::memo::Memo::new(1024);
    let compiled = PATTERNS
        .get_or_try(pattern, || build(pattern))
        .map_err(|e| format!("probe {key} {:?}: {}", capped_line(pattern, 80), e.trim()))?;
    if compiled.is_match("") {
        return Err(format!(
            "probe {key} {:?} matches the empty string, so it would hold (or fail) on every line: make it match something",
            capped_line(pattern, 80)
        ));
    }
    Ok(compiled)
}

/// `regex::RegexBuilder`'s build (its configuration and its error messages) without the
/// prefilter.
fn build(pattern: &str) -> Result<Pattern, String> {
    let config = meta::Config::new()
        .auto_prefilter(false)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(REGEX_SIZE_LIMIT);
    let regex = meta::Builder::new()
        .configure(config)
        .build(pattern)
        .map_err(|e| match (e.size_limit(), e.syntax_error()) {
            (Some(limit), _) => format!("Compiled regex exceeds size limit of {limit} bytes."),
            (None, Some(syntax)) => syntax.to_string(),
            (None, None) => e.to_string(),
        })?;
    Ok(Pattern {
        regex,
        text: pattern.into(),
    })
}

/// What a run needs to probe a workspace.
pub struct Probing<'a> {
    pub workspace: &'a Path,
    /// The workspace's files as binding sees them, minus the deny list.
    pub files: &'a [String],
    /// `[secrets] redact_inputs` patterns, applied to every excerpt.
    pub redact: &'a [Regex],
}

/// Runs one declared probe (already checked). Returns its findings and warnings.
pub fn run(name: &str, spec: &ProbeSpec, p: &Probing<'_>) -> (Vec<Finding>, Vec<String>) {
    let Ok(ask) = spec.ask() else {
        return (Vec::new(), vec![format!("probe {name}: not run")]);
    };
    let pattern = spec.files.trim().trim_start_matches("./");
    let mut matched: Vec<&String> = p
        .files
        .iter()
        .filter(|f| crate::inputs::pattern_matches(pattern, f))
        .collect();
    let mut warnings = Vec::new();
    if matched.len() > MAX_FILES {
        warnings.push(format!(
            "probe {name}: {} files match {pattern}; the first {MAX_FILES} were read",
            matched.len()
        ));
        matched.truncate(MAX_FILES);
    }
    let mut run = ProbeRun {
        name,
        pattern,
        probing: p,
        findings: Vec::new(),
        warnings,
    };
    match ask {
        Ask::Exist => run.exist(&matched),
        Ask::Match(re) => run.lines(&matched, &re, true),
        Ask::NotMatch(re) => run.lines(&matched, &re, false),
    }
    (run.findings, run.warnings)
}

struct ProbeRun<'a> {
    name: &'a str,
    pattern: &'a str,
    probing: &'a Probing<'a>,
    findings: Vec<Finding>,
    warnings: Vec<String>,
}

impl ProbeRun<'_> {
    fn finding(&mut self, level: Level, message: String, at: Option<(&str, u32, String)>) {
        let (path, line, excerpt) = match at {
            Some((path, line, excerpt)) => (Some(path.to_string()), Some(line), Some(excerpt)),
            None => (None, None, None),
        };
        self.findings.push(Finding {
            path,
            line,
            excerpt: excerpt.filter(|e| !e.is_empty()),
            ..self.bare(level, message)
        });
    }

    fn exist(&mut self, matched: &[&String]) {
        match matched.first() {
            Some(first) => {
                let message = format!("{first} exists (it matches {})", self.pattern);
                self.findings.push(Finding {
                    path: Some(first.to_string()),
                    ..self.bare(Level::Pass, message)
                });
            }
            None => {
                let message = format!(
                    "no file matches {}: the probe {} requires one",
                    self.pattern, self.name
                );
                self.finding(Level::Error, message, None);
            }
        }
    }

    fn bare(&self, level: Level, message: String) -> Finding {
        Finding {
            name: String::new(),
            tool: PROBE_TOOL.to_string(),
            rule: self.name.to_string(),
            rule_name: None,
            level,
            message,
            path: None,
            line: None,
            excerpt: None,
            fingerprint: String::new(),
            origin: PROBE_TOOL.to_string(),
        }
    }

    /// `must_match` (`want`) or `must_not_match` over each file, line by line.
    fn lines(&mut self, matched: &[&String], re: &Pattern, want: bool) {
        if matched.is_empty() {
            self.warnings.push(format!(
                "probe {}: no file matches {}: it checked nothing",
                self.name, self.pattern
            ));
            return;
        }
        let shown = capped_line(&re.text, 80);
        let mut hits = 0usize;
        for file in matched {
            let Some(text) = self.read(file) else {
                continue;
            };
            let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, cut(l)));
            if want {
                match lines.find(|(_, l)| re.is_match(l)) {
                    Some((n, line)) => {
                        let message = format!("line {n} of {file} matches `{shown}`");
                        self.finding(
                            Level::Pass,
                            message,
                            Some((file, n as u32, self.redacted_line(line))),
                        );
                    }
                    None => {
                        let first = text.lines().next().unwrap_or("");
                        let message = format!("no line of {file} matches `{shown}`: the probe {} requires one in every file matching {}", self.name, self.pattern);
                        self.finding(
                            Level::Error,
                            message,
                            Some((file, 1, self.redacted_line(first))),
                        );
                    }
                }
                continue;
            }
            for (n, line) in lines.filter(|(_, l)| re.is_match(l)) {
                hits += 1;
                if hits > MAX_HITS {
                    break;
                }
                let message = format!("line {n} of {file} matches `{shown}`, which the probe {} forbids in files matching {}", self.name, self.pattern);
                self.finding(
                    Level::Error,
                    message,
                    Some((file, n as u32, self.redacted_line(line))),
                );
            }
        }
        if hits > MAX_HITS {
            self.warnings.push(format!(
                "probe {}: {MAX_HITS} matching lines kept, more were found",
                self.name
            ));
        }
        if !want && hits == 0 {
            let message = format!(
                "no line of the {} file(s) matching {} matches `{shown}`",
                matched.len(),
                self.pattern
            );
            self.finding(Level::Pass, message, None);
        }
    }

    /// A workspace file's text: never through a link, at most [`MAX_FILE_BYTES`], UTF-8.
    fn read(&mut self, file: &str) -> Option<String> {
        let path = self.probing.workspace.join(file);
        let mut bytes = Vec::new();
        let read = crate::safe_fs::open_read_no_follow(&path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes));
        let why = match read {
            Err(e) => format!("cannot be read ({e})"),
            Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
                format!("is larger than {} MiB", MAX_FILE_BYTES >> 20)
            }
            Ok(_) => match String::from_utf8(bytes) {
                Ok(text) => return Some(text),
                Err(_) => "is not UTF-8 text".to_string(),
            },
        };
        self.warnings
            .push(format!("probe {}: {file} {why}: not probed", self.name));
        self.findings.push(Finding {
            path: Some(file.to_string()),
            ..self.bare(
                Level::Warning,
                format!("{file} {why}: the probe could not read it"),
            )
        });
        None
    }

    /// A repository line as an excerpt: redacted, capped, one line.
    fn redacted_line(&self, line: &str) -> String {
        let mut text = line.trim().to_string();
        for pattern in self.probing.redact {
            text = pattern
                .replace_all(&text, crate::secrets::REDACTED)
                .into_owned();
        }
        capped_line(&text, MAX_EXCERPT_CHARS)
    }
}

/// A line cut at [`MAX_LINE_BYTES`] (on a character boundary).
fn cut(line: &str) -> &str {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(files: &str, m: Option<&str>, n: Option<&str>, e: Option<bool>) -> ProbeSpec {
        ProbeSpec {
            files: files.into(),
            must_match: m.map(Into::into),
            must_not_match: n.map(Into::into),
            must_exist: e,
        }
    }

    #[test]
    fn bad_probes_are_refused_up_front() {
        for (s, wanted) in [
            (
                spec("dags/*.py", Some("(a{1000}){1000}"), None, None),
                "size limit",
            ),
            (spec("dags/*.py", Some("a*"), None, None), "empty string"),
            (spec("dags/*.py", Some("("), None, None), "must_match"),
            (spec("../x", None, None, Some(true)), "without '..'"),
            (spec("dags/*.py", Some("a"), Some("b"), None), "one thing"),
            (spec("dags/[", None, None, Some(true)), "probe files"),
        ] {
            let err = s.check().unwrap_err();
            assert!(err.contains(wanted), "{wanted}: {err}");
        }
        // Nested repetition runs in linear time: accepted, and matching is quick.
        assert!(spec("x", Some("(a+)+$"), None, None).check().is_ok());
    }

    /// Built without a prefilter, a probe's pattern matches exactly the lines `regex::Regex`
    /// matches, and a refused one says what `regex` says (the shipped stage's patterns, and
    /// lines that tell word boundaries, case and letters outside ASCII apart).
    #[test]
    fn probe_patterns_match_what_regex_matches() {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/hats/deployment/checks.toml"
        ))
        .unwrap();
        let mut patterns: Vec<String> = shipped
            .lines()
            .filter_map(|l| l.split("_match = '''").nth(1))
            .filter_map(|rest| rest.split("'''").next())
            .map(str::to_string)
            .collect();
        assert!(patterns.len() >= 4, "{patterns:?}");
        patterns.extend([
            "(?i)\\bÄrger\\w*".into(),
            "^\\s*#".into(),
            "[0-9]{3,}$".into(),
        ]);
        let lines = [
            "default_args = {\"retries\": 3}",
            "    retries=0,",
            "pre_retries = 2",
            "execution_timeout=timedelta(minutes=30),",
            "dag_execution_timeout = 1",
            "  pool: \"etl\"",
            "SLACK_CHANNEL = \"\"",
            "pager_Duty_key: ''",
            "alert_webhook_url = \"https://x\"",
            "Éslack_channel = \"\"",
            "ärger_slack = ''",
            "Ärgerlich",
            "   # comment",
            "id 12345",
            "",
        ];
        for pattern in &patterns {
            let ours = build(pattern).unwrap();
            let theirs = regex::Regex::new(pattern).unwrap();
            for line in lines {
                assert_eq!(
                    ours.is_match(line),
                    theirs.is_match(line),
                    "{pattern} on {line:?}"
                );
            }
        }
        for bad in ["(", "a{2,1}", "(a{1000}){1000}"] {
            let theirs = regex::RegexBuilder::new(bad)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .unwrap_err()
                .to_string();
            assert_eq!(build(bad).err().unwrap(), theirs, "{bad}");
        }
    }

    #[test]
    fn must_match_names_the_offending_file_and_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dags")).unwrap();
        std::fs::write(
            dir.path().join("dags/a.py"),
            "\"\"\"DAG a\"\"\"\nretries = 0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("dags/b.py"), "x = 1\n\"retries\": 3,\n").unwrap();
        let files = vec!["dags/a.py".to_string(), "dags/b.py".to_string()];
        let probing = Probing {
            workspace: dir.path(),
            files: &files,
            redact: &[],
        };
        let s = spec(
            "dags/**/*.py",
            Some(r#"["']?retries["']?\s*[:=]\s*[1-9]"#),
            None,
            None,
        );
        let (found, warnings) = run("dag-retries", &s, &probing);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].level, found[0].line), (Level::Error, Some(1)));
        assert_eq!(found[0].excerpt.as_deref(), Some("\"\"\"DAG a\"\"\""));
        assert_eq!((found[1].level, found[1].line), (Level::Pass, Some(2)));
    }
}
