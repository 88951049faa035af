//! Access policy, decided in one place: an actor's scopes say which interactions on which types
//! it may perform; its patient context confines it to one compartment; sensitivity labels hide
//! restricted resources unless a break-the-glass grant covers their patient. The same decision
//! is turned into SQL conditions ([`Visibility`]) for searches and history, so totals, pages,
//! chains and includes never reveal what the actor may not see.

use ironchart_fhir::search::{Filter, FilterTest, SearchQuery};
use ironchart_security::scope::{Interaction, Role};
use ironchart_store::{CompartmentRule, StoredVersion, Visibility};
use serde_json::Value;

use crate::actor::{Actor, ActorKind};
use crate::cache::{CACHE_MAX, CACHE_TTL};
use crate::clock::Instant;
use crate::resource::Resource;
use crate::{Records, RecordsError, Result};

/// Resource types in no patient compartment that a patient-context actor still sees: the
/// directory (who treats them, where) and what their medications are.
pub(crate) const SHARED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Medication",
    "Substance",
];

use ironchart_store::Sensitivity;

/// The names the v3 Confidentiality code system goes by: its R4 URL, its OID, and the URL of
/// FHIR DSTU2/STU3. Compared without case, scheme (`http`/`https`) or a trailing slash.
const CONFIDENTIALITY_SYSTEMS: &[&str] = &[
    "terminology.hl7.org/codesystem/v3-confidentiality",
    "hl7.org/fhir/v3/confidentiality",
    "urn:oid:2.16.840.1.113883.5.25",
];

fn is_confidentiality_system(system: &str) -> bool {
    let s = system.trim().trim_end_matches('/').to_ascii_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    CONFIDENTIALITY_SYSTEMS.contains(&s)
}

/// The sensitivity a resource's labels give it: normal, restricted (R) or very restricted (V). A confidentiality label is recognised in every standard form of its system and code
/// (case, aliases); one that cannot be read — an unknown code in that system, or a bare `R` or
/// `V` without a system — is refused rather than stored as open.
pub(crate) fn sensitivity(value: &Value) -> Result<Sensitivity> {
    let Some(labels) = value
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
    else {
        return Ok(Sensitivity::Normal);
    };
    let mut level = Sensitivity::Normal;
    for (i, label) in labels.iter().enumerate() {
        let system = label.get("system").and_then(Value::as_str);
        let code = label.get("code").and_then(Value::as_str).map(str::trim);
        let confidentiality = match system {
            Some(s) => is_confidentiality_system(s),
            // A bare restricted code: most likely a confidentiality label missing its system.
            None => {
                code.is_some_and(|c| c.eq_ignore_ascii_case("r") || c.eq_ignore_ascii_case("v"))
            }
        };
        if !confidentiality {
            continue;
        }
        let refuse = |message: String| {
            let rt = value
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Resource");
            RecordsError::Invalid(vec![ironchart_fhir::validate::Issue {
                severity: ironchart_fhir::validate::Severity::Error,
                code: ironchart_fhir::validate::IssueCode::CodeInvalid,
                expression: format!("{rt}.meta.security[{i}]"),
                message,
            }])
        };
        if system.is_none() {
            return Err(refuse(
                "a confidentiality code needs its system, \
                 http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
                    .into(),
            ));
        }
        level = level.max(match code.map(str::to_ascii_uppercase).as_deref() {
            Some("U" | "L" | "M" | "N") => Sensitivity::Normal,
            Some("R") => Sensitivity::Restricted,
            Some("V") => Sensitivity::VeryRestricted,
            _ => {
                return Err(refuse(
                    "not a v3 Confidentiality code (U, L, M, N, R or V)".into(),
                ));
            }
        });
    }
    Ok(level)
}

/// Refuses an actor whose credentials have expired.
pub(crate) fn live(actor: &Actor, now: Instant) -> Result<()> {
    if actor.expires_at <= now.as_millis() || actor.kind == ActorKind::Anonymous {
        return Err(RecordsError::Unauthorized);
    }
    Ok(())
}

/// Refuses an interaction the actor's scopes do not cover.
pub(crate) fn check(
    actor: &Actor,
    now: Instant,
    res_type: &str,
    interaction: Interaction,
) -> Result<()> {
    live(actor, now)?;
    if actor.scopes.allows(res_type, interaction) {
        return Ok(());
    }
    Err(RecordsError::Forbidden(format!(
        "your access does not include {} on {res_type}",
        interaction_name(interaction)
    )))
}

fn interaction_name(i: Interaction) -> &'static str {
    match i {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

/// The highest sensitivity a break-the-glass grant opens to an actor: a physician's opens very
/// restricted records, a nurse's only restricted ones; other roles cannot break the glass.
fn grant_ceiling(actor: &Actor) -> Sensitivity {
    if actor.has_role(Role::Physician) {
        Sensitivity::VeryRestricted
    } else if actor.roles.iter().any(|r| r.can_break_glass()) {
        Sensitivity::Restricted
    } else {
        Sensitivity::Normal
    }
}

/// The highest sensitivity an actor sees without break-the-glass.
fn max_sensitivity(actor: &Actor) -> Sensitivity {
    if actor.kind == ActorKind::System {
        Sensitivity::VeryRestricted
    } else if actor.patient.is_some() {
        // Patients see their own restricted records, not the very restricted ones (such as
        // psychotherapy notes).
        Sensitivity::Restricted
    } else {
        Sensitivity::Normal
    }
}

/// What the actor may see, as SQL conditions for the store. `grants` are the patients the actor
/// broke the glass for.
pub(crate) fn visibility(actor: &Actor, grants: &[String]) -> Visibility {
    let mut types: Option<Vec<String>> = Some(Vec::new());
    for scope in actor.scopes.iter() {
        // Includes, chains and history hand out whole resources: they need read.
        if !scope.permits(Interaction::Read) {
            continue;
        }
        match (&scope.resource_type, &mut types) {
            (None, _) => {
                types = None;
                break;
            }
            (Some(t), Some(list)) => list.push(t.clone()),
            (Some(_), None) => {}
        }
    }
    Visibility {
        types,
        compartment: actor.patient.as_ref().map(|p| CompartmentRule {
            patient: p.clone(),
            shared_types: SHARED_TYPES.iter().map(|t| t.to_string()).collect(),
        }),
        max_sensitivity: max_sensitivity(actor),
        unrestricted_patients: grants.to_vec(),
        grant_ceiling: grant_ceiling(actor),
    }
}

/// Elements of a resource type that an actor may read but whose clinical content its role does
/// not cover: they are removed from what it reads, and searching, sorting or chaining by the
/// parameters over them is refused (a search would answer what the element holds).
pub(crate) struct Redaction {
    pub(crate) res_type: &'static str,
    pub(crate) elements: &'static [&'static str],
    pub(crate) params: &'static [&'static str],
}

/// The front desk schedules and registers visits: it sees an Encounter's when, where and who,
/// not why (reasons, diagnoses) nor its narrative, which may say why.
const FRONT_DESK_REDACTIONS: &[Redaction] = &[Redaction {
    res_type: "Encounter",
    elements: &["reasonCode", "reasonReference", "diagnosis", "text"],
    params: &["reason-code", "reason-reference", "diagnosis"],
}];

/// The redactions that apply to an actor: none for the operator, a patient (their own record),
/// or anyone with a role that covers clinical content (clinicians; billing, which codes
/// diagnoses).
pub(crate) fn redactions(actor: &Actor) -> &'static [Redaction] {
    let full = actor.kind == ActorKind::System
        || actor.patient.is_some()
        || actor
            .roles
            .iter()
            .any(|r| r.is_clinical() || *r == Role::Billing);
    if !full && actor.has_role(Role::FrontDesk) {
        FRONT_DESK_REDACTIONS
    } else {
        &[]
    }
}

/// Refuses a search that filters, sorts or chains by a parameter redacted for the actor.
pub(crate) fn check_search(actor: &Actor, query: &SearchQuery) -> Result<()> {
    let redactions = redactions(actor);
    if redactions.is_empty() {
        return Ok(());
    }
    let refused = |res_type: &str, name: &str| {
        redactions
            .iter()
            .any(|r| r.res_type == res_type && r.params.contains(&name))
    };
    fn filter_hits(
        res_type: &str,
        f: &Filter,
        refused: &dyn Fn(&str, &str) -> bool,
    ) -> Option<String> {
        if refused(res_type, f.param.name()) {
            return Some(format!("{res_type}.{}", f.param.name()));
        }
        match &f.test {
            FilterTest::Chain {
                target_type,
                filter,
            } => filter_hits(target_type, filter, refused),
            _ => None,
        }
    }
    let rt = query.resource_type.as_str();
    let hit = query
        .filters
        .iter()
        .find_map(|f| filter_hits(rt, f, &refused))
        .or_else(|| {
            query
                .sort
                .iter()
                .find(|k| refused(rt, k.param.name()))
                .map(|k| format!("{rt}.{}", k.param.name()))
        })
        .or_else(|| {
            query
                .includes
                .iter()
                .chain(&query.revincludes)
                .find(|i| refused(&i.source_type, i.param.name))
                .map(|i| format!("{}.{}", i.source_type, i.param.name))
        });
    match hit {
        Some(param) => Err(RecordsError::Forbidden(format!(
            "your access does not include searching by {param}"
        ))),
        None => Ok(()),
    }
}

/// A resource as the actor may see it: redacted elements removed and the resource labelled
/// `REDACTED` (v3 ObservationValue) in `meta.security`.
pub(crate) fn redact(actor: &Actor, mut resource: Resource) -> Resource {
    let Some(r) = redactions(actor)
        .iter()
        .find(|r| resource.resource_type == r.res_type)
    else {
        return resource;
    };
    let Some(mut value) = resource
        .json
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
    else {
        return resource;
    };
    let Some(map) = value.as_object_mut() else {
        return resource;
    };
    let mut removed = false;
    for element in r.elements {
        removed |= map.shift_remove(*element).is_some();
    }
    if removed {
        let label = serde_json::json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "REDACTED",
            "display": "redacted"
        });
        if let Some(meta) = map.get_mut("meta").and_then(Value::as_object_mut) {
            match meta.get_mut("security").and_then(Value::as_array_mut) {
                Some(labels) => labels.push(label),
                None => {
                    meta.insert("security".into(), Value::Array(vec![label]));
                }
            }
        }
        resource.json = serde_json::to_vec(&value).ok();
    }
    resource
}

/// Why a stored version is hidden from an actor, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hidden {
    /// Outside the actor's compartment or types: answer as if it did not exist.
    NotThere,
    /// A restricted record a clinician could break the glass for.
    Restricted,
}

/// The row-level decision of [`visibility`], for one version already read: judged by its own
/// compartment and sensitivity and by its resource's current ones (the stricter wins).
pub(crate) fn hidden(actor: &Actor, vis: &Visibility, v: &StoredVersion) -> Option<Hidden> {
    if let Some(types) = &vis.types
        && !types.contains(&v.res_type)
    {
        return Some(Hidden::NotThere);
    }
    let patients = [&v.patient, &v.record_patient];
    if let Some(c) = &vis.compartment {
        let inside = patients.iter().all(|p| match p {
            Some(p) => *p == c.patient,
            None => c.shared_types.contains(&v.res_type),
        });
        if !inside {
            return Some(Hidden::NotThere);
        }
    }
    if v.sensitivity > vis.max_sensitivity {
        let granted = patients.iter().all(|p| {
            p.as_ref()
                .is_some_and(|p| vis.unrestricted_patients.contains(p))
        });
        if granted && v.sensitivity <= vis.grant_ceiling {
            return None;
        }
        let can_break = v.patient.is_some() && v.sensitivity <= grant_ceiling(actor);
        return Some(if can_break {
            Hidden::Restricted
        } else {
            Hidden::NotThere
        });
    }
    None
}

impl Records {
    /// What `actor` may see, with its current break-the-glass grants.
    pub(crate) async fn visibility(&self, actor: &Actor) -> Result<Visibility> {
        let grants = match actor.user_id() {
            Some(id) if actor.roles.iter().any(|r| r.can_break_glass()) => {
                self.grants_of(id).await?
            }
            _ => Vec::new(),
        };
        Ok(visibility(actor, &grants))
    }

    async fn grants_of(&self, user_id: i64) -> Result<Vec<String>> {
        let key = user_id.to_string();
        if let Ok(cache) = self.grants.lock()
            && let Some((g, at)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(g.clone());
        }
        let grants = self
            .store
            .granted_patients(user_id, self.now().as_millis())
            .await?;
        if let Ok(mut cache) = self.grants.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (grants.clone(), std::time::Instant::now()));
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_give_sensitivity() {
        let r = json!({"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}});
        assert_eq!(sensitivity(&r).unwrap(), Sensitivity::Restricted);
        let v = json!({"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"},{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"V"}]}});
        assert_eq!(sensitivity(&v).unwrap(), Sensitivity::VeryRestricted);
        let other = json!({"meta":{"security":[{"system":"http://example.org","code":"R"}]}});
        assert_eq!(sensitivity(&other).unwrap(), Sensitivity::Normal);
        assert_eq!(sensitivity(&json!({})).unwrap(), Sensitivity::Normal);
    }

    /// Every standard form of the system, and either case of the code, counts.
    #[test]
    fn confidentiality_in_every_form() {
        for system in [
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "urn:oid:2.16.840.1.113883.5.25",
            "http://hl7.org/fhir/v3/Confidentiality",
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality/",
            "http://terminology.hl7.org/CodeSystem/V3-confidentiality",
            "https://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            " URN:OID:2.16.840.1.113883.5.25 ",
        ] {
            for (code, level) in [
                ("R", Sensitivity::Restricted),
                ("r", Sensitivity::Restricted),
                ("V", Sensitivity::VeryRestricted),
                ("v", Sensitivity::VeryRestricted),
                ("N", Sensitivity::Normal),
            ] {
                let r = json!({"meta":{"security":[{"system":system,"code":code}]}});
                assert_eq!(sensitivity(&r).unwrap(), level, "{system} {code}");
            }
        }
    }

    /// A confidentiality label that cannot be read is refused, not stored as open.
    #[test]
    fn unreadable_confidentiality_is_refused() {
        for label in [
            json!({"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"X"}),
            json!({"system":"urn:oid:2.16.840.1.113883.5.25"}),
            json!({"system":"http://hl7.org/fhir/v3/Confidentiality","code":"restricted"}),
            json!({"code":"R"}),
            json!({"code":"v"}),
        ] {
            let r = json!({"resourceType":"Observation","meta":{"security":[label]}});
            assert!(
                matches!(sensitivity(&r), Err(RecordsError::Invalid(_))),
                "{r}"
            );
        }
    }
}
