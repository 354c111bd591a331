//! `cairn serve` end to end: the real binary on a loopback port over HTTPS,
//! reached by a client that pins the certificate's SHA-256 fingerprint.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::support::{Store, cairn, run_json, run_ok};

/// Accepts exactly one certificate, named by its SHA-256 fingerprint.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: Vec<String> =
            Sha256::digest(end_entity.as_ref()).iter().map(|b| format!("{b:02x}")).collect();
        if got.join(":") == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("certificate fingerprint mismatch".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

pub fn pinned_client(fingerprint: &str) -> Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned { fingerprint: fingerprint.to_owned(), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A running `cairn serve`, stopped with SIGTERM when dropped.
pub struct Server {
    child: Child,
    base: String,
    pub fingerprint: String,
    pub password: String,
    lines: std::sync::mpsc::Receiver<String>,
}

/// A configuration file that lets operators name job paths under `root`
/// (`[jobs] source_roots`); its path.
pub fn roots_config(store: &Store, root: &std::path::Path) -> String {
    let config = store.path("roots.toml");
    std::fs::write(&config, format!("[jobs]\nsource_roots = [{:?}]\n", root.display().to_string())).unwrap();
    config.display().to_string()
}

impl Server {
    pub fn start(store: &Store) -> Server {
        Server::start_with(store, &[])
    }

    /// Start with extra arguments (`--config FILE`).
    pub fn start_with(store: &Store, extra: &[&str]) -> Server {
        let mut child = store
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(store.log("serve.stderr"))
            .spawn()
            .expect("start cairn serve");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut base, mut fingerprint, mut password) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while fingerprint.is_none() {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("cairn serve printed its address and fingerprint");
            if let Some(p) = line.strip_prefix("created user admin with password ") {
                password = Some(p.trim().to_owned());
            } else if let Some(rest) = line.split(" on https://").nth(1) {
                base = Some(format!("https://{}", rest.trim()));
            } else if let Some(fp) = line.strip_prefix("certificate fingerprint (SHA-256): ") {
                fingerprint = Some(fp.trim().to_owned());
            }
        }
        Server {
            child,
            base: base.expect("address line"),
            fingerprint: fingerprint.unwrap(),
            // Printed by the first start only; empty when a datastore is served again.
            password: password.unwrap_or_default(),
            lines,
        }
    }

    /// Job `job`'s first task that is no longer running, waiting up to
    /// `secs` for it.
    pub fn finished_task(&self, client: &Client, token: &str, job: &str, secs: u64) -> serde_json::Value {
        self.poll(client, token, &format!("/api/v1/tasks?job={job}"), secs, |tasks| {
            tasks.as_array()?.iter().find(|t| t["state"] != "running").cloned()
        })
    }

    /// Task `id` once it is no longer running, waiting up to `secs`.
    pub fn ended_task(&self, client: &Client, token: &str, id: u64, secs: u64) -> serde_json::Value {
        self.poll(client, token, &format!("/api/v1/tasks/{id}"), secs, |t| {
            (t["state"] != "running").then(|| t.clone())
        })
    }

    /// GET `path` as `token` until `pick` finds its answer in the JSON;
    /// fail after `secs`, showing the last one.
    fn poll(
        &self,
        client: &Client,
        token: &str,
        path: &str,
        secs: u64,
        pick: impl Fn(&serde_json::Value) -> Option<serde_json::Value>,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got: serde_json::Value =
                client.get(self.url(path)).bearer_auth(token).send().unwrap().json().unwrap();
            if let Some(found) = pick(&got) {
                return found;
            }
            assert!(Instant::now() < deadline, "{path}: nothing ended within {secs} s: {got}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status and what it printed meanwhile.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM)
            .expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        let rest = self.lines.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn login(client: &Client, server: &Server, user: &str, password: &str) -> reqwest::blocking::Response {
    client
        .post(server.url("/login"))
        .form(&[("user", user), ("password", password), ("next", "/")])
        .send()
        .expect("login request")
}

#[test]
fn serve_over_https_with_a_pinned_fingerprint_logins_tokens_downloads_and_sigterm() {
    let store = Store::new();
    let src = store.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.join("etc/big.bin"), &data).unwrap();
    let id = store.backup(&src, "host/web01", "2026-11-20T03:00:00Z");

    let server = Server::start(&store);
    assert_eq!(server.fingerprint.len(), 95, "{}", server.fingerprint);
    let client = pinned_client(&server.fingerprint);
    assert_eq!(client.get(server.url("/healthz")).send().unwrap().text().unwrap(), "ok\n");

    // A client pinning another fingerprint refuses the server.
    let other = pinned_client(&format!("{}ab", "ab:".repeat(31)));
    assert!(other.get(server.url("/healthz")).send().is_err(), "a wrong pin must fail the handshake");

    // Log in with the password printed on first start; the cookie is
    // Secure, HttpOnly and SameSite=Strict; the dashboard shows the group
    // and the fingerprint.
    let res = login(&client, &server, "admin", &server.password);
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = client.get(server.url("/")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page.contains("host/web01") && page.contains(&server.fingerprint), "{page}");

    // A backup-client token made with the CLI while the server runs.
    let token = run_ok(store.cmd().args(["token", "create", "--name", "web01", "--group", "host/web01"]));
    let token = token.trim();
    let snaps: serde_json::Value =
        client.get(server.url("/api/v1/snapshots")).bearer_auth(token).send().unwrap().json().unwrap();
    assert_eq!(snaps[0]["id"], id.as_str());
    let url = server.url(&format!("/api/v1/snapshots/{id}/download"));
    let got = client.get(&url).query(&[("path", "src/etc/big.bin")]).bearer_auth(token).send().unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().unwrap().as_ref() == data.as_slice(), "downloaded file differs");
    let users = client.get(server.url("/api/v1/users")).bearer_auth(token).send().unwrap();
    assert_eq!(users.status(), 403, "a backup client may not list users");

    // `cairn user passwd` while the server runs: the new password works,
    // the old one (and its session) no longer does.
    let mut passwd = store
        .cmd()
        .args(["user", "passwd", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    passwd.stdin.take().unwrap().write_all(b"a-new-long-password\n").unwrap();
    assert!(passwd.wait().unwrap().success());
    let old = client.get(server.url("/api/v1/status")).header("cookie", &cookie).send().unwrap();
    assert_eq!(old.status(), 401);
    assert_eq!(login(&client, &server, "admin", "a-new-long-password").status(), 303);

    let (status, printed) = server.stop();
    assert!(status.success(), "{status:?}: {printed:?}");
    assert!(printed.iter().any(|l| l == "stopped"), "{printed:?}");
}

/// A job with the cron schedule `* * * * *`, created over the API, runs by
/// itself within a minute and appears as a finished task with its snapshot.
#[test]
fn a_cron_job_runs_by_itself_and_shows_up_as_a_task() {
    let store = Store::new();
    let src = store.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("motd"), b"scheduled\n").unwrap();
    let server = Server::start_with(&store, &["--config", &roots_config(&store, &src)]);
    let client = pinned_client(&server.fingerprint);
    let token = run_ok(store.cmd().args(["token", "create", "--name", "ops", "--role", "operator"]));
    let token = token.trim();
    let job = serde_json::json!({
        "name": "every-minute", "group": "host/cron", "sources": [src.display().to_string()],
        "schedule": "* * * * *", "tags": ["minutely"], "keep": {"last": 5}, "verify": true,
    });
    let res = client.post(server.url("/api/v1/jobs")).bearer_auth(token).json(&job).send().unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text());
    let src_text = src.display().to_string();
    let bad =
        serde_json::json!({"name": "bad", "group": "host/x", "sources": [src_text], "schedule": "0 3 * *"});
    let res = client.post(server.url("/api/v1/jobs")).bearer_auth(token).json(&bad).send().unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().unwrap().contains("five"), "a bad schedule is explained");

    // Up to a minute until the schedule is due, then the run itself.
    let task = server.finished_task(&client, token, "every-minute", 180);
    assert_eq!(task["state"], "ok", "{task}");
    assert_eq!(task["trigger"], "schedule");
    let log =
        task["log"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    assert!(log.contains("verify:") && log.contains("prune: kept 1"), "{log}");
    let snap = task["snapshot"].as_str().unwrap();
    let snaps: serde_json::Value = client
        .get(server.url("/api/v1/snapshots?group=host/cron"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(snaps[0]["id"], snap);
    assert_eq!(snaps[0]["tags"][0], "minutely");
    assert_eq!(snaps[0]["verify_state"], "ok");
    let jobs: serde_json::Value =
        client.get(server.url("/api/v1/jobs")).bearer_auth(token).send().unwrap().json().unwrap();
    assert_eq!(jobs[0]["sla"], "ok", "{jobs}");
    let metrics = client.get(server.url("/metrics")).bearer_auth(token).send().unwrap().text().unwrap();
    assert!(metrics.contains("cairn_job_last_success{job=\"every-minute\"} 1"), "{metrics}");
    assert!(metrics.contains("cairn_job_overdue{job=\"every-minute\"} 0"), "{metrics}");

    // Run now: a second task, started by the token's owner.
    let res = client.post(server.url("/api/v1/jobs/every-minute/run")).bearer_auth(token).send().unwrap();
    assert_eq!(res.status(), 202);
    let started: serde_json::Value = res.json().unwrap();
    let id = started["task"].as_u64().expect("a task id");
    let t = server.ended_task(&client, token, id, 60);
    assert_eq!(t["state"], "ok", "{t}");
    assert!(t["trigger"].as_str().unwrap().starts_with("manual"), "{t}");
    let (status, _) = server.stop();
    assert!(status.success());
}

/// `cairn check` speaks Nagios: a job whose newest good snapshot is older
/// than 1.5 × its interval is CRITICAL (2), one never run yet WARNING (1),
/// a fresh one OK (0), an unknown job UNKNOWN (3).
#[test]
fn check_reports_overdue_jobs_with_nagios_exit_codes() {
    let store = Store::new();
    let src = store.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let hours_ago = |h: i64| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
            - h * 3600;
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    store.backup(&src, "host/hourly", &hours_ago(3));
    let add = |name: &str, group: &str| {
        run_ok(store.cmd().args(["job", "add", name]).arg(&src).args([
            "--group",
            group,
            "--schedule",
            "0 * * * *",
        ]));
    };
    add("hourly", "host/hourly");
    let r = crate::support::run(store.cmd().args(["check", "--job", "hourly"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.starts_with("CRITICAL - 1 jobs, 1 overdue"), "{r:?}");

    add("fresh", "host/fresh");
    let r = crate::support::run(store.cmd().args(["check", "--job", "fresh"]));
    assert_eq!(r.code, 1, "never run, not yet overdue: {r:?}");

    let r = crate::support::run(store.cmd().args(["job", "run", "hourly"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("finished: ok"), "{r:?}");
    let r = crate::support::run(store.cmd().args(["check", "--job", "hourly"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("OK"), "{r:?}");

    let r = crate::support::run(store.cmd().args(["check", "--job", "nosuch"]));
    assert_eq!(r.code, 3, "{r:?}");
    let r = crate::support::run(store.cmd().arg("check"));
    assert_eq!(r.code, 1, "one job pending, none overdue: {r:?}");
}

/// A `cairn` command that talks to `server` with `token` and keeps no
/// local datastore (the path it names must stay absent).
pub fn client(store: &Store, server: &Server, token: &str, command: &str) -> Command {
    let mut cmd = cairn(&store.path("client-ds"));
    cmd.arg(command);
    cmd.args(["--server", &server.url(""), "--token", token, "--fingerprint", &server.fingerprint]);
    cmd
}

/// A new API token (`cairn token create`), its secret.
pub fn token(store: &Store, name: &str, role: &str, group: Option<&str>) -> String {
    let mut cmd = store.cmd();
    cmd.args(["token", "create", "--name", name, "--role", role]);
    if let Some(g) = group {
        cmd.args(["--group", g]);
    }
    run_ok(&mut cmd).trim().to_owned()
}

/// `serve` on a port another program holds fails before it creates
/// anything: no datastore, no admin user, no certificate.
#[test]
fn serve_on_a_busy_port_creates_nothing() {
    let store = Store::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = busy.local_addr().unwrap().to_string();
    let fresh = store.path("fresh-ds");
    let r = crate::support::run(cairn(&fresh).args(["serve", "--listen", &port]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot listen on") && !r.stdout.contains("created"), "{r:?}");
    assert!(!fresh.exists(), "a datastore was created by a server that could not start");
    let r = crate::support::run(store.cmd().args(["serve", "--listen", &port]));
    assert_eq!(r.code, 1, "{r:?}");
    let users = crate::support::run_json(store.cmd().args(["user", "list", "--json"]));
    assert_eq!(users, serde_json::json!([]), "an admin user was created by a server that could not start");
    assert!(!store.ds.join("server").exists(), "a certificate was made");
}

/// Certificate files named in `[tls]` must exist: a mistyped path is
/// refused rather than filled with a new self-signed pair.
#[test]
fn serve_refuses_tls_files_that_do_not_exist() {
    let store = Store::new();
    let (cert, key) = (store.path("tls/cert.pem"), store.path("tls/key.pem"));
    let config = store.path("cairn.toml");
    let text =
        format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    std::fs::write(&config, &text).unwrap();
    let fresh = store.path("fresh-ds");
    let mut child = cairn(&fresh)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn serve");
    // A server that starts anyway is stopped at its first line of service.
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line.contains(" on https://") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with [tls] files that do not exist: {line}");
        }
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("do not exist") && stderr.contains("self_signed"), "{stderr}");
    assert!(!cert.exists() && !key.exists() && !fresh.exists(), "something was created: {stderr}");

    // With self_signed = true, the pair is made there on the first start.
    std::fs::write(&config, format!("{text}self_signed = true\n")).unwrap();
    let server = Server::start_with(&store, &["--config", config.to_str().unwrap()]);
    assert!(cert.exists() && key.exists());
    let client = pinned_client(&server.fingerprint);
    assert_eq!(client.get(server.url("/healthz")).send().unwrap().text().unwrap(), "ok\n");
}

/// The CLI's `--json` and the API print the same JSON types (the `dto`
/// crate), so they cannot drift: the same tokens (groups as an array, with
/// created and expires), users, jobs and snapshots, field for field.
#[test]
fn the_cli_and_the_api_print_the_same_json() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 64 << 10, 7);
    store.backup(&src, "host/a", "2026-03-01T00:00:00Z");
    let server = Server::start_with(&store, &["--config", &roots_config(&store, &src)]);
    let http = pinned_client(&server.fingerprint);
    let admin = token(&store, "admin-t", "admin", None);
    token(&store, "client-t", "backup-client", Some("host/a"));
    let src_text = src.display().to_string();
    run_ok(
        store
            .cmd()
            .args(["job", "add", "nightly", "--group", "host/a", "--schedule", "0 3 * * *"])
            .arg(&src_text),
    );
    let cases: [(&[&str], &str); 4] = [
        (&["token", "list", "--json"], "/api/v1/tokens"),
        (&["user", "list", "--json"], "/api/v1/users"),
        (&["job", "list", "--json"], "/api/v1/jobs"),
        (&["snapshots", "--json"], "/api/v1/snapshots"),
    ];
    for (args, path) in cases {
        let cli = run_json(store.cmd().args(args));
        let res = http.get(server.url(path)).bearer_auth(&admin).send().unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let api: serde_json::Value = res.json().unwrap();
        assert_eq!(cli, api, "`cairn {}` and GET {path} differ", args.join(" "));
        assert!(cli.as_array().is_some_and(|a| !a.is_empty()), "{path}: {cli}");
    }
    let tokens = run_json(store.cmd().args(["token", "list", "--json"]));
    let client = tokens.as_array().unwrap().iter().find(|t| t["name"] == "client-t").expect("client token");
    assert_eq!(client["groups"], serde_json::json!(["host/a"]), "{client}");
    assert!(client["created"].is_string() && client.get("expires").is_some(), "{client}");
    assert!(client.get("token").is_none(), "a listing never shows a token's secret: {client}");
}
