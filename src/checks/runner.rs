//! `--run-checks ruff`: hatrack runs an allowlisted linter itself, with the command line
//! hatrack builds (never one from the workspace), found on `PATH`.
//!
//! The tool runs with an empty environment (no API key reaches it), in its own process
//! group, killed with the whole group at its timeout, its output capped; inside bubblewrap
//! (`bwrap --unshare-all`: no network, the file system read-only, a private `/tmp`) when
//! bubblewrap is installed and can make a sandbox here, and otherwise with what was applied
//! said plainly in the run's check warnings. Its output is parsed as the SARIF it is and
//! kept, with the run's record ([`ToolRun`]), in `checks.json`: a replay never runs a tool
//! and needs none installed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{capped_line, ChecksError, MAX_EVIDENCE_BYTES};

/// The tools `--run-checks` runs: a name and the arguments hatrack gives it. Others are
/// refused (give their SARIF with `--evidence`).
pub const ALLOWLIST: &[&str] = &["ruff"];
/// How long a tool may run by default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Bytes of a tool's standard error kept for messages.
const STDERR_KEPT: usize = 2_000;

/// One tool run, as `checks.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRun {
    pub tool: String,
    /// The arguments hatrack gave it (the program's path left out).
    pub args: Vec<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// It ran inside bubblewrap.
    pub sandboxed: bool,
    /// What isolated it: `bubblewrap (…)` or what was applied without it.
    pub isolation: String,
    /// sha256 of its standard output (the SARIF read).
    pub stdout_sha256: String,
    pub stdout_bytes: u64,
}

/// A tool's output and how it ran.
pub struct Ran {
    pub record: ToolRun,
    pub stdout: Vec<u8>,
}

/// The arguments of an allowlisted tool: for ruff, its Airflow rules or the rules the
/// mappings name, no configuration file of the workspace (`--isolated`), no cache, SARIF on
/// standard output.
pub fn arguments(tool: &str, rules: &[String]) -> Result<Vec<String>, String> {
    match tool {
        "ruff" => {
            let ok = |r: &String| {
                !r.is_empty() && r.len() <= 16 && r.chars().all(|c| c.is_ascii_alphanumeric())
            };
            let select: Vec<String> = rules.iter().filter(|r| ok(r)).cloned().collect();
            let select = if select.is_empty() {
                "AIR".to_string()
            } else {
                select.join(",")
            };
            Ok([
                "check",
                "--isolated",
                "--no-cache",
                "--exit-zero",
                "--output-format",
                "sarif",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--select={select}"), ".".to_string()])
            .collect())
        }
        other => Err(format!(
            "--run-checks {other}: hatrack runs only {} itself; run {other} in CI and give its SARIF with --evidence",
            ALLOWLIST.join(", ")
        )),
    }
}

/// The tool's executable: the first `name` on `PATH` that is a file.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether bubblewrap is installed and can make a sandbox here (user namespaces may be
/// off): tried once per process.
fn bubblewrap() -> Result<PathBuf, String> {
    static PROBED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PROBED
        .get_or_init(|| {
            let bwrap = on_path("bwrap").ok_or("bubblewrap is not installed")?;
            let tried = Command::new(&bwrap)
                .args(["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/"])
                .args(["--", "true"])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output();
            match tried {
                Ok(out) if out.status.success() => Ok(bwrap),
                Ok(out) => Err(format!(
                    "bubblewrap cannot make a sandbox here ({})",
                    capped_line(&String::from_utf8_lossy(&out.stderr), 160)
                )),
                Err(e) => Err(format!("bubblewrap cannot run ({e})")),
            }
        })
        .clone()
}

/// The command that runs `program args` in `workspace`, and what isolates it.
fn command(program: &Path, args: &[String], workspace: &Path, timeout: u64) -> (Command, String) {
    let limits = format!(
        "an empty environment, a {timeout} s timeout killing its process group, a {} MiB output cap",
        MAX_EVIDENCE_BYTES >> 20
    );
    let (cmd, isolation) = match bubblewrap() {
        Ok(bwrap) => {
            let mut cmd = Command::new(bwrap);
            cmd.args(["--unshare-all", "--die-with-parent", "--new-session"])
                .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
                .args(["--tmpfs", "/tmp", "--chdir"])
                .arg(workspace)
                .arg("--")
                .arg(program)
                .args(args);
            let isolation = format!(
                "bubblewrap (no network, the file system read-only, a private /tmp), {limits}"
            );
            (cmd, isolation)
        }
        Err(why) => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            let isolation = format!(
                "{why}: {limits} only; the workspace was not mounted read-only and the network was not cut"
            );
            (cmd, isolation)
        }
    };
    finish(cmd, workspace, isolation)
}

fn finish(mut cmd: Command, workspace: &Path, isolation: String) -> (Command, String) {
    cmd.current_dir(workspace)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    (cmd, isolation)
}

/// Runs one allowlisted tool on `workspace` (absolute) with `rules` from the mappings.
pub fn run(
    tool: &str,
    rules: &[String],
    workspace: &Path,
    timeout: u64,
) -> Result<Ran, ChecksError> {
    let fail = |message: String| ChecksError::Tool {
        tool: tool.to_string(),
        message,
    };
    let args = arguments(tool, rules).map_err(&fail)?;
    let program = on_path(tool).ok_or_else(|| {
        fail(format!(
            "not found on PATH: install it (`pip install {tool}`), or run it in CI and give its SARIF with --evidence"
        ))
    })?;
    let (mut cmd, isolation) = command(&program, &args, workspace, timeout);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stdout)
            .take(MAX_EVIDENCE_BYTES + 1)
            .read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut bytes);
        bytes
    });
    let status = wait(&mut child, Duration::from_secs(timeout));
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(STDERR_KEPT)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let status = status.ok_or_else(|| {
        fail(format!(
            "did not finish within {timeout} s and was killed with its process group (--check-timeout raises the limit)"
        ))
    })?;
    if stdout.len() as u64 > MAX_EVIDENCE_BYTES {
        return Err(fail(format!(
            "wrote more than {} MiB: narrow the rules it runs",
            MAX_EVIDENCE_BYTES >> 20
        )));
    }
    if !status.success() {
        return Err(fail(format!(
            "exited with {status} ({isolation}): {}",
            capped_line(&tail, STDERR_KEPT)
        )));
    }
    Ok(Ran {
        record: ToolRun {
            tool: tool.to_string(),
            args,
            exit_code: status.code(),
            duration_ms: started.elapsed().as_millis() as u64,
            sandboxed: bubblewrap().is_ok(),
            isolation,
            stdout_sha256: hex::encode(Sha256::digest(&stdout)),
            stdout_bytes: stdout.len() as u64,
        },
        stdout,
    })
}

/// Waits for `child` at most `timeout`; past it, kills its whole process group (a tool's
/// own children too) and returns `None`.
fn wait(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    kill_group(child);
    let _ = child.wait();
    None
}

#[cfg(unix)]
fn kill_group(child: &mut std::process::Child) {
    // The child leads its own process group (`process_group(0)`): its id is the group's.
    let group = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.kill();
}

#[cfg(not(unix))]
fn kill_group(child: &mut std::process::Child) {
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_tools_run_with_the_arguments_hatrack_builds() {
        let args = arguments("ruff", &["AIR301".into(), "--fix".into(), "AIR302".into()]).unwrap();
        assert_eq!(
            args.join(" "),
            "check --isolated --no-cache --exit-zero --output-format sarif --select=AIR301,AIR302 ."
        );
        assert!(arguments("ruff", &[])
            .unwrap()
            .contains(&"--select=AIR".to_string()));
        let err = arguments("bash", &[]).unwrap_err();
        assert!(err.contains("runs only ruff"), "{err}");
    }
}
