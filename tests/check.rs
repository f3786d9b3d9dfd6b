//! `hatrack check`: counts, diagnostics with file:line, and exit codes — on the real
//! H·AI·K·U corpus, on the shipped stage, and on broken definitions built in a tempdir.

mod support;

use std::fs;
use std::path::Path;

use support::{corpus_dir, Test};

#[test]
fn the_whole_corpus_checks_clean_with_the_expected_counts() {
    let Some(corpus) = corpus_dir() else { return };
    let out = Test::new()
        .arg("check")
        .arg(&corpus)
        .status(0)
        .stdout_has("24 studios, 120 stages, 254 hats, 150 review agents (+16 included), 120 outputs, 92 discovery")
        // haiku-format.md §4.1: 1159 anti-pattern bullets, MUST NOT 909, MUST 249, SHOULD 1
        // (elaborator's second `### Anti-patterns` list included; the keyword prose after
        // the lists of builder/planner/reviewer is counted apart, not as constraints).
        .stdout_has("1159 hat constraints (909 MUST NOT, 249 MUST, 1 SHOULD)")
        .stdout_has("624 review checks (624 MUST)")
        // haiku-format.md §4.3 says 420 signal requirements: 318 with a keyword, 102
        // implicit. We find the same 318 and two more implicit ones (104): the corpus
        // statistics split sentences only at `[.!?]` directly followed by whitespace, so a
        // sentence ending in a closing quote (`… fix by Y."` in ideation/review and
        // `… do that again."` in incident-response/postmortem) was glued to the next one.
        // We also split after a closing quote, bold marker or parenthesis, which is where
        // those sentences really end: two separate requirements each.
        .stdout_has("422 completion-signal requirements (318 MUST, 104 implicit)")
        // software/{design,product} have `phases/` (ELABORATION, EXECUTION): read and shown,
        // adding no requirement. The 1.x corpus has no studio-level agents or fix hats, and
        // no qualified or reject label: the counts above are those before they were read.
        .stdout_has("4 phase files: guidance, shown, not run")
        .stdout_has("0 errors, 14 warnings")
        .run();
    assert!(!out.stdout.contains("studio level:"), "{}", out.stdout);
    let dangling: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": warning: dangling input:"))
        .collect();
    assert_eq!(dangling.len(), 14, "{}", out.stderr);
    // Each names the STAGE.md and the line of the `inputs:` entry.
    for line in &dangling {
        assert!(
            line.contains("/STAGE.md:")
                && line
                    .split(':')
                    .nth(1)
                    .is_some_and(|n| n.parse::<usize>().is_ok()),
            "{line}"
        );
    }
    assert!(out
        .stderr
        .contains("data-pipeline/stages/extraction/STAGE.md:8: warning: dangling input: `discovery: source-catalog`"));
    assert!(out
        .stderr
        .contains("documentation/stages/publish/STAGE.md:10: warning: dangling input: `discovery: review-report`"));
    assert!(out.stderr.contains(
        "gamedev/stages/release/STAGE.md:8: warning: dangling input: `output: game-build`"
    ));
}

#[test]
fn one_studio_and_one_stage_of_the_corpus_can_be_checked_alone() {
    let Some(corpus) = corpus_dir() else { return };
    Test::new()
        .arg("check")
        .arg(corpus.join("data-pipeline"))
        .stdout_has(
            "1 studio, 5 stages, 10 hats, 5 review agents (+3 included), 5 outputs, 0 discovery",
        )
        .run();
    Test::new()
        .arg("check")
        .arg(corpus.join("software/stages/design"))
        .stdout_has("0 studios, 1 stage, 2 hats")
        .stdout_has("2 phase files: guidance, shown, not run")
        .run();
}

#[test]
fn the_corpus_phase_files_are_listed_and_no_label_is_kept_on_its_plain_lists() {
    let Some(corpus) = corpus_dir() else { return };
    let out = Test::new()
        .args(["list", "--format", "json", "--stage"])
        .arg(corpus.join("software/stages/design"))
        .run();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let phases: Vec<&str> = v["stage"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["ELABORATION", "EXECUTION"]);
    let labelled = v["hats"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["constraints"].as_array().unwrap())
        .chain(
            v["review_agents"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|a| a["checks"].as_array().unwrap()),
        )
        .filter(|r| !r["label"].is_null())
        .count();
    assert_eq!(labelled, 0);
}

#[test]
fn default_path_checks_the_shipped_stage() {
    Test::new()
        .arg("check")
        .stdout_has("checked the stages built into hatrack: 0 studios, 1 stage, 2 hats, 1 review agent, 1 output, 0 discovery")
        .stdout_has("10 hat constraints (8 MUST NOT, 2 MUST), 4 review checks (4 MUST), 5 completion-signal requirements (2 MUST, 3 implicit)")
        .stdout_has("0 errors, 0 warnings")
        .run();
}

const GOOD_HAT: &str = "---\nname: builder\n---\n\n**Focus:** Build it.\n\n**Anti-patterns (RFC 2119):**\n- The agent **MUST NOT** skip tests\n";
const GOOD_AGENT: &str = "---\nname: judge\n---\n\n**Mandate:** The agent **MUST** verify it.\n\n**Check:**\n- The agent **MUST** verify that tests pass\n";

/// A valid one-hat stage in `root/stage`, for the tests below to break one piece of.
fn write_stage(root: &Path) -> std::path::PathBuf {
    let dir = root.join("stage");
    fs::create_dir_all(dir.join("hats")).unwrap();
    fs::create_dir_all(dir.join("review-agents")).unwrap();
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\ndescription: d\nhats: [builder]\nreview: auto\n---\n\n# Stage\n\n## Completion Signal\n\nIt **MUST** work.\n",
    )
    .unwrap();
    fs::write(dir.join("hats/builder.md"), GOOD_HAT).unwrap();
    fs::write(dir.join("review-agents/judge.md"), GOOD_AGENT).unwrap();
    dir
}

#[test]
fn a_valid_tempdir_stage_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    Test::new()
        .arg("check")
        .arg(&dir)
        .stdout_has("1 stage, 1 hat, 1 review agent")
        .stdout_has("0 errors, 0 warnings")
        .run();
}

#[test]
fn invalid_yaml_front_matter_names_the_real_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    // Line 3 of the file (line 2 of the YAML) is wrongly indented.
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\n  bad: indent\nhats: [builder]\n---\n\n# Stage\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has(
            "STAGE.md:3: error: invalid YAML in front matter: mapping values are not allowed",
        )
        .stderr_has("fix the YAML between the `---` lines")
        .run();
    // An unclosed flow list is reported where the parser notices it: the next line.
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\nhats: [builder\nreview: auto\n---\n\n# Stage\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("STAGE.md:4: error: invalid YAML in front matter")
        .run();
}

#[test]
fn unclosed_front_matter_is_an_error_at_line_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("hats/builder.md"),
        "---\nname: builder\n\n**Focus:** x\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("hats/builder.md:1: error: front matter starts with `---` but has no closing `---` line")
        .run();
}

#[test]
fn a_hat_listed_without_a_file_is_an_error_at_the_hats_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\ndescription: d\nhats: [builder, ghost]\n---\n\n# Stage\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("STAGE.md:4: error: hat `ghost` is listed in `hats:` but")
        .stderr_has("create it or remove the name")
        .run();
}

#[test]
fn a_hat_without_an_anti_pattern_section_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("hats/builder.md"),
        "---\nname: builder\n---\n\n**Focus:** Build it.\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("hats/builder.md:4: error: hat `builder` has no `**Anti-patterns (RFC 2119):**` section")
        .run();
}

#[test]
fn an_empty_anti_pattern_list_is_only_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("hats/builder.md"),
        "---\nname: builder\n---\n\n**Focus:** Build it.\n\n**Anti-patterns (RFC 2119):**\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(0)
        .stderr_has("hats/builder.md:7: warning: hat `builder` has an empty anti-pattern list")
        .stdout_has("0 errors, 1 warning")
        .run();
}

#[test]
fn a_non_utf8_file_is_an_error_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    let mut bytes = b"---\nname: judge\n---\n\n**Mandate:** caf".to_vec();
    bytes.push(0xE9); // latin-1 é
    bytes.extend_from_slice(b"\n");
    fs::write(dir.join("review-agents/judge.md"), bytes).unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("review-agents/judge.md:5: error: file is not valid UTF-8")
        .stderr_has("save it as UTF-8")
        .run();
}

#[test]
fn a_directory_that_is_not_a_stage_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    Test::new()
        .arg("check")
        .arg(tmp.path())
        .status(2)
        .stderr_has("error: no STAGE.md or STUDIO.md here or in its subdirectories")
        .run();
    Test::new()
        .arg("check")
        .arg(tmp.path().join("missing"))
        .status(2)
        .stderr_has("no such directory")
        .run();
}

#[test]
fn broken_inputs_entries_are_errors_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\nhats: [builder]\ninputs:\n  - stage: earlier\n    output: a\n  - stage: earlier\n---\n\n# Stage\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("STAGE.md:7: error: each `inputs:` entry needs `stage:` and exactly one of `discovery:` or `output:`")
        .stderr_has("STAGE.md:5: warning: input `output: a` names stage `earlier`, which is not next to this stage")
        .run();
}

#[test]
fn a_missing_included_agent_is_a_warning_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let studio = tmp.path().join("studio");
    let stages = studio.join("stages");
    fs::create_dir_all(&stages).unwrap();
    fs::write(
        studio.join("STUDIO.md"),
        "---\nname: studio\nstages: [first, stage]\n---\n# S\n",
    )
    .unwrap();
    let first = write_stage(&stages);
    fs::rename(&first, stages.join("first")).unwrap();
    let dir = write_stage(&stages);
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\nhats: [builder]\nreview-agents-include:\n  - stage: first\n    agents: [judge, nobody]\n---\n\n# Stage\n\n## Completion Signal\n\nDone.\n",
    )
    .unwrap();
    fs::rename(
        stages.join("first/review-agents/judge.md"),
        stages.join("first/review-agents/other.md"),
    )
    .unwrap();
    fs::write(
        stages.join("first/review-agents/other.md"),
        GOOD_AGENT.replace("judge", "other"),
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&studio)
        .status(0)
        .stdout_has("1 studio, 2 stages")
        .stderr_has("stage/STAGE.md:5: warning: included agent `judge` from stage `first` has the name of an own review agent")
        .stderr_has("stage/STAGE.md:5: warning: included review agent `nobody` from stage `first` not found")
        .run();
}

#[test]
fn a_hat_listed_twice_is_an_error_and_a_renamed_stage_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: other\nhats: [builder, builder]\n---\n\n# Stage\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(2)
        .stderr_has("STAGE.md:3: error: hat `builder` is listed twice in `hats:`")
        .stderr_has("STAGE.md:2: warning: front-matter `name: other` differs from the directory name `stage`")
        .run();
}

#[test]
fn an_unknown_gate_kind_is_a_warning_and_a_file_path_says_to_pass_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_stage(tmp.path());
    fs::write(
        dir.join("STAGE.md"),
        "---\nname: stage\nhats: [builder]\nreview: [extrenal, ask]\n---\n\n# Stage\n\n## Completion Signal\n\nDone.\n",
    )
    .unwrap();
    Test::new()
        .arg("check")
        .arg(&dir)
        .status(0)
        .stderr_has("STAGE.md:4: warning: unknown gate kind `extrenal` in `review:`")
        .run();
    Test::new()
        .arg("check")
        .arg(dir.join("STAGE.md"))
        .status(2)
        .stderr_has("STAGE.md: error: is a file; pass the directory that holds STAGE.md")
        .run();
}
