//! Progress on a terminal: one line per step with elapsed time, then its tokens and source.
//! Hidden when stderr is not a terminal or with `--quiet`, so logs and CI output stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    multi: Option<MultiProgress>,
    /// Put before each step's name: the workspace, for the runs of a batch.
    prefix: String,
}

/// A batch's line: how many workspaces are done.
pub struct BatchLine {
    bar: Option<ProgressBar>,
}

pub struct StepLine {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let multi = visible.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            multi,
            prefix: String::new(),
        }
    }

    /// The progress of one workspace of a batch: its steps on the same display, each named
    /// `workspace · step`.
    pub fn member(&self, workspace: &str) -> Progress {
        Progress {
            multi: self.multi.clone(),
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
            bar
        });
        StepLine { bar }
    }
}

impl StepLine {
    pub fn finish(self, message: String) {
        if let Some(bar) = self.bar {
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
