//! The one door to health data. Every read, search, history, write, transaction and import goes
//! through [`Records`]: it authenticates the caller's token, validates and versions resources,
//! extracts their search index and hands them to the store. Policy (scopes, compartments,
//! sensitivity labels, break-the-glass), the audit log and encryption at rest live here and
//! nowhere else.
//!
//! Nothing outside this crate can reach the store: `web` and the command line hold a `Records`,
//! never a database handle.
#![forbid(unsafe_code)]

mod actor;
pub mod audit;
mod bundle;
mod cache;
mod clinical;
mod clock;
mod error;
mod import;
mod keys;
mod lock;
mod policy;
mod read;
mod reindex;
mod resource;
mod rotation;
mod service;
mod signin;
mod tokens;
mod users;
mod write;

pub use actor::{Actor, ActorKind, LocalOperator};
pub use bundle::{BundleOutcome, GetHandler, transaction_into_resources, transaction_resources};
pub use clinical::{Review, SignOutcome, Signature};
pub use clock::{Clock, Instant, ManualClock, SystemClock};
pub use error::RecordsError;
pub use import::{ImportOutcome, PreparedBatch};
pub use read::HistoryScope;
pub use resource::{HistoryPage, Resource, ResourcePage, WriteOutcome};
pub use service::{DEFAULT_RESOURCE_LIMIT, DatabaseConfig, Records, SecurityConfig};
pub use signin::{
    Client, Enrolment, NewSession, Session, SessionListing, SessionPolicy, SessionStage,
    SignInError, SignInFailure,
};
pub use users::UserSummary;
pub use write::MAX_INDEX_VALUES;

pub use ironchart_security::constant_time_eq;
pub use ironchart_security::keyring::MasterKey;
pub use ironchart_security::scope::{Interaction, Role, Scopes};

pub use audit::{AuditAction, AuditFilter, AuditRecord, AuditSort, Outcome, VerifyReport};
pub use ironchart_store::SCHEMA_VERSION;

pub type Result<T, E = RecordsError> = std::result::Result<T, E>;

/// For the tests of the crates above (the `test-support` feature, enabled by their
/// dev-dependencies only): the local operator without opening a database.
#[cfg(feature = "test-support")]
pub mod test_support {
    /// The operator, as [`crate::Records::open_local`] hands it out.
    pub fn operator() -> crate::LocalOperator {
        crate::LocalOperator::new()
    }
}
