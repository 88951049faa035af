//! Search: typed [`SearchQuery`]s become SQL over the index tables (see `sql`); pages are
//! keyset-based (the cursor holds the sort keys of the last row, never an offset).

#[cfg(test)]
mod plans;
pub(crate) mod sql;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironchart_fhir::search::{Include, SearchQuery};
use serde_json::{Value, json};

use crate::db::{Backend, Conn, RowGet, Sql, Store};
use crate::resources::{StoredVersion, WriteTx, version_row};
use crate::visibility::{Sensitivity, Visibility};
use crate::{Result, StoreError};

pub use sql::KeyType;

/// Where a page starts: after (forward) or before (backward) the row with these sort keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub forward: bool,
    pub keys: Vec<KeyValue>,
    pub rid: i64,
}

/// One sort-key value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Cursor {
    /// The opaque text form used in `next`/`previous` links.
    pub fn encode(&self) -> String {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| match k {
                KeyValue::Text(s) => json!({ "s": s }),
                KeyValue::Int(i) => json!({ "i": i }),
                KeyValue::Float(f) => json!({ "f": f }),
            })
            .collect();
        let v = json!({ "d": if self.forward { "n" } else { "p" }, "k": keys, "r": self.rid });
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Parses a cursor; anything we did not issue is [`StoreError::BadCursor`].
    pub fn decode(text: &str) -> Result<Cursor> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::BadCursor)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
        let forward = match v.get("d").and_then(Value::as_str) {
            Some("n") => true,
            Some("p") => false,
            _ => return Err(StoreError::BadCursor),
        };
        let rid = v
            .get("r")
            .and_then(Value::as_i64)
            .ok_or(StoreError::BadCursor)?;
        let mut keys = Vec::new();
        for k in v
            .get("k")
            .and_then(Value::as_array)
            .ok_or(StoreError::BadCursor)?
        {
            keys.push(if let Some(s) = k.get("s").and_then(Value::as_str) {
                KeyValue::Text(s.to_string())
            } else if let Some(i) = k.get("i").and_then(Value::as_i64) {
                KeyValue::Int(i)
            } else if let Some(f) = k.get("f").and_then(Value::as_f64) {
                KeyValue::Float(f)
            } else {
                return Err(StoreError::BadCursor);
            });
        }
        Ok(Cursor { forward, keys, rid })
    }
}

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// The matches of this page, in order.
    pub matches: Vec<StoredVersion>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<StoredVersion>,
    pub next: Option<Cursor>,
    pub previous: Option<Cursor>,
    /// The number of matches when asked for (or when it is known for free).
    pub total: Option<i64>,
    /// When `total` was counted: the distinct patients whose compartments the counted matches
    /// are in (found by the same read).
    pub counted_patients: Option<Vec<String>>,
}

impl Store {
    /// Runs a search and returns one page.
    pub async fn search(
        &self,
        query: &SearchQuery,
        cursor: Option<&Cursor>,
        vis: &Visibility,
    ) -> Result<SearchPage> {
        // A count, or a page with its total, reads every match.
        let counts =
            query.summary_count || query.total == ironchart_fhir::search::TotalMode::Accurate;
        let mut conn = if counts {
            self.counter().await?
        } else {
            self.reader().await?
        };
        search_on(&mut conn.conn(), query, cursor, vis, &self.steering).await
    }

    /// The distinct patients whose compartments the matches of a search are in (at most
    /// `limit`): who an answer that counts them (`_summary=count`, a total) is about.
    pub async fn match_patients(
        &self,
        query: &SearchQuery,
        vis: &Visibility,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut conn = self.counter().await?;
        let sql = sql::match_patients(query, vis, limit);
        conn.fetch(&sql.text, sql.args, |r| r.text(0)).await
    }

    /// Counts the matches of a search.
    pub async fn count(&self, query: &SearchQuery, vis: &Visibility) -> Result<i64> {
        let mut conn = self.counter().await?;
        let sql = sql::count(query, vis);
        Ok(conn
            .fetch(&sql.text, sql.args, |r| r.i64(0))
            .await?
            .into_iter()
            .next()
            .unwrap_or(0))
    }
}

impl WriteTx {
    /// The ids of the resources matching a search, with the patient each belongs to, inside
    /// the transaction (for conditional create and update). At most `limit`.
    pub async fn search_ids(
        &mut self,
        query: &SearchQuery,
        limit: usize,
        vis: &Visibility,
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut sql = Sql::new("SELECT r.res_id, r.patient FROM resources r WHERE ");
        sql.append(sql::matches(query, "r", vis));
        sql.push(" LIMIT ").bind_i64(limit as i64);
        self.conn()
            .fetch(&sql.text, sql.args, |r| Ok((r.text(0)?, r.opt_text(1)?)))
            .await
    }
}

async fn search_on(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    vis: &Visibility,
    steering: &crate::db::Steering,
) -> Result<SearchPage> {
    let mut page = SearchPage::default();
    if query.summary_count {
        let (total, patients) = count_with_patients(conn, query, vis).await?;
        page.total = Some(total);
        page.counted_patients = Some(patients);
        return Ok(page);
    }
    let key_types = sql::key_types(query);
    if let Some(c) = cursor
        && (c.keys.len() != key_types.len()
            || c.keys.iter().zip(&key_types).any(|(k, t)| !t.accepts(k)))
    {
        return Err(StoreError::BadCursor);
    }
    let limit = query.count;
    let forward = cursor.is_none_or(|c| c.forward);
    let walked = match (sql::scoped_walk(query), sql::walk_key(query)) {
        (Some(scoped), _) if forward => {
            Some(walk_scoped(conn, query, &scoped, cursor, limit + 1, vis).await?)
        }
        (_, Some((def, desc))) if forward => {
            walk(
                conn,
                query,
                def,
                desc,
                cursor,
                limit + 1,
                vis,
                &key_types,
                steering,
            )
            .await?
        }
        // PostgreSQL reads a lead in row-id order as it comes (see `sql::lead_in_rid_order`);
        // SQLite would first gather the lead's every row to read them in order.
        _ if forward
            && sql::rid_walkable(query)
            && !(conn.backend() == Backend::Postgres && sql::lead_in_rid_order(query)) =>
        {
            walk_rids(conn, query, cursor, limit + 1, vis, steering).await?
        }
        _ => None,
    };
    let mut rows = match walked {
        Some(rows) => rows,
        None => {
            let select = sql::page(query, cursor, limit + 1, vis, conn.backend());
            page_rows(conn, select, &key_types).await?
        }
    };
    let mut more = rows.len() > limit;
    rows.truncate(limit);
    // A page also ends where its bodies reach the byte bound (the next page goes on from
    // there), so that no answer is built beyond it whatever the resources' sizes.
    let within = within_bytes(rows.iter().map(|(_, v)| v), MAX_PAGE_BYTES);
    if within < rows.len() {
        rows.truncate(within);
        more = true;
    }
    if !forward {
        rows.reverse();
    }
    let first = rows.first().map(|(k, v)| Cursor {
        forward: false,
        keys: k.clone(),
        rid: v.rid,
    });
    let last = rows.last().map(|(k, v)| Cursor {
        forward: true,
        keys: k.clone(),
        rid: v.rid,
    });
    if forward {
        if more {
            page.next = last;
        }
        if cursor.is_some() {
            page.previous = first;
        }
    } else {
        page.next = last;
        if more {
            page.previous = first;
        }
    }
    page.matches = rows.into_iter().map(|(_, v)| v).collect();
    page.total = match query.total {
        ironchart_fhir::search::TotalMode::None => None,
        ironchart_fhir::search::TotalMode::Accurate => {
            let (total, patients) = count_with_patients(conn, query, vis).await?;
            page.counted_patients = Some(patients);
            Some(total)
        }
        ironchart_fhir::search::TotalMode::Default => {
            if cursor.is_none() && !more {
                Some(page.matches.len() as i64)
            } else {
                None
            }
        }
    };
    let mut left = MAX_PAGE_BYTES.saturating_sub(body_bytes(page.matches.iter()));
    if !page.matches.is_empty() {
        let rids: Vec<i64> = page.matches.iter().map(|m| m.rid).collect();
        let mut seen: std::collections::HashSet<i64> = rids.iter().copied().collect();
        let mut add = |v: StoredVersion, page: &mut SearchPage| {
            let size = v.body.as_ref().map_or(0, Vec::len);
            if size <= left && seen.insert(v.rid) {
                left -= size;
                page.included.push(v);
            }
        };
        for inc in &query.includes {
            for v in fetch_include(conn, inc, &rids, vis).await? {
                add(v, &mut page);
            }
        }
        for inc in &query.revincludes {
            let ids: Vec<String> = page.matches.iter().map(|m| m.res_id.clone()).collect();
            for v in fetch_revinclude(conn, inc, &query.resource_type, &ids, vis).await? {
                add(v, &mut page);
            }
        }
    }
    Ok(page)
}

/// The number of a query's matches and the distinct patients they are about, in one read.
async fn count_with_patients(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    vis: &Visibility,
) -> Result<(i64, Vec<String>)> {
    let sql = sql::count_by_patient(query, vis, conn.backend());
    let (total, patients) = conn
        .fetch(&sql.text, sql.args, |r| Ok((r.i64(0)?, r.opt_text(1)?)))
        .await?
        .into_iter()
        .next()
        .unwrap_or((0, None));
    let patients = patients.map_or_else(Vec::new, |p| {
        p.split(sql::PATIENT_SEPARATOR)
            .map(str::to_string)
            .collect()
    });
    Ok((total, patients))
}

/// A page's rows: each match's sort keys and its version.
type Row = (Vec<KeyValue>, StoredVersion);

async fn page_rows(conn: &mut Conn<'_>, select: Sql, key_types: &[KeyType]) -> Result<Vec<Row>> {
    let nkeys = key_types.len();
    conn.fetch(&select.text, select.args, |r| {
        let mut keys = Vec::with_capacity(nkeys);
        for (i, t) in key_types.iter().enumerate() {
            keys.push(match t {
                KeyType::Text => KeyValue::Text(r.text(i)?),
                KeyType::Int => KeyValue::Int(r.i64(i)?),
                KeyType::Float => KeyValue::Float(r.f64(i)?),
            });
        }
        Ok((keys, version_from(r, nkeys)?))
    })
    .await
}

/// Whether a search over the population is better walked (in its order, stopping at the page)
/// than read whole: not when its leading filter has few index rows — at least 500 and one in
/// 256 of all resources, but never more than 2,000 (the count is kept ten seconds, see
/// [`crate::db::Steering`], and at 2.8 million resources one in 256 was 11,000 rows) — for
/// then its matches are few (cheap to read) or sparse (a walk would read far to fill a page;
/// past its largest window it reads every match instead). A search with no index lookup to
/// lead it is always walked.
async fn worth_walking(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    steering: &crate::db::Steering,
) -> Result<bool> {
    let threshold = (steering.max_rid(conn).await? / 256).clamp(WALK_ABOVE, WALK_COUNTED);
    let Some(few) = sql::driver_up_to(query, threshold) else {
        return Ok(true);
    };
    Ok(steering.count(conn, few).await? >= threshold)
}

/// Runs a walk's window query (`SELECT COUNT(*), <last key>`): whether the walk reaches the
/// end within `window` rows, and the last key the window covers.
async fn window_reach(conn: &mut Conn<'_>, w: Sql, window: usize) -> Result<(bool, Option<i64>)> {
    let (seen, last) = conn
        .fetch(&w.text, w.args, |r| Ok((r.i64(0)?, r.opt_i64(1)?)))
        .await?
        .into_iter()
        .next()
        .unwrap_or((0, None));
    Ok(((seen as usize) < window, last))
}

/// A forward page of a population search in the default order (by row id), walked by row id
/// in growing windows from the cursor; `None` when the matches are too sparse for it.
async fn walk_rids(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    steering: &crate::db::Steering,
) -> Result<Option<Vec<Row>>> {
    if !worth_walking(conn, query, steering).await? {
        return Ok(None);
    }
    let from = cursor.map_or(0, |c| c.rid);
    // Its windows are of the type's resources, of which the leading filter may match few (one
    // Observation in ten has a given code): it starts wider than a walk of a sort key.
    let mut window = first_window(limit).max(RID_WALK_WINDOW);
    loop {
        // The window and the page in one statement; whether the window reached the end
        // matters only when the page falls short of its limit.
        let page = sql::rid_walk_page(query, cursor, window, limit, vis, conn.backend());
        let rows = page_rows(conn, page, &[]).await?;
        if rows.len() >= limit
            || window_reach(conn, sql::rid_window(query, from, window), window)
                .await?
                .0
        {
            return Ok(Some(rows));
        }
        match next_window(window, limit, rows.len()) {
            Some(w) => window = w,
            None => return Ok(None),
        }
    }
}

/// At least this many index rows of its leading filter for a search to be walked.
const WALK_ABOVE: i64 = 500;
/// The most index rows counted to decide whether to walk.
const WALK_COUNTED: i64 = 2_000;
/// The fewest index rows a walk reads first, and the most it reads (then it reads every match
/// instead).
const MIN_WALK_WINDOW: usize = 32;
/// The fewest resources a walk by row id reads first.
const RID_WALK_WINDOW: usize = 256;
const MAX_WALK_WINDOW: usize = 32_768;

/// The index rows a walk reads first: four per row of the page. A window is read whole before
/// the page is cut from it (PostgreSQL cannot tell how soon the page fills, so it reads and
/// sorts the window), and each row read costs a probe of the resource and of each filter:
/// a window sized to the page keeps a first page of ten to a fraction of a millisecond.
fn first_window(limit: usize) -> usize {
    limit
        .saturating_mul(4)
        .clamp(MIN_WALK_WINDOW, MAX_WALK_WINDOW)
}

/// The next window when `window` found only `found` of the page's `limit` rows: grown by the
/// density seen so far (to find half as many again as the page needs), at least twice and at
/// most eight times as large; `None` past the largest window.
fn next_window(window: usize, limit: usize, found: usize) -> Option<usize> {
    if window >= MAX_WALK_WINDOW {
        return None;
    }
    let factor = if found == 0 {
        8
    } else {
        (limit * 3).div_ceil(found * 2).clamp(2, 8)
    };
    Some(window.saturating_mul(factor).min(MAX_WALK_WINDOW))
}

/// A forward page of a population search sorted first by a date, read by walking the date's
/// index from the cursor's key and stopping at the page (see [`sql::walk_page`]), then the
/// matches without a date. `None` when reading every match is the better way: few matches, or
/// so few among the dates that a walk would read too much.
#[allow(clippy::too_many_arguments)]
async fn walk(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    def: &'static ironchart_fhir::SearchParamDef,
    desc: bool,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    key_types: &[KeyType],
    steering: &crate::db::Steering,
) -> Result<Option<Vec<Row>>> {
    let missing = sql::missing_date_key(desc);
    let from = match cursor.map(|c| c.keys.first()) {
        Some(Some(KeyValue::Int(k))) => Some(*k),
        Some(_) => return Ok(None),
        None => None,
    };
    let mut rows = Vec::new();
    if from != Some(missing) {
        if !worth_walking(conn, query, steering).await? {
            return Ok(None);
        }
        let mut window = first_window(limit);
        loop {
            // The window and the page in one statement; whether the window reached the end
            // matters only when the page falls short of its limit.
            let bound = sql::WalkBound { from, rows: window };
            let page = sql::walk_page(
                query,
                (def, desc),
                cursor,
                bound,
                limit,
                vis,
                conn.backend(),
            );
            rows = page_rows(conn, page, key_types).await?;
            if rows.len() >= limit {
                return Ok(Some(rows));
            }
            let w = sql::walk_window(query, def, desc, from, window);
            if window_reach(conn, w, window).await?.0 {
                break;
            }
            match next_window(window, limit, rows.len()) {
                Some(w) => window = w,
                None => return Ok(None),
            }
        }
    }
    rows.extend(dateless(conn, query, def, cursor, limit - rows.len(), vis, key_types).await?);
    Ok(Some(rows))
}

/// The matches without a value for the date key `def`, which come after every date: from the
/// start, or from the cursor when it is among them.
async fn dateless(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    def: &'static ironchart_fhir::SearchParamDef,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    key_types: &[KeyType],
) -> Result<Vec<Row>> {
    let page = dateless_sql(query, def, cursor, limit, vis, conn.backend());
    page_rows(conn, page, key_types).await
}

/// The statement of [`dateless`].
fn dateless_sql(
    query: &SearchQuery,
    def: &'static ironchart_fhir::SearchParamDef,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    backend: crate::db::Backend,
) -> Sql {
    let desc = query.sort.first().is_some_and(|k| k.descending);
    let among =
        cursor.is_some_and(|c| c.keys.first() == Some(&KeyValue::Int(sql::missing_date_key(desc))));
    let rest = sql::without_value(query, def);
    sql::page(
        &rest,
        if among { cursor } else { None },
        limit,
        vis,
        backend,
    )
}

/// Whether the rows of a walk by one date key come in its order: by the date (newest first
/// when `desc`), then by row id, and the rows without a date (`missing`) last, by row id.
fn in_walk_order(rows: &[Row], desc: bool, missing: &KeyValue) -> bool {
    rows.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        let (ka, kb) = (a.0.first(), b.0.first());
        let (ra, rb) = (a.1.rid, b.1.rid);
        match (ka == Some(missing), kb == Some(missing)) {
            (true, true) => rb > ra,
            (true, false) => false,
            (false, true) => true,
            (false, false) => match (ka, kb) {
                (Some(KeyValue::Int(x)), Some(KeyValue::Int(y))) if x == y => rb > ra,
                (Some(KeyValue::Int(x)), Some(KeyValue::Int(y))) => {
                    if desc {
                        y < x
                    } else {
                        y > x
                    }
                }
                _ => false,
            },
        }
    })
}

/// A forward page of a search about one resource (see [`sql::scoped_walk`]) sorted by a date
/// alone: its dates walked in the key's order from the cursor, stopping at the page, then the
/// matches without the date.
async fn walk_scoped(
    conn: &mut Conn<'_>,
    query: &SearchQuery,
    walk: &sql::ScopedWalk<'_>,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
) -> Result<Vec<Row>> {
    let key_types = [KeyType::Int];
    let missing = KeyValue::Int(sql::missing_date_key(walk.desc));
    let mut rows = Vec::new();
    if cursor.is_none_or(|c| c.keys.first() != Some(&missing)) {
        // The dates and, after them, the matches without one, in one statement: the second
        // part runs only when the first falls short of the page (a chart's last page, or a
        // patient with fewer matches than a page). Two statements were two round trips, and a
        // statement's own cost is most of such a page's on PostgreSQL.
        let page = sql::scoped_walk_page(query, walk, cursor, limit, vis, conn.backend());
        let rest = sql::scoped_dateless_page(query, walk, None, limit, vis, conn.backend());
        let both = page_rows(conn, sql::then(page.clone(), rest, limit), &key_types).await?;
        // The databases read `UNION ALL` in order under a limit, but SQL does not promise it.
        // A page out of the walk's order is read again in two steps, and so is a full page
        // without a date (the second part might have been read first and filled it); a page
        // short of its limit read both parts whole, in whichever order.
        let dated = both
            .first()
            .is_some_and(|(k, _)| k.first() != Some(&missing));
        if (dated || both.len() < limit) && in_walk_order(&both, walk.desc, &missing) {
            return Ok(both);
        }
        rows = page_rows(conn, page, &key_types).await?;
        if rows.len() >= limit {
            return Ok(rows);
        }
    }
    let rest =
        sql::scoped_dateless_page(query, walk, cursor, limit - rows.len(), vis, conn.backend());
    rows.extend(page_rows(conn, rest, &key_types).await?);
    Ok(rows)
}

fn version_from(r: &dyn RowGet, offset: usize) -> Result<StoredVersion> {
    Ok(StoredVersion {
        rid: r.i64(offset)?,
        res_type: r.text(offset + 1)?,
        res_id: r.text(offset + 2)?,
        version: r.i64(offset + 3)?,
        last_updated: r.i64(offset + 4)?,
        deleted: r.bool(offset + 5)?,
        method: r.text(offset + 6)?,
        body: r.opt_bytes(offset + 7)?,
        patient: r.opt_text(offset + 8)?,
        record_patient: r.opt_text(offset + 8)?,
        sensitivity: Sensitivity::of_level(r.i64(offset + 9)?),
    })
}

/// Most bytes of stored bodies one page of a search or history holds (matches and includes):
/// a page of large resources ends early, and includes beyond the bound are left out.
pub const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

fn body_bytes<'a>(versions: impl Iterator<Item = &'a StoredVersion>) -> usize {
    versions.map(|v| v.body.as_ref().map_or(0, Vec::len)).sum()
}

/// How many of `versions`, from the first, fit in `bound` bytes of bodies (at least one, so
/// that paging always moves on).
pub fn within_bytes<'a>(versions: impl Iterator<Item = &'a StoredVersion>, bound: usize) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for v in versions {
        total = total.saturating_add(v.body.as_ref().map_or(0, Vec::len));
        if total > bound && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// Most resources one `_include` or `_revinclude` adds to a page.
const MAX_INCLUDED: i64 = 1000;

async fn fetch_include(
    conn: &mut Conn<'_>,
    inc: &Include,
    rids: &[i64],
    vis: &Visibility,
) -> Result<Vec<StoredVersion>> {
    let sql = include_sql(inc, rids, vis);
    conn.fetch(&sql.text, sql.args, version_row).await
}

/// The resources the matches (`rids`) refer to through `inc`'s parameter.
pub(crate) fn include_sql(inc: &Include, rids: &[i64], vis: &Visibility) -> Sql {
    let mut sql = Sql::new(
        "SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity, r.patient FROM idx_reference x JOIN resources r ON r.res_type = x.target_type AND r.res_id = x.target_id JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.deleted = FALSE",
    );
    sql::push_param(&mut sql, sql::IndexAlias::X, inc.param);
    sql.push(" AND x.rid IN (");
    for (i, rid) in rids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_i64(*rid);
    }
    sql.push(")");
    if let Some(t) = &inc.target_type {
        sql.push(" AND x.target_type = ").bind_text(t);
    }
    crate::visibility::visible(&mut sql, vis, "r.res_type", "r.patient", "r.sensitivity");
    sql.push(" LIMIT ").bind_i64(MAX_INCLUDED);
    sql
}

async fn fetch_revinclude(
    conn: &mut Conn<'_>,
    inc: &Include,
    target_type: &str,
    ids: &[String],
    vis: &Visibility,
) -> Result<Vec<StoredVersion>> {
    let sql = revinclude_sql(inc, target_type, ids, vis);
    conn.fetch(&sql.text, sql.args, version_row).await
}

/// The resources that refer to the matches (`ids` of `target_type`) through `inc`'s parameter.
pub(crate) fn revinclude_sql(
    inc: &Include,
    target_type: &str,
    ids: &[String],
    vis: &Visibility,
) -> Sql {
    let mut sql = Sql::new(
        "SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity, r.patient FROM idx_reference x JOIN resources r ON r.rid = x.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.deleted = FALSE AND x.res_type = ",
    );
    sql.bind_text(&inc.source_type);
    sql::push_param(&mut sql, sql::IndexAlias::X, inc.param);
    sql.push(" AND x.target_type = ")
        .bind_text(target_type)
        .push(" AND x.target_id IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_text(id);
    }
    sql.push(")");
    crate::visibility::visible(&mut sql, vis, "r.res_type", "r.patient", "r.sensitivity");
    sql.push(" LIMIT ").bind_i64(MAX_INCLUDED);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_windows_follow_the_page_and_the_density_seen() {
        assert_eq!(first_window(11), 44);
        assert_eq!(first_window(1), MIN_WALK_WINDOW);
        assert_eq!(first_window(usize::MAX), MAX_WALK_WINDOW);
        // Nothing found: eight times larger.
        assert_eq!(next_window(44, 11, 0), Some(352));
        // Ten of eleven: twice (the least growth).
        assert_eq!(next_window(44, 11, 10), Some(88));
        // One of eleven: eight times (the most).
        assert_eq!(next_window(32, 11, 1), Some(256));
        // Three of eleven: 33 / 6 → six times.
        assert_eq!(next_window(100, 11, 3), Some(600));
        assert_eq!(next_window(30_000, 11, 0), Some(MAX_WALK_WINDOW));
        assert_eq!(next_window(MAX_WALK_WINDOW, 11, 0), None);
    }

    fn row(key: i64, rid: i64) -> Row {
        let v = StoredVersion {
            rid,
            res_type: "Observation".into(),
            res_id: rid.to_string(),
            version: 1,
            last_updated: 0,
            deleted: false,
            method: "PUT".into(),
            body: None,
            patient: None,
            record_patient: None,
            sensitivity: Sensitivity::of_level(0),
        };
        (vec![KeyValue::Int(key)], v)
    }

    /// A walk's page in one statement is kept only in the walk's order: dates in the key's
    /// direction, ties by row id, the rows without a date last by row id.
    #[test]
    fn a_page_in_one_statement_is_checked_for_the_walks_order() {
        let none = KeyValue::Int(sql::missing_date_key(true));
        let m = sql::missing_date_key(true);
        let ok = [row(30, 5), row(20, 2), row(20, 7), row(m, 1), row(m, 9)];
        assert!(in_walk_order(&ok, true, &none));
        // A date after a row without one: the second part came first.
        let late = [row(30, 5), row(m, 1), row(20, 2)];
        assert!(!in_walk_order(&late, true, &none));
        // Dates out of order, a tie out of row-id order, dateless rows out of order.
        assert!(!in_walk_order(&[row(20, 2), row(30, 5)], true, &none));
        assert!(!in_walk_order(&[row(20, 7), row(20, 2)], true, &none));
        assert!(!in_walk_order(&[row(m, 9), row(m, 1)], true, &none));
        // Oldest first: the same with the dates rising.
        let none_asc = KeyValue::Int(sql::missing_date_key(false));
        let a = sql::missing_date_key(false);
        assert!(in_walk_order(
            &[row(20, 2), row(30, 1), row(a, 4)],
            false,
            &none_asc
        ));
        assert!(!in_walk_order(&[row(30, 1), row(20, 2)], false, &none_asc));
    }
}
