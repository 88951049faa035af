//! The `ironchart` command line: serve, demo, import, admin.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod error;
mod import;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the JSON-heavy work (parsing, validating, indexing resources) allocates a lot; it is
/// markedly faster than the system allocator here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONCHART_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ironchart=info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
