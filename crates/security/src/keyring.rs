//! The keyring: a master key kept outside the database, data keys derived from it with HKDF,
//! and the AEAD envelope (XChaCha20-Poly1305) that seals every stored resource body.
//!
//! Data keys come in generations. Generation `g` is `HKDF-SHA256(master, salt_g, "ironchart data
//! key v1")`, where `salt_g` is random and stored (it is not secret) in the database; rotating
//! the keys adds a generation and re-seals every body under it. An envelope is
//!
//! ```text
//! 0x01 | generation (u32, big-endian) | nonce (24 bytes) | ciphertext + tag (16 bytes)
//! ```
//!
//! and its associated data names the row it belongs to, so a sealed body moved to another row
//! (or another version of the same resource) does not open.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The first byte of a sealed body.
const ENVELOPE_V1: u8 = 1;
const HEADER: usize = 1 + 4 + 24;
const TAG: usize = 16;
/// The text that starts a master key file.
const FILE_PREFIX: &str = "ironchart-master-key-v1:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the master key file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot create the master key file {path}: {reason}")]
    Create { path: String, reason: String },
    #[error(
        "the master key file {0} is not an ironchart master key (expected one line starting with \
         '{FILE_PREFIX}')"
    )]
    Format(String),
}

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed under a generation this keyring does not know (yet): reload the generations.
    #[error("sealed under unknown key generation {0}")]
    UnknownGeneration(u32),
    /// Wrong key, or the bytes or the row they belong to were changed.
    #[error("the stored data failed its integrity check")]
    Integrity,
}

/// The master key: 32 random bytes, wiped from memory when dropped.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> MasterKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        MasterKey(key)
    }

    /// Reads a master key file.
    pub fn load(path: &Path) -> Result<MasterKey, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?);
        let format = || KeyError::Format(path.display().to_string());
        let encoded = text.trim().strip_prefix(FILE_PREFIX).ok_or_else(format)?;
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded).map_err(|_| format())?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(format());
        }
        key.copy_from_slice(&bytes);
        Ok(MasterKey(key))
    }

    /// Writes a new master key file readable only by its owner (mode 0400); fails if the file
    /// exists.
    pub fn create(path: &Path) -> Result<MasterKey, KeyError> {
        let key = MasterKey::generate();
        let fail = |e: std::io::Error| KeyError::Create {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o400);
        let mut file = options.open(path).map_err(fail)?;
        let line = Zeroizing::new([FILE_PREFIX, &URL_SAFE_NO_PAD.encode(*key.0), "\n"].concat());
        file.write_all(line.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(key)
    }

    /// Reads the master key file, creating it first when it does not exist. The flag says
    /// whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), KeyError> {
        match MasterKey::create(path) {
            Ok(key) => Ok((key, true)),
            Err(KeyError::Create { .. }) if path.exists() => Ok((MasterKey::load(path)?, false)),
            Err(e) => Err(e),
        }
    }

    /// A 32-byte key for one purpose (`info`), derived with HKDF-SHA256.
    pub fn derive(&self, salt: &[u8], info: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(salt), self.0.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(info.as_bytes(), out.as_mut());
        out
    }

    /// The data key of a generation whose (base64) salt is `salt`.
    pub fn data_key(&self, salt: &str) -> Zeroizing<[u8; 32]> {
        let salt = URL_SAFE_NO_PAD
            .decode(salt)
            .unwrap_or_else(|_| salt.as_bytes().to_vec());
        self.derive(&salt, "ironchart data key v1")
    }

    /// Wraps (seals) another key under this master key, for the row named by `label`: the keys
    /// of an earlier master key that the data still needs are kept in the database this way.
    /// The result is text (base64 of nonce and ciphertext).
    pub fn wrap(&self, label: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .wrapping_cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: label.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 seals any key length"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens what [`MasterKey::wrap`] wrapped for `label`.
    pub fn unwrap(&self, label: &str, wrapped: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(wrapped)
            .map_err(|_| SealError::Integrity)?;
        if bytes.len() < 24 + TAG {
            return Err(SealError::Integrity);
        }
        self.wrapping_cipher()
            .decrypt(
                XNonce::from_slice(&bytes[..24]),
                Payload {
                    msg: &bytes[24..],
                    aad: label.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Integrity)
    }

    fn wrapping_cipher(&self) -> XChaCha20Poly1305 {
        let key = self.derive(b"", "ironchart key wrap v1");
        XChaCha20Poly1305::new_from_slice(key.as_ref())
            .unwrap_or_else(|_| unreachable!("the key is 32 bytes"))
    }

    /// The key-check value stored in the database: it shows whether a master key is the one
    /// the data was sealed with, without revealing anything about the key.
    pub fn check_value(&self) -> String {
        let key = self.derive(b"", "ironchart key check v1");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"ironchart");
        ["kcv1:", &crate::hex(&mac.finalize().into_bytes()[..16])].concat()
    }
}

/// A random salt for a new data-key generation (stored in the database; not secret).
pub fn new_salt() -> String {
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    URL_SAFE_NO_PAD.encode(salt)
}

/// The data keys of every generation in use, and the one new bodies are sealed with.
pub struct Keyring {
    generations: HashMap<u32, XChaCha20Poly1305>,
    current: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("generations", &self.generations.len())
            .field("current", &self.current)
            .finish()
    }
}

impl Keyring {
    /// Derives the data key of each `(generation, salt)` from `master`; `current` seals.
    pub fn new(master: &MasterKey, salts: &[(u32, String)], current: u32) -> Keyring {
        let keys: Vec<(u32, Zeroizing<[u8; 32]>)> = salts
            .iter()
            .map(|(generation, salt)| (*generation, master.data_key(salt)))
            .collect();
        Keyring::from_keys(&keys, current)
    }

    /// A keyring of the given data keys; `current` seals.
    pub fn from_keys(keys: &[(u32, Zeroizing<[u8; 32]>)], current: u32) -> Keyring {
        let generations = keys
            .iter()
            .map(|(generation, key)| {
                let cipher = XChaCha20Poly1305::new_from_slice(key.as_ref())
                    .unwrap_or_else(|_| unreachable!("the key is 32 bytes"));
                (*generation, cipher)
            })
            .collect();
        Keyring {
            generations,
            current,
        }
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    pub fn knows(&self, generation: u32) -> bool {
        self.generations.contains_key(&generation)
    }

    /// Seals `plaintext` for the row named by `aad` under the current generation.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let Some(cipher) = self.generations.get(&self.current) else {
            unreachable!("a keyring always holds its current generation")
        };
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + TAG);
        out.push(ENVELOPE_V1);
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(&nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 seals any length we store"));
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens an envelope sealed for the row named by `aad`.
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, SealError> {
        let generation = envelope_generation(envelope).ok_or(SealError::Integrity)?;
        let cipher = self
            .generations
            .get(&generation)
            .ok_or(SealError::UnknownGeneration(generation))?;
        if envelope.len() < HEADER + TAG {
            return Err(SealError::Integrity);
        }
        cipher
            .decrypt(
                XNonce::from_slice(&envelope[5..HEADER]),
                Payload {
                    msg: &envelope[HEADER..],
                    aad,
                },
            )
            .map_err(|_| SealError::Integrity)
    }
}

/// The generation an envelope was sealed under; `None` when it is not an envelope.
pub fn envelope_generation(envelope: &[u8]) -> Option<u32> {
    match envelope {
        [ENVELOPE_V1, a, b, c, d, ..] if envelope.len() >= HEADER + TAG => {
            Some(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(master: &MasterKey) -> Keyring {
        Keyring::new(master, &[(1, new_salt()), (2, new_salt())], 2)
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let master = MasterKey::generate();
        let ring = ring(&master);
        let sealed = ring.seal(b"Patient/1/1", b"{\"name\":\"secret\"}");
        assert_eq!(envelope_generation(&sealed), Some(2));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            ring.open(b"Patient/1/1", &sealed).unwrap(),
            b"{\"name\":\"secret\"}"
        );
        // Another row, a flipped bit, a truncation: all refused.
        assert_eq!(
            ring.open(b"Patient/1/2", &sealed),
            Err(SealError::Integrity)
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            ring.open(b"Patient/1/1", &flipped),
            Err(SealError::Integrity)
        );
        assert_eq!(
            ring.open(b"Patient/1/1", &sealed[..sealed.len() - 1]),
            Err(SealError::Integrity)
        );
    }

    #[test]
    fn other_master_or_generation_does_not_open() {
        let master = MasterKey::generate();
        let salts = vec![(1, new_salt())];
        let sealed = Keyring::new(&master, &salts, 1).seal(b"a", b"body");
        let other = Keyring::new(&MasterKey::generate(), &salts, 1);
        assert_eq!(other.open(b"a", &sealed), Err(SealError::Integrity));
        let newer = Keyring::new(&master, &[(2, new_salt())], 2);
        assert_eq!(
            newer.open(b"a", &sealed),
            Err(SealError::UnknownGeneration(1))
        );
    }

    #[test]
    fn wrapped_keys_open_only_under_their_master_and_label() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let data_key = old.data_key(&new_salt());
        let wrapped = new.wrap("data key 1", data_key.as_ref());
        assert!(!wrapped.contains(&URL_SAFE_NO_PAD.encode(data_key.as_ref())));
        assert_eq!(
            new.unwrap("data key 1", &wrapped).unwrap().as_slice(),
            data_key.as_ref()
        );
        assert_eq!(
            new.unwrap("data key 2", &wrapped).unwrap_err(),
            SealError::Integrity
        );
        assert_eq!(
            old.unwrap("data key 1", &wrapped).unwrap_err(),
            SealError::Integrity
        );
        assert_eq!(
            new.unwrap("data key 1", "not base64!").unwrap_err(),
            SealError::Integrity
        );
        assert_eq!(
            new.unwrap("data key 1", &wrapped[..10]).unwrap_err(),
            SealError::Integrity
        );
        // A keyring of unwrapped keys opens what the derived one sealed.
        let salt = new_salt();
        let sealed = Keyring::new(&old, &[(3, salt.clone())], 3).seal(b"row", b"body");
        let key = new
            .unwrap("k", &new.wrap("k", old.data_key(&salt).as_ref()))
            .unwrap();
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&key);
        let ring = Keyring::from_keys(&[(3, raw)], 3);
        assert_eq!(ring.open(b"row", &sealed).unwrap(), b"body");
    }

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (created, was_new) = MasterKey::load_or_create(&path).unwrap();
        assert!(was_new);
        let (loaded, was_new) = MasterKey::load_or_create(&path).unwrap();
        assert!(!was_new);
        assert_eq!(created.check_value(), loaded.check_value());
        assert_ne!(created.check_value(), MasterKey::generate().check_value());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o400);
        }
        std::fs::write(dir.path().join("bad.key"), "hello").unwrap();
        assert!(matches!(
            MasterKey::load(&dir.path().join("bad.key")),
            Err(KeyError::Format(_))
        ));
    }
}
