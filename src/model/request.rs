//! Building the exact `/v1/chat/completions` body and its hash. `hatrack render` prints what
//! [`build_body`] returns and replay re-renders requests through it, so it must be a pure
//! function of its inputs.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::settings::ModelSettings;

/// One chat message (`system`, `user`, `assistant`, or `tool` with a tool call's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's `tool_calls`, as the provider sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// A `tool` message answers this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn plain(role: &str, content: String) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content,
            tool_calls: None,
            tool_call_id: None,
        }
    }
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain("system", content.into())
    }
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain("user", content.into())
    }
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain("assistant", content.into())
    }
    /// An assistant turn that asked for tool calls.
    pub fn assistant_tool_calls(content: impl Into<String>, calls: Value) -> ChatMessage {
        ChatMessage {
            tool_calls: Some(calls),
            ..ChatMessage::plain("assistant", content.into())
        }
    }
    /// The result of one tool call.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            tool_call_id: Some(call_id.into()),
            ..ChatMessage::plain("tool", content.into())
        }
    }

    /// The message as the request body carries it (plain messages exactly as before tools).
    fn to_json(&self) -> Value {
        match (&self.tool_calls, &self.tool_call_id) {
            (Some(calls), _) => {
                json!({"role": self.role, "content": self.content, "tool_calls": calls})
            }
            (None, Some(id)) => {
                json!({"role": self.role, "tool_call_id": id, "content": self.content})
            }
            (None, None) => json!({"role": self.role, "content": self.content}),
        }
    }
}

/// A named JSON Schema the answer must match (`response_format: json_schema`, strict).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonSchemaSpec {
    /// `^[a-zA-Z0-9_-]{1,64}$` per the OpenAI API.
    pub name: String,
    pub schema: Value,
    /// The compiled validator, once asked for: every sample and re-ask of a step checks its
    /// answer against the same spec (see [`crate::model::structured::validator`]).
    #[serde(skip)]
    compiled: std::sync::OnceLock<std::sync::Arc<jsonschema::Validator>>,
}

impl JsonSchemaSpec {
    pub fn new(name: impl Into<String>, schema: Value) -> JsonSchemaSpec {
        JsonSchemaSpec {
            name: name.into(),
            schema,
            compiled: std::sync::OnceLock::new(),
        }
    }

    /// The validator compiled from this spec, if it was asked for before.
    pub(crate) fn compiled(&self) -> &std::sync::OnceLock<std::sync::Arc<jsonschema::Validator>> {
        &self.compiled
    }
}

impl PartialEq for JsonSchemaSpec {
    fn eq(&self, other: &JsonSchemaSpec) -> bool {
        self.name == other.name && self.schema == other.schema
    }
}

/// The request body for `messages`, with `response_format: json_schema` when `schema` is
/// given. Field order is fixed (serde_json keeps insertion order), so the printed body is
/// stable too.
pub fn build_body(
    settings: &ModelSettings,
    messages: &[ChatMessage],
    schema: Option<&JsonSchemaSpec>,
) -> Value {
    build_body_with_tools(settings, messages, schema, None)
}

/// [`build_body`] with `tools` (function definitions) offered to the model.
pub fn build_body_with_tools(
    settings: &ModelSettings,
    messages: &[ChatMessage],
    schema: Option<&JsonSchemaSpec>,
    tools: Option<&Value>,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(settings.model.clone()));
    body.insert(
        "messages".into(),
        Value::Array(messages.iter().map(ChatMessage::to_json).collect()),
    );
    body.insert("temperature".into(), json!(settings.temperature));
    if let Some(seed) = settings.seed {
        body.insert("seed".into(), json!(seed));
    }
    if let Some(max_tokens) = settings.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if settings.stream {
        // Before `extra_body`, which cannot replace it. `include_usage` makes the last
        // chunk carry the token counts a plain answer would (budgets and reports need them).
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (key, value) in &settings.extra_body {
        if !body.contains_key(key) && key != "response_format" {
            body.insert(key.clone(), value.clone());
        }
    }
    if let Some(tools) = tools {
        body.insert("tools".into(), tools.clone());
    }
    if let Some(spec) = schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {"name": spec.name, "schema": spec.schema, "strict": true}
            }),
        );
    }
    Value::Object(body)
}

/// Top-level request fields that choose how the answer is delivered, not what it is. They
/// are left out of [`request_hash`], so a streamed recording replays for a run with
/// `--no-stream` and the other way round (the transcript stores the assembled answer either
/// way), and transcripts recorded before streaming keep matching.
pub const TRANSPORT_FIELDS: [&str; 2] = ["stream", "stream_options"];

/// sha256 (hex) of the canonical form of `body` without [`TRANSPORT_FIELDS`]: object keys
/// sorted recursively, no whitespace. Two bodies that differ only in key order hash the same.
pub fn request_hash(body: &Value) -> String {
    Wire::write(body).1
}

/// A request body as it goes on the wire: its canonical text (as [`canonical_json`], the
/// transport fields included) and its [`request_hash`], both from one writing of the body.
///
/// Why: a request runs to tens of kilobytes and is hashed, sent and recorded; written once,
/// the text is what is sent and what the transcript keeps, byte for byte.
#[derive(Debug, Clone)]
pub struct Wire {
    pub text: Box<RawValue>,
    pub hash: String,
}

impl Wire {
    pub fn of(body: &Value) -> Wire {
        let (text, hash) = Wire::write(body);
        let text = String::from_utf8(text).unwrap_or_default();
        Wire {
            // Canonical text is JSON (this only re-checks it: a few microseconds).
            text: RawValue::from_string(text).unwrap_or_else(|_| null_text()),
            hash,
        }
    }

    /// The canonical text and the hex sha256 of that text without the top-level
    /// [`TRANSPORT_FIELDS`]. The text is written first and hashed in large pieces, one per
    /// top-level entry: the hash and the text each get their own separators.
    fn write(body: &Value) -> (Vec<u8>, String) {
        let mut text = Vec::with_capacity(16 * 1024);
        let mut hash = Sha256::new();
        // Writing to a Vec cannot fail.
        let Value::Object(map) = body else {
            let _ = write_canonical(body, &mut text);
            hash.update(&text);
            return (text, hex::encode(hash.finalize()));
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        text.push(b'{');
        hash.update(b"{");
        let mut hashed = false;
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            let entry = text.len();
            let _ = write_json_string(key, &mut text);
            text.push(b':');
            let _ = write_canonical(&map[key], &mut text);
            if !TRANSPORT_FIELDS.contains(&key.as_str()) {
                if hashed {
                    hash.update(b",");
                }
                hash.update(&text[entry..]);
                hashed = true;
            }
        }
        text.push(b'}');
        hash.update(b"}");
        (text, hex::encode(hash.finalize()))
    }
}

fn null_text() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).expect("null is JSON")
}

/// The canonical JSON text used by [`request_hash`].
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_canonical(value, &mut out);
    // Only serde_json's string escaping and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value` with object keys sorted recursively and no whitespace.
fn write_canonical(value: &Value, out: &mut impl std::io::Write) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.write_all(b"{")?;
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json_string(key, out)?;
                out.write_all(b":")?;
                write_canonical(&map[key], out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        Value::String(s) => write_json_string(s, out),
        // Numbers, booleans and null as serde_json writes them.
        scalar => serde_json::to_writer(out, scalar).map_err(std::io::Error::from),
    }
}

/// A string as JSON text, escaped as serde_json escapes it, written in place (a request's
/// messages are tens of kilobytes: no copy of them is made to hash them).
fn write_json_string(s: &str, out: &mut impl std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer(out, s).map_err(std::io::Error::from)
}

/// The messages of a request body, as text (for the budget estimate and diffs).
pub(crate) fn messages_text_len(body: &Value) -> usize {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|c| c.chars().count())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_field_in_order() {
        let mut s = ModelSettings::new("m", "http://x/v1");
        s.max_tokens = Some(100);
        s.stream = false;
        let spec = JsonSchemaSpec::new("answer", json!({"type": "object"}));
        let body = build_body(&s, &[ChatMessage::user("hi")], Some(&spec));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.0,"seed":42,"max_tokens":100,"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object"},"strict":true}}}"#
        );
    }

    #[test]
    fn hash_ignores_key_order_but_not_content() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        let c = json!({"a": {"x": "t", "y": [1, 2]}, "b": 1});
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(request_hash(&a).len(), 64);
    }

    #[test]
    fn streamed_body_asks_for_usage_and_hashes_as_plain() {
        let mut s = ModelSettings::new("m", "http://x/v1");
        s.extra_body.insert("stream".into(), json!(false));
        let streamed = build_body(&s, &[ChatMessage::user("hi")], None);
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"]["include_usage"], true);
        s.stream = false;
        s.extra_body.clear();
        let plain = build_body(&s, &[ChatMessage::user("hi")], None);
        assert!(plain.get("stream").is_none());
        assert_eq!(request_hash(&streamed), request_hash(&plain));
    }

    /// Recorded transcripts are looked up by this hash: it stays the sha256 of the canonical
    /// text (transport fields left out), whatever the way it is computed.
    #[test]
    fn hash_is_the_sha256_of_the_canonical_text() {
        let body = json!({"stream": true, "model": "m", "n": [1.5, null, false],
            "messages": [{"role": "user", "content": "é \"q\" \n\u{1}"}]});
        let mut plain = body.clone();
        plain.as_object_mut().unwrap().remove("stream");
        let text = canonical_json(&plain);
        assert_eq!(
            text,
            r#"{"messages":[{"content":"é \"q\" \n\u0001","role":"user"}],"model":"m","n":[1.5,null,false]}"#
        );
        assert_eq!(request_hash(&body), hex::encode(Sha256::digest(text)));
    }

    /// What is sent and recorded is the canonical text with the transport fields; its hash is
    /// the request hash, wherever those fields sort (first, between, last, alone).
    #[test]
    fn the_wire_text_is_the_whole_body_and_its_hash_the_request_hash() {
        for body in [
            json!({"stream": true, "stream_options": {"include_usage": true}, "model": "m"}),
            json!({"a": 1, "stream": true, "z": [2, {"y": 1, "x": 0}]}),
            json!({"messages": [], "stream_options": {}}),
            json!({"stream": false}),
            json!({}),
        ] {
            let wire = Wire::of(&body);
            assert_eq!(wire.text.get(), canonical_json(&body));
            assert_eq!(wire.hash, request_hash(&body));
            let mut plain = body.clone();
            for field in TRANSPORT_FIELDS {
                plain.as_object_mut().unwrap().remove(field);
            }
            assert_eq!(
                wire.hash,
                hex::encode(Sha256::digest(canonical_json(&plain))),
                "{body}"
            );
        }
    }
}
