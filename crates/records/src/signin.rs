//! Signing in to the web app: password (Argon2id), second factor (TOTP with replay protection,
//! or a one-time recovery code), lockout and rate limits per account and per client address
//! with exponential backoff, and server-side sessions.
//!
//! Unknown user names, wrong passwords and disabled accounts get the same answer after the same
//! work (a dummy Argon2 verification), and failures are counted per name whether or not the
//! account exists, so neither the message, the timing nor the lockout tells an attacker which
//! names exist. Every attempt, success or failure, is audited.

use std::time::Duration;

use ironchart_security::password::{Verified, hash_password, verify_dummy, verify_password};
use ironchart_security::scope::{Role, scopes_of};
use ironchart_security::totp::{self, TotpSecret};
use ironchart_store::{GrantRecord, SessionRecord, UserRecord, WriteTx};

use crate::actor::{Actor, ActorKind};
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::tokens::token_hash;
use crate::tokens::{new_secret, parse_roles};
use crate::users::{UserSummary, valid_username};
use crate::{Records, RecordsError, Result};

/// Session timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends (default 15 minutes).
    pub idle: Duration,
    /// A session ends this long after sign-in whatever happens (default 12 hours).
    pub lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(15 * 60),
            lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// Failures before an account is locked, and before a client address is.
const ACCOUNT_FAILURES: i64 = 5;
const ADDRESS_FAILURES: i64 = 20;
/// Wrong second-factor codes one pending sign-in may send before it ends (the password must
/// then be given again). Code failures also count against the account's second factor (kept
/// apart from its password failures, which a correct password clears) and the client address.
const CODE_TRIES_PER_SIGNIN: i64 = 3;
/// The first lockout; each further failure doubles it, up to the maximum.
const FIRST_LOCK_MS: i64 = 60_000;
const MAX_LOCK_MS: i64 = 3_600_000;
/// Failures older than this are forgotten.
const FAILURE_MEMORY_MS: i64 = 3_600_000;
/// A session's activity is written at most this often.
const TOUCH_EVERY_MS: i64 = 30_000;

/// Session stages.
const STAGE_CODE: &str = "code";
const STAGE_ENROL: &str = "enrol";
const STAGE_ACTIVE: &str = "active";

/// Where a sign-in request comes from.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A new session: the cookie value (a secret: only its hash is stored) and its CSRF token.
#[derive(Clone)]
pub struct NewSession {
    pub cookie: String,
    pub csrf_token: String,
    pub stage: SessionStage,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// How far a session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Password accepted; a code from the authenticator (or a recovery code) is needed.
    Code,
    /// Password accepted; MFA is required and must be set up first.
    Enrol,
    /// Signed in.
    Active,
}

impl SessionStage {
    fn of(text: &str) -> Option<SessionStage> {
        match text {
            STAGE_CODE => Some(SessionStage::Code),
            STAGE_ENROL => Some(SessionStage::Enrol),
            STAGE_ACTIVE => Some(SessionStage::Active),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SessionStage::Code => STAGE_CODE,
            SessionStage::Enrol => STAGE_ENROL,
            SessionStage::Active => STAGE_ACTIVE,
        }
    }
}

/// A session looked up from its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub stage: SessionStage,
    pub csrf_token: String,
    pub user: UserSummary,
    /// The actor of a signed-in session (`None` before the second factor).
    pub actor: Option<Actor>,
    /// The public id of the session (a prefix of its hash), for the sessions page.
    pub id: String,
}

/// One of a user's sessions, for the sessions page.
#[derive(Debug, Clone)]
pub struct SessionListing {
    pub id: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// What setting up an authenticator needs.
#[derive(Clone)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// Why a sign-in step failed. The messages are safe to show: they never say whether the user
/// name exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("the user name or password is not right")]
    BadCredentials,
    #[error("the code is not right (or was already used)")]
    BadCode,
    #[error("too many failed attempts; try again in {0} seconds")]
    Throttled(i64),
    #[error("your session has ended; sign in again")]
    NoSession,
}

impl From<ironchart_store::StoreError> for SignInFailure {
    fn from(e: ironchart_store::StoreError) -> Self {
        SignInFailure::Records(e.into())
    }
}

impl From<RecordsError> for SignInFailure {
    fn from(e: RecordsError) -> Self {
        SignInFailure::Records(e)
    }
}

/// A sign-in step's failure: a refusal to show, or an error of the service.
#[derive(Debug, thiserror::Error)]
pub enum SignInFailure {
    #[error(transparent)]
    Refused(#[from] SignInError),
    #[error(transparent)]
    Records(RecordsError),
}

type Step<T> = std::result::Result<T, SignInFailure>;

fn user_actor(user: &UserRecord, roles: Vec<Role>, expires_at: i64, client: &Client) -> Actor {
    let scopes = scopes_of(&roles);
    let patient = if scopes.has_patient_context() {
        user.patient.clone()
    } else {
        None
    };
    Actor {
        kind: ActorKind::User {
            id: user.user_id,
            username: user.username.clone(),
        },
        roles,
        scopes,
        patient,
        expires_at,
        source: client.address.clone(),
        request_id: None,
        purpose: None,
    }
}

/// An actor for audit entries about a user who is not signed in (yet).
fn attempt_actor(username: &str, client: &Client) -> Actor {
    let mut actor = Actor::anonymous();
    if valid_username(username) {
        actor.kind = ActorKind::User {
            id: 0,
            username: username.to_string(),
        };
    }
    actor.source = client.address.clone();
    actor
}

impl Records {
    /// Sets the session timeouts (before the service is shared).
    pub fn with_session_policy(mut self, policy: SessionPolicy) -> Records {
        self.session_policy = policy;
        self
    }

    pub fn session_policy(&self) -> SessionPolicy {
        self.session_policy
    }

    /// Whether a lockout is in force for a throttle key; the seconds left when it is.
    async fn locked(tx: &mut WriteTx, key: &str, now: i64) -> Result<Option<i64>> {
        Ok(tx
            .throttle(key)
            .await?
            .filter(|(_, _, until)| *until > now)
            .map(|(_, _, until)| (until - now + 999) / 1000))
    }

    /// Asks a signed-in user for their password again (before a signature): `false` when it is
    /// not right. Wrong answers count against the account exactly as failed sign-ins do, so
    /// this cannot be used to guess a password; a locked account is refused.
    pub(crate) async fn confirm_password(&self, actor: &Actor, password: &str) -> Result<bool> {
        let Some(user_id) = actor.user_id() else {
            return Err(RecordsError::Forbidden(
                "only a signed-in user can sign, with their password".into(),
            ));
        };
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Err(RecordsError::Unauthorized);
        };
        let now = self.now().as_millis();
        let account_key = ["account:", &user.username].concat();
        let mut tx = self.store.begin().await?;
        if let Some(seconds) = Self::locked(&mut tx, &account_key, now).await? {
            tx.rollback().await?;
            return Err(RecordsError::Forbidden(format!(
                "too many wrong passwords; try again in {seconds} seconds"
            )));
        }
        let good =
            user.password_hash.as_deref().is_some_and(|phc| {
                matches!(verify_password(password, phc), Verified::Match { .. })
            }) && !user.disabled;
        if good {
            tx.set_throttle(&account_key, 0, now, 0).await?;
        } else {
            let lock = Self::fail(&mut tx, &account_key, ACCOUNT_FAILURES, now).await?;
            let mut entries =
                vec![AuditEntry::new(AuditAction::Sign, Outcome::Denied).detail("wrong password")];
            if let Some(l) = lock {
                entries.push(
                    AuditEntry::new(AuditAction::Lockout, Outcome::Success)
                        .detail(format!("account locked for {} s", l / 1000)),
                );
            }
            self.audit_in(&mut tx, actor, entries).await?;
        }
        tx.commit().await?;
        Ok(good)
    }

    /// Counts a failure for a key; returns the lockout it starts (ms), if any. The count is one
    /// atomic statement, so that failures sent at once all count.
    async fn fail(tx: &mut WriteTx, key: &str, limit: i64, now: i64) -> Result<Option<i64>> {
        let failures = tx.count_failure(key, now, now - FAILURE_MEMORY_MS).await?;
        let lock = lock_ms(failures, limit);
        if let Some(l) = lock {
            tx.lock_throttle(key, now + l).await?;
        }
        Ok(lock)
    }

    /// Step one: user name and password. On success a session in its first stage.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Step<NewSession> {
        let name = username.trim().to_lowercase();
        let now = self.now().as_millis();
        let account_key = ["account:", &name].concat();
        let address_key = address_key(client);
        let actor = attempt_actor(&name, client);
        // Throttled? Refuse before any password work. Otherwise the attempt is counted against
        // the name before the password is checked (one atomic statement, which waits for any
        // attempt counted at the same time), and reaching the limit locks the name at once: of
        // attempts sent together, at most the limit are tried. A right password lifts it.
        let mut tx = self.store.begin().await?;
        let mut locked = Self::locked(&mut tx, &address_key, now).await?;
        let mut account_lock = None;
        if locked.is_none() {
            let tries = tx
                .count_failure(&account_key, now, now - FAILURE_MEMORY_MS)
                .await?;
            locked = Self::locked(&mut tx, &account_key, now).await?;
            if locked.is_none() {
                account_lock = lock_ms(tries, ACCOUNT_FAILURES);
                if let Some(l) = account_lock {
                    tx.lock_throttle(&account_key, now + l).await?;
                }
            }
        }
        if locked.is_some() {
            // A refused attempt is not counted.
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        if let Some(seconds) = locked {
            self.audit(
                &actor,
                vec![AuditEntry::new(AuditAction::SignIn, Outcome::Denied).detail("locked out")],
            )
            .await?;
            return Err(SignInError::Throttled(seconds).into());
        }
        let user = if valid_username(&name) {
            self.store.user_by_name(&name).await?
        } else {
            None
        };
        let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
            Some(phc) => verify_password(password, phc),
            None => {
                verify_dummy(password);
                Verified::Mismatch
            }
        };
        let good = matches!(verified, Verified::Match { .. })
            && user.as_ref().is_some_and(|u| !u.disabled);
        if !good {
            let mut tx = self.store.begin().await?;
            let address_lock = Self::fail(&mut tx, &address_key, ADDRESS_FAILURES, now).await?;
            if let (Some(lock), Some(u)) = (account_lock, &user) {
                let mut u = u.clone();
                u.locked_until = now + lock;
                tx.save_user(&u).await?;
            }
            let mut entries = vec![
                AuditEntry::new(AuditAction::SignIn, Outcome::Denied).detail("bad credentials"),
            ];
            if account_lock.is_some() || address_lock.is_some() {
                entries.push(
                    AuditEntry::new(AuditAction::Lockout, Outcome::Success).detail(format!(
                        "{} locked for {} s",
                        if account_lock.is_some() {
                            "account"
                        } else {
                            "address"
                        },
                        account_lock.or(address_lock).unwrap_or(0) / 1000
                    )),
                );
            }
            self.audit_in(&mut tx, &actor, entries).await?;
            tx.commit().await?;
            return Err(SignInError::BadCredentials.into());
        }
        let Some(mut user) = user else {
            return Err(SignInError::BadCredentials.into());
        };
        let mut tx = self.store.begin().await?;
        if let Verified::Match { needs_rehash: true } = verified {
            user.password_hash = Some(hash_password(password));
        }
        user.failed_logins = 0;
        // A correct password clears password failures, never second-factor ones: a lockout of
        // the second factor stays in force (and on the users page).
        let code_key = ["code:", &user.username].concat();
        user.locked_until = match Self::locked(&mut tx, &code_key, now).await? {
            Some(seconds) => now + seconds * 1000,
            None => 0,
        };
        tx.save_user(&user).await?;
        tx.set_throttle(&account_key, 0, now, 0).await?;
        let roles = parse_roles(&user.roles);
        let mfa_required = user.mfa_required
            || roles.iter().any(|r| r.requires_mfa())
            || self.mfa_for_everyone().await?;
        let stage = if user.mfa_secret.is_some() {
            SessionStage::Code
        } else if mfa_required {
            SessionStage::Enrol
        } else {
            SessionStage::Active
        };
        let session = self.new_session(&mut tx, &user, stage, client, now).await?;
        let detail = match stage {
            SessionStage::Active => "signed in",
            SessionStage::Code => "password accepted; second factor pending",
            SessionStage::Enrol => "password accepted; must set up a second factor",
        };
        let actor = user_actor(&user, roles, now, client);
        self.audit_in(
            &mut tx,
            &actor,
            vec![AuditEntry::new(AuditAction::SignIn, Outcome::Success).detail(detail)],
        )
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn new_session(
        &self,
        tx: &mut WriteTx,
        user: &UserRecord,
        stage: SessionStage,
        client: &Client,
        now: i64,
    ) -> Result<NewSession> {
        let cookie = new_secret("");
        let csrf_token = new_secret("");
        tx.delete_stale_sessions(now, self.session_policy.idle.as_millis() as i64)
            .await?;
        tx.insert_session(&SessionRecord {
            session_hash: token_hash(&cookie),
            user_id: user.user_id,
            csrf_token: csrf_token.clone(),
            stage: stage.as_str().to_string(),
            created_at: now,
            last_seen: now,
            expires_at: now + self.session_policy.lifetime.as_millis() as i64,
            source: client.address.clone(),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|a| a.chars().take(200).collect()),
            pending_secret: None,
        })
        .await?;
        Ok(NewSession {
            cookie,
            csrf_token,
            stage,
        })
    }

    /// Looks up a session by its cookie: `None` when there is none, or it has expired (idle
    /// or absolute), or its user is disabled. Activity restarts the idle timer.
    pub async fn session(&self, cookie: &str, client: &Client) -> Result<Option<Session>> {
        if cookie.len() > 100 {
            return Ok(None);
        }
        let hash = token_hash(cookie);
        let now = self.now().as_millis();
        let Some(record) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        let idle = self.session_policy.idle.as_millis() as i64;
        if record.expires_at <= now || record.last_seen + idle <= now {
            let mut tx = self.store.begin().await?;
            tx.delete_session(&hash).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let Some(user) = self.store.user_by_id(record.user_id).await? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        let Some(stage) = SessionStage::of(&record.stage) else {
            return Ok(None);
        };
        if now - record.last_seen >= TOUCH_EVERY_MS.min(idle / 4) {
            self.store.touch_session(&hash, now).await?;
        }
        let actor = (stage == SessionStage::Active).then(|| {
            user_actor(
                &user,
                parse_roles(&user.roles),
                (record.last_seen + idle)
                    .min(record.expires_at)
                    .max(now + 1),
                client,
            )
        });
        Ok(Some(Session {
            stage,
            csrf_token: record.csrf_token,
            user: UserSummary::of(&user, self.now().as_millis()),
            actor,
            id: hash[..16].to_string(),
        }))
    }

    /// Step two: a code from the authenticator or a recovery code. On success the session is
    /// replaced by a new, signed-in one (a new id: no fixation).
    pub async fn verify_code(&self, cookie: &str, code: &str, client: &Client) -> Step<NewSession> {
        let hash = token_hash(cookie);
        let now = self.now().as_millis();
        let mut tx = self.store.begin().await?;
        let Some(record) = tx.session(&hash).await? else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        let idle = self.session_policy.idle.as_millis() as i64;
        if record.stage != STAGE_CODE || record.expires_at <= now || record.last_seen + idle <= now
        {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        }
        let Some(mut user) = tx.user_by_id(record.user_id).await? else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        let account_key = ["account:", &user.username].concat();
        let code_key = ["code:", &user.username].concat();
        let address_key = address_key(client);
        let signin_key = ["signin:", &hash[..32]].concat();
        let actor = user_actor(&user, parse_roles(&user.roles), now, client);
        // A lockout of the address, the account's password or its second factor refuses the
        // code before it is looked at.
        for key in [&address_key, &account_key, &code_key] {
            if let Some(seconds) = Self::locked(&mut tx, key, now).await? {
                tx.rollback().await?;
                self.audit(
                    &actor,
                    vec![
                        AuditEntry::new(AuditAction::SignIn, Outcome::Denied)
                            .detail("second factor refused: locked out"),
                    ],
                )
                .await?;
                return Err(SignInError::Throttled(seconds).into());
            }
        }
        // Each code is counted before it is looked at, one atomic statement per key: codes sent
        // at once are counted one by one, and none is tried once a limit is reached.
        let code_tries = tx
            .count_failure(&code_key, now, now - FAILURE_MEMORY_MS)
            .await?;
        let signin_tries = tx
            .count_failure(&signin_key, now, now - FAILURE_MEMORY_MS)
            .await?;
        // Counting waited for any attempt sent at the same time to finish: a lockout it started
        // is seen now.
        let locked_meanwhile = Self::locked(&mut tx, &code_key, now).await?;
        if locked_meanwhile.is_some() || signin_tries > CODE_TRIES_PER_SIGNIN {
            let lock = locked_meanwhile.map(|seconds| seconds * 1000);
            tx.delete_session(&hash).await?;
            tx.delete_throttle(&signin_key).await?;
            self.audit_in(
                &mut tx,
                &actor,
                vec![
                    AuditEntry::new(AuditAction::SignIn, Outcome::Denied)
                        .detail("second factor refused: too many attempts"),
                ],
            )
            .await?;
            tx.commit().await?;
            return Err(match lock {
                Some(l) => SignInError::Throttled((l + 999) / 1000),
                None => SignInError::NoSession,
            }
            .into());
        }
        let cleaned: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let accepted = if cleaned.len() == 6 && cleaned.bytes().all(|b| b.is_ascii_digit()) {
            let secret = match &user.mfa_secret {
                Some(sealed) => Some(self.keys.open_secret("totp", user.user_id, sealed)?),
                None => None,
            };
            let step = secret.and_then(|s| {
                let secret = TotpSecret::from_bytes(&s).ok()?;
                totp::verify_code(
                    &secret,
                    &cleaned,
                    (now / 1000) as u64,
                    user.mfa_last_step.map(|s| s as u64),
                )
            });
            match step {
                // Claimed atomically: of two uses of one code at once, one wins.
                Some(step) if tx.claim_totp_step(user.user_id, step as i64).await? => {
                    user.mfa_last_step = Some(step as i64);
                    Some("authenticator code")
                }
                _ => None,
            }
        } else if tx
            .use_recovery_code(user.user_id, &totp::recovery_code_hash(&cleaned), now)
            .await?
        {
            Some("recovery code")
        } else {
            None
        };
        let Some(how) = accepted else {
            let code_lock = lock_ms(code_tries, ACCOUNT_FAILURES);
            if let Some(l) = code_lock {
                tx.lock_throttle(&code_key, now + l).await?;
            }
            let address_lock = Self::fail(&mut tx, &address_key, ADDRESS_FAILURES, now).await?;
            let tries = (signin_tries >= CODE_TRIES_PER_SIGNIN).then_some(());
            let mut entries = vec![
                AuditEntry::new(AuditAction::SignIn, Outcome::Denied).detail("bad second factor"),
            ];
            if let Some(l) = code_lock {
                user.locked_until = now + l;
                tx.save_user(&user).await?;
                entries.push(
                    AuditEntry::new(AuditAction::Lockout, Outcome::Success)
                        .detail(format!("account's second factor locked for {} s", l / 1000)),
                );
            }
            if let Some(l) = address_lock {
                entries.push(
                    AuditEntry::new(AuditAction::Lockout, Outcome::Success)
                        .detail(format!("address locked for {} s", l / 1000)),
                );
            }
            let ended = tries.is_some() || code_lock.is_some();
            if ended {
                // This sign-in is over: the password must be given again.
                tx.delete_session(&hash).await?;
                tx.delete_throttle(&signin_key).await?;
            }
            self.audit_in(&mut tx, &actor, entries).await?;
            tx.commit().await?;
            return Err(match code_lock.or(address_lock) {
                Some(l) => SignInError::Throttled((l + 999) / 1000),
                None if ended => SignInError::NoSession,
                None => SignInError::BadCode,
            }
            .into());
        };
        tx.delete_throttle(&code_key).await?;
        tx.delete_throttle(&signin_key).await?;
        tx.set_throttle(&account_key, 0, now, 0).await?;
        user.locked_until = 0;
        tx.save_user(&user).await?;
        tx.delete_session(&hash).await?;
        let session = self
            .new_session(&mut tx, &user, SessionStage::Active, client, now)
            .await?;
        self.audit_in(
            &mut tx,
            &actor,
            vec![
                AuditEntry::new(AuditAction::SignIn, Outcome::Success)
                    .detail(format!("signed in with {how}")),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// Starts setting up an authenticator for a session in the enrolment stage (or a signed-in
    /// user adding one): a new secret, kept sealed with the session until confirmed.
    pub async fn begin_enrolment(&self, cookie: &str) -> Step<Enrolment> {
        let hash = token_hash(cookie);
        let mut tx = self.store.begin().await?;
        let Some(mut record) = tx.session(&hash).await? else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        if record.stage != STAGE_ENROL && record.stage != STAGE_ACTIVE {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        }
        let Some(user) = tx.user_by_id(record.user_id).await? else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        let secret = TotpSecret::generate();
        record.pending_secret = Some(self.keys.seal_secret(
            "totp-pending",
            hash_row(&hash),
            secret.as_bytes(),
        ));
        tx.update_session(&record).await?;
        tx.commit().await?;
        let uri = totp::otpauth_uri(&secret, "ironchart", &user.username);
        let qr_svg = totp::qr_svg(&uri).map_err(|e| RecordsError::Config(e.to_string()))?;
        Ok(Enrolment {
            secret_base32: secret.to_base32(),
            otpauth_uri: uri,
            qr_svg,
        })
    }

    /// Confirms enrolment with a first code: the secret is the user's from now on, ten new
    /// recovery codes are returned (shown once), and the session becomes a new signed-in one.
    pub async fn confirm_enrolment(
        &self,
        cookie: &str,
        code: &str,
        client: &Client,
    ) -> Step<(NewSession, Vec<String>)> {
        let hash = token_hash(cookie);
        let now = self.now().as_millis();
        let mut tx = self.store.begin().await?;
        let Some(record) = tx.session(&hash).await? else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        let (Some(pending), Some(mut user)) = (
            record.pending_secret.clone(),
            tx.user_by_id(record.user_id).await?,
        ) else {
            tx.rollback().await?;
            return Err(SignInError::NoSession.into());
        };
        let secret_bytes = self
            .keys
            .open_secret("totp-pending", hash_row(&hash), &pending)?;
        let secret = TotpSecret::from_bytes(&secret_bytes)
            .map_err(|e| RecordsError::Integrity(e.to_string()))?;
        let cleaned: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let actor = user_actor(&user, parse_roles(&user.roles), now, client);
        let Some(step) = totp::verify_code(&secret, &cleaned, (now / 1000) as u64, None) else {
            tx.rollback().await?;
            self.audit(
                &actor,
                vec![
                    AuditEntry::new(AuditAction::MfaEnrol, Outcome::Failure)
                        .detail("the confirmation code was not right"),
                ],
            )
            .await?;
            return Err(SignInError::BadCode.into());
        };
        user.mfa_secret = Some(
            self.keys
                .seal_secret("totp", user.user_id, secret.as_bytes()),
        );
        user.mfa_last_step = Some(step as i64);
        user.updated_at = now;
        tx.save_user(&user).await?;
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_code_hash(c)).collect();
        tx.set_recovery_codes(user.user_id, &hashes).await?;
        // A new second factor is a privilege change: every other session ends too.
        tx.delete_sessions_of(user.user_id).await?;
        let session = self
            .new_session(&mut tx, &user, SessionStage::Active, client, now)
            .await?;
        self.audit_in(
            &mut tx,
            &actor,
            vec![
                AuditEntry::new(AuditAction::MfaEnrol, Outcome::Success)
                    .detail("authenticator set up; 10 recovery codes issued"),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok((session, codes))
    }

    /// Signs out of one session.
    pub async fn sign_out(&self, cookie: &str, client: &Client) -> Result<()> {
        let hash = token_hash(cookie);
        let Some(session) = self.session(cookie, client).await? else {
            return Ok(());
        };
        let mut tx = self.store.begin().await?;
        tx.delete_session(&hash).await?;
        let mut actor = attempt_actor(&session.user.username, client);
        actor.roles = session.user.roles.clone();
        self.audit_in(
            &mut tx,
            &actor,
            vec![AuditEntry::new(AuditAction::SignOut, Outcome::Success)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every session of the signed-in user (this one included) and revokes their tokens.
    pub async fn sign_out_everywhere(&self, actor: &Actor) -> Result<u64> {
        let Some(user_id) = actor.user_id() else {
            return Ok(0);
        };
        let mut tx = self.store.begin().await?;
        let n = tx.delete_sessions_of(user_id).await?;
        tx.revoke_tokens_of(user_id).await?;
        self.audit_in(
            &mut tx,
            actor,
            vec![
                AuditEntry::new(AuditAction::SignOut, Outcome::Success)
                    .detail(format!("signed out everywhere ({n} sessions)")),
            ],
        )
        .await?;
        tx.commit().await?;
        self.forget_cached_tokens();
        Ok(n)
    }

    /// The signed-in user's sessions.
    pub async fn my_sessions(&self, actor: &Actor, current: &str) -> Result<Vec<SessionListing>> {
        let Some(user_id) = actor.user_id() else {
            return Ok(Vec::new());
        };
        let now = self.now().as_millis();
        let idle = self.session_policy.idle.as_millis() as i64;
        Ok(self
            .store
            .sessions_of(user_id)
            .await?
            .into_iter()
            .filter(|s| s.expires_at > now && s.last_seen + idle > now)
            .map(|s| SessionListing {
                id: s.session_hash[..16].to_string(),
                created_at: s.created_at,
                last_seen: s.last_seen,
                expires_at: s.expires_at,
                source: s.source,
                user_agent: s.user_agent,
                current: s.session_hash[..16] == *current,
            })
            .collect())
    }

    /// Ends one of the signed-in user's own sessions, by its public id.
    pub async fn end_my_session(&self, actor: &Actor, id: &str) -> Result<bool> {
        let Some(user_id) = actor.user_id() else {
            return Ok(false);
        };
        let Some(target) = self
            .store
            .sessions_of(user_id)
            .await?
            .into_iter()
            .find(|s| s.session_hash.starts_with(id) && id.len() == 16)
        else {
            return Ok(false);
        };
        let mut tx = self.store.begin().await?;
        tx.delete_session(&target.session_hash).await?;
        self.audit_in(
            &mut tx,
            actor,
            vec![AuditEntry::new(AuditAction::SessionRevoke, Outcome::Success).detail(id)],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Break-the-glass: a clinician states a reason and gets access to one patient's restricted
    /// records for `minutes`. Audited, and raised as an alert for the auditor.
    pub async fn break_glass(
        &self,
        actor: &Actor,
        patient: &str,
        reason: &str,
        minutes: u32,
    ) -> Result<i64> {
        let Some(user_id) = actor.user_id() else {
            return Err(RecordsError::Forbidden(
                "break-the-glass is for signed-in clinicians".into(),
            ));
        };
        crate::policy::live(actor, self.now())?;
        if !actor.roles.iter().any(|r| r.can_break_glass()) {
            self.audit(
                actor,
                vec![
                    AuditEntry::new(AuditAction::BreakGlass, Outcome::Denied)
                        .patients([patient.to_string()]),
                ],
            )
            .await?;
            return Err(RecordsError::Forbidden(
                "only clinicians can break the glass".into(),
            ));
        }
        let reason = reason.trim();
        if reason.chars().count() < 10 {
            return Err(RecordsError::bad(
                "give a reason (at least 10 characters) for breaking the glass",
                None,
            ));
        }
        if !ironchart_fhir::is_valid_id(patient)
            || self
                .store
                .read("Patient", patient)
                .await?
                .is_none_or(|v| v.deleted)
        {
            return Err(RecordsError::NotFound("Patient".into(), patient.into()));
        }
        let minutes = minutes.clamp(5, 240);
        let now = self.now().as_millis();
        let until = now + i64::from(minutes) * 60_000;
        let mut tx = self.store.begin().await?;
        tx.insert_grant(&GrantRecord {
            user_id,
            patient: patient.to_string(),
            reason: reason.chars().take(500).collect(),
            granted_at: now,
            expires_at: until,
        })
        .await?;
        // The reason is the clinician's words (it may mention the patient's condition), so it
        // stays in the grant table; the audit entry says that there is one and for how long.
        self.audit_in(
            &mut tx,
            actor,
            vec![
                AuditEntry::new(AuditAction::BreakGlass, Outcome::Success)
                    .res_type("Patient")
                    .patients([patient.to_string()])
                    .detail(format!(
                        "alert: restricted records opened for {minutes} minutes"
                    )),
            ],
        )
        .await?;
        tx.commit().await?;
        if let Ok(mut cache) = self.grants.lock() {
            cache.remove(&user_id.to_string());
        }
        Ok(until)
    }

    /// Whether the database has no users yet (a fresh install waiting for its first admin).
    pub async fn needs_setup(&self) -> Result<bool> {
        Ok(self.store.users().await?.is_empty())
    }

    /// A one-time setup token for creating the first admin (valid for `ttl`), replacing any
    /// earlier one. Only while there are no users.
    pub async fn issue_setup_token(&self, ttl: Duration) -> Result<Option<String>> {
        if !self.needs_setup().await? {
            return Ok(None);
        }
        let token = new_secret("setup_");
        let expires = self.now().as_millis() + ttl.as_millis() as i64;
        self.store
            .set_setting("setup.token", &format!("{} {expires}", token_hash(&token)))
            .await?;
        Ok(Some(token))
    }

    /// Whether a setup token is the live one.
    pub async fn setup_token_valid(&self, token: &str) -> Result<bool> {
        Ok(self.live_setup_token(token).await?.is_some())
    }

    /// The stored form of the setup token when `token` is the live one.
    async fn live_setup_token(&self, token: &str) -> Result<Option<String>> {
        let Some(stored) = self.store.setting("setup.token").await? else {
            return Ok(None);
        };
        let mut parts = stored.split(' ');
        let (Some(hash), Some(expires)) = (parts.next(), parts.next()) else {
            return Ok(None);
        };
        let live = expires
            .parse::<i64>()
            .is_ok_and(|e| e > self.now().as_millis());
        let valid = live
            && ironchart_security::constant_time_eq(token_hash(token).as_bytes(), hash.as_bytes())
            && self.needs_setup().await?;
        Ok(valid.then_some(stored))
    }

    /// Creates the first admin with the setup token (which is then spent). The admin sets up
    /// MFA at their first sign-in.
    pub async fn complete_setup(
        &self,
        token: &str,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<UserSummary> {
        let Some(stored) = self.live_setup_token(token).await? else {
            return Err(RecordsError::Forbidden(
                "the setup link is not valid (already used or expired)".into(),
            ));
        };
        let mut setup = Actor::local_operator();
        setup.source = client.address.clone();
        // The token is spent in the transaction that creates the admin: of concurrent uses,
        // one creates an admin and the others are refused.
        let user = self
            .create_user(
                &setup,
                username,
                &[Role::Admin],
                None,
                password,
                Some(("setup.token", &stored, "spent 0")),
            )
            .await?;
        self.audit(
            &setup,
            vec![
                AuditEntry::new(AuditAction::Setup, Outcome::Success)
                    .detail(format!("first administrator user:{}", user.username)),
            ],
        )
        .await?;
        Ok(user)
    }
}

/// The lockout (ms) that `failures` against a `limit` start: none below it, then a first
/// lockout doubling with each further failure, up to the maximum.
fn lock_ms(failures: i64, limit: i64) -> Option<i64> {
    if failures < limit {
        return None;
    }
    let doublings = (failures - limit).min(10) as u32;
    Some((FIRST_LOCK_MS << doublings).min(MAX_LOCK_MS))
}

/// The throttle key of a client address.
fn address_key(client: &Client) -> String {
    ["address:", client.address.as_deref().unwrap_or("-")].concat()
}

/// A row number for binding a pending secret to its session (the first 8 bytes of the hash).
pub(crate) fn hash_row(hash: &str) -> i64 {
    i64::from_str_radix(&hash[..15], 16).unwrap_or(0)
}
