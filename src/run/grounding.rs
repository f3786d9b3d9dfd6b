//! Evidence grounding: a quote counts only if it occurs (whitespace-normalised) in the
//! source it names — an input file or an artifact the model was shown. This is how hatrack
//! refuses to trust a model that invents evidence.

use crate::report::{EvidenceReport, Verdict};
use crate::run::answer::Evidence;

/// The texts shown to a step, under the names its prompt gave them.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    texts: Vec<(String, String)>,
}

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) {
        self.texts.push((name.to_string(), normalise(text)));
    }

    /// The source a model named: exact name first, then a unique path-suffix match
    /// (`dags/x.py` for `artifacts/pipeline-engineer/dags/x.py`).
    fn find(&self, name: &str) -> Option<&str> {
        let name = name.trim().trim_start_matches("./");
        if let Some((_, text)) = self.texts.iter().find(|(n, _)| n == name) {
            return Some(text);
        }
        let mut suffix = self
            .texts
            .iter()
            .filter(|(n, _)| n.ends_with(&format!("/{name}")) || name.ends_with(&format!("/{n}")));
        match (suffix.next(), suffix.next()) {
            (Some((_, text)), None) => Some(text),
            _ => None,
        }
    }

    /// Checks one piece of evidence; the second value says why it is ungrounded.
    pub fn ground(&self, evidence: &Evidence) -> (EvidenceReport, Option<String>) {
        let quote = normalise(strip_wrapping_quotes(&evidence.quote));
        let why = if quote.is_empty() {
            Some("an empty quote".to_string())
        } else {
            match self.find(&evidence.source) {
                None => Some(format!(
                    "{:?} is not an input or artifact shown to this step",
                    evidence.source
                )),
                Some(text) if !text.contains(&quote) => {
                    Some(format!("the quote does not occur in {}", evidence.source))
                }
                Some(_) => None,
            }
        };
        (
            EvidenceReport {
                source: evidence.source.clone(),
                quote: evidence.quote.clone(),
                grounded: why.is_none(),
            },
            why,
        )
    }

    /// Grounds every quote and settles the verdict: any ungrounded quote makes it `unknown`,
    /// and so does a `met` verdict that cites nothing (an unmet one may rest on an absence).
    pub fn settle(
        &self,
        claimed: Verdict,
        evidence: &[Evidence],
    ) -> (Verdict, Vec<EvidenceReport>, Option<String>) {
        let mut reports = Vec::new();
        let mut problems = Vec::new();
        for e in evidence {
            let (report, why) = self.ground(e);
            if let Some(why) = why {
                problems.push(why);
            }
            reports.push(report);
        }
        if !problems.is_empty() && claimed != Verdict::Unknown {
            let note = format!(
                "downgraded from {} to unknown: ungrounded evidence ({})",
                claimed.as_str(),
                problems.join("; ")
            );
            return (Verdict::Unknown, reports, Some(note));
        }
        if claimed == Verdict::Met && evidence.is_empty() {
            return (
                Verdict::Unknown,
                reports,
                Some("downgraded from met to unknown: no evidence was cited".to_string()),
            );
        }
        (claimed, reports, None)
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Models often wrap a quote in quotation marks; those are not part of the quote.
fn strip_wrapping_quotes(quote: &str) -> &str {
    let q = quote.trim();
    for (open, close) in [('"', '"'), ('“', '”'), ('\'', '\''), ('`', '`')] {
        if q.len() >= 2 && q.starts_with(open) && q.ends_with(close) {
            return &q[open.len_utf8()..q.len() - close.len_utf8()];
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.add(
            "dags/orders_daily.py",
            "default_args = {\n    \"retries\": 3,\n    \"retry_delay\": timedelta(minutes=5),\n}",
        );
        s.add(
            "artifacts/sre/readiness.md",
            "Alerts route to #data-oncall.",
        );
        s
    }

    fn ev(source: &str, quote: &str) -> Evidence {
        Evidence {
            source: source.into(),
            quote: quote.into(),
        }
    }

    #[test]
    fn a_real_quote_keeps_its_verdict_even_across_line_breaks() {
        let (verdict, reports, note) = sources().settle(
            Verdict::Met,
            &[ev(
                "dags/orders_daily.py",
                "\"retries\": 3, \"retry_delay\"",
            )],
        );
        assert_eq!(verdict, Verdict::Met);
        assert!(reports[0].grounded);
        assert!(note.is_none());
    }

    #[test]
    fn a_fabricated_quote_downgrades_to_unknown_and_says_why() {
        let (verdict, reports, note) = sources().settle(
            Verdict::Met,
            &[ev("dags/orders_daily.py", "\"retries\": 5")],
        );
        assert_eq!(verdict, Verdict::Unknown);
        assert!(!reports[0].grounded);
        assert!(note
            .unwrap()
            .contains("does not occur in dags/orders_daily.py"));
    }

    #[test]
    fn a_quote_from_another_file_or_an_unknown_source_is_ungrounded() {
        let s = sources();
        let (v, _, _) = s.settle(
            Verdict::Unmet,
            &[ev("dags/orders_daily.py", "Alerts route to #data-oncall.")],
        );
        assert_eq!(v, Verdict::Unknown);
        let (v, _, note) = s.settle(Verdict::Unmet, &[ev("ops/none.md", "retries")]);
        assert_eq!(v, Verdict::Unknown);
        assert!(note.unwrap().contains("not an input or artifact"));
    }

    #[test]
    fn a_source_may_be_named_by_its_path_suffix_and_quotes_may_be_wrapped() {
        let (v, _, _) = sources().settle(
            Verdict::Met,
            &[ev("readiness.md", "“Alerts route to #data-oncall.”")],
        );
        assert_eq!(v, Verdict::Met);
    }

    #[test]
    fn met_needs_evidence_but_unmet_may_rest_on_an_absence() {
        let s = sources();
        assert_eq!(s.settle(Verdict::Met, &[]).0, Verdict::Unknown);
        assert_eq!(s.settle(Verdict::Unmet, &[]).0, Verdict::Unmet);
    }
}
