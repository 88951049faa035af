//! `cargo xtask bench`: loads generated cohorts and measures ironchart on this machine against
//! its targets, next to the machine's ceilings measured the same way.
//!
//! - bulk import (resources/s, full indexing) through `ironchart import`, from NDJSON and from
//!   the same resources written as one transaction Bundle per patient (target: 90 % of NDJSON);
//! - every US Core 6.1 search with bare patient ids, each patient search again newest first
//!   and paged to its last page (target: 3,000 req/s, p99 < 20 ms), and searches over the
//!   population (target: p50 < 10 ms; counts in matches/s), each loaded by `wrk` in a separate
//!   process through `ironchart serve`;
//! - PostgreSQL against SQLite on every line (target: 70 %), each line measured on one backend
//!   and then the other so that a ratio is taken at one moment, and the curve across cohorts
//!   (target: the largest within 1.5 times the smallest);
//! - the HTTP ceiling: a trivial axum handler, same `wrk` settings;
//! - the storage ceiling: raw inserts of the same JSON into SQLite, same durability settings.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Options {
    /// Cohort sizes, smallest first.
    pub patients: Vec<usize>,
    pub backends: Vec<String>,
    pub duration: u64,
    pub connections: usize,
    pub threads: usize,
    pub database_url: String,
    pub reuse: bool,
    /// Measure with a token of a user of this role instead of the system token.
    pub role: Option<String>,
    /// Also import the cohort as per-patient transaction Bundles.
    pub bundles: bool,
    /// How long `wrk` waits for one answer (s) before counting it as a timeout.
    pub timeout: u64,
    /// Rounds per line and backend, the backends taking turns; a line's figure is its median
    /// round's.
    pub rounds: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            patients: vec![10_000],
            backends: vec!["sqlite".into()],
            duration: 5,
            connections: 16,
            threads: 2,
            database_url: std::env::var("IRONCHART_TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            reuse: false,
            role: None,
            bundles: true,
            timeout: 2,
            rounds: 3,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--patients" => {
                    o.patients = value()?
                        .split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| "--patients: numbers, such as 1000,10000,16000")?;
                    o.patients.sort_unstable();
                }
                "--backend" => {
                    o.backends = match value()?.as_str() {
                        "both" => vec!["sqlite".into(), "postgres".into()],
                        b @ ("sqlite" | "postgres") => vec![b.to_string()],
                        other => return Err(format!("unknown backend {other}")),
                    }
                }
                "--duration" => o.duration = value()?.parse().map_err(|_| "--duration: seconds")?,
                "--connections" => {
                    o.connections = value()?.parse().map_err(|_| "--connections: a number")?
                }
                "--threads" => o.threads = value()?.parse().map_err(|_| "--threads: a number")?,
                "--database-url" => o.database_url = value()?,
                "--reuse" => o.reuse = true,
                "--as" => o.role = Some(value()?),
                "--no-bundles" => o.bundles = false,
                "--rounds" => {
                    o.rounds = value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or("--rounds: a number of at least 1")?
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(o)
    }
}

fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_latency(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, factor) = if let Some(n) = t.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (t, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|v| v * factor)
}

fn wrk(opts: &Options, url: &str, script: Option<&Path>) -> Result<WrkResult, String> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &opts.threads.to_string(),
        "-c",
        &opts.connections.to_string(),
        "-d",
        &format!("{}s", opts.duration),
        "--timeout",
        &format!("{}s", opts.timeout),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = sh(&mut cmd)?;
    let mut r = WrkResult {
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            r.p50_ms = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("99%") {
            r.p99_ms = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if l.starts_with("Socket errors:") {
            r.errors += l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(r)
}

/// A wrk script that requests random paths from a list, with the bearer token.
fn write_script(path: &Path, token: &str, paths: &[String]) -> Result<(), String> {
    let mut s = String::from("local paths = {\n");
    for p in paths {
        s.push_str("  \"");
        s.push_str(&p.replace('\\', "\\\\").replace('"', "\\\""));
        s.push_str("\",\n");
    }
    s.push_str("}\n");
    s.push_str(&format!(
        "local headers = {{ [\"Authorization\"] = \"Bearer {token}\", [\"Accept\"] = \"application/fhir+json\" }}\n"
    ));
    s.push_str("math.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)], headers)\nend\n");
    std::fs::write(path, s).map_err(|e| e.to_string())
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_server(bin: &Path, data: &Path, db: &[(&str, String)]) -> Result<Server, String> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--data"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("IRONCHART_LOG", "error")
        // One load generator on one address: no per-client limit.
        .env("IRONCHART_RATE_LIMIT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in db {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{port}");
    let server = Server { child, base };
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the server did not start".into())
}

/// A GET answered 200, tried up to three times: the first read of a large count on a cold
/// cache may be stopped by the query time limit (503) before the cache is warm.
fn http_get(url: &str, token: &str) -> Result<Value, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match sh(Command::new("curl").args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])) {
            Ok(out) => return serde_json::from_str(&out).map_err(|e| e.to_string()),
            Err(e) if tries >= 3 => return Err(e),
            Err(_) => {}
        }
    }
}

fn count_lines(files: &[PathBuf]) -> usize {
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .sum()
}

/// Raw inserts of the same JSON into SQLite, with the durability settings ironchart uses.
fn storage_ceiling(files: &[PathBuf], dir: &Path) -> Result<f64, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        use sqlx::{ConnectOptions, Connection};
        let path = dir.join("ceiling.sqlite3");
        let _ = std::fs::remove_file(&path);
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(
            "CREATE TABLE raw (id TEXT PRIMARY KEY, res_type TEXT NOT NULL, body BLOB NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
                let rt = v["resourceType"].as_str().unwrap_or_default().to_string();
                let id = format!("{rt}/{}", v["id"].as_str().unwrap_or_default());
                rows.push((id, rt, line.as_bytes().to_vec()));
            }
        }
        let started = Instant::now();
        for chunk in rows.chunks(500) {
            let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
            for (id, rt, body) in chunk {
                sqlx::query("INSERT INTO raw (id, res_type, body) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(rt)
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())?;
        }
        Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
    })
}

/// A trivial axum handler served on its own runtime (2 worker threads, like ironchart).
fn http_ceiling(opts: &Options) -> Result<WrkResult, String> {
    let port = free_port()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            let _ = axum::serve(listener, app).await;
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let r = wrk(opts, &format!("http://127.0.0.1:{port}/"), None);
    rt.shutdown_background();
    r
}

/// What a line of the bench is held to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// A search about one patient (or a small lookup): 3,000 req/s and p99 < 20 ms.
    Patient,
    /// A search over the population: p50 < 10 ms.
    Population,
    /// A count over the population: p50 < 10 ms is not asked; a million matches a second is.
    Count,
}

/// One measured line.
struct Measured {
    patients: usize,
    backend: String,
    label: String,
    target: Target,
    r: WrkResult,
    /// For a count: how many it counted.
    counted: Option<i64>,
}

/// A sample patient's searchable facts.
struct Sample {
    id: String,
    family: String,
    birth: String,
    gender: String,
    mrn: String,
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The US Core 6.1 server searches (SHALL and SHOULD), with `{p}` a bare patient id and the
/// sample's facts.
const US_CORE: &[&str] = &[
    "Patient/{p}",
    "Patient?_id={p}",
    "Patient?identifier=urn:ironchart:demo:mrn|{mrn}",
    "Patient?name={family}",
    "Patient?birthdate={birth}&name={family}",
    "Patient?gender={gender}&name={family}",
    "AllergyIntolerance?patient={p}",
    "Condition?patient={p}",
    "Condition?patient={p}&category=problem-list-item",
    "Condition?patient={p}&clinical-status=active",
    "Condition?patient={p}&onset-date=ge2020-01-01",
    "Condition?patient={p}&code=http://snomed.info/sct|195967001",
    "DiagnosticReport?patient={p}",
    "DiagnosticReport?patient={p}&category=LAB",
    "DiagnosticReport?patient={p}&code=http://loinc.org|24323-8",
    "DiagnosticReport?patient={p}&category=LAB&date=ge2023-01-01",
    "DocumentReference?patient={p}",
    "DocumentReference?patient={p}&category=clinical-note",
    "DocumentReference?patient={p}&type=http://loinc.org|11506-3",
    "DocumentReference?patient={p}&category=clinical-note&date=ge2023-01-01",
    "Encounter?patient={p}",
    "Encounter?patient={p}&date=ge2023-01-01",
    "Immunization?patient={p}",
    "MedicationRequest?patient={p}&intent=order",
    "MedicationRequest?patient={p}&intent=order&status=active",
    "MedicationRequest?patient={p}&intent=order&_include=MedicationRequest:medication",
    "Observation?patient={p}&category=vital-signs",
    "Observation?patient={p}&category=laboratory&date=ge2023-01-01",
    "Observation?patient={p}&code=http://loinc.org|8867-4",
    "Observation?patient={p}&code=http://loinc.org|8867-4&date=ge2023-01-01",
    "Procedure?patient={p}",
    "Procedure?patient={p}&date=ge2023-01-01",
    "CarePlan?patient={p}&category=assess-plan",
    "CareTeam?patient={p}&status=active",
    "Goal?patient={p}",
    "ServiceRequest?patient={p}",
    "ServiceRequest?patient={p}&category=108252007",
    "ServiceRequest?patient={p}&code=http://loinc.org|24323-8",
    "Coverage?patient={p}",
    "Device?patient={p}",
    "Practitioner?name={practitioner}",
    "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{npi}",
    "Organization?name=riverbend",
    "Location?name=riverbend",
];

/// Each patient search newest first (by the type's date), paged to its last page.
const NEWEST_FIRST: &[&str] = &[
    "Observation?patient={p}&_sort=-date",
    "Observation?patient={p}&category=laboratory&_sort=-date",
    "Condition?patient={p}&_sort=-onset-date",
    "DiagnosticReport?patient={p}&_sort=-date",
    "DocumentReference?patient={p}&_sort=-date",
    "Encounter?patient={p}&_sort=-date",
    "Immunization?patient={p}&_sort=-date",
    "MedicationRequest?patient={p}&intent=order&_sort=-authoredon",
    "Procedure?patient={p}&_sort=-date",
    "AllergyIntolerance?patient={p}&_sort=-date",
];

/// Searches over the population: first pages, and a count.
const POPULATION: &[&str] = &[
    "Observation?code=http://loinc.org|8867-4&_count=10",
    "Observation?date=ge2025-01-01&_count=10",
    "Encounter?date=ge2025-01-01&status=finished&_count=10",
    "Observation?category=laboratory&_sort=-date&_count=10",
    "Observation?status=final&_sort=-date,_id&_count=10",
    "DiagnosticReport?_sort=-issued&_count=10",
];
const COUNTS: &[&str] = &[
    "Observation?code=http://loinc.org|8867-4&_summary=count",
    "Observation?category=laboratory&_summary=count",
];

/// A template with the sample's facts put in (values percent-encoded).
fn fill(template: &str, s: &Sample, practitioner: &(String, String)) -> String {
    let (path, query) = template.split_once('?').unwrap_or((template, ""));
    let query: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = v
                .replace("{p}", &s.id)
                .replace("{mrn}", &s.mrn)
                .replace("{family}", &s.family)
                .replace("{birth}", &s.birth)
                .replace("{gender}", &s.gender)
                .replace("{practitioner}", &practitioner.0)
                .replace("{npi}", &practitioner.1);
            format!("{k}={}", enc(&v))
        })
        .collect();
    let path = path.replace("{p}", &s.id);
    if query.is_empty() {
        format!("/fhir/{path}")
    } else {
        format!("/fhir/{path}?{}", query.join("&"))
    }
}

/// The cohort written as one transaction Bundle of PUTs per patient, plus one Bundle of the
/// resources about no patient (`0-shared.json`, imported first).
fn write_bundles(files: &[PathBuf], out: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    // Each resource kept as its NDJSON line (its `Type/id` and line), not as a parsed value: a
    // 16,000-patient cohort parsed whole did not fit in memory.
    type Line = (String, String);
    let mut by_patient: std::collections::BTreeMap<String, Vec<Line>> = Default::default();
    let mut shared: Vec<Line> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let r: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let owner = if r["resourceType"] == "Patient" {
                r["id"].as_str().map(str::to_string)
            } else {
                ["subject", "patient", "beneficiary"].iter().find_map(|k| {
                    r[k]["reference"]
                        .as_str()
                        .and_then(|x| x.strip_prefix("Patient/"))
                        .map(str::to_string)
                })
            };
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            let kept = (url, line.to_string());
            match owner {
                Some(p) => by_patient.entry(p).or_default().push(kept),
                None => shared.push(kept),
            }
        }
    }
    let bundle = |rs: Vec<Line>| {
        let mut text = String::from(r#"{"resourceType":"Bundle","type":"transaction","entry":["#);
        for (n, (url, line)) in rs.into_iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            let url_json = Value::String(url.clone()).to_string();
            let full_json = Value::String(format!("urn:ironchart:{url}")).to_string();
            text.push_str(&format!(
                r#"{{"fullUrl":{full_json},"resource":{line},"request":{{"method":"PUT","url":{url_json}}}}}"#
            ));
        }
        text.push_str("]}");
        text
    };
    std::fs::write(out.join("0-shared.json"), bundle(shared)).map_err(|e| e.to_string())?;
    for (p, rs) in by_patient {
        std::fs::write(out.join(format!("{p}.json")), bundle(rs)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A fingerprint of what `bin` generates: a hash of a two-patient cohort's files (the clinic's
/// resources and two charts). A cohort on disk, or data imported from one, whose marker holds
/// another fingerprint was written by another generator and is made again.
fn generator_fingerprint(bin: &Path, work: &Path) -> Result<String, String> {
    use std::hash::{Hash, Hasher};
    let sample = work.join("generator-sample");
    let _ = std::fs::remove_dir_all(&sample);
    sh(Command::new(bin)
        .args(["generate", "--patients", "2", "--out"])
        .arg(&sample))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sample)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut hasher = std::hash::DefaultHasher::new();
    for f in &files {
        f.file_name().hash(&mut hasher);
        std::fs::read(f)
            .map_err(|e| e.to_string())?
            .hash(&mut hasher);
    }
    let _ = std::fs::remove_dir_all(&sample);
    Ok(format!("{:016x}", hasher.finish()))
}

/// Imports `paths` into a fresh store; resources/s.
fn import(
    bin: &Path,
    data: &Path,
    db_env: &[(&str, String)],
    paths: &[PathBuf],
    resources: usize,
    opts: &Options,
    schema: &str,
) -> Result<f64, String> {
    let _ = std::fs::remove_dir_all(data);
    if db_env.iter().any(|(k, _)| *k == "IRONCHART_DATABASE_URL") {
        let _ = Command::new("psql")
            .args([
                &opts.database_url,
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ])
            .output();
    }
    std::fs::create_dir_all(data).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["import", "--quiet", "--data"])
        .arg(data)
        .args(paths);
    for (k, v) in db_env {
        cmd.env(k, v);
    }
    sh(&mut cmd)?;
    Ok(resources as f64 / started.elapsed().as_secs_f64())
}

/// Every page URL (relative) of a search, following its `next` links.
fn all_pages(base: &str, token: &str, first: &str) -> Result<Vec<String>, String> {
    let mut pages = vec![first.to_string()];
    let mut url = first.to_string();
    while pages.len() < 200 {
        let b = http_get(&format!("{base}{url}"), token)?;
        let next = b["link"].as_array().and_then(|links| {
            links
                .iter()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_string)
        });
        match next {
            Some(n) => {
                url = n.strip_prefix(base).unwrap_or(&n).to_string();
                pages.push(url.clone());
            }
            None => break,
        }
    }
    Ok(pages)
}

fn load(
    opts: &Options,
    server: &Server,
    token: &str,
    work: &Path,
    paths: &[String],
) -> Result<WrkResult, String> {
    let script = work.join("paths.lua");
    write_script(&script, token, paths)?;
    let warm = Options {
        duration: 1,
        ..clone_opts(opts)
    };
    let _ = wrk(&warm, &server.base, Some(&script));
    wrk(opts, &server.base, Some(&script))
}

/// One line measured on every backend: `rounds` rounds in which the backends take turns
/// (each warmed up before its first), each backend's figure the round with its median rate.
/// A single round of a few seconds moved a line's ratio between the backends by ten points
/// and more from one run to the next on this shared machine.
fn load_in_turns(
    opts: &Options,
    rounds: usize,
    servers: &[Running],
    work: &Path,
    paths: &[Vec<String>],
) -> Result<Vec<WrkResult>, String> {
    let mut runs: Vec<Vec<WrkResult>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, s) in servers.iter().enumerate() {
            let r = if round == 0 {
                load(opts, &s.server, &s.token, work, &paths[i])?
            } else {
                let script = work.join("paths.lua");
                write_script(&script, &s.token, &paths[i])?;
                wrk(opts, &s.server.base, Some(&script))?
            };
            runs[i].push(r);
        }
    }
    Ok(runs
        .into_iter()
        .map(|mut rs| {
            rs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
            rs.swap_remove(rs.len() / 2)
        })
        .collect())
}

pub fn run(root: &Path, opts: &Options) -> Result<(), String> {
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk is needed: apt-get install wrk".into());
    }
    eprintln!("building ironchart (release)…");
    sh(Command::new("cargo")
        .current_dir(root)
        .args(["build", "--release", "-p", "ironchart"]))?;
    let bin = root.join("target/release/ironchart");
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    // What the generator writes now: a cohort or an import made by an older one is made again.
    let fingerprint = generator_fingerprint(&bin, &work)?;
    let made_by_now =
        |marker: &Path| std::fs::read_to_string(marker).is_ok_and(|f| f.trim() == fingerprint);
    let mut measured: Vec<Measured> = Vec::new();
    let mut imports: Vec<(usize, String, f64, Option<f64>, usize)> = Vec::new();
    let mut files = Vec::new();

    for &patients in &opts.patients {
        let cohort = work.join(format!("cohort-{patients}"));
        if !made_by_now(&cohort.join("done")) {
            eprintln!("generating {patients} patients…");
            let _ = std::fs::remove_dir_all(&cohort);
            sh(Command::new(&bin)
                .args(["generate", "--patients", &patients.to_string(), "--out"])
                .arg(&cohort))?;
            std::fs::write(cohort.join("done"), &fingerprint).map_err(|e| e.to_string())?;
        }
        files = std::fs::read_dir(&cohort)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        files.sort();
        let resources = count_lines(&files);
        let bundles = work.join(format!("bundles-{patients}"));
        if opts.bundles && !made_by_now(&bundles.join("done")) {
            eprintln!("writing {patients} per-patient Bundles…");
            write_bundles(&files, &bundles)?;
            std::fs::write(bundles.join("done"), &fingerprint).map_err(|e| e.to_string())?;
        }

        let mut servers: Vec<Running> = Vec::new();
        for backend in &opts.backends {
            let data = work.join(format!("data-{backend}-{patients}"));
            let schema = format!("bench_{patients}");
            let env_for = |schema: &str| -> Vec<(&str, String)> {
                if backend == "postgres" {
                    vec![
                        ("IRONCHART_DATABASE_URL", opts.database_url.clone()),
                        ("IRONCHART_DATABASE_SCHEMA", schema.to_string()),
                    ]
                } else {
                    vec![]
                }
            };
            let db_env = env_for(&schema);
            let imported = data.join("imported");
            if !(opts.reuse && made_by_now(&imported)) {
                eprintln!("[{backend} {patients}] importing {resources} resources (NDJSON)…");
                let ndjson = import(&bin, &data, &db_env, &files, resources, opts, &schema)?;
                std::fs::write(&imported, &fingerprint).map_err(|e| e.to_string())?;
                let mut from_bundles = None;
                if opts.bundles {
                    eprintln!("[{backend} {patients}] importing them as per-patient Bundles…");
                    let bdata = work.join(format!("data-{backend}-{patients}-bundles"));
                    let bschema = format!("bench_{patients}_bundles");
                    let bundle_files: Vec<PathBuf> = vec![bundles.clone()];
                    from_bundles = Some(import(
                        &bin,
                        &bdata,
                        &env_for(&bschema),
                        &bundle_files,
                        resources,
                        opts,
                        &bschema,
                    )?);
                    let _ = std::fs::remove_dir_all(&bdata);
                }
                eprintln!(
                    "[{backend} {patients}] NDJSON {ndjson:.0}/s, Bundles {}",
                    from_bundles.map_or("-".into(), |b| format!("{b:.0}/s"))
                );
                imports.push((patients, backend.clone(), ndjson, from_bundles, resources));
            }

            servers.push(Running::start(&bin, &data, &db_env, opts, backend)?);
        }

        // Every line is measured on each backend in turn, so that a ratio between backends is
        // taken at one moment: the machine's speed drifts by more than the differences sought
        // over the minutes a backend's whole run takes.
        let mut record = |backend: &str, label: String, target: Target, r: WrkResult, counted| {
            let line = format!(
                "[{backend} {patients}] {label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms{}",
                r.rps,
                r.p50_ms,
                r.p99_ms,
                if r.errors > 0 {
                    format!(", {} errors", r.errors)
                } else {
                    String::new()
                }
            );
            eprintln!("{line}");
            measured.push(Measured {
                patients,
                backend: backend.to_string(),
                label,
                target,
                r,
                counted,
            });
        };
        for template in US_CORE {
            let paths: Vec<Vec<String>> = servers.iter().map(|s| s.paths(template)).collect();
            let rs = load_in_turns(opts, opts.rounds, &servers, &work, &paths)?;
            for (s, r) in servers.iter().zip(rs) {
                record(&s.backend, template.to_string(), Target::Patient, r, None);
            }
        }
        for template in NEWEST_FIRST {
            let mut paths = Vec::new();
            for s in &servers {
                let mut own = Vec::new();
                for (i, sample) in s.samples.iter().take(20).enumerate() {
                    own.extend(all_pages(
                        &s.server.base,
                        &s.token,
                        &fill(template, sample, &s.practitioner(i)),
                    )?);
                }
                paths.push(own);
            }
            let rs = load_in_turns(opts, opts.rounds, &servers, &work, &paths)?;
            for (s, r) in servers.iter().zip(rs) {
                record(
                    &s.backend,
                    format!("{template} (every page)"),
                    Target::Patient,
                    r,
                    None,
                );
            }
        }
        for template in POPULATION {
            let paths: Vec<Vec<String>> = servers
                .iter()
                .map(|s| vec![fill(template, &s.samples[0], &s.practitioner(0))])
                .collect();
            let rs = load_in_turns(opts, opts.rounds, &servers, &work, &paths)?;
            for (s, r) in servers.iter().zip(rs) {
                record(
                    &s.backend,
                    template.to_string(),
                    Target::Population,
                    r,
                    None,
                );
            }
        }
        // A count reads every match: at 16,000 patients one takes seconds under the load, so
        // its window is long enough for answers to come back, and a slow answer is measured
        // instead of dropped (an answer past the store's query time limit is an error).
        let counting = Options {
            duration: opts.duration.max(10),
            timeout: 30,
            ..clone_opts(opts)
        };
        for template in COUNTS {
            for s in &servers {
                let path = fill(template, &s.samples[0], &s.practitioner(0));
                let counted =
                    http_get(&format!("{}{path}", s.server.base), &s.token)?["total"].as_i64();
                let r = load(&counting, &s.server, &s.token, &work, &[path])?;
                record(&s.backend, template.to_string(), Target::Count, r, counted);
            }
        }
        drop(servers);
    }

    eprintln!("measuring the ceilings…");
    let h = http_ceiling(opts)?;
    let s = storage_ceiling(&files, &work)?;
    let report = render(opts, &measured, &imports, &h, s);
    let out = work.join("results.md");
    std::fs::write(&out, &report).map_err(|e| e.to_string())?;
    println!("{report}");
    eprintln!("written to {}", out.display());
    Ok(())
}

/// The resources of a searchset Bundle's entries.
fn resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
}

/// A backend's server under measurement, with what its lines are filled with.
struct Running {
    backend: String,
    server: Server,
    token: String,
    samples: Vec<Sample>,
    practitioners: Vec<(String, String)>,
}

impl Running {
    fn start(
        bin: &Path,
        data: &Path,
        db_env: &[(&str, String)],
        opts: &Options,
        backend: &str,
    ) -> Result<Running, String> {
        let server = start_server(bin, data, db_env)?;
        let token = token_for(bin, data, db_env, opts)?;
        let sample = http_get(&format!("{}/fhir/Patient?_count=200", server.base), &token)?;
        let samples: Vec<Sample> = resources(&sample)
            .map(|r| Sample {
                id: r["id"].as_str().unwrap_or_default().to_string(),
                family: r["name"][0]["family"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                birth: r["birthDate"].as_str().unwrap_or_default().to_string(),
                gender: r["gender"].as_str().unwrap_or_default().to_string(),
                mrn: r["identifier"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        if samples.is_empty() {
            return Err("no patients found to benchmark".into());
        }
        let prac = http_get(
            &format!("{}/fhir/Practitioner?_count=50", server.base),
            &token,
        )?;
        let practitioners: Vec<(String, String)> = resources(&prac)
            .map(|r| {
                (
                    r["name"][0]["family"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    r["identifier"][0]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        Ok(Running {
            backend: backend.to_string(),
            server,
            token,
            samples,
            practitioners,
        })
    }

    fn practitioner(&self, i: usize) -> (String, String) {
        self.practitioners[i % self.practitioners.len().max(1)].clone()
    }

    /// The template filled for each sample patient.
    fn paths(&self, template: &str) -> Vec<String> {
        self.samples
            .iter()
            .enumerate()
            .map(|(i, s)| fill(template, s, &self.practitioner(i)))
            .collect()
    }
}

/// A token for the measurements: the system's, or a user's of `--as ROLE`.
fn token_for(
    bin: &Path,
    data: &Path,
    db_env: &[(&str, String)],
    opts: &Options,
) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["admin", "token", "--ttl", "2h", "--data"])
        .arg(data);
    if let Some(role) = &opts.role {
        // A user of that role (created once), so that the measurement includes its policy.
        let username = format!("bench-{}", role.replace('_', "-"));
        let mut add = Command::new(bin);
        add.args(["admin", "user", "add", "--password-stdin", "--data"])
            .arg(data)
            .args(["--username", &username, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in db_env {
            add.env(k, v);
        }
        let mut child = add.spawn().map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"benchmark password 2026\n");
        }
        let _ = child.wait();
        cmd.args(["--user", &username]);
    }
    for (k, v) in db_env {
        cmd.env(k, v);
    }
    Ok(sh(&mut cmd)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**short**" }
}

/// The results against their targets: per cohort, one line per search with each backend; the
/// imports; the curve across cohorts; the ceilings.
fn render(
    opts: &Options,
    measured: &[Measured],
    imports: &[(usize, String, f64, Option<f64>, usize)],
    http: &WrkResult,
    storage: f64,
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "### Run of {} ({} cores; wrk -t{} -c{} -d{}s after a 1 s warm-up, {} round(s) per line with the backends taking turns, the median round's figures; counts one round of at least 10 s)\n\n",
        chrono_like_now(),
        cores,
        opts.threads,
        opts.connections,
        opts.duration,
        opts.rounds
    );
    if !imports.is_empty() {
        out.push_str("| import | backend | NDJSON | per-patient Bundles | Bundles / NDJSON (target ≥ 90 %) |\n| --- | --- | --- | --- | --- |\n");
        for (patients, backend, ndjson, bundles, resources) in imports {
            let ratio = bundles.map(|b| b / ndjson);
            out.push_str(&format!(
                "| {patients} patients, {resources} resources | {backend} | {ndjson:.0}/s | {} | {} |\n",
                bundles.map_or("—".into(), |b| format!("{b:.0}/s")),
                ratio.map_or("—".into(), |r| format!(
                    "{:.0} % {}",
                    (r * 100.0).floor(),
                    verdict(r >= 0.9)
                ))
            ));
        }
        out.push('\n');
    }
    let backends = &opts.backends;
    for &patients in &opts.patients {
        out.push_str(&format!(
            "#### {patients} patients\n\n| search | target | {} | {} |\n| --- | --- |{} --- |\n",
            backends.join(" | "),
            if backends.len() > 1 {
                "PostgreSQL / SQLite (target ≥ 70 %)"
            } else {
                "verdict"
            },
            " --- |".repeat(backends.len())
        ));
        let labels: Vec<&Measured> = measured
            .iter()
            .filter(|m| m.patients == patients && m.backend == backends[0])
            .collect();
        for first in labels {
            let cells: Vec<Option<&Measured>> = backends
                .iter()
                .map(|b| {
                    measured.iter().find(|m| {
                        m.patients == patients && &m.backend == b && m.label == first.label
                    })
                })
                .collect();
            let target = match first.target {
                Target::Patient => "≥ 3,000 req/s, p99 < 20 ms",
                Target::Population => "p50 < 10 ms",
                Target::Count => "≥ 1,000,000 matches/s",
            };
            let met = |m: &Measured| match m.target {
                Target::Patient => m.r.rps >= 3000.0 && m.r.p99_ms < 20.0 && m.r.errors == 0,
                Target::Population => m.r.p50_ms < 10.0 && m.r.errors == 0,
                Target::Count => count_rate(m) >= 1_000_000.0 && m.r.errors == 0,
            };
            let cell = |m: Option<&Measured>| match m {
                None => "—".to_string(),
                Some(m) => {
                    let rate = if m.target == Target::Count {
                        format!(", {:.0} matches/s", count_rate(m))
                    } else {
                        String::new()
                    };
                    format!(
                        "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms{rate}{} — {}",
                        m.r.rps,
                        m.r.p50_ms,
                        m.r.p99_ms,
                        if m.r.errors > 0 {
                            format!(", {} errors", m.r.errors)
                        } else {
                            String::new()
                        },
                        verdict(met(m))
                    )
                }
            };
            let last = if backends.len() > 1 {
                match (cells[0], cells[1]) {
                    (Some(a), Some(b)) if a.r.rps > 0.0 => {
                        let r = b.r.rps / a.r.rps;
                        // Whole percents rounded down, so that 69.7 % reads as short.
                        format!("{:.0} % {}", (r * 100.0).floor(), verdict(r >= 0.7))
                    }
                    _ => "—".into(),
                }
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| `{}` | {target} | {} | {last} |\n",
                first.label.replace('|', "\\|"),
                cells
                    .iter()
                    .map(|c| cell(*c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        out.push('\n');
    }
    if opts.patients.len() > 1 {
        let (small, large) = (opts.patients[0], opts.patients[opts.patients.len() - 1]);
        out.push_str(&format!(
            "#### The curve: p50 at {large} patients against {small} (target ≤ 1.5×)\n\n| search | backend | p50 at {small} | p50 at {large} | ratio |\n| --- | --- | --- | --- | --- |\n"
        ));
        for m in measured.iter().filter(|m| m.patients == small) {
            if let Some(l) = measured
                .iter()
                .find(|l| l.patients == large && l.backend == m.backend && l.label == m.label)
            {
                let ratio = l.r.p50_ms / m.r.p50_ms.max(0.001);
                // A line that answered nothing (or only errors) at either size has no curve.
                let answered = |r: &WrkResult| r.rps > 0.0 && r.errors == 0;
                let judged = if answered(&m.r) && answered(&l.r) {
                    format!("{ratio:.2}× {}", verdict(ratio <= 1.5))
                } else {
                    "no answers without errors: **short**".to_string()
                };
                out.push_str(&format!(
                    "| `{}` | {} | {:.2} ms | {:.2} ms | {judged} |\n",
                    m.label.replace('|', "\\|"),
                    m.backend,
                    m.r.p50_ms,
                    l.r.p50_ms,
                ));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Ceilings: a trivial axum handler {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms); raw JSON inserts into SQLite {storage:.0} rows/s.\n",
        http.rps, http.p50_ms, http.p99_ms
    ));
    out
}

/// Matches counted per second under the load: the count times the requests answered a second.
fn count_rate(m: &Measured) -> f64 {
    m.counted.unwrap_or(0) as f64 * m.r.rps
}

fn clone_opts(o: &Options) -> Options {
    Options {
        patients: o.patients.clone(),
        backends: o.backends.clone(),
        duration: o.duration,
        connections: o.connections,
        threads: o.threads,
        database_url: o.database_url.clone(),
        reuse: o.reuse,
        role: o.role.clone(),
        bundles: o.bundles,
        timeout: o.timeout,
        rounds: o.rounds,
    }
}

fn chrono_like_now() -> String {
    sh(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
