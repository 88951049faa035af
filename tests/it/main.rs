//! The `ironchart` command line as a process: serve, demo, import, admin token, and failure
//! modes (newer schema, unwritable directory, port in use, `kill -9`); user administration,
//! the audit log's verification, encryption at rest and what the logs may hold.

mod audit;
mod cli;
mod clients;
mod encryption;
mod logs;
mod users;

mod process;
mod tls;
