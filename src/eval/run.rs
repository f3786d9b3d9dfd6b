//! Running a labelled suite through the batch machinery (one run directory per case),
//! scoring recorded runs again (`--from`), and replaying an eval directory. Labels are
//! checked against the stage each case runs before any request is made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::files::{label_error, read_suite_file, score, write_suite_file};
use super::labels::{self, LabelErrors, Suite};
use super::{EvalReport, Thresholds, EVAL_FILE};
use crate::batch::Member;
use crate::cli::{GlobalArgs, RunArgs};
use crate::run::judges_only::Hats;
use crate::run::setup;
use crate::Error;

/// A suite to run: where its cases are, which split, where the eval goes, and the run
/// flags every case runs with (as a batch of `hatrack run` would take them).
pub struct SuiteRun<'a> {
    pub dir: &'a Path,
    pub split: Option<&'a str>,
    pub out: PathBuf,
    pub run_args: RunArgs,
    /// `--rejudge-from`: an eval directory of the same suite whose hats replay.
    pub rejudge_from: Option<&'a Path>,
    pub thresholds: Thresholds,
    pub allow_stale: bool,
}

/// The suite's labels (the cases of `split` only, when given; none is a usage error).
pub fn load_suite(dir: &Path, split: Option<&str>) -> Result<Suite, Error> {
    let mut suite = labels::load_suite(dir).map_err(label_error)?;
    if let Some(split) = split {
        suite.cases.retain(|c| c.split.as_str() == split);
        if suite.cases.is_empty() {
            return Err(Error::usage(format!(
                "{}: no case of the {split} split",
                dir.display()
            )));
        }
    }
    Ok(suite)
}

/// Scores the runs recorded in `from` again into `to` (default `from`): against the
/// labels of `suite_dir`, or those the eval ran with (suite.json).
pub fn score_recorded(
    from: &Path,
    to: &Path,
    (suite_dir, split): (Option<&Path>, Option<&str>),
    thresholds: Thresholds,
    allow_stale: bool,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let (suite, shown) = match suite_dir {
        Some(dir) => (load_suite(dir, split)?, dir.to_path_buf()),
        None => {
            let mut suite = read_suite_file(from)?;
            if let Some(split) = split {
                suite.cases.retain(|c| c.split.as_str() == split);
            }
            (suite, PathBuf::new())
        }
    };
    score(
        from,
        to,
        (&suite, &shown),
        thresholds,
        allow_stale,
        global,
        out,
    )
}

/// Runs every case of the suite in `suite.dir` as a member of one batch into `suite.out`
/// (labels checked against each case's stage first), then scores them; a shard only runs.
pub async fn run_suite(
    suite: &SuiteRun<'_>,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let SuiteRun {
        dir: suite_dir,
        split,
        out: dir,
        run_args,
        rejudge_from,
        thresholds,
        allow_stale,
    } = suite;
    let suite = load_suite(suite_dir, *split)?;
    check_stages(&suite, suite_dir, run_args, *allow_stale)?;
    if let Some(old) = rejudge_from {
        let missing: Vec<&str> = suite
            .cases
            .iter()
            .filter(|c| !c.fixed_artifacts)
            .filter(|c| {
                !old.join(&c.name)
                    .join(crate::run::rundir::EXCHANGES_FILE)
                    .is_file()
            })
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::usage(format!(
                "--rejudge-from {}: no recorded run of {}: rejudge an eval directory of the same suite",
                old.display(),
                missing.join(", ")
            )));
        }
    }
    let members: Vec<Member> = suite
        .cases
        .iter()
        .map(|c| Member {
            name: c.name.clone(),
            workspace: c.workspace.clone(),
            hats: match rejudge_from {
                _ if c.fixed_artifacts => {
                    Hats::Files(suite_dir.join(&c.name).join(labels::ARTIFACTS_DIR))
                }
                Some(old) => Hats::Replayed(old.join(&c.name)),
                None => Hats::Asked,
            },
        })
        .collect();
    let batch_exit =
        crate::batch::run::run_members(run_args, global, members, dir, &mut std::io::sink())
            .await?;
    write_suite_file(dir, &suite)?;
    if let Some(shard) = run_args.shard {
        if !global.quiet {
            let _ = writeln!(
                out,
                "ran shard {shard} of the suite into {}: merge every shard (`hatrack merge SHARD_DIR… --out DIR`), then score them with `hatrack eval {} --from DIR`",
                dir.display(),
                suite_dir.display()
            );
        }
        return Ok(if batch_exit >= 2 { batch_exit } else { 0 });
    }
    score(
        dir,
        dir,
        (&suite, suite_dir),
        *thresholds,
        *allow_stale,
        global,
        out,
    )
}

/// Every case's labels against the stage that case will run (as its run resolves it), so
/// a mistyped or stale label stops the eval before any request.
fn check_stages(
    suite: &Suite,
    suite_dir: &Path,
    run_args: &RunArgs,
    allow_stale: bool,
) -> Result<(), Error> {
    let mut stages: BTreeMap<PathBuf, (BTreeSet<String>, String, String)> = BTreeMap::new();
    let mut problems = Vec::new();
    for case in &suite.cases {
        let workspace = setup::workspace_dir(Some(&case.workspace))?;
        let (config, _) = setup::run_config(run_args, &workspace)?;
        let stage_dir = setup::stage_dir(&run_args.stage, &config, &workspace)?;
        if !stages.contains_key(&stage_dir) {
            let stage = setup::load_stage(&stage_dir)?.stage;
            let ids = stage
                .hats
                .iter()
                .flat_map(|h| h.constraints().map(|r| r.id.clone()))
                .chain(
                    stage
                        .review_agents
                        .iter()
                        .flat_map(|a| a.checks.iter().map(|r| r.id.clone())),
                )
                .chain(stage.completion_signal.iter().map(|r| r.id.clone()))
                .collect();
            let digest = crate::definition::definition_digest(&stage);
            stages.insert(stage_dir.clone(), (ids, stage.name.clone(), digest));
        }
        let (ids, name, digest) = &stages[&stage_dir];
        if case.fixed_artifacts {
            let stage = setup::load_stage(&stage_dir)?.stage;
            let dir = suite_dir.join(&case.name).join(labels::ARTIFACTS_DIR);
            for hat in &stage.hats {
                let fixed = dir.join(&hat.name);
                let any_file = walkdir::WalkDir::new(&fixed)
                    .into_iter()
                    .filter_map(Result::ok)
                    .any(|e| e.file_type().is_file());
                if !any_file {
                    problems.push(format!(
                        "{}: the case fixes artifacts, but none for hat {} (stage {name}): add {}/{}/… or remove {}",
                        suite_dir.join(&case.labels_file).display(),
                        hat.name,
                        labels::ARTIFACTS_DIR,
                        hat.name,
                        dir.display()
                    ));
                }
            }
        }
        if let Err(mut e) =
            labels::check_against_stage(case, suite_dir, ids, (name, digest), allow_stale)
        {
            problems.append(&mut e.0);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(label_error(LabelErrors(problems)))
    }
}

/// `hatrack replay DIR` of an eval directory: the batch is replayed, then scored again with
/// the labels and thresholds it recorded, so an unchanged eval rewrites every file byte for
/// byte.
pub async fn replay(
    args: &crate::cli::ReplayArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let dir = &args.transcript;
    let previous: EvalReport = serde_json::from_str(
        &std::fs::read_to_string(dir.join(EVAL_FILE))
            .map_err(|e| Error::io(format!("reading {}", dir.join(EVAL_FILE).display()), e))?,
    )
    .map_err(|e| Error::usage(format!("{}: {e}", dir.join(EVAL_FILE).display())))?;
    let mut thresholds = Thresholds::default();
    for t in &previous.thresholds {
        let slot = match t.flag.as_str() {
            "--min-tpr" => &mut thresholds.min_tpr,
            "--min-tnr" => &mut thresholds.min_tnr,
            "--min-kappa" => &mut thresholds.min_kappa,
            _ => &mut thresholds.max_abstain,
        };
        *slot = Some(t.limit);
    }
    crate::batch::run::replay(args, global, &mut std::io::sink()).await?;
    let suite = read_suite_file(dir)?;
    score(
        dir,
        dir,
        (&suite, Path::new("")),
        thresholds,
        true,
        global,
        out,
    )
}
