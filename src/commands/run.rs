//! `hatrack run` and `hatrack replay`: one workspace is a run ([`crate::run::lifecycle`]),
//! several are a batch ([`crate::batch::run`]). Dispatch only.

use std::io::Write;

use crate::cli::{GlobalArgs, ReplayArgs, RunArgs};
use crate::run::rundir::RUN_FILE;
use crate::Error;

pub async fn run(args: &RunArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if args.is_batch() {
        crate::batch::run::run(args, global, out).await
    } else {
        crate::run::lifecycle::run(args, global, out).await
    }
}

pub async fn replay(
    args: &ReplayArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let dir = &args.transcript;
    if let Some(key) = &args.require_signature {
        super::verify::require(dir, key)?;
    }
    let batch = !dir.join(RUN_FILE).exists() && dir.join(crate::batch::index::INDEX_FILE).is_file();
    if batch
        && dir.join(crate::eval::EVAL_FILE).is_file()
        && dir.join(crate::eval::SUITE_FILE).is_file()
    {
        crate::eval::run::replay(args, global, out).await
    } else if batch {
        crate::batch::run::replay(args, global, out).await
    } else {
        crate::run::lifecycle::replay(args, global, out).await
    }
}
