//! `hatrack init [DIR]`: looks at a repository and writes a commented `hatrack.toml` that
//! binds every **Reads** item of the stage to the files that fit — orchestrator DAGs, SQL
//! models and their schema YAML, intent and README, ops runbooks, validation reports. The
//! choice is deterministic (fixed rules, files in lexicographic order); an item nothing fits
//! is written with a `# TODO:` line and a placeholder path, so `run` stops on it and says
//! which item to fill. An existing file is never overwritten without `--force`.

use std::io::Write;
use std::path::Path;

use crate::cli::InitArgs;
use crate::config::{normalise_item, ConfigFile, CONFIG_FILE};
use crate::definition::{self, embedded, Stage};
use crate::inputs::{self, pattern_matches, split_reads};
use crate::run::setup;
use crate::Error;

/// What kind of thing a Reads item asks for, recognised by the words it uses, and where
/// such things live in a typical repository.
struct Kind {
    /// Word prefixes that identify the kind (`transform` fits "transformation code").
    words: &'static [&'static str],
    /// The first of these that matches anything is bound (the intent document).
    one_of: &'static [&'static str],
    /// Each of these that matches something not already bound is bound too.
    also: &'static [&'static str],
}

/// Intent documents, best first: a dedicated intent file, else the README.
const INTENT_DOCS: &[&str] = &[
    "intent.md",
    "INTENT.md",
    "docs/intent.md",
    "docs/INTENT.md",
    "README.md",
    "readme.md",
    "README",
];

/// The kinds, most specific first: an item takes the first kind any of its words fits.
const KINDS: &[Kind] = &[
    Kind {
        words: &["validation", "validat", "quality"],
        one_of: &[],
        also: &[
            "reports/**/*validation*",
            "reports/**/*quality*",
            "validation/**",
            "**/*validation-report*",
            "**/*validation_report*",
        ],
    },
    Kind {
        words: &["transform", "model", "sql", "dbt"],
        one_of: &[],
        also: &[
            "models/**/*.sql",
            "models/**/*.yml",
            "models/**/*.yaml",
            "dbt_project.yml",
            "macros/**/*.sql",
            "snapshots/**/*.sql",
            "tests/**/*.sql",
            "transform/**/*.sql",
            "transformations/**/*.sql",
            "sql/**/*.sql",
        ],
    },
    Kind {
        words: &["extract", "ingest", "job", "dag", "orchestrat", "load"],
        one_of: &[],
        also: &[
            "extract/**/*.py",
            "extraction/**/*.py",
            "extractors/**/*.py",
            "ingest/**/*.py",
            "ingestion/**/*.py",
            "jobs/**/*.py",
            "dags/**/*.py",
            "airflow/dags/**/*.py",
            "orchestration/**/*.py",
            "pipelines/**/*.py",
        ],
    },
    Kind {
        words: &[
            "sla",
            "slo",
            "discovery",
            "operational",
            "monitor",
            "alert",
            "runbook",
        ],
        one_of: INTENT_DOCS,
        also: &[
            "ops/**",
            "runbooks/**",
            "docs/runbook*.md",
            "docs/sla*.md",
            "SLA.md",
            "monitoring/**",
            "alerts/**",
        ],
    },
    Kind {
        words: &["intent", "infrastructure", "requirement", "deploy"],
        one_of: INTENT_DOCS,
        also: &[
            "deploy/**",
            "deployment/**",
            "infra/**",
            "infrastructure/**",
            "terraform/**/*.tf",
            "k8s/**",
            "kubernetes/**",
            "helm/**",
            "Dockerfile",
            "docker-compose.yml",
            "docker-compose.yaml",
            "ops/runbook*.md",
            "runbooks/**",
        ],
    },
];

/// Words too common to find a file by.
const STOP_WORDS: &[&str] = &[
    "from", "the", "and", "for", "with", "this", "that", "into", "code", "file", "files",
];

/// The most files a fallback (item words found in file names) binds.
const MAX_FALLBACK_FILES: usize = 20;

/// One `[inputs]` entry to write.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    /// The hats whose Reads line has the item.
    hats: Vec<String>,
    /// Patterns (globs or paths); empty when nothing fits.
    patterns: Vec<String>,
    /// How many files they bind.
    files: usize,
}

/// The patterns for one item, chosen against the workspace's files (sorted).
fn choose<'f>(item: &str, files: &'f [String]) -> (Vec<String>, usize) {
    let words: Vec<String> = normalise_item(item)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut bound: Vec<&String> = Vec::new();
    let mut patterns = Vec::new();
    let add = |pattern: &str, patterns: &mut Vec<String>, bound: &mut Vec<&'f String>| {
        let new: Vec<&String> = files
            .iter()
            .filter(|f| pattern_matches(pattern, f) && !bound.contains(f))
            .collect();
        if new.is_empty() {
            return false;
        }
        bound.extend(new);
        patterns.push(pattern.to_string());
        true
    };
    let kind = KINDS.iter().find(|k| {
        words
            .iter()
            .any(|w| k.words.iter().any(|p| w.starts_with(p)))
    });
    if let Some(kind) = kind {
        for p in kind.one_of {
            if add(p, &mut patterns, &mut bound) {
                break;
            }
        }
        for p in kind.also {
            add(p, &mut patterns, &mut bound);
        }
    }
    if patterns.is_empty() {
        // Files whose path names a significant word of the item.
        let significant: Vec<&String> = words
            .iter()
            .filter(|w| w.len() >= 4 && !STOP_WORDS.contains(&w.as_str()))
            .collect();
        for f in files {
            let lower = f.to_lowercase();
            if patterns.len() < MAX_FALLBACK_FILES
                && f != CONFIG_FILE
                && significant.iter().any(|w| lower.contains(w.as_str()))
            {
                patterns.push(f.clone());
                bound.push(f);
            }
        }
    }
    let count = bound.len();
    (patterns, count)
}

/// The entries for every Reads item bound to workspace files, in the order the hats read
/// them (an item several hats read appears once).
fn entries(stage: &Stage, files: &[String]) -> (Vec<Entry>, Vec<(String, String, String)>) {
    let mut out: Vec<Entry> = Vec::new();
    let mut from_hats = Vec::new();
    let hat_names: Vec<&str> = stage.hats.iter().map(|h| h.name.as_str()).collect();
    for hat in &stage.hats {
        for item in split_reads(hat.reads.as_deref().unwrap_or("")) {
            if let Some(other) = inputs::named_hat(&item, hat_names.iter().copied()) {
                from_hats.push((hat.name.clone(), item.clone(), other.to_string()));
                continue;
            }
            let key = normalise_item(&item);
            if let Some(e) = out.iter_mut().find(|e| e.key == key) {
                if !e.hats.contains(&hat.name) {
                    e.hats.push(hat.name.clone());
                }
                continue;
            }
            let (patterns, count) = choose(&item, files);
            out.push(Entry {
                key,
                hats: vec![hat.name.clone()],
                patterns,
                files: count,
            });
        }
    }
    (out, from_hats)
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The file's text.
fn render(
    stage_spelling: &str,
    stage_line: Option<String>,
    stage: &Stage,
    files: &[String],
) -> String {
    let (entries, from_hats) = entries(stage, files);
    let mut t = String::new();
    t.push_str(&format!(
        "# hatrack.toml, written by `hatrack init` for the stage `{}` ({stage_spelling}).\n",
        stage.name
    ));
    t.push_str(
        "# Each [inputs] entry binds one item of a hat's Reads line to files of this repository\n",
    );
    t.push_str("# (paths or globs, relative to this file). Check the choices and fill in what is marked, then:\n");
    if let Some(first) = stage.hats.first() {
        let cmd = format!("hatrack render {}", first.name);
        t.push_str(&format!(
            "#   {cmd:<32}# exactly what would be sent to the model\n"
        ));
    }
    t.push_str(&format!(
        "#   {:<32}# review this repository\n\n",
        "hatrack run"
    ));
    t.push_str("[inputs]\n");
    for e in &entries {
        t.push_str(&format!("# Read by {}.", e.hats.join(", ")));
        if e.patterns.is_empty() {
            t.push('\n');
            t.push_str(&format!(
                "# TODO: no file found for {}; replace the placeholder with the file(s) or glob(s) that hold it.\n",
                toml_str(&e.key)
            ));
            t.push_str(&format!(
                "{} = \"TODO/{}\"\n",
                toml_str(&e.key),
                e.key.replace(|c: char| !c.is_alphanumeric(), "-")
            ));
        } else {
            let plural = if e.files == 1 { "file" } else { "files" };
            t.push_str(&format!(" {} {plural} now.\n", e.files));
            let list: Vec<String> = e.patterns.iter().map(|p| toml_str(p)).collect();
            t.push_str(&format!("{} = [{}]\n", toml_str(&e.key), list.join(", ")));
        }
    }
    for (hat, item, other) in &from_hats {
        t.push_str(&format!(
            "# {hat} also reads {}: the {other} hat's artifacts, bound by hatrack itself.\n",
            toml_str(item)
        ));
    }
    t.push('\n');
    match stage_line {
        Some(line) => t.push_str(&format!(
            "# [stage] is policy: `list` and `render` read it here, `run` only with\n# --trust-workspace-config (on a repository you own) or from a --policy file (docs/policy.md).\n[stage]\n{line}\n"
        )),
        None => t.push_str(&format!(
            "# [stage] path is policy (docs/policy.md): pass --stage DIR, or set it in a --policy file.\n# default: {stage_spelling}, built into hatrack\n"
        )),
    }
    t.push_str(
        "\n# The model, its endpoint and key are policy: --model / HATRACK_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY.\n\
         \n# [limits]                      # bytes of each file / of each step's inputs quoted into prompts\n\
         # max_file_bytes = 12000\n# max_input_bytes = 48000\n",
    );
    t
}

pub fn init(args: &InitArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let dir = setup::workspace_dir(args.dir.as_deref())?;
    let path = dir.join(CONFIG_FILE);
    // Whatever is at the name counts, a link (even a dangling one) included: never followed.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !args.force {
            let what = if meta.file_type().is_symlink() {
                "already exists (a symbolic link)"
            } else {
                "already exists"
            };
            return Err(Error::usage(format!(
                "{} {what}; hatrack init never overwrites it — pass --force to replace it with a new file, or edit it by hand",
                path.display()
            )));
        }
    }
    // With --force over an existing file, keep the stage it names (if it still loads).
    let existing = ConfigFile::load(&dir).unwrap_or_default();
    let stage_dir = setup::stage_dir(&args.stage, &existing, &dir)?;
    let stage = setup::load_stage(&stage_dir)?.stage;
    let (spelling, stage_line) = match embedded::spelling(&stage_dir) {
        Some(s) if stage_dir == definition::default_stage_dir() => (s, None),
        Some(s) => (s.clone(), Some(format!("path = {}", toml_str(&s)))),
        None => {
            let rel = relative_path(&stage_dir, &dir);
            (rel.clone(), Some(format!("path = {}", toml_str(&rel))))
        }
    };
    let files = inputs::workspace_files(&dir).map_err(|e| inputs::InputErrors(vec![e]))?;
    let text = render(&spelling, stage_line, &stage, &files);
    // What we wrote must load: a bug here should not leave a broken file behind.
    ConfigFile::parse(&text, &path)?;
    write_config(&dir, &text, args.force)?;
    let (entries, _) = entries(&stage, &files);
    let todo: Vec<&Entry> = entries.iter().filter(|e| e.patterns.is_empty()).collect();
    let w = |e: std::io::Error| Error::io("writing to stdout", e);
    writeln!(
        out,
        "wrote {}: {} input(s) bound for stage {}, {} to fill in",
        path.display(),
        entries.len() - todo.len(),
        stage.name,
        todo.len()
    )
    .map_err(w)?;
    for e in &todo {
        writeln!(out, "  TODO: {:?} (read by {})", e.key, e.hats.join(", ")).map_err(w)?;
    }
    Ok(0)
}

/// The stage directory as `[stage] path` spells it: relative to the workspace when it lies
/// inside or next to it (`../hatrack/hats/deployment`), else absolute.
fn relative_path(stage_dir: &Path, workspace: &Path) -> String {
    let (Ok(stage), Ok(ws)) = (stage_dir.canonicalize(), workspace.canonicalize()) else {
        return stage_dir.display().to_string();
    };
    match ws.parent() {
        Some(parent) if parent.parent().is_some() && stage.starts_with(parent) => {
            crate::run::rundir::relative_to(&stage, &ws)
        }
        _ => stage.display().to_string(),
    }
}

/// Through the confined writer: a temporary file put in place whole. With --force a link at
/// the name is replaced by the new file, never written through; without it, a file that
/// appeared since the check is left alone.
fn write_config(dir: &Path, text: &str, force: bool) -> Result<(), Error> {
    use crate::safe_fs::{write_file, write_new_file, SafeFsError};
    let written = if force {
        write_file(dir, CONFIG_FILE, text.as_bytes(), true)
    } else {
        write_new_file(dir, CONFIG_FILE, text.as_bytes())
    };
    match written {
        Ok(_) => Ok(()),
        Err(SafeFsError::Io { path, source })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Err(Error::usage(format!(
                "{} appeared while hatrack init was writing it; it was left alone — pass --force to replace it",
                path.display()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn items_take_the_files_of_their_kind() {
        let f = files(&[
            "README.md",
            "dags/orders.py",
            "models/marts/fct.sql",
            "models/schema.yml",
            "ops/runbook.md",
            "reports/validation-report.md",
            "src/app.py",
        ]);
        assert_eq!(
            choose("Validation report", &f).0,
            ["reports/**/*validation*"]
        );
        assert_eq!(
            choose("transformation code", &f).0,
            ["models/**/*.sql", "models/**/*.yml"]
        );
        assert_eq!(choose("extraction jobs", &f).0, ["dags/**/*.py"]);
        assert_eq!(
            choose("infrastructure requirements from the intent", &f).0,
            ["README.md", "ops/runbook*.md"]
        );
        assert_eq!(
            choose("SLA requirements from discovery", &f).0,
            ["README.md", "ops/**"]
        );
    }

    #[test]
    fn a_dedicated_intent_file_wins_over_the_readme_and_nothing_is_bound_twice() {
        let f = files(&["README.md", "intent.md", "ops/runbook.md"]);
        assert_eq!(
            choose("SLA requirements from discovery", &f),
            (vec!["intent.md".to_string(), "ops/**".to_string()], 2)
        );
    }

    #[test]
    fn unknown_items_fall_back_to_file_names_then_to_nothing() {
        let f = files(&["docs/capacity-plan.md", "hatrack.toml", "src/main.rs"]);
        assert_eq!(choose("capacity plan", &f).0, ["docs/capacity-plan.md"]);
        assert_eq!(choose("validation report", &f), (Vec::new(), 0));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
