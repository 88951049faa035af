//! FHIR R4 (4.0.1) knowledge for ironchart: the resource and element definitions and the search
//! parameters (generated from the official definitions by `cargo xtask codegen`), JSON validation,
//! a FHIRPath subset for search-parameter extraction, and the parsing of FHIR dates.
//!
//! This crate is pure: no I/O, no database, no network. Everything here works on `serde_json::Value`s.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod datetime;
pub mod extract;
pub mod fhirpath;
pub mod generated;
pub mod reference;
pub mod search;
pub mod storage;
pub mod validate;

mod ids;

pub use datetime::Instant;
pub use generated::search_params::SEARCH_PARAMS;
pub use ids::{Id, PatientId, ResourceType, UnknownResourceType};
/// Whether a string is a FHIR `id` (`[A-Za-z0-9\-\.]{1,64}`): the one test of the grammar.
pub use validate::primitive::is_id as is_valid_id;

/// The FHIR version this crate implements.
pub const FHIR_VERSION: &str = "4.0.1";

/// The type of a search parameter, as in `SearchParameter.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl SearchParamKind {
    /// The FHIR code of this kind (`"token"`, `"date"`, …).
    pub fn code(self) -> &'static str {
        match self {
            SearchParamKind::Number => "number",
            SearchParamKind::Date => "date",
            SearchParamKind::String => "string",
            SearchParamKind::Token => "token",
            SearchParamKind::Reference => "reference",
            SearchParamKind::Composite => "composite",
            SearchParamKind::Quantity => "quantity",
            SearchParamKind::Uri => "uri",
            SearchParamKind::Special => "special",
        }
    }
}

/// One official search parameter as it applies to one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParamDef {
    /// The resource type it applies to (`"Patient"`), or `"Resource"` for the parameters common to all.
    pub resource: &'static str,
    /// The parameter name used in URLs (`"family"`).
    pub name: &'static str,
    pub kind: SearchParamKind,
    /// The FHIRPath expression restricted to this resource type's branches
    /// (`"Patient.name.family"`); empty when the official definition has none.
    pub expression: &'static str,
    /// Allowed target resource types of a reference parameter.
    pub targets: &'static [&'static str],
    /// The canonical URL of the official definition.
    pub url: &'static str,
}

/// Whether `name` is an R4 resource type.
pub fn is_resource_type(name: &str) -> bool {
    generated::resource_types::RESOURCE_TYPES
        .binary_search(&name)
        .is_ok()
}

/// All R4 resource types, sorted.
pub fn resource_types() -> &'static [&'static str] {
    generated::resource_types::RESOURCE_TYPES
}

/// The search parameters of `resource_type`, including the ones common to every resource
/// (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`).
pub fn search_params_for(resource_type: &str) -> impl Iterator<Item = &'static SearchParamDef> {
    let own = params_of(resource_type);
    let common = params_of("Resource");
    common.iter().chain(own.iter())
}

/// The search parameter `name` of `resource_type` (or a common one).
pub fn search_param(resource_type: &str, name: &str) -> Option<&'static SearchParamDef> {
    let own = params_of(resource_type);
    if let Ok(i) = own.binary_search_by(|p| p.name.cmp(name)) {
        return Some(&own[i]);
    }
    let common = params_of("Resource");
    common
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .map(|i| &common[i])
}

fn params_of(resource_type: &str) -> &'static [SearchParamDef] {
    // SEARCH_PARAMS is sorted by (resource, name).
    let all = SEARCH_PARAMS;
    let start = all.partition_point(|p| p.resource < resource_type);
    let end = all.partition_point(|p| p.resource <= resource_type);
    &all[start..end]
}

/// The search parameters that put a resource of `resource_type` in a Patient's compartment
/// (from the official patient CompartmentDefinition). Empty when the type is not in it.
pub fn patient_compartment_params(resource_type: &str) -> &'static [&'static str] {
    let table = generated::compartment::PATIENT_COMPARTMENT;
    match table.binary_search_by(|(t, _)| (*t).cmp(resource_type)) {
        Ok(i) => table[i].1,
        Err(_) => &[],
    }
}
