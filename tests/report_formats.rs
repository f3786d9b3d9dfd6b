//! The report formats, checked for what a reader of each one notices: the status line and
//! the failing table of the PR comment, the failures CI shows from junit.xml, the JSON that
//! round-trips byte for byte, the stdout summary, and that no secret reaches disk.
//!
//! All reports here are the hand-written FIXTURE in `report_fixture`, not model output.

mod report_fixture;

use hatrack::report::html::HtmlExporter;
use hatrack::report::json::JsonExporter;
use hatrack::report::junit::JunitExporter;
use hatrack::report::markdown::{MarkdownExporter, MAX_BYTES};
use hatrack::report::*;
use report_fixture::{met_report, sample_report, HOSTILE};

fn render(exporter: &dyn Exporter, report: &Report) -> String {
    exporter.render(report).expect("the fixture renders")
}

// ---------- report.json ----------

#[test]
fn json_round_trips_and_is_byte_identical_across_renders() {
    let report = sample_report();
    let first = render(&JsonExporter, &report);
    let second = render(&JsonExporter, &report.clone());
    assert_eq!(first, second, "two renders of the same report differ");
    assert!(first.ends_with("}\n"), "report.json ends with a newline");
    let back: Report = serde_json::from_str(&first).expect("report.json parses as a Report");
    assert_eq!(back, report);
    // Re-rendering the parsed report gives the same bytes (what replay relies on).
    assert_eq!(render(&JsonExporter, &back), first);
}

#[test]
fn json_keys_follow_the_struct_order() {
    let text = render(&JsonExporter, &sample_report());
    let order = [
        "\"schema_version\"",
        "\"hatrack_version\"",
        "\"stage\"",
        "\"run\"",
        "\"outcome\"",
        "\"steps\"",
        "\"requirements\"",
        "\"inputs\"",
        "\"warnings\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} missing")))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "top-level keys out of order: {positions:?}"
    );
    assert!(text.starts_with("{\n  \"schema_version\": 3,\n"));
    assert!(text.contains("\"verdict\": \"unknown\""));
    assert!(text.contains("\"kind\": \"hat-constraint\""));
}

// ---------- report.md ----------

#[test]
fn markdown_starts_with_the_status_and_the_gate_note() {
    let md = render(&MarkdownExporter, &sample_report());
    let first = md.lines().next().unwrap();
    assert!(
        first.starts_with("## ❌ signal NOT met"),
        "first line: {first}"
    );
    assert!(first.contains("(exit 1)"));
    assert!(md.contains("a human approval is still required"));
    assert!(md.contains("2 met · 2 unmet · 3 unknown"));

    let md = render(&MarkdownExporter, &met_report());
    let first = md.lines().next().unwrap();
    assert!(first.starts_with("## ✅ signal met"), "first line: {first}");
    assert!(md.contains("Every requirement is met."));
    assert!(!md.contains("Requirements not met"));
    assert!(md.contains("no human approval needed"));
}

#[test]
fn markdown_lists_unmet_before_unknown_and_leaves_met_out() {
    let md = render(&MarkdownExporter, &sample_report());
    let table_start = md.find("### Requirements not met").expect("failing table");
    let table_end = table_start + md[table_start..].find("### Steps").expect("steps table");
    let table = &md[table_start..table_end];
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ❌") || l.starts_with("| ❔"))
        .collect();
    let ids: Vec<&str> = rows
        .iter()
        .map(|row| row.split('`').nth(1).unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "pipeline-engineer/anti-pattern/2",
            "signal/2",
            "sre/anti-pattern/1",
            "reliability/check/1",
            "reliability/check/2",
        ]
    );
    assert!(table.contains("MUST NOT"));
    assert!(table.contains("SHOULD (advisory)"));
    assert!(table.contains("`review/reliability`"));
    // An unknown row says why hatrack could not rule, not what the judge claimed.
    let ungrounded = rows
        .iter()
        .find(|r| r.contains("sre/anti-pattern/1"))
        .unwrap();
    assert!(ungrounded.contains("ungrounded evidence"), "{ungrounded}");
    assert!(
        !table.contains("signal/1"),
        "a met requirement is in the failing table"
    );
}

#[test]
fn markdown_steps_table_shows_status_source_attempts_tokens_time() {
    let md = render(&MarkdownExporter, &sample_report());
    let row = md
        .lines()
        .find(|l| l.starts_with("| `review/reliability`"))
        .expect("review step row");
    assert!(row.contains("unparseable"), "{row}");
    assert!(row.contains("| live |"), "{row}");
    assert!(row.contains("| 3 |"), "{row}");
    assert!(row.contains("9,400 / 0 / 3,100"), "{row}");
    assert!(row.contains("31.0 s"), "{row}");
    assert!(md
        .lines()
        .any(|l| l.starts_with("| `hat/sre`") && l.contains("replayed")));
}

#[test]
fn markdown_details_mark_grounding_and_agreement() {
    let md = render(&MarkdownExporter, &sample_report());
    assert_eq!(md.matches("<details").count(), 4, "one block per judge");
    assert!(md.contains(
        "Evidence from `artifacts/sre/runbook.md` — ⚠️ **ungrounded: the quote does not occur in artifacts/sre/runbook.md**"
    ));
    assert!(md.contains("✓ quoted from the pipeline-engineer's artifact"));
    assert!(md.contains("agreement 3/5 unstable"));
    assert!(md.contains("agreement 5/5"));
    assert!(md.contains("judge claimed **met**, hatrack ruled **unknown**"));
    assert!(md.contains("attempt 2: expected value at line 1 column 1"));
    assert!(md.contains("### Warnings"));
    assert!(md.contains("truncated to 64 KiB"));
}

#[test]
fn markdown_shows_hostile_text_as_text_not_markup() {
    let md = render(&MarkdownExporter, &sample_report());
    assert!(
        !md.contains("<script>"),
        "raw <script> reached the PR comment"
    );
    assert!(md.contains("\\<script\\>alert"));
    // Quotes go into fenced blocks, verbatim.
    assert!(md.contains("```text\nconn = \"postgres://etl:hunter2@db:5432/orders\"  # <b>temporary</b> & quick\n```"));
}

#[test]
fn markdown_stays_under_the_pr_comment_limit_with_visible_cuts() {
    let mut report = sample_report();
    let template = report.requirements[1].clone();
    for i in 0..600 {
        let mut r = template.clone();
        r.id = format!("bulk/check/{i}");
        r.finding = format!("finding {i}: {}", "a very long finding ".repeat(400));
        r.evidence[0].quote = "x".repeat(5_000);
        report.requirements.push(r);
    }
    let md = render(&MarkdownExporter, &report);
    assert!(md.len() <= MAX_BYTES, "{} bytes", md.len());
    assert!(md.len() < 65_536);
    assert!(md.contains("[truncated:"), "long findings are cut visibly");
    assert!(md.contains("more not shown"), "cut rows are counted");
    assert!(
        md.contains("requirements not shown"),
        "cut details are counted"
    );
    assert!(md.lines().next().unwrap().starts_with("## ❌"));
    // Every <details> opened is closed.
    assert_eq!(
        md.matches("<details").count(),
        md.matches("</details>").count()
    );
}

// ---------- junit.xml ----------

fn junit(report: &Report) -> quick_junit::Report {
    let xml = render(&JunitExporter, report);
    assert!(xml.starts_with("<?xml"), "{}", &xml[..40.min(xml.len())]);
    quick_junit::Report::deserialize_from_str(&xml)
        .unwrap_or_else(|e| panic!("junit.xml does not parse back: {e}\n{xml}"))
}

fn case<'a>(suite: &'a quick_junit::TestSuite, id: &str) -> &'a quick_junit::TestCase {
    suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str().starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no test case {id}"))
}

#[test]
fn junit_has_one_suite_per_judge_and_one_case_per_requirement() {
    let parsed = junit(&sample_report());
    let names: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hats",
            "judge/pipeline-engineer",
            "judge/sre",
            "review/reliability",
            "signal"
        ]
    );
    // 7 requirements and one case per hat.
    assert_eq!(parsed.tests, 9);
    assert_eq!(
        parsed.failures, 4,
        "exactly the gate's reasons: 2 unmet + 2 blocking unknown"
    );
    assert_eq!(parsed.skipped, 1, "the advisory (SHOULD) unknown");
    let pe = &parsed.test_suites[1];
    assert_eq!(pe.time, Some(std::time::Duration::from_millis(4_200)));
    let met = case(pe, "pipeline-engineer/anti-pattern/1");
    assert!(matches!(
        met.status,
        quick_junit::TestCaseStatus::Success { .. }
    ));
    assert_eq!(met.classname.as_ref().unwrap().as_str(), "deployment");
    assert!(met.name.as_str().contains("Deploying without"));
}

#[test]
fn junit_failures_carry_the_finding_and_the_evidence() {
    let parsed = junit(&sample_report());
    let unmet = case(&parsed.test_suites[1], "pipeline-engineer/anti-pattern/2");
    let quick_junit::TestCaseStatus::NonSuccess {
        kind,
        message,
        description,
        ..
    } = &unmet.status
    else {
        panic!("unmet is not a failure: {:?}", unmet.status)
    };
    assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
    let message = message.as_ref().unwrap().as_str();
    assert!(
        message.starts_with("[MUST NOT, blocking] The DAG embeds"),
        "{message}"
    );
    assert!(
        message.contains(HOSTILE),
        "hostile text survives XML escaping: {message}"
    );
    let description = description.as_ref().unwrap().as_str();
    assert!(description.contains("evidence [grounded] artifacts/pipeline-engineer/dags/orders.py"));
    assert!(description.contains("<b>temporary</b> & quick"));

    let ungrounded = case(&parsed.test_suites[2], "sre/anti-pattern/1");
    let quick_junit::TestCaseStatus::NonSuccess {
        message,
        description,
        ..
    } = &ungrounded.status
    else {
        panic!("unknown is not a failure without --allow-unknown")
    };
    assert!(message
        .as_ref()
        .unwrap()
        .as_str()
        .contains("ungrounded evidence"));
    let description = description.as_ref().unwrap().as_str();
    assert!(description.contains("UNGROUNDED"));
    assert!(description.contains("claimed: met (hatrack ruled unknown)"));
}

#[test]
fn junit_skips_unknowns_when_they_are_allowed() {
    let mut report = sample_report();
    // What the gate decides with --allow-unknown: only the unmet ones block.
    report.outcome.allow_unknown = true;
    report
        .outcome
        .reasons
        .retain(|r| matches!(r.blocker, Blocker::Unmet { .. }));
    let parsed = junit(&report);
    assert_eq!(parsed.failures, 2, "only the unmet ones fail");
    assert_eq!(parsed.skipped, 3);
    let skipped = case(&parsed.test_suites[3], "reliability/check/1");
    let quick_junit::TestCaseStatus::Skipped { message, .. } = &skipped.status else {
        panic!("allowed unknown is not skipped: {:?}", skipped.status)
    };
    let message = message.as_ref().unwrap().as_str();
    assert!(message.contains("allowed by --allow-unknown"), "{message}");
    assert!(message.contains("no schema-valid answer"), "{message}");
}

#[test]
fn junit_is_byte_identical_across_renders() {
    let report = sample_report();
    assert_eq!(
        render(&JunitExporter, &report),
        render(&JunitExporter, &report)
    );
}

// ---------- report.html ----------

/// Text as it appears in the page source after HTML escaping (minijinja also escapes `/`).
fn in_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[test]
fn html_escapes_model_text_and_runs_no_script_of_its_own_making() {
    let html = render(&HtmlExporter, &sample_report());
    assert!(
        !html.contains("<script>alert"),
        "model text reached the page as markup"
    );
    assert!(
        html.contains(&in_html(HOSTILE)),
        "hostile finding is shown escaped"
    );
    assert!(html.contains(&in_html("# <b>temporary</b> & quick")));
    // Exactly one script: the optional inline helper, and nothing loaded from outside.
    assert_eq!(html.matches("<script").count(), 1);
    for external in ["src=", "href=\"http", "@import", "url(", "<link"] {
        assert!(
            !html.contains(external),
            "{external} makes the page depend on the network"
        );
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
}

#[test]
fn html_shows_status_gate_and_the_hat_sequence_in_order() {
    let html = render(&HtmlExporter, &sample_report());
    assert!(html.contains("✗ Signal NOT met"));
    assert!(html.contains("exit 1"));
    assert!(html.contains(
        "<p class=\"gate human\"><b>gate external</b>a human approval is still required"
    ));
    let sequence = &html[html.find("<ol class=\"sequence\">").unwrap()..];
    let sequence = &sequence[..sequence.find("</section>").unwrap()];
    let names: Vec<usize> = [
        "<div class=\"name\">pipeline-engineer</div>",
        "<div class=\"name\">sre</div>",
        "<div class=\"name\">reliability</div>",
        "<div class=\"name\">completion judge</div>",
    ]
    .iter()
    .map(|n| {
        sequence
            .find(n)
            .unwrap_or_else(|| panic!("{n} not in the sequence"))
    })
    .collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "steps out of order");
    assert!(
        sequence.contains("step unparseable"),
        "the unparseable step stands out"
    );
    assert!(sequence.contains("⚠ unparseable"));
    assert!(sequence.contains(">replayed<") && sequence.contains(">live<"));
    assert!(sequence.contains("9,400 / 0 / 3,100") && sequence.contains("31.0 s"));

    let html = render(&HtmlExporter, &met_report());
    assert!(html.contains("✓ Signal met"));
    assert!(html.contains("<p class=\"gate\"><b>gate auto</b>no human approval needed"));
}

#[test]
fn html_verdict_matrix_has_a_coloured_cell_per_requirement_under_its_judge() {
    let report = sample_report();
    let html = render(&HtmlExporter, &report);
    let start = html
        .find("<table class=\"matrix\">")
        .expect("a verdict matrix");
    let matrix = &html[start..start + html[start..].find("</table>").unwrap()];
    for heading in ["Hat constraints", "Review checks", "Completion signal"] {
        assert!(matrix.contains(heading), "group {heading} missing");
    }
    for judge in [
        "pipeline-engineer constraint judge",
        "sre constraint judge",
        "reliability",
        "completion judge",
    ] {
        assert!(
            matrix.contains(&format!(">{judge}</th>")),
            "column {judge} missing"
        );
    }
    let filled = |class: &str| {
        matrix
            .matches(&format!("<td class=\"cell {class}\">"))
            .count()
    };
    assert_eq!(filled("met"), 2);
    assert_eq!(filled("unmet"), 2);
    assert_eq!(filled("unknown"), 3);
    assert_eq!(matrix.matches("<td class=\"cell empty\">").count(), 7 * 3);
    assert!(matrix.contains("<small>3&#x2f;5 unstable</small>"));
    // Each row links to its details.
    for r in &report.requirements {
        assert!(matrix.contains(&format!("<code>{}</code>", in_html(&r.id))));
    }
    let links = matrix.matches("href=\"#req-").count();
    assert_eq!(links, report.requirements.len());
    let first = matrix
        .split("href=\"#")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("id=\"{first}\"")),
        "link target {first} missing"
    );
}

#[test]
fn html_details_mark_grounded_and_ungrounded_evidence_with_the_note() {
    let html = render(&HtmlExporter, &sample_report());
    assert_eq!(html.matches("<details class=\"panel req").count(), 7);
    assert!(html.contains(&format!(
        "<span class=\"mark\">✓ {}</span>",
        in_html("quoted from the pipeline-engineer's artifact")
    )));
    assert!(html.contains(&format!(
        "<span class=\"mark\">⚠ {}</span>",
        in_html("ungrounded: the quote does not occur in artifacts/sre/runbook.md")
    )));
    assert!(html.contains(&in_html(
        "ungrounded evidence: the quote does not occur in artifacts/sre/runbook.md"
    )));
    assert!(html.contains("(the judge claimed met)"));
    // Requirements not met are open, met ones folded.
    assert_eq!(html.matches("<details class=\"panel req met\"").count(), 2);
    assert_eq!(
        html.matches("<details class=\"panel req unmet\"").count(),
        2
    );
    let unmet_open = html
        .match_indices("<details class=\"panel req unmet\"")
        .all(|(i, _)| html[i..].split('>').next().unwrap().ends_with(" open"));
    assert!(unmet_open);
}

#[test]
fn html_lists_inputs_warnings_and_run_info_and_adapts_to_dark_mode_and_print() {
    let html = render(&HtmlExporter, &sample_report());
    assert!(html.contains(&in_html("reports/validation-report.md")));
    assert!(html.contains("402.3 KiB"));
    assert_eq!(html.matches("⚠ cut at 62.5 KiB of 402.3 KiB").count(), 1);
    assert!(html.contains("Warnings (2)"));
    assert!(html.contains("<h2>Artifacts</h2>"));
    assert!(html.contains(&in_html("artifacts/sre/runbook.md")));
    assert!(html.contains(&format!("{}…", "b".repeat(12))));
    assert!(html.contains("SmolLM2-135M-Instruct"));
    assert!(html.contains(&"c".repeat(64)), "definition digest");
    assert!(html.contains(&"d".repeat(64)), "prompt digest");
    assert!(html.contains("@media (prefers-color-scheme: dark)"));
    assert!(html.contains("@media print"));
}

#[test]
fn html_is_byte_identical_across_renders() {
    let report = sample_report();
    assert_eq!(
        render(&HtmlExporter, &report),
        render(&HtmlExporter, &report)
    );
}

// ---------- stdout summary ----------

#[test]
fn summary_table_has_a_line_per_step_and_the_outcome() {
    let text = summary_table(&sample_report());
    println!("{text}");
    assert!(!text.contains('\x1b'), "no colour codes");
    let step_line = text
        .lines()
        .find(|l| l.starts_with("review/reliability"))
        .expect("a line for the review step");
    for part in ["unparseable", "live", "9,400 / 0 / 3,100", "31.0 s"] {
        assert!(
            step_line.contains(part),
            "{part} missing from {step_line:?}"
        );
    }
    assert!(text
        .lines()
        .any(|l| l.starts_with("hat/sre") && l.contains("replayed")));
    assert!(text.contains("verdicts: 2 met, 2 unmet, 3 unknown"));
    assert!(text.contains("signal NOT MET — 2 unmet, 3 unknown (exit 1)"));
    assert!(text.contains("gate external: a human approval is still required"));
    assert!(text.ends_with('\n'));
    // Columns line up: every step line has its status at the same column.
    let cols: Vec<usize> = text
        .lines()
        .filter(|l| l.starts_with("hat/") || l.starts_with("review/") || l.starts_with("signal  "))
        .map(|l| l.find("answered").or(l.find("unparseable")).unwrap())
        .collect();
    assert_eq!(cols.len(), 4);
    assert!(cols.windows(2).all(|w| w[0] == w[1]), "{text}");

    let text = summary_table(&met_report());
    assert!(text.contains("signal met (exit 0)"));
    assert!(text.contains("gate auto: no human approval needed"));
}

#[test]
fn cached_prompt_tokens_show_per_step_and_their_share_in_the_total() {
    let mut report = sample_report();
    let review = report
        .steps
        .iter_mut()
        .find(|s| s.id == "review/reliability")
        .unwrap();
    review.usage.cached_tokens = 4_700;
    report.run.usage.cached_tokens = 14_815; // half of the run's 29,630 prompt tokens
    let text = summary_table(&report);
    let step_line = text
        .lines()
        .find(|l| l.starts_with("review/reliability"))
        .unwrap();
    assert!(step_line.contains("9,400 / 4,700 / 3,100"), "{step_line}");
    let total = text.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(
        total.contains("29,630 / 14,815 / 8,683 (50% cached)"),
        "{total}"
    );
    let md = render(&MarkdownExporter, &report);
    assert!(
        md.contains("Total: 29,630 / 8,683 tokens (14,815 prompt tokens cached, 50%)"),
        "{md}"
    );
    assert!(md.contains("| 9,400 / 4,700 / 3,100 |"));
    let html = render(&HtmlExporter, &report);
    assert!(
        html.contains("14,815, 50% of the prompt tokens cached"),
        "{html}"
    );
    assert!(html.contains("9,400 / 4,700 / 3,100"));
}

#[test]
fn gate_notes_name_what_each_gate_still_needs() {
    let mut report = met_report();
    report.stage.gates = vec!["ask".into(), "await".into()];
    report.outcome.human_approval_required = true;
    let text = summary_table(&report);
    assert!(
        text.contains("gate ask, await: the stage still waits for an external event; a person must still approve the stage"),
        "{text}"
    );
    report.stage.gates = vec![];
    report.outcome.human_approval_required = false;
    assert!(summary_table(&report).contains("gate auto: no human approval needed"));
    report.stage.gates = vec!["committee".into()];
    assert!(summary_table(&report)
        .contains("gate committee: gate kind `committee` is not one hatrack knows"));
}

#[test]
fn allowed_unknowns_are_said_in_the_outcome_line() {
    let mut report = sample_report();
    report.requirements.retain(|r| r.verdict != Verdict::Unmet);
    report.outcome.allow_unknown = true;
    report.outcome.signal_met = true;
    report.outcome.exit_code = 0;
    report.outcome.reasons.clear();
    report.outcome.counts = VerdictCounts {
        met: 2,
        unmet: 0,
        unknown: 3,
        artifact_only: 0,
    };
    let text = summary_table(&report);
    assert!(
        text.contains("signal met — 3 unknown allowed by --allow-unknown (exit 0)"),
        "{text}"
    );
    let md = render(&MarkdownExporter, &report);
    assert!(md.starts_with("## ✅ signal met"));
    assert!(md.contains("3 unknown (unknown allowed)"));
}

// ---------- write_all ----------

#[test]
fn write_all_writes_every_format_and_scrubs_secrets() {
    const SECRET: &str = "sk-live_Abc123&XyZ";
    let mut report = sample_report();
    report.requirements[1].finding = format!("The key {SECRET} is in the DAG");
    report.requirements[1].evidence[0].quote = format!("api_key = \"{SECRET}\"");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/reports");
    let scrub = |s: &str| s.replace(SECRET, "[REDACTED]");
    let paths = write_all(&report, &out, &scrub).expect("reports written");

    let mut names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = exporters()
        .iter()
        .map(|e| e.file_name().to_string())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        // The secret contains `&` and `_`, which HTML/XML and Markdown escape: the escaped
        // forms must not leak either.
        for leaked in [SECRET, "sk-live", "Abc123"] {
            assert!(
                !text.contains(leaked),
                "{leaked} leaked into {}",
                path.display()
            );
        }
        assert!(
            text.contains("[REDACTED]"),
            "{} lost the finding",
            path.display()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Writing again replaces the files in place.
    report.outcome.summary = "second run".into();
    write_all(&report, &out, &scrub).unwrap();
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(json.contains("second run"));

    // To look at the fixture's reports (scripts/report-screenshot renders report.html):
    // HATRACK_REPORT_SAMPLE_DIR=/tmp/sample cargo nextest run --test report_formats write_all
    if let Some(sample_dir) = std::env::var_os("HATRACK_REPORT_SAMPLE_DIR") {
        write_all(
            &sample_report(),
            std::path::Path::new(&sample_dir),
            &|s: &str| s.to_string(),
        )
        .expect("fixture reports written to HATRACK_REPORT_SAMPLE_DIR");
    }
}

/// The files in `dir`, name → contents.
fn files_in(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn a_run_scrubs_an_echoed_key_from_every_report_and_writes_the_same_reports_when_none_was_echoed() {
    const KEY: &str = "sk-proj-\"Abc123&_XyZ";
    let scrubber = hatrack::secrets::Scrubber::new(vec![KEY.to_string()], Vec::new());
    let mut echoed = sample_report();
    echoed.requirements[1].finding = format!("The answer quoted {KEY} back");
    let dir = tempfile::tempdir().unwrap();
    write_all_scrubbed(&echoed, dir.path(), &scrubber).expect("reports written");
    for (name, text) in files_in(dir.path()) {
        for leaked in ["Abc123", "sk-proj"] {
            assert!(!text.contains(leaked), "{leaked} leaked into {name}");
        }
        assert!(
            text.contains("REDACTED"),
            "{name} lost the finding:\n{text}"
        );
    }

    // No key in the report: exactly what an unscrubbed write gives.
    let (scrubbed, plain) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_all_scrubbed(&sample_report(), scrubbed.path(), &scrubber).unwrap();
    write_all(&sample_report(), plain.path(), &|s: &str| s.to_string()).unwrap();
    assert_eq!(files_in(scrubbed.path()), files_in(plain.path()));
}

#[test]
fn a_report_that_cannot_be_put_in_place_fails_naming_it_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("report.html/in-the-way")).unwrap();
    let err = write_all(&sample_report(), dir.path(), &|s: &str| s.to_string())
        .expect_err("a directory where report.html goes is an error");
    assert!(err.to_string().contains("report.html"), "{err}");
    let leftovers: Vec<String> = files_in_names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn files_in_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn write_all_names_the_path_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "a file where the report directory should be").unwrap();
    let err = write_all(&sample_report(), &blocker, &|s: &str| s.to_string())
        .expect_err("a file in the way is an error");
    let message = err.to_string();
    assert!(message.contains("not-a-dir"), "{message}");
}
