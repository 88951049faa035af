//! A visit from vitals to signed note, through the pages as each role uses them; the lock on a
//! signed visit, for the pages, the API, Bundles and the door itself.

use std::time::Duration;

use ironchart_fhir::search::SearchQuery;
use ironchart_fhir::{Id, ResourceType};
use ironchart_records::test_support::operator;
use ironchart_records::{RecordsError, Role};
use ironchart_web::terminology::Terminology;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::signin::{App, Browser, Db, PASSWORD, default_policy, start};

async fn put(app: &App, rt: &str, id: &str, value: Value) {
    let op = operator();
    app.records
        .update(
            op.actor(),
            ResourceType::parse(rt).unwrap(),
            &Id::parse(id).unwrap(),
            value,
            None,
        )
        .await
        .expect("stored");
}

/// Everything of a type in an encounter, read by the operator.
async fn in_visit(app: &App, rt: &str, enc: &str) -> Vec<Value> {
    let query = SearchQuery::parse(
        rt,
        &[
            ("encounter".to_string(), format!("Encounter/{enc}")),
            ("_count".to_string(), "100".to_string()),
        ],
    )
    .unwrap();
    let op = operator();
    app.records
        .search(op.actor(), &query, None)
        .await
        .unwrap()
        .matches
        .iter()
        .map(|r| r.value())
        .collect()
}

async fn clinic(app: &App) {
    put(
        app,
        "Patient",
        "p1",
        json!({"resourceType": "Patient", "id": "p1",
        "name": [{"use": "official", "family": "Rivera", "given": ["Ana"]}],
        "gender": "female", "birthDate": "1961-02-03",
        "identifier": [{"system": "urn:ironchart:demo:mrn", "value": "MRN-000321"}]}),
    )
    .await;
    put(
        app,
        "AllergyIntolerance",
        "a1",
        json!({"resourceType": "AllergyIntolerance", "id": "a1",
        "patient": {"reference": "Patient/p1"}, "code": {"text": "Penicillin"},
        "reaction": [{"manifestation": [{"text": "Hives"}]}]}),
    )
    .await;
}

/// Posts a form of the page at `path` (its CSRF token read from the page).
async fn submit(
    b: &mut Browser,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> crate::signin::Page {
    let csrf = b.get(page).await.field("csrf");
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(action, &form).await
}

async fn a_visit_from_vitals_to_signed_note(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    clinic(&app).await;
    app.user("nurse", Role::Nurse, None).await;
    app.user("dr", Role::Physician, None).await;
    app.user("desk", Role::FrontDesk, None).await;
    let terms = Terminology::shipped();

    // The nurse starts the visit from the chart.
    let mut nurse = app.browser();
    nurse.sign_in("nurse", PASSWORD).await;
    let chart = nurse.get("/patients/p1").await;
    assert!(chart.body.contains("Start a visit"), "{}", chart.body);
    let started = submit(&mut nurse, "/patients/p1", "/patients/p1/visits", &[]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let visit = started.location().to_string();
    assert!(visit.starts_with("/patients/p1/visits/"), "{visit}");
    let enc = visit.rsplit('/').next().unwrap().to_string();
    let vitals_url = format!("{visit}/vitals");

    // An impossible weight is refused next to its field; what was typed is kept; nothing saved.
    let refused = submit(
        &mut nurse,
        &visit,
        &vitals_url,
        &[("weight", "700"), ("pulse", "72")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("not a possible weight"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("id=\"weight-error\""));
    assert!(refused.body.contains(
        "name=\"pulse\" type=\"text\" inputmode=\"decimal\" autocomplete=\"off\" value=\"72\""
    ));
    assert!(in_visit(&app, "Observation", &enc).await.is_empty());

    // In US units: entered in lb and in, stored in kg and cm, BMI computed, high BP flagged.
    let units = submit(
        &mut nurse,
        &visit,
        "/account/units",
        &[("units", "us"), ("back", &visit)],
    )
    .await;
    assert_eq!(units.location(), visit);
    let saved = submit(
        &mut nurse,
        &visit,
        &vitals_url,
        &[
            ("weight", "154"),
            ("height", "65"),
            ("systolic", "150"),
            ("diastolic", "92"),
            ("pulse", "72"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = in_visit(&app, "Observation", &enc).await;
    let by_code = |code: &str| {
        stored
            .iter()
            .find(|o| o.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(code))
            .unwrap_or_else(|| panic!("{code} stored: {stored:?}"))
            .clone()
    };
    let weight = by_code("29463-7");
    assert_eq!(weight.pointer("/valueQuantity/code").unwrap(), "kg");
    assert_eq!(
        weight.pointer("/valueQuantity/value").unwrap().as_f64(),
        Some(69.85)
    );
    assert_eq!(
        by_code("8302-2")
            .pointer("/valueQuantity/value")
            .unwrap()
            .as_f64(),
        Some(165.1)
    );
    assert_eq!(
        by_code("39156-5")
            .pointer("/valueQuantity/value")
            .unwrap()
            .as_f64(),
        Some(25.6)
    );
    assert_eq!(
        by_code("85354-9")
            .pointer("/interpretation/0/coding/0/code")
            .unwrap(),
        "H"
    );
    let page = nurse.get(&visit).await;
    assert!(page.body.contains("154 lb"), "shown as entered");
    assert!(page.body.contains("150/92 mmHg"));
    // Blood pressure's trend: systolic and diastolic on one plot.
    let trend = nurse
        .get("/patients/p1/trend?code=http%3A%2F%2Floinc.org%7C85354-9")
        .await;
    assert_eq!(trend.status, StatusCode::OK);
    assert!(trend.body.contains("stroke-dasharray"), "two series");
    let weights = nurse
        .get("/patients/p1/trend?code=http%3A%2F%2Floinc.org%7C29463-7")
        .await;
    assert!(
        weights.body.contains("<td>154 lb</td>"),
        "a vital's trend in the user's units"
    );
    assert!(
        nurse.get("/patients/p1").await.body.contains("154 lb"),
        "the chart's latest vitals in the user's units"
    );
    // A nurse records vitals, but does not prescribe.
    assert!(!page.body.contains("/prescriptions\" novalidate"));

    // The physician: a note, a diagnosis by typing, a lab order.
    let mut dr = app.browser();
    dr.sign_in("dr", PASSWORD).await;
    let note = submit(
        &mut dr,
        &visit,
        &format!("{visit}/note"),
        &[
            ("subjective", "Sore throat for 3 days."),
            ("objective", "Tonsillar exudate."),
            ("assessment", "Strep pharyngitis."),
            ("plan", "Antibiotic."),
        ],
    )
    .await;
    assert_eq!(note.status, StatusCode::SEE_OTHER, "{}", note.body);
    let offered = submit(
        &mut dr,
        &visit,
        &format!("{visit}/diagnoses"),
        &[("diagnosis", "diab")],
    )
    .await;
    assert_eq!(offered.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        offered.body.contains("value=\"E11.9\""),
        "diab offers E11.9"
    );
    let picked = submit(
        &mut dr,
        &visit,
        &format!("{visit}/diagnoses"),
        &[("diagnosis", "diab"), ("code", "E11.9")],
    )
    .await;
    assert_eq!(picked.status, StatusCode::SEE_OTHER, "{}", picked.body);
    let conditions = in_visit(&app, "Condition", &enc).await;
    assert_eq!(
        conditions[0].pointer("/code/coding/0/code").unwrap(),
        "E11.9"
    );
    assert_eq!(
        conditions[0].pointer("/code/coding/0/system").unwrap(),
        "http://hl7.org/fhir/sid/icd-10-cm"
    );
    let test = terms.orders().next().expect("an orderable test").clone();
    let ordered = submit(
        &mut dr,
        &visit,
        &format!("{visit}/orders"),
        &[("code", &test.code)],
    )
    .await;
    assert_eq!(ordered.status, StatusCode::SEE_OTHER, "{}", ordered.body);
    let orders = in_visit(&app, "ServiceRequest", &enc).await;
    assert_eq!(
        orders[0].pointer("/code/coding/0/code").unwrap().as_str(),
        Some(test.code.as_str())
    );

    // Amoxicillin for a penicillin allergy: the alert names it; no reason, no order.
    let amoxicillin = terms
        .find_drugs("amoxicillin 500 capsule", 20)
        .into_iter()
        .find(|d| d.ingredients.len() == 1)
        .expect("amoxicillin")
        .clone();
    let rx_url = format!("{visit}/prescriptions");
    let rx = [
        ("drug", amoxicillin.name.as_str()),
        ("dose", "500 mg"),
        ("route", "oral"),
        ("frequency", "three times a day"),
        ("days", "10"),
        ("quantity", "30"),
    ];
    let alerted = submit(&mut dr, &visit, &rx_url, &rx).await;
    assert_eq!(alerted.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        alerted.body.contains("Allergy alert: Penicillin"),
        "{}",
        alerted.body
    );
    assert!(alerted.body.contains("Hives"));
    assert!(
        alerted.body.contains("value=\"500 mg\""),
        "the form keeps what was typed"
    );
    let mut again: Vec<(&str, &str)> = rx.to_vec();
    again.push(("alerted", "1"));
    let no_reason = submit(&mut dr, &visit, &rx_url, &again).await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_reason.body.contains("Give the reason"));
    assert!(in_visit(&app, "MedicationRequest", &enc).await.is_empty());
    let reason = "Tolerated amoxicillin in 2020 without reaction";
    again.push(("reason", reason));
    let prescribed = submit(&mut dr, &visit, &rx_url, &again).await;
    assert_eq!(
        prescribed.status,
        StatusCode::SEE_OTHER,
        "{}",
        prescribed.body
    );
    let orders = in_visit(&app, "MedicationRequest", &enc).await;
    let order = &orders[0];
    assert!(
        order
            .pointer("/note/0/text")
            .unwrap()
            .as_str()
            .unwrap()
            .contains(reason)
    );
    assert_eq!(
        order
            .pointer("/medicationCodeableConcept/coding/0/code")
            .unwrap()
            .as_str(),
        Some(amoxicillin.rxcui.as_str())
    );
    let audit = app.audit_actions("user:dr").await;
    assert!(
        audit
            .iter()
            .any(|(action, outcome, detail)| action == "allergy-override"
                && outcome == "success"
                && detail
                    .as_deref()
                    .is_some_and(|d| d.contains(reason) && d.contains("penicillin"))),
        "{audit:?}"
    );
    let print = dr
        .get(&format!(
            "/patients/p1/prescriptions/{}",
            order["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(print.status, StatusCode::OK);
    for fact in [
        "RIVERA, Ana",
        "03-Feb-1961",
        "MRN-000321",
        "three times a day",
    ] {
        assert!(print.body.contains(fact), "the prescription shows {fact}");
    }

    // Signing asks for the password again.
    let wrong = submit(
        &mut dr,
        &visit,
        &format!("{visit}/sign"),
        &[("password", "not the password")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("The password is not right"));
    let signed = submit(
        &mut dr,
        &visit,
        &format!("{visit}/sign"),
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let page = dr.get(&visit).await;
    assert!(page.body.contains("Signed by dr"), "{}", page.body);
    let notes = in_visit(&app, "DocumentReference", &enc).await;
    assert_eq!(notes[0]["docStatus"], "final");

    // Locked: a later vitals entry, the API, a Bundle and the door itself are refused.
    let late = submit(&mut nurse, &visit, &vitals_url, &[("pulse", "80")]).await;
    assert_eq!(late.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(late.body.contains("is signed"), "{}", late.body);
    assert_eq!(
        in_visit(&app, "Observation", &enc).await.len(),
        stored.len()
    );
    let token = app
        .records
        .issue_user_token(&operator(), "dr", None, Duration::from_secs(600))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut changed = notes[0].clone();
    changed["content"][0]["attachment"]["data"] = json!("Q2hhbmdlZA==");
    let note_id = notes[0]["id"].as_str().unwrap();
    let api = http
        .put(format!("{}/fhir/DocumentReference/{note_id}", app.origin))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::CONFLICT);
    let outcome: Value = api.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "business-rule");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "POST", "url": "Observation"},
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Pulse"},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": format!("Encounter/{enc}")}}}]});
    let api = http
        .post(format!("{}/fhir", app.origin))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::CONFLICT);
    let op = operator();
    // An import too: a new vital sign in the signed visit, and a changed copy of its note.
    let mut changed_note = notes[0].clone();
    changed_note["docStatus"] = json!("preliminary");
    let imported = app
        .records
        .import(
            op.actor(),
            vec![
                json!({"resourceType": "Observation", "id": "late-pulse", "status": "final",
                    "code": {"text": "Pulse"}, "subject": {"reference": "Patient/p1"},
                    "encounter": {"reference": format!("Encounter/{enc}")}}),
                changed_note,
                json!({"resourceType": "Observation", "id": "elsewhere", "status": "final",
                    "code": {"text": "Pulse"}, "subject": {"reference": "Patient/p1"}}),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(imported[0], Err(RecordsError::Locked(_))),
        "{:?}",
        imported[0]
    );
    assert!(
        matches!(imported[1], Err(RecordsError::Locked(_))),
        "{:?}",
        imported[1]
    );
    assert!(
        imported[2].is_ok(),
        "what touches no signed visit is imported"
    );
    let observation = Id::parse(weight["id"].as_str().unwrap()).unwrap();
    assert!(matches!(
        app.records
            .delete(op.actor(), ResourceType::OBSERVATION, &observation)
            .await,
        Err(RecordsError::Locked(_))
    ));
    let mut encounter = app
        .records
        .read(
            op.actor(),
            ResourceType::ENCOUNTER,
            &Id::parse(&enc).unwrap(),
        )
        .await
        .unwrap()
        .value();
    encounter["status"] = json!("in-progress");
    assert!(matches!(
        app.records
            .update(
                op.actor(),
                ResourceType::ENCOUNTER,
                &Id::parse(&enc).unwrap(),
                encounter,
                None
            )
            .await,
        Err(RecordsError::Locked(_))
    ));

    // An addendum keeps the original.
    let addendum = submit(
        &mut dr,
        &visit,
        &format!("{visit}/addenda"),
        &[("text", "Culture came back positive; plan unchanged.")],
    )
    .await;
    assert_eq!(addendum.status, StatusCode::SEE_OTHER, "{}", addendum.body);
    let page = dr.get(&visit).await;
    assert!(
        page.body.contains("Sore throat for 3 days."),
        "the original stays"
    );
    assert!(page.body.contains("Addendum by dr"));
    assert!(page.body.contains("Culture came back positive"));

    // The front desk sees the visit but not its note.
    let mut desk = app.browser();
    desk.sign_in("desk", PASSWORD).await;
    let page = desk.get(&visit).await;
    if page.status == StatusCode::OK {
        assert!(
            !page.body.contains("Sore throat"),
            "no note for the front desk"
        );
    } else {
        assert_eq!(page.status, StatusCode::FORBIDDEN);
    }
}

mod a_visit_from_vitals_to_signed_note {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_visit_from_vitals_to_signed_note(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_visit_from_vitals_to_signed_note(super::Db::Postgres).await;
    }
}

/// Problems, allergies (and "no known allergies" as a statement), immunizations and
/// medications: added, changed, with every version in the history.
async fn lists_are_kept_with_their_history(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    put(
        &app,
        "Patient",
        "p2",
        json!({"resourceType": "Patient", "id": "p2",
        "name": [{"family": "Lee", "given": ["Min"]}], "birthDate": "2000-01-01"}),
    )
    .await;
    app.user("dr", Role::Physician, None).await;
    app.user("desk", Role::FrontDesk, None).await;
    let mut dr = app.browser();
    dr.sign_in("dr", PASSWORD).await;
    let lists = "/patients/p2/lists";

    // Nothing recorded: said so, and "no known allergies" can be recorded as a statement.
    let page = dr.get(lists).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Allergies not recorded"));
    let nka = submit(
        &mut dr,
        lists,
        "/patients/p2/lists/allergies",
        &[("category", "none-known")],
    )
    .await;
    assert_eq!(nka.status, StatusCode::SEE_OTHER, "{}", nka.body);
    assert!(
        dr.get("/patients/p2")
            .await
            .body
            .contains("No known allergies")
    );

    // A problem by typing; a bad onset date is refused next to its field.
    let refused = submit(
        &mut dr,
        lists,
        "/patients/p2/lists/problems",
        &[("problem", "I10"), ("onset", "2999-01-01")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("id=\"onset-error\""));
    assert!(refused.body.contains("value=\"I10\""), "kept");
    let added = submit(
        &mut dr,
        lists,
        "/patients/p2/lists/problems",
        &[("problem", "I10"), ("onset", "2020-05-01")],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);

    // An allergy to a drug ingredient is coded (RxNorm); the banner lists it.
    let allergy = submit(
        &mut dr,
        lists,
        "/patients/p2/lists/allergies",
        &[
            ("substance", "amoxicillin"),
            ("category", "medication"),
            ("reaction", "Rash"),
            ("severity", "moderate"),
        ],
    )
    .await;
    assert_eq!(allergy.status, StatusCode::SEE_OTHER, "{}", allergy.body);
    let chart = dr.get("/patients/p2").await;
    assert!(chart.body.contains("amoxicillin (Rash)"), "{}", chart.body);
    assert!(
        !chart.body.contains("No known allergies"),
        "a listed allergy overrides the statement"
    );

    // An immunization by CVX.
    let imm = submit(
        &mut dr,
        lists,
        "/patients/p2/lists/immunizations",
        &[
            ("vaccine", "03"),
            ("date", "2026-11-01"),
            ("lot", "LOT-9"),
            ("site", "left arm"),
        ],
    )
    .await;
    assert_eq!(imm.status, StatusCode::SEE_OTHER, "{}", imm.body);

    let op = operator();
    let find = |rt: &'static str| {
        let records = app.records.clone();
        async move {
            let q = SearchQuery::parse(rt, &[("patient".to_string(), "p2".to_string())]).unwrap();
            records
                .search(operator().actor(), &q, None)
                .await
                .unwrap()
                .matches
        }
    };
    let conditions = find("Condition").await;
    assert_eq!(conditions[0].value()["code"]["coding"][0]["code"], "I10");
    let allergies = find("AllergyIntolerance").await;
    let coded = allergies
        .iter()
        .map(|r| r.value())
        .find(|a| a["code"]["text"] == "amoxicillin")
        .unwrap();
    assert_eq!(
        coded["code"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    let imms = find("Immunization").await;
    assert_eq!(imms[0].value()["vaccineCode"]["coding"][0]["code"], "03");
    assert_eq!(imms[0].value()["lotNumber"], "LOT-9");

    // Resolve the problem: a new version; the history shows both, who and when.
    let cid = conditions[0].id.to_string();
    let resolved = submit(
        &mut dr,
        lists,
        &format!("/patients/p2/lists/Condition/{cid}/status"),
        &[("status", "resolved")],
    )
    .await;
    assert_eq!(resolved.status, StatusCode::SEE_OTHER, "{}", resolved.body);
    let now = app
        .records
        .read(op.actor(), ResourceType::CONDITION, &conditions[0].id)
        .await
        .unwrap()
        .value();
    assert_eq!(now["clinicalStatus"]["coding"][0]["code"], "resolved");
    assert!(now["abatementDateTime"].is_string());
    let history = dr
        .get(&format!("/patients/p2/lists/Condition/{cid}/history"))
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(
        history.body.contains("<td>resolved</td>") && history.body.contains("<td>active</td>"),
        "{}",
        history.body
    );
    // A status the entry cannot take, and another patient's entry, are refused.
    let bad = submit(
        &mut dr,
        lists,
        &format!("/patients/p2/lists/Condition/{cid}/status"),
        &[("status", "deleted")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    put(
        &app,
        "Patient",
        "p3",
        json!({"resourceType": "Patient", "id": "p3"}),
    )
    .await;
    let other = submit(
        &mut dr,
        lists,
        &format!("/patients/p3/lists/Condition/{cid}/status"),
        &[("status", "inactive")],
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        dr.get(&format!("/patients/p2/lists/Basic/{cid}/history"))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "a list that does not exist"
    );

    // The allergy entered in error: no longer listed; the statement is shown again.
    let aid = allergies
        .iter()
        .find(|r| r.value()["code"]["text"] == "amoxicillin")
        .unwrap()
        .id
        .to_string();
    let wrong = submit(
        &mut dr,
        lists,
        &format!("/patients/p2/lists/AllergyIntolerance/{aid}/status"),
        &[("status", "entered-in-error")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER, "{}", wrong.body);
    let chart = dr.get("/patients/p2").await;
    assert!(!chart.body.contains("amoxicillin (Rash)"));
    assert!(chart.body.contains("No known allergies"));

    // The front desk may read the lists page only as far as its role allows, and changes nothing.
    let mut desk = app.browser();
    desk.sign_in("desk", PASSWORD).await;
    let page = desk.get(lists).await;
    if page.status == StatusCode::OK {
        assert!(!page.body.contains("Add problem"));
    }
}

mod lists_are_kept_with_their_history {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::lists_are_kept_with_their_history(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::lists_are_kept_with_their_history(super::Db::Postgres).await;
    }
}

/// A child's growth chart: percentile curves from the published tables, the child's z-score.
async fn a_childs_growth_is_charted(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    put(&app, "Patient", "kid", json!({"resourceType": "Patient", "id": "kid",
        "name": [{"family": "Young", "given": ["Sam"]}], "gender": "male", "birthDate": "2025-01-01"}))
    .await;
    put(&app, "Observation", "kw", json!({"resourceType": "Observation", "id": "kw", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
        "subject": {"reference": "Patient/kid"}, "effectiveDateTime": "2026-01-01T12:00:00Z",
        "valueQuantity": {"value": 9.6, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}))
    .await;
    put(
        &app,
        "Patient",
        "adult",
        json!({"resourceType": "Patient", "id": "adult",
        "gender": "female", "birthDate": "1970-01-01"}),
    )
    .await;
    app.user("nurse", Role::Nurse, None).await;
    let mut nurse = app.browser();
    nurse.sign_in("nurse", PASSWORD).await;
    let chart = nurse.get("/patients/kid").await;
    assert!(
        chart.body.contains("/patients/kid/growth"),
        "a child's chart links its growth"
    );
    let growth = nurse.get("/patients/kid/growth").await;
    assert_eq!(growth.status, StatusCode::OK);
    assert!(growth.body.contains("Weight-for-age, birth to 24 months"));
    assert!(growth.body.contains("<td>48th</td>"), "{}", growth.body);
    assert!(growth.body.contains("<td>-0.05</td>"));
    assert_eq!(
        growth.body.matches("<polyline").count(),
        7,
        "seven percentile curves"
    );
    assert!(
        !nurse
            .get("/patients/adult")
            .await
            .body
            .contains("/growth\"")
    );
    assert!(
        nurse
            .get("/patients/adult/growth")
            .await
            .body
            .contains("up to 20 years")
    );
}

mod a_childs_growth_is_charted {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_childs_growth_is_charted(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_childs_growth_is_charted(super::Db::Postgres).await;
    }
}

/// Documents: the type decided by the content; served as a download or an image, never a page.
async fn documents_are_kept_safely(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    clinic(&app).await;
    app.user("nurse", Role::Nurse, None).await;
    let mut nurse = app.browser();
    nurse.sign_in("nurse", PASSWORD).await;
    let page = nurse.get("/patients/p1/documents").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.field("csrf");
    let upload = |title: &str, name: &str, mime: &str, bytes: Vec<u8>| {
        reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .text("title", title.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name(name.to_string())
                    .mime_str(mime)
                    .unwrap(),
            )
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[0u8; 64]);
    let added = nurse
        .post_multipart(
            "/patients/p1/documents",
            upload("Rash photo", "rash.png", "image/png", png.clone()),
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);

    // HTML dressed as a PDF is refused, and so is an empty title; what was typed stays.
    let disguised = nurse
        .post_multipart(
            "/patients/p1/documents",
            upload(
                "Letter",
                "letter.pdf",
                "application/pdf",
                b"<html><script>alert(1)</script></html>".to_vec(),
            ),
        )
        .await;
    assert_eq!(disguised.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        disguised.body.contains("Only PDF, PNG and JPEG"),
        "{}",
        disguised.body
    );
    assert!(disguised.body.contains("value=\"Letter\""));
    let untitled = nurse
        .post_multipart(
            "/patients/p1/documents",
            upload("", "a.pdf", "application/pdf", b"%PDF-1.7\n%%EOF".to_vec()),
        )
        .await;
    assert_eq!(untitled.status, StatusCode::UNPROCESSABLE_ENTITY);
    let too_big = nurse
        .post_multipart(
            "/patients/p1/documents",
            upload("Big", "big.pdf", "application/pdf", {
                let mut b = b"%PDF-1.7\n".to_vec();
                b.resize(11 * 1024 * 1024, b' ');
                b
            }),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        too_big.body.contains("a document may be at most 10 MB"),
        "{}",
        too_big.body
    );

    // Listed once; served as an attachment (and an inline image), with nosniff and a sandbox.
    let list = nurse.get("/patients/p1/documents").await;
    assert_eq!(
        list.body.matches("/file\">Download</a>").count(),
        1,
        "{}",
        list.body
    );
    let doc = list
        .body
        .split("/patients/p1/documents/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let file = nurse
        .get_raw(&format!("/patients/p1/documents/{doc}/file"))
        .await;
    assert_eq!(file.status(), StatusCode::OK);
    let h = file.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(file.bytes().await.unwrap().to_vec(), png);
    let preview = nurse
        .get_raw(&format!("/patients/p1/documents/{doc}/preview"))
        .await;
    assert_eq!(preview.headers()["content-type"], "image/png");
    assert_eq!(
        nurse
            .get_raw("/patients/p1/documents/not-there/file")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

mod documents_are_kept_safely {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::documents_are_kept_safely(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::documents_are_kept_safely(super::Db::Postgres).await;
    }
}

/// A result of a test a clinician ordered waits in their "unreviewed" list until acknowledged;
/// who acknowledged it and when is kept.
async fn results_wait_for_their_orderer(db: Db) {
    let Some(app) = start(db, default_policy()).await else {
        return;
    };
    clinic(&app).await;
    app.user("dr", Role::Physician, None).await;
    app.user("nurse", Role::Nurse, None).await;
    let mut dr = app.browser();
    dr.sign_in("dr", PASSWORD).await;
    let started = submit(&mut dr, "/patients/p1", "/patients/p1/visits", &[]).await;
    let visit = started.location().to_string();
    let enc = visit.rsplit('/').next().unwrap().to_string();
    let test = Terminology::shipped().orders().next().unwrap().clone();
    let ordered = submit(
        &mut dr,
        &visit,
        &format!("{visit}/orders"),
        &[("code", &test.code)],
    )
    .await;
    assert_eq!(ordered.status, StatusCode::SEE_OTHER);
    let order = in_visit(&app, "ServiceRequest", &enc).await[0].clone();
    assert!(
        order["requester"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/"),
        "the orderer is a Practitioner: {order}"
    );
    // The laboratory's result arrives.
    put(&app, "Observation", "k9", json!({"resourceType": "Observation", "id": "k9", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {"value": 6.1, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]}))
    .await;
    put(
        &app,
        "DiagnosticReport",
        "r9",
        json!({"resourceType": "DiagnosticReport", "id": "r9", "status": "final",
        "code": {"text": "Potassium check"}, "subject": {"reference": "Patient/p1"},
        "basedOn": [{"reference": format!("ServiceRequest/{}", order["id"].as_str().unwrap())}],
        "effectiveDateTime": "2026-12-01T08:00:00Z", "result": [{"reference": "Observation/k9"}]}),
    )
    .await;

    let home = dr.get("/").await;
    assert!(home.body.contains("My unreviewed results"));
    assert!(home.body.contains("Potassium check"), "{}", home.body);
    assert!(home.body.contains("RIVERA, Ana"));
    let mut nurse = app.browser();
    nurse.sign_in("nurse", PASSWORD).await;
    assert!(
        !nurse.get("/").await.body.contains("Potassium check"),
        "only the orderer's list"
    );

    let results = dr.get("/patients/p1/results").await;
    assert!(results.body.contains("Not reviewed yet"));
    let reviewed = submit(
        &mut dr,
        "/patients/p1/results",
        "/patients/p1/results/r9/review",
        &[],
    )
    .await;
    assert_eq!(reviewed.status, StatusCode::SEE_OTHER, "{}", reviewed.body);
    let results = dr.get("/patients/p1/results").await;
    assert!(
        results.body.contains("Reviewed by dr on "),
        "{}",
        results.body
    );
    assert!(
        !dr.get("/").await.body.contains("Potassium check"),
        "acknowledged: off the list"
    );
    // Acknowledged once: a second acknowledgement keeps the first.
    let again = submit(
        &mut nurse,
        "/patients/p1/results",
        "/patients/p1/results/r9/review",
        &[],
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(
        dr.get("/patients/p1/results")
            .await
            .body
            .contains("Reviewed by dr on ")
    );
    let audit = app.audit_actions("user:dr").await;
    assert!(
        audit
            .iter()
            .any(|(a, o, _)| a == "result-review" && o == "success"),
        "{audit:?}"
    );
    // Another patient's report cannot be acknowledged through this chart.
    put(
        &app,
        "Patient",
        "p5",
        json!({"resourceType": "Patient", "id": "p5"}),
    )
    .await;
    let other = submit(
        &mut dr,
        "/patients/p1/results",
        "/patients/p5/results/r9/review",
        &[],
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

mod results_wait_for_their_orderer {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::results_wait_for_their_orderer(super::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::results_wait_for_their_orderer(super::Db::Postgres).await;
    }
}
