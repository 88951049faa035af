//! The `Cookie` header as browsers (or anyone) send it: reading the session cookie never panics
//! and yields a short, non-empty value or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    for name in ["__Host-ironchart", "__Host-ironchart-pre", ""] {
        if let Some(v) = ironchart_web::fuzzing::cookie(header, name) {
            assert!(!v.is_empty() && v.len() <= 100);
        }
    }
});
