//! The audit report for the `auditor` role: a time range, filters, sorting by any column, and
//! CSV export. Reading the log is itself audited.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ironchart_fhir::PatientId;
use ironchart_records::{AuditFilter, AuditRecord, AuditSort, Instant, RecordsError, Role};
use serde::Deserialize;

use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

/// Most rows shown or exported at once.
const MAX_ROWS: usize = 5000;
const PAGE_ROWS: usize = 500;

#[derive(Deserialize, Default, Clone)]
pub(crate) struct ReportQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    patient: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    dir: String,
}

/// The report's columns: query name, label, store column, cell of a row.
const COLUMNS: [(&str, &str, AuditSort); 11] = [
    ("seq", "#", AuditSort::Seq),
    ("time", "Time (UTC)", AuditSort::Recorded),
    ("actor", "Actor", AuditSort::Actor),
    ("role", "Role", AuditSort::Role),
    ("action", "Action", AuditSort::Action),
    ("type", "Type", AuditSort::ResType),
    ("id", "Id", AuditSort::ResId),
    ("patients", "Patients", AuditSort::Patients),
    ("outcome", "Outcome", AuditSort::Outcome),
    ("source", "From", AuditSort::Source),
    ("detail", "Detail", AuditSort::Detail),
];

fn cells(r: &AuditRecord) -> Vec<String> {
    vec![
        r.seq.to_string(),
        r.recorded.to_string(),
        r.actor.clone(),
        r.role.clone().unwrap_or_default(),
        r.action.clone(),
        r.res_type.clone().unwrap_or_default(),
        match (&r.res_id, r.version) {
            (Some(id), Some(v)) => format!("{id} (v{v})"),
            (Some(id), None) => id.clone(),
            _ => String::new(),
        },
        r.patients.join(" "),
        r.outcome.clone(),
        r.source.clone().unwrap_or_default(),
        r.detail.clone().unwrap_or_default(),
    ]
}

/// `yyyy-mm-dd` (start or end of that UTC day), in ms.
fn day(text: &str, end: bool) -> Option<i64> {
    let range = ironchart_fhir::datetime::parse_date_range(text.trim())?;
    if text.trim().len() != 10 {
        return None;
    }
    Some(if end { range.high } else { range.low })
}

impl ReportQuery {
    /// The filter the form asks for; a patient that is no Patient id is refused (an empty
    /// answer would look like "no entries about them").
    fn filter(&self, limit: usize) -> Result<AuditFilter, PageError> {
        let patient = match self.patient.trim() {
            "" => None,
            text => Some(PatientId::parse(text).ok_or_else(|| {
                PageError::Records(RecordsError::BadRequest {
                    message: format!("'{text}' is not a Patient id"),
                    expression: None,
                })
            })?),
        };
        let sort = COLUMNS
            .iter()
            .find(|c| c.0 == self.sort)
            .map_or(AuditSort::Seq, |c| c.2);
        Ok(AuditFilter {
            from: day(&self.from, false).map(Instant::from_millis),
            to: day(&self.to, true).map(Instant::from_millis),
            actor: Some(self.actor.trim().to_string()).filter(|a| !a.is_empty()),
            patient,
            sort,
            descending: self.dir != "asc",
            limit,
            ..AuditFilter::default()
        })
    }

    fn encoded(&self, sort: &str, dir: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("actor", &self.actor)
            .append_pair("patient", &self.patient)
            .append_pair("sort", sort)
            .append_pair("dir", dir)
            .finish()
    }
}

struct Column {
    label: &'static str,
    link: String,
    arrow: &'static str,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct ReportPage {
    nav: Option<Nav>,
    from: String,
    to: String,
    actor: String,
    patient: String,
    sort: String,
    dir: String,
    query: String,
    summary: String,
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

pub(crate) async fn report(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<ReportQuery>,
) -> Result<Response, PageError> {
    me.require(Role::Auditor)?;
    let store_query = q.filter(PAGE_ROWS)?;
    let total = state.records.audit_count(&me.actor, &store_query).await?;
    let rows = state.records.audit_entries(&me.actor, &store_query).await?;
    let current_sort = COLUMNS
        .iter()
        .find(|c| c.0 == q.sort)
        .map_or("seq", |c| c.0);
    let desc = q.dir != "asc";
    let columns = COLUMNS
        .iter()
        .map(|(name, label, _)| {
            let active = *name == current_sort;
            let next_dir = if active && desc { "asc" } else { "desc" };
            Column {
                label,
                link: q.encoded(name, next_dir),
                arrow: match (active, desc) {
                    (true, true) => " ▼",
                    (true, false) => " ▲",
                    _ => "",
                },
            }
        })
        .collect();
    let summary = if total as usize > rows.len() {
        format!(
            "{total} entries match; showing the first {}. Narrow the range, or export (up to {MAX_ROWS}).",
            rows.len()
        )
    } else {
        format!("{total} entries match.")
    };
    Ok(page(
        StatusCode::OK,
        &ReportPage {
            nav: Some(me.nav()),
            query: q.encoded(current_sort, if desc { "desc" } else { "asc" }),
            from: q.from.clone(),
            to: q.to.clone(),
            actor: q.actor.clone(),
            patient: q.patient.clone(),
            sort: current_sort.to_string(),
            dir: if desc { "desc".into() } else { "asc".into() },
            summary,
            columns,
            rows: rows.iter().map(cells).collect(),
        },
    ))
}

/// One CSV field (RFC 4180), always quoted — so that a spreadsheet that splits on `;` or `,`,
/// or meets a line break inside a value, keeps it in one cell — and with a leading `'` for text
/// a spreadsheet would run as a formula (`= + - @`, tab, CR).
fn csv_field(s: &str) -> String {
    let guard = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        "'"
    } else {
        ""
    };
    ["\"", guard, &s.replace('"', "\"\""), "\""].concat()
}

pub(crate) async fn export(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<ReportQuery>,
) -> Result<Response, PageError> {
    me.require(Role::Auditor)?;
    let rows = state
        .records
        .audit_entries(&me.actor, &q.filter(MAX_ROWS)?)
        .await?;
    let mut out = String::new();
    out.push_str(
        &COLUMNS
            .iter()
            .map(|c| csv_field(c.1))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for r in &rows {
        out.push_str(
            &cells(r)
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ironchart-audit.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_formula_guard() {
        assert_eq!(csv_field("plain"), "\"plain\"");
        assert_eq!(csv_field(""), "\"\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        for formula in ["=SUM(A1)", "+1", "-1+2", "@x", "\tx", "\rx"] {
            assert_eq!(csv_field(formula), format!("\"'{formula}\""));
        }
        // A value made to split into a formula cell under `;`, and one made to fake a row.
        assert_eq!(
            csv_field("x;=cmd|' /C calc'!A0"),
            "\"x;=cmd|' /C calc'!A0\""
        );
        assert_eq!(csv_field("a\r\nb,c"), "\"a\r\nb,c\"");
    }

    proptest::proptest! {
        /// Every field is one quoted cell whatever it holds: read back by an RFC 4180 reader,
        /// it is the value (with the formula guard) and nothing else.
        #[test]
        fn every_field_reads_back_as_one_cell(value in ".*") {
            let field = csv_field(&value);
            proptest::prop_assert!(field.starts_with('"') && field.ends_with('"'));
            let inner = &field[1..field.len() - 1];
            proptest::prop_assert!(!inner.replace("\"\"", "").contains('"'));
            let read = inner.replace("\"\"", "\"");
            let expected = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{value}")
            } else {
                value.clone()
            };
            proptest::prop_assert_eq!(read, expected);
        }
    }
}
