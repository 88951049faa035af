//! Access policy, decided in one place: an actor's scopes say which interactions on which types
//! it may perform; its patient context confines it to one compartment; sensitivity labels hide
//! restricted resources unless a break-the-glass grant covers their patient. The same decision
//! is turned into SQL conditions ([`Visibility`]) for searches and history, so totals, pages,
//! chains and includes never reveal what the actor may not see.

use ironchart_security::scope::{Interaction, Role};
use ironchart_store::{CompartmentRule, StoredVersion, Visibility};
use serde_json::Value;

use crate::actor::{Actor, ActorKind};
use crate::{RecordsError, Result};

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

/// `meta.security` codes (v3-Confidentiality) and the sensitivity they mean.
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub(crate) const RESTRICTED: i64 = 1;
pub(crate) const VERY_RESTRICTED: i64 = 2;

/// The sensitivity a resource's labels give it: 0 normal, 1 restricted (R), 2 very restricted
/// (V).
pub(crate) fn sensitivity(value: &Value) -> i64 {
    let Some(labels) = value
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
    else {
        return 0;
    };
    labels
        .iter()
        .filter(|l| l.get("system").and_then(Value::as_str) == Some(CONFIDENTIALITY))
        .map(|l| match l.get("code").and_then(Value::as_str) {
            Some("V") => VERY_RESTRICTED,
            Some("R") => RESTRICTED,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Refuses an actor whose credentials have expired.
pub(crate) fn live(actor: &Actor) -> Result<()> {
    if actor.expires_at <= crate::service::now_millis() || actor.kind == ActorKind::Anonymous {
        return Err(RecordsError::Unauthorized);
    }
    Ok(())
}

/// Refuses an interaction the actor's scopes do not cover.
pub(crate) fn check(actor: &Actor, res_type: &str, interaction: Interaction) -> Result<()> {
    live(actor)?;
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

/// The highest sensitivity an actor sees without break-the-glass.
fn max_sensitivity(actor: &Actor) -> i64 {
    if actor.kind == ActorKind::System {
        i64::MAX
    } else if actor.patient.is_some() {
        // Patients see their own restricted records, not the very restricted ones (such as
        // psychotherapy notes).
        RESTRICTED
    } else {
        0
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
    }
}

/// Why a stored version is hidden from an actor, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hidden {
    /// Outside the actor's compartment or types: answer as if it did not exist.
    NotThere,
    /// A restricted record a clinician could break the glass for.
    Restricted,
}

/// The row-level decision of [`visibility`], for one version already read.
pub(crate) fn hidden(actor: &Actor, vis: &Visibility, v: &StoredVersion) -> Option<Hidden> {
    if let Some(types) = &vis.types
        && !types.contains(&v.res_type)
    {
        return Some(Hidden::NotThere);
    }
    if let Some(c) = &vis.compartment {
        let inside = match &v.patient {
            Some(p) => *p == c.patient,
            None => c.shared_types.contains(&v.res_type),
        };
        if !inside {
            return Some(Hidden::NotThere);
        }
    }
    if v.sensitivity > vis.max_sensitivity
        && !v
            .patient
            .as_ref()
            .is_some_and(|p| vis.unrestricted_patients.contains(p))
    {
        let can_break = v.patient.is_some()
            && actor.roles.iter().any(|r| r.can_break_glass())
            && (v.sensitivity < VERY_RESTRICTED || actor.has_role(Role::Physician));
        return Some(if can_break {
            Hidden::Restricted
        } else {
            Hidden::NotThere
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_give_sensitivity() {
        let r = json!({"meta":{"security":[{"system":CONFIDENTIALITY,"code":"R"}]}});
        assert_eq!(sensitivity(&r), RESTRICTED);
        let v = json!({"meta":{"security":[{"system":CONFIDENTIALITY,"code":"N"},{"system":CONFIDENTIALITY,"code":"V"}]}});
        assert_eq!(sensitivity(&v), VERY_RESTRICTED);
        let other = json!({"meta":{"security":[{"system":"http://example.org","code":"R"}]}});
        assert_eq!(sensitivity(&other), 0);
        assert_eq!(sensitivity(&json!({})), 0);
    }
}
