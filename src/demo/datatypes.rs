//! Builders for the FHIR datatypes the demo resources repeat: Coding, CodeableConcept,
//! Reference, Quantity and decimals written with a fixed number of places.
//!
//! The [`object!`] macro builds a JSON object from owned values. Unlike `serde_json::json!`,
//! which passes every interpolated expression through `to_value` (re-serialising nested
//! `Value`s), it moves values in: the generator builds millions of objects, so this matters.

use std::str::FromStr;

use serde_json::{Number, Value};

use super::terminology::{Code, UCUM};

/// `object! { "key" => value, … }`: a JSON object whose values are anything `Into<Value>`.
macro_rules! object {
    ($($key:literal => $value:expr),* $(,)?) => {{
        let mut map = serde_json::Map::with_capacity(<[&str]>::len(&[$($key),*]));
        $( map.insert(String::from($key), serde_json::Value::from($value)); )*
        serde_json::Value::Object(map)
    }};
}
pub(crate) use object;

pub fn coding(system: &str, code: &str, display: &str) -> Value {
    object! {"system" => system, "code" => code, "display" => display}
}

/// A CodeableConcept with one coding and the display as its text.
pub fn concept(system: &str, code: &str, display: &str) -> Value {
    object! {"coding" => vec![coding(system, code, display)], "text" => display}
}

/// A CodeableConcept for a [`Code`], with `text` (the display when `None`).
pub fn code_concept(code: &Code, text: Option<&str>) -> Value {
    object! {
        "coding" => vec![coding(code.system, code.code, code.display)],
        "text" => text.unwrap_or(code.display)
    }
}

/// A literal reference `Type/id`.
pub fn reference(resource_type: &str, id: &str) -> Value {
    object! {"reference" => format!("{resource_type}/{id}")}
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
    object! {"value" => decimal(value, places), "unit" => unit, "system" => UCUM, "code" => ucum}
}

/// Standard base64 (RFC 4648, with padding), for attachment data.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}
