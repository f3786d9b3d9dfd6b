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
