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
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::request_hash;
use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest, ReplySource, Usage};
use crate::secrets::Scrubber;

/// The file name of the transcript inside a run directory.
pub const EXCHANGES_FILE: &str = "exchanges.jsonl";

/// One recorded exchange (one line of `exchanges.jsonl`). Read back as `Exchange` (owned
/// bodies); written from borrowed ones (the request as the text that was sent, its
/// [`super::Wire`]), so recording copies no request or answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange<B = Value, Q = B> {
    pub step: String,
    pub attempt: u32,
    /// sha256 of the canonical request JSON as recorded (scrubbed), so a replay, which
    /// renders its requests from scrubbed records, finds it. Transcripts recorded before
    /// hatrack hashed the scrubbed request hold the hash of the unscrubbed one; a replay
    /// looks up both.
    pub request_hash: String,
    /// The exact request body (secrets scrubbed).
    pub request: Q,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<B>,
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
    /// The provider streamed the answer; `response` is the body assembled from its chunks
    /// (the same shape a plain answer has, so replay does not care).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streamed: bool,
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
    /// The recorded error when the provider refused the request itself as malformed (a plain
    /// 400, e.g. `tools` it does not support) or as too long for its context window, which
    /// asking again cannot change. Failures a user can fix and then resume (a key, a model
    /// name, a quota) are asked again.
    pub fn permanent_error(&self) -> Option<&ExchangeError> {
        use super::ProviderErrorKind::{BadRequest, ContextExceeded};
        self.error.as_ref().filter(|e| {
            e.status.is_some_and(|s| {
                matches!(
                    super::openai::classify_status(s, &e.message),
                    BadRequest | ContextExceeded
                )
            })
        })
    }

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

/// Recording would pass the recorder's own size limits.
fn full(path: &Path, message: String) -> ModelError {
    ModelError::TranscriptFull {
        path: path.display().to_string(),
        message,
    }
}

/// The file was read but what it holds is not a transcript hatrack wrote.
fn damaged(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::TranscriptDamaged {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Parses one line as an exchange. Lines are parsed plainly; only a failing one is parsed
/// again with its path tracked, so the error names the field (`usage.prompt_tokens`): a
/// column alone is little help in a 20 kB line.
fn parse_exchange(text: &str) -> Result<Exchange, String> {
    serde_json::from_str(text).map_err(|e| {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Exchange>(&mut de) {
            Err(tracked) if tracked.path().to_string() != "." => {
                format!("field `{}`: {}", tracked.path(), at_column(tracked.inner()))
            }
            _ => at_column(&e),
        }
    })
}

/// serde_json's message ends "at line 1 column N": within one transcript line that "line 1"
/// contradicts the line number the reader names, so only the column is kept.
fn at_column(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(what, _)| what);
    format!("{what} (column {})", e.column())
}

/// The longest line a transcript may hold. The reader refuses a longer one (naming the file
/// and the line) without reading past this much of it, and the recorder never writes one.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// The largest transcript file: the reader refuses a larger one before reading it, and the
/// recorder refuses to grow one past it. (A real run's transcript is a few MiB.)
pub const MAX_TRANSCRIPT_BYTES: u64 = 256 << 20;

/// How often, at most, the recorder asks the disk to make recorded lines durable (fdatasync);
/// see [`Recorder`].
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

fn open_transcript_for_reading(path: &Path) -> Result<Option<File>, ModelError> {
    match crate::safe_fs::open_read_no_follow(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(transcript_error(
            path,
            "is a symbolic link; hatrack does not follow links inside a run directory (replace it with the file itself)",
        )),
        Err(e) => Err(transcript_error(path, format!("cannot read: {e}"))),
    }
}

/// Reads a transcript file. A missing or empty file is an empty transcript. A last line
/// without its newline that does not parse (a crash mid-write) is dropped with a warning; one
/// that parses is a complete exchange and is kept. Any other unreadable line, or one longer
/// than [`MAX_LINE_BYTES`], is an error naming the file and line. Memory stays bounded by
/// the longest line, whatever the file holds.
pub fn read_exchanges(path: &Path) -> Result<Vec<Exchange>, ModelError> {
    let Some(file) = open_transcript_for_reading(path)? else {
        return Ok(Vec::new());
    };
    if file
        .metadata()
        .is_ok_and(|m| m.len() > MAX_TRANSCRIPT_BYTES)
    {
        return Err(too_big(path));
    }
    read_exchanges_from(path, file)
}

fn too_big(path: &Path) -> ModelError {
    damaged(
        path,
        format!(
            "larger than {} MiB, the most a run's transcript may take; it is damaged or not hatrack's (restore it, or record the run again)",
            MAX_TRANSCRIPT_BYTES >> 20
        ),
    )
}

/// [`read_exchanges`] over any reader; `path` only names the source in errors.
pub fn read_exchanges_from(path: &Path, source: impl Read) -> Result<Vec<Exchange>, ModelError> {
    let mut reader = BufReader::new(source);
    let mut exchanges = Vec::new();
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut total = 0u64;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| {
                transcript_error(path, format!("line {}: cannot read: {e}", number + 1))
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        total += read as u64;
        if total > MAX_TRANSCRIPT_BYTES {
            return Err(too_big(path));
        }
        let complete = line.ends_with(b"\n");
        if !complete && line.len() > MAX_LINE_BYTES {
            return Err(damaged(
                path,
                format!(
                    "line {number} is longer than {} MiB, the most one exchange may take; the file is damaged or not a transcript (restore it, or record the run again)",
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            if !complete {
                tracing::warn!(
                    "{}: line {number} is incomplete (a run was interrupted while writing it); ignoring it",
                    path.display()
                );
                continue;
            }
            return Err(damaged(
                path,
                format!("line {number}: not UTF-8 text, so not a valid exchange"),
            ));
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_exchange(text) {
            Ok(exchange) => exchanges.push(exchange),
            Err(_) if !complete => {
                tracing::warn!(
                    "{}: line {number} is incomplete (a run was interrupted while writing it); ignoring it",
                    path.display()
                );
            }
            Err(e) => {
                return Err(damaged(
                    path,
                    format!("line {number}: not a valid exchange: {e}"),
                ))
            }
        }
    }
    Ok(exchanges)
}

/// Appends exchanges to a transcript file, one scrubbed line each.
///
/// Durability policy: each line is handed to the operating system with one `write` as its
/// exchange ends, so a process crash (panic, kill, OOM) loses nothing recorded — at most the
/// exchange in flight. The disk is asked to make lines durable (fdatasync) at most once per
/// [`SYNC_INTERVAL`], on [`Recorder::sync`], and when the recorder is dropped (end of run,
/// error exit): a power loss or kernel crash can lose the exchanges of the last second before
/// it. A torn last line is repaired when the transcript is next appended to.
///
/// The file is opened without following a symlink and must be a regular file; the run
/// directory's lock (`run::rundir::RunDir`) keeps a second writer out.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    state: Mutex<RecorderState>,
    scrubber: Scrubber,
}

#[derive(Debug)]
struct RecorderState {
    file: File,
    /// The file's length (what was there at open + what was appended).
    len: u64,
    last_sync: Instant,
    dirty: bool,
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
        let (root, name) = crate::safe_fs::split(&path);
        crate::safe_fs::create_root(&root)
            .map_err(|e| transcript_error(&path, format!("cannot create directory: {e}")))?;
        let file = crate::safe_fs::open_append(&root, &name, truncate)
            .map_err(|e| transcript_error(&path, e.to_string()))?;
        // A previous crash may have left a last line without its newline: keep it when it is
        // a complete exchange, cut it off when it is half-written, so what we append stays
        // readable.
        if !truncate {
            repair_tail(&path, &file)?;
        }
        let len = file
            .metadata()
            .map_err(|e| transcript_error(&path, format!("cannot read: {e}")))?
            .len();
        Ok(Recorder {
            path,
            state: Mutex::new(RecorderState {
                file,
                len,
                last_sync: Instant::now(),
                dirty: false,
            }),
            scrubber,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The exchange as one scrubbed JSON line (with its newline). Scrubbing works on string
    /// values (request and response bodies: keys too), never on the serialized bytes, and
    /// leaves hatrack's identifiers (step, hash, time) alone, so the line always replays.
    fn line<B: Serialize, Q: Serialize>(
        &self,
        exchange: &Exchange<B, Q>,
    ) -> Result<String, ModelError> {
        let encode = |e: serde_json::Error| {
            transcript_error(&self.path, format!("cannot encode exchange: {e}"))
        };
        let mut line = if self.scrubber.is_empty() {
            serde_json::to_string(exchange).map_err(encode)?
        } else {
            let mut value = serde_json::to_value(exchange).map_err(encode)?;
            let mut bodies = Vec::new();
            for key in ["request", "response"] {
                if let Some(slot) = value.get_mut(key) {
                    bodies.push((key, std::mem::take(slot)));
                }
            }
            self.scrubber.scrub_values(&mut value);
            for (key, mut body) in bodies {
                self.scrubber.scrub_json(&mut body);
                if let Some(slot) = value.get_mut(key) {
                    *slot = body;
                }
            }
            serde_json::to_string(&value).map_err(encode)?
        };
        if line.len() > MAX_LINE_BYTES {
            return Err(full(
                &self.path,
                format!(
                    "the exchange of step {} attempt {} takes {} bytes, more than a transcript line may hold ({} MiB); it was not recorded (lower max_tokens or the inputs' [limits])",
                    exchange.step,
                    exchange.attempt,
                    line.len(),
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        line.push('\n');
        Ok(line)
    }

    /// Writes one exchange as a scrubbed line with a single `write` (the OS has it once this
    /// returns); fdatasync only when [`SYNC_INTERVAL`] has passed since the last one.
    pub fn record<B: Serialize, Q: Serialize>(
        &self,
        exchange: &Exchange<B, Q>,
    ) -> Result<(), ModelError> {
        let line = self.line(exchange)?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| transcript_error(&self.path, "writer poisoned by an earlier panic"))?;
        if state.len + line.len() as u64 > MAX_TRANSCRIPT_BYTES {
            return Err(full(
                &self.path,
                format!(
                    "recording step {} would grow the transcript past {} MiB, the most one run may take; the run stops here (lower max_tokens or the inputs' [limits])",
                    exchange.step,
                    MAX_TRANSCRIPT_BYTES >> 20
                ),
            ));
        }
        state
            .file
            .write_all(line.as_bytes())
            .map_err(|e| transcript_error(&self.path, format!("cannot write: {e}")))?;
        state.len += line.len() as u64;
        state.dirty = true;
        if state.last_sync.elapsed() >= SYNC_INTERVAL {
            state.sync(&self.path)?;
        }
        Ok(())
    }

    /// Makes every recorded line durable (fdatasync), if any is not yet.
    pub fn sync(&self) -> Result<(), ModelError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| transcript_error(&self.path, "writer poisoned by an earlier panic"))?;
        state.sync(&self.path)
    }
}

impl RecorderState {
    fn sync(&mut self, path: &Path) -> Result<(), ModelError> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| transcript_error(path, format!("cannot sync to disk: {e}")))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(state) = self.state.get_mut() {
            if let Err(e) = state.sync(&self.path) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// A last line without its newline: kept (newline added) when it parses as a complete
/// exchange, cut off when it is half-written. Reads only the last line (at most
/// [`MAX_LINE_BYTES`] of it), not the whole file.
fn repair_tail(path: &Path, file: &File) -> Result<(), ModelError> {
    use std::io::{Seek, SeekFrom};
    let read_at = |buf: &mut [u8], at: u64| -> std::io::Result<()> {
        let mut f = file;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(buf)
    };
    let read_err = |e: std::io::Error| transcript_error(path, format!("cannot read: {e}"));
    let len = file.metadata().map_err(read_err)?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    read_at(&mut last, len - 1).map_err(read_err)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the start of the last line, reading backwards in chunks.
    let mut start = 0u64;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    'scan: while end > 0 {
        let from = end.saturating_sub(chunk.len() as u64);
        let n = (end - from) as usize;
        read_at(&mut chunk[..n], from).map_err(read_err)?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            start = from + i as u64 + 1;
            break 'scan;
        }
        end = from;
    }
    let tail_len = len - start;
    if tail_len <= MAX_LINE_BYTES as u64 {
        let mut tail = vec![0u8; tail_len as usize];
        read_at(&mut tail, start).map_err(read_err)?;
        if serde_json::from_slice::<Exchange>(&tail).is_ok() {
            // A complete exchange that only lacks its newline: keep it.
            return (&*file)
                .write_all(b"\n")
                .map_err(|e| transcript_error(path, format!("cannot write: {e}")));
        }
    }
    // Half-written: cut at the last newline before it.
    let keep = start;
    tracing::warn!(
        "{}: dropping an incomplete last line ({} bytes) left by an interrupted run",
        path.display(),
        len - keep
    );
    file.set_len(keep)
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
    /// Each replayable exchange under its recorded `request_hash` and, when that differs, the
    /// hash of its recorded (scrubbed) request: a transcript recorded before hashes were
    /// taken after scrubbing still replays a request whose secret was scrubbed.
    fn new(exchanges: Vec<Exchange>) -> ReplayIndex {
        let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, e) in exchanges.iter().enumerate() {
            if e.response.is_some() || e.permanent_error().is_some() {
                let of_request = request_hash(&e.request);
                if of_request != e.request_hash {
                    by_key
                        .entry((e.step.clone(), of_request))
                        .or_default()
                        .push(i);
                }
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

    /// A readable diff of `body` (the request scrubbed as it would be recorded: a miss
    /// message must not print a secret) against the recorded request of the same step (the
    /// same attempt preferred), for a replay miss.
    fn miss_diff(&self, request: &ModelRequest, body: &Value) -> String {
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
        let old = request_lines(&recorded.request);
        let new = request_lines(body);
        if old == new {
            if recorded.response.is_some() {
                return format!(
                    "the request equals the recorded one for step {} attempt {}, which has a response, but its request_hash {} is not the hash of that request: the line was edited, or recorded in a way this hatrack does not match; record the run again",
                    recorded.step,
                    recorded.attempt,
                    crate::safe_fs::printable_name(&recorded.request_hash)
                );
            }
            return format!(
                "the request equals the recorded one for step {} attempt {}, but that exchange failed ({}) and failed exchanges are not replayed",
                recorded.step,
                recorded.attempt,
                recorded
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("no response or error recorded")
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
pub fn request_lines(body: &Value) -> String {
    // Keys sorted, as requests are sent and recorded (their canonical text, read back in its
    // order): two requests that differ only in key order show no difference.
    let sorted: Value =
        serde_json::from_str(&super::request::canonical_json(body)).unwrap_or_default();
    let text = serde_json::to_string_pretty(&sorted).unwrap_or_default();
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
    /// What every recorded line is scrubbed with: requests are hashed as they are recorded.
    scrubber: Scrubber,
    /// What must be written before the first exchange is recorded (see [`RecordGate`]).
    gate: Option<RecordGate>,
}

/// Files a run must have on disk before its transcript holds an exchange (its run.json,
/// without which the transcript cannot be resumed): written while the first request is on
/// its way, awaited before the first exchange is recorded. `Err` says why they could not
/// be written; nothing is recorded then.
pub type RecordGate = futures::future::Shared<BoxFuture<'static, Result<(), std::sync::Arc<str>>>>;

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

/// Runtime handles a live model is built with beside its settings (configuration): the
/// connections a batch shares and the price table a USD budget is counted with.
#[derive(Clone, Copy, Default)]
pub struct Handles<'a> {
    /// The requests-in-flight limit and HTTP connections of a batch (`None`: the run's own).
    pub shared: Option<&'a super::openai::SharedTransport>,
    /// `--prices`, for `budget_usd`.
    pub prices: Option<&'a Arc<super::prices::Prices>>,
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
        let scrubber = record_to
            .as_ref()
            .map(|r| r.scrubber.clone())
            .unwrap_or_default();
        TranscriptModel {
            mode,
            has_recorded: !exchanges.is_empty(),
            replay: ReplayIndex::new(exchanges),
            record_to: record_to.map(Arc::new),
            live,
            copy_hits,
            scrubber,
            gate: None,
        }
    }

    /// Records nothing before `gate` is through (see [`RecordGate`]).
    pub fn recording_after(mut self, gate: RecordGate) -> TranscriptModel {
        self.gate = Some(gate);
        self
    }

    /// Records `exchange` once the gate (if any) is through.
    async fn record<B: Serialize, Q: Serialize>(
        &self,
        recorder: &Arc<Recorder>,
        exchange: &Exchange<B, Q>,
    ) -> Result<(), ModelError> {
        if let Some(gate) = &self.gate {
            gate.clone()
                .await
                .map_err(|why| transcript_error(recorder.path(), format!("not recorded: {why}")))?;
        }
        record_now(recorder, exchange).await
    }

    /// The scrubber requests are hashed after (the run's, also when nothing is recorded).
    pub fn with_scrubber(mut self, scrubber: Scrubber) -> TranscriptModel {
        self.scrubber = scrubber;
        self
    }

    /// The usual construction for a run: replay from the transcript at `replay_from` (if
    /// any), record into `record_to` (if any), and build a [`LiveModel`](super::LiveModel) from `settings`
    /// only when `mode` may call the model — so `none`, and `once` over a recorded
    /// transcript, never construct a client and cannot open a socket. `judge`: the judging
    /// steps' settings, when they name another endpoint (requests are routed by model). With
    /// `settings.budget`, the live model sits behind a [`TokenBudget`](super::TokenBudget) (and with
    /// `settings.budget_usd`, a [`UsdBudget`](super::prices::UsdBudget)): a budget counts
    /// what this run spends, replayed exchanges are free.
    ///
    /// `shared`: the requests-in-flight limit and HTTP connections shared with other runs (a
    /// batch); `None` gives the client its own, of `settings.jobs`.
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
        handles: Handles<'_>,
    ) -> Result<TranscriptModel, ModelError> {
        let Handles { shared, prices } = handles;
        let exchanges = match replay_from {
            Some(path) if mode != RecordMode::All => read_exchanges(path)?,
            _ => Vec::new(),
        };
        let live: Option<Arc<dyn ChatModel>> = if mode.needs_live(&exchanges) {
            let live = |s: &super::ModelSettings| match shared {
                Some(shared) => super::LiveModel::shared(s, shared),
                None => super::LiveModel::new(s),
            };
            let client: Arc<dyn ChatModel> = Arc::new(live(settings)?);
            // A judge model at another endpoint gets its own client; one budget covers both.
            let client: Arc<dyn ChatModel> = match judge {
                Some(j)
                    if j.model != settings.model
                        && (j.base_url != settings.base_url || j.api_key != settings.api_key) =>
                {
                    Arc::new(super::router::Router::new(vec![
                        (settings.model.clone(), client),
                        (j.model.clone(), Arc::new(live(j)?)),
                    ]))
                }
                _ => client,
            };
            let client: Arc<dyn ChatModel> = match settings.budget {
                Some(tokens) => Arc::new(super::TokenBudget::new(client, tokens)),
                None => client,
            };
            Some(match (settings.budget_usd, prices) {
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
            Some(path) if mode == RecordMode::All => {
                Some(Recorder::create(path, scrubber.clone())?)
            }
            Some(path) if live.is_none() && replay_from.is_some_and(|src| same_file(src, path)) => {
                None
            }
            Some(path) => Some(Recorder::append(path, scrubber.clone())?),
        };
        Ok(TranscriptModel::new(
            mode,
            replay_from.map(|p| (p.to_path_buf(), exchanges)),
            recorder,
            live,
        )
        .with_scrubber(scrubber))
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
        // Hashed as recorded: scrubbed. A replay renders later requests from scrubbed
        // records (an answer that echoed the key quotes `[REDACTED]`), so only the scrubbed
        // request's hash is the same live and replayed.
        let scrubbed = if self.scrubber.is_empty() {
            None
        } else {
            let mut body = request.body.clone();
            self.scrubber.scrub_json(&mut body);
            Some(body)
        };
        let hash = match &scrubbed {
            Some(body) => request_hash(body),
            None => request.wire().hash.clone(),
        };
        if self.replays() {
            if let Some(answer) = self.replayed(request, &hash, scrubbed.is_some()).await {
                return answer;
            }
        }
        if !self.may_call() {
            return Err(ModelError::ReplayMiss {
                step: request.step.clone(),
                diff: self
                    .replay
                    .miss_diff(request, scrubbed.as_ref().unwrap_or(&request.body)),
            });
        }
        self.call_and_record(request, hash).await
    }

    /// The recorded answer to this request, if the transcript holds one: its reply, or the
    /// client error the provider gave it. `None` means ask the model (no record, or a
    /// transient failure).
    async fn replayed(
        &self,
        request: &ModelRequest,
        hash: &str,
        was_scrubbed: bool,
    ) -> Option<Result<ModelReply, ModelError>> {
        // Then the unscrubbed hash: a recording made before hashes were scrubbed, or a
        // replay without the key that recording scrubbed.
        let hit = self.replay.lookup(&request.step, hash).or_else(|| {
            was_scrubbed
                .then(|| {
                    self.replay
                        .lookup(&request.step, &request_hash(&request.body))
                })
                .flatten()
        })?;
        if let Some(mut reply) = hit.replay_reply() {
            if self.copy_hits {
                // Carried over from another run: this run did not obtain it live.
                reply.origin = ReplySource::Replayed;
                if let Some(rec) = &self.record_to {
                    let copy = Exchange {
                        replayed: true,
                        ..hit.clone()
                    };
                    if let Err(e) = self.record(rec, &copy).await {
                        return Some(Err(e));
                    }
                }
            }
            return Some(Ok(reply));
        }
        // A recorded client error (the provider refused this very request) replays
        // as that error: the same request would be refused again. Transient failures
        // (timeouts, 408, 429, 5xx) are not replayed; they are asked again.
        let e = hit.permanent_error()?;
        let status = e.status.unwrap_or_default();
        Some(Err(ModelError::Provider {
            step: request.step.clone(),
            attempts: 1,
            last: e.message.clone(),
            status: e.status,
            kind: super::openai::classify_status(status, &e.message),
        }))
    }

    /// Asks the live model and records the exchange (its reply or the provider's error).
    async fn call_and_record(
        &self,
        request: &ModelRequest,
        hash: String,
    ) -> Result<ModelReply, ModelError> {
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
                request: &*request.wire().text,
                response: None,
                error: None,
                usage: Usage::default(),
                duration_ms: started.elapsed().as_millis() as u64,
                started_at,
                replayed: false,
                streamed: false,
            };
            match &result {
                Ok(reply) => {
                    exchange.response = Some(&reply.body);
                    exchange.usage = reply.usage;
                    exchange.duration_ms = reply.duration_ms;
                    exchange.streamed = reply.streamed;
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
            self.record(rec, &exchange).await?;
        }
        result
    }
}

/// Records in place (no hop to the blocking pool): one `write` of a line the OS buffers (microseconds); the occasional
/// fdatasync ([`SYNC_INTERVAL`]) is the only wait on the disk.
async fn record_now<B: Serialize, Q: Serialize>(
    recorder: &Arc<Recorder>,
    exchange: &Exchange<B, Q>,
) -> Result<(), ModelError> {
    recorder.record(exchange)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl ChatModel for TranscriptModel {
    fn sync(&self) -> Result<(), ModelError> {
        self.record_to.as_ref().map_or(Ok(()), |r| r.sync())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(content: String) -> Exchange {
        Exchange {
            step: "hat/x".into(),
            attempt: 1,
            request_hash: "h".into(),
            request: serde_json::json!({"messages": [{"role": "user", "content": content}]}),
            response: Some(serde_json::json!({"choices": []})),
            error: None,
            usage: Usage::default(),
            duration_ms: 1,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            replayed: false,
            streamed: false,
        }
    }

    #[test]
    fn the_recorder_never_writes_a_line_the_reader_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXCHANGES_FILE);
        let recorder = Recorder::create(&path, Scrubber::default()).unwrap();
        recorder.record(&exchange("small".into())).unwrap();
        let err = recorder
            .record(&exchange("x".repeat(MAX_LINE_BYTES)))
            .unwrap_err();
        // The recorder's own limit, not a disk or file problem: its own error and hint.
        assert!(matches!(err, ModelError::TranscriptFull { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("more than a transcript line may hold"),
            "{err}"
        );
        drop(recorder);
        assert_eq!(read_exchanges(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_valid_last_line_without_newline_is_kept_and_a_torn_one_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXCHANGES_FILE);
        let line = serde_json::to_string(&exchange("a".into())).unwrap();
        std::fs::write(&path, format!("{line}\n{line}")).unwrap();
        drop(Recorder::append(&path, Scrubber::default()).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{line}\n{line}\n")
        );
        std::fs::write(&path, format!("{line}\n{}", &line[..line.len() / 2])).unwrap();
        drop(Recorder::append(&path, Scrubber::default()).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{line}\n"));
    }
}
