//! User administration as the operator does it, `ironchart admin user …` and `admin token`,
//! against a running server in another process: roles give exactly their rights, refused inputs
//! say why, and disabling, changing roles or revoking ends access within the token cache's life.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::process::{
    Api, Db, Served, add_user, last_line, ok, run, run_input, token, user_token, wait_healthy,
};

/// How long another process may keep trusting a checked token (its cache lives 5 s).
const CACHE_LIMIT: Duration = Duration::from_millis(6500);

fn user_args<'a>(command: &'a str, data: &'a Path, username: &'a str) -> Vec<&'a str> {
    vec![
        "admin",
        "user",
        command,
        "--data",
        data.to_str().unwrap(),
        "--username",
        username,
    ]
}

/// `admin user add` with `extra` arguments and `stdin`; the output.
fn add(data: &Path, db: &Db, username: &str, extra: &[&str], stdin: &str) -> std::process::Output {
    let mut args = user_args("add", data, username);
    args.extend(extra);
    run_input(&args, db, stdin, &[])
}

/// The users as `admin user list` prints them: name, roles, flags.
fn list(data: &Path, db: &Db) -> Vec<(String, String, String)> {
    let out = run(
        &["admin", "user", "list", "--data", data.to_str().unwrap()],
        db,
    );
    ok(&out, "admin user list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut parts = l.split('\t');
            (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Polls `path` with `token` until it answers 401; how long that took (panics after `limit`).
async fn until_unauthorized(api: &Api, token: &str, path: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = api.get(token, path).await;
        if status == 401 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{path} still answered {status} {:?} after the change",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_each_role_get_their_rights_and_no_more_sqlite() {
    users_of_each_role_get_their_rights_and_no_more(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_each_role_get_their_rights_and_no_more_postgres() {
    if let Some(db) = Db::postgres() {
        users_of_each_role_get_their_rights_and_no_more(db).await;
    }
}

async fn users_of_each_role_get_their_rights_and_no_more(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let system = token(data, &db);
    let patient = api
        .create(
            &system,
            json!({"resourceType": "Patient", "name": [{"family": "Portal"}]}),
        )
        .await;
    let other = api
        .create(
            &system,
            json!({"resourceType": "Patient", "name": [{"family": "Else"}]}),
        )
        .await;
    let obs = api
        .create(
            &system,
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                   "subject": {"reference": format!("Patient/{patient}")}}),
        )
        .await;

    let users = [
        ("ada-admin", "admin"),
        ("phil-md", "physician"),
        ("nora-rn", "nurse"),
        ("fred-desk", "front_desk"),
        ("bill-pay", "billing"),
        ("audrey-audit", "auditor"),
    ];
    for (name, role) in users {
        add_user(data, &db, name, role, &format!("Grey-Heron-{role}-7319"));
    }
    let out = add(
        data,
        &db,
        "pat-portal",
        &[
            "--role",
            "patient",
            "--patient",
            &patient,
            "--password-stdin",
        ],
        "Grey-Heron-portal-7319\n",
    );
    ok(&out, "admin user add (patient)");

    let listed = list(data, &db);
    for (name, role) in users {
        let row = listed.iter().find(|(n, _, _)| n == name);
        assert!(
            row.is_some_and(|(_, roles, _)| roles == role),
            "{db:?}: {name} ({role}) not listed as such: {listed:?}"
        );
    }
    let portal = listed.iter().find(|(n, _, _)| n == "pat-portal");
    assert!(
        portal
            .is_some_and(|(_, roles, flags)| roles == "patient"
                && flags.contains(&format!("patient={patient}"))),
        "{db:?}: {listed:?}"
    );
    // Admins and auditors must enrol a second factor.
    let admin = listed.iter().find(|(n, _, _)| n == "ada-admin").unwrap();
    assert!(admin.2.contains("mfa-pending"), "{admin:?}");

    // What each role's token may do (status of GET path).
    let patient_path = format!("Patient/{patient}");
    let other_path = format!("Patient/{other}");
    let obs_path = format!("Observation/{obs}");
    let table: [(&str, &str, u16); 16] = [
        ("phil-md", &patient_path, 200),
        ("phil-md", &obs_path, 200),
        ("nora-rn", &obs_path, 200),
        ("fred-desk", &patient_path, 200),
        ("fred-desk", "Patient", 200),
        ("fred-desk", &obs_path, 403),
        ("fred-desk", "Observation", 403),
        ("bill-pay", &patient_path, 200),
        ("bill-pay", &obs_path, 403),
        ("ada-admin", &patient_path, 403),
        ("ada-admin", "Observation", 403),
        ("audrey-audit", &patient_path, 403),
        ("audrey-audit", &obs_path, 403),
        ("pat-portal", &patient_path, 200),
        ("pat-portal", &obs_path, 200),
        ("pat-portal", &other_path, 404),
    ];
    let mut tokens = std::collections::HashMap::new();
    let mut wrong = Vec::new();
    for (user, path, expected) in table {
        let tok = tokens
            .entry(user)
            .or_insert_with(|| user_token(data, &db, user, None))
            .clone();
        let (status, body) = api.get(&tok, path).await;
        if status != expected {
            wrong.push(format!(
                "{user} GET {path}: {status}, expected {expected}: {body}"
            ));
        }
    }
    // Writing outside the role is refused too.
    let (status, _) = api
        .post(
            &tokens["fred-desk"],
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        )
        .await;
    if status != 403 {
        wrong.push(format!(
            "fred-desk POST Observation: {status}, expected 403"
        ));
    }
    let (status, _) = api
        .post(
            &tokens["fred-desk"],
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Walkin"}]}),
        )
        .await;
    if status != 201 {
        wrong.push(format!("fred-desk POST Patient: {status}, expected 201"));
    }
    assert!(wrong.is_empty(), "{db:?}:\n{}", wrong.join("\n"));

    // A portal user's searches see their own record only.
    let (status, bundle) = api.get(&tokens["pat-portal"], "Patient").await;
    assert_eq!(status, 200, "{bundle}");
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, [patient.as_str()], "{db:?}: {bundle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_user_inputs_say_why_sqlite() {
    refused_user_inputs_say_why(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_user_inputs_say_why_postgres() {
    if let Some(db) = Db::postgres() {
        refused_user_inputs_say_why(db).await;
    }
}

async fn refused_user_inputs_say_why(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let system = token(data, &db);
    let patient = api
        .create(
            &system,
            json!({"resourceType": "Patient", "name": [{"family": "Linked"}]}),
        )
        .await;
    add_user(data, &db, "taken", "nurse", "Quiet-Harbour-5521");

    let good = "Quiet-Harbour-5521\n";
    let cases: Vec<(&str, Vec<&str>, &str, &str)> = vec![
        (
            "someone",
            vec!["--role", "surgeon", "--password-stdin"],
            good,
            "\"surgeon\" is not a role",
        ),
        (
            "someone",
            vec!["--role", "nurse", "--password-stdin"],
            "short-pw\n",
            "at least 12 characters",
        ),
        (
            "someone",
            vec!["--role", "nurse", "--password-stdin"],
            "q1w2e3r4t5y6\n",
            "most common passwords",
        ),
        (
            "someone",
            vec!["--role", "nurse", "--password-stdin"],
            "my-someone-password-99\n",
            "must not contain your username",
        ),
        (
            "someone",
            vec!["--role", "patient", "--password-stdin"],
            good,
            "--patient",
        ),
        (
            "someone",
            vec![
                "--role",
                "patient",
                "--patient",
                "no-such-pt",
                "--password-stdin",
            ],
            good,
            "there is no Patient/no-such-pt",
        ),
        (
            "someone",
            vec!["--role", "nurse", "--patient", &patient, "--password-stdin"],
            good,
            "only a patient user",
        ),
        (
            "someone",
            vec![
                "--role",
                "patient,nurse",
                "--patient",
                &patient,
                "--password-stdin",
            ],
            good,
            "cannot be combined",
        ),
        (
            "taken",
            vec!["--role", "nurse", "--password-stdin"],
            "Another-Fine-Pass-42\n",
            "there is already a user 'taken'",
        ),
        ("someone", vec!["--role", "nurse"], good, "--password-stdin"),
        (
            "someone",
            vec!["--role", "nurse", "--password-stdin"],
            "",
            "no password on standard input",
        ),
        (
            "Not A Name",
            vec!["--role", "nurse", "--password-stdin"],
            good,
            "a user name has 2 to 64 characters",
        ),
    ];
    let mut wrong = Vec::new();
    for (username, extra, stdin, expected) in &cases {
        let out = add(data, &db, username, extra, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains("error: ") || !stderr.contains(expected) {
            wrong.push(format!(
                "add {username} {extra:?} (stdin {stdin:?}): exit {:?}, stderr {stderr:?}, expected {expected:?}",
                out.status.code()
            ));
        }
    }
    assert!(wrong.is_empty(), "{db:?}:\n{}", wrong.join("\n"));
    let names: Vec<String> = list(data, &db).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["taken"], "{db:?}: only the valid user exists");

    // The other user commands refuse the same way.
    let data_s = data.to_str().unwrap();
    let out = run_input(
        &user_args("reset-password", data, "taken"),
        &db,
        "q1w2e3r4t5y6\n",
        &[],
    );
    assert!(!out.status.success());
    let mut args = user_args("reset-password", data, "taken");
    args.push("--password-stdin");
    let out = run_input(&args, &db, "q1w2e3r4t5y6\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("most common passwords"));
    let out = run_input(&args, &db, "Brand-New-Lantern-88\n", &[]);
    ok(&out, "reset-password");
    let out = run(&user_args("disable", data, "nobody-here"), &db);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no user 'nobody-here'"));
    let mut args = user_args("set-roles", data, "taken");
    args.extend(["--role", "wizard"]);
    let out = run(&args, &db);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"wizard\" is not a role"));
    let out = run(&user_args("reset-mfa", data, "taken"), &db);
    ok(&out, "reset-mfa");
    let out = run(
        &["admin", "token", "--data", data_s, "--user", "nobody-here"],
        &db,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no user 'nobody-here'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_are_never_wider_than_the_roles_sqlite() {
    token_scopes_are_never_wider_than_the_roles(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_are_never_wider_than_the_roles_postgres() {
    if let Some(db) = Db::postgres() {
        token_scopes_are_never_wider_than_the_roles(db).await;
    }
}

async fn token_scopes_are_never_wider_than_the_roles(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let data_s = data.to_str().unwrap();
    let served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let system = token(data, &db);
    let patient = api
        .create(
            &system,
            json!({"resourceType": "Patient", "name": [{"family": "Scoped"}]}),
        )
        .await;
    add_user(data, &db, "fred-desk", "front_desk", "Grey-Heron-desk-7319");

    for wider in [
        "user/Observation.rs",
        "user/Patient.cruds",
        "system/*.cruds",
    ] {
        let out = run(
            &[
                "admin",
                "token",
                "--data",
                data_s,
                "--user",
                "fred-desk",
                "--scopes",
                wider,
            ],
            &db,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("wider than"),
            "{db:?}: --scopes {wider}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ic_"),
            "no token printed"
        );
    }
    // Patient-context scopes need a linked Patient.
    let out = run(
        &[
            "admin",
            "token",
            "--data",
            data_s,
            "--user",
            "fred-desk",
            "--scopes",
            "patient/Patient.rs",
        ],
        &db,
    );
    assert!(!out.status.success());

    let narrow = user_token(data, &db, "fred-desk", Some("user/Patient.r"));
    let (status, body) = api.get(&narrow, &format!("Patient/{patient}")).await;
    assert_eq!(status, 200, "{db:?}: narrower token reads: {body}");
    let (status, _) = api.get(&narrow, "Patient").await;
    assert_eq!(status, 403, "{db:?}: no search in user/Patient.r");
    let (status, _) = api
        .put(
            &narrow,
            &format!("Patient/{patient}"),
            &json!({"resourceType": "Patient", "id": patient, "name": [{"family": "Changed"}]}),
        )
        .await;
    assert_eq!(status, 403, "{db:?}: no update in user/Patient.r");
    // The same user's full token may update.
    let full = user_token(data, &db, "fred-desk", None);
    let (status, body) = api
        .put(
            &full,
            &format!("Patient/{patient}"),
            &json!({"resourceType": "Patient", "id": patient, "name": [{"family": "Changed"}]}),
        )
        .await;
    assert_eq!(status, 200, "{db:?}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_changing_roles_and_revoking_end_access_in_a_running_server_sqlite() {
    disabling_changing_roles_and_revoking_end_access_in_a_running_server(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_changing_roles_and_revoking_end_access_in_a_running_server_postgres() {
    if let Some(db) = Db::postgres() {
        disabling_changing_roles_and_revoking_end_access_in_a_running_server(db).await;
    }
}

async fn disabling_changing_roles_and_revoking_end_access_in_a_running_server(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let data_s = data.to_str().unwrap();
    let served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let api = Api::new(&served);
    let system = token(data, &db);
    let patient = api
        .create(
            &system,
            json!({"resourceType": "Patient", "name": [{"family": "Access"}]}),
        )
        .await;
    let patient_path = format!("Patient/{patient}");
    add_user(data, &db, "nora-rn", "nurse", "Grey-Heron-nurse-7319");
    add_user(data, &db, "phil-md", "physician", "Grey-Heron-doctor-7319");
    add_user(data, &db, "fred-desk", "front_desk", "Grey-Heron-desk-7319");

    // Disable: the token (already checked, so cached by the server) stops working.
    let nurse = user_token(data, &db, "nora-rn", None);
    assert_eq!(api.get(&nurse, &patient_path).await.0, 200);
    ok(&run(&user_args("disable", data, "nora-rn"), &db), "disable");
    let took = until_unauthorized(&api, &nurse, &patient_path, CACHE_LIMIT).await;
    eprintln!("{db:?}: disabled user's token refused after {took:?}");
    let listed = list(data, &db);
    assert!(
        listed
            .iter()
            .any(|(n, _, f)| n == "nora-rn" && f.contains("disabled")),
        "{listed:?}"
    );
    let out = run(
        &["admin", "token", "--data", data_s, "--user", "nora-rn"],
        &db,
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is disabled"),
        "{db:?}: a disabled user gets no token"
    );
    // Enabling again does not bring the old token back; a new one works.
    ok(&run(&user_args("enable", data, "nora-rn"), &db), "enable");
    let fresh = user_token(data, &db, "nora-rn", None);
    assert_eq!(api.get(&fresh, &patient_path).await.0, 200);
    assert_eq!(api.get(&nurse, &patient_path).await.0, 401);

    // Set-roles: the old token ends; a new token has the new role's rights.
    let doctor = user_token(data, &db, "phil-md", None);
    assert_eq!(api.get(&doctor, "Observation").await.0, 200);
    let mut args = user_args("set-roles", data, "phil-md");
    args.extend(["--role", "front_desk"]);
    ok(&run(&args, &db), "set-roles");
    until_unauthorized(&api, &doctor, "Observation", CACHE_LIMIT).await;
    let demoted = user_token(data, &db, "phil-md", None);
    assert_eq!(api.get(&demoted, "Observation").await.0, 403);
    assert_eq!(api.get(&demoted, &patient_path).await.0, 200);
    let listed = list(data, &db);
    assert!(
        listed
            .iter()
            .any(|(n, r, _)| n == "phil-md" && r == "front_desk"),
        "{listed:?}"
    );

    // Revoke-token (the token on standard input).
    let desk = user_token(data, &db, "fred-desk", None);
    assert_eq!(api.get(&desk, &patient_path).await.0, 200);
    let revoke = ["admin", "revoke-token", "--data", data_s];
    let out = run_input(&revoke, &db, &format!("{desk}\n"), &[]);
    ok(&out, "revoke-token");
    assert_eq!(last_line(&out), "revoked");
    until_unauthorized(&api, &desk, &patient_path, CACHE_LIMIT).await;
    let out = run_input(&revoke, &db, &format!("{desk}\n"), &[]);
    ok(&out, "revoke-token again");
    assert!(last_line(&out).contains("not live"), "{}", last_line(&out));
    // Other tokens are untouched; a revoked system token ends too.
    assert_eq!(api.get(&fresh, &patient_path).await.0, 200);
    let out = run_input(&revoke, &db, &format!("{system}\n"), &[]);
    ok(&out, "revoke-token (system)");
    until_unauthorized(&api, &system, &patient_path, CACHE_LIMIT).await;
    let out = run_input(&revoke, &db, "", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token on standard input"));
}
