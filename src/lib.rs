//! hatrack: run a stage of AI agents ("hats") in sequence, let review agents judge what they
//! produced, and write a completion-signal report a person or a CI job can act on.
//!
//! Data flows one way: [`definition`] → preflight ([`inputs`], [`prompt`]) → [`model`]
//! exchanges ([`run`]) → [`verdict`]s and the gate → [`report`]. The CLI ([`cli`], [`commands`]) only parses,
//! dispatches and maps errors to exit codes.

pub mod attest;
pub mod batch;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod config;
pub mod definition;
pub mod diff;
pub mod error;
pub mod eval;
pub mod globs;
pub mod init;
pub mod inputs;
pub mod listing;
pub mod memo;
pub mod model;
pub mod parallel;
pub mod policy;
pub mod prompt;
pub mod report;
pub mod run;
pub mod safe_fs;
pub mod secrets;
pub mod telemetry;
pub mod tools;
pub mod verdict;

pub use error::Error;

/// Installs the TLS crypto provider once per process. async-openai is built without a
/// default provider (ring builds in seconds, aws-lc-rs in minutes); without this, creating
/// an HTTPS client panics.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
