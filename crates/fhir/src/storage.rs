//! Which search parameters need index rows of their own.
//!
//! Some official parameters only restate others of the same resource type: `Observation.patient`
//! is `Observation.subject.where(resolve() is Patient)`, and `Observation.combo-code` is the union
//! of `code` and `component-code`. Their values are already in the index under the other
//! parameters' names, so they are answered from those rows instead of being stored twice
//! (about a quarter of an Observation's index rows).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::{SearchParamDef, SearchParamKind, search_params_for};

/// Where the index rows of a parameter are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Under its own name.
    Own,
    /// Under the names of these parameters (of the same type), limited to references to
    /// `target` when given.
    Alias {
        params: Vec<&'static str>,
        target: Option<&'static str>,
    },
}

static OWN: Storage = Storage::Own;

/// The storage of `def`'s values.
pub fn storage(def: &SearchParamDef) -> &'static Storage {
    static TABLE: OnceLock<HashMap<(&'static str, &'static str), Storage>> = OnceLock::new();
    TABLE
        .get_or_init(build)
        .get(&(def.resource, def.name))
        .unwrap_or(&OWN)
}

/// Whether values of `def` are written to the index under its own name.
pub fn is_stored(def: &SearchParamDef) -> bool {
    matches!(storage(def), Storage::Own)
}

/// The top-level `|` alternatives of an expression, without enclosing parentheses or spaces.
fn parts(expression: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut current = String::new();
    for c in expression.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            '|' if !quoted && depth == 0 => {
                out.push(normalize(&current));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(normalize(&current));
    out.retain(|p| !p.is_empty());
    out
}

fn normalize(part: &str) -> String {
    let mut p: String = part.split_whitespace().collect::<Vec<_>>().join(" ");
    while p.starts_with('(') && p.ends_with(')') && balanced(&p[1..p.len() - 1]) {
        p = p[1..p.len() - 1].trim().to_string();
    }
    p
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

fn build() -> HashMap<(&'static str, &'static str), Storage> {
    let mut table = HashMap::new();
    for rt in crate::resource_types() {
        let defs: Vec<&'static SearchParamDef> = search_params_for(rt)
            .filter(|d| d.resource != "Resource")
            .filter(|d| {
                !matches!(
                    d.kind,
                    SearchParamKind::Composite | SearchParamKind::Special
                )
            })
            .filter(|d| !d.expression.is_empty())
            .collect();
        let parted: Vec<(&'static SearchParamDef, Vec<String>)> =
            defs.iter().map(|d| (*d, parts(d.expression))).collect();
        for (def, own_parts) in &parted {
            if let Some(storage) = alias_of(def, own_parts, &parted) {
                table.insert((def.resource, def.name), storage);
            }
        }
    }
    table
}

fn alias_of(
    def: &SearchParamDef,
    own: &[String],
    all: &[(&'static SearchParamDef, Vec<String>)],
) -> Option<Storage> {
    // `X.where(resolve() is T)` where X is exactly another reference parameter.
    if def.kind == SearchParamKind::Reference
        && let [single] = own
        && let Some((base, rest)) = single.split_once(".where(resolve() is ")
        && let Some(target) = rest.strip_suffix(')')
        && crate::is_resource_type(target)
    {
        let other = all.iter().find(|(d, p)| {
            d.name != def.name
                && d.kind == SearchParamKind::Reference
                && p.len() == 1
                && p[0] == base
        })?;
        let target = crate::resource_types().iter().find(|t| **t == target)?;
        return Some(Storage::Alias {
            params: vec![other.0.name],
            target: Some(target),
        });
    }
    // A union of other parameters' expressions, each a proper subset of ours.
    if own.len() < 2 {
        return None;
    }
    let mut covered: Vec<&String> = Vec::new();
    let mut params = Vec::new();
    for (d, p) in all {
        if d.name == def.name || d.kind != def.kind || p.is_empty() || p.len() >= own.len() {
            continue;
        }
        if p.iter().all(|part| own.contains(part)) {
            // Only parameters that are themselves stored.
            if alias_of(d, p, all).is_some() {
                continue;
            }
            params.push(d.name);
            covered.extend(p.iter());
        }
    }
    if own.iter().all(|part| covered.contains(&part)) && params.len() >= 2 {
        params.sort_unstable();
        params.dedup();
        return Some(Storage::Alias {
            params,
            target: None,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search_param;

    fn of(rt: &str, name: &str) -> &'static Storage {
        storage(search_param(rt, name).expect("param"))
    }

    #[test]
    fn observation_aliases() {
        assert_eq!(
            of("Observation", "patient"),
            &Storage::Alias {
                params: vec!["subject"],
                target: Some("Patient")
            }
        );
        assert_eq!(
            of("Observation", "combo-code"),
            &Storage::Alias {
                params: vec!["code", "component-code"],
                target: None
            }
        );
        assert_eq!(of("Observation", "code"), &Storage::Own);
        assert_eq!(of("Observation", "subject"), &Storage::Own);
        assert_eq!(of("Patient", "family"), &Storage::Own);
        assert_eq!(of("AllergyIntolerance", "patient"), &Storage::Own);
    }

    #[test]
    fn parts_are_normalized() {
        assert_eq!(
            parts("(Observation.value as Quantity) | (Observation.value as SampledData)"),
            vec![
                "Observation.value as Quantity",
                "Observation.value as SampledData"
            ]
        );
    }
}
