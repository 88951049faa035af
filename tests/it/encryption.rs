//! Encryption at rest, seen from outside: clinical text is in no file of the data directory and
//! in no dump of the database, the server refuses to start with a wrong or missing master key,
//! and `ironchart keys rotate` keeps every record readable and is audited.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Api, Db, Served, Sql, dbs, ok, run, run_limited, token, wait_healthy};

/// Words written into clinical notes, found nowhere else.
const PHRASE: &str = "Marmalade quokka 7731 confided the tremor";
/// A family name: what search needs is kept in the search index, so this is in the database.
const FAMILY: &str = "Zwingelberger";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Writes a patient with notes (in two versions of an Observation and in a Condition) and
/// checks they read back; returns the ids written.
async fn write_notes(api: &Api, tok: &str) -> Vec<String> {
    let patient = api
        .create(
            tok,
            json!({"resourceType": "Patient", "name": [{"family": FAMILY, "given": ["Ottilie"]}]}),
        )
        .await;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let obs = api
        .create(
            tok,
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "tremor"},
                   "subject": subject, "note": [{"text": PHRASE}]}),
        )
        .await;
    let (status, body) = api
        .put(
            tok,
            &format!("Observation/{obs}"),
            &json!({"resourceType": "Observation", "id": obs, "status": "amended",
                    "code": {"text": "tremor"}, "subject": subject,
                    "note": [{"text": PHRASE}, {"text": format!("{PHRASE}, again")}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cond = api
        .create(
            tok,
            json!({"resourceType": "Condition", "subject": subject, "code": {"text": "tremor"},
                   "note": [{"text": PHRASE}]}),
        )
        .await;
    let (status, body) = api.get(tok, &format!("Observation/{obs}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["note"][1]["text"], format!("{PHRASE}, again"));
    let (status, body) = api.get(tok, &format!("Observation/{obs}/_history/1")).await;
    assert_eq!(status, 200);
    assert_eq!(body["note"][0]["text"], PHRASE);
    vec![
        format!("Patient/{patient}"),
        format!("Observation/{obs}"),
        format!("Condition/{cond}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_notes_are_not_in_the_files_or_the_database_dump() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let mut served = Served::start(data, &db);
        wait_healthy(&served.base).await;
        let api = Api::new(&served);
        let tok = token(data, &db);
        write_notes(&api, &tok).await;
        drop(api);
        let status = served.interrupt();
        assert!(status.success(), "{db:?}: {status}");

        let phrase = PHRASE.as_bytes();
        let words = "quokka".as_bytes();
        match &db {
            Db::Sqlite => {
                let files = files_under(data);
                let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
                assert!(
                    names.iter().any(|n| n.ends_with("ironchart.sqlite3")),
                    "{names:?}"
                );
                for (name, bytes) in &files {
                    assert!(
                        !contains(bytes, phrase) && !contains(bytes, words),
                        "the note's text is readable in {name}"
                    );
                }
                // The scan would see plain text: the family name is in the search index.
                assert!(
                    files.iter().any(|(_, b)| contains(b, FAMILY.as_bytes())),
                    "the search index should hold the family name"
                );
            }
            Db::Postgres { url, schema } => {
                let dump = std::process::Command::new("pg_dump")
                    .args(["--schema", schema, "--dbname", url])
                    .output()
                    .unwrap();
                assert!(
                    dump.status.success(),
                    "{}",
                    String::from_utf8_lossy(&dump.stderr)
                );
                let text = String::from_utf8_lossy(&dump.stdout);
                assert!(text.contains(FAMILY), "the dump holds the search index");
                for needle in [PHRASE.to_string(), "quokka".to_string(), hex(words)] {
                    assert!(!text.contains(&needle), "{needle} is in the pg_dump output");
                }
                // The bodies, as psql shows them as text.
                let out = std::process::Command::new("psql")
                    .args([
                        "--dbname",
                        url,
                        "-At",
                        "-c",
                        &format!("SELECT encode(body, 'escape') FROM {schema}.resource_versions"),
                    ])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                assert!(!out.stdout.is_empty());
                assert!(!contains(&out.stdout, words), "quokka in a body");
            }
        }
        // Every stored body is a sealed envelope (version byte 1), none is JSON; the search
        // index tables hold no note text.
        let mut sql = Sql::open(data, &db).await;
        let bodies = sql.blobs("SELECT body FROM resource_versions").await;
        assert!(bodies.len() >= 4, "{db:?}: {} bodies", bodies.len());
        for b in &bodies {
            assert_eq!(b.first(), Some(&1u8), "{db:?}: a body is not sealed");
            assert!(!contains(b, words));
        }
        let mut indexed = Vec::new();
        for (table, columns) in [
            ("idx_string", "value || ' ' || exact"),
            (
                "idx_token",
                "COALESCE(system, '') || ' ' || COALESCE(code, '') || ' ' || COALESCE(text, '')",
            ),
            ("idx_uri", "value"),
            (
                "idx_reference",
                "COALESCE(target_id, '') || ' ' || COALESCE(url, '') || ' ' || COALESCE(ident_value, '')",
            ),
            (
                "idx_quantity",
                "COALESCE(unit, '') || ' ' || COALESCE(code, '')",
            ),
        ] {
            for v in sql
                .texts(&format!("SELECT {columns} FROM {table}"))
                .await
                .into_iter()
                .flatten()
            {
                indexed.push(v);
            }
        }
        sql.close().await;
        assert!(
            indexed.iter().any(|v| v.contains(FAMILY)),
            "{db:?}: the family name is indexed for search"
        );
        let leaked: Vec<&String> = indexed
            .iter()
            .filter(|v| v.to_lowercase().contains("quokka"))
            .collect();
        assert!(
            leaked.is_empty(),
            "{db:?}: note text in the search index: {leaked:?}"
        );
    }
}

fn serve_args(data: &Path, key: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "serve".to_string(),
        "--data".into(),
        data.to_str().unwrap().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    if let Some(k) = key {
        args.extend(["--master-key-file".into(), k.to_str().unwrap().into()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_master_key_stops_the_server() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let mut served = Served::start(data, &db);
        wait_healthy(&served.base).await;
        let api = Api::new(&served);
        let tok = token(data, &db);
        let ids = write_notes(&api, &tok).await;
        drop(api);
        assert!(served.interrupt().success());
        let key = data.join("master.key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o400,
            "{db:?}: the master key file is owner-read-only"
        );

        // Another key (a new data directory makes one).
        let elsewhere = tempfile::tempdir().unwrap();
        ok(
            &run(
                &[
                    "admin",
                    "user",
                    "list",
                    "--data",
                    elsewhere.path().to_str().unwrap(),
                ],
                &Db::Sqlite,
            ),
            "a new data directory",
        );
        let other_key = elsewhere.path().join("master.key");
        let args = serve_args(data, Some(&other_key));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_limited(&args, &db, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{db:?}: served with a wrong key");
        assert!(
            stderr.contains("error: ") && stderr.contains("the master key does not match"),
            "{db:?}: {stderr}"
        );
        // So do the other commands.
        let out = run(
            &[
                "audit",
                "verify",
                "--data",
                data.to_str().unwrap(),
                "--master-key-file",
                other_key.to_str().unwrap(),
            ],
            &db,
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));

        // A key file that does not exist, given explicitly.
        let missing = data.join("no-such.key");
        let args = serve_args(data, Some(&missing));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_limited(&args, &db, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{db:?}");
        assert!(stderr.contains("master key file"), "{db:?}: {stderr}");
        assert!(!missing.exists(), "no key is made up for an explicit path");

        // The default key file gone (for example, not restored with a backup).
        let kept = elsewhere.path().join("kept.key");
        std::fs::copy(&key, &kept).unwrap();
        std::fs::remove_file(&key).unwrap();
        let args = serve_args(data, None);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_limited(&args, &db, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{db:?}: served without its key");
        assert!(
            stderr.contains("master key file") && stderr.contains("is missing"),
            "{db:?}: {stderr}"
        );
        assert!(
            !key.exists(),
            "{db:?}: the useless new key file is removed again"
        );

        // With the right key (from elsewhere, then back in place) all is readable.
        for key_file in [Some(kept.as_path()), None] {
            if key_file.is_none() {
                std::fs::copy(&kept, &key).unwrap();
            }
            let args = serve_args(data, key_file);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut served = Served::start_cmd(&args, &db);
            wait_healthy(&served.base).await;
            let api = Api::new(&served);
            for id in &ids {
                let (status, body) = api.get(&tok, id).await;
                assert_eq!(status, 200, "{db:?}: {id}: {body}");
            }
            drop(api);
            assert!(served.interrupt().success());
        }
    }
}

/// The notes of [`write_notes`] and `patients` patients of two versions each; returns the ids.
async fn write_chart(api: &Api, tok: &str, patients: usize) -> Vec<String> {
    let mut ids = write_notes(api, tok).await;
    for i in 0..patients {
        let p = api
            .create(
                tok,
                json!({"resourceType": "Patient", "name": [{"family": format!("Rotor{i}")}]}),
            )
            .await;
        let (status, _) = api
            .put(
                tok,
                &format!("Patient/{p}"),
                &json!({"resourceType": "Patient", "id": p, "active": true,
                        "name": [{"family": format!("Rotor{i}")}]}),
            )
            .await;
        assert_eq!(status, 200);
        ids.push(format!("Patient/{p}"));
    }
    ids
}

/// Serves `data`, writes a chart of `patients` patients ([`write_chart`]) with the system token,
/// and reads every version back: the server, its client, the token, the ids and the versions.
async fn serve_chart(
    data: &Path,
    db: &Db,
    patients: usize,
) -> (Served, Api, String, Vec<String>, Vec<(String, Value)>) {
    let served = Served::start(data, db);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let tok = token(data, db);
    let ids = write_chart(&api, &tok, patients).await;
    let before = all_versions(&api, &tok, &ids).await;
    (served, api, tok, ids, before)
}

/// Every version of every resource the system token can find: (type/id/version, body).
async fn all_versions(api: &Api, tok: &str, ids: &[String]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for id in ids {
        let (status, history) = api.get(tok, &format!("{id}/_history?_count=100")).await;
        assert_eq!(status, 200, "{id}: {history}");
        for entry in history["entry"].as_array().unwrap() {
            let version = entry["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_string();
            let (status, body) = api.get(tok, &format!("{id}/_history/{version}")).await;
            assert_eq!(status, 200, "{id}/_history/{version}: {body}");
            assert_eq!(body, entry["resource"], "history and vread agree");
            out.push((format!("{id}/_history/{version}"), body));
        }
        let (status, body) = api.get(tok, id).await;
        assert_eq!(status, 200, "{id}: {body}");
        out.push((id.clone(), body));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_every_record_readable_and_is_audited() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let data_s = data.to_str().unwrap();
        let (mut served, api, tok, ids, before) = serve_chart(data, &db, 20).await;
        let mut sql = Sql::open(data, &db).await;
        let stored = sql.integers("SELECT COUNT(*) FROM resource_versions").await[0];
        sql.close().await;

        // Rotate online: the server keeps taking writes while the other process re-seals.
        let rotate_data = data_s.to_string();
        let rotate_db = db.clone();
        let rotation = tokio::task::spawn_blocking(move || {
            run(
                &["keys", "rotate", "--data", &rotate_data, "--quiet"],
                &rotate_db,
            )
        });
        let mut during = Vec::new();
        while !rotation.is_finished() {
            let p = api
                .create(
                    &tok,
                    json!({"resourceType": "Patient", "name": [{"family": "DuringRotation"}]}),
                )
                .await;
            during.push(format!("Patient/{p}"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let out = rotation.await.unwrap();
        ok(&out, "keys rotate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let resealed: i64 = stdout
            .split("; ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            stdout.starts_with("data key generation 2 is current") && resealed >= stored,
            "{db:?}: {stdout} ({stored} versions were stored before)"
        );
        assert!(during.len() >= 10, "writes went on during the rotation");

        let after = all_versions(&api, &tok, &ids).await;
        assert_eq!(before, after, "{db:?}: bodies changed in the rotation");
        for id in &during {
            assert_eq!(api.get(&tok, id).await.0, 200, "{db:?}: {id}");
        }
        drop(api);
        assert!(served.interrupt().success());

        // Everything is sealed under the new generation (envelope: 1, generation u32 BE …).
        let mut sql = Sql::open(data, &db).await;
        let bodies = sql.blobs("SELECT body FROM resource_versions").await;
        let old: usize = bodies
            .iter()
            .filter(|b| b.get(1..5) != Some(&2u32.to_be_bytes()[..]))
            .count();
        assert_eq!(old, 0, "{db:?}: {old} bodies are not under generation 2");
        let rotations = sql
            .texts(
                "SELECT actor || ' ' || outcome || ' ' || detail FROM audit_log \
                 WHERE action = 'key-rotate' ORDER BY seq",
            )
            .await;
        sql.close().await;
        assert_eq!(rotations.len(), 2, "{db:?}: {rotations:?}");
        assert_eq!(
            rotations[0].as_deref(),
            Some("system success data key generation 2 is current")
        );
        assert!(
            rotations[1]
                .as_deref()
                .is_some_and(|r| r.starts_with("system success re-sealed ")),
            "{rotations:?}"
        );
        ok(
            &run(&["audit", "verify", "--data", data_s], &db),
            "audit verify after the rotation",
        );

        // A fresh process reads everything back too.
        let mut served = Served::start(data, &db);
        wait_healthy(&served.base).await;
        let api = Api::new(&served);
        assert_eq!(all_versions(&api, &tok, &ids).await, before);
        drop(api);
        assert!(served.interrupt().success());
    }
}

/// The public keys that signed lines of a checkpoint file (the last field of each line).
fn checkpoint_signers(data: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(data.join("audit-checkpoints.log")).unwrap_or_default();
    let mut keys: Vec<String> = text
        .lines()
        .filter_map(|l| l.rsplit(' ').next())
        .map(str::to_string)
        .collect();
    keys.dedup();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_master_key_keeps_everything_readable_and_retires_the_old_key() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let data_s = data.to_str().unwrap();
        let (mut served, api, tok, ids, before) = serve_chart(data, &db, 10).await;
        drop(api);
        assert!(served.interrupt().success());
        let old_signers = checkpoint_signers(data);
        assert_eq!(
            old_signers.len(),
            1,
            "{db:?}: one key signed the checkpoints"
        );

        // A server keeps running with the old key while the key is replaced.
        let mut stale = Served::start(data, &db);
        wait_healthy(&stale.base).await;
        let api = Api::new(&stale);
        assert_eq!(api.get(&tok, &ids[0]).await.0, 200);
        let keys = tempfile::tempdir().unwrap();
        let new_key = keys.path().join("new.key");
        let new_key_s = new_key.to_str().unwrap();
        let out = run(
            &[
                "keys",
                "rotate",
                "--data",
                data_s,
                "--new-master-key-file",
                new_key_s,
                "--quiet",
            ],
            &db,
        );
        ok(&out, "keys rotate --new-master-key-file");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("data key generation 2 is current")
                && stdout.contains(&format!(
                    "the master key was replaced: from now on start ironchart with --master-key-file {new_key_s}"
                )),
            "{db:?}: {stdout}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&new_key).unwrap().permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o400,
            "{db:?}: the new key is owner-read-only"
        );

        // The server with the old key stops serving: writes at once, reads as soon as their
        // audit entries cannot go into the chain.
        let (status, body) = api
            .post(
                &tok,
                "Patient",
                &json!({"resourceType": "Patient", "name": [{"family": "Stale"}]}),
            )
            .await;
        assert_eq!(status, 503, "{db:?}: a write on the stale server: {body}");
        let mut refused = false;
        for _ in 0..100 {
            if api.get(&tok, &ids[0]).await.0 == 503 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(refused, "{db:?}: the stale server went on reading");
        drop(api);
        stale.interrupt();

        // The old key opens nothing any more.
        let out = run(&["audit", "verify", "--data", data_s], &db);
        assert!(
            !out.status.success(),
            "{db:?}: the old key still opens the database"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the master key does not match"),
            "{db:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The new key opens everything, with every version as it was.
        let args = serve_args(data, Some(&new_key));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut served = Served::start_cmd(&args, &db);
        wait_healthy(&served.base).await;
        let api = Api::new(&served);
        assert_eq!(all_versions(&api, &tok, &ids).await, before, "{db:?}");
        api.create(
            &tok,
            json!({"resourceType": "Patient", "name": [{"family": "AfterRekey"}]}),
        )
        .await;
        drop(api);
        assert!(served.interrupt().success());

        // One chain across both keys, its checkpoints signed by each in turn; the stale
        // server's journal (reads it answered just before it stopped) moved in intact.
        let out = run(
            &[
                "audit",
                "verify",
                "--data",
                data_s,
                "--master-key-file",
                new_key_s,
            ],
            &db,
        );
        ok(&out, "audit verify with the new key");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("intact") && stdout.contains("signed checkpoint"),
            "{db:?}: {stdout}"
        );
        let signers = checkpoint_signers(data);
        assert_eq!(signers.len(), 2, "{db:?}: {signers:?}");
        assert_eq!(signers[0], old_signers[0]);
        let leftovers: Vec<String> = std::fs::read_dir(data)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("audit-journal"))
            .collect();
        assert!(leftovers.is_empty(), "{db:?}: {leftovers:?}");

        let mut sql = Sql::open(data, &db).await;
        let bodies = sql.blobs("SELECT body FROM resource_versions").await;
        let old = bodies
            .iter()
            .filter(|b| b.get(1..5) != Some(&2u32.to_be_bytes()[..]))
            .count();
        assert_eq!(old, 0, "{db:?}: {old} bodies are not under generation 2");
        let settings = sql
            .texts(
                "SELECT key || '=' || value FROM settings \
                 WHERE key IN ('keys.data', 'keys.wrapped', 'keys.current') ORDER BY key",
            )
            .await;
        let settings: Vec<String> = settings.into_iter().flatten().collect();
        assert_eq!(settings.len(), 3, "{db:?}: {settings:?}");
        assert!(settings[0].starts_with("keys.current=2"), "{settings:?}");
        assert!(
            settings[1].starts_with("keys.data=2:") && !settings[1].contains(' '),
            "{db:?}: only the new generation is listed: {settings:?}"
        );
        assert_eq!(
            settings[2], "keys.wrapped=",
            "{db:?}: no wrapped keys are left"
        );
        let rotations = sql
            .texts("SELECT detail FROM audit_log WHERE action = 'key-rotate' ORDER BY seq")
            .await;
        let damaged = sql
            .integers("SELECT COUNT(*) FROM audit_log WHERE action = 'audit-journal-damaged'")
            .await[0];
        sql.close().await;
        assert_eq!(damaged, 0, "{db:?}");
        assert_eq!(rotations.len(), 2, "{db:?}: {rotations:?}");
        assert_eq!(
            rotations[0].as_deref(),
            Some("the master key was replaced; data key generation 2 is current")
        );
        assert!(
            rotations[1]
                .as_deref()
                .is_some_and(|r| r.starts_with("re-sealed ")
                    && r.ends_with(
                        "under generation 2; deleted the 1 data keys of the replaced master key"
                    )),
            "{db:?}: {rotations:?}"
        );

        // The same key again, or no key to replace, is refused.
        let out = run(
            &[
                "keys",
                "rotate",
                "--data",
                data_s,
                "--master-key-file",
                new_key_s,
                "--new-master-key-file",
                new_key_s,
            ],
            &db,
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the new master key is the one in use"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
