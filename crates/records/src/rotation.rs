//! Key rotation, online: a new data-key generation and re-sealing everything under it, or the
//! master key replaced (the data keys in use wrapped under the new one, the audit chain's keys
//! retired), all audited.

use std::time::Duration;

use ironchart_security::keyring::MasterKey;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, ChainKeys, Outcome};
use crate::service::{DatabaseConfig, SecurityConfig};
use crate::{Records, RecordsError, Result};

impl Records {
    /// Re-seals every stored body not sealed under the current data key; `plaintext` also
    /// accepts unsealed bodies (a database from before encryption). Returns how many were
    /// re-sealed; `progress(done, resealed)` is called after each batch.
    pub(crate) async fn reseal(
        &self,
        plaintext: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<u64> {
        const BATCH: usize = 500;
        let mut after = (0i64, 0i64);
        let mut done = 0u64;
        let mut resealed = 0u64;
        loop {
            let bodies = self.store.bodies_after(after, BATCH).await?;
            let Some(last) = bodies.last() else { break };
            after = (last.rid, last.version);
            let mut changes = Vec::new();
            for b in &bodies {
                if self.keys.generation_is_current(&b.body) {
                    continue;
                }
                let plain = if plaintext && b.body.first() == Some(&b'{') {
                    b.body.clone()
                } else {
                    self.keys
                        .open(&self.store, &b.res_type, &b.res_id, b.version, &b.body)
                        .await?
                };
                changes.push((
                    b.rid,
                    b.version,
                    self.keys.seal(&b.res_type, &b.res_id, b.version, &plain),
                ));
            }
            if !changes.is_empty() {
                let changes = &changes;
                self.retrying(|mut tx| async move {
                    for (rid, version, body) in changes {
                        tx.replace_body(*rid, *version, body.clone()).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await?;
            }
            done += bodies.len() as u64;
            resealed += changes.len() as u64;
            progress(done, resealed);
        }
        Ok(resealed)
    }

    /// `ironchart keys rotate`: adds a data-key generation, waits until every running process
    /// seals with it, then re-seals every stored body (and every sealed secret) under it, in
    /// batches, while the system stays online. Returns the new generation and how many bodies
    /// were re-sealed.
    pub async fn rotate_keys(
        &self,
        by: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(u32, u64)> {
        if !by.is_system() {
            return Err(RecordsError::Forbidden(
                "rotating keys is for the operator".into(),
            ));
        }
        let generation = self.keys.add_generation(&self.store).await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::KeyRotate, Outcome::Success)
                    .detail(format!("data key generation {generation} is current")),
            ],
        )
        .await?;
        let total = self.reseal_all(by, progress).await?;
        Ok((generation, total))
    }

    /// Re-seals every stored body and sealed secret under the current data key, online, then
    /// deletes the wrapped keys of a replaced master key (nothing needs them any more). Waits
    /// first until every running process has read the current generation. Returns how many
    /// bodies were re-sealed. Also finishes a master-key replacement that was interrupted.
    pub async fn reseal_all(
        &self,
        by: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<u64> {
        if !by.is_system() {
            return Err(RecordsError::Forbidden(
                "re-sealing is for the operator".into(),
            ));
        }
        // Other processes read the current generation again within REFRESH.
        tokio::time::sleep(crate::keys::REFRESH + Duration::from_secs(1)).await;
        let mut total = 0;
        loop {
            let n = self.reseal(false, progress).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        let secrets = self.reseal_user_secrets().await?;
        let deleted = self.keys.delete_wrapped(&self.store).await?;
        let generation = self.keys.current_generation();
        let mut detail =
            format!("re-sealed {total} bodies and {secrets} secrets under generation {generation}");
        if deleted > 0 {
            detail.push_str(&format!(
                "; deleted the {deleted} data keys of the replaced master key"
            ));
        }
        self.audit(
            by,
            vec![AuditEntry::new(AuditAction::KeyRotate, Outcome::Success).detail(detail)],
        )
        .await?;
        Ok(total)
    }

    /// `ironchart keys rotate --new-master-key-file`, its first step: makes `new` the master
    /// key of the database opened with `config` and `current` (the master key in use). In one
    /// transaction, holding the audit chain's lock: the data keys in use are wrapped under
    /// `new`, a data-key generation derived from `new` becomes current, the audit chain's keys
    /// retire (kept wrapped under `new`, to check the entries they made) and the chain goes on
    /// under keys derived from `new`, starting with a `key-rotate` entry. From then on only
    /// `new` opens the database, and processes still running with the old key refuse to serve.
    /// Open the database with `new` and run [`Records::reseal_all`] next. Returns the new
    /// generation.
    pub async fn replace_master_key(
        config: &DatabaseConfig,
        current: SecurityConfig,
        new: MasterKey,
    ) -> Result<u32> {
        // Only the operator holds the master key in use (`current`), which opens the database:
        // the entry names them.
        let by = &Actor::local_operator();
        if new.check_value() == current.master_key.check_value() {
            return Err(RecordsError::Config(
                "the new master key is the one in use".into(),
            ));
        }
        // Opening moves what journals of stopped processes hold into the log; closing moves
        // this one's and signs a checkpoint of the chain under the keys that made it.
        let records = Records::open(config, current).await?;
        records.flush_audit().await?;
        let store = records.store.clone();
        let keys = records.keys.clone();
        let chain = records.chain.clone();
        records.checkpoint().await?;

        let mut tx = store.begin().await?;
        let tail = crate::audit::locked_tail(&mut tx, &chain).await?;
        let generation = keys.switch_master(&mut tx, &new).await?;
        let retired = chain.retire(tail.as_ref().map(|t| t.0), &new);
        tx.set_setting(crate::audit::RETIRED_KEYS, &retired).await?;
        let new_chain = ChainKeys::of(&new, Some(&retired))?;
        let rows = crate::audit::rows_of(
            by,
            vec![
                AuditEntry::new(AuditAction::KeyRotate, Outcome::Success).detail(format!(
                    "the master key was replaced; data key generation {generation} is current"
                )),
            ],
            records.now().as_millis(),
        );
        tx.audit_append(&crate::audit::chained(&new_chain, tail, rows))
            .await?;
        tx.commit().await?;
        // (Its keys sign no more checkpoints: the next process does, with the new ones.)
        records.shut_down(false).await;
        Ok(generation)
    }

    /// Re-seals users' TOTP secrets (and those of enrolments under way) under the current data
    /// key.
    async fn reseal_user_secrets(&self) -> Result<u64> {
        let mut n = 0;
        for user in self.store.users().await? {
            let Some(sealed) = &user.mfa_secret else {
                continue;
            };
            if self.keys.generation_is_current(sealed) {
                continue;
            }
            let secret = self.keys.open_secret("totp", user.user_id, sealed)?;
            let resealed = self.keys.seal_secret("totp", user.user_id, &secret);
            let mut tx = self.store.begin().await?;
            if let Some(mut current) = tx.user_by_id(user.user_id).await?
                && current.mfa_secret.as_ref() == Some(sealed)
            {
                current.mfa_secret = Some(resealed);
                tx.save_user(&current).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        // Authenticator secrets shown for enrolment, not confirmed yet.
        for session in self.store.pending_enrolments().await? {
            let Some(sealed) = &session.pending_secret else {
                continue;
            };
            if self.keys.generation_is_current(sealed) {
                continue;
            }
            let row = crate::signin::hash_row(&session.session_hash);
            let secret = self.keys.open_secret("totp-pending", row, sealed)?;
            let resealed = self.keys.seal_secret("totp-pending", row, &secret);
            let mut tx = self.store.begin().await?;
            if let Some(mut current) = tx.session(&session.session_hash).await?
                && current.pending_secret.as_ref() == Some(sealed)
            {
                current.pending_secret = Some(resealed);
                tx.update_session(&current).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        Ok(n)
    }
}
