//! Create, read, vread, update, delete, history; ETags and preconditions; authentication.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_both;
use crate::support::{Server, without_meta};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": "MRN-1"}],
        "name": [{"family": "Lovelace", "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1815-12-10",
        "extension": [{"url": "http://example.org/fav-colour", "valueString": "green"}]
    })
}

async fn create_read_round_trip(s: Server) {
    let p = patient();
    let r = s.post("Patient", &p).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["meta"]["versionId"], "1");
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.ends_with(&format!("/Patient/{id}/_history/1")),
        "{location}"
    );
    assert_eq!(r.headers["etag"], "W/\"1\"");
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );

    let read = s.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    let mut expected = p.clone();
    expected["id"] = json!(id);
    assert_eq!(without_meta(&read.body), expected);
    assert!(read.headers.contains_key("last-modified"));

    // A client-sent id on create is replaced by the server's.
    let mut with_id = patient();
    with_id["id"] = json!("client-chosen");
    let r2 = s.post("Patient", &with_id).await;
    assert_eq!(r2.status, StatusCode::CREATED);
    assert_ne!(r2.body["id"], "client-chosen");
}
on_both!(create_read_round_trip);

async fn update_versions_and_history(s: Server) {
    let created = s.create(&patient()).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut p = created.clone();
    p["active"] = json!(true);
    let r = s.put(&format!("Patient/{id}"), &p).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");

    // vread both versions.
    let v1 = s.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, StatusCode::OK);
    assert!(v1.body.get("active").is_none());
    let v2 = s.get(&format!("Patient/{id}/_history/2")).await;
    assert_eq!(v2.body["active"], true);
    assert_eq!(
        s.get(&format!("Patient/{id}/_history/3")).await.status,
        StatusCode::NOT_FOUND
    );

    // If-Match with a stale version → 412; with the current → 200.
    let stale = s
        .send(
            Method::PUT,
            &format!("Patient/{id}"),
            Some(&p),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    assert_eq!(stale.body["resourceType"], "OperationOutcome");
    let fresh = s
        .send(
            Method::PUT,
            &format!("Patient/{id}"),
            Some(&p),
            &[("if-match", "W/\"2\"")],
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    assert_eq!(fresh.body["meta"]["versionId"], "3");

    // Instance history, newest first.
    let h = s.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 3);
    let versions: Vec<&str> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["3", "2", "1"]);

    // Type and system history, with _count paging and _since.
    let other = s
        .create(&json!({"resourceType": "Organization", "name": "Clinic"}))
        .await;
    let th = s.get("Patient/_history").await;
    assert_eq!(th.body["total"], 3);
    let sh = s.get("_history?_count=2").await;
    assert_eq!(sh.body["entry"].as_array().unwrap().len(), 2);
    let next = sh.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("next");
    let page2 = s.get(next["url"].as_str().unwrap()).await;
    assert_eq!(page2.status, StatusCode::OK, "{}", page2.text);
    assert_eq!(page2.body["entry"].as_array().unwrap().len(), 2);
    let since = other["meta"]["lastUpdated"].as_str().unwrap();
    let recent = s
        .get(&format!("_history?_since={}", since.replace('+', "%2B")))
        .await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text);
    assert!(
        recent.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["id"] == other["id"])
    );
    assert!(
        recent.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Organization")
    );
}
on_both!(update_versions_and_history);

async fn update_as_create_and_id_checks(s: Server) {
    let mut p = patient();
    p["id"] = json!("pat-42");
    let r = s.put("Patient/pat-42", &p).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(s.get("Patient/pat-42").await.status, StatusCode::OK);
    // Mismatched id, missing id, bad id.
    let r = s.put("Patient/other", &p).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut no_id = patient();
    no_id.as_object_mut().unwrap().shift_remove("id");
    assert_eq!(
        s.put("Patient/pat-42", &no_id).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut bad = patient();
    bad["id"] = json!("bad$id");
    assert_eq!(
        s.put("Patient/bad$id", &bad).await.status,
        StatusCode::BAD_REQUEST
    );
    // Type mismatch between URL and body.
    assert_eq!(
        s.put("Observation/pat-42", &p).await.status,
        StatusCode::BAD_REQUEST
    );
}
on_both!(update_as_create_and_id_checks);

async fn delete_then_gone(s: Server) {
    let mut p = patient();
    p["identifier"][0]["value"] = json!("MRN-deleted");
    let created = s.create(&p).await;
    let id = created["id"].as_str().unwrap();
    // Searches led by an index (alone, and with a filter probed per candidate) find it …
    let by_index = [
        "Patient?identifier=urn:test:mrn|MRN-deleted",
        "Patient?identifier=urn:test:mrn|MRN-deleted&gender=female",
    ];
    for q in by_index {
        assert_eq!(s.search_ids(q).await, [id], "{q}");
    }
    let d = s.delete(&format!("Patient/{id}")).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let r = s.get(&format!("Patient/{id}")).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    // Deleted resources are not found by search.
    assert!(s.search_ids(&format!("Patient?_id={id}")).await.is_empty());
    // … and no longer once it is deleted.
    for q in by_index {
        assert!(s.search_ids(q).await.is_empty(), "{q}");
    }
    // Deleting again, or something unknown, is fine.
    assert_eq!(
        s.delete(&format!("Patient/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.delete("Patient/never-was").await.status,
        StatusCode::NO_CONTENT
    );
    // History shows the deletion; recreating by PUT gives a new version.
    let h = s.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(h.body["entry"][0]["request"]["method"], "DELETE");
    let mut again = created.clone();
    again["gender"] = json!("other");
    let r = s.put(&format!("Patient/{id}"), &again).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "3");
}
on_both!(delete_then_gone);

async fn authentication_required(s: Server) {
    let anon = |path: &str| s.client.get(s.url(path)).send();
    let r = anon("Patient").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    for path in [
        "Patient/x",
        "Patient/x/_history",
        "_history",
        "Patient/_history",
    ] {
        assert_eq!(
            anon(path).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let bad = s
        .client
        .get(s.url("Patient"))
        .bearer_auth("ic_not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let post = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    // metadata is public.
    let m = anon("metadata").await.unwrap();
    assert_eq!(m.status(), StatusCode::OK);
    let cs: Value = m.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let patient_cs = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient in CapabilityStatement");
    assert!(
        patient_cs["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "family")
    );
}
on_both!(authentication_required);

async fn concurrent_updates_lose_nothing(s: Server) {
    let created = s
        .create(&json!({"resourceType": "Basic", "code": {"text": "counter"}}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = s.client.clone();
        let url = s.url(&format!("Basic/{id}"));
        let token = s.token.clone();
        let mut body = created.clone();
        body["code"]["text"] = json!(format!("writer {i}"));
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .bearer_auth(token)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 20,
        "every concurrent update succeeds (retried, never lost)"
    );
    let h = s.get(&format!("Basic/{id}/_history?_count=100")).await;
    assert_eq!(h.body["total"], 21, "each update is its own version");
    let current = s.get(&format!("Basic/{id}")).await;
    assert_eq!(current.body["meta"]["versionId"], "21");
}
on_both!(concurrent_updates_lose_nothing);
