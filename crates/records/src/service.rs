//! The records service: policy, audit, encryption, validation, versioning and indexing, around
//! the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironchart_fhir::extract::{IndexEntry, IndexValue, extract};
use ironchart_fhir::search::{ParamRef, SearchQuery};
use ironchart_security::keyring::MasterKey;
use ironchart_security::scope::Interaction;
use ironchart_store::{
    Cursor, HistoryScope, NewVersion, Store, StoreError, StoredVersion, VersionHead, Visibility,
    WriteTx,
};
use serde_json::{Map, Value};
use tracing::instrument;

use crate::actor::{Actor, LocalOperator};
use crate::audit::{AuditAction, AuditEntry, ChainKeys, Outcome};
use crate::journal::AuditWriter;
use crate::keys::Keys;
use crate::policy::{self, Hidden};
use crate::resource::{HistoryPage, Resource, ResourcePage, WriteOutcome};
use crate::{RecordsError, Result};

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, and optionally a schema to use (created if missing).
    Postgres { url: String, schema: Option<String> },
}

/// The secrets and files the one door needs besides the database.
pub struct SecurityConfig {
    /// The master key the data keys and the audit chain's keys are derived from.
    pub master_key: MasterKey,
    /// Where signed audit checkpoints are appended (outside the database); none to skip them.
    pub checkpoint_file: Option<PathBuf>,
    /// The directory of the audit journals (the data directory): where each process's audit
    /// entries are written before they are moved into the database (see `journal.rs`).
    pub journal_dir: PathBuf,
    /// Whether a read or search also waits until its audit entry is on the disk before it is
    /// answered. Without it the entry is written before the answer and flushed to the disk
    /// within 10 ms; every other entry always waits for the disk.
    pub sync_reads: bool,
}

/// How many times a write is retried when a concurrent writer got there first.
const WRITE_RETRIES: usize = 20;

/// How long a checked token (or a user's break-the-glass grants) is remembered before the
/// database is asked again. Revocations in this process take effect at once; in another process
/// within this time.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most entries a cache holds at once.
pub(crate) const CACHE_MAX: usize = 10_000;

pub(crate) type Cache<V> =
    Arc<std::sync::Mutex<std::collections::HashMap<String, (V, std::time::Instant)>>>;

/// The records service. Cheap to clone (one shared pointer); share one per process.
#[derive(Clone)]
pub struct Records {
    pub(crate) shared: Arc<Shared>,
    pub(crate) session_policy: crate::signin::SessionPolicy,
    /// The largest resource (other than a Binary) a write may store, in bytes of JSON.
    pub(crate) resource_limit: usize,
}

/// The default of [`Records::with_resource_limit`]: 4 MiB.
pub const DEFAULT_RESOURCE_LIMIT: usize = 4 * 1024 * 1024;
/// Most search-index values one resource may have (a `413` beyond): each is a row written while
/// the writer is held.
pub const MAX_INDEX_VALUES: usize = 10_000;

/// What every clone of a [`Records`] shares (nothing of it is public).
pub struct Shared {
    pub(crate) store: Store,
    /// Recently checked tokens by hash (never the token itself).
    pub(crate) tokens: Cache<Actor>,
    /// Break-the-glass grants by user id.
    pub(crate) grants: Cache<Vec<String>>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) chain: Arc<ChainKeys>,
    pub(crate) audit_writer: AuditWriter,
    /// See [`SecurityConfig::sync_reads`].
    pub(crate) sync_reads: bool,
    pub(crate) checkpoints: Option<PathBuf>,
    /// The public base URL of this server's FHIR API: an absolute reference on it is a local
    /// one (see [`Records::set_base_url`]).
    pub(crate) base: std::sync::OnceLock<String>,
    /// Woken when `base` is set (the background reindex waits for it).
    pub(crate) base_known: tokio::sync::Notify,
}

impl std::ops::Deref for Records {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The outcome of importing one resource: its type and id.
pub type ImportOutcome = Result<(String, String)>;

/// Resources validated for an import, not yet written ([`Records::prepare_import`]).
pub struct PreparedBatch(Vec<Prepared>);

impl PreparedBatch {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds another batch's resources after this one's.
    pub fn append(&mut self, other: PreparedBatch) {
        self.0.extend(other.0);
    }

    /// The batch cut into consecutive batches of `lens` resources (what is left over is
    /// dropped).
    pub fn split(self, lens: &[usize]) -> Vec<PreparedBatch> {
        let mut rest = self.0.into_iter();
        lens.iter()
            .map(|&n| PreparedBatch(rest.by_ref().take(n).collect()))
            .collect()
    }

    /// The first resource that cannot be imported: its position and why.
    pub fn first_error(&self) -> Option<(usize, &RecordsError)> {
        self.0
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.as_ref().err().map(|e| (i, e)))
    }
}

/// What a write needs besides the transaction: who writes, what they may see, the keys.
pub(crate) struct WriteCtx<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) vis: Visibility,
    pub(crate) keys: &'a Keys,
    pub(crate) base: Option<&'a str>,
}

/// The setting that says the demo data was seeded, and with how many patients.
const DEMO_SEEDED: &str = "demo.seeded";

impl Records {
    /// [`Records::open`] for a command the operator runs on their own data directory, with
    /// their master key: also hands out the [`LocalOperator`] to act as. What serves requests
    /// is given an open `Records`, never the configuration that opens one, so it cannot.
    pub async fn open_local(
        config: &DatabaseConfig,
        security: SecurityConfig,
    ) -> Result<(Records, LocalOperator)> {
        Ok((Records::open(config, security).await?, LocalOperator::new()))
    }

    /// Opens the database (creating and migrating the schema as needed), checks the master key
    /// against it, and starts the audit writer. Must run inside a Tokio runtime.
    pub async fn open(config: &DatabaseConfig, security: SecurityConfig) -> Result<Records> {
        let store = match config {
            DatabaseConfig::Sqlite(path) => Store::open_sqlite(path).await?,
            DatabaseConfig::Postgres { url, schema } => {
                Store::open_postgres(url, schema.as_deref()).await?
            }
        };
        let keys = Arc::new(Keys::load(&store, security.master_key).await?);
        let retired = store.setting(crate::audit::RETIRED_KEYS).await?;
        let chain = Arc::new(ChainKeys::of(keys.master(), retired.as_deref())?);
        // What processes that are gone left in their journals goes first.
        let recovered = crate::journal::recover(&security.journal_dir, &store, &chain).await?;
        if recovered > 0 {
            tracing::info!(
                entries = recovered,
                "moved the audit journal of a process that stopped into the log"
            );
        }
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let segment = crate::audit::SharedSegment::default();
        let audit_writer = AuditWriter::start(
            &security.journal_dir,
            store.clone(),
            chain.clone(),
            segment.clone(),
            appended.clone(),
        )?;
        crate::audit::start_upkeep(
            store.clone(),
            chain.clone(),
            security.checkpoint_file.clone(),
            appended,
            segment,
        );
        let records = Records {
            shared: Arc::new(Shared {
                store,
                tokens: Cache::default(),
                grants: Cache::default(),
                keys,
                chain,
                audit_writer,
                sync_reads: security.sync_reads,
                checkpoints: security.checkpoint_file,
                base: std::sync::OnceLock::new(),
                base_known: tokio::sync::Notify::new(),
            }),
            session_policy: crate::signin::SessionPolicy::default(),
            resource_limit: DEFAULT_RESOURCE_LIMIT,
        };
        if records.store.setting("keys.sealed").await?.is_none() {
            // A database from before encryption at rest: seal what it holds, once.
            let sealed = records.reseal(true, &|_, _| {}).await?;
            if sealed > 0 {
                tracing::info!(sealed, "sealed the bodies of an unencrypted database");
            }
            records.store.set_setting("keys.sealed", "1").await?;
        }
        records.start_reindex_if_needed().await?;
        Ok(records)
    }

    /// Sets the largest resource (other than a Binary) a write may store, in bytes of JSON
    /// (before the service is shared). Larger ones are refused with [`RecordsError::TooLarge`].
    pub fn with_resource_limit(mut self, bytes: usize) -> Records {
        self.resource_limit = bytes;
        self
    }

    /// Tells the service its public FHIR base URL (`https://emr.example.org/fhir`), once: an
    /// absolute reference on it is then the local resource (R4 3.1.1.4.12), and one on any other
    /// server is no local resource, for search, includes, chains and the patient compartment.
    pub fn set_base_url(&self, base: &str) {
        if self
            .base
            .set(base.trim_end_matches('/').to_string())
            .is_ok()
        {
            self.base_known.notify_waiters();
        }
    }

    pub(crate) fn base_url(&self) -> Option<&str> {
        self.base.get().map(String::as_str)
    }

    /// Sets how long a read, search, count or history query may run before the database stops
    /// it (default [`ironchart_store::DEFAULT_QUERY_TIMEOUT`]); a stopped query is an error for
    /// which `StoreError::is_timeout` holds.
    pub fn with_query_timeout(self, timeout: Duration) -> Records {
        self.store.set_query_timeout(timeout);
        self
    }

    pub fn backend(&self) -> ironchart_store::Backend {
        self.store.backend()
    }

    /// Indexes the newest audit entries by patient, writes a final audit checkpoint and closes
    /// the database.
    pub async fn close(&self) {
        self.shut_down(true).await
    }

    async fn shut_down(&self, checkpoint: bool) {
        if let Err(e) = self.audit_writer.close().await {
            tracing::warn!("cannot move the audit journal into the log: {e}");
        }
        if let Err(e) = self.store.index_audit_patients().await {
            tracing::warn!("cannot index the newest audit entries: {e}");
        }
        if checkpoint && let Err(e) = self.checkpoint().await {
            tracing::warn!("cannot write the final audit checkpoint: {e}");
        }
        self.store.close().await;
    }

    /// How many patients the demo data was seeded with, if it was.
    pub async fn demo_seeded(&self) -> Result<Option<u64>> {
        Ok(self
            .store
            .setting(DEMO_SEEDED)
            .await?
            .and_then(|v| v.parse().ok()))
    }

    /// Records that the demo data was seeded (with `patients` patients): the operator's, and
    /// audited.
    pub async fn mark_demo_seeded(&self, by: &LocalOperator, patients: u64) -> Result<()> {
        self.store
            .set_setting(DEMO_SEEDED, &patients.to_string())
            .await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::Config, Outcome::Success)
                    .detail(format!("demo data seeded: {patients} patients")),
            ],
        )
        .await
    }

    // ----- reading what is stored -----

    /// A stored version as handed out: its body opened.
    pub(crate) async fn reveal(&self, v: StoredVersion) -> Result<Resource> {
        let json = match &v.body {
            Some(b) => Some(
                self.keys
                    .open(&self.store, &v.res_type, &v.res_id, v.version, b)
                    .await?,
            ),
            None => None,
        };
        Ok(Resource {
            resource_type: v.res_type,
            id: v.res_id,
            version: v.version,
            last_updated: v.last_updated,
            deleted: v.deleted,
            method: v.method,
            json,
        })
    }

    /// Stored versions as `actor` may see them: opened, then redacted for its role.
    async fn reveal_all(
        &self,
        actor: &Actor,
        versions: Vec<StoredVersion>,
    ) -> Result<Vec<Resource>> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            out.push(policy::redact(actor, self.reveal(v).await?));
        }
        Ok(out)
    }

    /// What `actor` may see, with its current break-the-glass grants.
    pub(crate) async fn visibility(&self, actor: &Actor) -> Result<Visibility> {
        let grants = match actor.user_id() {
            Some(id) if actor.roles.iter().any(|r| r.can_break_glass()) => {
                self.grants_of(id).await?
            }
            _ => Vec::new(),
        };
        Ok(policy::visibility(actor, &grants))
    }

    /// What a write by `actor` needs: what they may see and the current data keys.
    pub(crate) async fn write_ctx<'a>(&'a self, actor: &'a Actor) -> Result<WriteCtx<'a>> {
        let vis = self.visibility(actor).await?;
        self.keys.refresh(&self.store, false).await?;
        Ok(WriteCtx {
            actor,
            vis,
            keys: &self.keys,
            base: self.base_url(),
        })
    }

    async fn grants_of(&self, user_id: i64) -> Result<Vec<String>> {
        let key = user_id.to_string();
        if let Ok(cache) = self.grants.lock()
            && let Some((g, at)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(g.clone());
        }
        let grants = self.store.granted_patients(user_id, now_millis()).await?;
        if let Ok(mut cache) = self.grants.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (grants.clone(), std::time::Instant::now()));
        }
        Ok(grants)
    }

    // ----- audit -----

    /// Waits until every audit entry acknowledged so far is in the database (readers of the log
    /// call it first, so that they see everything).
    pub async fn flush_audit(&self) -> Result<()> {
        self.audit_writer.flush().await
    }

    /// Appends entries to the audit log (its journal) before it returns; security events and
    /// writes wait until they are on the disk, reads and searches only with `sync_reads`.
    pub(crate) async fn audit(&self, actor: &Actor, entries: Vec<AuditEntry>) -> Result<()> {
        let durable = self.sync_reads || entries.iter().any(|e| !e.action.is_read());
        let rows = crate::audit::rows_of(actor, entries, now_millis());
        self.audit_writer.append(rows, durable).await
    }

    /// Appends entries inside a write transaction (they commit with it).
    pub(crate) async fn audit_in(
        &self,
        tx: &mut WriteTx,
        actor: &Actor,
        entries: Vec<AuditEntry>,
    ) -> Result<()> {
        let rows = crate::audit::rows_of(actor, entries, now_millis());
        crate::audit::append_in(tx, &self.chain, rows).await
    }

    /// Audits a request's outcome, then returns it. When the entry cannot be written the
    /// request fails.
    async fn audited<T>(
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

    // ----- reads -----

    /// The current version of a resource; deleted resources are [`RecordsError::Gone`].
    #[instrument(skip_all, fields(resource_type = resource_type))]
    pub async fn read(&self, actor: &Actor, resource_type: &str, id: &str) -> Result<Resource> {
        let mut patient = None;
        let result = self
            .read_inner(actor, resource_type, id, None, &mut patient)
            .await;
        let hidden = hidden_by_policy(&result, &patient);
        self.audited(actor, result, |outcome, r| {
            AuditEntry::new(
                AuditAction::Read,
                if hidden { Outcome::Denied } else { outcome },
            )
            .resource(resource_type, id, r.map(|r| r.version))
            .patients(patient)
        })
        .await
    }

    /// A specific version of a resource.
    pub async fn vread(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Resource> {
        let mut patient = None;
        let result = match version.parse::<i64>() {
            Ok(v) => {
                self.read_inner(actor, resource_type, id, Some(v), &mut patient)
                    .await
            }
            Err(_) => Err(RecordsError::NotFound(
                resource_type.into(),
                [id, "/_history/", version].concat(),
            )),
        };
        let hidden = hidden_by_policy(&result, &patient);
        self.audited(actor, result, |outcome, _| {
            AuditEntry::new(
                AuditAction::Vread,
                if hidden { Outcome::Denied } else { outcome },
            )
            .resource(resource_type, id, version.parse().ok())
            .patients(patient)
        })
        .await
    }

    async fn read_inner(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
        patient: &mut Option<String>,
    ) -> Result<Resource> {
        check_type(resource_type)?;
        policy::check(actor, resource_type, Interaction::Read)?;
        let not_found = || match version {
            None => RecordsError::NotFound(resource_type.into(), id.into()),
            Some(v) => RecordsError::NotFound(resource_type.into(), format!("{id}/_history/{v}")),
        };
        if !ironchart_fhir::is_valid_id(id) {
            return Err(not_found());
        }
        let stored = match version {
            None => self.store.read(resource_type, id).await?,
            Some(v) => self.store.vread(resource_type, id, v).await?,
        };
        let Some(v) = stored else {
            return Err(not_found());
        };
        patient.clone_from(&v.patient);
        let vis = self.visibility(actor).await?;
        match policy::hidden(actor, &vis, &v) {
            Some(Hidden::NotThere) => return Err(not_found()),
            Some(Hidden::Restricted) => {
                return Err(RecordsError::Restricted(v.patient.unwrap_or_default()));
            }
            None => {}
        }
        if v.deleted {
            return Err(RecordsError::Gone(resource_type.into(), id.into()));
        }
        Ok(policy::redact(actor, self.reveal(v).await?))
    }

    /// Runs a search; `cursor` continues from a previous page.
    #[instrument(skip_all, fields(resource_type = %query.resource_type))]
    pub async fn search(
        &self,
        actor: &Actor,
        query: &SearchQuery,
        cursor: Option<&str>,
    ) -> Result<ResourcePage> {
        // The patients a search names are what its answer is about, even when it finds
        // nothing ("does this patient have that condition?" answered by a count of 0).
        let mut patients = named_patients(query);
        let result = self.search_inner(actor, query, cursor, &mut patients).await;
        self.audited(actor, result, |outcome, page| {
            let mut detail = search_detail(query);
            if let Some(p) = page {
                detail.push_str(&format!("; {} found", p.matches.len()));
                if let Some(total) = p.total {
                    detail.push_str(&format!("; total {total}"));
                }
            }
            AuditEntry::new(AuditAction::Search, outcome)
                .res_type(&query.resource_type)
                .patients(patients)
                .detail(detail)
        })
        .await
    }

    async fn search_inner(
        &self,
        actor: &Actor,
        query: &SearchQuery,
        cursor: Option<&str>,
        patients: &mut Vec<String>,
    ) -> Result<ResourcePage> {
        policy::check(actor, &query.resource_type, Interaction::Search)?;
        policy::check_search(actor, query)?;
        // A reference given as an absolute URL on our own base means the local resource.
        let localized = self.base_url().and_then(|b| localize_query(query, b));
        let query = localized.as_ref().unwrap_or(query);
        let vis = self.visibility(actor).await?;
        // Confined to one compartment, an answer can tell nothing about anyone else.
        if let Some(c) = &vis.compartment {
            patients.retain(|p| *p == c.patient);
        }
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let page = self.store.search(query, cursor.as_ref(), &vis).await?;
        patients.extend(
            page.matches
                .iter()
                .chain(&page.included)
                .filter_map(|v| v.patient.clone()),
        );
        // A count or total covers matches the page does not show: the patients of all of them
        // are what the number is about.
        if page
            .total
            .is_some_and(|t| t > 0 && t as usize > page.matches.len())
        {
            match page.counted_patients {
                // Found as the matches were counted.
                Some(counted) => patients.extend(
                    counted
                        .into_iter()
                        .take(crate::audit::MAX_AUDITED_PATIENTS + 1),
                ),
                None => patients.extend(
                    self.store
                        .match_patients(query, &vis, crate::audit::MAX_AUDITED_PATIENTS + 1)
                        .await?,
                ),
            }
        }
        Ok(ResourcePage {
            matches: self.reveal_all(actor, page.matches).await?,
            included: self.reveal_all(actor, page.included).await?,
            next: page.next.map(|c| c.encode()),
            previous: page.previous.map(|c| c.encode()),
            total: page.total,
        })
    }

    /// History, newest first. `since` in ms; `cursor` continues a previous page.
    pub async fn history(
        &self,
        actor: &Actor,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
    ) -> Result<HistoryPage> {
        let mut patients = Vec::new();
        let result = self
            .history_inner(actor, scope, since, count, cursor, &mut patients)
            .await;
        self.audited(actor, result, |outcome, _| {
            let entry = AuditEntry::new(AuditAction::History, outcome).patients(patients);
            match scope {
                HistoryScope::System => entry,
                HistoryScope::Type(t) => entry.res_type(t),
                HistoryScope::Instance(t, id) => entry.resource(t, id, None),
            }
        })
        .await
    }

    async fn history_inner(
        &self,
        actor: &Actor,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
        patients: &mut Vec<String>,
    ) -> Result<HistoryPage> {
        let vis = self.visibility(actor).await?;
        match scope {
            HistoryScope::System => {
                // Restricted, inside the query, to the types the actor may read.
                policy::live(actor)?;
            }
            HistoryScope::Type(t) => {
                check_type(t)?;
                policy::check(actor, t, Interaction::Read)?;
            }
            HistoryScope::Instance(t, id) => {
                check_type(t)?;
                policy::check(actor, t, Interaction::Read)?;
                let current = if ironchart_fhir::is_valid_id(id) {
                    self.store.read(t, id).await?
                } else {
                    None
                };
                match current {
                    None => return Err(RecordsError::NotFound(t.clone(), id.clone())),
                    Some(v) => match policy::hidden(actor, &vis, &v) {
                        Some(Hidden::NotThere) => {
                            return Err(RecordsError::NotFound(t.clone(), id.clone()));
                        }
                        Some(Hidden::Restricted) => {
                            return Err(RecordsError::Restricted(v.patient.unwrap_or_default()));
                        }
                        None => {}
                    },
                }
            }
        }
        let after = cursor.map(decode_history_cursor).transpose()?;
        let mut rows = self
            .store
            .history(scope, since, after, count.saturating_add(1), &vis)
            .await?;
        let mut more = rows.len() > count;
        rows.truncate(count);
        // A page of large versions ends where their bodies reach the byte bound.
        let within = ironchart_store::within_bytes(rows.iter(), ironchart_store::MAX_PAGE_BYTES);
        if within < rows.len() {
            rows.truncate(within);
            more = true;
        }
        let next = if more {
            rows.last()
                .map(|v| encode_history_cursor(v.last_updated, v.rid, v.version))
        } else {
            None
        };
        let total = if cursor.is_none() && !more {
            Some(rows.len() as i64)
        } else {
            Some(self.store.history_count(scope, since, &vis).await?)
        };
        patients.extend(rows.iter().filter_map(|v| v.patient.clone()));
        Ok(HistoryPage {
            entries: self.reveal_all(actor, rows).await?,
            next,
            total,
        })
    }

    // ----- writes -----

    /// Creates a resource with a server-assigned id. With `if_none_exist`, a conditional create:
    /// one existing match is returned instead (not created), several are a 412.
    #[instrument(skip_all)]
    pub async fn create(
        &self,
        actor: &Actor,
        resource_type: &str,
        value: Value,
        if_none_exist: Option<&SearchQuery>,
    ) -> Result<WriteOutcome> {
        let result = self
            .create_inner(actor, resource_type, value, if_none_exist)
            .await;
        self.audit_refusal(actor, AuditAction::Create, resource_type, None, result)
            .await
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        resource_type: &str,
        value: Value,
        if_none_exist: Option<&SearchQuery>,
    ) -> Result<WriteOutcome> {
        check_writable(resource_type)?;
        policy::check(actor, resource_type, Interaction::Create)?;
        let value = prepare(resource_type, value, None, self.resource_limit)?;
        let ctx = &self.write_ctx(actor).await?;
        let existing = self
            .retrying(|mut tx| {
                let value = value.clone();
                async move {
                    if let Some(q) = if_none_exist
                        && let Some(existing) = conditional_match(&mut tx, q, &ctx.vis).await?
                    {
                        tx.rollback().await?;
                        return Ok(Err(existing));
                    }
                    let id = new_id();
                    let (outcome, entry) =
                        write_version(&mut tx, ctx, resource_type, &id, value, None, "POST")
                            .await?;
                    self.audit_in(&mut tx, actor, vec![entry]).await?;
                    tx.commit().await?;
                    Ok(Ok(outcome))
                }
            })
            .await?;
        match existing {
            Ok(outcome) => Ok(outcome),
            Err(existing_id) => {
                let resource = self.read(actor, resource_type, &existing_id).await?;
                Ok(WriteOutcome {
                    resource,
                    created: false,
                })
            }
        }
    }

    /// Audits a write that failed before its transaction could (refused, invalid …); a
    /// successful write was audited inside its transaction.
    async fn audit_refusal<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        resource_type: &str,
        id: Option<&str>,
        result: Result<T>,
    ) -> Result<T> {
        if let Err(e) = &result {
            let outcome = if e.is_denial() {
                Outcome::Denied
            } else {
                Outcome::Failure
            };
            let entry = match id {
                Some(id) => AuditEntry::new(action, outcome).resource(resource_type, id, None),
                None => AuditEntry::new(action, outcome).res_type(resource_type),
            }
            .patients(e.patients());
            self.audit(actor, vec![entry]).await?;
        }
        result
    }

    /// Updates (or, for a client-chosen id, creates) a resource. `if_match` is the version the
    /// client last saw; a different current version is a 412.
    #[instrument(skip_all)]
    pub async fn update(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        let result = self
            .update_inner(actor, resource_type, id, value, if_match)
            .await;
        self.audit_refusal(actor, AuditAction::Update, resource_type, Some(id), result)
            .await
    }

    async fn update_inner(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        check_writable(resource_type)?;
        policy::check(actor, resource_type, Interaction::Update)?;
        if !ironchart_fhir::is_valid_id(id) {
            return Err(RecordsError::bad(
                format!("'{id}' is not a valid resource id"),
                None,
            ));
        }
        let value = prepare(resource_type, value, Some(id), self.resource_limit)?;
        let ctx = &self.write_ctx(actor).await?;
        let result = self
            .retrying(|mut tx| {
                let value = value.clone();
                async move {
                    let (outcome, entry) =
                        write_version(&mut tx, ctx, resource_type, id, value, if_match, "PUT")
                            .await?;
                    if outcome.created {
                        // Update-as-create needs the right to create.
                        policy::check(actor, resource_type, Interaction::Create)?;
                    }
                    self.audit_in(&mut tx, actor, vec![entry]).await?;
                    tx.commit().await?;
                    Ok(outcome)
                }
            })
            .await;
        match result {
            Err(RecordsError::Conflict(_)) if if_match.is_some() => Err(
                RecordsError::PreconditionFailed("the resource was changed by someone else".into()),
            ),
            other => other,
        }
    }

    /// Deletes a resource (a new, deleted version). Deleting what does not exist is not an
    /// error (delete is idempotent).
    #[instrument(skip_all)]
    pub async fn delete(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<i64>> {
        let result = self.delete_inner(actor, resource_type, id).await;
        self.audit_refusal(actor, AuditAction::Delete, resource_type, Some(id), result)
            .await
    }

    async fn delete_inner(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<i64>> {
        check_writable(resource_type)?;
        policy::check(actor, resource_type, Interaction::Delete)?;
        if !ironchart_fhir::is_valid_id(id) {
            return Ok(None);
        }
        let ctx = &self.write_ctx(actor).await?;
        self.retrying(|mut tx| async move {
            let (version, entry) = delete_in(&mut tx, ctx, resource_type, id).await?;
            if let Some(entry) = entry {
                self.audit_in(&mut tx, actor, vec![entry]).await?;
            }
            tx.commit().await?;
            Ok(version)
        })
        .await
    }

    /// Imports resources in one transaction: with an id, an upsert; without, a create. Each
    /// resource gets its own outcome; an invalid resource does not stop the others.
    pub async fn import(&self, actor: &Actor, resources: Vec<Value>) -> Result<Vec<ImportOutcome>> {
        let batch = self.prepare_import(resources).await;
        self.import_prepared(actor, batch).await
    }

    /// Bulk mode for large imports (see `Store::set_bulk_mode`): on before, off after; turning
    /// it off makes everything imported durable.
    pub async fn set_bulk_mode(&self, on: bool) -> Result<()> {
        Ok(self.store.set_bulk_mode(on).await?)
    }

    /// The CPU half of an import: validates and seals resources on all cores, touching no
    /// data. A caller can prepare the next batch while the previous one is being written.
    pub async fn prepare_import(&self, resources: Vec<Value>) -> PreparedBatch {
        PreparedBatch(
            prepare_all(
                resources,
                self.keys.clone(),
                self.resource_limit,
                self.base_url().map(Arc::from),
            )
            .await,
        )
    }

    /// The database half of an import: writes a prepared batch in one transaction. Importing
    /// replaces whatever is stored under the same ids, so it is for the system actor only.
    pub async fn import_prepared(
        &self,
        actor: &Actor,
        batch: PreparedBatch,
    ) -> Result<Vec<ImportOutcome>> {
        if !actor.is_system() {
            let refused = Err(RecordsError::Forbidden(
                "importing is for the operator (the system token or the command line)".into(),
            ));
            return self
                .audit_refusal(actor, AuditAction::Import, "Bundle", None, refused)
                .await;
        }
        policy::check(actor, "*", Interaction::Create)?;
        let prepared = &batch.0;
        let keys = &self.keys;
        self.retrying(|mut tx| async move {
            let (outcomes, patients) = import_in(&mut tx, prepared, keys, &self.store).await?;
            let written = outcomes.iter().filter(|o| o.is_ok()).count();
            let entry = AuditEntry::new(AuditAction::Import, Outcome::Success)
                .patients(patients)
                .detail(format!("{written} resources"));
            self.audit_in(&mut tx, actor, vec![entry]).await?;
            tx.commit().await?;
            Ok(outcomes)
        })
        .await
    }

    /// Re-seals every stored body not sealed under the current data key; `plaintext` also
    /// accepts unsealed bodies (a database from before encryption). Returns how many were
    /// re-sealed; `progress(done, resealed)` is called after each batch.
    pub(crate) async fn reseal(
        &self,
        plaintext: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<u64> {
        const BATCH: usize = 500;
        let mut after = (0i64, 0i64);
        let mut done = 0u64;
        let mut resealed = 0u64;
        loop {
            let bodies = self.store.bodies_after(after, BATCH).await?;
            let Some(last) = bodies.last() else { break };
            after = (last.rid, last.version);
            let mut changes = Vec::new();
            for b in &bodies {
                if self.keys.generation_is_current(&b.body) {
                    continue;
                }
                let plain = if plaintext && b.body.first() == Some(&b'{') {
                    b.body.clone()
                } else {
                    self.keys
                        .open(&self.store, &b.res_type, &b.res_id, b.version, &b.body)
                        .await?
                };
                changes.push((
                    b.rid,
                    b.version,
                    self.keys.seal(&b.res_type, &b.res_id, b.version, &plain),
                ));
            }
            if !changes.is_empty() {
                let changes = &changes;
                self.retrying(|mut tx| async move {
                    for (rid, version, body) in changes {
                        tx.replace_body(*rid, *version, body.clone()).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await?;
            }
            done += bodies.len() as u64;
            resealed += changes.len() as u64;
            progress(done, resealed);
        }
        Ok(resealed)
    }

    /// `ironchart keys rotate`: adds a data-key generation, waits until every running process
    /// seals with it, then re-seals every stored body (and every sealed secret) under it, in
    /// batches, while the system stays online. Returns the new generation and how many bodies
    /// were re-sealed.
    pub async fn rotate_keys(
        &self,
        by: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(u32, u64)> {
        if !by.is_system() {
            return Err(RecordsError::Forbidden(
                "rotating keys is for the operator".into(),
            ));
        }
        let generation = self.keys.add_generation(&self.store).await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::KeyRotate, Outcome::Success)
                    .detail(format!("data key generation {generation} is current")),
            ],
        )
        .await?;
        let total = self.reseal_all(by, progress).await?;
        Ok((generation, total))
    }

    /// Re-seals every stored body and sealed secret under the current data key, online, then
    /// deletes the wrapped keys of a replaced master key (nothing needs them any more). Waits
    /// first until every running process has read the current generation. Returns how many
    /// bodies were re-sealed. Also finishes a master-key replacement that was interrupted.
    pub async fn reseal_all(
        &self,
        by: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<u64> {
        if !by.is_system() {
            return Err(RecordsError::Forbidden(
                "re-sealing is for the operator".into(),
            ));
        }
        // Other processes read the current generation again within REFRESH.
        tokio::time::sleep(crate::keys::REFRESH + Duration::from_secs(1)).await;
        let mut total = 0;
        loop {
            let n = self.reseal(false, progress).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        let secrets = self.reseal_user_secrets().await?;
        let deleted = self.keys.delete_wrapped(&self.store).await?;
        let generation = self.keys.current_generation();
        let mut detail =
            format!("re-sealed {total} bodies and {secrets} secrets under generation {generation}");
        if deleted > 0 {
            detail.push_str(&format!(
                "; deleted the {deleted} data keys of the replaced master key"
            ));
        }
        self.audit(
            by,
            vec![AuditEntry::new(AuditAction::KeyRotate, Outcome::Success).detail(detail)],
        )
        .await?;
        Ok(total)
    }

    /// `ironchart keys rotate --new-master-key-file`, its first step: makes `new` the master
    /// key of the database opened with `config` and `current` (the master key in use). In one
    /// transaction, holding the audit chain's lock: the data keys in use are wrapped under
    /// `new`, a data-key generation derived from `new` becomes current, the audit chain's keys
    /// retire (kept wrapped under `new`, to check the entries they made) and the chain goes on
    /// under keys derived from `new`, starting with a `key-rotate` entry. From then on only
    /// `new` opens the database, and processes still running with the old key refuse to serve.
    /// Open the database with `new` and run [`Records::reseal_all`] next. Returns the new
    /// generation.
    pub async fn replace_master_key(
        config: &DatabaseConfig,
        current: SecurityConfig,
        new: MasterKey,
    ) -> Result<u32> {
        // Only the operator holds the master key in use (`current`), which opens the database:
        // the entry names them.
        let by = &Actor::local_operator();
        if new.check_value() == current.master_key.check_value() {
            return Err(RecordsError::Config(
                "the new master key is the one in use".into(),
            ));
        }
        // Opening moves what journals of stopped processes hold into the log; closing moves
        // this one's and signs a checkpoint of the chain under the keys that made it.
        let records = Records::open(config, current).await?;
        records.flush_audit().await?;
        let store = records.store.clone();
        let keys = records.keys.clone();
        let chain = records.chain.clone();
        records.checkpoint().await?;

        let mut tx = store.begin().await?;
        let tail = crate::audit::locked_tail(&mut tx, &chain).await?;
        let generation = keys.switch_master(&mut tx, &new).await?;
        let retired = chain.retire(tail.as_ref().map(|t| t.0), &new);
        tx.set_setting(crate::audit::RETIRED_KEYS, &retired).await?;
        let new_chain = ChainKeys::of(&new, Some(&retired))?;
        let rows = crate::audit::rows_of(
            by,
            vec![
                AuditEntry::new(AuditAction::KeyRotate, Outcome::Success).detail(format!(
                    "the master key was replaced; data key generation {generation} is current"
                )),
            ],
            now_millis(),
        );
        tx.audit_append(&crate::audit::chained(&new_chain, tail, rows))
            .await?;
        tx.commit().await?;
        // (Its keys sign no more checkpoints: the next process does, with the new ones.)
        records.shut_down(false).await;
        Ok(generation)
    }

    /// Re-seals users' TOTP secrets (and those of enrolments under way) under the current data
    /// key.
    async fn reseal_user_secrets(&self) -> Result<u64> {
        let mut n = 0;
        for user in self.store.users().await? {
            let Some(sealed) = &user.mfa_secret else {
                continue;
            };
            if self.keys.generation_is_current(sealed) {
                continue;
            }
            let secret = self.keys.open_secret("totp", user.user_id, sealed)?;
            let resealed = self.keys.seal_secret("totp", user.user_id, &secret);
            let mut tx = self.store.begin().await?;
            if let Some(mut current) = tx.user_by_id(user.user_id).await?
                && current.mfa_secret.as_ref() == Some(sealed)
            {
                current.mfa_secret = Some(resealed);
                tx.save_user(&current).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        // Authenticator secrets shown for enrolment, not confirmed yet.
        for session in self.store.pending_enrolments().await? {
            let Some(sealed) = &session.pending_secret else {
                continue;
            };
            if self.keys.generation_is_current(sealed) {
                continue;
            }
            let row = crate::signin::hash_row(&session.session_hash);
            let secret = self.keys.open_secret("totp-pending", row, sealed)?;
            let resealed = self.keys.seal_secret("totp-pending", row, &secret);
            let mut tx = self.store.begin().await?;
            if let Some(mut current) = tx.session(&session.session_hash).await?
                && current.pending_secret.as_ref() == Some(sealed)
            {
                current.pending_secret = Some(resealed);
                tx.update_session(&current).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    /// Runs `op` in a fresh transaction, again when a concurrent writer made it conflict.
    pub(crate) async fn retrying<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(WriteTx) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let tx = self.store.begin().await?;
            match op(tx).await {
                Err(RecordsError::Store(e)) if e.is_conflict() && attempt < WRITE_RETRIES => {}
                Err(RecordsError::Conflict(_)) if attempt < WRITE_RETRIES => {}
                other => return other,
            }
            attempt += 1;
            let jitter =
                rand::Rng::gen_range(&mut rand::thread_rng(), 0..=(2u64 << attempt.min(6)));
            tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
        }
    }
}

/// Whether a read failed because policy hid an existing resource (answered as not found, but
/// audited as denied).
fn hidden_by_policy<T>(result: &Result<T>, patient: &Option<String>) -> bool {
    matches!(result, Err(RecordsError::NotFound(..))) && patient.is_some()
}

/// `query` with its absolute reference values on `base` made local (`Patient/1`); `None` when
/// it has none.
fn localize_query(query: &SearchQuery, base: &str) -> Option<SearchQuery> {
    use ironchart_fhir::search::{FilterTest, FilterValue};
    let local = |v: &FilterValue| match v {
        FilterValue::ReferenceUrl(u) => u
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(ironchart_fhir::extract::parse_reference)
            .filter(|p| p.base.is_none())
            .map(|p| FilterValue::Reference {
                target_type: Some(p.resource_type.to_string()),
                id: p.id.to_string(),
            }),
        _ => None,
    };
    let mentions = query.filters.iter().any(|f| match &f.test {
        FilterTest::AnyOf(vs) | FilterTest::NoneOf(vs) => vs.iter().any(|v| local(v).is_some()),
        _ => false,
    });
    if !mentions {
        return None;
    }
    let mut q = query.clone();
    for f in &mut q.filters {
        if let FilterTest::AnyOf(vs) | FilterTest::NoneOf(vs) = &mut f.test {
            for v in vs.iter_mut() {
                if let Some(l) = local(v) {
                    *v = l;
                }
            }
        }
    }
    Some(q)
}

/// The patients a search names: the ids of references to a Patient (`patient=X`,
/// `subject=Patient/X`, a bare id on a parameter that can point to a Patient) and `_id` of a
/// Patient search.
fn named_patients(query: &SearchQuery) -> Vec<String> {
    use ironchart_fhir::SearchParamKind;
    use ironchart_fhir::search::{FilterTest, FilterValue};
    let mut out = Vec::new();
    for filter in &query.filters {
        let FilterTest::AnyOf(values) = &filter.test else {
            continue;
        };
        let names_patients = match filter.param {
            ParamRef::Id => query.resource_type == "Patient",
            ParamRef::Indexed(def) => {
                def.kind == SearchParamKind::Reference && def.targets.contains(&"Patient")
            }
            ParamRef::LastUpdated => false,
        };
        if !names_patients {
            continue;
        }
        for value in values {
            match value {
                FilterValue::Id(id) => out.push(id.clone()),
                FilterValue::Reference { target_type, id }
                    if target_type.as_deref().is_none_or(|t| t == "Patient")
                        && ironchart_fhir::is_valid_id(id) =>
                {
                    out.push(id.clone())
                }
                _ => {}
            }
        }
    }
    out
}

/// The names of a search's parameters (never their values: those can be health data).
fn search_detail(query: &SearchQuery) -> String {
    let mut names: Vec<&str> = query
        .filters
        .iter()
        .map(|f| match f.param {
            ParamRef::Id => "_id",
            ParamRef::LastUpdated => "_lastUpdated",
            ParamRef::Indexed(def) => def.name,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    ["params=", &names.join(",")].concat()
}

fn clone_error(e: &RecordsError) -> RecordsError {
    match e {
        RecordsError::Invalid(issues) => RecordsError::Invalid(issues.clone()),
        RecordsError::UnknownType(t) => RecordsError::UnknownType(t.clone()),
        RecordsError::TooLarge(m) => RecordsError::TooLarge(m.clone()),
        RecordsError::BadRequest {
            message,
            expression,
        } => RecordsError::BadRequest {
            message: message.clone(),
            expression: expression.clone(),
        },
        other => RecordsError::bad(other.to_string(), None),
    }
}

/// Refuses writes of AuditEvent: that type is ironchart's own audit log, written by the server
/// alone (and read by auditors at `/fhir/AuditEvent`).
pub(crate) fn check_writable(resource_type: &str) -> Result<()> {
    check_type(resource_type)?;
    if resource_type == "AuditEvent" {
        return Err(RecordsError::Forbidden(
            "AuditEvent is ironchart's own audit log: it is written only by the server".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_type(resource_type: &str) -> Result<()> {
    if ironchart_fhir::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(RecordsError::UnknownType(resource_type.to_string()))
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The stored form of a secret token or session id: hex SHA-256 (the values are random and
/// long, so a fast hash is enough).
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    ironchart_security::hex(&sha2::Sha256::digest(token.as_bytes()))
}

/// Checks a resource submitted for `resource_type` (and, for an update, `id`) and validates it
/// against the definitions.
pub(crate) fn prepare(
    resource_type: &str,
    value: Value,
    id: Option<&str>,
    limit: usize,
) -> Result<Value> {
    let Value::Object(_) = &value else {
        return Err(RecordsError::bad(
            "the body must be a JSON object (a FHIR resource)",
            None,
        ));
    };
    if resource_type != "Binary" {
        let size = json_size(&value);
        if size > limit {
            return Err(RecordsError::TooLarge(format!(
                "the {resource_type} is {size} bytes; a resource may have at most {limit} \
                 (attachments belong in a Binary)"
            )));
        }
    }
    match value.get("resourceType").and_then(Value::as_str) {
        None => {
            return Err(RecordsError::bad(
                "resourceType is missing",
                Some("resourceType"),
            ));
        }
        Some(t) if t != resource_type => {
            return Err(RecordsError::bad(
                format!("resourceType '{t}' does not match the URL's type '{resource_type}'"),
                Some("resourceType"),
            ));
        }
        Some(_) => {}
    }
    if let Some(id) = id {
        match value.get("id") {
            Some(Value::String(body_id)) if body_id == id => {}
            Some(Value::String(body_id)) => {
                return Err(RecordsError::bad(
                    format!(
                        "the resource's id '{body_id}' does not match the id in the URL '{id}'"
                    ),
                    Some(&[resource_type, ".id"].concat()),
                ));
            }
            Some(_) => {
                return Err(RecordsError::bad(
                    "id must be a string",
                    Some(&[resource_type, ".id"].concat()),
                ));
            }
            None => {
                return Err(RecordsError::bad(
                    "an update must carry the resource's id",
                    Some(&[resource_type, ".id"].concat()),
                ));
            }
        }
    }
    ironchart_fhir::validate::validate_resource(&value).map_err(RecordsError::Invalid)?;
    policy::sensitivity(&value)?;
    Ok(value)
}

/// The length of a value's JSON text, counted without building it.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Runs the `ifNoneExist` search inside the transaction: `Some(id)` when exactly one resource
/// matches, `None` when none does, a 412 when several do.
pub(crate) async fn conditional_match(
    tx: &mut WriteTx,
    query: &SearchQuery,
    vis: &Visibility,
) -> Result<Option<String>> {
    if query.filters.is_empty() {
        return Err(RecordsError::bad(
            "a conditional create needs search criteria",
            None,
        ));
    }
    let found = tx.search_ids(query, 2, vis).await?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next().map(|(id, _)| id)),
        _ => {
            // "More than one" tells about those records: name their patients in the audit.
            let mut patients = named_patients(query);
            patients.extend(
                tx.search_ids(query, crate::audit::MAX_AUDITED_PATIENTS, vis)
                    .await?
                    .into_iter()
                    .filter_map(|(_, p)| p),
            );
            Err(RecordsError::Ambiguous {
                message: "the conditional create matches more than one resource".into(),
                patients,
            })
        }
    }
}

/// Refuses to change a resource the writer may not see (as if it did not exist, or restricted).
async fn check_current(tx: &mut WriteTx, ctx: &WriteCtx<'_>, rt: &str, id: &str) -> Result<()> {
    if ctx.actor.is_system() {
        return Ok(());
    }
    // A deleted head counts too: re-creating a deleted record needs the access its last
    // version had, so that nobody takes over an id (and its history) they could not see.
    if let Some(current) = tx.read(rt, id).await? {
        match policy::hidden(ctx.actor, &ctx.vis, &current) {
            Some(Hidden::NotThere) => {
                return Err(RecordsError::NotFound(rt.into(), id.into()));
            }
            Some(Hidden::Restricted) => {
                return Err(RecordsError::Restricted(
                    current.patient.unwrap_or_default(),
                ));
            }
            None => {}
        }
    }
    Ok(())
}

/// Writes a new version of `resource_type/id` inside `tx`; returns it and its audit entry.
pub(crate) async fn write_version(
    tx: &mut WriteTx,
    ctx: &WriteCtx<'_>,
    resource_type: &str,
    id: &str,
    mut value: Value,
    if_match: Option<i64>,
    method: &'static str,
) -> Result<(WriteOutcome, AuditEntry)> {
    let head: Option<VersionHead> = tx.head_for_update(resource_type, id).await?;
    if let Some(expected) = if_match {
        match &head {
            Some(h) if h.version == expected && !h.deleted => {}
            _ => {
                return Err(RecordsError::PreconditionFailed(format!(
                    "If-Match version {expected} is not the current version"
                )));
            }
        }
    }
    if head.is_some() {
        check_current(tx, ctx, resource_type, id).await?;
    }
    let version = head.as_ref().map_or(1, |h| h.version + 1);
    let last_updated = next_time(head.as_ref());
    let body = stamped(&mut value, id, version, last_updated)?;
    let (index, patient) = index_of(resource_type, id, &value, ctx.base)?;
    let created = head.as_ref().is_none_or(|h| h.deleted);
    if let Some(p) = &ctx.vis.compartment
        && patient.as_deref() != Some(p.patient.as_str())
    {
        return Err(RecordsError::Forbidden(
            "a patient-context actor may only write to their own record".into(),
        ));
    }
    tx.put(NewVersion {
        res_type: resource_type,
        res_id: id,
        version,
        previous: head.as_ref(),
        last_updated,
        deleted: false,
        method,
        body: Some(ctx.keys.seal(resource_type, id, version, &body)),
        patient: patient.clone(),
        sensitivity: policy::sensitivity(&value)?,
        index: &index,
    })
    .await?;
    let action = if created {
        AuditAction::Create
    } else {
        AuditAction::Update
    };
    let entry = AuditEntry::new(action, Outcome::Success)
        .resource(resource_type, id, Some(version))
        .patients(patient);
    Ok((
        WriteOutcome {
            created,
            resource: Resource {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                version,
                last_updated,
                deleted: false,
                method: method.to_string(),
                json: Some(body),
            },
        },
        entry,
    ))
}

/// Deletes inside `tx`: the new (deleted) version number, or `None` when there was nothing to
/// delete; and the audit entry of a deletion.
pub(crate) async fn delete_in(
    tx: &mut WriteTx,
    ctx: &WriteCtx<'_>,
    resource_type: &str,
    id: &str,
) -> Result<(Option<i64>, Option<AuditEntry>)> {
    let Some(head) = tx.head_for_update(resource_type, id).await? else {
        return Ok((None, None));
    };
    if head.deleted {
        return Ok((None, None));
    }
    check_current(tx, ctx, resource_type, id).await?;
    let current = tx.read(resource_type, id).await?;
    let patient = current.as_ref().and_then(|v| v.patient.clone());
    // The deletion keeps the resource's sensitivity: its earlier versions stay as protected.
    let sensitivity = current.as_ref().map_or(0, |v| v.sensitivity);
    let version = head.version + 1;
    tx.put(NewVersion {
        res_type: resource_type,
        res_id: id,
        version,
        previous: Some(&head),
        last_updated: next_time(Some(&head)),
        deleted: true,
        method: "DELETE",
        body: None,
        patient: patient.clone(),
        sensitivity,
        index: &[],
    })
    .await?;
    let entry = AuditEntry::new(AuditAction::Delete, Outcome::Success)
        .resource(resource_type, id, Some(version))
        .patients(patient);
    Ok((Some(version), Some(entry)))
}

/// The time of a new version: now, but always after the version it replaces.
fn next_time(head: Option<&VersionHead>) -> i64 {
    let now = now_millis();
    head.map_or(now, |h| now.max(h.last_updated + 1))
}

/// Stamps a version's `id` and `meta` (see [`stamp`]) and returns its stored JSON.
fn stamped(value: &mut Value, id: &str, version: i64, last_updated: i64) -> Result<Vec<u8>> {
    stamp(value, id, version, last_updated);
    serde_json::to_vec(value).map_err(|e| RecordsError::bad(e.to_string(), None))
}

/// A version's search-index values and the Patient whose compartment it is in.
pub(crate) fn index_of(
    resource_type: &str,
    id: &str,
    value: &Value,
    base: Option<&str>,
) -> Result<(Vec<IndexEntry>, Option<String>)> {
    let mut index = extract(value);
    localize(&mut index, base);
    if index.len() > MAX_INDEX_VALUES {
        return Err(RecordsError::TooLarge(format!(
            "the {resource_type} has {} searchable values; a resource may have at most \
             {MAX_INDEX_VALUES}",
            index.len()
        )));
    }
    let patient = compartment_patient(resource_type, id, &index);
    Ok((index, patient))
}

/// Sets `id` and `meta.versionId`/`meta.lastUpdated`, keeping the rest of `meta`, and puts
/// `resourceType`, `id` and `meta` first.
pub(crate) fn stamp(value: &mut Value, id: &str, version: i64, last_updated: i64) {
    let Value::Object(map) = value else {
        return;
    };
    let mut old = std::mem::take(map);
    let resource_type = old.shift_remove("resourceType");
    old.shift_remove("id");
    let mut meta = match old.shift_remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let mut new_meta = Map::new();
    new_meta.insert("versionId".into(), Value::String(version.to_string()));
    new_meta.insert(
        "lastUpdated".into(),
        Value::String(ironchart_fhir::datetime::format_instant(last_updated)),
    );
    new_meta.extend(meta);
    if let Some(rt) = resource_type {
        map.insert("resourceType".into(), rt);
    }
    map.insert("id".into(), Value::String(id.to_string()));
    map.insert("meta".into(), Value::Object(new_meta));
    map.extend(old);
}

/// References as R4 defines them: an absolute reference on this server's base is kept as the
/// local one (`Patient/1`); one on another server names no local resource, so search, includes,
/// chains and the compartment see only its URL (and type).
pub(crate) fn localize(index: &mut [IndexEntry], base: Option<&str>) {
    for entry in index.iter_mut() {
        let IndexValue::Reference {
            target_type,
            target_id,
            url,
            ..
        } = &mut entry.value
        else {
            continue;
        };
        if !url.contains("://") {
            continue;
        }
        let local = base.and_then(|b| url.strip_prefix(b)).and_then(|rest| {
            rest.strip_prefix('/')
                .filter(|_| target_type.is_some() && target_id.is_some())
        });
        match local {
            Some(relative) => *url = relative.to_string(),
            // Its type stays (a search by its URL on `patient` still finds it); without a
            // target id it matches no local id, include or chain.
            None => *target_id = None,
        }
    }
}

/// The Patient whose compartment a resource belongs to.
pub(crate) fn compartment_patient(
    resource_type: &str,
    id: &str,
    index: &[IndexEntry],
) -> Option<String> {
    if resource_type == "Patient" {
        return Some(id.to_string());
    }
    let params = ironchart_fhir::patient_compartment_params(resource_type);
    let mut found: Option<&String> = None;
    for name in params {
        // A contained resource's references are not the container's.
        for entry in index
            .iter()
            .filter(|e| e.param == *name && e.contained.is_none())
        {
            // Only a local (relative) reference puts a resource in one of our Patients'
            // compartments; `http://elsewhere/fhir/Patient/1` is not our Patient 1.
            if let IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(pid),
                url,
                ..
            } = &entry.value
                && t == "Patient"
                && !url.contains("://")
            {
                match found {
                    None => found = Some(pid),
                    // A resource about several patients (a Group's members, a Coverage whose
                    // subscriber is another patient) is in no one patient's compartment: none
                    // of them may learn the others' identity through it.
                    Some(first) if first != pid => return None,
                    Some(_) => {}
                }
            }
        }
    }
    found.cloned()
}

/// A resource ready to be written by an import: validated, and built as version 1 (meta, index,
/// JSON) in advance; rebuilt on top of the current version when the resource already exists.
type Prepared = Result<Ready>;

struct Ready {
    rt: String,
    id: String,
    /// The resource as stamped for version 1.
    value: Value,
    index: Vec<IndexEntry>,
    patient: Option<String>,
    sensitivity: i64,
    /// The version-1 body, sealed.
    sealed: Vec<u8>,
    last_updated: i64,
}

fn prepare_import(mut value: Value, keys: &Keys, limit: usize, base: Option<Arc<str>>) -> Prepared {
    let rt = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| RecordsError::bad("resourceType is missing", Some("resourceType")))?
        .to_string();
    check_writable(&rt)?;
    let id = match value.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => {
            return Err(RecordsError::bad(
                "id must be a string",
                Some(&[rt.as_str(), ".id"].concat()),
            ));
        }
        None => {
            let id = new_id();
            if let Some(o) = value.as_object_mut() {
                o.insert("id".into(), Value::String(id.clone()));
            }
            id
        }
    };
    if !ironchart_fhir::is_valid_id(&id) {
        return Err(RecordsError::bad(
            format!("'{id}' is not a valid resource id"),
            Some(&[rt.as_str(), ".id"].concat()),
        ));
    }
    let mut value = prepare(&rt, value, Some(&id), limit)?;
    let last_updated = next_time(None);
    let body = stamped(&mut value, &id, 1, last_updated)?;
    let (index, patient) = index_of(&rt, &id, &value, base.as_deref())?;
    let sealed = keys.seal(&rt, &id, 1, &body);
    let sensitivity = policy::sensitivity(&value)?;
    Ok(Ready {
        rt,
        id,
        value,
        index,
        patient,
        sensitivity,
        sealed,
        last_updated,
    })
}

/// Validates and builds resources on all cores, keeping their order.
async fn prepare_all(
    resources: Vec<Value>,
    keys: Arc<Keys>,
    limit: usize,
    base: Option<Arc<str>>,
) -> Vec<Prepared> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if resources.len() < 64 || workers == 1 {
        return resources
            .into_iter()
            .map(|r| prepare_import(r, &keys, limit, base.clone()))
            .collect();
    }
    let per = resources.len().div_ceil(workers);
    let mut chunks = Vec::new();
    let mut rest = resources;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let keys = keys.clone();
            let base = base.clone();
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|r| prepare_import(r, &keys, limit, base.clone()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(part) => out.extend(part),
            Err(_) => out.push(Err(RecordsError::bad(
                "validation failed unexpectedly",
                None,
            ))),
        }
    }
    out
}

/// The body and time of a new version on top of `head`.
fn restamp(ready: &Ready, head: &VersionHead) -> Result<(i64, Vec<u8>)> {
    let mut value = ready.value.clone();
    let last_updated = next_time(Some(head));
    let body = stamped(&mut value, &ready.id, head.version + 1, last_updated)?;
    Ok((last_updated, body))
}

/// Writes prepared resources (upserts) inside `tx` with batched statements. A resource that
/// appears twice is written in a later round, on top of its first version.
async fn import_in(
    tx: &mut WriteTx,
    prepared: &[Prepared],
    keys: &Keys,
    store: &Store,
) -> Result<(Vec<ImportOutcome>, Vec<String>)> {
    let mut patients = std::collections::BTreeSet::new();
    let mut outcomes: Vec<Option<ImportOutcome>> = Vec::with_capacity(prepared.len());
    let mut round: Vec<(usize, &Ready)> = Vec::new();
    for (i, item) in prepared.iter().enumerate() {
        match item {
            Ok(ready) => {
                outcomes.push(None);
                round.push((i, ready));
            }
            Err(e) => outcomes.push(Some(Err(clone_error(e)))),
        }
    }
    while !round.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let mut now_round = Vec::new();
        let mut later = Vec::new();
        for item in round {
            if seen.insert((item.1.rt.as_str(), item.1.id.as_str())) {
                now_round.push(item);
            } else {
                later.push(item);
            }
        }
        round = later;
        let mut ids_by_type: std::collections::BTreeMap<&str, Vec<&str>> =
            std::collections::BTreeMap::new();
        for (_, r) in &now_round {
            ids_by_type
                .entry(r.rt.as_str())
                .or_default()
                .push(r.id.as_str());
        }
        let mut heads = std::collections::HashMap::new();
        for (rt, ids) in ids_by_type {
            for (id, head) in tx.heads_for_update(rt, &ids).await? {
                heads.insert((rt.to_string(), id), head);
            }
        }
        let mut versions = Vec::with_capacity(now_round.len());
        let mut previous: Vec<Option<VersionHead>> = Vec::with_capacity(now_round.len());
        for (_, r) in &now_round {
            previous.push(heads.remove(&(r.rt.clone(), r.id.clone())));
        }
        // Importing the same content again makes no new version: the current bodies of the
        // resources that exist are compared with what would be written.
        let live: Vec<i64> = previous
            .iter()
            .flatten()
            .filter(|h| !h.deleted)
            .map(|h| h.rid)
            .collect();
        let mut current: std::collections::HashMap<i64, Vec<u8>> = if live.is_empty() {
            Default::default()
        } else {
            tx.current_bodies(&live).await?.into_iter().collect()
        };
        for ((_, r), prev) in now_round.iter().zip(&previous) {
            if let Some(head) = prev
                && let Some(stored) = current.remove(&head.rid)
            {
                let plain = keys
                    .open(store, &r.rt, &r.id, head.version, &stored)
                    .await?;
                if same_content(&plain, &r.value) {
                    continue;
                }
            }
            let (version, last_updated, body) = match prev {
                Some(head) => {
                    let (lu, body) = restamp(r, head)?;
                    let version = head.version + 1;
                    (version, lu, keys.seal(&r.rt, &r.id, version, &body))
                }
                None => (1, r.last_updated, r.sealed.clone()),
            };
            if let Some(p) = &r.patient {
                patients.insert(p.clone());
            }
            versions.push(NewVersion {
                res_type: &r.rt,
                res_id: &r.id,
                version,
                previous: prev.as_ref(),
                last_updated,
                deleted: false,
                method: "PUT",
                body: Some(body),
                patient: r.patient.clone(),
                sensitivity: r.sensitivity,
                index: &r.index,
            });
        }
        tx.put_batch(versions).await?;
        for (i, r) in now_round {
            outcomes[i] = Some(Ok((r.rt.clone(), r.id.clone())));
        }
    }
    Ok((
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(RecordsError::bad("not imported", None))))
            .collect(),
        patients.into_iter().collect(),
    ))
}

/// Whether a stored body holds the same resource as `value`, its version and time aside.
fn same_content(stored: &[u8], value: &Value) -> bool {
    let Ok(mut old) = serde_json::from_slice::<Value>(stored) else {
        return false;
    };
    let mut new = value.clone();
    for v in [&mut old, &mut new] {
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            meta.shift_remove("versionId");
            meta.shift_remove("lastUpdated");
            if meta.is_empty()
                && let Some(obj) = v.as_object_mut()
            {
                obj.shift_remove("meta");
            }
        }
    }
    old == new
}

fn encode_history_cursor(last_updated: i64, rid: i64, version: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("h{last_updated}.{rid}.{version}"))
}

fn decode_history_cursor(text: &str) -> Result<(i64, i64, i64)> {
    let bad = || RecordsError::from(StoreError::BadCursor);
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let rest = s.strip_prefix('h').ok_or_else(bad)?;
    let mut parts = rest.split('.').map(|p| p.parse::<i64>());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Ok((a, b, c)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamp_orders_and_keeps_meta() {
        let mut v = json!({"resourceType":"Patient","active":true,"meta":{"tag":[{"code":"x"}],"versionId":"9"}});
        stamp(&mut v, "abc", 2, 0);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "active"]);
        assert_eq!(v["meta"]["versionId"], "2");
        assert_eq!(v["meta"]["tag"][0]["code"], "x");
        assert_eq!(v["meta"]["lastUpdated"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn ids() {
        assert!(ironchart_fhir::is_valid_id("a-b.C9"));
        assert!(!ironchart_fhir::is_valid_id(""));
        assert!(!ironchart_fhir::is_valid_id("a/b"));
        assert!(!ironchart_fhir::is_valid_id(&"a".repeat(65)));
    }

    /// A tmpfs of `bytes` of its own in a new directory (unmounted when dropped); none where
    /// this process may not mount one.
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn mount(bytes: u64) -> Option<SmallDisk> {
            let dir = tempfile::tempdir().ok()?;
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                .then_some(SmallDisk(dir))
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            // Lazily: a file some thread of the closed service still holds must not keep the
            // mount behind.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// What the web layer answers with `503` (try again), as opposed to a `500`.
    fn is_transient(e: &RecordsError) -> bool {
        match e {
            RecordsError::AuditUnavailable => true,
            RecordsError::Store(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// The data directory (database, audit journal) fills up: writes and reads are refused as
    /// transient (`503`), never as a bug; once there is room they are served again without a
    /// restart, every acknowledged write is there and the audit chain is intact.
    #[tokio::test]
    async fn a_full_disk_is_a_503_and_served_again_once_there_is_room() {
        let Some(disk) = SmallDisk::mount(8 << 20) else {
            eprintln!(
                "cannot mount a tmpfs (not root?): skipped; the store's full-disk test covers the path with SQLite's page limit"
            );
            return;
        };
        let dir = disk.0.path();
        let security = SecurityConfig {
            master_key: MasterKey::generate(),
            checkpoint_file: Some(dir.join("audit-checkpoints.log")),
            journal_dir: dir.to_path_buf(),
            sync_reads: false,
        };
        let records = Records::open(&DatabaseConfig::Sqlite(dir.join("db.sqlite3")), security)
            .await
            .unwrap();
        let actor = Actor::local_operator();
        let patient = |n: usize| json!({"resourceType": "Patient", "name": [{"family": format!("Full{n}"), "text": "x".repeat(2000)}]});
        let mut acknowledged = Vec::new();
        let created = records
            .create(&actor, "Patient", patient(0), None)
            .await
            .unwrap();
        acknowledged.push(created.resource.id);
        // Fill the disk.
        let filler = dir.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).is_ok() {}
        }
        let mut refused = 0;
        for n in 1..2_000 {
            match records.create(&actor, "Patient", patient(n), None).await {
                Ok(w) => acknowledged.push(w.resource.id),
                Err(e) => {
                    assert!(is_transient(&e), "a full disk must be a 503, not: {e}");
                    refused += 1;
                }
            }
            if let Err(e) = records.read(&actor, "Patient", &acknowledged[0]).await {
                assert!(is_transient(&e), "a full disk must be a 503, not: {e}");
            }
            if refused >= 5 {
                break;
            }
        }
        assert!(refused >= 5, "the disk never filled up");
        // Room again: served at once (the journal's mover retries every second).
        std::fs::remove_file(&filler).unwrap();
        let start = std::time::Instant::now();
        let after = loop {
            match records
                .create(&actor, "Patient", patient(9_999), None)
                .await
            {
                Ok(w) => break w,
                Err(e) => {
                    assert!(is_transient(&e), "{e}");
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "still refused after the disk has room: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        acknowledged.push(after.resource.id);
        for id in &acknowledged {
            records.read(&actor, "Patient", id).await.unwrap();
        }
        assert!(matches!(
            records.verify_audit().await.unwrap(),
            crate::audit::VerifyReport::Intact { .. }
        ));
        records.close().await;
        drop(disk);
    }

    /// A service on an SQLite database of its own in `dir` (no checkpoint file).
    pub(crate) async fn sqlite_records(dir: &std::path::Path) -> Records {
        let security = SecurityConfig {
            master_key: MasterKey::generate(),
            checkpoint_file: None,
            journal_dir: dir.to_path_buf(),
            sync_reads: false,
        };
        Records::open(&DatabaseConfig::Sqlite(dir.join("t.sqlite3")), security)
            .await
            .unwrap()
    }

    /// Importing the same content again makes no new version; changed content does.
    #[tokio::test]
    async fn importing_the_same_content_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let records = sqlite_records(dir.path()).await;
        let op = Actor::local_operator();
        let cohort = || {
            vec![
                json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Same"}],
                       "meta": {"tag": [{"code": "t"}]}}),
                json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Same"}]}),
            ]
        };
        for _ in 0..3 {
            let outcomes = records.import(&op, cohort()).await.unwrap();
            assert!(outcomes.iter().all(|o| o.is_ok()));
        }
        for id in ["p1", "p2"] {
            assert_eq!(
                records.read(&op, "Patient", id).await.unwrap().version,
                1,
                "{id}"
            );
        }
        let mut changed = cohort();
        changed[1]["name"][0]["family"] = json!("Changed");
        records.import(&op, changed).await.unwrap();
        assert_eq!(records.read(&op, "Patient", "p1").await.unwrap().version, 1);
        assert_eq!(records.read(&op, "Patient", "p2").await.unwrap().version, 2);
        records.close().await;
    }

    #[test]
    fn history_cursor_round_trip() {
        let c = encode_history_cursor(5, 6, 7);
        assert_eq!(decode_history_cursor(&c).unwrap(), (5, 6, 7));
        assert!(decode_history_cursor("zzz").is_err());
    }
}
