//! Vital signs: what each one is (LOINC code, UCUM unit), the values that are impossible
//! (refused) and the adult range outside which a value is flagged; conversion between the
//! stored units and the user's preferred ones (metric or US).

use serde_json::{Value, json};

/// The user's preferred units for entry and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Units {
    Metric,
    Us,
}

impl Units {
    pub(crate) fn of(pref: Option<&str>) -> Units {
        match pref {
            Some("us") => Units::Us,
            _ => Units::Metric,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Units::Metric => "metric",
            Units::Us => "us",
        }
    }
}

/// How a vital's stored unit converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The same unit either way.
    Fixed,
    /// kg, or lb.
    Mass,
    /// cm, or in.
    Length,
    /// Cel, or [degF].
    Temperature,
}

/// One vital sign.
pub(crate) struct Vital {
    /// The form field.
    pub field: &'static str,
    pub label: &'static str,
    pub loinc: &'static str,
    pub display: &'static str,
    /// The UCUM unit stored.
    pub ucum: &'static str,
    kind: Kind,
    /// Impossible outside (in the stored unit).
    min: f64,
    max: f64,
    /// Flagged outside, for adults (in the stored unit).
    low: Option<f64>,
    high: Option<f64>,
    /// Digits kept after the decimal point (stored unit).
    digits: i32,
}

pub(crate) const SYSTOLIC: &str = "8480-6";
pub(crate) const DIASTOLIC: &str = "8462-4";
pub(crate) const BP_PANEL: &str = "85354-9";
pub(crate) const HEIGHT: &str = "8302-2";
pub(crate) const WEIGHT: &str = "29463-7";
pub(crate) const BMI: &str = "39156-5";

pub(crate) const VITALS: &[Vital] = &[
    Vital {
        field: "systolic",
        label: "Systolic blood pressure",
        loinc: SYSTOLIC,
        display: "Systolic blood pressure",
        ucum: "mm[Hg]",
        kind: Kind::Fixed,
        min: 40.0,
        max: 300.0,
        low: Some(90.0),
        high: Some(139.0),
        digits: 0,
    },
    Vital {
        field: "diastolic",
        label: "Diastolic blood pressure",
        loinc: DIASTOLIC,
        display: "Diastolic blood pressure",
        ucum: "mm[Hg]",
        kind: Kind::Fixed,
        min: 10.0,
        max: 200.0,
        low: Some(60.0),
        high: Some(89.0),
        digits: 0,
    },
    Vital {
        field: "pulse",
        label: "Pulse",
        loinc: "8867-4",
        display: "Heart rate",
        ucum: "/min",
        kind: Kind::Fixed,
        min: 20.0,
        max: 300.0,
        low: Some(60.0),
        high: Some(100.0),
        digits: 0,
    },
    Vital {
        field: "respiratory",
        label: "Respiratory rate",
        loinc: "9279-1",
        display: "Respiratory rate",
        ucum: "/min",
        kind: Kind::Fixed,
        min: 4.0,
        max: 100.0,
        low: Some(12.0),
        high: Some(20.0),
        digits: 0,
    },
    Vital {
        field: "temperature",
        label: "Temperature",
        loinc: "8310-5",
        display: "Body temperature",
        ucum: "Cel",
        kind: Kind::Temperature,
        min: 25.0,
        max: 45.0,
        low: Some(36.0),
        high: Some(37.9),
        digits: 1,
    },
    Vital {
        field: "spo2",
        label: "Oxygen saturation (SpO₂)",
        loinc: "59408-5",
        display: "Oxygen saturation in Arterial blood by Pulse oximetry",
        ucum: "%",
        kind: Kind::Fixed,
        min: 40.0,
        max: 100.0,
        low: Some(94.0),
        high: None,
        digits: 0,
    },
    Vital {
        field: "height",
        label: "Height",
        loinc: HEIGHT,
        display: "Body height",
        ucum: "cm",
        kind: Kind::Length,
        min: 20.0,
        max: 272.0,
        low: None,
        high: None,
        digits: 1,
    },
    Vital {
        field: "weight",
        label: "Weight",
        loinc: WEIGHT,
        display: "Body weight",
        ucum: "kg",
        kind: Kind::Mass,
        min: 0.2,
        max: 650.0,
        low: None,
        high: None,
        digits: 2,
    },
    Vital {
        field: "head",
        label: "Head circumference",
        loinc: "9843-4",
        display: "Head Occipital-frontal circumference",
        ucum: "cm",
        kind: Kind::Length,
        min: 15.0,
        max: 75.0,
        low: None,
        high: None,
        digits: 1,
    },
];

/// BMI's adult range (kg/m2).
const BMI_LOW: f64 = 18.5;
const BMI_HIGH: f64 = 24.9;

pub(crate) fn vital(loinc: &str) -> Option<&'static Vital> {
    VITALS.iter().find(|v| v.loinc == loinc)
}

fn round(value: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (value * f).round() / f
}

impl Vital {
    /// The unit the user enters and reads.
    pub(crate) fn unit_label(&self, units: Units) -> &'static str {
        match (self.kind, units) {
            (Kind::Mass, Units::Us) => "lb",
            (Kind::Length, Units::Us) => "in",
            (Kind::Temperature, Units::Us) => "°F",
            (Kind::Temperature, Units::Metric) => "°C",
            _ => match self.ucum {
                "mm[Hg]" => "mmHg",
                "/min" => "/min",
                u => u,
            },
        }
    }

    fn to_stored(&self, value: f64, units: Units) -> f64 {
        let v = match (self.kind, units) {
            (Kind::Mass, Units::Us) => value * 0.453_592_37,
            (Kind::Length, Units::Us) => value * 2.54,
            (Kind::Temperature, Units::Us) => (value - 32.0) * 5.0 / 9.0,
            _ => value,
        };
        round(v, self.digits)
    }

    pub(crate) fn in_units(&self, value: f64, units: Units) -> f64 {
        match (self.kind, units) {
            (Kind::Mass, Units::Us) => round(value / 0.453_592_37, 1),
            (Kind::Length, Units::Us) => round(value / 2.54, 1),
            (Kind::Temperature, Units::Us) => round(value * 9.0 / 5.0 + 32.0, 1),
            _ => value,
        }
    }

    /// A stored value as the user reads it: `154.3 lb`.
    pub(crate) fn show(&self, stored: f64, units: Units) -> String {
        format!(
            "{} {}",
            number(self.in_units(stored, units)),
            self.unit_label(units)
        )
    }

    fn flag(&self, stored: f64, adult: bool) -> Option<&'static str> {
        // Children's normal ranges differ by age: only the oxygen saturation and temperature
        // limits hold for them.
        if !adult && !matches!(self.field, "spo2" | "temperature") {
            return None;
        }
        if self.low.is_some_and(|l| stored < l) {
            Some("L")
        } else if self.high.is_some_and(|h| stored > h) {
            Some("H")
        } else {
            None
        }
    }
}

/// A vital sign whose value converts to the user's units (weight, height, temperature …).
pub(crate) fn vital_of(o: &Value) -> Option<&'static Vital> {
    o.pointer("/code/coding/0/code")
        .and_then(Value::as_str)
        .and_then(vital)
        .filter(|_| o.pointer("/valueQuantity/value").is_some())
}

/// A value as the user reads it: a vital sign in their units, anything else as recorded.
pub(crate) fn shown_value(o: &Value, units: Units) -> String {
    match (
        vital_of(o),
        o.pointer("/valueQuantity/value").and_then(Value::as_f64),
    ) {
        (Some(v), Some(n)) => v.show(n, units),
        _ => super::chart::observation_value(o),
    }
}

/// A number without a needless `.0`.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One value entered, converted and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entered {
    pub field: &'static str,
    /// In the stored unit.
    pub value: f64,
    pub flag: Option<&'static str>,
}

/// Reads the entered values (field → text) in `units`: the values to store, or each field's
/// problem. An empty field is not an error; every entered one must be possible.
pub(crate) fn read_entries(
    fields: &dyn Fn(&str) -> String,
    units: Units,
    adult: bool,
) -> Result<Vec<Entered>, Vec<(&'static str, String)>> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for v in VITALS {
        let text = fields(v.field);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(n) = text.replace(',', ".").parse::<f64>() else {
            problems.push((
                v.field,
                format!("Enter {} as a number", v.label.to_lowercase()),
            ));
            continue;
        };
        if !n.is_finite() {
            problems.push((
                v.field,
                format!("Enter {} as a number", v.label.to_lowercase()),
            ));
            continue;
        }
        let stored = v.to_stored(n, units);
        if stored < v.min || stored > v.max {
            problems.push((
                v.field,
                format!(
                    "{} {} is not a possible {}: check the value and the unit (between {} and {} {})",
                    number(n),
                    v.unit_label(units),
                    v.label.to_lowercase(),
                    number(v.in_units(v.min, units)),
                    number(v.in_units(v.max, units)),
                    v.unit_label(units)
                ),
            ));
            continue;
        }
        values.push(Entered {
            field: v.field,
            value: stored,
            flag: v.flag(stored, adult),
        });
    }
    let has = |f: &str| values.iter().any(|e: &Entered| e.field == f);
    let failed = |f: &str| problems.iter().any(|(p, _)| *p == f);
    match (has("systolic"), has("diastolic")) {
        (true, false) if !failed("diastolic") => problems.push((
            "diastolic",
            "Enter the diastolic pressure with the systolic".into(),
        )),
        (false, true) if !failed("systolic") => problems.push((
            "systolic",
            "Enter the systolic pressure with the diastolic".into(),
        )),
        (true, true) => {
            let get = |f: &str| {
                values
                    .iter()
                    .find(|e| e.field == f)
                    .map_or(0.0, |e| e.value)
            };
            if get("systolic") <= get("diastolic") {
                problems.push((
                    "systolic",
                    "The systolic pressure must be higher than the diastolic".into(),
                ));
            }
        }
        _ => {}
    }
    if problems.is_empty() && values.is_empty() {
        problems.push(("systolic", "Enter at least one vital sign".into()));
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// BMI (kg/m2, one decimal) from a weight (kg) and height (cm), with its adult flag.
pub(crate) fn bmi(
    weight_kg: f64,
    height_cm: f64,
    adult: bool,
) -> Option<(f64, Option<&'static str>)> {
    if height_cm <= 0.0 {
        return None;
    }
    let m = height_cm / 100.0;
    let value = round(weight_kg / (m * m), 1);
    let flag = if !adult {
        None
    } else if value < BMI_LOW {
        Some("L")
    } else if value > BMI_HIGH {
        Some("H")
    } else {
        None
    };
    Some((value, flag))
}

fn interpretation(flag: Option<&str>) -> Option<Value> {
    flag.map(|f| {
        json!([{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": f,
            "display": if f == "H" { "High" } else { "Low" }
        }]}])
    })
}

/// A UCUM quantity, its value written with the vital's precision (`150`, not `150.0`) and its
/// unit as people write it (`mmHg`, `°C`), the UCUM code beside.
fn quantity(value: f64, ucum: &str) -> Value {
    let digits = match ucum {
        "mm[Hg]" | "/min" | "%" => 0,
        "kg" => 2,
        _ => 1,
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    let number: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!(value));
    let unit = match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        other => other,
    };
    json!({"value": number, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum})
}

/// The US Core vital-signs Observation for one value (or the blood-pressure panel).
pub(crate) fn observation(
    code: &str,
    display: &str,
    patient: &str,
    encounter: &str,
    when: &str,
    performer: &Value,
) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs"
        }]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{encounter}")},
        "effectiveDateTime": when,
        "performer": [performer]
    })
}

/// The Observations to store for what was entered (blood pressure as one panel with two
/// components), plus BMI when a weight and a height (entered now, or `last_height_cm`) give it.
pub(crate) fn observations(
    entered: &[Entered],
    last_height_cm: Option<f64>,
    adult: bool,
    patient: &str,
    encounter: &str,
    when: &str,
    performer: &Value,
) -> Vec<Value> {
    let mut out = Vec::new();
    let get = |f: &str| entered.iter().find(|e| e.field == f);
    if let (Some(s), Some(d)) = (get("systolic"), get("diastolic")) {
        let mut o = observation(
            BP_PANEL,
            "Blood pressure panel with all children optional",
            patient,
            encounter,
            when,
            performer,
        );
        o["component"] = json!([
            {"code": {"coding": [{"system": "http://loinc.org", "code": SYSTOLIC, "display": "Systolic blood pressure"}]},
             "valueQuantity": quantity(s.value, "mm[Hg]")},
            {"code": {"coding": [{"system": "http://loinc.org", "code": DIASTOLIC, "display": "Diastolic blood pressure"}]},
             "valueQuantity": quantity(d.value, "mm[Hg]")}
        ]);
        if let Some(components) = o["component"].as_array_mut() {
            for (c, e) in components.iter_mut().zip([s, d]) {
                if let Some(i) = interpretation(e.flag) {
                    c["interpretation"] = i;
                }
            }
        }
        let worst = s.flag.or(d.flag);
        if let Some(i) = interpretation(worst) {
            o["interpretation"] = i;
        }
        out.push(o);
    }
    for e in entered {
        if matches!(e.field, "systolic" | "diastolic") {
            continue;
        }
        let Some(v) = VITALS.iter().find(|v| v.field == e.field) else {
            continue;
        };
        let mut o = observation(v.loinc, v.display, patient, encounter, when, performer);
        o["valueQuantity"] = quantity(e.value, v.ucum);
        if let Some(i) = interpretation(e.flag) {
            o["interpretation"] = i;
        }
        out.push(o);
    }
    let height = get("height").map(|h| h.value).or(last_height_cm);
    if let (Some(w), Some(h)) = (get("weight"), height)
        && let Some((value, flag)) = bmi(w.value, h, adult)
    {
        let mut o = observation(
            BMI,
            "Body mass index (BMI) [Ratio]",
            patient,
            encounter,
            when,
            performer,
        );
        o["valueQuantity"] = quantity(value, "kg/m2");
        if let Some(i) = interpretation(flag) {
            o["interpretation"] = i;
        }
        out.push(o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(
        pairs: &[(&str, &str)],
        units: Units,
    ) -> Result<Vec<Entered>, Vec<(&'static str, String)>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        read_entries(&|f| map.get(f).cloned().unwrap_or_default(), units, true)
    }

    #[test]
    fn us_units_are_converted_and_stored_in_ucum() {
        let got = read(
            &[("weight", "154"), ("height", "70"), ("temperature", "98.6")],
            Units::Us,
        )
        .unwrap();
        let value = |f: &str| got.iter().find(|e| e.field == f).unwrap().value;
        assert_eq!(value("weight"), 69.85);
        assert_eq!(value("height"), 177.8);
        assert_eq!(value("temperature"), 37.0);
        let w = vital(WEIGHT).unwrap();
        assert_eq!(w.show(69.85, Units::Us), "154 lb");
        assert_eq!(w.show(69.85, Units::Metric), "69.85 kg");
    }

    #[test]
    fn impossible_values_are_refused_with_the_field_named() {
        let err = read(&[("weight", "700")], Units::Metric).unwrap_err();
        assert_eq!(err[0].0, "weight");
        assert!(err[0].1.contains("not a possible weight"), "{err:?}");
        // 700 lb is possible; 70 °F is not a body temperature.
        assert!(read(&[("weight", "700")], Units::Us).is_ok());
        let err = read(&[("temperature", "70")], Units::Us).unwrap_err();
        assert_eq!(err[0].0, "temperature");
        assert!(read(&[("pulse", "abc")], Units::Metric).is_err());
        assert!(read(&[("systolic", "80"), ("diastolic", "120")], Units::Metric).is_err());
        assert!(read(&[("systolic", "120")], Units::Metric).is_err());
        assert!(read(&[], Units::Metric).is_err());
        assert!(read(&[("pulse", "NaN")], Units::Metric).is_err());
        assert!(read(&[("pulse", "inf")], Units::Metric).is_err());
    }

    #[test]
    fn out_of_range_values_are_flagged_and_bmi_computed() {
        let got = read(
            &[
                ("systolic", "165"),
                ("diastolic", "95"),
                ("pulse", "72"),
                ("weight", "90"),
                ("height", "175"),
            ],
            Units::Metric,
        )
        .unwrap();
        let flag = |f: &str| got.iter().find(|e| e.field == f).unwrap().flag;
        assert_eq!(flag("systolic"), Some("H"));
        assert_eq!(flag("pulse"), None);
        let obs = observations(
            &got,
            None,
            true,
            "p",
            "e",
            "2026-12-06T10:00:00Z",
            &json!({"display": "nurse"}),
        );
        let codes: Vec<&str> = obs
            .iter()
            .filter_map(|o| o.pointer("/code/coding/0/code")?.as_str())
            .collect();
        assert_eq!(codes, vec![BP_PANEL, "8867-4", HEIGHT, WEIGHT, BMI]);
        let bmi = obs.last().unwrap();
        assert_eq!(bmi.pointer("/valueQuantity/value").unwrap(), &json!(29.4));
        assert_eq!(bmi.pointer("/interpretation/0/coding/0/code").unwrap(), "H");
        for o in &obs {
            ironchart_fhir::validate::validate_resource(o).unwrap();
        }
    }
}
