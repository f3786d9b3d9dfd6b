//! Hat steps answered without asking a model: an eval case's fixed artifacts, behind the
//! run's transcript so the case replays without them.

use std::path::Path;
use std::sync::Arc;

use super::{Runner, TranscriptPlan};
use crate::model::settings::ModelSettings;
use crate::model::transcript::{RecordMode, TranscriptModel};
use crate::model::ChatModel;
use crate::run::rundir::EXCHANGES_FILE;
use crate::secrets::Scrubber;
use crate::Error;

/// An eval case with fixed artifacts: the run's transcript around [`CannedHats`], which
/// answers the hats from the case's files and asks a live model (built only when the mode
/// may call one) for the judging steps.
///
/// [`CannedHats`]: crate::run::judges_only::CannedHats
pub(super) fn canned_hats(
    t: &TranscriptPlan,
    dir: &Path,
    (settings, judge): (&ModelSettings, &ModelSettings),
    scrubber: &Scrubber,
    runner: &Runner,
    (prices, gate): (
        Option<&Arc<crate::model::prices::Prices>>,
        crate::model::transcript::RecordGate,
    ),
) -> Result<Box<dyn ChatModel>, Error> {
    use crate::model::transcript::{read_exchanges, Recorder};
    let replay_from = t.replay_from.as_ref().map(|d| d.join(EXCHANGES_FILE));
    let exchanges = match &replay_from {
        Some(path) if path.is_file() && t.mode != RecordMode::All => read_exchanges(path)?,
        _ => Vec::new(),
    };
    let judges = if t.mode.needs_live(&exchanges) {
        let live = runner.open_transcript(
            RecordMode::All,
            (None, None),
            (settings, judge),
            scrubber,
            prices,
        )?;
        Some(Arc::new(live) as Arc<dyn ChatModel>)
    } else {
        None
    };
    let canned: Option<Arc<dyn ChatModel>> = t.mode.needs_live(&exchanges).then(|| {
        Arc::new(crate::run::judges_only::CannedHats {
            dir: dir.to_path_buf(),
            judges,
        }) as Arc<dyn ChatModel>
    });
    let record_to = match t.record {
        true => Some(Recorder::append(
            t.run_dir.join(EXCHANGES_FILE),
            scrubber.clone(),
        )?),
        false => None,
    };
    Ok(Box::new(
        TranscriptModel::new(
            t.mode,
            replay_from.map(|p| (p, exchanges)),
            record_to,
            canned,
        )
        .recording_after(gate),
    ))
}
