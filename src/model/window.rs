//! Every request fits the model's context window: the window's size, an estimate of what a
//! request needs, and cutting what a step may lose (re-ask notes, re-sent tool output) until
//! it fits.
//!
//! **The window** is `[model] context_tokens` when set; else what the server says, asked
//! once by a new run while its stage loads, before it records its run.json ([`probe`],
//! both asked together:
//! llama.cpp's `GET /props` `default_generation_settings.n_ctx`, else `GET /v1/models`
//! metadata: llama.cpp's `meta.n_ctx`, vLLM's `max_model_len`, `context_length` / `context_window` elsewhere);
//! else [`DEFAULT_CONTEXT_TOKENS`]. run.json records the size used, so a replay never asks a
//! server; a run recorded before sizes were recorded replays with no window at all, as it
//! was recorded.
//!
//! **The estimate** ([`estimate_prompt`]) counts one token per [`BYTES_PER_TOKEN`] bytes of
//! every message's text (and of tool calls and tool definitions, which providers put into
//! the prompt), plus [`PER_MESSAGE_TOKENS`] per message and [`PER_REQUEST_TOKENS`] per
//! request for the chat template. Three bytes a token over-counts English and code (3.2–4
//! bytes a token were measured with SmolLM2's and GPT tokenizers on the example stage) and
//! is about right for text outside ASCII. A request fits when its estimate plus its answer
//! (`max_tokens`, else [`DEFAULT_ANSWER_TOKENS`]) stays within the window less a
//! [`MARGIN_PERCENT`] safety margin. The answer schema (`response_format`) is not counted:
//! servers turn it into a grammar, not prompt tokens.
//!
//! **Cutting** ([`fit`]): only what a step adds to its conversation after its prompt — the
//! re-ask notes (the rejected answer's excerpt and why it was rejected) and tool results —
//! oldest first, each keeping its start and end around hatrack's note
//! ([`crate::verdict::markers::cut_to_fit`]). The prompt itself (system message, inputs,
//! artifacts) is never cut here: `[limits]` sizes it, and grounding checks quotes against it.
//! A request that does not fit even then is not sent ([`Overflow`]).

use std::time::Duration;

use serde_json::Value;

use super::request::ChatMessage;
use super::settings::ModelSettings;
use super::{ModelError, ProviderErrorKind};
use crate::verdict::markers;

/// The window assumed when neither `[model] context_tokens` nor the server says: the
/// smallest of the common hosted models' windows (set `[model] context_tokens` for yours).
pub const DEFAULT_CONTEXT_TOKENS: u64 = 32_768;
/// Bytes of text counted as one token.
pub const BYTES_PER_TOKEN: u64 = 3;
/// Tokens counted per message for its role and the chat template's separators.
pub const PER_MESSAGE_TOKENS: u64 = 4;
/// Tokens counted once per request (the template's opening and the answer's priming).
pub const PER_REQUEST_TOKENS: u64 = 16;
/// Share of the window kept free for the estimate's error.
pub const MARGIN_PERCENT: u64 = 5;
/// Answer tokens reserved for a request without `max_tokens`.
pub const DEFAULT_ANSWER_TOKENS: u64 = 1024;
/// Bytes a cut message keeps at least (its start and end, around the note).
const MIN_KEPT_BYTES: usize = 96;
/// How long the server may take to say its window.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from the server's `/props` or `/v1/models`.
const MAX_PROBE_BYTES: usize = 1 << 20;

/// The window a request is sized for: `settings.context_tokens`, else the default.
pub fn window_of(settings: &ModelSettings) -> u64 {
    settings.context_tokens.unwrap_or(DEFAULT_CONTEXT_TOKENS)
}

/// The tokens a window holds for prompt and answer, the safety margin taken off.
pub fn usable(window: u64) -> u64 {
    window.saturating_sub(window / 100 * MARGIN_PERCENT)
}

/// The estimated prompt tokens of a request body (see the module docs).
pub fn estimate_prompt(body: &Value) -> u64 {
    let bytes = |v: &Value| -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Null => 0,
            other => other.to_string().len() as u64,
        }
    };
    let messages = body.get("messages").and_then(Value::as_array);
    let mut text = 0u64;
    for m in messages.into_iter().flatten() {
        text = text
            .saturating_add(m.get("content").map_or(0, bytes))
            .saturating_add(m.get("tool_calls").map_or(0, bytes));
    }
    text = text.saturating_add(body.get("tools").map_or(0, bytes));
    let count = messages.map_or(0, Vec::len) as u64;
    text.div_ceil(BYTES_PER_TOKEN)
        .saturating_add(count.saturating_mul(PER_MESSAGE_TOKENS))
        .saturating_add(PER_REQUEST_TOKENS)
}

/// Prompt estimate plus the answer reserved (`max_tokens`, else the default).
pub fn estimate_needed(body: &Value) -> u64 {
    let answer = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_ANSWER_TOKENS);
    estimate_prompt(body).saturating_add(answer)
}

/// A request that cannot fit: what it needs (estimated) and what the window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub needed: u64,
    pub window: u64,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "context exceeded: the request needs about {} tokens (estimated, its answer included) but the model's context window is {} tokens ({}% kept as a safety margin); it was not sent",
            self.needed, self.window, MARGIN_PERCENT
        )
    }
}

/// The step-ending sentence for a provider that refused a request as longer than its
/// context window (HTTP 400 `context_length_exceeded`, llama.cpp's
/// `exceed_context_size_error`, …); `None` for any other failure.
pub fn refused_as_too_long(error: &ModelError) -> Option<String> {
    match error {
        ModelError::Provider {
            kind: ProviderErrorKind::ContextExceeded,
            last,
            ..
        } => Some(format!(
            "context exceeded: the provider refused the request as longer than the model's context window ({last})"
        )),
        _ => None,
    }
}

/// Builds the body of `messages` with `build`, cutting the messages from `keep` on (what a
/// step added after its prompt) until the body fits `window`. Returns the body to send, or
/// why none fits. Deterministic, so a replay rebuilds the same bodies.
pub fn fit(
    messages: &mut [ChatMessage],
    keep: usize,
    window: u64,
    build: impl Fn(&[ChatMessage]) -> Value,
) -> Result<Value, Overflow> {
    let room = usable(window);
    let keep = keep.min(messages.len());
    let mut body = build(messages);
    for _ in 0..4 {
        let needed = estimate_needed(&body);
        if needed <= room {
            return Ok(body);
        }
        let over = needed.saturating_sub(room);
        let bytes = usize::try_from(over.saturating_mul(BYTES_PER_TOKEN)).unwrap_or(usize::MAX);
        if !cut_oldest(&mut messages[keep..], bytes) {
            break;
        }
        body = build(messages);
    }
    let needed = estimate_needed(&body);
    if needed <= room {
        return Ok(body);
    }
    Err(Overflow { needed, window })
}

/// Takes about `bytes` out of `messages`, oldest first, each keeping its start and end;
/// false when nothing could be cut.
fn cut_oldest(messages: &mut [ChatMessage], mut bytes: usize) -> bool {
    let mut cut_any = false;
    for m in messages.iter_mut() {
        if bytes == 0 {
            break;
        }
        let len = m.content.len();
        if len <= MIN_KEPT_BYTES {
            continue;
        }
        // The note is added inside, so ask for a little more than the excess.
        let keep = len
            .saturating_sub(bytes.saturating_add(64))
            .max(MIN_KEPT_BYTES);
        let cut = cut_to(&m.content, keep);
        if cut.len() < len {
            bytes = bytes.saturating_sub(len - cut.len());
            m.content = cut;
            cut_any = true;
        }
    }
    cut_any
}

/// `text` kept to about `keep` bytes: its start (three quarters) and end around the note
/// saying how much was left out (cut at character boundaries).
pub fn cut_to(text: &str, keep: usize) -> String {
    if text.len() <= keep {
        return text.to_string();
    }
    let mut head = keep * 3 / 4;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (keep - keep * 3 / 4);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    let tail = tail.max(head);
    format!(
        "{}\n{}\n{}",
        &text[..head],
        markers::cut_to_fit(tail - head),
        &text[tail..]
    )
}

/// What the server says its context window is, or `None` when it does not say (or cannot be
/// asked within a few seconds). Asked only by a run that calls the model.
pub async fn probe(settings: &ModelSettings) -> Option<u64> {
    let base = settings.base_url.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return None;
    }
    // The run's own client when it shares one: the connection opened here then serves the
    // run's first request.
    let client = match super::openai::shared_http_client(settings) {
        Some(client) => client,
        None => {
            let mut builder =
                reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            if base.starts_with("http://") {
                // No TLS is used: the system's root certificates are not loaded.
                builder = builder.tls_certs_only(std::iter::empty());
            }
            builder.build().ok()?
        }
    };
    let get = |url: String| {
        let mut request = client.get(url).timeout(PROBE_TIMEOUT.min(settings.timeout));
        let key = settings.api_key.expose();
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        async move {
            let mut response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.ok()? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_PROBE_BYTES {
                    return None;
                }
            }
            serde_json::from_slice::<Value>(&bytes).ok()
        }
    };
    let root = base.strip_suffix("/v1").unwrap_or(base);
    // Asked together: most providers have no /props, and answer /models in the same round
    // trip instead of one more. /props (llama.cpp's running context) wins when it says.
    let (props, models) =
        futures::future::join(get(format!("{root}/props")), get(format!("{base}/models"))).await;
    props
        .and_then(|p| from_props(&p))
        .or_else(|| models.and_then(|m| from_models(&m, &settings.model)))
}

/// llama.cpp's `/props`: `default_generation_settings.n_ctx` (older servers: `n_ctx`).
pub fn from_props(props: &Value) -> Option<u64> {
    props
        .get("default_generation_settings")
        .and_then(|d| d.get("n_ctx"))
        .or_else(|| props.get("n_ctx"))
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
}

/// `/v1/models`: the entry named `model` (or the only one), and its window under the names
/// servers use: `meta.n_ctx` (llama.cpp), `max_model_len` (vLLM), `context_length`,
/// `context_window`.
pub fn from_models(models: &Value, model: &str) -> Option<u64> {
    let data = models.get("data").and_then(Value::as_array)?;
    let entry = data
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
        .or_else(|| (data.len() == 1).then(|| &data[0]))?;
    [
        entry.get("meta").and_then(|m| m.get("n_ctx")),
        entry.get("max_model_len"),
        entry.get("context_length"),
        entry.get("context_window"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_u64)
    .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(messages: &[ChatMessage], max_tokens: u64) -> Value {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        json!({"messages": msgs, "max_tokens": max_tokens})
    }

    #[test]
    fn the_estimate_counts_bytes_messages_and_the_answer() {
        let b = body(&[ChatMessage::user("x".repeat(300))], 50);
        assert_eq!(
            estimate_prompt(&b),
            100 + PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS
        );
        assert_eq!(estimate_needed(&b), estimate_prompt(&b) + 50);
        assert_eq!(usable(8192), 8192 - 81 * 5);
    }

    #[test]
    fn fitting_cuts_only_what_follows_the_prompt_oldest_first_with_a_note() {
        let mut messages = vec![
            ChatMessage::system("s"),
            ChatMessage::user("p".repeat(900)),
            ChatMessage::assistant("a".repeat(3000)),
            ChatMessage::user("why ".repeat(100)),
        ];
        let built = fit(&mut messages, 2, 1000, |m| body(m, 200)).unwrap();
        assert!(estimate_needed(&built) <= usable(1000));
        assert_eq!(
            messages[1].content,
            "p".repeat(900),
            "the prompt is never cut"
        );
        assert!(markers::contains_mark(&messages[2].content));
        assert!(messages[2].content.len() < 3000);
        // A prompt that alone is too large: nothing is sent.
        let mut big = vec![ChatMessage::user("p".repeat(30_000))];
        let err = fit(&mut big, 1, 1000, |m| body(m, 200)).unwrap_err();
        assert_eq!(err.window, 1000);
        assert!(err.to_string().contains("context exceeded"), "{err}");
    }

    #[test]
    fn servers_say_their_window_in_their_own_words() {
        let props = json!({"default_generation_settings": {"n_ctx": 8192}});
        assert_eq!(from_props(&props), Some(8192));
        let llama = json!({"data": [{"id": "-", "meta": {"n_ctx": 4096}}]});
        assert_eq!(from_models(&llama, "smollm2"), Some(4096));
        let vllm = json!({"data": [{"id": "a", "max_model_len": 2048}, {"id": "b", "max_model_len": 1024}]});
        assert_eq!(from_models(&vllm, "b"), Some(1024));
        assert_eq!(from_models(&vllm, "c"), None, "two models, neither named");
        let openai = json!({"data": [{"id": "gpt-4o-mini", "object": "model"}]});
        assert_eq!(from_models(&openai, "gpt-4o-mini"), None);
    }
}
