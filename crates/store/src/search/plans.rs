//! Query-plan tests: every query shape the search code builds for the searches real clients
//! send (US Core searches with bare and typed patient ids, the policy conditions, paging, sorting
//! and includes) must seek through an index, never scan an index table or `resources`. A scan
//! is what made a bare patient id 130 times slower than a typed one; these tests would have
//! caught it.

use ironchart_fhir::search::SearchQuery;

use crate::db::{Arg, Backend, Store};
use crate::search::{Cursor, KeyValue, sql};
use crate::visibility::{CompartmentRule, Sensitivity, Visibility};

/// The US Core searches (and their bare-id forms) whose plans are checked.
const SHAPES: &[(&str, &str)] = &[
    ("Patient", "_id=p1"),
    ("Patient", "identifier=urn:mrn|A1"),
    ("Patient", "name=smi"),
    ("Patient", "family=smi&given=jo"),
    ("Patient", "family:exact=Smith"),
    ("Patient", "name=smi&_sort=family"),
    ("Patient", "birthdate=1970-01-15&name=smi"),
    ("Patient", "gender=male&name=smi"),
    ("AllergyIntolerance", "patient=p1"),
    ("Condition", "patient=p1"),
    ("Condition", "patient=Patient/p1&category=problem-list-item"),
    ("Condition", "patient=p1&clinical-status=active"),
    (
        "Condition",
        "patient=p1&code=http://snomed.info/sct|44054006",
    ),
    ("Condition", "patient=p1&onset-date=ge2020-01-01"),
    ("DiagnosticReport", "patient=p1&category=LAB"),
    (
        "DiagnosticReport",
        "patient=p1&code=http://loinc.org|58410-2",
    ),
    (
        "DiagnosticReport",
        "patient=p1&category=LAB&date=ge2020-01-01",
    ),
    ("DocumentReference", "patient=p1&category=clinical-note"),
    (
        "DocumentReference",
        "patient=p1&type=http://loinc.org|11506-3",
    ),
    ("Encounter", "patient=p1"),
    ("Encounter", "patient=p1&date=ge2020-01-01"),
    ("Immunization", "patient=p1"),
    ("MedicationRequest", "patient=p1&intent=order"),
    ("MedicationRequest", "patient=p1&intent=order&status=active"),
    (
        "MedicationRequest",
        "patient=p1&intent=order&_include=MedicationRequest:medication",
    ),
    ("Observation", "patient=p1&category=vital-signs"),
    (
        "Observation",
        "patient=p1&category=laboratory&date=ge2020-01-01",
    ),
    ("Observation", "patient=p1&code=http://loinc.org|8867-4"),
    (
        "Observation",
        "patient=Patient/p1&code=http://loinc.org|8867-4&date=ge2020-01-01",
    ),
    ("Observation", "subject=p1"),
    ("Observation", "subject=Patient/p1"),
    ("Observation", "patient=p1&_sort=-date"),
    ("Observation", "patient=p1&_sort=date"),
    (
        "Observation",
        "subject=Patient/p1&category=laboratory&_sort=-date",
    ),
    ("Encounter", "patient=p1&_sort=-date"),
    ("Condition", "patient=p1&_sort=-onset-date"),
    ("DiagnosticReport", "patient=p1&category=LAB&_sort=-date"),
    ("Observation", "subject:Patient.family=smi"),
    ("Procedure", "patient=p1&date=ge2020-01-01"),
    ("CarePlan", "patient=p1&category=assess-plan"),
    ("CareTeam", "patient=p1&status=active"),
    ("Goal", "patient=p1"),
    ("ServiceRequest", "patient=p1&category=108252007"),
    ("ServiceRequest", "patient=p1&code=http://loinc.org|24357-6"),
    ("Coverage", "patient=p1"),
    ("Device", "patient=p1"),
    ("Practitioner", "name=smi"),
    (
        "Practitioner",
        "identifier=http://hl7.org/fhir/sid/us-npi|1234567893",
    ),
    ("Organization", "name=clinic"),
    ("Location", "name=clinic"),
    ("Patient", "_id=p1&_revinclude=Observation:subject"),
    ("Encounter", "patient=p1&_revinclude=Observation:encounter"),
    ("Observation", "patient=p1&_include=Observation:performer"),
    // Chains, into stored and contained resources: driving, and probed per candidate.
    ("MedicationRequest", "medication.code=860975"),
    ("MedicationRequest", "patient=p1&medication.code=860975"),
    // Population searches sorted by a date: walked by the date's index.
    ("Observation", "category=laboratory&_sort=-date"),
    ("Observation", "category=laboratory&_sort=date"),
    ("Observation", "status=final&_sort=-date,_id"),
    ("DiagnosticReport", "category=LAB&_sort=-issued"),
    ("Encounter", "status=finished&_sort=-date"),
    // Population searches in the default order: walked by row id.
    ("Observation", "code=http://loinc.org|8867-4"),
    ("Observation", "date=ge2025-01-01"),
    ("Encounter", "date=ge2025-01-01&status=finished"),
];

fn query(rtype: &str, text: &str) -> SearchQuery {
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SearchQuery::parse(rtype, &pairs).unwrap_or_else(|e| panic!("{rtype}?{text}: {e}"))
}

/// What the policy adds for a patient: their compartment, the R ceiling, a grant.
fn patient_visibility() -> Visibility {
    Visibility {
        types: None,
        compartment: Some(CompartmentRule {
            patient: "p1".into(),
            shared_types: vec!["Practitioner".into(), "Organization".into()],
        }),
        max_sensitivity: Sensitivity::Restricted,
        unrestricted_patients: Vec::new(),
        grant_ceiling: Sensitivity::Restricted,
    }
}

fn clinician_visibility() -> Visibility {
    Visibility {
        types: None,
        compartment: None,
        max_sensitivity: Sensitivity::Normal,
        unrestricted_patients: vec!["p2".into()],
        grant_ceiling: Sensitivity::VeryRestricted,
    }
}

/// The SQL texts a search builds: its first page, a later page, its count, and what its
/// patients are for the audit.
fn statements(q: &SearchQuery, vis: &Visibility, b: Backend) -> Vec<(String, Vec<Arg>, bool)> {
    let mut out: Vec<(String, Vec<Arg>, bool)> = plain_statements(q, vis, b)
        .into_iter()
        .map(|(t, a)| (t, a, false))
        .collect();
    // A walk reads a date's index in order from a key, as far as its LIMIT: a seek on the type
    // and parameter alone is what it is meant to do there.
    if let Some((def, desc)) = sql::walk_key(q) {
        if let Some(few) = sql::driver_up_to(q, 500) {
            out.push((few.text, few.args, false));
        }
        for from in [None, Some(1_600_000_000_000)] {
            let w = sql::walk_window(q, def, desc, from, 4096);
            out.push((w.text, w.args, true));
        }
        let cursor = Cursor {
            forward: true,
            keys: sql::key_types(q)
                .iter()
                .map(|t| match t {
                    sql::KeyType::Text => KeyValue::Text("m".into()),
                    sql::KeyType::Int => KeyValue::Int(1_600_000_000_000),
                    sql::KeyType::Float => KeyValue::Float(1.0),
                })
                .collect(),
            rid: 10,
        };
        let window = |from| sql::WalkBound { from, rows: 84 };
        for (c, bound) in [
            (None, window(None)),
            (Some(&cursor), window(Some(1_600_000_000_000))),
        ] {
            let p = sql::walk_page(q, (def, desc), c, bound, 21, vis, b);
            out.push((p.text, p.args, true));
        }
        let rest = sql::page(&sql::without_value(q, def), None, 21, vis, b);
        out.push((rest.text, rest.args, false));
    }
    // A search about one patient sorted by a date: that patient's dates walked in order.
    if let Some(walk) = sql::scoped_walk(q) {
        let cursor = Cursor {
            forward: true,
            keys: vec![KeyValue::Int(1_600_000_000_000)],
            rid: 10,
        };
        for c in [None, Some(&cursor)] {
            let p = sql::scoped_walk_page(q, &walk, c, 21, vis, b);
            out.push((p.text.clone(), p.args.clone(), false));
            // As it is sent: the dates, then the matches without one, in one statement.
            let rest = sql::scoped_dateless_page(q, &walk, None, 21, vis, b);
            let both = sql::then(p, rest, 21);
            out.push((both.text, both.args, false));
        }
        // The matches without a date alone, from a cursor among them.
        let among = Cursor {
            forward: true,
            keys: vec![KeyValue::Int(sql::missing_date_key(walk.desc))],
            rid: 10,
        };
        for c in [None, Some(&among)] {
            let rest = sql::scoped_dateless_page(q, &walk, c, 21, vis, b);
            out.push((rest.text, rest.args, false));
        }
    }
    if sql::rid_walkable(q) {
        if let Some(few) = sql::driver_up_to(q, 500) {
            out.push((few.text, few.args, false));
        }
        out.push((crate::db::MAX_RID.to_string(), Vec::new(), false));
        let w = sql::rid_window(q, 10, 4096);
        out.push((w.text, w.args, true));
        let cursor = Cursor {
            forward: true,
            keys: Vec::new(),
            rid: 10,
        };
        for c in [None, Some(&cursor)] {
            let p = sql::rid_walk_page(q, c, 256, 21, vis, b);
            out.push((p.text, p.args, false));
        }
    }
    out
}

fn plain_statements(q: &SearchQuery, vis: &Visibility, b: Backend) -> Vec<(String, Vec<Arg>)> {
    let mut out = Vec::new();
    let first = sql::page(q, None, 21, vis, b);
    out.push((first.text, first.args));
    let keys: Vec<KeyValue> = sql::key_types(q)
        .iter()
        .map(|t| match t {
            sql::KeyType::Text => KeyValue::Text("m".into()),
            sql::KeyType::Int => KeyValue::Int(1_600_000_000_000),
            sql::KeyType::Float => KeyValue::Float(1.0),
        })
        .collect();
    let cursor = Cursor {
        forward: true,
        keys,
        rid: 10,
    };
    let next = sql::page(q, Some(&cursor), 21, vis, b);
    out.push((next.text, next.args));
    let count = sql::count(q, vis);
    out.push((count.text, count.args));
    let by_patient = sql::count_by_patient(q, vis, b);
    out.push((by_patient.text, by_patient.args));
    let patients = sql::match_patients(q, vis, 1001);
    out.push((patients.text, patients.args));
    // What a page of matches includes.
    let rids: Vec<i64> = (1..=20).collect();
    let ids: Vec<String> = (1..=20).map(|i| format!("id-{i}")).collect();
    for inc in &q.includes {
        let sql = super::include_sql(inc, &rids, vis);
        out.push((sql.text, sql.args));
    }
    for inc in &q.revincludes {
        let sql = super::revinclude_sql(inc, &q.resource_type, &ids, vis);
        out.push((sql.text, sql.args));
    }
    out
}

/// The columns a seek's condition constrains (`res_type=? AND param=?` → both).
fn constrained(condition: &str) -> Vec<String> {
    condition
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .zip(
            condition
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .skip(1),
        )
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, _)| name.rsplit('.').next().unwrap_or(name).to_string())
        .filter(|name| {
            matches!(
                name.as_str(),
                "res_type"
                    | "param"
                    | "rid"
                    | "rowid"
                    | "res_id"
                    | "target_id"
                    | "target_type"
                    | "url"
                    | "value"
                    | "system"
                    | "code"
                    | "text"
                    | "low"
                    | "high"
                    | "patient"
                    | "ident_value"
                    | "ident_system"
                    | "exact"
                    | "unit"
                    | "version"
            )
        })
        .collect()
}

/// A line of a plan that reads a whole table, a whole index, or every row of one parameter
/// (a seek on the type and parameter alone, the value tested row by row: the bare-id defect),
/// instead of seeking to the rows it needs.
fn scans(backend: &str, plan: &[String], walk: bool) -> Vec<String> {
    let walked =
        |line: &str| walk && (line.contains("idx_date_high") || line.contains("idx_date_low"));
    let param_wide = |condition: &str| {
        let cols = constrained(condition);
        !cols.is_empty() && cols.iter().all(|c| c == "res_type" || c == "param")
    };
    let mut walking = false;
    plan.iter()
        .filter(|line| {
            // PostgreSQL names the index on one line and its condition on the next.
            let was = walking;
            walking = walked(line);
            !(walking || was && line.contains("Index Cond:"))
        })
        .filter(|line| match backend {
            // SQLite: `SCAN t` (a whole table or index) is a scan; `SEARCH t USING INDEX i
            // (res_type=? AND param=?)` reads every row of a parameter.
            "sqlite" => {
                let l = line.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
                // `SCAN m`, `w`, `c`, `a`, `b`: the rows of a subquery with a LIMIT (a page, a
                // walk's window, a bounded count, the parts of `sql::then`), not of a table.
                let bounded = matches!(l, "SCAN m" | "SCAN w" | "SCAN c" | "SCAN a" | "SCAN b");
                (l.starts_with("SCAN ") && !l.starts_with("SCAN CONSTANT") && !bounded)
                    || (l.starts_with("SEARCH ")
                        && l.split_once('(').is_some_and(|(_, cond)| param_wide(cond)))
            }
            // PostgreSQL (sequential scans made as costly as it allows): a `Seq Scan` left in
            // the plan means no index could serve; an index condition on the type and
            // parameter alone reads every row of the parameter.
            _ => {
                line.contains("Seq Scan")
                    || line
                        .split_once("Index Cond:")
                        .is_some_and(|(_, cond)| param_wide(cond))
            }
        })
        .cloned()
        .collect()
}

async fn check_plans(store: Store, backend: &str) {
    if backend == "postgres" {
        let mut writer = store.writer().await.unwrap();
        writer
            .conn()
            .execute_script(include_str!("plans_seed.postgres.sql"))
            .await
            .unwrap();
    }
    let mut conn = store.reader().await.unwrap();
    if backend == "postgres" {
        conn.execute("SET enable_seqscan = off", vec![])
            .await
            .unwrap();
        conn.execute("SET plan_cache_mode = force_generic_plan", vec![])
            .await
            .unwrap();
    }
    let mut bad = Vec::new();
    for (rtype, text) in SHAPES {
        let q = query(rtype, text);
        for vis in [
            Visibility::all(),
            patient_visibility(),
            clinician_visibility(),
        ] {
            for (sql_text, args, walk) in statements(&q, &vis, store.backend()) {
                let explain = if backend == "sqlite" {
                    ["EXPLAIN QUERY PLAN ", &sql_text].concat()
                } else {
                    ["EXPLAIN ", &sql_text].concat()
                };
                let generic = if backend == "postgres" {
                    generic_plan(&mut conn, &sql_text, &args).await
                } else {
                    Vec::new()
                };
                let plan: Vec<String> = conn
                    .fetch(&explain, args, |r| {
                        // SQLite: (id, parent, notused, detail); PostgreSQL: one text column.
                        if backend == "sqlite" {
                            r.text(3)
                        } else {
                            r.text(0)
                        }
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{rtype}?{text}: {e}\n{sql_text}"));
                let scanned = scans(backend, &plan, walk);
                if !scanned.is_empty() {
                    bad.push(format!("{rtype}?{text}: {scanned:?}\n  {sql_text}"));
                }
                let scanned = scans(backend, &generic, walk);
                if !scanned.is_empty() {
                    bad.push(format!(
                        "{rtype}?{text} (generic plan): {scanned:?}\n  {sql_text}"
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} statements scan:\n{}",
        bad.len(),
        bad.join("\n")
    );
    drop(conn);
    store.close().await;
}

/// PostgreSQL's generic plan of a statement: the one its read connections run (they plan a
/// statement once, not for each execution's values; see `Store::open_postgres`). It does not
/// depend on the values, so the statement is explained with nulls.
async fn generic_plan(conn: &mut crate::db::PoolConn, sql_text: &str, args: &[Arg]) -> Vec<String> {
    let types: Vec<&str> = args
        .iter()
        .map(|a| match a {
            Arg::Text(_) | Arg::OptText(_) => "text",
            Arg::I64(_) | Arg::OptI64(_) => "bigint",
            Arg::F64(_) => "double precision",
            Arg::Bool(_) => "boolean",
            Arg::Bytes(_) => "bytea",
        })
        .collect();
    let prepare = if types.is_empty() {
        format!("PREPARE plan_check AS {sql_text}")
    } else {
        format!("PREPARE plan_check ({}) AS {sql_text}", types.join(", "))
    };
    conn.execute(&prepare, vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{prepare}"));
    let nulls = vec!["NULL"; args.len()].join(", ");
    let explain = if args.is_empty() {
        "EXPLAIN EXECUTE plan_check".to_string()
    } else {
        format!("EXPLAIN EXECUTE plan_check ({nulls})")
    };
    let plan = conn
        .fetch(&explain, vec![], |r| r.text(0))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql_text}"));
    conn.execute("DEALLOCATE plan_check", vec![]).await.unwrap();
    plan
}

#[tokio::test]
async fn every_us_core_search_seeks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("t.sqlite3"))
        .await
        .unwrap();
    check_plans(store, "sqlite").await;
}

#[tokio::test]
async fn every_us_core_search_seeks_on_postgres() {
    let Some(url) = crate::test_database_url() else {
        return;
    };
    let schema = format!(
        "t_plans_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let store = Store::open_postgres(&url, Some(&schema)).await.unwrap();
    check_plans(store, "postgres").await;
}

/// A code from a small fixed set (gender, a status) never leads when another index lookup can:
/// `Patient?gender=male&name=smi` is led by the name (led by the gender, it read half the
/// patients).
#[test]
fn small_code_sets_do_not_lead() {
    for (rtype, text, leader) in [
        (
            "Patient",
            "gender=male&name=smi",
            "IN (SELECT rid FROM idx_string",
        ),
        (
            "Patient",
            "name=smi&gender=male",
            "IN (SELECT rid FROM idx_string",
        ),
        (
            "Observation",
            "category=laboratory&code=http://loinc.org|8867-4",
            "IN (SELECT rid FROM idx_token WHERE res_type = $1 AND param = $2 AND ((code = $3 AND system",
        ),
        (
            "Encounter",
            "date=ge2025-01-01&status=finished",
            "IN (SELECT rid FROM idx_token",
        ),
    ] {
        let q = query(rtype, text);
        let page = sql::page(&q, None, 21, &Visibility::all(), Backend::Sqlite);
        assert!(page.text.contains(leader), "{rtype}?{text}: {}", page.text);
    }
}
