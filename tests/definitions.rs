//! The definition layer as a library: the shipped stage, the whole H·AI·K·U corpus with its
//! irregularities (haiku-format.md §9), stage lookup, the digest, and property tests that
//! the parser never panics on arbitrary or damaged input.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use hatrack::definition::*;
use proptest::prelude::*;
use support::{corpus_dir, repo_root};

fn shipped() -> LoadedStage {
    load_stage(&repo_root().join("hats/deployment")).expect("the shipped stage loads")
}

fn corpus_stage(corpus: &Path, studio: &str, stage: &str) -> Stage {
    load_stage(&corpus.join(studio).join("stages").join(stage))
        .unwrap_or_else(|e| panic!("{studio}/{stage}: {e:?}"))
        .stage
}

fn all_stages(tree: &LoadedTree) -> Vec<&Stage> {
    tree.studios.iter().flat_map(|s| s.stages.iter()).collect()
}

fn line_of(file: &Path, line: usize) -> String {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .nth(line - 1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn shipped_stage_has_the_seed_structure() {
    let loaded = shipped();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = loaded.stage;
    assert_eq!(s.name, "deployment");
    assert_eq!(s.studio, None);
    assert_eq!(s.gates, [GateKind::External]);
    assert_eq!(s.elaboration.as_deref(), Some("autonomous"));
    assert!(s.inputs.is_empty() && s.includes.is_empty());
    let hats: Vec<_> = s.hats.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hats, ["pipeline-engineer", "sre"]);
    for hat in &s.hats {
        let levels: Vec<_> = hat.constraints().map(|r| r.level).collect();
        assert_eq!(levels.len(), 5);
        assert_eq!(levels.iter().filter(|l| **l == Level::MustNot).count(), 4);
        assert_eq!(levels.iter().filter(|l| **l == Level::Must).count(), 1);
        assert!(hat.focus.is_some() && hat.produces.is_some() && hat.reads.is_some());
    }
    assert_eq!(s.review_agents.len(), 1);
    assert_eq!(s.review_agents[0].checks.len(), 4);
    assert!(s.completion_signal_text.starts_with("Pipeline is deployed"));
    let files: Vec<_> = s
        .source_files
        .iter()
        .map(|f| {
            f.strip_prefix(&s.dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        files,
        [
            "STAGE.md",
            "hats/pipeline-engineer.md",
            "hats/sre.md",
            "outputs/PIPELINE-CONFIG.md",
            "review-agents/reliability.md"
        ]
    );
}

#[test]
fn shipped_texts_are_the_corpus_texts() {
    let Some(corpus) = corpus_dir() else { return };
    let upstream = corpus.join("data-pipeline/stages/deployment");
    let ours = repo_root().join("hats/deployment");
    for f in [
        "hats/pipeline-engineer.md",
        "hats/sre.md",
        "review-agents/reliability.md",
        "outputs/PIPELINE-CONFIG.md",
    ] {
        assert_eq!(
            fs::read(upstream.join(f)).unwrap(),
            fs::read(ours.join(f)).unwrap(),
            "{f}"
        );
    }
    let a = load_stage(&upstream).unwrap().stage;
    let b = shipped().stage;
    assert_eq!(a.body, b.body, "STAGE.md body");
    assert_eq!(a.description, b.description);
    assert_eq!(a.gates, b.gates);
}

#[test]
fn digest_is_stable_and_changes_with_any_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deployment");
    support::copy_dir(&repo_root().join("hats/deployment"), &dir);
    let first = definition_digest(&load_stage(&dir).unwrap().stage);
    assert_eq!(first.len(), 64);
    assert_eq!(first, definition_digest(&load_stage(&dir).unwrap().stage));
    // Same files elsewhere: same digest (paths are relative to the stage's parent).
    assert_eq!(first, definition_digest(&shipped().stage));
    let sre = dir.join("hats/sre.md");
    let text = fs::read_to_string(&sre).unwrap();
    fs::write(
        &sre,
        text.replace("genuine safety review", "genuine safety reviews"),
    )
    .unwrap();
    assert_ne!(first, definition_digest(&load_stage(&dir).unwrap().stage));
}

#[test]
fn every_corpus_hat_agent_and_stage_has_requirements_pointing_at_their_source() {
    let Some(corpus) = corpus_dir() else { return };
    let tree = load_tree(&corpus);
    assert!(
        tree.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning),
        "{:?}",
        tree.diagnostics
    );
    let stages = all_stages(&tree);
    assert_eq!(stages.len(), 120);
    let mut checks = 0;
    let mut constraints = 0;
    for stage in &stages {
        assert!(
            !stage.completion_signal.is_empty(),
            "{} has no signal requirements",
            stage.dir.display()
        );
        let mut ids = std::collections::HashSet::new();
        for hat in &stage.hats {
            assert!(hat.constraints().count() >= 2, "{}", hat.file.display());
            for r in &hat.requirements {
                assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
            }
            for r in hat.constraints() {
                constraints += 1;
                // Verbatim: the list item as written, marker removed, wording untouched.
                assert_eq!(
                    line_of(&r.source.file, r.source.line),
                    format!("- {}", r.text)
                );
                assert!(r.id.starts_with(&format!("{}/anti-pattern/", hat.name)));
            }
        }
        for agent in stage
            .review_agents
            .iter()
            .filter(|a| a.origin == AgentOrigin::Own)
        {
            assert!(!agent.checks.is_empty(), "{}", agent.file.display());
            assert!(
                agent.mandate.contains("**MUST**"),
                "{}",
                agent.file.display()
            );
            for (n, r) in agent.checks.iter().enumerate() {
                checks += 1;
                assert_eq!(r.level, Level::Must);
                assert_eq!(r.id, format!("{}/check/{}", agent.name, n + 1));
                assert_eq!(
                    line_of(&r.source.file, r.source.line),
                    format!("- {}", r.text)
                );
            }
        }
        for (n, r) in stage.completion_signal.iter().enumerate() {
            assert_eq!(r.id, format!("signal/{}", n + 1));
            // The sentence starts on its line (it may continue on the next: hard wraps).
            let first_word = r.text.split_whitespace().next().unwrap();
            assert!(
                line_of(&r.source.file, r.source.line).contains(first_word),
                "{}: {} not on line {}",
                stage.dir.display(),
                r.text,
                r.source.line
            );
        }
    }
    assert_eq!(constraints, 1159);
    assert_eq!(checks, 624);
    let signal: Vec<_> = stages
        .iter()
        .flat_map(|s| s.completion_signal.iter())
        .collect();
    let keyword = signal.iter().filter(|r| !r.keywords.is_empty()).count();
    let implicit = signal.iter().filter(|r| r.level == Level::Implicit).count();
    // 318 as in haiku-format.md §4.3; 104 implicit rather than 102 because we also split
    // after a sentence that ends in a closing quote (see tests/check.rs).
    assert_eq!((keyword, implicit), (318, 104));
    assert!(signal
        .iter()
        .filter(|r| !r.keywords.is_empty())
        .all(|r| r.level.is_mandatory()));
    // Included agents: 16 references in 9 stages, all resolved.
    let included = stages
        .iter()
        .flat_map(|s| s.review_agents.iter())
        .filter(|a| matches!(a.origin, AgentOrigin::Included { .. }))
        .count();
    assert_eq!(included, 16);
}

#[test]
fn three_signals_have_no_keyword_and_are_all_implicit() {
    let Some(corpus) = corpus_dir() else { return };
    let tree = load_tree(&corpus);
    let mut none: Vec<String> = all_stages(&tree)
        .iter()
        .filter(|s| {
            s.completion_signal
                .iter()
                .all(|r| r.level == Level::Implicit)
        })
        .map(|s| format!("{}/{}", s.studio.as_deref().unwrap(), s.name))
        .collect();
    none.sort();
    assert_eq!(
        none,
        [
            "compliance/remediate",
            "migration/migrate",
            "product-strategy/stakeholder-review"
        ]
    );
}

#[test]
fn corpus_edge_cases_from_the_spec() {
    let Some(c) = corpus_dir() else { return };
    // §9.10: two keywords in one item, one requirement, strongest first.
    let design = corpus_stage(&c, "software", "design");
    let reviewer = design
        .hats
        .iter()
        .find(|h| h.name == "design-reviewer")
        .unwrap();
    let r = reviewer.constraints().nth(3).unwrap();
    assert_eq!(r.keywords, ["MUST NOT", "REQUIRED"]);
    assert_eq!(r.level, Level::MustNot);
    // §9.9: a keyword in Focus is a requirement, but not a constraint.
    assert_eq!(reviewer.requirements[0].id, "design-reviewer/focus/1");
    assert_eq!(reviewer.constraints().count(), 5);
    // §9.11: garbled rewrites kept verbatim and flagged.
    let designer = design.hats.iter().find(|h| h.name == "designer").unwrap();
    let first = designer.constraints().next().unwrap();
    assert_eq!(
        first.text,
        "The agent **MUST NOT** aSCII art or text-only descriptions — ALWAYS produce visual artifacts"
    );
    assert!(first.malformed);
    assert!(shipped()
        .stage
        .hats
        .iter()
        .flat_map(|h| h.requirements.iter())
        .all(|r| !r.malformed));
    // §9.4 / §9.12: the quoted-keyword RFC preamble and phase instructions are not signal
    // requirements; the plain `## Completion Signal` heading is found.
    assert_eq!(design.completion_signal.len(), 5);
    assert_eq!(
        design.completion_signal[3].keywords,
        ["REQUIRED", "MUST NOT"]
    );
    assert_eq!(design.completion_signal[3].level, Level::Must);

    // §9.5: the elaborator's second `### Anti-patterns` list continues the numbering;
    // the Model Assignment sentence is a requirement of its own section.
    let inception = corpus_stage(&c, "software", "inception");
    let elaborator = inception
        .hats
        .iter()
        .find(|h| h.name == "elaborator")
        .unwrap();
    let ids: Vec<_> = elaborator.constraints().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 9);
    assert_eq!(ids[8], "elaborator/anti-pattern/9");
    assert!(elaborator
        .requirements
        .iter()
        .any(|r| r.id == "elaborator/model-assignment/1"));
    // Criteria guidance: 4 good, 4 bad; a remark after the closing quote is kept.
    let criteria = inception.criteria.as_ref().unwrap();
    assert_eq!((criteria.good.len(), criteria.bad.len()), (4, 4));
    assert_eq!(
        criteria.bad[3],
        "Database schema is defined (too technical for inception — belongs in design/development)"
    );

    // §9.6: prose after the anti-pattern list is kept, as prose.
    let dev = corpus_stage(&c, "software", "development");
    let builder = dev.hats.iter().find(|h| h.name == "builder").unwrap();
    let prose: Vec<_> = builder
        .requirements
        .iter()
        .filter(|r| r.section == "prose")
        .collect();
    assert_eq!(prose.len(), 2);
    assert_eq!(prose[1].id, "builder/prose/2");
    assert_eq!(prose[1].level, Level::MustNot);
    assert_eq!(builder.constraints().count(), 5);

    // §9.3: hard-wrapped signal joined; no Criteria Guidance.
    let concept = corpus_stage(&c, "gamedev", "concept");
    assert!(concept.criteria.is_none());
    assert_eq!(concept.completion_signal.len(), 4);
    assert_eq!(
        concept.completion_signal[2].text,
        "Target audience **MUST** be identified with competitive references."
    );
    assert!(!concept.completion_signal_text.contains('\n'));

    // §9.13: `vs.` does not split a sentence.
    let measure = corpus_stage(&c, "marketing", "measure");
    assert_eq!(measure.completion_signal.len(), 3);
    assert!(measure.completion_signal[0]
        .text
        .contains("KPI actuals vs. targets, channel-level"));

    // §9.7: Responsibilities instead of Produces/Reads.
    let offer = corpus_stage(&c, "hr", "offer");
    let closer = offer.hats.iter().find(|h| h.name == "closer").unwrap();
    assert!(closer.responsibilities.is_some() && closer.produces.is_none());

    // §9.14: scalar and list `review:`.
    let neg = corpus_stage(&c, "sales", "negotiation");
    assert_eq!(neg.gates, [GateKind::Ask, GateKind::Await]);

    // §9.20 / §9.22: required: false, and a stage without outputs/.
    let gd = corpus_stage(&c, "gamedev", "concept");
    assert!(gd
        .outputs
        .iter()
        .any(|o| o.name == "knowledge" && !o.required));
    assert!(corpus_stage(&c, "hwdev", "requirements").outputs.is_empty());
}

#[test]
fn included_agents_follow_own_ones_in_include_order() {
    let Some(c) = corpus_dir() else { return };
    let loaded = load_stage(&c.join("data-pipeline/stages/deployment")).unwrap();
    let agents: Vec<_> = loaded
        .stage
        .review_agents
        .iter()
        .map(|a| (a.name.as_str(), a.origin.clone()))
        .collect();
    assert_eq!(
        agents,
        [
            ("reliability", AgentOrigin::Own),
            (
                "data-quality",
                AgentOrigin::Included {
                    stage: "transformation".into()
                }
            ),
            (
                "coverage",
                AgentOrigin::Included {
                    stage: "validation".into()
                }
            ),
        ]
    );
    assert_eq!(loaded.stage.studio.as_deref(), Some("data-pipeline"));
    // The dangling input is a warning on the stage's own load too.
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].line, Some(8));
    // Included files are part of the digest input.
    assert!(loaded
        .stage
        .source_files
        .iter()
        .any(|f| f.ends_with("transformation/review-agents/data-quality.md")));
}

#[test]
fn resolve_stage_dir_by_studio_dir_name_slug_alias() {
    assert_eq!(
        resolve_stage_dir(None, None).unwrap(),
        PathBuf::from("embedded:/deployment")
    );
    assert_eq!(
        resolve_stage_dir(Some("embedded:deployment"), None).unwrap(),
        PathBuf::from("embedded:/deployment")
    );
    assert_eq!(
        resolve_stage_dir(Some("some/dir"), None).unwrap(),
        PathBuf::from("some/dir")
    );
    let Some(c) = corpus_dir() else { return };
    for name in ["software", "Application-Development", "appdev"] {
        let dir = resolve_stage_dir(Some("security"), Some(&c.join(name))).unwrap();
        assert_eq!(dir, c.join("software/stages/security"), "{name}");
    }
    assert_eq!(
        resolve_stage_dir(Some("concept"), Some(&c.join("game-development"))).unwrap(),
        c.join("gamedev/stages/concept")
    );
    match resolve_stage_dir(Some("nope"), Some(&c.join("gamedev"))) {
        Err(DefinitionError::UnknownStage { known, .. }) => assert!(known.contains("concept")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        resolve_stage_dir(Some("x"), Some(&c.join("zzz"))),
        Err(DefinitionError::UnknownStudio { .. })
    ));
}

#[test]
fn load_stage_errors_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_stage(tmp.path()),
        Err(DefinitionError::NotAStage { .. })
    ));
    fs::write(
        tmp.path().join("STAGE.md"),
        "---\nhats: [a]\nreview-agents-include:\n  - stage: nowhere\n    agents: [x]\n---\n",
    )
    .unwrap();
    match load_stage(tmp.path()) {
        Err(DefinitionError::Invalid { diagnostics }) => {
            // Errors and warnings together, each with file and line.
            assert!(diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error && d.line == Some(2)));
            assert!(diagnostics
                .iter()
                .any(|d| d.severity == Severity::Warning && d.line == Some(4)));
        }
        other => panic!("{other:?}"),
    }
}

/// Writes a stage whose `file` (relative to the stage dir) has the given bytes, the rest
/// being the shipped stage, and loads it.
fn load_with(file: &str, bytes: &[u8]) -> Result<LoadedStage, DefinitionError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deployment");
    support::copy_dir(&repo_root().join("hats/deployment"), &dir);
    fs::write(dir.join(file), bytes).unwrap();
    load_stage(&dir)
}

const FILES: &[&str] = &[
    "STAGE.md",
    "hats/pipeline-engineer.md",
    "hats/sre.md",
    "review-agents/reliability.md",
    "outputs/PIPELINE-CONFIG.md",
];

/// A damaging edit of a real file: insert, delete or replace a span.
fn mutate(text: &[u8], op: u8, at: usize, len: usize, insert: &[u8]) -> Vec<u8> {
    let at = at % (text.len() + 1);
    let end = (at + len).min(text.len());
    let mut out = text[..at].to_vec();
    match op % 3 {
        0 => {
            out.extend_from_slice(insert);
            out.extend_from_slice(&text[at..]);
        }
        1 => out.extend_from_slice(&text[end..]),
        _ => {
            out.extend_from_slice(insert);
            out.extend_from_slice(&text[end..]);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}|(---\n|\\*\\*|- |## |MUST NOT |\"|`|\n|[a-z ]{1,8}|\\.){0,60}") {
        let path = Path::new("x.md");
        if let Ok(doc) = document::parse_document(path, &text) {
            let sections = body::parse_body(&doc.body, doc.body_line);
            for s in &sections {
                for b in &s.blocks {
                    for u in rfc2119::units(b) {
                        let k = rfc2119::keywords(&u.text);
                        let _ = rfc2119::primary_level(&k);
                        let _ = rfc2119::looks_malformed(&u.text, &k);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn loading_damaged_real_files_never_panics(
        which in 0..FILES.len(),
        op in any::<u8>(),
        at in any::<usize>(),
        len in 0usize..200,
        insert in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let original = fs::read(repo_root().join("hats/deployment").join(FILES[which])).unwrap();
        let damaged = mutate(&original, op, at, len, &insert);
        match load_with(FILES[which], &damaged) {
            Ok(_) => {}
            Err(DefinitionError::Invalid { diagnostics }) => {
                prop_assert!(diagnostics.iter().any(|d| d.severity == Severity::Error));
                for d in &diagnostics {
                    prop_assert!(!d.message.is_empty());
                }
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn loading_arbitrary_bytes_never_panics(
        which in 0..FILES.len(),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = load_with(FILES[which], &bytes);
    }
}
