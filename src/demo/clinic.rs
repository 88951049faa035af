//! The demo clinic: one Organization, three sites (Locations), its clinicians (Practitioners)
//! and what each does where (PractitionerRoles). Staff names vary with the seed; the clinic's
//! shape does not.

use serde_json::{Value, json};

use super::datatypes::{coding, concept, reference};
use super::names::{NAME_GROUPS, NameGroup, pick_group};
use super::rng::Rng;
use super::terminology::{
    Code, Drug, FORMULARY, LOCATION_PHYSICAL_TYPE, NPI, ORGANIZATION_TYPE, PRACTITIONER_ROLE,
    ROLE_CODE, RXNORM, V2_0360, snomed,
};

/// The id of the clinic's Organization.
pub const ORGANIZATION_ID: &str = "org-riverbend";

/// What a clinician does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discipline {
    FamilyPhysician,
    Internist,
    Pediatrician,
    NursePractitioner,
    Nurse,
}

impl Discipline {
    /// Sees adults as their primary care provider.
    pub fn adult_primary_care(self) -> bool {
        matches!(
            self,
            Discipline::FamilyPhysician | Discipline::Internist | Discipline::NursePractitioner
        )
    }

    fn qualification(self, osteopath: bool) -> (&'static str, &'static str) {
        match self {
            Discipline::NursePractitioner => ("NP", "Nurse practitioner"),
            Discipline::Nurse => ("RN", "Registered Nurse"),
            _ if osteopath => ("DO", "Doctor of Osteopathy"),
            _ => ("MD", "Doctor of Medicine"),
        }
    }

    fn specialty(self) -> Code {
        match self {
            Discipline::FamilyPhysician | Discipline::NursePractitioner | Discipline::Nurse => {
                snomed("419772000", "Family practice")
            }
            Discipline::Internist => snomed("419192003", "Internal medicine"),
            Discipline::Pediatrician => snomed("394537008", "Pediatric specialty"),
        }
    }
}

/// One of the clinic's sites.
#[derive(Debug)]
pub struct Site {
    pub id: &'static str,
    pub name: &'static str,
    kind: (&'static str, &'static str),
    line: &'static str,
    zip: &'static str,
    phone: &'static str,
}

pub static SITES: [Site; 3] = [
    Site {
        id: "loc-hawthorne",
        name: "Riverbend Family Health – Hawthorne",
        kind: ("FMC", "Family Medicine Clinic"),
        line: "3420 SE Hawthorne Blvd",
        zip: "97214",
        phone: "503-555-0110",
    },
    Site {
        id: "loc-interstate",
        name: "Riverbend Family Health – Interstate Internal Medicine",
        kind: ("GIM", "General internal medicine clinic"),
        line: "4815 N Interstate Ave",
        zip: "97217",
        phone: "503-555-0120",
    },
    Site {
        id: "loc-broadway",
        name: "Riverbend Pediatrics – Broadway",
        kind: ("PEDC", "Pediatrics clinic"),
        line: "1730 NE Broadway St",
        zip: "97232",
        phone: "503-555-0130",
    },
];

/// A clinician of the demo clinic.
#[derive(Debug)]
pub struct Clinician {
    pub id: String,
    pub role_id: String,
    pub discipline: Discipline,
    /// Index into [`SITES`] of the clinician's main site.
    pub site: usize,
    given: &'static str,
    family: &'static str,
    female: bool,
    osteopath: bool,
    npi: String,
}

/// The staff of the clinic and their sites: created once per seed and shared by every patient.
#[derive(Debug)]
pub struct Clinic {
    pub clinicians: Vec<Clinician>,
    org_npi: String,
}

/// Who works where (index into [`SITES`]).
const STAFF: [(Discipline, usize); 9] = [
    (Discipline::FamilyPhysician, 0),
    (Discipline::FamilyPhysician, 0),
    (Discipline::Internist, 1),
    (Discipline::Internist, 1),
    (Discipline::Pediatrician, 2),
    (Discipline::Pediatrician, 2),
    (Discipline::NursePractitioner, 0),
    (Discipline::Nurse, 0),
    (Discipline::Nurse, 2),
];

impl Clinic {
    /// The clinic for a seed (staff names and NPIs depend on it).
    pub fn new(seed: u64) -> Clinic {
        let mut rng = Rng::stream(seed, 0xC11_41C, 0);
        let org_npi = npi(100_000_000 + rng.below(90_000_000) * 10);
        let clinicians = STAFF
            .iter()
            .enumerate()
            .map(|(i, &(discipline, site))| {
                let group: &NameGroup = if rng.chance(0.5) {
                    &NAME_GROUPS[0]
                } else {
                    pick_group(&mut rng)
                };
                let female = rng.chance(if discipline == Discipline::Nurse {
                    0.85
                } else {
                    0.55
                });
                let given = rng.pick(if female { group.female } else { group.male });
                Clinician {
                    id: format!("prac-{:02}", i + 1),
                    role_id: format!("prole-{:02}", i + 1),
                    discipline,
                    site,
                    given,
                    family: rng.pick(group.family),
                    female,
                    osteopath: discipline == Discipline::FamilyPhysician && rng.chance(0.3),
                    npi: npi(100_000_000 + rng.below(8_000_000) * 10 + i as u64 + 1),
                }
            })
            .collect();
        Clinic {
            clinicians,
            org_npi,
        }
    }

    /// Indexes of clinicians who can be an adult's primary care provider.
    pub fn adult_providers(&self) -> impl Iterator<Item = usize> + '_ {
        self.clinicians
            .iter()
            .enumerate()
            .filter(|(_, c)| c.discipline.adult_primary_care())
            .map(|(i, _)| i)
    }

    /// Indexes of the pediatricians.
    pub fn pediatricians(&self) -> impl Iterator<Item = usize> + '_ {
        self.clinicians
            .iter()
            .enumerate()
            .filter(|(_, c)| c.discipline == Discipline::Pediatrician)
            .map(|(i, _)| i)
    }

    /// The nurse who works at a site (or the first nurse).
    pub fn nurse_at(&self, site: usize) -> usize {
        let nurses = || {
            self.clinicians
                .iter()
                .enumerate()
                .filter(|(_, c)| c.discipline == Discipline::Nurse)
        };
        nurses()
            .find(|(_, c)| c.site == site)
            .or_else(|| nurses().next())
            .map_or(0, |(i, _)| i)
    }

    /// The clinic's resources: Organization, Locations, Practitioners, PractitionerRoles, and
    /// the Medications of its formulary.
    pub fn resources(&self) -> Vec<Value> {
        let mut out =
            Vec::with_capacity(1 + SITES.len() + 2 * self.clinicians.len() + FORMULARY.len());
        out.push(json!({
            "resourceType": "Organization",
            "id": ORGANIZATION_ID,
            "identifier": [{"system": NPI, "value": self.org_npi}],
            "active": true,
            "type": [concept(ORGANIZATION_TYPE, "prov", "Healthcare Provider")],
            "name": "Riverbend Family Health",
            "alias": ["Riverbend Clinic"],
            "telecom": [
                {"system": "phone", "value": "503-555-0100", "use": "work"},
                {"system": "url", "value": "https://riverbend.example.org", "use": "work"}
            ],
            "address": [{
                "use": "work",
                "type": "both",
                "line": [SITES[0].line],
                "city": "Portland",
                "state": "OR",
                "postalCode": SITES[0].zip,
                "country": "US"
            }]
        }));
        for site in &SITES {
            out.push(json!({
                "resourceType": "Location",
                "id": site.id,
                "status": "active",
                "name": site.name,
                "mode": "instance",
                "type": [concept(ROLE_CODE, site.kind.0, site.kind.1)],
                "telecom": [{"system": "phone", "value": site.phone, "use": "work"}],
                "address": {
                    "use": "work",
                    "line": [site.line],
                    "city": "Portland",
                    "state": "OR",
                    "postalCode": site.zip,
                    "country": "US"
                },
                "physicalType": concept(LOCATION_PHYSICAL_TYPE, "bu", "Building"),
                "managingOrganization": reference("Organization", ORGANIZATION_ID),
                "hoursOfOperation": [{
                    "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                    "openingTime": "08:00:00",
                    "closingTime": "17:30:00"
                }]
            }));
        }
        for c in &self.clinicians {
            let (qual_code, qual_display) = c.discipline.qualification(c.osteopath);
            let mut name = json!({
                "use": "official",
                "text": c.display_name(),
                "family": c.family,
                "given": [c.given]
            });
            if c.discipline != Discipline::Nurse && c.discipline != Discipline::NursePractitioner {
                name["prefix"] = json!(["Dr."]);
            }
            name["suffix"] = json!([qual_code]);
            out.push(json!({
                "resourceType": "Practitioner",
                "id": c.id,
                "identifier": [{"system": NPI, "value": c.npi}],
                "active": true,
                "name": [name],
                "telecom": [
                    {"system": "phone", "value": SITES[c.site].phone, "use": "work"},
                    {"system": "email", "value": format!("{}@riverbend.example.org", c.id), "use": "work"}
                ],
                "gender": if c.female { "female" } else { "male" },
                "qualification": [{
                    "code": {
                        "coding": [coding(V2_0360, qual_code, qual_display)],
                        "text": qual_display
                    }
                }]
            }));
        }
        for c in &self.clinicians {
            let (role, role_display) = match c.discipline {
                Discipline::Nurse | Discipline::NursePractitioner => ("nurse", "Nurse"),
                _ => ("doctor", "Doctor"),
            };
            let specialty = c.discipline.specialty();
            out.push(json!({
                "resourceType": "PractitionerRole",
                "id": c.role_id,
                "active": true,
                "practitioner": reference("Practitioner", &c.id),
                "organization": reference("Organization", ORGANIZATION_ID),
                "code": [concept(PRACTITIONER_ROLE, role, role_display)],
                "specialty": [concept(specialty.system, specialty.code, specialty.display)],
                "location": [reference("Location", SITES[c.site].id)],
                "telecom": [{"system": "phone", "value": SITES[c.site].phone, "use": "work"}],
                "availableTime": [{
                    "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                    "availableStartTime": "08:00:00",
                    "availableEndTime": "17:00:00"
                }]
            }));
        }
        for drug in FORMULARY {
            out.push(json!({
                "resourceType": "Medication",
                "id": medication_id(drug),
                "code": {"coding": [coding(RXNORM, drug.rxnorm, drug.display)], "text": drug.display},
                "status": "active"
            }));
        }
        out
    }
}

/// The id of the clinic's Medication for `drug` (one of its [`FORMULARY`]).
pub fn medication_id(drug: &Drug) -> String {
    format!("rx-{}", drug.rxnorm)
}

/// Whether the clinic keeps `drug` as a Medication of its own.
pub fn in_formulary(drug: &Drug) -> bool {
    FORMULARY.iter().any(|d| d.rxnorm == drug.rxnorm)
}

impl Clinician {
    /// `Dr. Ana Torres` / `Ana Torres, RN`.
    pub fn display_name(&self) -> String {
        match self.discipline {
            Discipline::Nurse => format!("{} {}, RN", self.given, self.family),
            Discipline::NursePractitioner => format!("{} {}, NP", self.given, self.family),
            _ => format!("Dr. {} {}", self.given, self.family),
        }
    }
}

/// A valid 10-digit NPI for a 9-digit base: the Luhn check digit over `80840` + base.
pub fn npi(base: u64) -> String {
    let payload = format!("80840{:09}", base % 1_000_000_000);
    let mut sum = 0;
    for (i, b) in payload.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{:09}{}", base % 1_000_000_000, (10 - sum % 10) % 10)
}
