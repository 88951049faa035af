//! The FHIR API over real HTTP, on SQLite and (when `IRONCHART_TEST_DATABASE_URL` is set) on
//! PostgreSQL.

// Test code: its helpers (outside `#[test]` functions) may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access;
mod bad_input;
mod bundles;
mod chart;
mod connections;
mod crud;
mod examples;
mod invariants;
mod limits;
mod policy;
mod search;
mod signin;
mod visit;
