//! The template contexts for each kind of step, and the sources each step is shown (so
//! grounding checks quotes against exactly what the model saw). `hatrack render` and the run
//! itself both build messages here, so what render prints is what a run sends.

use serde_json::{json, Value};

use crate::definition::{AgentOrigin, Hat, ReviewAgent, Stage};
use crate::inputs::{truncate, Binding, Bindings};
use crate::model::request::ChatMessage;
use crate::prompt::{PromptError, Prompts};
use crate::run::artifacts::Artifact;
use crate::run::grounding::Sources;

/// Messages for one step and the named texts they quote.
#[derive(Debug, Clone)]
pub struct StepMessages {
    pub messages: Vec<ChatMessage>,
    pub sources: Sources,
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

fn stage_context(stage: &Stage) -> Value {
    json!({
        "name": stage.name,
        "title": if stage.title.is_empty() { display_name(&stage.name) } else { stage.title.clone() },
        "description": stage.description,
        "completion_signal": stage.completion_signal_text.replace("**", ""),
    })
}

fn system_message(
    prompts: &Prompts,
    stage: &Stage,
    role: &str,
) -> Result<ChatMessage, PromptError> {
    let text = prompts.render(
        "system.j2",
        &json!({"role": role, "stage": stage_context(stage)}),
    )?;
    Ok(ChatMessage::system(text))
}

/// Artifacts as the prompts quote them, each capped.
fn artifact_values(artifacts: &[Artifact], cap: usize, sources: &mut Sources) -> Vec<Value> {
    artifacts
        .iter()
        .map(|a| {
            let (content, _) = truncate(&a.content, cap);
            sources.add(&a.name, &content);
            json!({"path": a.name, "content": content})
        })
        .collect()
}

/// A hat's messages. `upstream` holds the artifacts of the hats before it (empty lists for
/// `hatrack render` without a transcript).
pub fn hat_messages(
    prompts: &Prompts,
    stage: &Stage,
    hat: &Hat,
    bindings: &Bindings,
    upstream: &[(String, Vec<Artifact>)],
    artifact_cap: usize,
) -> Result<StepMessages, PromptError> {
    let mut sources = Sources::default();
    let mut inputs = Vec::new();
    let mut upstream_items = Vec::new();
    for item in bindings
        .for_hat(&hat.name)
        .map(|h| h.items.as_slice())
        .unwrap_or_default()
    {
        match &item.binding {
            Binding::Workspace { files, .. } => {
                let files: Vec<Value> = files
                    .iter()
                    .map(|f| {
                        sources.add(&f.path, &f.content);
                        json!({"path": f.path, "content": f.content})
                    })
                    .collect();
                inputs.push(json!({"item": item.item, "files": files}));
            }
            Binding::Hat(other) => {
                let artifacts = upstream
                    .iter()
                    .find(|(h, _)| h == other)
                    .map(|(_, a)| a.as_slice())
                    .unwrap_or_default();
                upstream_items.push(json!({
                    "item": item.item,
                    "hat": display_name(other),
                    "artifacts": artifact_values(artifacts, artifact_cap, &mut sources),
                }));
            }
        }
    }
    let constraints: Vec<Value> = hat
        .constraints()
        .map(|c| json!({"id": c.id, "level": c.level.as_str(), "text": c.plain_text()}))
        .collect();
    let context = json!({
        "stage": stage_context(stage),
        "hat": {
            "name": hat.name,
            "title": display_name(&hat.name),
            "focus": hat.focus.clone().unwrap_or_default(),
            "produces": hat.produces.clone().or_else(|| hat.responsibilities.clone()).unwrap_or_default(),
            "reads": hat.reads.clone().unwrap_or_default(),
        },
        "constraints": constraints,
        "inputs": inputs,
        "upstream": upstream_items,
    });
    let role = display_name(&hat.name);
    Ok(StepMessages {
        messages: vec![
            system_message(prompts, stage, &role)?,
            ChatMessage::user(prompts.render("hat.j2", &context)?),
        ],
        sources,
    })
}

/// A review agent's messages: its mandate and checks, every hat's artifacts, and the bound
/// inputs (each once, together at most `input_budget` bytes).
pub fn review_messages(
    prompts: &Prompts,
    stage: &Stage,
    agent: &ReviewAgent,
    bindings: &Bindings,
    artifacts: &[Artifact],
    artifact_cap: usize,
    input_budget: usize,
) -> Result<StepMessages, PromptError> {
    let mut sources = Sources::default();
    let artifacts = artifact_values(artifacts, artifact_cap, &mut sources);
    let mut left = input_budget;
    let inputs: Vec<Value> = bindings
        .all_files()
        .into_iter()
        .map(|f| {
            let (content, _) = if f.content.len() <= left {
                (f.content.clone(), false)
            } else {
                truncate(&f.content, left)
            };
            left = left.saturating_sub(content.len());
            sources.add(&f.path, &content);
            json!({"path": f.path, "content": content})
        })
        .collect();
    let checks: Vec<Value> = agent
        .checks
        .iter()
        .map(|c| json!({"id": c.id, "level": c.level.as_str(), "text": c.plain_text()}))
        .collect();
    let included_from = match &agent.origin {
        AgentOrigin::Own => Value::Null,
        AgentOrigin::Included { stage } => json!(stage),
    };
    let context = json!({
        "stage": stage_context(stage),
        "agent": {
            "name": agent.name,
            "title": display_name(&agent.name),
            "mandate": agent.mandate.replace("**", ""),
            "included_from": included_from,
        },
        "checks": checks,
        "artifacts": artifacts,
        "inputs": inputs,
    });
    let role = format!("{} review agent", display_name(&agent.name));
    Ok(StepMessages {
        messages: vec![
            system_message(prompts, stage, &role)?,
            ChatMessage::user(prompts.render("review.j2", &context)?),
        ],
        sources,
    })
}

/// One verdict shown to the completion judge.
#[derive(Debug, Clone)]
pub struct PriorVerdict {
    pub id: String,
    pub verdict: String,
    pub finding: String,
}

/// The completion judge's messages: the signal's requirements, the verdicts so far, and the
/// artifacts.
pub fn signal_messages(
    prompts: &Prompts,
    stage: &Stage,
    verdicts: &[PriorVerdict],
    artifacts: &[Artifact],
    artifact_cap: usize,
) -> Result<StepMessages, PromptError> {
    let mut sources = Sources::default();
    let artifacts = artifact_values(artifacts, artifact_cap, &mut sources);
    let requirements: Vec<Value> = stage
        .completion_signal
        .iter()
        .map(|r| json!({"id": r.id, "level": r.level.as_str(), "text": r.plain_text()}))
        .collect();
    let verdicts: Vec<Value> = verdicts
        .iter()
        .map(|v| json!({"id": v.id, "verdict": v.verdict, "finding": v.finding}))
        .collect();
    let context = json!({
        "stage": stage_context(stage),
        "requirements": requirements,
        "verdicts": verdicts,
        "artifacts": artifacts,
    });
    Ok(StepMessages {
        messages: vec![
            system_message(prompts, stage, "completion judge")?,
            ChatMessage::user(prompts.render("signal.j2", &context)?),
        ],
        sources,
    })
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
