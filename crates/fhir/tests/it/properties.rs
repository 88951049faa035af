//! Property tests: the parsers of untrusted input never panic, whatever they are given, and what
//! they accept is consistent.

use ironchart_fhir::datetime::{format_instant, parse_date_range};
use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::validate::validate_resource;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Arbitrary JSON, a few levels deep, with FHIR-ish keys mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("name".to_string()),
        Just("_birthDate".to_string()),
        Just("birthDate".to_string()),
        Just("valueQuantity".to_string()),
        Just("extension".to_string()),
        Just("contained".to_string()),
        Just("resourceType".to_string()),
        "[a-zA-Z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String("Patient".into())),
        Just(Value::String("2020-02-30".into())),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn date_parsing_never_panics_and_ranges_are_ordered(s in "\\PC{0,40}") {
        if let Some(r) = parse_date_range(&s) {
            prop_assert!(r.low <= r.high);
        }
    }

    #[test]
    fn formatted_instants_parse_back(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
        let text = format_instant(ms);
        let r = parse_date_range(&text).expect("a formatted instant parses");
        prop_assert_eq!(r.low, ms);
    }

    #[test]
    fn search_parsing_never_panics(
        pairs in prop::collection::vec(("\\PC{0,24}", "\\PC{0,40}"), 0..6),
        typed in prop::collection::vec(
            (prop::sample::select(vec![
                "family", "birthdate", "identifier", "_id", "_sort", "_count", "general-practitioner",
                "name:contains", "family:exact", "gender:not", "_include", "_revinclude", "link:Patient.name",
                "organization.name", "_lastUpdated", "address-postalcode:missing", "_total", "_summary",
            ]), "[-a-z0-9|:.,\\\\$%_ ]{0,30}"),
            0..6,
        ),
    ) {
        let mut all: Vec<(String, String)> = pairs;
        all.extend(typed.into_iter().map(|(k, v)| (k.to_string(), v)));
        let _ = SearchQuery::parse("Patient", &all);
        let _ = SearchQuery::parse("Observation", &all);
    }

    #[test]
    fn validation_never_panics(v in json_value()) {
        let _ = validate_resource(&v);
        let mut as_patient = v.clone();
        if let Some(o) = as_patient.as_object_mut() {
            o.insert("resourceType".into(), Value::String("Patient".into()));
        }
        let _ = validate_resource(&as_patient);
    }

    #[test]
    fn fhirpath_parsing_never_panics(s in "\\PC{0,60}") {
        let _ = ironchart_fhir::fhirpath::parse(&s);
    }

    #[test]
    fn extraction_never_panics(v in json_value()) {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.insert("resourceType".into(), Value::String("Observation".into()));
        }
        let _ = ironchart_fhir::extract::extract(&v);
    }
}
