//! `hatrack eval`: run a labelled suite, or score recorded runs again (`--from`), or compare
//! two evals (`eval compare`); the work is in [`crate::eval::run`] and
//! [`crate::eval::files`].

use std::io::Write;
use std::path::Path;

use crate::cli::{EvalArgs, EvalCommand, GateArgs, GlobalArgs, ReportArgs, RunArgs};
use crate::eval::run::{run_suite, score_recorded, SuiteRun};
use crate::eval::Thresholds;
use crate::Error;

pub async fn eval(args: &EvalArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if let Some(EvalCommand::Compare(c)) = &args.command {
        return crate::eval::files::compare_dirs(c, global, out);
    }
    match (&args.from, &args.suite) {
        (Some(from), suite) => {
            refuse_run_flags(args)?;
            let to = args.out.clone().unwrap_or_else(|| from.clone());
            score_recorded(
                from,
                &to,
                (suite.as_deref(), args.split.as_deref()),
                thresholds(args),
                args.allow_stale_labels,
                global,
                out,
            )
        }
        (None, Some(suite)) => {
            let dir = args
                .out
                .clone()
                .unwrap_or_else(|| crate::run::lifecycle::default_dir("eval"));
            let run = SuiteRun {
                dir: suite,
                split: args.split.as_deref(),
                run_args: run_args(args, &dir),
                out: dir,
                rejudge_from: args.rejudge_from.as_deref(),
                thresholds: thresholds(args),
                allow_stale: args.allow_stale_labels,
            };
            run_suite(&run, global, out).await
        }
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
            gate: GateArgs {
                allow_unknown: args.allow_unknown,
                allow_unstable: args.allow_unstable,
            },
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
