//! `hatrack init`: a commented hatrack.toml that binds every Reads item of the stage to the
//! repository's files, so `render` (and `run`) work with no hand edits; TODO lines for what
//! it cannot find; never an overwrite without --force.

mod support;

use std::path::Path;

use support::{repo_root, Test};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A typical Airflow + dbt repository.
fn airflow_dbt_repo(root: &Path) {
    write(
        root,
        &[
            ("README.md", "# Payments pipeline\n\nLoads payments hourly; the SLA is 07:00 UTC, on-call is #data-oncall.\n"),
            ("dags/payments_hourly.py", "from airflow import DAG\n\nwith DAG('payments_hourly', schedule='@hourly') as dag:\n    pass\n"),
            ("dags/common/alerts.py", "def on_failure(context):\n    pass\n"),
            ("dbt_project.yml", "name: payments\nversion: '1.0'\n"),
            ("models/staging/stg_payments.sql", "select * from {{ source('raw', 'payments') }}\n"),
            ("models/staging/schema.yml", "version: 2\nmodels:\n  - name: stg_payments\n"),
            ("models/marts/fct_payments.sql", "select * from {{ ref('stg_payments') }}\n"),
            ("ops/runbook.md", "# Runbook\n\nIf the source is down, wait and rerun.\n"),
            ("reports/data-validation-2024-06.md", "# Validation\n\nAll row counts match.\n"),
            ("infra/main.tf", "resource \"null_resource\" \"x\" {}\n"),
        ],
    );
}

/// The workspace files a step's request quotes, in order.
fn quoted(step: &str, workspace: &Path) -> Vec<String> {
    let out = Test::new().args(["render", step]).arg(workspace).run();
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("<<<BEGIN "))
        .map(|l| l.trim_end_matches(">>>").to_string())
        .collect()
}

#[test]
fn init_binds_a_typical_airflow_dbt_repository_and_render_works_with_no_edits() {
    let repo = tempfile::tempdir().unwrap();
    airflow_dbt_repo(repo.path());
    Test::new()
        .current_dir(repo.path())
        .arg("init")
        .stdout_has("5 input(s) bound for stage deployment, 0 to fill in")
        .run();
    let text = std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap();
    assert!(!text.contains("# TODO:"), "{text}");
    for line in [
        r#""validation report" = ["reports/**/*validation*"]"#,
        r#""transformation code" = ["models/**/*.sql", "models/**/*.yml", "dbt_project.yml"]"#,
        r#""extraction jobs" = ["dags/**/*.py"]"#,
        r#""infrastructure requirements from the intent" = ["README.md", "infra/**", "ops/runbook*.md"]"#,
        r#""sla requirements from discovery" = ["README.md", "ops/**"]"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    Test::new()
        .current_dir(repo.path())
        .args(["render", "pipeline-engineer"])
        .stdout_has("<<<BEGIN dags/payments_hourly.py>>>")
        .stdout_has("<<<BEGIN models/staging/stg_payments.sql>>>")
        .run();
    Test::new()
        .current_dir(repo.path())
        .args(["render", "sre"])
        .stdout_has("<<<BEGIN ops/runbook.md>>>")
        .run();
    // Deterministic: a second init (forced) writes the same file.
    Test::new()
        .current_dir(repo.path())
        .args(["init", "--force"])
        .run();
    assert_eq!(
        std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap(),
        text
    );
}

#[test]
fn init_on_the_example_workspace_binds_what_its_own_config_binds() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("orders-pipeline");
    let example = repo_root().join("examples/orders-pipeline");
    for entry in walkdir::WalkDir::new(&example) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&example).unwrap();
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(ws.join(rel)).unwrap();
        } else if rel != Path::new("hatrack.toml") {
            std::fs::copy(entry.path(), ws.join(rel)).unwrap();
        }
    }
    let elsewhere = tempfile::tempdir().unwrap();
    Test::new()
        .current_dir(elsewhere.path())
        .arg("init")
        .arg(&ws)
        .stdout_has("0 to fill in")
        .run();
    for step in ["pipeline-engineer", "sre", "review/reliability"] {
        assert_eq!(quoted(step, &ws), quoted(step, &example), "{step}");
    }
}

#[test]
fn what_init_cannot_find_is_a_todo_that_stops_the_run_by_name() {
    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        &[("README.md", "# Pipeline\n"), ("dags/a.py", "pass\n")],
    );
    Test::new()
        .current_dir(repo.path())
        .arg("init")
        .stdout_has("TODO: \"validation report\"")
        .stdout_has("TODO: \"transformation code\"")
        .run();
    let text = std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap();
    assert!(
        text.contains("# TODO: no file found for \"validation report\""),
        "{text}"
    );
    // The placeholder is an unbound item, told as such — not a path to fix.
    let out = Test::new()
        .current_dir(repo.path())
        .args(["render", "pipeline-engineer"])
        .status(2)
        .stderr_has("Reads item \"validation report\" is not bound yet")
        .stderr_has("\"TODO/validation-report\" that `hatrack init` wrote")
        .stderr_has("\"validation report\" = \"path/to/file\"")
        .run();
    assert!(!out.stderr.contains("matches no file"), "{}", out.stderr);
}

#[test]
fn init_never_overwrites_without_force() {
    let repo = tempfile::tempdir().unwrap();
    airflow_dbt_repo(repo.path());
    std::fs::write(repo.path().join("hatrack.toml"), "# mine\n").unwrap();
    Test::new()
        .arg("init")
        .arg(repo.path())
        .status(2)
        .stderr_has("pass --force")
        .run();
    assert_eq!(
        std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap(),
        "# mine\n"
    );
    Test::new()
        .arg("init")
        .arg(repo.path())
        .arg("--force")
        .run();
    assert!(std::fs::read_to_string(repo.path().join("hatrack.toml"))
        .unwrap()
        .contains("[inputs]"));
}

#[test]
fn init_with_a_stage_on_disk_writes_its_path() {
    let repo = tempfile::tempdir().unwrap();
    airflow_dbt_repo(repo.path());
    Test::new()
        .arg("init")
        .arg(repo.path())
        .arg("--stage")
        .arg(repo_root().join("hats/deployment"))
        .run();
    let text = std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap();
    assert!(text.contains("[stage]\npath = \""), "{text}");
    // Rewriting with --force keeps the stage the file names.
    Test::new()
        .arg("init")
        .arg(repo.path())
        .arg("--force")
        .run();
    assert_eq!(
        std::fs::read_to_string(repo.path().join("hatrack.toml")).unwrap(),
        text
    );
    // `list` names the stage init wrote, as [stage] path spells it: relative to the
    // workspace when the stage lies next to it (both under /tmp, say), else absolute.
    let out = Test::new().current_dir(repo.path()).arg("list").run();
    let shown = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("definition: "))
        .expect("list names the definition");
    assert_eq!(
        repo.path().join(shown).canonicalize().unwrap(),
        repo_root().join("hats/deployment").canonicalize().unwrap(),
        "{shown}"
    );
}

/// A hatrack.toml that is a link (a repository can commit one) is never written through:
/// without --force even a dangling link is "already there" (not an I/O error with a
/// disk-space hint); with --force the link is replaced by a new file and its target keeps
/// its contents.
#[cfg(unix)]
#[test]
fn init_never_writes_through_a_linked_hatrack_toml() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    airflow_dbt_repo(&repo);
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "not hatrack's to change\n").unwrap();
    let config = repo.join("hatrack.toml");

    // A dangling link: refused by name, left in place.
    std::os::unix::fs::symlink(dir.path().join("missing.toml"), &config).unwrap();
    let out = Test::new()
        .current_dir(&repo)
        .arg("init")
        .status(2)
        .stderr_has("hatrack.toml already exists (a symbolic link)")
        .stderr_has("pass --force")
        .run();
    assert!(!out.stderr.contains("disk space"), "{}", out.stderr);
    assert!(config.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(!dir.path().join("missing.toml").exists());

    // A link to an outside file: --force replaces the link, the outside file is untouched.
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(&outside, &config).unwrap();
    Test::new()
        .current_dir(&repo)
        .args(["init", "--force"])
        .stdout_has("5 input(s) bound")
        .run();
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "not hatrack's to change\n"
    );
    let meta = config.symlink_metadata().unwrap();
    assert!(meta.is_file(), "hatrack.toml is a regular file now");
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("\"extraction jobs\" = [\"dags/**/*.py\"]"));
}
