//! Signed checkpoints: the sequence number and MAC of a verified entry, signed (Ed25519) and
//! appended to a file outside the database, which is how a truncated tail is caught.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::Verifier;
use ironchart_store::Store;

use super::chain::ChainKeys;
use super::upkeep::Segment;
use crate::RecordsError;

pub(super) fn checkpoint_message(seq: i64, mac: &str, at: i64) -> String {
    format!("ironchart-audit-checkpoint-v1 {seq} {mac} {at}")
}

/// The newest entry of the writer's own stretch when the last signed entry lies on it (so
/// everything after it is the writer's own work) and it is newer; otherwise the chain must be
/// read back and checked.
pub(super) fn own_stretch(signed: Option<&(i64, String)>, own: &Segment) -> Option<(i64, String)> {
    let (signed, start, end) = (signed?, own.start.as_ref()?, own.end.as_ref()?);
    let on_stretch =
        signed.0 > start.0 && signed.0 <= end.0 || (signed.0 == start.0 && signed.1 == start.1);
    (on_stretch && end.0 > signed.0).then(|| end.clone())
}

/// The newest checkpoint in the file whose signature holds, if any.
fn latest_checkpoint(path: &Path, keys: &ChainKeys) -> Option<(i64, String)> {
    read_checkpoints(path, keys)
        .ok()?
        .into_iter()
        .max_by_key(|c| c.seq)
        .map(|c| (c.seq, c.mac))
}

/// Checks the chain from a trusted entry (`from`: its seq and MAC, or the start of the log) to
/// the newest entry, and returns the newest one; the problem when the chain does not hold.
/// Why a stretch of the chain could not be vouched for.
enum TailError {
    /// The log could not be read (the database is closing, down or busy): nothing is known.
    Unreadable(ironchart_store::StoreError),
    /// The chain is broken at an entry.
    Broken(String),
}

async fn verified_tail(
    store: &Store,
    keys: &ChainKeys,
    from: Option<(i64, String)>,
) -> std::result::Result<Option<(i64, String)>, TailError> {
    const PAGE: usize = 5000;
    let (mut seq, mut prev) = match &from {
        Some((s, m)) => {
            let rows = store
                .audit_chain(s - 1, 1)
                .await
                .map_err(TailError::Unreadable)?;
            match rows.first() {
                Some(r) if r.seq == *s && r.mac == *m => (*s, m.clone()),
                _ => {
                    return Err(TailError::Broken(format!(
                        "entry {s}, vouched for by a checkpoint, is gone or changed"
                    )));
                }
            }
        }
        None => (0, String::new()),
    };
    let mut tail = from;
    loop {
        let rows = store
            .audit_chain(seq, PAGE)
            .await
            .map_err(TailError::Unreadable)?;
        if rows.is_empty() {
            return Ok(tail);
        }
        for row in &rows {
            if row.seq != seq + 1 {
                return Err(TailError::Broken(format!("entry {} is missing", seq + 1)));
            }
            if keys.mac(&prev, row) != row.mac {
                return Err(TailError::Broken(format!(
                    "entry {} does not match its MAC",
                    row.seq
                )));
            }
            seq = row.seq;
            prev.clone_from(&row.mac);
        }
        tail = Some((seq, prev.clone()));
    }
}

/// Verifies the chain from the last signed entry (`known`, else the checkpoint file) to the
/// newest entry and signs that one. A process only vouches for a tail it has checked; a broken
/// chain is reported and never signed. Returns the newest signed entry.
pub(crate) async fn sign_tail(
    store: &Store,
    keys: &ChainKeys,
    path: &Path,
    known: Option<(i64, String)>,
) -> Option<(i64, String)> {
    match store.setting(crate::keys::KEY_CHECK).await {
        Ok(check) if check.as_deref() == Some(keys.check.as_str()) => {}
        Ok(_) => {
            tracing::error!("{}", RecordsError::KeyReplaced);
            return known;
        }
        Err(e) => {
            if !store.is_closed() {
                tracing::warn!("cannot read the audit log to checkpoint it: {e}");
            }
            return known;
        }
    }
    let anchor = known.or_else(|| latest_checkpoint(path, keys));
    match verified_tail(store, keys, anchor.clone()).await {
        Ok(Some(tail)) if Some(&tail) != anchor.as_ref() => {
            match write_checkpoint(path, keys, tail.0, &tail.1) {
                Ok(()) => Some(tail),
                Err(e) => {
                    tracing::warn!("cannot write an audit checkpoint: {e}");
                    anchor
                }
            }
        }
        Ok(_) => anchor,
        Err(TailError::Broken(problem)) => {
            tracing::error!(
                "the audit chain does not verify ({problem}); no checkpoint written: run `ironchart audit verify`"
            );
            anchor
        }
        // Not a verdict on the chain: it could not be read (quietly so when this process is
        // closing the database). The next round tries again.
        Err(TailError::Unreadable(e)) => {
            if !store.is_closed() {
                tracing::warn!("cannot read the audit log to checkpoint it: {e}");
            }
            anchor
        }
    }
}

/// Appends a signed checkpoint line to the checkpoint file.
pub(crate) fn write_checkpoint(
    path: &Path,
    keys: &ChainKeys,
    seq: i64,
    mac: &str,
) -> std::io::Result<()> {
    let mut done = keys
        .checkpointed
        .lock()
        .map_err(|_| std::io::Error::other("checkpoint lock poisoned"))?;
    if seq <= *done {
        return Ok(());
    }
    let line = keys.checkpoint_line(seq, mac, ironchart_fhir::Instant::now().as_millis());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    *done = seq;
    Ok(())
}

/// A checkpoint read back from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub seq: i64,
    pub mac: String,
    pub at: i64,
    pub line: usize,
}

/// Reads a checkpoint file and checks each line's signature against the chain's keys (those
/// of earlier master keys only for the entries they made).
pub(super) fn read_checkpoints(
    path: &Path,
    keys: &ChainKeys,
) -> std::result::Result<Vec<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let parts: Vec<&str> = line.split(' ').collect();
        let bad = || format!("checkpoint file line {n} is malformed");
        if parts.len() != 6 || parts[0] != "ironchart-audit-checkpoint-v1" {
            return Err(bad());
        }
        let seq: i64 = parts[1].parse().map_err(|_| bad())?;
        let at: i64 = parts[3].parse().map_err(|_| bad())?;
        let Some(key) = keys.checkpoint_key_of(seq, parts[5]) else {
            return Err(format!(
                "checkpoint file line {n} was signed by another key (not this database's master key)"
            ));
        };
        let sig_bytes: [u8; 64] = unhex(parts[4])
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let signature = ed25519_dalek::Signature::from_bytes(&sig_bytes);
        let message = checkpoint_message(seq, parts[2], at);
        if key.verify(message.as_bytes(), &signature).is_err() {
            return Err(format!("checkpoint file line {n} has an invalid signature"));
        }
        out.push(Checkpoint {
            seq,
            mac: parts[2].to_string(),
            at,
            line: n,
        });
    }
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironchart_security::keyring::MasterKey;
    use ironchart_store::AuditRow;

    fn at(seq: i64, mac: &str) -> Option<(i64, String)> {
        Some((seq, mac.to_string()))
    }

    /// A log that cannot be read (here: the database was closed under the checkpointer, as
    /// when a command exits) is not reported as a broken chain, and nothing is signed.
    #[tokio::test]
    async fn an_unreadable_log_is_no_verdict_on_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        let keys = ChainKeys::of(&MasterKey::generate(), None).unwrap();
        store.close().await;
        assert!(matches!(
            verified_tail(&store, &keys, None).await,
            Err(TailError::Unreadable(_))
        ));
        let path = dir.path().join("checkpoints.log");
        assert_eq!(
            sign_tail(&store, &keys, &path, at(3, "m")).await,
            at(3, "m")
        );
        assert!(!path.exists(), "nothing signed");
    }

    #[test]
    fn vouches_only_for_its_own_unbroken_stretch() {
        let own = Segment {
            start: at(10, "a"),
            end: at(20, "b"),
        };
        // Signed at the start of the stretch (same MAC) or inside it: the end can be signed.
        assert_eq!(own_stretch(at(10, "a").as_ref(), &own), at(20, "b"));
        assert_eq!(own_stretch(at(15, "x").as_ref(), &own), at(20, "b"));
        // The start's MAC differs from what was signed: read the chain back instead.
        assert_eq!(own_stretch(at(10, "z").as_ref(), &own), None);
        // Signed before the stretch began (someone else appended in between), or nothing new.
        assert_eq!(own_stretch(at(9, "q").as_ref(), &own), None);
        assert_eq!(own_stretch(at(20, "b").as_ref(), &own), None);
        assert_eq!(own_stretch(None, &own), None);
    }

    #[test]
    fn retired_keys_check_only_the_entries_they_made() {
        let old_master = MasterKey::generate();
        let new_master = MasterKey::generate();
        let old = ChainKeys::of(&old_master, None).unwrap();
        let retired = old.retire(Some(10), &new_master);
        assert!(
            ChainKeys::of(&old_master, Some(&retired)).is_err(),
            "wrapped under the new key"
        );
        let new = ChainKeys::of(&new_master, Some(&retired)).unwrap();
        let entry = |seq| AuditRow {
            seq,
            actor: "system".into(),
            action: "read".into(),
            outcome: "success".into(),
            ..Default::default()
        };
        // Entries up to 10 are checked with the old MAC key, later ones with the new.
        assert_eq!(new.mac("p", &entry(10)), old.mac("p", &entry(10)));
        assert_ne!(new.mac("p", &entry(11)), old.mac("p", &entry(11)));
        // The old checkpoint key vouches for entries up to 10 only; the new one for any.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mac = "ab".repeat(32);
        let old_line = old.checkpoint_line(10, &mac, 1);
        let new_line = new.checkpoint_line(5, &mac, 2);
        std::fs::write(&path, [old_line.as_str(), new_line.as_str()].concat()).unwrap();
        assert_eq!(read_checkpoints(&path, &new).unwrap().len(), 2);
        std::fs::write(&path, old.checkpoint_line(11, &mac, 3)).unwrap();
        assert!(read_checkpoints(&path, &new).is_err());
        // Retiring again keeps the older keys.
        let newest_master = MasterKey::generate();
        let again =
            ChainKeys::of(&newest_master, Some(&new.retire(Some(20), &newest_master))).unwrap();
        assert_eq!(again.mac("p", &entry(3)), old.mac("p", &entry(3)));
        assert_eq!(again.mac("p", &entry(15)), new.mac("p", &entry(15)));
        assert_ne!(again.mac("p", &entry(21)), new.mac("p", &entry(21)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn keys() -> ChainKeys {
            ChainKeys::of(&MasterKey::generate(), None).expect("keys")
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Whatever the checkpoint file holds, reading it never panics.
            #[test]
            fn arbitrary_checkpoint_files_are_read_safely(text in "(ironchart-audit-checkpoint-v1 |[0-9a-f ]{1,20}|.{0,30}|\n){0,8}") {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("c.log");
                std::fs::write(&path, &text).expect("write");
                let _ = read_checkpoints(&path, &keys());
            }

            /// A signed line with any one character changed is refused, never taken.
            #[test]
            fn a_changed_checkpoint_is_refused(seq in 1i64..1_000_000, at in any::<prop::sample::Index>(), to in "[0-9a-z ]") {
                let keys = keys();
                let line = keys.checkpoint_line(seq, &"ab".repeat(32), 1_700_000_000_000);
                let mut chars: Vec<char> = line.trim_end().chars().collect();
                let i = at.index(chars.len());
                let new = to.chars().next().expect("one char");
                prop_assume!(chars[i] != new);
                chars[i] = new;
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("c.log");
                std::fs::write(&path, format!("{}\n", chars.iter().collect::<String>())).expect("write");
                prop_assert!(read_checkpoints(&path, &keys).is_err());
                std::fs::write(&path, &line).expect("write");
                prop_assert_eq!(read_checkpoints(&path, &keys).expect("the signed line").len(), 1);
            }
        }
    }
}
