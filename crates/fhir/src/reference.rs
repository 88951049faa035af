//! Literal references (`Patient/1`, `http://x/fhir/Patient/1/_history/2`) taken apart, for
//! extraction, FHIRPath's `resolve()` and the records service alike.

/// A reference text split into its parts (`Patient/123`, `http://x/fhir/Patient/123/_history/2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedReference<'s> {
    /// The service base of an absolute reference (`http://x/fhir`), `None` for a relative one.
    pub base: Option<&'s str>,
    pub resource_type: &'static str,
    pub id: &'s str,
    pub version: Option<&'s str>,
    /// The reference without the `/_history/…` part (and without a canonical's `|version`).
    pub unversioned: &'s str,
}

/// Splits a literal reference (`Type/id`, `Type/id/_history/v`, `http…/Type/id`) or a canonical
/// URL ending in `Type/id` (`|version` ignored). `None` for local (`#id`) and `urn:` references,
/// unknown resource types and invalid ids.
pub fn parse_reference(s: &str) -> Option<ParsedReference<'_>> {
    let main = s.split(['|', '#']).next().unwrap_or("");
    let (path, version) = match main.rsplit_once("/_history/") {
        Some((p, v)) if !v.is_empty() && !v.contains('/') => (p, Some(v)),
        _ => (main, None),
    };
    let (head, id) = path.rsplit_once('/')?;
    let (base, type_name) = match head.rsplit_once('/') {
        Some((b, t)) => (Some(b), t),
        None => (None, head),
    };
    if let Some(b) = base {
        let absolute = b.starts_with("http://") || b.starts_with("https://");
        if !absolute {
            return None;
        }
    }
    if !crate::is_valid_id(id) {
        return None;
    }
    Some(ParsedReference {
        base,
        resource_type: static_resource_type(type_name)?,
        id,
        version,
        unversioned: path,
    })
}

/// The resource type named in `Reference.type` (`Patient`, or the URL of its definition
/// `http://hl7.org/fhir/StructureDefinition/Patient`).
pub fn reference_type_name(s: &str) -> Option<&'static str> {
    let name = s
        .strip_prefix("http://hl7.org/fhir/StructureDefinition/")
        .unwrap_or(s);
    static_resource_type(name)
}

pub(crate) fn static_resource_type(name: &str) -> Option<&'static str> {
    crate::ResourceType::parse(name).map(crate::ResourceType::as_str)
}
