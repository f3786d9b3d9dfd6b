use std::io::Write;

use crate::cli::CheckArgs;
use crate::Error;

/// `hatrack check [PATH]`: load everything, print counts and diagnostics.
pub fn check(_args: &CheckArgs, _out: &mut dyn Write) -> Result<i32, Error> {
    Err(Error::usage("hatrack check is not built yet (issue 2)"))
}
