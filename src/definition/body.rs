//! The Markdown body grammar of definition files (`haiku-format.md` §4): labelled sections
//! (`**Focus:** …`, also `**Focus**:`), ATX headings, list items with their continuation
//! lines, and prose paragraphs. Fenced code blocks are kept in a section's text but never
//! scanned. Line numbers are file lines, so every requirement can point at its source.

/// How a section started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionStart {
    /// Text before the first label or heading.
    Preamble,
    /// `**Label:**` at the start of a line.
    Label,
    /// An ATX heading of this level.
    Heading(usize),
}

/// A run of text a requirement can come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A list item with its continuation lines joined by a space; marker removed.
    Item { text: String, line: usize },
    /// A paragraph: its lines (file line, trimmed text). A label's inline value starts one.
    Paragraph { lines: Vec<(usize, String)> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BodySection {
    pub start: SectionStart,
    /// Normalised label (see [`normalise_label`]); empty for the preamble.
    pub label: String,
    /// The label or heading text as written.
    pub heading: String,
    pub line: usize,
    /// The section's text after the label or heading (including code blocks), trimmed.
    pub text: String,
    pub blocks: Vec<Block>,
}

// The three line shapes below were regexes; building them took about half a millisecond of
// every run (Unicode `.`), so they are written out by hand. The tests hold each to the
// regex it replaces, quoted on it, over generated lines.

/// `^\*\*(?P<a>[^*\n]+?):\*\*[ \t]*(?P<ai>.*)$|^\*\*(?P<b>[^*\n]+?)\*\*:[ \t]*(?P<bi>.*)$`:
/// a `**Label:**` or `**Label**:` line, as (label, text after it).
fn label_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("**")?;
    // The label holds no `*`: it ends at the first one.
    let (name, after) = rest.split_at(rest.find('*')?);
    if name.contains('\n') {
        return None;
    }
    if let Some(label) = name.strip_suffix(':').filter(|l| !l.is_empty()) {
        if let Some(text) = after.strip_prefix("**").and_then(after_blanks) {
            return Some((label, text));
        }
    }
    if name.is_empty() {
        return None;
    }
    after
        .strip_prefix("**:")
        .and_then(after_blanks)
        .map(|text| (name, text))
}

/// `^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$`: an ATX heading, as (level, text).
fn heading_line(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.len() - t.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let text = blank_then(&t[level..])?;
    Some((level, text.trim_end_matches([' ', '\t', '#'])))
}

/// `^[ \t]*(?:[-*+]|[0-9]{1,9}[.)])[ \t]+(.*)$`: a list item's text. ASCII digits, as
/// CommonMark numbers list items.
fn item_line(line: &str) -> Option<&str> {
    let t = line.trim_start_matches([' ', '\t']);
    let rest = match t.strip_prefix(['-', '*', '+']) {
        Some(rest) => rest,
        None => {
            let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if !(1..=9).contains(&digits) {
                return None;
            }
            t[digits..].strip_prefix(['.', ')'])?
        }
    };
    blank_then(rest)
}

/// `[ \t]+(.*)$`: the text after at least one blank.
fn blank_then(s: &str) -> Option<&str> {
    let text = s.trim_start_matches([' ', '\t']);
    if text.len() == s.len() {
        return None;
    }
    after_blanks(s)
}

/// `[ \t]*(.*)$`: the text after any blanks (`.` never crosses a line end).
fn after_blanks(s: &str) -> Option<&str> {
    (!s.contains('\n')).then(|| s.trim_start_matches([' ', '\t']))
}

fn fence_marker(line: &str) -> Option<&'static str> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    if t.starts_with("```") {
        Some("```")
    } else if t.starts_with("~~~") {
        Some("~~~")
    } else {
        None
    }
}

/// Normalises a label or heading: lowercase, trailing ` (rfc 2119)` and `:` stripped,
/// `anti patterns` / `anti-pattern…` → `anti-patterns`, `completion signal…` →
/// `completion signal`.
pub fn normalise_label(raw: &str) -> String {
    let mut l = raw.trim().trim_end_matches(':').trim().to_lowercase();
    if let Some(stripped) = l.strip_suffix("(rfc 2119)") {
        l = stripped.trim().to_string();
    }
    let l = l.replace("anti patterns", "anti-patterns");
    if l.starts_with("anti-pattern") {
        return "anti-patterns".into();
    }
    if l.starts_with("completion signal") {
        return "completion signal".into();
    }
    l
}

/// A normalised label without a trailing qualifier: `check (per dag)` → `check`,
/// `reject if (rfc 2119)` → `reject if`. The method writes qualifiers after a label's name
/// (`**Check (lens):**`); what kind of section it is depends on the name only.
pub fn base_label(label: &str) -> String {
    let mut l = normalise_label(label);
    while l.ends_with(')') {
        match l.rfind('(') {
            Some(open) if open > 0 => l = l[..open].trim_end().to_string(),
            _ => break,
        }
    }
    l
}

/// Whether a label names a list of what to reject or forbid (`**Reject:**`, `**Reject
/// if:**`, `**Forbidden:**`, `**Never:**`, `**Must not:**`, …): its items are checks or
/// constraints at MUST NOT unless an item says otherwise.
pub fn is_reject_label(label: &str) -> bool {
    let l = base_label(label);
    let first = l.split_whitespace().next().unwrap_or("");
    matches!(
        first,
        "reject" | "forbid" | "forbidden" | "prohibited" | "disallowed" | "never"
    ) || l == "must not"
        || l.starts_with("must not ")
}

/// Whether a label names a list of checks (`**Check:**`, `## Check`, `**Check (…):**`,
/// `**Checks:**`).
pub fn is_check_label(label: &str) -> bool {
    matches!(base_label(label).as_str(), "check" | "checks")
}

impl BodySection {
    /// An empty section that starts at `line`.
    fn new(start: SectionStart, label: String, heading: String, line: usize) -> BodySection {
        BodySection {
            start,
            label,
            heading,
            line,
            text: String::new(),
            blocks: Vec::new(),
        }
    }
}

/// What the previous line left open for continuation.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    Nothing,
    Item,
    Paragraph,
}

/// [`parse_body`]'s state between lines: the sections so far (the last one is being
/// filled), the raw lines of each (its text), what the next line may continue, and the
/// marker of an open code fence.
struct BodyParser<'a> {
    sections: Vec<BodySection>,
    raw_lines: Vec<Vec<&'a str>>,
    open: Open,
    fence: Option<&'static str>,
}

/// Parses a body. `first_line` is the file line of the body's first line.
pub fn parse_body(body: &str, first_line: usize) -> Vec<BodySection> {
    let mut parser = BodyParser {
        sections: vec![BodySection::new(
            SectionStart::Preamble,
            String::new(),
            String::new(),
            first_line,
        )],
        raw_lines: vec![Vec::new()],
        open: Open::Nothing,
        fence: None,
    };
    for (i, line) in body.lines().enumerate() {
        parser.line(first_line + i, line);
    }
    parser.finish()
}

impl<'a> BodyParser<'a> {
    /// One line of the body: code fence, heading, label, or content of the current section.
    fn line(&mut self, lineno: usize, line: &'a str) {
        if self.fenced(line) {
            return;
        }
        if let Some((level, text)) = heading_line(line) {
            let text = text.to_string();
            let label = normalise_label(&text);
            self.sections.push(BodySection::new(
                SectionStart::Heading(level),
                label,
                text,
                lineno,
            ));
            self.raw_lines.push(Vec::new());
            self.open = Open::Nothing;
            return;
        }
        if let Some((label, inline)) = label_line(line) {
            self.start_label(lineno, label, inline);
            return;
        }
        self.content(lineno, line);
    }

    /// A line inside a code fence, or one that opens or closes it: kept in the section's
    /// text, never scanned. Returns whether the line was such a line.
    fn fenced(&mut self, line: &'a str) -> bool {
        let current = self.sections.len() - 1;
        if let Some(marker) = self.fence {
            self.raw_lines[current].push(line);
            if line.trim_start().starts_with(marker)
                && line.trim().trim_start_matches(marker).is_empty()
            {
                self.fence = None;
            }
            return true;
        }
        if let Some(marker) = fence_marker(line) {
            self.raw_lines[current].push(line);
            self.fence = Some(marker);
            self.open = Open::Nothing;
            return true;
        }
        false
    }

    /// `**Label:** inline text` starts a section; the inline text, if any, starts its first
    /// paragraph.
    fn start_label(&mut self, lineno: usize, label: &'a str, inline: &'a str) {
        let inline = inline.trim();
        let mut section = BodySection::new(
            SectionStart::Label,
            normalise_label(label),
            label.to_string(),
            lineno,
        );
        let mut raw = Vec::new();
        self.open = Open::Nothing;
        if !inline.is_empty() {
            section.blocks.push(Block::Paragraph {
                lines: vec![(lineno, inline.to_string())],
            });
            raw.push(inline);
            self.open = Open::Paragraph;
        }
        self.sections.push(section);
        self.raw_lines.push(raw);
    }

    /// A line of the current section: a blank line closes what was open, a list item starts
    /// an item, anything else continues the open item or paragraph or starts a paragraph.
    fn content(&mut self, lineno: usize, line: &'a str) {
        let current = self.sections.len() - 1;
        self.raw_lines[current].push(line);
        let section = &mut self.sections[current];
        if line.trim().is_empty() {
            self.open = Open::Nothing;
            return;
        }
        if let Some(text) = item_line(line) {
            section.blocks.push(Block::Item {
                text: text.trim().to_string(),
                line: lineno,
            });
            self.open = Open::Item;
            return;
        }
        let trimmed = line.trim();
        match (self.open, section.blocks.last_mut()) {
            (Open::Item, Some(Block::Item { text, .. })) => {
                text.push(' ');
                text.push_str(trimmed);
                self.open = Open::Item;
            }
            (Open::Paragraph, Some(Block::Paragraph { lines })) => {
                lines.push((lineno, trimmed.to_string()));
                self.open = Open::Paragraph;
            }
            _ => {
                section.blocks.push(Block::Paragraph {
                    lines: vec![(lineno, trimmed.to_string())],
                });
                self.open = Open::Paragraph;
            }
        }
    }

    /// The sections with their text; an empty preamble is dropped.
    fn finish(self) -> Vec<BodySection> {
        let mut sections = self.sections;
        for (section, raw) in sections.iter_mut().zip(self.raw_lines) {
            section.text = raw.join("\n").trim().to_string();
        }
        if sections[0].text.is_empty() && sections[0].blocks.is_empty() {
            sections.remove(0);
        }
        sections
    }
}

/// Joins a paragraph's lines with single spaces (hard wraps undone).
pub fn join_paragraph(lines: &[(usize, String)]) -> String {
    lines
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    /// Lines built from the pieces the three line shapes turn on: a start that nearly is or
    /// is one of them, then anything.
    fn lines() -> impl Strategy<Value = String> {
        let start = prop::sample::select(vec![
            "",
            " ",
            "   ",
            "    ",
            "\t",
            "**",
            "**a:**",
            "**a**:",
            "#",
            "######",
            "#######",
            "- ",
            "* ",
            "1. ",
            "123456789)",
            "1234567890.",
        ]);
        let piece = prop::sample::select(vec![
            " ",
            "  ",
            "\t",
            "#",
            "##",
            "###",
            "*",
            "**",
            ":",
            ":**",
            "**:",
            "-",
            "+",
            ".",
            ")",
            "1",
            "12",
            "123456789",
            "0",
            "a",
            "Focus",
            "é",
            "\n",
            "\r",
            "x y",
        ]);
        (start, prop::collection::vec(piece, 0..10))
            .prop_map(|(start, rest)| format!("{start}{}", rest.concat()))
    }

    /// The regexes the line matchers replace: label, heading, item (built once for every case).
    fn replaced() -> &'static [Regex; 3] {
        static RES: std::sync::OnceLock<[Regex; 3]> = std::sync::OnceLock::new();
        RES.get_or_init(|| {
            [
                Regex::new(r"^\*\*(?P<a>[^*\n]+?):\*\*[ \t]*(?P<ai>.*)$|^\*\*(?P<b>[^*\n]+?)\*\*:[ \t]*(?P<bi>.*)$").unwrap(),
                Regex::new(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$").unwrap(),
                Regex::new(r"^[ \t]*(?:[-*+]|[0-9]{1,9}[.)])[ \t]+(.*)$").unwrap(),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Each hand-written line matcher finds what the regex it replaces finds.
        #[test]
        fn line_matchers_agree_with_their_regexes(line in lines()) {
            let [label, heading, item] = replaced();
            let expected = label.captures(&line).map(|c| {
                let pick = |a: &str, b: &str| c.name(a).or_else(|| c.name(b)).unwrap().as_str().to_string();
                (pick("a", "b"), pick("ai", "bi"))
            });
            let got = label_line(&line).map(|(l, t)| (l.to_string(), t.to_string()));
            prop_assert_eq!(got, expected);

            let expected = heading.captures(&line).map(|c| (c[1].len(), c[2].to_string()));
            let got = heading_line(&line).map(|(l, t)| (l, t.to_string()));
            prop_assert_eq!(got, expected);

            let expected = item.captures(&line).map(|c| c[1].to_string());
            prop_assert_eq!(item_line(&line).map(str::to_string), expected);
        }
    }

    #[test]
    fn hat_body_sections_and_items() {
        let body = "\n**Focus:** Do the thing.\n\n**Produces:** Stuff\n- one\n- two\n  wrapped\n\n**Anti-patterns (RFC 2119):**\n- The agent **MUST NOT** x\n\nTrailing prose.\n";
        let s = parse_body(body, 6);
        let labels: Vec<_> = s.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["focus", "produces", "anti-patterns"]);
        assert_eq!(s[0].line, 7);
        assert_eq!(s[0].text, "Do the thing.");
        assert_eq!(
            s[1].blocks[2],
            Block::Item {
                text: "two wrapped".into(),
                line: 11
            }
        );
        assert_eq!(s[2].blocks.len(), 2);
        assert!(matches!(&s[2].blocks[1], Block::Paragraph { lines } if lines[0].0 == 17));
    }

    #[test]
    fn colon_outside_bold_is_a_label_too() {
        let s = parse_body("**Mandate**: The agent checks.\n", 1);
        assert_eq!(s[0].label, "mandate");
    }

    #[test]
    fn bold_inside_items_is_not_a_label() {
        let s = parse_body("**Check:**\n- **Pillars:** x\n", 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].blocks.len(), 1);
    }

    #[test]
    fn fenced_code_is_not_scanned() {
        let s = parse_body(
            "## A\n```bash\n# not a heading\n- not an item\n```\ntext\n",
            1,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].blocks.len(), 1);
        assert!(s[0].text.contains("# not a heading"));
    }

    #[test]
    fn headings_normalise() {
        assert_eq!(
            normalise_label("Completion Signal (RFC 2119)"),
            "completion signal"
        );
        assert_eq!(normalise_label("Anti-patterns (RFC 2119)"), "anti-patterns");
        assert_eq!(normalise_label("Anti Patterns"), "anti-patterns");
        assert_eq!(normalise_label("Criteria Guidance"), "criteria guidance");
    }

    #[test]
    fn qualified_and_reject_labels() {
        assert_eq!(base_label("Check (per DAG, lens)"), "check");
        assert_eq!(base_label("Reject if (RFC 2119)"), "reject if");
        assert!(is_check_label("Check (lens: retries)"));
        assert!(is_check_label("Checks"));
        assert!(!is_check_label("Checklist"));
        for l in [
            "Reject",
            "Reject if",
            "Forbidden",
            "Never",
            "Must not (ever)",
        ] {
            assert!(is_reject_label(l), "{l}");
        }
        assert!(!is_reject_label("What you do NOT do"));
        assert!(!is_reject_label("Rejected alternatives"));
        assert!(!is_reject_label("Nevertheless"));
        assert!(!is_reject_label("Mandate"));
    }
}
