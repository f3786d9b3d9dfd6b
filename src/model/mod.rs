//! The model layer: one trait for "ask the model for step S with request R", and the
//! implementations that compose — live HTTP, replay from a transcript, a recorder around live.
//! It knows nothing of hats: a step is an opaque id like `hat/sre` and a request is JSON.
//!
//! How a run puts it together:
//! ```ignore
//! let body = build_body(&settings, &messages, Some(&schema));      // what `render` prints
//! let model = TranscriptModel::open(mode, Some(&old), Some(&new), &settings, None, scrubber, Handles::default())?;
//! let model: Arc<dyn ChatModel> = match settings.budget {
//!     Some(tokens) => Arc::new(TokenBudget::new(Arc::new(model), tokens)),
//!     None => Arc::new(model),
//! };
//! let outcome = ask_structured(model.as_ref(), "hat/sre", &settings, &messages, &schema).await?;
//! ```
//! - [`LiveModel`] (openai.rs): async-openai, timeouts, the one retry layer, `jobs` in flight.
//! - [`TranscriptModel`] (transcript.rs): replay by step + request hash, VCR record modes,
//!   `exchanges.jsonl` writing ([`Recorder`]) and reading ([`read_exchanges`]).
//! - [`TokenBudget`]: refuses a request before it could exceed the token budget.
//! - [`ask_structured`]: JSON Schema answers with bounded re-asks.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub mod budget;
pub mod openai;
pub mod prices;
pub mod request;
pub mod router;
pub mod settings;
pub mod stream;
pub mod structured;
pub mod transcript;
pub mod window;

pub use budget::TokenBudget;
pub use openai::{LiveModel, SharedTransport};
pub use request::{
    build_body, build_body_with_tools, request_hash, ChatMessage, JsonSchemaSpec, Wire,
};
pub use settings::{ModelSettings, Secret, TokenObserver};
pub use structured::{ask_structured, StructuredOutcome};
pub use transcript::{read_exchanges, Exchange, Handles, RecordMode, Recorder, TranscriptModel};

/// One request to the model: the step it belongs to and the exact
/// `/v1/chat/completions` body that is (or would be) sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRequest {
    /// `hat/pipeline-engineer`, `review/reliability`, `signal`, …
    pub step: String,
    /// 1 for the first ask, 2 for the first re-ask, …
    pub attempt: u32,
    /// Not changed once the request is handed to a model: its [`Wire`] form is kept.
    pub body: serde_json::Value,
    #[serde(skip)]
    wire: std::sync::OnceLock<Wire>,
}

impl ModelRequest {
    pub fn new(step: impl Into<String>, attempt: u32, body: serde_json::Value) -> ModelRequest {
        ModelRequest {
            step: step.into(),
            attempt,
            body,
            wire: std::sync::OnceLock::new(),
        }
    }

    /// The body as sent and recorded, and its hash: written on first use, then shared by the
    /// transcript, the transport and the recorder.
    pub fn wire(&self) -> &Wire {
        self.wire.get_or_init(|| Wire::of(&self.body))
    }
}

impl PartialEq for ModelRequest {
    fn eq(&self, other: &ModelRequest) -> bool {
        (&self.step, self.attempt, &self.body) == (&other.step, other.attempt, &other.body)
    }
}

/// Token usage of one exchange, as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl Usage {
    /// Prompt + completion, saturating (a provider's numbers are outside input).
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Adds `other`, saturating: a sum of usages never wraps (a wrapped total would slip
    /// under the budget).
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
    }

    /// The largest value one usage field of one exchange is taken at. No model has a context
    /// anywhere near this (2^40 ≈ 1.1 trillion tokens); a larger number is a broken or
    /// hostile provider (or a tampered transcript), and is clamped so that plain sums over
    /// many exchanges cannot overflow either. The live client refuses such a response (exit 3)
    /// before it gets here.
    pub const MAX_PER_EXCHANGE: u64 = 1 << 40;

    /// Each field at most [`Usage::MAX_PER_EXCHANGE`] (for usage read back from a
    /// transcript, which may have been edited).
    pub fn clamped(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.min(Usage::MAX_PER_EXCHANGE),
            completion_tokens: self.completion_tokens.min(Usage::MAX_PER_EXCHANGE),
            cached_tokens: self.cached_tokens.min(Usage::MAX_PER_EXCHANGE),
        }
    }

    /// The first usage field above [`Usage::MAX_PER_EXCHANGE`] in a response body, as
    /// (field, value as written), for the live client's error message.
    pub fn implausible(body: &serde_json::Value) -> Option<(&'static str, String)> {
        let usage = body.get("usage")?;
        let fields: [(&'static str, Option<&serde_json::Value>); 3] = [
            ("usage.prompt_tokens", usage.get("prompt_tokens")),
            ("usage.completion_tokens", usage.get("completion_tokens")),
            (
                "usage.prompt_tokens_details.cached_tokens",
                usage
                    .get("prompt_tokens_details")
                    .and_then(|d| d.get("cached_tokens")),
            ),
        ];
        fields.into_iter().find_map(|(name, v)| {
            let v = v?;
            let impossible = match (v.as_u64(), v.as_f64()) {
                (Some(n), _) => n > Usage::MAX_PER_EXCHANGE,
                // A float count (some servers write `12.0`) is fine when it is in range.
                (None, Some(f)) => !(0.0..=Usage::MAX_PER_EXCHANGE as f64).contains(&f),
                // Not a number (null, a string): ignored, counted as 0.
                (None, None) => false,
            };
            impossible.then(|| (name, v.to_string()))
        })
    }

    /// One usage field as a count: a whole number, or a float in range (truncated);
    /// anything else is 0. Clamped at [`Usage::MAX_PER_EXCHANGE`].
    fn count(v: &serde_json::Value) -> u64 {
        match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => n.min(Usage::MAX_PER_EXCHANGE),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => {
                f.min(Usage::MAX_PER_EXCHANGE as f64) as u64
            }
            _ => 0,
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplySource {
    Live,
    Replayed,
}

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReply {
    /// The response body as received.
    pub body: serde_json::Value,
    /// `choices[0].message.content`.
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    /// `choices[0].message.tool_calls` (empty when the model asked for none).
    pub tool_calls: Vec<serde_json::Value>,
    pub usage: Usage,
    /// Wall time of the exchange as it happened (recorded, so replays report the same).
    pub duration_ms: u64,
    /// Where this answer comes from in this invocation.
    pub source: ReplySource,
    /// Where it was first obtained: `Live` when a model answered it in the run that recorded
    /// it (even when that recording is replayed now), `Replayed` when it was carried over from
    /// an older transcript. Reports use this, so a replay reports what the recorded run did.
    pub origin: ReplySource,
    /// The provider streamed it (SSE) and `body` is the assembled answer.
    #[serde(default)]
    pub streamed: bool,
}

impl ModelReply {
    /// Reads `choices[0].message.content`, `choices[0].finish_reason` and `usage` out of a
    /// response body. Missing fields are tolerated (some compatible servers omit them): an
    /// answer without choices has no content, which the structured layer re-asks.
    pub fn from_body(body: serde_json::Value, duration_ms: u64, source: ReplySource) -> ModelReply {
        let choice = body.get("choices").and_then(|c| c.get(0));
        let content = choice
            .and_then(|c| c.get("message"))
            .and_then(|m| m.get("content"))
            .and_then(|c| c.as_str())
            .map(str::to_string);
        let finish_reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(|f| f.as_str())
            .map(str::to_string);
        let tool_calls = choice
            .and_then(|c| c.get("message"))
            .and_then(|m| m.get("tool_calls"))
            .and_then(|t| t.as_array())
            .cloned()
            .unwrap_or_default();
        ModelReply {
            usage: Usage::from_body(&body),
            body,
            content,
            finish_reason,
            tool_calls,
            duration_ms,
            source,
            origin: source,
            streamed: false,
        }
    }
}

impl Usage {
    /// `usage.prompt_tokens`, `usage.completion_tokens` and
    /// `usage.prompt_tokens_details.cached_tokens` of a response body (0 when absent or not a
    /// count, clamped at [`Usage::MAX_PER_EXCHANGE`]).
    pub fn from_body(body: &serde_json::Value) -> Usage {
        let usage = body.get("usage");
        let n = |v: Option<&serde_json::Value>| v.map_or(0, Usage::count);
        Usage {
            prompt_tokens: n(usage.and_then(|u| u.get("prompt_tokens"))),
            completion_tokens: n(usage.and_then(|u| u.get("completion_tokens"))),
            cached_tokens: n(usage
                .and_then(|u| u.get("prompt_tokens_details"))
                .and_then(|d| d.get("cached_tokens"))),
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Anything that can answer a chat-completions request.
pub trait ChatModel: Send + Sync {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>>;

    /// Makes what this model recorded durable (a transcript's fdatasync), so a run can do it
    /// beside writing its reports rather than after. Models that record nothing have nothing
    /// to do.
    fn sync(&self) -> Result<(), ModelError> {
        Ok(())
    }
}

/// Why a provider request failed, as far as the response tells. Each kind has its own
/// message and its own advice (`main`'s hint); only some are worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderErrorKind {
    /// The request (prompt + max_tokens) does not fit the model's context window
    /// (OpenAI `context_length_exceeded`, llama.cpp `exceed_context_size_error`, vLLM's
    /// "maximum context length"). Retrying the same request cannot succeed.
    ContextExceeded,
    /// 401/403, or `invalid_api_key`: the key is missing, wrong or not allowed.
    Auth,
    /// `insufficient_quota` (a 429 that is not a rate limit) or 402: billing, not waiting.
    Quota,
    /// 404 or `model_not_found`: wrong base URL or model name.
    NotFound,
    /// 429: too many requests; retried, honouring `Retry-After`.
    RateLimited,
    /// 5xx (and 409): the provider's trouble; retried.
    Server,
    /// No complete response within the timeout (or a 408); retried.
    Timeout,
    /// The connection could not be made or broke; retried.
    Connection,
    /// Any other 4xx: the provider rejected the request as malformed.
    BadRequest,
    /// A 2xx whose body is not a usable answer (not JSON, cut off, impossible numbers).
    BadResponse,
    /// The response body is larger than the configured cap.
    TooLarge,
    /// The endpoint redirected to another origin: the prompt and key are never sent there.
    Redirected,
}

impl ProviderErrorKind {
    /// Whether the same request can succeed when sent again.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ProviderErrorKind::RateLimited
                | ProviderErrorKind::Server
                | ProviderErrorKind::Timeout
                | ProviderErrorKind::Connection
                | ProviderErrorKind::BadResponse
        )
    }

    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ProviderErrorKind::ContextExceeded => {
                "the request does not fit the model's context window"
            }
            ProviderErrorKind::Auth => "the provider refused the API key",
            ProviderErrorKind::Quota => "the provider account has no quota or credit left",
            ProviderErrorKind::NotFound => "the provider does not know this URL or model",
            ProviderErrorKind::RateLimited => "the provider kept rate-limiting the requests",
            ProviderErrorKind::Server => "the provider had a server error",
            ProviderErrorKind::Timeout => "the provider did not answer in time",
            ProviderErrorKind::Connection => "the provider could not be reached",
            ProviderErrorKind::BadRequest => "the provider rejected the request",
            ProviderErrorKind::BadResponse => "the provider's response is not a usable answer",
            ProviderErrorKind::TooLarge => "the provider's response is larger than allowed",
            ProviderErrorKind::Redirected => {
                "the endpoint redirected to another origin, which hatrack never follows"
            }
        }
    }
}

impl std::fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A model failure that ends the run. Each variant maps to one exit code in `main`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Exit 3: the provider failed (after every retry, when retrying could help).
    #[error("step {step}: {kind} ({attempts} attempt(s)): {last}")]
    Provider {
        step: String,
        /// What kind of failure; decides whether it was retried and what to advise.
        kind: ProviderErrorKind,
        attempts: u32,
        last: String,
        /// The HTTP status of the last try, when there was a response.
        status: Option<u16>,
    },
    /// Exit 4: replay-only and no recorded exchange matches this request.
    #[error("step {step}: no recorded exchange matches this request (record mode `none`)\n{diff}")]
    ReplayMiss { step: String, diff: String },
    /// Exit 5: the next request would exceed the token budget.
    #[error("step {step}: token budget of {budget} would be exceeded ({used} used so far)")]
    BudgetExceeded {
        step: String,
        budget: u64,
        used: u64,
    },
    /// Exit 5: the next request could push the run's spending over `--budget-usd`.
    #[error("step {step}: the next request (about ${estimate_usd:.4}) could exceed the budget of ${budget_usd} (${spent_usd:.4} spent so far)")]
    CostBudgetExceeded {
        step: String,
        budget_usd: f64,
        spent_usd: f64,
        estimate_usd: f64,
    },
    /// Exit 2: the transcript on disk cannot be read or written (the machine's fault).
    #[error("transcript {path}: {message}")]
    Transcript { path: String, message: String },
    /// Exit 2: the transcript was read but its content is not hatrack's: a line that is not
    /// an exchange, not UTF-8, or too long, or a file too large. Kept apart from
    /// [`ModelError::Transcript`] so the advice is to restore the file, not to check the disk.
    #[error("transcript {path}: {message}")]
    TranscriptDamaged { path: String, message: String },
    /// Exit 2: recording an exchange would pass the recorder's own size limits (a line, or
    /// the whole transcript): nothing is wrong with the disk or the file, the run asked and
    /// answered more than one run may record.
    #[error("transcript {path}: {message}")]
    TranscriptFull { path: String, message: String },
    /// Exit 2: bad model configuration (base URL, key, …).
    #[error("model configuration: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_counts_are_tolerant_but_bounded() {
        let body =
            |p: serde_json::Value| json!({"usage": {"prompt_tokens": p, "completion_tokens": 2}});
        assert_eq!(Usage::from_body(&body(json!(12.0))).prompt_tokens, 12);
        assert_eq!(Usage::from_body(&body(json!("12"))).prompt_tokens, 0);
        assert_eq!(Usage::from_body(&body(json!(-3))).prompt_tokens, 0);
        assert_eq!(
            Usage::from_body(&body(json!(u64::MAX))).prompt_tokens,
            Usage::MAX_PER_EXCHANGE
        );
        assert!(Usage::implausible(&body(json!(12.0))).is_none());
        assert!(Usage::implausible(&body(json!(null))).is_none());
        for bad in [json!(-3), json!(1e300), json!(u64::MAX)] {
            assert_eq!(
                Usage::implausible(&body(bad)).map(|(f, _)| f),
                Some("usage.prompt_tokens")
            );
        }
        let mut sum = Usage {
            prompt_tokens: u64::MAX - 1,
            ..Usage::default()
        };
        sum.add(&Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
            cached_tokens: 0,
        });
        assert_eq!(sum.prompt_tokens, u64::MAX);
        assert_eq!(sum.total(), u64::MAX);
    }
}
