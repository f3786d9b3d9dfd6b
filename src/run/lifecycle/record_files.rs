//! A new run's run.json and checks.json, written while its first request is on its way
//! rather than before it: the transcript records nothing until both are on disk (a
//! transcript without its run.json cannot be resumed), and a write that failed ends the run
//! with its own error, as it did when the run waited for it.

use std::sync::{Arc, Mutex};

use futures::FutureExt;

use super::joined;
use crate::model::transcript::RecordGate;
use crate::Error;

/// The writes in flight, and the first one's error once it failed.
pub(super) struct RecordFiles {
    gate: RecordGate,
    failed: Arc<Mutex<Option<Error>>>,
}

impl RecordFiles {
    /// Waits for `writes` (blocking tasks already running) behind one gate.
    pub(super) fn new(writes: Vec<tokio::task::JoinHandle<Result<(), Error>>>) -> RecordFiles {
        let failed = Arc::new(Mutex::new(None));
        let slot = failed.clone();
        let gate = async move {
            for write in writes {
                if let Err(e) = joined(write.await) {
                    let why: Arc<str> = e.to_string().into();
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(e);
                    }
                    return Err(why);
                }
            }
            Ok(())
        }
        .boxed()
        .shared();
        RecordFiles { gate, failed }
    }

    /// What the transcript waits for before its first exchange.
    pub(super) fn gate(&self) -> RecordGate {
        self.gate.clone()
    }

    /// Fails with `error` once the writes are over (no temporary file left half-written),
    /// or with a write's own error: it came first.
    pub(super) async fn failing<T>(self, error: Error) -> Result<T, Error> {
        self.written().await?;
        Err(error)
    }

    /// Both files written, or the error of the one that was not.
    pub(super) async fn written(self) -> Result<(), Error> {
        match self.gate.await {
            Ok(()) => Ok(()),
            Err(why) => Err(self
                .failed
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .unwrap_or_else(|| Error::usage(why.to_string()))),
        }
    }
}
