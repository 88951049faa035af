//! The demo's users: one per role, with random passwords kept (for the demo only) in
//! `DATA/demo-users.txt`, readable by its owner alone, and printed at start.

use std::io::Write;
use std::path::Path;

use ironchart_records::{LocalOperator, Records, Role};

use crate::error::CliError;

/// A demo sign-in: user name, role, password.
pub struct DemoUser {
    pub username: String,
    pub role: Role,
    pub password: String,
}

const FILE: &str = "demo-users.txt";

/// The Patient the demo's `patient` user is (the generator's first patient).
const DEMO_PATIENT: &str = "pat-000000";

/// Creates the demo users on first run (and remembers their passwords); reads them back later.
pub async fn ensure_demo_users(
    records: &Records,
    operator: &LocalOperator,
    dir: &Path,
) -> Result<Vec<DemoUser>, CliError> {
    let path = dir.join(FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let users: Vec<DemoUser> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split('\t');
                Some(DemoUser {
                    username: parts.next()?.to_string(),
                    role: Role::parse(parts.next()?).ok()?,
                    password: parts.next()?.to_string(),
                })
            })
            .collect();
        if users.len() == Role::ALL.len() {
            return Ok(users);
        }
    }
    let mut users = Vec::new();
    for role in Role::ALL {
        let username = ["demo-", &role.as_str().replace('_', "-")].concat();
        let password = random_password();
        let patient = (role == Role::Patient).then_some(DEMO_PATIENT);
        match records
            .add_user(operator, &username, &[role], patient, &password)
            .await
        {
            Ok(_) => {}
            Err(ironchart_records::RecordsError::Conflict(_)) => {
                records
                    .reset_password(operator, &username, &password)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        users.push(DemoUser {
            username,
            role,
            password,
        });
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&path).and_then(|mut f| {
        for u in &users {
            writeln!(f, "{}\t{}\t{}", u.username, u.role.as_str(), u.password)?;
        }
        Ok(())
    });
    if let Err(e) = written {
        tracing::warn!(
            "cannot remember the demo passwords in {}: {e}",
            path.display()
        );
    }
    Ok(users)
}

/// Four groups of five letters and digits: ~100 bits, easy to type.
fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let mut out = String::new();
    for group in 0..4 {
        if group > 0 {
            out.push('-');
        }
        for _ in 0..5 {
            out.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
        }
    }
    out
}

pub fn print_demo_users(users: &[DemoUser]) {
    println!("  Demo users (passwords also in the data directory's {FILE}):");
    for u in users {
        let mfa = if u.role.requires_mfa() {
            " (sets up MFA at first sign-in)"
        } else {
            ""
        };
        println!(
            "    {:<12} {:<20} {}{mfa}",
            u.role.as_str(),
            u.username,
            u.password
        );
    }
}
