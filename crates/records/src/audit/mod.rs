//! The audit log: every access to health data and every security event, appended before the
//! response is sent.
//!
//! Entries form a chain: each entry's MAC is HMAC-SHA256, under a key derived from the master
//! key, over the previous entry's MAC and the entry's own fields, so a changed, deleted,
//! inserted or reordered row breaks the chain at that row. Entries of reads and security events
//! go through the process's journal (`crate::journal`) and are moved into the chain in large
//! transactions; writes of health data append their entries inside their own transaction, so a
//! write and its audit entry land together or not at all. Signed checkpoints (sequence number and
//! MAC of the newest entry, Ed25519) are written to a file outside the database, which is how a
//! truncated tail is caught. When the master key is replaced, the chain's keys retire (kept
//! wrapped under the new master key, for the entries they made) and the chain goes on under the
//! new key's.

mod chain;
mod checkpoint;
mod filter;
pub(crate) mod journal;
mod upkeep;
mod verify;

pub(crate) use chain::{ChainKeys, RETIRED_KEYS, append_in, chained, locked_tail};
pub(crate) use checkpoint::sign_tail;
pub use filter::{AuditFilter, AuditRecord, AuditSort};
pub(crate) use upkeep::{SharedSegment, start_upkeep};
pub use verify::VerifyReport;
pub(crate) use verify::verify;

use ironchart_fhir::PatientId;
use ironchart_store::{AuditRow, WriteTx};

use crate::actor::Actor;
use crate::{RecordsError, Result};

/// Declares [`AuditAction`] from one list of variants and their names in the log, so that the
/// enum, [`AuditAction::ALL`] and [`AuditAction::as_str`] cannot drift apart.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// What happened, in the words of the audit log.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)+
        }

        impl AuditAction {
            /// Every action, in the order of the enum.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)+];

            /// The action's name in the audit log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)+
                }
            }
        }
    };
}

audit_actions! {
    Read = "read",
    Vread = "vread",
    Search = "search",
    History = "history",
    Create = "create",
    Update = "update",
    Delete = "delete",
    Import = "import",
    /// A transaction Bundle that failed as a whole (its writes are audited one by one).
    Transaction = "transaction",
    SignIn = "sign-in",
    SignOut = "sign-out",
    MfaEnrol = "mfa-enrol",
    MfaReset = "mfa-reset",
    Lockout = "lockout",
    UserAdd = "user-add",
    UserRoles = "user-roles",
    UserDisable = "user-disable",
    UserEnable = "user-enable",
    PasswordChange = "password-change",
    TokenIssue = "token-issue",
    TokenRevoke = "token-revoke",
    SessionRevoke = "session-revoke",
    BreakGlass = "break-glass",
    KeyRotate = "key-rotate",
    Config = "config",
    Setup = "setup",
    AuditRead = "audit-read",
    /// A clinician signed an encounter (its note), which locks it.
    Sign = "sign",
    /// A clinician prescribed despite an allergy alert (the reason is the detail).
    AllergyOverride = "allergy-override",
    /// A clinician acknowledged a result.
    ResultReview = "result-review",
    /// A journal of entries waiting to be moved into the log was found damaged.
    JournalDamaged = "audit-journal-damaged",
}

impl AuditAction {
    /// The FHIR `AuditEvent.action` code (<http://hl7.org/fhir/audit-event-action>): C, R, U, D,
    /// or E (execute) for everything that is not a create, read, update or delete of a record.
    pub fn fhir_code(self) -> &'static str {
        match self {
            AuditAction::Create => "C",
            AuditAction::Read
            | AuditAction::Vread
            | AuditAction::History
            | AuditAction::AuditRead => "R",
            AuditAction::Update => "U",
            AuditAction::Delete => "D",
            _ => "E",
        }
    }

    /// The actions a FHIR `AuditEvent.action` code covers; `None` for a code that is not one.
    pub fn of_fhir_code(code: &str) -> Option<Vec<AuditAction>> {
        matches!(code, "C" | "R" | "U" | "D" | "E").then(|| {
            AuditAction::ALL
                .iter()
                .copied()
                .filter(|a| a.fhir_code() == code)
                .collect()
        })
    }

    /// Whether the action only reads health data (the high-volume part of the log).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            AuditAction::Read | AuditAction::Vread | AuditAction::Search | AuditAction::History
        )
    }

    /// Whether the action touches health data (the rest are security events).
    pub fn is_data_access(self) -> bool {
        matches!(
            self,
            AuditAction::Read
                | AuditAction::Vread
                | AuditAction::Search
                | AuditAction::History
                | AuditAction::Create
                | AuditAction::Update
                | AuditAction::Delete
                | AuditAction::Import
                | AuditAction::Transaction
        )
    }
}

impl std::str::FromStr for AuditAction {
    type Err = UnknownAuditAction;

    /// An action by its name in the audit log.
    fn from_str(name: &str) -> std::result::Result<AuditAction, UnknownAuditAction> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| UnknownAuditAction(name.to_string()))
    }
}

/// A name that is no audit action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAuditAction(pub String);

impl std::fmt::Display for UnknownAuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not an audit action", self.0)
    }
}

impl std::error::Error for UnknownAuditAction {}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by policy or authentication.
    Denied,
    /// Failed for another reason (invalid input, not found …).
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// One entry to append; the actor's fields are added from the [`Actor`].
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: AuditAction,
    pub outcome: Outcome,
    pub res_type: Option<String>,
    pub res_id: Option<String>,
    pub version: Option<i64>,
    pub patients: Vec<String>,
    /// Non-health detail: parameter names of a search, a count, a reason code.
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(action: AuditAction, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            action,
            outcome,
            res_type: None,
            res_id: None,
            version: None,
            patients: Vec::new(),
            detail: None,
        }
    }

    pub fn resource(mut self, res_type: &str, res_id: &str, version: Option<i64>) -> Self {
        self.res_type = Some(res_type.to_string());
        self.res_id = Some(res_id.to_string());
        self.version = version;
        self
    }

    pub fn res_type(mut self, res_type: &str) -> Self {
        self.res_type = Some(res_type.to_string());
        self
    }

    pub fn patients(mut self, patients: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = patients.into_iter().collect();
        all.sort();
        all.dedup();
        self.patients = all;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The entry as a row of the log. Every field is bounded, whatever a request carried: a
    /// type that is not a resource type and an id outside the FHIR id grammar are not kept
    /// (the detail says so), at most [`MAX_AUDITED_PATIENTS`] patients are listed, and text
    /// fields are cut, so that no request can make an entry large.
    fn row(self, actor: &Actor, recorded: i64) -> AuditRow {
        let mut notes: Vec<String> = Vec::new();
        let res_type = match self.res_type {
            Some(t) if ironchart_fhir::is_resource_type(&t) => Some(t),
            Some(_) => {
                notes.push("the resource type asked for is not a FHIR resource type".into());
                None
            }
            None => None,
        };
        let res_id = match self.res_id {
            Some(id) if ironchart_fhir::is_valid_id(&id) => Some(id),
            Some(_) => {
                notes.push("the id asked for is not a valid FHIR id".into());
                None
            }
            None => None,
        };
        let mut patients: Vec<String> = self
            .patients
            .into_iter()
            .filter(|p| ironchart_fhir::is_valid_id(p))
            .collect();
        if patients.len() > MAX_AUDITED_PATIENTS {
            notes.push(format!(
                // "At least": a list read up to a limit knows only that there are more.
                "at least {} more patients not listed",
                patients.len() - MAX_AUDITED_PATIENTS
            ));
            patients.truncate(MAX_AUDITED_PATIENTS);
        }
        let detail = match (self.detail, notes.is_empty()) {
            (d, true) => d,
            (Some(d), false) => Some([d, notes.join("; ")].join("; ")),
            (None, false) => Some(notes.join("; ")),
        };
        AuditRow {
            seq: 0,
            recorded,
            actor: clipped(actor.audit_name(), MAX_FIELD),
            role: actor.audit_role().map(|r| clipped(r, MAX_FIELD)),
            action: self.action.as_str().to_string(),
            res_type,
            res_id,
            version: self.version,
            patients: if patients.is_empty() {
                None
            } else {
                Some(patients.join(" "))
            },
            outcome: self.outcome.as_str().to_string(),
            source: actor.source().map(|s| clipped(s.to_string(), MAX_FIELD)),
            purpose: actor.purpose().map(|s| clipped(s.to_string(), MAX_FIELD)),
            request_id: actor
                .request_id()
                .map(|s| clipped(s.to_string(), MAX_FIELD)),
            detail: detail.map(|d| clipped(d, MAX_DETAIL)),
            mac: String::new(),
        }
    }
}

/// Most patients one audit entry lists (a search of 1,000 resources can concern as many).
pub(crate) const MAX_AUDITED_PATIENTS: usize = 1000;
/// Longest kept text of an entry's short fields (actor, role, address, purpose, request id)
/// and of its detail, in bytes.
const MAX_FIELD: usize = 200;
const MAX_DETAIL: usize = 1000;

/// `text` cut to at most `max` bytes, at a character boundary.
fn clipped(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The entries as rows of the log, recorded at `now`.
pub(crate) fn rows_of(actor: &Actor, entries: Vec<AuditEntry>, now: i64) -> Vec<AuditRow> {
    entries.into_iter().map(|e| e.row(actor, now)).collect()
}

impl crate::Records {
    /// Waits until every audit entry acknowledged so far is in the database (readers of the log
    /// call it first, so that they see everything).
    pub async fn flush_audit(&self) -> Result<()> {
        self.audit_writer.flush().await
    }

    /// Appends entries to the audit log (its journal) before it returns; security events and
    /// writes wait until they are on the disk, reads and searches only with `sync_reads`.
    pub(crate) async fn audit(&self, actor: &Actor, entries: Vec<AuditEntry>) -> Result<()> {
        let durable = self.sync_reads || entries.iter().any(|e| !e.action.is_read());
        let rows = crate::audit::rows_of(actor, entries, self.now().as_millis());
        self.audit_writer.append(rows, durable).await
    }

    /// Appends entries inside a write transaction (they commit with it).
    pub(crate) async fn audit_in(
        &self,
        tx: &mut WriteTx,
        actor: &Actor,
        entries: Vec<AuditEntry>,
    ) -> Result<()> {
        let rows = crate::audit::rows_of(actor, entries, self.now().as_millis());
        crate::audit::append_in(tx, &self.chain, rows).await
    }

    /// Audits a request's outcome, then returns it. When the entry cannot be written the
    /// request fails.
    pub(crate) async fn audited<T>(
        &self,
        actor: &Actor,
        result: Result<T>,
        entry: impl FnOnce(Outcome, Option<&T>) -> AuditEntry,
    ) -> Result<T> {
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) if e.is_denial() => Outcome::Denied,
            Err(_) => Outcome::Failure,
        };
        let entry = entry(outcome, result.as_ref().ok());
        self.audit(actor, vec![entry]).await?;
        result
    }

    /// Audits a request refused for want of valid credentials (no, unknown, expired or revoked
    /// bearer token).
    pub async fn audit_refused_credentials(
        &self,
        source: Option<String>,
        request_id: Option<String>,
        detail: &str,
    ) -> Result<()> {
        let actor = Actor::anonymous().for_request(source, request_id);
        self.audit(
            &actor,
            vec![AuditEntry::new(AuditAction::SignIn, Outcome::Denied).detail(detail)],
        )
        .await
    }

    /// Audits a request the edge refused because its URL names nothing: a resource type that is
    /// none, or an id outside the FHIR id grammar. Such probing is logged as a failed `action`
    /// like any other refused access; what was asked for is kept only when it is a valid type
    /// or id (the entry notes what was not).
    pub async fn audit_unnamed(
        &self,
        actor: &Actor,
        action: AuditAction,
        resource_type: &str,
        id: Option<&str>,
    ) -> Result<()> {
        let entry = AuditEntry::new(action, Outcome::Failure);
        let entry = match id {
            Some(id) => entry.resource(resource_type, id, None),
            None => entry.res_type(resource_type),
        };
        self.audit(actor, vec![entry]).await
    }

    /// Writes a signed checkpoint (outside the database) of the newest audit entry, after
    /// checking the chain up to it from the last checkpoint.
    pub async fn checkpoint(&self) -> Result<()> {
        if let Some(path) = &self.checkpoints {
            self.flush_audit().await?;
            crate::audit::sign_tail(&self.store, &self.chain, path, None).await;
        }
        Ok(())
    }

    /// Checks the whole audit chain and the signed checkpoints.
    pub async fn verify_audit(&self) -> Result<crate::audit::VerifyReport> {
        if let Err(e) = self.flush_audit().await {
            tracing::warn!("verifying without the newest entries, still in the journal: {e}");
        }
        crate::audit::verify(&self.store, &self.chain, self.checkpoints.as_deref()).await
    }

    /// The public key that verifies this database's audit checkpoints.
    pub fn checkpoint_public_key(&self) -> String {
        self.chain.public_key_hex()
    }

    /// Reads the audit log (auditors and the operator only); the read is itself audited.
    pub async fn audit_entries(
        &self,
        by: &Actor,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        if !(by.is_system() || by.has_role(ironchart_security::scope::Role::Auditor)) {
            let refused = Err(RecordsError::Forbidden(
                "the audit log is for auditors".into(),
            ));
            self.audit(
                by,
                vec![AuditEntry::new(AuditAction::AuditRead, Outcome::Denied)],
            )
            .await?;
            return refused;
        }
        crate::policy::live(by, self.now())?;
        self.flush_audit().await?;
        let rows = self.store.audit_search(&filter.to_store()).await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::AuditRead, Outcome::Success)
                    .detail(format!("{} entries", rows.len())),
            ],
        )
        .await?;
        Ok(rows.into_iter().map(AuditRecord::of).collect())
    }

    /// The Patients whose records `by` read most recently, newest first (at most `limit`), from
    /// their own entries in the log: "my recent charts". A user's own trail is theirs to see, so
    /// this needs no auditor role and is not itself logged; it lists ids only (their names are
    /// read through the door as usual). Entries still in the journal show up within seconds.
    pub async fn recent_patients(&self, by: &Actor, limit: usize) -> Result<Vec<PatientId>> {
        crate::policy::live(by, self.now())?;
        if by.is_system() || by.patient().is_some() {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .audit_search(&ironchart_store::AuditQuery {
                actor: Some(by.audit_name()),
                actions: vec![AuditAction::Read.as_str().to_string()],
                outcome: Some(Outcome::Success.as_str().to_string()),
                descending: true,
                limit: 500,
                ..ironchart_store::AuditQuery::default()
            })
            .await?;
        let mut out: Vec<PatientId> = Vec::new();
        for row in rows {
            if row.res_type.as_deref() != Some("Patient") {
                continue;
            }
            let Some(id) = row.res_id.as_deref().and_then(PatientId::parse) else {
                continue;
            };
            if !out.contains(&id) {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How many audit entries match (ignoring paging); auditors and the operator only.
    pub async fn audit_count(&self, by: &Actor, filter: &AuditFilter) -> Result<i64> {
        if !(by.is_system() || by.has_role(ironchart_security::scope::Role::Auditor)) {
            return Err(RecordsError::Forbidden(
                "the audit log is for auditors".into(),
            ));
        }
        crate::policy::live(by, self.now())?;
        self.flush_audit().await?;
        Ok(self.store.audit_count(&filter.to_store()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every action once, each reads back by its name, and each FHIR code covers
    /// exactly the actions that have it (the search `action=E` once missed a damaged journal).
    #[test]
    fn every_action_is_listed_and_reads_back_by_name() {
        // (The enum, ALL and the names come from one list: see `audit_actions!`.)
        assert_eq!(AuditAction::ALL.len(), 31);
        let mut names = std::collections::HashSet::new();
        for &a in AuditAction::ALL {
            assert!(names.insert(a.as_str()), "{} twice", a.as_str());
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(a));
        }
        let mut covered = 0;
        for code in ["C", "R", "U", "D", "E"] {
            let actions = AuditAction::of_fhir_code(code).unwrap();
            assert!(actions.iter().all(|a| a.fhir_code() == code));
            covered += actions.len();
        }
        assert_eq!(covered, AuditAction::ALL.len());
        assert!(
            AuditAction::of_fhir_code("E")
                .unwrap()
                .contains(&AuditAction::JournalDamaged)
        );
        assert!(AuditAction::of_fhir_code("X").is_none());
        assert!("no-such-action".parse::<AuditAction>().is_err());
    }

    /// An entry lists at most `MAX_AUDITED_PATIENTS` patients and says how many more there are
    /// (at least: a list read up to a limit knows no more than that).
    #[test]
    fn an_entry_says_how_many_patients_it_does_not_list() {
        let many: Vec<String> = (0..MAX_AUDITED_PATIENTS + 37)
            .map(|i| format!("p{i:05}"))
            .collect();
        let row = AuditEntry::new(AuditAction::Search, Outcome::Success)
            .patients(many)
            .detail("Observation?code=x")
            .row(&Actor::anonymous(), 0);
        let listed = row.patients.unwrap_or_default();
        assert_eq!(listed.split(' ').count(), MAX_AUDITED_PATIENTS);
        assert_eq!(
            row.detail.as_deref(),
            Some("Observation?code=x; at least 37 more patients not listed")
        );
    }
}
