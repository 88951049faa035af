//! The client's address, decided in one place: the connection's peer, or — only when the peer
//! is an explicitly trusted reverse proxy — the last address that proxy appended to
//! `X-Forwarded-For`. Rate limits, lockouts and the audit log all use this.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// The client address of a request (an extension set by the `client_address` layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

pub(crate) async fn client_address(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<crate::tls::TlsPeer>>()
                .map(|c| c.0.0.ip())
        });
    let ip = match peer {
        Some(p) if state.config.trusted_proxies.contains(&p) => {
            forwarded_for(request.headers()).or(Some(p))
        }
        other => other,
    };
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}

/// The right-most address of `X-Forwarded-For` (the one our trusted proxy saw).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn takes_the_last_forwarded_address() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("198.51.100.7".parse().unwrap()));
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(forwarded_for(&bad), None);
    }
}
