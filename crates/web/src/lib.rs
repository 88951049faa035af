//! ironchart's HTTP face: the FHIR R4 REST API at `/fhir`, the web app's pages (sign-in,
//! sessions, user administration, audit report, break-the-glass) and `/healthz`; the clinician
//! app, portal and SMART endpoints arrive later, on the same router.
//!
//! Handlers hold a [`Records`] service and never a database handle: every access to health data
//! goes through the one door. Errors are turned into `OperationOutcome`s in one place
//! ([`fhir::error`]); security headers, the client address, rate limits and CSRF are layers set
//! up here, in one place. Connections are accepted and held to their limits (time to send a
//! request head, idle time, how many at once) by ironchart's own accept loop ([`ServerLimits`]).
#![forbid(unsafe_code)]

mod app;
pub mod client;
mod csrf;
pub mod fhir;
mod headers;
mod rate_limit;
mod server;
pub mod terminology;
pub mod tls;

pub use rate_limit::RateLimiter;
pub use server::ServerLimits;

/// What the fuzz targets in `fuzz/` reach that is not public: the parsers of what browsers and
/// clients send. Built only by `cargo fuzz` (which sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use axum::http::{HeaderMap, HeaderValue, header};

    /// Reads cookie `name` from one `Cookie` header value.
    pub fn cookie(header_value: &str, name: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(header_value).ok()?);
        crate::app::cookie(&headers, name)
    }

    /// Parses AuditEvent search parameters; whether they made a query.
    pub fn audit_event_query(pairs: &[(String, String)]) -> bool {
        crate::fhir::audit_event::query_of(pairs).is_ok()
    }
}

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use ironchart_records::Records;
use tokio::net::TcpListener;

/// What the HTTP layer needs to know.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The public base URL of the FHIR API, without a trailing slash
    /// (e.g. `http://127.0.0.1:8080/fhir`); used in `Location` headers and Bundle links.
    pub fhir_base: String,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Requests per second allowed per client address (`None`: unlimited).
    pub rate_limit: Option<u32>,
    /// The public origin of the pages (`https://emr.example.org`), which forms must come from.
    pub origin: String,
    /// Whether the server is reached over TLS (then responses carry HSTS).
    pub tls: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The code lists pages pick from (shipped, or with a site's loaded release).
    pub terminology: Arc<terminology::Terminology>,
}

impl WebConfig {
    /// A configuration for a base URL such as `http://127.0.0.1:8080` (no trailing slash).
    pub fn for_base(base: &str) -> WebConfig {
        let base = base.trim_end_matches('/');
        let origin = match base.find("://") {
            Some(i) => match base[i + 3..].find('/') {
                Some(j) => base[..i + 3 + j].to_string(),
                None => base.to_string(),
            },
            None => base.to_string(),
        };
        WebConfig {
            fhir_base: format!("{base}/fhir"),
            body_limit: 16 * 1024 * 1024,
            rate_limit: Some(1000),
            tls: base.starts_with("https://"),
            origin,
            trusted_proxies: Vec::new(),
            terminology: terminology::shipped(),
        }
    }
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub records: Records,
    pub config: Arc<WebConfig>,
}

/// The whole application router.
pub fn router(records: Records, config: WebConfig) -> Router {
    let limiter = config.rate_limit.filter(|r| *r > 0).map(RateLimiter::new);
    // Absolute references on our own base are local ones.
    records.set_base_url(&config.fhir_base);
    let state = AppState {
        records,
        config: Arc::new(config),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .merge(fhir::routes())
        .merge(app::routes())
        .fallback(fhir::error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::same_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client::client_address,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Serves `app` over HTTPS on `listener`, within `limits`, until `shutdown` resolves.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::run(listener, Some(acceptor), app, limits, shutdown).await
}

/// Serves `app` on `listener`, within `limits`, until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::run(listener, None, app, limits, shutdown).await
}
