//! `hatrack rejudge RUN --out DIR`: dispatch only ([`crate::run::lifecycle::rejudge`]).

use std::io::Write;

use crate::cli::{GlobalArgs, RejudgeArgs};
use crate::Error;

pub async fn rejudge(
    args: &RejudgeArgs,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    crate::run::lifecycle::rejudge::rejudge(args, global, out).await
}
