//! `hatrack verify RUN --key PUB.pem`: checks a signed run directory ([`crate::attest`]);
//! exit 0 when it verifies, 2 (naming each file that differs) when not. `replay
//! --require-signature PUB.pem` runs the same check before replaying.

use std::io::Write;
use std::path::Path;

use crate::attest::{self, PublicKey, Verified};
use crate::batch::index::INDEX_FILE;
use crate::cli::{GlobalArgs, VerifyArgs};
use crate::run::rundir::RUN_FILE;
use crate::Error;

pub fn verify(args: &VerifyArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if global.quiet {
        return check(&args.run, &args.key).map(|_| 0);
    }
    let verified = check(&args.run, &args.key)?;
    let p = &verified.statement.predicate;
    let _ = writeln!(
        out,
        "{}: verified: {} file(s) signed by keyid {}",
        args.run.display(),
        verified.statement.subject.len(),
        verified.keyid
    );
    let _ = writeln!(
        out,
        "stage {} ({}), models {}; gate {} (exit {})",
        p.stage.name,
        &p.stage.definition_digest[..12.min(p.stage.definition_digest.len())],
        if p.models.is_empty() {
            "none".to_string()
        } else {
            p.models.join(", ")
        },
        p.gate.outcome,
        p.gate.exit_code
    );
    Ok(0)
}

/// `replay --require-signature`: the run directory must verify with `key` before anything
/// of it is replayed.
pub(super) fn require(dir: &Path, key: &Path) -> Result<(), Error> {
    if !dir.join(RUN_FILE).exists() && dir.join(INDEX_FILE).is_file() {
        return Err(Error::usage(format!(
            "{}: a batch directory, but --require-signature checks one signed run directory: replay its runs one at a time (`hatrack replay {}/NAME --require-signature PUB.pem`)",
            dir.display(),
            dir.display()
        )));
    }
    check(dir, key)
        .map(drop)
        .map_err(|e| Error::usage(format!("refusing to replay: {e}")))
}

fn check(dir: &Path, key: &Path) -> Result<Verified, Error> {
    if !dir.join(RUN_FILE).is_file() {
        return Err(Error::usage(format!(
            "{}: not a run directory (no {RUN_FILE})",
            dir.display()
        )));
    }
    let key = PublicKey::read(key).map_err(|e| Error::usage(e.to_string()))?;
    attest::verify(dir, &key).map_err(|e| Error::usage(e.to_string()))
}
