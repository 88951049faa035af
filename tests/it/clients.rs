//! Standard FHIR clients we did not write talk to the server: Python `fhirpy`, with every
//! returned resource checked against the R4 models of Python `fhirclient`.
//!
//! The client libraries are installed (pinned, from PyPI) into a virtual environment under
//! `target/` the first time.

use std::path::PathBuf;
use std::process::Command;

use crate::process::{Db, Served, token, wait_healthy};

fn venv_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/client-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/clients/requirements.txt");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import fhirpy, fhirclient"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 -m venv failed (Debian: apt-get install python3-venv)"
        );
        let ok = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                requirements.to_str().unwrap(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install -r tests/clients/requirements.txt failed");
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpy_and_fhirclient_models() {
    let python = venv_python();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/fhir_client_check.py");
    let mut dbs = vec![Db::Sqlite];
    dbs.extend(Db::postgres());
    for db in dbs {
        let data = tempfile::tempdir().unwrap();
        let served = Served::start(data.path(), &db);
        wait_healthy(&served.base).await;
        let tok = token(data.path(), &db);
        let out = Command::new(&python)
            .args([
                script.to_str().unwrap(),
                &format!("{}/fhir", served.base),
                &tok,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{db:?}\n{stdout}\n{stderr}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(last.ends_with(" passed, 0 failed"), "{last}");
    }
}
