//! The model a rejudge runs with: every hat step must replay from the recorded run (a miss
//! is the rejudge's answer: the hat would have to run again), and everything goes through
//! the new run's transcript, so the new run directory holds every exchange and replays on
//! its own.

use std::path::Path;

use futures::future::BoxFuture;

use crate::model::settings::ModelSettings;
use crate::model::transcript::{RecordMode, TranscriptModel};
use crate::model::{ChatModel, ModelError, ModelReply, ModelRequest};
use crate::run::rundir::EXCHANGES_FILE;
use crate::secrets::Scrubber;

/// Hat steps must replay from the recorded run; everything goes through the new run's
/// transcript (so the new run directory holds every exchange and replays on its own).
pub(crate) struct JudgesOnly {
    hats: TranscriptModel,
    inner: TranscriptModel,
}

impl JudgesOnly {
    pub(crate) fn new(
        hats_from: &Path,
        settings: &ModelSettings,
        judge: &ModelSettings,
        scrubber: &Scrubber,
        inner: TranscriptModel,
    ) -> Result<JudgesOnly, ModelError> {
        let hats = TranscriptModel::open(
            RecordMode::None,
            Some(&hats_from.join(EXCHANGES_FILE)),
            None,
            settings,
            Some(judge),
            scrubber.clone(),
            crate::model::Handles {
                shared: None,
                prices: None,
            },
        )?;
        Ok(JudgesOnly { hats, inner })
    }
}

impl ChatModel for JudgesOnly {
    fn sync(&self) -> Result<(), ModelError> {
        self.inner.sync()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(async move {
            if request.step.starts_with("hat/") {
                // A miss here is the rejudge's answer: the hat would have to run again.
                self.hats.complete(request).await?;
            }
            self.inner.complete(request).await
        })
    }
}

/// Where a run's hat steps get their answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Hats {
    /// The hats are asked (a normal run).
    #[default]
    Asked,
    /// `hatrack rejudge`: replayed from this recorded run directory; a miss stops the run.
    Replayed(std::path::PathBuf),
    /// An eval case with fixed artifacts: each hat's answer is the files under `DIR/<hat>/`,
    /// and only the judging steps ask a model.
    Files(std::path::PathBuf),
}

/// Most bytes of one hat's fixed artifacts.
const MAX_CANNED_BYTES: u64 = 1 << 20;

/// Answers every hat step with the files an eval case fixes for that hat (labelled as such:
/// model `hatrack-artifacts`, no tokens), and passes judging steps on. It sits where a live
/// model would, behind the run's transcript, so the run directory records the hats' answers
/// and replays on its own.
pub(crate) struct CannedHats {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) judges: Option<std::sync::Arc<dyn ChatModel>>,
}

impl ChatModel for CannedHats {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(async move {
            if let Some(hat) = request.step.strip_prefix("hat/") {
                return canned(&self.dir, hat);
            }
            match &self.judges {
                Some(judges) => judges.complete(request).await,
                None => Err(ModelError::Config(format!(
                    "step {}: no model to ask (replay only)",
                    request.step
                ))),
            }
        })
    }
}

/// The hat's fixed artifacts as a hat's answer.
fn canned(dir: &Path, hat: &str) -> Result<ModelReply, ModelError> {
    let root = dir.join(hat);
    let fail = |m: String| ModelError::Config(format!("{}: {m}", root.display()));
    if !root.is_dir() {
        return Err(fail(format!(
            "the case fixes no artifacts for hat {hat}: add artifacts/{hat}/ beside labels.toml"
        )));
    }
    let mut artifacts = Vec::new();
    let mut total = 0u64;
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.map_err(|e| fail(e.to_string()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(&root).unwrap_or(entry.path());
        let path = crate::safe_fs::slash_path(rel);
        let content = std::fs::read_to_string(entry.path())
            .map_err(|e| fail(format!("{}: {e} (artifacts are UTF-8 text)", rel.display())))?;
        total += content.len() as u64;
        if total > MAX_CANNED_BYTES {
            return Err(fail(format!(
                "more than {MAX_CANNED_BYTES} bytes of artifacts"
            )));
        }
        artifacts.push(serde_json::json!({"path": path, "content": content}));
    }
    let content = serde_json::json!({
        "summary": format!("The {hat}'s artifacts as the eval case fixes them ({} file(s)): not a model's answer.", artifacts.len()),
        "artifacts": artifacts,
    })
    .to_string();
    let body = serde_json::json!({
        "id": "hatrack-artifacts",
        "object": "chat.completion",
        "model": "hatrack-artifacts",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    });
    Ok(ModelReply::from_body(
        body,
        0,
        crate::model::ReplySource::Live,
    ))
}
