//! Persistence of users, their recovery codes, sessions, sign-in throttling and break-the-glass
//! grants. Plain rows: what they mean (roles, policy, lockout rules) is decided by the caller.

use crate::Result;
use crate::db::{Arg, RowGet, Store};
use crate::resources::WriteTx;

/// A user account as stored. `mfa_secret` is sealed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRecord {
    /// 0 for a user not yet inserted.
    pub user_id: i64,
    pub username: String,
    /// Space-separated role names.
    pub roles: String,
    /// The Patient a `patient` user is.
    pub patient: Option<String>,
    /// PHC string of the password hash.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub mfa_secret: Option<Vec<u8>>,
    /// The last TOTP time step accepted (a code is accepted once).
    pub mfa_last_step: Option<i64>,
    pub mfa_required: bool,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const USER_COLUMNS: &str = "SELECT user_id, username, roles, patient, password_hash, disabled, mfa_secret, mfa_last_step, mfa_required, failed_logins, locked_until, created_at, updated_at FROM users";

fn user_row(r: &dyn RowGet) -> Result<UserRecord> {
    Ok(UserRecord {
        user_id: r.i64(0)?,
        username: r.text(1)?,
        roles: r.text(2)?,
        patient: r.opt_text(3)?,
        password_hash: r.opt_text(4)?,
        disabled: r.bool(5)?,
        mfa_secret: r.opt_bytes(6)?,
        mfa_last_step: r.opt_i64(7)?,
        mfa_required: r.bool(8)?,
        failed_logins: r.i64(9)?,
        locked_until: r.i64(10)?,
        created_at: r.i64(11)?,
        updated_at: r.i64(12)?,
    })
}

/// A server-side session, by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    pub session_hash: String,
    pub user_id: i64,
    pub csrf_token: String,
    /// `password` (second factor pending), `enrol` (must set up MFA) or `active`.
    pub stage: String,
    pub created_at: i64,
    pub last_seen: i64,
    /// Absolute end of the session.
    pub expires_at: i64,
    pub source: Option<String>,
    pub user_agent: Option<String>,
    /// A TOTP secret being enrolled (sealed), until its first code confirms it.
    pub pending_secret: Option<Vec<u8>>,
}

const SESSION_COLUMNS: &str = "SELECT session_hash, user_id, csrf_token, stage, created_at, last_seen, expires_at, source, user_agent, pending_secret FROM sessions";

fn session_row(r: &dyn RowGet) -> Result<SessionRecord> {
    Ok(SessionRecord {
        session_hash: r.text(0)?,
        user_id: r.i64(1)?,
        csrf_token: r.text(2)?,
        stage: r.text(3)?,
        created_at: r.i64(4)?,
        last_seen: r.i64(5)?,
        expires_at: r.i64(6)?,
        source: r.opt_text(7)?,
        user_agent: r.opt_text(8)?,
        pending_secret: r.opt_bytes(9)?,
    })
}

/// A break-the-glass grant: one user, one patient, until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub user_id: i64,
    pub patient: String,
    pub reason: String,
    pub granted_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let mut conn = self.reader().await?;
        let sql = [USER_COLUMNS, " WHERE username = $1"].concat();
        Ok(conn
            .fetch(&sql, vec![Arg::Text(username.into())], user_row)
            .await?
            .into_iter()
            .next())
    }

    pub async fn user_by_id(&self, user_id: i64) -> Result<Option<UserRecord>> {
        let mut conn = self.reader().await?;
        let sql = [USER_COLUMNS, " WHERE user_id = $1"].concat();
        Ok(conn
            .fetch(&sql, vec![Arg::I64(user_id)], user_row)
            .await?
            .into_iter()
            .next())
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let mut conn = self.reader().await?;
        let sql = [USER_COLUMNS, " ORDER BY username"].concat();
        conn.fetch(&sql, vec![], user_row).await
    }

    pub async fn session(&self, session_hash: &str) -> Result<Option<SessionRecord>> {
        let mut conn = self.reader().await?;
        let sql = [SESSION_COLUMNS, " WHERE session_hash = $1"].concat();
        Ok(conn
            .fetch(&sql, vec![Arg::Text(session_hash.into())], session_row)
            .await?
            .into_iter()
            .next())
    }

    pub async fn sessions_of(&self, user_id: i64) -> Result<Vec<SessionRecord>> {
        let mut conn = self.reader().await?;
        let sql = [
            SESSION_COLUMNS,
            " WHERE user_id = $1 ORDER BY created_at DESC",
        ]
        .concat();
        conn.fetch(&sql, vec![Arg::I64(user_id)], session_row).await
    }

    /// Sessions holding an authenticator secret that is not confirmed yet.
    pub async fn pending_enrolments(&self) -> Result<Vec<SessionRecord>> {
        let mut conn = self.reader().await?;
        let sql = [SESSION_COLUMNS, " WHERE pending_secret IS NOT NULL"].concat();
        conn.fetch(&sql, vec![], session_row).await
    }

    /// Patients `user_id` holds an unexpired break-the-glass grant for at `now`.
    pub async fn granted_patients(&self, user_id: i64, now: i64) -> Result<Vec<String>> {
        let mut conn = self.reader().await?;
        conn.fetch(
            "SELECT DISTINCT patient FROM break_glass WHERE user_id = $1 AND expires_at > $2",
            vec![Arg::I64(user_id), Arg::I64(now)],
            |r| r.text(0),
        )
        .await
    }
}

impl Store {
    /// Records activity on a session (its idle timer restarts).
    pub async fn touch_session(&self, session_hash: &str, now: i64) -> Result<()> {
        let mut conn = self.writer().await?;
        conn.execute(
            "UPDATE sessions SET last_seen = $1 WHERE session_hash = $2",
            vec![Arg::I64(now), Arg::Text(session_hash.into())],
        )
        .await?;
        Ok(())
    }
}

impl WriteTx {
    pub async fn user_by_name(&mut self, username: &str) -> Result<Option<UserRecord>> {
        let sql = [USER_COLUMNS, " WHERE username = $1"].concat();
        Ok(self
            .conn()
            .fetch(&sql, vec![Arg::Text(username.into())], user_row)
            .await?
            .into_iter()
            .next())
    }

    pub async fn user_by_id(&mut self, user_id: i64) -> Result<Option<UserRecord>> {
        let sql = [USER_COLUMNS, " WHERE user_id = $1"].concat();
        Ok(self
            .conn()
            .fetch(&sql, vec![Arg::I64(user_id)], user_row)
            .await?
            .into_iter()
            .next())
    }

    pub async fn count_users(&mut self) -> Result<i64> {
        Ok(self
            .conn()
            .fetch("SELECT COUNT(*) FROM users", vec![], |r| r.i64(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }

    /// Inserts (`user_id == 0`) or updates a user; returns its id.
    pub async fn save_user(&mut self, u: &UserRecord) -> Result<i64> {
        let values = vec![
            Arg::Text(u.username.clone()),
            Arg::Text(u.roles.clone()),
            Arg::OptText(u.patient.clone()),
            Arg::OptText(u.password_hash.clone()),
            Arg::Bool(u.disabled),
            Arg::Bytes(u.mfa_secret.clone()),
            Arg::OptI64(u.mfa_last_step),
            Arg::Bool(u.mfa_required),
            Arg::I64(u.failed_logins),
            Arg::I64(u.locked_until),
            Arg::I64(u.created_at),
            Arg::I64(u.updated_at),
        ];
        if u.user_id == 0 {
            let rows = self
                .conn()
                .fetch(
                    "INSERT INTO users (username, roles, patient, password_hash, disabled, mfa_secret, mfa_last_step, mfa_required, failed_logins, locked_until, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING user_id",
                    values,
                    |r| r.i64(0),
                )
                .await?;
            return Ok(rows.into_iter().next().unwrap_or(0));
        }
        let mut values = values;
        values.push(Arg::I64(u.user_id));
        self.conn()
            .execute(
                "UPDATE users SET username = $1, roles = $2, patient = $3, password_hash = $4, disabled = $5, mfa_secret = $6, mfa_last_step = $7, mfa_required = $8, failed_logins = $9, locked_until = $10, created_at = $11, updated_at = $12 WHERE user_id = $13",
                values,
            )
            .await?;
        Ok(u.user_id)
    }

    /// Replaces a user's recovery codes (by hash).
    pub async fn set_recovery_codes(&mut self, user_id: i64, hashes: &[String]) -> Result<()> {
        self.conn()
            .execute(
                "DELETE FROM recovery_codes WHERE user_id = $1",
                vec![Arg::I64(user_id)],
            )
            .await?;
        for h in hashes {
            self.conn()
                .execute(
                    "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
                    vec![Arg::I64(user_id), Arg::Text(h.clone())],
                )
                .await?;
        }
        Ok(())
    }

    /// Marks an unused recovery code used; false when there is no such unused code.
    pub async fn use_recovery_code(&mut self, user_id: i64, hash: &str, now: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                vec![Arg::I64(now), Arg::I64(user_id), Arg::Text(hash.into())],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn unused_recovery_codes(&mut self, user_id: i64) -> Result<i64> {
        Ok(self
            .conn()
            .fetch(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                vec![Arg::I64(user_id)],
                |r| r.i64(0),
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }

    pub async fn insert_session(&mut self, s: &SessionRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO sessions (session_hash, user_id, csrf_token, stage, created_at, last_seen, expires_at, source, user_agent, pending_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                vec![
                    Arg::Text(s.session_hash.clone()),
                    Arg::I64(s.user_id),
                    Arg::Text(s.csrf_token.clone()),
                    Arg::Text(s.stage.clone()),
                    Arg::I64(s.created_at),
                    Arg::I64(s.last_seen),
                    Arg::I64(s.expires_at),
                    Arg::OptText(s.source.clone()),
                    Arg::OptText(s.user_agent.clone()),
                    Arg::Bytes(s.pending_secret.clone()),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn session(&mut self, session_hash: &str) -> Result<Option<SessionRecord>> {
        let sql = [SESSION_COLUMNS, " WHERE session_hash = $1"].concat();
        Ok(self
            .conn()
            .fetch(&sql, vec![Arg::Text(session_hash.into())], session_row)
            .await?
            .into_iter()
            .next())
    }

    /// Stores a session's changed stage, enrolment secret and last activity.
    pub async fn update_session(&mut self, s: &SessionRecord) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET stage = $1, pending_secret = $2, last_seen = $3 WHERE session_hash = $4",
                vec![
                    Arg::Text(s.stage.clone()),
                    Arg::Bytes(s.pending_secret.clone()),
                    Arg::I64(s.last_seen),
                    Arg::Text(s.session_hash.clone()),
                ],
            )
            .await?;
        Ok(())
    }

    /// Drops sessions past their absolute lifetime or idle for longer than `idle_ms`.
    pub async fn delete_stale_sessions(&mut self, now: i64, idle_ms: i64) -> Result<u64> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen < $2",
                vec![Arg::I64(now), Arg::I64(now - idle_ms)],
            )
            .await
    }

    pub async fn delete_session(&mut self, session_hash: &str) -> Result<u64> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE session_hash = $1",
                vec![Arg::Text(session_hash.into())],
            )
            .await
    }

    /// Ends every session of a user; returns how many there were.
    pub async fn delete_sessions_of(&mut self, user_id: i64) -> Result<u64> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE user_id = $1",
                vec![Arg::I64(user_id)],
            )
            .await
    }

    /// Failed sign-ins recorded for a client address: `(failures, last_failure, locked_until)`.
    pub async fn throttle(&mut self, key: &str) -> Result<Option<(i64, i64, i64)>> {
        Ok(self
            .conn()
            .fetch(
                "SELECT failures, last_failure, locked_until FROM login_throttle WHERE throttle_key = $1",
                vec![Arg::Text(key.into())],
                |r| Ok((r.i64(0)?, r.i64(1)?, r.i64(2)?)),
            )
            .await?
            .into_iter()
            .next())
    }

    pub async fn set_throttle(
        &mut self,
        key: &str,
        failures: i64,
        last_failure: i64,
        locked_until: i64,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO login_throttle (throttle_key, failures, last_failure, locked_until) VALUES ($1, $2, $3, $4) ON CONFLICT (throttle_key) DO UPDATE SET failures = excluded.failures, last_failure = excluded.last_failure, locked_until = excluded.locked_until",
                vec![
                    Arg::Text(key.into()),
                    Arg::I64(failures),
                    Arg::I64(last_failure),
                    Arg::I64(locked_until),
                ],
            )
            .await?;
        Ok(())
    }

    /// Counts one more failure for a throttle key, atomically (concurrent failures each count:
    /// the row is locked by the upsert), forgetting failures last seen before `forget_before`.
    /// Returns the failures counted so far.
    pub async fn count_failure(&mut self, key: &str, now: i64, forget_before: i64) -> Result<i64> {
        let counted = self
            .conn()
            .fetch(
                "INSERT INTO login_throttle (throttle_key, failures, last_failure, locked_until) VALUES ($1, 1, $2, 0) ON CONFLICT (throttle_key) DO UPDATE SET failures = CASE WHEN login_throttle.last_failure < $3 THEN 1 ELSE login_throttle.failures + 1 END, last_failure = excluded.last_failure RETURNING failures",
                vec![Arg::Text(key.into()), Arg::I64(now), Arg::I64(forget_before)],
                |r| r.i64(0),
            )
            .await?;
        Ok(counted.into_iter().next().unwrap_or(1))
    }

    /// Locks a throttle key until `until` (ms), never shortening a longer lock.
    pub async fn lock_throttle(&mut self, key: &str, until: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE login_throttle SET locked_until = $1 WHERE throttle_key = $2 AND locked_until < $1",
                vec![Arg::I64(until), Arg::Text(key.into())],
            )
            .await?;
        Ok(())
    }

    /// Records that a user's authenticator code of time step `step` was used: `false` when that
    /// step or a later one was already used (a replay, or a concurrent use of the same code).
    pub async fn claim_totp_step(&mut self, user_id: i64, step: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE users SET mfa_last_step = $1 WHERE user_id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
                vec![Arg::I64(step), Arg::I64(user_id)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Forgets a throttle key (a pending sign-in that ended).
    pub async fn delete_throttle(&mut self, key: &str) -> Result<()> {
        self.conn()
            .execute(
                "DELETE FROM login_throttle WHERE throttle_key = $1",
                vec![Arg::Text(key.into())],
            )
            .await?;
        Ok(())
    }

    pub async fn insert_grant(&mut self, g: &GrantRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO break_glass (user_id, patient, reason, granted_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                vec![
                    Arg::I64(g.user_id),
                    Arg::Text(g.patient.clone()),
                    Arg::Text(g.reason.clone()),
                    Arg::I64(g.granted_at),
                    Arg::I64(g.expires_at),
                ],
            )
            .await?;
        Ok(())
    }

    /// Revokes every access token of a user; returns how many were live.
    pub async fn revoke_tokens_of(&mut self, user_id: i64) -> Result<u64> {
        self.conn()
            .execute(
                "UPDATE access_tokens SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE",
                vec![Arg::I64(user_id)],
            )
            .await
    }
}
