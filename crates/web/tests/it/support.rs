//! A real server on an ephemeral port, with a fresh database per test.

use ironchart_records::test_support::operator;
use std::path::PathBuf;
use std::time::Duration;

use ironchart_records::{
    AuditFilter, AuditRecord, DatabaseConfig, MasterKey, Records, Role, SecurityConfig,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A fresh master key; the audit journal in `dir`, and the checkpoints too when asked for.
pub fn security(dir: &std::path::Path, checkpoints: bool) -> SecurityConfig {
    SecurityConfig {
        master_key: MasterKey::generate(),
        checkpoint_file: checkpoints.then(|| dir.join("audit-checkpoints.log")),
        journal_dir: dir.to_path_buf(),
        sync_reads: false,
    }
}

pub struct Server {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    /// The full-access system token.
    pub token: String,
    pub client: reqwest::Client,
    /// The service behind the server, for what HTTP does not offer (users, tokens, the log).
    pub records: Records,
    /// Where the data lives, for tests that reach around the service (fault injection).
    pub database: Database,
    _dir: Option<tempfile::TempDir>,
}

/// A test server's database.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// A PostgreSQL database and the test's own schema in it (`t_<uuid>`).
    Postgres {
        url: String,
        schema: String,
    },
    /// Opened by the test itself ([`Server::start_with`]).
    Unknown,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Server {
    pub async fn sqlite() -> Server {
        Server::sqlite_with_limits(ironchart_web::ServerLimits::default()).await
    }

    /// A server on SQLite whose connections are held to `limits`.
    pub async fn sqlite_with_limits(limits: ironchart_web::ServerLimits) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.sqlite3");
        let records = Records::open(
            &DatabaseConfig::Sqlite(path.clone()),
            security(dir.path(), true),
        )
        .await
        .expect("open sqlite");
        let mut server =
            Server::start_limited(records, Some(dir), 16 * 1024 * 1024, None, limits).await;
        server.database = Database::Sqlite(path);
        server
    }

    /// `None` when no PostgreSQL test database is configured.
    pub async fn postgres() -> Option<Server> {
        let url = ironchart_store::test_database_url()?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::open(
            &DatabaseConfig::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
            },
            security(dir.path(), false),
        )
        .await
        .expect("open postgres");
        let mut server = Server::start(records, Some(dir)).await;
        server.database = Database::Postgres { url, schema };
        Some(server)
    }

    async fn start(records: Records, dir: Option<tempfile::TempDir>) -> Server {
        Server::start_with(records, dir, 16 * 1024 * 1024, None).await
    }

    pub async fn start_with(
        records: Records,
        dir: Option<tempfile::TempDir>,
        body_limit: usize,
        rate_limit: Option<u32>,
    ) -> Server {
        let limits = ironchart_web::ServerLimits::default();
        Server::start_limited(records, dir, body_limit, rate_limit, limits).await
    }

    async fn start_limited(
        records: Records,
        dir: Option<tempfile::TempDir>,
        body_limit: usize,
        rate_limit: Option<u32>,
        limits: ironchart_web::ServerLimits,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}/fhir");
        let mut config = ironchart_web::WebConfig::for_base(&format!("http://{addr}"));
        config.body_limit = body_limit;
        config.rate_limit = rate_limit;
        let app = ironchart_web::router(records.clone(), config);
        tokio::spawn(async move {
            let _ = ironchart_web::serve(listener, app, limits, std::future::pending()).await;
        });
        let token = records
            .issue_system_token(&operator(), Duration::from_secs(3600))
            .await
            .expect("token");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let server = Server {
            base,
            token,
            client,
            records,
            database: Database::Unknown,
            _dir: dir,
        };
        // Wait until it answers.
        for _ in 0..200 {
            if server
                .client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// Requests with the system token.
    pub fn system(&self) -> Caller<'_> {
        self.with_token(&self.token)
    }

    /// Requests with another bearer token.
    pub fn with_token<'a>(&'a self, token: &'a str) -> Caller<'a> {
        Caller {
            server: self,
            token,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.system().send(method, path, body, headers).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.system().get(path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.system().post(path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.system().put(path, body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.system().delete(path).await
    }

    /// Writes `resources` (each with its type and id) in one transaction Bundle of `PUT`s, as
    /// the system; the Bundle must succeed.
    pub async fn put_all(&self, resources: Vec<Value>) {
        let entries: Vec<Value> = resources
            .into_iter()
            .map(|r| {
                let url = format!(
                    "{}/{}",
                    r["resourceType"].as_str().expect("type"),
                    r["id"].as_str().expect("id")
                );
                serde_json::json!({"resource": r, "request": {"method": "PUT", "url": url}})
            })
            .collect();
        let r = self
            .post(
                "",
                &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Creates a resource and returns it as stored.
    pub async fn create(&self, resource: &Value) -> Value {
        let rt = resource["resourceType"].as_str().expect("resourceType");
        let r = self.post(rt, resource).await;
        assert_eq!(r.status, StatusCode::CREATED, "create {rt}: {}", r.text);
        r.body
    }

    /// Searches and returns the ids of the matches (all pages).
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        self.system().search_ids(query).await
    }

    /// Adds a user with `roles` (a `patient` user linked to `patient`) under a fresh name made
    /// from `prefix`, and returns the name.
    pub async fn add_user(&self, prefix: &str, roles: &[Role], patient: Option<&str>) -> String {
        let username = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        self.records
            .add_user(&operator(), &username, roles, patient, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("add user {username}: {e}"));
        username
    }

    /// Issues an hour's token for `username`: its roles' scopes, or `scopes` when given.
    pub async fn user_token(&self, username: &str, scopes: Option<&str>) -> String {
        self.records
            .issue_user_token(&operator(), username, scopes, Duration::from_secs(3600))
            .await
            .unwrap_or_else(|e| panic!("token for {username} ({scopes:?}): {e}"))
    }

    /// A new user with `role` and a token with all of its scopes: (user name, token).
    pub async fn user_with_token(&self, role: Role, patient: Option<&str>) -> (String, String) {
        let username = self.add_user(role.as_str(), &[role], patient).await;
        let token = self.user_token(&username, None).await;
        (username, token)
    }

    /// The health-data entries of the audit log (reads, searches, writes …) by `actor`
    /// (`user:NAME` or `system`) after sequence number `after`, oldest first, read as the
    /// operator. (Reading the log adds `audit-read` entries, which this leaves out.)
    pub async fn audit_after(&self, actor: &str, after: i64) -> Vec<AuditRecord> {
        let query = AuditFilter {
            actor: Some(actor.to_string()),
            actions: DATA_ACTIONS
                .iter()
                .map(|a| a.parse().expect("an audit action"))
                .collect(),
            after_seq: Some(after),
            limit: 10_000,
            ..AuditFilter::default()
        };
        self.records
            .audit_entries(&operator(), &query)
            .await
            .expect("read the audit log")
    }

    /// The sequence number of the newest audit entry.
    pub async fn audit_head(&self) -> i64 {
        let query = AuditFilter {
            descending: true,
            limit: 1,
            ..AuditFilter::default()
        };
        self.records
            .audit_entries(&operator(), &query)
            .await
            .expect("read the audit log")
            .first()
            .map_or(0, |r| r.seq)
    }

    /// Runs SQL statements on the test's database over a connection of its own, beside the
    /// server's (on PostgreSQL in the test's schema).
    pub async fn execute_sql(&self, statements: &str) {
        use sqlx::Connection;
        match &self.database {
            Database::Sqlite(path) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(10));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("connect to sqlite");
                sqlx::raw_sql(statements)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{statements}: {e}"));
                conn.close().await.expect("close");
            }
            Database::Postgres { url, schema } => {
                let options: sqlx::postgres::PgConnectOptions = url.parse().expect("postgres url");
                let options = options.options([("search_path", schema.as_str())]);
                let mut conn = sqlx::PgConnection::connect_with(&options)
                    .await
                    .expect("connect to postgres");
                sqlx::raw_sql(statements)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{statements}: {e}"));
                conn.close().await.expect("close");
            }
            Database::Unknown => panic!("this server's database is not known to the test"),
        }
    }
}

/// A password the password rules accept for every user name the tests make.
pub const PASSWORD: &str = "violet-Harbour-42-quartz";

/// The audit actions of access to health data.
pub const DATA_ACTIONS: &[&str] = &[
    "read",
    "vread",
    "search",
    "history",
    "create",
    "update",
    "delete",
    "transaction",
];

/// An audit entry in brief, for comparisons that read well when they fail:
/// `action Type/id outcome [patients]`, with `-` for what the entry does not name.
pub fn brief(row: &AuditRecord) -> String {
    format!(
        "{} {}/{} {} [{}]",
        row.action,
        row.res_type.as_deref().unwrap_or("-"),
        row.res_id.as_deref().unwrap_or("-"),
        row.outcome,
        row.patients.join(" "),
    )
}

/// Follows one actor's health-data entries in the audit log: each [`AuditTail::take`] returns
/// the entries written since the last.
pub struct AuditTail {
    actor: String,
    seen: i64,
}

impl AuditTail {
    /// From now on, the entries of `actor` (`user:NAME` or `system`).
    pub async fn new(s: &Server, actor: &str) -> AuditTail {
        AuditTail {
            actor: actor.to_string(),
            seen: s.audit_head().await,
        }
    }

    /// The new entries, in order.
    pub async fn take_rows(&mut self, s: &Server) -> Vec<AuditRecord> {
        let rows = s.audit_after(&self.actor, self.seen).await;
        if let Some(last) = rows.last() {
            self.seen = last.seq;
        }
        rows
    }

    /// The new entries in brief (see [`brief`]).
    pub async fn take(&mut self, s: &Server) -> Vec<String> {
        self.take_rows(s).await.iter().map(brief).collect()
    }
}

/// Requests to a [`Server`] with one bearer token.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub server: &'a Server,
    pub token: &'a str,
}

impl Caller<'_> {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// Searches and returns the ids of the matches (all pages).
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut url = self.server.url(query);
        for _ in 0..1000 {
            let r = self.get(&url).await;
            assert_eq!(r.status, StatusCode::OK, "search {query}: {}", r.text);
            for e in r.body["entry"].as_array().cloned().unwrap_or_default() {
                if e["search"]["mode"] == "match" {
                    ids.push(e["resource"]["id"].as_str().unwrap_or_default().to_string());
                }
            }
            match r.body["link"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            {
                Some(next) => url = next["url"].as_str().unwrap_or_default().to_string(),
                None => break,
            }
        }
        ids
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Runs an async test case on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case($crate::support::Server::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = $crate::support::Server::postgres().await {
                    super::$case(s).await;
                }
            }
        }
    };
}

/// The resource without `meta` (for round-trip comparisons).
pub fn without_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.shift_remove("meta");
    }
    v
}
