//! Work spread over a few scoped threads, results kept in order: a run has CPU work (rendering
//! prompts and reports) and disk waits (fsyncs) that need not happen one after another, on a
//! machine of a few cores.

/// Runs `work` on every item with `workers` threads (the calling thread and scoped ones),
/// each taking the next item not yet taken, and returns the results in the items' order.
pub fn side_by_side<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let helpers = workers.min(items.len()).saturating_sub(1);
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let take_turns = || {
        let mut done = Vec::new();
        // A poisoned queue means a worker panicked: its panic is resumed below.
        while let Some((i, item)) = queue.lock().ok().and_then(|mut q| q.next()) {
            done.push((i, work(item)));
        }
        done
    };
    let mut results = std::thread::scope(|scope| {
        let spawned: Vec<_> = (0..helpers).map(|_| scope.spawn(take_turns)).collect();
        let mut results = take_turns();
        for helper in spawned {
            match helper.join() {
                Ok(done) => results.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Threads for CPU work: one per core (a thread more only waits).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
