//! One file per verb. Each takes its parsed arguments and returns the exit code for a
//! normal outcome (0, or 1 when a run's completion signal is not met) or a typed error.

mod attest;
mod check;
mod diff;
mod eval;
mod init;
mod list;
mod merge;
mod rejudge;
mod render;
mod run;
mod verify;

pub use attest::attest;
pub use check::check;
pub use diff::diff;
pub use eval::eval;
pub use init::init;
pub use list::list;
pub use merge::merge;
pub use rejudge::rejudge;
pub use render::render;
pub use run::{replay, run};
pub use verify::verify;
