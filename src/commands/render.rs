//! `hatrack render`: the exact request a step would send ([`crate::run::step_request`]).
//! With `--against RUN`, the difference between what would be sent now and what that run
//! sent (exit 1 when it differs or none was recorded).

use std::io::Write;

use crate::cli::RenderArgs;
use crate::run::step_request::{self, compare_with_recorded};
use crate::Error;

pub fn render(args: &RenderArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let request = step_request::build(args)?;
    match &request.against {
        Some(dir) => compare_with_recorded(out, dir, &request.step, &request.body),
        None => {
            step_request::write_request(out, args.json, &request);
            Ok(0)
        }
    }
}
