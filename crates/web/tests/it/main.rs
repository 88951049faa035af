//! The FHIR API over real HTTP, on SQLite and (when `IRONCHART_TEST_DATABASE_URL` is set) on
//! PostgreSQL.

mod support;

mod access;
mod bad_input;
mod bundles;
mod connections;
mod crud;
mod examples;
mod invariants;
mod limits;
mod policy;
mod search;
mod signin;
