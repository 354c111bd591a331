//! The dashboard in a real browser: headless Chromium driven over the
//! WebDriver protocol (Debian's `chromium` and `chromium-driver`, installed
//! by `scripts/test-all.sh`) against `cairn serve` over HTTPS. Every core
//! flow is done with forms and links only. A screenshot of each page is
//! saved under `target/tmp/ui-screenshots/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::serve::Server;
use crate::support::Store;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    http: reqwest::blocking::Client,
    url: String,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    fn start(downloads: &Path, shots: PathBuf) -> Browser {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (scripts/test-all.sh does)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // The client speaks plain HTTP to chromedriver, but reqwest wants a
        // TLS provider all the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
                "prefs": {"download.default_directory": downloads.display().to_string(),
                          "download.prompt_for_download": false}
            }
        }}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().unwrap().json().unwrap();
        let session =
            res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_owned();
        std::fs::create_dir_all(&shots).unwrap();
        let browser =
            Browser { driver, http, url: format!("{base}/session/{session}"), shots, _profile: profile };
        browser.call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior",
                   "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}),
        );
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    /// A WebDriver command: its value, or the error it answered.
    fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let res: Value = req.send().unwrap().json().unwrap();
        if res["value"]["error"].is_string() { Err(res["value"].clone()) } else { Ok(res["value"].clone()) }
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res: Value = self
                .http
                .post(format!("{}/element", self.url))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if let Some(id) = res["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css:?} on {}", self.current());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/click"), json!({}));
    }

    fn fill(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/clear"), json!({}));
        self.call("POST", &format!("/element/{el}/value"), json!({"text": text}));
    }

    /// Choose a file in a file input: WebDriver types its path.
    fn attach(&self, css: &str, file: &Path) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/value"), json!({"text": file.display().to_string()}));
    }

    /// The element's text. A page that reloads itself (a running task's)
    /// may replace the element between finding and reading it: then it
    /// is found again.
    fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let el = self.find(css);
            match self.try_call("GET", &format!("/element/{el}/text"), json!({})) {
                Ok(v) => return v.as_str().unwrap_or_default().to_owned(),
                Err(e) if e["error"] == "stale element reference" && Instant::now() < deadline => {}
                Err(e) => panic!("webdriver text of {css:?}: {e}"),
            }
        }
    }

    fn current(&self) -> String {
        self.call("GET", "/url", json!({})).as_str().unwrap_or_default().to_owned()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", json!({})).as_str().unwrap_or_default().to_owned()
    }

    /// Save a PNG of the page as `NAME.png` among the test artifacts.
    fn screenshot(&self, name: &str) {
        let b64 = self.call("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.url).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn dashboard_login_job_run_browse_download_chart_and_edit_in_chromium() {
    if !testkit::needs(testkit::Need::Browser) {
        return;
    }
    let store = Store::new();
    let src = store.path("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    let report: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8).collect();
    std::fs::write(src.join("docs/report.bin"), &report).unwrap();
    // An older snapshot, so the usage chart has a history.
    let old = store.backup(&src, "host/ui", "2026-11-01T03:00:00Z");
    let server = Server::start(&store);
    let downloads = store.path("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let b = Browser::start(&downloads, shots.clone());

    // Log in.
    b.goto(&server.url("/"));
    assert!(b.current().contains("/login"), "an anonymous visit lands on the login form");
    b.screenshot("01-login");
    b.fill("input[name=user]", "admin");
    b.fill("input[name=password]", &server.password);
    b.click("button[type=submit]");
    assert_eq!(b.text("#snapshot-count"), "1");
    assert!(b.text("footer").contains(&server.fingerprint), "the fingerprint is on every page");

    // Create a job with the form and run it.
    b.goto(&server.url("/jobs"));
    b.fill("#job-form input[name=name]", "ui-job");
    b.fill("#job-form input[name=group]", "host/ui");
    b.fill("#job-form textarea[name=sources]", &src.display().to_string());
    b.fill("#job-form input[name=schedule]", "0 3 * * *");
    b.fill("#job-form input[name=tags]", "daily");
    b.click("#job-form button[type=submit]");
    // The notice exists only on the answer page: finding it waits for the
    // navigation the click started.
    assert!(b.text("p.notice").contains("Saved job ui-job"));
    b.screenshot("02-jobs");
    b.click("#jobs button[type=submit]");

    wait_for_task(&b);
    b.screenshot("03-task");

    // Browse the new snapshot down to the file and download it.
    b.click("#task-snapshot");
    let snapshot_page = b.current();
    b.click("#files a[href*='path=src']");
    b.click("#files a[href*='path=src/docs']");
    b.screenshot("04-snapshot-browser");
    b.click("#files a.download");
    let saved = downloads.join("report.bin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&saved).map(|m| m.len()).unwrap_or(0) != report.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "download did not arrive: {:?}",
            std::fs::read_dir(&downloads).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::fs::read(&saved).unwrap() == report, "downloaded file differs");

    // The overview: two snapshots now, the chart, the job's SLA.
    b.goto(&server.url("/"));
    assert_eq!(b.text("#snapshot-count"), "2");
    b.find("#usage-chart svg path");
    assert!(b.text("#job-sla").contains("ui-job"));
    assert!(b.text("#recent-tasks").contains("ok"));
    b.screenshot("05-overview");
    b.goto(&server.url("/groups/host/ui"));
    b.screenshot("06-group");
    b.goto(&server.url("/users"));
    b.screenshot("07-users");

    // Snapshot actions: verify now runs a task; delete (confirmed) removes
    // the older snapshot and lands on the group page.
    b.goto(&snapshot_page);
    b.click("#verify");
    wait_for_task(&b);
    assert!(b.text("#task-log").contains("chunks re-read"), "{}", b.text("#task-log"));
    b.screenshot("08-verify-task");
    b.goto(&server.url(&format!("/snapshots/{old}")));
    b.click("input[name=confirm]");
    b.click("#delete");
    b.find("#snapshots");
    assert!(!b.text("#snapshots").contains("2026-11-01T03:00:00Z"), "{}", b.text("#snapshots"));
    assert_eq!(store.snapshots().len(), 1);

    // Add a retention policy with the upload form.
    b.goto(&server.url("/policies"));
    b.attach("#policy-upload input[name=component]", &policy_guests::example("retention-gfs"));
    b.fill("#policy-upload input[name=name]", "gfs");
    b.click("#policy-upload button[type=submit]");
    assert!(b.text("p.notice").contains("Added policy gfs (retention, "), "{}", b.source());
    b.screenshot("09-policies");

    // Edit the job on its page: another schedule, the policy instead of
    // the keep counts; the jobs table shows the change.
    b.goto(&server.url("/jobs"));
    b.click("#jobs a[href='/jobs/ui-job']");
    b.fill("#job-form input[name=schedule]", "15 2 * * *");
    b.click("#job-policies summary");
    b.click("#job-form select[name=retention] option[value=gfs]");
    b.fill("#job-form textarea[name=retention_params]", "keep-daily=3");
    b.screenshot("10-job");
    b.click("#job-form button[type=submit]");
    assert!(b.text("p.notice").contains("Saved job ui-job"));
    assert!(b.text("#jobs").contains("15 2 * * *"), "{}", b.text("#jobs"));
    b.click("#jobs a[href='/jobs/ui-job']");
    let page = b.source();
    assert!(page.contains("value=\"gfs\" selected"), "{page}");
    assert!(page.contains("keep-daily=3"), "{page}");
    for name in [
        "01-login",
        "02-jobs",
        "03-task",
        "04-snapshot-browser",
        "05-overview",
        "06-group",
        "07-users",
        "08-verify-task",
        "09-policies",
        "10-job",
    ] {
        assert!(shots.join(format!("{name}.png")).metadata().unwrap().len() > 1000, "{name}");
    }
    drop(b);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// The Tape page in a real browser: the library (drives, slots, barcodes),
/// a pool added with its form, a group written to it as a task with its
/// log, the media set and the snapshot on tape, and a restore from tape
/// back into the datastore.
#[test]
fn tape_library_pool_backup_and_restore_in_chromium() {
    if !testkit::needs(testkit::Need::Browser) {
        return;
    }
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 4, 400 << 10, 31);
    let id = store.backup(&src, "host/tape", "2026-11-02T03:00:00Z");
    let lib = store.path("library");
    crate::support::run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "2",
        "--slots",
        "6",
        "--capacity",
        "64M",
        "--cleaning",
        "1",
    ]));
    let server = Server::start_with(&store, &["--tape-library", &lib.display().to_string()]);
    let downloads = store.path("downloads");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let b = Browser::start(&downloads, shots.clone());
    b.goto(&server.url("/login"));
    b.fill("input[name=user]", "admin");
    b.fill("input[name=password]", &server.password);
    b.click("button[type=submit]");
    b.find("#snapshot-count");

    b.click("header nav a[href='/tape']");
    let library = b.text("#library");
    for want in ["drive", "slot", "import-export", "CRN001L9", "CLN001L1", "cleaning", "unknown"] {
        assert!(library.contains(want), "{want} on the library page: {library}");
    }
    b.fill("#pool-form input[name=name]", "offsite");
    b.click("#pool-form select[name=allocation] option[value=new-set]");
    b.fill("#pool-form input[name=retention]", "4w");
    b.click("#pool-form button[type=submit]");
    assert!(b.text("p.notice").contains("Saved pool offsite"), "{}", b.source());
    assert!(b.text("#pools").contains("4w"), "{}", b.text("#pools"));
    b.screenshot("11-tape-library");

    b.click("#tape-backup button[type=submit]");
    wait_for_task(&b);
    let log = b.text("#task-log");
    assert!(log.contains(&format!("{id}: session 1")) && log.contains("CRN001L9 file 1"), "{log}");
    b.screenshot("12-tape-task");

    b.goto(&server.url("/tape"));
    assert!(b.text("#media-sets").contains("offsite"), "{}", b.text("#media-sets"));
    assert!(b.text("#tape-copies").contains(&id), "{}", b.text("#tape-copies"));
    assert!(b.text("#library").contains("writable") || b.text("#library").contains("full"));
    b.screenshot("13-tape-media");

    // The snapshot is lost from the datastore; the page puts it back.
    b.goto(&server.url(&format!("/snapshots/{id}")));
    b.click("input[name=confirm]");
    b.click("#delete");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.snapshots().is_empty() {
        assert!(Instant::now() < deadline, "the snapshot was not deleted: {}", b.source());
        std::thread::sleep(Duration::from_millis(200));
    }
    b.goto(&server.url("/tape"));
    b.click("#tape-copies form.restore button[type=submit]");
    wait_for_task(&b);
    assert!(b.text("#task-log").contains("is back in the datastore"), "{}", b.text("#task-log"));
    b.screenshot("14-tape-restore");
    assert_eq!(store.snapshots().len(), 1);
    for name in ["11-tape-library", "12-tape-task", "13-tape-media", "14-tape-restore"] {
        assert!(shots.join(format!("{name}.png")).metadata().unwrap().len() > 1000, "{name}");
    }
    drop(b);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// On a task page: wait until the task is `ok` (the page refreshes itself
/// while it runs); a failed task fails the test with its log.
fn wait_for_task(b: &Browser) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.text("#task-state") != "ok" {
        assert!(Instant::now() < deadline, "task did not finish: {}", b.source());
        assert_ne!(b.text("#task-state"), "failed", "{}", b.text("#task-log"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(b.text("#task-log").contains("finished: ok"));
}

/// The Datastore page of a datastore in an S3 bucket (a Garage node), in
/// Chromium: a second machine attached to the bucket shows who owns it and
/// that it reads only; its admin takes the bucket over with the page's
/// button, and the page then names this machine.
#[test]
fn the_datastore_page_shows_the_bucket_and_takes_it_over_in_chromium() {
    if !testkit::needs(testkit::Need::Browser) || !testkit::needs(testkit::Need::Garage) {
        return;
    }
    use testkit::garage::{Garage, KEY_ID, SECRET};
    let tmp = tempfile::tempdir().unwrap();
    let garage = Garage::start(&tmp.path().join("garage"), 1);
    garage.create_bucket("cairn");
    let creds = tmp.path().join("s3-credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let init = |ds: &Path, extra: &[&str]| {
        crate::support::run_ok(
            crate::support::cairn(ds)
                .args(["init", "--s3", &garage.endpoint(), "--bucket", "cairn", "--region", "garage"])
                .arg("--credentials")
                .arg(&creds)
                .args(extra),
        )
    };
    let first = tmp.path().join("first");
    init(&first, &[]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"in the bucket\n").unwrap();
    crate::support::run_ok(
        crate::support::cairn(&first).arg("backup").arg(&src).args(["--group", "host/ui"]),
    );

    let second = tempfile::tempdir().unwrap();
    let ds = second.path().join("ds");
    init(&ds, &["--existing"]);
    let store = Store { tmp: second, ds };
    let server = Server::start(&store);
    let downloads = store.path("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads, PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    b.goto(&server.url("/"));
    b.fill("input[name=user]", "admin");
    b.fill("input[name=password]", &server.password);
    b.click("button[type=submit]");
    assert_eq!(b.text("#snapshot-count"), "1", "the attached machine lists the bucket's snapshot");
    b.goto(&server.url("/datastore"));
    assert!(b.text("#datastore-bucket").contains("s3://cairn at"), "{}", b.source());
    assert!(b.text("#datastore-owner").contains("reads only"), "{}", b.text("#datastore-owner"));
    b.screenshot("15-datastore-read-only");
    b.click("#datastore-takeover button");
    assert!(b.text("p.error").contains("tick the box"), "{}", b.source());
    b.click("#datastore-takeover input[name=confirm]");
    b.click("#datastore-takeover button");
    assert!(b.text("p.notice").contains("This machine now writes the bucket"), "{}", b.source());
    assert!(b.text("#datastore-owner").starts_with("this machine"), "{}", b.text("#datastore-owner"));
    b.screenshot("16-datastore-taken-over");
    drop(b);
    let (status, _) = server.stop();
    assert!(status.success());
}
