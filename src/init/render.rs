//! The `hatrack.toml` init writes: one commented `[inputs]` entry per Reads item, a TODO
//! line naming the closest candidates for what nothing fits, the stage and the policy notes.

use crate::config::normalise_item;
use crate::definition::Stage;
use crate::inputs::{self, split_reads};

use super::choose::{choose, closest, Choice};
use super::layout::Layout;
use super::scan::Repo;

/// One `[inputs]` entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The hats whose Reads line has the item.
    pub hats: Vec<String>,
    pub choice: Choice,
    /// When nothing fits: the files that come closest, in this workspace…
    pub closest: Vec<String>,
    /// …and, for a workspace inside a larger repository, outside it (repository-relative).
    pub outside: Vec<String>,
    /// Where the ecosystem found keeps such a thing, when nothing fits.
    pub hint: Option<&'static str>,
}

/// What to say of missing validation evidence in a dbt project.
const DBT_EVIDENCE: &str = "dbt keeps its evidence in target/run_results.json (write it with `dbt build` or `dbt test` before hatrack runs, e.g. in CI) and in schema YAML that declares tests";

/// What one workspace's file says besides its entries.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// How the stage is named (`embedded:deployment`, a path).
    pub stage_spelling: String,
    /// `path = "…"` for `[stage]`, when the file names the stage.
    pub stage_line: Option<String>,
    /// Comment lines for the top of the file (a question, where the workspace sits).
    pub notes: Vec<String>,
}

/// An item bound by hatrack itself to an earlier hat's artifacts: (hat, item, other hat).
pub type FromHat = (String, String, String);

/// The entries for every Reads item bound to workspace files, in the order the hats read
/// them (an item several hats read appears once). `whole` is the enclosing repository when
/// the workspace is a part of it.
pub fn entries(
    stage: &Stage,
    layout: &Layout,
    repo: &Repo,
    whole: Option<(&Repo, &str)>,
) -> (Vec<Entry>, Vec<FromHat>) {
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
            let choice = choose(&item, layout, repo);
            let (closest, outside) = if choice.patterns.is_empty() {
                missing(&item, repo, whole)
            } else {
                Default::default()
            };
            let hint = (choice.patterns.is_empty()
                && !layout.dbt.is_empty()
                && super::choose::is_validation(&item))
            .then_some(DBT_EVIDENCE);
            out.push(Entry {
                key,
                hats: vec![hat.name.clone()],
                choice,
                closest,
                outside,
                hint,
            });
        }
    }
    (out, from_hats)
}

/// The candidates for an item nothing fits: in the workspace, and in the rest of the
/// repository around it.
fn missing(item: &str, repo: &Repo, whole: Option<(&Repo, &str)>) -> (Vec<String>, Vec<String>) {
    let here = closest(item, &repo.files).into_iter().cloned().collect();
    let outside = whole
        .map(|(all, dir)| {
            let prefix = format!("{dir}/");
            let rest: Vec<String> = all
                .files
                .iter()
                .filter(|f| !f.starts_with(&prefix))
                .cloned()
                .collect();
            closest(item, &rest).into_iter().cloned().collect()
        })
        .unwrap_or_default();
    (here, outside)
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
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

/// The placeholder path written for an item nothing fits (the binder knows it by `TODO/`).
pub fn placeholder(key: &str) -> String {
    format!(
        "{}{}",
        inputs::PLACEHOLDER_PREFIX,
        key.replace(|c: char| !c.is_alphanumeric(), "-")
    )
}

fn quoted_list(list: &[String]) -> String {
    list.iter()
        .map(|p| toml_str(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One entry's lines.
fn entry_text(e: &Entry) -> String {
    let mut t = format!("# Read by {}.", e.hats.join(", "));
    if !e.choice.patterns.is_empty() {
        let plural = if e.choice.files == 1 { "file" } else { "files" };
        t.push_str(&format!(" {} {plural} now.\n", e.choice.files));
        t.push_str(&format!(
            "{} = [{}]\n",
            toml_str(&e.key),
            quoted_list(&e.choice.patterns)
        ));
        return t;
    }
    t.push('\n');
    t.push_str(&format!(
        "# TODO: no file found for {}; replace the placeholder with the file(s) or glob(s) that hold it.\n",
        toml_str(&e.key)
    ));
    if e.closest.is_empty() {
        t.push_str("#   closest seen: none — no file name comes near it.\n");
    } else {
        t.push_str(&format!("#   closest seen: {}\n", quoted_list(&e.closest)));
    }
    if !e.outside.is_empty() {
        t.push_str(&format!(
            "#   outside this workspace (not readable from it): {}\n",
            quoted_list(&e.outside)
        ));
    }
    if let Some(hint) = e.hint {
        for l in comment(&format!("{hint}.")).lines() {
            t.push_str(&l.replacen("# ", "#   ", 1));
            t.push('\n');
        }
    }
    t.push_str(&format!(
        "{} = {}\n",
        toml_str(&e.key),
        toml_str(&placeholder(&e.key))
    ));
    t
}

/// The file's text.
pub fn render(stage: &Stage, entries: &[Entry], from_hats: &[FromHat], cx: &Context) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "# hatrack.toml, written by `hatrack init` for the stage `{}` ({}).\n",
        stage.name, cx.stage_spelling
    ));
    for note in &cx.notes {
        t.push_str(&comment(note));
    }
    t.push_str(
        "# Each [inputs] entry binds one item of a hat's Reads line to files of this repository\n",
    );
    t.push_str("# (paths or globs, relative to this file). Check the choices and fill in what is marked, then:\n");
    if let Some(first) = stage.hats.first() {
        let cmd = format!("hatrack render {}", first.name);
        t.push_str(&format!(
            "#   {cmd:<32} # exactly what would be sent to the model\n"
        ));
    }
    t.push_str(&format!(
        "#   {:<32} # review this repository\n\n",
        "hatrack run"
    ));
    t.push_str("[inputs]\n");
    for e in entries {
        t.push_str(&entry_text(e));
    }
    for (hat, item, other) in from_hats {
        t.push_str(&format!(
            "# {hat} also reads {}: the {other} hat's artifacts, bound by hatrack itself.\n",
            toml_str(item)
        ));
    }
    t.push('\n');
    t.push_str(&stage_text(cx));
    t.push_str(
        "\n# The model, its endpoint and key are policy: --model / HATRACK_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY.\n\
         \n# [limits]                      # bytes of each file / of each step's inputs quoted into prompts\n\
         # max_file_bytes = 12000\n# max_input_bytes = 48000\n",
    );
    t
}

fn stage_text(cx: &Context) -> String {
    match &cx.stage_line {
        Some(line) => format!(
            "# [stage] is policy: `list` and `render` read it here, `run` only with\n# --trust-workspace-config (on a repository you own) or from a --policy file (docs/policy.md).\n[stage]\n{line}\n"
        ),
        None => format!(
            "# [stage] path is policy (docs/policy.md): pass --stage DIR, or set it in a --policy file.\n# default: {}, built into hatrack\n",
            cx.stage_spelling
        ),
    }
}

/// A paragraph as comment lines of at most about 90 characters.
pub fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + word.len() + 1 > 92 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn a_todo_in_a_dbt_project_says_where_dbt_keeps_its_evidence() {
        let e = Entry {
            key: "validation report".into(),
            hats: vec!["sre".into()],
            choice: Choice::default(),
            closest: vec!["tests/test_rows.py".into()],
            outside: Vec::new(),
            hint: Some(DBT_EVIDENCE),
        };
        let t = entry_text(&e);
        assert!(
            t.contains("#   closest seen: \"tests/test_rows.py\"\n"),
            "{t}"
        );
        assert!(
            t.contains("#   dbt keeps its evidence in target/run_results.json"),
            "{t}"
        );
        assert!(
            t.ends_with("\"validation report\" = \"TODO/validation-report\"\n"),
            "{t}"
        );
    }

    #[test]
    fn comments_wrap_and_placeholders_are_paths() {
        let c = comment(&"word ".repeat(40));
        assert!(
            c.lines().all(|l| l.starts_with("# ") && l.len() <= 92),
            "{c}"
        );
        assert_eq!(placeholder("validation report"), "TODO/validation-report");
    }
}
