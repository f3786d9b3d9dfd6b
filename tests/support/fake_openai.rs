//! A fake OpenAI-compatible server for tests and benchmarks — it stands in for a model and
//! is labelled as such in every answer (`"model": "fake-openai"`, `"id": "fake-…"`).
//!
//! Hand-written HTTP/1.1 on a tokio `TcpListener` at 127.0.0.1 (random port), so every fault
//! is under the test's control: 429 with `Retry-After`, 500, a hang past the client's
//! timeout, a body cut off mid-way, and any chat answer (invalid JSON content, JSON that
//! breaks the schema, `finish_reason: length`, empty `choices`). Each response is written
//! in one write with TCP_NODELAY set, so timings are not distorted by Nagle's algorithm.
//!
//! Answers come from a script (one [`Reply`] per request, in order) or from a function of
//! the request ([`FakeOpenAi::with_handler`]). Every request is logged.
//!
//! `GET` requests (hatrack asking a server its context window: `/props`, `/v1/models`) are
//! answered apart — 404 unless [`FakeOpenAi::says_context`] makes the fake answer as
//! llama.cpp's server does — and logged apart ([`FakeOpenAi::gets`]): they neither use the
//! script nor count as requests.
//!
//! Streaming: a request with `"stream": true` gets a 200 chat answer as server-sent events
//! (role, content in small deltas, tool-call deltas, finish_reason, a usage chunk, `[DONE]`),
//! as OpenAI and llama.cpp send them, unless [`FakeOpenAi::ignore_stream`] makes it a
//! provider that answers plain JSON regardless. [`Reply::Sse`] scripts a stream by hand:
//! a pause before each event (slow but steady), a stall, a stream cut off before `[DONE]`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request the fake server received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The raw body text.
    pub body_text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    /// When its last byte was read (before the fake parsed it).
    pub arrived: Instant,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All message contents joined, for matching on a marker in the prompt.
    pub fn messages_text(&self) -> String {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The number of messages (1 system + 1 user on a first ask; +2 per re-ask).
    pub fn message_count(&self) -> usize {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    }
}

/// What the fake server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response with this status, extra headers and body text.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then say nothing for this long and close the connection.
    Hang(Duration),
    /// Announce the full body's Content-Length, send only its first half, close.
    CutOff(String),
    /// Wait, then answer with the inner reply (to hold requests in flight).
    Delayed(Duration, Box<Reply>),
    /// Answer with the inner reply this long after the request's last byte arrived, to
    /// within a tenth of a millisecond: timed by a blocking thread's sleep, as tokio's timers round up to the
    /// next millisecond and fire late on a busy runtime (benchmarks compare against the
    /// latency exactly). Not cancelled when the connection is dropped: keep it short.
    Paced(Duration, Box<Reply>),
    /// A 200 with `Transfer-Encoding: chunked` and no Content-Length, sending `chunk` over and
    /// over — `times` times, or until the client hangs up when `None` (an endless body).
    Chunked { chunk: String, times: Option<usize> },
    /// A 200 `text/event-stream`: each event's text after its pause, one HTTP chunk each,
    /// then `end`.
    Sse { events: Vec<SseEvent>, end: SseEnd },
}

/// One server-sent event as written (`data: …\n\n`), after a pause.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub pause: Duration,
    pub text: String,
}

/// How a scripted stream ends.
#[derive(Debug, Clone)]
pub enum SseEnd {
    /// The HTTP body ends properly (whatever the events said).
    Close,
    /// Nothing more is sent for this long (the connection stays open), then it closes.
    Stall(Duration),
}

impl Reply {
    /// A normal chat completion answering `content` (finish_reason `stop`, usage 10 + 5).
    pub fn chat(content: impl Into<String>) -> Reply {
        Reply::json(200, chat_body(&content.into(), "stop", 10, 5))
    }

    /// A chat completion with the given finish reason and usage.
    pub fn chat_with(content: &str, finish_reason: &str, prompt: u64, completion: u64) -> Reply {
        Reply::json(200, chat_body(content, finish_reason, prompt, completion))
    }

    /// `finish_reason: length`: the answer was truncated at max_tokens.
    pub fn length(content: &str) -> Reply {
        Reply::chat_with(content, "length", 10, 5)
    }

    /// A 200 whose `choices` is empty.
    pub fn empty_choices() -> Reply {
        let mut body = chat_body("", "stop", 10, 0);
        body["choices"] = json!([]);
        Reply::json(200, body)
    }

    /// Any JSON body with a status.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Http {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// 429 with a plain-text body (the case async-openai alone misreports) and, if given,
    /// `Retry-After: secs`.
    pub fn rate_limited(retry_after: Option<&str>) -> Reply {
        let mut headers = vec![("content-type".to_string(), "text/plain".to_string())];
        if let Some(secs) = retry_after {
            headers.push(("retry-after".into(), secs.into()));
        }
        Reply::Http {
            status: 429,
            headers,
            body: "Too Many Requests".into(),
        }
    }

    /// 500 with a JSON error body.
    pub fn server_error() -> Reply {
        Reply::json(
            500,
            json!({"error": {"message": "fake server error", "type": "server_error"}}),
        )
    }

    /// This reply after a pause.
    pub fn delayed(self, pause: Duration) -> Reply {
        Reply::Delayed(pause, Box::new(self))
    }

    /// This reply `latency` after its request arrived, precisely (see [`Reply::Paced`]).
    pub fn paced(self, latency: Duration) -> Reply {
        Reply::Paced(latency, Box::new(self))
    }

    /// A 200 with a JSON body of about `bytes` bytes (a chat answer whose content is that
    /// long) and an honest Content-Length.
    pub fn huge(bytes: usize) -> Reply {
        Reply::chat("x".repeat(bytes))
    }

    /// A 200 whose body never ends (chunked, no Content-Length): only a size cap stops it.
    pub fn endless() -> Reply {
        Reply::Chunked {
            chunk: "x".repeat(64 * 1024),
            times: None,
        }
    }

    /// A chat answer reporting these (absurd) token counts.
    pub fn usage(prompt: u64, completion: u64) -> Reply {
        let mut body = chat_body("{}", "stop", 0, 0);
        body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion});
        Reply::json(200, body)
    }

    /// Any status with a raw body and extra headers (no content-type added).
    pub fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Http {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    /// A normal answer whose body is cut off half-way.
    pub fn cut_off(content: &str) -> Reply {
        Reply::CutOff(chat_body(content, "stop", 10, 5).to_string())
    }

    /// `body` (a chat completion) streamed as SSE events, each after `pause`.
    pub fn stream_body(body: &Value, pause: Duration) -> Reply {
        Reply::Sse {
            events: sse_events(body, pause),
            end: SseEnd::Close,
        }
    }

    /// `content` streamed in small deltas, one every `pause` (usage 10 + 5).
    pub fn stream(content: &str, pause: Duration) -> Reply {
        Reply::stream_body(&chat_body(content, "stop", 10, 5), pause)
    }

    /// A scripted stream that sends its first `events` events, then goes silent for `hang`.
    pub fn stall_after(self, events: usize, hang: Duration) -> Reply {
        match self {
            Reply::Sse {
                events: mut all, ..
            } => {
                all.truncate(events);
                Reply::Sse {
                    events: all,
                    end: SseEnd::Stall(hang),
                }
            }
            other => other,
        }
    }

    /// A scripted stream whose HTTP body ends properly after its first `events` events: no
    /// finish_reason, no `[DONE]` (a server that gave up mid-answer).
    pub fn truncated(self, events: usize) -> Reply {
        match self {
            Reply::Sse {
                events: mut all, ..
            } => {
                all.truncate(events);
                Reply::Sse {
                    events: all,
                    end: SseEnd::Close,
                }
            }
            other => other,
        }
    }
}

/// The SSE events a streaming server sends for the chat completion `body`: a role chunk,
/// the content in deltas of a few characters, each tool call in two argument halves, the
/// finish_reason, a usage chunk (as with `stream_options.include_usage`), `[DONE]`.
pub fn sse_events(body: &Value, pause: Duration) -> Vec<SseEvent> {
    let choice = &body["choices"][0];
    let message = &choice["message"];
    // Each chunk's JSON text is written around its delta, without building a JSON tree per
    // chunk: an answer streams in hundreds of chunks, and the fake shares the CPU with the
    // client it serves (benches/batch.rs).
    let prefix = format!(
        r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":"#,
        body["id"], body["created"], body["model"]
    );
    let head =
        |delta: Value, finish: Value| format!(r#"{prefix}{delta},"finish_reason":{finish}}}]}}"#);
    let mut chunks = Vec::new();
    if choice.is_object() {
        chunks.push(head(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ));
    }
    let content: Vec<char> = message["content"].as_str().unwrap_or("").chars().collect();
    // A few characters per delta, as a model sends tokens; larger for a huge answer, so the
    // fake stays quick.
    for piece in content.chunks((content.len() / 256).max(4)) {
        let text = Value::String(piece.iter().collect());
        chunks.push(format!(
            r#"{prefix}{{"content":{text}}},"finish_reason":null}}]}}"#
        ));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = call["function"]["arguments"].as_str().unwrap_or("");
        let mid = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        chunks.push(head(
            json!({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": &args[..mid]}}]}),
            Value::Null,
        ));
        chunks.push(head(
            json!({"tool_calls": [{"index": i, "function": {"arguments": &args[mid..]}}]}),
            Value::Null,
        ));
    }
    if choice.is_object() {
        chunks.push(head(json!({}), choice["finish_reason"].clone()));
    }
    let mut events: Vec<SseEvent> = chunks
        .into_iter()
        .map(|c| SseEvent {
            pause,
            text: format!("data: {c}\n\n"),
        })
        .collect();
    if let Some(usage) = body.get("usage") {
        let chunk = json!({"id": body["id"], "object": "chat.completion.chunk",
            "model": body["model"], "choices": [], "usage": usage});
        events.push(SseEvent {
            pause,
            text: format!("data: {chunk}\n\n"),
        });
    }
    events.push(SseEvent {
        pause,
        text: "data: [DONE]\n\n".into(),
    });
    events
}

/// A chat-completion response body, as OpenAI sends it, labelled as the fake's.
pub fn chat_body(content: &str, finish_reason: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "fake-chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-openai",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0}
        }
    })
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    handler: Option<Box<Handler>>,
    log: Mutex<Vec<SeenRequest>>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Answer `"stream": true` requests as SSE (false: plain JSON regardless).
    stream_when_asked: AtomicBool,
    /// The context window `GET /props` and `GET /v1/models` report (`None`: 404).
    context: Mutex<Option<u64>>,
    gets: Mutex<Vec<SeenRequest>>,
}

/// The running fake server. Stops when dropped (or with [`FakeOpenAi::stop`]).
pub struct FakeOpenAi {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeOpenAi {
    /// Answers requests with `script`, in order; once it is used up every request gets a
    /// 500 "fake script exhausted" (so an unexpected extra request shows up in the test).
    pub async fn scripted(script: Vec<Reply>) -> FakeOpenAi {
        FakeOpenAi::start(script.into(), None).await
    }

    /// Answers each request with `handler(request)` (e.g. match on a marker in the prompt).
    pub async fn with_handler(
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> FakeOpenAi {
        FakeOpenAi::start(VecDeque::new(), Some(Box::new(handler))).await
    }

    async fn start(script: VecDeque<Reply>, handler: Option<Box<Handler>>) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake server binds 127.0.0.1");
        let port = listener.local_addr().expect("bound address").port();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            handler,
            log: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stream_when_asked: AtomicBool::new(true),
            context: Mutex::new(None),
            gets: Mutex::new(Vec::new()),
        });
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let shared = shared.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let task = tokio::spawn(serve(stream, shared.clone()));
                    connections.lock().unwrap().push(task);
                }
            })
        };
        FakeOpenAi {
            port,
            shared,
            accept,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, for `ModelSettings::base_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (a client that reuses its connections opens few).
    pub fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Answers plain JSON even when a request asks for a stream (a provider that ignores
    /// `"stream": true`).
    pub fn ignore_stream(&self) {
        self.shared.stream_when_asked.store(false, Ordering::SeqCst);
    }

    /// Answers `GET /props` (`default_generation_settings.n_ctx`) and `GET /v1/models`
    /// (`meta.n_ctx`) with this context window, as llama.cpp's server does.
    pub fn says_context(&self, tokens: u64) {
        *self.shared.context.lock().unwrap() = Some(tokens);
    }

    /// Every `GET` received so far (hatrack asking the server about its model).
    pub fn gets(&self) -> Vec<SeenRequest> {
        self.shared.gets.lock().unwrap().clone()
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Stops listening and drops every open connection. The port is closed afterwards.
    pub fn stop(&self) {
        self.accept.abort();
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        if request.method == "GET" {
            shared.gets.lock().unwrap().push(request.clone());
            let reply = match (*shared.context.lock().unwrap(), request.path.as_str()) {
                (Some(n), "/props") => Reply::json(
                    200,
                    json!({"default_generation_settings": {"n_ctx": n}, "model_alias": "fake-openai"}),
                ),
                (Some(n), "/v1/models") => Reply::json(
                    200,
                    json!({"object": "list", "data": [{"id": "fake-openai", "object": "model", "meta": {"n_ctx": n}}]}),
                ),
                _ => Reply::json(
                    404,
                    json!({"error": {"message": "not found", "type": "fake"}}),
                ),
            };
            if !write_reply(&mut stream, reply).await {
                return;
            }
            continue;
        }
        shared.count.fetch_add(1, Ordering::SeqCst);
        shared.log.lock().unwrap().push(request.clone());
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let keep_open = answer(&mut stream, &shared, &request).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep_open {
            return;
        }
    }
}

/// Answers one request; false when the connection must be closed afterwards.
async fn answer(stream: &mut TcpStream, shared: &Shared, request: &SeenRequest) -> bool {
    let mut reply = match &shared.handler {
        Some(handler) => handler(request),
        None => shared
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| {
                Reply::json(
                    500,
                    json!({"error": {"message": "fake script exhausted", "type": "fake"}}),
                )
            }),
    };
    loop {
        match reply {
            Reply::Delayed(pause, inner) => {
                tokio::time::sleep(pause).await;
                reply = *inner;
            }
            Reply::Paced(latency, inner) => {
                let left = (request.arrived + latency).saturating_duration_since(Instant::now());
                let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
                reply = *inner;
            }
            _ => break,
        }
    }
    if request.body["stream"] == true && shared.stream_when_asked.load(Ordering::SeqCst) {
        reply = as_stream(reply);
    }
    write_reply(stream, reply).await
}

/// Writes one (unwrapped) reply; false when the connection must be closed afterwards.
async fn write_reply(stream: &mut TcpStream, reply: Reply) -> bool {
    match reply {
        Reply::Http {
            status,
            headers,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            out.push_str(&body);
            stream.write_all(out.as_bytes()).await.is_ok()
        }
        Reply::Hang(duration) => {
            tokio::time::sleep(duration).await;
            false
        }
        Reply::CutOff(body) => {
            let half = &body.as_bytes()[..body.len() / 2];
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(half);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            false
        }
        Reply::Chunked { chunk, times } => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            let mut sent = 0usize;
            while times.is_none_or(|t| sent < t) {
                if stream.write_all(framed.as_bytes()).await.is_err() {
                    return false;
                }
                sent += 1;
            }
            stream.write_all(b"0\r\n\r\n").await.is_ok()
        }
        Reply::Sse { events, end } => write_sse(stream, events, end).await,
        Reply::Delayed(..) | Reply::Paced(..) => unreachable!("unwrapped above"),
    }
}

/// A 200 JSON chat answer becomes its SSE form; anything else (errors, faults, bodies without
/// `choices`) is sent as scripted.
fn as_stream(reply: Reply) -> Reply {
    match &reply {
        Reply::Http {
            status: 200, body, ..
        } => match serde_json::from_str::<Value>(body) {
            Ok(v) if v.get("choices").is_some_and(Value::is_array) => {
                Reply::stream_body(&v, Duration::ZERO)
            }
            _ => reply,
        },
        _ => reply,
    }
}

/// Writes a scripted stream as a chunked `text/event-stream` body.
async fn write_sse(stream: &mut TcpStream, events: Vec<SseEvent>, end: SseEnd) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut pending = head.as_bytes().to_vec();
    for event in events {
        if !event.pause.is_zero() {
            // Flush what is queued before pausing, so the client sees each event on time.
            if stream.write_all(&pending).await.is_err() {
                return false;
            }
            pending.clear();
            tokio::time::sleep(event.pause).await;
        }
        pending
            .extend_from_slice(format!("{:x}\r\n{}\r\n", event.text.len(), event.text).as_bytes());
    }
    if stream.write_all(&pending).await.is_err() {
        return false;
    }
    match end {
        SseEnd::Close => stream.write_all(b"0\r\n\r\n").await.is_ok(),
        SseEnd::Stall(hang) => {
            tokio::time::sleep(hang).await;
            false
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only, which is what clients send for
/// JSON). `None` when the connection closed or sent garbage.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<SeenRequest> {
    let header_end = loop {
        if let Some(pos) = find(buffer, b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let arrived = Instant::now();
    let body_text = String::from_utf8_lossy(&buffer[body_start..body_start + length]).into_owned();
    buffer.drain(..body_start + length);
    let body = serde_json::from_str(&body_text).unwrap_or(Value::Null);
    Some(SeenRequest {
        method,
        path,
        headers,
        body_text,
        body,
        arrived,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
