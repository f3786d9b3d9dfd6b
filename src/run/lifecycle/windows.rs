//! The context windows a new run sizes its requests for, and records in run.json: asked of
//! the server while the stage loads, so that preflight's end does not wait a round trip
//! (for an https endpoint, two handshakes too) before the first request.

use crate::model::settings::ModelSettings;
use crate::model::window::{probe, DEFAULT_CONTEXT_TOKENS};
use crate::run::rundir::ModelRecord;

/// Each model's window and where the producing model's came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Windows {
    settings: u64,
    judge: u64,
    from: &'static str,
}

impl Windows {
    /// Sets both models' windows; returns where the producing model's came from.
    pub(super) fn apply(
        self,
        settings: &mut ModelSettings,
        judge: &mut ModelSettings,
    ) -> &'static str {
        settings.context_tokens = Some(self.settings);
        judge.context_tokens = Some(self.judge);
        self.from
    }
}

/// Each model's window for a new run: `[model] context_tokens` (both models), else what each
/// model's server says (the judge's only when it is another model or endpoint; both asked
/// together), else the default.
pub(super) async fn ask(settings: &ModelSettings, judge: &ModelSettings) -> Windows {
    if let Some(n) = settings.context_tokens {
        return Windows {
            settings: n,
            judge: n,
            from: "[model] context_tokens",
        };
    }
    let same = judge.base_url == settings.base_url && judge.model == settings.model;
    let judge_said = async {
        if same {
            None
        } else {
            Some(probe(judge).await)
        }
    };
    let (said, judge_said) = futures::future::join(probe(settings), judge_said).await;
    let window = said.unwrap_or(DEFAULT_CONTEXT_TOKENS);
    Windows {
        settings: window,
        judge: judge_said.map_or(window, |n| n.unwrap_or(DEFAULT_CONTEXT_TOKENS)),
        from: if said.is_some() { "server" } else { "default" },
    }
}

/// The windows, asked beside the stage's loading. Dropped unawaited (the run failed its
/// preflight, or found a run.json that already says), it stops asking.
pub(super) struct EarlyWindows(tokio::task::JoinHandle<Windows>);

impl EarlyWindows {
    /// Starts asking, on the run's runtime and through the run's shared connections (which
    /// the settings must already hold: the connection opened here serves the first request).
    pub(super) fn start(settings: &ModelSettings, judge: &ModelSettings) -> EarlyWindows {
        let (settings, judge) = (settings.clone(), judge.clone());
        EarlyWindows(tokio::spawn(async move { ask(&settings, &judge).await }))
    }

    /// The windows, once asked.
    pub(super) async fn windows(mut self) -> Windows {
        super::joined((&mut self.0).await)
    }
}

impl Drop for EarlyWindows {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The windows a run's requests are sized for, as its run.json recorded them. A run recorded
/// before windows were recorded was sent unsized, and replays so.
pub(super) fn apply_recorded(
    settings: &mut ModelSettings,
    judge: &mut ModelSettings,
    record: &ModelRecord,
) {
    settings.context_tokens = Some(record.context_tokens.unwrap_or(u64::MAX));
    judge.context_tokens = record
        .judge
        .as_ref()
        .and_then(|j| j.context_tokens)
        .or(settings.context_tokens);
}
