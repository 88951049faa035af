//! `GET /fhir/AuditEvent?…`: any query string is a query or a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query).into_owned().collect();
    let _ = ironchart_web::fuzzing::audit_event_query(&pairs);
});
