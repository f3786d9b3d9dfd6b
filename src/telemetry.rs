//! OpenTelemetry traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: a `tracing` layer collects the spans hatrack
//! opens — the run (`hatrack.run`), each step and each model exchange — and a background
//! thread sends them as OTLP/HTTP JSON (`POST …/v1/traces`) each time a step ends, so a run
//! that is killed keeps what it sent; [`Exporter::flush`] sends the rest at exit. No
//! OpenTelemetry SDK crates: the wire format is small and reqwest is already here.
//!
//! Names and attributes follow the OpenTelemetry GenAI semantic conventions: a step is an
//! agent invocation, exported as `invoke_agent {agent}` (span kind internal) with
//! `gen_ai.operation.name = invoke_agent`, `gen_ai.agent.name` (the hat's name for a hat's
//! step, else the step id: `judge/sre`, `review/reliability`, `signal`),
//! `gen_ai.provider.name` and `gen_ai.request.model`; a model exchange is exported as
//! `chat {model}` (span kind client) with `gen_ai.operation.name = chat`,
//! `gen_ai.provider.name` and the usage attributes. The provider is `openai`: hatrack speaks
//! the OpenAI chat-completions API, whoever serves it (the conventions name the provider by
//! the client's best knowledge).
//!
//! Honoured: `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended),
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_HEADERS` and
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`k=v,k=v`), `OTEL_SERVICE_NAME` (default `hatrack`).
//! A failed export is a warning, never a failed run; spans a failed send could not deliver
//! go with the next one. Span attributes carry ids, model names and token counts — never
//! prompts, answers or keys.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One finished span.
#[derive(Debug, Clone)]
struct SpanData {
    name: String,
    span_id: u64,
    parent: Option<u64>,
    start_ns: u128,
    end_ns: u128,
    attributes: Vec<(String, Value)>,
    error: bool,
}

#[derive(Default)]
struct Collected {
    spans: Vec<SpanData>,
}

/// The `tracing` layer: only spans whose target is hatrack's own. When a step (or the run)
/// ends it wakes the sender.
pub struct OtlpLayer {
    collected: Arc<Mutex<Collected>>,
    wake: Mutex<mpsc::Sender<Wake>>,
}

/// What the sender thread is told.
enum Wake {
    /// A step or the run ended: send what was collected.
    Send,
    /// The process is exiting: send the rest and stop.
    Finish,
}

/// Where and how spans are sent.
struct Target {
    endpoint: String,
    headers: Vec<(String, String)>,
    service: String,
    trace_id: u128,
}

/// The background sender, and the way to stop it at exit.
pub struct Exporter {
    wake: mpsc::Sender<Wake>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The spans' names as the conventions write them.
const STEP_SPAN: &str = "hatrack.step";
const CHAT_SPAN: &str = "gen_ai.chat";
const RUN_SPAN: &str = "hatrack.run";
/// `gen_ai.provider.name`: hatrack's client speaks the OpenAI API.
const PROVIDER: &str = "openai";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// `k=v,k=v` (values may be percent-encoded, as the spec allows).
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The layer and its exporter, when the environment asks for OTLP export.
pub fn from_env() -> Option<(OtlpLayer, Exporter)> {
    let endpoint = match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(e) => e,
        None => format!(
            "{}/v1/traces",
            env("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
        ),
    };
    let mut headers = env("OTEL_EXPORTER_OTLP_HEADERS")
        .map(|h| parse_headers(&h))
        .unwrap_or_default();
    headers.extend(
        env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .map(|h| parse_headers(&h))
            .unwrap_or_default(),
    );
    let collected = Arc::new(Mutex::new(Collected::default()));
    let target = Target {
        endpoint,
        headers,
        service: env("OTEL_SERVICE_NAME").unwrap_or_else(|| "hatrack".into()),
        trace_id: fastrand::u128(1..),
    };
    let (wake, woken) = mpsc::channel();
    let spans = collected.clone();
    let worker = std::thread::Builder::new()
        .name("hatrack-otlp".into())
        .spawn(move || target.serve(&spans, &woken))
        .ok()?;
    Some((
        OtlpLayer {
            collected,
            wake: Mutex::new(wake.clone()),
        },
        Exporter {
            wake,
            worker: Mutex::new(Some(worker)),
        },
    ))
}

/// Span fields as OTLP attributes.
struct Fields<'a>(&'a mut Vec<(String, Value)>, &'a mut bool);

impl Fields<'_> {
    fn set(&mut self, field: &Field, value: Value) {
        let key = field.name().to_string();
        if key == "error" {
            *self.1 = true;
        }
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value));
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, json!({ "stringValue": format!("{value:?}") }));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, json!({ "stringValue": value }));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, json!({ "intValue": value.to_string() }));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, json!({ "intValue": value.to_string() }));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, json!({ "boolValue": value }));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, json!({ "doubleValue": value }));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanData>().map(|d| d.span_id));
        let mut data = SpanData {
            name: attrs.metadata().name().to_string(),
            span_id: fastrand::u64(1..),
            parent,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: Vec::new(),
            error: false,
        };
        attrs.record(&mut Fields(&mut data.attributes, &mut data.error));
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanData>() {
            let SpanData {
                attributes, error, ..
            } = data;
            values.record(&mut Fields(attributes, error));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        data.end_ns = now_ns();
        let ends_a_step = data.name == STEP_SPAN || data.name == RUN_SPAN;
        if let Ok(mut c) = self.collected.lock() {
            c.spans.push(data);
        }
        if ends_a_step {
            if let Ok(wake) = self.wake.lock() {
                let _ = wake.send(Wake::Send);
            }
        }
    }
}

/// A span as exported: its name, kind and attributes as the GenAI conventions write them
/// (see the module documentation); other spans as they are.
fn conventional(s: &SpanData) -> (String, u8, Vec<(String, Value)>) {
    let attr = |key: &str| {
        s.attributes
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v["stringValue"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut attributes = s.attributes.clone();
    let mut set = |key: &str, value: &str| {
        attributes.retain(|(k, _)| k != key);
        attributes.push((key.to_string(), json!({ "stringValue": value })));
    };
    match s.name.as_str() {
        STEP_SPAN => {
            let step = attr("hatrack.step");
            let agent = step.strip_prefix("hat/").unwrap_or(&step).to_string();
            set("gen_ai.operation.name", "invoke_agent");
            set("gen_ai.agent.name", &agent);
            set("gen_ai.provider.name", PROVIDER);
            (format!("invoke_agent {agent}"), 1, attributes)
        }
        CHAT_SPAN => {
            let model = attr("gen_ai.request.model");
            set("gen_ai.operation.name", "chat");
            set("gen_ai.provider.name", PROVIDER);
            (
                format!("chat {model}").trim_end().to_string(),
                3,
                attributes,
            )
        }
        _ => (s.name.clone(), 1, attributes),
    }
}

impl Target {
    /// The sender thread: on each wake, sends what was collected; a batch that could not be
    /// sent goes with the next. At `Finish` (or when every sender is gone) it sends the
    /// rest, warns if that failed, and stops.
    fn serve(&self, collected: &Mutex<Collected>, woken: &mpsc::Receiver<Wake>) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let mut pending: Vec<SpanData> = Vec::new();
        let mut last_error = None;
        loop {
            let mut finish = matches!(woken.recv().unwrap_or(Wake::Finish), Wake::Finish);
            // Several steps ended while the last send ran: one send for all of them.
            while let Ok(more) = woken.try_recv() {
                finish |= matches!(more, Wake::Finish);
            }
            if let Ok(mut c) = collected.lock() {
                pending.append(&mut c.spans);
            }
            if !pending.is_empty() {
                match runtime.block_on(self.post(&pending)) {
                    Ok(()) => {
                        pending.clear();
                        last_error = None;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if finish {
                break;
            }
        }
        if let Some(e) = last_error {
            tracing::warn!(
                "OpenTelemetry: sending {} span(s) to {} failed: {e}",
                pending.len(),
                self.endpoint
            );
        }
    }

    /// The OTLP/JSON request body for `spans`.
    fn body(&self, spans: &[SpanData]) -> Value {
        let trace_id = format!("{:032x}", self.trace_id);
        let spans: Vec<Value> = spans
            .iter()
            .map(|s| {
                let (name, kind, attributes) = conventional(s);
                let mut v = json!({
                    "traceId": trace_id,
                    "spanId": format!("{:016x}", s.span_id),
                    "name": name,
                    "kind": kind,
                    "startTimeUnixNano": s.start_ns.to_string(),
                    "endTimeUnixNano": s.end_ns.to_string(),
                    "attributes": attributes.iter()
                        .map(|(k, v)| json!({ "key": k, "value": v }))
                        .collect::<Vec<_>>(),
                    "status": { "code": if s.error { 2 } else { 1 } },
                });
                if let Some(p) = s.parent {
                    v["parentSpanId"] = json!(format!("{p:016x}"));
                }
                v
            })
            .collect();
        json!({
            "resourceSpans": [{
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": self.service } },
                    { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
                ] },
                "scopeSpans": [{
                    "scope": { "name": "hatrack", "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            }],
        })
    }

    /// One POST of `spans`; the error says why it failed (with its causes).
    async fn post(&self, spans: &[SpanData]) -> Result<(), String> {
        // OTEL_EXPORTER_OTLP_HEADERS (a collector's key) never goes to another origin.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(crate::model::openai::same_origin_redirects())
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(self.body(spans).to_string());
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| {
            // With its causes: "error following redirect" alone does not say why.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {}", resp.status()))
        }
    }
}

impl Exporter {
    /// Sends what is left and stops the sender (once; a second call does nothing). Blocks
    /// while the last sends run (each at most ~10 s); failures are logged as warnings.
    pub fn flush(&self) {
        let _ = self.wake.send(Wake::Finish);
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_decode() {
        assert_eq!(
            parse_headers("api-key=a%20b, x-tenant = 7,bad"),
            vec![
                ("api-key".to_string(), "a b".to_string()),
                ("x-tenant".to_string(), "7".to_string())
            ]
        );
    }
}
