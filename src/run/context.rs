//! The template contexts for each step of the table, and the sources each step is shown (so
//! grounding checks quotes against exactly what the model saw, under exactly the names its
//! BEGIN markers gave). `hatrack render`, preflight and the run itself all build messages
//! here, so what render prints is what a run sends.
//!
//! **The layout: what steps share comes first, byte for byte.** Every request is the system
//! message (`system.j2`: the stage and the rules, no role) and one user message: first the
//! run's dossier (`dossier.j2`: the stage's completion signal, every bound input once — in
//! binding order, each as cut by `[limits]`, together at most `max_input_bytes` — and every
//! artifact produced so far, by hat in production order), then the step's own part (its
//! role, what it reads or judges, its requirements, how to answer: `hat.j2`, `judge.j2`,
//! `review.j2`, `signal.j2`). So every request opens with the same system message, stage and
//! inputs; the steps after the hats share the artifacts too; a re-ask repeats its request
//! whole before its note. Providers that cache prompt prefixes (OpenAI from 1,024 tokens,
//! vLLM, llama.cpp's slot cache) then process the shared part once.
//!
//! One dossier for the whole run is shipped rather than one per hat (a hat and its
//! constraint judge shown only what the hat reads, the review agent and the completion judge
//! everything): the hats of a stage read most of the same files, and only a run-wide dossier
//! lets the review agent and the completion judge share their prefix with the hats and the
//! constraint judges. The per-hat layout lives in `benches/layouts/per-hat/` (its
//! `dossier.j2` filters on `step`, which tells the dossier which step it is rendered for) and
//! `scripts/bench-layout` measures it against the run-wide one; for the figures see the
//! README and `scripts/bench-layout`. What each step may rely on is said in its own part: a
//! hat is told which dossier entries its Reads items are (the rest is the stage's shared
//! context), a constraint judge what its hat read and produced; every step rules only on its
//! own requirements.
//!
//! **Grounding follows what was shown.** A dossier entry is one of the step's sources only
//! when the rendered dossier holds its `<<<BEGIN name>>>` marker: a dossier that leaves a
//! file out (per hat) leaves a judge nothing to quote from it. The shipped one shows all.
//!
//! A `--prompts` directory written for the earlier layout (each step quoting its own inputs)
//! keeps working with an empty `dossier.j2`: the step's part is then its whole message and it
//! is grounded in what that part quotes (`benches/layouts/per-step/` holds that layout).

use serde_json::{json, Value};

use crate::config::LimitsSection;
use crate::definition::{AgentOrigin, Hat, ReviewAgent, Stage};
use crate::inputs::{truncate, Binding, Bindings};
use crate::model::request::ChatMessage;
use crate::prompt::{PromptError, Prompts};
use crate::run::artifacts::Artifact;
use crate::run::steps::{Step, Target};
use crate::verdict::grounding::{GroundingRules, Sources};
use crate::verdict::markers::{escape_data, escape_name, one_line_data, BEGIN, FRAME_CLOSE};
use crate::verdict::SourceKind;

/// Messages for one step and the named texts they quote.
#[derive(Debug, Clone)]
pub struct StepMessages {
    pub messages: Vec<ChatMessage>,
    pub sources: Sources,
    /// Inputs this step's prompt cut beyond their binding's cut, one sentence each.
    pub cuts: Vec<String>,
}

/// Everything a step's messages are made of, besides the step itself.
pub struct Shown<'a> {
    pub prompts: &'a Prompts,
    pub stage: &'a Stage,
    pub bindings: &'a Bindings,
    pub limits: &'a LimitsSection,
    pub rules: GroundingRules,
    /// The artifacts of the hats that have run, by hat, in stage order.
    pub produced: &'a [(String, Vec<Artifact>)],
    /// The verdicts shown to the completion judge.
    pub prior: &'a [PriorVerdict],
    /// Steps may read the workspace with tools (the prompt says so).
    pub tools: bool,
    /// What checks found: shown to the judging steps (`None`: no checks, nothing shown).
    pub checks: Option<&'a crate::checks::Facts>,
    /// The run's dossiers rendered so far (`None`: render each afresh).
    pub dossiers: Option<&'a Dossiers>,
}

/// The check findings a judging step of `requirements` is shown (`null`: none).
fn findings(shown: &Shown<'_>, requirements: &[&str], sources: &mut Sources) -> Value {
    shown.checks.map_or(Value::Null, |facts| {
        crate::checks::mapping::prompt_values(facts, requirements, sources)
    })
}

/// `values` (requirements as a judge's prompt lists them) without those a check decided
/// before any request: no judge is asked about them.
fn undecided(shown: &Shown<'_>, mut values: Vec<Value>) -> Vec<Value> {
    if let Some(facts) = shown.checks {
        let decided = crate::checks::mapping::vetoed(facts);
        values.retain(|v| !decided.iter().any(|d| v["id"] == d.as_str()));
    }
    values
}

/// A judging step's prompt with the findings block ([`crate::prompt::FINDINGS`]) before its
/// answer instructions (`## Your answer`, else at its end); unchanged without findings, so
/// a run without checks sends what it always did.
fn with_findings(shown: &Shown<'_>, text: String, found: &Value) -> Result<String, PromptError> {
    if found.is_null() {
        return Ok(text);
    }
    let block = shown
        .prompts
        .render(crate::prompt::FINDINGS.0, &json!({ "findings": found }))?;
    Ok(match text.rfind("\n## Your answer") {
        Some(at) => format!("{}\n\n{block}\n{}", &text[..at], &text[at..]),
        None => format!("{text}\n\n{block}"),
    })
}

/// The messages a step sends.
pub fn messages(step: &Step<'_>, shown: &Shown<'_>) -> Result<StepMessages, PromptError> {
    match step.target {
        Target::Hat(hat) => hat_messages(shown, hat),
        Target::ConstraintJudge(hat) => constraint_judge_messages(shown, hat),
        Target::Review(agent) => review_messages(shown, agent),
        Target::Signal => signal_messages(shown),
    }
}

/// "pipeline-engineer" → "Pipeline Engineer", "sre" → "SRE".
pub fn display_name(name: &str) -> String {
    if name.len() <= 3 {
        return name.to_uppercase();
    }
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the hat prompt says under "The stage is complete when" for a stage without a
/// completion signal (the v8 layout): what the gate will actually check.
pub const NO_SIGNAL_PROMPT: &str =
    "every hat's constraints and every review check hold (this stage has no completion signal)";

fn stage_context(stage: &Stage) -> Value {
    let signal =
        if stage.completion_signal.is_empty() && stage.completion_signal_text.trim().is_empty() {
            NO_SIGNAL_PROMPT.to_string()
        } else {
            stage.completion_signal_text.replace("**", "")
        };
    json!({
        "name": stage.name,
        "title": if stage.title.is_empty() { display_name(&stage.name) } else { stage.title.clone() },
        "description": stage.description,
        "completion_signal": signal,
    })
}

// The v8 guidance below is folded into values the templates already show, rather than into
// new template blocks: the templates (and so the prompt digest of every run, and every 1.x
// request body) stay byte-identical, and a 1.x definition adds nothing.

/// The hat's Focus, followed by its v8 `## Process` (guidance, never judged) when it has one.
fn focus_with_process(hat: &Hat) -> String {
    let focus = hat.focus.clone().unwrap_or_default();
    match hat
        .process
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(process) => format!("{focus}\n\nProcess (how you work; guidance):\n{process}"),
        None => focus,
    }
}

/// The agent's mandate, followed by its v8 failure modes (guidance for the judge, not checks
/// to rule on) when it lists any.
fn mandate_with_failure_modes(agent: &ReviewAgent) -> String {
    let mandate = agent.mandate.replace("**", "");
    if agent.failure_modes.is_empty() {
        return mandate;
    }
    let modes: Vec<String> = agent
        .failure_modes
        .iter()
        .map(|f| format!("- {}", f.replace("**", "")))
        .collect();
    format!(
        "{mandate}\n\nCommon failure modes to look for (guidance for your review; rule only on the checks below):\n{}",
        modes.join("\n")
    )
}

/// The stage's criteria guidance (good and bad examples), shown to every judge so each is
/// calibrated the same way; `null` when the stage has none.
fn criteria_context(stage: &Stage) -> Value {
    match &stage.criteria {
        Some(c) if !c.good.is_empty() || !c.bad.is_empty() => json!({
            "good": c.good,
            "bad": c.bad,
        }),
        _ => Value::Null,
    }
}

fn system_message(shown: &Shown<'_>, role: &str) -> Result<ChatMessage, PromptError> {
    let text = shown.prompts.render(
        "system.j2",
        &json!({"role": role, "stage": stage_context(shown.stage), "tools": shown.tools}),
    )?;
    Ok(ChatMessage::system(text))
}

/// A hat's artifacts as the prompts quote them, each escaped as data, capped, and added to
/// `sources` under the name its BEGIN line shows.
fn artifact_values(
    hat: &str,
    artifacts: &[Artifact],
    cap: usize,
    sources: &mut Sources,
) -> Vec<Value> {
    let values = framed_artifacts(artifacts, cap);
    add_framed(sources, &artifact_kind(hat), &values, None);
    values
}

/// A hat's artifacts as the prompts quote them (`{"path", "content"}`), each escaped as data
/// and capped; added to no sources.
fn framed_artifacts(artifacts: &[Artifact], cap: usize) -> Vec<Value> {
    artifacts
        .iter()
        .map(|a| {
            let (content, _) = truncate(&escape_data(&a.content), cap);
            json!({"path": escape_name(&a.name), "content": content})
        })
        .collect()
}

fn artifact_kind(hat: &str) -> SourceKind {
    SourceKind::Artifact {
        hat: hat.to_string(),
    }
}

/// Adds framed entries (`{"path", "content"}`) to `sources` as `kind`: all of them, or with
/// `shown_in`, only those whose BEGIN marker that text shows (exactly as a template frames
/// them), so a step is grounded in what it was shown, not in what its template was offered.
fn add_framed(
    sources: &mut Sources,
    kind: &SourceKind,
    values: &[Value],
    shown_in: Option<&Framed<'_>>,
) {
    for v in values {
        let (Some(name), Some(content)) = (v["path"].as_str(), v["content"].as_str()) else {
            continue;
        };
        if shown_in.is_none_or(|framed| framed.shows(name)) {
            sources.add(name, kind.clone(), content);
        }
    }
}

/// The names a rendered text frames (`<<<BEGIN name>>>`), read in one pass over the text:
/// a dossier frames dozens of files, and searching its whole text once per file cost more
/// than rendering it.
struct Framed<'t> {
    text: &'t str,
    names: std::collections::HashSet<&'t str>,
}

impl<'t> Framed<'t> {
    fn of(text: &'t str) -> Framed<'t> {
        let names = text
            .match_indices(BEGIN)
            .filter_map(|(at, _)| {
                let rest = &text[at + BEGIN.len()..];
                let end = rest.find('>')?;
                rest[end..].starts_with(FRAME_CLOSE).then(|| &rest[..end])
            })
            .collect();
        Framed { text, names }
    }

    /// Whether the text shows `name`'s BEGIN marker. A name holding `>` is looked for in the
    /// whole text (the one pass reads a name up to its first `>`).
    fn shows(&self, name: &str) -> bool {
        if name.contains('>') {
            self.text.contains(&format!("{BEGIN}{name}{FRAME_CLOSE}"))
        } else {
            self.names.contains(name)
        }
    }
}

/// Every artifact produced so far, in stage order.
fn all_artifact_values(shown: &Shown<'_>, sources: &mut Sources) -> Vec<Value> {
    let cap = shown.limits.max_artifact_bytes;
    shown
        .produced
        .iter()
        .flat_map(|(hat, artifacts)| artifact_values(hat, artifacts, cap, sources))
        .collect()
}

fn produced_by<'a>(shown: &Shown<'a>, hat: &str) -> &'a [Artifact] {
    shown
        .produced
        .iter()
        .find(|(h, _)| h == hat)
        .map(|(_, a)| a.as_slice())
        .unwrap_or_default()
}

/// A hat's bound Reads items: workspace files, and the artifacts of the earlier hats it
/// names. Returns (workspace inputs, upstream items).
fn hat_reads(shown: &Shown<'_>, hat: &Hat, sources: &mut Sources) -> (Vec<Value>, Vec<Value>) {
    let mut inputs = Vec::new();
    let mut upstream = Vec::new();
    for item in read_items(shown, hat) {
        match &item.binding {
            Binding::Workspace { files, .. } => {
                let files: Vec<Value> = files
                    .iter()
                    .map(|f| {
                        // The content was escaped as data when it was bound.
                        let name = escape_name(&f.path);
                        sources.add(&name, SourceKind::Input, &f.content);
                        json!({"path": name, "content": f.content})
                    })
                    .collect();
                inputs.push(json!({"item": item.item, "files": files}));
            }
            Binding::Hat(other) => {
                let artifacts = produced_by(shown, other);
                upstream.push(json!({
                    "item": item.item,
                    "hat": display_name(other),
                    "artifacts": artifact_values(other, artifacts, shown.limits.max_artifact_bytes, sources),
                }));
            }
        }
    }
    (inputs, upstream)
}

/// A hat's bound Reads items, in binding order.
fn read_items<'a>(shown: &Shown<'a>, hat: &Hat) -> &'a [crate::inputs::BoundItem] {
    shown
        .bindings
        .for_hat(&hat.name)
        .map(|h| h.items.as_slice())
        .unwrap_or_default()
}

/// Which step a dossier is rendered for (`step` in `dossier.j2`): its `kind` (`hat`,
/// `judge`, `review`, `signal`) and, for a hat or its constraint judge, the hat (`hat`, its
/// name; `title`, as the dossier names producers) with the dossier entries it reads
/// (`reads`: the names [`reads_values`] lists) and the upstream hats it reads (`reads_hats`,
/// as the dossier names them). The shipped dossier shows every step the same; a `--prompts`
/// dossier may show each hat only its own (`benches/layouts/per-hat/`).
fn step_context(shown: &Shown<'_>, kind: &str, hat: Option<(&Hat, &[Value])>) -> Value {
    let Some((hat, reads)) = hat else {
        return json!({"kind": kind, "hat": null, "title": null, "reads": [], "reads_hats": []});
    };
    let mut names: Vec<&Value> = Vec::new();
    for name in reads.iter().filter_map(|r| r["names"].as_array()).flatten() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut hats: Vec<String> = Vec::new();
    for item in read_items(shown, hat) {
        if let Binding::Hat(other) = &item.binding {
            let other = display_name(other);
            if !hats.contains(&other) {
                hats.push(other);
            }
        }
    }
    json!({
        "kind": kind,
        "hat": hat.name,
        "title": display_name(&hat.name),
        "reads": names,
        "reads_hats": hats,
    })
}

fn hat_context(hat: &Hat) -> Value {
    json!({
        "name": hat.name,
        "title": display_name(&hat.name),
        "focus": focus_with_process(hat),
        "produces": hat.produces.clone().or_else(|| hat.responsibilities.clone()).unwrap_or_default(),
        "reads": hat.reads.clone().unwrap_or_default(),
    })
}

fn constraint_values(hat: &Hat) -> Vec<Value> {
    hat.constraints()
        .map(|c| json!({"id": c.id, "level": c.level.as_str(), "text": c.plain_text()}))
        .collect()
}

/// The part of the user message every step of a run shares, byte for byte, and the step's
/// sources it quotes. See the module docs for the layout.
#[derive(Clone)]
struct Dossier {
    text: String,
    sources: Sources,
    cuts: Vec<String>,
}

/// The stage, every bound input (each once, in binding order, together at most
/// `max_input_bytes`) and every artifact produced so far, by hat in production order, as
/// rendered for `step` ([`step_context`]). Its sources are the entries the text shows (with
/// the shipped template, all of them); its cuts, every input cut to fit.
fn dossier(shown: &Shown<'_>, step: &Value) -> Result<Dossier, PromptError> {
    // A dossier template that reads the step renders differently for each: never reused.
    let cache = shown
        .dossiers
        .filter(|_| !shown.prompts.reads_step(DOSSIER_TEMPLATE));
    let key = produced_key(shown.produced);
    if let Some(hit) = cache.and_then(|c| c.get(&key)) {
        return Ok(hit);
    }
    let rendered = render_dossier(shown, step)?;
    if let Some(cache) = cache {
        cache.put(key, rendered.clone());
    }
    Ok(rendered)
}

const DOSSIER_TEMPLATE: &str = "dossier.j2";

/// The dossiers a run has rendered, by what had been produced when it rendered them: every
/// judging step after the hats is shown the same dossier, byte for byte, and rendering it is
/// most of what building a step's messages costs.
#[derive(Default)]
pub struct Dossiers(std::sync::Mutex<Vec<(ProducedKey, Dossier)>>);

/// What a dossier shows of the artifacts: each hat's artifacts by name and a hash of their
/// contents, in order.
type ProducedKey = Vec<(String, Vec<(String, u64)>)>;

fn produced_key(produced: &[(String, Vec<Artifact>)]) -> ProducedKey {
    use std::hash::{Hash, Hasher};
    let digest = |text: &str| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        hasher.finish()
    };
    produced
        .iter()
        .map(|(hat, artifacts)| {
            let named = artifacts
                .iter()
                .map(|a| (a.name.clone(), digest(&a.content)))
                .collect();
            (hat.clone(), named)
        })
        .collect()
}

impl Dossiers {
    fn get(&self, key: &ProducedKey) -> Option<Dossier> {
        let kept = self.0.lock().ok()?;
        kept.iter().find(|(k, _)| k == key).map(|(_, d)| d.clone())
    }

    fn put(&self, key: ProducedKey, dossier: Dossier) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push((key, dossier));
        }
    }
}

fn render_dossier(shown: &Shown<'_>, step: &Value) -> Result<Dossier, PromptError> {
    let (inputs, cuts) = all_input_values(shown);
    let cap = shown.limits.max_artifact_bytes;
    let produced: Vec<Value> = shown
        .produced
        .iter()
        .map(|(hat, artifacts)| {
            json!({
                "hat": display_name(hat),
                "artifacts": framed_artifacts(artifacts, cap),
            })
        })
        .collect();
    let text = shown.prompts.render(
        DOSSIER_TEMPLATE,
        &json!({"stage": stage_context(shown.stage), "inputs": inputs, "produced": produced, "step": step}),
    )?;
    let mut sources = Sources::new(shown.rules);
    let framed = Framed::of(&text);
    add_framed(&mut sources, &SourceKind::Input, &inputs, Some(&framed));
    for ((hat, _), u) in shown.produced.iter().zip(&produced) {
        let artifacts = u["artifacts"].as_array().map(Vec::as_slice);
        let artifacts = artifacts.unwrap_or_default();
        add_framed(&mut sources, &artifact_kind(hat), artifacts, Some(&framed));
    }
    Ok(Dossier {
        text,
        sources,
        cuts,
    })
}

/// Every bound input once (`{"path", "content"}`), cut so that together they stay within
/// `max_input_bytes` (a cut is said once, in `cuts`); added to no sources.
fn all_input_values(shown: &Shown<'_>) -> (Vec<Value>, Vec<String>) {
    let mut left = shown.limits.max_input_bytes;
    let mut cuts = Vec::new();
    let inputs = shown
        .bindings
        .all_files()
        .into_iter()
        .map(|f| {
            let (content, _) = if f.content.len() <= left {
                (f.content.clone(), false)
            } else {
                cuts.push(format!(
                    "input {} was cut at {} of {} bytes to fit [limits] max_input_bytes = {}",
                    f.path,
                    left.min(f.shown_bytes as usize),
                    f.bytes,
                    shown.limits.max_input_bytes
                ));
                truncate(&f.content, left)
            };
            left = left.saturating_sub(content.len());
            json!({"path": escape_name(&f.path), "content": content})
        })
        .collect();
    (inputs, cuts)
}

/// A step's messages: the shared system message, then one user message holding the dossier
/// rendered for `step` and, after it, the step's own part (`template` over `context`, with
/// the check findings about `judged` before its answer instructions). A dossier template that renders nothing
/// (a `--prompts` override in the one-prompt-per-step layout) leaves the step's part alone,
/// grounded in `own` (what that part quotes) instead of the dossier.
fn step_messages(
    shown: &Shown<'_>,
    role: &str,
    template: &str,
    context: &Value,
    own: Sources,
    judged: &[&str],
    step: &Value,
) -> Result<StepMessages, PromptError> {
    let Dossier {
        text,
        sources,
        cuts,
    } = dossier(shown, step)?;
    let (dossier_text, mut sources) = if text.is_empty() {
        (None, own)
    } else {
        (Some(text), sources)
    };
    let found = findings(shown, judged, &mut sources);
    let step = with_findings(shown, shown.prompts.render(template, context)?, &found)?;
    let user = match dossier_text {
        Some(text) => format!("{text}\n\n{step}"),
        None => step,
    };
    Ok(StepMessages {
        messages: vec![system_message(shown, role)?, ChatMessage::user(user)],
        sources,
        cuts,
    })
}

/// The names a hat's Reads items are shown under in the dossier: files for workspace items,
/// artifacts for an earlier hat's.
fn reads_values(shown: &Shown<'_>, hat: &Hat) -> Vec<Value> {
    read_items(shown, hat)
        .iter()
        .map(|item| {
            let (from, names): (String, Vec<String>) = match &item.binding {
                Binding::Workspace { files, .. } => (
                    "the repository".into(),
                    files
                        .iter()
                        .map(|f| escape_name(&f.path).into_owned())
                        .collect(),
                ),
                Binding::Hat(other) => (
                    format!("the {}", display_name(other)),
                    produced_by(shown, other)
                        .iter()
                        .map(|a| escape_name(&a.name).into_owned())
                        .collect(),
                ),
            };
            json!({"item": item.item, "from": from, "names": names})
        })
        .collect()
}

/// A hat's messages: its role, what it reads, its constraints (to honour, not to grade).
fn hat_messages(shown: &Shown<'_>, hat: &Hat) -> Result<StepMessages, PromptError> {
    let mut own = Sources::new(shown.rules);
    let (inputs, upstream) = hat_reads(shown, hat, &mut own);
    let reads = reads_values(shown, hat);
    let step = step_context(shown, "hat", Some((hat, &reads)));
    let context = json!({
        "stage": stage_context(shown.stage),
        "hat": hat_context(hat),
        "constraints": constraint_values(hat),
        "reads": reads,
        "inputs": inputs,
        "upstream": upstream,
    });
    let role = display_name(&hat.name);
    step_messages(shown, &role, "hat.j2", &context, own, &[], &step)
}

/// A constraint judge's messages: the hat's constraints, what the hat read, and what it
/// produced.
fn constraint_judge_messages(shown: &Shown<'_>, hat: &Hat) -> Result<StepMessages, PromptError> {
    let mut own = Sources::new(shown.rules);
    let (inputs, upstream) = hat_reads(shown, hat, &mut own);
    let produced = artifact_values(
        &hat.name,
        produced_by(shown, &hat.name),
        shown.limits.max_artifact_bytes,
        &mut own,
    );
    let reads = reads_values(shown, hat);
    let step = step_context(shown, "judge", Some((hat, &reads)));
    let context = json!({
        "stage": stage_context(shown.stage),
        "criteria": criteria_context(shown.stage),
        "hat": hat_context(hat),
        "constraints": undecided(shown, constraint_values(hat)),
        "reads": reads,
        "inputs": inputs,
        "upstream": upstream,
        "artifacts": produced,
    });
    let ids: Vec<&str> = hat.constraints().map(|c| c.id.as_str()).collect();
    let role = format!("constraint judge for the {}", display_name(&hat.name));
    step_messages(shown, &role, "judge.j2", &context, own, &ids, &step)
}

/// A review agent's messages: its mandate and checks over every hat's artifacts and the
/// bound inputs.
fn review_messages(shown: &Shown<'_>, agent: &ReviewAgent) -> Result<StepMessages, PromptError> {
    let mut own = Sources::new(shown.rules);
    let artifacts = all_artifact_values(shown, &mut own);
    let (inputs, _) = all_input_values(shown);
    add_framed(&mut own, &SourceKind::Input, &inputs, None);
    let checks: Vec<Value> = agent
        .checks
        .iter()
        .map(|c| json!({"id": c.id, "level": c.level.as_str(), "text": check_text(c)}))
        .collect();
    let included_from = match &agent.origin {
        AgentOrigin::Own => Value::Null,
        AgentOrigin::Included { stage } => json!(stage),
    };
    let context = json!({
        "stage": stage_context(shown.stage),
        "criteria": criteria_context(shown.stage),
        "agent": {
            "name": agent.name,
            "title": display_name(&agent.name),
            "mandate": mandate_with_failure_modes(agent),
            "included_from": included_from,
        },
        "checks": undecided(shown, checks),
        "artifacts": artifacts,
        "inputs": inputs,
    });
    let ids: Vec<&str> = agent.checks.iter().map(|c| c.id.as_str()).collect();
    let role = format!("{} review agent", display_name(&agent.name));
    let step = step_context(shown, "review", None);
    step_messages(shown, &role, "review.j2", &context, own, &ids, &step)
}

/// A check as its judge reads it. A v8 check takes its keyword from the lead-in sentence
/// above the list, so the judge is shown both ("The agent MUST verify…: Retries are
/// bounded — …"); a 1.x check is its own text.
fn check_text(check: &crate::definition::Requirement) -> String {
    match &check.lead_in {
        Some(lead) => format!("{} {}", lead.replace("**", ""), check.plain_text()),
        None => check.plain_text(),
    }
}

/// One verdict shown to the completion judge.
#[derive(Debug, Clone)]
pub struct PriorVerdict {
    pub id: String,
    pub verdict: String,
    pub finding: String,
}

/// The completion judge's messages: the signal's requirements and the verdicts so far,
/// over the dossier (the bound inputs and the artifacts).
fn signal_messages(shown: &Shown<'_>) -> Result<StepMessages, PromptError> {
    let mut own = Sources::new(shown.rules);
    let artifacts = all_artifact_values(shown, &mut own);
    let requirements: Vec<Value> = shown
        .stage
        .completion_signal
        .iter()
        .map(|r| json!({"id": r.id, "level": r.level.as_str(), "text": r.plain_text()}))
        .collect();
    let ids: Vec<&str> = shown
        .stage
        .completion_signal
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    let verdicts: Vec<Value> = shown
        .prior
        .iter()
        // A finding is a model's text shown outside any frame: one line, escaped.
        .map(|v| json!({"id": v.id, "verdict": v.verdict, "finding": one_line_data(&v.finding)}))
        .collect();
    let context = json!({
        "stage": stage_context(shown.stage),
        "criteria": criteria_context(shown.stage),
        "requirements": undecided(shown, requirements),
        "verdicts": verdicts,
        "artifacts": artifacts,
    });
    let step = step_context(shown, "signal", None);
    step_messages(
        shown,
        "completion judge",
        "signal.j2",
        &context,
        own,
        &ids,
        &step,
    )
}

/// Stand-ins for what a run produces, so preflight can render every template's loops
/// (artifacts, verdicts) before any request is made.
pub fn representative(stage: &Stage) -> (Vec<(String, Vec<Artifact>)>, Vec<PriorVerdict>) {
    let produced = stage
        .hats
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                vec![Artifact {
                    name: format!("artifacts/{}/example.md", h.name),
                    content: "(a representative artifact, for preflight)".to_string(),
                }],
            )
        })
        .collect();
    let prior = stage
        .hats
        .iter()
        .flat_map(|h| h.constraints())
        .chain(stage.review_agents.iter().flat_map(|a| a.checks.iter()))
        .map(|r| PriorVerdict {
            id: r.id.clone(),
            verdict: "unknown".to_string(),
            finding: "(a representative finding, for preflight)".to_string(),
        })
        .collect();
    (produced, prior)
}

#[cfg(test)]
mod tests {
    use super::display_name;

    #[test]
    fn hat_names_read_as_titles() {
        assert_eq!(display_name("pipeline-engineer"), "Pipeline Engineer");
        assert_eq!(display_name("sre"), "SRE");
        assert_eq!(display_name("data_quality"), "Data Quality");
    }
}
