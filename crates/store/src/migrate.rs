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
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = 2;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS ironchart_schema (version BIGINT NOT NULL, applied_at BIGINT NOT NULL)";

impl Store {
    /// Creates or upgrades the schema. Each migration runs in its own transaction.
    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer().await?;
        let mut c = conn.conn();
        c.execute(CREATE_VERSION_TABLE, vec![]).await?;
        let current = c
            .fetch(
                "SELECT COALESCE(MAX(version), 0) FROM ironchart_schema",
                vec![],
                |r| r.i64(0),
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        let is_sqlite = matches!(self.pools, Pools::Sqlite { .. });
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            c.execute("BEGIN", vec![]).await?;
            let script = if is_sqlite { m.sqlite } else { m.postgres };
            let applied = async {
                c.execute_script(script).await?;
                c.execute(
                    "INSERT INTO ironchart_schema (version, applied_at) VALUES ($1, $2)",
                    vec![Arg::I64(m.version), Arg::I64(now_millis())],
                )
                .await
            }
            .await;
            match applied {
                Ok(_) => {
                    c.execute("COMMIT", vec![]).await?;
                }
                Err(e) => {
                    let _ = c.execute("ROLLBACK", vec![]).await;
                    return Err(e);
                }
            }
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

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_step_and_ordered() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        // Both backends create the same tables and indexes.
        for m in MIGRATIONS {
            let names = |s: &str| {
                let mut v: Vec<String> = s
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(3)
                    .filter(|w| w[0] == "CREATE" && (w[1] == "TABLE" || w[1] == "INDEX"))
                    .map(|w| w[2].to_string())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(names(m.sqlite), names(m.postgres));
        }
    }
}
