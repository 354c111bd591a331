//! Datastores in an S3 bucket, on a real Garage cluster on loopback: the
//! round trip, change detection, verify finding an object changed in the
//! bucket, prune and gc freeing objects, kill -9 in a backup, disaster
//! recovery into an empty machine, the one-writer claim, bad buckets and
//! credentials, and a three-node cluster losing a node mid-backup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bucket::{Bucket, Credentials, S3Location};
use testkit::garage::{Garage, KEY_ID, SECRET};
use testkit::{Need, write_random_tree};

use crate::support::{assert_same_tree, cairn, parse_json, run, run_code, run_json, run_ok, str_of, u64_of};

const MIB: u64 = 1 << 20;
const PREFIX: &str = "site-a";

struct Site {
    tmp: tempfile::TempDir,
    garage: Garage,
    bucket: Bucket,
}

impl Site {
    fn start(nodes: usize) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let garage = Garage::start(&tmp.path().join("garage"), nodes);
        garage.create_bucket("cairn");
        let creds =
            Credentials { access_key_id: KEY_ID.into(), secret_access_key: bucket::Secret::new(SECRET) };
        let loc = S3Location {
            endpoint: garage.endpoint(),
            bucket: "cairn".into(),
            prefix: PREFIX.into(),
            region: garage.region().into(),
        };
        let bucket = Bucket::s3(&loc, &creds).expect("bucket");
        Site { tmp, garage, bucket }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `cairn` on datastore `ds`, with the test key in the environment.
    fn cmd(&self, ds: &Path) -> Command {
        let mut c = cairn(ds);
        c.env("AWS_ACCESS_KEY_ID", KEY_ID).env("AWS_SECRET_ACCESS_KEY", SECRET);
        c
    }

    fn init(&self, ds: &Path, extra: &[&str]) -> String {
        run_ok(
            self.cmd(ds)
                .args(["init", "--s3", &self.garage.endpoint(), "--bucket", "cairn"])
                .args(["--prefix", PREFIX, "--region", self.garage.region()])
                .args(extra),
        )
    }

    fn chunk_objects(&self) -> Vec<String> {
        self.bucket.list("chunks").expect("list chunks").into_iter().map(|(k, _)| k).collect()
    }

    fn snapshot_ids(&self, ds: &Path) -> Vec<String> {
        let v = run_json(self.cmd(ds).args(["snapshots", "--json"]));
        v.as_array().expect("array").iter().map(|s| str_of(s, "id").to_owned()).collect()
    }
}

fn backup_json(site: &Site, ds: &Path, src: &Path, time: &str) -> serde_json::Value {
    let r = run_code(
        site.cmd(ds).arg("backup").arg(src).args(["--group", "host/web", "--time", time, "--json"]),
        0,
    );
    parse_json(&r)
}

#[test]
fn an_s3_datastore_backs_up_restores_verifies_prunes_collects_and_recovers_from_the_bucket_alone() {
    if !testkit::needs(Need::Garage) {
        return;
    }
    let site = Site::start(1);
    let ds = site.path("ds");
    site.init(&ds, &[]);
    assert!(site.bucket.get("cairn-datastore.json").unwrap().is_some());
    assert!(site.bucket.get("cairn-owner.json").unwrap().is_some());
    // The key never lands in the datastore's config.
    let config = std::fs::read_to_string(ds.join("cairn-datastore.json")).unwrap();
    assert!(!config.contains(SECRET) && !config.contains(KEY_ID), "{config}");

    // Round trip.
    let src = site.path("src");
    write_random_tree(&src, 60, 12 * MIB, 18);
    std::os::unix::fs::symlink("d00/s00", src.join("link")).unwrap();

    let first = backup_json(&site, &ds, &src, "2026-12-01T00:00:00Z");
    let id1 = str_of(&first, "id").to_owned();
    assert!(u64_of(&first, "new_chunks") > 0);
    let objects = site.chunk_objects().len() as u64;
    assert_eq!(objects, u64_of(&first, "new_chunks"));
    let out = site.path("out1");
    run_ok(site.cmd(&ds).args(["restore", &id1]).arg(&out));
    assert_same_tree(&src, &out);
    // With root, the whole tricky corpus too (devices, owners, ACLs,
    // xattrs, sparse files past 4 GiB, odd names), in a datastore of its
    // own under another prefix of the bucket.
    if Need::Root.wanted() {
        let tricky = site.path("tricky");
        testkit::build_tricky_tree(&tricky);
        let tds = site.path("tricky-ds");
        run_ok(site.cmd(&tds).args(["init", "--s3", &site.garage.endpoint(), "--bucket", "cairn"]).args([
            "--prefix",
            "site-tricky",
            "--region",
            site.garage.region(),
        ]));
        let r =
            run_json(site.cmd(&tds).arg("backup").arg(&tricky).args(["--group", "host/tricky", "--json"]));
        let out = site.path("out-tricky");
        run_ok(site.cmd(&tds).args(["restore", str_of(&r, "id")]).arg(&out));
        assert_same_tree(&tricky, &out);
    }

    // Unchanged: nothing new reaches the bucket.
    let second = backup_json(&site, &ds, &src, "2026-12-02T00:00:00Z");
    assert_eq!((u64_of(&second, "new_chunks"), u64_of(&second, "stored")), (0, 0), "{second}");
    assert_eq!(site.chunk_objects().len() as u64, objects);
    // Only the snapshot's own small files travel: indexes, state, manifest.
    let o = &second["object_store"];
    assert!(u64_of(o, "puts") <= 4 && u64_of(o, "bytes_sent") < 64 << 10, "{second}");
    assert!(u64_of(&first["object_store"], "bytes_sent") > 8 * MIB, "{first}");
    run_code(site.cmd(&ds).args(["verify", "--all"]), 0);

    // Bytes changed in the bucket: verify (which reads the bucket, not the
    // cache) names the snapshot and moves the object aside; the next
    // backup stores the chunk again.
    let victim = site.chunk_objects()[0].clone();
    let mut blob = site.bucket.get(&victim).unwrap().unwrap();
    let n = blob.len();
    blob[n / 2] ^= 0x5a;
    site.bucket.put(&victim, blob).unwrap();
    let r = run(site.cmd(&ds).args(["verify", "--all", "--json"]));
    assert_eq!(r.code, 1, "{r:?}");
    let verdicts = parse_json(&r);
    let bad: Vec<&str> = verdicts
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "failed")
        .map(|v| str_of(v, "id"))
        .collect();
    assert!(bad.contains(&id1.as_str()), "{verdicts}");
    assert!(site.bucket.get(&victim).unwrap().is_none(), "the corrupt object was not moved aside");
    assert_eq!(site.bucket.list("quarantine").unwrap().len(), 1);
    let third = backup_json(&site, &ds, &src, "2026-12-03T00:00:00Z");
    let id3 = str_of(&third, "id").to_owned();
    run_code(site.cmd(&ds).args(["verify", &id3]), 0);

    // Prune and gc free objects in the bucket.
    let more = src.join("more");
    write_random_tree(&more, 10, 4 * MIB, 19);
    let fourth = backup_json(&site, &ds, &src, "2026-12-04T00:00:00Z");
    std::fs::remove_dir_all(&more).unwrap();
    let fifth = backup_json(&site, &ds, &src, "2026-12-05T00:00:00Z");
    let _ = (fourth, fifth);
    let before = site.chunk_objects().len() as u64;
    run_ok(site.cmd(&ds).args(["prune", "host/web", "--keep-last", "1"]));
    let gc = run_json(site.cmd(&ds).args(["gc", "--json"]));
    let removed = u64_of(&gc, "removed_chunks");
    assert!(removed > 0, "{gc}");
    assert_eq!(site.chunk_objects().len() as u64, before - removed, "{gc}");
    let keep = site.snapshot_ids(&ds);
    assert_eq!(keep.len(), 1);
    let manifests = site.bucket.list("snapshots").unwrap();
    assert_eq!(manifests.iter().filter(|(k, _)| k.ends_with("/manifest.json")).count(), 1, "{manifests:?}");

    // kill -9 in the middle of a backup: nothing visible, and the next gc
    // removes what it uploaded.
    let big = site.path("big");
    write_random_tree(&big, 40, 96 * MIB, 20);
    let objects_before = site.chunk_objects().len();
    let mut child = site
        .cmd(&ds)
        .arg("backup")
        .arg(&big)
        .args(["--group", "host/big", "--time", "2026-12-06T00:00:00Z"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while site.chunk_objects().len() < objects_before + 8 {
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no uploads seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(site.snapshot_ids(&ds), keep, "a killed backup became visible");
    assert!(site.chunk_objects().len() > objects_before);
    let gc = run_json(site.cmd(&ds).args(["gc", "--json"]));
    assert!(u64_of(&gc, "removed_chunks") > 0, "{gc}");
    assert_eq!(site.chunk_objects().len(), objects_before, "{gc}");

    // The appliance burned down: a new machine attaches to the bucket.
    let out5 = site.path("out5");
    run_ok(site.cmd(&ds).args(["restore", &keep[0]]).arg(&out5));
    let dr = site.path("dr");
    let said = site.init(&dr, &["--existing"]);
    assert!(said.contains("1 snapshots") && said.contains("read-only"), "{said}");
    assert_eq!(site.snapshot_ids(&dr), keep);
    let out_dr = site.path("out-dr");
    run_ok(site.cmd(&dr).args(["restore", &keep[0]]).arg(&out_dr));
    assert_same_tree(&out5, &out_dr);
    run_code(site.cmd(&dr).args(["verify", "--all"]), 0);
    // The old machine still holds the claim: the new one may not write.
    let r = run(site.cmd(&dr).arg("backup").arg(&src).args(["--group", "host/web"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("claimed by another appliance"), "{}", r.stderr);
    run_ok(site.cmd(&dr).args(["datastore", "takeover"]));
    let status = run_json(site.cmd(&dr).args(["datastore", "status", "--json"]));
    assert_eq!(status["bucket"]["writable"], true, "{status}");
    backup_json(&site, &dr, &src, "2026-12-07T00:00:00Z");
    let r = run(site.cmd(&ds).arg("backup").arg(&src).args(["--group", "host/web"]));
    assert_eq!(r.code, 1, "the old owner still writes: {r:?}");
    // The catalog is a cache: lost, it comes back from the working copy.
    std::fs::remove_file(dr.join("catalog.redb")).unwrap();
    assert_eq!(site.snapshot_ids(&dr).len(), 2);
}

#[test]
fn bad_buckets_credentials_and_objects_give_clear_errors_and_lose_nothing() {
    if !testkit::needs(Need::Garage) {
        return;
    }
    let site = Site::start(1);
    let endpoint = site.garage.endpoint();
    let init = |ds: &Path, bucket: &str, prefix: &str, id: &str, secret: &str, extra: &[&str]| {
        let mut c = cairn(ds);
        c.env("AWS_ACCESS_KEY_ID", id).env("AWS_SECRET_ACCESS_KEY", secret);
        c.args(["init", "--s3", &endpoint, "--bucket", bucket, "--prefix", prefix, "--region", "garage"])
            .args(extra);
        run(&mut c)
    };
    let wrong = "f".repeat(64);
    let r = init(&site.path("a"), "cairn", PREFIX, KEY_ID, &wrong, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("refused the credentials"), "{}", r.stderr);
    assert!(!r.stderr.contains(&wrong), "the secret was printed");
    assert!(!site.path("a").exists(), "a failed init left a directory");

    let mut c = site.cmd(&site.path("a"));
    let r = run(c.args(["init", "--s3", &endpoint, "--bucket", "cairn", "--region", "eu-west-9"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--region"), "{}", r.stderr);
    let r = init(&site.path("b"), "no-such-bucket", "", KEY_ID, SECRET, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);

    // Without credentials anywhere.
    let mut c = cairn(&site.path("c"));
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    c.args(["init", "--s3", &endpoint, "--bucket", "cairn", "--credentials"]).arg(site.path("none"));
    let r = run(&mut c);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no S3 credentials"), "{}", r.stderr);

    // A bucket (prefix) holding something else is neither taken nor attached.
    site.bucket.put("photos/cat.jpg", b"meow".to_vec()).unwrap();
    for extra in [&[][..], &["--existing"][..]] {
        let r = init(&site.path("d"), "cairn", PREFIX, KEY_ID, SECRET, extra);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("no Cairn datastore"), "{}", r.stderr);
    }
    assert_eq!(site.bucket.get("photos/cat.jpg").unwrap().as_deref(), Some(&b"meow"[..]));
    site.bucket.delete("photos/cat.jpg").unwrap();

    // A credentials file instead of the environment.
    let creds = site.path("s3-credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let ds = site.path("ds");
    let mut c = cairn(&ds);
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    c.args(["init", "--s3", &endpoint, "--bucket", "cairn", "--prefix", PREFIX, "--region", "garage"])
        .arg("--credentials")
        .arg(&creds);
    run_ok(&mut c);
    let src = site.path("src");
    write_random_tree(&src, 8, 3 * MIB, 21);
    let mut c = cairn(&ds);
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let snap =
        run_ok(c.arg("backup").arg(&src).args(["--group", "host/x", "--time", "2026-12-01T00:00:00Z"]));
    let id = snap.lines().last().unwrap().trim().to_owned();

    // A truncated object: restore fails naming the chunk, and nothing else
    // is lost (verify names the snapshot; the rest of the bucket stays).
    let victim = site.chunk_objects()[0].clone();
    let blob = site.bucket.get(&victim).unwrap().unwrap();
    site.bucket.put(&victim, blob[..blob.len() / 2].to_vec()).unwrap();
    std::fs::remove_dir_all(ds.join("cache")).unwrap();
    let r = run(site.cmd(&ds).args(["restore", &id]).arg(site.path("out")));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    let r = run(site.cmd(&ds).args(["verify", &id]));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(site.snapshot_ids(&ds), vec![id]);
}

#[test]
fn a_three_node_cluster_loses_a_node_mid_backup_and_restores_without_it() {
    if !testkit::needs(Need::Garage) {
        return;
    }
    let mut site = Site::start(3);
    let ds = site.path("ds");
    site.init(&ds, &[]);
    let src = site.path("src");
    write_random_tree(&src, 80, 96 * MIB, 22);
    let mut child = site
        .cmd(&ds)
        .arg("backup")
        .arg(&src)
        .args(["--group", "host/web", "--time", "2026-12-01T00:00:00Z", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while site.chunk_objects().len() < 10 {
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before a node could be stopped");
        assert!(started.elapsed() < Duration::from_secs(120), "no uploads seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    site.garage.stop_node(2);
    assert!(child.try_wait().unwrap().is_none(), "the backup ended before the node stopped");
    let at_stop = site.chunk_objects().len();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "backup failed with a node down: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let id = str_of(&summary, "id").to_owned();
    let total = site.chunk_objects().len();
    assert!(total > at_stop, "nothing was uploaded after the node stopped ({at_stop} of {total})");
    assert_eq!(total as u64, u64_of(&summary, "new_chunks"));
    // Restore with the node still down, from an empty cache.
    std::fs::remove_dir_all(ds.join("cache")).unwrap();
    let restored = site.path("out");
    run_ok(site.cmd(&ds).args(["restore", &id]).arg(&restored));
    assert_same_tree(&src, &restored);
    run_code(site.cmd(&ds).args(["verify", &id]), 0);
}

/// Throttling, connections cut mid-transfer and slow answers (a proxy in
/// front of Garage) are retried: the backup completes, restores equal,
/// verifies, and no half-made snapshot is ever listed.
#[test]
fn throttling_resets_and_slow_answers_are_retried_and_never_half_visible() {
    if !testkit::needs(Need::Garage) {
        return;
    }
    let site = Site::start(1);
    let upstream: std::net::SocketAddr =
        site.garage.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = testkit::faults::FaultProxy::start(upstream);
    let ds = site.path("ds");
    let init = |ds: &Path| {
        run_ok(
            site.cmd(ds)
                .args(["init", "--s3", &proxy.endpoint(), "--bucket", "cairn"])
                .args(["--prefix", PREFIX, "--region", "garage"]),
        )
    };
    init(&ds);
    let src = site.path("src");
    write_random_tree(&src, 50, 40 * MIB, 23);
    let first = backup_json(&site, &ds, &src, "2026-12-01T00:00:00Z");
    let id = str_of(&first, "id").to_owned();
    assert_eq!(site.chunk_objects().len() as u64, u64_of(&first, "new_chunks"));
    let out = site.path("out");
    std::fs::remove_dir_all(ds.join("cache")).unwrap();
    run_ok(site.cmd(&ds).args(["restore", &id]).arg(&out));
    assert_same_tree(&src, &out);
    run_code(site.cmd(&ds).args(["verify", &id]), 0);
    // Disaster recovery through the same faults.
    let dr = site.path("dr");
    run_ok(site.cmd(&dr).args([
        "init",
        "--s3",
        &proxy.endpoint(),
        "--bucket",
        "cairn",
        "--prefix",
        PREFIX,
        "--region",
        "garage",
        "--existing",
    ]));
    assert_eq!(site.snapshot_ids(&dr), vec![id]);
    let c = &proxy.counts;
    let (throttled, cut, slowed) = (
        c.throttled.load(std::sync::atomic::Ordering::Relaxed),
        c.cut.load(std::sync::atomic::Ordering::Relaxed),
        c.slowed.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        throttled >= 3 && cut >= 3 && slowed >= 3,
        "faults injected: {throttled} throttled, {cut} cut, {slowed} slowed"
    );
}

/// `cairn serve` on an S3 datastore (its key in a credentials file, as on
/// an appliance): remote clients back up and restore through it, and the
/// API serves a file out of the bucket.
#[test]
fn a_server_on_an_s3_datastore_takes_remote_backups_and_serves_files() {
    if !testkit::needs(Need::Garage) {
        return;
    }
    let site = Site::start(1);
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let creds = tmp.path().join("s3-credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    run_ok(cairn(&ds).args(["init", "--s3", &site.garage.endpoint(), "--bucket", "cairn"]).args([
        "--prefix",
        PREFIX,
        "--region",
        "garage",
        "--credentials",
        creds.to_str().unwrap(),
    ]));
    let store = crate::support::Store { tmp, ds };
    let server = crate::serve::Server::start(&store);
    let web = crate::serve::token(&store, "web01", "backup-client", Some("host/web01"));
    let src = store.path("src");
    write_random_tree(&src, 30, 10 * MIB, 24);
    std::fs::write(src.join("hello.txt"), b"hello from the bucket\n").unwrap();
    let backup = |extra: &[&str]| {
        let mut c = crate::serve::client(&store, &server, &web, "backup");
        parse_json(&run_code(c.arg(&src).args(["--group", "host/web01", "--json"]).args(extra), 0))
    };
    let first = backup(&[]);
    let id = str_of(&first, "id").to_owned();
    assert_eq!(site.chunk_objects().len() as u64, u64_of(&first, "new_chunks"));
    let second = backup(&[]);
    assert_eq!(u64_of(&second, "new_chunks"), 0, "{second}");
    std::fs::remove_dir_all(store.ds.join("cache")).unwrap();
    let out = store.path("out");
    run_ok(crate::serve::client(&store, &server, &web, "restore").arg(&id).arg(&out));
    assert_same_tree(&src, &out);
    let api = crate::serve::pinned_client(&server.fingerprint);
    let got = api
        .get(server.url(&format!("/api/v1/snapshots/{id}/download?path=src/hello.txt")))
        .bearer_auth(&web)
        .send()
        .unwrap();
    assert!(got.status().is_success(), "{got:?}");
    assert_eq!(got.bytes().unwrap().as_ref(), b"hello from the bucket\n");

    // The API and the Datastore page say where the data is, and who owns it.
    let admin = crate::serve::token(&store, "ops", "admin", None);
    let get_ds = |server: &crate::serve::Server, token: &str| {
        let api = crate::serve::pinned_client(&server.fingerprint);
        api.get(server.url("/api/v1/datastore")).bearer_auth(token).send().unwrap()
    };
    let d: serde_json::Value = get_ds(&server, &admin).json().unwrap();
    assert_eq!((d["kind"].as_str(), d["bucket"]["bucket"].as_str()), (Some("s3"), Some("cairn")), "{d}");
    assert_eq!(d["bucket"]["writable"], true, "{d}");
    assert!(!d.to_string().contains(SECRET), "{d}");
    assert_eq!(get_ds(&server, &web).status(), 403, "a backup client learns nothing of the bucket");
    let browser = crate::serve::pinned_client(&server.fingerprint);
    let res = crate::serve::login(&browser, &server, "admin", &server.password);
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page =
        browser.get(server.url("/datastore")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page.contains("s3://cairn/site-a") && page.contains("this machine ("), "{page}");
    assert!(!page.contains("datastore-takeover"), "the owner is offered no takeover");

    // A second machine attached to the bucket reads only, until an admin
    // takes the claim over through the API; then the first may not write.
    let tmp2 = tempfile::tempdir().unwrap();
    let ds2 = tmp2.path().join("ds");
    // This one is set up by the server's configuration alone ([s3] with
    // `existing`), as an appliance would be after a disaster.
    let config = tmp2.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[s3]\nurl = \"{}\"\nbucket = \"cairn\"\nprefix = \"{PREFIX}\"\nregion = \"garage\"\ncredentials_file = \"{}\"\ncache_size = \"64M\"\nexisting = true\n",
            site.garage.endpoint(),
            creds.display()
        ),
    )
    .unwrap();
    let store2 = crate::support::Store { tmp: tmp2, ds: ds2 };
    let server2 = crate::serve::Server::start_with(&store2, &["--config", config.to_str().unwrap()]);
    let admin2 = crate::serve::token(&store2, "ops", "admin", None);
    let web2 = crate::serve::token(&store2, "web01", "backup-client", Some("host/web01"));
    let d: serde_json::Value = get_ds(&server2, &admin2).json().unwrap();
    assert_eq!(d["bucket"]["writable"], false, "{d}");
    let backup2 = |code: i32| {
        let mut c = crate::serve::client(&store2, &server2, &web2, "backup");
        run_code(c.arg(&src).args(["--group", "host/web01"]), code)
    };
    let r = backup2(1);
    assert!(r.stderr.contains("claimed by another appliance"), "{}", r.stderr);
    let api2 = crate::serve::pinned_client(&server2.fingerprint);
    let r = api2.post(server2.url("/api/v1/datastore/takeover")).bearer_auth(&web2).send().unwrap();
    assert_eq!(r.status(), 403, "a backup client may not take the bucket over");
    let r = api2.post(server2.url("/api/v1/datastore/takeover")).bearer_auth(&admin2).send().unwrap();
    assert!(r.status().is_success(), "{r:?}");
    let d: serde_json::Value = get_ds(&server2, &admin2).json().unwrap();
    assert_eq!(d["bucket"]["writable"], true, "{d}");
    backup2(0);
    let r =
        run(crate::serve::client(&store, &server, &web, "backup").arg(&src).args(["--group", "host/web01"]));
    assert!(r.code != 0 && r.stderr.contains("claimed by another appliance"), "{r:?}");
    for s in [server, server2] {
        let (status, _) = s.stop();
        assert!(status.success());
    }
    // [s3] never turns a datastore in a directory into one in a bucket.
    let local = crate::support::Store::new();
    let r = run(local.cmd().args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&config));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("is a datastore in a directory"), "{}", r.stderr);
}
