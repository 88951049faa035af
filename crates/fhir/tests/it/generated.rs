//! The generated tables: sorted as the lookups need, and in agreement with each other.

use ironchart_fhir::generated::compartment::PATIENT_COMPARTMENT;
use ironchart_fhir::generated::elements::{ElementDef, TYPES, TypeKind, UNBOUNDED, type_def};
use ironchart_fhir::generated::resource_types::RESOURCE_TYPES;
use ironchart_fhir::{
    SEARCH_PARAMS, SearchParamKind, is_resource_type, patient_compartment_params, search_param,
    search_params_for,
};

const PRIMITIVES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

#[test]
fn resource_types_are_sorted_and_concrete() {
    assert!(RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
    // The 146 resource types of FHIR R4 4.0.1 (the definitions also carry R4B's
    // SubscriptionStatus, which is not R4 and is left out).
    assert_eq!(RESOURCE_TYPES.len(), 146);
    assert!(!is_resource_type("SubscriptionStatus"));
    for name in ["Patient", "Observation", "Bundle", "Binary", "Parameters"] {
        assert!(is_resource_type(name), "{name}");
    }
    for name in [
        "Resource",
        "DomainResource",
        "MetadataResource",
        "HumanName",
        "patient",
    ] {
        assert!(!is_resource_type(name), "{name}");
    }
}

#[test]
fn search_params_are_sorted_by_resource_and_name() {
    assert!(
        SEARCH_PARAMS
            .windows(2)
            .all(|w| (w[0].resource, w[0].name) < (w[1].resource, w[1].name)),
        "SEARCH_PARAMS must be strictly sorted by (resource, name)"
    );
    for p in SEARCH_PARAMS {
        assert!(
            p.resource == "Resource" || is_resource_type(p.resource),
            "{}",
            p.resource
        );
        assert!(p.url.starts_with("http://hl7.org/fhir/SearchParameter/"));
        for part in p.expression.split(" | ").filter(|s| !s.is_empty()) {
            let anchored = part.trim_start_matches('(');
            // Composite parameters have the bare type as their expression.
            assert!(
                anchored == p.resource
                    || (anchored.starts_with(p.resource)
                        && anchored[p.resource.len()..].starts_with(['.', ' ', ')'])),
                "{} {}: part `{part}` is not about {}",
                p.resource,
                p.name,
                p.resource
            );
        }
    }
}

#[test]
fn well_known_search_params() {
    let family = search_param("Patient", "family").expect("Patient.family");
    assert_eq!(family.kind, SearchParamKind::String);
    assert_eq!(family.expression, "Patient.name.family");

    let subject = search_param("Observation", "subject").expect("Observation.subject");
    assert_eq!(subject.kind, SearchParamKind::Reference);
    assert!(subject.targets.contains(&"Patient"));

    // Shared definitions (base lists several types) are split per type.
    let patient = search_param("Observation", "patient").expect("Observation.patient");
    assert_eq!(
        patient.expression,
        "Observation.subject.where(resolve() is Patient)"
    );
    assert_eq!(
        search_param("AllergyIntolerance", "patient").map(|p| p.expression),
        Some("AllergyIntolerance.patient")
    );
    let date = search_param("Encounter", "date").expect("Encounter.date");
    assert_eq!(date.expression, "Encounter.period");
    let value_quantity = search_param("Observation", "value-quantity").expect("value-quantity");
    assert_eq!(value_quantity.kind, SearchParamKind::Quantity);
    assert_eq!(
        value_quantity.expression,
        "(Observation.value.ofType(Quantity)) | (Observation.value.ofType(SampledData))"
    );

    // The parameters common to all resources, reachable from any type.
    for name in [
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
    ] {
        let p = search_param("Patient", name).expect(name);
        assert_eq!(p.resource, "Resource");
        assert!(p.expression.starts_with("Resource."), "{name}");
    }
    assert_eq!(
        search_param("Patient", "_id").map(|p| p.expression),
        Some("Resource.id")
    );
    for name in ["_text", "_content", "_query", "_has", "_list"] {
        assert!(search_param("Patient", name).is_none(), "{name}");
    }
    assert!(search_param("Patient", "no-such-param").is_none());
    assert!(search_params_for("Patient").any(|p| p.name == "birthdate"));
}

#[test]
fn patient_compartment_matches_the_other_tables() {
    assert!(PATIENT_COMPARTMENT.windows(2).all(|w| w[0].0 < w[1].0));
    for (resource, params) in PATIENT_COMPARTMENT {
        assert!(is_resource_type(resource), "{resource}");
        assert!(!params.is_empty(), "{resource}");
        for param in *params {
            assert!(!param.starts_with('{'), "{resource}: {param}");
            assert!(
                search_param(resource, param).is_some(),
                "{resource}.{param} is not a search parameter"
            );
        }
    }
    assert_eq!(
        patient_compartment_params("Observation"),
        &["subject", "performer"]
    );
    assert_eq!(patient_compartment_params("Patient"), &["link"]);
    assert!(patient_compartment_params("Organization").is_empty());
}

#[test]
fn element_tables_are_sorted_and_complete() {
    assert!(TYPES.windows(2).all(|w| w[0].name < w[1].name));
    let resources: Vec<&str> = TYPES
        .iter()
        .filter(|t| t.kind == TypeKind::Resource)
        .map(|t| t.name)
        .collect();
    assert_eq!(resources, RESOURCE_TYPES);
    for t in TYPES {
        assert!(
            t.elements.windows(2).all(|w| w[0].path < w[1].path),
            "{} elements are not sorted",
            t.name
        );
        for el in t.elements {
            assert!(el.min <= el.max, "{}.{}", t.name, el.path);
            if el.content_ref.is_empty() {
                assert!(!el.types.is_empty(), "{}.{}", t.name, el.path);
            } else {
                assert!(
                    t.elements.iter().any(|e| e.path == el.content_ref),
                    "{}.{}: content reference {}",
                    t.name,
                    el.path,
                    el.content_ref
                );
            }
            for ty in el.types {
                assert!(
                    PRIMITIVES.contains(ty) || ty == &"Resource" || type_def(ty).is_some(),
                    "{}.{}: unknown type {ty}",
                    t.name,
                    el.path
                );
            }
        }
    }

    let patient = type_def("Patient").expect("Patient");
    let name = patient
        .elements
        .iter()
        .find(|e| e.path == "name")
        .expect("name");
    assert_eq!(
        (name.min, name.max, name.types),
        (0, UNBOUNDED, &["HumanName"][..])
    );
    let id = patient
        .elements
        .iter()
        .find(|e| e.path == "id")
        .expect("id");
    assert_eq!(id.types, &["id"]);
    let url = type_def("Extension")
        .and_then(|t| t.elements.iter().find(|e| e.path == "url"))
        .expect("Extension.url");
    assert_eq!((url.min, url.types), (1, &["uri"][..]));
    let item = type_def("Questionnaire")
        .and_then(|t| t.elements.iter().find(|e| e.path == "item.item"))
        .expect("Questionnaire.item.item");
    assert_eq!(item.content_ref, "item");
    let div = type_def("Narrative")
        .and_then(|t| t.elements.iter().find(|e| e.path == "div"))
        .expect("Narrative.div");
    assert_eq!(div.types, &["xhtml"]);
}

fn element(type_name: &str, path: &str) -> &'static ElementDef {
    type_def(type_name)
        .and_then(|t| t.elements.iter().find(|e| e.path == path))
        .unwrap_or_else(|| panic!("{type_name}.{path}"))
}

/// The codes allowed at `type_name.path`, or `None` when the element is unrestricted.
fn codes(type_name: &str, path: &str) -> Option<&'static [&'static str]> {
    element(type_name, path).value_set.map(|vs| vs.codes)
}

#[test]
fn required_bindings_of_code_elements() {
    let mut bound = 0;
    for t in TYPES {
        for el in t.elements {
            let Some(vs) = el.value_set else { continue };
            bound += 1;
            assert_eq!(el.types, &["code"], "{}.{}", t.name, el.path);
            assert!(!vs.codes.is_empty(), "{}", vs.url);
            assert!(
                vs.codes.windows(2).all(|w| w[0] < w[1]),
                "{}: codes are not sorted and unique",
                vs.url
            );
            assert!(!vs.url.contains('|'), "{}", vs.url);
        }
    }
    // Every `code` element with a required binding whose value set the definitions enumerate.
    assert_eq!(bound, 337);

    let status = element("Observation", "status").value_set.expect("bound");
    assert_eq!(
        status.url,
        "http://hl7.org/fhir/ValueSet/observation-status"
    );
    assert!(status.contains("final") && !status.contains("Final") && !status.contains("done"));
    assert_eq!(
        codes("Patient", "gender"),
        Some(&["female", "male", "other", "unknown"][..])
    );
    assert_eq!(
        codes("Quantity", "comparator"),
        Some(&["<", "<=", ">", ">="][..])
    );
    // Nested concepts of a code system are part of it: `maiden` sits under `old`.
    assert!(codes("HumanName", "use").is_some_and(|c| c.contains(&"maiden")));
    // An explicit list from an external system (v3 TimingEvent) plus a whole FHIR code system.
    let when = codes("Timing", "repeat.when").unwrap_or_default();
    assert!(
        when.contains(&"AC") && when.contains(&"MORN.early"),
        "{when:?}"
    );
    // Inside backbone elements, and reached through a content reference.
    assert!(codes("Bundle", "entry.request.method").is_some_and(|c| c.contains(&"PATCH")));
    assert!(codes("Questionnaire", "item.type").is_some_and(|c| c.contains(&"boolean")));
    // Elements that name a resource type take the codes of the R4 code system of resource types:
    // the resource types of the tables except SubscriptionStatus (an R4B resource that the
    // published 4.0.1 definitions carry) plus the abstract Resource and DomainResource.
    let mut resource_types: Vec<&str> = RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "SubscriptionStatus")
        .chain(["DomainResource", "Resource"])
        .collect();
    resource_types.sort_unstable();
    assert_eq!(codes("SearchParameter", "base"), Some(&resource_types[..]));

    // Value sets that the definitions do not enumerate are not restricted (no guessing).
    for (type_name, path) in [
        ("Attachment", "contentType"),      // MIME types, urn:ietf:bcp:13
        ("Money", "currency"),              // ISO 4217
        ("Composition", "confidentiality"), // a v3 value set not in the definitions
    ] {
        assert!(codes(type_name, path).is_none(), "{type_name}.{path}");
    }
    // Codings and CodeableConcepts are not restricted, even with a required binding.
    assert!(element("Timing", "code").value_set.is_none());
    assert!(element("Patient", "maritalStatus").value_set.is_none());
}
