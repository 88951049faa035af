//! Batch and transaction Bundles.

use reqwest::StatusCode;
use serde_json::json;

use crate::on_both;
use crate::support::Server;

async fn transaction_resolves_references(s: Server) {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Patient", "name": [{"family": "Chalmers"}],
                             "identifier": [{"system": "urn:mrn", "value": "T-1"}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|T-1"}
            },
            {
                "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                             "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
                "request": {"method": "POST", "url": "Observation"}
            },
            {
                "resource": {"resourceType": "Organization", "id": "org-1", "name": "Clinic"},
                "request": {"method": "PUT", "url": "Organization/org-1"}
            }
        ]
    });
    let r = s.post("", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "transaction-response");
    let entries = r.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(
        entries[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
    assert!(
        entries[2]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
    let patient_id = entries[0]["resource"]["id"].as_str().unwrap().to_string();
    let obs = &entries[1]["resource"];
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"));
    assert!(
        entries[1]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with("Observation/")
    );
    // Conditional create: the second time the Patient exists and is not created again.
    let r2 = s.post("", &bundle).await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text);
    let e2 = r2.body["entry"].as_array().unwrap();
    assert!(
        e2[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200")
    );
    assert_eq!(e2[0]["resource"]["id"], patient_id.as_str());
    assert_eq!(
        e2[1]["resource"]["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(
        s.search_ids("Patient?identifier=urn:mrn|T-1").await.len(),
        1
    );
}
on_both!(transaction_resolves_references);

async fn transaction_is_all_or_nothing(s: Server) {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "keep-out", "name": [{"family": "Nobody"}]},
             "request": {"method": "PUT", "url": "Patient/keep-out"}},
            {"resource": {"resourceType": "Organization", "name": "Org A"},
             "request": {"method": "POST", "url": "Organization"}},
            {"resource": {"resourceType": "Observation", "status": "final"},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let r = s.post("", &bundle).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    let expr = r.body["issue"][0]["expression"][0].as_str().unwrap();
    assert!(expr.starts_with("Bundle.entry[2]"), "{expr}");
    assert_eq!(
        s.get("Patient/keep-out").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(s.search_ids("Organization?name=Org").await.is_empty());

    // A failure found only in the database (a stale If-Match) also rolls everything back.
    s.put(
        "Patient/exists",
        &json!({"resourceType": "Patient", "id": "exists"}),
    )
    .await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Organization", "name": "Org B"},
             "request": {"method": "POST", "url": "Organization"}},
            {"resource": {"resourceType": "Patient", "id": "exists", "active": true},
             "request": {"method": "PUT", "url": "Patient/exists", "ifMatch": "W/\"7\""}}
        ]
    });
    let r = s.post("", &bundle).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(s.search_ids("Organization?name=Org").await.is_empty());
    assert!(s.get("Patient/exists").await.body.get("active").is_none());
}
on_both!(transaction_is_all_or_nothing);

async fn batch_entries_are_independent(s: Server) {
    s.put(
        "Patient/b1",
        &json!({"resourceType": "Patient", "id": "b1", "gender": "male"}),
    )
    .await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Organization", "name": "Batch Org"},
             "request": {"method": "POST", "url": "Organization"}},
            {"resource": {"resourceType": "Observation", "status": "final"},
             "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "GET", "url": "Patient/b1"}},
            {"request": {"method": "GET", "url": "Patient?gender=male"}},
            {"request": {"method": "DELETE", "url": "Patient/b1"}},
            {"request": {"method": "GET", "url": "Patient/unknown"}}
        ]
    });
    let r = s.post("", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "batch-response");
    let e = r.body["entry"].as_array().unwrap();
    assert!(
        e[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
    assert!(
        e[1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("4"),
        "{}",
        e[1]
    );
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(e[2]["resource"]["id"], "b1");
    assert_eq!(e[3]["resource"]["type"], "searchset");
    assert!(
        e[4]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("204")
    );
    assert!(
        e[5]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    assert_eq!(s.search_ids("Organization?name=Batch").await.len(), 1);
}
on_both!(batch_entries_are_independent);

async fn bundle_shape_errors(s: Server) {
    for (body, status) in [
        (json!({"resourceType": "Patient"}), StatusCode::BAD_REQUEST),
        (
            json!({"resourceType": "Bundle", "type": "collection"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "PATCH", "url": "Patient/1"}}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "bogus": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = s.post("", &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
}
on_both!(bundle_shape_errors);

/// A Bundle is bounded: too many entries or GET entries are refused with 413 before anything
/// runs, and the GET entries of one Bundle add at most a bounded number of bytes to its
/// response (later ones get a 413 outcome instead of their body).
async fn bundles_are_bounded(s: Server) {
    let get = |url: &str| json!({"request": {"method": "GET", "url": url}});
    for (kind, entries) in [
        ("batch", vec![get("Patient"); 201]),
        ("transaction", vec![get("Patient"); 201]),
        (
            "batch",
            vec![json!({"request": {"method": "DELETE", "url": "Patient/nobody"}}); 10_001],
        ),
    ] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
        let r = s.post("", &bundle).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{kind}: {}",
            r.text
        );
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
    // Five Observations of ~900 KB each: 200 searches for all of them would answer ~900 MB.
    let big = "x".repeat(900_000);
    for i in 0..5 {
        let o = json!({"resourceType": "Observation", "id": format!("big{i}"), "status": "final",
                       "code": {"text": "note"}, "valueString": big});
        assert!(
            s.put(&format!("Observation/big{i}"), &o)
                .await
                .status
                .is_success()
        );
    }
    let bundle = json!({"resourceType": "Bundle", "type": "batch",
                        "entry": vec![get("Observation?code:text=note"); 200]});
    let r = s.post("", &bundle).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        &r.text[..r.text.len().min(500)]
    );
    assert!(r.text.len() < 40 * 1024 * 1024, "{} bytes", r.text.len());
    let statuses: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses.len(), 200);
    assert!(statuses[0].starts_with("200"), "{statuses:?}");
    assert!(statuses[199].starts_with("413"), "{:?}", &statuses[190..]);
}
on_both!(bundles_are_bounded);

/// An auditor reads the audit log through a batch as directly.
async fn auditors_read_audit_events_in_a_batch(s: Server) {
    let (_, token) = s
        .user_with_token(ironchart_records::Role::Auditor, None)
        .await;
    let auditor = s.with_token(&token);
    let page = auditor.get("AuditEvent?_count=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let id = page.body["entry"][0]["resource"]["id"]
        .as_str()
        .expect("an audit event")
        .to_string();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("AuditEvent/{id}")}},
        {"request": {"method": "GET", "url": "AuditEvent?_count=2"}},
    ]});
    let r = auditor.post("", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let entries = r.body["entry"].as_array().unwrap();
    assert!(
        entries[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"),
        "{}",
        r.text
    );
    assert_eq!(entries[0]["resource"]["resourceType"], "AuditEvent");
    assert_eq!(entries[0]["resource"]["id"], id.as_str());
    assert_eq!(entries[1]["resource"]["type"], "searchset");
}
on_both!(auditors_read_audit_events_in_a_batch);
