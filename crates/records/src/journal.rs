//! The audit journal: how an entry is on disk before the response is sent, without a database
//! commit per request.
//!
//! Each process appends its entries to its own journal file in the data directory
//! (`audit-journal-<random>.log`, locked while the process lives) and acknowledges them once
//! they are flushed to the disk (`fdatasync`; many requests share one flush). A mover task then
//! appends them to the database's chain in large transactions, every [`MOVE_EVERY`] or sooner
//! when many are waiting, recording in the same transaction how far it got in the journal, so
//! that a crash never loses or repeats an entry: the next process to open the database moves
//! what a dead process left behind. Readers of the log (the auditor's searches, `audit verify`,
//! checkpoints) move everything first, so they see every entry acknowledged so far.
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use ironchart_store::{AuditRow, Store};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, mpsc, oneshot};

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
/// Most appends flushed to the disk together.
const MAX_GROUP: usize = 1_000;

type Ack = oneshot::Sender<std::result::Result<(), String>>;

/// What the journal thread is asked to do, in order.
enum Msg {
    Append(Vec<AuditRow>, Ack),
    /// Answer once everything appended before has been moved into the database.
    Flush(Ack),
    /// As `Flush`, then refuse further appends and delete the journal.
    Close(Ack),
}

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

/// State shared by the journal thread, the mover and the door.
struct State {
    queue: Mutex<VecDeque<Pending>>,
    wake: Notify,
    /// Entries waiting in `queue`.
    backlog: AtomicUsize,
    /// The database refused the last move: appends fail until a move succeeds.
    failing: AtomicBool,
    /// The journal was closed: appends fail.
    closed: AtomicBool,
    /// The journal thread is gone (every sender dropped): the mover stops when done.
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
    json!([
        row.recorded,
        row.actor,
        row.role,
        row.action,
        row.res_type,
        row.res_id,
        row.version,
        row.patients,
        row.outcome,
        row.source,
        row.purpose,
        row.request_id,
        row.detail,
    ])
    .to_string()
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
    queue: mpsc::Sender<Msg>,
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
    /// Starts a journal in `dir`, its writer thread and its mover. `appended` counts moves,
    /// `segment` is the stretch of the chain this process appended (for the checkpoints).
    pub(crate) fn start(
        dir: &Path,
        store: Store,
        keys: Arc<ChainKeys>,
        segment: SharedSegment,
        appended: Arc<AtomicU64>,
    ) -> Result<AuditWriter> {
        let first = JournalFile::create(dir).map_err(|e| {
            RecordsError::Config(format!(
                "cannot create the audit journal in {}: {e}",
                dir.display()
            ))
        })?;
        let state = Arc::new(State {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            backlog: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
        });
        let (queue, rx) = mpsc::channel::<Msg>(8192);
        let key = keys.mac_keys().next().map(journal_key).unwrap_or_default();
        let thread_state = state.clone();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("audit-journal".into())
            .spawn(move || {
                journal_thread(rx, dir, Arc::new(first), key, &thread_state);
                thread_state.writer_gone.store(true, Ordering::SeqCst);
                thread_state.wake.notify_one();
            })
            .map_err(|e| RecordsError::Config(format!("cannot start the audit journal: {e}")))?;
        let mover = Mover {
            store,
            keys,
            state,
            segment,
            appended,
        };
        tokio::spawn(mover.run());
        Ok(AuditWriter { queue })
    }

    async fn ask(&self, msg: impl FnOnce(Ack) -> Msg) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send(msg(ack))
            .await
            .map_err(|_| RecordsError::AuditUnavailable)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(RecordsError::AuditUnavailable),
        }
    }

    /// Appends entries and waits until they are on disk.
    pub(crate) async fn append(&self, rows: Vec<AuditRow>) -> Result<()> {
        self.ask(|ack| Msg::Append(rows, ack)).await
    }

    /// Waits until every entry appended so far is in the database.
    pub(crate) async fn flush(&self) -> Result<()> {
        self.ask(Msg::Flush).await
    }

    /// Moves everything into the database, then deletes the journal; later appends fail.
    pub(crate) async fn close(&self) -> Result<()> {
        self.ask(Msg::Close).await
    }
}

/// The journal thread: appends entries to the file in groups, one flush to the disk per group.
fn journal_thread(
    mut rx: mpsc::Receiver<Msg>,
    dir: PathBuf,
    mut file: Arc<JournalFile>,
    key: [u8; 32],
    state: &State,
) {
    let mut index: u64 = 0;
    let mut prev = String::new();
    let mut len: u64 = 0;
    let mut buf = String::new();
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        // Entries to write and whom to answer, in order; flushes and closes after them.
        let mut rows: Vec<AuditRow> = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut after: Vec<Msg> = Vec::new();
        for m in group {
            match m {
                Msg::Append(r, ack) => {
                    if state.closed.load(Ordering::SeqCst) || state.failing.load(Ordering::SeqCst) {
                        let _ = ack.send(Err("the audit log cannot be written".into()));
                    } else {
                        rows.extend(r);
                        acks.push(ack);
                    }
                }
                other => after.push(other),
            }
        }
        if !rows.is_empty() {
            // Back-pressure: the database is slow to take the entries.
            let mut waited = 0;
            while state.backlog.load(Ordering::SeqCst) > MAX_BACKLOG && waited < 6_000 {
                std::thread::sleep(Duration::from_millis(5));
                waited += 1;
            }
            buf.clear();
            let mut mac = prev.clone();
            for (i, row) in rows.iter().enumerate() {
                let p = payload(row);
                mac = line_mac(&key, &file.name, index + i as u64, &mac, &p);
                buf.push_str(&p);
                buf.push('\t');
                buf.push_str(&mac);
                buf.push('\n');
            }
            let written = (&file.file)
                .write_all(buf.as_bytes())
                .and_then(|()| file.file.sync_data());
            match written {
                Ok(()) => {
                    let n = rows.len() as u64;
                    state.push(Pending::Rows {
                        file: file.clone(),
                        first: index,
                        rows,
                    });
                    index += n;
                    prev = mac;
                    len += buf.len() as u64;
                    for ack in acks {
                        let _ = ack.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "the audit journal cannot be written ({e}); requests are failing"
                    );
                    // Cut off whatever part of the group reached the file.
                    if let Err(e) = file.file.set_len(len) {
                        tracing::error!("cannot repair the audit journal: {e}");
                        state.closed.store(true, Ordering::SeqCst);
                    }
                    for ack in acks {
                        let _ = ack.send(Err("the audit journal cannot be written".into()));
                    }
                }
            }
            if len >= ROTATE_AT && !state.closed.load(Ordering::SeqCst) {
                match JournalFile::create(&dir) {
                    Ok(next) => {
                        let old = std::mem::replace(&mut file, Arc::new(next));
                        state.push(Pending::Retire {
                            file: old,
                            ack: None,
                        });
                        index = 0;
                        prev.clear();
                        len = 0;
                    }
                    Err(e) => tracing::warn!("cannot start a new audit journal: {e}"),
                }
            }
        }
        for m in after {
            match m {
                Msg::Flush(ack) => state.push(Pending::Flush(ack)),
                Msg::Close(ack) => {
                    state.closed.store(true, Ordering::SeqCst);
                    state.push(Pending::Retire {
                        file: file.clone(),
                        ack: Some(ack),
                    });
                }
                Msg::Append(..) => unreachable!("appends were taken above"),
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
    tx.audit_append(&chained).await?;
    // Index them by patient in the same write (and whatever writes appended before them).
    // (In pages: PostgreSQL plans a large LIMIT on `seq > $1` as a scan of the whole log.)
    while tx
        .audit_index_patients(ironchart_store::INDEX_BATCH)
        .await?
        == ironchart_store::INDEX_BATCH
    {}
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
