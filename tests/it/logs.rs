//! What the processes write to their logs, at `IRONCHART_LOG=debug`: never a patient's name,
//! a bearer token or a password — not when seeding, importing, managing users, or serving
//! searches by name, updates, refusals and errors.

use serde_json::{Value, json};

use crate::process::{Api, Db, Served, last_line, ok, run_input, wait_healthy};

const DEBUG: &[(&str, &str)] = &[("IRONCHART_LOG", "debug")];

/// Whether `word` occurs in `text` on its own (not inside a longer word).
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The output of the commands run so far: what ran, which stream, the text.
#[derive(Default)]
struct Outputs(Vec<(String, &'static str, String)>);

impl Outputs {
    /// Runs a command at debug level (with `stdin`), keeps its standard error (and, unless it
    /// prints secrets by design, its standard output) and returns the output.
    fn run(
        &mut self,
        args: &[&str],
        db: &Db,
        stdin: &str,
        stdout_has_secrets: bool,
    ) -> std::process::Output {
        let out = run_input(args, db, stdin, DEBUG);
        let what = args[..args.len().min(3)].join(" ");
        self.0.push((
            what.clone(),
            "stderr",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
        if !stdout_has_secrets {
            self.0.push((
                what,
                "stdout",
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        out
    }
}

fn family_names(bundle: &Value) -> Vec<String> {
    let mut names: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e["resource"]["name"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|n| n["family"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_names_tokens_or_passwords_sqlite() {
    debug_logs(Db::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_names_tokens_or_passwords_postgres() {
    if let Some(db) = Db::postgres() {
        debug_logs(db, true).await;
    }
}

/// PostgreSQL with the system token only (no user accounts), until the above runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_names_or_tokens_postgres_system_token() {
    if let Some(db) = Db::postgres() {
        debug_logs(db, false).await;
    }
}

/// Seeds, (with `accounts`) manages a user, serves traffic with the user's token (or the
/// system token) and checks every process's output.
async fn debug_logs(db: Db, accounts: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let data_s = data.to_str().unwrap();
    let mut outputs = Outputs::default();
    let mut passwords: Vec<String> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();

    // Seed: the demo (SQLite), or the demo's generator imported (PostgreSQL: the demo
    // command has no schema of its own).
    match &db {
        Db::Sqlite => {
            let out = outputs.run(
                &["demo", "--no-serve", "--patients", "3", "--data", data_s],
                &db,
                "",
                true,
            );
            ok(&out, "demo");
            tokens.push(last_line(&out));
            let users = std::fs::read_to_string(data.join("demo-users.txt")).unwrap();
            passwords.extend(
                users
                    .lines()
                    .filter_map(|l| l.split('\t').nth(2).map(str::to_string)),
            );
            assert_eq!(passwords.len(), 7, "{users}");
        }
        Db::Postgres { .. } => {
            let files = tempfile::tempdir().unwrap();
            let out = outputs.run(
                &[
                    "generate",
                    "--patients",
                    "3",
                    "--out",
                    files.path().to_str().unwrap(),
                ],
                &db,
                "",
                false,
            );
            ok(&out, "generate");
            let out = outputs.run(
                &[
                    "import",
                    "--quiet",
                    "--data",
                    data_s,
                    files.path().to_str().unwrap(),
                ],
                &db,
                "",
                false,
            );
            ok(&out, "import");
        }
    }
    let first_password = "Velvet-Thunder-Orchard-61";
    let second_password = "Copper-Lantern-Meadow-29";
    let user = ["--data", data_s, "--username", "logs-nurse"];
    if accounts {
        passwords.extend([first_password.to_string(), second_password.to_string()]);
        let out = outputs.run(
            &[
                &["admin", "user", "add"][..],
                &user,
                &["--role", "nurse", "--password-stdin"],
            ]
            .concat(),
            &db,
            &format!("{first_password}\n"),
            false,
        );
        ok(&out, "admin user add");
        let out = outputs.run(
            &[
                &["admin", "user", "reset-password"][..],
                &user,
                &["--password-stdin"],
            ]
            .concat(),
            &db,
            &format!("{second_password}\n"),
            false,
        );
        ok(&out, "admin user reset-password");
        // A refused password is not echoed either.
        let out = outputs.run(
            &[
                &["admin", "user", "reset-password"][..],
                &user,
                &["--password-stdin"],
            ]
            .concat(),
            &db,
            "logs-nurse-Refused-77\n",
            false,
        );
        assert!(!out.status.success());
        passwords.push("logs-nurse-Refused-77".into());
    }
    let out = outputs.run(&["admin", "token", "--data", data_s], &db, "", true);
    ok(&out, "admin token");
    let system = last_line(&out);
    tokens.push(system.clone());
    // The token the traffic uses: a nurse's, or the system token.
    let nurse = if accounts {
        let out = outputs.run(
            &["admin", "token", "--data", data_s, "--user", "logs-nurse"],
            &db,
            "",
            true,
        );
        ok(&out, "admin token --user");
        last_line(&out)
    } else {
        system.clone()
    };
    tokens.push(nurse.clone());
    let unknown = "ic_ThisTokenWasNeverIssuedButLooksRealEnough0123456789abcdef";
    tokens.push(unknown.to_string());

    let (mut served, server_log) = Served::start_logged(data, &db, DEBUG);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let (status, bundle) = api.get(&system, "Patient?_count=100").await;
    assert_eq!(status, 200, "{bundle}");
    let mut families = family_names(&bundle);
    assert!(families.len() >= 3, "{db:?}: {families:?}");

    // A patient of our own, then the kind of traffic a clinic makes.
    let own = api
        .create(
            &nurse,
            json!({"resourceType": "Patient", "name": [{"family": "Zwingelberger", "given": ["Ottilie"]}]}),
        )
        .await;
    families.push("Zwingelberger".into());
    let patients: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    for family in &families {
        for path in [
            format!("Patient?family={family}"),
            format!("Patient?name={family}"),
            format!("Patient?family:exact={family}&_count=5"),
            format!("Observation?subject:Patient.family={family}&_count=5"),
        ] {
            let (status, body) = api.get(&nurse, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        // Refused and failing requests that carry the name.
        let (status, _) = api
            .get(&nurse, &format!("Patient?family:nonsense={family}"))
            .await;
        assert_eq!(status, 400);
        let (status, _) = api.get(unknown, &format!("Patient?family={family}")).await;
        assert_eq!(status, 401);
        let (status, _) = api
            .post(
                &nurse,
                "Patient",
                &json!({"resourceType": "Patient", "name": [{"family": family}], "birthDate": "not a date"}),
            )
            .await;
        assert!((400..500).contains(&status), "{status}");
    }
    for p in &patients {
        let id = p["id"].as_str().unwrap();
        let (status, _) = api.get(&nurse, &format!("Patient/{id}")).await;
        assert_eq!(status, 200);
        let (status, body) = api.put(&nurse, &format!("Patient/{id}"), p).await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = api.get(&nurse, &format!("Patient/{id}/_history")).await;
        assert_eq!(status, 200);
    }
    let (status, _) = api.get(&nurse, &format!("Patient/{own}")).await;
    assert_eq!(status, 200);

    let out = outputs.run(
        &["admin", "revoke-token", "--data", data_s],
        &db,
        &format!("{nurse}\n"),
        false,
    );
    ok(&out, "admin revoke-token");
    drop(api);
    assert!(served.interrupt().success());
    let server_text = String::from_utf8_lossy(&server_log.wait_bytes()).into_owned();
    assert!(
        server_text.contains("DEBUG"),
        "{db:?}: the server logs at debug level: {server_text}"
    );
    outputs.0.push(("serve".into(), "stderr", server_text));

    let mut leaks = Vec::new();
    for (what, stream, text) in &outputs.0 {
        for family in &families {
            if has_word(text, family) {
                leaks.push(format!("{what} ({stream}): the patient name {family}"));
            }
        }
        for token in &tokens {
            if text.contains(token.as_str()) {
                leaks.push(format!("{what} ({stream}): a bearer token"));
            }
        }
        for password in &passwords {
            if text.contains(password.as_str()) {
                leaks.push(format!("{what} ({stream}): a password"));
            }
        }
    }
    assert!(leaks.is_empty(), "{db:?}:\n{}", leaks.join("\n"));
}

#[test]
fn whole_words() {
    assert!(has_word("patient Lee read", "Lee"));
    assert!(has_word("Lee", "Lee"));
    assert!(!has_word("Sleep", "Lee"));
    assert!(!has_word("Leeds", "Lee"));
}
