//! Synthetic patients for `ironchart demo`: a clinic and its patients with years of plausible,
//! clinically coherent records, as FHIR R4 resources.
//!
//! Everything is deterministic: the same `(patients, seed)` gives the same resources, byte for
//! byte (a SplitMix64 generator whose draws are integer arithmetic; no clock, no hash-map
//! iteration). Each patient is generated from its own random stream, so patient `i` is the
//! same however many patients are generated, and callers can stream patient by patient.
//!
//! Each patient gets demographics (name, birth date, MRN, contact details, address, language),
//! then, visit by visit over 1–8 years: an Encounter, problem-list and encounter-diagnosis
//! Conditions, AllergyIntolerances (first visit), vital signs, tobacco and mood screening
//! Observations, laboratory Observations grouped by DiagnosticReports, MedicationRequests
//! (started, renewed, completed), Immunizations (childhood schedule, influenza, adult vaccines,
//! COVID-19 history) and a plain-text progress note (DocumentReference). Measurements follow a
//! planned course: children grow, adults' weight drifts, untreated hypertension, diabetes,
//! hyperlipidaemia, hypothyroidism and anaemia show in blood pressure and laboratory values and
//! improve with treatment, and laboratory flags are computed from the reference ranges.
//!
//! The data are fictional: names from common-name lists, phone numbers in the reserved
//! 555-0100–0199 range, e-mail under `example.com`, and a fictional clinic in Portland, Oregon.
//! Codes are real (ICD-10-CM, SNOMED CT, RxNorm, CVX, LOINC, UCUM). Every resource has a client
//! id such as `pat-000123` or `obs-000123-0042`, and every reference is a literal `Type/id` to a
//! resource that comes earlier in the output, so the output can be loaded in order.
//! Clinical dates fall on or before [`AS_OF`] (vaccine lot expiry dates and prescription
//! validity periods reach past it, as they would).

mod calendar;
mod chart;
mod clinic;
mod datatypes;
mod names;
mod patient;
mod rng;
pub mod showcase;
mod terminology;
pub mod users;

use serde_json::Value;

use calendar::Day;
pub use clinic::Clinic;

/// The "today" of the demo data: the last day a visit can fall on.
pub const AS_OF: Day = Day::from_ymd(2026, 10, 30);

/// Generates the demo data set: the clinic (Organization, Locations, Practitioners,
/// PractitionerRoles) and `patients` patients with their records.
/// Deterministic: the same (patients, seed) gives the same resources, byte for byte.
/// (The command line streams with [`Clinic::resources`] and [`generate_patient`] instead.)
#[allow(
    dead_code,
    reason = "the whole-set entry point for tests and small tools"
)]
pub fn generate(patients: usize, seed: u64) -> Vec<Value> {
    let clinic = Clinic::new(seed);
    let mut out = clinic.resources();
    out.reserve(patients.saturating_mul(200));
    for index in 0..patients {
        out.extend(generate_patient(index, seed, &clinic));
    }
    out
}

/// The resources of patient `index` (0-based): the Patient first, then the record visit by
/// visit. Independent of the other patients, so a caller can stream patients one at a time
/// (or in parallel) after writing `clinic.resources()`.
pub fn generate_patient(index: usize, seed: u64, clinic: &Clinic) -> Vec<Value> {
    let person = patient::Person::plan(index, seed, clinic);
    chart::write(&person, clinic, seed, index)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use serde_json::Value;

    use super::*;

    fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
        v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
    }

    fn num_at(v: &Value, pointer: &str) -> Option<f64> {
        v.pointer(pointer).and_then(Value::as_f64)
    }

    fn key(v: &Value) -> String {
        format!("{}/{}", str_at(v, "/resourceType"), str_at(v, "/id"))
    }

    /// Every `reference` string anywhere in a value.
    fn references(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "reference" {
                        if let Some(s) = child.as_str() {
                            out.push(s.to_string());
                        }
                    } else {
                        references(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| references(i, out)),
            _ => {}
        }
    }

    fn has_code(v: &Value, code: &str) -> bool {
        v.pointer("/code/coding")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["code"] == code))
    }

    #[test]
    fn same_seed_same_bytes_and_other_seed_differs() {
        let a = serde_json::to_string(&generate(15, 7)).unwrap();
        let b = serde_json::to_string(&generate(15, 7)).unwrap();
        let c = serde_json::to_string(&generate(15, 8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn patients_do_not_depend_on_each_other() {
        let clinic = Clinic::new(3);
        let alone = generate_patient(12, 3, &clinic);
        let all = generate(13, 3);
        let start = all
            .iter()
            .position(|r| r["resourceType"] == "Patient" && r["id"] == "pat-000012")
            .unwrap();
        assert_eq!(&all[start..start + alone.len()], &alone[..]);
    }

    #[test]
    fn every_resource_is_valid_fhir() {
        let resources = generate(40, 2026);
        let mut failures = Vec::new();
        for r in &resources {
            if let Err(issues) = ironchart_fhir::validate::validate_resource(r) {
                failures.push(format!(
                    "{}: {}",
                    key(r),
                    issues
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} invalid resources, e.g.:\n{}",
            failures.len(),
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn ids_are_unique_valid_and_references_point_backwards() {
        let resources = generate(60, 11);
        let mut seen = HashSet::new();
        for r in &resources {
            let id = str_at(r, "/id");
            assert!(ironchart_fhir::is_valid_id(id), "bad id {id}");
            let mut refs = Vec::new();
            references(r, &mut refs);
            for target in refs {
                assert!(
                    seen.contains(&target),
                    "{} refers to {target}, not written before it",
                    key(r)
                );
            }
            assert!(seen.insert(key(r)), "duplicate {}", key(r));
        }
    }

    /// Prescriptions name their drug both ways US Core allows: long-term drugs by the clinic's
    /// Medication (so `_include=MedicationRequest:medication` has something to include), short
    /// courses by code; a reference's display is its Medication's name.
    #[test]
    fn prescriptions_name_their_drug_by_medication_or_by_code() {
        let resources = generate(60, 3);
        let medications: HashMap<String, &Value> = resources
            .iter()
            .filter(|r| r["resourceType"] == "Medication")
            .map(|r| (format!("Medication/{}", str_at(r, "/id")), r))
            .collect();
        assert_eq!(medications.len(), terminology::FORMULARY.len());
        let (mut by_reference, mut by_code) = (0, 0);
        for r in resources
            .iter()
            .filter(|r| r["resourceType"] == "MedicationRequest")
        {
            let reference = str_at(r, "/medicationReference/reference");
            let concept = r.get("medicationCodeableConcept");
            assert!(
                reference.is_empty() != concept.is_none(),
                "{} names its drug once: {r}",
                key(r)
            );
            if let Some(concept) = concept {
                by_code += 1;
                assert_eq!(
                    concept.pointer("/coding/0/system").and_then(Value::as_str),
                    Some(terminology::RXNORM)
                );
                continue;
            }
            by_reference += 1;
            let medication = medications
                .get(reference)
                .unwrap_or_else(|| panic!("{reference} is a Medication of the clinic"));
            assert_eq!(
                str_at(r, "/medicationReference/display"),
                str_at(medication, "/code/text")
            );
        }
        assert!(
            by_reference > 100 && by_code > 20,
            "{by_reference} by reference, {by_code} by code"
        );
    }

    #[test]
    fn size_and_mix_of_resources() {
        let patients = 200;
        let resources = generate(patients, 5);
        let per_patient = resources.len() as f64 / patients as f64;
        assert!(
            (120.0..=320.0).contains(&per_patient),
            "{per_patient} resources per patient"
        );
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        for r in &resources {
            *kinds.entry(str_at(r, "/resourceType")).or_default() += 1;
        }
        for kind in [
            "Organization",
            "Location",
            "Practitioner",
            "PractitionerRole",
            "Patient",
            "Encounter",
            "Observation",
            "Condition",
            "MedicationRequest",
            "Medication",
            "AllergyIntolerance",
            "Immunization",
            "DiagnosticReport",
            "DocumentReference",
            "ServiceRequest",
            "Procedure",
            "Coverage",
            "CareTeam",
            "Goal",
            "CarePlan",
            "Device",
        ] {
            assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind}");
        }
        assert_eq!(kinds["Patient"], patients);
        // Visits per patient stay in a sensible range.
        let mut visits: HashMap<String, usize> = HashMap::new();
        for r in resources
            .iter()
            .filter(|r| r["resourceType"] == "Encounter")
        {
            *visits
                .entry(str_at(r, "/subject/reference").to_string())
                .or_default() += 1;
        }
        assert!(
            visits.values().all(|&n| (1..=18).contains(&n)),
            "{visits:?}"
        );
        // Every clinical date is before 2026-11-01 (vaccine expiry dates and prescription
        // validity periods look ahead, as they should).
        for r in &resources {
            for pointer in [
                "/period/end",
                "/effectiveDateTime",
                "/issued",
                "/authoredOn",
                "/birthDate",
                "/onsetDateTime",
                "/abatementDateTime",
                "/recordedDate",
                "/occurrenceDateTime",
                "/date",
            ] {
                let date = str_at(r, pointer);
                assert!(
                    date.is_empty() || date < "2026-11-01",
                    "{} {pointer} {date}",
                    key(r)
                );
            }
        }
    }

    #[test]
    fn adult_weight_changes_gradually_and_children_grow() {
        let resources = generate(150, 9);
        let mut weights: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        let mut heights: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        for r in &resources {
            let subject = str_at(r, "/subject/reference").to_string();
            let when = str_at(r, "/effectiveDateTime").to_string();
            if let Some(v) = num_at(r, "/valueQuantity/value") {
                if has_code(r, "29463-7") {
                    weights.entry(subject).or_default().push((when, v));
                } else if has_code(r, "8302-2") {
                    heights.entry(subject).or_default().push((when, v));
                }
            }
        }
        let birth: HashMap<String, String> = resources
            .iter()
            .filter(|r| r["resourceType"] == "Patient")
            .map(|r| (key(r), str_at(r, "/birthDate").to_string()))
            .collect();
        let adult_on = |subject: &str, when: &str| {
            let born = &birth[subject];
            let (by, wy): (i32, i32) = (born[..4].parse().unwrap(), when[..4].parse().unwrap());
            wy - by > 21
        };
        let mut checked = 0;
        for (subject, series) in &weights {
            for pair in series.windows(2) {
                let (w0, w1) = (pair[0].1, pair[1].1);
                if adult_on(subject, &pair[0].0) {
                    checked += 1;
                    assert!(
                        (w1 - w0).abs() / w0 < 0.1,
                        "{subject}: weight {w0} -> {w1} between visits"
                    );
                }
            }
        }
        assert!(checked > 100, "only {checked} adult weight steps");
        // Children: height never falls by more than measurement error, and grows over years.
        let mut grew = 0;
        for series in heights.values() {
            if series.first().is_some_and(|h| h.1 < 140.0) && series.len() >= 3 {
                for pair in series.windows(2) {
                    assert!(pair[1].1 >= pair[0].1 - 1.5, "height fell: {series:?}");
                }
                if series.last().unwrap().1 > series[0].1 + 5.0 {
                    grew += 1;
                }
            }
        }
        assert!(grew > 5, "only {grew} children grew");
    }

    #[test]
    fn lab_flags_match_reference_ranges() {
        let resources = generate(120, 4);
        let mut flagged = 0;
        let mut checked = 0;
        for r in resources
            .iter()
            .filter(|r| str_at(r, "/category/0/coding/0/code") == "laboratory")
        {
            let value = num_at(r, "/valueQuantity/value").unwrap();
            let low = num_at(r, "/referenceRange/0/low/value");
            let high = num_at(r, "/referenceRange/0/high/value");
            assert!(low.is_some() || high.is_some(), "{} has no range", key(r));
            let expected = if low.is_some_and(|l| value < l) {
                "L"
            } else if high.is_some_and(|h| value > h) {
                "H"
            } else {
                "N"
            };
            assert_eq!(
                str_at(r, "/interpretation/0/coding/0/code"),
                expected,
                "{}",
                key(r)
            );
            assert_eq!(
                str_at(r, "/valueQuantity/code"),
                str_at(r, "/referenceRange/0/low/code")
                    .max(str_at(r, "/referenceRange/0/high/code"))
            );
            checked += 1;
            if expected != "N" {
                flagged += 1;
            }
        }
        assert!(
            checked > 500 && flagged > 20 && flagged < checked / 3,
            "{flagged} of {checked} flagged"
        );
    }

    #[test]
    fn diagnoses_are_supported_by_measurements() {
        let resources = generate(300, 21);
        // Patients with diabetes on their problem list have a raised HbA1c at diagnosis or are
        // treated; their mean HbA1c is above that of everyone else.
        let diabetic: HashSet<&str> = resources
            .iter()
            .filter(|r| r["resourceType"] == "Condition" && has_code(r, "E11.9"))
            .map(|r| str_at(r, "/subject/reference"))
            .collect();
        let (mut dm, mut other) = (Vec::new(), Vec::new());
        for r in resources
            .iter()
            .filter(|r| has_code(r, "4548-4") && r["resourceType"] == "Observation")
        {
            let v = num_at(r, "/valueQuantity/value").unwrap();
            if diabetic.contains(str_at(r, "/subject/reference")) {
                dm.push(v)
            } else {
                other.push(v)
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        assert!(!dm.is_empty() && !other.is_empty());
        assert!(
            mean(&dm) > 6.5 && mean(&other) < 5.8,
            "{} vs {}",
            mean(&dm),
            mean(&other)
        );
        // Hypertensive patients have higher systolic pressure than adults without hypertension.
        let hypertensive: HashSet<&str> = resources
            .iter()
            .filter(|r| r["resourceType"] == "Condition" && has_code(r, "I10"))
            .map(|r| str_at(r, "/subject/reference"))
            .collect();
        let (mut htn, mut normal) = (Vec::new(), Vec::new());
        for r in resources.iter().filter(|r| has_code(r, "85354-9")) {
            let v = num_at(r, "/component/0/valueQuantity/value").unwrap();
            if hypertensive.contains(str_at(r, "/subject/reference")) {
                htn.push(v)
            } else {
                normal.push(v)
            }
        }
        assert!(
            mean(&htn) > mean(&normal) + 10.0,
            "{} vs {}",
            mean(&htn),
            mean(&normal)
        );
        // Prescriptions give a reason that is on the record.
        for r in resources
            .iter()
            .filter(|r| r["resourceType"] == "MedicationRequest")
        {
            assert!(
                r.get("reasonReference").is_some() || r.get("reasonCode").is_some(),
                "{}",
                key(r)
            );
        }
    }

    #[test]
    fn progress_notes_describe_their_visit() {
        let resources = generate(30, 13);
        let mut notes = 0;
        for r in resources
            .iter()
            .filter(|r| r["resourceType"] == "DocumentReference")
        {
            let data = str_at(r, "/content/0/attachment/data");
            let text = String::from_utf8(decode_base64(data)).unwrap();
            let date = &str_at(r, "/context/period/start")[..10];
            assert!(
                text.contains(date) && text.contains("Assessment:") && text.contains("Plan:"),
                "{text}"
            );
            notes += 1;
        }
        let encounters = resources
            .iter()
            .filter(|r| r["resourceType"] == "Encounter")
            .count();
        assert_eq!(notes, encounters);
    }

    fn decode_base64(data: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let mut out = Vec::new();
        for chunk in data.as_bytes().chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| {
                n | u32::from(if c == b'=' { 0 } else { value(c) }) << (18 - 6 * i)
            });
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let pad = chunk.iter().filter(|&&c| c == b'=').count();
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        out
    }

    #[test]
    fn npi_check_digit() {
        // The CMS example NPI.
        assert_eq!(clinic::npi(123_456_789), "1234567893");
    }

    #[test]
    fn calendar_round_trips() {
        for day in (-30_000..30_000).step_by(37) {
            let d = Day(day);
            let (y, m, dd) = d.ymd();
            assert_eq!(Day::from_ymd(y, m, dd), d);
        }
        assert_eq!(AS_OF.date(), "2026-10-30");
        assert_eq!(AS_OF.weekday(), 4); // Friday
        assert_eq!(Day::from_ymd(2026, 7, 1).pacific_offset(), "-07:00");
        assert_eq!(Day::from_ymd(2026, 1, 15).pacific_offset(), "-08:00");
        assert_eq!(Day::from_ymd(2026, 3, 8).pacific_offset(), "-07:00");
        assert_eq!(Day::from_ymd(2026, 3, 7).pacific_offset(), "-08:00");
        assert_eq!(
            Day::from_ymd(2024, 1, 31).add_months(1).date(),
            "2024-02-29"
        );
    }

    #[test]
    fn egfr_inverse_is_consistent() {
        for (egfr, age, female) in [(45.0, 72.0, true), (95.0, 30.0, false), (58.0, 66.0, false)] {
            let scr = patient::creatinine_for(egfr, age, female);
            let back = patient::ckd_epi_2021(scr, age, female);
            assert!((back - egfr).abs() < 0.01, "{egfr} -> {scr} -> {back}");
        }
    }
}
