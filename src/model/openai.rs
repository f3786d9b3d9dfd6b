//! The live model: an OpenAI-compatible `/v1/chat/completions` endpoint through async-openai
//! (BYOT: raw JSON in and out, so the exact bodies can be recorded and servers that omit
//! fields are tolerated).
//!
//! There is exactly one retry layer, this one. async-openai's default executor retries by
//! itself (and loses the status of a 429 with a text body); we replace it through the
//! `middleware` hook with `StatusAwareService`, a plain reqwest transport that turns every
//! non-2xx response into a typed [`HttpStatusError`] carrying status, `Retry-After` and the
//! start of the body. The retry loop in [`LiveModel::complete`] then decides.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::Client;
use tokio::sync::Semaphore;

use super::settings::ModelSettings;
use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest, ReplySource};

/// How much of an error body is kept in messages.
const ERROR_BODY_SNIPPET: usize = 300;

/// A non-2xx HTTP response, as seen by our transport.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
pub struct HttpStatusError {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the response body (error bodies may be text or JSON).
    pub body: String,
}

/// A reqwest transport for async-openai that reports non-2xx responses as
/// [`HttpStatusError`] (async-openai's own error path loses the status of text-bodied 4xx).
#[derive(Clone, Debug)]
struct StatusAwareService {
    client: reqwest::Client,
}

type HttpFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for StatusAwareService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = HttpFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = client
                .execute(request)
                .await
                .map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.text().await.unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(HttpStatusError {
                status: status.as_u16(),
                retry_after,
                body: snippet(body.trim()),
            })))
        })
    }
}

/// `Retry-After` in (possibly fractional) seconds. The HTTP-date form is not supported and
/// falls back to the computed backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn snippet(text: &str) -> String {
    if text.chars().count() <= ERROR_BODY_SNIPPET {
        text.to_string()
    } else {
        let cut: String = text.chars().take(ERROR_BODY_SNIPPET).collect();
        format!("{cut}…")
    }
}

/// One failed try, classified.
#[derive(Debug)]
struct Failure {
    retryable: bool,
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

fn classify(error: OpenAIError, timeout: Duration) -> Failure {
    let plain = |retryable: bool, message: String| Failure {
        retryable,
        status: None,
        retry_after: None,
        message,
    };
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatusError>() {
            Ok(http) => {
                // A 429 for an exhausted quota will not succeed on retry.
                let quota = http.status == 429 && http.body.contains("insufficient_quota");
                Failure {
                    retryable: !quota && matches!(http.status, 408 | 409 | 429 | 500..=599),
                    status: Some(http.status),
                    retry_after: http.retry_after,
                    message: http.to_string(),
                }
            }
            Err(other) => plain(false, other.to_string()),
        },
        OpenAIError::Reqwest(e) => {
            let message = if e.is_timeout() {
                format!(
                    "no complete response within the timeout of {}",
                    humantime::format_duration(timeout)
                )
            } else if e.is_connect() {
                format!("connection failed: {}", error_chain(&e))
            } else if e.is_body() || e.is_decode() {
                format!("response body cut off: {}", error_chain(&e))
            } else {
                format!("HTTP error: {}", error_chain(&e))
            };
            plain(!e.is_builder(), message)
        }
        // A 2xx whose body is not JSON (a proxy's error page, a truncated body).
        OpenAIError::JSONDeserialize(e, _) => {
            plain(true, format!("response body is not valid JSON: {e}"))
        }
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            Failure {
                retryable: matches!(status, 408 | 409 | 429 | 500..=599),
                status: Some(status),
                retry_after: None,
                message: format!("HTTP {status}: {}", api.api_error.message),
            }
        }
        other => plain(false, other.to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The live client. Cheap to share behind an `Arc`; at most `settings.jobs` requests are
/// in flight at once across all callers.
pub struct LiveModel {
    client: Client<OpenAIConfig>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    retry_after_max: Duration,
}

impl std::fmt::Debug for LiveModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveModel")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl LiveModel {
    /// Builds the client. Opens no connection. Fails with [`ModelError::Config`] on a base
    /// URL that is not http(s) or a key that cannot go into an HTTP header.
    pub fn new(settings: &ModelSettings) -> Result<LiveModel, ModelError> {
        let base = settings.base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ModelError::Config(format!(
                "base URL {base:?} must start with http:// or https:// (e.g. http://127.0.0.1:8437/v1)"
            )));
        }
        let key = settings.api_key.expose();
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
            return Err(ModelError::Config(
                "the API key contains characters that cannot be sent in an HTTP header; check OPENAI_API_KEY".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| ModelError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        // Org and project headers are set empty explicitly: OpenAIConfig would otherwise read
        // them from the environment and panic on a malformed value.
        let config = OpenAIConfig::new()
            .with_api_base(base)
            .with_api_key(key)
            .with_org_id("")
            .with_project_id("");
        let client =
            Client::with_config(config).with_http_service(StatusAwareService { client: http });
        Ok(LiveModel {
            client,
            permits: Arc::new(Semaphore::new(settings.jobs.max(1))),
            timeout: settings.timeout,
            max_retries: settings.max_retries,
            backoff_base: settings.backoff_base,
            backoff_max: settings.backoff_max,
            retry_after_max: settings.retry_after_max,
        })
    }

    /// Delay before retry number `retry` (1-based): the server's `Retry-After` when given
    /// (capped at `retry_after_max`), else `base·2^(retry-1)` capped at `backoff_max`, with
    /// "equal jitter" (between half and all of it) so parallel clients spread out.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.retry_after_max);
        }
        let exp = self
            .backoff_base
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.backoff_max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }

    async fn send_once(&self, body: &serde_json::Value) -> Result<serde_json::Value, OpenAIError> {
        let _permit = self.permits.acquire().await;
        self.client
            .chat()
            .create_byot::<_, serde_json::Value>(body)
            .await
    }

    async fn complete_live(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.send_once(&request.body).await {
                Ok(body) => {
                    let duration_ms = started.elapsed().as_millis() as u64;
                    return Ok(ModelReply::from_body(body, duration_ms, ReplySource::Live));
                }
                Err(error) => {
                    let failure = classify(error, self.timeout);
                    let retries_left = tries <= self.max_retries;
                    if failure.retryable && retries_left {
                        let wait = self.delay(tries, failure.retry_after);
                        tracing::warn!(
                            step = %request.step,
                            attempt = request.attempt,
                            try_ = tries,
                            "model request failed ({}); retrying in {:.1}s",
                            failure.message,
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(ModelError::Provider {
                        step: request.step.clone(),
                        attempts: tries,
                        last: failure.message,
                        status: failure.status,
                    });
                }
            }
        }
    }
}

impl ChatModel for LiveModel {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.complete_live(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        crate::install_crypto_provider();
        let mut s = ModelSettings::new("m", "http://127.0.0.1:9/v1");
        s.backoff_base = Duration::from_millis(100);
        s.backoff_max = Duration::from_millis(1000);
        s.retry_after_max = Duration::from_secs(5);
        let m = LiveModel::new(&s).unwrap();
        for _ in 0..50 {
            let d1 = m.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = m.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(m.delay(40, None) <= Duration::from_millis(1000));
        }
        assert_eq!(
            m.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            m.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn usage_includes_cached_tokens_and_tolerates_missing_fields() {
        let body = serde_json::json!({
            "choices": [{"message": {"content": "x"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                      "prompt_tokens_details": {"cached_tokens": 5}}
        });
        let reply = ModelReply::from_body(body, 3, ReplySource::Live);
        assert_eq!(
            (
                reply.usage.prompt_tokens,
                reply.usage.completion_tokens,
                reply.usage.cached_tokens
            ),
            (7, 2, 5)
        );
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
        let bare = ModelReply::from_body(serde_json::json!({}), 0, ReplySource::Live);
        assert_eq!((bare.content, bare.usage.total()), (None, 0));
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        crate::install_crypto_provider();
        let s = ModelSettings::new("m", "127.0.0.1:8437/v1");
        let err = LiveModel::new(&s).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
