//! Builders for the FHIR datatypes the demo resources repeat: Coding, CodeableConcept,
//! Reference, Quantity and decimals written with a fixed number of places.

use std::str::FromStr;

use serde_json::{Number, Value, json};

use super::terminology::{Code, UCUM};

pub fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// A CodeableConcept with one coding and the display as its text.
pub fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [coding(system, code, display)], "text": display})
}

/// A CodeableConcept for a [`Code`], with `text` (the display when `None`).
pub fn code_concept(code: &Code, text: Option<&str>) -> Value {
    json!({
        "coding": [coding(code.system, code.code, code.display)],
        "text": text.unwrap_or(code.display)
    })
}

/// A literal reference `Type/id`.
pub fn reference(resource_type: &str, id: &str) -> Value {
    json!({"reference": format!("{resource_type}/{id}")})
}

/// A decimal with exactly `places` decimal places (`37.0`, `1.10`); an integer when `places`
/// is 0. With serde_json's `arbitrary_precision` the digits are kept as written.
pub fn decimal(value: f64, places: usize) -> Value {
    if places == 0 {
        return Value::from(value.round() as i64);
    }
    let rounded = round_to(value, places);
    let text = format!("{rounded:.places$}");
    Number::from_str(&text)
        .ok()
        .or_else(|| Number::from_f64(value))
        .map_or(Value::from(0), Value::Number)
}

/// Rounds as [`decimal`] writes it.
pub fn round_to(value: f64, places: usize) -> f64 {
    let factor = 10f64.powi(places as i32);
    (value * factor).round() / factor
}

/// A UCUM quantity.
pub fn quantity(value: f64, places: usize, unit: &str, ucum: &str) -> Value {
    json!({"value": decimal(value, places), "unit": unit, "system": UCUM, "code": ucum})
}
