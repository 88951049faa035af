//! Search-parameter extraction: every official expression parses, extraction over the official
//! examples works, and specific resources give the index values a search needs.

use std::path::PathBuf;

use ironchart_fhir::datetime::{DateRange, parse_date_range};
use ironchart_fhir::extract::{CURRENCY_SYSTEM, IndexValue, extract, extract_values};
use ironchart_fhir::{SEARCH_PARAMS, SearchParamKind, fhirpath};
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/examples")
}

fn example(file: &str) -> Value {
    let path = examples_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// The values `extract` produced for `param`.
fn values(resource: &Value, param: &str) -> Vec<IndexValue> {
    extract(resource)
        .into_iter()
        .filter(|e| e.param == param)
        .map(|e| e.value)
        .collect()
}

fn string(s: &str) -> IndexValue {
    IndexValue::String(s.to_string())
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token {
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        text: text.map(str::to_string),
    }
}

fn reference(target_type: &str, target_id: &str, url: &str) -> IndexValue {
    IndexValue::Reference {
        target_type: Some(target_type.to_string()),
        target_id: Some(target_id.to_string()),
        url: url.to_string(),
        identifier: None,
    }
}

fn url_only(url: &str) -> IndexValue {
    IndexValue::Reference {
        target_type: None,
        target_id: None,
        url: url.to_string(),
        identifier: None,
    }
}

fn quantity(
    value: f64,
    system: Option<&str>,
    code: Option<&str>,
    unit: Option<&str>,
) -> IndexValue {
    IndexValue::Quantity {
        value,
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        unit: unit.map(str::to_string),
    }
}

fn range(text: &str) -> DateRange {
    parse_date_range(text).unwrap_or_else(|| panic!("{text} is a valid date"))
}

/// The range from the start of `low` to the end of `high`.
fn date(low: &str, high: &str) -> IndexValue {
    IndexValue::Date(DateRange {
        low: range(low).low,
        high: range(high).high,
    })
}

#[test]
fn every_official_expression_parses_and_is_typed() {
    let mut checked = 0;
    for def in SEARCH_PARAMS {
        if matches!(
            def.kind,
            SearchParamKind::Composite | SearchParamKind::Special
        ) || def.expression.is_empty()
        {
            continue;
        }
        let expr = match fhirpath::parse(def.expression) {
            Ok(e) => e,
            Err(e) => panic!("{} {}: {e}", def.resource, def.name),
        };
        // The element tables can follow every official path (common parameters on any type).
        let on = if def.resource == "Resource" {
            "Patient"
        } else {
            def.resource
        };
        let types = fhirpath::static_types(&expr, on);
        assert!(
            types.as_ref().is_some_and(|t| !t.is_empty()),
            "{} {} `{}`: types {types:?}",
            def.resource,
            def.name,
            def.expression
        );
        checked += 1;
    }
    assert!(checked > 1300, "only {checked} expressions checked");
}

#[test]
fn extraction_over_every_official_example() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("fixtures/examples is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 890, "expected the 890 official examples");
    let mut total = 0;
    for path in &paths {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let resource = example(file);
        let entries = extract(&resource);
        // Every example has at least an id, so at least `_id`.
        assert!(!entries.is_empty(), "{file}: nothing extracted");
        let rt = resource["resourceType"].as_str().unwrap_or_default();
        for entry in &entries {
            // A contained resource's values are by its own type's parameters.
            let rt = entry.contained.as_ref().map_or(rt, |c| c.resource_type);
            let def = ironchart_fhir::search_param(rt, entry.param)
                .unwrap_or_else(|| panic!("{file}: unknown parameter {}", entry.param));
            let kind_matches = matches!(
                (def.kind, &entry.value),
                (SearchParamKind::String, IndexValue::String(_))
                    | (SearchParamKind::Token, IndexValue::Token { .. })
                    | (SearchParamKind::Date, IndexValue::Date(_))
                    | (SearchParamKind::Number, IndexValue::Number(_))
                    | (SearchParamKind::Quantity, IndexValue::Quantity { .. })
                    | (SearchParamKind::Reference, IndexValue::Reference { .. })
                    | (SearchParamKind::Uri, IndexValue::Uri(_))
            );
            assert!(
                kind_matches,
                "{file}: {} got {:?}",
                entry.param, entry.value
            );
            if let IndexValue::Date(r) = &entry.value {
                assert!(r.low <= r.high, "{file}: {} empty range {r:?}", entry.param);
            }
            // No duplicates within a parameter.
            let same = entries
                .iter()
                .filter(|e| {
                    e.param == entry.param
                        && e.value == entry.value
                        && e.contained == entry.contained
                })
                .count();
            assert_eq!(same, 1, "{file}: {} repeats {:?}", entry.param, entry.value);
        }
        total += entries.len();
    }
    assert!(total > 8000, "only {total} entries from all examples");
}

#[test]
fn patient_parameters() {
    let p = example("patient-example.json");
    let cases: Vec<(&str, Vec<IndexValue>)> = vec![
        ("_id", vec![token(None, Some("example"), None)]),
        ("family", vec![string("Chalmers"), string("Windsor")]),
        (
            "given",
            vec![string("Peter"), string("James"), string("Jim")],
        ),
        ("birthdate", vec![date("1974-12-25", "1974-12-25")]),
        (
            "identifier",
            vec![token(
                Some("urn:oid:1.2.36.146.595.217.0.1"),
                Some("12345"),
                None,
            )],
        ),
        ("gender", vec![token(None, Some("male"), None)]),
        ("address-city", vec![string("PleasantVille")]),
        ("address-use", vec![token(None, Some("home"), None)]),
        ("active", vec![token(None, Some("true"), None)]),
        ("deceased", vec![token(None, Some("false"), None)]),
        (
            "organization",
            vec![reference("Organization", "1", "Organization/1")],
        ),
        (
            "phone",
            vec![
                token(Some("phone"), Some("(03) 5555 6473"), None),
                token(Some("phone"), Some("(03) 3410 5613"), None),
                token(Some("phone"), Some("(03) 5555 8834"), None),
            ],
        ),
        ("email", vec![]),
    ];
    for (param, expected) in cases {
        assert_eq!(values(&p, param), expected, "Patient {param}");
    }
    // `name` covers every part of every HumanName, `address` every part of every Address.
    let name = values(&p, "name");
    for part in ["Chalmers", "Peter", "James", "Jim", "Windsor"] {
        assert!(name.contains(&string(part)), "name lacks {part}: {name:?}");
    }
    let address = values(&p, "address");
    for part in ["534 Erewhon St", "PleasantVille", "Rainbow", "Vic", "3999"] {
        assert!(address.contains(&string(part)), "address lacks {part}");
    }
}

#[test]
fn observation_parameters() {
    let bp = example("observation-example-bloodpressure.json");
    assert_eq!(
        values(&bp, "code"),
        vec![
            token(
                Some("http://loinc.org"),
                Some("85354-9"),
                Some("Blood pressure panel with all children optional")
            ),
            token(None, None, Some("Blood pressure systolic & diastolic")),
        ]
    );
    assert_eq!(
        values(&bp, "subject"),
        vec![reference("Patient", "example", "Patient/example")]
    );
    assert_eq!(
        values(&bp, "patient"),
        vec![reference("Patient", "example", "Patient/example")]
    );
    // effectiveDateTime
    assert_eq!(values(&bp, "date"), vec![date("2012-09-17", "2012-09-17")]);
    assert_eq!(
        values(&bp, "component-value-quantity"),
        vec![
            quantity(
                107.0,
                Some("http://unitsofmeasure.org"),
                Some("mm[Hg]"),
                Some("mmHg")
            ),
            quantity(
                60.0,
                Some("http://unitsofmeasure.org"),
                Some("mm[Hg]"),
                Some("mmHg")
            ),
        ]
    );
    // A canonical in `meta.profile` is a uri.
    assert_eq!(
        values(&bp, "_profile"),
        vec![IndexValue::Uri(
            "http://hl7.org/fhir/StructureDefinition/vitalsigns".to_string()
        )]
    );
    // Identifier-only reference.
    assert_eq!(
        values(&bp, "based-on"),
        vec![IndexValue::Reference {
            target_type: None,
            target_id: None,
            url: String::new(),
            identifier: Some((
                Some("https://acme.org/identifiers".to_string()),
                Some("1234".to_string())
            )),
        }]
    );

    // effectivePeriod and valueQuantity
    let excess = example("observation-example-f002-excess.json");
    assert_eq!(
        values(&excess, "date"),
        vec![date(
            "2013-04-02T10:30:10+01:00",
            "2013-04-05T10:30:10+01:00"
        )]
    );
    assert_eq!(
        values(&excess, "value-quantity"),
        vec![quantity(
            12.6,
            Some("http://unitsofmeasure.org"),
            Some("mmol/L"),
            Some("mmol/l")
        )]
    );
    // A period without an end is open-ended.
    let glucose = example("observation-example-f001-glucose.json");
    assert_eq!(
        values(&glucose, "date"),
        vec![IndexValue::Date(DateRange {
            low: range("2013-04-02T09:30:10+01:00").low,
            high: i64::MAX,
        })]
    );
}

#[test]
fn condition_parameters() {
    let c = example("condition-example-f201-fever.json");
    assert_eq!(
        values(&c, "code"),
        vec![token(
            Some("http://snomed.info/sct"),
            Some("386661006"),
            Some("Fever")
        )]
    );
    assert_eq!(
        values(&c, "subject"),
        vec![reference("Patient", "f201", "Patient/f201")]
    );
    assert_eq!(
        values(&c, "patient"),
        vec![reference("Patient", "f201", "Patient/f201")]
    );
    assert_eq!(
        values(&c, "onset-date"),
        vec![date("2013-04-02", "2013-04-02")]
    );
}

#[test]
fn medication_request_medication_as_concept_and_as_reference() {
    let as_concept = example("medicationrequest0308.json");
    assert_eq!(
        values(&as_concept, "code"),
        vec![token(
            Some("http://www.nlm.nih.gov/research/umls/rxnorm"),
            Some("856907"),
            Some("Vicodin 5/500 Oral Tablet")
        )]
    );
    assert_eq!(values(&as_concept, "medication"), vec![]);

    let as_reference = example("medicationrequestexample2.json");
    assert_eq!(
        values(&as_reference, "medication"),
        vec![reference("Medication", "med0316", "Medication/med0316")]
    );
    assert_eq!(values(&as_reference, "code"), vec![]);

    // A reference to a contained resource has a value (for `:missing`), and names nothing
    // outside the resource.
    let contained = example("medicationrequest0301.json");
    assert_eq!(
        values(&contained, "medication"),
        vec![IndexValue::Reference {
            target_type: Some("Medication".to_string()),
            target_id: None,
            url: "#med0310".to_string(),
            identifier: None,
        }]
    );
}

#[test]
fn encounter_period_immunization_invoice() {
    let enc = example("encounter-example-home.json");
    assert_eq!(
        values(&enc, "date"),
        vec![date(
            "2015-01-17T16:00:00+10:00",
            "2015-01-17T16:30:00+10:00"
        )]
    );
    let imm = example("immunization-example.json");
    assert_eq!(
        values(&imm, "vaccine-code"),
        vec![
            token(Some("urn:oid:1.2.36.1.2001.1005.17"), Some("FLUVAX"), None),
            token(None, None, Some("Fluvax (Influenza)")),
        ]
    );
    // Money: the currency is the code, in the ISO 4217 system.
    let invoice = example("invoice-example.json");
    assert_eq!(
        values(&invoice, "totalgross"),
        vec![quantity(48.0, Some(CURRENCY_SYSTEM), Some("EUR"), None)]
    );
}

#[test]
fn canonical_references() {
    let plan = example("plandefinition-example.json");
    assert_eq!(
        values(&plan, "depends-on"),
        vec![url_only("Library/suiciderisk-orderset-logic")]
    );
    assert!(
        values(&plan, "composed-of")
            .contains(&url_only("ActivityDefinition/citalopramPrescription"))
    );
}

#[test]
fn bundle_composition_is_the_first_entry() {
    let doc = example("document-example-dischargesummary.json");
    let composition = values(&doc, "composition");
    assert_eq!(composition.len(), 1, "{composition:?}");
    assert!(matches!(
        &composition[0],
        IndexValue::Reference { target_type: Some(t), .. } if t == "Composition"
    ));
    // The first entry is not a MessageHeader.
    assert_eq!(values(&doc, "message"), vec![]);
}

#[test]
fn references_of_every_form() {
    let obs = json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "http://example.org/fhir/Patient/p9/_history/3"},
        "performer": [
            {"reference": "Practitioner/pr1/_history/2"},
            {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "type": "Organization"},
            {"reference": "#contained"},
            {"display": "display only"},
            {"identifier": {"system": "http://npi", "value": "123"}, "type": "Practitioner"}
        ]
    });
    assert_eq!(
        values(&obs, "subject"),
        vec![reference(
            "Patient",
            "p9",
            "http://example.org/fhir/Patient/p9"
        )]
    );
    assert_eq!(
        values(&obs, "patient"),
        vec![reference(
            "Patient",
            "p9",
            "http://example.org/fhir/Patient/p9"
        )]
    );
    assert_eq!(
        values(&obs, "performer"),
        vec![
            reference("Practitioner", "pr1", "Practitioner/pr1"),
            IndexValue::Reference {
                target_type: Some("Organization".to_string()),
                target_id: None,
                url: "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a".to_string(),
                identifier: None,
            },
            IndexValue::Reference {
                target_type: None,
                target_id: None,
                url: "#contained".to_string(),
                identifier: None,
            },
            IndexValue::Reference {
                target_type: Some("Practitioner".to_string()),
                target_id: None,
                url: String::new(),
                identifier: Some((Some("http://npi".to_string()), Some("123".to_string()))),
            },
        ]
    );
    // A subject that is not a Patient is not `patient`.
    let group = json!({"resourceType": "Observation", "subject": {"reference": "Group/g1"}});
    assert_eq!(values(&group, "patient"), vec![]);
    assert_eq!(
        values(&group, "subject"),
        vec![reference("Group", "g1", "Group/g1")]
    );
}

#[test]
fn dates_of_every_form() {
    let sr = json!({
        "resourceType": "ServiceRequest",
        "occurrenceTiming": {
            "event": ["2020-01-01", "2020-01-02T10:00:00Z", "not a date"],
            "repeat": {"boundsPeriod": {"start": "2020-01-01", "end": "2020-02"}}
        },
        "authoredOn": "2019-12-31T23:59:59.5-01:00"
    });
    assert_eq!(
        values(&sr, "occurrence"),
        vec![
            date("2020-01-01", "2020-01-01"),
            date("2020-01-02T10:00:00Z", "2020-01-02T10:00:00Z"),
            date("2020-01-01", "2020-02"),
        ]
    );
    assert_eq!(
        values(&sr, "authored"),
        vec![date("2020-01-01T00:59:59.5Z", "2020-01-01T00:59:59.5Z")]
    );
    // An invalid date is skipped, not indexed.
    let bad = json!({"resourceType": "Patient", "birthDate": "2015-02-30"});
    assert_eq!(values(&bad, "birthdate"), vec![]);
    // A deceased date makes the patient deceased.
    let dead = json!({"resourceType": "Patient", "deceasedDateTime": "2015-02-14T13:42:00+10:00"});
    assert_eq!(
        values(&dead, "deceased"),
        vec![token(None, Some("true"), None)]
    );
}

#[test]
fn quantities_numbers_and_ranges() {
    let cond = json!({
        "resourceType": "Condition",
        "onsetAge": {"value": 52, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementRange": {"low": {"value": 60, "code": "a"}, "high": {"value": 65.5, "code": "a"}}
    });
    assert_eq!(
        values(&cond, "onset-age"),
        vec![quantity(
            52.0,
            Some("http://unitsofmeasure.org"),
            Some("a"),
            Some("yr")
        )]
    );
    assert_eq!(
        values(&cond, "abatement-age"),
        vec![
            quantity(60.0, None, Some("a"), None),
            quantity(65.5, None, Some("a"), None)
        ]
    );
    let risk = json!({
        "resourceType": "RiskAssessment",
        "prediction": [{"probabilityDecimal": 0.02}, {"probabilityDecimal": 1e2}]
    });
    assert_eq!(
        values(&risk, "probability"),
        vec![IndexValue::Number(0.02), IndexValue::Number(100.0)]
    );
}

#[test]
fn strings_tokens_and_uris() {
    let org = json!({
        "resourceType": "Organization",
        "name": "Société Générale",
        "alias": ["SG"],
        "address": [{"line": ["1 Rue"], "city": "Paris", "country": "FR", "text": "1 Rue, Paris"}],
        "identifier": [{"type": {"text": "tax id"}, "system": "urn:tax", "value": "99"}],
        "type": [{"coding": [{"system": "http://s", "code": "prov", "display": "Provider"}], "text": "Healthcare provider"}],
        "active": false,
        "endpoint": [{"reference": "Endpoint/e1"}]
    });
    assert_eq!(
        values(&org, "name"),
        vec![string("Société Générale"), string("SG")]
    );
    assert_eq!(
        values(&org, "address"),
        vec![
            string("1 Rue"),
            string("Paris"),
            string("FR"),
            string("1 Rue, Paris")
        ]
    );
    assert_eq!(
        values(&org, "identifier"),
        vec![token(Some("urn:tax"), Some("99"), Some("tax id"))]
    );
    assert_eq!(
        values(&org, "type"),
        vec![
            token(Some("http://s"), Some("prov"), Some("Provider")),
            token(None, None, Some("Healthcare provider")),
        ]
    );
    assert_eq!(
        values(&org, "active"),
        vec![token(None, Some("false"), None)]
    );
    let vs = json!({
        "resourceType": "ValueSet",
        "url": "http://example.org/vs",
        "compose": {"include": [{"system": "http://loinc.org"}, {"system": "http://loinc.org"}]}
    });
    assert_eq!(
        values(&vs, "url"),
        vec![IndexValue::Uri("http://example.org/vs".to_string())]
    );
    // Repeated values are indexed once.
    assert_eq!(
        values(&vs, "reference"),
        vec![IndexValue::Uri("http://loinc.org".to_string())]
    );
}

#[test]
fn extract_values_matches_extract() {
    let p = example("patient-example.json");
    for param in [
        "family",
        "birthdate",
        "identifier",
        "organization",
        "_id",
        "nope",
    ] {
        assert_eq!(extract_values(&p, param), values(&p, param), "{param}");
    }
}

#[test]
fn unknown_or_missing_resource_type_yields_nothing() {
    assert!(extract(&json!({"resourceType": "NotAType", "id": "x"})).is_empty());
    assert!(extract(&json!({"id": "x"})).is_empty());
    assert!(extract(&json!([1, 2])).is_empty());
    assert!(extract(&json!("Patient")).is_empty());
}

#[test]
fn contained_resources_are_extracted_under_their_own_type() {
    let mr = json!({
        "resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "contained": [
            {"resourceType": "Medication", "id": "m1",
             "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}},
            // No id, or no known type: nothing can refer to it.
            {"resourceType": "Medication",
             "code": {"coding": [{"code": "1"}]}},
            {"resourceType": "NotAType", "id": "x", "code": {"coding": [{"code": "2"}]}}
        ],
        "medicationReference": {"reference": "#m1"}
    });
    let entries = extract(&mr);
    let contained: Vec<_> = entries.iter().filter(|e| e.contained.is_some()).collect();
    assert!(contained.iter().all(|e| {
        e.contained
            .as_ref()
            .is_some_and(|c| c.id == "m1" && c.resource_type == "Medication")
    }));
    assert!(contained.iter().any(|e| e.param == "code"
        && matches!(&e.value, IndexValue::Token { code: Some(c), .. } if c == "860975")));
    // The container's own values are unmarked, and none of them is the contained code.
    assert!(
        entries
            .iter()
            .any(|e| e.contained.is_none() && e.param == "subject")
    );
    assert!(!entries.iter().any(|e| e.contained.is_none()
        && matches!(&e.value, IndexValue::Token { code: Some(c), .. } if c == "860975")));
}
