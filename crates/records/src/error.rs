use ironchart_fhir::validate::Issue;

/// Errors of the records service. Each maps to one HTTP status in `web`.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("authentication required")]
    Unauthorized,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("unknown resource type '{0}'")]
    UnknownType(String),
    #[error("{0}/{1} is not known")]
    NotFound(String, String),
    #[error("{0}/{1} has been deleted")]
    Gone(String, String),
    /// The request is malformed (bad id, mismatched ids, bad search value …).
    #[error("{message}")]
    BadRequest {
        message: String,
        expression: Option<String>,
    },
    /// The resource does not conform to the FHIR definitions.
    #[error("the resource is invalid")]
    Invalid(Vec<Issue>),
    /// A precondition (`If-Match`, conditional create) failed.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Conflict(String),
    /// A transaction entry failed; the whole transaction was rolled back.
    #[error("transaction entry {index} failed: {source}")]
    Entry {
        index: usize,
        #[source]
        source: Box<RecordsError>,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(ironchart_store::StoreError),
}

impl From<ironchart_store::StoreError> for RecordsError {
    fn from(e: ironchart_store::StoreError) -> Self {
        match e {
            ironchart_store::StoreError::BadCursor => RecordsError::BadRequest {
                message: "invalid paging cursor".into(),
                expression: None,
            },
            ironchart_store::StoreError::Conflict => {
                RecordsError::Conflict("the resource was changed concurrently; retry".into())
            }
            other => RecordsError::Store(other),
        }
    }
}

impl RecordsError {
    pub(crate) fn bad(message: impl Into<String>, expression: Option<&str>) -> Self {
        RecordsError::BadRequest {
            message: message.into(),
            expression: expression.map(str::to_string),
        }
    }
}
