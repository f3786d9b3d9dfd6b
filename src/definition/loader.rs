//! Walking the filesystem: a stage directory, a studio, a directory of studios. Every
//! problem becomes a [`Diagnostic`] naming file and line; nothing here panics on user data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::document::{json_kind, parse_document, Document};
use super::parse::{build_agent, build_artifact, build_hat, build_stage_body, Diags};
use super::types::*;
use super::{embedded, files};
use super::{DefinitionError, LoadedStage, LoadedTree};

/// The stage `hatrack list` and `hatrack run` use when none is given: the deployment stage
/// compiled into the binary.
pub fn default_stage_dir() -> PathBuf {
    embedded::stage_dir(embedded::DEFAULT_STAGE)
}

/// A stage directory as a user or run.json spells it: `embedded:NAME` for a stage compiled
/// into the binary, else a path.
pub fn stage_path(spelling: &str) -> PathBuf {
    embedded::parse(spelling).unwrap_or_else(|| PathBuf::from(spelling))
}

/// Reads a file as UTF-8 text, or records an error diagnostic saying what to do.
fn read_text(file: &Path, diags: &mut Diags) -> Option<String> {
    let bytes = match files::read(file) {
        Ok(b) => b,
        Err(e) => {
            diags.error(file, None, format!("cannot read file: {e}"));
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1;
            diags.error(
                file,
                Some(line),
                format!("file is not valid UTF-8 (byte {valid}); save it as UTF-8"),
            );
            None
        }
    }
}

fn read_document(file: &Path, diags: &mut Diags) -> Option<Document> {
    let text = read_text(file, diags)?;
    match parse_document(file, &text) {
        Ok(doc) => Some(doc),
        Err(d) => {
            diags.0.push(d);
            None
        }
    }
}

/// `*.md` files of a directory, sorted by name; a missing directory is empty.
fn md_files(dir: &Path, diags: &mut Diags) -> Vec<PathBuf> {
    let entries = match files::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.error(dir, None, format!("cannot list directory: {e}"));
            return Vec::new();
        }
    };
    let mut found: Vec<PathBuf> = entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md") && files::is_file(p))
        .collect();
    found.sort();
    found
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn dir_name(path: &Path) -> String {
    let canonical;
    let path = if path.file_name().is_none() {
        canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        &canonical
    } else {
        path
    };
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A name that can be a single path component (no separators, not `.`/`..`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

/// The studio directory holding a stage directory (`<studio>/stages/<stage>`), if any.
fn studio_of(stage_dir: &Path) -> Option<PathBuf> {
    let parent = stage_dir.parent()?;
    if parent.file_name()? != "stages" {
        return None;
    }
    let studio = parent.parent()?;
    files::is_file(&studio.join("STUDIO.md")).then(|| studio.to_path_buf())
}

fn string_list(value: &serde_json::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Loads one stage directory (STAGE.md, hats/ in `hats:` order, own review agents sorted by
/// name, included agents from sibling stages, outputs/, discovery/). Returns every
/// diagnostic, warnings included, in [`DefinitionError::Invalid`] when any is an error.
pub fn load_stage(dir: &Path) -> Result<LoadedStage, DefinitionError> {
    let stage_file = dir.join("STAGE.md");
    if !files::is_dir(dir) {
        let message = if embedded::contains(dir) {
            format!(
                "no such stage in the binary; the embedded stages are: {} (or pass a stage directory with --stage DIR)",
                embedded::stage_names().join(", ")
            )
        } else {
            "no such directory; pass a stage directory such as hats/deployment".into()
        };
        return Err(DefinitionError::Io {
            path: dir.to_path_buf(),
            message,
        });
    }
    if !files::is_file(&stage_file) {
        return Err(DefinitionError::NotAStage {
            path: dir.to_path_buf(),
        });
    }
    let mut diags = Diags::default();
    let stage = build_stage(dir, &stage_file, &mut diags);
    match stage {
        Some(stage) if !diags.has_errors() => Ok(LoadedStage {
            stage,
            warnings: diags.0,
        }),
        _ => Err(DefinitionError::Invalid {
            diagnostics: diags.0,
        }),
    }
}

fn build_stage(dir: &Path, stage_file: &Path, diags: &mut Diags) -> Option<Stage> {
    let doc = read_document(stage_file, diags)?;
    let fm = &doc.front_matter;
    let mut source_files = vec![stage_file.to_path_buf()];
    let name = dir_name(dir);
    if let Some(fm_name) = fm.get("name").and_then(|v| v.as_str()) {
        if fm_name != name {
            diags.warn(stage_file, doc.key_line("name"), format!("front-matter `name: {fm_name}` differs from the directory name `{name}`; hatrack (like H·AI·K·U) identifies the stage by its directory"));
        }
    }

    let hat_names = parse_hat_names(stage_file, &doc, diags);
    let hats = load_hats(dir, stage_file, &doc, &hat_names, &mut source_files, diags);
    let fix_hats = parse_fix_hats(dir, stage_file, &doc, diags);
    warn_unlisted_hats(dir, &hat_names, &fix_hats, diags);

    let (review_agents, includes, not_applied) =
        load_review_agents(dir, stage_file, &doc, &mut source_files, diags);
    let (phases, studio_fix_hats) = load_guidance(dir, &mut source_files, diags);

    let outputs = load_each(dir, "outputs", &mut source_files, diags, |file, d, _| {
        build_artifact(ArtifactKind::Output, &stem(file), file, d)
    });
    let discovery = load_each(dir, "discovery", &mut source_files, diags, |file, d, _| {
        build_artifact(ArtifactKind::Discovery, &stem(file), file, d)
    });

    let gates = parse_gates(stage_file, &doc, diags);
    let inputs = parse_inputs(stage_file, &doc, diags);
    check_inputs(dir, stage_file, &inputs, diags);
    let body = build_stage_body(stage_file, &doc);
    // v8 stages (they declare `fix_hats:`) have no Completion Signal by design; in a 1.x
    // stage its absence is more likely a misspelt heading, so it is worth a warning.
    if body.signal_line.is_none() && !fm.contains_key("fix_hats") {
        diags.warn(stage_file, None, "stage has no `## Completion Signal` section; the run gates on its hats' constraints and review checks only");
    }
    let interpretation = parse_interpretation(stage_file, &doc, diags);

    source_files.sort();
    source_files.dedup();
    Some(Stage {
        studio: studio_of(dir).map(|s| dir_name(&s)),
        name,
        dir: dir.to_path_buf(),
        file: stage_file.to_path_buf(),
        description: fm
            .get("description")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        title: body.title,
        body: doc.body.trim().to_string(),
        hats,
        review_agents,
        gates,
        elaboration: fm
            .get("elaboration")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        inputs,
        includes,
        criteria: body.criteria,
        completion_signal: body.completion_signal,
        completion_signal_text: body.completion_signal_text,
        outputs,
        discovery,
        fix_hats,
        interpretation,
        phases,
        studio_fix_hats,
        studio_agents_not_applied: not_applied,
        source_files,
        front_matter: doc.front_matter.clone(),
    })
}

/// What the stage is shown with but never runs: its `phases/*.md` and the names of its
/// studio's `fix-hats/` (v8).
fn load_guidance(
    dir: &Path,
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
) -> (Vec<Phase>, Vec<String>) {
    let phases = load_each(dir, "phases", source_files, diags, |file, d, _| Phase {
        name: stem(file),
        file: file.to_path_buf(),
        front_matter: d.front_matter.clone(),
        body: d.body.trim().to_string(),
    });
    let studio_fix_hats = studio_of(dir)
        .map(|studio| {
            md_files(&studio.join("fix-hats"), &mut Diags::default())
                .iter()
                .map(|f| stem(f))
                .collect()
        })
        .unwrap_or_default();
    (phases, studio_fix_hats)
}

/// Every `*.md` of `dir/sub` (sorted), built by `build`. Each file is recorded in
/// `source_files` (the definition digest reads them); one that cannot be read or parsed is a
/// diagnostic and is skipped. Own review agents, outputs and discovery load this way.
fn load_each<T>(
    dir: &Path,
    sub: &str,
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
    mut build: impl FnMut(&Path, &Document, &mut Diags) -> T,
) -> Vec<T> {
    let mut built = Vec::new();
    for file in md_files(&dir.join(sub), diags) {
        source_files.push(file.clone());
        if let Some(doc) = read_document(&file, diags) {
            built.push(build(&file, &doc, diags));
        }
    }
    built
}

/// STAGE.md `hats:`: required, a non-empty list of hat names in run order. A missing, empty
/// or mistyped list is an error and yields no names.
fn parse_hat_names(stage_file: &Path, doc: &Document, diags: &mut Diags) -> Vec<String> {
    let hats_line = doc.key_line("hats");
    match doc.front_matter.get("hats") {
        None => {
            diags.error(
                stage_file,
                Some(doc.front_matter_line),
                "STAGE.md has no `hats:` list; add the hat sequence, e.g. `hats: [pipeline-engineer, sre]`",
            );
            Vec::new()
        }
        Some(v) => match string_list(v) {
            Some(list) if !list.is_empty() => list,
            Some(_) => {
                diags.error(
                    stage_file,
                    hats_line,
                    "`hats:` is empty; list at least one hat, e.g. `hats: [pipeline-engineer]`",
                );
                Vec::new()
            }
            None => {
                diags.error(
                    stage_file,
                    hats_line,
                    format!("`hats:` must be a list of hat names, found {}; write e.g. `hats: [pipeline-engineer, sre]`", json_kind(v)),
                );
                Vec::new()
            }
        },
    }
}

/// The hats `hats:` names, in that order, each from `hats/<name>.md`. A name listed twice,
/// one that is not a plain file name, or one without its file is an error and is skipped.
fn load_hats(
    dir: &Path,
    stage_file: &Path,
    doc: &Document,
    hat_names: &[String],
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
) -> Vec<Hat> {
    let hats_line = doc.key_line("hats");
    let mut hats = Vec::new();
    for (i, hat_name) in hat_names.iter().enumerate() {
        if hat_names[..i].contains(hat_name) {
            diags.error(stage_file, hats_line, format!("hat `{hat_name}` is listed twice in `hats:`; its requirement ids would collide — list each hat once"));
            continue;
        }
        if !is_plain_name(hat_name) {
            diags.error(stage_file, hats_line, format!("hat name {hat_name:?} in `hats:` is not a plain file name; use the stem of a file in hats/"));
            continue;
        }
        let file = dir.join("hats").join(format!("{hat_name}.md"));
        if !files::is_file(&file) {
            diags.error(
                stage_file,
                hats_line,
                format!("hat `{hat_name}` is listed in `hats:` but {} does not exist; create it or remove the name", file.display()),
            );
            continue;
        }
        source_files.push(file.clone());
        if let Some(hat_doc) = read_document(&file, diags) {
            hats.push(build_hat(hat_name, &file, &hat_doc, diags));
        }
    }
    hats
}

/// A file in hats/ that neither `hats:` nor `fix_hats:` names never runs: a warning, since
/// it is usually a forgotten list entry.
fn warn_unlisted_hats(dir: &Path, hat_names: &[String], fix_hats: &[String], diags: &mut Diags) {
    for file in md_files(&dir.join("hats"), diags) {
        let s = stem(&file);
        if !hat_names.contains(&s) && !fix_hats.contains(&s) {
            diags.warn(&file, None, format!("hat file is not listed in STAGE.md `hats:`, so `{s}` never runs; add it to the list or delete the file"));
        }
    }
}

/// The stage's review agents: its own (every file of review-agents/, sorted), then those
/// `review-agents-include:` names from sibling stages, then the studio-level agents
/// (`<studio>/review-agents/`, v8) whose `applies_to:` takes this stage in; returned with
/// the includes as read and the names of the studio agents that do not apply. An agent
/// whose `applies_to:` leaves its own stage out does not run there. A stage with none is a
/// warning: nothing would review the hats' work.
fn load_review_agents(
    dir: &Path,
    stage_file: &Path,
    doc: &Document,
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
) -> (Vec<ReviewAgent>, Vec<Include>, Vec<String>) {
    let name = dir_name(dir);
    let mut review_agents = load_each(
        dir,
        "review-agents",
        source_files,
        diags,
        |file, d, diags| build_agent(&stem(file), file, AgentOrigin::Own, d, diags),
    );
    let includes = parse_includes(stage_file, doc, diags);
    load_included_agents(
        dir,
        stage_file,
        &includes,
        &mut review_agents,
        source_files,
        diags,
    );
    review_agents.retain(|a| {
        let keep = a.origin != AgentOrigin::Own || a.applies_to_stage(&name);
        if !keep {
            diags.warn(&a.file, None, format!("review agent `{}` has `applies_to: [{}]`, which names no pattern matching its own stage `{name}`, so it does not run; add the stage to `applies_to:` or move the agent", a.name, a.applies_to.join(", ")));
        }
        keep
    });
    let not_applied = match studio_of(dir) {
        Some(studio) => add_studio_agents(&studio, &name, &mut review_agents, source_files, diags),
        None => Vec::new(),
    };
    if review_agents.is_empty() {
        diags.warn(
            stage_file,
            None,
            "stage has no review agents (review-agents/*.md); nothing will review the hats' work",
        );
    }
    (review_agents, includes, not_applied)
}

/// The studio-level review agents (`<studio>/review-agents/*.md`, sorted), each built with
/// its diagnostics; what `check` counts once per studio.
fn studio_agents(studio: &Path, diags: &mut Diags) -> Vec<(PathBuf, ReviewAgent)> {
    let studio_name = dir_name(studio);
    let mut found = Vec::new();
    for file in md_files(&studio.join("review-agents"), diags) {
        if let Some(doc) = read_document(&file, diags) {
            let mut agent = build_agent(&stem(&file), &file, AgentOrigin::Own, &doc, diags);
            agent.studio_level = Some(studio_name.clone());
            found.push((file, agent));
        }
    }
    found
}

/// Appends the studio-level agents that apply to stage `stage` (a stage agent of the same
/// name wins, with a warning); returns the names of those that do not apply.
fn add_studio_agents(
    studio: &Path,
    stage: &str,
    review_agents: &mut Vec<ReviewAgent>,
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
) -> Vec<String> {
    let mut not_applied = Vec::new();
    for (file, agent) in studio_agents(studio, diags) {
        if !agent.applies_to_stage(stage) {
            not_applied.push(agent.name);
            continue;
        }
        if review_agents.iter().any(|a| a.name == agent.name) {
            diags.warn(&file, None, format!("studio review agent `{}` has the name of a review agent of stage `{stage}`; the stage's agent wins there — rename one of them", agent.name));
            continue;
        }
        source_files.push(file);
        review_agents.push(agent);
    }
    not_applied
}

/// `review-agents-include:`: appends the named agents of sibling stages to `review_agents`.
/// An own agent of the same name wins; an agent that cannot be found is a warning and skipped.
fn load_included_agents(
    dir: &Path,
    stage_file: &Path,
    includes: &[Include],
    review_agents: &mut Vec<ReviewAgent>,
    source_files: &mut Vec<PathBuf>,
    diags: &mut Diags,
) {
    for include in includes {
        let sibling = dir.parent().map(|p| p.join(&include.stage));
        for agent in &include.agents {
            if review_agents
                .iter()
                .any(|a| a.name == *agent && a.origin == AgentOrigin::Own)
            {
                diags.warn(stage_file, Some(include.source.line), format!("included agent `{agent}` from stage `{}` has the name of an own review agent; the own agent wins and the include is skipped", include.stage));
                continue;
            }
            let file = sibling
                .as_ref()
                .map(|s| s.join("review-agents").join(format!("{agent}.md")));
            match file {
                Some(file) if is_plain_name(agent) && is_plain_name(&include.stage) && files::is_file(&file) => {
                    source_files.push(file.clone());
                    if let Some(agent_doc) = read_document(&file, diags) {
                        let origin = AgentOrigin::Included { stage: include.stage.clone() };
                        review_agents.push(build_agent(agent, &file, origin, &agent_doc, diags));
                    }
                }
                _ => diags.warn(
                    stage_file,
                    Some(include.source.line),
                    format!(
                        "included review agent `{agent}` from stage `{}` not found (looked for ../{}/review-agents/{agent}.md next to this stage); it is skipped — fix the name or remove the entry",
                        include.stage, include.stage
                    ),
                ),
            }
        }
    }
}

/// v8 `fix_hats:` (a list of hat names). hatrack has no fix loop, so these are only read
/// and shown; a name without a `hats/<name>.md` is a warning, since H·AI·K·U would fail on
/// it when a finding is filed.
fn parse_fix_hats(dir: &Path, file: &Path, doc: &Document, diags: &mut Diags) -> Vec<String> {
    let Some(value) = doc.front_matter.get("fix_hats") else {
        return Vec::new();
    };
    let line = doc.key_line("fix_hats");
    let Some(names) = string_list(value).or_else(|| value.is_null().then(Vec::new)) else {
        diags.error(
            file,
            line,
            format!("`fix_hats:` must be a list of hat names, found {}; write e.g. `fix_hats: [classifier, builder, feedback-assessor]`", json_kind(value)),
        );
        return Vec::new();
    };
    for name in &names {
        let exists =
            is_plain_name(name) && files::is_file(&dir.join("hats").join(format!("{name}.md")));
        if !exists {
            diags.warn(file, line, format!("fix hat `{name}` has no hats/{name}.md; hatrack does not run fix hats, but H·AI·K·U would fail to find it"));
        }
    }
    names
}

/// v8 `interpretation:` (`lens` or `strict`); another value is kept and warned about.
fn parse_interpretation(file: &Path, doc: &Document, diags: &mut Diags) -> Option<String> {
    let value = doc.front_matter.get("interpretation")?;
    let line = doc.key_line("interpretation");
    let Some(text) = value.as_str() else {
        diags.error(
            file,
            line,
            format!(
                "`interpretation:` must be `lens` or `strict`, found {}",
                json_kind(value)
            ),
        );
        return None;
    };
    if !matches!(text, "lens" | "strict") {
        diags.warn(file, line, format!("`interpretation: {text}` is not one H·AI·K·U knows (lens, strict); it is shown as written"));
    }
    Some(text.to_string())
}

/// `review:` as a scalar or a list; absent means `auto` (the reference runtime's default).
fn parse_gates(file: &Path, doc: &Document, diags: &mut Diags) -> Vec<GateKind> {
    let gates = gate_kinds(file, doc, diags);
    for gate in &gates {
        if let GateKind::Other(kind) = gate {
            diags.warn(file, doc.key_line("review"), format!("unknown gate kind `{kind}` in `review:`; it is reported as is, but H·AI·K·U knows only auto, ask, external and await"));
        }
    }
    gates
}

fn gate_kinds(file: &Path, doc: &Document, diags: &mut Diags) -> Vec<GateKind> {
    match doc.front_matter.get("review") {
        None => vec![GateKind::Auto],
        Some(serde_json::Value::String(s)) => vec![GateKind::parse(s)],
        Some(v) => match string_list(v) {
            Some(list) if !list.is_empty() => list.iter().map(|s| GateKind::parse(s)).collect(),
            _ => {
                diags.error(
                    file,
                    doc.key_line("review"),
                    format!("`review:` must be a gate kind or a list of them (auto, ask, external, await), found {}", json_kind(v)),
                );
                Vec::new()
            }
        },
    }
}

/// The file line of the `index`-th entry of a front-matter list.
fn entry_line(doc: &Document, key: &str, index: usize) -> usize {
    doc.list_item_lines(key)
        .get(index)
        .copied()
        .or_else(|| doc.key_line(key))
        .unwrap_or(doc.front_matter_line)
}

/// The entries of a front-matter list of mappings (`inputs:`, `review-agents-include:`),
/// whose entries look like `shape`. Absent or null is no list; any other non-list is an
/// error naming the expected shape.
fn entry_list<'d>(
    file: &Path,
    doc: &'d Document,
    key: &str,
    shape: &str,
    diags: &mut Diags,
) -> Option<&'d Vec<serde_json::Value>> {
    let value = doc.front_matter.get(key)?;
    let entries = value.as_array();
    if entries.is_none() && !value.is_null() {
        diags.error(
            file,
            doc.key_line(key),
            format!(
                "`{key}:` must be a list of `{shape}` entries, found {}",
                json_kind(value)
            ),
        );
    }
    entries
}

fn parse_inputs(file: &Path, doc: &Document, diags: &mut Diags) -> Vec<InputRef> {
    let Some(entries) = entry_list(file, doc, "inputs", "{stage, discovery|output}", diags) else {
        return Vec::new();
    };
    let mut inputs = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let line = entry_line(doc, "inputs", i);
        let stage = entry.get("stage").and_then(|v| v.as_str());
        let discovery = entry.get("discovery").and_then(|v| v.as_str());
        let output = entry.get("output").and_then(|v| v.as_str());
        let (kind, name) = match (discovery, output) {
            (Some(d), None) => (ArtifactKind::Discovery, d),
            (None, Some(o)) => (ArtifactKind::Output, o),
            _ => {
                diags.error(file, Some(line), "each `inputs:` entry needs `stage:` and exactly one of `discovery:` or `output:`, e.g. `- stage: validation` / `  output: validation-report`");
                continue;
            }
        };
        let Some(stage) = stage else {
            diags.error(
                file,
                Some(line),
                "`inputs:` entry has no `stage:`; name the earlier stage the artifact comes from",
            );
            continue;
        };
        inputs.push(InputRef {
            stage: stage.to_string(),
            kind,
            name: name.to_string(),
            source: SourceRef {
                file: file.to_path_buf(),
                line,
            },
        });
    }
    inputs
}

fn parse_includes(file: &Path, doc: &Document, diags: &mut Diags) -> Vec<Include> {
    let key = "review-agents-include";
    let Some(entries) = entry_list(file, doc, key, "{stage, agents: [..]}", diags) else {
        return Vec::new();
    };
    let mut includes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let line = entry_line(doc, key, i);
        let stage = entry.get("stage").and_then(|v| v.as_str());
        let agents = entry.get("agents").and_then(string_list);
        match (stage, agents) {
            (Some(stage), Some(agents)) => includes.push(Include {
                stage: stage.to_string(),
                agents,
                source: SourceRef { file: file.to_path_buf(), line },
            }),
            _ => diags.error(file, Some(line), format!("each `{key}:` entry needs `stage:` and `agents: [..]`, e.g. `- stage: validation` / `  agents: [coverage]`")),
        }
    }
    includes
}

/// Warns about `inputs:` entries that name no artifact definition in the named sibling
/// stage (`haiku-format.md` §6.7): the reference runtime drops them silently.
fn check_inputs(dir: &Path, file: &Path, inputs: &[InputRef], diags: &mut Diags) {
    let Some(parent) = dir.parent() else { return };
    for input in inputs {
        let key = match input.kind {
            ArtifactKind::Discovery => "discovery",
            ArtifactKind::Output => "output",
        };
        let line = Some(input.source.line);
        let sibling = parent.join(&input.stage);
        if !is_plain_name(&input.stage) || !files::is_file(&sibling.join("STAGE.md")) {
            diags.warn(file, line, format!("input `{key}: {}` names stage `{}`, which is not next to this stage; it cannot be resolved — fix the stage name or remove the entry", input.name, input.stage));
            continue;
        }
        let names = |sub: &str| -> Vec<String> {
            let mut scratch = Diags::default();
            md_files(&sibling.join(sub), &mut scratch)
                .iter()
                .filter_map(|f| {
                    let text = files::read_to_string(f).ok()?;
                    let doc = parse_document(f, &text).ok()?;
                    Some(build_artifact(ArtifactKind::Output, &stem(f), f, &doc).name)
                })
                .collect()
        };
        let (own_dir, other_dir, other_key) = match input.kind {
            ArtifactKind::Discovery => ("discovery", "outputs", "output"),
            ArtifactKind::Output => ("outputs", "discovery", "discovery"),
        };
        if names(own_dir).contains(&input.name) {
            continue;
        }
        let hint = if names(other_dir).contains(&input.name) {
            format!(
                "it is defined in {}/{other_dir}/ — write `{other_key}: {}`",
                input.stage, input.name
            )
        } else {
            "fix the name or remove the entry".to_string()
        };
        diags.warn(
            file,
            line,
            format!("dangling input: `{key}: {}` matches no {own_dir}/ definition of stage `{}`; {hint}", input.name, input.stage),
        );
    }
}

/// Loads a stage directory, a studio directory or a directory of studios (and stages).
/// Never fails: every problem is a diagnostic.
pub fn load_tree(path: &Path) -> LoadedTree {
    let mut tree = LoadedTree::default();
    if files::is_file(&path.join("STAGE.md")) {
        add_stage(&mut tree.stages, &mut tree.diagnostics, path);
    } else if files::is_file(&path.join("STUDIO.md")) {
        load_studio_into(&mut tree, path);
    } else if files::is_dir(path) {
        let mut diags = Diags::default();
        let mut found = false;
        let mut dirs: Vec<PathBuf> = match files::read_dir(path) {
            Ok(entries) => entries.into_iter().filter(|p| files::is_dir(p)).collect(),
            Err(e) => {
                diags.error(path, None, format!("cannot list directory: {e}"));
                Vec::new()
            }
        };
        dirs.sort();
        for dir in dirs {
            if files::is_file(&dir.join("STUDIO.md")) {
                found = true;
                load_studio_into(&mut tree, &dir);
            } else if files::is_file(&dir.join("STAGE.md")) {
                found = true;
                add_stage(&mut tree.stages, &mut tree.diagnostics, &dir);
            }
        }
        if !found && !diags.has_errors() {
            diags.error(path, None, "no STAGE.md or STUDIO.md here or in its subdirectories; pass a stage directory (such as hats/deployment), a studio directory, or a directory of studios");
        }
        tree.diagnostics.extend(diags.0);
    } else {
        let message = if files::is_file(path) {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            format!(
                "is a file; pass the directory that holds STAGE.md or STUDIO.md (e.g. {})",
                parent.display()
            )
        } else {
            "no such directory; pass a stage directory (such as hats/deployment), a studio directory, or a directory of studios".into()
        };
        tree.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: None,
            message,
        });
    }
    tree
}

fn add_stage(stages: &mut Vec<Stage>, diagnostics: &mut Vec<Diagnostic>, dir: &Path) {
    match load_stage(dir) {
        Ok(loaded) => {
            diagnostics.extend(loaded.warnings);
            stages.push(loaded.stage);
        }
        Err(DefinitionError::Invalid { diagnostics: d }) => diagnostics.extend(d),
        Err(other) => diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: dir.to_path_buf(),
            line: None,
            message: other.to_string(),
        }),
    }
}

fn load_studio_into(tree: &mut LoadedTree, dir: &Path) {
    let mut diags = Diags::default();
    let file = dir.join("STUDIO.md");
    let Some(doc) = read_document(&file, &mut diags) else {
        tree.diagnostics.extend(diags.0);
        return;
    };
    let fm = &doc.front_matter;
    let dir_name = dir_name(dir);
    let get = |k: &str| fm.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let stages_line = doc.key_line("stages");
    let stage_names = match fm.get("stages") {
        Some(v) => string_list(v).unwrap_or_else(|| {
            diags.error(
                &file,
                stages_line,
                format!(
                    "`stages:` must be a list of stage directory names, found {}",
                    json_kind(v)
                ),
            );
            Vec::new()
        }),
        None => {
            diags.error(&file, Some(doc.front_matter_line), "STUDIO.md has no `stages:` list; add the stage order, e.g. `stages: [discovery, deployment]`");
            Vec::new()
        }
    };
    let mut studio = Studio {
        name: get("name").unwrap_or_else(|| dir_name.clone()),
        dir_name,
        dir: dir.to_path_buf(),
        slug: get("slug"),
        aliases: fm.get("aliases").and_then(string_list).unwrap_or_default(),
        description: get("description").unwrap_or_default(),
        category: get("category").unwrap_or_else(|| "general".into()),
        front_matter: fm.clone(),
        stages: Vec::new(),
        review_agents: Vec::new(),
        fix_hats: Vec::new(),
    };
    let stages_dir = dir.join("stages");
    for name in &stage_names {
        let stage_dir = stages_dir.join(name);
        if !is_plain_name(name) || !files::is_file(&stage_dir.join("STAGE.md")) {
            diags.error(&file, stages_line, format!("stage `{name}` is listed in `stages:` but {} has no STAGE.md; create it or remove the name", stage_dir.display()));
            continue;
        }
        add_stage(&mut studio.stages, &mut diags.0, &stage_dir);
    }
    if let Ok(entries) = files::read_dir(&stages_dir) {
        let listed: BTreeSet<&String> = stage_names.iter().collect();
        let mut extra: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| files::is_file(&p.join("STAGE.md")) && !listed.contains(&stem(p)))
            .collect();
        extra.sort();
        for p in extra {
            diags.warn(&file, stages_line, format!("stage directory {} is not listed in `stages:`, so it never runs; add it or delete it", p.display()));
        }
    }
    load_studio_level(&mut studio, &file, &mut diags);
    tree.diagnostics.extend(diags.0);
    tree.studios.push(studio);
}

/// The studio's own v8 definitions: `review-agents/` (each stage already holds those that
/// apply to it) and `fix-hats/` (never run: what a fix hat lacks, such as an anti-pattern
/// list, is not worth a diagnostic). Each stage read the studio's agents again, so each
/// problem is said once.
fn load_studio_level(studio: &mut Studio, file: &Path, diags: &mut Diags) {
    let dir = studio.dir.clone();
    studio.review_agents = studio_agents(&dir, diags)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    warn_unused_stage_patterns(studio, file, diags);
    studio.fix_hats = md_files(&dir.join("fix-hats"), diags)
        .iter()
        .filter_map(|f| {
            let doc = read_document(f, diags)?;
            Some(build_hat(&stem(f), f, &doc, &mut Diags::default()))
        })
        .collect();
    let mut seen = Vec::new();
    diags.0.retain(|d| {
        let new = !seen.contains(d);
        if new {
            seen.push(d.clone());
        }
        new
    });
}

/// A studio agent's `applies_to:` stage pattern that matches none of the studio's stages
/// is most likely a misspelt stage name: the agent then runs nowhere it was meant to.
fn warn_unused_stage_patterns(studio: &Studio, file: &Path, diags: &mut Diags) {
    for agent in &studio.review_agents {
        for pattern in agent.applies_to.iter().filter(|p| is_stage_pattern(p)) {
            let probe = ReviewAgent {
                applies_to: vec![pattern.clone()],
                ..agent.clone()
            };
            if !studio
                .stages
                .iter()
                .any(|s| probe.applies_to_stage(&s.name))
            {
                diags.warn(&agent.file, None, format!("`applies_to: {pattern}` of studio review agent `{}` matches no stage of {} (stages: {}); fix the stage name", agent.name, file.display(), studio.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")));
            }
        }
    }
}

/// Whether `query` names the studio at `dir` (its directory, `name`, `slug` or an alias,
/// case-insensitively — `haiku-format.md` §1).
fn studio_matches(dir: &Path, query: &str) -> bool {
    let q = query.to_lowercase();
    if dir_name(dir).to_lowercase() == q {
        return true;
    }
    let Ok(text) = files::read_to_string(&dir.join("STUDIO.md")) else {
        return false;
    };
    let Ok(doc) = parse_document(&dir.join("STUDIO.md"), &text) else {
        return false;
    };
    let fm = &doc.front_matter;
    let mut names: Vec<String> = ["name", "slug"]
        .iter()
        .filter_map(|k| fm.get(*k).and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    names.extend(fm.get("aliases").and_then(string_list).unwrap_or_default());
    names.iter().any(|n| n.to_lowercase() == q)
}

/// Turns `--stage` / `--studio` into a stage directory. With a studio, `stage` is a stage
/// name inside it, and `studio` is a studio directory or `PARENT/NAME` where NAME is a
/// studio's directory, name, slug or alias among PARENT's studios. Without a studio,
/// `stage` is a directory or `embedded:NAME` (default: the embedded deployment stage). The
/// directory is not loaded here.
pub fn resolve_stage_dir(
    stage: Option<&str>,
    studio: Option<&Path>,
) -> Result<PathBuf, DefinitionError> {
    let Some(studio) = studio else {
        return Ok(stage.map(stage_path).unwrap_or_else(default_stage_dir));
    };
    let studio_dir = if files::is_file(&studio.join("STUDIO.md")) {
        studio.to_path_buf()
    } else {
        let parent = studio
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let query = studio
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut candidates: Vec<PathBuf> = files::read_dir(parent)
            .map(|e| {
                e.into_iter()
                    .filter(|p| files::is_file(&p.join("STUDIO.md")))
                    .collect()
            })
            .unwrap_or_default();
        candidates.sort();
        match candidates.iter().find(|c| studio_matches(c, &query)) {
            Some(found) => found.clone(),
            None => {
                return Err(DefinitionError::UnknownStudio {
                    name: query,
                    parent: parent.to_path_buf(),
                    known: if candidates.is_empty() {
                        "none (no directory with a STUDIO.md)".into()
                    } else {
                        candidates
                            .iter()
                            .map(|c| dir_name(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                });
            }
        }
    };
    let known = || {
        let mut names: Vec<String> = files::read_dir(&studio_dir.join("stages"))
            .map(|e| {
                e.into_iter()
                    .filter(|p| files::is_file(&p.join("STAGE.md")))
                    .map(|p| dir_name(&p))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.join(", ")
    };
    let Some(stage) = stage else {
        return Err(DefinitionError::MissingStageName {
            studio: studio_dir.display().to_string(),
            known: known(),
        });
    };
    let dir = studio_dir.join("stages").join(stage);
    if is_plain_name(stage) && files::is_file(&dir.join("STAGE.md")) {
        Ok(dir)
    } else {
        Err(DefinitionError::UnknownStage {
            studio: studio_dir.display().to_string(),
            name: stage.to_string(),
            known: known(),
        })
    }
}

/// A sha256 (hex) over the stage's definition: for each of `stage.source_files`, in order,
/// its path relative to the stage directory's parent (`/`-separated) and its bytes, each
/// length-prefixed. Two runs with the same digest used the same definitions. A file that
/// can no longer be read contributes its error text, so the digest still changes.
pub fn definition_digest(stage: &Stage) -> String {
    let base = stage.dir.parent().unwrap_or(&stage.dir);
    let studio = base.parent().unwrap_or(base);
    let mut hasher = Sha256::new();
    for file in &stage.source_files {
        // A studio-level file (`<studio>/review-agents/x.md`) is named from the studio
        // (`../review-agents/x.md`), so the digest does not depend on where the studio is.
        let (prefix, rel) = match (file.strip_prefix(base), file.strip_prefix(studio)) {
            (Ok(rel), _) => ("", rel),
            (Err(_), Ok(rel)) => ("../", rel),
            _ => ("", file.as_path()),
        };
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = format!("{prefix}{}", rel.join("/"));
        hasher.update((rel.len() as u64).to_le_bytes());
        hasher.update(rel.as_bytes());
        let bytes = files::read(file).unwrap_or_else(|e| format!("unreadable: {e}").into_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hex::encode(hasher.finalize())
}
