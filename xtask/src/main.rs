//! Maintainer tools for ironchart.
//!
//! `cargo xtask codegen [--definitions DIR]` reads the official FHIR R4 definitions (by default
//! `../shared/fhir-r4/definitions` relative to the workspace root) and writes the generated tables
//! of `crates/fhir/src/generated/`. The output is deterministic: running it twice gives the same
//! files, so the generated Rust is committed and a build needs nothing but cargo.
#![forbid(unsafe_code)]

mod bench;
mod codegen;
mod pages;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [ARGS…]                  run every test of the workspace (cargo nextest run --workspace
                                ARGS…), installing cargo-nextest first if it is missing; the
                                PostgreSQL cases run when IRONCHART_TEST_DATABASE_URL is set
  codegen [--definitions DIR]   generate crates/fhir/src/generated/ from the FHIR R4 definitions
                                (default DIR: ../shared/fhir-r4/definitions, relative to the
                                workspace root)
  bench [--patients N[,N…]] [--backend sqlite|postgres|both] [--duration SECS]
        [--connections N] [--threads N] [--database-url URL] [--reuse] [--as ROLE]
        [--no-bundles] [--rounds N]
                                load generated cohorts (NDJSON and per-patient Bundles) and
                                measure imports, every US Core search with bare ids, newest
                                first to the last page, and population searches with wrk,
                                against their targets, next to the HTTP and storage ceilings;
                                each line N rounds (3), the backends taking turns, the median
                                round's figures
  bench-pages [--patients N] [--search-patients N] [--requests N]
                                time the clinician's pages as a signed-in physician (SQLite):
                                the demo's 500-visit chart, results, trend, a visit, growth,
                                home, and patient search among N more patients (100,000)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Err("no command given".into());
    };
    match command.as_str() {
        "codegen" => {
            let mut definitions = root.join("../shared/fhir-r4/definitions");
            let mut rest = rest.iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--definitions" => {
                        let dir = rest
                            .next()
                            .ok_or("--definitions needs a directory argument")?;
                        definitions = PathBuf::from(dir);
                    }
                    "-h" | "--help" => {
                        print!("{USAGE}");
                        return Ok(());
                    }
                    other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
                }
            }
            let out = root.join("crates/fhir/src/generated");
            codegen::run(&definitions, &out)
        }
        "bench" => bench::run(&root, &bench::Options::parse(rest)?),
        "bench-pages" => pages::run(&root, &pages::Options::parse(rest)?),
        "test" => test(&root, rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

/// `cargo xtask test`: the test suite with cargo-nextest (each test in its own process, which
/// the tests that change process-wide state rely on), installed first if this machine lacks it.
fn test(root: &std::path::Path, rest: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_nextest = std::process::Command::new(&cargo)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_nextest {
        eprintln!("cargo-nextest is not installed: installing it (once) with cargo install…");
        let status = std::process::Command::new(&cargo)
            .args(["install", "--locked", "cargo-nextest"])
            .status()
            .map_err(|e| format!("cannot run cargo install: {e}"))?;
        if !status.success() {
            return Err("cargo install --locked cargo-nextest failed".into());
        }
    }
    let status = std::process::Command::new(&cargo)
        .current_dir(root)
        .args(["nextest", "run", "--workspace"])
        .args(rest)
        .status()
        .map_err(|e| format!("cannot run cargo nextest: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("some tests failed (see above)".into())
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.clone())
}
