//! Batch and transaction Bundles.
//!
//! A transaction runs all its writes in one database transaction (all or nothing), in the order
//! FHIR prescribes (DELETE, POST, PUT, then GET), after giving every `POST` entry its new id and
//! rewriting the `urn:uuid:` references between entries. A batch runs each entry on its own.

use std::collections::HashMap;

use ironchart_fhir::bundle::{BundleEntry, EntryError};
use serde_json::Value;

use ironchart_security::scope::Interaction;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::policy;
use crate::resource::{Resource, WriteOutcome};
use crate::service::new_id;
use crate::write::{check_writable, conditional_match, delete_in, prepare, write_version};
use crate::{Records, RecordsError, Result};
use ironchart_fhir::Id;

/// The outcome of one Bundle entry, for the response Bundle.
#[derive(Debug)]
pub enum BundleOutcome<G> {
    /// A write and the resulting resource: `created` for a new resource (a conditional create
    /// that found one, or an update of an existing one, is not).
    Written { created: bool, resource: Resource },
    /// A delete: 204 (or 204 for nothing to delete).
    Deleted,
    /// A read or search: what the caller's [`GetHandler`] answered.
    Get(G),
    /// A failed batch entry.
    Failed(RecordsError),
}

/// A GET entry is answered by the caller (the web layer knows how to render reads and searches);
/// it hands us this callback, and gets its answers back in the outcomes.
pub type GetHandler<'a, G> =
    &'a (dyn Fn(&str) -> std::pin::Pin<Box<dyn Future<Output = G> + Send + 'a>> + Sync);

/// Most entries of one batch or transaction Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;
/// Most GET entries (reads and searches) of one Bundle: each is a request of its own, and the
/// rate limit counts the Bundle once.
pub const MAX_BUNDLE_READS: usize = 200;

/// Refuses a Bundle beyond the limits (413).
fn check_limits(entries: &[Result<BundleEntry, EntryError>]) -> Result<()> {
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(RecordsError::TooLarge(format!(
            "a Bundle may have at most {MAX_BUNDLE_ENTRIES} entries; this one has {}",
            entries.len()
        )));
    }
    let reads = entries
        .iter()
        .filter(|e| matches!(e, Ok(BundleEntry::Get { .. })))
        .count();
    if reads > MAX_BUNDLE_READS {
        return Err(RecordsError::TooLarge(format!(
            "a Bundle may have at most {MAX_BUNDLE_READS} GET entries; this one has {reads}"
        )));
    }
    Ok(())
}

/// What an entry that could not be parsed fails with.
fn unparsed(e: EntryError) -> RecordsError {
    match e.unknown_type() {
        Some(t) => RecordsError::UnknownType(t.to_string()),
        None => RecordsError::BadRequest {
            message: e.message,
            expression: e.expression,
        },
    }
}

/// The resources of a transaction Bundle that an import can write like NDJSON (many Bundles in
/// one database transaction), when every entry is a `PUT Type/id` or an unconditional
/// `POST Type`: POSTs get their new ids, and references to the entries' full URLs become
/// `Type/id`. `None` for any other Bundle (conditional entries, DELETE, GET …), which goes
/// through [`Records::transaction`]. (The importer keeps each Bundle all or nothing: it writes
/// one only when every resource of it is valid.)
pub fn transaction_resources(bundle: &Value) -> Option<Vec<Value>> {
    transaction_into_resources(bundle.clone()).ok()
}

/// [`transaction_resources`] taking the Bundle, without copying its resources; the Bundle back
/// when it is not one an import can write so.
pub fn transaction_into_resources(mut bundle: Value) -> std::result::Result<Vec<Value>, Value> {
    match take_transaction_resources(&mut bundle) {
        Some(resources) => Ok(resources),
        None => Err(bundle),
    }
}

fn take_transaction_resources(bundle: &mut Value) -> Option<Vec<Value>> {
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return None;
    }
    // Checked whole before anything is taken, so that a Bundle given back is intact.
    let simple = bundle
        .get("entry")
        .and_then(Value::as_array)?
        .iter()
        .all(|e| simple_entry(e).is_some());
    if !simple {
        return None;
    }
    let entries = bundle.get_mut("entry").and_then(Value::as_array_mut)?;
    let mut map = HashMap::new();
    let mut resources = Vec::with_capacity(entries.len());
    for entry in entries.iter_mut() {
        let (rt, id) = simple_entry(entry)?;
        let id = id.unwrap_or_else(|| new_id().into_string());
        if let Some(full) = entry.get("fullUrl").and_then(Value::as_str) {
            map.insert(full.to_string(), [rt.as_str(), "/", &id].concat());
        }
        let mut resource = entry.get_mut("resource").map(Value::take)?;
        if let Some(obj) = resource.as_object_mut() {
            obj.insert("id".into(), Value::String(id));
        }
        resources.push(resource);
    }
    for r in &mut resources {
        rewrite_references(r, &map);
    }
    Some(resources)
}

/// An entry an import can write as it is: its resource type and, for a PUT, its id.
fn simple_entry(entry: &Value) -> Option<(String, Option<String>)> {
    let request = entry.get("request")?;
    if ["ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince"]
        .iter()
        .any(|k| request.get(*k).is_some())
    {
        return None;
    }
    let url = request.get("url").and_then(Value::as_str)?;
    if url.contains('?') {
        return None;
    }
    let resource = entry.get("resource")?;
    let rt = resource.get("resourceType").and_then(Value::as_str)?;
    match (
        request.get("method").and_then(Value::as_str)?,
        url.split_once('/'),
    ) {
        ("PUT", Some((t, id))) if t == rt && ironchart_fhir::is_valid_id(id) => {
            match resource.get("id").and_then(Value::as_str) {
                Some(own) if own != id => None,
                _ => Some((rt.to_string(), Some(id.to_string()))),
            }
        }
        ("POST", None) if url == rt => Some((rt.to_string(), None)),
        _ => None,
    }
}

/// Replaces every `reference` (and any string value) equal to a mapped `urn:uuid:` full URL.
fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(new) = map.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, map)),
        Value::Object(obj) => obj.values_mut().for_each(|v| rewrite_references(v, map)),
        _ => {}
    }
}

impl Records {
    /// Runs a transaction Bundle atomically. On any failure nothing is written and the error of
    /// the failing entry is returned (with its index).
    pub async fn transaction<G: Send>(
        &self,
        actor: &Actor,
        entries: Vec<std::result::Result<BundleEntry, EntryError>>,
        get: GetHandler<'_, G>,
    ) -> Result<Vec<BundleOutcome<G>>> {
        let result = self.transaction_inner(actor, entries, get).await;
        if let Err(e) = &result {
            let outcome = if e.is_denial() {
                Outcome::Denied
            } else {
                Outcome::Failure
            };
            let detail = match e {
                RecordsError::Entry { index, .. } => {
                    format!("entry {index} failed; nothing written")
                }
                _ => "nothing written".to_string(),
            };
            self.audit(
                actor,
                vec![
                    AuditEntry::new(AuditAction::Transaction, outcome)
                        .patients(e.patients())
                        .detail(detail),
                ],
            )
            .await?;
        }
        result
    }

    async fn transaction_inner<G: Send>(
        &self,
        actor: &Actor,
        entries: Vec<std::result::Result<BundleEntry, EntryError>>,
        get: GetHandler<'_, G>,
    ) -> Result<Vec<BundleOutcome<G>>> {
        policy::live(actor, self.now())?;
        check_limits(&entries)?;
        let mut requests = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            requests.push(e.map_err(|e| entry_error(i, unparsed(e)))?);
        }
        // Give every POST its id up front and map its fullUrl to Type/id.
        let mut ids: Vec<Option<Id>> = vec![None; requests.len()];
        let mut map = HashMap::new();
        for (i, r) in requests.iter().enumerate() {
            if let BundleEntry::Create {
                resource_type,
                full_url,
                ..
            } = r
            {
                let id = new_id();
                if let Some(url) = full_url {
                    map.insert(url.clone(), [resource_type.as_str(), "/", &id].concat());
                }
                ids[i] = Some(id);
            }
        }
        // Check each write before starting (validation needs no database).
        let mut prepared: Vec<BundleEntry> = Vec::with_capacity(requests.len());
        for (i, r) in requests.into_iter().enumerate() {
            prepared.push(match r {
                BundleEntry::Create {
                    resource_type,
                    value,
                    full_url,
                    if_none_exist,
                } => {
                    check_writable(&resource_type).map_err(|e| entry_error(i, e))?;
                    policy::check(actor, self.now(), &resource_type, Interaction::Create)
                        .map_err(|e| entry_error(i, e))?;
                    let value = prepare(&resource_type, value, None, self.resource_limit)
                        .map_err(|e| entry_error(i, e))?;
                    BundleEntry::Create {
                        resource_type,
                        value,
                        full_url,
                        if_none_exist,
                    }
                }
                BundleEntry::Update {
                    resource_type,
                    id,
                    value,
                    if_match,
                } => {
                    check_writable(&resource_type).map_err(|e| entry_error(i, e))?;
                    policy::check(actor, self.now(), &resource_type, Interaction::Update)
                        .map_err(|e| entry_error(i, e))?;
                    let value = prepare(&resource_type, value, Some(&id), self.resource_limit)
                        .map_err(|e| entry_error(i, e))?;
                    BundleEntry::Update {
                        resource_type,
                        id,
                        value,
                        if_match,
                    }
                }
                BundleEntry::Delete { resource_type, id } => {
                    check_writable(&resource_type).map_err(|e| entry_error(i, e))?;
                    policy::check(actor, self.now(), &resource_type, Interaction::Delete)
                        .map_err(|e| entry_error(i, e))?;
                    BundleEntry::Delete { resource_type, id }
                }
                get @ BundleEntry::Get { .. } => get,
            });
        }
        let order = |r: &BundleEntry| match r {
            BundleEntry::Delete { .. } => 0,
            BundleEntry::Create { .. } => 1,
            BundleEntry::Update { .. } => 2,
            BundleEntry::Get { .. } => 3,
        };
        let mut sequence: Vec<usize> = (0..prepared.len()).collect();
        sequence.sort_by_key(|&i| order(&prepared[i]));

        let ctx = &self.write_ctx(actor).await?;
        let writes = self
            .retrying(|mut tx| {
                let prepared = &prepared;
                let ids = &ids;
                let sequence = &sequence;
                let mut map = map.clone();
                async move {
                    let mut audit = Vec::new();
                    let mut outcomes: Vec<Option<BundleOutcome<G>>> =
                        (0..prepared.len()).map(|_| None).collect();
                    // Conditional creates first: a match maps its fullUrl to the existing resource.
                    let mut existing_ids: Vec<Option<Id>> = vec![None; prepared.len()];
                    for (i, request) in prepared.iter().enumerate() {
                        if let BundleEntry::Create {
                            resource_type,
                            if_none_exist: Some(q),
                            full_url,
                            ..
                        } = request
                            && let Some(found) = conditional_match(&mut tx, q, &ctx.vis)
                                .await
                                .map_err(|e| entry_error(i, e))?
                        {
                            if let Some(url) = full_url {
                                map.insert(
                                    url.clone(),
                                    [resource_type.as_str(), "/", &found].concat(),
                                );
                            }
                            existing_ids[i] = Some(found);
                        }
                    }
                    for &i in sequence {
                        let outcome = match &prepared[i] {
                            BundleEntry::Delete { resource_type, id } => {
                                let (_, entry) = delete_in(&mut tx, ctx, resource_type, id)
                                    .await
                                    .map_err(|e| entry_error(i, e))?;
                                audit.extend(entry);
                                BundleOutcome::Deleted
                            }
                            BundleEntry::Create {
                                resource_type,
                                value,
                                ..
                            } => match existing_ids[i].clone() {
                                Some(existing_id) => {
                                    let current = tx
                                        .read(resource_type, &existing_id)
                                        .await
                                        .map_err(|e| entry_error(i, e.into()))?
                                        .ok_or_else(|| {
                                            entry_error(
                                                i,
                                                RecordsError::Conflict("vanished".into()),
                                            )
                                        })?;
                                    audit.push(
                                        AuditEntry::new(AuditAction::Read, Outcome::Success)
                                            .resource(
                                                resource_type,
                                                &existing_id,
                                                Some(current.version),
                                            )
                                            .patients(current.patient.clone()),
                                    );
                                    BundleOutcome::Written {
                                        created: false,
                                        resource: self
                                            .reveal(current)
                                            .await
                                            .map_err(|e| entry_error(i, e))?,
                                    }
                                }
                                None => {
                                    let id = ids[i].clone().unwrap_or_else(new_id);
                                    let mut value = value.clone();
                                    rewrite_references(&mut value, &map);
                                    let (WriteOutcome { resource, .. }, entry) = write_version(
                                        &mut tx,
                                        ctx,
                                        *resource_type,
                                        &id,
                                        value,
                                        None,
                                        "POST",
                                    )
                                    .await
                                    .map_err(|e| entry_error(i, e))?;
                                    audit.push(entry);
                                    BundleOutcome::Written {
                                        created: true,
                                        resource,
                                    }
                                }
                            },
                            BundleEntry::Update {
                                resource_type,
                                id,
                                value,
                                if_match,
                            } => {
                                let mut value = value.clone();
                                rewrite_references(&mut value, &map);
                                let (WriteOutcome { resource, created }, entry) = write_version(
                                    &mut tx,
                                    ctx,
                                    *resource_type,
                                    id,
                                    value,
                                    *if_match,
                                    "PUT",
                                )
                                .await
                                .map_err(|e| entry_error(i, e))?;
                                if created {
                                    policy::check(
                                        actor,
                                        self.now(),
                                        resource_type,
                                        Interaction::Create,
                                    )
                                    .map_err(|e| entry_error(i, e))?;
                                }
                                audit.push(entry);
                                BundleOutcome::Written { created, resource }
                            }
                            BundleEntry::Get { .. } => continue,
                        };
                        outcomes[i] = Some(outcome);
                    }
                    self.audit_in(&mut tx, actor, audit).await?;
                    tx.commit().await?;
                    Ok(outcomes)
                }
            })
            .await?;
        let mut result = Vec::with_capacity(prepared.len());
        for (i, (outcome, request)) in writes.into_iter().zip(&prepared).enumerate() {
            result.push(match (outcome, request) {
                (Some(o), _) => o,
                (None, BundleEntry::Get { url }) => BundleOutcome::Get(get(url).await),
                (None, _) => {
                    return Err(entry_error(
                        i,
                        RecordsError::bad("entry was not processed", None),
                    ));
                }
            });
        }
        Ok(result)
    }

    /// Runs a batch Bundle: each entry on its own; failures are reported per entry.
    pub async fn batch<G: Send>(
        &self,
        actor: &Actor,
        entries: Vec<std::result::Result<BundleEntry, EntryError>>,
        get: GetHandler<'_, G>,
    ) -> Result<Vec<BundleOutcome<G>>> {
        policy::live(actor, self.now())?;
        if let Err(e) = check_limits(&entries) {
            self.audit(
                actor,
                vec![
                    AuditEntry::new(AuditAction::Transaction, Outcome::Failure)
                        .detail("batch refused: over the limits; nothing done"),
                ],
            )
            .await?;
            return Err(e);
        }
        let written = |w: WriteOutcome| BundleOutcome::Written {
            created: w.created,
            resource: w.resource,
        };
        let mut result = Vec::with_capacity(entries.len());
        for entry in entries {
            let outcome = match entry {
                Err(err) => BundleOutcome::Failed(unparsed(err)),
                Ok(BundleEntry::Get { url }) => BundleOutcome::Get(get(&url).await),
                Ok(BundleEntry::Delete { resource_type, id }) => {
                    match self.delete(actor, resource_type, &id).await {
                        Ok(_) => BundleOutcome::Deleted,
                        Err(err) => BundleOutcome::Failed(err),
                    }
                }
                Ok(BundleEntry::Create {
                    resource_type,
                    value,
                    if_none_exist,
                    ..
                }) => match self
                    .create(actor, resource_type, value, if_none_exist.as_ref())
                    .await
                {
                    Ok(w) => written(w),
                    Err(err) => BundleOutcome::Failed(err),
                },
                Ok(BundleEntry::Update {
                    resource_type,
                    id,
                    value,
                    if_match,
                }) => match self
                    .update(actor, resource_type, &id, value, if_match)
                    .await
                {
                    Ok(w) => written(w),
                    Err(err) => BundleOutcome::Failed(err),
                },
            };
            result.push(outcome);
        }
        Ok(result)
    }
}

fn entry_error(index: usize, e: RecordsError) -> RecordsError {
    match e {
        already @ RecordsError::Entry { .. } => already,
        other => RecordsError::Entry {
            index,
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transactions_an_import_can_write() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:o", "resource": {"resourceType": "Observation", "id": "o1",
              "subject": {"reference": "urn:uuid:p"}},
             "request": {"method": "PUT", "url": "Observation/o1"}}
        ]});
        let resources = transaction_resources(&bundle).unwrap();
        let pid = resources[0]["id"].as_str().unwrap().to_string();
        assert_eq!(resources[1]["id"], "o1");
        assert_eq!(
            resources[1]["subject"]["reference"],
            format!("Patient/{pid}")
        );
        // Anything else goes through the transaction itself.
        for entry in [
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x|1"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/1"}}),
            json!({"request": {"method": "GET", "url": "Patient/1"}}),
            json!({"resource": {"resourceType": "Patient", "id": "2"}, "request": {"method": "PUT", "url": "Patient/1"}}),
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?identifier=x|1"}}),
        ] {
            let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry]});
            assert!(transaction_resources(&b).is_none(), "{b}");
        }
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": []});
        assert!(transaction_resources(&batch).is_none());
    }

    #[test]
    fn rewrite() {
        let mut v = json!({"subject":{"reference":"urn:uuid:1"},"x":["urn:uuid:2"]});
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/a".to_string())]);
        rewrite_references(&mut v, &map);
        assert_eq!(v["subject"]["reference"], "Patient/a");
        assert_eq!(v["x"][0], "urn:uuid:2");
    }
}
