//! What an eval reads and writes: the suite it ran with (suite.json), the scored eval files
//! with the few lines a terminal shows, and two evals compared into a directory.

use std::io::Write;
use std::path::Path;

use super::labels::{LabelErrors, Suite};
use super::{render, EvalReport, Thresholds, EVAL_FILE, SUITE_FILE};
use crate::cli::{EvalCompareArgs, GlobalArgs};
use crate::Error;

pub(super) fn label_error(e: LabelErrors) -> Error {
    Error::usage(format!("labels refused:\n{e}"))
}

pub(super) fn write_suite_file(dir: &Path, suite: &Suite) -> Result<(), Error> {
    let mut json = serde_json::to_string_pretty(suite).expect("suite.json serialises");
    json.push('\n');
    crate::safe_fs::write_file(dir, SUITE_FILE, json.as_bytes(), true)?;
    Ok(())
}

pub(super) fn read_suite_file(dir: &Path) -> Result<Suite, Error> {
    let path = dir.join(SUITE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "{}: cannot read the labels the eval ran with ({e}); name the suite: `hatrack eval SUITE --from {}`",
            path.display(),
            dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
}

/// Scores the runs recorded in `from` against the suite's labels and writes the eval files
/// into `to`; prints the summary; returns the eval's exit code.
pub(super) fn score(
    from: &Path,
    to: &Path,
    (suite, suite_dir): (&Suite, &Path),
    thresholds: Thresholds,
    allow_stale: bool,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let runs = super::read_runs(from, suite)?;
    super::check_recorded(suite, suite_dir, &runs, allow_stale).map_err(label_error)?;
    let report = super::evaluate(suite, &runs, &thresholds);
    crate::safe_fs::create_root(to)?;
    let mut written = Vec::new();
    for (name, text) in render::all(&report) {
        written.push(crate::safe_fs::write_file(to, name, text.as_bytes(), true)?);
    }
    if !global.quiet {
        let _ = write!(out, "{}", summary(&report));
        for path in written {
            let _ = writeln!(out, "wrote {}", path.display());
        }
    }
    Ok(report.exit_code())
}

/// The few lines a terminal shows.
fn summary(r: &EvalReport) -> String {
    let c = &r.counts;
    let mut s = format!(
        "eval: {} case(s), {} labelled verdict(s): {} right, {} wrong, {} abstained\n",
        c.cases, c.items, c.right, c.wrong, c.abstained
    );
    let line = |name: &str, m: &super::score::Metrics| {
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
        format!(
            "  {name:<8} TPR {}  TNR {}  κ {}  abstained {}\n",
            f(m.tpr.value),
            f(m.tnr.value),
            f(m.kappa),
            f(m.abstention.value)
        )
    };
    s.push_str(&line("all", &r.scores.all.overall));
    if let Some(h) = &r.scores.holdout {
        s.push_str(&line("holdout", &h.overall));
    }
    let g = &r.gate;
    s.push_str(&format!(
        "  gate: {} right, {} should have been blocked but passed, {} blocked but should have passed, {} without a gate\n",
        g.right, g.should_block_but_passed, g.blocked_but_should_pass, g.no_gate
    ));
    for t in &r.thresholds {
        s.push_str(&format!(
            "  {} {} on {}: {} — {}\n",
            t.flag,
            t.limit,
            r.thresholds_on,
            t.value
                .map_or("undefined".to_string(), |v| format!("{v:.2}")),
            if t.met { "met" } else { "NOT MET" }
        ));
    }
    s
}

/// `hatrack eval compare A B`: the two evals item by item, printed as Markdown and, with
/// `--out`, written as compare.json, compare.md and compare.html.
pub fn compare_dirs(
    args: &EvalCompareArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let read = |dir: &Path| -> Result<EvalReport, Error> {
        let path = dir.join(EVAL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::usage(format!(
                "{}: cannot read it ({e}); is it an eval directory?",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let names = (args.a.display().to_string(), args.b.display().to_string());
    let c = super::compare::compare(&a, &b, (&names.0, &names.1)).map_err(Error::usage)?;
    let md = super::compare::markdown(&c);
    if let Some(dir) = &args.out {
        crate::safe_fs::create_root(dir)?;
        let mut json = serde_json::to_string_pretty(&c).expect("compare.json serialises");
        json.push('\n');
        let [j, m, h] = super::compare::FILES;
        for (name, text) in [(j, json), (m, md.clone()), (h, super::compare::html(&c))] {
            let path = crate::safe_fs::write_file(dir, name, text.as_bytes(), true)?;
            if !global.quiet {
                let _ = writeln!(out, "wrote {}", path.display());
            }
        }
    }
    if !global.quiet || args.out.is_none() {
        let _ = write!(out, "{md}");
    }
    Ok(0)
}
