//! Search semantics, table-driven per parameter type, prefix and modifier; paging, sorting,
//! includes, chaining, totals and unknown parameters.

use reqwest::{Method, StatusCode};
use std::collections::HashMap;

use serde_json::{Value, json};

use crate::on_both;
use crate::support::Server;

async fn put(s: &Server, v: Value) {
    let path = format!(
        "{}/{}",
        v["resourceType"].as_str().unwrap(),
        v["id"].as_str().unwrap()
    );
    let r = s.put(&path, &v).await;
    assert!(r.status.is_success(), "{path}: {}", r.text);
}

async fn fixtures(s: &Server) {
    let patients = [
        json!({"resourceType":"Patient","id":"p1","active":true,"gender":"male","birthDate":"1970-01-15",
               "identifier":[{"system":"urn:mrn","value":"A1"}],"name":[{"family":"Smith","given":["John"]}],
               "address":[{"city":"Boston","state":"MA"}]}),
        json!({"resourceType":"Patient","id":"p2","gender":"female","birthDate":"1985-06-30",
               "identifier":[{"system":"urn:mrn","value":"A2"}],"name":[{"family":"Smithson","given":["Jane"]}],
               "address":[{"city":"Zürich"}]}),
        json!({"resourceType":"Patient","id":"p3","gender":"female","birthDate":"2001-03-03",
               "identifier":[{"system":"urn:other","value":"A3"}],"name":[{"family":"Müller","given":["Zoë"]}]}),
        json!({"resourceType":"Patient","id":"p4","gender":"unknown",
               "name":[{"family":"O'Brien","given":["Pat"]}]}),
    ];
    for p in patients {
        put(s, p).await;
    }
    let obs = |id: &str, patient: &str, code: &str, value: f64, unit: &str, when: Value| {
        let mut o = json!({"resourceType":"Observation","id":id,"status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":code}]},
            "subject":{"reference":format!("Patient/{patient}")},
            "valueQuantity":{"value":value,"unit":unit,"system":"http://unitsofmeasure.org","code":unit}});
        for (k, v) in when.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    put(
        s,
        obs(
            "o1",
            "p1",
            "8867-4",
            72.0,
            "/min",
            json!({"effectiveDateTime":"2020-05-01T10:00:00Z"}),
        ),
    )
    .await;
    put(
        s,
        obs(
            "o2",
            "p1",
            "8867-4",
            95.0,
            "/min",
            json!({"effectiveDateTime":"2021-05-01T10:00:00Z"}),
        ),
    )
    .await;
    put(
        s,
        obs(
            "o3",
            "p2",
            "29463-7",
            70.5,
            "kg",
            json!({"effectiveDateTime":"2022-01-01"}),
        ),
    )
    .await;
    put(s, obs("o4", "p3", "2345-7", 180.0, "mg/dL",
        json!({"effectivePeriod":{"start":"2020-01-01T00:00:00Z","end":"2020-01-31T23:59:59Z"}}))).await;
    put(
        s,
        json!({"resourceType":"Observation","id":"o5","status":"final","code":{"text":"note"},
        "subject":{"identifier":{"system":"urn:mrn","value":"A9"}}}),
    )
    .await;
    put(s, json!({"resourceType":"RiskAssessment","id":"r1","status":"final","subject":{"reference":"Patient/p1"},
        "prediction":[{"probabilityDecimal":0.8}]})).await;
    put(s, json!({"resourceType":"RiskAssessment","id":"r2","status":"final","subject":{"reference":"Patient/p2"},
        "prediction":[{"probabilityDecimal":0.25}]})).await;
    put(s, json!({"resourceType":"ValueSet","id":"vs1","status":"active","url":"http://example.org/vs/one"})).await;
    put(s, json!({"resourceType":"ValueSet","id":"vs2","status":"active","url":"http://example.org/other"})).await;
}

/// (query, expected ids in any order)
const CASES: &[(&str, &[&str])] = &[
    // string
    ("Patient?family=smith", &["p1", "p2"]),
    ("Patient?family=SMITH", &["p1", "p2"]),
    ("Patient?family:exact=Smith", &["p1"]),
    ("Patient?family:exact=smith", &[]),
    ("Patient?family:contains=ith", &["p1", "p2"]),
    ("Patient?family=muller", &["p3"]),
    ("Patient?family=o'brien", &["p4"]),
    ("Patient?name=zoe", &["p3"]),
    ("Patient?given=jo,ja", &["p1", "p2"]),
    ("Patient?address-city=zurich", &["p2"]),
    ("Patient?family:missing=false", &["p1", "p2", "p3", "p4"]),
    // token
    ("Patient?gender=female", &["p2", "p3"]),
    ("Patient?gender:not=female", &["p1", "p4"]),
    ("Patient?gender=male,female", &["p1", "p2", "p3"]),
    ("Patient?identifier=urn:mrn|A1", &["p1"]),
    ("Patient?identifier=A3", &["p3"]),
    ("Patient?identifier=|A3", &[]),
    ("Patient?identifier=urn:mrn|", &["p1", "p2"]),
    ("Patient?active=true", &["p1"]),
    ("Patient?_id=p1,p3", &["p1", "p3"]),
    ("Patient?gender:text=fem", &[]),
    // date
    ("Patient?birthdate=1970", &["p1"]),
    ("Patient?birthdate=1970-01-15", &["p1"]),
    ("Patient?birthdate=eq1970-01", &["p1"]),
    ("Patient?birthdate=gt1980", &["p2", "p3"]),
    ("Patient?birthdate=lt1980", &["p1"]),
    ("Patient?birthdate=ge1985-06-30", &["p2", "p3"]),
    ("Patient?birthdate=le1985-06-30", &["p1", "p2"]),
    ("Patient?birthdate=ne1970-01-15", &["p2", "p3"]),
    ("Patient?birthdate=sa1985", &["p3"]),
    ("Patient?birthdate=eb1985", &["p1"]),
    ("Patient?birthdate=ap1985-06-30", &["p2"]),
    ("Patient?birthdate=ge1980&birthdate=le1990", &["p2"]),
    ("Patient?birthdate:missing=true", &["p4"]),
    (
        "Patient?_lastUpdated=gt2000-01-01",
        &["p1", "p2", "p3", "p4"],
    ),
    ("Patient?_lastUpdated=lt2000-01-01", &[]),
    ("Observation?date=2020", &["o1", "o4"]),
    ("Observation?date=ge2021", &["o2", "o3"]),
    ("Observation?date=2020-01-15", &[]),
    ("Observation?date=le2020-01-15", &["o4"]),
    ("Observation?date=2020-05-01T10:00:00Z", &["o1"]),
    // token on CodeableConcept, reference
    ("Observation?code=http://loinc.org|8867-4", &["o1", "o2"]),
    ("Observation?code=8867-4,2345-7", &["o1", "o2", "o4"]),
    ("Observation?code:text=note", &["o5"]),
    ("Observation?subject=Patient/p1", &["o1", "o2"]),
    ("Observation?subject:Patient=p1", &["o1", "o2"]),
    ("Observation?patient=p1", &["o1", "o2"]),
    // parameters answered from other parameters' index rows (patient = subject to a Patient;
    // combo-code = code | component-code)
    ("Observation?patient:missing=true", &["o5"]),
    ("Observation?combo-code=8867-4", &["o1", "o2"]),
    ("Observation?combo-value-quantity=gt90", &["o2", "o4"]),
    ("Observation?subject=p2", &["o3"]),
    ("Observation?subject:identifier=urn:mrn|A9", &["o5"]),
    ("Observation?subject:missing=true", &[]),
    // quantity
    ("Observation?value-quantity=gt90", &["o2", "o4"]),
    (
        "Observation?value-quantity=gt90|http://unitsofmeasure.org|/min",
        &["o2"],
    ),
    ("Observation?value-quantity=70.5", &["o3"]),
    ("Observation?value-quantity=70", &[]),
    ("Observation?value-quantity=le72", &["o1", "o3"]),
    ("Observation?value-quantity=72||/min", &["o1"]),
    ("Observation?value-quantity=ap95", &["o2"]),
    // number
    ("RiskAssessment?probability=0.8", &["r1"]),
    ("RiskAssessment?probability=gt0.5", &["r1"]),
    ("RiskAssessment?probability=lt0.5", &["r2"]),
    ("RiskAssessment?probability=ne0.8", &["r2"]),
    // uri
    ("ValueSet?url=http://example.org/vs/one", &["vs1"]),
    ("ValueSet?url:below=http://example.org/vs", &["vs1"]),
    ("ValueSet?url=http://example.org/vs", &[]),
    // chaining
    ("Observation?subject:Patient.family=smithson", &["o3"]),
    ("Observation?subject:Patient.gender=female", &["o3", "o4"]),
    ("Observation?patient.birthdate=lt1980", &["o1", "o2"]),
];

async fn search_table(s: Server) {
    fixtures(&s).await;
    let mut failures = Vec::new();
    for (query, expected) in CASES {
        let mut got = s.search_ids(query).await;
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got != want {
            failures.push(format!("{query}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "search failures:\n{}",
        failures.join("\n")
    );
}
on_both!(search_table);

async fn search_errors(s: Server) {
    fixtures(&s).await;
    for q in [
        "Patient?birthdate=notadate",
        "Patient?_count=abc",
        "Observation?value-quantity=abc",
        "Observation?subject.family=x",
        "Patient?family:nonsense=x",
        "Patient?_sort=nonsense",
        "Patient?_include=Nope:x",
    ] {
        let r = s.get(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome", "{q}");
    }
    assert_eq!(s.get("NotAType?x=1").await.status, StatusCode::NOT_FOUND);
    // Unknown parameters: ignored and reported (lenient, the default) or refused (strict).
    let r = s.get("Patient?family=smith&foo=bar").await;
    assert_eq!(r.status, StatusCode::OK);
    let entries = r.body["entry"].as_array().unwrap();
    let outcome = entries
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("outcome entry");
    assert_eq!(outcome["resource"]["resourceType"], "OperationOutcome");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count(),
        2
    );
    let strict = s
        .send(
            Method::GET,
            "Patient?family=smith&foo=bar",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    let bad_cursor = s.get("Patient?_cursor=garbage").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
}
on_both!(search_errors);

async fn paging_sorting_totals(s: Server) {
    fixtures(&s).await;
    for i in 0..23 {
        put(&s, json!({"resourceType":"Patient","id":format!("bulk{i:02}"),"name":[{"family":format!("Zed{:02}", (i * 7) % 23)}],
            "birthDate": format!("19{:02}-01-01", 50 + (i % 5))})).await;
    }
    // Each match exactly once across pages, for several sorts and page sizes.
    for query in [
        "Patient?_count=4",
        "Patient?_count=5&_sort=family",
        "Patient?_count=3&_sort=-birthdate,family",
        "Patient?_count=7&_sort=-_lastUpdated",
        "Patient?_count=2&family=zed&_sort=birthdate,-_id",
    ] {
        let ids = s.search_ids(query).await;
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "{query}: duplicates in {ids:?}");
        let expected = if query.contains("family=zed") { 23 } else { 27 };
        assert_eq!(ids.len(), expected, "{query}");
    }
    // Sort order.
    let ids = s
        .search_ids("Patient?_id=p1,p2,p3,p4&_sort=birthdate")
        .await;
    assert_eq!(ids, ["p1", "p2", "p3", "p4"]);
    let ids = s
        .search_ids("Patient?_id=p1,p2,p3,p4&_sort=-birthdate")
        .await;
    assert_eq!(ids, ["p3", "p2", "p1", "p4"]);
    let ids = s
        .search_ids("Patient?family=smith,muller&_sort=-family")
        .await;
    assert_eq!(ids, ["p2", "p1", "p3"]);
    // Previous links walk back.
    let first = s.get("Patient?_count=10&_sort=family").await;
    let next_url = first.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let second = s.get(&next_url).await;
    let prev_url = second.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "previous")
        .expect("previous")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let back = s.get(&prev_url).await;
    let ids = |v: &Value| -> Vec<String> {
        v["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&back.body), ids(&first.body));
    // Totals.
    let r = s.get("Patient?_summary=count").await;
    assert_eq!(r.body["total"], 27);
    assert!(r.body.get("entry").is_none());
    let r = s.get("Patient?_count=1&_total=accurate").await;
    assert_eq!(r.body["total"], 27);
    assert_eq!(r.body["entry"].as_array().unwrap().len(), 1);
    let r = s.get("Patient?family=smith").await;
    assert_eq!(r.body["total"], 2);
    let r = s.get("Patient?_count=0&_total=accurate").await;
    assert_eq!(r.body["total"], 27);
    // POST _search gives the same as GET.
    let form = s
        .client
        .post(s.url("Patient/_search"))
        .bearer_auth(&s.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=smith&_sort=family")
        .send()
        .await
        .unwrap();
    let body: Value = form.json().await.unwrap();
    assert_eq!(ids(&body), ["p1", "p2"]);
}
on_both!(paging_sorting_totals);

async fn includes(s: Server) {
    fixtures(&s).await;
    let r = s
        .get("Observation?code=8867-4&_include=Observation:subject")
        .await;
    let entries = r.body["entry"].as_array().unwrap();
    let included: Vec<&Value> = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1, "p1 once: {}", r.text);
    assert_eq!(included[0]["resource"]["id"], "p1");
    let r = s
        .get("Patient?_id=p1,p2&_revinclude=Observation:subject")
        .await;
    let mut inc: Vec<String> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    inc.sort();
    assert_eq!(inc, ["o1", "o2", "o3"]);
    let r = s
        .get("Patient?_id=p1&_revinclude=RiskAssessment:subject&_revinclude=Observation:subject")
        .await;
    let count = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .count();
    assert_eq!(count, 3);
}
on_both!(includes);

/// A bare id, a typed reference and the `patient` parameter find the same resources (R4: a bare
/// id matches any target type the parameter allows); a reference written as a bare id is found
/// by it too.
async fn bare_and_typed_references_find_the_same(s: Server) {
    for id in ["p1", "p2"] {
        put(&s, json!({"resourceType": "Patient", "id": id})).await;
    }
    let obs = |id: &str, subject: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "code": {"text": "pulse"}, "subject": {"reference": subject}})
    };
    put(&s, obs("o1", "Patient/p1")).await;
    put(&s, obs("o2", "Patient/p1")).await;
    put(&s, obs("o3", "Patient/p2")).await;
    put(&s, obs("o4", "Group/p1")).await;
    put(&s, obs("o5", "p1")).await;
    let ids = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids(s.search_ids("Observation?patient=p1").await),
        ["o1", "o2"]
    );
    assert_eq!(
        ids(s.search_ids("Observation?patient=Patient/p1").await),
        ["o1", "o2"]
    );
    assert_eq!(
        ids(s.search_ids("Observation?subject=Patient/p1").await),
        ["o1", "o2"]
    );
    // A bare id on `subject` matches every type `subject` allows, and a bare reference.
    assert_eq!(
        ids(s.search_ids("Observation?subject=p1").await),
        ["o1", "o2", "o4", "o5"]
    );
    assert_eq!(
        ids(s.search_ids("Observation?subject:Group=p1").await),
        ["o4"]
    );
    let r = s.get("Observation?subject=p1&_summary=count").await;
    assert_eq!(r.body["total"], 4);
    let r = s
        .get("Patient?_id=p1&_revinclude=Observation:subject")
        .await;
    assert_eq!(r.body["entry"].as_array().map_or(0, Vec::len), 3);
}
on_both!(bare_and_typed_references_find_the_same);

/// Names as people type them: punctuation is ignored and any word of a name starts a match;
/// `:exact` is unchanged, and sorting goes by whole names.
async fn names_as_people_type_them(s: Server) {
    for (id, family) in [
        ("n1", "O'Brien"),
        ("n2", "van der Berg"),
        ("n3", "Smith-Jones"),
        ("n4", "Bergman"),
    ] {
        put(
            &s,
            json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": ["Ann"]}]}),
        )
        .await;
    }
    let ids = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let cases: &[(&str, &[&str])] = &[
        ("Patient?family=obrien", &["n1"]),
        ("Patient?family=o'brien", &["n1"]),
        ("Patient?family=O%E2%80%99Brien", &["n1"]),
        ("Patient?family=berg", &["n2", "n4"]),
        ("Patient?family=der%20berg", &["n2"]),
        ("Patient?family=van%20der", &["n2"]),
        ("Patient?name=jones", &["n3"]),
        ("Patient?family=smith-jones", &["n3"]),
        ("Patient?family=smith%20jones", &["n3"]),
        ("Patient?family:exact=O'Brien", &["n1"]),
        ("Patient?family:exact=obrien", &[]),
        ("Patient?family:exact=Berg", &[]),
        ("Patient?family:contains=erg", &["n2", "n4"]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(s.search_ids(query).await), *expected, "{query}");
    }
    // Sorted by whole names: "van der Berg" sorts under v, not under its last word.
    assert_eq!(
        s.search_ids("Patient?given=ann&_sort=family").await,
        ["n4", "n1", "n3", "n2"]
    );
}
on_both!(names_as_people_type_them);

/// A search led by a name's start with another filter (on PostgreSQL walked value by value:
/// each family name that starts with the text in row-id order) pages through every match once,
/// in the order of a search without paging, forwards and backwards, whatever the page size; a
/// patient found by two of its names is one match; `:exact` and a confined caller see only
/// theirs.
async fn names_with_another_filter_page_through_every_match(s: Server) {
    let people = [
        ("Berg", "Ann", "female"),
        ("Bergman", "Eva", "female"),
        ("Berg", "Olof", "male"),
        ("Bergstrom", "Lena", "female"),
        ("Bergman", "Karin", "female"),
        ("Nordberg", "Sara", "female"),
        ("Berg", "Bergit", "female"),
        ("Bergen", "Nils", "male"),
        ("Bergstrom", "Maja", "female"),
        ("Berg", "Ingrid", "female"),
        ("Bergman", "Per", "male"),
        ("Lind", "Berta", "female"),
    ];
    for (i, (family, given, gender)) in people.iter().enumerate() {
        put(
            &s,
            json!({"resourceType": "Patient", "id": format!("pb{i:02}"), "gender": gender,
                   "name": [{"family": family, "given": [given]}]}),
        )
        .await;
    }
    let expect = |f: &dyn Fn(&(&str, &str, &str)) -> bool| -> Vec<String> {
        people
            .iter()
            .enumerate()
            .filter(|(_, p)| f(p))
            .map(|(i, _)| format!("pb{i:02}"))
            .collect()
    };
    let women_berg =
        expect(&|(f, g, sex)| *sex == "female" && (f.starts_with("Berg") || g.starts_with("Berg")));
    assert_eq!(women_berg.len(), 7);
    let exact = expect(&|(f, _, sex)| *sex == "female" && *f == "Berg");
    let queries = [
        ("Patient?name=berg&gender=female", women_berg.clone()),
        ("Patient?gender=female&name=BERG", women_berg.clone()),
        (
            "Patient?family=berg&given=b",
            expect(&|(f, g, _)| f.starts_with("Berg") && g.starts_with('B')),
        ),
        ("Patient?family:exact=Berg&gender=female", exact),
    ];
    for (query, expected) in &queries {
        for count in [1, 2, 3, 50] {
            let ids = s.search_ids(&format!("{query}&_count={count}")).await;
            assert_eq!(ids, *expected, "{query}, _count={count}");
        }
    }
    // Backwards from the last page, by the previous links.
    let mut url = s.url("Patient?name=berg&gender=female&_count=2");
    let mut last = None;
    for _ in 0..20 {
        let r = s.system().get(&url).await;
        let next = r.body["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        match next {
            Some(next) => url = next,
            None => {
                last = Some(r);
                break;
            }
        }
    }
    let mut page = last.expect("a last page");
    let mut backwards: Vec<String> = Vec::new();
    for _ in 0..20 {
        let ids: Vec<String> = page.body["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string())
            .collect();
        backwards.splice(0..0, ids);
        let previous = page.body["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "previous"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        match previous {
            Some(previous) => page = s.system().get(&previous).await,
            None => break,
        }
    }
    assert_eq!(backwards, women_berg, "backwards");
    // A patient confined to her own record finds herself alone, on every page size.
    let (_, token) = s
        .user_with_token(ironchart_records::Role::Patient, Some("pb04"))
        .await;
    let karin = s.with_token(&token);
    for count in [1, 2, 50] {
        let ids = karin
            .search_ids(&format!("Patient?name=berg&gender=female&_count={count}"))
            .await;
        assert_eq!(ids, ["pb04"], "_count={count}");
    }
}
on_both!(names_with_another_filter_page_through_every_match);

/// References as R4 defines them: an absolute URL on our own base is the local resource, in a
/// search value and in stored data; a reference to another server is no local resource for
/// search, includes and chains; a contained reference has a value.
async fn references_as_r4_defines_them(s: Server) {
    put(
        &s,
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Local"}]}),
    )
    .await;
    let base = s.base.clone();
    let obs = |id: &str, subject: String| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "code": {"text": "pulse"}, "subject": {"reference": subject}})
    };
    put(&s, obs("local", "Patient/p1".into())).await;
    put(&s, obs("own-base", format!("{base}/Patient/p1"))).await;
    put(
        &s,
        obs("external", "http://external.example/fhir/Patient/p1".into()),
    )
    .await;
    let ids = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let encoded: String =
        form_urlencoded::byte_serialize(format!("{base}/Patient/p1").as_bytes()).collect();
    for query in [
        "Observation?subject=Patient/p1".to_string(),
        "Observation?patient=p1".to_string(),
        format!("Observation?subject={encoded}"),
        "Observation?subject:Patient.family=local".to_string(),
    ] {
        assert_eq!(
            ids(s.search_ids(&query).await),
            ["local", "own-base"],
            "{query}"
        );
    }
    let ext: String =
        form_urlencoded::byte_serialize(b"http://external.example/fhir/Patient/p1").collect();
    assert_eq!(
        s.search_ids(&format!("Observation?subject={ext}")).await,
        ["external"]
    );
    let r = s
        .get("Observation?_id=external&_include=Observation:subject")
        .await;
    assert_eq!(
        r.body["entry"].as_array().map_or(0, Vec::len),
        1,
        "{}",
        r.text
    );
    // A contained reference has a value.
    put(&s, json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Medication", "id": "m1",
                       "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}],
        "medicationReference": {"reference": "#m1"}}))
    .await;
    assert!(
        s.search_ids("MedicationRequest?medication:missing=true")
            .await
            .is_empty()
    );
    assert_eq!(
        s.search_ids("MedicationRequest?medication:missing=false")
            .await,
        ["mr1"]
    );
    // A chain is evaluated inside contained resources too — only the one the chained
    // reference names — and through references to stored resources as before.
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    put(
        &s,
        json!({"resourceType": "Medication", "id": "med-x",
        "code": {"coding": [{"system": rxnorm, "code": "860975"}]}}),
    )
    .await;
    put(
        &s,
        json!({"resourceType": "MedicationRequest", "id": "mr2", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/med-x"}}),
    )
    .await;
    put(
        &s,
        json!({"resourceType": "MedicationRequest", "id": "mr3", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "contained": [
            {"resourceType": "Medication", "id": "m2",
             "code": {"coding": [{"system": rxnorm, "code": "860975"}]}},
            {"resourceType": "Medication", "id": "m3",
             "code": {"coding": [{"system": rxnorm, "code": "197361"}]}}],
        "medicationReference": {"reference": "#m3"},
        "supportingInformation": [{"reference": "#m2"}]}),
    )
    .await;
    for query in [
        "MedicationRequest?medication.code=860975".to_string(),
        format!("MedicationRequest?medication.code={rxnorm}|860975"),
        "MedicationRequest?medication:Medication.code=860975".to_string(),
        // Another filter drives; the chain is probed per candidate.
        "MedicationRequest?_id=mr1,mr2,mr3&medication.code=860975".to_string(),
        "MedicationRequest?status=active&medication.code=860975".to_string(),
    ] {
        assert_eq!(ids(s.search_ids(&query).await), ["mr1", "mr2"], "{query}");
    }
    assert_eq!(
        s.search_ids("MedicationRequest?medication.code=197361")
            .await,
        ["mr3"]
    );
    // A contained resource is no resource of its own: not found by its type's search.
    assert_eq!(s.search_ids("Medication?code=860975").await, ["med-x"]);
}
on_both!(references_as_r4_defines_them);

/// An expected match: its id, whether it has the date, and its sort key.
type Expected = (String, bool, Option<(String, String)>);

/// How an Observation of [`population_sorted_by_date`] is dated.
#[derive(Clone, Copy)]
enum Dated {
    Not,
    Day,
    Period,
    /// A Timing of three events: one of its dates is the earliest start, another the latest end.
    Events,
}

/// Observation `i` of [`population_sorted_by_date`], dated as `how`, and its expected entry.
fn dated_observation(i: u32, how: Dated) -> (Value, Expected) {
    let id = format!("od{i:04}");
    let lab = !i.is_multiple_of(3);
    let day = (i * 37) % 700;
    let (y, rest) = (2020 + day / 336, day % 336);
    let start = format!("{y}-{:02}-{:02}", rest / 28 + 1, rest % 28 + 1);
    let mut obs = json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": if lab { "laboratory" } else { "vital-signs" }}]}],
        "code": {"text": "x"}, "subject": {"reference": "Patient/pd"}});
    let range = match how {
        Dated::Not => None,
        // A period: its start sorts ascending, its end descending.
        Dated::Period => {
            let end = format!("{}-12-31", y + 1);
            obs["effectivePeriod"] = json!({"start": start, "end": end});
            Some((start, end))
        }
        Dated::Day => {
            obs["effectiveDateTime"] = json!(start);
            Some((start.clone(), start))
        }
        Dated::Events => {
            let (earliest, latest) = (format!("{}-01-02", y - 1), format!("{}-06-15", y + 1));
            obs["effectiveTiming"] = json!({"event": [start, latest, earliest]});
            Some((earliest, latest))
        }
    };
    (obs, (id, lab, range))
}

/// Newest first over the population: a search sorted by a date reads its pages by walking the
/// date's index (once it has more than a few hundred matches). Every page, in both directions of
/// the sort, gives each match once, in key order, the matches without a date last — among them
/// resources with several dates (a Timing's events), sorted by their latest end newest first
/// and their earliest start oldest first, also after one gains several dates and another loses
/// them.
async fn population_sorted_by_date(s: Server) {
    // 1,400 Observations: laboratory and vital signs, dates with ties, some periods, some
    // with several dates, some without a date; a Patient so that they have a subject.
    put(
        &s,
        json!({"resourceType": "Patient", "id": "pd", "name": [{"family": "Dates"}]}),
    )
    .await;
    let mut entries = Vec::new();
    let mut expected: Vec<Expected> = Vec::new();
    for i in 0..1400u32 {
        let how = match i % 50 {
            7 => Dated::Not,
            11 | 31 => Dated::Period,
            23 | 43 => Dated::Events,
            _ => Dated::Day,
        };
        let (obs, e) = dated_observation(i, how);
        expected.push(e);
        entries.push(obs);
    }
    s.put_all(entries).await;
    // One loses its several dates, another gains them.
    for (i, how) in [(23u32, Dated::Day), (24, Dated::Events)] {
        let (obs, e) = dated_observation(i, how);
        put(&s, obs).await;
        expected[i as usize] = e;
    }
    for (query, lab_only, desc) in [
        (
            "Observation?category=laboratory&_sort=-date&_count=7",
            true,
            true,
        ),
        (
            "Observation?category=laboratory&_sort=date&_count=10",
            true,
            false,
        ),
        (
            "Observation?status=final&_sort=-date,_id&_count=50",
            false,
            true,
        ),
        ("Observation?_sort=-date&_count=100", false, true),
    ] {
        let got = s.search_ids(query).await;
        let want: Vec<&Expected> = expected.iter().filter(|e| !lab_only || e.1).collect();
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "{query}: a match came twice");
        assert_eq!(got.len(), want.len(), "{query}");
        // Keys in order (ties in any order), no date last.
        let key = |id: &str| {
            let e = expected.iter().find(|e| e.0 == id).unwrap();
            e.2.as_ref()
                .map(|(low, high)| if desc { high.clone() } else { low.clone() })
        };
        let keys: Vec<Option<String>> = got.iter().map(|id| key(id)).collect();
        assert_dates_in_order(&keys, desc, query);
        if query.contains(",_id") {
            // Ties by id.
            for w in got.windows(2) {
                if key(&w[0]) == key(&w[1]) {
                    assert!(w[0] < w[1], "{query}: {} then {}", w[0], w[1]);
                }
            }
        }
    }
    // The default order (walked by row id too): each match once, pages of any size.
    for (query, lab_only) in [
        ("Observation?category=laboratory&_count=10", true),
        ("Observation?status=final&_count=37", false),
        ("Observation?_count=100", false),
    ] {
        let got = s.search_ids(query).await;
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "{query}: a match came twice");
        let mut want: Vec<&str> = expected
            .iter()
            .filter(|e| !lab_only || e.1)
            .map(|e| e.0.as_str())
            .collect();
        want.sort();
        assert_eq!(unique, want, "{query}");
    }
    // Led by a date range, in the default order (on PostgreSQL read from the date's rows in
    // row-id order): each match once, in row-id order — the resources with several dates
    // matched by any of them.
    for (query, lab_only, ge, lt) in [
        (
            "Observation?date=ge2021-01-01&_count=10",
            false,
            Some("2021-01-01"),
            None,
        ),
        (
            "Observation?category=laboratory&date=lt2020-06-01&_count=7",
            true,
            None,
            Some("2020-06-01"),
        ),
        (
            "Observation?date=ge2020-03-01&date=lt2021-03-01&status=final&_count=50",
            false,
            Some("2020-03-01"),
            Some("2021-03-01"),
        ),
    ] {
        let got = s.search_ids(query).await;
        let want: Vec<&str> = expected
            .iter()
            .filter(|e| !lab_only || e.1)
            .filter(|e| match &e.2 {
                // A value matches `ge` when its end is on or after the day, `lt` when its start
                // is before it; a resource when one of its values does (its latest end, its
                // earliest start), both of a pair of ranges when a value lies in both or when
                // its values straddle them (each one tested on its own).
                Some((low, high)) => {
                    ge.is_none_or(|d| high.as_str() >= d) && lt.is_none_or(|d| low.as_str() < d)
                }
                None => false,
            })
            .map(|e| e.0.as_str())
            .collect();
        assert_eq!(got, want, "{query}");
    }
}
on_both!(population_sorted_by_date);

/// A chart newest first: a search about one patient sorted by a date alone walks that patient's
/// dates in order and stops at the page. Every page gives each match once, in key order, the
/// matches without a date last, as the same search read whole does — with bare and typed ids, a
/// resource about several patients, a Group that shares the patient's id, and after a date
/// changes or a resource is deleted.
async fn chart_sorted_by_date(s: Server) {
    for (t, id) in [("Patient", "pc"), ("Patient", "po"), ("Group", "pc")] {
        let mut v = json!({"resourceType": t, "id": id});
        if t == "Group" {
            v["type"] = json!("person");
            v["actual"] = json!(true);
        }
        put(&s, v).await;
    }
    let mut dates: HashMap<String, Option<(String, String)>> = HashMap::new();
    let mut entries = Vec::new();
    for i in 0..400u32 {
        let id = format!("oc{i:04}");
        let day = (i * 37) % 300;
        let start = format!(
            "{}-{:02}-{:02}",
            2021 + day / 112,
            (day % 112) / 28 + 1,
            day % 28 + 1
        );
        // Most are the patient's; some another patient's; some about both (in neither
        // compartment); some a Group's with the patient's id.
        let subject = match i % 20 {
            3 => "Patient/po",
            5 => "Group/pc",
            _ => "Patient/pc",
        };
        let lab = i % 3 != 0;
        let mut obs = json!({"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": if lab { "laboratory" } else { "vital-signs" }}]}],
            "code": {"text": "x"}, "subject": {"reference": subject}});
        if i % 20 == 9 {
            obs["performer"] = json!([{"reference": "Patient/po"}]);
        }
        let range = match i % 50 {
            7 | 8 => None,
            11 | 31 => {
                let end = format!("{}-12-31", 2022 + i % 3);
                obs["effectivePeriod"] = json!({"start": start, "end": end});
                Some((start, end))
            }
            _ => {
                obs["effectiveDateTime"] = json!(start);
                Some((start.clone(), start))
            }
        };
        dates.insert(id.clone(), range);
        entries.push(obs);
    }
    s.put_all(entries).await;
    chart_pages(&s, &dates).await;
    // A date moved to the newest, a resource deleted: the walk follows.
    let mut moved = s.get("Observation/oc0100").await.body;
    moved["effectiveDateTime"] = json!("2030-01-01");
    put(&s, moved).await;
    dates.insert(
        "oc0100".into(),
        Some(("2030-01-01".into(), "2030-01-01".into())),
    );
    let r = s.delete("Observation/oc0040").await;
    assert!(r.status.is_success(), "{}", r.text);
    dates.remove("oc0040");
    let r = s
        .get(&s.url("Observation?patient=pc&_sort=-date&_count=1"))
        .await;
    assert_eq!(r.body["entry"][0]["resource"]["id"], "oc0100", "{}", r.text);
    chart_pages(&s, &dates).await;
}
on_both!(chart_sorted_by_date);

/// The checks of [`chart_sorted_by_date`] over its searches.
async fn chart_pages(s: &Server, dates: &HashMap<String, Option<(String, String)>>) {
    for (filter, desc) in [
        ("patient=pc", true),
        ("patient=Patient/pc", false),
        ("subject=pc", true),
        ("subject=Group/pc", true),
        ("subject=Patient/pc&category=laboratory", true),
        ("patient=pc&category=vital-signs", false),
        ("patient=po", true),
    ] {
        let sort = if desc { "-date" } else { "date" };
        let label = format!("{filter} {sort}");
        let paged = s
            .search_ids(&format!("Observation?{filter}&_sort={sort}&_count=7"))
            .await;
        let one = s
            .search_ids(&format!("Observation?{filter}&_sort={sort}&_count=1000"))
            .await;
        // Two sort keys are not walked: the search read whole.
        let whole = s
            .search_ids(&format!(
                "Observation?{filter}&_sort={sort},_id&_count=1000"
            ))
            .await;
        assert!(!paged.is_empty(), "{label}");
        assert_eq!(paged, one, "{label}: pages against one page");
        let mut a = paged.clone();
        a.sort();
        a.dedup();
        assert_eq!(a.len(), paged.len(), "{label}: a match came twice");
        let mut b = whole.clone();
        b.sort();
        assert_eq!(a, b, "{label}: the matches");
        let key = |id: &String| {
            dates[id]
                .as_ref()
                .map(|(low, high)| if desc { high.clone() } else { low.clone() })
        };
        let keys: Vec<Option<String>> = paged.iter().map(key).collect();
        assert_eq!(
            keys,
            whole.iter().map(key).collect::<Vec<_>>(),
            "{label}: the keys' order"
        );
        assert_dates_in_order(&keys, desc, &label);
    }
}

/// Dates (as text) in the sort's order, the missing ones last.
fn assert_dates_in_order(keys: &[Option<String>], desc: bool, label: &str) {
    for w in keys.windows(2) {
        match (&w[0], &w[1]) {
            (Some(a), Some(b)) => {
                assert!(if desc { a >= b } else { a <= b }, "{label}: {a} then {b}")
            }
            (None, Some(b)) => panic!("{label}: no date before {b}"),
            _ => {}
        }
    }
}
