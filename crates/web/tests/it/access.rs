//! Object-level access: a patient's token reaches their own record and nothing of another
//! patient's, whichever way it asks (ids, searches, totals, includes, chains, history, paging,
//! Bundles); restricted records; the audit log names the patients each answer concerned; and a
//! request whose audit entry cannot be written fails.

use ironchart_records::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both;
use crate::support::{AuditTail, Caller, Database, Reply, Server, brief};

/// Patient A's family name and patient B's (unusual enough to be searched for).
const A_FAMILY: &str = "Abernathy";
const B_FAMILY: &str = "Brennholz";

/// What each patient has, by id. B's Observation `ob-focus` is about A (`focus`), and A's
/// `oa-focus` points at B (`focus`) and at B's RelatedPerson (`performer`): references across
/// the compartment boundary, for includes, revincludes and chains.
const A_OWN: &[(&str, &str)] = &[
    ("Patient", "pa"),
    ("Observation", "oa1"),
    ("Observation", "oa2"),
    ("Observation", "oa-focus"),
    ("Condition", "ca1"),
    ("Encounter", "ea1"),
    ("DocumentReference", "da1"),
];
const B_OWN: &[(&str, &str)] = &[
    ("Patient", "pb"),
    ("RelatedPerson", "rb"),
    ("Observation", "ob1"),
    ("Observation", "ob2"),
    ("Observation", "ob3"),
    ("Observation", "ob-focus"),
    ("Condition", "cb1"),
    ("Condition", "cb2"),
    ("Encounter", "eb1"),
    ("DocumentReference", "db1"),
];

fn reference(target: &str) -> Value {
    json!({ "reference": target })
}

fn observation(id: &str, patient: &str, text: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"text": text}, "subject": reference(&format!("Patient/{patient}")),
        "valueString": format!("{text} of {patient}")
    })
}

async fn put(s: &Server, v: &Value) -> Value {
    let path = format!(
        "{}/{}",
        v["resourceType"].as_str().expect("type"),
        v["id"].as_str().expect("id")
    );
    let r = s.put(&path, v).await;
    assert!(r.status.is_success(), "{path}: {}", r.text);
    r.body
}

/// Two patients' records (see [`A_OWN`] and [`B_OWN`]), a shared Practitioner, and a patient
/// user linked to A with a token: (user name, token).
async fn two_patients(s: &Server) -> (String, String) {
    let encounter = |id: &str, p: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": reference(&format!("Patient/{p}"))})
    };
    let condition = |id: &str, p: &str, text: &str| {
        json!({"resourceType": "Condition", "id": id, "code": {"text": text},
               "subject": reference(&format!("Patient/{p}"))})
    };
    let document = |id: &str, p: &str| {
        json!({"resourceType": "DocumentReference", "id": id, "status": "current",
               "subject": reference(&format!("Patient/{p}")),
               "content": [{"attachment": {"contentType": "text/plain", "data": "bm90ZXM="}}]})
    };
    let mut oa_focus = observation("oa-focus", "pa", "family history");
    oa_focus["focus"] = json!([reference("Patient/pb")]);
    oa_focus["performer"] = json!([reference("RelatedPerson/rb")]);
    let mut ob_focus = observation("ob-focus", "pb", "carer note");
    ob_focus["focus"] = json!([reference("Patient/pa")]);
    // Both patients see the same doctor (a shared, compartment-free resource).
    let mut oa2 = observation("oa2", "pa", "height");
    oa2["performer"] = json!([reference("Practitioner/dr1")]);
    let mut ob2 = observation("ob2", "pb", "height");
    ob2["performer"] = json!([reference("Practitioner/dr1")]);
    let fixtures = [
        json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
        json!({"resourceType": "Patient", "id": "pb", "name": [{"family": B_FAMILY}]}),
        json!({"resourceType": "RelatedPerson", "id": "rb", "patient": reference("Patient/pb"),
               "name": [{"family": "Brennholz-Carer"}]}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Osler"}]}),
        observation("oa1", "pa", "weight"),
        oa2,
        oa_focus,
        observation("ob1", "pb", "weight"),
        ob2,
        observation("ob3", "pb", "pulse"),
        ob_focus,
        condition("ca1", "pa", "asthma"),
        condition("cb1", "pb", "diabetes"),
        condition("cb2", "pb", "gout"),
        encounter("ea1", "pa"),
        encounter("eb1", "pb"),
        document("da1", "pa"),
        document("db1", "pb"),
    ];
    for f in &fixtures {
        put(s, f).await;
    }
    // A second version of one of B's Observations, for vread and history.
    let mut ob1 = observation("ob1", "pb", "weight");
    ob1["valueString"] = json!("corrected weight of pb");
    put(s, &ob1).await;

    let username = s.add_user("alice", &[Role::Patient], Some("pa")).await;
    let token = s.user_token(&username, None).await;
    (username, token)
}

fn match_ids(r: &Reply) -> Vec<String> {
    entry_ids(r, Some("match"))
}

fn included_ids(r: &Reply) -> Vec<String> {
    entry_ids(r, Some("include"))
}

/// `Type/id` of the entries of a Bundle (of one search mode, when given), sorted.
fn entry_ids(r: &Reply, mode: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = r.body["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| mode.is_none_or(|m| e["search"]["mode"] == m))
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or("?"),
                e["resource"]["id"].as_str().unwrap_or("?")
            )
        })
        .collect();
    ids.sort();
    ids
}

/// The OperationOutcome of a 404 with the id replaced, to compare the answer for an id that
/// exists elsewhere with the answer for one that never did.
fn shape(r: &Reply, id: &str) -> String {
    r.text.replace(id, "ID")
}

async fn another_patients_ids_are_unknown(s: Server) {
    let (username, token) = two_patients(&s).await;
    let alice = s.with_token(&token);
    let mut tail = AuditTail::new(&s, &format!("user:{username}")).await;

    // A's own record answers, so the refusals below are about whose record it is.
    for (rtype, id) in A_OWN {
        let r = alice.get(&format!("{rtype}/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{rtype}/{id}: {}", r.text);
    }
    tail.take(&s).await;

    for (rtype, id) in B_OWN {
        // (path, the same request for an id that never existed)
        let attempts = [
            (format!("{rtype}/{id}"), format!("{rtype}/never-was")),
            (
                format!("{rtype}/{id}/_history/1"),
                format!("{rtype}/never-was/_history/1"),
            ),
            (
                format!("{rtype}/{id}/_history"),
                format!("{rtype}/never-was/_history"),
            ),
        ];
        for (path, unknown_path) in attempts {
            let r = alice.get(&path).await;
            let unknown = alice.get(&unknown_path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
            assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown_path}");
            assert_eq!(
                shape(&r, id),
                shape(&unknown, "never-was"),
                "{path} answers like an unknown id"
            );
            assert!(!r.headers.contains_key("etag"), "{path}");
            assert!(!r.text.contains(B_FAMILY), "{path}");
            // Both attempts are logged, neither as a success.
            let logged = tail.take_rows(&s).await;
            assert_eq!(logged.len(), 2, "{path}: {logged:?}");
            assert_eq!(logged[0].res_id.as_deref(), Some(*id), "{path}");
            assert!(
                logged.iter().all(|r| r.outcome != "success"),
                "{path}: {:?}",
                logged.iter().map(brief).collect::<Vec<_>>()
            );
        }
    }
    // The second version of ob1 is no more reachable than the first.
    assert_eq!(
        alice.get("Observation/ob1/_history/2").await.status,
        StatusCode::NOT_FOUND
    );

    // A deleted resource of B's is unknown too, not "gone" (which would say it existed).
    assert_eq!(
        s.delete("DocumentReference/db1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("DocumentReference/db1").await.status,
        StatusCode::GONE
    );
    let r = alice.get("DocumentReference/db1").await;
    let unknown = alice.get("DocumentReference/never-was").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(shape(&r, "db1"), shape(&unknown, "never-was"));

    // An Observation filed in B's chart, then moved to A's: A sees the moved version only.
    put(&s, &observation("om", "pb", "weight")).await;
    put(&s, &observation("om", "pa", "weight")).await;
    assert_eq!(alice.get("Observation/om").await.status, StatusCode::OK);
    assert_eq!(
        alice.get("Observation/om/_history/1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice.get("Observation/om/_history/2").await.status,
        StatusCode::OK
    );
    for path in [
        "Observation/om/_history",
        "Observation/_history",
        "_history",
    ] {
        let r = alice.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert!(
            !r.text.contains("of pb"),
            "{path} shows B's version: {}",
            r.text
        );
        let entries = r.body["entry"].as_array().expect("entries");
        assert_eq!(r.body["total"], entries.len(), "{path}");
    }
}
on_both!(another_patients_ids_are_unknown);

async fn searches_and_totals_cover_only_the_own_compartment(s: Server) {
    let (username, token) = two_patients(&s).await;
    let alice = s.with_token(&token);
    let mut tail = AuditTail::new(&s, &format!("user:{username}")).await;
    // (search, what A's token finds, what the system token finds): the last column shows that
    // each search does reach B's data when the caller may see it.
    let family = |chain: &str, family: &str| format!("{chain}.family={family}");
    let table: Vec<(String, &[&str], &[&str])> = vec![
        (
            "Observation?subject=Patient/pb".into(),
            &[],
            &["ob-focus", "ob1", "ob2", "ob3"],
        ),
        (
            "Observation?subject=pb".into(),
            &[],
            &["ob-focus", "ob1", "ob2", "ob3"],
        ),
        (
            "Observation?patient=pb".into(),
            &[],
            &["ob-focus", "ob1", "ob2", "ob3"],
        ),
        (
            "Observation?patient=Patient/pb".into(),
            &[],
            &["ob-focus", "ob1", "ob2", "ob3"],
        ),
        (
            "Observation?_id=ob1,ob2,oa1".into(),
            &["oa1"],
            &["oa1", "ob1", "ob2"],
        ),
        ("Observation?focus=Patient/pa".into(), &[], &["ob-focus"]),
        (
            "Observation?code:text=weight".into(),
            &["oa1"],
            &["oa1", "ob1"],
        ),
        (
            "Observation".into(),
            &["oa-focus", "oa1", "oa2"],
            &["oa-focus", "oa1", "oa2", "ob-focus", "ob1", "ob2", "ob3"],
        ),
        ("Condition".into(), &["ca1"], &["ca1", "cb1", "cb2"]),
        ("Condition?subject=Patient/pb".into(), &[], &["cb1", "cb2"]),
        ("Encounter".into(), &["ea1"], &["ea1", "eb1"]),
        ("DocumentReference".into(), &["da1"], &["da1", "db1"]),
        ("DocumentReference?patient=pb".into(), &[], &["db1"]),
        ("Patient".into(), &["pa"], &["pa", "pb"]),
        ("Patient?_id=pb".into(), &[], &["pb"]),
        (format!("Patient?family={B_FAMILY}"), &[], &["pb"]),
        ("RelatedPerson".into(), &[], &["rb"]),
        ("RelatedPerson?patient=pb".into(), &[], &["rb"]),
        ("Practitioner".into(), &["dr1"], &["dr1"]),
        // Chains: from A's own Observation through B's Patient (`focus`) or B's RelatedPerson
        // (`performer`), and into B's record.
        (
            family("Observation?focus:Patient", B_FAMILY),
            &[],
            &["oa-focus"],
        ),
        (
            "Observation?performer:RelatedPerson.name=Brennholz-Carer".into(),
            &[],
            &["oa-focus"],
        ),
        (
            family("Observation?subject:Patient", B_FAMILY),
            &[],
            &["ob-focus", "ob1", "ob2", "ob3"],
        ),
        (
            family("Observation?subject:Patient", A_FAMILY),
            &["oa-focus", "oa1", "oa2"],
            &["oa-focus", "oa1", "oa2"],
        ),
    ];
    for (query, own, everyone) in &table {
        let sorted = |ids: Vec<String>| {
            let mut ids = ids;
            ids.sort();
            ids
        };
        assert_eq!(
            sorted(s.search_ids(query).await),
            *everyone,
            "system: {query}"
        );
        assert_eq!(sorted(alice.search_ids(query).await), *own, "A: {query}");
        let glue = if query.contains('?') { '&' } else { '?' };
        for total in ["_total=accurate", "_summary=count"] {
            let r = alice.get(&format!("{query}{glue}{total}")).await;
            assert_eq!(r.status, StatusCode::OK, "{query} {total}: {}", r.text);
            assert_eq!(r.body["total"], own.len(), "{query} {total}");
        }
        // The same search as a POST form gives the same answer.
        if let Some((rtype, params)) = query.split_once('?') {
            let posted = s
                .client
                .post(s.url(&format!("{rtype}/_search")))
                .bearer_auth(&token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(params.to_string())
                .send()
                .await
                .expect("POST _search");
            let posted = crate::support::reply(posted).await;
            assert_eq!(
                posted.status,
                StatusCode::OK,
                "POST {query}: {}",
                posted.text
            );
            let mut ids: Vec<String> = match_ids(&posted)
                .iter()
                .map(|id| id.split('/').nth(1).unwrap_or_default().to_string())
                .collect();
            ids.sort();
            assert_eq!(ids, *own, "POST {query}");
        }
        // Every search of A's is logged as concerning A alone (or nobody, when it found
        // nothing).
        for row in tail.take_rows(&s).await {
            assert_eq!(row.action, "search", "{query}");
            assert_eq!(row.outcome, "success", "{query}");
            let patients = row.patients.join(" ");
            assert!(
                patients.is_empty() || patients == "pa",
                "{query}: the log names {patients:?}"
            );
        }
    }
}
on_both!(searches_and_totals_cover_only_the_own_compartment);

async fn includes_stop_at_the_compartment(s: Server) {
    let (_, token) = two_patients(&s).await;
    let alice = s.with_token(&token);
    // (search, A's matches and includes, the system token's includes)
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "Observation?_id=oa-focus&_include=Observation:focus",
            &[],
            &["Patient/pb"],
        ),
        (
            "Observation?_id=oa-focus&_include=Observation:performer",
            &[],
            &["RelatedPerson/rb"],
        ),
        (
            "Observation?_id=oa-focus&_include=Observation:focus&_include=Observation:performer&_include=Observation:subject",
            &["Patient/pa"],
            &["Patient/pa", "Patient/pb", "RelatedPerson/rb"],
        ),
        (
            "Patient?_id=pa&_revinclude=Observation:focus",
            &[],
            &["Observation/ob-focus"],
        ),
        (
            "Practitioner?_id=dr1&_revinclude=Observation:performer",
            &["Observation/oa2"],
            &["Observation/oa2", "Observation/ob2"],
        ),
        (
            "Patient?_revinclude=Observation:subject",
            &["Observation/oa-focus", "Observation/oa1", "Observation/oa2"],
            &[
                "Observation/oa-focus",
                "Observation/oa1",
                "Observation/oa2",
                "Observation/ob-focus",
                "Observation/ob1",
                "Observation/ob2",
                "Observation/ob3",
            ],
        ),
        (
            "Patient?_revinclude=Condition:subject&_revinclude=Encounter:subject&_revinclude=DocumentReference:subject",
            &["Condition/ca1", "DocumentReference/da1", "Encounter/ea1"],
            &[
                "Condition/ca1",
                "Condition/cb1",
                "Condition/cb2",
                "DocumentReference/da1",
                "DocumentReference/db1",
                "Encounter/ea1",
                "Encounter/eb1",
            ],
        ),
    ];
    for (query, own, everyone) in table {
        let system = s.get(query).await;
        assert_eq!(system.status, StatusCode::OK, "{query}: {}", system.text);
        assert_eq!(included_ids(&system), *everyone, "system: {query}");
        let r = alice.get(query).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
        assert_eq!(included_ids(&r), *own, "A: {query}");
        for id in match_ids(&r) {
            assert!(
                id == "Practitioner/dr1" || A_OWN.iter().any(|(t, i)| id == format!("{t}/{i}")),
                "{query}: matched {id}"
            );
        }
        assert!(!r.text.contains(B_FAMILY), "{query}");
    }
}
on_both!(includes_stop_at_the_compartment);

/// Follows a Bundle's `next` links: every page's entries, and the first page's `total`.
async fn all_pages(caller: Caller<'_>, first: &str) -> (Vec<String>, Value) {
    let mut url = first.to_string();
    let mut ids = Vec::new();
    let mut total = Value::Null;
    for page in 0..100 {
        let r = caller.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text);
        if page == 0 {
            total = r.body["total"].clone();
        }
        ids.extend(entry_ids(&r, None));
        match r.body["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
        {
            Some(next) => url = next["url"].as_str().expect("next url").to_string(),
            None => break,
        }
    }
    (ids, total)
}

async fn history_and_paging_cover_only_the_own_compartment(s: Server) {
    let (username, token) = two_patients(&s).await;
    let alice = s.with_token(&token);
    let a_observations = ["Observation/oa-focus", "Observation/oa1", "Observation/oa2"];

    // Type history: A's three Observations, one version each (B's ob1 has two).
    for first in ["Observation/_history", "Observation/_history?_count=1"] {
        let (mut ids, total) = all_pages(alice, first).await;
        ids.sort();
        assert_eq!(ids, a_observations, "{first}");
        assert_eq!(total, 3, "{first}");
    }
    // System history: A's record and the shared directory, nothing of B's.
    let mut expected: Vec<String> = A_OWN.iter().map(|(t, i)| format!("{t}/{i}")).collect();
    expected.push("Practitioner/dr1".into());
    expected.sort();
    for first in ["_history", "_history?_count=2"] {
        let (mut ids, total) = all_pages(alice, first).await;
        ids.sort();
        assert_eq!(ids, expected, "{first}");
        assert_eq!(total, expected.len(), "{first}");
    }
    let (everything, _) = all_pages(s.system(), "_history?_count=5").await;
    assert_eq!(
        everything.len(),
        A_OWN.len() + B_OWN.len() + 1 + 1,
        "system history"
    );

    // Search paging: page by page, only A's, and the total counts only A's.
    let (ids, total) = all_pages(alice, "Observation?_count=1&_total=accurate").await;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(total, 3);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, a_observations);

    // A cursor made for the system token, pointing into B's data, shows A only A's.
    let system_page = s.get("Observation?_count=2&_sort=-_id").await;
    let next = system_page.body["link"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
        .expect("a next page")["url"]
        .as_str()
        .expect("url")
        .to_string();
    let (ids, _) = all_pages(alice, &next).await;
    assert!(
        ids.iter().all(|id| a_observations.contains(&id.as_str())),
        "{ids:?}"
    );

    // History is logged with the patients it returned: A's only.
    let query = ironchart_records::AuditFilter {
        actor: Some(format!("user:{username}")),
        actions: vec![
            ironchart_records::AuditAction::History,
            ironchart_records::AuditAction::Search,
        ],
        limit: 1000,
        ..Default::default()
    };
    let rows = s
        .records
        .audit_entries(&ironchart_records::test_support::operator(), &query)
        .await
        .expect("log");
    assert!(rows.iter().any(|r| r.action == "history"));
    for row in rows {
        let patients = row.patients.join(" ");
        assert!(patients == "pa" || patients.is_empty(), "{}", brief(&row));
    }
}
on_both!(history_and_paging_cover_only_the_own_compartment);

async fn bundles_cannot_reach_another_patient(s: Server) {
    let (username, token) = two_patients(&s).await;
    let alice = s.with_token(&token);
    let mut tail = AuditTail::new(&s, &format!("user:{username}")).await;
    let ob1 = s.get("Observation/ob1").await.body;
    let mut changed = ob1.clone();
    changed["valueString"] = json!("changed by A");

    // Reads inside a transaction or a batch: B's resources are unknown, A's are there.
    for kind in ["transaction", "batch"] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [
            {"request": {"method": "GET", "url": "Observation/ob1"}},
            {"request": {"method": "GET", "url": "Observation/ob1/_history/1"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/pb"}},
            {"request": {"method": "GET", "url": "Patient/pb"}},
            {"request": {"method": "GET", "url": "Patient/pa"}}
        ]});
        let r = alice.post("", &bundle).await;
        assert_eq!(r.status, StatusCode::OK, "{kind}: {}", r.text);
        let statuses: Vec<&str> = r.body["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            statuses,
            [
                "404 Not Found",
                "404 Not Found",
                "200 OK",
                "404 Not Found",
                "200 OK"
            ],
            "{kind}"
        );
        assert_eq!(r.body["entry"][2]["resource"]["total"], 0, "{kind}");
        assert!(!r.text.contains(B_FAMILY), "{kind}");
        assert!(!r.text.contains("of pb"), "{kind}");
        let logged = tail.take(&s).await;
        assert_eq!(logged.len(), 5, "{kind}: each entry is logged: {logged:?}");
    }

    // Writes: a patient has no write scopes; nothing is written, the refusal is logged.
    let writes = [
        json!({"request": {"method": "PUT", "url": "Observation/ob1"}, "resource": changed}),
        json!({"request": {"method": "POST", "url": "Observation"},
               "resource": observation("new", "pb", "forged")}),
        json!({"request": {"method": "DELETE", "url": "Observation/ob2"}}),
        json!({"request": {"method": "POST", "url": "Observation"},
               "resource": observation("new", "pa", "self-reported")}),
    ];
    for entry in &writes {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry]});
        let r = alice.post("", &bundle).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{entry}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
        assert_eq!(
            tail.take(&s).await,
            ["transaction -/- denied []"],
            "{entry}"
        );
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [entry]});
        let r = alice.post("", &batch).await;
        assert_eq!(r.status, StatusCode::OK, "{entry}: {}", r.text);
        assert_eq!(
            r.body["entry"][0]["response"]["status"], "403 Forbidden",
            "{entry}"
        );
        let logged = tail.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{entry}");
        assert_eq!(logged[0].outcome, "denied", "{entry}");
    }
    // Nothing changed.
    let after = s.get("Observation/ob1").await.body;
    assert_eq!(after, ob1);
    assert_eq!(s.get("Observation/ob2").await.status, StatusCode::OK);
    assert_eq!(
        s.search_ids("Observation?code:text=forged").await.len()
            + s.search_ids("Observation?code:text=self-reported")
                .await
                .len(),
        0
    );
}
on_both!(bundles_cannot_reach_another_patient);

const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

fn labelled(mut v: Value, code: &str) -> Value {
    v["meta"] = json!({"security": [{"system": CONFIDENTIALITY, "code": code}]});
    v
}

async fn restricted_records_are_suppressed(s: Server) {
    let (_, alice_token) = two_patients(&s).await;
    put(&s, &labelled(observation("or1", "pa", "hiv test"), "R")).await;
    put(&s, &labelled(observation("ov1", "pa", "therapy note"), "V")).await;
    put(
        &s,
        &labelled(
            json!({"resourceType": "Patient", "id": "pr", "name": [{"family": "Hidden"}]}),
            "R",
        ),
    )
    .await;
    put(&s, &observation("op1", "pr", "blood pressure")).await;
    let (physician, physician_token) = s.user_with_token(Role::Physician, None).await;
    let (_, nurse_token) = s.user_with_token(Role::Nurse, None).await;
    let (_, front_desk_token) = s.user_with_token(Role::FrontDesk, None).await;
    let (_, billing_token) = s.user_with_token(Role::Billing, None).await;
    let doctor = s.with_token(&physician_token);
    let mut tail = AuditTail::new(&s, &format!("user:{physician}")).await;

    // A clinician is told the record is there and restricted (to break the glass); others are
    // told nothing.
    let cases: &[(&str, &str, StatusCode, Option<&str>)] = &[
        (
            &physician_token,
            "Observation/or1",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &physician_token,
            "Observation/ov1",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &physician_token,
            "Observation/or1/_history/1",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &physician_token,
            "Observation/or1/_history",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &physician_token,
            "Patient/pr",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &nurse_token,
            "Observation/or1",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        (
            &nurse_token,
            "Patient/pr",
            StatusCode::FORBIDDEN,
            Some("suppressed"),
        ),
        // A nurse may not break the glass on a very restricted record: nothing to tell her.
        (
            &nurse_token,
            "Observation/ov1",
            StatusCode::NOT_FOUND,
            Some("not-found"),
        ),
        (
            &front_desk_token,
            "Patient/pr",
            StatusCode::NOT_FOUND,
            Some("not-found"),
        ),
        (
            &billing_token,
            "Patient/pr",
            StatusCode::NOT_FOUND,
            Some("not-found"),
        ),
        // The patient sees their own restricted record, not the very restricted one.
        (&alice_token, "Observation/or1", StatusCode::OK, None),
        (
            &alice_token,
            "Observation/ov1",
            StatusCode::NOT_FOUND,
            Some("not-found"),
        ),
        (&s.token, "Observation/or1", StatusCode::OK, None),
        (&s.token, "Observation/ov1", StatusCode::OK, None),
        (&s.token, "Patient/pr", StatusCode::OK, None),
    ];
    for (token, path, status, code) in cases {
        let r = s.with_token(token).get(path).await;
        assert_eq!(r.status, *status, "{path}: {}", r.text);
        if let Some(code) = code {
            assert_eq!(r.body["issue"][0]["code"], *code, "{path}: {}", r.text);
            assert!(
                !r.text.contains("hiv") && !r.text.contains("therapy"),
                "{path}"
            );
        }
    }
    let denied: Vec<String> = tail
        .take_rows(&s)
        .await
        .iter()
        .map(|r| format!("{} {}", r.action, r.outcome))
        .collect();
    assert_eq!(
        denied,
        [
            "read denied",
            "read denied",
            "vread denied",
            "history denied",
            "read denied"
        ],
        "the physician's refused reads are logged as denied"
    );

    // Searches, totals, includes and chains leave the restricted records out.
    let a_obs = ["oa-focus", "oa1", "oa2"];
    for query in [
        "Observation?subject=Patient/pa",
        "Observation?subject=Patient/pa&_total=accurate",
        "Observation?patient=pa&_count=1",
        // A lead and a probe, one match a page: the hidden rows are passed over inside the
        // page's statement, not after it.
        "Observation?patient=pa&status=final&_count=1",
        "Observation?status=final&subject=pa&_count=2",
        // Led by the ids, one a page.
        "Observation?_id=oa-focus,oa1,oa2,or1,ov1&_count=1",
        "Observation?_id=oa-focus,oa1,oa2,or1,ov1,op1&subject=pa&_count=2",
    ] {
        let mut ids = doctor.search_ids(query).await;
        ids.sort();
        assert_eq!(ids, a_obs, "physician: {query}");
        let mut all = s.search_ids(query).await;
        all.sort();
        assert_eq!(
            all,
            ["oa-focus", "oa1", "oa2", "or1", "ov1"],
            "system: {query}"
        );
    }
    let counted = doctor
        .get("Observation?subject=Patient/pa&_total=accurate")
        .await;
    assert_eq!(counted.body["total"], 3);
    let summary = doctor
        .get("Observation?subject=Patient/pa&_summary=count")
        .await;
    assert_eq!(summary.body["total"], 3);
    let revincluded = doctor
        .get("Patient?_id=pa&_revinclude=Observation:subject")
        .await;
    assert_eq!(
        included_ids(&revincluded),
        ["Observation/oa-focus", "Observation/oa1", "Observation/oa2"]
    );
    assert!(doctor.search_ids("Patient?family=Hidden").await.is_empty());
    // pr's own Observation is not labelled, but a chain must not look through pr to find it.
    let chained = "Observation?subject:Patient.family=Hidden";
    assert_eq!(s.search_ids(chained).await, ["op1"]);
    assert!(doctor.search_ids(chained).await.is_empty());
    assert_eq!(doctor.get("Observation/op1").await.status, StatusCode::OK);
    let include = "Observation?_id=op1&_include=Observation:subject";
    assert_eq!(included_ids(&s.get(include).await), ["Patient/pr"]);
    assert!(included_ids(&doctor.get(include).await).is_empty());
    let (history, total) = all_pages(doctor, "Observation/_history").await;
    assert!(
        !history
            .iter()
            .any(|id| id.ends_with("/or1") || id.ends_with("/ov1")),
        "{history:?}"
    );
    assert_eq!(total, history.len());
    // The patient's own search shows their R record and hides the V one.
    let mut own = s.with_token(&alice_token).search_ids("Observation").await;
    own.sort();
    assert_eq!(own, ["oa-focus", "oa1", "oa2", "or1"]);
    // Writes are refused too: a physician cannot overwrite or delete what she may not see.
    let or1 = s.get("Observation/or1").await.body;
    let r = doctor.put("Observation/or1", &or1).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body["issue"][0]["code"], "suppressed");
    let r = doctor.delete("Observation/or1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(s.get("Observation/or1").await.body, or1, "unchanged");
}
on_both!(restricted_records_are_suppressed);

/// A chart newest first (and oldest first) passes over the records the caller may not see, in
/// every part of the walk: the dated records, page by page, and those without a date.
async fn restricted_records_are_left_out_of_a_chart_by_date(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pw", "name": [{"family": "Walk"}]}),
    )
    .await;
    let dated = |id: &str, day: u32| {
        let mut o = observation(id, "pw", "weight");
        o["effectiveDateTime"] = json!(format!("2024-03-{day:02}"));
        o
    };
    put(&s, &dated("w1", 1)).await;
    put(&s, &labelled(dated("w2", 2), "R")).await;
    put(&s, &dated("w3", 3)).await;
    put(&s, &labelled(dated("w4", 4), "V")).await;
    put(&s, &dated("w5", 5)).await;
    put(&s, &observation("w6", "pw", "note")).await;
    put(&s, &labelled(observation("w7", "pw", "note"), "R")).await;
    let (_, physician_token) = s.user_with_token(Role::Physician, None).await;
    let doctor = s.with_token(&physician_token);
    for (query, seen, all) in [
        (
            "Observation?patient=pw&_sort=-date&_count=1",
            ["w5", "w3", "w1", "w6"].as_slice(),
            ["w5", "w4", "w3", "w2", "w1", "w6", "w7"].as_slice(),
        ),
        (
            "Observation?patient=pw&code:text=weight&_sort=date&_count=2",
            &["w1", "w3", "w5"],
            &["w1", "w2", "w3", "w4", "w5"],
        ),
    ] {
        assert_eq!(doctor.search_ids(query).await, seen, "physician: {query}");
        assert_eq!(s.search_ids(query).await, all, "system: {query}");
    }
}
on_both!(restricted_records_are_left_out_of_a_chart_by_date);

/// Searches over the population — newest first (walked by the date's index), by a code with
/// its system (read from the code's index in row-id order), by a status (walked by row id), by
/// a date range in row-id order (walked by the date's rows on PostgreSQL) —
/// pass over the records the caller may not see, page by page, once there are enough records
/// for the walks to be taken (more than 500 rows of the leading filter).
async fn restricted_records_are_left_out_of_population_searches(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pp", "name": [{"family": "Many"}]}),
    )
    .await;
    let mut entries = Vec::new();
    let mut seen = Vec::new();
    let mut all = Vec::new();
    // Without a date, or dated before July: left out by the date range below.
    let mut before_july = Vec::new();
    for i in 0..640u32 {
        let id = format!("pw{i:04}");
        let mut o = observation(&id, "pp", "weight");
        o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "29463-7"}]});
        // Every ninth without a date; dates with ties.
        if i % 9 != 4 {
            o["effectiveDateTime"] = json!(format!("2024-{:02}-{:02}", i % 12 + 1, i % 7 + 1));
        }
        if i % 9 == 4 || i % 12 + 1 < 7 {
            before_july.push(id.clone());
        }
        // Every fifth restricted, every seventh very restricted.
        let label = match (i % 5, i % 7) {
            (2, _) => Some("R"),
            (_, 3) => Some("V"),
            _ => None,
        };
        if let Some(code) = label {
            o = labelled(o, code);
        } else {
            seen.push(id.clone());
        }
        all.push(id.clone());
        entries.push(o);
    }
    s.put_all(entries).await;
    let (_, physician_token) = s.user_with_token(Role::Physician, None).await;
    let doctor = s.with_token(&physician_token);
    seen.sort();
    all.sort();
    for query in [
        "Observation?_sort=-date&_count=7",
        "Observation?_sort=date&_count=50",
        "Observation?status=final&_sort=-date&_count=9",
        "Observation?code=http://loinc.org|29463-7&_count=11",
        "Observation?code=http://loinc.org|29463-7&status=final&_count=3",
        "Observation?status=final&_count=13",
        // Led by a date range, in row-id order (PostgreSQL reads the date's rows in that order).
        "Observation?date=ge2024-07-01&_count=8",
        "Observation?date=ge2024-07-01&status=final&_count=5",
    ] {
        // In the same order as the system's answer, less what the physician may not see.
        let everything = s.search_ids(query).await;
        let visible: Vec<String> = everything
            .iter()
            .filter(|id| seen.binary_search(id).is_ok())
            .cloned()
            .collect();
        assert_eq!(
            doctor.search_ids(query).await,
            visible,
            "physician: {query}"
        );
        for (caller, want, who) in [(doctor, &seen, "physician"), (s.system(), &all, "system")] {
            // The date range leaves out those without a date or dated before it.
            let want: Vec<String> = want
                .iter()
                .filter(|id| !query.contains("date=ge") || !before_july.contains(id))
                .cloned()
                .collect();
            let want = &want;
            let got = caller.search_ids(query).await;
            let mut sorted = got.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                got.len(),
                "{who}: {query}: a match came twice"
            );
            assert_eq!(&sorted, want, "{who}: {query}");
        }
    }
}
on_both!(restricted_records_are_left_out_of_population_searches);

/// The labelled versions of a restricted record stay restricted once it is deleted. (Today a
/// deletion stores sensitivity 0, and vread and history judge every version by the newest one's
/// sensitivity, so they serve the labelled versions to every clinician.)
async fn restricted_versions_stay_restricted_after_a_delete(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
    )
    .await;
    put(&s, &labelled(observation("or1", "pa", "hiv test"), "R")).await;
    let (_, nurse_token) = s.user_with_token(Role::Nurse, None).await;
    let nurse = s.with_token(&nurse_token);
    assert_eq!(
        nurse.get("Observation/or1/_history/1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.delete("Observation/or1").await.status,
        StatusCode::NO_CONTENT
    );
    let vread = nurse.get("Observation/or1/_history/1").await;
    assert!(
        !vread.text.contains("hiv"),
        "after a delete, the restricted version 1 is served: {} {}",
        vread.status,
        vread.text
    );
    let history = nurse.get("Observation/_history").await;
    assert!(
        !history.text.contains("hiv"),
        "after a delete, type history shows the restricted version: {}",
        history.text
    );
}
on_both!(restricted_versions_stay_restricted_after_a_delete);

/// Break-the-glass lifts labels only up to the role's ceiling: a nurse's grant opens R records
/// but never V ones, in reads, vreads, searches, counts, includes and history alike; a
/// physician's opens both.
async fn a_grant_opens_no_more_than_the_role_allows(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
    )
    .await;
    put(&s, &labelled(observation("or1", "pa", "hiv test"), "R")).await;
    put(&s, &labelled(observation("ov1", "pa", "therapy note"), "V")).await;
    put(&s, &observation("on1", "pa", "blood pressure")).await;
    let (_, nurse_token) = s.user_with_token(Role::Nurse, None).await;
    let (_, physician_token) = s.user_with_token(Role::Physician, None).await;
    for token in [&nurse_token, &physician_token] {
        let actor = s.records.authenticate(token).await.unwrap();
        s.records
            .break_glass(&actor, "pa", "unconscious in resus, no history", 30)
            .await
            .unwrap();
    }
    let nurse = s.with_token(&nurse_token);
    assert_eq!(nurse.get("Observation/or1").await.status, StatusCode::OK);
    for path in ["Observation/ov1", "Observation/ov1/_history/1"] {
        let r = nurse.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert!(!r.text.contains("therapy"));
    }
    let mut ids = nurse.search_ids("Observation?patient=pa").await;
    ids.sort();
    assert_eq!(ids, ["on1", "or1"]);
    let counted = nurse.get("Observation?patient=pa&_summary=count").await;
    assert_eq!(counted.body["total"], 2);
    let revincluded = nurse
        .get("Patient?_id=pa&_revinclude=Observation:subject")
        .await;
    assert_eq!(
        included_ids(&revincluded),
        ["Observation/on1", "Observation/or1"]
    );
    for path in [
        "Observation/_history",
        "_history",
        "Observation/ov1/_history",
    ] {
        let r = nurse.get(path).await;
        assert!(!r.text.contains("therapy"), "{path}: {}", r.text);
    }
    let doctor = s.with_token(&physician_token);
    assert_eq!(doctor.get("Observation/ov1").await.status, StatusCode::OK);
    let mut ids = doctor.search_ids("Observation?patient=pa").await;
    ids.sort();
    assert_eq!(ids, ["on1", "or1", "ov1"]);
}
on_both!(a_grant_opens_no_more_than_the_role_allows);

/// A label protects the versions before it for good: neither a later unlabelled version, nor a
/// deletion and re-creation, opens them; and nobody may re-create a deleted record they could
/// not see.
async fn a_later_write_opens_no_earlier_version(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
    )
    .await;
    put(&s, &observation("o1", "pa", "first reading")).await;
    put(&s, &labelled(observation("o1", "pa", "hiv test"), "R")).await;
    let (_, nurse_token) = s.user_with_token(Role::Nurse, None).await;
    let nurse = s.with_token(&nurse_token);
    let closed = |r: &Reply| r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND;
    for v in [1, 2] {
        let r = nurse.get(&format!("Observation/o1/_history/{v}")).await;
        assert!(closed(&r), "version {v} before: {} {}", r.status, r.text);
    }
    assert_eq!(
        s.delete("Observation/o1").await.status,
        StatusCode::NO_CONTENT
    );
    // The nurse may not take the deleted id over.
    let r = nurse
        .put("Observation/o1", &observation("o1", "pa", "new reading"))
        .await;
    assert!(
        closed(&r),
        "re-created by the nurse: {} {}",
        r.status,
        r.text
    );
    // The operator re-creates it without a label; then lowers nothing of the past.
    put(&s, &observation("o1", "pa", "new reading")).await;
    assert_eq!(nurse.get("Observation/o1").await.status, StatusCode::OK);
    for v in [1, 2, 3] {
        let r = nurse.get(&format!("Observation/o1/_history/{v}")).await;
        assert!(closed(&r), "version {v} after: {} {}", r.status, r.text);
        assert!(!r.text.contains("hiv") && !r.text.contains("first reading"));
    }
    for path in [
        "Observation/_history",
        "_history",
        "Observation/o1/_history",
    ] {
        let r = nurse.get(path).await;
        assert!(
            !r.text.contains("hiv") && !r.text.contains("first reading"),
            "{path}: {}",
            r.text
        );
    }
    // A later `N` label lowers the current version only.
    put(&s, &labelled(observation("o1", "pa", "newer reading"), "N")).await;
    let r = nurse.get("Observation/o1/_history/2").await;
    assert!(closed(&r), "{}", r.text);
}
on_both!(a_later_write_opens_no_earlier_version);

/// A version filed under the wrong patient and then moved to the right one is no longer the
/// first patient's: not by vread, nor instance, type or system history.
async fn a_moved_record_leaves_the_first_patients_compartment(s: Server) {
    let (_, alice_token) = two_patients(&s).await;
    put(&s, &observation("om", "pa", "misfiled result")).await;
    let alice = s.with_token(&alice_token);
    assert_eq!(alice.get("Observation/om").await.status, StatusCode::OK);
    put(&s, &observation("om", "pb", "misfiled result")).await;
    for path in [
        "Observation/om",
        "Observation/om/_history/1",
        "Observation/om/_history/2",
        "Observation/om/_history",
    ] {
        let r = alice.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    for path in ["Observation/_history", "_history"] {
        let r = alice.get(path).await;
        assert!(!r.text.contains("misfiled"), "{path}: {}", r.text);
    }
}
on_both!(a_moved_record_leaves_the_first_patients_compartment);

/// Confidentiality labels count in every standard form of their system and code; a label that
/// cannot be read is refused (422) instead of being stored as open.
async fn confidentiality_labels_in_every_form(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
    )
    .await;
    let (_, nurse_token) = s.user_with_token(Role::Nurse, None).await;
    let nurse = s.with_token(&nurse_token);
    let forms = [
        ("urn:oid:2.16.840.1.113883.5.25", "R"),
        ("http://hl7.org/fhir/v3/Confidentiality", "R"),
        (
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality/",
            "R",
        ),
        (
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "r",
        ),
        (
            "http://terminology.hl7.org/CodeSystem/V3-Confidentiality",
            "V",
        ),
    ];
    for (n, (system, code)) in forms.iter().enumerate() {
        let id = format!("lab{n}");
        let mut v = observation(&id, "pa", "hiv test");
        v["meta"] = json!({"security": [{"system": system, "code": code}]});
        put(&s, &v).await;
        let r = nurse.get(&format!("Observation/{id}")).await;
        assert_ne!(r.status, StatusCode::OK, "{system} {code}: {}", r.text);
        assert!(!r.text.contains("hiv"));
    }
    for label in [
        json!({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "X"}),
        json!({"system": "urn:oid:2.16.840.1.113883.5.25", "code": "restricted"}),
        json!({"code": "R"}),
    ] {
        let mut v = observation("bad", "pa", "hiv test");
        v["meta"] = json!({"security": [label]});
        let r = s.put("Observation/bad", &v).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{label}: {}",
            r.text
        );
        assert_eq!(
            r.body["issue"][0]["expression"][0],
            "Observation.meta.security[0]"
        );
    }
    assert_eq!(s.get("Observation/bad").await.status, StatusCode::NOT_FOUND);
}
on_both!(confidentiality_labels_in_every_form);

/// The front desk sees when, where and for whom an Encounter is, not why: reasons, diagnoses
/// and the narrative are removed from reads, searches and history (the resource says it was
/// redacted), and searching or sorting by them is refused. Clinicians and billing see them.
async fn the_front_desk_sees_no_encounter_reasons(s: Server) {
    two_patients(&s).await;
    let why = json!({"resourceType": "Encounter", "id": "e-why", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": reference("Patient/pa"),
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">chest pain</div>"},
        "reasonCode": [{"text": "chest pain"}],
        "diagnosis": [{"condition": {"reference": "Condition/ca1", "display": "angina pectoris"}}]});
    put(&s, &why).await;
    let (_, desk_token) = s.user_with_token(Role::FrontDesk, None).await;
    let desk = s.with_token(&desk_token);
    for path in [
        "Encounter/e-why",
        "Encounter/e-why/_history/1",
        "Encounter/e-why/_history",
        "Encounter?patient=pa",
        "Encounter/_history",
    ] {
        let r = desk.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        for secret in ["chest pain", "angina", "reasonCode", "diagnosis"] {
            assert!(
                !r.text.contains(secret),
                "{path} shows {secret}: {}",
                r.text
            );
        }
    }
    let read = desk.get("Encounter/e-why").await;
    assert_eq!(read.body["meta"]["security"][0]["code"], "REDACTED");
    assert_eq!(read.body["status"], "finished");
    for path in [
        "Encounter?reason-code:text=chest",
        "Encounter?diagnosis=Condition/ca1",
        "Encounter?diagnosis:missing=false",
        "Encounter?_sort=reason-code",
    ] {
        let r = desk.get(path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
    }
    let (_, doctor_token) = s.user_with_token(Role::Physician, None).await;
    let r = s.with_token(&doctor_token).get("Encounter/e-why").await;
    assert!(r.text.contains("chest pain") && r.text.contains("angina"));
    let (_, billing_token) = s.user_with_token(Role::Billing, None).await;
    let r = s.with_token(&billing_token).get("Encounter/e-why").await;
    assert!(
        r.text.contains("angina"),
        "billing codes diagnoses: {}",
        r.text
    );
}
on_both!(the_front_desk_sees_no_encounter_reasons);

/// A resource about several patients (a Group's members, a Coverage whose subscriber is another
/// patient) is in none of their compartments: no patient learns another's identity through it.
async fn shared_resources_reveal_no_other_patient(s: Server) {
    let (_, alice_token) = two_patients(&s).await;
    put(
        &s,
        &json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": reference("Patient/pa")}, {"entity": reference("Patient/pb")}]}),
    )
    .await;
    put(
        &s,
        &json!({"resourceType": "Coverage", "id": "cov-both", "status": "active",
        "subscriber": reference("Patient/pb"), "beneficiary": reference("Patient/pa"),
        "payor": [{"display": "Acme"}]}),
    )
    .await;
    put(
        &s,
        &json!({"resourceType": "Coverage", "id": "cov-own", "status": "active",
        "subscriber": reference("Patient/pa"), "beneficiary": reference("Patient/pa"),
        "payor": [{"display": "Acme"}]}),
    )
    .await;
    let alice = s.with_token(&alice_token);
    for path in ["Group/g1", "Coverage/cov-both"] {
        let r = alice.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    assert_eq!(alice.get("Coverage/cov-own").await.status, StatusCode::OK);
    assert_eq!(alice.search_ids("Coverage").await, ["cov-own"]);
    assert!(alice.search_ids("Group").await.is_empty());
    let r = alice
        .get("Patient?_id=pa&_revinclude=Group:member&_revinclude=Coverage:beneficiary")
        .await;
    assert!(!r.text.contains("Patient/pb"), "{}", r.text);
    // Clinicians see them.
    assert_eq!(s.get("Group/g1").await.status, StatusCode::OK);
}
on_both!(shared_resources_reveal_no_other_patient);

async fn the_log_names_the_patients_an_answer_concerned(s: Server) {
    let (username, alice_token) = two_patients(&s).await;
    let (physician, physician_token) = s.user_with_token(Role::Physician, None).await;
    let doctor = s.with_token(&physician_token);
    let alice = s.with_token(&alice_token);
    let mut doctor_log = AuditTail::new(&s, &format!("user:{physician}")).await;
    let mut alice_log = AuditTail::new(&s, &format!("user:{username}")).await;

    // (request, the patients of its entry): matches and includes both count.
    let table: &[(&str, &str)] = &[
        ("Observation", "pa pb"),
        ("Observation?subject=Patient/pa", "pa"),
        ("Observation?subject=Patient/pb", "pb"),
        ("Observation?_id=oa-focus", "pa"),
        (
            "Observation?_id=oa-focus&_include=Observation:focus",
            "pa pb",
        ),
        (
            "Observation?_id=oa-focus&_include=Observation:performer",
            "pa pb",
        ),
        ("Patient?_id=pa&_revinclude=Observation:focus", "pa pb"),
        ("Observation?code:text=nothing-like-this", ""),
        ("Practitioner", ""),
        ("Condition/cb1", "pb"),
        ("Observation/ob1/_history/1", "pb"),
        ("Observation/ob1/_history", "pb"),
    ];
    for (path, patients) in table {
        let r = doctor.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let logged = doctor_log.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{path}: {logged:?}");
        assert_eq!(logged[0].outcome, "success", "{path}");
        assert_eq!(
            logged[0].patients.join(" "),
            *patients,
            "{path}: {}",
            brief(&logged[0])
        );
    }
    // The same searches by A's token name A alone (or nobody).
    let searches = table
        .iter()
        .filter(|(path, _)| !path.split('?').next().unwrap_or_default().contains('/'));
    for (path, _) in searches {
        let r = alice.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let logged = alice_log.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{path}");
        let patients = logged[0].patients.join(" ");
        assert!(
            patients == "pa" || patients.is_empty(),
            "{path}: {patients}"
        );
    }
    // An auditor can ask the log who looked at B.
    let query = ironchart_records::AuditFilter {
        patient: ironchart_fhir::PatientId::parse("pb"),
        actor: Some(format!("user:{physician}")),
        limit: 100,
        ..Default::default()
    };
    let about_b = s
        .records
        .audit_entries(&ironchart_records::test_support::operator(), &query)
        .await
        .expect("log");
    assert_eq!(
        about_b.len(),
        table.iter().filter(|(_, p)| p.contains("pb")).count()
    );
}
on_both!(the_log_names_the_patients_an_answer_concerned);

/// Answers that only count, total beyond the page, find nothing about a named patient, or say
/// "more than one" still name the patients they are about, so that `AuditEvent?patient=X`
/// shows the access.
async fn counts_and_refusals_name_their_patients(s: Server) {
    two_patients(&s).await;
    let (physician, physician_token) = s.user_with_token(Role::Physician, None).await;
    let doctor = s.with_token(&physician_token);
    let mut log = AuditTail::new(&s, &format!("user:{physician}")).await;
    let chained = format!("Observation?subject:Patient.family={A_FAMILY}&_summary=count");
    let table: Vec<(String, &str)> = vec![
        ("Condition?patient=pa&_summary=count".into(), "pa"),
        (
            "Condition?patient=pa&code:text=nothing-like-this&_summary=count".into(),
            "pa",
        ),
        (
            "Condition?subject=Patient/pb&code:text=nothing-like-this".into(),
            "pb",
        ),
        ("Observation?_count=0".into(), "pa pb"),
        ("Observation?_summary=count".into(), "pa pb"),
        ("Observation?_count=1&_total=accurate".into(), "pa pb"),
        (chained, "pa"),
        ("Patient?_id=pb&_summary=count".into(), "pb"),
    ];
    for (path, patients) in &table {
        let r = doctor.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let logged = log.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{path}: {logged:?}");
        assert_eq!(
            logged[0].patients.join(" "),
            *patients,
            "{path}: {}",
            brief(&logged[0])
        );
    }
    // A conditional create that matches several records is refused, and names their patient.
    let r = doctor
        .send(
            reqwest::Method::POST,
            "Observation",
            Some(&observation("ignored", "pa", "new")),
            &[("if-none-exist", "subject=Patient/pa")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    let logged = log.take_rows(&s).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(brief(&logged[0]), "create Observation/- failure [pa]");
}
on_both!(counts_and_refusals_name_their_patients);

/// A count names the patients whose records it counted as they are now (on PostgreSQL it reads
/// them from the matches' index rows): a record moved to another patient is counted as that
/// patient's, by everyone and in each patient's own compartment, and a deleted one as nobody's.
async fn a_count_names_whose_records_they_are_now(s: Server) {
    let (_, alice_token) = two_patients(&s).await;
    let alice = s.with_token(&alice_token);
    let (physician, physician_token) = s.user_with_token(Role::Physician, None).await;
    let doctor = s.with_token(&physician_token);
    let mut log = AuditTail::new(&s, &format!("user:{physician}")).await;
    let weight = |patient: &str| {
        json!({"resourceType": "Observation", "id": "moving", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "subject": reference(&format!("Patient/{patient}"))})
    };
    let count = "Observation?code=http://loinc.org|29463-7&status=final&_summary=count";
    for (patient, alice_sees) in [("pa", 1), ("pb", 0)] {
        put(&s, &weight(patient)).await;
        let r = doctor.get(count).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["total"], 1, "{patient}");
        let logged = log.take_rows(&s).await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(
            logged[0].patients.join(" "),
            patient,
            "{}",
            brief(&logged[0])
        );
        let r = alice.get(count).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["total"], alice_sees, "alice, {patient}");
    }
    let r = s.delete("Observation/moving").await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = doctor.get(count).await;
    assert_eq!(r.body["total"], 0, "{}", r.text);
    let logged = log.take_rows(&s).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].patients.is_empty(), "{}", brief(&logged[0]));
}
on_both!(a_count_names_whose_records_they_are_now);

/// What a request names is checked before it is audited: a type or id outside the FHIR grammar
/// is not copied into the log, so requests cannot make its entries large.
async fn the_log_keeps_no_oversized_input(s: Server) {
    let (username, alice_token) = two_patients(&s).await;
    let alice = s.with_token(&alice_token);
    let mut log = AuditTail::new(&s, &format!("user:{username}")).await;
    let long = "A".repeat(60_000);
    for path in [
        format!("Patient/{long}"),
        format!("{long}/x"),
        format!("Observation/{long}/_history/1"),
        format!("Observation/{long}/_history"),
        "Patient/bad$id".to_string(),
    ] {
        let r = alice.get(&path).await;
        assert!(r.status.is_client_error(), "{}: {}", r.status, r.text);
    }
    let rows = log.take_rows(&s).await;
    assert!(!rows.is_empty());
    for row in &rows {
        let size = row.res_type.as_deref().unwrap_or("").len()
            + row.res_id.as_deref().unwrap_or("").len()
            + row.detail.as_deref().unwrap_or("").len()
            + row.patients.join(" ").len();
        assert!(size < 1_200, "{}: {} bytes", brief(row), size);
        assert!(!row.res_id.as_deref().unwrap_or("").contains('$'));
    }
}
on_both!(the_log_keeps_no_oversized_input);

/// Makes every insert into the audit log fail, on the test's database behind the server's
/// back; `false` removes that again.
async fn break_the_audit_log(s: &Server, broken: bool) {
    let sql = match (&s.database, broken) {
        (Database::Sqlite(_), true) => {
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no'); END;"
        }
        (Database::Sqlite(_), false) => "DROP TRIGGER audit_fail;",
        (Database::Postgres { .. }, true) => {
            "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
             CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fail();"
        }
        (Database::Postgres { .. }, false) => {
            "DROP TRIGGER audit_fail ON audit_log; DROP FUNCTION audit_fail();"
        }
        (Database::Unknown, _) => panic!("unknown database"),
    };
    s.execute_sql(sql).await;
}

fn assert_unavailable(r: &Reply, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        r.text
    );
    assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(r.body["issue"][0]["code"], "transient", "{what}");
    assert!(
        !r.text.contains("Abernathy"),
        "{what}: no data in the answer"
    );
}

async fn a_failed_audit_write_fails_the_request(s: Server) {
    put(
        &s,
        &json!({"resourceType": "Patient", "id": "pa", "name": [{"family": A_FAMILY}]}),
    )
    .await;
    put(&s, &observation("oa1", "pa", "weight")).await;
    let (name, token) = s.user_with_token(Role::Nurse, None).await;
    let nurse = s.with_token(&token);
    assert_eq!(nurse.get("Patient/pa").await.status, StatusCode::OK);
    let mut oa1 = s.get("Observation/oa1").await.body;
    let head = s.audit_head().await;

    break_the_audit_log(&s, true).await;
    // A read's entry is written to the journal before the answer; moving it into the log
    // fails, and from then on every request that needs the log fails until it can be written.
    assert_eq!(nurse.get("Patient/pa").await.status, StatusCode::OK);
    assert!(
        s.records.flush_audit().await.is_err(),
        "the entry cannot be moved into the log"
    );
    assert_unavailable(&nurse.get("Patient/pa").await, "read");
    assert_unavailable(&nurse.get("Patient/pa/_history/1").await, "vread");
    assert_unavailable(&nurse.get("Patient?_id=pa").await, "search");
    assert_unavailable(&nurse.get("Patient/pa/_history").await, "history");
    assert_unavailable(&s.get("Patient/pa").await, "read by the system token");
    let marker = "written-while-the-log-was-down";
    let mut new_obs = observation("ignored", "pa", marker);
    new_obs.as_object_mut().expect("object").shift_remove("id");
    assert_unavailable(&nurse.post("Observation", &new_obs).await, "create");
    oa1["valueString"] = json!(marker);
    assert_unavailable(&nurse.put("Observation/oa1", &oa1).await, "update");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": new_obs}
    ]});
    assert_unavailable(&nurse.post("", &bundle).await, "transaction");
    // A refusal cannot be logged either, so it is not answered as a refusal.
    assert_unavailable(&nurse.delete("Observation/oa1").await, "refused delete");
    break_the_audit_log(&s, false).await;
    s.records
        .flush_audit()
        .await
        .expect("the waiting entry is moved once the log can be written");
    // The read answered while the log was down is on file; nothing refused is.
    let entries = s.audit_after(&format!("user:{name}"), head).await;
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(seen, [("read", "success")], "{entries:?}");

    // Nothing was written, and the log is whole.
    assert_eq!(s.search_ids("Observation").await, ["oa1"]);
    assert!(
        s.search_ids(&format!("Observation?code:text={marker}"))
            .await
            .is_empty(),
        "the create was not stored"
    );
    let oa1 = s.get("Observation/oa1").await;
    assert_eq!(
        oa1.body["meta"]["versionId"], "1",
        "the update was not stored"
    );
    assert_ne!(oa1.body["valueString"], marker);
    assert_eq!(nurse.get("Patient/pa").await.status, StatusCode::OK);
    let report = s.records.verify_audit().await.expect("verify");
    assert!(
        matches!(
            report,
            ironchart_records::audit::VerifyReport::Intact { .. }
        ),
        "{report:?}"
    );
}
on_both!(a_failed_audit_write_fails_the_request);
