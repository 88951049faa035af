//! Writes: create, update and delete, each a new version written in one transaction with its
//! audit entry; and the pieces transactions and imports share (validation, stamping, indexing,
//! the patient compartment).

use std::time::Duration;

use ironchart_fhir::extract::{IndexEntry, IndexValue, extract};
use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::{Id, ResourceType};
use ironchart_security::scope::Interaction;
use ironchart_store::{NewVersion, Sensitivity, VersionHead, Visibility, WriteTx};
use serde_json::{Map, Value};
use tracing::instrument;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::clock::Instant;
use crate::keys::Keys;
use crate::policy::{self, Hidden};
use crate::read::named_patients;
use crate::resource::{Resource, WriteOutcome};
use crate::service::{check_type, new_id};
use crate::{Records, RecordsError, Result};

/// How many times a write is retried when a concurrent writer got there first.
const WRITE_RETRIES: usize = 20;

/// Most search-index values one resource may have (a `413` beyond): each is a row written while
/// the writer is held.
pub const MAX_INDEX_VALUES: usize = 10_000;

/// What a write needs besides the transaction: who writes, what they may see, the keys.
pub(crate) struct WriteCtx<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) vis: Visibility,
    pub(crate) keys: &'a Keys,
    pub(crate) base: Option<&'a str>,
    /// The time of the write (a version's time is this, or just after the version it replaces).
    pub(crate) now: Instant,
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
) -> Result<Option<Id>> {
    if query.filters.is_empty() {
        return Err(RecordsError::bad(
            "a conditional create needs search criteria",
            None,
        ));
    }
    let found = tx.search_ids(query, 2, vis).await?;
    match found.len() {
        0 => Ok(None),
        // (Ids read back from the store were checked when they were written.)
        1 => Ok(found.into_iter().next().and_then(|(id, _)| Id::parse(&id))),
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
    resource_type: ResourceType,
    id: &Id,
    mut value: Value,
    if_match: Option<i64>,
    method: &'static str,
) -> Result<(WriteOutcome, AuditEntry)> {
    let (rt, id_text) = (resource_type.as_str(), id.as_str());
    let head: Option<VersionHead> = tx.head_for_update(rt, id_text).await?;
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
        check_current(tx, ctx, rt, id_text).await?;
    }
    let version = head.as_ref().map_or(1, |h| h.version + 1);
    let last_updated = next_time(ctx.now, head.as_ref());
    let body = stamped(&mut value, id_text, version, last_updated)?;
    let (index, patient) = index_of(rt, id_text, &value, ctx.base)?;
    crate::lock::check_unlocked(tx, rt, id_text, head.as_ref(), Some((&value, &index))).await?;
    let created = head.as_ref().is_none_or(|h| h.deleted);
    if let Some(p) = &ctx.vis.compartment
        && patient.as_deref() != Some(p.patient.as_str())
    {
        return Err(RecordsError::Forbidden(
            "a patient-context actor may only write to their own record".into(),
        ));
    }
    tx.put(NewVersion {
        res_type: rt,
        res_id: id_text,
        version,
        previous: head.as_ref(),
        last_updated,
        deleted: false,
        method,
        body: Some(ctx.keys.seal(rt, id_text, version, &body)),
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
        .resource(rt, id_text, Some(version))
        .patients(patient);
    Ok((
        WriteOutcome {
            created,
            resource: Resource {
                resource_type,
                id: id.clone(),
                version,
                last_updated: Instant::from_millis(last_updated),
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
    crate::lock::check_unlocked(tx, resource_type, id, Some(&head), None).await?;
    let current = tx.read(resource_type, id).await?;
    let patient = current.as_ref().and_then(|v| v.patient.clone());
    // The deletion keeps the resource's sensitivity: its earlier versions stay as protected.
    let sensitivity = current
        .as_ref()
        .map_or(Sensitivity::Normal, |v| v.sensitivity);
    let version = head.version + 1;
    tx.put(NewVersion {
        res_type: resource_type,
        res_id: id,
        version,
        previous: Some(&head),
        last_updated: next_time(ctx.now, Some(&head)),
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
pub(crate) fn next_time(now: Instant, head: Option<&VersionHead>) -> i64 {
    let now = now.as_millis();
    head.map_or(now, |h| now.max(h.last_updated + 1))
}

/// Stamps a version's `id` and `meta` (see [`stamp`]) and returns its stored JSON.
pub(crate) fn stamped(
    value: &mut Value,
    id: &str,
    version: i64,
    last_updated: i64,
) -> Result<Vec<u8>> {
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

impl Records {
    /// What a write by `actor` needs: what they may see and the current data keys.
    pub(crate) async fn write_ctx<'a>(&'a self, actor: &'a Actor) -> Result<WriteCtx<'a>> {
        let vis = self.visibility(actor).await?;
        self.keys.refresh(&self.store, false).await?;
        Ok(WriteCtx {
            actor,
            vis,
            keys: &self.keys,
            base: self.base_url(),
            now: self.now(),
        })
    }

    /// Creates a resource with a server-assigned id. With `if_none_exist`, a conditional create:
    /// one existing match is returned instead (not created), several are a 412.
    #[instrument(skip_all)]
    pub async fn create(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        value: Value,
        if_none_exist: Option<&SearchQuery>,
    ) -> Result<WriteOutcome> {
        let result = self
            .create_inner(actor, resource_type, value, if_none_exist)
            .await;
        self.audit_refusal(actor, AuditAction::Create, &resource_type, None, result)
            .await
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        value: Value,
        if_none_exist: Option<&SearchQuery>,
    ) -> Result<WriteOutcome> {
        check_writable(&resource_type)?;
        policy::check(actor, self.now(), &resource_type, Interaction::Create)?;
        let value = prepare(&resource_type, value, None, self.resource_limit)?;
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
    pub(crate) async fn audit_refusal<T>(
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
        resource_type: ResourceType,
        id: &Id,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        let result = self
            .update_inner(actor, resource_type, id, value, if_match)
            .await;
        self.audit_refusal(actor, AuditAction::Update, &resource_type, Some(id), result)
            .await
    }

    async fn update_inner(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        id: &Id,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        check_writable(&resource_type)?;
        policy::check(actor, self.now(), &resource_type, Interaction::Update)?;
        let value = prepare(&resource_type, value, Some(id), self.resource_limit)?;
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
                        policy::check(actor, self.now(), &resource_type, Interaction::Create)?;
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
        resource_type: ResourceType,
        id: &Id,
    ) -> Result<Option<i64>> {
        let result = self.delete_inner(actor, &resource_type, id).await;
        self.audit_refusal(actor, AuditAction::Delete, &resource_type, Some(id), result)
            .await
    }

    async fn delete_inner(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<i64>> {
        check_writable(resource_type)?;
        policy::check(actor, self.now(), resource_type, Interaction::Delete)?;
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
