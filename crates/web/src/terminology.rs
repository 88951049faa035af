//! Code lists for picking by typing: diagnoses (ICD-10-CM), tests and vital signs (LOINC),
//! drugs with their ingredients and allergy classes (RxNorm), vaccines (CVX).
//!
//! A subset of each ships inside the binary (`crates/web/terminology/`, sources and licences in
//! `SOURCES.md` there). A site that has downloaded a full release loads it with
//! `ironchart terminology load --data DIR FILE…`, which writes the same tab-separated form under
//! `DIR/terminology/`; the server then searches every code of it (the shipped rows stay, so a
//! partial release loses nothing).
//!
//! Code lists are reference data, not health data: they are not encrypted or audited.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

/// A code and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub code: String,
    pub display: String,
}

/// A test or vital sign: its UCUM unit, category and usual adult range.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub code: String,
    pub display: String,
    pub unit: String,
    /// `vital-signs`, `laboratory` or `order` (an orderable panel or test).
    pub category: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// A prescribable drug with its ingredients (RxNorm `IN`) and allergy classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Drug {
    pub rxcui: String,
    pub name: String,
    /// `(rxcui, name)` of each ingredient.
    pub ingredients: Vec<(String, String)>,
    pub classes: Vec<String>,
}

/// A drug class an allergy may name: what clinicians write for it, and SNOMED CT codes that
/// mean an allergy to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrugClass {
    pub name: String,
    pub aliases: Vec<String>,
    pub snomed: Vec<String>,
}

pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const LOINC: &str = "http://loinc.org";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const SNOMED: &str = "http://snomed.info/sct";

/// The lists, each sorted by code.
#[derive(Default)]
pub struct Terminology {
    pub icd10: Vec<Code>,
    pub tests: Vec<Test>,
    pub drugs: Vec<Drug>,
    pub classes: Vec<DrugClass>,
    pub cvx: Vec<Code>,
}

impl fmt::Debug for Terminology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminology")
            .field("icd10", &self.icd10.len())
            .field("tests", &self.tests.len())
            .field("drugs", &self.drugs.len())
            .field("classes", &self.classes.len())
            .field("cvx", &self.cvx.len())
            .finish()
    }
}

const SHIPPED_ICD10: &str = include_str!("../terminology/icd10cm.tsv");
const SHIPPED_LOINC: &str = include_str!("../terminology/loinc.tsv");
const SHIPPED_RXNORM: &str = include_str!("../terminology/rxnorm.tsv");
const SHIPPED_CLASSES: &str = include_str!("../terminology/drug-classes.tsv");
const SHIPPED_CVX: &str = include_str!("../terminology/cvx.tsv");

/// The file names under `DIR/terminology/`.
pub const FILES: [&str; 5] = [
    "icd10cm.tsv",
    "loinc.tsv",
    "rxnorm.tsv",
    "drug-classes.tsv",
    "cvx.tsv",
];

/// The rows of a tab-separated list, without comments and blank lines.
fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::trim).collect())
}

fn codes(text: &str) -> Vec<Code> {
    rows(text)
        .filter_map(|r| match r.as_slice() {
            [code, display, ..] if !code.is_empty() => Some(Code {
                code: (*code).to_string(),
                display: (*display).to_string(),
            }),
            _ => None,
        })
        .collect()
}

fn tests(text: &str) -> Vec<Test> {
    rows(text)
        .filter_map(|r| {
            let code = r.first().filter(|c| !c.is_empty())?;
            let field = |i: usize| r.get(i).copied().unwrap_or("");
            Some(Test {
                code: (*code).to_string(),
                display: field(1).to_string(),
                unit: field(2).to_string(),
                category: field(3).to_string(),
                low: field(4).parse().ok(),
                high: field(5).parse().ok(),
            })
        })
        .collect()
}

fn list(field: &str) -> Vec<String> {
    field
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn drugs(text: &str) -> Vec<Drug> {
    rows(text)
        .filter_map(|r| {
            let rxcui = r.first().filter(|c| !c.is_empty())?;
            let field = |i: usize| r.get(i).copied().unwrap_or("");
            Some(Drug {
                rxcui: (*rxcui).to_string(),
                name: field(1).to_string(),
                ingredients: list(field(2))
                    .into_iter()
                    .filter_map(|i| {
                        i.split_once(':')
                            .map(|(c, n)| (c.trim().to_string(), n.trim().to_string()))
                    })
                    .collect(),
                classes: list(&field(3).to_lowercase()),
            })
        })
        .collect()
}

fn classes(text: &str) -> Vec<DrugClass> {
    rows(text)
        .filter_map(|r| {
            let name = r.first().filter(|c| !c.is_empty())?;
            let field = |i: usize| r.get(i).copied().unwrap_or("");
            Some(DrugClass {
                name: name.to_lowercase(),
                aliases: list(&field(1).to_lowercase()),
                snomed: list(field(2)),
            })
        })
        .collect()
}

/// Lower case, letters and digits only, accents folded for the common Latin letters: how
/// both a query and a display are compared.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            c => c,
        };
        if c.is_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_string()
}

/// Whether every word of the query starts some word of the text (both folded).
fn words_match(query: &[String], text: &str) -> bool {
    let words: Vec<&str> = text.split(' ').collect();
    query
        .iter()
        .all(|q| words.iter().any(|w| w.starts_with(q.as_str())))
}

/// How well `code`/`display` answer a query: `None` for not at all; lower is better.
fn rank(query: &str, words: &[String], code: &str, display: &str) -> Option<u8> {
    let folded_code = code.to_lowercase().replace('.', "");
    let q = query.replace('.', "");
    if !q.is_empty() && folded_code == q {
        return Some(0);
    }
    if !q.is_empty() && !q.contains(' ') && folded_code.starts_with(&q) {
        return Some(1);
    }
    let d = fold(display);
    if words.is_empty() || !words_match(words, &d) {
        return None;
    }
    Some(if d.starts_with(words[0].as_str()) {
        2
    } else {
        3
    })
}

fn search<'a, T>(
    items: &'a [T],
    query: &str,
    limit: usize,
    key: impl Fn(&T) -> (&str, &str),
) -> Vec<&'a T> {
    let query = fold(query);
    if query.is_empty() {
        return Vec::new();
    }
    let words: Vec<String> = query.split(' ').map(str::to_string).collect();
    let mut found: Vec<(u8, usize, &T)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let (code, display) = key(item);
            rank(&query, &words, code, display).map(|r| (r, i, item))
        })
        .collect();
    found.sort_by_key(|(r, i, _)| (*r, *i));
    found.into_iter().take(limit).map(|(_, _, t)| t).collect()
}

/// Merges `extra` over `base` by code, sorted by code.
fn merged<T: Clone>(base: Vec<T>, extra: Vec<T>, code: impl Fn(&T) -> &str) -> Vec<T> {
    let mut all: BTreeMap<String, T> = BTreeMap::new();
    for item in base.into_iter().chain(extra) {
        all.insert(code(&item).to_string(), item);
    }
    all.into_values().collect()
}

/// The shipped lists, parsed once per process.
pub fn shipped() -> std::sync::Arc<Terminology> {
    static SHIPPED: std::sync::OnceLock<std::sync::Arc<Terminology>> = std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(|| std::sync::Arc::new(Terminology::shipped()))
        .clone()
}

impl Terminology {
    /// The lists shipped with the binary.
    pub fn shipped() -> Terminology {
        let mut t = Terminology {
            icd10: codes(SHIPPED_ICD10),
            tests: tests(SHIPPED_LOINC),
            drugs: drugs(SHIPPED_RXNORM),
            classes: classes(SHIPPED_CLASSES),
            cvx: codes(SHIPPED_CVX),
        };
        t.sort();
        t
    }

    /// The shipped lists with what a site loaded into `DIR/terminology/` over them.
    pub fn for_data_dir(dir: &Path) -> std::io::Result<Terminology> {
        let mut t = Terminology::shipped();
        let folder = dir.join("terminology");
        let read = |name: &str| -> std::io::Result<Option<String>> {
            match std::fs::read_to_string(folder.join(name)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        if let Some(text) = read("icd10cm.tsv")? {
            t.icd10 = merged(std::mem::take(&mut t.icd10), codes(&text), |c| &c.code);
        }
        if let Some(text) = read("loinc.tsv")? {
            t.tests = merged(std::mem::take(&mut t.tests), tests(&text), |c| &c.code);
        }
        if let Some(text) = read("rxnorm.tsv")? {
            let mut loaded = drugs(&text);
            t.complete_classes(&mut loaded);
            t.drugs = merged(std::mem::take(&mut t.drugs), loaded, |d| &d.rxcui);
        }
        if let Some(text) = read("cvx.tsv")? {
            t.cvx = merged(std::mem::take(&mut t.cvx), codes(&text), |c| &c.code);
        }
        t.sort();
        Ok(t)
    }

    fn sort(&mut self) {
        self.icd10.sort_by(|a, b| a.code.cmp(&b.code));
        self.tests.sort_by(|a, b| a.code.cmp(&b.code));
        self.drugs.sort_by(|a, b| a.name.cmp(&b.name));
        self.cvx.sort_by(|a, b| a.code.cmp(&b.code));
    }

    /// Gives loaded drugs without classes the classes the shipped list knows for their
    /// ingredients (a full RxNorm release names ingredients, not allergy classes).
    fn complete_classes(&self, loaded: &mut [Drug]) {
        let mut by_ingredient: HashMap<String, Vec<String>> = HashMap::new();
        for d in &self.drugs {
            if d.ingredients.len() == 1 {
                for (_, name) in &d.ingredients {
                    by_ingredient
                        .entry(name.to_lowercase())
                        .or_insert_with(|| d.classes.clone());
                }
            }
        }
        for d in loaded.iter_mut().filter(|d| d.classes.is_empty()) {
            let mut classes: Vec<String> = d
                .ingredients
                .iter()
                .filter_map(|(_, n)| by_ingredient.get(&n.to_lowercase()))
                .flatten()
                .cloned()
                .collect();
            classes.sort();
            classes.dedup();
            d.classes = classes;
        }
    }

    pub fn diagnoses(&self, query: &str, limit: usize) -> Vec<&Code> {
        search(&self.icd10, query, limit, |c| {
            (c.code.as_str(), c.display.as_str())
        })
    }

    pub fn diagnosis(&self, code: &str) -> Option<&Code> {
        self.icd10
            .iter()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    pub fn orderable(&self, query: &str, limit: usize) -> Vec<&Test> {
        let orders: Vec<&Test> = self
            .tests
            .iter()
            .filter(|t| t.category == "order")
            .collect();
        search(&orders, query, limit, |t| {
            (t.code.as_str(), t.display.as_str())
        })
        .into_iter()
        .copied()
        .collect()
    }

    pub fn orders(&self) -> impl Iterator<Item = &Test> {
        self.tests.iter().filter(|t| t.category == "order")
    }

    pub fn test(&self, code: &str) -> Option<&Test> {
        self.tests.iter().find(|t| t.code == code)
    }

    pub fn find_drugs(&self, query: &str, limit: usize) -> Vec<&Drug> {
        search(&self.drugs, query, limit, |d| {
            (d.rxcui.as_str(), d.name.as_str())
        })
    }

    pub fn drug(&self, rxcui: &str) -> Option<&Drug> {
        self.drugs.iter().find(|d| d.rxcui == rxcui)
    }

    pub fn vaccines(&self, query: &str, limit: usize) -> Vec<&Code> {
        search(&self.cvx, query, limit, |c| {
            (c.code.as_str(), c.display.as_str())
        })
    }

    pub fn vaccine(&self, code: &str) -> Option<&Code> {
        self.cvx.iter().find(|c| c.code == code)
    }

    /// What an allergen (its codes and words) means in drug terms: the ingredients (names,
    /// folded) and classes it names, directly or as the classes of a named ingredient.
    fn allergen_terms(&self, codes: &[(String, String)], text: &str) -> (Vec<String>, Vec<String>) {
        // Words only: "Penicillin." and "penicillin" are the same allergen.
        let folded = fold(text).replace('.', " ");
        let words: Vec<&str> = folded.split_whitespace().collect();
        let has_phrase = |phrase: &str| {
            let p = fold(phrase).replace('.', " ");
            let pw: Vec<&str> = p.split_whitespace().collect();
            !pw.is_empty() && words.windows(pw.len()).any(|w| w == pw.as_slice())
        };
        let mut ingredients: Vec<String> = Vec::new();
        let mut classes: Vec<String> = Vec::new();
        for drug in &self.drugs {
            for (rxcui, name) in &drug.ingredients {
                let coded = codes
                    .iter()
                    .any(|(s, c)| s == RXNORM && (c == rxcui || *c == drug.rxcui));
                if coded || has_phrase(name) {
                    ingredients.push(fold(name));
                    if drug.ingredients.len() == 1 {
                        classes.extend(drug.classes.iter().cloned());
                    }
                }
            }
        }
        for class in &self.classes {
            let coded = codes
                .iter()
                .any(|(s, c)| s == SNOMED && class.snomed.contains(c));
            if coded || has_phrase(&class.name) || class.aliases.iter().any(|a| has_phrase(a)) {
                classes.push(class.name.clone());
            }
        }
        ingredients.sort();
        ingredients.dedup();
        classes.sort();
        classes.dedup();
        (ingredients, classes)
    }

    /// Why `drug` may harm a patient with this allergy (its codes as `(system, code)` and its
    /// text), if it may: it contains the allergen, or shares a class with it.
    pub fn allergy_match(
        &self,
        drug: &Drug,
        allergy_codes: &[(String, String)],
        allergy_text: &str,
    ) -> Option<String> {
        let (ingredients, classes) = self.allergen_terms(allergy_codes, allergy_text);
        for (_, name) in &drug.ingredients {
            if ingredients.contains(&fold(name)) {
                return Some(format!("{} contains {name}", drug.name));
            }
        }
        let shared: Vec<&String> = drug
            .classes
            .iter()
            .filter(|c| classes.contains(c))
            .collect();
        shared
            .first()
            .map(|class| format!("{} is one of the {class}", drug.name))
    }
}

/// What one release file held, in our form.
#[derive(Debug)]
pub enum Release {
    Diagnoses(Vec<Code>),
    Tests(Vec<Test>),
    Drugs(Vec<Drug>),
    Vaccines(Vec<Code>),
}

impl Release {
    pub fn describe(&self) -> String {
        match self {
            Release::Diagnoses(c) => format!("{} ICD-10-CM codes", c.len()),
            Release::Tests(t) => format!("{} LOINC codes", t.len()),
            Release::Drugs(d) => format!("{} RxNorm drugs", d.len()),
            Release::Vaccines(c) => format!("{} CVX codes", c.len()),
        }
    }
}

/// `E119` as `E11.9`.
fn icd_dotted(code: &str) -> String {
    if code.len() > 3 && !code.contains('.') {
        format!("{}.{}", &code[..3], &code[3..])
    } else {
        code.to_string()
    }
}

fn is_icd(code: &str) -> bool {
    let b = code.as_bytes();
    (3..=8).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.')
}

/// Splits one CSV line (quoted fields with doubled quotes), as LOINC's `Loinc.csv` is written.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Reads a release a site downloaded: the ICD-10-CM order or codes file (CDC), RxNorm's
/// `RXNCONSO.RRF` (NLM), LOINC's `Loinc.csv` (Regenstrief), CDC's CVX table (`cvx.txt`,
/// pipe-separated), or one of our own tab-separated lists (by its file name).
pub fn read_release(name: &str, input: &mut dyn std::io::BufRead) -> Result<Release, String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => lines.push(line.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .to_lowercase();
    let text = || lines.join("\n");
    match base.as_str() {
        "icd10cm.tsv" => return Ok(Release::Diagnoses(codes(&text()))),
        "loinc.tsv" => return Ok(Release::Tests(tests(&text()))),
        "rxnorm.tsv" => return Ok(Release::Drugs(drugs(&text()))),
        "cvx.tsv" => return Ok(Release::Vaccines(codes(&text()))),
        _ => {}
    }
    let first = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .cloned()
        .unwrap_or_default();
    if first.contains("LOINC_NUM") {
        let header = csv_fields(&first);
        let col = |n: &str| header.iter().position(|h| h == n);
        let (Some(num), Some(long)) = (col("LOINC_NUM"), col("LONG_COMMON_NAME")) else {
            return Err(format!(
                "{name}: a LOINC table needs LOINC_NUM and LONG_COMMON_NAME"
            ));
        };
        let (unit, order, status) = (col("EXAMPLE_UCUM_UNITS"), col("ORDER_OBS"), col("STATUS"));
        let mut out = Vec::new();
        for l in lines.iter().skip(1) {
            let f = csv_fields(l);
            let get = |i: Option<usize>| i.and_then(|i| f.get(i)).map(String::as_str).unwrap_or("");
            if get(status) == "DEPRECATED" || get(Some(num)).is_empty() {
                continue;
            }
            out.push(Test {
                code: get(Some(num)).to_string(),
                display: get(Some(long)).to_string(),
                unit: get(unit).to_string(),
                category: if matches!(get(order), "Order" | "Both") {
                    "order"
                } else {
                    "laboratory"
                }
                .to_string(),
                low: None,
                high: None,
            });
        }
        return Ok(Release::Tests(out));
    }
    let pipes = first.matches('|').count();
    if pipes >= 14 {
        // RXNCONSO.RRF: RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|…
        let mut ingredients: Vec<(String, String)> = Vec::new();
        let mut products: Vec<(String, String)> = Vec::new();
        for l in &lines {
            let f: Vec<&str> = l.split('|').collect();
            if f.len() < 15 || f[11] != "RXNORM" || f[1] != "ENG" {
                continue;
            }
            match f[12] {
                "IN" => ingredients.push((f[0].to_string(), f[14].to_string())),
                "SCD" | "SBD" => products.push((f[0].to_string(), f[14].to_string())),
                _ => {}
            }
        }
        // A product's ingredients are the ingredient names its name holds (longest first,
        // so "amoxicillin" is not also read inside "amoxicillin / clavulanate" twice).
        ingredients.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
        let folded: Vec<(String, String, String)> = ingredients
            .iter()
            .map(|(c, n)| (c.clone(), n.clone(), fold(n)))
            .collect();
        let mut out = Vec::new();
        for (rxcui, name) in products {
            let mut rest = format!(" {} ", fold(&name));
            let mut found = Vec::new();
            for (code, ingredient, f) in &folded {
                let needle = format!(" {f} ");
                if rest.contains(&needle) {
                    found.push((code.clone(), ingredient.clone()));
                    rest = rest.replace(&needle, " ");
                }
            }
            out.push(Drug {
                rxcui,
                name,
                ingredients: found,
                classes: Vec::new(),
            });
        }
        out.sort_by(|a, b| a.rxcui.cmp(&b.rxcui));
        out.dedup_by(|a, b| a.rxcui == b.rxcui);
        return Ok(Release::Drugs(out));
    }
    if pipes >= 2 {
        // CDC's CVX table: code|short description|full name|notes|status|…
        let out: Vec<Code> = lines
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').map(str::trim).collect();
                (f.len() >= 2 && !f[0].is_empty() && f[0].chars().all(|c| c.is_ascii_digit())).then(
                    || Code {
                        code: f[0].to_string(),
                        display: f[1].to_string(),
                    },
                )
            })
            .collect();
        if out.is_empty() {
            return Err(format!("{name}: no CVX codes found"));
        }
        return Ok(Release::Vaccines(out));
    }
    // ICD-10-CM: the order file (`00001 A00     0 Cholera … Cholera`) or the codes file
    // (`A000    Cholera due to …`).
    let mut out = Vec::new();
    for l in &lines {
        let order_file = l.len() > 16
            && l.as_bytes()[..5].iter().all(u8::is_ascii_digit)
            && l.as_bytes()[5] == b' ';
        if order_file {
            let code = l.get(6..13).unwrap_or("").trim();
            let billable = l.get(14..15) == Some("1");
            let long = l.get(77..).unwrap_or("").trim();
            let short = l.get(16..76).unwrap_or("").trim();
            if billable && is_icd(code) {
                out.push(Code {
                    code: icd_dotted(code),
                    display: if long.is_empty() { short } else { long }.to_string(),
                });
            }
        } else if let Some((code, display)) = l.split_once(char::is_whitespace)
            && is_icd(code)
        {
            out.push(Code {
                code: icd_dotted(code),
                display: display.trim().to_string(),
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{name}: not a release this command knows (ICD-10-CM order or codes file, \
             RXNCONSO.RRF, Loinc.csv, CDC cvx.txt, or one of ironchart's .tsv lists)"
        ));
    }
    Ok(Release::Diagnoses(out))
}

/// Merges a release into `DIR/terminology/` (what was loaded before stays, by code).
pub fn save_release(dir: &Path, release: Release) -> std::io::Result<()> {
    let folder = dir.join("terminology");
    std::fs::create_dir_all(&folder)?;
    let existing = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap_or_default();
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let (name, header, rows): (&str, &str, Vec<String>) = match release {
        Release::Diagnoses(new) => (
            "icd10cm.tsv",
            "# code\tdisplay",
            merged(codes(&existing("icd10cm.tsv")), new, |c| &c.code)
                .iter()
                .map(|c| format!("{}\t{}", clean(&c.code), clean(&c.display)))
                .collect(),
        ),
        Release::Tests(new) => (
            "loinc.tsv",
            "# code\tdisplay\tunit\tcategory\tlow\thigh",
            merged(tests(&existing("loinc.tsv")), new, |t| &t.code)
                .iter()
                .map(|t| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        clean(&t.code),
                        clean(&t.display),
                        clean(&t.unit),
                        clean(&t.category),
                        opt(t.low),
                        opt(t.high)
                    )
                })
                .collect(),
        ),
        Release::Drugs(new) => (
            "rxnorm.tsv",
            "# rxcui\tname\tingredients\tclasses",
            merged(drugs(&existing("rxnorm.tsv")), new, |d| &d.rxcui)
                .iter()
                .map(|d| {
                    let ingredients: Vec<String> = d
                        .ingredients
                        .iter()
                        .map(|(c, n)| format!("{}:{}", clean(c), clean(n)))
                        .collect();
                    format!(
                        "{}\t{}\t{}\t{}",
                        clean(&d.rxcui),
                        clean(&d.name),
                        ingredients.join(";"),
                        d.classes.join(";")
                    )
                })
                .collect(),
        ),
        Release::Vaccines(new) => (
            "cvx.tsv",
            "# code\tdisplay",
            merged(codes(&existing("cvx.tsv")), new, |c| &c.code)
                .iter()
                .map(|c| format!("{}\t{}", clean(&c.code), clean(&c.display)))
                .collect(),
        ),
    };
    let mut text = String::with_capacity(rows.len() * 64);
    text.push_str(header);
    text.push('\n');
    for r in rows {
        text.push_str(&r);
        text.push('\n');
    }
    let tmp = folder.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, folder.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Terminology {
        Terminology::shipped()
    }

    #[test]
    fn the_shipped_lists_are_well_formed() {
        let t = t();
        assert!(t.icd10.len() >= 100, "{t:?}");
        assert!(t.tests.len() >= 30, "{t:?}");
        assert!(t.drugs.len() >= 50, "{t:?}");
        assert!(t.cvx.len() >= 20, "{t:?}");
        for d in &t.drugs {
            assert!(!d.ingredients.is_empty(), "{} has no ingredient", d.name);
            for c in &d.classes {
                assert!(
                    t.classes.iter().any(|k| &k.name == c),
                    "{}: class {c} is not in drug-classes.tsv",
                    d.name
                );
            }
        }
    }

    #[test]
    fn diagnoses_are_found_as_people_type() {
        let t = t();
        let found: Vec<&str> = t
            .diagnoses("diab", 20)
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert!(found.contains(&"E11.9"), "{found:?}");
        assert_eq!(
            t.diagnoses("e119", 5).first().map(|c| c.code.as_str()),
            Some("E11.9")
        );
        assert_eq!(
            t.diagnoses("E11.9", 5).first().map(|c| c.code.as_str()),
            Some("E11.9")
        );
        assert!(t.diagnoses("hypert", 5).iter().any(|c| c.code == "I10"));
        assert!(t.diagnoses("", 5).is_empty());
        assert!(t.diagnoses("zzzzqqq", 5).is_empty());
    }

    #[test]
    fn releases_are_read_in_their_published_forms() {
        let order = "00001 A00     0 Cholera                                                      Cholera\n\
                     00002 A000    1 Cholera due to Vibrio cholerae 01, biovar cholerae           Cholera due to Vibrio cholerae 01, biovar cholerae\n";
        match read_release("icd10cm_order_2025.txt", &mut order.as_bytes()) {
            Ok(Release::Diagnoses(c)) => {
                assert_eq!(c.len(), 1, "billable codes only");
                assert_eq!(c[0].code, "A00.0");
                assert!(c[0].display.starts_with("Cholera due to"));
            }
            other => panic!("{other:?}"),
        }
        let codes = "A000    Cholera due to Vibrio cholerae 01, biovar cholerae\nZ9989   Dependence on other enabling machines and devices\n";
        match read_release("icd10cm_codes_2025.txt", &mut codes.as_bytes()) {
            Ok(Release::Diagnoses(c)) => assert_eq!(c[1].code, "Z99.89"),
            other => panic!("{other:?}"),
        }
        let conso = "723|ENG||||||||||RXNORM|IN|723|amoxicillin|||N||\n\
                     48203|ENG||||||||||RXNORM|IN|48203|clavulanate|||N||\n\
                     308191|ENG||||||||||RXNORM|SCD|308191|amoxicillin 500 MG Oral Capsule|||N||\n\
                     617296|ENG||||||||||RXNORM|SCD|617296|amoxicillin 500 MG / clavulanate 125 MG Oral Tablet|||N||\n\
                     1|ENG||||||||||MTHSPL|SCD|1|ignored|||N||\n";
        match read_release("RXNCONSO.RRF", &mut conso.as_bytes()) {
            Ok(Release::Drugs(d)) => {
                assert_eq!(d.len(), 2);
                assert_eq!(
                    d[0].ingredients,
                    vec![("723".to_string(), "amoxicillin".to_string())]
                );
                assert_eq!(d[1].ingredients.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let loinc = "\"LOINC_NUM\",\"COMPONENT\",\"STATUS\",\"ORDER_OBS\",\"LONG_COMMON_NAME\"\n\
                     \"2345-7\",\"Glucose\",\"ACTIVE\",\"Both\",\"Glucose [Mass/volume] in Serum or Plasma\"\n\
                     \"1-8\",\"Old\",\"DEPRECATED\",\"Both\",\"Old, \"\"quoted\"\"\"\n";
        match read_release("Loinc.csv", &mut loinc.as_bytes()) {
            Ok(Release::Tests(t)) => {
                assert_eq!(t.len(), 1);
                assert_eq!(t[0].category, "order");
            }
            other => panic!("{other:?}"),
        }
        let cvx = "03|MMR|measles, mumps and rubella virus vaccine||Active|False|2010/05/28\n";
        assert!(
            matches!(read_release("cvx.txt", &mut cvx.as_bytes()), Ok(Release::Vaccines(c)) if c[0].code == "03")
        );
        assert!(read_release("notes.txt", &mut "hello world\n".as_bytes()).is_err());
    }

    #[test]
    fn a_loaded_release_is_searched_with_the_shipped_lists() {
        let dir = tempfile::tempdir().unwrap();
        let codes = "Z9989   Dependence on other enabling machines and devices\n";
        let release = read_release("codes.txt", &mut codes.as_bytes()).unwrap();
        save_release(dir.path(), release).unwrap();
        let t = Terminology::for_data_dir(dir.path()).unwrap();
        assert_eq!(t.diagnoses("enabling machines", 5)[0].code, "Z99.89");
        assert!(
            t.diagnoses("diab", 20).iter().any(|c| c.code == "E11.9"),
            "the shipped codes stay"
        );
    }

    #[test]
    fn a_penicillin_allergy_matches_amoxicillin_by_class() {
        let t = t();
        let amoxicillin = t
            .find_drugs("amoxicillin 500", 10)
            .into_iter()
            .find(|d| d.ingredients.len() == 1)
            .expect("amoxicillin in the shipped list");
        let why = t.allergy_match(amoxicillin, &[], "Penicillin");
        assert!(why.is_some(), "no alert");
        // By ingredient, whatever the case and punctuation.
        assert!(t.allergy_match(amoxicillin, &[], "AMOXICILLIN.").is_some());
        // A code naming the ingredient.
        let ingredient = amoxicillin.ingredients[0].0.clone();
        assert!(
            t.allergy_match(amoxicillin, &[(RXNORM.into(), ingredient)], "")
                .is_some()
        );
        // Unrelated allergies stay quiet.
        assert!(t.allergy_match(amoxicillin, &[], "Peanut").is_none());
        assert!(t.allergy_match(amoxicillin, &[], "Latex").is_none());
    }
}
