//! A real server on an ephemeral port, with a fresh database per test.

use std::time::Duration;

use ironchart_records::{Actor, DatabaseConfig, MasterKey, Records, SecurityConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A fresh master key; audit checkpoints in `dir` when given.
pub fn security(dir: Option<&std::path::Path>) -> SecurityConfig {
    SecurityConfig {
        master_key: MasterKey::generate(),
        checkpoint_file: dir.map(|d| d.join("audit-checkpoints.log")),
    }
}

pub struct Server {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Server {
    pub async fn sqlite() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::open(
            &DatabaseConfig::Sqlite(dir.path().join("t.sqlite3")),
            security(Some(dir.path())),
        )
        .await
        .expect("open sqlite");
        Server::start(records, Some(dir)).await
    }

    /// `None` when no PostgreSQL test database is configured.
    pub async fn postgres() -> Option<Server> {
        let Ok(url) = std::env::var("IRONCHART_TEST_DATABASE_URL") else {
            eprintln!("IRONCHART_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let records = Records::open(
            &DatabaseConfig::Postgres {
                url,
                schema: Some(schema),
            },
            security(None),
        )
        .await
        .expect("open postgres");
        Some(Server::start(records, None).await)
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
            let _ = ironchart_web::serve(listener, app, std::future::pending()).await;
        });
        let token = records
            .issue_system_token(&Actor::local_operator(), Duration::from_secs(3600))
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

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
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

    /// Creates a resource and returns it as stored.
    pub async fn create(&self, resource: &Value) -> Value {
        let rt = resource["resourceType"].as_str().expect("resourceType");
        let r = self.post(rt, resource).await;
        assert_eq!(r.status, StatusCode::CREATED, "create {rt}: {}", r.text);
        r.body
    }

    /// Searches and returns the ids of the matches (all pages).
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut url = self.url(query);
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
