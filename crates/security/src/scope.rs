//! SMART on FHIR resource scopes (v2 syntax, with the v1 forms read as their v2 equivalents)
//! and the roles of the people who use the EMR, each with the scopes it grants.
//!
//! A scope is `context/ResourceType.permissions`: the context is `patient`, `user` or `system`;
//! the type is a FHIR resource type or `*`; the permissions are some of `c r u d s` (create,
//! read, update, delete, search) in that order, or v1's `read`, `write` and `*`. A token's
//! scopes must lie within the scopes of its user's roles ([`Scopes::is_within`]).

use std::fmt;
use std::str::FromStr;

/// Whose data a scope reaches: one patient's (the one in the launch context), whatever the
/// user may see, or anything (a backend service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Patient,
    User,
    System,
}

impl Context {
    pub const ALL: [Context; 3] = [Context::Patient, Context::User, Context::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a scope lets its holder do with a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    /// In the order of the permission letters, `cruds`.
    pub const ALL: [Interaction; 5] = [
        Interaction::Create,
        Interaction::Read,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Search,
    ];

    /// The permission letter: `c`, `r`, `u`, `d` or `s`.
    pub fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Interaction::Create => C,
            Interaction::Read => R,
            Interaction::Update => U,
            Interaction::Delete => D,
            Interaction::Search => S,
        }
    }
}

const C: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;
const S: u8 = 16;
const RS: u8 = R | S;
const CRUS: u8 = C | R | U | S;
const CRUDS: u8 = C | R | U | D | S;
/// v1 `write`: create, update and delete.
const CUD: u8 = C | U | D;

/// Why a scope or role name was refused. The scope is quoted (shortened if long) in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "{0:?} is not a resource scope: expected patient/, user/ or system/, a resource type \
         or *, a dot and permissions, as in patient/Observation.rs"
    )]
    NotResourceScope(String),
    #[error(
        "{0:?} names no valid resource type: expected a FHIR resource type such as Observation, \
         or *"
    )]
    ResourceType(String),
    #[error(
        "{0:?} has invalid permissions: expected some of c, r, u, d, s in that order (such as \
         rs or cruds), or read, write or *"
    )]
    Permissions(String),
    #[error("{0:?} is a granular scope (with ?parameters); granular scopes are not supported yet")]
    Granular(String),
    #[error(
        "{0:?} is not a role: expected admin, physician, nurse, front_desk, billing, auditor or \
         patient"
    )]
    UnknownRole(String),
}

/// At most 80 characters of untrusted text, for an error message.
fn shown(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// One resource scope, such as `user/Observation.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub context: Context,
    /// `None` for `*`, every resource type.
    pub resource_type: Option<String>,
    /// Bits of [`Interaction`]s, never empty.
    interactions: u8,
}

impl Scope {
    /// A scope from its parts. `None` if `interactions` is empty or the resource type is not
    /// of the form `[A-Z][A-Za-z]{0,63}`.
    pub fn new(
        context: Context,
        resource_type: Option<&str>,
        interactions: &[Interaction],
    ) -> Option<Scope> {
        let bits = interactions.iter().fold(0, |bits, i| bits | i.bit());
        if bits == 0 || resource_type.is_some_and(|t| !is_resource_type_name(t)) {
            return None;
        }
        Some(Scope {
            context,
            resource_type: resource_type.map(str::to_owned),
            interactions: bits,
        })
    }

    /// Parses one scope in v2 form (`patient/Observation.rs`, `user/*.cruds`) or v1 form
    /// (`.read` is `rs`, `.write` is `cud`, `.*` is `cruds`). The resource type is only checked
    /// to look like one (`[A-Z][A-Za-z]{0,63}`): whether FHIR has it is for the caller.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        if text.contains('?') {
            return Err(ScopeError::Granular(shown(text)));
        }
        let not_resource_scope = || ScopeError::NotResourceScope(shown(text));
        let (context, rest) = text.split_once('/').ok_or_else(not_resource_scope)?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return Err(not_resource_scope()),
        };
        let (resource_type, permissions) = rest.split_once('.').ok_or_else(not_resource_scope)?;
        let resource_type = match resource_type {
            "*" => None,
            name if is_resource_type_name(name) => Some(name.to_owned()),
            _ => return Err(ScopeError::ResourceType(shown(text))),
        };
        let interactions =
            parse_permissions(permissions).ok_or_else(|| ScopeError::Permissions(shown(text)))?;
        Ok(Scope {
            context,
            resource_type,
            interactions,
        })
    }

    /// The interactions this scope permits, in `cruds` order.
    pub fn interactions(&self) -> impl Iterator<Item = Interaction> + '_ {
        Interaction::ALL
            .into_iter()
            .filter(|i| self.interactions & i.bit() != 0)
    }

    pub fn permits(&self, interaction: Interaction) -> bool {
        self.interactions & interaction.bit() != 0
    }

    /// Whether this scope covers `interaction` on `resource_type`, whatever the context.
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.reaches(Some(resource_type)) && self.permits(interaction)
    }

    /// Whether this scope's resource type covers `resource_type` (`None` meaning all of them).
    fn reaches(&self, resource_type: Option<&str>) -> bool {
        match (&self.resource_type, resource_type) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }

    /// Whether this scope, as a grant, covers `interaction` on `resource_type` in `context`. A
    /// `user/` grant also covers `patient/`: a user who may see every chart she is allowed to
    /// may launch an app on one patient.
    fn grants(
        &self,
        context: Context,
        resource_type: Option<&str>,
        interaction: Interaction,
    ) -> bool {
        let context_ok = self.context == context
            || (self.context == Context::User && context == Context::Patient);
        context_ok && self.reaches(resource_type) && self.permits(interaction)
    }
}

fn is_resource_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphabetic())
}

/// v2 letters in `cruds` order (at least one), or v1 `read`, `write`, `*`.
fn parse_permissions(text: &str) -> Option<u8> {
    match text {
        "read" => return Some(RS),
        "write" => return Some(CUD),
        "*" => return Some(CRUDS),
        "" => return None,
        _ => {}
    }
    let mut bits = 0u8;
    let mut next = 0;
    for c in text.chars() {
        let position = Interaction::ALL[next..]
            .iter()
            .position(|i| i.letter() == c)?;
        bits |= Interaction::ALL[next + position].bit();
        next += position + 1;
    }
    Some(bits)
}

impl fmt::Display for Scope {
    /// The canonical v2 form, such as `user/Observation.rs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.",
            self.context,
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        for interaction in self.interactions() {
            write!(f, "{}", interaction.letter())?;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        Scope::parse(text)
    }
}

/// A set of resource scopes, such as a token's or a role's. Scopes of the same context and
/// resource type are merged into one, in the order they first appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// No scopes at all.
    pub fn none() -> Scopes {
        Scopes(Vec::new())
    }

    /// Parses space-separated scopes; an empty or blank string is no scopes. Every scope must
    /// be a resource scope (`openid`, `launch/patient` and the like are for the caller to take
    /// out first).
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        text.split_ascii_whitespace()
            .map(Scope::parse)
            .collect::<Result<Scopes, ScopeError>>()
    }

    /// Adds a scope, merging it into one of the same context and resource type.
    pub fn insert(&mut self, scope: Scope) {
        match self
            .0
            .iter_mut()
            .find(|s| s.context == scope.context && s.resource_type == scope.resource_type)
        {
            Some(existing) => existing.interactions |= scope.interactions,
            None => self.0.push(scope),
        }
    }

    /// Every scope of `self` and of `other`.
    pub fn union(&self, other: &Scopes) -> Scopes {
        let mut all = self.clone();
        for scope in &other.0 {
            all.insert(scope.clone());
        }
        all
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some scope covers `interaction` on `resource_type`, whatever its context.
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.0.iter().any(|s| s.allows(resource_type, interaction))
    }

    /// The contexts the scopes are in, each once, in the order patient, user, system.
    pub fn contexts(&self) -> Vec<Context> {
        Context::ALL
            .into_iter()
            .filter(|&c| self.0.iter().any(|s| s.context == c))
            .collect()
    }

    /// Whether any scope is a `patient/` scope (so the token needs a patient in context).
    pub fn has_patient_context(&self) -> bool {
        self.0.iter().any(|s| s.context == Context::Patient)
    }

    /// Whether everything these scopes permit is also permitted by `granted`, in the same
    /// context (or, for a `patient/` scope, by a `user/` grant). Use it to refuse a token wider
    /// than the roles of its user.
    pub fn is_within(&self, granted: &Scopes) -> bool {
        self.0.iter().all(|wanted| {
            wanted.interactions().all(|interaction| {
                granted.0.iter().any(|grant| {
                    grant.grants(wanted.context, wanted.resource_type.as_deref(), interaction)
                })
            })
        })
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        let mut scopes = Scopes::none();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Scopes {
    /// The scopes in canonical v2 form, separated by single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scopes, ScopeError> {
        Scopes::parse(text)
    }
}

/// What a person does in the clinic, which decides what they may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Physician,
    Nurse,
    FrontDesk,
    Billing,
    Auditor,
    Patient,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Physician,
        Role::Nurse,
        Role::FrontDesk,
        Role::Billing,
        Role::Auditor,
        Role::Patient,
    ];

    /// The name people read: `Physician`, `Front desk` …
    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::Physician => "Physician",
            Role::Nurse => "Nurse",
            Role::FrontDesk => "Front desk",
            Role::Billing => "Billing",
            Role::Auditor => "Auditor",
            Role::Patient => "Patient",
        }
    }

    /// The stored name: `admin`, `physician`, `nurse`, `front_desk`, `billing`, `auditor`,
    /// `patient`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::FrontDesk => "front_desk",
            Role::Billing => "billing",
            Role::Auditor => "auditor",
            Role::Patient => "patient",
        }
    }

    /// The role with this stored name (exactly as [`Role::as_str`] writes it).
    pub fn parse(name: &str) -> Result<Role, ScopeError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| ScopeError::UnknownRole(shown(name)))
    }

    /// One sentence saying what the role is for, for the people who assign it.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Admin => {
                "Manages user accounts and the clinic's directory (organization, locations, \
                 practitioners, services), without access to patient records."
            }
            Role::Physician => "Reads, writes and deletes everything in patient records.",
            Role::Nurse => "Reads and writes everything in patient records, but deletes nothing.",
            Role::FrontDesk => {
                "Registers patients, books appointments and records insurance, without access \
                 to clinical notes or results."
            }
            Role::Billing => {
                "Prepares claims, invoices and payments, seeing only the encounters, conditions \
                 and procedures needed to bill them."
            }
            Role::Auditor => "Reads the audit log of who did what, and nothing else.",
            Role::Patient => "Reads their own record through the patient portal.",
        }
    }

    /// Whether signing in with this role needs a second factor.
    pub fn requires_mfa(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }

    /// Whether this role may open a chart outside its usual reach in an emergency (recorded
    /// and reviewed).
    pub fn can_break_glass(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse)
    }

    /// Whether this role gives care.
    pub fn is_clinical(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse)
    }

    /// The scopes this role grants.
    pub fn scopes(self) -> Scopes {
        match self {
            Role::Admin => user_scopes(&[
                ("Organization", CRUDS),
                ("Location", CRUDS),
                ("Practitioner", CRUDS),
                ("PractitionerRole", CRUDS),
                ("HealthcareService", CRUDS),
                ("Endpoint", CRUDS),
            ]),
            Role::Physician => Scopes(vec![wildcard(Context::User, CRUDS)]),
            Role::Nurse => Scopes(vec![wildcard(Context::User, CRUS)]),
            Role::FrontDesk => user_scopes(&[
                ("Patient", CRUS),
                ("RelatedPerson", CRUS),
                ("Appointment", CRUS),
                ("AppointmentResponse", CRUS),
                ("Schedule", RS),
                ("Slot", CRUS),
                ("Coverage", CRUS),
                ("Encounter", RS),
                ("Practitioner", RS),
                ("PractitionerRole", RS),
                ("Organization", RS),
                ("Location", RS),
                ("HealthcareService", RS),
            ]),
            Role::Billing => user_scopes(&[
                ("Patient", RS),
                ("Coverage", CRUS),
                ("CoverageEligibilityRequest", CRUS),
                ("CoverageEligibilityResponse", RS),
                ("Claim", CRUS),
                ("ClaimResponse", CRUS),
                ("Invoice", CRUS),
                ("ChargeItem", CRUS),
                ("ChargeItemDefinition", RS),
                ("Account", CRUS),
                ("ExplanationOfBenefit", CRUS),
                ("PaymentNotice", CRUS),
                ("PaymentReconciliation", CRUS),
                ("Encounter", RS),
                ("Condition", RS),
                ("Procedure", RS),
                ("Organization", RS),
                ("Practitioner", RS),
                ("PractitionerRole", RS),
                ("Location", RS),
                ("RelatedPerson", RS),
            ]),
            Role::Auditor => user_scopes(&[("AuditEvent", RS)]),
            Role::Patient => Scopes(vec![wildcard(Context::Patient, RS)]),
        }
    }
}

fn user_scopes(grants: &[(&str, u8)]) -> Scopes {
    grants
        .iter()
        .map(|&(resource_type, interactions)| Scope {
            context: Context::User,
            resource_type: Some(resource_type.to_owned()),
            interactions,
        })
        .collect()
}

fn wildcard(context: Context, interactions: u8) -> Scope {
    Scope {
        context,
        resource_type: None,
        interactions,
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ScopeError;

    fn from_str(name: &str) -> Result<Role, ScopeError> {
        Role::parse(name)
    }
}

/// Everything granted by any of `roles`.
pub fn scopes_of(roles: &[Role]) -> Scopes {
    roles
        .iter()
        .fold(Scopes::none(), |all, role| all.union(&role.scopes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interaction::*;

    fn scopes(text: &str) -> Scopes {
        Scopes::parse(text).unwrap()
    }

    #[test]
    fn valid_scopes_parse_to_their_canonical_form() {
        for (input, canonical) in [
            ("patient/Observation.rs", "patient/Observation.rs"),
            ("user/*.cruds", "user/*.cruds"),
            ("system/Patient.r", "system/Patient.r"),
            ("user/Observation.c", "user/Observation.c"),
            ("user/Observation.s", "user/Observation.s"),
            ("user/Observation.cd", "user/Observation.cd"),
            ("user/Observation.crud", "user/Observation.crud"),
            ("user/Observation.rus", "user/Observation.rus"),
            ("patient/*.read", "patient/*.rs"),
            ("user/Observation.write", "user/Observation.cud"),
            ("user/Observation.*", "user/Observation.cruds"),
            ("system/*.*", "system/*.cruds"),
            ("user/A.r", "user/A.r"),
        ] {
            let scope = Scope::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(scope.to_string(), canonical, "{input}");
            assert_eq!(Scope::parse(canonical).unwrap(), scope, "{input}");
        }
        let scope = Scope::parse("patient/Observation.rs").unwrap();
        assert_eq!(scope.context, Context::Patient);
        assert_eq!(scope.resource_type.as_deref(), Some("Observation"));
        assert_eq!(scope.interactions().collect::<Vec<_>>(), [Read, Search]);
        assert_eq!(Scope::parse("user/*.r").unwrap().resource_type, None);
        let longest = format!("user/A{}.r", "b".repeat(63));
        assert!(Scope::parse(&longest).is_ok());
    }

    #[test]
    fn invalid_scopes_are_refused_with_the_reason() {
        use ScopeError as E;
        let too_long = format!("user/A{}.r", "b".repeat(64));
        for (input, expected) in [
            ("", E::NotResourceScope(String::new())),
            ("openid", E::NotResourceScope("openid".into())),
            (
                "launch/patient",
                E::NotResourceScope("launch/patient".into()),
            ),
            (
                "Patient/Observation.rs",
                E::NotResourceScope("Patient/Observation.rs".into()),
            ),
            (
                "clinician/Observation.rs",
                E::NotResourceScope("clinician/Observation.rs".into()),
            ),
            (
                "user/Observation",
                E::NotResourceScope("user/Observation".into()),
            ),
            (
                "user/observation.rs",
                E::ResourceType("user/observation.rs".into()),
            ),
            ("user/.rs", E::ResourceType("user/.rs".into())),
            (
                "user/Obs-ervation.rs",
                E::ResourceType("user/Obs-ervation.rs".into()),
            ),
            (
                "user/Observation2.rs",
                E::ResourceType("user/Observation2.rs".into()),
            ),
            ("user/**.rs", E::ResourceType("user/**.rs".into())),
            (
                "user/Observation.",
                E::Permissions("user/Observation.".into()),
            ),
            (
                "user/Observation.sr",
                E::Permissions("user/Observation.sr".into()),
            ),
            (
                "user/Observation.rr",
                E::Permissions("user/Observation.rr".into()),
            ),
            (
                "user/Observation.x",
                E::Permissions("user/Observation.x".into()),
            ),
            (
                "user/Observation.RS",
                E::Permissions("user/Observation.RS".into()),
            ),
            (
                "user/Observation.Read",
                E::Permissions("user/Observation.Read".into()),
            ),
            (
                "user/Observation.r.s",
                E::Permissions("user/Observation.r.s".into()),
            ),
            (
                "user/Observation.rs ",
                E::Permissions("user/Observation.rs ".into()),
            ),
            (
                "patient/Observation.rs?category=laboratory",
                E::Granular("patient/Observation.rs?category=laboratory".into()),
            ),
        ] {
            assert_eq!(Scope::parse(input), Err(expected), "{input:?}");
        }
        assert!(matches!(Scope::parse(&too_long), Err(E::ResourceType(_))));
    }

    #[test]
    fn error_messages_quote_a_shortened_scope() {
        let message = Scope::parse("user/Observation.sr").unwrap_err().to_string();
        assert!(
            message.starts_with("\"user/Observation.sr\" has invalid permissions"),
            "{message}"
        );
        let long = format!("user/Observation.{}", "x".repeat(500));
        let message = Scope::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains('…'));
        let message = Scope::parse("bad\nline").unwrap_err().to_string();
        assert!(
            !message.contains('\n'),
            "control characters are escaped: {message}"
        );
        assert!(
            Scope::parse("a?b")
                .unwrap_err()
                .to_string()
                .contains("not supported yet")
        );
    }

    #[test]
    fn scope_lists_parse_merge_and_print() {
        assert!(scopes("").is_empty());
        assert!(scopes("   ").is_empty());
        let list = scopes("patient/Observation.r  user/Patient.rs patient/Observation.s");
        assert_eq!(list.to_string(), "patient/Observation.rs user/Patient.rs");
        assert_eq!(list.len(), 2);
        assert_eq!(scopes(&list.to_string()), list);
        assert_eq!(
            Scopes::parse("user/Patient.rs openid"),
            Err(ScopeError::NotResourceScope("openid".into()))
        );
        let built: Scopes = [Scope::new(Context::User, Some("Patient"), &[Search, Read]).unwrap()]
            .into_iter()
            .collect();
        assert_eq!(built.to_string(), "user/Patient.rs");
        assert_eq!(Scope::new(Context::User, Some("Patient"), &[]), None);
        assert_eq!(Scope::new(Context::User, Some("patient"), &[Read]), None);
        assert_eq!(
            Scope::new(Context::System, None, &[Delete])
                .unwrap()
                .to_string(),
            "system/*.d"
        );
    }

    #[test]
    fn allows_checks_type_and_interaction() {
        let list = scopes("patient/Observation.rs user/Patient.r system/Encounter.c");
        assert!(list.allows("Observation", Read));
        assert!(list.allows("Observation", Search));
        assert!(!list.allows("Observation", Create));
        assert!(list.allows("Patient", Read));
        assert!(!list.allows("Patient", Search));
        assert!(list.allows("Encounter", Create));
        assert!(!list.allows("Condition", Read));
        assert!(!list.allows("observation", Read));
        let everything = scopes("user/*.cruds");
        for i in Interaction::ALL {
            assert!(everything.allows("Condition", i));
        }
        assert!(!Scopes::none().allows("Patient", Read));
        assert!(!scopes("user/*.rs").allows("Patient", Update));
    }

    #[test]
    fn contexts_are_listed_once_in_order() {
        let list = scopes("system/Patient.r user/Patient.r patient/Patient.r user/Encounter.r");
        assert_eq!(
            list.contexts(),
            [Context::Patient, Context::User, Context::System]
        );
        assert!(list.has_patient_context());
        let users = scopes("user/Patient.r user/Encounter.r");
        assert_eq!(users.contexts(), [Context::User]);
        assert!(!users.has_patient_context());
        assert!(Scopes::none().contexts().is_empty());
    }

    #[test]
    fn is_within_compares_contexts_types_and_interactions() {
        let granted = scopes("user/Observation.rs user/Patient.crus system/Group.r");
        for within in [
            "",
            "user/Observation.r",
            "user/Observation.rs",
            "patient/Observation.rs",
            "patient/Patient.cru user/Observation.s",
            "system/Group.r",
        ] {
            assert!(scopes(within).is_within(&granted), "{within}");
        }
        for beyond in [
            "user/Observation.c",
            "user/Patient.d",
            "user/*.r",
            "patient/*.r",
            "user/Condition.r",
            "system/Observation.r",
            "user/Group.r",
            "system/Group.s",
            "user/Observation.r user/Condition.r",
        ] {
            assert!(!scopes(beyond).is_within(&granted), "{beyond}");
        }
        // A patient/ grant does not cover user/; system/ and user/ do not cover each other.
        assert!(!scopes("user/Observation.r").is_within(&scopes("patient/*.rs")));
        assert!(!scopes("user/Observation.r").is_within(&scopes("system/*.rs")));
        assert!(!scopes("system/Observation.r").is_within(&scopes("user/*.rs")));
        // Interactions may come from different grants.
        assert!(scopes("user/Observation.rs").is_within(&scopes("user/*.r user/Observation.s")));
        assert!(!scopes("user/Observation.rs").is_within(&Scopes::none()));
    }

    #[test]
    fn role_scopes_are_exactly_these() {
        let expected = [
            (
                Role::Admin,
                "user/Organization.cruds user/Location.cruds user/Practitioner.cruds \
                 user/PractitionerRole.cruds user/HealthcareService.cruds user/Endpoint.cruds",
            ),
            (Role::Physician, "user/*.cruds"),
            (Role::Nurse, "user/*.crus"),
            (
                Role::FrontDesk,
                "user/Patient.crus user/RelatedPerson.crus user/Appointment.crus \
                 user/AppointmentResponse.crus user/Schedule.rs user/Slot.crus user/Coverage.crus \
                 user/Encounter.rs user/Practitioner.rs user/PractitionerRole.rs \
                 user/Organization.rs user/Location.rs user/HealthcareService.rs",
            ),
            (
                Role::Billing,
                "user/Patient.rs user/Coverage.crus user/CoverageEligibilityRequest.crus \
                 user/CoverageEligibilityResponse.rs user/Claim.crus user/ClaimResponse.crus \
                 user/Invoice.crus user/ChargeItem.crus user/ChargeItemDefinition.rs \
                 user/Account.crus user/ExplanationOfBenefit.crus user/PaymentNotice.crus \
                 user/PaymentReconciliation.crus user/Encounter.rs user/Condition.rs \
                 user/Procedure.rs user/Organization.rs user/Practitioner.rs \
                 user/PractitionerRole.rs user/Location.rs user/RelatedPerson.rs",
            ),
            (Role::Auditor, "user/AuditEvent.rs"),
            (Role::Patient, "patient/*.rs"),
        ];
        assert_eq!(expected.len(), Role::ALL.len());
        for (role, text) in expected {
            assert_eq!(role.scopes().to_string(), text, "{role}");
            assert_eq!(role.scopes(), scopes(text), "{role}");
            assert_eq!(
                role.scopes().len(),
                text.split(' ').count(),
                "{role}: no merging"
            );
        }
    }

    #[test]
    fn what_roles_may_do() {
        assert!(
            !Role::Admin.scopes().allows("Observation", Read),
            "no chart data"
        );
        assert!(!Role::Admin.scopes().allows("Patient", Read));
        assert!(Role::Physician.scopes().allows("Observation", Delete));
        assert!(!Role::Nurse.scopes().allows("Observation", Delete));
        assert!(Role::Nurse.scopes().allows("Observation", Update));
        assert!(!Role::FrontDesk.scopes().allows("Observation", Read));
        assert!(Role::FrontDesk.scopes().allows("Appointment", Create));
        assert!(!Role::FrontDesk.scopes().allows("Patient", Delete));
        assert!(Role::Billing.scopes().allows("Condition", Read));
        assert!(!Role::Billing.scopes().allows("Condition", Update));
        assert!(!Role::Billing.scopes().allows("Observation", Read));
        assert!(Role::Auditor.scopes().allows("AuditEvent", Search));
        assert!(!Role::Auditor.scopes().allows("AuditEvent", Update));
        assert!(!Role::Auditor.scopes().allows("Patient", Read));
        assert!(Role::Patient.scopes().has_patient_context());
        assert!(!Role::Patient.scopes().allows("Observation", Create));
        // The wildcards reach AuditEvent too: the server itself must refuse to change the log.
        assert!(Role::Physician.scopes().allows("AuditEvent", Delete));
        assert!(!Role::Admin.scopes().allows("AuditEvent", Read));
    }

    #[test]
    fn a_token_is_never_wider_than_its_roles() {
        let requests = [
            "patient/*.rs",
            "patient/*.cruds",
            "user/*.rs",
            "user/*.cruds",
            "system/*.rs",
            "user/Observation.r",
            "patient/Observation.rs",
            "user/Observation.d",
            "user/Patient.crus",
            "patient/Patient.rs",
            "user/AuditEvent.rs",
            "user/AuditEvent.u",
            "user/Claim.cruds",
            "user/Organization.cruds",
            "user/Appointment.crus",
        ];
        for role in Role::ALL {
            let granted = role.scopes();
            assert!(granted.is_within(&granted), "{role}");
            for request in requests {
                let wanted = scopes(request);
                if wanted.is_within(&granted) {
                    // Nothing the token may do is beyond the role.
                    for scope in &wanted {
                        for interaction in scope.interactions() {
                            let resource = scope.resource_type.as_deref().unwrap_or("Observation");
                            assert!(granted.allows(resource, interaction), "{role} {request}");
                        }
                    }
                }
            }
        }
        assert!(scopes("patient/Observation.rs").is_within(&Role::Physician.scopes()));
        assert!(scopes("patient/*.rs").is_within(&Role::Nurse.scopes()));
        assert!(!scopes("patient/*.d").is_within(&Role::Nurse.scopes()));
        assert!(!scopes("user/*.r").is_within(&Role::Patient.scopes()));
        assert!(!scopes("system/*.r").is_within(&Role::Physician.scopes()));
        assert!(!scopes("user/Observation.r").is_within(&Role::FrontDesk.scopes()));
        assert!(!scopes("user/*.r").is_within(&Role::FrontDesk.scopes()));
        assert!(!scopes("user/AuditEvent.rs").is_within(&Role::Admin.scopes()));
        assert!(scopes("user/AuditEvent.rs").is_within(&Role::Auditor.scopes()));
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert!(role.describe().ends_with('.'), "{role}");
        }
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "admin",
                "physician",
                "nurse",
                "front_desk",
                "billing",
                "auditor",
                "patient"
            ]
        );
        for bad in ["", "Admin", "front-desk", "frontdesk", " nurse", "doctor"] {
            assert!(
                matches!(Role::parse(bad), Err(ScopeError::UnknownRole(_))),
                "{bad:?}"
            );
        }
        let mfa: Vec<Role> = Role::ALL.into_iter().filter(|r| r.requires_mfa()).collect();
        assert_eq!(mfa, [Role::Admin, Role::Auditor]);
        let glass: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.can_break_glass())
            .collect();
        assert_eq!(glass, [Role::Physician, Role::Nurse]);
        let clinical: Vec<Role> = Role::ALL.into_iter().filter(|r| r.is_clinical()).collect();
        assert_eq!(clinical, [Role::Physician, Role::Nurse]);
    }

    #[test]
    fn scopes_of_is_the_union() {
        assert!(scopes_of(&[]).is_empty());
        assert_eq!(scopes_of(&[Role::Physician]), Role::Physician.scopes());
        let front_and_billing = scopes_of(&[Role::FrontDesk, Role::Billing]);
        assert!(front_and_billing.allows("Appointment", Create));
        assert!(front_and_billing.allows("Claim", Update));
        // Patient is crus at the front desk and rs in billing: the union is crus, once.
        assert_eq!(
            front_and_billing
                .iter()
                .filter(|s| s.resource_type.as_deref() == Some("Patient"))
                .count(),
            1
        );
        assert!(scopes("user/Patient.crus").is_within(&front_and_billing));
        assert!(Role::Billing.scopes().is_within(&front_and_billing));
        assert!(Role::FrontDesk.scopes().is_within(&front_and_billing));
        let nurse_and_physician = scopes_of(&[Role::Nurse, Role::Physician]);
        assert_eq!(nurse_and_physician.to_string(), "user/*.cruds");
        let mixed = scopes_of(&[Role::Patient, Role::Auditor]);
        assert_eq!(mixed.to_string(), "patient/*.rs user/AuditEvent.rs");
    }
}
