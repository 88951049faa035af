//! Per-client rate limiting: a token bucket per client address, refilled continuously. Over the
//! limit, requests get `429 Too Many Requests` with `Retry-After` and an `OperationOutcome`.

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

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The shared limiter: `rate` requests per second per client address, bursts up to `burst`.
#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
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

    /// Takes one token for `client`; `Err(seconds)` to wait when there is none.
    fn take(&self, client: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_CLIENTS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
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
}
