//! Persistence of FHIR resources on SQLite or PostgreSQL: schema and migrations, versioned
//! resources (current row + every version), and the typed search index written in the same
//! transaction as the resource.
//!
//! The same SQL text runs on both databases. SQL is built only from static fragments; every value
//! is bound. This crate knows nothing of users, scopes or policy and never interprets resource
//! bodies (they arrive as opaque bytes, encrypted by the caller): only `ironchart-records` may
//! depend on it.
#![forbid(unsafe_code)]

mod db;
mod error;
mod migrate;
mod resources;
pub mod search;
mod tokens;

pub use db::{Backend, Store};
pub use error::StoreError;
pub use migrate::SCHEMA_VERSION;
pub use resources::{HistoryScope, NewVersion, StoredVersion, VersionHead, WriteTx};
pub use search::{Cursor, SearchPage};
pub use tokens::TokenRecord;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
