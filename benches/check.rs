//! How long `hatrack check` takes to load the whole H·AI·K·U corpus (24 studios, 120
//! stages, ~900 files) through `definition::load_tree`. Target: well under 100 ms.
//!
//! Run with `cargo bench --bench check`. Skips, with a message, when the corpus is absent —
//! except under `CI=true`, where that is a failure (exit 1).

use std::path::PathBuf;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 20;

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/haiku-studios");
    if !corpus.is_dir() {
        let message = format!(
            "{} is not present: the bench needs ../shared beside the repository",
            corpus.display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            eprintln!("CI=true: {message}");
            std::process::exit(1);
        }
        println!("skipped: {message}");
        return;
    }
    // One warm-up load fills the OS file cache; it also sanity-checks what is timed.
    let tree = hatrack::definition::load_tree(&corpus);
    let stages: usize = tree.studios.iter().map(|s| s.stages.len()).sum();
    println!(
        "load_tree on {}: {} studios, {} stages, {} diagnostics",
        corpus.display(),
        tree.studios.len(),
        stages,
        tree.diagnostics.len()
    );
    let mut times: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            let start = Instant::now();
            let tree = hatrack::definition::load_tree(&corpus);
            let elapsed = start.elapsed();
            std::hint::black_box(tree);
            elapsed
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{ITERATIONS} iterations: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[ITERATIONS / 2]),
        ms(times[ITERATIONS - 1])
    );
}
