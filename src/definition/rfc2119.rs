//! RFC 2119 keyword extraction (`haiku-format.md` §5): which units of text are
//! requirements, at which level, with which keywords. Wording is never repaired.

use std::sync::OnceLock;

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

// The three matchers below are written out by hand rather than as regexes: every run parses
// the stage's definitions, and building these regexes (Unicode `\b`, `(?i)`, `\p{Lu}`) took
// about a millisecond of each run's start. Each states the regex it stands for; the tests
// check them against it.

/// The keywords, in the order the alternation `MUST NOT|SHALL NOT|…|OPTIONAL` tries them.
const KEYWORDS: [&str; 11] = [
    "MUST NOT",
    "SHALL NOT",
    "SHOULD NOT",
    "NOT RECOMMENDED",
    "MUST",
    "SHALL",
    "SHOULD",
    "REQUIRED",
    "RECOMMENDED",
    "MAY",
    "OPTIONAL",
];

/// A keyword token found by [`next_token`]: byte range, the keyword, and whether `**`
/// opened and closed it.
struct Token {
    start: usize,
    end: usize,
    keyword: &'static str,
    open: bool,
    close: bool,
}

/// The next match at or after `from` of
/// `(\*\*)?\b(MUST NOT|SHALL NOT|SHOULD NOT|NOT RECOMMENDED|MUST|SHALL|SHOULD|REQUIRED|RECOMMENDED|MAY|OPTIONAL)\b(\*\*)?`
/// (leftmost first, Unicode word boundaries).
fn next_token(text: &str, from: usize) -> Option<Token> {
    let bytes = text.as_bytes();
    // Every match starts with `*` or a keyword's first letter: only those are tried.
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        if !matches!(b, b'*' | b'M' | b'S' | b'N' | b'R' | b'O') {
            continue;
        }
        if text[i..].starts_with("**") {
            // After `**` the boundary before the keyword always holds (`*` is no word).
            if let Some(keyword) = keyword_at(text, i + 2) {
                return Some(token(text, i, i + 2, keyword, true));
            }
        }
        let after_word = text[..i].chars().next_back().is_some_and(is_word);
        if !after_word {
            if let Some(keyword) = keyword_at(text, i) {
                return Some(token(text, i, i, keyword, false));
            }
        }
    }
    None
}

/// The first keyword of [`KEYWORDS`] at `at` that ends on a word boundary.
fn keyword_at(text: &str, at: usize) -> Option<&'static str> {
    let rest = &text[at..];
    KEYWORDS
        .into_iter()
        .find(|k| rest.starts_with(k) && !rest[k.len()..].chars().next().is_some_and(is_word))
}

fn token(text: &str, start: usize, at: usize, keyword: &'static str, open: bool) -> Token {
    let end = at + keyword.len();
    let close = text[end..].starts_with("**");
    Token {
        start,
        end: if close { end + 2 } else { end },
        keyword,
        open,
        close,
    }
}

/// A word character as the regex crate's Unicode `\w` and `\b` see it.
fn is_word(c: char) -> bool {
    regex_syntax::is_word_character(c)
}

/// Whether a line holds `(?i)key words .* interpreted as described in RFC ?2119`.
fn is_preamble(text: &str) -> bool {
    const HEAD: &str = "key words ";
    const TAIL: &str = " interpreted as described in rfc";
    text.split('\n').any(|line| {
        // Case folded as the regex folds: ASCII, and the two non-ASCII letters that fold to
        // an ASCII one (KELVIN SIGN to k, LONG S to s).
        let folded: String = line
            .chars()
            .map(|c| match c {
                '\u{212A}' => 'k',
                '\u{17F}' => 's',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        let Some(head) = folded.find(HEAD) else {
            return false;
        };
        let rest = &folded[head + HEAD.len()..];
        rest.match_indices(TAIL).any(|(at, _)| {
            let after = &rest[at + TAIL.len()..];
            after.starts_with("2119") || after.starts_with(" 2119")
        })
    })
}

/// The next match at or after `from` of `[.!?][*"')\]]*\s+["*\p{Lu}]`: a sentence's end
/// punctuation, closing marks, whitespace, and the next sentence's first character (an
/// uppercase letter, `*` or `"`). Returns the match's byte range.
fn next_sentence_end(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        if !matches!(b, b'.' | b'!' | b'?') {
            continue;
        }
        let rest = &text[i + 1..];
        let closed = rest.trim_start_matches(['*', '"', '\'', ')', ']']);
        let spaced = closed.trim_start_matches(char::is_whitespace);
        if spaced.len() == closed.len() {
            continue;
        }
        if let Some(first) = spaced.chars().next() {
            if first == '"' || first == '*' || is_uppercase_letter(first) {
                let end = text.len() - spaced.len() + first.len_utf8();
                return Some((i, end));
            }
        }
    }
    None
}

/// Unicode general category Lu (`\p{Lu}`), which is narrower than `char::is_uppercase`.
fn is_uppercase_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_uppercase();
    }
    static LU: OnceLock<Vec<(char, char)>> = OnceLock::new();
    let ranges = LU.get_or_init(|| {
        use regex_syntax::hir::{Class, HirKind};
        match regex_syntax::parse(r"\p{Lu}").map(|h| h.into_kind()) {
            Ok(HirKind::Class(Class::Unicode(class))) => class
                .ranges()
                .iter()
                .map(|r| (r.start(), r.end()))
                .collect(),
            _ => Vec::new(),
        }
    });
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
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
    if is_preamble(text) {
        return Vec::new();
    }
    let masked = mask_code_spans(text);
    let bytes = masked.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(t) = next_token(&masked, from) {
        from = t.end;
        let quoted = t.start > 0 && bytes[t.start - 1] == b'"' && bytes.get(t.end) == Some(&b'"');
        if quoted {
            continue;
        }
        found.push(Keyword {
            level: level_of(t.keyword),
            bold: t.open && t.close,
            keyword: t.keyword.to_string(),
            end: t.end,
        });
    }
    found
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
    let mut from = 0;
    while let Some((_, end)) = next_sentence_end(&joined, from) {
        from = end;
        // The sentence ends after the punctuation and closing marks; the next begins at
        // the last character of the match (the uppercase letter, `*` or `"`).
        let last_char_len = joined[..end].chars().next_back().map_or(1, char::len_utf8);
        let next = end - last_char_len;
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
    use proptest::prelude::*;
    use regex::Regex;

    /// Text made of the pieces the matchers care about: keywords and near-misses, bold and
    /// quote marks, punctuation, whitespace, and word characters of several scripts.
    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "MUST",
            "MUST NOT",
            "SHALL",
            "NOT",
            " RECOMMENDED",
            "SHOULD",
            "REQUIRED",
            "MAY",
            "OPTIONAL",
            "NOTE",
            "MUSTARD",
            "**",
            "*",
            "\"",
            "'",
            ")",
            "]",
            ".",
            "!",
            "?",
            " ",
            "  ",
            "\n",
            "\t",
            "\u{a0}",
            "x",
            "_",
            "É",
            "é",
            "ß",
            "Ⅰ",
            "ǅ",
            "Σ",
            "1",
            "`",
            "key words ",
            " interpreted as described in RFC",
            "2119",
            " 2119",
            "Key Words ",
            "\u{212A}ey words ",
            "key wordſ ",
            "ſ",
            "rfc",
            "RFC ?",
        ]);
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written matchers find exactly what the regexes they replace find.
        #[test]
        fn matchers_agree_with_their_regexes(text in pieces()) {
            let token = Regex::new(r"(\*\*)?\b(MUST NOT|SHALL NOT|SHOULD NOT|NOT RECOMMENDED|MUST|SHALL|SHOULD|REQUIRED|RECOMMENDED|MAY|OPTIONAL)\b(\*\*)?").unwrap();
            let expected: Vec<_> = token
                .captures_iter(&text)
                .map(|c| {
                    let whole = c.get(0).unwrap();
                    (whole.start(), whole.end(), c[2].to_string(), c.get(1).is_some(), c.get(3).is_some())
                })
                .collect();
            let mut got = Vec::new();
            let mut from = 0;
            while let Some(t) = next_token(&text, from) {
                from = t.end;
                got.push((t.start, t.end, t.keyword.to_string(), t.open, t.close));
            }
            prop_assert_eq!(got, expected);

            let end = Regex::new(r#"[.!?][*"')\]]*\s+["*\p{Lu}]"#).unwrap();
            let expected: Vec<_> = end.find_iter(&text).map(|m| (m.start(), m.end())).collect();
            let mut got = Vec::new();
            let mut from = 0;
            while let Some((start, stop)) = next_sentence_end(&text, from) {
                from = stop;
                got.push((start, stop));
            }
            prop_assert_eq!(got, expected);

            let preamble = Regex::new(r"(?i)key words .* interpreted as described in RFC ?2119").unwrap();
            prop_assert_eq!(is_preamble(&text), preamble.is_match(&text));
        }
    }

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
