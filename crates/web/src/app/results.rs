//! Results: a patient's lab reports with each result's value, unit, reference range and flag,
//! and the trend of one test over time, as a table and a server-drawn plot with the reference
//! range as a band. Read through `records` as the user, like every page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ironchart_records::Resource;
use serde::Deserialize;
use serde_json::Value;

use super::chart::{
    AllergyStatus, Banner, abnormal_flag, banner_of, concept_text, display_date, effective, find,
    may_search, observation_value, patient_of, search_page, trend_code,
};
use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

/// One result in a report or a trend.
struct ResultRow {
    name: String,
    value: String,
    range: String,
    flag: String,
    when: String,
    /// `system|code` of the test, percent-encoded for the trend's URL.
    code: Option<String>,
}

struct Report {
    id: String,
    /// `Reviewed by … on …`, once acknowledged.
    reviewed: Option<String>,
    title: String,
    when: String,
    status: String,
    rows: Vec<ResultRow>,
}

#[derive(Template)]
#[template(path = "results.html")]
struct ResultsPage {
    nav: Option<Nav>,
    banner: Banner,
    /// `None`: the role may not read results.
    reports: Option<Vec<Report>>,
    /// May acknowledge results (a clinician).
    may_review: bool,
}

/// Most reports the page lists (newest first).
const REPORTS: usize = 20;

/// The reference range as written: `3.5–5.1 mmol/L`, or its text.
fn range_text(o: &Value) -> String {
    let Some(r) = o.pointer("/referenceRange/0") else {
        return String::new();
    };
    let num = |p: &str| r.pointer(p).and_then(Value::as_f64);
    let unit = r
        .pointer("/low/unit")
        .or_else(|| r.pointer("/high/unit"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match (num("/low/value"), num("/high/value")) {
        (Some(l), Some(h)) => format!("{l}–{h} {unit}").trim().to_string(),
        (Some(l), None) => format!("≥ {l} {unit}").trim().to_string(),
        (None, Some(h)) => format!("≤ {h} {unit}").trim().to_string(),
        (None, None) => r
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

/// The flag of a result: its interpretation (H, L, HH, LL …), else H or L from its range.
fn flag(o: &Value) -> String {
    if let Some(f) = abnormal_flag(o) {
        return f;
    }
    let value = o.pointer("/valueQuantity/value").and_then(Value::as_f64);
    let low = o
        .pointer("/referenceRange/0/low/value")
        .and_then(Value::as_f64);
    let high = o
        .pointer("/referenceRange/0/high/value")
        .and_then(Value::as_f64);
    match (value, low, high) {
        (Some(v), _, Some(h)) if v > h => "H".into(),
        (Some(v), Some(l), _) if v < l => "L".into(),
        _ => String::new(),
    }
}

fn result_row(o: &Value) -> ResultRow {
    ResultRow {
        name: concept_text(o.get("code")),
        value: observation_value(o),
        range: range_text(o),
        flag: flag(o),
        when: effective(o),
        code: trend_code(o),
    }
}

/// `GET /patients/{id}/results`: the lab reports, newest first, each with its results.
pub(crate) async fn results(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (id, banner) = banner_of(&state, actor, &id).await?;
    let reports = if may_search(actor, "DiagnosticReport") && may_search(actor, "Observation") {
        let page_of = search_page(
            &state,
            actor,
            "DiagnosticReport",
            &[
                ("patient", id.to_string()),
                ("_sort", "-date".into()),
                ("_count", REPORTS.to_string()),
                ("_include", "DiagnosticReport:result".into()),
            ],
        )
        .await?;
        let reviews = state.records.reviews(&page_of.matches).await?;
        let included: Vec<(String, Value)> = page_of
            .included
            .iter()
            .map(|r: &Resource| (format!("{}/{}", r.resource_type, r.id), r.value()))
            .collect();
        Some(
            page_of
                .matches
                .iter()
                .map(|r| {
                    let report = r.value();
                    let rows = report
                        .get("result")
                        .and_then(Value::as_array)
                        .map(|refs| {
                            refs.iter()
                                .filter_map(|x| x.get("reference").and_then(Value::as_str))
                                .filter_map(|reference| {
                                    included
                                        .iter()
                                        .find(|(key, _)| key == reference)
                                        .map(|(_, o)| result_row(o))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Report {
                        id: r.id.to_string(),
                        reviewed: reviews.iter().find(|v| v.report == r.id.as_str()).map(|v| {
                            format!(
                                "Reviewed by {} on {}",
                                v.reviewed_by,
                                super::display_time(v.reviewed_at.as_millis())
                            )
                        }),
                        title: concept_text(report.get("code")),
                        when: report
                            .get("effectiveDateTime")
                            .or_else(|| report.get("issued"))
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        status: report
                            .get("status")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        rows,
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(page(
        StatusCode::OK,
        &ResultsPage {
            nav: Some(me.nav()),
            banner,
            reports,
            may_review: actor.roles().iter().any(|r| r.is_clinical()),
        },
    ))
}

#[derive(Deserialize, Default)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /patients/{id}/results/{report}/review`: acknowledges a report (who and when kept).
pub(crate) async fn review(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, report)): Path<(String, String)>,
    axum::Form(form): axum::Form<ReviewForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&form.csrf)?;
    let pid = patient_of(&state, &me.actor, &pid).await?.id;
    let not_found = || {
        PageError::Records(ironchart_records::RecordsError::NotFound(
            "DiagnosticReport".into(),
            report.clone(),
        ))
    };
    let id = ironchart_fhir::Id::parse(&report).ok_or_else(not_found)?;
    let found = state
        .records
        .read(
            &me.actor,
            ironchart_fhir::ResourceType::DIAGNOSTIC_REPORT,
            &id,
        )
        .await?;
    let subject = found.value();
    if subject
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        != Some(&format!("Patient/{pid}"))
    {
        return Err(not_found());
    }
    state.records.review_result(&me.actor, &id).await?;
    Ok(axum::response::IntoResponse::into_response(
        axum::response::Redirect::to(&format!("/patients/{pid}/results#report-{id}")),
    ))
}

/// A result waiting for its ordering clinician.
pub(crate) struct Unreviewed {
    pub(crate) patient: String,
    pub(crate) name: String,
    pub(crate) title: String,
    pub(crate) when: String,
}

/// The reports of tests this clinician ordered that nobody has acknowledged yet, newest first
/// (found through the orders: `DiagnosticReport.basedOn` → `ServiceRequest.requester`).
pub(crate) async fn unreviewed(
    state: &AppState,
    actor: &ironchart_records::Actor,
) -> Result<Vec<Unreviewed>, PageError> {
    if !actor.roles().iter().any(|r| r.is_clinical())
        || !may_search(actor, "Practitioner")
        || !may_search(actor, "DiagnosticReport")
    {
        return Ok(Vec::new());
    }
    let name = actor.username().unwrap_or("");
    let me = find(
        state,
        actor,
        "Practitioner",
        &[(
            "identifier",
            format!("{}|{name}", super::visit::USER_SYSTEM),
        )],
    )
    .await?;
    let Some(me) = me.first() else {
        return Ok(Vec::new());
    };
    let reports = find(
        state,
        actor,
        "DiagnosticReport",
        &[
            (
                "based-on:ServiceRequest.requester",
                format!("Practitioner/{}", me.id),
            ),
            ("_sort", "-date".into()),
            ("_count", "100".into()),
        ],
    )
    .await?;
    let reviews = state.records.reviews(&reports).await?;
    let waiting: Vec<&Resource> = reports
        .iter()
        .filter(|r| !reviews.iter().any(|v| v.report == r.id.as_str()))
        .collect();
    let patients: Vec<String> = waiting
        .iter()
        .filter_map(|r| {
            r.value()
                .pointer("/subject/reference")
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("Patient/"))
                .map(str::to_string)
        })
        .collect();
    let mut names = std::collections::HashMap::new();
    if !patients.is_empty() {
        let mut unique = patients.clone();
        unique.sort();
        unique.dedup();
        for p in find(
            state,
            actor,
            "Patient",
            &[("_id", unique.join(",")), ("_count", "100".into())],
        )
        .await?
        {
            names.insert(p.id.to_string(), super::chart::display_name(&p.value()));
        }
    }
    Ok(waiting
        .iter()
        .map(|r| {
            let v = r.value();
            let patient = v
                .pointer("/subject/reference")
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("Patient/"))
                .unwrap_or("")
                .to_string();
            Unreviewed {
                name: names
                    .get(&patient)
                    .cloned()
                    .unwrap_or_else(|| "Not shown".into()),
                patient,
                title: concept_text(v.get("code")),
                when: effective(&v),
            }
        })
        .collect())
}

#[derive(Deserialize, Default)]
pub(crate) struct TrendForm {
    #[serde(default)]
    code: String,
}

/// A point of the plot, in the SVG's coordinates.
struct Point {
    x: String,
    y: String,
    label: String,
}

/// A server-drawn plot (SVG) of one test's values over time.
struct Plot {
    points: Vec<Point>,
    /// The polyline through the points.
    line: String,
    /// A second series on the same axes (diastolic under systolic), if any.
    second_points: Vec<Point>,
    second_line: String,
    /// The reference range as a band: top and height.
    band: Option<(String, String)>,
    y_top: String,
    y_bottom: String,
    x_first: String,
    x_last: String,
}

#[derive(Template)]
#[template(path = "trend.html")]
struct TrendPage {
    nav: Option<Nav>,
    banner: Banner,
    test: String,
    unit: String,
    rows: Vec<ResultRow>,
    plot: Option<Plot>,
}

/// The plot's frame: 640 × 260, with room for the axis labels.
const LEFT: f64 = 60.0;
const RIGHT: f64 = 620.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 220.0;

/// A plot of one series, or of two on the same axes (systolic and diastolic pressure).
fn plot_two(
    values: &[(i64, f64, String)],
    second: &[(i64, f64, String)],
    range: (Option<f64>, Option<f64>),
) -> Option<Plot> {
    let all = || values.iter().chain(second);
    let first = all().map(|v| v.0).min()?;
    let last = all().map(|v| v.0).max()?;
    let mut lo = all().map(|v| v.1).fold(f64::INFINITY, f64::min);
    let mut hi = all().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
    if let Some(l) = range.0 {
        lo = lo.min(l);
    }
    if let Some(h) = range.1 {
        hi = hi.max(h);
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |t: i64| {
        if last == first {
            (LEFT + RIGHT) / 2.0
        } else {
            LEFT + (RIGHT - LEFT) * (t - first) as f64 / (last - first) as f64
        }
    };
    let y = |v: f64| BOTTOM - (BOTTOM - TOP) * (v - lo) / (hi - lo);
    // A series' points and the polyline through them.
    let series = |values: &[(i64, f64, String)]| {
        let points: Vec<Point> = values
            .iter()
            .map(|(t, v, label)| Point {
                x: format!("{:.1}", x(*t)),
                y: format!("{:.1}", y(*v)),
                label: label.clone(),
            })
            .collect();
        let line = points
            .iter()
            .map(|p| format!("{},{}", p.x, p.y))
            .collect::<Vec<_>>()
            .join(" ");
        (points, line)
    };
    let (points, line) = series(values);
    let (second_points, second_line) = series(second);
    let band = match range {
        (Some(l), Some(h)) => Some((format!("{:.1}", y(h)), format!("{:.1}", y(l) - y(h)))),
        (Some(l), None) => Some((format!("{TOP:.1}"), format!("{:.1}", y(l) - TOP))),
        (None, Some(h)) => Some((format!("{:.1}", y(h)), format!("{:.1}", BOTTOM - y(h)))),
        (None, None) => None,
    };
    let date = |ms: i64| display_date(&ironchart_fhir::Instant::from_millis(ms).to_string());
    Some(Plot {
        points,
        line,
        second_points,
        second_line,
        band,
        y_top: format!("{hi:.1}"),
        y_bottom: format!("{lo:.1}"),
        x_first: date(first),
        x_last: date(last),
    })
}

/// `GET /patients/{id}/trend?code=system|code`: one test over time.
pub(crate) async fn trend(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(form): Query<TrendForm>,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (id, banner) = banner_of(&state, actor, &id).await?;
    if !may_search(actor, "Observation") {
        return Err(PageError::Forbidden);
    }
    let found = find(
        &state,
        actor,
        "Observation",
        &[
            ("patient", id.to_string()),
            ("code", form.code.clone()),
            ("_sort", "date".into()),
            ("_count", "500".into()),
        ],
    )
    .await?;
    let observations: Vec<Value> = found.iter().map(Resource::value).collect();
    let units =
        super::vitals::Units::of(state.records.preference(actor, "units").await?.as_deref());
    let mut values = Vec::new();
    let mut second = Vec::new();
    for o in &observations {
        let when = o
            .get("effectiveDateTime")
            .or_else(|| o.pointer("/effectivePeriod/start"))
            .and_then(Value::as_str)
            .and_then(ironchart_fhir::datetime::parse_date_range);
        let Some(when) = when else {
            continue;
        };
        let label = format!("{}: {}", effective(o), super::vitals::shown_value(o, units));
        if let Some(v) = o.pointer("/valueQuantity/value").and_then(Value::as_f64) {
            let v = super::vitals::vital_of(o).map_or(v, |vital| vital.in_units(v, units));
            values.push((when.low, v, label));
        } else {
            // A blood pressure: systolic as the first series, diastolic as the second.
            let part = |code: &str| {
                o.get("component")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter().find(|c| {
                            c.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(code)
                        })
                    })
                    .and_then(|c| c.pointer("/valueQuantity/value"))
                    .and_then(Value::as_f64)
            };
            if let (Some(s), Some(d)) = (part("8480-6"), part("8462-4")) {
                values.push((when.low, s, label.clone()));
                second.push((when.low, d, label));
            }
        }
    }
    let newest = observations.last();
    let range = (
        newest.and_then(|o| {
            o.pointer("/referenceRange/0/low/value")
                .and_then(Value::as_f64)
        }),
        newest.and_then(|o| {
            o.pointer("/referenceRange/0/high/value")
                .and_then(Value::as_f64)
        }),
    );
    let test = newest
        .map(|o| concept_text(o.get("code")))
        .unwrap_or_else(|| form.code.clone());
    let unit = newest
        .and_then(|o| super::vitals::vital_of(o).map(|v| v.unit_label(units)))
        .or_else(|| {
            newest.and_then(|o| {
                o.pointer("/valueQuantity/unit")
                    .or_else(|| o.pointer("/component/0/valueQuantity/unit"))
                    .and_then(Value::as_str)
            })
        })
        .unwrap_or("")
        .to_string();
    Ok(page(
        StatusCode::OK,
        &TrendPage {
            nav: Some(me.nav()),
            banner,
            test,
            unit,
            rows: observations
                .iter()
                .rev()
                .map(|o| ResultRow {
                    value: super::vitals::shown_value(o, units),
                    ..result_row(o)
                })
                .collect(),
            plot: plot_two(&values, &second, range),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_and_flags() {
        let o = json!({"valueQuantity": {"value": 5.9, "unit": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]});
        assert_eq!(range_text(&o), "3.5–5.1 mmol/L");
        assert_eq!(flag(&o), "H", "above the range, without an interpretation");
        let low =
            json!({"valueQuantity": {"value": 3.0}, "referenceRange": [{"low": {"value": 3.5}}]});
        assert_eq!(flag(&low), "L");
        let critical = json!({"valueQuantity": {"value": 7.0},
            "interpretation": [{"coding": [{"code": "HH"}]}]});
        assert_eq!(flag(&critical), "HH", "the interpretation wins");
        assert_eq!(
            range_text(&json!({"referenceRange": [{"text": "negative"}]})),
            "negative"
        );
    }

    #[test]
    fn the_plot_spans_the_values_and_the_range() {
        let values = vec![(0, 4.0, "a".to_string()), (1000, 6.0, "b".to_string())];
        let p = plot_two(&values, &[], (Some(3.5), Some(5.1))).expect("a plot");
        assert_eq!(p.points.len(), 2);
        assert_eq!(p.points[0].x, "60.0");
        assert_eq!(p.points[1].x, "620.0");
        let ys: Vec<f64> = p
            .points
            .iter()
            .map(|q| q.y.parse().unwrap_or(0.0))
            .collect();
        assert!(ys[1] < ys[0], "higher values higher up");
        let (top, height) = p.band.expect("a band");
        assert!(
            top.parse::<f64>().unwrap_or(0.0) > TOP && height.parse::<f64>().unwrap_or(0.0) > 0.0
        );
        assert!(plot_two(&[], &[], (None, None)).is_none());
        let bp =
            plot_two(&values, &[(500, 3.0, "d".to_string())], (None, None)).expect("two series");
        assert_eq!(bp.second_points.len(), 1);
        assert!(!bp.second_line.is_empty());
    }
}
