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
    /// restarting, or the link broke), or its storage refused the write (the disk is full or
    /// failed): the request may succeed if tried again once the cause is gone.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(e) if crate::db::connection_lost(e) || storage_refused(e))
    }

    /// Whether the database stopped the query at its time limit (see
    /// [`crate::Store::set_query_timeout`]), or because its client went away: SQLite's
    /// `SQLITE_INTERRUPT`, PostgreSQL's `57014` (query canceled).
    pub fn is_timeout(&self) -> bool {
        const SQLITE_INTERRUPT: i64 = 9;
        let StoreError::Database(e) = self else {
            return false;
        };
        match database_code(e) {
            Some(Code::Sqlite(c)) => c == SQLITE_INTERRUPT,
            Some(Code::Postgres(c)) => c == crate::db::QUERY_CANCELED,
            None => false,
        }
    }
}

/// A database error's code: SQLite's primary result code (the low byte of the extended one),
/// or PostgreSQL's SQLSTATE.
enum Code<'a> {
    Sqlite(i64),
    Postgres(std::borrow::Cow<'a, str>),
}

fn database_code(e: &sqlx::Error) -> Option<Code<'_>> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code()?;
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return code.parse::<i64>().ok().map(|c| Code::Sqlite(c & 0xff));
    }
    Some(Code::Postgres(code))
}

/// Whether the database's storage refused the work: on SQLite a full disk (`SQLITE_FULL`), an
/// I/O error (`SQLITE_IOERR` and its extended codes) or a file it cannot open
/// (`SQLITE_CANTOPEN`, as when there is no room for its journal); on PostgreSQL SQLSTATE class
/// 53 (insufficient resources: disk full, out of memory, too many connections) and `58030`
/// (I/O error).
fn storage_refused(e: &sqlx::Error) -> bool {
    const SQLITE_IOERR: i64 = 10;
    const SQLITE_FULL: i64 = 13;
    const SQLITE_CANTOPEN: i64 = 14;
    match database_code(e) {
        Some(Code::Sqlite(c)) => matches!(c, SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN),
        Some(Code::Postgres(c)) => c.starts_with("53") || c == "58030",
        None => false,
    }
}
