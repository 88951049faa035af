//! Schema migrations: one numbered list per backend, kept in step (a test checks that both lists
//! have the same versions). A database from a newer ironchart is refused, never "downgraded".

use crate::db::{Arg, Pools, Store};
use crate::{Result, StoreError};

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("../migrations/sqlite/0001_resources.sql"),
        postgres: include_str!("../migrations/postgres/0001_resources.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("../migrations/sqlite/0002_security.sql"),
        postgres: include_str!("../migrations/postgres/0002_security.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("../migrations/sqlite/0003_version_rows.sql"),
        postgres: include_str!("../migrations/postgres/0003_version_rows.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("../migrations/sqlite/0004_version_sensitivity.sql"),
        postgres: include_str!("../migrations/postgres/0004_version_sensitivity.sql"),
    },
    Migration {
        version: 5,
        sqlite: include_str!("../migrations/sqlite/0005_bare_reference_ids.sql"),
        postgres: include_str!("../migrations/postgres/0005_bare_reference_ids.sql"),
    },
    Migration {
        version: 6,
        sqlite: include_str!("../migrations/sqlite/0006_walk_indexes.sql"),
        postgres: include_str!("../migrations/postgres/0006_walk_indexes.sql"),
    },
    Migration {
        version: 7,
        sqlite: include_str!("../migrations/sqlite/0007_dates_by_reference.sql"),
        postgres: include_str!("../migrations/postgres/0007_dates_by_reference.sql"),
    },
    Migration {
        version: 8,
        sqlite: include_str!("../migrations/sqlite/0008_signatures.sql"),
        postgres: include_str!("../migrations/postgres/0008_signatures.sql"),
    },
    Migration {
        version: 9,
        sqlite: include_str!("../migrations/sqlite/0009_index_rows_carry_rid.sql"),
        postgres: include_str!("../migrations/postgres/0009_index_rows_carry_rid.sql"),
    },
    Migration {
        version: 10,
        sqlite: include_str!("../migrations/sqlite/0010_index_rows_carry_patient.sql"),
        postgres: include_str!("../migrations/postgres/0010_index_rows_carry_patient.sql"),
    },
    Migration {
        version: 11,
        sqlite: include_str!(
            "../migrations/sqlite/0011_dates_say_when_their_resource_has_more.sql"
        ),
        postgres: include_str!(
            "../migrations/postgres/0011_dates_say_when_their_resource_has_more.sql"
        ),
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = 11;

/// The first version that rebuilds the index tables: an upgrade across it leaves PostgreSQL's
/// new tables without statistics and their pages not yet marked all-visible (every index-only
/// read would visit the table) until they are vacuumed.
const REBUILDS_INDEX_TABLES: i64 = 10;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS ironchart_schema (version BIGINT NOT NULL, applied_at BIGINT NOT NULL)";

impl Store {
    /// Creates or upgrades the schema. Each migration runs in its own transaction (a
    /// [`Store::begin`] one, so that a connection whose migration could not be ended is never
    /// lent again).
    pub(crate) async fn migrate(&self) -> Result<()> {
        let current = {
            let mut conn = self.writer().await?;
            let mut c = conn.conn();
            c.execute(CREATE_VERSION_TABLE, vec![]).await?;
            c.fetch(
                "SELECT COALESCE(MAX(version), 0) FROM ironchart_schema",
                vec![],
                |r| r.i64(0),
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or(0)
        };
        if current > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        let is_sqlite = matches!(self.pools, Pools::Sqlite { .. });
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            if current > 0 {
                // Some upgrades rebuild a large table: say why start-up takes its time.
                tracing::info!(
                    "upgrading the database schema to version {} (from {})",
                    m.version,
                    m.version - 1
                );
            }
            let script = if is_sqlite { m.sqlite } else { m.postgres };
            // On an error the transaction is dropped unfinished: it rolls back.
            let mut tx = self.begin().await?;
            tx.conn().execute_script(script).await?;
            tx.conn()
                .execute(
                    "INSERT INTO ironchart_schema (version, applied_at) VALUES ($1, $2)",
                    vec![
                        Arg::I64(m.version),
                        Arg::I64(ironchart_fhir::Instant::now().as_millis()),
                    ],
                )
                .await?;
            tx.commit().await?;
        }
        if !is_sqlite && current > 0 && current < REBUILDS_INDEX_TABLES {
            tracing::info!("vacuuming and analyzing the rebuilt index tables");
            let mut conn = self.writer().await?;
            conn.execute(
                "VACUUM (ANALYZE) idx_string, idx_token, idx_date, idx_number, idx_quantity, idx_reference, idx_uri",
                vec![],
            )
            .await?;
        }
        Ok(())
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.reader().await?;
        Ok(conn
            .fetch(
                "SELECT COALESCE(MAX(version), 0) FROM ironchart_schema",
                vec![],
                |r| r.i64(0),
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sensitivity;

    #[test]
    fn versions_are_in_step_and_ordered() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        // Both backends end with the same tables and indexes (a migration may rebuild a table
        // on one backend only, as 3 does on SQLite).
        let schema = |script: fn(&Migration) -> &'static str| {
            let mut names = std::collections::BTreeSet::new();
            for m in MIGRATIONS {
                let mut words: Vec<String> = script(m)
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .flat_map(str::split_whitespace)
                    .map(|w| w.trim_end_matches([';', '(']).to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
                // Room for a statement of three words at the end.
                words.extend(std::iter::repeat_n(String::new(), 5));
                for w in words.windows(6) {
                    match (w[0].as_str(), w[1].as_str()) {
                        ("CREATE", "TABLE" | "INDEX") => {
                            names.insert(w[2].clone());
                        }
                        ("DROP", "TABLE" | "INDEX") => {
                            names.remove(&w[2]);
                        }
                        ("ALTER", "TABLE") if w[3] == "RENAME" && w[4] == "TO" => {
                            names.remove(&w[2]);
                            names.insert(w[5].clone());
                        }
                        _ => {}
                    }
                }
            }
            names
        };
        let sqlite = schema(|m| m.sqlite);
        assert!(sqlite.contains("resource_versions") && sqlite.contains("audit_log"));
        assert!(!sqlite.contains("resource_versions_v3"));
        // PostgreSQL alone has a covering index of the resources' rows (migration 9): SQLite
        // reads a row by its row id directly.
        let mut postgres = schema(|m| m.postgres);
        assert!(postgres.remove("resources_cover"));
        assert_eq!(sqlite, postgres);
    }

    /// A SQLite database made by the first `version` migrations, as an older ironchart left it.
    async fn database_at_schema(path: &std::path::Path, version: usize) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(CREATE_VERSION_TABLE)
            .execute(&mut c)
            .await
            .unwrap();
        for m in &MIGRATIONS[..version] {
            sqlx::raw_sql(m.sqlite).execute(&mut c).await.unwrap();
            sqlx::query("INSERT INTO ironchart_schema (version, applied_at) VALUES (?, 0)")
                .bind(m.version)
                .execute(&mut c)
                .await
                .unwrap();
        }
        c
    }

    /// A database made by schema 2 (resource_versions as a WITHOUT ROWID table) upgrades with
    /// every version, body and column intact, and its versions are then a rowid table.
    #[tokio::test]
    async fn a_schema_2_database_upgrades_with_every_version_intact() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let mut c = database_at_schema(&path, 2).await;
        let old: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'resource_versions'")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert!(old.contains("WITHOUT ROWID"));
        // Two resources: one with three versions (the last a delete, no body), one restricted.
        sqlx::raw_sql(
            "INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted, patient, sensitivity) \
             VALUES (1, 'Patient', 'p1', 3, 30, TRUE, 'p1', 0), (2, 'Observation', 'o1', 1, 40, FALSE, 'p1', 1)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        let body = |n: u8| vec![n; 3000 + n as usize];
        for (rid, version, updated, deleted, method, b, sensitivity) in [
            (1, 1, 10, false, "POST", Some(body(1)), 0),
            (1, 2, 20, false, "PUT", Some(body(2)), 2),
            (1, 3, 30, true, "DELETE", None, 0),
            (2, 1, 40, false, "POST", Some(body(4)), 1),
        ] {
            sqlx::query(
                "INSERT INTO resource_versions (rid, version, last_updated, deleted, method, body, patient, sensitivity) \
                 VALUES (?, ?, ?, ?, ?, ?, 'p1', ?)",
            )
            .bind(rid)
            .bind(version)
            .bind(updated)
            .bind(deleted)
            .bind(method)
            .bind(b)
            .bind(sensitivity)
            .execute(&mut c)
            .await
            .unwrap();
        }
        c.close().await.unwrap();

        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        let v1 = store.vread("Patient", "p1", 1).await.unwrap().unwrap();
        assert_eq!(
            (v1.body, v1.method.as_str(), v1.last_updated, v1.deleted),
            (Some(body(1)), "POST", 10, false)
        );
        let v2 = store.vread("Patient", "p1", 2).await.unwrap().unwrap();
        assert_eq!(
            (v2.body, v2.sensitivity, v2.patient.as_deref()),
            (Some(body(2)), Sensitivity::VeryRestricted, Some("p1"))
        );
        let v3 = store.read("Patient", "p1").await.unwrap().unwrap();
        assert_eq!((v3.version, v3.deleted, v3.body), (3, true, None));
        let o = store.read("Observation", "o1").await.unwrap().unwrap();
        assert_eq!(
            (o.body, o.sensitivity),
            (Some(body(4)), Sensitivity::Restricted)
        );
        assert!(store.vread("Patient", "p1", 4).await.unwrap().is_none());
        let mut conn = store.reader().await.unwrap();
        let schema = conn
            .fetch(
                "SELECT name, sql FROM sqlite_master WHERE name IN ('resource_versions', 'resource_versions_updated') ORDER BY name",
                vec![],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )
            .await
            .unwrap();
        let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["resource_versions", "resource_versions_updated"]);
        assert!(!schema[0].1.contains("WITHOUT ROWID"), "{}", schema[0].1);
        drop(conn);
        store.close().await;
    }

    /// A schema-6 database's dates are found by the references its resources already have:
    /// after the upgrade, a chart sorted by a date (walked under the patient's id) finds them,
    /// newest first, and a contained resource's dates stay its own.
    #[tokio::test]
    async fn a_schema_6_database_walks_its_charts_by_date() {
        use crate::Visibility;
        use ironchart_fhir::search::SearchQuery;
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let mut c = database_at_schema(&path, 6).await;
        sqlx::raw_sql(
            "INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted, patient, sensitivity) VALUES \
               (1, 'Patient', 'p1', 1, 1, FALSE, 'p1', 0), (2, 'Observation', 'o1', 1, 1, FALSE, 'p1', 0), \
               (3, 'Observation', 'o2', 1, 1, FALSE, 'p1', 0), (4, 'Observation', 'o3', 1, 1, FALSE, 'p1', 0); \
             INSERT INTO resource_versions (rid, version, last_updated, deleted, method, body, patient, sensitivity) VALUES \
               (1, 1, 1, FALSE, 'PUT', x'00', 'p1', 0), (2, 1, 1, FALSE, 'PUT', x'01', 'p1', 0), \
               (3, 1, 1, FALSE, 'PUT', x'02', 'p1', 0), (4, 1, 1, FALSE, 'PUT', x'03', 'p1', 0); \
             INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url) VALUES \
               (2, 'Observation', 'subject', 'Patient', 'p1', 'Patient/p1'), \
               (3, 'Observation', 'subject', 'Patient', 'p1', 'Patient/p1'), \
               (4, 'Observation', 'subject', 'Patient', 'p1', 'Patient/p1'); \
             INSERT INTO idx_date (rid, res_type, param, low, high) VALUES \
               (2, 'Observation', 'date', 100, 199), (3, 'Observation', 'date', 300, 399), \
               (3, 'Observation', 'date', 50, 60), (4, 'Observation', 'date', 200, 299), \
               (4, 'Specimen', '#s1:collected', 900, 999);",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();

        let store = Store::open_sqlite(&path).await.unwrap();
        let pairs = |s: &str| -> Vec<(String, String)> {
            s.split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect()
        };
        for (text, want) in [
            ("patient=p1&_sort=-date", ["o2", "o3", "o1"]),
            ("subject=Patient/p1&_sort=date", ["o2", "o1", "o3"]),
        ] {
            let q = SearchQuery::parse("Observation", &pairs(text)).unwrap();
            assert!(crate::search::sql::scoped_walk(&q).is_some(), "{text}");
            let page = store.search(&q, None, &Visibility::all()).await.unwrap();
            let got: Vec<&str> = page.matches.iter().map(|m| m.res_id.as_str()).collect();
            assert_eq!(got, want, "{text}");
        }
        let mut conn = store.reader().await.unwrap();
        let rows = conn
            .fetch(
                "SELECT rid, param, target_id, low, high FROM idx_ref_date ORDER BY rid",
                vec![],
                |r| Ok((r.i64(0)?, r.text(1)?, r.text(2)?, r.i64(3)?, r.i64(4)?)),
            )
            .await
            .unwrap();
        let date = |rid, low, high| (rid, "date".to_string(), "p1".to_string(), low, high);
        assert_eq!(
            rows,
            [date(2, 100, 199), date(3, 50, 399), date(4, 200, 299)]
        );
        drop(conn);
        store.close().await;
    }

    /// Rows of a schema-9 database (index rows without their patient), for the upgrade tests.
    const SCHEMA_9_ROWS: &str = "INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted, patient, sensitivity) VALUES \
               (1, 'Patient', 'p1', 1, 1, FALSE, 'p1', 0), (2, 'Observation', 'o1', 1, 1, FALSE, 'p1', 0), \
               (3, 'Observation', 'o2', 1, 1, FALSE, 'p2', 0), (4, 'Practitioner', 'd1', 1, 1, FALSE, NULL, 0); \
             INSERT INTO idx_string (rid, res_type, param, value, exact) VALUES \
               (1, 'Patient', 'name', 'lee', 'Lee'), (4, 'Practitioner', 'name', 'kim', 'Kim'); \
             INSERT INTO idx_token (rid, res_type, param, system, code, text) VALUES \
               (2, 'Observation', 'code', 'http://loinc.org', '8867-4', 'heart rate'), \
               (3, 'Observation', 'code', 'http://loinc.org', '8867-4', NULL); \
             INSERT INTO idx_date (rid, res_type, param, low, high) VALUES (2, 'Observation', 'date', 100, 199), \
               (3, 'Observation', 'date', 70, 80), (3, 'Observation', 'date', 50, 60); \
             INSERT INTO idx_number (rid, res_type, param, value) VALUES (2, 'Observation', 'n', 1.5); \
             INSERT INTO idx_quantity (rid, res_type, param, value, system, code, unit) VALUES \
               (3, 'Observation', 'value-quantity', 72.5, 'http://unitsofmeasure.org', '/min', 'bpm'); \
             INSERT INTO idx_reference (rid, res_type, param, target_type, target_id, url, ident_system, ident_value) VALUES \
               (2, 'Observation', 'subject', 'Patient', 'p1', 'Patient/p1', NULL, NULL), \
               (3, 'Observation', 'subject', 'Patient', 'p2', 'Patient/p2', 's', 'v'); \
             INSERT INTO idx_uri (rid, res_type, param, value) VALUES (4, 'Practitioner', 'u', 'urn:x');";

    /// After the upgrade: each index row has its resource's patient (none for a resource in no
    /// compartment) and every value it had, a date whose resource has several for its parameter
    /// says so (schema 11); a count names the patients.
    async fn index_rows_have_their_patient(store: Store) {
        use crate::Visibility;
        use ironchart_fhir::search::SearchQuery;
        let mut conn = store.reader().await.unwrap();
        let mut rows = Vec::new();
        for (table, values) in [
            ("idx_string", "value || '/' || exact"),
            (
                "idx_token",
                "system || '|' || code || '/' || COALESCE(text, '-')",
            ),
            (
                "idx_date",
                "low || '-' || high || CASE WHEN multi THEN ' several' ELSE '' END",
            ),
            ("idx_number", "value"),
            (
                "idx_quantity",
                "value || ' ' || system || '|' || code || ' ' || unit",
            ),
            ("idx_reference", "url || '/' || COALESCE(ident_value, '-')"),
            ("idx_uri", "value"),
        ] {
            let sql = format!(
                "SELECT '{table}', rid, res_type, param, CAST({values} AS TEXT), COALESCE(patient, '-') FROM {table} ORDER BY rid, 5"
            );
            rows.extend(
                conn.fetch(&sql, vec![], |r| {
                    Ok(format!(
                        "{} {} {} {} {} {}",
                        r.text(0)?,
                        r.i64(1)?,
                        r.text(2)?,
                        r.text(3)?,
                        r.text(4)?,
                        r.text(5)?
                    ))
                })
                .await
                .unwrap(),
            );
        }
        assert_eq!(
            rows,
            [
                "idx_string 1 Patient name lee/Lee p1",
                "idx_string 4 Practitioner name kim/Kim -",
                "idx_token 2 Observation code http://loinc.org|8867-4/heart rate p1",
                "idx_token 3 Observation code http://loinc.org|8867-4/- p2",
                "idx_date 2 Observation date 100-199 p1",
                "idx_date 3 Observation date 50-60 several p2",
                "idx_date 3 Observation date 70-80 several p2",
                "idx_number 2 Observation n 1.5 p1",
                "idx_quantity 3 Observation value-quantity 72.5 http://unitsofmeasure.org|/min bpm p2",
                "idx_reference 2 Observation subject Patient/p1/- p1",
                "idx_reference 3 Observation subject Patient/p2/v p2",
                "idx_uri 4 Practitioner u urn:x -",
            ]
        );
        drop(conn);
        let mut q = SearchQuery::parse(
            "Observation",
            &[("code".into(), "http://loinc.org|8867-4".into())],
        )
        .unwrap();
        q.summary_count = true;
        let page = store.search(&q, None, &Visibility::all()).await.unwrap();
        assert_eq!(page.total, Some(2));
        let mut patients = page.counted_patients.unwrap();
        patients.sort();
        assert_eq!(patients, ["p1", "p2"]);
        store.close().await;
    }

    /// A schema-9 SQLite database's index rows are given their resource's patient.
    #[tokio::test]
    async fn a_schema_9_database_gives_its_index_rows_their_patient() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let mut c = database_at_schema(&path, 9).await;
        sqlx::raw_sql(SCHEMA_9_ROWS).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
        index_rows_have_their_patient(Store::open_sqlite(&path).await.unwrap()).await;
    }

    /// The same on PostgreSQL (whose value indexes include the patient), in a schema of its own.
    #[tokio::test]
    async fn a_schema_9_postgres_database_gives_its_index_rows_their_patient() {
        use sqlx::{ConnectOptions, Connection};
        use std::str::FromStr;
        let Some(url) = crate::test_database_url() else {
            return;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("schema9_{}_{nanos}", std::process::id());
        let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
        let mut admin = options.connect().await.unwrap();
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut c = options
            .options([("search_path", schema.as_str())])
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(CREATE_VERSION_TABLE)
            .execute(&mut c)
            .await
            .unwrap();
        for m in &MIGRATIONS[..9] {
            sqlx::raw_sql(m.postgres).execute(&mut c).await.unwrap();
            sqlx::query("INSERT INTO ironchart_schema (version, applied_at) VALUES ($1, 0)")
                .bind(m.version)
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::raw_sql(SCHEMA_9_ROWS).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
        let store = Store::open_postgres(&url, Some(&schema)).await.unwrap();
        index_rows_have_their_patient(store).await;
    }
}
