//! A labelled suite: a directory of cases, each a subdirectory holding `labels.toml` and
//! the workspace it labels (never inside it: the agents' tools read the workspace, and must
//! not find the answers there). docs/eval.md documents the format.
//!
//! Loading checks the files alone (syntax, words, why-lines, where the workspace is);
//! [`check_against_stage`] then checks every id against the stage the case runs, so a
//! mistyped or stale label stops the eval (exit 2, file and line) before any request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The file that makes a directory a case.
pub const LABELS_FILE: &str = "labels.toml";

/// The directory beside labels.toml that fixes the hats' artifacts.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Most cases one suite takes (each is a run).
pub const MAX_CASES: usize = 10_000;

/// The right verdict for one requirement in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expected {
    Met,
    Unmet,
    /// Either verdict is right (the case does not decide it): shown, never scored.
    Any,
}

impl Expected {
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Met => "met",
            Expected::Unmet => "unmet",
            Expected::Any => "any",
        }
    }
}

/// Which part of the suite a case belongs to: a holdout is reported separately, and the
/// thresholds apply to it when there is one (prompts are tuned on dev, judged on holdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Dev,
    Holdout,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Holdout => "holdout",
        }
    }
}

/// The gate a case should end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedGate {
    #[serde(rename = "met")]
    Met,
    #[serde(rename = "not met")]
    NotMet,
}

impl ExpectedGate {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectedGate::Met => "met",
            ExpectedGate::NotMet => "not met",
        }
    }
}

/// One label: a requirement id, its right verdict and where in the case that shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub id: String,
    pub expected: Expected,
    pub why: String,
    /// The line of labels.toml the label is on.
    pub line: usize,
}

/// One case of a suite, as loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The case directory's name: its run directory's name in the eval directory.
    pub name: String,
    /// `CASE/labels.toml`, relative to the suite (for messages and reports).
    pub labels_file: String,
    /// The workspace the case runs (not serialised: an eval dir never depends on where
    /// the suite was).
    #[serde(skip)]
    pub workspace: PathBuf,
    pub split: Split,
    pub gate: ExpectedGate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_digest: Option<String>,
    #[serde(skip)]
    stage_digest_line: usize,
    /// The case fixes its hats' artifacts (`artifacts/<hat>/…` beside labels.toml): only
    /// the judging steps ask a model.
    #[serde(default)]
    pub fixed_artifacts: bool,
    /// In the order written.
    pub labels: Vec<Label>,
}

/// A suite as loaded: its cases in name order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub cases: Vec<Case>,
}

/// Problems with a suite, one `file:line: message` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelErrors(pub Vec<String>);

impl std::fmt::Display for LabelErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for LabelErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    workspace: Option<String>,
    split: Option<Spanned<String>>,
    gate: Option<Spanned<String>>,
    stage_digest: Option<Spanned<String>>,
    #[serde(default)]
    expect: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    why: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// Loads every case of `dir` (each subdirectory with a labels.toml — whatever kind of file it
/// is, so one that is not a regular file is refused, never silently skipped; a subdirectory
/// without one is not a case). Every problem of every case is reported at once.
pub fn load_suite(dir: &Path) -> Result<Suite, LabelErrors> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        LabelErrors(vec![format!(
            "{shown}: cannot read the suite directory ({e}); pass a directory of cases, each with a {LABELS_FILE}"
        )])
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(LABELS_FILE).symlink_metadata().is_ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(LabelErrors(vec![format!(
            "{shown}: no case: a suite is a directory of cases, each a subdirectory with a {LABELS_FILE} beside its workspace (docs/eval.md)"
        )]));
    }
    if names.len() > MAX_CASES {
        return Err(LabelErrors(vec![format!(
            "{shown}: {} cases; at most {MAX_CASES} in one suite",
            names.len()
        )]));
    }
    let mut cases = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        match load_case(dir, &name) {
            Ok(case) => cases.push(case),
            Err(mut e) => problems.append(&mut e.0),
        }
    }
    if problems.is_empty() {
        Ok(Suite { cases })
    } else {
        Err(LabelErrors(problems))
    }
}

/// One case: its labels.toml, read and checked on its own.
pub fn load_case(suite: &Path, name: &str) -> Result<Case, LabelErrors> {
    let labels_file = format!("{name}/{LABELS_FILE}");
    let path = suite.join(&labels_file);
    let shown = path.display().to_string();
    if !crate::batch::valid_name(name) {
        return Err(LabelErrors(vec![format!(
            "{shown}: the case directory {name:?} cannot name a run directory: use letters, digits, `.`, `_` and `-`"
        )]));
    }
    let text = read_capped(&path).map_err(|e| LabelErrors(vec![format!("{shown}: {e}")]))?;
    let raw: RawLabels = toml::from_str(&text).map_err(|e| {
        LabelErrors(vec![format!(
            "{shown}:{}: {}",
            e.span().map_or(1, |s| line_of(&text, s.start)),
            e.message()
        )])
    })?;
    let mut problems = Vec::new();
    let at = |span: std::ops::Range<usize>| format!("{shown}:{}", line_of(&text, span.start));
    let split = match raw.split.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("dev", _)) => Split::Dev,
        Some(("holdout", _)) => Split::Holdout,
        Some((other, span)) => {
            problems.push(format!(
                "{}: split {other:?}: write \"dev\" or \"holdout\"",
                at(span)
            ));
            Split::Dev
        }
    };
    let gate = match raw.gate.as_ref().map(|g| (g.get_ref().as_str(), g.span())) {
        Some(("met", _)) => ExpectedGate::Met,
        Some(("not met", _)) => ExpectedGate::NotMet,
        Some((other, span)) => {
            problems.push(format!(
                "{}: gate {other:?}: write \"met\" or \"not met\" (the gate this case should end with)",
                at(span)
            ));
            ExpectedGate::NotMet
        }
        None => {
            problems.push(format!(
                "{shown}:1: no `gate`: say which gate this case should end with (gate = \"met\" or gate = \"not met\")"
            ));
            ExpectedGate::NotMet
        }
    };
    let labels = labels(&raw, &text, &shown, &mut problems);
    let workspace = workspace(suite, name, raw.workspace.as_deref(), &shown, &mut problems);
    if !problems.is_empty() {
        return Err(LabelErrors(problems));
    }
    Ok(Case {
        name: name.to_string(),
        labels_file,
        workspace,
        split,
        gate,
        stage_digest: raw.stage_digest.as_ref().map(|d| d.get_ref().clone()),
        stage_digest_line: raw
            .stage_digest
            .as_ref()
            .map_or(1, |d| line_of(&text, d.span().start)),
        labels,
        fixed_artifacts: suite.join(name).join(ARTIFACTS_DIR).is_dir(),
    })
}

/// `[expect]` joined with `[why]`, in the order written: every label needs its why-line,
/// and a why-line needs its label.
fn labels(raw: &RawLabels, text: &str, shown: &str, problems: &mut Vec<String>) -> Vec<Label> {
    let mut labels = Vec::new();
    for (id, word) in &raw.expect {
        let line = line_of(text, id.span().start);
        let expected = match word.get_ref().as_str() {
            "met" => Expected::Met,
            "unmet" => Expected::Unmet,
            "any" => Expected::Any,
            other => {
                problems.push(format!(
                    "{shown}:{line}: {:?} = {other:?}: a label is \"met\", \"unmet\" or \"any\"",
                    id.get_ref()
                ));
                continue;
            }
        };
        let why = raw.why.get(id.get_ref().as_str());
        match why.map(|w| w.get_ref().trim()) {
            Some(w) if !w.is_empty() => labels.push(Label {
                id: id.get_ref().clone(),
                expected,
                why: w.to_string(),
                line,
            }),
            _ => problems.push(format!(
                "{shown}:{line}: {:?} has no why-line: add it under [why] (one line: where in the workspace or its artifacts the label shows)",
                id.get_ref()
            )),
        }
    }
    for id in raw.why.keys() {
        if !raw.expect.contains_key(id.get_ref().as_str()) {
            problems.push(format!(
                "{shown}:{}: a why-line for {:?}, which [expect] does not label",
                line_of(text, id.span().start),
                id.get_ref()
            ));
        }
    }
    if raw.expect.is_empty() {
        problems.push(format!(
            "{shown}:1: no [expect] table: label at least one requirement id"
        ));
    }
    labels.sort_by_key(|l| l.line);
    labels
}

/// The case's workspace: relative to labels.toml (default `workspace/`), an existing
/// directory, and not holding labels.toml (the tools could read the answers).
fn workspace(
    suite: &Path,
    name: &str,
    written: Option<&str>,
    shown: &str,
    problems: &mut Vec<String>,
) -> PathBuf {
    let case_dir = suite.join(name);
    let rel = written.unwrap_or("workspace");
    let path = case_dir.join(rel);
    let Some(real) = path.canonicalize().ok().filter(|_| path.is_dir()) else {
        problems.push(format!(
            "{shown}: workspace {rel:?} is not a directory beside {LABELS_FILE}"
        ));
        return path;
    };
    let labels = case_dir
        .join(LABELS_FILE)
        .canonicalize()
        .unwrap_or_else(|_| case_dir.join(LABELS_FILE));
    if labels.starts_with(&real) {
        problems.push(format!(
            "{shown}: the labels are inside the workspace {rel:?} they label, where the agents' tools can read them: put the workspace in a subdirectory beside {LABELS_FILE}"
        ));
    }
    path
}

/// Every label id is a requirement of the case's stage, and labels written for another
/// version of the stage are refused unless `allow_stale`.
pub fn check_against_stage(
    case: &Case,
    suite: &Path,
    ids: &BTreeSet<String>,
    (stage_name, digest): (&str, &str),
    allow_stale: bool,
) -> Result<(), LabelErrors> {
    let shown = suite.join(&case.labels_file).display().to_string();
    let mut problems: Vec<String> = case
        .labels
        .iter()
        .filter(|l| !ids.contains(&l.id))
        .map(|l| {
            format!(
                "{shown}:{}: {:?} is not a requirement of stage {stage_name} (`hatrack list` shows its ids{})",
                l.line,
                l.id,
                near(&l.id, ids).map(|n| format!("; did you mean {n:?}?")).unwrap_or_default()
            )
        })
        .collect();
    if let Some(written) = case.stage_digest.as_deref().filter(|d| *d != digest) {
        if !allow_stale {
            problems.push(format!(
                "{shown}:{}: stale labels: written for stage digest {written}, but stage {stage_name} is now {digest}; check the labels against the changed stage and update stage_digest, or pass --allow-stale-labels",
                case.stage_digest_line
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabelErrors(problems))
    }
}

/// The id most like `id` (same prefix up to its last `/`), for a typo's hint.
fn near<'a>(id: &str, ids: &'a BTreeSet<String>) -> Option<&'a String> {
    let prefix = id.rsplit_once('/').map_or(id, |(p, _)| p);
    ids.iter().find(|c| c.starts_with(prefix))
}

/// Through the one bounded reader: a regular file only (a FIFO would hang), at most
/// [`crate::safe_fs::Kind::LABELS`] bytes, a link only to a file beside it.
fn read_capped(path: &Path) -> Result<String, String> {
    use crate::safe_fs::{read_bounded_string, Kind, Links};
    read_bounded_string(path, Kind::LABELS, Links::SameDir).map_err(|e| e.why.to_string())
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(toml: &str) -> Result<Case, LabelErrors> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        std::fs::create_dir_all(dir.join("workspace")).unwrap();
        std::fs::write(dir.join(LABELS_FILE), toml).unwrap();
        load_case(tmp.path(), "c1")
    }

    const GOOD: &str = r#"split = "holdout"
gate = "not met"
[expect]
"sre/anti-pattern/1" = "met"
"pipeline-engineer/anti-pattern/1" = "unmet"
[why]
"pipeline-engineer/anti-pattern/1" = "dags/orders_daily.py: retries = 0"
"sre/anti-pattern/1" = "ops/monitoring.yml: routes to #data-oncall"
"#;

    #[test]
    fn labels_keep_their_lines_and_order() {
        let c = case(GOOD).unwrap();
        assert_eq!(c.split, Split::Holdout);
        assert_eq!(c.gate, ExpectedGate::NotMet);
        let got: Vec<(&str, Expected, usize)> = c
            .labels
            .iter()
            .map(|l| (l.id.as_str(), l.expected, l.line))
            .collect();
        assert_eq!(
            got,
            [
                ("sre/anti-pattern/1", Expected::Met, 4),
                ("pipeline-engineer/anti-pattern/1", Expected::Unmet, 5)
            ]
        );
    }

    #[test]
    fn a_label_without_its_why_line_or_a_bad_word_is_named_by_line() {
        let err =
            case("gate = \"met\"\n[expect]\n\"a/check/1\" = \"passed\"\n\"a/check/2\" = \"met\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("c1/labels.toml:3: \"a/check/1\" = \"passed\""),
            "{err}"
        );
        assert!(
            err.contains("c1/labels.toml:4: \"a/check/2\" has no why-line"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_or_a_missing_gate_is_refused() {
        let err = case("gate = \"met\"\nexpected = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("labels.toml:2: unknown field `expected`"),
            "{err}"
        );
        let err = case("[expect]\n\"a/check/1\" = \"met\"\n[why]\n\"a/check/1\" = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `gate`"), "{err}");
    }

    #[test]
    fn unknown_ids_and_stale_digests_are_refused_with_file_and_line() {
        let c = case(&GOOD.replace("split", "stage_digest = \"old\"\nsplit")).unwrap();
        let ids: BTreeSet<String> = ["sre/anti-pattern/1".to_string()].into();
        let err = check_against_stage(&c, Path::new("suite"), &ids, ("deployment", "new"), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("suite/c1/labels.toml:6: \"pipeline-engineer/anti-pattern/1\" is not a requirement of stage deployment"),
            "{err}"
        );
        assert!(
            err.contains("suite/c1/labels.toml:1: stale labels"),
            "{err}"
        );
        let err = check_against_stage(&c, Path::new("suite"), &ids, ("deployment", "new"), true)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("stale"), "{err}");
    }

    #[test]
    fn labels_inside_the_workspace_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LABELS_FILE), format!("workspace = \".\"\n{GOOD}")).unwrap();
        let err = load_case(tmp.path(), "c1").unwrap_err().to_string();
        assert!(err.contains("inside the workspace"), "{err}");
    }
}
