//! Properties of the parsers and envelopes that see untrusted input: scopes from tokens and
//! command lines, TOTP codes and secrets typed by people, sealed bodies read back from storage.
//! None of them may panic, and what they accept must mean what it says.

use ironchart_security::keyring::{Keyring, MasterKey, SealError};
use ironchart_security::scope::{Interaction, Role, Scope, Scopes};
use ironchart_security::totp::{TotpSecret, code_at, verify_code};
use proptest::prelude::*;

/// Scope-shaped text: mostly well-formed pieces, sometimes not.
fn scope_text() -> impl Strategy<Value = String> {
    let context = prop_oneof![
        Just("patient"),
        Just("user"),
        Just("system"),
        Just("launch"),
        Just("")
    ];
    let ty = prop_oneof![
        Just("*"),
        Just("Patient"),
        Just("Observation"),
        Just("AuditEvent"),
        Just("NotAType"),
        Just("")
    ];
    let perms = prop_oneof![
        Just("cruds"),
        Just("rs"),
        Just("read"),
        Just("write"),
        Just("*"),
        Just("sr"),
        Just("crud"),
        Just("x"),
        Just("")
    ];
    (context, ty, perms, any::<bool>()).prop_map(|(c, t, p, dot)| {
        if dot {
            format!("{c}/{t}.{p}")
        } else {
            format!("{c}/{t}{p}")
        }
    })
}

fn scopes_text() -> impl Strategy<Value = String> {
    prop::collection::vec(scope_text(), 0..6).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn scope_parsing_never_panics(text in ".{0,80}") {
        let _ = Scope::parse(&text);
        let _ = Scopes::parse(&text);
        let _ = Role::parse(&text);
    }

    #[test]
    fn a_parsed_scope_reads_back_the_same(text in scope_text()) {
        if let Ok(scope) = Scope::parse(&text) {
            let again = Scope::parse(&scope.to_string()).expect("a printed scope parses");
            prop_assert_eq!(again.to_string(), scope.to_string());
            for ty in ["Patient", "Observation", "AuditEvent"] {
                for i in Interaction::ALL {
                    prop_assert_eq!(again.allows(ty, i), scope.allows(ty, i));
                }
            }
        }
    }

    #[test]
    fn scopes_are_within_themselves_and_any_union(a in scopes_text(), b in scopes_text()) {
        if let (Ok(a), Ok(b)) = (Scopes::parse(&a), Scopes::parse(&b)) {
            prop_assert!(a.is_within(&a));
            prop_assert!(a.is_within(&a.union(&b)));
            // Nothing the narrower set allows is refused by the wider one.
            let wide = a.union(&b);
            for ty in ["Patient", "Observation", "Condition"] {
                for i in Interaction::ALL {
                    prop_assert!(!a.allows(ty, i) || wide.allows(ty, i));
                }
            }
        }
    }

    #[test]
    fn no_requested_scope_outgrows_a_role(text in scopes_text(), role in 0usize..7) {
        let roles = [
            Role::Admin,
            Role::Physician,
            Role::Nurse,
            Role::FrontDesk,
            Role::Billing,
            Role::Auditor,
            Role::Patient,
        ];
        let granted = roles[role].scopes();
        if let Ok(wanted) = Scopes::parse(&text)
            && wanted.is_within(&granted)
        {
            for ty in ["Patient", "Observation", "Condition", "AuditEvent", "Claim"] {
                for i in Interaction::ALL {
                    prop_assert!(!wanted.allows(ty, i) || granted.allows(ty, i));
                }
            }
        }
    }

    #[test]
    fn typed_codes_never_panic(code in ".{0,12}", at in 0u64..4_000_000_000, last in proptest::option::of(0u64..200_000_000)) {
        let secret = TotpSecret::from_bytes(&[7u8; 20]).expect("a 20-byte secret");
        let _ = verify_code(&secret, &code, at, last);
        let _ = TotpSecret::from_base32(&code);
    }

    #[test]
    fn a_code_is_accepted_once(bytes in prop::collection::vec(any::<u8>(), 20..=20), at in 60u64..4_000_000_000) {
        let secret = TotpSecret::from_bytes(&bytes).expect("a 20-byte secret");
        let code = code_at(&secret, at);
        let step = verify_code(&secret, &code, at, None);
        prop_assert!(step.is_some());
        prop_assert_eq!(verify_code(&secret, &code, at, step), None);
        let round = TotpSecret::from_base32(&secret.to_base32()).expect("base32 reads back");
        prop_assert_eq!(round.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn sealed_bodies_open_only_for_their_row(
        body in prop::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
        garbage in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let master = MasterKey::generate();
        let ring = Keyring::new(&master, &[(1, "salt-one".into())], 1);
        let sealed = ring.seal(b"Observation/1/1", &body);
        prop_assert_eq!(ring.open(b"Observation/1/1", &sealed).expect("opens"), body);
        prop_assert!(ring.open(b"Observation/1/2", &sealed).is_err());
        let mut tampered = sealed.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(ring.open(b"Observation/1/1", &tampered).is_err());
        // Arbitrary bytes are refused, never a panic.
        prop_assert!(matches!(
            ring.open(b"Observation/1/1", &garbage),
            Err(SealError::Integrity | SealError::UnknownGeneration(_))
        ));
    }
}
