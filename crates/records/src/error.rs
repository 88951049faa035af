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
    /// A conditional operation matched several resources (a 412); `patients` are theirs, for
    /// the audit entry of the refusal.
    #[error("{message}")]
    Ambiguous {
        message: String,
        patients: Vec<String>,
    },
    #[error("{0}")]
    Conflict(String),
    /// The write touches a signed (locked) encounter: `Encounter/{0}`.
    #[error(
        "Encounter/{0} is signed: it and everything recorded in it (note, vitals, orders, \
         prescriptions) can no longer be changed; add an addendum to its note instead"
    )]
    Locked(String),
    /// A request over one of the size limits (a Bundle's entries, a resource's size).
    #[error("{0}")]
    TooLarge(String),
    /// A transaction entry failed; the whole transaction was rolled back.
    #[error("transaction entry {index} failed: {source}")]
    Entry {
        index: usize,
        #[source]
        source: Box<RecordsError>,
    },
    #[error("{0}")]
    Config(String),
    /// A restricted record (sensitivity label) of this patient: break the glass to see it.
    #[error("this record is restricted; break the glass (with a reason) to see it")]
    Restricted(String),
    /// The database's master key was replaced while this process was running with the old
    /// one: it can neither read nor write until it is restarted with the new key.
    #[error(
        "the master key of this database was replaced: restart this server with the new \
         --master-key-file"
    )]
    KeyReplaced,
    /// The audit log could not be written, so the request was not carried out (or answered).
    #[error("the audit log is unavailable; the request was not completed")]
    AuditUnavailable,
    /// Stored data failed its integrity check (wrong key, or changed outside ironchart).
    #[error("{0}")]
    Integrity(String),
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
    /// Whether the error is a refusal (authentication or policy), audited as `denied`.
    pub fn is_denial(&self) -> bool {
        match self {
            RecordsError::Unauthorized
            | RecordsError::Forbidden(_)
            | RecordsError::Restricted(_) => true,
            RecordsError::Entry { source, .. } => source.is_denial(),
            _ => false,
        }
    }

    /// The patients a refusal tells something about (for its audit entry).
    pub(crate) fn patients(&self) -> Vec<String> {
        match self {
            RecordsError::Ambiguous { patients, .. } => patients.clone(),
            RecordsError::Restricted(patient) if !patient.is_empty() => vec![patient.clone()],
            RecordsError::Entry { source, .. } => source.patients(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>, expression: Option<&str>) -> Self {
        RecordsError::BadRequest {
            message: message.into(),
            expression: expression.map(str::to_string),
        }
    }
}
