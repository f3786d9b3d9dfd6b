//! What a step would be shown in a recorded run (its artifacts, the verdicts shown to the
//! completion judge), and the request it would send now compared with the one it sent.

use std::io::Write;
use std::path::Path;

use crate::definition::Stage;
use crate::model::transcript::{read_exchanges, request_lines};
use crate::run::artifacts::Artifact;
use crate::run::context::PriorVerdict;
use crate::run::rundir::EXCHANGES_FILE;
use crate::run::steps::{Step, Target};
use crate::Error;

/// With `--against`: the difference between the step's first recorded request and the one
/// it would send now. Exit 0 when identical, 1 when it differs or none was recorded.
pub fn compare_with_recorded(
    out: &mut dyn Write,
    dir: &Path,
    step: &str,
    body: &serde_json::Value,
) -> Result<i32, Error> {
    let recorded = read_exchanges(&dir.join(EXCHANGES_FILE))?;
    let Some(old) = recorded.iter().find(|e| e.step == step && e.attempt == 1) else {
        let _ = writeln!(
            out,
            "{step}: {} has no recorded request for this step",
            dir.display()
        );
        return Ok(1);
    };
    let old_text = request_lines(&old.request);
    let new_text = request_lines(body);
    if old_text == new_text {
        let _ = writeln!(
            out,
            "{step}: no change — the request is identical to the one recorded in {}",
            dir.display()
        );
        return Ok(0);
    }
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    let _ = write!(
        out,
        "{}",
        diff.unified_diff().context_radius(3).header(
            &format!("{step} (recorded in {})", dir.display()),
            &format!("{step} (now)")
        )
    );
    Ok(1)
}

/// The artifacts a step would have been shown in that run: a hat sees those of the hats
/// before it, every judge sees all of them. One that cannot be read is an error (see
/// [`hat_artifacts`]).
pub(super) fn produced_before(
    run_dir: &Path,
    stage: &Stage,
    step: &Step<'_>,
) -> Result<Vec<(String, Vec<Artifact>)>, Error> {
    let hats = match step.target {
        Target::Hat(hat) => {
            let index = stage
                .hats
                .iter()
                .position(|h| h.name == hat.name)
                .unwrap_or(0);
            &stage.hats[..index]
        }
        _ => &stage.hats[..],
    };
    hats.iter()
        .map(|h| Ok((h.name.clone(), hat_artifacts(run_dir, &h.name)?)))
        .collect()
}

/// A hat's artifacts as a run wrote them, in name order (the order a run quotes them in).
/// One that cannot be read (or listed) is an error naming it: rendering without it would
/// show a request that differs from the recorded one for a reason that is not a change.
fn hat_artifacts(run_dir: &Path, hat: &str) -> Result<Vec<Artifact>, Error> {
    let root = run_dir.join("artifacts").join(hat);
    let unreadable = |path: &Path, why: String| {
        Error::usage(format!(
            "{}: an artifact of hat `{hat}` in the run rendered against cannot be read ({why}); the request would differ from the recorded one for a reason that is not a change — restore the file from where the run directory came from, or render without --against",
            path.display()
        ))
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = match entry {
            Ok(e) => e,
            // No artifacts directory: the hat wrote none.
            Err(e)
                if e.depth() == 0
                    && e.io_error()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                break
            }
            Err(e) => {
                let path = e.path().unwrap_or(&root).to_path_buf();
                return Err(unreadable(&path, e.to_string()));
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let rel =
            crate::safe_fs::slash_path(entry.path().strip_prefix(&root).unwrap_or(entry.path()));
        let content = crate::safe_fs::read_bounded_string(
            entry.path(),
            crate::safe_fs::Kind::RUN_FILE,
            crate::safe_fs::Links::Within(run_dir),
        )
        .map_err(|e| unreadable(entry.path(), e.why.to_string()))?;
        out.push(Artifact {
            name: format!("artifacts/{hat}/{rel}"),
            content,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The verdicts a run showed its completion judge, from its report.json. A missing or
/// unreadable report is an error naming the file: rendering without those verdicts would
/// show a request that differs from the recorded one for a reason that is not a change.
pub(super) fn prior_verdicts(run_dir: &Path) -> Result<Vec<PriorVerdict>, Error> {
    let report = crate::report::json::read_recorded(
        run_dir,
        |e| {
            Error::usage(format!(
                "{e}; `render signal --against` needs the verdicts that run showed its completion judge (a run that stopped early has none: `hatrack run --resume {}` finishes it)",
                run_dir.display()
            ))
        },
        |path, e| {
            Error::usage(format!(
                "{}:{}: not a report this hatrack can read: {e}; re-create it with `hatrack replay {}`",
                path.display(),
                e.line(),
                run_dir.display()
            ))
        },
    )?;

    Ok(report
        .requirements
        .iter()
        .filter(|r| r.kind != crate::report::RequirementKind::Signal)
        .map(|r| PriorVerdict {
            id: r.id.clone(),
            verdict: r.shown_verdict().as_str().into(),
            finding: r.finding.clone(),
        })
        .collect())
}
