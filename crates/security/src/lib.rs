//! Security primitives for the one door: the keyring (master key, derived keys, the AEAD
//! envelope around stored bodies), password hashing, TOTP, SMART scopes and roles. (The audit
//! chain's MACs and checkpoint signatures are computed by `ironchart-records`, from keys derived
//! here.)
//!
//! Pure apart from reading and creating the master key file: no database, no network. Secrets
//! here never implement `Display` or `Debug` with their value.
#![forbid(unsafe_code)]

pub mod keyring;
pub mod password;
pub mod scope;
pub mod totp;

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
