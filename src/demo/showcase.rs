//! The demo's showcase records, beside the generated cohort, so that each role's pages have
//! something to show at once:
//!
//! - `pat-long-history`: a man with 500 visits over nearly ten years, each with vital signs,
//!   and laboratory panels at every other visit (about 5,000 Observations): the chart a busy
//!   clinic's slowest page would be; and a recorded penicillin allergy, so that prescribing
//!   amoxicillin raises the alert.
//! - `pat-growth-girl` and `pat-growth-boy`: children measured at their well-child visits, for
//!   the growth charts (the boy weighs 9.6 kg at 12 months).
//! - Results of tests ordered by the demo physician and not yet acknowledged: on the demo
//!   physician's home page under "My unreviewed results".
//!
//! Deterministic like the rest of the demo (its own random stream).

use serde_json::{Value, json};

use super::AS_OF;
use super::calendar::{Day, Moment};
use super::rng::Rng;

/// The demo physician's Practitioner, found by the app through this identifier.
const PHYSICIAN: &str = "prac-demo-physician";
const USER_SYSTEM: &str = "urn:ironchart:user";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn vital_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}])
}

fn lab_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory"}]}])
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn interpretation(code: &str) -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}])
}

struct Ctx<'a> {
    patient: &'a str,
    encounter: &'a str,
    when: &'a str,
}

fn vital(id: String, c: &Ctx, code: &str, display: &str, value: f64, unit: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": vital_category(),
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/{}", c.patient)},
        "encounter": {"reference": format!("Encounter/{}", c.encounter)},
        "effectiveDateTime": c.when,
        "valueQuantity": quantity(value, unit)
    })
}

/// A laboratory analyte: code, display, unit, low, high, digits.
const PANEL: [(&str, &str, &str, f64, f64, i32); 9] = [
    (
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        70.0,
        99.0,
        0,
    ),
    (
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0.7,
        1.3,
        2,
    ),
    (
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        135.0,
        145.0,
        0,
    ),
    (
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        3.5,
        5.1,
        1,
    ),
    (
        "2075-0",
        "Chloride [Moles/volume] in Serum or Plasma",
        "mmol/L",
        98.0,
        107.0,
        0,
    ),
    (
        "2028-9",
        "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
        "mmol/L",
        22.0,
        29.0,
        0,
    ),
    (
        "3094-0",
        "Urea nitrogen [Mass/volume] in Serum or Plasma",
        "mg/dL",
        7.0,
        20.0,
        0,
    ),
    (
        "17861-6",
        "Calcium [Mass/volume] in Serum or Plasma",
        "mg/dL",
        8.6,
        10.3,
        1,
    ),
    (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "%",
        4.0,
        5.6,
        1,
    ),
];

/// One panel of results (and its report), the analytes drawn around `centre` (0 low … 1 high
/// of the range; `drift` moves glucose and HbA1c up).
#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut Vec<Value>,
    rng: &mut Rng,
    prefix: &str,
    c: &Ctx,
    drift: f64,
    order: Option<&str>,
) {
    let mut results = Vec::new();
    for (i, (code, display, unit, low, high, digits)) in PANEL.iter().enumerate() {
        let span = high - low;
        let mut v = low + span * (0.5 + 0.18 * rng.normal());
        if matches!(*code, "2345-7" | "4548-4") {
            v += span * drift;
        }
        if *code == "2823-3" && rng.chance(0.08) {
            v = high + 0.4 + rng.uniform(0.0, 0.6);
        }
        let v = round(v, *digits);
        let id = format!("{prefix}-{i}");
        let mut o = json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "category": lab_category(),
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": format!("Patient/{}", c.patient)},
            "encounter": {"reference": format!("Encounter/{}", c.encounter)},
            "effectiveDateTime": c.when,
            "valueQuantity": quantity(v, unit),
            "referenceRange": [{"low": quantity(*low, unit), "high": quantity(*high, unit)}]
        });
        if v > *high {
            o["interpretation"] = interpretation("H");
        } else if v < *low {
            o["interpretation"] = interpretation("L");
        }
        results.push(json!({"reference": format!("Observation/{id}")}));
        out.push(o);
    }
    let mut report = json!({
        "resourceType": "DiagnosticReport", "id": format!("{prefix}-r"), "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "24323-8", "display": "Comprehensive metabolic 2000 panel - Serum or Plasma"}], "text": "Metabolic panel with HbA1c"},
        "subject": {"reference": format!("Patient/{}", c.patient)},
        "encounter": {"reference": format!("Encounter/{}", c.encounter)},
        "effectiveDateTime": c.when,
        "issued": c.when,
        "result": results
    });
    if let Some(order) = order {
        report["basedOn"] = json!([{"reference": format!("ServiceRequest/{order}")}]);
    }
    out.push(report);
}

fn order(id: &str, c: &Ctx) -> Value {
    json!({
        "resourceType": "ServiceRequest", "id": id, "status": "completed", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": LOINC, "code": "24323-8", "display": "Comprehensive metabolic 2000 panel - Serum or Plasma"}], "text": "Comprehensive metabolic panel"},
        "subject": {"reference": format!("Patient/{}", c.patient)},
        "encounter": {"reference": format!("Encounter/{}", c.encounter)},
        "authoredOn": c.when,
        "requester": {"reference": format!("Practitioner/{PHYSICIAN}"), "display": "demo-physician"}
    })
}

fn encounter(id: &str, patient: &str, start: &str, end: &str, text: &str) -> Value {
    json!({
        "resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": text}],
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{PHYSICIAN}"), "display": "demo-physician"}}],
        "period": {"start": start, "end": end}
    })
}

fn patient(id: &str, family: &str, given: &str, gender: &str, born: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "MRN"},
            "system": "urn:ironchart:demo:mrn", "value": mrn}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender, "birthDate": born
    })
}

/// The showcase's resources, in an order that can be loaded as is (references point back).
pub fn resources(seed: u64) -> Vec<Value> {
    let mut rng = Rng::stream(seed, 0x5ca5e, 0);
    let mut out = vec![json!({
        "resourceType": "Practitioner", "id": PHYSICIAN, "active": true,
        "identifier": [{"system": USER_SYSTEM, "value": "demo-physician"}],
        "name": [{"text": "demo-physician"}]
    })];
    long_history(&mut out, &mut rng);
    growth(&mut out);
    out
}

fn long_history(out: &mut Vec<Value>, rng: &mut Rng) {
    let pid = "pat-long-history";
    out.push(patient(
        pid,
        "Harris",
        "Walter",
        "male",
        "1948-03-14",
        "MRN-900001",
    ));
    out.push(json!({
        "resourceType": "AllergyIntolerance", "id": "alg-long-history-1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
        "category": ["medication"], "criticality": "high",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}], "text": "Penicillin"},
        "patient": {"reference": format!("Patient/{pid}")},
        "recordedDate": "2017-01-09",
        "reaction": [{"manifestation": [{"text": "Hives"}], "severity": "moderate"}]
    }));
    for (i, (code, display)) in [
        ("E11.9", "Type 2 diabetes mellitus without complications"),
        ("I10", "Essential (primary) hypertension"),
    ]
    .iter()
    .enumerate()
    {
        out.push(json!({
            "resourceType": "Condition", "id": format!("cond-long-history-{i}"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}], "text": display},
            "subject": {"reference": format!("Patient/{pid}")},
            "onsetDateTime": "2016-11-02"
        }));
    }
    for (i, (rxcui, name, sig)) in [
        (
            "861007",
            "metformin hydrochloride 500 MG Oral Tablet",
            "500 mg by mouth twice a day",
        ),
        (
            "314076",
            "lisinopril 10 MG Oral Tablet",
            "10 mg by mouth once a day",
        ),
    ]
    .iter()
    .enumerate()
    {
        out.push(json!({
            "resourceType": "MedicationRequest", "id": format!("med-long-history-{i}"),
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui, "display": name}], "text": name},
            "subject": {"reference": format!("Patient/{pid}")},
            "authoredOn": "2017-01-09",
            "requester": {"reference": format!("Practitioner/{PHYSICIAN}"), "display": "demo-physician"},
            "dosageInstruction": [{"text": sig}]
        }));
    }
    // 500 visits, a week apart, ending on the demo's "today".
    let first = AS_OF.plus(-7 * 499);
    let mut weight: f64 = 96.0;
    for v in 0..500 {
        let day = first.plus(7 * v);
        let start = Moment::new(day, 9 * 60 + (v as u32 % 8) * 30);
        let (start_text, end_text) = (start.date_time(), start.plus_minutes(20).date_time());
        let enc = format!("enc-long-history-{v:03}");
        out.push(encounter(&enc, pid, &start_text, &end_text, "Office visit"));
        let c = Ctx {
            patient: pid,
            encounter: &enc,
            when: &start_text,
        };
        let treated = v as f64 / 500.0;
        let systolic = round(152.0 - 18.0 * treated + 7.0 * rng.normal(), 0);
        let diastolic = round(92.0 - 10.0 * treated + 5.0 * rng.normal(), 0);
        let mut bp = json!({
            "resourceType": "Observation", "id": format!("obs-long-history-{v:03}-bp"), "status": "final",
            "category": vital_category(),
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}], "text": "Blood pressure"},
            "subject": {"reference": format!("Patient/{pid}")},
            "encounter": {"reference": format!("Encounter/{enc}")},
            "effectiveDateTime": start_text,
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": quantity(systolic, "mm[Hg]")},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": quantity(diastolic, "mm[Hg]")}
            ]
        });
        if systolic > 139.0 || diastolic > 89.0 {
            bp["interpretation"] = interpretation("H");
        }
        out.push(bp);
        weight += 0.05 * rng.normal() - 0.01;
        let w = round(weight, 1);
        let id = |k: &str| format!("obs-long-history-{v:03}-{k}");
        out.push(vital(
            id("hr"),
            &c,
            "8867-4",
            "Heart rate",
            round(74.0 + 6.0 * rng.normal(), 0),
            "/min",
        ));
        out.push(vital(id("wt"), &c, "29463-7", "Body weight", w, "kg"));
        out.push(vital(
            id("bmi"),
            &c,
            "39156-5",
            "Body mass index (BMI) [Ratio]",
            round(w / (1.78 * 1.78), 1),
            "kg/m2",
        ));
        out.push(vital(
            id("temp"),
            &c,
            "8310-5",
            "Body temperature",
            round(36.8 + 0.2 * rng.normal(), 1),
            "Cel",
        ));
        out.push(vital(
            id("spo2"),
            &c,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            round(97.0 + rng.normal(), 0).min(100.0),
            "%",
        ));
        if v % 2 == 1 {
            // The last two panels are the demo physician's orders, not reviewed yet.
            let ordered = (v >= 497).then(|| format!("sr-long-history-{v:03}"));
            if let Some(sr) = &ordered {
                out.push(order(sr, &c));
            }
            panel(
                out,
                rng,
                &format!("lab-long-history-{v:03}"),
                &c,
                0.6 - 0.5 * treated,
                ordered.as_deref(),
            );
        }
    }
}

/// Well-child measurements: (months, weight kg, length or height cm, head cm).
const GIRL: [(i32, f64, f64, f64); 13] = [
    (0, 3.2, 49.2, 34.0),
    (1, 4.3, 53.8, 36.6),
    (2, 5.2, 57.2, 38.4),
    (4, 6.5, 62.2, 40.7),
    (6, 7.4, 65.9, 42.3),
    (9, 8.3, 70.3, 43.9),
    (12, 9.1, 74.2, 45.0),
    (15, 9.7, 77.6, 45.7),
    (18, 10.3, 80.8, 46.3),
    (24, 11.6, 86.2, 47.3),
    (30, 12.8, 90.9, 0.0),
    (36, 14.0, 95.2, 0.0),
    (48, 16.2, 102.8, 0.0),
];

const BOY: [(i32, f64, f64, f64); 6] = [
    (0, 3.4, 50.1, 34.6),
    (2, 5.6, 58.3, 39.0),
    (4, 7.0, 63.8, 41.5),
    (6, 7.9, 67.5, 43.2),
    (9, 8.9, 72.1, 44.8),
    (12, 9.6, 75.7, 46.0),
];

fn growth(out: &mut Vec<Value>) {
    for (pid, family, given, gender, born, mrn, visits) in [
        (
            "pat-growth-girl",
            "Nguyen",
            "Lily",
            "female",
            Day::from_ymd(2022, 4, 11),
            "MRN-900002",
            &GIRL[..],
        ),
        (
            "pat-growth-boy",
            "Osei",
            "Kofi",
            "male",
            Day::from_ymd(2025, 10, 20),
            "MRN-900003",
            &BOY[..],
        ),
    ] {
        out.push(patient(pid, family, given, gender, &born.date(), mrn));
        for (months, weight, length, head) in visits {
            let day = born
                .add_months(*months)
                .plus(if *months == 0 { 2 } else { 0 });
            if day > AS_OF {
                continue;
            }
            let start = Moment::new(day, 10 * 60).date_time();
            let end = Moment::new(day, 10 * 60 + 30).date_time();
            let enc = format!("enc-{pid}-{months:02}");
            out.push(encounter(&enc, pid, &start, &end, "Well-child visit"));
            let c = Ctx {
                patient: pid,
                encounter: &enc,
                when: &start,
            };
            let id = |k: &str| format!("obs-{pid}-{months:02}-{k}");
            out.push(vital(id("wt"), &c, "29463-7", "Body weight", *weight, "kg"));
            out.push(vital(id("ht"), &c, "8302-2", "Body height", *length, "cm"));
            if *head > 0.0 {
                out.push(vital(
                    id("head"),
                    &c,
                    "9843-4",
                    "Head Occipital-frontal circumference",
                    *head,
                    "cm",
                ));
            }
            if *months >= 24 {
                let m = length / 100.0;
                out.push(vital(
                    id("bmi"),
                    &c,
                    "39156-5",
                    "Body mass index (BMI) [Ratio]",
                    round(weight / (m * m), 1),
                    "kg/m2",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_showcase_is_valid_fhir_and_as_large_as_promised() {
        let all = resources(7);
        for v in &all {
            ironchart_fhir::validate::validate_resource(v)
                .unwrap_or_else(|e| panic!("{}: {e:?}", v["id"]));
        }
        let of = |rt: &str, prefix: &str| {
            all.iter()
                .filter(|v| v["resourceType"] == rt && v["id"].as_str().unwrap().contains(prefix))
                .count()
        };
        assert_eq!(of("Encounter", "long-history"), 500);
        assert!(
            of("Observation", "long-history") >= 5_000,
            "{}",
            of("Observation", "long-history")
        );
        assert_eq!(of("ServiceRequest", "long-history"), 2);
        assert!(of("Observation", "growth-boy") >= 12);
        let mut ids = std::collections::HashSet::new();
        for v in &all {
            assert!(
                ids.insert(format!("{}/{}", v["resourceType"], v["id"])),
                "{} twice",
                v["id"]
            );
        }
        assert_eq!(resources(7), all, "deterministic");
    }
}
