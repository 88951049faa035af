//! Cross-site request forgery: a state-changing request to the web app (anything but `GET`,
//! `HEAD` and `OPTIONS` outside `/fhir`) must come from our own pages. Browsers say where a
//! request comes from in `Sec-Fetch-Site` (or, older ones, `Origin`); a request from another site,
//! or one that says nothing, is refused here before any handler runs. Handlers then check the
//! form's per-session token (see `app`). The FHIR API authenticates with bearer tokens, which a
//! browser never attaches on its own, so it needs neither.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub(crate) async fn same_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let path = request.uri().path();
    if safe || path == "/fhir" || path.starts_with("/fhir/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = match (site, origin) {
        (Some("same-origin"), _) => true,
        (Some(_), _) => false,
        (None, Some(o)) => o == state.config.origin,
        (None, None) => false,
    };
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Cross-site request refused: submit the form from ironchart's own pages.",
        )
            .into_response();
    }
    next.run(request).await
}
