//! Server-sent events (`"stream": true`) read back into one `chat.completion` body.
//!
//! Streaming exists so that a slow model is judged by how long it goes quiet (an idle
//! timeout between chunks) rather than by one request timeout. Everything after the
//! transport works on the assembled body, exactly as if the provider had answered in one
//! piece: [`StreamAssembler::finish`] builds `{"choices":[{"message":{content, tool_calls},
//! "finish_reason"}], "usage"}`, which [`super::ModelReply::from_body`] reads, the recorder
//! stores, and replay returns. A recording therefore does not depend on whether it streamed.
//!
//! A provider's stream is hostile input: lines are capped ([`MAX_LINE_BYTES`]), the number of
//! tool-call slots is capped ([`MAX_TOOL_CALLS`]), the transport caps the total bytes, and a
//! stream that ends without `[DONE]` or a `finish_reason` is an error, never a partial answer.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The longest SSE line accepted. One chunk carries a few tokens; a megabyte is far beyond
/// any honest server and keeps a newline-less body from growing a line buffer forever.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The most tool-call slots (`delta.tool_calls[].index`) one answer may fill. An index is the
/// provider's number; without a bound `index: 4000000000` would allocate that many slots.
pub const MAX_TOOL_CALLS: usize = 128;

/// Why a stream could not be assembled into an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The provider sent an `error` event (or a chunk carrying `error`) instead of deltas.
    #[error("the stream carried an error: {0}")]
    Provider(String),
    /// A `data:` line that is not JSON.
    #[error("stream chunk {chunk} is not valid JSON: {message}")]
    InvalidChunk { chunk: u64, message: String },
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("a stream line is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// `delta.tool_calls[].index` out of range.
    #[error("a stream chunk names tool call index {0} (at most {MAX_TOOL_CALLS} are accepted)")]
    TooManyToolCalls(u64),
    /// The body ended before `data: [DONE]` or a `finish_reason`.
    #[error("the stream ended after {chunks} chunk(s) without [DONE] or a finish_reason: the answer is incomplete")]
    CutOff { chunks: u64 },
}

/// Splits a byte stream into SSE lines (LF or CRLF), bounded by [`MAX_LINE_BYTES`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Appends `bytes` and hands `each` every line they complete (without the line ending),
    /// in order. A line that lies whole in `bytes` (the usual case: a provider writes whole
    /// events) is lent as it lies, not copied: an answer streams in hundreds of lines.
    pub fn push(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(&str) -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        let mut rest = bytes;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if self.pending.is_empty() {
                if pos > MAX_LINE_BYTES {
                    return Err(StreamError::LineTooLong);
                }
                each(&line_text(&rest[..pos]))?;
            } else {
                self.extend(&rest[..pos])?;
                let line = std::mem::take(&mut self.pending);
                each(&line_text(&line))?;
                // Keep the buffer's allocation for the next split line.
                self.pending = line;
                self.pending.clear();
            }
            rest = &rest[pos + 1..];
        }
        self.extend(rest)
    }

    /// What is left when the body ends (a last line with no newline).
    pub fn finish(self) -> Option<String> {
        (!self.pending.is_empty()).then(|| line_text(&self.pending).into_owned())
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.pending.len().saturating_add(bytes.len()) > MAX_LINE_BYTES {
            return Err(StreamError::LineTooLong);
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }
}

/// A line's text without its `\r` (CRLF endings); invalid UTF-8 is replaced (and only then
/// copied).
fn line_text(line: &[u8]) -> Cow<'_, str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    }
}

/// One tool call being assembled from its deltas.
#[derive(Debug, Default, Clone)]
struct ToolCallParts {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// Collects the deltas of one streamed answer (choice 0) and builds the body a
/// non-streaming call would have returned.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    /// `id`, `created`, `model`, `system_fingerprint` of the first chunk that had them.
    /// In arrival order; at most the four keys, so a scan finds one faster than a map.
    head: Vec<(&'static str, Value)>,
    role: Option<String>,
    content: String,
    saw_content: bool,
    /// A chunk had a choice 0 (without any, the answer has `choices: []`, as a plain
    /// answer with no choices would).
    saw_choice: bool,
    tool_calls: Vec<ToolCallParts>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
    /// Chunks read (data events), for messages.
    chunks: u64,
    /// Content and tool-call deltas: about one token each, for progress.
    deltas: u64,
    /// SSE `event:` name of the event being read (`error` makes its data an error).
    event: Option<String>,
}

/// A chunk of the usual shape, read without a JSON tree for its text. `null` reads as absent,
/// as the general path treats it; a field of another type fails this reading, and the chunk
/// takes the general path.
#[derive(serde::Deserialize)]
struct TypedChunk<'a> {
    // Fields that are rare or read once stay raw text until needed: most chunks are one token.
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    created: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system_fingerprint: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    choices: Option<FirstChoice<'a>>,
}

/// The head fields every chunk repeats, in the order they are read.
const HEAD_KEYS: [&str; 4] = ["id", "created", "model", "system_fingerprint"];

/// The first choice 0 of a chunk's `choices` (an absent `index` counts as 0); the others are
/// read past without being kept.
struct FirstChoice<'a>(Option<TypedChoice<'a>>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choices<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Choices<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(choice) = seq.next_element::<TypedChoice<'a>>()? {
                    if first.is_none() && choice.index.is_none_or(|i| i == 0) {
                        first = Some(choice);
                    }
                }
                Ok(FirstChoice(first))
            }
        }
        deserializer.deserialize_seq(Choices(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize)]
struct TypedChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<TypedDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct TypedDelta<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

impl StreamAssembler {
    /// Reads one SSE line. Comments, `id:`/`retry:` fields and blank lines are skipped;
    /// `error:` lines (llama.cpp) and `event: error` are errors. Nothing after `data: [DONE]`
    /// belongs to the answer: it is ignored.
    pub fn line(&mut self, line: &str) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if line.is_empty() {
            self.event = None;
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" if self.event.as_deref() == Some("error") => {
                Err(StreamError::Provider(snippet(value)))
            }
            "data" => self.data(value),
            "event" => {
                self.event = Some(value.to_string());
                Ok(())
            }
            "error" => Err(StreamError::Provider(snippet(value))),
            _ => Ok(()),
        }
    }

    /// Content and tool-call deltas seen so far (≈ tokens).
    pub fn deltas(&self) -> u64 {
        self.deltas
    }

    /// Bytes of answer assembled so far (content, tool names and arguments): what the
    /// assembled body will hold, for the response size cap.
    pub fn size(&self) -> usize {
        self.tool_calls.iter().fold(self.content.len(), |n, c| {
            n.saturating_add(c.name.len())
                .saturating_add(c.arguments.len())
        })
    }

    /// Whether `data: [DONE]` was read: the answer is whole, nothing more is read.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the stream said it is complete (`[DONE]` or a `finish_reason`).
    pub fn complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    fn data(&mut self, value: &str) -> Result<(), StreamError> {
        if value.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        self.chunks += 1;
        // Most chunks carry one token: read them without building a JSON tree. A chunk of
        // another shape takes the general path below, which reads anything.
        if let Ok(chunk) = serde_json::from_str::<TypedChunk<'_>>(value) {
            return self.typed(chunk);
        }
        let chunk: Value = serde_json::from_str(value).map_err(|e| StreamError::InvalidChunk {
            chunk: self.chunks,
            message: e.to_string(),
        })?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(StreamError::Provider(snippet(&error.to_string())));
        }
        for key in HEAD_KEYS {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                self.keep_head(key, || Some(v.clone()));
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").is_none_or(|i| i.is_null() || i == 0))
            })
        else {
            return Ok(());
        };
        self.saw_choice = true;
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        match choice.get("delta") {
            Some(delta) => self.delta(delta),
            None => Ok(()),
        }
    }

    /// The fast path of [`StreamAssembler::data`]: the same reading of a chunk of the usual
    /// shape.
    fn typed(&mut self, chunk: TypedChunk<'_>) -> Result<(), StreamError> {
        if let Some(error) = chunk.error {
            let error: Value = serde_json::from_str(error.get()).unwrap_or_default();
            return Err(StreamError::Provider(snippet(&error.to_string())));
        }
        let raw = [
            chunk.id,
            chunk.created,
            chunk.model,
            chunk.system_fingerprint,
        ];
        for (key, v) in HEAD_KEYS.into_iter().zip(raw) {
            // Every chunk repeats these: only the first one's are read (null is absent).
            if let Some(raw) = v.filter(|r| r.get() != "null") {
                self.keep_head(key, || serde_json::from_str(raw.get()).ok());
            }
        }
        if let Some(usage) = chunk
            .usage
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
        {
            if let Value::Object(_) = usage {
                self.usage = Some(usage);
            }
        }
        let Some(FirstChoice(Some(choice))) = chunk.choices else {
            return Ok(());
        };
        self.saw_choice = true;
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason.into_owned());
        }
        let Some(delta) = choice.delta else {
            return Ok(());
        };
        if let Some(role) = delta.role {
            self.role.get_or_insert_with(|| role.into_owned());
        }
        if let Some(text) = delta.content {
            self.saw_content = true;
            if !text.is_empty() {
                self.content.push_str(&text);
                self.deltas += 1;
            }
        }
        if let Some(raw) = delta.tool_calls {
            let calls: Value = serde_json::from_str(raw.get()).unwrap_or_default();
            for call in calls.as_array().into_iter().flatten() {
                self.tool_call(call)?;
            }
        }
        Ok(())
    }

    /// Keeps a head field (`id`, `model`, …) the first time a chunk has it.
    fn keep_head(&mut self, key: &'static str, value: impl FnOnce() -> Option<Value>) {
        if !self.head.iter().any(|(k, _)| *k == key) {
            if let Some(value) = value() {
                self.head.push((key, value));
            }
        }
    }

    fn delta(&mut self, delta: &Value) -> Result<(), StreamError> {
        if let Some(role) = delta.get("role").and_then(Value::as_str) {
            self.role.get_or_insert_with(|| role.to_string());
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.saw_content = true;
            if !text.is_empty() {
                self.content.push_str(text);
                self.deltas += 1;
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(call)?;
        }
        Ok(())
    }

    /// Merges one `delta.tool_calls[]` entry into its slot: id, type and name are set once,
    /// `function.arguments` fragments are concatenated in arrival order.
    fn tool_call(&mut self, call: &Value) -> Result<(), StreamError> {
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(self.tool_calls.len().saturating_sub(1) as u64);
        let slot = usize::try_from(index)
            .ok()
            .filter(|&i| i < MAX_TOOL_CALLS)
            .ok_or(StreamError::TooManyToolCalls(index))?;
        if self.tool_calls.len() <= slot {
            self.tool_calls.resize(slot + 1, ToolCallParts::default());
        }
        let parts = &mut self.tool_calls[slot];
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            parts.id.get_or_insert_with(|| id.to_string());
        }
        if let Some(kind) = call.get("type").and_then(Value::as_str) {
            parts.kind.get_or_insert_with(|| kind.to_string());
        }
        if let Some(function) = call.get("function") {
            if let Some(name) = function.get("name").and_then(Value::as_str) {
                parts.name.push_str(name);
            }
            if let Some(args) = function.get("arguments").and_then(Value::as_str) {
                parts.arguments.push_str(args);
            }
        }
        self.deltas += 1;
        Ok(())
    }

    /// The assembled `chat.completion` body, or [`StreamError::CutOff`] when the stream did
    /// not say it was complete.
    pub fn finish(self) -> Result<Value, StreamError> {
        if !self.complete() {
            return Err(StreamError::CutOff {
                chunks: self.chunks,
            });
        }
        let mut message = Map::new();
        message.insert(
            "role".into(),
            json!(self.role.as_deref().unwrap_or("assistant")),
        );
        let content = if self.content.is_empty() && !self.saw_content {
            Value::Null
        } else {
            Value::String(self.content)
        };
        message.insert("content".into(), content);
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "id": c.id.unwrap_or_else(|| format!("call_{i}")),
                        "type": c.kind.unwrap_or_else(|| "function".into()),
                        "function": {"name": c.name, "arguments": c.arguments}
                    })
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut body: Map<String, Value> = self
            .head
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        body.insert("object".into(), json!("chat.completion"));
        let choices = if self.saw_choice {
            json!([{"index": 0, "message": message, "finish_reason": self.finish_reason}])
        } else {
            json!([])
        };
        body.insert("choices".into(), choices);
        if let Some(usage) = self.usage {
            body.insert("usage".into(), usage);
        }
        Ok(Value::Object(body))
    }
}

fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() <= MAX {
        text.trim().to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(text: &str) -> Result<Value, StreamError> {
        let mut lines = LineSplitter::default();
        let mut a = StreamAssembler::default();
        lines.push(text.as_bytes(), |line| a.line(line))?;
        if let Some(last) = lines.finish() {
            a.line(&last)?;
        }
        a.finish()
    }

    #[test]
    fn content_and_usage_assemble() {
        let body = assemble(concat!(
            "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\r\n\r\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{\\\"a\\\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\":1}\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        ))
        .unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "{\"a\":1}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["completion_tokens"], 2);
        assert_eq!(body["id"], "c1");
        assert_eq!(body["object"], "chat.completion");
    }

    /// Chunks the typed reading refuses (a number where text is expected) take the general
    /// path; unknown fields, another choice listed first and `"index": null` stay on the
    /// typed one. Either way the answer assembles from every chunk, in order.
    #[test]
    fn odd_but_valid_chunks_assemble_like_the_usual_ones() {
        let body = assemble(concat!(
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ab\"}}]}\n\n",
            "data: {\"service_tier\":\"default\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"XX\"}},{\"index\":0,\"delta\":{\"content\":\"cd\"},\"logprobs\":{\"content\":[]}}]}\n\n",
            "data: {\"id\":7,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ef\"},\"finish_reason\":7}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":5,\"content\":\"gh\"}}]}\n\n",
            "data: {\"error\":null,\"usage\":5,\"choices\":[{\"delta\":{\"content\":\"\\u0069\",\"tool_calls\":7}}]}\n\n",
            "data: {\"choices\":[{\"index\":null,\"delta\":{\"content\":\"j\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"usage\":{\"prompt_tokens\":3},\"choices\":[]}\n\n",
            "data: [DONE]\n\n"
        ))
        .unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["message"]["content"], "abcdefghij");
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(
            choice["finish_reason"], "stop",
            "a number is no finish reason"
        );
        assert_eq!(body["id"], "c1", "the first id given is kept");
        assert_eq!(
            body["usage"]["prompt_tokens"], 3,
            "a usage that is no object is none"
        );
    }

    #[test]
    fn tool_call_arguments_concatenate_by_index() {
        let body = assemble(concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\",\"function\":{\"name\":\"list_files\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"x\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        ))
        .unwrap();
        let calls = body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["function"]["arguments"], "{\"path\":\"x\"}");
        assert_eq!(calls[0]["id"], "a");
        assert_eq!(calls[1]["function"]["name"], "list_files");
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    }

    #[test]
    fn hostile_streams_are_errors() {
        let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"hal\"}}]}\n\n";
        assert_eq!(assemble(cut), Err(StreamError::CutOff { chunks: 1 }));
        assert!(matches!(
            assemble("data: {not json\n\n"),
            Err(StreamError::InvalidChunk { chunk: 1, .. })
        ));
        assert!(matches!(
            assemble("data: {\"error\":{\"message\":\"boom\"}}\n\n"),
            Err(StreamError::Provider(m)) if m.contains("boom")
        ));
        assert!(matches!(
            assemble("event: error\ndata: overloaded\n\n"),
            Err(StreamError::Provider(m)) if m == "overloaded"
        ));
        let far = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":4000000000}]}}]}\n";
        assert_eq!(
            assemble(far),
            Err(StreamError::TooManyToolCalls(4_000_000_000))
        );
        let mut lines = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        assert!(lines.push(&long, |_| Ok(())).is_ok());
        assert_eq!(lines.push(&long, |_| Ok(())), Err(StreamError::LineTooLong));
    }

    #[test]
    fn a_stream_without_choices_assembles_to_no_choices() {
        let body =
            assemble("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n")
                .unwrap();
        assert_eq!(body["choices"], json!([]));
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut lines = LineSplitter::default();
        let mut seen = Vec::new();
        let mut collect = |line: &str| {
            seen.push(line.to_string());
            Ok(())
        };
        lines.push(b"data: {\"a\"", &mut collect).unwrap();
        assert!(seen.is_empty());
        lines
            .push(b":1}\r\n\ndata", |line| {
                seen.push(line.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec!["data: {\"a\":1}".to_string(), String::new()]);
        assert_eq!(lines.finish().as_deref(), Some("data"));
    }
}
