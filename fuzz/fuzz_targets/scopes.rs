//! SMART scopes from tokens, token requests and the command line: parsing never panics, and a
//! parsed scope set prints to text that parses to the same set.
#![no_main]

use ironchart_security::scope::{Role, Scope, Scopes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = Role::parse(text);
    if let Ok(scope) = Scope::parse(text) {
        let again = Scope::parse(&scope.to_string()).expect("a printed scope parses");
        assert_eq!(again.to_string(), scope.to_string());
    }
    if let Ok(scopes) = Scopes::parse(text) {
        let again = Scopes::parse(&scopes.to_string()).expect("printed scopes parse");
        assert_eq!(again.to_string(), scopes.to_string());
        assert!(scopes.is_within(&again) && again.is_within(&scopes));
    }
});
