//! What the command line reports when it fails.

/// Errors reported to the operator (already readable; printed as `error: …`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Records(#[from] ironchart_records::RecordsError),
}
