//! `hatrack diff RUN_A RUN_B`: what moved between two runs (the [`crate::diff`] room).
//! Exit 0 when no verdict flipped, 1 when any did, 2 on bad input.

use std::io::Write;

use crate::cli::{DiffArgs, DiffFormat};
use crate::diff::{compare, render_text, TokenPrices};
use crate::Error;

pub fn diff(args: &DiffArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let prices = TokenPrices {
        prompt: args.prompt_price,
        completion: args.completion_price,
    };
    let d = compare(&args.run_a, &args.run_b, prices)?;
    let text = match args.format {
        DiffFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&d).expect("diffs serialise")
        ),
        DiffFormat::Md => render_text(&d, true),
        DiffFormat::Text => render_text(&d, false),
    };
    let _ = out.write_all(text.as_bytes());
    Ok(if d.flipped > 0 { 1 } else { 0 })
}
