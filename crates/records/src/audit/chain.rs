//! The chain's keys and how entries are chained: each entry's MAC covers the previous entry's
//! MAC and the entry's own fields.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use ironchart_security::keyring::MasterKey;
use ironchart_store::{AuditRow, WriteTx};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::checkpoint::checkpoint_message;
use crate::{RecordsError, Result};

/// The setting listing the chain keys of earlier master keys: `upto:wrapped` pairs, each the
/// MAC key and checkpoint public key of the entries up to `upto`, wrapped under the current
/// master key.
pub(crate) const RETIRED_KEYS: &str = "audit.keys.retired";

/// The chain's keys: the MAC key of the entries and the checkpoint signing key, derived from
/// the master key; and those of earlier master keys, for the entries they made.
pub(crate) struct ChainKeys {
    pub(super) mac: Zeroizing<[u8; 32]>,
    pub(super) signing: SigningKey,
    /// The key-check value of the master key these keys come from: an append checks, under the
    /// chain's lock, that the database is still sealed with it.
    pub(super) check: String,
    /// Oldest first.
    pub(super) retired: Vec<RetiredKeys>,
    /// The newest entry this process has written a checkpoint of (the upkeep task and a closing
    /// command may both want to; each entry is vouched for once).
    pub(super) checkpointed: std::sync::Mutex<i64>,
}

/// The keys of the entries up to `upto`, made under an earlier master key.
pub(super) struct RetiredKeys {
    upto: i64,
    mac: Zeroizing<[u8; 32]>,
    public: VerifyingKey,
}

impl ChainKeys {
    /// The keys of `master`, and the retired keys the database keeps wrapped under it.
    pub(crate) fn of(master: &MasterKey, retired: Option<&str>) -> Result<ChainKeys> {
        let mut keys = ChainKeys::new(
            master.derive(b"", "ironchart audit chain v1"),
            master.derive(b"", "ironchart audit checkpoint v1"),
        );
        keys.check = master.check_value();
        for pair in retired.unwrap_or("").split_whitespace() {
            let damaged = || {
                RecordsError::Integrity(format!(
                    "the retired audit keys ({RETIRED_KEYS}) failed their integrity check"
                ))
            };
            let (upto, wrapped) = pair.split_once(':').ok_or_else(damaged)?;
            let upto: i64 = upto.parse().map_err(|_| damaged())?;
            let bytes = master
                .unwrap(&retired_label(upto), wrapped)
                .map_err(|_| damaged())?;
            if bytes.len() != 64 {
                return Err(damaged());
            }
            let mut mac = Zeroizing::new([0u8; 32]);
            mac.copy_from_slice(&bytes[..32]);
            let public: [u8; 32] = bytes[32..].try_into().map_err(|_| damaged())?;
            keys.retired.push(RetiredKeys {
                upto,
                mac,
                public: VerifyingKey::from_bytes(&public).map_err(|_| damaged())?,
            });
        }
        keys.retired.sort_by_key(|r| r.upto);
        Ok(keys)
    }

    fn new(mac: Zeroizing<[u8; 32]>, signing_seed: Zeroizing<[u8; 32]>) -> ChainKeys {
        ChainKeys {
            mac,
            signing: SigningKey::from_bytes(&signing_seed),
            check: String::new(),
            retired: Vec::new(),
            checkpointed: std::sync::Mutex::new(0),
        }
    }

    /// The value of [`RETIRED_KEYS`] once the master key is replaced by `new`: these keys retire
    /// for the entries up to `upto` (the newest entry), the retired ones stay, all wrapped
    /// under `new`.
    pub(crate) fn retire(&self, upto: Option<i64>, new: &MasterKey) -> String {
        let mut list: Vec<(i64, Vec<u8>)> = self
            .retired
            .iter()
            .map(|r| (r.upto, [&r.mac[..], r.public.as_bytes()].concat()))
            .collect();
        let newest_retired = self.retired.last().map_or(0, |r| r.upto);
        if let Some(upto) = upto.filter(|u| *u > newest_retired) {
            list.push((
                upto,
                [&self.mac[..], self.signing.verifying_key().as_bytes()].concat(),
            ));
        }
        list.iter()
            .map(|(upto, secret)| {
                let secret = Zeroizing::new(secret.clone());
                format!("{upto}:{}", new.wrap(&retired_label(*upto), &secret))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The MAC key of the entry `seq`.
    fn mac_key_of(&self, seq: i64) -> &[u8] {
        match self.retired.iter().find(|r| seq <= r.upto) {
            Some(r) => r.mac.as_ref(),
            None => self.mac.as_ref(),
        }
    }

    /// The journal keys to try on a journal a process left: this one's first.
    pub(crate) fn mac_keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.mac.as_ref()).chain(self.retired.iter().rev().map(|r| r.mac.as_ref()))
    }

    /// The public key that may have signed a checkpoint of entry `seq`, given the one named on
    /// its line.
    pub(super) fn checkpoint_key_of(&self, seq: i64, named: &str) -> Option<VerifyingKey> {
        if named == self.public_key_hex() {
            // Entries older than the current keys may be signed by them (a newer process signs
            // the whole tail it checked).
            return Some(self.signing.verifying_key());
        }
        self.retired
            .iter()
            .find(|r| seq <= r.upto && ironchart_security::hex(r.public.as_bytes()) == named)
            .map(|r| r.public)
    }

    /// The MAC of `row` following an entry whose MAC was `prev` (empty for the first entry).
    pub(crate) fn mac(&self, prev: &str, row: &AuditRow) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key_of(row.seq))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        field(&mut m, Some(prev));
        m.update(&row.seq.to_be_bytes());
        m.update(&row.recorded.to_be_bytes());
        field(&mut m, Some(&row.actor));
        field(&mut m, row.role.as_deref());
        field(&mut m, Some(&row.action));
        field(&mut m, row.res_type.as_deref());
        field(&mut m, row.res_id.as_deref());
        match row.version {
            Some(v) => {
                m.update(&[1]);
                m.update(&v.to_be_bytes());
            }
            None => m.update(&[0]),
        }
        field(&mut m, row.patients.as_deref());
        field(&mut m, Some(&row.outcome));
        field(&mut m, row.source.as_deref());
        field(&mut m, row.purpose.as_deref());
        field(&mut m, row.request_id.as_deref());
        field(&mut m, row.detail.as_deref());
        ironchart_security::hex(&m.finalize().into_bytes())
    }

    pub(crate) fn public_key_hex(&self) -> String {
        ironchart_security::hex(self.signing.verifying_key().as_bytes())
    }

    pub(super) fn checkpoint_line(&self, seq: i64, mac: &str, at: i64) -> String {
        let message = checkpoint_message(seq, mac, at);
        let signature = self.signing.sign(message.as_bytes());
        format!(
            "{message} {} {}\n",
            ironchart_security::hex(&signature.to_bytes()),
            self.public_key_hex()
        )
    }
}

/// Length-prefixed (and presence-tagged) field, so that no two rows encode alike.
fn field(m: &mut Hmac<Sha256>, value: Option<&str>) {
    match value {
        Some(v) => {
            m.update(&[1]);
            m.update(&(v.len() as u64).to_be_bytes());
            m.update(v.as_bytes());
        }
        None => m.update(&[0]),
    }
}

fn retired_label(upto: i64) -> String {
    format!("ironchart audit keys up to {upto}")
}

/// Locks the chain's tail inside `tx` and returns it, after checking that the database is still
/// sealed with the master key `keys` come from (a process still running with a replaced master
/// key must not append entries the chain cannot check).
pub(crate) async fn locked_tail(
    tx: &mut WriteTx,
    keys: &ChainKeys,
) -> Result<Option<(i64, String)>> {
    let tail = tx.audit_tail().await?;
    if tx.setting(crate::keys::KEY_CHECK).await?.as_deref() != Some(keys.check.as_str()) {
        return Err(RecordsError::KeyReplaced);
    }
    Ok(tail)
}

/// Computes seq and MAC for new rows after the locked tail, and appends them.
pub(crate) async fn append_in(
    tx: &mut WriteTx,
    keys: &ChainKeys,
    rows: Vec<AuditRow>,
) -> Result<()> {
    let tail = locked_tail(tx, keys).await?;
    let rows = chained(keys, tail, rows);
    tx.audit_append(&rows).await?;
    Ok(())
}

/// Chains `rows` after `tail` (seq and MAC of the newest entry).
pub(crate) fn chained(
    keys: &ChainKeys,
    tail: Option<(i64, String)>,
    mut rows: Vec<AuditRow>,
) -> Vec<AuditRow> {
    let (mut seq, mut prev) = tail.unwrap_or((0, String::new()));
    for row in rows.iter_mut() {
        seq += 1;
        row.seq = seq;
        row.mac = keys.mac(&prev, row);
        prev.clone_from(&row.mac);
    }
    rows
}
