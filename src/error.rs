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
    Prices(#[from] crate::model::prices::PriceError),
    /// Bad command line, config or workspace input; the message says what to do.
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 usage/definition/input · 3 provider · 4 replay miss · 5 budget.
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
