//! The short plain-text table printed on stdout after a run. No colour codes: the caller
//! decides whether to colour anything.

use super::model::{Report, StepStatus};
use super::text;

/// Lines of "why" shown before pointing at the full reports.
const MAX_LINES: usize = 10;

fn more(out: &mut String, total: usize) {
    if total > MAX_LINES {
        out.push_str(&format!(
            "  … {} more in report.md / report.html\n",
            total - MAX_LINES
        ));
    }
}

/// One line per step (step, status, source, tokens in / cached / out, time), the run's
/// total with its cached share of the prompt tokens, the verdict counts, the outcome line
/// with the exit code, and the gate note. Ends with a newline.
pub fn summary_table(report: &Report) -> String {
    let priced = report.run.cost.is_some();
    let mut header = vec![
        "step",
        "status",
        "source",
        "attempts",
        "tokens in/cached/out",
        "time",
    ];
    if priced {
        header.push("cost");
    }
    let mut rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            let mut row = vec![
                s.id.clone(),
                text::step_status(s.status).to_string(),
                s.source.clone(),
                s.attempts.to_string(),
                text::tokens(&s.usage),
                text::duration(s.duration_ms),
            ];
            if priced {
                row.push(text::usd(s.cost.as_ref()));
            }
            row
        })
        .collect();
    let u = report.run.usage;
    let mut total = vec![
        "total".into(),
        String::new(),
        String::new(),
        report
            .steps
            .iter()
            .fold(0u32, |t, s| t.saturating_add(s.attempts))
            .to_string(),
        format!("{} ({} cached)", text::tokens(&u), text::cached_share(&u)),
        text::duration(report.run.duration_ms),
    ];
    if priced {
        total.push(text::usd(report.run.cost.as_ref()));
    }
    rows.push(total);
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = format!(
        "hatrack · stage {} · run {}\n\n",
        report.stage.name, report.run.id
    );
    out.push_str(&table(&header, &rows));
    out.push('\n');
    out.push_str(&footer(report));
    out
}

/// The header, the step rows, a rule and the total row, columns aligned (numbers to the
/// right, words to the left).
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let right = [false, false, false, true, true, true, true];
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    let (last, steps) = rows.split_last().expect("the total row is always there");
    for row in steps {
        out.push_str(&line(row));
    }
    let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(rule));
    out.push('\n');
    out.push_str(&line(last));
    out
}

/// The verdict counts, why the signal is not met, what to do about steps that did not fit
/// the context window, the outcome line and the gate note.
fn footer(report: &Report) -> String {
    let c = report.outcome.counts;
    let mut out = format!(
        "verdicts: {}, {} unmet, {} unknown · {} · {}\n",
        text::met_count(report),
        c.unmet,
        c.unknown,
        text::blocking(report),
        text::models(report)
    );
    for reason in report.outcome.reasons.iter().take(MAX_LINES) {
        out.push_str(&format!("  why: {}\n", text::short(&reason.message, 110)));
    }
    more(&mut out, report.outcome.reasons.len());
    let overflowed: Vec<&str> = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::ContextExceeded)
        .map(|s| s.id.as_str())
        .collect();
    if !overflowed.is_empty() {
        out.push_str(&format!(
            "context exceeded: {} (verdicts unknown; the rest of the stage ran)\nhint: {}\n",
            overflowed.join(", "),
            crate::verdict::CONTEXT_HINT
        ));
    }
    out.push('\n');
    out.push_str(&text::outcome_line(report));
    out.push('\n');
    out.push_str(&text::gate_note(report).to_string());
    out.push('\n');
    out
}
