//! The records service: authentication, validation, versioning, indexing, around the store.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironchart_fhir::extract::{IndexEntry, IndexValue, extract};
use ironchart_fhir::search::SearchQuery;
use ironchart_store::{
    Cursor, HistoryScope, NewVersion, Store, StoreError, TokenRecord, VersionHead, WriteTx,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::actor::{Actor, ActorKind};
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

/// How many times a write is retried when a concurrent writer got there first.
const WRITE_RETRIES: usize = 20;

/// How long a checked token is remembered before the database is asked again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most tokens remembered at once.
const TOKEN_CACHE_MAX: usize = 10_000;

type TokenCache = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<String, (Actor, std::time::Instant)>>,
>;

/// The records service. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Records {
    store: Store,
    /// Recently checked tokens by hash (never the token itself).
    tokens: TokenCache,
}

/// The outcome of importing one resource: its type and id.
pub type ImportOutcome = Result<(String, String)>;

/// Resources validated for an import, not yet written ([`Records::prepare_import`]).
pub struct PreparedBatch(Vec<Prepared>);

impl Records {
    /// Opens the database, creating and migrating the schema as needed.
    pub async fn open(config: &DatabaseConfig) -> Result<Records> {
        let store = match config {
            DatabaseConfig::Sqlite(path) => Store::open_sqlite(path).await?,
            DatabaseConfig::Postgres { url, schema } => {
                Store::open_postgres(url, schema.as_deref()).await?
            }
        };
        Ok(Records {
            store,
            tokens: TokenCache::default(),
        })
    }

    pub fn backend(&self) -> ironchart_store::Backend {
        self.store.backend()
    }

    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Operational settings (not health data): e.g. whether the demo data was seeded.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.store.setting(key).await?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        Ok(self.store.set_setting(key, value).await?)
    }

    // ----- tokens -----

    /// Issues a full-access system token valid for `ttl`. Returns the token text; only its hash
    /// is stored.
    pub async fn issue_system_token(&self, ttl: Duration) -> Result<String> {
        self.issue_token("system", "system/*.cruds", ttl).await
    }

    async fn issue_token(&self, subject: &str, scopes: &str, ttl: Duration) -> Result<String> {
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut raw);
        let token = ["ic_", &URL_SAFE_NO_PAD.encode(raw)].concat();
        let now = now_millis();
        self.store
            .insert_token(&TokenRecord {
                token_hash: token_hash(&token),
                subject: subject.to_string(),
                scopes: scopes.to_string(),
                issued_at: now,
                expires_at: now.saturating_add(ttl.as_millis() as i64),
                revoked: false,
            })
            .await?;
        Ok(token)
    }

    /// Checks a bearer token. Unknown, expired and revoked tokens are all simply unauthorized.
    #[instrument(skip_all)]
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor> {
        if !bearer.starts_with("ic_") || bearer.len() > 128 {
            return Err(RecordsError::Unauthorized);
        }
        let hash = token_hash(bearer);
        let now = now_millis();
        if let Ok(cache) = self.tokens.lock()
            && let Some((actor, at)) = cache.get(&hash)
            && at.elapsed() < TOKEN_CACHE_TTL
            && actor.expires_at > now
        {
            return Ok(actor.clone());
        }
        let record = self
            .store
            .find_token(&hash)
            .await?
            .ok_or(RecordsError::Unauthorized)?;
        if record.revoked || record.expires_at <= now {
            return Err(RecordsError::Unauthorized);
        }
        let kind = match record.subject.as_str() {
            "system" => ActorKind::System,
            other => ActorKind::User(other.trim_start_matches("user:").to_string()),
        };
        let actor = Actor {
            kind,
            scopes: record.scopes.split(' ').map(str::to_string).collect(),
            expires_at: record.expires_at,
        };
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (actor.clone(), std::time::Instant::now()));
        }
        Ok(actor)
    }

    // ----- reads -----

    /// The current version of a resource; deleted resources are [`RecordsError::Gone`].
    #[instrument(skip_all, fields(resource_type = resource_type))]
    pub async fn read(&self, actor: &Actor, resource_type: &str, id: &str) -> Result<Resource> {
        authorize(actor)?;
        check_type(resource_type)?;
        if !valid_id(id) {
            return Err(RecordsError::NotFound(resource_type.into(), id.into()));
        }
        match self.store.read(resource_type, id).await? {
            None => Err(RecordsError::NotFound(resource_type.into(), id.into())),
            Some(v) if v.deleted => Err(RecordsError::Gone(resource_type.into(), id.into())),
            Some(v) => Ok(Resource::from_stored(v)),
        }
    }

    /// A specific version of a resource.
    pub async fn vread(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Resource> {
        authorize(actor)?;
        check_type(resource_type)?;
        let not_found =
            || RecordsError::NotFound(resource_type.into(), [id, "/_history/", version].concat());
        let version: i64 = version.parse().map_err(|_| not_found())?;
        if !valid_id(id) {
            return Err(not_found());
        }
        match self.store.vread(resource_type, id, version).await? {
            None => Err(not_found()),
            Some(v) if v.deleted => Err(RecordsError::Gone(resource_type.into(), id.into())),
            Some(v) => Ok(Resource::from_stored(v)),
        }
    }

    /// Runs a search; `cursor` continues from a previous page.
    #[instrument(skip_all, fields(resource_type = %query.resource_type))]
    pub async fn search(
        &self,
        actor: &Actor,
        query: &SearchQuery,
        cursor: Option<&str>,
    ) -> Result<ResourcePage> {
        authorize(actor)?;
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let page = self.store.search(query, cursor.as_ref()).await?;
        Ok(ResourcePage {
            matches: page
                .matches
                .into_iter()
                .map(Resource::from_stored)
                .collect(),
            included: page
                .included
                .into_iter()
                .map(Resource::from_stored)
                .collect(),
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
        authorize(actor)?;
        match scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => check_type(t)?,
            HistoryScope::Instance(t, id) => {
                check_type(t)?;
                if !valid_id(id) || self.store.read(t, id).await?.is_none() {
                    return Err(RecordsError::NotFound(t.clone(), id.clone()));
                }
            }
        }
        let after = cursor.map(decode_history_cursor).transpose()?;
        let mut rows = self
            .store
            .history(scope, since, after, count.saturating_add(1))
            .await?;
        let more = rows.len() > count;
        rows.truncate(count);
        let next = if more {
            rows.last()
                .map(|v| encode_history_cursor(v.last_updated, v.rid, v.version))
        } else {
            None
        };
        let total = if cursor.is_none() && !more {
            Some(rows.len() as i64)
        } else {
            Some(self.store.history_count(scope, since).await?)
        };
        Ok(HistoryPage {
            entries: rows.into_iter().map(Resource::from_stored).collect(),
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
        authorize(actor)?;
        check_type(resource_type)?;
        let value = prepare(resource_type, value, None)?;
        self.retrying(|mut tx| {
            let value = value.clone();
            async move {
                if let Some(q) = if_none_exist
                    && let Some(existing) = conditional_match(&mut tx, q).await?
                {
                    tx.rollback().await?;
                    let resource = self.read(actor, resource_type, &existing).await?;
                    return Ok(WriteOutcome {
                        resource,
                        created: false,
                    });
                }
                let id = new_id();
                let outcome =
                    write_version(&mut tx, resource_type, &id, value, None, "POST").await?;
                tx.commit().await?;
                Ok(outcome)
            }
        })
        .await
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
        authorize(actor)?;
        check_type(resource_type)?;
        if !valid_id(id) {
            return Err(RecordsError::bad(
                format!("'{id}' is not a valid resource id"),
                None,
            ));
        }
        let value = prepare(resource_type, value, Some(id))?;
        let result = self
            .retrying(|mut tx| {
                let value = value.clone();
                async move {
                    let outcome =
                        write_version(&mut tx, resource_type, id, value, if_match, "PUT").await?;
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
        authorize(actor)?;
        check_type(resource_type)?;
        if !valid_id(id) {
            return Ok(None);
        }
        self.retrying(|mut tx| async move {
            let version = delete_in(&mut tx, resource_type, id).await?;
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

    /// The CPU half of an import: validates resources on all cores, touching no data. A
    /// caller can prepare the next batch while the previous one is being written.
    pub async fn prepare_import(&self, resources: Vec<Value>) -> PreparedBatch {
        PreparedBatch(prepare_all(resources).await)
    }

    /// The database half of an import: writes a prepared batch in one transaction.
    pub async fn import_prepared(
        &self,
        actor: &Actor,
        batch: PreparedBatch,
    ) -> Result<Vec<ImportOutcome>> {
        authorize(actor)?;
        let prepared = &batch.0;
        self.retrying(|mut tx| async move {
            let outcomes = import_in(&mut tx, prepared).await?;
            tx.commit().await?;
            Ok(outcomes)
        })
        .await
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

fn clone_error(e: &RecordsError) -> RecordsError {
    match e {
        RecordsError::Invalid(issues) => RecordsError::Invalid(issues.clone()),
        RecordsError::UnknownType(t) => RecordsError::UnknownType(t.clone()),
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

/// Today every authenticated actor has full access; scopes and compartments are enforced here
/// once users and roles exist.
pub(crate) fn authorize(actor: &Actor) -> Result<()> {
    if actor.expires_at <= now_millis() {
        return Err(RecordsError::Unauthorized);
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

/// `[A-Za-z0-9\-\.]{1,64}`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    out
}

/// Checks a resource submitted for `resource_type` (and, for an update, `id`) and validates it
/// against the definitions.
pub(crate) fn prepare(resource_type: &str, value: Value, id: Option<&str>) -> Result<Value> {
    let Value::Object(_) = &value else {
        return Err(RecordsError::bad(
            "the body must be a JSON object (a FHIR resource)",
            None,
        ));
    };
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
    Ok(value)
}

/// Runs the `ifNoneExist` search inside the transaction: `Some(id)` when exactly one resource
/// matches, `None` when none does, a 412 when several do.
pub(crate) async fn conditional_match(
    tx: &mut WriteTx,
    query: &SearchQuery,
) -> Result<Option<String>> {
    if query.filters.is_empty() {
        return Err(RecordsError::bad(
            "a conditional create needs search criteria",
            None,
        ));
    }
    let ids = tx.search_ids(query, 2).await?;
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.into_iter().next()),
        _ => Err(RecordsError::PreconditionFailed(
            "the conditional create matches more than one resource".into(),
        )),
    }
}

/// Writes a new version of `resource_type/id` inside `tx`.
pub(crate) async fn write_version(
    tx: &mut WriteTx,
    resource_type: &str,
    id: &str,
    mut value: Value,
    if_match: Option<i64>,
    method: &'static str,
) -> Result<WriteOutcome> {
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
    let version = head.as_ref().map_or(1, |h| h.version + 1);
    let last_updated = next_time(head.as_ref());
    let body = stamped(&mut value, id, version, last_updated)?;
    let (index, patient) = index_of(resource_type, id, &value);
    tx.put(NewVersion {
        res_type: resource_type,
        res_id: id,
        version,
        previous: head.as_ref(),
        last_updated,
        deleted: false,
        method,
        body: Some(body.clone()),
        patient,
        index: &index,
    })
    .await?;
    Ok(WriteOutcome {
        created: head.as_ref().is_none_or(|h| h.deleted),
        resource: Resource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            last_updated,
            deleted: false,
            method: method.to_string(),
            json: Some(body),
        },
    })
}

/// Deletes inside `tx`: the new (deleted) version number, or `None` when there was nothing to
/// delete.
pub(crate) async fn delete_in(
    tx: &mut WriteTx,
    resource_type: &str,
    id: &str,
) -> Result<Option<i64>> {
    let Some(head) = tx.head_for_update(resource_type, id).await? else {
        return Ok(None);
    };
    if head.deleted {
        return Ok(None);
    }
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
        patient: None,
        index: &[],
    })
    .await?;
    Ok(Some(version))
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
fn index_of(resource_type: &str, id: &str, value: &Value) -> (Vec<IndexEntry>, Option<String>) {
    let index = extract(value);
    let patient = compartment_patient(resource_type, id, &index);
    (index, patient)
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
    for name in params {
        for entry in index.iter().filter(|e| e.param == *name) {
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
                return Some(pid.clone());
            }
        }
    }
    None
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
    body: Vec<u8>,
    last_updated: i64,
}

fn prepare_import(mut value: Value) -> Prepared {
    let rt = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| RecordsError::bad("resourceType is missing", Some("resourceType")))?
        .to_string();
    check_type(&rt)?;
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
    if !valid_id(&id) {
        return Err(RecordsError::bad(
            format!("'{id}' is not a valid resource id"),
            Some(&[rt.as_str(), ".id"].concat()),
        ));
    }
    let mut value = prepare(&rt, value, Some(&id))?;
    let last_updated = next_time(None);
    let body = stamped(&mut value, &id, 1, last_updated)?;
    let (index, patient) = index_of(&rt, &id, &value);
    Ok(Ready {
        rt,
        id,
        value,
        index,
        patient,
        body,
        last_updated,
    })
}

/// Validates and builds resources on all cores, keeping their order.
async fn prepare_all(resources: Vec<Value>) -> Vec<Prepared> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if resources.len() < 64 || workers == 1 {
        return resources.into_iter().map(prepare_import).collect();
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
            tokio::task::spawn_blocking(move || {
                chunk.into_iter().map(prepare_import).collect::<Vec<_>>()
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
async fn import_in(tx: &mut WriteTx, prepared: &[Prepared]) -> Result<Vec<ImportOutcome>> {
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
        for ((_, r), prev) in now_round.iter().zip(&previous) {
            let (version, last_updated, body) = match prev {
                Some(head) => {
                    let (lu, body) = restamp(r, head)?;
                    (head.version + 1, lu, body)
                }
                None => (1, r.last_updated, r.body.clone()),
            };
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
                index: &r.index,
            });
        }
        tx.put_batch(versions).await?;
        for (i, r) in now_round {
            outcomes[i] = Some(Ok((r.rt.clone(), r.id.clone())));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(RecordsError::bad("not imported", None))))
        .collect())
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
mod tests {
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
        assert!(valid_id("a-b.C9"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
    }

    #[test]
    fn history_cursor_round_trip() {
        let c = encode_history_cursor(5, 6, 7);
        assert_eq!(decode_history_cursor(&c).unwrap(), (5, 6, 7));
        assert!(decode_history_cursor("zzz").is_err());
    }
}
