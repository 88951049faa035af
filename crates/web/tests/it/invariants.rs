//! What the web crate deliberately cannot do, checked on its source: it serves requests with
//! the `Records` it is given, so it never opens a database (and so never holds the operator's
//! capability, which only opening with the master key hands out) and never uses the test-only
//! operator.

use std::path::Path;

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
