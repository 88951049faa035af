//! The web app's pages: sign-in (password, second factor, enrolment, first-admin setup), one's
//! sessions, user administration, the audit report and break-the-glass. Server-rendered with
//! askama; no inline script or style (the stylesheet is `/static/app.css`).
//!
//! Sessions live in the database; the browser holds only a random id in the `__Host-ironchart`
//! cookie (Secure, HttpOnly, SameSite=Strict). Every state-changing form carries the session's
//! CSRF token (or, before sign-in, a double-submit token), and [`crate::csrf`] refuses
//! cross-site requests before any handler runs.

mod account;
mod admin;
mod audit;
mod chart;
mod documents;
mod growth;
mod lists;
mod results;
mod signin;
mod visit;
mod vitals;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ironchart_records::{Actor, Client, Role, Session, SessionStage};

use crate::AppState;
use crate::client::ClientIp;

pub(crate) const SESSION_COOKIE: &str = "__Host-ironchart";
pub(crate) const PRE_COOKIE: &str = "__Host-ironchart-pre";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(account::home))
        .route("/login", get(signin::login_page).post(signin::login))
        .route("/login/code", get(signin::code_page).post(signin::code))
        .route("/login/enrol", get(signin::enrol_page).post(signin::enrol))
        .route("/logout", post(signin::logout))
        .route("/logout/everywhere", post(account::logout_everywhere))
        .route("/setup", get(signin::setup_page).post(signin::setup))
        .route("/account/sessions", get(account::sessions))
        .route("/account/sessions/end", post(account::end_session))
        .route("/admin/users", get(admin::users))
        .route("/admin/users/add", post(admin::add_user))
        .route("/admin/users/action", post(admin::user_action))
        .route("/patients", get(chart::patients))
        .route("/patients/{id}", get(chart::chart))
        .route("/patients/{id}/results", get(results::results))
        .route("/patients/{id}/trend", get(results::trend))
        .route(
            "/patients/{id}/results/{report}/review",
            post(results::review),
        )
        .route("/patients/{id}/visits", post(visit::start))
        .route("/patients/{id}/visits/{enc}", get(visit::visit))
        .route(
            "/patients/{id}/visits/{enc}/vitals",
            post(visit::record_vitals),
        )
        .route("/patients/{id}/visits/{enc}/note", post(visit::write_note))
        .route(
            "/patients/{id}/visits/{enc}/diagnoses",
            post(visit::add_diagnosis),
        )
        .route("/patients/{id}/visits/{enc}/orders", post(visit::add_order))
        .route(
            "/patients/{id}/visits/{enc}/prescriptions",
            post(visit::prescribe),
        )
        .route("/patients/{id}/visits/{enc}/sign", post(visit::sign))
        .route(
            "/patients/{id}/visits/{enc}/addenda",
            post(visit::add_addendum),
        )
        .route(
            "/patients/{id}/prescriptions/{mr}",
            get(visit::prescription),
        )
        .route(
            "/patients/{id}/documents",
            get(documents::documents).post(documents::upload).layer(
                // The server's own body limit bounds it; the handler reads an oversized file
                // to its end and says so.
                axum::extract::DefaultBodyLimit::disable(),
            ),
        )
        .route(
            "/patients/{id}/documents/{doc}/file",
            get(documents::download),
        )
        .route(
            "/patients/{id}/documents/{doc}/preview",
            get(documents::preview),
        )
        .route("/patients/{id}/growth", get(growth::growth))
        .route("/patients/{id}/lists", get(lists::lists))
        .route("/patients/{id}/lists/problems", post(lists::add_problem))
        .route("/patients/{id}/lists/allergies", post(lists::add_allergy))
        .route(
            "/patients/{id}/lists/immunizations",
            post(lists::add_immunization),
        )
        .route(
            "/patients/{id}/lists/{kind}/{rid}/status",
            post(lists::change_status),
        )
        .route(
            "/patients/{id}/lists/{kind}/{rid}/history",
            get(lists::history),
        )
        .route("/account/units", post(visit::set_units))
        .route("/terminology/{list}", get(visit::lookup))
        .route("/audit", get(audit::report))
        .route("/audit/export.csv", get(audit::export))
        .route(
            "/break-glass",
            get(account::break_glass_page).post(account::break_glass),
        )
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

/// The value of one cookie.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 100)
}

/// A `Set-Cookie` value: host-only, HTTPS-only, invisible to scripts, never sent cross-site.
pub(crate) fn set_cookie(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn client_of(parts: &Parts) -> Client {
    Client {
        address: parts
            .extensions
            .get::<ClientIp>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// The request's client (address, browser), as an extractor.
pub(crate) struct ClientInfo(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientInfo(client_of(parts)))
    }
}

/// The browser's session, whatever its stage, if it has a live one.
pub(crate) struct MaybeSession(pub Option<(String, Session)>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(MaybeSession(None));
        };
        let client = client_of(parts);
        let session = state.records.session(&value, &client).await?;
        Ok(MaybeSession(session.map(|s| (value, s))))
    }
}

/// A signed-in browser session: the only way a page handler gets an [`Actor`]. Without one, a
/// page request is sent to the sign-in page.
pub(crate) struct SignedIn {
    pub session: Session,
    pub actor: Actor,
    /// Seconds of inactivity after which the session ends.
    pub idle_seconds: u64,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let MaybeSession(session) = MaybeSession::from_request_parts(parts, state).await?;
        match session {
            Some((_, session)) if session.stage == SessionStage::Active => {
                let Some(actor) = session.actor.clone() else {
                    return Err(PageError::SignIn);
                };
                let request_id = uuid::Uuid::new_v4().simple().to_string();
                let source = client_of(parts).address;
                Ok(SignedIn {
                    actor: actor.for_request(source, Some(request_id)),
                    session,
                    idle_seconds: state.records.session_policy().idle.as_secs(),
                })
            }
            _ => Err(PageError::SignIn),
        }
    }
}

impl SignedIn {
    pub(crate) fn nav(&self) -> Nav {
        let mut nav = Nav::of(&self.session);
        nav.idle_seconds = self.idle_seconds;
        nav
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        if ironchart_records::constant_time_eq(token.as_bytes(), self.session.csrf_token.as_bytes())
        {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }

    pub(crate) fn require(&self, role: Role) -> Result<(), PageError> {
        if self.actor.has_role(role) {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }
}

/// What the header shows a signed-in user.
pub(crate) struct Nav {
    pub username: String,
    pub csrf: String,
    pub admin: bool,
    pub auditor: bool,
    pub clinician: bool,
    /// May find and open patients' charts (a patient uses the portal instead).
    pub patients: bool,
    /// The signed-in user's roles, as shown in the top bar.
    pub roles: String,
    /// Seconds of inactivity before sign-out (the page warns before it happens); 0: unknown.
    pub idle_seconds: u64,
}

impl Nav {
    pub(crate) fn of(session: &Session) -> Nav {
        let roles = &session.user.roles;
        Nav {
            username: session.user.username.clone(),
            csrf: session.csrf_token.clone(),
            roles: roles
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", "),
            idle_seconds: 0,
            admin: roles.contains(&Role::Admin),
            auditor: roles.contains(&Role::Auditor),
            clinician: roles.iter().any(|r| r.can_break_glass()),
            patients: session.actor.as_ref().is_some_and(|a| {
                a.patient().is_none()
                    && a.scopes()
                        .allows("Patient", ironchart_records::Interaction::Search)
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub nav: Option<Nav>,
    pub heading: String,
    pub message: String,
    pub link: Option<(String, String)>,
}

/// Renders a page.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template error");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page request that cannot go on: a readable page (or a redirect to sign in).
#[derive(Debug)]
pub(crate) enum PageError {
    SignIn,
    Csrf,
    Forbidden,
    Records(ironchart_records::RecordsError),
}

impl From<ironchart_records::RecordsError> for PageError {
    fn from(e: ironchart_records::RecordsError) -> Self {
        PageError::Records(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use ironchart_records::RecordsError as E;
        let (status, heading, message) = match self {
            PageError::SignIn => return Redirect::to("/login").into_response(),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form was stale or came from another site. Go back, reload the page and try again.".to_string(),
            ),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not include this page.".to_string(),
            ),
            PageError::Records(E::AuditUnavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The audit log is unavailable, so nothing was done. Try again shortly.".to_string(),
            ),
            PageError::Records(e @ (E::NotFound(..) | E::Gone(..))) => {
                (StatusCode::NOT_FOUND, "Not found", e.to_string())
            }
            PageError::Records(e @ (E::BadRequest { .. } | E::Conflict(_) | E::Locked(_))) => {
                (StatusCode::BAD_REQUEST, "Not done", e.to_string())
            }
            PageError::Records(e @ (E::Forbidden(_) | E::Restricted(_))) => {
                (StatusCode::FORBIDDEN, "Not allowed", e.to_string())
            }
            PageError::Records(E::Entry { source, .. }) => {
                return PageError::Records(*source).into_response();
            }
            PageError::Records(E::Unauthorized) => {
                return Redirect::to("/login").into_response();
            }
            PageError::Records(e) => {
                tracing::error!(error = %e, "page error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request could not be completed; the error has been logged.".to_string(),
                )
            }
        };
        page(
            status,
            &MessagePage {
                nav: None,
                heading: heading.to_string(),
                message,
                link: Some(("/".into(), "Back to the start".into())),
            },
        )
    }
}

/// `yyyy-mm-dd hh:mm UTC` for a time in ms.
pub(crate) fn display_time(ms: i64) -> String {
    let iso = ironchart_fhir::datetime::format_instant(ms);
    format!(
        "{} {} UTC",
        iso.get(..10).unwrap_or_default(),
        iso.get(11..16).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(values: &[String]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(header::COOKIE, v);
            }
        }
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever `Cookie` headers a client sends, reading one never panics and yields a
        /// short, non-empty value or nothing.
        #[test]
        fn any_cookie_header_is_read_safely(values in prop::collection::vec("[ -~]{0,120}", 0..4)) {
            let h = headers(&values);
            for name in [SESSION_COOKIE, PRE_COOKIE, ""] {
                if let Some(v) = cookie(&h, name) {
                    prop_assert!(!v.is_empty() && v.len() <= 100);
                }
            }
        }

        /// Our cookie is found among any others, in any header, and never confused with a
        /// cookie whose name merely contains ours.
        #[test]
        fn the_session_cookie_is_found_among_others(
            others in prop::collection::vec(("[a-zA-Z_-]{1,12}", "[a-zA-Z0-9]{0,20}"), 0..5),
            value in "[a-f0-9]{1,64}",
            place in any::<prop::sample::Index>(),
        ) {
            let mut pairs: Vec<String> = others
                .iter()
                .filter(|(n, _)| n != SESSION_COOKIE)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            pairs.push(format!("x{SESSION_COOKIE}=decoy"));
            let at = place.index(pairs.len() + 1);
            pairs.insert(at, format!("{SESSION_COOKIE}={value}"));
            let h = headers(&[pairs.join("; ")]);
            prop_assert_eq!(cookie(&h, SESSION_COOKIE), Some(value));
        }
    }
}
