//! Command-line options (each also an `IRONCHART_*` environment variable) and the commands.

use crate::error::CliError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ironchart_records::audit::VerifyReport as AuditReport;
use ironchart_records::{
    DatabaseConfig, LocalOperator, MasterKey, Records, Role, SecurityConfig, SessionPolicy,
    UserSummary,
};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "ironchart",
    version,
    about = "An open-source EMR and FHIR R4 server, secure by construction",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the FHIR API (and, later, the web app) from a data directory.
    Serve(ServeArgs),
    /// Seed a demo data directory with synthetic patients (once), then serve it.
    Demo(DemoArgs),
    /// Import FHIR Bundles (JSON) and Bulk Data NDJSON files.
    Import(ImportArgs),
    /// Write a synthetic cohort (the demo generator) as Bulk Data NDJSON, one file per type.
    Generate(GenerateArgs),
    /// Administration: users and access tokens.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Code lists (diagnoses, tests, drugs, vaccines) beyond the ones shipped.
    Terminology {
        #[command(subcommand)]
        command: TerminologyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerminologyCommand {
    /// Load a full release a site downloaded (the ICD-10-CM order or codes file, RxNorm's
    /// RXNCONSO.RRF, LOINC's Loinc.csv, CDC's cvx.txt), so that pages search every code.
    /// Kept under DATA/terminology/; the server reads it when it starts.
    Load {
        /// The data directory.
        #[arg(long, env = "IRONCHART_DATA")]
        data: PathBuf,
        /// The release files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// The data directory (the SQLite database lives here unless --database-url is given).
    #[arg(long, env = "IRONCHART_DATA")]
    pub data: PathBuf,
    /// A PostgreSQL URL (postgres://user@host/db); SQLite in the data directory when absent.
    #[arg(long, env = "IRONCHART_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A PostgreSQL schema to use instead of the default (created if missing).
    #[arg(long, env = "IRONCHART_DATABASE_SCHEMA", hide = true)]
    pub database_schema: Option<String>,
    /// The master key file (default: DATA/master.key, created on first start). In production
    /// keep it outside the data directory and its backups.
    #[arg(long, env = "IRONCHART_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "IRONCHART_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Public base URL of the server (default: http://LISTEN); the FHIR base is BASE/fhir.
    #[arg(long, env = "IRONCHART_BASE_URL")]
    pub base_url: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "IRONCHART_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
    /// How long one read or search may run in the database before it is stopped (answered 503
    /// with an OperationOutcome).
    #[arg(long, env = "IRONCHART_QUERY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// Largest resource other than a Binary, in bytes of JSON (larger ones are refused with 413).
    #[arg(long, env = "IRONCHART_MAX_RESOURCE_SIZE",
          default_value_t = ironchart_records::DEFAULT_RESOURCE_LIMIT,
          value_parser = clap::value_parser!(usize))]
    pub max_resource_size: usize,
    /// Requests per second allowed per client address (bursts up to twice that); 0 for no limit.
    #[arg(long, env = "IRONCHART_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "IRONCHART_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "IRONCHART_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A reverse proxy whose X-Forwarded-For is trusted for the client address (repeat or
    /// separate with commas). Without it, X-Forwarded-For is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "IRONCHART_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A web session ends after this long without activity.
    #[arg(long, env = "IRONCHART_SESSION_IDLE", default_value = "15m", value_parser = parse_duration)]
    pub session_idle: Duration,
    /// A web session ends this long after sign-in, active or not.
    #[arg(long, env = "IRONCHART_SESSION_LIFETIME", default_value = "12h", value_parser = parse_duration)]
    pub session_lifetime: Duration,
    /// Require two-step sign-in of every user (it is always required of admins and auditors).
    #[arg(long, env = "IRONCHART_MFA_FOR_ALL")]
    pub mfa_for_all: bool,
    /// Answer a read or search only once its audit entry is on the disk, not only written to
    /// the journal (slower; without it the entry reaches the disk within 10 ms). Every other
    /// entry always waits for the disk.
    #[arg(long, env = "IRONCHART_AUDIT_SYNC_READS")]
    pub audit_sync_reads: bool,
    /// A client has this long to finish its TLS handshake, and then to send each request's
    /// head (the first and each later one on a kept-alive connection); then it is disconnected.
    #[arg(long, env = "IRONCHART_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection that carries no traffic for this long, while no request of its is being
    /// worked on, is closed.
    #[arg(long, env = "IRONCHART_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones wait until one closes.
    #[arg(long, env = "IRONCHART_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// On shutdown (Ctrl-C), how long requests in flight have to finish.
    #[arg(long, env = "IRONCHART_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl HttpArgs {
    /// The limits connections are held to.
    pub fn server_limits(&self) -> ironchart_web::ServerLimits {
        ironchart_web::ServerLimits {
            header_read_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo data directory.
    #[arg(long, env = "IRONCHART_DATA", default_value = "ironchart-demo")]
    pub data: PathBuf,
    #[arg(long, env = "IRONCHART_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The master key file (default: DATA/master.key).
    #[arg(long, env = "IRONCHART_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// How many synthetic patients to generate on first run.
    #[arg(long, env = "IRONCHART_DEMO_PATIENTS", default_value_t = 300)]
    pub patients: usize,
    /// Seed of the deterministic generator.
    #[arg(long, env = "IRONCHART_DEMO_SEED", default_value_t = 2026)]
    pub seed: u64,
    /// Seed the data and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many synthetic patients.
    #[arg(long, default_value_t = 100)]
    pub patients: usize,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Directory to write `<Type>.ndjson` files into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Files or directories (searched for *.json and *.ndjson).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Do not show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print a new bearer access token (the token is the last line of output): for a user
    /// (never wider than their roles), or without --user the full-access system token.
    Token {
        #[command(flatten)]
        data: DataArgs,
        /// The user the token acts for.
        #[arg(long)]
        user: Option<String>,
        /// Narrower SMART scopes than the user's roles (space-separated), e.g.
        /// "user/Observation.rs user/Patient.rs".
        #[arg(long, requires = "user")]
        scopes: Option<String>,
        /// How long the token is valid (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Revoke an access token (read from standard input).
    RevokeToken {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Users and their roles.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
        /// admin, physician, nurse, front_desk, billing, auditor or patient (repeat or separate
        /// with commas for several).
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
        /// The Patient resource id a `patient` user is.
        #[arg(long)]
        patient: Option<String>,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Disable a user (their sessions and tokens end at once).
    Disable {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled (or locked-out) user.
    Enable {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
    },
    /// Replace a user's roles (their sessions and tokens end).
    SetRoles {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Set a new password, read from standard input.
    ResetPassword {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user's second factor; they enrol again at their next sign-in.
    ResetMfa {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain and its signed checkpoints; exit 0 when intact, otherwise name
    /// the first bad entry.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start a new data key and re-seal every stored record under it, online, in batches.
    /// With --new-master-key-file, replace the master key as well.
    Rotate {
        #[command(flatten)]
        data: DataArgs,
        /// Replace the master key by this one (created, readable only by its owner, when the
        /// file does not exist). Afterwards only this key opens the database: restart every
        /// server with --master-key-file set to it.
        #[arg(long, value_name = "FILE")]
        new_master_key_file: Option<PathBuf>,
        /// Do not show a progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// `90s`, `30m`, `1h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 30m or 1h"))?;
    let unit_secs: u64 = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': use s, m, h or d")),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("'{text}' is too long"))?;
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

fn msg(s: impl Into<String>) -> CliError {
    CliError::Message(s.into())
}

/// Creates the data directory if needed and checks that we can write to it.
fn prepare_data_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        msg(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".ironchart-write-check");
    std::fs::write(&probe, b"ok").map_err(|e| {
        msg(format!(
            "the data directory {} is not writable: {e}",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The master key: the given file (which must exist), or DATA/master.key, created on first
/// start. The flag says whether it was just created.
fn master_key(dir: &Path, file: Option<&Path>) -> Result<(MasterKey, PathBuf, bool), CliError> {
    match file {
        Some(path) => {
            let key = MasterKey::load(path).map_err(|e| msg(e.to_string()))?;
            Ok((key, path.to_path_buf(), false))
        }
        None => {
            let path = dir.join("master.key");
            let (key, created) =
                MasterKey::load_or_create(&path).map_err(|e| msg(e.to_string()))?;
            if created {
                tracing::warn!(
                    "created a new master key at {}: back it up, and in production keep it outside the data directory (--master-key-file); without it the data cannot be read",
                    path.display()
                );
            }
            Ok((key, path, created))
        }
    }
}

/// Where the data directory keeps the audit checkpoints and journals.
fn security_config(dir: &Path, master_key: MasterKey, sync_reads: bool) -> SecurityConfig {
    SecurityConfig {
        master_key,
        checkpoint_file: Some(dir.join("audit-checkpoints.log")),
        journal_dir: dir.to_path_buf(),
        sync_reads,
    }
}

fn database_config(dir: &Path, url: Option<&str>, schema: Option<&str>) -> DatabaseConfig {
    match url {
        Some(url) => DatabaseConfig::Postgres {
            url: url.to_string(),
            schema: schema.map(str::to_string),
        },
        None => DatabaseConfig::Sqlite(dir.join("ironchart.sqlite3")),
    }
}

/// `keys rotate --new-master-key-file`: makes the key in `new_file` (created when missing) the
/// master key of the database; returns the new data-key generation.
async fn replace_master_key(data: &DataArgs, new_file: &Path) -> Result<u32, CliError> {
    prepare_data_dir(&data.data)?;
    let created_new = !new_file.exists();
    let new = if created_new {
        MasterKey::create(new_file).map_err(|e| msg(e.to_string()))?
    } else {
        MasterKey::load(new_file).map_err(|e| msg(e.to_string()))?
    };
    let forget_new = |e: CliError| {
        if created_new {
            let _ = std::fs::remove_file(new_file);
        }
        e
    };
    let (current, _, created) =
        master_key(&data.data, data.master_key_file.as_deref()).map_err(forget_new)?;
    if created {
        let _ = std::fs::remove_file(data.data.join("master.key"));
        return Err(forget_new(msg(
            "there is no master key to replace: give the one in use with --master-key-file",
        )));
    }
    let security = security_config(&data.data, current, false);
    eprintln!("Replacing the master key…");
    let config = database_config(
        &data.data,
        data.database_url.as_deref(),
        data.database_schema.as_deref(),
    );
    let generation = Records::replace_master_key(&config, security, new)
        .await
        .map_err(|e| forget_new(msg(e.to_string())))?;
    if created_new {
        eprintln!(
            "Created the new master key at {}: back it up now, apart from the data.",
            new_file.display()
        );
    }
    Ok(generation)
}

pub async fn open_records(data: &DataArgs) -> Result<(Records, LocalOperator), CliError> {
    open_records_with(data, false).await
}

/// As [`open_records`]; `sync_reads` as in [`SecurityConfig::sync_reads`].
pub async fn open_records_with(
    data: &DataArgs,
    sync_reads: bool,
) -> Result<(Records, LocalOperator), CliError> {
    open_records_at(
        &data.data,
        data.database_url.as_deref(),
        data.database_schema.as_deref(),
        data.master_key_file.as_deref(),
        sync_reads,
    )
    .await
}

pub async fn open_records_at(
    dir: &Path,
    url: Option<&str>,
    schema: Option<&str>,
    key_file: Option<&Path>,
    sync_reads: bool,
) -> Result<(Records, LocalOperator), CliError> {
    prepare_data_dir(dir)?;
    let config = database_config(dir, url, schema);
    let (master_key, key_path, created) = master_key(dir, key_file)?;
    let security = security_config(dir, master_key, sync_reads);
    Records::open_local(&config, security).await.map_err(|e| {
        if created {
            // The database was sealed with another key: the new file is of no use.
            let _ = std::fs::remove_file(&key_path);
        }
        match e {
            ironchart_records::RecordsError::Store(s) => {
                msg(format!("cannot open the database: {s}"))
            }
            ironchart_records::RecordsError::Config(m) if created => msg(format!(
                "the master key file {} is missing, and this database was sealed with a master key: start with --master-key-file ({m})",
                key_path.display()
            )),
            other => other.into(),
        }
    })
}

/// Reads a secret (a password, a token) from standard input: the first line.
fn read_stdin_secret(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| msg(format!("cannot read the {what} from standard input: {e}")))?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(msg(format!("no {what} on standard input")));
    }
    Ok(value)
}

fn parse_role_list(names: &[String]) -> Result<Vec<Role>, CliError> {
    names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| Role::parse(n.trim()).map_err(|e| msg(e.to_string())))
        .collect()
}

fn print_user(u: &UserSummary) {
    let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
    let mut flags = Vec::new();
    if u.disabled {
        flags.push("disabled".to_string());
    }
    if u.locked_until.is_some() {
        flags.push("locked".to_string());
    }
    flags.push(if u.mfa_enrolled {
        "mfa".to_string()
    } else if u.mfa_required {
        "mfa-pending".to_string()
    } else {
        "no-mfa".to_string()
    });
    if let Some(p) = &u.patient {
        flags.push(format!("patient={p}"));
    }
    println!("{}\t{}\t{}", u.username, roles.join(","), flags.join(" "));
}

async fn run_user(command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Add {
            data,
            username,
            roles,
            patient,
            password_stdin,
        } => {
            if !password_stdin {
                return Err(msg(
                    "give the password on standard input with --password-stdin (never as an argument)",
                ));
            }
            let roles = parse_role_list(&roles)?;
            let password = read_stdin_secret("password")?;
            let (records, operator) = open_records(&data).await?;
            let result = records
                .add_user(&operator, &username, &roles, patient.as_deref(), &password)
                .await;
            records.close().await;
            let user = result?;
            eprintln!("Created the user:");
            print_user(&user);
            Ok(())
        }
        UserCommand::List { data } => {
            let (records, operator) = open_records(&data).await?;
            let result = records.list_users(&operator).await;
            records.close().await;
            for u in result? {
                print_user(&u);
            }
            Ok(())
        }
        other => run_user_change(other).await,
    }
}

async fn run_user_change(command: UserCommand) -> Result<(), CliError> {
    let (data, outcome) = match command {
        UserCommand::Disable { data, username } => {
            let (records, operator) = open_records(&data).await?;
            let r = records.set_user_disabled(&operator, &username, true).await;
            (records, r)
        }
        UserCommand::Enable { data, username } => {
            let (records, operator) = open_records(&data).await?;
            let r = records.set_user_disabled(&operator, &username, false).await;
            (records, r)
        }
        UserCommand::SetRoles {
            data,
            username,
            roles,
        } => {
            let roles = parse_role_list(&roles)?;
            let (records, operator) = open_records(&data).await?;
            let r = records.set_roles(&operator, &username, &roles).await;
            (records, r)
        }
        UserCommand::ResetPassword {
            data,
            username,
            password_stdin,
        } => {
            if !password_stdin {
                return Err(msg(
                    "give the new password on standard input with --password-stdin",
                ));
            }
            let password = read_stdin_secret("password")?;
            let (records, operator) = open_records(&data).await?;
            let r = records
                .reset_password(&operator, &username, &password)
                .await;
            (records, r)
        }
        UserCommand::ResetMfa { data, username } => {
            let (records, operator) = open_records(&data).await?;
            let r = records.reset_mfa(&operator, &username).await;
            (records, r)
        }
        UserCommand::Add { .. } | UserCommand::List { .. } => {
            return Err(msg("not a change of a user"));
        }
    };
    data.close().await;
    print_user(&outcome?);
    Ok(())
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => {
            let (records, operator) =
                open_records_with(&args.data, args.http.audit_sync_reads).await?;
            serve(records, operator, &args.data.data, &args.http, None).await
        }
        Command::Demo(args) => {
            let (records, operator) = open_records_at(
                &args.data,
                args.database_url.as_deref(),
                None,
                args.master_key_file.as_deref(),
                false,
            )
            .await?;
            seed_demo(&records, &operator, args.patients, args.seed).await?;
            let token = records
                .issue_system_token(&operator, Duration::from_secs(12 * 3600))
                .await?;
            let users =
                crate::demo::users::ensure_demo_users(&records, &operator, &args.data).await?;
            if args.no_serve {
                crate::demo::users::print_demo_users(&users);
                println!("{token}");
                records.close().await;
                return Ok(());
            }
            serve(
                records,
                operator,
                &args.data,
                &args.http,
                Some((token, users)),
            )
            .await
        }
        Command::Import(args) => {
            let (records, operator) = open_records(&args.data).await?;
            let summary = crate::import::run(&records, &operator, &args.paths, !args.quiet).await;
            records.close().await;
            let summary = summary?;
            println!(
                "imported {} resources from {} files; {} failed",
                summary.imported, summary.files, summary.failed
            );
            if summary.failed > 0 {
                return Err(msg(format!(
                    "{} resources could not be imported (see above)",
                    summary.failed
                )));
            }
            Ok(())
        }
        Command::Generate(args) => generate(&args),
        Command::Terminology {
            command: TerminologyCommand::Load { data, files },
        } => load_terminology(&data, &files),
        Command::Admin { command } => run_admin(command).await,
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            let (records, _operator) = open_records(&data).await?;
            let report = records.verify_audit().await;
            records.close().await;
            match report? {
                AuditReport::Intact {
                    entries,
                    checkpoint,
                } => {
                    match checkpoint {
                        Some(seq) => println!(
                            "the audit log is intact: {entries} entries; the newest signed checkpoint (entry {seq}) matches"
                        ),
                        None => println!(
                            "the audit log is intact: {entries} entries (no signed checkpoint yet)"
                        ),
                    }
                    Ok(())
                }
                AuditReport::Broken { seq, problem } => Err(msg(format!(
                    "the audit log is NOT intact: first bad entry {seq}: {problem}"
                ))),
            }
        }
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    data,
                    new_master_key_file,
                    quiet,
                },
        } => {
            let replaced = match &new_master_key_file {
                Some(path) => Some(replace_master_key(&data, path).await?),
                None => None,
            };
            let data = DataArgs {
                master_key_file: new_master_key_file.or(data.master_key_file),
                ..data
            };
            let (records, operator) = open_records(&data).await?;
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {pos} versions checked, {msg} ({per_sec})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar
            };
            let progress = |done: u64, resealed: u64| {
                bar.set_position(done);
                bar.set_message(format!("{resealed} re-sealed"));
            };
            let result = match replaced {
                Some(generation) => {
                    eprintln!("Re-sealing everything under the new master key…");
                    records
                        .reseal_all(&operator, &progress)
                        .await
                        .map(|n| (generation, n))
                }
                None => {
                    eprintln!(
                        "Starting a new data key; waiting for running servers to pick it up…"
                    );
                    records.rotate_keys(&operator, &progress).await
                }
            };
            bar.finish_and_clear();
            records.close().await;
            let (generation, resealed) = result?;
            println!(
                "data key generation {generation} is current; {resealed} stored versions were re-sealed"
            );
            if let (Some(new), Some(_)) = (&data.master_key_file, replaced) {
                println!(
                    "the master key was replaced: from now on start ironchart with --master-key-file {} \
                     (the old key no longer opens this database; keep it only as long as you keep \
                     backups made before now)",
                    new.display()
                );
            }
            Ok(())
        }
    }
}

async fn run_admin(command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Token {
            data,
            user,
            scopes,
            ttl,
        } => {
            let (records, operator) = open_records(&data).await?;
            let result = match &user {
                None => records.issue_system_token(&operator, ttl).await,
                Some(name) => {
                    records
                        .issue_user_token(&operator, name, scopes.as_deref(), ttl)
                        .await
                }
            };
            records.close().await;
            let token = result?;
            match user {
                None => eprintln!(
                    "A full-access system token, valid for {}s. Keep it secret.",
                    ttl.as_secs()
                ),
                Some(name) => eprintln!(
                    "A token for {name}, valid for {}s. Keep it secret.",
                    ttl.as_secs()
                ),
            }
            println!("{token}");
            Ok(())
        }
        AdminCommand::RevokeToken { data } => {
            let token = read_stdin_secret("token")?;
            let (records, operator) = open_records(&data).await?;
            let result = records.revoke_token(&operator, &token).await;
            records.close().await;
            if result? {
                println!("revoked");
            } else {
                println!("the token was not live (unknown, expired or already revoked)");
            }
            Ok(())
        }
        AdminCommand::User { command } => run_user(command).await,
    }
}

async fn seed_demo(
    records: &Records,
    operator: &LocalOperator,
    patients: usize,
    seed: u64,
) -> Result<(), CliError> {
    if records.demo_seeded().await?.is_some() {
        eprintln!("Using the existing demo data.");
        return Ok(());
    }
    eprintln!("Generating {patients} synthetic patients (deterministic, seed {seed})…");
    let bar = indicatif::ProgressBar::new(patients as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} patients ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    records.set_bulk_mode(true).await?;
    let clinic = crate::demo::Clinic::new(seed);
    let mut failed = 0usize;
    let mut total = 0usize;
    let mut batch = clinic.resources();
    for index in 0..patients {
        batch.extend(crate::demo::generate_patient(index, seed, &clinic));
        bar.inc(1);
        if batch.len() >= 1000 || index + 1 == patients {
            total += batch.len();
            let outcomes = records.import(operator, std::mem::take(&mut batch)).await?;
            failed += outcomes.iter().filter(|o| o.is_err()).count();
        }
    }
    if !batch.is_empty() {
        total += batch.len();
        let outcomes = records.import(operator, batch).await?;
        failed += outcomes.iter().filter(|o| o.is_err()).count();
    }
    // The showcase: a 500-visit chart, children's growth, unreviewed results.
    let showcase = crate::demo::showcase::resources(seed);
    for chunk in showcase.chunks(1000) {
        total += chunk.len();
        let outcomes = records.import(operator, chunk.to_vec()).await?;
        failed += outcomes.iter().filter(|o| o.is_err()).count();
    }
    bar.finish_and_clear();
    if failed > 0 {
        return Err(msg(format!(
            "{failed} generated resources were refused; this is a bug"
        )));
    }
    records.mark_demo_seeded(operator, patients as u64).await?;
    eprintln!("Seeded {total} resources.");
    Ok(())
}

/// `ironchart generate`: the demo cohort as NDJSON files.
fn generate(args: &GenerateArgs) -> Result<(), CliError> {
    use std::collections::BTreeMap;
    use std::io::Write;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| msg(format!("cannot create {}: {e}", args.out.display())))?;
    let mut files: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    let mut write = |v: &serde_json::Value| -> Result<(), CliError> {
        let rt = v["resourceType"].as_str().unwrap_or("Unknown").to_string();
        let file = match files.entry(rt) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let path = args.out.join(format!("{}.ndjson", e.key()));
                let f = std::fs::File::create(&path)
                    .map_err(|err| msg(format!("cannot create {}: {err}", path.display())))?;
                e.insert(std::io::BufWriter::new(f))
            }
        };
        serde_json::to_writer(&mut *file, v).map_err(|e| msg(e.to_string()))?;
        file.write_all(b"\n").map_err(|e| msg(e.to_string()))
    };
    let clinic = crate::demo::Clinic::new(args.seed);
    let mut count = 0usize;
    for v in clinic.resources() {
        write(&v)?;
        count += 1;
    }
    for index in 0..args.patients {
        for v in crate::demo::generate_patient(index, args.seed, &clinic) {
            write(&v)?;
            count += 1;
        }
    }
    for (_, mut f) in files {
        f.flush().map_err(|e| msg(e.to_string()))?;
    }
    eprintln!("wrote {count} resources to {}", args.out.display());
    Ok(())
}

/// `ironchart terminology load`.
fn load_terminology(data: &std::path::Path, files: &[PathBuf]) -> Result<(), CliError> {
    for file in files {
        let f = std::fs::File::open(file)
            .map_err(|e| msg(format!("cannot read {}: {e}", file.display())))?;
        let mut input = std::io::BufReader::new(f);
        let release = ironchart_web::terminology::read_release(&file.to_string_lossy(), &mut input)
            .map_err(msg)?;
        let said = release.describe();
        ironchart_web::terminology::save_release(data, release)
            .map_err(|e| msg(format!("cannot write under {}: {e}", data.display())))?;
        println!("{}: loaded {said}", file.display());
    }
    println!("Restart the server to search the loaded codes.");
    Ok(())
}

async fn serve(
    records: Records,
    operator: LocalOperator,
    data_dir: &std::path::Path,
    http: &HttpArgs,
    demo: Option<(String, Vec<crate::demo::users::DemoUser>)>,
) -> Result<(), CliError> {
    let tls = match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => Some(ironchart_web::tls::acceptor(cert, key).map_err(msg)?),
        _ => None,
    };
    let limits = http.server_limits();
    limits.check().map_err(|e| msg(e.to_string()))?;
    let listener = TcpListener::bind(http.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            msg(format!(
                "cannot listen on {}: the port is already in use",
                http.listen
            ))
        } else {
            msg(format!("cannot listen on {}: {e}", http.listen))
        }
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| msg(format!("cannot read the listening address: {e}")))?;
    let base = http
        .base_url
        .clone()
        .unwrap_or_else(|| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{local}")
        })
        .trim_end_matches('/')
        .to_string();
    let mut config = ironchart_web::WebConfig::for_base(&base);
    config.body_limit = http.body_limit;
    config.rate_limit = Some(http.rate_limit);
    config.trusted_proxies = http.trusted_proxies.clone();
    config.tls = config.tls || tls.is_some();
    config.terminology = std::sync::Arc::new(
        ironchart_web::terminology::Terminology::for_data_dir(data_dir).map_err(|e| {
            msg(format!(
                "cannot read the code lists under {}: {e}",
                data_dir.join("terminology").display()
            ))
        })?,
    );
    let records = records
        .with_session_policy(SessionPolicy {
            idle: http.session_idle,
            lifetime: http.session_lifetime,
        })
        .with_resource_limit(http.max_resource_size)
        .with_query_timeout(http.query_timeout);
    records
        .set_mfa_for_everyone(&operator, http.mfa_for_all)
        .await?;
    // The operator's part ends here: what serves requests never holds it.
    drop(operator);
    let setup = records
        .issue_setup_token(Duration::from_secs(24 * 3600))
        .await?;
    let app = ironchart_web::router(records.clone(), config);
    println!("ironchart is serving on {base}");
    println!("  Sign in:      {base}/login");
    println!("  FHIR R4 API:  {base}/fhir   (CapabilityStatement: {base}/fhir/metadata)");
    if let Some(token) = setup {
        println!(
            "  No users yet. Create the first administrator with this one-time link (valid 24 hours):"
        );
        println!("    {base}/setup?token={token}");
    }
    if let Some((token, users)) = demo {
        crate::demo::users::print_demo_users(&users);
        println!("  Sign in to the API with this bearer token (full access, valid 12 hours):");
        println!("    curl -H 'Authorization: Bearer {token}' '{base}/fhir/Patient?_count=5'");
    } else {
        println!("  Get an API token with: ironchart admin token --data DIR");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tls {
        Some(acceptor) => ironchart_web::serve_tls(listener, acceptor, app, limits, shutdown).await,
        None => ironchart_web::serve(listener, app, limits, shutdown).await,
    }
    .map_err(|e| msg(format!("server error: {e}")))?;
    records.close().await;
    Ok(())
}
