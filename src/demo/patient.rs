//! One synthetic patient, planned before anything is written: who they are, the visits they
//! make, the conditions they have (with onset, diagnosis and treatment), and a body whose
//! measurements follow from age, sex, conditions and treatment. [`super::chart`] turns the
//! plan into resources.

use super::AS_OF;
use super::calendar::{Day, Moment};
use super::clinic::{Clinic, SITES};
use super::names::{self, Address};
use super::rng::Rng;
use super::terminology::{self as t, Acute, Allergen, Chronic, Drug, LabTest, Panel, Vaccine};

/// What a visit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VisitKind {
    WellChild,
    Checkup,
    FollowUp,
    Sick,
}

impl VisitKind {
    pub fn preventive(self) -> bool {
        matches!(self, VisitKind::WellChild | VisitKind::Checkup)
    }
}

/// One planned ambulatory visit.
#[derive(Debug, Clone)]
pub struct Visit {
    pub start: Moment,
    pub minutes: u32,
    pub kind: VisitKind,
    pub acute: Option<Acute>,
    /// Index into [`Clinic::clinicians`].
    pub clinician: usize,
    /// Index into [`SITES`].
    pub site: usize,
}

impl Visit {
    pub fn day(&self) -> Day {
        self.start.day
    }
}

/// A long-term condition as it will appear in the record.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: Chronic,
    pub onset: Day,
    /// Began well before the first visit (onset is then recorded with year or month precision).
    pub pre_existing: bool,
    /// The visit at which it is put on the problem list.
    pub visit: usize,
    /// Drugs started for it.
    pub drugs: Vec<&'static Drug>,
    /// When treatment began (before the first visit for pre-existing conditions).
    pub treated_from: Option<Day>,
    /// When it resolved, if it did by [`AS_OF`].
    pub resolved: Option<Day>,
}

/// An allergy the patient has.
#[derive(Debug, Clone)]
pub struct PlannedAllergy {
    pub allergen: &'static Allergen,
    /// Index into the allergen's reactions.
    pub reaction: usize,
    pub onset_year: Option<i32>,
}

/// Parameters of the patient's body, drawn once; measurements are functions of these and time.
#[derive(Debug, Clone)]
struct Body {
    height_z: f64,
    size_z: f64,
    adult_bmi: f64,
    bmi_drift: f64,
    hr_offset: f64,
    bp_offset: f64,
    a1c: f64,
    dm_a1c: f64,
    dm_a1c_treated: f64,
    ldl: f64,
    hld_ldl: f64,
    hdl: f64,
    tg: f64,
    hgb: f64,
    ida_drop: f64,
    mcv: f64,
    wbc: f64,
    plt: f64,
    tsh: f64,
    hypo_tsh: f64,
    hypo_tsh_treated: f64,
    egfr_offset: f64,
    alt: f64,
    ast: f64,
    uacr: f64,
    phq: f64,
    ckd_egfr: f64,
    bun: f64,
    potassium: f64,
}

/// A planned patient.
#[derive(Debug)]
pub struct Person {
    /// Zero-padded patient number used in every id of the chart (`000123`).
    pub key: String,
    pub female: bool,
    pub birth: Day,
    pub given: &'static str,
    pub middle: Option<&'static str>,
    pub family: &'static str,
    pub address: Address,
    pub phone: String,
    pub email: Option<String>,
    pub marital: Option<(&'static str, &'static str)>,
    /// Preferred language other than English, and whether English is spoken too.
    pub language: Option<(&'static str, &'static str, bool)>,
    /// A parent for minors: given name and whether she is the mother.
    pub guardian: Option<(&'static str, bool)>,
    /// Primary care provider as of [`AS_OF`] (index into [`Clinic::clinicians`]).
    pub pcp: usize,
    pub visits: Vec<Visit>,
    pub conditions: Vec<Planned>,
    pub allergies: Vec<PlannedAllergy>,
    pub no_known_allergies: bool,
    /// Chance of taking the flu shot at a visit in flu season.
    pub flu_propensity: f64,
    /// COVID-19 doses given elsewhere (pharmacy, mass vaccination site): day, vaccine.
    pub covid: Vec<(Day, &'static Vaccine)>,
    pub smoking: Smoking,
    body: Body,
}

/// Tobacco use as of [`AS_OF`] (constant over the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoking {
    Never,
    Former,
    Current,
}

/// Median height (cm) by age (years), CDC growth charts, boys and girls.
const HEIGHT_M: [(f64, f64); 24] = [
    (0.0, 49.9),
    (0.25, 61.4),
    (0.5, 67.6),
    (0.75, 72.0),
    (1.0, 75.7),
    (1.5, 82.3),
    (2.0, 87.1),
    (3.0, 96.1),
    (4.0, 103.3),
    (5.0, 110.0),
    (6.0, 116.0),
    (7.0, 121.7),
    (8.0, 127.3),
    (9.0, 132.6),
    (10.0, 137.8),
    (11.0, 143.1),
    (12.0, 149.1),
    (13.0, 156.0),
    (14.0, 163.2),
    (15.0, 169.0),
    (16.0, 172.9),
    (17.0, 175.2),
    (18.0, 176.1),
    (20.0, 176.8),
];
const HEIGHT_F: [(f64, f64); 24] = [
    (0.0, 49.1),
    (0.25, 59.8),
    (0.5, 65.7),
    (0.75, 70.1),
    (1.0, 74.0),
    (1.5, 80.7),
    (2.0, 85.7),
    (3.0, 95.1),
    (4.0, 102.7),
    (5.0, 109.4),
    (6.0, 115.5),
    (7.0, 121.1),
    (8.0, 126.6),
    (9.0, 132.2),
    (10.0, 138.3),
    (11.0, 144.8),
    (12.0, 151.2),
    (13.0, 156.7),
    (14.0, 160.0),
    (15.0, 161.7),
    (16.0, 162.5),
    (17.0, 162.9),
    (18.0, 163.1),
    (20.0, 163.3),
];
/// Median BMI (kg/m²) by age (years).
const BMI_M: [(f64, f64); 23] = [
    (0.0, 13.4),
    (0.25, 16.9),
    (0.5, 17.3),
    (1.0, 17.2),
    (1.5, 16.8),
    (2.0, 16.4),
    (3.0, 15.9),
    (4.0, 15.6),
    (5.0, 15.4),
    (6.0, 15.4),
    (7.0, 15.5),
    (8.0, 15.8),
    (9.0, 16.2),
    (10.0, 16.6),
    (11.0, 17.2),
    (12.0, 17.8),
    (13.0, 18.4),
    (14.0, 19.1),
    (15.0, 19.8),
    (16.0, 20.5),
    (17.0, 21.1),
    (18.0, 21.7),
    (20.0, 22.6),
];
const BMI_F: [(f64, f64); 23] = [
    (0.0, 13.3),
    (0.25, 16.4),
    (0.5, 16.9),
    (1.0, 16.6),
    (1.5, 16.3),
    (2.0, 16.0),
    (3.0, 15.6),
    (4.0, 15.4),
    (5.0, 15.2),
    (6.0, 15.3),
    (7.0, 15.5),
    (8.0, 15.9),
    (9.0, 16.3),
    (10.0, 16.9),
    (11.0, 17.5),
    (12.0, 18.0),
    (13.0, 18.7),
    (14.0, 19.4),
    (15.0, 19.9),
    (16.0, 20.4),
    (17.0, 20.8),
    (18.0, 21.3),
    (20.0, 21.7),
];

/// Linear interpolation in a table sorted by x (clamped at both ends).
fn interpolate(table: &[(f64, f64)], x: f64) -> f64 {
    let mut previous = table[0];
    if x <= previous.0 {
        return previous.1;
    }
    for &(tx, ty) in &table[1..] {
        if x <= tx {
            let f = (x - previous.0) / (tx - previous.0);
            return previous.1 + f * (ty - previous.1);
        }
        previous = (tx, ty);
    }
    previous.1
}

/// 0 at `days <= 0`, 1 at `days >= full`, linear between.
fn ramp(days: i32, full: i32) -> f64 {
    (f64::from(days) / f64::from(full.max(1))).clamp(0.0, 1.0)
}

/// Well-child visits, in months of age (AAP periodicity schedule), then yearly.
const WELL_CHILD_MONTHS: [i32; 12] = [0, 1, 2, 4, 6, 9, 12, 15, 18, 24, 30, 36];

/// Age bands (years) and their share of the patient panel.
const AGE_BANDS: [((f64, f64), u32); 7] = [
    ((0.25, 5.0), 6),
    ((5.0, 18.0), 16),
    ((18.0, 30.0), 16),
    ((30.0, 45.0), 20),
    ((45.0, 65.0), 25),
    ((65.0, 80.0), 13),
    ((80.0, 96.0), 4),
];

impl Person {
    /// Plans patient `index` for `seed`.
    pub fn plan(index: usize, seed: u64, clinic: &Clinic) -> Person {
        let mut rng = Rng::stream(seed, 0x50_4154, index as u64);
        let (lo, hi) = *rng.weighted(&AGE_BANDS);
        let age_days = (rng.uniform(lo, hi) * 365.25) as i32;
        let birth = AS_OF.plus(-age_days);
        let female = rng.chance(0.51);
        let group = names::pick_group(&mut rng);
        let given_list = if female { group.female } else { group.male };
        let given = rng.pick(given_list);
        let middle = if rng.chance(0.35) {
            let m = rng.pick(given_list);
            (m != given).then_some(m)
        } else {
            None
        };
        let family = rng.pick(group.family);
        let address = names::address(&mut rng);
        let area_code = rng.pick(address.town.area_codes);
        let phone = names::phone(&mut rng, area_code);
        let age_now = age_days as f64 / 365.25;
        let email =
            (age_now >= 16.0 && rng.chance(0.8)).then(|| names::email(&mut rng, given, family));
        let marital = (age_now >= 18.0).then(|| marital_status(&mut rng, age_now));
        let language = group.language.and_then(|(code, name)| {
            let rate = group.language_rate * if age_now >= 50.0 { 1.4 } else { 1.0 };
            rng.chance(rate).then(|| (code, name, rng.chance(0.6)))
        });
        let guardian = (age_now < 18.0).then(|| {
            let mother = rng.chance(0.7);
            let name = if mother {
                rng.pick(group.female)
            } else {
                rng.pick(group.male)
            };
            (name, mother)
        });
        let body = Body::draw(&mut rng, female, age_now);
        let adult: Vec<usize> = clinic.adult_providers().collect();
        let peds: Vec<usize> = clinic.pediatricians().collect();
        let adult_pcp = adult.get(rng.index(adult.len())).copied().unwrap_or(0);
        let child_pcp = peds
            .get(rng.index(peds.len()))
            .copied()
            .unwrap_or(adult_pcp);
        let smoking = *rng.weighted(match age_now {
            a if a < 13.0 => &[(Smoking::Never, 1)][..],
            a if a < 18.0 => &[(Smoking::Never, 97), (Smoking::Current, 3)],
            a if a < 30.0 => &[
                (Smoking::Never, 82),
                (Smoking::Former, 8),
                (Smoking::Current, 10),
            ],
            a if a < 65.0 => &[
                (Smoking::Never, 65),
                (Smoking::Former, 22),
                (Smoking::Current, 13),
            ],
            _ => &[
                (Smoking::Never, 53),
                (Smoking::Former, 38),
                (Smoking::Current, 9),
            ],
        });
        let flu_propensity = if age_now >= 65.0 {
            rng.uniform(0.5, 0.9)
        } else if age_now < 5.0 {
            rng.uniform(0.4, 0.8)
        } else {
            rng.uniform(0.15, 0.7)
        };

        let mut person = Person {
            key: format!("{index:06}"),
            female,
            birth,
            given,
            middle,
            family,
            address,
            phone,
            email,
            marital,
            language,
            guardian,
            pcp: if age_now >= 18.0 {
                adult_pcp
            } else {
                child_pcp
            },
            visits: Vec::new(),
            conditions: Vec::new(),
            allergies: Vec::new(),
            no_known_allergies: false,
            flu_propensity,
            covid: Vec::new(),
            smoking,
            body,
        };
        let window_start = person.plan_base_visits(&mut rng);
        let candidates = person.draw_conditions(&mut rng, window_start);
        person.plan_follow_ups(&mut rng, &candidates);
        person.settle_visits(&mut rng, clinic, adult_pcp, child_pcp, &adult);
        person.place_conditions(&mut rng, candidates);
        person.plan_allergies(&mut rng);
        person.choose_treatments(&mut rng);
        person.plan_covid(&mut rng);
        person
    }

    pub fn id(&self) -> String {
        format!("pat-{}", self.key)
    }

    /// Age in years on a day.
    pub fn age(&self, day: Day) -> f64 {
        day.years_since(self.birth)
    }

    // -----------------------------------------------------------------------------------------
    // Planning

    /// Preventive and sick visits; returns the first day of the record.
    fn plan_base_visits(&mut self, rng: &mut Rng) -> Day {
        let years = rng.int(1, 8) as i32;
        let window_start = AS_OF
            .plus(-365 * years - rng.int(0, 90) as i32)
            .max(self.birth.plus(3));
        let mut plan: Vec<(Day, VisitKind, Option<Acute>)> = Vec::new();
        // Well-child visits up to 17, then yearly check-ups.
        let adult_from = self.birth.add_months(18 * 12);
        for months in WELL_CHILD_MONTHS.into_iter().chain((4..18).map(|y| y * 12)) {
            let day = if months == 0 {
                self.birth.plus(rng.int(3, 5) as i32)
            } else {
                self.birth.add_months(months).plus(rng.int(0, 12) as i32)
            };
            if day > AS_OF || day >= adult_from {
                break;
            }
            let attend = if months <= 24 { 0.93 } else { 0.8 };
            if day >= window_start && rng.chance(attend) {
                plan.push((day, VisitKind::WellChild, None));
            }
        }
        let mut day = window_start.max(adult_from).plus(rng.int(0, 150) as i32);
        while day <= AS_OF {
            if rng.chance(0.82) {
                plan.push((day, VisitKind::Checkup, None));
            }
            day = day.plus(365 + rng.int(-45, 45) as i32);
        }
        // Sick visits.
        let age_now = self.age(AS_OF);
        let rate = match age_now {
            a if a < 6.0 => 1.3,
            a if a < 18.0 => 0.7,
            a if a < 65.0 => 0.45,
            _ => 0.6,
        };
        let span = AS_OF.days_since(window_start).max(1);
        let expected = rate * f64::from(span) / 365.25;
        let count = (expected + rng.gauss(0.0, expected.sqrt().max(0.5)))
            .round()
            .max(0.0) as usize;
        for _ in 0..count {
            let day = window_start.plus(rng.int(0, i64::from(span)) as i32);
            let acute = self.draw_acute(rng, day);
            plan.push((day, VisitKind::Sick, Some(acute)));
        }
        while plan.len() < 3 {
            let day = window_start.plus(rng.int(0, i64::from(span)) as i32);
            let acute = self.draw_acute(rng, day);
            plan.push((day, VisitKind::Sick, Some(acute)));
        }
        plan.sort_by_key(|&(day, kind, _)| (day, kind));
        self.visits = plan
            .into_iter()
            .map(|(day, kind, acute)| Visit {
                start: Moment::new(day, 0),
                // Time, length, clinician and site are set by `settle_visits`.
                minutes: 0,
                kind,
                acute,
                clinician: 0,
                site: 0,
            })
            .collect();
        window_start
    }

    fn draw_acute(&self, rng: &mut Rng, day: Day) -> Acute {
        let age = self.age(day);
        let options: &[(Acute, u32)] = if age < 3.0 {
            &[
                (Acute::UpperRespiratory, 50),
                (Acute::OtitisMedia, 40),
                (Acute::ViralPharyngitis, 10),
            ]
        } else if age < 8.0 {
            &[
                (Acute::UpperRespiratory, 40),
                (Acute::OtitisMedia, 25),
                (Acute::ViralPharyngitis, 20),
                (Acute::AnkleSprain, 5),
            ]
        } else if age < 18.0 {
            &[
                (Acute::UpperRespiratory, 35),
                (Acute::StrepThroat, 20),
                (Acute::ViralPharyngitis, 15),
                (Acute::AnkleSprain, 15),
                (Acute::Sinusitis, 5),
            ]
        } else if self.female {
            &[
                (Acute::UpperRespiratory, 25),
                (Acute::UrinaryInfection, 18),
                (Acute::Sinusitis, 14),
                (Acute::Bronchitis, 10),
                (Acute::LowBackPain, 12),
                (Acute::StrepThroat, 6),
                (Acute::ViralPharyngitis, 8),
                (Acute::AnkleSprain, 7),
            ]
        } else {
            &[
                (Acute::UpperRespiratory, 28),
                (Acute::Sinusitis, 14),
                (Acute::Bronchitis, 12),
                (Acute::LowBackPain, 18),
                (Acute::StrepThroat, 6),
                (Acute::ViralPharyngitis, 9),
                (Acute::AnkleSprain, 10),
                (Acute::UrinaryInfection, 3),
            ]
        };
        *rng.weighted(options)
    }

    /// Which long-term conditions the patient has and when each began.
    fn draw_conditions(&mut self, rng: &mut Rng, window_start: Day) -> Vec<(Chronic, Day)> {
        let a = self.age(AS_OF);
        let bmi = self.body.adult_bmi;
        let obese = a >= 18.0 && bmi >= 30.0;
        let f = self.female;
        let mut out: Vec<(Chronic, Day)> = Vec::new();
        for kind in Chronic::ALL {
            let has = |k: Chronic| out.iter().any(|&(o, _)| o == k);
            // (probability, earliest onset age, latest onset age)
            let (p, from, to) = match kind {
                Chronic::Hypertension => (
                    band(
                        a,
                        &[
                            (25.0, 0.08),
                            (35.0, 0.18),
                            (45.0, 0.33),
                            (55.0, 0.48),
                            (65.0, 0.6),
                            (75.0, 0.7),
                        ],
                    ) * if obese { 1.35 } else { 1.0 },
                    (a - 30.0).max(25.0),
                    a,
                ),
                Chronic::Diabetes => (
                    band(a, &[(30.0, 0.04), (45.0, 0.12), (65.0, 0.2)])
                        * if obese {
                            2.0
                        } else if bmi < 25.0 {
                            0.5
                        } else {
                            1.0
                        },
                    (a - 25.0).max(30.0),
                    a,
                ),
                Chronic::Hyperlipidemia => (
                    band(a, &[(25.0, 0.06), (40.0, 0.2), (55.0, 0.33), (65.0, 0.42)])
                        * if has(Chronic::Diabetes) { 1.6 } else { 1.0 },
                    (a - 25.0).max(25.0),
                    a,
                ),
                Chronic::Asthma => (
                    if a >= 3.0 { 0.08 } else { 0.0 },
                    2.0,
                    if rng.chance(0.7) { a.min(12.0) } else { a },
                ),
                Chronic::Hypothyroidism => (
                    band(
                        a,
                        &[
                            (20.0, if f { 0.06 } else { 0.015 }),
                            (50.0, if f { 0.12 } else { 0.03 }),
                        ],
                    ),
                    (a - 25.0).max(20.0),
                    a,
                ),
                Chronic::Gerd => (band(a, &[(25.0, 0.1)]), (a - 20.0).max(25.0), a),
                Chronic::Depression => (
                    band(a, &[(14.0, if f { 0.1 } else { 0.06 })]),
                    (a - 20.0).max(14.0),
                    a,
                ),
                Chronic::Anxiety => (
                    band(a, &[(14.0, if f { 0.08 } else { 0.05 })]),
                    (a - 20.0).max(14.0),
                    a,
                ),
                // Obesity is put on the list from measured BMI (see `place_conditions`).
                Chronic::Obesity => (0.0, 0.0, 0.0),
                Chronic::KneeOsteoarthritis => (
                    band(a, &[(50.0, 0.08), (65.0, 0.18)]) * if obese { 1.5 } else { 1.0 },
                    (a - 15.0).max(50.0),
                    a,
                ),
                Chronic::Ckd3 => (
                    band(a, &[(55.0, 0.04), (70.0, 0.12)])
                        * if has(Chronic::Diabetes) || has(Chronic::Hypertension) {
                            2.0
                        } else {
                            1.0
                        },
                    (a - 10.0).max(55.0),
                    a,
                ),
                Chronic::Copd => (
                    band(a, &[(45.0, 0.03), (65.0, 0.07)])
                        * match self.smoking {
                            Smoking::Never => 0.15,
                            Smoking::Former => 2.0,
                            Smoking::Current => 3.0,
                        },
                    (a - 15.0).max(45.0),
                    a,
                ),
                Chronic::CoronaryDisease => (
                    band(a, &[(50.0, 0.06), (65.0, 0.14)])
                        * if f { 0.5 } else { 1.0 }
                        * if self.smoking == Smoking::Never {
                            1.0
                        } else {
                            1.5
                        },
                    (a - 15.0).max(50.0),
                    a,
                ),
                Chronic::Osteoporosis => (
                    if f {
                        band(a, &[(60.0, 0.15)])
                    } else {
                        band(a, &[(70.0, 0.03)])
                    },
                    (a - 15.0).max(55.0),
                    a,
                ),
                Chronic::AllergicRhinitis => (band(a, &[(4.0, 0.12)]), 3.0, a.min(30.0)),
                Chronic::AtopicDermatitis => (
                    if a < 14.0 { 0.1 } else { 0.02 },
                    0.3,
                    if a < 14.0 { a.min(5.0) } else { a },
                ),
                Chronic::Adhd => (
                    match a {
                        a if a < 6.0 => 0.0,
                        a if a < 25.0 => {
                            if f {
                                0.04
                            } else {
                                0.09
                            }
                        }
                        _ => 0.02,
                    },
                    5.0,
                    a.min(10.0),
                ),
                Chronic::IronDeficiency => (
                    if f && (16.0..50.0).contains(&a) {
                        0.06
                    } else {
                        0.0
                    },
                    self.age(window_start),
                    a - 0.1,
                ),
                Chronic::Migraine => (
                    band(a, &[(15.0, if f { 0.09 } else { 0.03 })]),
                    12.0,
                    a.min(40.0),
                ),
            };
            if p > 0.0 && rng.chance(p.min(0.9)) && to >= from {
                let onset_age = rng.uniform(from, to);
                let onset = self.birth.plus((onset_age * 365.25) as i32).min(AS_OF);
                out.push((kind, onset));
            }
        }
        out
    }

    /// Adds follow-up visits: a few weeks after a treatment starts, and between check-ups
    /// while long-term conditions need watching.
    fn plan_follow_ups(&mut self, rng: &mut Rng, candidates: &[(Chronic, Day)]) {
        let watched: Vec<Day> = candidates
            .iter()
            .filter(|(kind, _)| needs_follow_up(*kind))
            .filter_map(|&(_, onset)| self.visits.iter().map(Visit::day).find(|&d| d >= onset))
            .collect();
        let Some(&first_dx) = watched.iter().min() else {
            return;
        };
        let first_visit = self.visits.first().map_or(AS_OF, Visit::day);
        let mut added: Vec<Day> = Vec::new();
        for &dx in &watched {
            let day = dx.plus(rng.int(35, 56) as i32);
            if day <= AS_OF && dx > first_visit && rng.chance(0.8) {
                added.push(day);
            }
        }
        let mut preventive: Vec<Day> = self
            .visits
            .iter()
            .filter(|v| v.kind.preventive())
            .map(Visit::day)
            .collect();
        preventive.push(AS_OF);
        let busy = candidates.iter().any(|(k, _)| *k == Chronic::Diabetes) || watched.len() >= 2;
        for pair in preventive.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a >= first_dx && b.days_since(a) > 200 && rng.chance(if busy { 0.8 } else { 0.55 }) {
                added.push(a.plus(b.days_since(a) / 2 + rng.int(-20, 20) as i32));
            }
        }
        for day in added {
            self.visits.push(Visit {
                start: Moment::new(day.min(AS_OF), 0),
                // Time, length, clinician and site are set by `settle_visits`.
                minutes: 0,
                kind: VisitKind::FollowUp,
                acute: None,
                clinician: 0,
                site: 0,
            });
        }
    }

    /// Caps the number of visits, moves them to distinct weekdays, and gives each a time,
    /// a clinician and a site.
    fn settle_visits(
        &mut self,
        rng: &mut Rng,
        clinic: &Clinic,
        adult_pcp: usize,
        child_pcp: usize,
        adult_providers: &[usize],
    ) {
        let cap = if self.age(AS_OF) < 18.0 { 18 } else { 16 };
        while self.visits.len() > cap {
            let victim = [
                VisitKind::Sick,
                VisitKind::FollowUp,
                VisitKind::WellChild,
                VisitKind::Checkup,
            ]
            .iter()
            .find_map(|kind| self.visits.iter().rposition(|v| v.kind == *kind));
            match victim {
                Some(i) => {
                    self.visits.remove(i);
                }
                None => break,
            }
        }
        self.visits.sort_by_key(|v| (v.day(), v.kind));
        let mut last: Option<Day> = None;
        let mut settled = Vec::with_capacity(self.visits.len());
        for mut visit in std::mem::take(&mut self.visits) {
            let mut day = visit.day().weekday_near();
            if let Some(previous) = last.filter(|&previous| day <= previous) {
                day = previous.plus(1);
            }
            while day.weekday() >= 5 {
                day = day.plus(1);
            }
            if day > AS_OF {
                continue;
            }
            last = Some(day);
            let child = self.age(day) < 18.0;
            visit.clinician = if child {
                if rng.chance(0.85) {
                    child_pcp
                } else {
                    clinic
                        .pediatricians()
                        .nth(rng.index(2))
                        .unwrap_or(child_pcp)
                }
            } else if rng.chance(0.8) || visit.kind.preventive() {
                adult_pcp
            } else {
                adult_providers
                    .get(rng.index(adult_providers.len()))
                    .copied()
                    .unwrap_or(adult_pcp)
            };
            visit.site = clinic
                .clinicians
                .get(visit.clinician)
                .map_or(0, |c| c.site)
                .min(SITES.len() - 1);
            let slot = rng.int(0, 33) as u32;
            visit.start = Moment::new(day, 8 * 60 + 15 * slot);
            visit.minutes = match visit.kind {
                VisitKind::WellChild | VisitKind::Checkup => 30 + 5 * rng.int(0, 3) as u32,
                VisitKind::FollowUp => 20 + 5 * rng.int(0, 2) as u32,
                VisitKind::Sick => 15 + 5 * rng.int(0, 2) as u32,
            };
            settled.push(visit);
        }
        self.visits = settled;
    }

    /// Ties each condition to the visit that records it; adds obesity from measured BMI.
    fn place_conditions(&mut self, rng: &mut Rng, candidates: Vec<(Chronic, Day)>) {
        let Some(first) = self.visits.first().map(Visit::day) else {
            return;
        };
        for (kind, onset) in candidates {
            // The first visit on or after onset (the first visit of all when it began before
            // the record); none when it begins after the last visit.
            let Some(visit) = self.visits.iter().position(|v| v.day() >= onset) else {
                continue;
            };
            let pre_existing = onset < first.plus(-30);
            let mut planned = Planned {
                kind,
                onset,
                pre_existing,
                visit,
                drugs: Vec::new(),
                treated_from: None,
                resolved: None,
            };
            if kind == Chronic::IronDeficiency {
                if pre_existing {
                    continue;
                }
                let end = self.visits[visit].day().plus(rng.int(150, 210) as i32);
                planned.resolved = (end <= AS_OF).then_some(end);
            }
            self.conditions.push(planned);
        }
        self.conditions.sort_by_key(|c| (c.visit, c.onset));
        // Obesity: at the first adult check-up or follow-up with a BMI of 30 or more.
        let obese_at = self.visits.iter().position(|v| {
            !matches!(v.kind, VisitKind::Sick)
                && self.age(v.day()) >= 18.0
                && self.true_bmi(v.day()) >= 30.5
        });
        if let Some(visit) = obese_at.filter(|_| rng.chance(0.9)) {
            let day = self.visits[visit].day();
            self.conditions.push(Planned {
                kind: Chronic::Obesity,
                onset: day,
                pre_existing: false,
                visit,
                drugs: Vec::new(),
                treated_from: None,
                resolved: None,
            });
            self.conditions.sort_by_key(|c| (c.visit, c.onset));
        }
    }

    fn plan_allergies(&mut self, rng: &mut Rng) {
        let a = self.age(AS_OF);
        let atopic = self.conditions.iter().any(|c| {
            matches!(
                c.kind,
                Chronic::Asthma | Chronic::AllergicRhinitis | Chronic::AtopicDermatitis
            )
        });
        let rhinitis = self.has(Chronic::AllergicRhinitis);
        let x = if atopic { 4.0 } else { 1.0 };
        let table: [(&'static Allergen, f64); 11] = [
            (&t::PENICILLIN, 0.08),
            (&t::PEANUT, 0.015 * x),
            (&t::TREE_NUT, 0.008 * x),
            (&t::SHELLFISH, if a >= 12.0 { 0.025 } else { 0.006 }),
            (&t::EGG, if a < 8.0 { 0.02 * x } else { 0.0 }),
            (&t::LATEX, if a >= 18.0 { 0.01 } else { 0.0 }),
            (&t::DUST_MITE, if rhinitis { 0.45 } else { 0.02 * x }),
            (&t::GRASS_POLLEN, if rhinitis { 0.5 } else { 0.02 * x }),
            (&t::TREE_POLLEN, if rhinitis { 0.3 } else { 0.01 * x }),
            (&t::ANIMAL_DANDER, if rhinitis { 0.25 } else { 0.015 * x }),
            (&t::MOLD, if rhinitis { 0.15 } else { 0.005 * x }),
        ];
        for (allergen, p) in table {
            if rng.chance(p) {
                self.allergies.push(self.allergy(rng, allergen));
            }
        }
        if rhinitis
            && !self
                .allergies
                .iter()
                .any(|al| al.allergen.category == t::AllergyCategory::Environment)
        {
            self.allergies.push(self.allergy(rng, &t::GRASS_POLLEN));
        }
        self.no_known_allergies = self.allergies.is_empty() && rng.chance(0.6);
    }

    fn allergy(&self, rng: &mut Rng, allergen: &'static Allergen) -> PlannedAllergy {
        let reaction = match rng.below(10) {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        }
        .min(allergen.reactions.len() as u64 - 1) as usize;
        let onset_year = (allergen.category == t::AllergyCategory::Food).then(|| {
            let age = rng.uniform(0.8, 4.0).min(self.age(AS_OF));
            self.birth.plus((age * 365.25) as i32).year()
        });
        PlannedAllergy {
            allergen,
            reaction,
            onset_year,
        }
    }

    fn choose_treatments(&mut self, rng: &mut Rng) {
        let has = |k: Chronic| self.conditions.iter().any(|c| c.kind == k);
        let (dm, ckd, cad, hld, asthma) = (
            has(Chronic::Diabetes),
            has(Chronic::Ckd3),
            has(Chronic::CoronaryDisease),
            has(Chronic::Hyperlipidemia),
            has(Chronic::Asthma),
        );
        let first_day = self.visits.first().map_or(AS_OF, Visit::day);
        let visit_days: Vec<Day> = self.visits.iter().map(Visit::day).collect();
        let mut depression_treated = false;
        let mut statin_given = false;
        let ages: Vec<f64> = self
            .conditions
            .iter()
            .map(|c| self.age(self.visits.get(c.visit).map_or(AS_OF, Visit::day)))
            .collect();
        for (c, age) in self.conditions.iter_mut().zip(ages) {
            let drugs: Vec<&'static Drug> = match c.kind {
                Chronic::Hypertension if dm || ckd => vec![&t::LISINOPRIL_10],
                Chronic::Hypertension => vec![*rng.weighted(&[
                    (&t::LISINOPRIL_10, 45),
                    (&t::AMLODIPINE_5, 30),
                    (&t::HCTZ_25, 15),
                    (&t::LOSARTAN_25, 10),
                ])],
                Chronic::Diabetes => vec![&t::METFORMIN_ER_500],
                Chronic::Hyperlipidemia if cad => {
                    statin_given = true;
                    vec![&t::ATORVASTATIN_80]
                }
                Chronic::Hyperlipidemia if rng.chance(0.85) => {
                    statin_given = true;
                    vec![&t::SIMVASTATIN_20]
                }
                Chronic::Asthma if rng.chance(0.4) => {
                    vec![&t::ALBUTEROL_INHALER, &t::FLUTICASONE_INHALER]
                }
                Chronic::Asthma => vec![&t::ALBUTEROL_INHALER],
                Chronic::Hypothyroidism => vec![&t::LEVOTHYROXINE_75],
                Chronic::Depression if rng.chance(0.75) => {
                    depression_treated = true;
                    vec![&t::FLUOXETINE_20]
                }
                Chronic::Anxiety if !depression_treated && rng.chance(0.6) => {
                    vec![&t::SERTRALINE_100]
                }
                Chronic::KneeOsteoarthritis if ckd || cad => vec![&t::ACETAMINOPHEN_500],
                Chronic::KneeOsteoarthritis if rng.chance(0.6) => vec![&t::NAPROXEN_500],
                Chronic::Copd if asthma => vec![&t::FLUTICASONE_SALMETEROL],
                Chronic::Copd => vec![&t::ALBUTEROL_INHALER, &t::FLUTICASONE_SALMETEROL],
                Chronic::CoronaryDisease if hld && statin_given => {
                    vec![&t::ASPIRIN_81, &t::NITROGLYCERIN_SPRAY]
                }
                Chronic::CoronaryDisease => {
                    statin_given = true;
                    vec![&t::ASPIRIN_81, &t::ATORVASTATIN_80, &t::NITROGLYCERIN_SPRAY]
                }
                Chronic::Osteoporosis if rng.chance(0.8) => vec![&t::ALENDRONATE_10],
                Chronic::AllergicRhinitis if age < 2.0 => vec![],
                Chronic::AllergicRhinitis if age < 6.0 => vec![&t::LORATADINE_5_CHEWABLE],
                Chronic::AllergicRhinitis if rng.chance(0.5) => vec![&t::CETIRIZINE_10],
                Chronic::AllergicRhinitis if rng.chance(0.6) => vec![&t::LORATADINE_10],
                Chronic::AtopicDermatitis if rng.chance(0.8) => vec![&t::HYDROCORTISONE_CREAM],
                Chronic::Adhd if age >= 6.0 && rng.chance(0.7) => vec![&t::METHYLPHENIDATE_20],
                Chronic::IronDeficiency => vec![&t::FERROUS_SULFATE_325],
                Chronic::Migraine if ckd || cad => vec![&t::ACETAMINOPHEN_500],
                Chronic::Migraine if rng.chance(0.7) => vec![&t::IBUPROFEN_200],
                _ => vec![],
            };
            if !drugs.is_empty() {
                // Treatment began soon after onset for conditions older than the record, else
                // at the visit that records the condition.
                c.treated_from = if c.pre_existing {
                    Some(c.onset.plus(rng.int(14, 120) as i32).min(first_day))
                } else {
                    visit_days.get(c.visit).copied()
                };
            }
            c.drugs = drugs;
        }
    }

    fn plan_covid(&mut self, rng: &mut Rng) {
        let start = Day::from_ymd(2021, 1, 4);
        let age = self.age(start);
        if age < 12.0 {
            return;
        }
        let take = if age >= 65.0 {
            0.9
        } else if age >= 18.0 {
            0.75
        } else {
            0.55
        };
        if !rng.chance(take) {
            return;
        }
        let first = if age >= 65.0 {
            Day::from_ymd(2021, 1, 11).plus(rng.int(0, 60) as i32)
        } else if age >= 16.0 {
            Day::from_ymd(2021, 3, 22).plus(rng.int(0, 80) as i32)
        } else {
            Day::from_ymd(2021, 5, 13).plus(rng.int(0, 60) as i32)
        };
        let vaccine = if age < 18.0 || rng.chance(0.6) {
            &t::COVID_PFIZER
        } else {
            &t::COVID_MODERNA
        };
        let gap = if vaccine.cvx == t::COVID_PFIZER.cvx {
            21
        } else {
            28
        };
        self.covid.push((first, vaccine));
        if rng.chance(0.93) {
            let second = first.plus(gap + rng.int(0, 6) as i32);
            self.covid.push((second, vaccine));
            if age >= 18.0 && rng.chance(0.6) {
                let booster = second
                    .plus(rng.int(180, 260) as i32)
                    .max(Day::from_ymd(2021, 9, 24));
                self.covid.push((booster, vaccine));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Conditions over time

    pub fn has(&self, kind: Chronic) -> bool {
        self.conditions.iter().any(|c| c.kind == kind)
    }

    fn planned(&self, kind: Chronic) -> Option<&Planned> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// The condition if it has begun by `day` (and not resolved).
    pub fn active(&self, kind: Chronic, day: Day) -> Option<&Planned> {
        self.planned(kind)
            .filter(|c| c.onset <= day && c.resolved.is_none_or(|r| r > day))
    }

    /// Days on treatment for `kind` by `day`, if treated by then.
    fn treated_days(&self, kind: Chronic, day: Day) -> Option<i32> {
        let c = self.active(kind, day)?;
        let from = c.treated_from?;
        (from <= day).then(|| day.days_since(from))
    }

    /// Whether a drug (by RxNorm code) has been started by `day` for any condition.
    pub fn on_drug(&self, rxnorm: &str, day: Day) -> Option<i32> {
        self.conditions
            .iter()
            .filter(|c| c.drugs.iter().any(|d| d.rxnorm == rxnorm))
            .filter_map(|c| c.treated_from.filter(|&from| from <= day))
            .map(|from| day.days_since(from))
            .max()
    }

    // -----------------------------------------------------------------------------------------
    // Body measurements ("true" values; the chart adds measurement noise)

    pub fn true_height(&self, day: Day) -> f64 {
        let age = self.age(day);
        let table: &[(f64, f64)] = if self.female { &HEIGHT_F } else { &HEIGHT_M };
        let mut h = interpolate(table, age.min(20.0)) * (1.0 + 0.04 * self.body.height_z);
        if age > 60.0 {
            h -= 0.12 * (age - 60.0);
        }
        h
    }

    pub fn true_bmi(&self, day: Day) -> f64 {
        let age = self.age(day);
        let table: &[(f64, f64)] = if self.female { &BMI_F } else { &BMI_M };
        let child = interpolate(table, age.min(20.0)) * (0.12 * self.body.size_z).exp();
        if age < 18.0 {
            return child;
        }
        let mut adult = self.body.adult_bmi - self.body.bmi_drift * AS_OF.years_since(day).max(0.0);
        if let Some(days) = self.treated_days(Chronic::Diabetes, day) {
            adult -= 0.7 * ramp(days, 120);
        }
        let w = ((age - 18.0) / 10.0).clamp(0.0, 1.0);
        ((1.0 - w) * child + w * adult).clamp(13.0, 60.0)
    }

    /// Mean systolic and diastolic pressure (mm Hg) on a day, before measurement noise;
    /// `None` under 3 years (not routinely measured).
    pub fn true_blood_pressure(&self, day: Day) -> Option<(f64, f64)> {
        let age = self.age(day);
        if age < 3.0 {
            return None;
        }
        if age < 18.0 {
            return Some((
                88.0 + 1.6 * age + 3.0 * self.body.size_z,
                52.0 + 0.9 * age + 1.5 * self.body.size_z,
            ));
        }
        let bmi = self.true_bmi(day);
        let male = if self.female { 0.0 } else { 1.0 };
        let sys = 108.0
            + 0.45 * (age.min(85.0) - 18.0)
            + 0.7 * (bmi - 25.0)
            + 5.0 * male
            + self.body.bp_offset;
        let dia = 68.0 + 0.25 * (age.min(60.0) - 18.0) - 0.2 * (age - 60.0).max(0.0)
            + 0.4 * (bmi - 25.0)
            + 2.0 * male
            + 0.5 * self.body.bp_offset;
        Some(match self.active(Chronic::Hypertension, day) {
            None => (sys.min(128.0), dia.min(82.0)),
            Some(_) => match self.treated_days(Chronic::Hypertension, day) {
                None => ((sys + 14.0).max(146.0), (dia + 8.0).max(91.0)),
                Some(days) => {
                    let r = ramp(days, 28);
                    let untreated = ((sys + 14.0).max(146.0), (dia + 8.0).max(91.0));
                    let treated = (
                        (sys + 2.0).clamp(118.0, 134.0),
                        (dia + 2.0).clamp(70.0, 84.0),
                    );
                    (
                        untreated.0 + r * (treated.0 - untreated.0),
                        untreated.1 + r * (treated.1 - untreated.1),
                    )
                }
            },
        })
    }

    pub fn resting_heart_rate(&self, day: Day) -> f64 {
        let age = self.age(day);
        let base = band(
            age,
            &[
                (0.0, 145.0),
                (0.25, 130.0),
                (1.0, 118.0),
                (2.0, 105.0),
                (4.0, 95.0),
                (7.0, 85.0),
                (12.0, 78.0),
                (16.0, 72.0),
            ],
        );
        base + self.body.hr_offset
            + if self.active(Chronic::Copd, day).is_some() {
                5.0
            } else {
                0.0
            }
    }

    pub fn respiratory_rate(&self, day: Day) -> f64 {
        let age = self.age(day);
        let base = band(
            age,
            &[
                (0.0, 42.0),
                (0.25, 34.0),
                (1.0, 28.0),
                (2.0, 24.0),
                (4.0, 22.0),
                (7.0, 19.0),
                (12.0, 17.0),
                (16.0, 15.0),
            ],
        );
        base + if self.active(Chronic::Copd, day).is_some() {
            3.0
        } else {
            0.0
        }
    }

    pub fn oxygen_saturation(&self, day: Day) -> f64 {
        if self.active(Chronic::Copd, day).is_some() {
            93.0
        } else if self.age(day) > 70.0 {
            96.5
        } else {
            97.8
        }
    }

    // -----------------------------------------------------------------------------------------
    // Laboratory values

    /// Results of a panel on a day (before rounding), with the acute illness of the visit.
    pub fn panel_values(
        &self,
        panel: Panel,
        day: Day,
        acute: Option<Acute>,
        rng: &mut Rng,
    ) -> Vec<(&'static LabTest, f64)> {
        let b = &self.body;
        let age = self.age(day);
        match panel {
            Panel::A1c => vec![(&t::HBA1C, self.a1c(day) + rng.gauss(0.0, 0.08))],
            Panel::Tsh => vec![(&t::TSH, self.tsh(day) * (0.12 * rng.normal()).exp())],
            Panel::Bmp => self.metabolic(day, rng),
            Panel::Cmp => {
                let mut values = self.metabolic(day, rng);
                let statin = self.on_drug(t::ATORVASTATIN_80.rxnorm, day).is_some()
                    || self.on_drug(t::SIMVASTATIN_20.rxnorm, day).is_some();
                let fat = (self.true_bmi(day) - 25.0).max(0.0);
                let albumin = 4.3 - if age > 70.0 { 0.2 } else { 0.0 } + rng.gauss(0.0, 0.2);
                values.extend([
                    (&t::PROTEIN, albumin + 2.8 + rng.gauss(0.0, 0.2)),
                    (&t::ALBUMIN, albumin),
                    (&t::BILIRUBIN, 0.6 * (0.3 * rng.normal()).exp()),
                    (&t::ALP, 75.0 + 0.2 * (age - 40.0) + rng.gauss(0.0, 14.0)),
                    (&t::AST, b.ast + 0.3 * fat + rng.gauss(0.0, 2.5)),
                    (
                        &t::ALT,
                        b.alt + 1.2 * fat + if statin { 5.0 } else { 0.0 } + rng.gauss(0.0, 3.0),
                    ),
                ]);
                values
            }
            Panel::Uacr => {
                let ckd = self.active(Chronic::Ckd3, day).is_some();
                let base = if ckd { b.uacr * 12.0 + 30.0 } else { b.uacr };
                vec![(&t::UACR, (base * (0.25 * rng.normal()).exp()).max(2.0))]
            }
            Panel::Lipid => {
                let untreated = if self.active(Chronic::Hyperlipidemia, day).is_some() {
                    b.hld_ldl
                } else {
                    b.ldl
                };
                let statin = [(&t::ATORVASTATIN_80, 0.5), (&t::SIMVASTATIN_20, 0.65)]
                    .iter()
                    .find_map(|(drug, factor)| {
                        self.on_drug(drug.rxnorm, day)
                            .map(|d| 1.0 - (1.0 - factor) * ramp(d, 42))
                    });
                let ldl = untreated * statin.unwrap_or(1.0) + rng.gauss(0.0, 6.0);
                let hdl = b.hdl + rng.gauss(0.0, 2.5);
                let dm_untreated = self.active(Chronic::Diabetes, day).is_some()
                    && self.treated_days(Chronic::Diabetes, day).is_none();
                let tg = b.tg
                    * if dm_untreated { 1.4 } else { 1.0 }
                    * if statin.is_some() { 0.85 } else { 1.0 }
                    * (0.12 * rng.normal()).exp();
                let total = ldl + hdl + tg / 5.0 + rng.gauss(0.0, 3.0);
                vec![
                    (&t::CHOLESTEROL, total),
                    (&t::TRIGLYCERIDES, tg),
                    (&t::HDL, hdl),
                    (&t::LDL, ldl.max(30.0)),
                ]
            }
            Panel::Cbc => {
                let deficit = self.iron_deficit(day);
                let hgb = b.hgb - b.ida_drop * deficit + rng.gauss(0.0, 0.25);
                let mcv = b.mcv - 14.0 * deficit + rng.gauss(0.0, 1.0);
                let hct = hgb * 2.95 + rng.gauss(0.0, 0.5);
                let rbc = hct * 10.0 / mcv;
                let infection = acute.is_some_and(Acute::bacterial);
                let wbc = b.wbc * if infection { 1.6 } else { 1.0 } + rng.gauss(0.0, 0.4);
                vec![
                    (&t::WBC, wbc.max(2.5)),
                    (&t::RBC, rbc),
                    (&t::HEMOGLOBIN, hgb),
                    (&t::HEMATOCRIT, hct),
                    (&t::MCV, mcv),
                    (&t::PLATELETS, b.plt + rng.gauss(0.0, 15.0)),
                ]
            }
        }
    }

    /// Basic metabolic panel values.
    fn metabolic(&self, day: Day, rng: &mut Rng) -> Vec<(&'static LabTest, f64)> {
        let b = &self.body;
        let age = self.age(day);
        let a1c = self.a1c(day);
        let dm = self.active(Chronic::Diabetes, day).is_some();
        let glucose = 88.0 + (a1c - 5.1) * 28.0 + rng.gauss(0.0, if dm { 12.0 } else { 5.0 });
        let ckd = self.active(Chronic::Ckd3, day);
        let ckd_years = ckd.map_or(0.0, |c| day.years_since(c.onset));
        let egfr_true = self.egfr(day) + rng.gauss(0.0, 2.5);
        let creatinine = round_creatinine(creatinine_for(egfr_true, age, self.female));
        let egfr = ckd_epi_2021(creatinine, age, self.female);
        let ace = self.on_drug(t::LISINOPRIL_10.rxnorm, day).is_some()
            || self.on_drug(t::LOSARTAN_25.rxnorm, day).is_some();
        let thiazide = self.on_drug(t::HCTZ_25.rxnorm, day).is_some();
        let potassium =
            b.potassium + if ckd.is_some() { 0.35 } else { 0.0 } + if ace { 0.15 } else { 0.0 }
                - if thiazide { 0.25 } else { 0.0 }
                + rng.gauss(0.0, 0.15);
        let bun = b.bun
            + 0.05 * (age - 40.0)
            + if ckd.is_some() {
                9.0 + 3.0 * ckd_years
            } else {
                0.0
            }
            + rng.gauss(0.0, 1.8);
        vec![
            (&t::GLUCOSE, glucose.max(60.0)),
            (&t::BUN, bun.max(5.0)),
            (&t::CREATININE, creatinine),
            (&t::EGFR, egfr),
            (&t::SODIUM, 140.0 + rng.gauss(0.0, 1.5)),
            (&t::POTASSIUM, potassium),
            (&t::CHLORIDE, 103.0 + rng.gauss(0.0, 1.6)),
            (
                &t::CO2,
                25.5 - if ckd.is_some() { 2.0 } else { 0.0 } + rng.gauss(0.0, 1.3),
            ),
            (&t::CALCIUM, 9.4 + rng.gauss(0.0, 0.22)),
        ]
    }

    /// Mood questionnaire scores on a day: PHQ-2 (0–6), and PHQ-9 (0–27) / GAD-7 (0–21) while
    /// depression / anxiety is active. Treatment brings scores down over about 12 weeks.
    pub fn mood_scores(&self, day: Day, rng: &mut Rng) -> (i64, Option<i64>, Option<i64>) {
        let severity = |kind: Chronic, untreated: f64, treated: f64| {
            self.active(kind, day).map(|_| {
                let r = self.treated_days(kind, day).map_or(0.0, |d| ramp(d, 84));
                untreated + r * (treated - untreated)
            })
        };
        let phq9 = severity(
            Chronic::Depression,
            14.0 + 5.0 * self.body.phq,
            5.0 + 2.0 * self.body.phq,
        )
        .map(|s| (s + rng.gauss(0.0, 1.5)).round().clamp(0.0, 27.0) as i64);
        let gad7 = severity(
            Chronic::Anxiety,
            12.0 + 5.0 * self.body.phq,
            5.0 + 2.0 * self.body.phq,
        )
        .map(|s| (s + rng.gauss(0.0, 1.5)).round().clamp(0.0, 21.0) as i64);
        let phq2 = match phq9 {
            Some(score) => (score as f64 * 6.0 / 27.0 + rng.gauss(0.0, 0.6))
                .round()
                .clamp(0.0, 6.0),
            None => match rng.below(20) {
                0..=14 => 0.0,
                15..=18 => 1.0,
                _ => 2.0,
            },
        } as i64;
        (phq2, phq9, gad7)
    }

    /// Median head circumference (cm) for infants and toddlers (under 3).
    pub fn head_circumference(&self, day: Day) -> Option<f64> {
        let age = self.age(day);
        if age >= 3.0 {
            return None;
        }
        const HC: [(f64, f64); 8] = [
            (0.0, 34.5),
            (0.25, 40.5),
            (0.5, 43.3),
            (0.75, 45.0),
            (1.0, 46.1),
            (1.5, 47.4),
            (2.0, 48.3),
            (3.0, 49.5),
        ];
        let sex = if self.female { -0.9 } else { 0.0 };
        Some(interpolate(&HC, age) + sex + 1.2 * self.body.height_z * 0.8)
    }

    fn a1c(&self, day: Day) -> f64 {
        let b = &self.body;
        match self.planned(Chronic::Diabetes) {
            Some(c) if c.onset <= day => {
                let untreated = (b.dm_a1c + 0.12 * day.years_since(c.onset)).min(11.0);
                match self.treated_days(Chronic::Diabetes, day) {
                    Some(days) => untreated + (b.dm_a1c_treated - untreated) * ramp(days, 90),
                    None => untreated,
                }
            }
            // Prediabetes in the years before onset.
            Some(c) => {
                let years_before = c.onset.years_since(day);
                b.a1c + (6.1 - b.a1c).max(0.0) * (1.0 - years_before / 4.0).clamp(0.0, 1.0)
            }
            None => b.a1c,
        }
    }

    fn tsh(&self, day: Day) -> f64 {
        let b = &self.body;
        match self.active(Chronic::Hypothyroidism, day) {
            Some(_) => match self.treated_days(Chronic::Hypothyroidism, day) {
                Some(days) => b.hypo_tsh + (b.hypo_tsh_treated - b.hypo_tsh) * ramp(days, 42),
                None => b.hypo_tsh,
            },
            None => b.tsh,
        }
    }

    /// True eGFR (mL/min/1.73 m²) on a day.
    fn egfr(&self, day: Day) -> f64 {
        let age = self.age(day);
        let normal = (120.0 - 0.8 * age + self.body.egfr_offset).clamp(68.0, 125.0);
        match self.planned(Chronic::Ckd3) {
            Some(c) => {
                let years = day.years_since(c.onset);
                if years >= 0.0 {
                    (self.body.ckd_egfr - 1.5 * years).max(32.0)
                } else {
                    (self.body.ckd_egfr + 3.0 * -years).min(normal)
                }
            }
            None => normal,
        }
    }

    /// How far iron-deficiency anaemia has lowered haemoglobin (0 none … 1 fully).
    fn iron_deficit(&self, day: Day) -> f64 {
        let Some(c) = self.planned(Chronic::IronDeficiency) else {
            return 0.0;
        };
        let developing = ramp(day.days_since(c.onset.plus(-120)), 120);
        match c.treated_from {
            Some(from) if from <= day => developing * (1.0 - ramp(day.days_since(from), 120)),
            _ => developing,
        }
    }
}

impl Body {
    fn draw(rng: &mut Rng, female: bool, age_now: f64) -> Body {
        let size_z = rng.gauss(0.25, 1.0);
        let adult_z = 0.6 * size_z + 0.8 * rng.normal();
        let adult_bmi = (27.8 * (0.17 * adult_z).exp()).clamp(17.0, 52.0);
        let bmi_drift = if age_now > 75.0 {
            rng.gauss(-0.15, 0.1)
        } else {
            rng.gauss(0.12, 0.2)
        }
        .clamp(-0.5, 0.6);
        let a1c = (5.1
            + 0.008 * (age_now - 30.0).max(0.0)
            + 0.2 * rng.normal()
            + if adult_bmi >= 30.0 { 0.2 } else { 0.0 })
        .clamp(4.4, 5.8);
        Body {
            height_z: rng.normal(),
            size_z,
            adult_bmi,
            bmi_drift,
            hr_offset: rng.gauss(0.0, 6.0),
            bp_offset: rng.gauss(0.0, 5.0),
            a1c,
            dm_a1c: rng.uniform(7.6, 9.4),
            dm_a1c_treated: rng.uniform(6.5, 7.4),
            ldl: (95.0 + 0.4 * (age_now - 20.0).max(0.0) + rng.gauss(0.0, 18.0)).clamp(55.0, 150.0),
            hld_ldl: rng.uniform(165.0, 205.0),
            hdl: (if female { 58.0 } else { 47.0 } - 0.4 * (adult_bmi - 25.0)
                + rng.gauss(0.0, 8.0))
            .clamp(28.0, 95.0),
            tg: (105.0 * (0.3 * rng.normal()).exp() + 3.0 * (adult_bmi - 25.0)).clamp(45.0, 400.0),
            hgb: if female {
                rng.gauss(13.6, 0.7)
            } else {
                rng.gauss(15.0, 0.8)
            },
            ida_drop: rng.uniform(2.6, 3.6),
            mcv: rng.gauss(89.0, 3.0),
            wbc: 6.8 * (0.2 * rng.normal()).exp(),
            plt: rng.gauss(255.0, 45.0),
            tsh: 1.6 * (0.3 * rng.normal()).exp(),
            hypo_tsh: rng.uniform(7.5, 14.0),
            hypo_tsh_treated: rng.uniform(1.0, 3.2),
            egfr_offset: rng.gauss(0.0, 9.0),
            ckd_egfr: rng.uniform(44.0, 54.0),
            bun: rng.gauss(14.0, 2.5),
            potassium: rng.gauss(4.2, 0.2),
            alt: 20.0 * (0.3 * rng.normal()).exp(),
            ast: 20.0 * (0.2 * rng.normal()).exp(),
            uacr: 8.0 * (0.5 * rng.normal()).exp(),
            phq: rng.uniform(0.0, 1.0),
        }
    }
}

/// The value for the highest band whose lower bound `age` reaches.
fn band(age: f64, bands: &[(f64, f64)]) -> f64 {
    bands
        .iter()
        .rev()
        .find(|(from, _)| age >= *from)
        .map_or(0.0, |(_, p)| *p)
}

/// Conditions that bring patients back between check-ups.
pub fn needs_follow_up(kind: Chronic) -> bool {
    matches!(
        kind,
        Chronic::Hypertension
            | Chronic::Diabetes
            | Chronic::Hyperlipidemia
            | Chronic::Hypothyroidism
            | Chronic::Ckd3
            | Chronic::Copd
            | Chronic::CoronaryDisease
            | Chronic::Depression
            | Chronic::Anxiety
            | Chronic::Adhd
            | Chronic::IronDeficiency
    )
}

fn marital_status(rng: &mut Rng, age: f64) -> (&'static str, &'static str) {
    const M: (&str, &str) = ("M", "Married");
    const S: (&str, &str) = ("S", "Never Married");
    const D: (&str, &str) = ("D", "Divorced");
    const W: (&str, &str) = ("W", "Widowed");
    let table: &[((&str, &str), u32)] = match age {
        a if a < 22.0 => &[(S, 96), (M, 4)],
        a if a < 30.0 => &[(S, 68), (M, 29), (D, 3)],
        a if a < 50.0 => &[(M, 58), (S, 27), (D, 13), (W, 2)],
        a if a < 70.0 => &[(M, 62), (D, 18), (S, 10), (W, 10)],
        _ => &[(M, 50), (W, 35), (D, 10), (S, 5)],
    };
    *rng.weighted(table)
}

/// Serum creatinine rounded as reported (2 places).
fn round_creatinine(creatinine: f64) -> f64 {
    (creatinine * 100.0).round() / 100.0
}

/// The CKD-EPI 2021 (race-free) eGFR for a serum creatinine (mg/dL).
pub fn ckd_epi_2021(creatinine: f64, age: f64, female: bool) -> f64 {
    let (kappa, alpha, sex) = if female {
        (0.7, -0.241, 1.012)
    } else {
        (0.9, -0.302, 1.0)
    };
    let ratio = creatinine / kappa;
    142.0 * ratio.min(1.0).powf(alpha) * ratio.max(1.0).powf(-1.2) * 0.9938f64.powf(age) * sex
}

/// The serum creatinine that gives an eGFR by CKD-EPI 2021 (the formula inverted).
pub fn creatinine_for(egfr: f64, age: f64, female: bool) -> f64 {
    let (kappa, alpha, sex) = if female {
        (0.7, -0.241, 1.012)
    } else {
        (0.9, -0.302, 1.0)
    };
    let a = egfr.max(5.0) / (142.0 * 0.9938f64.powf(age) * sex);
    if a >= 1.0 {
        kappa * a.powf(1.0 / alpha)
    } else {
        kappa * a.powf(-1.0 / 1.2)
    }
}
