//! The model layer: one trait for "ask the model for step S with request R", and the
//! implementations that compose — live HTTP, replay from a transcript, a recorder around live.
//! It knows nothing of hats: a step is an opaque id like `hat/sre` and a request is JSON.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

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
    pub source: ReplySource,
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
    /// Exit 2: the transcript on disk cannot be read or written.
    #[error("transcript {path}: {message}")]
    Transcript { path: String, message: String },
    /// Exit 2: bad model configuration (base URL, key, …).
    #[error("model configuration: {0}")]
    Config(String),
}
