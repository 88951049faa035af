//! `ironchart audit verify`: the whole chain, its patient index and the signed checkpoints.

use std::path::Path;

use ironchart_store::Store;

use super::chain::ChainKeys;
use super::checkpoint::{Checkpoint, read_checkpoints};
use crate::Result;

/// How long a new entry may wait for its patient index rows (they are added every few seconds;
/// an older entry without them means the index was tampered with).
const INDEX_LAG_ALLOWED_MS: i64 = 10 * 60 * 1000;

/// What `ironchart audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    /// The chain is intact: how many entries, and the newest checkpoint it matched.
    Intact {
        entries: i64,
        checkpoint: Option<i64>,
    },
    /// The first problem found, naming the entry.
    Broken { seq: i64, problem: String },
}

/// Walks the whole chain, then compares it with the checkpoints.
pub(crate) async fn verify(
    store: &Store,
    keys: &ChainKeys,
    checkpoints: Option<&Path>,
) -> Result<VerifyReport> {
    const PAGE: usize = 5000;
    let mut prev = String::new();
    let mut expected = 1i64;
    let mut last_seq = 0i64;
    let mut macs_at: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let wanted: Vec<Checkpoint> = match checkpoints {
        Some(path) => match read_checkpoints(path, keys) {
            Ok(c) => c,
            Err(problem) => return Ok(VerifyReport::Broken { seq: 0, problem }),
        },
        None => Vec::new(),
    };
    let wanted_seqs: std::collections::HashSet<i64> = wanted.iter().map(|c| c.seq).collect();
    // Entries up to here must have their patient rows; newer ones may not have them yet, but
    // not for long.
    let indexed_upto = store.audit_patients_indexed().await?;
    let stale_before = ironchart_fhir::Instant::now().as_millis() - INDEX_LAG_ALLOWED_MS;
    loop {
        let rows = store.audit_chain(last_seq, PAGE).await?;
        if rows.is_empty() {
            break;
        }
        let first = rows[0].seq;
        let last = rows[rows.len() - 1].seq;
        let mut patient_rows: std::collections::HashMap<i64, Vec<String>> =
            std::collections::HashMap::new();
        for (seq, p) in store.audit_patient_rows(first, last).await? {
            patient_rows.entry(seq).or_default().push(p);
        }
        for row in &rows {
            if row.seq != expected {
                let problem = if row.seq > expected {
                    format!(
                        "entry {expected} is missing (the next entry is {})",
                        row.seq
                    )
                } else {
                    format!("entry {} is out of order", row.seq)
                };
                return Ok(VerifyReport::Broken {
                    seq: expected,
                    problem,
                });
            }
            let mac = keys.mac(&prev, row);
            if !ironchart_security::constant_time_eq(mac.as_bytes(), row.mac.as_bytes()) {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "entry {} does not match its MAC: it was changed, inserted or moved",
                        row.seq
                    ),
                });
            }
            let mut listed: Vec<String> = row
                .patients
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            listed.sort();
            listed.dedup();
            let mut indexed = patient_rows.remove(&row.seq).unwrap_or_default();
            indexed.sort();
            let pending = row.seq > indexed_upto && indexed.is_empty();
            if pending && !listed.is_empty() && row.recorded < stale_before {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "entry {} is missing from the patient index (the index claims to end at entry {indexed_upto})",
                        row.seq
                    ),
                });
            }
            if listed != indexed && !pending {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    problem: format!(
                        "the patient index of entry {} does not match the entry",
                        row.seq
                    ),
                });
            }
            if wanted_seqs.contains(&row.seq) {
                macs_at.insert(row.seq, row.mac.clone());
            }
            prev.clone_from(&row.mac);
            expected += 1;
        }
        last_seq = last;
    }
    let entries = expected - 1;
    let mut newest = None;
    for c in &wanted {
        match macs_at.get(&c.seq) {
            Some(mac) if *mac == c.mac => newest = newest.max(Some(c.seq)),
            Some(_) => {
                return Ok(VerifyReport::Broken {
                    seq: c.seq,
                    problem: format!(
                        "entry {} differs from the signed checkpoint on line {} of the checkpoint file",
                        c.seq, c.line
                    ),
                });
            }
            None => {
                return Ok(VerifyReport::Broken {
                    seq: entries + 1,
                    problem: format!(
                        "the log ends at entry {entries}, but a signed checkpoint (line {}) vouches for entry {}: the tail was truncated",
                        c.line, c.seq
                    ),
                });
            }
        }
    }
    Ok(VerifyReport::Intact {
        entries,
        checkpoint: newest,
    })
}
