//! The codes the demo data uses: code-system URLs and tables of real codes with their
//! displays (ICD-10-CM, SNOMED CT, RxNorm, CVX, LOINC, UCUM and HL7 code systems).

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
pub const MRN_SYSTEM: &str = "urn:ironchart:demo:mrn";
pub const BCP47: &str = "urn:ietf:bcp:47";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
pub const V2_0131: &str = "http://terminology.hl7.org/CodeSystem/v2-0131";
pub const V2_0360: &str = "http://terminology.hl7.org/CodeSystem/v2-0360|2.7";
pub const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
pub const MARITAL: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
pub const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const ROUTE_OF_ADMIN: &str = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration";
pub const ACT_SITE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActSite";
pub const DRUG_FORM: &str = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm";
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
pub const CONDITION_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";
pub const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
pub const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
pub const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
pub const MED_REQUEST_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/medicationrequest-category";
pub const COURSE_OF_THERAPY: &str =
    "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy";
pub const DOSE_RATE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/dose-rate-type";
pub const IMMUNIZATION_ORIGIN: &str = "http://terminology.hl7.org/CodeSystem/immunization-origin";
pub const PRACTITIONER_ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";
pub const ORGANIZATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
pub const LOCATION_PHYSICAL_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/location-physical-type";

/// A code with its system and display.
#[derive(Debug, Clone, Copy)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

pub const fn snomed(code: &'static str, display: &'static str) -> Code {
    Code {
        system: SNOMED,
        code,
        display,
    }
}

pub const fn loinc(code: &'static str, display: &'static str) -> Code {
    Code {
        system: LOINC,
        code,
        display,
    }
}

// ---------------------------------------------------------------------------------------------
// Encounters

pub const ENCOUNTER_WELL_CHILD: Code = snomed("410620009", "Well child visit");
pub const ENCOUNTER_CHECKUP: Code = snomed("162673000", "General examination of patient");
pub const ENCOUNTER_FOLLOW_UP: Code = snomed("390906007", "Follow-up encounter");
pub const ENCOUNTER_SYMPTOM: Code = snomed("185345009", "Encounter for symptom");

// ---------------------------------------------------------------------------------------------
// Conditions

/// A diagnosis coded in ICD-10-CM (for billing) and SNOMED CT (for the problem list).
#[derive(Debug)]
pub struct Diagnosis {
    pub icd10: (&'static str, &'static str),
    pub snomed: (&'static str, &'static str),
    pub text: &'static str,
}

/// Long-term conditions the generator gives patients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chronic {
    Hypertension,
    Diabetes,
    Hyperlipidemia,
    Asthma,
    Hypothyroidism,
    Gerd,
    Depression,
    Anxiety,
    Obesity,
    KneeOsteoarthritis,
    Ckd3,
    Copd,
    CoronaryDisease,
    Osteoporosis,
    AllergicRhinitis,
    AtopicDermatitis,
    Adhd,
    IronDeficiency,
    Migraine,
}

impl Chronic {
    /// Every kind, in the order the generator considers them (risk factors first).
    pub const ALL: [Chronic; 19] = [
        Chronic::Hypertension,
        Chronic::Diabetes,
        Chronic::Hyperlipidemia,
        Chronic::Asthma,
        Chronic::Hypothyroidism,
        Chronic::Gerd,
        Chronic::Depression,
        Chronic::Anxiety,
        Chronic::Obesity,
        Chronic::KneeOsteoarthritis,
        Chronic::Ckd3,
        Chronic::Copd,
        Chronic::CoronaryDisease,
        Chronic::Osteoporosis,
        Chronic::AllergicRhinitis,
        Chronic::AtopicDermatitis,
        Chronic::Adhd,
        Chronic::IronDeficiency,
        Chronic::Migraine,
    ];

    pub fn diagnosis(self) -> &'static Diagnosis {
        match self {
            Chronic::Hypertension => &Diagnosis {
                icd10: ("I10", "Essential (primary) hypertension"),
                snomed: ("59621000", "Essential hypertension"),
                text: "Essential hypertension",
            },
            Chronic::Diabetes => &Diagnosis {
                icd10: ("E11.9", "Type 2 diabetes mellitus without complications"),
                snomed: ("44054006", "Diabetes mellitus type 2"),
                text: "Type 2 diabetes mellitus",
            },
            Chronic::Hyperlipidemia => &Diagnosis {
                icd10: ("E78.5", "Hyperlipidemia, unspecified"),
                snomed: ("55822004", "Hyperlipidemia"),
                text: "Hyperlipidemia",
            },
            Chronic::Asthma => &Diagnosis {
                icd10: ("J45.909", "Unspecified asthma, uncomplicated"),
                snomed: ("195967001", "Asthma"),
                text: "Asthma",
            },
            Chronic::Hypothyroidism => &Diagnosis {
                icd10: ("E03.9", "Hypothyroidism, unspecified"),
                snomed: ("40930008", "Hypothyroidism"),
                text: "Hypothyroidism",
            },
            Chronic::Gerd => &Diagnosis {
                icd10: (
                    "K21.9",
                    "Gastro-esophageal reflux disease without esophagitis",
                ),
                snomed: ("235595009", "Gastroesophageal reflux disease"),
                text: "Gastroesophageal reflux disease",
            },
            Chronic::Depression => &Diagnosis {
                icd10: ("F32.A", "Depression, unspecified"),
                snomed: ("35489007", "Depressive disorder"),
                text: "Depression",
            },
            Chronic::Anxiety => &Diagnosis {
                icd10: ("F41.1", "Generalized anxiety disorder"),
                snomed: ("21897009", "Generalized anxiety disorder"),
                text: "Generalized anxiety disorder",
            },
            Chronic::Obesity => &Diagnosis {
                icd10: ("E66.9", "Obesity, unspecified"),
                snomed: ("414916001", "Obesity"),
                text: "Obesity",
            },
            Chronic::KneeOsteoarthritis => &Diagnosis {
                icd10: ("M17.9", "Osteoarthritis of knee, unspecified"),
                snomed: ("239873007", "Osteoarthritis of knee"),
                text: "Osteoarthritis of knee",
            },
            Chronic::Ckd3 => &Diagnosis {
                icd10: ("N18.30", "Chronic kidney disease, stage 3 unspecified"),
                snomed: ("433144002", "Chronic kidney disease stage 3"),
                text: "Chronic kidney disease stage 3",
            },
            Chronic::Copd => &Diagnosis {
                icd10: (
                    "J44.9",
                    "Chronic obstructive pulmonary disease, unspecified",
                ),
                snomed: ("13645005", "Chronic obstructive lung disease"),
                text: "COPD",
            },
            Chronic::CoronaryDisease => &Diagnosis {
                icd10: (
                    "I25.10",
                    "Atherosclerotic heart disease of native coronary artery without angina pectoris",
                ),
                snomed: ("53741008", "Coronary arteriosclerosis"),
                text: "Coronary artery disease",
            },
            Chronic::Osteoporosis => &Diagnosis {
                icd10: (
                    "M81.0",
                    "Age-related osteoporosis without current pathological fracture",
                ),
                snomed: ("64859006", "Osteoporosis"),
                text: "Osteoporosis",
            },
            Chronic::AllergicRhinitis => &Diagnosis {
                icd10: ("J30.9", "Allergic rhinitis, unspecified"),
                snomed: ("61582004", "Allergic rhinitis"),
                text: "Allergic rhinitis",
            },
            Chronic::AtopicDermatitis => &Diagnosis {
                icd10: ("L20.9", "Atopic dermatitis, unspecified"),
                snomed: ("24079001", "Atopic dermatitis"),
                text: "Atopic dermatitis",
            },
            Chronic::Adhd => &Diagnosis {
                icd10: (
                    "F90.9",
                    "Attention-deficit hyperactivity disorder, unspecified type",
                ),
                snomed: ("406506008", "Attention deficit hyperactivity disorder"),
                text: "ADHD",
            },
            Chronic::IronDeficiency => &Diagnosis {
                icd10: ("D50.9", "Iron deficiency anemia, unspecified"),
                snomed: ("87522002", "Iron deficiency anemia"),
                text: "Iron deficiency anemia",
            },
            Chronic::Migraine => &Diagnosis {
                icd10: (
                    "G43.909",
                    "Migraine, unspecified, not intractable, without status migrainosus",
                ),
                snomed: ("37796009", "Migraine"),
                text: "Migraine",
            },
        }
    }
}

/// Short illnesses that bring patients in between check-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acute {
    UpperRespiratory,
    StrepThroat,
    ViralPharyngitis,
    OtitisMedia,
    Sinusitis,
    Bronchitis,
    UrinaryInfection,
    AnkleSprain,
    LowBackPain,
}

impl Acute {
    pub fn diagnosis(self) -> &'static Diagnosis {
        match self {
            Acute::UpperRespiratory => &Diagnosis {
                icd10: ("J06.9", "Acute upper respiratory infection, unspecified"),
                snomed: ("54150009", "Upper respiratory infection"),
                text: "Upper respiratory infection",
            },
            Acute::StrepThroat => &Diagnosis {
                icd10: ("J02.0", "Streptococcal pharyngitis"),
                snomed: ("43878008", "Streptococcal sore throat"),
                text: "Strep throat",
            },
            Acute::ViralPharyngitis => &Diagnosis {
                icd10: ("J02.9", "Acute pharyngitis, unspecified"),
                snomed: ("363746003", "Acute pharyngitis"),
                text: "Acute pharyngitis",
            },
            Acute::OtitisMedia => &Diagnosis {
                icd10: ("H66.90", "Otitis media, unspecified, unspecified ear"),
                snomed: ("65363002", "Otitis media"),
                text: "Otitis media",
            },
            Acute::Sinusitis => &Diagnosis {
                icd10: ("J01.90", "Acute sinusitis, unspecified"),
                snomed: ("15805002", "Acute sinusitis"),
                text: "Acute sinusitis",
            },
            Acute::Bronchitis => &Diagnosis {
                icd10: ("J20.9", "Acute bronchitis, unspecified"),
                snomed: ("10509002", "Acute bronchitis"),
                text: "Acute bronchitis",
            },
            Acute::UrinaryInfection => &Diagnosis {
                icd10: ("N39.0", "Urinary tract infection, site not specified"),
                snomed: ("68566005", "Urinary tract infectious disease"),
                text: "Urinary tract infection",
            },
            Acute::AnkleSprain => &Diagnosis {
                icd10: (
                    "S93.409A",
                    "Sprain of unspecified ligament of unspecified ankle, initial encounter",
                ),
                snomed: ("44465007", "Sprain of ankle"),
                text: "Ankle sprain",
            },
            Acute::LowBackPain => &Diagnosis {
                icd10: ("M54.50", "Low back pain, unspecified"),
                snomed: ("279039007", "Low back pain"),
                text: "Low back pain",
            },
        }
    }

    /// Typical fever with this illness: (chance of a fever, mean temperature rise in °C).
    pub fn fever(self) -> (f64, f64) {
        match self {
            Acute::UpperRespiratory => (0.3, 0.7),
            Acute::StrepThroat => (0.8, 1.4),
            Acute::ViralPharyngitis => (0.4, 0.9),
            Acute::OtitisMedia => (0.6, 1.2),
            Acute::Sinusitis => (0.3, 0.8),
            Acute::Bronchitis => (0.3, 0.7),
            Acute::UrinaryInfection => (0.2, 0.8),
            Acute::AnkleSprain | Acute::LowBackPain => (0.0, 0.0),
        }
    }

    /// Whether the illness is a bacterial infection (raises the white cell count).
    pub fn bacterial(self) -> bool {
        matches!(
            self,
            Acute::StrepThroat | Acute::OtitisMedia | Acute::Sinusitis | Acute::UrinaryInfection
        )
    }

    /// Days until it is over.
    pub fn duration_days(self) -> (i64, i64) {
        match self {
            Acute::AnkleSprain | Acute::LowBackPain => (14, 42),
            Acute::Bronchitis => (10, 21),
            _ => (5, 12),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Medications (RxNorm clinical drugs)

/// How a dose is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoseUnit {
    Tablet,
    ChewableTablet,
    Capsule,
    Puff,
    Milliliter,
    /// Applied or sprayed; no countable dose.
    None,
}

/// Route of administration (SNOMED CT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Oral,
    Inhaled,
    Topical,
    Sublingual,
    Intramuscular,
}

impl Route {
    pub fn code(self) -> Code {
        match self {
            Route::Oral => snomed("26643006", "Oral route"),
            Route::Inhaled => snomed("447694001", "Respiratory tract route"),
            Route::Topical => snomed("6064005", "Topical route"),
            Route::Sublingual => snomed("37839007", "Sublingual route"),
            Route::Intramuscular => snomed("78421000", "Intramuscular route"),
        }
    }
}

/// A prescribable drug and how it is usually ordered.
#[derive(Debug)]
pub struct Drug {
    pub rxnorm: &'static str,
    pub display: &'static str,
    pub sig: &'static str,
    pub route: Route,
    pub dose: f64,
    pub unit: DoseUnit,
    /// Timing: `frequency` times per `period` `period_unit` (UCUM time unit: h, d, wk).
    pub frequency: u32,
    pub period: u32,
    pub period_unit: &'static str,
    pub as_needed: bool,
    /// Quantity dispensed per fill, in `dispense_unit`.
    pub dispense: u32,
    pub dispense_unit: &'static str,
    pub supply_days: u32,
    pub refills: u32,
    /// Course length in days for short courses (antibiotics); `None` for long-term use.
    pub course_days: Option<u32>,
}

macro_rules! drug {
    ($name:ident, $rx:literal, $display:literal, $sig:literal, $route:ident, $dose:literal,
     $unit:ident, $freq:literal / $period:literal $pu:literal, $prn:literal,
     $disp:literal $du:literal, $days:literal, $refills:literal, $course:expr) => {
        pub const $name: Drug = Drug {
            rxnorm: $rx,
            display: $display,
            sig: $sig,
            route: Route::$route,
            dose: $dose,
            unit: DoseUnit::$unit,
            frequency: $freq,
            period: $period,
            period_unit: $pu,
            as_needed: $prn,
            dispense: $disp,
            dispense_unit: $du,
            supply_days: $days,
            refills: $refills,
            course_days: $course,
        };
    };
}

drug!(LISINOPRIL_10, "314076", "lisinopril 10 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(AMLODIPINE_5, "197361", "amlodipine 5 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(HCTZ_25, "310798", "hydrochlorothiazide 25 MG Oral Tablet",
    "Take 1 tablet by mouth once daily in the morning.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(LOSARTAN_25, "979485", "losartan potassium 25 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(METFORMIN_ER_500, "860975",
    "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
    "Take 1 tablet by mouth once daily with the evening meal.", Oral, 1.0, Tablet,
    1 / 1 "d", false, 90 "tablet", 90, 3, None);
drug!(SIMVASTATIN_20, "312961", "simvastatin 20 MG Oral Tablet",
    "Take 1 tablet by mouth once daily in the evening.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(ATORVASTATIN_80, "259255", "atorvastatin 80 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(ALBUTEROL_INHALER, "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    "Inhale 2 puffs every 4 to 6 hours as needed for wheezing or shortness of breath.",
    Inhaled, 2.0, Puff, 1 / 4 "h", true, 1 "inhaler", 30, 2, None);
drug!(FLUTICASONE_INHALER, "895994",
    "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
    "Inhale 2 puffs twice daily. Rinse mouth after each use.", Inhaled, 2.0, Puff,
    2 / 1 "d", false, 1 "inhaler", 30, 5, None);
drug!(FLUTICASONE_SALMETEROL, "896209",
    "60 ACTUAT fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
    "Inhale 1 puff twice daily. Rinse mouth after each use.", Inhaled, 1.0, Puff,
    2 / 1 "d", false, 1 "inhaler", 30, 5, None);
drug!(LEVOTHYROXINE_75, "966222", "levothyroxine sodium 0.075 MG Oral Tablet",
    "Take 1 tablet by mouth once daily on an empty stomach, 30 to 60 minutes before breakfast.",
    Oral, 1.0, Tablet, 1 / 1 "d", false, 90 "tablet", 90, 3, None);
drug!(FLUOXETINE_20, "310385", "fluoxetine 20 MG Oral Capsule",
    "Take 1 capsule by mouth once daily in the morning.", Oral, 1.0, Capsule, 1 / 1 "d", false,
    30 "capsule", 30, 5, None);
drug!(SERTRALINE_100, "312938", "sertraline 100 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    30 "tablet", 30, 5, None);
drug!(NAPROXEN_500, "198014", "naproxen 500 MG Oral Tablet",
    "Take 1 tablet by mouth twice daily with food as needed for knee pain.", Oral, 1.0, Tablet,
    2 / 1 "d", true, 60 "tablet", 30, 2, None);
drug!(ACETAMINOPHEN_500, "198440", "acetaminophen 500 MG Oral Tablet",
    "Take 2 tablets by mouth every 8 hours as needed for pain. Do not exceed 3,000 mg a day.",
    Oral, 2.0, Tablet, 1 / 8 "h", true, 100 "tablet", 30, 2, None);
drug!(ASPIRIN_81, "243670", "aspirin 81 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    90 "tablet", 90, 3, None);
drug!(NITROGLYCERIN_SPRAY, "705129", "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
    "Spray 1 to 2 sprays under the tongue at the onset of chest pain; may repeat every 5 minutes, up to 3 doses. Call 911 if pain persists.",
    Sublingual, 1.0, None, 1 / 5 "min", true, 1 "bottle", 90, 1, None);
drug!(ALENDRONATE_10, "904419", "alendronic acid 10 MG Oral Tablet",
    "Take 1 tablet by mouth once daily in the morning with a full glass of water, 30 minutes before food; stay upright for 30 minutes.",
    Oral, 1.0, Tablet, 1 / 1 "d", false, 90 "tablet", 90, 3, None);
drug!(CETIRIZINE_10, "1014678", "cetirizine hydrochloride 10 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    30 "tablet", 30, 5, None);
drug!(LORATADINE_10, "311372", "loratadine 10 MG Oral Tablet",
    "Take 1 tablet by mouth once daily.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    30 "tablet", 30, 5, None);
drug!(LORATADINE_5_CHEWABLE, "665078", "loratadine 5 MG Chewable Tablet",
    "Chew 1 tablet by mouth once daily.", Oral, 1.0, ChewableTablet, 1 / 1 "d", false,
    30 "tablet", 30, 5, None);
drug!(HYDROCORTISONE_CREAM, "106258", "hydrocortisone 10 MG/ML Topical Cream",
    "Apply a thin layer to the affected skin twice daily for up to 2 weeks at a time.", Topical,
    1.0, None, 2 / 1 "d", false, 1 "tube", 30, 2, None);
drug!(METHYLPHENIDATE_20, "1091392", "methylphenidate hydrochloride 20 MG Oral Tablet",
    "Take 1 tablet by mouth once daily in the morning.", Oral, 1.0, Tablet, 1 / 1 "d", false,
    30 "tablet", 30, 0, None);
drug!(FERROUS_SULFATE_325, "310325", "ferrous sulfate 325 MG Oral Tablet",
    "Take 1 tablet by mouth once daily with orange juice; not with milk or antacids.", Oral,
    1.0, Tablet, 1 / 1 "d", false, 90 "tablet", 90, 1, Some(180));
drug!(IBUPROFEN_200, "310965", "ibuprofen 200 MG Oral Tablet",
    "Take 2 tablets by mouth every 6 hours as needed for pain, with food.", Oral, 2.0, Tablet,
    1 / 6 "h", true, 50 "tablet", 7, 0, None);
drug!(EPINEPHRINE_AUTOINJECTOR, "1870230",
    "NDA020800 0.3 ML epinephrine 1 MG/ML Auto-Injector",
    "Inject 0.3 mg into the outer thigh for a severe allergic reaction; call 911. May repeat once after 5 to 15 minutes.",
    Intramuscular, 0.3, Milliliter, 1 / 15 "min", true, 2 "auto-injector", 365, 1, None);
drug!(AMOXICILLIN_500, "308192", "amoxicillin 500 MG Oral Tablet",
    "Take 1 tablet by mouth every 12 hours for 10 days.", Oral, 1.0, Tablet, 2 / 1 "d", false,
    20 "tablet", 10, 0, Some(10));
drug!(AMOXICILLIN_250, "308182", "amoxicillin 250 MG Oral Capsule",
    "Take 1 capsule by mouth 3 times daily for 10 days.", Oral, 1.0, Capsule, 3 / 1 "d", false,
    30 "capsule", 10, 0, Some(10));
drug!(AMOX_CLAV, "562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet",
    "Take 1 tablet by mouth every 8 hours for 7 days.", Oral, 1.0, Tablet, 3 / 1 "d", false,
    21 "tablet", 7, 0, Some(7));
drug!(PENICILLIN_V_500, "834102", "penicillin V potassium 500 MG Oral Tablet",
    "Take 1 tablet by mouth twice daily for 10 days.", Oral, 1.0, Tablet, 2 / 1 "d", false,
    20 "tablet", 10, 0, Some(10));
drug!(AZITHROMYCIN_250, "308460", "azithromycin 250 MG Oral Tablet",
    "Take 2 tablets by mouth on day 1, then 1 tablet once daily on days 2 to 5.", Oral, 1.0,
    Tablet, 1 / 1 "d", false, 6 "tablet", 5, 0, Some(5));
drug!(DOXYCYCLINE_100, "1650142", "doxycycline monohydrate 100 MG Oral Tablet",
    "Take 1 tablet by mouth twice daily for 7 days with a full glass of water.", Oral, 1.0,
    Tablet, 2 / 1 "d", false, 14 "tablet", 7, 0, Some(7));
drug!(NITROFURANTOIN_50, "311995", "nitrofurantoin, macrocrystals 50 MG Oral Capsule",
    "Take 1 capsule by mouth 4 times daily for 7 days, with food.", Oral, 1.0, Capsule,
    4 / 1 "d", false, 28 "capsule", 7, 0, Some(7));
drug!(ACETAMINOPHEN_325, "313782", "acetaminophen 325 MG Oral Tablet",
    "Take 2 tablets by mouth every 6 hours as needed for pain or fever.", Oral, 2.0, Tablet,
    1 / 6 "h", true, 50 "tablet", 7, 0, None);
drug!(ACETAMINOPHEN_160_CHEWABLE, "313820", "acetaminophen 160 MG Chewable Tablet",
    "Chew 1 to 2 tablets (by weight) every 6 hours as needed for fever or pain; no more than 5 doses a day.",
    Oral, 1.0, ChewableTablet, 1 / 6 "h", true, 24 "tablet", 7, 0, None);
drug!(NAPROXEN_SODIUM_220, "849574", "naproxen sodium 220 MG Oral Tablet",
    "Take 1 tablet by mouth every 12 hours as needed for pain, with food.", Oral, 1.0, Tablet,
    1 / 12 "h", true, 24 "tablet", 12, 0, None);

// ---------------------------------------------------------------------------------------------
/// The long-term drugs the clinic keeps as Medication resources of its own (its formulary):
/// a prescription of one names it by reference (`medicationReference`), as many systems'
/// exports do, while a short course names its drug by code. Every long-term drug a chart can
/// prescribe is here (the generator's tests check that each reference resolves).
pub const FORMULARY: &[Drug] = &[
    LISINOPRIL_10,
    AMLODIPINE_5,
    HCTZ_25,
    LOSARTAN_25,
    METFORMIN_ER_500,
    SIMVASTATIN_20,
    ATORVASTATIN_80,
    ALBUTEROL_INHALER,
    FLUTICASONE_INHALER,
    FLUTICASONE_SALMETEROL,
    LEVOTHYROXINE_75,
    FLUOXETINE_20,
    SERTRALINE_100,
    NAPROXEN_500,
    ACETAMINOPHEN_500,
    ASPIRIN_81,
    NITROGLYCERIN_SPRAY,
    ALENDRONATE_10,
    CETIRIZINE_10,
    LORATADINE_10,
    LORATADINE_5_CHEWABLE,
    HYDROCORTISONE_CREAM,
    METHYLPHENIDATE_20,
    IBUPROFEN_200,
    EPINEPHRINE_AUTOINJECTOR,
    ACETAMINOPHEN_325,
    ACETAMINOPHEN_160_CHEWABLE,
    NAPROXEN_SODIUM_220,
];

// Allergies

/// Category of an allergy (`AllergyIntolerance.category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllergyCategory {
    Food,
    Medication,
    Environment,
}

impl AllergyCategory {
    pub fn code(self) -> &'static str {
        match self {
            AllergyCategory::Food => "food",
            AllergyCategory::Medication => "medication",
            AllergyCategory::Environment => "environment",
        }
    }
}

/// An allergy and the reactions it typically causes.
#[derive(Debug)]
pub struct Allergen {
    pub code: Code,
    pub text: &'static str,
    pub category: AllergyCategory,
    /// (manifestation, severity) pairs; the first reactions are the most typical.
    pub reactions: &'static [(Code, &'static str)],
    pub high_criticality: bool,
}

pub const URTICARIA: Code = snomed("126485001", "Urticaria");
pub const ANAPHYLAXIS: Code = snomed("39579001", "Anaphylaxis");
pub const SKIN_ERUPTION: Code = snomed("271807003", "Eruption of skin");
pub const ANGIOEDEMA: Code = snomed("402387002", "Allergic angioedema");
pub const WHEEZING: Code = snomed("56018004", "Wheezing");
pub const DYSPNEA: Code = snomed("267036007", "Dyspnea");
pub const VOMITING: Code = snomed("300359004", "Finding of vomiting");
pub const ITCHING: Code = snomed("418290006", "Itching");
pub const SNEEZING: Code = snomed("76067001", "Sneezing");
pub const RHINOCONJUNCTIVITIS: Code = snomed("878820003", "Rhinoconjunctivitis");
pub const CONTACT_DERMATITIS: Code = snomed("40275004", "Contact dermatitis");
pub const COUGH: Code = snomed("49727002", "Cough");

pub const PENICILLIN: Allergen = Allergen {
    code: snomed("91936005", "Allergy to penicillin"),
    text: "Penicillin",
    category: AllergyCategory::Medication,
    reactions: &[
        (URTICARIA, "moderate"),
        (SKIN_ERUPTION, "mild"),
        (ANAPHYLAXIS, "severe"),
    ],
    high_criticality: false,
};
pub const PEANUT: Allergen = Allergen {
    code: snomed("91935009", "Allergy to peanuts"),
    text: "Peanuts",
    category: AllergyCategory::Food,
    reactions: &[
        (ANAPHYLAXIS, "severe"),
        (URTICARIA, "moderate"),
        (ANGIOEDEMA, "moderate"),
    ],
    high_criticality: true,
};
pub const TREE_NUT: Allergen = Allergen {
    code: snomed("91934008", "Allergy to nut"),
    text: "Tree nuts",
    category: AllergyCategory::Food,
    reactions: &[
        (ANGIOEDEMA, "moderate"),
        (URTICARIA, "moderate"),
        (ANAPHYLAXIS, "severe"),
    ],
    high_criticality: true,
};
pub const SHELLFISH: Allergen = Allergen {
    code: snomed("300913006", "Shellfish allergy"),
    text: "Shellfish",
    category: AllergyCategory::Food,
    reactions: &[
        (URTICARIA, "moderate"),
        (VOMITING, "mild"),
        (ANGIOEDEMA, "severe"),
    ],
    high_criticality: false,
};
pub const EGG: Allergen = Allergen {
    code: snomed("91930004", "Allergy to eggs"),
    text: "Eggs",
    category: AllergyCategory::Food,
    reactions: &[(URTICARIA, "mild"), (VOMITING, "mild"), (ITCHING, "mild")],
    high_criticality: false,
};
pub const LATEX: Allergen = Allergen {
    code: snomed("300916003", "Latex allergy"),
    text: "Latex",
    category: AllergyCategory::Environment,
    reactions: &[
        (CONTACT_DERMATITIS, "mild"),
        (URTICARIA, "moderate"),
        (WHEEZING, "moderate"),
    ],
    high_criticality: false,
};
pub const DUST_MITE: Allergen = Allergen {
    code: snomed("232350006", "House dust mite allergy"),
    text: "Dust mites",
    category: AllergyCategory::Environment,
    reactions: &[
        (SNEEZING, "mild"),
        (RHINOCONJUNCTIVITIS, "mild"),
        (WHEEZING, "mild"),
    ],
    high_criticality: false,
};
pub const GRASS_POLLEN: Allergen = Allergen {
    code: snomed("418689008", "Allergy to grass pollen"),
    text: "Grass pollen",
    category: AllergyCategory::Environment,
    reactions: &[
        (RHINOCONJUNCTIVITIS, "mild"),
        (SNEEZING, "mild"),
        (COUGH, "mild"),
    ],
    high_criticality: false,
};
pub const TREE_POLLEN: Allergen = Allergen {
    code: snomed("419263009", "Allergy to tree pollen"),
    text: "Tree pollen",
    category: AllergyCategory::Environment,
    reactions: &[
        (SNEEZING, "mild"),
        (RHINOCONJUNCTIVITIS, "mild"),
        (ITCHING, "mild"),
    ],
    high_criticality: false,
};
pub const ANIMAL_DANDER: Allergen = Allergen {
    code: snomed("232347008", "Dander (animal) allergy"),
    text: "Cat and dog dander",
    category: AllergyCategory::Environment,
    reactions: &[
        (SNEEZING, "mild"),
        (WHEEZING, "moderate"),
        (DYSPNEA, "moderate"),
    ],
    high_criticality: false,
};
pub const MOLD: Allergen = Allergen {
    code: snomed("419474003", "Allergy to mould"),
    text: "Mold",
    category: AllergyCategory::Environment,
    reactions: &[(COUGH, "mild"), (SNEEZING, "mild"), (WHEEZING, "mild")],
    high_criticality: false,
};

pub const NO_KNOWN_ALLERGY: Code = snomed("716186003", "No known allergy");

// ---------------------------------------------------------------------------------------------
// Vaccines (CVX)

/// How a vaccine is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaccineRoute {
    Intramuscular,
    Subcutaneous,
    Oral,
}

impl VaccineRoute {
    pub fn code(self) -> Code {
        let (code, display) = match self {
            VaccineRoute::Intramuscular => ("IM", "Injection, intramuscular"),
            VaccineRoute::Subcutaneous => ("SQ", "Injection, subcutaneous"),
            VaccineRoute::Oral => ("PO", "Swallow, oral"),
        };
        Code {
            system: ROUTE_OF_ADMIN,
            code,
            display,
        }
    }
}

#[derive(Debug)]
pub struct Vaccine {
    pub cvx: &'static str,
    pub display: &'static str,
    pub route: VaccineRoute,
    pub dose_ml: f64,
}

macro_rules! vaccine {
    ($name:ident, $cvx:literal, $display:literal, $route:ident, $ml:literal) => {
        pub const $name: Vaccine = Vaccine {
            cvx: $cvx,
            display: $display,
            route: VaccineRoute::$route,
            dose_ml: $ml,
        };
    };
}

vaccine!(
    HEPB_PEDIATRIC,
    "08",
    "Hep B, adolescent or pediatric",
    Intramuscular,
    0.5
);
vaccine!(HEPB_ADULT, "43", "Hep B, adult", Intramuscular, 1.0);
vaccine!(ROTAVIRUS, "116", "rotavirus, pentavalent", Oral, 2.0);
vaccine!(DTAP, "20", "DTaP", Intramuscular, 0.5);
vaccine!(HIB, "49", "Hib (PRP-OMP)", Intramuscular, 0.5);
vaccine!(
    PCV13,
    "133",
    "Pneumococcal conjugate PCV 13",
    Intramuscular,
    0.5
);
vaccine!(
    PCV20,
    "216",
    "Pneumococcal conjugate PCV20",
    Intramuscular,
    0.5
);
vaccine!(
    PPSV23,
    "33",
    "pneumococcal polysaccharide vaccine, 23 valent",
    Intramuscular,
    0.5
);
vaccine!(IPV, "10", "IPV", Intramuscular, 0.5);
vaccine!(MMR, "03", "MMR", Subcutaneous, 0.5);
vaccine!(VARICELLA, "21", "varicella", Subcutaneous, 0.5);
vaccine!(
    HEPA_PEDIATRIC,
    "83",
    "Hep A, ped/adol, 2 dose",
    Intramuscular,
    0.5
);
vaccine!(TDAP, "115", "Tdap", Intramuscular, 0.5);
vaccine!(HPV9, "165", "HPV9", Intramuscular, 0.5);
vaccine!(
    MENACWY_MCV4P,
    "114",
    "meningococcal MCV4P",
    Intramuscular,
    0.5
);
vaccine!(
    MENACWY_MCV4O,
    "136",
    "Meningococcal MCV4O",
    Intramuscular,
    0.5
);
vaccine!(
    ZOSTER_RECOMBINANT,
    "187",
    "zoster vaccine recombinant",
    Intramuscular,
    0.5
);
vaccine!(
    FLU_QUADRIVALENT_PF,
    "150",
    "Influenza, injectable, quadrivalent, preservative free",
    Intramuscular,
    0.5
);
vaccine!(
    FLU_TRIVALENT_PF,
    "140",
    "Influenza, seasonal, injectable, preservative free",
    Intramuscular,
    0.5
);
vaccine!(
    FLU_HIGH_DOSE_QUADRIVALENT,
    "197",
    "influenza, high-dose, quadrivalent",
    Intramuscular,
    0.7
);
vaccine!(
    FLU_HIGH_DOSE_TRIVALENT,
    "135",
    "Influenza, high dose seasonal",
    Intramuscular,
    0.5
);
vaccine!(
    COVID_PFIZER,
    "208",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
    Intramuscular,
    0.3
);
vaccine!(
    COVID_MODERNA,
    "207",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 100 mcg/0.5mL dose",
    Intramuscular,
    0.5
);

// ---------------------------------------------------------------------------------------------
// Laboratory tests (LOINC) and vital signs

/// A quantitative laboratory test with its unit and adult reference range.
#[derive(Debug)]
pub struct LabTest {
    pub code: Code,
    pub text: &'static str,
    /// Human-readable unit and its UCUM code.
    pub unit: &'static str,
    pub ucum: &'static str,
    /// Decimal places reported.
    pub places: usize,
    /// Reference range (low, high) for men and for women; `None` where the range is one-sided.
    pub male: (Option<f64>, Option<f64>),
    pub female: (Option<f64>, Option<f64>),
}

macro_rules! lab {
    ($name:ident, $loinc:literal, $display:literal, $text:literal, $unit:literal, $ucum:literal,
     $places:literal, $male:expr, $female:expr) => {
        pub const $name: LabTest = LabTest {
            code: loinc($loinc, $display),
            text: $text,
            unit: $unit,
            ucum: $ucum,
            places: $places,
            male: $male,
            female: $female,
        };
    };
}

const fn both(low: f64, high: f64) -> (Option<f64>, Option<f64>) {
    (Some(low), Some(high))
}

lab!(
    GLUCOSE,
    "2345-7",
    "Glucose [Mass/volume] in Serum or Plasma",
    "Glucose",
    "mg/dL",
    "mg/dL",
    0,
    both(70.0, 99.0),
    both(70.0, 99.0)
);
lab!(
    BUN,
    "3094-0",
    "Urea nitrogen [Mass/volume] in Serum or Plasma",
    "Urea nitrogen (BUN)",
    "mg/dL",
    "mg/dL",
    0,
    both(7.0, 20.0),
    both(7.0, 20.0)
);
lab!(
    CREATININE,
    "2160-0",
    "Creatinine [Mass/volume] in Serum or Plasma",
    "Creatinine",
    "mg/dL",
    "mg/dL",
    2,
    both(0.74, 1.35),
    both(0.59, 1.04)
);
lab!(
    SODIUM,
    "2951-2",
    "Sodium [Moles/volume] in Serum or Plasma",
    "Sodium",
    "mmol/L",
    "mmol/L",
    0,
    both(136.0, 145.0),
    both(136.0, 145.0)
);
lab!(
    POTASSIUM,
    "2823-3",
    "Potassium [Moles/volume] in Serum or Plasma",
    "Potassium",
    "mmol/L",
    "mmol/L",
    1,
    both(3.5, 5.1),
    both(3.5, 5.1)
);
lab!(
    CHLORIDE,
    "2075-0",
    "Chloride [Moles/volume] in Serum or Plasma",
    "Chloride",
    "mmol/L",
    "mmol/L",
    0,
    both(98.0, 107.0),
    both(98.0, 107.0)
);
lab!(
    CO2,
    "2028-9",
    "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
    "Carbon dioxide, total",
    "mmol/L",
    "mmol/L",
    0,
    both(22.0, 29.0),
    both(22.0, 29.0)
);
lab!(
    CALCIUM,
    "17861-6",
    "Calcium [Mass/volume] in Serum or Plasma",
    "Calcium",
    "mg/dL",
    "mg/dL",
    1,
    both(8.6, 10.3),
    both(8.6, 10.3)
);
lab!(
    EGFR,
    "98979-8",
    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
    "eGFR (CKD-EPI 2021)",
    "mL/min/1.73 m2",
    "mL/min/{1.73_m2}",
    0,
    (Some(60.0), None),
    (Some(60.0), None)
);
lab!(
    CHOLESTEROL,
    "2093-3",
    "Cholesterol [Mass/volume] in Serum or Plasma",
    "Cholesterol, total",
    "mg/dL",
    "mg/dL",
    0,
    (None, Some(199.0)),
    (None, Some(199.0))
);
lab!(
    TRIGLYCERIDES,
    "2571-8",
    "Triglyceride [Mass/volume] in Serum or Plasma",
    "Triglycerides",
    "mg/dL",
    "mg/dL",
    0,
    (None, Some(149.0)),
    (None, Some(149.0))
);
lab!(
    HDL,
    "2085-9",
    "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
    "HDL cholesterol",
    "mg/dL",
    "mg/dL",
    0,
    (Some(40.0), None),
    (Some(50.0), None)
);
lab!(
    LDL,
    "18262-6",
    "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
    "LDL cholesterol (direct)",
    "mg/dL",
    "mg/dL",
    0,
    (None, Some(99.0)),
    (None, Some(99.0))
);
lab!(
    WBC,
    "6690-2",
    "Leukocytes [#/volume] in Blood by Automated count",
    "White blood cells",
    "10*3/uL",
    "10*3/uL",
    1,
    both(4.5, 11.0),
    both(4.5, 11.0)
);
lab!(
    RBC,
    "789-8",
    "Erythrocytes [#/volume] in Blood by Automated count",
    "Red blood cells",
    "10*6/uL",
    "10*6/uL",
    2,
    both(4.5, 5.9),
    both(4.1, 5.1)
);
lab!(
    HEMOGLOBIN,
    "718-7",
    "Hemoglobin [Mass/volume] in Blood",
    "Hemoglobin",
    "g/dL",
    "g/dL",
    1,
    both(13.5, 17.5),
    both(12.0, 15.5)
);
lab!(
    HEMATOCRIT,
    "4544-3",
    "Hematocrit [Volume Fraction] of Blood by Automated count",
    "Hematocrit",
    "%",
    "%",
    1,
    both(41.0, 53.0),
    both(36.0, 46.0)
);
lab!(
    MCV,
    "787-2",
    "MCV [Entitic volume] by Automated count",
    "MCV",
    "fL",
    "fL",
    0,
    both(80.0, 100.0),
    both(80.0, 100.0)
);
lab!(
    PLATELETS,
    "777-3",
    "Platelets [#/volume] in Blood by Automated count",
    "Platelets",
    "10*3/uL",
    "10*3/uL",
    0,
    both(150.0, 400.0),
    both(150.0, 400.0)
);
lab!(
    HBA1C,
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    "Hemoglobin A1c",
    "%",
    "%",
    1,
    both(4.0, 5.6),
    both(4.0, 5.6)
);
lab!(
    TSH,
    "3016-3",
    "Thyrotropin [Units/volume] in Serum or Plasma",
    "TSH",
    "mIU/L",
    "m[IU]/L",
    2,
    both(0.45, 4.5),
    both(0.45, 4.5)
);

lab!(
    PROTEIN,
    "2885-2",
    "Protein [Mass/volume] in Serum or Plasma",
    "Protein, total",
    "g/dL",
    "g/dL",
    1,
    both(6.0, 8.3),
    both(6.0, 8.3)
);
lab!(
    ALBUMIN,
    "1751-7",
    "Albumin [Mass/volume] in Serum or Plasma",
    "Albumin",
    "g/dL",
    "g/dL",
    1,
    both(3.5, 5.0),
    both(3.5, 5.0)
);
lab!(
    BILIRUBIN,
    "1975-2",
    "Bilirubin.total [Mass/volume] in Serum or Plasma",
    "Bilirubin, total",
    "mg/dL",
    "mg/dL",
    1,
    both(0.1, 1.2),
    both(0.1, 1.2)
);
lab!(
    ALP,
    "6768-6",
    "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
    "Alkaline phosphatase",
    "U/L",
    "U/L",
    0,
    both(44.0, 147.0),
    both(44.0, 147.0)
);
lab!(
    AST,
    "1920-8",
    "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "AST",
    "U/L",
    "U/L",
    0,
    both(10.0, 40.0),
    both(10.0, 40.0)
);
lab!(
    ALT,
    "1742-6",
    "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "ALT",
    "U/L",
    "U/L",
    0,
    both(7.0, 56.0),
    both(7.0, 56.0)
);
lab!(
    UACR,
    "9318-7",
    "Albumin/Creatinine [Mass Ratio] in Urine",
    "Urine albumin/creatinine ratio",
    "mg/g",
    "mg/g",
    0,
    (None, Some(29.0)),
    (None, Some(29.0))
);

/// Laboratory orders: a panel code and its member tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Cbc,
    Bmp,
    Cmp,
    Lipid,
    A1c,
    Tsh,
    Uacr,
}

impl Panel {
    /// Every panel, in the order a visit's results are written (the discriminant order).
    pub const ALL: [Panel; 7] = [
        Panel::Cbc,
        Panel::Bmp,
        Panel::Cmp,
        Panel::Lipid,
        Panel::A1c,
        Panel::Tsh,
        Panel::Uacr,
    ];

    pub fn code(self) -> Code {
        match self {
            Panel::Cbc => loinc("58410-2", "CBC panel - Blood by Automated count"),
            Panel::Bmp => loinc("51990-0", "Basic metabolic panel - Blood"),
            Panel::Cmp => loinc(
                "24323-8",
                "Comprehensive metabolic 2000 panel - Serum or Plasma",
            ),
            Panel::Lipid => loinc("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
            Panel::A1c => HBA1C.code,
            Panel::Tsh => TSH.code,
            Panel::Uacr => UACR.code,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Panel::Cbc => "Complete blood count",
            Panel::Bmp => "Basic metabolic panel",
            Panel::Cmp => "Comprehensive metabolic panel",
            Panel::Lipid => "Lipid panel",
            Panel::A1c => "Hemoglobin A1c",
            Panel::Tsh => "TSH",
            Panel::Uacr => "Urine albumin/creatinine ratio",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Social history and screening questionnaires

pub const SMOKING_STATUS: Code = loinc("72166-2", "Tobacco smoking status");
pub const NEVER_SMOKER: Code = snomed("266919005", "Never smoked tobacco");
pub const EX_SMOKER: Code = snomed("8517006", "Ex-smoker");
pub const DAILY_SMOKER: Code = snomed("449868002", "Smokes tobacco daily");
pub const PHQ2: Code = loinc(
    "55758-7",
    "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
);
pub const PHQ9: Code = loinc(
    "44261-6",
    "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
);
pub const GAD7: Code = loinc(
    "69737-5",
    "Generalized anxiety disorder 7 item (GAD-7) total score [Reported]",
);

// ---------------------------------------------------------------------------------------------
// Clinical notes

pub const PROGRESS_NOTE: Code = loinc("11506-3", "Progress note");
pub const DOCUMENT_CATEGORY: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";

/// A vital sign with its LOINC code, the FHIR vital-signs profile it follows, and its unit.
#[derive(Debug)]
pub struct Vital {
    pub code: Code,
    pub text: &'static str,
    pub profile: &'static str,
    pub unit: &'static str,
    pub ucum: &'static str,
    pub places: usize,
}

macro_rules! vital {
    ($name:ident, $loinc:literal, $display:literal, $text:literal, $profile:literal,
     $unit:literal, $ucum:literal, $places:literal) => {
        pub const $name: Vital = Vital {
            code: loinc($loinc, $display),
            text: $text,
            profile: concat!("http://hl7.org/fhir/StructureDefinition/", $profile),
            unit: $unit,
            ucum: $ucum,
            places: $places,
        };
    };
}

vital!(
    HEART_RATE,
    "8867-4",
    "Heart rate",
    "Heart rate",
    "heartrate",
    "beats/minute",
    "/min",
    0
);
vital!(
    RESPIRATORY_RATE,
    "9279-1",
    "Respiratory rate",
    "Respiratory rate",
    "resprate",
    "breaths/minute",
    "/min",
    0
);
vital!(
    BODY_TEMPERATURE,
    "8310-5",
    "Body temperature",
    "Body temperature",
    "bodytemp",
    "C",
    "Cel",
    1
);
vital!(
    BODY_HEIGHT,
    "8302-2",
    "Body height",
    "Body height",
    "bodyheight",
    "cm",
    "cm",
    1
);
vital!(
    BODY_WEIGHT,
    "29463-7",
    "Body weight",
    "Body weight",
    "bodyweight",
    "kg",
    "kg",
    1
);
vital!(
    BMI,
    "39156-5",
    "Body mass index (BMI) [Ratio]",
    "BMI",
    "bmi",
    "kg/m2",
    "kg/m2",
    1
);
vital!(
    OXYGEN_SATURATION,
    "2708-6",
    "Oxygen saturation in Arterial blood",
    "Oxygen saturation",
    "oxygensat",
    "%",
    "%",
    0
);
vital!(
    BLOOD_PRESSURE,
    "85354-9",
    "Blood pressure panel with all children optional",
    "Blood pressure",
    "bp",
    "mmHg",
    "mm[Hg]",
    0
);
vital!(
    HEAD_CIRCUMFERENCE,
    "9843-4",
    "Head Occipital-frontal circumference",
    "Head circumference",
    "headcircum",
    "cm",
    "cm",
    1
);
pub const PULSE_OXIMETRY: Code = loinc(
    "59408-5",
    "Oxygen saturation in Arterial blood by Pulse oximetry",
);
pub const SYSTOLIC: Code = loinc("8480-6", "Systolic blood pressure");
pub const DIASTOLIC: Code = loinc("8462-4", "Diastolic blood pressure");
