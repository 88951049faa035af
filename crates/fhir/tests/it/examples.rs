//! Every official R4 example resource passes validation (once one documented defect of the
//! official examples is repaired).

use std::path::PathBuf;

use ironchart_fhir::generated::elements::type_def;
use ironchart_fhir::validate::{IssueCode, resource_issues, validate_resource};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/examples")
}

/// The official examples named `*-questionnaire.json` (`patient-questionnaire.json`, …) are
/// questionnaires generated from the resource definitions for the R4 publication. Their nested
/// items have no `linkId`, which `Questionnaire.item.linkId` (cardinality 1..1) requires: they
/// are invalid per the specification. The test checks that they are reported, then repairs them
/// (gives every item without one a `linkId`) and requires the repaired questionnaire to be valid,
/// so that everything else in them is still checked.
fn add_missing_link_ids(value: &mut Value, next: &mut usize) -> usize {
    let mut added = 0;
    if let Some(items) = value.get_mut("item").and_then(Value::as_array_mut) {
        for item in items {
            let unlinked = item
                .as_object_mut()
                .filter(|object| !object.contains_key("linkId"));
            if let Some(object) = unlinked {
                *next += 1;
                object.insert("linkId".into(), Value::String(format!("added-{next}")));
                added += 1;
            }
            added += add_missing_link_ids(item, next);
        }
    }
    added
}

fn example_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("fixtures/examples is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 890, "expected the 890 official examples");
    paths
}

#[test]
fn every_official_example_is_valid() {
    let paths = example_paths();

    let mut failures = Vec::new();
    let mut questionnaires_without_link_ids = 0;
    for path in &paths {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("example is readable");
        let mut value: Value = serde_json::from_str(&text).expect("example is JSON");
        if file.ends_with("-questionnaire.json") {
            let original = validate_resource(&value);
            if add_missing_link_ids(&mut value, &mut 0) > 0 {
                questionnaires_without_link_ids += 1;
                let reported = original.err().unwrap_or_default();
                assert!(
                    reported.iter().any(
                        |i| i.code == IssueCode::Required && i.expression.ends_with("].linkId")
                    ),
                    "{file}: missing linkIds not reported"
                );
            }
        }
        if let Err(issues) = validate_resource(&value) {
            for issue in issues.iter().take(10) {
                failures.push(format!("{file}: {issue}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} issues:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // All generated questionnaires but immunizationevaluation-questionnaire.json lack linkIds.
    assert_eq!(questionnaires_without_link_ids, 183);
}

/// The codes of required bindings are checked in real resources, not only in hand-made ones:
/// every example whose `status` is bound to an enumerable value set (and so passes the test
/// above with its official code) is reported, at that element, once its status is spoiled.
#[test]
fn a_spoiled_status_is_reported_in_every_example() {
    let mut spoiled = 0;
    let mut failures = Vec::new();
    for path in example_paths() {
        let text = std::fs::read_to_string(&path).expect("example is readable");
        let mut value: Value = serde_json::from_str(&text).expect("example is JSON");
        let Some(resource_type) = value.get("resourceType").and_then(Value::as_str) else {
            continue;
        };
        let bound = type_def(resource_type)
            .and_then(|def| def.elements.iter().find(|e| e.path == "status"))
            .is_some_and(|status| status.value_set.is_some());
        let expected = format!("{resource_type}.status");
        let Some(status) = value.get_mut("status").filter(|_| bound) else {
            continue;
        };
        *status = Value::String("not-a-status".into());
        spoiled += 1;
        let reported = resource_issues(&value)
            .iter()
            .any(|i| i.code == IssueCode::CodeInvalid && i.expression == expected);
        if !reported {
            failures.push(path.display().to_string());
        }
    }
    assert!(failures.is_empty(), "not reported: {failures:?}");
    assert_eq!(spoiled, 652);
}
