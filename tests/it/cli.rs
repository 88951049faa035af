//! Commands and their failure modes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Db, Served, bin, closed_by_server, run, token, wait_healthy};

fn dbs() -> Vec<Db> {
    let mut v = vec![Db::Sqlite];
    v.extend(Db::postgres());
    v
}

#[test]
fn help_and_version() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "demo", "import", "admin"] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ironchart "));
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("IRONCHART_DATA")
            && text.contains("IRONCHART_LISTEN")
            && text.contains("IRONCHART_DATABASE_URL")
    );
    for limit in [
        "--header-timeout",
        "IRONCHART_HEADER_TIMEOUT",
        "--idle-timeout",
        "IRONCHART_IDLE_TIMEOUT",
        "--max-connections",
        "IRONCHART_MAX_CONNECTIONS",
        "--shutdown-grace",
        "IRONCHART_SHUTDOWN_GRACE",
    ] {
        assert!(text.contains(limit), "{limit} missing from serve --help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_token_and_kill9_durability() {
    for db in dbs() {
        let dir = tempfile::tempdir().unwrap();
        let mut served = Served::start(dir.path(), &db);
        wait_healthy(&served.base).await;
        let tok = token(dir.path(), &db);
        let client = reqwest::Client::new();
        // Without a token: 401; with: 200.
        let r = client.get(served.fhir("Patient")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = client
            .get(served.fhir("Patient"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Every acknowledged write survives kill -9.
        let mut ids = Vec::new();
        for i in 0..25 {
            let r = client
                .post(served.fhir("Patient"))
                .bearer_auth(&tok)
                .header("content-type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Patient", "name": [{"family": format!("Durable{i}")}]})
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            ids.push(v["id"].as_str().unwrap().to_string());
        }
        served.kill9();
        let served = Served::start(dir.path(), &db);
        wait_healthy(&served.base).await;
        for id in &ids {
            let r = client
                .get(served.fhir(&format!("Patient/{id}")))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{db:?}: Patient/{id} lost after kill -9");
        }
    }
}

#[test]
fn serve_refuses_bad_setups() {
    // Unwritable data directory (a path below a regular file).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("data");
    let out = run(
        &[
            "serve",
            "--data",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &Db::Sqlite,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data directory"), "{err}");

    // Port in use.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "serve",
            "--data",
            data.path().to_str().unwrap(),
            "--listen",
            &port,
        ],
        &Db::Sqlite,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");

    // A database from a newer ironchart.
    let out = run(
        &["admin", "token", "--data", data.path().to_str().unwrap()],
        &Db::Sqlite,
    );
    assert!(out.status.success());
    let db_file = data.path().join("ironchart.sqlite3");
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO ironchart_schema (version, applied_at) VALUES (999, 0)'); c.commit()",
            db_file.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(py.success());
    let out = run(
        &[
            "serve",
            "--data",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &Db::Sqlite,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer"), "{err}");

    // Connection limits out of range.
    let fresh = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--max-connections", "0", "0"),
        ("--idle-timeout", "2d", "at most a day"),
        ("--header-timeout", "0s", "positive"),
        ("--header-timeout", "99999999999999999d", "too long"),
    ] {
        let out = run(
            &[
                "serve",
                "--data",
                fresh.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                flag,
                value,
            ],
            &Db::Sqlite,
        );
        assert!(!out.status.success(), "{flag} {value} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_connections_to_its_limits() {
    let data = tempfile::tempdir().unwrap();
    let mut served = Served::start_cmd(
        &[
            "serve",
            "--data",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--header-timeout",
            "1s",
            "--max-connections",
            "16",
        ],
        &Db::Sqlite,
    );
    wait_healthy(&served.base).await;
    let patience = Duration::from_secs(30);
    assert!(
        closed_by_server(
            &served.base,
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n",
            patience
        ),
        "a stalled request head is cut off"
    );
    // Ctrl-C stops the server promptly though a kept-alive connection is open.
    let mut open = std::net::TcpStream::connect(served.base.trim_start_matches("http://")).unwrap();
    std::io::Write::write_all(&mut open, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut open, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(served.interrupt().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_input_and_keeps_the_rest() {
    for db in dbs() {
        let data = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let good_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b5b7a4a-6a0e-4d52-9a49-6a8cd0b0b9a1",
             "resource": {"resourceType": "Patient", "name": [{"family": "Imported"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:0b5b7a4a-6a0e-4d52-9a49-6a8cd0b0b9a1"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]});
        std::fs::write(files.path().join("a-bundle.json"), good_bundle.to_string()).unwrap();
        std::fs::write(files.path().join("b-broken.json"), "{ not json").unwrap();
        // A Bundle is all or nothing: its valid Patient does not land without its Observation.
        let bad_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "bb-1"},
             "request": {"method": "PUT", "url": "Patient/bb-1"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "effectiveDateTime": "yesterday"},
             "request": {"method": "POST", "url": "Observation"}}
        ]});
        std::fs::write(
            files.path().join("b-bad-bundle.json"),
            bad_bundle.to_string(),
        )
        .unwrap();
        let ndjson = [
            json!({"resourceType": "Patient", "id": "nd-1", "name": [{"family": "Line"}]})
                .to_string(),
            "{ broken line".to_string(),
            json!({"resourceType": "Patient", "id": "nd-3", "birthDate": "not-a-date"}).to_string(),
            json!({"resourceType": "Patient", "id": "nd-4", "name": [{"family": "Line"}]})
                .to_string(),
        ]
        .join("\n");
        std::fs::write(files.path().join("c-patients.ndjson"), ndjson).unwrap();
        let out = run(
            &[
                "import",
                "--quiet",
                "--data",
                data.path().to_str().unwrap(),
                files.path().to_str().unwrap(),
            ],
            &db,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "failures give a non-zero exit");
        assert!(stderr.contains("b-broken.json"), "{stderr}");
        assert!(
            stderr.contains("b-bad-bundle.json: transaction rolled back: entry[1]"),
            "{stderr}"
        );
        assert!(stderr.contains("c-patients.ndjson:2"), "{stderr}");
        assert!(
            stderr.contains("c-patients.ndjson:3") && stderr.contains("birthDate"),
            "{stderr}"
        );
        assert!(
            stdout.contains("imported 4 resources from 4 files; 4 failed"),
            "{stdout}"
        );

        let served = Served::start(data.path(), &db);
        wait_healthy(&served.base).await;
        let tok = token(data.path(), &db);
        let client = reqwest::Client::new();
        let get = |path: String| {
            let client = client.clone();
            let tok = tok.clone();
            async move {
                let r = client.get(path).bearer_auth(tok).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        assert_eq!(get(served.fhir("Patient/nd-1")).await.0, 200);
        assert_eq!(get(served.fhir("Patient/nd-4")).await.0, 200);
        assert_eq!(get(served.fhir("Patient/nd-3")).await.0, 404);
        assert_eq!(get(served.fhir("Patient/bb-1")).await.0, 404);
        let (_, b) = get(served.fhir("Observation?subject:Patient.family=imported")).await;
        assert_eq!(b["total"], 1, "{b}");
    }
}

#[test]
fn demo_seeds_once() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "demo",
        "--no-serve",
        "--patients",
        "3",
        "--data",
        data.path().to_str().unwrap(),
    ];
    let first = run(&args, &Db::Sqlite);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("Seeded"), "{err}");
    let second = run(&args, &Db::Sqlite);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("existing demo data"));
    let token = String::from_utf8_lossy(&second.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(token.starts_with("ic_"));
    let _ = Duration::from_secs(0);
}

/// `ironchart terminology load`: a site's full release is read in its published form and
/// kept under the data directory; a file it does not know is refused with a clear message.
#[test]
fn terminology_load_reads_published_releases() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let codes = files.path().join("icd10cm_codes_2026.txt");
    std::fs::write(
        &codes,
        "Z9989   Dependence on other enabling machines and devices\nA000    Cholera due to Vibrio cholerae 01, biovar cholerae\n",
    )
    .unwrap();
    let out = bin()
        .args(["terminology", "load", "--data"])
        .arg(dir.path())
        .arg(&codes)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded 2 ICD-10-CM codes"));
    let saved = std::fs::read_to_string(dir.path().join("terminology/icd10cm.tsv")).unwrap();
    assert!(saved.contains("Z99.89\tDependence on other enabling machines and devices"));
    let t = ironchart_web::terminology::Terminology::for_data_dir(dir.path()).unwrap();
    assert_eq!(t.diagnoses("enabling machines", 3)[0].code, "Z99.89");

    let junk = files.path().join("notes.txt");
    std::fs::write(&junk, "hello world\n").unwrap();
    let out = bin()
        .args(["terminology", "load", "--data"])
        .arg(dir.path())
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a release this command knows"));
}
