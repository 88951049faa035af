//! What the web crate deliberately cannot do, checked on its source: it serves requests with
//! the `Records` it is given, so it never opens a database (and so never holds the operator's
//! capability, which only opening with the master key hands out) and never uses the test-only
//! operator.

use std::path::Path;

/// The source directories of the workspace's crates, from the repository root.
const CRATE_SOURCES: [&str; 6] = [
    "crates/fhir/src",
    "crates/security/src",
    "crates/store/src",
    "crates/records/src",
    "crates/web/src",
    "src",
];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn the_web_crate_never_opens_the_records_or_acts_as_the_operator() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10, "found the sources");
    for (path, text) in &files {
        for forbidden in [
            "Records::open",
            "open_local",
            "LocalOperator",
            "test_support",
            "local_operator",
        ] {
            assert!(
                !text.contains(forbidden),
                "{path} uses {forbidden}: the web crate is given an open Records and acts only as the requests' actors"
            );
        }
    }
}

/// `records` holds no URL or ETag parsing and reads no system clock for its decisions: types,
/// ids, Bundle entries and times are parsed at the edge and handed to it typed.
#[test]
fn the_records_crate_takes_names_parsed_at_the_edge() {
    let mut files = Vec::new();
    let records = Path::new(env!("CARGO_MANIFEST_DIR")).join("../records/src");
    sources(&records, &mut files);
    assert!(files.len() > 10, "found the sources");
    for (path, text) in &files {
        let allowed_clock =
            path.ends_with("clock.rs") || path.contains("/audit/") || path.ends_with("keys.rs");
        for (forbidden, why) in [
            ("form_urlencoded", "query strings are parsed at the edge"),
            ("percent_encoding", "URLs are decoded at the edge"),
            ("fn parse_etag", "ETags are read at the edge"),
            ("SystemTime::now", "the door reads its Clock"),
        ] {
            if forbidden == "SystemTime::now" && allowed_clock {
                continue;
            }
            assert!(!text.contains(forbidden), "{path} uses {forbidden}: {why}");
        }
    }
}

/// The architecture document's code map names every module of the workspace.
#[test]
fn the_code_map_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("the doc");
    let map = doc
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a code map section");
    let mut files = Vec::new();
    for dir in CRATE_SOURCES {
        sources(&root.join(dir), &mut files);
    }
    let mut missing = Vec::new();
    for (path, _) in &files {
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let dir = Path::new(path)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // Crate roots and generated tables are described by their crate's line.
        if matches!(name, "lib.rs" | "main.rs") || path.contains("/generated/") {
            continue;
        }
        let named = map.contains(&format!("`{name}`"))
            || map.contains(&format!("/{name}`"))
            || map.contains(&format!("{dir}/`"))
            || map.contains(&format!("{dir}/{name}"))
            || map.contains(&format!("`{dir}/`"));
        if !named {
            missing.push(path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "modules the code map of docs/architecture.md does not name: {missing:#?}"
    );
}

/// The modules of each crate depend on each other in one direction only: a cycle of `crate::`
/// paths (outside tests) between top-level modules fails, naming the modules.
#[test]
fn no_module_cycles_within_a_crate() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for dir in CRATE_SOURCES {
        let base = root.join(dir);
        let mut files = Vec::new();
        sources(&base, &mut files);
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, text) in &files {
            let rel = Path::new(path)
                .strip_prefix(&base)
                .expect("under the crate");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let used = deps.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(list) => list
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap_or_default())
                        .collect(),
                    None => vec![rest.split("::").next().unwrap_or_default()],
                };
                for name in names {
                    let name: String = name
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        used.insert(name);
                    }
                }
            }
        }
        // A module is on a cycle when it reaches itself.
        for start in deps.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = deps[start].iter().collect();
            while let Some(m) = stack.pop() {
                if m == start {
                    panic!(
                        "{dir}: module {start} depends on itself through {:?}",
                        seen.iter().collect::<Vec<_>>()
                    );
                }
                if seen.insert(m.clone())
                    && let Some(next) = deps.get(m)
                {
                    stack.extend(next.iter());
                }
            }
        }
    }
}
