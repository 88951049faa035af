//! The clinician's first pages: finding a patient and the chart at a glance, under the patient
//! banner. Every read goes through `records` as the signed-in user (policy-checked and audited
//! like the API); what the role may not read is not fetched, and its section says so.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::{Id, Instant, ResourceType};
use ironchart_records::Interaction;
use ironchart_records::{Actor, RecordsError, Resource};
use serde::Deserialize;
use serde_json::Value;

use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

/// Most patients a search lists.
const SEARCH_ROWS: usize = 25;

#[derive(Deserialize, Default)]
pub(crate) struct SearchForm {
    #[serde(default)]
    q: String,
}

/// One patient in a list.
struct PatientRow {
    id: String,
    name: String,
    born: String,
    sex: String,
    mrn: String,
    last_visit: String,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage {
    nav: Option<Nav>,
    q: String,
    searched: bool,
    hint: String,
    rows: Vec<PatientRow>,
}

/// How the search box was read.
#[derive(Debug, PartialEq, Eq)]
enum Terms {
    /// A birth date (`yyyy-mm-dd`, or `03-Feb-1961`).
    Born(String),
    /// `family, given`.
    FamilyGiven(String, String),
    /// Words, each the start of some part of the name (`john smi`).
    Words(Vec<String>),
    /// Something with digits: an MRN or other identifier, or a phone number.
    Number(String),
}

fn read_terms(q: &str) -> Option<Terms> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    if let Some(date) = iso_date(q) {
        return Some(Terms::Born(date));
    }
    if q.chars().any(|c| c.is_ascii_digit()) {
        return Some(Terms::Number(q.to_string()));
    }
    if let Some((family, given)) = q.split_once(',') {
        let (family, given) = (family.trim(), given.trim());
        if !family.is_empty() {
            return Some(Terms::FamilyGiven(family.to_string(), given.to_string()));
        }
    }
    let words: Vec<String> = q.split_whitespace().map(str::to_string).collect();
    Some(Terms::Words(words))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `1961-02-03` or `03-Feb-1961` (any case) as `1961-02-03`.
pub(super) fn iso_date(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('-').collect();
    let (y, m, d): (i64, u32, u32) = match parts.as_slice() {
        [y, m, d] if y.len() == 4 => (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?),
        [d, mon, y] if y.len() == 4 => {
            let m = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(mon))? + 1;
            (y.parse().ok()?, u32::try_from(m).ok()?, d.parse().ok()?)
        }
        _ => return None,
    };
    if !(1..=12).contains(&m) || d < 1 || d > ironchart_fhir::datetime::days_in_month(y, m) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// A FHIR date as the banner shows it: `03-Feb-1961` (a partial date as far as it goes).
pub(super) fn display_date(date: &str) -> String {
    let mut parts = date.get(..10.min(date.len())).unwrap_or("").split('-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) => match m
            .parse::<usize>()
            .ok()
            .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        {
            Some(mon) => format!("{d}-{mon}-{y}"),
            None => date.to_string(),
        },
        (Some(y), Some(m), None) => match m
            .parse::<usize>()
            .ok()
            .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        {
            Some(mon) => format!("{mon}-{y}"),
            None => date.to_string(),
        },
        (Some(y), None, None) if !y.is_empty() => y.to_string(),
        _ => "Not known".to_string(),
    }
}

/// Whole months from a birth date to `today`.
pub(super) fn age_months(birth: &str, today: Instant) -> Option<i64> {
    let born = ironchart_fhir::datetime::parse_date_range(birth.get(..10)?)?.low;
    let (by, bm, bd) = civil(born);
    let (ty, tm, td) = civil(today.as_millis());
    let mut months = (ty - by) * 12 + (i64::from(tm) - i64::from(bm));
    if td < bd {
        months -= 1;
    }
    (months >= 0).then_some(months)
}

/// Age on `today` for a birth date: years from 2, months under 2, days under a month.
fn age(birth: &str, today: Instant) -> Option<String> {
    let born = ironchart_fhir::datetime::parse_date_range(birth.get(..10)?)?.low;
    let months = age_months(birth, today)?;
    Some(if months >= 24 {
        format!("{}y", months / 12)
    } else if months >= 1 {
        format!("{months}m")
    } else {
        format!("{}d", (today.as_millis() - born) / 86_400_000)
    })
}

fn civil(ms: i64) -> (i64, u32, u32) {
    ironchart_fhir::datetime::civil_from_days(ms.div_euclid(86_400_000))
}

/// `FAMILY, Given Middle` from the official (else the first) name.
pub(super) fn display_name(patient: &Value) -> String {
    let names = patient
        .get("name")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let name = names
        .iter()
        .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
        .or_else(|| names.first());
    let Some(name) = name else {
        return "Name not known".to_string();
    };
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match (family.is_empty(), given.is_empty()) {
        (false, false) => format!("{}, {}", family.to_uppercase(), given.join(" ")),
        (false, true) => family.to_uppercase(),
        (true, false) => given.join(" "),
        (true, true) => name
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("Name not known")
            .to_string(),
    }
}

/// The medical record number: the identifier typed `MR`, else one whose system names an MRN,
/// else the first.
fn mrn(patient: &Value) -> Option<(String, String)> {
    let ids = patient.get("identifier").and_then(Value::as_array)?;
    let typed = |i: &&Value| {
        i.pointer("/type/coding")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("code").and_then(Value::as_str) == Some("MR"))
            })
    };
    let named = |i: &&Value| {
        i.get("system")
            .and_then(Value::as_str)
            .is_some_and(|s| s.to_ascii_lowercase().contains("mrn"))
    };
    let id = ids
        .iter()
        .find(typed)
        .or_else(|| ids.iter().find(named))
        .or_else(|| ids.first())?;
    let value = id.get("value").and_then(Value::as_str)?.to_string();
    let label = id
        .pointer("/type/text")
        .and_then(Value::as_str)
        .unwrap_or("MRN")
        .to_string();
    Some((label, value))
}

fn sex(patient: &Value) -> String {
    match patient.get("gender").and_then(Value::as_str) {
        Some("male") => "Male",
        Some("female") => "Female",
        Some("other") => "Other",
        _ => "Not known",
    }
    .to_string()
}

/// The text of a CodeableConcept: its text, else its first coding's display, else code.
pub(super) fn concept_text(c: Option<&Value>) -> String {
    c.and_then(concept_name)
        .unwrap_or_else(|| "Not recorded".to_string())
}

/// What a CodeableConcept says it is (see [`concept_text`]); `None` when it says nothing.
fn concept_name(c: &Value) -> Option<String> {
    if let Some(t) = c.get("text").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    c.get("coding")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter().find_map(|c| {
                c.get("display")
                    .or_else(|| c.get("code"))
                    .and_then(Value::as_str)
            })
        })
        .map(str::to_string)
}

/// The drug of a MedicationRequest as a CodeableConcept: its `medicationCodeableConcept`, or the
/// code of the Medication its `medicationReference` names — contained (`#id`), or among `known`
/// (Medications read with it: a search's `_include=MedicationRequest:medication`, or a read).
/// `None` when neither says (a reference to a Medication not read, or one without a code).
pub(super) fn medication_concept<'a>(v: &'a Value, known: &'a [Value]) -> Option<&'a Value> {
    if let Some(c) = v.get("medicationCodeableConcept") {
        return Some(c);
    }
    let reference = v.pointer("/medicationReference/reference")?.as_str()?;
    let is = |m: &&Value, id: &str| {
        m.get("resourceType").and_then(Value::as_str) == Some("Medication")
            && m.get("id").and_then(Value::as_str) == Some(id)
    };
    let medication = match reference.strip_prefix('#') {
        Some(local) => v
            .get("contained")?
            .as_array()?
            .iter()
            .find(|m| is(m, local))?,
        None => {
            let id = medication_id(reference)?;
            known.iter().find(|m| is(m, id))?
        }
    };
    medication.get("code")
}

/// The id of the local Medication a reference names (`Medication/{id}`, a version of it
/// included); `None` for any other reference.
pub(super) fn medication_id(reference: &str) -> Option<&str> {
    let rest = reference.strip_prefix("Medication/")?;
    Some(rest.split_once("/_history/").map_or(rest, |(id, _)| id)).filter(|id| !id.is_empty())
}

/// The name of a MedicationRequest's drug, for a clinician to read: the text of its
/// [`medication_concept`], else its reference's display, else "Medication not named" — never
/// an empty line on a medication list or a prescription.
pub(super) fn medication_text(v: &Value, known: &[Value]) -> String {
    medication_concept(v, known)
        .and_then(concept_name)
        .or_else(|| {
            v.pointer("/medicationReference/display")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "Medication not named".into())
}

/// Whether the actor's access covers searching `resource_type`.
pub(super) fn may_search(actor: &Actor, resource_type: &str) -> bool {
    actor.scopes().allows(resource_type, Interaction::Search)
}

/// Runs a search as the user; the resources it found.
/// Runs a search as the user; the whole page (matches and included resources).
pub(super) async fn search_page(
    state: &AppState,
    actor: &Actor,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> Result<ironchart_records::ResourcePage, PageError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let query = SearchQuery::parse(resource_type, &pairs).map_err(|e| {
        PageError::Records(RecordsError::BadRequest {
            message: e.message,
            expression: None,
        })
    })?;
    Ok(state.records.search(actor, &query, None).await?)
}

pub(super) async fn find(
    state: &AppState,
    actor: &Actor,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> Result<Vec<Resource>, PageError> {
    Ok(search_page(state, actor, resource_type, pairs)
        .await?
        .matches)
}

/// `GET /patients?q=…`: find a patient by name, birth date, MRN or phone.
pub(crate) async fn patients(
    State(state): State<AppState>,
    me: SignedIn,
    Query(form): Query<SearchForm>,
) -> Result<Response, PageError> {
    if !may_search(&me.actor, "Patient") || me.actor.patient().is_some() {
        return Err(PageError::Forbidden);
    }
    let count = SEARCH_ROWS.to_string();
    let terms = read_terms(&form.q);
    let searched = terms.is_some();
    let found: Vec<Resource> = match terms {
        None => Vec::new(),
        Some(Terms::Born(date)) => {
            find(
                &state,
                &me.actor,
                "Patient",
                &[("birthdate", date), ("_count", count)],
            )
            .await?
        }
        Some(Terms::FamilyGiven(family, given)) => {
            let mut pairs = vec![("family", family), ("_count", count)];
            if !given.is_empty() {
                pairs.push(("given", given));
            }
            find(&state, &me.actor, "Patient", &pairs).await?
        }
        Some(Terms::Words(words)) => {
            let mut pairs: Vec<(&str, String)> = words.into_iter().map(|w| ("name", w)).collect();
            pairs.push(("_count", count));
            find(&state, &me.actor, "Patient", &pairs).await?
        }
        Some(Terms::Number(text)) => {
            let mut all = find(
                &state,
                &me.actor,
                "Patient",
                &[("identifier", text.clone()), ("_count", count.clone())],
            )
            .await?;
            for p in find(
                &state,
                &me.actor,
                "Patient",
                &[("phone", text), ("_count", count)],
            )
            .await?
            {
                if !all.iter().any(|a| a.id == p.id) {
                    all.push(p);
                }
            }
            all
        }
    };
    let today = state.records.now();
    let mut rows = Vec::with_capacity(found.len());
    for r in found.iter().take(SEARCH_ROWS) {
        let p = r.value();
        let last_visit = if may_search(&me.actor, "Encounter") {
            find(
                &state,
                &me.actor,
                "Encounter",
                &[
                    ("patient", r.id.to_string()),
                    ("_sort", "-date".into()),
                    ("_count", "1".into()),
                ],
            )
            .await?
            .first()
            .and_then(|e| {
                e.value()
                    .pointer("/period/start")
                    .and_then(Value::as_str)
                    .map(display_date)
            })
            .unwrap_or_else(|| "None".to_string())
        } else {
            "Not shown to your role".to_string()
        };
        rows.push(PatientRow {
            id: r.id.to_string(),
            name: display_name(&p),
            born: born_text(&p, today),
            sex: sex(&p),
            mrn: mrn(&p).map(|m| m.1).unwrap_or_else(|| "None".into()),
            last_visit,
        });
    }
    Ok(page(
        StatusCode::OK,
        &PatientsPage {
            nav: Some(me.nav()),
            hint: if searched && rows.is_empty() {
                "No patient matches. Check the spelling, or search by birth date (03-Feb-1961) or MRN.".into()
            } else {
                String::new()
            },
            q: form.q,
            searched,
            rows,
        },
    ))
}

/// The charts the user opened lately, newest first, named by one search (one audited read).
pub(crate) async fn recent_charts(
    state: &AppState,
    actor: &Actor,
) -> Result<Vec<super::account::RecentChart>, PageError> {
    let ids = state.records.recent_patients(actor, 10).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(",");
    let found = find(
        state,
        actor,
        "Patient",
        &[("_id", list), ("_count", "10".into())],
    )
    .await?;
    let today = state.records.now();
    Ok(ids
        .iter()
        .filter_map(|id| found.iter().find(|r| r.id.as_str() == id.as_str()))
        .map(|r| {
            let p = r.value();
            super::account::RecentChart {
                id: r.id.to_string(),
                name: display_name(&p),
                born: born_text(&p, today),
            }
        })
        .collect())
}

/// `03-Feb-1961 (65y)`, or `Not known`.
fn born_text(patient: &Value, today: Instant) -> String {
    match patient.get("birthDate").and_then(Value::as_str) {
        Some(b) => match age(b, today) {
            Some(a) => format!("{} ({a})", display_date(b)),
            None => display_date(b),
        },
        None => "Not known".to_string(),
    }
}

/// What the banner says about allergies: never ambiguous.
pub(super) enum AllergyStatus {
    /// The recorded allergies, with their reactions.
    Listed(Vec<String>),
    /// A recorded statement that the patient has no known allergies.
    NoneKnown,
    /// Nothing recorded either way.
    NotRecorded,
    /// The role may not read allergies.
    NotShown,
}

pub(super) struct Banner {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) born: String,
    pub(super) sex: String,
    pub(super) mrn_label: String,
    pub(super) mrn: String,
    pub(super) deceased: Option<String>,
    pub(super) restricted: bool,
    pub(super) allergies: AllergyStatus,
    /// When the page was made (shown on paper only): `06-Dec-2026 05:44 UTC`.
    pub(super) printed: String,
    /// Age in whole months, when the birth date is known.
    pub(super) age_months: Option<i64>,
}

/// One line of a chart section.
struct Item {
    text: String,
    detail: String,
    when: String,
    flag: String,
    /// The test's `system|code`, percent-encoded, when its trend can be shown.
    trend: Option<String>,
    /// The Encounter's id, when this is a visit.
    visit: Option<String>,
}

struct Section {
    title: &'static str,
    /// `None`: the role may not read it (said, not hidden).
    items: Option<Vec<Item>>,
    empty: &'static str,
}

#[derive(Template)]
#[template(path = "chart.html")]
struct ChartPage {
    nav: Option<Nav>,
    banner: Banner,
    sections: Vec<Section>,
    /// May start a visit (a clinician who may create Encounters).
    may_start: bool,
}

/// SNOMED CT codes that record "no known allergy" statements.
const NO_KNOWN_ALLERGY: [&str; 4] = ["716186003", "409137002", "428607008", "429625007"];

fn banner(patient: &Resource, allergies: AllergyStatus, today: Instant) -> Banner {
    let p = patient.value();
    let (mrn_label, mrn) = mrn(&p).unwrap_or_else(|| ("MRN".into(), "None".into()));
    let deceased = match (
        p.get("deceasedDateTime").and_then(Value::as_str),
        p.get("deceasedBoolean").and_then(Value::as_bool),
    ) {
        (Some(when), _) => Some(format!("Deceased {}", display_date(when))),
        (None, Some(true)) => Some("Deceased".to_string()),
        _ => None,
    };
    let restricted = p
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .is_some_and(|labels| {
            labels.iter().any(|l| {
                matches!(
                    l.get("code")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_uppercase)
                        .as_deref(),
                    Some("R" | "V")
                )
            })
        });
    let now = today.to_string();
    Banner {
        printed: format!(
            "{} {} UTC",
            display_date(&now),
            now.get(11..16).unwrap_or("")
        ),
        id: patient.id.to_string(),
        name: display_name(&p),
        born: born_text(&p, today),
        sex: sex(&p),
        mrn_label,
        mrn,
        deceased,
        restricted,
        allergies,
        age_months: p
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(|b| age_months(b, today)),
    }
}

/// One recorded allergy as pages use it.
pub(super) struct Allergy {
    /// `(system, code)` of each coding.
    pub(super) codes: Vec<(String, String)>,
    /// What it is called (its text, else its first coding's display or code).
    pub(super) name: String,
    /// Its codings' displays too, for matching drugs by words.
    pub(super) words: String,
    /// The reactions recorded, joined.
    pub(super) reaction: String,
    /// A "no known allergies" statement.
    pub(super) none_known: bool,
}

/// An AllergyIntolerance in force (not refuted, entered in error, inactive or resolved).
pub(super) fn allergy_of(a: &Value) -> Option<Allergy> {
    let code_at = |p: &str| a.pointer(p).and_then(Value::as_str);
    if matches!(
        code_at("/verificationStatus/coding/0/code"),
        Some("entered-in-error" | "refuted")
    ) || matches!(
        code_at("/clinicalStatus/coding/0/code"),
        Some("inactive" | "resolved")
    ) {
        return None;
    }
    let codings = a
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let codes: Vec<(String, String)> = codings
        .iter()
        .filter_map(|c| {
            Some((
                c.get("system")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                c.get("code").and_then(Value::as_str)?.to_string(),
            ))
        })
        .collect();
    let name = concept_text(a.get("code"));
    let mut words = vec![name.clone()];
    words.extend(
        codings
            .iter()
            .filter_map(|c| c.get("display").and_then(Value::as_str))
            .map(str::to_string),
    );
    let reactions: Vec<String> = a
        .get("reaction")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("manifestation").and_then(Value::as_array))
                .flatten()
                .map(|c| concept_text(Some(c)))
                .collect()
        })
        .unwrap_or_default();
    Some(Allergy {
        none_known: codes
            .iter()
            .any(|(_, c)| NO_KNOWN_ALLERGY.contains(&c.as_str())),
        codes,
        name,
        words: words.join(" · "),
        reaction: reactions.join(", "),
    })
}

impl Banner {
    /// A child or young person (growth charts apply): 20 years or younger.
    pub(super) fn child(&self) -> bool {
        self.age_months.is_some_and(|m| m <= 240)
    }
}

fn allergy_status(found: &[Resource]) -> AllergyStatus {
    let mut listed = Vec::new();
    let mut none_known = false;
    for a in found.iter().filter_map(|r| allergy_of(&r.value())) {
        if a.none_known {
            none_known = true;
        } else if a.reaction.is_empty() {
            listed.push(a.name);
        } else {
            listed.push(format!("{} ({})", a.name, a.reaction));
        }
    }
    if !listed.is_empty() {
        AllergyStatus::Listed(listed)
    } else if none_known {
        AllergyStatus::NoneKnown
    } else {
        AllergyStatus::NotRecorded
    }
}

/// A value with its unit (`120 mm[Hg]`), a component pair (`120/80 mm[Hg]`) or a concept.
pub(super) fn observation_value(o: &Value) -> String {
    let quantity = |q: &Value| {
        let value = q.get("value").map(Value::to_string).unwrap_or_default();
        let unit = q
            .get("unit")
            .or_else(|| q.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("{value} {unit}").trim().to_string()
    };
    if let Some(q) = o.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(components) = o.get("component").and_then(Value::as_array) {
        let values: Vec<String> = components
            .iter()
            .filter_map(|c| c.pointer("/valueQuantity/value").map(Value::to_string))
            .collect();
        let unit = components
            .first()
            .and_then(|c| c.pointer("/valueQuantity/unit"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !values.is_empty() {
            return format!("{} {unit}", values.join("/")).trim().to_string();
        }
    }
    if let Some(c) = o.get("valueCodeableConcept") {
        return concept_text(Some(c));
    }
    o.get("valueString")
        .and_then(Value::as_str)
        .unwrap_or("No value")
        .to_string()
}

/// The H/L/critical letter of an observation's interpretation, if abnormal.
pub(super) fn abnormal_flag(o: &Value) -> Option<String> {
    let code = o
        .pointer("/interpretation/0/coding/0/code")
        .and_then(Value::as_str)?;
    matches!(code, "H" | "L" | "HH" | "LL" | "A" | "AA" | "HU" | "LU").then(|| code.to_string())
}

pub(super) fn effective(o: &Value) -> String {
    o.get("effectiveDateTime")
        .or_else(|| o.pointer("/effectivePeriod/start"))
        .or_else(|| o.get("occurrenceDateTime"))
        .or_else(|| o.get("authoredOn"))
        .or_else(|| o.get("onsetDateTime"))
        .or_else(|| o.get("recordedDate"))
        .or_else(|| o.pointer("/period/start"))
        .or_else(|| o.get("start"))
        .and_then(Value::as_str)
        .map(display_date)
        .unwrap_or_default()
}

/// `GET /patients/{id}`: the chart at a glance.
pub(crate) async fn chart(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (id, banner) = banner_of(&state, actor, &id).await?;
    let pid = id.to_string();
    let today = state.records.now();
    let units =
        super::vitals::Units::of(state.records.preference(actor, "units").await?.as_deref());
    let mut sections = Vec::with_capacity(SECTIONS.len());
    for spec in SECTIONS {
        sections.push(section(&state, actor, &pid, today, spec, units).await?);
    }
    Ok(page(
        StatusCode::OK,
        &ChartPage {
            nav: Some(me.nav()),
            banner,
            sections,
            may_start: actor.roles().iter().any(|r| r.is_clinical())
                && actor.scopes().allows("Encounter", Interaction::Create),
        },
    ))
}

/// The patient a chart URL names, and their banner: read as the user (a 404 for an id that
/// names no one they may see), with the allergy status their role may read.
pub(super) async fn banner_of(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<(Id, Banner), PageError> {
    let (patient, banner) = patient_and_banner(state, actor, id).await?;
    Ok((patient.id, banner))
}

/// The patient a chart URL names and their banner (for a page that also needs the Patient).
pub(super) async fn patient_and_banner(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<(Resource, Banner), PageError> {
    let patient = patient_of(state, actor, id).await?;
    let allergies = if may_search(actor, "AllergyIntolerance") {
        allergy_status(
            &find(
                state,
                actor,
                "AllergyIntolerance",
                &[
                    ("patient", patient.id.to_string()),
                    ("_count", "100".into()),
                ],
            )
            .await?,
        )
    } else {
        AllergyStatus::NotShown
    };
    let banner = banner(&patient, allergies, state.records.now());
    Ok((patient, banner))
}

/// The patient a URL names, read as the user (one audited read; a 404 for an id that names no
/// one they may see): what a form's handler needs before it writes to the chart.
pub(super) async fn patient_of(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<Resource, PageError> {
    let id = Id::parse(id)
        .ok_or_else(|| PageError::Records(RecordsError::NotFound("Patient".into(), id.into())))?;
    Ok(state
        .records
        .read(actor, ResourceType::PATIENT, &id)
        .await?)
}

/// A search as the user when their access covers it; `None` when it does not (the page says so).
pub(super) async fn find_if_allowed(
    state: &AppState,
    actor: &Actor,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> Result<Option<Vec<Resource>>, PageError> {
    Ok(search_if_allowed(state, actor, resource_type, pairs)
        .await?
        .map(|found| found.matches))
}

/// [`search_page`] when the actor may search `resource_type` (its matches and what it
/// included); `None` when they may not.
pub(super) async fn search_if_allowed(
    state: &AppState,
    actor: &Actor,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> Result<Option<ironchart_records::ResourcePage>, PageError> {
    if may_search(actor, resource_type) {
        Ok(Some(search_page(state, actor, resource_type, pairs).await?))
    } else {
        Ok(None)
    }
}

/// The string at a JSON pointer, or empty.
pub(super) fn text_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// One section of the chart summary: what it searches and how a found resource reads.
struct Spec {
    title: &'static str,
    resource_type: &'static str,
    /// Search parameters besides `patient`; `{today}` stands for today's date.
    params: &'static [(&'static str, &'static str)],
    empty: &'static str,
    /// How a found resource reads, given the resources the search included.
    item: fn(&Value, &[Value]) -> Option<Item>,
    /// Only the newest of each code (the searches are newest first).
    latest_per_code: bool,
}

const SECTIONS: &[Spec] = &[
    Spec {
        title: "Active problems",
        resource_type: "Condition",
        params: &[("clinical-status", "active"), ("_count", "50")],
        empty: "No active problems recorded.",
        item: problem_item,
        latest_per_code: false,
    },
    Spec {
        title: "Active medications",
        resource_type: "MedicationRequest",
        params: &[
            ("status", "active"),
            ("_count", "50"),
            ("_include", "MedicationRequest:medication"),
        ],
        empty: "No active medications recorded.",
        item: medication_item,
        latest_per_code: false,
    },
    Spec {
        title: "Latest vital signs",
        resource_type: "Observation",
        params: &[
            ("category", "vital-signs"),
            ("_sort", "-date"),
            ("_count", "100"),
        ],
        empty: "No vital signs recorded.",
        item: result_item,
        latest_per_code: true,
    },
    Spec {
        title: "Recent abnormal results",
        resource_type: "Observation",
        params: &[
            ("category", "laboratory"),
            ("_sort", "-date"),
            ("_count", "100"),
        ],
        empty: "No abnormal results among the latest hundred.",
        item: abnormal_item,
        latest_per_code: false,
    },
    Spec {
        title: "Recent encounters",
        resource_type: "Encounter",
        params: &[("_sort", "-date"), ("_count", "5")],
        empty: "No encounters recorded.",
        item: encounter_item,
        latest_per_code: false,
    },
    Spec {
        title: "Upcoming appointments",
        resource_type: "Appointment",
        params: &[("date", "ge{today}"), ("_sort", "date"), ("_count", "5")],
        empty: "No upcoming appointments.",
        item: appointment_item,
        latest_per_code: false,
    },
    Spec {
        title: "Immunizations",
        resource_type: "Immunization",
        params: &[("_sort", "-date"), ("_count", "10")],
        empty: "No immunizations recorded.",
        item: immunization_item,
        latest_per_code: false,
    },
];

/// A section of the chart: searched as the user, or said to be not shown to their role.
async fn section(
    state: &AppState,
    actor: &Actor,
    pid: &str,
    today: Instant,
    spec: &Spec,
    units: super::vitals::Units,
) -> Result<Section, PageError> {
    let (title, empty) = (spec.title, spec.empty);
    if !may_search(actor, spec.resource_type) {
        return Ok(Section {
            title,
            items: None,
            empty,
        });
    }
    let day = today.to_string();
    let day = day.get(..10).unwrap_or("");
    let mut pairs = vec![("patient", pid.to_string())];
    pairs.extend(
        spec.params
            .iter()
            .map(|(k, v)| (*k, v.replace("{today}", day))),
    );
    let found = search_page(state, actor, spec.resource_type, &pairs).await?;
    let included: Vec<Value> = found.included.iter().map(Resource::value).collect();
    let found = found.matches;
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    for r in &found {
        let v = r.value();
        if spec.latest_per_code {
            let code = v.pointer("/code/coding/0/code").and_then(Value::as_str);
            if !seen.insert(code.unwrap_or("").to_string()) {
                continue;
            }
        }
        items.extend((spec.item)(&v, &included).map(|mut item| {
            // A vital sign in the user's units.
            if super::vitals::vital_of(&v).is_some() {
                item.detail = super::vitals::shown_value(&v, units);
            }
            item
        }));
    }
    Ok(Section {
        title,
        items: Some(items),
        empty,
    })
}

fn problem_item(c: &Value, _included: &[Value]) -> Option<Item> {
    Some(Item {
        text: concept_text(c.get("code")),
        detail: String::new(),
        when: effective(c),
        flag: String::new(),
        trend: None,
        visit: None,
    })
}

fn medication_item(m: &Value, included: &[Value]) -> Option<Item> {
    Some(Item {
        text: medication_text(m, included),
        detail: m
            .pointer("/dosageInstruction/0/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        when: effective(m),
        flag: String::new(),
        trend: None,
        visit: None,
    })
}

/// An observation with its value, unit, date and flag.
/// An observation's test as its trend's `code` parameter (`system|code`, percent-encoded).
pub(super) fn trend_code(o: &Value) -> Option<String> {
    let coding = o.pointer("/code/coding/0")?;
    let code = coding.get("code").and_then(Value::as_str)?;
    let text = match coding.get("system").and_then(Value::as_str) {
        Some(system) => format!("{system}|{code}"),
        None => code.to_string(),
    };
    Some(form_urlencoded::byte_serialize(text.as_bytes()).collect())
}

fn result_item(o: &Value, _included: &[Value]) -> Option<Item> {
    Some(Item {
        text: concept_text(o.get("code")),
        detail: observation_value(o),
        when: effective(o),
        flag: abnormal_flag(o).unwrap_or_default(),
        trend: trend_code(o),
        visit: None,
    })
}

fn abnormal_item(o: &Value, included: &[Value]) -> Option<Item> {
    abnormal_flag(o)?;
    result_item(o, included)
}

fn encounter_item(e: &Value, _included: &[Value]) -> Option<Item> {
    Some(Item {
        text: e
            .pointer("/type/0")
            .map(|c| concept_text(Some(c)))
            .unwrap_or_else(|| "Encounter".into()),
        detail: e
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        when: effective(e),
        flag: String::new(),
        trend: None,
        visit: e.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

fn appointment_item(a: &Value, _included: &[Value]) -> Option<Item> {
    Some(Item {
        text: a
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| concept_text(a.pointer("/appointmentType"))),
        detail: a
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        when: effective(a),
        flag: String::new(),
        trend: None,
        visit: None,
    })
}

fn immunization_item(i: &Value, _included: &[Value]) -> Option<Item> {
    Some(Item {
        text: concept_text(i.get("vaccineCode")),
        detail: i
            .get("lotNumber")
            .and_then(Value::as_str)
            .map(|l| format!("lot {l}"))
            .unwrap_or_default(),
        when: effective(i),
        flag: String::new(),
        trend: None,
        visit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_search_box_is_read_as_people_type() {
        assert_eq!(
            read_terms("1961-02-03"),
            Some(Terms::Born("1961-02-03".into()))
        );
        assert_eq!(
            read_terms("3-feb-1961"),
            Some(Terms::Born("1961-02-03".into()))
        );
        assert_eq!(
            read_terms("Smith, John"),
            Some(Terms::FamilyGiven("Smith".into(), "John".into()))
        );
        assert_eq!(
            read_terms("john smi"),
            Some(Terms::Words(vec!["john".into(), "smi".into()]))
        );
        assert_eq!(
            read_terms("MRN-000123"),
            Some(Terms::Number("MRN-000123".into()))
        );
        assert_eq!(read_terms("   "), None);
        assert_eq!(
            read_terms("31-Feb-1961"),
            Some(Terms::Number("31-Feb-1961".into()))
        );
    }

    #[test]
    fn dates_and_ages_as_the_banner_shows_them() {
        assert_eq!(display_date("1961-02-03"), "03-Feb-1961");
        assert_eq!(display_date("1961-02"), "Feb-1961");
        assert_eq!(display_date("1961"), "1961");
        assert_eq!(display_date(""), "Not known");
        let day = |s: &str| {
            Instant::from_millis(
                ironchart_fhir::datetime::parse_date_range(s)
                    .map(|r| r.low)
                    .unwrap_or(0),
            )
        };
        assert_eq!(age("1961-02-03", day("2026-02-02")).as_deref(), Some("64y"));
        assert_eq!(age("1961-02-03", day("2026-02-03")).as_deref(), Some("65y"));
        assert_eq!(age("2025-02-10", day("2026-02-09")).as_deref(), Some("11m"));
        assert_eq!(age("2026-01-20", day("2026-02-03")).as_deref(), Some("14d"));
        assert_eq!(age("2030-01-01", day("2026-02-03")), None);
    }

    #[test]
    fn names_numbers_and_allergy_status() {
        let p = json!({"name": [{"family": "O'Brien", "given": ["Mary", "Ann"]}],
            "identifier": [{"system": "urn:x:other", "value": "9"},
                           {"system": "urn:ironchart:demo:mrn", "value": "MRN-1"}]});
        assert_eq!(display_name(&p), "O'BRIEN, Mary Ann");
        assert_eq!(mrn(&p).map(|m| m.1).as_deref(), Some("MRN-1"));
        let resource = |v: Value| Resource {
            resource_type: ResourceType::parse("AllergyIntolerance")
                .unwrap_or(ResourceType::PATIENT),
            id: Id::parse("a").unwrap_or_else(|| Id::from_random([0; 16])),
            version: 1,
            last_updated: Instant::EPOCH,
            deleted: false,
            method: "PUT".into(),
            json: Some(v.to_string().into_bytes()),
        };
        assert!(matches!(allergy_status(&[]), AllergyStatus::NotRecorded));
        let nka = resource(
            json!({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "716186003"}]}}),
        );
        assert!(matches!(
            allergy_status(std::slice::from_ref(&nka)),
            AllergyStatus::NoneKnown
        ));
        let penicillin = resource(json!({"code": {"text": "Penicillin"},
            "reaction": [{"manifestation": [{"text": "Hives"}]}]}));
        match allergy_status(&[nka, penicillin]) {
            AllergyStatus::Listed(l) => assert_eq!(l, vec!["Penicillin (Hives)".to_string()]),
            _ => panic!("listed"),
        }
        let refuted = resource(json!({"code": {"text": "Latex"},
            "verificationStatus": {"coding": [{"code": "refuted"}]}}));
        assert!(matches!(
            allergy_status(&[refuted]),
            AllergyStatus::NotRecorded
        ));
    }
}
