//! Structured answers: ask for JSON matching a schema, validate it, re-ask with the
//! validation errors at most `max_reasks` times, then give up with an honest "unparseable".

use std::sync::Arc;

use serde_json::Value;

use super::request::{build_body, ChatMessage, JsonSchemaSpec};
use super::settings::ModelSettings;
use super::window;
use super::{ChatModel, ModelError, ModelRequest, ReplySource, Usage};

/// Validation errors listed per re-ask at most (a broken answer can have hundreds).
const MAX_LISTED_ERRORS: usize = 8;

/// Characters of one validation error kept (an error quotes the offending value, which a
/// hostile answer can make megabytes long).
const MAX_ERROR_CHARS: usize = 240;

/// Bytes of a rejected answer quoted back to the model in a re-ask (and of a rejection
/// reason): the re-ask carries the reason and an excerpt, never the whole answer, so a
/// long or cut-off answer cannot make the next request outgrow the context window.
pub const REASK_EXCERPT_BYTES: usize = 2048;

/// The longest an exchange is counted as taking (2^40 ms ≈ 35 years).
pub const MAX_EXCHANGE_MS: u64 = 1 << 40;

/// What one step's structured exchange produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StructuredOutcome {
    /// The valid answer, or `None` when every attempt was invalid (the step is `unparseable`).
    pub value: Option<Value>,
    /// Requests made (1 + re-asks).
    pub attempts: u32,
    /// Why each invalid attempt was rejected, in order (one entry per invalid attempt).
    pub errors: Vec<String>,
    /// Summed over attempts.
    pub usage: Usage,
    /// Summed over attempts.
    pub duration_ms: u64,
    /// Where each attempt's answer came from.
    pub sources: Vec<ReplySource>,
    /// Where each attempt's answer was first obtained (see [`crate::model::ModelReply::origin`]).
    pub origins: Vec<ReplySource>,
    /// The step ended because its next request could not fit the model's context window
    /// (estimated before sending, or said by the provider): why, in a sentence.
    pub overflow: Option<String>,
}

/// The compiled validator for `schema`. Compiling a schema costs more than a step's own
/// work, and the steps of a batch ask the same few schemas again and again, so compiled
/// validators are kept for the process (at most [`MAX_CACHED_SCHEMAS`]), and each spec keeps
/// its own (its samples and re-asks do not look it up again).
pub fn validator(
    step: &str,
    schema: &JsonSchemaSpec,
) -> Result<Arc<jsonschema::Validator>, ModelError> {
    static VALIDATORS: crate::memo::Memo<Arc<jsonschema::Validator>> =
        crate::memo::Memo::new(MAX_CACHED_SCHEMAS);
    if let Some(compiled) = schema.compiled().get() {
        return Ok(compiled.clone());
    }
    let compiled = VALIDATORS.get_or_try(&schema.schema.to_string(), || {
        // Draft 7: the answer schemas use only keywords it shares with 2020-12 (type,
        // properties, required, additionalProperties, items, enum, min/maxItems), and its
        // meta-schema builds in a third of the time of 2020-12's on each start.
        let compiled = jsonschema::draft7::new(&schema.schema).map_err(|e| {
            ModelError::Config(format!(
                "step {step}: the answer schema {} is not a valid JSON Schema: {e}",
                schema.name
            ))
        })?;
        Ok(Arc::new(compiled))
    })?;
    Ok(schema.compiled().get_or_init(|| compiled).clone())
}

/// Compiled answer schemas kept at once (a stage has a handful).
const MAX_CACHED_SCHEMAS: usize = 256;

/// Asks `model` for step `step` and returns the first answer that is JSON matching
/// `schema`. Every attempt goes through `model.complete` (so it is recorded); provider
/// failures, replay misses and budget refusals are returned as errors. At most
/// `1 + settings.max_reasks` requests are made.
pub async fn ask_structured(
    model: &dyn ChatModel,
    step: &str,
    settings: &ModelSettings,
    messages: &[ChatMessage],
    schema: &JsonSchemaSpec,
) -> Result<StructuredOutcome, ModelError> {
    let validator = validator(step, schema)?;
    let mut conversation = messages.to_vec();
    let mut outcome = StructuredOutcome::default();
    // Saturating: `max_reasks` is range-checked where it is read, but u32::MAX must not wrap
    // to zero attempts here either.
    let max_attempts = settings.max_reasks.saturating_add(1);
    let window = window::window_of(settings);
    for attempt in 1..=max_attempts {
        // Re-ask notes are cut to fit; a prompt that cannot fit is not sent.
        let body = window::fit(&mut conversation, messages.len(), window, |m| {
            build_body(settings, m, Some(schema))
        });
        let body = match body {
            Ok(body) => body,
            Err(overflow) => {
                outcome.overflow = Some(overflow.to_string());
                return Ok(outcome);
            }
        };
        let request = ModelRequest::new(step, attempt, body);
        let reply = match model.complete(&request).await {
            Ok(reply) => reply,
            Err(e) => {
                outcome.overflow = Some(window::refused_as_too_long(&e).ok_or(e)?);
                outcome.attempts = attempt;
                return Ok(outcome);
            }
        };
        outcome.count(&reply, step, attempt);
        let content = reply.content.clone().unwrap_or_default();
        match check_answer(&reply, &content, &validator) {
            Ok(value) => {
                outcome.value = Some(value);
                return Ok(outcome);
            }
            Err(problem) => {
                let problem = head_and_tail(&problem, REASK_EXCERPT_BYTES);
                tracing::warn!(step, attempt, "invalid structured answer: {problem}");
                outcome.errors.push(format!("attempt {attempt}: {problem}"));
                if attempt < max_attempts {
                    conversation.push(ChatMessage::assistant(head_and_tail(
                        &content,
                        REASK_EXCERPT_BYTES,
                    )));
                    conversation.push(ChatMessage::user(reask_message(&problem)));
                }
            }
        }
    }
    Ok(outcome)
}

impl StructuredOutcome {
    /// Counts one exchange: attempts, usage, time and where its answer came from. Usage and
    /// time are clamped per exchange (a replayed transcript may carry edited numbers), so
    /// that the plain sums callers make over steps cannot overflow either.
    fn count(&mut self, reply: &super::ModelReply, step: &str, attempt: u32) {
        self.attempts = attempt;
        if reply.usage.clamped() != reply.usage || reply.duration_ms > MAX_EXCHANGE_MS {
            tracing::warn!(
                step,
                attempt,
                "the exchange reports impossible usage or duration ({:?}, {} ms); counted at the maximum",
                reply.usage,
                reply.duration_ms
            );
        }
        self.add_exchange(reply);
    }

    /// Adds one exchange's usage and time (each clamped to what one exchange can take) and
    /// where its answer came from; the attempt count is the caller's.
    pub fn add_exchange(&mut self, reply: &super::ModelReply) {
        self.usage.add(&reply.usage.clamped());
        self.duration_ms = self
            .duration_ms
            .saturating_add(reply.duration_ms.min(MAX_EXCHANGE_MS));
        self.sources.push(reply.source);
        self.origins.push(reply.origin);
    }
}

/// The answer, parsed, or why it is not acceptable.
fn check_answer(
    reply: &super::ModelReply,
    content: &str,
    validator: &jsonschema::Validator,
) -> Result<Value, String> {
    let has_choice = reply
        .body
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if !has_choice {
        return Err("the response had no choices (no answer at all)".to_string());
    }
    if reply.finish_reason.as_deref() == Some("length") {
        return Err(
            "the answer was cut off at the token limit (finish_reason: length); answer more briefly"
                .to_string(),
        );
    }
    if content.trim().is_empty() {
        return Err("the answer was empty".to_string());
    }
    let value = match parse_json_answer(content) {
        Ok(v) => v,
        Err(e) => return Err(format!("the answer is not valid JSON: {e}")),
    };
    if validator.is_valid(&value) {
        return Ok(value);
    }
    let mut errors = validator.iter_errors(&value);
    let listed: Vec<String> = errors
        .by_ref()
        .take(MAX_LISTED_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            head_and_tail(&format!("at {at}: {e}"), MAX_ERROR_CHARS)
        })
        .collect();
    if listed.is_empty() {
        // is_valid said otherwise; both walk the same schema.
        return Err("the answer does not match the schema".to_string());
    }
    let total = listed.len() + errors.count();
    let mut text = format!(
        "the answer does not match the schema ({total} error(s)): {}",
        listed.join("; ")
    );
    if total > MAX_LISTED_ERRORS {
        text.push_str("; …");
    }
    Err(text)
}

/// Checks one reply against the answer schema: the answer, or why it is not acceptable.
/// The agent loop uses this for its final turn, so a step with tools validates the same way.
pub fn validate_reply(
    reply: &super::ModelReply,
    validator: &jsonschema::Validator,
) -> Result<Value, String> {
    let content = reply.content.as_deref().unwrap_or_default();
    check_answer(reply, content, validator)
}

/// The message that asks again after a rejected answer.
pub fn reask(problem: &str) -> ChatMessage {
    ChatMessage::user(reask_message(problem))
}

/// `text` when it is at most `max` bytes; else its start and its end (cut at character
/// boundaries) around a marker saying how much was left out. Never longer than
/// `max` + the marker.
pub fn head_and_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let ceil = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let head = floor(max * 3 / 4);
    let tail = ceil(text.len() - max / 4).max(head);
    format!(
        "{}\n[… {} bytes left out …]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// Parses the answer as JSON. A single surrounding Markdown code fence (```json … ```),
/// which small models add even when asked for JSON, is tolerated; nothing else is repaired.
fn parse_json_answer(content: &str) -> Result<Value, serde_json::Error> {
    let trimmed = content.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(unfenced)
}

fn reask_message(problem: &str) -> String {
    format!(
        "Your previous answer was rejected: {problem}.\n\
         Reply again with only a JSON object that matches the required schema, with no other text."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fence_is_tolerated() {
        assert_eq!(
            parse_json_answer("```json\n{\"a\": 1}\n```").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(parse_json_answer("Sure! {\"a\": 1}").is_err());
    }

    #[test]
    fn excerpts_keep_short_text_and_bound_long_text() {
        assert_eq!(head_and_tail("short", 10), "short");
        let long = "é".repeat(10_000);
        let cut = head_and_tail(&long, 2048);
        assert!(cut.len() < 2048 + 64, "{}", cut.len());
        assert!(cut.contains("bytes left out"));
        for max in 0..12 {
            let _ = head_and_tail("aé€😀bc", max);
        }
    }
}
