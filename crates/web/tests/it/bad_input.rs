//! Hostile and malformed input: always a 4xx OperationOutcome, never a 500, and nothing lost.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_both;
use crate::support::{Server, reply};

async fn raw(
    s: &Server,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> crate::support::Reply {
    let r = s
        .client
        .request(method, s.url(path))
        .bearer_auth(&s.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    reply(r).await
}

fn assert_outcome(r: &crate::support::Reply, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(
        r.body["resourceType"], "OperationOutcome",
        "{what}: {}",
        r.text
    );
}

async fn malformed_bodies(s: Server) {
    let fhir = "application/fhir+json";
    for (what, body) in [
        ("truncated", b"{\"resourceType\": \"Patient\"".to_vec()),
        ("not json", b"hello".to_vec()),
        ("empty", Vec::new()),
        (
            "invalid utf-8",
            b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}".to_vec(),
        ),
        ("array", b"[1,2,3]".to_vec()),
        ("deep nesting", {
            let mut v = String::new();
            for _ in 0..5000 {
                v.push_str("{\"a\":");
            }
            v.push('1');
            for _ in 0..5000 {
                v.push('}');
            }
            v.into_bytes()
        }),
    ] {
        let r = raw(&s, Method::POST, "Patient", fhir, body).await;
        assert!(
            r.status.is_client_error(),
            "{what}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
    }
    // Wrong media type → 415; unacceptable Accept → 406.
    let r = raw(
        &s,
        Method::POST,
        "Patient",
        "application/xml",
        b"<Patient/>".to_vec(),
    )
    .await;
    assert_outcome(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "xml body");
    let r = s
        .send(
            Method::GET,
            "Patient",
            None,
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_outcome(&r, StatusCode::NOT_ACCEPTABLE, "xml accept");
    let r = s.get("Patient?_format=xml").await;
    assert_outcome(&r, StatusCode::NOT_ACCEPTABLE, "_format=xml");
    assert_eq!(
        s.send(
            Method::GET,
            "Patient",
            None,
            &[("accept", "application/json")]
        )
        .await
        .status,
        StatusCode::OK
    );
}
on_both!(malformed_bodies);

async fn invalid_resources_point_at_the_element(s: Server) {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"resourceType": "Patient", "birthDate": "1990-13-01"}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "active": "yes"}),
            "Patient.active",
        ),
        (
            json!({"resourceType": "Patient", "favouriteColour": "green"}),
            "Patient.favouriteColour",
        ),
        (
            json!({"resourceType": "Patient", "gender": ["male"]}),
            "Patient.gender",
        ),
        (
            json!({"resourceType": "Patient", "name": {"family": "x"}}),
            "Patient.name",
        ),
        (
            json!({"resourceType": "Observation", "code": {"text": "x"}}),
            "Observation.status",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": ""}]}),
            "Patient.name[0].family",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "12"}}),
            "Observation.valueQuantity.value",
        ),
    ];
    for (resource, expression) in cases {
        let rt = resource["resourceType"].as_str().unwrap().to_string();
        let r = s.post(&rt, &resource).await;
        assert_outcome(&r, StatusCode::UNPROCESSABLE_ENTITY, expression);
        let exprs: Vec<String> = r.body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            exprs.iter().any(|e| e == expression),
            "{expression} not in {exprs:?}"
        );
    }
    // Wrong resourceType for the URL.
    let r = s
        .post("Patient", &json!({"resourceType": "Observation"}))
        .await;
    assert_outcome(&r, StatusCode::BAD_REQUEST, "type mismatch");
    let r = s
        .post("Patient", &json!({"resourceType": "Nonsense"}))
        .await;
    assert!(r.status.is_client_error());
}
on_both!(invalid_resources_point_at_the_element);

async fn hostile_search_strings(s: Server) {
    s.create(&json!({"resourceType": "Patient", "name": [{"family": "Safe"}]}))
        .await;
    for value in [
        "'",
        "\"",
        "%",
        "%25",
        "_",
        "\\",
        ";--",
        "' OR '1'='1",
        "Robert'); DROP TABLE resources;--",
        "名前",
        "\u{10FFFF}",
        "%00",
        "a%2Cb",
        "ge",
        "ge%",
        "|||",
        "a|b|c|d",
        "\u{0}",
    ] {
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        for param in [
            "family",
            "name:contains",
            "family:exact",
            "identifier",
            "birthdate",
            "_id",
            "general-practitioner",
            "_lastUpdated",
            "_sort",
            "_count",
            "_include",
            "_cursor",
            "organization.name",
            "link:Patient.family",
        ] {
            let r = s.get(&format!("Patient?{param}={encoded}")).await;
            assert!(
                r.status == StatusCode::OK || r.status == StatusCode::BAD_REQUEST,
                "{param}={value:?}: {} {}",
                r.status,
                r.text
            );
            assert!(r.body.is_object(), "{param}={value:?}: {}", r.text);
        }
    }
    // The data is still there.
    assert_eq!(s.search_ids("Patient?family=safe").await.len(), 1);
}
on_both!(hostile_search_strings);

async fn routes_and_methods(s: Server) {
    let r = s.get("Nonsense/1").await;
    assert_outcome(&r, StatusCode::NOT_FOUND, "unknown type");
    let r = s.get("Patient/does-not-exist").await;
    assert_outcome(&r, StatusCode::NOT_FOUND, "unknown id");
    let r = s.get("Patient/a/b/c/d/e").await;
    assert_outcome(&r, StatusCode::NOT_FOUND, "unknown route");
    let r = s
        .send(Method::PATCH, "Patient/x", Some(&json!({})), &[])
        .await;
    assert_outcome(&r, StatusCode::METHOD_NOT_ALLOWED, "PATCH");
    let r = s.send(Method::DELETE, "Patient", None, &[]).await;
    assert_outcome(&r, StatusCode::METHOD_NOT_ALLOWED, "DELETE type");
    let r = s.get("Patient/x/_history/notanumber").await;
    assert_outcome(&r, StatusCode::NOT_FOUND, "bad version");
    let r = s
        .send(Method::PUT, "Patient/x", None, &[("if-match", "garbage")])
        .await;
    assert!(r.status.is_client_error());
}
on_both!(routes_and_methods);

async fn body_limit(_s: Server) {
    // A server with a small limit: larger bodies get 413, with or without Content-Length.
    let dir = tempfile::tempdir().unwrap();
    let records = ironchart_records::Records::open(
        &ironchart_records::DatabaseConfig::Sqlite(dir.path().join("small.sqlite3")),
        super::support::security(dir.path(), true),
    )
    .await
    .unwrap();
    let small = Server::start_with(records, Some(dir), 1024, None).await;
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(4000)}]});
    let r = small.post("Patient", &big).await;
    assert_outcome(&r, StatusCode::PAYLOAD_TOO_LARGE, "too large");
    // Chunked, without Content-Length: the limit applies while reading.
    let data = big.to_string();
    let addr = small
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{data}\r\n0\r\n\r\n",
        small.token,
        data.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let ok = small
        .post("Patient", &json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}
on_both!(body_limit);

async fn rate_limited(_s: Server) {
    let dir = tempfile::tempdir().unwrap();
    let records = ironchart_records::Records::open(
        &ironchart_records::DatabaseConfig::Sqlite(dir.path().join("limited.sqlite3")),
        super::support::security(dir.path(), true),
    )
    .await
    .unwrap();
    // Two requests a second (a burst of four): forty requests outrun the refill even when each
    // takes a quarter of a second on a loaded machine (at five a second they did not).
    let limited = Server::start_with(records, Some(dir), 1024 * 1024, Some(2)).await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(limited.get("metadata").await);
    }
    let throttled: Vec<_> = statuses
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!throttled.is_empty(), "a burst over the limit is throttled");
    assert_eq!(throttled[0].body["resourceType"], "OperationOutcome");
    assert!(throttled[0].headers.contains_key("retry-after"));
    assert!(
        statuses[0].status == StatusCode::OK,
        "the first requests pass"
    );
}
on_both!(rate_limited);

/// A resource has bounded size and bounded searchable values (413 beyond, alone or in a
/// transaction), so that no write holds the writer for seconds; a Binary may be larger.
async fn oversized_resources_are_refused(s: Server) {
    let big_text = "x".repeat(ironchart_records::DEFAULT_RESOURCE_LIMIT + 1);
    let big = serde_json::json!({"resourceType": "Patient", "id": "big",
                                 "name": [{"text": big_text}]});
    let r = s.put("Patient/big", &big).await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    let identifiers: Vec<serde_json::Value> = (0..=ironchart_records::MAX_INDEX_VALUES)
        .map(|i| serde_json::json!({"value": i.to_string()}))
        .collect();
    let many = serde_json::json!({"resourceType": "Patient", "identifier": identifiers});
    let r = s.post("Patient", &many).await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": many, "request": {"method": "POST", "url": "Patient"}}]});
    let r = s.post("", &bundle).await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    assert!(
        s.search_ids("Patient").await.is_empty(),
        "nothing was written"
    );
    // A Binary carries its content: it may be larger (up to the body limit).
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .encode(vec![7u8; ironchart_records::DEFAULT_RESOURCE_LIMIT]);
    let binary = serde_json::json!({"resourceType": "Binary", "contentType": "application/pdf",
                                    "data": data});
    let r = s.post("Binary", &binary).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        &r.text[..r.text.len().min(300)]
    );
}
on_both!(oversized_resources_are_refused);
