//! ironchart's HTTP face: the FHIR R4 REST API at `/fhir` and `/healthz` (the clinician app,
//! portal, admin pages and SMART endpoints arrive later, on the same router).
//!
//! Handlers hold a [`Records`] service and never a database handle: every access to health data
//! goes through the one door. Errors are turned into `OperationOutcome`s in one place
//! ([`fhir::error`]); security headers are one layer ([`headers`]).
#![forbid(unsafe_code)]

pub mod fhir;
mod headers;
mod rate_limit;

pub use rate_limit::RateLimiter;

use std::net::SocketAddr;
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
    let state = AppState {
        records,
        config: Arc::new(config),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .merge(fhir::routes())
        .fallback(fhir::error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
