//! `cargo xtask bench-pages`: the clinician's pages, timed as a signed-in physician sees them,
//! on SQLite: the chart summary, results and blood-pressure trend of the demo's 500-visit
//! patient (about 5,000 Observations), a visit, a growth chart, the home page, and patient
//! search among 100,000 patients. Target: p50 under 30 ms each (issue: the clinician app).
//!
//! The data: `ironchart demo --no-serve` (the cohort and its showcase), plus 100,000 more
//! Patients written here and loaded with `ironchart import`. Each page is requested one at a
//! time over a fresh connection (what one clinician waits for), after a few warm-up requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Options {
    pub patients: usize,
    pub extra_patients: usize,
    pub requests: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            patients: 200,
            extra_patients: 100_000,
            requests: 50,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            let number = |v: String| v.parse::<usize>().map_err(|_| format!("{a}: a number"));
            match a.as_str() {
                "--patients" => o.patients = number(value()?)?,
                "--search-patients" => o.extra_patients = number(value()?)?,
                "--requests" => o.requests = number(value()?)?.max(1),
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

/// One HTTP/1.1 exchange over a fresh connection: status, `Set-Cookie` values, body.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    cookie: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<String>, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nOrigin: http://127.0.0.1:{port}\r\n"
    );
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cookies = head
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect();
    Ok((status, cookies, rest.to_string()))
}

fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.find(&marker)
        .map(|i| &html[i + marker.len()..])
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in with a password (no second factor for a physician): the session cookie.
fn sign_in(port: u16, user: &str, password: &str) -> Result<String, String> {
    let (_, cookies, html) = exchange(port, "GET", "/login", "", None)?;
    let pre = cookies.join("; ");
    let csrf = form_value(&html, "csrf");
    let body = format!(
        "csrf={}&username={}&password={}",
        enc(&csrf),
        enc(user),
        enc(password)
    );
    let (status, cookies, _) = exchange(port, "POST", "/login", &pre, Some(&body))?;
    let session = cookies
        .into_iter()
        .find(|c| c.starts_with("__Host-ironchart=") && c.len() > "__Host-ironchart=".len())
        .ok_or(format!("sign-in failed ({status})"))?;
    Ok(session)
}

/// The 100,000 extra Patients, as NDJSON: names from short lists, distinct MRNs.
fn write_patients(path: &Path, count: usize) -> Result<(), String> {
    const FAMILY: [&str; 24] = [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Hernandez",
        "Lopez",
        "Gonzalez",
        "Wilson",
        "Anderson",
        "Thomas",
        "Taylor",
        "Moore",
        "Jackson",
        "Martin",
        "Lee",
        "Perez",
        "Thompson",
        "White",
    ];
    const GIVEN: [&str; 20] = [
        "James",
        "Mary",
        "Robert",
        "Patricia",
        "John",
        "Jennifer",
        "Michael",
        "Linda",
        "David",
        "Elizabeth",
        "William",
        "Barbara",
        "Richard",
        "Susan",
        "Joseph",
        "Jessica",
        "Thomas",
        "Sarah",
        "Charles",
        "Karen",
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
    for i in 0..count {
        let family = FAMILY[i % FAMILY.len()];
        let given = GIVEN[(i / FAMILY.len()) % GIVEN.len()];
        let year = 1930 + (i % 90);
        let month = 1 + (i / 90) % 12;
        let day = 1 + (i / 1080) % 28;
        writeln!(
            out,
            "{{\"resourceType\":\"Patient\",\"id\":\"bench-pat-{i:06}\",\"identifier\":[{{\"system\":\"urn:ironchart:demo:mrn\",\"value\":\"MRN-B{i:06}\"}}],\"name\":[{{\"family\":\"{family}\",\"given\":[\"{given}\"]}}],\"gender\":\"{}\",\"birthDate\":\"{year}-{month:02}-{day:02}\",\"telecom\":[{{\"system\":\"phone\",\"value\":\"555-01{:02}-{:04}\"}}]}}",
            if i % 2 == 0 { "female" } else { "male" },
            i % 100,
            i % 10_000
        )
        .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(root: &Path, opts: &Options) -> Result<(), String> {
    eprintln!("building ironchart (release)…");
    sh(Command::new("cargo")
        .current_dir(root)
        .args(["build", "--release", "-p", "ironchart"]))?;
    let bin = root.join("target/release/ironchart");
    let data = root.join(format!(
        "target/bench/pages-{}-{}",
        opts.patients, opts.extra_patients
    ));
    if !data.join("done").exists() {
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        eprintln!(
            "seeding the demo ({} patients and the showcase)…",
            opts.patients
        );
        sh(Command::new(&bin)
            .args([
                "demo",
                "--no-serve",
                "--patients",
                &opts.patients.to_string(),
                "--data",
            ])
            .arg(&data))?;
        if opts.extra_patients > 0 {
            eprintln!("loading {} more patients…", opts.extra_patients);
            let file = data.join("patients.ndjson");
            write_patients(&file, opts.extra_patients)?;
            sh(Command::new(&bin)
                .args(["import", "--quiet", "--data"])
                .arg(&data)
                .arg(&file))?;
            let _ = std::fs::remove_file(&file);
        }
        std::fs::write(data.join("done"), b"").map_err(|e| e.to_string())?;
    }
    let users = std::fs::read_to_string(data.join("demo-users.txt")).map_err(|e| e.to_string())?;
    let password = users
        .lines()
        .find_map(|l| l.strip_prefix("demo-physician\tphysician\t"))
        .ok_or("no demo physician")?
        .to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let mut server = Command::new(&bin)
        .args(["serve", "--data"])
        .arg(&data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rate-limit",
            "0",
        ])
        .env("IRONCHART_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = (|| {
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let cookie = sign_in(port, "demo-physician", &password)?;
        let pages = [
            (
                "chart summary, 500 visits / ~5,000 observations",
                "/patients/pat-long-history",
            ),
            (
                "results, 20 newest reports",
                "/patients/pat-long-history/results",
            ),
            (
                "blood pressure trend, 500 points",
                "/patients/pat-long-history/trend?code=http%3A%2F%2Floinc.org%7C85354-9",
            ),
            ("lists", "/patients/pat-long-history/lists"),
            (
                "a visit",
                "/patients/pat-long-history/visits/enc-long-history-499",
            ),
            ("growth chart", "/patients/pat-growth-girl/growth"),
            ("home: recent charts, unreviewed results", "/"),
            ("search: a family name (\"harris\")", "/patients?q=harris"),
            (
                "search: \"given fam\" (\"walter har\")",
                "/patients?q=walter%20har",
            ),
            (
                "search: \"family, given\" (\"smith, ja\")",
                "/patients?q=smith%2C%20ja",
            ),
            ("search: birth date", "/patients?q=1948-03-14"),
            ("search: MRN", "/patients?q=MRN-B054321"),
        ];
        let mut rows = Vec::new();
        for (what, path) in pages {
            for _ in 0..5 {
                let (status, _, body) = exchange(port, "GET", path, &cookie, None)?;
                if status != 200 {
                    return Err(format!(
                        "{path}: {status}\n{}",
                        body.chars().take(400).collect::<String>()
                    ));
                }
            }
            let mut times = Vec::with_capacity(opts.requests);
            for _ in 0..opts.requests {
                let t = Instant::now();
                exchange(port, "GET", path, &cookie, None)?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            rows.push((what, percentile(&times, 0.5), percentile(&times, 0.95)));
        }
        println!(
            "\nClinician pages, SQLite, {} demo patients + {} more for search, {} requests each \
             after 5 warm-ups, one at a time (release build):\n",
            opts.patients, opts.extra_patients, opts.requests
        );
        println!("| page | p50 ms | p95 ms | target p50 < 30 ms |");
        println!("| --- | ---: | ---: | --- |");
        for (what, p50, p95) in &rows {
            println!(
                "| {what} | {p50:.1} | {p95:.1} | {} |",
                if *p50 < 30.0 { "met" } else { "**missed**" }
            );
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
