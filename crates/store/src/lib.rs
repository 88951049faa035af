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
mod db;
mod error;
mod migrate;
mod resources;
pub mod search;
mod tokens;
mod users;

pub use audit::{
    AuditColumn, AuditQuery, AuditRow, INDEX_BATCH, ROWS_PER_INSERT as AUDIT_ROWS_PER_INSERT,
};
pub use db::{Backend, DEFAULT_QUERY_TIMEOUT, Store};
pub use error::StoreError;
pub use migrate::SCHEMA_VERSION;
pub use resources::{
    CurrentBody, HistoryScope, NewVersion, Reindexed, SealedBody, StoredVersion, VersionHead,
    WriteTx,
};
pub use search::{CompartmentRule, Cursor, MAX_PAGE_BYTES, SearchPage, Visibility, within_bytes};
pub use tokens::TokenRecord;
pub use users::{GrantRecord, SessionRecord, UserRecord};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
