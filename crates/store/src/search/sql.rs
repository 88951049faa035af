//! SQL for searches. Every fragment is a static string chosen by a `match` on typed values;
//! every value from the request is bound.

use ironchart_fhir::search::{
    Filter, FilterTest, FilterValue, ParamRef, Prefix, SearchQuery, SortKey, StringMatch,
    TokenSystem,
};
use ironchart_fhir::storage::{Storage, storage};
use ironchart_fhir::{SearchParamDef, SearchParamKind};

use super::{Cursor, KeyValue};
use crate::db::{Arg, Backend, Sql};
use crate::indexing::{clip, scopes_by_reference};
use crate::visibility::{Visibility, visible};

/// The SQL type of a sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Text,
    Int,
    Float,
}

impl KeyType {
    pub(crate) fn accepts(&self, v: &KeyValue) -> bool {
        matches!(
            (self, v),
            (KeyType::Text, KeyValue::Text(_))
                | (KeyType::Int, KeyValue::Int(_))
                | (KeyType::Float, KeyValue::Float(_))
        )
    }
}

/// Sorts past every real value (missing values sort last in both directions).
const TEXT_LAST: &str = "\u{10FFFF}";

fn key_type(param: &ParamRef) -> KeyType {
    match param {
        ParamRef::Id => KeyType::Text,
        ParamRef::LastUpdated => KeyType::Int,
        ParamRef::Indexed(def) => match def.kind {
            SearchParamKind::Date => KeyType::Int,
            SearchParamKind::Number | SearchParamKind::Quantity => KeyType::Float,
            _ => KeyType::Text,
        },
    }
}

pub(crate) fn key_types(query: &SearchQuery) -> Vec<KeyType> {
    query
        .sort
        .iter()
        .take(MAX_SORT_KEYS)
        .map(|k| key_type(&k.param))
        .collect()
}

/// `WHERE` conditions (without the keyword) selecting the live resources of the query's type
/// that match all its filters; `alias` names the `resources` row.
pub(crate) fn matches(query: &SearchQuery, alias: Alias, vis: &Visibility) -> Sql {
    matches_as(query, alias, vis, true, false)
}

/// [`matches`] for rows that come from elsewhere (a walk of a sort key's index, which names
/// the type): every filter is probed per row; no condition on the type.
fn matches_probed(query: &SearchQuery, alias: Alias, vis: &Visibility) -> Sql {
    matches_as(query, alias, vis, false, false)
}

/// [`matches`] for a page in row-id order on PostgreSQL: led by [`Lead::SortedArray`], so
/// that the page stops at its limit (a patient's 233 Observations were probed for a page of
/// 21). SQLite already reads an `IN` set in order.
fn matches_in_rid_order(query: &SearchQuery, alias: Alias, vis: &Visibility) -> Sql {
    matches_as(query, alias, vis, true, true)
}

fn matches_as(
    query: &SearchQuery,
    alias: Alias,
    vis: &Visibility,
    drive: bool,
    sorted_lead: bool,
) -> Sql {
    let mut filters: Vec<&Filter> = query.filters.iter().collect();
    filters.sort_by_key(|f| selectivity(f));
    let mut sql = Sql::new("");
    // When the most selective filter is an index lookup, it alone yields the candidates (its
    // index rows are of this type only). A condition on the type column here would tempt
    // SQLite into scanning every resource of the type instead.
    let driven_by_index = !drive
        || filters.first().is_some_and(|f| {
            matches!(
                (&f.param, &f.test),
                (
                    ParamRef::Indexed(_),
                    FilterTest::AnyOf(_) | FilterTest::Chain { .. }
                )
            )
        });
    if !driven_by_index {
        sql.push(alias.res_type())
            .push(" = ")
            .bind_text(&query.resource_type)
            .push(" AND ");
    }
    sql.push(alias.deleted()).push(" = FALSE");
    // The searched type itself was checked by the caller; a type list here would only tempt
    // the planner into scanning the type.
    visible_of_type(
        &mut sql,
        vis,
        &query.resource_type,
        alias.patient(),
        alias.sensitivity(),
    );
    for (i, filter) in filters.into_iter().enumerate() {
        sql.push(" AND ");
        let lead = match (drive && i == 0, sorted_lead) {
            (false, _) => Lead::No,
            (true, false) => Lead::Set,
            (true, true) => Lead::SortedArray,
        };
        filter_sql(
            &mut sql,
            &query.resource_type,
            filter,
            alias,
            lead,
            !drive,
            vis,
        );
    }
    sql
}

/// `AND …` conditions keeping only the rows `vis` lets the caller see, given the columns that
/// hold a row's type, patient and sensitivity.
/// [`visible`] for rows all of one type, which the caller has checked: no type list, and the
/// compartment's shared types reduced to whether this type is one of them. The rows are of
/// that type anyway; naming the types would only tempt a plan that cannot know it (a generic
/// one) into reading every row of the shared types.
fn visible_of_type(
    sql: &mut Sql,
    vis: &Visibility,
    res_type: &str,
    patient_col: &'static str,
    sensitivity_col: &'static str,
) {
    if let Some(c) = &vis.compartment {
        sql.push(" AND (")
            .push(patient_col)
            .push(" = ")
            .bind_text(&c.patient);
        if c.shared_types.iter().any(|t| t == res_type) {
            sql.push(" OR ").push(patient_col).push(" IS NULL");
        }
        sql.push(")");
    }
    let rest = Visibility {
        types: None,
        compartment: None,
        ..vis.clone()
    };
    visible(sql, &rest, "", patient_col, sensitivity_col);
}

/// Which `resources` alias a condition is about (`r` for the searched type, `t` for a chain).
pub(crate) type Alias = &'static str;

trait AliasColumns {
    fn rid(self) -> &'static str;
    fn res_id(self) -> &'static str;
    fn res_type(self) -> &'static str;
    fn deleted(self) -> &'static str;
    fn last_updated(self) -> &'static str;
    fn patient(self) -> &'static str;
    fn sensitivity(self) -> &'static str;
}

impl AliasColumns for Alias {
    fn rid(self) -> &'static str {
        match self {
            "t" => "t.rid",
            // A walk's index rows, probed without their resource (see `probed_only`).
            "s" => "s.rid",
            _ => "r.rid",
        }
    }
    fn res_id(self) -> &'static str {
        if self == "t" { "t.res_id" } else { "r.res_id" }
    }
    fn res_type(self) -> &'static str {
        if self == "t" {
            "t.res_type"
        } else {
            "r.res_type"
        }
    }
    fn deleted(self) -> &'static str {
        if self == "t" {
            "t.deleted"
        } else {
            "r.deleted"
        }
    }
    fn last_updated(self) -> &'static str {
        if self == "t" {
            "t.last_updated"
        } else {
            "r.last_updated"
        }
    }
    fn patient(self) -> &'static str {
        if self == "t" {
            "t.patient"
        } else {
            "r.patient"
        }
    }
    fn sensitivity(self) -> &'static str {
        if self == "t" {
            "t.sensitivity"
        } else {
            "r.sensitivity"
        }
    }
}

fn index_table(kind: SearchParamKind) -> &'static str {
    match kind {
        SearchParamKind::String => "idx_string",
        SearchParamKind::Token => "idx_token",
        SearchParamKind::Date => "idx_date",
        SearchParamKind::Number => "idx_number",
        SearchParamKind::Quantity => "idx_quantity",
        SearchParamKind::Reference => "idx_reference",
        SearchParamKind::Uri => "idx_uri",
        // Not indexed; the parser never lets these through.
        SearchParamKind::Composite | SearchParamKind::Special => "idx_uri",
    }
}

/// Which index-table alias a parameter condition is written for.
#[derive(Clone, Copy)]
pub(crate) enum IndexAlias {
    /// The table itself, unaliased.
    Bare,
    /// `s` (sort keys).
    S,
    /// `x` (includes).
    X,
}

/// ` AND param = $name` — or, for a parameter answered from other parameters' rows (see
/// `ironchart_fhir::storage`), ` AND param IN (…)` and the target type.
pub(crate) fn push_param(sql: &mut Sql, alias: IndexAlias, def: &SearchParamDef) {
    let (param, target) = match alias {
        IndexAlias::Bare => (" AND param", " AND target_type = "),
        IndexAlias::S => (" AND s.param", " AND s.target_type = "),
        IndexAlias::X => (" AND x.param", " AND x.target_type = "),
    };
    sql.push(param);
    match storage(def) {
        Storage::Own => {
            sql.push(" = ").bind_text(def.name);
        }
        Storage::Alias { params, target: t } => {
            sql.push(" IN (");
            for (i, p) in params.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_text(p);
            }
            sql.push(")");
            if let Some(t) = t {
                sql.push(target).bind_text(t);
            }
        }
    }
}

/// Whether a filter leads (its index rows give the candidates), and in which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// A probe of each candidate's own index rows.
    No,
    /// `rid IN (SELECT rid …)`.
    Set,
    /// `rid = ANY(ARRAY(SELECT rid …))` (PostgreSQL, pages in row-id order): the array is
    /// built from the index alone and the primary key reads it in order, so the page stops at
    /// its limit; PostgreSQL makes an `IN` set unique by hashing and then probes every
    /// candidate before sorting.
    SortedArray,
}

impl Lead {
    fn drives(self) -> bool {
        self != Lead::No
    }
}

/// `<alias>.rid [NOT] IN (SELECT rid FROM idx_x WHERE res_type = $ AND param = $` (or the
/// array form of [`Lead::SortedArray`]) — the caller appends conditions and closes it with
/// [`close_probe`].
fn open_index_subquery(
    sql: &mut Sql,
    res_type: &str,
    def: &SearchParamDef,
    alias: Alias,
    negate: bool,
    lead: Lead,
    scalar: bool,
) {
    let drive = lead.drives();
    if scalar && !drive {
        // A probe written as a scalar subquery (closed by `close_probe`): PostgreSQL turns an
        // `EXISTS` into a join and may then read every row of the parameter; a scalar
        // subquery it evaluates per row, as a seek.
        sql.push("(SELECT 1 FROM ");
        sql.push(index_table(def.kind));
        sql.push(" WHERE rid = ").push(alias.rid());
        push_param(sql, IndexAlias::Bare, def);
        return;
    }
    if drive {
        // The driving filter: its index rows give the candidate resources.
        sql.push(alias.rid());
        sql.push(match (negate, lead) {
            (true, _) => " NOT IN (SELECT rid FROM ",
            (false, Lead::SortedArray) => " = ANY(ARRAY(SELECT rid FROM ",
            (false, _) => " IN (SELECT rid FROM ",
        });
        sql.push(index_table(def.kind));
        sql.push(" WHERE res_type = ").bind_text(res_type);
        push_param(sql, IndexAlias::Bare, def);
    } else {
        // Any other filter: a probe of the candidate's own index rows.
        sql.push(if negate {
            "NOT EXISTS (SELECT 1 FROM "
        } else {
            "EXISTS (SELECT 1 FROM "
        });
        sql.push(index_table(def.kind));
        sql.push(" WHERE rid = ").push(alias.rid());
        push_param(sql, IndexAlias::Bare, def);
    }
}

/// How selective a filter is likely to be (lower: fewer matches); the most selective one
/// drives the query.
fn selectivity(filter: &Filter) -> u8 {
    match (&filter.param, &filter.test) {
        (ParamRef::Id, FilterTest::AnyOf(_)) => 0,
        (_, FilterTest::Missing(_) | FilterTest::NoneOf(_)) => 9,
        (_, FilterTest::Chain { .. }) => 5,
        (ParamRef::LastUpdated, _) => 7,
        (ParamRef::Indexed(_), FilterTest::AnyOf(values)) => values
            .iter()
            .map(|v| match v {
                FilterValue::Reference { .. } | FilterValue::ReferenceIdentifier { .. } => 1,
                FilterValue::Id(_) => 1,
                // A code from a small fixed set (gender, a status, a category) matches a large
                // share of the type: any other index lookup leads before it.
                FilterValue::Token { code: Some(_), .. } if low_cardinality(&filter.param) => 5,
                FilterValue::Token { code: Some(_), .. } => 3,
                FilterValue::String {
                    mode: StringMatch::Exact,
                    ..
                }
                | FilterValue::Uri { below: false, .. }
                | FilterValue::ReferenceUrl(_) => 2,
                FilterValue::String {
                    mode: StringMatch::StartsWith,
                    ..
                } => 4,
                FilterValue::TokenText(_) => 5,
                FilterValue::Date { .. }
                | FilterValue::Number { .. }
                | FilterValue::Quantity { .. } => 6,
                _ => 8,
            })
            .max()
            .unwrap_or(8),
    }
}

/// Closes what [`open_index_subquery`] opened.
fn close_probe(sql: &mut Sql, lead: Lead, scalar: bool, negate: bool) {
    sql.push(match (lead, scalar, negate) {
        (Lead::SortedArray, _, false) => "))",
        (Lead::No, true, false) => " LIMIT 1) IS NOT NULL",
        (Lead::No, true, true) => " LIMIT 1) IS NULL",
        _ => ")",
    });
}

/// Token parameters whose codes come from a small fixed value set.
fn low_cardinality(param: &ParamRef) -> bool {
    matches!(
        param.name(),
        "gender"
            | "status"
            | "intent"
            | "clinical-status"
            | "verification-status"
            | "category"
            | "priority"
            | "active"
    )
}

fn filter_sql(
    sql: &mut Sql,
    res_type: &str,
    filter: &Filter,
    alias: Alias,
    lead: Lead,
    scalar: bool,
    vis: &Visibility,
) {
    let drive = lead.drives();
    match (&filter.param, &filter.test) {
        (ParamRef::Id | ParamRef::LastUpdated, FilterTest::Missing(missing)) => {
            // Every resource has both.
            sql.push(if *missing { "1 = 0" } else { "1 = 1" });
        }
        (ParamRef::Id, FilterTest::AnyOf(values) | FilterTest::NoneOf(values)) => {
            sql.push(alias.res_id());
            sql.push(if matches!(filter.test, FilterTest::NoneOf(_)) {
                " NOT IN ("
            } else {
                " IN ("
            });
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                let id = match v {
                    FilterValue::Id(id) => id.as_str(),
                    FilterValue::Token { code, .. } => code.as_deref().unwrap_or_default(),
                    _ => "",
                };
                sql.bind_text(id);
            }
            sql.push(")");
        }
        (ParamRef::LastUpdated, FilterTest::AnyOf(values) | FilterTest::NoneOf(values)) => {
            let negate = matches!(filter.test, FilterTest::NoneOf(_));
            sql.push(if negate { "NOT (" } else { "(" });
            let col = alias.last_updated();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                if let FilterValue::Date { prefix, range } = v {
                    date_condition(sql, col, col, *prefix, range.low, range.high);
                } else {
                    sql.push("1 = 0");
                }
            }
            sql.push(")");
        }
        (ParamRef::Id | ParamRef::LastUpdated, FilterTest::Chain { .. }) => {
            sql.push("1 = 0");
        }
        (ParamRef::Indexed(def), FilterTest::Missing(missing)) => {
            open_index_subquery(sql, res_type, def, alias, *missing, lead, scalar);
            close_probe(sql, lead, scalar, *missing);
        }
        (ParamRef::Indexed(def), FilterTest::AnyOf(values) | FilterTest::NoneOf(values)) => {
            let negate = matches!(filter.test, FilterTest::NoneOf(_));
            open_index_subquery(sql, res_type, def, alias, negate, lead, scalar);
            sql.push(" AND ");
            any_of(sql, values);
            close_probe(sql, lead, scalar, negate);
        }
        (
            ParamRef::Indexed(def),
            FilterTest::Chain {
                target_type,
                filter: inner,
            },
        ) => {
            // R4 3.1.1.5.5: a chain is evaluated inside contained resources too. Those are
            // found through the container's own `#id` references (see `contained_chain`).
            let contained = match (&inner.param, &inner.test) {
                (ParamRef::Indexed(inner_def), FilterTest::AnyOf(values)) => {
                    Some((*inner_def, values))
                }
                _ => None,
            };
            if !drive && contained.is_some() {
                sql.push("(");
            }
            open_index_subquery(sql, res_type, def, alias, false, lead, scalar);
            // The target's own filter picks its rows (by `rid`, which names the type too): a
            // condition on `t.res_type` would tempt the planner into reading every resource of
            // the type instead.
            sql.push(" AND target_type = ").bind_text(target_type).push(
                " AND target_id IN (SELECT t.res_id FROM resources t WHERE t.deleted = FALSE",
            );
            let inner_indexed = matches!(
                (&inner.param, &inner.test),
                (ParamRef::Indexed(_), FilterTest::AnyOf(_))
            );
            if !inner_indexed {
                // `_id`, `_lastUpdated`, `:missing`: no index rows name the type.
                sql.push(" AND t.res_type = ").bind_text(target_type);
            }
            // A chain may only look through resources the caller could see.
            if vis.types.as_ref().is_some_and(|t| !t.contains(target_type)) {
                sql.push(" AND 1 = 0");
            }
            visible_of_type(sql, vis, target_type, "t.patient", "t.sensitivity");
            sql.push(" AND ");
            filter_sql(sql, target_type, inner, "t", Lead::Set, false, vis);
            sql.push(")");
            match contained {
                Some((inner_def, values)) if drive => {
                    sql.push(" UNION ALL ");
                    contained_chain(sql, res_type, def, target_type, inner_def, values, None);
                    close_probe(sql, lead, scalar, false);
                }
                Some((inner_def, values)) => {
                    close_probe(sql, lead, scalar, false);
                    sql.push(if scalar { " OR (" } else { " OR EXISTS (" });
                    let rid = alias.rid();
                    contained_chain(
                        sql,
                        res_type,
                        def,
                        target_type,
                        inner_def,
                        values,
                        Some(rid),
                    );
                    sql.push(if scalar {
                        " LIMIT 1) IS NOT NULL)"
                    } else {
                        "))"
                    });
                }
                None => {
                    close_probe(sql, lead, scalar, false);
                }
            }
        }
    }
}

/// `SELECT x.rid FROM idx_reference x …`: the containers whose `param` refers (`#id`) to a
/// contained resource of `target_type` that has one of `values` for `inner` — read from the
/// contained resource's own index rows, which the container holds under `#id:name` (see
/// `ironchart_store::resources`). Seeks on the reference index's `url` (only `#…` references),
/// or on the candidate's own rows when `rid` is given.
fn contained_chain(
    sql: &mut Sql,
    res_type: &str,
    def: &SearchParamDef,
    target_type: &str,
    inner: &SearchParamDef,
    values: &[FilterValue],
    rid: Option<&'static str>,
) {
    sql.push("SELECT x.rid FROM idx_reference x WHERE ");
    match rid {
        Some(rid) => {
            sql.push("x.rid = ").push(rid);
        }
        None => {
            sql.push("x.res_type = ").bind_text(res_type);
        }
    }
    push_param(sql, IndexAlias::X, def);
    sql.push(" AND x.target_type = ")
        .bind_text(target_type)
        .push(" AND x.url >= '#' AND x.url < ")
        .bind(Arg::Text(prefix_end("#")))
        .push(" AND EXISTS (SELECT 1 FROM ")
        .push(index_table(inner.kind))
        .push(" WHERE rid = x.rid AND param IN (");
    let (params, target) = match storage(inner) {
        Storage::Own => (vec![inner.name], None),
        Storage::Alias { params, target } => (params.clone(), *target),
    };
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("x.url || ").bind(Arg::Text([":", p].concat()));
    }
    sql.push(")");
    if let Some(t) = target {
        sql.push(" AND target_type = ").bind_text(t);
    }
    sql.push(" AND ");
    any_of(sql, values);
    sql.push(")");
}

/// The exclusive upper bound of all strings starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    [prefix, TEXT_LAST].concat()
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `(<value> OR <value> …)`: an index row holding any of `values`.
fn any_of(sql: &mut Sql, values: &[FilterValue]) {
    sql.push("(");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        value_condition(sql, v);
    }
    sql.push(")");
}

fn value_condition(sql: &mut Sql, value: &FilterValue) {
    match value {
        FilterValue::String { value, mode } => match mode {
            StringMatch::StartsWith => {
                sql.push("(value >= ")
                    .bind_text(value)
                    .push(" AND value < ")
                    .bind(Arg::Text(prefix_end(value)))
                    .push(")");
            }
            // The normalized value leads to the rows through the index; the text as written
            // decides.
            StringMatch::Exact => {
                sql.push("(value = ")
                    .bind(Arg::Text(clip(&ironchart_fhir::extract::normalize_string(
                        value,
                    ))))
                    .push(" AND exact = ")
                    .bind_text(value)
                    .push(")");
            }
            StringMatch::Contains => {
                sql.push("value LIKE ")
                    .bind(Arg::Text(["%", &like_escape(value), "%"].concat()))
                    .push(" ESCAPE '\\'");
            }
        },
        FilterValue::Token { system, code } => {
            sql.push("(");
            match code {
                Some(code) => {
                    sql.push("code = ").bind_text(code);
                }
                None => {
                    sql.push("1 = 1");
                }
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => {
                    sql.push(" AND system IS NULL");
                }
                TokenSystem::Is(s) => {
                    sql.push(" AND system = ").bind_text(s);
                }
            }
            sql.push(")");
        }
        FilterValue::TokenText(text) => {
            sql.push("(text >= ")
                .bind_text(text)
                .push(" AND text < ")
                .bind(Arg::Text(prefix_end(text)))
                .push(")");
        }
        FilterValue::Id(id) => {
            sql.push("code = ").bind_text(id);
        }
        FilterValue::Date { prefix, range } => {
            date_condition(sql, "low", "high", *prefix, range.low, range.high);
        }
        FilterValue::Number {
            prefix,
            value,
            low,
            high,
        } => {
            number_condition(sql, *prefix, *value, *low, *high);
        }
        FilterValue::Quantity {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            sql.push("(");
            number_condition(sql, *prefix, *value, *low, *high);
            if let Some(system) = system {
                sql.push(" AND system = ").bind_text(system);
            }
            if let Some(code) = code {
                if system.is_some() {
                    sql.push(" AND code = ").bind_text(code);
                } else {
                    sql.push(" AND (code = ")
                        .bind_text(code)
                        .push(" OR unit = ")
                        .bind_text(code)
                        .push(")");
                }
            }
            sql.push(")");
        }
        // A bare id matches a reference to that id of any type the parameter allows (R4
        // 3.1.1.4.12): one seek on (res_type, param, target_id), as cheap as a typed one, which
        // adds the type. (References written as a bare id keep it as `target_id` too.)
        FilterValue::Reference { target_type, id } => {
            sql.push("(target_id = ").bind_text(id);
            if let Some(t) = target_type {
                sql.push(" AND target_type = ").bind_text(t);
            }
            sql.push(")");
        }
        FilterValue::ReferenceUrl(url) => {
            sql.push("url = ").bind_text(url);
        }
        FilterValue::ReferenceIdentifier { system, value } => {
            sql.push("(");
            match value {
                Some(v) => {
                    sql.push("ident_value = ").bind_text(v);
                }
                None => {
                    sql.push("ident_value IS NOT NULL");
                }
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => {
                    sql.push(" AND ident_system IS NULL");
                }
                TokenSystem::Is(s) => {
                    sql.push(" AND ident_system = ").bind_text(s);
                }
            }
            sql.push(")");
        }
        FilterValue::Uri { value, below } => {
            if *below {
                sql.push("(value >= ")
                    .bind_text(value)
                    .push(" AND value < ")
                    .bind(Arg::Text(prefix_end(value)))
                    .push(")");
            } else {
                sql.push("value = ").bind_text(value);
            }
        }
    }
}

/// FHIR date comparison of a stored range `[low_col, high_col]` with the search range
/// `[ql, qh]` (both inclusive).
fn date_condition(
    sql: &mut Sql,
    low_col: &'static str,
    high_col: &'static str,
    prefix: Prefix,
    ql: i64,
    qh: i64,
) {
    match prefix {
        Prefix::Eq => {
            sql.push("(")
                .push(low_col)
                .push(" >= ")
                .bind_i64(ql)
                .push(" AND ")
                .push(high_col)
                .push(" <= ")
                .bind_i64(qh)
                .push(")");
        }
        Prefix::Ne => {
            sql.push("(")
                .push(low_col)
                .push(" < ")
                .bind_i64(ql)
                .push(" OR ")
                .push(high_col)
                .push(" > ")
                .bind_i64(qh)
                .push(")");
        }
        Prefix::Gt | Prefix::Sa => {
            let col = if prefix == Prefix::Gt {
                high_col
            } else {
                low_col
            };
            sql.push(col).push(" > ").bind_i64(qh);
        }
        Prefix::Lt | Prefix::Eb => {
            let col = if prefix == Prefix::Lt {
                low_col
            } else {
                high_col
            };
            sql.push(col).push(" < ").bind_i64(ql);
        }
        Prefix::Ge => {
            sql.push(high_col).push(" >= ").bind_i64(ql);
        }
        Prefix::Le => {
            sql.push(low_col).push(" <= ").bind_i64(qh);
        }
        Prefix::Ap => {
            // Approximately: overlapping the search range widened by 10% of its distance from
            // now (at least one day).
            let now = ironchart_fhir::Instant::now().as_millis();
            let distance = (now - ql).abs().max((now - qh).abs());
            let slack = (distance / 10).max(86_400_000);
            sql.push("(")
                .push(low_col)
                .push(" <= ")
                .bind_i64(qh.saturating_add(slack))
                .push(" AND ")
                .push(high_col)
                .push(" >= ")
                .bind_i64(ql.saturating_sub(slack))
                .push(")");
        }
    }
}

fn number_condition(sql: &mut Sql, prefix: Prefix, value: f64, low: f64, high: f64) {
    match prefix {
        Prefix::Eq => {
            sql.push("(value >= ")
                .bind_f64(low)
                .push(" AND value < ")
                .bind_f64(high)
                .push(")");
        }
        Prefix::Ne => {
            sql.push("(value < ")
                .bind_f64(low)
                .push(" OR value >= ")
                .bind_f64(high)
                .push(")");
        }
        Prefix::Gt | Prefix::Sa => {
            sql.push("value > ").bind_f64(value);
        }
        Prefix::Lt | Prefix::Eb => {
            sql.push("value < ").bind_f64(value);
        }
        Prefix::Ge => {
            sql.push("value >= ").bind_f64(value);
        }
        Prefix::Le => {
            sql.push("value <= ").bind_f64(value);
        }
        Prefix::Ap => {
            let slack = (value.abs() * 0.1).max(high - low);
            sql.push("(value >= ")
                .bind_f64(value - slack)
                .push(" AND value <= ")
                .bind_f64(value + slack)
                .push(")");
        }
    }
}

/// The distinct patients whose compartments a query's matches are in, at most `limit`.
pub(crate) fn match_patients(query: &SearchQuery, vis: &Visibility, limit: usize) -> Sql {
    let mut sql = Sql::new("SELECT DISTINCT r.patient FROM resources r WHERE ");
    sql.append(matches(query, "r", vis));
    sql.push(" AND r.patient IS NOT NULL LIMIT ")
        .bind_i64(limit as i64);
    sql
}

/// How many index rows the query's most selective filter has, counting no further than
/// `limit` (more than its matches: the other filters are not applied): `None` when no index
/// lookup leads the query.
pub(crate) fn driver_up_to(query: &SearchQuery, limit: i64) -> Option<Sql> {
    let first = query.filters.iter().min_by_key(|f| selectivity(f))?;
    let (ParamRef::Indexed(def), FilterTest::AnyOf(values)) = (&first.param, &first.test) else {
        return None;
    };
    let mut sql = Sql::new("SELECT COUNT(*) FROM (SELECT 1 FROM ");
    sql.push(index_table(def.kind))
        .push(" WHERE res_type = ")
        .bind_text(&query.resource_type);
    push_param(&mut sql, IndexAlias::Bare, def);
    sql.push(" AND ");
    any_of(&mut sql, values);
    sql.push(" LIMIT ").bind_i64(limit).push(") c");
    Some(sql)
}

/// The number of a query's matches and the distinct patients whose compartments they are in,
/// as one row: the count, and the patients joined by [`PATIENT_SEPARATOR`] (`NULL` when none).
/// One row, not one per patient: rows cross from the database's thread one by one, and a
/// count over thousands of patients spent most of its time handing them over.
///
/// On PostgreSQL, a query led by an index lookup counts its leading filter's index rows, each
/// probed for the other filters, and reads each match's patient from the row itself (the
/// value indexes include it): not a `resources` row per match, a B-tree descent each (two
/// thirds of a count's time at 2.8 million resources). The caller's visibility, when it hides
/// anything, is checked on the matches' `resources` rows.
pub(crate) fn count_by_patient(query: &SearchQuery, vis: &Visibility, backend: Backend) -> Sql {
    let mut sql = Sql::new("SELECT CAST(COALESCE(SUM(c.n), 0) AS BIGINT), string_agg(c.patient, ");
    sql.bind_text(PATIENT_SEPARATOR).push(") FROM (");
    let led = match backend {
        Backend::Postgres => index_led(query, "SELECT DISTINCT r.rid, r.patient FROM ", None, vis),
        Backend::Sqlite => None,
    };
    match led {
        Some(rows) => {
            sql.push("SELECT m.patient AS patient, COUNT(*) AS n FROM (");
            sql.append(rows);
            sql.push(") m");
            if let Some(visible) = visible_row(query, vis, "m.rid") {
                sql.push(" WHERE ").append(visible);
            }
            sql.push(" GROUP BY m.patient) c");
        }
        None => {
            sql.push("SELECT r.patient AS patient, COUNT(*) AS n FROM resources r WHERE ");
            sql.append(matches(query, "r", vis));
            sql.push(" GROUP BY r.patient) c");
        }
    }
    sql
}

/// Between the patients of [`count_by_patient`]: a character no id has.
pub(crate) const PATIENT_SEPARATOR: &str = "\u{1f}";

/// `SELECT COUNT(*)` of a query's matches.
pub(crate) fn count(query: &SearchQuery, vis: &Visibility) -> Sql {
    let mut sql = Sql::new("SELECT COUNT(*) FROM resources r WHERE ");
    sql.append(matches(query, "r", vis));
    sql
}

/// The sort-key expression of one `_sort` key, with missing values replaced so that they sort
/// last.
fn sort_expression(sql: &mut Sql, key: &SortKey) {
    let desc = key.descending;
    match key.param {
        ParamRef::Id => {
            sql.push("r.res_id");
        }
        ParamRef::LastUpdated => {
            sql.push("r.last_updated");
        }
        ParamRef::Indexed(def) => {
            let (agg, table): (&'static str, &'static str) = match (def.kind, desc) {
                (SearchParamKind::String, false) => ("(SELECT MIN(s.value) FROM idx_string s", ""),
                (SearchParamKind::String, true) => ("(SELECT MAX(s.value) FROM idx_string s", ""),
                (SearchParamKind::Token, false) => ("(SELECT MIN(s.code) FROM idx_token s", ""),
                (SearchParamKind::Token, true) => ("(SELECT MAX(s.code) FROM idx_token s", ""),
                (SearchParamKind::Date, false) => ("(SELECT MIN(s.low) FROM idx_date s", ""),
                (SearchParamKind::Date, true) => ("(SELECT MAX(s.high) FROM idx_date s", ""),
                (SearchParamKind::Number, false) => ("(SELECT MIN(s.value) FROM idx_number s", ""),
                (SearchParamKind::Number, true) => ("(SELECT MAX(s.value) FROM idx_number s", ""),
                (SearchParamKind::Quantity, false) => {
                    ("(SELECT MIN(s.value) FROM idx_quantity s", "")
                }
                (SearchParamKind::Quantity, true) => {
                    ("(SELECT MAX(s.value) FROM idx_quantity s", "")
                }
                (SearchParamKind::Reference, false) => {
                    ("(SELECT MIN(s.target_id) FROM idx_reference s", "")
                }
                (SearchParamKind::Reference, true) => {
                    ("(SELECT MAX(s.target_id) FROM idx_reference s", "")
                }
                (_, false) => ("(SELECT MIN(s.value) FROM idx_uri s", ""),
                (_, true) => ("(SELECT MAX(s.value) FROM idx_uri s", ""),
            };
            sql.push("COALESCE(").push(agg).push(table);
            // By the row's own index rows: `rid` names the resource (its type too), so the
            // planner seeks on (rid, param); with the type as well it may pick the type's
            // index instead and read every row of the parameter for each match.
            sql.push(" WHERE s.rid = r.rid");
            push_param(sql, IndexAlias::S, def);
            if def.kind == SearchParamKind::String {
                // Whole values only, not the rows of their later words.
                sql.push(" AND s.exact <> ''");
            }
            sql.push("), ");
            match (key_type(&key.param), desc) {
                (KeyType::Text, false) => sql.bind(Arg::Text(TEXT_LAST.into())),
                (KeyType::Text, true) => sql.bind(Arg::Text(String::new())),
                (KeyType::Int, false) => sql.bind_i64(i64::MAX),
                (KeyType::Int, true) => sql.bind_i64(i64::MIN),
                (KeyType::Float, false) => sql.bind_f64(f64::MAX),
                (KeyType::Float, true) => sql.bind_f64(f64::MIN),
            };
            sql.push(")");
        }
    }
}

const KEY_COLUMNS: [&str; 8] = [
    "m.k0", "m.k1", "m.k2", "m.k3", "m.k4", "m.k5", "m.k6", "m.k7",
];
const KEY_ALIASES: [&str; 8] = [
    " AS k0", " AS k1", " AS k2", " AS k3", " AS k4", " AS k5", " AS k6", " AS k7",
];

// Most `_sort` keys honoured (the parser refuses more).
use ironchart_fhir::search::MAX_SORT_KEYS;

fn bind_key(sql: &mut Sql, v: &KeyValue) {
    match v {
        KeyValue::Text(s) => sql.bind_text(s),
        KeyValue::Int(i) => sql.bind_i64(*i),
        KeyValue::Float(f) => sql.bind_f64(*f),
    };
}

/// One page: the sort keys then the version columns of each match, `limit` rows from the cursor.
pub(crate) fn page(
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    backend: Backend,
) -> Sql {
    let keys: Vec<&SortKey> = query.sort.iter().take(MAX_SORT_KEYS).collect();
    if keys.is_empty() {
        // The default order (by row id) needs no computed keys. SQLite: one flat query (it
        // checks each filter as soon as the resource's row is read, before its version).
        // PostgreSQL: the page's row ids first, from the resources' covering index, then their
        // versions — flat, it read the version (the body) of every candidate before probing
        // the other filters: a patient's 95 Observations for the 3 of a code.
        let forward = cursor.is_none_or(|c| c.forward);
        // A search led by `_id` finds a few resources by their ids: flat on both databases, so
        // that PostgreSQL reads each `resources` row once (row ids first, then versions, it
        // read each twice: 0.14 ms against 0.05 ms for a read by id).
        let flat = backend == Backend::Sqlite || led_by_ids(query);
        let led = match backend {
            Backend::Postgres if !flat => index_led_rids(query, cursor, limit, vis),
            _ => None,
        };
        let sql = match led {
            Some(sql) => sql,
            None => {
                let mut sql = if flat {
                    Sql::new(
                        "SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE ",
                    )
                } else {
                    Sql::new("SELECT r.rid FROM resources r WHERE ")
                };
                sql.append(match backend {
                    Backend::Postgres => matches_in_rid_order(query, "r", vis),
                    Backend::Sqlite => matches(query, "r", vis),
                });
                push_rid_bound(&mut sql, "r.rid", cursor);
                sql.push(if forward {
                    " ORDER BY r.rid ASC LIMIT "
                } else {
                    " ORDER BY r.rid DESC LIMIT "
                })
                .bind_i64(limit as i64);
                sql
            }
        };
        if flat {
            return sql;
        }
        return rows_of(sql, if forward { "ASC" } else { "DESC" });
    }
    let mut inner = Sql::new("SELECT r.rid AS rid");
    for (i, key) in keys.iter().enumerate() {
        inner.push(", ");
        sort_expression(&mut inner, key);
        inner.push(KEY_ALIASES[i]);
    }
    inner.push(" FROM resources r WHERE ");
    inner.append(matches(query, "r", vis));

    let mut sql = Sql::new("SELECT ");
    for col in KEY_COLUMNS.iter().take(keys.len()) {
        sql.push(col).push(", ");
    }
    sql.push("r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM (");
    sql.append(inner);
    sql.push(") m JOIN resources r ON r.rid = m.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version");
    let forward = cursor.is_none_or(|c| c.forward);
    if let Some(c) = cursor {
        // (k0, k1, …, rid) strictly after (forward) or before (backward) the cursor, each key in
        // its own direction.
        sql.push(" WHERE (");
        for i in 0..=keys.len() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(");
            for (col, key) in KEY_COLUMNS.iter().zip(&c.keys).take(i) {
                sql.push(col).push(" = ");
                bind_key(&mut sql, key);
                sql.push(" AND ");
            }
            let (col, desc) = if i < keys.len() {
                (KEY_COLUMNS[i], keys[i].descending)
            } else {
                ("m.rid", false)
            };
            sql.push(col)
                .push(if desc == forward { " < " } else { " > " });
            if i < keys.len() {
                bind_key(&mut sql, &c.keys[i]);
            } else {
                sql.bind_i64(c.rid);
            }
            sql.push(")");
        }
        sql.push(")");
    }
    sql.push(" ORDER BY ");
    for (i, key) in keys.iter().enumerate() {
        sql.push(KEY_COLUMNS[i]);
        sql.push(if key.descending == forward {
            " DESC, "
        } else {
            " ASC, "
        });
    }
    sql.push(if forward { "m.rid ASC" } else { "m.rid DESC" });
    sql.push(" LIMIT ").bind_i64(limit as i64);
    sql
}

/// ` AND <col> > $cursor` (or `<` going back): the rows after the cursor's row id.
fn push_rid_bound(sql: &mut Sql, col: &'static str, cursor: Option<&Cursor>) {
    if let Some(c) = cursor {
        sql.push(" AND ")
            .push(col)
            .push(if c.forward { " > " } else { " < " })
            .bind_i64(c.rid);
    }
}

/// PostgreSQL, for candidates that come from index rows (`alias`, whose `rid` they carry): every
/// filter as a probe of the candidate's own index rows (` AND …`), and the caller's visibility
/// check of a candidate `c` (see [`visible_row`]; `None` when it hides nothing). `None` when a filter
/// reads the resource's own columns (`_id`, `_lastUpdated`). No `deleted` check: index rows
/// exist only for live current versions (a write removes a resource's rows in its own
/// transaction and a delete writes none, see `resources.rs`).
fn probed_only(query: &SearchQuery, alias: Alias, vis: &Visibility) -> Option<(Sql, Option<Sql>)> {
    probed_but(query, alias, vis, None)
}

/// [`probed_only`], without a probe for the filter at `skip` (the one whose index rows lead).
fn probed_but(
    query: &SearchQuery,
    alias: Alias,
    vis: &Visibility,
    skip: Option<usize>,
) -> Option<(Sql, Option<Sql>)> {
    if query.filters.iter().any(reads_own_columns) {
        return None;
    }
    let mut filters: Vec<&Filter> = query
        .filters
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(_, f)| f)
        .collect();
    filters.sort_by_key(|f| selectivity(f));
    let mut probes = Sql::new("");
    for filter in filters {
        probes.push(" AND ");
        filter_sql(
            &mut probes,
            &query.resource_type,
            filter,
            alias,
            Lead::No,
            true,
            vis,
        );
    }
    Some((probes, visible_row(query, vis, "c.rid")))
}

/// Whether the query's most selective filter is `_id`: a few resources named by their ids.
fn led_by_ids(query: &SearchQuery) -> bool {
    query
        .filters
        .iter()
        .any(|f| matches!((&f.param, &f.test), (ParamRef::Id, FilterTest::AnyOf(_))))
}

/// Whether a filter is a code from a small fixed set (see [`low_cardinality`]): most
/// candidates pass it.
fn matches_often(f: &Filter) -> bool {
    match (&f.param, &f.test) {
        (ParamRef::Indexed(_), FilterTest::AnyOf(values)) => {
            low_cardinality(&f.param)
                && !values.is_empty()
                && values
                    .iter()
                    .all(|v| matches!(v, FilterValue::Token { code: Some(_), .. }))
        }
        _ => false,
    }
}

/// Whether a filter reads the resource's own row (`_id`, `_lastUpdated`), not index rows.
fn reads_own_columns(f: &Filter) -> bool {
    matches!(
        (&f.param, &f.test),
        (
            ParamRef::Id | ParamRef::LastUpdated,
            FilterTest::AnyOf(_) | FilterTest::NoneOf(_)
        )
    )
}

/// The caller's visibility as ` AND …` conditions on a `resources` row `w` (empty when it
/// hides nothing).
fn hidden_rows(query: &SearchQuery, vis: &Visibility) -> Sql {
    let mut hidden = Sql::new("");
    visible_of_type(
        &mut hidden,
        vis,
        &query.resource_type,
        "w.patient",
        "w.sensitivity",
    );
    hidden
}

/// `rows` (a statement of `[key,] rid` ordered by them, `key` in `order` and the row id
/// ascending — or, without a key, the row id in `order` — and without its limit) limited to
/// `limit`, the caller's visibility check `visible` of a row `c` (see [`visible_row`]) made on
/// each row that reaches the limit: after the filters, on the few rows that passed them
/// (`OFFSET 0` keeps PostgreSQL from checking them first).
fn checked_last(
    mut rows: Sql,
    visible: Option<Sql>,
    key: Option<&'static str>,
    order: &'static str,
    limit: usize,
) -> Sql {
    let Some(visible) = visible else {
        rows.push(" LIMIT ").bind_i64(limit as i64);
        return rows;
    };
    rows.push(" OFFSET 0");
    let mut sql = Sql::new("SELECT ");
    if let Some(key) = key {
        sql.push("c.").push(key).push(" AS ").push(key).push(", ");
    }
    sql.push("c.rid AS rid FROM (");
    sql.append(rows);
    sql.push(") c WHERE ").append(visible);
    sql.push(" ORDER BY ");
    match key {
        Some(key) => {
            sql.push("c.").push(key).push(order).push(", c.rid ASC");
        }
        None => {
            sql.push("c.rid").push(order);
        }
    }
    sql.push(" LIMIT ").bind_i64(limit as i64);
    sql
}

/// PostgreSQL, a page in row-id order whose leading filter is an index lookup: the row ids of
/// `limit` matches, read from the leading filter's index rows (in row-id order, each candidate
/// probed there for the other filters) without reading a `resources` row per candidate. Index
/// rows exist only for live current versions (a write removes a resource's rows in its own
/// transaction and a delete writes none, see `resources.rs`), so no candidate needs its
/// `deleted` flag; the caller's visibility, when it hides anything, is checked last, on the
/// candidates that passed every filter (`OFFSET 0` keeps PostgreSQL from checking it first).
/// A patient's Observations of one code: 234 candidates probed for their code alone, where
/// each was first read from `resources` (two index descents per candidate instead of one).
/// `None` when the query has no such lead, or a filter reads the resource's own columns.
fn index_led_rids(
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
) -> Option<Sql> {
    let forward = cursor.is_none_or(|c| c.forward);
    let order = if forward { " ASC" } else { " DESC" };
    if let Some(rids) = value_by_value_rids(query, cursor, limit, vis, order) {
        return Some(rids);
    }
    let mut rids = index_led(query, "SELECT DISTINCT r.rid FROM ", cursor, vis)?;
    rids.push(" ORDER BY r.rid").push(order);
    Some(checked_last(
        rids,
        visible_row(query, vis, "c.rid"),
        None,
        order,
        limit,
    ))
}

/// PostgreSQL, a page in row-id order led by a string (a name's start) whose other filters
/// match a large share of the candidates (a gender, a status): the lead's rows are in row-id
/// order within each value, not across the values that start with the text, so read as one
/// range every candidate would be probed before the first `limit` were known. Instead, the
/// distinct values are read from the index alone, and each value's rows are walked in row-id
/// order (probed, the caller's visibility checked on each) until `limit` of them match; the
/// page is the first `limit` of those. A family name shared by 179 of 16,000 patients with a
/// gender to probe: about 40 probes instead of 179, 0.15–0.23 ms of PostgreSQL's time instead
/// of 0.43–0.76 ms. Not when a probe matches few (a birth date): each value would be walked to
/// its end anyway, and the walk costs more than the range (5,972 req/s against 6,506–7,530 for
/// a family name and a birth date at 16,000 patients). `None` for any other query.
fn value_by_value_rids(
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    order: &'static str,
) -> Option<Sql> {
    let (def, values, rest) = value_lead(query)?;
    if def.kind != SearchParamKind::String
        || rest.is_empty()
        || !rest.iter().all(|f| matches_often(f))
    {
        return None;
    }
    let mut rids =
        Sql::new("SELECT DISTINCT c.rid FROM (SELECT DISTINCT r.value FROM idx_string r");
    push_lead_rows(&mut rids, query, def, values);
    rids.push(") v, LATERAL (SELECT r.rid FROM idx_string r");
    push_lead_rows(&mut rids, query, def, values);
    rids.push(" AND r.value = v.value");
    push_rid_bound(&mut rids, "r.rid", cursor);
    push_probes(&mut rids, query, &rest, vis);
    // Within a value, a row counts towards the limit only if the caller may see it.
    if let Some(visible) = visible_row(query, vis, "r.rid") {
        rids.push(" AND ").append(visible);
    }
    rids.push(" ORDER BY r.rid")
        .push(order)
        .push(" LIMIT ")
        .bind_i64(limit as i64);
    rids.push(") c ORDER BY c.rid")
        .push(order)
        .push(" LIMIT ")
        .bind_i64(limit as i64);
    Some(rids)
}

/// PostgreSQL: `select` (naming the columns of the index table `r`, which ends with `FROM `)
/// followed by the query's leading filter's index table as `r`, its rows of the lead's values
/// after `cursor`'s row id, each probed for the other filters on its `rid` (see
/// [`index_led_rids`]). `None` when the query has no index lookup to lead it, or a filter
/// reads the resource's own columns.
fn index_led(
    query: &SearchQuery,
    select: &'static str,
    cursor: Option<&Cursor>,
    vis: &Visibility,
) -> Option<Sql> {
    let (def, values, rest) = value_lead(query)?;
    // The index table is `r` here: the other filters' probes name the candidate `r.rid`, and
    // the lead's own conditions (unqualified) can only mean its columns.
    let mut rows = Sql::new(select);
    rows.push(index_table(def.kind)).push(" r");
    push_lead_rows(&mut rows, query, def, values);
    push_rid_bound(&mut rows, "r.rid", cursor);
    push_probes(&mut rows, query, &rest, vis);
    Some(rows)
}

/// The query's leading filter when it is an index lookup of values (its parameter and
/// values), and the other filters, most selective first. `None` when no such lookup leads, or
/// a filter reads the resource's own columns (`_id`, `_lastUpdated`).
fn value_lead(
    query: &SearchQuery,
) -> Option<(&'static SearchParamDef, &[FilterValue], Vec<&Filter>)> {
    let mut filters: Vec<&Filter> = query.filters.iter().collect();
    filters.sort_by_key(|f| selectivity(f));
    let lead = filters.first()?;
    let (ParamRef::Indexed(def), FilterTest::AnyOf(values)) = (&lead.param, &lead.test) else {
        return None;
    };
    if values.is_empty() || filters.iter().any(|f| reads_own_columns(f)) {
        return None;
    }
    Some((def, values, filters.split_off(1)))
}

/// ` WHERE …`: the rows of the lead's index table `r` that hold its values.
fn push_lead_rows(
    sql: &mut Sql,
    query: &SearchQuery,
    def: &SearchParamDef,
    values: &[FilterValue],
) {
    sql.push(" WHERE r.res_type = ")
        .bind_text(&query.resource_type);
    push_param(sql, IndexAlias::Bare, def);
    sql.push(" AND ");
    any_of(sql, values);
}

/// The filters `rest` as probes (` AND …`) of the candidate index row `r`'s own rows.
fn push_probes(sql: &mut Sql, query: &SearchQuery, rest: &[&Filter], vis: &Visibility) {
    for filter in rest {
        sql.push(" AND ");
        filter_sql(sql, &query.resource_type, filter, "r", Lead::No, false, vis);
    }
}

/// `EXISTS` a live `resources` row `w` of the resource `rid` (a column) that the caller may
/// see; `None` when the caller's visibility hides nothing.
fn visible_row(query: &SearchQuery, vis: &Visibility, rid: &'static str) -> Option<Sql> {
    let hidden = hidden_rows(query, vis);
    if hidden.text.is_empty() {
        return None;
    }
    let mut sql = Sql::new("EXISTS (SELECT 1 FROM resources w WHERE w.rid = ");
    sql.push(rid).push(" AND w.deleted = FALSE");
    sql.append(hidden);
    sql.push(")");
    Some(sql)
}

/// A search over the population whose first sort key is a date can be answered by walking that
/// parameter's index in the key's order and stopping at the page, instead of reading every
/// match (see [`walk_window`] and [`walk_page`]): the date parameter and whether it is descending.
/// Not for a search about one patient or a few ids (those read few matches anyway), nor for a
/// parameter answered from other parameters' rows.
pub(crate) fn walk_key(query: &SearchQuery) -> Option<(&'static SearchParamDef, bool)> {
    let first = query.sort.first()?;
    let ParamRef::Indexed(def) = first.param else {
        return None;
    };
    if def.kind != SearchParamKind::Date || !matches!(storage(def), Storage::Own) {
        return None;
    }
    if query.filters.iter().any(|f| selectivity(f) <= 1) {
        return None;
    }
    Some((def, first.descending))
}

/// The date a walk covers is found by its first `window` index rows from the cursor's key:
/// `SELECT COUNT(*), <last key>` — fewer than `window` rows means the walk reaches the end.
pub(crate) fn walk_window(
    query: &SearchQuery,
    def: &SearchParamDef,
    desc: bool,
    from: Option<i64>,
    window: usize,
) -> Sql {
    let mut sql = Sql::new("SELECT COUNT(*), ");
    sql.push(if desc { "MIN(w.k)" } else { "MAX(w.k)" })
        .push(" FROM (");
    sql.append(window_rows(query, def, desc, from, window));
    sql.push(") w");
    sql
}

/// The keys of a walk's first `window` index rows from the cursor's key, in its order.
fn window_rows(
    query: &SearchQuery,
    def: &SearchParamDef,
    desc: bool,
    from: Option<i64>,
    window: usize,
) -> Sql {
    let (col, cmp, order) = if desc {
        ("high", " AND high <= ", " ORDER BY high DESC LIMIT ")
    } else {
        ("low", " AND low >= ", " ORDER BY low ASC LIMIT ")
    };
    let mut sql = Sql::new("SELECT ");
    sql.push(col)
        .push(" AS k FROM idx_date WHERE res_type = ")
        .bind_text(&query.resource_type)
        .push(" AND param = ")
        .bind_text(def.name);
    if let Some(from) = from {
        sql.push(cmp).bind_i64(from);
    }
    sql.push(order).bind_i64(window as i64);
    sql
}

/// Where a walked page stops (see [`walk_page`]): before the key where [`walk_window`] of
/// `rows` index rows from the key `from` ends (exclusive: rows tied with the window's last key
/// may lie beyond it), or nowhere if the window reaches the end. The window is read within the
/// page's own statement, as a subquery the database runs once, instead of a statement of its
/// own before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkBound {
    pub(crate) from: Option<i64>,
    pub(crate) rows: usize,
}

/// One page (forward) of a search walked by its first sort key's index: the matches whose key
/// lies from the cursor's to `bound` (exclusive: rows tied with the window's last key may lie
/// beyond it), `limit` of them, with the same keys and order as [`page`]. A resource's row is
/// the one that holds its key (its latest end descending, its earliest start ascending), so
/// each match comes once.
pub(crate) fn walk_page(
    query: &SearchQuery,
    (def, desc): (&SearchParamDef, bool),
    cursor: Option<&Cursor>,
    bound: WalkBound,
    limit: usize,
    vis: &Visibility,
    backend: Backend,
) -> Sql {
    let keys: Vec<&SortKey> = query.sort.iter().take(MAX_SORT_KEYS).collect();
    let col = if desc { "s.high" } else { "s.low" };
    // PostgreSQL, sorted by the date alone: each index row is probed for the filters on its
    // own row id, and the resource's row is read only for the caller's visibility, last, on
    // the rows that passed (see `probed_only`). Index rows are live resources' own, so no row
    // needs its `deleted` flag: the newest ten DiagnosticReports read 42 candidates' rows of
    // `resources` for nothing. A second key (`_id`, another parameter) reads the row anyway.
    let led = match backend {
        Backend::Postgres if keys.len() == 1 => probed_only(query, "s", vis),
        _ => None,
    };
    let mut inner = Sql::new("SELECT DISTINCT ");
    inner.push(col).push(" AS k0");
    for (i, key) in keys.iter().enumerate().skip(1) {
        inner.push(", ");
        sort_expression(&mut inner, key);
        inner.push(KEY_ALIASES[i]);
    }
    // The walk leads: SQLite keeps a CROSS JOIN's order.
    inner
        .push(if led.is_some() {
            ", s.rid AS rid FROM idx_date s WHERE s.res_type = "
        } else {
            ", s.rid AS rid FROM idx_date s CROSS JOIN resources r WHERE s.res_type = "
        })
        .bind_text(&query.resource_type)
        .push(" AND s.param = ")
        .bind_text(def.name);
    if let Some(c) = cursor
        && let Some(KeyValue::Int(from)) = c.keys.first()
    {
        inner
            .push(if desc {
                " AND s.high <= "
            } else {
                " AND s.low >= "
            })
            .bind_i64(*from);
    }
    let before = if desc {
        " AND s.high > "
    } else {
        " AND s.low < "
    };
    // The window's last key, or (reaching the end) a key beyond every date.
    inner
        .push(before)
        .push("(SELECT CASE WHEN COUNT(*) < ")
        .bind_i64(bound.rows as i64)
        .push(" THEN ")
        .bind_i64(if desc { i64::MIN } else { i64::MAX })
        .push(if desc {
            " ELSE MIN(w.k) END FROM ("
        } else {
            " ELSE MAX(w.k) END FROM ("
        });
    inner.append(window_rows(query, def, desc, bound.from, bound.rows));
    inner.push(") w)");
    // A resource's row is the one that holds its key; only a resource with several rows for
    // the parameter (its rows say so) is probed for which.
    inner.push(if desc {
        " AND (NOT s.multi OR s.high = (SELECT MAX(x.high) FROM idx_date x WHERE x.rid = s.rid AND x.param = "
    } else {
        " AND (NOT s.multi OR s.low = (SELECT MIN(x.low) FROM idx_date x WHERE x.rid = s.rid AND x.param = "
    });
    inner.bind_text(def.name).push("))");
    let visible = match led {
        Some((probes, visible)) => {
            inner.append(probes);
            Some(visible)
        }
        None => {
            inner.push(" AND r.rid = s.rid AND ");
            inner.append(matches_probed(query, "r", vis));
            None
        }
    };
    if let Some(c) = cursor {
        // (k0, k1, …, rid) strictly after the cursor, each key in its own direction.
        inner.push(" AND (");
        for i in 0..=keys.len() {
            if i > 0 {
                inner.push(" OR ");
            }
            inner.push("(");
            for (j, v) in c.keys.iter().enumerate().take(i) {
                walk_key_expr(&mut inner, col, keys[j], j);
                inner.push(" = ");
                bind_key(&mut inner, v);
                inner.push(" AND ");
            }
            if i < keys.len() {
                walk_key_expr(&mut inner, col, keys[i], i);
                inner.push(if keys[i].descending { " < " } else { " > " });
                bind_key(&mut inner, &c.keys[i]);
            } else {
                inner.push("s.rid > ").bind_i64(c.rid);
            }
            inner.push(")");
        }
        inner.push(")");
    }
    inner.push(" ORDER BY ");
    for (i, key) in keys.iter().enumerate() {
        inner.push(if i == 0 {
            col
        } else {
            KEY_ALIASES[i].trim_start_matches(" AS ")
        });
        inner.push(if key.descending { " DESC, " } else { " ASC, " });
    }
    inner.push("s.rid ASC");
    let inner = match visible {
        Some(visible) => checked_last(
            inner,
            visible,
            Some("k0"),
            if desc { " DESC" } else { " ASC" },
            limit,
        ),
        None => {
            inner.push(" LIMIT ").bind_i64(limit as i64);
            inner
        }
    };

    let mut sql = Sql::new("SELECT ");
    for col in KEY_COLUMNS.iter().take(keys.len()) {
        sql.push(col).push(", ");
    }
    sql.push("r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM (");
    sql.append(inner);
    sql.push(") m JOIN resources r ON r.rid = m.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version ORDER BY ");
    for (i, key) in keys.iter().enumerate() {
        sql.push(KEY_COLUMNS[i]);
        sql.push(if key.descending { " DESC, " } else { " ASC, " });
    }
    sql.push("m.rid ASC");
    sql
}

/// A [`scoped_walk`]: the date parameter it walks, whether newest first, and the reference
/// filter that scopes it — its parameter and the id it names (bare or typed: the rows are kept
/// by id, the filter itself is checked on every row).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopedWalk<'q> {
    pub(crate) date: &'static SearchParamDef,
    pub(crate) desc: bool,
    pub(crate) reference: &'static SearchParamDef,
    pub(crate) target: &'q str,
}

/// A search about one resource (a patient, most often) sorted by one date alone can be answered
/// by walking that resource's dates in order (`idx_ref_date`, kept under each id a resource
/// refers to through a parameter that scopes a chart) and stopping at the page, instead of
/// computing the key of every match (see [`ScopedWalk`]).
pub(crate) fn scoped_walk(query: &SearchQuery) -> Option<ScopedWalk<'_>> {
    let [first] = query.sort.as_slice() else {
        return None;
    };
    let ParamRef::Indexed(def) = first.param else {
        return None;
    };
    if def.kind != SearchParamKind::Date || !matches!(storage(def), Storage::Own) {
        return None;
    }
    if query.filters.iter().any(|f| f.param == ParamRef::Id) {
        return None;
    }
    query
        .filters
        .iter()
        .find_map(|f| match (&f.param, &f.test) {
            (ParamRef::Indexed(r), FilterTest::AnyOf(values))
                if r.kind == SearchParamKind::Reference
                    && scopes_by_reference(&query.resource_type, r.name) =>
            {
                match values.as_slice() {
                    [FilterValue::Reference { id, .. }] => Some(ScopedWalk {
                        date: def,
                        desc: first.descending,
                        reference: r,
                        target: id.as_str(),
                    }),
                    _ => None,
                }
            }
            _ => None,
        })
}

/// The matches of a [`scoped_walk`] without a value for its date `def` (they come after every
/// date), in row-id order from the cursor when it is among them, `limit` of them, with the
/// walk's key ([`missing_date_key`]). Led by the resource's references less the rows of its
/// dates (`idx_ref_date`, read whole and hashed: a patient's few hundred rows), so that only
/// the resources without a date are probed — a patient's every Observation was probed for a
/// date on every last page of a chart. Each filter, the date's absence included, is still
/// checked on each candidate.
pub(crate) fn scoped_dateless_page(
    query: &SearchQuery,
    walk: &ScopedWalk,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    backend: Backend,
) -> Sql {
    let (def, desc, target) = (walk.date, walk.desc, walk.target);
    let mut inner = Sql::new("SELECT r.rid AS rid FROM resources r WHERE r.rid");
    inner.push(match backend {
        Backend::Postgres => " = ANY(ARRAY(SELECT x.rid FROM idx_reference x WHERE x.res_type = ",
        Backend::Sqlite => " IN (SELECT x.rid FROM idx_reference x WHERE x.res_type = ",
    });
    inner.bind_text(&query.resource_type);
    push_param(&mut inner, IndexAlias::X, walk.reference);
    inner
        .push(" AND x.target_id = ")
        .bind_text(target)
        .push(" AND x.rid NOT IN (SELECT s.rid FROM idx_ref_date s WHERE s.target_id = ")
        .bind_text(target)
        .push(" AND s.res_type = ")
        .bind_text(&query.resource_type)
        .push(" AND s.param = ")
        .bind_text(def.name)
        .push(match backend {
            Backend::Postgres => ") ORDER BY x.rid)) AND ",
            Backend::Sqlite => ")) AND ",
        })
        .push("NOT EXISTS (SELECT 1 FROM idx_date WHERE rid = r.rid AND param = ")
        .bind_text(def.name)
        .push(") AND ");
    inner.append(matches_probed(query, "r", vis));
    if let Some(c) = cursor
        && c.keys.first() == Some(&KeyValue::Int(missing_date_key(desc)))
    {
        inner.push(" AND r.rid > ").bind_i64(c.rid);
    }
    inner
        .push(" ORDER BY r.rid ASC LIMIT ")
        .bind_i64(limit as i64);
    let mut sql = Sql::new("SELECT ");
    sql.bind_i64(missing_date_key(desc));
    sql.push(" AS k0, r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM (");
    sql.append(inner);
    sql.push(") m JOIN resources r ON r.rid = m.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version ORDER BY m.rid ASC");
    sql
}

/// One forward page of a [`scoped_walk`]: the rows of `target`'s dates of the type in the key's
/// order from the cursor, every filter checked per row, `limit` matches (with the same keys and
/// order as [`page`]; each resource has one row per id and date parameter, holding its
/// earliest start and latest end).
pub(crate) fn scoped_walk_page(
    query: &SearchQuery,
    walk: &ScopedWalk,
    cursor: Option<&Cursor>,
    limit: usize,
    vis: &Visibility,
    backend: Backend,
) -> Sql {
    let (def, desc, target) = (walk.date, walk.desc, walk.target);
    let col = if desc { "s.high" } else { "s.low" };
    // PostgreSQL: each date row is probed for the filters on its own row id, and the resource's
    // row is read only for the visibility check, last (see `probed_only`): a chart's rows are
    // live resources' (index rows are removed with their version).
    let led = match backend {
        Backend::Postgres => probed_only(query, "s", vis),
        Backend::Sqlite => None,
    };
    let mut inner = Sql::new("SELECT ");
    inner.push(col).push(if led.is_some() {
        " AS k0, s.rid AS rid FROM idx_ref_date s WHERE s.target_id = "
    } else {
        " AS k0, s.rid AS rid FROM idx_ref_date s CROSS JOIN resources r WHERE s.target_id = "
    });
    inner
        .bind_text(target)
        .push(" AND s.res_type = ")
        .bind_text(&query.resource_type)
        .push(" AND s.param = ")
        .bind_text(def.name);
    if let Some(c) = cursor
        && let Some(KeyValue::Int(from)) = c.keys.first()
    {
        // Strictly after the cursor: an earlier (later) date, or the same one and a greater
        // row id.
        let (within, beyond) = if desc {
            (" <= ", " < ")
        } else {
            (" >= ", " > ")
        };
        inner
            .push(" AND ")
            .push(col)
            .push(within)
            .bind_i64(*from)
            .push(" AND (")
            .push(col)
            .push(beyond)
            .bind_i64(*from)
            .push(" OR s.rid > ")
            .bind_i64(c.rid)
            .push(")");
    }
    // The visibility is already in `matches_probed` when the resource's row is joined.
    let visible = match led {
        Some((probes, visible)) => {
            inner.append(probes);
            visible
        }
        None => {
            inner.push(" AND r.rid = s.rid AND ");
            inner.append(matches_probed(query, "r", vis));
            None
        }
    };
    let order = if desc { " DESC" } else { " ASC" };
    inner
        .push(" ORDER BY ")
        .push(col)
        .push(order)
        .push(", s.rid ASC");
    let inner = checked_last(inner, visible, Some("k0"), order, limit);

    let mut sql = Sql::new(
        "SELECT m.k0, r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM (",
    );
    sql.append(inner);
    sql.push(") m JOIN resources r ON r.rid = m.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version ORDER BY m.k0")
        .push(order)
        .push(", m.rid ASC");
    sql
}

/// Key `i` of a walked row as an expression (its walked date, or the key's own expression).
fn walk_key_expr(sql: &mut Sql, col: &'static str, key: &SortKey, i: usize) {
    if i == 0 {
        sql.push(col);
    } else {
        sort_expression(sql, key);
    }
}

/// `first`'s rows, then `second`'s, at most `limit` in all, in one statement. Both databases
/// read the parts of a `UNION ALL` in turn and stop at the limit, so `second` runs only when
/// `first` falls short; SQL does not promise that order, so the caller checks it.
pub(crate) fn then(first: Sql, second: Sql, limit: usize) -> Sql {
    let mut sql = Sql::new("SELECT * FROM (");
    sql.append(first);
    sql.push(") a UNION ALL SELECT * FROM (");
    sql.append(second);
    sql.push(") b LIMIT ").bind_i64(limit as i64);
    sql
}

/// The query's matches that have no value for `def` (they sort after every value).
pub(crate) fn without_value(query: &SearchQuery, def: &'static SearchParamDef) -> SearchQuery {
    let mut q = query.clone();
    q.filters.push(Filter {
        param: ParamRef::Indexed(def),
        test: FilterTest::Missing(true),
    });
    q
}

/// The key a match without a value for a date key has (see [`sort_expression`]).
pub(crate) fn missing_date_key(desc: bool) -> i64 {
    if desc { i64::MIN } else { i64::MAX }
}

/// The row ids a walk in the default order covers: `SELECT COUNT(*), MAX(rid)` of the type's
/// first `window` resources after `from` — fewer than `window` means the walk reaches the end.
pub(crate) fn rid_window(query: &SearchQuery, from: i64, window: usize) -> Sql {
    let mut sql = Sql::new("SELECT COUNT(*), MAX(w.rid) FROM (");
    sql.append(rid_window_rows(query, from, window));
    sql.push(") w");
    sql
}

/// The row ids of the type's first `window` resources after `from`.
fn rid_window_rows(query: &SearchQuery, from: i64, window: usize) -> Sql {
    let mut sql = Sql::new("SELECT rid FROM resources WHERE res_type = ");
    sql.bind_text(&query.resource_type)
        .push(" AND rid > ")
        .bind_i64(from)
        // The same bound as a row value on (type, row id): only the index on the type can
        // seek it, so PostgreSQL no longer reads the primary key from `from` and filters the
        // type (an import writes one type after another: the type's rows may start far on).
        .push(" AND (res_type, rid) > (")
        .bind_text(&query.resource_type)
        .push(", ")
        .bind_i64(from)
        .push(") ORDER BY res_type, rid LIMIT ")
        .bind_i64(window as i64);
    sql
}

/// One forward page in the default order (by row id) of the matches whose row id lies after
/// the cursor's and within [`rid_window`] of `window` resources from it (or anywhere after it
/// if that window reaches the end — rows written since included): a walk of the type's
/// resources by row id (its index on the type), every filter probed per row, that stops at the
/// page. The window is read within the page's statement, as a subquery run once.
pub(crate) fn rid_walk_page(
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    window: usize,
    limit: usize,
    vis: &Visibility,
    backend: Backend,
) -> Sql {
    if backend == Backend::Postgres
        && let Some(page) = date_led_walk_page(query, cursor, window, limit, vis)
    {
        return page;
    }
    let from = cursor.map_or(0, |c| c.rid);
    // The page's row ids first, then their versions: with the versions joined in the walk,
    // PostgreSQL may merge-join them from the table's start.
    let mut ids = Sql::new("SELECT r.rid AS rid FROM resources r WHERE r.rid > ");
    ids.bind_i64(from).push(" AND r.rid <= ");
    ids.append(rid_window_end(query, from, window));
    ids.push(" AND r.res_type = ")
        .bind_text(&query.resource_type)
        .push(" AND ");
    ids.append(matches_probed(query, "r", vis));
    ids.push(" ORDER BY r.rid ASC LIMIT ")
        .bind_i64(limit as i64);
    rows_of(ids, "ASC")
}

/// The last row id of [`rid_window_rows`] — or, when that window reaches the end, a row id
/// beyond every row — as a subquery the database runs once.
fn rid_window_end(query: &SearchQuery, from: i64, window: usize) -> Sql {
    let mut sql = Sql::new("(SELECT CASE WHEN COUNT(*) < ");
    sql.bind_i64(window as i64)
        .push(" THEN ")
        .bind_i64(i64::MAX)
        .push(" ELSE MAX(w.rid) END FROM (");
    sql.append(rid_window_rows(query, from, window));
    sql.push(") w)");
    sql
}

/// The page's rows (with their current versions) of `ids`, a statement of row ids, in row-id
/// order (`order`: `ASC` or `DESC`).
fn rows_of(ids: Sql, order: &'static str) -> Sql {
    let mut sql = Sql::new(
        "SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body, v.patient, r.sensitivity FROM (",
    );
    sql.append(ids);
    sql.push(") m JOIN resources r ON r.rid = m.rid JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version ORDER BY m.rid ")
        .push(order);
    sql
}

/// The date filter that can lead a walk by row id from its own index rows: a date range (or
/// several) of a parameter with rows of its own.
fn date_lead(query: &SearchQuery) -> Option<(usize, &'static SearchParamDef, &[FilterValue])> {
    query
        .filters
        .iter()
        .enumerate()
        .find_map(|(i, f)| match (&f.param, &f.test) {
            (ParamRef::Indexed(def), FilterTest::AnyOf(values))
                if def.kind == SearchParamKind::Date
                    && matches!(storage(def), Storage::Own)
                    && !values.is_empty()
                    && values.iter().all(|v| matches!(v, FilterValue::Date { .. })) =>
            {
                Some((i, *def, values.as_slice()))
            }
            _ => None,
        })
}

/// PostgreSQL, [`rid_walk_page`] of a search with a date range: the window's row ids read
/// from the date's own index rows in row-id order (`idx_date_rid`, which includes the type),
/// between the window's first and last resource of the type, each row that is in the range
/// probed there for the other filters, stopping at the page. A walk of the type's resources
/// probed each one for the date instead: `Observation?date=ge2025-01-01&_count=10` probed 71
/// candidates (224 of its 312 buffer visits), where the date's rows took 13. Index rows are
/// live resources' own (no `deleted` flag to read); the caller's visibility is checked last.
/// `None` without such a filter, or when a filter reads the resource's own columns.
fn date_led_walk_page(
    query: &SearchQuery,
    cursor: Option<&Cursor>,
    window: usize,
    limit: usize,
    vis: &Visibility,
) -> Option<Sql> {
    let (at, def, values) = date_lead(query)?;
    let (probes, visible) = probed_but(query, "s", vis, Some(at))?;
    let from = cursor.map_or(0, |c| c.rid);
    let mut inner = Sql::new("SELECT DISTINCT s.rid AS rid FROM idx_date s WHERE s.rid > ");
    inner
        .bind_i64(from)
        // From the window's first resource of the type: rows of other types before it (an
        // import writes one type after another) are not read.
        .push(" AND s.rid >= (SELECT rid FROM resources WHERE res_type = ")
        .bind_text(&query.resource_type)
        .push(" AND rid > ")
        .bind_i64(from)
        .push(" ORDER BY res_type, rid LIMIT 1) AND s.rid <= ");
    inner.append(rid_window_end(query, from, window));
    // The type is tested in a form no index can seek: with `s.res_type = …` PostgreSQL's
    // generic plan may read the date's value index (type, parameter, date) for every row in
    // the range and sort them, probing each for the other filters first (358 buffer visits
    // for ten Encounters of a status, instead of 47).
    inner
        .push(" AND COALESCE(s.res_type, '') = ")
        .bind_text(&query.resource_type);
    push_param(&mut inner, IndexAlias::S, def);
    inner.push(" AND (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            inner.push(" OR ");
        }
        if let FilterValue::Date { prefix, range } = v {
            date_condition(
                &mut inner, "s.low", "s.high", *prefix, range.low, range.high,
            );
        }
    }
    inner.push(")");
    inner.append(probes);
    inner.push(" ORDER BY s.rid ASC");
    Some(rows_of(
        checked_last(inner, visible, None, " ASC", limit),
        "ASC",
    ))
}

/// Whether a search in the default order may be walked by row id: one over the population
/// (not about one patient or a few ids, whose matches are few anyway).
pub(crate) fn rid_walkable(query: &SearchQuery) -> bool {
    query.sort.is_empty() && !query.filters.iter().any(|f| selectivity(f) <= 1)
}

/// Whether the query's leading filter finds its rows in row-id order: one value that fixes
/// every column of its index before `rid` (a code with its system, a typed reference, a URL,
/// an exact string or uri). A page in row-id order is then read from that index in order,
/// each row probed for the other filters, and stops at its limit (see [`index_led_rids`]):
/// on PostgreSQL the first page of `Observation?code=<system>|<code>` read 5 index pages for
/// its 11 rows, where a walk of the type by row id probed 146 Observations for their code.
pub(crate) fn lead_in_rid_order(query: &SearchQuery) -> bool {
    let Some((_, values, _)) = value_lead(query) else {
        return false;
    };
    matches!(
        values,
        [FilterValue::Token {
            system: TokenSystem::Is(_),
            code: Some(_),
        } | FilterValue::Reference {
            target_type: Some(_),
            ..
        } | FilterValue::ReferenceUrl(_)
            | FilterValue::Uri { below: false, .. }
            | FilterValue::String {
                mode: StringMatch::Exact,
                ..
            }]
    )
}
