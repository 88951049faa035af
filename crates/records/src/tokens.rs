//! Bearer access tokens: issued to the system or to a user (never wider than the user's roles),
//! stored only as hashes, checked on every request, revocable.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironchart_security::scope::{Role, Scopes, scopes_of};
use ironchart_store::TokenRecord;
use tracing::instrument;

use crate::actor::{Actor, ActorKind};
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::cache::{CACHE_MAX, CACHE_TTL};
use crate::{Records, RecordsError, Result};

/// The scopes of the full-access system token.
const SYSTEM_SCOPES: &str = "system/*.cruds";

/// Parses a user's stored role list (unknown names are ignored: they grant nothing).
pub(crate) fn parse_roles(text: &str) -> Vec<Role> {
    text.split_whitespace()
        .filter_map(|r| Role::parse(r).ok())
        .collect()
}

impl Records {
    /// Issues a full-access system token valid for `ttl` (audited as issued by `by`). Returns
    /// the token text; only its hash is stored.
    pub async fn issue_system_token(&self, by: &Actor, ttl: Duration) -> Result<String> {
        let token = self
            .store_token("system", SYSTEM_SCOPES, None, None, ttl)
            .await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::TokenIssue, Outcome::Success)
                    .detail(format!("system token, {}s", ttl.as_secs())),
            ],
        )
        .await?;
        Ok(token)
    }

    /// Issues a token for a user: with `scopes`, those (which must lie within the user's roles);
    /// without, all of the roles' scopes. `patient/` scopes act in the user's own patient
    /// context (a `patient` user linked to their Patient).
    pub async fn issue_user_token(
        &self,
        by: &Actor,
        username: &str,
        scopes: Option<&str>,
        ttl: Duration,
    ) -> Result<String> {
        let result = self.issue_user_token_inner(username, scopes, ttl).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        let detail = match &result {
            Ok((_, granted)) => format!("user:{username} scopes={granted} {}s", ttl.as_secs()),
            Err(e) => format!("user:{username}: {e}"),
        };
        self.audit(
            by,
            vec![AuditEntry::new(AuditAction::TokenIssue, outcome).detail(detail)],
        )
        .await?;
        result.map(|(token, _)| token)
    }

    async fn issue_user_token_inner(
        &self,
        username: &str,
        scopes: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, String)> {
        let user = self
            .store
            .user_by_name(&username.to_lowercase())
            .await?
            .ok_or_else(|| RecordsError::bad(format!("there is no user '{username}'"), None))?;
        if user.disabled {
            return Err(RecordsError::bad(
                format!("the user '{username}' is disabled"),
                None,
            ));
        }
        let role_scopes = scopes_of(&parse_roles(&user.roles));
        let requested = match scopes {
            Some(text) => {
                Scopes::parse(text).map_err(|e| RecordsError::bad(e.to_string(), None))?
            }
            None => role_scopes.clone(),
        };
        if requested.is_empty() {
            return Err(RecordsError::bad(
                format!("the user '{username}' has no scopes to grant (no roles with data access)"),
                None,
            ));
        }
        if !requested.is_within(&role_scopes) {
            return Err(RecordsError::Forbidden(format!(
                "the scopes '{requested}' are wider than what the roles of '{username}' allow ({role_scopes})"
            )));
        }
        let patient = if requested.has_patient_context() {
            match &user.patient {
                Some(p) => Some(p.clone()),
                None => {
                    return Err(RecordsError::bad(
                        "patient/ scopes need a patient context: only a user linked to a Patient (--patient) can have them",
                        None,
                    ));
                }
            }
        } else {
            None
        };
        let granted = requested.to_string();
        let token = self
            .store_token(
                &["user:", &user.username].concat(),
                &granted,
                Some(user.user_id),
                patient,
                ttl,
            )
            .await?;
        Ok((token, granted))
    }

    async fn store_token(
        &self,
        subject: &str,
        scopes: &str,
        user_id: Option<i64>,
        patient: Option<String>,
        ttl: Duration,
    ) -> Result<String> {
        let token = new_secret("ic_");
        let now = self.now().as_millis();
        self.store
            .insert_token(&TokenRecord {
                token_hash: token_hash(&token),
                subject: subject.to_string(),
                scopes: scopes.to_string(),
                issued_at: now,
                expires_at: now.saturating_add(ttl.as_millis() as i64),
                revoked: false,
                user_id,
                patient,
            })
            .await?;
        Ok(token)
    }

    /// Revokes a token (by its text); true when it was live.
    pub async fn revoke_token(&self, by: &Actor, token: &str) -> Result<bool> {
        let hash = token_hash(token);
        let revoked = self.store.revoke_token(&hash).await?;
        self.forget_cached_tokens();
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::TokenRevoke, Outcome::Success).detail(if revoked {
                    "revoked"
                } else {
                    "was not live"
                }),
            ],
        )
        .await?;
        Ok(revoked)
    }

    pub(crate) fn forget_cached_tokens(&self) {
        if let Ok(mut cache) = self.tokens.lock() {
            cache.clear();
        }
    }

    /// Checks a bearer token. Unknown, expired and revoked tokens, and tokens of disabled users
    /// or wider than the user's current roles, are all simply unauthorized.
    #[instrument(skip_all)]
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor> {
        if !bearer.starts_with("ic_") || bearer.len() > 128 {
            return Err(RecordsError::Unauthorized);
        }
        let hash = token_hash(bearer);
        let now = self.now().as_millis();
        if let Ok(cache) = self.tokens.lock()
            && let Some((actor, at)) = cache.get(&hash)
            && at.elapsed() < CACHE_TTL
            && actor.expires_at > now
        {
            return Ok(actor.clone());
        }
        let record = self
            .store
            .find_token(&hash)
            .await?
            .ok_or(RecordsError::Unauthorized)?;
        if record.revoked || record.expires_at <= now {
            return Err(RecordsError::Unauthorized);
        }
        let scopes = Scopes::parse(&record.scopes).map_err(|_| RecordsError::Unauthorized)?;
        let actor = match record.user_id {
            None if record.subject == "system" => Actor {
                kind: ActorKind::System,
                roles: Vec::new(),
                scopes,
                patient: None,
                expires_at: record.expires_at,
                source: None,
                request_id: None,
                purpose: None,
            },
            None => return Err(RecordsError::Unauthorized),
            Some(user_id) => {
                let user = self
                    .store
                    .user_by_id(user_id)
                    .await?
                    .ok_or(RecordsError::Unauthorized)?;
                let roles = parse_roles(&user.roles);
                if user.disabled || !scopes.is_within(&scopes_of(&roles)) {
                    return Err(RecordsError::Unauthorized);
                }
                Actor {
                    kind: ActorKind::User {
                        id: user.user_id,
                        username: user.username,
                    },
                    roles,
                    scopes,
                    patient: record.patient,
                    expires_at: record.expires_at,
                    source: None,
                    request_id: None,
                    purpose: None,
                }
            }
        };
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (actor.clone(), std::time::Instant::now()));
        }
        Ok(actor)
    }
}

/// A new random secret: `prefix` + 256 random bits, base64url.
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut raw);
    [prefix, &URL_SAFE_NO_PAD.encode(raw)].concat()
}

/// The stored form of a secret token or session id: hex SHA-256 (the values are random and
/// long, so a fast hash is enough).
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    ironchart_security::hex(&sha2::Sha256::digest(token.as_bytes()))
}
