//! A diff as plain text or Markdown (JSON is the [`RunDiff`] itself).

use super::RunDiff;

fn delta(a: u64, b: u64) -> String {
    // In i128: u64 values (up to 2^64 - 1) never overflow it, and never wrap negative.
    let d = i128::from(b) - i128::from(a);
    if d > 0 {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

fn money(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.4}")).unwrap_or_else(|| "-".into())
}

/// The diff for a terminal (`md` false) or as Markdown.
pub fn render_text(d: &RunDiff, md: bool) -> String {
    let mut o = String::new();
    o.push_str(&if md {
        format!("## hatrack diff\n\nA: `{}`  \nB: `{}`\n", d.run_a, d.run_b)
    } else {
        format!("A: {}\nB: {}\n", d.run_a, d.run_b)
    });
    o.push_str(&requirements_text(d, md));
    o.push_str(&heading(
        &format!("requests changed (step turns): {}", d.changed_steps.len()),
        md,
    ));
    for s in &d.changed_steps {
        let line = format!("  {} turn {} ({})\n", s.step, s.turn, s.change);
        o.push_str(&with_diff(line, &s.diff, md));
    }
    o.push_str(&heading(
        &format!("artifacts changed: {}", d.artifacts.len()),
        md,
    ));
    for a in &d.artifacts {
        let line = format!("  {} ({})\n", a.path, a.change);
        o.push_str(&with_diff(line, &a.diff, md));
    }
    o.push_str(&costs_text(d, md));
    o
}

/// A section heading of the text or Markdown rendering.
fn heading(title: &str, md: bool) -> String {
    if md {
        format!("\n### {title}\n\n")
    } else {
        format!("\n== {title}\n")
    }
}

/// A changed request or artifact's line, followed by its diff when it has one.
fn with_diff(mut line: String, diff: &str, md: bool) -> String {
    if !diff.is_empty() {
        line.push_str(&fenced(diff, md));
    }
    line
}

/// The verdicts that flipped, then the requirements only one run has.
fn requirements_text(d: &RunDiff, md: bool) -> String {
    let mut o = heading(&format!("verdicts: {} flipped", d.flipped), md);
    for v in d.verdicts.iter().filter(|v| v.flipped) {
        o.push_str(&format!(
            "{}{}: {} → {}\n",
            if md { "- " } else { "  " },
            v.id,
            v.a,
            v.b
        ));
    }
    if d.flipped == 0 {
        o.push_str("  no verdict flipped\n");
    }
    for (label, list) in [
        ("requirements added", &d.added_requirements),
        ("requirements removed", &d.removed_requirements),
    ] {
        if !list.is_empty() {
            o.push_str(&heading(label, md));
            for id in list {
                o.push_str(&format!("  {id}\n"));
            }
        }
    }
    o
}

/// The table of tokens, time and cost per step and in total: Markdown, or aligned columns.
fn costs_text(d: &RunDiff, md: bool) -> String {
    let mut o = heading("tokens, time and cost", md);
    if md {
        o.push_str("| step | tokens A | tokens B | Δ | ms A | ms B | Δ | cost A | cost B |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        o.push_str(&text_row(&[
            "step", "tokens A", "tokens B", "Δ", "ms A", "ms B", "Δ", "cost A", "cost B",
        ]));
    }
    for c in d.steps.iter().chain(std::iter::once(&d.total)) {
        let cells = [
            c.step.clone(),
            c.tokens_a.to_string(),
            c.tokens_b.to_string(),
            delta(c.tokens_a, c.tokens_b),
            c.ms_a.to_string(),
            c.ms_b.to_string(),
            delta(c.ms_a, c.ms_b),
            money(c.cost_a),
            money(c.cost_b),
        ];
        if md {
            o.push_str(&format!("| {} |\n", cells.join(" | ")));
        } else {
            o.push_str(&text_row(&cells.each_ref().map(String::as_str)));
        }
    }
    o
}

/// One row of the plain-text cost table, in its fixed columns.
fn text_row(cells: &[&str; 9]) -> String {
    format!(
        "  {:<28} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
    )
}

fn fenced(diff: &str, md: bool) -> String {
    if md {
        format!("\n```diff\n{}\n```\n\n", diff.trim_end())
    } else {
        diff.lines().map(|l| format!("    {l}\n")).collect()
    }
}
