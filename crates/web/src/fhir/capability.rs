//! The CapabilityStatement, generated from what the server really supports: every resource type
//! of the definitions, the interactions the router serves, and every search parameter the store
//! indexes (composite and special parameters are not indexed, so they are not listed).

use ironchart_fhir::SearchParamKind;
use serde_json::{Value, json};

/// Interactions served for every resource type (see `routes()`).
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

pub(crate) fn statement(base: &str) -> Value {
    let resources: Vec<Value> = ironchart_fhir::resource_types()
        .iter()
        .map(|rt| {
            let params: Vec<Value> = ironchart_fhir::search_params_for(rt)
                .filter(|p| !matches!(p.kind, SearchParamKind::Composite | SearchParamKind::Special))
                .filter(|p| !p.expression.is_empty() || p.name == "_id" || p.name == "_lastUpdated")
                .map(|p| json!({ "name": p.name, "definition": p.url, "type": p.kind.code() }))
                .collect();
            let includes: Vec<Value> = ironchart_fhir::search_params_for(rt)
                .filter(|p| p.kind == SearchParamKind::Reference && p.resource != "Resource")
                .map(|p| json!(format!("{rt}:{}", p.name)))
                .collect();
            let revincludes = includes_rev(rt);
            let mut entry = json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({ "code": i })).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            });
            // FHIR JSON has no empty arrays: leave out what a type does not have.
            for (key, list) in [("searchInclude", includes), ("searchRevInclude", revincludes), ("searchParam", params)] {
                if !list.is_empty() {
                    entry[key] = Value::Array(list);
                }
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": today(),
        "publisher": "ironchart",
        "kind": "instance",
        "software": { "name": "ironchart", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "ironchart FHIR R4 server", "url": base },
        "fhirVersion": ironchart_fhir::FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Every interaction except metadata needs a bearer token (Authorization: Bearer …)."
            },
            "resource": resources,
            "interaction": [
                { "code": "transaction" },
                { "code": "batch" },
                { "code": "history-system" }
            ],
        }]
    })
}

/// `_revinclude` values that make sense for `rt`: every reference parameter of any type that can
/// point to it.
fn includes_rev(rt: &str) -> Vec<Value> {
    ironchart_fhir::SEARCH_PARAMS
        .iter()
        .filter(|p| p.kind == SearchParamKind::Reference && p.resource != "Resource")
        .filter(|p| p.targets.contains(&rt))
        .map(|p| json!(format!("{}:{}", p.resource, p.name)))
        .collect()
}

/// Today's date (UTC), the date of this statement.
fn today() -> String {
    ironchart_fhir::Instant::now()
        .to_string()
        .chars()
        .take(10)
        .collect()
}
