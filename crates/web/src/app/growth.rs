//! Growth charts for children: the child's weight, length or stature, head circumference and
//! BMI against percentile curves, each measurement with its z-score and percentile, computed
//! with the LMS method from the published tables (`crates/web/growth/`, sources in `SOURCES.md`
//! there): the WHO child growth standards from birth to 24 months (as CDC distributes them and
//! recommends them for that age), the CDC 2000 growth charts from 2 to 20 years.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ironchart_fhir::Instant;
use serde_json::Value;

use super::chart::{AllergyStatus, Banner, display_date, find, may_search, patient_and_banner};
use super::vitals;
use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

const WHO: &str = include_str!("../../growth/who-0-2.csv");
const CDC: &str = include_str!("../../growth/cdc-2-20.csv");

/// Average days per month, as the tables' ages are counted.
const DAYS_PER_MONTH: f64 = 30.4375;

/// The percentiles drawn as curves.
const CURVES: [(f64, &str); 7] = [
    (3.0, "3rd"),
    (10.0, "10th"),
    (25.0, "25th"),
    (50.0, "50th"),
    (75.0, "75th"),
    (90.0, "90th"),
    (97.0, "97th"),
];

/// One row of a table.
#[derive(Debug, Clone, Copy)]
struct Lms {
    age: f64,
    l: f64,
    m: f64,
    s: f64,
}

/// Which table, by measure and sex (1 male, 2 female).
fn table(source: &str, measure: &str, sex: u8) -> Vec<Lms> {
    source
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 6 || f[0] != measure || f[1].parse::<u8>().ok()? != sex {
                return None;
            }
            Some(Lms {
                age: f[2].parse().ok()?,
                l: f[3].parse().ok()?,
                m: f[4].parse().ok()?,
                s: f[5].parse().ok()?,
            })
        })
        .collect()
}

/// L, M and S at an age (months), interpolated linearly between the table's ages; `None`
/// outside the table.
fn lms_at(rows: &[Lms], age: f64) -> Option<Lms> {
    let first = rows.first()?;
    let last = rows.last()?;
    if age < first.age || age > last.age {
        return None;
    }
    let i = rows.partition_point(|r| r.age <= age);
    if i == 0 {
        return Some(*first);
    }
    let a = rows[i - 1];
    let Some(b) = rows.get(i) else {
        return Some(a);
    };
    let t = (age - a.age) / (b.age - a.age);
    let mix = |x: f64, y: f64| x + (y - x) * t;
    Some(Lms {
        age,
        l: mix(a.l, b.l),
        m: mix(a.m, b.m),
        s: mix(a.s, b.s),
    })
}

/// The z-score of a measurement (LMS method).
fn z_score(x: f64, p: Lms) -> f64 {
    if p.l.abs() < 1e-9 {
        (x / p.m).ln() / p.s
    } else {
        ((x / p.m).powf(p.l) - 1.0) / (p.l * p.s)
    }
}

/// The measurement at a z-score.
fn value_at(z: f64, p: Lms) -> f64 {
    if p.l.abs() < 1e-9 {
        p.m * (p.s * z).exp()
    } else {
        p.m * (1.0 + p.l * p.s * z).powf(1.0 / p.l)
    }
}

/// The standard normal distribution function, from the complementary error function.
fn phi(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // The classic Chebyshev fit of erfc (fractional error below 1.2e-7 everywhere): ample for
    // a percentile shown as a whole number.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The z-score whose percentile is `p` (by bisection on `phi`).
fn z_of_percentile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-6.0, 6.0);
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if phi(mid) * 100.0 < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// A chart: what it measures, over which ages, from which table.
struct ChartSpec {
    title: &'static str,
    loinc: &'static str,
    unit: &'static str,
    source: &'static str,
    measure: &'static str,
    from_months: f64,
    to_months: f64,
    note: &'static str,
}

const CHARTS: [ChartSpec; 6] = [
    ChartSpec {
        title: "Weight-for-age, birth to 24 months",
        loinc: vitals::WEIGHT,
        unit: "kg",
        source: WHO,
        measure: "weight",
        from_months: 0.0,
        to_months: 24.0,
        note: "WHO child growth standards",
    },
    ChartSpec {
        title: "Length-for-age, birth to 24 months",
        loinc: vitals::HEIGHT,
        unit: "cm",
        source: WHO,
        measure: "length",
        from_months: 0.0,
        to_months: 24.0,
        note: "WHO child growth standards",
    },
    ChartSpec {
        title: "Head circumference-for-age, birth to 24 months",
        loinc: "9843-4",
        unit: "cm",
        source: WHO,
        measure: "head",
        from_months: 0.0,
        to_months: 24.0,
        note: "WHO child growth standards",
    },
    ChartSpec {
        title: "Weight-for-age, 2 to 20 years",
        loinc: vitals::WEIGHT,
        unit: "kg",
        source: CDC,
        measure: "weight",
        from_months: 24.0,
        to_months: 240.0,
        note: "CDC 2000 growth charts",
    },
    ChartSpec {
        title: "Stature-for-age, 2 to 20 years",
        loinc: vitals::HEIGHT,
        unit: "cm",
        source: CDC,
        measure: "stature",
        from_months: 24.0,
        to_months: 240.0,
        note: "CDC 2000 growth charts",
    },
    ChartSpec {
        title: "BMI-for-age, 2 to 20 years",
        loinc: vitals::BMI,
        unit: "kg/m²",
        source: CDC,
        measure: "bmi",
        from_months: 24.0,
        to_months: 240.5,
        note: "CDC 2000 growth charts",
    },
];

struct Measurement {
    date: String,
    age: String,
    value: String,
    z: String,
    percentile: String,
}

struct Curve {
    label: &'static str,
    points: String,
    label_y: String,
}

struct Dot {
    x: String,
    y: String,
    label: String,
}

struct GrowthChart {
    title: &'static str,
    note: &'static str,
    unit: &'static str,
    curves: Vec<Curve>,
    dots: Vec<Dot>,
    x_first: String,
    x_last: String,
    y_top: String,
    y_bottom: String,
    rows: Vec<Measurement>,
}

#[derive(Template)]
#[template(path = "growth.html")]
struct GrowthPage {
    nav: Option<Nav>,
    banner: Banner,
    /// Why there is no chart, when there is none.
    reason: Option<String>,
    charts: Vec<GrowthChart>,
}

const LEFT: f64 = 60.0;
const RIGHT: f64 = 600.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 300.0;

/// `12m` under two years, else `3y 4m`.
fn age_text(months: f64) -> String {
    let whole = months.floor() as i64;
    if whole < 24 {
        format!("{whole}m")
    } else {
        format!("{}y {}m", whole / 12, whole % 12)
    }
}

/// One chart for a child with these measurements (age in months, value); `None` when none of
/// them falls in the chart's ages.
fn growth_chart(spec: &ChartSpec, sex: u8, measured: &[(String, f64, f64)]) -> Option<GrowthChart> {
    let rows = table(spec.source, spec.measure, sex);
    let inside: Vec<&(String, f64, f64)> = measured
        .iter()
        .filter(|(_, age, _)| *age >= spec.from_months && *age <= spec.to_months)
        .collect();
    if inside.is_empty() || rows.is_empty() {
        return None;
    }
    // Show the chart's whole age span under five years; for older children, the years around
    // their measurements.
    let (from, to) = if spec.to_months <= 24.0 {
        (spec.from_months, spec.to_months)
    } else {
        let first = inside.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
        let last = inside.iter().map(|m| m.1).fold(f64::NEG_INFINITY, f64::max);
        (
            (first - 12.0).max(spec.from_months).floor(),
            (last + 12.0).min(spec.to_months).ceil(),
        )
    };
    let step = ((to - from) / 60.0).max(0.5);
    let mut ages = Vec::new();
    let mut a = from;
    while a < to {
        ages.push(a);
        a += step;
    }
    ages.push(to);
    let z_low = z_of_percentile(CURVES[0].0);
    let z_high = z_of_percentile(CURVES[CURVES.len() - 1].0);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for age in &ages {
        if let Some(p) = lms_at(&rows, *age) {
            lo = lo.min(value_at(z_low, p));
            hi = hi.max(value_at(z_high, p));
        }
    }
    for m in &inside {
        lo = lo.min(m.2);
        hi = hi.max(m.2);
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |age: f64| LEFT + (RIGHT - LEFT) * (age - from) / (to - from);
    let y = |v: f64| BOTTOM - (BOTTOM - TOP) * (v - lo) / (hi - lo);
    let curves = CURVES
        .iter()
        .map(|(p, label)| {
            let z = z_of_percentile(*p);
            let pts: Vec<(f64, f64)> = ages
                .iter()
                .filter_map(|age| lms_at(&rows, *age).map(|l| (x(*age), y(value_at(z, l)))))
                .collect();
            Curve {
                label,
                label_y: format!("{:.1}", pts.last().map_or(0.0, |p| p.1) + 4.0),
                points: pts
                    .iter()
                    .map(|(a, b)| format!("{a:.1},{b:.1}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        })
        .collect();
    let mut dots = Vec::new();
    let mut table_rows = Vec::new();
    for (date, age, value) in inside {
        let Some(p) = lms_at(&rows, *age) else {
            continue;
        };
        let z = z_score(*value, p);
        let pct = phi(z) * 100.0;
        let percentile = if pct < 0.1 {
            "below 0.1st".to_string()
        } else if pct > 99.9 {
            "above 99.9th".to_string()
        } else {
            ordinal(pct.round() as i64)
        };
        let value_text = format!(
            "{} {}",
            vitals::number((value * 100.0).round() / 100.0),
            spec.unit
        );
        dots.push(Dot {
            x: format!("{:.1}", x(*age)),
            y: format!("{:.1}", y(*value)),
            label: format!("{date}: {value_text}, {percentile} percentile"),
        });
        table_rows.push(Measurement {
            date: date.clone(),
            age: age_text(*age),
            value: value_text,
            z: format!("{z:+.2}"),
            percentile,
        });
    }
    Some(GrowthChart {
        title: spec.title,
        note: spec.note,
        unit: spec.unit,
        curves,
        dots,
        x_first: age_text(from),
        x_last: age_text(to),
        y_top: format!("{hi:.1}"),
        y_bottom: format!("{lo:.1}"),
        rows: table_rows,
    })
}

fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `GET /patients/{id}/growth`.
pub(crate) async fn growth(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (patient, banner) = patient_and_banner(&state, actor, &id).await?;
    let pid = patient.id.clone();
    let patient = patient.value();
    let sex = match patient.get("gender").and_then(Value::as_str) {
        Some("male") => Some(1),
        Some("female") => Some(2),
        _ => None,
    };
    let born = patient
        .get("birthDate")
        .and_then(Value::as_str)
        .filter(|b| b.len() == 10)
        .and_then(ironchart_fhir::datetime::parse_date_range)
        .map(|r| r.low);
    let mut charts = Vec::new();
    let reason = match (sex, born) {
        (None, _) => {
            Some("Growth charts need the patient's sex (male or female) recorded.".to_string())
        }
        (_, None) => Some("Growth charts need the patient's full birth date.".to_string()),
        _ if !may_search(actor, "Observation") => Some("Not shown to your role.".to_string()),
        (Some(sex), Some(born)) => {
            let today = state.records.now();
            if banner.age_months.is_some_and(|m| m > 240) {
                Some("Growth charts are for children and young people up to 20 years.".to_string())
            } else {
                for spec in &CHARTS {
                    let measured = measurements(&state, &me, &pid, spec.loinc, born, today).await?;
                    charts.extend(growth_chart(spec, sex, &measured));
                }
                charts.is_empty().then(|| {
                    "No weight, length, height, head circumference or BMI recorded yet.".to_string()
                })
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        &GrowthPage {
            nav: Some(me.nav()),
            banner,
            reason,
            charts,
        },
    ))
}

/// A child's measurements of one code: (date, age in months, value in the chart's unit).
async fn measurements(
    state: &AppState,
    me: &SignedIn,
    pid: &ironchart_fhir::Id,
    loinc: &str,
    born: i64,
    today: Instant,
) -> Result<Vec<(String, f64, f64)>, PageError> {
    let found = find(
        state,
        &me.actor,
        "Observation",
        &[
            ("patient", pid.to_string()),
            ("code", format!("http://loinc.org|{loinc}")),
            ("_sort", "date".into()),
            ("_count", "500".into()),
        ],
    )
    .await?;
    Ok(found
        .iter()
        .filter_map(|r| {
            let o = r.value();
            let when = o
                .get("effectiveDateTime")
                .and_then(Value::as_str)
                .and_then(ironchart_fhir::datetime::parse_date_range)?
                .low;
            if when > today.as_millis() || when < born {
                return None;
            }
            let value = o.pointer("/valueQuantity/value").and_then(Value::as_f64)?;
            // Stored in UCUM kg, cm, kg/m2; a gram or millimetre value is converted.
            let value = match o.pointer("/valueQuantity/code").and_then(Value::as_str) {
                Some("g") => value / 1000.0,
                Some("mm") => value / 10.0,
                Some("[lb_av]") => value * 0.453_592_37,
                Some("[in_i]") => value * 2.54,
                _ => value,
            };
            let age = (when - born) as f64 / 86_400_000.0 / DAYS_PER_MONTH;
            let date = o
                .get("effectiveDateTime")
                .and_then(Value::as_str)
                .map(display_date)
                .unwrap_or_default();
            Some((date, age, value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twelve_month_old_boy_of_9_6_kg_is_near_the_50th_percentile() {
        let rows = table(WHO, "weight", 1);
        let p = lms_at(&rows, 12.0).unwrap();
        assert!((p.m - 9.6479).abs() < 1e-6, "{p:?}");
        let z = z_score(9.6, p);
        assert!((z - -0.046).abs() < 0.01, "{z}");
        let pct = phi(z) * 100.0;
        assert!((47.0..=49.0).contains(&pct), "{pct}");
        // The curve through the 50th percentile is the median.
        assert!((value_at(0.0, p) - p.m).abs() < 1e-9);
        // And back: the weight at the child's z-score is the child's weight.
        assert!((value_at(z, p) - 9.6).abs() < 1e-9);
    }

    #[test]
    fn the_tables_are_whole_and_interpolated() {
        for (source, measure, rows) in [
            (WHO, "weight", 25),
            (WHO, "length", 25),
            (WHO, "head", 25),
            (CDC, "weight", 218),
            (CDC, "stature", 218),
            (CDC, "bmi", 219),
        ] {
            for sex in [1, 2] {
                assert_eq!(table(source, measure, sex).len(), rows, "{measure} {sex}");
            }
        }
        let cdc = table(CDC, "weight", 1);
        assert!((lms_at(&cdc, 24.5).unwrap().m - 12.741_543_96).abs() < 1e-6);
        let mid = lms_at(&cdc, 24.25).unwrap();
        assert!(mid.m > 12.67 && mid.m < 12.75);
        assert!(lms_at(&cdc, 250.0).is_none());
        let bmi = table(CDC, "bmi", 2);
        assert!((lms_at(&bmi, 120.5).unwrap().m - 16.862_313_66).abs() < 1e-6);
    }

    #[test]
    fn percentiles_and_z_scores_agree() {
        assert!((phi(0.0) - 0.5).abs() < 1e-7);
        assert!((phi(1.959_964) - 0.975).abs() < 1e-6);
        assert!((phi(-1.880_794) - 0.03).abs() < 1e-6);
        assert!((z_of_percentile(97.0) - 1.880_794).abs() < 1e-4);
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(48), "48th");
        assert_eq!(ordinal(93), "93rd");
    }

    #[test]
    fn a_chart_plots_the_childs_points_among_the_curves() {
        let measured = vec![("03-Jan-2026".to_string(), 12.0, 9.6)];
        let chart = growth_chart(&CHARTS[0], 1, &measured).unwrap();
        assert_eq!(chart.curves.len(), 7);
        assert_eq!(chart.rows[0].percentile, "48th");
        assert_eq!(chart.rows[0].z, "-0.05");
        assert!(
            growth_chart(&CHARTS[3], 1, &measured).is_none(),
            "not in 2–20 years"
        );
    }
}
