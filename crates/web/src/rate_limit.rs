//! Per-client rate limiting: a token bucket per client address, refilled continuously. Over the
//! limit, requests get `429 Too Many Requests` with `Retry-After` and an `OperationOutcome`.
//!
//! Why not `governor`: its keyed limiter would bring 17 crates this build does not have
//! (dashmap, quanta with raw-cpuid, a second `rand`/`getrandom`, two more `hashbrown`s …, counted
//! with `cargo tree` on 2026-12-06) for what is sixty lines here, and its keyed state grows with
//! every address seen until the owner calls `retain_recent`. Here the memory bound is part of
//! taking a token: at most [`MAX_CLIENTS`] clients, idle (full) buckets forgotten first, then the
//! longest unseen, so that a flood from many addresses can neither grow the table without end nor
//! make every request scan it.
//!
//! A client is an IPv4 address, or an IPv6 /64: one subscriber line or host holds a whole /64,
//! and counting its addresses one by one would give it 2^64 buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::fhir::error::ApiError;

/// Most client addresses remembered; beyond it, idle (full) buckets are forgotten.
const MAX_CLIENTS: usize = 50_000;

/// Whom a bucket belongs to: an IPv4 address, or an IPv6 /64 (an IPv4-mapped IPv6 address is
/// its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Net(u64),
}

impl Client {
    fn of(address: IpAddr) -> Client {
        match address {
            IpAddr::V4(a) => Client::V4(a.into()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.into()),
                None => Client::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The shared limiter: `rate` requests per second per client address, bursts up to `burst`.
#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<Client, Bucket>>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32) -> RateLimiter {
        let rate = f64::from(rate_per_second);
        RateLimiter {
            rate,
            burst: (rate * 2.0).max(1.0),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes one token for `address`'s client; `Err(seconds)` to wait when there is none.
    fn take(&self, address: IpAddr) -> Result<(), u64> {
        let client = Client::of(address);
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
            if buckets.len() > MAX_CLIENTS * 3 / 4 {
                // Every client is busy: forget the longest unseen down to three quarters, so
                // that the next clients do not each pay for a scan.
                let mut seen: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
                let cut = seen.len() - MAX_CLIENTS * 3 / 4;
                let (_, oldest_kept, _) = seen.select_nth_unstable(cut);
                let oldest_kept = *oldest_kept;
                buckets.retain(|_, b| b.updated >= oldest_kept);
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

pub(crate) async fn limit(
    State(limiter): State<Option<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limiter) = limiter
        && let Some(crate::client::ClientIp(Some(ip))) =
            request.extensions().get::<crate::client::ClientIp>()
        && let Err(wait) = limiter.take(*ip)
    {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many requests from this address; slow down and retry later",
            None,
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let l = RateLimiter::new(5);
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..10 {
            assert!(l.take(ip).is_ok());
        }
        assert!(l.take(ip).is_err());
        let other: IpAddr = [127, 0, 0, 2].into();
        assert!(l.take(other).is_ok(), "buckets are per client");
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let l = RateLimiter::new(5);
        let base: u128 = 0x2001_0db8_0000_0001_0000_0000_0000_0000;
        for n in 0..10u128 {
            let ip = IpAddr::V6((base + n).into());
            assert!(l.take(ip).is_ok());
        }
        // Another address of the same /64 is the same client.
        assert!(l.take(IpAddr::V6((base + 0xffff).into())).is_err());
        // The next /64 is another.
        assert!(l.take(IpAddr::V6((base + (1 << 64)).into())).is_ok());
        // An IPv4-mapped address is its IPv4 address.
        let v4: IpAddr = [192, 0, 2, 7].into();
        for _ in 0..10 {
            assert!(l.take(v4).is_ok());
        }
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert!(l.take(mapped).is_err());
    }

    #[test]
    fn a_flood_of_busy_clients_stays_bounded() {
        let l = RateLimiter::new(1);
        for n in 0..(MAX_CLIENTS as u32 + 1_000) {
            // Each client takes a token, so none is idle.
            let _ = l.take(IpAddr::V4(n.into()));
        }
        let held = l.buckets.lock().map(|b| b.len()).unwrap_or(usize::MAX);
        assert!(held <= MAX_CLIENTS, "{held} buckets");
        // A client seen a moment ago is still limited.
        let last = IpAddr::V4((MAX_CLIENTS as u32 + 999).into());
        assert!(l.take(last).is_ok());
        assert!(l.take(last).is_err());
    }
}
