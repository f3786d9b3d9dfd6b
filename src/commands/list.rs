//! `hatrack list`: the stage (the [`crate::listing`] room) as text or JSON.

use std::io::Write;

use crate::cli::{ListArgs, ListFormat};
use crate::config::ConfigFile;
use crate::definition::{load_stage, resolve_stage_dir};
use crate::listing::{write_text, ListView};
use crate::run::setup;
use crate::Error;

/// `hatrack list`: the stage as a user needs to see it — hats in order with what they
/// read and produce and every constraint, review agents with their checks, criteria
/// guidance, the completion-signal requirements and the gate.
pub fn list(args: &ListArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let dir = if args.stage.stage.is_some() || args.stage.studio.is_some() {
        resolve_stage_dir(args.stage.stage.as_deref(), args.stage.studio.as_deref())?
    } else {
        let workspace = setup::workspace_dir(args.workspace.as_deref())?;
        let config = ConfigFile::load(&workspace)?;
        setup::stage_dir(&args.stage, &config, &workspace)?
    };
    let loaded = load_stage(&dir)?;
    let view = ListView::of(&loaded.stage, &loaded.warnings);
    let written = match args.format {
        ListFormat::Json => serde_json::to_writer_pretty(&mut *out, &view)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        ListFormat::Text => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            write_text(&view, out)
        }
    };
    match written {
        // `hatrack list | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Error::io("writing the stage listing", e)),
        Ok(()) => Ok(0),
    }
}
