//! Keeps secrets off disk. Everything hatrack writes (transcript lines, reports, logs) can go
//! through one [`Scrubber`] that replaces the API key's value and any configured pattern
//! with `[REDACTED]`.
//!
//! JSON is scrubbed as data: each string value (and, in free-form objects such as request
//! bodies, each key) is scrubbed on its own, never the serialized bytes, so a pattern like
//! `password\s*=\s*\S+` cannot eat a closing quote and break the file it protects.
//! Patterns that can match the empty string are refused up front ([`compile_patterns`]):
//! they would insert `[REDACTED]` between every character.

use regex::Regex;
use serde_json::Value;

/// Keys whose string values are hatrack's own identifiers (never secrets), left as they are
/// so that a broad pattern cannot break replay: step ids, hashes, digests, times.
pub const IDENTIFIER_KEYS: &[&str] = &[
    "step",
    "request_hash",
    "started_at",
    "hatrack_version",
    "record_mode",
    "definition_digest",
    "digest",
    "sha256",
];

/// A configured pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatternError {
    #[error("{source_name}: {pattern:?} is not a valid regular expression: {message}")]
    Invalid {
        source_name: String,
        pattern: String,
        message: String,
    },
    #[error("{source_name}: {pattern:?} can match the empty string, so it would redact between every character and destroy what it protects; make it require at least one character (e.g. `+` instead of `*`)")]
    MatchesEmpty {
        source_name: String,
        pattern: String,
    },
}

/// A compiled pattern, kept for the process: the runs of a batch read the same patterns from
/// their hatrack.toml files, and building a regex costs more than scrubbing with it.
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static PATTERNS: crate::memo::Memo<Regex> = crate::memo::Memo::new(1024);
    PATTERNS.get_or_try(pattern, || Regex::new(pattern))
}

/// Compiles configured patterns, refusing invalid ones and any that can match the empty
/// string (`a*`, `^`, `\b`, `(?:)`…). `source_name` names where they came from
/// (`hatrack.toml [secrets] scrub_patterns`) for the error message.
pub fn compile_patterns(
    patterns: &[String],
    source_name: &str,
) -> Result<Vec<Regex>, PatternError> {
    let mut out = Vec::new();
    for p in patterns {
        let invalid = |message: String| PatternError::Invalid {
            source_name: source_name.to_string(),
            pattern: p.clone(),
            message,
        };
        let hir = regex_syntax::Parser::new()
            .parse(p)
            .map_err(|e| invalid(e.to_string()))?;
        if hir.properties().minimum_len().is_none_or(|n| n == 0) {
            return Err(PatternError::MatchesEmpty {
                source_name: source_name.to_string(),
                pattern: p.clone(),
            });
        }
        let regex = compiled(p).map_err(|e| invalid(e.to_string()))?;
        if regex.is_match("") {
            return Err(PatternError::MatchesEmpty {
                source_name: source_name.to_string(),
                pattern: p.clone(),
            });
        }
        out.push(regex);
    }
    Ok(out)
}

/// What a scrubbed secret is replaced with.
/// How many levels of JSON escaping of a secret [`Scrubber::scrub_literals`] replaces.
const LITERAL_ESCAPES: usize = 4;

/// `secret`, then its JSON-escaped form, that form escaped again, … up to `levels`
/// escapes, stopping where escaping no longer changes it.
fn escaped_forms(secret: &str, levels: usize) -> impl Iterator<Item = String> {
    std::iter::successors(Some(secret.to_string()), |form| {
        let quoted = serde_json::to_string(form).ok()?;
        let escaped = &quoted[1..quoted.len() - 1];
        (escaped != form).then(|| escaped.to_string())
    })
    .take(levels + 1)
}

pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are ignored: scrubbing a 3-character "key" would redact
/// ordinary words all over the transcript and make it useless.
pub const MIN_SECRET_LEN: usize = 8;

/// Replaces known secret values and pattern matches in text before it is written anywhere.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
    patterns: Vec<Regex>,
}

impl Scrubber {
    /// `secrets` are literal values (the API key); `patterns` are regexes from the config
    /// (`scrub = ["sk-[A-Za-z0-9]{20,}"]`). Secrets are trimmed; empty or short ones
    /// (< [`MIN_SECRET_LEN`] chars) are ignored.
    pub fn new(secrets: Vec<String>, patterns: Vec<Regex>) -> Scrubber {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| s.chars().count() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets, patterns }
    }

    /// True when there is nothing to scrub (lets callers skip the work).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.patterns.is_empty()
    }

    /// `text` with every secret value and pattern match replaced by `[REDACTED]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = self.scrub_literals(text);
        for pattern in &self.patterns {
            if pattern.is_match(&out) {
                out = replace_non_empty(pattern, &out);
            }
        }
        out
    }

    /// Whether scrubbing the string values of a JSON document could change any of them,
    /// judged from its serialized text `json`: always with patterns; with secrets only, when
    /// a secret, in any escaped form [`Scrubber::scrub_literals`] replaces or one level of
    /// escaping deeper (as a string holding it is serialized), appears in the text.
    pub fn could_change_json(&self, json: &str) -> bool {
        !self.patterns.is_empty()
            || self.secrets.iter().any(|secret| {
                escaped_forms(secret, LITERAL_ESCAPES + 1).any(|form| json.contains(form.as_str()))
            })
    }

    /// `text` with the literal secret values (the API key, also JSON-escaped) replaced, but
    /// no pattern applied: safe over rendered markup (XML, HTML), where a pattern could match
    /// across the structure.
    pub fn scrub_literals(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            // Secrets inside JSON strings may have been escaped (a quote, a backslash), and
            // JSON text holds JSON text (an answer quoted in a re-ask): each escaped form is
            // scrubbed too, as deep as escaping still changes it.
            for form in escaped_forms(secret, LITERAL_ESCAPES) {
                if out.contains(form.as_str()) {
                    out = out.replace(form.as_str(), REDACTED);
                }
            }
        }
        out
    }

    /// Scrubs a JSON value as data: every string value, except those under
    /// [`IDENTIFIER_KEYS`]; object keys are left alone (they are a format's field names).
    pub fn scrub_values(&self, value: &mut Value) {
        self.walk(value, false);
    }

    /// Scrubs free-form JSON (a request or response body): every string value and every
    /// object key.
    pub fn scrub_json(&self, value: &mut Value) {
        self.walk(value, true);
    }

    fn walk(&self, value: &mut Value, keys: bool) {
        match value {
            Value::String(s) => {
                let scrubbed = self.scrub(s);
                if scrubbed != *s {
                    *s = match self.scrub_nested_json(s) {
                        Some(json) => json,
                        None => scrubbed,
                    };
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, keys)),
            Value::Object(map) => {
                if keys && map.keys().any(|k| self.scrub(k) != *k) {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.scrub(&k), v);
                    }
                }
                for (k, v) in map.iter_mut() {
                    if !keys && IDENTIFIER_KEYS.contains(&k.as_str()) {
                        continue;
                    }
                    self.walk(v, keys);
                }
            }
            _ => {}
        }
    }
}

impl Scrubber {
    /// A string that holds JSON itself (a structured answer in a response's `content`,
    /// tool-call arguments) is scrubbed as JSON — its string values, not its keys or its
    /// punctuation — so it still parses when replayed. `None` when it is not JSON.
    fn scrub_nested_json(&self, text: &str) -> Option<String> {
        let trimmed = text.trim_start();
        if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
            return None;
        }
        let mut value: Value = serde_json::from_str(text).ok()?;
        self.walk(&mut value, false);
        serde_json::to_string(&value).ok()
    }
}

/// Replaces every non-empty match (an empty match redacts nothing and is skipped, should a
/// pattern that can match empty ever get this far).
fn replace_non_empty(pattern: &Regex, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in pattern.find_iter(text) {
        if m.is_empty() {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(REDACTED);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_key_and_patterns() {
        let s = Scrubber::new(
            vec![
                "sk-hatrack-canary-123456".into(),
                "abc".into(),
                String::new(),
            ],
            vec![Regex::new(r"tok_[0-9]{4}").unwrap()],
        );
        assert_eq!(
            s.scrub("key sk-hatrack-canary-123456 and tok_1234 abc"),
            "key [REDACTED] and [REDACTED] abc"
        );
    }

    #[test]
    fn patterns_that_match_empty_are_refused() {
        for p in ["", "a*", "^", "\\b", "(?:)", "x?"] {
            let err = compile_patterns(&[p.to_string()], "hatrack.toml").unwrap_err();
            assert!(
                matches!(err, PatternError::MatchesEmpty { .. }),
                "{p}: {err}"
            );
        }
        assert!(matches!(
            compile_patterns(&["(".into()], "f").unwrap_err(),
            PatternError::Invalid { .. }
        ));
        assert_eq!(
            compile_patterns(&[r"password\s*=\s*\S+".into()], "f")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn json_is_scrubbed_as_values_not_bytes() {
        let s = Scrubber::new(
            vec![],
            compile_patterns(&[r"password\s*=\s*\S+".into()], "f").unwrap(),
        );
        let mut v = serde_json::json!({
            "step": "hat/password=x",
            "request": {"messages": [{"content": "db password = hunter2\", \"role"}], "password=k": 1}
        });
        s.scrub_values(&mut v);
        assert_eq!(v["step"], "hat/password=x");
        assert_eq!(
            v["request"]["messages"][0]["content"],
            "db [REDACTED] \"role"
        );
        let mut body = v["request"].take();
        s.scrub_json(&mut body);
        assert!(body.get("[REDACTED]").is_some(), "{body}");
    }

    #[test]
    fn a_secret_is_scrubbed_in_every_json_escaping() {
        let key = r#"sk-a"b\c"#;
        let s = Scrubber::new(vec![key.into()], vec![]);
        let once = serde_json::to_string(key).unwrap();
        let twice = serde_json::to_string(&once).unwrap();
        let thrice = serde_json::to_string(&twice).unwrap();
        for text in [key.to_string(), once, twice, thrice] {
            let scrubbed = s.scrub(&text);
            assert!(
                !scrubbed.contains("a\"b") && !scrubbed.contains(r#"a\"b"#),
                "{scrubbed}"
            );
            assert!(scrubbed.contains(REDACTED), "{text} → {scrubbed}");
        }
    }

    #[test]
    fn json_inside_a_string_stays_json() {
        let s = Scrubber::new(
            vec!["sk-secret-0123456789".into()],
            compile_patterns(&[r#""[^"]*""#.into(), "tok_[0-9]+".into()], "f").unwrap(),
        );
        let answer = r#"{"summary": "uses tok_42 and sk-secret-0123456789", "verdicts": [{"id": "x/1", "verdict": "pass"}]}"#;
        let mut body = serde_json::json!({"choices": [{"message": {"content": answer}}]});
        s.scrub_json(&mut body);
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(content).expect("still JSON");
        assert_eq!(parsed["summary"], "uses [REDACTED] and [REDACTED]");
        assert_eq!(parsed["verdicts"][0]["verdict"], "pass");
        // Plain text is scrubbed as text.
        assert_eq!(s.scrub(r#"say "hi""#), "say [REDACTED]");
    }

    #[test]
    fn empty_scrubber_changes_nothing() {
        let s = Scrubber::new(vec!["short".into()], vec![]);
        assert!(s.is_empty());
        assert_eq!(s.scrub("short text"), "short text");
    }
}
