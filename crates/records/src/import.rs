//! Imports: many resources validated on all cores, then written in one transaction with
//! batched statements; the same content imported again makes no new version.

use std::sync::Arc;

use ironchart_fhir::extract::IndexEntry;
use ironchart_security::scope::Interaction;
use ironchart_store::{NewVersion, Sensitivity, Store, VersionHead, WriteTx};
use serde_json::Value;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::clock::Instant;
use crate::keys::Keys;
use crate::policy;
use crate::service::new_id;
use crate::write::{check_writable, index_of, next_time, prepare, stamped};
use crate::{Records, RecordsError, Result};

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
    sensitivity: Sensitivity,
    /// The version-1 body, sealed.
    sealed: Vec<u8>,
    last_updated: i64,
}

fn prepare_import(
    mut value: Value,
    keys: &Keys,
    limit: usize,
    base: Option<Arc<str>>,
    now: Instant,
) -> Prepared {
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
            let id = new_id().into_string();
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
    let last_updated = next_time(now, None);
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
    now: Instant,
) -> Vec<Prepared> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if resources.len() < 64 || workers == 1 {
        return resources
            .into_iter()
            .map(|r| prepare_import(r, &keys, limit, base.clone(), now))
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
                    .map(|r| prepare_import(r, &keys, limit, base.clone(), now))
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
fn restamp(ready: &Ready, head: &VersionHead, now: Instant) -> Result<(i64, Vec<u8>)> {
    let mut value = ready.value.clone();
    let last_updated = next_time(now, Some(head));
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
    now: Instant,
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
        let mut now_round: Vec<(usize, &Ready)> = Vec::new();
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
        let mut previous: Vec<Option<VersionHead>> = Vec::with_capacity(now_round.len());
        for (_, r) in &now_round {
            previous.push(heads.remove(&(r.rt.clone(), r.id.clone())));
        }
        // A signed encounter is locked for imports too (checked one by one, only when any
        // encounter is signed at all).
        if tx.any_signature().await? {
            let mut kept = Vec::with_capacity(now_round.len());
            let mut kept_previous = Vec::with_capacity(now_round.len());
            for ((i, r), prev) in now_round.into_iter().zip(previous) {
                match crate::lock::check_unlocked(
                    tx,
                    &r.rt,
                    &r.id,
                    prev.as_ref(),
                    Some((&r.value, &r.index)),
                )
                .await
                {
                    Ok(()) => {
                        kept.push((i, r));
                        kept_previous.push(prev);
                    }
                    Err(e) => outcomes[i] = Some(Err(e)),
                }
            }
            now_round = kept;
            previous = kept_previous;
        }
        let mut versions = Vec::with_capacity(now_round.len());
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
                    let (lu, body) = restamp(r, head, now)?;
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

impl Records {
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
                self.now(),
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
        policy::check(actor, self.now(), "*", Interaction::Create)?;
        let prepared = &batch.0;
        let keys = &self.keys;
        self.retrying(|mut tx| async move {
            let (outcomes, patients) =
                import_in(&mut tx, prepared, keys, &self.store, self.now()).await?;
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
}
