//! The chart pages as each role sees them: finding a patient, the banner, the summary.

use ironchart_fhir::{Id, ResourceType};
use ironchart_records::Role;
use ironchart_records::test_support::operator;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::signin::{Db, PASSWORD, default_policy, start};

async fn put(app: &crate::signin::App, rt: &str, id: &str, value: Value) {
    let op = operator();
    let (Some(rt), Some(id)) = (ResourceType::parse(rt), Id::parse(id)) else {
        panic!("a valid type and id");
    };
    app.records
        .update(op.actor(), rt, &id, value, None)
        .await
        .expect("stored");
}

async fn clinic(app: &crate::signin::App) {
    put(app, "Patient", "p1", json!({"resourceType": "Patient", "id": "p1",
        "name": [{"use": "official", "family": "O'Brien<script>alert(1)</script>", "given": ["Mary"]}],
        "gender": "female", "birthDate": "1961-02-03",
        "identifier": [{"system": "urn:ironchart:demo:mrn", "value": "MRN-000777"}]})).await;
    put(
        app,
        "AllergyIntolerance",
        "a1",
        json!({"resourceType": "AllergyIntolerance", "id": "a1",
        "patient": {"reference": "Patient/p1"}, "code": {"text": "Penicillin"},
        "reaction": [{"manifestation": [{"text": "Hives"}]}]}),
    )
    .await;
    put(app, "Condition", "c1", json!({"resourceType": "Condition", "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"text": "Type 2 diabetes mellitus"}})).await;
    put(app, "Observation", "bp1", json!({"resourceType": "Observation", "id": "bp1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood pressure"},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-30T09:00:00Z",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 82, "unit": "mm[Hg]"}}]})).await;
    put(app, "Observation", "k1", json!({"resourceType": "Observation", "id": "k1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-29T08:00:00Z",
        "valueQuantity": {"value": 5.9, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]})).await;
    put(app, "Observation", "k0", json!({"resourceType": "Observation", "id": "k0", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-06-01T08:00:00Z",
        "valueQuantity": {"value": 4.2, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]})).await;
    put(app, "DiagnosticReport", "r1", json!({"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
        "code": {"text": "Basic metabolic panel"}, "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-29T08:00:00Z", "result": [{"reference": "Observation/k1"}]})).await;
    put(
        app,
        "Patient",
        "p2",
        json!({"resourceType": "Patient", "id": "p2",
        "name": [{"family": "Quiet", "given": ["Sam"]}], "birthDate": "2025-06-01"}),
    )
    .await;
    put(app, "AllergyIntolerance", "a2", json!({"resourceType": "AllergyIntolerance", "id": "a2",
        "patient": {"reference": "Patient/p2"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No known allergy"}]}})).await;
    put(
        app,
        "Patient",
        "p3",
        json!({"resourceType": "Patient", "id": "p3",
        "name": [{"family": "Blank"}], "deceasedDateTime": "2024-03-05"}),
    )
    .await;
}

async fn each_role_sees_the_chart_it_may(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    clinic(&app).await;
    app.user("dr", Role::Physician, None).await;
    app.user("desk", Role::FrontDesk, None).await;
    app.user("pat", Role::Patient, Some("p1")).await;

    let mut dr = app.browser();
    dr.sign_in("dr", PASSWORD).await;
    let home = dr.get("/").await;
    assert!(
        home.body.contains("action=\"/patients\""),
        "the top bar has patient search"
    );
    // Found by name as typed, by birth date, by MRN; a name is text, never markup.
    for q in [
        "obrien",
        "O%27Brien%2C%20Mary",
        "mary%20obr",
        "03-Feb-1961",
        "1961-02-03",
        "MRN-000777",
    ] {
        let found = dr.get(&format!("/patients?q={q}")).await;
        assert_eq!(found.status, StatusCode::OK, "{q}");
        assert!(
            found.body.contains("href=\"/patients/p1\""),
            "{q}: {}",
            found.body
        );
        assert!(found.body.contains("03-Feb-1961 ("), "{q}: born with age");
        assert!(!found.body.contains("<script>alert"), "{q}: escaped");
    }
    assert!(
        dr.get("/patients?q=zzzz")
            .await
            .body
            .contains("No patient matches")
    );

    let chart = dr.get("/patients/p1").await;
    assert_eq!(chart.status, StatusCode::OK);
    let body = &chart.body;
    assert!(
        body.contains("O&#39;BRIEN&#60;SCRIPT&#62;ALERT(1)&#60;/SCRIPT&#62;, Mary"),
        "family name upper-case, escaped: {}",
        body.lines()
            .find(|l| l.contains("banner-name"))
            .unwrap_or("")
    );
    assert!(!body.contains("<script>alert"));
    assert!(body.contains("03-Feb-1961 ("), "born with age");
    assert!(
        body.contains("class=\"print-only\">Printed "),
        "paper says when it was printed"
    );
    assert!(
        body.contains("/patients/p1/trend?code=http%3A%2F%2Floinc.org%7C2823-3"),
        "a result links to its trend"
    );
    assert!(body.contains("MRN-000777"));
    assert!(
        body.contains("Penicillin (Hives)"),
        "allergies with reactions in the banner"
    );
    assert!(body.contains("Type 2 diabetes mellitus"));
    assert!(
        body.contains("128/82 mm[Hg]"),
        "blood pressure with its unit"
    );
    assert!(body.contains("Potassium") && body.contains("5.9 mmol/L") && body.contains(">H<"));
    assert!(
        dr.get("/patients/p2")
            .await
            .body
            .contains("No known allergies")
    );
    let blank = dr.get("/patients/p3").await.body;
    assert!(blank.contains("Allergies not recorded"));
    assert!(blank.contains("Deceased 05-Mar-2024") && blank.contains("banner deceased"));
    assert_eq!(
        dr.get("/patients/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dr.get("/patients/bad%20id").await.status,
        StatusCode::NOT_FOUND
    );
    // The home page lists the charts just opened, newest first.
    app.records.flush_audit().await.expect("flushed");
    let home = dr.get("/").await.body;
    let (p3, p2, p1) = (
        home.find("href=\"/patients/p3\""),
        home.find("href=\"/patients/p2\""),
        home.find("href=\"/patients/p1\""),
    );
    assert!(
        p3.is_some() && p3 < p2 && p2 < p1,
        "recent charts, newest first: {home}"
    );

    // Results: the report with its results, ranges and flags; a test's trend, plotted.
    let results = dr.get("/patients/p1/results").await;
    assert_eq!(results.status, StatusCode::OK);
    assert!(
        results.body.contains("Basic metabolic panel"),
        "{}",
        results
            .body
            .get(results.body.find("<h1>").unwrap_or(0)..)
            .unwrap_or("")
    );
    assert!(results.body.contains("5.9 mmol/L") && results.body.contains("3.5–5.1 mmol/L"));
    assert!(results.body.contains("<strong class=\"flag\">H</strong>"));
    assert!(
        results.body.contains("banner-name"),
        "the banner on every chart page"
    );
    let trend = dr
        .get("/patients/p1/trend?code=http%3A%2F%2Floinc.org%7C2823-3")
        .await;
    assert_eq!(trend.status, StatusCode::OK);
    assert_eq!(
        trend.body.matches("<circle").count(),
        2,
        "both potassium values"
    );
    assert!(
        trend.body.contains("<polyline") && trend.body.contains("<rect"),
        "line and range band"
    );
    assert!(trend.body.contains("4.2 mmol/L") && trend.body.contains("01-Jun-2026"));

    // The front desk finds patients and sees the banner, not the clinical record.
    let mut desk = app.browser();
    desk.sign_in("desk", PASSWORD).await;
    assert!(
        desk.get("/patients?q=obrien")
            .await
            .body
            .contains("href=\"/patients/p1\"")
    );
    let chart = desk.get("/patients/p1").await;
    assert_eq!(chart.status, StatusCode::OK);
    assert!(chart.body.contains("MRN-000777"));
    assert!(chart.body.contains("Allergies are not shown to your role"));
    assert!(!chart.body.contains("diabetes") && !chart.body.contains("Potassium"));
    let results = desk.get("/patients/p1/results").await;
    assert!(results.body.contains("Results are not shown to your role"));
    assert!(!results.body.contains("Potassium"));

    // A patient uses the portal: no search, no one's chart by URL but their own.
    let mut pat = app.browser();
    pat.sign_in("pat", PASSWORD).await;
    assert!(!pat.get("/").await.body.contains("action=\"/patients\""));
    assert_eq!(
        pat.get("/patients?q=obrien").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(pat.get("/patients/p2").await.status, StatusCode::NOT_FOUND);
}

mod each_role_sees_the_chart_it_may {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::each_role_sees_the_chart_it_may(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::each_role_sees_the_chart_it_may(super::Db::Postgres).await;
    }
}

/// A prescription's drug is named wherever it is shown, however the MedicationRequest names it:
/// a code of its own, a Medication stored beside it (included with the search, or read for the
/// printed prescription), a contained Medication, or only a reference's display. US Core and
/// other systems' exports name drugs by reference as often as by code.
async fn drugs_named_by_reference_are_named_on_every_page(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    clinic(&app).await;
    app.user("dr", Role::Physician, None).await;
    put(&app, "Encounter", "e1", json!({"resourceType": "Encounter", "id": "e1",
        "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-30T09:00:00Z", "end": "2026-11-30T09:30:00Z"}})).await;
    put(&app, "Medication", "med-lis", json!({"resourceType": "Medication", "id": "med-lis",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
            "display": "lisinopril 10 MG Oral Tablet"}]}})).await;
    let order = |id: &str, medication: Value| {
        let mut mr = json!({"resourceType": "MedicationRequest", "id": id, "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"}, "authoredOn": "2026-11-30",
            "dosageInstruction": [{"text": "once a day"}]});
        for (k, v) in medication.as_object().into_iter().flatten() {
            mr[k] = v.clone();
        }
        mr
    };
    put(
        &app,
        "MedicationRequest",
        "by-ref",
        order(
            "by-ref",
            json!({"medicationReference": {"reference": "Medication/med-lis"}}),
        ),
    )
    .await;
    put(
        &app,
        "MedicationRequest",
        "contained",
        order(
            "contained",
            json!({
        "contained": [{"resourceType": "Medication", "id": "m1",
            "code": {"text": "metformin 500 MG Oral Tablet"}}],
        "medicationReference": {"reference": "#m1"}}),
        ),
    )
    .await;
    put(&app, "MedicationRequest", "display", order("display",
        json!({"medicationReference": {"reference": "Medication/not-here", "display": "atorvastatin 20 MG"}}))).await;
    put(
        &app,
        "MedicationRequest",
        "unnamed",
        order(
            "unnamed",
            json!({"medicationReference": {"reference": "Medication/not-here-either"}}),
        ),
    )
    .await;

    let mut dr = app.browser();
    dr.sign_in("dr", PASSWORD).await;
    let names = [
        "lisinopril 10 MG Oral Tablet",
        "metformin 500 MG Oral Tablet",
        "atorvastatin 20 MG",
        "Medication not named",
    ];
    for page in [
        "/patients/p1",
        "/patients/p1/lists",
        "/patients/p1/visits/e1",
    ] {
        let shown = dr.get(page).await;
        assert_eq!(shown.status, StatusCode::OK, "{page}");
        for name in names {
            assert!(
                shown.body.contains(name),
                "{page} names {name}: {}",
                shown.body
            );
        }
    }
    for (id, name, code) in [
        ("by-ref", names[0], Some("314076")),
        ("contained", names[1], None),
        ("display", names[2], None),
        ("unnamed", names[3], None),
    ] {
        let print = dr.get(&format!("/patients/p1/prescriptions/{id}")).await;
        assert_eq!(print.status, StatusCode::OK, "{id}");
        assert!(print.body.contains(name), "{id}: {}", print.body);
        if let Some(code) = code {
            assert!(print.body.contains(code), "{id} shows the drug's code");
        }
    }
    let history = dr
        .get("/patients/p1/lists/MedicationRequest/contained/history")
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(history.body.contains(names[1]), "{}", history.body);
}

mod drugs_named_by_reference_are_named_on_every_page {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::drugs_named_by_reference_are_named_on_every_page(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::drugs_named_by_reference_are_named_on_every_page(super::Db::Postgres).await;
    }
}
