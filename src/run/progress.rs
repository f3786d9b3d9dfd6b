//! Progress on a terminal: one line per step with elapsed time, the tokens of a streamed
//! answer as they arrive, then its tokens and source. Hidden when stderr is not a terminal or
//! with `--quiet`, so logs and CI output stay clean.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::TokenObserver;

/// The lines of the steps in flight, by step id (what the model layer's token hook names).
type Lines = Arc<Mutex<HashMap<String, ProgressBar>>>;

pub struct Progress {
    multi: Option<MultiProgress>,
    lines: Lines,
    /// Put before each step's name: the workspace, for the runs of a batch.
    prefix: String,
}

/// A batch's line: how many workspaces are done.
pub struct BatchLine {
    bar: Option<ProgressBar>,
}

pub struct StepLine {
    bar: Option<ProgressBar>,
    step: String,
    lines: Lines,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let multi = visible.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            multi,
            lines: Lines::default(),
            prefix: String::new(),
        }
    }

    /// The hook for the model layer: shows "N tokens…" on the line of the step the answer is
    /// for. `None` when nothing is shown, so a hidden progress costs the client nothing.
    pub fn token_observer(&self) -> Option<TokenObserver> {
        self.multi.as_ref()?;
        let lines = self.lines.clone();
        Some(TokenObserver::new(move |step, tokens| {
            if let Some(bar) = lines.lock().ok().and_then(|l| l.get(step).cloned()) {
                bar.set_message(format!("receiving… {tokens} tok"));
            }
        }))
    }

    /// The progress of one workspace of a batch: its steps on the same display, each named
    /// `workspace · step`.
    pub fn member(&self, workspace: &str) -> Progress {
        Progress {
            multi: self.multi.clone(),
            lines: Lines::default(),
            prefix: format!("{workspace} · "),
        }
    }

    /// The batch's counter line, `done/total workspaces`.
    pub fn batch(&self, total: usize) -> BatchLine {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{bar:28} {pos}/{len} workspaces {elapsed:>4}")
                    .expect("the template is valid"),
            );
            bar
        });
        BatchLine { bar }
    }

    pub fn start(&self, step: &str) -> StepLine {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<28} {elapsed:>4} {msg}")
                    .expect("the template is valid")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
            );
            bar.set_prefix(format!("{}{step}", self.prefix));
            bar.set_message("asking the model…");
            bar.enable_steady_tick(Duration::from_millis(120));
            if let Ok(mut lines) = self.lines.lock() {
                lines.insert(step.to_string(), bar.clone());
            }
            bar
        });
        StepLine {
            bar,
            step: step.to_string(),
            lines: self.lines.clone(),
        }
    }
}

impl StepLine {
    pub fn finish(self, message: String) {
        if let Some(bar) = self.bar {
            if let Ok(mut lines) = self.lines.lock() {
                lines.remove(&self.step);
            }
            bar.finish_with_message(message);
        }
    }
}

impl BatchLine {
    /// One more workspace is done.
    pub fn done_one(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}
