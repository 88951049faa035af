//! A visit, from vitals to signed note: start it (an Encounter), record vital signs (in the
//! user's units, stored in UCUM), write the SOAP note (a DocumentReference), add diagnoses by
//! typing (ICD-10-CM Conditions), order tests (LOINC ServiceRequests), prescribe (RxNorm
//! MedicationRequests, checked against the patient's allergies by ingredient and class), and
//! sign with the password. A signed visit is locked by `records` for every writer; corrections
//! are addenda, shown under the original.
//!
//! Every form that fails keeps what was typed and says what is wrong next to the field.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use base64::Engine;
use ironchart_fhir::bundle::BundleEntry;
use ironchart_fhir::{Id, ResourceType};
use ironchart_records::{Actor, Interaction, RecordsError, Resource, SignOutcome};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chart::{
    Allergy, AllergyStatus, Banner, allergy_of, banner_of, concept_text, display_date, find,
    find_if_allowed, may_search, medication_concept, medication_id, medication_text, patient_of,
    search_if_allowed, text_at,
};
use super::vitals::{self, Units};
use super::{Nav, PageError, SignedIn, display_time, page};
use crate::AppState;
use crate::terminology::{self, Drug, Terminology};

/// Most choices offered for a typed diagnosis or drug.
const CHOICES: usize = 12;

/// A form field's problem.
#[derive(Default, Clone)]
pub(crate) struct Problems(Vec<(String, String)>);

impl Problems {
    pub(crate) fn of(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn all(&self) -> &[(String, String)] {
        &self.0
    }
}

struct VitalRow {
    name: String,
    value: String,
    flag: String,
    when: String,
}

struct VitalField {
    field: &'static str,
    label: &'static str,
    unit: &'static str,
    value: String,
}

struct NoteView {
    sections: Vec<(String, String)>,
    status: String,
    author: String,
    when: String,
}

struct Addendum {
    author: String,
    when: String,
    text: String,
}

struct Line {
    text: String,
    detail: String,
    note: String,
    /// A printable prescription.
    print: Option<String>,
}

impl Line {
    fn new(text: String, detail: String) -> Line {
        Line {
            text,
            detail,
            note: String::new(),
            print: None,
        }
    }
}

struct Choice {
    code: String,
    display: String,
}

/// The allergy alert raised by a drug.
pub(crate) struct Alert {
    allergen: String,
    reaction: String,
    why: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subjective: String,
    #[serde(default)]
    objective: String,
    #[serde(default)]
    assessment: String,
    #[serde(default)]
    plan: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct DiagnosisForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    diagnosis: String,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct OrderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct RxForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    drug: String,
    #[serde(default)]
    rxcui: String,
    #[serde(default)]
    dose: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    frequency: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    reason: String,
    /// Set when the form was shown with an alert.
    #[serde(default)]
    alerted: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct SignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) const ROUTES: [&str; 10] = [
    "oral",
    "sublingual",
    "topical",
    "inhaled",
    "nasal",
    "ophthalmic",
    "otic",
    "subcutaneous",
    "intramuscular",
    "rectal",
];

/// A frequency: its words, and times per period (of `unit`), or as needed.
pub(crate) const FREQUENCIES: [(&str, u32, u32, &str); 9] = [
    ("once a day", 1, 1, "d"),
    ("twice a day", 2, 1, "d"),
    ("three times a day", 3, 1, "d"),
    ("four times a day", 4, 1, "d"),
    ("every 4 hours", 1, 4, "h"),
    ("every 6 hours", 1, 6, "h"),
    ("every 8 hours", 1, 8, "h"),
    ("at bedtime", 1, 1, "d"),
    ("as needed", 0, 0, ""),
];

#[derive(Template)]
#[template(path = "visit.html")]
struct VisitPage {
    nav: Option<Nav>,
    banner: Banner,
    enc: String,
    started: String,
    status: String,
    signed: Option<String>,
    units: &'static str,
    vitals: Option<Vec<VitalRow>>,
    vital_fields: Vec<VitalField>,
    may_vitals: bool,
    note: Option<NoteView>,
    notes_shown: bool,
    may_note: bool,
    note_fields: Vec<(&'static str, &'static str, String)>,
    latest_weight: Option<String>,
    addenda: Vec<Addendum>,
    may_addendum: bool,
    diagnoses: Option<Vec<Line>>,
    may_diagnose: bool,
    orders: Option<Vec<Line>>,
    may_order: bool,
    order_choices: Vec<Choice>,
    prescriptions: Option<Vec<Line>>,
    may_prescribe: bool,
    may_sign: bool,
    routes: &'static [&'static str],
    frequencies: Vec<&'static str>,
    // What a failed form keeps.
    problems: Problems,
    dx_form: DiagnosisForm,
    dx_choices: Vec<Choice>,
    order_form: OrderForm,
    rx_form: RxForm,
    rx_choices: Vec<Choice>,
    alert: Option<Alert>,
    addendum_text: String,
}

/// What a POST hands back to the page when it fails.
#[derive(Default)]
struct Kept {
    form: &'static str,
    problems: Problems,
    vitals: HashMap<String, String>,
    note: NoteForm,
    dx: DiagnosisForm,
    dx_choices: Vec<Choice>,
    order: OrderForm,
    rx: RxForm,
    rx_choices: Vec<Choice>,
    alert: Option<Alert>,
    addendum: String,
}

/// The Encounter a visit URL names, read as the user; a 404 unless it is this patient's.
async fn encounter_of(
    state: &AppState,
    actor: &Actor,
    pid: &Id,
    enc: &str,
) -> Result<(Id, Resource), PageError> {
    let not_found = || PageError::Records(RecordsError::NotFound("Encounter".into(), enc.into()));
    let id = Id::parse(enc).ok_or_else(not_found)?;
    let found = state
        .records
        .read(actor, ResourceType::ENCOUNTER, &id)
        .await?;
    let subject = found.value();
    let subject = subject
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .unwrap_or("");
    if subject != format!("Patient/{pid}") {
        return Err(not_found());
    }
    Ok((id, found))
}

fn may(actor: &Actor, resource_type: &str, i: Interaction) -> bool {
    actor.scopes().allows(resource_type, i)
}

fn clinical(actor: &Actor) -> bool {
    actor.roles().iter().any(|r| r.is_clinical())
}

async fn units_of(state: &AppState, actor: &Actor) -> Result<Units, PageError> {
    Ok(Units::of(
        state.records.preference(actor, "units").await?.as_deref(),
    ))
}

fn now_text(state: &AppState) -> String {
    state.records.now().to_string()
}

/// The signed-in clinician as a FHIR reference: their Practitioner (made once, found by the
/// identifier `urn:ironchart:user|<name>`), so that orders, notes and results can be searched by
/// who wrote them; a name alone when the role may not keep Practitioners.
pub(crate) async fn me_ref(state: &AppState, actor: &Actor) -> Result<Value, PageError> {
    let name = actor.username().unwrap_or("unknown").to_string();
    if !may(actor, "Practitioner", Interaction::Create)
        || !may(actor, "Practitioner", Interaction::Search)
    {
        return Ok(json!({"display": name}));
    }
    let query = ironchart_fhir::search::SearchQuery::parse(
        "Practitioner",
        &[("identifier".into(), format!("{USER_SYSTEM}|{name}"))],
    )
    .map_err(|e| {
        PageError::Records(RecordsError::BadRequest {
            message: e.message,
            expression: None,
        })
    })?;
    let practitioner = json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": USER_SYSTEM, "value": name}],
        "active": true,
        "name": [{"text": name}]
    });
    let found = state
        .records
        .create(
            actor,
            ResourceType::PRACTITIONER,
            practitioner,
            Some(&query),
        )
        .await?;
    Ok(json!({"reference": format!("Practitioner/{}", found.resource.id), "display": name}))
}

/// The identifier system of a user's Practitioner.
pub(crate) const USER_SYSTEM: &str = "urn:ironchart:user";

/// `POST /patients/{id}/visits`: starts a visit now.
pub(crate) async fn start(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid = patient_of(&state, &me.actor, &pid).await?.id;
    let who = me_ref(&state, &me.actor).await?;
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Office visit"}],
        "subject": {"reference": format!("Patient/{pid}")},
        "participant": [{"individual": who}],
        "period": {"start": now_text(&state)}
    });
    let created = state
        .records
        .create(&me.actor, ResourceType::ENCOUNTER, encounter, None)
        .await?;
    Ok(Redirect::to(&format!("/patients/{pid}/visits/{}", created.resource.id)).into_response())
}

/// `GET /patients/{id}/visits/{enc}`.
pub(crate) async fn visit(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
) -> Result<Response, PageError> {
    render(&state, &me, &pid, &enc, Kept::default(), StatusCode::OK).await
}

fn note_text(n: &NoteForm) -> String {
    let mut out = String::new();
    for (heading, text) in [
        ("Subjective", &n.subjective),
        ("Objective", &n.objective),
        ("Assessment", &n.assessment),
        ("Plan", &n.plan),
    ] {
        out.push_str(heading);
        out.push_str(":\n");
        out.push_str(text.trim());
        out.push_str("\n\n");
    }
    out.trim_end().to_string()
}

/// The sections of a note written by [`note_text`] (any other text is one section).
fn note_sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let heading = ["Subjective:", "Objective:", "Assessment:", "Plan:"]
            .into_iter()
            .find(|h| line.trim_end() == *h);
        match (heading, out.last_mut()) {
            (Some(h), _) => out.push((h.trim_end_matches(':').to_string(), String::new())),
            (None, Some((_, body))) => {
                if !body.is_empty() {
                    body.push('\n');
                }
                body.push_str(line);
            }
            (None, None) => out.push(("Note".into(), line.to_string())),
        }
    }
    for (_, body) in &mut out {
        *body = body.trim().to_string();
    }
    out
}

fn attachment_text(doc: &Value) -> String {
    doc.pointer("/content/0/attachment/data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

fn is_addendum(doc: &Value) -> bool {
    doc.get("relatesTo")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .any(|r| r.get("code").and_then(Value::as_str) == Some("appends"))
        })
}

fn author(v: &Value) -> String {
    v.pointer("/author/0/display")
        .or_else(|| v.pointer("/recorder/display"))
        .or_else(|| v.pointer("/requester/display"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

async fn render(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    enc: &str,
    kept: Kept,
    status: StatusCode,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (pid, banner) = banner_of(state, actor, pid).await?;
    let (enc_id, encounter) = encounter_of(state, actor, &pid, enc).await?;
    let signature = state.records.signature(&encounter).await?;
    let units = units_of(state, actor).await?;
    let ev = encounter.value();
    let locked = signature.is_some();
    let by_encounter = [
        ("encounter", format!("Encounter/{enc_id}")),
        ("_count", "200".into()),
    ];
    let vitals = find_if_allowed(state, actor, "Observation", &by_encounter)
        .await?
        .map(|found| {
            found
                .iter()
                .map(|r| r.value())
                .filter(|o| {
                    o.pointer("/category/0/coding/0/code")
                        .and_then(Value::as_str)
                        == Some("vital-signs")
                })
                .map(|o| vital_row(&o, units))
                .collect::<Vec<_>>()
        });
    let docs = find_if_allowed(state, actor, "DocumentReference", &by_encounter).await?;
    let notes_shown = docs.is_some();
    let mut note = None;
    let mut addenda = Vec::new();
    for d in docs.iter().flatten() {
        let v = d.value();
        if is_addendum(&v) {
            addenda.push(Addendum {
                author: author(&v),
                when: v
                    .get("date")
                    .and_then(Value::as_str)
                    .map(display_time_text)
                    .unwrap_or_default(),
                text: attachment_text(&v),
            });
        } else if note.is_none() {
            note = Some(NoteView {
                sections: note_sections(&attachment_text(&v)),
                status: v
                    .get("docStatus")
                    .and_then(Value::as_str)
                    .unwrap_or("preliminary")
                    .to_string(),
                author: author(&v),
                when: v
                    .get("date")
                    .and_then(Value::as_str)
                    .map(display_time_text)
                    .unwrap_or_default(),
            });
        }
    }
    addenda.sort_by(|a, b| a.when.cmp(&b.when));
    let diagnoses = find_if_allowed(state, actor, "Condition", &by_encounter)
        .await?
        .map(|found| {
            found
                .iter()
                .map(|r| {
                    let v = r.value();
                    Line::new(
                        concept_text(v.get("code")),
                        text_at(&v, "/code/coding/0/code"),
                    )
                })
                .collect()
        });
    let orders = find_if_allowed(state, actor, "ServiceRequest", &by_encounter)
        .await?
        .map(|found| {
            found
                .iter()
                .map(|r| {
                    let v = r.value();
                    Line::new(concept_text(v.get("code")), text_at(&v, "/status"))
                })
                .collect()
        });
    // The Medications the prescriptions name come with them, for the drug's name.
    let mut with_drugs = by_encounter.to_vec();
    with_drugs.push(("_include", "MedicationRequest:medication".into()));
    let prescriptions = search_if_allowed(state, actor, "MedicationRequest", &with_drugs)
        .await?
        .map(|found| {
            let drugs: Vec<Value> = found.included.iter().map(Resource::value).collect();
            found
                .matches
                .iter()
                .map(|r| {
                    let v = r.value();
                    Line {
                        note: text_at(&v, "/note/0/text"),
                        print: Some(format!("/patients/{pid}/prescriptions/{}", r.id)),
                        ..Line::new(
                            medication_text(&v, &drugs),
                            text_at(&v, "/dosageInstruction/0/text"),
                        )
                    }
                })
                .collect()
        });
    let infant = banner.age_months.is_some_and(|m| m < 36);
    let vital_fields = vitals::VITALS
        .iter()
        .filter(|v| v.field != "head" || infant)
        .map(|v| VitalField {
            field: v.field,
            label: v.label,
            unit: v.unit_label(units),
            value: kept.vitals.get(v.field).cloned().unwrap_or_default(),
        })
        .collect();
    let open = !locked;
    let terms = &state.config.terminology;
    let note_form = match (&kept.form, &note) {
        (&"note", _) => kept.note.clone(),
        (_, Some(n)) => {
            let get = |h: &str| {
                n.sections
                    .iter()
                    .find(|(k, _)| k == h)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            NoteForm {
                csrf: String::new(),
                subjective: get("Subjective"),
                objective: get("Objective"),
                assessment: get("Assessment"),
                plan: get("Plan"),
            }
        }
        _ => NoteForm::default(),
    };
    let may_prescribe = open
        && actor.has_role(ironchart_records::Role::Physician)
        && may(actor, "MedicationRequest", Interaction::Create);
    let latest_weight = if may_prescribe && may_search(actor, "Observation") {
        find(
            state,
            actor,
            "Observation",
            &[
                ("patient", pid.to_string()),
                ("code", format!("http://loinc.org|{}", vitals::WEIGHT)),
                ("_sort", "-date".into()),
                ("_count", "1".into()),
            ],
        )
        .await?
        .first()
        .map(|r| {
            let o = r.value();
            let value = o
                .pointer("/valueQuantity/value")
                .and_then(Value::as_f64)
                .and_then(|n| vitals::vital(vitals::WEIGHT).map(|v| v.show(n, units)))
                .unwrap_or_else(|| super::chart::observation_value(&o));
            format!("{value} ({})", super::chart::effective(&o))
        })
    } else {
        None
    };
    let note_fields = vec![
        ("subjective", "Subjective", note_form.subjective.clone()),
        ("objective", "Objective", note_form.objective.clone()),
        ("assessment", "Assessment", note_form.assessment.clone()),
        ("plan", "Plan", note_form.plan.clone()),
    ];
    Ok(page(
        status,
        &VisitPage {
            nav: Some(me.nav()),
            enc: enc_id.to_string(),
            started: ev
                .pointer("/period/start")
                .and_then(Value::as_str)
                .map(display_time_text)
                .unwrap_or_default(),
            status: ev
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            signed: signature.as_ref().map(|s| {
                format!(
                    "Signed by {} on {}",
                    s.signed_by,
                    display_time(s.signed_at.as_millis())
                )
            }),
            units: units.as_str(),
            may_vitals: open && may(actor, "Observation", Interaction::Create),
            may_note: open
                && clinical(actor)
                && may(actor, "DocumentReference", Interaction::Create),
            may_addendum: locked
                && note.is_some()
                && clinical(actor)
                && may(actor, "DocumentReference", Interaction::Create),
            may_diagnose: open && clinical(actor) && may(actor, "Condition", Interaction::Create),
            may_order: open && clinical(actor) && may(actor, "ServiceRequest", Interaction::Create),
            may_prescribe,
            note_fields,
            latest_weight,
            may_sign: open && clinical(actor) && note.is_some(),
            order_choices: terms
                .orders()
                .map(|t| Choice {
                    code: t.code.clone(),
                    display: t.display.clone(),
                })
                .collect(),
            routes: &ROUTES,
            frequencies: FREQUENCIES.iter().map(|f| f.0).collect(),
            vitals,
            vital_fields,
            note,
            notes_shown,
            addenda,
            diagnoses,
            orders,
            prescriptions,
            banner,
            problems: kept.problems,
            dx_form: kept.dx,
            dx_choices: kept.dx_choices,
            order_form: kept.order,
            rx_form: kept.rx,
            rx_choices: kept.rx_choices,
            alert: kept.alert,
            addendum_text: kept.addendum,
        },
    ))
}

/// `2026-12-06T10:00:00Z` as `06-Dec-2026 10:00 UTC` (another offset is shown as written:
/// `10:00 -08:00`): a time is never shown without its zone.
fn display_time_text(t: &str) -> String {
    let time = t.get(11..16).unwrap_or("");
    if time.is_empty() {
        return display_date(t);
    }
    let zone = match t
        .get(19..)
        .map(|rest| rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit()))
    {
        Some("Z") | Some("+00:00") | None | Some("") => "UTC".to_string(),
        Some(offset) => offset.to_string(),
    };
    format!("{} {time} {zone}", display_date(t))
}

fn vital_row(o: &Value, units: Units) -> VitalRow {
    let code = o
        .pointer("/code/coding/0/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = match vitals::vital(code) {
        Some(v) => o
            .pointer("/valueQuantity/value")
            .and_then(Value::as_f64)
            .map(|n| v.show(n, units))
            .unwrap_or_else(|| super::chart::observation_value(o)),
        None if code == vitals::BP_PANEL => {
            let part = |c: &str| {
                o.get("component")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter().find(|x| {
                            x.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(c)
                        })
                    })
                    .and_then(|x| x.pointer("/valueQuantity/value"))
                    .and_then(Value::as_f64)
                    .map(vitals::number)
                    .unwrap_or_else(|| "?".into())
            };
            format!(
                "{}/{} mmHg",
                part(vitals::SYSTOLIC),
                part(vitals::DIASTOLIC)
            )
        }
        None => super::chart::observation_value(o),
    };
    VitalRow {
        name: concept_text(o.get("code")),
        value,
        flag: super::chart::abnormal_flag(o).unwrap_or_default(),
        when: o
            .get("effectiveDateTime")
            .and_then(Value::as_str)
            .map(display_time_text)
            .unwrap_or_default(),
    }
}

/// Creates resources together (all or none), as the user: each its type, its value and the
/// `urn:uuid:` full URL the others may refer to it by.
pub(crate) async fn create_together(
    state: &AppState,
    actor: &Actor,
    resources: Vec<(ResourceType, Value, Option<String>)>,
) -> Result<(), PageError> {
    let entries = resources
        .into_iter()
        .map(|(resource_type, value, full_url)| {
            Ok(BundleEntry::Create {
                resource_type,
                value,
                full_url,
                if_none_exist: None,
            })
        })
        .collect();
    let get = |_: &str| {
        Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    match state.records.transaction(actor, entries, &get).await {
        Ok(_) => Ok(()),
        // One entry's failure is the whole form's.
        Err(RecordsError::Entry { source, .. }) => Err(PageError::Records(*source)),
        Err(e) => Err(e.into()),
    }
}

/// 18 or older (or not known): adult ranges apply.
fn adult(age_months: Option<i64>) -> bool {
    age_months.is_none_or(|m| m >= 18 * 12)
}

/// `POST …/vitals`.
pub(crate) async fn record_vitals(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    me.check_csrf(fields.get("csrf").map(String::as_str).unwrap_or(""))?;
    let patient = patient_of(&state, &me.actor, &pid).await?;
    let pid_id = patient.id.clone();
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let units = units_of(&state, &me.actor).await?;
    let months = patient
        .value()
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(|b| super::chart::age_months(b, state.records.now()));
    let adult = adult(months);
    let entered = match vitals::read_entries(
        &|f| fields.get(f).cloned().unwrap_or_default(),
        units,
        adult,
    ) {
        Ok(e) => e,
        Err(problems) => {
            let mut p = Problems::default();
            for (f, m) in problems {
                p.add(f, m);
            }
            return failed(
                &state,
                &me,
                &pid,
                &enc,
                Kept {
                    form: "vitals",
                    problems: p,
                    vitals: fields,
                    ..Kept::default()
                },
            )
            .await;
        }
    };
    // BMI needs a height: this one, else the latest recorded.
    let last_height = if entered.iter().any(|e| e.field == "weight")
        && !entered.iter().any(|e| e.field == "height")
    {
        find(
            &state,
            &me.actor,
            "Observation",
            &[
                ("patient", pid_id.to_string()),
                ("code", format!("http://loinc.org|{}", vitals::HEIGHT)),
                ("_sort", "-date".into()),
                ("_count", "1".into()),
            ],
        )
        .await?
        .first()
        .and_then(|r| {
            r.value()
                .pointer("/valueQuantity/value")
                .and_then(Value::as_f64)
        })
    } else {
        None
    };
    let values = vitals::observations(
        &entered,
        last_height,
        adult,
        pid_id.as_str(),
        enc_id.as_str(),
        &now_text(&state),
        &me_ref(&state, &me.actor).await?,
    );
    let values = values
        .into_iter()
        .map(|v| (ResourceType::OBSERVATION, v, None))
        .collect();
    match create_together(&state, &me.actor, values).await {
        Ok(()) => Ok(back(&pid, &enc)),
        Err(PageError::Records(e @ RecordsError::Locked(_))) => {
            let mut p = Problems::default();
            p.add("systolic", e.to_string());
            failed(
                &state,
                &me,
                &pid,
                &enc,
                Kept {
                    form: "vitals",
                    problems: p,
                    vitals: fields,
                    ..Kept::default()
                },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

fn back(pid: &str, enc: &str) -> Response {
    Redirect::to(&format!("/patients/{pid}/visits/{enc}")).into_response()
}

async fn failed(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    enc: &str,
    kept: Kept,
) -> Result<Response, PageError> {
    render(state, me, pid, enc, kept, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// After a write from a visit form: back to the visit, or the form again with a locked visit's
/// refusal next to `field` (any other error is the page's).
async fn saved<T>(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    enc: &str,
    result: Result<T, RecordsError>,
    field: &str,
    kept: impl FnOnce(Problems) -> Kept,
) -> Result<Response, PageError> {
    match result {
        Ok(_) => Ok(back(pid, enc)),
        Err(e) => {
            let problems = locked_problem(PageError::Records(e), field)?;
            failed(state, me, pid, enc, kept(problems)).await
        }
    }
}

/// A locked-visit refusal as a problem on the form's first field, or the error itself.
fn locked_problem(e: PageError, field: &str) -> Result<Problems, PageError> {
    match e {
        PageError::Records(e @ RecordsError::Locked(_)) => {
            let mut p = Problems::default();
            p.add(field, e.to_string());
            Ok(p)
        }
        other => Err(other),
    }
}

/// `POST …/note`: writes (or rewrites, until signed) the visit's note.
pub(crate) async fn write_note(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<NoteForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    if [
        &form.subjective,
        &form.objective,
        &form.assessment,
        &form.plan,
    ]
    .iter()
    .all(|t| t.trim().is_empty())
    {
        let mut p = Problems::default();
        p.add("subjective", "Write something in the note before saving it");
        return failed(
            &state,
            &me,
            &pid,
            &enc,
            Kept {
                form: "note",
                problems: p,
                note: form,
                ..Kept::default()
            },
        )
        .await;
    }
    let text = note_text(&form);
    let who = me_ref(&state, &me.actor).await?;
    let existing = find(
        &state,
        &me.actor,
        "DocumentReference",
        &[
            ("encounter", format!("Encounter/{enc_id}")),
            ("_count", "50".into()),
        ],
    )
    .await?
    .into_iter()
    .find(|d| !is_addendum(&d.value()));
    let mut doc = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "preliminary",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}], "text": "Progress note"},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": format!("Patient/{pid_id}")},
        "date": now_text(&state),
        "author": [who],
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "title": "Progress note",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        }}],
        "context": {"encounter": [{"reference": format!("Encounter/{enc_id}")}]}
    });
    let result = match existing {
        Some(old) => {
            doc["id"] = json!(old.id.as_str());
            state
                .records
                .update(
                    &me.actor,
                    ResourceType::DOCUMENT_REFERENCE,
                    &old.id,
                    doc,
                    Some(old.version),
                )
                .await
        }
        None => {
            state
                .records
                .create(&me.actor, ResourceType::DOCUMENT_REFERENCE, doc, None)
                .await
        }
    };
    saved(&state, &me, &pid, &enc, result, "subjective", |problems| {
        Kept {
            form: "note",
            problems,
            note: form,
            ..Kept::default()
        }
    })
    .await
}

/// The code a typed entry names: a choice picked from the offered ones (only while the text
/// still finds it: a stale choice never wins over new words), a leading code that exists
/// (`E11.9 Type 2 …`, as the typeahead fills it), a name typed in full, else the only match.
pub(crate) fn resolve<'a, T: PartialEq>(
    text: &str,
    chosen: &str,
    exact: impl Fn(&str) -> Option<&'a T>,
    search: impl Fn(&str) -> Vec<&'a T>,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, Vec<&'a T>> {
    let text = text.trim();
    let found = search(text);
    if let Some(t) = exact(chosen.trim())
        && (text.is_empty() || found.contains(&t) || name(t).eq_ignore_ascii_case(text))
    {
        return Ok(t);
    }
    if let Some(first) = text.split_whitespace().next()
        && let Some(t) = exact(first)
    {
        return Ok(t);
    }
    if let Some(t) = found.iter().find(|t| name(t).eq_ignore_ascii_case(text)) {
        return Ok(t);
    }
    if found.len() == 1 {
        return Ok(found[0]);
    }
    Err(found)
}

/// `POST …/diagnoses`.
pub(crate) async fn add_diagnosis(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<DiagnosisForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let terms: &Terminology = &state.config.terminology;
    let picked = resolve(
        &form.diagnosis,
        &form.code,
        |c| terms.diagnosis(c),
        |q| terms.diagnoses(q, CHOICES),
        |c| c.display.as_str(),
    );
    let code = match picked {
        Ok(c) => c,
        Err(choices) => {
            let mut p = Problems::default();
            p.add(
                "diagnosis",
                if form.diagnosis.trim().is_empty() {
                    "Type a diagnosis or its ICD-10-CM code".to_string()
                } else if choices.is_empty() {
                    format!(
                        "No diagnosis matches “{}”: try other words or the code",
                        form.diagnosis.trim()
                    )
                } else {
                    "Several diagnoses match: pick one".to_string()
                },
            );
            let dx_choices = choices
                .into_iter()
                .map(|c| Choice {
                    code: c.code.clone(),
                    display: c.display.clone(),
                })
                .collect();
            return failed(
                &state,
                &me,
                &pid,
                &enc,
                Kept {
                    form: "diagnosis",
                    problems: p,
                    dx: form,
                    dx_choices,
                    ..Kept::default()
                },
            )
            .await;
        }
    };
    let condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}],
        "code": {"coding": [{"system": terminology::ICD10CM, "code": code.code, "display": code.display}], "text": code.display},
        "subject": {"reference": format!("Patient/{pid_id}")},
        "encounter": {"reference": format!("Encounter/{enc_id}")},
        "recordedDate": now_text(&state),
        "recorder": me_ref(&state, &me.actor).await?
    });
    let result = state
        .records
        .create(&me.actor, ResourceType::CONDITION, condition, None)
        .await;
    saved(&state, &me, &pid, &enc, result, "diagnosis", |problems| {
        Kept {
            form: "diagnosis",
            problems,
            dx: form,
            ..Kept::default()
        }
    })
    .await
}

/// `POST …/orders`.
pub(crate) async fn add_order(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<OrderForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let Some(test) = state
        .config
        .terminology
        .test(form.code.trim())
        .filter(|t| t.category == "order")
    else {
        let mut p = Problems::default();
        p.add("order", "Choose a test to order");
        return failed(
            &state,
            &me,
            &pid,
            &enc,
            Kept {
                form: "order",
                problems: p,
                order: form,
                ..Kept::default()
            },
        )
        .await;
    };
    let request = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": terminology::LOINC, "code": test.code, "display": test.display}], "text": test.display},
        "subject": {"reference": format!("Patient/{pid_id}")},
        "encounter": {"reference": format!("Encounter/{enc_id}")},
        "authoredOn": now_text(&state),
        "requester": me_ref(&state, &me.actor).await?
    });
    let result = state
        .records
        .create(&me.actor, ResourceType::SERVICE_REQUEST, request, None)
        .await;
    saved(&state, &me, &pid, &enc, result, "order", |problems| Kept {
        form: "order",
        problems,
        order: form,
        ..Kept::default()
    })
    .await
}

/// The patient's allergies in force (a "no known allergies" statement names no drug).
pub(crate) async fn allergies(
    state: &AppState,
    actor: &Actor,
    pid: &Id,
) -> Result<Vec<Allergy>, PageError> {
    Ok(find(
        state,
        actor,
        "AllergyIntolerance",
        &[("patient", pid.to_string()), ("_count", "200".into())],
    )
    .await?
    .iter()
    .filter_map(|r| allergy_of(&r.value()))
    .filter(|a| !a.none_known)
    .collect())
}

/// The first allergy `drug` may trigger.
pub(crate) fn allergy_alert(
    terms: &Terminology,
    drug: &Drug,
    allergies: &[Allergy],
) -> Option<Alert> {
    allergies.iter().find_map(|a| {
        terms
            .allergy_match(drug, &a.codes, &a.words)
            .map(|why| Alert {
                allergen: a.name.clone(),
                reaction: a.reaction.clone(),
                why,
            })
    })
}

/// `POST …/prescriptions`: prescribes, or shows the allergy alert (then a reason is needed).
pub(crate) async fn prescribe(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<RxForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let terms: &Terminology = &state.config.terminology;
    let mut problems = Problems::default();
    let picked = resolve(
        &form.drug,
        &form.rxcui,
        |c| terms.drug(c),
        |q| terms.find_drugs(q, CHOICES),
        |d| d.name.as_str(),
    );
    let mut rx_choices = Vec::new();
    let drug = match picked {
        Ok(d) => Some(d),
        Err(choices) => {
            problems.add(
                "drug",
                if form.drug.trim().is_empty() {
                    "Type the drug's name".to_string()
                } else if choices.is_empty() {
                    format!("No drug matches “{}”", form.drug.trim())
                } else {
                    "Several drugs match: pick one".to_string()
                },
            );
            rx_choices = choices
                .into_iter()
                .map(|d| Choice {
                    code: d.rxcui.clone(),
                    display: d.name.clone(),
                })
                .collect();
            None
        }
    };
    let dose = form.dose.trim();
    let dose_value = dose
        .split_whitespace()
        .next()
        .and_then(|n| n.replace(',', ".").parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n > 0.0);
    if dose_value.is_none() {
        problems.add("dose", "Enter the dose as a number and unit, e.g. 500 mg");
    }
    if !ROUTES.contains(&form.route.as_str()) {
        problems.add("route", "Choose the route");
    }
    let frequency = FREQUENCIES.iter().find(|f| f.0 == form.frequency);
    if frequency.is_none() {
        problems.add("frequency", "Choose how often");
    }
    let days = form
        .days
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=365).contains(d));
    if days.is_none() {
        problems.add("days", "Enter the duration in days (1 to 365)");
    }
    let quantity = form
        .quantity
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|q| q.is_finite() && *q > 0.0 && *q <= 10_000.0);
    if quantity.is_none() {
        problems.add("quantity", "Enter the quantity to dispense");
    }
    let alert = match drug {
        Some(d) if may_search(&me.actor, "AllergyIntolerance") => {
            allergy_alert(terms, d, &allergies(&state, &me.actor, &pid_id).await?)
        }
        _ => None,
    };
    let mut rx = form.clone();
    if let Some(d) = drug {
        rx.rxcui = d.rxcui.clone();
        rx.drug = d.name.clone();
    }
    let reason = form.reason.trim();
    if alert.is_some() && reason.is_empty() && form.alerted == "1" {
        problems.add(
            "reason",
            "Give the reason to prescribe despite the allergy, or choose another drug",
        );
    }
    let needs_reason = alert.is_some() && reason.is_empty();
    let (Some(drug), Some(dose_value), Some(frequency), Some(days), Some(quantity), true, false) = (
        drug,
        dose_value,
        frequency,
        days,
        quantity,
        problems.is_empty(),
        needs_reason,
    ) else {
        return failed(
            &state,
            &me,
            &pid,
            &enc,
            Kept {
                form: "rx",
                problems,
                rx,
                rx_choices,
                alert,
                ..Kept::default()
            },
        )
        .await;
    };
    let dose_unit = dose
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let text = format!("{dose} {} {} for {days} days", form.route, frequency.0);
    let mut timing = json!({"repeat": {"boundsDuration": {"value": days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}});
    if frequency.1 > 0 {
        timing["repeat"]["frequency"] = json!(frequency.1);
        timing["repeat"]["period"] = json!(frequency.2);
        timing["repeat"]["periodUnit"] = json!(frequency.3);
    }
    let mut dose_quantity = json!({"value": dose_value, "unit": dose_unit});
    if matches!(dose_unit.as_str(), "mg" | "g" | "mL" | "ug" | "mcg") {
        let ucum = if dose_unit == "mcg" {
            "ug"
        } else {
            dose_unit.as_str()
        };
        dose_quantity["system"] = json!("http://unitsofmeasure.org");
        dose_quantity["code"] = json!(ucum);
    }
    let mut request = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": terminology::RXNORM, "code": drug.rxcui, "display": drug.name}], "text": drug.name},
        "subject": {"reference": format!("Patient/{pid_id}")},
        "encounter": {"reference": format!("Encounter/{enc_id}")},
        "authoredOn": now_text(&state),
        "requester": me_ref(&state, &me.actor).await?,
        "dosageInstruction": [{
            "text": text,
            "timing": timing,
            "asNeededBoolean": frequency.1 == 0,
            "route": {"text": form.route},
            "doseAndRate": [{"doseQuantity": dose_quantity}]
        }],
        "dispenseRequest": {
            "quantity": {"value": quantity},
            "expectedSupplyDuration": {"value": days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
        }
    });
    let result = match &alert {
        Some(a) => {
            let said = format!("Allergy alert overridden ({}): {reason}", a.allergen);
            request["note"] = json!([{"text": said}]);
            state
                .records
                .create_overriding_alert(
                    &me.actor,
                    ResourceType::MEDICATION_REQUEST,
                    request,
                    &format!("allergy alert: {}", a.why),
                    reason,
                )
                .await
        }
        None => {
            state
                .records
                .create(&me.actor, ResourceType::MEDICATION_REQUEST, request, None)
                .await
        }
    };
    saved(&state, &me, &pid, &enc, result, "drug", |problems| Kept {
        form: "rx",
        problems,
        rx,
        ..Kept::default()
    })
    .await
}

/// `POST …/sign`.
pub(crate) async fn sign(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<SignForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let mut problems = Problems::default();
    if form.password.is_empty() {
        problems.add("password", "Enter your password to sign");
    } else {
        match state
            .records
            .sign_encounter(&me.actor, &enc_id, &form.password)
            .await
        {
            Ok(SignOutcome::Signed(_)) => return Ok(back(&pid, &enc)),
            Ok(SignOutcome::WrongPassword) => problems.add(
                "password",
                "The password is not right; the visit is not signed",
            ),
            Err(RecordsError::Forbidden(m)) => problems.add("password", m),
            Err(e @ RecordsError::Locked(_)) => problems.add("password", e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    failed(
        &state,
        &me,
        &pid,
        &enc,
        Kept {
            form: "sign",
            problems,
            ..Kept::default()
        },
    )
    .await
}

/// `POST …/addenda`: a correction or addition to a signed note, kept beside the original.
pub(crate) async fn add_addendum(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, enc)): Path<(String, String)>,
    Form(form): Form<TextForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let (enc_id, _) = encounter_of(&state, &me.actor, &pid_id, &enc).await?;
    let note = find(
        &state,
        &me.actor,
        "DocumentReference",
        &[
            ("encounter", format!("Encounter/{enc_id}")),
            ("_count", "50".into()),
        ],
    )
    .await?
    .into_iter()
    .find(|d| !is_addendum(&d.value()));
    let text = form.text.trim();
    let Some(note) = note.filter(|_| !text.is_empty()) else {
        let mut p = Problems::default();
        p.add("addendum", "Write the addendum before saving it");
        return failed(
            &state,
            &me,
            &pid,
            &enc,
            Kept {
                form: "addendum",
                problems: p,
                addendum: form.text,
                ..Kept::default()
            },
        )
        .await;
    };
    let who = me_ref(&state, &me.actor).await?;
    let doc = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}], "text": "Addendum"},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": format!("Patient/{pid_id}")},
        "date": now_text(&state),
        "author": [who],
        "authenticator": who,
        "relatesTo": [{"code": "appends", "target": {"reference": format!("DocumentReference/{}", note.id)}}],
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "title": "Addendum",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        }}],
        "context": {"encounter": [{"reference": format!("Encounter/{enc_id}")}]}
    });
    state
        .records
        .create(&me.actor, ResourceType::DOCUMENT_REFERENCE, doc, None)
        .await?;
    Ok(back(&pid, &enc))
}

#[derive(Deserialize, Default)]
pub(crate) struct UnitsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    units: String,
    #[serde(default)]
    back: String,
}

/// `POST /account/units`: the user's preferred units (metric or US).
pub(crate) async fn set_units(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<UnitsForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let units = Units::of(Some(form.units.as_str()));
    state
        .records
        .set_preference(&me.actor, "units", units.as_str())
        .await?;
    // Back to a page of ours only.
    let to = if form.back.starts_with("/patients/") && !form.back.contains("//") {
        form.back
    } else {
        "/".to_string()
    };
    Ok(Redirect::to(&to).into_response())
}

#[derive(Deserialize, Default)]
pub(crate) struct LookupQuery {
    #[serde(default)]
    q: String,
}

/// `GET /terminology/{list}?q=`: codes for the typeahead (JSON: `[{code, display}]`).
pub(crate) async fn lookup(
    State(state): State<AppState>,
    me: SignedIn,
    Path(list): Path<String>,
    Query(query): Query<LookupQuery>,
) -> Result<Response, PageError> {
    if !clinical(&me.actor) {
        return Err(PageError::Forbidden);
    }
    let terms = &state.config.terminology;
    let q: String = query.q.chars().take(100).collect();
    let rows: Vec<Value> = match list.as_str() {
        "diagnoses" => terms
            .diagnoses(&q, CHOICES)
            .into_iter()
            .map(|c| json!({"code": c.code, "display": c.display}))
            .collect(),
        "drugs" => terms
            .find_drugs(&q, CHOICES)
            .into_iter()
            .map(|d| json!({"code": d.rxcui, "display": d.name}))
            .collect(),
        "vaccines" => terms
            .vaccines(&q, CHOICES)
            .into_iter()
            .map(|c| json!({"code": c.code, "display": c.display}))
            .collect(),
        _ => {
            return Err(PageError::Records(RecordsError::NotFound(
                "list".into(),
                list.chars().take(40).collect(),
            )));
        }
    };
    Ok(Json(rows).into_response())
}

#[derive(Template)]
#[template(path = "prescription.html")]
struct PrescriptionPage {
    nav: Option<Nav>,
    banner: Banner,
    drug: String,
    code: String,
    instructions: String,
    quantity: String,
    supply: String,
    prescriber: String,
    written: String,
    note: String,
    status: String,
}

/// `GET /patients/{id}/prescriptions/{mr}`: a prescription to print, under the patient's
/// name, birth date and MRN.
pub(crate) async fn prescription(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, mr)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (pid_id, banner) = banner_of(&state, &me.actor, &pid).await?;
    let not_found = || {
        PageError::Records(RecordsError::NotFound(
            "MedicationRequest".into(),
            mr.clone(),
        ))
    };
    let id = Id::parse(&mr).ok_or_else(not_found)?;
    let found = state
        .records
        .read(&me.actor, ResourceType::MEDICATION_REQUEST, &id)
        .await?;
    let v = found.value();
    if v.pointer("/subject/reference").and_then(Value::as_str) != Some(&format!("Patient/{pid_id}"))
    {
        return Err(not_found());
    }
    let text = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let number = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_f64)
            .map(vitals::number)
            .unwrap_or_default()
    };
    // A drug named by reference: the Medication is read as the user (one they may not see,
    // or that is gone, leaves the reference's display).
    let mut drugs = Vec::new();
    if let Some(mid) = v
        .pointer("/medicationReference/reference")
        .and_then(Value::as_str)
        .and_then(medication_id)
        .and_then(Id::parse)
    {
        match state
            .records
            .read(&me.actor, ResourceType::MEDICATION, &mid)
            .await
        {
            Ok(m) => drugs.push(m.value()),
            Err(
                RecordsError::NotFound(..) | RecordsError::Gone(..) | RecordsError::Forbidden(_),
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let code = medication_concept(&v, &drugs)
        .and_then(|c| c.pointer("/coding/0/code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(page(
        StatusCode::OK,
        &PrescriptionPage {
            nav: Some(me.nav()),
            banner,
            drug: medication_text(&v, &drugs),
            code,
            instructions: text("/dosageInstruction/0/text"),
            quantity: number("/dispenseRequest/quantity/value"),
            supply: number("/dispenseRequest/expectedSupplyDuration/value"),
            prescriber: text("/requester/display"),
            written: v
                .get("authoredOn")
                .and_then(Value::as_str)
                .map(display_time_text)
                .unwrap_or_default(),
            note: text("/note/0/text"),
            status: text("/status"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_zone() {
        assert_eq!(
            display_time_text("2026-12-06T10:00:00Z"),
            "06-Dec-2026 10:00 UTC"
        );
        assert_eq!(
            display_time_text("2026-12-06T10:00:00.123Z"),
            "06-Dec-2026 10:00 UTC"
        );
        assert_eq!(
            display_time_text("2026-10-30T09:30:00-07:00"),
            "30-Oct-2026 09:30 -07:00"
        );
        assert_eq!(display_time_text("2026-10-30"), "30-Oct-2026");
    }

    #[test]
    fn a_note_reads_back_by_section() {
        let form = NoteForm {
            csrf: String::new(),
            subjective: "Cough for 3 days.\nNo fever.".into(),
            objective: "Chest clear.".into(),
            assessment: String::new(),
            plan: "Fluids.".into(),
        };
        let sections = note_sections(&note_text(&form));
        assert_eq!(
            sections[0],
            ("Subjective".into(), "Cough for 3 days.\nNo fever.".into())
        );
        assert_eq!(sections[2], ("Assessment".into(), String::new()));
        assert_eq!(sections[3], ("Plan".into(), "Fluids.".into()));
        assert_eq!(
            note_sections("free text"),
            vec![("Note".into(), "free text".into())]
        );
    }

    #[test]
    fn a_typed_entry_resolves_to_one_code_or_offers_choices() {
        let t = Terminology::shipped();
        let exact = |c: &str| t.diagnosis(c);
        let search = |q: &str| t.diagnoses(q, CHOICES);
        let pick = |text: &str, chosen: &str| {
            resolve(text, chosen, exact, search, |c| c.display.as_str())
                .map(|c| c.code.clone())
                .map_err(|found| found.iter().map(|c| c.code.clone()).collect::<Vec<_>>())
        };
        assert_eq!(pick("", "E11.9"), Ok("E11.9".to_string()));
        assert_eq!(pick("E11.9 Type 2 diabetes", ""), Ok("E11.9".to_string()));
        let offered = pick("diab", "").unwrap_err();
        assert!(offered.contains(&"E11.9".to_string()), "{offered:?}");
        // A choice among those offered for the words typed.
        assert_eq!(pick("diab", "E11.9"), Ok("E11.9".to_string()));
        // A stale choice never wins over new words.
        let hypertension = pick("hypertension", "E11.9");
        assert_ne!(hypertension, Ok("E11.9".to_string()));
        // A drug's name typed in full.
        let d = t.find_drugs("amoxicillin", 1)[0];
        let got = resolve(
            &d.name,
            "",
            |c| t.drug(c),
            |q| t.find_drugs(q, CHOICES),
            |d| d.name.as_str(),
        );
        assert_eq!(got.map(|x| x.rxcui.clone()), Ok(d.rxcui.clone()));
    }
}
