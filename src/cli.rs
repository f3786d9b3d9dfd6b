//! The command line, as clap sees it. Parsing only: every verb is carried out in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::settings::bounds;

#[derive(Debug, Parser)]
#[command(
    name = "hatrack",
    version,
    about = "Run a stage of AI review agents (hats) against a pipeline repository and gate on its completion signal",
    long_about = "Run a stage of AI review agents (hats) against a pipeline repository and gate on its completion signal.\n\n\
Every model exchange is recorded in a transcript, so a run can be replayed offline, byte for byte.\n\n\
Exit codes: 0 signal met · 1 signal not met · 2 usage, definition, input or I/O error · \
3 model/provider failure (after retries, when retrying could help) · 4 replay miss · 5 token or USD budget exceeded."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// No progress bars and no summary table.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Format of the logs written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logs (-v debug, -vv trace). `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stage's hats, review agents and completion judge on a workspace.
    Run(Box<RunArgs>),
    /// Replay a recorded run offline (`run --record-mode none` on that transcript).
    Replay(ReplayArgs),
    /// Load and lint definitions: a stage, a studio, or a directory of studios.
    Check(CheckArgs),
    /// Show a stage as hatrack sees it: hats, inputs, constraints, checks, signal, gate.
    List(ListArgs),
    /// Print the exact messages that would be sent for a hat's step.
    Render(RenderArgs),
    /// Compare two runs: verdict flips, changed requests, artifacts, tokens and time.
    Diff(DiffArgs),
    /// Write a commented hatrack.toml binding every Reads item of the stage to this
    /// repository's files (TODO lines for what it could not find).
    Init(InitArgs),
    /// Combine the batch directories of `run … --shard I/N` into one batch directory (every
    /// shard of one batch, each once, unless --partial).
    Merge(MergeArgs),
    /// Sign a run directory: a DSSE envelope over an in-toto statement of every file in it,
    /// written to RUN/attestation.intoto.jsonl.
    Attest(AttestArgs),
    /// Check a signed run directory: the signature, every file's digest, no file added, and
    /// the reports agreeing with what was signed (exit 0 when it verifies, 2 when not).
    Verify(VerifyArgs),
    /// Measure the gate: run a labelled suite (docs/eval.md) and compare every verdict with
    /// its label (eval.json, eval.md, eval.html, junit.xml); `--from DIR` scores recorded
    /// runs again offline; `eval compare A B` compares two evals item by item. Exit 1 when a
    /// threshold (--min-tpr …) is not met.
    Eval(Box<EvalArgs>),
    /// Ask the judging steps of a recorded run again (new --prompts, --judge-model or a
    /// policy file's grounding rules) into a new run directory; every hat step replays from
    /// the recorded run (a hat whose request changed stops it: exit 4).
    Rejudge(Box<RejudgeArgs>),
}

#[derive(Debug, Args)]
pub struct RejudgeArgs {
    /// The recorded run directory (never modified).
    #[arg(value_name = "RUN")]
    pub run: PathBuf,
    /// The new run directory: the hats' exchanges copied from RUN, the judges' asked again.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The workspace, when not where RUN's run.json says (default: there, else RUN's snapshot).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Prompt templates directory for the judges (hats' templates must render as recorded).
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// The suite: a directory of cases, each a subdirectory with labels.toml beside the
    /// workspace it labels. With --from, optional: the labels the eval ran with are used.
    #[arg(value_name = "SUITE")]
    pub suite: Option<PathBuf>,
    /// The eval directory: one run directory per case (a batch), and eval.json, eval.md,
    /// eval.html, junit.xml. With --from: where to write the eval files (default: that
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Score the runs recorded in this eval (or merged batch) directory again, offline: no
    /// model is called.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Accept labels whose stage_digest names another version of the stage.
    #[arg(long)]
    pub allow_stale_labels: bool,
    /// Run (or score) only the cases of this split.
    #[arg(long, value_name = "SPLIT", value_parser = ["dev", "holdout"])]
    pub split: Option<String>,
    /// Ask only the judges again: every case's hats replay from its run in this recorded
    /// eval directory (as `hatrack rejudge` does one run); a case whose hat request changed
    /// ends with exit 4. Pass the --model the eval was recorded with.
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    pub rejudge_from: Option<PathBuf>,
    /// Exit 1 unless the share of defects caught (TPR) is at least this (0–1), on the
    /// holdout split when the suite has one.
    #[arg(long, value_name = "RATE", value_parser = parse_fraction)]
    pub min_tpr: Option<f64>,
    /// Exit 1 unless the share of clean items passed (TNR) is at least this (0–1).
    #[arg(long, value_name = "RATE", value_parser = parse_fraction)]
    pub min_tnr: Option<f64>,
    /// Exit 1 unless Cohen's κ between labels and verdicts is at least this (−1–1).
    #[arg(long, value_name = "KAPPA", value_parser = parse_kappa, allow_hyphen_values = true)]
    pub min_kappa: Option<f64>,
    /// Exit 1 when the share of unknown verdicts is above this (0–1).
    #[arg(long, value_name = "RATE", value_parser = parse_fraction)]
    pub max_abstain: Option<f64>,
    /// Run only shard I of N of the cases; combine the shards with `hatrack merge`, then
    /// score with `hatrack eval SUITE --from MERGED`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, value_name = "MODE")]
    pub record_mode: Option<RecordModeArg>,
    /// Prompt templates directory (default: the shipped prompts/).
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// Count `unknown` verdicts as met at each case's gate.
    #[arg(long)]
    pub allow_unknown: bool,
    /// Count unstable verdicts (with --samples) as they are at each case's gate.
    #[arg(long)]
    pub allow_unstable: bool,
    /// Model prices (as `run --prices`).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Ask each judging step N times (1–32); flip rates per item are reported.
    #[arg(long, value_name = "N", value_parser = parse_samples)]
    pub samples: Option<u32>,
    /// Measure the judges alone: run every case without the stage's checks.toml and any
    /// [[check]] (no probe, no veto, no finding shown). Only eval has this: a gate never
    /// runs without its checks. `eval compare` of such a run and one with checks shows what
    /// the checks add.
    #[arg(long)]
    pub without_checks: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Compare two eval directories over the same labelled items: every item where one is
    /// right and the other is not, the exact McNemar test, and the paired TPR/TNR difference.
    Compare(EvalCompareArgs),
}

#[derive(Debug, Args)]
pub struct EvalCompareArgs {
    #[arg(value_name = "A")]
    pub a: PathBuf,
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Write compare.json, compare.md and compare.html here (default: print the Markdown).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The run directory to sign (a finished run, with report.json).
    #[arg(value_name = "RUN")]
    pub run: PathBuf,
    /// Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519 -out key.pem`).
    /// Needed unless --predicate-out or --subjects-out is given (those sign nothing).
    #[arg(long, value_name = "KEY.pem", required_unless_present_any = ["predicate_out", "subjects_out"])]
    pub key: Option<PathBuf>,
    /// Also write the statement's predicate (JSON) here, for another signer such as
    /// GitHub's `actions/attest` (`predicate-path`). Outside the run directory.
    #[arg(long, value_name = "FILE")]
    pub predicate_out: Option<PathBuf>,
    /// Also write the subjects in `sha256sum` format here, for `actions/attest`
    /// (`subject-checksums`). Outside the run directory.
    #[arg(long, value_name = "FILE")]
    pub subjects_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed run directory.
    #[arg(value_name = "RUN")]
    pub run: PathBuf,
    /// The signer's Ed25519 public key, PEM (`openssl pkey -in key.pem -pubout -out key.pub.pem`).
    #[arg(long, value_name = "PUB.pem")]
    pub key: PathBuf,
}

/// Where the stage definition comes from.
#[derive(Debug, Clone, Args, Default)]
pub struct StageArgs {
    /// Stage directory (with STAGE.md), `embedded:NAME` for a stage compiled into hatrack,
    /// or a stage name when --studio is given. Default: the stage named in hatrack.toml,
    /// else the embedded deployment stage.
    #[arg(long, value_name = "DIR|NAME")]
    pub stage: Option<String>,
    /// Studio directory to look the stage up in (by directory, name, slug or alias).
    #[arg(long, value_name = "DIR")]
    pub studio: Option<PathBuf>,
}

/// Model and transport settings; flags override env, env overrides hatrack.toml.
#[derive(Debug, Clone, Args, Default)]
pub struct ModelArgs {
    /// Model name sent to the provider.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// OpenAI-compatible base URL, including /v1 [env: OPENAI_BASE_URL]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Model for every judging step (constraint judges, review agents, completion judge);
    /// hats keep --model [env: HATRACK_JUDGE_MODEL]
    #[arg(long, value_name = "J")]
    pub judge_model: Option<String>,
    /// Base URL of the judge model, when it lives at another endpoint.
    #[arg(long, value_name = "URL")]
    pub judge_base_url: Option<String>,
    /// Seconds before one request times out, a streamed body included (1–3600).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<u64>,
    /// Seconds a streamed answer may go without a chunk before it counts as stalled, a
    /// retried timeout (1–3600; default 60).
    #[arg(long, value_name = "SECS", value_parser = parse_idle_timeout)]
    pub idle_timeout: Option<u64>,
    /// Ask for whole answers instead of streamed ones (for providers that mishandle
    /// `"stream": true`); only --timeout then bounds a slow answer.
    #[arg(long)]
    pub no_stream: bool,
    /// Retries on 429, 5xx, connection errors and timeouts (0–20).
    #[arg(long, value_name = "N", value_parser = parse_max_retries)]
    pub max_retries: Option<u32>,
    /// Re-asks after an answer that breaks the schema (0–10).
    #[arg(long, value_name = "N", value_parser = parse_max_reasks)]
    pub max_reasks: Option<u32>,
    /// Requests in flight at most (1–64).
    #[arg(long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Stop (exit 5) before the run would use more than this many tokens (1–10^12).
    #[arg(long, value_name = "TOKENS", value_parser = parse_budget)]
    pub budget: Option<u64>,
    /// Stop (exit 5) before a request that could take the run's spending over this many
    /// US dollars (needs --prices with a price for every model used).
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RecordModeArg {
    /// Replay only; a request with no recorded match exits 4 with a diff.
    None,
    /// Replay if the transcript has exchanges, else record.
    #[default]
    Once,
    /// Replay matches, call the model for the rest and append them.
    #[value(name = "new_episodes")]
    NewEpisodes,
    /// Always call the model and re-record.
    All,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The repository under review (default: the current directory). Several make a batch:
    /// one run per workspace in one process, under one --jobs limit.
    #[arg(value_name = "WORKSPACE")]
    pub workspaces: Vec<PathBuf>,
    /// A file listing workspaces for a batch, one path per line (relative to the file;
    /// blank lines and `#` comments ignored), after any given as arguments.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Run only shard I of N of the batch (1-based): a workspace's shard follows from its
    /// run-dir name, so every machine given the same list picks the same subset whatever
    /// its order. Combine the shards' directories with `hatrack merge`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Run directory (the transcript). Default: `transcripts/WORKSPACE-TIME`. For a batch,
    /// the batch directory: one run directory per workspace, and batch.json, batch.md,
    /// batch.html and junit.xml over all of them (default: `transcripts/batch-TIME`).
    #[arg(long, value_name = "DIR")]
    pub transcript: Option<PathBuf>,
    #[arg(long, value_enum, value_name = "MODE")]
    pub record_mode: Option<RecordModeArg>,
    /// Replay every step whose request is unchanged from this run; call the model for the rest.
    #[arg(long, value_name = "OLD", conflicts_with = "resume")]
    pub from_transcript: Option<PathBuf>,
    /// Continue a run that stopped part-way, from its transcript, with the settings its
    /// run.json recorded (a flag that would change one of them is refused).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
    /// Ask each judging step N times (1–32) with different seeds; the verdict is the majority.
    #[arg(long, value_name = "N", value_parser = parse_samples)]
    pub samples: Option<u32>,
    /// A SARIF 2.1.0 or JUnit XML file CI already produced (ruff, checkov, kube-linter,
    /// pytest…); repeat for more. Its findings are shown to the judges, and an error-level one
    /// makes unmet the requirement a `[[check]]` maps it to with on_finding = "veto". Kept in
    /// the run directory (checks.json): a replay needs none of them.
    #[arg(long, value_name = "FILE")]
    pub evidence: Vec<PathBuf>,
    /// Run these allowlisted linters (ruff) on the workspace, with arguments hatrack builds,
    /// an empty environment, a timeout and an output cap, inside bubblewrap when it can;
    /// their findings join --evidence, and a replay reads them from checks.json.
    #[arg(long, value_name = "TOOL,…", value_delimiter = ',')]
    pub run_checks: Vec<String>,
    /// Seconds a --run-checks tool may run before it is killed (1–3600; default 120).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub check_timeout: Option<u64>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Apply no checks at all (`eval --without-checks`: measuring the judges alone). Not a
    /// flag of `run`: a gate always applies its stage's checks.
    #[arg(skip)]
    pub without_checks: bool,
}

/// Where policy comes from: the keys that decide where requests and keys go, which model
/// judges, which stage runs and how strict the gate is (docs/policy.md lists them).
#[derive(Debug, Clone, Args, Default)]
pub struct TrustArgs {
    /// A policy file: a hatrack.toml whose every key is trusted (endpoints, key variables,
    /// models, stage, grounding minimums, budgets, gate leniencies). It must lie outside the
    /// reviewed workspace [env: HATRACK_POLICY]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Honour policy keys in the workspace's own hatrack.toml (endpoints, models, stage, a
    /// lower grounding minimum…), for a repository you own. Never use it on a pull request
    /// from someone else; every report says it was used.
    #[arg(long)]
    pub trust_workspace_config: bool,
}

impl RunArgs {
    /// A batch: several workspaces, a manifest, or a shard of either.
    pub fn is_batch(&self) -> bool {
        self.workspaces.len() > 1 || self.manifest.is_some() || self.shard.is_some()
    }

    /// The one workspace of a single run (none: the current directory).
    pub fn workspace(&self) -> Option<&PathBuf> {
        self.workspaces.first()
    }
}

/// `--shard I/N`: this machine runs shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("{s:?}: expected I/N with 1 <= I <= N <= 1000, e.g. 2/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u32 = i.trim().parse().map_err(|_| bad())?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if index == 0 || count == 0 || index > count || count > 1000 {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Batch directories written by `hatrack run … --shard I/N --transcript DIR`.
    #[arg(value_name = "SHARD_DIR", required = true)]
    pub shards: Vec<PathBuf>,
    /// The batch directory to write: every shard's run directories and one batch index, as a
    /// single-machine run of the whole batch would have written them.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// GitHub Actions output: batch.md appended to $GITHUB_STEP_SUMMARY. On by itself when
    /// GITHUB_ACTIONS=true.
    #[arg(long)]
    pub github: bool,
    /// Merge an incomplete set of shards (some missing): the merged index names the missing
    /// shards and workspaces, and its gate is not met (exit 1 at best). Without it, a missing
    /// shard is an error (exit 2).
    #[arg(long)]
    pub partial: bool,
    /// Replay every member offline before it is indexed, and refuse (exit 2) one whose
    /// report its own transcript does not reproduce (a shard edited after it ran).
    #[arg(long)]
    pub verify: bool,
}

/// The gate's leniencies asked for on the command line (a policy's `[gate]` may grant them
/// too; a workspace never can).
#[derive(Debug, Clone, Args, Default)]
pub struct GateArgs {
    /// Count `unknown` verdicts as met.
    #[arg(long)]
    pub allow_unknown: bool,
    /// Count unstable verdicts (with --samples) as they are.
    #[arg(long)]
    pub allow_unstable: bool,
}

#[derive(Debug, Clone, Args, Default)]
pub struct ReportArgs {
    /// Prompt templates directory (default: the shipped prompts/).
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// Write reports here instead of into the run directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub gate: GateArgs,
    /// Model prices: LiteLLM's model-prices JSON, or TOML tables of USD per million tokens
    /// (`["gpt-4o-mini"]` input = 0.15, output = 0.60). Adds cost per step and in total to
    /// every report; a model the file does not price has an unknown cost.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// GitHub Actions output: at most 10 `::error` and 10 `::warning` annotations on stdout,
    /// and report.md appended to $GITHUB_STEP_SUMMARY (for a batch: batch.md, and no
    /// annotations). On by itself when GITHUB_ACTIONS=true.
    #[arg(long)]
    pub github: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// A run directory (with run.json and exchanges.jsonl), or a batch directory (with
    /// batch.json): every run of the batch is replayed and the index rewritten.
    #[arg(value_name = "TRANSCRIPT_DIR")]
    pub transcript: PathBuf,
    /// Stage directory to use instead of the one recorded in run.json.
    #[arg(long, value_name = "DIR")]
    pub stage: Option<PathBuf>,
    /// Workspace to use instead of the one recorded in run.json.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Replay only a run signed with this Ed25519 public key (PEM): an unsigned run, or one
    /// whose files changed since `hatrack attest`, is refused (exit 2) before anything runs.
    #[arg(long, value_name = "PUB.pem")]
    pub require_signature: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A stage directory, a studio directory, or a directory of studios (default: the
    /// stages compiled into hatrack, `embedded:`).
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ListFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// The repository whose hatrack.toml `[stage] path` names the stage, when --stage does
    /// not (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A hat name, `judge/<hat>`, `review/<agent>`, or `signal`.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// The repository under review (default: the current directory).
    #[arg(value_name = "WORKSPACE")]
    pub workspace: Option<PathBuf>,
    #[command(flatten)]
    pub stage: StageArgs,
    /// Model name to render into a hat's request.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Model name to render into a judging step's request.
    #[arg(long, value_name = "J")]
    pub judge_model: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// Show the difference between what would be sent now and what that run sent.
    #[arg(long, value_name = "TRANSCRIPT")]
    pub against: Option<PathBuf>,
    /// Print the whole request body as JSON instead of the messages.
    #[arg(long)]
    pub json: bool,
    /// Policy as `run` takes it, so render shows what a run would send (against a run:
    /// the policy it recorded).
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository to write hatrack.toml into (default: the current directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub stage: StageArgs,
    /// Replace an existing hatrack.toml.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DiffFormat {
    #[default]
    Text,
    Md,
    Json,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[arg(value_name = "RUN_A")]
    pub run_a: PathBuf,
    #[arg(value_name = "RUN_B")]
    pub run_b: PathBuf,
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Price of a million prompt tokens (any currency, 0–1000000), to show cost and its delta.
    #[arg(long, value_name = "PRICE", value_parser = parse_price)]
    pub prompt_price: Option<f64>,
    /// Price of a million completion tokens (0–1000000).
    #[arg(long, value_name = "PRICE", value_parser = parse_price)]
    pub completion_price: Option<f64>,
}

/// A whole number in `range`; the message says the range (clap prefixes the flag).
fn number<T>(text: &str, range: &std::ops::RangeInclusive<u64>) -> Result<T, String>
where
    T: std::str::FromStr + TryInto<u64> + Copy + std::fmt::Display,
{
    let wrong = || {
        format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let value: T = text.trim().parse().map_err(|_| wrong())?;
    bounds::check("", value, range).map_err(|_| wrong())
}

fn parse_samples(s: &str) -> Result<u32, String> {
    number(s, &bounds::SAMPLES)
}
fn parse_jobs(s: &str) -> Result<usize, String> {
    number(s, &bounds::JOBS)
}
fn parse_max_reasks(s: &str) -> Result<u32, String> {
    number(s, &bounds::MAX_REASKS)
}
fn parse_max_retries(s: &str) -> Result<u32, String> {
    number(s, &bounds::MAX_RETRIES)
}
fn parse_timeout(s: &str) -> Result<u64, String> {
    number(s, &bounds::TIMEOUT_SECS)
}
fn parse_idle_timeout(s: &str) -> Result<u64, String> {
    number(s, &bounds::IDLE_TIMEOUT_SECS)
}
fn parse_budget(s: &str) -> Result<u64, String> {
    number(s, &bounds::BUDGET)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| (0.0..=1.0).contains(x))
        .ok_or_else(|| "must be a number from 0 to 1".to_string())
}

fn parse_kappa(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| (-1.0..=1.0).contains(x))
        .ok_or_else(|| "must be a number from -1 to 1".to_string())
}

/// The most a price per million tokens can be.
pub const MAX_PRICE: f64 = 1_000_000.0;

fn parse_price(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && (0.0..=MAX_PRICE).contains(p))
        .ok_or_else(|| format!("must be a number from 0 to {MAX_PRICE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_out_of_range_are_refused_with_the_range() {
        assert_eq!(parse_samples("5"), Ok(5));
        for bad in [
            "0",
            "33",
            "4294967295",
            "99999999999999999999",
            "-1",
            "1e3",
            "",
        ] {
            let err = parse_samples(bad).unwrap_err();
            assert!(err.contains("from 1 to 32"), "{bad}: {err}");
        }
        assert_eq!(parse_max_reasks("0"), Ok(0));
        assert!(parse_max_reasks("4294967295").is_err());
        assert!(parse_jobs("0").is_err() && parse_jobs("65").is_err());
        assert_eq!(parse_shard("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "1", "1/1001", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0").is_err() && parse_timeout("18446744073709551615").is_err());
        assert!(parse_budget("0").is_err());
        for bad in ["NaN", "inf", "-1", "1e300"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_price("0.15"), Ok(0.15));
    }
}
