//! Search-index extraction: evaluates each search parameter's expression on a resource and turns
//! the matched elements into typed index values.
//!
//! The expressions are parsed once (on first use) and kept with the FHIR type their result has
//! according to the element definitions, so that an element is interpreted by its declared type
//! (`Patient.telecom` is a ContactPoint, `Patient.gender` a code). Choice elements carry their
//! type from the evaluation (`valuePeriod` is a Period); what is still unknown (the target of
//! `resolve()`, say) is recognised by its JSON shape.
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::datetime::{DateRange, parse_date_range};
use crate::fhirpath::{self, Expr, Node};
use crate::reference::{parse_reference, reference_type_name, static_resource_type};
use crate::{SearchParamDef, SearchParamKind};

/// A value extracted for one search parameter, ready to be written to a typed index table.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A string parameter value, as written in the resource (the store normalizes it with
    /// [`normalize_string`]).
    String(String),
    /// A token: system and code as found, `text` the display/text for `:text` searches.
    Token {
        system: Option<String>,
        code: Option<String>,
        text: Option<String>,
    },
    /// A date range, both ends inclusive, in milliseconds since the Unix epoch (UTC).
    Date(DateRange),
    Number(f64),
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
    /// A reference: `Type/id` split when it is a relative (or local absolute) reference; `url` the
    /// reference text as written (absolute URLs, canonicals, `urn:uuid:`…).
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: String,
        identifier: Option<(Option<String>, Option<String>)>,
    },
    Uri(String),
}

/// One index row: the parameter it is for and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub param: &'static str,
    pub value: IndexValue,
    /// For a value of a contained resource (`param` is then one of the contained resource's
    /// parameters): which one. Such a value is no value of the container's own; it is found
    /// only by a chain through the container's `#id` reference (R4 3.1.1.5.5).
    pub contained: Option<ContainedIn>,
}

/// The contained resource an [`IndexEntry`] is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainedIn {
    /// Its `id` (a `#id` reference's text without the `#`).
    pub id: String,
    pub resource_type: &'static str,
}

/// The code system of ISO 4217 currency codes (`Money.currency`).
pub const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Normalizes text for FHIR string search (case- and accent-insensitive): compatibility
/// decomposition (NFKD), combining marks dropped, lower case. `"Ærø Müller"` → `"ærø muller"`.
pub fn normalize_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
    {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else if !matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{2bc}') {
            // Spaces and punctuation between words become one space; an apostrophe inside a
            // word goes (O'Brien is "obrien").
            gap = true;
        }
    }
    out
}

/// The starts of the later words of a normalized string ("van der berg" gives "der berg" and
/// "berg"), at most `max`: a name is found by the start of any of its words.
pub fn word_starts(normalized: &str, max: usize) -> impl Iterator<Item = &str> {
    normalized
        .match_indices(' ')
        .map(move |(i, _)| &normalized[i + 1..])
        .take(max)
}

/// The version of what [`extract`] and [`normalize_string`] produce: a store whose index was
/// built by an earlier version rebuilds it (`ironchart` does so at start, in the background).
pub const INDEX_VERSION: u32 = 3;

/// A search parameter ready to evaluate.
struct CompiledParam {
    def: &'static SearchParamDef,
    expr: Expr,
    /// The type of the result's items by the element definitions, when there is exactly one.
    declared_type: Option<&'static str>,
}

/// The compiled parameters of every resource type, built on first use.
fn compiled() -> &'static HashMap<&'static str, Vec<CompiledParam>> {
    static CACHE: OnceLock<HashMap<&'static str, Vec<CompiledParam>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        crate::resource_types()
            .iter()
            .map(|rt| {
                let params = crate::search_params_for(rt)
                    .filter_map(|def| compile(def, rt))
                    .collect();
                (*rt, params)
            })
            .collect()
    })
}

fn compile(def: &'static SearchParamDef, resource_type: &str) -> Option<CompiledParam> {
    if matches!(
        def.kind,
        SearchParamKind::Composite | SearchParamKind::Special
    ) || def.expression.trim().is_empty()
    {
        return None;
    }
    // Every official expression parses (a test checks it); one that did not would only mean
    // that this parameter is not indexed.
    let expr = fhirpath::parse(def.expression).ok()?;
    let declared_type = match fhirpath::static_types(&expr, resource_type).as_deref() {
        Some([t]) => Some(*t),
        _ => None,
    };
    Some(CompiledParam {
        def,
        expr,
        declared_type,
    })
}

/// Extracts the index entries of every search parameter of the resource's `resourceType`
/// (including the common ones such as `_id`, `_lastUpdated`, `_tag`). Composite and special
/// parameters are not extracted. Identical values of one parameter are listed once. An unknown or
/// missing `resourceType` yields nothing. The values of each contained resource (with a valid
/// `id` and a known type) follow, marked with [`IndexEntry::contained`].
pub fn extract(resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    extract_into(resource, None, &mut out);
    if out.is_empty() && !resource_type_known(resource) {
        return out;
    }
    // The values of contained resources, each under its own type's parameters.
    if let Some(contained) = resource.get("contained").and_then(Value::as_array) {
        for c in contained {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| crate::is_valid_id(id));
            let rt = c
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(static_resource_type);
            if let (Some(id), Some(resource_type)) = (id, rt) {
                let within = ContainedIn {
                    id: id.to_string(),
                    resource_type,
                };
                extract_into(c, Some(&within), &mut out);
            }
        }
    }
    out
}

fn resource_type_known(resource: &Value) -> bool {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .is_some_and(|rt| compiled().contains_key(rt))
}

fn extract_into(resource: &Value, within: Option<&ContainedIn>, out: &mut Vec<IndexEntry>) {
    let Some(params) = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(|rt| compiled().get(rt))
    else {
        return;
    };
    let mut values = Vec::new();
    for param in params {
        values.clear();
        extract_param(param, resource, &mut values);
        dedup(&mut values);
        out.extend(values.drain(..).map(|value| IndexEntry {
            param: param.def.name,
            value,
            contained: within.cloned(),
        }));
    }
}

/// The index values of one search parameter (by name) of a resource, deduplicated. Empty for an
/// unknown parameter or a composite/special one.
pub fn extract_values(resource: &Value, param: &str) -> Vec<IndexValue> {
    let Some(params) = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(|rt| compiled().get(rt))
    else {
        return Vec::new();
    };
    let mut values = Vec::new();
    // A type's own parameter of the same name would come after the common one.
    if let Some(p) = params.iter().rev().find(|p| p.def.name == param) {
        extract_param(p, resource, &mut values);
        dedup(&mut values);
    }
    values
}

fn extract_param(param: &CompiledParam, resource: &Value, out: &mut Vec<IndexValue>) {
    for node in fhirpath::evaluate(&param.expr, resource) {
        let ty = node_type(&node, param.declared_type);
        let value = node.json();
        match param.def.kind {
            SearchParamKind::String => string_values(ty, value, out),
            SearchParamKind::Token => token_values(ty, value, out),
            SearchParamKind::Date => date_values(ty, value, out),
            SearchParamKind::Number => number_values(value, out),
            SearchParamKind::Quantity => quantity_values(ty, value, out),
            SearchParamKind::Reference => reference_values(param.def, ty, value, resource, out),
            SearchParamKind::Uri => {
                if let Value::String(s) = value {
                    out.push(IndexValue::Uri(s.clone()));
                }
            }
            SearchParamKind::Composite | SearchParamKind::Special => {}
        }
    }
}

/// Removes repeated values, keeping the first of each.
fn dedup(values: &mut Vec<IndexValue>) {
    if values.len() < 2 {
        return;
    }
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut kept: Vec<IndexValue> = Vec::with_capacity(values.len());
    for v in values.drain(..) {
        let slot = seen.entry(value_hash(&v)).or_default();
        if slot.iter().any(|&i| kept.get(i) == Some(&v)) {
            continue;
        }
        slot.push(kept.len());
        kept.push(v);
    }
    *values = kept;
}

fn value_hash(v: &IndexValue) -> u64 {
    let mut h = DefaultHasher::new();
    match v {
        IndexValue::String(s) | IndexValue::Uri(s) => s.hash(&mut h),
        IndexValue::Token { system, code, text } => (system, code, text).hash(&mut h),
        IndexValue::Date(r) => r.hash(&mut h),
        IndexValue::Number(n) => n.to_bits().hash(&mut h),
        IndexValue::Quantity {
            value,
            system,
            code,
            unit,
        } => (value.to_bits(), system, code, unit).hash(&mut h),
        IndexValue::Reference {
            target_type,
            target_id,
            url,
            identifier,
        } => (target_type, target_id, url, identifier).hash(&mut h),
    }
    std::mem::discriminant(v).hash(&mut h);
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// Types

/// The FHIR type to interpret a node as: its type from the evaluation (choice elements,
/// resolved resources), else the declared type of the expression's result, else its shape.
fn node_type<'n>(node: &'n Node<'_>, declared: Option<&'static str>) -> Option<&'n str> {
    if let Some(t) = node.type_name {
        return Some(t);
    }
    let value = node.json();
    if let Some(rt) = value.get("resourceType").and_then(Value::as_str) {
        return Some(rt);
    }
    if let Some(t) = declared {
        // The declared type of a primitive element only matters for its JSON value; a complex
        // one names the structure.
        return Some(t);
    }
    match value {
        Value::Object(map) => Some(shape_type(map)),
        _ => node.fhir_type(),
    }
}

/// Recognises a complex datatype by the elements present.
fn shape_type(map: &Map<String, Value>) -> &'static str {
    let has = |k: &str| map.contains_key(k);
    let is_str = |k: &str| map.get(k).is_some_and(Value::is_string);
    if has("coding") {
        "CodeableConcept"
    } else if has("reference") {
        "Reference"
    } else if has("currency") {
        "Money"
    } else if map.get("value").is_some_and(Value::is_number) {
        "Quantity"
    } else if has("family") || has("given") || has("prefix") || has("suffix") {
        "HumanName"
    } else if ["line", "city", "district", "state", "postalCode", "country"]
        .iter()
        .any(|k| has(k))
    {
        "Address"
    } else if has("start") || has("end") {
        "Period"
    } else if has("low") || has("high") {
        "Range"
    } else if has("event") || has("repeat") {
        "Timing"
    } else if is_str("value") {
        "Identifier"
    } else if is_str("code") || is_str("system") {
        "Coding"
    } else if map.get("identifier").is_some_and(Value::is_object) {
        "Reference"
    } else if is_str("text") {
        "CodeableConcept"
    } else if is_str("display") {
        "Coding"
    } else {
        "Element"
    }
}

fn is_quantity_type(t: &str) -> bool {
    matches!(
        t,
        "Quantity" | "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity"
    )
}

fn str_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Calls `f` with each string of `v` (a string, or an array of them).
fn each_str(v: Option<&Value>, mut f: impl FnMut(&str)) {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(f),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Kinds

fn string_values(ty: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    let mut push = |s: &str| {
        if !s.trim().is_empty() {
            out.push(IndexValue::String(s.to_string()));
        }
    };
    let map = match value {
        Value::String(s) => return push(s),
        Value::Object(map) => map,
        _ => return,
    };
    let fields: &[&str] = match ty {
        Some("HumanName") => &["family", "given", "prefix", "suffix", "text"],
        Some("Address") => &[
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "text",
        ],
        Some("CodeableConcept") => {
            push_codeable_concept_text(map, &mut push);
            return;
        }
        Some("Coding") => &["display", "code"],
        Some("ContactPoint") | Some("Identifier") => &["value"],
        Some("Reference") => &["display"],
        Some("Quantity" | "Age" | "Duration" | "Distance" | "Count" | "Money") => &["unit"],
        Some("Annotation") => &["text"],
        Some("Attachment") => &["title"],
        // Anything else: the element's own string members (not nested structures, not the
        // technical ones).
        _ => {
            for (k, v) in map {
                let technical = matches!(
                    k.as_str(),
                    "id" | "url" | "system" | "reference" | "use" | "resourceType"
                );
                match v {
                    Value::String(s) if !technical => push(s),
                    _ => {}
                }
            }
            return;
        }
    };
    for f in fields {
        each_str(map.get(*f), &mut push);
    }
}

fn push_codeable_concept_text(map: &Map<String, Value>, push: &mut impl FnMut(&str)) {
    each_str(map.get("text"), &mut *push);
    if let Some(Value::Array(codings)) = map.get("coding") {
        for c in codings {
            each_str(c.get("display"), &mut *push);
        }
    }
}

fn token_values(ty: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    let code_only = |code: String| IndexValue::Token {
        system: None,
        code: Some(code),
        text: None,
    };
    let map = match value {
        Value::String(s) if !s.is_empty() => return out.push(code_only(s.clone())),
        Value::Bool(b) => return out.push(code_only(b.to_string())),
        Value::Number(n) => return out.push(code_only(n.to_string())),
        Value::Object(map) => map,
        _ => return,
    };
    match ty.unwrap_or("Element") {
        "CodeableConcept" => {
            if let Some(Value::Array(codings)) = map.get("coding") {
                for c in codings.iter().filter_map(Value::as_object) {
                    push_coding(c, out);
                }
            }
            if let Some(text) = str_field(map, "text") {
                out.push(IndexValue::Token {
                    system: None,
                    code: None,
                    text: Some(text),
                });
            }
        }
        "Coding" => push_coding(map, out),
        "Identifier" | "ContactPoint" => {
            let system = str_field(map, "system");
            let code = str_field(map, "value");
            let text = map
                .get("type")
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            if system.is_some() || code.is_some() || text.is_some() {
                out.push(IndexValue::Token { system, code, text });
            }
        }
        // Other structures have no token form: recognise their shape as a last resort.
        other => match shape_type(map) {
            shaped @ ("CodeableConcept" | "Coding" | "Identifier") if shaped != other => {
                token_values(Some(shaped), value, out)
            }
            _ => {}
        },
    }
}

fn push_coding(map: &Map<String, Value>, out: &mut Vec<IndexValue>) {
    let system = str_field(map, "system");
    let code = str_field(map, "code");
    let text = str_field(map, "display");
    if system.is_some() || code.is_some() || text.is_some() {
        out.push(IndexValue::Token { system, code, text });
    }
}

fn date_values(ty: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    let map = match value {
        Value::String(s) => {
            if let Some(r) = parse_date_range(s) {
                out.push(IndexValue::Date(r));
            }
            return;
        }
        Value::Object(map) => map,
        _ => return,
    };
    match ty {
        Some("Period") => {
            if let Some(r) = period_range(map) {
                out.push(IndexValue::Date(r));
            }
        }
        Some("Timing") => {
            each_str(map.get("event"), |s| {
                if let Some(r) = parse_date_range(s) {
                    out.push(IndexValue::Date(r));
                }
            });
            if let Some(r) = map
                .get("repeat")
                .and_then(|r| r.get("boundsPeriod"))
                .and_then(Value::as_object)
                .and_then(period_range)
            {
                out.push(IndexValue::Date(r));
            }
        }
        _ => {}
    }
}

/// A Period as a range: from the start of `start` to the end of `end`, open ends unbounded.
/// `None` when both are missing or either is not a valid date.
fn period_range(map: &Map<String, Value>) -> Option<DateRange> {
    let bound = |key: &str| -> Result<Option<DateRange>, ()> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_date_range(s).map(Some).ok_or(()),
            Some(_) => Err(()),
        }
    };
    let (start, end) = (bound("start").ok()?, bound("end").ok()?);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(DateRange {
        low: start.map_or(i64::MIN, |r| r.low),
        high: end.map_or(i64::MAX, |r| r.high),
    })
}

fn number_values(value: &Value, out: &mut Vec<IndexValue>) {
    if let Some(n) = value.as_f64().filter(|n| n.is_finite()) {
        out.push(IndexValue::Number(n));
    }
}

fn quantity_values(ty: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    let map = match value {
        Value::Number(_) => {
            if let Some(v) = value.as_f64().filter(|n| n.is_finite()) {
                out.push(IndexValue::Quantity {
                    value: v,
                    system: None,
                    code: None,
                    unit: None,
                });
            }
            return;
        }
        Value::Object(map) => map,
        _ => return,
    };
    let ty = ty.unwrap_or("Element");
    if ty == "Range" {
        for end in ["low", "high"] {
            if let Some(q) = map.get(end) {
                quantity_values(Some("Quantity"), q, out);
            }
        }
        return;
    }
    let Some(v) = map
        .get("value")
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
    else {
        return;
    };
    if ty == "Money" || (map.contains_key("currency") && !is_quantity_type(ty)) {
        let currency = str_field(map, "currency");
        out.push(IndexValue::Quantity {
            value: v,
            system: currency.as_ref().map(|_| CURRENCY_SYSTEM.to_string()),
            code: currency,
            unit: None,
        });
    } else if is_quantity_type(ty) || shape_type(map) == "Quantity" {
        out.push(IndexValue::Quantity {
            value: v,
            system: str_field(map, "system"),
            code: str_field(map, "code"),
            unit: str_field(map, "unit"),
        });
    }
}

fn reference_values(
    def: &SearchParamDef,
    ty: Option<&str>,
    value: &Value,
    resource: &Value,
    out: &mut Vec<IndexValue>,
) {
    let map = match value {
        // canonical, uri: kept as written.
        // (A bare id among them keeps it as its target id, as a bare reference does.)
        Value::String(s) if !s.is_empty() => {
            out.push(IndexValue::Reference {
                target_type: None,
                target_id: crate::is_valid_id(s).then(|| s.clone()),
                url: s.clone(),
                identifier: None,
            });
            return;
        }
        Value::Object(map) => map,
        _ => return,
    };
    // A resource in place of a reference (`Bundle.entry[0].resource`): a reference to it.
    if let Some(rt) = map.get("resourceType").and_then(Value::as_str) {
        let wanted = def.targets.is_empty() || def.targets.contains(&rt);
        if let (true, Some(id)) = (wanted, map.get("id").and_then(Value::as_str)) {
            out.push(IndexValue::Reference {
                target_type: Some(rt.to_string()),
                target_id: Some(id.to_string()),
                url: format!("{rt}/{id}"),
                identifier: None,
            });
        }
        return;
    }
    let ty = ty.unwrap_or("Reference");
    if ty == "Identifier" {
        let identifier = (str_field(map, "system"), str_field(map, "value"));
        if identifier.0.is_some() || identifier.1.is_some() {
            out.push(IndexValue::Reference {
                target_type: None,
                target_id: None,
                url: String::new(),
                identifier: Some(identifier),
            });
        }
        return;
    }
    if let Some(r) = reference_value(map, resource) {
        out.push(r);
    }
}

/// The type of the resource contained under `id`.
fn contained_type(resource: &Value, id: &str) -> Option<&'static str> {
    resource
        .get("contained")?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))?
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(static_resource_type)
}

/// The index value of a Reference: `Type/id` split out when the reference has that form, the
/// reference text (without `/_history/…`) as `url`, and its `identifier`. Contained (`#id`)
/// references and References with neither a reference text nor an identifier give `None`.
fn reference_value(map: &Map<String, Value>, resource: &Value) -> Option<IndexValue> {
    let identifier = map
        .get("identifier")
        .and_then(Value::as_object)
        .map(|i| (str_field(i, "system"), str_field(i, "value")))
        .filter(|(s, v)| s.is_some() || v.is_some());
    let declared_type = map
        .get("type")
        .and_then(Value::as_str)
        .and_then(reference_type_name);
    match map.get("reference").and_then(Value::as_str) {
        // A contained resource: a reference with a value and the contained resource's type,
        // to nothing outside the resource.
        Some(r) if r.starts_with('#') => Some(IndexValue::Reference {
            target_type: contained_type(resource, &r[1..])
                .or(declared_type)
                .map(str::to_string),
            target_id: None,
            url: r.to_string(),
            identifier,
        }),
        Some(r) if !r.is_empty() => match parse_reference(r) {
            Some(p) => Some(IndexValue::Reference {
                target_type: Some(p.resource_type.to_string()),
                target_id: Some(p.id.to_string()),
                url: p.unversioned.to_string(),
                identifier,
            }),
            // A reference written as a bare id (no type): its id is kept as such, so that a
            // search by that id finds it through the index like any other.
            None => Some(IndexValue::Reference {
                target_type: declared_type.map(str::to_string),
                target_id: crate::is_valid_id(r).then(|| r.to_string()),
                url: r.to_string(),
                identifier,
            }),
        },
        _ => identifier.map(|id| IndexValue::Reference {
            target_type: declared_type.map(str::to_string),
            target_id: None,
            url: String::new(),
            identifier: Some(id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        for (input, expected) in [
            ("Chalmers", "chalmers"),
            ("MÜLLER", "muller"),
            ("Çelik Ğ", "celik g"),
            ("ﬁne", "fine"),
            ("İstanbul", "istanbul"),
            ("Ærø", "ærø"),
            ("José", "jose"),
            ("Jose\u{301}", "jose"),
            ("", ""),
            ("O'Brien", "obrien"),
            ("O\u{2019}Brien", "obrien"),
            ("van der  Berg", "van der berg"),
            ("Smith-Jones", "smith jones"),
            (" St. John, Jr. ", "st john jr"),
            ("d'Artagnan", "dartagnan"),
        ] {
            assert_eq!(normalize_string(input), expected, "{input}");
        }
        let starts: Vec<&str> = word_starts("van der berg", 8).collect();
        assert_eq!(starts, ["der berg", "berg"]);
        assert_eq!(word_starts("smith", 8).count(), 0);
    }

    #[test]
    fn reference_parsing_table() {
        /// (base, type, id, version, unversioned)
        type Parts<'s> = (Option<&'s str>, &'s str, &'s str, Option<&'s str>, &'s str);
        let cases: &[(&str, Option<Parts>)] = &[
            (
                "Patient/123",
                Some((None, "Patient", "123", None, "Patient/123")),
            ),
            (
                "Patient/123/_history/4",
                Some((None, "Patient", "123", Some("4"), "Patient/123")),
            ),
            (
                "http://example.org/fhir/Observation/a.b-c",
                Some((
                    Some("http://example.org/fhir"),
                    "Observation",
                    "a.b-c",
                    None,
                    "http://example.org/fhir/Observation/a.b-c",
                )),
            ),
            (
                "https://x/fhir/Patient/1/_history/2",
                Some((
                    Some("https://x/fhir"),
                    "Patient",
                    "1",
                    Some("2"),
                    "https://x/fhir/Patient/1",
                )),
            ),
            (
                "http://hl7.org/fhir/ValueSet/example|4.0.1",
                Some((
                    Some("http://hl7.org/fhir"),
                    "ValueSet",
                    "example",
                    None,
                    "http://hl7.org/fhir/ValueSet/example",
                )),
            ),
            ("#p1", None),
            ("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", None),
            ("Patient", None),
            ("Patient/", None),
            ("Unknown/1", None),
            ("patient/1", None),
            ("Patient/has space", None),
            ("Patient/1/2", None),
            ("foo/Patient/1", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let got = parse_reference(input)
                .map(|p| (p.base, p.resource_type, p.id, p.version, p.unversioned));
            assert_eq!(got, *expected, "{input}");
        }
        assert_eq!(reference_type_name("Patient"), Some("Patient"));
        assert_eq!(
            reference_type_name("http://hl7.org/fhir/StructureDefinition/Location"),
            Some("Location")
        );
        assert_eq!(reference_type_name("Nope"), None);
    }

    #[test]
    fn dedup_keeps_first_of_each() {
        let t = |c: &str| IndexValue::Token {
            system: None,
            code: Some(c.to_string()),
            text: None,
        };
        let mut v = vec![
            t("a"),
            t("b"),
            t("a"),
            IndexValue::Number(1.0),
            t("b"),
            IndexValue::Number(1.0),
        ];
        dedup(&mut v);
        assert_eq!(v, vec![t("a"), t("b"), IndexValue::Number(1.0)]);
    }
}
