//! The appliance routes in-process, on a machine made of files (an ESP
//! directory, two slot files): updates from the API and from the page's
//! upload form (its CSRF field read from the head of the stream), refused
//! bundles, and the first login's welcome page.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use osimage::bundle::{Input, create};
use osimage::keys::SecretKey;

use super::config::Appliance;
use super::state::AppState;
use super::tests::{Fixture, body_text, fixture, get, login, send};

struct Machine {
    _dir: tempfile::TempDir,
    layout: osimage::Layout,
    key: SecretKey,
}

fn machine() -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("esp/EFI/Linux")).unwrap();
    std::fs::write(root.join("esp/EFI/Linux/cairn-1.0-a.efi"), b"uki").unwrap();
    for s in ["a", "b"] {
        std::fs::write(root.join(format!("slot-{s}")), vec![0u8; 1 << 20]).unwrap();
    }
    std::fs::write(root.join("cmdline"), "ro cairn.slot=a\n").unwrap();
    std::fs::write(root.join("os-release"), "IMAGE_VERSION=1.0\n").unwrap();
    let key = SecretKey::from_seed(&[3u8; 32]);
    std::fs::write(root.join("update.pub"), format!("{}\n", key.public())).unwrap();
    Machine { layout: osimage::Layout::under(root), _dir: dir, key }
}

fn bundle(dir: &Path, key: &SecretKey, version: &str) -> Vec<u8> {
    std::fs::write(dir.join("rootfs"), vec![0x5au8; 300_000]).unwrap();
    std::fs::write(dir.join("uki-a"), b"kernel a").unwrap();
    std::fs::write(dir.join("uki-b"), b"kernel b").unwrap();
    let out = dir.join(format!("{version}.bundle"));
    let input = |name: &'static str, compress| Input {
        name,
        path: Box::leak(dir.join(name).into_boxed_path()),
        compress,
    };
    create(
        key,
        version,
        "2026-12-05T00:00:00Z",
        &[input("rootfs", true), input("uki-a", false), input("uki-b", false)],
        &out,
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

fn appliance_fixture(m: &Machine, upload: &Path) -> Fixture {
    let mut f = fixture();
    f.state = AppState::new(f.engine.clone(), Some("aa:bb".into()), Duration::ZERO, 2).with_appliance(
        Some(Appliance { layout: m.layout.clone(), upload_dir: upload.to_owned(), reboot: false }),
        None,
    );
    f
}

fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----cairn-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let file = if *name == "bundle" { "; filename=\"u.bundle\"" } else { "" };
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn updates_go_into_the_other_slot_from_the_api_and_the_page_form() {
    let m = machine();
    let upload = tempfile::tempdir().unwrap();
    let f = appliance_fixture(&m, upload.path());
    let work = tempfile::tempdir().unwrap();
    let admin = f.tokens["admin"].clone();

    // Status, for anyone who may read.
    let res = send(
        &f.state,
        get("/api/v1/appliance")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens["auditor"]))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let status: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(
        (status["running"].as_str(), status["version"].as_str()),
        (Some("a"), Some("1.0")),
        "{status}"
    );

    // Signed by a stranger: 422 with the reason, nothing written.
    let stranger = SecretKey::from_seed(&[9u8; 32]);
    let req = Request::post("/api/v1/appliance/update?reboot=false")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::from(bundle(work.path(), &stranger, "1.1")))
        .unwrap();
    let res = send(&f.state, req).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(res).await.contains("not from the key this appliance trusts"));
    assert_eq!(std::fs::read(&m.layout.slot_b).unwrap(), vec![0u8; 1 << 20]);

    // The page's form: CSRF first, then the file, streamed.
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let good = bundle(work.path(), &m.key, "1.1");
    let post_form = |fields: Vec<(&'static str, Vec<u8>)>| {
        let state = f.state.clone();
        let cookie = cookie.clone();
        async move {
            let borrowed: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let (ct, body) = multipart(&borrowed);
            let req = Request::post("/appliance/update")
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body))
                .unwrap();
            send(&state, req).await
        }
    };
    // A wrong CSRF token, or the file before the token: refused, nothing written.
    let res = post_form(vec![("csrf", b"wrong".to_vec()), ("bundle", good.clone())]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_form(vec![("bundle", good.clone()), ("csrf", csrf.clone().into_bytes())]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(std::fs::read(&m.layout.slot_b).unwrap(), vec![0u8; 1 << 20]);
    let res = post_form(vec![("csrf", csrf.clone().into_bytes()), ("bundle", good.clone())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = body_text(res).await;
    assert!(page.contains("Cairn 1.1 is in slot B"), "{page}");
    assert!(page.contains("cairn-1.1-b+3.efi") && page.contains("3 tries left"), "{page}");
    assert_eq!(std::fs::read(&m.layout.slot_b).unwrap()[..300_000], vec![0x5au8; 300_000][..]);
    assert_eq!(std::fs::read(m.layout.esp.join("EFI/Linux/cairn-1.1-b+3.efi")).unwrap(), b"kernel b");
    assert_eq!(std::fs::read_dir(upload.path()).unwrap().count(), 0, "the upload is removed");

    // The same version again over the API: not newer, refused.
    let req = Request::post("/api/v1/appliance/update?reboot=false")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::from(bundle(work.path(), &m.key, "1.0")))
        .unwrap();
    let res = send(&f.state, req).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(res).await.contains("not newer than the running 1.0"));

    // A rollback shows on the page.
    let linux = m.layout.esp.join("EFI/Linux");
    std::fs::rename(linux.join("cairn-1.1-b+3.efi"), linux.join("cairn-1.1-b+0-3.efi")).unwrap();
    let page = body_text(
        send(&f.state, get("/appliance").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await,
    )
    .await;
    assert!(page.contains("id=\"rolled-back\"") && page.contains("rolled back"), "{page}");
}

#[tokio::test]
async fn a_server_off_the_appliance_says_so() {
    let f = fixture();
    let req = get("/api/v1/appliance").header(header::AUTHORIZATION, format!("Bearer {}", f.tokens["admin"]));
    let res = send(&f.state, req.body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(body_text(res).await.contains("does not run on the Cairn appliance image"));
}

#[tokio::test]
async fn the_first_admin_login_lands_on_the_welcome_page_which_retires_the_password() {
    let mut f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("initial-admin-password");
    std::fs::write(&pw, "admin-password\n").unwrap();
    f.state = AppState::new(f.engine.clone(), Some("aa:bb".into()), Duration::ZERO, 2)
        .with_appliance(None, Some(pw.clone()));
    let post = || {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("user=admin&password=admin-password&next=/jobs"))
            .unwrap()
    };
    let res = send(&f.state, post()).await;
    assert_eq!(res.headers()[header::LOCATION], "/welcome");
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = body_text(
        send(&f.state, get("/welcome").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await,
    )
    .await;
    assert!(page.contains("fingerprint aa:bb"), "{page}");
    assert!(!pw.exists(), "the console no longer shows the password");
    let res = send(&f.state, post()).await;
    assert_eq!(res.headers()[header::LOCATION], "/jobs");
}
