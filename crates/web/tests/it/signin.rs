//! Signing in to the web app over real HTTP: passwords, lockout and rate limits, two-step
//! sign-in (enrolment, codes, replay, recovery codes), sessions (fixation, idle and absolute
//! expiry, sign-out), CSRF, cookie attributes, the first-admin setup link, and the audit log as
//! FHIR AuditEvents.

use ironchart_records::test_support::operator;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use ironchart_records::{
    AuditFilter, Client, DatabaseConfig, ManualClock, MasterKey, Records, Role, SecurityConfig,
    SessionPolicy, SessionStage, SignInError, SignInFailure,
};
use ironchart_security::totp::{TotpSecret, code_at};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

pub(super) const PASSWORD: &str = "correct horse battery staple 42";

/// A server with its own records service.
pub(super) struct App {
    pub(super) records: Records,
    pub(super) origin: String,
    _dir: Option<tempfile::TempDir>,
}

pub(super) enum Db {
    Sqlite,
    Postgres,
}

pub(super) async fn start(db: Db, policy: SessionPolicy) -> Option<App> {
    start_with(db, policy, Vec::new()).await
}

async fn start_with(
    db: Db,
    policy: SessionPolicy,
    trusted_proxies: Vec<std::net::IpAddr>,
) -> Option<App> {
    start_on(db, policy, trusted_proxies, None).await
}

/// A server whose records service reads the time from `clock` (when given).
async fn start_on(
    db: Db,
    policy: SessionPolicy,
    trusted_proxies: Vec<std::net::IpAddr>,
    clock: Option<std::sync::Arc<ManualClock>>,
) -> Option<App> {
    let (records, dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let records = Records::open(
                &DatabaseConfig::Sqlite(dir.path().join("t.sqlite3")),
                super::support::security(dir.path(), true),
            )
            .await
            .unwrap();
            (records, Some(dir))
        }
        Db::Postgres => {
            let url = ironchart_store::test_database_url()?;
            let dir = tempfile::tempdir().unwrap();
            let records = Records::open(
                &DatabaseConfig::Postgres {
                    url,
                    schema: Some(format!("t_{}", uuid::Uuid::new_v4().simple())),
                },
                super::support::security(dir.path(), false),
            )
            .await
            .unwrap();
            (records, Some(dir))
        }
    };
    let records = records.with_session_policy(policy);
    let records = match clock {
        Some(c) => records.with_clock(c),
        None => records,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ironchart_web::WebConfig::for_base(&origin);
    config.rate_limit = None;
    config.trusted_proxies = trusted_proxies;
    let app = ironchart_web::router(records.clone(), config);
    tokio::spawn(async move {
        let _ =
            ironchart_web::serve(listener, app, Default::default(), std::future::pending()).await;
    });
    Some(App {
        records,
        origin,
        _dir: dir,
    })
}

macro_rules! both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(super::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(super::Db::Postgres).await;
            }
        }
    };
}

impl App {
    pub(super) async fn user(&self, name: &str, role: Role, patient: Option<&str>) {
        self.records
            .add_user(&operator(), name, &[role], patient, PASSWORD)
            .await
            .unwrap();
    }

    pub(super) fn browser(&self) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            origin: self.origin.clone(),
            cookies: HashMap::new(),
            send_origin: true,
        }
    }

    pub(super) async fn audit_actions(&self, actor: &str) -> Vec<(String, String, Option<String>)> {
        let rows = self
            .records
            .audit_entries(
                &operator(),
                &AuditFilter {
                    actor: Some(actor.to_string()),
                    limit: 1000,
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| (r.action, r.outcome, r.detail))
            .collect()
    }
}

/// A browser: keeps cookies, sends same-origin form posts, does not follow redirects.
pub(super) struct Browser {
    client: reqwest::Client,
    origin: String,
    cookies: HashMap<String, String>,
    send_origin: bool,
}

pub(super) struct Page {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    pub(super) body: String,
}

impl Page {
    pub(super) fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of a hidden form field.
    pub(super) fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).map(|i| i + marker.len());
        start
            .and_then(|s| {
                self.body[s..]
                    .find('"')
                    .map(|e| self.body[s..s + e].to_string())
            })
            .unwrap_or_default()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&mut self, r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let body = r.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub(super) async fn get(&mut self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.origin))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }

    pub(super) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.origin))
            .header("cookie", self.cookie_header())
            .form(form);
        if self.send_origin {
            req = req.header("origin", &self.origin);
        }
        let r = req.send().await.unwrap();
        self.absorb(r).await
    }

    /// Posts a multipart form (a file upload), same-origin.
    pub(super) async fn post_multipart(
        &mut self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.origin))
            .header("cookie", self.cookie_header())
            .header("origin", &self.origin)
            .multipart(form)
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }

    /// The raw response of a GET (headers and bytes), for files.
    pub(super) async fn get_raw(&mut self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.origin))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap()
    }

    /// Fills in and submits the sign-in form.
    pub(super) async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = form.field("csrf");
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    fn session(&self) -> Option<String> {
        self.cookies.get("__Host-ironchart").cloned()
    }
}

pub(super) fn default_policy() -> SessionPolicy {
    SessionPolicy::default()
}

async fn password_sign_in_and_cookies(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("nina", Role::Nurse, None).await;
    let mut b = app.browser();
    let r = b.sign_in("nina", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/");
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-ironchart="))
        .expect("a session cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Welcome, nina"));
    // Pages forbid inline script and style.
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    // The one script is a first-party file; none is inline.
    assert_eq!(
        home.body.matches("<script").count(),
        home.body
            .matches("<script src=\"/static/app.js\" defer></script>")
            .count()
    );
    assert!(!home.body.contains("style="));
    assert!(csp.contains("script-src 'self'") && !csp.contains("script-src *"));
    // Sign out: the session ends on the server, not just in the browser.
    let session = b.session().unwrap();
    let csrf = home.field("csrf");
    let out = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let mut replay = app.browser();
    replay
        .cookies
        .insert("__Host-ironchart".into(), session.clone());
    let after = replay.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login");
    let actions = app.audit_actions("user:nina").await;
    assert!(
        actions
            .iter()
            .any(|(a, o, _)| a == "sign-in" && o == "success")
    );
    assert!(actions.iter().any(|(a, _, _)| a == "sign-out"));
}
both!(password_sign_in_and_cookies);

async fn no_user_enumeration(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("omar", Role::Physician, None).await;
    let mut b = app.browser();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let w = b.sign_in("omar", "not the password at all").await;
        wrong.push(t.elapsed());
        let t = Instant::now();
        let u = b.sign_in("nobody-here", "not the password at all").await;
        unknown.push(t.elapsed());
        assert_eq!(w.status, u.status);
        assert_eq!(w.status, StatusCode::UNAUTHORIZED);
        let message = |p: &Page| {
            let i = p.body.find("role=\"alert\">").unwrap();
            p.body[i..i + 60].to_string()
        };
        assert_eq!(message(&w), message(&u));
        assert!(
            w.body.contains("The user name or password is not right")
                || w.body.contains("the user name or password is not right")
        );
    }
    wrong.sort();
    unknown.sort();
    // An unknown name costs a password verification too (no fast path to tell it apart).
    assert!(
        unknown[1] * 3 >= wrong[1],
        "unknown user {:?} vs wrong password {:?}",
        unknown,
        wrong
    );
}
both!(no_user_enumeration);

async fn lockout_per_account_and_address(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("petra", Role::FrontDesk, None).await;
    let mut b = app.browser();
    for _ in 0..5 {
        let r = b.sign_in("petra", "wrong password number 1").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused now, with backoff.
    let r = b.sign_in("petra", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("too many failed attempts"));
    // An unknown name locks the same way (lockout does not reveal which names exist).
    for _ in 0..5 {
        b.sign_in("ghost-user", "wrong password number 1").await;
    }
    let r = b.sign_in("ghost-user", "wrong password number 1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let actions = app.audit_actions("user:petra").await;
    assert!(
        actions.iter().any(|(a, _, _)| a == "lockout"),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .filter(|(a, o, _)| a == "sign-in" && o == "denied")
            .count()
            >= 6
    );
    // Per address: many names from one address lock the address out.
    for i in 0..20 {
        b.sign_in(&format!("spray{i}"), "wrong password number 1")
            .await;
    }
    app.user("quinn", Role::Nurse, None).await;
    let r = b.sign_in("quinn", PASSWORD).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is locked"
    );
    // The administrator can lift an account's lockout, but not the address's.
    let summary = app.records.list_users(&operator()).await.unwrap();
    assert!(
        summary
            .iter()
            .any(|u| u.username == "petra" && u.locked_until.is_some())
    );
    app.records
        .set_user_disabled(&operator(), "petra", false)
        .await
        .unwrap();
    let elsewhere = Client {
        address: Some("203.0.113.9".into()),
        user_agent: None,
    };
    assert!(
        app.records
            .sign_in("petra", PASSWORD, &elsewhere)
            .await
            .is_ok(),
        "enabling the user lifts the lockout"
    );
}
both!(lockout_per_account_and_address);

/// The current TOTP code of an enrolment page's key, `ahead` steps from now.
fn code_for(secret: &str, ahead: i64) -> String {
    let secret = TotpSecret::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    code_at(&secret, (now + ahead * 30) as u64)
}

fn enrolment_secret(page: &Page) -> String {
    let start = page.body.find("<code>").unwrap() + 6;
    let end = page.body[start..].find("</code>").unwrap();
    page.body[start..start + end].to_string()
}

/// Authenticator secrets, confirmed and being enrolled, survive replacing the master key.
async fn authenticator_secrets_survive_a_new_master_key(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let config = match db {
        Db::Sqlite => DatabaseConfig::Sqlite(dir.path().join("t.sqlite3")),
        Db::Postgres => {
            let Some(url) = ironchart_store::test_database_url() else {
                return;
            };
            DatabaseConfig::Postgres {
                url,
                schema: Some(format!("t_{}", uuid::Uuid::new_v4().simple())),
            }
        }
    };
    let old_key = dir.path().join("old.key");
    let new_key = dir.path().join("new.key");
    MasterKey::create(&old_key).unwrap();
    MasterKey::create(&new_key).unwrap();
    let security = |key: &std::path::Path| SecurityConfig {
        master_key: MasterKey::load(key).unwrap(),
        checkpoint_file: Some(dir.path().join("audit-checkpoints.log")),
        journal_dir: dir.path().to_path_buf(),
        sync_reads: false,
    };
    let operator = operator();
    let client = Client::default();
    let records = Records::open(&config, security(&old_key)).await.unwrap();
    for name in ["audra", "audrey"] {
        records
            .add_user(&operator, name, &[Role::Auditor], None, PASSWORD)
            .await
            .unwrap();
    }
    let first = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    assert_eq!(first.stage, SessionStage::Enrol);
    let audra = records.begin_enrolment(&first.cookie).await.unwrap();
    records
        .confirm_enrolment(&first.cookie, &code_for(&audra.secret_base32, 0), &client)
        .await
        .unwrap();
    // Audrey is half-way through enrolling when the key is replaced.
    let half = records.sign_in("audrey", PASSWORD, &client).await.unwrap();
    let audrey = records.begin_enrolment(&half.cookie).await.unwrap();
    records.close().await;

    Records::replace_master_key(
        &config,
        security(&old_key),
        MasterKey::load(&new_key).unwrap(),
    )
    .await
    .unwrap();
    let refused = Records::open(&config, security(&old_key)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not match")),
        "the old key opens nothing"
    );
    let records = Records::open(&config, security(&new_key)).await.unwrap();
    records.reseal_all(&operator, &|_, _| {}).await.unwrap();
    let details: Vec<String> = records
        .audit_entries(
            &operator,
            &AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "key-rotate")
        .filter_map(|r| r.detail)
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains(" and 2 secrets under generation 2")),
        "{details:?}"
    );

    records
        .confirm_enrolment(&half.cookie, &code_for(&audrey.secret_base32, 0), &client)
        .await
        .unwrap();
    let next = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    assert_eq!(next.stage, SessionStage::Code);
    let signed_in = records
        .verify_code(&next.cookie, &code_for(&audra.secret_base32, 1), &client)
        .await
        .unwrap();
    assert_eq!(signed_in.stage, SessionStage::Active);
    records.close().await;
}
both!(authenticator_secrets_survive_a_new_master_key);

async fn two_step_sign_in(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("audra", Role::Auditor, None).await;
    let mut b = app.browser();
    let r = b.sign_in("audra", PASSWORD).await;
    assert_eq!(r.location(), "/login/enrol", "MFA is required of auditors");
    let pending = b.session().unwrap();
    // Not signed in yet: pages send the browser back.
    assert_eq!(b.get("/audit").await.location(), "/login");
    let enrol = b.get("/login/enrol").await;
    assert_eq!(enrol.status, StatusCode::OK);
    assert!(enrol.body.contains("<svg") && !enrol.body.contains("style="));
    assert!(!enrol.body.contains("<style") && !enrol.body.contains("<script"));
    let secret = enrolment_secret(&enrol);
    let csrf = enrol.field("csrf");
    let bad = b
        .post("/login/enrol", &[("csrf", &csrf), ("code", "000000")])
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let enrol = b.get("/login/enrol").await;
    let secret2 = enrolment_secret(&enrol);
    assert_ne!(secret, secret2, "a refused code shows a new key");
    let code = code_for(&secret2, 0);
    let done = b
        .post(
            "/login/enrol",
            &[("csrf", &enrol.field("csrf")), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let codes: Vec<String> = done
        .body
        .split("<li>")
        .skip(1)
        .map(|s| s.split("</li>").next().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let active = b.session().unwrap();
    assert_ne!(active, pending, "the session id changes at sign-in");
    assert_eq!(b.get("/audit").await.status, StatusCode::OK);

    // Next sign-in: the code step.
    let mut b2 = app.browser();
    let r = b2.sign_in("audra", PASSWORD).await;
    assert_eq!(r.location(), "/login/code");
    let page = b2.get("/login/code").await;
    let csrf = page.field("csrf");
    // The code used at enrolment is spent (replay protection).
    let replay = b2
        .post("/login/code", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    let next = code_for(&secret2, 1);
    let ok = b2
        .post("/login/code", &[("csrf", &csrf), ("code", &next)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(b2.get("/").await.status, StatusCode::OK);
    // ...and once accepted, the same code is refused at the next sign-in.
    let mut b3 = app.browser();
    b3.sign_in("audra", PASSWORD).await;
    let page = b3.get("/login/code").await;
    let csrf = page.field("csrf");
    let again = b3
        .post("/login/code", &[("csrf", &csrf), ("code", &next)])
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // A recovery code works once.
    let ok = b3
        .post("/login/code", &[("csrf", &csrf), ("code", &codes[0])])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let mut b4 = app.browser();
    b4.sign_in("audra", PASSWORD).await;
    let page = b4.get("/login/code").await;
    let spent = b4
        .post(
            "/login/code",
            &[("csrf", &page.field("csrf")), ("code", &codes[0])],
        )
        .await;
    assert_eq!(spent.status, StatusCode::UNAUTHORIZED);
    let actions = app.audit_actions("user:audra").await;
    assert!(
        actions
            .iter()
            .any(|(a, o, _)| a == "mfa-enrol" && o == "success")
    );
    assert!(actions.iter().any(|(a, _, d)| a == "sign-in"
        && d.as_deref() == Some("signed in with recovery code")));
}
both!(two_step_sign_in);

/// A stolen password does not open the second factor to guessing: wrong codes end the pending
/// sign-in after three, count against the account's second factor whatever correct passwords
/// come between, lock it after five (the right code is then refused too), and the lockout is in
/// the audit log and on the users page.
async fn second_factor_cannot_be_guessed(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    let records = &app.records;
    app.user("audra", Role::Auditor, None).await;
    let client = Client {
        address: Some("198.51.100.7".into()),
        user_agent: None,
    };
    let first = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    let enrolment = records.begin_enrolment(&first.cookie).await.unwrap();
    let secret = enrolment.secret_base32;
    records
        .confirm_enrolment(&first.cookie, &code_for(&secret, 0), &client)
        .await
        .unwrap();
    let wrong = |n: u32| {
        format!(
            "{:06}",
            (code_for(&secret, 5).parse::<u32>().unwrap() + n) % 1_000_000
        )
    };
    let refusal = |r: Result<ironchart_records::NewSession, SignInFailure>| match r {
        Err(SignInFailure::Refused(e)) => e,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a wrong code was accepted"),
    };
    // One pending sign-in takes three wrong codes, then ends.
    let pending = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    for n in 1..=2 {
        let r = records
            .verify_code(&pending.cookie, &wrong(n), &client)
            .await;
        assert_eq!(refusal(r), SignInError::BadCode);
    }
    let r = records
        .verify_code(&pending.cookie, &wrong(3), &client)
        .await;
    assert_eq!(refusal(r), SignInError::NoSession, "the sign-in ended");
    let r = records
        .verify_code(&pending.cookie, &code_for(&secret, 1), &client)
        .await;
    assert_eq!(
        refusal(r),
        SignInError::NoSession,
        "even for the right code"
    );
    // The correct password again does not clear the code failures: two more lock the factor.
    let pending = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    let r = records
        .verify_code(&pending.cookie, &wrong(4), &client)
        .await;
    assert_eq!(refusal(r), SignInError::BadCode);
    let r = records
        .verify_code(&pending.cookie, &wrong(5), &client)
        .await;
    assert!(matches!(refusal(r), SignInError::Throttled(_)));
    // Locked: the right password is still accepted, but the right code is refused.
    let pending = records.sign_in("audra", PASSWORD, &client).await.unwrap();
    let r = records
        .verify_code(&pending.cookie, &code_for(&secret, 1), &client)
        .await;
    assert!(matches!(refusal(r), SignInError::Throttled(_)));
    let actions = app.audit_actions("user:audra").await;
    assert!(
        actions
            .iter()
            .any(|(a, _, d)| a == "lockout"
                && d.as_deref().is_some_and(|d| d.contains("second factor"))),
        "{actions:?}"
    );
    let users = records.list_users(&operator()).await.unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.username == "audra" && u.locked_until.is_some())
    );
}
both!(second_factor_cannot_be_guessed);

/// Codes sent at once count one by one: a burst of wrong codes on many pending sign-ins gets
/// at most the allowed tries before the lockout, and one right code sent twice at once signs
/// in once.
async fn second_factor_attempts_sent_at_once_all_count(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    let records = &app.records;
    let client = Client::default();
    let mut secrets = Vec::new();
    for name in ["ava", "bea"] {
        app.user(name, Role::Auditor, None).await;
        let first = records.sign_in(name, PASSWORD, &client).await.unwrap();
        let enrolment = records.begin_enrolment(&first.cookie).await.unwrap();
        records
            .confirm_enrolment(
                &first.cookie,
                &code_for(&enrolment.secret_base32, 0),
                &client,
            )
            .await
            .unwrap();
        secrets.push(enrolment.secret_base32);
    }
    let wrong = format!(
        "{:06}",
        (code_for(&secrets[0], 5).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let mut pending = Vec::new();
    for _ in 0..12 {
        pending.push(
            records
                .sign_in("ava", PASSWORD, &client)
                .await
                .unwrap()
                .cookie,
        );
    }
    let burst: Vec<_> = pending
        .into_iter()
        .map(|cookie| {
            let records = records.clone();
            let wrong = wrong.clone();
            tokio::spawn(async move {
                match records
                    .verify_code(&cookie, &wrong, &Client::default())
                    .await
                {
                    Err(SignInFailure::Refused(e)) => e,
                    Err(e) => panic!("{e}"),
                    Ok(_) => panic!("a wrong code was accepted"),
                }
            })
        })
        .collect();
    let mut tried = 0;
    for t in burst {
        if t.await.unwrap() == SignInError::BadCode {
            tried += 1;
        }
    }
    assert!(
        tried < 5,
        "{tried} wrong codes were tried before the lockout"
    );
    let last = records.sign_in("ava", PASSWORD, &client).await.unwrap();
    let r = records
        .verify_code(&last.cookie, &code_for(&secrets[0], 1), &client)
        .await;
    assert!(
        matches!(r, Err(SignInFailure::Refused(SignInError::Throttled(_)))),
        "locked out after the burst"
    );
    // One right code, sent on two pending sign-ins at once: one session, not two.
    let a = records
        .sign_in("bea", PASSWORD, &client)
        .await
        .unwrap()
        .cookie;
    let b = records
        .sign_in("bea", PASSWORD, &client)
        .await
        .unwrap()
        .cookie;
    let code = code_for(&secrets[1], 1);
    let (ra, rb) = tokio::join!(
        records.verify_code(&a, &code, &client),
        records.verify_code(&b, &code, &client)
    );
    assert_eq!(
        usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
        1,
        "a code is used once"
    );
}
both!(second_factor_attempts_sent_at_once_all_count);

/// Passwords sent at once for one name count one by one: at most the limit are tried, the rest
/// are refused unseen.
async fn password_attempts_sent_at_once_all_count(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("cleo", Role::Nurse, None).await;
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let records = app.records.clone();
            tokio::spawn(async move {
                let client = Client {
                    address: Some(format!("198.51.100.{i}")),
                    user_agent: None,
                };
                match records
                    .sign_in("cleo", "wrong password number 1", &client)
                    .await
                {
                    Err(SignInFailure::Refused(e)) => e,
                    Err(e) => panic!("{e}"),
                    Ok(_) => panic!("a wrong password was accepted"),
                }
            })
        })
        .collect();
    let mut tried = 0;
    for t in burst {
        if t.await.unwrap() == SignInError::BadCredentials {
            tried += 1;
        }
    }
    assert!(tried <= 5, "{tried} passwords were tried");
    let r = app
        .records
        .sign_in("cleo", PASSWORD, &Client::default())
        .await;
    assert!(matches!(
        r,
        Err(SignInFailure::Refused(SignInError::Throttled(_)))
    ));
}
both!(password_attempts_sent_at_once_all_count);

async fn csrf_is_required(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("rosa", Role::Physician, None).await;
    let mut b = app.browser();
    b.sign_in("rosa", PASSWORD).await;
    let home = b.get("/").await;
    let csrf = home.field("csrf");
    assert!(!csrf.is_empty());
    // Missing token, wrong token: refused, and still signed in.
    let missing = b.post("/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = b.post("/logout", &[("csrf", "not-the-token")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    // From another site (the browser says so), or saying nothing at all: refused before the
    // handler, even with the right token.
    let cross = b
        .client
        .post(format!("{}/logout", b.origin))
        .header("cookie", b.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let evil = b
        .client
        .post(format!("{}/logout", b.origin))
        .header("cookie", b.cookie_header())
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    b.send_origin = false;
    let silent = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(silent.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    // The sign-in form's own token (double submit) is checked too.
    b.send_origin = true;
    let mut fresh = app.browser();
    fresh.get("/login").await;
    let forged = fresh
        .post(
            "/login",
            &[
                ("csrf", "forged"),
                ("username", "rosa"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}
both!(csrf_is_required);

async fn session_fixation_and_expiry(db: Db) {
    let policy = SessionPolicy {
        idle: Duration::from_secs(20 * 60),
        lifetime: Duration::from_secs(12 * 3600),
    };
    let clock = std::sync::Arc::new(ManualClock::starting_now());
    let Some(app) = start_on(db, policy, Vec::new(), Some(clock.clone())).await else {
        return;
    };
    app.user("sam", Role::Billing, None).await;
    // A session id planted before sign-in is not the one after.
    let mut b = app.browser();
    b.cookies
        .insert("__Host-ironchart".into(), "planted-by-an-attacker".into());
    b.sign_in("sam", PASSWORD).await;
    let first = b.session().unwrap();
    assert_ne!(first, "planted-by-an-attacker");
    // The planted id leads nowhere.
    let mut planted = app.browser();
    planted
        .cookies
        .insert("__Host-ironchart".into(), "planted-by-an-attacker".into());
    assert_eq!(planted.get("/").await.location(), "/login");
    // Idle timeout: 20 minutes without a request end the session; a request a minute before
    // keeps it.
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(19 * 60));
    assert_eq!(b.get("/").await.status, StatusCode::OK, "not idle yet");
    clock.advance(Duration::from_secs(20 * 60 + 1));
    assert_eq!(b.get("/").await.location(), "/login", "idle timeout");
    // Absolute lifetime: activity every 15 minutes does not keep it past 12 hours.
    b.sign_in("sam", PASSWORD).await;
    let mut active = Duration::ZERO;
    while b.get("/").await.status == StatusCode::OK {
        assert!(
            active <= Duration::from_secs(12 * 3600),
            "outlived its lifetime"
        );
        clock.advance(Duration::from_secs(15 * 60));
        active += Duration::from_secs(15 * 60);
    }
    assert!(
        active >= Duration::from_secs(12 * 3600 - 15 * 60),
        "ended after {active:?}"
    );
}
both!(session_fixation_and_expiry);

async fn sessions_page_and_sign_out_everywhere(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("tara", Role::Physician, None).await;
    let mut phone = app.browser();
    let mut desk = app.browser();
    phone.sign_in("tara", PASSWORD).await;
    desk.sign_in("tara", PASSWORD).await;
    let token = app
        .records
        .issue_user_token(&operator(), "tara", None, Duration::from_secs(600))
        .await
        .unwrap();
    let page = desk.get("/account/sessions").await;
    assert_eq!(
        page.body.matches("<tr>").count(),
        3,
        "header and two sessions"
    );
    assert!(page.body.contains("this session"));
    let csrf = page.field("csrf");
    let out = desk.post("/logout/everywhere", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/").await.location(), "/login");
    assert_eq!(desk.get("/").await.location(), "/login");
    // Tokens of the user are revoked too.
    let api = reqwest::Client::new()
        .get(format!("{}/fhir/Patient", app.origin))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}
both!(sessions_page_and_sign_out_everywhere);

async fn first_admin_setup(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    let token = app
        .records
        .issue_setup_token(Duration::from_secs(600))
        .await
        .unwrap()
        .expect("no users yet");
    let mut b = app.browser();
    assert_eq!(
        b.get("/setup?token=wrong").await.status,
        StatusCode::NOT_FOUND
    );
    let form = b.get(&format!("/setup?token={token}")).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.field("csrf");
    let weak = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "boss"),
                ("password", "password1234"),
                ("password2", "password1234"),
            ],
        )
        .await;
    assert_eq!(
        weak.status,
        StatusCode::BAD_REQUEST,
        "a common password is refused"
    );
    let form = b.get(&format!("/setup?token={token}")).await;
    let csrf = form.field("csrf");
    let ok = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "boss"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // The link is spent.
    assert_eq!(
        b.get(&format!("/setup?token={token}")).await.status,
        StatusCode::NOT_FOUND
    );
    // The new admin must set up two-step sign-in, then manages users.
    let r = b.sign_in("boss", PASSWORD).await;
    assert_eq!(r.location(), "/login/enrol");
    let enrol = b.get("/login/enrol").await;
    let code = code_for(&enrolment_secret(&enrol), 0);
    b.post(
        "/login/enrol",
        &[("csrf", &enrol.field("csrf")), ("code", &code)],
    )
    .await;
    let users = b.get("/admin/users").await;
    assert_eq!(users.status, StatusCode::OK);
    assert!(
        users.body.contains("user/*.cruds"),
        "roles show their scopes"
    );
    let csrf = users.field("csrf");
    let added = b
        .post(
            "/admin/users/add",
            &[
                ("csrf", &csrf),
                ("username", "newnurse"),
                ("role", "nurse"),
                ("patient", ""),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Added newnurse"));
    let actions = app.audit_actions("system").await;
    assert!(actions.iter().any(|(a, _, _)| a == "setup"));
}
both!(first_admin_setup);

/// Concurrent uses of the one-time setup link create one administrator, not one each.
async fn setup_link_creates_one_admin_under_concurrency(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    let token = app
        .records
        .issue_setup_token(Duration::from_secs(600))
        .await
        .unwrap()
        .expect("no users yet");
    let tries: Vec<_> = (0..6)
        .map(|i| {
            let records = app.records.clone();
            let token = token.clone();
            tokio::spawn(async move {
                records
                    .complete_setup(&token, &format!("boss{i}"), PASSWORD, &Client::default())
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut created = 0;
    for t in tries {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1);
    let users = app.records.list_users(&operator()).await.unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
}
both!(setup_link_creates_one_admin_under_concurrency);

async fn audit_events_for_auditors(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    app.user("dora", Role::Physician, None).await;
    app.user("ulla", Role::Auditor, None).await;
    let op = operator();
    let system = app
        .records
        .issue_system_token(&op, Duration::from_secs(600))
        .await
        .unwrap();
    let doctor = app
        .records
        .issue_user_token(&op, "dora", None, Duration::from_secs(600))
        .await
        .unwrap();
    let auditor = app
        .records
        .issue_user_token(&op, "ulla", None, Duration::from_secs(600))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let fhir = format!("{}/fhir", app.origin);
    let patient: serde_json::Value = http
        .post(format!("{fhir}/Patient"))
        .bearer_auth(&system)
        .json(&serde_json::json!({"resourceType": "Patient", "name": [{"family": "Zed"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = patient["id"].as_str().unwrap().to_string();
    let read = http
        .get(format!("{fhir}/Patient/{pid}"))
        .bearer_auth(&doctor)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // The physician's read, found by patient, agent and action.
    let bundle: serde_json::Value = http
        .get(format!(
            "{fhir}/AuditEvent?patient={pid}&agent=dora&action=R&outcome=0"
        ))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["total"], 1, "{bundle}");
    let event = &bundle["entry"][0]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["action"], "R");
    assert_eq!(event["agent"][0]["who"]["display"], "user:dora");
    assert_eq!(
        event["entity"][0]["what"]["reference"],
        format!("Patient/{pid}/_history/1")
    );
    ironchart_fhir::validate::validate_resource(event).unwrap();
    let id = event["id"].as_str().unwrap();
    let one = http
        .get(format!("{fhir}/AuditEvent/{id}"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    // Physicians do not read the audit log, whatever their wildcard scopes say; nobody writes it.
    let denied = http
        .get(format!("{fhir}/AuditEvent"))
        .bearer_auth(&doctor)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let forged = http
        .post(format!("{fhir}/AuditEvent"))
        .bearer_auth(&system)
        .json(event)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Date filters.
    let none: serde_json::Value = http
        .get(format!("{fhir}/AuditEvent?date=lt2000-01-01"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    let bad = http
        .get(format!("{fhir}/AuditEvent?date=soon"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
both!(audit_events_for_auditors);

async fn break_the_glass(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    let op = operator();
    let system = app
        .records
        .issue_system_token(&op, Duration::from_secs(600))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let fhir = format!("{}/fhir", app.origin);
    let put = |path: String, body: serde_json::Value| {
        let http = http.clone();
        let system = system.clone();
        async move {
            let r = http
                .put(path)
                .bearer_auth(&system)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    put(
        format!("{fhir}/Patient/vip"),
        serde_json::json!({"resourceType": "Patient", "id": "vip"}),
    )
    .await;
    let label = |code: &str| serde_json::json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code}]});
    put(
        format!("{fhir}/Observation/secret"),
        serde_json::json!({"resourceType": "Observation", "id": "secret", "meta": label("R"),
            "status": "final", "code": {"text": "test"}, "subject": {"reference": "Patient/vip"}}),
    )
    .await;
    app.user("vera", Role::Physician, None).await;
    app.user("nell", Role::Nurse, None).await;
    app.user("abe", Role::Auditor, None).await;
    let token = app
        .records
        .issue_user_token(&op, "vera", None, Duration::from_secs(600))
        .await
        .unwrap();
    let read = || async {
        http.get(format!("{fhir}/Observation/secret"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(read().await, StatusCode::FORBIDDEN, "restricted before");
    let mut b = app.browser();
    b.sign_in("vera", PASSWORD).await;
    let form = b.get("/break-glass").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.field("csrf");
    let short = b
        .post(
            "/break-glass",
            &[
                ("csrf", &csrf),
                ("patient", "vip"),
                ("reason", "need"),
                ("minutes", "30"),
            ],
        )
        .await;
    assert_eq!(
        short.status,
        StatusCode::BAD_REQUEST,
        "a reason is required"
    );
    let opened = b
        .post(
            "/break-glass",
            &[
                ("csrf", &csrf),
                ("patient", "Patient/vip"),
                ("reason", "unconscious in the emergency room"),
                ("minutes", "30"),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert!(opened.body.contains("auditors have been alerted"));
    assert_eq!(
        read().await,
        StatusCode::OK,
        "open after breaking the glass"
    );
    // Front desk and billing cannot; the page is for clinicians.
    app.user("fred", Role::FrontDesk, None).await;
    let mut f = app.browser();
    f.sign_in("fred", PASSWORD).await;
    assert_eq!(f.get("/break-glass").await.status, StatusCode::FORBIDDEN);
    // The auditor sees the alert on their home page (after setting up two-step sign-in).
    let mut a = app.browser();
    a.sign_in("abe", PASSWORD).await;
    let enrol = a.get("/login/enrol").await;
    let code = code_for(&enrolment_secret(&enrol), 0);
    a.post(
        "/login/enrol",
        &[("csrf", &enrol.field("csrf")), ("code", &code)],
    )
    .await;
    let home = a.get("/").await;
    assert!(home.body.contains("Security alerts"), "{}", home.body);
    assert!(home.body.contains("break-glass") && home.body.contains("user:vera"));
    let actions = app.audit_actions("user:vera").await;
    assert!(actions.iter().any(|(a, o, d)| a == "break-glass"
        && o == "success"
        && d.as_deref().is_some_and(|d| d.starts_with("alert"))));
}
both!(break_the_glass);

async fn client_address_and_trusted_proxy(db: Db) {
    let pg = matches!(db, Db::Postgres);
    for trusted in [false, true] {
        let db = if pg { Db::Postgres } else { Db::Sqlite };
        let proxies = if trusted {
            vec!["127.0.0.1".parse().unwrap()]
        } else {
            Vec::new()
        };
        let Some(app) = start_with(db, default_policy(), proxies).await else {
            return;
        };
        app.user("xavi", Role::Nurse, None).await;
        let token = app
            .records
            .issue_user_token(&operator(), "xavi", None, Duration::from_secs(600))
            .await
            .unwrap();
        let r = reqwest::Client::new()
            .get(format!("{}/fhir/Patient", app.origin))
            .bearer_auth(&token)
            .header("x-forwarded-for", "198.51.100.23")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let rows = app
            .records
            .audit_entries(
                &operator(),
                &AuditFilter {
                    actor: Some("user:xavi".into()),
                    actions: vec![ironchart_records::AuditAction::Search],
                    limit: 10,
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        let source = rows[0].source.clone().unwrap_or_default();
        // Only a configured proxy's X-Forwarded-For is believed.
        assert_eq!(
            source,
            if trusted {
                "198.51.100.23"
            } else {
                "127.0.0.1"
            },
            "trusted proxy: {trusted}"
        );
    }
}
both!(client_address_and_trusted_proxy);
