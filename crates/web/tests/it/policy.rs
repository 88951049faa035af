//! Who may do what: every role against a representative set of resource types and the five
//! interactions, over HTTP, each request checked against the role table and against the audit
//! log; the system token; expired, revoked and over-wide tokens; narrowed tokens.

use ironchart_records::test_support::operator;
use std::time::Duration;

use ironchart_records::{AuditFilter, RecordsError, Role};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both;
use crate::support::{AuditTail, Caller, Reply, Server, brief};

/// The resource types of the matrix, in the order of its columns.
const TYPES: [&str; 9] = [
    "Patient",
    "Observation",
    "Condition",
    "DocumentReference",
    "MedicationRequest",
    "Coverage",
    "Claim",
    "Appointment",
    "Practitioner",
];

/// What each caller may do with each type: the letters of the interactions allowed (c create,
/// r read, u update, d delete, s search). Written out by hand from the role table
/// (`Role::scopes` in crates/security/src/scope.rs), so that a change there has to be made here
/// too:
///
/// - admin: the directory only (Organization, Location, Practitioner, PractitionerRole,
///   HealthcareService, Endpoint: cruds);
/// - physician: `user/*.cruds`; nurse: `user/*.crus`;
/// - front_desk: Patient, Appointment, Coverage crus; Practitioner rs; no clinical data;
/// - billing: Patient rs; Coverage, Claim crus; Condition, Practitioner rs;
/// - auditor: `user/AuditEvent.rs` only;
/// - patient: `patient/*.rs`, in their own compartment (all the fixtures here are in it, and
///   Practitioner is a shared directory type).
///
/// `system` is the full-access system token.
#[rustfmt::skip]
const MATRIX: [(&str, [&str; 9]); 8] = [
    //            Patient  Observation Condition DocumentRef MedRequest Coverage Claim    Appointment Practitioner
    ("system",     ["cruds", "cruds",   "cruds",  "cruds",    "cruds",   "cruds", "cruds", "cruds",    "cruds"]),
    ("admin",      ["",      "",        "",       "",         "",        "",      "",      "",         "cruds"]),
    ("physician",  ["cruds", "cruds",   "cruds",  "cruds",    "cruds",   "cruds", "cruds", "cruds",    "cruds"]),
    ("nurse",      ["crus",  "crus",    "crus",   "crus",     "crus",    "crus",  "crus",  "crus",     "crus"]),
    ("front_desk", ["crus",  "",        "",       "",         "",        "crus",  "",      "crus",     "rs"]),
    ("billing",    ["rs",    "",        "rs",     "",         "",        "crus",  "crus",  "",         "rs"]),
    ("auditor",    ["",      "",        "",       "",         "",        "",      "",      "",         ""]),
    ("patient",    ["rs",    "rs",      "rs",     "rs",       "rs",      "rs",    "rs",    "rs",       "rs"]),
];

/// A valid resource of `rtype` in the compartment of `Patient/{patient}` (a Patient is its own
/// compartment; a Practitioner is in none).
fn resource_of(rtype: &str, patient: &str) -> Value {
    let subject = json!({ "reference": format!("Patient/{patient}") });
    match rtype {
        "Patient" => json!({"resourceType": "Patient", "name": [{"family": "Matrix"}]}),
        "Observation" => json!({
            "resourceType": "Observation", "status": "final",
            "code": {"text": "heart rate"}, "subject": subject,
            "valueQuantity": {"value": 72, "unit": "/min"}
        }),
        "Condition" => json!({
            "resourceType": "Condition", "code": {"text": "asthma"}, "subject": subject
        }),
        "DocumentReference" => json!({
            "resourceType": "DocumentReference", "status": "current", "subject": subject,
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]
        }),
        "MedicationRequest" => json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "salbutamol"}, "subject": subject
        }),
        "Coverage" => json!({
            "resourceType": "Coverage", "status": "active", "beneficiary": subject,
            "payor": [{"display": "Acme Insurance"}]
        }),
        "Claim" => json!({
            "resourceType": "Claim", "status": "active", "type": {"text": "professional"},
            "use": "claim", "patient": subject, "created": "2024-01-01",
            "provider": {"display": "The Clinic"}, "priority": {"text": "normal"},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "Acme plan"}}]
        }),
        "Appointment" => json!({
            "resourceType": "Appointment", "status": "booked",
            "start": "2024-01-01T10:00:00Z", "end": "2024-01-01T10:30:00Z",
            "participant": [{"actor": subject, "status": "accepted"}]
        }),
        "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Osler"}]}),
        other => panic!("no fixture for {other}"),
    }
}

/// The interactions in the order the matrix tries them (delete after update, create last).
const ORDER: [char; 5] = ['r', 's', 'u', 'd', 'c'];

/// One request of the matrix: what was asked, what came back and what the log says.
struct Tried {
    what: String,
    reply: Reply,
    expected_status: StatusCode,
    expected_audit: Vec<String>,
}

/// Runs one interaction of `caller` on the fixture `rtype/id` (in `patients`' compartment).
async fn try_interaction(
    caller: Caller<'_>,
    interaction: char,
    allowed: bool,
    rtype: &str,
    fixture: &Value,
    patients: &str,
) -> Tried {
    let id = fixture["id"].as_str().expect("fixture id");
    let outcome = if allowed { "success" } else { "denied" };
    let with = |p: &str| {
        if allowed {
            p.to_string()
        } else {
            String::new()
        }
    };
    let (what, reply, ok, audit) = match interaction {
        'r' => {
            let path = format!("{rtype}/{id}");
            let reply = caller.get(&path).await;
            let audit = format!("read {rtype}/{id} {outcome} [{}]", with(patients));
            (format!("GET {path}"), reply, StatusCode::OK, audit)
        }
        's' => {
            let path = format!("{rtype}?_id={id}");
            let reply = caller.get(&path).await;
            // A search names the patients it asks about, refused or not (`_id` of a Patient).
            let named = match (allowed, rtype) {
                (false, "Patient") => id.to_string(),
                _ => with(patients),
            };
            let audit = format!("search {rtype}/- {outcome} [{named}]");
            (format!("GET {path}"), reply, StatusCode::OK, audit)
        }
        'u' => {
            let path = format!("{rtype}/{id}");
            let reply = caller.put(&path, fixture).await;
            let audit = format!("update {rtype}/{id} {outcome} [{}]", with(patients));
            (format!("PUT {path}"), reply, StatusCode::OK, audit)
        }
        'd' => {
            let path = format!("{rtype}/{id}");
            let reply = caller.delete(&path).await;
            let audit = format!("delete {rtype}/{id} {outcome} [{}]", with(patients));
            (
                format!("DELETE {path}"),
                reply,
                StatusCode::NO_CONTENT,
                audit,
            )
        }
        'c' => {
            let patient = patients.split(' ').next().unwrap_or_default();
            let body = resource_of(rtype, patient);
            let reply = caller.post(rtype, &body).await;
            let new_id = reply.body["id"].as_str().unwrap_or("-").to_string();
            // A new Patient is its own compartment.
            let new_patients = match rtype {
                "Patient" => new_id.clone(),
                _ => patients.to_string(),
            };
            let audit = if allowed {
                format!("create {rtype}/{new_id} success [{new_patients}]")
            } else {
                format!("create {rtype}/- denied []")
            };
            (format!("POST {rtype}"), reply, StatusCode::CREATED, audit)
        }
        other => panic!("unknown interaction {other}"),
    };
    Tried {
        what,
        reply,
        expected_status: if allowed { ok } else { StatusCode::FORBIDDEN },
        expected_audit: vec![audit],
    }
}

async fn role_type_interaction_matrix(s: Server) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (who, row) in MATRIX {
        // Each caller gets a Patient of their own for the fixtures, so that deletes and updates
        // by one row do not disturb the next; the patient user is linked to it.
        let patient = s
            .create(
                &json!({"resourceType": "Patient", "name": [{"family": format!("Matrix-{who}")}]}),
            )
            .await;
        let pid = patient["id"].as_str().expect("id").to_string();
        let (actor, token) = match who {
            "system" => ("system".to_string(), s.token.clone()),
            role => {
                let role = Role::parse(role).expect("role");
                let linked = (role == Role::Patient).then_some(pid.as_str());
                let (username, token) = s.user_with_token(role, linked).await;
                (format!("user:{username}"), token)
            }
        };
        let caller = s.with_token(&token);
        for (rtype, allowed) in TYPES.iter().zip(row) {
            let fixture = match *rtype {
                "Patient" => patient.clone(),
                _ => s.create(&resource_of(rtype, &pid)).await,
            };
            let patients = match *rtype {
                "Practitioner" => "",
                _ => pid.as_str(),
            };
            // Only this caller's requests from here on (the fixture was written by `system`).
            let mut tail = AuditTail::new(&s, &actor).await;
            for interaction in ORDER {
                let may = allowed.contains(interaction);
                let tried =
                    try_interaction(caller, interaction, may, rtype, &fixture, patients).await;
                let logged = tail.take(&s).await;
                checked += 1;
                let label = format!("{who} {}", tried.what);
                if tried.reply.status != tried.expected_status {
                    problems.push(format!(
                        "{label}: status {} (expected {}): {}",
                        tried.reply.status, tried.expected_status, tried.reply.text
                    ));
                }
                if !tried.reply.status.is_success()
                    && tried.reply.body["resourceType"] != "OperationOutcome"
                {
                    problems.push(format!(
                        "{label}: error without an OperationOutcome: {}",
                        tried.reply.text
                    ));
                }
                if tried.reply.status == StatusCode::FORBIDDEN
                    && tried.reply.body["issue"][0]["code"] != "forbidden"
                {
                    problems.push(format!(
                        "{label}: 403 with issue code {}",
                        tried.reply.body["issue"][0]["code"]
                    ));
                }
                if interaction == 's' && tried.reply.status == StatusCode::OK {
                    let ids: Vec<&Value> = tried.reply.body["entry"]
                        .as_array()
                        .map(|e| e.iter().map(|e| &e["resource"]["id"]).collect())
                        .unwrap_or_default();
                    if ids != [&fixture["id"]] {
                        problems.push(format!("{label}: found {ids:?}"));
                    }
                }
                if logged != tried.expected_audit {
                    problems.push(format!(
                        "{label}: audit log has {logged:?}, expected {:?}",
                        tried.expected_audit
                    ));
                }
            }
        }
    }
    assert_eq!(checked, MATRIX.len() * TYPES.len() * ORDER.len());
    assert!(
        problems.is_empty(),
        "{} of {checked} requests went wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
on_both!(role_type_interaction_matrix);

async fn a_user_token_works(s: Server) {
    let (_, token) = s.user_with_token(Role::Nurse, None).await;
    let r = s.with_token(&token).get("Patient").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
on_both!(a_user_token_works);

/// A token issued for a user, with a chosen lifetime.
async fn token_for(s: &Server, username: &str, scopes: Option<&str>, ttl: Duration) -> String {
    s.records
        .issue_user_token(&operator(), username, scopes, ttl)
        .await
        .unwrap_or_else(|e| panic!("token for {username}: {e}"))
}

/// Asserts that `token` is refused with a 401 and an OperationOutcome, on a read and a write.
async fn assert_refused(s: &Server, token: &str, why: &str) {
    let caller = s.with_token(token);
    let read = caller.get("Patient").await;
    assert_eq!(
        read.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {}",
        read.text
    );
    assert_eq!(read.body["resourceType"], "OperationOutcome", "{why}");
    assert_eq!(read.body["issue"][0]["code"], "login", "{why}");
    assert!(read.headers.contains_key("www-authenticate"), "{why}");
    let write = caller
        .post("Patient", &json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(
        write.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {}",
        write.text
    );
}

async fn expired_revoked_and_orphaned_tokens_are_refused(s: Server) {
    let nurse = s.add_user("nurse", &[Role::Nurse], None).await;

    let expired = token_for(&s, &nurse, None, Duration::ZERO).await;
    assert_refused(&s, &expired, "expired token").await;

    let revoked = token_for(&s, &nurse, None, Duration::from_secs(3600)).await;
    assert_eq!(
        s.with_token(&revoked).get("Patient").await.status,
        StatusCode::OK
    );
    let live = s
        .records
        .revoke_token(&operator(), &revoked)
        .await
        .expect("revoke");
    assert!(live, "the token was live before");
    assert_refused(&s, &revoked, "revoked token").await;

    // A change of roles revokes the user's tokens: the old nurse token may not go on writing.
    let changed = token_for(&s, &nurse, None, Duration::from_secs(3600)).await;
    assert_eq!(
        s.with_token(&changed).get("Patient").await.status,
        StatusCode::OK
    );
    s.records
        .set_roles(&operator(), &nurse, &[Role::Billing])
        .await
        .expect("set roles");
    assert_refused(&s, &changed, "token from before a role change").await;

    // Disabling the user ends their tokens.
    let disabled = token_for(&s, &nurse, None, Duration::from_secs(3600)).await;
    assert_eq!(
        s.with_token(&disabled).get("Patient").await.status,
        StatusCode::OK
    );
    s.records
        .set_user_disabled(&operator(), &nurse, true)
        .await
        .expect("disable");
    assert_refused(&s, &disabled, "token of a disabled user").await;

    for (bad, why) in [
        ("ic_not-a-real-token", "unknown token"),
        ("not-even-the-prefix", "malformed token"),
        (
            s.token.strip_suffix(|_| true).expect("token"),
            "truncated system token",
        ),
    ] {
        assert_refused(&s, bad, why).await;
    }
}
on_both!(expired_revoked_and_orphaned_tokens_are_refused);

/// Refused requests are audited as `denied`, those without valid credentials too
/// (`Actor::anonymous` is the actor of refused requests, for the audit log).
async fn a_refused_token_is_audited(s: Server) {
    let before = s.audit_head().await;
    let r = s.with_token("ic_not-a-real-token").get("Patient").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let query = AuditFilter {
        after_seq: Some(before),
        outcome: Some(ironchart_records::Outcome::Denied),
        limit: 100,
        ..AuditFilter::default()
    };
    let rows = s
        .records
        .audit_entries(&operator(), &query)
        .await
        .expect("audit log");
    assert!(
        !rows.is_empty(),
        "a request with an invalid bearer token left no `denied` entry in the audit log"
    );
}
on_both!(a_refused_token_is_audited);

async fn tokens_are_never_wider_than_the_roles(s: Server) {
    let patient = s
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Scope"}]}))
        .await;
    let pid = patient["id"].as_str().expect("id");
    // (role, scopes asked for): each lies outside what the role grants.
    let too_wide = [
        (Role::Admin, "user/Patient.r"),
        (Role::Admin, "user/AuditEvent.rs"),
        (Role::Physician, "system/*.rs"),
        (Role::Nurse, "user/Observation.d"),
        (Role::Nurse, "user/*.cruds"),
        (Role::FrontDesk, "user/Observation.r"),
        (Role::FrontDesk, "user/Patient.d"),
        (Role::FrontDesk, "user/*.r"),
        (Role::Billing, "user/Claim.cruds"),
        (Role::Billing, "user/Observation.rs"),
        (Role::Auditor, "user/Patient.r"),
        (Role::Auditor, "user/AuditEvent.u"),
        (Role::Patient, "user/*.rs"),
        (Role::Patient, "patient/*.cruds"),
        (Role::Patient, "patient/Observation.c"),
    ];
    for (role, scopes) in too_wide {
        let linked = (role == Role::Patient).then_some(pid);
        let username = s.add_user(role.as_str(), &[role], linked).await;
        let before = s.audit_head().await;
        let refused = s
            .records
            .issue_user_token(
                &operator(),
                &username,
                Some(scopes),
                Duration::from_secs(60),
            )
            .await;
        assert!(
            matches!(refused, Err(RecordsError::Forbidden(_))),
            "{role} asking for {scopes}: {refused:?}"
        );
        // The refusal is in the log.
        let query = AuditFilter {
            after_seq: Some(before),
            actions: vec![ironchart_records::AuditAction::TokenIssue],
            limit: 10,
            ..AuditFilter::default()
        };
        let rows = s
            .records
            .audit_entries(&operator(), &query)
            .await
            .expect("audit log");
        assert_eq!(rows.len(), 1, "{role} {scopes}");
        assert_eq!(rows[0].outcome, "failure", "{role} {scopes}");
        assert!(
            rows[0].detail.as_deref().unwrap_or("").contains(&username),
            "{role} {scopes}: {:?}",
            rows[0].detail
        );
    }
    // Within the roles is fine, and `patient/` scopes need a linked Patient.
    let nurse = s.add_user("nurse", &[Role::Nurse], None).await;
    s.user_token(&nurse, Some("user/Observation.rs user/Patient.r"))
        .await;
    let no_context = s
        .records
        .issue_user_token(
            &operator(),
            &nurse,
            Some("patient/Observation.rs"),
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(no_context, Err(RecordsError::BadRequest { .. })),
        "{no_context:?}"
    );
}
on_both!(tokens_are_never_wider_than_the_roles);

async fn a_narrowed_token_does_only_what_it_names(s: Server) {
    let patient = s
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Narrowfield"}]}))
        .await;
    let pid = patient["id"].as_str().expect("id").to_string();
    let obs = s.create(&resource_of("Observation", &pid)).await;
    let oid = obs["id"].as_str().expect("id").to_string();
    let condition = s.create(&resource_of("Condition", &pid)).await;
    let cid = condition["id"].as_str().expect("id").to_string();

    let physician = s.add_user("physician", &[Role::Physician], None).await;
    let token = s.user_token(&physician, Some("user/Observation.rs")).await;
    let caller = s.with_token(&token);
    let mut tail = AuditTail::new(&s, &format!("user:{physician}")).await;

    // (request, status): only reading and searching Observations is allowed.
    let new_obs = resource_of("Observation", &pid);
    let checks = [
        ("GET", format!("Observation/{oid}"), StatusCode::OK),
        (
            "GET",
            format!("Observation?subject=Patient/{pid}"),
            StatusCode::OK,
        ),
        ("GET", format!("Patient/{pid}"), StatusCode::FORBIDDEN),
        ("GET", format!("Patient?_id={pid}"), StatusCode::FORBIDDEN),
        (
            "GET",
            format!("Patient/{pid}/_history"),
            StatusCode::FORBIDDEN,
        ),
        ("GET", format!("Condition/{cid}"), StatusCode::FORBIDDEN),
        ("POST", "Observation".to_string(), StatusCode::FORBIDDEN),
        ("PUT", format!("Observation/{oid}"), StatusCode::FORBIDDEN),
        (
            "DELETE",
            format!("Observation/{oid}"),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, path, expected) in &checks {
        let reply = match *method {
            "GET" => caller.get(path).await,
            "POST" => caller.post(path, &new_obs).await,
            "PUT" => caller.put(path, &obs).await,
            _ => caller.delete(path).await,
        };
        assert_eq!(reply.status, *expected, "{method} {path}: {}", reply.text);
        let logged = tail.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{method} {path}: {logged:?}");
        let outcome = if expected.is_success() {
            "success"
        } else {
            "denied"
        };
        assert_eq!(
            logged[0].outcome,
            outcome,
            "{method} {path}: {}",
            brief(&logged[0])
        );
    }

    // Includes, chains and history do not reach past the token's one type either.
    let included = caller
        .get(&format!(
            "Observation?_id={oid}&_include=Observation:subject"
        ))
        .await;
    assert_eq!(included.status, StatusCode::OK, "{}", included.text);
    let types: Vec<&Value> = included.body["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"]["resourceType"])
        .collect();
    assert_eq!(types, ["Observation"], "no Patient is included");
    let chained = "Observation?subject:Patient.family=Narrowfield";
    assert_eq!(
        s.search_ids(chained).await,
        [oid.as_str()],
        "the system token finds it"
    );
    assert!(
        caller.search_ids(chained).await.is_empty(),
        "a chain through Patient finds nothing"
    );
    let history = caller.get("_history").await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let entries = history.body["entry"].as_array().expect("entries");
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Observation"),
        "system history holds only Observations: {}",
        history.text
    );
    assert_eq!(history.body["total"], entries.len());
}
on_both!(a_narrowed_token_does_only_what_it_names);

async fn only_auditors_read_the_audit_log(s: Server) {
    let (auditor, auditor_token) = s.user_with_token(Role::Auditor, None).await;
    let (physician, physician_token) = s.user_with_token(Role::Physician, None).await;
    let auditor_actor = s
        .records
        .authenticate(&auditor_token)
        .await
        .expect("auditor");
    let physician_actor = s
        .records
        .authenticate(&physician_token)
        .await
        .expect("physician");

    // The physician reads something; the auditor sees it in the log.
    let p = s
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Logged"}]}))
        .await;
    let pid = p["id"].as_str().expect("id");
    let read = s
        .with_token(&physician_token)
        .get(&format!("Patient/{pid}"))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let query = AuditFilter {
        actor: Some(format!("user:{physician}")),
        patient: ironchart_fhir::PatientId::parse(pid),
        limit: 10,
        ..AuditFilter::default()
    };
    let rows = s
        .records
        .audit_entries(&auditor_actor, &query)
        .await
        .expect("auditors read the log");
    let briefs: Vec<String> = rows.iter().map(brief).collect();
    assert_eq!(briefs, [format!("read Patient/{pid} success [{pid}]")]);
    assert_eq!(rows[0].role.as_deref(), Some("physician"));
    assert!(
        rows[0].request_id.is_some(),
        "HTTP requests carry a request id"
    );
    assert!(rows[0].source.is_some(), "and the client address");

    // Nobody else reads it, and trying is itself logged.
    let refused = s.records.audit_entries(&physician_actor, &query).await;
    assert!(
        matches!(refused, Err(RecordsError::Forbidden(_))),
        "{refused:?}"
    );
    let reads = AuditFilter {
        actions: vec![ironchart_records::AuditAction::AuditRead],
        limit: 100,
        ..AuditFilter::default()
    };
    let log_reads: Vec<(String, String)> = s
        .records
        .audit_entries(&auditor_actor, &reads)
        .await
        .expect("log")
        .into_iter()
        .filter(|r| r.actor != "system")
        .map(|r| (r.actor, r.outcome))
        .collect();
    assert_eq!(
        log_reads,
        [
            (format!("user:{auditor}"), "success".to_string()),
            (format!("user:{physician}"), "denied".to_string()),
        ]
    );
}
on_both!(only_auditors_read_the_audit_log);

/// SMART's `r` covers read, vread and history; `s` only search. A search-only token is refused
/// type history (403) but gets the same versions through system history.
async fn a_search_only_token_reads_no_history(s: Server) {
    let patient = s
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Searchonly"}]}))
        .await;
    let pid = patient["id"].as_str().expect("id");
    let obs = s.create(&resource_of("Observation", pid)).await;
    let oid = obs["id"].as_str().expect("id");
    let physician = s.add_user("physician", &[Role::Physician], None).await;
    let token = s.user_token(&physician, Some("user/Observation.s")).await;
    let caller = s.with_token(&token);

    assert_eq!(caller.search_ids("Observation").await, [oid]);
    for path in [
        format!("Observation/{oid}"),
        format!("Observation/{oid}/_history/1"),
        format!("Observation/{oid}/_history"),
        "Observation/_history".to_string(),
    ] {
        let r = caller.get(&path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
    }
    let system = caller.get("_history").await;
    let leaked = system.body["entry"].as_array().map_or(0, |e| e.len());
    assert!(
        system.status == StatusCode::FORBIDDEN || leaked == 0,
        "system history serves {leaked} Observation versions to a token without read: {}",
        system.text
    );
}
on_both!(a_search_only_token_reads_no_history);
