//! User accounts: created and changed by an administrator (the command line or the admin
//! pages), each change audited in the same transaction. A change of privilege (roles, disabling,
//! a password or MFA reset) ends the user's sessions and revokes their tokens.

use ironchart_security::password::{check_new_password, hash_password};
use ironchart_security::scope::Role;
use ironchart_store::UserRecord;

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::tokens::parse_roles;
use crate::{Records, RecordsError, Result};

/// A user as the admin pages and `ironchart admin user list` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub username: String,
    pub roles: Vec<Role>,
    pub patient: Option<String>,
    pub disabled: bool,
    pub mfa_enrolled: bool,
    pub mfa_required: bool,
    /// Locked out (too many failed sign-ins) until this time (ms), if in the future.
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

impl UserSummary {
    pub(crate) fn of(u: &UserRecord, now: i64) -> UserSummary {
        UserSummary {
            username: u.username.clone(),
            roles: parse_roles(&u.roles),
            patient: u.patient.clone(),
            disabled: u.disabled,
            mfa_enrolled: u.mfa_secret.is_some(),
            mfa_required: u.mfa_required,
            locked_until: (u.locked_until > now).then_some(u.locked_until),
            created_at: u.created_at,
        }
    }
}

/// `[a-z0-9._-]{2,64}`, starting with a letter or digit (user names are stored lower-case).
pub(crate) fn valid_username(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The settings key of a user's preference.
fn preference_key(user_id: i64, name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 40
        || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    {
        return Err(RecordsError::bad("unknown preference", None));
    }
    Ok(format!("pref.{user_id}.{name}"))
}

/// Whether MFA is required of a user with these roles (always for admin and auditor; for the
/// rest when the operator says so).
pub(crate) fn mfa_required(roles: &[Role], for_everyone: bool) -> bool {
    for_everyone || roles.iter().any(|r| r.requires_mfa())
}

impl Records {
    fn admin_only(&self, by: &Actor) -> Result<()> {
        if by.is_system() || by.has_role(Role::Admin) {
            Ok(())
        } else {
            Err(RecordsError::Forbidden(
                "managing users is for administrators".into(),
            ))
        }
    }

    /// One of the signed-in user's own preferences (`units`: `metric` or `us`), if set.
    pub async fn preference(&self, actor: &Actor, name: &str) -> Result<Option<String>> {
        let Some(id) = actor.user_id() else {
            return Ok(None);
        };
        Ok(self.store.setting(&preference_key(id, name)?).await?)
    }

    /// Sets one of the signed-in user's own preferences (a short value; not health data).
    pub async fn set_preference(&self, actor: &Actor, name: &str, value: &str) -> Result<()> {
        let Some(id) = actor.user_id() else {
            return Err(RecordsError::Forbidden(
                "only a signed-in user has preferences".into(),
            ));
        };
        if value.len() > 40 || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(RecordsError::bad("a preference is a short word", None));
        }
        self.store
            .set_setting(&preference_key(id, name)?, value)
            .await?;
        Ok(())
    }

    /// Whether MFA is required of every user (a setting), not only admins and auditors.
    pub async fn mfa_for_everyone(&self) -> Result<bool> {
        Ok(self.store.setting("mfa.everyone").await?.as_deref() == Some("1"))
    }

    /// Requires MFA of every user (or only of admins and auditors again); audited when it
    /// changes.
    pub async fn set_mfa_for_everyone(&self, by: &Actor, on: bool) -> Result<()> {
        self.admin_only(by)?;
        if self.mfa_for_everyone().await? == on {
            return Ok(());
        }
        self.store
            .set_setting("mfa.everyone", if on { "1" } else { "0" })
            .await?;
        self.audit(
            by,
            vec![
                AuditEntry::new(AuditAction::Config, Outcome::Success).detail(format!(
                    "two-step sign-in required of {}",
                    if on {
                        "every user"
                    } else {
                        "admins and auditors"
                    }
                )),
            ],
        )
        .await
    }

    /// Creates a user. A `patient` user must be linked to an existing Patient and have no
    /// other role.
    pub async fn add_user(
        &self,
        by: &Actor,
        username: &str,
        roles: &[Role],
        patient: Option<&str>,
        password: &str,
    ) -> Result<UserSummary> {
        self.admin_only(by)?;
        self.create_user(by, username, roles, patient, password, None)
            .await
    }

    /// Creates a user; with `spend`, only if the setting `spend.0` still holds `spend.1`, which
    /// it replaces with `spend.2` in the same transaction (the one-time setup link).
    pub(crate) async fn create_user(
        &self,
        by: &Actor,
        username: &str,
        roles: &[Role],
        patient: Option<&str>,
        password: &str,
        spend: Option<(&str, &str, &str)>,
    ) -> Result<UserSummary> {
        let username = username.trim().to_lowercase();
        if !valid_username(&username) {
            return Err(RecordsError::bad(
                "a user name has 2 to 64 characters: letters, digits, '.', '_' or '-'",
                None,
            ));
        }
        check_roles(roles, patient)?;
        if let Some(p) = patient {
            let exists = ironchart_fhir::is_valid_id(p)
                && self
                    .store
                    .read("Patient", p)
                    .await?
                    .is_some_and(|v| !v.deleted);
            if !exists {
                return Err(RecordsError::bad(format!("there is no Patient/{p}"), None));
            }
        }
        check_new_password(password, &username)
            .map_err(|e| RecordsError::bad(e.to_string(), None))?;
        let everyone = self.mfa_for_everyone().await?;
        let now = self.now().as_millis();
        let mut record = UserRecord {
            user_id: 0,
            username: username.clone(),
            roles: roles_text(roles),
            patient: patient.map(str::to_string),
            password_hash: Some(hash_password(password)),
            disabled: false,
            mfa_secret: None,
            mfa_last_step: None,
            mfa_required: mfa_required(roles, everyone),
            failed_logins: 0,
            locked_until: 0,
            created_at: now,
            updated_at: now,
        };
        let record_ref = &mut record;
        self.retrying(|mut tx| {
            let mut record = record_ref.clone();
            async move {
                if let Some((key, expected, value)) = spend
                    && !tx.swap_setting(key, expected, value).await?
                {
                    tx.rollback().await?;
                    return Err(RecordsError::Forbidden(
                        "the setup link is not valid (already used or expired)".into(),
                    ));
                }
                if tx.user_by_name(&record.username).await?.is_some() {
                    tx.rollback().await?;
                    return Err(RecordsError::Conflict(format!(
                        "there is already a user '{}'",
                        record.username
                    )));
                }
                record.user_id = tx.save_user(&record).await?;
                let entry = AuditEntry::new(AuditAction::UserAdd, Outcome::Success)
                    .detail(format!("user:{} roles={}", record.username, record.roles))
                    .patients(record.patient.clone());
                self.audit_in(&mut tx, by, vec![entry]).await?;
                tx.commit().await?;
                Ok(record)
            }
        })
        .await
        .map(|r| UserSummary::of(&r, now))
    }

    /// Every user, by name.
    pub async fn list_users(&self, by: &Actor) -> Result<Vec<UserSummary>> {
        self.admin_only(by)?;
        let now = self.now().as_millis();
        Ok(self
            .store
            .users()
            .await?
            .iter()
            .map(|u| UserSummary::of(u, now))
            .collect())
    }

    /// Changes a user under one audited transaction; `end_access` also ends their sessions and
    /// revokes their tokens.
    async fn change_user(
        &self,
        by: &Actor,
        username: &str,
        action: AuditAction,
        end_access: bool,
        change: &(dyn Fn(&mut UserRecord) -> Result<String> + Sync),
    ) -> Result<UserSummary> {
        self.admin_only(by)?;
        let username = username.trim().to_lowercase();
        let result = self
            .retrying(|mut tx| {
                let username = username.clone();
                async move {
                    let Some(mut user) = tx.user_by_name(&username).await? else {
                        tx.rollback().await?;
                        return Err(RecordsError::bad(
                            format!("there is no user '{username}'"),
                            None,
                        ));
                    };
                    let detail = change(&mut user)?;
                    user.updated_at = self.now().as_millis();
                    tx.save_user(&user).await?;
                    // Enabling a user or setting a new password lifts their lockouts; a new second
                    // factor lifts the lockout of the old one.
                    let lifted: &[&str] = match action {
                        AuditAction::UserEnable | AuditAction::PasswordChange => {
                            &["account:", "code:"]
                        }
                        AuditAction::MfaReset => &["code:"],
                        _ => &[],
                    };
                    for prefix in lifted {
                        tx.delete_throttle(&[prefix, username.as_str()].concat())
                            .await?;
                    }
                    if end_access {
                        tx.delete_sessions_of(user.user_id).await?;
                        tx.revoke_tokens_of(user.user_id).await?;
                    }
                    let entry = AuditEntry::new(action, Outcome::Success)
                        .detail(format!("user:{username} {detail}"));
                    self.audit_in(&mut tx, by, vec![entry]).await?;
                    tx.commit().await?;
                    Ok(user)
                }
            })
            .await;
        if end_access {
            self.forget_cached_tokens();
        }
        result.map(|u| UserSummary::of(&u, self.now().as_millis()))
    }

    /// Disables (or enables again) a user. Disabling ends their sessions and tokens.
    pub async fn set_user_disabled(
        &self,
        by: &Actor,
        username: &str,
        disabled: bool,
    ) -> Result<UserSummary> {
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        self.change_user(by, username, action, disabled, &|u| {
            u.disabled = disabled;
            if !disabled {
                u.failed_logins = 0;
                u.locked_until = 0;
            }
            Ok(String::new())
        })
        .await
    }

    /// Replaces a user's roles (a privilege change: their sessions and tokens end).
    pub async fn set_roles(
        &self,
        by: &Actor,
        username: &str,
        roles: &[Role],
    ) -> Result<UserSummary> {
        let everyone = self.mfa_for_everyone().await?;
        self.change_user(by, username, AuditAction::UserRoles, true, &|u| {
            check_roles(roles, u.patient.as_deref())?;
            let old = u.roles.clone();
            u.roles = roles_text(roles);
            u.mfa_required = mfa_required(roles, everyone);
            Ok(format!("roles {old} -> {}", u.roles))
        })
        .await
    }

    /// Sets a new password (the old sessions and tokens end; a lockout is lifted).
    pub async fn reset_password(
        &self,
        by: &Actor,
        username: &str,
        password: &str,
    ) -> Result<UserSummary> {
        check_new_password(password, &username.trim().to_lowercase())
            .map_err(|e| RecordsError::bad(e.to_string(), None))?;
        let hash = hash_password(password);
        self.change_user(by, username, AuditAction::PasswordChange, true, &|u| {
            u.password_hash = Some(hash.clone());
            u.failed_logins = 0;
            u.locked_until = 0;
            Ok("password reset by an administrator".into())
        })
        .await
    }

    /// Removes a user's second factor (they enrol again at their next sign-in).
    pub async fn reset_mfa(&self, by: &Actor, username: &str) -> Result<UserSummary> {
        let summary = self
            .change_user(by, username, AuditAction::MfaReset, true, &|u| {
                u.mfa_secret = None;
                u.mfa_last_step = None;
                Ok("second factor removed".into())
            })
            .await?;
        if let Some(user) = self.store.user_by_name(&summary.username).await? {
            let mut tx = self.store.begin().await?;
            tx.set_recovery_codes(user.user_id, &[]).await?;
            tx.commit().await?;
        }
        Ok(summary)
    }
}

/// Roles must be given; `patient` goes alone and with a linked Patient.
fn check_roles(roles: &[Role], patient: Option<&str>) -> Result<()> {
    if roles.is_empty() {
        return Err(RecordsError::bad("give the user at least one role", None));
    }
    let is_patient = roles.contains(&Role::Patient);
    if is_patient && roles.len() > 1 {
        return Err(RecordsError::bad(
            "the patient role cannot be combined with other roles",
            None,
        ));
    }
    if is_patient && patient.is_none() {
        return Err(RecordsError::bad(
            "a patient user must be linked to their Patient (--patient ID)",
            None,
        ));
    }
    if !is_patient && patient.is_some() {
        return Err(RecordsError::bad(
            "only a patient user is linked to a Patient",
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(valid_username("dr.house"));
        assert!(valid_username("n1"));
        assert!(!valid_username("a"));
        assert!(!valid_username("Dr"));
        assert!(!valid_username("-x"));
        assert!(!valid_username("a b"));
    }

    #[test]
    fn role_rules() {
        assert!(check_roles(&[], None).is_err());
        assert!(check_roles(&[Role::Patient], None).is_err());
        assert!(check_roles(&[Role::Patient], Some("p1")).is_ok());
        assert!(check_roles(&[Role::Patient, Role::Nurse], Some("p1")).is_err());
        assert!(check_roles(&[Role::Nurse], Some("p1")).is_err());
        assert!(check_roles(&[Role::Nurse, Role::Billing], None).is_ok());
    }
}
