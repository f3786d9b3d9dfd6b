//! `hatrack`: parse, dispatch, and turn errors into messages and exit codes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use hatrack::cli::{Cli, Command, LogFormat};
use hatrack::{commands, Error};

fn main() -> ExitCode {
    hatrack::tune_allocator();
    let cli = Cli::parse();
    let telemetry = init_logging(&cli);
    hatrack::install_crypto_provider();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match &cli.command {
        Command::Check(args) => commands::check(args, &mut out),
        Command::List(args) => commands::list(args, &mut out),
        Command::Render(args) => commands::render(args, &mut out),
        Command::Run(args) => block_on(
            commands::run(args, &cli.global, &mut out),
            Threads::for_batch(args.is_batch()),
        ),
        Command::Replay(args) => {
            block_on(commands::replay(args, &cli.global, &mut out), Threads::Two)
        }
        Command::Diff(args) => commands::diff(args, &mut out),
        Command::Init(args) => commands::init(args, &mut out),
        Command::Merge(args) => commands::merge(args, &mut out),
        Command::Attest(args) => commands::attest(args, &cli.global, &mut out),
        Command::Verify(args) => commands::verify(args, &cli.global, &mut out),
        Command::Eval(args) => block_on(commands::eval(args, &cli.global, &mut out), Threads::Two),
        Command::Rejudge(args) => {
            block_on(commands::rejudge(args, &cli.global, &mut out), Threads::Two)
        }
    };
    let _ = out.flush();
    if let Some(exporter) = &telemetry {
        exporter.flush();
    }
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            report_error(&err);
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// The threads an async command runs on.
#[derive(Clone, Copy)]
enum Threads {
    /// One run: every task on the calling thread. Its work is waiting on the model; with a
    /// second worker each streamed chunk woke a task on the other thread (a futex and an
    /// eventfd write per chunk, most of the CPU a zero-latency exchange cost).
    One,
    /// A batch or an evaluation: two worker threads (the machine has two cores), so runs
    /// that compute at the same time use both. Also a replay and a rejudge, which may work
    /// from a materialized snapshot: its SIGINT handler then runs beside a busy task.
    Two,
}

impl Threads {
    fn for_batch(batch: bool) -> Threads {
        if batch {
            Threads::Two
        } else {
            Threads::One
        }
    }
}

/// Runs an async command on a small runtime (see [`Threads`]).
fn block_on<F: std::future::Future<Output = Result<i32, Error>>>(
    future: F,
    threads: Threads,
) -> Result<i32, Error> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Two => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let result = runtime.block_on(future);
    // Every task the command spawned has been awaited: what is left (idle blocking threads,
    // pooled connections) need not be joined one by one before the process exits.
    runtime.shutdown_background();
    result
}

/// Prints an error with its chain of causes (and definition diagnostics, one per line).
fn report_error(err: &Error) {
    let mut stderr = std::io::stderr().lock();
    if let Error::Definition(hatrack::definition::DefinitionError::Invalid { diagnostics }) = err {
        for d in diagnostics {
            let _ = writeln!(stderr, "{d}");
        }
    }
    let _ = writeln!(stderr, "error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let _ = writeln!(stderr, "  caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = hint(err) {
        let _ = writeln!(stderr, "hint: {hint}");
    }
}

/// What to do next, for the failures a user can act on. A provider failure gets the advice
/// for its kind: a context overflow is not fixed by checking the base URL.
fn hint(err: &Error) -> Option<&'static str> {
    use hatrack::model::{ModelError, ProviderErrorKind as K};
    match err {
        Error::Model(ModelError::Provider { kind, .. }) => Some(match kind {
            K::ContextExceeded => {
                "the prompt plus max_tokens is larger than the model's context window: quote less of the inputs (lower [limits] max_file_bytes / max_input_bytes / max_artifact_bytes in hatrack.toml), set [model] max_tokens so that prompt + answer fit, set [model] context_tokens to the model's real window, or choose a model with a longer context (for llama.cpp, start the server with a larger --ctx-size)"
            }
            K::Auth => {
                "the provider refused the key: set OPENAI_API_KEY (or the variable a policy's [model] api_key_env names; HATRACK_JUDGE_API_KEY for a judge at its own endpoint) to a valid key for this --base-url"
            }
            K::Redirected => {
                "set --base-url (or OPENAI_BASE_URL, or --judge-base-url) to the address the endpoint redirects to, if you trust it: a prompt and its key are never re-sent to another origin"
            }
            K::Quota => {
                "the provider account is out of quota or credit: check its billing; retrying will not help"
            }
            K::NotFound => {
                "check --base-url / OPENAI_BASE_URL (it must end in /v1, e.g. http://127.0.0.1:8437/v1) and --model (the provider's exact model name)"
            }
            K::RateLimited => {
                "the provider kept rate-limiting: lower --jobs, raise --max-retries, or try later; `hatrack run --resume DIR` continues the run"
            }
            K::Server | K::Timeout | K::Connection => {
                "the provider is down, slow or unreachable: check --base-url / OPENAI_BASE_URL, raise --timeout or --max-retries, then `hatrack run --resume DIR` continues the run (every exchange so far is in its exchanges.jsonl)"
            }
            K::BadRequest => {
                "the provider rejected the request body: check --model and [model.request] in hatrack.toml (fields this provider may not accept); `hatrack render STEP --json` shows the exact body"
            }
            K::BadResponse => {
                "the provider's answer was unusable (not JSON, cut off, or impossible numbers): check that --base-url points at an OpenAI-compatible /v1 endpoint, or retry with `hatrack run --resume DIR`"
            }
            K::TooLarge => {
                "the answer was larger than [model] max_response_bytes: set [model] max_tokens to bound answers, or raise max_response_bytes in hatrack.toml"
            }
        }),
        Error::Model(ModelError::ReplayMiss { .. }) => Some(
            "the definitions, prompts, workspace or model settings changed since the run was recorded; `hatrack render STEP --against DIR` shows the change, and `hatrack run --from-transcript DIR --transcript NEW` records only what changed",
        ),
        Error::Io { .. } | Error::Report(hatrack::report::ReportError::Write { .. }) => Some(
            "this is the machine, not the command line: check free disk space and permissions of the directory named above, then run again (`hatrack run --resume DIR` continues a run)",
        ),
        Error::Model(ModelError::Transcript { .. }) => Some(
            "the run directory's transcript could not be read or written: check free disk space and the permissions of the file named above",
        ),
        Error::Model(ModelError::TranscriptFull { .. }) => Some(
            "the run asked and answered more than one transcript may record: lower [model] max_tokens or max_response_bytes, or cut the inputs with [limits]; the exchanges recorded so far are kept, and `hatrack run --resume DIR` continues after a change",
        ),
        Error::Model(ModelError::TranscriptDamaged { .. }) => Some(
            "the transcript was edited or damaged at the line named above: restore exchanges.jsonl from where it was committed or copied, or record a new run with `hatrack run --transcript NEW_DIR`",
        ),
        Error::Model(ModelError::CostBudgetExceeded { .. }) => Some(
            "raise --budget-usd, cut inputs with [limits], or lower max_tokens; every exchange made so far is recorded, and `hatrack run --resume DIR` continues without paying for them again",
        ),
        Error::Model(ModelError::BudgetExceeded { .. }) => {
            Some("raise --budget (or [model] budget in hatrack.toml), or cut inputs with [limits]")
        }
        _ => None,
    }
}

/// Logs to stderr (filtered by -v / RUST_LOG) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set, hatrack's spans to an OpenTelemetry collector (unfiltered by the log level).
fn init_logging(cli: &Cli) -> Option<hatrack::telemetry::Exporter> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{filter, EnvFilter};
    let default = match cli.global.verbose {
        0 => "warn",
        1 => "hatrack=debug,warn",
        _ => "hatrack=trace,debug",
    };
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let fmt = match cli.global.log_format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.with_ansi(color).boxed(),
    };
    let (otlp, exporter) = match hatrack::telemetry::from_env() {
        Some((layer, exporter)) => (Some(layer), Some(exporter)),
        None => (None, None),
    };
    let own_spans = filter::filter_fn(|m| m.is_span() && m.target().starts_with("hatrack"));
    tracing_subscriber::registry()
        .with(fmt.with_filter(env_filter))
        .with(otlp.map(|l| l.with_filter(own_spans)))
        .init();
    exporter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_transcript_has_its_own_hint_not_the_disk_one() {
        let full = Error::Model(hatrack::model::ModelError::TranscriptFull {
            path: "run/exchanges.jsonl".into(),
            message: "the exchange of step hat/sre attempt 1 takes 40000000 bytes".into(),
        });
        let hint = hint(&full).unwrap();
        assert!(
            hint.contains("max_tokens") && hint.contains("[limits]"),
            "{hint}"
        );
        assert!(!hint.contains("disk space"), "{hint}");
        assert_eq!(full.exit_code(), 2);
    }
}
