//! `hatrack eval`: run a labelled suite through the batch machinery (one run directory per
//! case), or score recorded runs again (`--from`), or compare two evals (`eval compare`).
//! Labels are checked against the stage each case runs before any request is made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::Member;
use crate::cli::{EvalArgs, EvalCommand, EvalCompareArgs, GlobalArgs, ReportArgs, RunArgs};
use crate::eval::labels::{self, LabelErrors, Suite};
use crate::eval::{self, render, EvalReport, Thresholds, EVAL_FILE, SUITE_FILE};
use crate::run::judges_only::Hats;
use crate::run::setup;
use crate::Error;

pub async fn eval(args: &EvalArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if let Some(EvalCommand::Compare(c)) = &args.command {
        return compare(c, global, out);
    }
    match (&args.from, &args.suite) {
        (Some(from), suite) => {
            refuse_run_flags(args)?;
            let (suite, shown) = match suite {
                Some(dir) => (load_suite(dir, args.split.as_deref())?, dir.clone()),
                None => {
                    let mut suite = read_suite_file(from)?;
                    if let Some(split) = &args.split {
                        suite.cases.retain(|c| c.split.as_str() == split);
                    }
                    (suite, PathBuf::new())
                }
            };
            let to = args.out.clone().unwrap_or_else(|| from.clone());
            score(from, &to, (&suite, &shown), thresholds(args), args.allow_stale_labels, global, out)
        }
        (None, Some(suite)) => run_suite(args, suite, global, out).await,
        (None, None) => Err(Error::usage(
            "eval needs a SUITE to run (`hatrack eval SUITE --out DIR`) or a recorded eval to score (`hatrack eval --from DIR`)",
        )),
    }
}

fn thresholds(args: &EvalArgs) -> Thresholds {
    Thresholds {
        min_tpr: args.min_tpr,
        min_tnr: args.min_tnr,
        min_kappa: args.min_kappa,
        max_abstain: args.max_abstain,
    }
}

fn load_suite(dir: &Path, split: Option<&str>) -> Result<Suite, Error> {
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

fn label_error(e: LabelErrors) -> Error {
    Error::usage(format!("labels refused:\n{e}"))
}

/// `--from` scores what is recorded: flags that would change a run have nothing to act on.
fn refuse_run_flags(args: &EvalArgs) -> Result<(), Error> {
    let m = &args.model;
    let given = [
        ("--model", m.model.is_some()),
        ("--judge-model", m.judge_model.is_some()),
        ("--base-url", m.base_url.is_some()),
        ("--prompts", args.prompts.is_some()),
        ("--samples", args.samples.is_some()),
        ("--shard", args.shard.is_some()),
        (
            "--stage",
            args.stage.stage.is_some() || args.stage.studio.is_some(),
        ),
        ("--record-mode", args.record_mode.is_some()),
        ("--policy", args.trust.policy.is_some()),
        ("--without-checks", args.without_checks),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(Error::usage(format!(
            "{flag} changes a run, and `eval --from` runs nothing (it scores recorded runs offline): run the suite again with `hatrack eval SUITE --out NEW_DIR {flag} …`"
        ))),
        None => Ok(()),
    }
}

/// The run flags every case runs with, as a batch of `hatrack run` would take them.
fn run_args(args: &EvalArgs, dir: &Path) -> RunArgs {
    RunArgs {
        workspaces: Vec::new(),
        manifest: None,
        shard: args.shard,
        stage: args.stage.clone(),
        model: args.model.clone(),
        transcript: Some(dir.to_path_buf()),
        record_mode: args.record_mode,
        from_transcript: None,
        resume: None,
        report: ReportArgs {
            prompts: args.prompts.clone(),
            out: None,
            allow_unknown: args.allow_unknown,
            allow_unstable: args.allow_unstable,
            prices: args.prices.clone(),
            github: false,
        },
        samples: args.samples,
        trust: args.trust.clone(),
        evidence: Vec::new(),
        run_checks: Vec::new(),
        check_timeout: None,
        without_checks: args.without_checks,
    }
}

async fn run_suite(
    args: &EvalArgs,
    suite_dir: &Path,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let suite = load_suite(suite_dir, args.split.as_deref())?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| crate::run::lifecycle::default_dir("eval"));
    let run_args = run_args(args, &dir);
    check_stages(&suite, suite_dir, &run_args, args.allow_stale_labels)?;
    if let Some(old) = &args.rejudge_from {
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
            hats: match &args.rejudge_from {
                _ if c.fixed_artifacts => {
                    Hats::Files(suite_dir.join(&c.name).join(labels::ARTIFACTS_DIR))
                }
                Some(old) => Hats::Replayed(old.join(&c.name)),
                None => Hats::Asked,
            },
        })
        .collect();
    let batch_exit =
        crate::batch::run::run_members(&run_args, global, members, &dir, &mut std::io::sink())
            .await?;
    write_suite_file(&dir, &suite)?;
    if let Some(shard) = args.shard {
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
    let thresholds = thresholds(args);
    score(
        &dir,
        &dir,
        (&suite, suite_dir),
        thresholds,
        args.allow_stale_labels,
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

fn write_suite_file(dir: &Path, suite: &Suite) -> Result<(), Error> {
    let mut json = serde_json::to_string_pretty(suite).expect("suite.json serialises");
    json.push('\n');
    crate::safe_fs::write_file(dir, SUITE_FILE, json.as_bytes(), true)?;
    Ok(())
}

fn read_suite_file(dir: &Path) -> Result<Suite, Error> {
    let path = dir.join(SUITE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "{}: cannot read the labels the eval ran with ({e}); name the suite: `hatrack eval SUITE --from {}`",
            path.display(),
            dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
}

/// Scores the runs recorded in `from` against the suite's labels and writes the eval files
/// into `to`; prints the summary; returns the eval's exit code.
fn score(
    from: &Path,
    to: &Path,
    (suite, suite_dir): (&Suite, &Path),
    thresholds: Thresholds,
    allow_stale: bool,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let runs = eval::read_runs(from, suite)?;
    eval::check_recorded(suite, suite_dir, &runs, allow_stale).map_err(label_error)?;
    let report = eval::evaluate(suite, &runs, &thresholds);
    crate::safe_fs::create_root(to)?;
    let mut written = Vec::new();
    for (name, text) in render::all(&report) {
        written.push(crate::safe_fs::write_file(to, name, text.as_bytes(), true)?);
    }
    if !global.quiet {
        let _ = write!(out, "{}", summary(&report));
        for path in written {
            let _ = writeln!(out, "wrote {}", path.display());
        }
    }
    Ok(report.exit_code())
}

/// The few lines a terminal shows.
fn summary(r: &EvalReport) -> String {
    let c = &r.counts;
    let mut s = format!(
        "eval: {} case(s), {} labelled verdict(s): {} right, {} wrong, {} abstained\n",
        c.cases, c.items, c.right, c.wrong, c.abstained
    );
    let line = |name: &str, m: &eval::score::Metrics| {
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
        format!(
            "  {name:<8} TPR {}  TNR {}  κ {}  abstained {}\n",
            f(m.tpr.value),
            f(m.tnr.value),
            f(m.kappa),
            f(m.abstention.value)
        )
    };
    s.push_str(&line("all", &r.scores.all.overall));
    if let Some(h) = &r.scores.holdout {
        s.push_str(&line("holdout", &h.overall));
    }
    let g = &r.gate;
    s.push_str(&format!(
        "  gate: {} right, {} should have been blocked but passed, {} blocked but should have passed, {} without a gate\n",
        g.right, g.should_block_but_passed, g.blocked_but_should_pass, g.no_gate
    ));
    for t in &r.thresholds {
        s.push_str(&format!(
            "  {} {} on {}: {} — {}\n",
            t.flag,
            t.limit,
            r.thresholds_on,
            t.value
                .map_or("undefined".to_string(), |v| format!("{v:.2}")),
            if t.met { "met" } else { "NOT MET" }
        ));
    }
    s
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

fn compare(args: &EvalCompareArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let read = |dir: &Path| -> Result<EvalReport, Error> {
        let path = dir.join(EVAL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::usage(format!(
                "{}: cannot read it ({e}); is it an eval directory?",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let names = (args.a.display().to_string(), args.b.display().to_string());
    let c = eval::compare::compare(&a, &b, (&names.0, &names.1)).map_err(Error::usage)?;
    let md = eval::compare::markdown(&c);
    if let Some(dir) = &args.out {
        crate::safe_fs::create_root(dir)?;
        let mut json = serde_json::to_string_pretty(&c).expect("compare.json serialises");
        json.push('\n');
        let [j, m, h] = eval::compare::FILES;
        for (name, text) in [(j, json), (m, md.clone()), (h, eval::compare::html(&c))] {
            let path = crate::safe_fs::write_file(dir, name, text.as_bytes(), true)?;
            if !global.quiet {
                let _ = writeln!(out, "wrote {}", path.display());
            }
        }
    }
    if !global.quiet || args.out.is_none() {
        let _ = write!(out, "{md}");
    }
    Ok(0)
}
