/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database was written by a newer ironchart: refuse to touch it.
    #[error(
        "the database schema is version {found}, newer than this ironchart supports ({supported}); upgrade ironchart"
    )]
    NewerSchema { found: i64, supported: i64 },
    /// Another writer changed the resource first; the caller may retry.
    #[error("concurrent modification")]
    Conflict,
    /// An opaque paging cursor that we did not issue (or no longer understand).
    #[error("invalid paging cursor")]
    BadCursor,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the error is a write conflict worth retrying (including serialization failures and
    /// unique violations raced by a concurrent writer).
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Conflict => true,
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(
                    e.code().as_deref(),
                    Some("40001" | "40P01" | "23505" | "2067" | "1555")
                )
            }
            _ => false,
        }
    }

    /// Whether the database could not be reached or ended the session (the server is down,
    /// restarting, or the link broke): the request may succeed if tried again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(e) if crate::db::connection_lost(e))
    }
}
