//! The short plain-text table printed on stdout after a run. No colour codes: the caller
//! decides whether to colour anything.

use super::model::Report;
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

/// One line per step (step, status, source, tokens, time), the verdict counts, the outcome
/// line with the exit code, and the gate note. Ends with a newline.
pub fn summary_table(report: &Report) -> String {
    let priced = report.run.cost.is_some();
    let mut header = vec![
        "step",
        "status",
        "source",
        "attempts",
        "tokens in/out",
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
                format!(
                    "{} / {}",
                    text::int(s.usage.prompt_tokens),
                    text::int(s.usage.completion_tokens)
                ),
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
        format!(
            "{} / {}",
            text::int(u.prompt_tokens),
            text::int(u.completion_tokens)
        ),
        text::duration(report.run.duration_ms),
    ];
    if priced {
        total.push(text::usd(report.run.cost.as_ref()));
    }
    rows.push(total);

    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers right-aligned, words left-aligned.
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

    let mut out = format!(
        "hatrack · stage {} · run {}\n\n",
        report.stage.name, report.run.id
    );
    out.push_str(&line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    for row in &rows[..rows.len() - 1] {
        out.push_str(&line(row));
    }
    let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(rule));
    out.push('\n');
    out.push_str(&line(&rows[rows.len() - 1]));
    out.push('\n');

    let c = report.outcome.counts;
    out.push_str(&format!(
        "verdicts: {}, {} unmet, {} unknown · {} · {}\n",
        text::met_count(report),
        c.unmet,
        c.unknown,
        text::blocking(report),
        text::models(report)
    ));
    for reason in report.outcome.reasons.iter().take(MAX_LINES) {
        out.push_str(&format!("  why: {}\n", text::short(&reason.message, 110)));
    }
    more(&mut out, report.outcome.reasons.len());
    out.push('\n');
    out.push_str(&text::outcome_line(report));
    out.push('\n');
    out.push_str(&text::gate_note(report));
    out.push('\n');
    out
}
