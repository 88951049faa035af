//! How the audit log is searched and what a search hands back: the door's own types, turned
//! into the store's query here and nowhere else.

use ironchart_store::{AuditColumn, AuditQuery, AuditRow};

use ironchart_fhir::PatientId;

use super::{AuditAction, Outcome};
use crate::clock::Instant;

/// Conditions of an audit log search; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One entry by its sequence number.
    pub seq: Option<i64>,
    /// Recorded at or after.
    pub from: Option<Instant>,
    /// Recorded at or before.
    pub to: Option<Instant>,
    /// `system` or `user:<name>` (as [`AuditRecord::actor`] reads).
    pub actor: Option<String>,
    /// Entries concerning this Patient.
    pub patient: Option<PatientId>,
    /// Any of these actions (none: every action).
    pub actions: Vec<AuditAction>,
    pub outcome: Option<Outcome>,
    /// Continue after (descending: before) this sequence number (when sorted by sequence).
    pub after_seq: Option<i64>,
    pub sort: AuditSort,
    pub descending: bool,
    /// Most entries returned.
    pub limit: usize,
}

/// What the audit log can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditSort {
    #[default]
    Seq,
    Recorded,
    Actor,
    Role,
    Action,
    ResType,
    ResId,
    Patients,
    Outcome,
    Source,
    Detail,
}

impl AuditFilter {
    pub(crate) fn to_store(&self) -> AuditQuery {
        AuditQuery {
            seq: self.seq,
            from: self.from.map(Instant::as_millis),
            to: self.to.map(Instant::as_millis),
            actor: self.actor.clone(),
            patient: self.patient.as_ref().map(|p| p.to_string()),
            actions: self
                .actions
                .iter()
                .map(|a| a.as_str().to_string())
                .collect(),
            outcome: self.outcome.map(|o| o.as_str().to_string()),
            after_seq: self.after_seq,
            sort: match self.sort {
                AuditSort::Seq => AuditColumn::Seq,
                AuditSort::Recorded => AuditColumn::Recorded,
                AuditSort::Actor => AuditColumn::Actor,
                AuditSort::Role => AuditColumn::Role,
                AuditSort::Action => AuditColumn::Action,
                AuditSort::ResType => AuditColumn::ResType,
                AuditSort::ResId => AuditColumn::ResId,
                AuditSort::Patients => AuditColumn::Patients,
                AuditSort::Outcome => AuditColumn::Outcome,
                AuditSort::Source => AuditColumn::Source,
                AuditSort::Detail => AuditColumn::Detail,
            },
            descending: self.descending,
            limit: self.limit,
        }
    }
}

/// One entry of the audit log as it is read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub recorded: Instant,
    /// `system`, `user:<name>`, `token:<label>` or `anonymous`.
    pub actor: String,
    pub role: Option<String>,
    /// The action's name ([`AuditAction::as_str`]); kept as written, so that an entry of an
    /// action this version does not know still reads back.
    pub action: String,
    pub res_type: Option<String>,
    pub res_id: Option<String>,
    pub version: Option<i64>,
    /// The Patient ids the entry concerns.
    pub patients: Vec<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub(crate) fn of(row: AuditRow) -> AuditRecord {
        AuditRecord {
            seq: row.seq,
            recorded: Instant::from_millis(row.recorded),
            actor: row.actor,
            role: row.role,
            action: row.action,
            res_type: row.res_type,
            res_id: row.res_id,
            version: row.version,
            patients: row
                .patients
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            outcome: row.outcome,
            source: row.source,
            purpose: row.purpose,
            request_id: row.request_id,
            detail: row.detail,
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = ();

    /// `success`, `denied`, `failure`, or their FHIR AuditEvent codes `0`, `4`, `8`.
    fn from_str(s: &str) -> Result<Outcome, ()> {
        match s {
            "0" | "success" => Ok(Outcome::Success),
            "4" | "denied" => Ok(Outcome::Denied),
            "8" | "failure" => Ok(Outcome::Failure),
            _ => Err(()),
        }
    }
}
