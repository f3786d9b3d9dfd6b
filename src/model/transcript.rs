//! The run's `exchanges.jsonl`: one JSON line per model exchange, written as each ends, and
//! the [`TranscriptModel`] that replays from it and records into it.
//!
//! Matching is by step id **and** request hash, never by position: a reordered run replays.
//! When several recorded exchanges match (the same request asked twice), they are used in
//! recorded order, each once, and the last one is reused after that.
//!
//! Only successful exchanges (those with a `response`) are replayable. A failed exchange is
//! kept for the record (what happened, which status) but replaying it would only reproduce
//! an outage, so a request whose only recording is a failure is a miss.
//!
//! Replaying into a different transcript (`--from-transcript OLD --transcript NEW`): each
//! replayed hit is also appended to NEW, so NEW alone is a complete transcript of its run.
//! When OLD and NEW are the same file, hits are not appended again (they are already there).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::request_hash;
use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest, ReplySource, Usage};
use crate::secrets::Scrubber;

/// The file name of the transcript inside a run directory.
pub const EXCHANGES_FILE: &str = "exchanges.jsonl";

/// One recorded exchange (one line of `exchanges.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub step: String,
    pub attempt: u32,
    /// sha256 of the canonical request JSON, computed before scrubbing.
    pub request_hash: String,
    /// The exact request body (secrets scrubbed).
    pub request: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExchangeError>,
    #[serde(default)]
    pub usage: Usage,
    pub duration_ms: u64,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Carried over from an older transcript (`--from-transcript`), not answered in this run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// Why a recorded exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeError {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl Exchange {
    /// The reply this exchange replays as, if it succeeded.
    pub fn replay_reply(&self) -> Option<ModelReply> {
        let body = self.response.clone()?;
        let mut reply = ModelReply::from_body(body, self.duration_ms, ReplySource::Replayed);
        reply.usage = self.usage;
        reply.origin = if self.replayed {
            ReplySource::Replayed
        } else {
            ReplySource::Live
        };
        Some(reply)
    }
}

/// The VCR record modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordMode {
    /// Replay only; a miss is [`ModelError::ReplayMiss`]. Never touches the network.
    None,
    /// Replay if the transcript has exchanges (then behave as `None`), else call and record.
    Once,
    /// Replay hits; call the model for misses and append them.
    NewEpisodes,
    /// Always call the model and record.
    All,
}

impl RecordMode {
    /// Whether this mode, given the recorded exchanges, may call the model. The run layer
    /// builds a [`super::LiveModel`] only when this is true, so `none` opens no socket.
    pub fn needs_live(self, recorded: &[Exchange]) -> bool {
        match self {
            RecordMode::None => false,
            RecordMode::Once => recorded.is_empty(),
            RecordMode::NewEpisodes | RecordMode::All => true,
        }
    }

    /// The name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordMode::None => "none",
            RecordMode::Once => "once",
            RecordMode::NewEpisodes => "new_episodes",
            RecordMode::All => "all",
        }
    }
}

impl std::str::FromStr for RecordMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(RecordMode::None),
            "once" => Ok(RecordMode::Once),
            "new_episodes" => Ok(RecordMode::NewEpisodes),
            "all" => Ok(RecordMode::All),
            other => Err(format!(
                "unknown record mode {other:?}; expected none, once, new_episodes or all"
            )),
        }
    }
}

fn transcript_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Transcript {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a transcript file. A missing or empty file is an empty transcript. A last line
/// without its newline that does not parse (a crash mid-write) is dropped with a warning;
/// any other unreadable line is an error naming the file and line.
pub fn read_exchanges(path: &Path) -> Result<Vec<Exchange>, ModelError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(transcript_error(path, format!("cannot read: {e}"))),
    };
    let mut reader = BufReader::new(file);
    let mut exchanges = Vec::new();
    let mut line = String::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| {
            transcript_error(path, format!("line {}: cannot read: {e}", number + 1))
        })?;
        if read == 0 {
            break;
        }
        number += 1;
        let complete = line.ends_with('\n');
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Exchange>(text) {
            Ok(exchange) => exchanges.push(exchange),
            Err(_) if !complete => {
                tracing::warn!(
                    "{}: line {number} is incomplete (a run was interrupted while writing it); ignoring it",
                    path.display()
                );
            }
            Err(e) => {
                return Err(transcript_error(
                    path,
                    format!("line {number}: not a valid exchange: {e}"),
                ))
            }
        }
    }
    Ok(exchanges)
}

/// Appends exchanges to a transcript file, one scrubbed line each, flushed and fsync'd as
/// each exchange ends, so a crash loses at most the exchange in flight.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
    scrubber: Scrubber,
}

impl Recorder {
    /// Opens `path` for appending (creating it and its directory).
    pub fn append(path: impl Into<PathBuf>, scrubber: Scrubber) -> Result<Recorder, ModelError> {
        Recorder::open(path.into(), scrubber, false)
    }

    /// Creates `path` empty (for `--record-mode all`, which re-records from scratch).
    pub fn create(path: impl Into<PathBuf>, scrubber: Scrubber) -> Result<Recorder, ModelError> {
        Recorder::open(path.into(), scrubber, true)
    }

    fn open(path: PathBuf, scrubber: Scrubber, truncate: bool) -> Result<Recorder, ModelError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| transcript_error(&path, format!("cannot create directory: {e}")))?;
        }
        let mut options = OpenOptions::new();
        options.create(true);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        let file = options
            .open(&path)
            .map_err(|e| transcript_error(&path, format!("cannot open for writing: {e}")))?;
        // A previous crash may have left a half-written last line: cut it off, so that what
        // we append stays readable (the reader would otherwise meet it mid-file).
        if !truncate {
            drop_incomplete_tail(&path, &file)?;
        }
        Ok(Recorder {
            path,
            file: Mutex::new(file),
            scrubber,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one exchange as a scrubbed line, then flushes and fsyncs.
    pub fn record(&self, exchange: &Exchange) -> Result<(), ModelError> {
        let json = serde_json::to_string(exchange)
            .map_err(|e| transcript_error(&self.path, format!("cannot encode exchange: {e}")))?;
        let mut line = self.scrubber.scrub(&json);
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| transcript_error(&self.path, "writer poisoned by an earlier panic"))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_data())
            .map_err(|e| transcript_error(&self.path, format!("cannot write: {e}")))
    }
}

fn drop_incomplete_tail(path: &Path, file: &File) -> Result<(), ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| transcript_error(path, format!("cannot read: {e}")))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(
        "{}: dropping an incomplete last line ({} bytes) left by an interrupted run",
        path.display(),
        bytes.len() - keep
    );
    file.set_len(keep as u64)
        .map_err(|e| transcript_error(path, format!("cannot repair the incomplete last line: {e}")))
}

/// Now, as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Recorded exchanges indexed by (step, request hash), with a cursor per key.
#[derive(Debug)]
struct ReplayIndex {
    exchanges: Vec<Exchange>,
    by_key: HashMap<(String, String), Vec<usize>>,
    next: Mutex<HashMap<(String, String), usize>>,
}

impl ReplayIndex {
    fn new(exchanges: Vec<Exchange>) -> ReplayIndex {
        let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, e) in exchanges.iter().enumerate() {
            if e.response.is_some() {
                by_key
                    .entry((e.step.clone(), e.request_hash.clone()))
                    .or_default()
                    .push(i);
            }
        }
        ReplayIndex {
            exchanges,
            by_key,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// The next recorded exchange for this step and hash: each once in order, then the last.
    fn lookup(&self, step: &str, hash: &str) -> Option<&Exchange> {
        let key = (step.to_string(), hash.to_string());
        let slots = self.by_key.get(&key)?;
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = next.entry(key).or_insert(0);
        let index = slots[(*cursor).min(slots.len() - 1)];
        *cursor += 1;
        Some(&self.exchanges[index])
    }

    /// A readable diff of `body` against the recorded request of the same step (the same
    /// attempt preferred), for a replay miss.
    fn miss_diff(&self, request: &ModelRequest) -> String {
        let same_step: Vec<&Exchange> = self
            .exchanges
            .iter()
            .filter(|e| e.step == request.step)
            .collect();
        let Some(recorded) = same_step
            .iter()
            .find(|e| e.attempt == request.attempt)
            .or_else(|| same_step.first())
        else {
            let mut steps: Vec<&str> = self.exchanges.iter().map(|e| e.step.as_str()).collect();
            steps.dedup();
            return format!(
                "the transcript has no exchange for step {}; it has: {}",
                request.step,
                if steps.is_empty() {
                    "nothing".to_string()
                } else {
                    steps.join(", ")
                }
            );
        };
        let old = pretty(&recorded.request);
        let new = pretty(&request.body);
        if old == new {
            return format!(
                "the request equals the recorded one for step {} attempt {}, but that exchange failed ({}) and failed exchanges are not replayed",
                recorded.step,
                recorded.attempt,
                recorded
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("no response recorded")
            );
        }
        similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("recorded {} attempt {}", recorded.step, recorded.attempt),
                &format!("new {} attempt {}", request.step, request.attempt),
            )
            .to_string()
    }
}

/// Pretty JSON with message contents split on their newlines, so a changed sentence in a
/// prompt shows as one changed line rather than one giant changed string.
fn pretty(body: &Value) -> String {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.replace("\\n", "\\n\n")
}

/// Replays from a transcript, calls the live model for what it cannot replay (as the mode
/// allows) and records into the run's transcript.
pub struct TranscriptModel {
    mode: RecordMode,
    replay: ReplayIndex,
    has_recorded: bool,
    record_to: Option<Arc<Recorder>>,
    live: Option<Arc<dyn ChatModel>>,
    /// Append replayed hits to `record_to` (it is a different file from the replay source).
    copy_hits: bool,
}

impl std::fmt::Debug for TranscriptModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptModel")
            .field("mode", &self.mode)
            .field("recorded", &self.replay.exchanges.len())
            .field("record_to", &self.record_to.as_ref().map(|r| r.path()))
            .field("live", &self.live.is_some())
            .finish()
    }
}

impl TranscriptModel {
    /// `replay_from`: the exchanges to replay and the file they came from (never modified;
    /// may be another run's transcript). `record_to`: where this run's exchanges go.
    /// `live`: the model for misses; leave it `None` when [`RecordMode::needs_live`] is
    /// false, so replay cannot open a socket.
    pub fn new(
        mode: RecordMode,
        replay_from: Option<(PathBuf, Vec<Exchange>)>,
        record_to: Option<Recorder>,
        live: Option<Arc<dyn ChatModel>>,
    ) -> TranscriptModel {
        let (source_path, exchanges) = match replay_from {
            Some((path, exchanges)) if mode != RecordMode::All => (Some(path), exchanges),
            _ => (None, Vec::new()),
        };
        let copy_hits = match (&source_path, &record_to) {
            (Some(src), Some(rec)) => !same_file(src, rec.path()),
            _ => false,
        };
        TranscriptModel {
            mode,
            has_recorded: !exchanges.is_empty(),
            replay: ReplayIndex::new(exchanges),
            record_to: record_to.map(Arc::new),
            live,
            copy_hits,
        }
    }

    /// The usual construction for a run: replay from the transcript at `replay_from` (if
    /// any), record into `record_to` (if any), and build a [`LiveModel`](super::LiveModel) from `settings`
    /// only when `mode` may call the model — so `none`, and `once` over a recorded
    /// transcript, never construct a client and cannot open a socket. `judge`: the judging
    /// steps' settings, when they name another endpoint (requests are routed by model). With
    /// `settings.budget`, the live model sits behind a [`Budget`](super::Budget) (and with
    /// `settings.budget_usd`, a [`UsdBudget`](super::prices::UsdBudget)): a budget counts
    /// what this run spends, replayed exchanges are free.
    ///
    /// Recording: `all` starts `record_to` afresh; every other mode appends. Nothing is
    /// written when `record_to` is the replay source itself and the mode cannot call.
    pub fn open(
        mode: RecordMode,
        replay_from: Option<&Path>,
        record_to: Option<&Path>,
        settings: &super::ModelSettings,
        judge: Option<&super::ModelSettings>,
        scrubber: Scrubber,
    ) -> Result<TranscriptModel, ModelError> {
        let exchanges = match replay_from {
            Some(path) if mode != RecordMode::All => read_exchanges(path)?,
            _ => Vec::new(),
        };
        let live: Option<Arc<dyn ChatModel>> = if mode.needs_live(&exchanges) {
            let client: Arc<dyn ChatModel> = Arc::new(super::LiveModel::new(settings)?);
            // A judge model at another endpoint gets its own client; one budget covers both.
            let client: Arc<dyn ChatModel> = match judge {
                Some(j) if j.base_url != settings.base_url => {
                    Arc::new(super::router::Router::new(vec![
                        (settings.model.clone(), client),
                        (j.model.clone(), Arc::new(super::LiveModel::new(j)?)),
                    ]))
                }
                _ => client,
            };
            let client: Arc<dyn ChatModel> = match settings.budget {
                Some(tokens) => Arc::new(super::Budget::new(client, tokens)),
                None => client,
            };
            Some(match (settings.budget_usd, &settings.prices) {
                (Some(usd), Some(prices)) => {
                    Arc::new(super::prices::UsdBudget::new(client, usd, prices.clone()))
                }
                _ => client,
            })
        } else {
            None
        };
        let recorder = match record_to {
            None => None,
            Some(path) if mode == RecordMode::All => Some(Recorder::create(path, scrubber)?),
            Some(path) if live.is_none() && replay_from.is_some_and(|src| same_file(src, path)) => {
                None
            }
            Some(path) => Some(Recorder::append(path, scrubber)?),
        };
        Ok(TranscriptModel::new(
            mode,
            replay_from.map(|p| (p.to_path_buf(), exchanges)),
            recorder,
            live,
        ))
    }

    /// The record mode this model was built with.
    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    fn replays(&self) -> bool {
        match self.mode {
            RecordMode::None | RecordMode::NewEpisodes => true,
            RecordMode::Once => self.has_recorded,
            RecordMode::All => false,
        }
    }

    fn may_call(&self) -> bool {
        match self.mode {
            RecordMode::None => false,
            RecordMode::Once => !self.has_recorded,
            RecordMode::NewEpisodes | RecordMode::All => true,
        }
    }

    async fn complete_inner(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
        let hash = request_hash(&request.body);
        if self.replays() {
            if let Some(hit) = self.replay.lookup(&request.step, &hash) {
                if let Some(mut reply) = hit.replay_reply() {
                    if self.copy_hits {
                        // Carried over from another run: this run did not obtain it live.
                        reply.origin = ReplySource::Replayed;
                        if let Some(rec) = &self.record_to {
                            let copy = Exchange {
                                replayed: true,
                                ..hit.clone()
                            };
                            record_off_thread(rec, copy).await?;
                        }
                    }
                    return Ok(reply);
                }
            }
        }
        if !self.may_call() {
            return Err(ModelError::ReplayMiss {
                step: request.step.clone(),
                diff: self.replay.miss_diff(request),
            });
        }
        let Some(live) = &self.live else {
            return Err(ModelError::Config(format!(
                "record mode {} needs to call the model for step {}, but no live model was configured",
                self.mode.as_str(),
                request.step
            )));
        };
        let started_at = now_rfc3339();
        let started = std::time::Instant::now();
        let result = live.complete(request).await;
        if let Some(rec) = &self.record_to {
            let mut exchange = Exchange {
                step: request.step.clone(),
                attempt: request.attempt,
                request_hash: hash,
                request: request.body.clone(),
                response: None,
                error: None,
                usage: Usage::default(),
                duration_ms: started.elapsed().as_millis() as u64,
                started_at,
                replayed: false,
            };
            match &result {
                Ok(reply) => {
                    exchange.response = Some(reply.body.clone());
                    exchange.usage = reply.usage;
                    exchange.duration_ms = reply.duration_ms;
                }
                Err(ModelError::Provider { last, status, .. }) => {
                    exchange.error = Some(ExchangeError {
                        message: last.clone(),
                        status: *status,
                    });
                }
                // Nothing was exchanged (budget, configuration): nothing to record.
                Err(_) => return result,
            }
            record_off_thread(rec, exchange).await?;
        }
        result
    }
}

/// Writes on the blocking pool: the fsync takes milliseconds on a real disk and must not
/// stall the other requests in flight on this runtime thread.
async fn record_off_thread(recorder: &Arc<Recorder>, exchange: Exchange) -> Result<(), ModelError> {
    let recorder = recorder.clone();
    let path = recorder.path().to_path_buf();
    tokio::task::spawn_blocking(move || recorder.record(&exchange))
        .await
        .unwrap_or_else(|e| Err(transcript_error(&path, format!("writer task failed: {e}"))))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl ChatModel for TranscriptModel {
    /// Each exchange is a `gen_ai.chat` span (OpenTelemetry GenAI conventions) carrying the
    /// opaque step id, the attempt, whether it was replayed, and the tokens — never content.
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        use tracing::field::Empty;
        use tracing::Instrument;
        let model = request
            .body
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "gen_ai.chat",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model,
            hatrack.step = request.step.as_str(),
            hatrack.attempt = request.attempt,
            hatrack.source = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            error = Empty,
        );
        Box::pin(async move {
            let result = self.complete_inner(request).instrument(span.clone()).await;
            match &result {
                Ok(reply) => {
                    let source = match reply.source {
                        ReplySource::Live => "live",
                        ReplySource::Replayed => "replayed",
                    };
                    span.record("hatrack.source", source);
                    span.record("gen_ai.usage.input_tokens", reply.usage.prompt_tokens);
                    span.record("gen_ai.usage.output_tokens", reply.usage.completion_tokens);
                }
                Err(_) => {
                    // Only that it failed: error texts may quote a provider echoing credentials.
                    span.record("error", true);
                }
            }
            result
        })
    }
}
