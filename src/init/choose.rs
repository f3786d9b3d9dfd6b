//! Which files a Reads item binds: the item's kind, recognised by the words it uses, then
//! the patterns of that kind the layout offers, kept when they bind files nothing before
//! them bound. Deterministic: fixed rules, files in lexicographic order.

use std::collections::HashSet;

use crate::config::{normalise_item, CONFIG_FILE};
use crate::inputs::pattern_matcher;

use super::docs::INTENT_DOCS;
use super::layout::Layout;
use super::scan::Repo;

/// What kind of thing a Reads item asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Validation,
    Transformation,
    Extraction,
    Operations,
    Infrastructure,
}

/// Word prefixes that identify each kind, most specific first: an item takes the first kind
/// any of its words fits (`transform` fits "transformation code").
const KIND_WORDS: &[(Kind, &[&str])] = &[
    (Kind::Validation, &["validation", "validat", "quality"]),
    (Kind::Transformation, &["transform", "model", "sql", "dbt"]),
    (
        Kind::Extraction,
        &["extract", "ingest", "job", "dag", "orchestrat", "load"],
    ),
    (
        Kind::Operations,
        &[
            "sla",
            "slo",
            "discovery",
            "operational",
            "monitor",
            "alert",
            "runbook",
        ],
    ),
    (
        Kind::Infrastructure,
        &["intent", "infrastructure", "requirement", "deploy"],
    ),
];

/// Where such things live when no ecosystem file says so.
const VALIDATION: &[&str] = &[
    "reports/**/*validation*",
    "reports/**/*quality*",
    "validation/**",
    "**/*validation-report*",
    "**/*validation_report*",
];
const VALIDATION_TOOLS: &[&str] = &[
    "**/great_expectations/expectations/**",
    "**/gx/expectations/**",
    "**/soda/**/*.yml",
    "**/data_quality/**",
    "**/data-quality/**",
];
const TRANSFORMATION: &[&str] = &[
    "models/**/*.sql",
    "models/**/*.yml",
    "models/**/*.yaml",
    "macros/**/*.sql",
    "snapshots/**/*.sql",
    "transform/**/*.sql",
    "transformations/**/*.sql",
    "sql/**/*.sql",
];
const EXTRACTION: &[&str] = &[
    "extract/**/*.py",
    "extraction/**/*.py",
    "extractors/**/*.py",
    "ingest/**/*.py",
    "ingestion/**/*.py",
    "jobs/**/*.py",
    "orchestration/**/*.py",
    "pipelines/**/*.py",
];
const OPERATIONS: &[&str] = &[
    "ops/**",
    "runbooks/**",
    "docs/runbook*.md",
    "docs/sla*.md",
    "SLA.md",
    "monitoring/**",
    "alerts/**",
];
const INFRASTRUCTURE: &[&str] = &[
    "deploy/**",
    "deployment/**",
    "infra/**",
    "infrastructure/**",
];
const INFRASTRUCTURE_DOCS: &[&str] = &["ops/runbook*.md", "runbooks/**"];

/// Words too common to find a file by.
const STOP_WORDS: &[&str] = &[
    "from", "the", "and", "for", "with", "this", "that", "into", "code", "file", "files",
];

/// The most files a fallback (item words found in file names) binds.
const MAX_FALLBACK_FILES: usize = 20;

/// The most candidates a TODO line lists.
const MAX_CANDIDATES: usize = 5;

/// The patterns chosen for one item and how many files they bind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Choice {
    pub patterns: Vec<String>,
    pub files: usize,
}

fn words(item: &str) -> Vec<String> {
    normalise_item(item)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn kind(words: &[String]) -> Option<Kind> {
    KIND_WORDS
        .iter()
        .find(|(_, prefixes)| {
            words
                .iter()
                .any(|w| prefixes.iter().any(|p| w.starts_with(p)))
        })
        .map(|(k, _)| *k)
}

/// Whether an item asks for validation evidence.
pub fn is_validation(item: &str) -> bool {
    kind(&words(item)) == Some(Kind::Validation)
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The patterns a kind tries, in order: `(one_of, also)` — the first of `one_of` that binds
/// anything, then each of `also` that binds something new.
fn candidates(kind: Kind, layout: &Layout, repo: &Repo) -> (Vec<String>, Vec<String>) {
    let mut also = Vec::new();
    let one_of = match kind {
        Kind::Operations | Kind::Infrastructure => owned(INTENT_DOCS),
        _ => Vec::new(),
    };
    match kind {
        Kind::Validation => {
            also.extend(owned(VALIDATION));
            for p in &layout.dbt {
                also.extend(p.validation_patterns(repo));
            }
            also.extend(owned(VALIDATION_TOOLS));
        }
        Kind::Transformation => {
            for p in &layout.dbt {
                also.extend(p.code_patterns());
            }
            for d in &layout.dags {
                also.extend(d.sql_patterns());
            }
            if layout.dbt.is_empty() {
                also.extend(owned(TRANSFORMATION));
            }
        }
        Kind::Extraction => {
            for d in &layout.dags {
                also.extend(d.patterns());
                also.extend(d.helper_patterns());
            }
            also.extend(layout.orchestrated.code.iter().cloned());
            also.extend(owned(EXTRACTION));
        }
        Kind::Operations => {
            also.extend(owned(OPERATIONS));
            also.extend(layout.runbooks.iter().cloned());
        }
        Kind::Infrastructure => {
            also.extend(owned(INFRASTRUCTURE));
            also.extend(layout.infra.iter().cloned());
            for root in &layout.astro {
                also.extend(super::airflow::astro_patterns(root));
            }
            also.extend(layout.orchestrated.project.iter().cloned());
            also.extend(owned(INFRASTRUCTURE_DOCS));
        }
    }
    (one_of, also)
}

/// The patterns for one item, chosen against the workspace's files.
pub fn choose(item: &str, layout: &Layout, repo: &Repo) -> Choice {
    let words = words(item);
    let excluded = &layout.excluded;
    let files: Vec<&String> = repo
        .files
        .iter()
        .filter(|f| *f != CONFIG_FILE && excluded.binary_search(f).is_err())
        .collect();
    let mut bound: HashSet<&String> = HashSet::new();
    let mut patterns: Vec<String> = Vec::new();
    let mut add = |pattern: &str, patterns: &mut Vec<String>| {
        if patterns.iter().any(|p| p == pattern) {
            return false;
        }
        let matches = pattern_matcher(pattern);
        let new: Vec<&String> = matching(pattern, &files, &matches)
            .into_iter()
            .filter(|f| !bound.contains(f))
            .collect();
        if new.is_empty() {
            return false;
        }
        // A pattern that would also bind an excluded file is written as the files it may bind.
        if excluded.iter().any(|f| matches(f)) {
            patterns.extend(new.iter().map(|f| f.to_string()));
        } else {
            patterns.push(pattern.to_string());
        }
        bound.extend(new);
        true
    };
    if let Some(kind) = kind(&words) {
        let (one_of, also) = candidates(kind, layout, repo);
        for p in &one_of {
            if add(p, &mut patterns) {
                break;
            }
        }
        for p in &also {
            add(p, &mut patterns);
        }
    }
    if patterns.is_empty() {
        // Files whose path names a significant word of the item.
        for f in named(&words, &files).into_iter().take(MAX_FALLBACK_FILES) {
            add(f, &mut patterns);
        }
    }
    Choice {
        files: bound.len(),
        patterns,
    }
}

/// The files (sorted) a pattern binds: a plain path (a file, or a directory and what it
/// holds) is looked up, a glob tried against each file.
fn matching<'f>(
    pattern: &str,
    files: &[&'f String],
    matches: &dyn Fn(&str) -> bool,
) -> Vec<&'f String> {
    if pattern.contains(['*', '?', '[', '{']) {
        return files.iter().copied().filter(|f| matches(f)).collect();
    }
    let clean = pattern.trim_start_matches("./").trim_end_matches('/');
    let start = files.partition_point(|f| f.as_str() < clean);
    files[start..]
        .iter()
        .copied()
        .take_while(|f| f.starts_with(clean))
        .filter(|f| matches(f))
        .collect()
}

fn significant(words: &[String]) -> Vec<&String> {
    words
        .iter()
        .filter(|w| w.len() >= 4 && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// Files whose path names a significant word of the item, in path order.
fn named<'f>(words: &[String], files: &[&'f String]) -> Vec<&'f String> {
    let significant = significant(words);
    files
        .iter()
        .copied()
        .filter(|f| {
            let lower = f.to_lowercase();
            significant.iter().any(|w| lower.contains(w.as_str()))
        })
        .collect()
}

/// Hints of each kind looked for in file names when nothing fits, beside the item's words.
fn hints(kind: Option<Kind>) -> &'static [&'static str] {
    match kind {
        Some(Kind::Validation) => &["test", "check", "expect", "quality", "report", "result"],
        Some(Kind::Transformation) => &[".sql", "model", "transform", "dbt"],
        Some(Kind::Extraction) => &["dag", "extract", "ingest", "job", "flow", "pipeline", ".py"],
        Some(Kind::Operations) => &["runbook", "sla", "alert", "monitor", "oncall", "ops", ".md"],
        Some(Kind::Infrastructure) => &["deploy", "infra", "docker", "helm", "k8s", ".tf", ".md"],
        None => &[],
    }
}

/// The files that come closest to an item nothing fits: most hints and item words in their
/// path first, then in path order; at most a few.
pub fn closest<'f>(item: &str, files: &'f [String]) -> Vec<&'f String> {
    let words = words(item);
    let significant = significant(&words);
    let hints = hints(kind(&words));
    let mut scored: Vec<(usize, &String)> = files
        .iter()
        .filter(|f| *f != CONFIG_FILE && !super::layout::never_bound(f))
        .map(|f| {
            let lower = f.to_lowercase();
            let score = significant
                .iter()
                .filter(|w| lower.contains(w.as_str()))
                .count()
                * 2
                + hints.iter().filter(|h| lower.contains(*h)).count();
            (score, f)
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(MAX_CANDIDATES)
        .map(|(_, f)| f)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(list: &[&str]) -> Repo {
        let mut files: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        files.sort();
        Repo {
            root: std::path::PathBuf::from("/nowhere"),
            files,
        }
    }

    fn chosen(item: &str, r: &Repo) -> Vec<String> {
        choose(item, &Layout::detect(r), r).patterns
    }

    #[test]
    fn items_take_the_files_of_their_kind() {
        let r = repo(&[
            "README.md",
            "dags/orders.py",
            "models/marts/fct.sql",
            "models/schema.yml",
            "ops/runbook.md",
            "reports/validation-report.md",
            "src/app.py",
        ]);
        assert_eq!(chosen("Validation report", &r), ["reports/**/*validation*"]);
        assert_eq!(
            chosen("transformation code", &r),
            ["models/**/*.sql", "models/**/*.yml"]
        );
        assert_eq!(chosen("extraction jobs", &r), ["dags/**/*.py"]);
        assert_eq!(
            chosen("infrastructure requirements from the intent", &r),
            ["README.md", "ops/runbook*.md"]
        );
        assert_eq!(
            chosen("SLA requirements from discovery", &r),
            ["README.md", "ops/**"]
        );
    }

    #[test]
    fn a_dedicated_intent_file_wins_over_the_readme_and_nothing_is_bound_twice() {
        let r = repo(&["README.md", "intent.md", "ops/runbook.md"]);
        let c = choose("SLA requirements from discovery", &Layout::detect(&r), &r);
        assert_eq!(c.patterns, ["intent.md", "ops/**"]);
        assert_eq!(c.files, 2);
    }

    #[test]
    fn unknown_items_fall_back_to_file_names_then_to_nothing() {
        let r = repo(&["docs/capacity-plan.md", "hatrack.toml", "src/main.rs"]);
        assert_eq!(chosen("capacity plan", &r), ["docs/capacity-plan.md"]);
        assert_eq!(
            choose("validation report", &Layout::detect(&r), &r),
            Choice::default()
        );
    }

    #[test]
    fn the_closest_candidates_are_named_best_first() {
        let files = [
            "README.md",
            "docs/test-plan.md",
            "src/main.rs",
            "tests/test_quality_checks.py",
        ]
        .map(String::from);
        assert_eq!(
            closest("validation report", &files),
            ["tests/test_quality_checks.py", "docs/test-plan.md"]
        );
        assert!(closest("capacity forecast", &files).is_empty());
    }
}
