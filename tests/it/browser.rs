//! The sign-in pages in a real browser (headless Chromium through ChromeDriver, spoken to over
//! the W3C WebDriver protocol): the stylesheet loads under the Content-Security-Policy, nothing
//! is blocked or logged as an error, the session cookie is set with its attributes and hidden
//! from scripts, a wrong password is shown, two-step enrolment and sign-in with an authenticator
//! code work, and signing out ends the session.
//!
//! Runs when ChromeDriver is installed (`apt-get install chromium chromium-driver`; CI does, and
//! sets `IRONCHART_REQUIRE_BROWSER=1` so that a missing browser fails instead of skipping).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironchart_security::totp::{TotpSecret, code_at};
use serde_json::{Value, json};

use crate::process::{Db, Served, add_user, run, wait_healthy};

const PASSWORD: &str = "correct horse battery staple 42";
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver() -> Option<String> {
    let path = std::env::var("IRONCHART_CHROMEDRIVER").unwrap_or("/usr/bin/chromedriver".into());
    if Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("IRONCHART_REQUIRE_BROWSER").is_none(),
        "IRONCHART_REQUIRE_BROWSER is set, but there is no ChromeDriver at {path}"
    );
    eprintln!("no ChromeDriver at {path}: skipping the browser test");
    None
}

/// A ChromeDriver process, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Driver,
}

impl Browser {
    async fn start(chromedriver: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _profile: tempfile::tempdir().unwrap(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{}/status", driver.url)).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = driver._profile.path().to_str().unwrap().to_string();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("IRONCHART_CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                         "--window-size=1280,1600",
                         format!("--user-data-dir={profile}")]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let r: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Browser {
            http,
            session,
            driver,
        }
    }

    /// Closes the browser (the driver stops when dropped).
    async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.driver.url, self.session))
            .send()
            .await;
    }

    fn at(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.url, self.session)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), self.at(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            r["value"]["error"].is_null(),
            "WebDriver {method} {path}: {r}"
        );
        r["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The path of the page shown.
    async fn path(&self) -> String {
        let url = self.get("/url").await;
        let url = url
            .as_str()
            .unwrap_or_else(|| panic!("no URL: {url}"))
            .to_string();
        let rest = url.splitn(4, '/').nth(3).unwrap_or("");
        format!("/{rest}")
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    /// Clicks what submits a form or follows a link, and waits for the next page to load.
    async fn click(&self, css: &str) {
        self.script("window.ironchartOldPage = true; return null;")
            .await;
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let loaded = self
                .script(
                    "return window.ironchartOldPage === undefined && \
                     document.readyState === 'complete';",
                )
                .await;
            if loaded == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no new page after clicking {css}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/text"))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The browser console's messages since the last call (CSP violations are logged here).
    async fn console(&self) -> Vec<Value> {
        self.post("/se/log", json!({"type": "browser"}))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Signs in with a user name and password; returns where the browser landed.
    async fn sign_in(&self, base: &str, username: &str, password: &str) -> String {
        self.open(&format!("{base}/login")).await;
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
        self.path().await
    }

    /// Checks what every page must be: styled by the one stylesheet, nothing blocked or failing.
    async fn check_page(&self, what: &str) {
        let styled = self
            .script(
                "const s = document.styleSheets; \
                 return s.length === 1 && s[0].cssRules.length > 10 && \
                   getComputedStyle(document.body).backgroundColor === 'rgb(246, 248, 250)';",
            )
            .await;
        assert_eq!(styled, true, "{what}: the stylesheet did not apply");
        let inline = self
            .script("return document.querySelectorAll('script:not([src]), style, [style]').length;")
            .await;
        assert_eq!(inline, 0, "{what}: inline script or style");
        let scripts = self
            .script(
                "return Array.from(document.scripts).every(s => \
                   new URL(s.src).pathname === '/static/app.js');",
            )
            .await;
        assert_eq!(scripts, true, "{what}: a script other than ours");
        // (A refused form answers 401 or 403 itself: the browser logs that status of the
        // page, which is not a problem of the page.)
        let page = self.get("/url").await.as_str().unwrap_or("").to_string();
        let own_status =
            format!("{page} - Failed to load resource: the server responded with a status of 4");
        let problems: Vec<Value> = self
            .console()
            .await
            .into_iter()
            .filter(|m| m["level"] == "SEVERE" || m["level"] == "WARNING")
            .filter(|m| {
                let message = m["message"].as_str().unwrap_or("");
                // A form refused with its problems shown is answered 422 on purpose.
                !message.contains("favicon.ico")
                    && !message.starts_with(&own_status)
                    && !message.contains("status of 422 (Unprocessable Entity)")
            })
            .collect();
        assert!(problems.is_empty(), "{what}: {problems:?}");
        self.check_accessible(what).await;
        self.screenshot(what).await;
    }

    /// Saves the page as `target/screenshots/<what>.png` (CI keeps them).
    async fn screenshot(&self, what: &str) {
        use base64::Engine;
        let png = self.get("/screenshot").await;
        let Some(Ok(bytes)) = png
            .as_str()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        else {
            panic!("{what}: no screenshot");
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("the screenshot");
    }

    /// Runs axe-core (from npm, `tests/browser`) in the page: no WCAG 2.x A or AA violation.
    async fn check_accessible(&self, what: &str) {
        let Some(axe) = axe_source() else {
            return;
        };
        self.script(&format!("{axe}\nreturn null;")).await;
        let violations = self
            .post(
                "/execute/async",
                json!({
                    "script": "const done = arguments[arguments.length - 1]; \
                        axe.run(document, {runOnly: {type: 'tag', values: \
                          ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}}) \
                        .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + \
                          v.nodes.map(n => n.target.join(' ')).join(', '))), \
                          e => done(['axe failed: ' + e]));",
                    "args": []
                }),
            )
            .await;
        assert_eq!(
            violations.as_array().map(Vec::len),
            Some(0),
            "{what}: accessibility: {violations}"
        );
    }
}

/// axe-core's script, installed from `tests/browser/package-lock.json` with `npm ci` when missing;
/// `None` (the checks skipped) without npm, unless `IRONCHART_REQUIRE_BROWSER` is set.
fn axe_source() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.exists() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("IRONCHART_REQUIRE_BROWSER").is_none(),
                "IRONCHART_REQUIRE_BROWSER is set, but axe-core could not be installed with npm"
            );
            eprintln!("no npm: skipping the accessibility checks");
            return None;
        }
    }
    Some(std::fs::read_to_string(script).expect("axe-core's script"))
}

/// The current code of a TOTP key as shown on the enrolment page, `ahead` steps from now.
fn code_for(secret: &str, ahead: i64) -> String {
    let secret = TotpSecret::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    code_at(&secret, (now + ahead * 30) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_works_in_a_real_browser() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let db = Db::Sqlite;
    add_user(data, &db, "nina", "nurse", PASSWORD);
    add_user(data, &db, "audra", "auditor", PASSWORD);
    // One patient with an allergy, imported as a clinic would.
    let files = tempfile::tempdir().unwrap();
    let ndjson = [
        json!({"resourceType": "Patient", "id": "b1", "birthDate": "1961-02-03",
            "name": [{"family": "Okafor", "given": ["Ada"]}],
            "identifier": [{"system": "urn:example:mrn", "value": "MRN-42"}]}),
        json!({"resourceType": "AllergyIntolerance", "id": "b1-a", "patient": {"reference": "Patient/b1"},
            "code": {"text": "Penicillin"}, "reaction": [{"manifestation": [{"text": "Anaphylaxis"}]}]}),
        json!({"resourceType": "Observation", "id": "b1-k", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
            "subject": {"reference": "Patient/b1"}, "effectiveDateTime": "2026-11-29T08:00:00Z",
            "valueQuantity": {"value": 5.9, "unit": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]}),
        json!({"resourceType": "DiagnosticReport", "id": "b1-r", "status": "final",
            "code": {"text": "Basic metabolic panel"}, "subject": {"reference": "Patient/b1"},
            "effectiveDateTime": "2026-11-29T08:00:00Z", "result": [{"reference": "Observation/b1-k"}]}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    std::fs::write(files.path().join("clinic.ndjson"), ndjson).unwrap();
    let out = run(
        &[
            "import",
            "--quiet",
            "--data",
            data.to_str().unwrap(),
            files.path().to_str().unwrap(),
        ],
        &db,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let base = served.base.clone();
    let browser = Browser::start(&chromedriver).await;

    // The sign-in page.
    browser.open(&format!("{base}/")).await;
    assert_eq!(
        browser.path().await,
        "/login",
        "signed out: sent to sign in"
    );
    browser.check_page("the sign-in page").await;
    let title = browser.script("return document.title;").await;
    assert_eq!(title, "Sign in · ironchart");

    // A wrong password is shown as such, and signs nobody in.
    let landed = browser.sign_in(&base, "nina", "not her password").await;
    assert_eq!(landed, "/login");
    assert!(
        browser.text("[role=alert]").await.contains("not right"),
        "{}",
        browser.text("[role=alert]").await
    );
    browser.check_page("the refused sign-in").await;

    // The right one: a session cookie scripts cannot read.
    let landed = browser.sign_in(&base, "nina", PASSWORD).await;
    assert_eq!(landed, "/", "a nurse signs in with a password alone");
    assert!(browser.text("h1").await.contains("Welcome, nina"));
    browser.check_page("the home page").await;
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-ironchart")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["secure"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/");
    let visible = browser.script("return document.cookie;").await;
    assert!(
        !visible.as_str().unwrap().contains("ironchart"),
        "scripts see the cookie: {visible}"
    );

    // "/" focuses patient search; searching lists the patients (none here).
    let focused = browser
        .script(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: '/', bubbles: true})); \
             return document.activeElement && document.activeElement.id;",
        )
        .await;
    assert_eq!(focused, "patient-search", "/ focuses patient search");
    browser.type_into("#patient-search", "nobody\n").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !browser.path().await.starts_with("/patients?q=nobody") {
        assert!(Instant::now() < deadline, "the search did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        browser.text(".card p").await.contains("No patient matches")
            || browser.text("main").await.contains("No patient matches")
    );
    browser.check_page("patient search").await;
    // Found as typed; the chart opens under its banner.
    browser
        .open(&format!("{base}/patients?q=okafor%2C%20ada"))
        .await;
    browser.click("a[href='/patients/b1']").await;
    assert_eq!(browser.path().await, "/patients/b1");
    let banner = browser.text("section.banner").await;
    assert!(banner.contains("OKAFOR, Ada"), "{banner}");
    assert!(banner.contains("03-Feb-1961 ("), "{banner}");
    assert!(banner.contains("MRN-42"), "{banner}");
    assert!(banner.contains("Penicillin (Anaphylaxis)"), "{banner}");
    browser.check_page("the chart").await;
    browser.click("a[href='/patients/b1/results']").await;
    assert!(browser.text("main").await.contains("Basic metabolic panel"));
    browser.check_page("the results").await;
    browser.click("a[href*='/trend?code=']").await;
    assert!(browser.text("h1").await.contains("Potassium"));
    let plotted = browser
        .script("return document.querySelectorAll('svg.plot circle').length;")
        .await;
    assert_eq!(plotted, 1, "the value is plotted");
    browser.check_page("a result's trend").await;
    browser.open(&format!("{base}/")).await;

    // Signing out ends the session.
    browser.click("form[action='/logout'] button").await;
    assert_eq!(browser.path().await, "/login?done=out");
    assert!(browser.text(".notice").await.contains("signed out"));
    browser.open(&format!("{base}/account/sessions")).await;
    assert_eq!(browser.path().await, "/login", "signed out for good");

    // An auditor must set up two-step sign-in first.
    let landed = browser.sign_in(&base, "audra", PASSWORD).await;
    assert_eq!(landed, "/login/enrol");
    browser.check_page("the enrolment page").await;
    let qr = browser
        .script("return document.querySelectorAll('.qr svg').length;")
        .await;
    assert_eq!(qr, 1, "the QR code is drawn");
    let secret = browser.text(".muted code").await;
    browser.type_into("#code", &code_for(&secret, 0)).await;
    browser.click("form[action='/login/enrol'] button").await;
    assert_eq!(browser.text("h1").await, "Your recovery codes");
    let codes = browser
        .script("return document.querySelectorAll('ul.codes li').length;")
        .await;
    assert_eq!(codes, 10);
    browser.check_page("the recovery codes").await;
    browser.click("a.button").await;
    assert_eq!(browser.path().await, "/");
    browser.open(&format!("{base}/audit")).await;
    assert_eq!(browser.path().await, "/audit");
    browser.check_page("the audit log").await;
    let rows = browser
        .script("return document.querySelectorAll('table tbody tr').length;")
        .await;
    assert!(rows.as_u64().unwrap() > 0, "the audit log lists entries");
    browser.click("form[action='/logout'] button").await;

    // Next time: the code step, with the authenticator's next code.
    let landed = browser.sign_in(&base, "audra", PASSWORD).await;
    assert_eq!(landed, "/login/code");
    browser.check_page("the code page").await;
    browser.type_into("#code", &code_for(&secret, 1)).await;
    browser.click("form[action='/login/code'] button").await;
    assert_eq!(browser.path().await, "/");
    assert!(browser.text("h1").await.contains("Welcome, audra"));

    browser.quit().await;
    assert!(served.interrupt().success());
}

/// A 1×1 PNG.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Waits until a script returns true (the typeahead's answer arriving, say).
async fn wait_for(browser: &Browser, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.script(script).await != true {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_works_in_a_real_browser() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let db = Db::Sqlite;
    add_user(data, &db, "nina", "nurse", PASSWORD);
    add_user(data, &db, "doc", "physician", PASSWORD);
    add_user(data, &db, "desk", "front_desk", PASSWORD);
    let files = tempfile::tempdir().unwrap();
    let ndjson = [
        json!({"resourceType": "Patient", "id": "v1", "birthDate": "1970-05-06",
            "name": [{"family": "Mensah", "given": ["Kofi"]}],
            "identifier": [{"system": "urn:example:mrn", "value": "MRN-77"}]}),
        json!({"resourceType": "AllergyIntolerance", "id": "v1-a", "patient": {"reference": "Patient/v1"},
            "code": {"text": "Penicillin"}, "reaction": [{"manifestation": [{"text": "Hives"}]}]}),
        json!({"resourceType": "Patient", "id": "v3",
            "name": [{"family": "<script>window.pwned = 1</script>Lane", "given": ["<img src=x onerror=window.pwned=2>"]}]}),
        json!({"resourceType": "Patient", "id": "v2", "birthDate": "2025-01-01", "gender": "male",
            "name": [{"family": "Mensah", "given": ["Kwame"]}]}),
        json!({"resourceType": "Observation", "id": "v2-w", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
            "subject": {"reference": "Patient/v2"}, "effectiveDateTime": "2026-01-01T12:00:00Z",
            "valueQuantity": {"value": 9.6, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    std::fs::write(files.path().join("clinic.ndjson"), ndjson).unwrap();
    let out = run(
        &[
            "import",
            "--quiet",
            "--data",
            data.to_str().unwrap(),
            files.path().to_str().unwrap(),
        ],
        &db,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut served = Served::start(data, &db);
    wait_healthy(&served.base).await;
    let base = served.base.clone();
    let browser = Browser::start(&chromedriver).await;

    // The nurse starts a visit and records vitals: one refused as impossible, then in pounds.
    assert_eq!(browser.sign_in(&base, "nina", PASSWORD).await, "/");
    browser.open(&format!("{base}/patients/v1")).await;
    browser
        .click("form[action='/patients/v1/visits'] button")
        .await;
    let visit = browser.path().await;
    assert!(visit.starts_with("/patients/v1/visits/"), "{visit}");
    browser.check_page("a new visit").await;
    browser.type_into("#weight", "700").await;
    browser.type_into("#pulse", "72").await;
    browser.click("form[action$='/vitals'] button").await;
    assert!(
        browser
            .text(".error-summary")
            .await
            .contains("not a possible weight")
    );
    assert_eq!(
        browser
            .script("return document.getElementById('pulse').value;")
            .await,
        "72",
        "what was typed is kept"
    );
    browser.check_page("a refused vitals entry").await;
    browser.click("form[action='/account/units'] button").await;
    assert!(browser.text("form.units").await.contains("US"));
    browser
        .script("document.getElementById('weight').value = ''; return null;")
        .await;
    browser.type_into("#weight", "154").await;
    browser.type_into("#height", "65").await;
    browser.type_into("#systolic", "150").await;
    browser.type_into("#diastolic", "92").await;
    browser.click("form[action$='/vitals'] button").await;
    let vitals = browser.text("#vitals-table").await;
    assert!(vitals.contains("154 lb"), "{vitals}");
    assert!(vitals.contains("150/92 mmHg"), "{vitals}");
    assert!(vitals.contains("Body mass index"), "{vitals}");
    browser.check_page("vitals recorded").await;
    browser.click("form[action='/logout'] button").await;

    // The physician: note, diagnosis by typing, lab order, prescription, signature.
    assert_eq!(browser.sign_in(&base, "doc", PASSWORD).await, "/");
    browser.open(&format!("{base}{visit}")).await;
    browser
        .type_into("#subjective", "Sore throat for three days.")
        .await;
    browser
        .type_into("#assessment", "Streptococcal pharyngitis.")
        .await;
    browser.click("form[action$='/note'] button").await;
    assert!(browser.text("#note").await.contains("Sore throat"));
    browser.type_into("#diagnosis", "diab").await;
    wait_for(
        &browser,
        "return Array.from(document.querySelectorAll('#diagnosis-list option')).some(o => o.value.startsWith('E11.9 '));",
        "the typeahead offers E11.9 for diab",
    )
    .await;
    browser.click("form[action$='/diagnoses'] button").await;
    browser
        .script("document.querySelector(\"input[name=code][value='E11.9']\").checked = true; return null;")
        .await;
    browser.click("form[action$='/diagnoses'] button").await;
    assert!(browser.text("#diagnoses").await.contains("E11.9"));
    browser
        .script("document.getElementById('order').selectedIndex = 1; return null;")
        .await;
    browser.click("form[action$='/orders'] button").await;
    assert!(!browser.text("#orders").await.is_empty());
    browser
        .check_page("a visit with note, diagnosis and order")
        .await;
    let amoxicillin = ironchart_web::terminology::Terminology::shipped()
        .find_drugs("amoxicillin 500 capsule", 20)
        .into_iter()
        .find(|d| d.ingredients.len() == 1)
        .expect("amoxicillin")
        .name
        .clone();
    browser.type_into("#drug", &amoxicillin).await;
    browser.type_into("#dose", "500 mg").await;
    browser
        .script("document.getElementById('frequency').value = 'three times a day'; return null;")
        .await;
    browser.type_into("#days", "10").await;
    browser.type_into("#quantity", "30").await;
    browser.click("form[action$='/prescriptions'] button").await;
    let alert = browser.text("#allergy-alert").await;
    assert!(
        alert.contains("Penicillin") && alert.contains("Hives"),
        "{alert}"
    );
    browser.check_page("the allergy alert").await;
    browser.click("form[action$='/prescriptions'] button").await;
    assert!(
        browser
            .text("#allergy-alert")
            .await
            .contains("Give the reason")
    );
    browser
        .type_into("#reason", "Tolerated amoxicillin in 2020")
        .await;
    browser.click("form[action$='/prescriptions'] button").await;
    let prescriptions = browser.text("#prescriptions").await;
    assert!(
        prescriptions.contains("Tolerated amoxicillin in 2020"),
        "{prescriptions}"
    );
    browser.click("#prescriptions a").await;
    assert!(browser.text("main").await.contains("MRN-77"));
    browser.check_page("a printable prescription").await;
    browser.open(&format!("{base}{visit}")).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form[action$='/sign'] button").await;
    assert!(browser.text("#signed").await.contains("Signed by doc"));
    let forms = browser
        .script("return document.querySelectorAll(\"form[action$='/vitals'], form[action$='/note']\").length;")
        .await;
    assert_eq!(forms, 0, "a signed visit offers no changes");
    browser
        .type_into("#addendum", "Rapid strep test positive.")
        .await;
    browser.click("form[action$='/addenda'] button").await;
    let note = browser.text("main").await;
    assert!(
        note.contains("Sore throat for three days.") && note.contains("Addendum by doc"),
        "{note}"
    );
    browser
        .script(
            "document.querySelector('.addendum').scrollIntoView({block: 'center'}); return null;",
        )
        .await;
    browser.check_page("a signed visit with an addendum").await;
    // The chart shows the new data, and the plot of a vital sign.
    browser.open(&format!("{base}/patients/v1")).await;
    let chart = browser.text("main").await;
    assert!(
        chart.contains("E11.9") || chart.contains("Type 2 diabetes"),
        "{chart}"
    );
    assert!(chart.contains("150/92"), "{chart}");
    browser
        .click("a[href*='/trend?code='][href*='29463-7']")
        .await;
    let plotted = browser
        .script("return document.querySelectorAll('svg.plot circle').length;")
        .await;
    assert_eq!(plotted, 1, "the weight is plotted");
    browser.check_page("a vital sign's trend").await;

    // The lists, with a problem resolved and its history; a child's growth chart.
    browser.open(&format!("{base}/patients/v1/lists")).await;
    browser.type_into("#problem", "I10").await;
    browser
        .click("form[action$='/lists/problems'] button")
        .await;
    browser
        .click("form[action*='/lists/Condition/'] button")
        .await;
    let history = browser
        .script(
            "return Array.from(document.querySelectorAll('tr')).find(r => r.textContent.includes('I10'))\
             .querySelector(\"a[href$='/history']\").getAttribute('href');",
        )
        .await;
    browser
        .open(&format!("{base}{}", history.as_str().unwrap()))
        .await;
    assert!(browser.text("#history").await.contains("resolved"));
    browser.check_page("a problem's history").await;
    browser.open(&format!("{base}/patients/v1/lists")).await;
    browser.check_page("the lists").await;
    // A document: HTML named .pdf is refused; a real image is kept and previewed.
    let disguised = files.path().join("letter.pdf");
    std::fs::write(&disguised, "<html><script>alert(1)</script></html>").unwrap();
    browser.open(&format!("{base}/patients/v1/documents")).await;
    browser.type_into("#title", "Referral letter").await;
    browser
        .type_into("#file", disguised.to_str().unwrap())
        .await;
    browser.click("form[action$='/documents'] button").await;
    assert!(
        browser
            .text(".error-summary")
            .await
            .contains("Only PDF, PNG and JPEG")
    );
    browser.check_page("a refused upload").await;
    let image = files.path().join("photo.png");
    std::fs::write(&image, TINY_PNG).unwrap();
    browser
        .script("document.getElementById('title').value = ''; return null;")
        .await;
    browser.type_into("#title", "Rash photo").await;
    browser.type_into("#file", image.to_str().unwrap()).await;
    browser.click("form[action$='/documents'] button").await;
    assert!(browser.text("#documents").await.contains("Rash photo"));
    let shown = browser
        .script("const i = document.querySelector('img.preview'); return i.complete && i.naturalWidth === 1;")
        .await;
    assert_eq!(shown, true, "the image is previewed");
    browser.check_page("the documents").await;
    browser.open(&format!("{base}/patients/v2/growth")).await;
    assert!(browser.text("main").await.contains("48th"));
    browser.check_page("a growth chart").await;
    browser.click("form[action='/logout'] button").await;

    // The front desk cannot read the note, even by its URL.
    assert_eq!(browser.sign_in(&base, "desk", PASSWORD).await, "/");
    browser.open(&format!("{base}{visit}")).await;
    assert!(!browser.text("body").await.contains("Sore throat"));

    // Markup in a patient's name is shown as text and never runs.
    browser.open(&format!("{base}/patients/v3")).await;
    let banner = browser.text("section.banner").await;
    assert!(
        banner.contains("<SCRIPT>WINDOW.PWNED = 1</SCRIPT>LANE"),
        "{banner}"
    );
    assert!(
        banner.contains("<img src=x onerror=window.pwned=2>"),
        "{banner}"
    );
    assert_eq!(
        browser.script("return window.pwned === undefined;").await,
        true
    );
    browser.click("form[action='/logout'] button").await;
    assert!(served.interrupt().success());

    // An idle session: warned, then signed out (a server with a 3-second idle limit).
    let mut served = Served::start_cmd(
        &[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--session-idle",
            "3s",
        ],
        &db,
    );
    wait_healthy(&served.base).await;
    let base = served.base.clone();
    assert_eq!(browser.sign_in(&base, "nina", PASSWORD).await, "/");
    browser.open(&format!("{base}/patients/v1")).await;
    wait_for(
        &browser,
        "return !document.getElementById('idle-warning').hidden;",
        "the page warns before the idle sign-out",
    )
    .await;
    assert!(browser.text("#idle-warning").await.contains("signed out"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    browser.open(&format!("{base}/patients/v1")).await;
    assert_eq!(browser.path().await, "/login", "signed out after 3 s idle");

    browser.quit().await;
    assert!(served.interrupt().success());
}
