//! Sign-in pages: password, second factor, authenticator enrolment, sign-out, and the one-time
//! setup of the first administrator.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ironchart_records::{NewSession, RecordsError, SessionStage, SignInError, SignInFailure};
use serde::Deserialize;

use super::{
    ClientInfo, MaybeSession, Nav, PRE_COOKIE, PageError, SESSION_COOKIE, clear_cookie, cookie,
    page, set_cookie,
};
use crate::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    csrf: String,
    username: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolPage {
    nav: Option<Nav>,
    csrf: String,
    qr_svg: String,
    secret: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    nav: Option<Nav>,
    codes: Vec<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    nav: Option<Nav>,
    csrf: String,
    token: String,
    username: String,
    error: Option<String>,
}

/// A new random double-submit token for forms shown before sign-in.
fn pre_token() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}

/// Checks the double-submit token of a form shown before sign-in.
fn check_pre(headers: &HeaderMap, form_token: &str) -> Result<(), PageError> {
    match cookie(headers, PRE_COOKIE) {
        Some(c) if ironchart_records::constant_time_eq(c.as_bytes(), form_token.as_bytes()) => {
            Ok(())
        }
        _ => Err(PageError::Csrf),
    }
}

/// A page shown before sign-in, with a fresh double-submit token cookie.
fn pre_page(status: StatusCode, render: impl FnOnce(String) -> Response) -> Response {
    let token = pre_token();
    let mut response = render(token.clone());
    *response.status_mut() = status;
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(PRE_COOKIE, &token));
    response
}

fn login_view(
    status: StatusCode,
    username: &str,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    pre_page(status, |csrf| {
        page(
            StatusCode::OK,
            &LoginPage {
                nav: None,
                csrf,
                username: username.to_string(),
                error,
                notice,
            },
        )
    })
}

#[derive(Deserialize)]
pub(crate) struct Notice {
    #[serde(default)]
    done: Option<String>,
}

pub(crate) async fn login_page(
    MaybeSession(session): MaybeSession,
    Query(q): Query<Notice>,
) -> Response {
    if let Some((_, s)) = &session
        && s.stage == SessionStage::Active
    {
        return Redirect::to("/").into_response();
    }
    let notice = match q.done.as_deref() {
        Some("setup") => {
            Some("The administrator was created. Sign in to set up two-step sign-in.".to_string())
        }
        Some("out") => Some("You have signed out.".to_string()),
        _ => None,
    };
    login_view(StatusCode::OK, "", None, notice)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
}

/// Where a session goes next, with its new cookie.
fn continue_session(session: NewSession) -> Response {
    let to = match session.stage {
        SessionStage::Code => "/login/code",
        SessionStage::Enrol => "/login/enrol",
        SessionStage::Active => "/",
    };
    let mut response = Redirect::to(to).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session.cookie),
    );
    h.append(header::SET_COOKIE, clear_cookie(PRE_COOKIE));
    response
}

fn refused(e: SignInError) -> (StatusCode, String) {
    let status = match e {
        SignInError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    (status, e.to_string())
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    MaybeSession(old): MaybeSession,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    check_pre(&headers, &form.csrf)?;
    if form.username.len() > 200 || form.password.len() > 1024 {
        return Ok(login_view(
            StatusCode::UNAUTHORIZED,
            "",
            Some(SignInError::BadCredentials.to_string()),
            None,
        ));
    }
    // A session the browser already had (of any stage) ends: sign-in always starts a new one.
    if let Some((cookie, _)) = &old {
        state.records.sign_out(cookie, &client).await?;
    }
    match state
        .records
        .sign_in(&form.username, &form.password, &client)
        .await
    {
        Ok(session) => Ok(continue_session(session)),
        Err(SignInFailure::Refused(e)) => {
            let (status, message) = refused(e);
            Ok(login_view(status, &form.username, Some(message), None))
        }
        Err(SignInFailure::Records(e)) => Err(e.into()),
    }
}

/// The session in its second-factor stage, or a redirect to sign in.
async fn staged(
    session: Option<(String, ironchart_records::Session)>,
    stage: SessionStage,
) -> Result<(String, ironchart_records::Session), PageError> {
    match session {
        Some((c, s)) if s.stage == stage => Ok((c, s)),
        _ => Err(PageError::SignIn),
    }
}

pub(crate) async fn code_page(MaybeSession(session): MaybeSession) -> Result<Response, PageError> {
    let (_, s) = staged(session, SessionStage::Code).await?;
    Ok(page(
        StatusCode::OK,
        &CodePage {
            nav: None,
            csrf: s.csrf_token,
            error: None,
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    code: String,
}

pub(crate) async fn code(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    MaybeSession(session): MaybeSession,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let (cookie, s) = staged(session, SessionStage::Code).await?;
    if !ironchart_records::constant_time_eq(form.csrf.as_bytes(), s.csrf_token.as_bytes()) {
        return Err(PageError::Csrf);
    }
    match state
        .records
        .verify_code(&cookie, form.code.get(..64).unwrap_or(&form.code), &client)
        .await
    {
        Ok(new) => Ok(continue_session(new)),
        Err(SignInFailure::Refused(SignInError::NoSession)) => Err(PageError::SignIn),
        Err(SignInFailure::Refused(e)) => {
            let (status, message) = refused(e);
            Ok(page(
                status,
                &CodePage {
                    nav: None,
                    csrf: s.csrf_token,
                    error: Some(message),
                },
            ))
        }
        Err(SignInFailure::Records(e)) => Err(e.into()),
    }
}

async fn enrol_view(
    state: &AppState,
    cookie: &str,
    csrf: String,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    match state.records.begin_enrolment(cookie).await {
        Ok(e) => Ok(page(
            status,
            &EnrolPage {
                nav: None,
                csrf,
                qr_svg: e.qr_svg,
                secret: e.secret_base32,
                error,
            },
        )),
        Err(SignInFailure::Refused(_)) => Err(PageError::SignIn),
        Err(SignInFailure::Records(e)) => Err(e.into()),
    }
}

pub(crate) async fn enrol_page(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
) -> Result<Response, PageError> {
    let (cookie, s) = staged(session, SessionStage::Enrol).await?;
    enrol_view(&state, &cookie, s.csrf_token, StatusCode::OK, None).await
}

pub(crate) async fn enrol(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    MaybeSession(session): MaybeSession,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let (cookie, s) = staged(session, SessionStage::Enrol).await?;
    if !ironchart_records::constant_time_eq(form.csrf.as_bytes(), s.csrf_token.as_bytes()) {
        return Err(PageError::Csrf);
    }
    match state
        .records
        .confirm_enrolment(&cookie, form.code.get(..64).unwrap_or(&form.code), &client)
        .await
    {
        Ok((new, codes)) => {
            let mut response = page(StatusCode::OK, &RecoveryPage { nav: None, codes });
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &new.cookie));
            Ok(response)
        }
        Err(SignInFailure::Refused(SignInError::NoSession)) => Err(PageError::SignIn),
        Err(SignInFailure::Refused(e)) => {
            // A new secret is shown: the code was checked against the previous one.
            let (status, message) = refused(e);
            enrol_view(&state, &cookie, s.csrf_token, status, Some(message)).await
        }
        Err(SignInFailure::Records(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    MaybeSession(session): MaybeSession,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    if let Some((cookie, s)) = session {
        if !ironchart_records::constant_time_eq(form.csrf.as_bytes(), s.csrf_token.as_bytes()) {
            return Err(PageError::Csrf);
        }
        state.records.sign_out(&cookie, &client).await?;
    }
    let mut response = Redirect::to("/login?done=out").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct SetupQuery {
    #[serde(default)]
    token: String,
}

fn setup_view(status: StatusCode, token: &str, username: &str, error: Option<String>) -> Response {
    pre_page(status, |csrf| {
        page(
            StatusCode::OK,
            &SetupPage {
                nav: None,
                csrf,
                token: token.to_string(),
                username: username.to_string(),
                error,
            },
        )
    })
}

fn setup_gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        &super::MessagePage {
            nav: None,
            heading: "Setup link not valid".into(),
            message: "This setup link was already used or has expired. Restart ironchart to get a new one while no user exists, or ask your administrator.".into(),
            link: Some(("/login".into(), "Sign in".into())),
        },
    )
}

pub(crate) async fn setup_page(
    State(state): State<AppState>,
    Query(q): Query<SetupQuery>,
) -> Result<Response, PageError> {
    if q.token.len() > 100 || !state.records.setup_token_valid(&q.token).await? {
        return Ok(setup_gone());
    }
    Ok(setup_view(StatusCode::OK, &q.token, "", None))
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    #[serde(default)]
    csrf: String,
    token: String,
    username: String,
    password: String,
    password2: String,
}

pub(crate) async fn setup(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, PageError> {
    check_pre(&headers, &form.csrf)?;
    if form.token.len() > 100 || !state.records.setup_token_valid(&form.token).await? {
        return Ok(setup_gone());
    }
    if form.password != form.password2 {
        return Ok(setup_view(
            StatusCode::BAD_REQUEST,
            &form.token,
            &form.username,
            Some("The two passwords differ.".into()),
        ));
    }
    match state
        .records
        .complete_setup(&form.token, &form.username, &form.password, &client)
        .await
    {
        Ok(_) => Ok(Redirect::to("/login?done=setup").into_response()),
        Err(RecordsError::BadRequest { message, .. }) => Ok(setup_view(
            StatusCode::BAD_REQUEST,
            &form.token,
            &form.username,
            Some(message),
        )),
        Err(e) => Err(e.into()),
    }
}
