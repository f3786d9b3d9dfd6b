//! The model layer: one trait for "ask the model for step S with request R", and the
//! implementations that compose — live HTTP, replay from a transcript, a recorder around live.
//! It knows nothing of hats: a step is an opaque id like `hat/sre` and a request is JSON.
//!
//! How a run puts it together:
//! ```ignore
//! let body = build_body(&settings, &messages, Some(&schema));      // what `render` prints
//! let model = TranscriptModel::open(mode, Some(&old), Some(&new), &settings, None, scrubber)?;
//! let model: Arc<dyn ChatModel> = match settings.budget {
//!     Some(tokens) => Arc::new(Budget::new(Arc::new(model), tokens)),
//!     None => Arc::new(model),
//! };
//! let outcome = ask_structured(model.as_ref(), "hat/sre", &settings, &messages, &schema).await?;
//! ```
//! - [`LiveModel`] (openai.rs): async-openai, timeouts, the one retry layer, `jobs` in flight.
//! - [`TranscriptModel`] (transcript.rs): replay by step + request hash, VCR record modes,
//!   `exchanges.jsonl` writing ([`Recorder`]) and reading ([`read_exchanges`]).
//! - [`Budget`]: refuses a request before it could exceed the token budget.
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
pub mod structured;
pub mod transcript;

pub use budget::Budget;
pub use openai::LiveModel;
pub use request::{build_body, request_hash, ChatMessage, JsonSchemaSpec};
pub use settings::{ModelSettings, Secret};
pub use structured::{ask_structured, StructuredOutcome};
pub use transcript::{read_exchanges, Exchange, RecordMode, Recorder, TranscriptModel};

/// One request to the model: the step it belongs to and the exact
/// `/v1/chat/completions` body that is (or would be) sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// `hat/pipeline-engineer`, `review/reliability`, `signal`, …
    pub step: String,
    /// 1 for the first ask, 2 for the first re-ask, …
    pub attempt: u32,
    pub body: serde_json::Value,
}

/// Token usage of one exchange, as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
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
    pub usage: Usage,
    /// Wall time of the exchange as it happened (recorded, so replays report the same).
    pub duration_ms: u64,
    /// Where this answer comes from in this invocation.
    pub source: ReplySource,
    /// Where it was first obtained: `Live` when a model answered it in the run that recorded
    /// it (even when that recording is replayed now), `Replayed` when it was carried over from
    /// an older transcript. Reports use this, so a replay reports what the recorded run did.
    pub origin: ReplySource,
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
        ModelReply {
            usage: Usage::from_body(&body),
            body,
            content,
            finish_reason,
            duration_ms,
            source,
            origin: source,
        }
    }
}

impl Usage {
    /// `usage.prompt_tokens`, `usage.completion_tokens` and
    /// `usage.prompt_tokens_details.cached_tokens` of a response body (0 when absent).
    pub fn from_body(body: &serde_json::Value) -> Usage {
        let usage = body.get("usage");
        let n = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_u64()).unwrap_or(0);
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
}

/// A model failure that ends the run. Each variant maps to one exit code in `main`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Exit 3: the provider failed after every retry.
    #[error("step {step}: the model provider failed after {attempts} attempt(s): {last}")]
    Provider {
        step: String,
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
    /// Exit 2: the transcript on disk cannot be read or written.
    #[error("transcript {path}: {message}")]
    Transcript { path: String, message: String },
    /// Exit 2: bad model configuration (base URL, key, …).
    #[error("model configuration: {0}")]
    Config(String),
}
