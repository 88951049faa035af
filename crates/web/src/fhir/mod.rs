//! The FHIR R4 REST API: routes, request parsing at the edge, and responses.

pub(crate) mod audit_event;
mod bundle;
mod capability;
pub mod error;
mod request;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use ironchart_fhir::bundle::version_of_etag;
use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::{Id, ResourceType};
use ironchart_records::{Actor, AuditAction, HistoryScope, RecordsError, Resource};
use serde_json::Value;

use crate::AppState;
use error::ApiError;
use request::{Authed, FhirBody, Prefer, QueryPairs, check_accept};

/// The media type of every FHIR response.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(system_bundle).get(system_search))
        .route("/fhir/", post(system_bundle).get(system_search))
        .route("/fhir/_history", get(system_history))
        .route("/fhir/{rtype}", get(search_get).post(create))
        .route("/fhir/{rtype}/_search", post(search_post))
        .route("/fhir/{rtype}/_history", get(type_history))
        .route("/fhir/{rtype}/{id}", get(read).put(update).delete(delete))
        .route("/fhir/{rtype}/{id}/_history", get(instance_history))
        .route("/fhir/{rtype}/{id}/_history/{vid}", get(vread))
        .method_not_allowed_fallback(error::method_not_allowed)
}

/// A FHIR JSON response with a status.
pub(crate) fn fhir_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    fhir_response(status, value.to_string())
}

/// `ETag`, `Last-Modified` and (for writes) `Location` of a resource version.
fn version_headers(r: &mut Response, state: &AppState, res: &Resource, location: bool) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", res.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(res.last_updated.as_millis())) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let url = format!(
            "{}/{}/{}/_history/{}",
            state.config.fhir_base, res.resource_type, res.id, res.version
        );
        if let Ok(v) = HeaderValue::from_str(&url) {
            h.insert(header::LOCATION, v.clone());
            h.insert(header::CONTENT_LOCATION, v);
        }
    }
}

/// An HTTP date (IMF-fixdate) from ms since the epoch.
fn http_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = ironchart_fhir::datetime::civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

async fn metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    Ok(json_response(
        StatusCode::OK,
        &capability::statement(&state.config.fhir_base),
    ))
}

/// What a URL names: its resource type and, for an instance, its id. A name that is no R4
/// resource type is a 404, as is an id outside the FHIR id grammar for a read (`for_write`: a
/// 400); either is audited as a failed `action` before it is refused.
pub(crate) async fn named(
    state: &AppState,
    actor: &Actor,
    action: AuditAction,
    rtype: &str,
    id: Option<&str>,
) -> Result<(ResourceType, Option<Id>), ApiError> {
    let parsed = match (ResourceType::parse(rtype), id) {
        (None, _) => Err(ApiError::from(RecordsError::UnknownType(rtype.to_string()))),
        (Some(rt), None) => Ok((rt, None)),
        (Some(rt), Some(text)) => match Id::parse(text) {
            Some(id) => Ok((rt, Some(id))),
            None if action == AuditAction::Update => Err(ApiError::bad_request(format!(
                "'{text}' is not a valid resource id"
            ))),
            None => Err(RecordsError::NotFound(rt.to_string(), text.to_string()).into()),
        },
    };
    if parsed.is_err() {
        state
            .records
            .audit_unnamed(actor, action, rtype, id)
            .await?;
    }
    parsed
}

/// [`named`] for a URL with an id.
pub(crate) async fn named_instance(
    state: &AppState,
    actor: &Actor,
    action: AuditAction,
    rtype: &str,
    id: &str,
) -> Result<(ResourceType, Id), ApiError> {
    match named(state, actor, action, rtype, Some(id)).await? {
        (rt, Some(id)) => Ok((rt, id)),
        (rt, None) => Err(RecordsError::NotFound(rt.to_string(), id.to_string()).into()),
    }
}

async fn read(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    if rtype == "AuditEvent" {
        let event = audit_event::read(&state, &actor, &id).await?;
        return Ok(json_response(StatusCode::OK, &event));
    }
    let (rt, id) = named_instance(&state, &actor, AuditAction::Read, &rtype, &id).await?;
    let res = state.records.read(&actor, rt, &id).await?;
    // If-None-Match: the client's copy is current.
    if let Some(tag) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && (tag.trim() == "*"
            || tag
                .split(',')
                .any(|t| version_of_etag(t) == Some(res.version)))
    {
        let mut r = fhir_response(StatusCode::NOT_MODIFIED, Body::empty());
        version_headers(&mut r, &state, &res, false);
        return Ok(r);
    }
    let body = res.json.clone().unwrap_or_default();
    let mut r = fhir_response(StatusCode::OK, body);
    version_headers(&mut r, &state, &res, false);
    Ok(r)
}

async fn vread(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path((rtype, id, vid)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let (rt, id) = named_instance(&state, &actor, AuditAction::Vread, &rtype, &id).await?;
    // A version that is no number names no version.
    let Ok(version) = vid.parse::<i64>() else {
        state
            .records
            .audit_unnamed(&actor, AuditAction::Vread, &rtype, Some(&id))
            .await?;
        return Err(RecordsError::NotFound(rtype, format!("{id}/_history/{vid}")).into());
    };
    let res = state.records.vread(&actor, rt, &id, version).await?;
    let body = res.json.clone().unwrap_or_default();
    let mut r = fhir_response(StatusCode::OK, body);
    version_headers(&mut r, &state, &res, false);
    Ok(r)
}

/// The answer to a successful create or update, following `Prefer: return=`.
fn write_response(
    state: &AppState,
    status: StatusCode,
    res: &Resource,
    prefer: &Prefer,
) -> Response {
    let mut r = match prefer.return_pref.as_deref() {
        Some("minimal") => fhir_response(status, Body::empty()),
        Some("OperationOutcome") => json_response(
            status,
            &error::outcome(vec![error::issue(
                "information",
                "informational",
                &format!(
                    "{}/{} version {} stored",
                    res.resource_type, res.id, res.version
                ),
                None,
            )]),
        ),
        _ => fhir_response(status, res.json.clone().unwrap_or_default()),
    };
    version_headers(&mut r, state, res, true);
    r
}

async fn create(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path(rtype): Path<String>,
    body: FhirBody,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let prefer = Prefer::from_headers(&headers);
    let (rt, _) = named(&state, &actor, AuditAction::Create, &rtype, None).await?;
    let condition = match headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        Some(text) => {
            let text = text.trim_start_matches('?');
            let text = text.rsplit_once('?').map_or(text, |(_, q)| q);
            let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect();
            Some(SearchQuery::parse(&rtype, &pairs).map_err(|e| search_error(&rtype, e))?)
        }
        None => None,
    };
    let outcome = state
        .records
        .create(&actor, rt, body.0, condition.as_ref())
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(write_response(&state, status, &outcome.resource, &prefer))
}

async fn update(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path((rtype, id)): Path<(String, String)>,
    body: FhirBody,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let prefer = Prefer::from_headers(&headers);
    let if_match =
        match headers.get(header::IF_MATCH) {
            Some(v) => Some(v.to_str().ok().and_then(version_of_etag).ok_or_else(|| {
                ApiError::bad_request("If-Match must be an ETag such as W/\"3\"")
            })?),
            None => None,
        };
    let (rt, id) = named_instance(&state, &actor, AuditAction::Update, &rtype, &id).await?;
    let outcome = state
        .records
        .update(&actor, rt, &id, body.0, if_match)
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(write_response(&state, status, &outcome.resource, &prefer))
}

async fn delete(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (rt, _) = named(&state, &actor, AuditAction::Delete, &rtype, None).await?;
    // An id outside the grammar names nothing: deleting it deletes nothing (delete is idempotent).
    let version = match Id::parse(&id) {
        Some(id) => state.records.delete(&actor, rt, &id).await?,
        None => None,
    };
    let mut r = fhir_response(StatusCode::NO_CONTENT, Body::empty());
    if let Some(v) = version
        && let Ok(h) = HeaderValue::from_str(&format!("W/\"{v}\""))
    {
        r.headers_mut().insert(header::ETAG, h);
    }
    Ok(r)
}

fn search_error(rtype: &str, e: ironchart_fhir::search::SearchError) -> ApiError {
    if !ironchart_fhir::is_resource_type(rtype) {
        return ApiError::from(ironchart_records::RecordsError::UnknownType(
            rtype.to_string(),
        ));
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid",
        format!("search parameter '{}': {}", e.param, e.message),
        None,
    )
}

async fn search_get(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path(rtype): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    run_search(&state, &actor, &headers, &rtype, q.0).await
}

async fn search_post(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path(rtype): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let form = request::read_form(request, state.config.body_limit).await?;
    let mut pairs = q.0;
    pairs.extend(form);
    run_search(&state, &actor, &headers, &rtype, pairs).await
}

pub(crate) async fn run_search(
    state: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    rtype: &str,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let text = search_bundle(
        state,
        actor,
        Prefer::from_headers(headers).strict,
        rtype,
        pairs,
    )
    .await?;
    Ok(fhir_response(StatusCode::OK, text))
}

pub(crate) async fn search_bundle(
    state: &AppState,
    actor: &Actor,
    strict: bool,
    rtype: &str,
    pairs: Vec<(String, String)>,
) -> Result<String, ApiError> {
    if !ironchart_fhir::is_resource_type(rtype) {
        return Err(ironchart_records::RecordsError::UnknownType(rtype.to_string()).into());
    }
    if rtype == "AuditEvent" {
        return audit_event::search(state, actor, &pairs).await;
    }
    let query = SearchQuery::parse(rtype, &pairs).map_err(|e| search_error(rtype, e))?;
    if strict && !query.ignored.is_empty() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            outcome: error::outcome(
                query
                    .ignored
                    .iter()
                    .map(|p| error::issue("error", "not-supported", &p.reason, Some(&p.name)))
                    .collect(),
            ),
        });
    }
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let page = state.records.search(actor, &query, cursor).await?;
    Ok(bundle::searchset(
        &state.config.fhir_base,
        rtype,
        &pairs,
        &query,
        page,
    ))
}

async fn system_search() -> Result<Response, ApiError> {
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "not-supported",
        "search across all resource types is not supported: search one type, e.g. GET /fhir/Patient?name=…",
        None,
    ))
}

async fn history_response(
    state: &AppState,
    actor: &Actor,
    scope: HistoryScope,
    pairs: Vec<(String, String)>,
    self_path: &str,
) -> Result<Response, ApiError> {
    let mut since = None;
    let mut count = 50usize;
    let mut cursor = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "_since" => {
                since = Some(
                    ironchart_fhir::datetime::parse_date_range(v)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("_since '{v}' is not an instant"))
                        })?
                        .low,
                );
            }
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::bad_request("_count must be a non-negative integer"))?
                    .min(1000);
            }
            "_cursor" => cursor = Some(v.clone()),
            _ => {}
        }
    }
    let page = state
        .records
        .history(actor, &scope, since, count, cursor.as_deref())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &bundle::history(&state.config.fhir_base, self_path, &pairs, page),
    ))
}

async fn system_history(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    history_response(&state, &actor, HistoryScope::System, q.0, "_history").await
}

async fn type_history(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path(rtype): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let path = format!("{rtype}/_history");
    let (rt, _) = named(&state, &actor, AuditAction::History, &rtype, None).await?;
    let scope = HistoryScope::Type(rt);
    history_response(&state, &actor, scope, q.0, &path).await
}

async fn instance_history(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    Path((rtype, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let path = format!("{rtype}/{id}/_history");
    let (rt, id) = named_instance(&state, &actor, AuditAction::History, &rtype, &id).await?;
    let scope = HistoryScope::Instance(rt, id);
    history_response(&state, &actor, scope, q.0, &path).await
}

async fn system_bundle(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    q: QueryPairs,
    body: FhirBody,
) -> Result<Response, ApiError> {
    check_accept(&headers, &q)?;
    let value = body.0;
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "POST to the base URL takes a batch or transaction Bundle",
            Some("resourceType"),
        ));
    }
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind != "transaction" && kind != "batch" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Bundle.type must be 'transaction' or 'batch'",
            Some("Bundle.type"),
        ));
    }
    // A transaction must be valid as a whole (its entries' resources included); a batch's
    // envelope must be, while each entry's resource is judged on its own.
    let checked = if kind == "transaction" {
        ironchart_fhir::validate::validate_resource(&value)
    } else {
        let mut shell = value.clone();
        if let Some(entries) = shell.get_mut("entry").and_then(Value::as_array_mut) {
            for e in entries.iter_mut() {
                if let Some(obj) = e.as_object_mut() {
                    obj.shift_remove("resource");
                }
            }
            entries.retain(|e| e.as_object().is_none_or(|o| !o.is_empty()));
            if entries.is_empty()
                && let Some(obj) = shell.as_object_mut()
            {
                obj.shift_remove("entry");
            }
        }
        ironchart_fhir::validate::validate_resource(&shell)
    };
    checked.map_err(|issues| ApiError::from(ironchart_records::RecordsError::Invalid(issues)))?;

    let get_state = state.clone();
    let get_actor = actor.clone();
    let budget = bundle::ResponseBudget::new(bundle::MAX_BUNDLE_RESPONSE_BYTES);
    let get = move |url: &str| {
        let state = get_state.clone();
        let actor = get_actor.clone();
        let url = url.to_string();
        let budget = budget.clone();
        Box::pin(async move { bundle::entry_get(&state, &actor, &url, &budget).await })
            as std::pin::Pin<Box<dyn Future<Output = (u16, Value)> + Send>>
    };
    let entries = ironchart_fhir::bundle::entries(&value);
    let outcomes = if kind == "transaction" {
        state.records.transaction(&actor, entries, &get).await?
    } else {
        state.records.batch(&actor, entries, &get).await?
    };
    Ok(json_response(
        StatusCode::OK,
        &bundle::response_bundle(&state.config.fhir_base, &kind, outcomes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
