//! ironchart's own accept loop, for plain HTTP and HTTPS alike: HTTP/1.1 and HTTP/2 on hyper,
//! with the limits a server facing the internet needs ([`ServerLimits`]):
//!
//! - a cap on open connections: when it is reached, new connections wait in the kernel's
//!   backlog until one closes;
//! - a time limit on the TLS handshake and on the request head (the first request's and each
//!   later one's on a kept-alive connection);
//! - an idle timeout: a connection that carries no traffic for that long while the server is
//!   not working on one of its requests is closed;
//! - graceful shutdown that waits a bounded time for requests in flight.
//!
//! Each request carries the peer address as `ConnectInfo` (`SocketAddr`, or [`TlsPeer`] over
//! TLS), which [`crate::client`] reads. Logs name no client, path or header.

mod activity;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::tls::TlsPeer;
use activity::{Activity, Handling, Side, Tracked, Watched};

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client has to finish its TLS handshake, and then to send a complete request
    /// head (for the first request and for each later one on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// How long a connection may carry no traffic, while the server is not working on one of
    /// its requests, before it is closed.
    pub idle_timeout: Duration,
    /// How many connections may be open at once; more wait until one closes.
    pub max_connections: u32,
    /// How long shutdown waits for requests in flight before it closes their connections.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// Whether the limits can be served: timeouts positive and at most a day, at least one
    /// connection. The error reads well for an operator.
    pub fn check(&self) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let times = [
            ("header read timeout", self.header_read_timeout),
            ("idle timeout", self.idle_timeout),
            ("shutdown grace period", self.shutdown_grace),
        ];
        for (name, time) in times {
            if time > LONGEST {
                return Err(invalid(&format!("the {name} must be at most a day")));
            }
        }
        if self.header_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(invalid(
                "the header read and idle timeouts must be positive",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("at least one connection must be allowed"));
        }
        Ok(())
    }
}

/// The longest time limit accepted (so that deadlines never overflow).
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// How long a connection closed for idleness has to say goodbye (an HTTP/2 GOAWAY) before it
/// is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long the accept loop pauses after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often, at most, a full connection cap is logged.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `shutdown` resolves, then waits
/// up to `limits.shutdown_grace` for requests in flight.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    limits.check()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop, stopped) = watch::channel(false);
    let mut cap_warned: Option<Instant> = None;
    let mut accept_failing = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = take_slot(&slots, &mut cap_warned) => permit,
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    if accept_failing {
                        accept_failing = false;
                        tracing::info!("accepting connections again");
                    }
                    accepted
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    if !accept_failing {
                        accept_failing = true;
                        tracing::warn!(error = %e, "cannot accept connections; retrying");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
            _permit: permit,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(tcp, ConnectInfo(peer)));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            connection.serve(stream, ConnectInfo(TlsPeer(peer))).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends, and each ends within the grace period.
    let all = slots.acquire_many(limits.max_connections);
    let wait = limits.shutdown_grace + IDLE_CLOSE_GRACE;
    if tokio::time::timeout(wait, all).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    Ok(())
}

/// A connection slot; waits while the cap is reached, and says so now and then.
async fn take_slot(slots: &Arc<Semaphore>, warned: &mut Option<Instant>) -> OwnedSemaphorePermit {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return permit;
    }
    if warned.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
        *warned = Some(Instant::now());
        tracing::warn!("the connection limit is reached; new connections wait");
    }
    match slots.clone().acquire_owned().await {
        Ok(permit) => permit,
        // The semaphore is never closed; if it were, stop accepting.
        Err(_) => std::future::pending().await,
    }
}

/// Errors that concern one connection (gone before it was accepted), not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what serving it needs.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    limits: ServerLimits,
    stopped: watch::Receiver<bool>,
    /// Its place under the connection cap, given back when it ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves HTTP on `io` until the connection ends, times out, or shutdown closes it.
    async fn serve<I, P>(self, io: I, peer: ConnectInfo<P>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        P: Clone + Send + Sync + 'static,
    {
        let Connection {
            builder,
            app,
            limits,
            mut stopped,
            _permit,
        } = self;
        let opened = Instant::now();
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(io, activity.clone()));
        let on_request = activity.clone();
        let service = hyper::service::service_fn(move |request: axum::http::Request<Incoming>| {
            let handling = Handling::start(&on_request);
            let activity = on_request.clone();
            let mut request = request.map(|body| {
                axum::body::Body::new(Tracked::new(body, activity.clone(), Side::Client))
            });
            request.extensions_mut().insert(peer.clone());
            let app = app.clone();
            async move {
                let response = match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                drop(handling);
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, activity, Side::Server)))
            }
        });
        let connection = builder.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        // Once closing: when the connection is dropped whether it has finished or not.
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake = closing.unwrap_or_else(|| next_check(&activity, &limits, opened, now));
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stopped.changed(), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + limits.shutdown_grace);
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if closing.is_some() {
                        tracing::debug!("connection closed: it did not finish in time");
                        return;
                    }
                    let now = Instant::now();
                    if !activity.requested() && now >= opened + limits.header_read_timeout {
                        tracing::debug!("connection closed: no request head in time");
                        return;
                    }
                    if !activity.server_busy()
                        && now >= activity.last_traffic() + limits.idle_timeout
                    {
                        tracing::debug!("connection closed: idle");
                        connection.as_mut().graceful_shutdown();
                        closing = Some(now + IDLE_CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

/// When to look at a connection again: at the first request's deadline while none has come,
/// and when the idle timeout would run out.
fn next_check(
    activity: &Activity,
    limits: &ServerLimits,
    opened: Instant,
    now: Instant,
) -> Instant {
    let mut at = activity.last_traffic() + limits.idle_timeout;
    if at <= now {
        // Quiet, but the server is at work: look again soon.
        at = now + limits.idle_timeout.min(Duration::from_secs(1));
    }
    if !activity.requested() {
        at = at.min(opened + limits.header_read_timeout);
    }
    at.max(now)
}
