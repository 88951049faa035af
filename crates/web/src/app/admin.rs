//! User administration for the `admin` role: users, their roles (with the scopes each role
//! grants), adding, disabling and enabling users, resetting their second factor.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ironchart_records::{RecordsError, Role};
use serde::Deserialize;

use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

struct UserRow {
    username: String,
    roles: String,
    patient: String,
    mfa: &'static str,
    state: &'static str,
    disabled: bool,
}

struct RoleRow {
    name: &'static str,
    description: &'static str,
    scopes: String,
    mfa: &'static str,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Option<Nav>,
    csrf: String,
    users: Vec<UserRow>,
    roles: Vec<RoleRow>,
    notice: Option<String>,
    error: Option<String>,
}

async fn users_view(
    state: &AppState,
    me: &SignedIn,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let users = state
        .records
        .list_users(&me.actor)
        .await?
        .into_iter()
        .map(|u| UserRow {
            roles: u
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            patient: u.patient.clone().unwrap_or_default(),
            mfa: if u.mfa_enrolled {
                "set up"
            } else if u.mfa_required {
                "required, not set up"
            } else {
                "off"
            },
            state: if u.disabled {
                "disabled"
            } else if u.locked_until.is_some() {
                "locked out"
            } else {
                "active"
            },
            disabled: u.disabled,
            username: u.username,
        })
        .collect();
    let roles = Role::ALL
        .iter()
        .map(|r| RoleRow {
            name: r.as_str(),
            description: r.describe(),
            scopes: r.scopes().to_string(),
            mfa: if r.requires_mfa() {
                "always"
            } else {
                "when configured"
            },
        })
        .collect();
    Ok(page(
        status,
        &UsersPage {
            nav: Some(me.nav()),
            csrf: me.session.csrf_token.clone(),
            users,
            roles,
            notice,
            error,
        },
    ))
}

pub(crate) async fn users(
    State(state): State<AppState>,
    me: SignedIn,
) -> Result<Response, PageError> {
    me.require(Role::Admin)?;
    users_view(&state, &me, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct AddForm {
    #[serde(default)]
    csrf: String,
    username: String,
    role: String,
    #[serde(default)]
    patient: String,
    password: String,
}

pub(crate) async fn add_user(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    me.require(Role::Admin)?;
    let Ok(role) = Role::parse(&form.role) else {
        return users_view(
            &state,
            &me,
            StatusCode::BAD_REQUEST,
            None,
            Some("Choose a role.".into()),
        )
        .await;
    };
    let patient = Some(form.patient.trim()).filter(|p| !p.is_empty());
    match state
        .records
        .add_user(&me.actor, &form.username, &[role], patient, &form.password)
        .await
    {
        Ok(u) => {
            users_view(
                &state,
                &me,
                StatusCode::OK,
                Some(format!("Added {}.", u.username)),
                None,
            )
            .await
        }
        Err(RecordsError::BadRequest { message, .. } | RecordsError::Conflict(message)) => {
            users_view(&state, &me, StatusCode::BAD_REQUEST, None, Some(message)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    username: String,
    action: String,
}

pub(crate) async fn user_action(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    me.require(Role::Admin)?;
    let r = &state.records;
    let result = match form.action.as_str() {
        "disable" => r.set_user_disabled(&me.actor, &form.username, true).await,
        "enable" => r.set_user_disabled(&me.actor, &form.username, false).await,
        "reset-mfa" => r.reset_mfa(&me.actor, &form.username).await,
        _ => Err(RecordsError::BadRequest {
            message: "unknown action".into(),
            expression: None,
        }),
    };
    match result {
        Ok(u) => {
            let what = match form.action.as_str() {
                "disable" => "disabled; their sessions and tokens have ended",
                "enable" => "enabled",
                _ => "will set up two-step sign-in again at their next sign-in",
            };
            users_view(
                &state,
                &me,
                StatusCode::OK,
                Some(format!("{} {what}.", u.username)),
                None,
            )
            .await
        }
        Err(RecordsError::BadRequest { message, .. }) => {
            users_view(&state, &me, StatusCode::BAD_REQUEST, None, Some(message)).await
        }
        Err(e) => Err(e.into()),
    }
}
