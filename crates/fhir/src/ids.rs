//! The names of things, parsed once at the edge: a resource type (one of R4's, from the
//! generated table), a resource id (the FHIR id grammar), a Patient's id. Code that holds one
//! of these does not check it again.

use std::fmt;
use std::ops::Deref;

use crate::generated::resource_types::RESOURCE_TYPES;

/// An R4 resource type. Only the generated table's names can become one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    pub const PATIENT: ResourceType = ResourceType("Patient");
    pub const ENCOUNTER: ResourceType = ResourceType("Encounter");
    pub const OBSERVATION: ResourceType = ResourceType("Observation");
    pub const CONDITION: ResourceType = ResourceType("Condition");
    pub const DOCUMENT_REFERENCE: ResourceType = ResourceType("DocumentReference");
    pub const DIAGNOSTIC_REPORT: ResourceType = ResourceType("DiagnosticReport");
    pub const SERVICE_REQUEST: ResourceType = ResourceType("ServiceRequest");
    pub const MEDICATION_REQUEST: ResourceType = ResourceType("MedicationRequest");
    pub const MEDICATION: ResourceType = ResourceType("Medication");
    pub const ALLERGY_INTOLERANCE: ResourceType = ResourceType("AllergyIntolerance");
    pub const IMMUNIZATION: ResourceType = ResourceType("Immunization");
    pub const BINARY: ResourceType = ResourceType("Binary");
    pub const PRACTITIONER: ResourceType = ResourceType("Practitioner");

    /// The resource type named `name` (exactly, case included), if R4 has it.
    pub fn parse(name: &str) -> Option<ResourceType> {
        RESOURCE_TYPES
            .binary_search(&name)
            .ok()
            .map(|i| ResourceType(RESOURCE_TYPES[i]))
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl Deref for ResourceType {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for ResourceType {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq<str> for ResourceType {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ResourceType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A name that is no R4 resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownResourceType(pub String);

impl fmt::Display for UnknownResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not an R4 resource type", self.0)
    }
}

impl std::error::Error for UnknownResourceType {}

impl std::str::FromStr for ResourceType {
    type Err = UnknownResourceType;

    fn from_str(s: &str) -> Result<ResourceType, UnknownResourceType> {
        ResourceType::parse(s).ok_or_else(|| UnknownResourceType(s.to_string()))
    }
}

/// A resource id: 1 to 64 of `A-Z a-z 0-9 - .` (the FHIR `id` grammar, [`crate::is_valid_id`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// `text` as an id, if it is one.
    pub fn parse(text: &str) -> Option<Id> {
        crate::is_valid_id(text).then(|| Id(text.to_string()))
    }

    /// `text` as an id, if it is one, without copying it.
    pub fn from_string(text: String) -> Option<Id> {
        crate::is_valid_id(&text).then_some(Id(text))
    }

    /// A new id from 128 random bits, written as a UUID (`8-4-4-4-12` lower-case hex digits).
    pub fn from_random(bits: [u8; 16]) -> Id {
        let mut text = String::with_capacity(36);
        for (i, b) in bits.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                text.push('-');
            }
            text.push_str(&format!("{b:02x}"));
        }
        Id(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Id {
    type Err = String;

    fn from_str(s: &str) -> Result<Id, String> {
        Id::parse(s).ok_or_else(|| format!("'{s}' is not a valid resource id"))
    }
}

/// The id of a Patient resource (a patient-context actor's, an audit entry's, a compartment's).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatientId(Id);

impl PatientId {
    /// `text` as a Patient id: a bare id or `Patient/<id>`.
    pub fn parse(text: &str) -> Option<PatientId> {
        Id::parse(text.strip_prefix("Patient/").unwrap_or(text)).map(PatientId)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl Deref for PatientId {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Patient/{}", self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_come_from_the_table_only() {
        assert_eq!(ResourceType::parse("Patient"), Some(ResourceType::PATIENT));
        for named in [
            ResourceType::ENCOUNTER,
            ResourceType::OBSERVATION,
            ResourceType::CONDITION,
            ResourceType::DOCUMENT_REFERENCE,
            ResourceType::DIAGNOSTIC_REPORT,
            ResourceType::SERVICE_REQUEST,
            ResourceType::MEDICATION_REQUEST,
            ResourceType::MEDICATION,
            ResourceType::ALLERGY_INTOLERANCE,
            ResourceType::IMMUNIZATION,
            ResourceType::BINARY,
            ResourceType::PRACTITIONER,
        ] {
            assert_eq!(ResourceType::parse(named.as_str()), Some(named));
        }
        assert!(crate::is_resource_type(ResourceType::PATIENT.as_str()));
        assert_eq!(ResourceType::parse("patient"), None);
        assert_eq!(ResourceType::parse("Patient "), None);
        assert_eq!(ResourceType::parse(""), None);
        assert!(
            RESOURCE_TYPES
                .iter()
                .all(|t| ResourceType::parse(t).is_some())
        );
        assert!("Nonsense".parse::<ResourceType>().is_err());
    }

    #[test]
    fn ids_follow_the_grammar() {
        assert!(Id::parse("pat-000123").is_some());
        assert!(Id::parse("a.b-C9").is_some());
        assert!(Id::parse(&"x".repeat(64)).is_some());
        for bad in ["", "a b", "a/b", "é", "a_b", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_none(), "{bad:?}");
        }
        let random = Id::from_random([0xab; 16]);
        assert_eq!(random.as_str(), "abababab-abab-abab-abab-abababababab");
        assert!(crate::is_valid_id(&random));
        assert_eq!(
            PatientId::parse("Patient/p1").map(|p| p.into_string()),
            Some("p1".into())
        );
        assert!(PatientId::parse("Patient/").is_none());
    }
}
