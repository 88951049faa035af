//! Persistence of the audit log: appends under a lock on the chain's tail, reads in chain order.
//! The chain itself (the MACs) is computed by the caller; the tables are append-only (triggers
//! refuse updates and deletes on both databases).

use crate::Result;
use crate::db::{Arg, Conn, CopyText, PoolConn, RowGet, Sql, Store, copy_in};
use crate::resources::WriteTx;

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRow {
    pub seq: i64,
    /// Milliseconds since the Unix epoch (UTC).
    pub recorded: i64,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub res_type: Option<String>,
    pub res_id: Option<String>,
    pub version: Option<i64>,
    /// Space-separated Patient ids the entry concerns.
    pub patients: Option<String>,
    pub outcome: String,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    pub mac: String,
}

/// Conditions of an audit log search; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// One entry by its sequence number.
    pub seq: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub actor: Option<String>,
    pub patient: Option<String>,
    pub actions: Vec<String>,
    pub outcome: Option<String>,
    /// Continue after (descending: before) this sequence number (when sorted by `Seq`).
    pub after_seq: Option<i64>,
    pub sort: AuditColumn,
    pub descending: bool,
    pub limit: usize,
}

/// A column the audit log can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditColumn {
    #[default]
    Seq,
    Recorded,
    Actor,
    Role,
    Action,
    ResType,
    ResId,
    Patients,
    Outcome,
    Source,
    Detail,
}

impl AuditColumn {
    fn sql(self) -> &'static str {
        match self {
            AuditColumn::Seq => "seq",
            AuditColumn::Recorded => "recorded",
            AuditColumn::Actor => "actor",
            AuditColumn::Role => "role",
            AuditColumn::Action => "action",
            AuditColumn::ResType => "res_type",
            AuditColumn::ResId => "res_id",
            AuditColumn::Patients => "patients",
            AuditColumn::Outcome => "outcome",
            AuditColumn::Source => "source",
            AuditColumn::Detail => "detail",
        }
    }
}

const COLUMNS: &str = "SELECT seq, recorded, actor, role, action, res_type, res_id, version, patients, outcome, source, purpose, request_id, detail, mac FROM audit_log";

fn audit_row(r: &dyn RowGet) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: r.i64(0)?,
        recorded: r.i64(1)?,
        actor: r.text(2)?,
        role: r.opt_text(3)?,
        action: r.text(4)?,
        res_type: r.opt_text(5)?,
        res_id: r.opt_text(6)?,
        version: r.opt_i64(7)?,
        patients: r.opt_text(8)?,
        outcome: r.text(9)?,
        source: r.opt_text(10)?,
        purpose: r.opt_text(11)?,
        request_id: r.opt_text(12)?,
        detail: r.opt_text(13)?,
        mac: r.text(14)?,
    })
}

/// Rows per multi-row insert (15 values each).
pub const ROWS_PER_INSERT: usize = 200;

/// The chain's tail, locked for the transaction `conn` is in (on PostgreSQL an advisory lock;
/// SQLite's write transaction already excludes other writers).
async fn tail(conn: &mut Conn<'_>, postgres: bool) -> Result<Option<(i64, String)>> {
    if postgres {
        conn.execute("SELECT pg_advisory_xact_lock(7352090581)", vec![])
            .await?;
    }
    let rows = conn
        .fetch(
            "SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1",
            vec![],
            |r| Ok((r.i64(0)?, r.text(1)?)),
        )
        .await?;
    Ok(rows.into_iter().next())
}

impl WriteTx {
    /// The last entry's sequence number and MAC, with the chain locked until the transaction
    /// ends.
    pub async fn audit_tail(&mut self) -> Result<Option<(i64, String)>> {
        let postgres = self.is_postgres();
        tail(&mut self.conn(), postgres).await
    }

    /// Appends entries (already chained by the caller); their patient rows are added by
    /// [`WriteTx::audit_index_patients`].
    pub async fn audit_append(&mut self, rows: &[AuditRow]) -> Result<()> {
        append(&mut self.conn(), rows).await
    }

    /// Appends entries (already chained by the caller, after the tail this transaction locked)
    /// and indexes them by patient, with whatever earlier entries are not indexed yet.
    pub async fn audit_append_indexed(&mut self, rows: &[AuditRow]) -> Result<()> {
        let Some(first) = rows.first().map(|r| r.seq) else {
            return Ok(());
        };
        let done = self.audit_indexed().await?;
        append(&mut self.conn(), rows).await?;
        if done != first - 1 {
            // Earlier entries wait (appended inside write transactions): index in pages.
            // (PostgreSQL plans a large LIMIT on `seq > $1` as a scan of the whole log.)
            while self.audit_index_patients(INDEX_BATCH).await? == INDEX_BATCH {}
            return Ok(());
        }
        // The index is complete up to these entries, which are new in this transaction: their
        // rows come from memory, and none of them can be there already.
        let pairs = patient_pairs(rows.iter().map(|r| (r.seq, r.patients.as_deref())));
        match self.conn() {
            Conn::Postgres(c) => {
                let mut data = CopyText::new();
                for (p, seq) in &pairs {
                    data.text(p).i64(*seq).end_row();
                }
                copy_in(c, "COPY audit_patients (patient, seq) FROM STDIN", data).await?;
            }
            mut conn => insert_pairs(&mut conn, &pairs).await?,
        }
        let last = rows.last().map_or(first, |r| r.seq);
        self.set_setting(INDEXED, &last.to_string()).await
    }

    async fn audit_indexed(&mut self) -> Result<i64> {
        Ok(self
            .setting(INDEXED)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Adds the patient index rows of at most `limit` entries appended since the last call,
    /// sorted so that each index page is touched once. Returns how many entries it covered.
    pub async fn audit_index_patients(&mut self, limit: i64) -> Result<i64> {
        if self.is_postgres() {
            // One indexer at a time (the chain's lock): the mover indexes too.
            self.conn()
                .execute("SELECT pg_advisory_xact_lock(7352090581)", vec![])
                .await?;
        }
        let done = self.audit_indexed().await?;
        let entries = self
            .conn()
            .fetch(
                "SELECT seq, patients FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                vec![Arg::I64(done), Arg::I64(limit)],
                |r| Ok((r.i64(0)?, r.opt_text(1)?)),
            )
            .await?;
        let Some(last) = entries.last().map(|e| e.0) else {
            return Ok(0);
        };
        let pairs = patient_pairs(entries.iter().map(|(seq, p)| (*seq, p.as_deref())));
        insert_pairs(&mut self.conn(), &pairs).await?;
        self.set_setting(INDEXED, &last.to_string()).await?;
        Ok(entries.len() as i64)
    }
}

/// The (patient, seq) rows of entries, sorted, each patient once per entry.
fn patient_pairs<'a>(entries: impl Iterator<Item = (i64, Option<&'a str>)>) -> Vec<(String, i64)> {
    let mut pairs: Vec<(String, i64)> = Vec::new();
    for (seq, patients) in entries {
        let mut seen = std::collections::HashSet::new();
        for p in patients.iter().flat_map(|p| p.split(' ')) {
            if !p.is_empty() && seen.insert(p) {
                pairs.push((p.to_string(), seq));
            }
        }
    }
    pairs.sort();
    pairs
}

/// Inserts patient index rows; rows already there are left alone.
async fn insert_pairs(conn: &mut Conn<'_>, pairs: &[(String, i64)]) -> Result<()> {
    for chunk in pairs.chunks(400) {
        let mut sql = Sql::new("INSERT INTO audit_patients (patient, seq) VALUES ");
        for (n, (p, seq)) in chunk.iter().enumerate() {
            sql.row(n == 0, vec![Arg::Text(p.clone()), Arg::I64(*seq)]);
        }
        sql.push(" ON CONFLICT (patient, seq) DO NOTHING");
        conn.execute(&sql.text, sql.args).await?;
    }
    Ok(())
}

/// The bound values of one entry, in the column order of the inserts below.
fn values(row: &AuditRow) -> Vec<Arg> {
    vec![
        Arg::I64(row.seq),
        Arg::I64(row.recorded),
        Arg::Text(row.actor.clone()),
        Arg::OptText(row.role.clone()),
        Arg::Text(row.action.clone()),
        Arg::OptText(row.res_type.clone()),
        Arg::OptText(row.res_id.clone()),
        Arg::OptI64(row.version),
        Arg::OptText(row.patients.clone()),
        Arg::Text(row.outcome.clone()),
        Arg::OptText(row.source.clone()),
        Arg::OptText(row.purpose.clone()),
        Arg::OptText(row.request_id.clone()),
        Arg::OptText(row.detail.clone()),
        Arg::Text(row.mac.clone()),
    ]
}

/// Inserts chained entries (on PostgreSQL with `COPY`). Their patient index rows are added
/// afterwards, in bulk (one random-order index insert per entry would multiply the cost of
/// every audited request).
async fn append(conn: &mut Conn<'_>, rows: &[AuditRow]) -> Result<()> {
    if let Conn::Postgres(c) = conn {
        let mut data = CopyText::new();
        for row in rows {
            data.i64(row.seq)
                .i64(row.recorded)
                .text(&row.actor)
                .opt_text(row.role.as_deref())
                .text(&row.action)
                .opt_text(row.res_type.as_deref())
                .opt_text(row.res_id.as_deref())
                .opt_i64(row.version)
                .opt_text(row.patients.as_deref())
                .text(&row.outcome)
                .opt_text(row.source.as_deref())
                .opt_text(row.purpose.as_deref())
                .opt_text(row.request_id.as_deref())
                .opt_text(row.detail.as_deref())
                .text(&row.mac)
                .end_row();
        }
        copy_in(
            c,
            "COPY audit_log (seq, recorded, actor, role, action, res_type, res_id, version, patients, outcome, source, purpose, request_id, detail, mac) FROM STDIN",
            data,
        )
        .await?;
        return Ok(());
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new(
            "INSERT INTO audit_log (seq, recorded, actor, role, action, res_type, res_id, version, patients, outcome, source, purpose, request_id, detail, mac) VALUES ",
        );
        for (n, row) in chunk.iter().enumerate() {
            sql.row(n == 0, values(row));
        }
        conn.execute(&sql.text, sql.args).await?;
    }
    Ok(())
}

/// The setting that holds the last entry whose patients are in `audit_patients`.
const INDEXED: &str = "audit.patients_indexed";

/// Most entries indexed in one transaction (a short one: it holds the write lock).
pub const INDEX_BATCH: i64 = 500;

impl Store {
    /// The newest entry's sequence number and MAC (no lock).
    pub async fn audit_tail(&self) -> Result<Option<(i64, String)>> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch(
                "SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1",
                vec![],
                |r| Ok((r.i64(0)?, r.text(1)?)),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Appends entries chained after entry `after` in one statement (its own transaction), but
    /// only if `after` is still the newest entry; false (nothing written) when another writer
    /// got there first. At most [`ROWS_PER_INSERT`] rows.
    pub async fn audit_append_after(&self, after: i64, rows: &[AuditRow]) -> Result<bool> {
        if rows.is_empty() {
            return Ok(true);
        }
        let mut sql = Sql::new(
            "INSERT INTO audit_log (seq, recorded, actor, role, action, res_type, res_id, version, patients, outcome, source, purpose, request_id, detail, mac) SELECT * FROM (VALUES ",
        );
        for (n, row) in rows.iter().take(ROWS_PER_INSERT).enumerate() {
            sql.row(n == 0, values(row));
        }
        sql.push(") AS v WHERE (SELECT COALESCE(MAX(seq), 0) FROM audit_log) = ")
            .bind_i64(after);
        let mut conn = self.writer().await?;
        match conn.execute(&sql.text, sql.args).await {
            Ok(n) => Ok(n > 0),
            // Two writers chose the same sequence number: the other one won.
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The last entry whose patients are in the patient index (0 for none).
    pub async fn audit_patients_indexed(&self) -> Result<i64> {
        Ok(self
            .setting(INDEXED)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Adds the patient index rows of the entries appended since the last call (at most
    /// [`INDEX_BATCH`], in a short transaction of its own). Returns how many entries it covered.
    pub async fn index_audit_patients(&self) -> Result<i64> {
        let mut tx = self.begin().await?;
        let n = tx.audit_index_patients(INDEX_BATCH).await?;
        if n == 0 {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(n)
    }

    /// Upkeep after a burst of appends (SQLite: a passive WAL checkpoint from the maintenance
    /// connection, so that checkpoints run beside the writer instead of inside its commits;
    /// PostgreSQL: nothing to do).
    pub async fn audit_sync(&self) -> Result<()> {
        let mut conn = self.maintenance().await?;
        if !matches!(conn, PoolConn::Postgres(_)) {
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)", vec![])
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// Entries in chain order after `after_seq`, at most `limit`.
    pub async fn audit_chain(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRow>> {
        let mut sql = Sql::new(COLUMNS);
        sql.push(" WHERE seq > ")
            .bind_i64(after_seq)
            .push(" ORDER BY seq LIMIT ")
            .bind_i64(limit as i64);
        let mut conn = self.reader().await?;
        conn.fetch(&sql.text, sql.args, audit_row).await
    }

    /// The patient rows of entries `from..=to`, as `(seq, patient)`.
    pub async fn audit_patient_rows(&self, from: i64, to: i64) -> Result<Vec<(i64, String)>> {
        let mut conn = self.reader().await?;
        conn.fetch(
            "SELECT seq, patient FROM audit_patients WHERE seq >= $1 AND seq <= $2",
            vec![Arg::I64(from), Arg::I64(to)],
            |r| Ok((r.i64(0)?, r.text(1)?)),
        )
        .await
    }

    /// The number of entries and the last one's sequence number.
    pub async fn audit_extent(&self) -> Result<(i64, Option<i64>)> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch("SELECT COUNT(*), MAX(seq) FROM audit_log", vec![], |r| {
                Ok((r.i64(0)?, r.opt_i64(1)?))
            })
            .await?;
        Ok(rows.into_iter().next().unwrap_or((0, None)))
    }

    /// Entries matching `q`, by sequence number.
    pub async fn audit_search(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut sql = Sql::new(COLUMNS);
        sql.push(" WHERE 1 = 1");
        audit_conditions(&mut sql, q);
        if let Some(after) = q.after_seq.filter(|_| q.sort == AuditColumn::Seq) {
            sql.push(if q.descending {
                " AND seq < "
            } else {
                " AND seq > "
            })
            .bind_i64(after);
        }
        let dir = if q.descending { " DESC" } else { " ASC" };
        sql.push(" ORDER BY ").push(q.sort.sql()).push(dir);
        if q.sort != AuditColumn::Seq {
            sql.push(", seq").push(dir);
        }
        sql.push(" LIMIT ").bind_i64(q.limit as i64);
        let mut conn = self.reader().await?;
        conn.fetch(&sql.text, sql.args, audit_row).await
    }

    /// How many entries match `q` (ignoring its paging).
    pub async fn audit_count(&self, q: &AuditQuery) -> Result<i64> {
        let mut sql = Sql::new("SELECT COUNT(*) FROM audit_log WHERE 1 = 1");
        audit_conditions(&mut sql, q);
        let mut conn = self.reader().await?;
        Ok(conn
            .fetch(&sql.text, sql.args, |r| r.i64(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }
}

fn audit_conditions(sql: &mut Sql, q: &AuditQuery) {
    if let Some(seq) = q.seq {
        sql.push(" AND seq = ").bind_i64(seq);
    }
    if let Some(from) = q.from {
        sql.push(" AND recorded >= ").bind_i64(from);
    }
    if let Some(to) = q.to {
        sql.push(" AND recorded <= ").bind_i64(to);
    }
    if let Some(actor) = &q.actor {
        sql.push(" AND actor = ").bind_text(actor);
    }
    if let Some(outcome) = &q.outcome {
        sql.push(" AND outcome = ").bind_text(outcome);
    }
    if !q.actions.is_empty() {
        sql.push(" AND action IN (");
        for (i, a) in q.actions.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_text(a);
        }
        sql.push(")");
    }
    if let Some(p) = &q.patient {
        // Indexed entries through the index; the newest (not yet indexed) by their own list.
        sql.push(" AND (seq IN (SELECT seq FROM audit_patients WHERE patient = ")
            .bind_text(p)
            .push(") OR (seq > (SELECT COALESCE(MAX(CAST(value AS BIGINT)), 0) FROM settings WHERE key = ")
            .bind_text(INDEXED)
            .push(") AND (' ' || patients || ' ') LIKE ")
            .bind_text(&format!("% {} %", p.replace(['%', '_', '\\'], "")))
            .push("))");
    }
}
