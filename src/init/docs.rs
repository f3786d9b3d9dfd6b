//! Documents: the intent (a dedicated file, else the README) and the runbooks and on-call
//! documents, found by their name or by their headings.

use super::scan::{name, Repo};

/// Intent documents, best first: a dedicated intent file, else the README.
pub const INTENT_DOCS: &[&str] = &[
    "intent.md",
    "INTENT.md",
    "docs/intent.md",
    "docs/INTENT.md",
    "README.md",
    "readme.md",
    "README",
];

/// Words that make a document operational, in its name or a heading.
const RUNBOOK_WORDS: &[&str] = &[
    "runbook",
    "run book",
    "run-book",
    "playbook",
    "on-call",
    "oncall",
    "on call",
    "on_call",
    "incident",
    "escalation",
    "disaster recovery",
    "service level",
];

/// The most documents read for their headings.
const MAX_READ_DOCS: usize = 1000;

fn is_doc(file: &str) -> bool {
    [".md", ".rst", ".txt", ".adoc"]
        .iter()
        .any(|e| file.to_lowercase().ends_with(e))
}

fn operational(text: &str) -> bool {
    let lower = text.to_lowercase();
    RUNBOOK_WORDS.iter().any(|w| lower.contains(w))
}

/// Runbooks and on-call documents: by name, then by a heading (`#`, or a line underlined
/// with `=`/`-` in reStructuredText), in path order.
pub fn runbooks(repo: &Repo) -> Vec<String> {
    let docs: Vec<&String> = repo.files.iter().filter(|f| is_doc(f)).collect();
    let mut out: Vec<String> = docs
        .iter()
        .filter(|f| operational(&name(f).replace(['_', '-'], " ")) || operational(name(f)))
        .map(|f| f.to_string())
        .collect();
    for f in docs
        .iter()
        .filter(|f| f.ends_with(".md"))
        .take(MAX_READ_DOCS)
    {
        if !out.contains(f) && repo.read(f).is_some_and(|t| headings_operational(&t)) {
            out.push(f.to_string());
        }
    }
    out
}

/// Whether a Markdown heading names an operational topic.
pub fn headings_operational(text: &str) -> bool {
    text.lines().filter(|l| l.starts_with('#')).any(operational)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heading_makes_a_document_a_runbook() {
        assert!(headings_operational(
            "# Orders\n\n## On-call\nPage #data.\n"
        ));
        assert!(headings_operational("## Incident response\n"));
        assert!(!headings_operational("# Orders\n\nno incident here\n"));
    }
}
