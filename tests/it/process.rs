//! Running `ironchart` as a child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
        let url = std::env::var("IRONCHART_TEST_DATABASE_URL").ok()?;
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
        let mut child = c.spawn().expect("spawn serve");
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
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
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
