//! Passwords: the rules a new password must meet, and Argon2id hashing in PHC strings.
//!
//! Hashes use Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane) and a random 16-byte
//! salt. Verifying tells whether a stored hash was made with other parameters, so the caller can
//! re-hash at the next successful sign-in, and [`verify_dummy`] costs the same as a real check,
//! so a sign-in for an unknown user takes as long as one with a wrong password.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

/// The fewest characters (Unicode scalar values) a new password may have.
pub const MIN_LENGTH: usize = 12;
/// The most bytes (UTF-8) a new password may have.
pub const MAX_BYTES: usize = 1024;

/// Argon2 memory cost in KiB.
const M_COST: u32 = 19_456;
/// Argon2 passes over the memory.
const T_COST: u32 = 2;
/// Argon2 lanes.
const P_COST: u32 = 1;
/// Bytes of hash output.
const OUTPUT_LEN: usize = 32;

const PARAMS: Params = match Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("invalid Argon2 parameters"),
};

/// Stored hashes asking for more than this are refused as malformed rather than computed: a
/// damaged or planted row must not make a sign-in allocate gigabytes or run for minutes.
const MAX_VERIFY_M_COST: u32 = 256 * 1024;
const MAX_VERIFY_T_COST: u32 = 16;
const MAX_VERIFY_P_COST: u32 = 16;

/// What [`hash_password`] returns in the one case Argon2 refuses its input (a password of 4 GiB
/// or more): a string that is no PHC string, so it never verifies.
const UNUSABLE_HASH: &str = "!";

/// The common-password list (see `data/README.md`): lower-case, one a line.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// Why a new password is refused. The messages are written for the person choosing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("use at least {MIN_LENGTH} characters")]
    TooShort,
    #[error(
        "use at most {MAX_BYTES} characters (letters with accents and symbols count as two or \
         more)"
    )]
    TooLong,
    #[error("this is one of the most common passwords; choose one that is harder to guess")]
    Common,
    #[error("the password must not contain your username")]
    ContainsUsername,
}

/// Checks a password someone wants to set: long enough, not too long, not one of the most
/// common passwords and not containing the username (ignoring case; usernames shorter than 3
/// characters are not looked for).
pub fn check_new_password(password: &str, username: &str) -> Result<(), PasswordProblem> {
    if password.len() > MAX_BYTES {
        return Err(PasswordProblem::TooLong);
    }
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordProblem::TooShort);
    }
    let lower = password.to_lowercase();
    if is_common(&lower) || is_common(lower.trim()) {
        return Err(PasswordProblem::Common);
    }
    let username = username.trim().to_lowercase();
    if username.chars().count() >= 3 && lower.contains(&username) {
        return Err(PasswordProblem::ContainsUsername);
    }
    Ok(())
}

fn is_common(lower: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect())
        .contains(lower)
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// Hashes `password` with Argon2id under the current parameters and a fresh random salt, and
/// returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
///
/// Only a password of 4 GiB or more can fail (Argon2's own limit); it gets a string that never
/// verifies. [`check_new_password`] refuses anything over [`MAX_BYTES`] long before that.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    match hasher().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => hash.to_string(),
        Err(_) => UNUSABLE_HASH.to_owned(),
    }
}

/// The outcome of [`verify_password`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password is right. When `needs_rehash` is true the stored hash was made with
    /// another algorithm, version or parameters: store `hash_password(password)` in its place.
    Match { needs_rehash: bool },
    /// The password is wrong, or the stored string is not a usable Argon2 PHC string.
    Mismatch,
}

/// Checks `password` against a stored PHC string. Never panics: anything that is not a
/// well-formed Argon2 PHC string within sane cost limits is a [`Verified::Mismatch`].
pub fn verify_password(password: &str, phc: &str) -> Verified {
    let Ok(hash) = PasswordHash::new(phc) else {
        return Verified::Mismatch;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return Verified::Mismatch;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version,
        Err(_) => return Verified::Mismatch,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return Verified::Mismatch;
    };
    if params.m_cost() > MAX_VERIFY_M_COST
        || params.t_cost() > MAX_VERIFY_T_COST
        || params.p_cost() > MAX_VERIFY_P_COST
    {
        return Verified::Mismatch;
    }
    // The verifier takes algorithm, version and parameters from the PHC string itself and
    // compares the outputs in constant time.
    if hasher()
        .verify_password(password.as_bytes(), &hash)
        .is_err()
    {
        return Verified::Mismatch;
    }
    let output_len = hash.hash.map(|output| output.len());
    let needs_rehash = algorithm != Algorithm::Argon2id
        || version != Some(Version::V0x13)
        || params.m_cost() != M_COST
        || params.t_cost() != T_COST
        || params.p_cost() != P_COST
        || output_len != Some(OUTPUT_LEN);
    Verified::Match { needs_rehash }
}

/// Does the work of one [`verify_password`] against a fixed hash made with the current
/// parameters, and throws the result away: call it when the user is unknown, so that answer
/// takes as long as a wrong password. The fixed hash is made on the first call.
pub fn verify_dummy(password: &str) {
    let _ = std::hint::black_box(verify_password(password, dummy_hash()));
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("ironchart: no such user, no such password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";
    /// Made by the reference implementation (the `argon2` command of the Argon2 authors):
    /// `printf %s 'correct horse battery staple' | argon2 ironchart-salt-16 -id -t 2 -k 19456
    /// -p 1 -l 32 -e`, and the same with other options for the others.
    const REFERENCE_CURRENT: &str = "$argon2id$v=19$m=19456,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$\
        TL1iYu59EvzesuHNZJTtxgb4jGborZuuB5EwpDkFuDQ";
    const REFERENCE_WEAKER: &str = "$argon2id$v=19$m=8192,t=1,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$\
        LrsPR0UJWNRMQhSBFKQlDjyjU0UJuIpSiV7EO2brF18";
    const REFERENCE_ARGON2I: &str = "$argon2i$v=19$m=19456,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$\
        hCoomFaVgXUT6QktPmEQzUAm3sxIsdlvZEVc8zy6hcs";
    const REFERENCE_V16: &str = "$argon2id$v=16$m=19456,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$\
        62rEMvN/m/u3xLOcfwZvd00Az43maskX/zo+Pxio83E";
    const REFERENCE_LONG_OUTPUT: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
        aXJvbmNoYXJ0LXNhbHQtMTY$prIr5qVuLbUnxaZcY/+8rPPe/xiAz4ZIxXoYnQPiDBgcVHjDdx6Kvr5tW60Zu6By\
        JZPQsVF2spKxwXK3b7Xs/w";

    #[test]
    fn rules_for_new_passwords() {
        assert_eq!(
            check_new_password("elevenchars", "ann"),
            Err(PasswordProblem::TooShort)
        );
        assert_eq!(
            check_new_password("", "ann"),
            Err(PasswordProblem::TooShort)
        );
        assert_eq!(check_new_password("twelve chars", "ann"), Ok(()));
        // Counted in characters, not bytes: 11 two-byte letters are still too few.
        assert_eq!(
            check_new_password(&"é".repeat(11), "ann"),
            Err(PasswordProblem::TooShort)
        );
        assert_eq!(check_new_password(&"é".repeat(12), "ann"), Ok(()));
        assert_eq!(check_new_password(&"x".repeat(MAX_BYTES), "ann"), Ok(()));
        assert_eq!(
            check_new_password(&"x".repeat(MAX_BYTES + 1), "ann"),
            Err(PasswordProblem::TooLong)
        );
        // 513 two-byte letters are 1026 bytes.
        assert_eq!(
            check_new_password(&"é".repeat(513), "ann"),
            Err(PasswordProblem::TooLong)
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for common in [
            "qwerty123456",
            "1qaz2wsx3edc",
            "QWERTY123456",
            "1Q2W3E4R5T6Y",
        ] {
            assert_eq!(
                check_new_password(common, "ann"),
                Err(PasswordProblem::Common),
                "{common}"
            );
        }
        assert_eq!(
            check_new_password(" qwerty123456 ", "ann"),
            Err(PasswordProblem::Common)
        );
        assert_eq!(check_new_password("qwerty123457x", "ann"), Ok(()));
    }

    #[test]
    fn the_common_list_is_the_embedded_file() {
        let count = COMMON_PASSWORDS.lines().count();
        assert!((8_000..=20_000).contains(&count), "{count} entries");
        assert!(COMMON_PASSWORDS.lines().all(|l| l.chars().count() >= 8));
        assert!(COMMON_PASSWORDS.lines().all(|l| l == l.to_lowercase()));
        assert!(is_common("password") && is_common("12345678") && is_common("iloveyou"));
        assert!(
            !is_common("123456"),
            "entries under 8 characters were dropped"
        );
    }

    #[test]
    fn the_username_must_not_be_in_the_password() {
        assert_eq!(
            check_new_password("my name is DrSmith!", "drsmith"),
            Err(PasswordProblem::ContainsUsername)
        );
        assert_eq!(
            check_new_password("abcdefghijkl", "ABCDEFGHIJKL"),
            Err(PasswordProblem::ContainsUsername)
        );
        assert_eq!(
            check_new_password("amber lantern walk", "Amber"),
            Err(PasswordProblem::ContainsUsername)
        );
        // Two-letter usernames are not looked for.
        assert_eq!(check_new_password("joyful lantern walk", "jo"), Ok(()));
        assert_eq!(check_new_password("joyful lantern walk", ""), Ok(()));
    }

    #[test]
    fn messages_speak_to_the_user() {
        assert_eq!(
            PasswordProblem::TooShort.to_string(),
            "use at least 12 characters"
        );
        assert!(PasswordProblem::Common.to_string().contains("most common"));
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_with_fresh_salts() {
        let a = hash_password(PASSWORD);
        let b = hash_password(PASSWORD);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert_eq!(
            verify_password(PASSWORD, &a),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_password(PASSWORD, &b),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_password("correct horse battery stapler", &a),
            Verified::Mismatch
        );
        assert_eq!(verify_password("", &a), Verified::Mismatch);
    }

    #[test]
    fn verifies_hashes_of_the_reference_implementation() {
        assert_eq!(
            verify_password(PASSWORD, REFERENCE_CURRENT),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_password("Correct horse battery staple", REFERENCE_CURRENT),
            Verified::Mismatch
        );
    }

    #[test]
    fn other_parameters_need_a_rehash() {
        for phc in [
            REFERENCE_WEAKER,
            REFERENCE_ARGON2I,
            REFERENCE_V16,
            REFERENCE_LONG_OUTPUT,
        ] {
            assert_eq!(
                verify_password(PASSWORD, phc),
                Verified::Match { needs_rehash: true },
                "{phc}"
            );
            assert_eq!(
                verify_password("wrong password", phc),
                Verified::Mismatch,
                "{phc}"
            );
        }
    }

    #[test]
    fn malformed_hashes_never_match() {
        let one_char_changed = REFERENCE_CURRENT.replace("TL1i", "TL1j");
        let huge_memory = REFERENCE_CURRENT.replace("m=19456", "m=4194304");
        let many_passes = REFERENCE_CURRENT.replace("t=2", "t=4000000");
        for phc in [
            "",
            "!",
            UNUSABLE_HASH,
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY",
            "$argon2id$v=19$m=abc,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$TL1iYu59EvzesuHNZJTtxg",
            "$argon2id$v=99$m=19456,t=2,p=1$aXJvbmNoYXJ0LXNhbHQtMTY$TL1iYu59EvzesuHNZJTtxg",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!!$TL1iYu59EvzesuHNZJTtxg",
            &REFERENCE_CURRENT[..REFERENCE_CURRENT.len() - 10],
            &one_char_changed,
            &huge_memory,
            &many_passes,
        ] {
            assert_eq!(
                verify_password(PASSWORD, phc),
                Verified::Mismatch,
                "{phc:?}"
            );
        }
    }

    #[test]
    fn the_dummy_hash_uses_the_current_parameters() {
        let dummy = dummy_hash();
        assert!(
            dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{dummy}"
        );
        assert_eq!(
            verify_password("ironchart: no such user, no such password", dummy),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert!(std::ptr::eq(dummy, dummy_hash()), "made once");
        verify_dummy(PASSWORD);
        verify_dummy("");
    }
}
