//! The batch index (`batch.json`, `batch.md`, `batch.html`, `junit.xml` in the batch
//! directory), built only from what each member's run directory holds: its `member.json`
//! (how the run ended) and, when it reached one, its `report.json`. A batch run and a merge
//! of shards therefore write the same index. It holds no times, so the same runs give the
//! same files. It also records its [`Scope`]: the shard it ran and the whole batch's member
//! list, so a merge can tell a complete set of shards from an incomplete or mixed one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scope::Scope;
use super::valid_name;
use crate::report::{junit, Report, VerdictCounts};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

/// The version of `batch.json`'s shape (2: with its [`Scope`]).
pub const BATCH_SCHEMA_VERSION: u32 = 2;

/// The index's data file, which also marks a directory as a batch directory.
pub const INDEX_FILE: &str = "batch.json";

/// How one member's run ended, written into its run directory by the batch runner.
pub const MEMBER_FILE: &str = "member.json";

/// Largest `member.json` / `report.json` read back (a hostile run directory cannot make the
/// index read gigabytes).
const MAX_READ: u64 = 64 * 1024 * 1024;

/// `member.json`: the exit code of a member's run, and the error that ended it early.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEnd {
    pub exit_code: i32,
    /// The error message (scrubbed) when the run ended without a report of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchIndex {
    pub schema_version: u32,
    pub hatrack_version: String,
    /// The worst (highest) exit code of the members: what `hatrack run` returns.
    pub exit_code: i32,
    pub summary: String,
    pub counts: BatchCounts,
    /// Members by name.
    pub workspaces: Vec<MemberReport>,
    /// The shard this directory holds and the whole batch's members (absent only in an
    /// index an older hatrack wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    pub workspaces: u32,
    pub signal_met: u32,
    pub signal_not_met: u32,
    /// Runs that ended without a verdict (exit 2–5).
    pub failed: u32,
    /// Members of the batch a `merge --partial` did not get (never reviewed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// The member's run directory inside the batch directory.
    pub name: String,
    pub exit_code: i32,
    /// `None` when the run ended without a report.
    pub signal_met: Option<bool>,
    /// The report's one-line outcome, or the error that ended the run.
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<VerdictCounts>,
    /// Requirements, checks and hats that block the signal, of how many could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<Blocking>,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MemberReport {
    /// Its error, else its summary, on one line.
    pub fn detail(&self) -> String {
        crate::verdict::fold_whitespace(self.error.as_deref().unwrap_or(&self.summary))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocking {
    pub blocking: u32,
    pub of: u32,
}

/// A member as read back: its index entry and its JUnit suite (built from its report while
/// that is at hand, so a batch reads each member once, as it ends).
pub struct Loaded {
    pub entry: MemberReport,
    pub suite: quick_junit::TestSuite,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{}: {message}", .path.display())]
    Member { path: PathBuf, message: String },
}

/// Reads every member run directory named in `names` under `batch_dir`, in name order.
pub fn load(batch_dir: &Path, names: &[String]) -> Result<Vec<Loaded>, IndexError> {
    let mut loaded = names
        .iter()
        .map(|n| load_member(batch_dir, n))
        .collect::<Result<Vec<_>, _>>()?;
    sort(&mut loaded);
    Ok(loaded)
}

/// The index's order: by member name.
pub fn sort(members: &mut [Loaded]) {
    members.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
}

/// Reads one member's run directory (its member.json, and its report.json when it ran).
pub fn load_member(batch_dir: &Path, name: &str) -> Result<Loaded, IndexError> {
    let dir = batch_dir.join(name);
    let bad = |path: PathBuf, message: String| IndexError::Member { path, message };
    if !valid_name(name) {
        return Err(bad(dir, "not a member name hatrack writes".into()));
    }
    let end_path = dir.join(MEMBER_FILE);
    let end: MemberEnd = read_json(&end_path).map_err(|m| bad(end_path.clone(), m))?;
    let report: Option<Report> = if end.error.is_none() {
        let path = dir.join("report.json");
        let report: Report = read_json(&path).map_err(|m| bad(path.clone(), m))?;
        agreeing(&end, &report).map_err(|m| bad(dir.clone(), m))?;
        Some(report)
    } else {
        None
    };
    let entry = match &report {
        Some(r) => MemberReport {
            name: name.to_string(),
            exit_code: end.exit_code,
            signal_met: Some(r.outcome.signal_met),
            summary: r.outcome.summary.clone(),
            stage: Some(r.stage.name.clone()),
            counts: Some(r.outcome.counts),
            blocking: Some(Blocking {
                blocking: r.outcome.reasons.len() as u32,
                of: r.outcome.blocking_total,
            }),
            total_tokens: r
                .run
                .usage
                .prompt_tokens
                .saturating_add(r.run.usage.completion_tokens),
            error: None,
        },
        None => MemberReport {
            name: name.to_string(),
            exit_code: end.exit_code,
            signal_met: None,
            summary: format!("failed (exit {})", end.exit_code),
            stage: None,
            counts: None,
            blocking: None,
            total_tokens: 0,
            error: end.error.clone(),
        },
    };
    let suite = member_suite(&entry, report.as_ref());
    Ok(Loaded { entry, suite })
}

/// One member's JUnit suite: its report's cases, or one failed case saying why it has none.
pub fn member_suite(entry: &MemberReport, report: Option<&Report>) -> TestSuite {
    if let Some(r) = report {
        return junit::workspace_suite(&entry.name, r);
    }
    let mut suite = TestSuite::new(entry.name.as_str());
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_type(format!("exit {}", entry.exit_code))
        .set_message(entry.detail());
    let mut case = TestCase::new("run", status);
    case.set_classname(entry.name.as_str());
    suite.add_test_case(case);
    suite
}

/// A run that ended with a report says the same thing three times: the signal is met
/// exactly when no reason blocks it, its exit code is 0 then (else 1), and `member.json`
/// holds that exit code. The index takes the exit code from `member.json` and the result
/// from `report.json`, so a run directory where they disagree (edited, or mixed from two
/// runs) is refused rather than allowed to open the batch's gate.
fn agreeing(end: &MemberEnd, report: &Report) -> Result<(), String> {
    let outcome = &report.outcome;
    let met = if outcome.signal_met { "met" } else { "not met" };
    let problem = if outcome.signal_met != outcome.reasons.is_empty() {
        Some(format!(
            "report.json says the signal is {met} with {} blocking reason(s)",
            outcome.reasons.len()
        ))
    } else if outcome.exit_code != i32::from(!outcome.signal_met) {
        Some(format!(
            "report.json's exit code is {} for a signal {met}",
            outcome.exit_code
        ))
    } else if end.exit_code != outcome.exit_code {
        Some(format!(
            "{MEMBER_FILE} says exit {} but report.json says exit {}",
            end.exit_code, outcome.exit_code
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!(
            "{p}, which hatrack never writes: was the run directory edited? Run that workspace again"
        )),
        None => Ok(()),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    use std::io::Read;
    let file = crate::safe_fs::open_read_no_follow(path)
        .map_err(|e| format!("cannot read it ({e}); is this a batch directory hatrack wrote?"))?;
    let mut bytes = Vec::new();
    file.take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it ({e})"))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(format!("larger than {MAX_READ} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("not valid: {e}"))
}

/// The index over loaded members. A scope that lacks shards or members (a partial merge)
/// makes the batch's exit code at least 1: workspaces never reviewed cannot pass the gate.
pub fn build(members: &[Loaded], scope: Option<Scope>) -> BatchIndex {
    let mut counts = BatchCounts {
        workspaces: members.len() as u32,
        missing: scope
            .as_ref()
            .and_then(|s| s.missing.as_ref())
            .map_or(0, |m| m.workspaces.len() as u32),
        ..BatchCounts::default()
    };
    for m in members {
        match m.entry.signal_met {
            Some(true) => counts.signal_met += 1,
            Some(false) => counts.signal_not_met += 1,
            None => counts.failed += 1,
        }
    }
    let mut exit_code = members.iter().map(|m| m.entry.exit_code).max().unwrap_or(0);
    let mut text = summary(&counts);
    if let Some(reason) = scope.as_ref().and_then(Scope::missing_reason) {
        exit_code = exit_code.max(1);
        text.push_str("; ");
        text.push_str(&reason);
    }
    BatchIndex {
        schema_version: BATCH_SCHEMA_VERSION,
        hatrack_version: env!("CARGO_PKG_VERSION").to_string(),
        exit_code,
        summary: text,
        counts,
        workspaces: members.iter().map(|m| m.entry.clone()).collect(),
        scope,
    }
}

fn summary(c: &BatchCounts) -> String {
    let mut text = format!(
        "{} of {} workspace(s) met the completion signal",
        c.signal_met, c.workspaces
    );
    if c.signal_not_met > 0 {
        text.push_str(&format!("; {} did not", c.signal_not_met));
    }
    if c.failed > 0 {
        text.push_str(&format!("; {} ended without a verdict", c.failed));
    }
    text
}

/// A batch directory's `batch.json`.
pub fn read(batch_dir: &Path) -> Result<BatchIndex, IndexError> {
    let path = batch_dir.join(INDEX_FILE);
    read_json(&path).map_err(|message| IndexError::Member {
        path: path.clone(),
        message,
    })
}

/// Member names listed by a batch directory's `batch.json`.
pub fn listed_members(batch_dir: &Path) -> Result<Vec<String>, IndexError> {
    Ok(read(batch_dir)?
        .workspaces
        .into_iter()
        .map(|w| w.name)
        .collect())
}
