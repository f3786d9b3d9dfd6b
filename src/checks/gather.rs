//! A new run's [`Facts`]: the mappings declared (the stage's `checks.toml`, then the
//! `[[check]]` entries of the policy and the workspace), the evidence files read, the probes
//! run, and every finding named and fingerprinted once. Everything that can be wrong with a
//! declaration or a file is found here, before any request (exit 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::location::Root;
use super::probes::{self, ProbeSpec, Probing};
use super::{
    fingerprint, junit, read_capped, sarif, CheckSpec, ChecksError, EvidenceFile, Facts, Finding,
    Level, Mapping, FORMAT, MAX_EVIDENCE_BYTES, MAX_EVIDENCE_FILES, MAX_FINDINGS, MAX_PASS_RECORDS,
    MAX_WARNINGS, STAGE_CHECKS_FILE,
};

/// The largest `checks.toml` read.
const MAX_CHECKS_TOML_BYTES: u64 = 1 << 20;

/// Where an evidence file was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// `--evidence FILE`: relative to the current directory.
    Flag,
    /// `[evidence] files` of a policy file (already made absolute) or of the workspace
    /// (relative to it, and confined to it).
    Config,
}

/// Everything [`gather`] reads.
pub struct Gather<'a> {
    pub workspace: &'a Path,
    pub evidence: Vec<(String, Given)>,
    /// The stage directory, and how reports name it (`hats/deployment`).
    pub stage_dir: &'a Path,
    pub stage_label: String,
    /// The `[[check]]` tables of the effective configuration (policy first, then what the
    /// workspace added).
    pub config_checks: &'a [toml::Table],
    /// Every requirement id of the stage.
    pub requirements: Vec<String>,
    /// `[secrets] redact_inputs` patterns: applied to what probes quote.
    pub redact: &'a [Regex],
    /// `[tools] deny` globs, besides the built-in deny list.
    pub deny: &'a [String],
    /// `--run-checks`: allowlisted tools hatrack runs itself, and their timeout (seconds).
    pub run_tools: &'a [String],
    pub tool_timeout: u64,
}

/// The run's facts; `None` when there is nothing: no mapping and no evidence file.
pub fn gather(g: &Gather<'_>) -> Result<Option<Facts>, ChecksError> {
    let mappings = mappings(g)?;
    if mappings.is_empty() && g.evidence.is_empty() && g.run_tools.is_empty() {
        return Ok(None);
    }
    if g.evidence.len() > MAX_EVIDENCE_FILES {
        return Err(ChecksError::Read {
            path: PathBuf::from(&g.evidence[MAX_EVIDENCE_FILES].0),
            message: format!("more than {MAX_EVIDENCE_FILES} evidence files; merge them"),
        });
    }
    let root = Root::new(g.workspace);
    let mut facts = Facts {
        format: FORMAT,
        mappings,
        ..Facts::default()
    };
    let mut warnings = Vec::new();
    for (file, given) in &g.evidence {
        let (read, found) = ingest(g.workspace, file, given, &root)?;
        warnings.extend(found.warnings);
        facts.files.push(read);
        facts.findings.extend(found.findings);
        if facts
            .findings
            .iter()
            .filter(|f| f.level != Level::Pass)
            .count()
            > MAX_FINDINGS
        {
            return Err(ChecksError::TooMany {
                path: PathBuf::from(file),
            });
        }
    }
    for tool in g.run_tools {
        run_tool(g, tool, &root, &mut facts, &mut warnings)?;
    }
    let (probed, probe_warnings) = run_probes(g, &facts.mappings)?;
    facts.findings.extend(probed);
    warnings.extend(probe_warnings);
    finalise(&mut facts.findings, &mut warnings);
    facts.warnings = bounded(warnings);
    Ok(Some(facts))
}

/// The mappings of a stage's `checks.toml` (none without one), each checked against the
/// stage's `requirements`; `label` names the stage directory in messages.
pub fn stage_mappings(
    stage_dir: &Path,
    label: &str,
    requirements: &[String],
) -> Result<Vec<Mapping>, ChecksError> {
    let stage_file = stage_dir.join(STAGE_CHECKS_FILE);
    let embedded = crate::definition::embedded::contains(&stage_file);
    if !embedded && std::fs::symlink_metadata(&stage_file).is_err() {
        return Ok(Vec::new());
    }
    let label = format!("{label}/{STAGE_CHECKS_FILE}");
    let mut out = Vec::new();
    for (i, spec) in read_checks_toml(&stage_file)?.iter().enumerate() {
        out.push(spec.mapping(&label, i + 1, requirements)?);
    }
    probe_names(&out)?;
    Ok(out)
}

/// Compiles the probe patterns of a stage's `checks.toml` ahead of [`stage_mappings`], which
/// then finds them compiled (patterns are compiled once per process). A run calls this on a
/// thread of its own while it loads the stage's definitions: a Unicode pattern takes about a
/// millisecond to build. Nothing is reported here; [`stage_mappings`] reports what is wrong.
pub fn warm_probes(stage_dir: &Path) {
    let stage_file = stage_dir.join(STAGE_CHECKS_FILE);
    if let Ok(specs) = read_checks_toml(&stage_file) {
        for probe in specs.iter().filter_map(|s| s.probe.as_ref()) {
            let _ = probe.check();
        }
    }
}

/// One name, one probe: the same name on two different probes is an error.
fn probe_names(mappings: &[Mapping]) -> Result<(), ChecksError> {
    for (i, m) in mappings.iter().enumerate() {
        let clash = mappings[..i].iter().any(|o| {
            o.probe.is_some() && m.probe.is_some() && o.rules == m.rules && o.probe != m.probe
        });
        if clash {
            return Err(ChecksError::Mapping {
                origin: m.from.clone(),
                index: i + 1,
                message: format!(
                    "the probe name {:?} is already used by another probe: give each probe its own name",
                    m.rules.first().map_or("", String::as_str)
                ),
            });
        }
    }
    Ok(())
}

/// The stage's `checks.toml` entries, then the configuration's.
fn mappings(g: &Gather<'_>) -> Result<Vec<Mapping>, ChecksError> {
    let mut out = stage_mappings(g.stage_dir, &g.stage_label, &g.requirements)?;
    for (i, table) in g.config_checks.iter().enumerate() {
        let label = "hatrack.toml or policy";
        let spec: CheckSpec =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ChecksError::Mapping {
                    origin: label.to_string(),
                    index: i + 1,
                    message: e.message().trim().to_string(),
                })?;
        out.push(spec.mapping(label, i + 1, &g.requirements)?);
    }
    probe_names(&out)?;
    Ok(out)
}

/// The `[[check]]` entries of a `checks.toml` (nothing else may be in it).
pub fn read_checks_toml(path: &Path) -> Result<Vec<CheckSpec>, ChecksError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        check: Vec<CheckSpec>,
    }
    let fail = |message: String| ChecksError::ChecksFile {
        path: path.to_path_buf(),
        message,
    };
    // A stage compiled into hatrack carries its checks.toml too.
    let text = match crate::definition::embedded::read(path) {
        Some(text) => text.to_string(),
        None if crate::definition::embedded::contains(path) => return Ok(Vec::new()),
        None => {
            let bytes = read_capped(path, MAX_CHECKS_TOML_BYTES, crate::safe_fs::Links::Never)?;
            String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?
        }
    };
    let file: File = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        fail(format!("{at}{}", e.message().trim()))
    })?;
    Ok(file.check)
}

/// Reads one evidence file as SARIF or JUnit XML.
fn ingest(
    workspace: &Path,
    file: &str,
    given: &Given,
    root: &Root,
) -> Result<(EvidenceFile, sarif::Read), ChecksError> {
    let path = match given {
        Given::Flag => PathBuf::from(file),
        Given::Config if Path::new(file).is_absolute() => PathBuf::from(file),
        Given::Config => {
            // The workspace's own list: a file inside it, never through a link.
            let rel = root
                .relative(Path::new(file))
                .map_err(|why| ChecksError::Read {
                    path: PathBuf::from(file),
                    message: format!("[evidence] files: the path {}", why.describe()),
                })?;
            workspace.join(rel)
        }
    };
    // A flag's file may be a link within its own directory; a configuration's never is.
    let links = match given {
        Given::Flag => crate::safe_fs::Links::SameDir,
        Given::Config => crate::safe_fs::Links::Never,
    };
    let bytes = read_capped(&path, MAX_EVIDENCE_BYTES, links)?;
    let (format, read) = if sarif::looks_like(&bytes) {
        ("sarif", sarif::read(&bytes, &path, file, root)?)
    } else if junit::looks_like(&bytes) {
        let j = junit::read(&bytes, &path, file, root)?;
        let read = sarif::Read {
            findings: j.findings,
            tools: j.tools,
            warnings: j.warnings,
        };
        ("junit", read)
    } else {
        return Err(ChecksError::UnknownFormat { path });
    };
    use sha2::Digest;
    let record = EvidenceFile {
        file: file.to_string(),
        format: format.to_string(),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        tools: read.tools.clone(),
        findings: read.findings.len(),
    };
    Ok((record, read))
}

/// Runs one allowlisted tool (`--run-checks`) with the rules its mappings name, and reads
/// its SARIF; what isolated it is said in the warnings when bubblewrap did not.
fn run_tool(
    g: &Gather<'_>,
    tool: &str,
    root: &Root,
    facts: &mut Facts,
    warnings: &mut Vec<String>,
) -> Result<(), ChecksError> {
    let mut rules: Vec<String> = Vec::new();
    for m in facts
        .mappings
        .iter()
        .filter(|m| m.tool.eq_ignore_ascii_case(tool))
    {
        rules.extend(
            m.rules
                .iter()
                .filter(|r| !rules.contains(r))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let workspace = g.workspace.canonicalize().map_err(|e| ChecksError::Read {
        path: g.workspace.to_path_buf(),
        message: e.to_string(),
    })?;
    let ran = super::runner::run(tool, &rules, &workspace, g.tool_timeout)?;
    let origin = format!("{tool} (run by hatrack)");
    let read = sarif::read(&ran.stdout, Path::new(&origin), &origin, root)?;
    if !ran.record.sandboxed {
        warnings.push(format!(
            "{tool} ran without a sandbox: {}",
            ran.record.isolation
        ));
    }
    warnings.extend(read.warnings);
    facts.files.push(EvidenceFile {
        file: origin,
        format: "sarif".to_string(),
        sha256: ran.record.stdout_sha256.clone(),
        bytes: ran.record.stdout_bytes,
        tools: read.tools,
        findings: read.findings.len(),
    });
    facts.findings.extend(read.findings);
    facts.runs.push(ran.record);
    Ok(())
}

/// Each declared probe once (a probe mapped to two requirements runs once; one name with
/// two different probes is an error).
fn run_probes(
    g: &Gather<'_>,
    mappings: &[Mapping],
) -> Result<(Vec<Finding>, Vec<String>), ChecksError> {
    // Names are unique per probe ([`probe_names`]): each runs once.
    let mut probes: BTreeMap<&str, &ProbeSpec> = BTreeMap::new();
    for m in mappings {
        if let (Some(spec), Some(name)) = (&m.probe, m.rules.first()) {
            probes.insert(name, spec);
        }
    }
    if probes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let files = probe_files(g)?;
    let probing = Probing {
        workspace: g.workspace,
        files: &files,
        redact: g.redact,
    };
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    for (name, spec) in probes {
        let (found, warned) = probes::run(name, spec, &probing);
        findings.extend(found);
        warnings.extend(warned);
    }
    Ok((findings, warnings))
}

/// The workspace's files a probe may read: as binding sees them (no `.git`, `target`,
/// `node_modules`, run directories), minus the deny list of the tools.
fn probe_files(g: &Gather<'_>) -> Result<Vec<String>, ChecksError> {
    let files = crate::inputs::workspace_files(g.workspace).map_err(|e| ChecksError::Read {
        path: g.workspace.to_path_buf(),
        message: e.to_string(),
    })?;
    let deny = crate::tools::deny_set(g.deny).map_err(|e| ChecksError::Read {
        path: g.workspace.to_path_buf(),
        message: format!("[tools] deny: {e}"),
    })?;
    Ok(files.into_iter().filter(|f| !deny.is_match(f)).collect())
}

/// Stable order (tool, path, line, rule, message), passing records capped, a fingerprint
/// for each finding the tool gave none, and a unique name for each.
fn finalise(findings: &mut Vec<Finding>, warnings: &mut Vec<String>) {
    findings.sort_by(|a, b| {
        (&a.tool, &a.path, a.line, &a.rule, &a.message, &a.origin)
            .cmp(&(&b.tool, &b.path, b.line, &b.rule, &b.message, &b.origin))
    });
    let passes = findings.iter().filter(|f| f.level == Level::Pass).count();
    if passes > MAX_PASS_RECORDS {
        let mut kept = 0usize;
        findings.retain(|f| {
            if f.level != Level::Pass {
                return true;
            }
            kept += 1;
            kept <= MAX_PASS_RECORDS
        });
        warnings.push(format!(
            "{} passing records left out (at most {MAX_PASS_RECORDS} are kept)",
            passes - MAX_PASS_RECORDS
        ));
    }
    let mut seen: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for f in findings.iter_mut() {
        let path = f.path.clone().unwrap_or_default();
        if f.fingerprint.is_empty() {
            let key = (
                f.tool.clone(),
                f.rule.clone(),
                path.clone(),
                f.message.clone(),
            );
            let n = seen.entry(key).or_insert(0);
            f.fingerprint = fingerprint(&f.tool, &f.rule, &path, &f.message, *n);
            *n += 1;
        }
        let mut name = format!("{} {}", f.tool, f.rule);
        if let Some(at) = f.location() {
            name.push(' ');
            name.push_str(&at);
        }
        let name = crate::verdict::markers::escape_name(&name).into_owned();
        let count = names.entry(name.clone()).or_insert(0);
        *count += 1;
        f.name = if *count == 1 {
            name
        } else {
            format!("{name} #{count}")
        };
    }
}

/// The first [`MAX_WARNINGS`] warnings, and a count of the rest.
fn bounded(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("… and {more} more check warning(s)"));
    }
    warnings
}
