//! What the runs of a batch share while they prepare: one preparation at a time at first,
//! then one per core; each stage and prompts directory loaded once.

use tokio::sync::Semaphore;

use crate::definition::Stage;
use crate::memo::Memo;
use crate::prompt::Prompts;

/// What the runs of a batch share: their preparation (loading, binding, preflight) is CPU
/// work, done a few at a time so the first runs' requests go out while later runs still
/// prepare; each stage (with its digest) and prompts directory is loaded once, and a stage's
/// warnings are logged once, not once per workspace. Work no request waits for (the
/// snapshots) starts once every run has prepared.
pub(crate) struct BatchShared {
    pub(super) preparing: Semaphore,
    /// Opens the other preparations once the first run has prepared.
    pub(super) warmed: std::sync::Once,
    pub stages: Memo<(Stage, String)>,
    pub prompts: Memo<Prompts>,
    /// Runs that have not finished preparing (successfully or not).
    pub(super) unprepared: std::sync::atomic::AtomicUsize,
    /// Becomes true when `unprepared` reaches zero.
    pub(super) all_prepared: tokio::sync::watch::Sender<bool>,
}

impl BatchShared {
    /// Shared by `runs` runs.
    pub fn new(runs: usize) -> BatchShared {
        BatchShared {
            // One at first: the first run loads the stage and prompts and compiles the
            // globs and patterns the others reuse (then `prepared` opens one per core).
            preparing: Semaphore::new(1),
            warmed: std::sync::Once::new(),
            stages: Memo::new(64),
            prompts: Memo::new(64),
            unprepared: runs.into(),
            all_prepared: tokio::sync::watch::Sender::new(runs == 0),
        }
    }

    /// Waits for a run's turn to prepare.
    pub(super) async fn turn(&self) -> Turn<'_> {
        let permit = self
            .preparing
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Turn {
            shared: self,
            _permit: permit,
        }
    }

    /// A run has prepared (or failed to): from now on, one preparation per core at a time.
    pub(super) fn prepared(&self) {
        self.warmed.call_once(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            self.preparing.add_permits(cores.saturating_sub(1));
        });
        let before = self.unprepared.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| n.checked_sub(1),
        );
        if before == Ok(1) {
            self.all_prepared.send_replace(true);
        }
    }

    /// Returns once every run of the batch has prepared.
    pub(super) async fn everyone_prepared(&self) {
        let mut prepared = self.all_prepared.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = prepared.wait_for(|done| *done).await;
    }
}

/// A run's turn to prepare. Dropping it — prepared, failed or panicked — counts the run as
/// prepared and lets the next one in, so nothing waits for a run that stopped.
pub(super) struct Turn<'a> {
    pub(super) shared: &'a BatchShared,
    pub(super) _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.shared.prepared();
    }
}
