//! The limits of one request: a search at each limit is answered, one beyond it is a 400 with
//! an OperationOutcome, and random searches around the limits (parameter counts, value counts,
//! sort keys, includes, chains, modifiers) never get a 500.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::json;

use ironchart_fhir::search::{
    MAX_INCLUDES, MAX_PARAMS, MAX_SORT_KEYS, MAX_TOTAL_VALUES, MAX_VALUES,
};

use crate::support::{Reply, Server, reply};

/// Posts a search as a form (no URL length limit in the way).
async fn search(s: &Server, rtype: &str, pairs: &[(String, String)]) -> Reply {
    let r = s
        .client
        .post(s.url(&format!("{rtype}/_search")))
        .bearer_auth(&s.token)
        .form(pairs)
        .send()
        .await
        .expect("request");
    reply(r).await
}

async fn fixtures(s: &Server) {
    let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}],
                   "birthDate": "1970-01-01"});
    assert!(s.put("Patient/p1", &p).await.status.is_success());
    for i in 0..3 {
        let o = json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "heart rate"},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": format!("202{i}-01-01"),
            "valueQuantity": {"value": 60 + i, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
        assert!(
            s.put(&format!("Observation/o{i}"), &o)
                .await
                .status
                .is_success()
        );
    }
}

/// Parameters of Observation searches and a value for each (a value for the nth alternative).
const PARAMS: &[&str] = &[
    "code",
    "code:text",
    "status",
    "status:not",
    "date",
    "subject",
    "patient",
    "subject:Patient.family",
    "subject:missing",
    "value-quantity",
    "category",
    "_id",
    "_lastUpdated",
    "combo-code",
    "subject:Patient",
    "identifier",
];

fn value(param: &str, n: usize) -> String {
    match param {
        "code" | "combo-code" => format!("http://loinc.org|{}-{}", 8000 + n, n % 10),
        "code:text" => format!("heart{n}"),
        "status" | "status:not" => ["final", "amended", "preliminary"][n % 3].into(),
        "date" => format!("ge20{:02}-01-01", n % 30),
        "subject" | "patient" | "subject:Patient" => format!("Patient/p{n}"),
        "subject:Patient.family" => format!("smi{n}"),
        "subject:missing" => "false".into(),
        "value-quantity" => format!("gt{n}|http://unitsofmeasure.org|/min"),
        "category" => "vital-signs".into(),
        "_id" => format!("o{n}"),
        "_lastUpdated" => "gt2000-01-01".into(),
        _ => format!("urn:x|{n}"),
    }
}

const SORTS: &[&str] = &[
    "date",
    "-date",
    "code",
    "status",
    "_id",
    "-_lastUpdated",
    "value-quantity",
    "patient",
    "-category",
    "subject",
];

fn pairs_of(params: &[(usize, usize)], sorts: &[usize], includes: usize) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for &(p, n) in params {
        let name = PARAMS[p % PARAMS.len()];
        let values: Vec<String> = (0..n.max(1)).map(|i| value(name, i)).collect();
        pairs.push((name.to_string(), values.join(",")));
    }
    if !sorts.is_empty() {
        let keys: Vec<&str> = sorts.iter().map(|&i| SORTS[i % SORTS.len()]).collect();
        pairs.push(("_sort".into(), keys.join(",")));
    }
    for i in 0..includes {
        if i % 2 == 0 {
            pairs.push(("_include".into(), "Observation:subject".into()));
        } else {
            pairs.push(("_revinclude".into(), "Provenance:target".into()));
        }
    }
    pairs
}

fn check(r: &Reply, what: &str) {
    assert!(
        r.status == StatusCode::OK || r.status == StatusCode::BAD_REQUEST,
        "{what}: {} {}",
        r.status,
        r.text
    );
    if r.status == StatusCode::BAD_REQUEST {
        assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
    }
}

async fn at_and_beyond_each_limit(s: Server) {
    fixtures(&s).await;
    // At the limits: answered. The most values (each parameter at its most), with the most
    // sort keys; the most parameters; the most ids of one `_id`.
    let per_param = MAX_TOTAL_VALUES / MAX_VALUES;
    let sorts: Vec<usize> = (0..MAX_SORT_KEYS).collect();
    let most_values: Vec<(usize, usize)> = (0..per_param).map(|i| (i, MAX_VALUES)).collect();
    let most_params: Vec<(usize, usize)> = (0..MAX_PARAMS - 1).map(|i| (i, 1)).collect();
    let ids = (0..MAX_VALUES)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for (kind, pairs) in [
        ("Observation", pairs_of(&most_values, &[], 0)),
        ("Observation", pairs_of(&most_values, &sorts, 0)),
        ("Observation", pairs_of(&most_params, &[1], 0)),
        ("Patient", vec![("_id".to_string(), ids)]),
    ] {
        let r = search(&s, kind, &pairs).await;
        assert_eq!(r.status, StatusCode::OK, "{kind} at the limits: {}", r.text);
    }
    let r = search(&s, "Observation", &pairs_of(&[(0, 1)], &[], MAX_INCLUDES)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // One beyond each: a 400 naming the limit.
    #[allow(clippy::type_complexity)]
    let beyond: Vec<(&str, Vec<(String, String)>, &str)> = vec![
        (
            "values of one parameter",
            pairs_of(&[(0, MAX_VALUES + 1)], &[], 0),
            "alternative values",
        ),
        (
            "values of one search",
            pairs_of(&vec![(0, MAX_VALUES); per_param + 1], &[], 0),
            "values in one search",
        ),
        (
            "parameters",
            pairs_of(&vec![(2, 1); MAX_PARAMS + 1], &[], 0),
            "search parameters",
        ),
        (
            "sort keys",
            pairs_of(&[], &(0..=MAX_SORT_KEYS).collect::<Vec<_>>(), 0),
            "sort keys",
        ),
        ("includes", pairs_of(&[], &[], MAX_INCLUDES + 1), "_include"),
    ];
    for (what, pairs, message) in beyond {
        let r = search(&s, "Observation", &pairs).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert!(r.text.contains(message), "{what}: {}", r.text);
    }
}
crate::on_both!(at_and_beyond_each_limit);

/// A random search: parameters (index, number of values), sort keys, includes, and whether it
/// only counts.
fn searches() -> impl Strategy<Value = (Vec<(usize, usize)>, Vec<usize>, usize, u8)> {
    let values = prop_oneof![
        6 => 1usize..4,
        2 => 1usize..=MAX_VALUES + 5,
        1 => Just(MAX_VALUES),
    ];
    let params = prop_oneof![
        4 => prop::collection::vec((0usize..64, values.clone()), 0..8),
        1 => prop::collection::vec((0usize..64, 1usize..4), MAX_PARAMS - 8..=MAX_PARAMS + 2),
        1 => prop::collection::vec((0usize..64, values), 1..12),
    ];
    let sorts = prop_oneof![
        8 => prop::collection::vec(0usize..32, 0..=MAX_SORT_KEYS),
        1 => prop::collection::vec(0usize..32, MAX_SORT_KEYS..=MAX_SORT_KEYS + 2),
    ];
    let includes = prop_oneof![8 => 0usize..3, 1 => MAX_INCLUDES - 1..=MAX_INCLUDES + 1];
    (params, sorts, includes, 0u8..4)
}

fn random_searches_never_fail(s: Server, cases: u32) {
    let rt = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let answered = std::cell::Cell::new(0u32);
    let result = runner.run(&searches(), |(params, sorts, includes, mode)| {
        let mut pairs = pairs_of(&params, &sorts, includes);
        match mode {
            0 => pairs.push(("_summary".into(), "count".into())),
            1 => pairs.push(("_total".into(), "accurate".into())),
            2 => pairs.push(("_count".into(), "3".into())),
            _ => {}
        }
        let r = tokio::task::block_in_place(|| rt.block_on(search(&s, "Observation", &pairs)));
        prop_assert!(
            r.status == StatusCode::OK || r.status == StatusCode::BAD_REQUEST,
            "{} {} for {} parameters",
            r.status,
            r.text,
            pairs.len()
        );
        check(&r, "random search");
        if r.status == StatusCode::OK {
            answered.set(answered.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Most random searches are within the limits: they ran, not only parsed.
    assert!(
        answered.get() * 5 >= cases * 2,
        "{} of {cases} answered",
        answered.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_searches_never_fail_sqlite() {
    let s = Server::sqlite().await;
    fixtures(&s).await;
    random_searches_never_fail(s, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_searches_never_fail_postgres() {
    if let Some(s) = Server::postgres().await {
        fixtures(&s).await;
        random_searches_never_fail(s, 32);
    }
}

/// A page ends where its resources reach the byte bound, and paging goes on from there: a
/// search or history of large resources is never built beyond the bound, and nothing is lost.
async fn pages_of_large_resources_are_bounded(s: Server) {
    // Strings are at most 1 MiB each: four notes of 0.95 MB make a resource of 3.8 MB.
    let note = json!({"text": "x".repeat(950_000)});
    for i in 0..10 {
        let o = json!({"resourceType": "Observation", "id": format!("big{i}"), "status": "final",
                       "code": {"text": "scan"}, "note": [note, note, note, note]});
        assert!(
            s.put(&format!("Observation/big{i}"), &o)
                .await
                .status
                .is_success()
        );
    }
    for first in [
        "Observation?code:text=scan&_count=20",
        "Observation/_history?_count=20",
    ] {
        let mut url = s.url(first);
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let r = s.get(&url).await;
            assert_eq!(r.status, StatusCode::OK, "{first}");
            assert!(
                r.text.len() < 40 * 1024 * 1024,
                "{first}: {} bytes",
                r.text.len()
            );
            pages += 1;
            for e in r.body["entry"].as_array().cloned().unwrap_or_default() {
                seen.push(e["resource"]["id"].as_str().unwrap_or_default().to_string());
            }
            match r.body["link"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            {
                Some(next) => url = next["url"].as_str().unwrap_or_default().to_string(),
                None => break,
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "{first}: {seen:?}");
        assert!(pages >= 2, "{first}: one page of 39 MB");
    }
}
crate::on_both!(pages_of_large_resources_are_bounded);
