//! Resource bodies sent to create, update and import: validation and search-index extraction
//! never panic on any JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let issues = ironchart_fhir::validate::resource_issues(&value);
    if issues.is_empty() {
        let _ = ironchart_fhir::extract::extract(&value);
    }
});
