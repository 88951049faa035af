//! One `Store` over either database: typed sqlx pools, bound arguments, and a tiny SQL builder
//! that only ever appends static text and numbered placeholders.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{PgConnection, PgPool, Row, SqliteConnection, SqlitePool};

use crate::Result;

/// A read connection idle at least this long is pinged before it is lent again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pools {
    /// SQLite: many readers, one writer (writes are serialized by SQLite anyway; one connection
    /// avoids busy-waiting between our own writers).
    Sqlite {
        read: std::sync::Arc<ReadPool<SqliteConnection>>,
        write: SqlitePool,
        /// One connection for WAL checkpoints, so that they run beside the writer (a passive
        /// checkpoint does not block it) instead of inside its commits.
        maintenance: SqlitePool,
    },
    Postgres {
        /// Writes, transactions and upkeep.
        pool: PgPool,
        /// Reads: generic plans (a statement planned once per connection).
        read: std::sync::Arc<ReadPool<PgConnection>>,
        /// Reads of every match (counts): planned for each execution's values.
        count: std::sync::Arc<ReadPool<PgConnection>>,
    },
}

/// The resource store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pools: Pools,
    /// Bulk mode: commits do not wait for the disk until bulk mode ends (see
    /// [`Store::set_bulk_mode`]).
    pub(crate) bulk: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How long a read query may run before it is stopped, in ms (see
    /// [`Store::set_query_timeout`]).
    pub(crate) query_timeout: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What steers how a search over the population reads, lately read: how large the store
    /// is, how many index rows a leading filter has (see [`Steering`]).
    pub(crate) steering: Steering,
}

/// How many connections a store reads through, on either database: two per core. The
/// statements are short and bound by the CPU, and more connections than that only take turns
/// on the same cores (on PostgreSQL, 16 served fewer requests, with a longer tail, than 4 on
/// two cores; see docs/perf-log.md).
fn read_connections() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().max(2) * 2)
}

/// The default of [`Store::set_query_timeout`].
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// How long a read (a read, search, count, history …) may run before the database stops it
    /// and it fails with an error for which `StoreError::is_timeout` holds. Applies to the
    /// next query of every read connection.
    pub fn set_query_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.query_timeout
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged write survives a crash of the machine, not only of the process.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            .statement_cache_capacity(512);
        // Connections to a file in this process do not go stale: no ping before each use (it is
        // a round trip to the connection's thread, as costly as the query).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .after_release(|conn, _| Box::pin(outside_transaction(conn)))
            .connect_with(options.clone())
            .await?;
        let query_timeout = timeout_cell();
        let read = ReadPool::open(
            options.clone().read_only(true),
            read_connections(),
            query_timeout.clone(),
        )
        .await?;
        let store = Store {
            pools: Pools::Sqlite {
                read: read.clone(),
                write: write.clone(),
                maintenance: write.clone(),
            },
            bulk: Default::default(),
            steering: Default::default(),
            query_timeout: query_timeout.clone(),
        };
        store.migrate().await?;
        let maintenance = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .after_release(|conn, _| Box::pin(outside_transaction(conn)))
            .connect_with(options.clone())
            .await?;
        Ok(Store {
            pools: Pools::Sqlite {
                read,
                write,
                maintenance,
            },
            bulk: Default::default(),
            steering: Default::default(),
            query_timeout,
        })
    }

    /// Connects to PostgreSQL and migrates. `schema`, when given, is created if needed and used
    /// as the search path (tests use one schema each).
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Store> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            // The schema name is an identifier and cannot be bound: accept only a safe charset.
            if !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(sqlx::Error::Configuration("invalid schema name".into()).into());
            }
            let create = ["CREATE SCHEMA IF NOT EXISTS ", schema].concat();
            sqlx::raw_sql(&create).execute(&admin).await?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        // No JIT compilation: our statements are short seeks whose plans PostgreSQL may still
        // cost above `jit_above_cost` (a walk's LIMIT is not in the estimate), and compiling
        // one took longer than running it — every time, for plans are not cached across
        // statements with different values.
        options = options.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(60))
            .after_release(|conn, _| Box::pin(outside_transaction(conn)))
            .connect_with(options.clone())
            .await?;
        // Read connections cannot write, as SQLite's are opened read-only: a read that runs again
        // after a lost connection can change nothing.
        // A read whose client went away is noticed within a second and stopped (PostgreSQL
        // checks the socket while the query runs), instead of running on for nobody.
        // Reads run generic plans: a statement is planned once per connection, not for each
        // execution's values. Planning a search took as long as running it (a third of the
        // server's time under load), and PostgreSQL kept re-planning, for the generic plans'
        // estimates look worse than they run. Our statements fix their own shape (the leading
        // filter and the order of reading are chosen in the SQL), and the plan tests check
        // every search's generic plan on a database with a clinic's statistics. Writes plan
        // each execution (see `Store::begin`).
        let read_only = options.options([
            ("default_transaction_read_only", "on"),
            ("client_connection_check_interval", "1000"),
        ]);
        let query_timeout = timeout_cell();
        let read = ReadPool::open(
            read_only
                .clone()
                .options([("plan_cache_mode", "force_generic_plan")]),
            read_connections(),
            query_timeout.clone(),
        )
        .await?;
        // A count reads every match: its plan must suit the value (a common code is counted by
        // hashing, a rare one by seeks; a generic plan counted 49,000 matches by seeks in twice
        // the time), and planning is a small part of it. As many as the reads (two per core, as
        // SQLite's readers): a count keeps a core busy while it runs, and sixteen of the 810,905
        // laboratory results of 16,000 patients at once on two cores each took more than the
        // query time limit, so that none was answered; those beyond wait their turn instead.
        let count = ReadPool::open(read_only, read_connections(), query_timeout.clone()).await?;
        let store = Store {
            pools: Pools::Postgres { pool, read, count },
            bulk: Default::default(),
            steering: Default::default(),
            query_timeout,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Whether [`Store::close`] has been called.
    pub fn is_closed(&self) -> bool {
        match &self.pools {
            Pools::Sqlite { write, .. } => write.is_closed(),
            Pools::Postgres { pool, .. } => pool.is_closed(),
        }
    }

    /// Closes all connections (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite {
                read,
                write,
                maintenance,
            } => {
                read.close().await;
                maintenance.close().await;
                write.close().await;
            }
            Pools::Postgres { pool, read, count } => {
                read.close().await;
                count.close().await;
                pool.close().await;
            }
        }
    }

    /// Bulk mode, for imports: while on, commits do not wait for the disk (SQLite
    /// `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off` per transaction), which is
    /// still safe against a crash of the process, not of the machine. Turning it off makes
    /// everything written so far durable before it returns, so an import acknowledges only
    /// what is on disk, and (PostgreSQL) vacuums and analyzes the tables searches read.
    pub async fn set_bulk_mode(&self, on: bool) -> Result<()> {
        self.bulk.store(on, std::sync::atomic::Ordering::SeqCst);
        let mut conn = self.writer().await?;
        match &mut conn {
            PoolConn::Sqlite(_) | PoolConn::SqliteRead(_) => {
                if on {
                    conn.execute("PRAGMA synchronous = NORMAL", vec![]).await?;
                } else {
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)", vec![])
                        .await?;
                    conn.execute("PRAGMA synchronous = FULL", vec![]).await?;
                }
            }
            PoolConn::Postgres(_) | PoolConn::PostgresRead(_) => {
                if !on {
                    // A synchronous commit flushes the write-ahead log up to it, and with it
                    // every asynchronous commit before.
                    conn.execute(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        vec![Arg::Text("bulk.flushed".into()), Arg::Text(ironchart_fhir::Instant::now().as_millis().to_string())],
                    )
                    .await?;
                    // A bulk load leaves the planner's statistics empty or stale until
                    // autovacuum's next pass (if autovacuum runs at all); meanwhile it chooses
                    // by guesswork (a patient's references read by type and parameter alone,
                    // say). And until a vacuum marks the new pages all-visible, an index-only
                    // read still visits the table for every row. Both are done now, for the
                    // tables searches read.
                    conn.execute(
                        "VACUUM (ANALYZE) resources, resource_versions, idx_string, idx_token, idx_date, idx_number, idx_quantity, idx_reference, idx_uri, idx_ref_date",
                        vec![],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Reads a setting (a small key/value table for operational state).
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch(
                "SELECT value FROM settings WHERE key = $1",
                vec![Arg::Text(key.to_string())],
                |r| r.text(0),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Removes a setting (nothing when there is none).
    pub async fn delete_setting(&self, key: &str) -> Result<()> {
        let mut conn = self.writer().await?;
        conn.execute(
            "DELETE FROM settings WHERE key = $1",
            vec![Arg::Text(key.to_string())],
        )
        .await?;
        Ok(())
    }

    /// Writes a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut conn = self.writer().await?;
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![Arg::Text(key.to_string()), Arg::Text(value.to_string())],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn reader(&self) -> Result<PoolConn> {
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => PoolConn::SqliteRead(read.acquire().await?),
            Pools::Postgres { read, .. } => PoolConn::PostgresRead(read.acquire().await?),
        })
    }

    /// A read connection for statements that read every match (counts): on PostgreSQL one that
    /// plans each execution for its values; the same readers on SQLite.
    pub(crate) async fn counter(&self) -> Result<PoolConn> {
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => PoolConn::SqliteRead(read.acquire().await?),
            Pools::Postgres { count, .. } => PoolConn::PostgresRead(count.acquire().await?),
        })
    }

    /// The connection for background upkeep (SQLite: WAL checkpoints); the writer on
    /// PostgreSQL.
    pub(crate) async fn maintenance(&self) -> Result<PoolConn> {
        Ok(match &self.pools {
            Pools::Sqlite { maintenance, .. } => PoolConn::Sqlite(maintenance.acquire().await?),
            Pools::Postgres { pool, .. } => PoolConn::Postgres(pool.acquire().await?),
        })
    }

    pub(crate) async fn writer(&self) -> Result<PoolConn> {
        Ok(match &self.pools {
            Pools::Sqlite { write, .. } => PoolConn::Sqlite(write.acquire().await?),
            Pools::Postgres { pool, .. } => PoolConn::Postgres(pool.acquire().await?),
        })
    }
}

/// Whether a connection handed back to a sqlx pool may be lent again: only when it is provably
/// outside any transaction. A transaction dropped before its end (an error, a cancelled request)
/// queues a `ROLLBACK`; it runs first. One still inside a transaction after that is closed
/// instead: its `COMMIT` or `ROLLBACK` failed, so nobody knows what the database holds for it
/// (SQLite rolls back by itself on a full disk or an I/O error, and then refuses the `ROLLBACK`
/// sent after it, leaving sqlx counting a transaction that is gone: lent again, every `BEGIN`
/// on it would fail). An error here makes the pool close the connection too. A connection that
/// ended its transaction costs nothing more: no round trip unless a rollback is queued.
async fn outside_transaction<C: sqlx::Connection>(conn: &mut C) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() {
        conn.ping().await?;
    }
    if conn.is_in_transaction() {
        tracing::warn!(
            "a database connection whose transaction could not be ended is closed, not reused"
        );
        return Ok(false);
    }
    Ok(true)
}

pub(crate) enum PoolConn {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    SqliteRead(ReadConn<SqliteConnection>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    PostgresRead(ReadConn<PgConnection>),
}

impl PoolConn {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            PoolConn::Sqlite(c) => Conn::Sqlite(c),
            PoolConn::SqliteRead(c) => Conn::SqliteRead(c),
            PoolConn::Postgres(c) => Conn::Postgres(c),
            PoolConn::PostgresRead(c) => Conn::PostgresRead(c),
        }
    }

    pub(crate) async fn fetch<T>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn RowGet) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.conn().fetch(sql, args, map).await
    }

    pub(crate) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        self.conn().execute(sql, args).await
    }
}

/// The connections that reads use, handed out and taken back without sqlx's pool. sqlx's pool
/// pings every connection it takes back (and, by default, every one it lends): one more round
/// trip per query, to SQLite's connection thread or to the PostgreSQL server, costing about as
/// much as the query. A read connection holds no transaction between uses, and one whose last
/// query did not end with the server's answer (abandoned halfway, or cut off) is closed instead
/// of kept, so a connection taken back is safe to hand out again without a ping. One that sat
/// idle for [`PING_AFTER_IDLE`] is pinged first (the server may have restarted), and replaced
/// when the ping fails. Connections are opened as needed, up to the pool's size.
pub(crate) struct ReadPool<C: ReadConnection> {
    idle: std::sync::Mutex<Vec<(C, std::time::Instant, QueryLimit)>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    options: C::Options,
    /// The store's query timeout (ms).
    timeout: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn timeout_cell() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
        DEFAULT_QUERY_TIMEOUT.as_millis() as u64,
    ))
}

/// How a read connection's queries are held to the time limit: the deadline of the query
/// running on it (ms since the epoch; 0 for none), and the timeout last set on the server.
#[derive(Clone, Default)]
pub(crate) struct QueryLimit {
    deadline: std::sync::Arc<std::sync::atomic::AtomicI64>,
    applied_ms: u64,
}

/// A connection a [`ReadPool`] lends: it can be held to a time limit per query.
pub(crate) trait ReadConnection: sqlx::Connection {
    /// Makes the connection stop a query past its deadline or timeout (`fresh`: just opened).
    fn hold_to(
        &mut self,
        limit: &mut QueryLimit,
        timeout_ms: u64,
        fresh: bool,
    ) -> impl Future<Output = std::result::Result<(), sqlx::Error>> + Send;
}

impl ReadConnection for SqliteConnection {
    /// SQLite has no statement timeout: a progress handler, called every few thousand
    /// instructions of a query, interrupts it once the deadline has passed (or was set to the
    /// past because the query was abandoned).
    async fn hold_to(
        &mut self,
        limit: &mut QueryLimit,
        _timeout_ms: u64,
        fresh: bool,
    ) -> std::result::Result<(), sqlx::Error> {
        if fresh {
            let deadline = limit.deadline.clone();
            self.lock_handle()
                .await?
                .set_progress_handler(4000, move || {
                    let d = deadline.load(std::sync::atomic::Ordering::Relaxed);
                    d == 0 || ironchart_fhir::Instant::now().as_millis() < d
                });
        }
        Ok(())
    }
}

impl ReadConnection for PgConnection {
    /// PostgreSQL's `statement_timeout`, set when it differs from the store's.
    async fn hold_to(
        &mut self,
        limit: &mut QueryLimit,
        timeout_ms: u64,
        _fresh: bool,
    ) -> std::result::Result<(), sqlx::Error> {
        if limit.applied_ms != timeout_ms {
            sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                .bind(timeout_ms.to_string())
                .execute(&mut *self)
                .await?;
            limit.applied_ms = timeout_ms;
        }
        Ok(())
    }
}

impl<C: ReadConnection> ReadPool<C> {
    /// A pool of up to `n` connections; the first is opened now, so that a wrong address or
    /// file fails here.
    async fn open(
        options: C::Options,
        n: usize,
        timeout: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<std::sync::Arc<ReadPool<C>>> {
        use sqlx::ConnectOptions;
        let mut first: C = options.connect().await?;
        let mut limit = QueryLimit::default();
        first
            .hold_to(
                &mut limit,
                timeout.load(std::sync::atomic::Ordering::SeqCst),
                true,
            )
            .await?;
        Ok(std::sync::Arc::new(ReadPool {
            idle: std::sync::Mutex::new(vec![(first, std::time::Instant::now(), limit)]),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(n)),
            options,
            timeout,
        }))
    }

    /// A new connection, held to the time limit.
    async fn connect(&self) -> std::result::Result<(C, QueryLimit), sqlx::Error> {
        use sqlx::ConnectOptions;
        let mut conn: C = self.options.connect().await?;
        let mut limit = QueryLimit::default();
        conn.hold_to(&mut limit, self.timeout_ms(), true).await?;
        Ok((conn, limit))
    }

    fn timeout_ms(&self) -> u64 {
        self.timeout.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn acquire(self: &std::sync::Arc<Self>) -> Result<ReadConn<C>> {
        let permit = tokio::time::timeout(
            Duration::from_secs(60),
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
        .map_err(|_| sqlx::Error::PoolClosed)?;
        let mut idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        // One idle for a while is pinged first, and replaced when the ping fails.
        if let Some((c, since, _)) = idle.as_mut()
            && since.elapsed() >= PING_AFTER_IDLE
            && c.ping().await.is_err()
        {
            idle = None;
        }
        let (conn, limit, reused) = match idle {
            Some((mut c, _, mut limit)) => {
                c.hold_to(&mut limit, self.timeout_ms(), false).await?;
                (c, limit, true)
            }
            None => {
                let (c, limit) = self.connect().await?;
                (c, limit, false)
            }
        };
        Ok(ReadConn {
            conn: Some(conn),
            limit,
            pool: self.clone(),
            _permit: permit,
            settled: true,
            reused,
        })
    }

    /// Closes every connection (waiting for those in use).
    async fn close(&self) {
        self.permits.close();
        let conns: Vec<C> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).map(|(c, _, _)| c).collect(),
            Err(_) => Vec::new(),
        };
        for c in conns {
            let _ = c.close().await;
        }
    }
}

/// A read connection lent by [`ReadPool`]; back to the pool when dropped, unless its last query
/// did not end cleanly.
pub(crate) struct ReadConn<C: ReadConnection> {
    conn: Option<C>,
    limit: QueryLimit,
    pool: std::sync::Arc<ReadPool<C>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// False from the start of a query until it ends with an answer from the server (rows or a
    /// refusal). A query abandoned halfway, or one that met a broken link or a server going away,
    /// leaves it false, and the connection is closed instead of lent again.
    settled: bool,
    /// Taken from the pool without a ping: the server may have ended its session meanwhile.
    reused: bool,
}

impl<C: ReadConnection> ReadConn<C> {
    fn connection(&mut self) -> &mut C {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a lent connection is present until dropped"),
        }
    }

    /// The connection, for a query about to start: until [`ReadConn::settle`], it counts as
    /// not ended cleanly.
    fn start(&mut self) -> &mut C {
        self.settled = false;
        let deadline = ironchart_fhir::Instant::now()
            .as_millis()
            .saturating_add(self.pool.timeout_ms() as i64);
        self.limit
            .deadline
            .store(deadline, std::sync::atomic::Ordering::Relaxed);
        self.connection()
    }

    /// After a query's first try: whether to run it once more, on a new connection. So it is
    /// when the connection, lent without a ping, turns out to be gone (the server restarted or
    /// ended the session while it sat in the pool): after a restart no read fails for it. Every
    /// query on a read connection only reads, so running it again is safe.
    async fn renewed<T>(
        &mut self,
        first: &std::result::Result<T, sqlx::Error>,
    ) -> std::result::Result<bool, sqlx::Error> {
        if !(self.reused && first.as_ref().is_err_and(connection_lost)) {
            return Ok(false);
        }
        self.reused = false;
        let (conn, limit) = self.pool.connect().await?;
        self.conn = Some(conn);
        self.limit = limit;
        self.limit.deadline.store(
            ironchart_fhir::Instant::now()
                .as_millis()
                .saturating_add(self.pool.timeout_ms() as i64),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(true)
    }

    /// Notes how a query ended.
    fn settle<T>(&mut self, result: &std::result::Result<T, sqlx::Error>) {
        self.limit
            .deadline
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.settled = match result {
            Ok(_) => true,
            Err(e) => !connection_lost(e),
        };
    }
}

/// Whether an error means the connection itself is no longer usable: the link broke, the protocol
/// went out of step, or the server ended the session (SQLSTATE classes 08, connection exception,
/// and 57, operator intervention: a shutdown, a restart, `pg_terminate_backend`).
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        // (57014 is a query stopped at its time limit: the connection is fine.)
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| (c.starts_with("08") || c.starts_with("57")) && c != QUERY_CANCELED),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// PostgreSQL's SQLSTATE for a query stopped by `statement_timeout` (or a cancel request).
pub(crate) const QUERY_CANCELED: &str = "57014";

impl<C: ReadConnection> Drop for ReadConn<C> {
    fn drop(&mut self) {
        if !self.settled {
            // Abandoned halfway (the client went away): a query still running on SQLite's
            // thread stops at its next progress check instead of running on for nobody.
            self.limit
                .deadline
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
        // One whose last query did not end cleanly, or left inside a transaction, is dropped
        // (closed), not lent again.
        if let Some(c) = self.conn.take()
            && self.settled
            && !c.is_in_transaction()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push((c, std::time::Instant::now(), self.limit.clone()));
        }
    }
}

/// Runs a query on a [`ReadConn`]: marks it started, runs it once more on a new connection when
/// [`ReadConn::renewed`] says so, and notes how it ended. `$run` is the query, on `$conn`.
macro_rules! on_read_conn {
    ($c:expr, $conn:ident => $run:expr) => {{
        let mut result = {
            let $conn = $c.start();
            $run
        };
        if $c.renewed(&result).await? {
            let $conn = $c.connection();
            result = $run;
        }
        $c.settle(&result);
        result
    }};
}

/// A borrowed connection (pooled or inside a transaction) on either database.
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
    /// Read connections of the store's own pools (they keep track of how each query ended,
    /// and hold it to the time limit).
    SqliteRead(&'a mut ReadConn<SqliteConnection>),
    PostgresRead(&'a mut ReadConn<PgConnection>),
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    I64(i64),
    OptI64(Option<i64>),
    F64(f64),
    Bool(bool),
    Bytes(Option<Vec<u8>>),
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::I64(v) => q.bind(v),
                Arg::OptI64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

impl Conn<'_> {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) | Conn::SqliteRead(_) => Backend::Sqlite,
            Conn::Postgres(_) | Conn::PostgresRead(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn fetch<T>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn RowGet) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Conn::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                let rows = bind_args!(sqlx::query(&sql), args)
                    .fetch_all(&mut **c)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
            Conn::Postgres(c) => {
                let rows = bind_args!(sqlx::query(sql), args)
                    .fetch_all(&mut **c)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
            Conn::SqliteRead(c) => {
                let sql = sqlite_placeholders(sql);
                let rows = on_read_conn!(c, conn => bind_args!(sqlx::query(&sql), args.clone())
                    .fetch_all(conn)
                    .await)?;
                rows.iter().map(|r| map(r)).collect()
            }
            Conn::PostgresRead(c) => {
                let rows = on_read_conn!(c, conn => bind_args!(sqlx::query(sql), args.clone())
                    .fetch_all(conn)
                    .await)?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    }

    pub(crate) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        Ok(match self {
            Conn::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                bind_args!(sqlx::query(&sql), args)
                    .execute(&mut **c)
                    .await?
                    .rows_affected()
            }
            Conn::Postgres(c) => bind_args!(sqlx::query(sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::SqliteRead(c) => {
                let sql = sqlite_placeholders(sql);
                on_read_conn!(c, conn => bind_args!(sqlx::query(&sql), args.clone())
                .execute(conn)
                .await)?
                .rows_affected()
            }
            Conn::PostgresRead(c) => {
                on_read_conn!(c, conn => bind_args!(sqlx::query(sql), args.clone())
                .execute(conn)
                .await)?
                .rows_affected()
            }
        })
    }

    pub(crate) async fn execute_script(&mut self, sql: &'static str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
            }
            Conn::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
            }
            Conn::SqliteRead(c) => {
                on_read_conn!(c, conn => sqlx::raw_sql(sql).execute(conn).await)?;
            }
            Conn::PostgresRead(c) => {
                on_read_conn!(c, conn => sqlx::raw_sql(sql).execute(conn).await)?;
            }
        }
        Ok(())
    }
}

/// Rows in the text format of PostgreSQL's `COPY`: tab-separated fields, `\N` for NULL,
/// backslash escapes for backslash, tab, newline and carriage return.
#[derive(Debug)]
pub(crate) struct CopyText {
    pub(crate) data: Vec<u8>,
    first: bool,
}

impl CopyText {
    pub(crate) fn new() -> CopyText {
        CopyText {
            data: Vec::new(),
            first: true,
        }
    }

    fn sep(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.data.push(b'\t');
        }
    }

    pub(crate) fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        for &b in v.as_bytes() {
            match b {
                b'\\' => self.data.extend_from_slice(b"\\\\"),
                b'\t' => self.data.extend_from_slice(b"\\t"),
                b'\n' => self.data.extend_from_slice(b"\\n"),
                b'\r' => self.data.extend_from_slice(b"\\r"),
                _ => self.data.push(b),
            }
        }
        self
    }

    pub(crate) fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        use std::io::Write;
        self.sep();
        let _ = write!(self.data, "{v}");
        self
    }

    pub(crate) fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    fn null(&mut self) -> &mut Self {
        self.sep();
        self.data.extend_from_slice(b"\\N");
        self
    }

    /// Ends the current row.
    pub(crate) fn end_row(&mut self) {
        self.data.push(b'\n');
        self.first = true;
    }
}

/// PostgreSQL's `COPY … FROM STDIN` with `rows` in its text format; returns the rows copied.
/// For bulk appends: no parameters to bind and no plan per statement.
pub(crate) async fn copy_in(c: &mut PgConnection, statement: &str, rows: CopyText) -> Result<u64> {
    let mut copy = c.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(rows.data).await {
        let _ = copy.abort("the rows could not be sent").await;
        return Err(e.into());
    }
    Ok(copy.finish().await?)
}

/// Renders `$1, $2, …` placeholders as SQLite's anonymous `?` when they appear exactly in order
/// (which the builder guarantees). SQLite resolves a *named* parameter by walking a list, so
/// binding the thousands of parameters of a multi-row insert by name is quadratic; anonymous
/// ones bind in constant time. Any other text is returned unchanged.
pub(crate) fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    let spans = placeholders(sql);
    if spans.is_empty() || spans.iter().enumerate().any(|(i, p)| p.number != i + 1) {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(rewrite_placeholders(sql, &spans, |_, out| out.push('?')))
}

/// A `$n` placeholder in SQL text: its byte range and number.
pub(crate) struct Placeholder {
    start: usize,
    end: usize,
    number: usize,
}

/// The `$n` placeholders of SQL text, in order.
pub(crate) fn placeholders(sql: &str) -> Vec<Placeholder> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let mut end = i + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if let Ok(number) = sql[i + 1..end].parse::<usize>() {
                out.push(Placeholder {
                    start: i,
                    end,
                    number,
                });
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// `sql` with each placeholder replaced by what `write` appends for its number.
fn rewrite_placeholders(
    sql: &str,
    spans: &[Placeholder],
    write: impl Fn(usize, &mut String),
) -> String {
    let mut out = String::with_capacity(sql.len() + spans.len() * 2);
    let mut last = 0;
    for p in spans {
        out.push_str(&sql[last..p.start]);
        write(p.number, &mut out);
        last = p.end;
    }
    out.push_str(&sql[last..]);
    out
}

/// Column access that works on rows of either database.
pub(crate) trait RowGet {
    fn i64(&self, idx: usize) -> Result<i64>;
    fn text(&self, idx: usize) -> Result<String>;
    fn bool(&self, idx: usize) -> Result<bool>;
    fn opt_bytes(&self, idx: usize) -> Result<Option<Vec<u8>>>;
    fn opt_text(&self, idx: usize) -> Result<Option<String>>;
    fn opt_i64(&self, idx: usize) -> Result<Option<i64>>;
    fn f64(&self, idx: usize) -> Result<f64>;
}

macro_rules! impl_row_get {
    ($row:ty) => {
        impl RowGet for $row {
            fn i64(&self, idx: usize) -> Result<i64> {
                Ok(self.try_get::<i64, _>(idx)?)
            }
            fn text(&self, idx: usize) -> Result<String> {
                Ok(self.try_get::<String, _>(idx)?)
            }
            fn bool(&self, idx: usize) -> Result<bool> {
                Ok(self.try_get::<bool, _>(idx)?)
            }
            fn opt_bytes(&self, idx: usize) -> Result<Option<Vec<u8>>> {
                Ok(self.try_get::<Option<Vec<u8>>, _>(idx)?)
            }
            fn opt_text(&self, idx: usize) -> Result<Option<String>> {
                Ok(self.try_get::<Option<String>, _>(idx)?)
            }
            fn opt_i64(&self, idx: usize) -> Result<Option<i64>> {
                Ok(self.try_get::<Option<i64>, _>(idx)?)
            }
            fn f64(&self, idx: usize) -> Result<f64> {
                Ok(self.try_get::<f64, _>(idx)?)
            }
        }
    };
}
impl_row_get!(SqliteRow);
impl_row_get!(PgRow);

/// Builds SQL from static fragments and numbered placeholders; values only ever go to `args`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(start: &'static str) -> Sql {
        Sql {
            text: start.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends static SQL text.
    pub(crate) fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    pub(crate) fn bind_text(&mut self, value: &str) -> &mut Self {
        self.bind(Arg::Text(value.to_string()))
    }

    pub(crate) fn bind_i64(&mut self, value: i64) -> &mut Self {
        self.bind(Arg::I64(value))
    }

    pub(crate) fn bind_f64(&mut self, value: f64) -> &mut Self {
        self.bind(Arg::F64(value))
    }

    /// Appends one `(…)` row of a multi-row `VALUES` list, preceded by `, ` unless `first`.
    pub(crate) fn row(&mut self, first: bool, values: Vec<Arg>) -> &mut Self {
        self.push(if first { "(" } else { ", (" });
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")")
    }

    /// Appends another builder's SQL, renumbering its placeholders after ours.
    pub(crate) fn append(&mut self, other: Sql) -> &mut Self {
        let offset = self.args.len();
        let spans = placeholders(&other.text);
        let text = rewrite_placeholders(&other.text, &spans, |n, out| {
            out.push('$');
            out.push_str(&(n + offset).to_string());
        });
        self.text.push_str(&text);
        self.args.extend(other.args);
        self
    }
}

/// Figures that steer how a population search reads (walking its order, or reading every
/// match), never what it answers, kept for a short while instead of asked for on every page.
///
/// - The largest row id, read at most once a second: how many resources the store holds, for
///   the threshold of that choice. A statement of its own on every walk was a round trip to
///   PostgreSQL for a figure that moves by a few rows a second; nothing else reads it (a walk
///   to the end reads every row id after its cursor), so a second-old value, or one another
///   process has since outgrown, only shifts a threshold.
/// - How many index rows a search's leading filter has, up to the threshold (kept for ten
///   seconds per statement and arguments): counting up to 2,000 rows was a statement on every
///   page of the same search, a third of a first page's time on PostgreSQL. A stale figure
///   only chooses the other way of reading the same matches.
#[derive(Clone, Default)]
pub(crate) struct Steering {
    max_rid: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, i64)>>>,
    counts: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, i64)>>,
    >,
}

impl Steering {
    const MAX_RID_FOR: std::time::Duration = std::time::Duration::from_secs(1);
    const COUNT_FOR: std::time::Duration = std::time::Duration::from_secs(10);
    /// The most counts kept (each a statement's text and arguments: a few hundred bytes).
    const MOST_COUNTS: usize = 4096;

    pub(crate) async fn max_rid(&self, conn: &mut Conn<'_>) -> Result<i64> {
        if let Ok(cell) = self.max_rid.lock()
            && let Some((at, rid)) = *cell
            && at.elapsed() < Self::MAX_RID_FOR
        {
            return Ok(rid);
        }
        let rid = conn
            .fetch(MAX_RID, vec![], |r| r.opt_i64(0))
            .await?
            .into_iter()
            .next()
            .flatten()
            .unwrap_or(0);
        if let Ok(mut cell) = self.max_rid.lock() {
            *cell = Some((std::time::Instant::now(), rid));
        }
        Ok(rid)
    }

    /// The count `sql` (a statement of one row and one column) answers, from the last ten
    /// seconds if it was asked then.
    pub(crate) async fn count(&self, conn: &mut Conn<'_>, sql: Sql) -> Result<i64> {
        let key = format!("{}\u{0}{:?}", sql.text, sql.args);
        if let Ok(map) = self.counts.lock()
            && let Some((at, n)) = map.get(&key)
            && at.elapsed() < Self::COUNT_FOR
        {
            return Ok(*n);
        }
        let n = conn
            .fetch(&sql.text, sql.args, |r| r.i64(0))
            .await?
            .first()
            .copied()
            .unwrap_or(0);
        if let Ok(mut map) = self.counts.lock() {
            if map.len() >= Self::MOST_COUNTS {
                map.retain(|_, (at, _)| at.elapsed() < Self::COUNT_FOR);
                if map.len() >= Self::MOST_COUNTS {
                    map.clear();
                }
            }
            map.insert(key, (std::time::Instant::now(), n));
        }
        Ok(n)
    }
}

/// The largest row id (see [`Steering`]).
pub(crate) const MAX_RID: &str = "SELECT MAX(rid) FROM resources";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_in_order_only() {
        assert_eq!(sqlite_placeholders("a = $1 AND b = $2"), "a = ? AND b = ?");
        assert_eq!(
            sqlite_placeholders("a = $2 AND b = $1"),
            "a = $2 AND b = $1"
        );
        assert_eq!(sqlite_placeholders("a = $1 OR a = $1"), "a = $1 OR a = $1");
        assert_eq!(sqlite_placeholders("no params"), "no params");
        assert_eq!(sqlite_placeholders("($1, $2), ($3, $4)"), "(?, ?), (?, ?)");
    }

    /// A PostgreSQL store on a schema of its own, when a test database is configured.
    async fn postgres_store(name: &str) -> Option<Store> {
        let url = crate::test_database_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("t_{name}_{}_{nanos}", std::process::id());
        Some(Store::open_postgres(&url, Some(&schema)).await.unwrap())
    }

    /// An SQLite query that never ends, and a PostgreSQL one that takes 30 s.
    const ENDLESS_SQLITE: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c";
    const SLOW_POSTGRES: &str = "SELECT 1::BIGINT FROM pg_sleep(30) WHERE 'abandon-marker' <> ''";

    /// A read past the time limit is stopped by the database and fails as a timeout (not as a
    /// lost connection, not retried); the pool serves the next read.
    async fn a_read_past_its_time_limit_is_stopped(store: Store, slow: &'static str) {
        store.set_query_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let mut conn = store.reader().await.unwrap();
        let err = conn
            .fetch(slow, vec![], |r| r.i64(0))
            .await
            .expect_err("a query past the limit is stopped");
        assert!(err.is_timeout(), "{err}");
        assert!(!err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        drop(conn);
        let mut conn = store.reader().await.unwrap();
        assert_eq!(
            conn.fetch("SELECT CAST(1 AS BIGINT)", vec![], |r| r.i64(0))
                .await
                .unwrap(),
            [1]
        );
        drop(conn);
        store.close().await;
    }

    #[tokio::test]
    async fn a_read_past_its_time_limit_is_stopped_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        a_read_past_its_time_limit_is_stopped(store, ENDLESS_SQLITE).await;
    }

    #[tokio::test]
    async fn a_read_past_its_time_limit_is_stopped_postgres() {
        if let Some(store) = postgres_store("timeout").await {
            a_read_past_its_time_limit_is_stopped(store, SLOW_POSTGRES).await;
        }
    }

    /// CPU time this process has used (user and system), in clock ticks.
    fn cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
    }

    /// A read whose caller goes away (a client that disconnects drops its request) stops in
    /// the database too, instead of running on for nobody: on SQLite the query's thread stops
    /// using a core; on PostgreSQL the server notices within about a second and ends it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_read_stops_in_the_database_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        store.set_query_timeout(Duration::from_secs(600));
        let running = store.clone();
        let task = tokio::spawn(async move {
            let mut conn = running.reader().await.unwrap();
            let _ = conn.fetch(ENDLESS_SQLITE, vec![], |r| r.i64(0)).await;
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let busy_before = cpu_ticks();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(cpu_ticks() > busy_before, "the query runs");
        task.abort();
        let _ = task.await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = cpu_ticks();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let used = cpu_ticks() - before;
        // A query still running would use about 150 ticks (1.5 s of a core).
        assert!(
            used < 50,
            "{used} ticks in 1.5 s after the read was abandoned"
        );
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_read_stops_in_the_database_postgres() {
        let Some(store) = postgres_store("abandoned").await else {
            return;
        };
        store.set_query_timeout(Duration::from_secs(600));
        let running = store.clone();
        let task = tokio::spawn(async move {
            let mut conn = running.reader().await.unwrap();
            let _ = conn.fetch(SLOW_POSTGRES, vec![], |r| r.i64(0)).await;
        });
        let active = || async {
            let mut conn = store.reader().await.unwrap();
            conn.fetch(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%abandon-marker%' AND state = 'active' AND pid <> pg_backend_pid()",
                vec![],
                |r| r.i64(0),
            )
            .await
            .unwrap()[0]
        };
        let start = std::time::Instant::now();
        while active().await == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        let _ = task.await;
        let gone = std::time::Instant::now();
        while active().await > 0 {
            assert!(
                gone.elapsed() < Duration::from_secs(10),
                "the abandoned query still runs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.close().await;
    }

    async fn backend_pid(store: &Store) -> i32 {
        let mut conn = store.reader().await.unwrap();
        conn.fetch("SELECT pg_backend_pid()::BIGINT", vec![], |r| r.i64(0))
            .await
            .unwrap()[0] as i32
    }

    #[tokio::test]
    async fn a_read_connection_keeps_its_session_across_refusals_but_not_an_abandoned_query() {
        let Some(store) = postgres_store("readpool_cancel").await else {
            return;
        };
        let pid = backend_pid(&store).await;
        // A query the server refuses ends cleanly: the connection is lent again.
        let mut conn = store.reader().await.unwrap();
        let refused = conn.fetch("SELECT 1 / 0", vec![], |r| r.i64(0)).await;
        assert!(refused.is_err_and(|e| !e.is_unavailable()));
        drop(conn);
        assert_eq!(backend_pid(&store).await, pid);
        // The caller gives up while the server is still answering: the answer stays unread, so
        // that connection is closed and the next read gets another, which answers its own query.
        let mut conn = store.reader().await.unwrap();
        let slow = conn.fetch("SELECT 1 FROM pg_sleep(0.3)", vec![], |r| r.i64(0));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow)
                .await
                .is_err()
        );
        drop(conn);
        let mut conn = store.reader().await.unwrap();
        let rows = conn
            .fetch(
                "SELECT $1::BIGINT, pg_backend_pid()::BIGINT",
                vec![Arg::I64(42)],
                |r| Ok((r.i64(0)?, r.i64(1)? as i32)),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 42);
        assert_ne!(rows[0].1, pid);
        drop(conn);
        store.close().await;
    }

    async fn terminate(store: &Store, pid: i32) {
        let mut writer = store.writer().await.unwrap();
        writer
            .fetch(
                "SELECT pg_terminate_backend($1::INT, 5000)",
                vec![Arg::I64(pid.into())],
                |r| r.bool(0),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_read_connection_the_server_closed_is_replaced_without_failing_a_read() {
        let Some(store) = postgres_store("readpool_stale").await else {
            return;
        };
        // The server ends the session (as a restart would) while the connection is idle; it is
        // lent again at once, without a ping: the read finds it gone and runs again on a new one.
        let pid = backend_pid(&store).await;
        terminate(&store, pid).await;
        let other = backend_pid(&store).await;
        assert_ne!(other, pid);
        // After a quiet second the ping before lending finds it gone.
        terminate(&store, other).await;
        tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
        let third = backend_pid(&store).await;
        assert!(third != other && third != pid);
        // Read connections cannot write.
        let mut conn = store.reader().await.unwrap();
        let refused = conn
            .execute("CREATE TABLE read_only_check (x BIGINT)", vec![])
            .await;
        assert!(refused.is_err_and(|e| !e.is_unavailable()));
        drop(conn);
        store.close().await;
    }

    /// Writes setting `key` in a transaction of its own.
    async fn write_setting(store: &Store, key: &str, value: &str) -> Result<()> {
        let mut tx = store.begin().await?;
        tx.set_setting(key, value).await?;
        tx.commit().await
    }

    /// A transaction whose end the database refuses, after the database ended it by itself (as
    /// SQLite does on a full disk): its connection is closed, not lent again, and the next
    /// transactions run. Before, sqlx still counted the transaction on the pooled connection,
    /// and every later `BEGIN` on it failed.
    async fn a_connection_whose_transaction_could_not_be_ended_is_not_lent_again(store: Store) {
        for round in 0..3 {
            let mut tx = store.begin().await.unwrap();
            tx.set_setting("lost", "1").await.unwrap();
            // Ends the transaction behind sqlx's back.
            tx.conn().execute("ROLLBACK", vec![]).await.unwrap();
            let ended = tx.commit().await;
            if store.backend() == Backend::Sqlite {
                // "cannot commit - no transaction is active", and the ROLLBACK after it fails too.
                assert!(ended.is_err(), "round {round}");
            }
            write_setting(&store, "kept", &round.to_string())
                .await
                .unwrap();
            // The same with a transaction dropped unfinished (its queued ROLLBACK fails).
            let mut tx = store.begin().await.unwrap();
            tx.conn().execute("ROLLBACK", vec![]).await.unwrap();
            drop(tx);
            write_setting(&store, "kept", &round.to_string())
                .await
                .unwrap();
        }
        assert_eq!(store.setting("kept").await.unwrap().as_deref(), Some("2"));
        assert_eq!(store.setting("lost").await.unwrap(), None);
        store.close().await;
    }

    #[tokio::test]
    async fn a_connection_whose_transaction_could_not_be_ended_is_not_lent_again_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite3"))
            .await
            .unwrap();
        a_connection_whose_transaction_could_not_be_ended_is_not_lent_again(store).await;
    }

    #[tokio::test]
    async fn a_connection_whose_transaction_could_not_be_ended_is_not_lent_again_postgres() {
        let Some(store) = postgres_store("tx_unended").await else {
            return;
        };
        a_connection_whose_transaction_could_not_be_ended_is_not_lent_again(store).await;
    }

    #[tokio::test]
    async fn a_write_connection_whose_session_ended_mid_transaction_is_not_lent_again() {
        let Some(store) = postgres_store("writer_terminated").await else {
            return;
        };
        async fn pid_of(tx: &mut crate::WriteTx) -> i64 {
            tx.conn()
                .fetch("SELECT pg_backend_pid()::BIGINT", vec![], |r| r.i64(0))
                .await
                .unwrap()[0]
        }
        // The session ends between two statements, then between the last statement and COMMIT.
        let mut gone = Vec::new();
        for at_commit in [false, true] {
            let mut tx = store.begin().await.unwrap();
            let pid = pid_of(&mut tx).await;
            gone.push(pid);
            tx.set_setting("lost", "1").await.unwrap();
            terminate(&store, pid as i32).await;
            if !at_commit {
                let refused = tx.set_setting("lost", "2").await;
                assert!(refused.is_err_and(|e| e.is_unavailable()));
            }
            let refused = tx.commit().await;
            assert!(refused.is_err_and(|e| e.is_unavailable()));
            // Every write after it runs, on a live session other than the one that ended.
            for n in 0..20 {
                let mut tx = store.begin().await.unwrap();
                assert!(!gone.contains(&pid_of(&mut tx).await));
                tx.set_setting("kept", &n.to_string()).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
        assert_eq!(store.setting("kept").await.unwrap().as_deref(), Some("19"));
        assert_eq!(store.setting("lost").await.unwrap(), None);
        store.close().await;
    }

    /// A filesystem of `bytes` of its own (tmpfs) in a new directory, unmounted when dropped.
    struct SmallDisk {
        dir: tempfile::TempDir,
    }

    impl SmallDisk {
        /// None where this process may not mount one (not root).
        fn mount(bytes: u64) -> Option<SmallDisk> {
            let dir = tempfile::tempdir().ok()?;
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            mounted.then_some(SmallDisk { dir })
        }

        /// Writes a file until the disk is full.
        fn fill(&self) -> std::path::PathBuf {
            use std::io::Write;
            let path = self.dir.path().join("filler");
            let mut f = std::fs::File::create(&path).unwrap();
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).is_ok() {}
            path
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// The disk fills up under the writer: writes are refused as unavailable (a 503), never
    /// with another error; once room is made again they run at once, without a restart, and
    /// every write that was acknowledged is there. On a tmpfs of its own (the machine's real
    /// `ENOSPC` path: SQLite answers `SQLITE_FULL` and rolls back by itself); where mounting
    /// is not possible, SQLite's own page limit gives the same `SQLITE_FULL` path.
    #[tokio::test]
    async fn writes_are_refused_while_the_disk_is_full_and_run_again_once_it_has_room() {
        let disk = SmallDisk::mount(4 << 20);
        if disk.is_none() {
            eprintln!(
                "cannot mount a tmpfs (not root?): the full disk is simulated with SQLite's max_page_count instead"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = disk.as_ref().map_or(tmp.path(), |d| d.dir.path());
        let store = Store::open_sqlite(&dir.join("db.sqlite3")).await.unwrap();
        let value = "x".repeat(3000);
        write_setting(&store, "before", &value).await.unwrap();
        let filler = disk.as_ref().map(SmallDisk::fill);
        // Writes until the disk refuses one (the WAL may still have room for a few).
        let mut acknowledged = vec!["before".to_string()];
        let mut refused = 0;
        for n in 0..2_000 {
            if filler.is_none() {
                // The limit holds for one connection (the writer may be a new one): no page
                // beyond those the database has.
                let mut w = store.writer().await.unwrap();
                w.execute("PRAGMA max_page_count = 1", vec![])
                    .await
                    .unwrap();
            }
            let key = format!("k{n}");
            match write_setting(&store, &key, &value).await {
                Ok(()) => acknowledged.push(key),
                Err(e) => {
                    assert!(e.is_unavailable(), "a full disk must be a 503, not: {e}");
                    refused += 1;
                    if refused == 5 {
                        break;
                    }
                }
            }
        }
        assert_eq!(refused, 5, "the disk never filled up");
        // Room again.
        match filler {
            Some(path) => std::fs::remove_file(path).unwrap(),
            None => {
                let mut w = store.writer().await.unwrap();
                w.execute("PRAGMA max_page_count = 4294967294", vec![])
                    .await
                    .unwrap();
            }
        }
        write_setting(&store, "after", &value).await.unwrap();
        acknowledged.push("after".into());
        for key in &acknowledged {
            assert_eq!(
                store.setting(key).await.unwrap().as_deref(),
                Some(value.as_str()),
                "{key}"
            );
        }
        store.close().await;
        drop(disk);
    }

    #[test]
    fn append_renumbers() {
        let mut a = Sql::new("SELECT 1 WHERE a = ");
        a.bind_i64(1);
        let mut b = Sql::new("b = ");
        b.bind_i64(2).push(" AND c = ").bind_i64(3);
        a.push(" AND ").append(b);
        assert_eq!(a.text, "SELECT 1 WHERE a = $1 AND b = $2 AND c = $3");
        assert_eq!(a.args.len(), 3);
    }
}
