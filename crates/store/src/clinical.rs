//! The clinical workflow's own rows: the signatures that lock encounters, and the reviews
//! (acknowledgements) of results. Both are facts about resources, kept beside them.

use crate::Result;
use crate::db::{Arg, Sql, Store};
use crate::resources::WriteTx;

/// Who signed an encounter, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    pub enc_id: String,
    pub signed_at: i64,
    pub user_id: Option<i64>,
    pub signed_by: String,
}

/// Who reviewed a result (a DiagnosticReport), and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    pub report_id: String,
    pub reviewed_at: i64,
    pub user_id: Option<i64>,
    pub reviewed_by: String,
}

fn signature_row(r: &dyn crate::db::RowGet) -> Result<SignatureRecord> {
    Ok(SignatureRecord {
        enc_id: r.text(0)?,
        signed_at: r.i64(1)?,
        user_id: r.opt_i64(2)?,
        signed_by: r.text(3)?,
    })
}

fn review_row(r: &dyn crate::db::RowGet) -> Result<ReviewRecord> {
    Ok(ReviewRecord {
        report_id: r.text(0)?,
        reviewed_at: r.i64(1)?,
        user_id: r.opt_i64(2)?,
        reviewed_by: r.text(3)?,
    })
}

/// Most ids one statement binds.
const IDS_PER_STATEMENT: usize = 500;

fn push_ids(sql: &mut Sql, ids: &[&str]) {
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.bind_text(id);
    }
}

impl Store {
    /// The signature of an encounter, if it is signed.
    pub async fn signature(&self, enc_id: &str) -> Result<Option<SignatureRecord>> {
        let mut conn = self.reader().await?;
        let rows = conn
            .fetch(
                "SELECT enc_id, signed_at, user_id, signed_by FROM encounter_signatures WHERE enc_id = $1",
                vec![Arg::Text(enc_id.to_string())],
                signature_row,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The reviews among these DiagnosticReport ids.
    pub async fn reviews(&self, report_ids: &[&str]) -> Result<Vec<ReviewRecord>> {
        let mut out = Vec::new();
        let mut conn = self.reader().await?;
        for chunk in report_ids.chunks(IDS_PER_STATEMENT) {
            let mut sql = Sql::new(
                "SELECT report_id, reviewed_at, user_id, reviewed_by FROM result_reviews WHERE report_id IN (",
            );
            push_ids(&mut sql, chunk);
            sql.push(")");
            out.extend(conn.fetch(&sql.text, sql.args, review_row).await?);
        }
        Ok(out)
    }
}

impl WriteTx {
    /// Signs an encounter; false when it was already signed (the first signature stands).
    pub async fn insert_signature(&mut self, s: &SignatureRecord) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO encounter_signatures (enc_id, signed_at, user_id, signed_by) VALUES ($1, $2, $3, $4) ON CONFLICT (enc_id) DO NOTHING",
                vec![
                    Arg::Text(s.enc_id.clone()),
                    Arg::I64(s.signed_at),
                    Arg::OptI64(s.user_id),
                    Arg::Text(s.signed_by.clone()),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Whether any encounter is signed (an import checks each resource only then).
    pub async fn any_signature(&mut self) -> Result<bool> {
        let found = self
            .conn()
            .fetch(
                "SELECT enc_id FROM encounter_signatures LIMIT 1",
                vec![],
                |r| r.text(0),
            )
            .await?;
        Ok(!found.is_empty())
    }

    /// The first of `enc_ids` that is signed, read inside the transaction (so that a write
    /// checked here cannot slip in beside a signature being made).
    pub async fn signed_among(&mut self, enc_ids: &[&str]) -> Result<Option<String>> {
        for chunk in enc_ids.chunks(IDS_PER_STATEMENT) {
            let mut sql = Sql::new("SELECT enc_id FROM encounter_signatures WHERE enc_id IN (");
            push_ids(&mut sql, chunk);
            sql.push(") ORDER BY enc_id LIMIT 1");
            let found = self
                .conn()
                .fetch(&sql.text, sql.args, |r| r.text(0))
                .await?;
            if let Some(id) = found.into_iter().next() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The local Encounters the current version of `rid` refers to through `encounter` (its
    /// search index), to check a change or deletion of what it was.
    pub async fn encounter_refs(&mut self, rid: i64) -> Result<Vec<String>> {
        self.conn()
            .fetch(
                "SELECT DISTINCT target_id FROM idx_reference WHERE rid = $1 AND param = 'encounter' AND target_type = 'Encounter' AND target_id IS NOT NULL",
                vec![Arg::I64(rid)],
                |r| r.text(0),
            )
            .await
    }

    /// Records that a result was reviewed; false when it already was (the first review stands).
    pub async fn insert_review(&mut self, r: &ReviewRecord) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO result_reviews (report_id, reviewed_at, user_id, reviewed_by) VALUES ($1, $2, $3, $4) ON CONFLICT (report_id) DO NOTHING",
                vec![
                    Arg::Text(r.report_id.clone()),
                    Arg::I64(r.reviewed_at),
                    Arg::OptI64(r.user_id),
                    Arg::Text(r.reviewed_by.clone()),
                ],
            )
            .await?;
        Ok(n == 1)
    }
}
