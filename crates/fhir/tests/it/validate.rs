//! Validation of hand-made resources: each invalid one must be reported with the exact location
//! and issue code, and nothing else.

use ironchart_fhir::validate::{
    Issue, IssueCode, MAX_DEPTH, MAX_ISSUES, Severity, resource_issues, validate_resource,
};
use serde_json::{Value, json};

use IssueCode::{
    CodeInvalid, Invariant, NotSupported, Required, Structure, TooCostly, TooLong, Value as Val,
};

/// An Observation that is valid, to be spoiled by the cases.
fn observation(extra: Value) -> Value {
    let mut base = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"}
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// Items of a Questionnaire nested `levels` deep.
fn nested_items(levels: usize) -> Value {
    let mut item = json!({"linkId": "leaf", "type": "string"});
    for _ in 0..levels {
        item = json!({"linkId": "group", "type": "group", "item": [item]});
    }
    json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]})
}

fn path(base: &str, segment: &str, times: usize) -> String {
    let mut path = base.to_owned();
    for _ in 0..times {
        path.push_str(segment);
    }
    path
}

/// A case: its name, the resource, and the (expression, code) of every issue expected.
type Case = (&'static str, Value, Vec<(String, IssueCode)>);

fn cases() -> Vec<Case> {
    let e = |expression: &str, code: IssueCode| (expression.to_owned(), code);
    vec![
        // The resource itself.
        ("not an object", json!(["Patient"]), vec![e("", Structure)]),
        (
            "missing resourceType",
            json!({"id": "a"}),
            vec![e("resourceType", Required)],
        ),
        (
            "resourceType not a string",
            json!({"resourceType": 1}),
            vec![e("resourceType", Structure)],
        ),
        (
            "unknown resourceType",
            json!({"resourceType": "Patientx"}),
            vec![e("resourceType", NotSupported)],
        ),
        (
            "abstract resourceType",
            json!({"resourceType": "DomainResource"}),
            vec![e("resourceType", NotSupported)],
        ),
        (
            "datatype as resourceType",
            json!({"resourceType": "HumanName"}),
            vec![e("resourceType", NotSupported)],
        ),
        (
            "bad id",
            json!({"resourceType": "Patient", "id": "a_b"}),
            vec![e("Patient.id", Val)],
        ),
        (
            "id too long",
            json!({"resourceType": "Patient", "id": "a".repeat(65)}),
            vec![e("Patient.id", Val)],
        ),
        // Unknown elements.
        (
            "unknown element",
            json!({"resourceType": "Patient", "foo": 1}),
            vec![e("Patient.foo", Structure)],
        ),
        (
            "unknown element in a datatype",
            json!({"resourceType": "Patient", "name": [{"family": "Doe"}, {"family": "Roe", "nick": "R"}]}),
            vec![e("Patient.name[1].nick", Structure)],
        ),
        (
            "unknown element in a backbone element",
            json!({"resourceType": "Patient", "contact": [{"gender": "female", "age": 40}]}),
            vec![e("Patient.contact[0].age", Structure)],
        ),
        (
            "companion of a complex element",
            json!({"resourceType": "Patient", "_maritalStatus": {"id": "x"}}),
            vec![e("Patient._maritalStatus", Structure)],
        ),
        // Primitive formats.
        (
            "bad date",
            json!({"resourceType": "Patient", "birthDate": "1970-02-30"}),
            vec![e("Patient.birthDate", Val)],
        ),
        (
            "date with time",
            json!({"resourceType": "Patient", "birthDate": "1970-01-01T00:00:00Z"}),
            vec![e("Patient.birthDate", Val)],
        ),
        (
            "dateTime without time zone",
            observation(json!({"effectiveDateTime": "2020-01-01T10:00:00"})),
            vec![e("Observation.effectiveDateTime", Val)],
        ),
        (
            "instant without time",
            json!({"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01"}}),
            vec![e("Patient.meta.lastUpdated", Val)],
        ),
        (
            "bad time",
            observation(json!({"valueTime": "25:00:00"})),
            vec![e("Observation.valueTime", Val)],
        ),
        (
            "decimal as a string",
            observation(json!({"valueQuantity": {"value": "5.4", "unit": "kg"}})),
            vec![e("Observation.valueQuantity.value", Structure)],
        ),
        (
            "boolean as a string",
            json!({"resourceType": "Patient", "active": "true"}),
            vec![e("Patient.active", Structure)],
        ),
        (
            "string as a number",
            json!({"resourceType": "Patient", "gender": 1}),
            vec![e("Patient.gender", Structure)],
        ),
        (
            "integer with a fraction",
            json!({"resourceType": "Patient", "multipleBirthInteger": 1.5}),
            vec![e("Patient.multipleBirthInteger", Val)],
        ),
        (
            "integer beyond 32 bits",
            json!({"resourceType": "Patient", "multipleBirthInteger": 3_000_000_000u64}),
            vec![e("Patient.multipleBirthInteger", Val)],
        ),
        (
            "negative unsignedInt",
            json!({"resourceType": "Patient", "photo": [{"size": -1}]}),
            vec![e("Patient.photo[0].size", Val)],
        ),
        (
            "zero positiveInt",
            json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/n", "valuePositiveInt": 0}]}),
            vec![e("Patient.extension[0].valuePositiveInt", Val)],
        ),
        (
            "empty string",
            json!({"resourceType": "Patient", "gender": ""}),
            vec![e("Patient.gender", Val)],
        ),
        (
            "empty string in an array",
            json!({"resourceType": "Patient", "name": [{"given": ["Ann", ""]}]}),
            vec![e("Patient.name[0].given[1]", Val)],
        ),
        (
            "code with double space",
            json!({"resourceType": "Patient", "gender": "fe  male"}),
            vec![e("Patient.gender", Val)],
        ),
        (
            "uri with a space",
            json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/a b"]}}),
            vec![e("Patient.meta.profile[0]", Val)],
        ),
        (
            "bad base64",
            json!({"resourceType": "Patient", "photo": [{"data": "not base64!"}]}),
            vec![e("Patient.photo[0].data", Val)],
        ),
        (
            "narrative that is not a div",
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<p>hi</p>"}}),
            vec![e("Patient.text.div", Val)],
        ),
        // Shape and cardinality.
        (
            "array where single expected",
            json!({"resourceType": "Patient", "gender": ["male"]}),
            vec![e("Patient.gender", Structure)],
        ),
        (
            "single where array expected",
            json!({"resourceType": "Patient", "name": {"family": "Doe"}}),
            vec![e("Patient.name", Structure)],
        ),
        (
            "primitive array given a single value",
            json!({"resourceType": "Patient", "name": [{"given": "Ann"}]}),
            vec![e("Patient.name[0].given", Structure)],
        ),
        (
            "missing required elements",
            json!({"resourceType": "Observation"}),
            vec![
                e("Observation.code", Required),
                e("Observation.status", Required),
            ],
        ),
        (
            "missing required element in a backbone element",
            json!({"resourceType": "Patient", "link": [{"type": "seealso"}]}),
            vec![e("Patient.link[0].other", Required)],
        ),
        (
            "missing required choice",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/1"}}),
            vec![e("MedicationRequest.medication", Required)],
        ),
        (
            "missing required element in a datatype",
            json!({"resourceType": "Patient", "text": {"div": "<div>A</div>"}}),
            vec![e("Patient.text.status", Required)],
        ),
        (
            "empty object",
            json!({"resourceType": "Patient", "maritalStatus": {}}),
            vec![e("Patient.maritalStatus", Structure)],
        ),
        (
            "empty array",
            json!({"resourceType": "Patient", "name": []}),
            vec![e("Patient.name", Structure)],
        ),
        (
            "null single value",
            json!({"resourceType": "Patient", "gender": null}),
            vec![e("Patient.gender", Structure)],
        ),
        (
            "null in a complex array",
            json!({"resourceType": "Patient", "name": [null]}),
            vec![e("Patient.name[0]", Structure)],
        ),
        (
            "null in a primitive array without companion",
            json!({"resourceType": "Patient", "name": [{"given": ["Ann", null]}]}),
            vec![e("Patient.name[0].given[1]", Structure)],
        ),
        (
            "companion array of another length",
            json!({"resourceType": "Patient", "name": [{"given": ["Ann", "Bo"], "_given": [{"id": "g1"}]}]}),
            vec![e("Patient.name[0].given", Structure)],
        ),
        (
            "companion with a value",
            json!({"resourceType": "Patient", "birthDate": "1970", "_birthDate": {"value": "1970"}}),
            vec![e("Patient.birthDate.value", Structure)],
        ),
        (
            "companion extension without url",
            json!({"resourceType": "Patient", "_birthDate": {"extension": [{"valueBoolean": true}]}}),
            vec![e("Patient.birthDate.extension[0].url", Required)],
        ),
        // Choice elements.
        (
            "invalid choice suffix",
            observation(json!({"valueFoo": "x"})),
            vec![e("Observation.valueFoo", Structure)],
        ),
        (
            "type not allowed for this choice",
            json!({"resourceType": "Patient", "deceasedString": "yes"}),
            vec![e("Patient.deceasedString", Structure)],
        ),
        (
            "choice without suffix",
            observation(json!({"value": 1})),
            vec![e("Observation.value", Structure)],
        ),
        (
            "two choice variants",
            observation(json!({"valueString": "a", "valueBoolean": true})),
            vec![e("Observation.valueBoolean", Structure)],
        ),
        (
            "choice variant of the wrong JSON type",
            observation(json!({"valueInteger": "1"})),
            vec![e("Observation.valueInteger", Structure)],
        ),
        // Extensions.
        (
            "extension with value and extensions",
            json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/a", "valueString": "x",
                   "extension": [{"url": "b", "valueBoolean": true}]}]}),
            vec![e("Patient.extension[0]", Invariant)],
        ),
        (
            "extension with neither value nor extensions",
            json!({"resourceType": "Patient", "name": [{"extension": [{"url": "http://example.org/a"}]}]}),
            vec![e("Patient.name[0].extension[0]", Invariant)],
        ),
        (
            "modifier extension without url",
            json!({"resourceType": "Patient", "contact": [{"name": {"family": "A"}, "modifierExtension": [{"valueCode": "x"}]}]}),
            vec![e("Patient.contact[0].modifierExtension[0].url", Required)],
        ),
        // Nested resources and recursion.
        (
            "contained resource with an error",
            json!({"resourceType": "Patient", "contained": [
                {"resourceType": "Organization", "id": "o1", "name": "A"},
                {"resourceType": "Practitioner", "id": "p1", "birthDate": "yesterday"}
            ]}),
            vec![e("Patient.contained[1].birthDate", Val)],
        ),
        (
            "contained resource of an unknown type",
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Nobody", "id": "n"}]}),
            vec![e("Patient.contained[0].resourceType", NotSupported)],
        ),
        (
            "contained resource without resourceType",
            json!({"resourceType": "Patient", "contained": [{"id": "n"}]}),
            vec![e("Patient.contained[0].resourceType", Required)],
        ),
        (
            "Bundle entry resource with an error",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"fullUrl": "urn:uuid:a76d9bbf-f293-4fb7-ad4c-2851cac77162", "resource": {"resourceType": "Patient", "active": true}},
                {"resource": {"resourceType": "Observation", "status": "final"}}
            ]}),
            vec![e("Bundle.entry[1].resource.code", Required)],
        ),
        (
            "Bundle response outcome of the wrong type",
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": [
                {"response": {"status": "200", "outcome": {"resourceType": "Patient"}}}
            ]}),
            vec![e(
                "Bundle.entry[0].response.outcome.resourceType",
                Structure,
            )],
        ),
        (
            "Parameters resource with an error",
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "p", "resource": {"resourceType": "Patient", "gender": ["male"]}},
                {"name": "q", "part": [{"name": "r", "valueDate": "2020-1-1"}]}
            ]}),
            vec![
                e("Parameters.parameter[0].resource.gender", Structure),
                e("Parameters.parameter[1].part[0].valueDate", Val),
            ],
        ),
        (
            "content reference (Questionnaire.item.item)",
            nested_items(3),
            vec![],
        ),
        (
            "deep nesting",
            nested_items(MAX_DEPTH + 10),
            vec![e(&path("Questionnaire", ".item[0]", MAX_DEPTH), TooLong)],
        ),
        (
            "deep nesting of extensions",
            {
                let mut ext = json!({"url": "u", "valueBoolean": true});
                for _ in 0..100 {
                    ext = json!({"url": "u", "extension": [ext]});
                }
                json!({"resourceType": "Patient", "extension": [ext]})
            },
            vec![e(
                &path("Patient.extension[0]", ".extension[0]", MAX_DEPTH - 1),
                TooLong,
            )],
        ),
        // Codes of required bindings.
        (
            "Observation.status outside its value set",
            observation(json!({"status": "nonsense-status"})),
            vec![e("Observation.status", CodeInvalid)],
        ),
        (
            "Patient.gender outside its value set",
            json!({"resourceType": "Patient", "gender": "f"}),
            vec![e("Patient.gender", CodeInvalid)],
        ),
        (
            "codes are case-sensitive",
            json!({"resourceType": "Patient", "gender": "Female"}),
            vec![e("Patient.gender", CodeInvalid)],
        ),
        (
            "Quantity.comparator inside valueQuantity",
            observation(json!({"valueQuantity": {"value": 5, "comparator": "=<", "unit": "kg"}})),
            vec![e("Observation.valueQuantity.comparator", CodeInvalid)],
        ),
        (
            "HumanName.use in the second name",
            json!({"resourceType": "Patient", "name": [{"use": "official"}, {"use": "nick", "family": "A"}]}),
            vec![e("Patient.name[1].use", CodeInvalid)],
        ),
        (
            "ContactPoint.system, Address.use, Identifier.use and Narrative.status",
            json!({"resourceType": "Patient",
                   "text": {"status": "auto", "div": "<div>A</div>"},
                   "identifier": [{"use": "primary", "value": "1"}],
                   "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "telephone", "value": "1"}],
                   "address": [{"use": "holiday"}]}),
            vec![
                e("Patient.text.status", CodeInvalid),
                e("Patient.identifier[0].use", CodeInvalid),
                e("Patient.telecom[1].system", CodeInvalid),
                e("Patient.address[0].use", CodeInvalid),
            ],
        ),
        (
            "Bundle.type outside its value set",
            json!({"resourceType": "Bundle", "type": "bag"}),
            vec![e("Bundle.type", CodeInvalid)],
        ),
        (
            "Encounter.status outside its value set",
            json!({"resourceType": "Encounter", "status": "done", "class": {"code": "AMB"}}),
            vec![e("Encounter.status", CodeInvalid)],
        ),
        (
            "code in a contained resource",
            json!({"resourceType": "Patient", "contained": [
                {"resourceType": "Organization", "id": "o1", "name": "A"},
                {"resourceType": "Observation", "id": "o2", "status": "done", "code": {"text": "x"}}
            ]}),
            vec![e("Patient.contained[1].status", CodeInvalid)],
        ),
        (
            "code in a Bundle entry resource",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "Patient", "gender": "woman"}}
            ]}),
            vec![e("Bundle.entry[0].resource.gender", CodeInvalid)],
        ),
        (
            "repeating code element",
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                   "category": ["food", "drink", "medication"]}),
            vec![e("AllergyIntolerance.category[1]", CodeInvalid)],
        ),
        (
            "code in a backbone element",
            json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/2"}, "type": "see-also"}]}),
            vec![e("Patient.link[0].type", CodeInvalid)],
        ),
        (
            "code in a content reference (Questionnaire.item.item)",
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [
                {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "strin"}]}
            ]}),
            vec![e("Questionnaire.item[0].item[0].type", CodeInvalid)],
        ),
        (
            "code in Timing inside a datatype inside a resource",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
                   "dosageInstruction": [{"timing": {"repeat": {"dayOfWeek": ["mon", "funday"],
                                                                "when": ["MORN"], "periodUnit": "hour"}}}]}),
            vec![
                e(
                    "MedicationRequest.dosageInstruction[0].timing.repeat.dayOfWeek[1]",
                    CodeInvalid,
                ),
                e(
                    "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit",
                    CodeInvalid,
                ),
            ],
        ),
        (
            "malformed code is reported once, as a bad value",
            json!({"resourceType": "Patient", "gender": " male"}),
            vec![e("Patient.gender", Val)],
        ),
        (
            "deep nesting of contained resources",
            {
                let mut resource = json!({"resourceType": "Patient"});
                for _ in 0..100 {
                    resource = json!({"resourceType": "Patient", "contained": [resource]});
                }
                resource
            },
            vec![e(&path("Patient", ".contained[0]", MAX_DEPTH), TooLong)],
        ),
    ]
}

#[test]
fn invalid_resources_are_reported_exactly() {
    let mut failures = Vec::new();
    for (name, resource, mut expected) in cases() {
        let issues = resource_issues(&resource);
        let mut found: Vec<(String, IssueCode)> = issues
            .iter()
            .map(|i| (i.expression.clone(), i.code))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        if found != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  found    {found:?}\n  {}",
                issues
                    .iter()
                    .map(Issue::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        assert!(issues.iter().all(|i| i.severity == Severity::Error));
        assert_eq!(
            validate_resource(&resource).is_ok(),
            expected.is_empty(),
            "{name}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_resources_pass() {
    let valid = [
        json!({"resourceType": "Patient"}),
        json!({
            "resourceType": "Patient",
            "id": "example-1.a",
            "meta": {"lastUpdated": "2024-05-06T10:20:30.123+02:00", "profile": ["http://example.org/p"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"},
            "active": true,
            "name": [{"use": "official", "family": "Doe", "given": ["Ann", null],
                      "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "B"}]}]}],
            "birthDate": "1970-02-28",
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                          "valueDateTime": "1970-02-28T04:30:00-05:00"}]},
            "deceasedBoolean": false,
            "multipleBirthInteger": 2,
            "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo=", "size": 0}],
            "contact": [{"name": {"family": "Roe"}, "gender": "female"}],
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "A"}],
            "managingOrganization": {"reference": "#o1"}
        }),
        observation(json!({
            "effectiveDateTime": "2020-01-01",
            "valueQuantity": {"value": 5.40, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            "component": [{"code": {"text": "x"}, "valueInteger": -3}]
        })),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "1"}},
            {"resource": {"resourceType": "Parameters", "parameter": [{"name": "n", "valueDecimal": 1e3}]}}
        ]}),
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "400", "outcome": {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invalid"}
            ]}}}
        ]}),
        // Codes of required bindings, including codes nested in the hierarchy of their code
        // system (`corrected` under `amended`, `maiden` under `old`, `value` under `invalid`,
        // `boolean` under `question`) and codes listed explicitly from other systems (`AC`).
        observation(json!({
            "status": "corrected",
            "valueQuantity": {"value": 5, "comparator": "<=", "unit": "kg"}
        })),
        json!({
            "resourceType": "Patient",
            "text": {"status": "additional", "div": "<div>A</div>"},
            "identifier": [{"use": "secondary", "value": "1"}],
            "gender": "unknown",
            "name": [{"use": "maiden", "family": "Roe"}, {"use": "anonymous", "text": "X"}],
            "telecom": [{"system": "email", "value": "a@example.org", "use": "work"}],
            "address": [{"use": "old", "type": "postal"}],
            "link": [{"other": {"reference": "Patient/2"}, "type": "seealso"}],
            "photo": [{"contentType": "image/svg+xml", "data": "PHN2Zy8+"}]
        }),
        json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"search": {"mode": "match"}, "resource": {"resourceType": "Encounter", "status": "in-progress",
                                                       "class": {"code": "AMB"}}}
        ]}),
        json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "value"}, {"severity": "error", "code": "code-invalid"}
        ]}),
        json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
               "category": ["food", "medication"], "criticality": "unable-to-assess"}),
        json!({"resourceType": "Questionnaire", "status": "active", "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "boolean"}]}
        ]}),
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "original-order",
               "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
               "dosageInstruction": [{"timing": {"repeat": {"dayOfWeek": ["mon", "sun"],
                                                            "when": ["AC", "MORN.early"], "periodUnit": "h"}}}]}),
    ];
    for resource in valid {
        let issues = resource_issues(&resource);
        assert!(
            issues.is_empty(),
            "{resource}: {:?}",
            issues.iter().map(Issue::to_string).collect::<Vec<_>>()
        );
        assert!(validate_resource(&resource).is_ok());
    }
}

#[test]
fn too_many_issues_are_cut_off_with_a_warning() {
    let names: Vec<Value> = (0..500).map(|_| json!({"family": 1})).collect();
    let resource = json!({"resourceType": "Patient", "name": names});
    let Err(issues) = validate_resource(&resource) else {
        panic!("500 bad names must be invalid");
    };
    assert_eq!(issues.len(), MAX_ISSUES + 1);
    assert!(issues[..MAX_ISSUES].iter().all(|i| i.code == Structure));
    assert_eq!(issues[0].expression, "Patient.name[0].family");
    let last = &issues[MAX_ISSUES];
    assert_eq!((last.severity, last.code), (Severity::Warning, TooCostly));
}

#[test]
fn issue_codes_are_fhir_codes() {
    assert_eq!(Structure.code(), "structure");
    assert_eq!(Required.code(), "required");
    assert_eq!(Val.code(), "value");
    assert_eq!(CodeInvalid.code(), "code-invalid");
    assert_eq!(TooLong.code(), "too-long");
    assert_eq!(NotSupported.code(), "not-supported");
    assert_eq!(Severity::Error.code(), "error");
}

#[test]
fn messages_do_not_repeat_values() {
    let secret = "1970-13-45-not-a-date";
    let issues = resource_issues(&json!({"resourceType": "Patient", "birthDate": secret}));
    assert_eq!(issues.len(), 1);
    assert!(!issues[0].message.contains(secret));
}

#[test]
fn code_messages_name_the_element_and_value_set_but_not_the_value() {
    let secret = format!("private-{}", "x".repeat(500));
    let issues = resource_issues(&observation(json!({ "status": secret })));
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(
        (issue.expression.as_str(), issue.code),
        ("Observation.status", CodeInvalid)
    );
    assert!(!issue.message.contains("private-"), "{}", issue.message);
    assert!(issue.message.contains("`status`"), "{}", issue.message);
    assert!(
        issue
            .message
            .contains("http://hl7.org/fhir/ValueSet/observation-status"),
        "{}",
        issue.message
    );
    // A small value set is listed in full…
    assert!(issue.message.contains("final"), "{}", issue.message);
    // …a large one is only counted.
    let issues = resource_issues(&json!({"resourceType": "SearchParameter",
        "url": "http://example.org/sp", "name": "x", "status": "draft", "description": "x",
        "code": "x", "type": "token", "base": ["NotAResource"]}));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].expression, "SearchParameter.base[0]");
    assert!(
        issues[0].message.contains(" codes)"),
        "{}",
        issues[0].message
    );
    assert!(issues[0].message.len() < 300, "{}", issues[0].message);
}

#[test]
fn value_sets_that_cannot_be_enumerated_are_not_checked() {
    // MIME types (urn:ietf:bcp:13) and currencies (ISO 4217) are external code systems: any
    // well-formed code is accepted rather than a guessed list enforced.
    let resource = json!({"resourceType": "Patient",
        "photo": [{"contentType": "application/x-ironchart-test"}],
        "extension": [{"url": "http://example.org/m", "valueMoney": {"value": 1, "currency": "XTS"}}]});
    let issues = resource_issues(&resource);
    assert!(issues.is_empty(), "{issues:?}");
}
