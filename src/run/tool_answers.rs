//! Where an agent's tool results come from. A recording run asks the workspace
//! ([`crate::tools::Workspace`], confined and deterministic) and keeps every result, keyed
//! by the call's canonical form, so the run's snapshot can answer the same calls later. A
//! replay without the workspace answers from those recorded results; a call that was never
//! recorded gets a refusal, so the next request differs from the transcript and the replay
//! misses honestly (exit 4) instead of inventing a result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::secrets::Scrubber;
use crate::tools::{Call, Outcome, Workspace};

/// Recorded results: canonical call → scrubbed outcome.
pub type ToolLog = BTreeMap<String, Outcome>;

pub enum ToolAnswers {
    /// Calls run against the workspace; each result is kept (scrubbed) in `log`.
    Live {
        workspace: Workspace,
        log: Arc<Mutex<ToolLog>>,
        scrubber: Scrubber,
    },
    /// Calls answered from a snapshot's recorded results.
    Recorded { log: ToolLog, scrubber: Scrubber },
}

impl ToolAnswers {
    pub fn live(workspace: Workspace, scrubber: Scrubber) -> ToolAnswers {
        ToolAnswers::Live {
            workspace,
            log: Arc::default(),
            scrubber,
        }
    }

    pub fn call(&self, call: &Call) -> Outcome {
        match self {
            ToolAnswers::Live {
                workspace,
                log,
                scrubber,
            } => {
                let outcome = workspace.call(call);
                let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                log.entry(call_key(call, scrubber))
                    .or_insert_with(|| scrub_outcome(&outcome, scrubber));
                outcome
            }
            ToolAnswers::Recorded { log, scrubber } => match log.get(&call_key(call, scrubber)) {
                Some(outcome) => outcome.clone(),
                None => Workspace::refuse(
                    tool_name(call),
                    "",
                    "this call is not in the run's snapshot (the workspace is not here to answer it); pass --workspace DIR to run tools",
                ),
            },
        }
    }

    /// The results recorded so far (empty when answering from a snapshot: nothing new).
    pub fn recorded(&self) -> ToolLog {
        match self {
            ToolAnswers::Live { log, .. } => log
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            ToolAnswers::Recorded { .. } => ToolLog::new(),
        }
    }
}

/// The call's canonical form: its serialization (field order fixed by the type), with
/// string values scrubbed, since the arguments a replay sees come from the scrubbed
/// transcript.
pub fn call_key(call: &Call, scrubber: &Scrubber) -> String {
    let mut value = serde_json::to_value(call).unwrap_or_default();
    scrubber.scrub_values(&mut value);
    value.to_string()
}

fn scrub_outcome(outcome: &Outcome, scrubber: &Scrubber) -> Outcome {
    let Ok(mut value) = serde_json::to_value(outcome) else {
        return outcome.clone();
    };
    scrubber.scrub_values(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| outcome.clone())
}

fn tool_name(call: &Call) -> &'static str {
    match call {
        Call::ListFiles { .. } => "list_files",
        Call::ReadFile { .. } => "read_file",
        Call::Search { .. } => "search",
    }
}
