//! The model settings the run layer hands to the model layer. Resolution from flags, env and
//! `hatrack.toml` happens in the config layer; this is only the resolved result.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// An API key. Its `Debug` and `Serialize` never show the value, so settings can be logged
/// and written to `run.json` safely.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Trims the value: a trailing newline (common when a key is read from a file) would
    /// otherwise make async-openai panic while building the Authorization header.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into().trim().to_string())
    }

    /// The value, for the Authorization header and for the scrubber. Nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Everything the model layer needs to talk to one OpenAI-compatible endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSettings {
    /// The `model` field of every request.
    pub model: String,
    /// Including `/v1`, e.g. `http://127.0.0.1:8437/v1` (a trailing slash is removed).
    pub base_url: String,
    #[serde(skip)]
    pub api_key: Secret,
    /// 0 by default: runs should be repeatable.
    pub temperature: f64,
    /// Fixed by default for the same reason (sent as `seed`; not every server honours it).
    pub seed: Option<i64>,
    pub max_tokens: Option<u32>,
    /// Further body fields sent as they are (`frequency_penalty`, `top_p`, a server's own
    /// sampling knobs). They cannot replace the fields above, the messages or the schema.
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// Per HTTP request (each retry gets the full timeout again).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// HTTP retries after the first try, on 429, 5xx, connection errors and timeouts.
    pub max_retries: u32,
    /// Structured-output re-asks after the first answer.
    pub max_reasks: u32,
    /// Requests in flight at most.
    pub jobs: usize,
    /// Token budget for the whole run (prompt + completion), if any.
    pub budget: Option<u64>,
    /// Spending cap for the whole run in USD, if any (priced with `prices`).
    pub budget_usd: Option<f64>,
    /// The price table (`--prices FILE`), for `budget_usd`.
    #[serde(skip)]
    pub prices: Option<std::sync::Arc<super::prices::Prices>>,
    /// First retry delay; doubles each retry (with jitter). Small in tests.
    #[serde(with = "humantime_serde_compat")]
    pub backoff_base: Duration,
    /// Upper bound of the computed backoff.
    #[serde(with = "humantime_serde_compat")]
    pub backoff_max: Duration,
    /// Upper bound of a server's `Retry-After`: a provider asking for an hour gets this
    /// long, and the run fails (exit 3) after `max_retries` instead of hanging.
    #[serde(with = "humantime_serde_compat")]
    pub retry_after_max: Duration,
}

pub const DEFAULT_SEED: i64 = 42;

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            model: "gpt-4o-mini".to_string(),
            base_url: "https://api.openai.com/v1".to_string(),
            api_key: Secret::default(),
            temperature: 0.0,
            seed: Some(DEFAULT_SEED),
            max_tokens: None,
            timeout: Duration::from_secs(120),
            max_retries: 4,
            max_reasks: 2,
            jobs: 2,
            budget: None,
            budget_usd: None,
            prices: None,
            extra_body: serde_json::Map::new(),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
        }
    }
}

impl ModelSettings {
    /// Settings for `model` at `base_url` with every other field at its default.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>) -> ModelSettings {
        ModelSettings {
            model: model.into(),
            base_url: base_url.into(),
            ..ModelSettings::default()
        }
    }
}

/// Durations serialize as humantime strings ("2m", "500ms") in `run.json`.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_trimmed_and_hidden() {
        let s = ModelSettings {
            api_key: Secret::new("sk-secret-value\n"),
            ..ModelSettings::default()
        };
        assert_eq!(s.api_key.expose(), "sk-secret-value");
        let shown = format!("{s:?}");
        assert!(!shown.contains("sk-secret-value"), "{shown}");
        assert!(shown.contains("***"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("sk-secret"), "{json}");
        assert!(json.contains("\"timeout\":\"2m\""), "{json}");
    }
}
