use super::*;

#[test]
fn objects_round_trip_list_and_delete_in_memory() {
    let b = Bucket::memory();
    assert_eq!(b.get("a/x").unwrap(), None);
    b.put("a/x", b"one".to_vec()).unwrap();
    b.put("a/y", b"two".to_vec()).unwrap();
    b.put("b/z", b"three".to_vec()).unwrap();
    assert_eq!(b.get("a/x").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(b.head("a/y").unwrap(), Some(3));
    assert_eq!(b.list("a").unwrap(), vec![("a/x".to_owned(), 3), ("a/y".to_owned(), 3)]);
    assert!(matches!(b.put_new("a/x", b"again".to_vec()), Err(BucketError::Exists(_))));
    b.copy("a/x", "c/x").unwrap();
    b.delete("a/x").unwrap();
    b.delete("a/x").unwrap();
    assert_eq!(b.get("a/x").unwrap(), None);
    assert_eq!(b.list("").unwrap().len(), 3);
}

#[test]
fn uploads_run_at_once_and_finish_reports_them() {
    let b = Bucket::memory();
    let up = b.uploads(4);
    for i in 0..50 {
        up.put(format!("u/{i:03}"), vec![i as u8; 1000]).unwrap();
    }
    assert_eq!(up.finish().unwrap(), 50);
    assert_eq!(b.list("u").unwrap().len(), 50);
    assert_eq!(b.get("u/007").unwrap().unwrap(), vec![7u8; 1000]);
}

#[test]
fn credentials_come_from_the_default_profile_and_never_show_the_secret() {
    let c = Credentials::parse(
        "# comment\n[other]\naws_access_key_id = NO\n[default]\naws_access_key_id = GKabc\naws_secret_access_key = s3cr3t\n",
    )
    .unwrap();
    assert_eq!(c.access_key_id, "GKabc");
    assert_eq!(c.secret_access_key.expose(), "s3cr3t");
    assert!(!format!("{c:?}").contains("s3cr3t"));
    assert!(Credentials::parse("[default]\naws_access_key_id = x\n").is_err());
    assert!(Credentials::parse("garbage").is_err());
}

#[test]
fn bad_urls_are_refused_before_any_request() {
    let creds = Credentials { access_key_id: "a".into(), secret_access_key: credentials::Secret::new("b") };
    let loc = |e: &str| S3Location {
        endpoint: e.into(),
        bucket: "b".into(),
        prefix: String::new(),
        region: String::new(),
    };
    assert!(matches!(Bucket::s3(&loc("ftp://x"), &creds), Err(BucketError::Settings(_))));
    assert!(matches!(Bucket::s3(&loc("not a url"), &creds), Err(BucketError::Settings(_))));
    assert!(Bucket::s3(&loc("http://127.0.0.1:3900"), &creds).is_ok());
}

/// Against a real Garage node: what each failure looks like to an operator.
#[test]
fn garage_answers_and_refusals_are_told_apart() {
    if !testkit::needs(testkit::Need::Garage) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let g = testkit::garage::Garage::start(dir.path(), 1);
    g.create_bucket("cairn");
    let creds = Credentials {
        access_key_id: testkit::garage::KEY_ID.into(),
        secret_access_key: credentials::Secret::new(testkit::garage::SECRET),
    };
    let loc = |bucket: &str, prefix: &str| S3Location {
        endpoint: g.endpoint(),
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: g.region().into(),
    };
    let b = Bucket::s3(&loc("cairn", "site/a"), &creds).unwrap();
    b.probe().unwrap();
    b.put("x/1", vec![1; 10]).unwrap();
    assert_eq!(b.get("x/1").unwrap().unwrap(), vec![1; 10]);
    assert_eq!(b.list("x").unwrap(), vec![("x/1".to_owned(), 10)]);
    assert!(matches!(b.put_new("x/1", vec![2]), Err(BucketError::Exists(_))));
    b.put_new("x/2", vec![2]).unwrap();
    let up = b.uploads(8);
    for i in 0..40 {
        up.put(format!("u/{i}"), vec![i as u8; 100_000]).unwrap();
    }
    assert_eq!(up.finish().unwrap(), 40);
    assert_eq!(b.list("u").unwrap().len(), 40);
    // The prefix keeps it apart from the rest of the bucket.
    let other = Bucket::s3(&loc("cairn", "site/b"), &creds).unwrap();
    assert!(other.list("").unwrap().is_empty());

    let missing = Bucket::s3(&loc("no-such-bucket", ""), &creds).unwrap();
    let e = missing.probe().unwrap_err();
    assert!(matches!(e, BucketError::NoBucket { .. }), "{e:?}");
    let wrong = Credentials {
        access_key_id: testkit::garage::KEY_ID.into(),
        secret_access_key: credentials::Secret::new("0".repeat(64)),
    };
    let e = Bucket::s3(&loc("cairn", ""), &wrong).unwrap().probe().unwrap_err();
    assert!(matches!(e, BucketError::Denied { .. }), "{e:?}");
    assert!(!e.to_string().contains(&"0".repeat(64)));
    g.import_key("stranger", "GK000000000000000000000001", &"1".repeat(64));
    let stranger = Credentials {
        access_key_id: "GK000000000000000000000001".into(),
        secret_access_key: credentials::Secret::new("1".repeat(64)),
    };
    let e = Bucket::s3(&loc("cairn", ""), &stranger).unwrap().probe().unwrap_err();
    assert!(matches!(e, BucketError::Denied { .. }), "{e:?}");
}
