//! Command-line options (each also an `IRONCHART_*` environment variable) and the commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ironchart_records::{Actor, DatabaseConfig, Records};
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
    /// Administration: access tokens (users and roles come next).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
    /// Requests per second allowed per client address (bursts up to twice that); 0 for no limit.
    #[arg(long, env = "IRONCHART_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
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
    /// Print a new bearer access token (the token is the last line of output).
    Token {
        #[command(flatten)]
        data: DataArgs,
        /// How long the token is valid (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
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
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{text}': use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Errors reported to the operator (already readable; printed as `error: …`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Records(#[from] ironchart_records::RecordsError),
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

pub async fn open_records(
    dir: &Path,
    url: Option<&str>,
    schema: Option<&str>,
) -> Result<Records, CliError> {
    prepare_data_dir(dir)?;
    let config = match url {
        Some(url) => DatabaseConfig::Postgres {
            url: url.to_string(),
            schema: schema.map(str::to_string),
        },
        None => DatabaseConfig::Sqlite(dir.join("ironchart.sqlite3")),
    };
    Records::open(&config).await.map_err(|e| match e {
        ironchart_records::RecordsError::Store(s) => msg(format!("cannot open the database: {s}")),
        other => other.into(),
    })
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => {
            let records = open_records(
                &args.data.data,
                args.data.database_url.as_deref(),
                args.data.database_schema.as_deref(),
            )
            .await?;
            serve(records, &args.http, None).await
        }
        Command::Demo(args) => {
            let records = open_records(&args.data, args.database_url.as_deref(), None).await?;
            seed_demo(&records, args.patients, args.seed).await?;
            let token = records
                .issue_system_token(Duration::from_secs(12 * 3600))
                .await?;
            if args.no_serve {
                println!("{token}");
                records.close().await;
                return Ok(());
            }
            serve(records, &args.http, Some(token)).await
        }
        Command::Import(args) => {
            let records = open_records(
                &args.data.data,
                args.data.database_url.as_deref(),
                args.data.database_schema.as_deref(),
            )
            .await?;
            let summary = crate::import::run(&records, &args.paths, !args.quiet).await;
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
        Command::Admin {
            command: AdminCommand::Token { data, ttl },
        } => {
            let records = open_records(
                &data.data,
                data.database_url.as_deref(),
                data.database_schema.as_deref(),
            )
            .await?;
            let token = records.issue_system_token(ttl).await?;
            records.close().await;
            eprintln!(
                "A full-access system token, valid for {}s. Keep it secret.",
                ttl.as_secs()
            );
            println!("{token}");
            Ok(())
        }
    }
}

async fn seed_demo(records: &Records, patients: usize, seed: u64) -> Result<(), CliError> {
    if records.setting("demo.seeded").await?.is_some() {
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
    let actor = Actor::local_operator();
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
            let outcomes = records.import(&actor, std::mem::take(&mut batch)).await?;
            failed += outcomes.iter().filter(|o| o.is_err()).count();
        }
    }
    if !batch.is_empty() {
        total += batch.len();
        let outcomes = records.import(&actor, batch).await?;
        failed += outcomes.iter().filter(|o| o.is_err()).count();
    }
    bar.finish_and_clear();
    if failed > 0 {
        return Err(msg(format!(
            "{failed} generated resources were refused; this is a bug"
        )));
    }
    records
        .set_setting("demo.seeded", &patients.to_string())
        .await?;
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

async fn serve(
    records: Records,
    http: &HttpArgs,
    demo_token: Option<String>,
) -> Result<(), CliError> {
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
        .unwrap_or_else(|| format!("http://{local}"))
        .trim_end_matches('/')
        .to_string();
    let config = ironchart_web::WebConfig {
        fhir_base: format!("{base}/fhir"),
        body_limit: http.body_limit,
        rate_limit: Some(http.rate_limit),
    };
    let app = ironchart_web::router(records.clone(), config);
    println!("ironchart is serving on {base}");
    println!("  FHIR R4 API:  {base}/fhir   (CapabilityStatement: {base}/fhir/metadata)");
    if let Some(token) = demo_token {
        println!("  Sign in to the API with this bearer token (valid 12 hours):");
        println!("    curl -H 'Authorization: Bearer {token}' '{base}/fhir/Patient?_count=5'");
    } else {
        println!("  Get an API token with: ironchart admin token --data DIR");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    ironchart_web::serve(listener, app, shutdown)
        .await
        .map_err(|e| msg(format!("server error: {e}")))?;
    records.close().await;
    Ok(())
}
