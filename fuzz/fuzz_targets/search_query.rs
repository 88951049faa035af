//! FHIR search parameters (`GET /fhir/Patient?…`): any query string is a search or a refusal,
//! never a panic.
#![no_main]

use ironchart_fhir::search::SearchQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query).into_owned().collect();
    for resource_type in ["Patient", "Observation", "AuditEvent"] {
        let _ = SearchQuery::parse(resource_type, &pairs);
    }
});
