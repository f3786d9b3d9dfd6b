//! Evidence grounding: a quote counts only if it means something (enough words and
//! characters, not just punctuation) and occurs — whitespace folded, at word boundaries — in
//! the source named **exactly** as the step was shown it. This is how hatrack refuses to
//! trust a judge that invents evidence, cites `"e"`, or borrows a name it was not shown.
//!
//! **Distinct requirements need distinct evidence.** A quote shorter than
//! [`GroundingRules::shared_quote_min_words`] (8 words by default) grounds at most one
//! requirement's verdict in the whole run: the first, in report order (hat constraints, review
//! checks, the completion signal), that cites it with a `met` or `unmet`. For every later
//! requirement that cites the same words — compared lowercased, punctuation aside; two
//! quotes are the same evidence when they share a run of words longer than half the shorter
//! one (one inside the other, or overlapping windows of one line) — it grounds nothing
//! ([`Ungrounded::Reused`]), so one heading quoted for every requirement grounds one of them.
//! A quote of 8 words or more says enough to stand for more than one requirement, and so does
//! a quote of a check's finding (one finding may speak to several requirements).
//! See [`distinct_evidence`].

use std::sync::OnceLock;

use serde::Deserialize;

use super::{markers, Cause, Evidence, Judged, SourceKind, Subject, Ungrounded, Verdict};

/// How long a quote must be to ground a verdict (`[grounding]` in hatrack.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundingRules {
    /// Words (runs of non-space characters holding a letter or digit).
    #[serde(default = "default_min_words")]
    pub min_words: usize,
    /// Non-space characters.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// A quote with fewer words than this grounds at most one requirement's verdict in a run;
    /// one this long may ground several (default 8).
    #[serde(default = "default_shared_quote_min_words")]
    pub shared_quote_min_words: usize,
}

fn default_min_words() -> usize {
    3
}
fn default_min_chars() -> usize {
    15
}
fn default_shared_quote_min_words() -> usize {
    8
}

impl Default for GroundingRules {
    fn default() -> Self {
        GroundingRules {
            min_words: default_min_words(),
            min_chars: default_min_chars(),
            shared_quote_min_words: default_shared_quote_min_words(),
        }
    }
}

/// The texts a step was shown under one name (the name its BEGIN marker gave them).
#[derive(Debug, Clone)]
struct Source {
    name: String,
    kind: SourceKind,
    /// Each distinct text shown under this name, as shown.
    shown: Vec<String>,
    /// `shown` folded for matching, built when the first quote is checked against it: most
    /// steps never check one (hats, preflight, `hatrack render`).
    folded: OnceLock<Folded>,
}

/// The texts of a [`Source`], whitespace-folded and joined by a break no quote can span;
/// hatrack's own marker lines replaced by that break too.
#[derive(Debug, Clone)]
struct Folded {
    text: String,
    /// Where each word of `text` starts (byte offset in `text`) and its 1-based line in the
    /// text it was shown in, so a quote found in `text` can be placed on a line.
    lines: Vec<(usize, usize)>,
}

/// The texts shown to a step.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    sources: Vec<Source>,
    rules: GroundingRules,
}

/// A character no quote can contain (quotes are folded the same way and never hold it):
/// stands where hatrack's own markers were, so no quote spans or cites them.
const BREAK: char = '\u{0}';

impl Sources {
    pub fn new(rules: GroundingRules) -> Sources {
        Sources {
            sources: Vec::new(),
            rules,
        }
    }

    /// Adds a text as shown to the step (truncation markers included: they are removed when
    /// a quote is first checked).
    pub fn add(&mut self, name: &str, kind: SourceKind, shown: &str) {
        // The same name and kind twice (a file bound to two items, or read again through a
        // tool) is one source holding every text shown under that name.
        match self
            .sources
            .iter_mut()
            .find(|s| s.name == name && s.kind == kind)
        {
            Some(s) if s.shown.iter().any(|t| t == shown) => {}
            Some(s) => {
                s.shown.push(shown.to_string());
                s.folded = OnceLock::new();
            }
            None => self.sources.push(Source {
                name: name.to_string(),
                kind,
                shown: vec![shown.to_string()],
                folded: OnceLock::new(),
            }),
        }
    }

    /// The source with exactly this name (`./` and surrounding space aside).
    fn find(&self, name: &str) -> Result<&Source, Ungrounded> {
        let name = name.trim();
        let name = name.strip_prefix("./").unwrap_or(name);
        let mut hits = self.sources.iter().filter(|s| s.name == name);
        match (hits.next(), hits.next()) {
            (Some(s), None) => Ok(s),
            (Some(_), Some(_)) => Err(Ungrounded::AmbiguousSource),
            (None, _) => Err(Ungrounded::UnknownSource),
        }
    }

    /// Checks one quote.
    pub fn ground(&self, source: &str, quote: &str) -> Evidence {
        let folded = fold_whitespace(strip_wrapping_quotes(quote)).replace(BREAK, " ");
        let result = self.meaningful(&folded).and_then(|()| {
            if markers::contains_mark(&folded) {
                return Err(Ungrounded::HatrackMark);
            }
            let s = self.find(source)?;
            let f = s.folded();
            match occurs_at_word_boundaries(&f.text, &folded) {
                Some(at) => Ok((s.kind.clone(), f.line_at(at))),
                None => Err(Ungrounded::NotFound),
            }
        });
        let (found_in, line, problem) = match result {
            Ok((kind, line)) => (Some(kind), line, None),
            Err(p) => (None, None, Some(p)),
        };
        Evidence {
            source: source.to_string(),
            quote: quote.to_string(),
            found_in,
            line,
            problem,
            repository_copy: None,
        }
    }

    /// The name of a repository source (kind [`SourceKind::Input`]) whose text holds
    /// `quote` (whitespace folded, at word boundaries, marks stripped), if any.
    pub fn repository_copy(&self, quote: &str) -> Option<String> {
        let folded = fold_whitespace(strip_wrapping_quotes(quote)).replace(BREAK, " ");
        if folded.is_empty() || markers::contains_mark(&folded) {
            return None;
        }
        self.sources
            .iter()
            .filter(|s| s.kind == SourceKind::Input)
            .find(|s| occurs_at_word_boundaries(&s.folded().text, &folded).is_some())
            .map(|s| s.name.clone())
    }

    fn meaningful(&self, folded: &str) -> Result<(), Ungrounded> {
        let words = word_count(folded);
        let chars = folded.chars().filter(|c| !c.is_whitespace()).count();
        if words < self.rules.min_words || chars < self.rules.min_chars {
            return Err(Ungrounded::Meaningless {
                words,
                chars,
                min_words: self.rules.min_words,
                min_chars: self.rules.min_chars,
            });
        }
        Ok(())
    }

    /// Grounds every quote and settles the verdict. Grounding only ever takes a `met` away:
    /// a `met` with any ungrounded quote, or citing nothing, becomes `unknown`. A judge's
    /// `unmet` stays `unmet` whatever its evidence (fails closed: weak evidence must never
    /// turn a judge's "no" into a pass); when its quotes do not ground, the cause says so
    /// ("unmet (evidence not exact)"). An `unmet` may rest on an absence.
    pub fn settle(
        &self,
        claimed: Verdict,
        quotes: &[(String, String)],
    ) -> (Verdict, Vec<Evidence>, Option<Cause>) {
        let evidence: Vec<Evidence> = quotes.iter().map(|(s, q)| self.ground(s, q)).collect();
        let (verdict, cause) = settle_grounded(claimed, &evidence);
        (verdict, evidence, cause)
    }
}

/// Words of a quote: runs of non-space characters holding a letter or digit.
fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

/// A quote's words for comparing evidence: lowercased runs of letters and digits.
fn evidence_words(quote: &str) -> Vec<String> {
    quote
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Two quotes are the same evidence when they share a run of words longer than half the
/// shorter one (so one running inside the other, or two overlapping windows of one line).
fn same_evidence(a: &[String], b: &[String]) -> bool {
    let shorter = a.len().min(b.len());
    if shorter == 0 {
        return false;
    }
    // The longest run of words the two share.
    let mut longest = 0;
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { 0 };
            longest = longest.max(row[j + 1]);
            diagonal = above;
        }
    }
    longest * 2 > shorter
}

/// Distinct requirements need distinct evidence (see the module docs): walks the rulings in
/// report order and ungrounds a short quote ([`Ungrounded::Reused`]) for every requirement
/// after the first that cites the same words. A `met` left with an ungrounded quote becomes
/// `unknown`; an `unmet` stays `unmet`. Idempotent: running it again changes nothing.
pub fn distinct_evidence(judged: &mut [Judged], rules: &GroundingRules) {
    let mut claimed: Vec<(Vec<String>, String)> = Vec::new();
    for r in judged.iter_mut() {
        if !matches!(r.verdict, Verdict::Met | Verdict::Unmet) {
            continue;
        }
        let mut lost = false;
        for e in r.evidence.iter_mut().filter(|e| e.grounded()) {
            // A check's finding is specific by nature: one finding may speak to several
            // requirements.
            if word_count(&e.quote) >= rules.shared_quote_min_words
                || matches!(e.found_in, Some(SourceKind::Check { .. }))
            {
                continue;
            }
            let words = evidence_words(&e.quote);
            let earlier = claimed
                .iter()
                .find(|(w, by)| *by != r.id && same_evidence(&words, w));
            match earlier {
                Some((_, by)) => {
                    e.found_in = None;
                    e.line = None;
                    e.problem = Some(Ungrounded::Reused {
                        by: by.clone(),
                        shared_min_words: rules.shared_quote_min_words,
                    });
                    lost = true;
                }
                None => claimed.push((words, r.id.clone())),
            }
        }
        if lost && r.verdict == Verdict::Met {
            r.verdict = Verdict::Unknown;
            r.cause = Some(Cause::Ungrounded {
                claimed: Verdict::Met,
            });
        }
    }
}

/// Marks each `met` on a requirement about the repository whose grounded quotes all come
/// from hats' artifacts as [`Cause::ArtifactOnly`]. An artifact quote whose words also occur
/// in a file of `repository` (the run's bound inputs and files read with tools) counts as
/// repository evidence: it records that file in `repository_copy`. A check's finding is
/// never repository evidence by itself (a clean run is evidence for, never proof of, met),
/// but one whose words a repository file holds counts as that file. Idempotent.
pub fn artifact_only(judged: &mut [Judged], repository: &Sources) {
    for r in judged.iter_mut() {
        if r.verdict != Verdict::Met || r.about != Subject::Repository || r.cause.is_some() {
            continue;
        }
        let mut from_repository = false;
        for e in r.evidence.iter_mut().filter(|e| e.grounded()) {
            if e.repository_copy.is_none()
                && matches!(
                    e.found_in,
                    Some(SourceKind::Artifact { .. } | SourceKind::Check { .. })
                )
            {
                e.repository_copy = repository.repository_copy(&e.quote);
            }
            from_repository |= e.from_repository();
        }
        if !from_repository {
            r.cause = Some(Cause::ArtifactOnly);
        }
    }
}

/// The verdict a claim keeps given its checked evidence: see [`Sources::settle`].
pub fn settle_grounded(claimed: Verdict, evidence: &[Evidence]) -> (Verdict, Option<Cause>) {
    let ungrounded = evidence.iter().any(|e| !e.grounded());
    match claimed {
        Verdict::Unknown => (Verdict::Unknown, Some(Cause::JudgeUndecided)),
        Verdict::Unmet if ungrounded => (Verdict::Unmet, Some(Cause::Ungrounded { claimed })),
        Verdict::Unmet => (Verdict::Unmet, None),
        Verdict::Met if ungrounded => (Verdict::Unknown, Some(Cause::Ungrounded { claimed })),
        Verdict::Met if evidence.is_empty() => (Verdict::Unknown, Some(Cause::NoEvidence)),
        Verdict::Met => (Verdict::Met, None),
    }
}

impl Source {
    fn folded(&self) -> &Folded {
        self.folded.get_or_init(|| {
            let mut folded = Folded {
                text: String::new(),
                lines: Vec::new(),
            };
            for (i, shown) in self.shown.iter().enumerate() {
                let (text, lines) = fold_with_lines(&strip_markers(shown));
                if i > 0 {
                    folded.text.push(' ');
                    folded.text.push(BREAK);
                    folded.text.push(' ');
                }
                let offset = folded.text.len();
                folded.text.push_str(&text);
                folded
                    .lines
                    .extend(lines.into_iter().map(|(at, line)| (at + offset, line)));
            }
            folded
        })
    }
}

impl Folded {
    /// The line of the shown text on which the word holding byte `at` of `text` starts.
    fn line_at(&self, at: usize) -> Option<usize> {
        let i = self.lines.partition_point(|(start, _)| *start <= at);
        i.checked_sub(1).map(|i| self.lines[i].1)
    }
}

/// Whitespace runs (newlines included) folded to one space, ends trimmed: how quotes are
/// matched, fingerprints are taken, Reads items compared and text put on one line.
pub fn fold_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`fold_whitespace`], and for each word of the result its offset there and its 1-based line in `text`.
fn fold_with_lines(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut folded = String::with_capacity(text.len());
    let mut lines = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        for word in line.split_whitespace() {
            if !folded.is_empty() {
                folded.push(' ');
            }
            lines.push((folded.len(), index + 1));
            folded.push_str(word);
        }
    }
    (folded, lines)
}

/// Replaces every mark hatrack itself writes into what a step is shown (the one table in
/// [`markers`]: BEGIN/END frames, truncation and line-cut notes, wherever they sit in a
/// line) with a break, so none is ever evidence and no quote spans one.
fn strip_markers(text: &str) -> String {
    markers::strip(text, &BREAK.to_string())
}

/// Where `quote` first occurs in `text` with no letter or digit glued to either end (so
/// `"retries: 3"` does not match inside `"retries: 30"`).
fn occurs_at_word_boundaries(text: &str, quote: &str) -> Option<usize> {
    if quote.is_empty() {
        return None;
    }
    let first_is_word = quote.chars().next().is_some_and(char::is_alphanumeric);
    let last_is_word = quote.chars().last().is_some_and(char::is_alphanumeric);
    text.match_indices(quote)
        .find(|(at, _)| {
            let before = text[..*at].chars().last();
            let after = text[at + quote.len()..].chars().next();
            let glued_before = first_is_word && before.is_some_and(char::is_alphanumeric);
            let glued_after = last_is_word && after.is_some_and(char::is_alphanumeric);
            !glued_before && !glued_after
        })
        .map(|(at, _)| at)
}

/// Models often wrap a quote in quotation marks; those are not part of the quote.
fn strip_wrapping_quotes(quote: &str) -> &str {
    let q = quote.trim();
    for (open, close) in [('"', '"'), ('“', '”'), ('\'', '\''), ('`', '`')] {
        if q.chars().count() >= 2 && q.starts_with(open) && q.ends_with(close) {
            return &q[open.len_utf8()..q.len() - close.len_utf8()];
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAG: &str = "default_args = {\n    \"retries\": 3,\n    \"retry_delay\": timedelta(minutes=5),\n}\n# alerts page the on-call data engineer\n";

    fn sources() -> Sources {
        let mut s = Sources::new(GroundingRules::default());
        s.add("dags/orders_daily.py", SourceKind::Input, DAG);
        s.add(
            "artifacts/sre/readiness.md",
            SourceKind::Artifact { hat: "sre".into() },
            "Alerts route to #data-oncall through PagerDuty.\n[truncated by hatrack: showing 48 of 900 bytes]",
        );
        s
    }

    fn settle(source: &str, quote: &str, claimed: Verdict) -> (Verdict, Evidence, Option<Cause>) {
        let (v, mut e, c) = sources().settle(claimed, &[(source.into(), quote.into())]);
        (v, e.remove(0), c)
    }

    #[test]
    fn a_real_quote_grounds_across_line_breaks_and_records_its_source_kind() {
        let (v, e, c) = settle(
            "dags/orders_daily.py",
            "\"retries\": 3,\n \"retry_delay\": timedelta(minutes=5)",
            Verdict::Met,
        );
        assert_eq!(v, Verdict::Met);
        assert_eq!(e.found_in, Some(SourceKind::Input));
        assert!(c.is_none());
        let (v, e, _) = settle(
            "artifacts/sre/readiness.md",
            "“Alerts route to #data-oncall through PagerDuty.”",
            Verdict::Met,
        );
        assert_eq!(v, Verdict::Met);
        assert_eq!(e.found_in, Some(SourceKind::Artifact { hat: "sre".into() }));
    }

    #[test]
    fn a_grounded_quote_records_the_line_it_starts_on() {
        let (_, e, _) = settle(
            "dags/orders_daily.py",
            "\"retries\": 3,\n \"retry_delay\": timedelta(minutes=5)",
            Verdict::Met,
        );
        assert_eq!(e.line, Some(2));
        let (_, e, _) = settle(
            "dags/orders_daily.py",
            "alerts page the on-call data engineer",
            Verdict::Met,
        );
        assert_eq!(e.line, Some(5));
        // Starting mid-line and spanning lines: the line where it starts.
        let (_, e, _) = settle(
            "dags/orders_daily.py",
            "timedelta(minutes=5), } # alerts page",
            Verdict::Met,
        );
        assert_eq!(e.line, Some(3), "{e:?}");
        let (_, e, _) = settle(
            "dags/orders_daily.py",
            "not in the file at all",
            Verdict::Met,
        );
        assert_eq!(e.line, None);
    }

    /// A file shown twice under one name (bound to two items, or read again through a tool):
    /// a quote from either text grounds, on its line in the text it came from, and no quote
    /// spans the two.
    #[test]
    fn a_name_shown_twice_grounds_in_either_text_on_its_own_lines() {
        let mut s = sources();
        let second = "owner: data-platform\nescalation after 15 minutes to the secondary\n";
        s.add("dags/orders_daily.py", SourceKind::Input, second);
        let e = s.ground(
            "dags/orders_daily.py",
            "escalation after 15 minutes to the secondary",
        );
        assert!(e.grounded(), "{e:?}");
        assert_eq!(e.line, Some(2));
        let e = s.ground("dags/orders_daily.py", "page the on-call data engineer");
        assert_eq!(e.line, Some(5));
        let e = s.ground("dags/orders_daily.py", "data engineer owner: data-platform");
        assert!(!e.grounded(), "a quote spanning the two texts: {e:?}");
    }

    #[test]
    fn short_or_punctuation_quotes_ground_nothing() {
        for quote in [
            "e",
            "ok",
            "#",
            "   ",
            "",
            "\"retries\": 3",
            "... --- ... !!! ???",
        ] {
            let (v, e, c) = settle("dags/orders_daily.py", quote, Verdict::Met);
            assert_eq!(v, Verdict::Unknown, "{quote:?}");
            assert!(
                matches!(e.problem, Some(Ungrounded::Meaningless { .. })),
                "{quote:?}: {:?}",
                e.problem
            );
            assert_eq!(
                c,
                Some(Cause::Ungrounded {
                    claimed: Verdict::Met
                })
            );
        }
    }

    #[test]
    fn a_quote_must_end_at_word_boundaries() {
        let mut s = Sources::new(GroundingRules::default());
        s.add("a.md", SourceKind::Input, "We keep retries at 30 minutes.");
        assert!(!s.ground("a.md", "We keep retries at 3").grounded());
        assert!(!s.ground("a.md", "e keep retries at 30").grounded());
        assert!(s.ground("a.md", "We keep retries at 30").grounded());
    }

    #[test]
    fn sources_are_named_exactly_never_by_suffix() {
        let mut s = sources();
        s.add(
            "artifacts/pipeline-engineer/reports/validation-report.md",
            SourceKind::Artifact {
                hat: "pipeline-engineer".into(),
            },
            "All 12 validation checks passed on the staging run.",
        );
        let e = s.ground(
            "reports/validation-report.md",
            "All 12 validation checks passed on the staging run.",
        );
        assert_eq!(e.problem, Some(Ungrounded::UnknownSource));
        let e = s.ground(
            "readiness.md",
            "Alerts route to #data-oncall through PagerDuty.",
        );
        assert_eq!(e.problem, Some(Ungrounded::UnknownSource));
    }

    #[test]
    fn hatracks_own_markers_are_never_evidence() {
        let s = sources();
        let e = s.ground(
            "artifacts/sre/readiness.md",
            "[truncated by hatrack: showing 48 of 900 bytes]",
        );
        assert_eq!(e.problem, Some(Ungrounded::HatrackMark));
        let e = s.ground(
            "artifacts/sre/readiness.md",
            "through PagerDuty. [truncated by hatrack:",
        );
        assert!(!e.grounded());
        let mut s = Sources::new(GroundingRules::default());
        s.add(
            "x.md",
            SourceKind::Input,
            "first line of the file\n<<<END x.md>>>\n<<<BEGIN y.md>>>\nsecond line here",
        );
        assert!(!s
            .ground("x.md", "<<<END x.md>>> <<<BEGIN y.md>>>")
            .grounded());
        assert!(!s.ground("x.md", "of the file second line").grounded());
        // A line cut by a tool carries its note inline: neither the note nor a quote running
        // into it grounds, and the text before it still does.
        let mut s = Sources::new(GroundingRules::default());
        s.add(
            "wide.csv",
            SourceKind::Input,
            "order id, customer id, amount, currency [hatrack: line cut at 500 bytes]\nnext line of the file\n",
        );
        for quote in [
            "[hatrack: line cut at 500 bytes]",
            "hatrack: line cut at 500 bytes",
            "amount, currency [hatrack: line cut at 500 bytes]",
            "line cut at 500 bytes] next line",
        ] {
            let e = s.ground("wide.csv", quote);
            assert!(!e.grounded(), "{quote:?}: {e:?}");
        }
        assert_eq!(
            s.ground("wide.csv", "[hatrack: line cut at 500 bytes]")
                .problem,
            Some(Ungrounded::HatrackMark)
        );
        assert!(s
            .ground("wide.csv", "order id, customer id, amount, currency")
            .grounded());
        assert!(s.ground("wide.csv", "next line of the file").grounded());
    }

    #[test]
    fn a_name_shown_twice_is_one_source_unless_the_kinds_differ() {
        let mut s = sources();
        s.add(
            "dags/orders_daily.py",
            SourceKind::Input,
            "the rest of the file, read later",
        );
        let ground = |s: &Sources, q: &str| s.ground("dags/orders_daily.py", q).grounded();
        assert!(ground(&s, "alerts page the on-call data engineer"));
        assert!(ground(&s, "the rest of the file"));
        assert!(!ground(&s, "data engineer the rest of"));
        s.add(
            "dags/orders_daily.py",
            SourceKind::Artifact { hat: "sre".into() },
            "other text entirely here",
        );
        let e = s.ground(
            "dags/orders_daily.py",
            "alerts page the on-call data engineer",
        );
        assert_eq!(e.problem, Some(Ungrounded::AmbiguousSource));
    }

    #[test]
    fn met_needs_evidence_unmet_may_rest_on_an_absence_and_unknown_says_so() {
        let s = sources();
        assert_eq!(
            s.settle(Verdict::Met, &[]),
            (Verdict::Unknown, vec![], Some(Cause::NoEvidence))
        );
        assert_eq!(
            s.settle(Verdict::Unmet, &[]),
            (Verdict::Unmet, vec![], None)
        );
        assert_eq!(
            s.settle(Verdict::Unknown, &[]).2,
            Some(Cause::JudgeUndecided)
        );
    }

    /// Fails closed: grounding takes a `met` away, never an `unmet`.
    #[test]
    fn an_unmet_stays_unmet_whatever_its_evidence_and_says_so() {
        for quote in ["e", "retries", "not in the file at all, not anywhere"] {
            let (v, e, c) = settle("dags/orders_daily.py", quote, Verdict::Unmet);
            assert_eq!(v, Verdict::Unmet, "{quote:?}");
            assert!(!e.grounded());
            let c = c.unwrap();
            assert_eq!(c.short(), "evidence not exact");
            assert!(c.describe(&[e]).starts_with("unmet (evidence not exact)"));
        }
        let (v, _, c) = settle("nowhere.md", "alerts page the on-call", Verdict::Unmet);
        assert_eq!(
            (v, c.unwrap().short()),
            (Verdict::Unmet, "evidence not exact")
        );
        let (v, _, c) = settle("dags/orders_daily.py", "e", Verdict::Met);
        assert_eq!(
            (v, c.unwrap().short()),
            (Verdict::Unknown, "ungrounded evidence")
        );
    }

    fn judged(id: &str, claimed: Verdict, evidence: Vec<Evidence>) -> Judged {
        let (verdict, cause) = settle_grounded(claimed, &evidence);
        Judged {
            claimed,
            cause,
            evidence,
            ..Judged::review_check(id, verdict)
        }
    }

    #[test]
    fn a_short_quote_grounds_one_requirement_and_a_long_one_may_ground_several() {
        let s = sources();
        let heading = |q: &str| s.ground("dags/orders_daily.py", q);
        let long =
            "\"retries\": 3, \"retry_delay\": timedelta(minutes=5), } # alerts page the on-call";
        let mut all = vec![
            judged("a", Verdict::Met, vec![heading("alerts page the on-call")]),
            // The same words, spaced and wrapped differently.
            judged(
                "b",
                Verdict::Met,
                vec![heading("“alerts  page the\non-call”")],
            ),
            // Words overlapping the first quote's.
            judged("c", Verdict::Met, vec![heading("page the on-call data")]),
            // Words around it.
            judged(
                "d",
                Verdict::Unmet,
                vec![heading("# alerts page the on-call data engineer")],
            ),
            judged("e", Verdict::Met, vec![heading(long)]),
            judged("f", Verdict::Met, vec![heading(long)]),
            // Other words of the same line are other evidence.
            judged("g", Verdict::Met, vec![heading("on-call data engineer")]),
        ];
        for r in &all {
            assert!(r.evidence[0].grounded(), "{r:?}");
        }
        distinct_evidence(&mut all, &GroundingRules::default());
        let verdicts: Vec<Verdict> = all.iter().map(|r| r.verdict).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Met, Unknown, Unknown, Unmet, Met, Met, Met]);
        assert_eq!(
            all[1].evidence[0].problem,
            Some(Ungrounded::Reused {
                by: "a".into(),
                shared_min_words: 8
            })
        );
        assert!(all[1].note().unwrap().contains("already ground a"));
        // Idempotent.
        let again = all.clone();
        distinct_evidence(&mut all, &GroundingRules::default());
        assert_eq!(all, again);
        // The threshold is a rule: at 3 words, the long quote is shared, the short one not.
        let mut two = vec![
            judged("a", Verdict::Met, vec![heading("alerts page the on-call")]),
            judged("b", Verdict::Met, vec![heading("alerts page the on-call")]),
        ];
        let rules = GroundingRules {
            shared_quote_min_words: 3,
            ..GroundingRules::default()
        };
        distinct_evidence(&mut two, &rules);
        assert_eq!(two[1].verdict, Met);
    }

    /// The 15-character minimum on its own: a quote with words enough (3) but 14 non-space
    /// characters grounds nothing; one more character and it grounds.
    #[test]
    fn fifteen_characters_are_needed_whatever_the_word_count() {
        let mut s = Sources::new(GroundingRules::default());
        s.add(
            "a.md",
            SourceKind::Input,
            "set to on at six am and ok by ten\n",
        );
        // "to on at six am": 5 words, 11 non-space characters.
        let short = s.ground("a.md", "to on at six am");
        assert!(!short.grounded(), "{short:?}");
        // "set to on at six am": 6 words, 14 characters — still one short.
        let fourteen = s.ground("a.md", "set to on at six am");
        assert!(!fourteen.grounded(), "{fourteen:?}");
        assert_eq!(
            fourteen.problem,
            Some(Ungrounded::Meaningless {
                words: 6,
                chars: 14,
                min_words: 3,
                min_chars: 15
            })
        );
        // "six am and ok by ten": 6 words, 15 characters.
        let fifteen = s.ground("a.md", "six am and ok by ten");
        assert!(fifteen.grounded(), "{fifteen:?}");
    }

    #[test]
    fn rules_are_configurable() {
        let mut s = Sources::new(GroundingRules {
            min_words: 1,
            min_chars: 2,
            ..GroundingRules::default()
        });
        s.add("a.md", SourceKind::Input, "ok then");
        assert!(s.ground("a.md", "ok").grounded());
    }
}
