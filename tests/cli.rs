//! The command line itself: help, version, and usage errors.

mod support;

use support::Test;

#[test]
fn help_lists_every_verb_and_the_exit_codes() {
    Test::new()
        .arg("--help")
        .stdout_has("run")
        .stdout_has("replay")
        .stdout_has("check")
        .stdout_has("list")
        .stdout_has("render")
        .stdout_has("diff")
        .stdout_has("4 replay miss")
        .run();
}

#[test]
fn an_unknown_verb_is_a_usage_error() {
    Test::new()
        .arg("frobnicate")
        .status(2)
        .stderr_has("unrecognized subcommand")
        .run();
}

#[test]
fn record_modes_are_spelled_as_in_vcr_tools() {
    let out = Test::new()
        .args(["run", "--record-mode", "sometimes"])
        .status(2)
        .run();
    for mode in ["none", "once", "new_episodes", "all"] {
        assert!(
            out.stderr.contains(mode),
            "{mode} missing from:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_missing_workspace_says_what_to_pass() {
    Test::new()
        .args(["run", "no/such/dir"])
        .status(2)
        .stderr_has("workspace no/such/dir is not a directory")
        .run();
}

#[test]
fn the_readme_hatrack_toml_example_is_a_valid_config() {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("the README shows a hatrack.toml")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config =
        hatrack::config::ConfigFile::parse(&readme[start..end], std::path::Path::new("README.md"))
            .unwrap_or_else(|e| panic!("the README's hatrack.toml does not parse: {e}"));
    assert!(config.input_for("validation report").is_some());
    assert_eq!(config.limits.max_file_bytes, 12000);
}
