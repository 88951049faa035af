//! `/fhir/AuditEvent`: ironchart's own audit log as FHIR `AuditEvent` resources, for auditors
//! (and the system token). Search by `date` (with prefixes), `agent`, `patient`, `action` (the
//! FHIR C/R/U/D/E codes or ironchart's action names), `outcome` (0/4/8 or success/denied/
//! failure), `_count`; newest first, paged. Read by id (the entry's sequence number). Every
//! read of the log is itself audited.

use ironchart_fhir::PatientId;
use ironchart_fhir::datetime::parse_date_range;
use ironchart_records::audit::AuditAction;
use ironchart_records::{Actor, AuditFilter, AuditRecord, Instant, Outcome, RecordsError};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::AppState;

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

fn bad(message: String) -> ApiError {
    RecordsError::BadRequest {
        message,
        expression: None,
    }
    .into()
}

/// The FHIR action code of an action named in the log (an unknown name, from a newer version,
/// is an execute).
fn action_code(action: &str) -> &'static str {
    action
        .parse::<AuditAction>()
        .map_or("E", AuditAction::fhir_code)
}

fn outcome_code(outcome: &str) -> &'static str {
    match outcome {
        "success" => "0",
        "denied" => "4",
        _ => "8",
    }
}

/// Parses the search parameters into a store query; `_cursor` continues before a sequence
/// number.
pub(crate) fn query_of(pairs: &[(String, String)]) -> Result<AuditFilter, ApiError> {
    let mut q = AuditFilter {
        descending: true,
        limit: DEFAULT_COUNT,
        ..AuditFilter::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "date" => {
                let (prefix, rest) = match value.get(..2) {
                    Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let range = parse_date_range(rest).ok_or_else(|| {
                    bad(format!("date: '{value}' is not a FHIR date or dateTime"))
                })?;
                let (from, to) = match prefix {
                    "eq" => (Some(range.low), Some(range.high)),
                    "ge" => (Some(range.low), None),
                    "gt" => (Some(range.high + 1), None),
                    "le" => (None, Some(range.high)),
                    _ => (None, Some(range.low - 1)),
                };
                if let Some(f) = from {
                    let f = Instant::from_millis(f);
                    q.from = Some(q.from.map_or(f, |x| x.max(f)));
                }
                if let Some(t) = to {
                    let t = Instant::from_millis(t);
                    q.to = Some(q.to.map_or(t, |x| x.min(t)));
                }
            }
            "agent" | "agent-name" | "altid" => {
                let v = value.trim();
                q.actor = Some(if v == "system" || v.starts_with("user:") {
                    v.to_string()
                } else {
                    ["user:", v].concat()
                });
            }
            "patient" => {
                q.patient = Some(
                    PatientId::parse(value.trim())
                        .ok_or_else(|| bad(format!("patient: '{value}' is not a Patient id")))?,
                );
            }
            "action" | "subtype" => {
                for v in value.split(',') {
                    match AuditAction::of_fhir_code(v) {
                        Some(list) => {
                            q.actions.extend(list);
                        }
                        None => {
                            let action = v.parse::<AuditAction>().map_err(|_| {
                                bad(format!(
                                    "{name}: '{v}' is neither an action code (C, R, U, D, E) nor an audit action name"
                                ))
                            })?;
                            q.actions.push(action);
                        }
                    }
                }
            }
            "outcome" => {
                q.outcome = Some(
                    value
                        .parse::<Outcome>()
                        .map_err(|_| bad(format!("outcome: '{value}' is not 0, 4 or 8")))?,
                );
            }
            "_count" => {
                q.limit = value
                    .parse::<usize>()
                    .map_err(|_| bad(format!("_count: '{value}' is not a number")))?
                    .clamp(1, MAX_COUNT);
            }
            "_cursor" => {
                q.after_seq = Some(
                    value
                        .parse()
                        .map_err(|_| bad("invalid paging cursor".into()))?,
                );
            }
            "_format" | "_total" => {}
            other => {
                return Err(bad(format!(
                    "AuditEvent search supports date, agent, patient, action, outcome and _count, not '{other}'"
                )));
            }
        }
    }
    Ok(q)
}

/// One audit entry as an AuditEvent.
pub(crate) fn resource(row: &AuditRecord) -> Value {
    let data = matches!(
        row.action.as_str(),
        "read" | "vread" | "search" | "history" | "create" | "update" | "delete"
    );
    let event_type = if data {
        json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"})
    } else if matches!(row.action.as_str(), "sign-in" | "sign-out" | "lockout") {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"})
    } else {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113", "display": "Security Alert"})
    };
    let subtype = match row.action.as_str() {
        "search" => {
            json!({"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type"})
        }
        "history" => {
            json!({"system": "http://hl7.org/fhir/restful-interaction", "code": "history-type"})
        }
        a if data => json!({"system": "http://hl7.org/fhir/restful-interaction", "code": a}),
        a => json!({"system": "https://ironchart.org/fhir/CodeSystem/audit-action", "code": a}),
    };
    let mut agent = json!({
        "who": {"identifier": {"value": row.actor}, "display": row.actor},
        "requestor": true,
    });
    if let Some(role) = &row.role {
        agent["role"] = json!([{"text": role}]);
    }
    if let Some(source) = &row.source {
        agent["network"] = json!({"address": source, "type": "2"});
    }
    let mut entities = Vec::new();
    if let Some(t) = &row.res_type {
        let reference = match (&row.res_id, row.version) {
            (Some(id), Some(v)) => format!("{t}/{id}/_history/{v}"),
            (Some(id), None) => format!("{t}/{id}"),
            (None, _) => t.clone(),
        };
        entities.push(json!({
            "what": {"reference": reference},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        }));
    }
    for p in &row.patients {
        entities.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": row.seq.to_string(),
        "meta": {"lastUpdated": row.recorded.to_string()},
        "type": event_type,
        "subtype": [subtype],
        "action": action_code(&row.action),
        "recorded": row.recorded.to_string(),
        "outcome": outcome_code(&row.outcome),
        "agent": [agent],
        "source": {
            "observer": {"display": "ironchart"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
        },
    });
    if let Some(d) = &row.detail {
        event["outcomeDesc"] = json!(d);
    }
    if let Some(p) = &row.purpose {
        event["purposeOfEvent"] = json!([{"text": p}]);
    }
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    event
}

/// `GET /fhir/AuditEvent?…`: a searchset Bundle.
pub(crate) async fn search(
    state: &AppState,
    actor: &Actor,
    pairs: &[(String, String)],
) -> Result<String, ApiError> {
    let q = query_of(pairs)?;
    let total = state.records.audit_count(actor, &q).await?;
    let mut page_query = q.clone();
    page_query.limit = q.limit + 1;
    let mut rows = state.records.audit_entries(actor, &page_query).await?;
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let base = &state.config.fhir_base;
    let self_query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(k, _)| k != "_cursor"))
        .finish();
    let mut links =
        vec![json!({"relation": "self", "url": format!("{base}/AuditEvent?{self_query}")})];
    if more && let Some(last) = rows.last() {
        let sep = if self_query.is_empty() { "" } else { "&" };
        links.push(json!({
            "relation": "next",
            "url": format!("{base}/AuditEvent?{self_query}{sep}_cursor={}", last.seq),
        }));
    }
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{base}/AuditEvent/{}", r.seq),
                "resource": resource(r),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(bundle.to_string())
}

/// `GET /fhir/AuditEvent/{seq}`.
pub(crate) async fn read(state: &AppState, actor: &Actor, id: &str) -> Result<Value, ApiError> {
    let not_found = || RecordsError::NotFound("AuditEvent".into(), id.into());
    let seq: i64 = id.parse().map_err(|_| not_found())?;
    let q = AuditFilter {
        seq: Some(seq),
        limit: 1,
        ..AuditFilter::default()
    };
    let rows = state.records.audit_entries(actor, &q).await?;
    let row = rows.first().ok_or_else(not_found)?;
    Ok(resource(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_valid_audit_events() {
        let row = AuditRecord {
            seq: 7,
            recorded: Instant::from_millis(1_700_000_000_000),
            actor: "user:dr".into(),
            role: Some("physician".into()),
            action: "read".into(),
            res_type: Some("Observation".into()),
            res_id: Some("o1".into()),
            version: Some(2),
            patients: vec!["p1".into()],
            outcome: "success".into(),
            source: Some("127.0.0.1".into()),
            detail: Some("params=code".into()),
            ..AuditRecord::default()
        };
        let v = resource(&row);
        assert_eq!(
            v["entity"][0]["what"]["reference"],
            "Observation/o1/_history/2"
        );
        assert_eq!(v["entity"][1]["what"]["reference"], "Patient/p1");
        ironchart_fhir::validate::validate_resource(&v).expect("a valid AuditEvent");
        let denied = AuditRecord {
            action: "sign-in".into(),
            outcome: "denied".into(),
            ..row
        };
        let v = resource(&denied);
        assert_eq!(v["outcome"], "4");
        assert_eq!(v["action"], "E");
        ironchart_fhir::validate::validate_resource(&v).expect("a valid AuditEvent");
    }

    #[test]
    fn search_parameters() {
        let pairs = |s: &[(&str, &str)]| {
            s.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let q = query_of(&pairs(&[
            ("date", "ge2026-01-01"),
            ("date", "lt2026-02-01"),
            ("agent", "dr"),
            ("patient", "Patient/p1"),
            ("action", "C"),
            ("outcome", "4"),
        ]))
        .unwrap();
        assert_eq!(q.actor.as_deref(), Some("user:dr"));
        assert_eq!(q.patient.as_deref(), Some("p1"));
        assert!(query_of(&pairs(&[("patient", "a b")])).is_err());
        assert_eq!(q.actions, vec![AuditAction::Create]);
        assert_eq!(q.outcome, Some(Outcome::Denied));
        assert!(q.from.unwrap() < q.to.unwrap());
        assert!(query_of(&pairs(&[("date", "yesterday")])).is_err());
        assert!(query_of(&pairs(&[("bogus", "1")])).is_err());
        // `E` covers every action that is not a C, R, U or D, a damaged journal included.
        let e = query_of(&pairs(&[("action", "E")])).unwrap();
        assert!(e.actions.contains(&AuditAction::JournalDamaged));
        assert!(e.actions.contains(&AuditAction::Search));
        assert!(
            !e.actions
                .iter()
                .any(|a| matches!(a, AuditAction::Read | AuditAction::Create))
        );
        // Names are taken as they are, and a name that is no action is refused.
        let named = query_of(&pairs(&[("subtype", "sign-in,break-glass")])).unwrap();
        assert_eq!(
            named.actions,
            vec![AuditAction::SignIn, AuditAction::BreakGlass]
        );
        assert!(query_of(&pairs(&[("action", "sign-on")])).is_err());
        assert!(query_of(&pairs(&[("action", "e")])).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("date".to_string()),
                Just("agent".to_string()),
                Just("patient".to_string()),
                Just("action".to_string()),
                Just("subtype".to_string()),
                Just("outcome".to_string()),
                Just("_count".to_string()),
                Just("_cursor".to_string()),
                Just("_sort".to_string()),
                ".{0,10}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "(eq|ge|gt|le|lt|sa|)[0-9]{1,4}(-[0-9]{1,2}(-[0-9]{1,2}(T[0-9:.+Z-]{0,20})?)?)?",
                "-?[0-9]{1,25}",
                "[CRUDE0-9,a-z-]{0,20}",
                ".{0,30}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Whatever the search says, the answer is a query or a 400, never a panic, and a
            /// query never asks for more than a page's worth or an empty date range by mistake.
            #[test]
            fn any_search_is_a_query_or_a_bad_request(pairs in prop::collection::vec((name(), value()), 0..6)) {
                match query_of(&pairs) {
                    Ok(q) => {
                        prop_assert!(q.limit >= 1 && q.limit <= MAX_COUNT);
                    }
                    Err(e) => prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST),
                }
            }

            /// One date, any prefix: `ge` and `le` of the same date keep that date inside.
            #[test]
            fn a_date_is_inside_its_own_range(y in 1900u32..2100, m in 1u32..=12, d in 1u32..=28) {
                let day = format!("{y:04}-{m:02}-{d:02}");
                let q = query_of(&[
                    ("date".to_string(), format!("ge{day}")),
                    ("date".to_string(), format!("le{day}")),
                ]).expect("a valid date");
                let eq = query_of(&[("date".to_string(), day)]).expect("a valid date");
                prop_assert_eq!(q.from, eq.from);
                prop_assert_eq!(q.to, eq.to);
                prop_assert!(q.from.expect("from") <= q.to.expect("to"));
            }
        }
    }
}
