//! The batch index as files: `batch.json` (the data), `batch.md`, `batch.html` (a table with
//! a link to each member's own report) and `junit.xml` (one suite per workspace). Renders
//! only; the index decides nothing it did not read from the run directories.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, UndefinedBehavior};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::index::{BatchIndex, Loaded, MemberReport};
use crate::report::text;

/// The index files, in the order they are written.
pub const FILES: [&str; 4] = ["batch.json", "batch.md", "batch.html", "junit.xml"];

const HTML_NAME: &str = "batch.html.j2";
const HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hatrack batch: {{ summary }}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.met{color:#176f2c}
.not-met{color:#a40e26}.failed{color:#8a5300}</style></head><body>
<h1>hatrack batch</h1>
<p><strong>{{ summary }}</strong> · exit code {{ exit_code }}</p>
{% if shard %}<p>Shard {{ shard }} of a batch of {{ batch_size }} workspace(s).</p>
{% endif %}{% if missing %}<p class="not-met"><strong>Gate not met: shards missing.</strong> {{ missing }}</p>
{% endif %}<table><thead><tr><th>workspace</th><th>result</th><th>exit</th><th>blocking</th><th>met · unmet · unknown</th><th>tokens</th><th>summary</th></tr></thead><tbody>
{% for w in rows %}<tr><td><a href="{{ w.name }}/report.html">{{ w.name }}</a></td><td class="{{ w.class }}">{{ w.result }}</td><td>{{ w.exit_code }}</td><td>{{ w.blocking }}</td><td>{{ w.counts }}</td><td>{{ w.tokens }}</td><td>{{ w.summary }}</td></tr>
{% endfor %}</tbody></table>
</body></html>
"#;

/// Every index file's text, by file name.
pub fn render_all(index: &BatchIndex, members: &[Loaded]) -> Result<Vec<(String, String)>, String> {
    let mut json = serde_json::to_string_pretty(index).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(vec![
        (FILES[0].to_string(), json),
        (FILES[1].to_string(), markdown(index)),
        (FILES[2].to_string(), html(index)?),
        (FILES[3].to_string(), junit_xml(index, members)?),
    ])
}

/// Writes the index files into `dir` (each through a temporary file and a rename).
pub fn write_all(
    dir: &Path,
    index: &BatchIndex,
    members: &[Loaded],
) -> Result<Vec<PathBuf>, crate::Error> {
    let files = render_all(index, members).map_err(|m| {
        crate::Error::usage(format!(
            "rendering the batch index in {}: {m}",
            dir.display()
        ))
    })?;
    files
        .iter()
        .map(|(name, text)| {
            Ok(crate::safe_fs::write_file(
                dir,
                name,
                text.as_bytes(),
                true,
            )?)
        })
        .collect()
}

fn result_word(w: &MemberReport) -> &'static str {
    match w.signal_met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "failed",
    }
}

fn blocking(w: &MemberReport) -> String {
    w.blocking
        .map(|b| format!("{} of {}", b.blocking, b.of))
        .unwrap_or_else(|| "–".into())
}

fn counts(w: &MemberReport) -> String {
    w.counts
        .map(|c| format!("{} · {} · {}", c.met, c.unmet, c.unknown))
        .unwrap_or_else(|| "–".into())
}

fn detail(w: &MemberReport) -> String {
    w.detail()
}

/// "Shard I/N of a batch of M workspace(s)", for a shard's index.
fn shard_line(index: &BatchIndex) -> Option<(String, usize)> {
    let scope = index.scope.as_ref()?;
    Some((scope.shard.clone()?, scope.members.len()))
}

fn missing_text(index: &BatchIndex) -> Option<String> {
    let scope = index.scope.as_ref()?;
    let missing = scope.missing.as_ref()?;
    let shards = if missing.shards.is_empty() {
        "every shard was merged, but their indexes lack some members".to_string()
    } else {
        format!("shard(s) {} were not merged", missing.shards.join(", "))
    };
    Some(format!(
        "{shards}; {} of {} workspace(s) were never reviewed: {}. Merge every shard's directory for a gate that can be met.",
        missing.workspaces.len(),
        scope.members.len(),
        super::scope::listing(&missing.workspaces)
    ))
}

fn markdown(index: &BatchIndex) -> String {
    let mut md = format!(
        "# hatrack batch\n\n**{}** · exit code {}\n\n",
        index.summary, index.exit_code
    );
    if let Some((shard, size)) = shard_line(index) {
        md.push_str(&format!(
            "Shard {shard} of a batch of {size} workspace(s).\n\n"
        ));
    }
    if let Some(missing) = missing_text(index) {
        md.push_str(&format!("**Gate not met: shards missing.** {missing}\n\n"));
    }
    md.push_str(
        "| workspace | result | exit | blocking | met · unmet · unknown | tokens | summary |\n|---|---|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for w in &index.workspaces {
        md.push_str(&format!(
            "| [{}]({}/report.md) | {} | {} | {} | {} | {} | {} |\n",
            w.name,
            w.name,
            result_word(w),
            w.exit_code,
            blocking(w),
            counts(w),
            text::int(w.total_tokens),
            cell(&text::cap(&detail(w), 300)),
        ));
    }
    md
}

fn html(index: &BatchIndex) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // The `.html.j2` name turns on minijinja's HTML auto-escaping for every value.
    env.add_template(HTML_NAME, HTML)
        .map_err(|e| e.to_string())?;
    let rows: Vec<_> = index
        .workspaces
        .iter()
        .map(|w| {
            context! {
                name => &w.name,
                class => result_word(w).replace(' ', "-"),
                result => result_word(w),
                exit_code => w.exit_code,
                blocking => blocking(w),
                counts => counts(w),
                tokens => text::int(w.total_tokens),
                summary => text::cap(&detail(w), 500),
            }
        })
        .collect();
    env.get_template(HTML_NAME)
        .and_then(|t| {
            let (shard, batch_size) = shard_line(index).unzip();
            t.render(context! {
                summary => &index.summary,
                exit_code => index.exit_code,
                rows => rows,
                shard => shard,
                batch_size => batch_size,
                missing => missing_text(index),
            })
        })
        .map_err(|e| format!("{e:#}"))
}

fn junit_xml(index: &BatchIndex, members: &[Loaded]) -> Result<String, String> {
    let mut report = quick_junit::Report::new("hatrack batch");
    report.add_test_suites(members.iter().map(|m| m.suite.clone()));
    // A partial merge fails one case per missing shard, so a JUnit reader sees the gate.
    if let Some(missing) = index.scope.as_ref().and_then(|s| s.missing.as_ref()) {
        let mut suite = TestSuite::new("hatrack merge");
        let mut cases: Vec<String> = missing
            .shards
            .iter()
            .map(|s| format!("shard {s}"))
            .collect();
        if cases.is_empty() {
            cases.push("members".into());
        }
        for name in cases {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_type("missing")
                .set_message(missing_text(index).unwrap_or_default());
            let mut case = TestCase::new(name, status);
            case.set_classname("hatrack merge");
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    let mut xml = report.to_string().map_err(|e| e.to_string())?;
    if !xml.ends_with('\n') {
        xml.push('\n');
    }
    Ok(xml)
}
