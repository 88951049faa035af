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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use ironchart_store::{AuditRow, Store, WriteTx};
use sha2::Sha256;
use zeroize::Zeroizing;

use ironchart_security::keyring::MasterKey;

use crate::actor::Actor;
use crate::{RecordsError, Result};

/// What happened, in the words of the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Read,
    Vread,
    Search,
    History,
    Create,
    Update,
    Delete,
    Import,
    /// A transaction Bundle that failed as a whole (its writes are audited one by one).
    Transaction,
    SignIn,
    SignOut,
    MfaEnrol,
    MfaReset,
    Lockout,
    UserAdd,
    UserRoles,
    UserDisable,
    UserEnable,
    PasswordChange,
    TokenIssue,
    TokenRevoke,
    SessionRevoke,
    BreakGlass,
    KeyRotate,
    Config,
    Setup,
    AuditRead,
    /// A journal of entries waiting to be moved into the log was found damaged.
    JournalDamaged,
}

impl AuditAction {
    /// Every action, in the order of the enum (a new action goes here too: the tests check that
    /// each name reads back as its action).
    pub const ALL: [AuditAction; 28] = [
        AuditAction::Read,
        AuditAction::Vread,
        AuditAction::Search,
        AuditAction::History,
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Import,
        AuditAction::Transaction,
        AuditAction::SignIn,
        AuditAction::SignOut,
        AuditAction::MfaEnrol,
        AuditAction::MfaReset,
        AuditAction::Lockout,
        AuditAction::UserAdd,
        AuditAction::UserRoles,
        AuditAction::UserDisable,
        AuditAction::UserEnable,
        AuditAction::PasswordChange,
        AuditAction::TokenIssue,
        AuditAction::TokenRevoke,
        AuditAction::SessionRevoke,
        AuditAction::BreakGlass,
        AuditAction::KeyRotate,
        AuditAction::Config,
        AuditAction::Setup,
        AuditAction::AuditRead,
        AuditAction::JournalDamaged,
    ];

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
                .into_iter()
                .filter(|a| a.fhir_code() == code)
                .collect()
        })
    }

    /// The action's name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Read => "read",
            AuditAction::Vread => "vread",
            AuditAction::Search => "search",
            AuditAction::History => "history",
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Import => "import",
            AuditAction::Transaction => "transaction",
            AuditAction::SignIn => "sign-in",
            AuditAction::SignOut => "sign-out",
            AuditAction::MfaEnrol => "mfa-enrol",
            AuditAction::MfaReset => "mfa-reset",
            AuditAction::Lockout => "lockout",
            AuditAction::UserAdd => "user-add",
            AuditAction::UserRoles => "user-roles",
            AuditAction::UserDisable => "user-disable",
            AuditAction::UserEnable => "user-enable",
            AuditAction::PasswordChange => "password-change",
            AuditAction::TokenIssue => "token-issue",
            AuditAction::TokenRevoke => "token-revoke",
            AuditAction::SessionRevoke => "session-revoke",
            AuditAction::BreakGlass => "break-glass",
            AuditAction::KeyRotate => "key-rotate",
            AuditAction::Config => "config",
            AuditAction::Setup => "setup",
            AuditAction::AuditRead => "audit-read",
            AuditAction::JournalDamaged => "audit-journal-damaged",
        }
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
            .into_iter()
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
                "{} more patients not listed",
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

/// The setting listing the chain keys of earlier master keys: `upto:wrapped` pairs, each the
/// MAC key and checkpoint public key of the entries up to `upto`, wrapped under the current
/// master key.
pub(crate) const RETIRED_KEYS: &str = "audit.keys.retired";

/// The chain's keys: the MAC key of the entries and the checkpoint signing key, derived from
/// the master key; and those of earlier master keys, for the entries they made.
pub(crate) struct ChainKeys {
    mac: Zeroizing<[u8; 32]>,
    signing: SigningKey,
    /// The key-check value of the master key these keys come from: an append checks, under the
    /// chain's lock, that the database is still sealed with it.
    check: String,
    /// Oldest first.
    retired: Vec<RetiredKeys>,
    /// The newest entry this process has written a checkpoint of (the upkeep task and a closing
    /// command may both want to; each entry is vouched for once).
    checkpointed: std::sync::Mutex<i64>,
}

/// The keys of the entries up to `upto`, made under an earlier master key.
struct RetiredKeys {
    upto: i64,
    mac: Zeroizing<[u8; 32]>,
    public: VerifyingKey,
}

impl ChainKeys {
    /// The keys of `master`, and the retired keys the database keeps wrapped under it.
    pub(crate) fn of(master: &MasterKey, retired: Option<&str>) -> Result<ChainKeys> {
        let mut keys = ChainKeys::new(
            master.derive(b"", "ironchart audit chain v1"),
            master.derive(b"", "ironchart audit checkpoint v1"),
        );
        keys.check = master.check_value();
        for pair in retired.unwrap_or("").split_whitespace() {
            let damaged = || {
                RecordsError::Integrity(format!(
                    "the retired audit keys ({RETIRED_KEYS}) failed their integrity check"
                ))
            };
            let (upto, wrapped) = pair.split_once(':').ok_or_else(damaged)?;
            let upto: i64 = upto.parse().map_err(|_| damaged())?;
            let bytes = master
                .unwrap(&retired_label(upto), wrapped)
                .map_err(|_| damaged())?;
            if bytes.len() != 64 {
                return Err(damaged());
            }
            let mut mac = Zeroizing::new([0u8; 32]);
            mac.copy_from_slice(&bytes[..32]);
            let public: [u8; 32] = bytes[32..].try_into().map_err(|_| damaged())?;
            keys.retired.push(RetiredKeys {
                upto,
                mac,
                public: VerifyingKey::from_bytes(&public).map_err(|_| damaged())?,
            });
        }
        keys.retired.sort_by_key(|r| r.upto);
        Ok(keys)
    }

    fn new(mac: Zeroizing<[u8; 32]>, signing_seed: Zeroizing<[u8; 32]>) -> ChainKeys {
        ChainKeys {
            mac,
            signing: SigningKey::from_bytes(&signing_seed),
            check: String::new(),
            retired: Vec::new(),
            checkpointed: std::sync::Mutex::new(0),
        }
    }

    /// The value of [`RETIRED_KEYS`] once the master key is replaced by `new`: these keys retire
    /// for the entries up to `upto` (the newest entry), the retired ones stay, all wrapped
    /// under `new`.
    pub(crate) fn retire(&self, upto: Option<i64>, new: &MasterKey) -> String {
        let mut list: Vec<(i64, Vec<u8>)> = self
            .retired
            .iter()
            .map(|r| (r.upto, [&r.mac[..], r.public.as_bytes()].concat()))
            .collect();
        let newest_retired = self.retired.last().map_or(0, |r| r.upto);
        if let Some(upto) = upto.filter(|u| *u > newest_retired) {
            list.push((
                upto,
                [&self.mac[..], self.signing.verifying_key().as_bytes()].concat(),
            ));
        }
        list.iter()
            .map(|(upto, secret)| {
                let secret = Zeroizing::new(secret.clone());
                format!("{upto}:{}", new.wrap(&retired_label(*upto), &secret))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The MAC key of the entry `seq`.
    fn mac_key_of(&self, seq: i64) -> &[u8] {
        match self.retired.iter().find(|r| seq <= r.upto) {
            Some(r) => r.mac.as_ref(),
            None => self.mac.as_ref(),
        }
    }

    /// The journal keys to try on a journal a process left: this one's first.
    pub(crate) fn mac_keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.mac.as_ref()).chain(self.retired.iter().rev().map(|r| r.mac.as_ref()))
    }

    /// The public key that may have signed a checkpoint of entry `seq`, given the one named on
    /// its line.
    fn checkpoint_key_of(&self, seq: i64, named: &str) -> Option<VerifyingKey> {
        if named == self.public_key_hex() {
            // Entries older than the current keys may be signed by them (a newer process signs
            // the whole tail it checked).
            return Some(self.signing.verifying_key());
        }
        self.retired
            .iter()
            .find(|r| seq <= r.upto && ironchart_security::hex(r.public.as_bytes()) == named)
            .map(|r| r.public)
    }

    /// The MAC of `row` following an entry whose MAC was `prev` (empty for the first entry).
    pub(crate) fn mac(&self, prev: &str, row: &AuditRow) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key_of(row.seq))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        field(&mut m, Some(prev));
        m.update(&row.seq.to_be_bytes());
        m.update(&row.recorded.to_be_bytes());
        field(&mut m, Some(&row.actor));
        field(&mut m, row.role.as_deref());
        field(&mut m, Some(&row.action));
        field(&mut m, row.res_type.as_deref());
        field(&mut m, row.res_id.as_deref());
        match row.version {
            Some(v) => {
                m.update(&[1]);
                m.update(&v.to_be_bytes());
            }
            None => m.update(&[0]),
        }
        field(&mut m, row.patients.as_deref());
        field(&mut m, Some(&row.outcome));
        field(&mut m, row.source.as_deref());
        field(&mut m, row.purpose.as_deref());
        field(&mut m, row.request_id.as_deref());
        field(&mut m, row.detail.as_deref());
        ironchart_security::hex(&m.finalize().into_bytes())
    }

    pub(crate) fn public_key_hex(&self) -> String {
        ironchart_security::hex(self.signing.verifying_key().as_bytes())
    }

    fn checkpoint_line(&self, seq: i64, mac: &str, at: i64) -> String {
        let message = checkpoint_message(seq, mac, at);
        let signature = self.signing.sign(message.as_bytes());
        format!(
            "{message} {} {}\n",
            ironchart_security::hex(&signature.to_bytes()),
            self.public_key_hex()
        )
    }
}

/// Length-prefixed (and presence-tagged) field, so that no two rows encode alike.
fn field(m: &mut Hmac<Sha256>, value: Option<&str>) {
    match value {
        Some(v) => {
            m.update(&[1]);
            m.update(&(v.len() as u64).to_be_bytes());
            m.update(v.as_bytes());
        }
        None => m.update(&[0]),
    }
}

fn checkpoint_message(seq: i64, mac: &str, at: i64) -> String {
    format!("ironchart-audit-checkpoint-v1 {seq} {mac} {at}")
}

fn retired_label(upto: i64) -> String {
    format!("ironchart audit keys up to {upto}")
}

/// Locks the chain's tail inside `tx` and returns it, after checking that the database is still
/// sealed with the master key `keys` come from (a process still running with a replaced master
/// key must not append entries the chain cannot check).
pub(crate) async fn locked_tail(
    tx: &mut WriteTx,
    keys: &ChainKeys,
) -> Result<Option<(i64, String)>> {
    let tail = tx.audit_tail().await?;
    if tx.setting(crate::keys::KEY_CHECK).await?.as_deref() != Some(keys.check.as_str()) {
        return Err(RecordsError::KeyReplaced);
    }
    Ok(tail)
}

/// Computes seq and MAC for new rows after the locked tail, and appends them.
pub(crate) async fn append_in(
    tx: &mut WriteTx,
    keys: &ChainKeys,
    rows: Vec<AuditRow>,
) -> Result<()> {
    let tail = locked_tail(tx, keys).await?;
    let rows = chained(keys, tail, rows);
    tx.audit_append(&rows).await?;
    Ok(())
}

pub(crate) fn rows_of(actor: &Actor, entries: Vec<AuditEntry>, now: i64) -> Vec<AuditRow> {
    entries.into_iter().map(|e| e.row(actor, now)).collect()
}

/// The stretch of the chain this process's mover appended without anyone else appending in
/// between: from `start` (the tail it read from the database) to `end` (its newest entry). The
/// mover computed every MAC after `start` itself, so the upkeep can vouch for `end` without
/// reading the stretch back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segment {
    pub(crate) start: Option<(i64, String)>,
    pub(crate) end: Option<(i64, String)>,
}

pub(crate) type SharedSegment = std::sync::Arc<std::sync::Mutex<Segment>>;

/// How often the upkeep runs (patient index, durability, checkpoint).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Beside the mover, never in its way: every [`CHECKPOINT_EVERY`] after new entries, indexes
/// them by patient, makes them durable and signs a checkpoint of the verified tail. Stops when
/// the mover is gone (`appended` has no other owner).
pub(crate) fn start_upkeep(
    store: Store,
    keys: std::sync::Arc<ChainKeys>,
    checkpoints: Option<PathBuf>,
    appended: std::sync::Arc<std::sync::atomic::AtomicU64>,
    segment: SharedSegment,
) {
    tokio::spawn(async move {
        // The newest entry this process has verified and signed.
        let mut signed: Option<(i64, String)> = None;
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if std::sync::Arc::strong_count(&appended) == 1 || store.is_closed() {
                // The writer is gone (the service was dropped) or the database closed.
                break;
            }
            // Entries written inside write transactions count too: index whatever is new, in
            // short transactions that let the writer in between.
            let mut indexed = 0;
            loop {
                match store.index_audit_patients().await {
                    Ok(n) => {
                        indexed += n;
                        if n < ironchart_store::INDEX_BATCH {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        // (Not worth a warning when the process is closing the database.)
                        if !store.is_closed() {
                            tracing::warn!("cannot index the audit log by patient: {e}");
                        }
                        break;
                    }
                }
            }
            let grouped = appended.swap(0, std::sync::atomic::Ordering::Relaxed);
            if grouped > 0
                && let Err(e) = store.audit_sync().await
            {
                tracing::warn!("cannot sync the audit log to disk: {e}");
            }
            if (grouped > 0 || indexed > 0)
                && let Some(path) = &checkpoints
            {
                let own = segment.lock().ok().map(|s| s.clone()).unwrap_or_default();
                signed = match own_stretch(signed.as_ref(), &own) {
                    Some(end) => match write_checkpoint(path, &keys, end.0, &end.1) {
                        Ok(()) => Some(end),
                        Err(e) => {
                            tracing::warn!("cannot write an audit checkpoint: {e}");
                            signed
                        }
                    },
                    None => sign_tail(&store, &keys, path, signed).await,
                };
            }
        }
    });
}

/// Chains `rows` after `tail` (seq and MAC of the newest entry).
pub(crate) fn chained(
    keys: &ChainKeys,
    tail: Option<(i64, String)>,
    mut rows: Vec<AuditRow>,
) -> Vec<AuditRow> {
    let (mut seq, mut prev) = tail.unwrap_or((0, String::new()));
    for row in rows.iter_mut() {
        seq += 1;
        row.seq = seq;
        row.mac = keys.mac(&prev, row);
        prev.clone_from(&row.mac);
    }
    rows
}

/// The newest entry of the writer's own stretch when the last signed entry lies on it (so
/// everything after it is the writer's own work) and it is newer; otherwise the chain must be
/// read back and checked.
fn own_stretch(signed: Option<&(i64, String)>, own: &Segment) -> Option<(i64, String)> {
    let (signed, start, end) = (signed?, own.start.as_ref()?, own.end.as_ref()?);
    let on_stretch =
        signed.0 > start.0 && signed.0 <= end.0 || (signed.0 == start.0 && signed.1 == start.1);
    (on_stretch && end.0 > signed.0).then(|| end.clone())
}

/// The newest checkpoint in the file whose signature holds, if any.
fn latest_checkpoint(path: &Path, keys: &ChainKeys) -> Option<(i64, String)> {
    read_checkpoints(path, keys)
        .ok()?
        .into_iter()
        .max_by_key(|c| c.seq)
        .map(|c| (c.seq, c.mac))
}

/// Checks the chain from a trusted entry (`from`: its seq and MAC, or the start of the log) to
/// the newest entry, and returns the newest one; the problem when the chain does not hold.
/// Why a stretch of the chain could not be vouched for.
enum TailError {
    /// The log could not be read (the database is closing, down or busy): nothing is known.
    Unreadable(ironchart_store::StoreError),
    /// The chain is broken at an entry.
    Broken(String),
}

async fn verified_tail(
    store: &Store,
    keys: &ChainKeys,
    from: Option<(i64, String)>,
) -> std::result::Result<Option<(i64, String)>, TailError> {
    const PAGE: usize = 5000;
    let (mut seq, mut prev) = match &from {
        Some((s, m)) => {
            let rows = store
                .audit_chain(s - 1, 1)
                .await
                .map_err(TailError::Unreadable)?;
            match rows.first() {
                Some(r) if r.seq == *s && r.mac == *m => (*s, m.clone()),
                _ => {
                    return Err(TailError::Broken(format!(
                        "entry {s}, vouched for by a checkpoint, is gone or changed"
                    )));
                }
            }
        }
        None => (0, String::new()),
    };
    let mut tail = from;
    loop {
        let rows = store
            .audit_chain(seq, PAGE)
            .await
            .map_err(TailError::Unreadable)?;
        if rows.is_empty() {
            return Ok(tail);
        }
        for row in &rows {
            if row.seq != seq + 1 {
                return Err(TailError::Broken(format!("entry {} is missing", seq + 1)));
            }
            if keys.mac(&prev, row) != row.mac {
                return Err(TailError::Broken(format!(
                    "entry {} does not match its MAC",
                    row.seq
                )));
            }
            seq = row.seq;
            prev.clone_from(&row.mac);
        }
        tail = Some((seq, prev.clone()));
    }
}

/// Verifies the chain from the last signed entry (`known`, else the checkpoint file) to the
/// newest entry and signs that one. A process only vouches for a tail it has checked; a broken
/// chain is reported and never signed. Returns the newest signed entry.
pub(crate) async fn sign_tail(
    store: &Store,
    keys: &ChainKeys,
    path: &Path,
    known: Option<(i64, String)>,
) -> Option<(i64, String)> {
    match store.setting(crate::keys::KEY_CHECK).await {
        Ok(check) if check.as_deref() == Some(keys.check.as_str()) => {}
        Ok(_) => {
            tracing::error!("{}", RecordsError::KeyReplaced);
            return known;
        }
        Err(e) => {
            if !store.is_closed() {
                tracing::warn!("cannot read the audit log to checkpoint it: {e}");
            }
            return known;
        }
    }
    let anchor = known.or_else(|| latest_checkpoint(path, keys));
    match verified_tail(store, keys, anchor.clone()).await {
        Ok(Some(tail)) if Some(&tail) != anchor.as_ref() => {
            match write_checkpoint(path, keys, tail.0, &tail.1) {
                Ok(()) => Some(tail),
                Err(e) => {
                    tracing::warn!("cannot write an audit checkpoint: {e}");
                    anchor
                }
            }
        }
        Ok(_) => anchor,
        Err(TailError::Broken(problem)) => {
            tracing::error!(
                "the audit chain does not verify ({problem}); no checkpoint written: run `ironchart audit verify`"
            );
            anchor
        }
        // Not a verdict on the chain: it could not be read (quietly so when this process is
        // closing the database). The next round tries again.
        Err(TailError::Unreadable(e)) => {
            if !store.is_closed() {
                tracing::warn!("cannot read the audit log to checkpoint it: {e}");
            }
            anchor
        }
    }
}

/// Appends a signed checkpoint line to the checkpoint file.
pub(crate) fn write_checkpoint(
    path: &Path,
    keys: &ChainKeys,
    seq: i64,
    mac: &str,
) -> std::io::Result<()> {
    let mut done = keys
        .checkpointed
        .lock()
        .map_err(|_| std::io::Error::other("checkpoint lock poisoned"))?;
    if seq <= *done {
        return Ok(());
    }
    let line = keys.checkpoint_line(seq, mac, crate::service::now_millis());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    *done = seq;
    Ok(())
}

/// A checkpoint read back from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub seq: i64,
    pub mac: String,
    pub at: i64,
    pub line: usize,
}

/// Reads a checkpoint file and checks each line's signature against the chain's keys (those
/// of earlier master keys only for the entries they made).
pub(crate) fn read_checkpoints(
    path: &Path,
    keys: &ChainKeys,
) -> std::result::Result<Vec<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let parts: Vec<&str> = line.split(' ').collect();
        let bad = || format!("checkpoint file line {n} is malformed");
        if parts.len() != 6 || parts[0] != "ironchart-audit-checkpoint-v1" {
            return Err(bad());
        }
        let seq: i64 = parts[1].parse().map_err(|_| bad())?;
        let at: i64 = parts[3].parse().map_err(|_| bad())?;
        let Some(key) = keys.checkpoint_key_of(seq, parts[5]) else {
            return Err(format!(
                "checkpoint file line {n} was signed by another key (not this database's master key)"
            ));
        };
        let sig_bytes: [u8; 64] = unhex(parts[4])
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let signature = ed25519_dalek::Signature::from_bytes(&sig_bytes);
        let message = checkpoint_message(seq, parts[2], at);
        if key.verify(message.as_bytes(), &signature).is_err() {
            return Err(format!("checkpoint file line {n} has an invalid signature"));
        }
        out.push(Checkpoint {
            seq,
            mac: parts[2].to_string(),
            at,
            line: n,
        });
    }
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How long a new entry may wait for its patient index rows (they are added every few seconds;
/// an older entry without them means the index was tampered with).
const INDEX_LAG_ALLOWED_MS: i64 = 10 * 60 * 1000;

/// What `ironchart audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    /// The chain is intact: how many entries, and the newest checkpoint it matched.
    Intact {
        entries: i64,
        checkpoint: Option<i64>,
    },
    /// The first problem found, naming the entry.
    Broken { seq: i64, problem: String },
}

/// Walks the whole chain, then compares it with the checkpoints.
pub(crate) async fn verify(
    store: &Store,
    keys: &ChainKeys,
    checkpoints: Option<&Path>,
) -> Result<VerifyReport> {
    const PAGE: usize = 5000;
    let mut prev = String::new();
    let mut expected = 1i64;
    let mut last_seq = 0i64;
    let mut macs_at: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let wanted: Vec<Checkpoint> = match checkpoints {
        Some(path) => match read_checkpoints(path, keys) {
            Ok(c) => c,
            Err(problem) => return Ok(VerifyReport::Broken { seq: 0, problem }),
        },
        None => Vec::new(),
    };
    let wanted_seqs: std::collections::HashSet<i64> = wanted.iter().map(|c| c.seq).collect();
    // Entries up to here must have their patient rows; newer ones may not have them yet, but
    // not for long.
    let indexed_upto = store.audit_patients_indexed().await?;
    let stale_before = crate::service::now_millis() - INDEX_LAG_ALLOWED_MS;
    loop {
        let rows = store.audit_chain(last_seq, PAGE).await?;
        if rows.is_empty() {
            break;
        }
        let first = rows[0].seq;
        let last = rows[rows.len() - 1].seq;
        let mut patient_rows: std::collections::HashMap<i64, Vec<String>> =
            std::collections::HashMap::new();
        for (seq, p) in store.audit_patient_rows(first, last).await? {
            patient_rows.entry(seq).or_default().push(p);
        }
        for row in &rows {
            if row.seq != expected {
                let problem = if row.seq > expected {
                    format!(
                        "entry {expected} is missing (the next entry is {})",
                        row.seq
                    )
                } else {
                    format!("entry {} is out of order", row.seq)
                };
                return Ok(VerifyReport::Broken {
                    seq: expected,
                    problem,
                });
            }
            let mac = keys.mac(&prev, row);
            if !ironchart_security::constant_time_eq(mac.as_bytes(), row.mac.as_bytes()) {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "entry {} does not match its MAC: it was changed, inserted or moved",
                        row.seq
                    ),
                });
            }
            let mut listed: Vec<String> = row
                .patients
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            listed.sort();
            listed.dedup();
            let mut indexed = patient_rows.remove(&row.seq).unwrap_or_default();
            indexed.sort();
            let pending = row.seq > indexed_upto && indexed.is_empty();
            if pending && !listed.is_empty() && row.recorded < stale_before {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "entry {} is missing from the patient index (the index claims to end at entry {indexed_upto})",
                        row.seq
                    ),
                });
            }
            if listed != indexed && !pending {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "the patient index of entry {} does not match the entry",
                        row.seq
                    ),
                });
            }
            if wanted_seqs.contains(&row.seq) {
                macs_at.insert(row.seq, row.mac.clone());
            }
            prev.clone_from(&row.mac);
            expected += 1;
        }
        last_seq = last;
    }
    let entries = expected - 1;
    let mut newest = None;
    for c in &wanted {
        match macs_at.get(&c.seq) {
            Some(mac) if *mac == c.mac => newest = newest.max(Some(c.seq)),
            Some(_) => {
                return Ok(VerifyReport::Broken {
                    seq: c.seq,
                    problem: format!(
                        "entry {} differs from the signed checkpoint on line {} of the checkpoint file",
                        c.seq, c.line
                    ),
                });
            }
            None => {
                return Ok(VerifyReport::Broken {
                    seq: entries + 1,
                    problem: format!(
                        "the log ends at entry {entries}, but a signed checkpoint (line {}) vouches for entry {}: the tail was truncated",
                        c.line, c.seq
                    ),
                });
            }
        }
    }
    Ok(VerifyReport::Intact {
        entries,
        checkpoint: newest,
    })
}

impl crate::Records {
    /// Reads the audit log (auditors and the operator only); the read is itself audited.
    pub async fn audit_entries(
        &self,
        by: &Actor,
        query: &ironchart_store::AuditQuery,
    ) -> Result<Vec<AuditRow>> {
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
        crate::policy::live(by)?;
        self.flush_audit().await?;
        let rows = self.store.audit_search(query).await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::AuditRead, Outcome::Success)
                    .detail(format!("{} entries", rows.len())),
            ],
        )
        .await?;
        Ok(rows)
    }

    /// How many audit entries match (ignoring paging); auditors and the operator only.
    pub async fn audit_count(
        &self,
        by: &Actor,
        query: &ironchart_store::AuditQuery,
    ) -> Result<i64> {
        if !(by.is_system() || by.has_role(ironchart_security::scope::Role::Auditor)) {
            return Err(RecordsError::Forbidden(
                "the audit log is for auditors".into(),
            ));
        }
        crate::policy::live(by)?;
        self.flush_audit().await?;
        Ok(self.store.audit_count(query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every action once, each reads back by its name, and each FHIR code covers
    /// exactly the actions that have it (the search `action=E` once missed a damaged journal).
    #[test]
    fn every_action_is_listed_and_reads_back_by_name() {
        // Exhaustive: a new action does not compile here until it is counted.
        let counted = |a: AuditAction| match a {
            AuditAction::Read
            | AuditAction::Vread
            | AuditAction::Search
            | AuditAction::History
            | AuditAction::Create
            | AuditAction::Update
            | AuditAction::Delete
            | AuditAction::Import
            | AuditAction::Transaction
            | AuditAction::SignIn
            | AuditAction::SignOut
            | AuditAction::MfaEnrol
            | AuditAction::MfaReset
            | AuditAction::Lockout
            | AuditAction::UserAdd
            | AuditAction::UserRoles
            | AuditAction::UserDisable
            | AuditAction::UserEnable
            | AuditAction::PasswordChange
            | AuditAction::TokenIssue
            | AuditAction::TokenRevoke
            | AuditAction::SessionRevoke
            | AuditAction::BreakGlass
            | AuditAction::KeyRotate
            | AuditAction::Config
            | AuditAction::Setup
            | AuditAction::AuditRead
            | AuditAction::JournalDamaged => 1,
        };
        assert_eq!(AuditAction::ALL.into_iter().map(counted).sum::<usize>(), 28);
        let mut names = std::collections::HashSet::new();
        for a in AuditAction::ALL {
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

    fn at(seq: i64, mac: &str) -> Option<(i64, String)> {
        Some((seq, mac.to_string()))
    }

    /// A log that cannot be read (here: the database was closed under the checkpointer, as
    /// when a command exits) is not reported as a broken chain, and nothing is signed.
    #[tokio::test]
    async fn an_unreadable_log_is_no_verdict_on_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        let keys = ChainKeys::of(&MasterKey::generate(), None).unwrap();
        store.close().await;
        assert!(matches!(
            verified_tail(&store, &keys, None).await,
            Err(TailError::Unreadable(_))
        ));
        let path = dir.path().join("checkpoints.log");
        assert_eq!(
            sign_tail(&store, &keys, &path, at(3, "m")).await,
            at(3, "m")
        );
        assert!(!path.exists(), "nothing signed");
    }

    #[test]
    fn vouches_only_for_its_own_unbroken_stretch() {
        let own = Segment {
            start: at(10, "a"),
            end: at(20, "b"),
        };
        // Signed at the start of the stretch (same MAC) or inside it: the end can be signed.
        assert_eq!(own_stretch(at(10, "a").as_ref(), &own), at(20, "b"));
        assert_eq!(own_stretch(at(15, "x").as_ref(), &own), at(20, "b"));
        // The start's MAC differs from what was signed: read the chain back instead.
        assert_eq!(own_stretch(at(10, "z").as_ref(), &own), None);
        // Signed before the stretch began (someone else appended in between), or nothing new.
        assert_eq!(own_stretch(at(9, "q").as_ref(), &own), None);
        assert_eq!(own_stretch(at(20, "b").as_ref(), &own), None);
        assert_eq!(own_stretch(None, &own), None);
    }

    #[test]
    fn retired_keys_check_only_the_entries_they_made() {
        let old_master = MasterKey::generate();
        let new_master = MasterKey::generate();
        let old = ChainKeys::of(&old_master, None).unwrap();
        let retired = old.retire(Some(10), &new_master);
        assert!(
            ChainKeys::of(&old_master, Some(&retired)).is_err(),
            "wrapped under the new key"
        );
        let new = ChainKeys::of(&new_master, Some(&retired)).unwrap();
        let entry = |seq| AuditRow {
            seq,
            actor: "system".into(),
            action: "read".into(),
            outcome: "success".into(),
            ..Default::default()
        };
        // Entries up to 10 are checked with the old MAC key, later ones with the new.
        assert_eq!(new.mac("p", &entry(10)), old.mac("p", &entry(10)));
        assert_ne!(new.mac("p", &entry(11)), old.mac("p", &entry(11)));
        // The old checkpoint key vouches for entries up to 10 only; the new one for any.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mac = "ab".repeat(32);
        let old_line = old.checkpoint_line(10, &mac, 1);
        let new_line = new.checkpoint_line(5, &mac, 2);
        std::fs::write(&path, [old_line.as_str(), new_line.as_str()].concat()).unwrap();
        assert_eq!(read_checkpoints(&path, &new).unwrap().len(), 2);
        std::fs::write(&path, old.checkpoint_line(11, &mac, 3)).unwrap();
        assert!(read_checkpoints(&path, &new).is_err());
        // Retiring again keeps the older keys.
        let newest_master = MasterKey::generate();
        let again =
            ChainKeys::of(&newest_master, Some(&new.retire(Some(20), &newest_master))).unwrap();
        assert_eq!(again.mac("p", &entry(3)), old.mac("p", &entry(3)));
        assert_eq!(again.mac("p", &entry(15)), new.mac("p", &entry(15)));
        assert_ne!(again.mac("p", &entry(21)), new.mac("p", &entry(21)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn keys() -> ChainKeys {
            ChainKeys::of(&MasterKey::generate(), None).expect("keys")
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Whatever the checkpoint file holds, reading it never panics.
            #[test]
            fn arbitrary_checkpoint_files_are_read_safely(text in "(ironchart-audit-checkpoint-v1 |[0-9a-f ]{1,20}|.{0,30}|\n){0,8}") {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("c.log");
                std::fs::write(&path, &text).expect("write");
                let _ = read_checkpoints(&path, &keys());
            }

            /// A signed line with any one character changed is refused, never taken.
            #[test]
            fn a_changed_checkpoint_is_refused(seq in 1i64..1_000_000, at in any::<prop::sample::Index>(), to in "[0-9a-z ]") {
                let keys = keys();
                let line = keys.checkpoint_line(seq, &"ab".repeat(32), 1_700_000_000_000);
                let mut chars: Vec<char> = line.trim_end().chars().collect();
                let i = at.index(chars.len());
                let new = to.chars().next().expect("one char");
                prop_assume!(chars[i] != new);
                chars[i] = new;
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("c.log");
                std::fs::write(&path, format!("{}\n", chars.iter().collect::<String>())).expect("write");
                prop_assert!(read_checkpoints(&path, &keys).is_err());
                std::fs::write(&path, &line).expect("write");
                prop_assert_eq!(read_checkpoints(&path, &keys).expect("the signed line").len(), 1);
            }
        }
    }
}
