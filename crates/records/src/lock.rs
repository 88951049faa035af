//! The lock of a signed encounter (signing is in `clinical.rs`), checked inside every write's
//! transaction: a write that touches a signed encounter is refused.

use ironchart_fhir::extract::{IndexEntry, IndexValue};
use ironchart_store::{VersionHead, WriteTx};
use serde_json::Value;

use crate::{RecordsError, Result};

/// The local Encounters a version refers to through its `encounter` parameter (not inside a
/// contained resource), and the Encounter itself.
fn encounters_of<'a>(resource_type: &str, id: &'a str, index: &'a [IndexEntry]) -> Vec<&'a str> {
    let mut out: Vec<&str> = index
        .iter()
        .filter(|e| e.param == "encounter" && e.contained.is_none())
        .filter_map(|e| match &e.value {
            IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(id),
                ..
            } if t == "Encounter" => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if resource_type == "Encounter" {
        out.push(id);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// An addendum: a final DocumentReference that appends to another.
pub(crate) fn is_addendum(resource_type: &str, value: &Value) -> bool {
    resource_type == "DocumentReference"
        && value.get("docStatus").and_then(Value::as_str) == Some("final")
        && value
            .get("relatesTo")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .any(|r| r.get("code").and_then(Value::as_str) == Some("appends"))
            })
}

/// Refuses a write that touches a signed encounter: one whose current version (`head`) or new
/// version (`new`: its value and index) refers to it, or that is the Encounter. A new addendum
/// is the exception. Read inside the write's transaction.
pub(crate) async fn check_unlocked(
    tx: &mut WriteTx,
    resource_type: &str,
    id: &str,
    head: Option<&VersionHead>,
    new: Option<(&Value, &[IndexEntry])>,
) -> Result<()> {
    let live = head.filter(|h| !h.deleted);
    let mut touched: Vec<String> = Vec::new();
    if let Some(h) = live {
        touched.extend(tx.encounter_refs(h.rid).await?);
    }
    if let Some((value, index)) = new {
        let addendum = live.is_none() && is_addendum(resource_type, value);
        if !addendum {
            touched.extend(
                encounters_of(resource_type, id, index)
                    .into_iter()
                    .map(str::to_string),
            );
        }
    } else if resource_type == "Encounter" {
        touched.push(id.to_string());
    }
    if resource_type == "Encounter" && live.is_some() {
        touched.push(id.to_string());
    }
    if touched.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = touched.iter().map(String::as_str).collect();
    match tx.signed_among(&ids).await? {
        Some(enc) => Err(RecordsError::Locked(enc)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironchart_fhir::extract::extract;
    use serde_json::json;

    #[test]
    fn the_encounters_a_resource_touches() {
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "encounter": {"reference": "Encounter/e1"},
            "subject": {"reference": "Patient/p"}});
        let index = extract(&obs);
        assert_eq!(encounters_of("Observation", "o1", &index), vec!["e1"]);
        let enc = json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"code": "AMB"}});
        let index = extract(&enc);
        assert_eq!(encounters_of("Encounter", "e2", &index), vec!["e2"]);
        let note = json!({"resourceType": "DocumentReference", "status": "current",
            "docStatus": "final", "content": [{"attachment": {"contentType": "text/plain"}}],
            "context": {"encounter": [{"reference": "Encounter/e3"}]},
            "relatesTo": [{"code": "appends", "target": {"reference": "DocumentReference/n"}}]});
        let index = extract(&note);
        assert_eq!(encounters_of("DocumentReference", "d", &index), vec!["e3"]);
        assert!(is_addendum("DocumentReference", &note));
        let mut draft = note.clone();
        draft["docStatus"] = json!("preliminary");
        assert!(!is_addendum("DocumentReference", &draft));
    }
}
