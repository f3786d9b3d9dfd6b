//! Keeps secrets off disk. Everything hatrack writes (transcript lines, reports, logs) can go
//! through one [`Scrubber`] that replaces the API key's value and any configured pattern
//! with `[REDACTED]`.

use regex::Regex;

/// What a scrubbed secret is replaced with.
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
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
            // Secrets inside JSON strings may have been escaped (e.g. a `/` or a quote);
            // scrub the JSON-escaped form too.
            if let Ok(quoted) = serde_json::to_string(secret) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != secret && out.contains(escaped) {
                    out = out.replace(escaped, REDACTED);
                }
            }
        }
        for pattern in &self.patterns {
            if pattern.is_match(&out) {
                out = pattern.replace_all(&out, REDACTED).into_owned();
            }
        }
        out
    }
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
    fn empty_scrubber_changes_nothing() {
        let s = Scrubber::new(vec!["short".into()], vec![]);
        assert!(s.is_empty());
        assert_eq!(s.scrub("short text"), "short text");
    }
}
