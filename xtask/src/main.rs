//! Maintainer tools for ironchart.
//!
//! `cargo xtask codegen [--definitions DIR]` reads the official FHIR R4 definitions (by default
//! `../shared/fhir-r4/definitions` relative to the workspace root) and writes the generated tables
//! of `crates/fhir/src/generated/`. The output is deterministic: running it twice gives the same
//! files, so the generated Rust is committed and a build needs nothing but cargo.
#![forbid(unsafe_code)]

mod bench;
mod codegen;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  codegen [--definitions DIR]   generate crates/fhir/src/generated/ from the FHIR R4 definitions
                                (default DIR: ../shared/fhir-r4/definitions, relative to the
                                workspace root)
  bench [--patients N[,N…]] [--backend sqlite|postgres|both] [--duration SECS]
        [--connections N] [--threads N] [--database-url URL] [--reuse] [--as ROLE]
        [--no-bundles]
                                load generated cohorts (NDJSON and per-patient Bundles) and
                                measure imports, every US Core search with bare ids, newest
                                first to the last page, and population searches with wrk,
                                against their targets, next to the HTTP and storage ceilings
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
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
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
