//! The audit log as an operator checks it: after a busy run stopped with ctrl-c,
//! `ironchart audit verify` finds the chain intact; after each kind of tampering by someone with
//! database access (who first drops the append-only triggers), it names the first bad entry.

use std::path::Path;

use serde_json::json;
use tokio::task::JoinSet;

use crate::process::{Api, Db, Served, Sql, copy_data, dbs, ok, run, token, wait_healthy};

/// Serves `data`, runs a few hundred mixed requests from concurrent clients (writes, reads,
/// searches, history, deletes, unknown ids and tokens), ends with a write, and stops with
/// SIGINT.
async fn busy_run(data: &Path, db: &Db) {
    let mut served = Served::start(data, db);
    wait_healthy(&served.base).await;
    let system = token(data, db);
    let api = Api::new(&served);
    let mut workers = JoinSet::new();
    for w in 0..8 {
        let (api, system) = (api.clone(), system.clone());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..5 {
                let p = api
                    .create(
                        &system,
                        json!({"resourceType": "Patient", "name": [{"family": format!("Busy{w}x{i}")}]}),
                    )
                    .await;
                let o = api
                    .create(
                        &system,
                        json!({"resourceType": "Observation", "status": "final",
                               "code": {"text": "heart rate"},
                               "subject": {"reference": format!("Patient/{p}")}}),
                    )
                    .await;
                let pp = format!("Patient/{p}");
                statuses.push(("read", api.get(&system, &pp).await.0, 200));
                statuses.push((
                    "search",
                    api.get(&system, &format!("Observation?subject={pp}"))
                        .await
                        .0,
                    200,
                ));
                let (s, _) = api
                    .put(
                        &system,
                        &pp,
                        &json!({"resourceType": "Patient", "id": p,
                               "name": [{"family": format!("Busy{w}x{i}"), "given": ["Again"]}]}),
                    )
                    .await;
                statuses.push(("update", s, 200));
                statuses.push((
                    "history",
                    api.get(&system, &format!("{pp}/_history")).await.0,
                    200,
                ));
                statuses.push((
                    "vread",
                    api.get(&system, &format!("{pp}/_history/1")).await.0,
                    200,
                ));
                statuses.push((
                    "read Observation",
                    api.get(&system, &format!("Observation/{o}")).await.0,
                    200,
                ));
                statuses.push((
                    "search Patient",
                    api.get(&system, &format!("Patient?_id={p}")).await.0,
                    200,
                ));
                statuses.push((
                    "unknown token",
                    api.get("ic_not-a-real-token", "Patient").await.0,
                    401,
                ));
                statuses.push((
                    "unknown id",
                    api.get(&system, "Patient/no-such-patient").await.0,
                    404,
                ));
                if i % 2 == 0 {
                    let s = api.delete(&system, &format!("Observation/{o}")).await;
                    statuses.push(("delete", if s == 204 { 200 } else { s }, 200));
                }
            }
            statuses
        });
    }
    let mut wrong = Vec::new();
    while let Some(done) = workers.join_next().await {
        for (what, got, expected) in done.unwrap() {
            if got != expected {
                wrong.push(format!("{what}: {got}, expected {expected}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{db:?}:\n{}", wrong.join("\n"));
    // The last request writes (its entry is appended inside the write's transaction).
    api.create(
        &system,
        json!({"resourceType": "Patient", "name": [{"family": "Last"}]}),
    )
    .await;
    drop(api);
    let status = served.interrupt();
    assert!(
        status.success(),
        "{db:?}: serve exited with {status} on SIGINT"
    );
}

/// `ironchart audit verify`: `Ok(stdout)` when intact, else `Err(stderr)`.
fn verify(data: &Path, db: &Db) -> Result<String, String> {
    let out = run(&["audit", "verify", "--data", data.to_str().unwrap()], db);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The entry numbers the signed checkpoints vouch for.
fn checkpointed(data: &Path) -> Vec<i64> {
    std::fs::read_to_string(data.join("audit-checkpoints.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// What the tampering tests need to know about the untouched log.
#[derive(Debug, Clone, Copy)]
struct Facts {
    /// The newest entry.
    newest: i64,
    /// An entry in the middle.
    middle: i64,
    /// The newest entry a signed checkpoint vouches for.
    checkpoint: i64,
    /// An entry that names patients (has rows in `audit_patients`).
    with_patients: i64,
    /// A failed request's entry.
    failed: i64,
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// A failed access made to look like a success.
    ChangeOutcome,
    DeleteMiddle,
    /// A forged entry put where a deleted one was.
    ForgeInGap,
    /// A deleted entry hidden by numbering the later ones down.
    DeleteAndRenumber,
    /// A forged entry appended after the newest.
    AppendForged,
    /// Two entries swapped (with their patient index rows).
    Swap,
    /// The newest entries deleted, back to before the newest checkpoint.
    TruncateTail,
    DeletePatientIndexRow,
}

const ALL: [Tamper; 8] = [
    Tamper::ChangeOutcome,
    Tamper::DeleteMiddle,
    Tamper::ForgeInGap,
    Tamper::DeleteAndRenumber,
    Tamper::AppendForged,
    Tamper::Swap,
    Tamper::TruncateTail,
    Tamper::DeletePatientIndexRow,
];

const COLUMNS: &str = "recorded, actor, role, action, res_type, res_id, version, patients, \
                       outcome, source, purpose, request_id, detail, mac";

/// SQL that moves entry `from` (and its patient index rows) to `to`, which must be free.
fn move_entry(from: i64, to: i64) -> String {
    format!(
        "UPDATE audit_log SET seq = {to} WHERE seq = {from}; \
         UPDATE audit_patients SET seq = {to} WHERE seq = {from};"
    )
}

impl Tamper {
    /// Tampers with the log; returns the entry `audit verify` must name.
    async fn apply(self, sql: &mut Sql, f: Facts) -> i64 {
        match self {
            Tamper::ChangeOutcome => {
                sql.execute(&format!(
                    "UPDATE audit_log SET outcome = 'success' WHERE seq = {}",
                    f.failed
                ))
                .await;
                f.failed
            }
            Tamper::DeleteMiddle => {
                sql.execute(&format!(
                    "DELETE FROM audit_log WHERE seq = {m}; DELETE FROM audit_patients WHERE seq = {m};",
                    m = f.middle
                ))
                .await;
                f.middle
            }
            Tamper::ForgeInGap => {
                let m = f.middle;
                sql.execute(&format!(
                    "DELETE FROM audit_log WHERE seq = {m}; \
                     INSERT INTO audit_log (seq, {COLUMNS}) \
                     SELECT {m}, recorded, 'user:someone-else', role, action, res_type, res_id, \
                            version, patients, outcome, source, purpose, request_id, detail, mac \
                     FROM audit_log WHERE seq = {next};",
                    next = m + 1
                ))
                .await;
                m
            }
            Tamper::DeleteAndRenumber => {
                let m = f.middle;
                // Through negative numbers, so no two rows ever share a key.
                sql.execute(&format!(
                    "DELETE FROM audit_log WHERE seq = {m}; DELETE FROM audit_patients WHERE seq = {m}; \
                     UPDATE audit_log SET seq = 1 - seq WHERE seq > {m}; \
                     UPDATE audit_patients SET seq = 1 - seq WHERE seq > {m}; \
                     UPDATE audit_log SET seq = -seq WHERE seq < 0; \
                     UPDATE audit_patients SET seq = -seq WHERE seq < 0;"
                ))
                .await;
                m
            }
            Tamper::AppendForged => {
                let n = f.newest;
                sql.execute(&format!(
                    "INSERT INTO audit_log (seq, {COLUMNS}) \
                     SELECT {next}, recorded + 1, actor, role, 'read', res_type, res_id, version, \
                            patients, outcome, source, purpose, request_id, detail, mac \
                     FROM audit_log WHERE seq = {n};",
                    next = n + 1
                ))
                .await;
                n + 1
            }
            Tamper::Swap => {
                let (a, b) = (f.middle, f.middle + 1);
                sql.execute(&[move_entry(a, -1), move_entry(b, a), move_entry(-1, b)].concat())
                    .await;
                a
            }
            Tamper::TruncateTail => {
                let from = f.checkpoint - 2;
                sql.execute(&format!(
                    "DELETE FROM audit_log WHERE seq >= {from}; \
                     DELETE FROM audit_patients WHERE seq >= {from};"
                ))
                .await;
                from
            }
            Tamper::DeletePatientIndexRow => {
                let p = f.with_patients;
                sql.execute(&format!(
                    "DELETE FROM audit_patients WHERE seq = {p} AND patient = \
                     (SELECT MIN(patient) FROM audit_patients WHERE seq = {p})"
                ))
                .await;
                p
            }
        }
    }
}

async fn facts(data: &Path, db: &Db) -> Facts {
    let mut sql = Sql::open(data, db).await;
    let newest = sql.integers("SELECT MAX(seq) FROM audit_log").await[0];
    let count = sql.integers("SELECT COUNT(*) FROM audit_log").await[0];
    assert_eq!(count, newest, "{db:?}: entries are numbered 1..");
    let middle = newest / 2;
    let with_patients = sql
        .integers(&format!(
            "SELECT MIN(seq) FROM audit_patients WHERE seq >= {middle}"
        ))
        .await[0];
    let failed = sql
        .integers("SELECT MIN(seq) FROM audit_log WHERE outcome = 'failure'")
        .await[0];
    let reads = sql
        .integers("SELECT COUNT(*) FROM audit_log WHERE action = 'read'")
        .await[0];
    sql.close().await;
    let checkpoint = checkpointed(data).into_iter().max().unwrap_or(0);
    assert!(
        newest > 300,
        "{db:?}: a busy run writes hundreds of entries"
    );
    assert!(reads >= 40, "{db:?}: reads are audited");
    assert!(
        checkpoint > middle,
        "{db:?}: checkpoint {checkpoint} of {newest}"
    );
    Facts {
        newest,
        middle,
        checkpoint,
        with_patients,
        failed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_a_busy_log_intact_and_locates_each_tampering() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        busy_run(data, &db).await;
        let report = verify(data, &db).unwrap_or_else(|e| panic!("{db:?}: {e}"));
        let f = facts(data, &db).await;
        assert!(
            report.contains(&format!("intact: {} entries", f.newest)),
            "{db:?}: {report}"
        );
        eprintln!("{db:?}: {f:?}");

        // The triggers stop tampering until they are dropped.
        let (copy, copy_db) = copy_data(data, &db);
        let mut sql = Sql::open(copy.path(), &copy_db).await;
        for statement in [
            "UPDATE audit_log SET outcome = 'success' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 1",
            "UPDATE audit_patients SET seq = seq + 1",
            "DELETE FROM audit_patients",
        ] {
            let refused = sql.try_execute(statement).await;
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("the audit log is append-only")),
                "{db:?}: {statement}: {refused:?}"
            );
        }
        if let Db::Postgres { .. } = copy_db {
            let refused = sql.try_execute("TRUNCATE audit_log").await;
            assert!(refused.is_err(), "{db:?}: TRUNCATE audit_log was allowed");
        }
        sql.close().await;
        verify(copy.path(), &copy_db).unwrap_or_else(|e| panic!("{db:?}: {e}"));

        let mut wrong = Vec::new();
        for tamper in ALL {
            let (copy, copy_db) = copy_data(data, &db);
            let mut sql = Sql::open(copy.path(), &copy_db).await;
            sql.drop_audit_triggers().await;
            let expected = tamper.apply(&mut sql, f).await;
            sql.close().await;
            match verify(copy.path(), &copy_db) {
                Ok(report) => wrong.push(format!("{tamper:?}: not detected: {report}")),
                Err(stderr) => {
                    let line = stderr
                        .lines()
                        .find(|l| l.contains("NOT intact"))
                        .unwrap_or_default()
                        .to_string();
                    eprintln!("{db:?} {tamper:?}: {line}");
                    if !line.starts_with("error: the audit log is NOT intact: first bad entry ")
                        || !line.contains(&format!("first bad entry {expected}: "))
                    {
                        wrong.push(format!(
                            "{tamper:?}: expected entry {expected} to be named: {stderr}"
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{db:?}:\n{}", wrong.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_entries_after_a_clean_stop_is_detected() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        busy_run(data, &db).await;
        verify(data, &db).unwrap_or_else(|e| panic!("{db:?}: {e}"));
        let mut sql = Sql::open(data, &db).await;
        let newest = sql.integers("SELECT MAX(seq) FROM audit_log").await[0];
        sql.close().await;
        // The server was stopped cleanly: its final checkpoint should vouch for everything it
        // wrote (its journal moved into the log first), so that removing its last entry shows.
        let (copy, copy_db) = copy_data(data, &db);
        let mut sql = Sql::open(copy.path(), &copy_db).await;
        sql.drop_audit_triggers().await;
        sql.execute(&format!(
            "DELETE FROM audit_log WHERE seq = {newest}; DELETE FROM audit_patients WHERE seq = {newest};"
        ))
        .await;
        sql.close().await;
        let result = verify(copy.path(), &copy_db);
        let newest_checkpoint = checkpointed(data).into_iter().max().unwrap_or(0);
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.contains(&format!("first bad entry {newest}: "))),
            "{db:?}: the newest entry {newest} was deleted, the newest checkpoint vouches for {newest_checkpoint}: {result:?}"
        );
    }
}

#[test]
fn every_command_vouches_for_its_own_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..10 {
        token(dir.path(), &Db::Sqlite);
    }
    // Each `admin token` appends one entry (through the writer) and, closing, vouches for it.
    assert_eq!(
        checkpointed(dir.path()),
        (1..=10).collect::<Vec<i64>>(),
        "the entries the checkpoints vouch for"
    );
}

/// A served instance on `data` that makes one audited read and stops cleanly, leaving a
/// signed checkpoint of it.
async fn served_once(data: &Path, db: &Db) {
    let mut served = Served::start(data, db);
    wait_healthy(&served.base).await;
    let tok = token(data, db);
    let api = Api::new(&served);
    assert_eq!(api.get(&tok, "Patient").await.0, 200);
    drop(api);
    assert!(served.interrupt().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_file_is_checked_too() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let data_s = data.to_str().unwrap();
        served_once(data, &db).await;
        verify(data, &db).unwrap_or_else(|e| panic!("{db:?}: {e}"));
        let file = data.join("audit-checkpoints.log");
        let original = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        assert!(
            !lines.is_empty(),
            "{db:?}: a clean stop leaves a checkpoint"
        );

        // A forged line (its entry number changed) fails its signature.
        let last = lines.len();
        let mut forged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut parts: Vec<String> = forged[last - 1].split(' ').map(str::to_string).collect();
        parts[1] = (parts[1].parse::<i64>().unwrap() + 1).to_string();
        forged[last - 1] = parts.join(" ");
        std::fs::write(&file, forged.join("\n") + "\n").unwrap();
        let err = verify(data, &db).expect_err("a forged checkpoint is noticed");
        assert!(
            err.contains(&format!("line {last} has an invalid signature")),
            "{db:?}: {err}"
        );

        // A checkpoint from another master key is not this database's.
        let other = tempfile::tempdir().unwrap();
        served_once(other.path(), &Db::Sqlite).await;
        std::fs::write(
            &file,
            std::fs::read_to_string(other.path().join("audit-checkpoints.log")).unwrap(),
        )
        .unwrap();
        let err = verify(data, &db).expect_err("another key's checkpoint is noticed");
        assert!(err.contains("signed by another key"), "{db:?}: {err}");

        // With the original file back, all is well.
        std::fs::write(&file, original).unwrap();
        ok(
            &run(&["audit", "verify", "--data", data_s], &db),
            "audit verify with the original checkpoints",
        );
    }
}

fn journals(data: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("audit-journal-"))
        })
        .collect();
    found.sort();
    found
}

/// A served instance on `data` that answers `reads` reads of an unknown Patient and is killed
/// (SIGKILL: no chance to move its journal into the log).
async fn killed_after_reads(data: &Path, db: &Db, reads: usize) {
    let mut served = Served::start(data, db);
    wait_healthy(&served.base).await;
    let tok = token(data, db);
    let api = Api::new(&served);
    for _ in 0..reads {
        assert_eq!(api.get(&tok, "Patient/never-there").await.0, 404);
    }
    drop(api);
    served.kill9();
}

async fn reads_on_file(data: &Path, db: &Db) -> i64 {
    let mut sql = Sql::open(data, db).await;
    let n = sql
        .integers("SELECT COUNT(*) FROM audit_log WHERE action = 'read' AND res_id = 'never-there'")
        .await[0];
    sql.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_journal_is_moved_into_the_log_at_the_next_start() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        killed_after_reads(data, &db, 25).await;
        assert_eq!(
            journals(data).len(),
            1,
            "{db:?}: the journal outlives the kill"
        );
        // The next command to open the data moves it (whatever the server had not moved yet).
        verify(data, &db).unwrap_or_else(|e| panic!("{db:?}: {e}"));
        assert_eq!(journals(data), Vec::<std::path::PathBuf>::new(), "{db:?}");
        assert_eq!(
            reads_on_file(data, &db).await,
            25,
            "{db:?}: every answered read is on file, once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_is_reported_and_kept_aside() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        killed_after_reads(data, &db, 12).await;
        let journal = journals(data).pop().expect("a journal");
        // Someone with access to the files changes an entry while it waits.
        let text = std::fs::read_to_string(&journal).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 12, "{db:?}: one line per read");
        lines[5] = lines[5].replace("never-there", "never-thera");
        std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
        verify(data, &db).unwrap_or_else(|e| panic!("{db:?}: {e}"));
        let aside = journal.with_file_name(format!(
            "{}.damaged",
            journal.file_name().unwrap().to_string_lossy()
        ));
        assert!(aside.exists(), "{db:?}: the damaged journal is kept aside");
        // The lines before the damage are on file (the server may have moved more itself).
        let reads = reads_on_file(data, &db).await;
        assert!((5..=12).contains(&reads), "{db:?}: {reads} reads on file");
        let mut sql = Sql::open(data, &db).await;
        let events = sql
            .texts("SELECT detail FROM audit_log WHERE action = 'audit-journal-damaged'")
            .await;
        sql.close().await;
        assert_eq!(events.len(), 1, "{db:?}: {events:?}");
        let detail = events[0].clone().unwrap_or_default();
        assert!(detail.contains("line 6 "), "{db:?}: {detail}");
    }
}
