//! The live model: an OpenAI-compatible `/v1/chat/completions` endpoint through async-openai
//! (BYOT: raw JSON in and out, so the exact bodies can be recorded and servers that omit
//! fields are tolerated).
//!
//! There is exactly one retry layer, this one. async-openai's default executor retries by
//! itself (and loses the status of a 429 with a text body); we replace it through the
//! `middleware` hook with `StatusAwareService`, a plain reqwest transport that turns every
//! non-2xx response into a typed [`HttpStatusError`] carrying status, `Retry-After` and the
//! start of the body, and reads every body incrementally under a size cap
//! (`max_response_bytes`). [`classify_status`] names what went wrong
//! ([`ProviderErrorKind`]: context exceeded, auth, quota, not found, rate limit, server, …)
//! from the status and the error shapes of OpenAI, llama.cpp and vLLM; the retry loop in
//! [`LiveModel::complete`] retries only the kinds that can succeed when sent again.
//!
//! The reqwest client loads the system's root certificates only for an `https` base URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::Client;
use tokio::sync::Semaphore;

use super::settings::{Connections, ModelSettings, TokenObserver};
use super::stream::{LineSplitter, StreamAssembler, StreamError};
use super::{
    BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest, ProviderErrorKind, ReplySource,
    Usage,
};
use crate::memo::Memo;

/// How much of an error body is kept in messages.
const ERROR_BODY_SNIPPET: usize = 300;

/// How much of a non-2xx body is read at most (an error page has no reason to be larger).
const ERROR_BODY_READ_MAX: usize = 64 * 1024;

/// A non-2xx HTTP response, as seen by our transport.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
pub struct HttpStatusError {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the response body (error bodies may be text or JSON).
    pub body: String,
}

/// A 2xx response whose body is larger than the cap: reading stopped there.
#[derive(Debug, thiserror::Error)]
#[error(
    "the response body is larger than the cap of {cap} bytes{}; reading stopped there (raise [model] max_response_bytes in hatrack.toml if such answers are expected)",
    declared.map(|d| format!(" (Content-Length: {d})")).unwrap_or_default()
)]
pub struct BodyTooLarge {
    pub cap: usize,
    pub declared: Option<u64>,
}

/// A streamed response that could not become an answer.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    /// No chunk for `idle` after the body had started: the model stalled.
    #[error("the streamed response stalled: no chunk for {} (the idle timeout) after {tokens} token(s); raise --idle-timeout / [model] idle_timeout if the model is just slow", humantime::format_duration(*idle))]
    Stalled { idle: Duration, tokens: u64 },
    /// The stream's content is not a complete answer.
    #[error("{0}")]
    Broken(#[from] StreamError),
}

/// What the transport needs to know of the request in flight, beyond its HTTP form: the
/// opaque step id for the token hook. Passed as a task-local because async-openai's request
/// factory carries only HTTP.
#[derive(Debug)]
struct CallContext {
    step: String,
    /// A streamed answer, assembled. It is handed back here rather than as the body
    /// async-openai reads (that would write it out only to parse it again); async-openai is
    /// then given `{}`.
    streamed: std::sync::Mutex<Option<serde_json::Value>>,
}

impl CallContext {
    fn take_streamed(&self) -> Option<serde_json::Value> {
        self.streamed.lock().ok().and_then(|mut slot| slot.take())
    }
}

tokio::task_local! {
    static CALL: Arc<CallContext>;
}

/// A reqwest transport for async-openai that reports non-2xx responses as
/// [`HttpStatusError`] (async-openai's own error path loses the status of text-bodied 4xx)
/// and reads every body incrementally, stopping past `max_body` bytes ([`BodyTooLarge`]).
#[derive(Clone, Debug)]
struct StatusAwareService {
    client: reqwest::Client,
    max_body: usize,
    retry_after_max: Duration,
    /// The longest silence between chunks of a streamed (SSE) body.
    idle_timeout: Duration,
    on_tokens: Option<TokenObserver>,
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
        let max_body = self.max_body;
        let retry_after_max = self.retry_after_max;
        let stream = StreamReader {
            max_body,
            idle: self.idle_timeout,
            on_tokens: self.on_tokens.clone(),
        };
        // Read here, in the caller's task: a task-local does not follow into a spawned task.
        let context = CALL.try_with(Arc::clone).ok();
        Box::pin(on_own_task(async move {
            let mut request = factory.build().await?;
            // No key (a local model): no Authorization header, rather than an empty one.
            let auth = reqwest::header::AUTHORIZATION;
            if request
                .headers()
                .get(&auth)
                .is_some_and(|v| v.as_bytes().trim_ascii() == b"Bearer")
            {
                request.headers_mut().remove(&auth);
            }
            let mut response = client
                .execute(request)
                .await
                .map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, retry_after_max));
                // An error body is only quoted: read its start, whatever its size.
                let (bytes, _) = read_capped(&mut response, ERROR_BODY_READ_MAX)
                    .await
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&bytes);
                return Err(OpenAIError::Boxed(Box::new(HttpStatusError {
                    status: status.as_u16(),
                    retry_after,
                    body: snippet(body.trim()),
                })));
            }
            if is_event_stream(&response) {
                let step = context.as_ref().map_or("", |c| c.step.as_str());
                let body = stream.read(&mut response, step).await?;
                let bytes = match context.as_ref().map(|c| c.streamed.lock()) {
                    Some(Ok(mut slot)) => {
                        *slot = Some(body);
                        b"{}".to_vec()
                    }
                    _ => serde_json::to_vec(&body).unwrap_or_default(),
                };
                return Ok(with_body(response, bytes));
            }
            let declared = response.content_length();
            if declared.is_some_and(|d| d > max_body as u64) {
                return Err(OpenAIError::Boxed(Box::new(BodyTooLarge {
                    cap: max_body,
                    declared,
                })));
            }
            let (bytes, complete) = read_capped(&mut response, max_body)
                .await
                .map_err(OpenAIError::Reqwest)?;
            if !complete {
                return Err(OpenAIError::Boxed(Box::new(BodyTooLarge {
                    cap: max_body,
                    declared,
                })));
            }
            Ok(with_body(response, bytes))
        }))
    }
}

/// Runs one HTTP exchange as a task of its own and waits for it; dropping the wait (a
/// cancelled run) aborts the exchange.
///
/// Why: hyper hands a body to its reader one chunk at a time from the connection's task,
/// and a streamed answer is hundreds of chunks. Read from the run's top-level future, every
/// chunk would make the scheduler poll the I/O driver (a system call) before handing the
/// chunk over; between two tasks, the hand-over is a queue push.
async fn on_own_task<T: Send + 'static>(
    exchange: impl Future<Output = Result<T, OpenAIError>> + Send + 'static,
) -> Result<T, OpenAIError> {
    use tracing::Instrument;
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(exchange.in_current_span()));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(OpenAIError::InvalidArgument(format!(
            "the HTTP exchange was cancelled: {e}"
        ))),
    }
}

/// The same response (status, headers) with the body already read, for async-openai.
fn with_body(response: reqwest::Response, bytes: Vec<u8>) -> reqwest::Response {
    let http: http::Response<reqwest::Body> = response.into();
    let (parts, _) = http.into_parts();
    reqwest::Response::from(http::Response::from_parts(parts, bytes))
}

/// `Content-Type: text/event-stream`: the provider streams. Anything else (a provider that
/// ignores `"stream": true` and answers `application/json`) is read as one body.
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// A streamed body is much larger on the wire than the answer it carries (OpenAI repeats
/// ~150 bytes of chunk envelope around each token). Only the assembled answer is kept, so
/// the cap applies to it; the wire bytes, which are read and dropped, get this many times the
/// cap, so an endless stream of empty chunks still ends.
const WIRE_FACTOR: usize = 64;

/// Reads an SSE body into one `chat.completion` body, chunk by chunk.
#[derive(Clone)]
struct StreamReader {
    max_body: usize,
    idle: Duration,
    on_tokens: Option<TokenObserver>,
}

impl StreamReader {
    /// Reads until the body ends. The idle timeout runs from the first chunk on (the wait
    /// for it is prompt processing, bounded by the overall timeout of the reqwest client).
    /// The assembled answer stays under `max_body` bytes (what is kept and recorded); the
    /// bytes on the wire, which are not kept, under [`WIRE_FACTOR`] times that.
    async fn read(
        &self,
        response: &mut reqwest::Response,
        step: &str,
    ) -> Result<serde_json::Value, OpenAIError> {
        let mut lines = LineSplitter::default();
        let mut answer = StreamAssembler::default();
        let mut read = 0usize;
        let mut idle: Option<IdleTimer> = None;
        loop {
            let next = match &mut idle {
                Some(timer) => timer.within(response.chunk()).await.ok_or_else(|| {
                    boxed(StreamFailure::Stalled {
                        idle: self.idle,
                        tokens: answer.deltas(),
                    })
                })?,
                None => response.chunk().await,
            };
            let Some(chunk) = next.map_err(OpenAIError::Reqwest)? else {
                break;
            };
            match &mut idle {
                Some(timer) => timer.touch(),
                None => idle = Some(IdleTimer::new(self.idle)),
            }
            read = read.saturating_add(chunk.len());
            let before = answer.deltas();
            lines
                .push(&chunk, |line| answer.line(line))
                .map_err(broken)?;
            if answer.size() > self.max_body || read > self.max_body.saturating_mul(WIRE_FACTOR) {
                return Err(boxed(BodyTooLarge {
                    cap: self.max_body,
                    declared: None,
                }));
            }
            if let (Some(hook), true) = (&self.on_tokens, answer.deltas() != before) {
                hook.notify(step, answer.deltas());
            }
            // `[DONE]` ends the answer: what a server sends after it is not read.
            if answer.done() {
                break;
            }
        }
        if let Some(last) = lines.finish() {
            answer.line(&last).map_err(broken)?;
        }
        answer.finish().map_err(broken)
    }
}

/// The idle timeout between a stream's chunks, armed once: a chunk only notes its time, and
/// when the timer fires it is moved to the last chunk's time plus `idle`. (A timeout per
/// chunk would arm and disarm a timer hundreds of times per answer.)
struct IdleTimer {
    idle: Duration,
    last: tokio::time::Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    fn new(idle: Duration) -> IdleTimer {
        let now = tokio::time::Instant::now();
        IdleTimer {
            idle,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// A chunk came now.
    fn touch(&mut self) {
        self.last = tokio::time::Instant::now();
    }

    /// `next`'s output, or `None` once nothing has come for `idle` since the last chunk.
    async fn within<T>(&mut self, next: impl Future<Output = T>) -> Option<T> {
        let mut next = std::pin::pin!(next);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(value) = next.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(value));
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                let due = self.last + self.idle;
                if tokio::time::Instant::now() >= due {
                    return std::task::Poll::Ready(None);
                }
                self.sleep.as_mut().reset(due);
            }
            std::task::Poll::Pending
        })
        .await
    }
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> OpenAIError {
    OpenAIError::Boxed(Box::new(e))
}

fn broken(e: StreamError) -> OpenAIError {
    boxed(StreamFailure::Broken(e))
}

/// Reads a body chunk by chunk, keeping at most `cap` bytes. Returns the bytes and whether
/// the body ended within the cap (false: it is longer, and reading stopped).
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let expected = response.content_length().unwrap_or(0).min(cap as u64);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(cap));
    while let Some(chunk) = response.chunk().await? {
        if bytes.len().saturating_add(chunk.len()) > cap {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

/// `Retry-After` in (possibly fractional) seconds or as an HTTP date (RFC 9110
/// IMF-fixdate, `Wed, 21 Oct 2015 07:28:00 GMT`), at most `max`: a huge or infinite value
/// (`1e20`, `inf`) is the cap, never a panic; a date already past is no wait. Negative, NaN
/// and unreadable values are ignored (the computed backoff applies).
pub fn parse_retry_after(value: &str, max: Duration) -> Option<Duration> {
    parse_retry_after_at(value, max, std::time::SystemTime::now())
}

/// [`parse_retry_after`] with the current time given.
pub fn parse_retry_after_at(
    value: &str,
    max: Duration,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let Ok(secs) = value.trim().parse::<f64>() else {
        let at = http_date(value.trim())?;
        let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
        return Some(wait.min(max));
    };
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    if secs >= max.as_secs_f64() {
        return Some(max);
    }
    Duration::try_from_secs_f64(secs).ok().map(|d| d.min(max))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to
/// use, as a time; anything else is `None`.
fn http_date(text: &str) -> Option<std::time::SystemTime> {
    let (_, rest) = text.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    let valid = (1..=31).contains(&day) && (0..24).contains(h) && (0..60).contains(m);
    if !valid || !(0..61).contains(sec) || !(1970..=9999).contains(&year) {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// At most [`ERROR_BODY_SNIPPET`] characters of `text`, with `…` when cut.
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
    kind: ProviderErrorKind,
    retryable: bool,
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

/// What an HTTP status and error body say went wrong. Recognises the shapes OpenAI
/// (`{"error":{"code":"context_length_exceeded"|"insufficient_quota"|"model_not_found"|
/// "invalid_api_key"}}`), llama.cpp (`{"error":{"type":"exceed_context_size_error"}}`),
/// vLLM ("This model's maximum context length is …") and Ollama use; the status decides
/// the rest.
pub fn classify_status(status: u16, body: &str) -> ProviderErrorKind {
    let text = body.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if (400..500).contains(&status)
        && has(&[
            "context_length_exceeded",
            "exceed_context_size",
            "context_window_exceeded",
            "maximum context length",
            "context length",
            "context window",
            "context size",
            "too many tokens",
        ])
    {
        return ProviderErrorKind::ContextExceeded;
    }
    if status == 402 || has(&["insufficient_quota", "billing_hard_limit", "quota exceeded"]) {
        return ProviderErrorKind::Quota;
    }
    match status {
        401 | 403 => ProviderErrorKind::Auth,
        404 => ProviderErrorKind::NotFound,
        408 => ProviderErrorKind::Timeout,
        429 => ProviderErrorKind::RateLimited,
        409 | 500..=599 => ProviderErrorKind::Server,
        _ if has(&["invalid_api_key", "incorrect api key", "authentication"]) => {
            ProviderErrorKind::Auth
        }
        _ if has(&["model_not_found", "does not exist", "not found"]) => {
            ProviderErrorKind::NotFound
        }
        400..=499 => ProviderErrorKind::BadRequest,
        // 1xx/3xx that reached us as a failure.
        _ => ProviderErrorKind::BadResponse,
    }
}

fn classify(error: OpenAIError, timeout: Duration) -> Failure {
    match error {
        OpenAIError::Boxed(boxed) => classify_boxed(boxed),
        OpenAIError::Reqwest(e) => classify_transport(&e, timeout),
        // A 2xx whose body is not JSON (a proxy's error page, a truncated body).
        OpenAIError::JSONDeserialize(e, _) => Failure::plain(
            ProviderErrorKind::BadResponse,
            format!("response body is not valid JSON: {e}"),
        ),
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = format!("HTTP {status}: {}", api.api_error.message);
            let kind = classify_status(status, &message);
            Failure {
                status: Some(status),
                ..Failure::plain(kind, snippet(&message))
            }
        }
        other => Failure::plain(ProviderErrorKind::BadRequest, other.to_string()),
    }
}

impl Failure {
    /// A failure without an HTTP status, retried when its kind is.
    fn plain(kind: ProviderErrorKind, message: String) -> Failure {
        Failure {
            kind,
            retryable: kind.retryable(),
            status: None,
            retry_after: None,
            message,
        }
    }

    /// The step's error once this failure ends its tries (not retryable, or none left).
    fn into_error(self, step: &str, attempts: u32) -> ModelError {
        ModelError::Provider {
            step: step.to_string(),
            kind: self.kind,
            attempts,
            last: self.message,
            status: self.status,
        }
    }
}

/// The errors our own transport boxes: an HTTP error status (with its body and
/// `Retry-After`), a failed stream, a body over the cap; anything else is a bad response.
fn classify_boxed(boxed: Box<dyn std::error::Error + Send + Sync>) -> Failure {
    let boxed = match boxed.downcast::<HttpStatusError>() {
        Ok(http) => {
            let kind = classify_status(http.status, &http.body);
            return Failure {
                kind,
                retryable: kind.retryable(),
                status: Some(http.status),
                retry_after: http.retry_after,
                message: http.to_string(),
            };
        }
        Err(other) => other,
    };
    let boxed = match boxed.downcast::<StreamFailure>() {
        Ok(stream) => return classify_stream(*stream),
        Err(other) => other,
    };
    match boxed.downcast::<BodyTooLarge>() {
        Ok(big) => Failure::plain(ProviderErrorKind::TooLarge, big.to_string()),
        Err(other) => Failure::plain(ProviderErrorKind::BadResponse, other.to_string()),
    }
}

/// A request that got no usable response: timed out, not connected, redirected, its body
/// cut off. A request that could not even be built is never retried.
fn classify_transport(e: &reqwest::Error, timeout: Duration) -> Failure {
    let (kind, message) = if e.is_timeout() {
        (
            ProviderErrorKind::Timeout,
            format!(
                "no complete response within the timeout of {}",
                humantime::format_duration(timeout)
            ),
        )
    } else if e.is_connect() {
        (
            ProviderErrorKind::Connection,
            format!("connection failed: {}", error_chain(e)),
        )
    } else if e.is_redirect() {
        (
            ProviderErrorKind::Redirected,
            format!("redirect refused: {}", error_chain(e)),
        )
    } else if e.is_body() || e.is_decode() {
        (
            ProviderErrorKind::BadResponse,
            format!("response body cut off: {}", error_chain(e)),
        )
    } else {
        (
            ProviderErrorKind::Connection,
            format!("HTTP error: {}", error_chain(e)),
        )
    };
    Failure {
        retryable: kind.retryable() && !e.is_builder(),
        ..Failure::plain(kind, message)
    }
}

/// A stall is a timeout (retried, exit 3 after the retries, like a request timeout); an
/// `error` event is what its text says (context, quota, auth) or else a server error; a
/// broken or cut-off stream is a bad response (retried, like a cut-off body); an overlong
/// line is a body over the cap.
fn classify_stream(failure: StreamFailure) -> Failure {
    let kind = match &failure {
        StreamFailure::Stalled { .. } => ProviderErrorKind::Timeout,
        StreamFailure::Broken(StreamError::Provider(text)) => match classify_status(400, text) {
            kind @ (ProviderErrorKind::ContextExceeded
            | ProviderErrorKind::Quota
            | ProviderErrorKind::Auth) => kind,
            _ => ProviderErrorKind::Server,
        },
        StreamFailure::Broken(StreamError::LineTooLong) => ProviderErrorKind::TooLarge,
        StreamFailure::Broken(_) => ProviderErrorKind::BadResponse,
    };
    Failure {
        kind,
        retryable: kind.retryable(),
        status: None,
        retry_after: None,
        message: failure.to_string(),
    }
}

/// A 2xx body that is not an answer: an `error` object instead of `choices` (some
/// compatible servers do that), or a usage count no exchange can have.
fn check_body(body: &serde_json::Value) -> Option<Failure> {
    if body.get("choices").is_none() {
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            let text = error.to_string();
            let kind = match classify_status(400, &text) {
                ProviderErrorKind::BadRequest => ProviderErrorKind::BadResponse,
                kind => kind,
            };
            return Some(Failure {
                kind,
                retryable: false,
                status: None,
                retry_after: None,
                message: format!(
                    "HTTP 200 with an error instead of an answer: {}",
                    snippet(&text)
                ),
            });
        }
    }
    let (field, value) = Usage::implausible(body)?;
    Some(Failure {
        kind: ProviderErrorKind::BadResponse,
        retryable: false,
        status: None,
        retry_after: None,
        message: format!(
            "the response reports {field} = {}, which no single exchange can use (at most {}); its numbers cannot be trusted",
            snippet(&value),
            Usage::MAX_PER_EXCHANGE
        ),
    })
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

/// What the clients of several runs (a batch) share: one limit on requests in flight, and
/// the HTTP clients with their connection pools, so a connection opened for one run's
/// request serves the next run's instead of each run opening its own (and, with https,
/// loading the system's root certificates again).
#[derive(Clone)]
pub struct SharedTransport {
    permits: Arc<Semaphore>,
    /// One client per kind (plain http or https) and timeout: a run whose hatrack.toml sets
    /// another timeout gets a client of its own, so sharing never changes a run's settings.
    http: Arc<Memo<reqwest::Client>>,
}

impl SharedTransport {
    /// `jobs`: the requests in flight allowed across every client built from it.
    pub fn new(jobs: usize) -> SharedTransport {
        SharedTransport {
            permits: Arc::new(Semaphore::new(jobs.max(1))),
            http: Arc::new(Memo::new(16)),
        }
    }
}

impl Connections {
    /// The client for `base` with these settings: built the first time, shared after.
    fn client(&self, base: &str, settings: &ModelSettings) -> Result<reqwest::Client, ModelError> {
        self.clients
            .get_or_try(&http_client_key(base, settings), || {
                http_client(base, settings)
            })
    }
}

/// The HTTP client a run's other requests to `settings`' endpoint (the context-window
/// probe) share with its model client; `None` when the settings share none or the endpoint
/// would be refused (the probe then builds its own).
pub fn shared_http_client(settings: &ModelSettings) -> Option<reqwest::Client> {
    let connections = settings.connections.as_ref()?;
    let base = checked_base(settings).ok()?;
    connections.client(&base, settings).ok()
}

/// The base URL without trailing slashes, checked: http(s), and a key that can go into an
/// HTTP header.
fn checked_base(settings: &ModelSettings) -> Result<String, ModelError> {
    let base = settings.base_url.trim().trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ModelError::Config(format!(
            "base URL {base:?} must start with http:// or https:// (e.g. http://127.0.0.1:8437/v1)"
        )));
    }
    let key = settings.api_key.expose();
    if key.is_empty() && !settings.allow_no_key && !super::settings::is_loopback(&base) {
        return Err(ModelError::Config(format!(
            "{var} is not set (or empty), so requests to {base} would go without an API key; set {var}, or, for a server that needs no key, set {allow}=1 (a model on this machine — localhost, 127.0.0.1, ::1 — needs neither)",
            var = settings.api_key_env,
            allow = super::settings::ALLOW_NO_KEY_ENV,
        )));
    }
    if key.contains(['"', '\\']) {
        return Err(ModelError::Config(format!(
            "the API key in {} contains a quote or a backslash, which no provider's keys do and which could survive scrubbing in escaped JSON; check the variable",
            settings.api_key_env
        )));
    }
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
        return Err(ModelError::Config(format!(
            "the API key contains characters that cannot be sent in an HTTP header; check {}",
            settings.api_key_env
        )));
    }
    Ok(base)
}

/// Everything [`http_client`] reads: clients with the same key are interchangeable.
fn http_client_key(base: &str, settings: &ModelSettings) -> String {
    format!("{}|{:?}", base.starts_with("http://"), settings.timeout)
}

/// The HTTP client for `base`: the settings' timeout, and no built-in retries (we own them).
fn http_client(base: &str, settings: &ModelSettings) -> Result<reqwest::Client, ModelError> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
        .redirect(same_origin_redirects());
    if base.starts_with("http://") {
        // Plain HTTP (a local model, a proxy on localhost): no TLS is ever used, so the
        // system's root certificates are not loaded (~11 ms per run). Redirects to https
        // would fail the TLS handshake instead of silently going elsewhere.
        builder = builder.tls_certs_only(std::iter::empty());
    }
    builder
        .build()
        .map_err(|e| ModelError::Config(format!("HTTP client: {}", error_chain(&e))))
}

/// Redirects are followed only within the origin (scheme, host, port) the request went to:
/// a 307/308 re-sends the prompt's body, and a key meant for one endpoint must never reach
/// another. A cross-origin redirect is a provider error saying where it pointed. Also the
/// OpenTelemetry exporter's policy (its headers may carry a collector's key).
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = |u: &reqwest::Url| u.origin().ascii_serialization();
        let first = attempt.previous().first().map(origin);
        let next = origin(attempt.url());
        if first.as_deref() != Some(next.as_str()) {
            let to = next.clone();
            attempt.error(format!(
                "the endpoint redirected to another origin ({to}); hatrack does not follow it"
            ))
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    })
}

impl std::fmt::Debug for SharedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTransport")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl LiveModel {
    /// Builds the client. Opens no connection. Fails with [`ModelError::Config`] on a base
    /// URL that is not http(s) or a key that cannot go into an HTTP header.
    pub fn new(settings: &ModelSettings) -> Result<LiveModel, ModelError> {
        let base = checked_base(settings)?;
        let http = match &settings.connections {
            Some(connections) => connections.client(&base, settings)?,
            None => http_client(&base, settings)?,
        };
        let permits = Arc::new(Semaphore::new(settings.jobs.max(1)));
        Ok(LiveModel::with_http(settings, base, http, permits))
    }

    /// Like [`LiveModel::new`], with the requests-in-flight limit and the HTTP connections
    /// shared with other clients (the runs of a batch share one `--jobs`).
    pub fn shared(
        settings: &ModelSettings,
        shared: &SharedTransport,
    ) -> Result<LiveModel, ModelError> {
        let base = checked_base(settings)?;
        let http = shared
            .http
            .get_or_try(&http_client_key(&base, settings), || {
                http_client(&base, settings)
            })?;
        Ok(LiveModel::with_http(
            settings,
            base,
            http,
            shared.permits.clone(),
        ))
    }

    fn with_http(
        settings: &ModelSettings,
        base: String,
        http: reqwest::Client,
        permits: Arc<Semaphore>,
    ) -> LiveModel {
        // Org and project headers are set empty explicitly: OpenAIConfig would otherwise read
        // them from the environment and panic on a malformed value.
        let config = OpenAIConfig::new()
            .with_api_base(base)
            .with_api_key(settings.api_key.expose())
            .with_org_id("")
            .with_project_id("");
        // `Client::build` with our client: `Client::with_config` would build a default reqwest
        // client of its own, loading the system's root certificates even for http.
        let client = Client::build(http.clone(), config).with_http_service(StatusAwareService {
            client: http,
            max_body: settings.max_response_bytes,
            retry_after_max: settings.retry_after_max,
            idle_timeout: settings.idle_timeout,
            on_tokens: settings.on_tokens.clone(),
        });
        LiveModel {
            client,
            permits,
            timeout: settings.timeout,
            max_retries: settings.max_retries,
            backoff_base: settings.backoff_base,
            backoff_max: settings.backoff_max,
            retry_after_max: settings.retry_after_max,
        }
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

    /// One HTTP exchange; `context` tells the transport the step and learns whether the
    /// answer came streamed.
    async fn send_once(
        &self,
        request: &ModelRequest,
        context: Arc<CallContext>,
    ) -> Result<serde_json::Value, OpenAIError> {
        let _permit = self.permits.acquire().await;
        // The body's wire text, written once for the hash, this send and the transcript.
        let body: &serde_json::value::RawValue = &request.wire().text;
        CALL.scope(
            context,
            self.client.chat().create_byot::<_, serde_json::Value>(body),
        )
        .await
    }

    async fn complete_live(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries = tries.saturating_add(1);
            let context = Arc::new(CallContext {
                step: request.step.clone(),
                streamed: std::sync::Mutex::new(None),
            });
            match self.send_once(request, context.clone()).await {
                Ok(body) => {
                    let streamed = context.take_streamed();
                    let was_streamed = streamed.is_some();
                    let body = streamed.unwrap_or(body);
                    if let Some(failure) = check_body(&body) {
                        return Err(failure.into_error(&request.step, tries));
                    }
                    let duration_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let mut reply = ModelReply::from_body(body, duration_ms, ReplySource::Live);
                    reply.streamed = was_streamed;
                    return Ok(reply);
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
                    return Err(failure.into_error(&request.step, tries));
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

    #[tokio::test(flavor = "current_thread")]
    async fn an_exchange_given_up_on_stops_its_task() {
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let exchange = on_own_task(async move {
            let _alive = alive;
            std::future::pending::<Result<(), OpenAIError>>().await
        });
        // The caller gives up (a cancelled run): the exchange's task must not go on.
        let waited = tokio::time::timeout(Duration::from_millis(20), exchange).await;
        assert!(waited.is_err());
        let stopped = tokio::time::timeout(Duration::from_secs(10), gone).await;
        assert!(stopped.is_ok(), "the exchange's task still runs");
    }

    #[test]
    fn retry_after_parses_seconds() {
        let max = Duration::from_secs(60);
        assert_eq!(parse_retry_after("2", max), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.5 ", max),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after("soon", max), None);
        assert_eq!(parse_retry_after("-1", max), None);
        assert_eq!(parse_retry_after("NaN", max), None);
        for huge in ["1e20", "inf", "+Infinity", "18446744073709551616", "1e308"] {
            assert_eq!(parse_retry_after(huge, max), Some(max), "{huge}");
        }
    }

    #[test]
    fn retry_after_reads_an_http_date() {
        let max = Duration::from_secs(60);
        // 2015-10-21T07:28:00Z is 1445412480 seconds after the epoch.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 7);
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            parse_retry_after_at(date, max, now),
            Some(Duration::from_secs(7))
        );
        // Past: no wait. Far future: the cap.
        let later = now + Duration::from_secs(3600);
        assert_eq!(parse_retry_after_at(date, max, later), Some(Duration::ZERO));
        let early = now - Duration::from_secs(86_400);
        assert_eq!(parse_retry_after_at(date, max, early), Some(max));
        // A leap-year date and the end of a year.
        assert_eq!(
            http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        assert_eq!(
            http_date("Fri, 31 Dec 1999 23:59:59 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(946_684_799))
        );
        for bad in [
            "Wed, 21 Oct 2015 07:28:00 PST",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "21 Oct 2015",
        ] {
            assert_eq!(parse_retry_after_at(bad, max, now), None, "{bad}");
        }
    }

    #[test]
    fn provider_errors_are_classified_from_status_and_body() {
        use ProviderErrorKind::*;
        let cases = [
            (
                400,
                r#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 8192 tokens"}}"#,
                ContextExceeded,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"the request exceeds the available context size (8244 tokens > 8192)","type":"exceed_context_size_error"}}"#,
                ContextExceeded,
            ),
            (
                400,
                r#"{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 2100 tokens","type":"BadRequestError"}"#,
                ContextExceeded,
            ),
            (
                401,
                r#"{"error":{"code":"invalid_api_key","message":"Incorrect API key provided"}}"#,
                Auth,
            ),
            (403, "forbidden", Auth),
            (
                429,
                r#"{"error":{"code":"insufficient_quota","type":"insufficient_quota"}}"#,
                Quota,
            ),
            (429, "Too Many Requests", RateLimited),
            (
                404,
                r#"{"error":{"code":"model_not_found","message":"The model `x` does not exist"}}"#,
                NotFound,
            ),
            (404, "", NotFound),
            (400, r#"{"error":{"code":"model_not_found"}}"#, NotFound),
            (500, "oops", Server),
            (503, "", Server),
            (408, "", Timeout),
            (422, r#"{"error":"invalid temperature"}"#, BadRequest),
        ];
        for (status, body, kind) in cases {
            assert_eq!(classify_status(status, body), kind, "{status} {body}");
        }
        assert!(!ContextExceeded.retryable() && !Auth.retryable() && !Quota.retryable());
        assert!(RateLimited.retryable() && Server.retryable() && Timeout.retryable());
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
