//! `hatrack attest RUN --key KEY.pem`: signs a finished run directory — a DSSE envelope over
//! an in-toto statement of every file in it, in `RUN/attestation.intoto.jsonl`
//! ([`crate::attest`]). `--predicate-out` / `--subjects-out` write the same statement's parts
//! for another signer (GitHub's `actions/attest`), with or without a key.

use std::io::Write;
use std::path::Path;

use crate::attest::{self, SigningKey, ENVELOPE_FILE, PREDICATE_TYPE};
use crate::cli::{AttestArgs, GlobalArgs};
use crate::run::rundir::{RunDir, RUN_FILE};
use crate::Error;

pub fn attest(args: &AttestArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let mut sink = std::io::sink();
    let out: &mut dyn Write = if global.quiet { &mut sink } else { out };
    let run = &args.run;
    if !run.join(RUN_FILE).is_file() {
        return Err(Error::usage(format!(
            "{}: not a run directory (no {RUN_FILE}); pass the directory `hatrack run --transcript DIR` wrote (a batch's runs are BATCH_DIR/NAME)",
            run.display()
        )));
    }
    // The key first: a wrong key is said before any file is read.
    let key = args
        .key
        .as_deref()
        .map(SigningKey::read)
        .transpose()
        .map_err(|e| Error::usage(e.to_string()))?;
    for path in [&args.predicate_out, &args.subjects_out]
        .into_iter()
        .flatten()
    {
        refuse_inside(run, path)?;
    }
    // Locked while its files are read and the envelope written: no replay rewrites a report
    // half-way through.
    let locked = RunDir::open_locked(run)?;
    let statement = match &key {
        Some(key) => {
            let (line, statement) =
                attest::attest(locked.path(), key).map_err(|e| Error::usage(e.to_string()))?;
            let path = locked.write_file(ENVELOPE_FILE, line.as_bytes(), true)?;
            let _ = writeln!(
                out,
                "signed {} file(s) of {} with keyid {}",
                statement.subject.len(),
                run.display(),
                key.keyid()
            );
            let _ = writeln!(out, "wrote {}", path.display());
            statement
        }
        None => attest::unsigned(locked.path()).map_err(|e| Error::usage(e.to_string()))?,
    };
    if let Some(path) = &args.predicate_out {
        let mut json =
            serde_json::to_string_pretty(&statement.predicate).expect("a predicate serialises");
        json.push('\n');
        let _ = writeln!(
            out,
            "wrote {}",
            write_outside(path, json.as_bytes())?.display()
        );
    }
    if let Some(path) = &args.subjects_out {
        let text = attest::checksums(&statement);
        let _ = writeln!(
            out,
            "wrote {}",
            write_outside(path, text.as_bytes())?.display()
        );
    }
    let gate = &statement.predicate.gate;
    let _ = writeln!(
        out,
        "gate: {} (exit {}); predicate type {PREDICATE_TYPE}",
        gate.outcome, gate.exit_code
    );
    Ok(0)
}

/// A file written inside the run directory after signing would be a file the attestation
/// does not list, and `verify` would refuse the run: such outputs go elsewhere.
fn refuse_inside(run: &Path, path: &Path) -> Result<(), Error> {
    let (parent, _) = crate::safe_fs::split(path);
    let inside = match (parent.canonicalize(), run.canonicalize()) {
        (Ok(parent), Ok(run)) => parent.starts_with(run),
        _ => false,
    };
    if inside {
        return Err(Error::usage(format!(
            "{}: inside the run directory, where a file added after signing fails `hatrack verify`; write it elsewhere",
            path.display()
        )));
    }
    Ok(())
}

fn write_outside(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf, Error> {
    let (root, name) = crate::safe_fs::split(path);
    crate::safe_fs::create_root(&root)?;
    Ok(crate::safe_fs::write_file(&root, &name, bytes, true)?)
}
