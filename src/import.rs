//! `ironchart import`: FHIR Bundles (JSON) and Bulk Data NDJSON files, through the records
//! service. One bad file, line or entry is reported with its location and does not stop the rest.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use ironchart_records::{Actor, BundleOutcome, LocalOperator, PreparedBatch, Records};
use serde_json::Value;

use crate::error::CliError;

/// Resources written per database transaction.
const BATCH: usize = 1000;
/// Resources of per-patient transaction Bundles written in one database transaction: more than
/// [`BATCH`], for a patient's resources of every type touch many more index pages than as many
/// resources of one type (an NDJSON file), and a transaction writes each page it touched once.
const BUNDLE_BATCH: usize = 5000;

#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub imported: usize,
    pub failed: usize,
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|e| {
                    CliError::Message(format!("cannot read {}: {e}", dir.display()))
                })?;
                let mut found: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                found.sort();
                for f in found {
                    if f.is_dir() {
                        stack.push(f);
                    } else if matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("json" | "ndjson")
                    ) {
                        files.push(f);
                    }
                }
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(CliError::Message(format!("{} does not exist", p.display())));
        }
    }
    Ok(files)
}

/// A batch being written in the background, with the locations of its resources.
type InFlight = tokio::task::JoinHandle<(
    Vec<String>,
    Result<Vec<ironchart_records::ImportOutcome>, ironchart_records::RecordsError>,
)>;

struct Importer<'a> {
    records: &'a Records,
    actor: Actor,
    bar: ProgressBar,
    summary: Summary,
    /// The batch being written while the next one is parsed and validated.
    in_flight: Option<InFlight>,
    /// Transaction Bundles waiting to be validated and written together: each one's location
    /// and resources.
    bundles: Vec<(String, Vec<Value>)>,
    /// How many resources they hold.
    bundled: usize,
}

impl Importer<'_> {
    fn report(&mut self, location: &str, problem: &str) {
        self.summary.failed += 1;
        self.bar.suspend(|| eprintln!("{location}: {problem}"));
    }

    /// Validates a batch, then (once the previous batch is written) starts writing it.
    async fn flush(&mut self, batch: &mut Vec<(String, Value)>) -> Result<(), CliError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write_bundles().await?;
        let (locations, values): (Vec<String>, Vec<Value>) =
            std::mem::take(batch).into_iter().unzip();
        let prepared = self.records.prepare_import(values).await;
        self.wait().await?;
        self.start_writing(prepared, locations);
        Ok(())
    }

    /// Starts writing a validated batch (the one before it written already), with the location
    /// of each of its resources for the report.
    fn start_writing(&mut self, prepared: PreparedBatch, locations: Vec<String>) {
        let records = self.records.clone();
        let actor = self.actor.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let outcomes = records.import_prepared(&actor, prepared).await;
            (locations, outcomes)
        }));
    }

    /// Validates the transaction Bundles waiting (all at once, on every core) and writes the
    /// valid ones together, after the batch in flight. A Bundle with one invalid resource is
    /// reported and nothing of it is written.
    async fn write_bundles(&mut self) -> Result<(), CliError> {
        if self.bundles.is_empty() {
            return Ok(());
        }
        let bundles = std::mem::take(&mut self.bundles);
        self.bundled = 0;
        let lens: Vec<usize> = bundles.iter().map(|(_, r)| r.len()).collect();
        let mut all = Vec::with_capacity(lens.iter().sum());
        let mut places = Vec::with_capacity(bundles.len());
        for (location, resources) in bundles {
            places.push(location);
            all.extend(resources);
        }
        let prepared = self.records.prepare_import(all).await;
        let mut good: Option<PreparedBatch> = None;
        let mut locations = Vec::new();
        for (part, location) in prepared.split(&lens).into_iter().zip(places) {
            if let Some((i, e)) = part.first_error() {
                let problem = format!("transaction rolled back: entry[{i}]: {}", describe(e));
                self.report(&location, &problem);
                continue;
            }
            locations.extend(std::iter::repeat_n(location, part.len()));
            match &mut good {
                Some(batch) => batch.append(part),
                None => good = Some(part),
            }
        }
        self.wait().await?;
        let Some(prepared) = good else {
            return Ok(());
        };
        self.start_writing(prepared, locations);
        Ok(())
    }

    /// A transaction Bundle of PUTs and plain POSTs, written like NDJSON: validated whole (one
    /// bad resource and nothing of the Bundle is written), then written with others in one
    /// database transaction. Any other Bundle is given back.
    async fn bundle_as_import(
        &mut self,
        location: &str,
        value: Value,
    ) -> Result<Option<Value>, CliError> {
        let resources = match ironchart_records::transaction_into_resources(value) {
            Ok(resources) => resources,
            Err(bundle) => return Ok(Some(bundle)),
        };
        self.bundled += resources.len();
        self.bundles.push((location.to_string(), resources));
        if self.bundled >= BUNDLE_BATCH {
            self.write_bundles().await?;
        }
        Ok(None)
    }

    /// Waits for the batch in flight and reports its outcomes.
    async fn wait(&mut self) -> Result<(), CliError> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        let (locations, outcomes) = handle
            .await
            .map_err(|e| CliError::Message(format!("import task failed: {e}")))?;
        for (location, outcome) in locations.iter().zip(outcomes?) {
            match outcome {
                Ok(_) => self.summary.imported += 1,
                Err(e) => self.report(location, &describe(&e)),
            }
        }
        Ok(())
    }

    async fn ndjson(&mut self, path: &Path) -> Result<(), CliError> {
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::Message(format!("cannot open {}: {e}", path.display())))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut batch = Vec::with_capacity(BATCH);
        for (i, line) in reader.split(b'\n').enumerate() {
            let location = format!("{}:{}", path.display(), i + 1);
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    self.report(&location, &format!("read error: {e}"));
                    break;
                }
            };
            self.bar.inc(line.len() as u64 + 1);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(&line) {
                Ok(v) => batch.push((location, v)),
                Err(e) => self.report(&location, &format!("not valid JSON: {e}")),
            }
            if batch.len() >= BATCH {
                self.flush(&mut batch).await?;
            }
        }
        self.flush(&mut batch).await
    }

    async fn json(&mut self, path: &Path) -> Result<(), CliError> {
        let location = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.report(&location, &format!("cannot read: {e}"));
                return Ok(());
            }
        };
        self.bar.inc(bytes.len() as u64);
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.report(&location, &format!("not valid JSON: {e}"));
                return Ok(());
            }
        };
        if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            let mut batch = vec![(location, value)];
            return self.flush(&mut batch).await;
        }
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // GET entries are not run by an import.
        let no_get =
            |_: &str| Box::pin(async {}) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
        let value = if kind == "transaction" {
            match self.bundle_as_import(&location, value).await? {
                Some(bundle) => bundle,
                None => return Ok(()),
            }
        } else {
            value
        };
        self.write_bundles().await?;
        self.wait().await?;
        match kind.as_str() {
            "transaction" => match self
                .records
                .transaction(
                    &self.actor,
                    ironchart_fhir::bundle::entries(&value),
                    &no_get,
                )
                .await
            {
                Ok(outcomes) => self.summary.imported += outcomes.len(),
                Err(e) => self.report(
                    &location,
                    &format!("transaction rolled back: {}", describe(&e)),
                ),
            },
            "batch" => {
                let outcomes = self
                    .records
                    .batch(
                        &self.actor,
                        ironchart_fhir::bundle::entries(&value),
                        &no_get,
                    )
                    .await?;
                for (i, o) in outcomes.into_iter().enumerate() {
                    match o {
                        BundleOutcome::Failed(e) => {
                            self.report(&format!("{location} entry[{i}]"), &describe(&e))
                        }
                        _ => self.summary.imported += 1,
                    }
                }
            }
            _ => {
                // A collection (or any other Bundle): import each entry's resource.
                let mut batch = Vec::new();
                let entries = value
                    .get("entry")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (i, e) in entries.into_iter().enumerate() {
                    let at = format!("{location} entry[{i}]");
                    match e.get("resource") {
                        Some(r) => batch.push((at, r.clone())),
                        None => self.report(&at, "entry has no resource"),
                    }
                    if batch.len() >= BATCH {
                        self.flush(&mut batch).await?;
                    }
                }
                self.flush(&mut batch).await?;
            }
        }
        Ok(())
    }
}

/// A one-line description of why a resource was refused.
fn describe(e: &ironchart_records::RecordsError) -> String {
    use ironchart_records::RecordsError as E;
    match e {
        E::Invalid(issues) => issues
            .iter()
            .take(3)
            .map(|i| format!("{}: {}", i.expression, i.message))
            .collect::<Vec<_>>()
            .join("; "),
        E::Entry { index, source } => format!("entry[{index}]: {}", describe(source)),
        other => other.to_string(),
    }
}

pub async fn run(
    records: &Records,
    operator: &LocalOperator,
    paths: &[PathBuf],
    progress: bool,
) -> Result<Summary, CliError> {
    let files = collect_files(paths)?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut importer = Importer {
        records,
        actor: operator.actor().clone(),
        bar,
        summary: Summary::default(),
        in_flight: None,
        bundles: Vec::new(),
        bundled: 0,
    };
    records.set_bulk_mode(true).await?;
    for f in &files {
        importer.summary.files += 1;
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        importer.bar.set_message(name);
        if f.extension().and_then(|e| e.to_str()) == Some("ndjson") {
            importer.write_bundles().await?;
            importer.ndjson(f).await?;
        } else {
            importer.json(f).await?;
        }
    }
    importer.write_bundles().await?;
    importer.wait().await?;
    // Everything imported is on disk before we say so.
    records.set_bulk_mode(false).await?;
    importer.bar.finish_and_clear();
    Ok(importer.summary)
}
