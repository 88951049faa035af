//! Encryption at rest, as the records service uses it: the keyring loaded from the database's
//! key settings and the master key, sealing and opening resource bodies, the key-check value
//! that refuses a wrong master key at start-up, re-sealing everything under a new data key, and
//! replacing the master key.
//!
//! Data keys are derived from the master key and a per-generation salt. When the master key is
//! replaced, the data keys of the generations in use are wrapped under the new master key
//! (`keys.wrapped`) and a new generation derived from the new master key becomes current, in one
//! transaction: from then on only the new master key opens the database. Once everything is
//! re-sealed under the new generation, the wrapped keys are deleted, and the old master key opens
//! nothing in the database.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use ironchart_security::keyring::{Keyring, MasterKey, SealError, envelope_generation, new_salt};
use ironchart_store::{Store, WriteTx};
use zeroize::Zeroizing;

use crate::{RecordsError, Result};

/// The key-check value of the master key the database is sealed with.
pub(crate) const KEY_CHECK: &str = "keys.check";
/// `generation:wrapped-key` pairs: data keys of an earlier master key, wrapped under this one.
const WRAPPED: &str = "keys.wrapped";
/// `generation:salt` pairs, space-separated.
const DATA_KEYS: &str = "keys.data";
const CURRENT: &str = "keys.current";

/// How long a process trusts its copy of the current generation before reading it again (a
/// rotation in another process waits longer than this before its final pass).
pub(crate) const REFRESH: Duration = Duration::from_secs(5);

pub(crate) struct Keys {
    master: MasterKey,
    ring: RwLock<Loaded>,
}

struct Loaded {
    ring: std::sync::Arc<Keyring>,
    at: Instant,
}

impl Keys {
    /// Checks `master` against the database's key-check value (setting it on first use) and
    /// loads the data-key generations.
    pub(crate) async fn load(store: &Store, master: MasterKey) -> Result<Keys> {
        let check = master.check_value();
        let mut tx = store.begin().await?;
        match tx.setting(KEY_CHECK).await? {
            Some(stored) if stored == check => {}
            Some(_) => {
                tx.rollback().await?;
                return Err(RecordsError::Config(
                    "the master key does not match this database (its key-check value differs): \
                     start ironchart with the --master-key-file the data was created with"
                        .into(),
                ));
            }
            None => {
                tx.set_setting(KEY_CHECK, &check).await?;
                if tx.setting(DATA_KEYS).await?.is_none() {
                    tx.set_setting(DATA_KEYS, &["1:", &new_salt()].concat())
                        .await?;
                    tx.set_setting(CURRENT, "1").await?;
                }
            }
        }
        tx.commit().await?;
        let ring = load(store, &master).await?;
        Ok(Keys {
            master,
            ring: RwLock::new(Loaded {
                ring: std::sync::Arc::new(ring),
                at: Instant::now(),
            }),
        })
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    fn current_ring(&self) -> std::sync::Arc<Keyring> {
        match self.ring.read() {
            Ok(l) => l.ring.clone(),
            Err(poisoned) => poisoned.into_inner().ring.clone(),
        }
    }

    /// Re-reads the generations when the copy is older than [`REFRESH`] (or `force`).
    pub(crate) async fn refresh(&self, store: &Store, force: bool) -> Result<()> {
        let stale = match self.ring.read() {
            Ok(l) => l.at.elapsed() >= REFRESH,
            Err(_) => true,
        };
        if !stale && !force {
            return Ok(());
        }
        let ring = load(store, &self.master).await?;
        if let Ok(mut l) = self.ring.write() {
            *l = Loaded {
                ring: std::sync::Arc::new(ring),
                at: Instant::now(),
            };
        }
        Ok(())
    }

    /// Seals a version's body for its row.
    pub(crate) fn seal(&self, rt: &str, id: &str, version: i64, body: &[u8]) -> Vec<u8> {
        self.current_ring()
            .seal(body_aad(rt, id, version).as_bytes(), body)
    }

    /// Opens a version's stored body.
    pub(crate) async fn open(
        &self,
        store: &Store,
        rt: &str,
        id: &str,
        version: i64,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let aad = body_aad(rt, id, version);
        match self.current_ring().open(aad.as_bytes(), stored) {
            Ok(plain) => Ok(plain),
            Err(SealError::UnknownGeneration(_)) => {
                self.refresh(store, true).await?;
                self.current_ring()
                    .open(aad.as_bytes(), stored)
                    .map_err(|_| integrity(rt, id, version))
            }
            Err(SealError::Integrity) => Err(integrity(rt, id, version)),
        }
    }

    pub(crate) fn current_generation(&self) -> u32 {
        self.current_ring().current()
    }

    pub(crate) fn generation_is_current(&self, stored: &[u8]) -> bool {
        envelope_generation(stored) == Some(self.current_ring().current())
    }

    /// Seals small secrets kept in other tables (a user's TOTP secret) for their row.
    pub(crate) fn seal_secret(&self, purpose: &str, row: i64, secret: &[u8]) -> Vec<u8> {
        self.current_ring()
            .seal(secret_aad(purpose, row).as_bytes(), secret)
    }

    pub(crate) fn open_secret(
        &self,
        purpose: &str,
        row: i64,
        stored: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.current_ring()
            .open(secret_aad(purpose, row).as_bytes(), stored)
            .map(Zeroizing::new)
            .map_err(|_| {
                RecordsError::Integrity(format!("a stored {purpose} failed its integrity check"))
            })
    }

    /// Adds a data-key generation and makes it current; returns its number.
    pub(crate) async fn add_generation(&self, store: &Store) -> Result<u32> {
        let mut tx: WriteTx = store.begin().await?;
        let existing = tx.setting(DATA_KEYS).await?.unwrap_or_default();
        let next = parse_generations(&existing)
            .iter()
            .map(|(g, _)| *g)
            .max()
            .unwrap_or(0)
            + 1;
        let list = if existing.is_empty() {
            format!("{next}:{}", new_salt())
        } else {
            format!("{existing} {next}:{}", new_salt())
        };
        tx.set_setting(DATA_KEYS, &list).await?;
        tx.set_setting(CURRENT, &next.to_string()).await?;
        tx.commit().await?;
        self.refresh(store, true).await?;
        Ok(next)
    }
}

fn integrity(rt: &str, id: &str, version: i64) -> RecordsError {
    RecordsError::Integrity(format!(
        "the stored body of {rt}/{id} version {version} failed its integrity check (wrong key, or changed outside ironchart)"
    ))
}

/// The associated data binding a sealed body to its row.
fn body_aad(rt: &str, id: &str, version: i64) -> String {
    format!("ironchart body v1\0{rt}\0{id}\0{version}")
}

fn secret_aad(purpose: &str, row: i64) -> String {
    format!("ironchart secret v1\0{purpose}\0{row}")
}

impl Keys {
    /// The first step of replacing the master key, inside `tx` (which holds the audit chain's
    /// lock): wraps the data keys in use under `new`, adds a generation derived from `new` and
    /// makes it current, and makes `new` the key the database is checked against. Returns the
    /// new generation.
    pub(crate) async fn switch_master(&self, tx: &mut WriteTx, new: &MasterKey) -> Result<u32> {
        let generations = parse_generations(&tx.setting(DATA_KEYS).await?.unwrap_or_default());
        let wrapped = parse_generations(&tx.setting(WRAPPED).await?.unwrap_or_default());
        let mut rewrapped = Vec::new();
        for (generation, key) in data_keys(&self.master, &generations, &wrapped)? {
            rewrapped.push(format!(
                "{generation}:{}",
                new.wrap(&wrap_label(generation), key.as_ref())
            ));
        }
        let next = generations.iter().map(|(g, _)| *g).max().unwrap_or(0) + 1;
        let mut list: Vec<String> = generations
            .iter()
            .map(|(g, s)| format!("{g}:{s}"))
            .collect();
        list.push(format!("{next}:{}", new_salt()));
        tx.set_setting(DATA_KEYS, &list.join(" ")).await?;
        tx.set_setting(WRAPPED, &rewrapped.join(" ")).await?;
        tx.set_setting(CURRENT, &next.to_string()).await?;
        tx.set_setting(KEY_CHECK, &new.check_value()).await?;
        Ok(next)
    }

    /// After everything is re-sealed under the current generation: deletes the wrapped data
    /// keys of an earlier master key (and their generations). Returns how many were deleted.
    pub(crate) async fn delete_wrapped(&self, store: &Store) -> Result<usize> {
        let mut tx = store.begin().await?;
        let wrapped = parse_generations(&tx.setting(WRAPPED).await?.unwrap_or_default());
        let current = generation_number(tx.setting(CURRENT).await?);
        let gone: Vec<u32> = wrapped
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| *g != current)
            .collect();
        if gone.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let kept: Vec<String> =
            parse_generations(&tx.setting(DATA_KEYS).await?.unwrap_or_default())
                .into_iter()
                .filter(|(g, _)| !gone.contains(g))
                .map(|(g, s)| format!("{g}:{s}"))
                .collect();
        tx.set_setting(DATA_KEYS, &kept.join(" ")).await?;
        let kept_wrapped: Vec<String> = wrapped
            .into_iter()
            .filter(|(g, _)| !gone.contains(g))
            .map(|(g, w)| format!("{g}:{w}"))
            .collect();
        tx.set_setting(WRAPPED, &kept_wrapped.join(" ")).await?;
        tx.commit().await?;
        self.refresh(store, true).await?;
        Ok(gone.len())
    }
}

/// What a wrapped data key is bound to.
fn wrap_label(generation: u32) -> String {
    format!("ironchart data key {generation}")
}

/// The data key of each generation: unwrapped when it belongs to an earlier master key,
/// otherwise derived from `master`.
fn data_keys(
    master: &MasterKey,
    generations: &[(u32, String)],
    wrapped: &[(u32, String)],
) -> Result<Vec<(u32, Zeroizing<[u8; 32]>)>> {
    generations
        .iter()
        .map(|(g, salt)| match wrapped.iter().find(|(w, _)| w == g) {
            Some((_, text)) => {
                let bytes = master.unwrap(&wrap_label(*g), text).map_err(|_| {
                    RecordsError::Integrity(format!(
                        "the wrapped data key of generation {g} failed its integrity check"
                    ))
                })?;
                let mut key = Zeroizing::new([0u8; 32]);
                if bytes.len() != key.len() {
                    return Err(RecordsError::Integrity(format!(
                        "the wrapped data key of generation {g} has the wrong length"
                    )));
                }
                key.copy_from_slice(&bytes);
                Ok((*g, key))
            }
            None => Ok((*g, master.data_key(salt))),
        })
        .collect()
}

/// The current generation as stored (0: none).
fn generation_number(text: Option<String>) -> u32 {
    text.and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn parse_generations(text: &str) -> Vec<(u32, String)> {
    text.split_whitespace()
        .filter_map(|pair| {
            let (g, salt) = pair.split_once(':')?;
            Some((g.parse().ok()?, salt.to_string()))
        })
        .collect()
}

async fn load(store: &Store, master: &MasterKey) -> Result<Keyring> {
    if store.setting(KEY_CHECK).await?.as_deref() != Some(master.check_value().as_str()) {
        return Err(RecordsError::KeyReplaced);
    }
    let generations = parse_generations(&store.setting(DATA_KEYS).await?.unwrap_or_default());
    let wrapped = parse_generations(&store.setting(WRAPPED).await?.unwrap_or_default());
    let current = generation_number(store.setting(CURRENT).await?);
    if !generations.iter().any(|(g, _)| *g == current) {
        return Err(RecordsError::Config(
            "the database's key settings are incomplete (no current data key)".into(),
        ));
    }
    Ok(Keyring::from_keys(
        &data_keys(master, &generations, &wrapped)?,
        current,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_parse() {
        assert_eq!(
            parse_generations("1:abc 2:def"),
            vec![(1, "abc".to_string()), (2, "def".to_string())]
        );
        assert!(parse_generations("x:y").is_empty());
    }
}

// ----- rotation -----
