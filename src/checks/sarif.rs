//! SARIF 2.1.0 in: the subset code-scanning tools write (ruff, checkov, kube-linter,
//! kube-score, conftest, sqlfluff). Each run's driver names the tool; each result becomes a
//! [`Finding`] with its rule id and the rule's name (from the driver's rules), its level (the
//! result's, else the rule's default, else SARIF's `warning`), its message and its first
//! location made relative to the workspace. A result with `kind` `pass` or
//! `notApplicable` is a passing record; a suppressed one is left out and counted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::location::Root;
use super::{capped, capped_line, ChecksError, Finding, Level, MAX_MESSAGE_CHARS, MAX_NAME_CHARS};

#[derive(Debug, Deserialize)]
struct Log {
    version: Option<String>,
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
    #[serde(default)]
    original_uri_base_ids: BTreeMap<String, ArtifactLocation>,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

#[derive(Debug, Deserialize)]
struct Tool {
    driver: Component,
}

#[derive(Debug, Deserialize)]
struct Component {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: Option<String>,
    name: Option<String>,
    short_description: Option<Message>,
    default_configuration: Option<Configuration>,
}

#[derive(Debug, Deserialize)]
struct Configuration {
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<usize>,
    rule: Option<RuleRef>,
    level: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    message: Message,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    partial_fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    suppressions: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RuleRef {
    id: Option<String>,
    index: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: Option<PhysicalLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: Option<ArtifactLocation>,
    region: Option<Region>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: Option<String>,
    uri_base_id: Option<String>,
    index: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Artifact {
    location: Option<ArtifactLocation>,
}

/// What one SARIF file held.
pub struct Read {
    pub findings: Vec<Finding>,
    pub tools: Vec<String>,
    pub warnings: Vec<String>,
}

/// Whether `bytes` look like SARIF (JSON with a `runs` or a `version`), not JUnit XML.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
        .is_some_and(|b| *b == b'{')
}

/// Reads a SARIF 2.1.0 log; `origin` names the file in each finding and warning.
pub fn read(bytes: &[u8], path: &Path, origin: &str, root: &Root) -> Result<Read, ChecksError> {
    let fail = |message: String| ChecksError::Sarif {
        path: path.to_path_buf(),
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let log: Log = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        fail(format!(
            "line {} column {}, at {}: {}",
            inner.line(),
            inner.column(),
            e.path(),
            inner
        ))
    })?;
    if log.version.as_deref() != Some("2.1.0") {
        return Err(fail(format!(
            "\"version\" is {}, and hatrack reads SARIF 2.1.0",
            log.version
                .as_deref()
                .map_or("missing".to_string(), |v| format!(
                    "{:?}",
                    capped_line(v, 40)
                ))
        )));
    }
    let mut out = Read {
        findings: Vec::new(),
        tools: Vec::new(),
        warnings: Vec::new(),
    };
    for run in &log.runs {
        read_run(run, origin, root, &mut out);
    }
    Ok(out)
}

fn read_run(run: &Run, origin: &str, root: &Root, out: &mut Read) {
    let tool = capped_line(&run.tool.driver.name, MAX_NAME_CHARS);
    if !out.tools.contains(&tool) {
        out.tools.push(tool.clone());
    }
    let (mut suppressed, mut outside) = (0usize, Vec::new());
    for (index, result) in run.results.iter().flatten().enumerate() {
        if !result.suppressions.is_empty() {
            suppressed += 1;
            continue;
        }
        let rule = rule_of(run, result);
        let (path, line) = match place(run, result, root) {
            Ok(at) => at,
            Err(why) => {
                outside.push(format!("result {index}: {why}"));
                continue;
            }
        };
        out.findings.push(Finding {
            name: String::new(),
            tool: tool.clone(),
            rule: rule.id,
            rule_name: rule.name,
            level: level_of(result, rule.default_level.as_deref()),
            message: message_of(result, rule.description.as_deref()),
            path,
            line,
            excerpt: None,
            fingerprint: tool_fingerprint(result),
            origin: origin.to_string(),
        });
    }
    if suppressed > 0 {
        out.warnings.push(format!(
            "{origin}: {suppressed} suppressed {tool} result(s) left out"
        ));
    }
    if !outside.is_empty() {
        let shown: Vec<&str> = outside.iter().take(3).map(String::as_str).collect();
        out.warnings.push(format!(
            "{origin}: {} {tool} result(s) about files outside the workspace left out ({}{})",
            outside.len(),
            shown.join("; "),
            if outside.len() > 3 { "; …" } else { "" }
        ));
    }
}

/// A result's rule: its id and, from the driver's rules, its name, description and level.
struct RuleOf {
    id: String,
    name: Option<String>,
    description: Option<String>,
    default_level: Option<String>,
}

fn rule_of(run: &Run, result: &SarifResult) -> RuleOf {
    let index = result
        .rule_index
        .or_else(|| result.rule.as_ref().and_then(|r| r.index));
    let id = result
        .rule_id
        .clone()
        .or_else(|| result.rule.as_ref().and_then(|r| r.id.clone()));
    let rules = &run.tool.driver.rules;
    let rule = index.and_then(|i| rules.get(i)).or_else(|| {
        let id = id.as_deref()?;
        rules.iter().find(|r| r.id.as_deref() == Some(id))
    });
    let id = id
        .or_else(|| rule.and_then(|r| r.id.clone()))
        .unwrap_or_else(|| "(no rule)".to_string());
    RuleOf {
        id: capped_line(&id, MAX_NAME_CHARS),
        name: rule
            .and_then(|r| r.name.as_deref())
            .map(|n| capped_line(n, MAX_NAME_CHARS))
            .filter(|n| !n.is_empty() && *n != id),
        description: rule
            .and_then(|r| r.short_description.as_ref())
            .and_then(|m| m.text.clone()),
        default_level: rule
            .and_then(|r| r.default_configuration.as_ref())
            .and_then(|c| c.level.clone()),
    }
}

/// The result's level, else its rule's default, else SARIF's default (`warning`); a `kind`
/// other than `fail` is not a failure.
fn level_of(result: &SarifResult, default: Option<&str>) -> Level {
    match result.kind.as_deref() {
        Some("pass" | "notApplicable") => return Level::Pass,
        Some("informational" | "review" | "open") => return Level::Note,
        _ => {}
    }
    result
        .level
        .as_deref()
        .or(default)
        .and_then(Level::from_sarif)
        .unwrap_or(Level::Warning)
}

fn message_of(result: &SarifResult, rule_description: Option<&str>) -> String {
    let text = result
        .message
        .text
        .as_deref()
        .or(rule_description)
        .unwrap_or("(the tool gave no message)");
    capped(text, MAX_MESSAGE_CHARS)
}

/// The tool's own fingerprint: `partialFingerprints` first, then `fingerprints`, the first
/// key in order (empty: hatrack computes one).
fn tool_fingerprint(result: &SarifResult) -> String {
    result
        .partial_fingerprints
        .iter()
        .chain(&result.fingerprints)
        .next()
        .map(|(k, v)| capped_line(&format!("{k}:{v}"), MAX_NAME_CHARS))
        .unwrap_or_default()
}

/// The first location's path (relative to the workspace) and line; no location is fine (a
/// finding about the project as a whole), one outside the workspace is not.
fn place(
    run: &Run,
    result: &SarifResult,
    root: &Root,
) -> Result<(Option<String>, Option<u32>), String> {
    let Some(physical) = result
        .locations
        .iter()
        .find_map(|l| l.physical_location.as_ref())
    else {
        return Ok((None, None));
    };
    let line = physical
        .region
        .as_ref()
        .and_then(|r| r.start_line)
        .and_then(|l| u32::try_from(l).ok())
        .filter(|l| *l > 0);
    let Some(artifact) = physical.artifact_location.as_ref() else {
        return Ok((None, None));
    };
    let artifact = match (&artifact.uri, artifact.index) {
        (None, Some(i)) => run
            .artifacts
            .get(i)
            .and_then(|a| a.location.clone())
            .unwrap_or_else(|| artifact.clone()),
        _ => artifact.clone(),
    };
    let Some(uri) = artifact.uri.as_deref() else {
        return Ok((None, None));
    };
    let base = base_uri(run, artifact.uri_base_id.as_deref());
    match root.uri(uri, base.as_deref()) {
        Ok(path) => Ok((Some(capped(&path, MAX_NAME_CHARS * 2)), line)),
        Err(why) => Err(format!("{} {}", capped_line(uri, 120), why.describe())),
    }
}

/// The URI a `uriBaseId` stands for, following the run's `originalUriBaseIds` (a base may
/// itself name a base); `None`: undefined (the workspace root is meant, as `%SRCROOT%` is).
fn base_uri(run: &Run, id: Option<&str>) -> Option<String> {
    let mut id = id?;
    let mut suffix = String::new();
    for _ in 0..8 {
        let base = run.original_uri_base_ids.get(id)?;
        let uri = base.uri.as_deref().unwrap_or("");
        let joined = format!("{uri}{suffix}");
        match base.uri_base_id.as_deref() {
            Some(next) => {
                suffix = joined;
                id = next;
            }
            None => return Some(joined),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruffs_shape_is_read_and_relativised() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(ws.join("dags")).unwrap();
        let sarif = format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"ruff","rules":[{{"id":"AIR301","name":"airflow3-removal","shortDescription":{{"text":"removed"}}}}]}}}},
            "results":[{{"level":"error","ruleId":"AIR301","message":{{"text":"`schedule_interval` is removed in Airflow 3.0"}},
            "locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"file://{}/dags/etl.py"}},"region":{{"startLine":21,"startColumn":5}}}}}}]}},
            {{"ruleId":"AIR302","message":{{"text":"outside"}},"locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"file:///etc/passwd"}}}}}}]}}]}}]}}"#,
            ws.display()
        );
        let read = read(
            sarif.as_bytes(),
            Path::new("ruff.sarif"),
            "ruff.sarif",
            &Root::new(&ws),
        )
        .unwrap();
        assert_eq!(read.tools, ["ruff"]);
        assert_eq!(read.findings.len(), 1);
        let f = &read.findings[0];
        assert_eq!(
            (f.rule.as_str(), f.rule_name.as_deref()),
            ("AIR301", Some("airflow3-removal"))
        );
        assert_eq!((f.path.as_deref(), f.line), (Some("dags/etl.py"), Some(21)));
        assert_eq!(f.level, Level::Error);
        assert!(f.fingerprint.is_empty());
        assert!(
            read.warnings[0].contains("1 ruff result(s) about files outside the workspace"),
            "{:?}",
            read.warnings
        );
        assert!(
            read.warnings[0].contains("/etc/passwd lies outside"),
            "{:?}",
            read.warnings
        );
    }

    #[test]
    fn broken_sarif_names_line_and_field() {
        let root = Root::new(Path::new("."));
        let err = read(
            b"{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{}}]}",
            Path::new("x.sarif"),
            "x",
            &root,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("runs[0].tool") && err.contains("driver"),
            "{err}"
        );
        let err = read(b"{\"version\":\"2.0.0\"}", Path::new("x.sarif"), "x", &root)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hatrack reads SARIF 2.1.0"), "{err}");
        let err = read(b"{\"version\": ", Path::new("x.sarif"), "x", &root)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
