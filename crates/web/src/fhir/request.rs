//! Request parsing at the edge: the bearer token, the body, the query, `Prefer` and `Accept`.

use axum::body::to_bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use ironchart_records::{Actor, RecordsError};
use serde_json::Value;

use super::error::ApiError;
use crate::AppState;

/// The authenticated caller of a FHIR request. Extracting it is the only way a handler gets an
/// [`Actor`]; without a valid bearer token the request ends here with a 401.
pub struct Authed(pub Actor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<crate::client::ClientIp>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string());
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let refused = match token {
            None => "no bearer token",
            Some(token) => match state.records.authenticate(token).await {
                Ok(actor) => return Ok(Authed(actor.for_request(source, Some(request_id)))),
                Err(RecordsError::Unauthorized) => {
                    "bearer token refused (unknown, expired or revoked)"
                }
                Err(e) => return Err(e.into()),
            },
        };
        // Refusals are audited too (the per-address rate limit bounds their number).
        state
            .records
            .audit_refused_credentials(source, Some(request_id), refused)
            .await?;
        Err(RecordsError::Unauthorized.into())
    }
}

/// The decoded query string.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        Ok(QueryPairs(
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ))
    }
}

/// A FHIR JSON request body: checked media type, size limit, UTF-8 and JSON syntax.
pub struct FhirBody(pub Value);

fn is_json_media_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/fhir+json"
        || media == "application/json"
        || media == "application/json+fhir"
}

async fn read_limited(request: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!("the request body is larger than the limit of {limit} bytes"),
            None,
        )
    };
    if let Some(len) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    to_bytes(request.into_body(), limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = err.source();
        }
        ApiError::bad_request("the request body could not be read")
    })
}

impl FromRequest<AppState> for FhirBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !is_json_media_type(&content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "the body must be application/fhir+json (or application/json)",
                None,
            ));
        }
        let bytes = read_limited(request, state.config.body_limit).await?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "structure",
                format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
                None,
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "structure",
                format!("the body is not valid JSON: {e}"),
                None,
            )
        })?;
        Ok(FhirBody(value))
    }
}

/// Reads an `application/x-www-form-urlencoded` body (for `POST _search`).
pub async fn read_form(request: Request, limit: usize) -> Result<Vec<(String, String)>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = read_limited(request, limit).await?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "POST _search takes application/x-www-form-urlencoded parameters",
            None,
        ));
    }
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The `Prefer` header's parts we honour.
#[derive(Debug, Default)]
pub struct Prefer {
    /// `return=minimal|representation|OperationOutcome`.
    pub return_pref: Option<String>,
    /// `handling=strict`.
    pub strict: bool,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for value in headers.get_all("prefer") {
            let Ok(text) = value.to_str() else { continue };
            for part in text.split([',', ';']) {
                let part = part.trim();
                if let Some(v) = part.strip_prefix("return=") {
                    p.return_pref = Some(v.trim_matches('"').to_string());
                } else if let Some(v) = part.strip_prefix("handling=") {
                    p.strict = v.trim_matches('"') == "strict";
                }
            }
        }
        p
    }
}

/// 406 unless the client accepts FHIR JSON (by `Accept` or `_format`).
pub fn check_accept(headers: &HeaderMap, q: &QueryPairs) -> Result<(), ApiError> {
    let not_acceptable = || {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "this server speaks FHIR JSON only (application/fhir+json)",
            None,
        )
    };
    if let Some((_, format)) = q.0.iter().find(|(k, _)| k == "_format") {
        let f = format.to_ascii_lowercase();
        if !(f == "json" || is_json_media_type(&f)) {
            return Err(not_acceptable());
        }
        return Ok(());
    }
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let Ok(accept) = accept.to_str() else {
        return Err(not_acceptable());
    };
    let ok = accept.split(',').any(|item| {
        let media = item
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        media.is_empty() || media == "*/*" || media == "application/*" || is_json_media_type(&media)
    });
    if ok { Ok(()) } else { Err(not_acceptable()) }
}
