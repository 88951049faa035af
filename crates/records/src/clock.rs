//! The service's clock: every "now" the door decides by (version times, token, session and
//! break-the-glass expiry, lockouts, audit entries) comes from the [`Clock`] a [`crate::Records`]
//! was given: the system's by default, a [`ManualClock`] in tests that must not sleep to see
//! something expire.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use ironchart_fhir::Instant;

/// Where the records service reads the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told (for tests of expiry).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn at(at: Instant) -> ManualClock {
        ManualClock(AtomicI64::new(at.as_millis()))
    }

    /// A clock stopped at the system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(Instant::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Instant) {
        self.0.store(at.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.load(Ordering::SeqCst))
    }
}
