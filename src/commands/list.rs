use std::io::Write;

use crate::cli::ListArgs;
use crate::Error;

/// `hatrack list`: the stage as a user needs to see it.
pub fn list(_args: &ListArgs, _out: &mut dyn Write) -> Result<i32, Error> {
    Err(Error::usage("hatrack list is not built yet (issue 2)"))
}
