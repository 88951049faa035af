//! The audit journal: how an entry is written before the response is sent, without a database
//! commit per request.
//!
//! Each process appends its entries to its own journal file in the data directory
//! (`audit-journal-<random>.log`, locked while the process lives). The request writes its own
//! entries to the file (no hand-off to another thread) before its response goes out: from then
//! on they survive any end of the process (a crash, a kill). A flusher thread puts them on the
//! disk (`fdatasync`, many entries per flush): at once for entries someone waits for (every
//! security event, every write's and, with `sync_reads`, every read's), otherwise within
//! [`FLUSH_EVERY`]. A mover task then appends them to the database's chain in large
//! transactions, every [`MOVE_EVERY`] or sooner when many are waiting, recording in the same
//! transaction how far it got in the journal, so that a crash never loses or repeats an entry:
//! the next process to open the database moves what a dead process left behind. Readers of the
//! log (the auditor's searches, `audit verify`, checkpoints) move everything first, so they see
//! every entry written so far.
//!
//! Each journal line carries an HMAC (a key derived from the chain's) over the file's name, the
//! line's number, the previous line's MAC and the entry, so a line changed, inserted, removed
//! or moved while it waits is caught when it is moved; the good part is moved, the damage is
//! itself recorded as a security event, and the file is kept aside for investigation.
//!
//! When the database refuses the entries (it is down or full), the mover retries, and until it
//! succeeds the door fails every request that needs the log: an entry that cannot be written
//! fails its request, and nothing that was acknowledged is lost.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use ironchart_store::{AuditRow, Store};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{Notify, oneshot, watch};

use crate::audit::{ChainKeys, SharedSegment};
use crate::{RecordsError, Result};

/// Journal files are named `audit-journal-<32 hex digits>.log`.
const PREFIX: &str = "audit-journal-";
const SUFFIX: &str = ".log";
/// A journal larger than this is retired (once moved, deleted) and a new one started.
const ROTATE_AT: u64 = 32 << 20;
/// How often waiting entries are moved into the database. Each move is a write to the database,
/// which on SQLite makes every reader connection drop its page cache: seldom, in large batches.
pub(crate) const MOVE_EVERY: Duration = Duration::from_secs(1);
/// Waiting entries that make the mover start before its next tick.
const MOVE_SOON: usize = 10_000;
/// Most entries moved in one transaction.
const MOVE_BATCH: usize = 10_000;
/// Most entries waiting to be moved; beyond it appends wait for the mover (back-pressure).
const MAX_BACKLOG: usize = 200_000;
/// How long an entry that nobody waits for may stay in the journal before it is flushed to the
/// disk.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(10);

type Ack = oneshot::Sender<std::result::Result<(), String>>;

/// What waits for the mover, in journal order.
enum Pending {
    /// Entries `first..first + rows.len()` of `file`.
    Rows {
        file: Arc<JournalFile>,
        first: u64,
        rows: Vec<AuditRow>,
    },
    /// Everything before is moved: answer.
    Flush(Ack),
    /// Everything of `file` is before this: delete it (rotation, or closing when `ack`).
    Retire {
        file: Arc<JournalFile>,
        ack: Option<Ack>,
    },
}

/// One journal file, locked by this process for as long as it is in use.
pub(crate) struct JournalFile {
    name: String,
    path: PathBuf,
    /// Held for the lock (and the writes).
    file: File,
}

impl JournalFile {
    fn create(dir: &Path) -> std::io::Result<JournalFile> {
        let id = uuid::Uuid::new_v4().simple();
        let name = format!("{PREFIX}{id}{SUFFIX}");
        let path = dir.join(&name);
        // Locked under a name recovery ignores, then named: another process never sees it
        // unlocked (and takes it for a dead process's journal).
        let fresh = dir.join(format!(".{PREFIX}{id}.new"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&fresh)?;
        file.try_lock().map_err(std::io::Error::other)?;
        std::fs::rename(&fresh, &path)?;
        if let Ok(d) = File::open(dir) {
            // The new name itself must survive a crash.
            let _ = d.sync_all();
        }
        Ok(JournalFile { name, path, file })
    }

    /// The setting that holds how many of this file's entries are in the database.
    fn moved_key(&self) -> String {
        moved_key(&self.name)
    }

    fn delete(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot delete the moved audit journal {}: {e}", self.name);
        }
    }
}

fn moved_key(name: &str) -> String {
    format!("audit.journal.{name}")
}

/// State shared by the writers, the flusher thread and the mover.
struct State {
    queue: Mutex<VecDeque<Pending>>,
    wake: Notify,
    /// Entries waiting in `queue`.
    backlog: AtomicUsize,
    /// The database refused the last move: appends fail until a move succeeds.
    failing: AtomicBool,
    /// The journal was closed: appends fail.
    closed: AtomicBool,
    /// The disk refused a flush: appends fail until the process is restarted.
    broken: AtomicBool,
    /// Every writer is gone (the journal was dropped): the mover stops when done.
    writer_gone: AtomicBool,
}

impl State {
    fn push(&self, p: Pending) {
        let rows = match &p {
            Pending::Rows { rows, .. } => rows.len(),
            _ => 0,
        };
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(p);
        }
        let waiting = self.backlog.fetch_add(rows, Ordering::SeqCst) + rows;
        if rows == 0 || waiting >= MOVE_SOON {
            self.wake.notify_one();
        }
    }
}

/// The journal's MAC key, derived from the chain's (`chain_mac`).
fn journal_key(chain_mac: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(chain_mac)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"ironchart audit journal v1");
    m.finalize().into_bytes().into()
}

fn line_mac(key: &[u8; 32], file: &str, index: u64, prev: &str, payload: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in [file.as_bytes(), &index.to_be_bytes(), prev.as_bytes()] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.update(payload.as_bytes());
    ironchart_security::hex(&m.finalize().into_bytes())
}

/// An entry as one JSON line (everything but the chain's sequence number and MAC, which the
/// database assigns).
fn payload(row: &AuditRow) -> String {
    // A JSON array, written straight from the row (no intermediate `Value` and its copies).
    let fields = (
        row.recorded,
        &row.actor,
        &row.role,
        &row.action,
        &row.res_type,
        &row.res_id,
        row.version,
        &row.patients,
        &row.outcome,
        &row.source,
        &row.purpose,
        &row.request_id,
        &row.detail,
    );
    match serde_json::to_string(&fields) {
        Ok(text) => text,
        // Strings, numbers and nulls always serialize.
        Err(_) => unreachable!("an audit row is always valid JSON"),
    }
}

fn parse_payload(text: &str) -> Option<AuditRow> {
    let v: Vec<Value> = serde_json::from_str(text).ok()?;
    if v.len() != 13 {
        return None;
    }
    let text = |i: usize| v[i].as_str().map(str::to_string);
    let opt = |i: usize| -> Option<Option<String>> {
        match &v[i] {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => None,
        }
    };
    Some(AuditRow {
        seq: 0,
        recorded: v[0].as_i64()?,
        actor: text(1)?,
        role: opt(2)?,
        action: text(3)?,
        res_type: opt(4)?,
        res_id: opt(5)?,
        version: match &v[6] {
            Value::Null => None,
            n => Some(n.as_i64()?),
        },
        patients: opt(7)?,
        outcome: text(8)?,
        source: opt(9)?,
        purpose: opt(10)?,
        request_id: opt(11)?,
        detail: opt(12)?,
        mac: String::new(),
    })
}

/// The journal writer and mover of one process. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    journal: Arc<Journal>,
}

/// What the writers share: the file's tail (taken for each append), the mover's queue and the
/// flusher.
struct Journal {
    key: [u8; 32],
    dir: PathBuf,
    tail: Mutex<Tail>,
    state: Arc<State>,
    flush: Arc<Flush>,
    durable: watch::Receiver<u64>,
}

/// Where the next entry goes.
struct Tail {
    file: Arc<JournalFile>,
    /// The next line's number in `file`.
    index: u64,
    /// The last line's MAC.
    prev: String,
    /// Bytes in `file`.
    len: u64,
    /// Entries this process has written (all files).
    written: u64,
}

/// Between the writers and the flusher thread.
struct Flush {
    inner: Mutex<FlushInner>,
    wake: Condvar,
    /// Entries on the disk so far (all files); `u64::MAX` when the disk refused a flush.
    durable: watch::Sender<u64>,
}

struct FlushInner {
    file: Arc<JournalFile>,
    written: u64,
    /// Someone waits for the disk: flush now.
    urgent: bool,
    /// The journal is closed or dropped: flush what is left, then stop.
    stop: bool,
}

/// What the mover needs besides the queue.
struct Mover {
    store: Store,
    keys: Arc<ChainKeys>,
    state: Arc<State>,
    segment: SharedSegment,
    appended: Arc<AtomicU64>,
}

impl AuditWriter {
    /// Starts a journal in `dir`, its flusher thread and its mover. `appended` counts moves,
    /// `segment` is the stretch of the chain this process appended (for the checkpoints).
    pub(crate) fn start(
        dir: &Path,
        store: Store,
        keys: Arc<ChainKeys>,
        segment: SharedSegment,
        appended: Arc<AtomicU64>,
    ) -> Result<AuditWriter> {
        let first = Arc::new(JournalFile::create(dir).map_err(|e| {
            RecordsError::Config(format!(
                "cannot create the audit journal in {}: {e}",
                dir.display()
            ))
        })?);
        let state = Arc::new(State {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            backlog: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
        });
        let (durable_tx, durable) = watch::channel(0);
        let flush = Arc::new(Flush {
            inner: Mutex::new(FlushInner {
                file: first.clone(),
                written: 0,
                urgent: false,
                stop: false,
            }),
            wake: Condvar::new(),
            durable: durable_tx,
        });
        let key = keys.mac_keys().next().map(journal_key).unwrap_or_default();
        let (thread_state, thread_flush) = (state.clone(), flush.clone());
        std::thread::Builder::new()
            .name("audit-journal".into())
            .spawn(move || flusher(&thread_flush, &thread_state))
            .map_err(|e| RecordsError::Config(format!("cannot start the audit journal: {e}")))?;
        let mover = Mover {
            store,
            keys,
            state: state.clone(),
            segment,
            appended,
        };
        tokio::spawn(mover.run());
        let journal = Journal {
            key,
            dir: dir.to_path_buf(),
            tail: Mutex::new(Tail {
                file: first,
                index: 0,
                prev: String::new(),
                len: 0,
                written: 0,
            }),
            state,
            flush,
            durable,
        };
        Ok(AuditWriter {
            journal: Arc::new(journal),
        })
    }

    /// Appends entries to the journal file before it returns: once it has, the entries survive
    /// any end of this process. With `durable` it also waits until they are on the disk;
    /// otherwise the flusher puts them there within [`FLUSH_EVERY`] (see `docs/security.md`,
    /// "What the audit log records"). Fails when the entries cannot be written.
    pub(crate) async fn append(&self, rows: Vec<AuditRow>, durable: bool) -> Result<()> {
        let j = &*self.journal;
        // Back-pressure: the database is slow to take the entries.
        let mut waited = 0;
        while j.state.backlog.load(Ordering::SeqCst) > MAX_BACKLOG && waited < 6_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        }
        let payloads: Vec<String> = rows.iter().map(payload).collect();
        let mine = j.write(rows, &payloads, durable)?;
        if durable {
            let mut on_disk = j.durable.clone();
            let flushed = on_disk
                .wait_for(|d| *d >= mine)
                .await
                .map(|d| *d)
                .map_err(|_| RecordsError::AuditUnavailable)?;
            if flushed == u64::MAX {
                return Err(RecordsError::AuditUnavailable);
            }
        }
        Ok(())
    }

    /// Waits until every entry appended so far is in the database.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        {
            let _tail = self.journal.lock_tail()?;
            self.journal.state.push(Pending::Flush(ack));
        }
        answered(done).await
    }

    /// Moves everything into the database, then deletes the journal; later appends fail.
    pub(crate) async fn close(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        {
            let tail = self.journal.lock_tail()?;
            self.journal.state.closed.store(true, Ordering::SeqCst);
            self.journal.state.push(Pending::Retire {
                file: tail.file.clone(),
                ack: Some(ack),
            });
            self.journal.flush.stop();
        }
        answered(done).await
    }
}

async fn answered(done: oneshot::Receiver<std::result::Result<(), String>>) -> Result<()> {
    match done.await {
        Ok(Ok(())) => Ok(()),
        _ => Err(RecordsError::AuditUnavailable),
    }
}

impl Journal {
    fn lock_tail(&self) -> Result<std::sync::MutexGuard<'_, Tail>> {
        self.tail.lock().map_err(|_| RecordsError::AuditUnavailable)
    }

    /// Writes the entries (their `payloads`) at the end of the journal and hands them to the
    /// mover; returns how many entries this process has written with them.
    fn write(&self, rows: Vec<AuditRow>, payloads: &[String], durable: bool) -> Result<u64> {
        let mut t = self.lock_tail()?;
        let state = &self.state;
        if state.closed.load(Ordering::SeqCst)
            || state.failing.load(Ordering::SeqCst)
            || state.broken.load(Ordering::SeqCst)
        {
            return Err(RecordsError::AuditUnavailable);
        }
        let mut buf = String::with_capacity(payloads.iter().map(|p| p.len() + 66).sum());
        let mut mac = t.prev.clone();
        for (i, p) in payloads.iter().enumerate() {
            mac = line_mac(&self.key, &t.file.name, t.index + i as u64, &mac, p);
            buf.push_str(p);
            buf.push('\t');
            buf.push_str(&mac);
            buf.push('\n');
        }
        if let Err(e) = (&t.file.file).write_all(buf.as_bytes()) {
            tracing::error!("the audit journal cannot be written ({e}); requests are failing");
            // Cut off whatever part of the entries reached the file.
            if let Err(e) = t.file.file.set_len(t.len) {
                tracing::error!("cannot repair the audit journal: {e}");
                state.closed.store(true, Ordering::SeqCst);
            }
            return Err(RecordsError::AuditUnavailable);
        }
        let n = rows.len() as u64;
        state.push(Pending::Rows {
            file: t.file.clone(),
            first: t.index,
            rows,
        });
        t.index += n;
        t.prev = mac;
        t.len += buf.len() as u64;
        t.written += n;
        let mine = t.written;
        self.flush.written(mine, durable);
        if t.len >= ROTATE_AT {
            self.rotate(&mut t);
        }
        Ok(mine)
    }

    /// Continues in a new file; the full one goes to the mover, which deletes it once moved.
    fn rotate(&self, t: &mut Tail) {
        let next = match JournalFile::create(&self.dir) {
            Ok(next) => Arc::new(next),
            Err(e) => {
                tracing::warn!("cannot start a new audit journal: {e}");
                return;
            }
        };
        // The flusher only flushes the newest file: this one's last entries go to the disk now.
        if let Err(e) = t.file.file.sync_data() {
            tracing::warn!("cannot flush the full audit journal: {e}");
            next.delete();
            return;
        }
        let old = std::mem::replace(&mut t.file, next.clone());
        self.flush.switch(next);
        self.state.push(Pending::Retire {
            file: old,
            ack: None,
        });
        t.index = 0;
        t.prev.clear();
        t.len = 0;
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush.stop();
        // Nothing more comes: the mover stops once it has moved what is queued.
        self.state.writer_gone.store(true, Ordering::SeqCst);
        self.state.wake.notify_one();
    }
}

impl Flush {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `written` entries are in the file; `urgent` when someone waits for the disk.
    fn written(&self, written: u64, urgent: bool) {
        let mut f = self.lock();
        let was_clean = f.written == *self.durable.borrow();
        f.written = written;
        f.urgent |= urgent;
        if urgent || was_clean {
            self.wake.notify_one();
        }
    }

    fn switch(&self, file: Arc<JournalFile>) {
        self.lock().file = file;
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }
}

/// The flusher thread: puts what was written on the disk (`fdatasync`), at once for those who
/// wait for it, otherwise within [`FLUSH_EVERY`] of the first entry written since the last
/// flush. Stops when told to, after a last flush.
fn flusher(flush: &Flush, state: &State) {
    loop {
        let (file, target) = {
            let mut f = flush.lock();
            let mut deadline: Option<std::time::Instant> = None;
            loop {
                let pending = f.written > *flush.durable.borrow();
                if pending && (f.urgent || f.stop) {
                    break;
                }
                if f.stop {
                    return;
                }
                if !pending {
                    deadline = None;
                    f = flush.wake.wait(f).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                let due = *deadline.get_or_insert_with(|| std::time::Instant::now() + FLUSH_EVERY);
                let now = std::time::Instant::now();
                if now >= due {
                    break;
                }
                f = flush
                    .wake
                    .wait_timeout(f, due - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            f.urgent = false;
            (f.file.clone(), f.written)
        };
        match file.file.sync_data() {
            Ok(()) => {
                // Under the lock: writers compare it with `written` there.
                let _f = flush.lock();
                flush.durable.send_replace(target);
            }
            Err(e) => {
                // The entries since the last flush may not be on the disk: stop accepting any.
                tracing::error!("the audit journal cannot be flushed ({e}); requests are failing");
                state.broken.store(true, Ordering::SeqCst);
                flush.durable.send_replace(u64::MAX);
                return;
            }
        }
    }
}

impl Mover {
    async fn run(self) {
        let mut tick = tokio::time::interval(MOVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.state.wake.notified() => {}
            }
            let ok = self.drain().await;
            if !ok {
                // Answer those waiting for a flush now: they learn the log is down.
                self.fail_waiters();
            }
            if self.state.writer_gone.load(Ordering::SeqCst)
                && self.state.queue.lock().map_or(true, |q| q.is_empty())
            {
                break;
            }
        }
    }

    /// Moves everything waiting when it starts, in order; false when the database refused.
    /// What arrives meanwhile waits for the next round: chasing it would make a commit for every
    /// batch that came in during the last commit, and every commit costs each SQLite reader its
    /// page cache.
    async fn drain(&self) -> bool {
        let mut budget = self.state.queue.lock().map_or(0, |q| q.len());
        while budget > 0 {
            let Some((batch, items)) = self.take() else {
                return true;
            };
            budget = budget.saturating_sub(items);
            match batch {
                Pending::Rows { file, first, rows } => {
                    let n = rows.len();
                    match move_rows(&self.store, &self.keys, &file.name, first, &rows).await {
                        Ok(moved) => {
                            self.state.backlog.fetch_sub(n, Ordering::SeqCst);
                            if let Some((before, last)) = moved {
                                self.extend_segment(before, last);
                                self.appended.fetch_add(1, Ordering::Relaxed);
                            }
                            if self.state.failing.swap(false, Ordering::SeqCst) {
                                tracing::info!("the audit log can be written again");
                            }
                        }
                        Err(e) => {
                            if !self.state.failing.swap(true, Ordering::SeqCst) {
                                tracing::error!(
                                    "the audit log cannot be written ({e}); requests are failing until it can"
                                );
                            }
                            if let Ok(mut q) = self.state.queue.lock() {
                                q.push_front(Pending::Rows { file, first, rows });
                            }
                            return false;
                        }
                    }
                }
                Pending::Flush(ack) => {
                    let _ = ack.send(Ok(()));
                }
                Pending::Retire { file, ack } => {
                    file.delete();
                    if let Err(e) = delete_setting(&self.store, &file.moved_key()).await {
                        tracing::warn!("cannot forget the moved audit journal: {e}");
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
        }
        true
    }

    /// The next thing to do: a marker, or up to [`MOVE_BATCH`] consecutive entries of one file;
    /// and how many queued items it took.
    fn take(&self) -> Option<(Pending, usize)> {
        let mut q = self.state.queue.lock().ok()?;
        match q.pop_front()? {
            Pending::Rows {
                file,
                first,
                mut rows,
            } => {
                let mut items = 1;
                while rows.len() < MOVE_BATCH {
                    match q.front_mut() {
                        Some(Pending::Rows {
                            file: f,
                            first: next,
                            rows: more,
                        }) if Arc::ptr_eq(f, &file) && *next == first + rows.len() as u64 => {
                            rows.append(more);
                            q.pop_front();
                            items += 1;
                        }
                        _ => break,
                    }
                }
                Some((Pending::Rows { file, first, rows }, items))
            }
            other => Some((other, 1)),
        }
    }

    fn fail_waiters(&self) {
        if let Ok(mut q) = self.state.queue.lock() {
            let mut kept = VecDeque::with_capacity(q.len());
            for p in q.drain(..) {
                match p {
                    Pending::Flush(ack) | Pending::Retire { ack: Some(ack), .. } => {
                        let _ = ack.send(Err("the audit log cannot be written".into()));
                    }
                    other => kept.push_back(other),
                }
            }
            *q = kept;
        }
    }

    /// Records the stretch of the chain this process appended (see [`crate::audit`]).
    fn extend_segment(&self, before: Option<(i64, String)>, last: (i64, String)) {
        if let Ok(mut s) = self.segment.lock() {
            let before = before.unwrap_or((0, String::new()));
            if s.end.as_ref() != Some(&before) {
                s.start = Some(before);
            }
            s.end = Some(last);
        }
    }
}

async fn delete_setting(store: &Store, key: &str) -> Result<()> {
    Ok(store.delete_setting(key).await?)
}

/// Appends entries `first..` of journal `file` to the chain, skipping those already moved (by
/// another process that took over the journal), and records how far the journal is moved, all
/// in one transaction. Returns the tail before and the last entry appended, if any.
async fn move_rows(
    store: &Store,
    keys: &ChainKeys,
    file: &str,
    first: u64,
    rows: &[AuditRow],
) -> Result<Option<(Option<(i64, String)>, (i64, String))>> {
    let mut tx = store.begin().await?;
    let before = crate::audit::locked_tail(&mut tx, keys).await?;
    let key = moved_key(file);
    let done: u64 = tx
        .setting(&key)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let skip = done.saturating_sub(first) as usize;
    if skip >= rows.len() {
        tx.rollback().await?;
        return Ok(None);
    }
    let chained = crate::audit::chained(keys, before.clone(), rows[skip..].to_vec());
    // Indexed by patient in the same write (with whatever writes appended before them).
    tx.audit_append_indexed(&chained).await?;
    tx.set_setting(&key, &(first + rows.len() as u64).to_string())
        .await?;
    tx.commit().await?;
    Ok(chained
        .last()
        .map(|last| (before, (last.seq, last.mac.clone()))))
}

/// Moves what journals of processes that are gone hold into the database (they are not locked:
/// a crash, a kill, a closed process that could not finish). Run before this process starts its
/// own journal. Returns how many entries were moved.
pub(crate) async fn recover(dir: &Path, store: &Store, keys: &ChainKeys) -> Result<u64> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut names: Vec<String> = listing
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        .collect();
    names.sort();
    let mut moved = 0;
    for name in names {
        let path = dir.join(&name);
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            // A live process is using it.
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            RecordsError::Config(format!("cannot read the audit journal {name}: {e}"))
        })?;
        // Written under this process's keys, or under those of a master key since replaced
        // (the process was stopped before it could move its journal).
        let mut read = Vec::new();
        for key in keys.mac_keys().map(journal_key) {
            read.push(read_journal(&key, &name, &bytes));
            if read.last().is_some_and(|(_, damage)| damage.is_none()) {
                break;
            }
        }
        let (rows, damage) = match read.iter().position(|(_, d)| d.is_none()) {
            Some(i) => read.swap_remove(i),
            None => read.swap_remove(0),
        };
        for (n, chunk) in rows.chunks(MOVE_BATCH).enumerate() {
            move_rows(store, keys, &name, (n * MOVE_BATCH) as u64, chunk).await?;
        }
        moved += rows.len() as u64;
        match damage {
            None => {
                std::fs::remove_file(&path).map_err(|e| {
                    RecordsError::Config(format!(
                        "cannot delete the moved audit journal {name}: {e}"
                    ))
                })?;
            }
            Some(problem) => {
                tracing::error!("the audit journal {name} is damaged: {problem}; kept aside");
                let event = AuditRow {
                    recorded: crate::service::now_millis(),
                    actor: "system".into(),
                    action: crate::audit::AuditAction::JournalDamaged.as_str().into(),
                    outcome: crate::audit::Outcome::Failure.as_str().into(),
                    detail: Some(format!("{name}: {problem}")),
                    ..Default::default()
                };
                let mut tx = store.begin().await?;
                crate::audit::append_in(&mut tx, keys, vec![event]).await?;
                tx.commit().await?;
                let aside = dir.join(format!("{name}.damaged"));
                std::fs::rename(&path, &aside).map_err(|e| {
                    RecordsError::Config(format!("cannot set aside the audit journal {name}: {e}"))
                })?;
            }
        }
        store.delete_setting(&moved_key(&name)).await?;
    }
    Ok(moved)
}

/// The entries of a journal up to the first damaged line, and the damage if any. A last line
/// without its end was being written when the process stopped: it was never acknowledged.
fn read_journal(key: &[u8; 32], name: &str, bytes: &[u8]) -> (Vec<AuditRow>, Option<String>) {
    let mut rows = Vec::new();
    let mut prev = String::new();
    let mut rest = bytes;
    let mut index: u64 = 0;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let bad = |what: &str| Some(format!("line {} {what}", index + 1));
        let Ok(line) = std::str::from_utf8(line) else {
            return (rows, bad("is not text"));
        };
        let Some((p, mac)) = line.rsplit_once('\t') else {
            return (rows, bad("is malformed"));
        };
        let expected = line_mac(key, name, index, &prev, p);
        if !ironchart_security::constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return (
                rows,
                bad("does not match its MAC: changed, inserted, removed or moved"),
            );
        }
        let Some(row) = parse_payload(p) else {
            return (rows, bad("is not an entry"));
        };
        rows.push(row);
        prev = mac.to_string();
        index += 1;
    }
    (rows, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(n: i64) -> AuditRow {
        AuditRow {
            recorded: n,
            actor: format!("user/{n}"),
            role: Some("nurse".into()),
            action: "read".into(),
            res_type: Some("Patient".into()),
            res_id: Some("p\t\n\"1".into()),
            version: Some(3),
            patients: Some("p1 p2".into()),
            outcome: "success".into(),
            request_id: Some("r".into()),
            ..Default::default()
        }
    }

    fn journal(key: &[u8; 32], name: &str, rows: &[AuditRow]) -> Vec<String> {
        let mut prev = String::new();
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let p = payload(r);
                prev = line_mac(key, name, i as u64, &prev, &p);
                format!("{p}\t{prev}\n")
            })
            .collect()
    }

    /// The journal file of `dir` and its lines.
    fn journal_lines(dir: &Path) -> Vec<String> {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX))
            })
            .expect("a journal");
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A journal in `dir` moving into `store`, under a new master key; and the chain's keys.
    async fn started_writer(store: &Store, dir: &Path) -> (AuditWriter, Arc<ChainKeys>) {
        let master = ironchart_security::keyring::MasterKey::generate();
        let data_keys = crate::keys::Keys::load(store, master).await.unwrap();
        let keys = Arc::new(ChainKeys::of(data_keys.master(), None).unwrap());
        let writer = AuditWriter::start(
            dir,
            store.clone(),
            keys.clone(),
            SharedSegment::default(),
            Arc::new(AtomicU64::new(0)),
        )
        .unwrap();
        (writer, keys)
    }

    #[tokio::test]
    async fn an_entry_is_written_before_append_returns_and_on_the_disk_when_asked_or_soon_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite3"))
            .await
            .unwrap();
        let (writer, _) = started_writer(&store, dir.path()).await;
        let on_disk = || *writer.journal.durable.borrow();

        // Waiting for the disk: flushed when append returns.
        writer.append(vec![row(1)], true).await.unwrap();
        assert!(on_disk() >= 1);
        assert_eq!(journal_lines(dir.path()).len(), 1);

        // Not waiting: in the file when append returns, on the disk soon after.
        writer.append(vec![row(2), row(3)], false).await.unwrap();
        assert_eq!(journal_lines(dir.path()).len(), 3);
        let start = std::time::Instant::now();
        while on_disk() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the flusher never flushed"
            );
            tokio::time::sleep(FLUSH_EVERY).await;
        }

        // Closing moves everything into the log; later appends fail, a flush still answers.
        writer.close().await.unwrap();
        writer.flush().await.unwrap();
        assert!(writer.append(vec![row(4)], false).await.is_err());
        assert!(writer.append(vec![row(4)], true).await.is_err());
        let moved = store.audit_chain(0, 10).await.unwrap();
        assert_eq!(
            moved.iter().map(|r| r.recorded).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        store.close().await;
    }

    /// Entries whose text holds every character a bulk copy must escape, so that a mangled
    /// field would show (and break the chain).
    fn awkward(n: i64) -> AuditRow {
        AuditRow {
            recorded: 1_000 + n,
            actor: format!("user:a\\b\tc{n}"),
            role: Some(String::new()),
            action: "search".into(),
            res_type: Some("Observation".into()),
            res_id: None,
            version: (n % 2 == 0).then_some(n),
            patients: Some(format!("pa{n} pb pa{n}")),
            outcome: "success".into(),
            source: Some("\\N".into()),
            purpose: Some("line one\nline two\r\n\ttabbed \\. end".into()),
            request_id: Some("é—✓ \"quoted\" 'single'".into()),
            detail: (n % 3 != 0).then(|| format!("detail {n}\\")),
            ..Default::default()
        }
    }

    /// Journal → log: entries arrive unchanged, chained and indexed by patient, whether the
    /// patient index was complete before the move or entries written inside a transaction wait.
    async fn moved_entries_arrive_unchanged_and_indexed(store: Store, dir: &Path) {
        let (writer, keys) = started_writer(&store, dir).await;
        let mut expected: Vec<AuditRow> = (1..=3).map(awkward).collect();
        writer.append(expected.clone(), false).await.unwrap();
        writer.flush().await.unwrap();
        // One written inside a write transaction: not indexed by patient until later.
        let mut tx = store.begin().await.unwrap();
        crate::audit::append_in(&mut tx, &keys, vec![awkward(4)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        expected.push(awkward(4));
        let later: Vec<AuditRow> = (5..=700).map(awkward).collect();
        writer.append(later.clone(), true).await.unwrap();
        expected.extend(later);
        writer.close().await.unwrap();

        let stored = store.audit_chain(0, 1_000).await.unwrap();
        assert_eq!(stored.len(), expected.len());
        for (n, (got, want)) in stored.iter().zip(&expected).enumerate() {
            let mut want = want.clone();
            want.seq = n as i64 + 1;
            want.mac.clone_from(&got.mac);
            assert_eq!(got, &want);
        }
        assert!(matches!(
            crate::audit::verify(&store, &keys, None).await.unwrap(),
            crate::audit::VerifyReport::Intact { entries: 700, .. }
        ));
        assert_eq!(store.audit_patients_indexed().await.unwrap(), 700);
        let by_patient = |p: &str| ironchart_store::AuditQuery {
            patient: Some(p.into()),
            limit: 1_000,
            ..Default::default()
        };
        for n in [1, 4, 5, 700] {
            let found = store
                .audit_search(&by_patient(&format!("pa{n}")))
                .await
                .unwrap();
            assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![n]);
        }
        let all = store.audit_patient_rows(1, 700).await.unwrap();
        assert_eq!(all.len(), 1_400, "two patients per entry, each once");
        store.close().await;
    }

    #[tokio::test]
    async fn moved_entries_arrive_unchanged_and_indexed_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite3"))
            .await
            .unwrap();
        moved_entries_arrive_unchanged_and_indexed(store, dir.path()).await;
    }

    #[tokio::test]
    async fn moved_entries_arrive_unchanged_and_indexed_on_postgres() {
        let Ok(url) = std::env::var("IRONCHART_TEST_DATABASE_URL") else {
            eprintln!("IRONCHART_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("t_journal_{}_{nanos}", std::process::id());
        let store = Store::open_postgres(&url, Some(&schema)).await.unwrap();
        moved_entries_arrive_unchanged_and_indexed(store, dir.path()).await;
    }

    #[test]
    fn the_payload_is_the_json_array_of_the_row() {
        let mut r = row(7);
        r.detail = Some("tab\t, quote \", backslash \\, é".into());
        r.role = None;
        let expected = json!([
            r.recorded,
            r.actor,
            r.role,
            r.action,
            r.res_type,
            r.res_id,
            r.version,
            r.patients,
            r.outcome,
            r.source,
            r.purpose,
            r.request_id,
            r.detail,
        ])
        .to_string();
        assert_eq!(payload(&r), expected);
        let mut back = parse_payload(&payload(&r)).unwrap();
        back.seq = r.seq;
        back.mac.clone_from(&r.mac);
        assert_eq!(back, r);
    }

    #[test]
    fn entries_survive_the_journal() {
        let key = [7u8; 32];
        let rows: Vec<AuditRow> = (1..=3).map(row).collect();
        let text = journal(&key, "j", &rows).concat();
        assert_eq!(read_journal(&key, "j", text.as_bytes()), (rows, None));
    }

    #[test]
    fn damage_is_located_and_a_torn_last_line_ignored() {
        let key = [7u8; 32];
        let rows: Vec<AuditRow> = (1..=4).map(row).collect();
        let lines = journal(&key, "j", &rows);
        // A torn last line (no end): never acknowledged, not damage.
        let mut torn = lines[..3].concat();
        torn.push_str(&lines[3][..20]);
        assert_eq!(
            read_journal(&key, "j", torn.as_bytes()),
            (rows[..3].to_vec(), None)
        );
        let check = |text: String, good: usize| {
            let (read, damage) = read_journal(&key, "j", text.as_bytes());
            assert_eq!(read, rows[..good].to_vec());
            let damage = damage.expect("damage found");
            assert!(
                damage.starts_with(&format!("line {} ", good + 1)),
                "{damage}"
            );
        };
        // Removed, reordered, changed.
        check(
            [&lines[0], &lines[2], &lines[3]]
                .map(|s| s.as_str())
                .concat(),
            1,
        );
        check([&lines[1], &lines[0]].map(|s| s.as_str()).concat(), 0);
        check(lines.concat().replace("user/3", "user/9"), 2);
        // Another file's lines, or another key's.
        let other = journal(&key, "k", &rows).concat();
        check(other, 0);
        check(journal(&[8u8; 32], "j", &rows).concat(), 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Whatever a journal file holds, reading it never panics, and what it yields are
            /// entries the key vouched for: with a wrong key, nothing.
            #[test]
            fn arbitrary_bytes_are_read_safely(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                let (rows, _) = read_journal(&[7u8; 32], "j", &bytes);
                prop_assert!(rows.is_empty() || !bytes.is_empty());
                let with_lines: Vec<u8> = bytes.iter().map(|b| if b % 7 == 0 { b'\n' } else { *b }).collect();
                let (rows, _) = read_journal(&[7u8; 32], "j", &with_lines);
                prop_assert!(rows.is_empty(), "unsigned lines were taken");
            }

            /// A journal changed anywhere (one byte flipped, or cut short) yields a prefix of its
            /// entries, never a changed one.
            #[test]
            fn a_changed_journal_yields_only_a_prefix(
                n in 1usize..6,
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                cut in any::<bool>(),
            ) {
                let key = [7u8; 32];
                let rows: Vec<AuditRow> = (1..=n as i64).map(row).collect();
                let mut bytes = journal(&key, "j", &rows).concat().into_bytes();
                let i = at.index(bytes.len());
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] ^= flip;
                }
                let (read, _) = read_journal(&key, "j", &bytes);
                prop_assert!(read.len() <= rows.len());
                prop_assert_eq!(&read[..], &rows[..read.len()]);
                if !cut {
                    prop_assert!(read.len() < rows.len(), "a changed line was taken");
                }
            }

            /// Any entry the door can make survives the journal exactly.
            #[test]
            fn entries_round_trip(
                actor in ".{0,30}",
                res_id in proptest::option::of(".{0,20}"),
                detail in proptest::option::of(".{0,60}"),
                version in proptest::option::of(any::<i64>()),
                recorded in any::<i64>(),
            ) {
                let entry = AuditRow {
                    recorded,
                    actor,
                    action: "read".into(),
                    res_id,
                    version,
                    outcome: "success".into(),
                    detail,
                    ..Default::default()
                };
                let key = [9u8; 32];
                let text = journal(&key, "j", std::slice::from_ref(&entry)).concat();
                prop_assert_eq!(read_journal(&key, "j", text.as_bytes()), (vec![entry], None));
            }
        }
    }
}
