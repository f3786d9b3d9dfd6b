//! The optional token budget: refuse a request *before* it is sent when it could push the
//! run over budget, so the run stops with exit 5 instead of overspending.
//!
//! The estimate of a request is `prompt characters / 4` (a common rule of thumb for English
//! and code with GPT-style tokenizers) plus its `max_tokens`, or [`DEFAULT_COMPLETION_ESTIMATE`]
//! when `max_tokens` is unset. Actual usage (as reported, or as recorded for replayed
//! exchanges) replaces the estimate once the reply arrives. Estimates of requests in flight
//! are reserved, so parallel requests cannot overshoot together.

use std::sync::{Arc, Mutex};

use super::request::messages_text_len;
use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest};

/// Completion tokens assumed for a request without `max_tokens`.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 1024;

/// A [`ChatModel`] that refuses requests once the budget could be exceeded.
pub struct TokenBudget {
    inner: Arc<dyn ChatModel>,
    budget: u64,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    used: u64,
    reserved: u64,
}

impl std::fmt::Debug for TokenBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBudget")
            .field("budget", &self.budget)
            .field("used", &self.used())
            .finish()
    }
}

impl TokenBudget {
    pub fn new(inner: Arc<dyn ChatModel>, budget: u64) -> TokenBudget {
        TokenBudget {
            inner,
            budget,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// Tokens used so far (prompt + completion).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// The estimate for `body` described in the module docs.
    pub fn estimate(body: &serde_json::Value) -> u64 {
        let prompt = (messages_text_len(body) as u64).div_ceil(4);
        let completion = body
            .get("max_tokens")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(DEFAULT_COMPLETION_ESTIMATE);
        prompt.saturating_add(completion)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn complete_inner(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
        let estimate = TokenBudget::estimate(&request.body);
        {
            let mut state = self.lock();
            // Saturating: a provider reporting absurd usage must stop the run, not wrap the
            // total back under the budget.
            if state
                .used
                .saturating_add(state.reserved)
                .saturating_add(estimate)
                > self.budget
            {
                return Err(ModelError::BudgetExceeded {
                    step: request.step.clone(),
                    budget: self.budget,
                    used: state.used,
                });
            }
            state.reserved = state.reserved.saturating_add(estimate);
        }
        let result = self.inner.complete(request).await;
        let mut state = self.lock();
        state.reserved = state.reserved.saturating_sub(estimate);
        if let Ok(reply) = &result {
            state.used = state.used.saturating_add(reply.usage.total());
        }
        result
    }
}

impl ChatModel for TokenBudget {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.complete_inner(request))
    }
}
