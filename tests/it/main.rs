//! The `ironchart` command line as a process: serve, demo, import, admin token, and failure
//! modes (newer schema, unwritable directory, port in use, `kill -9`).

mod cli;
mod clients;

mod process;
