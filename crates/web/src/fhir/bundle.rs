//! Bundles the API returns: search sets, histories and batch/transaction responses.

use axum::http::StatusCode;
use ironchart_fhir::search::SearchQuery;
use ironchart_records::{Actor, AuditAction, BundleOutcome, HistoryPage, Resource, ResourcePage};
use serde_json::{Map, Value, json};

use super::error::{self, ApiError};
use crate::AppState;

fn now_instant() -> String {
    ironchart_fhir::Instant::now().to_string()
}

fn encode_pairs(pairs: &[(String, String)], cursor: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "_cursor") {
        s.append_pair(k, v);
    }
    if let Some(c) = cursor {
        s.append_pair("_cursor", c);
    }
    s.finish()
}

fn link(relation: &str, url: String) -> Value {
    json!({ "relation": relation, "url": url })
}

fn url_with(base: &str, path: &str, query: String) -> String {
    if query.is_empty() {
        [base, "/", path].concat()
    } else {
        [base, "/", path, "?", &query].concat()
    }
}

fn resource_value(r: &Resource) -> Value {
    r.value()
}

fn full_url(base: &str, r: &Resource) -> String {
    [base, "/", &r.resource_type, "/", &r.id].concat()
}

/// A `searchset` Bundle for one page, written straight to JSON text: the stored resources are
/// spliced in as they are (they are JSON we wrote), never parsed and re-serialized.
pub(crate) fn searchset(
    base: &str,
    rtype: &str,
    pairs: &[(String, String)],
    query: &SearchQuery,
    page: ResourcePage,
) -> String {
    let body_len: usize = page
        .matches
        .iter()
        .chain(&page.included)
        .map(|r| r.json.as_ref().map_or(4, Vec::len) + 160)
        .sum();
    let mut out = String::with_capacity(body_len + 1024);
    out.push_str("{\"resourceType\":\"Bundle\",\"id\":");
    push_json_str(&mut out, &uuid::Uuid::new_v4().to_string());
    out.push_str(",\"meta\":{\"lastUpdated\":");
    push_json_str(&mut out, &now_instant());
    out.push_str("},\"type\":\"searchset\"");
    if let Some(total) = page.total {
        out.push_str(",\"total\":");
        out.push_str(&total.to_string());
    }
    let current_cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let mut links = vec![link(
        "self",
        url_with(base, rtype, encode_pairs(pairs, current_cursor)),
    )];
    if let Some(next) = &page.next {
        links.push(link(
            "next",
            url_with(base, rtype, encode_pairs(pairs, Some(next))),
        ));
    }
    if let Some(prev) = &page.previous {
        links.push(link(
            "previous",
            url_with(base, rtype, encode_pairs(pairs, Some(prev))),
        ));
    }
    out.push_str(",\"link\":");
    out.push_str(&Value::Array(links).to_string());
    let mut first = true;
    let mut entry = |out: &mut String, r: &Resource, mode: &str| {
        out.push_str(if first { ",\"entry\":[" } else { "," });
        first = false;
        out.push_str("{\"fullUrl\":");
        push_json_str(out, &full_url(base, r));
        out.push_str(",\"resource\":");
        match r.json.as_deref().map(std::str::from_utf8) {
            Some(Ok(text)) => out.push_str(text),
            _ => out.push_str("null"),
        }
        out.push_str(",\"search\":{\"mode\":\"");
        out.push_str(mode);
        out.push_str("\"}}");
    };
    for r in &page.matches {
        entry(&mut out, r, "match");
    }
    for r in &page.included {
        entry(&mut out, r, "include");
    }
    if !query.ignored.is_empty() {
        let issues = query
            .ignored
            .iter()
            .map(|p| {
                error::issue(
                    "warning",
                    "not-supported",
                    &format!("ignored: {}", p.reason),
                    Some(&p.name),
                )
            })
            .collect();
        out.push_str(if first { ",\"entry\":[" } else { "," });
        first = false;
        let e = json!({ "resource": error::outcome(issues), "search": { "mode": "outcome" } });
        out.push_str(&e.to_string());
    }
    if !first {
        out.push(']');
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

/// A `history` Bundle, newest first.
pub(crate) fn history(
    base: &str,
    path: &str,
    pairs: &[(String, String)],
    page: HistoryPage,
) -> Value {
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert("meta".into(), json!({ "lastUpdated": now_instant() }));
    bundle.insert("type".into(), json!("history"));
    if let Some(total) = page.total {
        bundle.insert("total".into(), json!(total));
    }
    let current_cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let mut links = vec![link(
        "self",
        url_with(base, path, encode_pairs(pairs, current_cursor)),
    )];
    if let Some(next) = &page.next {
        links.push(link(
            "next",
            url_with(base, path, encode_pairs(pairs, Some(next))),
        ));
    }
    bundle.insert("link".into(), Value::Array(links));
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|r| {
            let url = [r.resource_type.as_str(), "/", &r.id].concat();
            let mut e = json!({
                "fullUrl": full_url(base, r),
                "request": {
                    "method": r.method,
                    "url": if r.method == "POST" { r.resource_type.to_string() } else { url },
                },
                "response": {
                    "status": if r.deleted { "204" } else if r.version == 1 { "201" } else { "200" },
                    "etag": format!("W/\"{}\"", r.version),
                    "lastModified": r.last_updated.to_string(),
                }
            });
            if !r.deleted {
                e["resource"] = resource_value(r);
            }
            e
        })
        .collect();
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

/// The response Bundle of a batch or transaction, entries in request order.
pub(crate) fn response_bundle(
    base: &str,
    kind: &str,
    outcomes: Vec<BundleOutcome<(u16, Value)>>,
) -> Value {
    let entries: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            BundleOutcome::Written { created, resource } => json!({
                "fullUrl": full_url(base, &resource),
                "resource": resource_value(&resource),
                "response": {
                    "status": status_text(if created { 201 } else { 200 }),
                    "location": format!("{}/{}/_history/{}", resource.resource_type, resource.id, resource.version),
                    "etag": format!("W/\"{}\"", resource.version),
                    "lastModified": resource.last_updated.to_string(),
                }
            }),
            BundleOutcome::Deleted => json!({ "response": { "status": status_text(204) } }),
            BundleOutcome::Get((status, body)) => json!({
                "resource": body,
                "response": { "status": status_text(status) }
            }),
            BundleOutcome::Failed(e) => {
                let api = ApiError::from(e);
                json!({
                    "response": {
                        "status": status_text(api.status.as_u16()),
                        "outcome": api.outcome,
                    }
                })
            }
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": format!("{kind}-response"),
        "entry": entries,
    })
}

/// Most bytes the GET entries of one batch or transaction may add to its response. An entry
/// that would go beyond gets a 413 outcome instead of its body, and the GET entries after it
/// are not run: the response is never built beyond this bound (plus one entry).
pub(crate) const MAX_BUNDLE_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The response bytes left to the GET entries of one Bundle.
#[derive(Clone)]
pub(crate) struct ResponseBudget(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl ResponseBudget {
    pub(crate) fn new(bytes: usize) -> ResponseBudget {
        ResponseBudget(std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(
            bytes,
        )))
    }

    /// Takes `bytes` from the budget; `false` (and the budget spent) when there were not as
    /// many left.
    fn take(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        let left = self.0.load(Ordering::SeqCst);
        if bytes > left {
            self.0.store(0, Ordering::SeqCst);
            false
        } else {
            self.0.store(left - bytes, Ordering::SeqCst);
            true
        }
    }

    fn spent(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) == 0
    }
}

fn over_budget() -> (u16, Value) {
    let e = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-costly",
        format!(
            "the response of this Bundle would exceed {} MiB; ask for fewer or smaller results",
            MAX_BUNDLE_RESPONSE_BYTES / (1024 * 1024)
        ),
        None,
    );
    (e.status.as_u16(), e.outcome)
}

/// Answers a GET entry of a batch or transaction: a read, vread or search, within `budget`.
pub(crate) async fn entry_get(
    state: &AppState,
    actor: &Actor,
    url: &str,
    budget: &ResponseBudget,
) -> (u16, Value) {
    if budget.spent() {
        return over_budget();
    }
    let (status, body, size) = entry_get_unbounded(state, actor, url).await;
    if budget.take(size) {
        (status, body)
    } else {
        over_budget()
    }
}

/// A GET entry's status, body and the size of its body in bytes.
async fn entry_get_unbounded(state: &AppState, actor: &Actor, url: &str) -> (u16, Value, usize) {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, q),
        None => (url, ""),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let sized = |r: Resource| {
        let size = r.json.as_ref().map_or(0, Vec::len);
        (r.value(), size)
    };
    let result: Result<(Value, usize), ApiError> = match segments.as_slice() {
        [rtype] => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            super::search_bundle(state, actor, false, rtype, pairs)
                .await
                .map(|text| {
                    let size = text.len();
                    (serde_json::from_str(&text).unwrap_or(Value::Null), size)
                })
        }
        // ironchart's own audit log is served as AuditEvents, in a Bundle as on its own.
        ["AuditEvent", id] => super::audit_event::read(state, actor, id).await.map(|v| {
            let size = v.to_string().len();
            (v, size)
        }),
        [rtype, id] => {
            match super::named_instance(state, actor, AuditAction::Read, rtype, id).await {
                Ok((rt, id)) => state
                    .records
                    .read(actor, rt, &id)
                    .await
                    .map(sized)
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            }
        }
        [rtype, id, "_history", vid] => {
            match super::named_instance(state, actor, AuditAction::Vread, rtype, id).await {
                Ok((rt, id)) => match vid.parse::<i64>() {
                    Ok(version) => state
                        .records
                        .vread(actor, rt, &id, version)
                        .await
                        .map(sized)
                        .map_err(ApiError::from),
                    Err(_) => Err(ironchart_records::RecordsError::NotFound(
                        rtype.to_string(),
                        format!("{id}/_history/{vid}"),
                    )
                    .into()),
                },
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::bad_request(format!(
            "unsupported GET '{url}' in a Bundle"
        ))),
    };
    match result {
        Ok((v, size)) => (200, v, size),
        Err(e) => {
            let size = e.outcome.to_string().len();
            (e.status.as_u16(), e.outcome, size)
        }
    }
}
