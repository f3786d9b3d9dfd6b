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

/// HTTP clients (with their open connections) by what they are built from, shared by the
/// clients a run builds for its endpoints (see [`ModelSettings::connections`]).
#[derive(Clone)]
pub struct Connections {
    pub(super) clients: std::sync::Arc<crate::memo::Memo<reqwest::Client>>,
}

impl Default for Connections {
    fn default() -> Connections {
        Connections {
            clients: std::sync::Arc::new(crate::memo::Memo::new(4)),
        }
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connections")
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
    /// The environment variable the key is read from, named when it is missing.
    #[serde(skip)]
    pub api_key_env: String,
    /// Requests may go without a key to a server that is not on this machine
    /// (`HATRACK_ALLOW_NO_API_KEY=1`: a private server that needs none). A server on this
    /// machine (localhost, 127.0.0.1, ::1) never needs one.
    #[serde(skip)]
    pub allow_no_key: bool,
    /// 0 by default: runs should be repeatable.
    pub temperature: f64,
    /// Fixed by default for the same reason (sent as `seed`; not every server honours it).
    pub seed: Option<i64>,
    pub max_tokens: Option<u32>,
    /// Further body fields sent as they are (`frequency_penalty`, `top_p`, a server's own
    /// sampling knobs). They cannot replace the fields above, the messages or the schema.
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// Per HTTP request, the overall cap including a streamed body (each retry gets the full
    /// timeout again).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Streaming (`"stream": true`): the longest silence between two chunks of a response
    /// before the request counts as stalled (a retryable timeout). Counted from the first
    /// chunk of the body on: the wait for it is prompt processing, which a slow local model
    /// needs minutes for on a long prompt, and stays under `timeout` only.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// Ask for a streamed response (`"stream": true` and `stream_options.include_usage`).
    /// Off (`[model] stream = false`, `--no-stream`) for providers that mishandle it; a
    /// provider that ignores it and answers plain JSON works either way.
    pub stream: bool,
    /// Told how many tokens (content and tool-call deltas) of a streamed answer arrived so
    /// far, with the request's opaque step id; for progress displays. Not recorded.
    #[serde(skip)]
    pub on_tokens: Option<TokenObserver>,
    /// HTTP clients (and their open connections) shared by everything of one run that
    /// talks to the endpoint: the context-window probe's connection then serves the first
    /// request (`None`: each client its own). Not recorded.
    #[serde(skip)]
    pub connections: Option<Connections>,
    /// HTTP retries after the first try, on 429, 5xx, connection errors and timeouts.
    pub max_retries: u32,
    /// Structured-output re-asks after the first answer.
    pub max_reasks: u32,
    /// Requests in flight at most.
    pub jobs: usize,
    /// Token budget for the whole run (prompt + completion), if any.
    pub budget: Option<u64>,
    /// Spending cap for the whole run in USD, if any (priced with the `--prices` table the
    /// transcript model is opened with: a runtime handle, not configuration).
    pub budget_usd: Option<f64>,
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
    /// Bytes of one response body read at most; a longer answer fails the request (exit 3)
    /// instead of filling memory and being quoted back in re-asks.
    pub max_response_bytes: usize,
    /// The model's context window in tokens (`[model] context_tokens`, what the server said,
    /// or what run.json recorded); `None`: [`super::window::DEFAULT_CONTEXT_TOKENS`]. Every
    /// request is sized to fit it ([`super::window::fit`]).
    pub context_tokens: Option<u64>,
}

pub const DEFAULT_SEED: i64 = 42;

/// The variable the producing key is read from unless a policy names another.
pub const DEFAULT_KEY_ENV: &str = "OPENAI_API_KEY";

/// Set to `1` (or `true`): requests may go without a key to a server elsewhere.
pub const ALLOW_NO_KEY_ENV: &str = "HATRACK_ALLOW_NO_API_KEY";

/// Whether `base_url` is a server on this machine (`localhost`, `*.localhost`, 127.0.0.0/8,
/// `::1`): a local model that needs no key.
pub fn is_loopback(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url.trim()) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A streamed answer may pause this long between chunks (a CPU-bound local model emits
/// several tokens a second; a minute of silence is a stall, not slowness).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

/// A progress hook: `(step id, tokens of the answer in flight so far)`. Called for each
/// chunk of a streamed answer, so it must be cheap. Opaque to the model layer.
#[derive(Clone)]
pub struct TokenObserver(std::sync::Arc<TokenFn>);

/// The function behind a [`TokenObserver`].
pub type TokenFn = dyn Fn(&str, u64) + Send + Sync;

impl TokenObserver {
    pub fn new(f: impl Fn(&str, u64) + Send + Sync + 'static) -> TokenObserver {
        TokenObserver(std::sync::Arc::new(f))
    }

    pub fn notify(&self, step: &str, tokens: u64) {
        (self.0)(step, tokens)
    }
}

impl fmt::Debug for TokenObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenObserver")
    }
}

/// 8 MiB: far more than any chat answer (a 128k-token completion is ~0.5 MB of JSON).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            model: "gpt-4o-mini".to_string(),
            base_url: "https://api.openai.com/v1".to_string(),
            api_key: Secret::default(),
            api_key_env: DEFAULT_KEY_ENV.to_string(),
            allow_no_key: false,
            temperature: 0.0,
            seed: Some(DEFAULT_SEED),
            max_tokens: None,
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            stream: true,
            on_tokens: None,
            connections: None,
            max_retries: 4,
            max_reasks: 2,
            jobs: 2,
            budget: None,
            budget_usd: None,
            extra_body: serde_json::Map::new(),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            context_tokens: None,
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

/// The range every number that shapes a run must be in, whatever its source (a flag,
/// `hatrack.toml`, a recorded `run.json`). One table, so the flag, the file and the record
/// cannot disagree; each is checked where it is read, with a message naming it.
pub mod bounds {
    use std::ops::RangeInclusive;

    /// `--samples`: asks per judging step.
    pub const SAMPLES: RangeInclusive<u64> = 1..=32;
    /// `--jobs`: requests in flight.
    pub const JOBS: RangeInclusive<u64> = 1..=64;
    /// `--max-reasks`: re-asks after an invalid answer.
    pub const MAX_REASKS: RangeInclusive<u64> = 0..=10;
    /// `--max-retries`: HTTP retries of one request.
    pub const MAX_RETRIES: RangeInclusive<u64> = 0..=20;
    /// `--timeout`: seconds per request (an hour at most).
    pub const TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
    /// `--idle-timeout`: seconds of silence allowed inside a streamed response.
    pub const IDLE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
    /// `--budget`: tokens for the whole run (a trillion at most).
    pub const BUDGET: RangeInclusive<u64> = 1..=1_000_000_000_000;
    /// `max_tokens` of each request.
    pub const MAX_TOKENS: RangeInclusive<u64> = 1..=1_048_576;
    /// `[model] context_tokens`: 256 tokens to 16 million.
    pub const CONTEXT_TOKENS: RangeInclusive<u64> = 256..=16 * 1024 * 1024;
    /// `[model] max_response_bytes`: 1 KiB to 256 MiB.
    pub const MAX_RESPONSE_BYTES: RangeInclusive<u64> = 1024..=256 * 1024 * 1024;
    /// `[limits]` byte caps of what is quoted into one prompt: 1 byte to 64 MiB.
    pub const LIMIT_BYTES: RangeInclusive<u64> = 1..=64 * 1024 * 1024;
    /// `[agent] max_turns`: model turns of one step (tool turns, the answer, its re-asks).
    pub const MAX_TURNS: RangeInclusive<u64> = 1..=64;
    /// `temperature` (the OpenAI range).
    pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=2.0;

    /// `Ok(value)` when it is in `range`, else a message naming `what` and the range.
    pub fn check<T>(what: &str, value: T, range: &RangeInclusive<u64>) -> Result<T, String>
    where
        T: TryInto<u64> + Copy + std::fmt::Display,
    {
        match value.try_into() {
            Ok(v) if range.contains(&v) => Ok(value),
            _ => Err(format!(
                "{what} = {value} is out of range: it must be between {} and {}",
                range.start(),
                range.end()
            )),
        }
    }

    /// The same for a float: finite and in `range`.
    pub fn check_f64(what: &str, value: f64, range: &RangeInclusive<f64>) -> Result<f64, String> {
        if value.is_finite() && range.contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{what} = {value} is out of range: it must be between {} and {}",
                range.start(),
                range.end()
            ))
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
