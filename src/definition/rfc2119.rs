//! RFC 2119 keyword extraction (`haiku-format.md` §5): which units of text are
//! requirements, at which level, with which keywords. Wording is never repaired.

use std::sync::OnceLock;

use regex::Regex;

use super::body::{join_paragraph, Block};
use super::types::Level;

/// One unit of text a requirement is made of: a list item, or one sentence of prose.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub text: String,
    pub line: usize,
    pub is_item: bool,
}

/// A keyword occurrence in a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyword {
    pub keyword: String,
    pub level: Level,
    pub bold: bool,
    /// Byte offset just past the token (bold markers included).
    pub end: usize,
}

fn token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(\*\*)?\b(MUST NOT|SHALL NOT|SHOULD NOT|NOT RECOMMENDED|MUST|SHALL|SHOULD|REQUIRED|RECOMMENDED|MAY|OPTIONAL)\b(\*\*)?",
        )
        .expect("static regex")
    })
}

fn preamble_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)key words .* interpreted as described in RFC ?2119").expect("static regex")
    })
}

fn sentence_end_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // `.`, `!` or `?` (possibly followed by closing bold/quote/paren) then whitespace and an
    // uppercase letter, `*` or `"`: so `vs. targets` does not split.
    RE.get_or_init(|| Regex::new(r#"[.!?][*"')\]]*\s+["*\p{Lu}]"#).expect("static regex"))
}

/// The level a keyword maps to (rule 3).
pub fn level_of(keyword: &str) -> Level {
    match keyword {
        "MUST" | "SHALL" | "REQUIRED" => Level::Must,
        "MUST NOT" | "SHALL NOT" => Level::MustNot,
        "SHOULD" | "RECOMMENDED" => Level::Should,
        "SHOULD NOT" | "NOT RECOMMENDED" => Level::ShouldNot,
        _ => Level::May,
    }
}

/// Blanks out inline code spans so keywords inside them are not seen; byte offsets are kept.
fn mask_code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for ch in text.chars() {
        if ch == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if in_code {
            out.extend(std::iter::repeat_n(' ', ch.len_utf8()));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Every keyword in a unit, in order, skipping code spans, quoted keywords (`"MUST"`) and
/// the RFC preamble sentence (which yields none).
pub fn keywords(text: &str) -> Vec<Keyword> {
    if preamble_re().is_match(text) {
        return Vec::new();
    }
    let masked = mask_code_spans(text);
    let bytes = masked.as_bytes();
    token_re()
        .captures_iter(&masked)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let quoted = whole.start() > 0
                && bytes[whole.start() - 1] == b'"'
                && bytes.get(whole.end()) == Some(&b'"');
            if quoted {
                return None;
            }
            let keyword = c.get(2)?.as_str().to_string();
            Some(Keyword {
                level: level_of(&keyword),
                bold: c.get(1).is_some() && c.get(3).is_some(),
                keyword,
                end: whole.end(),
            })
        })
        .collect()
}

/// The primary level of a unit with several keywords (rule 5): MUST NOT / MUST beat
/// SHOULD NOT / SHOULD, which beat MAY; ties go to the first occurrence.
pub fn primary_level(keywords: &[Keyword]) -> Option<Level> {
    let rank = |l: Level| match l {
        Level::MustNot | Level::Must | Level::Implicit => 0,
        Level::ShouldNot | Level::Should => 1,
        Level::May => 2,
    };
    keywords
        .iter()
        .min_by_key(|k| rank(k.level)) // min_by_key keeps the first of equal minima
        .map(|k| k.level)
}

/// Verb stems and noun phrases left by the corpus's mechanical RFC rewrite (commit
/// `ccfd9779` of haiku-method), as listed in `haiku-format.md` §5 rule 6.
const GARBLED_STEMS: &[&str] = &[
    "captur",
    "leadd",
    "b",
    "hid",
    "fil",
    "confus",
    "chang",
    "div",
    "siz",
    "spreadd",
    "downgradd",
];

/// A simple, honest heuristic for text damaged by the mechanical rewrite: the word right
/// after the first keyword is a known garbled stem, or starts lowercase-then-uppercase
/// (`aSCII`, `sLOs`). It flags; it never repairs. Misses are expected (noun phrases such
/// as `**MUST NOT** inconsistent formatting` read like normal English to a regex).
pub fn looks_malformed(text: &str, keywords: &[Keyword]) -> bool {
    let Some(first) = keywords.first() else {
        return false;
    };
    let rest = text.get(first.end..).unwrap_or("").trim_start();
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '\'')
        .collect();
    let mut chars = word.chars();
    let lower_upper = matches!(
        (chars.next(), chars.next()),
        (Some(a), Some(b)) if a.is_lowercase() && b.is_uppercase()
    );
    lower_upper || GARBLED_STEMS.contains(&word.as_str())
}

/// Splits prose into sentences (rule 4), each with the file line it starts on. Lines are
/// joined with a space first, so hard-wrapped paragraphs split the same as long lines.
pub fn sentences(lines: &[(usize, String)]) -> Vec<Unit> {
    let joined = join_paragraph(lines);
    // Byte offset where each source line starts in `joined`.
    let mut starts = Vec::with_capacity(lines.len());
    let mut offset = 0;
    for (line, text) in lines {
        starts.push((offset, *line));
        offset += text.len() + 1;
    }
    let line_at = |pos: usize| {
        starts
            .iter()
            .take_while(|(start, _)| *start <= pos)
            .last()
            .map_or(lines.first().map_or(1, |l| l.0), |(_, l)| *l)
    };
    let mut units = Vec::new();
    let mut begin = 0;
    for m in sentence_end_re().find_iter(&joined) {
        // The sentence ends after the punctuation and closing marks; the next begins at
        // the last character of the match (the uppercase letter, `*` or `"`).
        let last_char_len = m.as_str().chars().last().map_or(1, char::len_utf8);
        let next = m.end() - last_char_len;
        let sentence = joined[begin..next].trim();
        if !sentence.is_empty() {
            units.push(Unit {
                text: sentence.to_string(),
                line: line_at(begin + (joined[begin..].len() - joined[begin..].trim_start().len())),
                is_item: false,
            });
        }
        begin = next;
    }
    let sentence = joined[begin..].trim();
    if !sentence.is_empty() {
        units.push(Unit {
            text: sentence.to_string(),
            line: line_at(begin + (joined[begin..].len() - joined[begin..].trim_start().len())),
            is_item: false,
        });
    }
    units
}

/// The requirement units of a block: the item itself, or the paragraph's sentences.
pub fn units(block: &Block) -> Vec<Unit> {
    match block {
        Block::Item { text, line } => vec![Unit {
            text: text.clone(),
            line: *line,
            is_item: true,
        }],
        Block::Paragraph { lines } => sentences(lines),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kws(text: &str) -> Vec<String> {
        keywords(text).into_iter().map(|k| k.keyword).collect()
    }

    #[test]
    fn longest_keyword_first_and_bold() {
        let k = keywords("The agent **MUST NOT** deploy");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].keyword, "MUST NOT");
        assert_eq!(k[0].level, Level::MustNot);
        assert!(k[0].bold);
        let k = keywords("You MUST run");
        assert!(!k[0].bold);
    }

    #[test]
    fn lowercase_quoted_code_and_preamble_are_not_keywords() {
        assert!(kws("the agent must run").is_empty());
        assert!(kws(r#"the word "MUST" is special"#).is_empty());
        assert!(kws("see `MUST` here").is_empty());
        assert!(kws(r#"The key words "MUST", "MUST NOT" in this section are to be interpreted as described in RFC 2119."#).is_empty());
        assert!(kws("Completion Signal (RFC 2119)").is_empty());
    }

    #[test]
    fn several_keywords_strongest_first_occurrence() {
        let k = keywords("The agent **SHOULD** do x and **MUST NOT** do y — **REQUIRED**");
        assert_eq!(primary_level(&k), Some(Level::MustNot));
        let k = keywords("Design tokens are **REQUIRED** — the agent **MUST NOT** use hex");
        assert_eq!(primary_level(&k), Some(Level::Must));
        assert_eq!(primary_level(&keywords("you MAY")), Some(Level::May));
    }

    #[test]
    fn sentences_split_on_capitals_not_on_vs() {
        let lines = vec![
            (
                10,
                "Reach is measured vs. targets. Runbook **MUST** exist.".to_string(),
            ),
            (11, "SRE **MUST** have verified it.".to_string()),
        ];
        let s = sentences(&lines);
        let texts: Vec<_> = s.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Reach is measured vs. targets.",
                "Runbook **MUST** exist.",
                "SRE **MUST** have verified it."
            ]
        );
        assert_eq!(s[0].line, 10);
        assert_eq!(s[2].line, 11);
    }

    #[test]
    fn hard_wrapped_sentence_is_one_unit() {
        let lines = vec![
            (3, "Design pillars **MUST** be".to_string()),
            (4, "defined and agreed.".to_string()),
        ];
        let s = sentences(&lines);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].text, "Design pillars **MUST** be defined and agreed.");
    }

    #[test]
    fn malformed_heuristic() {
        let t = "The agent **MUST NOT** aSCII art";
        assert!(looks_malformed(t, &keywords(t)));
        let t = "The agent **MUST** captur the data";
        assert!(looks_malformed(t, &keywords(t)));
        let t = "The agent **MUST NOT** deploy without retries";
        assert!(!looks_malformed(t, &keywords(t)));
    }
}
