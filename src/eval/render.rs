//! The files an eval writes from its [`EvalReport`]: eval.json, eval.md, eval.html and
//! junit.xml. Renderers only: every number is already in the report. Nothing here reads a
//! clock, so scoring the same runs again writes the same bytes.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::score::{Metrics, Outcome, Rate};
use super::{EvalReport, GateOutcome, ScoreSet};
use crate::report::markdown::html_escape as esc;

/// The files, in the order they are written.
pub const FILES: [&str; 4] = ["eval.json", "eval.md", "eval.html", "junit.xml"];

/// Every file's name and text.
pub fn all(report: &EvalReport) -> Vec<(&'static str, String)> {
    let mut json = serde_json::to_string_pretty(report).expect("eval.json serialises");
    json.push('\n');
    vec![
        (FILES[0], json),
        (FILES[1], markdown(report)),
        (FILES[2], html(report)),
        (FILES[3], junit(report)),
    ]
}

/// `0.6 [0.31, 0.83]`, or `–` when undefined.
fn rate(r: &Rate) -> String {
    match (r.value, r.low, r.high) {
        (Some(v), Some(l), Some(h)) => {
            format!("{} ({}/{}) [{}, {}]", num(v), r.count, r.of, num(l), num(h))
        }
        _ => "–".to_string(),
    }
}

fn num(x: f64) -> String {
    format!("{x:.2}")
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), num)
}

fn kappa(m: &Metrics) -> String {
    match (m.kappa, m.kappa_low, m.kappa_high) {
        (Some(k), Some(l), Some(h)) => format!("{} [{}, {}]", num(k), num(l), num(h)),
        (Some(k), _, _) => num(k),
        _ => "–".to_string(),
    }
}

/// One row of a scores table: `| name | items | TPR | TNR | precision | abstain | acc | κ |`.
fn metrics_row(name: &str, m: &Metrics) -> String {
    let c = &m.confusion;
    format!(
        "| {name} | {} | {}/{}/{} | {}/{}/{} | {} | {} | {} | {} | {} ({}) | {} |\n",
        m.items,
        c.expected_unmet.unmet,
        c.expected_unmet.met,
        c.expected_unmet.unknown,
        c.expected_met.unmet,
        c.expected_met.met,
        c.expected_met.unknown,
        rate(&m.tpr),
        rate(&m.tnr),
        opt(m.precision),
        rate(&m.abstention),
        opt(m.accuracy),
        opt(m.majority_baseline),
        kappa(m),
    )
}

const SCORES_HEAD: &str = "| | items | defects: unmet/met/unknown | clean: unmet/met/unknown | TPR (defects caught) | TNR (clean passed) | precision | abstained | accuracy (majority baseline) | Cohen's κ [95% bootstrap] |\n|---|---|---|---|---|---|---|---|---|---|\n";

fn scores_md(title: &str, s: &ScoreSet, out: &mut String) {
    let _ = writeln!(out, "### {title}\n");
    out.push_str(SCORES_HEAD);
    out.push_str(&metrics_row("**overall**", &s.overall));
    for k in &s.by_kind {
        out.push_str(&metrics_row(&k.kind, &k.metrics));
    }
    for r in &s.by_requirement {
        out.push_str(&metrics_row(&format!("`{}`", r.id), &r.metrics));
    }
    out.push('\n');
}

fn gate_word(o: GateOutcome) -> &'static str {
    match o {
        GateOutcome::ShouldBlockButPassed => "**should block, but passed**",
        GateOutcome::BlockedButShouldPass => "blocked, but should pass",
        GateOutcome::NoGate => "no gate (the run failed)",
        GateOutcome::Right => "right",
    }
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn markdown(r: &EvalReport) -> String {
    let mut out = String::new();
    let c = &r.counts;
    let _ = writeln!(
        out,
        "# Eval of stage {}: {} case(s), {} labelled verdict(s)\n",
        r.stage.as_deref().unwrap_or("?"),
        c.cases,
        c.items
    );
    let _ = writeln!(
        out,
        "{} right, {} wrong, {} abstained (unknown), {} labelled `any` (not scored). Models: {} (hats), {} (judges); samples: {}.\n",
        c.right, c.wrong, c.abstained, c.unscored,
        list(&r.models), list(&r.judge_models), r.samples
    );
    let _ = writeln!(out, "{}\n", checks_line(r));
    thresholds_md(r, &mut out);
    let g = &r.gate;
    let _ = writeln!(
        out,
        "## Gate: expected vs exit code\n\n{} right, {} should have been blocked but passed, {} blocked but should have passed, {} without a gate.\n\n| case | split | expected | exit | result |\n|---|---|---|---|---|",
        g.right, g.should_block_but_passed, g.blocked_but_should_pass, g.no_gate
    );
    for row in &g.cases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.case,
            row.split.as_str(),
            row.expected.as_str(),
            row.exit_code,
            gate_word(row.outcome)
        );
    }
    out.push_str(
        "\n## Verdicts against labels (positive = unmet: a defect the gate should catch)\n\n",
    );
    if let Some(h) = &r.scores.holdout {
        scores_md("Holdout", h, &mut out);
    }
    if let Some(d) = &r.scores.dev {
        scores_md("Dev", d, &mut out);
    }
    scores_md("All cases", &r.scores.all, &mut out);
    if let Some(a) = &r.scores.artifact_cases {
        scores_md("Cases with fixed artifacts (judges only)", a, &mut out);
    }
    if let Some(e) = &r.scores.end_to_end_cases {
        scores_md("Cases run end to end (hats included)", e, &mut out);
    }
    misses_md(r, &mut out);
    out
}

/// What checks did, in one sentence (markdown and HTML).
fn checks_line(r: &EvalReport) -> String {
    let k = &r.checks;
    if k.cases_with_checks == 0 {
        return "Checks: none applied (the judges alone, as `--without-checks` runs them).".into();
    }
    format!(
        "Checks: applied in {} of {} case(s); a check's veto decided {} labelled verdict(s): {} on a labelled defect, {} on an item labelled met.",
        k.cases_with_checks, r.counts.cases, k.vetoed, k.vetoed_right, k.vetoed_wrong
    )
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "?".to_string()
    } else {
        v.join(", ")
    }
}

fn thresholds_md(r: &EvalReport, out: &mut String) {
    if r.thresholds.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Thresholds (on {})\n", r.thresholds_on);
    for t in &r.thresholds {
        let _ = writeln!(
            out,
            "- {} {}: {} — {}",
            t.flag,
            t.limit,
            opt(t.value),
            if t.met { "met" } else { "**not met**" }
        );
    }
    out.push('\n');
}

fn misses_md(r: &EvalReport, out: &mut String) {
    let wrong: Vec<_> = r
        .cases
        .iter()
        .flat_map(|c| c.items.iter().map(move |i| (c, i)))
        .filter(|(_, i)| matches!(i.outcome, Outcome::Wrong | Outcome::Abstained))
        .collect();
    if wrong.is_empty() {
        return;
    }
    out.push_str("## Wrong and abstained verdicts\n\n| case | requirement | expected | got | why (label) | judge's finding |\n|---|---|---|---|---|---|\n");
    for (c, i) in wrong {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            c.name,
            i.id,
            i.expected.as_str(),
            i.got.as_str(),
            md_cell(&i.why),
            md_cell(&crate::safe_fs::escaped_excerpt(&i.finding))
        );
    }
    out.push('\n');
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .5em;font-size:90%;vertical-align:top}th{background:#f4f4f4}.right{background:#dff0d8}.wrong{background:#f2dede}.abstained{background:#fcf8e3}.unscored{background:#eee;color:#777}details{max-width:28em}summary{cursor:pointer}";

/// Cases × requirements, each cell right / wrong / abstained with the label's why-line and
/// the judge's finding and evidence on expand; the gate view and the scores above.
pub fn html(r: &EvalReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hatrack eval</title><style>{STYLE}</style></head><body>\n"
    );
    let md = markdown(r);
    let title = md.lines().next().unwrap_or("").trim_start_matches("# ");
    let _ = writeln!(out, "<h1>{}</h1>", esc(title));
    let _ = writeln!(out, "<p>{}</p>", esc(&checks_line(r).replace('`', "")));
    gate_html(r, &mut out);
    for (name, set) in [
        ("Holdout", r.scores.holdout.as_ref()),
        ("Dev", r.scores.dev.as_ref()),
        ("All cases", Some(&r.scores.all)),
        (
            "Cases with fixed artifacts (judges only)",
            r.scores.artifact_cases.as_ref(),
        ),
        (
            "Cases run end to end (hats included)",
            r.scores.end_to_end_cases.as_ref(),
        ),
    ] {
        if let Some(set) = set {
            scores_html(name, set, &mut out);
        }
    }
    grid_html(r, &mut out);
    out.push_str("</body></html>\n");
    out
}

fn gate_html(r: &EvalReport, out: &mut String) {
    out.push_str("<h2>Gate: expected vs exit code</h2>\n<table><tr><th>case</th><th>split</th><th>expected</th><th>exit</th><th>result</th></tr>\n");
    for row in &r.gate.cases {
        let class = if row.outcome == GateOutcome::Right {
            "right"
        } else {
            "wrong"
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(&row.case),
            row.split.as_str(),
            row.expected.as_str(),
            row.exit_code,
            gate_word(row.outcome).replace("**", "")
        );
    }
    out.push_str("</table>\n");
}

fn scores_html(name: &str, s: &ScoreSet, out: &mut String) {
    let _ = writeln!(out, "<h2>{name}</h2>\n<table><tr><th></th><th>items</th><th>TPR (defects caught)</th><th>TNR (clean passed)</th><th>precision</th><th>abstained</th><th>accuracy (majority)</th><th>κ [95%]</th></tr>");
    let row = |label: &str, m: &Metrics| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>\n",
            esc(label), m.items, rate(&m.tpr), rate(&m.tnr), opt(m.precision), rate(&m.abstention),
            opt(m.accuracy), opt(m.majority_baseline), kappa(m)
        )
    };
    out.push_str(&row("overall", &s.overall));
    for k in &s.by_kind {
        out.push_str(&row(&k.kind, &k.metrics));
    }
    for q in &s.by_requirement {
        out.push_str(&row(&q.id, &q.metrics));
    }
    out.push_str("</table>\n");
}

fn grid_html(r: &EvalReport, out: &mut String) {
    let ids: std::collections::BTreeSet<&str> = r
        .cases
        .iter()
        .flat_map(|c| c.items.iter().map(|i| i.id.as_str()))
        .collect();
    out.push_str("<h2>Cases × requirements</h2>\n<table><tr><th>case</th>");
    for id in &ids {
        let _ = write!(out, "<th>{}</th>", esc(id));
    }
    out.push_str("</tr>\n");
    for c in &r.cases {
        let _ = write!(
            out,
            "<tr><th>{} ({}, {})</th>",
            esc(&c.name),
            c.split.as_str(),
            esc(&c.mode)
        );
        for id in &ids {
            match c.items.iter().find(|i| i.id == *id) {
                None => out.push_str("<td></td>"),
                Some(i) => {
                    let class = match i.outcome {
                        Outcome::Right => "right",
                        Outcome::Wrong => "wrong",
                        Outcome::Abstained => "abstained",
                        Outcome::Unscored => "unscored",
                    };
                    let evidence: String = i
                        .evidence
                        .iter()
                        .map(|e| {
                            format!(
                                "<br>{}: “{}”{}",
                                esc(&e.source),
                                esc(&e.quote),
                                if e.grounded { "" } else { " (ungrounded)" }
                            )
                        })
                        .collect();
                    let _ = write!(
                        out,
                        "<td class=\"{class}\"><details><summary>{} (expected {})</summary>why: {}<br>judge: {}{}</details></td>",
                        i.got.as_str(),
                        i.expected.as_str(),
                        esc(&i.why),
                        esc(&i.finding),
                        evidence
                    );
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// One suite per case, one test case per label: a wrong or abstained verdict is a failure,
/// a label `any` is skipped with its why-line.
pub fn junit(r: &EvalReport) -> String {
    let mut junit = quick_junit::Report::new("hatrack eval");
    for c in &r.cases {
        let mut suite = TestSuite::new(c.name.as_str());
        suite.add_property(Property::new("split", c.split.as_str()));
        suite.add_property(Property::new("labels", c.labels_file.as_str()));
        for i in &c.items {
            let detail = format!(
                "expected {}, got {} ({}:{}: {})",
                i.expected.as_str(),
                i.got.as_str(),
                c.labels_file,
                i.label_line,
                i.why
            );
            let status = match i.outcome {
                Outcome::Right => TestCaseStatus::success(),
                Outcome::Wrong | Outcome::Abstained => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let kind = if i.outcome == Outcome::Wrong {
                        "wrong"
                    } else {
                        "abstained"
                    };
                    s.set_type(kind)
                        .set_message(detail)
                        .set_description(i.finding.as_str());
                    s
                }
                Outcome::Unscored => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_type("any")
                        .set_message(format!("labelled any: {}", i.why));
                    s
                }
            };
            let mut case = TestCase::new(i.id.as_str(), status);
            case.set_classname(c.name.as_str());
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    let mut xml = junit.to_string().unwrap_or_default();
    if !xml.ends_with('\n') {
        xml.push('\n');
    }
    xml
}
