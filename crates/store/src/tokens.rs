//! Persistence of access tokens: only their hashes are stored.

use crate::Result;
use crate::db::{Arg, Store};

/// A stored access token (by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: String,
    /// Who the token acts for: `system` or `user:<id>`.
    pub subject: String,
    /// Space-separated SMART-style scopes.
    pub scopes: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// The user the token acts for (none for the system token).
    pub user_id: Option<i64>,
    /// The patient context of a patient-scoped token.
    pub patient: Option<String>,
}

impl Store {
    pub async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        let mut conn = self.writer().await?;
        conn.execute(
            "INSERT INTO access_tokens (token_hash, subject, scopes, issued_at, expires_at, revoked, user_id, patient) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                Arg::Text(t.token_hash.clone()),
                Arg::Text(t.subject.clone()),
                Arg::Text(t.scopes.clone()),
                Arg::I64(t.issued_at),
                Arg::I64(t.expires_at),
                Arg::Bool(t.revoked),
                Arg::OptI64(t.user_id),
                Arg::OptText(t.patient.clone()),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch(
                "SELECT token_hash, subject, scopes, issued_at, expires_at, revoked, user_id, patient FROM access_tokens WHERE token_hash = $1",
                vec![Arg::Text(token_hash.to_string())],
                |r| {
                    Ok(TokenRecord {
                        token_hash: r.text(0)?,
                        subject: r.text(1)?,
                        scopes: r.text(2)?,
                        issued_at: r.i64(3)?,
                        expires_at: r.i64(4)?,
                        revoked: r.bool(5)?,
                        user_id: r.opt_i64(6)?,
                        patient: r.opt_text(7)?,
                    })
                },
            )
            .await?;
        Ok(rows.into_iter().next())
    }
}

impl Store {
    /// Revokes one token by hash; true when it was live.
    pub async fn revoke_token(&self, token_hash: &str) -> Result<bool> {
        let mut conn = self.writer().await?;
        let n = conn
            .execute(
                "UPDATE access_tokens SET revoked = TRUE WHERE token_hash = $1 AND revoked = FALSE",
                vec![Arg::Text(token_hash.to_string())],
            )
            .await?;
        Ok(n == 1)
    }
}
