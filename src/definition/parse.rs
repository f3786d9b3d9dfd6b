//! Building hats, review agents, artifact definitions and stage bodies from parsed
//! documents. Pure functions over text: the filesystem walk lives in `loader`.

use std::collections::HashMap;
use std::path::Path;

use super::body::{
    base_label, is_check_label, is_reject_label, parse_body, Block, BodySection, SectionStart,
};
use super::document::Document;
use super::rfc2119::{keywords, looks_malformed, primary_level, units};
use super::types::*;

/// Collects diagnostics while a definition is built.
#[derive(Debug, Default)]
pub struct Diags(pub Vec<Diagnostic>);

impl Diags {
    pub fn error(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.push(Severity::Error, file, line, message);
    }

    pub fn warn(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.push(Severity::Warning, file, line, message);
    }

    fn push(
        &mut self,
        severity: Severity,
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) {
        self.0.push(Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
}

/// `Produces` → `produces`, `Model Assignment` → `model-assignment`: the id segment of a
/// section.
fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "prose".into()
    } else {
        out
    }
}

fn to_sections(sections: &[BodySection]) -> Vec<Section> {
    sections
        .iter()
        .filter(|s| s.start != SectionStart::Preamble)
        .map(|s| Section {
            label: s.label.clone(),
            heading: s.heading.clone(),
            text: s.text.clone(),
            line: s.line,
        })
        .collect()
}

fn section_text(sections: &[BodySection], label: &str) -> Option<String> {
    sections
        .iter()
        .find(|s| s.label == label)
        .map(|s| s.text.clone())
}

fn requirement(
    id: String,
    level: Level,
    kws: &[super::rfc2119::Keyword],
    text: &str,
    section: &str,
    file: &Path,
    line: usize,
) -> Requirement {
    Requirement {
        id,
        level,
        keywords: kws.iter().map(|k| k.keyword.clone()).collect(),
        text: text.to_string(),
        section: section.to_string(),
        source: SourceRef {
            file: file.to_path_buf(),
            line,
        },
        malformed: looks_malformed(text, kws),
        lead_in: None,
        label: None,
    }
}

/// The label of a section as requirements keep it: the heading as written when it is a
/// list of what to reject or forbid, or carries a qualifier (`Check (per DAG)`); `None`
/// for the plain spellings (`Check`, `## Check`, `Anti-patterns (RFC 2119)`).
fn kept_label(sec: &BodySection) -> Option<String> {
    if sec.start == SectionStart::Preamble {
        return None;
    }
    let qualified = base_label(&sec.heading) != sec.label;
    (is_reject_label(&sec.heading) || qualified).then(|| sec.heading.trim().to_string())
}

/// The level a keyword-less item of a reject list gets: the lead-in's (or the label's)
/// keyword says how strongly the listed things are rejected — `The agent **MUST** reject:`
/// and a bare `**Reject:**` make MUST NOT, `**SHOULD** reject` makes SHOULD NOT.
fn reject_level(stated: Option<Level>) -> Level {
    match stated {
        None | Some(Level::Must | Level::MustNot | Level::Implicit) => Level::MustNot,
        Some(Level::Should | Level::ShouldNot) => Level::ShouldNot,
        Some(Level::May) => Level::May,
    }
}

/// The first section whose label, qualifier removed, is `name`.
fn section_text_base(sections: &[BodySection], name: &str) -> Option<String> {
    sections
        .iter()
        .find(|s| s.start != SectionStart::Preamble && base_label(&s.heading) == name)
        .map(|s| s.text.clone())
}

/// Builds a hat. Every keyword unit of the body becomes a requirement tagged by section:
/// list items of an anti-pattern section (label or heading, several allowed) are the
/// constraints `<hat>/anti-pattern/<n>`; prose in or after that section is `<hat>/prose/<n>`;
/// anything else is `<hat>/<section>/<n>` (`focus`, `produces`, `model-assignment`, …).
///
/// A hat without any anti-pattern section is an **error**: hatrack asks the model for a
/// verdict on each constraint, and a hat with none would run unchecked, which is almost
/// always a definition mistake (a misspelt label). An anti-pattern section that is present
/// but holds no keyword item is only a **warning**: the author said "no constraints" on
/// purpose, and the hat can still run and produce artifacts.
pub fn build_hat(name: &str, file: &Path, doc: &Document, diags: &mut Diags) -> Hat {
    let sections = parse_body(&doc.body, doc.body_line);
    let found = hat_requirements(name, file, &sections, diags);
    let process = section_text(&sections, "process");
    check_hat_constraints(name, file, doc, &sections, &found, process.is_some(), diags);
    Hat {
        name: name.to_string(),
        file: file.to_path_buf(),
        front_matter: doc.front_matter.clone(),
        focus: section_text(&sections, "focus"),
        produces: section_text(&sections, "produces"),
        reads: section_text(&sections, "reads"),
        responsibilities: section_text(&sections, "responsibilities"),
        process,
        sections: to_sections(&sections),
        body: doc.body.trim().to_string(),
        requirements: found.requirements,
    }
}

/// A hat body's requirements, with the counts [`check_hat_constraints`] judges them by.
struct HatRequirements {
    requirements: Vec<Requirement>,
    /// How many anti-pattern sections the body has.
    anti_sections: usize,
    /// How many requirements are anti-pattern items (the constraints judged).
    constraints: usize,
}

/// Every keyword unit of a hat body as a requirement, numbered per id segment (see
/// [`build_hat`]). An anti-pattern item without a keyword is a warning: it is not judged.
fn hat_requirements(
    name: &str,
    file: &Path,
    sections: &[BodySection],
    diags: &mut Diags,
) -> HatRequirements {
    let mut found = HatRequirements {
        requirements: Vec::new(),
        anti_sections: 0,
        constraints: 0,
    };
    let mut counters: HashMap<String, usize> = HashMap::new();
    for sec in sections {
        let is_reject = sec.start != SectionStart::Preamble && is_reject_label(&sec.heading);
        let is_anti = sec.label == "anti-patterns" || is_reject;
        if is_anti {
            found.anti_sections += 1;
        }
        let label = kept_label(sec);
        let mut stated = None;
        for block in &sec.blocks {
            for unit in units(block) {
                let kws = keywords(&unit.text);
                if let (true, false, Some(l)) = (is_reject, unit.is_item, primary_level(&kws)) {
                    // A lead-in sentence says how strongly the list is rejected.
                    stated = Some((l, unit.text.clone()));
                }
                let own = primary_level(&kws);
                let level = match own {
                    None if is_reject && unit.is_item => {
                        Some(reject_level(stated.as_ref().map(|s| s.0)))
                    }
                    other => other,
                };
                let Some(level) = level else {
                    if is_anti && unit.is_item {
                        diags.warn(
                            file,
                            Some(unit.line),
                            "anti-pattern item has no RFC 2119 keyword (MUST NOT, MUST, SHOULD, …), so it is not a constraint; write e.g. `- The agent **MUST NOT** …`",
                        );
                    }
                    continue;
                };
                let (section, id_part) = if is_anti && unit.is_item {
                    ("anti-patterns".to_string(), "anti-pattern".to_string())
                } else if is_anti || sec.label.is_empty() {
                    ("prose".to_string(), "prose".to_string())
                } else {
                    (sec.label.clone(), slug(&sec.label))
                };
                let n = counters.entry(id_part.clone()).or_insert(0);
                *n += 1;
                let mut req = requirement(
                    format!("{name}/{id_part}/{n}"),
                    level,
                    &kws,
                    &unit.text,
                    &section,
                    file,
                    unit.line,
                );
                if section == "anti-patterns" {
                    found.constraints += 1;
                    req.label = label.clone();
                    if own.is_none() {
                        // The keyword is the list's, not this text's.
                        req.malformed = false;
                        req.lead_in = Some(match &stated {
                            Some((_, lead)) => lead.clone(),
                            None => format!("{}:", sec.heading.trim()),
                        });
                    }
                }
                found.requirements.push(req);
            }
        }
    }
    found
}

/// Says when a hat has nothing to judge: no anti-pattern section is an error (a v8 hat
/// with `## Process` only a warning), an empty one a warning (see [`build_hat`]).
fn check_hat_constraints(
    name: &str,
    file: &Path,
    doc: &Document,
    sections: &[BodySection],
    found: &HatRequirements,
    has_process: bool,
    diags: &mut Diags,
) {
    if found.anti_sections == 0 && has_process {
        // The v8 layout (`**Focus:**` + `## Process`) often states its limits as prose
        // ("What you do NOT do") rather than an RFC 2119 list: the hat still runs, but
        // the author is told that nothing of it will be judged.
        diags.warn(
            file,
            Some(doc.body_line),
            format!("hat `{name}` (v8 layout: `## Process`) has no `## Anti-patterns (RFC 2119)` section: it runs with no constraints to judge; add items such as `- The agent **MUST NOT** …` to have them judged"),
        );
    } else if found.anti_sections == 0 {
        diags.error(
            file,
            Some(doc.body_line),
            format!("hat `{name}` has no `**Anti-patterns (RFC 2119):**` section, so it has no constraints to judge; add the label followed by items such as `- The agent **MUST NOT** …`"),
        );
    } else if found.constraints == 0 {
        let line = sections
            .iter()
            .find(|s| s.label == "anti-patterns")
            .map(|s| s.line);
        diags.warn(
            file,
            line,
            format!("hat `{name}` has an empty anti-pattern list: it will run with no constraints; add items such as `- The agent **MUST NOT** …`"),
        );
    }
}

/// Whether a label or lead-in names v8 judge guidance ("Common failure modes to look for").
fn is_failure_modes(label: &str) -> bool {
    let l = super::body::normalise_label(label);
    l.starts_with("common failure modes") || l.starts_with("failure modes")
}

/// How a check section reads its keyword-less items, set by its label and by the paragraph
/// before them.
enum ItemMode {
    /// 1.x: every item carries its own keyword; one without is warned about.
    Plain,
    /// v8: "The agent **MUST** verify, and file feedback for any violation:" — each item
    /// after it is a check at the lead-in's level. A label carrying a keyword
    /// (`**Check (SHOULD):**`) reads the same way.
    LeadIn {
        text: String,
        level: Level,
        kws: Vec<super::rfc2119::Keyword>,
    },
    /// "Common failure modes to look for:" as a plain paragraph: items are guidance.
    FailureModes,
}

impl ItemMode {
    /// The mode a section starts in: a reject list (`**Reject if:**`) makes each
    /// keyword-less item a check at MUST NOT (SHOULD NOT when its label says SHOULD); a
    /// label with a keyword lends it to its items; any other label reads items plainly.
    fn of_label(sec: &BodySection) -> ItemMode {
        let heading = sec.heading.trim();
        let kws = keywords(heading);
        let stated = primary_level(&kws);
        if is_reject_label(heading) {
            return ItemMode::LeadIn {
                text: format!("{heading}:"),
                level: reject_level(stated),
                kws,
            };
        }
        match stated {
            Some(level) => ItemMode::LeadIn {
                text: format!("{heading}:"),
                level,
                kws,
            },
            None => ItemMode::Plain,
        }
    }

    /// A paragraph of a check section: a lead-in when it carries a keyword and introduces
    /// a list (ends with `:`), failure-mode guidance when it says so, else plain prose. In
    /// a reject list a lead-in's level is what is rejected ("The agent **MUST** reject:"
    /// → MUST NOT), and plain prose leaves the list's own mode in place.
    fn after(self, lines: &[(usize, String)], reject: bool) -> ItemMode {
        let text = super::body::join_paragraph(lines);
        if is_failure_modes(&text) {
            return ItemMode::FailureModes;
        }
        let kws = keywords(&text);
        match primary_level(&kws) {
            Some(level) if text.trim_end().ends_with(':') => ItemMode::LeadIn {
                level: if reject {
                    reject_level(Some(level))
                } else {
                    level
                },
                text,
                kws,
            },
            _ if reject => self,
            _ => ItemMode::Plain,
        }
    }
}

/// Review-agent parts found while walking its check sections.
#[derive(Default)]
struct AgentParts {
    checks: Vec<Requirement>,
    failure_modes: Vec<String>,
}

/// One check section (or a sibling list of what to reject): items with their own keyword
/// are checks (1.x), keyword-less items take the level of a lead-in paragraph above them
/// (v8) or of the label, or are failure-mode guidance. A qualified or reject label is kept
/// on each check.
fn read_check_section(
    name: &str,
    file: &Path,
    sec: &BodySection,
    parts: &mut AgentParts,
    diags: &mut Diags,
) {
    let reject = is_reject_label(&sec.heading);
    let label = kept_label(sec);
    let mut mode = ItemMode::of_label(sec);
    for block in &sec.blocks {
        let (text, line) = match block {
            Block::Paragraph { lines } => {
                mode = mode.after(lines, reject);
                continue;
            }
            Block::Item { text, line } => (text, *line),
        };
        let id = format!("{name}/check/{}", parts.checks.len() + 1);
        let kws = keywords(text);
        if let Some(level) = primary_level(&kws) {
            let mut check = requirement(id, level, &kws, text, "check", file, line);
            check.label = label.clone();
            parts.checks.push(check);
            continue;
        }
        match &mode {
            ItemMode::LeadIn { text: lead, level, kws } => {
                let mut check = requirement(id, *level, kws, text, "check", file, line);
                check.malformed = false; // the keyword is not in this text
                check.lead_in = Some(lead.clone());
                check.label = label.clone();
                parts.checks.push(check);
            }
            ItemMode::FailureModes => parts.failure_modes.push(text.clone()),
            ItemMode::Plain => diags.warn(
                file,
                Some(line),
                "check item has no RFC 2119 keyword, so it is not judged; write e.g. `- The agent **MUST** verify that …`, or put a lead-in such as `The agent **MUST** verify:` above the list",
            ),
        }
    }
}

/// A failure-mode section (heading or label): its items, or its prose when it has none.
fn read_failure_modes(sec: &BodySection, out: &mut Vec<String>) {
    let before = out.len();
    for block in &sec.blocks {
        if let Block::Item { text, .. } = block {
            out.push(text.clone());
        }
    }
    if out.len() == before && !sec.text.is_empty() {
        out.push(sec.text.clone());
    }
}

/// Builds a review agent: `**Mandate:**` paragraph and `**Check:**` list (or `## Check`,
/// with a v8 lead-in sentence carrying the keyword), plus v8 failure-mode guidance.
/// Like hats: no Check section is an error (nothing to judge), an empty one a warning.
pub fn build_agent(
    name: &str,
    file: &Path,
    origin: AgentOrigin,
    doc: &Document,
    diags: &mut Diags,
) -> ReviewAgent {
    let sections = parse_body(&doc.body, doc.body_line);
    let mandate = section_text_base(&sections, "mandate").unwrap_or_default();
    if mandate.is_empty() {
        diags.warn(
            file,
            Some(doc.body_line),
            format!("review agent `{name}` has no `**Mandate:**`; add one sentence saying what it verifies"),
        );
    }
    let mut parts = AgentParts::default();
    let is_checks = |s: &BodySection| {
        s.start != SectionStart::Preamble
            && (is_check_label(&s.heading) || is_reject_label(&s.heading))
    };
    for sec in &sections {
        if is_checks(sec) {
            read_check_section(name, file, sec, &mut parts, diags);
        } else if is_failure_modes(&sec.label) {
            read_failure_modes(sec, &mut parts.failure_modes);
        }
    }
    match sections.iter().find(|s| is_checks(s)) {
        None => diags.error(
            file,
            Some(doc.body_line),
            format!("review agent `{name}` has no `**Check:**` section, so it has nothing to judge; add the label followed by items such as `- The agent **MUST** verify that …`"),
        ),
        Some(sec) if parts.checks.is_empty() => diags.warn(
            file,
            Some(sec.line),
            format!("review agent `{name}` has an empty check list; add items such as `- The agent **MUST** verify that …`"),
        ),
        Some(_) => {}
    }
    ReviewAgent {
        name: name.to_string(),
        file: file.to_path_buf(),
        origin,
        front_matter: doc.front_matter.clone(),
        mandate,
        checks: parts.checks,
        failure_modes: parts.failure_modes,
        applies_to: fm_list(&doc.front_matter, "applies_to"),
        studio_level: None,
        body: doc.body.trim().to_string(),
    }
}

/// A front-matter value that is a string or a list of strings, as a list.
fn fm_list(fm: &FrontMatter, key: &str) -> Vec<String> {
    match fm.get(key) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn fm_str(fm: &FrontMatter, key: &str) -> Option<String> {
    match fm.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Builds an `outputs/` or `discovery/` definition with the reference runtime's defaults
/// (`name` = lowercased stem, `scope: intent`, `format: text`, required unless `false`).
pub fn build_artifact(kind: ArtifactKind, stem: &str, file: &Path, doc: &Document) -> ArtifactDef {
    let fm = &doc.front_matter;
    ArtifactDef {
        kind,
        name: fm_str(fm, "name").unwrap_or_else(|| stem.to_lowercase()),
        file: file.to_path_buf(),
        location: fm_str(fm, "location").unwrap_or_default(),
        scope: fm_str(fm, "scope").unwrap_or_else(|| "intent".into()),
        format: fm_str(fm, "format").unwrap_or_else(|| "text".into()),
        required: fm.get("required") != Some(&serde_json::Value::Bool(false)),
        body: doc.body.trim().to_string(),
        front_matter: fm.clone(),
    }
}

/// What a STAGE.md body holds besides free text.
#[derive(Debug, Default)]
pub struct StageBody {
    pub title: String,
    pub criteria: Option<CriteriaGuidance>,
    pub completion_signal: Vec<Requirement>,
    pub completion_signal_text: String,
    /// Line of the `## Completion Signal` heading, when present.
    pub signal_line: Option<usize>,
}

/// Strips the quotes of a criteria example: `"Pipeline is deployed"` → `Pipeline is
/// deployed`; a remark after the closing quote is kept (`"X" (too technical)` → `X (too
/// technical)`).
fn unquote(text: &str) -> String {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('"') {
        if let Some(close) = inner.find('"') {
            let (quoted, rest) = inner.split_at(close);
            let rest = rest[1..].trim();
            return if rest.is_empty() {
                quoted.to_string()
            } else {
                format!("{quoted} {rest}")
            };
        }
        return inner.to_string();
    }
    t.to_string()
}

pub fn build_stage_body(file: &Path, doc: &Document) -> StageBody {
    let sections = parse_body(&doc.body, doc.body_line);
    let mut out = StageBody {
        title: sections
            .iter()
            .find(|s| s.start == SectionStart::Heading(1))
            .map(|s| s.heading.clone())
            .unwrap_or_default(),
        ..StageBody::default()
    };
    if let Some(sec) = sections.iter().find(|s| s.label == "criteria guidance") {
        let mut guidance = CriteriaGuidance::default();
        #[derive(Clone, Copy)]
        enum Mode {
            None,
            Good,
            Bad,
        }
        let mut mode = Mode::None;
        for block in &sec.blocks {
            match block {
                Block::Paragraph { lines } => {
                    for (_, line) in lines {
                        let l = line.to_lowercase();
                        if l.starts_with("good") {
                            mode = Mode::Good;
                        } else if l.starts_with("bad") {
                            mode = Mode::Bad;
                        }
                    }
                }
                Block::Item { text, .. } => match mode {
                    Mode::Good => guidance.good.push(unquote(text)),
                    Mode::Bad => guidance.bad.push(unquote(text)),
                    Mode::None => {}
                },
            }
        }
        out.criteria = Some(guidance);
    }
    if let Some(sec) = sections.iter().find(|s| s.label == "completion signal") {
        out.signal_line = Some(sec.line);
        let mut texts = Vec::new();
        for block in &sec.blocks {
            texts.push(match block {
                Block::Item { text, .. } => format!("- {text}"),
                Block::Paragraph { lines } => super::body::join_paragraph(lines),
            });
            for unit in units(block) {
                let kws = keywords(&unit.text);
                let level = primary_level(&kws).unwrap_or(Level::Implicit);
                let id = format!("signal/{}", out.completion_signal.len() + 1);
                out.completion_signal.push(requirement(
                    id,
                    level,
                    &kws,
                    &unit.text,
                    "completion signal",
                    file,
                    unit.line,
                ));
            }
        }
        out.completion_signal_text = texts.join("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::document::parse_document;

    fn doc(text: &str) -> Document {
        parse_document(Path::new("h.md"), text).unwrap()
    }

    #[test]
    fn hat_constraints_and_other_requirements() {
        let d = doc("---\nname: h\n---\n\n**Focus:** The agent **MUST** focus.\n\n**Anti-patterns (RFC 2119):**\n- The agent **MUST NOT** a\n- The agent **MUST** b\n\nWhen stuck, the agent **MUST** ask.\n");
        let mut diags = Diags::default();
        let hat = build_hat("h", Path::new("h.md"), &d, &mut diags);
        assert!(diags.0.is_empty(), "{:?}", diags.0);
        let ids: Vec<_> = hat.requirements.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "h/focus/1",
                "h/anti-pattern/1",
                "h/anti-pattern/2",
                "h/prose/1"
            ]
        );
        assert_eq!(hat.constraints().count(), 2);
        assert_eq!(hat.requirements[1].source.line, 8);
        assert_eq!(hat.requirements[1].level, Level::MustNot);
        assert_eq!(hat.focus.as_deref(), Some("The agent **MUST** focus."));
    }

    #[test]
    fn hat_without_anti_patterns_is_an_error_and_empty_list_a_warning() {
        let mut diags = Diags::default();
        build_hat("h", Path::new("h.md"), &doc("**Focus:** x\n"), &mut diags);
        assert!(diags.has_errors());
        let mut diags = Diags::default();
        build_hat(
            "h",
            Path::new("h.md"),
            &doc("**Focus:** x\n\n**Anti-patterns:**\n"),
            &mut diags,
        );
        assert!(!diags.has_errors());
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].line, Some(3));
    }

    #[test]
    fn signal_keyword_and_implicit_sentences() {
        let d = doc("# T\n\n## Completion Signal (RFC 2119)\n\nPipeline is deployed. Runbook **MUST** exist. SRE **MUST** have **MUST** be verified.\n");
        let body = build_stage_body(Path::new("S.md"), &d);
        let levels: Vec<_> = body.completion_signal.iter().map(|r| r.level).collect();
        assert_eq!(levels, [Level::Implicit, Level::Must, Level::Must]);
        assert_eq!(body.completion_signal[2].keywords, ["MUST", "MUST"]);
        assert_eq!(body.completion_signal[0].id, "signal/1");
        assert_eq!(body.title, "T");
    }

    fn agent(text: &str) -> (ReviewAgent, Diags) {
        let mut diags = Diags::default();
        let a = build_agent(
            "a",
            Path::new("a.md"),
            AgentOrigin::Own,
            &doc(text),
            &mut diags,
        );
        (a, diags)
    }

    #[test]
    fn a_check_lead_in_gives_its_level_to_keyword_less_items_only() {
        let (a, diags) = agent("**Mandate:** m\n\n## Check\n\nThe agent **MUST NOT** allow:\n- **Open retries** — x\n- The agent **SHOULD** verify y\n\nCommon failure modes to look for:\n- **Silent alerts** — z\n");
        assert!(diags.0.is_empty(), "{:?}", diags.0);
        let got: Vec<_> = a.checks.iter().map(|c| (c.id.as_str(), c.level)).collect();
        assert_eq!(
            got,
            [("a/check/1", Level::MustNot), ("a/check/2", Level::Should)]
        );
        assert_eq!(
            a.checks[0].lead_in.as_deref(),
            Some("The agent **MUST NOT** allow:")
        );
        assert_eq!(a.checks[1].lead_in, None);
        assert_eq!(a.failure_modes, ["**Silent alerts** — z"]);
    }

    #[test]
    fn a_keyword_sentence_that_introduces_no_list_is_not_a_lead_in() {
        // 1.x behaviour: a keyword-less check item is warned about, not judged.
        let (a, diags) =
            agent("**Mandate:** m\n\n**Check:**\nThe agent **MUST** be strict.\n- plain item\n");
        assert!(a.checks.is_empty());
        assert_eq!(diags.0.len(), 2, "{:?}", diags.0); // the item, and the empty list
        assert_eq!(diags.0[0].line, Some(5));
    }

    #[test]
    fn a_failure_mode_heading_is_guidance_and_its_keywords_are_not_checks() {
        let (a, _) = agent("**Mandate:** m\n\n## Check\n- The agent **MUST** verify x\n\n## Common failure modes to look for\n- The agent **MUST NOT** miss y\n");
        assert_eq!(a.checks.len(), 1);
        assert_eq!(a.failure_modes, ["The agent **MUST NOT** miss y"]);
    }

    #[test]
    fn a_v8_hat_without_anti_patterns_is_a_warning_a_1x_hat_an_error() {
        let mut diags = Diags::default();
        let hat = build_hat(
            "h",
            Path::new("h.md"),
            &doc("**Focus:** f\n\n## Process\n\n1. The agent **MUST** plan.\n"),
            &mut diags,
        );
        assert!(!diags.has_errors(), "{:?}", diags.0);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(hat.process.as_deref(), Some("1. The agent **MUST** plan."));
        assert_eq!(hat.requirements[0].id, "h/process/1");
        assert_eq!(hat.constraints().count(), 0);
    }

    #[test]
    fn criteria_quotes_are_stripped() {
        assert_eq!(unquote("\"Pipeline is deployed\""), "Pipeline is deployed");
        assert_eq!(unquote("\"X\" (too technical)"), "X (too technical)");
    }
}
