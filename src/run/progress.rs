//! Progress on a terminal: one line per step with elapsed time, then its tokens and source.
//! Hidden when stderr is not a terminal or with `--quiet`, so logs and CI output stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    multi: Option<MultiProgress>,
}

pub struct StepLine {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let multi = visible.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    pub fn start(&self, step: &str) -> StepLine {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<28} {elapsed:>4} {msg}")
                    .expect("the template is valid")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"),
            );
            bar.set_prefix(step.to_string());
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
