//! Integration tests of `ironchart-fhir`, one binary with a module per area.

// Test code: its helpers (outside `#[test]` functions) may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod examples;
mod extract;
mod generated;
mod properties;
mod validate;
