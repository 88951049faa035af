//! Integration tests of `ironchart-fhir`, one binary with a module per area.

mod examples;
mod extract;
mod generated;
mod properties;
mod validate;
