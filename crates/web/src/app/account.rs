//! The signed-in user's own pages: home, sessions (and signing out of them), break-the-glass.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironchart_records::{AuditAction, AuditFilter, RecordsError, Role};
use serde::Deserialize;

use super::{Nav, PageError, SESSION_COOKIE, SignedIn, clear_cookie, display_time, page};
use crate::AppState;

/// A security alert shown to auditors on their home page.
struct Alert {
    time: String,
    actor: String,
    action: String,
    patients: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Option<Nav>,
    username: String,
    roles: String,
    patient: Option<String>,
    alerts: Option<Vec<Alert>>,
    /// Charts this user opened lately (`None`: not a user who opens charts).
    recent: Option<Vec<RecentChart>>,
    /// Results of this clinician's orders not yet acknowledged (`None`: not a clinician).
    unreviewed: Option<Vec<super::results::Unreviewed>>,
}

/// A chart on the home page's "recent charts".
pub(crate) struct RecentChart {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) born: String,
}

/// How far back the auditor's alert list reaches.
const ALERT_DAYS: u64 = 7;

pub(crate) async fn home(
    State(state): State<AppState>,
    me: SignedIn,
) -> Result<Response, PageError> {
    let roles: Vec<&str> = me.session.user.roles.iter().map(|r| r.as_str()).collect();
    let alerts = if me.actor.has_role(Role::Auditor) {
        let since = state
            .records
            .now()
            .minus(std::time::Duration::from_secs(ALERT_DAYS * 86_400));
        let rows = state
            .records
            .audit_entries(
                &me.actor,
                &AuditFilter {
                    from: Some(since),
                    actions: vec![AuditAction::BreakGlass, AuditAction::Lockout],
                    descending: true,
                    limit: 50,
                    ..AuditFilter::default()
                },
            )
            .await?;
        Some(
            rows.into_iter()
                .map(|r| Alert {
                    time: display_time(r.recorded.as_millis()),
                    actor: r.actor,
                    action: r.action,
                    patients: r.patients.join(" "),
                    detail: r.detail.unwrap_or_default(),
                })
                .collect(),
        )
    } else {
        None
    };
    let nav = me.nav();
    let recent = if nav.patients {
        Some(super::chart::recent_charts(&state, &me.actor).await?)
    } else {
        None
    };
    let unreviewed = if me.actor.roles().iter().any(|r| r.is_clinical()) {
        Some(super::results::unreviewed(&state, &me.actor).await?)
    } else {
        None
    };
    Ok(page(
        StatusCode::OK,
        &HomePage {
            nav: Some(nav),
            username: me.session.user.username.clone(),
            roles: roles.join(", "),
            patient: me.session.user.patient.clone(),
            alerts,
            recent,
            unreviewed,
        },
    ))
}

struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    expires: String,
    source: String,
    agent: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    nav: Option<Nav>,
    csrf: String,
    sessions: Vec<SessionRow>,
    notice: Option<String>,
}

async fn sessions_view(
    state: &AppState,
    me: &SignedIn,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let list = state.records.my_sessions(&me.actor, &me.session.id).await?;
    let sessions = list
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            created: display_time(s.created_at),
            last_seen: display_time(s.last_seen),
            expires: display_time(s.expires_at),
            source: s.source.unwrap_or_default(),
            agent: s.user_agent.unwrap_or_default().chars().take(60).collect(),
            current: s.current,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &SessionsPage {
            nav: Some(me.nav()),
            csrf: me.session.csrf_token.clone(),
            sessions,
            notice,
        },
    ))
}

pub(crate) async fn sessions(
    State(state): State<AppState>,
    me: SignedIn,
) -> Result<Response, PageError> {
    sessions_view(&state, &me, None).await
}

#[derive(Deserialize)]
pub(crate) struct EndForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

pub(crate) async fn end_session(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<EndForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let ended = state.records.end_my_session(&me.actor, &form.id).await?;
    let notice = if ended {
        "That session was signed out."
    } else {
        "That session had already ended."
    };
    sessions_view(&state, &me, Some(notice.into())).await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    state.records.sign_out_everywhere(&me.actor).await?;
    let mut response = Redirect::to("/login?done=out").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    Ok(response)
}

#[derive(Template)]
#[template(path = "break_glass.html")]
struct BreakGlassPage {
    nav: Option<Nav>,
    csrf: String,
    patient: String,
    error: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn break_glass_page(me: SignedIn) -> Result<Response, PageError> {
    if !me.actor.roles().iter().any(|r| r.can_break_glass()) {
        return Err(PageError::Forbidden);
    }
    Ok(page(
        StatusCode::OK,
        &BreakGlassPage {
            nav: Some(me.nav()),
            csrf: me.session.csrf_token.clone(),
            patient: String::new(),
            error: None,
            notice: None,
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct BreakGlassForm {
    #[serde(default)]
    csrf: String,
    patient: String,
    reason: String,
    #[serde(default)]
    minutes: Option<String>,
}

pub(crate) async fn break_glass(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<BreakGlassForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    if !me.actor.roles().iter().any(|r| r.can_break_glass()) {
        return Err(PageError::Forbidden);
    }
    let minutes = form
        .minutes
        .as_deref()
        .and_then(|m| m.trim().parse::<u32>().ok())
        .unwrap_or(60);
    let patient = form
        .patient
        .trim()
        .trim_start_matches("Patient/")
        .to_string();
    let (status, error, notice) = match state
        .records
        .break_glass(&me.actor, &patient, &form.reason, minutes)
        .await
    {
        Ok(until) => (
            StatusCode::OK,
            None,
            Some(format!(
                "Restricted records of Patient/{patient} are open to you until {}. The auditors have been alerted.",
                display_time(until)
            )),
        ),
        Err(RecordsError::BadRequest { message, .. }) => {
            (StatusCode::BAD_REQUEST, Some(message), None)
        }
        Err(RecordsError::NotFound(..)) => (
            StatusCode::NOT_FOUND,
            Some(format!("There is no Patient/{patient}.")),
            None,
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(page(
        status,
        &BreakGlassPage {
            nav: Some(me.nav()),
            csrf: me.session.csrf_token.clone(),
            patient,
            error,
            notice,
        },
    ))
}
