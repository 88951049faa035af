//! Writes a planned [`Person`] as FHIR resources, visit by visit: the Patient, then for each
//! visit its Encounter, the problems recorded, allergies (at the first visit), vital signs,
//! laboratory results with their reports, prescriptions and immunizations. Every reference
//! points to a resource written earlier in the same output.

use serde_json::{Value, json};

use super::AS_OF;
use super::calendar::{Day, Moment};
use super::clinic::{Clinic, ORGANIZATION_ID, SITES};
use super::datatypes::{
    base64, code_concept, coding, concept, object, quantity, reference, round_to,
};
use super::patient::{Person, Smoking, Visit, VisitKind, needs_follow_up};
use super::rng::Rng;
use super::terminology::{
    self as t, ACT_CODE, ACT_SITE, ALLERGY_CLINICAL, ALLERGY_VERIFICATION, Acute, BCP47,
    CONDITION_CATEGORY, CONDITION_CLINICAL, CONDITION_VERIFICATION, COURSE_OF_THERAPY, CVX,
    Chronic, DOSE_RATE_TYPE, DRUG_FORM, Diagnosis, DoseUnit, Drug, ICD10CM, IMMUNIZATION_ORIGIN,
    INTERPRETATION, MARITAL, MED_REQUEST_CATEGORY, MRN_SYSTEM, OBSERVATION_CATEGORY, PARTICIPATION,
    Panel, RXNORM, SNOMED, UCUM, V2_0074, V2_0131, V2_0203, V2_0443, Vaccine, Vital,
};

/// US Core's CarePlan categories and the subscriber relationships.
const CAREPLAN_CATEGORY: &str = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category";
const SUBSCRIBER_RELATIONSHIP: &str =
    "http://terminology.hl7.org/CodeSystem/subscriber-relationship";

/// A prescription that is renewed at check-ups while the condition lasts.
struct Prescription {
    /// Index of the MedicationRequest in the output.
    out: usize,
    id: String,
    drug: &'static Drug,
    authored: Day,
    reason: Reason,
}

#[derive(Clone)]
enum Reason {
    Condition(String),
    Code(t::Code),
}

/// A childhood vaccine series: the vaccine (by date given) and the ages (months) doses are due.
struct Series {
    vaccine: fn(Day) -> &'static Vaccine,
    due_months: &'static [i32],
    /// No dose after this age (rotavirus).
    last_month: Option<i32>,
}

const CHILDHOOD: [Series; 12] = [
    Series {
        vaccine: |_| &t::HEPB_PEDIATRIC,
        due_months: &[0, 1, 6],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::ROTAVIRUS,
        due_months: &[2, 4, 6],
        last_month: Some(8),
    },
    Series {
        vaccine: |_| &t::DTAP,
        due_months: &[2, 4, 6, 15, 48],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::HIB,
        due_months: &[2, 4, 12],
        last_month: Some(59),
    },
    Series {
        vaccine: |_| &t::PCV13,
        due_months: &[2, 4, 6, 12],
        last_month: Some(59),
    },
    Series {
        vaccine: |_| &t::IPV,
        due_months: &[2, 4, 6, 48],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::MMR,
        due_months: &[12, 48],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::VARICELLA,
        due_months: &[12, 48],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::HEPA_PEDIATRIC,
        due_months: &[12, 18],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::TDAP,
        due_months: &[132],
        last_month: None,
    },
    Series {
        vaccine: |_| &t::HPV9,
        due_months: &[132, 138],
        last_month: None,
    },
    Series {
        vaccine: |day| {
            if day.year() >= 2022 {
                &t::MENACWY_MCV4O
            } else {
                &t::MENACWY_MCV4P
            }
        },
        due_months: &[132, 192],
        last_month: None,
    },
];

/// Vaccination history as the chart is written.
#[derive(Default)]
struct Shots {
    started: bool,
    childhood: [(u8, Option<Day>); 12],
    tdap: bool,
    zoster: (u8, Option<Day>),
    pneumococcal: (u8, Option<Day>),
    hepb: (u8, Option<Day>),
    flu_seasons: Vec<i32>,
    covid_recorded: usize,
}

/// Writes the chart of one planned patient.
pub fn write(person: &Person, clinic: &Clinic, seed: u64, index: usize) -> Vec<Value> {
    let mut chart = Chart {
        p: person,
        index,
        clinic,
        rng: Rng::stream(seed, 0x43_4841_5254, index as u64),
        out: Vec::with_capacity(64 + person.visits.len() * 24),
        patient: reference("Patient", &person.id()),
        counters: [0; 10],
        condition_ids: vec![None; person.conditions.len()],
        prescriptions: Vec::new(),
        shots: Shots::default(),
        note: Note::default(),
    };
    chart.patient_resource();
    for (i, visit) in person.visits.iter().enumerate() {
        chart.visit(i, visit);
    }
    // On its own stream, so that the rest of the chart is the same with or without it.
    let mut rng = Rng::stream(seed, 0x4445_5649_4345, index as u64);
    if let Some(device) = implanted_device(person, &chart.patient, &mut rng) {
        chart.out.push(device);
    }
    chart.out
}

/// Implants (SNOMED CT), for US Core Implantable Device.
const IMPLANTS: [(&str, &str, &str); 4] = [
    ("14106009", "Cardiac pacemaker", "Pacemaker, dual chamber"),
    (
        "304120007",
        "Total hip replacement prosthesis",
        "Hip prosthesis, cementless",
    ),
    (
        "109228008",
        "Knee joint prosthesis",
        "Knee prosthesis, total",
    ),
    (
        "705643001",
        "Coronary artery stent",
        "Drug-eluting coronary stent",
    ),
];

/// An implanted device (US Core Implantable Device) for some patients over 55: its kind,
/// its UDI (synthetic device identifier, lot, serial and dates) and when it was put in.
fn implanted_device(p: &Person, patient: &Value, rng: &mut Rng) -> Option<Value> {
    if p.age(AS_OF) < 55.0 || !rng.chance(0.15) {
        return None;
    }
    let (code, display, name) = rng.pick(&IMPLANTS);
    // Put in between age 50 and a month ago.
    let earliest = AS_OF.days_since(p.birth) - (50 * 365);
    let implanted = AS_OF.plus(-(rng.int(30, i64::from(earliest.max(31))) as i32));
    let made = implanted.plus(-(rng.int(60, 400) as i32));
    let expires = made.plus(5 * 365);
    let di = format!("{:014}", 10_884_521_000_000u64 + rng.below(900_000));
    let lot = format!("L{}", rng.int(10_000, 99_999));
    let serial = format!("S{}", rng.int(1_000_000, 9_999_999));
    let yymmdd = |d: Day| {
        let (y, m, dd) = d.ymd();
        format!("{:02}{m:02}{dd:02}", y % 100)
    };
    Some(json!({
        "resourceType": "Device",
        "id": format!("dev-{}", p.key),
        "udiCarrier": [{
            "deviceIdentifier": di,
            "carrierHRF": format!(
                "(01){di}(11){}(17){}(10){lot}(21){serial}",
                yymmdd(made),
                yymmdd(expires)
            )
        }],
        "status": "active",
        "distinctIdentifier": serial,
        "manufacturer": "Cascade Medical Devices",
        "manufactureDate": made.date(),
        "expirationDate": expires.date(),
        "lotNumber": lot,
        "serialNumber": serial,
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
        "type": concept(SNOMED, code, display),
        "patient": patient,
        "note": [{"text": format!("Implanted {}.", implanted.date())}]
    }))
}

struct Chart<'a> {
    p: &'a Person,
    /// The patient number (for the MRN).
    index: usize,
    clinic: &'a Clinic,
    rng: Rng,
    out: Vec<Value>,
    patient: Value,
    counters: [u32; 10],
    condition_ids: Vec<Option<String>>,
    prescriptions: Vec<Prescription>,
    shots: Shots,
    note: Note,
}

/// What the progress note of the current visit will say, gathered as the visit is written.
#[derive(Default)]
struct Note {
    vitals: String,
    screening: Vec<String>,
    allergies: Option<String>,
    assessment: Vec<String>,
    plan: Vec<String>,
}

/// Where and when vital signs were taken, and by whom.
struct VitalContext {
    enc: Value,
    when: String,
    nurse: Value,
}

/// Kinds of resource ids in a chart (index into `Chart::counters`), with their prefix and width.
#[derive(Clone, Copy)]
enum Kind {
    Encounter,
    Observation,
    Condition,
    Medication,
    Allergy,
    Immunization,
    Report,
    Document,
    Order,
    Procedure,
}

impl Kind {
    fn prefix(self) -> (&'static str, usize) {
        match self {
            Kind::Encounter => ("enc", 2),
            Kind::Observation => ("obs", 4),
            Kind::Condition => ("cond", 2),
            Kind::Medication => ("mrx", 2),
            Kind::Allergy => ("alg", 2),
            Kind::Immunization => ("imm", 2),
            Kind::Report => ("rpt", 2),
            Kind::Document => ("doc", 2),
            Kind::Order => ("ord", 2),
            Kind::Procedure => ("proc", 2),
        }
    }
}

fn interpretation(code: &str) -> Value {
    let display = match code {
        "H" => "High",
        "L" => "Low",
        _ => "Normal",
    };
    Value::Array(vec![concept(INTERPRETATION, code, display)])
}

/// A one-element array of a CodeableConcept (the shape of `category`).
fn category(system: &str, code: &str, display: &str) -> Value {
    Value::Array(vec![concept(system, code, display)])
}

fn diagnosis_concept(d: &Diagnosis) -> Value {
    object! {
        "coding" => vec![
            coding(ICD10CM, d.icd10.0, d.icd10.1),
            coding(SNOMED, d.snomed.0, d.snomed.1),
        ],
        "text" => d.text
    }
}

impl Chart<'_> {
    fn next_id(&mut self, kind: Kind) -> String {
        let n = &mut self.counters[kind as usize];
        *n += 1;
        let (prefix, width) = kind.prefix();
        format!("{prefix}-{}-{:0width$}", self.p.key, *n)
    }

    fn clinician_ref(&self, index: usize) -> Value {
        self.clinician(index).map_or_else(
            || reference("Organization", ORGANIZATION_ID),
            |c| reference("Practitioner", &c.id),
        )
    }

    fn clinician(&self, index: usize) -> Option<&super::clinic::Clinician> {
        self.clinic.clinicians.get(index)
    }

    // -----------------------------------------------------------------------------------------

    fn patient_resource(&mut self) {
        let p = self.p;
        let mut given = vec![p.given];
        given.extend(p.middle);
        let area = p.phone.get(..3).unwrap_or("503");
        let mut telecom = vec![json!({
            "system": "phone",
            "value": p.phone,
            "use": if self.rng.chance(0.8) { "mobile" } else { "home" },
            "rank": 1
        })];
        if let Some(email) = &p.email {
            telecom.push(json!({"system": "email", "value": email, "use": "home"}));
        }
        let mut patient = json!({
            "resourceType": "Patient",
            "id": p.id(),
            "identifier": [{
                "use": "usual",
                "type": {
                    "coding": [coding(V2_0203, "MR", "Medical record number")],
                    "text": "Medical record number"
                },
                "system": MRN_SYSTEM,
                "value": (10_000_000 + self.index as u64).to_string()
            }],
            "active": true,
            "name": [{"use": "official", "family": p.family, "given": given}],
            "telecom": telecom,
            "gender": if p.female { "female" } else { "male" },
            "birthDate": p.birth.date(),
            "address": [{
                "use": "home",
                "type": "physical",
                "line": p.address.lines,
                "city": p.address.town.name,
                "state": p.address.town.state,
                "postalCode": p.address.zip,
                "country": "US"
            }]
        });
        if let Some((code, display)) = p.marital {
            patient["maritalStatus"] =
                json!({"coding": [coding(MARITAL, code, display)], "text": display});
        }
        if let Some((mother_or_father, is_mother)) = p.guardian {
            let phone = super::names::phone(&mut self.rng, area);
            patient["contact"] = json!([{
                "relationship": [{
                    "coding": [coding(V2_0131, "N", "Next-of-Kin")],
                    "text": if is_mother { "Mother" } else { "Father" }
                }],
                "name": {"use": "official", "family": p.family, "given": [mother_or_father]},
                "telecom": [{"system": "phone", "value": phone, "use": "mobile"}],
                "gender": if is_mother { "female" } else { "male" }
            }]);
        }
        if let Some((code, name, english)) = p.language {
            let mut languages = vec![json!({
                "language": {"coding": [coding(BCP47, code, name)], "text": name},
                "preferred": true
            })];
            if english {
                languages.push(json!({
                    "language": {"coding": [coding(BCP47, "en", "English")], "text": "English"},
                    "preferred": false
                }));
            }
            patient["communication"] = Value::Array(languages);
        }
        patient["generalPractitioner"] = json!([self.clinician_ref(p.pcp)]);
        patient["managingOrganization"] = reference("Organization", ORGANIZATION_ID);
        self.out.push(patient);
        // The patient's insurance and care team (US Core Coverage and CareTeam).
        self.out.push(json!({
            "resourceType": "Coverage",
            "id": format!("cov-{}", p.key),
            "status": "active",
            "type": concept(ACT_CODE, "HIP", "health insurance plan policy"),
            "subscriberId": format!("M{}", 40_000_000 + self.index as u64),
            "beneficiary": self.patient,
            "relationship": concept(SUBSCRIBER_RELATIONSHIP, "self", "Self"),
            "payor": [{"display": "Cascade Health Plan"}]
        }));
        self.out.push(json!({
            "resourceType": "CareTeam",
            "id": format!("team-{}", p.key),
            "status": "active",
            "name": "Primary care team",
            "subject": self.patient,
            "participant": [{
                "role": [concept(SNOMED, "446050000", "Primary care physician")],
                "member": self.clinician_ref(p.pcp)
            }],
            "managingOrganization": [reference("Organization", ORGANIZATION_ID)]
        }));
    }

    fn visit(&mut self, i: usize, visit: &Visit) {
        self.note = Note::default();
        let enc_id = self.next_id(Kind::Encounter);
        self.encounter(visit, &enc_id);
        let enc = reference("Encounter", &enc_id);
        for (ci, planned) in self.p.conditions.iter().enumerate() {
            if planned.visit == i {
                let id = self.chronic_condition(ci, visit, &enc);
                self.condition_ids[ci] = Some(id);
            }
        }
        let acute_condition = visit
            .acute
            .map(|acute| self.acute_condition(acute, visit, &enc));
        if i == 0 {
            self.allergies(visit, &enc);
        }
        self.vitals(visit, &enc);
        self.screening(i, visit, &enc);
        self.labs(i, visit, &enc);
        self.prescriptions(i, visit, &enc, acute_condition);
        self.immunizations(visit, &enc);
        self.progress_note(i, visit, &enc);
    }

    fn encounter(&mut self, visit: &Visit, id: &str) {
        let end = visit.start.plus_minutes(visit.minutes);
        let period = json!({"start": visit.start.date_time(), "end": end.date_time()});
        let kind = match visit.kind {
            VisitKind::WellChild => t::ENCOUNTER_WELL_CHILD,
            VisitKind::Checkup => t::ENCOUNTER_CHECKUP,
            VisitKind::FollowUp => t::ENCOUNTER_FOLLOW_UP,
            VisitKind::Sick => t::ENCOUNTER_SYMPTOM,
        };
        let mut encounter = json!({
            "resourceType": "Encounter",
            "id": id,
            "status": "finished",
            "class": coding(ACT_CODE, "AMB", "ambulatory"),
            "type": [code_concept(&kind, None)],
            "subject": self.patient,
            "participant": [{
                "type": [{
                    "coding": [coding(PARTICIPATION, "PPRF", "primary performer")],
                    "text": "Primary performer"
                }],
                "period": period,
                "individual": self.clinician_ref(visit.clinician)
            }],
            "period": period,
            "length": {"value": visit.minutes, "unit": "min", "system": UCUM, "code": "min"}
        });
        let reason = match visit.acute {
            Some(acute) => Some(acute.diagnosis()),
            None if visit.kind == VisitKind::FollowUp => self
                .p
                .conditions
                .iter()
                .find(|c| {
                    needs_follow_up(c.kind)
                        && c.resolved.is_none_or(|r| r > visit.day())
                        && self
                            .p
                            .visits
                            .get(c.visit)
                            .is_some_and(|v| v.day() <= visit.day())
                })
                .map(|c| c.kind.diagnosis()),
            None => None,
        };
        if let Some(d) = reason {
            encounter["reasonCode"] = json!([{
                "coding": [coding(SNOMED, d.snomed.0, d.snomed.1)],
                "text": d.text
            }]);
        }
        encounter["location"] = json!([{
            "location": reference("Location", SITES[visit.site.min(SITES.len() - 1)].id),
            "status": "completed"
        }]);
        encounter["serviceProvider"] = reference("Organization", ORGANIZATION_ID);
        self.out.push(encounter);
    }

    fn chronic_condition(&mut self, ci: usize, visit: &Visit, enc: &Value) -> String {
        let planned = &self.p.conditions[ci];
        let id = self.next_id(Kind::Condition);
        let (status, status_display) = if planned.resolved.is_some() {
            ("resolved", "Resolved")
        } else {
            ("active", "Active")
        };
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "clinicalStatus": concept(CONDITION_CLINICAL, status, status_display),
            "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": category(CONDITION_CATEGORY, "problem-list-item", "Problem List Item"),
            "code": diagnosis_concept(planned.kind.diagnosis()),
            "subject": self.patient,
            "encounter": enc
        });
        if planned.kind != Chronic::Obesity {
            let onset = if planned.pre_existing {
                match self.rng.below(10) {
                    0..=4 => planned.onset.year().to_string(),
                    5..=8 => planned.onset.year_month(),
                    _ => planned.onset.date(),
                }
            } else {
                planned.onset.date()
            };
            condition["onsetDateTime"] = json!(onset);
        }
        if let Some(resolved) = planned.resolved {
            condition["abatementDateTime"] = json!(resolved.date());
        }
        condition["recordedDate"] = json!(visit.start.date_time());
        condition["recorder"] = self.clinician_ref(visit.clinician);
        condition["asserter"] = self.clinician_ref(visit.clinician);
        self.out.push(condition);
        let d = planned.kind.diagnosis();
        // A goal and a care plan for it (US Core Goal and CarePlan).
        let goal_id = format!("goal-{}-{ci}", self.p.key);
        let active = planned.resolved.is_none();
        self.out.push(json!({
            "resourceType": "Goal",
            "id": goal_id,
            "lifecycleStatus": if active { "active" } else { "completed" },
            "description": {"text": format!("Keep {} under control", d.text.to_lowercase())},
            "subject": self.patient,
            "startDate": visit.day().date(),
            "addresses": [reference("Condition", &id)],
            "expressedBy": self.clinician_ref(visit.clinician)
        }));
        self.out.push(json!({
            "resourceType": "CarePlan",
            "id": format!("plan-{}-{ci}", self.p.key),
            "text": {
                "status": "generated",
                "div": format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\">Care plan for {}</div>",
                    d.text.to_lowercase()
                )
            },
            "status": if active { "active" } else { "completed" },
            "intent": "plan",
            "category": [concept(CAREPLAN_CATEGORY, "assess-plan", "Assessment and Plan of Treatment")],
            "subject": self.patient,
            "encounter": enc,
            "addresses": [reference("Condition", &id)],
            "goal": [reference("Goal", &goal_id)],
            "author": self.clinician_ref(visit.clinician)
        }));
        self.note.assessment.push(if planned.pre_existing {
            format!(
                "{} ({}), since {}: added to the problem list.",
                d.text,
                d.icd10.0,
                planned.onset.year()
            )
        } else {
            format!("{} ({}): new diagnosis.", d.text, d.icd10.0)
        });
        id
    }

    fn acute_condition(&mut self, acute: Acute, visit: &Visit, enc: &Value) -> String {
        let id = self.next_id(Kind::Condition);
        let onset = visit.day().plus(-(self.rng.int(1, 5) as i32));
        let (lo, hi) = acute.duration_days();
        let end = visit.day().plus(self.rng.int(lo, hi) as i32);
        let resolved = end <= AS_OF;
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "clinicalStatus": if resolved {
                concept(CONDITION_CLINICAL, "resolved", "Resolved")
            } else {
                concept(CONDITION_CLINICAL, "active", "Active")
            },
            "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": category(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis"),
            "code": diagnosis_concept(acute.diagnosis()),
            "subject": self.patient,
            "encounter": enc,
            "onsetDateTime": onset.date()
        });
        if resolved {
            condition["abatementDateTime"] = json!(end.date());
        }
        condition["recordedDate"] = json!(visit.start.date_time());
        condition["recorder"] = self.clinician_ref(visit.clinician);
        self.out.push(condition);
        let d = acute.diagnosis();
        self.note
            .assessment
            .push(format!("{} ({}).", d.text, d.icd10.0));
        id
    }

    fn allergies(&mut self, visit: &Visit, enc: &Value) {
        let listed: Vec<String> = self
            .p
            .allergies
            .iter()
            .map(|a| {
                let (reaction, _) = a.allergen.reactions[a.reaction];
                format!("{} ({})", a.allergen.text, reaction.display.to_lowercase())
            })
            .collect();
        self.note.allergies = Some(if listed.is_empty() {
            if self.p.no_known_allergies {
                "no known allergies".to_string()
            } else {
                "none recorded".to_string()
            }
        } else {
            listed.join(", ")
        });
        let recorded = visit.start.date_time();
        let recorder = self.clinician_ref(visit.clinician);
        for allergy in &self.p.allergies {
            let allergen = allergy.allergen;
            let (manifestation, severity) = allergen.reactions[allergy.reaction];
            let high = allergen.high_criticality || severity == "severe";
            let mut resource = json!({
                "resourceType": "AllergyIntolerance",
                "id": self.next_id(Kind::Allergy),
                "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [allergen.category.code()],
                "criticality": if high { "high" } else { "low" },
                "code": code_concept(&allergen.code, Some(allergen.text)),
                "patient": self.patient,
                "encounter": enc
            });
            if let Some(year) = allergy.onset_year {
                resource["onsetDateTime"] = json!(year.to_string());
            }
            resource["recordedDate"] = json!(recorded);
            resource["recorder"] = recorder.clone();
            resource["reaction"] = json!([{
                "manifestation": [code_concept(&manifestation, None)],
                "severity": severity
            }]);
            self.out.push(resource);
        }
        if self.p.no_known_allergies {
            let resource = json!({
                "resourceType": "AllergyIntolerance",
                "id": self.next_id(Kind::Allergy),
                "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
                "code": code_concept(&t::NO_KNOWN_ALLERGY, Some("No known allergies")),
                "patient": self.patient,
                "encounter": enc,
                "recordedDate": recorded,
                "recorder": recorder
            });
            self.out.push(resource);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Vital signs

    fn vitals(&mut self, visit: &Visit, enc: &Value) {
        let p = self.p;
        let day = visit.day();
        let age = p.age(day);
        let when = visit.start.plus_minutes(5).date_time();
        let nurse = self.clinician_ref(self.clinic.nurse_at(visit.site));
        let (fever_chance, fever_rise) = visit.acute.map_or((0.0, 0.0), Acute::fever);
        let fever = if self.rng.chance(fever_chance) {
            (fever_rise + self.rng.gauss(0.0, 0.3)).max(0.4)
        } else {
            0.0
        };
        let respiratory = matches!(
            visit.acute,
            Some(Acute::UpperRespiratory | Acute::Bronchitis | Acute::Sinusitis)
        );
        let rng = &mut self.rng;
        let temperature = 36.75 + rng.gauss(0.0, 0.15) + fever;
        let heart_rate = p.resting_heart_rate(day) + rng.gauss(0.0, 4.0) + 10.0 * fever;
        let resp_rate = p.respiratory_rate(day)
            + rng.gauss(0.0, 1.2)
            + if respiratory { 2.0 } else { 0.0 }
            + 2.0 * fever;
        let spo2 = (p.oxygen_saturation(day) + rng.gauss(0.0, 0.7)
            - if respiratory { 1.0 } else { 0.0 })
        .min(100.0);
        let true_height = p.true_height(day);
        let height = round_to(true_height + rng.gauss(0.0, 0.3), 1);
        let weight = round_to(
            p.true_bmi(day) * (true_height / 100.0).powi(2) * (1.0 + rng.gauss(0.0, 0.006)),
            1,
        );
        let bmi = weight / (height / 100.0).powi(2);
        let bp = p.true_blood_pressure(day).map(|(sys, dia)| {
            let sys = sys + rng.gauss(0.0, 5.0);
            let dia = (dia + rng.gauss(0.0, 3.5)).min(sys - 20.0);
            (sys, dia)
        });

        let ctx = VitalContext {
            enc: enc.clone(),
            when,
            nurse,
        };
        if let Some((sys, dia)) = bp {
            let v = &t::BLOOD_PRESSURE;
            let components = json!([
                {
                    "code": code_concept(&t::SYSTOLIC, None),
                    "valueQuantity": quantity(sys, 0, v.unit, v.ucum)
                },
                {
                    "code": code_concept(&t::DIASTOLIC, None),
                    "valueQuantity": quantity(dia, 0, v.unit, v.ucum)
                }
            ]);
            self.vital(&ctx, v, "component", components);
        }
        self.vital_quantity(&ctx, &t::HEART_RATE, heart_rate);
        self.vital_quantity(&ctx, &t::RESPIRATORY_RATE, resp_rate);
        self.vital_quantity(&ctx, &t::BODY_TEMPERATURE, temperature);
        if age >= 2.0 {
            self.vital_quantity(&ctx, &t::OXYGEN_SATURATION, spo2);
        }
        self.vital_quantity(&ctx, &t::BODY_HEIGHT, height);
        self.vital_quantity(&ctx, &t::BODY_WEIGHT, weight);
        if age >= 2.0 {
            self.vital_quantity(&ctx, &t::BMI, bmi);
        }
        let head = p
            .head_circumference(day)
            .map(|hc| hc + self.rng.gauss(0.0, 0.3));
        if let Some(hc) = head {
            self.vital_quantity(&ctx, &t::HEAD_CIRCUMFERENCE, hc);
        }
        let mut line = String::new();
        if let Some((sys, dia)) = bp {
            line.push_str(&format!("BP {sys:.0}/{dia:.0} mmHg, "));
        }
        line.push_str(&format!(
            "HR {heart_rate:.0}/min, RR {resp_rate:.0}/min, T {temperature:.1} °C"
        ));
        if age >= 2.0 {
            line.push_str(&format!(", SpO2 {spo2:.0}%"));
        }
        line.push_str(&format!(", height {height:.1} cm, weight {weight:.1} kg"));
        if age >= 2.0 {
            line.push_str(&format!(", BMI {bmi:.1} kg/m2"));
        }
        if let Some(hc) = head {
            line.push_str(&format!(", head circumference {hc:.1} cm"));
        }
        self.note.vitals = line;
    }

    // -----------------------------------------------------------------------------------------
    // Screening: tobacco use and mood questionnaires

    fn screening(&mut self, i: usize, visit: &Visit, enc: &Value) {
        let p = self.p;
        let day = visit.day();
        let age = p.age(day);
        let when = visit.start.plus_minutes(8).date_time();
        if visit.kind.preventive() && age >= 13.0 {
            let status = match p.smoking {
                Smoking::Never => t::NEVER_SMOKER,
                Smoking::Former => t::EX_SMOKER,
                Smoking::Current => t::DAILY_SMOKER,
            };
            self.note
                .screening
                .push(format!("Tobacco: {}", status.display.to_lowercase()));
            let mut obs = self.survey_base(
                &t::SMOKING_STATUS,
                "social-history",
                "Social History",
                enc,
                &when,
            );
            obs["valueCodeableConcept"] = code_concept(&status, None);
            self.out.push(obs);
        }
        if age < 12.0 {
            return;
        }
        let (phq2, phq9, gad7) = p.mood_scores(day, &mut self.rng);
        let watched = |kind: Chronic| {
            p.active(kind, day).is_some()
                && p.conditions.iter().any(|c| c.kind == kind && c.visit <= i)
        };
        let mut scores: Vec<(&t::Code, i64)> = Vec::new();
        if visit.kind.preventive() {
            scores.push((&t::PHQ2, phq2));
        }
        if let Some(score) =
            phq9.filter(|_| watched(Chronic::Depression) && visit.kind != VisitKind::Sick)
        {
            scores.push((&t::PHQ9, score));
        }
        if let Some(score) =
            gad7.filter(|_| watched(Chronic::Anxiety) && visit.kind != VisitKind::Sick)
        {
            scores.push((&t::GAD7, score));
        }
        for (code, score) in scores {
            let short = code
                .display
                .split(['(', ')'])
                .nth(1)
                .unwrap_or(code.display);
            self.note.screening.push(format!("{short} {score}"));
            let mut obs = self.survey_base(code, "survey", "Survey", enc, &when);
            obs["valueInteger"] = Value::from(score);
            self.out.push(obs);
        }
    }

    fn survey_base(
        &mut self,
        code: &t::Code,
        category_code: &str,
        category_display: &str,
        enc: &Value,
        when: &str,
    ) -> Value {
        object! {
            "resourceType" => "Observation",
            "id" => self.next_id(Kind::Observation),
            "status" => "final",
            "category" => category(OBSERVATION_CATEGORY, category_code, category_display),
            "code" => code_concept(code, None),
            "subject" => self.patient.clone(),
            "encounter" => enc.clone(),
            "effectiveDateTime" => when,
        }
    }

    fn vital_quantity(&mut self, ctx: &VitalContext, vital: &Vital, value: f64) {
        let value = quantity(value, vital.places, vital.unit, vital.ucum);
        self.vital(ctx, vital, "valueQuantity", value);
    }

    /// Writes a vital-signs Observation with `value` under `field`.
    fn vital(&mut self, ctx: &VitalContext, vital: &Vital, field: &str, value: Value) {
        let mut code = code_concept(&vital.code, Some(vital.text));
        if vital.code.code == t::OXYGEN_SATURATION.code.code {
            let oximetry = &t::PULSE_OXIMETRY;
            if let Some(codings) = code["coding"].as_array_mut() {
                codings.push(coding(oximetry.system, oximetry.code, oximetry.display));
            }
        }
        let mut obs = object! {
            "resourceType" => "Observation",
            "id" => self.next_id(Kind::Observation),
            "meta" => object! {"profile" => vec![vital.profile]},
            "status" => "final",
            "category" => category(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs"),
            "code" => code,
            "subject" => self.patient.clone(),
            "encounter" => ctx.enc.clone(),
            "effectiveDateTime" => ctx.when.as_str(),
            "performer" => vec![ctx.nurse.clone()],
        };
        obs[field] = value;
        self.out.push(obs);
    }

    // -----------------------------------------------------------------------------------------
    // Laboratory

    fn panels_for(&mut self, i: usize, visit: &Visit) -> Vec<Panel> {
        let p = self.p;
        let day = visit.day();
        let age = p.age(day);
        if age < 18.0 {
            return Vec::new();
        }
        let active = |k: Chronic| p.active(k, day).is_some();
        let rng = &mut self.rng;
        let mut wanted = [false; Panel::ALL.len()];
        let mut want = |panel: Panel| wanted[panel as usize] = true;
        match visit.kind {
            VisitKind::Checkup | VisitKind::WellChild => {
                if active(Chronic::Hypertension)
                    || active(Chronic::Diabetes)
                    || active(Chronic::Ckd3)
                    || rng.chance(0.5)
                {
                    want(Panel::Bmp);
                }
                if active(Chronic::IronDeficiency) || rng.chance(0.45) {
                    want(Panel::Cbc);
                }
                if active(Chronic::Hyperlipidemia)
                    || active(Chronic::Diabetes)
                    || active(Chronic::CoronaryDisease)
                    || (age >= 40.0 && rng.chance(0.5))
                    || rng.chance(0.15)
                {
                    want(Panel::Lipid);
                }
                if active(Chronic::Diabetes)
                    || (age >= 35.0 && p.true_bmi(day) >= 25.0 && rng.chance(0.35))
                {
                    want(Panel::A1c);
                }
                if active(Chronic::Hypothyroidism) || rng.chance(0.1) {
                    want(Panel::Tsh);
                }
                if active(Chronic::Diabetes) {
                    want(Panel::Uacr);
                }
                // A comprehensive panel (with liver tests) in place of the basic one for
                // patients on statins and many older adults.
                let statin = p.on_drug(t::SIMVASTATIN_20.rxnorm, day).is_some()
                    || p.on_drug(t::ATORVASTATIN_80.rxnorm, day).is_some();
                if statin || (age >= 40.0 && rng.chance(0.5)) || rng.chance(0.25) {
                    want(Panel::Cmp);
                }
            }
            VisitKind::FollowUp => {
                if active(Chronic::Diabetes) {
                    want(Panel::A1c);
                }
                let recent = |rx: &str| p.on_drug(rx, day).is_some_and(|d| d <= 120);
                if active(Chronic::Ckd3)
                    || (active(Chronic::Diabetes) && rng.chance(0.5))
                    || recent(t::LISINOPRIL_10.rxnorm)
                    || recent(t::LOSARTAN_25.rxnorm)
                    || recent(t::HCTZ_25.rxnorm)
                {
                    want(Panel::Bmp);
                }
                if recent(t::LEVOTHYROXINE_75.rxnorm)
                    || (active(Chronic::Hypothyroidism) && rng.chance(0.3))
                {
                    want(Panel::Tsh);
                }
                if recent(t::SIMVASTATIN_20.rxnorm) || recent(t::ATORVASTATIN_80.rxnorm) {
                    want(Panel::Lipid);
                }
                if active(Chronic::IronDeficiency) {
                    want(Panel::Cbc);
                }
            }
            VisitKind::Sick => {
                if visit.acute.is_some_and(Acute::bacterial) && rng.chance(0.15) {
                    want(Panel::Cbc);
                }
            }
        }
        // Tests that establish a diagnosis made at this visit.
        for c in p
            .conditions
            .iter()
            .filter(|c| c.visit == i && !c.pre_existing)
        {
            match c.kind {
                Chronic::Diabetes => {
                    want(Panel::A1c);
                    want(Panel::Bmp);
                }
                Chronic::Hyperlipidemia => want(Panel::Lipid),
                Chronic::Hypothyroidism => want(Panel::Tsh),
                Chronic::Ckd3 => want(Panel::Bmp),
                Chronic::IronDeficiency => want(Panel::Cbc),
                _ => {}
            }
        }
        if wanted[Panel::Cmp as usize] {
            wanted[Panel::Bmp as usize] = false;
        }
        Panel::ALL
            .iter()
            .zip(wanted)
            .filter_map(|(&panel, on)| on.then_some(panel))
            .collect()
    }

    fn labs(&mut self, i: usize, visit: &Visit, enc: &Value) {
        let panels = self.panels_for(i, visit);
        if panels.is_empty() {
            return;
        }
        let p = self.p;
        let day = visit.day();
        let collected = visit
            .start
            .plus_minutes(visit.minutes.saturating_sub(5))
            .date_time();
        // Results come back the next weekday morning (the same evening at the end of the record).
        let mut result_day = day.plus(1);
        while result_day.weekday() >= 5 {
            result_day = result_day.plus(1);
        }
        let delay = self.rng.int(0, 180) as u32;
        let issued = if result_day <= AS_OF {
            Moment::new(result_day, 7 * 60 + delay)
        } else {
            visit.start.plus_minutes(visit.minutes + 120 + delay)
        }
        .date_time();
        let lab = reference("Organization", ORGANIZATION_ID);
        // The orders (US Core ServiceRequest) and the blood draw (Procedure).
        let mut orders = Vec::with_capacity(panels.len());
        for panel in &panels {
            let id = self.next_id(Kind::Order);
            orders.push(reference("ServiceRequest", &id));
            self.out.push(object! {
                "resourceType" => "ServiceRequest",
                "id" => id,
                "status" => "completed",
                "intent" => "order",
                "category" => vec![concept(SNOMED, "108252007", "Laboratory procedure")],
                "code" => code_concept(&panel.code(), Some(panel.text())),
                "subject" => self.patient.clone(),
                "encounter" => enc.clone(),
                "occurrenceDateTime" => collected.as_str(),
                "authoredOn" => visit.start.date_time(),
                "requester" => self.clinician_ref(visit.clinician),
            });
        }
        let draw = self.next_id(Kind::Procedure);
        self.out.push(object! {
            "resourceType" => "Procedure",
            "id" => draw,
            "status" => "completed",
            "code" => concept(SNOMED, "82078001", "Collection of blood specimen for laboratory"),
            "subject" => self.patient.clone(),
            "encounter" => enc.clone(),
            "performedDateTime" => collected.as_str(),
            "basedOn" => orders.clone(),
        });
        self.note.plan.push(format!(
            "Labs drawn: {}.",
            panels
                .iter()
                .map(|p| p.text())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (panel, order) in panels.into_iter().zip(orders) {
            let values = p.panel_values(panel, day, visit.acute, &mut self.rng);
            let mut results = Vec::with_capacity(values.len());
            let mut flagged: Vec<String> = Vec::new();
            for (test, value) in values {
                let value = round_to(value, test.places);
                let (low, high) = if p.female { test.female } else { test.male };
                let flag = if low.is_some_and(|l| value < l) {
                    "L"
                } else if high.is_some_and(|h| value > h) {
                    "H"
                } else {
                    "N"
                };
                if flag != "N" {
                    flagged.push(format!(
                        "{} {}",
                        test.text,
                        if flag == "H" { "high" } else { "low" }
                    ));
                }
                let mut range = serde_json::Map::new();
                if let Some(l) = low {
                    range.insert("low".into(), quantity(l, test.places, test.unit, test.ucum));
                }
                if let Some(h) = high {
                    range.insert(
                        "high".into(),
                        quantity(h, test.places, test.unit, test.ucum),
                    );
                }
                let id = self.next_id(Kind::Observation);
                results.push(reference("Observation", &id));
                self.out.push(object! {
                    "resourceType" => "Observation",
                    "id" => id,
                    "status" => "final",
                    "category" => category(OBSERVATION_CATEGORY, "laboratory", "Laboratory"),
                    "code" => code_concept(&test.code, Some(test.text)),
                    "subject" => self.patient.clone(),
                    "encounter" => enc.clone(),
                    "effectiveDateTime" => collected.as_str(),
                    "issued" => issued.as_str(),
                    "performer" => vec![lab.clone()],
                    "valueQuantity" => quantity(value, test.places, test.unit, test.ucum),
                    "interpretation" => interpretation(flag),
                    "referenceRange" => vec![Value::Object(range)],
                });
            }
            let conclusion = if flagged.is_empty() {
                "All results within reference ranges.".to_string()
            } else {
                format!("Outside reference range: {}.", flagged.join(", "))
            };
            let id = self.next_id(Kind::Report);
            self.out.push(object! {
                "resourceType" => "DiagnosticReport",
                "id" => id,
                "basedOn" => vec![order],
                "status" => "final",
                "category" => category(V2_0074, "LAB", "Laboratory"),
                "code" => code_concept(&panel.code(), Some(panel.text())),
                "subject" => self.patient.clone(),
                "encounter" => enc.clone(),
                "effectiveDateTime" => collected.as_str(),
                "issued" => issued.as_str(),
                "performer" => vec![lab.clone()],
                "resultsInterpreter" => vec![self.clinician_ref(visit.clinician)],
                "result" => results,
                "conclusion" => conclusion,
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Prescriptions

    fn prescriptions(
        &mut self,
        i: usize,
        visit: &Visit,
        enc: &Value,
        acute_condition: Option<String>,
    ) {
        let p = self.p;
        let day = visit.day();
        // Renewals of long-term prescriptions at check-ups and follow-ups.
        if visit.kind != VisitKind::Sick {
            for k in 0..self.prescriptions.len() {
                let (authored, drug, reason, previous, out) = {
                    let rx = &self.prescriptions[k];
                    (
                        rx.authored,
                        rx.drug,
                        rx.reason.clone(),
                        rx.id.clone(),
                        rx.out,
                    )
                };
                if day.days_since(authored) < 300 || !self.reason_active(&reason, day) {
                    continue;
                }
                if let Some(old) = self.out.get_mut(out) {
                    old["status"] = json!("completed");
                }
                let (id, index) = self.medication_request(
                    drug,
                    visit,
                    enc,
                    &reason,
                    Some(previous.as_str()),
                    false,
                );
                let rx = &mut self.prescriptions[k];
                rx.id = id;
                rx.out = index;
                rx.authored = day;
            }
        }
        // New treatment for conditions recorded at this visit.
        for (ci, c) in p.conditions.iter().enumerate() {
            if c.visit != i {
                continue;
            }
            let Some(cond_id) = self.condition_ids[ci].clone() else {
                continue;
            };
            if c.drugs.is_empty() && !c.pre_existing {
                let advice = match c.kind {
                    Chronic::Hypertension | Chronic::Hyperlipidemia | Chronic::Obesity => {
                        Some("Counselled on diet, exercise and weight; recheck at follow-up.")
                    }
                    Chronic::Depression | Chronic::Anxiety => {
                        Some("Referred to behavioral health for counselling.")
                    }
                    Chronic::Gerd => {
                        Some("Advised on reflux measures; over-the-counter antacids as needed.")
                    }
                    Chronic::KneeOsteoarthritis => Some("Referred to physical therapy."),
                    _ => None,
                };
                if let Some(advice) = advice {
                    self.note.plan.push(advice.to_string());
                }
            }
            for &drug in &c.drugs {
                if self
                    .prescriptions
                    .iter()
                    .any(|rx| rx.drug.rxnorm == drug.rxnorm)
                {
                    continue;
                }
                let reason = Reason::Condition(cond_id.clone());
                let (id, index) =
                    self.medication_request(drug, visit, enc, &reason, None, c.pre_existing);
                if drug.course_days.is_none() {
                    self.prescriptions.push(Prescription {
                        out: index,
                        id,
                        drug,
                        authored: day,
                        reason,
                    });
                }
            }
        }
        // An epinephrine auto-injector for severe food allergies (from school age).
        let severe_food_allergy = p.allergies.iter().find(|a| {
            a.allergen.category == t::AllergyCategory::Food && a.allergen.high_criticality
        });
        if let Some(allergy) = severe_food_allergy.filter(|_| i == 0 && p.age(day) >= 7.0) {
            let drug = &t::EPINEPHRINE_AUTOINJECTOR;
            let reason = Reason::Code(allergy.allergen.code);
            let (id, index) = self.medication_request(drug, visit, enc, &reason, None, false);
            self.prescriptions.push(Prescription {
                out: index,
                id,
                drug,
                authored: day,
                reason,
            });
        }
        // Short treatment for the illness that brought the patient in.
        let acute_drug = visit.acute.and_then(|acute| self.acute_drug(acute, day));
        if let (Some(drug), Some(cond_id)) = (acute_drug, acute_condition) {
            let reason = Reason::Condition(cond_id);
            self.medication_request(drug, visit, enc, &reason, None, false);
        }
    }

    fn reason_active(&self, reason: &Reason, day: Day) -> bool {
        match reason {
            Reason::Code(_) => true,
            Reason::Condition(id) => self
                .condition_ids
                .iter()
                .zip(&self.p.conditions)
                .find(|(cid, _)| cid.as_deref() == Some(id.as_str()))
                .is_none_or(|(_, c)| c.resolved.is_none_or(|r| r > day)),
        }
    }

    fn acute_drug(&mut self, acute: Acute, day: Day) -> Option<&'static Drug> {
        let p = self.p;
        let age = p.age(day);
        let penicillin_allergy = p
            .allergies
            .iter()
            .any(|a| a.allergen.code.code == t::PENICILLIN.code.code);
        let avoid_nsaid = p.active(Chronic::Ckd3, day).is_some()
            || p.active(Chronic::CoronaryDisease, day).is_some();
        let rng = &mut self.rng;
        match acute {
            Acute::StrepThroat if penicillin_allergy => Some(&t::AZITHROMYCIN_250),
            Acute::StrepThroat if age >= 18.0 => Some(if rng.chance(0.6) {
                &t::PENICILLIN_V_500
            } else {
                &t::AMOXICILLIN_500
            }),
            Acute::StrepThroat if age >= 8.0 => Some(&t::AMOXICILLIN_250),
            Acute::OtitisMedia if (2.0..12.0).contains(&age) => {
                Some(&t::ACETAMINOPHEN_160_CHEWABLE)
            }
            Acute::Sinusitis if age >= 18.0 && rng.chance(0.7) => Some(if penicillin_allergy {
                &t::DOXYCYCLINE_100
            } else {
                &t::AMOX_CLAV
            }),
            Acute::UrinaryInfection if age >= 16.0 => Some(&t::NITROFURANTOIN_50),
            Acute::UpperRespiratory | Acute::ViralPharyngitis | Acute::Bronchitis
                if rng.chance(0.5) =>
            {
                if age >= 12.0 {
                    Some(&t::ACETAMINOPHEN_325)
                } else if age >= 2.0 {
                    Some(&t::ACETAMINOPHEN_160_CHEWABLE)
                } else {
                    None
                }
            }
            Acute::AnkleSprain if age >= 12.0 => Some(if avoid_nsaid {
                &t::ACETAMINOPHEN_325
            } else {
                &t::IBUPROFEN_200
            }),
            Acute::LowBackPain if age >= 18.0 => Some(if avoid_nsaid {
                &t::ACETAMINOPHEN_325
            } else {
                &t::NAPROXEN_SODIUM_220
            }),
            _ => None,
        }
    }

    /// Writes a MedicationRequest; returns its id and index in the output.
    fn medication_request(
        &mut self,
        drug: &'static Drug,
        visit: &Visit,
        enc: &Value,
        reason: &Reason,
        prior: Option<&str>,
        continued: bool,
    ) -> (String, usize) {
        let id = self.next_id(Kind::Medication);
        let day = visit.day();
        let short = drug.course_days.is_some() || drug.refills == 0 && drug.supply_days <= 14;
        let status = match drug.course_days {
            Some(days) if day.plus(days as i32) < AS_OF => "completed",
            Some(_) => "active",
            None if short && day.plus(drug.supply_days as i32) < AS_OF => "completed",
            None if AS_OF.days_since(day) > 365 => "completed",
            None => "active",
        };
        let mut repeat = serde_json::Map::new();
        if let Some(days) = drug.course_days {
            repeat.insert(
                "boundsDuration".into(),
                json!({"value": days, "unit": "days", "system": UCUM, "code": "d"}),
            );
        }
        repeat.insert("frequency".into(), json!(drug.frequency));
        repeat.insert("period".into(), json!(drug.period));
        repeat.insert("periodUnit".into(), json!(drug.period_unit));
        let mut dosage = json!({
            "sequence": 1,
            "text": drug.sig,
            "timing": {"repeat": repeat}
        });
        if drug.as_needed {
            dosage["asNeededBoolean"] = json!(true);
        }
        let route = drug.route.code();
        dosage["route"] = code_concept(&route, None);
        let dose = match drug.unit {
            DoseUnit::Tablet => Some(
                json!({"value": drug.dose, "unit": "tablet", "system": DRUG_FORM, "code": "TAB"}),
            ),
            DoseUnit::ChewableTablet => Some(
                json!({"value": drug.dose, "unit": "chewable tablet", "system": DRUG_FORM, "code": "CHEWTAB"}),
            ),
            DoseUnit::Capsule => Some(
                json!({"value": drug.dose, "unit": "capsule", "system": DRUG_FORM, "code": "CAP"}),
            ),
            DoseUnit::Puff => {
                Some(json!({"value": drug.dose, "unit": "puff", "system": UCUM, "code": "{puff}"}))
            }
            DoseUnit::Milliliter => {
                Some(json!({"value": drug.dose, "unit": "mL", "system": UCUM, "code": "mL"}))
            }
            DoseUnit::None => None,
        };
        if let Some(dose) = dose {
            dosage["doseAndRate"] = json!([{
                "type": concept(DOSE_RATE_TYPE, "ordered", "Ordered"),
                "doseQuantity": dose
            }]);
        }
        let (course, course_display) = if drug.course_days.is_some() || short {
            ("acute", "Short course (acute) therapy")
        } else {
            ("continuous", "Continuous long term therapy")
        };
        let mut request = json!({
            "resourceType": "MedicationRequest",
            "id": id,
            "status": status,
            "intent": "order",
            "category": category(MED_REQUEST_CATEGORY, "community", "Community"),
            "subject": self.patient,
            "encounter": enc,
            "authoredOn": visit.start.date_time(),
            "requester": self.clinician_ref(visit.clinician)
        });
        // A drug of the clinic's formulary is named by its Medication; any other by its code.
        if super::clinic::in_formulary(drug) {
            request["medicationReference"] = json!({
                "reference": format!("Medication/{}", super::clinic::medication_id(drug)),
                "display": drug.display
            });
        } else {
            request["medicationCodeableConcept"] = json!({
                "coding": [coding(RXNORM, drug.rxnorm, drug.display)],
                "text": drug.display
            });
        }
        match reason {
            Reason::Condition(cond) => {
                request["reasonReference"] = json!([reference("Condition", cond)])
            }
            Reason::Code(code) => request["reasonCode"] = json!([code_concept(code, None)]),
        }
        request["courseOfTherapyType"] = concept(COURSE_OF_THERAPY, course, course_display);
        request["dosageInstruction"] = json!([dosage]);
        request["dispenseRequest"] = json!({
            "validityPeriod": {"start": day.date(), "end": day.plus(365).date()},
            "numberOfRepeatsAllowed": drug.refills,
            "quantity": {"value": drug.dispense, "unit": drug.dispense_unit},
            "expectedSupplyDuration": {"value": drug.supply_days, "unit": "days", "system": UCUM, "code": "d"}
        });
        request["substitution"] = json!({"allowedBoolean": true});
        if let Some(prior) = prior {
            request["priorPrescription"] = reference("MedicationRequest", prior);
            self.note.plan.push(format!("Renewed {}.", drug.display));
        } else if continued {
            self.note.plan.push(format!(
                "Continued {} (prescription renewed here).",
                drug.display
            ));
        } else {
            self.note
                .plan
                .push(format!("Prescribed {}: {}", drug.display, drug.sig));
        }
        self.out.push(request);
        (id, self.out.len() - 1)
    }

    // -----------------------------------------------------------------------------------------
    // Immunizations

    fn immunizations(&mut self, visit: &Visit, enc: &Value) {
        let p = self.p;
        let day = visit.day();
        let age = p.age(day);
        let months = (f64::from(day.days_since(p.birth)) / 30.44) as i32;
        let mut due: Vec<(&'static Vaccine, u32)> = Vec::new();

        if !self.shots.started {
            // Doses due well before the first visit were given elsewhere.
            self.shots.started = true;
            for (k, series) in CHILDHOOD.iter().enumerate() {
                let done = series
                    .due_months
                    .iter()
                    .filter(|&&m| m + 2 < months)
                    .count();
                let done = if series.last_month.is_some_and(|last| months > last) {
                    series.due_months.len()
                } else {
                    done
                };
                self.shots.childhood[k].0 = done as u8;
            }
        }
        if visit.kind == VisitKind::WellChild {
            for (k, series) in CHILDHOOD.iter().enumerate() {
                let (given, last) = self.shots.childhood[k];
                let Some(&due_at) = series.due_months.get(given as usize) else {
                    continue;
                };
                let spaced = last.is_none_or(|l| day.days_since(l) >= 28);
                let in_age = series.last_month.is_none_or(|m| months <= m);
                if months >= due_at && spaced && in_age {
                    due.push(((series.vaccine)(day), u32::from(given) + 1));
                    self.shots.childhood[k] = (given + 1, Some(day));
                }
            }
        }
        if age >= 18.0 && visit.kind != VisitKind::Sick {
            let rng = &mut self.rng;
            let preventive = visit.kind.preventive();
            if preventive && !self.shots.tdap && age >= 19.0 && rng.chance(0.12) {
                self.shots.tdap = true;
                due.push((&t::TDAP, 1));
            }
            let (zoster, zoster_last) = self.shots.zoster;
            if age >= 50.0 && day >= Day::from_ymd(2018, 2, 1) {
                let next = match (zoster, zoster_last) {
                    (0, _) if preventive && rng.chance(0.3) => true,
                    (1, Some(last)) if day.days_since(last) >= 60 && rng.chance(0.85) => true,
                    _ => false,
                };
                if next {
                    due.push((&t::ZOSTER_RECOMBINANT, u32::from(zoster) + 1));
                    self.shots.zoster = (zoster + 1, Some(day));
                }
            }
            let (pneumo, pneumo_last) = self.shots.pneumococcal;
            if age >= 65.0 && preventive {
                let modern = day >= Day::from_ymd(2022, 1, 1);
                match (pneumo, pneumo_last) {
                    (0, _) if rng.chance(0.5) => {
                        due.push((if modern { &t::PCV20 } else { &t::PCV13 }, 1));
                        self.shots.pneumococcal = (if modern { 2 } else { 1 }, Some(day));
                    }
                    (1, Some(last)) if day.days_since(last) >= 330 && rng.chance(0.7) => {
                        due.push((&t::PPSV23, 1));
                        self.shots.pneumococcal = (2, Some(day));
                    }
                    _ => {}
                }
            }
            let (hepb, hepb_last) = self.shots.hepb;
            if p.active(Chronic::Diabetes, day).is_some() && age < 60.0 {
                let next = match (hepb, hepb_last) {
                    (0, _) => preventive && rng.chance(0.3),
                    (1, Some(last)) => day.days_since(last) >= 28,
                    (2, Some(last)) => day.days_since(last) >= 112,
                    _ => false,
                };
                if next {
                    due.push((&t::HEPB_ADULT, u32::from(hepb) + 1));
                    self.shots.hepb = (hepb + 1, Some(day));
                }
            }
        }
        // Influenza, once a season (September to March), from 6 months of age.
        let (year, month, _) = day.ymd();
        let season = if month >= 8 { year } else { year - 1 };
        let in_season = !(4..=8).contains(&month);
        if in_season
            && age >= 0.5
            && !self.shots.flu_seasons.contains(&season)
            && (visit.kind != VisitKind::Sick || visit.acute.is_some_and(|a| a.fever().0 <= 0.0))
            && self.rng.chance(p.flu_propensity)
        {
            self.shots.flu_seasons.push(season);
            let vaccine = if age >= 65.0 {
                if (2020..2024).contains(&season) {
                    &t::FLU_HIGH_DOSE_QUADRIVALENT
                } else {
                    &t::FLU_HIGH_DOSE_TRIVALENT
                }
            } else if season >= 2024 {
                &t::FLU_TRIVALENT_PF
            } else {
                &t::FLU_QUADRIVALENT_PF
            };
            due.push((vaccine, 1));
        }
        let nurse = self.clinic.nurse_at(visit.site);
        if !due.is_empty() {
            self.note.plan.push(format!(
                "Immunizations given: {}.",
                due.iter()
                    .map(|(v, _)| v.display)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        for (k, (vaccine, dose)) in due.into_iter().enumerate() {
            self.administered(vaccine, dose, k, visit, enc, nurse);
        }
        // COVID-19 doses given elsewhere, entered from the patient's vaccination card.
        while let Some(&(dose_day, vaccine)) = p.covid.get(self.shots.covid_recorded) {
            if dose_day >= day {
                break;
            }
            self.shots.covid_recorded += 1;
            self.note.plan.push(format!(
                "COVID-19 vaccine dose of {} entered from the vaccination card.",
                dose_day.date()
            ));
            let dose = self.shots.covid_recorded as u32;
            let resource = json!({
                "resourceType": "Immunization",
                "id": self.next_id(Kind::Immunization),
                "status": "completed",
                "vaccineCode": {"coding": [coding(CVX, vaccine.cvx, vaccine.display)], "text": vaccine.display},
                "patient": self.patient,
                "occurrenceDateTime": dose_day.date(),
                "recorded": visit.start.date_time(),
                "primarySource": false,
                "reportOrigin": concept(IMMUNIZATION_ORIGIN, "record", "Written Record"),
                "protocolApplied": [{"doseNumberPositiveInt": dose}]
            });
            self.out.push(resource);
        }
    }

    fn progress_note(&mut self, i: usize, visit: &Visit, enc: &Value) {
        let p = self.p;
        let day = visit.day();
        let end = visit.start.plus_minutes(visit.minutes);
        let clinician = self
            .clinician(visit.clinician)
            .map_or_else(|| "the clinic".to_string(), |c| c.display_name());
        let site = SITES[visit.site.min(SITES.len() - 1)].name;
        let (title, reason) = match (visit.kind, visit.acute) {
            (_, Some(acute)) => ("Sick visit", acute.diagnosis().text.to_string()),
            (VisitKind::WellChild, _) => {
                ("Well-child visit", "routine well-child care".to_string())
            }
            (VisitKind::Checkup, _) => {
                ("Annual physical examination", "preventive care".to_string())
            }
            (VisitKind::FollowUp, _) => {
                let watched: Vec<&str> = p
                    .conditions
                    .iter()
                    .filter(|c| {
                        c.visit < i && needs_follow_up(c.kind) && p.active(c.kind, day).is_some()
                    })
                    .map(|c| c.kind.diagnosis().text)
                    .collect();
                let reason = if watched.is_empty() {
                    "follow-up".to_string()
                } else {
                    format!("follow-up of {}", watched.join(", ").to_lowercase())
                };
                ("Follow-up visit", reason)
            }
            (VisitKind::Sick, None) => ("Sick visit", "acute concern".to_string()),
        };
        // Known problems that were not addressed above.
        if visit.kind != VisitKind::Sick {
            for c in p
                .conditions
                .iter()
                .filter(|c| c.visit < i && p.active(c.kind, day).is_some())
            {
                let d = c.kind.diagnosis();
                let course = if c.drugs.is_empty() {
                    "monitoring"
                } else {
                    "stable on current treatment"
                };
                self.note
                    .assessment
                    .push(format!("{} ({}): {course}.", d.text, d.icd10.0));
            }
        }
        let mut text = format!(
            "{title} on {date}\nSeen by {clinician} at {site}.\nReason for visit: {reason}.\n\nVital signs: {vitals}.\n",
            date = day.date(),
            vitals = self.note.vitals,
        );
        if !self.note.screening.is_empty() {
            text.push_str(&format!("Screening: {}.\n", self.note.screening.join("; ")));
        }
        if let Some(allergies) = &self.note.allergies {
            text.push_str(&format!("Allergies reviewed: {allergies}.\n"));
        }
        text.push_str("\nAssessment:\n");
        if self.note.assessment.is_empty() {
            text.push_str("- Well; no active problems.\n");
        }
        for line in &self.note.assessment {
            text.push_str(&format!("- {line}\n"));
        }
        text.push_str("\nPlan:\n");
        for line in &self.note.plan {
            text.push_str(&format!("- {line}\n"));
        }
        text.push_str(match visit.kind {
            VisitKind::Sick => "- Return if symptoms worsen or do not improve.\n",
            VisitKind::FollowUp => "- Continue current treatment; follow up as scheduled.\n",
            VisitKind::Checkup => "- Return for the annual examination in 12 months.\n",
            VisitKind::WellChild => "- Next well-child visit as scheduled.\n",
        });
        let document = object! {
            "resourceType" => "DocumentReference",
            "id" => self.next_id(Kind::Document),
            "status" => "current",
            "docStatus" => "final",
            "type" => code_concept(&t::PROGRESS_NOTE, None),
            "category" => category(t::DOCUMENT_CATEGORY, "clinical-note", "Clinical Note"),
            "subject" => self.patient.clone(),
            "date" => end.date_time(),
            "author" => vec![self.clinician_ref(visit.clinician)],
            "authenticator" => self.clinician_ref(visit.clinician),
            "custodian" => reference("Organization", ORGANIZATION_ID),
            "description" => format!("{title}: progress note"),
            "content" => vec![object! {
                "attachment" => object! {
                    "contentType" => "text/plain; charset=utf-8",
                    "language" => "en-US",
                    "data" => base64(text.as_bytes()),
                    "title" => format!("{title} – {}", day.date()),
                    "creation" => end.date_time(),
                },
            }],
            "context" => object! {
                "encounter" => vec![enc.clone()],
                "period" => object! {
                    "start" => visit.start.date_time(),
                    "end" => end.date_time(),
                },
            },
        };
        self.out.push(document);
    }

    fn administered(
        &mut self,
        vaccine: &'static Vaccine,
        dose: u32,
        k: usize,
        visit: &Visit,
        enc: &Value,
        nurse: usize,
    ) {
        let p = self.p;
        let day = visit.day();
        let when = visit
            .start
            .plus_minutes(visit.minutes.saturating_sub(3))
            .date_time();
        let letters = b"ABCDEFGHJKLMNPRSTUVWXYZ";
        let lot = format!(
            "{}{}{:04}",
            char::from(letters[self.rng.index(letters.len())]),
            char::from(letters[self.rng.index(letters.len())]),
            self.rng.below(10_000)
        );
        let expires = day.plus(self.rng.int(120, 540) as i32);
        let mut resource = json!({
            "resourceType": "Immunization",
            "id": self.next_id(Kind::Immunization),
            "status": "completed",
            "vaccineCode": {"coding": [coding(CVX, vaccine.cvx, vaccine.display)], "text": vaccine.display},
            "patient": self.patient,
            "encounter": enc,
            "occurrenceDateTime": when,
            "recorded": when,
            "primarySource": true,
            "location": reference("Location", SITES[visit.site.min(SITES.len() - 1)].id),
            "lotNumber": lot,
            "expirationDate": expires.date()
        });
        if vaccine.route != t::VaccineRoute::Oral {
            let thigh = p.age(day) < 3.0;
            // Alternate sides when several vaccines are given at one visit.
            let (code, display) = match (thigh, k % 2) {
                (true, 0) => ("LT", "left thigh"),
                (true, _) => ("RT", "right thigh"),
                (false, 0) => ("LA", "left arm"),
                (false, _) => ("RA", "right arm"),
            };
            resource["site"] = concept(ACT_SITE, code, display);
        }
        resource["route"] = code_concept(&vaccine.route.code(), None);
        resource["doseQuantity"] = quantity(vaccine.dose_ml, 1, "mL", "mL");
        resource["performer"] = json!([{
            "function": concept(V2_0443, "AP", "Administering Provider"),
            "actor": self.clinician_ref(nurse)
        }]);
        resource["protocolApplied"] = json!([{"doseNumberPositiveInt": dose}]);
        self.out.push(resource);
    }
}
