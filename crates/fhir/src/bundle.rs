//! The entries of a batch or transaction Bundle as typed requests: what each entry asks for,
//! parsed once where the Bundle arrives (the HTTP API, an import), so that the records service
//! is handed resource types, ids, versions and search queries, never URLs to take apart.

use serde_json::Value;

use crate::search::SearchQuery;
use crate::{Id, ResourceType};

/// One entry's request.
#[derive(Debug, Clone)]
pub enum BundleEntry {
    /// `POST Type`: a create, conditional with `ifNoneExist`.
    Create {
        resource_type: ResourceType,
        value: Value,
        /// The entry's `fullUrl` (often `urn:uuid:…`), which other entries may refer to.
        full_url: Option<String>,
        if_none_exist: Option<SearchQuery>,
    },
    /// `PUT Type/id`, with the version the client last saw (`ifMatch`).
    Update {
        resource_type: ResourceType,
        id: Id,
        value: Value,
        if_match: Option<i64>,
    },
    /// `DELETE Type/id`.
    Delete { resource_type: ResourceType, id: Id },
    /// `GET` (or `HEAD`) of a read or search URL, answered like the same request on its own.
    Get { url: String },
}

/// Why an entry cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry's position in the Bundle.
    pub index: usize,
    pub kind: EntryErrorKind,
    pub message: String,
    /// The FHIRPath of the element at fault (`Bundle.entry[2].request.url`).
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryErrorKind {
    /// The URL names no R4 resource type.
    UnknownType,
    /// Anything else malformed.
    Invalid,
}

impl EntryError {
    /// The resource type an [`EntryErrorKind::UnknownType`] error is about.
    pub fn unknown_type(&self) -> Option<&str> {
        (self.kind == EntryErrorKind::UnknownType).then_some(self.message.as_str())
    }
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.index, self.message)
    }
}

impl std::error::Error for EntryError {}

/// Every entry of a Bundle, each parsed or the reason it cannot be.
pub fn entries(bundle: &Value) -> Vec<Result<BundleEntry, EntryError>> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect()
}

/// One entry (at `index`) of a batch or transaction Bundle.
pub fn parse_entry(index: usize, entry: &Value) -> Result<BundleEntry, EntryError> {
    let at = |field: &str| Some(format!("Bundle.entry[{index}].{field}"));
    let invalid = |message: String, field: &str| EntryError {
        index,
        kind: EntryErrorKind::Invalid,
        message,
        expression: at(field),
    };
    let request = entry.get("request").ok_or_else(|| {
        invalid(
            "entry.request is required in a batch or transaction".into(),
            "request",
        )
    })?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if url.is_empty() {
        return Err(invalid(
            "entry.request.url is required".into(),
            "request.url",
        ));
    }
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource_type = |name: &str| {
        ResourceType::parse(name).ok_or_else(|| EntryError {
            index,
            kind: EntryErrorKind::UnknownType,
            message: name.to_string(),
            expression: at("request.url"),
        })
    };
    let id = |text: &str| {
        Id::parse(text).ok_or_else(|| invalid(format!("'{text}' is not a valid id"), "request.url"))
    };
    let resource = entry.get("resource").cloned();
    match method {
        "POST" => {
            let [name] = segments.as_slice() else {
                return Err(invalid(
                    format!("POST needs a type URL, not '{url}'"),
                    "request.url",
                ));
            };
            let resource_type = resource_type(name)?;
            let value =
                resource.ok_or_else(|| invalid("POST needs a resource".into(), "resource"))?;
            let if_none_exist = match request.get("ifNoneExist").and_then(Value::as_str) {
                Some(q) => Some(
                    SearchQuery::parse(&resource_type, &query_pairs(q))
                        .map_err(|e| invalid(e.message, "request.ifNoneExist"))?,
                ),
                None => None,
            };
            Ok(BundleEntry::Create {
                resource_type,
                value,
                full_url: entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                if_none_exist,
            })
        }
        "PUT" => {
            let [name, id_text] = segments.as_slice() else {
                return Err(invalid(
                    format!(
                        "PUT needs a Type/id URL, not '{url}' (conditional update is not supported)"
                    ),
                    "request.url",
                ));
            };
            if query.is_some() {
                return Err(invalid(
                    "conditional update is not supported".into(),
                    "request.url",
                ));
            }
            let resource_type = resource_type(name)?;
            let id = id(id_text)?;
            let value =
                resource.ok_or_else(|| invalid("PUT needs a resource".into(), "resource"))?;
            let if_match = match request.get("ifMatch").and_then(Value::as_str) {
                Some(etag) => Some(version_of_etag(etag).ok_or_else(|| {
                    invalid(
                        format!("ifMatch '{etag}' is not an ETag"),
                        "request.ifMatch",
                    )
                })?),
                None => None,
            };
            Ok(BundleEntry::Update {
                resource_type,
                id,
                value,
                if_match,
            })
        }
        "DELETE" => {
            let [name, id_text] = segments.as_slice() else {
                return Err(invalid(
                    format!(
                        "DELETE needs a Type/id URL, not '{url}' (conditional delete is not supported)"
                    ),
                    "request.url",
                ));
            };
            Ok(BundleEntry::Delete {
                resource_type: resource_type(name)?,
                id: id(id_text)?,
            })
        }
        "GET" | "HEAD" => Ok(BundleEntry::Get {
            url: url.to_string(),
        }),
        other => Err(invalid(
            format!("request.method '{other}' is not supported"),
            "request.method",
        )),
    }
}

/// The version an ETag names: `W/"3"`, `"3"` or `3` → 3.
pub fn version_of_etag(etag: &str) -> Option<i64> {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"').parse().ok()
}

/// The pairs of a query string, form-decoded (`%XX` and `+`); an invalid escape is kept as it
/// is.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn etags() {
        assert_eq!(version_of_etag("W/\"3\""), Some(3));
        assert_eq!(version_of_etag("\"12\""), Some(12));
        assert_eq!(version_of_etag("x"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(
            query_pairs("a%20b+c%2=%zz&&x"),
            vec![
                ("a b c%2".to_string(), "%zz".to_string()),
                ("x".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn entries_are_typed_or_refused_with_their_place() {
        let bundle = json!({"entry": [
            {"request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x|1"},
             "resource": {"resourceType": "Patient"}, "fullUrl": "urn:uuid:1"},
            {"request": {"method": "PUT", "url": "Observation/o1", "ifMatch": "W/\"2\""},
             "resource": {"resourceType": "Observation"}},
            {"request": {"method": "DELETE", "url": "Condition/c1"}},
            {"request": {"method": "GET", "url": "Patient?name=x"}},
            {"request": {"method": "POST", "url": "Nonsense"}, "resource": {}},
            {"request": {"method": "PUT", "url": "Patient/bad id"}, "resource": {}},
            {"request": {"method": "PATCH", "url": "Patient/1"}},
            {"resource": {}},
        ]});
        let parsed = entries(&bundle);
        assert!(
            matches!(&parsed[0], Ok(BundleEntry::Create { resource_type, if_none_exist: Some(_), full_url: Some(_), .. }) if *resource_type == "Patient")
        );
        assert!(
            matches!(&parsed[1], Ok(BundleEntry::Update { id, if_match: Some(2), .. }) if *id == "o1")
        );
        assert!(matches!(&parsed[2], Ok(BundleEntry::Delete { .. })));
        assert!(matches!(&parsed[3], Ok(BundleEntry::Get { .. })));
        let unknown = parsed[4].as_ref().unwrap_err();
        assert_eq!(unknown.unknown_type(), Some("Nonsense"));
        assert_eq!(unknown.index, 4);
        assert_eq!(
            parsed[5].as_ref().unwrap_err().expression.as_deref(),
            Some("Bundle.entry[5].request.url")
        );
        assert!(parsed[6].is_err() && parsed[7].is_err());
    }
}
