//! Policies over the API of a running `cairn serve`: upload (compiled in
//! the server's child process), list, show, simulate, remove; a component
//! that is not one is refused with 400 and nothing stored; the dashboard's
//! policies page runs the simulator from its form.

use serde_json::{Value, json};

use crate::serve::{Server, pinned_client};
use crate::support::{Store, run_json, run_ok};

#[test]
fn policies_upload_list_simulate_and_remove_over_https() {
    let store = Store::new();
    let src = store.path("empty");
    std::fs::create_dir_all(&src).unwrap();
    for t in ["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z", "2026-11-02T20:00:00Z", "2026-11-03T10:00:00Z"]
    {
        store.backup(&src, "host/pol", t);
    }
    let admin =
        run_ok(store.cmd().args(["token", "create", "--name", "ops", "--role", "admin"])).trim().to_owned();
    let auditor = run_ok(store.cmd().args(["token", "create", "--name", "audit", "--role", "auditor"]))
        .trim()
        .to_owned();
    let server = Server::start(&store);
    let http = pinned_client(&server.fingerprint);
    let api = |p: &str| server.url(&format!("/api/v1{p}"));

    // Not a component: 400, nothing stored.
    let res = http.post(api("/policies")).bearer_auth(&admin).body("not wasm").send().unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().unwrap().contains("not a WebAssembly component"));
    // An auditor may look but not upload.
    let wasm = std::fs::read(policy_guests::example("retention-gfs")).unwrap();
    let res = http.post(api("/policies?name=gfs")).bearer_auth(&auditor).body(wasm.clone()).send().unwrap();
    assert_eq!(res.status(), 403);

    let res = http.post(api("/policies?name=gfs")).bearer_auth(&admin).body(wasm).send().unwrap();
    assert_eq!(res.status(), 201);
    let added: Value = res.json().unwrap();
    assert_eq!(
        (added["name"].as_str(), added["world"].as_str()),
        (Some("gfs"), Some("retention")),
        "{added}"
    );
    assert_eq!(added["cpu_ms"], 1000);
    let listed: Value = http.get(api("/policies")).bearer_auth(&auditor).send().unwrap().json().unwrap();
    assert_eq!(listed[0]["digest"], added["digest"]);
    // The CLI sees what the server stored, and the compiled form is cached.
    let show = run_ok(store.cmd().args(["policy", "show", "gfs"]));
    assert!(show.contains("cached for this build"), "{show}");
    let one: Value = http.get(api("/policies/gfs")).bearer_auth(&auditor).send().unwrap().json().unwrap();
    assert!(one["params"].as_array().unwrap().iter().any(|p| p["name"] == "keep-daily"), "{one}");

    // The simulator over the API agrees with the CLI's.
    let body = json!({"group": "host/pol", "every": "1d", "params": {"keep-daily": "2"}});
    let res = http.post(api("/policies/gfs/simulate")).bearer_auth(&admin).json(&body).send().unwrap();
    assert_eq!(res.status(), 200);
    let sim: Value = res.json().unwrap();
    let cli = run_json(store.cmd().args([
        "policy",
        "simulate",
        "gfs",
        "host/pol",
        "--param",
        "keep-daily=2",
        "--json",
    ]));
    assert_eq!(sim, cli);
    assert_eq!(sim["kept"].as_array().map(Vec::len), Some(2), "{sim}");
    let res = http.post(api("/policies/gfs/simulate")).bearer_auth(&auditor).json(&body).send().unwrap();
    assert_eq!(res.status(), 403);
    let res = http.post(api("/policies/nope/simulate")).bearer_auth(&admin).json(&body).send().unwrap();
    assert_eq!(res.status(), 404);
    for bad in ["/policies/.hidden", "/policies/a%20b"] {
        let res = http.get(api(bad)).bearer_auth(&admin).send().unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    let bad = json!({"group": "host/pol", "params": {"keep-daily": "many"}});
    let res = http.post(api("/policies/gfs/simulate")).bearer_auth(&admin).json(&bad).send().unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().unwrap().contains("whole number"));

    // The dashboard: the page lists it and its form simulates.
    let res = http
        .post(server.url("/login"))
        .form(&[("user", "admin"), ("password", server.password.as_str()), ("next", "/")])
        .send()
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(server.url("/policies")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page.contains("retention-gfs") && page.contains("Simulate"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let form = [
        ("csrf", csrf.as_str()),
        ("policy", "gfs"),
        ("group", "host/pol"),
        ("every", "1d"),
        ("params", "keep-daily=2"),
    ];
    let res =
        http.post(server.url("/policies/simulate")).header("cookie", &cookie).form(&form).send().unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().unwrap();
    assert!(page.contains("2 of 4 snapshots kept") && page.contains("keep-daily 1"), "{page}");

    let res = http.delete(api("/policies/gfs")).bearer_auth(&admin).send().unwrap();
    assert_eq!(res.status(), 204);
    let listed: Value = http.get(api("/policies")).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert_eq!(listed, json!([]));
}
