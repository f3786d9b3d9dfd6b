//! A batch in one process against running the same workspaces as separate processes,
//! printed as figures (no pass/fail): 20 copies of examples/orders-pipeline, the full
//! deployment stage each (6 exchanges: two hats, two constraint judges, one review agent,
//! the completion judge), against the fake OpenAI server answering every request 50 ms
//! after it arrived (`Reply::paced`: a thread's sleep, as tokio's timers round up to the next
//! millisecond and would add their lateness to every exchange; each distinct answer's stream
//! built once: see [`answer_cached`]), `--jobs 16`, release binary.
//!
//! The ideal is the model's time alone: exchanges × latency / concurrency, or the longest
//! sequential chain (hat, hat, judges, completion judge: 4 × latency) if that is longer.
//! Target: the batch within 1.3× of it.
//!
//! Also printed: one workspace alone (its own chain's overhead), the CPU per batch of
//! hatrack and of the fake, how many requests
//! started in each 25 ms of the last batch (where the `--jobs` slots sat idle: the start,
//! the tail, CPU between a run's steps), how many files a batch writes, and what creating
//! one costs here (see [`file_creation`]: the disk's state moves the figures too). When
//! that cost shows the slowed state recent deletions leave behind, the bench first waits
//! for it to pass (up to two minutes; see [`settled_file_creation`]).
//!
//! Run: `cargo bench --bench batch` (builds the release binary first).
//! `HATRACK_BENCH_LATENCY_MS=0` measures hatrack's own cost; `HATRACK_BENCH_ALONE=1` runs only
//! the one-workspace figure; `HATRACK_BENCH_BATCH_ONLY=1` skips the separate processes;
//! `HATRACK_BENCH_ROUNDS=N` takes N rounds (5 by default); `HATRACK_BENCH_NO_SETTLE=1` does
//! not wait for the disk; `HATRACK_BIN=PATH` measures another build (e.g. one with symbols
//! for `perf`). On a 2-core machine the fake server shares the CPU with hatrack, and figures
//! vary by ±10% from run to run: compare medians of several runs.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{answer, stats};
use fake_openai::{sse_events, FakeOpenAi, Reply, SeenRequest, SseEnd, SseEvent};

const WORKSPACES: usize = 20;
const EXCHANGES_PER_RUN: usize = 6;
const CHAIN: usize = 4;
/// The fake model's latency (`HATRACK_BENCH_LATENCY_MS` overrides it, e.g. 0 for hatrack's
/// own cost).
fn latency() -> Duration {
    let ms = std::env::var("HATRACK_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    Duration::from_millis(ms)
}
const JOBS: usize = 16;
/// Rounds per figure (`HATRACK_BENCH_ROUNDS` overrides it: more rounds steady the medians).
fn rounds() -> usize {
    std::env::var("HATRACK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a workspace copy");
    for entry in std::fs::read_dir(from).expect("the example workspace") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a file copy");
        }
    }
}

fn hatrack(url: &str, args: &[String]) -> Command {
    // `HATRACK_BIN`: another build to measure (e.g. one with symbols, for a profiler).
    let bin = std::env::var("HATRACK_BIN").unwrap_or_else(|_| "target/release/hatrack".into());
    let mut cmd = Command::new(bin);
    cmd.args(["--quiet", "run", "--model", "bench", "--base-url", url])
        .args(["--jobs", &JOBS.to_string()])
        .args(args);
    cmd
}

fn wait(mut child: Child) {
    let status = child.wait().expect("hatrack ran");
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "hatrack failed: {status}"
    );
}

/// The whole batch in one process.
fn one_process(url: &str, workspaces: &[PathBuf], dir: &Path) -> Duration {
    let mut args: Vec<String> = workspaces.iter().map(|w| w.display().to_string()).collect();
    args.extend(["--transcript".to_string(), dir.display().to_string()]);
    let started = Instant::now();
    wait(hatrack(url, &args).spawn().expect("hatrack starts"));
    started.elapsed()
}

/// One process per workspace, at most `parallel` at a time (as `xargs -P`).
fn separate_processes(url: &str, workspaces: &[PathBuf], dir: &Path, parallel: usize) -> Duration {
    let started = Instant::now();
    let mut running: Vec<Child> = Vec::new();
    for (i, ws) in workspaces.iter().enumerate() {
        if running.len() == parallel {
            wait(running.remove(0));
        }
        let args = [
            ws.display().to_string(),
            "--transcript".to_string(),
            dir.join(format!("run-{i}")).display().to_string(),
        ];
        running.push(hatrack(url, &args).spawn().expect("hatrack starts"));
    }
    running.into_iter().for_each(wait);
    started.elapsed()
}

/// The fake's answer to `req`, streamed when asked. Twenty workspaces get the same few
/// answers, so each one's stream is built once and its text reused: the fake stands in for a
/// remote model, whose CPU would not be taken from hatrack's two cores. The text is the same
/// events `Reply::stream_body` sends (`sse_events`), in one HTTP chunk (hatrack reads SSE lines, wherever
/// the chunks break).
fn answer_cached(req: &SeenRequest, streams: &Mutex<HashMap<String, String>>) -> Reply {
    let reply = answer(req);
    let Reply::Http { body, .. } = &reply else {
        return reply;
    };
    if req.body["stream"] != true {
        return reply;
    }
    let mut streams = streams.lock().expect("stream cache");
    let text = streams.entry(body.clone()).or_insert_with(|| {
        let body: serde_json::Value = serde_json::from_str(body).expect("the fake's own JSON");
        sse_events(&body, Duration::ZERO)
            .into_iter()
            .map(|e| e.text)
            .collect()
    });
    Reply::Sse {
        events: vec![SseEvent {
            pause: Duration::ZERO,
            text: text.clone(),
        }],
        end: SseEnd::Close,
    }
}

/// What creating one file costs in a new directory `dir`. A batch writes a few hundred
/// files, and on some file systems (ext4 without a journal, as on this project's VMs) each
/// creation scans past inodes deleted in the last minute or so: after many deletions
/// (earlier benches, builds, test runs) it takes 10–40 times as long, and the batch figure
/// rises with it.
fn file_creation(dir: &Path) -> Duration {
    const FILES: u32 = 100;
    std::fs::create_dir_all(dir).expect("a probe directory");
    let started = Instant::now();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i}")), b"probe").expect("a probe file");
    }
    started.elapsed() / FILES
}

/// Above this, file creation is in its slowed state (it is 10–40 µs otherwise).
const SLOWED_CREATION: Duration = Duration::from_micros(100);

/// Waits (up to two minutes, `HATRACK_BENCH_NO_SETTLE` skips it) until creating a file in
/// `tmp` is quick again: the slowed state passes a minute or so after the deletions that
/// caused it, and measuring through it would measure the disk's recent past, not hatrack.
/// Returns the last cost measured.
fn settled_file_creation(tmp: &Path) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probe = 0;
    loop {
        let cost = file_creation(&tmp.join(format!("probe-{probe}")));
        probe += 1;
        let waiting = std::env::var_os("HATRACK_BENCH_NO_SETTLE").is_none();
        if cost <= SLOWED_CREATION || !waiting || Instant::now() >= deadline {
            return cost;
        }
        if probe == 1 {
            println!(
                "  creating a file takes {:.0} µs here (recently deleted files slow it): waiting up to 2 min for it to pass",
                cost.as_secs_f64() * 1e6
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// CPU time (user + system) used so far by this process (the fake server, mostly) and by
/// its children that were waited for (the hatrack processes).
fn cpu_used() -> (Duration, Duration) {
    fn of(who: libc::c_int) -> Duration {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
        let usage = unsafe {
            libc::getrusage(who, usage.as_mut_ptr());
            usage.assume_init()
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    }
    (of(libc::RUSAGE_SELF), of(libc::RUSAGE_CHILDREN))
}

/// Files and directories under `dir`.
fn entries(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).min_depth(1).into_iter().count()
}

/// Requests arrived per 25 ms of the last batch: where the batch leaves the `--jobs` slots
/// idle (its start, its tail, CPU stalls between a run's steps).
fn profile(started: Instant, arrivals: &[Instant]) {
    let mut buckets = vec![0usize; 1];
    for a in arrivals {
        let i = (a.duration_since(started).as_millis() / 25) as usize;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0);
        }
        buckets[i] += 1;
    }
    let line: Vec<String> = buckets.iter().map(|n| n.to_string()).collect();
    println!(
        "  requests started per 25 ms of the last batch: {}",
        line.join(" ")
    );
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let at = |i: usize| sorted.get(i).map_or(0.0, |a| ms(a.duration_since(started)));
    println!(
        "  first request after {:.1} ms, {JOBS}th after {:.1} ms, last after {:.1} ms",
        at(0),
        at(JOBS - 1),
        at(sorted.len().saturating_sub(1))
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let built = Command::new("cargo")
        .args(["build", "--release", "--quiet"])
        .status()
        .expect("cargo builds the release binary");
    assert!(built.success());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the fake server");
    // When each request arrived (for the in-flight profile of the last batch).
    let arrivals = std::sync::Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = arrivals.clone();
    let streams = Mutex::new(HashMap::new());
    let fake = runtime.block_on(FakeOpenAi::with_handler(move |req| {
        seen.lock().expect("arrivals").push(req.arrived);
        answer_cached(req, &streams).paced(latency())
    }));
    let url = fake.url();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let workspaces: Vec<PathBuf> = (0..WORKSPACES)
        .map(|i| {
            let ws = tmp.path().join("repos").join(format!("pipeline-{i:02}"));
            copy_tree(Path::new("examples/orders-pipeline"), &ws);
            ws
        })
        .collect();

    let exchanges = WORKSPACES * EXCHANGES_PER_RUN;
    let spread = latency() * (exchanges as u32) / JOBS as u32;
    let ideal = spread.max(latency() * CHAIN as u32);
    println!(
        "{WORKSPACES} workspaces × the deployment stage ({exchanges} exchanges), fake model with {} ms latency, --jobs {JOBS}, release binary",
        latency().as_millis()
    );
    println!("  ideal: {:.0} ms", ideal.as_secs_f64() * 1000.0);
    println!(
        "  creating a file in the temp directory: {:.0} µs (figures rise with it; see `file_creation`)",
        settled_file_creation(tmp.path()).as_secs_f64() * 1e6
    );
    let (mut batch, mut apart8, mut apart20) = (Vec::new(), Vec::new(), Vec::new());
    let mut alone = Vec::new();
    let mut batch_cpu: Vec<(Duration, Duration)> = Vec::new();
    let rounds = rounds();
    for round in 0..rounds {
        let dir = |what: &str| tmp.path().join(format!("{what}-{round}"));
        alone.push(separate_processes(&url, &workspaces[..1], &dir("one"), 1));
        if std::env::var_os("HATRACK_BENCH_ALONE").is_some() {
            continue;
        }
        arrivals.lock().expect("arrivals").clear();
        let (fake_before, hatrack_before) = cpu_used();
        let started = Instant::now();
        batch.push(one_process(&url, &workspaces, &dir("batch")));
        let (fake_after, hatrack_after) = cpu_used();
        batch_cpu.push((hatrack_after - hatrack_before, fake_after - fake_before));
        if round == rounds - 1 {
            profile(started, &arrivals.lock().expect("arrivals"));
            println!(
                "  files and directories one batch wrote: {}",
                entries(&dir("batch"))
            );
        }
        if std::env::var_os("HATRACK_BENCH_BATCH_ONLY").is_some() {
            continue;
        }
        apart8.push(separate_processes(&url, &workspaces, &dir("p8"), 8));
        apart20.push(separate_processes(
            &url,
            &workspaces,
            &dir("p20"),
            WORKSPACES,
        ));
    }
    let ratio = |samples: &[Duration]| {
        let mut s = samples.to_vec();
        s.sort();
        s[s.len() / 2].as_secs_f64() / ideal.as_secs_f64()
    };
    stats(
        &format!(
            "one workspace alone (its chain: {} ms)",
            (latency() * CHAIN as u32).as_millis()
        ),
        alone,
    );
    if batch.is_empty() {
        return;
    }
    let r_batch = ratio(&batch);
    stats("one process (a batch)", batch);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        ms(v[v.len() / 2])
    };
    println!(
        "  CPU per batch (median): hatrack {:.0} ms, the fake server {:.0} ms (on the same cores)",
        median(batch_cpu.iter().map(|c| c.0).collect()),
        median(batch_cpu.iter().map(|c| c.1).collect())
    );
    if apart8.is_empty() {
        println!("  median / ideal: batch {r_batch:.2}× (target ≤ 1.30×)");
        return;
    }
    let (r8, r20) = (ratio(&apart8), ratio(&apart20));
    stats("20 processes, 8 at a time (xargs -P 8)", apart8);
    stats(
        "20 processes at once (each with its own --jobs 16: up to 320 in flight)",
        apart20,
    );
    println!(
        "  median / ideal: batch {r_batch:.2}× (target ≤ 1.30×), 8 at a time {r8:.2}×, all at once {r20:.2}×"
    );
    println!("  fake server requests served: {}", fake.count());
}
