//! `cargo xtask bench`: loads a generated cohort and measures ironchart on this machine, next to
//! the machine's ceilings measured the same way.
//!
//! - bulk import (resources/s, full indexing) through `ironchart import`;
//! - read by id and two searches (requests/s, p50/p99) through `ironchart serve`, driven by `wrk`
//!   in a separate process;
//! - the HTTP ceiling: a trivial axum handler, same `wrk` settings;
//! - the storage ceiling: raw inserts of the same JSON into SQLite, same durability settings.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Options {
    pub patients: usize,
    pub backends: Vec<String>,
    pub duration: u64,
    pub connections: usize,
    pub threads: usize,
    pub database_url: String,
    pub reuse: bool,
    /// Measure with a token of a user of this role instead of the system token.
    pub role: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            patients: 10_000,
            backends: vec!["sqlite".into()],
            duration: 20,
            connections: 16,
            threads: 2,
            database_url: std::env::var("IRONCHART_TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            reuse: false,
            role: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--patients" => {
                    o.patients = value()?.parse().map_err(|_| "--patients: a number")?
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

fn http_get(url: &str, token: &str) -> Result<Value, String> {
    let out = sh(Command::new("curl").args([
        "-sf",
        "-H",
        &format!("Authorization: Bearer {token}"),
        url,
    ]))?;
    serde_json::from_str(&out).map_err(|e| e.to_string())
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

    let cohort = work.join(format!("cohort-{}", opts.patients));
    if !cohort.join("done").exists() {
        eprintln!("generating {} patients…", opts.patients);
        let _ = std::fs::remove_dir_all(&cohort);
        sh(Command::new(&bin)
            .args([
                "generate",
                "--patients",
                &opts.patients.to_string(),
                "--out",
            ])
            .arg(&cohort))?;
        std::fs::write(cohort.join("done"), b"").map_err(|e| e.to_string())?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cohort)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    let resources = count_lines(&files);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut report = format!(
        "### Run of {} ({} patients, {} resources; {} cores; wrk -t{} -c{} -d{}s)\n\n",
        chrono_like_now(),
        opts.patients,
        resources,
        cores,
        opts.threads,
        opts.connections,
        opts.duration
    );
    report.push_str("| what | backend | result |\n| --- | --- | --- |\n");

    for backend in &opts.backends {
        let data = work.join(format!("data-{backend}-{}", opts.patients));
        let schema = format!("bench_{}", opts.patients);
        let db_env: Vec<(&str, String)> = if backend == "postgres" {
            vec![
                ("IRONCHART_DATABASE_URL", opts.database_url.clone()),
                ("IRONCHART_DATABASE_SCHEMA", schema.clone()),
            ]
        } else {
            vec![]
        };
        let imported = data.join("imported");
        if !(opts.reuse && imported.exists()) {
            let _ = std::fs::remove_dir_all(&data);
            if backend == "postgres" {
                let _ = Command::new("psql")
                    .args([
                        &opts.database_url,
                        "-qc",
                        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                    ])
                    .output();
            }
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            eprintln!("[{backend}] importing {resources} resources…");
            let started = Instant::now();
            let mut cmd = Command::new(&bin);
            cmd.args(["import", "--quiet", "--data"])
                .arg(&data)
                .args(&files);
            for (k, v) in &db_env {
                cmd.env(k, v);
            }
            sh(&mut cmd)?;
            let secs = started.elapsed().as_secs_f64();
            let line = format!(
                "| import (full indexing) | {backend} | **{:.0} resources/s** ({resources} in {secs:.1} s) |\n",
                resources as f64 / secs
            );
            eprint!("{line}");
            report.push_str(&line);
            std::fs::write(&imported, b"").map_err(|e| e.to_string())?;
        }

        let server = start_server(&bin, &data, &db_env)?;
        let mut cmd = Command::new(&bin);
        cmd.args(["admin", "token", "--ttl", "2h", "--data"])
            .arg(&data);
        if let Some(role) = &opts.role {
            // A user of that role (created once), so that the measurement includes its policy.
            let username = format!("bench-{}", role.replace('_', "-"));
            let mut add = Command::new(&bin);
            add.args(["admin", "user", "add", "--password-stdin", "--data"])
                .arg(&data)
                .args(["--username", &username, "--role", role])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (k, v) in &db_env {
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
        for (k, v) in &db_env {
            cmd.env(k, v);
        }
        let token = sh(&mut cmd)?
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        let sample = http_get(&format!("{}/fhir/Patient?_count=1000", server.base), &token)?;
        let mut reads = Vec::new();
        let mut names = Vec::new();
        let mut obs = Vec::new();
        for e in sample["entry"].as_array().cloned().unwrap_or_default() {
            let id = e["resource"]["id"].as_str().unwrap_or_default().to_string();
            reads.push(format!("/fhir/Patient/{id}"));
            if let Some(f) = e["resource"]["name"][0]["family"].as_str() {
                let enc: String = f
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                names.push(format!("/fhir/Patient?family={enc}"));
            }
            obs.push(format!(
                "/fhir/Observation?subject=Patient/{id}&code=http%3A%2F%2Floinc.org%7C8867-4&date=ge2020-01-01"
            ));
        }
        if reads.is_empty() {
            return Err("no patients found to benchmark".into());
        }
        for (label, paths) in [
            ("read Patient by id", &reads),
            ("search Patient?family=", &names),
            ("search Observation?subject+code+date", &obs),
        ] {
            let script = work.join("paths.lua");
            write_script(&script, &token, paths)?;
            // Warm up, then measure.
            let warm = Options {
                duration: 3,
                ..clone_opts(opts)
            };
            let _ = wrk(&warm, &server.base, Some(&script));
            let r = wrk(opts, &server.base, Some(&script))?;
            let line = format!(
                "| {label} | {backend} | **{:.0} req/s**, p50 {:.2} ms, p99 {:.2} ms{} |\n",
                r.rps,
                r.p50_ms,
                r.p99_ms,
                if r.errors > 0 {
                    format!(", {} errors", r.errors)
                } else {
                    String::new()
                }
            );
            eprint!("{line}");
            report.push_str(&line);
        }
        drop(server);
    }

    eprintln!("measuring the ceilings…");
    let h = http_ceiling(opts)?;
    let line = format!(
        "| HTTP ceiling: trivial axum handler | — | **{:.0} req/s**, p50 {:.2} ms, p99 {:.2} ms |\n",
        h.rps, h.p50_ms, h.p99_ms
    );
    eprint!("{line}");
    report.push_str(&line);
    let s = storage_ceiling(&files, &work)?;
    let line =
        format!("| storage ceiling: raw JSON inserts into SQLite | sqlite | **{s:.0} rows/s** |\n");
    eprint!("{line}");
    report.push_str(&line);
    let out = work.join("results.md");
    std::fs::write(&out, &report).map_err(|e| e.to_string())?;
    println!("{report}");
    eprintln!("written to {}", out.display());
    Ok(())
}

fn clone_opts(o: &Options) -> Options {
    Options {
        patients: o.patients,
        backends: o.backends.clone(),
        duration: o.duration,
        connections: o.connections,
        threads: o.threads,
        database_url: o.database_url.clone(),
        reuse: o.reuse,
        role: o.role.clone(),
    }
}

fn chrono_like_now() -> String {
    sh(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
