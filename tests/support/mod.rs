//! Shared test helpers. `Test` runs the real `hatrack` binary, in the style of just's
//! integration tests: each test states only what matters.
//!
//! ```ignore
//! Test::new().arg("check").arg("hats/deployment").status(0).stdout_has("1 stage").run();
//! ```
#![allow(dead_code)]

pub mod fake_openai;
pub mod fake_reviewer;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus/haiku-studios`, when this checkout has it (CI always does; a user's
/// clone does not). Tests that need it call this and return early, printing why — except
/// under `CI=true`, where a missing corpus fails the test instead of skipping it silently
/// (as the live tests do with a missing model).
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/corpus/haiku-studios");
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!(
        "{} is not present: the corpus tests need ../shared beside the repository (CI checks it out there)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {message}");
    }
    eprintln!("skipped: {message}");
    None
}

/// What a finished `hatrack` run printed.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A `hatrack` invocation and what it must do.
#[must_use]
pub struct Test {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    status: Option<i32>,
    stdout_has: Vec<String>,
    stdout_lacks: Vec<String>,
    stderr_has: Vec<String>,
    stdout_exact: Option<String>,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    /// Runs in the repository root with no OPENAI_* variables from the caller's environment.
    pub fn new() -> Self {
        Test {
            args: Vec::new(),
            env: Vec::new(),
            cwd: repo_root(),
            status: Some(0),
            stdout_has: Vec::new(),
            stdout_lacks: Vec::new(),
            stderr_has: Vec::new(),
            stdout_exact: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    /// The exit code the run must end with (default 0).
    pub fn status(mut self, code: i32) -> Self {
        self.status = Some(code);
        self
    }

    /// Accept any exit code.
    pub fn any_status(mut self) -> Self {
        self.status = None;
        self
    }

    pub fn stdout_has(mut self, text: impl Into<String>) -> Self {
        self.stdout_has.push(text.into());
        self
    }

    pub fn stdout_lacks(mut self, text: impl Into<String>) -> Self {
        self.stdout_lacks.push(text.into());
        self
    }

    pub fn stderr_has(mut self, text: impl Into<String>) -> Self {
        self.stderr_has.push(text.into());
        self
    }

    pub fn stdout(mut self, text: impl Into<String>) -> Self {
        self.stdout_exact = Some(text.into());
        self
    }

    /// Runs the binary and checks every expectation, printing both streams on failure.
    pub fn run(self) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hatrack"));
        cmd.args(&self.args).current_dir(&self.cwd);
        for key in [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "RUST_LOG",
            "HATRACK_MODEL",
            "HATRACK_JUDGE_MODEL",
            "HATRACK_JUDGE_BASE_URL",
            "HATRACK_JUDGE_API_KEY",
            "HATRACK_POLICY",
            "GITHUB_ACTIONS",
            "GITHUB_STEP_SUMMARY",
            "GITHUB_WORKSPACE",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            cmd.env_remove(key);
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("hatrack binary runs");
        let output = Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let context = || {
            format!(
                "hatrack {:?}\n--- exit {}\n--- stdout\n{}\n--- stderr\n{}",
                self.args, output.status, output.stdout, output.stderr
            )
        };
        if let Some(code) = self.status {
            assert_eq!(output.status, code, "unexpected exit code\n{}", context());
        }
        for text in &self.stdout_has {
            assert!(
                output.stdout.contains(text.as_str()),
                "stdout lacks {text:?}\n{}",
                context()
            );
        }
        for text in &self.stdout_lacks {
            assert!(
                !output.stdout.contains(text.as_str()),
                "stdout has {text:?}\n{}",
                context()
            );
        }
        for text in &self.stderr_has {
            assert!(
                output.stderr.contains(text.as_str()),
                "stderr lacks {text:?}\n{}",
                context()
            );
        }
        if let Some(exact) = &self.stdout_exact {
            assert_eq!(&output.stdout, exact, "stdout differs\n{}", context());
        }
        output
    }
}

/// Copies a directory tree (a stage, an example workspace, a run directory) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The Reads items of the shipped deployment stage, as `[inputs]` keys.
pub const DEPLOYMENT_READS: [&str; 5] = [
    "validation report",
    "transformation code",
    "extraction jobs",
    "infrastructure requirements from the intent",
    "sla requirements from discovery",
];

/// `[inputs]` lines binding every Reads item of the deployment stage to `file`.
pub fn inputs_bound_to(file: &str) -> String {
    let mut toml = String::from("[inputs]\n");
    for item in DEPLOYMENT_READS {
        toml.push_str(&format!("{item:?} = {file:?}\n"));
    }
    toml
}
