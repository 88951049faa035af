//! Batch and transaction Bundles.
//!
//! A transaction runs all its writes in one database transaction (all or nothing), in the order
//! FHIR prescribes (DELETE, POST, PUT, then GET), after giving every `POST` entry its new id and
//! rewriting the `urn:uuid:` references between entries. A batch runs each entry on its own.

use std::collections::HashMap;

use ironchart_fhir::search::SearchQuery;
use serde_json::Value;

use ironchart_security::scope::Interaction;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::policy;
use crate::resource::{Resource, WriteOutcome};
use crate::service::new_id;
use crate::write::{check_writable, conditional_match, delete_in, prepare, write_version};
use crate::{Records, RecordsError, Result};

/// The outcome of one Bundle entry, for the response Bundle.
#[derive(Debug)]
pub enum BundleOutcome {
    /// A write: `status` is the HTTP status (200/201), with the resulting resource.
    Written { status: u16, resource: Resource },
    /// A delete: 204 (or 204 for nothing to delete).
    Deleted,
    /// A read or search: the resource or search result, as JSON (built by the caller).
    Get { status: u16, body: Value },
    /// A failed batch entry.
    Failed(RecordsError),
}

/// A parsed Bundle entry request.
#[derive(Debug, Clone)]
enum EntryRequest {
    Create {
        resource_type: String,
        value: Value,
        full_url: Option<String>,
        if_none_exist: Option<String>,
    },
    Update {
        resource_type: String,
        id: String,
        value: Value,
        if_match: Option<i64>,
    },
    Delete {
        resource_type: String,
        id: String,
    },
    Get {
        url: String,
    },
}

/// A GET entry is answered by the caller (the web layer knows how to render reads and searches);
/// it hands us this callback.
pub type GetHandler<'a> =
    &'a (dyn Fn(&str) -> std::pin::Pin<Box<dyn Future<Output = (u16, Value)> + Send + 'a>> + Sync);

fn parse_entry(index: usize, entry: &Value) -> Result<EntryRequest> {
    let at = |field: &str| format!("Bundle.entry[{index}].{field}");
    let request = entry.get("request").ok_or_else(|| {
        RecordsError::bad(
            "entry.request is required in a batch or transaction",
            Some(&at("request")),
        )
    })?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if url.is_empty() {
        return Err(RecordsError::bad(
            "entry.request.url is required",
            Some(&at("request.url")),
        ));
    }
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource = entry.get("resource").cloned();
    match method {
        "POST" => {
            let [resource_type] = segments.as_slice() else {
                return Err(RecordsError::bad(
                    format!("POST needs a type URL, not '{url}'"),
                    Some(&at("request.url")),
                ));
            };
            let value = resource
                .ok_or_else(|| RecordsError::bad("POST needs a resource", Some(&at("resource"))))?;
            Ok(EntryRequest::Create {
                resource_type: (*resource_type).to_string(),
                value,
                full_url: entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                if_none_exist: request
                    .get("ifNoneExist")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        }
        "PUT" => {
            let [resource_type, id] = segments.as_slice() else {
                return Err(RecordsError::bad(
                    format!(
                        "PUT needs a Type/id URL, not '{url}' (conditional update is not supported)"
                    ),
                    Some(&at("request.url")),
                ));
            };
            if query.is_some() {
                return Err(RecordsError::bad(
                    "conditional update is not supported",
                    Some(&at("request.url")),
                ));
            }
            let value = resource
                .ok_or_else(|| RecordsError::bad("PUT needs a resource", Some(&at("resource"))))?;
            let if_match = match request.get("ifMatch").and_then(Value::as_str) {
                Some(etag) => Some(parse_etag(etag).ok_or_else(|| {
                    RecordsError::bad(
                        format!("ifMatch '{etag}' is not an ETag"),
                        Some(&at("request.ifMatch")),
                    )
                })?),
                None => None,
            };
            Ok(EntryRequest::Update {
                resource_type: (*resource_type).to_string(),
                id: (*id).to_string(),
                value,
                if_match,
            })
        }
        "DELETE" => {
            let [resource_type, id] = segments.as_slice() else {
                return Err(RecordsError::bad(
                    format!(
                        "DELETE needs a Type/id URL, not '{url}' (conditional delete is not supported)"
                    ),
                    Some(&at("request.url")),
                ));
            };
            Ok(EntryRequest::Delete {
                resource_type: (*resource_type).to_string(),
                id: (*id).to_string(),
            })
        }
        "GET" | "HEAD" => Ok(EntryRequest::Get {
            url: url.to_string(),
        }),
        other => Err(RecordsError::bad(
            format!("request.method '{other}' is not supported"),
            Some(&at("request.method")),
        )),
    }
}

/// `W/"3"` or `"3"` or `3` → 3.
pub fn parse_etag(etag: &str) -> Option<i64> {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"').parse().ok()
}

/// Most entries of one batch or transaction Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;
/// Most GET entries (reads and searches) of one Bundle: each is a request of its own, and the
/// rate limit counts the Bundle once.
pub const MAX_BUNDLE_READS: usize = 200;

/// A Bundle's entries, after checking it is within the limits (413 beyond).
fn entries(bundle: &Value) -> Result<&[Value]> {
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(RecordsError::TooLarge(format!(
            "a Bundle may have at most {MAX_BUNDLE_ENTRIES} entries; this one has {}",
            entries.len()
        )));
    }
    let reads = entries
        .iter()
        .filter(|e| {
            e.get("request")
                .and_then(|r| r.get("method"))
                .and_then(Value::as_str)
                == Some("GET")
        })
        .count();
    if reads > MAX_BUNDLE_READS {
        return Err(RecordsError::TooLarge(format!(
            "a Bundle may have at most {MAX_BUNDLE_READS} GET entries; this one has {reads}"
        )));
    }
    Ok(entries)
}

/// The pairs of a query string, form-decoded (`%XX` and `+`); an invalid escape is kept as it
/// is.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
        let id = id.unwrap_or_else(new_id);
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
    pub async fn transaction(
        &self,
        actor: &Actor,
        bundle: &Value,
        get: GetHandler<'_>,
    ) -> Result<Vec<BundleOutcome>> {
        let result = self.transaction_inner(actor, bundle, get).await;
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

    async fn transaction_inner(
        &self,
        actor: &Actor,
        bundle: &Value,
        get: GetHandler<'_>,
    ) -> Result<Vec<BundleOutcome>> {
        policy::live(actor, self.now())?;
        let raw = entries(bundle)?;
        let mut requests = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            requests.push(parse_entry(i, e).map_err(|e| entry_error(i, e))?);
        }
        // Give every POST its id up front and map its fullUrl to Type/id.
        let mut ids: Vec<Option<String>> = vec![None; requests.len()];
        let mut map = HashMap::new();
        for (i, r) in requests.iter().enumerate() {
            if let EntryRequest::Create {
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
        let mut prepared: Vec<EntryRequest> = Vec::with_capacity(requests.len());
        for (i, r) in requests.into_iter().enumerate() {
            prepared.push(match r {
                EntryRequest::Create {
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
                    EntryRequest::Create {
                        resource_type,
                        value,
                        full_url,
                        if_none_exist,
                    }
                }
                EntryRequest::Update {
                    resource_type,
                    id,
                    value,
                    if_match,
                } => {
                    check_writable(&resource_type).map_err(|e| entry_error(i, e))?;
                    policy::check(actor, self.now(), &resource_type, Interaction::Update)
                        .map_err(|e| entry_error(i, e))?;
                    if !ironchart_fhir::is_valid_id(&id) {
                        return Err(entry_error(
                            i,
                            RecordsError::bad(format!("'{id}' is not a valid id"), None),
                        ));
                    }
                    let value = prepare(&resource_type, value, Some(&id), self.resource_limit)
                        .map_err(|e| entry_error(i, e))?;
                    EntryRequest::Update {
                        resource_type,
                        id,
                        value,
                        if_match,
                    }
                }
                EntryRequest::Delete { resource_type, id } => {
                    check_writable(&resource_type).map_err(|e| entry_error(i, e))?;
                    policy::check(actor, self.now(), &resource_type, Interaction::Delete)
                        .map_err(|e| entry_error(i, e))?;
                    EntryRequest::Delete { resource_type, id }
                }
                get @ EntryRequest::Get { .. } => get,
            });
        }
        let order = |r: &EntryRequest| match r {
            EntryRequest::Delete { .. } => 0,
            EntryRequest::Create { .. } => 1,
            EntryRequest::Update { .. } => 2,
            EntryRequest::Get { .. } => 3,
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
                    let mut outcomes: Vec<Option<BundleOutcome>> =
                        (0..prepared.len()).map(|_| None).collect();
                    // Conditional creates first: a match maps its fullUrl to the existing resource.
                    let mut existing_ids: Vec<Option<String>> = vec![None; prepared.len()];
                    for (i, request) in prepared.iter().enumerate() {
                        if let EntryRequest::Create {
                            resource_type,
                            if_none_exist: Some(q),
                            full_url,
                            ..
                        } = request
                        {
                            let query = SearchQuery::parse(resource_type, &query_pairs(q))
                                .map_err(|e| {
                                    entry_error(
                                        i,
                                        RecordsError::bad(e.message, Some("ifNoneExist")),
                                    )
                                })?;
                            if let Some(found) = conditional_match(&mut tx, &query, &ctx.vis)
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
                    }
                    for &i in sequence {
                        let outcome = match &prepared[i] {
                            EntryRequest::Delete { resource_type, id } => {
                                let (_, entry) = delete_in(&mut tx, ctx, resource_type, id)
                                    .await
                                    .map_err(|e| entry_error(i, e))?;
                                audit.extend(entry);
                                BundleOutcome::Deleted
                            }
                            EntryRequest::Create {
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
                                        status: 200,
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
                                        resource_type,
                                        &id,
                                        value,
                                        None,
                                        "POST",
                                    )
                                    .await
                                    .map_err(|e| entry_error(i, e))?;
                                    audit.push(entry);
                                    BundleOutcome::Written {
                                        status: 201,
                                        resource,
                                    }
                                }
                            },
                            EntryRequest::Update {
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
                                    resource_type,
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
                                BundleOutcome::Written {
                                    status: if created { 201 } else { 200 },
                                    resource,
                                }
                            }
                            EntryRequest::Get { .. } => continue,
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
                (None, EntryRequest::Get { url }) => {
                    let (status, body) = get(url).await;
                    BundleOutcome::Get { status, body }
                }
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
    pub async fn batch(
        &self,
        actor: &Actor,
        bundle: &Value,
        get: GetHandler<'_>,
    ) -> Result<Vec<BundleOutcome>> {
        policy::live(actor, self.now())?;
        let entries = match entries(bundle) {
            Ok(entries) => entries,
            Err(e) => {
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
        };
        let mut result = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let outcome = match parse_entry(i, e) {
                Err(err) => BundleOutcome::Failed(err),
                Ok(EntryRequest::Get { url }) => {
                    let (status, body) = get(&url).await;
                    BundleOutcome::Get { status, body }
                }
                Ok(EntryRequest::Delete { resource_type, id }) => {
                    match self.delete(actor, &resource_type, &id).await {
                        Ok(_) => BundleOutcome::Deleted,
                        Err(err) => BundleOutcome::Failed(err),
                    }
                }
                Ok(EntryRequest::Create {
                    resource_type,
                    value,
                    if_none_exist,
                    ..
                }) => {
                    let query = match if_none_exist
                        .map(|q| SearchQuery::parse(&resource_type, &query_pairs(&q)))
                    {
                        Some(Err(e)) => {
                            result.push(BundleOutcome::Failed(RecordsError::bad(
                                e.message,
                                Some("ifNoneExist"),
                            )));
                            continue;
                        }
                        Some(Ok(q)) => Some(q),
                        None => None,
                    };
                    match self
                        .create(actor, &resource_type, value, query.as_ref())
                        .await
                    {
                        Ok(w) => BundleOutcome::Written {
                            status: if w.created { 201 } else { 200 },
                            resource: w.resource,
                        },
                        Err(err) => BundleOutcome::Failed(err),
                    }
                }
                Ok(EntryRequest::Update {
                    resource_type,
                    id,
                    value,
                    if_match,
                }) => match self
                    .update(actor, &resource_type, &id, value, if_match)
                    .await
                {
                    Ok(w) => BundleOutcome::Written {
                        status: if w.created { 201 } else { 200 },
                        resource: w.resource,
                    },
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
    fn etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("x"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(
            query_pairs("a%20b+c%2=%zz&&x"),
            vec![
                ("a b c%2".to_string(), "%zz".to_string()),
                ("x".to_string(), String::new())
            ]
        );
    }

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
