//! The clinical workflow's rules beyond plain FHIR writes.
//!
//! - **A signed encounter is locked.** Signing (by a clinician, who gives their password again)
//!   finishes the Encounter, makes its notes final and records the signature. From then on every
//!   write that touches the encounter is refused, whoever sends it and however (pages, API,
//!   Bundles, imports): the Encounter itself, and anything whose current or new version refers
//!   to it through `encounter` (its note, vitals, diagnoses, orders, prescriptions). The one
//!   thing still allowed is a new addendum: a final DocumentReference that `appends` to a note.
//! - **A result is reviewed once**: who acknowledged it and when is kept.
//! - **An allergy alert overridden** is written with the order, in one transaction, with the
//!   reason in the audit log.

use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::{Id, ResourceType};
use ironchart_security::scope::Interaction;
use ironchart_store::{ReviewRecord, SignatureRecord};
use serde_json::{Value, json};

use crate::actor::Actor;
use crate::audit::{AuditAction, AuditEntry, Outcome};
use crate::clock::Instant;
use crate::lock::is_addendum;
use crate::policy;
use crate::resource::{Resource, WriteOutcome};
use crate::service::new_id;
use crate::write::{prepare, write_version};
use crate::{Records, RecordsError, Result};

/// Who signed an encounter, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub encounter: String,
    pub signed_at: Instant,
    pub signed_by: String,
}

/// Who acknowledged a result, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub report: String,
    pub reviewed_at: Instant,
    pub reviewed_by: String,
}

/// What became of a request to sign.
#[derive(Debug)]
pub enum SignOutcome {
    Signed(Signature),
    /// The password given was not the user's (counted like a failed sign-in).
    WrongPassword,
}

impl Records {
    /// The signature of an encounter the caller has read (holding the [`Resource`] means they
    /// were allowed to).
    pub async fn signature(&self, encounter: &Resource) -> Result<Option<Signature>> {
        if encounter.resource_type != ResourceType::ENCOUNTER {
            return Ok(None);
        }
        Ok(self
            .store
            .signature(encounter.id.as_str())
            .await?
            .map(|s| Signature {
                encounter: s.enc_id,
                signed_at: Instant::from_millis(s.signed_at),
                signed_by: s.signed_by,
            }))
    }

    /// Signs an encounter: the clinician gives their password again; the Encounter is
    /// finished, its notes become final with the signer as authenticator, and from then on it
    /// is locked (see the module's notes). Audited as `sign`.
    pub async fn sign_encounter(
        &self,
        actor: &Actor,
        encounter: &Id,
        password: &str,
    ) -> Result<SignOutcome> {
        let result = self.sign_inner(actor, encounter, password).await;
        self.audit_refusal(
            actor,
            AuditAction::Sign,
            "Encounter",
            Some(encounter.as_str()),
            result,
        )
        .await
    }

    async fn sign_inner(
        &self,
        actor: &Actor,
        encounter: &Id,
        password: &str,
    ) -> Result<SignOutcome> {
        if !actor.roles().iter().any(|r| r.is_clinical()) {
            return Err(RecordsError::Forbidden(
                "only a physician or nurse may sign an encounter".into(),
            ));
        }
        let now = self.now();
        for rt in ["Encounter", "DocumentReference"] {
            policy::check(actor, now, rt, Interaction::Update)?;
        }
        // The caller must be able to read it (a 404 or a restricted record otherwise).
        self.read(actor, ResourceType::ENCOUNTER, encounter).await?;
        if !self.confirm_password(actor, password).await? {
            return Ok(SignOutcome::WrongPassword);
        }
        let username = actor.username().unwrap_or("unknown").to_string();
        let ctx = &self.write_ctx(actor).await?;
        let keys = &self.keys;
        let store = &self.store;
        let notes_query = SearchQuery::parse(
            "DocumentReference",
            &[(
                "encounter".to_string(),
                ["Encounter/", encounter.as_str()].concat(),
            )],
        )
        .map_err(|e| RecordsError::bad(e.message, None))?;
        let signed = self
            .retrying(|mut tx| {
                let username = username.clone();
                let notes_query = &notes_query;
                async move {
                    if let Some(enc) = tx.signed_among(&[encounter.as_str()]).await? {
                        return Err(RecordsError::Locked(enc));
                    }
                    let when = ironchart_fhir::datetime::format_instant(ctx.now.as_millis());
                    let mut entries = Vec::new();
                    let notes = tx.search_ids(notes_query, 1000, &ctx.vis).await?;
                    for (note_id, _) in notes {
                        let Some(stored) = tx.read("DocumentReference", &note_id).await? else {
                            continue;
                        };
                        let (Some(body), false) = (&stored.body, stored.deleted) else {
                            continue;
                        };
                        let plain = keys
                            .open(store, "DocumentReference", &note_id, stored.version, body)
                            .await?;
                        let mut note: Value = serde_json::from_slice(&plain)
                            .map_err(|e| RecordsError::Integrity(e.to_string()))?;
                        if is_addendum("DocumentReference", &note) {
                            continue;
                        }
                        if let Some(o) = note.as_object_mut() {
                            o.insert("docStatus".into(), json!("final"));
                            o.insert("authenticator".into(), json!({ "display": username }));
                        }
                        let Some(note_id) = Id::parse(&note_id) else {
                            continue;
                        };
                        let (_, entry) = write_version(
                            &mut tx,
                            ctx,
                            ResourceType::DOCUMENT_REFERENCE,
                            &note_id,
                            note,
                            None,
                            "PUT",
                        )
                        .await?;
                        entries.push(entry);
                    }
                    let Some(stored) = tx.read("Encounter", encounter.as_str()).await? else {
                        return Err(RecordsError::NotFound(
                            "Encounter".into(),
                            encounter.to_string(),
                        ));
                    };
                    let Some(body) = &stored.body else {
                        return Err(RecordsError::Gone(
                            "Encounter".into(),
                            encounter.to_string(),
                        ));
                    };
                    let plain = keys
                        .open(store, "Encounter", encounter.as_str(), stored.version, body)
                        .await?;
                    let mut enc: Value = serde_json::from_slice(&plain)
                        .map_err(|e| RecordsError::Integrity(e.to_string()))?;
                    if let Some(o) = enc.as_object_mut() {
                        o.insert("status".into(), json!("finished"));
                        let period = o.entry("period").or_insert_with(|| json!({}));
                        if let Some(p) = period.as_object_mut() {
                            p.entry("start").or_insert_with(|| json!(when.clone()));
                            p.entry("end").or_insert_with(|| json!(when.clone()));
                        }
                    }
                    let enc = prepare("Encounter", enc, Some(encounter.as_str()), usize::MAX)?;
                    let (outcome, entry) = write_version(
                        &mut tx,
                        ctx,
                        ResourceType::ENCOUNTER,
                        encounter,
                        enc,
                        None,
                        "PUT",
                    )
                    .await?;
                    entries.push(entry);
                    let record = SignatureRecord {
                        enc_id: encounter.to_string(),
                        signed_at: ctx.now.as_millis(),
                        user_id: actor.user_id(),
                        signed_by: username.clone(),
                    };
                    if !tx.insert_signature(&record).await? {
                        return Err(RecordsError::Locked(encounter.to_string()));
                    }
                    let patient = stored.patient.clone();
                    entries.push(
                        AuditEntry::new(AuditAction::Sign, Outcome::Success)
                            .resource(
                                "Encounter",
                                encounter.as_str(),
                                Some(outcome.resource.version),
                            )
                            .patients(patient),
                    );
                    self.audit_in(&mut tx, actor, entries).await?;
                    tx.commit().await?;
                    Ok(Signature {
                        encounter: record.enc_id,
                        signed_at: Instant::from_millis(record.signed_at),
                        signed_by: record.signed_by,
                    })
                }
            })
            .await?;
        Ok(SignOutcome::Signed(signed))
    }

    /// Creates a resource the user chose to write despite a safety alert (a prescription for a
    /// drug the patient is allergic to): the write and an `allergy-override` audit entry
    /// carrying `reason` commit together.
    pub async fn create_overriding_alert(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        value: Value,
        alert: &str,
        reason: &str,
    ) -> Result<WriteOutcome> {
        let result = self
            .create_overriding_inner(actor, resource_type, value, alert, reason)
            .await;
        self.audit_refusal(actor, AuditAction::Create, &resource_type, None, result)
            .await
    }

    async fn create_overriding_inner(
        &self,
        actor: &Actor,
        resource_type: ResourceType,
        value: Value,
        alert: &str,
        reason: &str,
    ) -> Result<WriteOutcome> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RecordsError::bad(
                "overriding an alert needs a reason",
                None,
            ));
        }
        crate::write::check_writable(&resource_type)?;
        policy::check(actor, self.now(), &resource_type, Interaction::Create)?;
        let value = prepare(&resource_type, value, None, self.resource_limit)?;
        let ctx = &self.write_ctx(actor).await?;
        let detail: String = format!("{alert}; reason: {reason}")
            .chars()
            .take(500)
            .collect();
        self.retrying(|mut tx| {
            let value = value.clone();
            let detail = detail.clone();
            async move {
                let id = new_id();
                let (outcome, entry) =
                    write_version(&mut tx, ctx, resource_type, &id, value, None, "POST").await?;
                let patient = entry.patients.clone();
                let note = AuditEntry::new(AuditAction::AllergyOverride, Outcome::Success)
                    .resource(
                        resource_type.as_str(),
                        id.as_str(),
                        Some(outcome.resource.version),
                    )
                    .patients(patient)
                    .detail(detail);
                self.audit_in(&mut tx, actor, vec![entry, note]).await?;
                tx.commit().await?;
                Ok(outcome)
            }
        })
        .await
    }

    /// Acknowledges a result (a DiagnosticReport the caller may read): the first review stands.
    pub async fn review_result(&self, actor: &Actor, report: &Id) -> Result<Review> {
        let result = self.review_inner(actor, report).await;
        self.audit_refusal(
            actor,
            AuditAction::ResultReview,
            "DiagnosticReport",
            Some(report.as_str()),
            result,
        )
        .await
    }

    async fn review_inner(&self, actor: &Actor, report: &Id) -> Result<Review> {
        if !actor.roles().iter().any(|r| r.is_clinical()) {
            return Err(RecordsError::Forbidden(
                "only a physician or nurse may acknowledge a result".into(),
            ));
        }
        let found = self
            .read(actor, ResourceType::DIAGNOSTIC_REPORT, report)
            .await?;
        let patient = crate::write::index_of(
            "DiagnosticReport",
            report.as_str(),
            &found.value(),
            self.base_url(),
        )?
        .1;
        let record = ReviewRecord {
            report_id: report.to_string(),
            reviewed_at: self.now().as_millis(),
            user_id: actor.user_id(),
            reviewed_by: actor.username().unwrap_or("unknown").to_string(),
        };
        let mut tx = self.store.begin().await?;
        tx.insert_review(&record).await?;
        self.audit_in(
            &mut tx,
            actor,
            vec![
                AuditEntry::new(AuditAction::ResultReview, Outcome::Success)
                    .resource("DiagnosticReport", report.as_str(), Some(found.version))
                    .patients(patient),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(self
            .reviews(std::slice::from_ref(&found))
            .await?
            .into_iter()
            .next()
            .unwrap_or(Review {
                report: record.report_id,
                reviewed_at: Instant::from_millis(record.reviewed_at),
                reviewed_by: record.reviewed_by,
            }))
    }

    /// The reviews of reports the caller has read.
    pub async fn reviews(&self, reports: &[Resource]) -> Result<Vec<Review>> {
        let ids: Vec<&str> = reports
            .iter()
            .filter(|r| r.resource_type == ResourceType::DIAGNOSTIC_REPORT)
            .map(|r| r.id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .reviews(&ids)
            .await?
            .into_iter()
            .map(|r| Review {
                report: r.report_id,
                reviewed_at: Instant::from_millis(r.reviewed_at),
                reviewed_by: r.reviewed_by,
            })
            .collect())
    }
}
