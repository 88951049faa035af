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
//!
//! When the disk refuses a flush (`fdatasync`; on a full disk with delayed allocation the error
//! often shows only there), what was written to the file since its last good flush may not be on
//! the disk, and the system may report later flushes of that file as done without the lost pages.
//! So the file is abandoned for good and the journal carries on in a new one, by itself:
//! - Requests waiting for that flush are told their entries are not on the disk and fail (`503`).
//!   Their entries, like everything written to the file, are already in the mover's queue and
//!   still reach the database from memory: the log may hold the entry of a request that then
//!   failed, never miss one that was answered.
//! - How much of a file is on the disk is counted per file, only ever grows, and stops for good at
//!   an abandoned file's last good flush: a wait is answered only by a flush of its own file.
//! - The abandoned file is renamed `<name>.abandoned-<N>`, N being its lines known to be on the
//!   disk, and handed to the mover, which deletes it once everything before it is moved (as it does
//!   a full file). Should the process stop first, recovery moves what the file holds beyond what
//!   the mover recorded as moved, so nothing twice; a bad line after the first N is the part that
//!   never reached the disk, not tampering, and is neither set aside nor recorded as damage. (If
//!   the rename itself was lost, such a tail is reported as damage: a false alarm, never a loss.)
//!   Entries answered without waiting for the disk that fell in that part are lost only if the
//!   process stops before the mover has taken them from memory.
//! - Until a new file has taken a request's entries and flushed them, requests that need the log
//!   fail. An append tries, at most once per [`REOPEN_EVERY`] (a full disk costs a few system
//!   calls per interval, not per request, and no thread spins): it creates a new file, writes its
//!   entries and flushes them itself; if that fails, the new file is deleted and the request
//!   fails, its entries never handed to the mover. Once it succeeds, the journal is served again.
//!
//! Tests inject the flush ([`SyncData`]) to make it fail; tmpfs never refuses one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
/// An abandoned journal is renamed `<name>.abandoned-<lines on the disk>`.
const ABANDONED: &str = ".abandoned-";
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
/// After a failed flush, how often an append tries a new journal file.
pub(crate) const REOPEN_EVERY: Duration = Duration::from_millis(500);

/// How a journal file is put on the disk: [`File::sync_data`], unless a test makes it fail.
pub(crate) type SyncData = Arc<dyn Fn(&File) -> std::io::Result<()> + Send + Sync>;

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
    dir: PathBuf,
    /// Where it is now (an abandoned file is renamed).
    path: Mutex<PathBuf>,
    /// Held for the lock (and the writes).
    file: File,
    /// How much of it is on the disk; waiters for the disk watch it.
    synced: watch::Sender<Synced>,
    /// A flush failed: nothing more is written to it, nor flushed.
    abandoned: AtomicBool,
    /// One flush at a time, and none after the file is abandoned.
    sync_lock: Mutex<()>,
}

/// How much of a journal file is known to be on the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Synced {
    /// Lines flushed so far; never goes down.
    lines: u64,
    /// A flush failed: `lines` is final.
    abandoned: bool,
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
        let named = file
            .try_lock()
            .map_err(std::io::Error::other)
            .and_then(|()| std::fs::rename(&fresh, &path));
        if let Err(e) = named {
            // Not left behind (a full disk would otherwise collect one per try).
            let _ = std::fs::remove_file(&fresh);
            return Err(e);
        }
        // The new name itself must survive a crash.
        sync_dir(dir);
        Ok(JournalFile {
            name,
            dir: dir.to_path_buf(),
            path: Mutex::new(path),
            file,
            synced: watch::channel(Synced::default()).0,
            abandoned: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
        })
    }

    /// The setting that holds how many of this file's entries are in the database.
    fn moved_key(&self) -> String {
        moved_key(&self.name)
    }

    fn delete(&self) {
        let path = self.path.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = std::fs::remove_file(&*path) {
            tracing::warn!("cannot delete the moved audit journal {}: {e}", self.name);
        }
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Lines known to be on the disk.
    fn synced_lines(&self) -> u64 {
        self.synced.borrow().lines
    }

    /// Puts its first `upto` lines on the disk, unless they already are. A failed flush
    /// abandons the file for good: after one, the system may report later flushes as done
    /// without the lost pages, so no later flush of this file is believed.
    fn sync(&self, upto: u64, sync_data: &SyncData) -> std::io::Result<()> {
        let _one = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_abandoned() {
            return Err(std::io::Error::other(
                "the journal was abandoned after a failed flush",
            ));
        }
        if self.synced_lines() >= upto {
            return Ok(());
        }
        match sync_data(&self.file) {
            Ok(()) => {
                self.synced.send_if_modified(|s| {
                    let more = upto > s.lines;
                    s.lines = s.lines.max(upto);
                    more
                });
                Ok(())
            }
            Err(e) => {
                self.abandon_locked();
                Err(e)
            }
        }
    }

    /// Nothing more is written to it nor flushed (see the module's doc).
    fn abandon(&self) {
        let _one = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_abandoned() {
            self.abandon_locked();
        }
    }

    /// [`JournalFile::abandon`], under `sync_lock`.
    fn abandon_locked(&self) {
        let flushed = self.synced_lines();
        {
            // Named so that recovery knows which lines are on the disk; before the writers see
            // it abandoned and hand it to the mover to delete.
            let mut path = self.path.lock().unwrap_or_else(|p| p.into_inner());
            let renamed = self.dir.join(format!("{}{ABANDONED}{flushed}", self.name));
            match std::fs::rename(&*path, &renamed) {
                Ok(()) => {
                    *path = renamed;
                    sync_dir(&self.dir);
                }
                Err(e) => tracing::warn!(
                    "cannot rename the abandoned audit journal {}: {e}",
                    self.name
                ),
            }
        }
        self.abandoned.store(true, Ordering::SeqCst);
        // Those waiting for lines after `flushed` learn they are not on the disk.
        self.synced.send_modify(|s| s.abandoned = true);
    }
}

/// Makes the names in `dir` survive a crash, if the disk lets it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The journal a file in the data directory is (or was) and, if it was abandoned, how many of
/// its lines are on the disk; `None` for other files.
fn journal_name(file_name: &str) -> Option<(&str, Option<u64>)> {
    let (name, flushed) = match file_name.split_once(ABANDONED) {
        Some((name, lines)) => (name, Some(lines.parse().ok()?)),
        None => (file_name, None),
    };
    (name.starts_with(PREFIX) && name.ends_with(SUFFIX)).then_some((name, flushed))
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
    /// `file` is abandoned and handed to the mover: when an append may next try a new file.
    reopen_at: Option<Instant>,
}

/// Between the writers and the flusher thread.
struct Flush {
    inner: Mutex<FlushInner>,
    wake: Condvar,
    sync_data: SyncData,
}

struct FlushInner {
    file: Arc<JournalFile>,
    /// Lines written to `file`.
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
        let sync_data: SyncData = Arc::new(File::sync_data);
        AuditWriter::start_with(dir, store, keys, segment, appended, sync_data)
    }

    /// [`AuditWriter::start`], flushing with `sync_data`.
    fn start_with(
        dir: &Path,
        store: Store,
        keys: Arc<ChainKeys>,
        segment: SharedSegment,
        appended: Arc<AtomicU64>,
        sync_data: SyncData,
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
            writer_gone: AtomicBool::new(false),
        });
        let flush = Arc::new(Flush {
            inner: Mutex::new(FlushInner {
                file: first.clone(),
                written: 0,
                urgent: false,
                stop: false,
            }),
            wake: Condvar::new(),
            sync_data,
        });
        let key = keys.mac_keys().next().map(journal_key).unwrap_or_default();
        let thread_flush = flush.clone();
        std::thread::Builder::new()
            .name("audit-journal".into())
            .spawn(move || flusher(&thread_flush))
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
                reopen_at: None,
            }),
            state,
            flush,
        };
        Ok(AuditWriter {
            journal: Arc::new(journal),
        })
    }

    /// Appends entries to the journal file before it returns: once it has, the entries survive
    /// any end of this process. With `durable` it also waits until they are on the disk;
    /// otherwise the flusher puts them there within [`FLUSH_EVERY`] (see `docs/security.md`,
    /// "What the audit log records"). Fails when the entries cannot be written, or, with
    /// `durable`, when the disk refused to flush them.
    pub(crate) async fn append(&self, rows: Vec<AuditRow>, durable: bool) -> Result<()> {
        let j = &*self.journal;
        // Back-pressure: the database is slow to take the entries.
        let mut waited = 0;
        while j.state.backlog.load(Ordering::SeqCst) > MAX_BACKLOG && waited < 6_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        }
        let payloads: Vec<String> = rows.iter().map(payload).collect();
        let (file, end) = j.write(rows, &payloads, durable)?;
        if durable {
            let mut synced = file.synced.subscribe();
            let on_disk = synced
                .wait_for(|s| s.lines >= end || s.abandoned)
                .await
                .map(|s| s.lines)
                .map_err(|_| RecordsError::AuditUnavailable)?;
            if on_disk < end {
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
            self.journal.state.push(if tail.reopen_at.is_some() {
                // Abandoned, and already handed to the mover.
                Pending::Flush(ack)
            } else {
                Pending::Retire {
                    file: tail.file.clone(),
                    ack: Some(ack),
                }
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

/// The journal lines of entries (their `payloads`) from line `index` of journal `name`, whose
/// previous line's MAC is `prev`; and the last line's MAC.
fn lines(
    key: &[u8; 32],
    name: &str,
    index: u64,
    prev: &str,
    payloads: &[String],
) -> (String, String) {
    let mut buf = String::with_capacity(payloads.iter().map(|p| p.len() + 66).sum());
    let mut mac = prev.to_string();
    for (i, p) in payloads.iter().enumerate() {
        mac = line_mac(key, name, index + i as u64, &mac, p);
        buf.push_str(p);
        buf.push('\t');
        buf.push_str(&mac);
        buf.push('\n');
    }
    (buf, mac)
}

impl Journal {
    fn lock_tail(&self) -> Result<std::sync::MutexGuard<'_, Tail>> {
        self.tail.lock().map_err(|_| RecordsError::AuditUnavailable)
    }

    /// Writes the entries (their `payloads`) at the end of the journal and hands them to the
    /// mover; returns the file they are in and the number of its lines up to them.
    fn write(
        &self,
        rows: Vec<AuditRow>,
        payloads: &[String],
        durable: bool,
    ) -> Result<(Arc<JournalFile>, u64)> {
        let mut t = self.lock_tail()?;
        let state = &self.state;
        if state.closed.load(Ordering::SeqCst) || state.failing.load(Ordering::SeqCst) {
            return Err(RecordsError::AuditUnavailable);
        }
        if t.file.is_abandoned() {
            return self.reopen(&mut t, rows, payloads);
        }
        let (buf, mac) = lines(&self.key, &t.file.name, t.index, &t.prev, payloads);
        if let Err(e) = (&t.file.file).write_all(buf.as_bytes()) {
            tracing::error!("the audit journal cannot be written ({e}); requests are failing");
            // Cut off whatever part of the entries reached the file.
            if let Err(e) = t.file.file.set_len(t.len) {
                tracing::error!("cannot cut the audit journal back ({e})");
                t.file.abandon();
                self.retire_abandoned(&mut t);
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
        let written = (t.file.clone(), t.index);
        self.flush.written(t.index, durable);
        if t.len >= ROTATE_AT {
            self.rotate(&mut t);
        }
        Ok(written)
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
        if let Err(e) = t.file.sync(t.index, &self.flush.sync_data) {
            tracing::error!("the full audit journal cannot be flushed: {e}");
            next.delete();
            self.retire_abandoned(t);
            return;
        }
        let old = std::mem::replace(&mut t.file, next.clone());
        self.flush.switch(next, 0);
        self.state.push(Pending::Retire {
            file: old,
            ack: None,
        });
        t.index = 0;
        t.prev.clear();
        t.len = 0;
    }

    /// The current file is abandoned (a flush failed): hands it to the mover, which deletes it
    /// once everything in it is moved; appends fail until one can start a new file.
    fn retire_abandoned(&self, t: &mut Tail) {
        if t.reopen_at.is_some() {
            return;
        }
        tracing::error!(
            "the audit journal {} is abandoned after a failed flush; requests that need the audit log fail until a new journal can be written and flushed",
            t.file.name
        );
        self.state.push(Pending::Retire {
            file: t.file.clone(),
            ack: None,
        });
        // The first try at once: the cause may be gone already.
        t.reopen_at = Some(Instant::now());
    }

    /// With the current file abandoned: unless a try was made less than [`REOPEN_EVERY`] ago,
    /// starts a new file with these entries and flushes them; fails when the disk still refuses
    /// (the new file is deleted, the entries never reach the mover) or it is not time yet.
    fn reopen(
        &self,
        t: &mut Tail,
        rows: Vec<AuditRow>,
        payloads: &[String],
    ) -> Result<(Arc<JournalFile>, u64)> {
        self.retire_abandoned(t);
        let now = Instant::now();
        // Without entries, a flush would prove nothing about the disk.
        if rows.is_empty() || t.reopen_at.is_some_and(|at| now < at) {
            return Err(RecordsError::AuditUnavailable);
        }
        t.reopen_at = Some(now + REOPEN_EVERY);
        let next = JournalFile::create(&self.dir).map_err(|e| {
            tracing::debug!("the audit journal still cannot be started: {e}");
            RecordsError::AuditUnavailable
        })?;
        let (buf, mac) = lines(&self.key, &next.name, 0, "", payloads);
        let n = rows.len() as u64;
        let taken = (&next.file)
            .write_all(buf.as_bytes())
            .and_then(|()| next.sync(n, &self.flush.sync_data));
        if let Err(e) = taken {
            tracing::debug!("the audit journal still cannot be written and flushed: {e}");
            next.delete();
            return Err(RecordsError::AuditUnavailable);
        }
        tracing::info!("the audit journal can be written and flushed again");
        let next = Arc::new(next);
        t.file = next.clone();
        t.index = n;
        t.prev = mac;
        t.len = buf.len() as u64;
        t.reopen_at = None;
        self.flush.switch(next.clone(), n);
        self.state.push(Pending::Rows {
            file: next.clone(),
            first: 0,
            rows,
        });
        Ok((next, n))
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

    /// `written` lines are in the current file; `urgent` when someone waits for the disk.
    fn written(&self, written: u64, urgent: bool) {
        let mut f = self.lock();
        let was_clean = f.written == f.file.synced_lines();
        f.written = written;
        f.urgent |= urgent;
        if urgent || was_clean {
            self.wake.notify_one();
        }
    }

    /// The writers continue in `file`, which has `written` lines.
    fn switch(&self, file: Arc<JournalFile>, written: u64) {
        let mut f = self.lock();
        f.file = file;
        f.written = written;
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }
}

/// The flusher thread: puts what was written on the disk (`fdatasync`), at once for those who
/// wait for it, otherwise within [`FLUSH_EVERY`] of the first entry written since the last
/// flush. When the disk refuses, the file is abandoned (see the module's doc) and the thread
/// waits for the writers to continue in a new one. Stops when told to, after a last flush.
fn flusher(flush: &Flush) {
    loop {
        let (file, target) = {
            let mut f = flush.lock();
            let mut deadline: Option<Instant> = None;
            loop {
                let pending = f.written > f.file.synced_lines() && !f.file.is_abandoned();
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
                let due = *deadline.get_or_insert_with(|| Instant::now() + FLUSH_EVERY);
                let now = Instant::now();
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
        if let Err(e) = file.sync(target, &flush.sync_data) {
            tracing::error!("the audit journal cannot be flushed: {e}");
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
/// a crash, a kill, a closed process that could not finish), skipping what their mover recorded
/// as moved. Run before this process starts its own journal. Returns how many entries were
/// moved.
///
/// A file abandoned after a failed flush (`<name>.abandoned-<N>`) holds N lines known to be on
/// the disk; a bad line after them is the part that never reached it, not damage.
pub(crate) async fn recover(dir: &Path, store: &Store, keys: &ChainKeys) -> Result<u64> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut files: Vec<String> = listing
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| journal_name(n).is_some())
        .collect();
    files.sort();
    let mut moved = 0;
    for file_name in files {
        let Some((name, flushed)) = journal_name(&file_name) else {
            continue;
        };
        let path = dir.join(&file_name);
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            // A live process is using it.
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            RecordsError::Config(format!("cannot read the audit journal {file_name}: {e}"))
        })?;
        // Written under this process's keys, or under those of a master key since replaced
        // (the process was stopped before it could move its journal): the key that vouches for
        // the whole file, else for the most lines.
        let mut best: Option<(Vec<AuditRow>, Option<String>)> = None;
        for key in keys.mac_keys().map(journal_key) {
            let read = read_journal(&key, name, &bytes);
            let whole = read.1.is_none();
            if best.as_ref().is_none_or(|b| read.0.len() > b.0.len()) || whole {
                best = Some(read);
            }
            if whole {
                break;
            }
        }
        let Some((rows, damage)) = best else {
            continue;
        };
        for (n, chunk) in rows.chunks(MOVE_BATCH).enumerate() {
            if let Some((before, last)) =
                move_rows(store, keys, name, (n * MOVE_BATCH) as u64, chunk).await?
            {
                moved += u64::try_from(last.0 - before.map_or(0, |b| b.0)).unwrap_or(0);
            }
        }
        let damage = match (damage, flushed) {
            (Some(problem), Some(flushed)) if rows.len() as u64 >= flushed => {
                tracing::warn!(
                    "the abandoned audit journal {file_name}: {problem}, after its {flushed} flushed lines; what followed was moved from memory or never reached the disk"
                );
                None
            }
            (damage, _) => damage,
        };
        match damage {
            None => {
                std::fs::remove_file(&path).map_err(|e| {
                    RecordsError::Config(format!(
                        "cannot delete the moved audit journal {file_name}: {e}"
                    ))
                })?;
            }
            Some(problem) => {
                tracing::error!("the audit journal {file_name} is damaged: {problem}; kept aside");
                let event = AuditRow {
                    recorded: ironchart_fhir::Instant::now().as_millis(),
                    actor: "system".into(),
                    action: crate::audit::AuditAction::JournalDamaged.as_str().into(),
                    outcome: crate::audit::Outcome::Failure.as_str().into(),
                    detail: Some(format!("{file_name}: {problem}")),
                    ..Default::default()
                };
                let mut tx = store.begin().await?;
                crate::audit::append_in(&mut tx, keys, vec![event]).await?;
                tx.commit().await?;
                let aside = dir.join(format!("{file_name}.damaged"));
                std::fs::rename(&path, &aside).map_err(|e| {
                    RecordsError::Config(format!(
                        "cannot set aside the audit journal {file_name}: {e}"
                    ))
                })?;
            }
        }
        store.delete_setting(&moved_key(name)).await?;
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

    /// The chain's keys, under a new master key.
    async fn chain_keys(store: &Store) -> Arc<ChainKeys> {
        let master = ironchart_security::keyring::MasterKey::generate();
        let data_keys = crate::keys::Keys::load(store, master).await.unwrap();
        Arc::new(ChainKeys::of(data_keys.master(), None).unwrap())
    }

    /// A journal in `dir` moving into `store`, under a new master key; and the chain's keys.
    async fn started_writer(store: &Store, dir: &Path) -> (AuditWriter, Arc<ChainKeys>) {
        started_writer_with(store, dir, Arc::new(File::sync_data)).await
    }

    /// [`started_writer`], flushing with `sync_data`.
    async fn started_writer_with(
        store: &Store,
        dir: &Path,
        sync_data: SyncData,
    ) -> (AuditWriter, Arc<ChainKeys>) {
        let keys = chain_keys(store).await;
        let writer = AuditWriter::start_with(
            dir,
            store.clone(),
            keys.clone(),
            SharedSegment::default(),
            Arc::new(AtomicU64::new(0)),
            sync_data,
        )
        .unwrap();
        (writer, keys)
    }

    /// A flush that fails while `failing` is set, as a full disk's can (tmpfs never refuses one).
    fn sync_failing_while(failing: &Arc<AtomicBool>) -> SyncData {
        let failing = failing.clone();
        Arc::new(move |f: &File| {
            if failing.load(Ordering::SeqCst) {
                Err(std::io::Error::other("no space left on device (injected)"))
            } else {
                f.sync_data()
            }
        })
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
            tokio::time::sleep(FLUSH_EVERY).await;
        }
    }

    /// The names of the files in `dir`.
    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The disk refuses flushes, twice, then takes them again: those waiting for a failed flush
    /// are refused, appends fail until a new file takes entries and flushes them, and every entry
    /// acknowledged reaches the chain exactly once, even through a recovery in between.
    async fn a_failed_flush_is_survived_without_a_restart(store: Store, dir: &Path) {
        let failing = Arc::new(AtomicBool::new(false));
        let (writer, keys) = started_writer_with(&store, dir, sync_failing_while(&failing)).await;
        let current = || {
            let t = writer.journal.tail.lock().unwrap();
            (t.file.name.clone(), t.file.synced_lines())
        };
        // What must be in the log, in order: what was acknowledged, and the entries of requests
        // refused after their entries were written (the log may hold a refused request's entry).
        let mut logged = Vec::new();
        writer.append(vec![row(1)], true).await.unwrap();
        writer.append(vec![row(2), row(3)], false).await.unwrap();
        logged.extend([1, 2, 3]);
        wait_until("the first entries are flushed", || current().1 >= 3).await;
        let (first, _) = current();

        // The disk refuses a flush: the request waiting for it is refused, the file abandoned and
        // named after the lines on the disk.
        failing.store(true, Ordering::SeqCst);
        assert!(writer.append(vec![row(4)], true).await.is_err());
        logged.push(4);
        let abandoned = format!("{first}{ABANDONED}3");
        assert!(files_in(dir).contains(&abandoned), "{:?}", files_in(dir));
        // Its entries still reach the chain from memory.
        writer.flush().await.unwrap();
        assert_eq!(
            store.setting(&moved_key(&first)).await.unwrap().as_deref(),
            Some("4")
        );

        // A crash now, with a torn tail where the unflushed line was: recovery enters nothing
        // twice and does not take the tail for damage.
        let elsewhere = tempfile::tempdir().unwrap();
        let mut copy = std::fs::read(dir.join(&abandoned)).unwrap();
        copy.extend_from_slice(b"\0\0\0\0\0\0\0\0\n[\"torn");
        std::fs::write(elsewhere.path().join(&abandoned), copy).unwrap();
        assert_eq!(recover(elsewhere.path(), &store, &keys).await.unwrap(), 0);
        assert!(files_in(elsewhere.path()).is_empty());

        // While the disk refuses, every append fails, and no new file is left behind.
        for n in 5..=7 {
            assert!(writer.append(vec![row(n)], n == 6).await.is_err());
        }
        writer.flush().await.unwrap();
        assert!(
            files_in(dir).iter().all(|f| !f.contains(PREFIX)),
            "{:?}",
            files_in(dir)
        );

        // Room again: served by itself, in a new file.
        failing.store(false, Ordering::SeqCst);
        // Entries refused while the disk was coming back: one may have been written to the
        // file just as it was abandoned, and then it is in the log (as 4 is).
        let maybe = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let served = |from: i64| {
            let writer = writer.clone();
            let maybe = maybe.clone();
            async move {
                let start = Instant::now();
                for n in from.. {
                    if writer.append(vec![row(n)], true).await.is_ok() {
                        return n;
                    }
                    maybe.lock().unwrap().push(n);
                    assert!(start.elapsed() < 10 * REOPEN_EVERY, "never served again");
                    tokio::time::sleep(REOPEN_EVERY / 10).await;
                }
                unreachable!()
            }
        };
        logged.push(served(100).await);
        let (second, on_disk) = current();
        assert_ne!(second, first);
        assert_eq!(on_disk, 1);

        // Again, with an entry acknowledged without waiting for the disk before the failure.
        failing.store(true, Ordering::SeqCst);
        writer.append(vec![row(200)], false).await.unwrap();
        logged.push(200);
        let abandoned = format!("{second}{ABANDONED}1");
        wait_until("the second file is abandoned", || {
            files_in(dir).contains(&abandoned)
        })
        .await;
        // Refused once the abandonment has reached the appenders; an entry taken just before
        // (the file renamed, the appenders not told yet) is acknowledged and must be logged.
        if writer.append(vec![row(201)], false).await.is_ok() {
            logged.push(201);
        }
        failing.store(false, Ordering::SeqCst);
        logged.push(served(300).await);
        for n in 400..410 {
            writer.append(vec![row(n)], n % 3 == 0).await.unwrap();
            logged.push(n);
        }
        writer.close().await.unwrap();

        let chain: Vec<i64> = store
            .audit_chain(0, 1_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.recorded)
            .collect();
        let maybe = maybe.lock().unwrap().clone();
        assert_eq!(
            chain
                .iter()
                .copied()
                .filter(|n| !maybe.contains(n))
                .collect::<Vec<_>>(),
            logged,
            "{chain:?}"
        );
        assert!(chain.len() <= logged.len() + 1, "{chain:?}");
        let logged = chain;
        assert!(matches!(
            crate::audit::verify(&store, &keys, None).await.unwrap(),
            crate::audit::VerifyReport::Intact { entries, .. } if entries == logged.len() as i64
        ));
        // Every file is retired, its progress forgotten; a restart moves nothing.
        assert!(files_in(dir).iter().all(|f| !f.contains(PREFIX)));
        for name in [&first, &second] {
            assert_eq!(store.setting(&moved_key(name)).await.unwrap(), None);
        }
        assert_eq!(recover(dir, &store, &keys).await.unwrap(), 0);
        assert_eq!(
            store.audit_chain(0, 1_000).await.unwrap().len(),
            logged.len()
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_failed_flush_is_survived_without_a_restart_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&db.path().join("db.sqlite3"))
            .await
            .unwrap();
        a_failed_flush_is_survived_without_a_restart(store, dir.path()).await;
    }

    #[tokio::test]
    async fn a_failed_flush_is_survived_without_a_restart_on_postgres() {
        let Some(store) = postgres_store("t_journal_flush").await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        a_failed_flush_is_survived_without_a_restart(store, dir.path()).await;
    }

    /// A store in a schema of its own on `IRONCHART_TEST_DATABASE_URL`, if set.
    async fn postgres_store(prefix: &str) -> Option<Store> {
        let url = ironchart_store::test_database_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("{prefix}_{}_{nanos}", std::process::id());
        Some(Store::open_postgres(&url, Some(&schema)).await.unwrap())
    }

    /// Writers at work while the disk refuses and takes flushes by turns: every acknowledged
    /// entry reaches the chain, none twice, and the chain holds.
    async fn flushes_failing_under_load(store: Store, dir: &Path) {
        let failing = Arc::new(AtomicBool::new(false));
        let (writer, keys) = started_writer_with(&store, dir, sync_failing_while(&failing)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..4i64 {
            let (writer, stop) = (writer.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut acknowledged, mut refused) = (Vec::new(), 0);
                for n in (task * 1_000_000).. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match writer.append(vec![row(n)], n % 2 == 0).await {
                        Ok(()) => acknowledged.push(n),
                        Err(_) => refused += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (acknowledged, refused)
            }));
        }
        for _ in 0..4 {
            tokio::time::sleep(REOPEN_EVERY / 2).await;
            failing.store(true, Ordering::SeqCst);
            tokio::time::sleep(REOPEN_EVERY / 2).await;
            failing.store(false, Ordering::SeqCst);
        }
        tokio::time::sleep(3 * REOPEN_EVERY).await;
        stop.store(true, Ordering::SeqCst);
        let (mut acknowledged, mut refused) = (Vec::new(), 0);
        for task in tasks {
            let (ok, failed) = task.await.unwrap();
            acknowledged.extend(ok);
            refused += failed;
        }
        assert!(refused > 0, "the disk never refused");
        writer.close().await.unwrap();

        let chain: Vec<i64> = store
            .audit_chain(0, 1_000_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.recorded)
            .collect();
        let mut unique = chain.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), chain.len(), "an entry was moved twice");
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|n| unique.binary_search(n).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged, not in the log: {missing:?}"
        );
        assert!(acknowledged.len() > 100, "{}", acknowledged.len());
        assert!(matches!(
            crate::audit::verify(&store, &keys, None).await.unwrap(),
            crate::audit::VerifyReport::Intact { entries, .. } if entries == chain.len() as i64
        ));
        assert!(files_in(dir).iter().all(|f| !f.contains(PREFIX)));
        assert_eq!(recover(dir, &store, &keys).await.unwrap(), 0);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushes_failing_under_load_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&db.path().join("db.sqlite3"))
            .await
            .unwrap();
        flushes_failing_under_load(store, dir.path()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushes_failing_under_load_on_postgres() {
        let Some(store) = postgres_store("t_journal_load").await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        flushes_failing_under_load(store, dir.path()).await;
    }

    /// Journals abandoned by a process that then stopped: what the mover had not moved is moved
    /// once, a bad line after the flushed ones is not damage, one among them is.
    async fn abandoned_journals_are_recovered_once(store: Store, dir: &Path) {
        let keys = chain_keys(&store).await;
        let key = journal_key(keys.mac_keys().next().unwrap());
        let rows: Vec<AuditRow> = (1..=5).map(row).collect();
        // 3 lines flushed, a 4th written, garbage where the 5th was; the mover had moved 2.
        let a = format!("{PREFIX}{}{SUFFIX}", "a".repeat(32));
        let lines = journal(&key, &a, &rows);
        let mut text = lines[..4].concat();
        text.push_str("\0\0\0\0\0\0\n");
        text.push_str(&lines[4]);
        std::fs::write(dir.join(format!("{a}{ABANDONED}3")), text).unwrap();
        move_rows(&store, &keys, &a, 0, &rows[..2]).await.unwrap();
        // 3 lines flushed, the second changed since.
        let b = format!("{PREFIX}{}{SUFFIX}", "b".repeat(32));
        let text = journal(&key, &b, &rows[..4])
            .concat()
            .replacen("user/2", "user/9", 1);
        std::fs::write(dir.join(format!("{b}{ABANDONED}3")), text).unwrap();

        // Two of the first, one of the second (the damage event is not a moved entry).
        assert_eq!(recover(dir, &store, &keys).await.unwrap(), 2 + 1);
        let chain = store.audit_chain(0, 100).await.unwrap();
        assert_eq!(
            chain.iter().map(|r| r.recorded).take(5).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 1]
        );
        assert_eq!(chain.len(), 6);
        let event = &chain[5];
        assert_eq!(
            event.action,
            crate::audit::AuditAction::JournalDamaged.as_str()
        );
        assert!(event.detail.as_deref().unwrap_or("").starts_with(&b));
        assert_eq!(files_in(dir), vec![format!("{b}{ABANDONED}3.damaged")]);
        for name in [&a, &b] {
            assert_eq!(store.setting(&moved_key(name)).await.unwrap(), None);
        }
        // Once only.
        assert_eq!(recover(dir, &store, &keys).await.unwrap(), 0);
        assert_eq!(store.audit_chain(0, 100).await.unwrap().len(), 6);
        assert!(matches!(
            crate::audit::verify(&store, &keys, None).await.unwrap(),
            crate::audit::VerifyReport::Intact { entries: 6, .. }
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn abandoned_journals_are_recovered_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&db.path().join("db.sqlite3"))
            .await
            .unwrap();
        abandoned_journals_are_recovered_once(store, dir.path()).await;
    }

    #[tokio::test]
    async fn abandoned_journals_are_recovered_once_on_postgres() {
        let Some(store) = postgres_store("t_journal_abandoned").await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        abandoned_journals_are_recovered_once(store, dir.path()).await;
    }

    #[test]
    fn abandoned_journals_are_named_with_their_flushed_lines() {
        let name = format!("{PREFIX}{}{SUFFIX}", "0".repeat(32));
        assert_eq!(journal_name(&name), Some((name.as_str(), None)));
        let abandoned = format!("{name}{ABANDONED}12");
        assert_eq!(journal_name(&abandoned), Some((name.as_str(), Some(12))));
        for other in [
            format!("{name}.damaged"),
            format!("{abandoned}.damaged"),
            format!("{name}{ABANDONED}"),
            format!(".{PREFIX}x.new"),
            "db.sqlite3".to_string(),
        ] {
            assert_eq!(journal_name(&other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn an_entry_is_written_before_append_returns_and_on_the_disk_when_asked_or_soon_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite3"))
            .await
            .unwrap();
        let (writer, _) = started_writer(&store, dir.path()).await;
        let on_disk = || writer.journal.tail.lock().unwrap().file.synced_lines();

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
        let Some(url) = ironchart_store::test_database_url() else {
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
