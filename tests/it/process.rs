//! Running `ironchart` as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironchart"));
    c.env_remove("IRONCHART_DATA")
        .env_remove("IRONCHART_DATABASE_URL")
        .env_remove("IRONCHART_LISTEN")
        .env("IRONCHART_LOG", "warn");
    c
}

/// Database options for a test: SQLite in the data directory, or a fresh PostgreSQL schema.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    Postgres { url: String, schema: String },
}

impl Db {
    pub fn postgres() -> Option<Db> {
        let url = ironchart_store::test_database_url()?;
        Some(Db::Postgres {
            url,
            schema: format!("c_{}", uuid::Uuid::new_v4().simple()),
        })
    }

    pub fn apply(&self, c: &mut Command) {
        if let Db::Postgres { url, schema } = self {
            c.env("IRONCHART_DATABASE_URL", url)
                .env("IRONCHART_DATABASE_SCHEMA", schema);
        }
    }
}

pub fn run(args: &[&str], db: &Db) -> Output {
    let mut c = bin();
    c.args(args);
    db.apply(&mut c);
    c.output().expect("run ironchart")
}

pub fn token(data: &Path, db: &Db) -> String {
    let out = run(&["admin", "token", "--data", data.to_str().unwrap()], db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string()
}

/// A running `ironchart serve`.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Served {
    pub fn start(data: &Path, db: &Db) -> Served {
        Served::start_cmd(
            &[
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            db,
        )
    }

    pub fn start_cmd(args: &[&str], db: &Db) -> Served {
        let mut c = bin();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        db.apply(&mut c);
        let child = c.spawn().expect("spawn serve");
        Served::attach(child)
    }

    /// Starts `serve` on `data` with extra environment, capturing its standard error.
    pub fn start_logged(data: &Path, db: &Db, env: &[(&str, &str)]) -> (Served, Captured) {
        let mut c = bin();
        c.args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        db.apply(&mut c);
        let mut child = c.spawn().expect("spawn serve");
        let captured = Captured::of(child.stderr.take().expect("stderr"));
        (Served::attach(child), captured)
    }

    /// Waits until a spawned `serve` (stdout piped) says where it serves.
    fn attach(mut child: Child) -> Served {
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut base = None;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix("ironchart is serving on ") {
                base = Some(rest.to_string());
                break;
            }
        }
        let base = base.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("serve did not start");
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Served { child, base }
    }

    pub fn fhir(&self, path: &str) -> String {
        format!("{}/fhir/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server as ctrl-c does (SIGINT) and waits for it to exit (at most a minute).
    pub fn interrupt(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within a minute of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Connects to `base` (`http://HOST:PORT` or `https://…`), sends `send` and then nothing more,
/// and waits up to `patience` for the server to close the connection; whether it did.
pub fn closed_by_server(base: &str, send: &[u8], patience: Duration) -> bool {
    let addr = base.split_once("://").map_or(base, |(_, a)| a);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(send).expect("send");
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while let Some(left) = patience.checked_sub(start.elapsed()) {
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

pub async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{base} never became healthy");
}

/// SQLite, and PostgreSQL when `IRONCHART_TEST_DATABASE_URL` is set.
pub fn dbs() -> Vec<Db> {
    let mut v = vec![Db::Sqlite];
    v.extend(Db::postgres());
    v
}

/// Runs a command with `input` on its standard input (and extra environment).
pub fn run_input(args: &[&str], db: &Db, input: &str, env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    db.apply(&mut c);
    let mut child = c.spawn().expect("spawn ironchart");
    let mut stdin = child.stdin.take().expect("stdin");
    // A command may exit before reading its input: a broken pipe is not an error here.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("run ironchart")
}

/// Runs a command that must exit by itself (a refused `serve`), killing it after `limit`.
pub fn run_limited(args: &[&str], db: &Db, limit: Duration) -> Output {
    let mut c = bin();
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    db.apply(&mut c);
    let mut child = c.spawn().expect("spawn ironchart");
    let out = Captured::of(child.stdout.take().expect("stdout"));
    let err = Captured::of(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`ironchart {}` was still running after {limit:?}; stderr: {}",
                args.join(" "),
                err.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.wait_bytes(),
        stderr: err.wait_bytes(),
    }
}

/// The last line of a command's standard output (where tokens are printed).
pub fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Asserts that a command succeeded, showing its standard error when not.
pub fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token for `user` (optionally with narrower `scopes`).
pub fn user_token(data: &Path, db: &Db, user: &str, scopes: Option<&str>) -> String {
    let data = data.to_str().unwrap();
    let mut args = vec!["admin", "token", "--data", data, "--user", user];
    if let Some(s) = scopes {
        args.extend(["--scopes", s]);
    }
    let out = run(&args, db);
    ok(&out, &format!("admin token --user {user}"));
    last_line(&out)
}

/// Creates a user with the CLI (`--password-stdin`).
pub fn add_user(data: &Path, db: &Db, username: &str, role: &str, password: &str) {
    let out = run_input(
        &[
            "admin",
            "user",
            "add",
            "--data",
            data.to_str().unwrap(),
            "--username",
            username,
            "--role",
            role,
            "--password-stdin",
        ],
        db,
        &format!("{password}\n"),
        &[],
    );
    ok(&out, &format!("admin user add {username}"));
}

/// Everything a child process writes to one of its pipes, collected by a thread.
#[derive(Clone)]
pub struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: Arc<Mutex<bool>>,
}

impl Captured {
    pub fn of(mut pipe: impl Read + Send + 'static) -> Captured {
        let captured = Captured {
            bytes: Arc::default(),
            done: Arc::default(),
        };
        let c = captured.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => c.bytes.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            *c.done.lock().unwrap() = true;
        });
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Everything, once the pipe is closed (the process exited).
    pub fn wait_bytes(&self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !*self.done.lock().unwrap() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.bytes.lock().unwrap().clone()
    }
}

/// A direct connection to a test database, as someone with access to the database (not
/// through ironchart) has: for looking at what is stored, and for tampering with it.
pub enum Sql {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Sql {
    pub async fn open(data: &Path, db: &Db) -> Sql {
        match db {
            Db::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(sqlite_file(data))
                    .create_if_missing(false);
                Sql::Sqlite(
                    sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .expect("open the SQLite database"),
                )
            }
            Db::Postgres { url, schema } => {
                let options: sqlx::postgres::PgConnectOptions =
                    url.parse().expect("a PostgreSQL URL");
                let options = options.options([("search_path", schema.as_str())]);
                Sql::Postgres(
                    sqlx::PgConnection::connect_with(&options)
                        .await
                        .expect("connect to PostgreSQL"),
                )
            }
        }
    }

    /// Runs statements (several, separated by `;`).
    pub async fn execute(&mut self, sql: &str) {
        if let Err(e) = self.try_execute(sql).await {
            panic!("{sql}: {e}");
        }
    }

    pub async fn try_execute(&mut self, sql: &str) -> Result<(), String> {
        let result = match self {
            Sql::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Sql::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        };
        result.map_err(|e| e.to_string())
    }

    /// The first column of each row, as integers.
    pub async fn integers(&mut self, sql: &str) -> Vec<i64> {
        let result = match self {
            Sql::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Sql::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of each row, as text (NULL as `None`).
    pub async fn texts(&mut self, sql: &str) -> Vec<Option<String>> {
        let result = match self {
            Sql::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Sql::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of each row, as bytes (NULL rows skipped).
    pub async fn blobs(&mut self, sql: &str) -> Vec<Vec<u8>> {
        let result: Result<Vec<Option<Vec<u8>>>, _> = match self {
            Sql::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Sql::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        };
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .flatten()
            .collect()
    }

    /// Drops the triggers that keep the audit tables append-only, as an attacker with
    /// database access would before tampering.
    pub async fn drop_audit_triggers(&mut self) {
        let sql = match self {
            Sql::Sqlite(_) => {
                "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                 DROP TRIGGER audit_patients_no_update; DROP TRIGGER audit_patients_no_delete;"
            }
            Sql::Postgres(_) => {
                "DROP TRIGGER audit_log_append_only ON audit_log; \
                 DROP TRIGGER audit_log_no_truncate ON audit_log; \
                 DROP TRIGGER audit_patients_append_only ON audit_patients; \
                 DROP TRIGGER audit_patients_no_truncate ON audit_patients;"
            }
        };
        self.execute(sql).await;
    }

    pub async fn close(self) {
        let _ = match self {
            Sql::Sqlite(c) => c.close().await,
            Sql::Postgres(c) => c.close().await,
        };
    }
}

pub fn sqlite_file(data: &Path) -> PathBuf {
    data.join("ironchart.sqlite3")
}

/// A copy of a stopped instance's data to tamper with: the data directory's files and, on
/// PostgreSQL, the schema (through `pg_dump`, renamed).
pub fn copy_data(data: &Path, db: &Db) -> (tempfile::TempDir, Db) {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let db = match db {
        Db::Sqlite => Db::Sqlite,
        Db::Postgres { url, schema } => {
            let dump = Command::new("pg_dump")
                .args(["--no-owner", "--schema", schema, "--dbname", url])
                .output()
                .expect("run pg_dump");
            assert!(
                dump.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            let new_schema = format!("c_{}", uuid::Uuid::new_v4().simple());
            // The schema names are random and appear nowhere else in the dump.
            let text = String::from_utf8(dump.stdout)
                .unwrap()
                .replace(schema.as_str(), &new_schema);
            let mut psql = Command::new("psql")
                .args(["--quiet", "-v", "ON_ERROR_STOP=1", "--dbname", url])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run psql");
            psql.stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = psql.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "psql: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Db::Postgres {
                url: url.clone(),
                schema: new_schema,
            }
        }
    };
    (copy, db)
}

/// A reqwest client and a bearer token, for terse requests in tests.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub fhir: String,
}

impl Api {
    pub fn new(served: &Served) -> Api {
        Api {
            client: reqwest::Client::new(),
            fhir: format!("{}/fhir", served.base),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.fhir, path.trim_start_matches('/'))
    }

    /// GET with `token`: the status and the JSON body (`Null` when there is none).
    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST (create) a resource with `token`.
    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// PUT (update) a resource with `token`.
    pub async fn put(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .put(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn delete(&self, token: &str, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Creates a resource and returns its id (asserting 201).
    pub async fn create(&self, token: &str, body: serde_json::Value) -> String {
        let rt = body["resourceType"].as_str().unwrap().to_string();
        let (status, created) = self.post(token, &rt, &body).await;
        assert_eq!(status, 201, "create {rt}: {created}");
        created["id"].as_str().unwrap().to_string()
    }
}
