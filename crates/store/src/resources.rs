//! Versioned resources: the current row in `resources`, every version in `resource_versions`,
//! and the search index rows, all written in one transaction.

use ironchart_fhir::extract::{IndexEntry, IndexValue};

use crate::db::{Arg, Conn, Pools, RowGet, Sql, Store};
use crate::indexing::{clip, scopes_by_reference};
use crate::visibility::{Sensitivity, Visibility, visible_in};
use crate::{Result, StoreError};

/// The current version of a resource as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionHead {
    pub rid: i64,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
}

/// One stored version of a resource. `body` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub rid: i64,
    pub res_type: String,
    pub res_id: String,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
    /// `POST`, `PUT` or `DELETE`: how this version came to be.
    pub method: String,
    pub body: Option<Vec<u8>>,
    /// The Patient whose compartment this version is in.
    pub patient: Option<String>,
    /// The Patient whose compartment the resource's current version is in: a version is
    /// judged by both (a record moved to another patient stays closed to the first).
    pub record_patient: Option<String>,
    /// The version's sensitivity: its own labels' or the current version's, whichever is
    /// higher.
    pub sensitivity: Sensitivity,
}

/// A new version to write.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    /// The version being written; must be `previous.version + 1` (or 1).
    pub version: i64,
    /// The head this write replaces: `None` for a create. A concurrent writer that got there
    /// first makes the write fail with [`StoreError::Conflict`].
    pub previous: Option<&'a VersionHead>,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: &'static str,
    pub body: Option<Vec<u8>>,
    /// The Patient this resource belongs to (its compartment), when any.
    pub patient: Option<String>,
    /// From the resource's confidentiality label (`meta.security`).
    pub sensitivity: Sensitivity,
    pub index: &'a [IndexEntry],
}

/// What a history request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

const VERSION_COLUMNS: &str = "SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, (CASE WHEN v.sensitivity > r.sensitivity THEN v.sensitivity ELSE r.sensitivity END), r.patient FROM resources r JOIN resource_versions v ON v.rid = r.rid";

/// A version's sensitivity: its own or its resource's current one, whichever is higher.
pub(crate) const VERSION_SENSITIVITY: &str =
    "(CASE WHEN v.sensitivity > r.sensitivity THEN v.sensitivity ELSE r.sensitivity END)";

pub(crate) fn version_row(r: &dyn RowGet) -> Result<StoredVersion> {
    Ok(StoredVersion {
        rid: r.i64(0)?,
        res_type: r.text(1)?,
        res_id: r.text(2)?,
        version: r.i64(3)?,
        last_updated: r.i64(4)?,
        deleted: r.bool(5)?,
        method: r.text(6)?,
        body: r.opt_bytes(7)?,
        patient: r.opt_text(8)?,
        sensitivity: Sensitivity::of_level(r.i64(9)?),
        record_patient: r.opt_text(10)?,
    })
}

impl Store {
    /// The current version of a resource (deleted ones included, with `deleted` set).
    pub async fn read(&self, res_type: &str, res_id: &str) -> Result<Option<StoredVersion>> {
        let mut conn = self.reader().await?;
        let sql = [
            VERSION_COLUMNS,
            " AND v.version = r.version WHERE r.res_type = $1 AND r.res_id = $2",
        ]
        .concat();
        let rows = conn
            .fetch(
                &sql,
                vec![Arg::Text(res_type.into()), Arg::Text(res_id.into())],
                version_row,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// A specific version of a resource.
    pub async fn vread(
        &self,
        res_type: &str,
        res_id: &str,
        version: i64,
    ) -> Result<Option<StoredVersion>> {
        let mut conn = self.reader().await?;
        let sql = [
            VERSION_COLUMNS,
            " WHERE r.res_type = $1 AND r.res_id = $2 AND v.version = $3",
        ]
        .concat();
        let rows = conn
            .fetch(
                &sql,
                vec![
                    Arg::Text(res_type.into()),
                    Arg::Text(res_id.into()),
                    Arg::I64(version),
                ],
                version_row,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Versions newest first, optionally only those at or after `since` (ms), continuing after
    /// the `(last_updated, rid, version)` key of the previous page's last entry.
    pub async fn history(
        &self,
        scope: &HistoryScope,
        since: Option<i64>,
        after: Option<(i64, i64, i64)>,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<StoredVersion>> {
        let mut sql = Sql::new(VERSION_COLUMNS);
        sql.push(" WHERE 1 = 1");
        visible_in(
            &mut sql,
            vis,
            "r.res_type",
            &["v.patient", "r.patient"],
            VERSION_SENSITIVITY,
        );
        match scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => {
                sql.push(" AND r.res_type = ").bind_text(t);
            }
            HistoryScope::Instance(t, id) => {
                sql.push(" AND r.res_type = ")
                    .bind_text(t)
                    .push(" AND r.res_id = ")
                    .bind_text(id);
            }
        }
        if let Some(since) = since {
            sql.push(" AND v.last_updated >= ").bind_i64(since);
        }
        if let Some((lu, rid, ver)) = after {
            sql.push(" AND (v.last_updated < ")
                .bind_i64(lu)
                .push(" OR (v.last_updated = ")
                .bind_i64(lu)
                .push(" AND (v.rid < ")
                .bind_i64(rid)
                .push(" OR (v.rid = ")
                .bind_i64(rid)
                .push(" AND v.version < ")
                .bind_i64(ver)
                .push("))))");
        }
        sql.push(" ORDER BY v.last_updated DESC, v.rid DESC, v.version DESC LIMIT ")
            .bind_i64(limit as i64);
        let mut conn = self.reader().await?;
        conn.fetch(&sql.text, sql.args, version_row).await
    }

    /// Counts the versions a history request covers.
    pub async fn history_count(
        &self,
        scope: &HistoryScope,
        since: Option<i64>,
        vis: &Visibility,
    ) -> Result<i64> {
        let mut sql = Sql::new(
            "SELECT COUNT(*) FROM resources r JOIN resource_versions v ON v.rid = r.rid WHERE 1 = 1",
        );
        visible_in(
            &mut sql,
            vis,
            "r.res_type",
            &["v.patient", "r.patient"],
            VERSION_SENSITIVITY,
        );
        match scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => {
                sql.push(" AND r.res_type = ").bind_text(t);
            }
            HistoryScope::Instance(t, id) => {
                sql.push(" AND r.res_type = ")
                    .bind_text(t)
                    .push(" AND r.res_id = ")
                    .bind_text(id);
            }
        }
        if let Some(since) = since {
            sql.push(" AND v.last_updated >= ").bind_i64(since);
        }
        let mut conn = self.reader().await?;
        Ok(conn
            .fetch(&sql.text, sql.args, |r| r.i64(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`)
    /// so that a transaction that reads before it writes can never fail on lock upgrade.
    pub async fn begin(&self) -> Result<WriteTx> {
        let inner = match &self.pools {
            Pools::Sqlite { write, .. } => {
                TxInner::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?)
            }
            Pools::Postgres { pool, .. } => TxInner::Postgres(pool.begin().await?),
        };
        let mut tx = WriteTx { inner };
        if matches!(tx.inner, TxInner::Postgres(_)) {
            // Writes are batched into statements with long `IN (…)` and `VALUES` lists whose
            // generic plans are poor (an id list planned as a scan of the type): plan each
            // execution with its values.
            tx.conn()
                .execute("SET LOCAL plan_cache_mode = force_custom_plan", vec![])
                .await?;
            if self.bulk.load(std::sync::atomic::Ordering::SeqCst) {
                tx.conn()
                    .execute("SET LOCAL synchronous_commit = off", vec![])
                    .await?;
            }
        }
        Ok(tx)
    }
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A write transaction: all or nothing.
pub struct WriteTx {
    inner: TxInner,
}

impl WriteTx {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.inner, TxInner::Postgres(_))
    }

    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            TxInner::Sqlite(t) => Conn::Sqlite(t),
            TxInner::Postgres(t) => Conn::Postgres(t),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await?,
            TxInner::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// The current head of a resource, locked against concurrent writers until the transaction
    /// ends (on PostgreSQL a no-op update takes the row lock; SQLite's write transaction already
    /// excludes other writers).
    pub async fn head_for_update(
        &mut self,
        res_type: &str,
        res_id: &str,
    ) -> Result<Option<VersionHead>> {
        if matches!(self.inner, TxInner::Postgres(_)) {
            self.conn()
                .execute(
                    "UPDATE resources SET version = version WHERE res_type = $1 AND res_id = $2",
                    vec![Arg::Text(res_type.into()), Arg::Text(res_id.into())],
                )
                .await?;
        }
        self.head(res_type, res_id).await
    }

    /// The current head of a resource, if it was ever written.
    pub async fn head(&mut self, res_type: &str, res_id: &str) -> Result<Option<VersionHead>> {
        let rows = self
            .conn()
            .fetch(
                "SELECT rid, version, last_updated, deleted FROM resources WHERE res_type = $1 AND res_id = $2",
                vec![Arg::Text(res_type.into()), Arg::Text(res_id.into())],
                |r| {
                    Ok(VersionHead {
                        rid: r.i64(0)?,
                        version: r.i64(1)?,
                        last_updated: r.i64(2)?,
                        deleted: r.bool(3)?,
                    })
                },
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The current version of a resource, read inside the transaction.
    pub async fn read(&mut self, res_type: &str, res_id: &str) -> Result<Option<StoredVersion>> {
        let sql = [
            VERSION_COLUMNS,
            " AND v.version = r.version WHERE r.res_type = $1 AND r.res_id = $2",
        ]
        .concat();
        let rows = self
            .conn()
            .fetch(
                &sql,
                vec![Arg::Text(res_type.into()), Arg::Text(res_id.into())],
                version_row,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Writes a new version: the head row, the version row and the index rows.
    pub async fn put(&mut self, v: NewVersion<'_>) -> Result<i64> {
        let rids = self.put_batch(vec![v]).await?;
        rids.into_iter().next().ok_or(StoreError::Conflict)
    }

    /// The heads of several resources of one type (those that exist), locked like
    /// [`WriteTx::head_for_update`].
    pub async fn heads_for_update(
        &mut self,
        res_type: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, VersionHead>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            if matches!(self.inner, TxInner::Postgres(_)) {
                let mut lock = Sql::new("UPDATE resources SET version = version WHERE res_type = ");
                lock.bind_text(res_type).push(" AND res_id IN (");
                push_list(&mut lock, chunk);
                lock.push(")");
                self.conn().execute(&lock.text, lock.args).await?;
            }
            let mut sql = Sql::new(
                "SELECT res_id, rid, version, last_updated, deleted FROM resources WHERE res_type = ",
            );
            sql.bind_text(res_type).push(" AND res_id IN (");
            push_list(&mut sql, chunk);
            sql.push(")");
            let rows = self
                .conn()
                .fetch(&sql.text, sql.args, |r| {
                    Ok((
                        r.text(0)?,
                        VersionHead {
                            rid: r.i64(1)?,
                            version: r.i64(2)?,
                            last_updated: r.i64(3)?,
                            deleted: r.bool(4)?,
                        },
                    ))
                })
                .await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Writes several new versions with few statements (multi-row inserts): the head rows, the
    /// version rows and the index rows. Returns the row ids in the order given. A create whose
    /// resource exists, or an update whose head moved, is a [`StoreError::Conflict`] (the caller
    /// retries the transaction).
    pub async fn put_batch(&mut self, versions: Vec<NewVersion<'_>>) -> Result<Vec<i64>> {
        let mut rids: Vec<Option<i64>> = vec![None; versions.len()];
        // New resources: one multi-row insert per chunk.
        let creates: Vec<usize> = (0..versions.len())
            .filter(|&i| versions[i].previous.is_none())
            .collect();
        for chunk in creates.chunks(ROWS_PER_INSERT) {
            let mut sql = Sql::new(
                "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, patient, sensitivity) VALUES ",
            );
            for (n, &i) in chunk.iter().enumerate() {
                let v = &versions[i];
                sql.row(
                    n == 0,
                    vec![
                        Arg::Text(v.res_type.into()),
                        Arg::Text(v.res_id.into()),
                        Arg::I64(v.version),
                        Arg::I64(v.last_updated),
                        Arg::Bool(v.deleted),
                        Arg::OptText(v.patient.clone()),
                        Arg::I64(v.sensitivity.level()),
                    ],
                );
            }
            sql.push(" ON CONFLICT (res_type, res_id) DO NOTHING RETURNING rid, res_type, res_id");
            let rows = self
                .conn()
                .fetch(&sql.text, sql.args, |r| {
                    Ok((r.i64(0)?, r.text(1)?, r.text(2)?))
                })
                .await?;
            let by_key: std::collections::HashMap<(String, String), i64> = rows
                .into_iter()
                .map(|(rid, t, id)| ((t, id), rid))
                .collect();
            for &i in chunk {
                let key = (
                    versions[i].res_type.to_string(),
                    versions[i].res_id.to_string(),
                );
                rids[i] = Some(*by_key.get(&key).ok_or(StoreError::Conflict)?);
            }
        }
        // Existing resources: move each head (checking it did not move under us), then drop
        // their old index rows.
        let mut replaced = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            let Some(prev) = v.previous else { continue };
            let n = self
                .conn()
                .execute(
                    "UPDATE resources SET version = $1, last_updated = $2, deleted = $3, patient = $4, sensitivity = $5 WHERE rid = $6 AND version = $7",
                    vec![
                        Arg::I64(v.version),
                        Arg::I64(v.last_updated),
                        Arg::Bool(v.deleted),
                        Arg::OptText(v.patient.clone()),
                        Arg::I64(v.sensitivity.level()),
                        Arg::I64(prev.rid),
                        Arg::I64(prev.version),
                    ],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            if v.sensitivity > Sensitivity::Normal {
                // A label protects the versions before it too, for good: a later write that
                // lowers the label (or a re-creation after a deletion) opens none of them.
                self.conn()
                    .execute(
                        "UPDATE resource_versions SET sensitivity = $1 WHERE rid = $2 AND sensitivity < $1",
                        vec![Arg::I64(v.sensitivity.level()), Arg::I64(prev.rid)],
                    )
                    .await?;
            }
            rids[i] = Some(prev.rid);
            replaced.push(prev.rid);
        }
        self.delete_index_rows(&replaced).await?;
        let rids: Vec<i64> = rids
            .into_iter()
            .map(|r| r.ok_or(StoreError::Conflict))
            .collect::<Result<_>>()?;
        // The versions.
        let mut index = IndexBuffer::default();
        let mut iter = versions.into_iter().zip(rids.iter().copied()).peekable();
        while iter.peek().is_some() {
            let mut sql = Sql::new(
                "INSERT INTO resource_versions (rid, version, last_updated, deleted, method, body, patient, sensitivity) VALUES ",
            );
            for (n, (v, rid)) in iter.by_ref().take(ROWS_PER_INSERT).enumerate() {
                sql.row(
                    n == 0,
                    vec![
                        Arg::I64(rid),
                        Arg::I64(v.version),
                        Arg::I64(v.last_updated),
                        Arg::Bool(v.deleted),
                        Arg::Text(v.method.into()),
                        Arg::Bytes(v.body),
                        Arg::OptText(v.patient.clone()),
                        Arg::I64(v.sensitivity.level()),
                    ],
                );
                if !v.deleted {
                    for full in index.add_resource(rid, v.res_type, v.patient.as_deref(), v.index) {
                        self.conn().execute(&full.text, full.args).await?;
                    }
                }
            }
            self.conn().execute(&sql.text, sql.args).await?;
        }
        for sql in index.finish() {
            self.conn().execute(&sql.text, sql.args).await?;
        }
        Ok(rids)
    }
}

impl WriteTx {
    /// The stored bodies of resources' current versions, by `rid` (read inside the transaction).
    pub async fn current_bodies(&mut self, rids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(rids.len());
        for chunk in rids.chunks(ROWS_PER_INSERT) {
            let mut sql = Sql::new(
                "SELECT v.rid, v.body FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.rid IN (",
            );
            for (n, rid) in chunk.iter().enumerate() {
                if n > 0 {
                    sql.push(", ");
                }
                sql.bind_i64(*rid);
            }
            sql.push(")");
            out.extend(
                self.conn()
                    .fetch(&sql.text, sql.args, |r| {
                        Ok((r.i64(0)?, r.opt_bytes(1)?.unwrap_or_default()))
                    })
                    .await?,
            );
        }
        Ok(out)
    }

    /// Deletes the index rows of resources (before their new rows are written).
    async fn delete_index_rows(&mut self, rids: &[i64]) -> Result<()> {
        for chunk in rids.chunks(ROWS_PER_INSERT) {
            for table in DELETE_INDEX {
                let mut sql = Sql::new(table);
                for (n, rid) in chunk.iter().enumerate() {
                    if n > 0 {
                        sql.push(", ");
                    }
                    sql.bind_i64(*rid);
                }
                sql.push(")");
                self.conn().execute(&sql.text, sql.args).await?;
            }
        }
        Ok(())
    }
}

/// What every index row of a resource starts with: its row id, its type (a contained
/// resource's own) and its patient.
#[derive(Clone, Copy)]
struct RowHead<'a> {
    rid: i64,
    res_type: &'a str,
    patient: Option<&'a str>,
}

/// Index rows waiting to be inserted, one multi-row statement per table.
#[derive(Default)]
struct IndexBuffer {
    batches: [Option<Sql>; 8],
    counts: [usize; 8],
}

impl IndexBuffer {
    /// Adds a resource's index rows (`_id` and `_lastUpdated` are columns of `resources`: no
    /// rows), and its dates under each resource it refers to through a parameter that scopes a
    /// chart (see [`scopes_by_reference`]); returns full statements to run.
    /// `patient`: the resource's (`resources.patient`), which each value row carries.
    fn add_resource(
        &mut self,
        rid: i64,
        res_type: &str,
        patient: Option<&str>,
        entries: &[IndexEntry],
    ) -> Vec<Sql> {
        let row = RowHead {
            rid,
            res_type,
            patient,
        };
        // The date parameters with more than one value (in the resource, or in one of its
        // contained resources): their rows say so (`idx_date.multi`), and a walk of the date's
        // index probes only those for whether a row holds the resource's key.
        let mut dated: Vec<(Option<&str>, &str)> = Vec::new();
        let mut multi: Vec<(Option<&str>, &str)> = Vec::new();
        for e in entries.iter().filter(|e| stored_entry(res_type, e)) {
            if let IndexValue::Date(_) = e.value {
                let key = (e.contained.as_ref().map(|c| c.id.as_str()), e.param);
                if !dated.contains(&key) {
                    dated.push(key);
                } else if !multi.contains(&key) {
                    multi.push(key);
                }
            }
        }
        let mut full = Vec::new();
        for entry in entries.iter().filter(|e| stored_entry(res_type, e)) {
            let several = matches!(entry.value, IndexValue::Date(_))
                && multi.contains(&(entry.contained.as_ref().map(|c| c.id.as_str()), entry.param));
            full.extend(self.add(&row, entry, several));
        }
        let mut targets: Vec<String> = entries
            .iter()
            .filter(|e| e.contained.is_none() && scopes_by_reference(res_type, e.param))
            .filter_map(|e| match &e.value {
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                    ..
                } => match (target_type, target_id) {
                    (None, None) => relative_type_id(url).1,
                    (_, id) => id.clone(),
                },
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return full;
        }
        targets.sort_unstable();
        targets.dedup();
        // Per date parameter: the earliest start and the latest end (the keys of an ascending
        // and a descending sort).
        let mut dates: Vec<(&str, i64, i64)> = Vec::new();
        for e in entries.iter().filter(|e| e.contained.is_none()) {
            if let IndexValue::Date(r) = &e.value {
                match dates.iter_mut().find(|(p, _, _)| *p == e.param) {
                    Some(d) => {
                        d.1 = d.1.min(r.low);
                        d.2 = d.2.max(r.high);
                    }
                    None => dates.push((e.param, r.low, r.high)),
                }
            }
        }
        for target in &targets {
            for (param, low, high) in &dates {
                self.row(&mut full, REF_DATE_SLOT, &row, param, |sql| {
                    sql.push(", ")
                        .bind(Arg::Text(clip(target)))
                        .push(", ")
                        .bind_i64(*low)
                        .push(", ")
                        .bind_i64(*high);
                });
            }
        }
        full
    }

    /// Adds a row; returns a full statement to run when its table's batch is full. `several`:
    /// a date whose resource has other dates for the same parameter.
    fn add(&mut self, head: &RowHead<'_>, entry: &IndexEntry, several: bool) -> Vec<Sql> {
        // A contained resource's value is a row of the container under its own type, named
        // `#<contained id>:<parameter>`: no search by a parameter's name finds it, only a chain
        // through the container's `#id` reference (see `ironchart_store::search`).
        let contained_param;
        let (head, param) = match &entry.contained {
            Some(c) => {
                contained_param = contained_param_name(&c.id, entry.param);
                (
                    RowHead {
                        res_type: c.resource_type,
                        ..*head
                    },
                    contained_param.as_str(),
                )
            }
            None => (*head, entry.param),
        };
        let mut full = Vec::new();
        if let IndexValue::String(s) = &entry.value {
            // A string is found by the start of any of its words: one row for the whole value
            // (with its text as written, for `:exact` and sorting) and one per later word,
            // whose `exact` is empty.
            let normalized = clip(&ironchart_fhir::extract::normalize_string(s));
            self.row(&mut full, 0, &head, param, |sql| {
                sql.push(", ")
                    .bind(Arg::Text(normalized.clone()))
                    .push(", ")
                    .bind(Arg::Text(clip(s)));
            });
            for start in ironchart_fhir::extract::word_starts(&normalized, MAX_WORD_STARTS) {
                self.row(&mut full, 0, &head, param, |sql| {
                    sql.push(", ")
                        .bind(Arg::Text(start.to_string()))
                        .push(", ")
                        .bind(Arg::Text(String::new()));
                });
            }
            return full;
        }
        let slot = table_slot(&entry.value);
        self.row(&mut full, slot, &head, param, |sql| {
            push_index_values(sql, &entry.value);
            if let IndexValue::Date(_) = entry.value {
                sql.push(", ").bind(Arg::Bool(several));
            }
        });
        full
    }

    /// Adds one row to table `slot`'s batch; a full batch goes to `full`.
    fn row(
        &mut self,
        full: &mut Vec<Sql>,
        slot: usize,
        head: &RowHead<'_>,
        param: &str,
        values: impl FnOnce(&mut Sql),
    ) {
        let sql = self.batches[slot].get_or_insert_with(|| Sql::new(INSERT_INDEX[slot]));
        if self.counts[slot] > 0 {
            sql.push(", ");
        }
        self.counts[slot] += 1;
        sql.push("(")
            .bind_i64(head.rid)
            .push(", ")
            .bind_text(head.res_type)
            .push(", ")
            .bind_text(param);
        if slot != REF_DATE_SLOT {
            sql.push(", ")
                .bind(Arg::OptText(head.patient.map(str::to_string)));
        }
        values(sql);
        sql.push(")");
        if self.counts[slot] >= INDEX_ROWS_PER_INSERT {
            self.counts[slot] = 0;
            if let Some(batch) = self.batches[slot].take() {
                full.push(batch);
            }
        }
    }

    fn finish(self) -> impl Iterator<Item = Sql> {
        self.batches.into_iter().flatten()
    }
}

fn push_list(sql: &mut Sql, items: &[&str]) {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.bind_text(item);
    }
}

/// The `param` of a contained resource's index row: `#<id>:<parameter>` (the container's
/// reference text, a colon, the parameter's name).
pub(crate) fn contained_param_name(id: &str, param: &str) -> String {
    format!("#{id}:{param}")
}

/// Index rows per multi-row insert (at most 9 values each: well under both databases'
/// limits on bound parameters).
const INDEX_ROWS_PER_INSERT: usize = 500;

/// Resources per multi-row statement.
const ROWS_PER_INSERT: usize = 200;

const DELETE_INDEX: [&str; 8] = [
    "DELETE FROM idx_ref_date WHERE rid IN (",
    "DELETE FROM idx_string WHERE rid IN (",
    "DELETE FROM idx_token WHERE rid IN (",
    "DELETE FROM idx_date WHERE rid IN (",
    "DELETE FROM idx_number WHERE rid IN (",
    "DELETE FROM idx_quantity WHERE rid IN (",
    "DELETE FROM idx_reference WHERE rid IN (",
    "DELETE FROM idx_uri WHERE rid IN (",
];

/// The batch of `idx_ref_date` rows in [`IndexBuffer`].
const REF_DATE_SLOT: usize = 7;

/// Each row starts with its resource's `rid`, type and parameter; a value row then has the
/// resource's patient (see [`IndexBuffer::row`]), the dates under a reference do not (their
/// `target_id` is the patient when it scopes a chart).
const INSERT_INDEX: [&str; 8] = [
    "INSERT INTO idx_string (rid, res_type, param, patient, value, exact) VALUES ",
    "INSERT INTO idx_token (rid, res_type, param, patient, system, code, text) VALUES ",
    "INSERT INTO idx_date (rid, res_type, param, patient, low, high, multi) VALUES ",
    "INSERT INTO idx_number (rid, res_type, param, patient, value) VALUES ",
    "INSERT INTO idx_quantity (rid, res_type, param, patient, value, system, code, unit) VALUES ",
    "INSERT INTO idx_reference (rid, res_type, param, patient, target_type, target_id, url, ident_system, ident_value) VALUES ",
    "INSERT INTO idx_uri (rid, res_type, param, patient, value) VALUES ",
    "INSERT INTO idx_ref_date (rid, res_type, param, target_id, low, high) VALUES ",
];

fn table_slot(value: &IndexValue) -> usize {
    match value {
        IndexValue::String(_) => 0,
        IndexValue::Token { .. } => 1,
        IndexValue::Date(_) => 2,
        IndexValue::Number(_) => 3,
        IndexValue::Quantity { .. } => 4,
        IndexValue::Reference { .. } => 5,
        IndexValue::Uri(_) => 6,
    }
}

/// Most later words of one string value that it is found by.
const MAX_WORD_STARTS: usize = 8;

fn opt(s: &Option<String>) -> Arg {
    Arg::OptText(s.as_deref().map(clip))
}

fn push_index_values(sql: &mut Sql, value: &IndexValue) {
    use ironchart_fhir::extract::normalize_string;
    match value {
        // (Strings are written by `IndexBuffer::add`, with their word starts.)
        IndexValue::String(s) => {
            sql.push(", ")
                .bind(Arg::Text(clip(&normalize_string(s))))
                .push(", ")
                .bind(Arg::Text(clip(s)));
        }
        IndexValue::Token { system, code, text } => {
            sql.push(", ")
                .bind(opt(system))
                .push(", ")
                .bind(opt(code))
                .push(", ")
                .bind(Arg::OptText(
                    text.as_deref().map(|t| clip(&normalize_string(t))),
                ));
        }
        IndexValue::Date(range) => {
            sql.push(", ")
                .bind_i64(range.low)
                .push(", ")
                .bind_i64(range.high);
        }
        IndexValue::Number(n) => {
            sql.push(", ").bind_f64(*n);
        }
        IndexValue::Quantity {
            value,
            system,
            code,
            unit,
        } => {
            sql.push(", ")
                .bind_f64(*value)
                .push(", ")
                .bind(opt(system))
                .push(", ")
                .bind(opt(code))
                .push(", ")
                .bind(opt(unit));
        }
        IndexValue::Reference {
            target_type,
            target_id,
            url,
            identifier,
        } => {
            let (isys, ival) = identifier.clone().unwrap_or((None, None));
            // A canonical or uri written as `Type/id` is found like a reference to it.
            let (target_type, target_id) = match (target_type, target_id) {
                (None, None) => relative_type_id(url),
                (t, i) => (t.clone(), i.clone()),
            };
            sql.push(", ")
                .bind(opt(&target_type))
                .push(", ")
                .bind(opt(&target_id))
                .push(", ")
                .bind(Arg::OptText(if url.is_empty() {
                    None
                } else {
                    Some(clip(url))
                }))
                .push(", ")
                .bind(opt(&isys))
                .push(", ")
                .bind(opt(&ival));
        }
        IndexValue::Uri(u) => {
            sql.push(", ").bind(Arg::Text(clip(u)));
        }
    }
}

/// Whether index rows of `param` are written: not for `_id` and `_lastUpdated` (columns of
/// `resources`), nor for parameters answered from other parameters' rows.
/// Whether an index entry is written: see [`stored`]; a contained resource's values by its
/// own type's parameters.
fn stored_entry(res_type: &str, entry: &IndexEntry) -> bool {
    match &entry.contained {
        Some(c) => stored(c.resource_type, entry.param),
        None => stored(res_type, entry.param),
    }
}

fn stored(res_type: &str, param: &str) -> bool {
    if param == "_id" || param == "_lastUpdated" {
        return false;
    }
    ironchart_fhir::search_param(res_type, param).is_none_or(ironchart_fhir::storage::is_stored)
}

/// `Type/id` (a known resource type and a valid id) split in two.
fn relative_type_id(url: &str) -> (Option<String>, Option<String>) {
    match url.split_once('/') {
        Some((t, id)) if ironchart_fhir::is_resource_type(t) && ironchart_fhir::is_valid_id(id) => {
            (Some(t.to_string()), Some(id.to_string()))
        }
        _ => (None, None),
    }
}

/// A resource's current version with its index values and patient worked out anew.
#[derive(Debug, Clone)]
pub struct Reindexed<'a> {
    pub rid: i64,
    pub res_type: &'a str,
    /// The version they were worked out from: a resource whose head moved on is skipped.
    pub version: i64,
    pub index: &'a [IndexEntry],
    pub patient: Option<String>,
}

/// The current version of a resource, for rebuilding its search index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentBody {
    pub rid: i64,
    pub res_type: String,
    pub res_id: String,
    pub version: i64,
    pub body: Vec<u8>,
}

impl Store {
    /// Current versions (not deleted) in `rid` order after `after`, at most `limit`.
    pub async fn current_bodies_after(&self, after: i64, limit: usize) -> Result<Vec<CurrentBody>> {
        let mut conn = self.reader().await?;
        conn.fetch(
            "SELECT r.rid, r.res_type, r.res_id, r.version, v.body FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.rid > $1 AND r.deleted = FALSE ORDER BY r.rid LIMIT $2",
            vec![Arg::I64(after), Arg::I64(limit as i64)],
            |r| {
                Ok(CurrentBody {
                    rid: r.i64(0)?,
                    res_type: r.text(1)?,
                    res_id: r.text(2)?,
                    version: r.i64(3)?,
                    body: r.opt_bytes(4)?.unwrap_or_default(),
                })
            },
        )
        .await
    }

    /// Whether any resource is stored.
    pub async fn has_resources(&self) -> Result<bool> {
        let mut conn = self.reader().await?;
        Ok(!conn
            .fetch("SELECT rid FROM resources LIMIT 1", vec![], |r| r.i64(0))
            .await?
            .is_empty())
    }
}

impl WriteTx {
    /// Rebuilds the search index of resources' current versions: `(rid, type, version, values)`.
    /// A resource whose head moved on since (a write re-indexed it) is left as it is. Returns
    /// how many were rebuilt.
    pub async fn reindex(&mut self, items: &[Reindexed<'_>]) -> Result<usize> {
        let mut index = IndexBuffer::default();
        let mut done = Vec::new();
        for item in items {
            // The patient is worked out again too (the rules of compartments can change).
            let n = self
                .conn()
                .execute(
                    "UPDATE resources SET patient = $1 WHERE rid = $2 AND version = $3 AND deleted = FALSE",
                    vec![
                        Arg::OptText(item.patient.clone()),
                        Arg::I64(item.rid),
                        Arg::I64(item.version),
                    ],
                )
                .await?;
            if n != 1 {
                continue;
            }
            self.conn()
                .execute(
                    "UPDATE resource_versions SET patient = $1 WHERE rid = $2 AND version = $3",
                    vec![
                        Arg::OptText(item.patient.clone()),
                        Arg::I64(item.rid),
                        Arg::I64(item.version),
                    ],
                )
                .await?;
            done.push((item.rid, item.res_type, &item.patient, item.index));
        }
        let rids: Vec<i64> = done.iter().map(|(rid, _, _, _)| *rid).collect();
        self.delete_index_rows(&rids).await?;
        for (rid, res_type, patient, entries) in &done {
            for full in index.add_resource(*rid, res_type, patient.as_deref(), entries) {
                self.conn().execute(&full.text, full.args).await?;
            }
        }
        for sql in index.finish() {
            self.conn().execute(&sql.text, sql.args).await?;
        }
        Ok(done.len())
    }
}

/// A stored body, for re-sealing under a new key (`ironchart keys rotate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBody {
    pub rid: i64,
    pub version: i64,
    pub res_type: String,
    pub res_id: String,
    pub body: Vec<u8>,
}

impl Store {
    /// Stored bodies in `(rid, version)` order after `after`, at most `limit`.
    pub async fn bodies_after(&self, after: (i64, i64), limit: usize) -> Result<Vec<SealedBody>> {
        let mut conn = self.reader().await?;
        conn.fetch(
            "SELECT v.rid, v.version, r.res_type, r.res_id, v.body FROM resource_versions v JOIN resources r ON r.rid = v.rid WHERE v.body IS NOT NULL AND (v.rid > $1 OR (v.rid = $1 AND v.version > $2)) ORDER BY v.rid, v.version LIMIT $3",
            vec![Arg::I64(after.0), Arg::I64(after.1), Arg::I64(limit as i64)],
            |r| {
                Ok(SealedBody {
                    rid: r.i64(0)?,
                    version: r.i64(1)?,
                    res_type: r.text(2)?,
                    res_id: r.text(3)?,
                    body: r.opt_bytes(4)?.unwrap_or_default(),
                })
            },
        )
        .await
    }
}

impl WriteTx {
    /// Replaces the stored body of one version (the same content, sealed anew).
    pub async fn replace_body(&mut self, rid: i64, version: i64, body: Vec<u8>) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE resource_versions SET body = $1 WHERE rid = $2 AND version = $3",
                vec![Arg::Bytes(Some(body)), Arg::I64(rid), Arg::I64(version)],
            )
            .await?;
        Ok(())
    }
}

impl WriteTx {
    /// A setting, read inside the transaction.
    pub async fn setting(&mut self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .fetch(
                "SELECT value FROM settings WHERE key = $1",
                vec![Arg::Text(key.to_string())],
                |r| r.text(0),
            )
            .await?
            .into_iter()
            .next())
    }

    /// Replaces a setting only if it still has the value `expected` (compare and swap): whether
    /// it did. Of concurrent transactions swapping the same value, one succeeds (PostgreSQL
    /// re-checks the condition after the row lock; SQLite writers take turns).
    pub async fn swap_setting(&mut self, key: &str, expected: &str, value: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE settings SET value = $1 WHERE key = $2 AND value = $3",
                vec![
                    Arg::Text(value.to_string()),
                    Arg::Text(key.to_string()),
                    Arg::Text(expected.to_string()),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Writes a setting inside the transaction.
    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![Arg::Text(key.to_string()), Arg::Text(value.to_string())],
            )
            .await?;
        Ok(())
    }
}
