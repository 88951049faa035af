//! Structural validation of FHIR R4 resources in JSON form, against the element definitions
//! generated from the official StructureDefinitions ([`crate::generated::elements`]).
//!
//! What is checked: the resource type, known elements only, choice elements (`value[x]`),
//! cardinality and the array/single shape that follows from it, primitive JSON types and lexical
//! formats, primitive companions (`_given`), no empty objects, arrays or strings, no `null` outside
//! primitive arrays, nested resources (`contained`, `Bundle.entry.resource`, …) by their own type,
//! extensions (`url` and either a value or nested extensions), a nesting depth limit, and the
//! codes of `code` elements with a `required` binding (`Observation.status`, `HumanName.use`, …)
//! whenever the official definitions enumerate the value set.
//! What is not checked: invariants other than the extension one, other terminology bindings
//! (those of `Coding` and `CodeableConcept`, those of strength `extensible` or weaker, and value
//! sets such as MIME types or languages that need an external terminology), profiles.
//!
//! Every problem found is reported (up to [`MAX_ISSUES`]) with a FHIRPath-style location such as
//! `Patient.name[0].given[1]` or `Observation.valueQuantity.value`. Messages name elements and
//! expected formats but never repeat the values, which may be health data.

pub mod primitive;

use std::fmt;

use serde_json::{Map, Value};

use crate::generated::elements::{self, ElementDef, TypeDef, TypeKind, ValueSetDef};

/// The most issues reported for one resource; a warning says when more were left out.
pub const MAX_ISSUES: usize = 100;

/// The deepest nesting of JSON objects accepted (resources, datatypes and backbone elements all
/// count one level).
pub const MAX_DEPTH: usize = 40;

/// The longest string accepted, in characters (the FHIR limit of 1 MiB for `string`).
pub const MAX_STRING_CHARS: usize = 1024 * 1024;

/// How bad an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The resource is invalid.
    Error,
    /// Worth knowing, but the resource is not rejected for it.
    Warning,
}

impl Severity {
    /// The FHIR `OperationOutcome.issue.severity` code.
    pub fn code(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// What kind of problem an [`Issue`] is: FHIR `OperationOutcome.issue.code` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// Content invalid against the specification (general).
    Invalid,
    /// A structural problem: unknown element, wrong JSON type, array where a single value is
    /// expected (or the reverse), empty object or array, misplaced `null`, too many repetitions.
    Structure,
    /// A required element is missing.
    Required,
    /// A primitive value is not valid for its type (bad date, empty string, out of range…).
    Value,
    /// A code is not in the value set that its element is bound to with `required` strength.
    CodeInvalid,
    /// A rule of the specification between elements is broken (extensions: value or nested
    /// extensions, not both).
    Invariant,
    /// Content too long or too deeply nested (a denial-of-service protection).
    TooLong,
    /// Too much wrong to go on: validation stopped.
    TooCostly,
    /// The resource type is not supported (not an R4 resource type).
    NotSupported,
}

impl IssueCode {
    /// The FHIR issue-type code (`"structure"`, `"required"`, …).
    pub fn code(&self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::Invariant => "invariant",
            IssueCode::TooLong => "too-long",
            IssueCode::TooCostly => "too-costly",
            IssueCode::NotSupported => "not-supported",
        }
    }
}

/// One problem found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// Where: a FHIRPath-style location (`Patient.name[0].given[1]`); `resourceType` for a
    /// problem with the resource type itself; empty for the document as a whole.
    pub expression: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) at {}: {}",
            self.severity.code(),
            self.code.code(),
            if self.expression.is_empty() {
                "(root)"
            } else {
                &self.expression
            },
            self.message
        )
    }
}

/// Validates a resource; `Err` holds every issue found (errors and warnings) when there is at
/// least one error.
pub fn validate_resource(value: &Value) -> Result<(), Vec<Issue>> {
    let issues = resource_issues(value);
    if issues.iter().any(|i| i.severity == Severity::Error) {
        Err(issues)
    } else {
        Ok(())
    }
}

/// Every issue found in a resource, warnings included; empty when it is valid and unremarkable.
pub fn resource_issues(value: &Value) -> Vec<Issue> {
    let mut validator = Validator {
        issues: Vec::new(),
        path: String::new(),
        truncated: false,
    };
    validator.resource(value, None, 0);
    if validator.truncated {
        validator.issues.push(Issue {
            severity: Severity::Warning,
            code: IssueCode::TooCostly,
            expression: String::new(),
            message: format!("more than {MAX_ISSUES} issues: the rest were not reported"),
        });
    }
    validator.issues
}

/// A property of a JSON object matched to its element definition, with its primitive companion.
struct Found<'v> {
    el: &'static ElementDef,
    /// The JSON property name without `_` (`valueQuantity`, `given`).
    name: &'v str,
    /// The type of the value: the choice variant for a choice element, else the element's type
    /// (empty for a content reference).
    ty: &'static str,
    value: Option<&'v Value>,
    companion: Option<&'v Value>,
}

impl Found<'_> {
    fn is_primitive(&self) -> bool {
        self.el.content_ref.is_empty() && is_primitive(self.ty)
    }
}

struct Validator {
    issues: Vec<Issue>,
    /// The location being checked; segments are pushed and popped as the walk goes.
    path: String,
    truncated: bool,
}

impl Validator {
    fn full(&self) -> bool {
        self.truncated
    }

    fn report(&mut self, code: IssueCode, message: impl Into<String>) {
        if self.issues.len() >= MAX_ISSUES {
            self.truncated = true;
            return;
        }
        self.issues.push(Issue {
            severity: Severity::Error,
            code,
            expression: self.path.clone(),
            message: message.into(),
        });
    }

    /// Reports at the child `name` of the current location.
    fn report_child(&mut self, name: &str, code: IssueCode, message: impl Into<String>) {
        let mark = self.push(name);
        self.report(code, message);
        self.path.truncate(mark);
    }

    /// Appends `.name` (or `name` at the root) to the location; returns the length to truncate to.
    fn push(&mut self, name: &str) -> usize {
        let mark = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        mark
    }

    fn push_index(&mut self, index: usize) -> usize {
        let mark = self.path.len();
        self.path.push('[');
        self.path.push_str(&index.to_string());
        self.path.push(']');
        mark
    }

    /// A resource at the current location (the root, or a nested one, of type `expected` when
    /// the element allows only one resource type).
    fn resource(&mut self, value: &Value, expected: Option<&str>, depth: usize) {
        let Some(object) = value.as_object() else {
            self.report(IssueCode::Structure, "a resource must be a JSON object");
            return;
        };
        let resource_type = match object.get("resourceType") {
            Some(Value::String(name)) => name,
            Some(_) => {
                self.report_child(
                    "resourceType",
                    IssueCode::Structure,
                    "resourceType must be a string",
                );
                return;
            }
            None => {
                self.report_child(
                    "resourceType",
                    IssueCode::Required,
                    "resourceType is missing",
                );
                return;
            }
        };
        let Some(def) = elements::type_def(resource_type).filter(|d| d.kind == TypeKind::Resource)
        else {
            let message = format!(
                "`{}` is not a FHIR R4 resource type",
                shorten(resource_type)
            );
            self.report_child("resourceType", IssueCode::NotSupported, message);
            return;
        };
        if let Some(expected) = expected.filter(|e| *e != def.name) {
            let message = format!("expected a resource of type `{expected}`");
            self.report_child("resourceType", IssueCode::Structure, message);
            return;
        }
        let mark = self.path.len();
        if self.path.is_empty() {
            self.path.push_str(def.name);
        }
        self.object(def, "", object, depth, true);
        self.path.truncate(mark);
    }

    /// The JSON object at the current location, whose elements are the children of `prefix` in
    /// `def` (all top-level elements of `def` when `prefix` is empty).
    fn object(
        &mut self,
        def: &'static TypeDef,
        prefix: &str,
        object: &Map<String, Value>,
        depth: usize,
        is_resource: bool,
    ) {
        if depth >= MAX_DEPTH {
            self.report(
                IssueCode::TooLong,
                format!("nested too deeply (more than {MAX_DEPTH} levels)"),
            );
            return;
        }
        if object.is_empty() {
            self.report(IssueCode::Structure, "an object must not be empty");
            return;
        }
        let children: Vec<&'static ElementDef> = children(def, prefix).collect();
        let mut found: Vec<Found<'_>> = Vec::with_capacity(object.len());
        for (key, value) in object {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, is_companion) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some((el, ty)) = find_child(&children, name) else {
                let key = shorten(key);
                let message = format!("unknown element `{key}`");
                self.report_child(&key, IssueCode::Structure, message);
                continue;
            };
            match found.iter_mut().find(|f| f.name == name) {
                Some(entry) if is_companion => entry.companion = Some(value),
                Some(entry) => entry.value = Some(value),
                None => found.push(Found {
                    el,
                    name,
                    ty,
                    value: (!is_companion).then_some(value),
                    companion: is_companion.then_some(value),
                }),
            }
        }

        for (i, entry) in found.iter().enumerate() {
            if let Some(first) = found[..i].iter().find(|f| std::ptr::eq(f.el, entry.el)) {
                let message = format!(
                    "only one of the `{}` choices is allowed (`{}` is given too)",
                    leaf(entry.el.path),
                    first.name
                );
                self.report_child(entry.name, IssueCode::Structure, message);
            }
        }

        for el in &children {
            if el.min > 0 && !found.iter().any(|f| std::ptr::eq(f.el, *el)) {
                let name = leaf(el.path);
                let message = format!("required element `{name}` is missing");
                self.report_child(
                    name.strip_suffix("[x]").unwrap_or(name),
                    IssueCode::Required,
                    message,
                );
            }
        }

        for entry in &found {
            if self.full() {
                return;
            }
            self.element(def, entry, depth);
        }

        if def.name == "Extension" && prefix.is_empty() {
            let has_value = found.iter().any(|f| f.el.path == "value[x]");
            let has_extensions = found.iter().any(|f| f.el.path == "extension");
            if has_value == has_extensions {
                self.report(
                    IssueCode::Invariant,
                    "an extension must have either a value or nested extensions, not both",
                );
            }
        }
    }

    /// One element (and its companion) of the object at the current location.
    fn element(&mut self, def: &'static TypeDef, entry: &Found<'_>, depth: usize) {
        let el = entry.el;
        let primitive = entry.is_primitive();
        if entry.companion.is_some() && !primitive {
            let key = format!("_{}", entry.name);
            let message = format!("unknown element `{}`", shorten(&key));
            self.report_child(&key, IssueCode::Structure, message);
        }
        let companion = entry.companion.filter(|_| primitive);
        let mark = self.push(entry.name);
        if el.max == 0 {
            self.report(IssueCode::Structure, "this element is not allowed here");
        } else if el.max > 1 {
            self.repeating(def, entry, companion, depth);
        } else {
            self.single(def, entry, companion, depth);
        }
        self.path.truncate(mark);
    }

    fn repeating(
        &mut self,
        def: &'static TypeDef,
        entry: &Found<'_>,
        companion: Option<&Value>,
        depth: usize,
    ) {
        let el = entry.el;
        let primitive = entry.is_primitive();
        let values = match entry.value {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => {
                self.report(
                    IssueCode::Structure,
                    format!("`{}` repeats: it must be a JSON array", entry.name),
                );
                return;
            }
        };
        let companions = match companion {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => {
                self.report(
                    IssueCode::Structure,
                    format!(
                        "`_{}` must be a JSON array, like `{}`",
                        entry.name, entry.name
                    ),
                );
                return;
            }
        };
        if values.is_some_and(|v| v.is_empty()) || companions.is_some_and(|c| c.is_empty()) {
            self.report(IssueCode::Structure, "an array must not be empty");
            return;
        }
        let len_values = values.map_or(0, Vec::len);
        let len_companions = companions.map_or(0, Vec::len);
        if values.is_some() && companions.is_some() && len_values != len_companions {
            self.report(
                IssueCode::Structure,
                format!(
                    "`{}` and `_{}` must have the same number of items",
                    entry.name, entry.name
                ),
            );
        }
        let len = len_values.max(len_companions);
        if u32::try_from(len).map_or(true, |n| n > el.max) {
            self.report(
                IssueCode::Structure,
                format!("at most {} repetitions are allowed", el.max),
            );
        }
        if u32::try_from(len).is_ok_and(|n| n < el.min) {
            self.report(
                IssueCode::Required,
                format!("at least {} repetitions are required", el.min),
            );
        }
        for i in 0..len {
            if self.full() {
                return;
            }
            let value = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
            let extra = companions.and_then(|c| c.get(i)).filter(|c| !c.is_null());
            let mark = self.push_index(i);
            if primitive {
                if value.is_none() && extra.is_none() {
                    self.report(
                        IssueCode::Structure,
                        "null is only allowed where the companion `_` array has an item",
                    );
                }
                if let Some(value) = value {
                    self.primitive(entry, value);
                }
                if let Some(extra) = extra {
                    self.companion(extra, depth);
                }
            } else {
                match value {
                    Some(value) => self.complex(def, el, entry.ty, value, depth),
                    None => self.report(IssueCode::Structure, "null is not allowed here"),
                }
            }
            self.path.truncate(mark);
        }
    }

    fn single(
        &mut self,
        def: &'static TypeDef,
        entry: &Found<'_>,
        companion: Option<&Value>,
        depth: usize,
    ) {
        let el = entry.el;
        if let Some(value) = entry.value {
            match value {
                Value::Array(_) => self.report(
                    IssueCode::Structure,
                    format!(
                        "`{}` does not repeat: it must be a single value, not an array",
                        entry.name
                    ),
                ),
                Value::Null => self.report(IssueCode::Structure, "null is not allowed here"),
                value if entry.is_primitive() => self.primitive(entry, value),
                value => self.complex(def, el, entry.ty, value, depth),
            }
        }
        if let Some(extra) = companion {
            match extra {
                Value::Array(_) => self.report(
                    IssueCode::Structure,
                    format!("`_{}` must be a single object, not an array", entry.name),
                ),
                Value::Null => self.report(IssueCode::Structure, "null is not allowed here"),
                extra => self.companion(extra, depth),
            }
        }
    }

    /// A complex value (datatype, backbone element or resource) at the current location.
    fn complex(
        &mut self,
        def: &'static TypeDef,
        el: &'static ElementDef,
        ty: &'static str,
        value: &Value,
        depth: usize,
    ) {
        if ty == "Resource" {
            self.resource(value, None, depth + 1);
            return;
        }
        let type_def = elements::type_def(ty);
        if type_def.is_some_and(|d| d.kind == TypeKind::Resource) {
            // `Bundle.entry.response.outcome` is an OperationOutcome.
            self.resource(value, Some(ty), depth + 1);
            return;
        }
        let Some(object) = value.as_object() else {
            let what = if ty.is_empty() || ty == "BackboneElement" {
                "an element"
            } else {
                ty
            };
            self.report(
                IssueCode::Structure,
                format!("expected a JSON object ({what})"),
            );
            return;
        };
        if !el.content_ref.is_empty() {
            self.object(def, el.content_ref, object, depth + 1, false);
        } else if has_children(def, el.path) {
            self.object(def, el.path, object, depth + 1, false);
        } else if let Some(type_def) = type_def {
            self.object(type_def, "", object, depth + 1, false);
        } else {
            // Every complex type has a table; an unknown one would be a generator bug.
            self.report(
                IssueCode::NotSupported,
                format!("no definition for type `{ty}`"),
            );
        }
    }

    /// The `_name` companion of a primitive: an object with `id` and `extension` only.
    fn companion(&mut self, value: &Value, depth: usize) {
        let Some(object) = value.as_object() else {
            self.report(
                IssueCode::Structure,
                "the `_` companion of a primitive must be an object with `id` or `extension`",
            );
            return;
        };
        match elements::type_def("Element") {
            Some(element) => self.object(element, "", object, depth + 1, false),
            None => self.report(IssueCode::NotSupported, "no definition for type `Element`"),
        }
    }

    /// A primitive value of `entry` (of type `entry.ty`) at the current location.
    fn primitive(&mut self, entry: &Found<'_>, value: &Value) {
        let ty = entry.ty;
        match ty {
            "boolean" => {
                if !value.is_boolean() {
                    self.report(
                        IssueCode::Structure,
                        "expected a JSON boolean (true or false)",
                    );
                }
            }
            "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
                let Value::Number(number) = value else {
                    self.report(
                        IssueCode::Structure,
                        format!("expected a JSON number ({ty})"),
                    );
                    return;
                };
                if ty == "decimal" {
                    return;
                }
                let text = number.to_string();
                let min = match ty {
                    "positiveInt" => 1,
                    "unsignedInt" => 0,
                    _ => i32::MIN,
                };
                match primitive::parse_integer(&text) {
                    Some(n) if n >= min => {}
                    Some(_) => {
                        self.report(IssueCode::Value, format!("{ty} must be at least {min}"))
                    }
                    None => self.report(
                        IssueCode::Value,
                        format!("expected a whole number within 32 bits ({ty})"),
                    ),
                }
            }
            _ => match value {
                Value::String(text) => {
                    if self.string(ty, text)
                        && let Some(value_set) = entry.el.value_set
                    {
                        self.code(entry.name, value_set, text);
                    }
                }
                _ => self.report(
                    IssueCode::Structure,
                    format!("expected a JSON string ({ty})"),
                ),
            },
        }
    }

    /// A primitive of a string-based type: emptiness, length and lexical format. Returns whether
    /// the value is well-formed (nothing was reported).
    fn string(&mut self, ty: &str, text: &str) -> bool {
        if text.is_empty() {
            self.report(IssueCode::Value, "a string must not be empty");
            return false;
        }
        if ty != "base64Binary"
            && text.len() > MAX_STRING_CHARS
            && text.chars().count() > MAX_STRING_CHARS
        {
            self.report(
                IssueCode::TooLong,
                format!("a string must not be longer than {MAX_STRING_CHARS} characters"),
            );
            return false;
        }
        let problem = match ty {
            "code" => (!primitive::is_code(text))
                .then_some("a code must not have leading, trailing or repeated whitespace"),
            "id" => (!primitive::is_id(text))
                .then_some("an id is 1 to 64 of the characters A-Z, a-z, 0-9, '-' and '.'"),
            "uri" | "url" | "canonical" => {
                (!primitive::is_uri(text)).then_some("a URI must not contain whitespace")
            }
            "oid" => (!primitive::is_oid(text))
                .then_some("an oid is `urn:oid:` followed by an OID (like 2.16.840.1)"),
            "uuid" => (!primitive::is_uuid(text))
                .then_some("a uuid is `urn:uuid:` followed by a lower-case UUID"),
            "base64Binary" => (!primitive::is_base64(text)).then_some("not valid base64 content"),
            "date" => (!primitive::is_date(text))
                .then_some("a date is YYYY, YYYY-MM or YYYY-MM-DD (a real date)"),
            "dateTime" => (!primitive::is_date_time(text)).then_some(
                "a dateTime is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a \
                 time zone (Z or +hh:mm)",
            ),
            "instant" => (!primitive::is_instant(text)).then_some(
                "an instant is YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm)",
            ),
            "time" => (!primitive::is_time(text)).then_some("a time is hh:mm:ss[.fff]"),
            "xhtml" => (!text.trim_start().starts_with("<div"))
                .then_some("narrative must be an XHTML <div> element"),
            _ => None, // string, markdown
        };
        match problem {
            Some(message) => {
                self.report(IssueCode::Value, message);
                false
            }
            None => true,
        }
    }

    /// A well-formed code of the element `name`, whose required binding is to `value_set`.
    fn code(&mut self, name: &str, value_set: &ValueSetDef, code: &str) {
        if value_set.contains(code) {
            return;
        }
        /// Value sets this small are listed in full in the message.
        const LISTED: usize = 10;
        let allowed = if value_set.codes.len() <= LISTED {
            format!("one of {}", value_set.codes.join(", "))
        } else {
            format!("one of its {} codes", value_set.codes.len())
        };
        self.report(
            IssueCode::CodeInvalid,
            format!(
                "`{name}` has a code outside its required value set {} (allowed: {allowed})",
                value_set.url
            ),
        );
    }
}

/// The direct children of `prefix` in `def` (the top-level elements when `prefix` is empty).
fn children<'p>(
    def: &'static TypeDef,
    prefix: &'p str,
) -> impl Iterator<Item = &'static ElementDef> + 'p {
    let range = descendants(def, prefix);
    let skip = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    range
        .iter()
        .filter(move |e| e.path.get(skip..).is_some_and(|rest| !rest.contains('.')))
}

/// The elements of `def` below `prefix` (all of them when `prefix` is empty).
fn descendants(def: &'static TypeDef, prefix: &str) -> &'static [ElementDef] {
    if prefix.is_empty() {
        return def.elements;
    }
    let low = format!("{prefix}.");
    // '/' follows '.' in byte order: every path starting with "prefix." sorts before "prefix/".
    let high = format!("{prefix}/");
    let start = def.elements.partition_point(|e| e.path < low.as_str());
    let end = def.elements.partition_point(|e| e.path < high.as_str());
    def.elements.get(start..end).unwrap_or(&[])
}

fn has_children(def: &'static TypeDef, path: &str) -> bool {
    !descendants(def, path).is_empty()
}

/// The element among `children` that a JSON property `name` (without `_`) stands for, and the
/// type of its value (the variant of a choice element).
fn find_child(
    children: &[&'static ElementDef],
    name: &str,
) -> Option<(&'static ElementDef, &'static str)> {
    if let Some(el) = children.iter().find(|e| leaf(e.path) == name) {
        return Some((el, el.types.first().copied().unwrap_or("")));
    }
    children.iter().find_map(|el| {
        let base = leaf(el.path).strip_suffix("[x]")?;
        let suffix = name.strip_prefix(base)?;
        let ty = el.types.iter().find(|t| is_type_suffix(t, suffix))?;
        Some((*el, *ty))
    })
}

/// Whether `suffix` is the choice suffix of type `ty` (`Quantity`, `DateTime` for `dateTime`).
fn is_type_suffix(ty: &str, suffix: &str) -> bool {
    let mut t = ty.chars();
    let mut s = suffix.chars();
    match (t.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && t.as_str() == s.as_str(),
        _ => false,
    }
}

/// The last segment of a relative element path.
fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// FHIR primitive type names start with a lower-case letter, complex ones with a capital.
fn is_primitive(ty: &str) -> bool {
    ty.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Input echoed in a message is cut short.
fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(value: Value) -> Vec<(String, &'static str)> {
        resource_issues(&value)
            .into_iter()
            .map(|i| (i.expression, i.code.code()))
            .collect()
    }

    #[test]
    fn choice_suffixes() {
        assert!(is_type_suffix("dateTime", "DateTime"));
        assert!(is_type_suffix("Quantity", "Quantity"));
        assert!(!is_type_suffix("dateTime", "dateTime"));
        assert!(!is_type_suffix("string", ""));
    }

    #[test]
    fn children_of_backbone_elements() {
        let patient = elements::type_def("Patient")
            .map(|d| children(d, "contact").map(|e| e.path).collect::<Vec<_>>());
        let contact = patient.unwrap_or_default();
        assert!(contact.contains(&"contact.name"));
        assert!(contact.contains(&"contact.id"));
        assert!(!contact.iter().any(|p| p.matches('.').count() > 1));
    }

    #[test]
    fn minimal_resources() {
        assert_eq!(issues(json!({"resourceType": "Patient"})), vec![]);
        assert_eq!(
            issues(json!({"resourceType": "Patient", "birthDate": "1970-02-30"})),
            vec![("Patient.birthDate".to_owned(), "value")]
        );
        assert_eq!(
            issues(json!({"resourceType": "Patient", "multipleBirthInteger": 0, "active": true})),
            vec![]
        );
    }

    #[test]
    fn integer_ranges() {
        let attachment = |size: Value| {
            issues(json!({
                "resourceType": "Media", "status": "completed",
                "content": {"size": size}
            }))
        };
        assert_eq!(attachment(json!(0)), vec![]);
        assert_eq!(
            attachment(json!(-1)),
            vec![("Media.content.size".to_owned(), "value")]
        );
        assert_eq!(
            attachment(json!(1.5)),
            vec![("Media.content.size".to_owned(), "value")]
        );
        assert_eq!(
            attachment(json!(4_294_967_296u64)),
            vec![("Media.content.size".to_owned(), "value")]
        );
    }

    #[test]
    fn companions() {
        let ok = json!({
            "resourceType": "Patient",
            "name": [{"given": ["A", null], "_given": [null, {"extension": [
                {"url": "http://example.org/x", "valueString": "B"}
            ]}]}]
        });
        assert_eq!(issues(ok), vec![]);
        let unaligned = json!({
            "resourceType": "Patient",
            "name": [{"given": ["A", null], "_given": [null]}]
        });
        assert_eq!(
            issues(unaligned),
            vec![
                ("Patient.name[0].given".to_owned(), "structure"),
                ("Patient.name[0].given[1]".to_owned(), "structure"),
            ]
        );
        let bad_member = json!({"resourceType": "Patient", "_birthDate": {"value": "x"}});
        assert_eq!(
            issues(bad_member),
            vec![("Patient.birthDate.value".to_owned(), "structure")]
        );
        let complex = json!({"resourceType": "Patient", "_name": [{"id": "a"}]});
        assert_eq!(
            issues(complex),
            vec![("Patient._name".to_owned(), "structure")]
        );
    }

    #[test]
    fn extension_rule() {
        let both = json!({"resourceType": "Patient", "extension": [{
            "url": "http://example.org/x", "valueString": "a",
            "extension": [{"url": "y", "valueBoolean": true}]
        }]});
        assert_eq!(
            issues(both),
            vec![("Patient.extension[0]".to_owned(), "invariant")]
        );
        let neither =
            json!({"resourceType": "Patient", "modifierExtension": [{"url": "u", "id": "a"}]});
        assert_eq!(
            issues(neither),
            vec![("Patient.modifierExtension[0]".to_owned(), "invariant")]
        );
        let no_url = json!({"resourceType": "Patient", "extension": [{"valueString": "a"}]});
        assert_eq!(
            issues(no_url),
            vec![("Patient.extension[0].url".to_owned(), "required")]
        );
    }

    #[test]
    fn content_references() {
        let questionnaire = json!({
            "resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [
                {"linkId": "1.1", "type": "string", "item": [{"linkId": "1.1.1"}]}
            ]}]
        });
        assert_eq!(
            issues(questionnaire),
            vec![(
                "Questionnaire.item[0].item[0].item[0].type".to_owned(),
                "required"
            )]
        );
    }

    #[test]
    fn issues_are_capped() {
        let mut object = Map::new();
        object.insert("resourceType".into(), json!("Patient"));
        for i in 0..150 {
            object.insert(format!("unknown{i}"), json!(1));
        }
        let found = resource_issues(&Value::Object(object));
        assert_eq!(found.len(), MAX_ISSUES + 1);
        assert_eq!(found[MAX_ISSUES].severity, Severity::Warning);
        assert_eq!(found[MAX_ISSUES].code, IssueCode::TooCostly);
    }
}
