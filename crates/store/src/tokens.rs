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
}

impl Store {
    pub async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        let mut conn = self.writer().await?;
        conn.execute(
            "INSERT INTO access_tokens (token_hash, subject, scopes, issued_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                Arg::Text(t.token_hash.clone()),
                Arg::Text(t.subject.clone()),
                Arg::Text(t.scopes.clone()),
                Arg::I64(t.issued_at),
                Arg::I64(t.expires_at),
                Arg::Bool(t.revoked),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch(
                "SELECT token_hash, subject, scopes, issued_at, expires_at, revoked FROM access_tokens WHERE token_hash = $1",
                vec![Arg::Text(token_hash.to_string())],
                |r| {
                    Ok(TokenRecord {
                        token_hash: r.text(0)?,
                        subject: r.text(1)?,
                        scopes: r.text(2)?,
                        issued_at: r.i64(3)?,
                        expires_at: r.i64(4)?,
                        revoked: r.bool(5)?,
                    })
                },
            )
            .await?;
        Ok(rows.into_iter().next())
    }
}
