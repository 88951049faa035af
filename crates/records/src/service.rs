//! The records service: policy, audit, encryption, validation, versioning and indexing, around
//! the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ironchart_fhir::Id;
use ironchart_security::keyring::MasterKey;
use ironchart_store::Store;

use crate::actor::{Actor, LocalOperator};
use crate::audit::journal::AuditWriter;
use crate::audit::{AuditAction, AuditEntry, ChainKeys, Outcome};
use crate::cache::Cache;
use crate::clock::{Clock, Instant, SystemClock};
use crate::keys::Keys;
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

/// The records service. Cheap to clone (one shared pointer); share one per process.
#[derive(Clone)]
pub struct Records {
    pub(crate) shared: Arc<Shared>,
    pub(crate) session_policy: crate::signin::SessionPolicy,
    /// The largest resource (other than a Binary) a write may store, in bytes of JSON.
    pub(crate) resource_limit: usize,
    /// Where every "now" of the door comes from (see [`Records::with_clock`]).
    pub(crate) clock: Arc<dyn Clock>,
}

/// The default of [`Records::with_resource_limit`]: 4 MiB.
pub const DEFAULT_RESOURCE_LIMIT: usize = 4 * 1024 * 1024;

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
        let recovered =
            crate::audit::journal::recover(&security.journal_dir, &store, &chain).await?;
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
            clock: Arc::new(SystemClock),
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
    /// Gives the service the clock it reads the time from (before it is shared): version
    /// times, expiry of tokens, sessions and break-the-glass grants, lockouts and the times of
    /// audit entries. The system's clock by default; a [`crate::ManualClock`] lets tests see
    /// expiry without sleeping.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Records {
        self.clock = clock;
        self
    }

    /// Now, by the service's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

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

    /// Indexes the newest audit entries by patient, writes a final audit checkpoint and closes
    /// the database.
    pub async fn close(&self) {
        self.shut_down(true).await
    }

    pub(crate) async fn shut_down(&self, checkpoint: bool) {
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
}

pub(crate) fn check_type(resource_type: &str) -> Result<()> {
    if ironchart_fhir::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(RecordsError::UnknownType(resource_type.to_string()))
    }
}

pub(crate) fn new_id() -> Id {
    Id::from_random(uuid::Uuid::new_v4().into_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::read::*;
    use ironchart_fhir::ResourceType;

    fn id_of(text: &str) -> Id {
        Id::parse(text).unwrap()
    }
    use crate::write::*;
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
            .create(&actor, ResourceType::PATIENT, patient(0), None)
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
            match records
                .create(&actor, ResourceType::PATIENT, patient(n), None)
                .await
            {
                Ok(w) => acknowledged.push(w.resource.id),
                Err(e) => {
                    assert!(is_transient(&e), "a full disk must be a 503, not: {e}");
                    refused += 1;
                }
            }
            if let Err(e) = records
                .read(&actor, ResourceType::PATIENT, &id_of(&acknowledged[0]))
                .await
            {
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
                .create(&actor, ResourceType::PATIENT, patient(9_999), None)
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
            records
                .read(&actor, ResourceType::PATIENT, &id_of(id))
                .await
                .unwrap();
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
                records
                    .read(&op, ResourceType::PATIENT, &id_of(id))
                    .await
                    .unwrap()
                    .version,
                1,
                "{id}"
            );
        }
        let mut changed = cohort();
        changed[1]["name"][0]["family"] = json!("Changed");
        records.import(&op, changed).await.unwrap();
        assert_eq!(
            records
                .read(&op, ResourceType::PATIENT, &id_of("p1"))
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            records
                .read(&op, ResourceType::PATIENT, &id_of("p2"))
                .await
                .unwrap()
                .version,
            2
        );
        records.close().await;
    }

    #[test]
    fn history_cursor_round_trip() {
        let c = encode_history_cursor(5, 6, 7);
        assert_eq!(decode_history_cursor(&c).unwrap(), (5, 6, 7));
        assert!(decode_history_cursor("zzz").is_err());
    }
}
