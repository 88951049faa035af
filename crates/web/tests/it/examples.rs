//! Every official R4 example (HL7 FHIR 4.0.1, CC0; copied to `crates/fhir/fixtures/examples`)
//! can be stored, read back identical apart from `meta`, and found through each of its own
//! search parameters.

use std::path::PathBuf;

use ironchart_fhir::extract::{IndexValue, extract};
use reqwest::StatusCode;
use serde_json::Value;

use crate::on_both;
use crate::support::{Server, without_meta};

fn examples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fhir/fixtures/examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 890);
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let value: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (name, value)
        })
        .collect()
}

/// The generated `*-questionnaire.json` examples lack the `linkId`s the specification requires
/// (see crates/fhir/tests/it/examples.rs); give them some so that the rest can be checked.
fn add_missing_link_ids(value: &mut Value, next: &mut usize) {
    if let Some(items) = value.get_mut("item").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(o) = item.as_object_mut()
                && !o.contains_key("linkId")
            {
                *next += 1;
                o.insert("linkId".into(), Value::String(format!("added-{next}")));
            }
            add_missing_link_ids(item, next);
        }
    }
}

/// Escapes a search value (`\`, `,`, `$`, `|`).
fn esc(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Query-string parts that must find a resource with this index value.
fn criteria(param: &str, value: &IndexValue) -> Vec<String> {
    let fmt = ironchart_fhir::datetime::format_instant;
    match value {
        IndexValue::String(s) => {
            let prefix: String = s.chars().take(60).collect();
            vec![format!("{param}={}", enc(&esc(&prefix)))]
        }
        IndexValue::Token { system, code, text } => match (system, code, text) {
            (Some(s), Some(c), _) => vec![format!(
                "{param}={}",
                enc(&format!("{}|{}", esc(s), esc(c)))
            )],
            (None, Some(c), _) => vec![format!("{param}={}", enc(&format!("|{}", esc(c))))],
            (Some(s), None, _) => vec![format!("{param}={}", enc(&format!("{}|", esc(s))))],
            (None, None, Some(t)) => {
                let prefix: String = t.chars().take(60).collect();
                vec![format!("{param}:text={}", enc(&esc(&prefix)))]
            }
            (None, None, None) => vec![],
        },
        IndexValue::Date(r) => vec![
            format!("{param}={}", enc(&format!("ge{}", fmt(r.low)))),
            format!("{param}={}", enc(&format!("le{}", fmt(r.high)))),
        ],
        IndexValue::Number(n) => vec![format!("{param}=ge{n}"), format!("{param}=le{n}")],
        IndexValue::Quantity { value, .. } => {
            vec![format!("{param}=ge{value}"), format!("{param}=le{value}")]
        }
        IndexValue::Reference {
            target_type,
            target_id,
            url,
            identifier,
        } => {
            if let (Some(t), Some(id)) = (target_type, target_id)
                && !url.contains("://")
            {
                vec![format!("{param}={}", enc(&format!("{t}/{id}")))]
            } else if !url.is_empty() {
                vec![format!("{param}={}", enc(&esc(url)))]
            } else if let Some((sys, val)) = identifier {
                match (sys, val) {
                    (Some(s), Some(v)) => vec![format!(
                        "{param}:identifier={}",
                        enc(&format!("{}|{}", esc(s), esc(v)))
                    )],
                    (None, Some(v)) => vec![format!("{param}:identifier={}", enc(&esc(v)))],
                    _ => vec![],
                }
            } else {
                vec![]
            }
        }
        IndexValue::Uri(u) => vec![format!("{param}={}", enc(&esc(u)))],
    }
}

async fn official_examples(s: Server) {
    let mut failures = Vec::new();
    let mut searches = 0usize;
    let mut next_link = 0usize;
    for (n, (file, mut value)) in examples().into_iter().enumerate() {
        if file.ends_with("-questionnaire.json") {
            add_missing_link_ids(&mut value, &mut next_link);
        }
        let rt = value["resourceType"].as_str().unwrap().to_string();
        let id = match value["id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let id = format!("example-{n}");
                value["id"] = Value::String(id.clone());
                id
            }
        };
        let r = s.put(&format!("{rt}/{id}"), &value).await;
        if rt == "AuditEvent" {
            // `/fhir/AuditEvent` is ironchart's own audit log: clients cannot write to it.
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{file}: {}", r.text);
            continue;
        }
        if !r.status.is_success() {
            failures.push(format!(
                "{file}: PUT {}: {}",
                r.status,
                r.text.chars().take(300).collect::<String>()
            ));
            continue;
        }
        let read = s.get(&format!("{rt}/{id}")).await;
        if read.status != StatusCode::OK {
            failures.push(format!("{file}: read {}", read.status));
            continue;
        }
        if without_meta(&read.body) != without_meta(&value) {
            failures.push(format!("{file}: read back differs"));
            continue;
        }
        // meta's other elements (profile, tag, security, …) are kept.
        if let Some(meta) = value.get("meta").and_then(Value::as_object) {
            for (k, v) in meta {
                if k != "versionId" && k != "lastUpdated" && read.body["meta"][k] != *v {
                    failures.push(format!("{file}: meta.{k} not kept"));
                }
            }
        }
        let entries = extract(&read.body);
        // A contained resource's values are found through chains only: by each of the
        // container's references to it.
        for entry in &entries {
            let Some(within) = &entry.contained else {
                continue;
            };
            if matches!(entry.value, IndexValue::Reference { .. }) || entry.param == "_id" {
                continue;
            }
            let local = format!("#{}", within.id);
            for via in &entries {
                let IndexValue::Reference {
                    url,
                    target_type: Some(t),
                    ..
                } = &via.value
                else {
                    continue;
                };
                let allowed = ironchart_fhir::search_param(&rt, via.param)
                    .is_some_and(|d| d.targets.is_empty() || d.targets.contains(&t.as_str()));
                if via.contained.is_some() || *url != local || t != within.resource_type || !allowed
                {
                    continue;
                }
                for c in criteria(entry.param, &entry.value) {
                    searches += 1;
                    let q = format!("{rt}?_id={}&{}:{t}.{c}", enc(&id), via.param);
                    let r = s.get(&q).await;
                    let found = r.status == StatusCode::OK
                        && r.body["entry"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(|e| e["resource"]["id"] == id.as_str()));
                    if !found {
                        failures.push(format!("{file}: not found by {q} ({})", r.status));
                    }
                }
            }
        }
        for entry in entries {
            if entry.contained.is_some() || entry.param == "_lastUpdated" || entry.param == "_id" {
                continue;
            }
            for c in criteria(entry.param, &entry.value) {
                searches += 1;
                let q = format!("{rt}?_id={}&{c}", enc(&id));
                let r = s.get(&q).await;
                let found = r.status == StatusCode::OK
                    && r.body["entry"].as_array().is_some_and(|e| {
                        e.iter().any(|e| {
                            e["resource"]["id"] == id.as_str() && e["search"]["mode"] == "match"
                        })
                    });
                if !found {
                    failures.push(format!("{file}: not found by {q} ({})", r.status));
                }
            }
        }
    }
    eprintln!("{searches} searches");
    assert!(searches > 5000, "only {searches} searches ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
on_both!(official_examples);
