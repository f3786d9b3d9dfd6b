//! Work spread over a few threads, results kept in order: a run has CPU work (compiling
//! patterns and schemas, rendering prompts and reports) and disk waits (fsyncs) that need
//! not happen one after another, on a machine of a few cores.
//!
//! Every thread started here is pointed at another core than its parent's as it starts
//! (see [`spawn_beside`]): on the 2-vCPU virtual machines CI runs on, Linux often queues a
//! new thread behind its parent on the parent's core, so a helper meant to work *beside* a
//! busy caller only started once the caller blocked (measured here: a thread spawned by a
//! busy parent started 1–4.6 ms later; pointed at the other core, after 0.1 ms).

use std::thread::JoinHandle;

/// Runs `work` on every item with `workers` threads (the calling thread and helpers), each
/// taking the next item not yet taken, and returns the results in the items' order. A
/// helper's panic is resumed here once every helper has ended.
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
    // Declared after what the helpers borrow, so dropped (joining them) before it.
    let mut started = Joined(Vec::new());
    for _ in 0..helpers {
        // SAFETY: `started` joins every helper before `take_turns` and what it borrows
        // (`queue`, `work`) go out of scope, whether this function returns or unwinds.
        match unsafe { spawn_placed(None, take_turns) } {
            Ok(helper) => started.0.push(helper),
            // No thread: the caller takes the helper's turns.
            Err(_) => break,
        }
    }
    let mut results = take_turns();
    while let Some(helper) = started.0.pop() {
        match helper.join() {
            Ok(done) => results.extend(done),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Helpers joined when dropped: on an unwind too, so none outlives what it borrows.
struct Joined<T>(Vec<JoinHandle<T>>);

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        for helper in self.0.drain(..) {
            let _ = helper.join();
        }
    }
}

/// Threads for CPU work: one per core (a thread more only waits).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // Read once: the standard library reads the cgroup's quota files on every call.
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Starts a named thread to work beside the calling one, on another core than the caller's
/// when the process may use one (see the module docs). The thread widens its affinity back
/// to the process's as it starts, so it is never confined; where affinity cannot be read or
/// set (another OS, a single allowed core) this is a plain spawn.
pub fn spawn_beside<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    // SAFETY: `work` and `T` are 'static: the thread borrows nothing.
    unsafe { spawn_placed(Some(name), work) }
}

/// Spawns `work` on a thread started on another core than the caller's, widened back to
/// every allowed core once it runs.
///
/// # Safety
///
/// As [`std::thread::Builder::spawn_unchecked`]: the thread must be joined before anything
/// `work` or its result borrows is dropped.
unsafe fn spawn_placed<'a, T: Send + 'a>(
    name: Option<&str>,
    work: impl FnOnce() -> T + Send + 'a,
) -> std::io::Result<JoinHandle<T>> {
    let placement = affinity::Placement::of_caller();
    let (placed, wait_placed) = std::sync::mpsc::channel::<()>();
    let widen = placement.clone();
    let mut builder = std::thread::Builder::new();
    if let Some(name) = name {
        builder = builder.name(name.into());
    }
    // SAFETY: passed on to the caller.
    let handle = unsafe {
        builder.spawn_unchecked(move || {
            // Widened only once the parent has pointed it elsewhere: the other order would
            // leave it confined.
            if let Some(p) = &widen {
                let _ = wait_placed.recv();
                p.widen_current();
            }
            work()
        })
    }?;
    if let Some(p) = &placement {
        p.start_elsewhere(&handle);
    }
    let _ = placed.send(());
    Ok(handle)
}

#[cfg(target_os = "linux")]
mod affinity {
    use std::os::unix::thread::JoinHandleExt;

    /// The cores the process may use and the one the caller runs on.
    #[derive(Clone)]
    pub(super) struct Placement {
        allowed: libc::cpu_set_t,
        caller: usize,
    }

    impl Placement {
        /// `None` when there is no other core to go to or the kernel does not say.
        pub(super) fn of_caller() -> Option<Placement> {
            // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it and
            // reads nothing else; sched_getcpu takes no arguments.
            let (allowed, caller) = unsafe {
                let mut allowed: libc::cpu_set_t = std::mem::zeroed();
                let size = std::mem::size_of::<libc::cpu_set_t>();
                if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
                    return None;
                }
                (allowed, usize::try_from(libc::sched_getcpu()).ok()?)
            };
            // SAFETY: CPU_COUNT only reads the set.
            let cores = unsafe { libc::CPU_COUNT(&allowed) };
            (cores > 1).then_some(Placement { allowed, caller })
        }

        /// Moves the (new, not yet running) thread to the allowed cores but the caller's.
        pub(super) fn start_elsewhere<T>(&self, thread: &std::thread::JoinHandle<T>) {
            let mut elsewhere = self.allowed;
            // SAFETY: `caller` came from sched_getcpu, below CPU_SETSIZE; the set is ours and
            // the pthread is alive (its handle is borrowed); a failure leaves it where it is.
            unsafe {
                libc::CPU_CLR(self.caller, &mut elsewhere);
                libc::pthread_setaffinity_np(
                    thread.as_pthread_t(),
                    std::mem::size_of::<libc::cpu_set_t>(),
                    &elsewhere,
                );
            }
        }

        /// Lets the calling thread use every core the process may use again.
        pub(super) fn widen_current(&self) {
            // SAFETY: 0 is the calling thread; the set is ours.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.allowed);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    /// Elsewhere the kernel places threads as it sees fit.
    #[derive(Clone)]
    pub(super) enum Placement {}

    impl Placement {
        pub(super) fn of_caller() -> Option<Placement> {
            None
        }
        pub(super) fn start_elsewhere<T>(&self, _: &std::thread::JoinHandle<T>) {
            match *self {}
        }
        pub(super) fn widen_current(&self) {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_keeps_the_items_order() {
        let doubled = side_by_side((0..50).collect(), 3, |n: u32| n * 2);
        assert_eq!(doubled, (0..50).map(|n| n * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_in_any_worker_reaches_the_caller_after_every_worker_ended() {
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            side_by_side((0..8).collect(), 2, |n: u32| {
                if n == 5 {
                    panic!("item 5");
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        }));
        assert!(outcome.is_err(), "the panic is resumed");
        // Every other item was taken and finished: no worker was left running.
        assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), 7);
    }

    /// The cores this thread may run on.
    #[cfg(target_os = "linux")]
    fn cores_allowed() -> usize {
        // SAFETY: a zeroed set is empty; sched_getaffinity fills it; CPU_COUNT reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            libc::CPU_COUNT(&set) as usize
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_started_beside_runs_named_and_is_not_left_confined_to_other_cores() {
        let parent = cores_allowed();
        let (name, cores) = spawn_beside("beside", || {
            let name = std::thread::current().name().map(str::to_owned);
            (name, cores_allowed())
        })
        .expect("a thread starts")
        .join()
        .expect("it ends");
        assert_eq!(name.as_deref(), Some("beside"));
        assert_eq!(
            cores, parent,
            "the helper may use every core its parent may"
        );
    }
}
