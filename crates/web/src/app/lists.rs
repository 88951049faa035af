//! The patient's lists: problems (ICD-10-CM), medications, allergies (drug, food, environment;
//! reaction, severity; "no known allergies" as a recorded statement) and immunizations (CVX, date,
//! lot, site). Each can be added to and changed (resolved, stopped, marked entered in error), and
//! each entry's history (every version, who changed it and when) is one click away. Every write
//! is a FHIR resource written through `records` as the user.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironchart_fhir::{Id, ResourceType};
use ironchart_records::{HistoryScope, Interaction, RecordsError, Resource};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chart::{
    AllergyStatus, Banner, allergy_of, banner_of, concept_text, display_date, find_if_allowed,
    medication_text, patient_of, search_if_allowed, text_at,
};
use super::visit::{Problems, me_ref};
use super::{Nav, PageError, SignedIn, display_time, page};
use crate::AppState;
use crate::terminology::{self, Terminology};

struct Row {
    /// `Condition/abc`, for its actions and history.
    kind: &'static str,
    id: String,
    text: String,
    detail: String,
    status: String,
    when: String,
    /// The status changes offered: (new status, button label).
    actions: Vec<(&'static str, &'static str)>,
}

struct Choice {
    code: String,
    display: String,
}

#[derive(Template)]
#[template(path = "lists.html")]
struct ListsPage {
    nav: Option<Nav>,
    banner: Banner,
    problems: Option<Vec<Row>>,
    medications: Option<Vec<Row>>,
    allergies: Option<Vec<Row>>,
    immunizations: Option<Vec<Row>>,
    may_problem: bool,
    may_allergy: bool,
    may_immunize: bool,
    /// "No known allergies" may be recorded (nothing in force is listed).
    may_nka: bool,
    problems_found: Problems,
    form: AddForm,
    problem_choices: Vec<Choice>,
    vaccine_choices: Vec<Choice>,
    sites: &'static [&'static str],
}

/// Every add form's fields (one struct: each form posts its own).
#[derive(Deserialize, Default, Clone)]
pub(crate) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    problem: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    onset: String,
    #[serde(default)]
    substance: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    reaction: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    vaccine: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    lot: String,
    #[serde(default)]
    site: String,
}

pub(crate) const SITES: [&str; 6] = [
    "left arm",
    "right arm",
    "left thigh",
    "right thigh",
    "left buttock",
    "right buttock",
];

fn may(me: &SignedIn, rt: &str, i: Interaction) -> bool {
    me.actor.scopes().allows(rt, i)
}

fn clinical(me: &SignedIn) -> bool {
    me.actor.roles().iter().any(|r| r.is_clinical())
}

/// `GET /patients/{id}/lists`.
pub(crate) async fn lists(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
) -> Result<Response, PageError> {
    render(
        &state,
        &me,
        &pid,
        AddForm::default(),
        Problems::default(),
        Vec::new(),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn render(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    form: AddForm,
    problems_found: Problems,
    problem_choices: Vec<Choice>,
    vaccine_choices: Vec<Choice>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (pid, banner) = banner_of(state, actor, pid).await?;
    let by_patient = [("patient", pid.to_string()), ("_count", "200".into())];
    let writable = |rt: &str| clinical(me) && may(me, rt, Interaction::Update);
    let problems = find_if_allowed(state, actor, "Condition", &by_patient)
        .await?
        .map(|found| {
            let mut rows: Vec<Row> = found
                .iter()
                .map(|r| {
                    let v = r.value();
                    let status = text_at(&v, "/clinicalStatus/coding/0/code");
                    // A visit's diagnosis belongs to its visit (and is locked with it once signed):
                    // it is listed, and changed on the problem list only as a problem of its own.
                    let visit = v.get("encounter").is_some();
                    let actions = match status.as_str() {
                        _ if !writable("Condition") || visit => vec![],
                        "active" | "recurrence" | "relapse" => {
                            vec![("resolved", "Resolve"), ("inactive", "Make inactive")]
                        }
                        _ => vec![("active", "Make active again")],
                    };
                    Row {
                        kind: "Condition",
                        id: r.id.to_string(),
                        text: concept_text(v.get("code")),
                        detail: if visit {
                            format!(
                                "{} · diagnosed in a visit",
                                text_at(&v, "/code/coding/0/code")
                            )
                        } else {
                            text_at(&v, "/code/coding/0/code")
                        },
                        status,
                        when: v
                            .get("onsetDateTime")
                            .or_else(|| v.get("recordedDate"))
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        actions,
                    }
                })
                .collect();
            rows.sort_by_key(|r| r.status != "active");
            rows
        });
    // The Medications the prescriptions name come with them, for the drug's name.
    let mut with_drugs = by_patient.to_vec();
    with_drugs.push(("_include", "MedicationRequest:medication".into()));
    let medications = search_if_allowed(state, actor, "MedicationRequest", &with_drugs)
        .await?
        .map(|found| {
            let drugs: Vec<Value> = found.included.iter().map(Resource::value).collect();
            let mut rows: Vec<Row> = found
                .matches
                .iter()
                .map(|r| {
                    let v = r.value();
                    let status = text_at(&v, "/status");
                    let actions = if status == "active" && writable("MedicationRequest") {
                        vec![("stopped", "Stop"), ("completed", "Completed")]
                    } else {
                        vec![]
                    };
                    Row {
                        kind: "MedicationRequest",
                        id: r.id.to_string(),
                        text: medication_text(&v, &drugs),
                        detail: text_at(&v, "/dosageInstruction/0/text"),
                        status,
                        when: v
                            .get("authoredOn")
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        actions,
                    }
                })
                .collect();
            rows.sort_by_key(|r| r.status != "active");
            rows
        });
    let mut in_force = 0;
    let allergies = find_if_allowed(state, actor, "AllergyIntolerance", &by_patient)
        .await?
        .map(|found| {
            found
                .iter()
                .map(|r| {
                    let v = r.value();
                    let current = allergy_of(&v);
                    if current.as_ref().is_some_and(|a| !a.none_known) {
                        in_force += 1;
                    }
                    let status = match (
                        text_at(&v, "/verificationStatus/coding/0/code").as_str(),
                        text_at(&v, "/clinicalStatus/coding/0/code"),
                    ) {
                        ("entered-in-error", _) => "entered in error".to_string(),
                        ("refuted", _) => "refuted".to_string(),
                        (_, s) if s.is_empty() => "active".to_string(),
                        (_, s) => s,
                    };
                    let actions = if current.is_some() && writable("AllergyIntolerance") {
                        vec![
                            ("inactive", "Make inactive"),
                            ("entered-in-error", "Entered in error"),
                        ]
                    } else {
                        vec![]
                    };
                    let mut detail = current.map(|a| a.reaction).unwrap_or_default();
                    if let Some(c) = v.get("criticality").and_then(Value::as_str) {
                        detail = format!("{detail} · criticality {c}")
                            .trim_start_matches(" · ")
                            .to_string();
                    }
                    Row {
                        kind: "AllergyIntolerance",
                        id: r.id.to_string(),
                        text: concept_text(v.get("code")),
                        detail,
                        status,
                        when: v
                            .get("recordedDate")
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        actions,
                    }
                })
                .collect::<Vec<_>>()
        });
    let immunizations = find_if_allowed(state, actor, "Immunization", &by_patient)
        .await?
        .map(|found| {
            found
                .iter()
                .map(|r| {
                    let v = r.value();
                    let status = text_at(&v, "/status");
                    let actions = if status == "completed" && writable("Immunization") {
                        vec![("entered-in-error", "Entered in error")]
                    } else {
                        vec![]
                    };
                    let lot = text_at(&v, "/lotNumber");
                    let site = concept_text(v.get("site"));
                    Row {
                        kind: "Immunization",
                        id: r.id.to_string(),
                        text: concept_text(v.get("vaccineCode")),
                        detail: [
                            (!lot.is_empty()).then(|| format!("lot {lot}")),
                            v.get("site").map(|_| site),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                        status,
                        when: v
                            .get("occurrenceDateTime")
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        actions,
                    }
                })
                .collect::<Vec<_>>()
        });
    let may_allergy = clinical(me) && may(me, "AllergyIntolerance", Interaction::Create);
    Ok(super::page(
        status,
        &ListsPage {
            nav: Some(me.nav()),
            may_nka: may_allergy
                && allergies.is_some()
                && in_force == 0
                && !matches!(banner.allergies, AllergyStatus::NoneKnown),
            banner,
            problems,
            medications,
            allergies,
            immunizations,
            may_problem: clinical(me) && may(me, "Condition", Interaction::Create),
            may_allergy,
            may_immunize: clinical(me) && may(me, "Immunization", Interaction::Create),
            problems_found,
            form,
            problem_choices,
            vaccine_choices,
            sites: &SITES,
        },
    ))
}

fn back(pid: &Id) -> Response {
    Redirect::to(&format!("/patients/{pid}/lists")).into_response()
}

/// A date typed as `yyyy-mm-dd` (or `03-Feb-1961`), not in the future; empty is `None`.
fn past_date(text: &str, today: &str) -> Result<Option<String>, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let iso = super::chart::iso_date(text).ok_or("Enter the date as 2024-03-05 or 05-Mar-2024")?;
    if iso.as_str() > today {
        return Err("The date cannot be in the future");
    }
    Ok(Some(iso))
}

/// `POST /patients/{id}/lists/problems`.
pub(crate) async fn add_problem(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let terms: &Terminology = &state.config.terminology;
    let today = state.records.now().to_string();
    let today = today.get(..10).unwrap_or("");
    let mut problems = Problems::default();
    let onset = past_date(&form.onset, today).unwrap_or_else(|m| {
        problems.add("onset", m);
        None
    });
    let picked = super::visit::resolve(
        &form.problem,
        &form.code,
        |c| terms.diagnosis(c),
        |q| terms.diagnoses(q, 12),
        |c| c.display.as_str(),
    );
    let code = match picked {
        Ok(c) => Some(c),
        Err(choices) => {
            problems.add(
                "problem",
                if form.problem.trim().is_empty() {
                    "Type the problem or its ICD-10-CM code"
                } else if choices.is_empty() {
                    "No diagnosis matches: try other words or the code"
                } else {
                    "Several diagnoses match: pick one"
                },
            );
            let choices = choices
                .into_iter()
                .map(|c| Choice {
                    code: c.code.clone(),
                    display: c.display.clone(),
                })
                .collect();
            return render(
                &state,
                &me,
                &pid,
                form,
                problems,
                choices,
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let (Some(code), true) = (code, problems.is_empty()) else {
        return render(
            &state,
            &me,
            &pid,
            form,
            problems,
            Vec::new(),
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let mut condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]}],
        "code": {"coding": [{"system": terminology::ICD10CM, "code": code.code, "display": code.display}], "text": code.display},
        "subject": {"reference": format!("Patient/{pid_id}")},
        "recordedDate": state.records.now().to_string(),
        "recorder": me_ref(&state, &me.actor).await?
    });
    if let Some(onset) = onset {
        condition["onsetDateTime"] = json!(onset);
    }
    state
        .records
        .create(&me.actor, ResourceType::CONDITION, condition, None)
        .await?;
    Ok(back(&pid_id))
}

/// `POST /patients/{id}/lists/allergies`: an allergy, or (with nothing else in force) the
/// statement "no known allergies".
pub(crate) async fn add_allergy(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let base = json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
        "patient": {"reference": format!("Patient/{pid_id}")},
        "recordedDate": state.records.now().to_string(),
        "recorder": me_ref(&state, &me.actor).await?
    });
    let mut allergy = base;
    if form.substance.trim().is_empty() && form.category == "none-known" {
        allergy["code"] = json!({"coding": [{"system": terminology::SNOMED, "code": "716186003", "display": "No known allergy (situation)"}], "text": "No known allergies"});
    } else {
        let mut problems = Problems::default();
        let substance = form.substance.trim();
        if substance.is_empty() {
            problems.add("substance", "Type what the patient is allergic to");
        }
        if !matches!(
            form.category.as_str(),
            "medication" | "food" | "environment"
        ) {
            problems.add("category", "Choose drug, food or environment");
        }
        if !matches!(form.severity.as_str(), "" | "mild" | "moderate" | "severe") {
            problems.add("severity", "Choose the severity");
        }
        if !problems.is_empty() {
            return render(
                &state,
                &me,
                &pid,
                form,
                problems,
                Vec::new(),
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        // A drug substance is coded when the drug list knows it (an ingredient, by RxNorm).
        let terms: &Terminology = &state.config.terminology;
        let folded = terminology::fold(substance);
        let ingredient = terms
            .drugs
            .iter()
            .flat_map(|d| d.ingredients.iter())
            .find(|(_, name)| terminology::fold(name) == folded);
        allergy["code"] = match ingredient {
            Some((code, name)) if form.category == "medication" => json!({
                "coding": [{"system": terminology::RXNORM, "code": code, "display": name}],
                "text": substance
            }),
            _ => json!({"text": substance}),
        };
        allergy["category"] = json!([form.category]);
        if !form.reaction.trim().is_empty() {
            let mut reaction = json!({"manifestation": [{"text": form.reaction.trim()}]});
            if !form.severity.is_empty() {
                reaction["severity"] = json!(form.severity);
            }
            allergy["reaction"] = json!([reaction]);
        }
        if form.severity == "severe" {
            allergy["criticality"] = json!("high");
        }
    }
    state
        .records
        .create(&me.actor, ResourceType::ALLERGY_INTOLERANCE, allergy, None)
        .await?;
    Ok(back(&pid_id))
}

/// `POST /patients/{id}/lists/immunizations`.
pub(crate) async fn add_immunization(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let terms: &Terminology = &state.config.terminology;
    let today = state.records.now().to_string();
    let today = today.get(..10).unwrap_or("");
    let mut problems = Problems::default();
    let date = match past_date(&form.date, today) {
        Ok(Some(d)) => Some(d),
        Ok(None) => {
            problems.add("date", "Enter the date it was given");
            None
        }
        Err(m) => {
            problems.add("date", m);
            None
        }
    };
    if !form.site.is_empty() && !SITES.contains(&form.site.as_str()) {
        problems.add("site", "Choose the site");
    }
    let picked = super::visit::resolve(
        &form.vaccine,
        &form.code,
        |c| terms.vaccine(c),
        |q| terms.vaccines(q, 12),
        |c| c.display.as_str(),
    );
    let mut choices = Vec::new();
    let vaccine = match picked {
        Ok(v) => Some(v),
        Err(found) => {
            problems.add(
                "vaccine",
                if form.vaccine.trim().is_empty() {
                    "Type the vaccine or its CVX code"
                } else if found.is_empty() {
                    "No vaccine matches: try other words or the CVX code"
                } else {
                    "Several vaccines match: pick one"
                },
            );
            choices = found
                .into_iter()
                .map(|c| Choice {
                    code: c.code.clone(),
                    display: c.display.clone(),
                })
                .collect();
            None
        }
    };
    let (Some(vaccine), Some(date), true) = (vaccine, date, problems.is_empty()) else {
        return render(
            &state,
            &me,
            &pid,
            form,
            problems,
            Vec::new(),
            choices,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let mut immunization = json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": terminology::CVX, "code": vaccine.code, "display": vaccine.display}], "text": vaccine.display},
        "patient": {"reference": format!("Patient/{pid_id}")},
        "occurrenceDateTime": date,
        "recorded": state.records.now().to_string(),
        "primarySource": true,
        "performer": [{"actor": me_ref(&state, &me.actor).await?}]
    });
    if !form.lot.trim().is_empty() {
        immunization["lotNumber"] = json!(form.lot.trim());
    }
    if !form.site.is_empty() {
        immunization["site"] = json!({"text": form.site});
    }
    state
        .records
        .create(&me.actor, ResourceType::IMMUNIZATION, immunization, None)
        .await?;
    Ok(back(&pid_id))
}

#[derive(Deserialize, Default)]
pub(crate) struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
}

/// A list URL naming no list: a 404.
fn unknown_kind(kind: &str) -> PageError {
    PageError::Records(RecordsError::NotFound(
        "list".into(),
        kind.chars().take(40).collect(),
    ))
}

/// The types whose entries the lists change, and the statuses each may be given.
fn changeable(kind: &str) -> Option<(ResourceType, &'static [&'static str])> {
    match kind {
        "Condition" => Some((ResourceType::CONDITION, &["active", "resolved", "inactive"])),
        "MedicationRequest" => Some((ResourceType::MEDICATION_REQUEST, &["stopped", "completed"])),
        "AllergyIntolerance" => Some((
            ResourceType::ALLERGY_INTOLERANCE,
            &["inactive", "entered-in-error"],
        )),
        "Immunization" => Some((ResourceType::IMMUNIZATION, &["entered-in-error"])),
        _ => None,
    }
}

/// `POST /patients/{id}/lists/{type}/{rid}/status`: resolve, stop, make inactive … (a new
/// version; the earlier ones stay in the history).
pub(crate) async fn change_status(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, kind, rid)): Path<(String, String, String)>,
    Form(form): Form<StatusForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (rt, statuses) = changeable(&kind).ok_or_else(|| unknown_kind(&kind))?;
    if !statuses.contains(&form.status.as_str()) {
        return Err(PageError::Records(RecordsError::BadRequest {
            message: "that status cannot be given here".into(),
            expression: None,
        }));
    }
    let found = entry_of(&state, &me, &pid_id, rt, &rid).await?;
    let mut v = found.value();
    let now = state.records.now().to_string();
    match kind.as_str() {
        "Condition" => {
            v["clinicalStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": form.status}]});
            if form.status == "resolved" {
                v["abatementDateTime"] = json!(now);
            } else if let Some(o) = v.as_object_mut() {
                o.shift_remove("abatementDateTime");
            }
        }
        "AllergyIntolerance" if form.status == "entered-in-error" => {
            v["verificationStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "entered-in-error"}]});
            if let Some(o) = v.as_object_mut() {
                // R4: an allergy entered in error carries no clinical status.
                o.shift_remove("clinicalStatus");
            }
        }
        "AllergyIntolerance" => {
            v["clinicalStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": form.status}]});
        }
        _ => v["status"] = json!(form.status),
    }
    // Who changed it and when, in the record itself (the history shows it per version).
    let said = json!({
        "authorString": me.actor.username().unwrap_or("unknown"),
        "time": now,
        "text": format!("Status changed to {}", form.status)
    });
    match v.get_mut("note").and_then(Value::as_array_mut) {
        Some(notes) => notes.push(said),
        None => v["note"] = json!([said]),
    }
    state
        .records
        .update(&me.actor, rt, &found.id, v, Some(found.version))
        .await?;
    Ok(back(&pid_id))
}

/// One entry of this patient's, read as the user (a 404 for another patient's).
async fn entry_of(
    state: &AppState,
    me: &SignedIn,
    pid: &Id,
    rt: ResourceType,
    rid: &str,
) -> Result<Resource, PageError> {
    let not_found = || PageError::Records(RecordsError::NotFound(rt.to_string(), rid.into()));
    let id = Id::parse(rid).ok_or_else(not_found)?;
    let found = state.records.read(&me.actor, rt, &id).await?;
    let v = found.value();
    let subject = v
        .pointer("/subject/reference")
        .or_else(|| v.pointer("/patient/reference"))
        .and_then(Value::as_str);
    if subject != Some(&format!("Patient/{pid}")) {
        return Err(not_found());
    }
    Ok(found)
}

struct Version {
    version: i64,
    when: String,
    by: String,
    status: String,
    text: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    nav: Option<Nav>,
    banner: Banner,
    kind: String,
    versions: Vec<Version>,
}

/// `GET /patients/{id}/lists/{type}/{rid}/history`: every version, newest first.
pub(crate) async fn history(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, kind, rid)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (pid_id, banner) = banner_of(&state, &me.actor, &pid).await?;
    let (rt, _) = changeable(&kind).ok_or_else(|| unknown_kind(&kind))?;
    let found = entry_of(&state, &me, &pid_id, rt, &rid).await?;
    let versions = state
        .records
        .history(
            &me.actor,
            &HistoryScope::Instance(rt, found.id.clone()),
            None,
            100,
            None,
        )
        .await?;
    let versions = versions
        .entries
        .iter()
        .map(|r| {
            let v = r.value();
            let status = if r.deleted {
                "deleted".to_string()
            } else {
                [
                    "/verificationStatus/coding/0/code",
                    "/clinicalStatus/coding/0/code",
                    "/status",
                ]
                .iter()
                .map(|p| text_at(&v, p))
                .find(|s| !s.is_empty() && s != "confirmed")
                .unwrap_or_default()
            };
            Version {
                version: r.version,
                when: display_time(r.last_updated.as_millis()),
                by: v
                    .get("note")
                    .and_then(Value::as_array)
                    .and_then(|n| n.last())
                    .and_then(|n| n.get("authorString"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        [
                            "/recorder/display",
                            "/requester/display",
                            "/performer/0/actor/display",
                        ]
                        .iter()
                        .map(|p| text_at(&v, p))
                        .find(|s| !s.is_empty())
                    })
                    .unwrap_or_default(),
                status,
                text: if !r.deleted && rt == ResourceType::MEDICATION_REQUEST {
                    medication_text(&v, &[])
                } else {
                    [v.get("code"), v.get("vaccineCode")]
                        .into_iter()
                        .flatten()
                        .next()
                        .map(|c| concept_text(Some(c)))
                        .unwrap_or_default()
                },
            }
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &HistoryPage {
            nav: Some(me.nav()),
            banner,
            kind: kind.clone(),
            versions,
        },
    ))
}
