//! HTTPS built in (`--tls-cert`/`--tls-key`), and the first-admin setup link a fresh server
//! prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::bin;

/// A self-signed certificate for 127.0.0.1, made with the `openssl` command.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// `curl -sk` of a URL: status line and headers, and whether it connected at all.
fn curl_headers(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-", "--max-time", "10", url])
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_lowercase())
}

#[test]
fn https_with_hsts_and_a_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let data = dir.path().join("data");
    let mut child = bin()
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--header-timeout",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut setup = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && setup.is_none() {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(b) = line.trim().strip_prefix("ironchart is serving on ") {
            base = Some(b.to_string());
        }
        if line.contains("/setup?token=") {
            setup = Some(line.trim().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let base = base.expect("serving line");
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let setup = setup.expect("a fresh server prints a setup link");
    assert!(
        setup.starts_with(&format!("{base}/setup?token=setup_")),
        "{setup}"
    );
    // Poll until the server answers.
    let mut headers = None;
    for _ in 0..200 {
        headers = curl_headers(&format!("{base}/healthz"));
        if headers.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let headers = headers.expect("HTTPS answers");
    assert!(headers.starts_with("http/"), "{headers}");
    assert!(headers.contains(" 200"), "{headers}");
    assert!(
        headers.contains("strict-transport-security: max-age="),
        "HSTS over TLS: {headers}"
    );
    // The setup page works over HTTPS; plain HTTP on the same port does not.
    let page = curl_headers(&setup).expect("setup page");
    assert!(page.contains(" 200"), "{page}");
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(base.replace("https://", "http://") + "/healthz")
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    // A client that never finishes its handshake is disconnected (--header-timeout).
    let patience = Duration::from_secs(30);
    assert!(
        crate::process::closed_by_server(&base, b"", patience),
        "a silent TLS client is disconnected"
    );
    assert!(
        crate::process::closed_by_server(&base, b"\x16\x03\x01", patience),
        "a stalled TLS handshake is cut off"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tls_files_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let out = bin()
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&bogus)
        .arg("--tls-key")
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
}
