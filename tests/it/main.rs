//! The `ironchart` command line as a process: serve, demo, import, admin token, and failure
//! modes (newer schema, unwritable directory, port in use, `kill -9`); user administration,
//! the audit log's verification, encryption at rest, what the logs may hold, and the sign-in
//! pages in a real browser.

// Test code: its helpers (outside `#[test]` functions) may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod browser;
mod cli;
mod clients;
mod encryption;
mod logs;
mod users;

mod process;
mod tls;
