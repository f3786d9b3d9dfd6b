//! The agent loop: a step is offered the read-only workspace [`tools`](crate::tools) and
//! answers in turns — tool calls, their results, and finally an answer through the step's
//! JSON Schema. Every turn is one model exchange (recorded, and replayed turn by turn: the
//! tools are deterministic, so the same workspace gives the same next request).
//!
//! A provider that refuses `tools` (HTTP 400 on the first turn) gets the single request over
//! the bound inputs instead, and the report says so; so does a model that answers without
//! calling any tool.

use serde_json::Value;

use crate::model::request::{build_body_with_tools, ChatMessage, JsonSchemaSpec};
use crate::model::settings::ModelSettings;
use crate::model::structured::{
    ask_structured, head_and_tail, reask, validate_reply, StructuredOutcome, REASK_EXCERPT_BYTES,
};
use crate::model::window;
use crate::model::{ChatModel, ModelError, ModelReply, ModelRequest, ProviderErrorKind};
use crate::run::tool_answers::ToolAnswers;
use crate::secrets::Scrubber;
use crate::tools::{Trail, Workspace};

/// Tool calls honoured per turn; more are refused (the model reads why).
pub const MAX_CALLS_PER_TURN: usize = 16;
/// Bytes of tool results one step may receive in all; later calls are refused.
pub const MAX_TOOL_BYTES_PER_STEP: usize = 256 * 1024;

/// How steps use tools (`[agent]` in hatrack.toml).
pub struct Agent {
    /// Where tool results come from: the workspace (recorded for the snapshot as they are
    /// made) or, on a replay without the workspace, the snapshot's recorded results.
    pub tools: ToolAnswers,
    /// Model turns per step at most (tool turns, the answer and its re-asks).
    pub max_turns: u32,
    pub scrubber: Scrubber,
}

/// What a step's exchange produced, with what the agent did on the way.
pub struct AgentOutcome {
    pub structured: StructuredOutcome,
    /// Every tool call, in order.
    pub trail: Vec<Trail>,
    /// Files the agent read (workspace-relative name, the text it was shown).
    pub read: Vec<(String, String)>,
    /// How tools were used when not as an agent: off, refused by the provider, or unused.
    pub note: Option<String>,
}

impl AgentOutcome {
    fn plain(structured: StructuredOutcome, note: Option<String>) -> AgentOutcome {
        AgentOutcome {
            structured,
            trail: Vec::new(),
            read: Vec::new(),
            note,
        }
    }
}

/// Asks one step: with tools when `agent` is given, else one structured request.
pub async fn ask(
    model: &dyn ChatModel,
    step: &str,
    settings: &ModelSettings,
    messages: &[ChatMessage],
    spec: &JsonSchemaSpec,
    agent: Option<&Agent>,
) -> Result<AgentOutcome, ModelError> {
    let Some(agent) = agent else {
        let plain = ask_structured(model, step, settings, messages, spec).await?;
        return Ok(AgentOutcome::plain(plain, None));
    };
    let validator = crate::model::structured::validator(step, spec)?;
    let mut state = Turns {
        conversation: messages.to_vec(),
        prompt_len: messages.len(),
        out: AgentOutcome::plain(StructuredOutcome::default(), None),
        reasks_left: settings.max_reasks,
        tool_bytes: 0,
        max_turns: agent.max_turns.max(1),
    };
    for turn in 1..=state.max_turns {
        let request = match state.request(step, settings, spec, turn) {
            Ok(request) => request,
            Err(overflow) => {
                state.out.structured.overflow = Some(overflow.to_string());
                return Ok(state.out);
            }
        };
        let reply = match model.complete(&request).await {
            Ok(reply) => reply,
            // A plain 400 on the first turn: the provider does not take `tools` (a context
            // overflow has a kind of its own).
            Err(ModelError::Provider {
                status: Some(400),
                kind: ProviderErrorKind::BadRequest,
                ..
            }) if turn == 1 => {
                let plain = ask_structured(model, step, settings, messages, spec).await?;
                let note = "the provider refused `tools` (HTTP 400): answered in one request over the bound inputs";
                return Ok(AgentOutcome::plain(plain, Some(note.into())));
            }
            Err(e) => {
                state.out.structured.overflow = Some(window::refused_as_too_long(&e).ok_or(e)?);
                state.out.structured.attempts = turn;
                return Ok(state.out);
            }
        };
        if state.take(agent, &reply, turn, &validator) {
            return Ok(state.out);
        }
    }
    let max_turns = state.max_turns;
    state.out.structured.errors.push(format!(
        "the agent used all {max_turns} turns ([agent] max_turns) without a final answer"
    ));
    Ok(state.out)
}

/// An agent's conversation as it goes, turn by turn.
struct Turns {
    conversation: Vec<ChatMessage>,
    /// Messages of the step's prompt (never cut); what follows is the agent's own.
    prompt_len: usize,
    out: AgentOutcome,
    reasks_left: u32,
    tool_bytes: usize,
    max_turns: u32,
}

impl Turns {
    /// The next request, sized to fit the window: tool results and re-ask notes re-sent
    /// from earlier turns are cut first. The last turn may not call tools
    /// (`tool_choice: "none"`), so it answers.
    fn request(
        &mut self,
        step: &str,
        settings: &ModelSettings,
        spec: &JsonSchemaSpec,
        turn: u32,
    ) -> Result<ModelRequest, window::Overflow> {
        let tools = Workspace::definitions();
        let last = turn == self.max_turns;
        let body = window::fit(
            &mut self.conversation,
            self.prompt_len,
            window::window_of(settings),
            |m| {
                let mut body = build_body_with_tools(settings, m, Some(spec), Some(&tools));
                if let (true, Some(fields)) = (last, body.as_object_mut()) {
                    fields.insert("tool_choice".into(), Value::from("none"));
                }
                body
            },
        )?;
        Ok(ModelRequest::new(step, turn, body))
    }

    /// Takes one reply: runs its tool calls, or validates its answer (re-asking when it is
    /// invalid and re-asks are left). True when the step is done.
    fn take(
        &mut self,
        agent: &Agent,
        reply: &ModelReply,
        turn: u32,
        validator: &jsonschema::Validator,
    ) -> bool {
        let o = &mut self.out.structured;
        o.attempts = turn;
        // Clamped per exchange, as in `ask_structured`: a replayed transcript may carry
        // edited numbers.
        o.add_exchange(reply);
        let content = reply.content.clone().unwrap_or_default();
        if !reply.tool_calls.is_empty() {
            self.conversation.push(ChatMessage::assistant_tool_calls(
                content,
                Value::Array(reply.tool_calls.clone()),
            ));
            for (i, call) in reply.tool_calls.iter().enumerate() {
                let (id, result) = run_call(agent, call, i, &mut self.tool_bytes, &mut self.out);
                self.conversation.push(ChatMessage::tool(id, result));
            }
            return false;
        }
        if self.out.trail.is_empty() && turn == 1 {
            self.out.note =
                Some("the model made no tool calls: it answered from the bound inputs".into());
        }
        match validate_reply(reply, validator) {
            Ok(value) => {
                self.out.structured.value = Some(value);
                true
            }
            Err(problem) => {
                // Excerpts only: a long or cut-off answer must not grow the next request.
                let problem = head_and_tail(&problem, REASK_EXCERPT_BYTES);
                tracing::warn!(turn, "invalid structured answer: {problem}");
                self.out
                    .structured
                    .errors
                    .push(format!("turn {turn}: {problem}"));
                if self.reasks_left == 0 {
                    return true;
                }
                self.reasks_left -= 1;
                let shown = head_and_tail(&content, REASK_EXCERPT_BYTES);
                self.conversation.push(ChatMessage::assistant(shown));
                self.conversation.push(reask(&problem));
                false
            }
        }
    }
}

/// Runs one tool call; returns the call id and the (scrubbed) result for the model.
fn run_call(
    agent: &Agent,
    call: &Value,
    index: usize,
    tool_bytes: &mut usize,
    out: &mut AgentOutcome,
) -> (String, String) {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let arguments = function
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let result = if index >= MAX_CALLS_PER_TURN {
        Workspace::refuse(
            name,
            "",
            &format!("at most {MAX_CALLS_PER_TURN} tool calls are answered per turn"),
        )
    } else if *tool_bytes >= MAX_TOOL_BYTES_PER_STEP {
        Workspace::refuse(
            name,
            "",
            "this step has read as much as it may; answer now with what you have",
        )
    } else {
        match Workspace::parse(name, arguments) {
            Ok(call) => agent.tools.call(&call),
            Err(why) => Workspace::refuse(name, "", &why),
        }
    };
    let text = agent.scrubber.scrub(&result.text);
    *tool_bytes = tool_bytes.saturating_add(text.len());
    if let Some((path, shown)) = result.read {
        out.read.push((path, agent.scrubber.scrub(&shown)));
    }
    out.trail.push(result.trail);
    (id, text)
}
