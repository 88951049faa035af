//! Second factor: time-based one-time passwords (RFC 6238 with HMAC-SHA1, 30-second steps,
//! 6 digits, as every authenticator app understands), the `otpauth://` enrolment URI and its QR
//! code, and single-use recovery codes.
//!
//! A code is accepted once: [`verify_code`] returns the time step it matched, the caller stores
//! it, and passes it back next time so the same or an older code is refused.

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;

/// Recovery code characters: digits and lower-case letters without 0, 1, i, l and o, which are
/// easily mistaken for one another (31 characters, so about 4.95 bits each).
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("a TOTP secret must be {SECRET_LEN} bytes, not {0}")]
    SecretLength(usize),
    #[error("the TOTP secret is not valid base32")]
    Base32,
    #[error("the text is too long for a QR code")]
    TooLongForQr,
}

/// A TOTP secret: 20 bytes, wiped from memory when dropped. Its `Debug` shows no byte of it.
pub struct TotpSecret([u8; SECRET_LEN]);

impl TotpSecret {
    /// A new random secret from the operating system's generator.
    pub fn generate() -> TotpSecret {
        let mut bytes = [0u8; SECRET_LEN];
        OsRng.fill_bytes(&mut bytes);
        TotpSecret(bytes)
    }

    /// The secret with these bytes (exactly [`SECRET_LEN`] of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<TotpSecret, TotpError> {
        let array: [u8; SECRET_LEN] = bytes
            .try_into()
            .map_err(|_| TotpError::SecretLength(bytes.len()))?;
        Ok(TotpSecret(array))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32, upper-case, without padding: the form authenticator apps take.
    pub fn to_base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// Reads base32 as [`TotpSecret::to_base32`] writes it; also takes lower case, spaces and
    /// trailing `=` padding, as people copy it.
    pub fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        let bytes = base32_decode(text).ok_or(TotpError::Base32)?;
        TotpSecret::from_bytes(&bytes)
    }
}

impl Drop for TotpSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

fn base32_encode(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// `None` for a character outside the alphabet, a length no byte string encodes to, or
/// non-zero bits after the last byte (so each byte string has exactly one encoding). Lower
/// case, spaces and trailing padding are accepted, as people copy secrets.
fn base32_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim_end_matches(|c: char| c == '=' || c.is_ascii_whitespace());
    let clean: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b.to_ascii_uppercase())
            .collect(),
    );
    // BASE32_NOPAD checks the trailing bits, so each byte string has one encoding.
    data_encoding::BASE32_NOPAD
        .decode(&clean)
        .ok()
        .map(Zeroizing::new)
}

/// RFC 4226 HOTP (ours rather than a TOTP crate's: a few lines over the `hmac` and `sha1`
/// crates already here; the checks around it — one use per code, every candidate compared in
/// constant time — are ours either way): HMAC-SHA1 of the big-endian counter, dynamic truncation, `digits` decimal
/// digits (at most 9).
fn hotp(key: &[u8], counter: u64, digits: u32) -> Option<u32> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).ok()?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest.last()? & 0x0f);
    let window = digest.get(offset..offset + 4)?;
    let number = u32::from_be_bytes([window[0] & 0x7f, window[1], window[2], window[3]]);
    Some(number % 10u32.checked_pow(digits)?)
}

fn code_for_step(secret: &TotpSecret, step: u64) -> Option<String> {
    hotp(&secret.0, step, DIGITS as u32).map(|n| format!("{n:0width$}", width = DIGITS))
}

/// The code an authenticator app shows at `unix_seconds` (for enrolment checks and tests).
pub fn code_at(secret: &TotpSecret, unix_seconds: u64) -> String {
    code_for_step(secret, unix_seconds / PERIOD).unwrap_or_default()
}

/// Checks a code typed by the user: exactly 6 ASCII digits (spaces are ignored), matching the
/// time step before, at or after `unix_seconds` (allowing 30 seconds of clock drift either
/// way). Returns the matched step if it is later than `last_used_step`; the caller stores it
/// and passes it next time, so each code is accepted at most once.
pub fn verify_code(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let typed: Vec<u8> = code.bytes().filter(|&b| b != b' ').collect();
    if typed.len() != DIGITS || !typed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let now = unix_seconds / PERIOD;
    let mut matched = None;
    // Every candidate is computed and compared, so the time taken does not tell which matched.
    for step in [now.checked_sub(1), Some(now), now.checked_add(1)]
        .into_iter()
        .flatten()
    {
        let Some(expected) = code_for_step(secret, step) else {
            continue;
        };
        let fresh = last_used_step.is_none_or(|last| step > last);
        if crate::constant_time_eq(expected.as_bytes(), &typed) && fresh {
            matched = Some(step);
        }
    }
    matched
}

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// The enrolment URI authenticator apps read (Key URI Format):
/// `otpauth://totp/Issuer:account?secret=…&issuer=Issuer&algorithm=SHA1&digits=6&period=30`.
/// It contains the secret: show it only to its owner, and do not log it.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1\
         &digits={DIGITS}&period={PERIOD}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// `text` as a QR code in an SVG element fit to be inlined in a page: no XML declaration, no
/// `style` attribute or element (the page's Content-Security-Policy forbids inline styles),
/// a `viewBox` so CSS may resize it, and about 240 pixels wide by default with its quiet zone.
pub fn qr_svg(text: &str) -> Result<String, TotpError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|_| TotpError::TooLongForQr)?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let start = image.find("<svg").unwrap_or(0);
    Ok(image[start..].to_owned())
}

/// Ten new recovery codes such as `k7m3q-xp2dh`: 10 characters each, from an alphabet without
/// look-alikes, drawn uniformly from the operating system's generator. Show them once; store
/// only [`recovery_code_hash`] of each.
pub fn new_recovery_codes() -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let mut code = String::with_capacity(11);
        for i in 0..10 {
            if i == 5 {
                code.push('-');
            }
            let index = OsRng.gen_range(0..RECOVERY_ALPHABET.len());
            code.push(char::from(RECOVERY_ALPHABET[index]));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The stored form of a recovery code: hex SHA-256 of the code without spaces and dashes, in
/// lower case, so `K7M3Q XP2DH` finds `k7m3q-xp2dh`.
///
/// A fast unsalted hash is enough here, unlike for passwords: each code is 10 random
/// characters from 31 (about 50 bits of entropy), far beyond guessing even at GPU speed,
/// whereas passwords are chosen by people and need a slow, salted hash.
pub fn recovery_code_hash(code: &str) -> String {
    let normalized: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|&c| c != '-' && !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect(),
    );
    crate::hex(&Sha256::digest(normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 Appendix B seed for HMAC-SHA1.
    const RFC_SEED: &[u8; 20] = b"12345678901234567890";
    /// RFC 6238 Appendix B, the SHA1 rows: time and 8-digit TOTP.
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SEED).unwrap()
    }

    #[test]
    fn rfc_6238_vectors_with_8_digits() {
        for (time, expected) in RFC_VECTORS {
            let code = hotp(RFC_SEED, time / 30, 8).unwrap();
            assert_eq!(format!("{code:08}"), expected, "T = {time}");
        }
    }

    #[test]
    fn rfc_6238_vectors_with_6_digits() {
        let secret = rfc_secret();
        for (time, expected) in RFC_VECTORS {
            assert_eq!(code_at(&secret, time), expected[2..], "T = {time}");
            let step = time / 30;
            assert_eq!(verify_code(&secret, &expected[2..], time, None), Some(step));
        }
    }

    #[test]
    fn rfc_4226_hotp_vectors() {
        // RFC 4226 Appendix D: the same seed, counters 0 to 9.
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SEED, counter as u64, 6), Some(value));
        }
    }

    #[test]
    fn codes_from_the_step_before_and_after_are_accepted() {
        let secret = rfc_secret();
        // 1111111109 is step 37037036; 1111111111 is step 37037037.
        assert_eq!(
            verify_code(&secret, "081804", 1_111_111_111, None),
            Some(37_037_036)
        );
        assert_eq!(
            verify_code(&secret, "050471", 1_111_111_109, None),
            Some(37_037_037)
        );
        assert_eq!(
            verify_code(&secret, "081804", 1_111_111_109 + 60, None),
            None
        );
        assert_eq!(
            verify_code(&secret, "050471", 1_111_111_111 - 60, None),
            None
        );
        // At time 0 there is no earlier step to look at.
        let zero = code_at(&secret, 0);
        assert_eq!(verify_code(&secret, &zero, 0, None), Some(0));
        assert_eq!(verify_code(&secret, &zero, 29, None), Some(0));
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = rfc_secret();
        let step = verify_code(&secret, "287082", 59, None).unwrap();
        assert_eq!(step, 1);
        assert_eq!(verify_code(&secret, "287082", 59, Some(step)), None);
        assert_eq!(verify_code(&secret, "287082", 59, Some(step + 5)), None);
        assert_eq!(verify_code(&secret, "287082", 59, Some(0)), Some(1));
        // The next step's code is still good after this one was used.
        let next = code_at(&secret, 60);
        assert_eq!(verify_code(&secret, &next, 61, Some(step)), Some(2));
    }

    #[test]
    fn only_six_digits_count() {
        let secret = rfc_secret();
        assert_eq!(verify_code(&secret, "287 082", 59, None), Some(1));
        assert_eq!(verify_code(&secret, " 287082 ", 59, None), Some(1));
        for bad in [
            "", "28708", "2870820", "94287082", "287o82", "287-082", "２87082", "287\t082",
            "+87082", "287082\n",
        ] {
            assert_eq!(verify_code(&secret, bad, 59, None), None, "{bad:?}");
        }
        assert_eq!(verify_code(&secret, "287083", 59, None), None);
    }

    #[test]
    fn verify_at_the_end_of_time_does_not_overflow() {
        let secret = rfc_secret();
        let code = code_at(&secret, u64::MAX);
        assert_eq!(
            verify_code(&secret, &code, u64::MAX, None),
            Some(u64::MAX / 30)
        );
        assert_eq!(verify_code(&secret, &code, u64::MAX, Some(u64::MAX)), None);
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        // RFC 4648 section 10, without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap().as_slice(), plain.as_bytes());
        }
        assert_eq!(base32_decode("MZXW6YQ=").unwrap().as_slice(), b"foob");
        assert_eq!(base32_decode("mzxw 6ytb oi").unwrap().as_slice(), b"foobar");
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let secret = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(secret.as_bytes(), RFC_SEED);
    }

    #[test]
    fn bad_base32_is_refused() {
        for bad in [
            "M",
            "MZX",
            "MZXW6Y",
            "MZ1Q",
            "MZ=Q",
            "MZXR",
            "MZXW6YR",
            "MZXW6YQ=A",
            "É",
        ] {
            assert!(base32_decode(bad).is_none(), "{bad}");
        }
        assert_eq!(
            TotpSecret::from_base32("MZ1Q").err(),
            Some(TotpError::Base32)
        );
        assert_eq!(
            TotpSecret::from_base32("MZXW6YTBOI").err(),
            Some(TotpError::SecretLength(6))
        );
    }

    #[test]
    fn secrets_are_random_and_hidden() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.as_bytes().len(), 20);
        assert_eq!(a.to_base32().len(), 32);
        assert_eq!(
            TotpSecret::from_base32(&a.to_base32()).unwrap().as_bytes(),
            a.as_bytes()
        );
        let shown = format!("{a:?}");
        assert_eq!(shown, "TotpSecret(..)");
        assert!(!shown.contains(&a.to_base32()));
        assert_eq!(
            TotpSecret::from_bytes(&[0; 19]).err(),
            Some(TotpError::SecretLength(19))
        );
        assert_eq!(
            TotpSecret::from_bytes(&[0; 21]).err(),
            Some(TotpError::SecretLength(21))
        );
    }

    #[test]
    fn otpauth_uri_follows_the_key_uri_format() {
        let uri = otpauth_uri(&rfc_secret(), "Ironchart Clinic", "dr.smith@example.org");
        assert_eq!(
            uri,
            "otpauth://totp/Ironchart%20Clinic:dr.smith%40example.org\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Ironchart%20Clinic\
             &algorithm=SHA1&digits=6&period=30"
        );
        let odd = otpauth_uri(&rfc_secret(), "A:B&C", "é?#");
        assert!(
            odd.starts_with("otpauth://totp/A%3AB%26C:%C3%A9%3F%23?secret="),
            "{odd}"
        );
        assert!(odd.contains("&issuer=A%3AB%26C&"), "{odd}");
    }

    #[test]
    fn qr_svg_is_inline_safe() {
        let uri = otpauth_uri(&rfc_secret(), "Ironchart Clinic", "dr.smith");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg "), "{}", &svg[..40]);
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("viewBox=\"0 0 "));
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(!svg.contains("<?xml"));
        assert!(
            !svg.to_ascii_lowercase().contains("style"),
            "no inline styles"
        );
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!((240..=600).contains(&width), "{width}");
        // Different texts make different codes.
        assert_ne!(svg, qr_svg("otpauth://totp/other").unwrap());
        assert_eq!(qr_svg(&"x".repeat(5000)), Err(TotpError::TooLongForQr));
    }

    #[test]
    fn recovery_codes_are_well_formed_and_distinct() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-', "{code}");
            for c in code.chars().filter(|&c| c != '-') {
                assert!(RECOVERY_ALPHABET.contains(&(c as u8)), "{code}");
                assert!(!"0O1lIio".contains(c), "{code}");
            }
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        assert_ne!(codes, new_recovery_codes());
        assert_eq!(RECOVERY_ALPHABET.len(), 31);
    }

    #[test]
    fn recovery_code_hash_normalizes_then_hashes() {
        // SHA-256("k7m3qxp2dh"), from sha256sum.
        let expected = "431a667377ce5bc225d84be39fdd75d149945e623e99723a1d95627d0c6f80b0";
        let hash = recovery_code_hash("k7m3q-xp2dh");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, expected);
        assert_eq!(recovery_code_hash("K7M3Q XP2DH"), hash);
        assert_eq!(recovery_code_hash(" k7m3qxp2dh "), hash);
        assert_eq!(recovery_code_hash("k7m3q--xp2-dh"), hash);
        assert_ne!(recovery_code_hash("k7m3q-xp2dj"), hash);
        // SHA-256 of the empty string.
        assert_eq!(
            recovery_code_hash(" - "),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
