//! One error type for the library: every failure a user can cause names what was wrong and what is accepted.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A parameter outside its accepted range: `what` names it (as the CLI flag or file key), `accepted` says
    /// what would be fine.
    #[error("{what}: {value} is not accepted (expected {accepted})")]
    InvalidParameter {
        what: String,
        value: String,
        accepted: String,
    },
    /// An architecture that cannot be built (e.g. a nonlinearity not preceded by a dense or norm layer).
    #[error("architecture: {0}")]
    Architecture(String),
    /// A file that could not be read or parsed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// Something the engines cannot compute for this input, said instead of returning a wrong number.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub fn param(
        what: impl Into<String>,
        value: impl ToString,
        accepted: impl Into<String>,
    ) -> Self {
        Error::InvalidParameter {
            what: what.into(),
            value: value.to_string(),
            accepted: accepted.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
