//! Persistence of FHIR resources on SQLite or PostgreSQL: schema and migrations, versioned
//! resources (current row + every version), and the typed search index written in the same
//! transaction as the resource.
//!
//! The same SQL text runs on both databases. SQL is built only from static fragments; every value
//! is bound. This crate stores users, sessions and the audit log as plain rows but decides
//! nothing about them (no roles, scopes or policy), and never interprets resource bodies (they
//! arrive as opaque bytes, sealed by the caller). Only `ironchart-records` may depend on it.
#![forbid(unsafe_code)]

mod audit;
mod clinical;
mod db;
mod error;
mod indexing;
mod migrate;
mod resources;
pub mod search;
mod tokens;
mod users;
mod visibility;

pub use audit::{
    AuditColumn, AuditQuery, AuditRow, INDEX_BATCH, ROWS_PER_INSERT as AUDIT_ROWS_PER_INSERT,
};
pub use clinical::{ReviewRecord, SignatureRecord};
pub use db::{Backend, DEFAULT_QUERY_TIMEOUT, Store};
pub use error::StoreError;
pub use migrate::SCHEMA_VERSION;
pub use resources::{
    CurrentBody, HistoryScope, NewVersion, Reindexed, SealedBody, StoredVersion, VersionHead,
    WriteTx,
};
pub use search::{Cursor, MAX_PAGE_BYTES, SearchPage, within_bytes};
pub use tokens::TokenRecord;
pub use users::{GrantRecord, SessionRecord, UserRecord};
pub use visibility::{CompartmentRule, Sensitivity, Visibility};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The PostgreSQL database the tests run against (`IRONCHART_TEST_DATABASE_URL`), or `None`
/// when none is configured and the PostgreSQL runs are skipped — unless
/// `IRONCHART_REQUIRE_POSTGRES` is set (CI sets it), when a missing database fails the test
/// instead of letting it pass without having run.
#[doc(hidden)]
pub fn test_database_url() -> Option<String> {
    match std::env::var("IRONCHART_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("IRONCHART_REQUIRE_POSTGRES").is_none(),
                "IRONCHART_REQUIRE_POSTGRES is set, but IRONCHART_TEST_DATABASE_URL is not"
            );
            eprintln!("IRONCHART_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
            None
        }
    }
}
