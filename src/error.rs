//! The one error type `main` sees. Each layer has its own typed error; this wraps them and
//! decides the exit code, so the mapping lives in one place.

use crate::definition::DefinitionError;
use crate::inputs::InputErrors;
use crate::model::ModelError;
use crate::prompt::PromptError;
use crate::report::ReportError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Inputs(#[from] InputErrors),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Prices(#[from] crate::model::prices::PriceError),
    /// Bad command line, config or workspace input; the message says what to do.
    #[error("{0}")]
    Usage(String),
    /// The machine, not the command: a disk that is full, a directory that cannot be
    /// written. Exit 2 like the other errors a person must fix (the exit-code contract is
    /// 0–5), told apart by its `I/O:` prefix.
    #[error("I/O: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 usage/definition/input/I/O · 3 provider · 4 replay miss · 5 budget.
    ///
    /// I/O failures (disk full, permissions) and damaged run directories exit 2 too: the
    /// codes 0–5 are the contract CI scripts are written against, and each of those errors
    /// is one a person must fix before running again (none is worth an automatic retry, as 3
    /// can be). Their messages start with `I/O:` or `transcript …`, and `main` prints a
    /// hint saying it is not the command line.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Model(ModelError::Provider { .. }) => 3,
            Error::Model(ModelError::ReplayMiss { .. }) => 4,
            Error::Model(ModelError::BudgetExceeded { .. }) => 5,
            Error::Model(ModelError::CostBudgetExceeded { .. }) => 5,
            _ => 2,
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
