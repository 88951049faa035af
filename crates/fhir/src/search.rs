//! FHIR search requests, parsed into typed values at the edge.
//!
//! [`SearchQuery::parse`] turns the decoded `name=value` pairs of a search request into a
//! [`SearchQuery`]: every parameter is resolved against the official definitions, every value is
//! parsed according to the parameter's type, prefixes and modifiers are checked. The store builds
//! its SQL from this typed form only; no request text ever becomes SQL.

use crate::datetime::{DateRange, parse_date_range};
use crate::extract::normalize_string;
use crate::{SearchParamDef, SearchParamKind, is_resource_type, search_param};

// The limits of one search, checked here, before any SQL is built: a search beyond them is a
// 400 with a message naming the limit (docs/api.md lists them). Each value becomes bound SQL
// parameters and a branch of the query's expression tree, of which the databases allow a few
// tens of thousands and a depth of about a thousand.

/// Default and maximum page sizes (a larger `_count` is lowered to the maximum).
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;
/// Most comma-separated alternatives of one parameter.
pub const MAX_VALUES: usize = 200;
/// Most values of one search, over all its parameters.
pub const MAX_TOTAL_VALUES: usize = 1000;
/// Most parameters of one search (result parameters such as `_count` included). Planning a
/// query grows faster than linearly with its criteria (on PostgreSQL 64 took two seconds).
pub const MAX_PARAMS: usize = 32;
/// Most `_sort` keys.
pub const MAX_SORT_KEYS: usize = 8;
/// Most `_include` and `_revinclude` parameters together.
pub const MAX_INCLUDES: usize = 10;

/// A parsed search request for one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub resource_type: crate::ResourceType,
    /// All must match (logical AND); each filter's values are alternatives (logical OR).
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub total: TotalMode,
    pub summary_count: bool,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// Parameters that were not understood (reported back, or refused under strict handling).
    pub ignored: Vec<IgnoredParam>,
}

/// A parameter the server ignored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoredParam {
    pub name: String,
    pub reason: String,
}

/// How the `total` of a search Bundle is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// Only when it is known without extra work (the whole result fits on the first page).
    Default,
    None,
    Accurate,
}

/// A sort key from `_sort`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub param: ParamRef,
    pub descending: bool,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: &'static SearchParamDef,
    pub target_type: Option<String>,
}

/// The parameter a filter or sort key is about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamRef {
    /// `_id`: the resource's logical id.
    Id,
    /// `_lastUpdated`: the time of the current version.
    LastUpdated,
    /// Any indexed parameter.
    Indexed(&'static SearchParamDef),
}

impl ParamRef {
    pub fn kind(&self) -> SearchParamKind {
        match self {
            ParamRef::Id => SearchParamKind::Token,
            ParamRef::LastUpdated => SearchParamKind::Date,
            ParamRef::Indexed(def) => def.kind,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ParamRef::Id => "_id",
            ParamRef::LastUpdated => "_lastUpdated",
            ParamRef::Indexed(def) => def.name,
        }
    }
}

/// One search criterion: a parameter and the alternatives it may match.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub param: ParamRef,
    pub test: FilterTest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterTest {
    /// `:missing=true|false`.
    Missing(bool),
    /// Matches when any of the values matches.
    AnyOf(Vec<FilterValue>),
    /// `:not`: matches when none of the values matches (tokens only).
    NoneOf(Vec<FilterValue>),
    /// A chained parameter: the reference must point to a `target_type` resource matching `filter`.
    Chain {
        target_type: String,
        filter: Box<Filter>,
    },
}

impl FilterTest {
    /// How many values the test compares with (a chain counts its inner test's).
    pub fn value_count(&self) -> usize {
        match self {
            FilterTest::Missing(_) => 1,
            FilterTest::AnyOf(v) | FilterTest::NoneOf(v) => v.len(),
            FilterTest::Chain { filter, .. } => filter.test.value_count(),
        }
    }
}

/// Comparison prefixes for ordered types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    fn split(value: &str) -> (Prefix, &str) {
        let table = [
            ("eq", Prefix::Eq),
            ("ne", Prefix::Ne),
            ("gt", Prefix::Gt),
            ("lt", Prefix::Lt),
            ("ge", Prefix::Ge),
            ("le", Prefix::Le),
            ("sa", Prefix::Sa),
            ("eb", Prefix::Eb),
            ("ap", Prefix::Ap),
        ];
        for (text, prefix) in table {
            if let Some(rest) = value.strip_prefix(text)
                && rest
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '.')
            {
                return (prefix, rest);
            }
        }
        (Prefix::Eq, value)
    }
}

/// How a string value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// Default: case- and accent-insensitive "starts with".
    StartsWith,
    /// `:exact`: case- and accent-sensitive equality.
    Exact,
    /// `:contains`: case- and accent-insensitive substring.
    Contains,
}

/// The system part of a token search value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSystem {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

/// A single parsed search value.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    String {
        /// Normalized (for starts-with and contains) or as given (for exact).
        value: String,
        mode: StringMatch,
    },
    Token {
        system: TokenSystem,
        code: Option<String>,
    },
    /// `:text` on a token: starts-with on the normalized display text.
    TokenText(String),
    /// `_id` values.
    Id(String),
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    Number {
        prefix: Prefix,
        /// The value and the range implied by its precision (`100` → [99.5, 100.5)).
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// A reference to `Type/id` (type may be unknown: `id` alone).
    Reference {
        target_type: Option<String>,
        id: String,
    },
    /// A reference given as an absolute URL or canonical.
    ReferenceUrl(String),
    /// `:identifier` on a reference.
    ReferenceIdentifier {
        system: TokenSystem,
        value: Option<String>,
    },
    Uri {
        value: String,
        below: bool,
    },
}

/// A search request that cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SearchError {
    /// The parameter at fault.
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> SearchError {
    SearchError {
        param: param.to_string(),
        message: message.into(),
    }
}

/// Parameters that control the result rather than filter it.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_include",
    "_revinclude",
    "_format",
    "_pretty",
    "_elements",
    "_cursor",
];

impl SearchQuery {
    /// Parses the decoded query pairs of a search on `resource_type`.
    ///
    /// Unknown parameters and modifiers are collected in `ignored`; values of known parameters
    /// that cannot be parsed are errors (a search that silently matched more than asked is worse
    /// than a refusal).
    pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Self, SearchError> {
        let Some(searched) = crate::ResourceType::parse(resource_type) else {
            return Err(err("", format!("unknown resource type '{resource_type}'")));
        };
        let mut query = SearchQuery {
            resource_type: searched,
            filters: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            total: TotalMode::Default,
            summary_count: false,
            includes: Vec::new(),
            revincludes: Vec::new(),
            ignored: Vec::new(),
        };
        if pairs.len() > MAX_PARAMS {
            return Err(err("", format!("at most {MAX_PARAMS} search parameters")));
        }
        let mut values = 0usize;
        for (key, value) in pairs {
            if key.contains('\0') || value.contains('\0') {
                return Err(err(key, "search parameters cannot contain NUL characters"));
            }
            let base = key.split([':', '.']).next().unwrap_or(key);
            if RESULT_PARAMS.contains(&base) {
                query.parse_result_param(base, key, value)?;
                continue;
            }
            match parse_filter(resource_type, key, value, 0)? {
                Parsed::Filter(filter) => {
                    values += filter.test.value_count();
                    if values > MAX_TOTAL_VALUES {
                        return Err(err(
                            key,
                            format!("at most {MAX_TOTAL_VALUES} values in one search"),
                        ));
                    }
                    query.filters.push(filter)
                }
                Parsed::Ignored(reason) => query.ignored.push(IgnoredParam {
                    name: key.clone(),
                    reason,
                }),
            }
        }
        if query.sort.len() > MAX_SORT_KEYS {
            return Err(err("_sort", format!("at most {MAX_SORT_KEYS} sort keys")));
        }
        if query.includes.len() + query.revincludes.len() > MAX_INCLUDES {
            return Err(err(
                "_include",
                format!("at most {MAX_INCLUDES} _include and _revinclude parameters"),
            ));
        }
        Ok(query)
    }

    fn parse_result_param(
        &mut self,
        base: &str,
        key: &str,
        value: &str,
    ) -> Result<(), SearchError> {
        match base {
            "_count" => {
                let n: usize = value.parse().map_err(|_| {
                    err(
                        key,
                        format!("_count must be a non-negative integer, not '{value}'"),
                    )
                })?;
                self.count = n.min(MAX_COUNT);
                // `_count=0` is the same as `_summary=count` (R4 search.html#count).
                if n == 0 {
                    self.summary_count = true;
                }
            }
            "_sort" => {
                for item in value.split(',').filter(|s| !s.is_empty()) {
                    let (descending, name) = match item.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, item),
                    };
                    let param = resolve_param(&self.resource_type, name)
                        .ok_or_else(|| err(key, format!("unknown sort parameter '{name}'")))?;
                    if let ParamRef::Indexed(def) = param
                        && matches!(
                            def.kind,
                            SearchParamKind::Composite | SearchParamKind::Special
                        )
                    {
                        return Err(err(key, format!("cannot sort by '{name}'")));
                    }
                    self.sort.push(SortKey { param, descending });
                }
            }
            "_total" => {
                self.total = match value {
                    "none" => TotalMode::None,
                    "accurate" | "estimate" => TotalMode::Accurate,
                    _ => return Err(err(key, "_total must be none, estimate or accurate")),
                }
            }
            "_summary" => match value {
                "count" => self.summary_count = true,
                "false" => {}
                _ => self.ignored.push(IgnoredParam {
                    name: key.to_string(),
                    reason: format!(
                        "_summary={value} is not supported; full resources are returned"
                    ),
                }),
            },
            "_include" | "_revinclude" => {
                if key.contains(":iterate") || key.contains(":recurse") {
                    self.ignored.push(IgnoredParam {
                        name: key.to_string(),
                        reason: "iterative includes are not supported".into(),
                    });
                    return Ok(());
                }
                let include = parse_include(key, value)?;
                if base == "_include" {
                    if include.source_type != self.resource_type.as_str() {
                        self.ignored.push(IgnoredParam {
                            name: key.to_string(),
                            reason: format!("_include source type must be {}", self.resource_type),
                        });
                    } else {
                        self.includes.push(include);
                    }
                } else {
                    self.revincludes.push(include);
                }
            }
            "_format" | "_pretty" | "_cursor" => {}
            _ => self.ignored.push(IgnoredParam {
                name: key.to_string(),
                reason: format!("{base} is not supported"),
            }),
        }
        Ok(())
    }
}

fn parse_include(key: &str, value: &str) -> Result<Include, SearchError> {
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    let target = parts.next();
    if !is_resource_type(source) {
        return Err(err(
            key,
            format!("unknown resource type '{source}' in {value}"),
        ));
    }
    let def = search_param(source, name)
        .filter(|d| d.kind == SearchParamKind::Reference)
        .ok_or_else(|| {
            err(
                key,
                format!("'{name}' is not a reference parameter of {source}"),
            )
        })?;
    if let Some(t) = target
        && !is_resource_type(t)
    {
        return Err(err(key, format!("unknown target type '{t}'")));
    }
    Ok(Include {
        source_type: source.to_string(),
        param: def,
        target_type: target.map(str::to_string),
    })
}

fn resolve_param(resource_type: &str, name: &str) -> Option<ParamRef> {
    match name {
        "_id" => Some(ParamRef::Id),
        "_lastUpdated" => Some(ParamRef::LastUpdated),
        _ => search_param(resource_type, name).map(ParamRef::Indexed),
    }
}

enum Parsed {
    Filter(Filter),
    Ignored(String),
}

fn parse_filter(
    resource_type: &str,
    key: &str,
    value: &str,
    depth: usize,
) -> Result<Parsed, SearchError> {
    // Chaining: `subject:Patient.name=x` or `subject.name=x` (one level).
    let (head, chained) = match key.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (key, None),
    };
    let (name, modifier) = match head.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (head, None),
    };
    let Some(param) = resolve_param(resource_type, name) else {
        return Ok(Parsed::Ignored(format!(
            "unknown search parameter '{name}' for {resource_type}"
        )));
    };
    if let ParamRef::Indexed(def) = param
        && matches!(
            def.kind,
            SearchParamKind::Composite | SearchParamKind::Special
        )
    {
        return Ok(Parsed::Ignored(format!(
            "{} parameter '{name}' is not supported",
            def.kind.code()
        )));
    }
    if let Some(rest) = chained {
        let ParamRef::Indexed(def) = param else {
            return Err(err(key, "only reference parameters can be chained"));
        };
        if def.kind != SearchParamKind::Reference {
            return Err(err(
                key,
                format!("'{name}' is not a reference parameter and cannot be chained"),
            ));
        }
        if depth > 0 {
            return Err(err(key, "only one level of chaining is supported"));
        }
        let target_type = match modifier {
            Some(t) if is_resource_type(t) => t.to_string(),
            Some(t) => return Err(err(key, format!("unknown resource type '{t}' in chain"))),
            None => match def.targets {
                [only] => (*only).to_string(),
                _ => {
                    return Err(err(
                        key,
                        format!(
                            "'{name}' can point to several types: name one, as {name}:Type.{rest}"
                        ),
                    ));
                }
            },
        };
        if !def.targets.is_empty() && !def.targets.contains(&target_type.as_str()) {
            return Err(err(key, format!("'{name}' cannot point to {target_type}")));
        }
        return match parse_filter(&target_type, rest, value, depth + 1)? {
            Parsed::Filter(inner) => Ok(Parsed::Filter(Filter {
                param,
                test: FilterTest::Chain {
                    target_type,
                    filter: Box::new(inner),
                },
            })),
            Parsed::Ignored(reason) => Err(err(key, reason)),
        };
    }

    let kind = param.kind();
    let modifier = match modifier {
        None => Modifier::None,
        Some(m) => match Modifier::parse(m, kind) {
            Some(m) => m,
            None => {
                // A resource type as modifier on a reference: `subject:Patient=123`.
                if kind == SearchParamKind::Reference && is_resource_type(m) {
                    Modifier::Type(m.to_string())
                } else {
                    return Err(err(
                        key,
                        format!(
                            "modifier ':{m}' is not supported on {} parameters",
                            kind.code()
                        ),
                    ));
                }
            }
        },
    };
    if let Modifier::Missing = modifier {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(err(key, ":missing takes true or false")),
        };
        if matches!(param, ParamRef::Id | ParamRef::LastUpdated) {
            // Every resource has an id and a lastUpdated.
            return Ok(Parsed::Filter(Filter {
                param,
                test: FilterTest::Missing(missing),
            }));
        }
        return Ok(Parsed::Filter(Filter {
            param,
            test: FilterTest::Missing(missing),
        }));
    }

    let raws = split_values(value);
    if raws.len() > MAX_VALUES {
        return Err(err(
            key,
            format!("at most {MAX_VALUES} alternative values per parameter"),
        ));
    }
    let mut values = Vec::new();
    for raw in raws {
        if raw.is_empty() {
            continue;
        }
        values.push(parse_value(param, &modifier, key, &raw)?);
    }
    if values.is_empty() {
        return Ok(Parsed::Ignored(format!("parameter '{key}' has no value")));
    }
    let test = if modifier == Modifier::Not {
        FilterTest::NoneOf(values)
    } else {
        FilterTest::AnyOf(values)
    };
    Ok(Parsed::Filter(Filter { param, test }))
}

#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    None,
    Exact,
    Contains,
    Missing,
    Not,
    Text,
    Identifier,
    Below,
    Type(String),
}

impl Modifier {
    fn parse(m: &str, kind: SearchParamKind) -> Option<Modifier> {
        use SearchParamKind as K;
        Some(match (m, kind) {
            ("missing", _) => Modifier::Missing,
            ("exact", K::String) => Modifier::Exact,
            ("contains", K::String) => Modifier::Contains,
            ("not", K::Token) => Modifier::Not,
            ("text", K::Token) => Modifier::Text,
            ("identifier", K::Reference) => Modifier::Identifier,
            ("below", K::Uri) => Modifier::Below,
            _ => return None,
        })
    }
}

/// Splits a value on unescaped commas and removes the `\` escapes (`\,` `\|` `\$` `\\`).
fn split_values(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '$' | '\\')) => current.push(next),
                // Keep an escaped `|` escaped: token splitting happens later.
                Some('|') => current.push_str("\\|"),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

/// Splits at every unescaped `|`, removing the escapes.
fn split_pipes(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => out.last_mut().into_iter().for_each(|s| s.push('|')),
                Some(other) => out.last_mut().into_iter().for_each(|s| {
                    s.push('\\');
                    s.push(other)
                }),
                None => out.last_mut().into_iter().for_each(|s| s.push('\\')),
            },
            '|' => out.push(String::new()),
            _ => out.last_mut().into_iter().for_each(|s| s.push(c)),
        }
    }
    out
}

/// Splits `system|code` at the first unescaped `|`.
fn split_pipe(value: &str) -> (Option<String>, String) {
    let mut idx = None;
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == b'|' {
            idx = Some(i);
            break;
        }
        i += 1;
    }
    let unescape = |s: &str| s.replace("\\|", "|");
    match idx {
        Some(i) => (Some(unescape(&value[..i])), unescape(&value[i + 1..])),
        None => (None, unescape(value)),
    }
}

fn parse_value(
    param: ParamRef,
    modifier: &Modifier,
    key: &str,
    raw: &str,
) -> Result<FilterValue, SearchError> {
    use SearchParamKind as K;
    if param == ParamRef::Id {
        return Ok(FilterValue::Id(raw.to_string()));
    }
    // An escaped `|` only matters to tokens, quantities and references.
    let unescaped;
    let raw = if matches!(param.kind(), K::String | K::Uri) && raw.contains("\\|") {
        unescaped = raw.replace("\\|", "|");
        unescaped.as_str()
    } else {
        raw
    };
    Ok(match param.kind() {
        K::String => match modifier {
            Modifier::Exact => FilterValue::String {
                value: raw.to_string(),
                mode: StringMatch::Exact,
            },
            Modifier::Contains => FilterValue::String {
                value: normalize_string(raw),
                mode: StringMatch::Contains,
            },
            _ => FilterValue::String {
                value: normalize_string(raw),
                mode: StringMatch::StartsWith,
            },
        },
        K::Token => {
            if *modifier == Modifier::Text {
                return Ok(FilterValue::TokenText(normalize_string(raw)));
            }
            let (system, code) = split_pipe(raw);
            let system = match system {
                None => TokenSystem::Any,
                Some(s) if s.is_empty() => TokenSystem::None,
                Some(s) => TokenSystem::Is(s),
            };
            let code = if code.is_empty() { None } else { Some(code) };
            if system == TokenSystem::Any && code.is_none() {
                return Err(err(key, "empty token"));
            }
            FilterValue::Token { system, code }
        }
        K::Date => {
            let (prefix, rest) = Prefix::split(raw);
            let range = parse_date_range(rest).ok_or_else(|| {
                err(
                    key,
                    format!("'{rest}' is not a valid date, dateTime or instant"),
                )
            })?;
            FilterValue::Date { prefix, range }
        }
        K::Number => {
            let (prefix, rest) = Prefix::split(raw);
            let (value, low, high) =
                parse_decimal(rest).ok_or_else(|| err(key, format!("'{rest}' is not a number")))?;
            FilterValue::Number {
                prefix,
                value,
                low,
                high,
            }
        }
        K::Quantity => {
            let (prefix, rest) = Prefix::split(raw);
            let parts = split_pipes(rest);
            let (number, system, code) = match parts.as_slice() {
                [n] => (n.clone(), None, None),
                [n, c] => (n.clone(), None, Some(c.clone())),
                [n, s, c] => (n.clone(), Some(s.clone()), Some(c.clone())),
                _ => return Err(err(key, format!("'{rest}' is not number|system|code"))),
            };
            let (value, low, high) = parse_decimal(&number)
                .ok_or_else(|| err(key, format!("'{number}' is not a number")))?;
            FilterValue::Quantity {
                prefix,
                value,
                low,
                high,
                system: system.filter(|s| !s.is_empty()),
                code: code.filter(|s| !s.is_empty()),
            }
        }
        K::Reference => match modifier {
            Modifier::Identifier => {
                let (system, value) = split_pipe(raw);
                FilterValue::ReferenceIdentifier {
                    system: match system {
                        None => TokenSystem::Any,
                        Some(s) if s.is_empty() => TokenSystem::None,
                        Some(s) => TokenSystem::Is(s),
                    },
                    value: if value.is_empty() { None } else { Some(value) },
                }
            }
            Modifier::Type(t) => {
                let id = raw.rsplit('/').next().unwrap_or(raw).to_string();
                FilterValue::Reference {
                    target_type: Some(t.clone()),
                    id,
                }
            }
            _ => parse_reference(raw),
        },
        K::Uri => FilterValue::Uri {
            value: raw.to_string(),
            below: *modifier == Modifier::Below,
        },
        K::Composite | K::Special => return Err(err(key, "unsupported parameter type")),
    })
}

fn parse_reference(raw: &str) -> FilterValue {
    let segments: Vec<&str> = raw.split('/').collect();
    if raw.contains("://") || raw.starts_with("urn:") {
        // An absolute reference: `…/Type/id` also matches the relative form when it is ours,
        // which the caller decides; here it is kept as a URL.
        return FilterValue::ReferenceUrl(raw.to_string());
    }
    match segments.as_slice() {
        // A bare id; anything else (`#contained`, text) is compared as written.
        [id] if crate::is_valid_id(id) => FilterValue::Reference {
            target_type: None,
            id: (*id).to_string(),
        },
        [ty, id] | [ty, id, "_history", _] if is_resource_type(ty) => FilterValue::Reference {
            target_type: Some((*ty).to_string()),
            id: (*id).to_string(),
        },
        _ => FilterValue::ReferenceUrl(raw.to_string()),
    }
}

/// Parses a FHIR decimal search value and the range its precision implies.
fn parse_decimal(text: &str) -> Option<(f64, f64, f64)> {
    let text = text.trim();
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let exponent: i32 = text
        .split(['e', 'E'])
        .nth(1)
        .map(|e| e.parse().unwrap_or(0))
        .unwrap_or(0);
    let decimals = mantissa.split('.').nth(1).map_or(0, |d| d.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some((value, value - half, value + half))
}

/// Whether a value matched by the index is in the half-open precision range of a number search.
pub fn number_range_contains(low: f64, high: f64, v: f64) -> bool {
    v >= low && v < high
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_string_token_date() {
        let q = SearchQuery::parse(
            "Patient",
            &pairs(&[
                ("family", "Smith"),
                ("gender", "female"),
                ("birthdate", "ge1970-01"),
            ]),
        )
        .unwrap();
        assert_eq!(q.filters.len(), 3);
        assert_eq!(
            q.filters[0].test,
            FilterTest::AnyOf(vec![FilterValue::String {
                value: "smith".into(),
                mode: StringMatch::StartsWith
            }])
        );
        match &q.filters[2].test {
            FilterTest::AnyOf(v) => match &v[0] {
                FilterValue::Date { prefix, .. } => assert_eq!(*prefix, Prefix::Ge),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_forms() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[("code", "http://loinc.org|1234-5,|abc,xyz,sys|")]),
        )
        .unwrap();
        let FilterTest::AnyOf(values) = &q.filters[0].test else {
            panic!()
        };
        assert_eq!(
            values,
            &vec![
                FilterValue::Token {
                    system: TokenSystem::Is("http://loinc.org".into()),
                    code: Some("1234-5".into())
                },
                FilterValue::Token {
                    system: TokenSystem::None,
                    code: Some("abc".into())
                },
                FilterValue::Token {
                    system: TokenSystem::Any,
                    code: Some("xyz".into())
                },
                FilterValue::Token {
                    system: TokenSystem::Is("sys".into()),
                    code: None
                },
            ]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
        assert_eq!(split_pipe(r"a\|b|c"), (Some("a|b".into()), "c".into()));
    }

    #[test]
    fn number_precision() {
        let (v, lo, hi) = parse_decimal("100").unwrap();
        assert_eq!((v, lo, hi), (100.0, 99.5, 100.5));
        let (_, lo, hi) = parse_decimal("1.5").unwrap();
        assert!((lo - 1.45).abs() < 1e-9 && (hi - 1.55).abs() < 1e-9);
        assert!(parse_decimal("abc").is_none());
        assert!(parse_decimal("1e400").is_none());
    }

    #[test]
    fn chain_and_unknown() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[("subject:Patient.family", "smith"), ("bogus", "1")]),
        )
        .unwrap();
        assert!(matches!(q.filters[0].test, FilterTest::Chain { .. }));
        assert_eq!(q.ignored.len(), 1);
        assert!(SearchQuery::parse("Observation", &pairs(&[("subject.family", "x")])).is_err());
        assert!(SearchQuery::parse("Observation", &pairs(&[("code.family", "x")])).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(SearchQuery::parse("Patient", &pairs(&[("birthdate", "yesterday")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("_count", "-1")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("family:below", "x")])).is_err());
        assert!(SearchQuery::parse("Patient", &pairs(&[("_sort", "nope")])).is_err());
    }

    #[test]
    fn oversized_searches_are_refused() {
        let many = vec!["x"; MAX_VALUES + 1].join(",");
        assert!(SearchQuery::parse("Patient", &pairs(&[("_id", &many)])).is_err());
        let params: Vec<(String, String)> = (0..=MAX_PARAMS)
            .map(|i| ("family".to_string(), i.to_string()))
            .collect();
        assert!(SearchQuery::parse("Patient", &params).is_err());
    }

    #[test]
    fn quantity_forms() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[("value-quantity", "gt5.4|http://unitsofmeasure.org|mg")]),
        )
        .unwrap();
        let FilterTest::AnyOf(values) = &q.filters[0].test else {
            panic!()
        };
        match &values[0] {
            FilterValue::Quantity {
                prefix,
                value,
                system,
                code,
                ..
            } => {
                assert_eq!(*prefix, Prefix::Gt);
                assert_eq!(*value, 5.4);
                assert_eq!(system.as_deref(), Some("http://unitsofmeasure.org"));
                assert_eq!(code.as_deref(), Some("mg"));
            }
            other => panic!("{other:?}"),
        }
    }
}
